/* libFuzzer target: scep_parse_request (src/scep.c), and whatever the
 * server does next with what it parsed (CertRep FAILURE; issuing, renewal
 * signer check and CertRep SUCCESS).
 *
 * Input layout: byte 0 selects the mode, the rest is the payload.
 *   byte 0 even: the payload is a PKIOperation message as received over
 *                HTTP. Exercises the outer PKCS#7 / attribute / signature
 *                handling; a mutated message rarely survives its signature.
 *   byte 0 odd:  the payload is the *plaintext* of the envelope (normally a
 *                PKCS#10 CSR). The harness wraps it the way a client does
 *                (EnvelopedData to the CA with AES-128-CBC, SignedData by a
 *                fixed P-256 signer with valid SCEP attributes; bit 1 of
 *                byte 0 picks RenewalReq instead of PKCSReq), so mutations
 *                reach CSR parsing and the policy checks behind decryption.
 *                With bit 2 also set the payload is the EnvelopedData itself
 *                and is only signed: mutations reach envelope parsing,
 *                recipient matching and the cipher check.
 * The CA is generated once at startup. It is RSA-1024 only to make the
 * per-input RSA operations cheap; the code paths are those of RSA-2048.
 *
 * Seeds: fuzz/seeds/scep (real requests from tests/support/testscep.c and
 * from scepclient, prefixed with 0x00; CSRs prefixed with 0x01 or 0x03;
 * EnvelopedData prefixed with 0x05).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "pki.h"
#include "scep.h"

static X509 *ca, *signer;
static EVP_PKEY *ca_key, *signer_key;
static ASN1_OBJECT *oid_type, *oid_txid, *oid_nonce;

static void cleanup(void)
{
    X509_free(ca);
    X509_free(signer);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(signer_key);
    ASN1_OBJECT_free(oid_type);
    ASN1_OBJECT_free(oid_txid);
    ASN1_OBJECT_free(oid_nonce);
    scep_global_cleanup();
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    ca_key = EVP_PKEY_Q_keygen(NULL, NULL, "RSA", (size_t)1024);
    ca = ca_key ? pki_issue_cert(NULL, ca_key, ca_key, "orchard fuzz SCEP CA", 365, PKI_USAGE_CA, NULL, 0) : NULL;
    signer_key = pki_new_ec_key();
    signer = signer_key ? pki_issue_cert(NULL, signer_key, signer_key, "fuzz requester", 365, PKI_USAGE_CLIENT,
                                         NULL, 0)
                        : NULL;
    oid_type = OBJ_txt2obj("2.16.840.1.113733.1.9.2", 1);
    oid_txid = OBJ_txt2obj("2.16.840.1.113733.1.9.7", 1);
    oid_nonce = OBJ_txt2obj("2.16.840.1.113733.1.9.5", 1);
    if (!ca || !signer || !oid_type || !oid_txid || !oid_nonce) {
        fprintf(stderr, "fuzz_scep: cannot set up the CA and signer\n");
        abort();
    }
    atexit(cleanup);
    return 0;
}

/* A client's PKIOperation around `plain`. NULL if OpenSSL refuses (it
 * never should). */
static unsigned char *wrap(const uint8_t *plain, size_t len, int renewal, int sign_only, size_t *outlen)
{
    static const unsigned char nonce[16] = "fuzz-nonce-0001";
    const char *type = renewal ? "17" : "19";
    STACK_OF(X509) *rcpt = sk_X509_new_null();
    BIO *in = BIO_new_mem_buf(plain, (int)len);
    BIO *env_der = BIO_new(BIO_s_mem());
    CMS_ContentInfo *env = NULL, *sd = NULL;
    unsigned char *out = NULL;
    int ok = rcpt && in && env_der;
    if (sign_only)
        ok = ok && BIO_write(env_der, plain, (int)len) == (int)len;
    else
        ok = ok && sk_X509_push(rcpt, ca) > 0 && (env = CMS_encrypt(rcpt, in, EVP_aes_128_cbc(), CMS_BINARY)) &&
             i2d_CMS_bio(env_der, env) == 1;
    int flags = CMS_PARTIAL | CMS_BINARY | CMS_NOSMIMECAP;
    CMS_SignerInfo *si = NULL;
    ok = ok && (sd = CMS_sign(NULL, NULL, NULL, NULL, flags)) &&
         (si = CMS_add1_signer(sd, signer, signer_key, EVP_sha256(), flags)) &&
         CMS_signed_add1_attr_by_OBJ(si, oid_type, V_ASN1_PRINTABLESTRING, type, 2) &&
         CMS_signed_add1_attr_by_OBJ(si, oid_txid, V_ASN1_PRINTABLESTRING, "fuzz-transaction", 16) &&
         CMS_signed_add1_attr_by_OBJ(si, oid_nonce, V_ASN1_OCTET_STRING, nonce, sizeof nonce) &&
         CMS_final(sd, env_der, NULL, CMS_BINARY) == 1;
    int n = ok ? i2d_CMS_ContentInfo(sd, &out) : -1;
    *outlen = n > 0 ? (size_t)n : 0;
    CMS_ContentInfo_free(sd);
    CMS_ContentInfo_free(env);
    BIO_free(env_der);
    BIO_free(in);
    sk_X509_free(rcpt);
    ERR_clear_error();
    return n > 0 ? out : NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *msg = data + 1;
    size_t len = size - 1;
    unsigned char *wrapped = NULL;
    if (data[0] & 1) {
        if (len == 0 || len > 16384)
            return 0;
        if (!(wrapped = wrap(msg, len, (data[0] & 2) != 0, (data[0] & 4) != 0, &len)))
            return 0;
        msg = wrapped;
    }
    scep_request_t r;
    char why[256];
    int rc = scep_parse_request(msg, len, ca, ca_key, &r, why, sizeof why);
    /* The reason is always a terminated string. */
    if (strlen(why) >= sizeof why)
        abort();
    unsigned char *der = NULL;
    size_t der_len = 0;
    if (rc == SCEP_PARSE_REFUSED) {
        if (scep_certrep_failure(&r, ca, ca_key, r.fail_info, &der, &der_len) != 0)
            abort(); /* whatever was refused can be answered */
        OPENSSL_free(der);
    } else if (rc == SCEP_PARSE_OK) {
        if (!r.csr || !r.cn || !r.signer)
            abort();
        scep_fail_t fail;
        if (r.message_type == SCEP_MSG_RENEWALREQ)
            scep_check_renewal_signer(&r, ca, &fail, why, sizeof why);
        X509 *cert = scep_issue_cert(r.csr, ca, ca_key, 30);
        if (!cert)
            abort(); /* a CSR that passed the policy must be issuable */
        if (scep_certrep_success(&r, ca, ca_key, cert, &der, &der_len) != 0)
            abort();
        char serial[64];
        char *subject = scep_cert_subject(cert);
        if (scep_cert_serial_hex(cert, serial, sizeof serial) != 0 || !subject)
            abort();
        free(subject);
        OPENSSL_free(der);
        X509_free(cert);
    } else if (rc != SCEP_PARSE_MALFORMED) {
        abort();
    }
    scep_request_free(&r);
    OPENSSL_free(wrapped);
    return 0;
}
