/* Device identity: which certificate a request comes from, and whether that
 * certificate chains to the configured device-identity CA.
 *
 * Three sources, each verified against the same trust store:
 *   - the TLS client certificate (mTLS, verified here, not in the handshake);
 *   - a TLS-terminating proxy's header carrying the client certificate, either
 *     URL-escaped PEM (nginx $ssl_client_escaped_cert) or RFC 9440
 *     `Client-Cert: :BASE64-DER:`; honoured only when configured;
 *   - the Mdm-Signature header: base64 of a detached CMS SignedData over the
 *     exact request body; the signer certificate is the identity.
 */
#ifndef ORCHARD_IDENTITY_H
#define ORCHARD_IDENTITY_H

#include <stddef.h>
#include <openssl/x509.h>

typedef struct identity_verifier identity_verifier_t;

/* Loads the CA bundle (PEM, one or more certificates) used to verify device
 * certificates. NULL with *err (heap) on failure. Thread-safe once built. */
identity_verifier_t *identity_verifier_new(const char *ca_bundle_path, char **err);
void identity_verifier_free(identity_verifier_t *v);

/* Verifies `leaf` (with optional untrusted intermediates) against the CA
 * bundle for TLS client use at the current time. 0 if trusted, else -1 and
 * a reason in err ("certificate has expired", "unable to get local issuer
 * certificate", ...). */
int identity_verify_cert(const identity_verifier_t *v, X509 *leaf, STACK_OF(X509) *untrusted,
                         char *err, size_t errlen);

/* Checks an Mdm-Signature header value against `body`. On success returns
 * the signer certificate (caller frees with X509_free) after verifying both
 * the signature over the body and the signer's chain. NULL and a reason on
 * any failure (bad base64, not CMS, not detached SignedData, digest mismatch,
 * untrusted signer). */
X509 *identity_from_mdm_signature(const identity_verifier_t *v, const char *header_b64,
                                  const void *body, size_t body_len, char *err, size_t errlen);

/* Decodes a proxy's client-certificate header value (URL-escaped PEM, plain
 * PEM, or RFC 9440 :base64-DER:). Does NOT verify trust: pass the result to
 * identity_verify_cert. NULL and a reason on malformed input. */
X509 *identity_from_header(const char *value, char *err, size_t errlen);

#endif
