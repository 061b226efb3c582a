/* A simulator of Apple's device enrollment services (DEP/ADE) for tests and
 * benchmarks: HTTPS (libevent evhttp + OpenSSL) on a loopback port, served by
 * one thread inside the test process, with its own CA (ca.pem in the given
 * directory, for orchard's --ade-ca).
 *
 * Behaviour, as Apple documents it: GET /session verifies the OAuth 1.0a
 * HMAC-SHA1 signature (consumer key, token, nonce not reused, timestamp
 * within 10 minutes) and answers {"auth_session_token"}; every other call
 * needs a live X-ADM-Auth-Session (else 401 UNAUTHORIZED) and may rotate it
 * (a new token in the answer's X-ADM-Auth-Session, the old one dead);
 * fetch (POST /server/devices) pages the current devices with cursor, limit
 * and more_to_follow, EXHAUSTED_CURSOR once done; sync (POST /devices/sync)
 * replays added/modified/deleted events since a cursor (CURSOR_REQUIRED,
 * INVALID_CURSOR, EXPIRED_CURSOR); device details, disown, account; define,
 * assign, fetch and remove profile with their error bodies. Tests add,
 * modify and delete devices, inject errors (any status/body, 429 with
 * Retry-After, 5xx, garbage JSON), expire sessions and cursors, switch on
 * T_C_NOT_SIGNED, and read what orchard sent. */
#ifndef ORCHARD_DEPSIM_H
#define ORCHARD_DEPSIM_H

#include <stddef.h>
#include <stdint.h>

typedef struct depsim depsim_t;

/* The credentials the simulator accepts (and puts into token files). */
#define DEPSIM_CONSUMER_KEY "CK_0123456789abcdef0123456789abcdef"
#define DEPSIM_CONSUMER_SECRET "CS_secret/with+reserved=chars&more"
#define DEPSIM_ACCESS_TOKEN "AT_0123456789abcdef0123456789abcdef0123456789"
#define DEPSIM_ACCESS_SECRET "AS_another~secret%value"

/* Starts it; dir receives ca.pem (and the simulator's key material). */
depsim_t *depsim_start(const char *dir);
void depsim_stop(depsim_t *d);
const char *depsim_url(const depsim_t *d);     /* https://127.0.0.1:PORT */
const char *depsim_ca_path(const depsim_t *d);

/* An S/MIME token file (Apple's format) encrypted to the certificate in
 * cert_pem_path, with the simulator's credentials (consumer_key overrides
 * the key when not NULL) and the given expiry. Heap; NULL on failure. */
unsigned char *depsim_token_file(const char *cert_pem_path, const char *consumer_key, int64_t expiry, size_t *len);

/* Devices (op_date = now + a counter, so events are ordered). */
void depsim_add_device(depsim_t *d, const char *serial, const char *model);
void depsim_add_devices(depsim_t *d, const char *prefix, int n); /* serials PREFIX000001... */
void depsim_modify_device(depsim_t *d, const char *serial, const char *color);
void depsim_delete_device(depsim_t *d, const char *serial);
/* Appends the latest event of serial again (Apple's duplicates). */
void depsim_repeat_event(depsim_t *d, const char *serial);

/* Fault injection. The next `count` requests whose path starts with
 * path_prefix get status and body (retry_after >= 0 adds Retry-After). */
void depsim_fail(depsim_t *d, const char *path_prefix, int status, const char *body, int retry_after, int count);
/* The next answer to path_prefix is 200 with broken JSON. */
void depsim_garbage(depsim_t *d, const char *path_prefix);
void depsim_expire_sessions(depsim_t *d);   /* every session token dies: next call 401 */
void depsim_rotate_every(depsim_t *d, int n); /* every n-th answer carries a new session (0 = never) */
void depsim_expire_cursors(depsim_t *d);    /* every cursor issued so far: EXPIRED_CURSOR */
void depsim_set_terms(depsim_t *d, int unsigned_terms); /* 1: 403 T_C_NOT_SIGNED on every call */
void depsim_set_limit_cap(depsim_t *d, int cap);         /* largest page (Apple: 1000) */

/* What happened. */
int depsim_requests(depsim_t *d, const char *path);   /* answered requests to exactly this path */
int depsim_sessions(depsim_t *d);                     /* session tokens issued */
int depsim_header_violations(depsim_t *d);            /* calls lacking a required header */
int depsim_oauth_failures(depsim_t *d);               /* /session requests refused */
/* The profile uuid assigned to serial at the simulator ("" if none); 0 if
 * the serial is known. */
int depsim_device_profile(depsim_t *d, const char *serial, char *uuid, size_t len);
/* The JSON text of a defined profile (heap) or NULL. */
char *depsim_profile_json(depsim_t *d, const char *uuid);

#endif
