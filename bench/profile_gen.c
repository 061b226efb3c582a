/* Benchmark: signed enrollment profile generations per second, next to the
 * raw signing cost of the key that signs them, measured in the same run.
 *
 * A profile is: build the plist (SCEP, MDM and two anchor payloads, as the
 * server makes them), write the XML, CMS-sign it (SHA-256, signed
 * attributes, chain attached). The server's key is P-256 (tls.key); an
 * RSA-2048 signing identity is measured too. The raw figures are one
 * EVP_DigestSign over 1 KiB with the same key: the ceiling for signed
 * profiles per second on one core.
 *
 *   build/rel/bench/profile_gen [--seconds S]   (default 1.5 per figure)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki.h"
#include "plist.h"
#include "profile.h"
#include "util.h"

static double seconds_per_figure = 1.5;

typedef int (*op_fn)(void *ctx);

/* Runs op until the time is up; operations per second (-1 on failure). */
static double measure(op_fn op, void *ctx)
{
    /* Warm-up: first calls load providers and fill caches. */
    for (int i = 0; i < 3; i++)
        if (op(ctx) != 0)
            return -1;
    int64_t start = util_now_us(), limit = (int64_t)(seconds_per_figure * 1e6), elapsed = 0;
    long n = 0;
    do {
        for (int i = 0; i < 16; i++, n++)
            if (op(ctx) != 0)
                return -1;
        elapsed = util_now_us() - start;
    } while (elapsed < limit);
    return (double)n * 1e6 / (double)elapsed;
}

typedef struct {
    EVP_PKEY *key;
    unsigned char msg[1024];
} raw_ctx_t;

static int raw_sign(void *p)
{
    raw_ctx_t *c = p;
    unsigned char sig[512];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    int ok = md && EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, c->key) == 1 &&
             EVP_DigestSign(md, sig, &siglen, c->msg, sizeof c->msg) == 1;
    EVP_MD_CTX_free(md);
    return ok ? 0 : -1;
}

typedef struct {
    profile_opts_t opts;
    X509 *cert;
    EVP_PKEY *key;
    STACK_OF(X509) *chain;
    size_t last_len;
} gen_ctx_t;

static int build_only(void *p)
{
    gen_ctx_t *c = p;
    char err[256];
    plist_t *pl = profile_build(&c->opts, err, sizeof err);
    size_t len = 0;
    char *xml = pl ? plist_to_xml(pl, &len) : NULL;
    plist_free(pl);
    free(xml);
    c->last_len = len;
    return xml ? 0 : -1;
}

static int generate(void *p)
{
    gen_ctx_t *c = p;
    unsigned char *der = NULL;
    size_t len = 0;
    char err[256];
    if (profile_generate(&c->opts, c->cert, c->key, c->chain, &der, &len, err, sizeof err) != 0) {
        fprintf(stderr, "profile_generate: %s\n", err);
        return -1;
    }
    OPENSSL_free(der);
    c->last_len = len;
    return 0;
}

/* A signing identity issued by ca/ca_key: the server's TLS certificate. */
static int make_identity(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *key, gen_ctx_t *g)
{
    const char *sans[] = {"mdm.example.com"};
    g->key = key;
    g->cert = key ? pki_issue_cert(ca, ca_key, key, "mdm.example.com", 30, PKI_USAGE_SERVER, sans, 1) : NULL;
    g->chain = sk_X509_new_null();
    if (!g->cert || !g->chain)
        return -1;
    X509_up_ref(g->cert);
    sk_X509_push(g->chain, g->cert);
    X509_up_ref(ca);
    sk_X509_push(g->chain, ca);
    profile_opts_init(&g->opts);
    g->opts.public_url = "https://mdm.example.com:8443";
    g->opts.topic = "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555";
    g->opts.org_name = "Example Org";
    g->opts.scep_challenge = "0123456789abcdef0123456789abcdef";
    g->opts.subject_cn = "00008110-000A1B2C3D4E5F60";
    g->opts.anchors = g->chain;
    return 0;
}

static void free_identity(gen_ctx_t *g)
{
    X509_free(g->cert);
    EVP_PKEY_free(g->key);
    sk_X509_pop_free(g->chain, X509_free);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc) {
            seconds_per_figure = atof(argv[++i]);
        } else {
            fprintf(stderr, "usage: profile_gen [--seconds S]\n");
            return 2;
        }
    }
    if (seconds_per_figure <= 0)
        seconds_per_figure = 1.5;

    /* As pki_bootstrap makes them: RSA-2048 CA, P-256 TLS key. */
    EVP_PKEY *ca_key = pki_new_rsa_key(2048);
    X509 *ca = ca_key ? pki_issue_cert(NULL, ca_key, ca_key, "bench CA", 365, PKI_USAGE_CA, NULL, 0) : NULL;
    gen_ctx_t ec, rsa;
    memset(&ec, 0, sizeof ec);
    memset(&rsa, 0, sizeof rsa);
    int rc = 1;
    if (!ca || make_identity(ca, ca_key, pki_new_ec_key(), &ec) != 0 ||
        make_identity(ca, ca_key, pki_new_rsa_key(2048), &rsa) != 0) {
        fprintf(stderr, "profile_gen: cannot create the test identities\n");
        goto out;
    }
    raw_ctx_t raw_ec = {.key = ec.key}, raw_rsa = {.key = rsa.key};
    memset(raw_ec.msg, 'x', sizeof raw_ec.msg);
    memset(raw_rsa.msg, 'x', sizeof raw_rsa.msg);

    double r_ec = measure(raw_sign, &raw_ec);
    double r_rsa = measure(raw_sign, &raw_rsa);
    double b = measure(build_only, &ec);
    size_t xml_len = ec.last_len;
    double g_ec = measure(generate, &ec);
    size_t der_len = ec.last_len;
    double g_rsa = measure(generate, &rsa);
    if (r_ec < 0 || r_rsa < 0 || b < 0 || g_ec < 0 || g_rsa < 0) {
        fprintf(stderr, "profile_gen: an operation failed\n");
        goto out;
    }
    printf("signed enrollment profiles, one thread, %.1f s per figure\n", seconds_per_figure);
    printf("  profile XML %zu bytes, signed %zu bytes (SCEP + MDM + 2 anchor payloads)\n", xml_len, der_len);
    printf("  %-42s %10.0f /s  (%7.1f us)\n", "raw sign, ECDSA P-256 (SHA-256, 1 KiB)", r_ec, 1e6 / r_ec);
    printf("  %-42s %10.0f /s  (%7.1f us)\n", "raw sign, RSA-2048 (SHA-256, 1 KiB)", r_rsa, 1e6 / r_rsa);
    printf("  %-42s %10.0f /s  (%7.1f us)\n", "build + write XML, unsigned", b, 1e6 / b);
    printf("  %-42s %10.0f /s  (%7.1f us)  %.0f%% of the raw P-256 ceiling\n", "signed profile, P-256 key (server)",
           g_ec, 1e6 / g_ec, 100.0 * g_ec / r_ec);
    printf("  %-42s %10.0f /s  (%7.1f us)  %.0f%% of the raw RSA-2048 ceiling\n", "signed profile, RSA-2048 key", g_rsa,
           1e6 / g_rsa, 100.0 * g_rsa / r_rsa);
    rc = 0;
out:
    free_identity(&ec);
    free_identity(&rsa);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    ERR_clear_error();
    return rc;
}
