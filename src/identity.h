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
#include <stdint.h>
#include <openssl/x509.h>

typedef struct identity_verifier identity_verifier_t;

/* Loads the CA bundle (PEM, one or more certificates) used to verify device
 * certificates. NULL with *err (heap) on failure. Thread-safe once built. */
identity_verifier_t *identity_verifier_new(const char *ca_bundle_path, char **err);
void identity_verifier_free(identity_verifier_t *v);
/* Accept any extended key usage in the leaf instead of TLS-client use: for
 * MachineInfo signers, whose certificates Apple does not issue for TLS.
 * Call before the verifier is shared between threads. */
void identity_verifier_any_purpose(identity_verifier_t *v);

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
 * untrusted signer). The signature over the body is checked on every call.
 * The certificate returned may be shared with the verifier's cache (see
 * below) and with other threads: treat it as read-only. */
X509 *identity_from_mdm_signature(const identity_verifier_t *v, const char *header_b64,
                                  const void *body, size_t body_len, char *err, size_t errlen);

/* Signer-chain cache (Mdm-Signature only; identity_verify_cert never uses
 * it). A device signs every request with the same certificate, and parsing
 * that certificate (OpenSSL 3.0 decodes its public key through the provider
 * decoders) plus verifying its chain costs more than the signature itself.
 * After a chain verifies, the parsed certificates are kept, keyed by the
 * SHA-256 of the exact certificate bytes the signature carried (signer plus
 * any intermediates), until the earlier of 300 s later and the chain's first
 * notAfter. Failures are never cached. At most 16,384 entries per verifier
 * (about 5.3 KiB each with a P-256 device certificate: some 90 MB when
 * full); the least recently used entry of a full bucket is evicted.
 *
 * The trust store itself never changes, so the only staleness is
 * revocation: whatever revokes a device certificate (none yet) must call
 * identity_verifier_forget_all(); otherwise a revoked certificate stays
 * accepted for at most 300 s. Thread-safe. */
void identity_verifier_forget_all(const identity_verifier_t *v);

typedef struct {
    uint64_t hits;   /* signer chains answered from the cache */
    uint64_t misses; /* signer chains verified in full (and then cached if trusted) */
    size_t entries;  /* entries held now */
} identity_cache_stats_t;

/* Counters since identity_verifier_new (zeros for NULL). */
void identity_verifier_cache_stats(const identity_verifier_t *v, identity_cache_stats_t *out);

/* Decodes a proxy's client-certificate header value (URL-escaped PEM, plain
 * PEM, or RFC 9440 :base64-DER:). Does NOT verify trust: pass the result to
 * identity_verify_cert. NULL and a reason on malformed input. */
X509 *identity_from_header(const char *value, char *err, size_t errlen);

#endif
