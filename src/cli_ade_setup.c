/* `orchard ade setup-commands` (see cli_ade_setup.h). */
#include "cli_ade_setup.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "cli_http.h"
#include "util.h"

#define SETUP_FILE_MAX (4 * 1024 * 1024)

static void usage(FILE *out)
{
    fputs("usage: orchard ade setup-commands put FILE   (FILE: a JSON array; - reads standard input)\n"
          "       orchard ade setup-commands get\n"
          "       orchard ade setup-commands clear\n"
          "  The commands orchard sends to ADE devices that await configuration (profiles with\n"
          "  await_device_configured), in order, before DeviceConfigured releases Setup Assistant.\n"
          "  Each array element is a command plist (a string, as for orchard enqueue) or the\n"
          "  Command dictionary as a JSON object, e.g. {\"RequestType\": \"DeviceInformation\",\n"
          "  \"Queries\": [\"SerialNumber\"]}. Every device gets its own CommandUUIDs.\n"
          "\ncommon options:\n"
          "  --server URL     orchard's base URL [env ORCHARD_SERVER] (default https://127.0.0.1:8443)\n"
          "  --api-key KEY    admin API key [env ORCHARD_API_KEY] (default: read DIR/api.key)\n"
          "  --data-dir DIR   where api.key and ca.pem are [env ORCHARD_DATA_DIR] (default ./var)\n"
          "  --cacert FILE    CA to trust for the server certificate (default DIR/ca.pem)\n"
          "  --insecure       do not verify the server certificate\n",
          out);
}

static char *read_stdin(size_t *len)
{
    size_t cap = 65536, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0)
            break;
        if (n == cap) {
            if (cap >= SETUP_FILE_MAX) {
                free(buf);
                return NULL;
            }
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

int cli_ade_setup_main(int argc, char **argv)
{
    cli_conn_t conn = {.server = getenv("ORCHARD_SERVER"),
                       .api_key = getenv("ORCHARD_API_KEY"),
                       .data_dir = getenv("ORCHARD_DATA_DIR")};
    const char *pos[2] = {NULL, NULL};
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = strcmp(a, "--server") == 0    ? &conn.server
                            : strcmp(a, "--api-key") == 0  ? &conn.api_key
                            : strcmp(a, "--data-dir") == 0 ? &conn.data_dir
                            : strcmp(a, "--cacert") == 0   ? &conn.cacert
                                                           : NULL;
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
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
        } else if ((strncmp(a, "--", 2) == 0) || npos == 2) {
            fprintf(stderr, "orchard: %s %s\n", strncmp(a, "--", 2) == 0 ? "unknown option" : "too many arguments:",
                    a);
            usage(stderr);
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

    const char *verb = pos[0];
    const char *method = NULL;
    char *body = NULL;
    size_t len = 0;
    if (verb && strcmp(verb, "put") == 0 && npos == 2) {
        method = "PUT";
        body = strcmp(pos[1], "-") == 0 ? read_stdin(&len) : util_read_file(pos[1], SETUP_FILE_MAX, &len);
        if (!body) {
            fprintf(stderr, "orchard: cannot read %s (missing, unreadable or over 4 MiB)\n", pos[1]);
            return 1;
        }
    } else if (verb && strcmp(verb, "get") == 0 && npos == 1) {
        method = "GET";
    } else if (verb && strcmp(verb, "clear") == 0 && npos == 1) {
        method = "DELETE";
    } else {
        usage(stderr);
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = cli_api_call(&conn, method, "/v1/ade/setup-commands", body, len);
    curl_global_cleanup();
    free(body);
    return rc;
}
