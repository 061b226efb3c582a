/* Runs a real `orchard serve` (the binary in $ORCHARD_BIN) for integration
 * tests: a fresh data directory, a free loopback port, its log captured. */
#ifndef ORCHARD_TESTSERVER_H
#define ORCHARD_TESTSERVER_H

#include <stddef.h>
#include <sys/types.h>

#include <jansson.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "devsim.h"

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
/* testserver_stop without removing the data directory, so the caller can
 * inspect the database; testserver_remove_dir then cleans up. */
int testserver_stop_keep(testserver_t *s);
void testserver_remove_dir(testserver_t *s);
/* SIGKILL and reap: the server gets no chance to run any shutdown code, as
 * in a crash. The data directory is kept. */
void testserver_kill(testserver_t *s);
/* Starts the server again on the same data directory and port (after
 * testserver_kill or testserver_stop_keep), appending to the same log, and
 * waits until /healthz answers. 0 on success. */
int testserver_restart(testserver_t *s, const char *const *extra_args);

/* Environment: ORCHARD_SERVER_WRAPPER (opt-in), words put before the server
 * command line, e.g. "valgrind --error-exitcode=99 --leak-check=full"; the
 * startup and shutdown waits grow from 30 s to 300 s when it is set. */
/* 1 if the server log contains `needle`. */
int testserver_log_contains(const testserver_t *s, const char *needle);
/* Admin API call with the test key (key NULL: none; "" : use the default).
 * Returns the HTTP status; *out gets the parsed JSON body if out != NULL. */
long testserver_api(const testserver_t *s, const char *key, const char *method, const char *path, const char *body,
                    size_t len, json_t **out);
/* A device identity issued by the server's CA with CN = udid. */
int testserver_device_identity(const testserver_t *s, const char *udid, EVP_PKEY **key, X509 **cert);
/* A device simulator for `udid` speaking to this server with a fresh
 * identity from its CA (not yet enrolled). NULL on failure. */
devsim_t *testserver_devsim(const testserver_t *s, const char *udid, devsim_auth_t auth);
/* A command plist as an admin enqueues it: {CommandUUID, Command: {RequestType,
 * ...extra}}. uuid or rtype NULL leaves that key out (refusal tests); extra
 * (taken over, may be NULL) is the Command dict to start from. Heap XML. */
char *testserver_command_xml(const char *uuid, const char *rtype, plist_t *extra, size_t *len);

#endif
