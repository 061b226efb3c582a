/* `orchard watch-enrollment` and `orchard watches` (see cli_watch.h). */
#include "cli_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli_http.h"
#include "util.h"

static void usage(const char *command, FILE *out)
{
    if (strcmp(command, "watches") == 0)
        fputs("usage: orchard watches PHONE-UDID\n"
              "  The Apple Watches enrolled through this iPhone, with their pairing state\n"
              "  (profile_issued, enrolled, phone_gone).\n",
              out);
    else
        fputs("usage: orchard watch-enrollment enable|disable PHONE-UDID\n"
              "       orchard watch-enrollment enable|disable --group GROUP\n"
              "       orchard watch-enrollment status PHONE-UDID\n"
              "  Sends (or withdraws) the com.apple.configuration.watch.enrollment declaration, so\n"
              "  Apple Watches paired with these supervised iPhones enroll in orchard.\n",
              out);
    fputs("\ncommon options:\n"
          "  --server URL     orchard's base URL [env ORCHARD_SERVER] (default https://127.0.0.1:8443)\n"
          "  --api-key KEY    admin API key [env ORCHARD_API_KEY] (default: read DIR/api.key)\n"
          "  --data-dir DIR   where api.key and ca.pem are [env ORCHARD_DATA_DIR] (default ./var)\n"
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

int cli_watch_main(const char *command, int argc, char **argv)
{
    cli_conn_t conn = {.server = getenv("ORCHARD_SERVER"),
                       .api_key = getenv("ORCHARD_API_KEY"),
                       .data_dir = getenv("ORCHARD_DATA_DIR")};
    const char *group = NULL, *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--server") == 0    ? &conn.server
                            : strcmp(a, "--api-key") == 0  ? &conn.api_key
                            : strcmp(a, "--data-dir") == 0 ? &conn.data_dir
                            : strcmp(a, "--cacert") == 0   ? &conn.cacert
                            : strcmp(a, "--group") == 0    ? &group
                                                           : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(command, stdout);
            return 0;
        }
        if (strcmp(a, "--insecure") == 0) {
            conn.insecure = 1;
        } else if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "orchard: %s needs a value\n", a);
                return 2;
            }
            *slot = argv[++i];
        } else if (strncmp(a, "--", 2) == 0 || npos == 2) {
            fprintf(stderr, "orchard: %s %s\n", strncmp(a, "--", 2) == 0 ? "unknown option" : "too many arguments:",
                    a);
            usage(command, stderr);
            return 2;
        } else {
            pos[npos++] = a;
        }
    }
    if (!conn.server || !*conn.server)
        conn.server = "https://127.0.0.1:8443";
    if (!conn.data_dir || !*conn.data_dir)
        conn.data_dir = "./var";
    if (conn.api_key && !*conn.api_key)
        conn.api_key = NULL;

    const char *method = NULL, *target = NULL, *leaf = NULL;
    int is_group = 0;
    if (strcmp(command, "watches") == 0) {
        if (npos == 1 && !group) {
            method = "GET";
            target = pos[0];
            leaf = "watches";
        }
    } else if (npos >= 1) {
        const char *verb = pos[0];
        int enable = strcmp(verb, "enable") == 0, disable = strcmp(verb, "disable") == 0;
        int status = strcmp(verb, "status") == 0;
        if ((enable || disable) && ((npos == 2) != (group != NULL))) {
            method = enable ? "PUT" : "DELETE";
            target = group ? group : pos[1];
            is_group = group != NULL;
            leaf = "watch-enrollment";
        } else if (status && npos == 2 && !group) {
            method = "GET";
            target = pos[1];
            leaf = "watch-enrollment";
        }
    }
    if (!method || !*target) {
        usage(command, stderr);
        return 2;
    }
    char *esc = escape(target);
    char *path = esc ? util_strdup_printf("/v1/%s/%s/%s", is_group ? "groups" : "devices", esc, leaf) : NULL;
    free(esc);
    if (!path) {
        fprintf(stderr, "orchard: out of memory\n");
        return 1;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cli_api_call(&conn, method, path, NULL, 0);
    curl_global_cleanup();
    free(path);
    return rc;
}
