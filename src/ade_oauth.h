/* OAuth 1.0a request signing (RFC 5849), HMAC-SHA1 only: what Apple's
 * /session endpoint takes to hand out an X-ADM-Auth-Session. */
#ifndef ORCHARD_ADE_OAUTH_H
#define ORCHARD_ADE_OAUTH_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name, *value; /* not encoded */
} ade_oauth_param_t;

/* RFC 5849 3.6: every octet except ALPHA DIGIT - . _ ~ as %XX (upper-case
 * hex). Heap, NULL when out of memory. */
char *ade_oauth_encode(const char *s);
/* Signature base string (RFC 5849 3.4.1) of a request: method, base string
 * URI of `url` (scheme and host lower-cased, default port dropped, query and
 * fragment removed), and the parameters: those of url's query plus `params`
 * (which must not contain oauth_signature), encoded, sorted by name then
 * value, joined. Heap, NULL on a bad URL or out of memory. */
char *ade_oauth_base_string(const char *method, const char *url, const ade_oauth_param_t *params, size_t n);
/* HMAC-SHA1 over base with key encode(consumer_secret)&encode(token_secret),
 * base64 into out. 0 or -1. */
int ade_oauth_sign(const char *base, const char *consumer_secret, const char *token_secret, char out[32]);
/* The Authorization header value for Apple's /session: OAuth realm="ADM",
 * consumer key, token, HMAC-SHA1, timestamp, nonce, version 1.0 and the
 * signature. Heap, NULL on failure. */
char *ade_oauth_authorization(const char *method, const char *url, const char *consumer_key,
                              const char *consumer_secret, const char *token, const char *token_secret,
                              const char *nonce, int64_t timestamp);

#endif
