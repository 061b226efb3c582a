/* SCEP (RFC 8894) message core: reading a PKIOperation request, issuing the
 * certificate it asks for, and building the CertRep answer.
 *
 * No HTTP and no storage here. The caller (scep_http.c) runs two phases:
 *
 *   scep_parse_request()      decode, verify the signature, decrypt with the
 *                             CA key, apply the CSR policy
 *   -- caller decides --      challenge (static or one-time), renewal signer
 *                             (scep_check_renewal_signer + its own records)
 *   scep_issue_cert()         sign the certificate (CSR subject and key)
 *   scep_certrep_success() /  the signed answer; on success the certificate
 *   scep_certrep_failure()    travels encrypted to the requester's signer
 *
 * Everything is OpenSSL 3 CMS. Functions are thread-safe; the CA key and
 * certificate are only read.
 */
#ifndef ORCHARD_SCEP_H
#define ORCHARD_SCEP_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* messageType values (RFC 8894 s3.2.1.2). */
#define SCEP_MSG_CERTREP 3
#define SCEP_MSG_RENEWALREQ 17
#define SCEP_MSG_UPDATEREQ 18
#define SCEP_MSG_PKCSREQ 19
#define SCEP_MSG_CERTPOLL 20 /* GetCertInitial */
#define SCEP_MSG_GETCERT 21
#define SCEP_MSG_GETCRL 22

/* pkiStatus values. */
#define SCEP_STATUS_SUCCESS 0
#define SCEP_STATUS_FAILURE 2
#define SCEP_STATUS_PENDING 3

/* failInfo values. */
typedef enum {
    SCEP_FAIL_BAD_ALG = 0,           /* unrecognized or unsupported algorithm */
    SCEP_FAIL_BAD_MESSAGE_CHECK = 1, /* integrity check (signature, decryption) failed */
    SCEP_FAIL_BAD_REQUEST = 2,       /* transaction not permitted or supported */
    SCEP_FAIL_BAD_TIME = 3,          /* time outside the permitted window */
    SCEP_FAIL_BAD_CERT_ID = 4        /* no certificate matches */
} scep_fail_t;

/* scep_parse_request results. */
#define SCEP_PARSE_OK 0        /* all checks passed; csr is set */
#define SCEP_PARSE_REFUSED 1   /* a SCEP message, but refused: answer with
                                  scep_certrep_failure(fail_info) */
#define SCEP_PARSE_MALFORMED (-1) /* not a SCEP message we could answer (HTTP 400) */

/* Requests larger than this are not parsed at all. */
#define SCEP_MAX_MESSAGE (256 * 1024)
#define SCEP_MAX_TRANSACTION_ID 128
#define SCEP_MAX_NONCE 64

typedef struct {
    int message_type;
    /* transactionID as received (printable ASCII) and its ASN.1 string type,
     * so the answer echoes it byte for byte. */
    char transaction_id[SCEP_MAX_TRANSACTION_ID + 1];
    int transaction_id_type;
    unsigned char sender_nonce[SCEP_MAX_NONCE];
    size_t sender_nonce_len;
    X509 *signer;   /* certificate that signed the request (owned) */
    int digest_nid; /* digest of the request's signature */
    int cipher_nid; /* content cipher of the request's envelope (NID_undef if not reached) */
    /* Set only with SCEP_PARSE_OK: */
    X509_REQ *csr;   /* the PKCS#10 request (owned), policy already checked */
    char *cn;        /* its subject CN, UTF-8 */
    char *challenge; /* its challengePassword, UTF-8; NULL if absent (wiped on free) */
    /* Set with SCEP_PARSE_REFUSED: */
    scep_fail_t fail_info;
} scep_request_t;

/* Parses a PKIOperation message (DER CMS SignedData). ca_cert/ca_key decrypt
 * the envelope. Returns SCEP_PARSE_*; on anything but OK `why` says what was
 * wrong (safe to log: never the challenge). Always call scep_request_free. */
int scep_parse_request(const unsigned char *der, size_t len, X509 *ca_cert, EVP_PKEY *ca_key, scep_request_t *out,
                       char *why, size_t whylen);
void scep_request_free(scep_request_t *r);

/* RenewalReq: the signer must be a current client certificate of ca_cert
 * and the CSR must ask for the same subject (a renewal is not a way to a
 * certificate naming another device). 0 if so; otherwise -1 with *fail and
 * `why`. Whether orchard issued it and whether it is revoked is the
 * caller's check (its records). */
int scep_check_renewal_signer(const scep_request_t *r, X509 *ca_cert, scep_fail_t *fail, char *why, size_t whylen);

/* Issues a device identity certificate for the CSR's subject and public key:
 * random 128-bit serial, notBefore one hour back (clock skew), `days` of
 * validity (never past the CA's own notAfter), client-auth EKU,
 * digitalSignature (+keyEncipherment for RSA keys), SHA-256. Requested
 * extensions are ignored. NULL on failure. */
X509 *scep_issue_cert(X509_REQ *csr, X509 *ca_cert, EVP_PKEY *ca_key, int days);

/* CertRep answers, DER in *der (OPENSSL_free). Success: the certificate in a
 * degenerate certs-only SignedData, encrypted to the request's signer
 * certificate (AES-256-CBC if the request used AES-256, else AES-128-CBC).
 * Failure: no content, pkiStatus FAILURE and failInfo. Both are signed by
 * the CA (SHA-256) and carry transactionID, recipientNonce = the request's
 * senderNonce and a fresh senderNonce. 0 or -1. */
int scep_certrep_success(const scep_request_t *r, X509 *ca_cert, EVP_PKEY *ca_key, X509 *issued, unsigned char **der,
                         size_t *len);
int scep_certrep_failure(const scep_request_t *r, X509 *ca_cert, EVP_PKEY *ca_key, scep_fail_t fail,
                         unsigned char **der, size_t *len);

/* Certificate facts for the issued-certificate record: lower-case hex serial
 * (two digits per byte), RFC 2253 subject, validity as Unix seconds. */
int scep_cert_serial_hex(X509 *cert, char *out, size_t outlen);
char *scep_cert_subject(X509 *cert); /* heap */
int scep_cert_validity(X509 *cert, int64_t *not_before, int64_t *not_after);

const char *scep_message_type_name(int type); /* "PKCSReq", ..., "unknown" */
const char *scep_fail_name(scep_fail_t f);    /* "badAlg", ... */

/* Frees the process-wide state (OIDs, the legacy-cipher context). Optional:
 * for leak checkers at exit; no SCEP call may run concurrently or after. */
void scep_global_cleanup(void);

#endif
