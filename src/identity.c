/* Device identity: TLS client certificates, proxy client-certificate
 * headers, and Mdm-Signature (detached CMS SignedData over the body). */
#include "identity.h"

#include "pki.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509_vfy.h>

#define MDM_SIGNATURE_MAX (64 * 1024) /* header text, bytes */
#define CERT_HEADER_MAX (16 * 1024)   /* header text, bytes */

/* A device sends one signer, one digest algorithm and its certificate (plus
 * perhaps intermediates). CMS_verify hashes the whole body once for every
 * entry of digestAlgorithms, duplicates included, before any signature is
 * checked: unbounded, a 64 KiB header could make one unauthenticated request
 * hash a 2 MiB body thousands of times. */
#define MDM_MAX_DIGEST_ALGS 4
#define MDM_MAX_SIGNERS 4
#define MDM_MAX_CERTS 16

struct identity_verifier {
    X509_STORE *store;
};

static void set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

/* ---- verifier ----------------------------------------------------------- */

identity_verifier_t *identity_verifier_new(const char *ca_bundle_path, char **err)
{
    char *dummy = NULL;
    if (!err)
        err = &dummy;
    *err = NULL;
    if (!ca_bundle_path || !*ca_bundle_path) {
        *err = util_strdup_printf("device identity CA bundle path is not set");
        return NULL;
    }
    STACK_OF(X509) *certs = pki_load_cert_bundle(ca_bundle_path);
    if (!certs) {
        FILE *f = fopen(ca_bundle_path, "r");
        if (!f)
            *err = util_strdup_printf("%s: cannot read: %s", ca_bundle_path, strerror(errno));
        else {
            fclose(f);
            *err = util_strdup_printf("%s: no PEM certificates, or a malformed certificate", ca_bundle_path);
        }
        free(dummy);
        return NULL;
    }

    identity_verifier_t *v = calloc(1, sizeof *v);
    X509_STORE *store = X509_STORE_new();
    int ok = v && store;
    for (int i = 0; ok && i < sk_X509_num(certs); i++) {
        if (X509_STORE_add_cert(store, sk_X509_value(certs, i)) != 1) {
            /* A duplicate certificate in the bundle is harmless. */
            unsigned long e = ERR_peek_last_error();
            ok = ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_CERT_ALREADY_IN_HASH_TABLE;
            ERR_clear_error();
        }
    }
    /* Every certificate in the bundle is a trust anchor, including an
     * intermediate configured on its own (trusting only that sub-CA rather
     * than its whole root). */
    ok = ok && X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN) == 1;
    sk_X509_pop_free(certs, X509_free);
    if (!ok) {
        X509_STORE_free(store);
        free(v);
        ERR_clear_error();
        *err = util_strdup_printf("%s: cannot build the trust store", ca_bundle_path);
        free(dummy);
        return NULL;
    }
    v->store = store;
    free(dummy);
    return v;
}

void identity_verifier_free(identity_verifier_t *v)
{
    if (!v)
        return;
    X509_STORE_free(v->store);
    free(v);
}

int identity_verify_cert(const identity_verifier_t *v, X509 *leaf, STACK_OF(X509) *untrusted, char *err,
                         size_t errlen)
{
    if (!v || !leaf) {
        set_err(err, errlen, "no certificate");
        return -1;
    }
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx) {
        ERR_clear_error();
        set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    if (X509_STORE_CTX_init(ctx, v->store, leaf, untrusted) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT) != 1) {
        set_err(err, errlen, "cannot initialise certificate verification");
    } else if (X509_verify_cert(ctx) == 1) {
        rc = 0;
    } else {
        int e = X509_STORE_CTX_get_error(ctx);
        set_err(err, errlen, "%s",
                e == X509_V_OK ? "certificate verification failed" : X509_verify_cert_error_string(e));
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

/* ---- Mdm-Signature ------------------------------------------------------ */

/* Enters (or, with skip, steps over) one definite-length DER element of the
 * given tag and class at *p, which has `avail` bytes. Returns the content
 * length, or -1. */
static long der_element(const unsigned char **p, long avail, int tag, int cls, int skip)
{
    const unsigned char *q = *p;
    long len = 0;
    int t = 0, c = 0;
    int r = ASN1_get_object(&q, &len, &t, &c, avail);
    if ((r & 0x80) || (r & 0x01) || (tag >= 0 && (t != tag || c != cls)))
        return -1;
    *p = skip ? q + len : q;
    return len;
}

/* Number of entries in SignedData.digestAlgorithms of a DER ContentInfo, or
 * -1 if it is not shaped like one. OpenSSL has no accessor for the field. */
static int count_digest_algorithms(const unsigned char *der, long len)
{
    const unsigned char *p = der, *end = der + len;
    if (der_element(&p, end - p, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 0) < 0 ||    /* ContentInfo */
        der_element(&p, end - p, V_ASN1_OBJECT, V_ASN1_UNIVERSAL, 1) < 0 ||      /* contentType */
        der_element(&p, end - p, 0, V_ASN1_CONTEXT_SPECIFIC, 0) < 0 ||           /* [0] */
        der_element(&p, end - p, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 0) < 0 ||    /* SignedData */
        der_element(&p, end - p, V_ASN1_INTEGER, V_ASN1_UNIVERSAL, 1) < 0)       /* version */
        return -1;
    long set_len = der_element(&p, end - p, V_ASN1_SET, V_ASN1_UNIVERSAL, 0); /* digestAlgorithms */
    if (set_len < 0)
        return -1;
    const unsigned char *set_end = p + set_len;
    int n = 0;
    while (p < set_end) {
        if (der_element(&p, set_end - p, -1, 0, 1) < 0)
            return -1;
        n++;
    }
    return n;
}

X509 *identity_from_mdm_signature(const identity_verifier_t *v, const char *header_b64, const void *body,
                                  size_t body_len, char *err, size_t errlen)
{
    if (!v) {
        set_err(err, errlen, "no identity verifier configured");
        return NULL;
    }
    if (!header_b64) {
        set_err(err, errlen, "Mdm-Signature is missing");
        return NULL;
    }
    if (!body && body_len > 0) {
        set_err(err, errlen, "Mdm-Signature does not match the request body");
        return NULL;
    }
    if (body_len > INT_MAX) {
        set_err(err, errlen, "request body is too large to verify");
        return NULL;
    }
    size_t hlen = strnlen(header_b64, MDM_SIGNATURE_MAX + 1);
    if (hlen > MDM_SIGNATURE_MAX) {
        set_err(err, errlen, "Mdm-Signature is too large");
        return NULL;
    }

    size_t der_len = 0;
    unsigned char *der = util_base64_decode(header_b64, hlen, &der_len);
    if (!der || der_len == 0) {
        free(der);
        set_err(err, errlen, hlen == 0 ? "Mdm-Signature is empty" : "Mdm-Signature is not valid base64");
        return NULL;
    }

    X509 *result = NULL;
    CMS_ContentInfo *cms = NULL;
    BIO *content = NULL;
    STACK_OF(X509) *signers = NULL, *certs = NULL;

    /* The whole header must be one CMS structure: no trailing bytes. */
    const unsigned char *p = der;
    cms = d2i_CMS_ContentInfo(NULL, &p, (long)der_len);
    if (!cms || p != der + der_len) {
        set_err(err, errlen, "Mdm-Signature is not a CMS structure");
        goto out;
    }
    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed || CMS_is_detached(cms) != 1) {
        set_err(err, errlen, "Mdm-Signature is not a detached SignedData");
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *sinfos = CMS_get0_SignerInfos(cms);
    int nsigners = sk_CMS_SignerInfo_num(sinfos);
    if (nsigners <= 0) {
        set_err(err, errlen, "Mdm-Signature has no signer");
        goto out;
    }
    /* Bound the work CMS_verify will do (see MDM_MAX_DIGEST_ALGS). The input
     * may be BER; its DER re-encoding has definite lengths to walk. */
    unsigned char *reenc = NULL;
    int reenc_len = i2d_CMS_ContentInfo(cms, &reenc);
    int ndigests = reenc_len > 0 ? count_digest_algorithms(reenc, reenc_len) : -1;
    OPENSSL_free(reenc);
    if (ndigests < 0) {
        set_err(err, errlen, "Mdm-Signature is not a CMS structure");
        goto out;
    }
    certs = CMS_get1_certs(cms); /* all certificates: signer and intermediates */
    if (nsigners > MDM_MAX_SIGNERS || ndigests > MDM_MAX_DIGEST_ALGS || sk_X509_num(certs) > MDM_MAX_CERTS) {
        set_err(err, errlen, "Mdm-Signature has too many signers, digest algorithms or certificates");
        goto out;
    }
    /* Match every SignerInfo with a certificate carried in the structure. */
    CMS_set1_signers_certs(cms, NULL, 0);
    for (int i = 0; i < nsigners; i++) {
        X509 *signer = NULL;
        CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sinfos, i), NULL, &signer, NULL, NULL);
        if (!signer) {
            set_err(err, errlen, "Mdm-Signature does not include the signer certificate");
            goto out;
        }
    }

    /* Signature over the exact body bytes (binary: no MIME canonicalisation);
     * the signer's chain is checked afterwards against our own trust store.
     * The body goes in behind a pass-through filter: given a memory BIO
     * directly, OpenSSL 3.0's CMS_verify makes a private copy of it that it
     * leaks if CMS_dataInit then fails (e.g. an unknown digest algorithm in
     * digestAlgorithms; found by fuzz/fuzz_mdm_signature.c). */
    BIO *mem = BIO_new_mem_buf(body_len ? body : "", (int)body_len);
    content = mem ? BIO_new(BIO_f_null()) : NULL;
    if (!content) {
        BIO_free(mem);
        set_err(err, errlen, "out of memory");
        goto out;
    }
    BIO_push(content, mem);
    if (CMS_verify(cms, NULL, NULL, content, NULL, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        set_err(err, errlen, "Mdm-Signature does not match the request body");
        goto out;
    }

    signers = CMS_get0_signers(cms);
    X509 *signer = sk_X509_value(signers, 0);
    if (!signer) {
        set_err(err, errlen, "Mdm-Signature does not include the signer certificate");
        goto out;
    }
    char reason[256];
    if (identity_verify_cert(v, signer, certs, reason, sizeof reason) != 0) {
        set_err(err, errlen, "Mdm-Signature signer is not trusted: %s", reason);
        goto out;
    }
    if (X509_up_ref(signer) != 1) {
        set_err(err, errlen, "out of memory");
        goto out;
    }
    result = signer;

out:
    sk_X509_pop_free(certs, X509_free);
    sk_X509_free(signers);
    BIO_free_all(content);
    CMS_ContentInfo_free(cms);
    free(der);
    ERR_clear_error();
    return result;
}

/* ---- proxy client-certificate headers ----------------------------------- */

static int is_ows(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* DER certificate, exactly one, no trailing bytes. */
static X509 *cert_from_der(const unsigned char *der, size_t len, char *err, size_t errlen)
{
    if (len == 0 || len > LONG_MAX) {
        set_err(err, errlen, "client certificate header holds no certificate");
        return NULL;
    }
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x || p != der + len) {
        X509_free(x);
        ERR_clear_error();
        set_err(err, errlen, "client certificate header is not a valid DER certificate");
        return NULL;
    }
    return x;
}

/* RFC 9440 Client-Cert: an RFC 8941 byte sequence, ":" base64 ":". */
static X509 *cert_from_sf_binary(const char *s, size_t n, char *err, size_t errlen)
{
    if (n < 2 || s[0] != ':' || s[n - 1] != ':') {
        set_err(err, errlen, "client certificate header is not an RFC 9440 :base64: value");
        return NULL;
    }
    const char *b = s + 1;
    size_t blen = n - 2;
    size_t pad_at = blen;
    for (size_t i = 0; i < blen; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '=') {
            if (pad_at == blen)
                pad_at = i;
        } else if (!is_b64_char(c) || pad_at != blen) {
            set_err(err, errlen, "client certificate header is not valid base64");
            return NULL;
        }
    }
    /* RFC 8941 s.4.2.7: accept missing "=" padding. */
    char *tmp = malloc(blen + 3);
    if (!tmp) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(tmp, b, blen);
    size_t tlen = blen;
    if (pad_at == blen)
        while (tlen % 4 != 0)
            tmp[tlen++] = '=';
    size_t der_len = 0;
    unsigned char *der = util_base64_decode(tmp, tlen, &der_len);
    free(tmp);
    if (!der) {
        set_err(err, errlen, "client certificate header is not valid base64");
        return NULL;
    }
    X509 *x = cert_from_der(der, der_len, err, errlen);
    free(der);
    return x;
}

static const char PEM_BEGIN[] = "-----BEGIN CERTIFICATE-----";
static const char PEM_END[] = "-----END CERTIFICATE-----";

/* One PEM certificate. The base64 body may be split by newlines (proper
 * PEM) or by spaces (proxies that flatten the header onto one line); any
 * ASCII whitespace between base64 characters is ignored. Nothing but
 * whitespace may surround the block. */
static X509 *cert_from_pem(const char *s, size_t n, char *err, size_t errlen)
{
    const size_t bl = sizeof PEM_BEGIN - 1, el = sizeof PEM_END - 1;
    if (n < bl + el || memcmp(s, PEM_BEGIN, bl) != 0) {
        set_err(err, errlen, "client certificate header is not a PEM certificate");
        return NULL;
    }
    const char *body = s + bl;
    size_t body_len = 0;
    for (;; body_len++) {
        if (bl + body_len + el > n) {
            set_err(err, errlen, "client certificate header has no PEM end line");
            return NULL;
        }
        if (body[body_len] == '-')
            break;
    }
    if (bl + body_len + el != n || memcmp(body + body_len, PEM_END, el) != 0) {
        set_err(err, errlen, "client certificate header has a malformed PEM end line or trailing data");
        return NULL;
    }
    for (size_t i = 0; i < body_len; i++) {
        unsigned char c = (unsigned char)body[i];
        if (!is_b64_char(c) && c != '=' && !is_ows(c)) {
            set_err(err, errlen, "client certificate header PEM body is not valid base64");
            return NULL;
        }
    }
    size_t der_len = 0;
    unsigned char *der = util_base64_decode(body, body_len, &der_len);
    if (!der) {
        set_err(err, errlen, "client certificate header PEM body is not valid base64");
        return NULL;
    }
    X509 *x = cert_from_der(der, der_len, err, errlen);
    free(der);
    return x;
}

X509 *identity_from_header(const char *value, char *err, size_t errlen)
{
    if (!value) {
        set_err(err, errlen, "client certificate header is missing");
        return NULL;
    }
    size_t n = strnlen(value, CERT_HEADER_MAX + 1);
    if (n > CERT_HEADER_MAX) {
        set_err(err, errlen, "client certificate header is too large");
        return NULL;
    }
    /* Surrounding whitespace is not part of the field value. */
    while (n > 0 && is_ows((unsigned char)value[0])) {
        value++;
        n--;
    }
    while (n > 0 && is_ows((unsigned char)value[n - 1]))
        n--;
    if (n == 0) {
        set_err(err, errlen, "client certificate header is empty");
        return NULL;
    }

    if (value[0] == ':')
        return cert_from_sf_binary(value, n, err, errlen);

    if (!memchr(value, '%', n)) {
        X509 *x = cert_from_pem(value, n, err, errlen);
        ERR_clear_error();
        return x;
    }

    /* URL-escaped PEM (nginx $ssl_client_escaped_cert): decode %XX only;
     * '+' stays '+', as it is a base64 character here, not a space. */
    char *dec = malloc(n + 1);
    if (!dec) {
        set_err(err, errlen, "out of memory");
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)value[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)value[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(dec);
                set_err(err, errlen, "client certificate header has a bad %%-escape");
                return NULL;
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        dec[m++] = (char)c;
    }
    dec[m] = '\0';
    /* Decoded text may carry its own surrounding newline. */
    const char *d = dec;
    while (m > 0 && is_ows((unsigned char)d[0])) {
        d++;
        m--;
    }
    while (m > 0 && is_ows((unsigned char)d[m - 1]))
        m--;
    X509 *x = cert_from_pem(d, m, err, errlen);
    free(dec);
    ERR_clear_error();
    return x;
}
