/* Background ADE sync thread (see ade_syncer.h). */
#include "ade_syncer.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ade_time.h"
#include "log.h"
#include "util.h"

#define MAX_TOKENS 256
#define WARN_EVERY_S 86400

struct ade_syncer {
    ade_env_t *env;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
};

typedef struct {
    int n;
    char *names[MAX_TOKENS];
    int64_t now;
} names_t;

static int collect(void *ctx, const ade_token_t *t)
{
    names_t *c = ctx;
    if (c->n < MAX_TOKENS && (c->names[c->n] = strdup(t->name)))
        c->n++;
    return 0;
}

static int warn_one(void *ctx, const ade_token_t *t)
{
    const names_t *c = ctx;
    if (t->access_token_expiry <= 0)
        return 0;
    char when[21];
    ade_time_format(t->access_token_expiry, when);
    int64_t left = t->access_token_expiry - c->now;
    if (left <= 0)
        log_error("ade: token %s expired on %s: device sync has stopped; download a new token for this MDM server "
                  "in Apple Business Manager and import it (orchard ade token import %s FILE.p7m)",
                  t->name, when, t->name);
    else if (left <= (int64_t)ADE_RENEWAL_WARN_DAYS * 86400)
        log_warn("ade: token %s expires on %s (in %lld days): renew it in Apple Business Manager and import the new "
                 "file (orchard ade token import %s FILE.p7m)",
                 t->name, when, (long long)(left / 86400), t->name);
    return 0;
}

void ade_warn_expiry(store_t *s, int64_t now)
{
    names_t c = {.now = now};
    if (s->ops->ade_token_list(s, warn_one, &c) != STORE_OK)
        log_warn("ade: cannot list tokens for the renewal check: %s", s->ops->errmsg(s));
}

static int stopping(ade_syncer_t *x)
{
    pthread_mutex_lock(&x->mu);
    int st = x->stop;
    pthread_mutex_unlock(&x->mu);
    return st;
}

static void run_all(ade_syncer_t *x, store_t *s)
{
    names_t c = {0};
    if (s->ops->ade_token_list(s, collect, &c) != STORE_OK)
        log_warn("ade: cannot list tokens: %s", s->ops->errmsg(s));
    for (int i = 0; i < c.n; i++) {
        if (!stopping(x)) {
            ade_sync_report_t rep;
            ade_sync_token(x->env, s, c.names[i], &rep);
            if (rep.outcome == ADE_SYNC_LEASED)
                log_debug("ade: %s", rep.error.message);
        }
        free(c.names[i]);
    }
}

static void release_all(ade_syncer_t *x, store_t *s)
{
    names_t c = {0};
    s->ops->ade_token_list(s, collect, &c);
    for (int i = 0; i < c.n; i++) {
        char lease[96];
        snprintf(lease, sizeof lease, "ade-sync:%s", c.names[i]);
        if (s->ops->lease_release(s, lease, x->env->holder) == STORE_ERR)
            log_warn("ade: cannot release the lease %s: %s", lease, s->ops->errmsg(s));
        free(c.names[i]);
    }
}

static void *sync_thread(void *arg)
{
    ade_syncer_t *x = arg;
    char *err = NULL;
    store_t *s = store_open(x->env->db_url, &err);
    if (!s) {
        log_error("ade: cannot open the database, no background sync: %s", err ? err : "?");
        free(err);
        return NULL;
    }
    int64_t warned_at = 0;
    for (;;) {
        int64_t now = util_now();
        if (now - warned_at >= WARN_EVERY_S) {
            ade_warn_expiry(s, now);
            warned_at = now;
        }
        run_all(x, s);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += (time_t)x->env->interval_s;
        pthread_mutex_lock(&x->mu);
        while (!x->stop && pthread_cond_timedwait(&x->cv, &x->mu, &until) == 0)
            ;
        int stop = x->stop;
        pthread_mutex_unlock(&x->mu);
        if (stop)
            break;
    }
    /* Another instance may take over at once rather than after expiry. */
    release_all(x, s);
    store_close(s);
    return NULL;
}

ade_syncer_t *ade_syncer_start(ade_env_t *env)
{
    if (env->interval_s <= 0)
        return NULL;
    ade_syncer_t *x = calloc(1, sizeof *x);
    if (!x) {
        log_error("ade: out of memory");
        return NULL;
    }
    x->env = env;
    pthread_mutex_init(&x->mu, NULL);
    pthread_cond_init(&x->cv, NULL);
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old); /* signals are the main thread's */
    int rc = pthread_create(&x->thread, NULL, sync_thread, x);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rc != 0) {
        log_error("ade: cannot start the sync thread");
        pthread_mutex_destroy(&x->mu);
        pthread_cond_destroy(&x->cv);
        free(x);
        return NULL;
    }
    log_info("ade: syncing server tokens every %lld s with %s", (long long)env->interval_s,
             env->client.base_url ? env->client.base_url : "https://mdmenrollment.apple.com");
    return x;
}

void ade_syncer_stop(ade_syncer_t *x)
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
    free(x);
}
