/* The running server's shared state and the per-thread worker context that
 * every handler receives. */
#ifndef ORCHARD_APP_H
#define ORCHARD_APP_H

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "config.h"
#include "digest_auth.h"
#include "http.h"
#include "identity.h"
#include "mdm_message.h"
#include "push.h"
#include "store.h"

struct ade_env_s;

typedef struct {
    const config_t *cfg;
    identity_verifier_t *verifier;
    pusher_t *pusher;
    const char *api_key;
    /* Enrollment (serve.c loads these) */
    X509 *ca_cert;          /* device CA: issues SCEP certificates */
    EVP_PKEY *ca_key;       /* NULL when the CA key is kept offline: SCEP then refuses */
    X509 *tls_cert;         /* signs enrollment profiles */
    EVP_PKEY *tls_key;
    STACK_OF(X509) *anchors; /* certificates devices must trust for the server (profile anchors) */
    const char *push_topic;  /* from the push certificate or --push-topic; NULL if neither */
    const char *enroll_secret;
    identity_verifier_t *machineinfo_verifier; /* NULL: POST /enroll is closed */
    /* Apple Watch pairing (pairing.h): the HMAC key from DATA_DIR/pairing.key
     * and the organization id (hex SHA-256 of ca_cert) tokens carry. */
    unsigned char pairing_key[32];
    char org_id[65];
    /* Seals escrowed bootstrap tokens (seal.h, DATA_DIR/escrow.key, shared
     * by every instance on one database). */
    unsigned char escrow_key[32];
    /* ADE configuration URL: HTTP Digest when --ade-auth is set (NULL:
     * no authentication). Mutable behind the pointer: it keeps the replay
     * table and reloads the user file (its own lock). */
    digest_auth_t *ade_digest;
    /* Automated Device Enrollment (ade_sync.h): seal key, Apple's service,
     * sync cadence. NULL when it could not be prepared (logged). */
    struct ade_env_s *ade;
} app_t;

struct ratelimit;

typedef struct {
    const app_t *app;
    store_t *store; /* this worker thread's own handle */
    int id;
    struct ratelimit *enroll_limit;   /* per client address, shared by all workers (ratelimit.h); NULL = no limit */
    struct ratelimit *identity_limit; /* per enrolling identity, likewise */
} worker_t;

/* Routes one request to its handler (router.c). */
void app_route(worker_t *w, const http_request_t *req, http_response_t *resp);
/* The per-identity limit on enrollment (router.c): handlers call it once
 * they have verified who is enrolling (`identity`: a MachineInfo UDID, a
 * SCEP signer's SHA-256). 1 = go on; 0 = answered 429 with Retry-After. */
int enroll_identity_ok(worker_t *w, const char *endpoint, const char *identity, http_response_t *resp);

/* Handlers. */
void mdm_checkin_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
void mdm_connect_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
void mdm_single_url_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
/* Handle an already parsed device message (the single-URL route parses once). */
void mdm_checkin_dispatch(worker_t *w, const http_request_t *req, mdm_message_t *m, http_response_t *resp);
void mdm_connect_dispatch(worker_t *w, const http_request_t *req, mdm_message_t *m, http_response_t *resp);
void admin_api_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
/* The admin API key check (Bearer, or HTTP Basic with the key as password). */
int admin_authorized(const app_t *app, const http_request_t *req);
/* NanoMDM-compatible enrollment migration: PUT /migration (migration_http.c). */
void migration_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
/* Enrollment: SCEP (scep_http.c), OTA profile and MachineInfo (enroll_http.c),
 * admin calls under /v1/certificates, /v1/admission, /v1/renewals
 * (admin_enroll.c; called by admin_api_handle after the key check, `sub` is
 * the path after "/v1/"). */
void scep_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
void enroll_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
int admin_enroll_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp);
/* Apple Watch enrollment: POST /enroll/watch (watch_http.c); admin calls
 * .../watch-enrollment and /v1/devices/{phone}/watches (admin_watch.c;
 * returns 1 when it handled the request). */
void watch_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
int admin_watch_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp);
/* Automated Device Enrollment: the configuration URL POST /enroll/ade
 * (ade_enroll.c); the admin's setup commands /v1/ade/setup-commands
 * (admin_ade_setup.c; 1 if it handled the path). */
void ade_enroll_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
int admin_ade_setup_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp);
/* Declarative device management: admin calls under /v1/declarations,
 * /v1/sets, /v1/groups, /v1/asset-data, /v1/ddm and the DDM views of
 * /v1/devices/{id} (admin_ddm.c; 1 if it handled the path); device asset
 * data downloads GET /mdm/assets/<name> (mdm_asset.c). */
/* Enqueue and push calls: /v1/enqueue/IDS, /v1/enqueue?group=|all=,
 * /v1/push/IDS (admin_enqueue.c; 1 when it handled the request). */
int admin_enqueue_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp);
int admin_ddm_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp);
void mdm_asset_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
/* Automated Device Enrollment admin calls under /v1/ade/ (admin_ade.c; 1 if
 * it handled the path). */
int admin_ade_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp);
/* Asset data names: [A-Za-z0-9._-], 1..128 characters, not "." or "..". */
int mdm_asset_name_valid(const char *name);

#endif
