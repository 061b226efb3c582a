/* Integration tests of the resource limits (http_server.c connection guard,
 * router.c enrollment rate limit) over real TLS connections: the connection
 * cap, slow clients cut off at --timeout while others are served, header
 * and body caps answered with a log line, 429 with Retry-After per client
 * address, and X-Forwarded-For believed only from a --trusted-proxy. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/ssl.h>

#include "testpki.h"
#include "testscep.h"
#include "testserver.h"
#include "util.h"
#include "watchsim.h"

#define TIMEOUT_S 3
#define MAX_CONN 6

static testserver_t srv;
static SSL_CTX *client_ctx;

typedef struct {
    int fd;
    SSL *ssl; /* NULL: plain TCP only */
} conn_t;

static double now_s(void)
{
    return (double)util_now_us() / 1e6;
}

static int tcp_open(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/* A TLS connection to the server; 0 on success, -1 if the server refused
 * (closed during the handshake). */
static int tls_open(const testserver_t *s, conn_t *c)
{
    c->ssl = NULL;
    c->fd = tcp_open(s->port);
    if (c->fd < 0)
        return -1;
    c->ssl = SSL_new(client_ctx);
    SSL_set_fd(c->ssl, c->fd);
    if (SSL_connect(c->ssl) != 1) {
        ERR_clear_error();
        return -1;
    }
    return 0;
}

static void conn_close(conn_t *c)
{
    if (c->ssl)
        SSL_free(c->ssl);
    if (c->fd >= 0)
        close(c->fd);
    c->ssl = NULL;
    c->fd = -1;
}

static int conn_send(conn_t *c, const void *data, size_t len)
{
    if (!c->ssl)
        return send(c->fd, data, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
    int rc = SSL_write(c->ssl, data, (int)len) == (int)len ? 0 : -1;
    ERR_clear_error();
    return rc;
}

/* Reads a response head; returns the status (or -1) and copies the head. */
static int read_head(conn_t *c, char *head, size_t len)
{
    size_t n = 0;
    head[0] = '\0';
    while (n + 1 < len) {
        int r = SSL_read(c->ssl, head + n, (int)(len - 1 - n));
        if (r <= 0) {
            ERR_clear_error();
            break;
        }
        n += (size_t)r;
        head[n] = '\0';
        if (strstr(head, "\r\n\r\n"))
            break;
    }
    int status = -1;
    if (strncmp(head, "HTTP/1.", 7) == 0)
        status = atoi(head + 9);
    return status;
}

/* One request on a new TLS connection; returns the status. */
static int request(const testserver_t *s, const char *raw, size_t len, char *head, size_t hlen)
{
    conn_t c;
    char local[4096];
    if (!head) {
        head = local;
        hlen = sizeof local;
    }
    if (tls_open(s, &c) != 0) {
        conn_close(&c);
        return -1;
    }
    int status = conn_send(&c, raw, len) == 0 ? read_head(&c, head, hlen) : -1;
    conn_close(&c);
    return status;
}

static int get(const testserver_t *s, const char *path, const char *extra_headers, char *head, size_t hlen)
{
    char *raw = util_strdup_printf("GET %s HTTP/1.1\r\nHost: test\r\n%sConnection: close\r\n\r\n", path,
                                   extra_headers ? extra_headers : "");
    int st = request(s, raw, strlen(raw), head, hlen);
    free(raw);
    return st;
}

/* 1 if the server has closed the connection (EOF or error) by now. The
 * socket is made non-blocking: with TLS 1.3 it turns readable for session
 * tickets, which carry no application data. */
static int closed_now(conn_t *c)
{
    struct pollfd p = {.fd = c->fd, .events = POLLIN};
    if (poll(&p, 1, 0) <= 0)
        return 0;
    fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
    char b[256];
    if (c->ssl) {
        int r = SSL_read(c->ssl, b, sizeof b);
        int err = SSL_get_error(c->ssl, r);
        ERR_clear_error();
        return r <= 0 && err != SSL_ERROR_WANT_READ && err != SSL_ERROR_WANT_WRITE;
    }
    return recv(c->fd, b, sizeof b, MSG_DONTWAIT) == 0;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int setup(void **state)
{
    (void)state;
    signal(SIGPIPE, SIG_IGN);
    client_ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_set_verify(client_ctx, SSL_VERIFY_NONE, NULL);
    static const char *const args[] = {"--max-connections", "6", "--timeout", "3",   "--enroll-rate",
                                       "1/s",              "--enroll-burst", "3", NULL};
    return testserver_start(&srv, args);
}

static int teardown(void **state)
{
    (void)state;
    SSL_CTX_free(client_ctx);
    return testserver_stop(&srv) == 0 ? 0 : -1;
}

static void test_max_connections(void **state)
{
    (void)state;
    conn_t held[MAX_CONN];
    for (int i = 0; i < MAX_CONN; i++)
        assert_int_equal(tls_open(&srv, &held[i]), 0);
    /* over the cap: closed at once, before any TLS answer */
    for (int i = 0; i < 3; i++) {
        conn_t extra;
        double t0 = now_s();
        assert_int_equal(tls_open(&srv, &extra), -1);
        assert_true(now_s() - t0 < 1.0);
        conn_close(&extra);
    }
    assert_true(testserver_log_contains(&srv, "over the --max-connections limit of 6"));
    /* the held connections still work */
    static const char hz[] = "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n";
    assert_int_equal(conn_send(&held[0], hz, sizeof hz - 1), 0);
    char head[1024];
    assert_int_equal(read_head(&held[0], head, sizeof head), 200);
    for (int i = 0; i < MAX_CONN; i++)
        conn_close(&held[i]);
    /* once they are gone, new connections are served again */
    int status = -1;
    for (int i = 0; i < 20 && status != 200; i++) {
        status = get(&srv, "/healthz", NULL, NULL, 0);
        if (status != 200)
            sleep_ms(100);
    }
    assert_int_equal(status, 200);
}

static void test_slow_clients_cut_off(void **state)
{
    (void)state;
    enum { NSLOW = 4 };
    conn_t slow[NSLOW];
    double closed_at[NSLOW] = {0};
    double t0 = now_s();
    /* 0, 1: headers one byte at a time (slowloris) */
    assert_int_equal(tls_open(&srv, &slow[0]), 0);
    assert_int_equal(tls_open(&srv, &slow[1]), 0);
    assert_int_equal(conn_send(&slow[0], "PUT /mdm/connect HTTP/1.1\r\n", 27), 0);
    assert_int_equal(conn_send(&slow[1], "GET /healthz HTTP/1.1\r\n", 23), 0);
    /* 2: complete headers, a body that never finishes */
    assert_int_equal(tls_open(&srv, &slow[2]), 0);
    static const char partial[] = "PUT /mdm/connect HTTP/1.1\r\nHost: test\r\nContent-Length: 1000\r\n\r\n<?xml";
    assert_int_equal(conn_send(&slow[2], partial, sizeof partial - 1), 0);
    /* 3: TCP only, never starts TLS */
    slow[3].fd = tcp_open(srv.port);
    slow[3].ssl = NULL;
    assert_true(slow[3].fd >= 0);

    /* other clients are served promptly meanwhile */
    double r0 = now_s();
    assert_int_equal(get(&srv, "/healthz", NULL, NULL, 0), 200);
    assert_true(now_s() - r0 < 1.0);

    int open = NSLOW;
    int served_while_slow = 0;
    while (open > 0 && now_s() - t0 < TIMEOUT_S + 3) {
        for (int i = 0; i < NSLOW; i++) {
            if (closed_at[i] > 0)
                continue;
            if (closed_now(&slow[i])) {
                closed_at[i] = now_s() - t0;
                open--;
            } else if (i < 2) {
                conn_send(&slow[i], "X", 1); /* one more header byte: the read timeout restarts */
            }
        }
        if (now_s() - t0 > 1.0 && now_s() - t0 < TIMEOUT_S - 0.5 && !served_while_slow) {
            r0 = now_s();
            assert_int_equal(get(&srv, "/healthz", NULL, NULL, 0), 200);
            assert_true(now_s() - r0 < 1.0);
            served_while_slow = 1;
        }
        sleep_ms(200);
    }
    for (int i = 0; i < NSLOW; i++) {
        /* cut off at the --timeout (the sweep runs every 250 ms), not before */
        assert_true(closed_at[i] > 0);
        assert_true(closed_at[i] >= TIMEOUT_S - 0.5);
        assert_true(closed_at[i] <= TIMEOUT_S + 1.5);
        conn_close(&slow[i]);
    }
    assert_true(served_while_slow);
    assert_true(testserver_log_contains(&srv, "slow client: request incomplete after"));
    assert_true(testserver_log_contains(&srv, "slow client: TLS handshake not finished"));
    assert_true(testserver_log_contains(&srv, "within the 3-second --timeout"));
}

static void test_header_and_body_caps(void **state)
{
    (void)state;
    /* 40 KiB of headers */
    size_t big = 40 * 1024;
    char *raw = malloc(big + 128);
    int n = snprintf(raw, 128, "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Padding: ");
    memset(raw + n, 'a', big);
    memcpy(raw + n + big, "\r\n\r\n", 5);
    assert_int_equal(request(&srv, raw, strlen(raw), NULL, 0), 400);
    free(raw);
    assert_true(testserver_log_contains(&srv, "header block over the 32768-byte limit"));

    /* a declared body far over --max-body: refused before it is sent */
    static const char huge[] = "PUT /mdm/connect HTTP/1.1\r\nHost: test\r\nContent-Length: 99999999\r\n\r\n";
    assert_int_equal(request(&srv, huge, sizeof huge - 1, NULL, 0), 413);
    assert_true(testserver_log_contains(&srv, "request body over the 2097152-byte limit (refused before it was read)"));

    /* not HTTP at all */
    static const char junk[] = "\x01\x02 nonsense\r\n\r\n";
    assert_int_equal(request(&srv, junk, sizeof junk - 1, NULL, 0), 400);
    assert_true(testserver_log_contains(&srv, "malformed request line or headers"));

    /* the server is still fine */
    assert_int_equal(get(&srv, "/healthz", NULL, NULL, 0), 200);
}

static void test_enroll_rate_limit(void **state)
{
    (void)state;
    char head[4096];
    /* burst of 3 per address on /scep */
    for (int i = 0; i < 3; i++)
        assert_int_equal(get(&srv, "/scep?operation=GetCACaps", NULL, head, sizeof head), 200);
    assert_int_equal(get(&srv, "/scep?operation=GetCACaps", NULL, head, sizeof head), 429);
    assert_non_null(strstr(head, "Retry-After: 1\r\n"));
    assert_true(testserver_log_contains(&srv, "status=429"));
    assert_true(testserver_log_contains(&srv, "rate limit: 127.0.0.1 sent more than 1 requests/s (burst 3) to /scep"));
    /* X-Forwarded-For from an untrusted peer changes nothing */
    assert_int_equal(get(&srv, "/scep?operation=GetCACaps", "X-Forwarded-For: 203.0.113.9\r\n", head, sizeof head),
                     429);
    /* /enroll has its own bucket; other endpoints are not limited */
    assert_int_not_equal(get(&srv, "/enroll", NULL, head, sizeof head), 429);
    for (int i = 0; i < 10; i++)
        assert_int_equal(get(&srv, "/healthz", NULL, NULL, 0), 200);
    /* a token per second comes back */
    sleep_ms(1100);
    assert_int_equal(get(&srv, "/scep?operation=GetCACaps", NULL, head, sizeof head), 200);
    assert_int_equal(get(&srv, "/scep?operation=GetCACaps", NULL, head, sizeof head), 429);
    /* sub-paths share the prefix's bucket */
    assert_int_equal(get(&srv, "/scep/pkiclient.exe?operation=GetCACaps", NULL, head, sizeof head), 429);
}

static void test_trusted_proxy_forwarded_address(void **state)
{
    (void)state;
    testserver_t px;
    static const char *const args[] = {"--trusted-proxy", "127.0.0.1", "--enroll-rate", "1/m",
                                       "--enroll-burst",  "2",         NULL};
    assert_int_equal(testserver_start(&px, args), 0);
    char head[4096];
    const char *a = "X-Forwarded-For: 198.51.100.1\r\n";
    assert_int_equal(get(&px, "/scep?operation=GetCACaps", a, head, sizeof head), 200);
    assert_int_equal(get(&px, "/scep?operation=GetCACaps", a, head, sizeof head), 200);
    assert_int_equal(get(&px, "/scep?operation=GetCACaps", a, head, sizeof head), 429);
    assert_non_null(strstr(head, "Retry-After: 60\r\n"));
    assert_true(testserver_log_contains(&px, "rate limit: 198.51.100.1 sent more than"));
    assert_true(testserver_log_contains(&px, "client=198.51.100.1"));
    /* the proxy's own entry is the last one; a client-written one before it is ignored */
    assert_int_equal(get(&px, "/scep?operation=GetCACaps", "X-Forwarded-For: 192.0.2.77, 198.51.100.1\r\n", head,
                         sizeof head),
                     429);
    /* another client behind the proxy has its own bucket */
    assert_int_equal(get(&px, "/scep?operation=GetCACaps", "X-Forwarded-For: 198.51.100.2\r\n", head, sizeof head),
                     200);
    /* an entry that is not an address falls back to the peer */
    assert_int_equal(get(&px, "/scep?operation=GetCACaps", "X-Forwarded-For: unknown\r\n", head, sizeof head), 200);
    assert_true(testserver_log_contains(&px, "remote=127.0.0.1"));
    assert_int_equal(testserver_stop(&px), 0);
}

/* POST body to path with X-Forwarded-For: addr (the server trusts the
 * loopback proxy), on a new TLS connection; the status. */
static int post_from(const testserver_t *s, const char *path, const char *addr, const void *body, size_t len,
                     char *head, size_t hlen)
{
    char *hdr = util_strdup_printf("POST %s HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: %s\r\n"
                                   "Content-Type: application/octet-stream\r\nContent-Length: %zu\r\n"
                                   "Connection: close\r\n\r\n",
                                   path, addr, len);
    size_t hl = strlen(hdr);
    char *raw = malloc(hl + len);
    memcpy(raw, hdr, hl);
    memcpy(raw + hl, body, len);
    int st = request(s, raw, hl + len, head, hlen);
    free(raw);
    free(hdr);
    return st;
}

/* One identity is limited whatever address it comes from: a signed
 * MachineInfo's UDID on /enroll (and /enroll/watch, its own bucket), a SCEP
 * request's key on /scep. Every request here comes from a new address, so
 * the address limit never applies. */
static void test_enroll_identity_rate_limit(void **state)
{
    (void)state;
    char dir[] = "/tmp/orchard-idlimit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(testpki_make_ca(dir, "appleca"), 0);
    char *ca_pem = util_strdup_printf("%s/appleca.pem", dir), *ca_key = util_strdup_printf("%s/appleca.key", dir);
    testserver_t px;
    const char *args[] = {"--trusted-proxy", "127.0.0.1", "--machineinfo-ca", ca_pem, "--enroll-identity-rate",
                          "1/h", "--enroll-identity-burst", "2", NULL};
    assert_int_equal(testserver_start(&px, args), 0);
    char head[4096], addr[32];
    int n = 0;

    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testpki_issue_device_identity(ca_pem, ca_key, "device identity", &key, &cert), 0);
    size_t len = 0, len2 = 0;
    unsigned char *mi = watchsim_machineinfo(cert, key, "UDID-IDLIMIT-1", "SERIAL-1", NULL, 0, &len);
    unsigned char *mi2 = watchsim_machineinfo(cert, key, "UDID-IDLIMIT-2", "SERIAL-2", NULL, 0, &len2);
    assert_non_null(mi);
    assert_non_null(mi2);
    for (int i = 0; i < 2; i++) {
        snprintf(addr, sizeof addr, "198.51.100.%d", ++n);
        assert_int_not_equal(post_from(&px, "/enroll", addr, mi, len, head, sizeof head), 429);
    }
    snprintf(addr, sizeof addr, "198.51.100.%d", ++n);
    assert_int_equal(post_from(&px, "/enroll", addr, mi, len, head, sizeof head), 429);
    assert_non_null(strstr(head, "Retry-After: "));
    assert_true(testserver_log_contains(&px, "rate limit: identity UDID-IDLIMIT-1 sent more than"));
    /* Another device, and the same device on another endpoint, are not held. */
    snprintf(addr, sizeof addr, "198.51.100.%d", ++n);
    assert_int_not_equal(post_from(&px, "/enroll", addr, mi2, len2, head, sizeof head), 429);
    snprintf(addr, sizeof addr, "198.51.100.%d", ++n);
    assert_int_not_equal(post_from(&px, "/enroll/watch", addr, mi, len, head, sizeof head), 429);
    free(mi);
    free(mi2);
    EVP_PKEY_free(key);
    X509_free(cert);

    /* SCEP: the same request key, its self-signed certificate made anew each
     * time, then a new key. */
    X509 *server_ca = NULL;
    FILE *f = fopen(px.ca_path, "r");
    assert_non_null(f);
    server_ca = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    assert_non_null(server_ca);
    EVP_PKEY *rkey = EVP_RSA_gen(2048);
    assert_non_null(rkey);
    for (int i = 0; i < 4; i++) {
        testscep_opts_t o = {.cn = "UDID-IDLIMIT-SCEP", .challenge = "not-a-challenge", .key = i < 3 ? rkey : NULL};
        testscep_request_t rq;
        char err[256];
        assert_int_equal(testscep_build_request(&o, server_ca, &rq, err, sizeof err), 0);
        snprintf(addr, sizeof addr, "203.0.113.%d", ++n);
        int st = post_from(&px, "/scep?operation=PKIOperation", addr, rq.der, rq.der_len, head, sizeof head);
        if (i == 2)
            assert_int_equal(st, 429);
        else
            assert_int_not_equal(st, 429); /* a CertRep (FAILURE: bad challenge) */
        testscep_request_free(&rq);
    }
    EVP_PKEY_free(rkey);
    X509_free(server_ca);
    assert_true(testserver_log_contains(&px, "to /scep; retry in"));
    assert_int_equal(testserver_stop(&px), 0);
    char *rm = util_strdup_printf("rm -rf '%s'", dir);
    assert_int_equal(system(rm), 0);
    free(rm);
    free(ca_pem);
    free(ca_key);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_max_connections),
        cmocka_unit_test(test_slow_clients_cut_off),
        cmocka_unit_test(test_header_and_body_caps),
        cmocka_unit_test(test_enroll_rate_limit),
        cmocka_unit_test(test_trusted_proxy_forwarded_address),
        cmocka_unit_test(test_enroll_identity_rate_limit),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
