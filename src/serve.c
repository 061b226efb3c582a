/* `orchard serve`: prepare the data directory, then run the server. */
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "config.h"
#include "http_server.h"
#include "identity.h"
#include "log.h"
#include "pki.h"
#include "push.h"
#include "store.h"
#include "util.h"

/* The host part of the public URL: what the generated TLS certificate names. */
static char *public_host(const char *url)
{
    const char *p = strstr(url, "://");
    p = p ? p + 3 : url;
    size_t n;
    if (*p == '[') { /* IPv6 literal */
        const char *end = strchr(p, ']');
        if (!end)
            return strdup("localhost");
        p++;
        n = (size_t)(end - p);
    } else {
        n = strcspn(p, ":/");
    }
    return n ? strndup(p, n) : strdup("localhost");
}

/* The admin key: given, or read from DIR/api.key, or generated once there. */
static char *load_api_key(const config_t *cfg)
{
    if (cfg->api_key)
        return strdup(cfg->api_key);
    char *path = util_strdup_printf("%s/api.key", cfg->data_dir);
    if (!path)
        return NULL;
    size_t len = 0;
    char *key = util_read_file(path, 4096, &len);
    if (key) {
        key[strcspn(key, "\r\n")] = '\0';
        if (strlen(key) < 16) {
            log_error("%s holds a key shorter than 16 characters", path);
            free(key);
            key = NULL;
        } else {
            log_info("admin API key: in %s", path);
        }
        free(path);
        return key;
    }
    key = malloc(65);
    if (!key || util_random_hex(key, 32) != 0 || util_write_file(path, key, 64, 0600) != 0) {
        log_error("cannot create the admin API key file %s", path);
        free(key);
        free(path);
        return NULL;
    }
    /* Printed once, on the terminal that created it, never to the log. */
    printf("orchard: generated the admin API key (stored in %s):\n%s\n", path, key);
    fflush(stdout);
    free(path);
    return key;
}

int serve_main(int argc, char **argv)
{
    config_t cfg;
    int prc = config_parse(&cfg, argc, argv);
    if (prc != 0) {
        config_free(&cfg);
        return prc > 0 ? 0 : 2;
    }
    log_set_level(cfg.log_level);
    /* The database holds push and unlock tokens: nothing orchard creates
     * is readable by other users. */
    umask(077);
    int rc = 1;
    char *err = NULL, *host = NULL, *api_key = NULL;
    store_t *store = NULL;
    identity_verifier_t *verifier = NULL;
    pusher_t *pusher = NULL;
    SSL_CTX *ssl_ctx = NULL;

    if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        log_error("cannot create data directory %s: %s", cfg.data_dir, strerror(errno));
        goto out;
    }
    host = public_host(cfg.public_url);
    if (!host || pki_bootstrap(cfg.data_dir, host, &err) != 0) {
        log_error("cannot prepare the CA and TLS certificate: %s", err ? err : "out of memory");
        goto out;
    }
    if (!(api_key = load_api_key(&cfg)))
        goto out;
    /* Open once up front: applies migrations and refuses a bad database
     * before any worker starts. Workers open their own handles. */
    if (!(store = store_open(cfg.db, &err))) {
        log_error("cannot open database: %s", err ? err : "unknown error");
        goto out;
    }
    store_close(store);
    if (!(verifier = identity_verifier_new(cfg.client_ca, &err))) {
        log_error("cannot load the device identity CA: %s", err ? err : "unknown error");
        goto out;
    }
    if (!cfg.insecure_http && !(ssl_ctx = http_tls_context(cfg.tls_cert, cfg.tls_key, cfg.client_ca, &err))) {
        log_error("%s", err ? err : "cannot set up TLS");
        goto out;
    }
    if (cfg.insecure_http && !cfg.client_cert_header)
        log_warn("plain HTTP without --client-cert-header: devices can only identify with Mdm-Signature");
    if (!(pusher = pusher_new()))
        goto out;

    app_t app = {.cfg = &cfg, .verifier = verifier, .pusher = pusher, .api_key = api_key};
    rc = http_server_run(&app, ssl_ctx) == 0 ? 0 : 1;
out:
    free(err);
    free(host);
    if (api_key) {
        OPENSSL_cleanse(api_key, strlen(api_key));
        free(api_key);
    }
    pusher_free(pusher);
    SSL_CTX_free(ssl_ctx);
    identity_verifier_free(verifier);
    config_free(&cfg);
    return rc;
}
