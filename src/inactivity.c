/* The inactivity sweep (see inactivity.h). */
#include "inactivity.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LEASE_NAME "inactivity-sweep"
/* A sweep every quarter of the shorter interval, so a device is re-pushed or
 * flagged at most a quarter late, but at least once a minute is plenty for
 * intervals of hours and days; not more than once a second. */
#define PERIOD_MAX_S 60
#define CLAIM_BATCH 500

struct inactivity {
    inactivity_opts_t o;
    char *db_url;
    char holder[128];
    int64_t period_s;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

typedef struct {
    pusher_t *pusher;
    int queued, failed;
    char first_error[200];
} repush_ctx_t;

static int repush_one(void *arg, const enrollment_t *e)
{
    repush_ctx_t *c = arg;
    char err[256];
    if (pusher_push(c->pusher, e, err, sizeof err) == 0) {
        c->queued++;
    } else {
        if (c->failed++ == 0)
            snprintf(c->first_error, sizeof c->first_error, "%.60s: %.130s", e->id, err);
    }
    return 0;
}

static int stopping(inactivity_t *x)
{
    pthread_mutex_lock(&x->mu);
    int s = x->stop;
    pthread_mutex_unlock(&x->mu);
    return s;
}

static void sweep(inactivity_t *x, store_t *s)
{
    int64_t now = util_now();
    int rc = s->ops->lease_acquire(s, LEASE_NAME, x->holder, 3 * x->period_s, now);
    if (rc == STORE_CONFLICT) {
        log_debug("inactivity: another orchard instance holds the sweep lease");
        return;
    }
    if (rc != STORE_OK) {
        log_error("inactivity: cannot take the sweep lease: %s", s->ops->errmsg(s));
        return;
    }
    if (x->o.repush_after_s > 0) {
        repush_ctx_t c = {.pusher = x->o.pusher};
        int claimed = CLAIM_BATCH, total = 0;
        /* Claimed rows get last_repush_at = now, so each batch is new ones. */
        while (claimed == CLAIM_BATCH && !stopping(x)) {
            if (s->ops->repush_claim(s, now - x->o.repush_after_s, now, CLAIM_BATCH, repush_one, &c, &claimed) !=
                STORE_OK) {
                log_error("inactivity: cannot select silent devices: %s", s->ops->errmsg(s));
                break;
            }
            total += claimed;
        }
        if (total)
            log_info("inactivity: %d device(s) silent for over %lld s pushed again (%d queued, %d not pushed%s%s)",
                     total, (long long)x->o.repush_after_s, c.queued, c.failed, c.failed ? ", first: " : "",
                     c.first_error);
    }
    if (x->o.inactive_after_s > 0 && !stopping(x)) {
        int marked = 0;
        if (s->ops->inactive_mark(s, now - x->o.inactive_after_s, now, &marked) != STORE_OK)
            log_error("inactivity: cannot flag inactive devices: %s", s->ops->errmsg(s));
        else if (marked)
            log_info("inactivity: %d device(s) not heard from for over %lld s flagged inactive (event "
                     "marked_inactive)", marked, (long long)x->o.inactive_after_s);
    }
}

static void *sweep_thread(void *arg)
{
    inactivity_t *x = arg;
    char *err = NULL;
    store_t *s = store_open(x->db_url, &err);
    if (!s) {
        log_error("inactivity: cannot open the database, no sweep: %s", err ? err : "?");
        free(err);
        return NULL;
    }
    for (;;) {
        sweep(x, s);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)x->period_s;
        pthread_mutex_lock(&x->mu);
        while (!x->stop && pthread_cond_timedwait(&x->cv, &x->mu, &until) == 0)
            ;
        int stop = x->stop;
        pthread_mutex_unlock(&x->mu);
        if (stop)
            break;
    }
    /* Let another instance take over now rather than after the expiry. */
    if (s->ops->lease_release(s, LEASE_NAME, x->holder) == STORE_ERR)
        log_warn("inactivity: cannot release the sweep lease: %s", s->ops->errmsg(s));
    store_close(s);
    return NULL;
}

inactivity_t *inactivity_start(const inactivity_opts_t *o)
{
    if (o->repush_after_s <= 0 && o->inactive_after_s <= 0)
        return NULL;
    inactivity_t *x = calloc(1, sizeof *x);
    if (!x || !(x->db_url = strdup(o->db_url))) {
        free(x);
        log_error("inactivity: out of memory");
        return NULL;
    }
    x->o = *o;
    int64_t shortest = o->repush_after_s > 0 ? o->repush_after_s : o->inactive_after_s;
    if (o->inactive_after_s > 0 && o->inactive_after_s < shortest)
        shortest = o->inactive_after_s;
    x->period_s = shortest / 4;
    x->period_s = x->period_s < 1 ? 1 : x->period_s > PERIOD_MAX_S ? PERIOD_MAX_S : x->period_s;
    /* Unique per process: host, pid and a random part (a restarted
     * process must not inherit its predecessor's lease by pid reuse). */
    char host[64] = "?", rnd[9] = "0";
    gethostname(host, sizeof host - 1);
    if (util_random_hex(rnd, 4) != 0)
        snprintf(rnd, sizeof rnd, "%08x", (unsigned)util_now_us());
    snprintf(x->holder, sizeof x->holder, "%s:%ld:%s", host, (long)getpid(), rnd);
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    /* The server's main thread takes the signals; this thread must not. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    int rc = pthread_create(&x->thread, NULL, sweep_thread, x);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("inactivity: cannot start the sweep thread");
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->cv);
        free(x->db_url);
        free(x);
        return NULL;
    }
    log_info("inactivity: re-push after %lld s of silence, flag inactive after %lld s (0 = off), sweep every %lld s",
             (long long)o->repush_after_s, (long long)o->inactive_after_s, (long long)x->period_s);
    return x;
}

void inactivity_stop(inactivity_t *x)
{
    if (!x)
        return;
    pthread_mutex_lock(&x->mu);
    x->stop = 1;
    pthread_cond_signal(&x->cv);
    pthread_mutex_unlock(&x->mu);
    pthread_join(x->thread, NULL);
    pthread_mutex_destroy(&x->mu);
    pthread_cond_destroy(&x->cv);
    free(x->db_url);
    free(x);
}
