/* `orchard ade ...` (see cli_ade.h). */
#include "cli_ade.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "ade_token.h"
#include "cli_http.h"
#include "util.h"

#define MAX_POS 1100

static void usage(FILE *out)
{
    fputs("usage: orchard ade keypair [--force]\n"
          "       orchard ade token import NAME FILE.p7m | list | show NAME | delete NAME | sync NAME\n"
          "       orchard ade token default-profile NAME (UUID | --clear)\n"
          "       orchard ade token disown NAME SERIAL...\n"
          "       orchard ade devices [--token T] [--deleted] [--after SERIAL] [--limit N]\n"
          "       orchard ade device SERIAL [--refresh]\n"
          "       orchard ade profile define FILE.json|- | list [--token T] | show UUID [--apple]\n"
          "       orchard ade profile assign|remove UUID SERIAL...\n"
          "       orchard ade setup-commands ...   (commands for devices awaiting configuration)\n"
          "  Automated Device Enrollment: server tokens from Apple Business Manager, the devices\n"
          "  assigned to them, and enrollment profiles (see docs/ade.md).\n"
          "\ncommon options:\n"
          "  --server URL     orchard's base URL [env ORCHARD_SERVER] (default https://127.0.0.1:8443)\n"
          "  --api-key KEY    admin API key [env ORCHARD_API_KEY] (default: read DIR/api.key)\n"
          "  --data-dir DIR   where api.key, ca.pem and the ADE key pair are [env ORCHARD_DATA_DIR] (default ./var)\n"
          "  --cacert FILE    CA to trust for the server certificate (default DIR/ca.pem)\n"
          "  --insecure       do not verify the server certificate\n",
          out);
}

static char *escape(const char *s)
{
    CURL *c = curl_easy_init();
    char *e = c ? curl_easy_escape(c, s, 0) : NULL;
    char *r = e ? strdup(e) : NULL;
    curl_free(e);
    if (c)
        curl_easy_cleanup(c);
    return r;
}

/* {"devices": [pos...]} */
static char *devices_body(char **pos, int n)
{
    json_t *a = json_array();
    for (int i = 0; i < n; i++)
        json_array_append_new(a, json_string(pos[i]));
    json_t *o = json_pack("{s:o}", "devices", a);
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *read_input(const char *file, size_t *len)
{
    if (strcmp(file, "-") != 0)
        return util_read_file(file, 4u << 20, len);
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, stdin)) > 0) {
        n += got;
        if (n == cap) {
            char *g = cap < (4u << 20) ? realloc(buf, 2 * cap + 1) : NULL;
            if (!g) {
                free(buf);
                return NULL;
            }
            buf = g;
            cap *= 2;
        }
    }
    if (buf)
        buf[n] = '\0';
    *len = n;
    return buf;
}

static int keypair(const cli_conn_t *conn, int force)
{
    char *err = NULL;
    int rc = ade_keypair_create(conn->data_dir, force, &err);
    if (rc < 0) {
        fprintf(stderr, "orchard: %s\n", err ? err : "cannot create the key pair");
        free(err);
        return 1;
    }
    printf("%s %s/%s\nUpload it in Apple Business Manager (Preferences > your MDM server > Upload Public Key),\n"
           "download the server token, then: orchard ade token import NAME FILE.p7m\n",
           rc == 1 ? "kept the existing certificate" : "created", conn->data_dir, ADE_CERT_FILE);
    return 0;
}

int cli_ade_main(int argc, char **argv)
{
    cli_conn_t conn = {.server = getenv("ORCHARD_SERVER"),
                       .api_key = getenv("ORCHARD_API_KEY"),
                       .data_dir = getenv("ORCHARD_DATA_DIR")};
    const char *token = NULL, *after = NULL, *limit = NULL;
    int force = 0, deleted = 0, refresh = 0, clear = 0, apple = 0;
    static char *pos[MAX_POS];
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--server") == 0    ? &conn.server
                            : strcmp(a, "--api-key") == 0  ? &conn.api_key
                            : strcmp(a, "--data-dir") == 0 ? &conn.data_dir
                            : strcmp(a, "--cacert") == 0   ? &conn.cacert
                            : strcmp(a, "--token") == 0    ? &token
                            : strcmp(a, "--after") == 0    ? &after
                            : strcmp(a, "--limit") == 0    ? &limit
                                                           : NULL;
        int *flag = strcmp(a, "--force") == 0     ? &force
                    : strcmp(a, "--deleted") == 0 ? &deleted
                    : strcmp(a, "--refresh") == 0 ? &refresh
                    : strcmp(a, "--clear") == 0   ? &clear
                    : strcmp(a, "--apple") == 0   ? &apple
                    : strcmp(a, "--insecure") == 0 ? &conn.insecure
                                                  : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        }
        if (flag) {
            *flag = 1;
        } else if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "orchard: %s needs a value\n", a);
                return 2;
            }
            *slot = argv[++i];
        } else if ((strncmp(a, "--", 2) == 0 && strcmp(a, "-") != 0) || npos == MAX_POS) {
            fprintf(stderr, "orchard: %s %s\n", strncmp(a, "--", 2) == 0 ? "unknown option" : "too many arguments:", a);
            usage(stderr);
            return 2;
        } else {
            pos[npos++] = argv[i];
        }
    }
    if (!conn.server || !*conn.server)
        conn.server = "https://127.0.0.1:8443";
    if (!conn.data_dir || !*conn.data_dir)
        conn.data_dir = "./var";
    if (conn.api_key && !*conn.api_key)
        conn.api_key = NULL;
    if (npos == 0) {
        usage(stderr);
        return 2;
    }
    const char *what = pos[0], *verb = npos > 1 ? pos[1] : "";
    if (strcmp(what, "keypair") == 0 && npos == 1)
        return keypair(&conn, force);

    char *path = NULL, *body = NULL, *e1 = npos > 2 ? escape(pos[2]) : NULL;
    size_t body_len = 0;
    const char *method = NULL;
    if (strcmp(what, "token") == 0) {
        if (strcmp(verb, "list") == 0 && npos == 2) {
            method = "GET";
            path = strdup("/v1/ade/tokens");
        } else if (e1 && strcmp(verb, "import") == 0 && npos == 4) {
            if (!(body = read_input(pos[3], &body_len))) {
                fprintf(stderr, "orchard: cannot read %s\n", pos[3]);
                free(e1);
                return 1;
            }
            method = "PUT";
            path = util_strdup_printf("/v1/ade/tokens/%s", e1);
        } else if (e1 && npos == 3 && (strcmp(verb, "show") == 0 || strcmp(verb, "delete") == 0)) {
            method = strcmp(verb, "show") == 0 ? "GET" : "DELETE";
            path = util_strdup_printf("/v1/ade/tokens/%s", e1);
        } else if (e1 && npos == 3 && strcmp(verb, "sync") == 0) {
            method = "POST";
            path = util_strdup_printf("/v1/ade/tokens/%s/sync", e1);
        } else if (e1 && strcmp(verb, "default-profile") == 0 && ((npos == 4 && !clear) || (npos == 3 && clear))) {
            method = clear ? "DELETE" : "PUT";
            path = util_strdup_printf("/v1/ade/tokens/%s/default-profile", e1);
            if (!clear) {
                json_t *o = json_pack("{s:s}", "profile_uuid", pos[3]);
                body = json_dumps(o, JSON_COMPACT);
                json_decref(o);
            }
        } else if (e1 && strcmp(verb, "disown") == 0 && npos >= 4) {
            method = "POST";
            path = util_strdup_printf("/v1/ade/tokens/%s/disown", e1);
            body = devices_body(pos + 3, npos - 3);
        }
    } else if (strcmp(what, "devices") == 0 && npos == 1) {
        char *et = token ? escape(token) : NULL, *ea = after ? escape(after) : NULL;
        method = "GET";
        path = util_strdup_printf("/v1/ade/devices?limit=%s%s%s%s%s%s", limit ? limit : "100", et ? "&token=" : "",
                                  et ? et : "", ea ? "&after=" : "", ea ? ea : "", deleted ? "&deleted=1" : "");
        free(et);
        free(ea);
    } else if (strcmp(what, "device") == 0 && npos == 2) {
        char *es = escape(pos[1]);
        method = refresh ? "POST" : "GET";
        path = es ? util_strdup_printf("/v1/ade/devices/%s%s", es, refresh ? "/refresh" : "") : NULL;
        free(es);
    } else if (strcmp(what, "profile") == 0) {
        if (strcmp(verb, "define") == 0 && npos == 3) {
            if (!(body = read_input(pos[2], &body_len))) {
                fprintf(stderr, "orchard: cannot read %s\n", pos[2]);
                free(e1);
                return 1;
            }
            method = "POST";
            path = strdup("/v1/ade/profiles");
        } else if (strcmp(verb, "list") == 0 && npos == 2) {
            char *et = token ? escape(token) : NULL;
            method = "GET";
            path = util_strdup_printf("/v1/ade/profiles%s%s", et ? "?token=" : "", et ? et : "");
            free(et);
        } else if (e1 && strcmp(verb, "show") == 0 && npos == 3) {
            method = "GET";
            path = util_strdup_printf("/v1/ade/profiles/%s%s", e1, apple ? "?apple=1" : "");
        } else if (e1 && (strcmp(verb, "assign") == 0 || strcmp(verb, "remove") == 0) && npos >= 4) {
            method = strcmp(verb, "assign") == 0 ? "PUT" : "DELETE";
            path = util_strdup_printf("/v1/ade/profiles/%s/devices", e1);
            body = devices_body(pos + 3, npos - 3);
        }
    }
    free(e1);
    if (!method || !path) {
        free(path);
        free(body);
        usage(stderr);
        return 2;
    }
    if (body && !body_len)
        body_len = strlen(body);
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cli_api_call(&conn, method, path, body, body_len);
    curl_global_cleanup();
    free(path);
    free(body);
    return rc;
}
