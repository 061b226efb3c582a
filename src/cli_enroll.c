/* `orchard certs|admission|renew|challenge|profile` (see cli_enroll.h). */
#include "cli_enroll.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "cli_http.h"
#include "util.h"

typedef struct {
    cli_conn_t conn;
    const char *udid, *days, *limit, *secret, *output;
    int dry_run, pkcs12;
    const char *pos[3];
    int npos;
} opts_t;

static const char *const usage_text[][2] = {
    {"certs", "usage: orchard certs list [--udid UDID] [--expiring-within-days N] [--limit N]\n"
              "       orchard certs show SERIAL\n"
              "       orchard certs revoke SERIAL\n"
              "  Device certificates orchard issued (SCEP, PKCS#12 profiles).\n"},
    {"admission", "usage: orchard admission allow|deny|show SERIAL-OR-UDID\n"
                  "  The known-devices list used with --admission known.\n"},
    {"renew", "usage: orchard renew --days N [--dry-run]\n"
              "  Queues InstallProfile with a fresh enrollment profile for every active device whose\n"
              "  identity certificate expires within N days, and pushes them.\n"},
    {"challenge", "usage: orchard challenge [--udid UDID]\n"
                  "  Creates a one-time SCEP challenge (valid one hour), bound to UDID if given.\n"},
    {"profile", "usage: orchard profile [--secret S] [--pkcs12] [--output FILE]\n"
                "  Fetches the signed enrollment profile (GET /enroll) with the enrollment secret\n"
                "  (--secret, ORCHARD_ENROLL_SECRET, or DIR/enroll.secret) and writes it to FILE or\n"
                "  standard output: orchard profile > enroll.mobileconfig\n"},
};

static void usage(const char *command, FILE *out)
{
    for (size_t i = 0; i < sizeof usage_text / sizeof usage_text[0]; i++)
        if (strcmp(usage_text[i][0], command) == 0)
            fputs(usage_text[i][1], out);
    fputs("\ncommon options:\n"
          "  --server URL     orchard's base URL [env ORCHARD_SERVER] (default https://127.0.0.1:8443)\n"
          "  --api-key KEY    admin API key [env ORCHARD_API_KEY] (default: read DIR/api.key)\n"
          "  --data-dir DIR   where api.key, enroll.secret and ca.pem are [env ORCHARD_DATA_DIR] (default ./var)\n"
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
        {"--server", offsetof(opts_t, conn.server)},
        {"--api-key", offsetof(opts_t, conn.api_key)},
        {"--data-dir", offsetof(opts_t, conn.data_dir)},
        {"--cacert", offsetof(opts_t, conn.cacert)},
        {"--udid", offsetof(opts_t, udid)},
        {"--days", offsetof(opts_t, days)},
        {"--expiring-within-days", offsetof(opts_t, days)},
        {"--limit", offsetof(opts_t, limit)},
        {"--secret", offsetof(opts_t, secret)},
        {"--output", offsetof(opts_t, output)},
    };
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0)
            return 1;
        if (strcmp(a, "--insecure") == 0) {
            o->conn.insecure = 1;
            continue;
        }
        if (strcmp(a, "--dry-run") == 0) {
            o->dry_run = 1;
            continue;
        }
        if (strcmp(a, "--pkcs12") == 0) {
            o->pkcs12 = 1;
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
        if (o->npos == 3) {
            fprintf(stderr, "orchard: too many arguments\n");
            return -1;
        }
        o->pos[o->npos++] = a;
    }
    return 0;
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

/* A whole number as the API wants it; else a usage error. */
static int number_arg(const char *name, const char *v)
{
    char *end;
    long n = v ? strtol(v, &end, 10) : -1;
    if (!v || !*v || *end || n < 0) {
        fprintf(stderr, "orchard: %s takes a whole number\n", name);
        return -1;
    }
    return 0;
}

static int certs(opts_t *o)
{
    const char *sub = o->npos ? o->pos[0] : "list";
    if (strcmp(sub, "list") == 0 && o->npos <= 1) {
        char q[512] = "";
        char *u = o->udid ? escape(o->udid) : NULL;
        if (o->udid && !u)
            return 1;
        if ((o->days && number_arg("--expiring-within-days", o->days)) || (o->limit && number_arg("--limit", o->limit))) {
            free(u);
            return 2;
        }
        snprintf(q, sizeof q, "%s%s%s%s%s%s", u ? "&udid=" : "", u ? u : "", o->days ? "&expiring_within_days=" : "",
                 o->days ? o->days : "", o->limit ? "&limit=" : "", o->limit ? o->limit : "");
        free(u);
        if (*q)
            q[0] = '?';
        char *path = util_strdup_printf("/v1/certificates%s", q);
        int rc = path ? cli_api_call(&o->conn, "GET", path, NULL, 0) : 1;
        free(path);
        return rc;
    }
    if ((strcmp(sub, "show") == 0 || strcmp(sub, "revoke") == 0) && o->npos == 2) {
        char *s = escape(o->pos[1]);
        char *path = s ? util_strdup_printf("/v1/certificates/%s%s", s, strcmp(sub, "revoke") == 0 ? "/revoke" : "")
                       : NULL;
        int rc = path ? cli_api_call(&o->conn, strcmp(sub, "revoke") == 0 ? "POST" : "GET", path, NULL, 0) : 1;
        free(path);
        free(s);
        return rc;
    }
    return 2;
}

static int admission(opts_t *o)
{
    if (o->npos != 2)
        return 2;
    const char *sub = o->pos[0];
    const char *method = strcmp(sub, "allow") == 0  ? "PUT"
                         : strcmp(sub, "deny") == 0 ? "DELETE"
                         : strcmp(sub, "show") == 0 ? "GET"
                                                    : NULL;
    if (!method)
        return 2;
    char *id = escape(o->pos[1]);
    char *path = id ? util_strdup_printf("/v1/admission/%s", id) : NULL;
    int rc = path ? cli_api_call(&o->conn, method, path, NULL, 0) : 1;
    free(path);
    free(id);
    return rc;
}

static int renew(opts_t *o)
{
    if (o->npos != 0 || !o->days) {
        fprintf(stderr, "orchard: renew needs --days N\n");
        return 2;
    }
    if (number_arg("--days", o->days))
        return 2;
    char *path = util_strdup_printf("/v1/renewals?days=%s%s", o->days, o->dry_run ? "&dry_run=1" : "");
    int rc = path ? cli_api_call(&o->conn, "POST", path, NULL, 0) : 1;
    free(path);
    return rc;
}

static int challenge(opts_t *o)
{
    if (o->npos != 0)
        return 2;
    char *u = o->udid ? escape(o->udid) : NULL;
    char *path = util_strdup_printf("/v1/challenges%s%s", u ? "?udid=" : "", u ? u : "");
    int rc = path ? cli_api_call(&o->conn, "POST", path, NULL, 0) : 1;
    free(path);
    free(u);
    return rc;
}

static int profile(opts_t *o)
{
    if (o->npos != 0)
        return 2;
    if (!o->output && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "orchard: the profile is binary: redirect standard output or use --output FILE\n");
        return 2;
    }
    char *secret = o->secret ? strdup(o->secret) : NULL;
    if (!secret && getenv("ORCHARD_ENROLL_SECRET") && *getenv("ORCHARD_ENROLL_SECRET"))
        secret = strdup(getenv("ORCHARD_ENROLL_SECRET"));
    if (!secret && !(secret = cli_read_secret(&o->conn, "enroll.secret", "enrollment secret (use --secret)")))
        return 2;
    /* HTTP Basic rather than ?secret=: query strings end up in proxy logs. */
    char *userpass = util_strdup_printf("orchard:%s", secret);
    char *b64 = userpass ? util_base64_encode((const unsigned char *)userpass, strlen(userpass)) : NULL;
    char *auth = b64 ? util_strdup_printf("Authorization: Basic %s", b64) : NULL;
    curl_buffer_t out;
    long status = auth ? cli_http_request(&o->conn, "GET", o->pkcs12 ? "/enroll?identity=pkcs12" : "/enroll", auth,
                                          NULL, NULL, 0, &out)
                       : -1;
    char *parts[] = {secret, userpass, b64, auth};
    for (size_t i = 0; i < 4; i++) {
        if (parts[i]) {
            OPENSSL_cleanse(parts[i], strlen(parts[i]));
            free(parts[i]);
        }
    }
    if (status < 0)
        return 1;
    int rc = 1;
    if (status != 200) {
        fprintf(stderr, "orchard: server answered %ld: %s", status, out.data ? out.data : "\n");
    } else if (o->output) {
        if (util_write_file(o->output, out.data, out.len, 0600) == 0) {
            fprintf(stderr, "orchard: wrote %s (%zu bytes)\n", o->output, out.len);
            rc = 0;
        } else {
            fprintf(stderr, "orchard: cannot write %s\n", o->output);
        }
    } else {
        rc = fwrite(out.data, 1, out.len, stdout) == out.len && fflush(stdout) == 0 ? 0 : 1;
    }
    /* It holds a live one-time challenge (or a PKCS#12 password). */
    if (out.data)
        OPENSSL_cleanse(out.data, out.len);
    curl_buffer_free(&out);
    return rc;
}

int cli_enroll_main(const char *command, int argc, char **argv)
{
    opts_t o;
    memset(&o, 0, sizeof o);
    o.conn.server = getenv("ORCHARD_SERVER");
    o.conn.api_key = getenv("ORCHARD_API_KEY");
    o.conn.data_dir = getenv("ORCHARD_DATA_DIR");
    int p = parse(argc, argv, &o);
    if (p != 0) {
        usage(command, p > 0 ? stdout : stderr);
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
    if (strcmp(command, "certs") == 0)
        rc = certs(&o);
    else if (strcmp(command, "admission") == 0)
        rc = admission(&o);
    else if (strcmp(command, "renew") == 0)
        rc = renew(&o);
    else if (strcmp(command, "challenge") == 0)
        rc = challenge(&o);
    else if (strcmp(command, "profile") == 0)
        rc = profile(&o);
    if (rc == 2)
        usage(command, stderr);
    curl_global_cleanup();
    return rc;
}
