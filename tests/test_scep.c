/* SCEP: the message core (scep.c) against the independent test client
 * (testscep.c), then a real server: enrollment with static and one-time
 * challenges, renewal, every refusal, check-in with the issued identity, and
 * Debian's scepclient as an outside implementation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "devsim.h"
#include "pki.h"
#include "scep.h"
#include "store.h"
#include "testpki.h"
#include "testscep.h"
#include "testserver.h"
#include "util.h"

#define STATIC_CHALLENGE "static-secret-123"
#define SCEPCLIENT "/usr/bin/scepclient"

static testserver_t srv;
/* A CA for the unit tests (no server). */
static X509 *unit_ca;
static EVP_PKEY *unit_ca_key;

/* ---- helpers ---------------------------------------------------------------- */

static testscep_opts_t opts(const char *cn, const char *challenge)
{
    testscep_opts_t o;
    memset(&o, 0, sizeof o);
    o.cn = cn;
    o.challenge = challenge;
    o.key_type = TESTSCEP_KEY_RSA;
    return o;
}

/* Builds a request for the unit CA; fails the test if it cannot. */
static void build(const testscep_opts_t *o, testscep_request_t *req)
{
    char err[256] = "";
    int rc = testscep_build_request(o, unit_ca, req, err, sizeof err);
    if (rc != 0)
        fail_msg("building the request: %s", err);
}

/* scep_parse_request on a built request; returns the SCEP_PARSE_* result. */
static int parse(const testscep_request_t *req, scep_request_t *r, char *why, size_t whylen)
{
    return scep_parse_request(req->der, req->der_len, unit_ca, unit_ca_key, r, why, whylen);
}

/* Parses, expects SCEP_PARSE_REFUSED with `fail`, and checks that the
 * FAILURE CertRep opens on the client side with the same failInfo. */
static void expect_refused(const testscep_request_t *req, scep_fail_t fail, const char *why_part)
{
    scep_request_t r;
    char why[256] = "";
    assert_int_equal(parse(req, &r, why, sizeof why), SCEP_PARSE_REFUSED);
    if (r.fail_info != fail || (why_part && !strstr(why, why_part)))
        fail_msg("refused with %s (%s), expected %s / '%s'", scep_fail_name(r.fail_info), why, scep_fail_name(fail),
                 why_part ? why_part : "");
    unsigned char *der = NULL;
    size_t len = 0;
    assert_int_equal(scep_certrep_failure(&r, unit_ca, unit_ca_key, r.fail_info, &der, &len), 0);
    testscep_result_t res;
    memset(&res, 0, sizeof res);
    char err[256] = "";
    if (testscep_open_response(der, len, unit_ca, req, &res, err, sizeof err) != 0)
        fail_msg("opening the FAILURE CertRep: %s", err);
    assert_int_equal(res.pki_status, SCEP_STATUS_FAILURE);
    assert_int_equal(res.fail_info, (int)fail);
    assert_null(res.cert);
    OPENSSL_free(der);
    scep_request_free(&r);
}

static int has_client_auth(X509 *c)
{
    return (X509_get_extension_flags(c) & EXFLAG_XKUSAGE) && (X509_get_extended_key_usage(c) & XKU_SSL_CLIENT);
}

/* 0 if cert chains to the CA in ca (certificate) for TLS-client use. */
static int chains_to(X509 *cert, X509 *ca)
{
    X509_STORE *st = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int ok = st && ctx && X509_STORE_add_cert(st, ca) == 1 && X509_STORE_CTX_init(ctx, st, cert, NULL) == 1;
    if (ok) {
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
        ok = X509_verify_cert(ctx) == 1;
    }
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(st);
    ERR_clear_error();
    return ok ? 0 : -1;
}

static int chains_to_file(X509 *cert, const char *ca_path)
{
    X509 *ca = pki_load_cert(ca_path);
    int rc = ca ? chains_to(cert, ca) : -1;
    X509_free(ca);
    return rc;
}

static store_t *open_db(void)
{
    char *url = util_strdup_printf("sqlite:%s/orchard.db", srv.dir);
    char *err = NULL;
    store_t *s = store_open(url, &err);
    if (!s)
        fail_msg("store_open %s: %s", url, err ? err : "?");
    free(url);
    free(err);
    return s;
}

static int count_cb(void *ctx, const issued_cert_t *c)
{
    (void)c;
    (*(int *)ctx)++;
    return 0;
}

/* Certificates recorded on the server. */
static int issued_count(void)
{
    store_t *s = open_db();
    int n = 0;
    assert_int_equal(s->ops->cert_list(s, NULL, 0, 1000, count_cb, &n), STORE_OK);
    store_close(s);
    return n;
}

/* The record for cert (looked up by serial); fails the test if absent. */
static void issued_record(X509 *cert, issued_cert_t *out)
{
    char serial[64];
    assert_int_equal(scep_cert_serial_hex(cert, serial, sizeof serial), 0);
    store_t *s = open_db();
    int rc = s->ops->cert_get(s, serial, out);
    store_close(s);
    if (rc != STORE_OK)
        fail_msg("no record for serial %s (rc %d)", serial, rc);
}

/* Runs the full client exchange against the server and returns the result
 * (caller frees). */
static void run(const testscep_opts_t *o, testscep_result_t *res)
{
    int rc = testscep_run(srv.base_url, srv.ca_path, o, res);
    if (rc != 0)
        fail_msg("SCEP exchange failed: %s (HTTP %ld, body '%s')", res->err, res->http_status, res->body_text);
}

static void expect_server_failure(const testscep_opts_t *o, scep_fail_t fail, const char *log_needle)
{
    int before = issued_count();
    testscep_result_t res;
    run(o, &res);
    assert_int_equal(res.http_status, 200);
    if (res.pki_status != SCEP_STATUS_FAILURE || res.fail_info != (int)fail)
        fail_msg("expected FAILURE/%s, got pkiStatus %d failInfo %d", scep_fail_name(fail), res.pki_status,
                 res.fail_info);
    assert_null(res.cert);
    testscep_result_free(&res);
    assert_int_equal(issued_count(), before);
    if (log_needle && !testserver_log_contains(&srv, log_needle))
        fail_msg("server log lacks '%s'", log_needle);
}

/* ---- fixture ------------------------------------------------------------------ */

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    unit_ca_key = pki_new_rsa_key(2048);
    unit_ca = unit_ca_key ? pki_issue_cert(NULL, unit_ca_key, unit_ca_key, "unit SCEP CA", 3650, PKI_USAGE_CA, NULL, 0)
                          : NULL;
    if (!unit_ca)
        return -1;
    const char *args[] = {"--scep-challenge", STATIC_CHALLENGE, NULL};
    return testserver_start(&srv, args);
}

static int teardown(void **state)
{
    (void)state;
    int rc = testserver_stop(&srv);
    X509_free(unit_ca);
    EVP_PKEY_free(unit_ca_key);
    scep_global_cleanup();
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* ---- unit: scep.c ------------------------------------------------------------ */

static void check_issued(X509 *cert, EVP_PKEY *key, const char *cn, int rsa)
{
    assert_int_equal(chains_to(cert, unit_ca), 0);
    assert_true(has_client_auth(cert));
    uint32_t ku = X509_get_key_usage(cert);
    assert_true(ku & KU_DIGITAL_SIGNATURE);
    assert_int_equal(!!(ku & KU_KEY_ENCIPHERMENT), rsa);
    assert_int_equal(X509_check_ca(cert), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), key), 1);
    char buf[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, buf, sizeof buf) > 0);
    assert_string_equal(buf, cn);
    assert_int_equal(X509_NAME_cmp(X509_get_issuer_name(cert), X509_get_subject_name(unit_ca)), 0);
    assert_int_equal(X509_get_signature_nid(cert), NID_sha256WithRSAEncryption);
    /* 128-bit random serial */
    BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
    assert_true(BN_num_bits(bn) > 64 && BN_num_bits(bn) <= 128);
    BN_free(bn);
}

/* Full round trip through the core: request → parse → issue → CertRep →
 * client opens it. */
static void roundtrip(const testscep_opts_t *o, int rsa)
{
    testscep_request_t req;
    build(o, &req);
    scep_request_t r;
    char why[256] = "";
    int pr = parse(&req, &r, why, sizeof why);
    if (pr != SCEP_PARSE_OK)
        fail_msg("parse: %d %s", pr, why);
    assert_int_equal(r.message_type, o->message_type ? o->message_type : SCEP_MSG_PKCSREQ);
    assert_string_equal(r.transaction_id, req.transaction_id);
    assert_int_equal(r.sender_nonce_len, 16);
    assert_memory_equal(r.sender_nonce, req.nonce, 16);
    assert_string_equal(r.cn, o->cn);
    if (o->challenge)
        assert_string_equal(r.challenge, o->challenge);
    else
        assert_null(r.challenge);
    X509 *cert = scep_issue_cert(r.csr, unit_ca, unit_ca_key, 30);
    assert_non_null(cert);
    check_issued(cert, req.key, o->cn, rsa);
    int64_t nb = 0, na = 0;
    assert_int_equal(scep_cert_validity(cert, &nb, &na), 0);
    assert_true(na - nb >= 30 * 86400 && na - nb <= 30 * 86400 + 7200);

    unsigned char *der = NULL;
    size_t len = 0;
    assert_int_equal(scep_certrep_success(&r, unit_ca, unit_ca_key, cert, &der, &len), 0);
    testscep_result_t res;
    memset(&res, 0, sizeof res);
    char err[256] = "";
    if (testscep_open_response(der, len, unit_ca, &req, &res, err, sizeof err) != 0)
        fail_msg("client cannot open the CertRep: %s", err);
    assert_int_equal(res.pki_status, SCEP_STATUS_SUCCESS);
    assert_int_equal(X509_cmp(res.cert, cert), 0);
    testscep_result_free(&res);
    OPENSSL_free(der);
    X509_free(cert);
    scep_request_free(&r);
    testscep_request_free(&req);
}

static void unit_roundtrip_rsa(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UNIT-RSA-1", "pw-1");
    roundtrip(&o, 1);
}

static void unit_roundtrip_ec_aes256_sha512(void **state)
{
    (void)state;
    /* EC requester: the answer is encrypted by key agreement (ECDH). */
    testscep_opts_t o = opts("UNIT-EC-1", "pw-2");
    o.key_type = TESTSCEP_KEY_P256;
    o.cipher = "AES-256-CBC";
    o.digest = "SHA512";
    roundtrip(&o, 0);
    o.key_type = TESTSCEP_KEY_P384;
    o.cn = "UNIT-EC-384";
    roundtrip(&o, 0);
}

static void unit_roundtrip_legacy_des_sha1(void **state)
{
    (void)state;
    /* What micromdm's scepclient sends: DES-CBC envelope, SHA-1 signature. */
    testscep_opts_t o = opts("UNIT-DES-1", "pw-3");
    o.cipher = "DES-CBC";
    o.digest = "SHA1";
    roundtrip(&o, 1);
    o.cipher = "DES-EDE3-CBC";
    o.cn = "UNIT-3DES-1";
    roundtrip(&o, 1);
}

static void unit_no_challenge_is_parsed(void **state)
{
    (void)state;
    /* Whether a challenge is needed is the caller's policy. */
    testscep_opts_t o = opts("UNIT-NOCHAL", NULL);
    roundtrip(&o, 1);
}

static void unit_malformed(void **state)
{
    (void)state;
    scep_request_t r;
    char why[256];
    static const unsigned char junk[] = "this is not DER at all";
    assert_int_equal(scep_parse_request(junk, sizeof junk, unit_ca, unit_ca_key, &r, why, sizeof why),
                     SCEP_PARSE_MALFORMED);
    assert_non_null(strstr(why, "not a DER"));
    scep_request_free(&r);
    assert_int_equal(scep_parse_request(junk, 0, unit_ca, unit_ca_key, &r, why, sizeof why), SCEP_PARSE_MALFORMED);
    scep_request_free(&r);

    testscep_opts_t o = opts("UNIT-MAL", "pw");
    testscep_request_t req;
    build(&o, &req);
    /* truncated */
    assert_int_equal(scep_parse_request(req.der, req.der_len - 10, unit_ca, unit_ca_key, &r, why, sizeof why),
                     SCEP_PARSE_MALFORMED);
    scep_request_free(&r);
    /* trailing bytes */
    unsigned char *longer = malloc(req.der_len + 3);
    memcpy(longer, req.der, req.der_len);
    memcpy(longer + req.der_len, "xyz", 3);
    assert_int_equal(scep_parse_request(longer, req.der_len + 3, unit_ca, unit_ca_key, &r, why, sizeof why),
                     SCEP_PARSE_MALFORMED);
    assert_non_null(strstr(why, "trailing"));
    scep_request_free(&r);
    free(longer);
    /* a DER certificate is not a PKCS#7 message */
    unsigned char *cder = NULL;
    int clen = i2d_X509(unit_ca, &cder);
    assert_int_equal(scep_parse_request(cder, (size_t)clen, unit_ca, unit_ca_key, &r, why, sizeof why),
                     SCEP_PARSE_MALFORMED);
    scep_request_free(&r);
    OPENSSL_free(cder);
    /* without the CA key nothing can be done */
    assert_int_equal(scep_parse_request(req.der, req.der_len, unit_ca, NULL, &r, why, sizeof why),
                     SCEP_PARSE_MALFORMED);
    scep_request_free(&r);
    testscep_request_free(&req);
}

static void unit_bad_signature(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UNIT-SIG", "pw");
    testscep_request_t req;
    build(&o, &req);
    /* The signature value is the last field of the DER: flip its last byte. */
    req.der[req.der_len - 1] ^= 0x01;
    expect_refused(&req, SCEP_FAIL_BAD_MESSAGE_CHECK, "signature does not verify");
    testscep_request_free(&req);
}

static void unit_wrong_recipient(void **state)
{
    (void)state;
    EVP_PKEY *other_key = pki_new_rsa_key(2048);
    X509 *other = pki_issue_cert(NULL, other_key, other_key, "other CA", 30, PKI_USAGE_CA, NULL, 0);
    assert_non_null(other);
    testscep_opts_t o = opts("UNIT-RCPT", "pw");
    testscep_request_t req;
    char err[256];
    assert_int_equal(testscep_build_request(&o, other, &req, err, sizeof err), 0);
    expect_refused(&req, SCEP_FAIL_BAD_MESSAGE_CHECK, "not encrypted for this CA");
    testscep_request_free(&req);
    X509_free(other);
    EVP_PKEY_free(other_key);
}

static void unit_key_policy(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UNIT-RSA1024", "pw");
    o.rsa_bits = 1024;
    testscep_request_t req;
    build(&o, &req);
    expect_refused(&req, SCEP_FAIL_BAD_ALG, "RSA-1024");
    testscep_request_free(&req);

    EVP_PKEY *k521 = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-521");
    assert_non_null(k521);
    o = opts("UNIT-P521", "pw");
    o.key = k521;
    build(&o, &req);
    expect_refused(&req, SCEP_FAIL_BAD_ALG, "secp521r1");
    testscep_request_free(&req);
    EVP_PKEY_free(k521);
}

static void unit_subject_policy(void **state)
{
    (void)state;
    testscep_opts_t o = opts(NULL, "pw");
    testscep_request_t req;
    build(&o, &req);
    expect_refused(&req, SCEP_FAIL_BAD_REQUEST, "no CN");
    testscep_request_free(&req);
}

static void unit_unsupported_message_types(void **state)
{
    (void)state;
    static const int types[] = {SCEP_MSG_CERTPOLL, SCEP_MSG_GETCERT, SCEP_MSG_GETCRL, SCEP_MSG_UPDATEREQ, 99};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        testscep_opts_t o = opts("UNIT-TYPE", "pw");
        o.message_type = types[i];
        testscep_request_t req;
        build(&o, &req);
        expect_refused(&req, SCEP_FAIL_BAD_REQUEST, "is not supported");
        testscep_request_free(&req);
    }
}

static void unit_weak_digest(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UNIT-MD5", "pw");
    o.digest = "MD5";
    testscep_request_t req;
    char err[256];
    /* OpenSSL may refuse to sign with MD5 at all; then there is nothing to test. */
    if (testscep_build_request(&o, unit_ca, &req, err, sizeof err) != 0)
        skip();
    expect_refused(&req, SCEP_FAIL_BAD_ALG, "digest");
    testscep_request_free(&req);
}

static void unit_renewal_signer(void **state)
{
    (void)state;
    /* A first certificate, issued through the core. */
    testscep_opts_t o = opts("UNIT-RENEW", "pw");
    testscep_request_t req;
    build(&o, &req);
    scep_request_t r;
    char why[256];
    assert_int_equal(parse(&req, &r, why, sizeof why), SCEP_PARSE_OK);
    X509 *cur = scep_issue_cert(r.csr, unit_ca, unit_ca_key, 30);
    assert_non_null(cur);
    scep_request_free(&r);

    /* RenewalReq signed by it, same subject: accepted. */
    testscep_opts_t ro = opts(NULL, NULL);
    ro.subject = X509_get_subject_name(cur);
    ro.message_type = SCEP_MSG_RENEWALREQ;
    ro.signer_cert = cur;
    ro.signer_key = req.key;
    testscep_request_t rreq;
    build(&ro, &rreq);
    assert_int_equal(parse(&rreq, &r, why, sizeof why), SCEP_PARSE_OK);
    assert_int_equal(r.message_type, SCEP_MSG_RENEWALREQ);
    scep_fail_t fail;
    assert_int_equal(scep_check_renewal_signer(&r, unit_ca, &fail, why, sizeof why), 0);
    scep_request_free(&r);
    testscep_request_free(&rreq);

    /* Another subject: refused (a renewal must not name another device). */
    ro.subject = NULL;
    ro.cn = "UNIT-SOMEONE-ELSE";
    build(&ro, &rreq);
    assert_int_equal(parse(&rreq, &r, why, sizeof why), SCEP_PARSE_OK);
    assert_int_equal(scep_check_renewal_signer(&r, unit_ca, &fail, why, sizeof why), -1);
    assert_int_equal(fail, SCEP_FAIL_BAD_REQUEST);
    assert_non_null(strstr(why, "another subject"));
    scep_request_free(&r);
    testscep_request_free(&rreq);

    /* Self-signed signer (a PKCSReq-style request sent as RenewalReq). */
    testscep_opts_t so = opts("UNIT-RENEW", NULL);
    so.message_type = SCEP_MSG_RENEWALREQ;
    build(&so, &rreq);
    assert_int_equal(parse(&rreq, &r, why, sizeof why), SCEP_PARSE_OK);
    assert_int_equal(scep_check_renewal_signer(&r, unit_ca, &fail, why, sizeof why), -1);
    assert_non_null(strstr(why, "not a valid certificate of this CA"));
    scep_request_free(&r);
    testscep_request_free(&rreq);

    X509_free(cur);
    testscep_request_free(&req);
}

static void unit_cert_facts(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UNIT-FACTS, with \"quotes\"", "pw");
    testscep_request_t req;
    build(&o, &req);
    scep_request_t r;
    char why[256];
    assert_int_equal(parse(&req, &r, why, sizeof why), SCEP_PARSE_OK);
    X509 *cert = scep_issue_cert(r.csr, unit_ca, unit_ca_key, 365);
    assert_non_null(cert);
    char serial[64];
    assert_int_equal(scep_cert_serial_hex(cert, serial, sizeof serial), 0);
    assert_true(strlen(serial) % 2 == 0 && strlen(serial) >= 30 && strlen(serial) <= 32);
    assert_int_equal(strspn(serial, "0123456789abcdef"), strlen(serial));
    char small[8];
    assert_int_equal(scep_cert_serial_hex(cert, small, sizeof small), -1);
    char *subject = scep_cert_subject(cert);
    assert_string_equal(subject, "CN=UNIT-FACTS\\, with \\\"quotes\\\",O=orchard tests");
    free(subject);
    int64_t nb, na;
    assert_int_equal(scep_cert_validity(cert, &nb, &na), 0);
    int64_t now = util_now();
    assert_true(nb <= now - 3500 && nb >= now - 3700);
    assert_true(na >= now + 365 * 86400 - 60 && na <= now + 365 * 86400 + 60);
    /* never past the CA */
    X509 *longer = scep_issue_cert(r.csr, unit_ca, unit_ca_key, 20000);
    assert_non_null(longer);
    assert_int_equal(ASN1_TIME_compare(X509_get0_notAfter(longer), X509_get0_notAfter(unit_ca)), 0);
    assert_null(scep_issue_cert(r.csr, unit_ca, unit_ca_key, 0));
    X509_free(longer);
    X509_free(cert);
    scep_request_free(&r);
    testscep_request_free(&req);
    assert_string_equal(scep_message_type_name(19), "PKCSReq");
    assert_string_equal(scep_fail_name(SCEP_FAIL_BAD_CERT_ID), "badCertId");
}

/* ---- server: GetCACaps / GetCACert ----------------------------------------------- */

static void test_caps_and_ca_cert(void **state)
{
    (void)state;
    long st;
    size_t len;
    char ct[128];
    unsigned char *body = testscep_get(srv.base_url, srv.ca_path, "GetCACaps", &st, &len, ct, sizeof ct);
    assert_int_equal(st, 200);
    assert_non_null(body);
    for (const char *cap = "POSTPKIOperation\0SHA-256\0SHA-512\0AES\0SCEPStandard\0Renewal\0"; *cap;
         cap += strlen(cap) + 1) {
        char line[64];
        snprintf(line, sizeof line, "%s\n", cap);
        if (!strstr((char *)body, line))
            fail_msg("GetCACaps lacks %s", cap);
    }
    free(body);

    body = testscep_get(srv.base_url, srv.ca_path, "GetCACert", &st, &len, ct, sizeof ct);
    assert_int_equal(st, 200);
    assert_string_equal(ct, "application/x-x509-ca-cert");
    const unsigned char *p = body;
    X509 *got = d2i_X509(NULL, &p, (long)len);
    assert_non_null(got);
    X509 *ca = pki_load_cert(srv.ca_path);
    assert_int_equal(X509_cmp(got, ca), 0);
    X509_free(ca);
    X509_free(got);
    free(body);

    body = testscep_get(srv.base_url, srv.ca_path, "GetNextCACert", &st, &len, NULL, 0);
    assert_int_equal(st, 400);
    free(body);
    assert_true(testserver_log_contains(&srv, "unsupported operation 'GetNextCACert'"));
}

/* ---- server: enrollment --------------------------------------------------------- */

static void test_enroll_static_challenge(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char err[256] = "";
    if (testscep_enroll(srv.base_url, srv.ca_path, STATIC_CHALLENGE, "UDID-SCEP-STATIC-1", &key, &cert, err,
                        sizeof err) != 0)
        fail_msg("enroll: %s", err);
    assert_int_equal(chains_to_file(cert, srv.ca_path), 0);
    assert_true(has_client_auth(cert));
    assert_true(X509_get_key_usage(cert) & KU_KEY_ENCIPHERMENT);
    /* default --cert-days 365 */
    int64_t nb, na;
    assert_int_equal(scep_cert_validity(cert, &nb, &na), 0);
    assert_true(na - nb >= 365 * 86400 && na - nb <= 365 * 86400 + 7200);

    issued_cert_t rec;
    issued_record(cert, &rec);
    char sha[65];
    pki_cert_sha256_hex(cert, sha);
    assert_string_equal(rec.sha256, sha);
    assert_null(rec.enrollment_id);
    assert_non_null(strstr(rec.subject, "CN=UDID-SCEP-STATIC-1"));
    assert_int_equal(rec.not_after, na);
    assert_int_equal(rec.revoked_at, 0);
    issued_cert_free(&rec);
    assert_true(testserver_log_contains(&srv, "scep: issued certificate serial="));
    EVP_PKEY_free(key);
    X509_free(cert);
}

static void test_enroll_get_and_ec(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UDID-SCEP-GET-1", STATIC_CHALLENGE);
    o.use_get = 1;
    testscep_result_t res;
    run(&o, &res);
    assert_int_equal(res.pki_status, SCEP_STATUS_SUCCESS);
    assert_int_equal(chains_to_file(res.cert, srv.ca_path), 0);
    testscep_result_free(&res);

    o = opts("UDID-SCEP-EC-1", STATIC_CHALLENGE);
    o.key_type = TESTSCEP_KEY_P256;
    o.cipher = "AES-256-CBC";
    run(&o, &res);
    assert_int_equal(res.pki_status, SCEP_STATUS_SUCCESS);
    assert_int_equal(chains_to_file(res.cert, srv.ca_path), 0);
    assert_false(X509_get_key_usage(res.cert) & KU_KEY_ENCIPHERMENT);
    testscep_result_free(&res);
}

static void test_one_time_challenge(void **state)
{
    (void)state;
    store_t *s = open_db();
    int64_t now = util_now();
    assert_int_equal(s->ops->challenge_add(s, "otc-4f1d2c3b-once", "UDID-SCEP-OTC-1", now + 3600, now), STORE_OK);
    assert_int_equal(s->ops->challenge_add(s, "otc-expired-0001", NULL, now - 10, now - 100), STORE_OK);
    store_close(s);

    testscep_opts_t o = opts("UDID-SCEP-OTC-1", "otc-4f1d2c3b-once");
    testscep_result_t res;
    run(&o, &res);
    assert_int_equal(res.pki_status, SCEP_STATUS_SUCCESS);
    issued_cert_t rec;
    issued_record(res.cert, &rec);
    assert_non_null(rec.enrollment_id);
    assert_string_equal(rec.enrollment_id, "UDID-SCEP-OTC-1");
    issued_cert_free(&rec);
    testscep_result_free(&res);

    /* used: refused, nothing issued */
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "wrong challenge password");
    /* bound to one device, asking for a certificate naming another: refused */
    s = open_db();
    assert_int_equal(s->ops->challenge_add(s, "otc-bound-elsewhere", "UDID-SCEP-OTC-3", now + 3600, now), STORE_OK);
    store_close(s);
    o = opts("UDID-SCEP-VICTIM", "otc-bound-elsewhere");
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST,
                          "the one-time challenge was issued for UDID-SCEP-OTC-3 but the CSR's CN is UDID-SCEP-VICTIM");
    /* expired */
    o = opts("UDID-SCEP-OTC-2", "otc-expired-0001");
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, NULL);
}

static void test_wrong_or_missing_challenge(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UDID-SCEP-WRONG-1", "static-secret-124");
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST,
                          "SCEP PKCSReq refused with badRequest: wrong challenge password");
    o = opts("UDID-SCEP-WRONG-2", "static-secret-12"); /* prefix of the real one */
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, NULL);
    o = opts("UDID-SCEP-WRONG-3", NULL);
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "PKCSReq without a challengePassword");
}

static void test_policy_refusals(void **state)
{
    (void)state;
    testscep_opts_t o = opts("UDID-SCEP-RSA1024", STATIC_CHALLENGE);
    o.rsa_bits = 1024;
    expect_server_failure(&o, SCEP_FAIL_BAD_ALG, "refused with badAlg: RSA-1024 key");
    o = opts(NULL, STATIC_CHALLENGE);
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "the CSR's subject has no CN");
    o = opts("UDID-SCEP-POLL", STATIC_CHALLENGE);
    o.message_type = SCEP_MSG_CERTPOLL;
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "messageType 20 (GetCertInitial) is not supported");
}

static void test_malformed_requests(void **state)
{
    (void)state;
    long st;
    size_t len;
    static const char junk[] = "\x30\x82\x01\x00 not really a PKCS#7 message";
    unsigned char *body = testscep_post(srv.base_url, srv.ca_path, junk, sizeof junk - 1, &st, &len);
    assert_int_equal(st, 400);
    free(body);
    assert_true(testserver_log_contains(&srv, "SCEP PKIOperation: not a DER PKCS#7/CMS structure"));

    body = testscep_post(srv.base_url, srv.ca_path, NULL, 0, &st, &len);
    assert_int_equal(st, 400);
    free(body);
    assert_true(testserver_log_contains(&srv, "POST PKIOperation with an empty body"));

    /* GET: not base64; no message; a broken escape */
    body = testscep_get(srv.base_url, srv.ca_path, "PKIOperation&message=%%%%", &st, &len, NULL, 0);
    assert_int_equal(st, 400);
    free(body);
    body = testscep_get(srv.base_url, srv.ca_path, "PKIOperation&message=!!!!", &st, &len, NULL, 0);
    assert_int_equal(st, 400);
    free(body);
    assert_true(testserver_log_contains(&srv, "GET PKIOperation message is not base64"));
    body = testscep_get(srv.base_url, srv.ca_path, "PKIOperation", &st, &len, NULL, 0);
    assert_int_equal(st, 400);
    free(body);
    assert_true(testserver_log_contains(&srv, "GET PKIOperation without a message parameter"));
    /* base64 of garbage */
    body = testscep_get(srv.base_url, srv.ca_path, "PKIOperation&message=aGVsbG8gd29ybGQ%3D", &st, &len, NULL, 0);
    assert_int_equal(st, 400);
    free(body);

    /* no operation; POST of GetCACaps */
    assert_int_equal(testserver_api(&srv, NULL, "GET", "/scep", NULL, 0, NULL), 400);
    assert_int_equal(testserver_api(&srv, NULL, "POST", "/scep?operation=GetCACaps", "x", 1, NULL), 405);
    assert_int_equal(testserver_api(&srv, NULL, "PUT", "/scep?operation=PKIOperation", "x", 1, NULL), 405);
    assert_true(testserver_log_contains(&srv, "SCEP: missing operation parameter"));
}

static void test_oversize_get_message(void **state)
{
    (void)state;
    /* 70 KiB of base64 'A's: refused before decoding (or by the server's
     * header cap); either way not 200 and nothing issued. */
    size_t n = 70 * 1024;
    char *op = malloc(n + 64);
    int k = snprintf(op, 64, "PKIOperation&message=");
    memset(op + k, 'A', n);
    op[k + n] = '\0';
    long st;
    size_t len;
    unsigned char *body = testscep_get(srv.base_url, srv.ca_path, op, &st, &len, NULL, 0);
    free(body);
    free(op);
    assert_true(st == 414 || st == 413 || st == 400);
}

/* ---- server: renewal -------------------------------------------------------------- */

static void test_renewal(void **state)
{
    (void)state;
    store_t *s = open_db();
    int64_t now = util_now();
    assert_int_equal(s->ops->challenge_add(s, "otc-renewal-0001", "UDID-SCEP-RENEW-1", now + 3600, now), STORE_OK);
    store_close(s);
    EVP_PKEY *key = NULL, *key2 = NULL;
    X509 *cert = NULL, *cert2 = NULL;
    char err[256] = "";
    if (testscep_enroll(srv.base_url, srv.ca_path, "otc-renewal-0001", "UDID-SCEP-RENEW-1", &key, &cert, err,
                        sizeof err) != 0)
        fail_msg("enroll: %s", err);
    if (testscep_renew(srv.base_url, srv.ca_path, key, cert, &key2, &cert2, err, sizeof err) != 0)
        fail_msg("renew: %s", err);
    assert_int_equal(chains_to_file(cert2, srv.ca_path), 0);
    assert_int_equal(X509_NAME_cmp(X509_get_subject_name(cert), X509_get_subject_name(cert2)), 0);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert2), key), 0); /* new key */
    issued_cert_t rec;
    issued_record(cert2, &rec);
    assert_non_null(rec.enrollment_id); /* carried over from the renewed certificate */
    assert_string_equal(rec.enrollment_id, "UDID-SCEP-RENEW-1");
    issued_cert_free(&rec);

    /* A revoked certificate cannot renew. */
    issued_record(cert2, &rec);
    s = open_db();
    assert_int_equal(s->ops->cert_revoke(s, rec.serial, util_now()), STORE_OK);
    store_close(s);
    issued_cert_free(&rec);
    testscep_opts_t o = opts(NULL, NULL);
    o.subject = X509_get_subject_name(cert2);
    o.message_type = SCEP_MSG_RENEWALREQ;
    o.signer_cert = cert2;
    o.signer_key = key2;
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "was revoked");

    /* The original one still can (it was not revoked)... but not for another subject. */
    o.signer_cert = cert;
    o.signer_key = key;
    o.subject = NULL;
    o.cn = "UDID-SOMEONE-ELSE";
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "RenewalReq asks for another subject");

    EVP_PKEY_free(key);
    EVP_PKEY_free(key2);
    X509_free(cert);
    X509_free(cert2);
}

static void test_renewal_foreign_signer(void **state)
{
    (void)state;
    /* Signed by another CA's certificate. */
    assert_int_equal(testpki_make_ca(srv.dir, "foreign"), 0);
    char *fca = util_strdup_printf("%s/foreign.pem", srv.dir);
    char *fkey = util_strdup_printf("%s/foreign.key", srv.dir);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testpki_issue_device_identity(fca, fkey, "UDID-SCEP-FOREIGN-1", &key, &cert), 0);
    testscep_opts_t o = opts(NULL, NULL);
    o.subject = X509_get_subject_name(cert);
    o.message_type = SCEP_MSG_RENEWALREQ;
    o.signer_cert = cert;
    o.signer_key = key;
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "RenewalReq signer is not a valid certificate of this CA");
    EVP_PKEY_free(key);
    X509_free(cert);

    /* Chains to orchard's CA but was never issued through SCEP. */
    assert_int_equal(testserver_device_identity(&srv, "UDID-SCEP-UNRECORDED", &key, &cert), 0);
    o.subject = X509_get_subject_name(cert);
    o.signer_cert = cert;
    o.signer_key = key;
    expect_server_failure(&o, SCEP_FAIL_BAD_REQUEST, "RenewalReq signer is not a certificate orchard issued");
    EVP_PKEY_free(key);
    X509_free(cert);
    free(fca);
    free(fkey);
}

/* ---- server: the issued identity works for check-in ---------------------------------- */

static void test_checkin_with_scep_identity(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char err[256] = "";
    const char *udid = "UDID-SCEP-CHECKIN-1";
    if (testscep_enroll(srv.base_url, srv.ca_path, STATIC_CHALLENGE, udid, &key, &cert, err, sizeof err) != 0)
        fail_msg("enroll: %s", err);
    for (int mode = 0; mode < 2; mode++) {
        char id[64];
        snprintf(id, sizeof id, "%s-%d", udid, mode);
        /* one certificate binds one UDID: a second enrollment needs its own */
        EVP_PKEY *k = key;
        X509 *c = cert;
        if (mode == 1 && testscep_enroll(srv.base_url, srv.ca_path, STATIC_CHALLENGE, id, &k, &c, err,
                                         sizeof err) != 0)
            fail_msg("enroll: %s", err);
        devsim_t *d = devsim_new(srv.base_url, srv.ca_path, id, k, c, mode ? DEVSIM_AUTH_SIGNATURE : DEVSIM_AUTH_MTLS);
        assert_non_null(d);
        assert_int_equal(devsim_authenticate(d), 200);
        assert_int_equal(devsim_token_update(d), 200);
        devsim_reply_t r;
        assert_int_equal(devsim_idle(d, &r), 0);
        assert_int_equal(r.status, 200);
        devsim_reply_free(&r);
        devsim_free(d);
        if (mode == 1) {
            EVP_PKEY_free(k);
            X509_free(c);
        }
    }
    EVP_PKEY_free(key);
    X509_free(cert);
}

/* ---- interoperability: Debian's scepclient ------------------------------------------------ */

/* Runs scepclient with args (NULL-terminated, after argv[0]) and the
 * server's CA as the TLS trust store (Go reads SSL_CERT_FILE). Output goes
 * to out_path. Returns its exit status, or -1 if it could not run or hung.
 * Everything the child needs is prepared before fork(). */
static int run_scepclient(const char *const *args, const char *out_path)
{
    extern char **environ;
    const char *argv[24];
    int n = 0;
    argv[n++] = SCEPCLIENT;
    for (int i = 0; args[i] && n < 23; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    size_t nenv = 0;
    while (environ[nenv])
        nenv++;
    char **envp = calloc(nenv + 2, sizeof *envp);
    char *trust = util_strdup_printf("SSL_CERT_FILE=%s", srv.ca_path);
    size_t k = 0;
    for (size_t i = 0; envp && i < nenv; i++)
        if (strncmp(environ[i], "SSL_CERT_FILE=", 14) != 0)
            envp[k++] = environ[i];
    if (envp)
        envp[k] = trust;
    int fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = envp && trust && fd >= 0 ? fork() : -1;
    if (pid == 0) {
        dup2(fd, 1);
        dup2(fd, 2);
        execve(SCEPCLIENT, (char *const *)argv, envp);
        _exit(127);
    }
    if (fd >= 0)
        close(fd);
    free(envp);
    free(trust);
    if (pid < 0)
        return -1;
    for (int i = 0; i < 600; i++) { /* 60 s */
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static void dump_file(const char *path)
{
    char *text = util_read_file(path, 1 << 16, NULL);
    if (text)
        fprintf(stderr, "--- %s:\n%s\n", path, text);
    free(text);
}

static void test_scepclient_interop(void **state)
{
    (void)state;
    if (access(SCEPCLIENT, X_OK) != 0) {
        fprintf(stderr, "scepclient not installed (Debian package scep): skipped\n");
        skip();
    }
    char *url = util_strdup_printf("%s/scep", srv.base_url);
    /* scepclient keeps its key, CSR (with the challenge in it) and
     * certificate next to -private-key: one directory per attempt. */
    char *dir = util_strdup_printf("%s/scepclient-wrong", srv.dir);
    char *key = util_strdup_printf("%s/key.pem", dir);
    char *crt = util_strdup_printf("%s/client.pem", dir);
    char *out = util_strdup_printf("%s/out.txt", srv.dir);
    assert_int_equal(mkdir(dir, 0700), 0);

    /* Wrong challenge: non-zero exit, nothing issued, no certificate file. */
    int before = issued_count();
    const char *wrong[] = {"-server-url", url, "-challenge", "not-the-secret", "-private-key", key, "-certificate",
                           crt, "-cn", "UDID-SCEPCLIENT-0", "-keySize", "2048", NULL};
    int rc = run_scepclient(wrong, out);
    if (rc <= 0) {
        dump_file(out);
        fail_msg("scepclient with a wrong challenge exited %d", rc);
    }
    assert_int_not_equal(access(crt, F_OK), 0);
    assert_int_equal(issued_count(), before);
    assert_true(testserver_log_contains(&srv, "wrong challenge password"));

    /* Right challenge: a certificate that chains to orchard's CA. */
    free(dir);
    free(key);
    free(crt);
    dir = util_strdup_printf("%s/scepclient", srv.dir);
    key = util_strdup_printf("%s/key.pem", dir);
    crt = util_strdup_printf("%s/client.pem", dir);
    assert_int_equal(mkdir(dir, 0700), 0);
    const char *right[] = {"-server-url", url, "-challenge", STATIC_CHALLENGE, "-private-key", key, "-certificate",
                           crt, "-cn", "UDID-SCEPCLIENT-1", "-keySize", "2048", NULL};
    rc = run_scepclient(right, out);
    if (rc != 0) {
        dump_file(out);
        dump_file(srv.log_path);
        fail_msg("scepclient enrollment exited %d", rc);
    }
    X509 *cert = pki_load_cert(crt);
    assert_non_null(cert);
    assert_int_equal(chains_to_file(cert, srv.ca_path), 0);
    assert_true(has_client_auth(cert));
    EVP_PKEY *k = pki_load_key(key);
    assert_non_null(k);
    assert_int_equal(EVP_PKEY_eq(X509_get0_pubkey(cert), k), 1);
    char cn[64];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) > 0);
    assert_string_equal(cn, "UDID-SCEPCLIENT-1");
    assert_int_equal(issued_count(), before + 1);

    /* Run again with the certificate present: scepclient sends a RenewalReq
     * signed by it. */
    rc = run_scepclient(right, out);
    if (rc != 0) {
        dump_file(out);
        fail_msg("scepclient renewal exited %d", rc);
    }
    X509 *renewed = pki_load_cert(crt);
    assert_non_null(renewed);
    assert_int_equal(chains_to_file(renewed, srv.ca_path), 0);
    assert_int_not_equal(X509_cmp(renewed, cert), 0);
    assert_int_equal(issued_count(), before + 2);
    assert_true(testserver_log_contains(&srv, "type=RenewalReq"));

    X509_free(renewed);
    X509_free(cert);
    EVP_PKEY_free(k);
    free(url);
    free(dir);
    free(key);
    free(crt);
    free(out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(unit_roundtrip_rsa),
        cmocka_unit_test(unit_roundtrip_ec_aes256_sha512),
        cmocka_unit_test(unit_roundtrip_legacy_des_sha1),
        cmocka_unit_test(unit_no_challenge_is_parsed),
        cmocka_unit_test(unit_malformed),
        cmocka_unit_test(unit_bad_signature),
        cmocka_unit_test(unit_wrong_recipient),
        cmocka_unit_test(unit_key_policy),
        cmocka_unit_test(unit_subject_policy),
        cmocka_unit_test(unit_unsupported_message_types),
        cmocka_unit_test(unit_weak_digest),
        cmocka_unit_test(unit_renewal_signer),
        cmocka_unit_test(unit_cert_facts),
        cmocka_unit_test(test_caps_and_ca_cert),
        cmocka_unit_test(test_enroll_static_challenge),
        cmocka_unit_test(test_enroll_get_and_ec),
        cmocka_unit_test(test_one_time_challenge),
        cmocka_unit_test(test_wrong_or_missing_challenge),
        cmocka_unit_test(test_policy_refusals),
        cmocka_unit_test(test_malformed_requests),
        cmocka_unit_test(test_oversize_get_message),
        cmocka_unit_test(test_renewal),
        cmocka_unit_test(test_renewal_foreign_signer),
        cmocka_unit_test(test_checkin_with_scep_identity),
        cmocka_unit_test(test_scepclient_interop),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
