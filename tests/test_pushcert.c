/* APNs push certificate tooling: customer CSR, vendor signing into the
 * PushCertWebRequest, import of the issued certificate, the CLI, and the
 * server picking the imported certificate up. A throw-away "Apple" PKI
 * (root, WWDR-like intermediate, MDM vendor certificate) stands in for the
 * real one. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/pkcs12.h>
#include <openssl/provider.h>
#include <openssl/x509v3.h>

#include "cli_pushcert.h"
#include "pki.h"
#include "plist.h"
#include "pushcert.h"
#include "testserver.h"
#include "util.h"

#define DAY 86400L

/* ---- fixture ------------------------------------------------------------- */

typedef struct {
    char dir[64];
    EVP_PKEY *root_key, *wwdr_key, *vendor_key, *push_key, *other_key;
    X509 *root, *wwdr, *vendor;
    /* files */
    char *root_cer;    /* DER, as Apple publishes it */
    char *wwdr_cer;    /* DER */
    char *chain_pem;   /* root + WWDR in one PEM file, root first (wrong order on purpose) */
    char *vendor_pem, *vendor_keyfile, *vendor_p12;
    char *csr_key, *csr_pem; /* a customer CSR made by pushcert_csr_files */
    char *push_keyfile;
    int serial;
    int ndirs;
} fixture_t;

static fixture_t F;

static char *path_in(const char *name)
{
    char *p = util_strdup_printf("%s/%s", F.dir, name);
    assert_non_null(p);
    return p;
}

/* A fresh directory under the fixture directory (an empty data dir). */
static char *new_dir(void)
{
    char *p = util_strdup_printf("%s/data%d", F.dir, ++F.ndirs);
    assert_non_null(p);
    assert_int_equal(mkdir(p, 0700), 0);
    return p;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int write_der(const char *path, X509 *x)
{
    unsigned char *der = NULL;
    int n = i2d_X509(x, &der);
    int rc = n > 0 ? util_write_file(path, der, (size_t)n, 0644) : -1;
    OPENSSL_free(der);
    return rc;
}

static int write_p12(const char *path, EVP_PKEY *key, X509 *cert, const char *pass, int key_nid, int cert_nid)
{
    PKCS12 *p12 = PKCS12_create(pass, "test identity", key, cert, NULL, key_nid, cert_nid, 0, 0, 0);
    unsigned char *der = NULL;
    int n = p12 ? i2d_PKCS12(p12, &der) : -1;
    int rc = n > 0 ? util_write_file(path, der, (size_t)n, 0600) : -1;
    OPENSSL_free(der);
    PKCS12_free(p12);
    ERR_clear_error();
    return rc;
}

/* A certificate shaped like the ones the Apple Push Certificates Portal
 * issues: subject UID = topic, CN = "APSP:<uuid>", C = US, issued by the
 * test WWDR. Valid from now+from to now+to (seconds). uid NULL: no UID. */
static X509 *make_push_cert(const char *uid, EVP_PKEY *subject_key, long from, long to)
{
    X509 *x = X509_new();
    X509_NAME *n = X509_NAME_new();
    assert_non_null(x);
    assert_non_null(n);
    char uuid[37], cn[64];
    assert_int_equal(util_uuid4(uuid), 0);
    snprintf(cn, sizeof cn, "APSP:%s", uuid);
    assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), ++F.serial + 1000), 1);
    if (uid)
        assert_int_equal(
            X509_NAME_add_entry_by_NID(n, NID_userId, MBSTRING_UTF8, (const unsigned char *)uid, -1, -1, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0), 1);
    assert_int_equal(X509_NAME_add_entry_by_txt(n, "C", MBSTRING_UTF8, (const unsigned char *)"US", -1, -1, 0), 1);
    assert_int_equal(X509_set_subject_name(x, n), 1);
    assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(F.wwdr)), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to));
    assert_int_equal(X509_set_pubkey(x, subject_key), 1);
    assert_true(X509_sign(x, F.wwdr_key, EVP_sha256()) > 0);
    X509_NAME_free(n);
    return x;
}

static char *new_topic(void)
{
    char uuid[37];
    assert_int_equal(util_uuid4(uuid), 0);
    char *t = util_strdup_printf("com.apple.mgmt.External.%s", uuid);
    assert_non_null(t);
    return t;
}

/* Writes a push certificate to a new PEM file; returns its path. */
static char *push_cert_file(X509 *cert)
{
    char *p = util_strdup_printf("%s/push-%d.pem", F.dir, ++F.serial);
    assert_non_null(p);
    assert_int_equal(pki_write_cert(p, cert), 0);
    return p;
}

static int group_setup(void **state)
{
    (void)state;
    snprintf(F.dir, sizeof F.dir, "/tmp/orchard-test-pushcert-XXXXXX");
    if (!mkdtemp(F.dir))
        return -1;
    F.root_key = pki_new_rsa_key(2048);
    F.wwdr_key = pki_new_rsa_key(2048);
    F.vendor_key = pki_new_rsa_key(2048);
    F.push_key = pki_new_rsa_key(2048);
    F.other_key = pki_new_rsa_key(2048);
    if (!F.root_key || !F.wwdr_key || !F.vendor_key || !F.push_key || !F.other_key)
        return -1;
    F.root = pki_issue_cert(NULL, F.root_key, F.root_key, "Test Apple Root CA", 3650, PKI_USAGE_CA, NULL, 0);
    F.wwdr = pki_issue_cert(F.root, F.root_key, F.wwdr_key, "Test WWDR Intermediate", 3650, PKI_USAGE_CA, NULL, 0);
    F.vendor = pki_issue_cert(F.wwdr, F.wwdr_key, F.vendor_key, "MDM Vendor: Test Vendor", 365, PKI_USAGE_CLIENT,
                              NULL, 0);
    if (!F.root || !F.wwdr || !F.vendor)
        return -1;
    F.root_cer = util_strdup_printf("%s/AppleIncRoot.cer", F.dir);
    F.wwdr_cer = util_strdup_printf("%s/AppleWWDRCA.cer", F.dir);
    F.chain_pem = util_strdup_printf("%s/apple-chain.pem", F.dir);
    F.vendor_pem = util_strdup_printf("%s/vendor.pem", F.dir);
    F.vendor_keyfile = util_strdup_printf("%s/vendor.key", F.dir);
    F.vendor_p12 = util_strdup_printf("%s/vendor.p12", F.dir);
    F.csr_key = util_strdup_printf("%s/customer.key", F.dir);
    F.csr_pem = util_strdup_printf("%s/customer.csr", F.dir);
    F.push_keyfile = util_strdup_printf("%s/push-source.key", F.dir);
    if (write_der(F.root_cer, F.root) != 0 || write_der(F.wwdr_cer, F.wwdr) != 0 ||
        pki_write_cert(F.vendor_pem, F.vendor) != 0 || pki_write_key(F.vendor_keyfile, F.vendor_key) != 0 ||
        pki_write_key(F.push_keyfile, F.push_key) != 0 ||
        write_p12(F.vendor_p12, F.vendor_key, F.vendor, "vendor-secret", 0, 0) != 0)
        return -1;
    /* root first, then the intermediate: signing must put them in order */
    BIO *b = BIO_new(BIO_s_mem());
    if (!b || !PEM_write_bio_X509(b, F.root) || !PEM_write_bio_X509(b, F.wwdr))
        return -1;
    char *data = NULL;
    long n = BIO_get_mem_data(b, &data);
    int rc = util_write_file(F.chain_pem, data, (size_t)n, 0644);
    BIO_free(b);
    if (rc != 0)
        return -1;
    char *err = NULL;
    if (pushcert_csr_files(F.csr_key, F.csr_pem, "Acme MDM", "Acme Inc", 0, &err) != 0) {
        fprintf(stderr, "csr: %s\n", err ? err : "?");
        free(err);
        return -1;
    }
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    EVP_PKEY_free(F.root_key);
    EVP_PKEY_free(F.wwdr_key);
    EVP_PKEY_free(F.vendor_key);
    EVP_PKEY_free(F.push_key);
    EVP_PKEY_free(F.other_key);
    X509_free(F.root);
    X509_free(F.wwdr);
    X509_free(F.vendor);
    free(F.root_cer);
    free(F.wwdr_cer);
    free(F.chain_pem);
    free(F.vendor_pem);
    free(F.vendor_keyfile);
    free(F.vendor_p12);
    free(F.csr_key);
    free(F.csr_pem);
    free(F.push_keyfile);
    if (!getenv("ORCHARD_KEEP_TEST_DIR"))
        nftw(F.dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return 0;
}

static int file_mode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (int)(st.st_mode & 07777);
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

static void assert_contains(const char *haystack, const char *needle)
{
    if (!haystack || !strstr(haystack, needle)) {
        fprintf(stderr, "expected \"%s\" in: %s\n", needle, haystack ? haystack : "(null)");
        fail();
    }
}

/* The DER inside a PEM CSR file. */
static unsigned char *csr_der(const char *path, long *len)
{
    BIO *b = BIO_new_file(path, "r");
    assert_non_null(b);
    char *name = NULL, *header = NULL;
    unsigned char *der = NULL;
    assert_int_equal(PEM_read_bio(b, &name, &header, &der, len), 1);
    assert_string_equal(name, "CERTIFICATE REQUEST");
    OPENSSL_free(name);
    OPENSSL_free(header);
    BIO_free(b);
    return der;
}

/* ---- 1. CSR --------------------------------------------------------------- */

static void test_csr_generate(void **state)
{
    (void)state;
    EVP_PKEY *key = NULL;
    X509_REQ *req = NULL;
    char *err = NULL;
    assert_int_equal(pushcert_csr_generate("Acme MDM", "Acme Inc", &key, &req, &err), 0);
    assert_null(err);
    assert_true(EVP_PKEY_is_a(key, "RSA"));
    assert_int_equal(EVP_PKEY_get_bits(key), 2048);
    assert_int_equal(X509_REQ_verify(req, key), 1);
    assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), key), 1);
    assert_int_equal(X509_REQ_get_signature_nid(req), NID_sha256WithRSAEncryption);
    char buf[128];
    X509_NAME *n = X509_REQ_get_subject_name(req);
    assert_true(X509_NAME_get_text_by_NID(n, NID_commonName, buf, sizeof buf) > 0);
    assert_string_equal(buf, "Acme MDM");
    assert_true(X509_NAME_get_text_by_NID(n, NID_organizationName, buf, sizeof buf) > 0);
    assert_string_equal(buf, "Acme Inc");
    assert_int_equal(X509_NAME_entry_count(n), 2);
    X509_REQ_free(req);
    EVP_PKEY_free(key);

    /* defaults: CN only */
    assert_int_equal(pushcert_csr_generate(NULL, NULL, &key, &req, &err), 0);
    n = X509_REQ_get_subject_name(req);
    assert_true(X509_NAME_get_text_by_NID(n, NID_commonName, buf, sizeof buf) > 0);
    assert_string_equal(buf, PUSHCERT_DEFAULT_CN);
    assert_int_equal(X509_NAME_entry_count(n), 1);
    X509_REQ_free(req);
    EVP_PKEY_free(key);

    /* a name longer than X.520 allows is refused with a reason */
    char longname[80];
    memset(longname, 'a', sizeof longname - 1);
    longname[sizeof longname - 1] = '\0';
    assert_int_equal(pushcert_csr_generate(longname, NULL, &key, &req, &err), -1);
    assert_null(key);
    assert_null(req);
    assert_contains(err, "longer than 64");
    free(err);
}

static void test_csr_files(void **state)
{
    (void)state;
    /* made in group_setup */
    assert_int_equal(file_mode(F.csr_key), 0600);
    EVP_PKEY *key = pki_load_key(F.csr_key);
    assert_non_null(key);
    BIO *b = BIO_new_file(F.csr_pem, "r");
    X509_REQ *req = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(req);
    assert_int_equal(EVP_PKEY_eq(X509_REQ_get0_pubkey(req), key), 1);
    assert_int_equal(X509_REQ_verify(req, key), 1);
    X509_REQ_free(req);

    /* the key is never silently replaced */
    char *before = util_read_file(F.csr_key, 1 << 16, NULL);
    char *other_csr = path_in("other.csr");
    char *err = NULL;
    assert_int_equal(pushcert_csr_files(F.csr_key, other_csr, NULL, NULL, 0, &err), -1);
    assert_contains(err, F.csr_key);
    assert_contains(err, "already exists");
    free(err);
    err = NULL;
    assert_false(exists(other_csr));
    char *after = util_read_file(F.csr_key, 1 << 16, NULL);
    assert_string_equal(before, after);
    free(after);

    /* --force replaces it (a copy, to keep the fixture's pair intact) */
    char *k2 = path_in("forced.key");
    assert_int_equal(util_write_file(k2, "old", 3, 0644), 0);
    assert_int_equal(pushcert_csr_files(k2, other_csr, "x", NULL, 1, &err), 0);
    assert_int_equal(file_mode(k2), 0600);
    EVP_PKEY *k2key = pki_load_key(k2);
    assert_non_null(k2key);
    EVP_PKEY_free(k2key);

    /* same path for both outputs */
    assert_int_equal(pushcert_csr_files(other_csr, other_csr, NULL, NULL, 1, &err), -1);
    assert_non_null(err);
    free(err);
    free(k2);
    free(before);
    free(other_csr);
    EVP_PKEY_free(key);
}

/* ---- 2. vendor signing ------------------------------------------------------ */

typedef struct {
    plist_t *plist;
    const char *csr_b64, *chain, *sig_b64;
} request_t;

/* Decodes a PushCertWebRequest file: base64 → plist XML → three strings. */
static void decode_request(const char *b64, size_t len, request_t *r)
{
    memset(r, 0, sizeof *r);
    /* The upload is plain base64 text of the whole plist. */
    for (size_t i = 0; i < len; i++)
        assert_true(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=", b64[i]) != NULL);
    size_t xml_len = 0;
    unsigned char *xml = util_base64_decode(b64, len, &xml_len);
    assert_non_null(xml);
    assert_non_null(strstr((char *)xml, "<!DOCTYPE plist"));
    char perr[256];
    r->plist = plist_parse((const char *)xml, xml_len, perr, sizeof perr);
    free(xml);
    assert_non_null(r->plist);
    assert_int_equal(plist_type(r->plist), PLIST_DICT);
    assert_int_equal(plist_dict_size(r->plist), 3);
    r->csr_b64 = plist_dict_get_string(r->plist, "PushCertRequestCSR");
    r->chain = plist_dict_get_string(r->plist, "PushCertCertificateChain");
    r->sig_b64 = plist_dict_get_string(r->plist, "PushCertSignature");
    assert_non_null(r->csr_b64);
    assert_non_null(r->chain);
    assert_non_null(r->sig_b64);
}

static int verify_sig(const unsigned char *data, size_t len, const unsigned char *sig, size_t siglen, X509 *signer,
                      const EVP_MD *md)
{
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    int ok = ctx && EVP_DigestVerifyInit(ctx, NULL, md, NULL, X509_get0_pubkey(signer)) == 1 &&
             EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    ERR_clear_error();
    return ok;
}

/* The certificates of the PEM chain, in order; and every base64 line of each
 * block is 64 characters except the block's last, which is at most 64. */
static STACK_OF(X509) *parse_chain(const char *pem)
{
    size_t prev = 0;
    int in_block = 0;
    const char *line = pem;
    while (*line) {
        const char *nl = strchr(line, '\n');
        size_t n = nl ? (size_t)(nl - line) : strlen(line);
        if (strncmp(line, "-----BEGIN CERTIFICATE-----", 27) == 0) {
            in_block = 1;
            prev = 0;
        } else if (strncmp(line, "-----END CERTIFICATE-----", 25) == 0) {
            in_block = 0;
        } else {
            assert_true(in_block);
            assert_true(n >= 1 && n <= 64);
            if (prev)
                assert_int_equal(prev, 64); /* only the last line may be short */
            prev = n;
        }
        line = nl ? nl + 1 : line + n;
    }
    BIO *b = BIO_new_mem_buf(pem, -1);
    STACK_OF(X509) *sk = sk_X509_new_null();
    X509 *x;
    while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
        sk_X509_push(sk, x);
    ERR_clear_error();
    BIO_free(b);
    return sk;
}

static void check_request(const char *b64, size_t len, const EVP_MD *md, int expect_chain)
{
    request_t r;
    decode_request(b64, len, &r);
    long der_len = 0;
    unsigned char *der = csr_der(F.csr_pem, &der_len);

    /* PushCertRequestCSR: base64 of the CSR's DER bytes, exactly */
    size_t got_len = 0;
    unsigned char *got = util_base64_decode(r.csr_b64, strlen(r.csr_b64), &got_len);
    assert_non_null(got);
    assert_int_equal(got_len, (size_t)der_len);
    assert_memory_equal(got, der, got_len);
    free(got);

    /* PushCertSignature: the vendor key's signature over that DER */
    size_t sig_len = 0;
    unsigned char *sig = util_base64_decode(r.sig_b64, strlen(r.sig_b64), &sig_len);
    assert_non_null(sig);
    assert_int_equal(sig_len, 256);
    assert_true(verify_sig(der, (size_t)der_len, sig, sig_len, F.vendor, md));
    /* with the other hash it must not verify: the algorithm is what we claim */
    assert_false(verify_sig(der, (size_t)der_len, sig, sig_len, F.vendor,
                            md == EVP_sha1() ? EVP_sha256() : EVP_sha1()));
    /* nor with any other certificate's key */
    assert_false(verify_sig(der, (size_t)der_len, sig, sig_len, F.wwdr, md));
    free(sig);
    OPENSSL_free(der);

    /* PushCertCertificateChain: vendor, WWDR, root */
    STACK_OF(X509) *chain = parse_chain(r.chain);
    assert_int_equal(sk_X509_num(chain), expect_chain);
    assert_int_equal(X509_cmp(sk_X509_value(chain, 0), F.vendor), 0);
    if (expect_chain == 3) {
        assert_int_equal(X509_cmp(sk_X509_value(chain, 1), F.wwdr), 0);
        assert_int_equal(X509_cmp(sk_X509_value(chain, 2), F.root), 0);
    }
    sk_X509_pop_free(chain, X509_free);
    plist_free(r.plist);
}

static void test_sign_request(void **state)
{
    (void)state;
    /* the chain given as two DER files, root first */
    const char *chain[] = {F.root_cer, F.wwdr_cer};
    pushcert_sign_opts_t o = {.csr_path = F.csr_pem,
                              .vendor_cert_path = F.vendor_pem,
                              .vendor_key_path = F.vendor_keyfile,
                              .chain_paths = chain,
                              .nchain = 2};
    pushcert_sign_result_t res;
    char *err = NULL;
    assert_int_equal(pushcert_sign(&o, &res, &err), 0);
    assert_null(err);
    assert_int_equal(res.chain_len, 3);
    assert_int_equal(res.chain_complete, 1);
    assert_int_equal(res.request_len, strlen(res.request_b64));
    check_request(res.request_b64, res.request_len, EVP_sha1(), 3);
    pushcert_sign_result_clear(&res);

    /* one PEM bundle (root before WWDR), SHA-256, and a DER CSR */
    long der_len = 0;
    unsigned char *der = csr_der(F.csr_pem, &der_len);
    char *csr_der_path = path_in("customer.csr.der");
    assert_int_equal(util_write_file(csr_der_path, der, (size_t)der_len, 0644), 0);
    OPENSSL_free(der);
    const char *bundle[] = {F.chain_pem};
    o.csr_path = csr_der_path;
    o.chain_paths = bundle;
    o.nchain = 1;
    o.sig = PUSHCERT_SIG_SHA256;
    assert_int_equal(pushcert_sign(&o, &res, &err), 0);
    check_request(res.request_b64, res.request_len, EVP_sha256(), 3);
    pushcert_sign_result_clear(&res);
    free(csr_der_path);
}

static void test_sign_vendor_p12(void **state)
{
    (void)state;
    const char *chain[] = {F.wwdr_cer, F.root_cer};
    pushcert_sign_opts_t o = {.csr_path = F.csr_pem,
                              .vendor_p12_path = F.vendor_p12,
                              .password = "vendor-secret",
                              .chain_paths = chain,
                              .nchain = 2};
    pushcert_sign_result_t res;
    char *err = NULL;
    assert_int_equal(pushcert_sign(&o, &res, &err), 0);
    check_request(res.request_b64, res.request_len, EVP_sha1(), 3);
    pushcert_sign_result_clear(&res);

    o.password = "not-it";
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_null(res.request_b64);
    assert_contains(err, F.vendor_p12);
    assert_contains(err, "wrong PKCS#12 password");
    assert_null(strstr(err, "not-it")); /* never echo the password */
    free(err);
}

static void test_sign_without_chain(void **state)
{
    (void)state;
    pushcert_sign_opts_t o = {
        .csr_path = F.csr_pem, .vendor_cert_path = F.vendor_pem, .vendor_key_path = F.vendor_keyfile};
    pushcert_sign_result_t res;
    char *err = NULL;
    assert_int_equal(pushcert_sign(&o, &res, &err), 0);
    assert_int_equal(res.chain_len, 1);
    assert_int_equal(res.chain_complete, 0); /* the CLI warns about this */
    check_request(res.request_b64, res.request_len, EVP_sha1(), 1);
    pushcert_sign_result_clear(&res);

    /* only the intermediate: in order, but not complete */
    const char *chain[] = {F.wwdr_cer};
    o.chain_paths = chain;
    o.nchain = 1;
    assert_int_equal(pushcert_sign(&o, &res, &err), 0);
    assert_int_equal(res.chain_len, 2);
    assert_int_equal(res.chain_complete, 0);
    pushcert_sign_result_clear(&res);
}

static void test_sign_bad_inputs(void **state)
{
    (void)state;
    pushcert_sign_opts_t o = {
        .csr_path = F.csr_pem, .vendor_cert_path = F.vendor_pem, .vendor_key_path = F.vendor_keyfile};
    pushcert_sign_result_t res;
    char *err = NULL;

    /* vendor key that is not the vendor certificate's */
    char *wrong_key = path_in("wrong-vendor.key");
    assert_int_equal(pki_write_key(wrong_key, F.other_key), 0);
    o.vendor_key_path = wrong_key;
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, "does not belong to the vendor certificate");
    free(err);
    err = NULL;
    o.vendor_key_path = F.vendor_keyfile;

    /* a chain file with a certificate that is not on the path */
    X509 *stray = pki_issue_cert(NULL, F.other_key, F.other_key, "Some Other CA", 30, PKI_USAGE_CA, NULL, 0);
    char *stray_path = path_in("stray.pem");
    assert_int_equal(pki_write_cert(stray_path, stray), 0);
    const char *chain[] = {F.wwdr_cer, stray_path, F.root_cer};
    o.chain_paths = chain;
    o.nchain = 3;
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, stray_path);
    assert_contains(err, "Some Other CA");
    free(err);
    err = NULL;
    o.nchain = 0;
    o.chain_paths = NULL;

    /* a bundle whose second block is damaged is an error, not a shorter chain */
    size_t blen = 0;
    char *bundle = util_read_file(F.chain_pem, 1 << 20, &blen);
    assert_non_null(bundle);
    char *second = strstr(bundle + 1, "-----BEGIN CERTIFICATE-----");
    assert_non_null(second);
    second[40] = '*'; /* not base64 */
    char *damaged = path_in("damaged-chain.pem");
    assert_int_equal(util_write_file(damaged, bundle, blen, 0644), 0);
    free(bundle);
    const char *dchain[] = {damaged};
    o.chain_paths = dchain;
    o.nchain = 1;
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, damaged);
    assert_contains(err, "damaged");
    free(err);
    err = NULL;
    free(damaged);

    /* a missing chain file */
    const char *missing[] = {"/nonexistent/AppleWWDRCA.cer"};
    o.chain_paths = missing;
    o.nchain = 1;
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, "/nonexistent/AppleWWDRCA.cer");
    free(err);
    err = NULL;
    o.nchain = 0;
    o.chain_paths = NULL;

    /* a CSR whose bytes were altered after signing */
    long der_len = 0;
    unsigned char *der = csr_der(F.csr_pem, &der_len);
    der[der_len - 5] ^= 0x01; /* inside the CSR's own signature */
    char *bad_csr = path_in("tampered.csr");
    assert_int_equal(util_write_file(bad_csr, der, (size_t)der_len, 0644), 0);
    OPENSSL_free(der);
    o.csr_path = bad_csr;
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, bad_csr);
    assert_contains(err, "does not verify");
    free(err);
    err = NULL;

    /* not a CSR at all; a PEM file without a request block */
    assert_int_equal(util_write_file(bad_csr, "hello\n", 6, 0644), 0);
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, "not a valid PKCS#10");
    free(err);
    err = NULL;
    o.csr_path = F.vendor_pem;
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, "no CERTIFICATE REQUEST");
    free(err);
    err = NULL;
    o.csr_path = F.csr_pem;

    /* an EC vendor key cannot make SHA1WithRSA signatures */
    EVP_PKEY *ec = pki_new_ec_key();
    X509 *ec_cert = pki_issue_cert(F.wwdr, F.wwdr_key, ec, "EC vendor", 30, PKI_USAGE_CLIENT, NULL, 0);
    char *ec_pem = path_in("ec-vendor.pem"), *ec_key = path_in("ec-vendor.key");
    assert_int_equal(pki_write_cert(ec_pem, ec_cert), 0);
    assert_int_equal(pki_write_key(ec_key, ec), 0);
    o.vendor_cert_path = ec_pem;
    o.vendor_key_path = ec_key;
    assert_int_equal(pushcert_sign(&o, &res, &err), -1);
    assert_contains(err, "RSA");
    free(err);

    X509_free(ec_cert);
    EVP_PKEY_free(ec);
    free(ec_pem);
    free(ec_key);
    free(bad_csr);
    X509_free(stray);
    free(stray_path);
    free(wrong_key);
}

/* ---- 3. import --------------------------------------------------------------- */

static char *topic_in(const char *data_dir)
{
    pushcert_info_t info;
    char *err = NULL;
    if (pushcert_show(data_dir, &info, &err) != 0) {
        free(err);
        return NULL;
    }
    char *t = strdup(info.topic);
    pushcert_info_clear(&info);
    return t;
}

static void test_import_pem(void **state)
{
    (void)state;
    char *topic = new_topic();
    X509 *cert = make_push_cert(topic, F.push_key, -DAY, 365 * DAY);
    char *cert_path = push_cert_file(cert);
    char *dd = new_dir();
    pushcert_import_opts_t o = {.cert_path = cert_path, .key_path = F.push_keyfile, .data_dir = dd};
    pushcert_info_t info;
    char *err = NULL;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    assert_null(err);
    assert_string_equal(info.topic, topic);
    assert_false(info.expiring);
    assert_false(info.expired);
    assert_false(info.replaced);
    assert_true(info.days_left >= 363 && info.days_left <= 365);
    assert_contains(info.subject, topic);
    assert_contains(info.subject, "CN=APSP:");
    assert_non_null(info.not_after);
    pushcert_info_clear(&info);

    char *pem = util_strdup_printf("%s/push.pem", dd), *key = util_strdup_printf("%s/push.key", dd);
    assert_int_equal(file_mode(key), 0600);
    X509 *got = pki_load_cert(pem);
    EVP_PKEY *gotkey = pki_load_key(key);
    assert_int_equal(X509_cmp(got, cert), 0);
    assert_int_equal(EVP_PKEY_eq(gotkey, F.push_key), 1);
    /* no staging files left behind */
    char *tmp1 = util_strdup_printf("%s/push.pem.new", dd), *tmp2 = util_strdup_printf("%s/push.key.new", dd);
    assert_false(exists(tmp1));
    assert_false(exists(tmp2));

    /* show reads it back */
    char *t = topic_in(dd);
    assert_non_null(t);
    assert_string_equal(t, topic);

    /* a DER certificate file works too */
    char *der_path = path_in("push.cer");
    assert_int_equal(write_der(der_path, cert), 0);
    o.cert_path = der_path;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    assert_true(info.replaced); /* same topic: a renewal, no --force needed */
    pushcert_info_clear(&info);

    free(der_path);
    free(t);
    free(tmp1);
    free(tmp2);
    X509_free(got);
    EVP_PKEY_free(gotkey);
    free(pem);
    free(key);
    free(dd);
    free(cert_path);
    X509_free(cert);
    free(topic);
}

static void test_import_p12(void **state)
{
    (void)state;
    char *topic = new_topic();
    X509 *cert = make_push_cert(topic, F.push_key, -DAY, 200 * DAY);
    char *p12 = path_in("push.p12");
    assert_int_equal(write_p12(p12, F.push_key, cert, "s3cret pass", 0, 0), 0);
    char *dd = new_dir();
    pushcert_import_opts_t o = {.p12_path = p12, .password = "s3cret pass", .data_dir = dd};
    pushcert_info_t info;
    char *err = NULL;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    assert_string_equal(info.topic, topic);
    pushcert_info_clear(&info);
    char *key = util_strdup_printf("%s/push.key", dd);
    assert_int_equal(file_mode(key), 0600);

    /* wrong and missing password */
    char *dd2 = new_dir();
    o.data_dir = dd2;
    o.password = "s3cret pas";
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, p12);
    assert_contains(err, "wrong PKCS#12 password");
    assert_null(strstr(err, "s3cret"));
    assert_null(info.topic);
    free(err);
    err = NULL;
    o.password = NULL;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, "wrong PKCS#12 password");
    free(err);
    err = NULL;
    char *pem2 = util_strdup_printf("%s/push.pem", dd2);
    assert_false(exists(pem2));

    /* a passwordless PKCS#12 with no password given */
    char *p12b = path_in("push-nopass.p12");
    assert_int_equal(write_p12(p12b, F.push_key, cert, "", 0, 0), 0);
    o.p12_path = p12b;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    pushcert_info_clear(&info);

    /* not a PKCS#12 file */
    o.p12_path = F.vendor_pem;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, "not a PKCS#12");
    free(err);

    free(p12b);
    free(pem2);
    free(dd2);
    free(key);
    free(dd);
    free(p12);
    X509_free(cert);
    free(topic);
}

/* PKCS#12 as older Keychain Access exports it (RC2-40 certificate bag),
 * which OpenSSL 3 reads only with its legacy provider. */
static void test_import_legacy_p12(void **state)
{
    (void)state;
    OSSL_PROVIDER *legacy = OSSL_PROVIDER_try_load(NULL, "legacy", 1);
    if (!legacy) {
        ERR_clear_error();
        skip();
    }
    char *topic = new_topic();
    X509 *cert = make_push_cert(topic, F.push_key, -DAY, 200 * DAY);
    char *p12 = path_in("legacy.p12");
    int wrote = write_p12(p12, F.push_key, cert, "legacy", NID_pbe_WithSHA1And3_Key_TripleDES_CBC,
                          NID_pbe_WithSHA1And40BitRC2_CBC);
    OSSL_PROVIDER_unload(legacy);
    assert_int_equal(wrote, 0);
    char *dd = new_dir();
    pushcert_import_opts_t o = {.p12_path = p12, .password = "legacy", .data_dir = dd};
    pushcert_info_t info;
    char *err = NULL;
    int rc = pushcert_import(&o, &info, &err);
    if (rc != 0)
        fprintf(stderr, "legacy import: %s\n", err ? err : "?");
    assert_int_equal(rc, 0);
    assert_string_equal(info.topic, topic);
    pushcert_info_clear(&info);
    free(dd);
    free(p12);
    X509_free(cert);
    free(topic);
}

static void test_import_mismatch(void **state)
{
    (void)state;
    char *topic = new_topic();
    X509 *cert = make_push_cert(topic, F.other_key, -DAY, 200 * DAY);
    char *cert_path = push_cert_file(cert);
    char *dd = new_dir();
    pushcert_import_opts_t o = {.cert_path = cert_path, .key_path = F.push_keyfile, .data_dir = dd};
    pushcert_info_t info;
    char *err = NULL;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, cert_path);
    assert_contains(err, F.push_keyfile);
    assert_contains(err, "does not match");
    free(err);
    err = NULL;
    char *pem = util_strdup_printf("%s/push.pem", dd), *key = util_strdup_printf("%s/push.key", dd);
    assert_false(exists(pem));
    assert_false(exists(key));

    /* a key file that is not a key */
    o.key_path = cert_path;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, "not a PEM or DER private key");
    free(err);

    free(pem);
    free(key);
    free(dd);
    free(cert_path);
    X509_free(cert);
    free(topic);
}

static void test_import_bad_topic(void **state)
{
    (void)state;
    char *dd = new_dir();
    pushcert_info_t info;
    char *err = NULL;

    X509 *no_uid = make_push_cert(NULL, F.push_key, -DAY, 200 * DAY);
    char *p1 = push_cert_file(no_uid);
    pushcert_import_opts_t o = {.cert_path = p1, .key_path = F.push_keyfile, .data_dir = dd};
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, p1);
    assert_contains(err, "no UID");
    free(err);
    err = NULL;

    /* an APNs certificate for an app, not for MDM */
    X509 *app = make_push_cert("com.example.app", F.push_key, -DAY, 200 * DAY);
    char *p2 = push_cert_file(app);
    o.cert_path = p2;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, "com.example.app");
    assert_contains(err, PUSHCERT_TOPIC_PREFIX);
    free(err);
    err = NULL;

    /* the prefix alone is not a topic */
    X509 *bare = make_push_cert("com.apple.mgmt.", F.push_key, -DAY, 200 * DAY);
    char *p3 = push_cert_file(bare);
    o.cert_path = p3;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    free(err);
    err = NULL;

    /* control characters in the UID never reach a message or a profile */
    X509 *esc = make_push_cert("com.apple.mgmt.External.\x1b[2J", F.push_key, -DAY, 200 * DAY);
    char *p4 = push_cert_file(esc);
    o.cert_path = p4;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, "visible ASCII");
    assert_null(strchr(err, '\x1b'));
    free(err);
    X509_free(esc);
    free(p4);

    char *pem = util_strdup_printf("%s/push.pem", dd);
    assert_false(exists(pem));
    free(pem);
    X509_free(no_uid);
    X509_free(app);
    X509_free(bare);
    free(p1);
    free(p2);
    free(p3);
    free(dd);
}

static void test_expiry_warning(void **state)
{
    (void)state;
    pushcert_info_t info;
    char *err = NULL;
    char *topic = new_topic();

    /* expires in 10 days: imported, with the warning flag */
    X509 *soon = make_push_cert(topic, F.push_key, -300 * DAY, 10 * DAY);
    char *p1 = push_cert_file(soon);
    char *dd = new_dir();
    pushcert_import_opts_t o = {.cert_path = p1, .key_path = F.push_keyfile, .data_dir = dd};
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    assert_true(info.expiring);
    assert_false(info.expired);
    assert_true(info.days_left == 9 || info.days_left == 10);
    pushcert_info_clear(&info);

    /* expired yesterday */
    X509 *old = make_push_cert(topic, F.push_key, -400 * DAY, -DAY);
    char *p2 = push_cert_file(old);
    o.cert_path = p2;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    assert_true(info.expiring);
    assert_true(info.expired);
    assert_true(info.days_left == -1 || info.days_left == -2);
    pushcert_info_clear(&info);

    /* boundaries with a fixed clock */
    X509 *c = make_push_cert(topic, F.push_key, -DAY, 100 * DAY);
    assert_int_equal(pushcert_inspect(c, util_now(), &info, &err), 0);
    int64_t na = info.not_after_unix;
    pushcert_info_clear(&info);
    assert_int_equal(pushcert_inspect(c, na - 31 * DAY, &info, &err), 0);
    assert_false(info.expiring);
    assert_int_equal(info.days_left, 31);
    pushcert_info_clear(&info);
    assert_int_equal(pushcert_inspect(c, na - 30 * DAY + 1, &info, &err), 0);
    assert_true(info.expiring);
    assert_false(info.expired);
    assert_int_equal(info.days_left, 29);
    pushcert_info_clear(&info);
    assert_int_equal(pushcert_inspect(c, na + 3600, &info, &err), 0);
    assert_true(info.expired);
    assert_int_equal(info.days_left, -1);
    pushcert_info_clear(&info);

    X509_free(c);
    X509_free(soon);
    X509_free(old);
    free(p1);
    free(p2);
    free(dd);
    free(topic);
}

static void test_topic_change_needs_force(void **state)
{
    (void)state;
    char *topic_a = new_topic(), *topic_b = new_topic();
    X509 *a = make_push_cert(topic_a, F.push_key, -DAY, 365 * DAY);
    X509 *a2 = make_push_cert(topic_a, F.push_key, -DAY, 700 * DAY); /* renewal */
    X509 *b = make_push_cert(topic_b, F.push_key, -DAY, 365 * DAY);
    char *pa = push_cert_file(a), *pa2 = push_cert_file(a2), *pb = push_cert_file(b);
    char *dd = new_dir();
    pushcert_import_opts_t o = {.cert_path = pa, .key_path = F.push_keyfile, .data_dir = dd};
    pushcert_info_t info;
    char *err = NULL;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    pushcert_info_clear(&info);

    /* renewal: same topic, accepted */
    o.cert_path = pa2;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    assert_true(info.replaced);
    assert_true(info.days_left >= 698);
    pushcert_info_clear(&info);

    /* a different topic: refused, explained, nothing changed */
    o.cert_path = pb;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, topic_a);
    assert_contains(err, topic_b);
    assert_contains(err, "same topic");
    assert_contains(err, "--force");
    free(err);
    err = NULL;
    char *t = topic_in(dd);
    assert_string_equal(t, topic_a);
    free(t);

    o.force = 1;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    assert_true(info.replaced);
    pushcert_info_clear(&info);
    t = topic_in(dd);
    assert_string_equal(t, topic_b);
    free(t);

    /* an unreadable installed certificate also needs --force */
    char *pem = util_strdup_printf("%s/push.pem", dd);
    assert_int_equal(util_write_file(pem, "garbage", 7, 0644), 0);
    o.force = 0;
    o.cert_path = pa;
    assert_int_equal(pushcert_import(&o, &info, &err), -1);
    assert_contains(err, pem);
    assert_contains(err, "--force");
    free(err);

    free(pem);
    free(dd);
    free(pa);
    free(pa2);
    free(pb);
    X509_free(a);
    X509_free(a2);
    X509_free(b);
    free(topic_a);
    free(topic_b);
}

static void test_show_missing(void **state)
{
    (void)state;
    char *dd = new_dir();
    pushcert_info_t info;
    char *err = NULL;
    assert_int_equal(pushcert_show(dd, &info, &err), -1);
    assert_contains(err, "push.pem");
    assert_contains(err, "orchard pushcert import");
    free(err);
    free(dd);
}

/* ---- CLI ------------------------------------------------------------------- */

/* Runs cli_pushcert_main with heap copies of the arguments (it may blank a
 * password argument in place, as it does with the real argv). */
static int run_cli(const char *first, ...)
{
    char *argv[40];
    int argc = 0;
    argv[argc++] = strdup("pushcert");
    va_list ap;
    va_start(ap, first);
    for (const char *a = first; a && argc < 39; a = va_arg(ap, const char *))
        argv[argc++] = strdup(a);
    va_end(ap);
    argv[argc] = NULL;
    fflush(stdout);
    int rc = cli_pushcert_main(argc, argv);
    for (int i = 0; i < argc; i++)
        free(argv[i]);
    return rc;
}

static void test_cli(void **state)
{
    (void)state;
    char *key = path_in("cli.key"), *csr = path_in("cli.csr"), *req = path_in("cli-request.b64");
    assert_int_equal(run_cli("csr", "--out-key", key, "--out-csr", csr, "--cn", "CLI Test", "--org", "Acme", NULL),
                     0);
    assert_int_equal(file_mode(key), 0600);
    /* refuses to replace the key */
    assert_int_equal(run_cli("csr", "--out-key", key, "--out-csr", csr, NULL), 1);

    assert_int_equal(run_cli("sign", "--csr", csr, "--vendor-cert", F.vendor_pem, "--vendor-key", F.vendor_keyfile,
                             "--chain", F.wwdr_cer, F.root_cer, "--out", req, NULL),
                     0);
    size_t len = 0;
    char *b64 = util_read_file(req, 1 << 20, &len);
    assert_non_null(b64);
    request_t r;
    decode_request(b64, len, &r);
    STACK_OF(X509) *chain = parse_chain(r.chain);
    assert_int_equal(sk_X509_num(chain), 3);
    sk_X509_pop_free(chain, X509_free);
    plist_free(r.plist);
    free(b64);

    /* vendor PKCS#12 with the password from the environment */
    setenv("ORCHARD_P12_PASSWORD", "vendor-secret", 1);
    assert_int_equal(run_cli("sign", "--csr", csr, "--vendor-p12", F.vendor_p12, "--chain=" /* empty list */, "--out",
                             req, NULL),
                     1); /* "--chain=" names an empty file path: an error, not a crash */
    assert_int_equal(run_cli("sign", "--csr", csr, "--vendor-p12", F.vendor_p12, "--chain", F.chain_pem,
                             "--digest", "sha256", "--out", req, NULL),
                     0);
    unsetenv("ORCHARD_P12_PASSWORD");
    assert_int_equal(run_cli("sign", "--csr", csr, "--vendor-p12", F.vendor_p12, "--password", "wrong", "--out",
                             req, NULL),
                     1);
    assert_int_equal(run_cli("sign", "--csr", csr, "--vendor-cert", F.vendor_pem, "--vendor-key", F.vendor_keyfile,
                             "--digest", "md5", "--out", req, NULL),
                     2);

    /* import from PKCS#12 (password flag), then show */
    char *topic = new_topic();
    EVP_PKEY *k = pki_load_key(key);
    X509 *cert = make_push_cert(topic, k, -DAY, 365 * DAY);
    char *p12 = path_in("cli-push.p12");
    assert_int_equal(write_p12(p12, k, cert, "pw", 0, 0), 0);
    char *dd = new_dir();
    assert_int_equal(run_cli("import", "--p12", p12, "--password", "pw", "--data-dir", dd, NULL), 0);
    char *t = topic_in(dd);
    assert_string_equal(t, topic);
    free(t);
    assert_int_equal(run_cli("show", "--data-dir", dd, NULL), 0);
    /* the data dir from the environment */
    setenv("ORCHARD_DATA_DIR", dd, 1);
    assert_int_equal(run_cli("show", NULL), 0);
    unsetenv("ORCHARD_DATA_DIR");
    char *empty = new_dir();
    assert_int_equal(run_cli("show", "--data-dir", empty, NULL), 1);

    /* import from PEM: the certificate and the key made by `csr` */
    char *cert_path = push_cert_file(cert);
    char *dd2 = new_dir();
    assert_int_equal(run_cli("import", "--cert", cert_path, "--key", key, "--data-dir", dd2, NULL), 0);

    /* the password argument is blanked in argv */
    char *argv[] = {strdup("pushcert"), strdup("import"), strdup("--p12"), strdup(p12), strdup("--password"),
                    strdup("pw"), strdup("--data-dir"), strdup(dd2), NULL};
    assert_int_equal(cli_pushcert_main(8, argv), 0);
    assert_int_equal(argv[5][0], '\0');
    for (int i = 0; i < 8; i++)
        free(argv[i]);

    /* usage errors and help */
    assert_int_equal(run_cli(NULL), 2);
    assert_int_equal(run_cli("bogus", NULL), 2);
    assert_int_equal(run_cli("--help", NULL), 0);
    assert_int_equal(run_cli("csr", "--help", NULL), 0);
    assert_int_equal(run_cli("sign", "--help", NULL), 0);
    assert_int_equal(run_cli("import", "--help", NULL), 0);
    assert_int_equal(run_cli("show", "--help", NULL), 0);
    assert_int_equal(run_cli("csr", "--out-key", key, NULL), 2);
    assert_int_equal(run_cli("csr", "--p12", p12, NULL), 2);       /* option of another subcommand */
    assert_int_equal(run_cli("import", "--data-dir", NULL), 2);    /* missing value */
    assert_int_equal(run_cli("import", "--p12", p12, "--cert", cert_path, NULL), 2);

    free(cert_path);
    free(dd2);
    free(empty);
    free(dd);
    free(p12);
    X509_free(cert);
    EVP_PKEY_free(k);
    free(topic);
    free(key);
    free(csr);
    free(req);
}

/* ---- the server picks the imported certificate up --------------------------- */

static void test_server_uses_imported_cert(void **state)
{
    (void)state;
    if (!getenv("ORCHARD_BIN"))
        skip();
    char *topic = new_topic();
    X509 *cert = make_push_cert(topic, F.push_key, -DAY, 365 * DAY);
    char *cert_path = push_cert_file(cert);
    char *dd = new_dir();
    pushcert_import_opts_t o = {.cert_path = cert_path, .key_path = F.push_keyfile, .data_dir = dd};
    pushcert_info_t info;
    char *err = NULL;
    assert_int_equal(pushcert_import(&o, &info, &err), 0);
    pushcert_info_clear(&info);
    char *push_pem = util_strdup_printf("%s/push.pem", dd);

    /* control: without a push certificate the server says so */
    testserver_t s;
    assert_int_equal(testserver_start(&s, NULL), 0);
    int warned = testserver_log_contains(&s, "no push certificate");
    assert_int_equal(testserver_stop(&s), 0);
    assert_true(warned);

    const char *args[] = {"--push-cert", push_pem, NULL};
    assert_int_equal(testserver_start(&s, args), 0);
    int missing = testserver_log_contains(&s, "no push certificate");
    int no_uid = testserver_log_contains(&s, "has no UID");
    assert_int_equal(testserver_stop(&s), 0);
    assert_false(missing);
    assert_false(no_uid);

    free(push_pem);
    free(dd);
    free(cert_path);
    X509_free(cert);
    free(topic);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_csr_generate),
        cmocka_unit_test(test_csr_files),
        cmocka_unit_test(test_sign_request),
        cmocka_unit_test(test_sign_vendor_p12),
        cmocka_unit_test(test_sign_without_chain),
        cmocka_unit_test(test_sign_bad_inputs),
        cmocka_unit_test(test_import_pem),
        cmocka_unit_test(test_import_p12),
        cmocka_unit_test(test_import_legacy_p12),
        cmocka_unit_test(test_import_mismatch),
        cmocka_unit_test(test_import_bad_topic),
        cmocka_unit_test(test_expiry_warning),
        cmocka_unit_test(test_topic_change_needs_force),
        cmocka_unit_test(test_show_missing),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_server_uses_imported_cert),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
