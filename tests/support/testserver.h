/* Runs a real `orchard serve` (the binary in $ORCHARD_BIN) for integration
 * tests: a fresh data directory, a free loopback port, its log captured. */
#ifndef ORCHARD_TESTSERVER_H
#define ORCHARD_TESTSERVER_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define TESTSERVER_API_KEY "test-admin-key-0123456789abcdef"

typedef struct {
    pid_t pid;
    int port;
    int plain_http;
    char dir[256];
    char base_url[64];
    char ca_path[300];
    char ca_key_path[300];
    char log_path[300];
} testserver_t;

/* Starts the server with the given extra arguments (NULL-terminated, may be
 * NULL) and waits until /healthz answers. 0 on success. */
int testserver_start(testserver_t *s, const char *const *extra_args);
/* SIGTERM, wait; returns the server's exit status (0 = clean, no leaks under
 * ASan), and removes the data directory. */
int testserver_stop(testserver_t *s);
/* 1 if the server log contains `needle`. */
int testserver_log_contains(const testserver_t *s, const char *needle);
/* Admin API call with the test key (key NULL: none; "" : use the default).
 * Returns the HTTP status; *out gets the parsed JSON body if out != NULL. */
long testserver_api(const testserver_t *s, const char *key, const char *method, const char *path, const char *body,
                    size_t len, json_t **out);
/* A device identity issued by the server's CA with CN = udid. */
int testserver_device_identity(const testserver_t *s, const char *udid, EVP_PKEY **key, X509 **cert);

#endif
