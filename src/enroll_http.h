/* Enrollment profiles for the running server: shared by the OTA endpoint
 * (enroll_http.c) and the renewal API (admin_enroll.c). Everything that
 * needs app state or storage lives here; profile.c stays pure. */
#ifndef ORCHARD_ENROLL_HTTP_H
#define ORCHARD_ENROLL_HTTP_H

#include <stddef.h>

#include "app.h"

/* One-time SCEP challenges expire after this long. */
#define ENROLL_CHALLENGE_TTL 3600

/* Creates and stores a one-time SCEP challenge (hex, 32 characters + NUL in
 * out), bound to `udid` when not NULL. 0, or an HTTP status (503) with a
 * reason. The challenge itself is never logged. */
int enroll_challenge_new(worker_t *w, const char *udid, char out[65], char *err, size_t errlen);

/* A signed enrollment profile for this server.
 *   udid != NULL: a device we know (MachineInfo, renewal): a one-time
 *                 challenge bound to it and SCEP subject CN = udid, so the
 *                 issued certificate names the device (renewal rule).
 *   udid == NULL: the static challenge if configured, else an unbound
 *                 one-time challenge; a random CN.
 *   pkcs12:       issue a PKCS#12 identity from the CA instead of SCEP
 *                 (recorded like a SCEP certificate).
 * *out is OPENSSL_malloc'ed (OPENSSL_free). Returns 0, or the HTTP status to
 * answer (503 when the server lacks what a profile needs) with a reason. */
int enroll_profile_make(worker_t *w, const char *udid, int pkcs12, unsigned char **out, size_t *outlen, char *err,
                        size_t errlen);

#endif
