/* Mdm-Signature verification micro-benchmark.
 *
 * Builds a throw-away CA with pki_bootstrap (RSA-2048 root, as a real
 * install) in a temporary directory, issues P-256 device identities with
 * testpki_issue_device_identity, signs a 150-byte Idle check-in body as a
 * device does, and reports in one run, microseconds per call:
 *   cold   identity_from_mdm_signature, first sight of each device
 *          certificate (a different device every call: nothing cached);
 *   warm   identity_from_mdm_signature, the same device again (its
 *          certificate chain cached, when the verifier caches);
 *   warm2  the same from 2 threads at once (per call, wall time / calls);
 *   verify identity_verify_cert alone (chain to the RSA CA; never cached);
 *   d2i    d2i_X509 of the device certificate (OpenSSL 3.0 decodes the key
 *          through its provider decoders: what a cold call pays per cert);
 *   floor  EVP_DigestVerifyInit + EVP_DigestVerify, ECDSA P-256/SHA-256,
 *          over the same body with the same key: what any verification of a
 *          fresh signature must pay; floor0 the bare EVP_PKEY_verify on a
 *          ready digest and context.
 * Single-threaded figures are CPU time of the calling thread (steadier than
 * wall time on a shared machine); warm2 is wall time. Only interfaces that
 * identity.h has always had are used, so the same file measures an older
 * identity.c as well. Removes its directory; returns 0 on success.
 *   identity_verify [--iterations N]
 */
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "identity.h"
#include "pki.h"
#include "testpki.h"
#include "util.h"

/* An Idle check-in, 175 bytes. */
static const char BODY[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n"
                           "\t<key>Status</key>\n\t<string>Idle</string>\n\t<key>UDID</key>\n"
                           "\t<string>BENCH-000000</string>\n</dict>\n</plist>\n";

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

typedef struct {
    identity_verifier_t *v;
    const char *sig;
    int n;
    int failures;
} warm_arg_t;

static void *warm_loop(void *p)
{
    warm_arg_t *a = p;
    char reason[256];
    for (int i = 0; i < a->n; i++) {
        X509 *x = identity_from_mdm_signature(a->v, a->sig, BODY, sizeof BODY - 1, reason, sizeof reason);
        if (!x)
            a->failures++;
        X509_free(x);
    }
    return NULL;
}

/* Microseconds of this thread's CPU time. */
static int64_t cpu_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static double per_call(int64_t t0, int n)
{
    return (double)(cpu_us() - t0) / n;
}

int main(int argc, char **argv)
{
    int iters = 4000;
    if (argc == 3 && strcmp(argv[1], "--iterations") == 0)
        iters = atoi(argv[2]);
    if (iters < 10) {
        fprintf(stderr, "usage: identity_verify [--iterations N>=10]\n");
        return 2;
    }
    int ncold = iters / 8 < 100 ? 100 : iters / 8; /* each needs its own certificate: slow to issue */

    char dir[] = "/tmp/orchard-bench-identity-XXXXXX";
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        return 1;
    }
    int rc = 1;
    char *err = NULL, *ca = util_strdup_printf("%s/ca.pem", dir), *ca_key = util_strdup_printf("%s/ca.key", dir);
    identity_verifier_t *v = NULL;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char *sig = NULL;
    char **cold_sigs = calloc((size_t)ncold, sizeof *cold_sigs);
    unsigned char *cert_der = NULL;
    EVP_PKEY_CTX *pctx = NULL;
    char reason[256];
    const size_t blen = sizeof BODY - 1;

    if (!ca || !ca_key || !cold_sigs || pki_bootstrap(dir, "localhost", &err) != 0 ||
        !(v = identity_verifier_new(ca, &err)) ||
        testpki_issue_device_identity(ca, ca_key, "BENCH-000000", &key, &cert) != 0 ||
        !(sig = testpki_mdm_signature(cert, key, BODY, blen))) {
        fprintf(stderr, "setup failed: %s\n", err ? err : "?");
        goto out;
    }
    for (int i = 0; i < ncold; i++) {
        EVP_PKEY *k = NULL;
        X509 *c = NULL;
        char cn[32];
        snprintf(cn, sizeof cn, "BENCH-%06d", i + 1);
        if (testpki_issue_device_identity(ca, ca_key, cn, &k, &c) != 0 ||
            !(cold_sigs[i] = testpki_mdm_signature(c, k, BODY, blen))) {
            fprintf(stderr, "cannot issue device identity %d\n", i);
            EVP_PKEY_free(k);
            X509_free(c);
            goto out;
        }
        EVP_PKEY_free(k);
        X509_free(c);
    }
    printf("identity_verify: P-256 device certificates from an RSA-2048 CA, %zu-byte body, "
           "%d warm / %d cold calls\n",
           blen, iters, ncold);

    /* cold: every call a certificate not seen before */
    int64_t t0 = cpu_us();
    for (int i = 0; i < ncold; i++) {
        X509 *x = identity_from_mdm_signature(v, cold_sigs[i], BODY, blen, reason, sizeof reason);
        if (!x) {
            fprintf(stderr, "cold verification failed: %s\n", reason);
            goto out;
        }
        X509_free(x);
    }
    double cold = per_call(t0, ncold);

    /* warm: the same device again and again */
    warm_arg_t one = {v, sig, 1, 0};
    warm_loop(&one); /* first sight */
    one.n = iters;
    t0 = cpu_us();
    warm_loop(&one);
    double warm = per_call(t0, iters);

    warm_arg_t two[2] = {{v, sig, iters / 2, 0}, {v, sig, iters / 2, 0}};
    pthread_t th[2];
    int64_t w0 = util_now_us();
    for (int i = 0; i < 2; i++)
        if (pthread_create(&th[i], NULL, warm_loop, &two[i]) != 0) {
            fprintf(stderr, "pthread_create failed\n");
            for (int j = 0; j < i; j++)
                pthread_join(th[j], NULL);
            goto out;
        }
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    double warm2 = (double)(util_now_us() - w0) / (2 * (iters / 2));
    if (one.failures || two[0].failures || two[1].failures) {
        fprintf(stderr, "warm verification failed\n");
        goto out;
    }

    t0 = cpu_us();
    for (int i = 0; i < iters; i++)
        if (identity_verify_cert(v, cert, NULL, reason, sizeof reason) != 0) {
            fprintf(stderr, "identity_verify_cert failed: %s\n", reason);
            goto out;
        }
    double verify = per_call(t0, iters);

    int cert_len = i2d_X509(cert, &cert_der);
    if (cert_len <= 0)
        goto out;
    t0 = cpu_us();
    for (int i = 0; i < iters; i++) {
        const unsigned char *p = cert_der;
        X509 *x = d2i_X509(NULL, &p, cert_len);
        if (!x)
            goto out;
        X509_free(x);
    }
    double d2i = per_call(t0, iters);

    /* The floor: ECDSA P-256 over the same body. */
    unsigned char ecsig[128], digest[32];
    size_t ecsig_len = sizeof ecsig;
    EVP_MD_CTX *mctx = EVP_MD_CTX_new();
    int ok = mctx && EVP_DigestSignInit(mctx, NULL, EVP_sha256(), NULL, key) == 1 &&
             EVP_DigestSign(mctx, ecsig, &ecsig_len, (const unsigned char *)BODY, blen) == 1;
    EVP_MD_CTX_free(mctx);
    EVP_PKEY *pub = X509_get0_pubkey(cert);
    if (!ok || !pub)
        goto out;
    t0 = cpu_us();
    for (int i = 0; i < iters; i++) {
        EVP_MD_CTX *c = EVP_MD_CTX_new();
        int good = c && EVP_DigestVerifyInit(c, NULL, EVP_sha256(), NULL, pub) == 1 &&
                   EVP_DigestVerify(c, ecsig, ecsig_len, (const unsigned char *)BODY, blen) == 1;
        EVP_MD_CTX_free(c);
        if (!good)
            goto out;
    }
    double floor = per_call(t0, iters);

    unsigned int dlen = 0;
    pctx = EVP_PKEY_CTX_new(pub, NULL);
    if (!pctx || EVP_PKEY_verify_init(pctx) != 1 ||
        EVP_Digest(BODY, blen, digest, &dlen, EVP_sha256(), NULL) != 1)
        goto out;
    t0 = cpu_us();
    for (int i = 0; i < iters; i++)
        if (EVP_PKEY_verify(pctx, ecsig, ecsig_len, digest, dlen) != 1)
            goto out;
    double floor0 = per_call(t0, iters);

    printf("  identity_from_mdm_signature, cold (first sight)   %8.1f us\n", cold);
    printf("  identity_from_mdm_signature, warm                 %8.1f us\n", warm);
    printf("  identity_from_mdm_signature, warm, 2 threads      %8.1f us wall per call\n", warm2);
    printf("  identity_verify_cert                              %8.1f us\n", verify);
    printf("  d2i_X509 (device certificate)                     %8.1f us\n", d2i);
    printf("  floor: EVP_DigestVerify, P-256 (init + verify)    %8.1f us\n", floor);
    printf("  floor: EVP_PKEY_verify, ready context             %8.1f us\n", floor0);
    rc = 0;

out:
    if (rc != 0)
        fprintf(stderr, "identity_verify: failed\n");
    ERR_clear_error();
    EVP_PKEY_CTX_free(pctx);
    OPENSSL_free(cert_der);
    for (int i = 0; cold_sigs && i < ncold; i++)
        free(cold_sigs[i]);
    free(cold_sigs);
    free(sig);
    X509_free(cert);
    EVP_PKEY_free(key);
    identity_verifier_free(v);
    free(err);
    free(ca);
    free(ca_key);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return rc;
}
