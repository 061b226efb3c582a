/* The running server's shared state and the per-thread worker context that
 * every handler receives. */
#ifndef ORCHARD_APP_H
#define ORCHARD_APP_H

#include "config.h"
#include "http.h"
#include "identity.h"
#include "mdm_message.h"
#include "push.h"
#include "store.h"

typedef struct {
    const config_t *cfg;
    identity_verifier_t *verifier;
    pusher_t *pusher;
    const char *api_key;
} app_t;

typedef struct {
    const app_t *app;
    store_t *store; /* this worker thread's own handle */
    int id;
} worker_t;

/* Routes one request to its handler (router.c). */
void app_route(worker_t *w, const http_request_t *req, http_response_t *resp);

/* Handlers. */
void mdm_checkin_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
void mdm_connect_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
void mdm_single_url_handle(worker_t *w, const http_request_t *req, http_response_t *resp);
/* Handle an already parsed device message (the single-URL route parses once). */
void mdm_checkin_dispatch(worker_t *w, const http_request_t *req, mdm_message_t *m, http_response_t *resp);
void mdm_connect_dispatch(worker_t *w, const http_request_t *req, mdm_message_t *m, http_response_t *resp);
void admin_api_handle(worker_t *w, const http_request_t *req, http_response_t *resp);

#endif
