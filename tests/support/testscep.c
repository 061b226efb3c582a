/* SCEP test client (see testscep.h). Written from RFC 8894; it shares no
 * code with src/scep.c so that the two check each other. */
#include "testscep.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/rand.h>

#include "util.h"

#define OID_MESSAGE_TYPE "2.16.840.1.113733.1.9.2"
#define OID_PKI_STATUS "2.16.840.1.113733.1.9.3"
#define OID_FAIL_INFO "2.16.840.1.113733.1.9.4"
#define OID_SENDER_NONCE "2.16.840.1.113733.1.9.5"
#define OID_RECIPIENT_NONCE "2.16.840.1.113733.1.9.6"
#define OID_TRANSACTION_ID "2.16.840.1.113733.1.9.7"

#define MAX_RESPONSE (1 << 20)

static void seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
    unsigned long e = ERR_peek_last_error();
    size_t n = strlen(err);
    if (e && n + 3 < errlen) {
        snprintf(err + n, errlen - n, " (");
        ERR_error_string_n(e, err + n + 2, errlen - n - 2);
        n = strlen(err);
        if (n + 1 < errlen)
            snprintf(err + n, errlen - n, ")");
    }
    ERR_clear_error();
}

/* ---- building --------------------------------------------------------------- */

static EVP_PKEY *new_key(const testscep_opts_t *o)
{
    EVP_PKEY *k = NULL;
    switch (o->key_type) {
    case TESTSCEP_KEY_RSA:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)(o->rsa_bits > 0 ? o->rsa_bits : 2048));
        break;
    case TESTSCEP_KEY_P256:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
        break;
    case TESTSCEP_KEY_P384:
        k = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-384");
        break;
    }
    return k;
}

static X509_NAME *subject_for(const char *cn)
{
    X509_NAME *n = X509_NAME_new();
    int ok = n && X509_NAME_add_entry_by_txt(n, "O", MBSTRING_UTF8, (const unsigned char *)"orchard tests", -1, -1, 0);
    if (ok && cn)
        ok = X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    if (!ok) {
        X509_NAME_free(n);
        return NULL;
    }
    return n;
}

static X509_REQ *make_csr(const testscep_opts_t *o, EVP_PKEY *key, const EVP_MD *md)
{
    X509_REQ *req = X509_REQ_new();
    X509_NAME *name = o->subject ? X509_NAME_dup(o->subject) : subject_for(o->cn);
    int ok = req && name && X509_REQ_set_version(req, X509_REQ_VERSION_1) && X509_REQ_set_subject_name(req, name) &&
             X509_REQ_set_pubkey(req, key);
    if (ok && o->challenge)
        ok = X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_UTF8,
                                       (const unsigned char *)o->challenge, -1);
    ok = ok && X509_REQ_sign(req, key, md) > 0;
    X509_NAME_free(name);
    if (!ok) {
        X509_REQ_free(req);
        return NULL;
    }
    return req;
}

/* The throw-away self-signed certificate a device signs its first request
 * with (RFC 8894 s2.3): same key and subject as the CSR, short validity. */
static X509 *self_signed(X509_REQ *csr, EVP_PKEY *key, const EVP_MD *md)
{
    X509 *x = X509_new();
    BIGNUM *bn = BN_new();
    ASN1_INTEGER *serial = NULL;
    int ok = x && bn && BN_rand(bn, 64, BN_RAND_TOP_ONE, BN_RAND_BOTTOM_ANY) &&
             (serial = BN_to_ASN1_INTEGER(bn, NULL)) != NULL && X509_set_serialNumber(x, serial) &&
             X509_set_version(x, X509_VERSION_3) && X509_set_subject_name(x, X509_REQ_get_subject_name(csr)) &&
             X509_set_issuer_name(x, X509_REQ_get_subject_name(csr)) &&
             X509_gmtime_adj(X509_getm_notBefore(x), -600) && X509_gmtime_adj(X509_getm_notAfter(x), 3600) &&
             X509_set_pubkey(x, key) && X509_sign(x, key, md) > 0;
    ASN1_INTEGER_free(serial);
    BN_free(bn);
    if (!ok) {
        X509_free(x);
        return NULL;
    }
    return x;
}

static int add_attr(CMS_SignerInfo *si, const char *oid_text, int type, const void *data, int len)
{
    ASN1_OBJECT *oid = OBJ_txt2obj(oid_text, 1);
    int ok = oid && CMS_signed_add1_attr_by_OBJ(si, oid, type, data, len) == 1;
    ASN1_OBJECT_free(oid);
    return ok ? 0 : -1;
}

/* A library context with the legacy provider, for DES-CBC (what older
 * clients such as micromdm's scepclient send). */
typedef struct {
    OSSL_LIB_CTX *ctx;
    OSSL_PROVIDER *def, *legacy;
} legacy_t;

static void legacy_close(legacy_t *l)
{
    /* Unload before freeing the context, or the providers stay allocated. */
    if (l->legacy)
        OSSL_PROVIDER_unload(l->legacy);
    if (l->def)
        OSSL_PROVIDER_unload(l->def);
    OSSL_LIB_CTX_free(l->ctx);
    memset(l, 0, sizeof *l);
}

static int legacy_open(legacy_t *l)
{
    memset(l, 0, sizeof *l);
    l->ctx = OSSL_LIB_CTX_new();
    if (!l->ctx || !(l->def = OSSL_PROVIDER_load(l->ctx, "default")) ||
        !(l->legacy = OSSL_PROVIDER_load(l->ctx, "legacy"))) {
        legacy_close(l);
        return -1;
    }
    return 0;
}

static unsigned char *bio_take(BIO *b, size_t *len)
{
    char *p = NULL;
    long n = BIO_get_mem_data(b, &p);
    if (n <= 0)
        return NULL;
    unsigned char *out = malloc((size_t)n);
    if (out) {
        memcpy(out, p, (size_t)n);
        *len = (size_t)n;
    }
    return out;
}

int testscep_build_request(const testscep_opts_t *o, X509 *ca_cert, testscep_request_t *req, char *err,
                           size_t errlen)
{
    memset(req, 0, sizeof *req);
    const char *md_name = o->digest ? o->digest : "SHA256";
    const char *cipher_name = o->cipher ? o->cipher : "AES-128-CBC";
    int msg_type = o->message_type ? o->message_type : 19;
    int rc = -1;
    legacy_t legacy;
    memset(&legacy, 0, sizeof legacy);
    if (strcmp(cipher_name, "DES-CBC") == 0)
        legacy_open(&legacy);
    OSSL_LIB_CTX *lctx = legacy.ctx;
    EVP_CIPHER *cipher = EVP_CIPHER_fetch(lctx, cipher_name, NULL);
    EVP_MD *md = EVP_MD_fetch(NULL, md_name, NULL);
    X509_REQ *csr = NULL;
    BIO *csr_bio = NULL, *env_bio = NULL, *out = NULL;
    CMS_ContentInfo *env = NULL, *sd = NULL;
    STACK_OF(X509) *rcpt = NULL;
    unsigned char *pub = NULL;

    if (!cipher || !md) {
        seterr(err, errlen, "unknown cipher %s or digest %s", cipher_name, md_name);
        goto out;
    }
    if (o->key) {
        EVP_PKEY_up_ref(o->key);
        req->key = o->key;
    } else if (!(req->key = new_key(o))) {
        seterr(err, errlen, "key generation failed");
        goto out;
    }
    if (!(csr = make_csr(o, req->key, md))) {
        seterr(err, errlen, "cannot build the CSR");
        goto out;
    }
    if (o->signer_cert && o->signer_key) {
        X509_up_ref(o->signer_cert);
        EVP_PKEY_up_ref(o->signer_key);
        req->signer_cert = o->signer_cert;
        req->signer_key = o->signer_key;
    } else {
        EVP_PKEY_up_ref(req->key);
        req->signer_key = req->key;
        if (!(req->signer_cert = self_signed(csr, req->key, md))) {
            seterr(err, errlen, "cannot build the self-signed signer certificate");
            goto out;
        }
    }
    /* transactionID: hex SHA-256 of the public key, as RFC 8894 suggests
     * (stable across retries of one enrollment). */
    int publen = i2d_PUBKEY(req->key, &pub);
    unsigned char h[32];
    unsigned int hl = 0;
    if (publen <= 0 || EVP_Digest(pub, (size_t)publen, h, &hl, EVP_sha256(), NULL) != 1 ||
        RAND_bytes(req->nonce, sizeof req->nonce) != 1) {
        seterr(err, errlen, "cannot derive the transaction id");
        goto out;
    }
    util_hex(h, hl, req->transaction_id);

    /* EnvelopedData: the CSR, encrypted to the CA. */
    csr_bio = BIO_new(BIO_s_mem());
    env_bio = BIO_new(BIO_s_mem());
    rcpt = sk_X509_new_null();
    if (!csr_bio || !env_bio || !rcpt || i2d_X509_REQ_bio(csr_bio, csr) != 1 || sk_X509_push(rcpt, ca_cert) <= 0 ||
        !(env = CMS_encrypt_ex(rcpt, csr_bio, cipher, CMS_BINARY, lctx, NULL)) || i2d_CMS_bio(env_bio, env) != 1) {
        seterr(err, errlen, "cannot encrypt the CSR to the CA with %s", cipher_name);
        goto out;
    }
    /* SignedData over it with the SCEP attributes. */
    char type_text[8];
    snprintf(type_text, sizeof type_text, "%d", msg_type);
    int flags = CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP;
    sd = CMS_sign(NULL, NULL, NULL, NULL, flags);
    CMS_SignerInfo *si = sd ? CMS_add1_signer(sd, req->signer_cert, req->signer_key, md, flags) : NULL;
    out = BIO_new(BIO_s_mem());
    if (!si || !out ||
        add_attr(si, OID_MESSAGE_TYPE, V_ASN1_PRINTABLESTRING, type_text, (int)strlen(type_text)) != 0 ||
        add_attr(si, OID_TRANSACTION_ID, V_ASN1_PRINTABLESTRING, req->transaction_id,
                 (int)strlen(req->transaction_id)) != 0 ||
        add_attr(si, OID_SENDER_NONCE, V_ASN1_OCTET_STRING, req->nonce, (int)sizeof req->nonce) != 0 ||
        CMS_final(sd, env_bio, NULL, CMS_BINARY) != 1 || i2d_CMS_bio(out, sd) != 1 ||
        !(req->der = bio_take(out, &req->der_len))) {
        seterr(err, errlen, "cannot sign the request");
        goto out;
    }
    rc = 0;
out:
    OPENSSL_free(pub);
    sk_X509_free(rcpt);
    CMS_ContentInfo_free(env);
    CMS_ContentInfo_free(sd);
    BIO_free(csr_bio);
    BIO_free(env_bio);
    BIO_free(out);
    X509_REQ_free(csr);
    EVP_CIPHER_free(cipher);
    EVP_MD_free(md);
    legacy_close(&legacy);
    if (rc != 0)
        testscep_request_free(req);
    ERR_clear_error();
    return rc;
}

void testscep_request_free(testscep_request_t *req)
{
    free(req->der);
    EVP_PKEY_free(req->key);
    X509_free(req->signer_cert);
    EVP_PKEY_free(req->signer_key);
    memset(req, 0, sizeof *req);
}

/* ---- opening the answer ------------------------------------------------------ */

/* The single value of signed attribute oid_text; NULL if absent or repeated. */
static const ASN1_TYPE *attr_value(CMS_SignerInfo *si, const char *oid_text)
{
    ASN1_OBJECT *oid = OBJ_txt2obj(oid_text, 1);
    const ASN1_TYPE *v = NULL;
    int i = oid ? CMS_signed_get_attr_by_OBJ(si, oid, -1) : -1;
    if (i >= 0 && CMS_signed_get_attr_by_OBJ(si, oid, i) < 0) {
        X509_ATTRIBUTE *a = CMS_signed_get_attr(si, i);
        if (a && X509_ATTRIBUTE_count(a) == 1)
            v = X509_ATTRIBUTE_get0_type(a, 0);
    }
    ASN1_OBJECT_free(oid);
    return v;
}

/* Integer value of a PrintableString attribute, -1 if absent or not one. */
static int attr_int(CMS_SignerInfo *si, const char *oid_text)
{
    const ASN1_TYPE *v = attr_value(si, oid_text);
    if (!v || ASN1_TYPE_get(v) != V_ASN1_PRINTABLESTRING)
        return -1;
    const ASN1_STRING *s = v->value.printablestring;
    int n = ASN1_STRING_length(s);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    if (n < 1 || n > 3)
        return -1;
    int x = 0;
    for (int i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return -1;
        x = x * 10 + (d[i] - '0');
    }
    return x;
}

static int attr_equals(CMS_SignerInfo *si, const char *oid_text, int type, const void *data, size_t len)
{
    const ASN1_TYPE *v = attr_value(si, oid_text);
    if (!v || ASN1_TYPE_get(v) != type)
        return 0;
    const ASN1_STRING *s = v->value.asn1_string;
    return (size_t)ASN1_STRING_length(s) == len && memcmp(ASN1_STRING_get0_data(s), data, len) == 0;
}

/* Decrypts the SUCCESS content and finds the certificate for our key. */
static X509 *issued_cert(BIO *content, const testscep_request_t *req, char *err, size_t errlen)
{
    char *p = NULL;
    long n = BIO_get_mem_data(content, &p);
    const unsigned char *q = (const unsigned char *)p;
    CMS_ContentInfo *env = n > 0 ? d2i_CMS_ContentInfo(NULL, &q, n) : NULL;
    BIO *plain = BIO_new(BIO_s_mem());
    PKCS7 *deg = NULL;
    X509 *found = NULL;
    if (!env || OBJ_obj2nid(CMS_get0_type(env)) != NID_pkcs7_enveloped) {
        seterr(err, errlen, "CertRep SUCCESS content is not EnvelopedData");
        goto out;
    }
    if (!plain || CMS_decrypt(env, req->signer_key, req->signer_cert, NULL, plain, CMS_BINARY | CMS_DEBUG_DECRYPT) != 1) {
        seterr(err, errlen, "cannot decrypt the CertRep content with the request's signer key");
        goto out;
    }
    n = BIO_get_mem_data(plain, &p);
    q = (const unsigned char *)p;
    deg = n > 0 ? d2i_PKCS7(NULL, &q, n) : NULL;
    if (!deg || !PKCS7_type_is_signed(deg) || !deg->d.sign || !deg->d.sign->cert ||
        sk_X509_num(deg->d.sign->cert) < 1) {
        seterr(err, errlen, "decrypted content is not a degenerate PKCS#7 with certificates");
        goto out;
    }
    if (deg->d.sign->signer_info && sk_PKCS7_SIGNER_INFO_num(deg->d.sign->signer_info) > 0) {
        seterr(err, errlen, "degenerate PKCS#7 has signers");
        goto out;
    }
    for (int i = 0; i < sk_X509_num(deg->d.sign->cert) && !found; i++) {
        X509 *c = sk_X509_value(deg->d.sign->cert, i);
        if (EVP_PKEY_eq(X509_get0_pubkey(c), req->key) == 1) {
            X509_up_ref(c);
            found = c;
        }
    }
    if (!found)
        seterr(err, errlen, "no certificate for the requested key in the CertRep");
out:
    PKCS7_free(deg);
    BIO_free(plain);
    CMS_ContentInfo_free(env);
    ERR_clear_error();
    return found;
}

int testscep_open_response(const unsigned char *der, size_t len, X509 *ca_cert, const testscep_request_t *req,
                           testscep_result_t *res, char *err, size_t errlen)
{
    res->pki_status = -1;
    res->fail_info = -1;
    int rc = -1;
    const unsigned char *p = der;
    CMS_ContentInfo *cms = der && len ? d2i_CMS_ContentInfo(NULL, &p, (long)len) : NULL;
    STACK_OF(X509) *trusted = sk_X509_new_null();
    BIO *content = BIO_new(BIO_s_mem());
    BIO *empty = BIO_new_mem_buf("", 0); /* EOF at once; an empty BIO_s_mem says "retry" */
    if (!cms || p != der + len || OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        seterr(err, errlen, "CertRep is not a DER SignedData");
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    if (!sis || sk_CMS_SignerInfo_num(sis) != 1) {
        seterr(err, errlen, "CertRep does not have exactly one signer");
        goto out;
    }
    /* As a device: only the CA certificate from GetCACert may have signed
     * it (CMS_NOINTERN ignores whatever certificates the message carries). */
    if (!trusted || !content || !empty || sk_X509_push(trusted, ca_cert) <= 0 ||
        CMS_verify(cms, trusted, NULL, CMS_is_detached(cms) ? empty : NULL, content,
                   CMS_BINARY | CMS_NOINTERN | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        seterr(err, errlen, "CertRep signature does not verify with the CA certificate");
        goto out;
    }
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, 0);
    if (attr_int(si, OID_MESSAGE_TYPE) != 3) {
        seterr(err, errlen, "messageType is not CertRep (3)");
        goto out;
    }
    if (!attr_equals(si, OID_TRANSACTION_ID, V_ASN1_PRINTABLESTRING, req->transaction_id,
                     strlen(req->transaction_id))) {
        seterr(err, errlen, "transactionID is not echoed");
        goto out;
    }
    if (!attr_equals(si, OID_RECIPIENT_NONCE, V_ASN1_OCTET_STRING, req->nonce, sizeof req->nonce)) {
        seterr(err, errlen, "recipientNonce is not our senderNonce");
        goto out;
    }
    const ASN1_TYPE *sn = attr_value(si, OID_SENDER_NONCE);
    if (!sn || ASN1_TYPE_get(sn) != V_ASN1_OCTET_STRING || ASN1_STRING_length(sn->value.octet_string) != 16 ||
        attr_equals(si, OID_SENDER_NONCE, V_ASN1_OCTET_STRING, req->nonce, sizeof req->nonce)) {
        seterr(err, errlen, "CertRep has no fresh 16-byte senderNonce");
        goto out;
    }
    res->pki_status = attr_int(si, OID_PKI_STATUS);
    if (res->pki_status == 2) {
        res->fail_info = attr_int(si, OID_FAIL_INFO);
        if (res->fail_info < 0 || res->fail_info > 4) {
            seterr(err, errlen, "FAILURE without a valid failInfo");
            goto out;
        }
        if (!CMS_is_detached(cms)) {
            seterr(err, errlen, "FAILURE with content");
            goto out;
        }
    } else if (res->pki_status == 0) {
        if (!(res->cert = issued_cert(content, req, err, errlen)))
            goto out;
        EVP_PKEY_up_ref(req->key);
        res->key = req->key;
    } else {
        seterr(err, errlen, "unexpected pkiStatus %d", res->pki_status);
        goto out;
    }
    rc = 0;
out:
    if (rc != 0)
        res->pki_status = res->fail_info = -1;
    sk_X509_free(trusted);
    BIO_free(content);
    BIO_free(empty);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return rc;
}

void testscep_result_free(testscep_result_t *res)
{
    X509_free(res->cert);
    EVP_PKEY_free(res->key);
    res->cert = NULL;
    res->key = NULL;
}

/* ---- HTTP --------------------------------------------------------------------- */

typedef struct {
    unsigned char *data;
    size_t len;
} sink_t;

static size_t sink(char *ptr, size_t size, size_t nmemb, void *ud)
{
    sink_t *s = ud;
    size_t n = size * nmemb;
    if (s->len + n > MAX_RESPONSE)
        return 0;
    unsigned char *g = realloc(s->data, s->len + n + 1);
    if (!g)
        return 0;
    s->data = g;
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    s->data[s->len] = '\0';
    return n;
}

/* One request; body NULL = GET. Returns the body (heap, NUL-terminated). */
static unsigned char *http_call(const char *url, const char *server_ca_pem, const void *body, size_t body_len,
                                long *status, size_t *len, char *ct, size_t ctlen)
{
    *status = -1;
    if (len)
        *len = 0;
    if (ct && ctlen)
        ct[0] = '\0';
    CURL *c = curl_easy_init();
    if (!c)
        return NULL;
    sink_t sk = {0};
    struct curl_slist *h = NULL;
    curl_easy_setopt(c, CURLOPT_URL, url);
    if (server_ca_pem)
        curl_easy_setopt(c, CURLOPT_CAINFO, server_ca_pem);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sk);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (body) {
        h = curl_slist_append(h, "Content-Type: application/x-pki-message");
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
    }
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
        char *type = NULL;
        if (ct && ctlen && curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &type) == CURLE_OK && type)
            snprintf(ct, ctlen, "%s", type);
    }
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    if (len)
        *len = sk.len;
    return sk.data;
}

unsigned char *testscep_get(const char *base_url, const char *server_ca_pem, const char *operation, long *status,
                            size_t *len, char *ct, size_t ctlen)
{
    char *url = util_strdup_printf("%s/scep?operation=%s", base_url, operation);
    unsigned char *body = url ? http_call(url, server_ca_pem, NULL, 0, status, len, ct, ctlen) : NULL;
    free(url);
    return body;
}

unsigned char *testscep_post(const char *base_url, const char *server_ca_pem, const void *body, size_t body_len,
                             long *status, size_t *len)
{
    char *url = util_strdup_printf("%s/scep?operation=PKIOperation", base_url);
    /* libcurl sends a zero-length POST only with a non-NULL body. */
    unsigned char *out = url ? http_call(url, server_ca_pem, body ? body : "", body_len, status, len, NULL, 0) : NULL;
    free(url);
    return out;
}

/* GET with message=<URL-escaped base64>. */
static unsigned char *get_pkioperation(const char *base_url, const char *server_ca_pem, const unsigned char *der,
                                       size_t der_len, long *status, size_t *len, char *ct, size_t ctlen)
{
    char *b64 = util_base64_encode(der, der_len);
    CURL *c = curl_easy_init();
    char *esc = b64 && c ? curl_easy_escape(c, b64, 0) : NULL;
    char *url = esc ? util_strdup_printf("%s/scep?operation=PKIOperation&message=%s", base_url, esc) : NULL;
    unsigned char *out = url ? http_call(url, server_ca_pem, NULL, 0, status, len, ct, ctlen) : NULL;
    free(url);
    curl_free(esc);
    curl_easy_cleanup(c);
    free(b64);
    return out;
}

int testscep_run(const char *base_url, const char *server_ca_pem, const testscep_opts_t *o, testscep_result_t *res)
{
    memset(res, 0, sizeof *res);
    res->http_status = -1;
    res->pki_status = res->fail_info = -1;
    long st;
    size_t len = 0;
    char ct[128];
    int rc = -1;
    X509 *ca = NULL;
    testscep_request_t req;
    memset(&req, 0, sizeof req);
    unsigned char *body = testscep_get(base_url, server_ca_pem, "GetCACert", &st, &len, ct, sizeof ct);
    const unsigned char *p = body;
    if (st != 200 || !body || !(ca = d2i_X509(NULL, &p, (long)len))) {
        seterr(res->err, sizeof res->err, "GetCACert failed (HTTP %ld)", st);
        goto out;
    }
    free(body);
    body = NULL;
    if (testscep_build_request(o, ca, &req, res->err, sizeof res->err) != 0)
        goto out;
    if (o->use_get)
        body = get_pkioperation(base_url, server_ca_pem, req.der, req.der_len, &res->http_status, &len, ct, sizeof ct);
    else
        body = testscep_post(base_url, server_ca_pem, req.der, req.der_len, &res->http_status, &len);
    if (res->http_status != 200) {
        if (body)
            snprintf(res->body_text, sizeof res->body_text, "%.*s", (int)(len < 255 ? len : 255), (const char *)body);
        seterr(res->err, sizeof res->err, "PKIOperation: HTTP %ld", res->http_status);
        goto out;
    }
    rc = testscep_open_response(body, len, ca, &req, res, res->err, sizeof res->err);
out:
    free(body);
    X509_free(ca);
    testscep_request_free(&req);
    return rc;
}

int testscep_enroll(const char *base_url, const char *server_ca_pem, const char *challenge, const char *cn,
                    EVP_PKEY **key_out, X509 **cert_out, char *err, size_t errlen)
{
    testscep_opts_t o;
    memset(&o, 0, sizeof o);
    o.cn = cn;
    o.challenge = challenge;
    o.key_type = TESTSCEP_KEY_RSA;
    testscep_result_t res;
    int rc = testscep_run(base_url, server_ca_pem, &o, &res);
    if (rc == 0 && res.pki_status == 0) {
        *key_out = res.key;
        *cert_out = res.cert;
        return 0;
    }
    if (rc == 0)
        seterr(err, errlen, "enrollment refused: pkiStatus %d failInfo %d", res.pki_status, res.fail_info);
    else
        seterr(err, errlen, "%s", res.err);
    testscep_result_free(&res);
    return -1;
}

int testscep_renew(const char *base_url, const char *server_ca_pem, EVP_PKEY *cur_key, X509 *cur_cert,
                   EVP_PKEY **key_out, X509 **cert_out, char *err, size_t errlen)
{
    /* A renewal keeps the subject of the certificate it renews. */
    testscep_opts_t o;
    memset(&o, 0, sizeof o);
    o.subject = X509_get_subject_name(cur_cert);
    o.key_type = TESTSCEP_KEY_RSA;
    o.message_type = 17;
    o.signer_cert = cur_cert;
    o.signer_key = cur_key;
    testscep_result_t res;
    int rc = testscep_run(base_url, server_ca_pem, &o, &res);
    if (rc == 0 && res.pki_status == 0) {
        *key_out = res.key;
        *cert_out = res.cert;
        return 0;
    }
    if (rc == 0)
        seterr(err, errlen, "renewal refused: pkiStatus %d failInfo %d", res.pki_status, res.fail_info);
    else
        seterr(err, errlen, "%s", res.err);
    testscep_result_free(&res);
    return -1;
}
