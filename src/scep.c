/* SCEP message core (see scep.h): PKIOperation parsing, certificate
 * issuing, CertRep building. OpenSSL 3 CMS throughout. */
#include "scep.h"

#include "pki.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/provider.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#define MAX_CHALLENGE 255   /* bytes of UTF-8 */
#define MAX_CN_CHARS 64     /* ub-common-name (RFC 5280) */
#define MAX_DAYS (100 * 366)
#define NONCE_LEN 16

/* ---- process-wide state ------------------------------------------------- */

/* SCEP's attribute OIDs (id-attributes, 2.16.840.1.113733.1.9.x). */
enum { A_MESSAGE_TYPE, A_PKI_STATUS, A_FAIL_INFO, A_SENDER_NONCE, A_RECIPIENT_NONCE, A_TRANSACTION_ID, A_COUNT };
static const char *const attr_oid_text[A_COUNT] = {
    "2.16.840.1.113733.1.9.2", "2.16.840.1.113733.1.9.3", "2.16.840.1.113733.1.9.4",
    "2.16.840.1.113733.1.9.5", "2.16.840.1.113733.1.9.6", "2.16.840.1.113733.1.9.7",
};

static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static int g_ready;
static ASN1_OBJECT *g_oid[A_COUNT];
/* Single DES lives in OpenSSL 3's legacy provider. Clients such as
 * micromdm's scepclient (Debian's `scep` 2.1) still encrypt requests with
 * DES-CBC whatever GetCACaps says, so requests are decrypted in this separate
 * library context (default + legacy providers). Loading the legacy provider
 * into the default context instead would make its algorithms available to
 * every other part of the server. NULL if the provider is not installed. */
static OSSL_LIB_CTX *g_legacy;
static OSSL_PROVIDER *g_prov_default, *g_prov_legacy;

/* Providers must be unloaded before their context is freed, or OpenSSL
 * keeps them (and everything they registered) allocated. */
static void legacy_free(void)
{
    if (g_prov_legacy)
        OSSL_PROVIDER_unload(g_prov_legacy);
    if (g_prov_default)
        OSSL_PROVIDER_unload(g_prov_default);
    OSSL_LIB_CTX_free(g_legacy);
    g_prov_legacy = g_prov_default = NULL;
    g_legacy = NULL;
}

static int global_init(void)
{
    pthread_mutex_lock(&g_lock);
    if (!g_ready) {
        int ok = 1;
        for (int i = 0; i < A_COUNT; i++)
            ok = ok && (g_oid[i] = OBJ_txt2obj(attr_oid_text[i], 1)) != NULL;
        if (ok) {
            g_legacy = OSSL_LIB_CTX_new();
            if (g_legacy && (!(g_prov_default = OSSL_PROVIDER_load(g_legacy, "default")) ||
                             !(g_prov_legacy = OSSL_PROVIDER_load(g_legacy, "legacy"))))
                legacy_free();
            g_ready = 1;
        } else {
            for (int i = 0; i < A_COUNT; i++) {
                ASN1_OBJECT_free(g_oid[i]);
                g_oid[i] = NULL;
            }
        }
        ERR_clear_error();
    }
    int ready = g_ready;
    pthread_mutex_unlock(&g_lock);
    return ready ? 0 : -1;
}

void scep_global_cleanup(void)
{
    pthread_mutex_lock(&g_lock);
    for (int i = 0; i < A_COUNT; i++) {
        ASN1_OBJECT_free(g_oid[i]);
        g_oid[i] = NULL;
    }
    legacy_free();
    g_ready = 0;
    pthread_mutex_unlock(&g_lock);
}

/* ---- names -------------------------------------------------------------- */

const char *scep_message_type_name(int type)
{
    switch (type) {
    case SCEP_MSG_CERTREP: return "CertRep";
    case SCEP_MSG_RENEWALREQ: return "RenewalReq";
    case SCEP_MSG_UPDATEREQ: return "UpdateReq";
    case SCEP_MSG_PKCSREQ: return "PKCSReq";
    case SCEP_MSG_CERTPOLL: return "GetCertInitial";
    case SCEP_MSG_GETCERT: return "GetCert";
    case SCEP_MSG_GETCRL: return "GetCRL";
    default: return "unknown";
    }
}

const char *scep_fail_name(scep_fail_t f)
{
    switch (f) {
    case SCEP_FAIL_BAD_ALG: return "badAlg";
    case SCEP_FAIL_BAD_MESSAGE_CHECK: return "badMessageCheck";
    case SCEP_FAIL_BAD_REQUEST: return "badRequest";
    case SCEP_FAIL_BAD_TIME: return "badTime";
    case SCEP_FAIL_BAD_CERT_ID: return "badCertId";
    }
    return "unknown";
}

/* ---- small helpers ------------------------------------------------------ */

static const char *nid_name(int nid)
{
    const char *s = nid != NID_undef ? OBJ_nid2sn(nid) : NULL;
    return s ? s : "unknown";
}

/* Strings the protocol carries as text (messageType, transactionID). */
static int is_text_type(int t)
{
    return t == V_ASN1_PRINTABLESTRING || t == V_ASN1_UTF8STRING || t == V_ASN1_IA5STRING;
}

/* The single value of a signed attribute. 0 found, 1 absent, -1 present but
 * not single-valued or repeated. */
static int signed_attr_value(CMS_SignerInfo *si, int which, const ASN1_TYPE **out)
{
    *out = NULL;
    int i = CMS_signed_get_attr_by_OBJ(si, g_oid[which], -1);
    if (i < 0)
        return 1;
    if (CMS_signed_get_attr_by_OBJ(si, g_oid[which], i) >= 0)
        return -1;
    X509_ATTRIBUTE *a = CMS_signed_get_attr(si, i);
    if (!a || X509_ATTRIBUTE_count(a) != 1)
        return -1;
    *out = X509_ATTRIBUTE_get0_type(a, 0);
    return *out ? 0 : -1;
}

/* Copies printable ASCII (0x20..0x7e) of an ASN.1 string into out. */
static int copy_printable(const ASN1_STRING *s, char *out, size_t outlen)
{
    int n = ASN1_STRING_length(s);
    const unsigned char *d = ASN1_STRING_get0_data(s);
    if (n <= 0 || (size_t)n >= outlen)
        return -1;
    for (int i = 0; i < n; i++)
        if (d[i] < 0x20 || d[i] > 0x7e)
            return -1;
    memcpy(out, d, (size_t)n);
    out[n] = '\0';
    return 0;
}

/* UTF-8 copy of an ASN.1 string (heap, NUL-terminated), refusing embedded
 * NULs and control characters and anything over maxbytes. */
static char *string_utf8(const ASN1_STRING *s, size_t maxbytes)
{
    unsigned char *u = NULL;
    int n = ASN1_STRING_to_UTF8(&u, s);
    if (n <= 0 || (size_t)n > maxbytes) {
        if (u)
            OPENSSL_clear_free(u, n > 0 ? (size_t)n : 0);
        return NULL;
    }
    for (int i = 0; i < n; i++) {
        if (u[i] < 0x20 || u[i] == 0x7f) {
            OPENSSL_clear_free(u, (size_t)n);
            return NULL;
        }
    }
    char *out = malloc((size_t)n + 1);
    if (out) {
        memcpy(out, u, (size_t)n);
        out[n] = '\0';
    }
    OPENSSL_clear_free(u, (size_t)n);
    return out;
}

/* Number of UTF-8 characters (continuation bytes not counted). */
static size_t utf8_chars(const char *s)
{
    size_t n = 0;
    for (; *s; s++)
        n += ((unsigned char)*s & 0xc0) != 0x80;
    return n;
}

static int digest_allowed(int md_nid)
{
    /* SHA-1 stays acceptable for the request's own signature: deployed
     * clients (micromdm scepclient, older devices) sign with it, and the
     * message is additionally protected by the challenge and TLS. */
    return md_nid == NID_sha1 || md_nid == NID_sha224 || md_nid == NID_sha256 || md_nid == NID_sha384 ||
           md_nid == NID_sha512;
}

static int cipher_allowed(int nid)
{
    return nid == NID_aes_128_cbc || nid == NID_aes_192_cbc || nid == NID_aes_256_cbc || nid == NID_des_ede3_cbc ||
           nid == NID_des_cbc;
}

/* Content cipher of a DER EnvelopedData. The CMS API has no getter for it;
 * the PKCS#7 structures expose the field (key-transport recipients only,
 * which is what an RSA CA receives). NID_undef if it cannot be read. */
static int envelope_cipher(const unsigned char *der, long len)
{
    const unsigned char *p = der;
    PKCS7 *p7 = d2i_PKCS7(NULL, &p, len);
    int nid = NID_undef;
    if (p7 && PKCS7_type_is_enveloped(p7) && p7->d.enveloped && p7->d.enveloped->enc_data &&
        p7->d.enveloped->enc_data->algorithm)
        nid = OBJ_obj2nid(p7->d.enveloped->enc_data->algorithm->algorithm);
    PKCS7_free(p7);
    return nid;
}

/* ---- request policy ----------------------------------------------------- */

/* The key of a certificate orchard will issue. */
static int key_allowed(EVP_PKEY *pk, char *why, size_t whylen)
{
    if (EVP_PKEY_is_a(pk, "RSA")) {
        int bits = EVP_PKEY_get_bits(pk);
        /* The upper bound keeps a request from buying seconds of CPU. */
        if (bits >= 2048 && bits <= 8192)
            return 0;
        snprintf(why, whylen, "RSA-%d key: orchard issues only for RSA 2048..8192 bits or EC P-256/P-384", bits);
        return -1;
    }
    if (EVP_PKEY_is_a(pk, "EC")) {
        char group[64] = "";
        int nid = NID_undef;
        if (EVP_PKEY_get_group_name(pk, group, sizeof group, NULL) == 1) {
            nid = OBJ_sn2nid(group);
            if (nid == NID_undef)
                nid = EC_curve_nist2nid(group);
        }
        if (nid == NID_X9_62_prime256v1 || nid == NID_secp384r1)
            return 0;
        snprintf(why, whylen, "EC key on curve %s: orchard issues only for P-256 or P-384 (or RSA >= 2048)",
                 group[0] ? group : "unknown");
        return -1;
    }
    const char *t = EVP_PKEY_get0_type_name(pk);
    snprintf(why, whylen, "%s key: orchard issues only for RSA >= 2048 or EC P-256/P-384", t ? t : "unknown");
    return -1;
}

/* Checks the PKCS#10 request and fills r->csr, r->cn, r->challenge. */
static int check_csr(scep_request_t *r, X509_REQ *csr, char *why, size_t whylen)
{
    EVP_PKEY *pk = X509_REQ_get0_pubkey(csr);
    if (!pk) {
        r->fail_info = SCEP_FAIL_BAD_ALG;
        snprintf(why, whylen, "the CSR's public key is of an unknown or unsupported type");
        return -1;
    }
    if (key_allowed(pk, why, whylen) != 0) {
        r->fail_info = SCEP_FAIL_BAD_ALG;
        return -1;
    }
    int md = NID_undef, pkt = NID_undef;
    int signid = X509_REQ_get_signature_nid(csr);
    if (!OBJ_find_sigid_algs(signid, &md, &pkt) || !digest_allowed(md)) {
        r->fail_info = SCEP_FAIL_BAD_ALG;
        snprintf(why, whylen, "the CSR is signed with %s; SHA-1/SHA-2 with RSA or ECDSA is required",
                 nid_name(signid));
        return -1;
    }
    if (X509_REQ_verify(csr, pk) != 1) {
        r->fail_info = SCEP_FAIL_BAD_REQUEST;
        snprintf(why, whylen, "the CSR's signature does not verify with its own public key");
        return -1;
    }
    X509_NAME *subj = X509_REQ_get_subject_name(csr);
    int idx = subj ? X509_NAME_get_index_by_NID(subj, NID_commonName, -1) : -1;
    if (idx < 0) {
        r->fail_info = SCEP_FAIL_BAD_REQUEST;
        snprintf(why, whylen, "the CSR's subject has no CN");
        return -1;
    }
    char *cn = string_utf8(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subj, idx)), 4 * MAX_CN_CHARS);
    if (!cn || utf8_chars(cn) > MAX_CN_CHARS) {
        free(cn);
        r->fail_info = SCEP_FAIL_BAD_REQUEST;
        snprintf(why, whylen, "the CSR's CN is empty, longer than %d characters, or holds control characters",
                 MAX_CN_CHARS);
        return -1;
    }
    char *challenge = NULL;
    int ai = X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, -1);
    if (ai >= 0) {
        X509_ATTRIBUTE *a = X509_REQ_get_attr(csr, ai);
        ASN1_TYPE *v = a && X509_ATTRIBUTE_count(a) == 1 ? X509_ATTRIBUTE_get0_type(a, 0) : NULL;
        int t = v ? ASN1_TYPE_get(v) : -1;
        int stringy = t == V_ASN1_PRINTABLESTRING || t == V_ASN1_UTF8STRING || t == V_ASN1_IA5STRING ||
                      t == V_ASN1_T61STRING || t == V_ASN1_BMPSTRING || t == V_ASN1_UNIVERSALSTRING;
        if (!stringy || X509_REQ_get_attr_by_NID(csr, NID_pkcs9_challengePassword, ai) >= 0 ||
            !(challenge = string_utf8(v->value.asn1_string, MAX_CHALLENGE))) {
            free(cn);
            r->fail_info = SCEP_FAIL_BAD_REQUEST;
            snprintf(why, whylen, "the CSR's challengePassword is not a single string of 1..%d bytes", MAX_CHALLENGE);
            return -1;
        }
    }
    r->csr = csr;
    r->cn = cn;
    r->challenge = challenge;
    return 0;
}

/* ---- parsing ------------------------------------------------------------ */

/* Says what is wrong with a signed attribute; rc from signed_attr_value,
 * `want` describes a valid value. */
static void attr_error(char *why, size_t whylen, const char *name, int rc, const char *want)
{
    if (rc == 1)
        snprintf(why, whylen, "%s attribute missing", name);
    else if (rc < 0)
        snprintf(why, whylen, "%s attribute repeated or not single-valued", name);
    else
        snprintf(why, whylen, "%s attribute is not %s", name, want);
}

/* Reads messageType, transactionID and senderNonce: what a CertRep needs.
 * Without them there is nobody to answer (SCEP_PARSE_MALFORMED). */
static int read_envelope_attrs(scep_request_t *r, CMS_SignerInfo *si, char *why, size_t whylen)
{
    const ASN1_TYPE *v;
    int rc = signed_attr_value(si, A_MESSAGE_TYPE, &v);
    char text[8];
    if (rc != 0 || !is_text_type(ASN1_TYPE_get(v)) || copy_printable(v->value.asn1_string, text, sizeof text) != 0 ||
        strspn(text, "0123456789") != strlen(text)) {
        attr_error(why, whylen, "messageType", rc, "a short decimal string");
        return -1;
    }
    r->message_type = atoi(text);

    rc = signed_attr_value(si, A_TRANSACTION_ID, &v);
    if (rc != 0 || !is_text_type(ASN1_TYPE_get(v)) ||
        copy_printable(v->value.asn1_string, r->transaction_id, sizeof r->transaction_id) != 0) {
        attr_error(why, whylen, "transactionID", rc, "printable text of 1..128 characters");
        return -1;
    }
    r->transaction_id_type = ASN1_TYPE_get(v);

    rc = signed_attr_value(si, A_SENDER_NONCE, &v);
    int nlen = rc == 0 && ASN1_TYPE_get(v) == V_ASN1_OCTET_STRING ? ASN1_STRING_length(v->value.octet_string) : -1;
    if (nlen < 8 || nlen > SCEP_MAX_NONCE) {
        attr_error(why, whylen, "senderNonce", rc, "an OCTET STRING of 8..64 bytes");
        return -1;
    }
    memcpy(r->sender_nonce, ASN1_STRING_get0_data(v->value.octet_string), (size_t)nlen);
    r->sender_nonce_len = (size_t)nlen;
    return 0;
}

static int refuse(scep_request_t *r, scep_fail_t f)
{
    r->fail_info = f;
    return SCEP_PARSE_REFUSED;
}

/* Decrypts the EnvelopedData (DER in env_der) and checks the CSR inside. */
static int open_envelope(scep_request_t *r, const unsigned char *env_der, long env_len, X509 *ca_cert,
                         EVP_PKEY *ca_key, char *why, size_t whylen)
{
    r->cipher_nid = envelope_cipher(env_der, env_len);
    if (r->cipher_nid == NID_undef) {
        snprintf(why, whylen, "the signed content is not a PKCS#7 EnvelopedData for a key-transport (RSA) recipient");
        return refuse(r, SCEP_FAIL_BAD_REQUEST);
    }
    if (!cipher_allowed(r->cipher_nid)) {
        snprintf(why, whylen, "the request is encrypted with %s; AES-CBC or (legacy) DES/3DES-CBC is required",
                 nid_name(r->cipher_nid));
        return refuse(r, SCEP_FAIL_BAD_ALG);
    }
    OSSL_LIB_CTX *libctx = NULL;
    if (r->cipher_nid == NID_des_cbc) {
        if (!g_legacy) {
            snprintf(why, whylen, "the request is encrypted with single DES, which needs OpenSSL's legacy provider "
                                  "(not installed)");
            return refuse(r, SCEP_FAIL_BAD_ALG);
        }
        libctx = g_legacy;
    }

    int result = SCEP_PARSE_REFUSED;
    const unsigned char *p = env_der;
    CMS_ContentInfo *env = CMS_ContentInfo_new_ex(libctx, NULL);
    BIO *plain = BIO_new(BIO_s_secmem()); /* holds the challenge password */
    X509_REQ *csr = NULL;
    if (!env || !plain || !d2i_CMS_ContentInfo(&env, &p, env_len) || p != env_der + env_len) {
        snprintf(why, whylen, "the signed content is not a well-formed EnvelopedData");
        r->fail_info = SCEP_FAIL_BAD_REQUEST;
        goto out;
    }
    STACK_OF(CMS_RecipientInfo) *ris = CMS_get0_RecipientInfos(env);
    int matched = 0;
    for (int i = 0; ris && i < sk_CMS_RecipientInfo_num(ris) && !matched; i++) {
        CMS_RecipientInfo *ri = sk_CMS_RecipientInfo_value(ris, i);
        matched = CMS_RecipientInfo_type(ri) == CMS_RECIPINFO_TRANS && CMS_RecipientInfo_ktri_cert_cmp(ri, ca_cert) == 0;
    }
    if (!matched) {
        snprintf(why, whylen, "the request is not encrypted for this CA's certificate (wrong GetCACert result?)");
        r->fail_info = SCEP_FAIL_BAD_MESSAGE_CHECK;
        goto out;
    }
    /* One message for both a failed decryption and undecodable plaintext:
     * RSA PKCS#1 v1.5 must not become a padding oracle. OpenSSL already
     * continues with a random key when the key transport fails. */
    const char *opaque = "cannot decrypt the request with the CA key, or it holds no PKCS#10 request";
    if (CMS_decrypt(env, ca_key, ca_cert, NULL, plain, CMS_BINARY) != 1) {
        snprintf(why, whylen, "%s", opaque);
        r->fail_info = SCEP_FAIL_BAD_MESSAGE_CHECK;
        goto out;
    }
    char *data = NULL;
    long n = BIO_get_mem_data(plain, &data);
    const unsigned char *q = (const unsigned char *)data;
    if (n <= 0 || !(csr = d2i_X509_REQ(NULL, &q, n)) || q != (const unsigned char *)data + n) {
        snprintf(why, whylen, "%s", opaque);
        r->fail_info = SCEP_FAIL_BAD_MESSAGE_CHECK;
        goto out;
    }
    if (check_csr(r, csr, why, whylen) == 0) {
        csr = NULL; /* now r->csr */
        result = SCEP_PARSE_OK;
    }
out:
    X509_REQ_free(csr);
    BIO_free(plain);
    CMS_ContentInfo_free(env);
    return result;
}

int scep_parse_request(const unsigned char *der, size_t len, X509 *ca_cert, EVP_PKEY *ca_key, scep_request_t *out,
                       char *why, size_t whylen)
{
    char dummy[8];
    if (!why || whylen == 0) {
        why = dummy;
        whylen = sizeof dummy;
    }
    why[0] = '\0';
    memset(out, 0, sizeof *out);
    out->message_type = -1;
    out->fail_info = SCEP_FAIL_BAD_REQUEST;
    out->digest_nid = out->cipher_nid = NID_undef;
    if (global_init() != 0) {
        snprintf(why, whylen, "SCEP initialisation failed (out of memory?)");
        return SCEP_PARSE_MALFORMED;
    }
    if (!der || len == 0 || len > SCEP_MAX_MESSAGE) {
        snprintf(why, whylen, "message is empty or larger than %d bytes", SCEP_MAX_MESSAGE);
        return SCEP_PARSE_MALFORMED;
    }
    if (!ca_cert || !ca_key) {
        snprintf(why, whylen, "no CA key to decrypt with");
        return SCEP_PARSE_MALFORMED;
    }

    int result = SCEP_PARSE_MALFORMED;
    const unsigned char *p = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, (long)len);
    BIO *content = NULL;
    if (!cms) {
        snprintf(why, whylen, "not a DER PKCS#7/CMS structure");
        goto out;
    }
    if (p != der + len) {
        snprintf(why, whylen, "%zu bytes of trailing data after the PKCS#7 structure", (size_t)(der + len - p));
        goto out;
    }
    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed) {
        snprintf(why, whylen, "PKCS#7 content type is %s, not SignedData", nid_name(OBJ_obj2nid(CMS_get0_type(cms))));
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *sis = CMS_get0_SignerInfos(cms);
    int nsigners = sis ? sk_CMS_SignerInfo_num(sis) : 0;
    if (nsigners != 1) {
        snprintf(why, whylen, "SignedData has %d signers; a SCEP request has exactly one", nsigners);
        goto out;
    }
    CMS_SignerInfo *si = sk_CMS_SignerInfo_value(sis, 0);
    if (read_envelope_attrs(out, si, why, whylen) != 0)
        goto out;

    /* From here on the requester can be told why, in a signed CertRep. */
    result = SCEP_PARSE_REFUSED;
    EVP_PKEY *spk = NULL;
    X509 *signer = NULL;
    X509_ALGOR *dig = NULL, *sig = NULL;
    if (CMS_set1_signers_certs(cms, NULL, 0) < 0)
        ERR_clear_error();
    CMS_SignerInfo_get0_algs(si, &spk, &signer, &dig, &sig);
    if (!signer) {
        snprintf(why, whylen, "the signer's certificate is not included in the request");
        out->fail_info = SCEP_FAIL_BAD_MESSAGE_CHECK;
        goto out;
    }
    X509_up_ref(signer);
    out->signer = signer;
    const ASN1_OBJECT *dig_oid = NULL;
    X509_ALGOR_get0(&dig_oid, NULL, NULL, dig);
    out->digest_nid = OBJ_obj2nid(dig_oid);
    if (!digest_allowed(out->digest_nid)) {
        snprintf(why, whylen, "the request is signed with digest %s; SHA-1 or SHA-2 is required",
                 nid_name(out->digest_nid));
        out->fail_info = SCEP_FAIL_BAD_ALG;
        goto out;
    }
    /* The signer is self-signed (PKCSReq) or checked by the caller against
     * orchard's records (RenewalReq): only the signature is verified here. */
    content = BIO_new(BIO_s_mem());
    if (!content || CMS_verify(cms, NULL, NULL, NULL, content, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        snprintf(why, whylen, "the request's signature does not verify with the included signer certificate");
        out->fail_info = SCEP_FAIL_BAD_MESSAGE_CHECK;
        goto out;
    }
    if (out->message_type != SCEP_MSG_PKCSREQ && out->message_type != SCEP_MSG_RENEWALREQ) {
        snprintf(why, whylen, "messageType %d (%s) is not supported; orchard answers PKCSReq and RenewalReq",
                 out->message_type, scep_message_type_name(out->message_type));
        out->fail_info = SCEP_FAIL_BAD_REQUEST;
        goto out;
    }
    EVP_PKEY *signer_key = X509_get0_pubkey(signer);
    if (!signer_key || !(EVP_PKEY_is_a(signer_key, "RSA") || EVP_PKEY_is_a(signer_key, "EC"))) {
        snprintf(why, whylen, "cannot encrypt the answer to the signer's key (RSA or EC required)");
        out->fail_info = SCEP_FAIL_BAD_ALG;
        goto out;
    }
    char *env = NULL;
    long env_len = BIO_get_mem_data(content, &env);
    if (env_len <= 0) {
        snprintf(why, whylen, "the request carries no enveloped content");
        out->fail_info = SCEP_FAIL_BAD_REQUEST;
        goto out;
    }
    result = open_envelope(out, (const unsigned char *)env, env_len, ca_cert, ca_key, why, whylen);
out:
    BIO_free(content);
    CMS_ContentInfo_free(cms);
    ERR_clear_error();
    return result;
}

void scep_request_free(scep_request_t *r)
{
    if (!r)
        return;
    X509_free(r->signer);
    X509_REQ_free(r->csr);
    free(r->cn);
    if (r->challenge) {
        OPENSSL_cleanse(r->challenge, strlen(r->challenge));
        free(r->challenge);
    }
    r->signer = NULL;
    r->csr = NULL;
    r->cn = r->challenge = NULL;
}

/* ---- renewal ------------------------------------------------------------ */

int scep_check_renewal_signer(const scep_request_t *r, X509 *ca_cert, scep_fail_t *fail, char *why, size_t whylen)
{
    char dummy[8];
    if (!why || whylen == 0) {
        why = dummy;
        whylen = sizeof dummy;
    }
    *fail = SCEP_FAIL_BAD_REQUEST;
    if (!r->signer || !r->csr || !ca_cert) {
        snprintf(why, whylen, "no signer certificate or CSR");
        return -1;
    }
    X509_STORE *store = X509_STORE_new();
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    int rc = -1;
    if (!store || !ctx || X509_STORE_add_cert(store, ca_cert) != 1 ||
        X509_STORE_CTX_init(ctx, store, r->signer, NULL) != 1) {
        snprintf(why, whylen, "out of memory verifying the renewal signer");
        goto out;
    }
    /* Only orchard's device certificates may renew: client-auth purpose,
     * the CA as the only anchor, at the current time. */
    X509_STORE_CTX_set_purpose(ctx, X509_PURPOSE_SSL_CLIENT);
    if (X509_verify_cert(ctx) != 1) {
        int err = X509_STORE_CTX_get_error(ctx);
        *fail = err == X509_V_ERR_CERT_HAS_EXPIRED || err == X509_V_ERR_CERT_NOT_YET_VALID ? SCEP_FAIL_BAD_TIME
                                                                                            : SCEP_FAIL_BAD_REQUEST;
        snprintf(why, whylen, "RenewalReq signer is not a valid certificate of this CA: %s",
                 X509_verify_cert_error_string(err));
        goto out;
    }
    if (X509_NAME_cmp(X509_get_subject_name(r->signer), X509_REQ_get_subject_name(r->csr)) != 0) {
        snprintf(why, whylen, "RenewalReq asks for another subject than the certificate being renewed");
        goto out;
    }
    rc = 0;
out:
    X509_STORE_CTX_free(ctx);
    X509_STORE_free(store);
    ERR_clear_error();
    return rc;
}

/* ---- issuing ------------------------------------------------------------ */

X509 *scep_issue_cert(X509_REQ *csr, X509 *ca_cert, EVP_PKEY *ca_key, int days)
{
    EVP_PKEY *pk = csr ? X509_REQ_get0_pubkey(csr) : NULL;
    if (!pk || !ca_cert || !ca_key || days < 1 || days > MAX_DAYS)
        return NULL;
    X509 *x = X509_new();
    int ok = x && X509_set_version(x, X509_VERSION_3);
    ok = ok && pki_set_random_serial(x) == 0;
    ok = ok && X509_set_subject_name(x, X509_REQ_get_subject_name(csr));
    ok = ok && X509_set_issuer_name(x, X509_get_subject_name(ca_cert));
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(x), -3600) != NULL;
    ok = ok && X509_time_adj_ex(X509_getm_notAfter(x), days, 0, NULL) != NULL;
    /* A certificate outliving its CA would fail verification anyway. */
    if (ok && ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca_cert)) > 0)
        ok = X509_set1_notAfter(x, X509_get0_notAfter(ca_cert));
    ok = ok && X509_set_pubkey(x, pk);

    X509V3_CTX ctx;
    memset(&ctx, 0, sizeof ctx);
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, ca_cert, x, NULL, NULL, 0);
    /* keyEncipherment only makes sense for RSA keys (RFC 5480 s3). */
    int rsa = EVP_PKEY_is_a(pk, "RSA");
    ok = ok && pki_add_ext(x, &ctx, NID_basic_constraints, "critical,CA:FALSE") == 0;
    ok = ok && pki_add_ext(x, &ctx, NID_key_usage,
                       rsa ? "critical,digitalSignature,keyEncipherment" : "critical,digitalSignature") == 0;
    ok = ok && pki_add_ext(x, &ctx, NID_ext_key_usage, "clientAuth") == 0;
    ok = ok && pki_add_ext(x, &ctx, NID_subject_key_identifier, "hash") == 0;
    ok = ok && pki_add_ext(x, &ctx, NID_authority_key_identifier, "keyid,issuer") == 0;
    ok = ok && X509_sign(x, ca_key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(x);
        x = NULL;
    }
    ERR_clear_error();
    return x;
}

/* ---- CertRep ------------------------------------------------------------ */

/* DER of a degenerate certs-only SignedData holding `cert` (RFC 8894
 * s3.4): no signers, no content, just the certificate. */
static BIO *degenerate_certs(X509 *cert)
{
    PKCS7 *p7 = PKCS7_new();
    BIO *out = BIO_new(BIO_s_mem());
    int ok = p7 && out && PKCS7_set_type(p7, NID_pkcs7_signed) && p7->d.sign && p7->d.sign->contents;
    if (ok) {
        /* id-data with the content itself omitted. */
        ASN1_OBJECT_free(p7->d.sign->contents->type);
        p7->d.sign->contents->type = OBJ_nid2obj(NID_pkcs7_data);
    }
    ok = ok && PKCS7_add_certificate(p7, cert);
    ok = ok && i2d_PKCS7_bio(out, p7) == 1;
    PKCS7_free(p7);
    if (!ok) {
        BIO_free(out);
        out = NULL;
    }
    return out;
}

static int add_text_attr(CMS_SignerInfo *si, int which, int type, const char *text)
{
    return CMS_signed_add1_attr_by_OBJ(si, g_oid[which], type, text, (int)strlen(text)) == 1 ? 0 : -1;
}

/* Signs a CertRep. `content` is the EnvelopedData (success) or NULL
 * (failure: content omitted). */
static int certrep(const scep_request_t *r, X509 *ca_cert, EVP_PKEY *ca_key, int status, int fail, BIO *content,
                   unsigned char **der, size_t *len)
{
    *der = NULL;
    *len = 0;
    if (global_init() != 0 || !r || !ca_cert || !ca_key || !r->transaction_id[0] || r->sender_nonce_len == 0)
        return -1;
    unsigned char nonce[NONCE_LEN];
    char num[16];
    int flags = CMS_BINARY | CMS_PARTIAL | CMS_NOSMIMECAP | (content ? 0 : CMS_DETACHED);
    /* A read-only empty buffer reports end of input (an empty BIO_s_mem
     * would report "retry" instead). */
    BIO *empty = content ? NULL : BIO_new_mem_buf("", 0);
    CMS_ContentInfo *cms = CMS_sign(NULL, NULL, NULL, NULL, flags);
    CMS_SignerInfo *si = cms ? CMS_add1_signer(cms, ca_cert, ca_key, EVP_sha256(), flags) : NULL;
    int ok = si != NULL && (content || empty) && RAND_bytes(nonce, sizeof nonce) == 1;
    snprintf(num, sizeof num, "%d", SCEP_MSG_CERTREP);
    ok = ok && add_text_attr(si, A_MESSAGE_TYPE, V_ASN1_PRINTABLESTRING, num) == 0;
    snprintf(num, sizeof num, "%d", status);
    ok = ok && add_text_attr(si, A_PKI_STATUS, V_ASN1_PRINTABLESTRING, num) == 0;
    if (status == SCEP_STATUS_FAILURE) {
        snprintf(num, sizeof num, "%d", fail);
        ok = ok && add_text_attr(si, A_FAIL_INFO, V_ASN1_PRINTABLESTRING, num) == 0;
    }
    ok = ok && add_text_attr(si, A_TRANSACTION_ID, r->transaction_id_type, r->transaction_id) == 0;
    ok = ok && CMS_signed_add1_attr_by_OBJ(si, g_oid[A_RECIPIENT_NONCE], V_ASN1_OCTET_STRING, r->sender_nonce,
                                           (int)r->sender_nonce_len) == 1;
    ok = ok && CMS_signed_add1_attr_by_OBJ(si, g_oid[A_SENDER_NONCE], V_ASN1_OCTET_STRING, nonce, sizeof nonce) == 1;
    ok = ok && CMS_final(cms, content ? content : empty, NULL, CMS_BINARY) == 1;
    unsigned char *buf = NULL;
    int n = ok ? i2d_CMS_ContentInfo(cms, &buf) : -1;
    CMS_ContentInfo_free(cms);
    BIO_free(empty);
    ERR_clear_error();
    if (n <= 0)
        return -1;
    *der = buf;
    *len = (size_t)n;
    return 0;
}

int scep_certrep_failure(const scep_request_t *r, X509 *ca_cert, EVP_PKEY *ca_key, scep_fail_t fail,
                         unsigned char **der, size_t *len)
{
    return certrep(r, ca_cert, ca_key, SCEP_STATUS_FAILURE, (int)fail, NULL, der, len);
}

int scep_certrep_success(const scep_request_t *r, X509 *ca_cert, EVP_PKEY *ca_key, X509 *issued, unsigned char **der,
                         size_t *len)
{
    *der = NULL;
    *len = 0;
    if (!r || !r->signer || !issued)
        return -1;
    /* RFC 8894's "AES" capability means AES-128-CBC; a client that chose
     * AES-256 for its request gets AES-256 back. */
    const EVP_CIPHER *cipher = r->cipher_nid == NID_aes_256_cbc ? EVP_aes_256_cbc() : EVP_aes_128_cbc();
    BIO *deg = degenerate_certs(issued);
    STACK_OF(X509) *rcpt = sk_X509_new_null();
    CMS_ContentInfo *env = NULL;
    BIO *env_der = BIO_new(BIO_s_mem());
    int rc = -1;
    if (deg && rcpt && env_der && sk_X509_push(rcpt, r->signer) > 0 &&
        (env = CMS_encrypt(rcpt, deg, cipher, CMS_BINARY)) != NULL && i2d_CMS_bio(env_der, env) == 1)
        rc = certrep(r, ca_cert, ca_key, SCEP_STATUS_SUCCESS, 0, env_der, der, len);
    CMS_ContentInfo_free(env);
    sk_X509_free(rcpt); /* the signer stays owned by r */
    BIO_free(deg);
    BIO_free(env_der);
    ERR_clear_error();
    return rc;
}

/* ---- certificate facts ---------------------------------------------------- */

int scep_cert_serial_hex(X509 *cert, char *out, size_t outlen)
{
    BIGNUM *bn = cert ? ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL) : NULL;
    char *hex = bn ? BN_bn2hex(bn) : NULL;
    int rc = -1;
    if (hex && strlen(hex) < outlen) {
        for (size_t i = 0; hex[i]; i++)
            out[i] = (char)(hex[i] >= 'A' && hex[i] <= 'F' ? hex[i] - 'A' + 'a' : hex[i]);
        out[strlen(hex)] = '\0';
        rc = 0;
    }
    OPENSSL_free(hex);
    BN_free(bn);
    return rc;
}

char *scep_cert_subject(X509 *cert)
{
    BIO *b = BIO_new(BIO_s_mem());
    char *out = NULL;
    if (b && cert && X509_NAME_print_ex(b, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
        char *p = NULL;
        long n = BIO_get_mem_data(b, &p);
        /* The BIO's buffer is not NUL-terminated: copy exactly n bytes. */
        out = n >= 0 ? malloc((size_t)n + 1) : NULL;
        if (out) {
            if (n > 0)
                memcpy(out, p, (size_t)n);
            out[n] = '\0';
        }
    }
    BIO_free(b);
    return out;
}

static int asn1_time_unix(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int scep_cert_validity(X509 *cert, int64_t *not_before, int64_t *not_after)
{
    if (!cert)
        return -1;
    return asn1_time_unix(X509_get0_notBefore(cert), not_before) == 0 &&
                   asn1_time_unix(X509_get0_notAfter(cert), not_after) == 0
               ? 0
               : -1;
}
