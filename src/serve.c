/* `orchard serve`: prepare the data directory, then run the server. */
#include "serve.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/hmac.h>
#include <openssl/x509.h>

#include "apns.h"
#include "app.h"
#include "config.h"
#include "http_server.h"
#include "identity.h"
#include "ade_sync.h"
#include "ade_syncer.h"
#include "inactivity.h"
#include "log.h"
#include "mdm_checkin.h"
#include "pairing.h"
#include "pki.h"
#include "push.h"
#include "seal.h"
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

/* A secret: given, or read from DIR/NAME, or generated once there (and
 * printed once, on the terminal that created it, never to the log). */
static char *load_secret(const char *given, const char *data_dir, const char *name, const char *what)
{
    if (given)
        return strdup(given);
    char *path = util_strdup_printf("%s/%s", data_dir, name);
    if (!path)
        return NULL;
    size_t len = 0;
    char *key = util_read_file(path, 4096, &len);
    if (key) {
        key[strcspn(key, "\r\n")] = '\0';
        if (strlen(key) < 16) {
            log_error("%s holds a secret shorter than 16 characters", path);
            free(key);
            key = NULL;
        } else {
            log_info("%s: in %s", what, path);
        }
        free(path);
        return key;
    }
    key = malloc(65);
    if (!key || util_random_hex(key, 32) != 0 || util_write_file(path, key, 64, 0600) != 0) {
        log_error("cannot create the %s file %s", what, path);
        free(key);
        free(path);
        return NULL;
    }
    printf("orchard: generated the %s (stored in %s):\n%s\n", what, path, key);
    fflush(stdout);
    free(path);
    return key;
}

/* The push topic is the UID of the push certificate's subject. */
static char *topic_of(const char *push_cert_path)
{
    X509 *c = pki_load_cert(push_cert_path);
    if (!c)
        return NULL;
    char *topic = NULL;
    X509_NAME *n = X509_get_subject_name(c);
    int i = X509_NAME_get_index_by_NID(n, NID_userId, -1);
    if (i >= 0) {
        ASN1_STRING *d = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i));
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, d);
        if (len > 0)
            topic = strndup((const char *)utf8, (size_t)len);
        OPENSSL_free(utf8);
    }
    X509_free(c);
    return topic;
}

/* Loads what enrollment needs: the CA (key optional), the TLS identity that
 * signs profiles, the anchors, the push topic and the MachineInfo trust. */
/* ADE configuration URL authentication. The nonce key is derived from the
 * pairing key (DATA_DIR/pairing.key), so instances sharing a data directory
 * accept each other's nonces without another key file. */
static int load_ade_digest(const config_t *cfg, app_t *app)
{
    static const char label[] = "orchard ADE digest nonce key v1";
    unsigned char key[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), app->pairing_key, sizeof app->pairing_key, (const unsigned char *)label,
              sizeof label - 1, key, &n) ||
        n < DIGEST_KEY_LEN) {
        log_error("ADE authentication: cannot derive the nonce key");
        return -1;
    }
    char why[512];
    app->ade_digest = digest_auth_new(cfg->ade_auth, key, cfg->ade_auth_nonce_ttl, 0, why, sizeof why);
    OPENSSL_cleanse(key, sizeof key);
    if (!app->ade_digest) {
        log_error("--ade-auth: %s", why);
        return -1;
    }
    log_info("ADE configuration URL: Digest authentication on (user file %s, realm \"%s\")", cfg->ade_auth,
             digest_auth_realm(app->ade_digest));
    return 0;
}

static int load_enrollment(const config_t *cfg, app_t *app)
{
    char *ca_path = util_strdup_printf("%s/ca.pem", cfg->data_dir);
    char *ca_key_path = util_strdup_printf("%s/ca.key", cfg->data_dir);
    app->ca_cert = ca_path ? pki_load_cert(ca_path) : NULL;
    app->ca_key = ca_key_path && access(ca_key_path, R_OK) == 0 ? pki_load_key(ca_key_path) : NULL;
    free(ca_path);
    free(ca_key_path);
    if (!app->ca_cert) {
        log_error("cannot load the CA certificate from %s/ca.pem", cfg->data_dir);
        return -1;
    }
    if (!app->ca_key)
        log_warn("CA key not available (%s/ca.key): SCEP will refuse to issue certificates", cfg->data_dir);
    app->tls_cert = pki_load_cert(cfg->tls_cert);
    app->tls_key = pki_load_key(cfg->tls_key);
    app->anchors = pki_load_cert_bundle(cfg->tls_cert);
    if (app->anchors) {
        /* Devices need the root too when the chain file holds only the leaf. */
        X509_up_ref(app->ca_cert);
        sk_X509_push(app->anchors, app->ca_cert);
    }
    if (!app->tls_cert || !app->tls_key || !app->anchors) {
        log_error("cannot load the TLS identity (%s, %s) that signs profiles", cfg->tls_cert, cfg->tls_key);
        return -1;
    }
    char *push_default = util_strdup_printf("%s/push.pem", cfg->data_dir);
    /* Profiles name the first topic when several certificates are given. */
    char *first_cert = cfg->push_cert ? strndup(cfg->push_cert, strcspn(cfg->push_cert, ",")) : NULL;
    const char *push_path = first_cert ? first_cert : push_default;
    char *topic = cfg->push_topic ? strdup(cfg->push_topic) : NULL;
    if (!topic && push_path && access(push_path, R_OK) == 0 && !(topic = topic_of(push_path)))
        log_warn("push certificate %s has no UID (topic) in its subject", push_path);
    free(push_default);
    free(first_cert);
    if (!topic)
        log_warn("no push certificate: enrollment profiles cannot be generated until one is imported "
                 "(orchard pushcert import) or --push-topic is set");
    app->push_topic = topic;
    if (cfg->machineinfo_ca) {
        char *err = NULL;
        if (!(app->machineinfo_verifier = identity_verifier_new(cfg->machineinfo_ca, &err))) {
            log_error("cannot load --machineinfo-ca: %s", err ? err : "unknown error");
            free(err);
            return -1;
        }
        identity_verifier_any_purpose(app->machineinfo_verifier);
    }
    /* Watch pairing tokens: the shared HMAC key and the organization id
     * (instances on one data directory share both). */
    char why[512];
    if (pairing_key_load(cfg->data_dir, app->pairing_key, why, sizeof why) != 0) {
        log_error("Apple Watch pairing: %s", why);
        return -1;
    }
    if (seal_key_load(cfg->data_dir, MDM_ESCROW_KEY_FILE, "bootstrap token escrow key", app->escrow_key, why,
                      sizeof why) != 0) {
        log_error("bootstrap token escrow: %s", why);
        return -1;
    }
    if (pairing_org_id(app->ca_cert, app->org_id) != 0) {
        log_error("Apple Watch pairing: cannot hash the CA certificate");
        return -1;
    }
    if (cfg->ade_auth && load_ade_digest(cfg, app) != 0)
        return -1;
    return 0;
}

static void unload_enrollment(app_t *app)
{
    X509_free(app->ca_cert);
    EVP_PKEY_free(app->ca_key);
    X509_free(app->tls_cert);
    EVP_PKEY_free(app->tls_key);
    sk_X509_pop_free(app->anchors, X509_free);
    free((char *)app->push_topic);
    identity_verifier_free(app->machineinfo_verifier);
    OPENSSL_cleanse(app->pairing_key, sizeof app->pairing_key);
    OPENSSL_cleanse(app->escrow_key, sizeof app->escrow_key);
    digest_auth_free(app->ade_digest);
}

/* Splits "a,b,c" into a NULL-terminated array of heap strings. */
static char **split_list(const char *list, size_t *n)
{
    *n = 0;
    size_t cap = 1;
    for (const char *c = list; *c; c++)
        cap += *c == ',';
    char **v = calloc(cap + 1, sizeof *v);
    if (!v)
        return NULL;
    for (const char *c = list;;) {
        size_t len = strcspn(c, ",");
        if (len && !(v[(*n)++] = strndup(c, len)))
            return v; /* the caller frees; a short list is reported as a mismatch */
        if (!c[len])
            break;
        c += len + 1;
    }
    return v;
}

static void free_list(char **v)
{
    for (size_t i = 0; v && v[i]; i++)
        free(v[i]);
    free(v);
}

/* The APNs provider: one topic per --push-cert (and --push-key) entry, or
 * DIR/push.pem + DIR/push.key — watched even while missing, so an import
 * into a running server takes effect without a restart. */
static pusher_t *start_pusher(const config_t *cfg)
{
    size_t nc = 0, nk = 0;
    char **certs = cfg->push_cert ? split_list(cfg->push_cert, &nc) : NULL;
    char **keys = cfg->push_key ? split_list(cfg->push_key, &nk) : NULL;
    pusher_t *p = NULL;
    if (!cfg->push_cert) {
        free_list(certs);
        certs = calloc(2, sizeof *certs);
        if (certs && (certs[0] = util_strdup_printf("%s/push.pem", cfg->data_dir)))
            nc = 1;
    }
    if (!keys && nc == 1) {
        /* The key beside the certificate: push.pem → push.key, as
         * `orchard pushcert import` writes them. */
        keys = calloc(2, sizeof *keys);
        size_t n = strlen(certs[0]);
        int pem = n > 4 && strcmp(certs[0] + n - 4, ".pem") == 0;
        if (keys && (keys[0] = util_strdup_printf("%.*s.key", (int)(pem ? n - 4 : n), certs[0])))
            nk = 1;
    }
    if (nc == 0 || nc != nk) {
        log_error("--push-cert names %zu certificate(s) but --push-key %zu key(s); give one key per certificate, "
                  "in the same order", nc, nk);
        goto out;
    }
    pusher_opts_t o = {
        .db_url = cfg->db,
        .cert_paths = (const char *const *)certs,
        .key_paths = (const char *const *)keys,
        .ntopics = nc,
        .base_url = cfg->apns_url ? cfg->apns_url : cfg->apns_development ? APNS_URL_DEVELOPMENT : APNS_URL_PRODUCTION,
        .ca_file = cfg->apns_ca,
        .expiration_s = cfg->push_expiration,
        .coalesce_ms = cfg->push_coalesce_ms,
        .timeout_s = cfg->push_timeout,
        .attempts = cfg->push_attempts,
        .threads = cfg->push_threads,
    };
    p = pusher_new(&o);
out:
    free_list(certs);
    free_list(keys);
    return p;
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
    char *err = NULL, *host = NULL, *api_key = NULL, *enroll_secret = NULL;
    app_t app;
    memset(&app, 0, sizeof app);
    store_t *store = NULL;
    identity_verifier_t *verifier = NULL;
    pusher_t *pusher = NULL;
    inactivity_t *sweep = NULL;
    SSL_CTX *ssl_ctx = NULL;
    ade_env_t ade;
    int ade_ready = 0;
    ade_syncer_t *ade_syncer = NULL;

    if (mkdir(cfg.data_dir, 0700) != 0 && errno != EEXIST) {
        log_error("cannot create data directory %s: %s", cfg.data_dir, strerror(errno));
        goto out;
    }
    host = public_host(cfg.public_url);
    if (!host || pki_bootstrap(cfg.data_dir, host, &err) != 0) {
        log_error("cannot prepare the CA and TLS certificate: %s", err ? err : "out of memory");
        goto out;
    }
    if (!(api_key = load_secret(cfg.api_key, cfg.data_dir, "api.key", "admin API key")))
        goto out;
    if (!(enroll_secret = load_secret(cfg.enroll_secret, cfg.data_dir, "enroll.secret", "enrollment secret")))
        goto out;
    if (load_enrollment(&cfg, &app) != 0)
        goto out;
    /* Open once up front: applies migrations and refuses a bad database
     * before any worker starts. Workers open their own handles. */
    if (!(store = store_open(cfg.db, &err))) {
        log_error("cannot open database: %s", err ? err : "unknown error");
        goto out;
    }
    /* ADE: the seal key for token credentials, Apple's service, and the
     * renewal warnings at start (the sync thread repeats them daily). */
    char ade_err[256];
    if (!store->ops->ade_token_list || !store->ops->ade_devices_apply || !store->ops->ade_profile_put) {
        log_warn("ADE sync disabled: the %s storage backend has no ADE tokens yet", store->ops->name);
    } else if (ade_env_init(&ade, cfg.data_dir, cfg.db, cfg.public_url, ade_err, sizeof ade_err) != 0) {
        log_error("ADE disabled: %s", ade_err);
    } else {
        ade_ready = 1;
        ade.client.base_url = cfg.ade_url;
        ade.client.ca_file = cfg.ade_ca;
        ade.client.user_agent = "orchard/1";
        ade.interval_s = cfg.ade_sync_interval;
        app.ade = &ade;
        if (cfg.ade_sync_interval <= 0)
            ade_warn_expiry(store, util_now());
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
    if (!(pusher = start_pusher(&cfg)))
        goto out;
    inactivity_opts_t io = {.db_url = cfg.db,
                            .pusher = pusher,
                            .repush_after_s = cfg.repush_after,
                            .inactive_after_s = cfg.inactive_after};
    sweep = inactivity_start(&io);
    if (ade_ready)
        ade_syncer = ade_syncer_start(&ade);

    app.cfg = &cfg;
    app.verifier = verifier;
    app.pusher = pusher;
    app.api_key = api_key;
    app.enroll_secret = enroll_secret;
    rc = http_server_run(&app, ssl_ctx) == 0 ? 0 : 1;
out:
    free(err);
    free(host);
    if (api_key) {
        OPENSSL_cleanse(api_key, strlen(api_key));
        free(api_key);
    }
    if (enroll_secret) {
        OPENSSL_cleanse(enroll_secret, strlen(enroll_secret));
        free(enroll_secret);
    }
    unload_enrollment(&app);
    ade_syncer_stop(ade_syncer);
    if (ade_ready)
        ade_env_clear(&ade);
    inactivity_stop(sweep); /* before the pusher it pushes through */
    pusher_free(pusher);
    SSL_CTX_free(ssl_ctx);
    identity_verifier_free(verifier);
    config_free(&cfg);
    return rc;
}
