/* A client of Apple's device enrollment web services
 * (https://mdmenrollment.apple.com): the OAuth-signed /session request for
 * an X-ADM-Auth-Session, that header on every call (replaced whenever a
 * response carries a new one), one new session after a 401, the required
 * headers, and bounded retries with backoff for 429, 5xx and network
 * failures (Retry-After honoured). One client per thread at a time. */
#ifndef ORCHARD_ADE_CLIENT_H
#define ORCHARD_ADE_CLIENT_H

#include <stddef.h>

#include <jansson.h>

#include "ade_token.h"

typedef struct {
    const char *base_url;   /* default https://mdmenrollment.apple.com */
    const char *ca_file;    /* NULL: the system store */
    const char *user_agent; /* default "orchard/1" */
    long timeout_s;         /* per request, default 60 */
    int attempts;           /* per call for 429/5xx/network, default 4 */
    long backoff_ms;        /* first wait, doubled each time, default 1000 */
    long max_wait_s;        /* cap on one wait (also on Retry-After), default 60 */
} ade_client_opts_t;

typedef enum {
    ADE_OK = 0,
    ADE_E_NETWORK,   /* no answer (after retries) */
    ADE_E_BUSY,      /* 429 / 5xx after retries */
    ADE_E_AUTH,      /* credentials refused, or 401 again right after a new session */
    ADE_E_TERMS,     /* 403 T_C_NOT_SIGNED */
    ADE_E_DENIED,    /* 403 ACCESS_DENIED / FORBIDDEN */
    ADE_E_CURSOR,    /* 400 INVALID_CURSOR, EXHAUSTED_CURSOR, EXPIRED_CURSOR, CURSOR_REQUIRED */
    ADE_E_NOTFOUND,  /* 404 (PROFILE_NOT_FOUND) */
    ADE_E_REQUEST,   /* another 4xx: Apple refused what was asked (code says why) */
    ADE_E_MALFORMED, /* an answer that is not the JSON object expected */
    ADE_E_INTERNAL   /* out of memory, bad URL */
} ade_rc_t;

typedef struct {
    ade_rc_t rc;
    long status;       /* HTTP status of the last answer, 0 if none */
    char code[64];     /* Apple's error word (e.g. T_C_NOT_SIGNED), "" if none */
    char message[400]; /* one line for the admin; never contains credentials */
} ade_error_t;

typedef struct ade_client ade_client_t;

/* Copies what it needs from opts and creds. NULL when out of memory. */
ade_client_t *ade_client_new(const ade_client_opts_t *opts, const ade_creds_t *creds);
void ade_client_free(ade_client_t *c);
/* How many /session requests this client made (tests, logs). */
int ade_client_sessions(const ade_client_t *c);

/* One call: method, path (with query), optional JSON body. On ADE_OK, *out
 * is the answer's JSON object (caller decrefs). */
ade_rc_t ade_client_call(ade_client_t *c, const char *method, const char *path, json_t *body, json_t **out,
                         ade_error_t *err);

/* Apple's endpoints. serials: n strings. */
ade_rc_t ade_account(ade_client_t *c, json_t **out, ade_error_t *err);
ade_rc_t ade_fetch_devices(ade_client_t *c, const char *cursor, int limit, json_t **out, ade_error_t *err);
ade_rc_t ade_sync_devices(ade_client_t *c, const char *cursor, int limit, json_t **out, ade_error_t *err);
ade_rc_t ade_device_details(ade_client_t *c, const char *const *serials, size_t n, json_t **out, ade_error_t *err);
ade_rc_t ade_disown_devices(ade_client_t *c, const char *const *serials, size_t n, json_t **out, ade_error_t *err);
ade_rc_t ade_define_profile(ade_client_t *c, json_t *profile, json_t **out, ade_error_t *err);
ade_rc_t ade_assign_profile(ade_client_t *c, const char *profile_uuid, const char *const *serials, size_t n,
                            json_t **out, ade_error_t *err);
ade_rc_t ade_fetch_profile(ade_client_t *c, const char *profile_uuid, json_t **out, ade_error_t *err);
ade_rc_t ade_remove_profile(ade_client_t *c, const char *const *serials, size_t n, json_t **out, ade_error_t *err);

#endif
