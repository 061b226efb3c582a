/* Which device is talking: the identity certificate of a device request and
 * its binding to an enrollment.
 *
 * Rules (docs/ARCHITECTURE.md, "Identity"):
 *  - The certificate comes from the Mdm-Signature header when present (it
 *    covers the body), else from the configured proxy header, else from mTLS.
 *    It must chain to --client-ca.
 *  - Authenticate binds the certificate (SHA-256 of its DER) to the UDID.
 *  - Every other request must present the certificate bound to its UDID.
 */
#ifndef ORCHARD_MDM_AUTH_H
#define ORCHARD_MDM_AUTH_H

#include <stddef.h>
#include <openssl/x509.h>

#include "app.h"

typedef struct {
    X509 *cert;        /* owned */
    char sha256[65];
    const char *source; /* "mdm-signature", "header", "mtls" */
} mdm_identity_t;

/* 200 with a verified identity; otherwise the status to answer with and the
 * reason: 401 (no, untrusted, revoked certificate) or 503 (storage failed:
 * the device must retry, not unenroll). */
int mdm_identify(const worker_t *w, const http_request_t *req, mdm_identity_t *out, char *err, size_t errlen);
void mdm_identity_clear(mdm_identity_t *id);

/* Loads the device-channel enrollment `device_id` into *dev and checks that
 * it is bound to `id`. Returns 200 when it is, 401 (unknown device or other
 * certificate) or 503 (storage failure) with the reason in err. */
int mdm_authorize(worker_t *w, const mdm_identity_t *id, const char *device_id, enrollment_t *dev, char *err,
                  size_t errlen);

/* Checks that the channel a message speaks for is managed: the device
 * enrollment `dev` (from mdm_authorize) is active and, for a user channel
 * (m->id), so is that channel. 0 if so, else the HTTP status to refuse
 * with (reason in why). When given, *last_seen / *silent receive the
 * channel's last_seen_at and whether the inactivity sweep flagged it. */
int mdm_channel_active(worker_t *w, const mdm_message_t *m, const enrollment_t *dev, int64_t *last_seen,
                       int *silent, char *why, size_t len);

#endif
