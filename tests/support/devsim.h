/* Device simulator: speaks the device side of Apple's MDM check-in and
 * command protocols to orchard over real HTTPS (libcurl, keep-alive), with a
 * real client identity presented by mTLS, by Mdm-Signature, or in a proxy
 * header. Used by the integration tests and the benchmarks. */
#ifndef ORCHARD_DEVSIM_H
#define ORCHARD_DEVSIM_H

#include <stddef.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "plist.h"

typedef enum {
    DEVSIM_AUTH_MTLS,      /* TLS client certificate */
    DEVSIM_AUTH_SIGNATURE, /* Mdm-Signature header only (SignMessage=true) */
    DEVSIM_AUTH_BOTH,      /* both, as a device with SignMessage behind no proxy */
    DEVSIM_AUTH_HEADER,    /* certificate in a proxy header (set with devsim_set_header) */
    DEVSIM_AUTH_NONE       /* no identity at all */
} devsim_auth_t;

typedef struct devsim devsim_t;

typedef struct {
    long status;          /* HTTP status */
    char *body;           /* response body (NUL-terminated), NULL if empty */
    size_t body_len;
    plist_t *command;     /* parsed command when the body is a plist */
} devsim_reply_t;

/* base_url e.g. "https://127.0.0.1:8443"; server_ca: PEM file to trust.
 * key/cert are borrowed (up-ref'd). */
devsim_t *devsim_new(const char *base_url, const char *server_ca, const char *udid, EVP_PKEY *key, X509 *cert,
                     devsim_auth_t auth);
void devsim_free(devsim_t *d);
/* Header name and value encoding for DEVSIM_AUTH_HEADER: value_kind 0 =
 * URL-escaped PEM, 1 = RFC 9440. */
void devsim_set_header(devsim_t *d, const char *name, int value_kind);
/* The URL paths used (defaults /mdm/checkin and /mdm/connect). */
void devsim_set_paths(devsim_t *d, const char *checkin, const char *connect);
/* quiet != 0: transport failures (server down) are not reported on stderr;
 * for tests that expect many of them (crash tests retrying). */
void devsim_set_quiet(devsim_t *d, int quiet);
const char *devsim_udid(const devsim_t *d);

/* Sends raw bytes as the device would (signing them if the mode says so). */
int devsim_send(devsim_t *d, const char *path, const char *content_type, const void *body, size_t len,
                devsim_reply_t *r);
/* Sends `body` but with an Mdm-Signature computed over `signed_body`. */
int devsim_send_signed_other(devsim_t *d, const char *path, const void *body, size_t len, const void *signed_body,
                             size_t signed_len, devsim_reply_t *r);
void devsim_reply_free(devsim_reply_t *r);

/* Check-in messages; the return value is the HTTP status (or -1). */
long devsim_authenticate(devsim_t *d);
long devsim_token_update(devsim_t *d);
/* TokenUpdate with a chosen push token and PushMagic (push tests). */
long devsim_token_update_with(devsim_t *d, const unsigned char *token, size_t token_len, const char *push_magic);
long devsim_checkout(devsim_t *d);
/* A user-channel TokenUpdate (macOS style UserID). */
long devsim_user_token_update(devsim_t *d, const char *user_id, const char *short_name);

/* Command protocol. devsim_idle sends Status=Idle; devsim_report sends a
 * result for `uuid` with `status`; `extra` (taken over; may be NULL) is a
 * dict of the result's own keys (ErrorChain, QueryResponses...). Both fill r
 * with the server's answer (r->command = the next command). */
int devsim_idle(devsim_t *d, devsim_reply_t *r);
int devsim_report(devsim_t *d, const char *uuid, const char *status, plist_t *extra, devsim_reply_t *r);

/* Serializes a dict built by the caller (helper for custom messages). */
char *devsim_plist_xml(const plist_t *p, size_t *len);

/* The CommandUUID / RequestType of a reply's command (NULL if none). */
const char *devsim_command_uuid(const devsim_reply_t *r);
const char *devsim_request_type(const devsim_reply_t *r);

#endif
