/* PKI bootstrap, device identity verification, Mdm-Signature and proxy
 * client-certificate headers. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "identity.h"
#include "pki.h"
#include "testpki.h"
#include "util.h"

/* ---- fixture ------------------------------------------------------------- */

typedef struct {
    char dir[64];
    char *ca_pem, *ca_key, *tls_pem, *tls_key;
    identity_verifier_t *v;
    EVP_PKEY *dev_key;
    X509 *dev_cert;
} fixture_t;

static fixture_t F;

static char *path_in(const char *dir, const char *name)
{
    char *p = util_strdup_printf("%s/%s", dir, name);
    assert_non_null(p);
    return p;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void rm_rf(const char *dir)
{
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void make_tmpdir(char out[64])
{
    snprintf(out, 64, "/tmp/orchard-test-identity-XXXXXX");
    assert_non_null(mkdtemp(out));
}

static int group_setup(void **state)
{
    (void)state;
    make_tmpdir(F.dir);
    char *err = NULL;
    if (pki_bootstrap(F.dir, "mdm.example.com", &err) != 0) {
        fprintf(stderr, "bootstrap: %s\n", err ? err : "?");
        free(err);
        return -1;
    }
    F.ca_pem = path_in(F.dir, "ca.pem");
    F.ca_key = path_in(F.dir, "ca.key");
    F.tls_pem = path_in(F.dir, "tls.pem");
    F.tls_key = path_in(F.dir, "tls.key");
    F.v = identity_verifier_new(F.ca_pem, &err);
    if (!F.v) {
        fprintf(stderr, "verifier: %s\n", err ? err : "?");
        free(err);
        return -1;
    }
    if (testpki_issue_device_identity(F.ca_pem, F.ca_key, "device-1", &F.dev_key, &F.dev_cert) != 0)
        return -1;
    if (testpki_make_ca(F.dir, "evil") != 0)
        return -1;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    identity_verifier_free(F.v);
    EVP_PKEY_free(F.dev_key);
    X509_free(F.dev_cert);
    free(F.ca_pem);
    free(F.ca_key);
    free(F.tls_pem);
    free(F.tls_key);
    rm_rf(F.dir);
    return 0;
}

static char *read_all(const char *path)
{
    char *s = util_read_file(path, 1 << 20, NULL);
    assert_non_null(s);
    return s;
}

static int has_san(X509 *x, int type, const char *dns, const unsigned char *ip, int iplen)
{
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    int found = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
        GENERAL_NAME *gn = sk_GENERAL_NAME_value(gens, i);
        int t;
        ASN1_STRING *s = GENERAL_NAME_get0_value(gn, &t);
        if (t != type)
            continue;
        if (type == GEN_DNS && (size_t)ASN1_STRING_length(s) == strlen(dns) &&
            memcmp(ASN1_STRING_get0_data(s), dns, strlen(dns)) == 0)
            found = 1;
        if (type == GEN_IPADD && ASN1_STRING_length(s) == iplen &&
            memcmp(ASN1_STRING_get0_data(s), ip, (size_t)iplen) == 0)
            found = 1;
    }
    GENERAL_NAMES_free(gens);
    return found;
}

/* Verifies cert against a single CA file for the given purpose. */
static int verify_with(const char *ca_path, X509 *cert, int purpose)
{
    X509 *ca = pki_load_cert(ca_path);
    assert_non_null(ca);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    assert_int_equal(X509_STORE_CTX_init(ctx, store, cert, NULL), 1);
    X509_STORE_CTX_set_purpose(ctx, purpose);
    int ok = X509_verify_cert(ctx);
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    X509_free(ca);
    ERR_clear_error();
    return ok;
}

static int file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int)(st.st_mode & 07777);
}

/* ---- bootstrap ------------------------------------------------------------ */

static void test_bootstrap_creates_files(void **state)
{
    (void)state;
    assert_int_equal(file_mode(F.ca_key), 0600);
    assert_int_equal(file_mode(F.tls_key), 0600);

    X509 *ca = pki_load_cert(F.ca_pem);
    X509 *tls = pki_load_cert(F.tls_pem);
    EVP_PKEY *ca_key = pki_load_key(F.ca_key);
    EVP_PKEY *tls_key = pki_load_key(F.tls_key);
    assert_non_null(ca);
    assert_non_null(tls);
    assert_non_null(ca_key);
    assert_non_null(tls_key);
    assert_true(EVP_PKEY_is_a(ca_key, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(ca_key), 2048);
    assert_true(EVP_PKEY_is_a(tls_key, "EC"));
    assert_int_equal(X509_check_private_key(ca, ca_key), 1);
    assert_int_equal(X509_check_private_key(tls, tls_key), 1);

    /* CA: self-signed root, critical basicConstraints CA:TRUE, keyCertSign. */
    char cn[128];
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(ca), NID_commonName, cn, sizeof cn) > 0);
    assert_int_equal(strncmp(cn, "orchard CA ", 11), 0);
    assert_true(strlen(cn) > 11);
    assert_int_equal(X509_check_ca(ca), 1);
    assert_true(X509_get_extension_flags(ca) & EXFLAG_SS);
    assert_true(X509_get_key_usage(ca) & KU_KEY_CERT_SIGN);
    assert_true(X509_get_key_usage(ca) & KU_CRL_SIGN);
    assert_non_null(X509_get0_subject_key_id(ca));
    int idx = X509_get_ext_by_NID(ca, NID_basic_constraints, -1);
    assert_true(idx >= 0);
    assert_int_equal(X509_EXTENSION_get_critical(X509_get_ext(ca, idx)), 1);

    /* TLS: chains to ca.pem as a server certificate with the right names. */
    assert_int_equal(verify_with(F.ca_pem, tls, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(X509_check_ca(tls), 0);
    assert_true(X509_get_extended_key_usage(tls) & XKU_SSL_SERVER);
    assert_false(X509_get_extended_key_usage(tls) & XKU_SSL_CLIENT);
    assert_true(X509_get_key_usage(tls) & KU_DIGITAL_SIGNATURE);
    assert_non_null(X509_get0_authority_key_id(tls));
    assert_int_equal(ASN1_OCTET_STRING_cmp(X509_get0_authority_key_id(tls), X509_get0_subject_key_id(ca)), 0);
    assert_true(X509_NAME_get_text_by_NID(X509_get_subject_name(tls), NID_commonName, cn, sizeof cn) > 0);
    assert_string_equal(cn, "mdm.example.com");
    static const unsigned char v4[4] = {127, 0, 0, 1};
    static const unsigned char v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    assert_true(has_san(tls, GEN_DNS, "mdm.example.com", NULL, 0));
    assert_true(has_san(tls, GEN_DNS, "localhost", NULL, 0));
    assert_true(has_san(tls, GEN_IPADD, NULL, v4, 4));
    assert_true(has_san(tls, GEN_IPADD, NULL, v6, 16));
    assert_int_equal(X509_check_host(tls, "mdm.example.com", 0, 0, NULL), 1);
    assert_int_equal(X509_check_ip_asc(tls, "::1", 0), 1);

    X509_free(ca);
    X509_free(tls);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(tls_key);
}

static void test_bootstrap_ip_host(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir);
    char *err = NULL;
    assert_int_equal(pki_bootstrap(dir, "192.0.2.7", &err), 0);
    assert_null(err);
    char *p = path_in(dir, "tls.pem");
    X509 *tls = pki_load_cert(p);
    assert_non_null(tls);
    static const unsigned char ip[4] = {192, 0, 2, 7};
    assert_true(has_san(tls, GEN_IPADD, NULL, ip, 4));
    assert_false(has_san(tls, GEN_DNS, "192.0.2.7", NULL, 0));
    assert_int_equal(X509_check_ip_asc(tls, "192.0.2.7", 0), 1);
    X509_free(tls);
    free(p);
    rm_rf(dir);
}

static void test_bootstrap_idempotent(void **state)
{
    (void)state;
    const char *names[] = {"ca.key", "ca.pem", "tls.key", "tls.pem"};
    char *before[4], *after[4];
    for (int i = 0; i < 4; i++) {
        char *p = path_in(F.dir, names[i]);
        before[i] = read_all(p);
        free(p);
    }
    char *err = NULL;
    assert_int_equal(pki_bootstrap(F.dir, "mdm.example.com", &err), 0);
    assert_null(err);
    /* Even with a different host: existing files are left alone. */
    assert_int_equal(pki_bootstrap(F.dir, "other.example.com", &err), 0);
    assert_null(err);
    for (int i = 0; i < 4; i++) {
        char *p = path_in(F.dir, names[i]);
        after[i] = read_all(p);
        assert_string_equal(before[i], after[i]);
        free(p);
        free(before[i]);
        free(after[i]);
    }
    assert_int_equal(file_mode(F.ca_key), 0600);
}

static void test_bootstrap_reissues_tls_with_existing_ca(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir);
    char *err = NULL;
    assert_int_equal(pki_bootstrap(dir, "a.example.com", &err), 0);
    char *ca_pem = path_in(dir, "ca.pem"), *ca_key = path_in(dir, "ca.key");
    char *tls_pem = path_in(dir, "tls.pem"), *tls_key = path_in(dir, "tls.key");
    char *ca_before = read_all(ca_pem), *cakey_before = read_all(ca_key);

    /* Both TLS files gone: new key and certificate from the same CA. */
    assert_int_equal(unlink(tls_pem), 0);
    assert_int_equal(unlink(tls_key), 0);
    assert_int_equal(pki_bootstrap(dir, "b.example.com", &err), 0);
    assert_null(err);
    char *ca_after = read_all(ca_pem), *cakey_after = read_all(ca_key);
    assert_string_equal(ca_before, ca_after);
    assert_string_equal(cakey_before, cakey_after);
    X509 *tls = pki_load_cert(tls_pem);
    assert_non_null(tls);
    assert_int_equal(verify_with(ca_pem, tls, X509_PURPOSE_SSL_SERVER), 1);
    assert_int_equal(X509_check_host(tls, "b.example.com", 0, 0, NULL), 1);
    X509_free(tls);

    /* Only tls.pem gone: re-issued for the existing key. */
    char *key_before = read_all(tls_key);
    assert_int_equal(unlink(tls_pem), 0);
    assert_int_equal(pki_bootstrap(dir, "c.example.com", &err), 0);
    char *key_after = read_all(tls_key);
    assert_string_equal(key_before, key_after);
    tls = pki_load_cert(tls_pem);
    EVP_PKEY *k = pki_load_key(tls_key);
    assert_int_equal(X509_check_private_key(tls, k), 1);
    assert_int_equal(verify_with(ca_pem, tls, X509_PURPOSE_SSL_SERVER), 1);
    X509_free(tls);
    EVP_PKEY_free(k);

    /* tls.pem without tls.key: refused (would orphan the certificate). */
    assert_int_equal(unlink(tls_key), 0);
    assert_int_equal(pki_bootstrap(dir, "c.example.com", &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "tls.key"));
    free(err);
    err = NULL;

    /* CA key missing while a TLS certificate must be issued: refused. */
    assert_int_equal(unlink(tls_pem), 0);
    assert_int_equal(unlink(ca_key), 0);
    assert_int_equal(pki_bootstrap(dir, "c.example.com", &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "ca.key"));
    free(err);

    free(ca_before);
    free(ca_after);
    free(cakey_before);
    free(cakey_after);
    free(key_before);
    free(key_after);
    free(ca_pem);
    free(ca_key);
    free(tls_pem);
    free(tls_key);
    rm_rf(dir);
}

static void test_bootstrap_installs_differ_and_bad_input(void **state)
{
    (void)state;
    char dir[64];
    make_tmpdir(dir);
    char *err = NULL;
    assert_int_equal(pki_bootstrap(dir, "mdm.example.com", &err), 0);
    char *p = path_in(dir, "ca.pem");
    X509 *a = pki_load_cert(p), *b = pki_load_cert(F.ca_pem);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_not_equal(X509_NAME_cmp(X509_get_subject_name(a), X509_get_subject_name(b)), 0);
    X509_free(a);
    X509_free(b);
    free(p);
    rm_rf(dir);

    make_tmpdir(dir);
    assert_int_equal(pki_bootstrap(dir, "bad host,DNS:evil.com", &err), -1);
    assert_non_null(err);
    assert_non_null(strstr(err, "tls.pem"));
    free(err);
    err = NULL;
    assert_int_equal(pki_bootstrap(dir, "", &err), -1);
    assert_non_null(err);
    free(err);
    err = NULL;
    rm_rf(dir);

    /* Data directory is created if missing. */
    make_tmpdir(dir);
    char *sub = path_in(dir, "data");
    assert_int_equal(pki_bootstrap(sub, "localhost", &err), 0);
    char *k = path_in(sub, "tls.key");
    assert_int_equal(file_mode(k), 0600);
    free(k);
    free(sub);
    rm_rf(dir);
}

/* ---- pki helpers ------------------------------------------------------------ */

static void test_issue_cert_details(void **state)
{
    (void)state;
    X509 *ca = pki_load_cert(F.ca_pem);
    EVP_PKEY *ca_key = pki_load_key(F.ca_key);
    EVP_PKEY *k = pki_new_ec_key();
    const char *sans[] = {"dev.example.com", "2001:db8::7", "10.1.2.3"};
    X509 *x = pki_issue_cert(ca, ca_key, k, "dev", 30, PKI_USAGE_CLIENT, sans, 3);
    assert_non_null(x);
    assert_true(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT);
    assert_true(X509_get_key_usage(x) & KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_check_ip_asc(x, "2001:db8::7", 0), 1);
    assert_int_equal(X509_check_ip_asc(x, "10.1.2.3", 0), 1);
    assert_int_equal(X509_check_host(x, "dev.example.com", 0, 0, NULL), 1);
    assert_int_equal(X509_get_version(x), X509_VERSION_3);

    /* Serial: positive, at most 128 bits, differs between certificates. */
    const ASN1_INTEGER *s1 = X509_get0_serialNumber(x);
    BIGNUM *bn = ASN1_INTEGER_to_BN(s1, NULL);
    assert_false(BN_is_negative(bn));
    assert_false(BN_is_zero(bn));
    assert_true(BN_num_bits(bn) <= 128);
    BN_free(bn);
    X509 *y = pki_issue_cert(ca, ca_key, k, "dev", 30, PKI_USAGE_CLIENT, NULL, 0);
    assert_non_null(y);
    assert_int_not_equal(ASN1_INTEGER_cmp(s1, X509_get0_serialNumber(y)), 0);

    /* notBefore an hour in the past. */
    int pday = 0, psec = 0;
    assert_int_equal(ASN1_TIME_diff(&pday, &psec, X509_get0_notBefore(x), NULL), 1);
    assert_int_equal(pday, 0);
    assert_true(psec >= 3590 && psec <= 3700);

    /* RSA client keys also get keyEncipherment. */
    EVP_PKEY *rk = pki_new_rsa_key(2048);
    assert_non_null(rk);
    X509 *r = pki_issue_cert(ca, ca_key, rk, "rsa-dev", 30, PKI_USAGE_CLIENT, NULL, 0);
    assert_non_null(r);
    assert_true(X509_get_key_usage(r) & KU_KEY_ENCIPHERMENT);

    /* Refused: a SAN that would inject config syntax, a wrong CA key, a
     * self-signed certificate whose keys differ, too long a CN. */
    const char *bad[] = {"a.example.com,DNS:evil.com"};
    assert_null(pki_issue_cert(ca, ca_key, k, "dev", 30, PKI_USAGE_CLIENT, bad, 1));
    assert_null(pki_issue_cert(ca, k, k, "dev", 30, PKI_USAGE_CLIENT, NULL, 0));
    assert_null(pki_issue_cert(NULL, ca_key, k, "dev", 30, PKI_USAGE_CA, NULL, 0));
    char longcn[80];
    memset(longcn, 'a', sizeof longcn - 1);
    longcn[sizeof longcn - 1] = '\0';
    assert_null(pki_issue_cert(ca, ca_key, k, longcn, 30, PKI_USAGE_CLIENT, NULL, 0));
    assert_null(pki_new_rsa_key(512));
    assert_int_equal(ERR_peek_error(), 0);

    X509_free(r);
    EVP_PKEY_free(rk);
    X509_free(x);
    X509_free(y);
    EVP_PKEY_free(k);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
}

static void test_cert_bundle_and_digest(void **state)
{
    (void)state;
    char *ca = read_all(F.ca_pem);
    char *evil_path = path_in(F.dir, "evil.pem");
    char *evil = read_all(evil_path);
    char *both = util_strdup_printf("# comment\n%s\n%s", ca, evil);
    char *bundle = path_in(F.dir, "bundle.pem");
    assert_int_equal(util_write_file(bundle, both, strlen(both), 0644), 0);
    STACK_OF(X509) *sk = pki_load_cert_bundle(bundle);
    assert_non_null(sk);
    assert_int_equal(sk_X509_num(sk), 2);
    sk_X509_pop_free(sk, X509_free);

    /* Empty file, missing file, broken certificate: NULL. */
    assert_int_equal(util_write_file(bundle, "", 0, 0644), 0);
    assert_null(pki_load_cert_bundle(bundle));
    assert_null(pki_load_cert_bundle("/nonexistent/bundle.pem"));
    char *broken = util_strdup_printf("%s-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", ca);
    assert_int_equal(util_write_file(bundle, broken, strlen(broken), 0644), 0);
    assert_null(pki_load_cert_bundle(bundle));
    assert_int_equal(ERR_peek_error(), 0);

    /* SHA-256 of the DER. */
    X509 *x = pki_load_cert(F.ca_pem);
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    unsigned char md[32];
    EVP_Digest(der, (size_t)len, md, NULL, EVP_sha256(), NULL);
    char want[65], got[65];
    util_hex(md, 32, want);
    assert_int_equal(pki_cert_sha256_hex(x, got), 0);
    assert_string_equal(got, want);
    OPENSSL_free(der);
    X509_free(x);

    /* Verifier construction errors. */
    char *err = NULL;
    assert_null(identity_verifier_new("/nonexistent/ca.pem", &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "/nonexistent/ca.pem"));
    free(err);
    err = NULL;
    assert_null(identity_verifier_new(bundle, &err));
    assert_non_null(err);
    free(err);

    free(broken);
    free(ca);
    free(evil);
    free(evil_path);
    free(both);
    unlink(bundle);
    free(bundle);
}

/* ---- identity_verify_cert ----------------------------------------------------- */

static void test_device_cert_verifies(void **state)
{
    (void)state;
    char reason[256] = "";
    assert_int_equal(identity_verify_cert(F.v, F.dev_cert, NULL, reason, sizeof reason), 0);
}

static void test_other_ca_refused(void **state)
{
    (void)state;
    char *pem = path_in(F.dir, "evil.pem"), *key = path_in(F.dir, "evil.key");
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    assert_int_equal(testpki_issue_device_identity(pem, key, "device-evil", &k, &x), 0);
    char reason[256] = "";
    assert_int_equal(identity_verify_cert(F.v, x, NULL, reason, sizeof reason), -1);
    assert_string_equal(reason, "unable to get local issuer certificate");
    /* Handing in the rogue CA as an "intermediate" does not help. */
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509 *evil = pki_load_cert(pem);
    sk_X509_push(untrusted, evil);
    assert_int_equal(identity_verify_cert(F.v, x, untrusted, reason, sizeof reason), -1);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(x);
    EVP_PKEY_free(k);
    free(pem);
    free(key);
}

static void test_expired_refused(void **state)
{
    (void)state;
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    assert_int_equal(testpki_issue_expired_identity(F.ca_pem, F.ca_key, "device-old", &k, &x), 0);
    char reason[256] = "";
    assert_int_equal(identity_verify_cert(F.v, x, NULL, reason, sizeof reason), -1);
    assert_string_equal(reason, "certificate has expired");
    X509_free(x);
    EVP_PKEY_free(k);
}

static void test_server_cert_refused_as_client(void **state)
{
    (void)state;
    X509 *tls = pki_load_cert(F.tls_pem);
    assert_non_null(tls);
    char reason[256] = "";
    assert_int_equal(identity_verify_cert(F.v, tls, NULL, reason, sizeof reason), -1);
    assert_string_equal(reason, "unsuitable certificate purpose");
    X509_free(tls);
}

static void test_intermediate_chain(void **state)
{
    (void)state;
    X509 *ca = pki_load_cert(F.ca_pem);
    EVP_PKEY *ca_key = pki_load_key(F.ca_key);
    EVP_PKEY *ik = pki_new_ec_key(), *lk = pki_new_ec_key();
    X509 *inter = pki_issue_cert(ca, ca_key, ik, "orchard sub-CA", 30, PKI_USAGE_CA, NULL, 0);
    X509 *leaf = pki_issue_cert(inter, ik, lk, "device-sub", 30, PKI_USAGE_CLIENT, NULL, 0);
    assert_non_null(inter);
    assert_non_null(leaf);
    char reason[256] = "";
    assert_int_equal(identity_verify_cert(F.v, leaf, NULL, reason, sizeof reason), -1);
    STACK_OF(X509) *untrusted = sk_X509_new_null();
    X509_up_ref(inter);
    sk_X509_push(untrusted, inter);
    assert_int_equal(identity_verify_cert(F.v, leaf, untrusted, reason, sizeof reason), 0);

    /* Mdm-Signature carrying the intermediate in its certificate set. */
    static const char body[] = "<plist>intermediate</plist>";
    BIO *in = BIO_new_mem_buf(body, (int)strlen(body));
    CMS_ContentInfo *cms = CMS_sign(leaf, lk, untrusted, in, CMS_DETACHED | CMS_BINARY);
    assert_non_null(cms);
    unsigned char *der = NULL;
    int len = i2d_CMS_ContentInfo(cms, &der);
    char *b64 = util_base64_encode(der, (size_t)len);
    X509 *signer = identity_from_mdm_signature(F.v, b64, body, strlen(body), reason, sizeof reason);
    assert_non_null(signer);
    assert_int_equal(X509_cmp(signer, leaf), 0);
    X509_free(signer);
    /* Without the intermediate the signer does not chain. */
    char *plain = testpki_mdm_signature(leaf, lk, body, strlen(body));
    assert_null(identity_from_mdm_signature(F.v, plain, body, strlen(body), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature signer is not trusted: "
                                "unable to get local issuer certificate");

    /* A bundle holding only the sub-CA trusts the sub-CA's leaves. */
    char *sub_path = path_in(F.dir, "sub.pem");
    assert_int_equal(pki_write_cert(sub_path, inter), 0);
    char *err = NULL;
    identity_verifier_t *sub = identity_verifier_new(sub_path, &err);
    assert_non_null(sub);
    assert_int_equal(identity_verify_cert(sub, leaf, NULL, reason, sizeof reason), 0);
    assert_int_equal(identity_verify_cert(sub, F.dev_cert, NULL, reason, sizeof reason), -1);
    identity_verifier_free(sub);
    unlink(sub_path);

    free(sub_path);
    free(plain);
    free(b64);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_pop_free(untrusted, X509_free);
    X509_free(leaf);
    X509_free(inter);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
}

/* ---- Mdm-Signature -------------------------------------------------------------- */

static const char BODY[] = "<?xml version=\"1.0\"?>\n<plist version=\"1.0\"><dict><key>MessageType</key>"
                           "<string>Authenticate</string></dict></plist>\n";

static void test_mdm_signature_valid(void **state)
{
    (void)state;
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    assert_non_null(sig);
    char reason[256] = "";
    X509 *signer = identity_from_mdm_signature(F.v, sig, BODY, strlen(BODY), reason, sizeof reason);
    assert_non_null(signer);
    char a[65], b[65];
    assert_int_equal(pki_cert_sha256_hex(signer, a), 0);
    assert_int_equal(pki_cert_sha256_hex(F.dev_cert, b), 0);
    assert_string_equal(a, b);
    assert_int_equal(ERR_peek_error(), 0);
    X509_free(signer);
    free(sig);

    /* Empty body. */
    sig = testpki_mdm_signature(F.dev_cert, F.dev_key, "", 0);
    signer = identity_from_mdm_signature(F.v, sig, NULL, 0, reason, sizeof reason);
    assert_non_null(signer);
    X509_free(signer);
    free(sig);
}

static void test_mdm_signature_binary_body(void **state)
{
    (void)state;
    /* Bare LF, CRLF and NUL: no text canonicalisation may happen. */
    static const char body[] = "a\nb\r\nc\0d\n";
    static const char crlf[] = "a\r\nb\r\nc\0d\r\n";
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, body, sizeof body - 1);
    char reason[256] = "";
    X509 *signer = identity_from_mdm_signature(F.v, sig, body, sizeof body - 1, reason, sizeof reason);
    assert_non_null(signer);
    X509_free(signer);
    assert_null(identity_from_mdm_signature(F.v, sig, crlf, sizeof crlf - 1, reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature does not match the request body");
    free(sig);
}

static void test_mdm_signature_wrong_body(void **state)
{
    (void)state;
    static const char other[] = "<plist version=\"1.0\"><dict><key>MessageType</key>"
                                "<string>CheckOut</string></dict></plist>\n";
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, other, strlen(other));
    char reason[256] = "";
    assert_null(identity_from_mdm_signature(F.v, sig, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature does not match the request body");
    /* One byte less of the right body. */
    assert_null(identity_from_mdm_signature(F.v, sig, other, strlen(other) - 1, reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature does not match the request body");
    assert_int_equal(ERR_peek_error(), 0);
    free(sig);
}

static void test_mdm_signature_bad_base64(void **state)
{
    (void)state;
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    char reason[256] = "";
    size_t n = strlen(sig);

    char *t = strdup(sig);
    t[n / 2] = '!';
    assert_null(identity_from_mdm_signature(F.v, t, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is not valid base64");
    free(t);

    t = strdup(sig);
    t[n - 5] = '\0'; /* truncated: wrong length */
    assert_null(identity_from_mdm_signature(F.v, t, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is not valid base64");
    free(t);

    /* Valid base64, flipped bit in the middle of the DER. */
    t = strdup(sig);
    t[n / 2] = t[n / 2] == 'A' ? 'B' : 'A';
    assert_null(identity_from_mdm_signature(F.v, t, BODY, strlen(BODY), reason, sizeof reason));
    free(t);

    assert_null(identity_from_mdm_signature(F.v, "", BODY, strlen(BODY), reason, sizeof reason));
    assert_null(identity_from_mdm_signature(F.v, NULL, BODY, strlen(BODY), reason, sizeof reason));

    /* Oversize. */
    char *big = malloc(64 * 1024 + 5);
    memset(big, 'A', 64 * 1024 + 4);
    big[64 * 1024 + 4] = '\0';
    assert_null(identity_from_mdm_signature(F.v, big, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is too large");
    free(big);
    assert_int_equal(ERR_peek_error(), 0);
    free(sig);
}

static void test_mdm_signature_not_cms(void **state)
{
    (void)state;
    char reason[256] = "";
    unsigned char *der = NULL;
    int len = i2d_X509(F.dev_cert, &der);
    char *b64 = util_base64_encode(der, (size_t)len);
    assert_null(identity_from_mdm_signature(F.v, b64, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is not a CMS structure");
    free(b64);
    OPENSSL_free(der);

    assert_null(
        identity_from_mdm_signature(F.v, "aGVsbG8gd29ybGQ=", BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is not a CMS structure");

    /* A valid CMS with trailing bytes. */
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    size_t dlen = 0;
    unsigned char *d = util_base64_decode(sig, strlen(sig), &dlen);
    unsigned char *d2 = malloc(dlen + 3);
    memcpy(d2, d, dlen);
    memcpy(d2 + dlen, "\0\0\0", 3);
    b64 = util_base64_encode(d2, dlen + 3);
    assert_null(identity_from_mdm_signature(F.v, b64, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is not a CMS structure");
    free(b64);
    free(d2);
    free(d);
    free(sig);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_mdm_signature_attached_refused(void **state)
{
    (void)state;
    char *sig = testpki_mdm_signature_attached(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    assert_non_null(sig);
    char reason[256] = "";
    assert_null(identity_from_mdm_signature(F.v, sig, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is not a detached SignedData");
    free(sig);

    /* Another CMS type: digested data. */
    BIO *in = BIO_new_mem_buf(BODY, (int)strlen(BODY));
    CMS_ContentInfo *cms = CMS_digest_create(in, EVP_sha256(), CMS_DETACHED | CMS_BINARY);
    assert_non_null(cms);
    unsigned char *der = NULL;
    int len = i2d_CMS_ContentInfo(cms, &der);
    char *b64 = util_base64_encode(der, (size_t)len);
    assert_null(identity_from_mdm_signature(F.v, b64, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature is not a detached SignedData");
    free(b64);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
}

static void test_mdm_signature_no_signer_cert(void **state)
{
    (void)state;
    BIO *in = BIO_new_mem_buf(BODY, (int)strlen(BODY));
    CMS_ContentInfo *cms = CMS_sign(F.dev_cert, F.dev_key, NULL, in, CMS_DETACHED | CMS_BINARY | CMS_NOCERTS);
    assert_non_null(cms);
    unsigned char *der = NULL;
    int len = i2d_CMS_ContentInfo(cms, &der);
    char *b64 = util_base64_encode(der, (size_t)len);
    char reason[256] = "";
    assert_null(identity_from_mdm_signature(F.v, b64, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature does not include the signer certificate");
    free(b64);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);

    /* Certificate-only SignedData (no signers at all). */
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509_up_ref(F.dev_cert);
    sk_X509_push(certs, F.dev_cert);
    cms = CMS_sign(NULL, NULL, certs, NULL, CMS_PARTIAL | CMS_DETACHED);
    assert_non_null(cms);
    der = NULL;
    len = i2d_CMS_ContentInfo(cms, &der);
    b64 = util_base64_encode(der, (size_t)len);
    assert_null(identity_from_mdm_signature(F.v, b64, BODY, strlen(BODY), reason, sizeof reason));
    assert_non_null(strstr(reason, "Mdm-Signature"));
    free(b64);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    sk_X509_pop_free(certs, X509_free);
}

static void test_mdm_signature_untrusted_signer(void **state)
{
    (void)state;
    char *pem = path_in(F.dir, "evil.pem"), *key = path_in(F.dir, "evil.key");
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    assert_int_equal(testpki_issue_device_identity(pem, key, "device-evil", &k, &x), 0);
    char *sig = testpki_mdm_signature(x, k, BODY, strlen(BODY));
    char reason[256] = "";
    assert_null(identity_from_mdm_signature(F.v, sig, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature signer is not trusted: "
                                "unable to get local issuer certificate");
    free(sig);

    /* Signed with the server's TLS key: right CA, wrong purpose. */
    X509 *tls = pki_load_cert(F.tls_pem);
    EVP_PKEY *tk = pki_load_key(F.tls_key);
    sig = testpki_mdm_signature(tls, tk, BODY, strlen(BODY));
    assert_null(identity_from_mdm_signature(F.v, sig, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature signer is not trusted: unsuitable certificate purpose");
    free(sig);

    /* Expired device identity. */
    EVP_PKEY *ek = NULL;
    X509 *ex = NULL;
    assert_int_equal(testpki_issue_expired_identity(F.ca_pem, F.ca_key, "device-old", &ek, &ex), 0);
    sig = testpki_mdm_signature(ex, ek, BODY, strlen(BODY));
    assert_null(identity_from_mdm_signature(F.v, sig, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature signer is not trusted: certificate has expired");
    free(sig);
    assert_int_equal(ERR_peek_error(), 0);

    X509_free(ex);
    EVP_PKEY_free(ek);
    X509_free(tls);
    EVP_PKEY_free(tk);
    X509_free(x);
    EVP_PKEY_free(k);
    free(pem);
    free(key);
}

typedef struct {
    char *sig;
    int ok;
} thread_arg_t;

static void *verify_thread(void *p)
{
    thread_arg_t *a = p;
    a->ok = 1;
    for (int i = 0; i < 20; i++) {
        char reason[256];
        X509 *s = identity_from_mdm_signature(F.v, a->sig, BODY, strlen(BODY), reason, sizeof reason);
        if (!s || X509_cmp(s, F.dev_cert) != 0)
            a->ok = 0;
        X509_free(s);
        if (identity_from_mdm_signature(F.v, a->sig, "x", 1, reason, sizeof reason) != NULL)
            a->ok = 0;
    }
    return NULL;
}

static void test_concurrent_verification(void **state)
{
    (void)state;
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    pthread_t th[4];
    thread_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i].sig = sig;
        assert_int_equal(pthread_create(&th[i], NULL, verify_thread, &args[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        assert_true(args[i].ok);
    }
    free(sig);
}

/* ---- proxy headers -------------------------------------------------------------- */

static void expect_same(const char *value)
{
    char reason[256] = "";
    X509 *x = identity_from_header(value, reason, sizeof reason);
    if (!x)
        fail_msg("header refused: %s", reason);
    assert_int_equal(X509_cmp(x, F.dev_cert), 0);
    X509_free(x);
}

static void test_header_formats_round_trip(void **state)
{
    (void)state;
    char *pem = testpki_cert_pem(F.dev_cert);
    char *esc = testpki_cert_escaped_pem(F.dev_cert);
    char *sf = testpki_cert_rfc9440(F.dev_cert);
    assert_non_null(pem);
    assert_non_null(esc);
    assert_non_null(sf);
    assert_null(strchr(esc, '\n'));
    assert_null(strchr(esc, '+'));
    assert_non_null(strstr(esc, "-----BEGIN%20CERTIFICATE-----%0A"));
    assert_int_equal(sf[0], ':');
    assert_int_equal(sf[strlen(sf) - 1], ':');

    expect_same(pem);
    expect_same(esc);
    expect_same(sf);

    /* PEM flattened onto one line with spaces (some proxies). */
    char *flat = strdup(pem);
    for (char *p = flat; *p; p++)
        if (*p == '\n')
            *p = ' ';
    expect_same(flat);
    free(flat);

    /* Escaped PEM with lower-case hex and a literal '+' left unescaped. */
    char *lower = strdup(esc);
    for (char *p = lower; *p; p++)
        if (p[0] == '%' && p[1] == '2' && p[2] == 'B') {
            p[2] = 'b';
        }
    expect_same(lower);
    free(lower);
    char *mixed = malloc(strlen(esc) + 1);
    size_t o = 0;
    for (const char *p = esc; *p;) {
        if (strncmp(p, "%2B", 3) == 0) {
            mixed[o++] = '+';
            p += 3;
        } else {
            mixed[o++] = *p++;
        }
    }
    mixed[o] = '\0';
    expect_same(mixed);
    free(mixed);

    /* RFC 9440 without "=" padding, and with surrounding whitespace. */
    char *nopad = strdup(sf);
    size_t n = strlen(nopad);
    while (n >= 2 && nopad[n - 2] == '=') {
        nopad[n - 2] = ':';
        nopad[n - 1] = '\0';
        n--;
    }
    expect_same(nopad);
    free(nopad);
    char *ws = util_strdup_printf("  %s \t", sf);
    expect_same(ws);
    free(ws);

    free(pem);
    free(esc);
    free(sf);
}

static void expect_refused(const char *value)
{
    char reason[256] = "";
    X509 *x = identity_from_header(value, reason, sizeof reason);
    if (x) {
        X509_free(x);
        fail_msg("header accepted: %.60s", value ? value : "(null)");
    }
    assert_true(reason[0] != '\0');
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_header_malformed(void **state)
{
    (void)state;
    char *pem = testpki_cert_pem(F.dev_cert);
    char *esc = testpki_cert_escaped_pem(F.dev_cert);
    char *sf = testpki_cert_rfc9440(F.dev_cert);

    expect_refused(NULL);
    expect_refused("");
    expect_refused("   ");
    expect_refused("hello");
    expect_refused("%");
    expect_refused("%4");
    expect_refused("%ZZ");
    expect_refused("%00");

    /* Bad %-escapes inside an otherwise valid escaped PEM. */
    char *t = util_strdup_printf("%s%%", esc);
    expect_refused(t);
    free(t);
    t = util_strdup_printf("%s%%0", esc);
    expect_refused(t);
    free(t);
    t = strdup(esc);
    char *pct = strchr(t, '%');
    pct[1] = 'G';
    expect_refused(t);
    free(t);

    /* RFC 9440: colons missing, bad base64, not a certificate. */
    t = strdup(sf + 1); /* no leading colon */
    expect_refused(t);
    free(t);
    t = strdup(sf);
    t[strlen(t) - 1] = '\0'; /* no trailing colon */
    expect_refused(t);
    free(t);
    expect_refused(":");
    expect_refused("::");
    expect_refused(":!!!!:");
    expect_refused(":AAAA:");
    expect_refused(":aGVsbG8=:");
    expect_refused(":A:");
    expect_refused(":AA==AA:");
    t = strdup(sf);
    t[10] = ' ';
    expect_refused(t);
    free(t);
    t = util_strdup_printf("%s;param=1", sf);
    expect_refused(t);
    free(t);

    /* PEM: truncated, trailing garbage, wrong label, bad body. */
    t = strdup(pem);
    t[strlen(t) / 2] = '\0';
    expect_refused(t);
    free(t);
    t = util_strdup_printf("%sgarbage", pem);
    expect_refused(t);
    free(t);
    t = util_strdup_printf("%s%s", pem, pem);
    expect_refused(t);
    free(t);
    expect_refused("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n");
    expect_refused("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n");
    expect_refused("-----BEGIN CERTIFICATE----------END CERTIFICATE-----");
    expect_refused("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n");

    /* Oversize: just over 16 KiB, even if it would otherwise parse. */
    size_t big = 16 * 1024 + 1;
    t = malloc(big + 1);
    memset(t, ' ', big);
    memcpy(t, sf, strlen(sf));
    t[big] = '\0';
    expect_refused(t);
    free(t);

    free(pem);
    free(esc);
    free(sf);
}

/* Short and degenerate inputs. */
static void test_degenerate_inputs(void **state)
{
    (void)state;
    char reason[256];
    static const char *headers[] = {
        "-----BEGIN CERTIFICATE-----",
        "-----BEGIN CERTIFICATE----------END CERTIFICATE----",
        "%2D%2D%2D%2D%2DBEGIN%20CERTIFICATE%2D%2D%2D%2D%2D",
        ":=:",
        ":==:",
        ":===:",
    };
    for (size_t i = 0; i < sizeof headers / sizeof *headers; i++)
        expect_refused(headers[i]);
    /* "====", a lone NULL byte, a bare SEQUENCE, an empty indefinite-length
     * SignedData. */
    static const char *sigs[] = {"====", "AA==", "MAA=",
                                 "MIAGCSqGSIb3DQEHAqCAMIACAQExADALBgkqhkiG9w0BBwGggDAAMQAAAAAAAAAAAA=="};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        assert_null(identity_from_mdm_signature(F.v, sigs[i], "", 0, reason, sizeof reason));
        assert_true(reason[0] != '\0');
        assert_int_equal(ERR_peek_error(), 0);
    }
}

/* Found by fuzz/fuzz_mdm_signature.c: a SignedData whose digestAlgorithms
 * names an unknown digest makes CMS_dataInit fail inside CMS_verify, and
 * OpenSSL 3.0 then leaked its private copy of a memory BIO holding the body.
 * LeakSanitizer fails this test if the leak comes back. */
static void test_fuzz_unknown_digest_algorithm(void **state)
{
    (void)state;
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    size_t len = 0;
    unsigned char *der = util_base64_decode(sig, strlen(sig), &len);
    assert_non_null(der);
    /* OID 2.16.840.1.101.3.4.2.1 (SHA-256); its first occurrence is in the
     * SignedData digestAlgorithms set. Make it 2.16.840.1.101.3.4.2.127. */
    static const unsigned char sha256_oid[] = {0x06, 0x09, 0x60, 0x86, 0x48, 0x01,
                                               0x65, 0x03, 0x04, 0x02, 0x01};
    unsigned char *hit = memmem(der, len, sha256_oid, sizeof sha256_oid);
    assert_non_null(hit);
    hit[sizeof sha256_oid - 1] = 0x7f;
    char *b64 = util_base64_encode(der, len);
    char reason[256] = "";
    assert_null(identity_from_mdm_signature(F.v, b64, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature does not match the request body");
    assert_int_equal(ERR_peek_error(), 0);
    free(b64);
    free(der);
    free(sig);
}

/* Rebuilds a DER ContentInfo(SignedData) with its digestAlgorithms SET
 * content repeated n times (lengths re-encoded). */
static unsigned char *repeat_digest_algorithms(const unsigned char *der, long len, int n, long *outlen)
{
    const unsigned char *p = der, *end = der + len;
    long l;
    int tag, cls;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), V_ASN1_CONSTRUCTED); /* ContentInfo */
    const unsigned char *oid = p;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), 0); /* contentType */
    p += l;
    long oid_len = p - oid;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), V_ASN1_CONSTRUCTED); /* [0] */
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), V_ASN1_CONSTRUCTED); /* SignedData */
    const unsigned char *sd_end = p + l;
    const unsigned char *ver = p;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), 0); /* version */
    p += l;
    long ver_len = p - ver;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), V_ASN1_CONSTRUCTED); /* SET */
    assert_int_equal(tag, V_ASN1_SET);
    const unsigned char *algs = p, *rest = p + l;
    long algs_len = l, rest_len = sd_end - rest;

    long set_content = algs_len * n;
    long sd_content = ver_len + ASN1_object_size(1, set_content, V_ASN1_SET) + rest_len;
    long a0_content = ASN1_object_size(1, sd_content, V_ASN1_SEQUENCE);
    long ci_content = oid_len + ASN1_object_size(1, a0_content, 0);
    long total = ASN1_object_size(1, ci_content, V_ASN1_SEQUENCE);
    unsigned char *out = malloc((size_t)total), *q = out;
    assert_non_null(out);
    ASN1_put_object(&q, 1, ci_content, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, oid, (size_t)oid_len);
    q += oid_len;
    ASN1_put_object(&q, 1, a0_content, 0, V_ASN1_CONTEXT_SPECIFIC);
    ASN1_put_object(&q, 1, sd_content, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL);
    memcpy(q, ver, (size_t)ver_len);
    q += ver_len;
    ASN1_put_object(&q, 1, set_content, V_ASN1_SET, V_ASN1_UNIVERSAL);
    for (int i = 0; i < n; i++) {
        memcpy(q, algs, (size_t)algs_len);
        q += algs_len;
    }
    memcpy(q, rest, (size_t)rest_len);
    q += rest_len;
    assert_int_equal(q - out, total);
    *outlen = total;
    return out;
}

/* CMS_verify hashes the body once per digestAlgorithms entry, duplicates
 * included: a header with thousands of entries would cost seconds of CPU
 * for one unauthenticated request. More than a few are refused up front. */
static void test_mdm_signature_digest_algorithm_limit(void **state)
{
    (void)state;
    size_t body_len = 256 * 1024;
    char *body = calloc(1, body_len);
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, body, body_len);
    size_t len = 0;
    unsigned char *der = util_base64_decode(sig, strlen(sig), &len);
    char reason[256] = "";

    /* A duplicate or two still verifies (as OpenSSL would). */
    long dlen = 0;
    unsigned char *d = repeat_digest_algorithms(der, (long)len, 2, &dlen);
    char *b64 = util_base64_encode(d, (size_t)dlen);
    X509 *x = identity_from_mdm_signature(F.v, b64, body, body_len, reason, sizeof reason);
    if (!x)
        fail_msg("refused: %s", reason);
    X509_free(x);
    free(b64);
    free(d);

    d = repeat_digest_algorithms(der, (long)len, 2000, &dlen);
    b64 = util_base64_encode(d, (size_t)dlen);
    assert_true(strlen(b64) < 64 * 1024);
    int64_t t0 = util_now_us();
    assert_null(identity_from_mdm_signature(F.v, b64, body, body_len, reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature has too many signers, digest algorithms or certificates");
    assert_true(util_now_us() - t0 < 1000000);
    assert_int_equal(ERR_peek_error(), 0);
    free(b64);
    free(d);

    /* Too many certificates. */
    STACK_OF(X509) *extra = sk_X509_new_null();
    for (int i = 0; i < 16; i++) {
        EVP_PKEY *k = NULL;
        X509 *c = NULL;
        assert_int_equal(testpki_issue_device_identity(F.ca_pem, F.ca_key, "filler", &k, &c), 0);
        sk_X509_push(extra, c);
        EVP_PKEY_free(k);
    }
    BIO *in = BIO_new_mem_buf(BODY, (int)strlen(BODY));
    CMS_ContentInfo *cms = CMS_sign(F.dev_cert, F.dev_key, extra, in, CMS_DETACHED | CMS_BINARY);
    assert_non_null(cms);
    unsigned char *cder = NULL;
    int clen = i2d_CMS_ContentInfo(cms, &cder);
    b64 = util_base64_encode(cder, (size_t)clen);
    assert_null(identity_from_mdm_signature(F.v, b64, BODY, strlen(BODY), reason, sizeof reason));
    assert_string_equal(reason, "Mdm-Signature has too many signers, digest algorithms or certificates");
    free(b64);
    OPENSSL_free(cder);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_pop_free(extra, X509_free);

    free(der);
    free(sig);
    free(body);
}

/* ---- signer-chain cache and the certificate-apart fast path ------------------------ */

static char *cms_b64(CMS_ContentInfo *cms)
{
    unsigned char *der = NULL;
    int len = i2d_CMS_ContentInfo(cms, &der);
    assert_true(len > 0);
    char *b64 = util_base64_encode(der, (size_t)len);
    assert_non_null(b64);
    OPENSSL_free(der);
    return b64;
}

/* Detached SignedData over BODY by cert/key, without certificates; the
 * caller adds what it likes. */
static CMS_ContentInfo *sign_nocerts(X509 *cert, EVP_PKEY *key)
{
    BIO *in = BIO_new_mem_buf(BODY, (int)strlen(BODY));
    CMS_ContentInfo *cms = CMS_sign(cert, key, NULL, in, CMS_DETACHED | CMS_BINARY | CMS_NOCERTS);
    assert_non_null(cms);
    BIO_free(in);
    return cms;
}

static identity_verifier_t *fresh_verifier(void)
{
    char *err = NULL;
    identity_verifier_t *v = identity_verifier_new(F.ca_pem, &err);
    assert_non_null(v);
    return v;
}

static void expect_stats(identity_verifier_t *v, uint64_t hits, uint64_t misses, size_t entries)
{
    identity_cache_stats_t st;
    identity_verifier_cache_stats(v, &st);
    if (st.hits != hits || st.misses != misses || st.entries != entries)
        fail_msg("cache stats: hits %llu misses %llu entries %zu; want %llu %llu %zu", (unsigned long long)st.hits,
                 (unsigned long long)st.misses, st.entries, (unsigned long long)hits, (unsigned long long)misses,
                 entries);
}

static void expect_signer(identity_verifier_t *v, const char *sig, const void *body, size_t len, X509 *want)
{
    char reason[256] = "";
    X509 *x = identity_from_mdm_signature(v, sig, body, len, reason, sizeof reason);
    if (!x)
        fail_msg("refused: %s", reason);
    assert_int_equal(X509_cmp(x, want), 0);
    X509_free(x);
    assert_int_equal(ERR_peek_error(), 0);
}

static void expect_mdm_refused(identity_verifier_t *v, const char *sig, const void *body, size_t len,
                               const char *why)
{
    char reason[256] = "";
    X509 *x = identity_from_mdm_signature(v, sig, body, len, reason, sizeof reason);
    if (x)
        fail_msg("accepted; expected \"%s\"", why);
    assert_string_equal(reason, why);
    assert_int_equal(ERR_peek_error(), 0);
}

static void test_cache_hit_and_forget_all(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    expect_stats(v, 0, 0, 0);
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
    expect_stats(v, 0, 1, 1);
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
    expect_stats(v, 2, 1, 1);

    /* The cache is per verifier, and identity_verify_cert never uses it. */
    char reason[256];
    assert_int_equal(identity_verify_cert(v, F.dev_cert, NULL, reason, sizeof reason), 0);
    expect_stats(v, 2, 1, 1);

    identity_verifier_forget_all(v);
    expect_stats(v, 2, 1, 0);
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert); /* verified in full again */
    expect_stats(v, 2, 2, 1);
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
    expect_stats(v, 3, 2, 1);

    /* A failure is never cached; the entry of another device is separate. */
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    assert_int_equal(testpki_issue_expired_identity(F.ca_pem, F.ca_key, "device-old", &k, &x), 0);
    char *old = testpki_mdm_signature(x, k, BODY, strlen(BODY));
    for (int i = 0; i < 2; i++)
        expect_mdm_refused(v, old, BODY, strlen(BODY), "Mdm-Signature signer is not trusted: certificate has expired");
    expect_stats(v, 3, 2, 1);

    identity_verifier_forget_all(v);
    identity_verifier_forget_all(NULL);
    identity_verifier_cache_stats(NULL, NULL);
    identity_cache_stats_t st;
    identity_verifier_cache_stats(NULL, &st);
    assert_int_equal(st.hits + st.misses + st.entries, 0);
    free(old);
    X509_free(x);
    EVP_PKEY_free(k);
    free(sig);
    identity_verifier_free(v); /* frees what is cached (LeakSanitizer checks) */
}

/* A cached certificate vouches for the chain only: the signature over the
 * body is checked in full on every call. */
static void test_cache_still_checks_signature(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
    expect_stats(v, 0, 1, 1);

    /* Signature over another body. */
    static const char other[] = "<plist version=\"1.0\"><dict/></plist>\n";
    expect_mdm_refused(v, sig, other, strlen(other), "Mdm-Signature does not match the request body");
    expect_mdm_refused(v, sig, BODY, strlen(BODY) - 1, "Mdm-Signature does not match the request body");
    expect_mdm_refused(v, sig, NULL, 0, "Mdm-Signature does not match the request body");

    /* Tampered signature value (still a well-formed ECDSA-Sig-Value: the
     * last byte of s). */
    size_t dlen = 0;
    unsigned char *der = util_base64_decode(sig, strlen(sig), &dlen);
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)dlen);
    assert_non_null(cms);
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    ASN1_OCTET_STRING *sv = CMS_SignerInfo_get0_signature(si);
    assert_non_null(sv);
    ((unsigned char *)ASN1_STRING_get0_data(sv))[ASN1_STRING_length(sv) - 1] ^= 0x01;
    char *tampered = cms_b64(cms);
    expect_mdm_refused(v, tampered, BODY, strlen(BODY), "Mdm-Signature does not match the request body");
    CMS_ContentInfo_free(cms);

    /* Tampered signed attributes: messageDigest of another body. */
    p = der;
    cms = d2i_CMS_ContentInfo(NULL, &p, (long)dlen);
    si = sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0);
    int idx = CMS_signed_get_attr_by_NID(si, NID_pkcs9_messageDigest, -1);
    assert_true(idx >= 0);
    X509_ATTRIBUTE *attr = CMS_signed_get_attr(si, idx);
    ASN1_TYPE *t = X509_ATTRIBUTE_get0_type(attr, 0);
    assert_non_null(t);
    assert_int_equal(ASN1_TYPE_get(t), V_ASN1_OCTET_STRING);
    ((unsigned char *)ASN1_STRING_get0_data(t->value.octet_string))[0] ^= 0x01;
    char *attrs = cms_b64(cms);
    expect_mdm_refused(v, attrs, BODY, strlen(BODY), "Mdm-Signature does not match the request body");
    CMS_ContentInfo_free(cms);

    /* None of it disturbed the cached chain. */
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
    identity_cache_stats_t st;
    identity_verifier_cache_stats(v, &st);
    assert_int_equal(st.misses, 1);
    assert_int_equal(st.entries, 1);

    free(attrs);
    free(tampered);
    free(der);
    free(sig);
    identity_verifier_free(v);
}

/* A trusted, cached certificate that is not the signer's, or whose key did
 * not make the signature, does not stand in for the signer. */
static void test_cache_wrong_signer_cert(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert); /* F.dev_cert's chain now cached */

    /* Signed by device 2, carrying only device 1's (cached) certificate. */
    EVP_PKEY *k2 = NULL;
    X509 *c2 = NULL;
    assert_int_equal(testpki_issue_device_identity(F.ca_pem, F.ca_key, "device-2", &k2, &c2), 0);
    CMS_ContentInfo *cms = sign_nocerts(c2, k2);
    assert_int_equal(CMS_add1_cert(cms, F.dev_cert), 1);
    char *wrong = cms_b64(cms);
    expect_mdm_refused(v, wrong, BODY, strlen(BODY), "Mdm-Signature does not include the signer certificate");
    CMS_ContentInfo_free(cms);

    /* A certificate naming device 2's issuer and serial (so the SignerInfo
     * selects it), issued by our CA, but for another key: a trusted signer
     * certificate whose key does not match the signature. Cache it first. */
    EVP_PKEY *ca_key = pki_load_key(F.ca_key);
    EVP_PKEY *k3 = pki_new_ec_key();
    X509 *c3 = X509_dup(c2);
    assert_non_null(ca_key);
    assert_non_null(c3);
    assert_int_equal(X509_set_pubkey(c3, k3), 1);
    assert_true(X509_sign(c3, ca_key, EVP_sha256()) > 0);
    char *own = testpki_mdm_signature(c3, k3, BODY, strlen(BODY));
    expect_signer(v, own, BODY, strlen(BODY), c3);
    expect_signer(v, own, BODY, strlen(BODY), c3);
    expect_stats(v, 1, 2, 2);
    cms = sign_nocerts(c2, k2);
    assert_int_equal(CMS_add1_cert(cms, c3), 1);
    char *mismatch = cms_b64(cms);
    expect_mdm_refused(v, mismatch, BODY, strlen(BODY), "Mdm-Signature does not match the request body");
    expect_mdm_refused(v, mismatch, BODY, strlen(BODY), "Mdm-Signature does not match the request body");
    CMS_ContentInfo_free(cms);
    /* Device 2's genuine signature still verifies, as its own entry. */
    char *good2 = testpki_mdm_signature(c2, k2, BODY, strlen(BODY));
    expect_signer(v, good2, BODY, strlen(BODY), c2);
    expect_stats(v, 1, 3, 3);

    free(good2);
    free(mismatch);
    free(own);
    free(wrong);
    free(sig);
    X509_free(c3);
    EVP_PKEY_free(k3);
    EVP_PKEY_free(ca_key);
    X509_free(c2);
    EVP_PKEY_free(k2);
    identity_verifier_free(v);
}

/* The cache vouches for the one certificate of a set whose chain verified:
 * another member of the same (cached) set as signer is verified in full. */
static void test_cache_other_member_signs(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    X509 *ca = pki_load_cert(F.ca_pem);
    EVP_PKEY *ca_key = pki_load_key(F.ca_key);
    EVP_PKEY *ik = pki_new_ec_key(), *lk = pki_new_ec_key();
    X509 *inter = pki_issue_cert(ca, ca_key, ik, "orchard sub-CA 2", 30, PKI_USAGE_CA, NULL, 0);
    X509 *leaf = pki_issue_cert(inter, ik, lk, "device-sub-2", 30, PKI_USAGE_CLIENT, NULL, 0);
    assert_non_null(inter);
    assert_non_null(leaf);

    CMS_ContentInfo *cms = sign_nocerts(leaf, lk);
    assert_int_equal(CMS_add1_cert(cms, leaf), 1);
    assert_int_equal(CMS_add1_cert(cms, inter), 1);
    char *by_leaf = cms_b64(cms);
    CMS_ContentInfo_free(cms);
    expect_signer(v, by_leaf, BODY, strlen(BODY), leaf);
    expect_signer(v, by_leaf, BODY, strlen(BODY), leaf);
    expect_stats(v, 1, 1, 1);

    /* Same certificate set, signed by the sub-CA's key: a valid signature,
     * but the sub-CA is no device identity. */
    cms = sign_nocerts(inter, ik);
    assert_int_equal(CMS_add1_cert(cms, leaf), 1);
    assert_int_equal(CMS_add1_cert(cms, inter), 1);
    char *by_inter = cms_b64(cms);
    CMS_ContentInfo_free(cms);
    expect_mdm_refused(v, by_inter, BODY, strlen(BODY),
                       "Mdm-Signature signer is not trusted: unsuitable certificate purpose");
    expect_stats(v, 1, 1, 1);
    expect_signer(v, by_leaf, BODY, strlen(BODY), leaf);
    expect_stats(v, 2, 1, 1);

    free(by_inter);
    free(by_leaf);
    X509_free(leaf);
    X509_free(inter);
    EVP_PKEY_free(ik);
    EVP_PKEY_free(lk);
    EVP_PKEY_free(ca_key);
    X509_free(ca);
    identity_verifier_free(v);
}

/* An entry lives no longer than the chain's first notAfter. */
static void test_cache_expired_cert_not_served(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    EVP_PKEY *ca_key = pki_load_key(F.ca_key);
    EVP_PKEY *k = NULL;
    X509 *x = NULL;
    assert_int_equal(testpki_issue_device_identity(F.ca_pem, F.ca_key, "device-brief", &k, &x), 0);
    time_t now = time(NULL);
    assert_non_null(X509_time_adj_ex(X509_getm_notAfter(x), 0, 2, &now));
    assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
    char *sig = testpki_mdm_signature(x, k, BODY, strlen(BODY));
    expect_signer(v, sig, BODY, strlen(BODY), x);
    expect_signer(v, sig, BODY, strlen(BODY), x);
    expect_stats(v, 1, 1, 1);
    while (time(NULL) < now + 3)
        sleep(1);
    expect_mdm_refused(v, sig, BODY, strlen(BODY), "Mdm-Signature signer is not trusted: certificate has expired");
    expect_stats(v, 1, 1, 0); /* the stale entry was dropped, not served */
    free(sig);
    X509_free(x);
    EVP_PKEY_free(k);
    EVP_PKEY_free(ca_key);
    identity_verifier_free(v);
}

/* SignerInfos without signed attributes (Apple devices always send them;
 * other clients may not) are verified, not refused: CMS_verify checks the
 * signature directly over the body's digest. Every call, cached or not. */
static void test_mdm_signature_no_signed_attributes(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    BIO *in = BIO_new_mem_buf(BODY, (int)strlen(BODY));
    CMS_ContentInfo *cms = CMS_sign(F.dev_cert, F.dev_key, NULL, in, CMS_DETACHED | CMS_BINARY | CMS_NOATTR);
    assert_non_null(cms);
    BIO_free(in);
    assert_int_equal(CMS_signed_get_attr_count(sk_CMS_SignerInfo_value(CMS_get0_SignerInfos(cms), 0)), -1);
    char *sig = cms_b64(cms);
    for (int i = 0; i < 2; i++) {
        expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
        expect_mdm_refused(v, sig, BODY, strlen(BODY) - 1, "Mdm-Signature does not match the request body");
    }
    expect_stats(v, 1, 1, 1);
    CMS_ContentInfo_free(cms);
    free(sig);
    identity_verifier_free(v);
}

/* Rewrites a DER ContentInfo(SignedData) the way Apple's CMS encoder writes
 * it: indefinite lengths for ContentInfo, [0], SignedData,
 * encapContentInfo and the certificate set. */
static unsigned char *to_indefinite(const unsigned char *der, long len, long *outlen)
{
    const unsigned char *p = der, *end = der + len;
    long l;
    int tag, cls;
    unsigned char *out = malloc((size_t)len + 32), *q = out;
    assert_non_null(out);
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), V_ASN1_CONSTRUCTED); /* ContentInfo */
    memcpy(q, "\x30\x80", 2);
    q += 2;
    const unsigned char *oid = p;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), 0);
    p += l;
    memcpy(q, oid, (size_t)(p - oid));
    q += p - oid;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), V_ASN1_CONSTRUCTED); /* [0] */
    memcpy(q, "\xa0\x80", 2);
    q += 2;
    assert_int_equal(ASN1_get_object(&p, &l, &tag, &cls, end - p), V_ASN1_CONSTRUCTED); /* SignedData */
    memcpy(q, "\x30\x80", 2);
    q += 2;
    const unsigned char *sd_end = p + l;
    while (p < sd_end) {
        const unsigned char *e = p;
        int r = ASN1_get_object(&p, &l, &tag, &cls, sd_end - p);
        assert_false(r & 0x80);
        int indefinite = (tag == V_ASN1_SEQUENCE && cls == V_ASN1_UNIVERSAL) /* encapContentInfo */ ||
                         (tag == 0 && cls == V_ASN1_CONTEXT_SPECIFIC); /* certificates */
        if (indefinite) {
            *q++ = *e; /* same identifier octet */
            *q++ = 0x80;
            memcpy(q, p, (size_t)l);
            q += l;
            *q++ = 0;
            *q++ = 0;
        } else {
            memcpy(q, e, (size_t)(p + l - e));
            q += p + l - e;
        }
        p += l;
    }
    memset(q, 0, 6); /* end of SignedData, [0], ContentInfo */
    q += 6;
    *outlen = q - out;
    return out;
}

static void test_mdm_signature_indefinite_length(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    char *sig = testpki_mdm_signature(F.dev_cert, F.dev_key, BODY, strlen(BODY));
    size_t dlen = 0;
    unsigned char *der = util_base64_decode(sig, strlen(sig), &dlen);
    long blen = 0;
    unsigned char *ber = to_indefinite(der, (long)dlen, &blen);
    assert_int_equal(ber[1], 0x80);
    char *b64 = util_base64_encode(ber, (size_t)blen);
    /* Cold, then warm: the certificate set was found (and cached) through
     * the indefinite lengths. */
    expect_signer(v, b64, BODY, strlen(BODY), F.dev_cert);
    expect_signer(v, b64, BODY, strlen(BODY), F.dev_cert);
    expect_stats(v, 1, 1, 1);
    /* Same certificate bytes in DER: the same entry. */
    expect_signer(v, sig, BODY, strlen(BODY), F.dev_cert);
    expect_stats(v, 2, 1, 1);
    expect_mdm_refused(v, b64, "x", 1, "Mdm-Signature does not match the request body");

    /* Trailing bytes after the end-of-contents octets; a missing one. */
    unsigned char *t = malloc((size_t)blen + 2);
    memcpy(t, ber, (size_t)blen);
    t[blen] = 0;
    t[blen + 1] = 0;
    char *b = util_base64_encode(t, (size_t)blen + 2);
    expect_mdm_refused(v, b, BODY, strlen(BODY), "Mdm-Signature is not a CMS structure");
    free(b);
    b = util_base64_encode(ber, (size_t)blen - 2);
    expect_mdm_refused(v, b, BODY, strlen(BODY), "Mdm-Signature is not a CMS structure");
    free(b);

    /* Every truncation and every single-byte corruption of the BER form is
     * refused with a reason and a clean error queue (the fast path's walk
     * and its fallback to the full parse agree). */
    char reason[256];
    for (long n = 0; n < blen; n += 7) {
        b = util_base64_encode(ber, (size_t)n);
        reason[0] = '\0';
        assert_null(identity_from_mdm_signature(v, b, BODY, strlen(BODY), reason, sizeof reason));
        assert_true(reason[0] != '\0');
        assert_int_equal(ERR_peek_error(), 0);
        free(b);
    }
    for (long i = 0; i < blen; i += 3) {
        memcpy(t, ber, (size_t)blen);
        t[i] ^= 0x41;
        b = util_base64_encode(t, (size_t)blen);
        reason[0] = '\0';
        X509 *x = identity_from_mdm_signature(v, b, BODY, strlen(BODY), reason, sizeof reason);
        if (x) { /* only a change that leaves the signed content alone can pass */
            assert_int_equal(X509_cmp(x, F.dev_cert), 0);
            X509_free(x);
        } else {
            assert_true(reason[0] != '\0');
        }
        assert_int_equal(ERR_peek_error(), 0);
        free(b);
    }
    free(t);
    free(b64);
    free(ber);
    free(der);
    free(sig);
    identity_verifier_free(v);
}

/* Fast path and full parse give the same answers: the certificate set
 * holding more than the limit, or an empty one. */
static void test_mdm_signature_cert_set_edges(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    CMS_ContentInfo *cms = sign_nocerts(F.dev_cert, F.dev_key);
    char *none = cms_b64(cms);
    expect_mdm_refused(v, none, BODY, strlen(BODY), "Mdm-Signature does not include the signer certificate");
    assert_int_equal(CMS_add1_cert(cms, F.dev_cert), 1);
    char *one = cms_b64(cms);
    expect_signer(v, one, BODY, strlen(BODY), F.dev_cert);
    /* The signer plus 15 others: at the limit, fine; the order of the set
     * is part of the key. */
    for (int i = 0; i < 15; i++) {
        EVP_PKEY *k = NULL;
        X509 *c = NULL;
        assert_int_equal(testpki_issue_device_identity(F.ca_pem, F.ca_key, "filler", &k, &c), 0);
        assert_int_equal(CMS_add0_cert(cms, c), 1);
        EVP_PKEY_free(k);
    }
    char *sixteen = cms_b64(cms);
    expect_signer(v, sixteen, BODY, strlen(BODY), F.dev_cert);
    expect_signer(v, sixteen, BODY, strlen(BODY), F.dev_cert);
    expect_stats(v, 1, 2, 2);
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    assert_int_equal(testpki_issue_device_identity(F.ca_pem, F.ca_key, "filler", &k, &c), 0);
    assert_int_equal(CMS_add0_cert(cms, c), 1);
    EVP_PKEY_free(k);
    char *seventeen = cms_b64(cms);
    expect_mdm_refused(v, seventeen, BODY, strlen(BODY),
                       "Mdm-Signature has too many signers, digest algorithms or certificates");
    free(seventeen);
    free(sixteen);
    free(one);
    free(none);
    CMS_ContentInfo_free(cms);
    identity_verifier_free(v);
}

/* Many threads, several devices, forget_all racing with verification. */
typedef struct {
    identity_verifier_t *v;
    char **sigs;
    X509 **certs;
    int n;
    int ok;
} race_arg_t;

static void *race_thread(void *p)
{
    race_arg_t *a = p;
    a->ok = 1;
    for (int i = 0; i < 60; i++) {
        char reason[256];
        int d = i % a->n;
        X509 *x = identity_from_mdm_signature(a->v, a->sigs[d], BODY, strlen(BODY), reason, sizeof reason);
        if (!x || X509_cmp(x, a->certs[d]) != 0)
            a->ok = 0;
        X509_free(x);
        if (identity_from_mdm_signature(a->v, a->sigs[d], "x", 1, reason, sizeof reason))
            a->ok = 0;
        if (i % 17 == 0)
            identity_verifier_forget_all(a->v);
    }
    return NULL;
}

static void test_cache_concurrent(void **state)
{
    (void)state;
    identity_verifier_t *v = fresh_verifier();
    enum { NDEV = 3, NTH = 4 };
    char *sigs[NDEV];
    X509 *certs[NDEV];
    EVP_PKEY *keys[NDEV];
    for (int i = 0; i < NDEV; i++) {
        assert_int_equal(testpki_issue_device_identity(F.ca_pem, F.ca_key, "racer", &keys[i], &certs[i]), 0);
        sigs[i] = testpki_mdm_signature(certs[i], keys[i], BODY, strlen(BODY));
    }
    pthread_t th[NTH];
    race_arg_t args[NTH];
    for (int i = 0; i < NTH; i++) {
        args[i] = (race_arg_t){v, sigs, certs, NDEV, 0};
        assert_int_equal(pthread_create(&th[i], NULL, race_thread, &args[i]), 0);
    }
    for (int i = 0; i < NTH; i++) {
        pthread_join(th[i], NULL);
        assert_true(args[i].ok);
    }
    identity_cache_stats_t st;
    identity_verifier_cache_stats(v, &st);
    assert_int_equal(st.hits + st.misses, NTH * 60);
    assert_true(st.entries <= NDEV);
    for (int i = 0; i < NDEV; i++) {
        free(sigs[i]);
        X509_free(certs[i]);
        EVP_PKEY_free(keys[i]);
    }
    identity_verifier_free(v);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bootstrap_creates_files),
        cmocka_unit_test(test_bootstrap_ip_host),
        cmocka_unit_test(test_bootstrap_idempotent),
        cmocka_unit_test(test_bootstrap_reissues_tls_with_existing_ca),
        cmocka_unit_test(test_bootstrap_installs_differ_and_bad_input),
        cmocka_unit_test(test_issue_cert_details),
        cmocka_unit_test(test_cert_bundle_and_digest),
        cmocka_unit_test(test_device_cert_verifies),
        cmocka_unit_test(test_other_ca_refused),
        cmocka_unit_test(test_expired_refused),
        cmocka_unit_test(test_server_cert_refused_as_client),
        cmocka_unit_test(test_intermediate_chain),
        cmocka_unit_test(test_mdm_signature_valid),
        cmocka_unit_test(test_mdm_signature_binary_body),
        cmocka_unit_test(test_mdm_signature_wrong_body),
        cmocka_unit_test(test_mdm_signature_bad_base64),
        cmocka_unit_test(test_mdm_signature_not_cms),
        cmocka_unit_test(test_mdm_signature_attached_refused),
        cmocka_unit_test(test_mdm_signature_no_signer_cert),
        cmocka_unit_test(test_mdm_signature_untrusted_signer),
        cmocka_unit_test(test_mdm_signature_digest_algorithm_limit),
        cmocka_unit_test(test_concurrent_verification),
        cmocka_unit_test(test_header_formats_round_trip),
        cmocka_unit_test(test_header_malformed),
        cmocka_unit_test(test_degenerate_inputs),
        cmocka_unit_test(test_fuzz_unknown_digest_algorithm),
        cmocka_unit_test(test_cache_hit_and_forget_all),
        cmocka_unit_test(test_cache_still_checks_signature),
        cmocka_unit_test(test_cache_wrong_signer_cert),
        cmocka_unit_test(test_cache_other_member_signs),
        cmocka_unit_test(test_cache_expired_cert_not_served),
        cmocka_unit_test(test_mdm_signature_no_signed_attributes),
        cmocka_unit_test(test_mdm_signature_indefinite_length),
        cmocka_unit_test(test_mdm_signature_cert_set_edges),
        cmocka_unit_test(test_cache_concurrent),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
