/* Test PKI helpers (see testpki.h). No test framework calls in here. */
#include "testpki.h"

#include "pki.h"
#include "util.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>

static int issue_identity(const char *ca_cert_path, const char *ca_key_path, const char *cn, int expired,
                          EVP_PKEY **key_out, X509 **cert_out)
{
    if (!ca_cert_path || !ca_key_path || !cn || !key_out || !cert_out)
        return -1;
    *key_out = NULL;
    *cert_out = NULL;
    X509 *ca = pki_load_cert(ca_cert_path);
    EVP_PKEY *ca_key = pki_load_key(ca_key_path);
    EVP_PKEY *key = ca && ca_key ? pki_new_ec_key() : NULL;
    X509 *cert = key ? pki_issue_cert(ca, ca_key, key, cn, 365, PKI_USAGE_CLIENT, NULL, 0) : NULL;
    int ok = cert != NULL;
    if (ok && expired) {
        /* Valid from 30 days ago until yesterday; re-sign after the change. */
        ok = X509_gmtime_adj(X509_getm_notBefore(cert), -30L * 86400) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(cert), -86400) != NULL &&
             X509_sign(cert, ca_key, EVP_sha256()) > 0;
    }
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    ERR_clear_error();
    if (!ok) {
        X509_free(cert);
        EVP_PKEY_free(key);
        return -1;
    }
    *key_out = key;
    *cert_out = cert;
    return 0;
}

int testpki_issue_device_identity(const char *ca_cert_path, const char *ca_key_path, const char *cn,
                                  EVP_PKEY **key_out, X509 **cert_out)
{
    return issue_identity(ca_cert_path, ca_key_path, cn, 0, key_out, cert_out);
}

int testpki_issue_expired_identity(const char *ca_cert_path, const char *ca_key_path, const char *cn,
                                   EVP_PKEY **key_out, X509 **cert_out)
{
    return issue_identity(ca_cert_path, ca_key_path, cn, 1, key_out, cert_out);
}

int testpki_make_ca(const char *dir, const char *name)
{
    if (!dir || !name)
        return -1;
    char *pem = util_strdup_printf("%s/%s.pem", dir, name);
    char *keyp = util_strdup_printf("%s/%s.key", dir, name);
    EVP_PKEY *key = pem && keyp ? pki_new_ec_key() : NULL;
    X509 *ca = key ? pki_issue_cert(NULL, key, key, name, 3650, PKI_USAGE_CA, NULL, 0) : NULL;
    int rc = ca && pki_write_key(keyp, key) == 0 && pki_write_cert(pem, ca) == 0 ? 0 : -1;
    X509_free(ca);
    EVP_PKEY_free(key);
    free(pem);
    free(keyp);
    return rc;
}

static char *sign_cms(X509 *cert, EVP_PKEY *key, const void *body, size_t len, unsigned int flags)
{
    if (!cert || !key || (!body && len > 0) || len > INT_MAX)
        return NULL;
    char *out = NULL;
    unsigned char *der = NULL;
    BIO *in = BIO_new_mem_buf(len ? body : "", (int)len);
    CMS_ContentInfo *cms = in ? CMS_sign(cert, key, NULL, in, flags) : NULL;
    int der_len = cms ? i2d_CMS_ContentInfo(cms, &der) : -1;
    if (der_len > 0)
        out = util_base64_encode(der, (size_t)der_len);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    ERR_clear_error();
    return out;
}

char *testpki_mdm_signature(X509 *cert, EVP_PKEY *key, const void *body, size_t len)
{
    return sign_cms(cert, key, body, len, CMS_DETACHED | CMS_BINARY);
}

char *testpki_mdm_signature_attached(X509 *cert, EVP_PKEY *key, const void *body, size_t len)
{
    return sign_cms(cert, key, body, len, CMS_BINARY);
}

char *testpki_cert_pem(X509 *cert)
{
    if (!cert)
        return NULL;
    BIO *bio = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (bio && PEM_write_bio_X509(bio, cert)) {
        char *data = NULL;
        long n = BIO_get_mem_data(bio, &data);
        if (n > 0 && (out = malloc((size_t)n + 1)) != NULL) {
            memcpy(out, data, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(bio);
    ERR_clear_error();
    return out;
}

char *testpki_cert_escaped_pem(X509 *cert)
{
    char *pem = testpki_cert_pem(cert);
    if (!pem)
        return NULL;
    size_t n = strlen(pem);
    char *out = malloc(3 * n + 1);
    if (out) {
        static const char hex[] = "0123456789ABCDEF";
        size_t o = 0;
        for (size_t i = 0; i < n; i++) {
            unsigned char c = (unsigned char)pem[i];
            if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
                c == '.' || c == '_' || c == '~') {
                out[o++] = (char)c;
            } else {
                out[o++] = '%';
                out[o++] = hex[c >> 4];
                out[o++] = hex[c & 15];
            }
        }
        out[o] = '\0';
    }
    free(pem);
    return out;
}

char *testpki_cert_rfc9440(X509 *cert)
{
    if (!cert)
        return NULL;
    unsigned char *der = NULL;
    int len = i2d_X509(cert, &der);
    char *b64 = len > 0 ? util_base64_encode(der, (size_t)len) : NULL;
    char *out = b64 ? util_strdup_printf(":%s:", b64) : NULL;
    free(b64);
    OPENSSL_free(der);
    ERR_clear_error();
    return out;
}

int testpki_issue_push_cert(const char *ca_cert_path, const char *ca_key_path, const char *topic, int expired,
                            const char *cert_out, const char *key_out)
{
    if (!ca_cert_path || !ca_key_path || !topic || !cert_out || !key_out)
        return -1;
    X509 *ca = pki_load_cert(ca_cert_path);
    EVP_PKEY *ca_key = pki_load_key(ca_key_path);
    EVP_PKEY *key = ca && ca_key ? pki_new_ec_key() : NULL;
    char *cn = util_strdup_printf("APSP:%s", topic);
    X509 *cert = key && cn ? pki_issue_cert(ca, ca_key, key, cn, 365, PKI_USAGE_CLIENT, NULL, 0) : NULL;
    int ok = cert != NULL;
    /* Apple puts the topic in the subject's UID; add it and re-sign. */
    ok = ok && X509_NAME_add_entry_by_NID(X509_get_subject_name(cert), NID_userId, MBSTRING_ASC,
                                          (const unsigned char *)topic, -1, 0, 0) == 1;
    if (ok && expired)
        ok = X509_gmtime_adj(X509_getm_notBefore(cert), -30L * 86400) != NULL &&
             X509_gmtime_adj(X509_getm_notAfter(cert), -86400) != NULL;
    ok = ok && X509_sign(cert, ca_key, EVP_sha256()) > 0;
    ok = ok && pki_write_cert(cert_out, cert) == 0 && pki_write_key(key_out, key) == 0;
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    X509_free(cert);
    EVP_PKEY_free(key);
    free(cn);
    ERR_clear_error();
    return ok ? 0 : -1;
}
