/* HTTP Digest authentication (RFC 7616) for the ADE configuration URL: the
 * user name and password a person types into Setup Assistant when the
 * device's MachineInfo POST is answered with 401.
 *
 * Supported: algorithms SHA-256 and MD5 (not the -sess variants), qop=auth
 * (required: the RFC 2069 form without qop has no client nonce or count and
 * is refused), no userhash.
 *
 * Users: a file of `user:realm:HA1` lines, the format Apache's htdigest
 * writes (HA1 = hex H(user:realm:password)). A 32-digit HA1 is MD5, a
 * 64-digit one SHA-256; a user may have one line of each. Every line must
 * name the same realm, which is the realm of the challenge. '#' starts a
 * comment line. The file is re-read when it changes (checked on each
 * request), so adding a user needs no restart; a file that no longer parses
 * is logged and the previous users stay in force.
 *
 * Nonces are stateless: hex of issue time, 8 random bytes and an
 * HMAC-SHA256 tag under the server key, so any instance holding the key
 * validates any instance's nonce without shared state; they are stale after
 * the configured lifetime (the device then retries with the new nonce in
 * the stale=true challenge, without asking the person again). Replay is
 * stopped by remembering the highest nonce count used with each nonce
 * (see digest_auth.c for why in memory).
 */
#ifndef ORCHARD_DIGEST_AUTH_H
#define ORCHARD_DIGEST_AUTH_H

#include <stddef.h>
#include <stdint.h>

#define DIGEST_KEY_LEN 32
#define DIGEST_MAX_CHALLENGES 2 /* one WWW-Authenticate value per algorithm */

typedef struct digest_auth digest_auth_t;

typedef enum {
    DIGEST_OK = 0,
    DIGEST_MISSING,        /* no Authorization header, or not Digest */
    DIGEST_MALFORMED,      /* unparsable or a required parameter is missing */
    DIGEST_UNSUPPORTED,    /* algorithm or qop orchard does not do */
    DIGEST_WRONG_REALM,    /* realm or opaque are not this server's */
    DIGEST_WRONG_URI,      /* uri is not the request's target */
    DIGEST_FORGED_NONCE,   /* the nonce's tag does not verify: not issued with this key */
    DIGEST_STALE_NONCE,    /* issued by us but expired */
    DIGEST_UNKNOWN_USER,   /* no HA1 for this user, realm and algorithm */
    DIGEST_WRONG_PASSWORD, /* the response does not match */
    DIGEST_REPLAY,         /* nonce count not above the last one accepted for this nonce */
    DIGEST_ERROR,          /* out of memory, no randomness, no user file */
} digest_result_t;

/* Loads the user file and sets up nonces: key (DIGEST_KEY_LEN bytes) signs
 * them, nonce_ttl (seconds) is their lifetime, replay_slots bounds the
 * replay table (0 = default 4096). NULL with a reason. */
digest_auth_t *digest_auth_new(const char *users_path, const unsigned char *key, int64_t nonce_ttl,
                               size_t replay_slots, char *err, size_t errlen);
void digest_auth_free(digest_auth_t *a);

/* The WWW-Authenticate values for a 401: one per algorithm the user file
 * has HA1s for, SHA-256 first (RFC 7616 §3.7), each with realm, a fresh
 * nonce, opaque, qop="auth", algorithm, and stale=true when asked. values[i]
 * are heap strings (free each); *n how many. 0, or -1 on failure. */
int digest_auth_challenge(digest_auth_t *a, int64_t now, int stale, char *values[DIGEST_MAX_CHALLENGES], size_t *n);

/* Checks an Authorization header value for a request (method, request
 * target as sent: path and query). On DIGEST_OK the nonce count is spent.
 * user (may be NULL) receives the user name when it could be parsed; why a
 * one-line reason for the log (never a password, HA1 or response). */
digest_result_t digest_auth_verify(digest_auth_t *a, const char *authorization, const char *method,
                                   const char *uri, int64_t now, char *user, size_t userlen, char *why,
                                   size_t whylen);

/* Short name of a result for logs ("stale nonce", "replayed nonce count"). */
const char *digest_result_name(digest_result_t r);

/* The realm of the user file (for messages); the string lives until the
 * file changes. */
const char *digest_auth_realm(digest_auth_t *a);

/* Hex H(user:realm:password) for `algorithm` ("MD5" or "SHA-256"): what a
 * user file line holds. out must have room for 65 bytes. 0 or -1. */
int digest_ha1(const char *algorithm, const char *user, const char *realm, const char *password, char out[65]);

#endif
