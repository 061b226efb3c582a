/* The thin HTTP front: what a handler sees of a request and how it answers.
 *
 * The server (http_server.c) owns sockets, TLS, timeouts and size limits; it
 * hands each complete request to a handler as an http_request_t and sends
 * the http_response_t the handler filled in, then logs one line with the
 * handler's log fields. Handlers never touch libevent or OpenSSL's TLS.
 */
#ifndef ORCHARD_HTTP_H
#define ORCHARD_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <openssl/x509.h>

struct evhttp_request;
struct evbuffer;

typedef enum { HTTP_M_GET, HTTP_M_PUT, HTTP_M_POST, HTTP_M_DELETE, HTTP_M_OTHER } http_method_t;

typedef struct {
    http_method_t method;
    const char *method_name;
    const char *path;  /* percent-decoded, no query */
    const char *query; /* raw query string or NULL */
    const unsigned char *body;
    size_t body_len;
    size_t max_body; /* configured limit; handlers refuse larger bodies */
    const char *remote; /* TCP peer address */
    /* The client's address: the peer, or the last X-Forwarded-For entry
     * when the peer is a --trusted-proxy. For rate limits; never identity. */
    const char *client;
    /* TLS client certificate as presented (not yet verified); NULL without
     * mTLS. The chain holds the intermediates the client sent. */
    X509 *peer_cert;
    STACK_OF(X509) *peer_chain;
    struct evhttp_request *ev; /* private to http_server.c */
} http_request_t;

#define HTTP_MAX_EXTRA_HEADERS 4

typedef struct {
    int status;
    const char *content_type;
    struct evbuffer *body;
    const char *header_names[HTTP_MAX_EXTRA_HEADERS];
    char *header_values[HTTP_MAX_EXTRA_HEADERS];
    int nheaders;
    /* Filled by handlers for the request log line. */
    char log_id[96];       /* enrollment id or admin target */
    char log_type[96];     /* message type, status, request type */
    char log_problem[256]; /* why the request was refused */
} http_response_t;

/* Per-connection memo of the verified TLS client identity (SHA-256 hex of
 * the certificate), so a keep-alive connection verifies its certificate
 * once: TLS renegotiation is off, so the peer cannot change on it.
 * http_conn_identity returns NULL when nothing is remembered, or when it was
 * remembered more than max_age_s ago (expiry must be seen eventually). */
const char *http_conn_identity(const http_request_t *r, int64_t now, int64_t max_age_s);
void http_conn_remember_identity(const http_request_t *r, const char *sha256_hex, int64_t now);

/* Request accessors. */
const char *http_header(const http_request_t *r, const char *name);
/* Copies query parameter `name` into buf; returns buf or NULL if absent. */
const char *http_query(const http_request_t *r, const char *name, char *buf, size_t len);

/* Responses. */
void http_reply(http_response_t *resp, int status, const char *content_type, const void *data, size_t len);
/* Steals the reference to `json`. */
void http_reply_json(http_response_t *resp, int status, json_t *json);
/* Refusal: sets status, the log problem, and a body. JSON bodies
 * ({"error": "..."}) for the admin API, text for device endpoints. */
void http_refuse(http_response_t *resp, int status, int as_json, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void http_add_header(http_response_t *resp, const char *name, const char *value);
void http_set_log(char *field, size_t size, const char *value);
#define HTTP_LOG(resp, field, value) http_set_log((resp)->field, sizeof((resp)->field), (value))

#endif
