/* Test PKI helpers: device identities, throw-away CAs, Mdm-Signature values
 * and proxy client-certificate header values, as real clients produce them.
 * Used by the tests, the device simulator and the benchmarks. Every function
 * returns 0 / a heap value on success and -1 / NULL on failure. */
#ifndef ORCHARD_TESTPKI_H
#define ORCHARD_TESTPKI_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

/* New P-256 key and a client certificate (CN = cn, 1 year) signed by the CA
 * in ca_cert_path/ca_key_path (PEM). Caller frees *key_out and *cert_out. */
int testpki_issue_device_identity(const char *ca_cert_path, const char *ca_key_path, const char *cn,
                                  EVP_PKEY **key_out, X509 **cert_out);

/* Like testpki_issue_device_identity, but the certificate expired yesterday
 * (valid from 30 days ago until 1 day ago). */
int testpki_issue_expired_identity(const char *ca_cert_path, const char *ca_key_path, const char *cn,
                                   EVP_PKEY **key_out, X509 **cert_out);

/* Writes DIR/NAME.pem and DIR/NAME.key: a separate self-signed CA (P-256,
 * CN "NAME"), e.g. an untrusted CA for negative tests. */
int testpki_make_ca(const char *dir, const char *name);

/* An MDM push certificate as the Apple Push Certificates Portal issues it:
 * subject UID = topic (and CN "APSP:<topic>"), TLS-client usage, signed by
 * the CA in ca_cert_path/ca_key_path; expired = valid until yesterday.
 * Writes cert_out and key_out (PEM). */
int testpki_issue_push_cert(const char *ca_cert_path, const char *ca_key_path, const char *topic, int expired,
                            const char *cert_out, const char *key_out);

/* Base64 of a detached CMS SignedData over body, signed by cert/key with the
 * signer certificate included: what a device sends as Mdm-Signature. */
char *testpki_mdm_signature(X509 *cert, EVP_PKEY *key, const void *body, size_t len);

/* Same, but the content is embedded (not detached): not a valid
 * Mdm-Signature; for negative tests. */
char *testpki_mdm_signature_attached(X509 *cert, EVP_PKEY *key, const void *body, size_t len);

/* Proxy header encodings of cert: PEM text; URL-escaped PEM as nginx's
 * $ssl_client_escaped_cert (all but A-Z a-z 0-9 - . _ ~ as %XX); RFC 9440
 * ":base64-DER:". Heap strings. */
char *testpki_cert_pem(X509 *cert);
char *testpki_cert_escaped_pem(X509 *cert);
char *testpki_cert_rfc9440(X509 *cert);

#endif
