/* APNs MDM push certificate tooling (Apple's "MDM Vendor CSR Signing
 * Overview"):
 *
 *   1. customer: a private key and a CSR            (pushcert_csr_*)
 *   2. vendor:   sign the CSR with the MDM signing   (pushcert_sign_*)
 *                certificate, producing the base64 PushCertWebRequest plist
 *                that the customer uploads to the Apple Push Certificates
 *                Portal
 *   3. customer: import the certificate Apple issues (pushcert_import)
 *                into the data directory (push.pem + push.key), where
 *                `orchard serve` reads the push topic from it
 *
 * Every function returns 0 on success and -1 on failure with *err set to a
 * heap string naming the file and the problem (err may be NULL). Passwords
 * and private keys never appear in error messages. */
#ifndef ORCHARD_PUSHCERT_H
#define ORCHARD_PUSHCERT_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

/* Apple issues MDM push certificates whose subject UID is the topic
 * "com.apple.mgmt.External.<UUID>"; devices only accept this prefix. */
#define PUSHCERT_TOPIC_PREFIX "com.apple.mgmt."
/* Warn when the certificate expires within this many days. */
#define PUSHCERT_WARN_DAYS 30
/* Largest input file we read (certificates, keys, CSRs, PKCS#12). */
#define PUSHCERT_MAX_FILE (1024 * 1024)

/* ---- 1. customer key and CSR --------------------------------------------- */

#define PUSHCERT_DEFAULT_CN "orchard MDM push"
#define PUSHCERT_RSA_BITS 2048

/* A new RSA-2048 key and a CSR for it signed with SHA-256. Subject: CN = cn
 * (PUSHCERT_DEFAULT_CN when NULL or empty) and O = org when given. */
int pushcert_csr_generate(const char *cn, const char *org, EVP_PKEY **key_out, X509_REQ **csr_out, char **err);

/* Generates as above and writes key_path (PEM, mode 0600) and csr_path
 * (PEM). An existing key_path is never replaced unless `force`: the key is
 * what the certificate Apple issues for this CSR will be used with. */
int pushcert_csr_files(const char *key_path, const char *csr_path, const char *cn, const char *org, int force,
                       char **err);

/* ---- 2. vendor signing ----------------------------------------------------- */

typedef enum {
    PUSHCERT_SIG_SHA1 = 0, /* "SHA1WithRSA", what Apple's documentation specifies */
    PUSHCERT_SIG_SHA256 = 1
} pushcert_sig_t;

typedef struct {
    const char *csr_path;         /* customer CSR, PEM or DER */
    const char *vendor_cert_path; /* MDM vendor (signing) certificate, PEM or DER */
    const char *vendor_key_path;  /* its private key, PEM (encrypted: needs password) */
    const char *vendor_p12_path;  /* alternative to cert + key */
    const char *password;         /* PKCS#12 or encrypted-PEM password, may be NULL */
    const char *const *chain_paths; /* WWDR intermediate, Apple root: PEM/DER, any order */
    size_t nchain;
    pushcert_sig_t sig;
} pushcert_sign_opts_t;

typedef struct {
    char *request_b64;   /* the file to upload: base64 of the plist (heap) */
    size_t request_len;
    int chain_len;       /* certificates in PushCertCertificateChain */
    int chain_complete;  /* 1 if the chain ends at a self-signed root */
} pushcert_sign_result_t;

/* The PushCertWebRequest, built from the CSR's exact DER bytes, the vendor
 * key and the chain (leaf first: vendor certificate, intermediate(s), root).
 * Returns the plist XML (heap, NUL-terminated, *xml_len without the NUL). */
char *pushcert_request_plist(const unsigned char *csr_der, size_t csr_len, EVP_PKEY *vendor_key,
                             STACK_OF(X509) *chain, pushcert_sig_t sig, size_t *xml_len, char **err);

/* Loads everything named in opts, checks it (CSR self-signature, vendor key
 * matches the vendor certificate, chain links), orders the chain and builds
 * the base64 request. res->request_b64 must be freed by the caller. */
int pushcert_sign(const pushcert_sign_opts_t *opts, pushcert_sign_result_t *res, char **err);
void pushcert_sign_result_clear(pushcert_sign_result_t *res);

/* ---- 3. import and inspection ------------------------------------------- */

typedef struct {
    char *topic;       /* subject UID */
    char *subject;     /* one-line RFC 2253 form */
    char *not_after;   /* "YYYY-MM-DD HH:MM:SS UTC" */
    int64_t not_after_unix;
    long days_left;    /* whole days until notAfter; negative once expired */
    int expired;
    int expiring;      /* expired, or expires within PUSHCERT_WARN_DAYS days */
    int replaced;      /* import: an existing push.pem was replaced */
} pushcert_info_t;

void pushcert_info_clear(pushcert_info_t *info);

/* Reads the topic, subject and validity of a push certificate. Fails if the
 * subject has no UID or the UID does not start with PUSHCERT_TOPIC_PREFIX.
 * `now` is Unix seconds (tests pass a fixed time; callers util_now()). */
int pushcert_inspect(X509 *cert, int64_t now, pushcert_info_t *info, char **err);

typedef struct {
    const char *cert_path; /* PEM or DER certificate from Apple ... */
    const char *key_path;  /* ... with the key made by `pushcert csr` */
    const char *p12_path;  /* or a PKCS#12 with both */
    const char *password;  /* PKCS#12 or encrypted-key password (NULL: none) */
    const char *data_dir;
    int force;             /* replace a certificate with a different topic */
} pushcert_import_opts_t;

/* Checks the key matches the certificate and the topic, then writes
 * DATA_DIR/push.pem and DATA_DIR/push.key (0600). Refuses to replace an
 * existing push.pem whose topic differs unless opts->force. */
int pushcert_import(const pushcert_import_opts_t *opts, pushcert_info_t *info, char **err);

/* Inspects DATA_DIR/push.pem. */
int pushcert_show(const char *data_dir, pushcert_info_t *info, char **err);

#endif
