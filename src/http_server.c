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

#include <errno.h>
#include <sys/queue.h>
#include <pthread.h>
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
#include "util.h"

/* Headers larger than this are refused by evhttp with 400. */
#define MAX_HEADERS_SIZE (32 * 1024)

typedef struct {
    worker_t w;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    SSL_CTX *ssl_ctx;
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
static pthread_once_t conn_identity_once = PTHREAD_ONCE_INIT;

static void conn_identity_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
    (void)parent;
    (void)ad;
    (void)idx;
    (void)argl;
    (void)argp;
    free(ptr);
}

static void conn_identity_init(void)
{
    conn_identity_index = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_identity_free);
}

static SSL *request_ssl(struct evhttp_request *ev)
{
    struct evhttp_connection *conn = evhttp_request_get_connection(ev);
    struct bufferevent *bev = conn ? evhttp_connection_get_bufferevent(conn) : NULL;
    return bev ? bufferevent_openssl_get_ssl(bev) : NULL;
}

const char *http_conn_identity(const http_request_t *r, int64_t now, int64_t max_age_s)
{
    pthread_once(&conn_identity_once, conn_identity_init);
    SSL *ssl = conn_identity_index >= 0 ? request_ssl(r->ev) : NULL;
    conn_identity_t *c = ssl ? SSL_get_ex_data(ssl, conn_identity_index) : NULL;
    return c && now - c->at < max_age_s ? c->sha256 : NULL;
}

void http_conn_remember_identity(const http_request_t *r, const char *sha256_hex, int64_t now)
{
    pthread_once(&conn_identity_once, conn_identity_init);
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
    log_msg(level, "request method=%s path=%.128s status=%d id=%s type=%s ms=%.2f remote=%s%s%s%s",
            r->method_name, r->path ? r->path : "-", resp->status, resp->log_id[0] ? resp->log_id : "-",
            resp->log_type[0] ? resp->log_type : "-", ms, r->remote ? r->remote : "-",
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

    if (!resp.body) {
        evhttp_send_error(ev, 503, "Service Unavailable");
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
    if (bev)
        bufferevent_openssl_set_allow_dirty_shutdown(bev, 1); /* clients often skip close_notify */
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

static int worker_setup(worker_thread_t *wt, const app_t *app, SSL_CTX *ssl_ctx, int id, char **err)
{
    wt->w.app = app;
    wt->w.id = id;
    wt->ssl_ctx = ssl_ctx;
    wt->w.store = store_open(app->cfg->db, err);
    if (!wt->w.store)
        return -1;
    wt->base = event_base_new();
    wt->http = wt->base ? evhttp_new(wt->base) : NULL;
    wt->stop_ev = wt->base ? event_new(wt->base, -1, 0, stop_worker, wt) : NULL;
    if (!wt->http || !wt->stop_ev) {
        *err = strdup("cannot create event loop");
        return -1;
    }
    const config_t *cfg = app->cfg;
    /* evhttp refuses bodies over its own cap with a bare 413; ours is checked
     * in handle_request with a log line, so evhttp's cap is only a backstop
     * that bounds memory for bodies far over the limit. */
    evhttp_set_max_body_size(wt->http, (ev_ssize_t)(cfg->max_body * 2 + 65536));
    evhttp_set_max_headers_size(wt->http, MAX_HEADERS_SIZE);
    evhttp_set_timeout(wt->http, cfg->timeout_seconds);
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
    if (wt->stop_ev)
        event_free(wt->stop_ev);
    if (wt->base)
        event_base_free(wt->base);
    if (wt->w.store)
        store_close(wt->w.store);
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
    if (!workers)
        return -1;
    int rc = 0;
    for (int i = 0; i < n; i++) {
        char *err = NULL;
        if (worker_setup(&workers[i], app, ssl_ctx, i, &err) != 0) {
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
    libevent_global_shutdown();
    return rc;
}
