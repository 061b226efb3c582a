/* Starting and stopping the HTTP(S) front. */
#ifndef ORCHARD_HTTP_SERVER_H
#define ORCHARD_HTTP_SERVER_H

#include <openssl/ssl.h>

#include "app.h"

/* TLS context for the server certificate; asks (without requiring) a client
 * certificate whose issuer is in client_ca_path. NULL with *err (heap). */
SSL_CTX *http_tls_context(const char *cert_path, const char *key_path, const char *client_ca_path, char **err);

/* Serves until SIGINT or SIGTERM; ssl_ctx NULL serves plain HTTP.
 * Returns 0 after a clean shutdown, -1 if startup failed. */
int http_server_run(const app_t *app, SSL_CTX *ssl_ctx);

/* One worker serving cfg->listen on an event loop the caller runs (no
 * threads, no signal handling, no enrollment rate limit), with the same
 * evhttp set-up, limits and dispatch as http_server_run. It exists for the
 * whole-request fuzz harness (fuzz/fuzz_http_request.c), which must drive
 * the server and its client from one thread to stay deterministic. */
typedef struct http_local_worker http_local_worker_t;
struct event_base;
http_local_worker_t *http_local_worker_new(const app_t *app, SSL_CTX *ssl_ctx, char **err);
struct event_base *http_local_worker_base(http_local_worker_t *lw);
void http_local_worker_free(http_local_worker_t *lw);

#endif
