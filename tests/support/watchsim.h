/* Apple Watch side of watch enrollment for tests and benchmarks: the
 * CMS-signed MachineInfo a watch POSTs to EnrollmentProfileURL (with or
 * without PAIRING_TOKEN), the POST itself, and the iPhone's GetToken
 * check-in (sent through a devsim phone). */
#ifndef ORCHARD_WATCHSIM_H
#define ORCHARD_WATCHSIM_H

#include <stddef.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "devsim.h"

/* MachineInfo plist (UDID, SERIAL, PRODUCT Watch7,1, VERSION, OS_VERSION
 * 11.1, LANGUAGE; PAIRING_TOKEN when token != NULL), CMS-signed (attached)
 * by cert/key as a watch's device identity. Heap DER, NULL on failure. */
unsigned char *watchsim_machineinfo(X509 *cert, EVP_PKEY *key, const char *udid, const char *serial,
                                    const void *token, size_t token_len, size_t *len);

typedef struct {
    long status;
    char content_type[128];
    unsigned char *body; /* NUL-terminated after len bytes */
    size_t len;
} watchsim_reply_t;

/* POST body to base_url + /enroll/watch over HTTPS (trusting server_ca).
 * 0 when an HTTP answer came back. */
int watchsim_post(const char *base_url, const char *server_ca, const void *body, size_t len, watchsim_reply_t *r);
void watchsim_reply_free(watchsim_reply_t *r);

/* The security-token of a 403 pairing.token.missing JSON body (heap), or
 * NULL if the body is not that. */
char *watchsim_security_token(const watchsim_reply_t *r);

/* GetToken check-in from `phone` (its own UDID as the message UDID).
 * service NULL = com.apple.watch.pairing; any parameter NULL is left out.
 * Returns the HTTP status; *token (heap, may be NULL) gets TokenData. */
long watchsim_get_token(devsim_t *phone, const char *service, const char *security_token, const char *phone_udid,
                        const char *watch_udid, unsigned char **token, size_t *token_len);

#endif
