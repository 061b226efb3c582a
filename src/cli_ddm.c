/* `orchard declaration|set|group|device-ddm|asset-data` (see cli_ddm.h). */
#include "cli_ddm.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>
#include <openssl/crypto.h>

#include "cli_http.h"
#include "util.h"

#define MAX_FILE (2 * 1024 * 1024) /* the server's default --max-body */
#define MAX_POS 64

typedef struct {
    cli_conn_t conn;
    const char *kind, *device, *group, *type;
    int all;
    const char *pos[MAX_POS];
    int npos;
} opts_t;

static void usage(FILE *out)
{
    fputs("usage: orchard declaration put FILE|-        create or update a declaration (JSON: Type, Identifier, "
          "Payload)\n"
          "       orchard declaration list [--kind K] | get ID | delete ID\n"
          "       orchard set put NAME [ID...]             create a set or replace its declarations\n"
          "       orchard set list | get NAME | delete NAME\n"
          "       orchard set assign|unassign NAME --device ID | --group G | --all\n"
          "       orchard group add|remove GROUP ID | show GROUP\n"
          "       orchard device-ddm ID                    effective declarations, reported state, status items\n"
          "       orchard asset-data put NAME FILE --type CONTENT-TYPE | get NAME | delete NAME\n"
          "  Every change triggers a DDM sync (a DeclarativeManagement command and a push to each\n"
          "  device whose declarations changed).\n"
          "\ncommon options:\n"
          "  --server URL     orchard's base URL [env ORCHARD_SERVER] (default https://127.0.0.1:8443)\n"
          "  --api-key KEY    admin API key [env ORCHARD_API_KEY] (default: read DIR/api.key)\n"
          "  --data-dir DIR   where api.key and ca.pem are [env ORCHARD_DATA_DIR] (default ./var)\n"
          "  --cacert FILE    CA to trust for the server certificate (default DIR/ca.pem)\n"
          "  --insecure       do not verify the server certificate\n",
          out);
}

/* Options anywhere; the rest positional. 0 ok, 1 help, -1 error. */
static int parse(int argc, char **argv, opts_t *o)
{
    static const struct {
        const char *name;
        size_t off;
    } with_value[] = {
        {"--server", offsetof(opts_t, conn.server)},   {"--api-key", offsetof(opts_t, conn.api_key)},
        {"--data-dir", offsetof(opts_t, conn.data_dir)}, {"--cacert", offsetof(opts_t, conn.cacert)},
        {"--kind", offsetof(opts_t, kind)},            {"--device", offsetof(opts_t, device)},
        {"--group", offsetof(opts_t, group)},          {"--type", offsetof(opts_t, type)},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--insecure") == 0) {
            o->conn.insecure = 1;
            continue;
        }
        if (strcmp(a, "--all") == 0) {
            o->all = 1;
            continue;
        }
        size_t k = 0;
        for (; k < sizeof with_value / sizeof with_value[0]; k++)
            if (strcmp(a, with_value[k].name) == 0)
                break;
        if (k < sizeof with_value / sizeof with_value[0]) {
            if (i + 1 >= argc) {
                fprintf(stderr, "orchard: %s needs a value\n", a);
                return -1;
            }
            *(const char **)((char *)o + with_value[k].off) = argv[++i];
            continue;
        }
        if (strncmp(a, "--", 2) == 0) {
            fprintf(stderr, "orchard: unknown option %s\n", a);
            return -1;
        }
        if (o->npos == MAX_POS) {
            fprintf(stderr, "orchard: too many arguments\n");
            return -1;
        }
        o->pos[o->npos++] = a;
    }
    return 0;
}

/* "/v1/<a>/<escaped b>[/<c>[/<escaped d>]]" (heap). */
static char *api_path(const char *a, const char *b, const char *c, const char *d)
{
    CURL *h = curl_easy_init();
    char *eb = h && b ? curl_easy_escape(h, b, 0) : NULL;
    char *ed = h && d ? curl_easy_escape(h, d, 0) : NULL;
    char *p = NULL;
    if (h && (!b || eb) && (!d || ed))
        p = util_strdup_printf("/v1/%s%s%s%s%s%s%s", a, b ? "/" : "", b ? eb : "", c ? "/" : "", c ? c : "",
                               d ? "/" : "", d ? ed : "");
    curl_free(eb);
    curl_free(ed);
    if (h)
        curl_easy_cleanup(h);
    return p;
}

static int call(const opts_t *o, const char *method, char *path, const char *body, size_t len)
{
    if (!path) {
        fprintf(stderr, "orchard: out of memory\n");
        return 1;
    }
    int rc = cli_api_call(&o->conn, method, path, body, len);
    free(path);
    return rc;
}

/* A whole file, or standard input for "-" (heap, NUL-terminated). */
static char *read_input(const char *name, size_t *len)
{
    if (strcmp(name, "-") != 0) {
        char *d = util_read_file(name, MAX_FILE, len);
        if (!d)
            fprintf(stderr, "orchard: cannot read %s (at most %d bytes)\n", name, MAX_FILE);
        return d;
    }
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap + 1);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            if (cap >= MAX_FILE) {
                fprintf(stderr, "orchard: standard input is over %d bytes\n", MAX_FILE);
                free(buf);
                return NULL;
            }
            char *g = realloc(buf, 2 * cap + 1);
            if (!g) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = g;
            cap *= 2;
        }
    }
    if (!buf) {
        fprintf(stderr, "orchard: out of memory\n");
        return NULL;
    }
    buf[n] = '\0';
    *len = n;
    return buf;
}

static int declaration(opts_t *o)
{
    const char *sub = o->npos ? o->pos[0] : "list";
    if (strcmp(sub, "put") == 0 && o->npos == 2) {
        size_t len = 0;
        char *body = read_input(o->pos[1], &len);
        if (!body)
            return 1;
        int rc = call(o, "PUT", api_path("declarations", NULL, NULL, NULL), body, len);
        free(body);
        return rc;
    }
    if (strcmp(sub, "list") == 0 && o->npos <= 1) {
        char *path = o->kind ? util_strdup_printf("/v1/declarations?kind=%s", o->kind)
                             : api_path("declarations", NULL, NULL, NULL);
        return call(o, "GET", path, NULL, 0);
    }
    if ((strcmp(sub, "get") == 0 || strcmp(sub, "delete") == 0) && o->npos == 2)
        return call(o, sub[0] == 'g' ? "GET" : "DELETE", api_path("declarations", o->pos[1], NULL, NULL), NULL, 0);
    return 2;
}

static int set(opts_t *o)
{
    const char *sub = o->npos ? o->pos[0] : "list";
    if (strcmp(sub, "put") == 0 && o->npos >= 2) {
        json_t *ids = json_array();
        for (int i = 2; i < o->npos; i++)
            json_array_append_new(ids, json_string(o->pos[i]));
        json_t *body = json_pack("{s:o}", "declarations", ids);
        char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
        json_decref(body);
        if (!text) {
            fprintf(stderr, "orchard: identifiers must be UTF-8\n");
            return 1;
        }
        int rc = call(o, "PUT", api_path("sets", o->pos[1], NULL, NULL), text, strlen(text));
        free(text);
        return rc;
    }
    if (strcmp(sub, "list") == 0 && o->npos <= 1)
        return call(o, "GET", api_path("sets", NULL, NULL, NULL), NULL, 0);
    if ((strcmp(sub, "get") == 0 || strcmp(sub, "delete") == 0) && o->npos == 2)
        return call(o, sub[0] == 'g' ? "GET" : "DELETE", api_path("sets", o->pos[1], NULL, NULL), NULL, 0);
    if ((strcmp(sub, "assign") == 0 || strcmp(sub, "unassign") == 0) && o->npos == 2) {
        if ((o->device != NULL) + (o->group != NULL) + o->all != 1) {
            fprintf(stderr, "orchard: give exactly one of --device ID, --group G, --all\n");
            return 2;
        }
        char *base = api_path("sets", o->pos[1], "assignments", NULL);
        if (!base)
            return 1;
        if (sub[0] == 'a') {
            json_t *b = o->device ? json_pack("{s:s}", "device", o->device)
                        : o->group ? json_pack("{s:s}", "group", o->group)
                                   : json_pack("{s:b}", "all", 1);
            char *text = b ? json_dumps(b, JSON_COMPACT) : NULL;
            json_decref(b);
            int rc = text ? call(o, "POST", base, text, strlen(text)) : (free(base), 1);
            free(text);
            return rc;
        }
        /* DELETE carries no body: the target goes in the query. */
        CURL *h = curl_easy_init();
        char *v = h && (o->device || o->group) ? curl_easy_escape(h, o->device ? o->device : o->group, 0) : NULL;
        char *path = o->all ? util_strdup_printf("%s?all=1", base)
                     : v    ? util_strdup_printf("%s?%s=%s", base, o->device ? "device" : "group", v)
                            : NULL;
        curl_free(v);
        if (h)
            curl_easy_cleanup(h);
        free(base);
        return call(o, "DELETE", path, NULL, 0);
    }
    return 2;
}

static int group(opts_t *o)
{
    const char *sub = o->npos ? o->pos[0] : "";
    if ((strcmp(sub, "add") == 0 || strcmp(sub, "remove") == 0) && o->npos == 3)
        return call(o, sub[0] == 'a' ? "PUT" : "DELETE", api_path("groups", o->pos[1], "members", o->pos[2]), NULL,
                    0);
    if (strcmp(sub, "show") == 0 && o->npos == 2)
        return call(o, "GET", api_path("groups", o->pos[1], NULL, NULL), NULL, 0);
    return 2;
}

static int device_ddm(opts_t *o)
{
    if (o->npos != 1)
        return 2;
    int rc = call(o, "GET", api_path("devices", o->pos[0], "declarations", NULL), NULL, 0);
    if (rc == 0)
        rc = call(o, "GET", api_path("devices", o->pos[0], "status-items", NULL), NULL, 0);
    return rc;
}

/* PUT with the file's own Content-Type (cli_api_call sends JSON/XML only). */
static int asset_put(opts_t *o)
{
    if (!o->type) {
        fprintf(stderr, "orchard: asset-data put needs --type CONTENT-TYPE (e.g. application/pem)\n");
        return 2;
    }
    size_t len = 0;
    char *data = read_input(o->pos[2], &len);
    char *path = api_path("asset-data", o->pos[1], NULL, NULL);
    char *key = o->conn.api_key ? strdup(o->conn.api_key) : cli_read_secret(&o->conn, "api.key", "API key");
    char *auth = key ? util_strdup_printf("Authorization: Bearer %s", key) : NULL;
    int rc = 1;
    if (data && path && auth) {
        curl_buffer_t out;
        long st = cli_http_request(&o->conn, "PUT", path, auth, o->type, data, len, &out);
        if (st >= 0) {
            if (out.data)
                fputs(out.data, stdout);
            if (st != 200)
                fprintf(stderr, "orchard: server answered %ld\n", st);
            rc = st == 200 ? 0 : 1;
        }
        curl_buffer_free(&out);
    }
    if (key) {
        OPENSSL_cleanse(key, strlen(key));
        free(key);
    }
    if (auth) {
        OPENSSL_cleanse(auth, strlen(auth));
        free(auth);
    }
    free(data);
    free(path);
    return rc;
}

static int asset_data(opts_t *o)
{
    const char *sub = o->npos ? o->pos[0] : "";
    if (strcmp(sub, "put") == 0 && o->npos == 3)
        return asset_put(o);
    if ((strcmp(sub, "get") == 0 || strcmp(sub, "delete") == 0) && o->npos == 2)
        return call(o, sub[0] == 'g' ? "GET" : "DELETE", api_path("asset-data", o->pos[1], NULL, NULL), NULL, 0);
    return 2;
}

int cli_ddm_main(const char *command, int argc, char **argv)
{
    opts_t o;
    memset(&o, 0, sizeof o);
    o.conn.server = getenv("ORCHARD_SERVER");
    o.conn.api_key = getenv("ORCHARD_API_KEY");
    o.conn.data_dir = getenv("ORCHARD_DATA_DIR");
    int p = parse(argc, argv, &o);
    if (p != 0) {
        usage(p > 0 ? stdout : stderr);
        return p > 0 ? 0 : 2;
    }
    if (!o.conn.server || !*o.conn.server)
        o.conn.server = "https://127.0.0.1:8443";
    if (!o.conn.data_dir || !*o.conn.data_dir)
        o.conn.data_dir = "./var";
    if (o.conn.api_key && !*o.conn.api_key)
        o.conn.api_key = NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = 2;
    if (strcmp(command, "declaration") == 0)
        rc = declaration(&o);
    else if (strcmp(command, "set") == 0)
        rc = set(&o);
    else if (strcmp(command, "group") == 0)
        rc = group(&o);
    else if (strcmp(command, "device-ddm") == 0)
        rc = device_ddm(&o);
    else if (strcmp(command, "asset-data") == 0)
        rc = asset_data(&o);
    if (rc == 2)
        usage(stderr);
    curl_global_cleanup();
    return rc;
}
