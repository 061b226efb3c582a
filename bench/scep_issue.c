/* SCEP issuance benchmark: certificates per second through scep.c's core
 * (no HTTP, no storage), next to the raw signing cost of the keys involved,
 * measured in the same run:
 *
 *   rsa2048-sign  EVP_DigestSign SHA-256 with the CA key (orchard's CA is
 *                 RSA-2048): each issuance needs three CA private-key
 *                 operations (decrypt the request, sign the certificate,
 *                 sign the CertRep), so rsa2048-sign / 3 is the ceiling;
 *   p256-sign     ECDSA P-256 SHA-256, for comparison (device keys, TLS);
 *   issue-rsa     parse (verify + decrypt + CSR checks) → issue → CertRep
 *                 SUCCESS encrypted to an RSA-2048 requester, the device case;
 *   issue-p256    the same for P-256 requesters (answer by ECDH).
 * Also the share of each phase (parse / issue / CertRep) for issue-rsa.
 *
 * Requests are built in advance by tests/support/testscep.c (distinct keys,
 * reused round-robin; the server side does not cache anything across them).
 * Usage: scep_issue [--seconds S] [--requests N]   (defaults 2 s, 8)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "pki.h"
#include "scep.h"
#include "testscep.h"
#include "util.h"

static double seconds = 2.0;

static double now_s(void)
{
    return (double)util_now_us() / 1e6;
}

/* Signatures per second with key over a 32-byte message. */
static double sign_rate(EVP_PKEY *key)
{
    unsigned char msg[32] = {0}, sig[512];
    long n = 0;
    double t0 = now_s(), t;
    do {
        for (int i = 0; i < 16; i++) {
            EVP_MD_CTX *ctx = EVP_MD_CTX_new();
            size_t len = sizeof sig;
            if (!ctx || EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, key) != 1 ||
                EVP_DigestSign(ctx, sig, &len, msg, sizeof msg) != 1) {
                EVP_MD_CTX_free(ctx);
                return -1;
            }
            EVP_MD_CTX_free(ctx);
            msg[0]++;
            n++;
        }
        t = now_s() - t0;
    } while (t < seconds);
    return (double)n / t;
}

typedef struct {
    double parse, issue, certrep; /* seconds spent */
    long done, errors;
} run_t;

/* One issuance as the server does it (minus HTTP and storage). */
static int issue_one(const testscep_request_t *req, X509 *ca, EVP_PKEY *ca_key, run_t *r)
{
    double t0 = now_s();
    scep_request_t sr;
    char why[256];
    int rc = scep_parse_request(req->der, req->der_len, ca, ca_key, &sr, why, sizeof why);
    double t1 = now_s();
    X509 *cert = NULL;
    unsigned char *der = NULL;
    size_t len = 0;
    int ok = rc == SCEP_PARSE_OK && sr.challenge && strcmp(sr.challenge, "bench-challenge") == 0 &&
             (cert = scep_issue_cert(sr.csr, ca, ca_key, 365)) != NULL;
    double t2 = now_s();
    ok = ok && scep_certrep_success(&sr, ca, ca_key, cert, &der, &len) == 0;
    double t3 = now_s();
    if (!ok && rc != SCEP_PARSE_OK)
        fprintf(stderr, "scep_issue: parse failed: %s\n", why);
    OPENSSL_free(der);
    X509_free(cert);
    scep_request_free(&sr);
    r->parse += t1 - t0;
    r->issue += t2 - t1;
    r->certrep += t3 - t2;
    if (ok)
        r->done++;
    else
        r->errors++;
    return ok ? 0 : -1;
}

static double issue_rate(testscep_request_t *reqs, int n, X509 *ca, EVP_PKEY *ca_key, run_t *r)
{
    memset(r, 0, sizeof *r);
    double t0 = now_s(), t;
    int i = 0;
    do {
        issue_one(&reqs[i], ca, ca_key, r);
        i = (i + 1) % n;
        t = now_s() - t0;
    } while (t < seconds && r->errors == 0);
    return r->errors ? -1 : (double)r->done / t;
}

static int build_requests(testscep_request_t *reqs, int n, testscep_key_t type, X509 *ca)
{
    for (int i = 0; i < n; i++) {
        char cn[64], err[256];
        snprintf(cn, sizeof cn, "BENCH-DEVICE-%d", i);
        testscep_opts_t o;
        memset(&o, 0, sizeof o);
        o.cn = cn;
        o.challenge = "bench-challenge";
        o.key_type = type;
        if (testscep_build_request(&o, ca, &reqs[i], err, sizeof err) != 0) {
            fprintf(stderr, "scep_issue: cannot build request %d: %s\n", i, err);
            for (int j = 0; j < i; j++)
                testscep_request_free(&reqs[j]);
            return -1;
        }
    }
    return 0;
}

int main(int argc, char **argv)
{
    int nreq = 8;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--seconds") == 0 && i + 1 < argc)
            seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "--requests") == 0 && i + 1 < argc)
            nreq = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: scep_issue [--seconds S] [--requests N]\n");
            return 2;
        }
    }
    if (seconds <= 0 || nreq < 1 || nreq > 1000) {
        fprintf(stderr, "scep_issue: --seconds must be > 0 and --requests 1..1000\n");
        return 2;
    }
    int rc = 1;
    EVP_PKEY *ca_key = pki_new_rsa_key(2048);
    EVP_PKEY *ec_key = pki_new_ec_key();
    X509 *ca = ca_key ? pki_issue_cert(NULL, ca_key, ca_key, "bench SCEP CA", 3650, PKI_USAGE_CA, NULL, 0) : NULL;
    testscep_request_t *rsa_reqs = calloc((size_t)nreq, sizeof *rsa_reqs);
    testscep_request_t *ec_reqs = calloc((size_t)nreq, sizeof *ec_reqs);
    int have_rsa = 0, have_ec = 0;
    if (!ca || !ec_key || !rsa_reqs || !ec_reqs) {
        fprintf(stderr, "scep_issue: setup failed\n");
        goto out;
    }
    if (build_requests(rsa_reqs, nreq, TESTSCEP_KEY_RSA, ca) != 0)
        goto out;
    have_rsa = 1;
    if (build_requests(ec_reqs, nreq, TESTSCEP_KEY_P256, ca) != 0)
        goto out;
    have_ec = 1;

    double rsa_sign = sign_rate(ca_key);
    double p256_sign = sign_rate(ec_key);
    run_t rr, er;
    double rsa_issue = issue_rate(rsa_reqs, nreq, ca, ca_key, &rr);
    double ec_issue = issue_rate(ec_reqs, nreq, ca, ca_key, &er);
    if (rsa_sign < 0 || p256_sign < 0 || rsa_issue < 0 || ec_issue < 0) {
        fprintf(stderr, "scep_issue: a measurement failed\n");
        goto out;
    }
    printf("SCEP issuance through scep.c (one thread, %.1f s per figure, %d distinct requests)\n", seconds, nreq);
    printf("  %-14s %10.0f /s\n", "rsa2048-sign", rsa_sign);
    printf("  %-14s %10.0f /s\n", "p256-sign", p256_sign);
    printf("  %-14s %10.0f /s   (ceiling rsa2048-sign/3 = %.0f /s: %.0f%% of it)\n", "issue-rsa", rsa_issue,
           rsa_sign / 3, 100.0 * rsa_issue / (rsa_sign / 3));
    printf("  %-14s %10.0f /s\n", "issue-p256", ec_issue);
    double total = rr.parse + rr.issue + rr.certrep;
    printf("  issue-rsa per certificate: %.2f ms = parse %.2f + issue %.2f + CertRep %.2f\n",
           1000.0 * total / (double)rr.done, 1000.0 * rr.parse / (double)rr.done,
           1000.0 * rr.issue / (double)rr.done, 1000.0 * rr.certrep / (double)rr.done);
    rc = 0;
out:
    for (int i = 0; have_rsa && i < nreq; i++)
        testscep_request_free(&rsa_reqs[i]);
    for (int i = 0; have_ec && i < nreq; i++)
        testscep_request_free(&ec_reqs[i]);
    free(rsa_reqs);
    free(ec_reqs);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(ec_key);
    scep_global_cleanup();
    return rc;
}
