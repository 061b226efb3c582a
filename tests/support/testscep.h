/* SCEP client for tests, benchmarks and the device simulator: builds
 * PKIOperation requests the way a device does (key pair, PKCS#10 CSR with
 * challengePassword, self-signed signer certificate, EnvelopedData to the
 * CA, SignedData with messageType/transactionID/senderNonce), sends them over
 * HTTP(S) with libcurl and opens the CertRep (signature by the CA, nonces,
 * decryption of the issued certificate).
 *
 * Also exposes the two halves without HTTP (testscep_build_request,
 * testscep_open_response) for unit tests and benchmarks. Every function
 * returns 0 / a heap value on success and -1 / NULL on failure; error text
 * goes to err when given. */
#ifndef ORCHARD_TESTSCEP_H
#define ORCHARD_TESTSCEP_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

typedef enum {
    TESTSCEP_KEY_RSA, /* rsa_bits (default 2048), as devices do */
    TESTSCEP_KEY_P256,
    TESTSCEP_KEY_P384
} testscep_key_t;

typedef struct {
    /* What to ask for. */
    const char *cn;        /* subject CN; NULL: the subject has only O= */
    const X509_NAME *subject; /* whole subject instead (borrowed), e.g. for renewals */
    const char *challenge; /* challengePassword; NULL: none */
    testscep_key_t key_type;
    int rsa_bits;  /* 0 = 2048; any size is allowed (for negative tests) */
    EVP_PKEY *key; /* use this key for the CSR instead of generating one (borrowed) */
    /* How to ask. */
    int message_type;        /* 0 = PKCSReq (19); 17 = RenewalReq; others for negative tests */
    X509 *signer_cert;       /* signer instead of a self-signed certificate (RenewalReq: the */
    EVP_PKEY *signer_key;    /* current identity); both borrowed */
    const char *cipher;      /* envelope cipher name; NULL = "AES-128-CBC"; "DES-CBC" works too */
    const char *digest;      /* signature digest name; NULL = "SHA256" */
    int use_get;             /* PKIOperation over GET (message=base64) instead of POST */
} testscep_opts_t;

/* A request built by testscep_build_request, and what to check the answer
 * against. */
typedef struct {
    unsigned char *der; /* the PKIOperation message */
    size_t der_len;
    EVP_PKEY *key;      /* the CSR's key (new reference) */
    X509 *signer_cert;  /* what signed the request (new reference) */
    EVP_PKEY *signer_key;
    char transaction_id[65];
    unsigned char nonce[16];
} testscep_request_t;

/* What the server answered. */
typedef struct {
    long http_status;      /* -1: no HTTP answer */
    int pki_status;        /* 0 SUCCESS, 2 FAILURE, 3 PENDING; -1 if not a valid CertRep */
    int fail_info;         /* with FAILURE; -1 otherwise */
    X509 *cert;            /* issued certificate (SUCCESS) */
    EVP_PKEY *key;         /* its private key (new reference) */
    char body_text[256];   /* start of a non-CertRep body (HTTP errors), NUL-terminated */
    char err[256];         /* why something failed on our side */
} testscep_result_t;

int testscep_build_request(const testscep_opts_t *o, X509 *ca_cert, testscep_request_t *req, char *err,
                           size_t errlen);
void testscep_request_free(testscep_request_t *req);

/* Verifies a CertRep against the CA (signature, transactionID, recipientNonce)
 * and, on SUCCESS, decrypts the certificate with the request's signer key and
 * checks it carries the request's public key. 0 if the CertRep is valid
 * (whatever its pkiStatus); fills res->pki_status/fail_info/cert. */
int testscep_open_response(const unsigned char *der, size_t len, X509 *ca_cert, const testscep_request_t *req,
                           testscep_result_t *res, char *err, size_t errlen);

/* The full exchange against base_url (e.g. "https://127.0.0.1:8443"; /scep
 * is appended): GetCACert, build, PKIOperation, open. server_ca_pem: PEM file
 * to trust for HTTPS (NULL for plain HTTP). 0 when a valid CertRep came back
 * (check res->pki_status), -1 otherwise (res->http_status, res->err). */
int testscep_run(const char *base_url, const char *server_ca_pem, const testscep_opts_t *o, testscep_result_t *res);
void testscep_result_free(testscep_result_t *res);

/* Enrolls like a device: RSA-2048 key, PKCSReq with `challenge`, CN `cn`.
 * 0 with *key_out / *cert_out (caller frees) when a certificate was issued;
 * -1 and err otherwise. */
int testscep_enroll(const char *base_url, const char *server_ca_pem, const char *challenge, const char *cn,
                    EVP_PKEY **key_out, X509 **cert_out, char *err, size_t errlen);

/* RenewalReq signed by the current identity (cur_key, cur_cert) for a new
 * RSA-2048 key and the same subject CN. Outputs as testscep_enroll. */
int testscep_renew(const char *base_url, const char *server_ca_pem, EVP_PKEY *cur_key, X509 *cur_cert,
                   EVP_PKEY **key_out, X509 **cert_out, char *err, size_t errlen);

/* Plain GET of /scep?operation=OP (GetCACaps, GetCACert). Heap body
 * (NUL-terminated after *len bytes) and its Content-Type (copied into ct). */
unsigned char *testscep_get(const char *base_url, const char *server_ca_pem, const char *operation, long *status,
                            size_t *len, char *ct, size_t ctlen);
/* Raw POST of a body to /scep?operation=PKIOperation. */
unsigned char *testscep_post(const char *base_url, const char *server_ca_pem, const void *body, size_t body_len,
                             long *status, size_t *len);

#endif
