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

#endif
