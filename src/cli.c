/* Admin command line: devices, enqueue, commands, push — thin clients of the
 * admin API over HTTPS (libcurl). They print the API's JSON and exit 1 when
 * the server refuses. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <jansson.h>

#include "cli_http.h"
#include "serve.h"
#include "util.h"

typedef struct {
    const char *server;
    const char *api_key;
    const char *data_dir;
    const char *cacert;
    int insecure;
    int nopush;
    int pending;
    int all;
    const char *group;
    const char *state, *model, *serial, *limit, *after;
    const char *pos[4];
    int npos;
} cli_opts_t;

static const char *const help_text[][2] = {
    {"devices", "usage: orchard devices [list] [--state S] [--model M] [--serial N] [--limit N] [--after ID]\n"
                "       orchard devices show ID\n"
                "       orchard devices commands ID [--pending] [--limit N]\n"
                "       orchard devices events ID\n"},
    {"enqueue", "usage: orchard enqueue ID[,ID...] FILE|- [--nopush]\n"
                "       orchard enqueue --group NAME FILE|- [--nopush]\n"
                "       orchard enqueue --all FILE|- [--nopush]\n"
                "  Queues the raw command plist in FILE (or standard input) for each id, for\n"
                "  every active member of a device group, or for every active device.\n"},
    {"commands", "usage: orchard commands show UUID\n"
                 "       orchard commands cancel ID UUID\n"},
    {"push", "usage: orchard push ID[,ID...]\n"},
};

static void cli_usage(const char *command, FILE *out)
{
    for (size_t i = 0; i < sizeof help_text / sizeof help_text[0]; i++)
        if (strcmp(help_text[i][0], command) == 0)
            fputs(help_text[i][1], out);
    fputs("\ncommon options:\n"
          "  --server URL     orchard's base URL [env ORCHARD_SERVER] (default https://127.0.0.1:8443)\n"
          "  --api-key KEY    admin API key [env ORCHARD_API_KEY] (default: read DIR/api.key)\n"
          "  --data-dir DIR   where api.key and ca.pem are [env ORCHARD_DATA_DIR] (default ./var)\n"
          "  --cacert FILE    CA to trust for the server certificate (default DIR/ca.pem)\n"
          "  --insecure       do not verify the server certificate\n",
          out);
}

/* Options may appear anywhere; everything else is positional. */
static int parse_opts(int argc, char **argv, cli_opts_t *o)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char **slot = NULL;
        if (strcmp(a, "--insecure") == 0) {
            o->insecure = 1;
            continue;
        }
        if (strcmp(a, "--nopush") == 0) {
            o->nopush = 1;
            continue;
        }
        if (strcmp(a, "--pending") == 0) {
            o->pending = 1;
            continue;
        }
        if (strcmp(a, "--all") == 0) {
            o->all = 1;
            continue;
        }
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--server") == 0)
            slot = &o->server;
        else if (strcmp(a, "--api-key") == 0)
            slot = &o->api_key;
        else if (strcmp(a, "--data-dir") == 0)
            slot = &o->data_dir;
        else if (strcmp(a, "--cacert") == 0)
            slot = &o->cacert;
        else if (strcmp(a, "--state") == 0)
            slot = &o->state;
        else if (strcmp(a, "--model") == 0)
            slot = &o->model;
        else if (strcmp(a, "--serial") == 0)
            slot = &o->serial;
        else if (strcmp(a, "--limit") == 0)
            slot = &o->limit;
        else if (strcmp(a, "--after") == 0)
            slot = &o->after;
        else if (strcmp(a, "--group") == 0)
            slot = &o->group;
        if (slot) {
            if (i + 1 >= argc) {
                fprintf(stderr, "orchard: %s needs a value\n", a);
                return -1;
            }
            *slot = argv[++i];
            continue;
        }
        if (strncmp(a, "--", 2) == 0) {
            fprintf(stderr, "orchard: unknown option %s\n", a);
            return -1;
        }
        if (o->npos == 4) {
            fprintf(stderr, "orchard: too many arguments\n");
            return -1;
        }
        o->pos[o->npos++] = a;
    }
    return 0;
}

/* Performs one API call and prints the JSON reply. Exit status 0 for 2xx. */
static int api_call(const cli_opts_t *o, const char *method, const char *path, const char *body, size_t body_len)
{
    cli_conn_t c = {
        .server = o->server, .api_key = o->api_key, .data_dir = o->data_dir, .cacert = o->cacert, .insecure = o->insecure};
    return cli_api_call(&c, method, path, body, body_len);
}

/* Percent-escapes each comma-separated id, keeping the commas. */
static char *escape_ids(CURL *c, const char *list)
{
    char *copy = strdup(list), *save = NULL, *out = strdup("");
    for (char *t = strtok_r(copy, ",", &save); t && out; t = strtok_r(NULL, ",", &save)) {
        char *e = curl_easy_escape(c, t, 0);
        char *joined = e ? util_strdup_printf("%s%s%s", out, *out ? "," : "", e) : NULL;
        curl_free(e);
        free(out);
        out = joined;
    }
    free(copy);
    return out;
}

static char *escape_one(CURL *c, const char *s)
{
    char *e = curl_easy_escape(c, s, 0);
    char *r = e ? strdup(e) : NULL;
    curl_free(e);
    return r;
}

static int run(const char *command, cli_opts_t *o)
{
    CURL *c = curl_easy_init();
    if (!c)
        return 1;
    char *path = NULL, *a = NULL, *b = NULL;
    int rc = 2;
    const char *sub = o->npos > 0 ? o->pos[0] : "";
    if (strcmp(command, "devices") == 0) {
        if (o->npos == 0 || strcmp(sub, "list") == 0) {
            char q[1024] = "";
            const char *names[] = {"state", "model", "serial", "limit", "after"};
            const char *vals[] = {o->state, o->model, o->serial, o->limit, o->after};
            for (int i = 0; i < 5; i++) {
                if (!vals[i])
                    continue;
                char *e = escape_one(c, vals[i]);
                size_t used = strlen(q);
                snprintf(q + used, sizeof q - used, "%c%s=%s", used ? '&' : '?', names[i], e ? e : "");
                free(e);
            }
            path = util_strdup_printf("/v1/devices%s", q);
        } else if (o->npos == 2 && (strcmp(sub, "show") == 0 || strcmp(sub, "commands") == 0 ||
                                    strcmp(sub, "events") == 0)) {
            a = escape_one(c, o->pos[1]);
            if (strcmp(sub, "show") == 0)
                path = util_strdup_printf("/v1/devices/%s", a);
            else if (strcmp(sub, "events") == 0)
                path = util_strdup_printf("/v1/devices/%s/events", a);
            else
                path = util_strdup_printf("/v1/devices/%s/commands?limit=%s%s", a, o->limit ? o->limit : "100",
                                          o->pending ? "&pending=1" : "");
        }
        if (path)
            rc = api_call(o, "GET", path, NULL, 0);
    } else if (strcmp(command, "enqueue") == 0 && o->npos == ((o->group || o->all) ? 1 : 2) &&
               !(o->group && o->all)) {
        const char *file = o->pos[o->npos - 1];
        size_t len = 0;
        char *body = util_read_file(strcmp(file, "-") == 0 ? "/dev/stdin" : file, 64 * 1024 * 1024, &len);
        if (!body) {
            fprintf(stderr, "orchard: cannot read command file %s\n", file);
            rc = 1;
        } else {
            const char *np = o->nopush ? "nopush=1" : "";
            if (o->group) {
                a = escape_one(c, o->group);
                path = util_strdup_printf("/v1/enqueue?group=%s%s%s", a, *np ? "&" : "", np);
            } else if (o->all) {
                path = util_strdup_printf("/v1/enqueue?all=1%s%s", *np ? "&" : "", np);
            } else {
                a = escape_ids(c, o->pos[0]);
                path = util_strdup_printf("/v1/enqueue/%s%s%s", a, *np ? "?" : "", np);
            }
            rc = path ? api_call(o, "PUT", path, body, len) : 1;
            free(body);
        }
    } else if (strcmp(command, "commands") == 0) {
        if (o->npos == 2 && strcmp(sub, "show") == 0) {
            a = escape_one(c, o->pos[1]);
            path = util_strdup_printf("/v1/commands/%s", a);
            rc = api_call(o, "GET", path, NULL, 0);
        } else if (o->npos == 3 && strcmp(sub, "cancel") == 0) {
            a = escape_one(c, o->pos[1]);
            b = escape_one(c, o->pos[2]);
            path = util_strdup_printf("/v1/devices/%s/commands/%s", a, b);
            rc = api_call(o, "DELETE", path, NULL, 0);
        }
    } else if (strcmp(command, "push") == 0 && o->npos == 1) {
        a = escape_ids(c, o->pos[0]);
        path = util_strdup_printf("/v1/push/%s", a);
        rc = api_call(o, "POST", path, NULL, 0);
    }
    if (rc == 2)
        cli_usage(command, stderr);
    free(path);
    free(a);
    free(b);
    curl_easy_cleanup(c);
    return rc;
}

int cli_main(const char *command, int argc, char **argv)
{
    cli_opts_t o;
    memset(&o, 0, sizeof o);
    o.server = getenv("ORCHARD_SERVER");
    o.api_key = getenv("ORCHARD_API_KEY");
    o.data_dir = getenv("ORCHARD_DATA_DIR");
    int p = parse_opts(argc, argv, &o);
    if (p != 0) {
        cli_usage(command, p > 0 ? stdout : stderr);
        return p > 0 ? 0 : 2;
    }
    if (!o.server || !*o.server)
        o.server = "https://127.0.0.1:8443";
    if (!o.data_dir || !*o.data_dir)
        o.data_dir = "./var";
    if (o.api_key && !*o.api_key)
        o.api_key = NULL;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    int rc = run(command, &o);
    curl_global_cleanup();
    return rc;
}
