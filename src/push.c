/* The APNs provider: queue, coalescing, the push thread with its HTTP/2
 * multi handle, retries, outcome recording and certificate rotation (see
 * push.h). Request/response details live in apns.c. */
#include "push.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "apns.h"
#include "log.h"
#include "util.h"

#define DEFAULT_MAX_INFLIGHT 1000
/* APNs accepts up to 1000 concurrent streams per connection; curl's own
 * default would be 100 and open ten times the connections. */
#define STREAMS_PER_CONNECTION 1000
#define BACKOFF_BASE_MS 200
#define BACKOFF_MAX_MS 30000
#define RESP_MAX 1024
/* Outcomes are written in batches: one transaction (one fsync) per batch. */
#define RESULT_BATCH 2048
#define RESULT_FLUSH_MS 50
#define FILE_CHECK_MS 1000
#define SHUTDOWN_GRACE_MS 2000

/* ---- data ---------------------------------------------------------------------- */

/* One enrollment's push: queued (in the heap) or in flight. Holds secrets
 * (token, PushMagic): wiped when freed. */
typedef struct entry {
    char *id;
    unsigned char token[APNS_TOKEN_MAX];
    size_t token_len;
    char magic[APNS_MAGIC_MAX + 1];
    int slot;
    int in_flight;
    int attempts;        /* failed attempts so far */
    int64_t due;         /* monotonic ms; while queued */
    int64_t again_due;   /* in flight and asked for again: push again at this time */
    size_t heap_i;
    struct entry *hnext;
} entry_t;

typedef struct {
    char *cert_path, *key_path;
    apns_cred_t cred;    /* cred.topic NULL: nothing loaded */
    unsigned gen;        /* bumped on each (re)load */
    struct stat cert_st, key_st;
    int seen;            /* cert_st/key_st valid */
    const char *state;   /* ready, missing, invalid, expired, rejected */
    char error[640];
    int64_t error_at, ok_at;
    uint64_t accepted, failed;
} topic_t;

/* One transfer. Pooled: the easy handle keeps its connection options. */
typedef struct req {
    CURL *easy;
    struct curl_slist *headers;
    entry_t *e;
    int slot;
    unsigned gen;        /* credentials the easy handle carries */
    unsigned char token[APNS_TOKEN_MAX];
    size_t token_len;
    char url[512];
    char body[2 * APNS_MAGIC_MAX + 32];
    char apns_id[65];
    char resp[RESP_MAX];
    size_t resp_len;
    char errbuf[CURL_ERROR_SIZE];
    struct req *next_free;   /* in the pool */
    struct req *prev, *next; /* in flight */
} req_t;

typedef struct {
    char *id;
    unsigned char token[APNS_TOKEN_MAX];
    size_t token_len;
    char apns_id[65];
    char *error;
    int token_invalid;
    int64_t at;
} result_t;

/* One push thread ("lane") with its own multi handle, connections, request
 * pool and outcome batch (and store handle). Lanes share the queue: each
 * takes due entries from the heap up to its share of --max-inflight. */
typedef struct lane {
    struct pusher *p;
    int index;
    pthread_t thread;
    int started;
    CURLM *multi;
    req_t *free_reqs;
    req_t *active;
    size_t active_n, cap; /* requests in flight here, and this lane's share of max_inflight */
    result_t *results;
    size_t nresults;
    int64_t first_result_ms;
    store_t *store;
    unsigned rng;
} lane_t;

struct pusher {
    pusher_opts_t o;
    char *base_url, *ca_file, *db_url;
    topic_t *topics;
    size_t ntopics;

    pthread_mutex_t mu; /* everything below, and topics[].state/error/counters/cred.topic */
    entry_t **buckets;
    size_t nbuckets, nentries;
    entry_t **heap;
    size_t heap_len, heap_cap;
    size_t in_flight;
    int stop;
    uint64_t accepted, failed, token_invalid, retried;

    lane_t *lanes; /* each touched only by its own thread (and by pusher_new/pusher_free) */
    size_t nlanes;
    int curl_inited;
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ---- map and heap (under mu) --------------------------------------------------- */

static size_t hash_id(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static entry_t *map_find(pusher_t *p, const char *id)
{
    for (entry_t *e = p->buckets[hash_id(id) & (p->nbuckets - 1)]; e; e = e->hnext)
        if (strcmp(e->id, id) == 0)
            return e;
    return NULL;
}

static int map_grow(pusher_t *p)
{
    size_t n = p->nbuckets * 2;
    entry_t **b = calloc(n, sizeof *b);
    if (!b)
        return -1;
    for (size_t i = 0; i < p->nbuckets; i++) {
        for (entry_t *e = p->buckets[i], *next; e; e = next) {
            next = e->hnext;
            size_t h = hash_id(e->id) & (n - 1);
            e->hnext = b[h];
            b[h] = e;
        }
    }
    free(p->buckets);
    p->buckets = b;
    p->nbuckets = n;
    return 0;
}

static void map_remove(pusher_t *p, entry_t *e)
{
    entry_t **pp = &p->buckets[hash_id(e->id) & (p->nbuckets - 1)];
    while (*pp && *pp != e)
        pp = &(*pp)->hnext;
    if (*pp)
        *pp = e->hnext;
    p->nentries--;
}

static void entry_free(entry_t *e)
{
    if (!e)
        return;
    free(e->id);
    OPENSSL_cleanse(e, sizeof *e);
    free(e);
}

static void heap_swap(pusher_t *p, size_t a, size_t b)
{
    entry_t *t = p->heap[a];
    p->heap[a] = p->heap[b];
    p->heap[b] = t;
    p->heap[a]->heap_i = a;
    p->heap[b]->heap_i = b;
}

static void heap_up(pusher_t *p, size_t i)
{
    while (i > 0 && p->heap[(i - 1) / 2]->due > p->heap[i]->due) {
        heap_swap(p, i, (i - 1) / 2);
        i = (i - 1) / 2;
    }
}

static void heap_down(pusher_t *p, size_t i)
{
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < p->heap_len && p->heap[l]->due < p->heap[m]->due)
            m = l;
        if (r < p->heap_len && p->heap[r]->due < p->heap[m]->due)
            m = r;
        if (m == i)
            return;
        heap_swap(p, i, m);
        i = m;
    }
}

static int heap_push(pusher_t *p, entry_t *e)
{
    if (p->heap_len == p->heap_cap) {
        size_t cap = p->heap_cap ? 2 * p->heap_cap : 256;
        entry_t **h = realloc(p->heap, cap * sizeof *h);
        if (!h)
            return -1;
        p->heap = h;
        p->heap_cap = cap;
    }
    e->heap_i = p->heap_len;
    p->heap[p->heap_len++] = e;
    heap_up(p, e->heap_i);
    return 0;
}

static entry_t *heap_pop(pusher_t *p)
{
    entry_t *top = p->heap[0];
    p->heap_len--;
    if (p->heap_len) {
        p->heap[0] = p->heap[p->heap_len];
        p->heap[0]->heap_i = 0;
        heap_down(p, 0);
    }
    return top;
}

/* ---- topics ------------------------------------------------------------------------- */

static void topic_error(topic_t *t, const char *state, const char *msg)
{
    t->state = state;
    snprintf(t->error, sizeof t->error, "%s", msg);
    t->error_at = util_now();
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_size == b->st_size && a->st_mtim.tv_sec == b->st_mtim.tv_sec &&
           a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* Loads (or reloads) a topic's certificate when its files changed since the
 * last look. Runs on the push thread (and once in pusher_new). */
static void topic_check(pusher_t *p, topic_t *t)
{
    struct stat cs, ks;
    if (stat(t->cert_path, &cs) != 0 || stat(t->key_path, &ks) != 0) {
        pthread_mutex_lock(&p->mu);
        /* The state starts as "missing" without a message: fill it in on
         * the first look, then only on a change of state. */
        if (!t->cred.topic && (strcmp(t->state, "missing") != 0 || !t->error[0])) {
            char msg[600];
            snprintf(msg, sizeof msg, "no push certificate: %s or %s is missing", t->cert_path, t->key_path);
            topic_error(t, "missing", msg);
        }
        pthread_mutex_unlock(&p->mu);
        return;
    }
    if (t->seen && same_file(&cs, &t->cert_st) && same_file(&ks, &t->key_st))
        return;
    int reload = t->seen;
    t->cert_st = cs;
    t->key_st = ks;
    t->seen = 1;

    apns_cred_t c;
    char err[512];
    if (apns_cred_load(t->cert_path, t->key_path, &c, err, sizeof err) != 0) {
        /* Mid-rotation (new certificate, old key) lands here too: the old
         * credentials stay in use and the next change is picked up. */
        log_error("push: %s push certificate failed: %s%s", reload ? "reloading the" : "loading the", err,
                  t->cred.topic ? " (still using the previous one)" : "");
        pthread_mutex_lock(&p->mu);
        if (!t->cred.topic)
            topic_error(t, "invalid", err);
        else
            snprintf(t->error, sizeof t->error, "reload failed, previous certificate in use: %.500s", err);
        pthread_mutex_unlock(&p->mu);
        return;
    }
    int64_t now = util_now();
    pthread_mutex_lock(&p->mu);
    if (t->cred.topic && strcmp(t->cred.topic, c.topic) != 0)
        log_warn("push: the certificate in %s changed topic from %s to %s; enrollments of the old topic can no "
                 "longer be pushed", t->cert_path, t->cred.topic, c.topic);
    apns_cred_clear(&t->cred);
    t->cred = c;
    t->gen++;
    t->error[0] = '\0';
    t->error_at = 0;
    t->state = "ready";
    if (c.not_after <= now) {
        char msg[256];
        snprintf(msg, sizeof msg, "the push certificate for %s expired on %s; renew it in Apple's Push "
                                  "Certificates Portal and import it (orchard pushcert import)",
                 c.topic, c.not_after_text);
        topic_error(t, "expired", msg);
    }
    const char *state = t->state;
    pthread_mutex_unlock(&p->mu);
    if (strcmp(state, "expired") == 0)
        log_error("push: %s: %s", t->cert_path, t->error);
    else
        log_info("push: topic %s %s from %s (expires %s)", c.topic, reload ? "certificate reloaded" : "loaded",
                 t->cert_path, c.not_after_text);
}

/* The topic slot for an enrollment (under mu): its own topic, or the first
 * topic when the enrollment names none. -1 if none matches. */
static int slot_for(pusher_t *p, const char *topic)
{
    for (size_t i = 0; i < p->ntopics; i++)
        if (p->topics[i].cred.topic && (!topic || strcmp(p->topics[i].cred.topic, topic) == 0))
            return (int)i;
    return -1;
}

/* ---- submission (worker threads) ------------------------------------------------------ */

int pusher_push(pusher_t *p, const enrollment_t *e, char *err, size_t errlen)
{
    if (!e->push_token || !e->push_token_len || !e->push_magic) {
        util_set_err(err, errlen, "no push token: the device has not sent TokenUpdate");
        return -1;
    }
    if (e->push_token_invalid) {
        util_set_err(err, errlen, "push token invalid (%s); no push until the device sends a new TokenUpdate",
                     e->last_push_error ? e->last_push_error : "refused by APNs");
        return -1;
    }
    if (e->push_token_len > APNS_TOKEN_MAX || strlen(e->push_magic) > APNS_MAGIC_MAX) {
        util_set_err(err, errlen, "the stored push token or PushMagic is too long to be real");
        return -1;
    }
    if (!p || p->ntopics == 0) {
        util_set_err(err, errlen, "APNs push is not configured (no push certificate); the command waits "
                                  "until the device polls");
        return -1;
    }
    int rc = -1, wake = 0;
    pthread_mutex_lock(&p->mu);
    int slot = slot_for(p, e->topic);
    if (slot < 0) {
        int any = 0;
        for (size_t i = 0; i < p->ntopics; i++)
            any |= p->topics[i].cred.topic != NULL;
        if (!any)
            util_set_err(err, errlen, "APNs push is not configured (%s); the command waits until the device polls",
                         p->topics[0].error[0] ? p->topics[0].error : "no push certificate");
        else
            util_set_err(err, errlen, "no push certificate for topic %s", e->topic ? e->topic : "(none)");
        goto out;
    }
    topic_t *t = &p->topics[slot];
    if (t->cred.not_after <= util_now() || strcmp(t->state, "rejected") == 0) {
        util_set_err(err, errlen, "%s", t->error[0] ? t->error : "the push certificate is not usable");
        goto out;
    }
    int64_t now = now_ms();
    entry_t *en = map_find(p, e->id);
    if (!en) {
        if (p->nentries >= p->nbuckets && map_grow(p) != 0)
            goto oom;
        if (!(en = calloc(1, sizeof *en)) || !(en->id = strdup(e->id))) {
            free(en);
            goto oom;
        }
        en->due = now + p->o.coalesce_ms;
        if (heap_push(p, en) != 0) {
            entry_free(en);
            goto oom;
        }
        /* Lanes sleep until the earliest due entry (or until a transfer
         * finishes): only a new earliest one needs them awake. Waking on
         * every push cost the submitting thread one write per lane. */
        wake = en->heap_i == 0;
        size_t h = hash_id(en->id) & (p->nbuckets - 1);
        en->hnext = p->buckets[h];
        p->buckets[h] = en;
        p->nentries++;
    } else if (en->in_flight && !en->again_due) {
        en->again_due = now + p->o.coalesce_ms;
    }
    /* Queued already: this request joins it. The latest token wins. */
    memcpy(en->token, e->push_token, e->push_token_len);
    en->token_len = e->push_token_len;
    snprintf(en->magic, sizeof en->magic, "%s", e->push_magic);
    en->slot = slot;
    rc = 0;
    goto out;
oom:
    util_set_err(err, errlen, "out of memory");
out:
    pthread_mutex_unlock(&p->mu);
    /* Every lane: whichever is idle takes it first. */
    for (size_t i = 0; rc == 0 && wake && i < p->nlanes; i++)
        curl_multi_wakeup(p->lanes[i].multi);
    return rc;
}

/* ---- outcomes ------------------------------------------------------------------------------ */

static void flush_results(lane_t *p)
{
    if (p->nresults == 0)
        return;
    push_result_t *r = calloc(p->nresults, sizeof *r);
    if (r && p->store) {
        for (size_t i = 0; i < p->nresults; i++) {
            result_t *x = &p->results[i];
            r[i] = (push_result_t){.enrollment_id = x->id,
                                   .push_token = x->token,
                                   .push_token_len = x->token_len,
                                   .apns_id = x->error ? NULL : (x->apns_id[0] ? x->apns_id : NULL),
                                   .error = x->error,
                                   .token_invalid = x->token_invalid,
                                   .at = x->at};
        }
        if (p->store->ops->push_results_record(p->store, r, p->nresults) != STORE_OK)
            log_error("push: cannot record %zu push outcomes: %s", p->nresults, p->store->ops->errmsg(p->store));
    } else {
        log_error("push: cannot record %zu push outcomes: %s", p->nresults, r ? "no database" : "out of memory");
    }
    free(r);
    for (size_t i = 0; i < p->nresults; i++) {
        free(p->results[i].id);
        free(p->results[i].error);
        OPENSSL_cleanse(p->results[i].token, sizeof p->results[i].token);
    }
    p->nresults = 0;
}

static void add_result(lane_t *p, const char *id, const unsigned char *token, size_t token_len,
                       const char *apns_id, const char *error, int token_invalid)
{
    if (p->nresults == RESULT_BATCH)
        flush_results(p);
    result_t *x = &p->results[p->nresults];
    memset(x, 0, sizeof *x);
    x->id = strdup(id);
    x->error = error ? strdup(error) : NULL;
    if (!x->id || (error && !x->error)) {
        log_error("push: out of memory recording the outcome for %s", id);
        free(x->id);
        free(x->error);
        return;
    }
    memcpy(x->token, token, token_len);
    x->token_len = token_len;
    snprintf(x->apns_id, sizeof x->apns_id, "%s", apns_id ? apns_id : "");
    x->token_invalid = token_invalid;
    x->at = util_now();
    if (p->nresults++ == 0)
        p->first_result_ms = now_ms();
}

/* Exponential backoff with jitter: half the step fixed, half random, so
 * retries of a burst spread out instead of arriving together. */
static int64_t backoff_ms(lane_t *p, int attempts)
{
    int64_t step = BACKOFF_BASE_MS;
    for (int i = 1; i < attempts && step < BACKOFF_MAX_MS; i++)
        step *= 2;
    if (step > BACKOFF_MAX_MS)
        step = BACKOFF_MAX_MS;
    p->rng = p->rng * 1103515245u + 12345u;
    return step / 2 + (int64_t)((p->rng >> 8) % (unsigned)(step / 2 + 1));
}

/* ---- transfers (push thread) ------------------------------------------------------------ */

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud)
{
    req_t *r = ud;
    size_t n = size * nmemb, room = RESP_MAX - r->resp_len;
    memcpy(r->resp + r->resp_len, ptr, n < room ? n : room); /* the rest is dropped: reasons are short */
    r->resp_len += n < room ? n : room;
    return n;
}

static size_t on_header(char *buf, size_t size, size_t nitems, void *ud)
{
    req_t *r = ud;
    size_t n = size * nitems;
    if (n > 8 && strncasecmp(buf, "apns-id:", 8) == 0)
        apns_copy_id(buf + 8, n - 8, r->apns_id, sizeof r->apns_id);
    return n;
}

static req_t *req_get(lane_t *l)
{
    pusher_t *p = l->p;
    req_t *r = l->free_reqs;
    if (r) {
        l->free_reqs = r->next_free;
        return r;
    }
    if (!(r = calloc(1, sizeof *r)))
        return NULL;
    if (!(r->easy = curl_easy_init())) {
        free(r);
        return NULL;
    }
    CURL *c = r->easy;
    r->slot = -1;
    curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_2TLS);
    /* Wait for an existing connection to confirm HTTP/2 rather than open a
     * new one per request: the burst then shares one connection. */
    curl_easy_setopt(c, CURLOPT_PIPEWAIT, 1L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)p->o.timeout_s * 1000);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)p->o.timeout_s * 1000);
    curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    if (p->ca_file)
        curl_easy_setopt(c, CURLOPT_CAINFO, p->ca_file);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, r->errbuf);
    curl_easy_setopt(c, CURLOPT_PRIVATE, r);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
    return r;
}

static void req_put(lane_t *p, req_t *r)
{
    curl_slist_free_all(r->headers);
    r->headers = NULL;
    r->e = NULL;
    OPENSSL_cleanse(r->body, sizeof r->body);
    r->next_free = p->free_reqs;
    p->free_reqs = r;
}

static void req_destroy(req_t *r)
{
    curl_easy_cleanup(r->easy);
    curl_slist_free_all(r->headers);
    OPENSSL_cleanse(r, sizeof *r);
    free(r);
}

/* Finishes an entry after a final outcome (under mu): either gone, or
 * queued again because a request arrived while it was in flight. */
static void entry_done(pusher_t *p, entry_t *e, int token_rejected, const unsigned char *token, size_t token_len)
{
    e->in_flight = 0;
    p->in_flight--;
    int token_changed = e->token_len != token_len || memcmp(e->token, token, token_len) != 0;
    if (e->again_due && (!token_rejected || token_changed)) {
        e->due = e->again_due;
        e->again_due = 0;
        e->attempts = 0;
        if (heap_push(p, e) == 0)
            return;
        log_error("push: out of memory re-queueing the push for %s", e->id);
    }
    map_remove(p, e);
    entry_free(e);
}

static void active_add(lane_t *p, req_t *r)
{
    p->active_n++;
    r->prev = NULL;
    r->next = p->active;
    if (p->active)
        p->active->prev = r;
    p->active = r;
}

static void active_remove(lane_t *p, req_t *r)
{
    p->active_n--;
    if (r->prev)
        r->prev->next = r->next;
    else
        p->active = r->next;
    if (r->next)
        r->next->prev = r->prev;
    r->prev = r->next = NULL;
}

/* Sends one push (entry already counted in flight). */
static void start_one(lane_t *l, entry_t *e, int64_t expiration)
{
    pusher_t *p = l->p;
    req_t *r = req_get(l);
    char err[192] = "out of memory";
    pthread_mutex_lock(&p->mu);
    topic_t *t = &p->topics[e->slot];
    int ok = r && t->cred.topic;
    if (r && !t->cred.topic)
        snprintf(err, sizeof err, "the push certificate of this topic is no longer loaded");
    char path[2 * APNS_TOKEN_MAX + 16];
    if (ok && (apns_path(e->token, e->token_len, path, sizeof path) != 0 ||
               apns_mdm_body(e->magic, r->body, sizeof r->body) < 0)) {
        snprintf(err, sizeof err, "stored push token or PushMagic unusable");
        ok = 0;
    }
    if (ok) {
        snprintf(r->url, sizeof r->url, "%s%s", p->base_url, path);
        memcpy(r->token, e->token, e->token_len);
        r->token_len = e->token_len;
        char h[300];
        snprintf(h, sizeof h, "apns-topic: %s", t->cred.topic);
        struct curl_slist *hl = curl_slist_append(NULL, h);
        hl = hl ? curl_slist_append(hl, "apns-push-type: mdm") : NULL;
        hl = hl ? curl_slist_append(hl, "apns-priority: 10") : NULL;
        snprintf(h, sizeof h, "apns-expiration: %lld", (long long)expiration);
        hl = hl ? curl_slist_append(hl, h) : NULL;
        hl = hl ? curl_slist_append(hl, "content-type: application/json") : NULL;
        /* curl would otherwise add an Accept header APNs does not need. */
        hl = hl ? curl_slist_append(hl, "accept:") : NULL;
        r->headers = hl;
        ok = hl != NULL;
        if (ok && (r->slot != e->slot || r->gen != t->gen)) {
            /* Blobs are part of curl's connection matching: a rotated
             * certificate gets a new connection, other topics their own. */
            struct curl_blob cb = {t->cred.cert_pem, t->cred.cert_len, CURL_BLOB_COPY};
            struct curl_blob kb = {t->cred.key_pem, t->cred.key_len, CURL_BLOB_COPY};
            ok = curl_easy_setopt(r->easy, CURLOPT_SSLCERT_BLOB, &cb) == CURLE_OK &&
                 curl_easy_setopt(r->easy, CURLOPT_SSLKEY_BLOB, &kb) == CURLE_OK;
            r->slot = ok ? e->slot : -1;
            r->gen = t->gen;
        }
    }
    pthread_mutex_unlock(&p->mu);
    if (ok) {
        r->e = e;
        r->apns_id[0] = '\0';
        r->resp_len = 0;
        r->errbuf[0] = '\0';
        curl_easy_setopt(r->easy, CURLOPT_URL, r->url);
        curl_easy_setopt(r->easy, CURLOPT_HTTPHEADER, r->headers);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDS, r->body);
        curl_easy_setopt(r->easy, CURLOPT_POSTFIELDSIZE, (long)strlen(r->body));
        if (curl_multi_add_handle(l->multi, r->easy) == CURLM_OK) {
            active_add(l, r);
            return;
        }
        snprintf(err, sizeof err, "cannot start the APNs request");
    }
    /* Could not even send: a final failure, recorded like any other. */
    log_warn("push: %s: %s", e->id, err);
    add_result(l, e->id, e->token, e->token_len, NULL, err, 0);
    pthread_mutex_lock(&p->mu);
    p->failed++;
    unsigned char token[APNS_TOKEN_MAX];
    size_t token_len = e->token_len;
    memcpy(token, e->token, token_len);
    entry_done(p, e, 0, token, token_len);
    pthread_mutex_unlock(&p->mu);
    OPENSSL_cleanse(token, sizeof token);
    if (r)
        req_put(l, r);
}

/* Moves due entries into flight, up to this lane's share of the cap. */
static void start_due(lane_t *l)
{
    pusher_t *p = l->p;
    entry_t *batch[256];
    for (;;) {
        size_t n = 0;
        int64_t now = now_ms();
        pthread_mutex_lock(&p->mu);
        while (n < 256 && p->heap_len && p->heap[0]->due <= now && l->active_n + n < l->cap) {
            entry_t *e = heap_pop(p);
            e->in_flight = 1;
            p->in_flight++;
            batch[n++] = e;
        }
        pthread_mutex_unlock(&p->mu);
        if (n == 0)
            return;
        int64_t exp = p->o.expiration_s > 0 ? util_now() + p->o.expiration_s : 0;
        for (size_t i = 0; i < n; i++)
            start_one(l, batch[i], exp);
    }
}

static void finish_one(lane_t *l, CURLMsg *m)
{
    pusher_t *p = l->p;
    req_t *r = NULL;
    curl_easy_getinfo(m->easy_handle, CURLINFO_PRIVATE, (char **)&r);
    curl_multi_remove_handle(l->multi, m->easy_handle);
    active_remove(l, r);
    entry_t *e = r->e;
    apns_result_t res;
    long status = 0;
    if (m->data.result == CURLE_OK) {
        curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
        apns_classify_http(status, r->resp, r->resp_len, &res);
    } else {
        CURLcode cc = m->data.result;
        int tls = cc == CURLE_SSL_CONNECT_ERROR || cc == CURLE_SSL_CERTPROBLEM || cc == CURLE_PEER_FAILED_VERIFICATION ||
                  cc == CURLE_SSL_CIPHER || cc == CURLE_SSL_ENGINE_INITFAILED ||
                  strstr(r->errbuf, "SSL") != NULL;
        char detail[CURL_ERROR_SIZE + 64];
        /* curl's own message first: it names the TLS alert, if any. */
        snprintf(detail, sizeof detail, "%s (%s)", r->errbuf[0] ? r->errbuf : "-", curl_easy_strerror(cc));
        apns_classify_transport(tls, detail, &res);
        /* The server does not trust *its* side: our CA setting or APNs'
         * certificate is wrong, not the push certificate. Retrying cannot help
         * but it is not the topic's fault either. */
        if (cc == CURLE_PEER_FAILED_VERIFICATION) {
            res.outcome = APNS_FAILED;
            snprintf(res.error, sizeof res.error, "cannot verify the APNs server's certificate: %.120s", detail);
        }
    }

    pthread_mutex_lock(&p->mu);
    topic_t *t = &p->topics[r->slot >= 0 ? (size_t)r->slot : 0];
    int final = 1, token_rejected = 0;
    const char *error = NULL;
    switch (res.outcome) {
    case APNS_OK:
        p->accepted++;
        t->accepted++;
        t->ok_at = util_now();
        if (strcmp(t->state, "ready") != 0 && strcmp(t->state, "expired") != 0 && r->gen == t->gen)
            t->state = "ready";
        break;
    case APNS_TOKEN_INVALID:
        p->token_invalid++;
        p->failed++;
        token_rejected = 1;
        error = res.error;
        break;
    case APNS_CERT_REJECTED:
        p->failed++;
        t->failed++;
        error = res.error;
        /* Only the certificate this request carried; a newer one is untested. */
        if (r->gen == t->gen && strcmp(t->state, "rejected") != 0) {
            char msg[400];
            snprintf(msg, sizeof msg, "%s; import a valid certificate for %s (orchard pushcert import)", res.error,
                     t->cred.topic ? t->cred.topic : "this topic");
            topic_error(t, "rejected", msg);
            log_error("push: topic %s: %s", t->cred.topic ? t->cred.topic : "?", msg);
        }
        break;
    case APNS_RETRY:
        if (++e->attempts < p->o.attempts && !p->stop) {
            final = 0;
            p->retried++;
            int64_t wait = backoff_ms(l, e->attempts);
            log_debug("push: %s: %s; retry %d in %lld ms", e->id, res.error, e->attempts, (long long)wait);
            e->in_flight = 0;
            p->in_flight--;
            e->due = now_ms() + wait;
            e->again_due = 0; /* the retry is the push asked for */
            if (heap_push(p, e) != 0) {
                final = 1;
                e->in_flight = 1;
                p->in_flight++;
                error = "out of memory scheduling a retry";
            }
        } else {
            error = res.error;
        }
        if (final) {
            p->failed++;
            t->failed++;
        }
        break;
    case APNS_FAILED:
        p->failed++;
        t->failed++;
        error = res.error;
        break;
    }
    char id_copy[2 * 200 + 2];
    snprintf(id_copy, sizeof id_copy, "%s", e->id);
    int attempts = e->attempts;
    if (final)
        entry_done(p, e, token_rejected, r->token, r->token_len);
    pthread_mutex_unlock(&p->mu);

    if (final) {
        if (res.outcome == APNS_OK)
            log_debug("push: %s accepted apns-id=%s", id_copy, r->apns_id);
        else if (res.outcome == APNS_TOKEN_INVALID)
            log_info("push: %s: %s", id_copy, error);
        else if (res.outcome == APNS_RETRY)
            log_warn("push: %s: giving up after %d attempts: %s", id_copy, attempts, error);
        else
            log_warn("push: %s: %s", id_copy, error);
        char msg[320];
        if (res.outcome == APNS_RETRY && error)
            snprintf(msg, sizeof msg, "%s (gave up after %d attempts)", error, attempts);
        add_result(l, id_copy, r->token, r->token_len, r->apns_id, error ? (res.outcome == APNS_RETRY ? msg : error) : NULL,
                   token_rejected);
    }
    req_put(l, r);
}

/* ---- the thread ------------------------------------------------------------------------------ */

static int64_t next_due_wait(lane_t *l, int64_t now)
{
    pusher_t *p = l->p;
    int64_t wait = FILE_CHECK_MS;
    pthread_mutex_lock(&p->mu);
    if (p->heap_len && l->active_n < l->cap) {
        int64_t d = p->heap[0]->due - now;
        wait = d < 0 ? 0 : d < wait ? d : wait;
    }
    pthread_mutex_unlock(&p->mu);
    return wait;
}

/* Pushes still queued or in flight when the server stops are recorded as
 * failed, so the API shows why the device was not woken. Runs once, after
 * every lane has stopped. */
static void abandon_all(lane_t *l)
{
    pusher_t *p = l->p;
    size_t n = 0;
    pthread_mutex_lock(&p->mu);
    for (size_t i = 0; i < p->nbuckets; i++) {
        for (entry_t *e = p->buckets[i], *next; e; e = next) {
            next = e->hnext;
            add_result(l, e->id, e->token, e->token_len, NULL, "not sent: the server shut down first", 0);
            entry_free(e);
            n++;
        }
        p->buckets[i] = NULL;
    }
    p->nentries = 0;
    p->heap_len = 0;
    p->in_flight = 0;
    pthread_mutex_unlock(&p->mu);
    if (n)
        log_warn("push: %zu pushes not sent because the server is shutting down (recorded per device)", n);
}

static void *push_thread(void *arg)
{
    lane_t *l = arg;
    pusher_t *p = l->p;
    int64_t last_check = now_ms(), stop_at = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        int stop = p->stop;
        pthread_mutex_unlock(&p->mu);
        int64_t now = now_ms();
        if (stop) {
            if (!stop_at)
                stop_at = now;
            if (l->active_n == 0 || now - stop_at >= SHUTDOWN_GRACE_MS)
                break;
        } else {
            /* One lane watches the certificate files for all. */
            if (l->index == 0 && now - last_check >= FILE_CHECK_MS) {
                for (size_t i = 0; i < p->ntopics; i++)
                    topic_check(p, &p->topics[i]);
                last_check = now;
            }
            start_due(l);
        }
        int running = 0;
        curl_multi_perform(l->multi, &running);
        CURLMsg *m;
        int left;
        while ((m = curl_multi_info_read(l->multi, &left)))
            if (m->msg == CURLMSG_DONE)
                finish_one(l, m);
        if (l->nresults && (l->nresults >= RESULT_BATCH / 2 || now_ms() - l->first_result_ms >= RESULT_FLUSH_MS))
            flush_results(l);
        int64_t wait = stop ? 50 : next_due_wait(l, now_ms());
        if (l->nresults && wait > RESULT_FLUSH_MS)
            wait = RESULT_FLUSH_MS;
        curl_multi_poll(l->multi, NULL, 0, (int)wait, NULL);
    }
    /* Transfers still running after the grace period. */
    while (l->active) {
        req_t *r = l->active;
        active_remove(l, r);
        curl_multi_remove_handle(l->multi, r->easy);
        req_destroy(r); /* its entry is still in the map: abandon_all records it */
    }
    flush_results(l);
    return NULL;
}

/* ---- lifecycle and status ------------------------------------------------------------------ */

/* Default lanes: one per CPU beyond the first, at most DEFAULT_MAX_THREADS.
 * With libcurl 7.88 the push thread is CPU-bound (per request: URL parsing,
 * HTTP/1-style header assembly, one send() per request, and each
 * curl_multi_perform() visits every transfer it holds), so lanes are what
 * scales past ~16,000 pushes/s. */
#define DEFAULT_MAX_THREADS 2
#define MAX_THREADS 16

static size_t default_threads(void)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    return cpus >= 2 ? DEFAULT_MAX_THREADS : 1;
}

static int lane_init(pusher_t *p, lane_t *l, size_t index)
{
    l->p = p;
    l->index = (int)index;
    l->rng = (unsigned)util_now_us() ^ (unsigned)(index * 2654435761u);
    /* A lane's share of the in-flight cap, so one lane cannot take it all. */
    l->cap = ((size_t)p->o.max_inflight + p->nlanes - 1) / p->nlanes;
    if (!(l->results = calloc(RESULT_BATCH, sizeof *l->results)) || !(l->multi = curl_multi_init()))
        return -1;
    curl_multi_setopt(l->multi, CURLMOPT_PIPELINING, (long)CURLPIPE_MULTIPLEX);
    curl_multi_setopt(l->multi, CURLMOPT_MAX_CONCURRENT_STREAMS, (long)STREAMS_PER_CONNECTION);
    /* Until a new connection's SETTINGS arrive curl assumes 100 streams per
     * connection, so a burst would open a connection per 100 pushes. A host
     * limit makes the burst wait for the few connections instead; curl
     * closes an idle connection of another topic when one needs room. */
    curl_multi_setopt(l->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)(2 + 2 * p->ntopics));
    char *err = NULL;
    if (!(l->store = store_open(p->db_url, &err)))
        log_error("push: cannot open the database, push outcomes will not be recorded: %s", err ? err : "?");
    free(err);
    return 0;
}

pusher_t *pusher_new(const pusher_opts_t *o)
{
    pusher_t *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->o = *o;
    if (p->o.max_inflight <= 0)
        p->o.max_inflight = DEFAULT_MAX_INFLIGHT;
    if (p->o.attempts <= 0)
        p->o.attempts = 1;
    if (p->o.timeout_s <= 0)
        p->o.timeout_s = 10;
    pthread_mutex_init(&p->mu, NULL);
    p->nbuckets = 1024;
    p->base_url = strdup(o->base_url ? o->base_url : APNS_URL_PRODUCTION);
    p->ca_file = o->ca_file ? strdup(o->ca_file) : NULL;
    p->db_url = o->db_url ? strdup(o->db_url) : NULL;
    p->buckets = calloc(p->nbuckets, sizeof *p->buckets);
    p->topics = o->ntopics ? calloc(o->ntopics, sizeof *p->topics) : NULL;
    if (!p->base_url || (o->ca_file && !p->ca_file) || !p->buckets || (o->ntopics && !p->topics))
        goto fail;
    /* Trailing slashes would make "//3/device". */
    for (size_t n = strlen(p->base_url); n > 0 && p->base_url[n - 1] == '/'; n--)
        p->base_url[n - 1] = '\0';
    p->ntopics = o->ntopics;
    p->o.cert_paths = p->o.key_paths = NULL;
    for (size_t i = 0; i < p->ntopics; i++) {
        topic_t *t = &p->topics[i];
        t->state = "missing";
        if (!(t->cert_path = strdup(o->cert_paths[i])) || !(t->key_path = strdup(o->key_paths[i])))
            goto fail;
    }
    if (p->ntopics == 0)
        return p; /* nothing to push with: every push reports it */
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
        goto fail;
    p->curl_inited = 1;
    size_t want = o->threads > 0 ? (size_t)o->threads : default_threads();
    if (want > MAX_THREADS)
        want = MAX_THREADS;
    if (want > (size_t)p->o.max_inflight)
        want = (size_t)p->o.max_inflight;
    if (!(p->lanes = calloc(want, sizeof *p->lanes)))
        goto fail;
    p->nlanes = want;
    for (size_t i = 0; i < p->nlanes; i++)
        if (lane_init(p, &p->lanes[i], i) != 0)
            goto fail;
    for (size_t i = 0; i < p->ntopics; i++) {
        topic_check(p, &p->topics[i]);
        if (!p->topics[i].cred.topic && strcmp(p->topics[i].state, "missing") == 0)
            log_warn("push: %s", p->topics[i].error);
    }
    /* The server's main thread takes the signals; these threads must not. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = 0;
    for (size_t i = 0; i < p->nlanes && rc == 0; i++)
        if ((rc = pthread_create(&p->lanes[i].thread, NULL, push_thread, &p->lanes[i])) == 0)
            p->lanes[i].started = 1;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0)
        goto fail;
    log_info("push: APNs provider for %zu topic(s) at %s, %zu push thread(s)", p->ntopics, p->base_url, p->nlanes);
    return p;
fail:
    log_error("push: cannot start the APNs provider (out of memory or resources)");
    pusher_free(p);
    return NULL;
}

void pusher_free(pusher_t *p)
{
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_mutex_unlock(&p->mu);
    for (size_t i = 0; i < p->nlanes; i++)
        if (p->lanes[i].started)
            curl_multi_wakeup(p->lanes[i].multi);
    for (size_t i = 0; i < p->nlanes; i++)
        if (p->lanes[i].started)
            pthread_join(p->lanes[i].thread, NULL);
    /* Every lane has stopped: what is left in the map was never answered. */
    if (p->nlanes && p->lanes[0].results) {
        abandon_all(&p->lanes[0]);
        flush_results(&p->lanes[0]);
    }
    for (size_t i = 0; i < p->nlanes; i++) {
        lane_t *l = &p->lanes[i];
        for (req_t *r = l->free_reqs, *next; r; r = next) {
            next = r->next_free;
            req_destroy(r);
        }
        if (l->multi)
            curl_multi_cleanup(l->multi);
        store_close(l->store);
        free(l->results);
    }
    free(p->lanes);
    if (p->curl_inited)
        curl_global_cleanup();
    for (size_t i = 0; p->buckets && i < p->nbuckets; i++)
        for (entry_t *e = p->buckets[i], *next; e; e = next) {
            next = e->hnext;
            entry_free(e);
        }
    for (size_t i = 0; p->topics && i < p->ntopics; i++) {
        free(p->topics[i].cert_path);
        free(p->topics[i].key_path);
        apns_cred_clear(&p->topics[i].cred);
    }
    free(p->topics);
    free(p->buckets);
    free(p->heap);
    free(p->base_url);
    free(p->ca_file);
    free(p->db_url);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

static json_t *iso_time(int64_t t)
{
    if (t <= 0)
        return json_null();
    time_t tt = (time_t)t;
    struct tm tm;
    char buf[32];
    if (!gmtime_r(&tt, &tm) || strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return json_null();
    return json_string(buf);
}

json_t *pusher_status(pusher_t *p)
{
    json_t *o = json_object();
    json_t *topics = json_array();
    if (!p) {
        json_object_set_new(o, "configured", json_false());
        json_object_set_new(o, "topics", topics);
        return o;
    }
    pthread_mutex_lock(&p->mu);
    int any = 0;
    for (size_t i = 0; i < p->ntopics; i++) {
        topic_t *t = &p->topics[i];
        any |= t->cred.topic != NULL;
        json_t *j = json_object();
        json_object_set_new(j, "topic", t->cred.topic ? json_string(t->cred.topic) : json_null());
        json_object_set_new(j, "cert_file", json_string(t->cert_path));
        json_object_set_new(j, "not_after", t->cred.topic ? iso_time(t->cred.not_after) : json_null());
        json_object_set_new(j, "state", json_string(t->state));
        json_object_set_new(j, "error", t->error[0] ? json_string(t->error) : json_null());
        json_object_set_new(j, "error_at", iso_time(t->error_at));
        json_object_set_new(j, "last_accepted_at", iso_time(t->ok_at));
        json_object_set_new(j, "accepted", json_integer((json_int_t)t->accepted));
        json_object_set_new(j, "failed", json_integer((json_int_t)t->failed));
        json_array_append_new(topics, j);
    }
    json_object_set_new(o, "configured", json_boolean(any));
    json_object_set_new(o, "url", json_string(p->base_url));
    json_object_set_new(o, "queued", json_integer((json_int_t)p->heap_len));
    json_object_set_new(o, "in_flight", json_integer((json_int_t)p->in_flight));
    json_object_set_new(o, "accepted", json_integer((json_int_t)p->accepted));
    json_object_set_new(o, "failed", json_integer((json_int_t)p->failed));
    json_object_set_new(o, "token_invalid", json_integer((json_int_t)p->token_invalid));
    json_object_set_new(o, "retried", json_integer((json_int_t)p->retried));
    pthread_mutex_unlock(&p->mu);
    json_object_set_new(o, "topics", topics);
    return o;
}

void pusher_stats(pusher_t *p, pusher_stats_t *out)
{
    memset(out, 0, sizeof *out);
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    out->accepted = p->accepted;
    out->failed = p->failed;
    out->token_invalid = p->token_invalid;
    out->retried = p->retried;
    out->queued = p->heap_len;
    out->in_flight = p->in_flight;
    pthread_mutex_unlock(&p->mu);
}
