/* A mock APNs server for tests and benchmarks: real HTTP/2 (libnghttp2)
 * over TLS (OpenSSL) on a loopback port, requiring a client certificate
 * issued by a given CA (the push certificate's issuer), served by one thread
 * inside the test process. It records every request (path, APNs headers,
 * body, the client certificate's subject UID, which connection) and answers
 * as scripted: 200, the APNs errors, garbage, a dropped connection, or
 * nothing at all (a stall). MOCKAPNS_DEBUG=1 in the environment prints why
 * connections end (GOAWAY, TLS and session errors) on stderr; off by
 * default. */
#ifndef ORCHARD_MOCKAPNS_H
#define ORCHARD_MOCKAPNS_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    MOCKAPNS_OK,           /* 200 with an apns-id */
    MOCKAPNS_BAD_TOKEN,    /* 400 {"reason":"BadDeviceToken"} */
    MOCKAPNS_UNREGISTERED, /* 410 {"reason":"Unregistered","timestamp":...} */
    MOCKAPNS_TOO_MANY,     /* 429 {"reason":"TooManyRequests"} */
    MOCKAPNS_SERVER_ERROR, /* 500 {"reason":"InternalServerError"} */
    MOCKAPNS_UNAVAILABLE,  /* 503 {"reason":"ServiceUnavailable"} */
    MOCKAPNS_FORBIDDEN,    /* 403 {"reason":"BadCertificate"} */
    MOCKAPNS_GARBAGE,      /* raw bytes that are not HTTP/2, then close */
    MOCKAPNS_CLOSE,        /* close the connection without answering */
    MOCKAPNS_STALL         /* never answer this request */
} mockapns_action_t;

typedef struct {
    char method[16];
    char path[300];
    char topic[256];
    char push_type[32];
    char priority[16];
    char expiration[32];
    char body[600];
    size_t body_len;
    char client_uid[256]; /* subject UID of the client certificate */
    int conn;             /* connection number, from 1 */
} mockapns_req_t;

typedef struct mockapns mockapns_t;

/* Starts on 127.0.0.1 (random port). The server certificate (self-signed,
 * SAN IP 127.0.0.1) is written to DIR/mockapns-server.pem for clients to
 * trust. client_ca_path: CA bundle client certificates must chain to; NULL
 * accepts connections without one (for load tools like h2load). */
mockapns_t *mockapns_start(const char *dir, const char *client_ca_path);
void mockapns_stop(mockapns_t *m);
int mockapns_port(const mockapns_t *m);
const char *mockapns_server_ca(const mockapns_t *m);
/* "https://127.0.0.1:PORT" */
const char *mockapns_url(const mockapns_t *m);

/* The answer when no rule matches (initially MOCKAPNS_OK). */
void mockapns_default(mockapns_t *m, mockapns_action_t a);
/* The next `count` requests to this device token (lower-case hex; NULL =
 * any token) get `a`; count < 0: all of them. Rules are tried in the order
 * added. */
void mockapns_script(mockapns_t *m, const char *token_hex, mockapns_action_t a, int count);
/* Forgets rules, records and counters (not connections already open). */
void mockapns_reset(mockapns_t *m);
/* Whether requests are kept (off for benchmarks: counters only). */
void mockapns_set_recording(mockapns_t *m, int on);

size_t mockapns_count(mockapns_t *m);
/* Requests whose path ends with this token. */
size_t mockapns_count_token(mockapns_t *m, const char *token_hex);
int mockapns_get(mockapns_t *m, size_t i, mockapns_req_t *out);
/* TLS connections that completed a handshake since start or reset. */
int mockapns_connections(mockapns_t *m);
/* Waits until at least n requests arrived; 0, or -1 after timeout_ms. */
int mockapns_wait(mockapns_t *m, size_t n, int timeout_ms);

#endif
