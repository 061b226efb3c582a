/* The harness shared by fuzz_http_request and fuzz_admin_json: one orchard
 * worker (http_local_worker_new) on a loopback port whose event loop the
 * fuzzing thread runs, and a client that writes raw bytes to it.
 *
 * The server is plain HTTP (TLS would cost a handshake per input and test
 * OpenSSL, not orchard) with --client-cert-header X-Client-Cert, no
 * enrollment rate limit, POST /enroll open (MachineInfo trusted from the
 * device CA) and a fixed admin API key (FUZZ_API_KEY), on a real SQLite
 * store in /dev/shm. The store keeps what earlier inputs wrote
 * (enrollments, declarations, commands), which lets later inputs reach
 * deeper states; nothing else carries over between inputs. */
#ifndef ORCHARD_FUZZ_HTTP_HARNESS_H
#define ORCHARD_FUZZ_HTTP_HARNESS_H

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <event2/event.h>
#include <event2/thread.h>
#include <openssl/x509.h>

#include "app.h"
#include "config.h"
#include "http_server.h"
#include "identity.h"
#include "log.h"
#include "pairing.h"
#include "pki.h"
#include "push.h"
#include "util.h"

#define FUZZ_API_KEY "fuzz-admin-key-0123456789abcdef"
#define FUZZ_ENROLL_SECRET "fuzz-enroll-secret-0123456789"
/* A request that neither finishes nor fails within this is abandoned (the
 * client resets the connection); evhttp closes on end-of-file at once, so
 * only a stuck server would ever wait this long. */
#define INPUT_DEADLINE_US (3 * 1000000)

static config_t cfg;
static app_t app;
static http_local_worker_t *worker;
static struct event_base *base;
static int port;
static char cert_b64[4096]; /* ":base64-DER:" of the device certificate */

static void die(const char *what)
{
    fprintf(stderr, "fuzz_http_request: %s\n", what);
    abort();
}

static char data_dir[128];

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* At exit (libFuzzer's time limit or -runs): the data directory goes. A
 * crash skips this and leaves it for inspection. */
static void remove_data_dir(void)
{
    nftw(data_dir, remove_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static void make_device_cert(void)
{
    EVP_PKEY *key = pki_new_ec_key();
    X509 *cert = key ? pki_issue_cert(app.ca_cert, app.ca_key, key, "fuzz-device", 365, PKI_USAGE_CLIENT, NULL, 0)
                     : NULL;
    unsigned char *der = NULL;
    int len = cert ? i2d_X509(cert, &der) : -1;
    if (len <= 0)
        die("cannot issue the device certificate");
    char *b64 = util_base64_encode(der, (size_t)len);
    if (!b64 || strlen(b64) + 3 > sizeof cert_b64)
        die("cannot encode the device certificate");
    snprintf(cert_b64, sizeof cert_b64, ":%s:", b64);
    free(b64);
    OPENSSL_free(der);
    X509_free(cert);
    EVP_PKEY_free(key);
}

/* A loopback port nobody uses now (the kernel's pick for port 0). */
static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof sa) != 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) != 0)
        die("cannot find a free port");
    close(fd);
    return ntohs(sa.sin_port);
}

/* Starts the server; aborts on failure (a fuzzer without it tests nothing). */
static void fuzz_http_start(void)
{
    const char *root = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
    char *dir = data_dir;
    snprintf(data_dir, sizeof data_dir, "%s/orchard-fuzz-http-XXXXXX", root);
    if (!mkdtemp(data_dir))
        die("mkdtemp");
    atexit(remove_data_dir);
    port = free_port();
    char listen[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    char ca_opt[256];
    snprintf(ca_opt, sizeof ca_opt, "%s/ca.pem", dir);
    char *args[] = {"serve", "--data-dir", dir, "--listen", listen, "--insecure-http",
                    "--client-cert-header", "X-Client-Cert", "--public-url", "https://localhost:8443",
                    "--push-topic", "com.apple.mgmt.External.2f4e6b2a-91c3-4d1e-8f6a-0b7c5d3e9a21", "--machineinfo-ca", ca_opt, "--workers", "1",
                    NULL};
    if (config_parse(&cfg, (int)(sizeof args / sizeof args[0]) - 1, args) != 0)
        die("config");
    cfg.enroll_rate = 0; /* the harness is one client address sending everything */
    /* Request lines would be most of the run's cost and output. */
    log_set_level(getenv("FUZZ_HTTP_LOG") ? LOG_DEBUG : LOG_ERROR);

    char *err = NULL;
    if (pki_bootstrap(dir, "localhost", &err) != 0)
        die(err ? err : "pki_bootstrap");
    app.ca_cert = pki_load_cert(ca_opt);
    char path[256];
    snprintf(path, sizeof path, "%s/ca.key", dir);
    app.ca_key = pki_load_key(path);
    app.tls_cert = pki_load_cert(cfg.tls_cert);
    app.tls_key = pki_load_key(cfg.tls_key);
    app.anchors = pki_load_cert_bundle(cfg.tls_cert);
    if (!app.ca_cert || !app.ca_key || !app.tls_cert || !app.tls_key || !app.anchors)
        die("cannot load the data directory's PKI");
    X509_up_ref(app.ca_cert);
    sk_X509_push(app.anchors, app.ca_cert);
    app.push_topic = cfg.push_topic;
    char why[512];
    if (pairing_key_load(dir, app.pairing_key, why, sizeof why) != 0 || pairing_org_id(app.ca_cert, app.org_id) != 0)
        die("pairing key");
    if (!(app.verifier = identity_verifier_new(cfg.client_ca, &err)) ||
        !(app.machineinfo_verifier = identity_verifier_new(cfg.machineinfo_ca, &err)))
        die(err ? err : "verifier");
    identity_verifier_any_purpose(app.machineinfo_verifier);
    /* Push not configured: pushes are refused after the handlers did their
     * work, which is the part under test (APNs answers have their own
     * target, fuzz_apns_response). */
    pusher_opts_t po = {.db_url = cfg.db, .ntopics = 0, .base_url = "https://127.0.0.1:1", .threads = 1};
    if (!(app.pusher = pusher_new(&po)))
        die("pusher");
    app.cfg = &cfg;
    app.api_key = FUZZ_API_KEY;
    app.enroll_secret = FUZZ_ENROLL_SECRET;
    make_device_cert();

    if (evthread_use_pthreads() != 0)
        die("evthread_use_pthreads");
    if (!(worker = http_local_worker_new(&app, NULL, &err)))
        die(err ? err : "worker");
    base = http_local_worker_base(worker);
}

static int connect_local(void)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    /* Reset on close: no TIME_WAIT pile-up over millions of inputs. */
    struct linger lg = {1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0 && errno != EINPROGRESS)
        die("connect");
    return fd;
}

/* Writes `req` (len bytes) on a fresh connection, then end-of-file once the
 * server is quiet, and runs the server until it closes the connection. */
static void fuzz_http_send(const char *req, size_t len)
{
    int fd = connect_local();
    size_t sent = 0;
    int write_open = 1, quiet = 0;
    int64_t deadline = util_now_us() + INPUT_DEADLINE_US;
    char sink[16384];
    while (util_now_us() < deadline) {
        int progress = 0;
        if (write_open) {
            ssize_t n = sent < len ? send(fd, req + sent, len - sent, MSG_NOSIGNAL) : 0;
            if (n > 0) {
                sent += (size_t)n;
                progress = 1;
            } else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != ENOTCONN) {
                write_open = 0; /* the server closed on us: read what it said */
            }
        }
        /* The server handles whatever is ready (loopback delivers within
         * send), and writes its answers into our receive buffer. */
        event_base_loop(base, EVLOOP_NONBLOCK);
        ssize_t r;
        while ((r = recv(fd, sink, sizeof sink, 0)) > 0)
            progress = 1;
        if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
            break; /* the server closed the connection: input done */
        if (!progress) {
            /* Everything sent and the server quiet: end the input with
             * end-of-file. Not earlier: evhttp drops pipelined requests
             * it has not started when it reads end-of-file. */
            if (write_open && sent == len && quiet > 0) {
                shutdown(fd, SHUT_WR);
                write_open = 0;
            }
            /* The first quiet round only runs the loop again (evhttp may
             * have queued work, e.g. the next pipelined request); after
             * that, wait a little for the server. */
            if (quiet++ > 0) {
                struct pollfd p = {.fd = fd, .events = POLLIN};
                poll(&p, 1, 1);
            }
        } else {
            quiet = 0;
        }
    }
    close(fd);
    /* Let the server see the reset and free its side of the connection. */
    for (int i = 0; i < 4 && event_base_loop(base, EVLOOP_NONBLOCK) == 0; i++)
        ;
}

#endif
