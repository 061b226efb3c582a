/* Keys and certificates: orchard's CA, its TLS server certificate, and
 * issuing certificates (device identities in tests, SCEP later).
 * Everything here is OpenSSL 3; no private key material is ever logged. */
#ifndef ORCHARD_PKI_H
#define ORCHARD_PKI_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

typedef enum { PKI_USAGE_CA, PKI_USAGE_SERVER, PKI_USAGE_CLIENT } pki_usage_t;

/* Creates, if missing, in data_dir: ca.key + ca.pem (RSA-2048 self-signed
 * root, 10 years) and tls.key + tls.pem (ECDSA P-256, signed by the CA, 825
 * days, SANs: `host` plus localhost, 127.0.0.1 and ::1). Existing files are
 * left alone. Keys are written mode 0600. Returns 0, or -1 with *err (heap). */
int pki_bootstrap(const char *data_dir, const char *host, char **err);

EVP_PKEY *pki_new_rsa_key(int bits);
EVP_PKEY *pki_new_ec_key(void); /* P-256 */

/* Issues a certificate for subject_key signed by ca/ca_key (ca NULL: self-
 * signed with ca_key == subject_key). SANs are DNS names or IP literals.
 * Random 128-bit serial; notBefore one hour in the past. */
X509 *pki_issue_cert(X509 *ca, EVP_PKEY *ca_key, EVP_PKEY *subject_key, const char *common_name,
                     int days, pki_usage_t usage, const char *const *sans, size_t nsans);

/* Certificate-building helpers shared by the issuers (pki.c, scep.c):
 * an extension from its OpenSSL config text, and a random positive
 * 128-bit serial. 0 or -1. */
int pki_add_ext(X509 *x, X509V3_CTX *ctx, int nid, const char *value);
int pki_set_random_serial(X509 *x);

X509 *pki_load_cert(const char *path);
STACK_OF(X509) *pki_load_cert_bundle(const char *path); /* all PEM certs in a file */
EVP_PKEY *pki_load_key(const char *path);
int pki_write_cert(const char *path, X509 *cert);
int pki_write_key(const char *path, EVP_PKEY *key); /* 0600, unencrypted PEM */

/* Lower-case hex SHA-256 of the DER encoding; out must hold 65 bytes. */
int pki_cert_sha256_hex(X509 *cert, char out[65]);

#endif
