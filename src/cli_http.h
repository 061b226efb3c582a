/* How the admin command line reaches the server: one HTTPS request with
 * libcurl, shared by cli.c (devices, enqueue, commands, push) and
 * cli_enroll.c (certs, admission, renew, profile). */
#ifndef ORCHARD_CLI_HTTP_H
#define ORCHARD_CLI_HTTP_H

#include <stddef.h>

#include "curl_buffer.h"

typedef struct {
    const char *server;   /* base URL, e.g. https://127.0.0.1:8443 */
    const char *api_key;  /* NULL: read from DATA_DIR/api.key */
    const char *data_dir; /* where api.key, enroll.secret and ca.pem are */
    const char *cacert;   /* CA to trust; NULL: DATA_DIR/ca.pem */
    int insecure;         /* do not verify the server certificate */
} cli_conn_t;

/* One request. auth_header is a complete "Authorization: ..." line or NULL;
 * a body is sent with content_type (NULL: none). The reply body lands in
 * *out (caller frees with curl_buffer_free). Returns the HTTP status, or -1
 * with the reason already printed to stderr. */
long cli_http_request(const cli_conn_t *c, const char *method, const char *path, const char *auth_header,
                      const char *content_type, const void *body, size_t body_len, curl_buffer_t *out);

/* An admin API call with the key as Bearer token; prints the JSON reply
 * (indented) to stdout. Exit status: 0 for 2xx, 1 otherwise, 2 without a
 * key. */
int cli_api_call(const cli_conn_t *c, const char *method, const char *path, const char *body, size_t body_len);

/* A secret from DATA_DIR/NAME (first line), heap; NULL with a message. */
char *cli_read_secret(const cli_conn_t *c, const char *name, const char *what);

#endif
