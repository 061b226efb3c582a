/* Simulator of Apple's device enrollment services (see depsim.h). */
#include "depsim.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/thread.h>
#include <jansson.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include "ade_oauth.h"
#include "ade_time.h"
#include "pki.h"
#include "util.h"

#define MAX_FAULTS 16
#define NONCES 4096

typedef struct {
    char serial[64];
    char model[32];
    char color[32];
    char profile_uuid[40];
    char profile_status[16];
    int64_t assigned_date, profile_assign_time;
    int deleted;
} device_t;

typedef struct {
    int dev;          /* index into devices */
    char op_type[12];
    int64_t op_date;
} event_t;

typedef struct {
    int sync;         /* 0: fetch cursor, 1: sync cursor */
    size_t pos;       /* fetch: next device index */
    size_t ev;        /* events already reflected */
    int expired;
} cursor_t;

typedef struct {
    char prefix[64];
    int status;
    char body[128];
    int retry_after;
    int count;
    int garbage;
} fault_t;

typedef struct {
    char uuid[40];
    char *json;
} profile_t;

struct depsim {
    pthread_t thread;
    pthread_mutex_t mu;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_ev;
    SSL_CTX *ctx;
    char url[64];
    char ca_path[300];

    device_t *devices;
    size_t ndev, capdev;
    event_t *events;
    size_t nev, capev;
    cursor_t *cursors;
    size_t ncur, capcur;
    profile_t *profiles;
    size_t nprof;
    fault_t faults[MAX_FAULTS];
    char nonces[NONCES][40];
    size_t nnonce;
    char session[64];
    int session_gen;
    int rotate_every, answers;
    int terms;
    int limit_cap;
    int64_t clock;
    /* counters */
    struct {
        char path[32];
        int n;
    } counts[16];
    int sessions, header_violations, oauth_failures;
};

/* ---- model helpers (mutex held) ------------------------------------------------ */

static int find_device(depsim_t *d, const char *serial)
{
    for (size_t i = 0; i < d->ndev; i++)
        if (strcmp(d->devices[i].serial, serial) == 0)
            return (int)i;
    return -1;
}

static void grow(void **p, size_t *cap, size_t need, size_t size)
{
    if (need <= *cap)
        return;
    size_t n = *cap ? *cap * 2 : 64;
    while (n < need)
        n *= 2;
    void *q = realloc(*p, n * size);
    if (!q)
        abort();
    *p = q;
    *cap = n;
}

static void add_event(depsim_t *d, int dev, const char *op)
{
    grow((void **)&d->events, &d->capev, d->nev + 1, sizeof *d->events);
    event_t *e = &d->events[d->nev++];
    e->dev = dev;
    snprintf(e->op_type, sizeof e->op_type, "%s", op);
    e->op_date = ++d->clock;
}

static int add_device_locked(depsim_t *d, const char *serial, const char *model)
{
    int i = find_device(d, serial);
    if (i < 0) {
        grow((void **)&d->devices, &d->capdev, d->ndev + 1, sizeof *d->devices);
        i = (int)d->ndev++;
        memset(&d->devices[i], 0, sizeof d->devices[i]);
        snprintf(d->devices[i].serial, sizeof d->devices[i].serial, "%s", serial);
    }
    device_t *v = &d->devices[i];
    snprintf(v->model, sizeof v->model, "%s", model ? model : "iPad");
    snprintf(v->color, sizeof v->color, "space gray");
    snprintf(v->profile_status, sizeof v->profile_status, "empty");
    v->profile_uuid[0] = '\0';
    v->deleted = 0;
    add_event(d, i, "added");
    v->assigned_date = d->events[d->nev - 1].op_date;
    return i;
}

static size_t new_cursor(depsim_t *d, int sync, size_t pos, size_t ev)
{
    grow((void **)&d->cursors, &d->capcur, d->ncur + 1, sizeof *d->cursors);
    d->cursors[d->ncur] = (cursor_t){.sync = sync, .pos = pos, .ev = ev};
    return d->ncur++;
}

static cursor_t *cursor_of(depsim_t *d, const char *s)
{
    if (!s || strncmp(s, "c0", 2) != 0)
        return NULL;
    char *end;
    unsigned long id = strtoul(s + 2, &end, 16);
    if (*end || end == s + 2 || id >= d->ncur)
        return NULL;
    return &d->cursors[id];
}

static void count(depsim_t *d, const char *path)
{
    for (size_t i = 0; i < sizeof d->counts / sizeof d->counts[0]; i++) {
        if (!d->counts[i].path[0])
            snprintf(d->counts[i].path, sizeof d->counts[i].path, "%.31s", path);
        if (strcmp(d->counts[i].path, path) == 0) {
            d->counts[i].n++;
            return;
        }
    }
}

static json_t *iso(int64_t t)
{
    char buf[21];
    ade_time_format(t, buf);
    return json_string(buf);
}

/* Simulated dates: a fixed epoch plus the event counter. */
#define EPOCH ((int64_t)1735689600) /* 2025-01-01 */

static json_t *device_json(const device_t *v, int details)
{
    json_t *o = json_pack("{s:s,s:s,s:s,s:s,s:s}", "serial_number", v->serial, "model", v->model, "description",
                          "IPAD WI-FI 64GB", "color", v->color, "profile_status", v->profile_status);
    if (!details)
        json_object_set_new(o, "device_assigned_date", iso(EPOCH + v->assigned_date));
    else
        json_object_set_new(o, "device_assigned_date", iso(EPOCH + v->assigned_date));
    json_object_set_new(o, "device_family", json_string("iPad"));
    json_object_set_new(o, "os", json_string("iOS"));
    json_object_set_new(o, "device_assigned_by", json_string("facilitator@example.com"));
    if (v->profile_uuid[0]) {
        json_object_set_new(o, "profile_uuid", json_string(v->profile_uuid));
        json_object_set_new(o, "profile_assign_time", iso(EPOCH + v->profile_assign_time));
    }
    return o;
}

/* ---- HTTP ------------------------------------------------------------------------ */

static void reply(depsim_t *d, struct evhttp_request *req, int status, const char *ctype, const char *body,
                  int rotate)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Content-Type", ctype);
    if (rotate && d->rotate_every > 0 && ++d->answers % d->rotate_every == 0) {
        snprintf(d->session, sizeof d->session, "sess-%d-rotated", ++d->session_gen);
        evhttp_add_header(h, "X-ADM-Auth-Session", d->session);
    }
    struct evbuffer *b = evbuffer_new();
    evbuffer_add(b, body, strlen(body));
    evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", b);
    evbuffer_free(b);
}

static void reply_text(depsim_t *d, struct evhttp_request *req, int status, const char *word)
{
    reply(d, req, status, "text/plain;charset=UTF8", word, 0);
}

static void reply_json(depsim_t *d, struct evhttp_request *req, json_t *o)
{
    char *s = json_dumps(o, JSON_COMPACT);
    reply(d, req, 200, "application/json;charset=UTF8", s ? s : "{}", 1);
    free(s);
    json_decref(o);
}

/* Parses `OAuth k="v", ...` into pairs (values percent-decoded). */
static int parse_oauth(const char *h, char names[12][40], char values[12][200])
{
    if (strncmp(h, "OAuth ", 6) != 0)
        return -1;
    int n = 0;
    const char *p = h + 6;
    while (*p && n < 12) {
        while (*p == ' ' || *p == ',')
            p++;
        const char *eq = strchr(p, '=');
        if (!eq || eq[1] != '"')
            return -1;
        const char *end = strchr(eq + 2, '"');
        if (!end || (size_t)(eq - p) >= 40 || (size_t)(end - eq - 2) >= 200)
            return -1;
        memcpy(names[n], p, (size_t)(eq - p));
        names[n][eq - p] = '\0';
        char *v = values[n], *o = v;
        for (const char *q = eq + 2; q < end; q++) {
            if (*q == '%' && q + 2 < end) {
                char hx[3] = {q[1], q[2], 0};
                *o++ = (char)strtol(hx, NULL, 16);
                q += 2;
            } else {
                *o++ = *q;
            }
        }
        *o = '\0';
        n++;
        p = end + 1;
    }
    return n;
}

static void do_session(depsim_t *d, struct evhttp_request *req)
{
    const char *auth = evhttp_find_header(evhttp_request_get_input_headers(req), "Authorization");
    char names[12][40], values[12][200];
    int n = auth ? parse_oauth(auth, names, values) : -1;
    if (n < 0) {
        d->oauth_failures++;
        reply_text(d, req, 400, "Missing required authorization parameter");
        return;
    }
    const char *sig = NULL, *ck = NULL, *tok = NULL, *method = NULL, *ts = NULL, *nonce = NULL;
    ade_oauth_param_t params[12];
    int np = 0;
    for (int i = 0; i < n; i++) {
        if (strcmp(names[i], "oauth_signature") == 0) {
            sig = values[i];
            continue;
        }
        if (strcmp(names[i], "realm") == 0)
            continue;
        params[np++] = (ade_oauth_param_t){names[i], values[i]};
        if (strcmp(names[i], "oauth_consumer_key") == 0)
            ck = values[i];
        else if (strcmp(names[i], "oauth_token") == 0)
            tok = values[i];
        else if (strcmp(names[i], "oauth_signature_method") == 0)
            method = values[i];
        else if (strcmp(names[i], "oauth_timestamp") == 0)
            ts = values[i];
        else if (strcmp(names[i], "oauth_nonce") == 0)
            nonce = values[i];
    }
    const char *why = NULL;
    if (!sig || !ck || !tok || !method || !ts || !nonce)
        why = "Missing required authorization parameter";
    else if (strcmp(method, "HMAC-SHA1") != 0)
        why = "Unsupported signature method";
    else if (strcmp(ck, DEPSIM_CONSUMER_KEY) != 0)
        why = "Invalid Consumer Key";
    else if (strcmp(tok, DEPSIM_ACCESS_TOKEN) != 0)
        why = "Invalid or expired Token";
    else if (llabs(strtoll(ts, NULL, 10) - util_now()) > 600)
        why = "Invalid or expired Token";
    if (!why) {
        for (size_t i = 0; i < d->nnonce && i < NONCES; i++)
            if (strcmp(d->nonces[i], nonce) == 0)
                why = "Invalid or already-used nonce";
    }
    if (!why) {
        char url[128], mine[32];
        snprintf(url, sizeof url, "%s/session", d->url);
        char *base = ade_oauth_base_string("GET", url, params, (size_t)np);
        if (!base || ade_oauth_sign(base, DEPSIM_CONSUMER_SECRET, DEPSIM_ACCESS_SECRET, mine) != 0 ||
            strcmp(mine, sig) != 0)
            why = "Invalid signature";
        free(base);
    }
    if (why) {
        d->oauth_failures++;
        reply_text(d, req, strstr(why, "Missing") || strstr(why, "Unsupported") ? 400 : 401, why);
        return;
    }
    snprintf(d->nonces[d->nnonce++ % NONCES], 40, "%.39s", nonce);
    snprintf(d->session, sizeof d->session, "sess-%d", ++d->session_gen);
    d->sessions++;
    json_t *o = json_pack("{s:s}", "auth_session_token", d->session);
    char *s = json_dumps(o, JSON_COMPACT);
    reply(d, req, 200, "application/json;charset=UTF8", s, 0);
    free(s);
    json_decref(o);
}

static json_t *request_json(struct evhttp_request *req)
{
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    char *buf = malloc(len + 1);
    evbuffer_copyout(in, buf, len);
    buf[len] = '\0';
    json_t *o = json_loadb(buf, len, 0, NULL);
    free(buf);
    if (!json_is_object(o)) {
        json_decref(o);
        return NULL;
    }
    return o;
}

static int limit_of(depsim_t *d, json_t *body)
{
    json_int_t l = json_integer_value(json_object_get(body, "limit"));
    if (l <= 0)
        l = 100;
    if (l > d->limit_cap)
        l = d->limit_cap;
    return (int)l;
}

static void cursor_text(size_t id, char out[24])
{
    snprintf(out, 24, "c0%zx", id);
}

static void do_fetch(depsim_t *d, struct evhttp_request *req, json_t *body)
{
    const char *cs = json_string_value(json_object_get(body, "cursor"));
    size_t pos = 0, ev = d->nev;
    if (cs) {
        cursor_t *c = cursor_of(d, cs);
        if (!c) {
            reply_text(d, req, 400, "INVALID_CURSOR");
            return;
        }
        if (c->sync || c->pos >= d->ndev) {
            reply_text(d, req, 400, "EXHAUSTED_CURSOR");
            return;
        }
        pos = c->pos;
        ev = c->ev;
    }
    int limit = limit_of(d, body), n = 0;
    json_t *arr = json_array();
    while (pos < d->ndev && n < limit) {
        if (!d->devices[pos].deleted) {
            json_array_append_new(arr, device_json(&d->devices[pos], 0));
            n++;
        }
        pos++;
    }
    while (pos < d->ndev && d->devices[pos].deleted)
        pos++;
    char ct[24];
    cursor_text(new_cursor(d, 0, pos, ev), ct);
    reply_json(d, req,
               json_pack("{s:o,s:s,s:b,s:o}", "devices", arr, "cursor", ct, "more_to_follow", pos < d->ndev,
                         "fetched_until", iso(EPOCH + d->clock)));
}

static void do_sync(depsim_t *d, struct evhttp_request *req, json_t *body)
{
    const char *cs = json_string_value(json_object_get(body, "cursor"));
    if (!cs) {
        reply_text(d, req, 400, "CURSOR_REQUIRED");
        return;
    }
    cursor_t *c = cursor_of(d, cs);
    if (!c) {
        reply_text(d, req, 400, "INVALID_CURSOR");
        return;
    }
    if (c->expired) {
        reply_text(d, req, 400, "EXPIRED_CURSOR");
        return;
    }
    size_t ev = c->ev;
    int limit = limit_of(d, body), n = 0;
    json_t *arr = json_array();
    while (ev < d->nev && n < limit) {
        const event_t *e = &d->events[ev++];
        json_t *o = device_json(&d->devices[e->dev], 0);
        json_object_set_new(o, "op_type", json_string(e->op_type));
        json_object_set_new(o, "op_date", iso(EPOCH + e->op_date));
        json_array_append_new(arr, o);
        n++;
    }
    char ct[24];
    cursor_text(new_cursor(d, 1, 0, ev), ct);
    reply_json(d, req, json_pack("{s:o,s:s,s:b}", "devices", arr, "cursor", ct, "more_to_follow", ev < d->nev));
}

/* body["devices"] as an array of strings, or NULL (DEVICE_ID_REQUIRED). */
static json_t *serials(json_t *body)
{
    json_t *a = json_object_get(body, "devices");
    if (!json_is_array(a) || json_array_size(a) == 0)
        return NULL;
    for (size_t i = 0; i < json_array_size(a); i++)
        if (!json_is_string(json_array_get(a, i)))
            return NULL;
    return a;
}

static profile_t *find_profile(depsim_t *d, const char *uuid)
{
    for (size_t i = 0; uuid && i < d->nprof; i++)
        if (strcmp(d->profiles[i].uuid, uuid) == 0)
            return &d->profiles[i];
    return NULL;
}

/* Maps a profile to devices; answers the per-serial map. */
static json_t *assign(depsim_t *d, const char *uuid, json_t *list)
{
    json_t *res = json_object();
    for (size_t i = 0; i < json_array_size(list); i++) {
        const char *s = json_string_value(json_array_get(list, i));
        int k = find_device(d, s);
        if (k < 0 || d->devices[k].deleted) {
            json_object_set_new(res, s, json_string("NOT_ACCESSIBLE"));
            continue;
        }
        device_t *v = &d->devices[k];
        snprintf(v->profile_uuid, sizeof v->profile_uuid, "%s", uuid ? uuid : "");
        snprintf(v->profile_status, sizeof v->profile_status, "%s", uuid ? "assigned" : "empty");
        add_event(d, k, "modified");
        v->profile_assign_time = d->events[d->nev - 1].op_date;
        json_object_set_new(res, s, json_string("SUCCESS"));
    }
    return res;
}

static void do_define(depsim_t *d, struct evhttp_request *req, json_t *body)
{
    if (!json_string_value(json_object_get(body, "profile_name"))) {
        reply_text(d, req, 400, "CONFIG_NAME_REQUIRED");
        return;
    }
    if (!json_string_value(json_object_get(body, "url"))) {
        reply_text(d, req, 400, "CONFIG_URL_REQUIRED");
        return;
    }
    profile_t *np = realloc(d->profiles, (d->nprof + 1) * sizeof *np);
    if (!np)
        abort();
    d->profiles = np;
    profile_t *p = &d->profiles[d->nprof++];
    util_random_hex(p->uuid, 16);
    p->json = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
    json_t *list = json_object_get(body, "devices");
    reply_json(d, req,
               json_pack("{s:s,s:o}", "profile_uuid", p->uuid, "devices",
                         json_is_array(list) ? assign(d, p->uuid, list) : json_object()));
}

static void handle(struct evhttp_request *req, void *arg)
{
    depsim_t *d = arg;
    pthread_mutex_lock(&d->mu);
    const char *uri = evhttp_request_get_uri(req);
    char path[256];
    snprintf(path, sizeof path, "%s", uri);
    char *q = strchr(path, '?');
    if (q)
        *q = '\0';
    enum evhttp_cmd_type m = evhttp_request_get_command(req);
    struct evkeyvalq *ih = evhttp_request_get_input_headers(req);
    count(d, path);

    for (int i = 0; i < MAX_FAULTS; i++) {
        fault_t *f = &d->faults[i];
        if (f->count > 0 && strncmp(path, f->prefix, strlen(f->prefix)) == 0) {
            f->count--;
            if (f->garbage) {
                reply(d, req, 200, "application/json", "{\"devices\": [ {\"serial_number\": ", 0);
            } else {
                if (f->retry_after >= 0) {
                    char ra[16];
                    snprintf(ra, sizeof ra, "%d", f->retry_after);
                    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", ra);
                }
                reply_text(d, req, f->status, f->body);
            }
            pthread_mutex_unlock(&d->mu);
            return;
        }
    }
    if (!evhttp_find_header(ih, "User-Agent") || !evhttp_find_header(ih, "X-Server-Protocol-Version"))
        d->header_violations++;
    if (strcmp(path, "/session") == 0) {
        if (m != EVHTTP_REQ_GET)
            reply_text(d, req, 405, "METHOD_NOT_ALLOWED");
        else
            do_session(d, req);
        pthread_mutex_unlock(&d->mu);
        return;
    }
    const char *sess = evhttp_find_header(ih, "X-ADM-Auth-Session");
    if (!sess || !d->session[0] || strcmp(sess, d->session) != 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "ADM-Auth-Token");
        reply_text(d, req, 401, "UNAUTHORIZED");
        pthread_mutex_unlock(&d->mu);
        return;
    }
    if (d->terms) {
        reply_text(d, req, 403, "T_C_NOT_SIGNED");
        pthread_mutex_unlock(&d->mu);
        return;
    }
    json_t *body = NULL;
    int has_body = m == EVHTTP_REQ_POST || m == EVHTTP_REQ_PUT || m == EVHTTP_REQ_DELETE;
    if (has_body) {
        const char *ct = evhttp_find_header(ih, "Content-Type");
        if (!ct || strncasecmp(ct, "application/json", 16) != 0)
            d->header_violations++;
        if (!(body = request_json(req))) {
            reply_text(d, req, 400, "MALFORMED_REQUEST_BODY");
            pthread_mutex_unlock(&d->mu);
            return;
        }
    }
    if (strcmp(path, "/account") == 0 && m == EVHTTP_REQ_GET) {
        reply_json(d, req,
                   json_pack("{s:s,s:s,s:s,s:s,s:s,s:s,s:s}", "server_name", "orchard test server", "server_uuid",
                             "677cab70-fe18-11e2-b778-0800200c9a66", "facilitator_id", "facilitator1@example.com",
                             "org_name", "Sample Inc", "org_email", "orgadmin@example.com", "org_phone",
                             "111-222-3333", "org_address", "12 Infinite Loop, Cupertino, California 95014"));
    } else if (strcmp(path, "/server/devices") == 0 && m == EVHTTP_REQ_POST) {
        do_fetch(d, req, body);
    } else if (strcmp(path, "/devices/sync") == 0 && m == EVHTTP_REQ_POST) {
        do_sync(d, req, body);
    } else if (strcmp(path, "/devices") == 0 && m == EVHTTP_REQ_POST) {
        json_t *list = serials(body);
        if (!list) {
            reply_text(d, req, 400, "DEVICE_ID_REQUIRED");
        } else {
            json_t *res = json_object();
            for (size_t i = 0; i < json_array_size(list); i++) {
                const char *s = json_string_value(json_array_get(list, i));
                int k = find_device(d, s);
                json_t *o;
                if (k < 0 || d->devices[k].deleted) {
                    o = json_pack("{s:s}", "response_status", "NOT_FOUND");
                } else {
                    o = device_json(&d->devices[k], 1);
                    json_object_del(o, "serial_number");
                    json_object_set_new(o, "response_status", json_string("SUCCESS"));
                }
                json_object_set_new(res, s, o);
            }
            reply_json(d, req, json_pack("{s:o}", "devices", res));
        }
    } else if (strcmp(path, "/devices/disown") == 0 && m == EVHTTP_REQ_POST) {
        json_t *list = serials(body);
        if (!list) {
            reply_text(d, req, 400, "DEVICE_ID_REQUIRED");
        } else {
            json_t *res = json_object();
            for (size_t i = 0; i < json_array_size(list); i++) {
                const char *s = json_string_value(json_array_get(list, i));
                int k = find_device(d, s);
                if (k < 0 || d->devices[k].deleted) {
                    json_object_set_new(res, s, json_string("NOT_ACCESSIBLE"));
                } else {
                    d->devices[k].deleted = 1;
                    add_event(d, k, "deleted");
                    json_object_set_new(res, s, json_string("SUCCESS"));
                }
            }
            reply_json(d, req, json_pack("{s:o}", "devices", res));
        }
    } else if (strcmp(path, "/profile") == 0 && m == EVHTTP_REQ_POST) {
        do_define(d, req, body);
    } else if (strcmp(path, "/profile") == 0 && m == EVHTTP_REQ_GET) {
        struct evkeyvalq qs;
        const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
        memset(&qs, 0, sizeof qs);
        const char *uuid = NULL;
        if (query && evhttp_parse_query_str(query, &qs) == 0)
            uuid = evhttp_find_header(&qs, "profile_uuid");
        profile_t *p = find_profile(d, uuid);
        if (!uuid)
            reply_text(d, req, 400, "PROFILE_UUID_REQUIRED");
        else if (!p)
            reply_text(d, req, 404, "PROFILE_NOT_FOUND");
        else {
            json_t *o = json_loads(p->json, 0, NULL);
            json_object_set_new(o, "profile_uuid", json_string(p->uuid));
            reply_json(d, req, o);
        }
        evhttp_clear_headers(&qs);
    } else if (strcmp(path, "/profile/devices") == 0 && (m == EVHTTP_REQ_PUT || m == EVHTTP_REQ_DELETE)) {
        const char *uuid = json_string_value(json_object_get(body, "profile_uuid"));
        json_t *list = serials(body);
        if (m == EVHTTP_REQ_PUT && !uuid)
            reply_text(d, req, 400, "PROFILE_UUID_REQUIRED");
        else if (!list)
            reply_text(d, req, 400, "DEVICE_ID_REQUIRED");
        else if (m == EVHTTP_REQ_PUT && !find_profile(d, uuid))
            reply_text(d, req, 404, "PROFILE_NOT_FOUND");
        else
            reply_json(d, req,
                       m == EVHTTP_REQ_PUT ? json_pack("{s:s,s:o}", "profile_uuid", uuid, "devices", assign(d, uuid, list))
                                           : json_pack("{s:o}", "devices", assign(d, NULL, list)));
    } else if (strcmp(path, "/account") == 0 || strcmp(path, "/server/devices") == 0 ||
               strcmp(path, "/devices/sync") == 0 || strcmp(path, "/devices") == 0 ||
               strcmp(path, "/devices/disown") == 0 || strcmp(path, "/profile") == 0 ||
               strcmp(path, "/profile/devices") == 0) {
        reply_text(d, req, 405, "METHOD_NOT_ALLOWED");
    } else {
        reply_text(d, req, 404, "NOT_FOUND");
    }
    json_decref(body);
    pthread_mutex_unlock(&d->mu);
}

/* ---- thread, TLS ------------------------------------------------------------------ */

static struct bufferevent *tls_bev(struct event_base *base, void *arg)
{
    depsim_t *d = arg;
    return bufferevent_openssl_socket_new(base, -1, SSL_new(d->ctx), BUFFEREVENT_SSL_ACCEPTING,
                                          BEV_OPT_CLOSE_ON_FREE);
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    (void)fd;
    (void)what;
    event_base_loopbreak(arg);
}

static void *serve(void *arg)
{
    depsim_t *d = arg;
    event_base_dispatch(d->base);
    return NULL;
}

static int make_identity(depsim_t *d, const char *dir)
{
    EVP_PKEY *ca_key = pki_new_ec_key(), *key = pki_new_ec_key();
    const char *sans[] = {"127.0.0.1", "localhost"};
    X509 *ca = ca_key ? pki_issue_cert(NULL, ca_key, ca_key, "depsim CA", 30, PKI_USAGE_CA, NULL, 0) : NULL;
    X509 *cert = ca && key ? pki_issue_cert(ca, ca_key, key, "127.0.0.1", 30, PKI_USAGE_SERVER, sans, 2) : NULL;
    snprintf(d->ca_path, sizeof d->ca_path, "%s/depsim-ca.pem", dir);
    int ok = cert && pki_write_cert(d->ca_path, ca) == 0 && (d->ctx = SSL_CTX_new(TLS_server_method())) &&
             SSL_CTX_use_certificate(d->ctx, cert) == 1 && SSL_CTX_use_PrivateKey(d->ctx, key) == 1;
    X509_free(ca);
    X509_free(cert);
    EVP_PKEY_free(ca_key);
    EVP_PKEY_free(key);
    return ok ? 0 : -1;
}

depsim_t *depsim_start(const char *dir)
{
    depsim_t *d = calloc(1, sizeof *d);
    if (!d)
        return NULL;
    evthread_use_pthreads();
    pthread_mutex_init(&d->mu, NULL);
    d->limit_cap = 1000;
    for (int i = 0; i < MAX_FAULTS; i++)
        d->faults[i].retry_after = -1;
    if (make_identity(d, dir) != 0 || !(d->base = event_base_new()) || !(d->http = evhttp_new(d->base)))
        goto fail;
    evhttp_set_bevcb(d->http, tls_bev, d);
    evhttp_set_gencb(d->http, handle, d);
    evhttp_set_allowed_methods(d->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE);
    evhttp_set_max_body_size(d->http, 16 * 1024 * 1024);
    struct evhttp_bound_socket *bs = evhttp_bind_socket_with_handle(d->http, "127.0.0.1", 0);
    if (!bs)
        goto fail;
    struct sockaddr_in sa;
    socklen_t sl = sizeof sa;
    if (getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&sa, &sl) != 0)
        goto fail;
    snprintf(d->url, sizeof d->url, "https://127.0.0.1:%d", ntohs(sa.sin_port));
    if (!(d->stop_ev = event_new(d->base, -1, 0, on_stop, d->base)))
        goto fail;
    if (pthread_create(&d->thread, NULL, serve, d) != 0)
        goto fail;
    return d;
fail:
    if (d->stop_ev)
        event_free(d->stop_ev);
    if (d->http)
        evhttp_free(d->http);
    if (d->base)
        event_base_free(d->base);
    SSL_CTX_free(d->ctx);
    pthread_mutex_destroy(&d->mu);
    free(d);
    return NULL;
}

void depsim_stop(depsim_t *d)
{
    if (!d)
        return;
    event_active(d->stop_ev, EV_READ, 0);
    pthread_join(d->thread, NULL);
    event_free(d->stop_ev);
    evhttp_free(d->http);
    event_base_free(d->base);
    SSL_CTX_free(d->ctx);
    for (size_t i = 0; i < d->nprof; i++)
        free(d->profiles[i].json);
    free(d->profiles);
    free(d->devices);
    free(d->events);
    free(d->cursors);
    pthread_mutex_destroy(&d->mu);
    free(d);
}

const char *depsim_url(const depsim_t *d)
{
    return d->url;
}

const char *depsim_ca_path(const depsim_t *d)
{
    return d->ca_path;
}

unsigned char *depsim_token_file(const char *cert_pem_path, const char *consumer_key, int64_t expiry, size_t *len)
{
    X509 *cert = pki_load_cert(cert_pem_path);
    if (!cert)
        return NULL;
    char when[21];
    ade_time_format(expiry, when);
    char *content = util_strdup_printf(
        "Content-Type: text/plain;charset=UTF-8\r\nContent-Transfer-Encoding: 7bit\r\n\r\n"
        "-----BEGIN MESSAGE-----\n{\"consumer_key\":\"%s\",\"consumer_secret\":\"%s\",\"access_token\":\"%s\","
        "\"access_secret\":\"%s\",\"access_token_expiry\":\"%s\"}\n-----END MESSAGE-----\n",
        consumer_key ? consumer_key : DEPSIM_CONSUMER_KEY, DEPSIM_CONSUMER_SECRET, DEPSIM_ACCESS_TOKEN,
        DEPSIM_ACCESS_SECRET, when);
    STACK_OF(X509) *certs = sk_X509_new_null();
    sk_X509_push(certs, cert);
    BIO *in = content ? BIO_new_mem_buf(content, -1) : NULL;
    CMS_ContentInfo *cms = in ? CMS_encrypt(certs, in, EVP_aes_256_cbc(), CMS_BINARY) : NULL;
    BIO *out = BIO_new(BIO_s_mem());
    unsigned char *result = NULL;
    if (cms && out && SMIME_write_CMS(out, cms, NULL, 0) == 1) {
        char *data = NULL;
        long n = BIO_get_mem_data(out, &data);
        if (n > 0 && (result = malloc((size_t)n))) {
            memcpy(result, data, (size_t)n);
            *len = (size_t)n;
        }
    }
    BIO_free(out);
    BIO_free(in);
    CMS_ContentInfo_free(cms);
    sk_X509_pop_free(certs, X509_free);
    free(content);
    return result;
}

/* ---- control ------------------------------------------------------------------------ */

void depsim_add_device(depsim_t *d, const char *serial, const char *model)
{
    pthread_mutex_lock(&d->mu);
    add_device_locked(d, serial, model);
    pthread_mutex_unlock(&d->mu);
}

void depsim_add_devices(depsim_t *d, const char *prefix, int n)
{
    pthread_mutex_lock(&d->mu);
    for (int i = 1; i <= n; i++) {
        char s[64];
        snprintf(s, sizeof s, "%s%06d", prefix, i);
        grow((void **)&d->devices, &d->capdev, d->ndev + 1, sizeof *d->devices);
        size_t k = d->ndev++;
        memset(&d->devices[k], 0, sizeof d->devices[k]);
        snprintf(d->devices[k].serial, sizeof d->devices[k].serial, "%s", s);
        snprintf(d->devices[k].model, sizeof d->devices[k].model, "iPad");
        snprintf(d->devices[k].color, sizeof d->devices[k].color, "silver");
        snprintf(d->devices[k].profile_status, sizeof d->devices[k].profile_status, "empty");
        add_event(d, (int)k, "added");
        d->devices[k].assigned_date = d->events[d->nev - 1].op_date;
    }
    pthread_mutex_unlock(&d->mu);
}

void depsim_modify_device(depsim_t *d, const char *serial, const char *color)
{
    pthread_mutex_lock(&d->mu);
    int k = find_device(d, serial);
    if (k >= 0) {
        snprintf(d->devices[k].color, sizeof d->devices[k].color, "%s", color);
        add_event(d, k, "modified");
    }
    pthread_mutex_unlock(&d->mu);
}

void depsim_delete_device(depsim_t *d, const char *serial)
{
    pthread_mutex_lock(&d->mu);
    int k = find_device(d, serial);
    if (k >= 0) {
        d->devices[k].deleted = 1;
        add_event(d, k, "deleted");
    }
    pthread_mutex_unlock(&d->mu);
}

void depsim_repeat_event(depsim_t *d, const char *serial)
{
    pthread_mutex_lock(&d->mu);
    for (size_t i = d->nev; i-- > 0;) {
        if (strcmp(d->devices[d->events[i].dev].serial, serial) == 0) {
            grow((void **)&d->events, &d->capev, d->nev + 1, sizeof *d->events);
            d->events[d->nev] = d->events[i]; /* same op, same op_date */
            d->nev++;
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

void depsim_fail(depsim_t *d, const char *path_prefix, int status, const char *body, int retry_after, int count_)
{
    pthread_mutex_lock(&d->mu);
    for (int i = 0; i < MAX_FAULTS; i++) {
        fault_t *f = &d->faults[i];
        if (f->count == 0) {
            snprintf(f->prefix, sizeof f->prefix, "%s", path_prefix);
            f->status = status;
            snprintf(f->body, sizeof f->body, "%s", body ? body : "");
            f->retry_after = retry_after;
            f->count = count_;
            f->garbage = 0;
            break;
        }
    }
    pthread_mutex_unlock(&d->mu);
}

void depsim_garbage(depsim_t *d, const char *path_prefix)
{
    depsim_fail(d, path_prefix, 200, "", -1, 1);
    pthread_mutex_lock(&d->mu);
    for (int i = MAX_FAULTS; i-- > 0;)
        if (d->faults[i].count == 1 && strcmp(d->faults[i].prefix, path_prefix) == 0 && d->faults[i].status == 200) {
            d->faults[i].garbage = 1;
            break;
        }
    pthread_mutex_unlock(&d->mu);
}

void depsim_expire_sessions(depsim_t *d)
{
    pthread_mutex_lock(&d->mu);
    d->session[0] = '\0';
    pthread_mutex_unlock(&d->mu);
}

void depsim_rotate_every(depsim_t *d, int n)
{
    pthread_mutex_lock(&d->mu);
    d->rotate_every = n;
    d->answers = 0;
    pthread_mutex_unlock(&d->mu);
}

void depsim_expire_cursors(depsim_t *d)
{
    pthread_mutex_lock(&d->mu);
    for (size_t i = 0; i < d->ncur; i++)
        d->cursors[i].expired = 1;
    pthread_mutex_unlock(&d->mu);
}

void depsim_set_terms(depsim_t *d, int unsigned_terms)
{
    pthread_mutex_lock(&d->mu);
    d->terms = unsigned_terms;
    pthread_mutex_unlock(&d->mu);
}

void depsim_set_limit_cap(depsim_t *d, int cap)
{
    pthread_mutex_lock(&d->mu);
    d->limit_cap = cap > 0 ? cap : 1000;
    pthread_mutex_unlock(&d->mu);
}

int depsim_requests(depsim_t *d, const char *path)
{
    pthread_mutex_lock(&d->mu);
    int n = 0;
    for (size_t i = 0; i < sizeof d->counts / sizeof d->counts[0]; i++)
        if (strcmp(d->counts[i].path, path) == 0)
            n = d->counts[i].n;
    pthread_mutex_unlock(&d->mu);
    return n;
}

int depsim_sessions(depsim_t *d)
{
    pthread_mutex_lock(&d->mu);
    int n = d->sessions;
    pthread_mutex_unlock(&d->mu);
    return n;
}

int depsim_header_violations(depsim_t *d)
{
    pthread_mutex_lock(&d->mu);
    int n = d->header_violations;
    pthread_mutex_unlock(&d->mu);
    return n;
}

int depsim_oauth_failures(depsim_t *d)
{
    pthread_mutex_lock(&d->mu);
    int n = d->oauth_failures;
    pthread_mutex_unlock(&d->mu);
    return n;
}

int depsim_device_profile(depsim_t *d, const char *serial, char *uuid, size_t len)
{
    pthread_mutex_lock(&d->mu);
    int k = find_device(d, serial);
    if (k >= 0)
        snprintf(uuid, len, "%s", d->devices[k].profile_uuid);
    pthread_mutex_unlock(&d->mu);
    return k >= 0 ? 0 : -1;
}

char *depsim_profile_json(depsim_t *d, const char *uuid)
{
    pthread_mutex_lock(&d->mu);
    profile_t *p = find_profile(d, uuid);
    char *s = p && p->json ? strdup(p->json) : NULL;
    pthread_mutex_unlock(&d->mu);
    return s;
}
