/* Mock APNs server (see mockapns.h): one thread, poll(), OpenSSL in
 * non-blocking mode, libnghttp2 driven through its memory interface
 * (mem_recv / mem_send) so the TLS layer stays in our hands. */
#include "mockapns.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <nghttp2/nghttp2.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#define MAX_CONNS 256
#define MAX_RULES 64

typedef struct {
    char token[256]; /* "" = any */
    mockapns_action_t action;
    int remaining;   /* < 0: unlimited */
} rule_t;

typedef struct stream {
    struct stream *prev, *next; /* the connection's open streams */
    int32_t id;
    mockapns_req_t req;
    char resp[256];
    size_t resp_len, resp_off;
} stream_t;

typedef struct conn {
    struct mockapns *m;
    int fd;
    SSL *ssl;
    nghttp2_session *h2;
    int handshaken;
    int closing;   /* flush what is queued, then close */
    int kill;      /* close now */
    int draining;  /* handshake refused: alert sent, discarding input until EOF */
    time_t drain_until;
    int id;
    char uid[256];
    unsigned char *out;
    size_t out_len, out_cap;
    stream_t *streams; /* freed with the connection if still open (stalled) */
} conn_t;

struct mockapns {
    int lfd, port;
    int debug; /* MOCKAPNS_DEBUG set: say on stderr why connections end */
    char url[64];
    char server_pem[300];
    SSL_CTX *ctx;
    pthread_t thread;
    volatile int stop;
    conn_t *conns[MAX_CONNS];
    pthread_mutex_t mu; /* below */
    pthread_cond_t cv;
    rule_t rules[MAX_RULES];
    int nrules;
    mockapns_action_t dflt;
    int recording;
    mockapns_req_t *reqs;
    size_t nreqs, cap;
    size_t count;
    int connections;
};

/* ---- certificate ------------------------------------------------------------- */

static int add_ext(X509 *c, int nid, const char *value)
{
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, c, c, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
    if (!ext)
        return -1;
    int ok = X509_add_ext(c, ext, -1);
    X509_EXTENSION_free(ext);
    return ok ? 0 : -1;
}

/* A self-signed P-256 server certificate for 127.0.0.1, written to path
 * (certificate only) and loaded into ctx. */
static int server_identity(SSL_CTX *ctx, const char *path)
{
    EVP_PKEY *key = EVP_EC_gen("P-256");
    X509 *c = X509_new();
    int rc = -1;
    if (!key || !c)
        goto out;
    X509_set_version(c, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(c), (long)time(NULL));
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_NAME *n = X509_get_subject_name(c);
    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"mock APNs", -1, -1, 0);
    X509_set_issuer_name(c, n);
    X509_set_pubkey(c, key);
    if (add_ext(c, NID_basic_constraints, "critical,CA:TRUE") || add_ext(c, NID_subject_alt_name, "IP:127.0.0.1") ||
        add_ext(c, NID_ext_key_usage, "serverAuth") || !X509_sign(c, key, EVP_sha256()))
        goto out;
    FILE *f = fopen(path, "w");
    if (!f)
        goto out;
    int ok = PEM_write_X509(f, c);
    fclose(f);
    if (ok && SSL_CTX_use_certificate(ctx, c) == 1 && SSL_CTX_use_PrivateKey(ctx, key) == 1)
        rc = 0;
out:
    X509_free(c);
    EVP_PKEY_free(key);
    return rc;
}

static int alpn_select(SSL *ssl, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
                       unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    for (unsigned int i = 0; i < inlen;) {
        unsigned int len = in[i];
        if (i + 1 + len > inlen)
            break;
        if (len == 2 && memcmp(in + i + 1, "h2", 2) == 0) {
            *out = in + i + 1;
            *outlen = 2;
            return SSL_TLSEXT_ERR_OK;
        }
        i += 1 + len;
    }
    return SSL_TLSEXT_ERR_ALERT_FATAL; /* APNs speaks HTTP/2 only */
}

/* ---- requests ------------------------------------------------------------------ */

static int out_append(conn_t *c, const uint8_t *data, size_t len);
static void conn_flush(conn_t *c);

static mockapns_action_t decide(mockapns_t *m, const char *token)
{
    mockapns_action_t a = m->dflt;
    for (int i = 0; i < m->nrules; i++) {
        rule_t *r = &m->rules[i];
        if (r->remaining == 0 || (r->token[0] && strcmp(r->token, token) != 0))
            continue;
        if (r->remaining > 0)
            r->remaining--;
        return r->action;
    }
    return a;
}

static ssize_t read_body(nghttp2_session *s, int32_t sid, uint8_t *buf, size_t len, uint32_t *flags,
                         nghttp2_data_source *src, void *ud)
{
    (void)s;
    (void)sid;
    (void)ud;
    stream_t *st = src->ptr;
    size_t n = st->resp_len - st->resp_off;
    if (n > len)
        n = len;
    memcpy(buf, st->resp + st->resp_off, n);
    st->resp_off += n;
    if (st->resp_off == st->resp_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

#define NV(name, value)                                                                                          \
    {                                                                                                            \
        (uint8_t *)(name), (uint8_t *)(value), sizeof(name) - 1, strlen(value), NGHTTP2_NV_FLAG_NONE            \
    }

static void answer(mockapns_t *m, conn_t *c, stream_t *st)
{
    const char *path = st->req.path;
    const char *slash = strrchr(path, '/');
    const char *token = slash ? slash + 1 : "";
    pthread_mutex_lock(&m->mu);
    st->req.conn = c->id;
    snprintf(st->req.client_uid, sizeof st->req.client_uid, "%s", c->uid);
    if (m->recording) {
        if (m->nreqs == m->cap) {
            size_t cap = m->cap ? 2 * m->cap : 64;
            mockapns_req_t *r = realloc(m->reqs, cap * sizeof *r);
            if (r) {
                m->reqs = r;
                m->cap = cap;
            }
        }
        if (m->nreqs < m->cap)
            m->reqs[m->nreqs++] = st->req;
    }
    m->count++;
    mockapns_action_t a = decide(m, token);
    pthread_cond_broadcast(&m->cv);
    pthread_mutex_unlock(&m->mu);

    int status = 200;
    const char *reason = NULL;
    switch (a) {
    case MOCKAPNS_OK: break;
    case MOCKAPNS_BAD_TOKEN: status = 400, reason = "BadDeviceToken"; break;
    case MOCKAPNS_UNREGISTERED: status = 410, reason = "Unregistered"; break;
    case MOCKAPNS_TOO_MANY: status = 429, reason = "TooManyRequests"; break;
    case MOCKAPNS_SERVER_ERROR: status = 500, reason = "InternalServerError"; break;
    case MOCKAPNS_UNAVAILABLE: status = 503, reason = "ServiceUnavailable"; break;
    case MOCKAPNS_FORBIDDEN: status = 403, reason = "BadCertificate"; break;
    case MOCKAPNS_GARBAGE: {
        /* Bytes no HTTP/2 peer can parse (frames nghttp2 still holds are
         * never sent); the connection closes once they are written. */
        static const char junk[] = "HTTP/1.1 200 OK\r\n\r\n\x00\xff\xfe garbage, not a frame";
        if (out_append(c, (const uint8_t *)junk, sizeof junk) != 0)
            c->kill = 1;
        c->closing = 1;
        return;
    }
    case MOCKAPNS_CLOSE: c->kill = 1; return;
    case MOCKAPNS_STALL: return;
    }
    char status_s[8], id[40];
    snprintf(status_s, sizeof status_s, "%d", status);
    snprintf(id, sizeof id, "%08X-0000-4000-8000-%012zX", (unsigned)c->id, m->count);
    nghttp2_nv hdrs[] = {NV(":status", status_s), NV("apns-id", id), NV("content-type", "application/json")};
    if (!reason) {
        nghttp2_submit_response(c->h2, st->id, hdrs, 2, NULL);
        return;
    }
    if (status == 410)
        st->resp_len = (size_t)snprintf(st->resp, sizeof st->resp, "{\"reason\":\"%s\",\"timestamp\":%lld}", reason,
                                        (long long)time(NULL) * 1000);
    else
        st->resp_len = (size_t)snprintf(st->resp, sizeof st->resp, "{\"reason\":\"%s\"}", reason);
    nghttp2_data_provider prd = {.source.ptr = st, .read_callback = read_body};
    nghttp2_submit_response(c->h2, st->id, hdrs, 3, &prd);
}

/* ---- nghttp2 callbacks ---------------------------------------------------------- */

static int on_begin_headers(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    conn_t *c = ud;
    if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    stream_t *st = calloc(1, sizeof *st);
    if (!st)
        return NGHTTP2_ERR_CALLBACK_FAILURE;
    st->id = f->hd.stream_id;
    st->next = c->streams;
    if (c->streams)
        c->streams->prev = st;
    c->streams = st;
    nghttp2_session_set_stream_user_data(s, f->hd.stream_id, st);
    return 0;
}

static void copy_field(char *dst, size_t cap, const uint8_t *v, size_t len)
{
    if (len >= cap)
        len = cap - 1;
    memcpy(dst, v, len);
    dst[len] = '\0';
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t namelen,
                     const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
    (void)flags;
    (void)ud;
    stream_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
    if (!st)
        return 0;
    mockapns_req_t *r = &st->req;
#define IS(n) (namelen == sizeof(n) - 1 && memcmp(name, n, namelen) == 0)
    if (IS(":path"))
        copy_field(r->path, sizeof r->path, value, valuelen);
    else if (IS(":method"))
        copy_field(r->method, sizeof r->method, value, valuelen);
    else if (IS("apns-topic"))
        copy_field(r->topic, sizeof r->topic, value, valuelen);
    else if (IS("apns-push-type"))
        copy_field(r->push_type, sizeof r->push_type, value, valuelen);
    else if (IS("apns-priority"))
        copy_field(r->priority, sizeof r->priority, value, valuelen);
    else if (IS("apns-expiration"))
        copy_field(r->expiration, sizeof r->expiration, value, valuelen);
#undef IS
    return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t sid, const uint8_t *data, size_t len, void *ud)
{
    (void)flags;
    (void)ud;
    stream_t *st = nghttp2_session_get_stream_user_data(s, sid);
    if (!st)
        return 0;
    size_t room = sizeof st->req.body - 1 - st->req.body_len;
    size_t n = len < room ? len : room;
    memcpy(st->req.body + st->req.body_len, data, n);
    st->req.body_len += n;
    st->req.body[st->req.body_len] = '\0';
    return 0;
}

/* Diagnostics for MOCKAPNS_DEBUG=1 only (off by default). */
__attribute__((format(printf, 2, 3))) static void debugf(const conn_t *c, const char *fmt, ...)
{
    if (!c->m->debug)
        return;
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "mockapns: conn %d: ", c->id);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    conn_t *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY)
        debugf(c, "got GOAWAY %s", nghttp2_http2_strerror(f->goaway.error_code));
    if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) && (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
        stream_t *st = nghttp2_session_get_stream_user_data(s, f->hd.stream_id);
        if (st)
            answer(c->m, c, st);
    }
    return 0;
}

/* Why a session ends. */
static int on_frame_send(nghttp2_session *s, const nghttp2_frame *f, void *ud)
{
    (void)s;
    conn_t *c = ud;
    if (f->hd.type == NGHTTP2_GOAWAY)
        debugf(c, "sent GOAWAY %s", nghttp2_http2_strerror(f->goaway.error_code));
    return 0;
}

static int on_close(nghttp2_session *s, int32_t sid, uint32_t code, void *ud)
{
    (void)code;
    conn_t *c = ud;
    stream_t *st = nghttp2_session_get_stream_user_data(s, sid);
    if (st) {
        nghttp2_session_set_stream_user_data(s, sid, NULL);
        if (st->prev)
            st->prev->next = st->next;
        else
            c->streams = st->next;
        if (st->next)
            st->next->prev = st->prev;
        free(st);
    }
    return 0;
}

/* ---- connections ------------------------------------------------------------------ */

static void conn_free(conn_t *c)
{
    if (!c)
        return;
    nghttp2_session_del(c->h2);
    for (stream_t *st = c->streams, *next; st; st = next) {
        next = st->next;
        free(st);
    }
    SSL_free(c->ssl);
    close(c->fd);
    free(c->out);
    free(c);
}

static int out_append(conn_t *c, const uint8_t *data, size_t len)
{
    if (c->out_len + len > c->out_cap) {
        size_t cap = (c->out_len + len) * 2;
        unsigned char *o = realloc(c->out, cap);
        if (!o)
            return -1;
        c->out = o;
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, data, len);
    c->out_len += len;
    return 0;
}

/* Serializes what nghttp2 has to say and writes as much as TLS takes. */
static void conn_flush(conn_t *c)
{
    if (c->h2 && !c->closing) {
        for (;;) {
            const uint8_t *data;
            ssize_t n = nghttp2_session_mem_send(c->h2, &data);
            if (n < 0) {
                debugf(c, "send: %s", nghttp2_strerror((int)n));
                c->kill = 1;
                return;
            }
            if (n == 0)
                break;
            if (out_append(c, data, (size_t)n) != 0) {
                c->kill = 1;
                return;
            }
        }
    }
    size_t off = 0;
    while (off < c->out_len) {
        int n = SSL_write(c->ssl, c->out + off, (int)(c->out_len - off));
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
                c->kill = 1;
            break;
        }
        off += (size_t)n;
    }
    memmove(c->out, c->out + off, c->out_len - off);
    c->out_len -= off;
    if (c->closing && c->out_len == 0)
        c->kill = 1;
}

static int session_start(conn_t *c)
{
    nghttp2_session_callbacks *cb;
    nghttp2_option *opt;
    if (nghttp2_option_new(&opt) != 0)
        return -1;
    /* nghttp2's rapid-reset guard (CVE-2023-44487, in Debian's 1.52.0 by
     * backport) counts every RST_STREAM a client sends, even for a stream
     * that is already closed, and answers GOAWAY INTERNAL_ERROR once a
     * bucket of 1000 (refilled at 33/s) is spent. libcurl 7.88 sends
     * RST_STREAM(STREAM_CLOSED) after *every* completed stream, so a
     * provider pushing thousands per second had its connection torn down
     * every ~1000 pushes: refused streams, retries and duplicate pushes that
     * h2load (which never resets) did not see. The mock counts no resets. */
    nghttp2_option_set_stream_reset_rate_limit(opt, UINT64_MAX, UINT64_MAX);
    if (nghttp2_session_callbacks_new(&cb) != 0) {
        nghttp2_option_del(opt);
        return -1;
    }
    nghttp2_session_callbacks_set_on_begin_headers_callback(cb, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
    int rc = nghttp2_session_server_new2(&c->h2, cb, c, opt);
    nghttp2_session_callbacks_del(cb);
    nghttp2_option_del(opt);
    if (rc != 0)
        return -1;
    /* What APNs advertises: up to 1000 concurrent streams. */
    nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
    return nghttp2_submit_settings(c->h2, NGHTTP2_FLAG_NONE, iv, 1) == 0 ? 0 : -1;
}

static void peer_uid(conn_t *c)
{
    X509 *peer = SSL_get1_peer_certificate(c->ssl);
    if (!peer)
        return;
    X509_NAME *n = X509_get_subject_name(peer);
    int i = X509_NAME_get_index_by_NID(n, NID_userId, -1);
    if (i >= 0) {
        unsigned char *utf8 = NULL;
        int len = ASN1_STRING_to_UTF8(&utf8, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
        if (len > 0)
            snprintf(c->uid, sizeof c->uid, "%.*s", len, utf8);
        OPENSSL_free(utf8);
    }
    X509_free(peer);
}

static void conn_io(mockapns_t *m, conn_t *c)
{
    if (c->draining) {
        char junk[4096];
        ssize_t n;
        while ((n = recv(c->fd, junk, sizeof junk, 0)) > 0)
            ;
        if (n == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            c->kill = 1;
        return;
    }
    if (!c->handshaken) {
        int rc = SSL_accept(c->ssl);
        if (rc != 1) {
            int e = SSL_get_error(c->ssl, rc);
            if (e == SSL_ERROR_SSL) {
                /* A refused client certificate. With TLS 1.3 the client has
                 * already sent its request: closing with that unread would
                 * reset the connection and the client could lose the alert
                 * (it saw "connection reset" instead of "unknown ca", at
                 * random). Half-close after the alert and drain instead. */
                debugf(c, "handshake refused");
                shutdown(c->fd, SHUT_WR);
                c->draining = 1;
                c->drain_until = time(NULL) + 2;
            } else if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                c->kill = 1;
            }
            ERR_clear_error();
            return;
        }
        c->handshaken = 1;
        peer_uid(c);
        pthread_mutex_lock(&m->mu);
        c->id = ++m->connections;
        pthread_mutex_unlock(&m->mu);
        if (session_start(c) != 0) {
            c->kill = 1;
            return;
        }
    }
    unsigned char buf[16384];
    for (;;) {
        int n = SSL_read(c->ssl, buf, sizeof buf);
        if (n <= 0) {
            int e = SSL_get_error(c->ssl, n);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                if (e != SSL_ERROR_ZERO_RETURN)
                    debugf(c, "read error %d", e);
                c->kill = 1; /* peer closed or TLS error */
            }
            ERR_clear_error();
            break;
        }
        if (c->closing)
            continue;
        ssize_t rv = nghttp2_session_mem_recv(c->h2, buf, (size_t)n);
        if (rv < 0) {
            debugf(c, "%s", nghttp2_strerror((int)rv));
            c->kill = 1;
            return;
        }
        if (c->kill)
            return;
    }
    if (!c->kill)
        conn_flush(c);
    if (c->h2 && !c->closing && !nghttp2_session_want_read(c->h2) && !nghttp2_session_want_write(c->h2) &&
        c->out_len == 0) {
        debugf(c, "session done");
        c->kill = 1;
    }
}

static void accept_one(mockapns_t *m)
{
    int fd = accept(m->lfd, NULL, NULL);
    if (fd < 0)
        return;
    int slot = -1;
    for (int i = 0; i < MAX_CONNS; i++)
        if (!m->conns[i]) {
            slot = i;
            break;
        }
    conn_t *c = slot >= 0 ? calloc(1, sizeof *c) : NULL;
    if (!c) {
        close(fd);
        return;
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->m = m;
    c->fd = fd;
    if (!(c->ssl = SSL_new(m->ctx))) {
        close(fd);
        free(c);
        return;
    }
    SSL_set_fd(c->ssl, fd);
    SSL_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    m->conns[slot] = c;
    conn_io(m, c);
}

static void *serve(void *arg)
{
    mockapns_t *m = arg;
    struct pollfd pfd[MAX_CONNS + 1];
    conn_t *who[MAX_CONNS + 1];
    while (!m->stop) {
        int n = 0;
        pfd[n] = (struct pollfd){.fd = m->lfd, .events = POLLIN};
        who[n++] = NULL;
        for (int i = 0; i < MAX_CONNS; i++) {
            conn_t *c = m->conns[i];
            if (!c)
                continue;
            pfd[n] = (struct pollfd){.fd = c->fd, .events = (short)(POLLIN | (c->out_len ? POLLOUT : 0))};
            who[n++] = c;
        }
        if (poll(pfd, (nfds_t)n, 50) <= 0)
            continue;
        if (pfd[0].revents & POLLIN)
            accept_one(m);
        for (int i = 1; i < n; i++)
            if (pfd[i].revents)
                conn_io(m, who[i]);
        time_t now = time(NULL);
        for (int i = 0; i < MAX_CONNS; i++)
            if (m->conns[i] && (m->conns[i]->kill || (m->conns[i]->draining && now > m->conns[i]->drain_until))) {
                conn_free(m->conns[i]);
                m->conns[i] = NULL;
            }
    }
    return NULL;
}

/* ---- public ---------------------------------------------------------------------------- */

mockapns_t *mockapns_start(const char *dir, const char *client_ca_path)
{
    mockapns_t *m = calloc(1, sizeof *m);
    if (!m)
        return NULL;
    pthread_mutex_init(&m->mu, NULL);
    pthread_cond_init(&m->cv, NULL);
    m->recording = 1;
    m->dflt = MOCKAPNS_OK;
    const char *dbg = getenv("MOCKAPNS_DEBUG");
    m->debug = dbg && *dbg && strcmp(dbg, "0") != 0;
    m->lfd = -1;
    snprintf(m->server_pem, sizeof m->server_pem, "%s/mockapns-server.pem", dir);
    if (!(m->ctx = SSL_CTX_new(TLS_server_method())) || server_identity(m->ctx, m->server_pem) != 0)
        goto fail;
    SSL_CTX_set_min_proto_version(m->ctx, TLS1_2_VERSION);
    SSL_CTX_set_alpn_select_cb(m->ctx, alpn_select, NULL);
    if (client_ca_path) {
        if (SSL_CTX_load_verify_locations(m->ctx, client_ca_path, NULL) != 1)
            goto fail;
        SSL_CTX_set_verify(m->ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, NULL);
    }
    m->lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int one = 1;
    setsockopt(m->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (m->lfd < 0 || bind(m->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(m->lfd, 64) != 0 ||
        getsockname(m->lfd, (struct sockaddr *)&a, &len) != 0)
        goto fail;
    fcntl(m->lfd, F_SETFL, fcntl(m->lfd, F_GETFL) | O_NONBLOCK);
    m->port = ntohs(a.sin_port);
    snprintf(m->url, sizeof m->url, "https://127.0.0.1:%d", m->port);
    if (pthread_create(&m->thread, NULL, serve, m) != 0)
        goto fail;
    return m;
fail:
    ERR_print_errors_fp(stderr);
    if (m->lfd >= 0)
        close(m->lfd);
    SSL_CTX_free(m->ctx);
    free(m);
    return NULL;
}

void mockapns_stop(mockapns_t *m)
{
    if (!m)
        return;
    m->stop = 1;
    pthread_join(m->thread, NULL);
    for (int i = 0; i < MAX_CONNS; i++)
        conn_free(m->conns[i]);
    close(m->lfd);
    SSL_CTX_free(m->ctx);
    free(m->reqs);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->cv);
    free(m);
}

int mockapns_port(const mockapns_t *m)
{
    return m->port;
}

const char *mockapns_server_ca(const mockapns_t *m)
{
    return m->server_pem;
}

const char *mockapns_url(const mockapns_t *m)
{
    return m->url;
}

void mockapns_default(mockapns_t *m, mockapns_action_t a)
{
    pthread_mutex_lock(&m->mu);
    m->dflt = a;
    pthread_mutex_unlock(&m->mu);
}

void mockapns_script(mockapns_t *m, const char *token_hex, mockapns_action_t a, int count)
{
    pthread_mutex_lock(&m->mu);
    if (m->nrules < MAX_RULES) {
        rule_t *r = &m->rules[m->nrules++];
        snprintf(r->token, sizeof r->token, "%s", token_hex ? token_hex : "");
        r->action = a;
        r->remaining = count;
    }
    pthread_mutex_unlock(&m->mu);
}

void mockapns_reset(mockapns_t *m)
{
    pthread_mutex_lock(&m->mu);
    m->nrules = 0;
    m->nreqs = 0;
    m->count = 0;
    m->connections = 0;
    m->dflt = MOCKAPNS_OK;
    pthread_mutex_unlock(&m->mu);
}

void mockapns_set_recording(mockapns_t *m, int on)
{
    pthread_mutex_lock(&m->mu);
    m->recording = on;
    pthread_mutex_unlock(&m->mu);
}

size_t mockapns_count(mockapns_t *m)
{
    pthread_mutex_lock(&m->mu);
    size_t n = m->count;
    pthread_mutex_unlock(&m->mu);
    return n;
}

size_t mockapns_count_token(mockapns_t *m, const char *token_hex)
{
    size_t n = 0, tl = strlen(token_hex);
    pthread_mutex_lock(&m->mu);
    for (size_t i = 0; i < m->nreqs; i++) {
        size_t pl = strlen(m->reqs[i].path);
        if (pl >= tl && strcmp(m->reqs[i].path + pl - tl, token_hex) == 0)
            n++;
    }
    pthread_mutex_unlock(&m->mu);
    return n;
}

int mockapns_get(mockapns_t *m, size_t i, mockapns_req_t *out)
{
    pthread_mutex_lock(&m->mu);
    int ok = i < m->nreqs;
    if (ok)
        *out = m->reqs[i];
    pthread_mutex_unlock(&m->mu);
    return ok ? 0 : -1;
}

int mockapns_connections(mockapns_t *m)
{
    pthread_mutex_lock(&m->mu);
    int n = m->connections;
    pthread_mutex_unlock(&m->mu);
    return n;
}

int mockapns_wait(mockapns_t *m, size_t n, int timeout_ms)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += timeout_ms / 1000;
    until.tv_nsec += (long)(timeout_ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&m->mu);
    int rc = 0;
    while (m->count < n && rc == 0)
        rc = pthread_cond_timedwait(&m->cv, &m->mu, &until);
    int ok = m->count >= n;
    pthread_mutex_unlock(&m->mu);
    return ok ? 0 : -1;
}
