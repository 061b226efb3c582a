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

/* ---- Declarative device management (DDM) client ----------------------------
 *
 * The device's side of DDM: a declaration store (Identifier → ServerToken and
 * the declaration JSON as fetched) and the DeclarationsToken of the last
 * manifest, per devsim (one channel). The sync loop is Apple's:
 * tokens (or the Data of a DeclarativeManagement command) → compare with the
 * stored DeclarationsToken → declaration-items → fetch new and changed
 * declarations (404: drop it), drop those missing from the manifest → a
 * status report (FullReport) with management.declarations for what it holds
 * (active, "valid" unless a failure was set) and a few device status items. */

/* Speak for a user channel (UserID + UserShortName + UserLongName on every
 * check-in and connect message); NULL = device channel (default). */
void devsim_set_user_channel(devsim_t *d, const char *user_id, const char *short_name);

typedef struct {
    int token_changed; /* the DeclarationsToken differed from the stored one */
    int fetched;       /* declarations fetched (new or changed) */
    int removed;       /* declarations dropped */
    long status;       /* HTTP status of the status report (0 if none sent) */
} devsim_ddm_result_t;

/* One DeclarativeManagement check-in; r->body holds the JSON answer. Data
 * (may be NULL) is sent as the message's Data. Returns the HTTP status. */
long devsim_ddm_checkin(devsim_t *d, const char *endpoint, const void *data, size_t len, devsim_reply_t *r);
/* The client loop. tokens_json: a TokensResponse (a command's Data), or NULL
 * to ask the server (Endpoint tokens). 0, or -1 on a protocol failure. */
int devsim_ddm_sync(devsim_t *d, const char *tokens_json, devsim_ddm_result_t *res);
/* If r carries a DeclarativeManagement command: runs the loop with its Data
 * (if any), acknowledges the command and puts the server's answer in *next;
 * returns 1. 0 if r carries another command (nothing done), -1 on failure. */
int devsim_ddm_handle_command(devsim_t *d, const devsim_reply_t *r, devsim_ddm_result_t *res, devsim_reply_t *next);
/* Reports the declaration as failed in later status reports (active false,
 * valid "invalid", one reason with `code`); code NULL clears it. */
void devsim_ddm_set_failure(devsim_t *d, const char *identifier, const char *code);

/* The store: count, and per identifier the ServerToken / JSON held (NULL if
 * not held). devsim_ddm_token: DeclarationsToken of the last manifest. */
size_t devsim_ddm_count(const devsim_t *d);
const char *devsim_ddm_server_token(const devsim_t *d, const char *identifier);
const char *devsim_ddm_json(const devsim_t *d, const char *identifier);
const char *devsim_ddm_token(const devsim_t *d);

#endif
