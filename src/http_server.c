/* HTTP(S) front on libevent's evhttp with OpenSSL bufferevents.
 *
 * One event loop per worker thread; every worker binds the same port with
 * SO_REUSEPORT so the kernel spreads connections, and each worker owns its
 * own store handle, so a request never waits on another thread's lock.
 * TLS asks for a client certificate but does not fail the handshake without
 * one: identity is decided per request by the handlers, so a device with a
 * bad certificate gets the 401 Apple's protocol expects (not a TLS alert) and
 * a log line naming the problem, and the admin API works without one.
 */
#include "http_server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <sys/queue.h>
#include <pthread.h>
#include <stdatomic.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <event2/thread.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/socket.h>

#include "log.h"
#include "ratelimit.h"
#include "util.h"

/* Headers larger than this are refused by evhttp with 400 (logged by the
 * connection guard below, which sees evhttp's own answers). */
#define MAX_HEADERS_SIZE (32 * 1024)
/* How often each worker looks for connections past their deadline. */
#define SWEEP_INTERVAL_MS 250
/* Keys the enrollment rate limiter holds at most (~150 bytes each). */
#define ENROLL_LIMIT_KEYS 65536
/* Lines per second for each kind of connection-level log line, so a flood
 * of refused or slow connections cannot flood the log as well. */
#define THROTTLE_LINES_PER_S 5

typedef struct {
    pthread_mutex_t mu;
    int64_t window_us;
    int lines;
    long suppressed;
} log_throttle_t;

/* Shared by all workers: the connection count and the limits. */
typedef struct {
    atomic_int open;
    int max;
    int64_t timeout_us;
    size_t max_body;
    log_throttle_t refused_log, slow_log;
} conn_guard_t;

typedef struct conn_slot conn_slot_t;

typedef struct {
    worker_t w;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    struct event *sweep_ev;
    SSL_CTX *ssl_ctx;
    conn_guard_t *guard;
    conn_slot_t *conns; /* this worker's open TLS connections */
    pthread_t thread;
    int started;
} worker_thread_t;

/* ---- request/response helpers used by handlers ---------------------------- */

const char *http_header(const http_request_t *r, const char *name)
{
    return evhttp_find_header(evhttp_request_get_input_headers(r->ev), name);
}

const char *http_query(const http_request_t *r, const char *name, char *buf, size_t len)
{
    if (!r->query || len == 0)
        return NULL;
    struct evkeyvalq params;
    TAILQ_INIT(&params);
    if (evhttp_parse_query_str(r->query, &params) != 0) {
        evhttp_clear_headers(&params);
        return NULL;
    }
    const char *v = evhttp_find_header(&params, name);
    const char *out = NULL;
    if (v) {
        snprintf(buf, len, "%s", v);
        out = buf;
    }
    evhttp_clear_headers(&params);
    return out;
}

void http_set_log(char *field, size_t size, const char *value)
{
    snprintf(field, size, "%s", value ? value : "");
}

void http_reply(http_response_t *resp, int status, const char *content_type, const void *data, size_t len)
{
    resp->status = status;
    resp->content_type = content_type;
    evbuffer_drain(resp->body, evbuffer_get_length(resp->body));
    if (len)
        evbuffer_add(resp->body, data, len);
}

void http_reply_json(http_response_t *resp, int status, json_t *json)
{
    char *text = json ? json_dumps(json, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
    json_decref(json);
    if (!text) {
        http_refuse(resp, 500, 1, "out of memory encoding JSON");
        return;
    }
    size_t n = strlen(text);
    http_reply(resp, status, "application/json", text, n);
    evbuffer_add(resp->body, "\n", 1);
    free(text);
}

void http_refuse(http_response_t *resp, int status, int as_json, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(resp->log_problem, sizeof resp->log_problem, fmt, ap);
    va_end(ap);
    if (as_json) {
        json_t *j = json_pack("{s:s}", "error", resp->log_problem);
        char *text = j ? json_dumps(j, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        json_decref(j);
        http_reply(resp, status, "application/json", text ? text : "", text ? strlen(text) : 0);
        evbuffer_add(resp->body, "\n", 1);
        free(text);
    } else {
        http_reply(resp, status, "text/plain; charset=utf-8", resp->log_problem, strlen(resp->log_problem));
        evbuffer_add(resp->body, "\n", 1);
    }
}

void http_add_header(http_response_t *resp, const char *name, const char *value)
{
    if (resp->nheaders >= HTTP_MAX_EXTRA_HEADERS)
        return;
    resp->header_names[resp->nheaders] = name;
    resp->header_values[resp->nheaders] = strdup(value);
    resp->nheaders++;
}

/* ---- per-connection identity memo ------------------------------------------ */

typedef struct {
    char sha256[65];
    int64_t at;
} conn_identity_t;

static int conn_identity_index = -1;
static int conn_slot_index = -1;
static pthread_once_t ex_index_once = PTHREAD_ONCE_INIT;

static void conn_identity_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void conn_slot_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp);

static void ex_index_init(void)
{
    conn_identity_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_identity_free);
    conn_slot_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_slot_free);
}

static SSL *request_ssl(struct evhttp_request *ev)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(ev);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    return bev ? bufferevent_openssl_get_ssl(bev) : NULL;
}

const char *http_conn_identity(const http_request_t *r, int64_t now, int64_t max_age_s)
{
    pthread_once(&ex_index_once, ex_index_init);
    SSL *ssl = conn_identity_index >= 0 ? request_ssl(r->ev) : NULL;
    conn_identity_t *c = ssl ? SSL_get_ex_data(ssl, conn_identity_index) : NULL;
    return c && now - c->at < max_age_s ? c->sha256 : NULL;
}

void http_conn_remember_identity(const http_request_t *r, const char *sha256_hex, int64_t now)
{
    pthread_once(&ex_index_once, ex_index_init);
    SSL *ssl = conn_identity_index >= 0 ? request_ssl(r->ev) : NULL;
    if (!ssl)
        return;
    conn_identity_t *c = SSL_get_ex_data(ssl, conn_identity_index);
    if (!c) {
        if (!(c = calloc(1, sizeof *c)) || SSL_set_ex_data(ssl, conn_identity_index, c) != 1) {
            free(c);
            return;
        }
    }
    snprintf(c->sha256, sizeof c->sha256, "%s", sha256_hex);
    c->at = now;
}

/* ---- connection guard --------------------------------------------------------
 *
 * evhttp in libevent 2.1 has no connection cap, its read timeout restarts
 * with every byte (a client sending one byte at a time is never cut off),
 * and it answers some malformed or oversized requests itself, before
 * handle_request sees them. The guard covers all three per TLS connection,
 * with state hung on the SSL object (ex_data), whose free callback runs
 * exactly once when evhttp frees the connection:
 *  - a shared count of open connections; one over --max-connections is
 *    marked refused and shut down by the worker's sweep right away;
 *  - a deadline: a request (and the TLS handshake before the first one)
 *    must arrive complete within --timeout of the connection opening or of
 *    the previous reply; the sweep shuts down connections past it;
 *  - a watch on the connection's output buffer: a response that orchard
 *    did not write is evhttp refusing the request, and gets a log line.
 * Connections are shut down with shutdown(2), never freed here: evhttp
 * sees end-of-file and frees them itself. */

struct conn_slot {
    worker_thread_t *wt;
    struct bufferevent *bev;
    struct evbuffer_cb_entry *in_cb, *out_cb;
    conn_slot_t *prev, *next;
    int64_t deadline_us; /* 0 while orchard handles a request */
    size_t received;     /* request bytes since the last reply */
    int refused;         /* over --max-connections */
    int replying;        /* orchard is writing its own response */
    int closed;          /* shut down by the guard */
};

static int throttle_allow(log_throttle_t *t, long *suppressed)
{
    int64_t now = util_now_us();
    pthread_mutex_lock(&t->mu);
    if (now - t->window_us >= 1000000) {
        t->window_us = now;
        t->lines = 0;
    }
    int ok = t->lines < THROTTLE_LINES_PER_S;
    if (ok) {
        t->lines++;
        *suppressed = t->suppressed;
        t->suppressed = 0;
    } else {
        t->suppressed++;
    }
    pthread_mutex_unlock(&t->mu);
    return ok;
}

/* " (N similar lines suppressed)" when some were, else "". */
static const char *suppressed_note(long n, char *buf, size_t len)
{
    if (n <= 0)
        return "";
    snprintf(buf, len, " (%ld similar lines suppressed)", n);
    return buf;
}

static void slot_unlink(conn_slot_t *s)
{
    if (s->prev)
        s->prev->next = s->next;
    else if (s->wt->conns == s)
        s->wt->conns = s->next;
    if (s->next)
        s->next->prev = s->prev;
    s->prev = s->next = NULL;
}

static void conn_slot_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    conn_slot_t *s = ptr;
    if (!s)
        return;
    /* Called from the bufferevent's destructor: its buffers still exist. */
    if (s->in_cb)
        evbuffer_remove_cb_entry(bufferevent_get_input(s->bev), s->in_cb);
    if (s->out_cb)
        evbuffer_remove_cb_entry(bufferevent_get_output(s->bev), s->out_cb);
    slot_unlink(s);
    atomic_fetch_sub(&s->wt->guard->open, 1);
    free(s);
}

static conn_slot_t *request_slot(struct evhttp_request *ev);

static void slot_peer(const conn_slot_t *s, char *buf, size_t len)
{
    snprintf(buf, len, "-");
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    if (fd < 0 || getpeername(fd, (struct sockaddr *)&ss, &sl) != 0)
        return;
    if (ss.ss_family == AF_INET)
        inet_ntop(AF_INET, &((struct sockaddr_in *)&ss)->sin_addr, buf, (socklen_t)len);
    else if (ss.ss_family == AF_INET6)
        inet_ntop(AF_INET6, &((struct sockaddr_in6 *)&ss)->sin6_addr, buf, (socklen_t)len);
}

static void slot_shutdown(conn_slot_t *s)
{
    s->closed = 1;
    evutil_socket_t fd = bufferevent_getfd(s->bev);
    if (fd >= 0)
        shutdown(fd, SHUT_RDWR);
}

static void count_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    (void)buf;
    conn_slot_t *s = arg;
    s->received += info->n_added;
}

/* evhttp answers a request it cannot parse (or one over its caps) itself;
 * orchard's own replies are flagged `replying`, so a status line written
 * otherwise is such a refusal. */
static void watch_output(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
    conn_slot_t *s = arg;
    if (s->replying || info->n_added < 12)
        return;
    char head[13] = {0};
    struct evbuffer_ptr p;
    if (evbuffer_ptr_set(buf, &p, info->orig_size, EVBUFFER_PTR_SET) != 0 ||
        evbuffer_copyout_from(buf, &p, head, 12) != 12 || strncmp(head, "HTTP/1.", 7) != 0 || head[8] != ' ')
        return;
    int status = atoi(head + 9);
    if (status < 200) /* 100 Continue */
        return;
    char why[200];
    switch (status) {
    case 400:
        if (s->received > MAX_HEADERS_SIZE)
            snprintf(why, sizeof why, "header block over the %d-byte limit (%zu bytes received)", MAX_HEADERS_SIZE,
                     s->received);
        else
            snprintf(why, sizeof why, "malformed request line or headers");
        break;
    case 413:
        snprintf(why, sizeof why, "request body over the %zu-byte limit (refused before it was read)",
                 s->wt->guard->max_body);
        break;
    case 501: snprintf(why, sizeof why, "method not allowed"); break;
    case 417: snprintf(why, sizeof why, "unsupported Expect header"); break;
    default: snprintf(why, sizeof why, "refused by the HTTP parser"); break;
    }
    char peer[INET6_ADDRSTRLEN];
    slot_peer(s, peer, sizeof peer);
    log_warn("request method=- path=- status=%d id=- type=- ms=0.00 remote=%s problem=\"%s\"", status, peer, why);
}

/* Runs every SWEEP_INTERVAL_MS, and at once when a connection is refused. */
static void sweep_connections(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_thread_t *wt = arg;
    conn_guard_t *g = wt->guard;
    int64_t now = util_now_us();
    for (conn_slot_t *s = wt->conns; s; s = s->next) {
        if (s->closed || bufferevent_getfd(s->bev) < 0)
            continue;
        char peer[INET6_ADDRSTRLEN], note[64];
        long suppressed = 0;
        if (s->refused) {
            slot_peer(s, peer, sizeof peer);
            if (throttle_allow(&g->refused_log, &suppressed))
                log_warn("connection refused remote=%s problem=\"%d connections open, over the "
                         "--max-connections limit of %d\"%s",
                         peer, atomic_load(&g->open), g->max, suppressed_note(suppressed, note, sizeof note));
            slot_shutdown(s);
            continue;
        }
        if (!s->deadline_us || now < s->deadline_us)
            continue;
        if (evbuffer_get_length(bufferevent_get_output(s->bev)) > 0) {
            /* still sending a reply: evhttp's write timeout watches that */
            s->deadline_us = now + g->timeout_us;
            continue;
        }
        SSL *ssl = bufferevent_openssl_get_ssl(s->bev);
        int in_handshake = ssl && !SSL_is_init_finished(ssl);
        slot_peer(s, peer, sizeof peer);
        if (in_handshake || s->received > 0) {
            if (throttle_allow(&g->slow_log, &suppressed))
                log_warn("connection closed remote=%s problem=\"slow client: %s%zu%s within the %lld-second "
                         "--timeout\"%s",
                         peer, in_handshake ? "TLS handshake not finished" : "request incomplete after ",
                         in_handshake ? (size_t)0 : s->received, in_handshake ? "" : " bytes",
                         (long long)(g->timeout_us / 1000000), suppressed_note(suppressed, note, sizeof note));
        } else {
            log_debug("connection closed remote=%s: idle for the --timeout", peer);
        }
        slot_shutdown(s);
    }
}

static void conn_guard_attach(worker_thread_t *wt, struct bufferevent *bev, SSL *ssl)
{
    pthread_once(&ex_index_once, ex_index_init);
    conn_slot_t *s = conn_slot_index >= 0 ? calloc(1, sizeof *s) : NULL;
    if (!s)
        return;
    s->wt = wt;
    s->bev = bev;
    s->next = wt->conns;
    if (wt->conns)
        wt->conns->prev = s;
    wt->conns = s;
    int open = atomic_fetch_add(&wt->guard->open, 1) + 1;
    if (SSL_set_ex_data(ssl, conn_slot_index, s) != 1) {
        slot_unlink(s);
        atomic_fetch_sub(&wt->guard->open, 1);
        free(s);
        return;
    }
    s->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), count_input, s);
    s->out_cb = evbuffer_add_cb(bufferevent_get_output(bev), watch_output, s);
    s->deadline_us = util_now_us() + wt->guard->timeout_us;
    if (open > wt->guard->max) {
        /* The socket is not attached yet (evhttp does that after this
         * callback): the sweep, run next, shuts it down. */
        s->refused = 1;
        event_active(wt->sweep_ev, EV_TIMEOUT, 1);
    }
}

static conn_slot_t *request_slot(struct evhttp_request *ev)
{
    pthread_once(&ex_index_once, ex_index_init);
    SSL *ssl = conn_slot_index >= 0 ? request_ssl(ev) : NULL;
    return ssl ? SSL_get_ex_data(ssl, conn_slot_index) : NULL;
}

/* The client's address for rate limits: the peer, unless the peer is a
 * --trusted-proxy; then the last X-Forwarded-For entry, the one that proxy
 * added (entries before it come from the client and prove nothing). */
static int address_in_list(const char *addr, const char *list)
{
    unsigned char a[16], b[16];
    int fam = strchr(addr, ':') ? AF_INET6 : AF_INET;
    if (inet_pton(fam, addr, a) != 1)
        return 0;
    size_t alen = fam == AF_INET6 ? 16 : 4;
    const char *p = list;
    while (*p) {
        while (*p == ' ' || *p == ',')
            p++;
        size_t n = strcspn(p, ", ");
        char item[INET6_ADDRSTRLEN + 1];
        if (n > 0 && n < sizeof item) {
            memcpy(item, p, n);
            item[n] = '\0';
            if (inet_pton(fam, item, b) == 1 && memcmp(a, b, alen) == 0)
                return 1;
        }
        p += n;
    }
    return 0;
}

static const char *client_address(const config_t *cfg, struct evhttp_request *ev, const char *peer, char *buf,
                                  size_t len)
{
    if (!peer || !cfg->trusted_proxies || !address_in_list(peer, cfg->trusted_proxies))
        return peer;
    const char *xff = NULL;
    struct evkeyval *h;
    TAILQ_FOREACH(h, evhttp_request_get_input_headers(ev), next)
        if (strcasecmp(h->key, "X-Forwarded-For") == 0)
            xff = h->value;
    if (!xff)
        return peer;
    const char *last = strrchr(xff, ',');
    last = last ? last + 1 : xff;
    while (*last == ' ' || *last == '\t')
        last++;
    size_t n = strcspn(last, " \t");
    unsigned char bin[16];
    if (n == 0 || n >= len)
        return peer;
    memcpy(buf, last, n);
    buf[n] = '\0';
    if (inet_pton(AF_INET, buf, bin) != 1 && inet_pton(AF_INET6, buf, bin) != 1)
        return peer;
    return buf;
}

/* ---- request dispatch ------------------------------------------------------ */

static http_method_t method_of(enum evhttp_cmd_type t, const char **name)
{
    switch (t) {
    case EVHTTP_REQ_GET: *name = "GET"; return HTTP_M_GET;
    case EVHTTP_REQ_PUT: *name = "PUT"; return HTTP_M_PUT;
    case EVHTTP_REQ_POST: *name = "POST"; return HTTP_M_POST;
    case EVHTTP_REQ_DELETE: *name = "DELETE"; return HTTP_M_DELETE;
    case EVHTTP_REQ_HEAD: *name = "HEAD"; return HTTP_M_OTHER;
    default: *name = "OTHER"; return HTTP_M_OTHER;
    }
}

static void log_request(const http_request_t *r, const http_response_t *resp, int64_t started_us)
{
    double ms = (double)(util_now_us() - started_us) / 1000.0;
    log_level_t level = resp->status >= 500 ? LOG_ERROR : resp->status >= 400 ? LOG_WARN : LOG_INFO;
    int forwarded = r->client && r->remote && strcmp(r->client, r->remote) != 0;
    log_msg(level, "request method=%s path=%.128s status=%d id=%s type=%s ms=%.2f remote=%s%s%s%s%s%s",
            r->method_name, r->path ? r->path : "-", resp->status, resp->log_id[0] ? resp->log_id : "-",
            resp->log_type[0] ? resp->log_type : "-", ms, r->remote ? r->remote : "-",
            forwarded ? " client=" : "", forwarded ? r->client : "",
            resp->log_problem[0] ? " problem=\"" : "", resp->log_problem,
            resp->log_problem[0] ? "\"" : "");
}

static void peer_identity(struct evhttp_request *ev, X509 **cert, STACK_OF(X509) **chain)
{
    *cert = NULL;
    *chain = NULL;
    SSL *ssl = request_ssl(ev);
    if (!ssl)
        return;
    *cert = SSL_get0_peer_certificate(ssl);
    *chain = SSL_get_peer_cert_chain(ssl);
}

static void handle_request(struct evhttp_request *ev, void *arg)
{
    worker_thread_t *wt = arg;
    int64_t started = util_now_us();
    http_request_t req;
    memset(&req, 0, sizeof req);
    req.ev = ev;
    req.method = method_of(evhttp_request_get_command(ev), &req.method_name);
    req.max_body = wt->w.app->cfg->max_body;

    http_response_t resp;
    memset(&resp, 0, sizeof resp);
    resp.body = evbuffer_new();
    resp.status = 500;

    char *path = NULL;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(ev);
    const char *raw_path = uri ? evhttp_uri_get_path(uri) : NULL;
    struct evhttp_connection *conn = evhttp_request_get_connection(ev);
    char *peer_addr = NULL;
    ev_uint16_t peer_port = 0;
    if (conn)
        evhttp_connection_get_peer(conn, &peer_addr, &peer_port);
    req.remote = peer_addr;
    char client_buf[INET6_ADDRSTRLEN + 1];
    req.client = client_address(wt->w.app->cfg, ev, peer_addr, client_buf, sizeof client_buf);

    conn_slot_t *slot = request_slot(ev);
    if (slot) {
        slot->replying = 1;
        slot->deadline_us = 0;
    }
    if (!resp.body) {
        evhttp_send_error(ev, 503, "Service Unavailable");
        if (slot)
            slot->replying = 0;
        return;
    }
    size_t plen = 0;
    path = raw_path ? evhttp_uridecode(raw_path, 0, &plen) : NULL;
    if (!path || plen != strlen(path)) {
        req.path = raw_path;
        http_refuse(&resp, 400, 1, "request path is not valid (NUL or bad escape)");
        goto send;
    }
    req.path = path;
    req.query = uri ? evhttp_uri_get_query(uri) : NULL;

    struct evbuffer *in = evhttp_request_get_input_buffer(ev);
    req.body_len = evbuffer_get_length(in);
    if (req.body_len > req.max_body) {
        http_refuse(&resp, 413, 1, "request body of %zu bytes is over the %zu-byte limit", req.body_len,
                    req.max_body);
        goto send;
    }
    req.body = req.body_len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
    if (!req.body) {
        http_refuse(&resp, 503, 1, "out of memory reading the body");
        goto send;
    }
    peer_identity(ev, &req.peer_cert, &req.peer_chain);

    app_route(&wt->w, &req, &resp);

send:;
    struct evkeyvalq *out = evhttp_request_get_output_headers(ev);
    if (resp.content_type && evbuffer_get_length(resp.body) > 0)
        evhttp_add_header(out, "Content-Type", resp.content_type);
    for (int i = 0; i < resp.nheaders; i++) {
        if (resp.header_values[i])
            evhttp_add_header(out, resp.header_names[i], resp.header_values[i]);
        free(resp.header_values[i]);
    }
    evhttp_send_reply(ev, resp.status, NULL, resp.body);
    if (slot) {
        /* the next request on this connection has --timeout from now */
        slot->replying = 0;
        slot->received = 0;
        slot->deadline_us = util_now_us() + wt->guard->timeout_us;
    }
    log_request(&req, &resp, started);
    evbuffer_free(resp.body);
    free(path);
}

/* ---- TLS ------------------------------------------------------------------- */

static int accept_any_client_cert(int preverify_ok, X509_STORE_CTX *ctx)
{
    /* The handshake only collects the certificate; trust is decided per
     * request against --client-ca (identity.c), where failures can be
     * answered with 401 and logged. */
    (void)preverify_ok;
    (void)ctx;
    return 1;
}

SSL_CTX *http_tls_context(const char *cert_path, const char *key_path, const char *client_ca_path, char **err)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        *err = strdup("cannot create TLS context");
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(ctx, cert_path) != 1) {
        *err = util_strdup_printf("cannot load TLS certificate %s: %s", cert_path,
                                  ERR_reason_error_string(ERR_peek_last_error()));
        goto fail;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key_path, SSL_FILETYPE_PEM) != 1 || SSL_CTX_check_private_key(ctx) != 1) {
        *err = util_strdup_printf("cannot load TLS key %s (or it does not match the certificate): %s", key_path,
                                  ERR_reason_error_string(ERR_peek_last_error()));
        goto fail;
    }
    STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(client_ca_path);
    if (names)
        SSL_CTX_set_client_CA_list(ctx, names); /* tells devices which identity to present */
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any_client_cert);
    /* Required for session resumption when client certificates are asked. */
    static const unsigned char sid_ctx[] = "orchard";
    SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof sid_ctx - 1);
    ERR_clear_error();
    return ctx;
fail:
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return NULL;
}

static struct bufferevent *tls_bufferevent(struct event_base *base, void *arg)
{
    worker_thread_t *wt = arg;
    SSL *ssl = SSL_new(wt->ssl_ctx);
    if (!ssl)
        return NULL;
    struct bufferevent *bev =
        bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING, BEV_OPT_CLOSE_ON_FREE);
    if (bev) {
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1); /* clients often skip close_notify */
        conn_guard_attach(wt, bev, ssl);
    }
    return bev;
}

/* ---- workers --------------------------------------------------------------- */

static void stop_worker(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    worker_thread_t *wt = arg;
    event_base_loopbreak(wt->base);
}

static void *worker_main(void *arg)
{
    worker_thread_t *wt = arg;
    event_base_dispatch(wt->base);
    return NULL;
}

static int parse_listen(const char *listen, struct sockaddr_storage *ss, int *sslen)
{
    *sslen = (int)sizeof *ss;
    memset(ss, 0, sizeof *ss);
    return evutil_parse_sockaddr_port(listen, (struct sockaddr *)ss, sslen);
}

static int worker_setup(worker_thread_t *wt, const app_t *app, SSL_CTX *ssl_ctx, int id, conn_guard_t *guard,
                        ratelimit_t *enroll_limit, ratelimit_t *identity_limit, char **err)
{
    wt->w.app = app;
    wt->w.id = id;
    wt->w.enroll_limit = enroll_limit;
    wt->w.identity_limit = identity_limit;
    wt->ssl_ctx = ssl_ctx;
    wt->guard = guard;
    wt->w.store = store_open(app->cfg->db, err);
    if (!wt->w.store)
        return -1;
    wt->base = event_base_new();
    wt->http = wt->base ? evhttp_new(wt->base) : NULL;
    wt->stop_ev = wt->base ? event_new(wt->base, -1, 0, stop_worker, wt) : NULL;
    wt->sweep_ev = wt->base ? event_new(wt->base, -1, EV_PERSIST, sweep_connections, wt) : NULL;
    struct timeval sweep_tv = {0, SWEEP_INTERVAL_MS * 1000};
    if (!wt->http || !wt->stop_ev || !wt->sweep_ev || event_add(wt->sweep_ev, &sweep_tv) != 0) {
        *err = strdup("cannot create event loop");
        return -1;
    }
    const config_t *cfg = app->cfg;
    /* evhttp refuses bodies over its own cap with a bare 413; ours is checked
     * in handle_request with a log line, so evhttp's cap is only a backstop
     * that bounds memory for bodies far over the limit. */
    evhttp_set_max_body_size(wt->http, (ev_ssize_t)(cfg->max_body * 2 + 65536));
    evhttp_set_max_headers_size(wt->http, MAX_HEADERS_SIZE);
    /* With TLS the connection guard enforces --timeout for whole requests
     * and logs slow clients; evhttp's own timer (restarted by every byte) is
     * then a second later, so a stalled request meets the guard first. */
    evhttp_set_timeout(wt->http, cfg->timeout_seconds + (ssl_ctx ? 1 : 0));
    evhttp_set_allowed_methods(wt->http, EVHTTP_REQ_GET | EVHTTP_REQ_PUT | EVHTTP_REQ_POST |
                                             EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD);
    evhttp_set_gencb(wt->http, handle_request, wt);
    if (ssl_ctx)
        evhttp_set_bevcb(wt->http, tls_bufferevent, wt);

    struct sockaddr_storage ss;
    int sslen;
    if (parse_listen(cfg->listen, &ss, &sslen) != 0) {
        *err = util_strdup_printf("cannot parse listen address '%s'", cfg->listen);
        return -1;
    }
    struct evconnlistener *l =
        evconnlistener_new_bind(wt->base, NULL, NULL,
                                LEV_OPT_REUSEABLE | LEV_OPT_REUSEABLE_PORT | LEV_OPT_CLOSE_ON_FREE |
                                    LEV_OPT_CLOSE_ON_EXEC,
                                1024, (struct sockaddr *)&ss, sslen);
    if (!l) {
        *err = util_strdup_printf("cannot listen on %s: %s", cfg->listen, strerror(errno));
        return -1;
    }
    /* A response leaves as several TLS records; without TCP_NODELAY the
     * later segments wait for the client's delayed ACK (~40 ms). Accepted
     * sockets inherit the option from the listener on Linux. */
    int one = 1;
    setsockopt(evconnlistener_get_fd(l), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (!evhttp_bind_listener(wt->http, l)) {
        evconnlistener_free(l);
        *err = util_strdup_printf("cannot bind HTTP to %s", cfg->listen);
        return -1;
    }
    return 0;
}

static void worker_teardown(worker_thread_t *wt)
{
    if (wt->http)
        evhttp_free(wt->http);
    /* A connection that was closing when the loop stopped may have its
     * bufferevent (and SSL) free deferred to the next loop iteration: run
     * the loop once more without blocking so nothing is left behind. */
    if (wt->base)
        for (int i = 0; i < 3; i++)
            event_base_loop(wt->base, EVLOOP_NONBLOCK);
    if (wt->stop_ev)
        event_free(wt->stop_ev);
    if (wt->sweep_ev)
        event_free(wt->sweep_ev);
    if (wt->base)
        event_base_free(wt->base);
    if (wt->w.store)
        store_close(wt->w.store);
}

static void guard_init(conn_guard_t *guard, const config_t *cfg)
{
    atomic_init(&guard->open, 0);
    guard->max = cfg->max_connections;
    guard->timeout_us = (int64_t)cfg->timeout_seconds * 1000000;
    guard->max_body = cfg->max_body;
    pthread_mutex_init(&guard->refused_log.mu, NULL);
    pthread_mutex_init(&guard->slow_log.mu, NULL);
}

static void guard_destroy(conn_guard_t *guard)
{
    pthread_mutex_destroy(&guard->refused_log.mu);
    pthread_mutex_destroy(&guard->slow_log.mu);
}

int http_server_run(const app_t *app, SSL_CTX *ssl_ctx)
{
    const config_t *cfg = app->cfg;
    if (evthread_use_pthreads() != 0) {
        log_error("cannot enable libevent threading");
        return -1;
    }
    /* Only the main thread takes SIGINT/SIGTERM (sigwait below). */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int n = cfg->workers;
    worker_thread_t *workers = calloc((size_t)n, sizeof *workers);
    conn_guard_t *guard = calloc(1, sizeof *guard);
    ratelimit_t *enroll_limit = NULL, *identity_limit = NULL;
    if (cfg->enroll_rate > 0)
        enroll_limit = ratelimit_new(cfg->enroll_rate, cfg->enroll_burst, ENROLL_LIMIT_KEYS);
    if (cfg->enroll_identity_rate > 0)
        identity_limit = ratelimit_new(cfg->enroll_identity_rate, cfg->enroll_identity_burst, ENROLL_LIMIT_KEYS);
    if (!workers || !guard || (cfg->enroll_rate > 0 && !enroll_limit) ||
        (cfg->enroll_identity_rate > 0 && !identity_limit)) {
        free(workers);
        free(guard);
        ratelimit_free(enroll_limit);
        ratelimit_free(identity_limit);
        return -1;
    }
    guard_init(guard, cfg);
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *err = NULL;
        if (worker_setup(&workers[i], app, ssl_ctx, i, guard, enroll_limit, identity_limit, &err) != 0) {
            log_error("startup failed: %s", err ? err : "unknown error");
            free(err);
            rc = -1;
            break;
        }
    }
    if (rc == 0) {
        for (int i = 0; i < n; i++) {
            if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]) == 0)
                workers[i].started = 1;
        }
        log_info("listening on %s (%s, %d workers); public URL %s", cfg->listen,
                 ssl_ctx ? "https" : "plain http", n, cfg->public_url);
        int sig = 0;
        sigwait(&sigs, &sig);
        log_info("received %s, shutting down", sig == SIGINT ? "SIGINT" : "SIGTERM");
    }
    for (int i = 0; i < n; i++)
        if (workers[i].started)
            event_active(workers[i].stop_ev, 0, 0);
    for (int i = 0; i < n; i++)
        if (workers[i].started)
            pthread_join(workers[i].thread, NULL);
    for (int i = 0; i < n; i++)
        worker_teardown(&workers[i]);
    free(workers);
    guard_destroy(guard);
    free(guard);
    ratelimit_free(enroll_limit);
    ratelimit_free(identity_limit);
    libevent_global_shutdown();
    return rc;
}

/* ---- one worker on the caller's loop (fuzz harness seam) --------------------- */

struct http_local_worker {
    worker_thread_t wt;
    conn_guard_t guard;
};

http_local_worker_t *http_local_worker_new(const app_t *app, SSL_CTX *ssl_ctx, char **err)
{
    http_local_worker_t *lw = calloc(1, sizeof *lw);
    if (!lw) {
        *err = strdup("out of memory");
        return NULL;
    }
    guard_init(&lw->guard, app->cfg);
    if (worker_setup(&lw->wt, app, ssl_ctx, 0, &lw->guard, NULL, NULL, err) != 0) {
        http_local_worker_free(lw);
        return NULL;
    }
    return lw;
}

struct event_base *http_local_worker_base(http_local_worker_t *lw)
{
    return lw->wt.base;
}

void http_local_worker_free(http_local_worker_t *lw)
{
    if (!lw)
        return;
    worker_teardown(&lw->wt);
    guard_destroy(&lw->guard);
    free(lw);
}
