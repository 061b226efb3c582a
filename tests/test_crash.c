/* Crash consistency: a real orchard under device load is SIGKILLed at random
 * moments and restarted on the same data directory and port, repeatedly.
 *
 * Simulated devices (mTLS, one thread each) poll Idle, execute what they
 * get and report Acknowledged, Error or NotNow. Like a real device, a device
 * keeps its result until the server answers it with HTTP 200 and re-sends
 * it otherwise, so results that were committed just before a kill arrive a
 * second time (the repeat must be harmless). An admin thread enqueues
 * commands meanwhile and, like a careful client, retries an enqueue whose
 * answer was lost with the same UUID until it gets 200 or 409 (exists).
 *
 * What must hold after every crash, checked through the store API while the
 * server is down (every other kill; the rest leave recovery of the crashed
 * database to the restarted server itself), and again after a final drain
 * (no kills; every device works off its queue) and a clean stop:
 *   - no acknowledged result is lost: every Acknowledged/Error result that
 *     got a 200 is stored with that status (and its result body);
 *   - no command is lost: every command whose enqueue got 200/409 is there
 *     for each of its targets, finished or still pending (queued/NotNow);
 *   - nothing is invented: a finished status is one the device sent for that
 *     command, NotNow only if the device sent NotNow, and every stored
 *     command is one the admin thread enqueued for that device;
 *   - the store is consistent: SQLite's integrity_check and
 *     foreign_key_check pass, pending agrees with status (read back both
 *     ways: through the pending-only listing and, for SQLite, in SQL); on
 *     PostgreSQL, in SQL, every command of this run has targets (an enqueue
 *     is one transaction) and its indexes answer as its tables do;
 *   - no device is handed a command again after a 200 for its final result.
 * After the drain every command is finished with the status its device had
 * acknowledged, and the final stop exits 0 (no leaks under ASan).
 *
 * A SIGKILL ends the process, not the machine: the kernel still writes out
 * what the process had written, so this covers process crashes (commit
 * before reply, recovery of a hot WAL, idempotent repeats, enqueue retries)
 * but cannot show that the fsync before each reply happens (power loss).
 *
 * Only properties that must always hold are asserted; timing only decides
 * where the kills land. Environment: ORCHARD_CRASH_SEED (repeat a run's
 * choices: kill times, outcomes; thread timing still varies),
 * ORCHARD_CRASH_KILLS (default 10), ORCHARD_TEST_DB (run against that store
 * URL instead of the server's SQLite file; SQLite-only checks are skipped).
 * tests/test_pg_crash.c is this test against PostgreSQL (tests/run.sh's
 * second pass), with 5 kills.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "devsim.h"
#include "plist.h"
#include "store.h"
#include "testserver.h"
#include "util.h"

#define NDEV 30              /* devices (fewer than 64: targets are a bit mask) */
#define UPFRONT_CMDS 30      /* commands queued for every device before the load */
#ifndef DEFAULT_KILLS /* test_pg_crash.c sets fewer */
#define DEFAULT_KILLS 10
#endif
#define MAX_NOTNOW 2         /* NotNow answers per command and device: the drain must end */
#define ENQ_INTERVAL_MS 30   /* admin thread: one multi-target enqueue this often */
#define DRAIN_LIMIT_S 120    /* bound on the final drain (it takes a few seconds) */
#define LIST_LIMIT 1000      /* enrollment_commands page; a device gets far fewer */
#define ALL_DEVICES ((1ULL << NDEV) - 1)
_Static_assert(NDEV > 0 && NDEV < 64, "targets are a 64-bit mask");

/* ---- shared state -------------------------------------------------------- */

enum { PHASE_LOAD, PHASE_DRAIN, PHASE_STOP };

/* One command as the admin thread enqueued it. */
typedef struct {
    char uuid[64];
    uint64_t targets; /* bit i: device i */
    int confirmed;    /* 200, or 409 on a retry: it exists */
} enq_t;

/* One command as one device saw it. */
typedef struct {
    char uuid[64];
    const char *final_sent;  /* Acknowledged/Error once chosen (kept: a device does not change its mind) */
    const char *final_acked; /* the same, once the server answered it with 200 */
    int notnow_sent;
} rec_t;

typedef struct {
    char udid[80];
    EVP_PKEY *key;
    X509 *cert;
    devsim_t *d;
    pthread_t th;
    uint64_t rng;
    rec_t *recs; /* guarded by mu */
    size_t nrecs, cap;
    /* counters, guarded by mu */
    long requests, transport_failures, resent_results, status_503, status_other, bad_bodies;
    long acked_final, acked_notnow, after_final; /* after_final must stay 0 */
    int drained;
} simdev_t;

static testserver_t srv;
static char run_id[17];
static char run_like[32]; /* "CRASH-<run_id>-%": this run's rows in a shared database */
static char *store_url;
static int sqlite_mode;
static const char *server_args[3];
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static simdev_t devs[NDEV];
static enq_t *enqs; /* guarded by mu */
static size_t nenqs, enq_cap;
static long enq_retries, enq_409;
static _Atomic int phase = PHASE_LOAD;
static _Atomic int enqueuer_stop;
static uint64_t seed;

/* ---- helpers --------------------------------------------------------------- */

static uint64_t rnd(uint64_t *s) /* splitmix64: seeded, reproducible per thread */
{
    uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

static unsigned rnd_range(uint64_t *s, unsigned lo, unsigned hi) /* [lo, hi] */
{
    return lo + (unsigned)(rnd(s) % (hi - lo + 1));
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

static int final_status(const char *s)
{
    return strcmp(s, CMD_STATUS_ACKNOWLEDGED) == 0 || strcmp(s, CMD_STATUS_ERROR) == 0;
}

static int pending_status(const char *s)
{
    return strcmp(s, CMD_STATUS_QUEUED) == 0 || strcmp(s, CMD_STATUS_NOTNOW) == 0;
}

/* Caller holds mu. */
static rec_t *rec_find(simdev_t *v, const char *uuid)
{
    for (size_t i = 0; i < v->nrecs; i++)
        if (strcmp(v->recs[i].uuid, uuid) == 0)
            return &v->recs[i];
    return NULL;
}

/* Caller holds mu. NULL only when out of memory. */
static rec_t *rec_get(simdev_t *v, const char *uuid)
{
    rec_t *r = rec_find(v, uuid);
    if (r)
        return r;
    if (v->nrecs == v->cap) {
        size_t cap = v->cap ? v->cap * 2 : 64;
        rec_t *n = realloc(v->recs, cap * sizeof *n);
        if (!n)
            return NULL;
        v->recs = n;
        v->cap = cap;
    }
    r = &v->recs[v->nrecs++];
    memset(r, 0, sizeof *r);
    snprintf(r->uuid, sizeof r->uuid, "%s", uuid);
    return r;
}

/* Caller holds mu. */
static enq_t *enq_find(const char *uuid)
{
    for (size_t i = 0; i < nenqs; i++)
        if (strcmp(enqs[i].uuid, uuid) == 0)
            return &enqs[i];
    return NULL;
}

/* The result's own keys, as a device would send them. */
static plist_t *result_extra(const char *status)
{
    plist_t *m = plist_new_dict();
    if (strcmp(status, CMD_STATUS_ERROR) == 0) {
        plist_t *chain = plist_new_array();
        plist_t *e = plist_new_dict();
        plist_dict_set(e, "ErrorCode", plist_new_integer(12021));
        plist_dict_set(e, "ErrorDomain", plist_new_string("MCMDMErrorDomain"));
        plist_dict_set(e, "LocalizedDescription", plist_new_string("Simulated failure"));
        plist_array_append(chain, e);
        plist_dict_set(m, "ErrorChain", chain);
    } else if (strcmp(status, CMD_STATUS_ACKNOWLEDGED) == 0) {
        plist_t *qr = plist_new_dict();
        plist_dict_set(qr, "DeviceName", plist_new_string("Crash Test iPhone"));
        plist_dict_set(m, "QueryResponses", qr);
    }
    return m;
}

/* ---- devices ----------------------------------------------------------------- */

static void *device_main(void *arg)
{
    simdev_t *v = arg;
    int have_report = 0; /* a result this device still has to deliver */
    const char *report_status = NULL;
    char report_uuid[64] = "";
    int report_attempts = 0;
    while (phase != PHASE_STOP) {
        /* Read before sending: an empty answer to an Idle sent after the
         * drain began means the queue is empty for good (no more enqueues). */
        int draining = phase == PHASE_DRAIN;
        int idle = !have_report;
        devsim_reply_t r;
        if (idle)
            devsim_idle(v->d, &r);
        else
            devsim_report(v->d, report_uuid, report_status, result_extra(report_status), &r);

        pthread_mutex_lock(&mu);
        v->requests++;
        if (r.status != 200) {
            /* Server down (transport error), or refusing for a moment: keep
             * the result and send it again, as a device does. */
            if (r.status < 0)
                v->transport_failures++;
            else if (r.status == 503)
                v->status_503++;
            else
                v->status_other++;
            if (!idle && report_attempts++ == 0)
                v->resent_results++;
            pthread_mutex_unlock(&mu);
            devsim_reply_free(&r);
            sleep_ms(rnd_range(&v->rng, 20, 80));
            continue;
        }
        if (!idle) {
            rec_t *rec = rec_find(v, report_uuid);
            if (final_status(report_status)) {
                rec->final_acked = report_status;
                v->acked_final++;
            } else {
                v->acked_notnow++;
            }
            have_report = 0;
            report_attempts = 0;
        }
        const char *uuid = devsim_command_uuid(&r);
        if (r.body_len > 0 && !uuid)
            v->bad_bodies++;
        if (uuid) {
            rec_t *rec = rec_get(v, uuid);
            if (!rec)
                abort(); /* out of memory; no cmocka asserts off the main thread */
            if (rec->final_acked)
                v->after_final++;
            /* A command executed once keeps its outcome; otherwise pick one. */
            if (rec->final_sent) {
                report_status = rec->final_sent;
            } else {
                unsigned roll = rnd_range(&v->rng, 0, 99);
                if (roll < 15 && rec->notnow_sent < MAX_NOTNOW) {
                    report_status = CMD_STATUS_NOTNOW;
                    rec->notnow_sent++;
                } else {
                    report_status = roll < 27 ? CMD_STATUS_ERROR : CMD_STATUS_ACKNOWLEDGED;
                    rec->final_sent = report_status;
                }
            }
            have_report = 1;
            snprintf(report_uuid, sizeof report_uuid, "%s", uuid);
        }
        int done = idle && !uuid && draining;
        if (done)
            v->drained = 1;
        pthread_mutex_unlock(&mu);
        devsim_reply_free(&r);
        if (done)
            break;
        if (idle && !uuid)
            sleep_ms(rnd_range(&v->rng, 10, 40)); /* nothing queued: poll again soon */
    }
    return NULL;
}

/* ---- admin: enqueue ------------------------------------------------------------ */

/* One enqueue, retried with the same UUID while the server is down. 1 when
 * the command is known to exist (200, or 409 for a retry whose earlier
 * attempt was committed); 0 when it gave up (test stopping, or no answer
 * for ENQ_GIVE_UP_S) or got an unexpected answer (counted in
 * enq_unexpected). Runs on the admin thread too: no cmocka asserts here. */
#define ENQ_GIVE_UP_S 60
static long enq_unexpected;

static int enqueue(uint64_t targets)
{
    static const char *const types[] = {"DeviceInformation", "ProfileList", "InstalledApplicationList",
                                        "SecurityInfo"};
    pthread_mutex_lock(&mu);
    if (nenqs == enq_cap) {
        size_t cap = enq_cap ? enq_cap * 2 : 128;
        enq_t *n = realloc(enqs, cap * sizeof *n);
        if (!n)
            abort();
        enqs = n;
        enq_cap = cap;
    }
    size_t at = nenqs++;
    enq_t *e = &enqs[at];
    memset(e, 0, sizeof *e);
    snprintf(e->uuid, sizeof e->uuid, "CRASH-%s-C%04zu", run_id, at);
    e->targets = targets;
    char uuid[64];
    snprintf(uuid, sizeof uuid, "%s", e->uuid);
    pthread_mutex_unlock(&mu);

    size_t len = 0;
    char *xml = testserver_command_xml(uuid, types[at % 4], NULL, &len);
    char *ids = NULL;
    for (int i = 0; i < NDEV; i++) {
        if (!(targets >> i & 1))
            continue;
        char *n = ids ? util_strdup_printf("%s,%s", ids, devs[i].udid) : strdup(devs[i].udid);
        free(ids);
        ids = n;
    }
    char *path = util_strdup_printf("/v1/enqueue/%s?nopush=1", ids);
    int confirmed = 0;
    int64_t give_up = util_now_us() + (int64_t)ENQ_GIVE_UP_S * 1000000;
    for (int attempt = 0; phase != PHASE_STOP && util_now_us() < give_up; attempt++) {
        long st = testserver_api(&srv, "", "PUT", path, xml, len, NULL);
        if (st == 200 || (st == 409 && attempt > 0)) {
            /* 409 on a retry: an attempt whose answer was lost committed. */
            if (st == 409) {
                pthread_mutex_lock(&mu);
                enq_409++;
                pthread_mutex_unlock(&mu);
            }
            confirmed = 1;
            break;
        }
        pthread_mutex_lock(&mu);
        /* Anything but "down" or "busy" is a bug (409 on a first attempt
         * would be a UUID clash). */
        int unexpected = st != -1 && st != 503;
        if (unexpected) {
            enq_unexpected++;
            fprintf(stderr, "enqueue %s: HTTP %ld\n", uuid, st);
        } else {
            enq_retries++;
        }
        pthread_mutex_unlock(&mu);
        if (unexpected)
            break;
        sleep_ms(50);
    }
    pthread_mutex_lock(&mu);
    enqs[at].confirmed = confirmed;
    pthread_mutex_unlock(&mu);
    free(path);
    free(ids);
    free(xml);
    return confirmed;
}

static void *enqueuer_main(void *arg)
{
    uint64_t rng = *(uint64_t *)arg;
    while (!enqueuer_stop && phase != PHASE_STOP) {
        /* About three quarters of the devices per command: enough writes
         * that most kills land while results are being committed. */
        uint64_t mask = 0;
        while (!mask)
            mask = (rnd(&rng) | rnd(&rng)) & ALL_DEVICES;
        enqueue(mask);
        sleep_ms(rnd_range(&rng, ENQ_INTERVAL_MS / 2, ENQ_INTERVAL_MS * 3 / 2));
    }
    return NULL;
}

/* ---- the checks ------------------------------------------------------------------ */

typedef struct {
    char uuid[64];
    char status[24];
    int has_result, has_chain, pending_listed;
} entry_t;

typedef struct {
    entry_t *v;
    size_t n, cap;
    int oom;
} entries_t;

static int collect_cb(void *ctx, const command_target_t *t)
{
    entries_t *es = ctx;
    if (es->n == es->cap) {
        size_t cap = es->cap ? es->cap * 2 : 64;
        entry_t *n = realloc(es->v, cap * sizeof *n);
        if (!n) {
            es->oom = 1;
            return 1;
        }
        es->v = n;
        es->cap = cap;
    }
    entry_t *e = &es->v[es->n++];
    memset(e, 0, sizeof *e);
    snprintf(e->uuid, sizeof e->uuid, "%s", t->command_uuid);
    snprintf(e->status, sizeof e->status, "%s", t->status);
    e->has_result = t->result != NULL && t->result_len > 0;
    e->has_chain = t->error_chain_json != NULL && strstr(t->error_chain_json, "12021") != NULL;
    return 0;
}

static entry_t *entry_find(entries_t *es, const char *uuid)
{
    for (size_t i = 0; i < es->n; i++)
        if (strcmp(es->v[i].uuid, uuid) == 0)
            return &es->v[i];
    return NULL;
}

/* The first failure of a check, reported by the main thread once it has
 * released mu (a cmocka failure jumps out of the test). */
static char check_err[1024];

#define CHECK(cond, ...)                                                                                     \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            snprintf(check_err, sizeof check_err, __VA_ARGS__);                                              \
            goto out;                                                                                        \
        }                                                                                                    \
    } while (0)

static long sql_count(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = NULL;
    long n = -1;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

/* SQLite only, beneath the store API: the file as the crash left it. 0 if
 * all is well, else -1 with check_err set. */
static int check_sqlite(const char *when)
{
    char *path = util_strdup_printf("%s/orchard.db", srv.dir);
    sqlite3 *db = NULL;
    sqlite3_stmt *st = NULL;
    int rc = -1;
    CHECK(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL) == SQLITE_OK, "%s: cannot open %s: %s", when,
          path, db ? sqlite3_errmsg(db) : "?");
    sqlite3_busy_timeout(db, 5000);
    CHECK(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL) == SQLITE_OK &&
              sqlite3_step(st) == SQLITE_ROW,
          "%s: integrity_check: %s", when, sqlite3_errmsg(db));
    const char *ic = (const char *)sqlite3_column_text(st, 0);
    CHECK(ic && strcmp(ic, "ok") == 0, "%s: integrity_check: %s", when, ic ? ic : "(null)");
    sqlite3_finalize(st);
    /* foreign_key_check lists violating rows whether or not enforcement is on. */
    st = NULL;
    CHECK(sqlite3_prepare_v2(db, "PRAGMA foreign_key_check", -1, &st, NULL) == SQLITE_OK, "%s: %s", when,
          sqlite3_errmsg(db));
    int step = sqlite3_step(st);
    CHECK(step == SQLITE_DONE, "%s: foreign_key_check: %s", when,
          step == SQLITE_ROW ? "a row violates a reference" : sqlite3_errmsg(db));
    long bad = sql_count(db, "SELECT count(*) FROM command_targets WHERE pending != (status IN ('queued', 'NotNow'))");
    CHECK(bad == 0, "%s: %ld command targets whose pending flag disagrees with their status", when, bad);
    rc = 0;
out:
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(path);
    return rc;
}

static char pg_err[512];

/* A count over this run's rows ($1 = run_like); -1 and pg_err on failure. */
static long pg_count(PGconn *c, const char *sql)
{
    const char *params[] = {run_like};
    PGresult *r = PQexecParams(c, sql, 1, NULL, params, NULL, NULL, 0);
    long n = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atol(PQgetvalue(r, 0, 0)) : -1;
    if (n < 0)
        snprintf(pg_err, sizeof pg_err, "%s", PQerrorMessage(c));
    PQclear(r);
    return n;
}

/* PostgreSQL enforces references and computes `pending` itself, so what
 * a crash could break is atomicity (a command row whose targets were lost)
 * and the indexes (the server's lookups go through them): each count is
 * taken with index scans off and on, and must agree. */
static int check_postgres(const char *when)
{
    int rc = -1;
    PGconn *c = PQconnectdb(store_url);
    CHECK(PQstatus(c) == CONNECTION_OK, "%s: cannot connect to %s: %s", when, store_url, PQerrorMessage(c));
    long orphans = pg_count(c, "SELECT count(*) FROM commands c WHERE c.uuid LIKE $1 AND NOT EXISTS "
                               "(SELECT 1 FROM command_targets t WHERE t.command_id = c.id)");
    CHECK(orphans >= 0, "%s: %s", when, pg_err);
    CHECK(orphans == 0, "%s: %ld commands of this run without targets", when, orphans);
    static const char *const counts[] = {
        "SELECT count(*) FROM command_targets WHERE enrollment_id LIKE $1 AND pending",
        "SELECT count(*) FROM command_targets t JOIN commands c ON c.id = t.command_id WHERE c.uuid LIKE $1",
        "SELECT count(*) FROM enrollments WHERE id LIKE $1",
    };
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) {
        PQclear(PQexec(c, "SET enable_indexscan = off; SET enable_bitmapscan = off; SET enable_indexonlyscan = off"));
        long seq = pg_count(c, counts[i]);
        PQclear(PQexec(c, "RESET enable_indexscan; RESET enable_bitmapscan; RESET enable_indexonlyscan; "
                          "SET enable_seqscan = off"));
        long idx = pg_count(c, counts[i]);
        PQclear(PQexec(c, "RESET enable_seqscan"));
        CHECK(seq >= 0 && idx >= 0, "%s: %s", when, pg_err);
        CHECK(seq == idx, "%s: table and index scans disagree (%ld vs %ld) on: %s", when, seq, idx, counts[i]);
    }
    rc = 0;
out:
    PQfinish(c);
    return rc;
}

typedef struct {
    long acked_verified, commands_verified, finished, pending;
    int failed; /* check_err says why */
} tally_t;

/* The checks listed at the top, on the store as it is now (server down).
 * final: after the drain, so everything must be finished. Caller holds mu. */
static tally_t check_store(const char *when, int final)
{
    tally_t t = {0};
    entries_t all = {0}, pending = {0};
    char *err = NULL;
    store_t *s = NULL;
    t.failed = 1;
    if (sqlite_mode ? check_sqlite(when) != 0 : check_postgres(when) != 0)
        goto out;
    s = store_open(store_url, &err);
    CHECK(s, "%s: store_open(%s): %s", when, store_url, err ? err : "?");
    for (int i = 0; i < NDEV; i++) {
        simdev_t *v = &devs[i];
        all.n = pending.n = 0;
        CHECK(s->ops->enrollment_commands(s, v->udid, 0, LIST_LIMIT, collect_cb, &all) == STORE_OK &&
                  s->ops->enrollment_commands(s, v->udid, 1, LIST_LIMIT, collect_cb, &pending) == STORE_OK,
              "%s: %s: listing commands: %s", when, v->udid, s->ops->errmsg(s));
        CHECK(!all.oom && !pending.oom, "out of memory");
        CHECK(all.n < LIST_LIMIT, "%s: %s: more commands than one listing returns", when, v->udid);

        /* Pending listing == entries whose status is pending. */
        for (size_t k = 0; k < pending.n; k++) {
            entry_t *e = entry_find(&all, pending.v[k].uuid);
            CHECK(e && pending_status(pending.v[k].status), "%s: %s: pending listing has %s (%s)", when, v->udid,
                  pending.v[k].uuid, pending.v[k].status);
            e->pending_listed = 1;
        }
        for (size_t k = 0; k < all.n; k++) {
            entry_t *e = &all.v[k];
            CHECK(pending_status(e->status) == e->pending_listed, "%s: %s: %s is %s but %s in the pending listing",
                  when, v->udid, e->uuid, e->status, e->pending_listed ? "is" : "is not");
            /* Only what the admin thread enqueued for this device. */
            enq_t *q = enq_find(e->uuid);
            CHECK(q && (q->targets >> i & 1), "%s: %s holds command %s that was never enqueued for it", when,
                  v->udid, e->uuid);
            rec_t *rec = rec_find(v, e->uuid);
            if (final_status(e->status)) {
                t.finished++;
                CHECK(rec && rec->final_sent && strcmp(rec->final_sent, e->status) == 0,
                      "%s: %s: %s is %s, which the device never sent (it sent %s)", when, v->udid, e->uuid,
                      e->status, rec && rec->final_sent ? rec->final_sent : "no final result");
                CHECK(e->has_result && (strcmp(e->status, CMD_STATUS_ERROR) != 0 || e->has_chain),
                      "%s: %s: %s is %s without the device's result body", when, v->udid, e->uuid, e->status);
            } else if (strcmp(e->status, CMD_STATUS_NOTNOW) == 0) {
                t.pending++;
                CHECK(rec && rec->notnow_sent > 0, "%s: %s: %s is NotNow, which the device never sent", when,
                      v->udid, e->uuid);
            } else {
                t.pending++;
                CHECK(strcmp(e->status, CMD_STATUS_QUEUED) == 0, "%s: %s: %s has status %s", when, v->udid,
                      e->uuid, e->status);
            }
            CHECK(!final || final_status(e->status), "%s: %s: %s still %s after the drain", when, v->udid, e->uuid,
                  e->status);
        }
        /* No acknowledged result lost. */
        for (size_t k = 0; k < v->nrecs; k++) {
            rec_t *rec = &v->recs[k];
            entry_t *e = entry_find(&all, rec->uuid);
            CHECK(e, "%s: %s: command %s, handed out to the device, is gone", when, v->udid, rec->uuid);
            if (rec->final_acked) {
                CHECK(strcmp(e->status, rec->final_acked) == 0,
                      "%s: %s: acknowledged %s result for %s lost: stored status %s", when, v->udid,
                      rec->final_acked, rec->uuid, e->status);
                t.acked_verified++;
            } else {
                CHECK(!final, "%s: %s: %s ended %s without an acknowledged final result", when, v->udid, rec->uuid,
                      e->status);
            }
        }
        /* No command lost: every confirmed enqueue is there for each target. */
        for (size_t k = 0; k < nenqs; k++) {
            if (!(enqs[k].targets >> i & 1))
                continue;
            int present = entry_find(&all, enqs[k].uuid) != NULL;
            CHECK(present || !enqs[k].confirmed, "%s: %s: confirmed command %s is missing", when, v->udid,
                  enqs[k].uuid);
            CHECK(!final || !present || rec_find(v, enqs[k].uuid), "%s: %s: %s was never handed out", when, v->udid,
                  enqs[k].uuid);
            t.commands_verified += present;
        }
    }
    t.failed = 0;
out:
    free(all.v);
    free(pending.v);
    free(err);
    if (s)
        store_close(s);
    return t;
}

/* ---- the test ---------------------------------------------------------------- */

static uint64_t env_u64(const char *name, uint64_t dflt)
{
    const char *v = getenv(name);
    return v && *v ? strtoull(v, NULL, 0) : dflt;
}

static long count_in_log(const char *needle)
{
    char *log = util_read_file(srv.log_path, 256 << 20, NULL);
    long n = 0;
    for (const char *p = log; p && (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    free(log);
    return n;
}

static int threads_started, enqueuer_started, test_passed;
static pthread_t enq_th;

static void test_crash_consistency(void **state)
{
    (void)state;
    int64_t t0 = util_now_us();
    uint64_t entropy = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    seed = env_u64("ORCHARD_CRASH_SEED", rnd(&entropy));
    int kills = (int)env_u64("ORCHARD_CRASH_KILLS", DEFAULT_KILLS);
    printf("crash test: seed %" PRIu64 " (ORCHARD_CRASH_SEED to repeat), %d kills\n", seed, kills);
    uint64_t rng = seed;
    /* Names unique to the run, so a shared ORCHARD_TEST_DB database works. */
    snprintf(run_id, sizeof run_id, "%016" PRIx64, rnd(&rng));
    run_id[8] = '\0';
    snprintf(run_like, sizeof run_like, "CRASH-%s-%%", run_id);

    const char *shared = getenv("ORCHARD_TEST_DB");
    sqlite_mode = !(shared && *shared);
#ifdef CRASH_REQUIRES_TEST_DB
    if (sqlite_mode)
        skip(); /* the PostgreSQL variant, outside tests/run.sh's PostgreSQL pass */
#endif
    if (!sqlite_mode) {
        server_args[0] = "--db";
        server_args[1] = shared;
    }
    assert_int_equal(testserver_start(&srv, server_args), 0);
    store_url = sqlite_mode ? util_strdup_printf("sqlite:%s/orchard.db", srv.dir) : strdup(shared);

    for (int i = 0; i < NDEV; i++) {
        simdev_t *v = &devs[i];
        v->rng = rnd(&rng);
        snprintf(v->udid, sizeof v->udid, "CRASH-%s-DEV%02d", run_id, i);
        assert_int_equal(testserver_device_identity(&srv, v->udid, &v->key, &v->cert), 0);
        v->d = devsim_new(srv.base_url, srv.ca_path, v->udid, v->key, v->cert, DEVSIM_AUTH_MTLS);
        assert_non_null(v->d);
        devsim_set_quiet(v->d, 1);
        assert_int_equal(devsim_authenticate(v->d), 200);
        assert_int_equal(devsim_token_update(v->d), 200);
    }
    for (int c = 0; c < UPFRONT_CMDS; c++)
        assert_true(enqueue(ALL_DEVICES));

    for (int i = 0; i < NDEV; i++)
        assert_int_equal(pthread_create(&devs[i].th, NULL, device_main, &devs[i]), 0);
    threads_started = NDEV;
    static uint64_t enq_seed;
    enq_seed = rnd(&rng);
    assert_int_equal(pthread_create(&enq_th, NULL, enqueuer_main, &enq_seed), 0);
    enqueuer_started = 1;

    long checks = 0, acked_checked = 0;
    for (int k = 0; k < kills; k++) {
        /* Mostly mid-load; now and then right after startup. */
        sleep_ms(k % 4 == 3 ? rnd_range(&rng, 30, 200) : rnd_range(&rng, 300, 1500));
        testserver_kill(&srv);
        if (k % 2 == 0) {
            char when[32];
            snprintf(when, sizeof when, "after kill %d", k + 1);
            pthread_mutex_lock(&mu);
            tally_t t = check_store(when, 0);
            pthread_mutex_unlock(&mu);
            if (t.failed)
                fail_msg("%s", check_err);
            checks++;
            acked_checked += t.acked_verified;
            printf("  kill %2d: %ld acknowledged results and %ld command targets verified (%ld finished, "
                   "%ld pending)\n",
                   k + 1, t.acked_verified, t.commands_verified, t.finished, t.pending);
        }
        sleep_ms(rnd_range(&rng, 0, 300)); /* devices retry against a closed port */
        assert_int_equal(testserver_restart(&srv, server_args), 0);
    }
    sleep_ms(500); /* some load on the last incarnation too */

    enqueuer_stop = 1;
    pthread_join(enq_th, NULL);
    enqueuer_started = 0;
    int64_t drain_start = util_now_us();
    phase = PHASE_DRAIN;
    for (;;) {
        int done = 0;
        pthread_mutex_lock(&mu);
        for (int i = 0; i < NDEV; i++)
            done += devs[i].drained;
        pthread_mutex_unlock(&mu);
        if (done == NDEV || util_now_us() - drain_start > (int64_t)DRAIN_LIMIT_S * 1000000)
            break;
        sleep_ms(50);
    }
    phase = PHASE_STOP;
    for (int i = 0; i < NDEV; i++)
        pthread_join(devs[i].th, NULL);
    threads_started = 0;
    double drain_s = (double)(util_now_us() - drain_start) / 1e6;

    long repeats_ignored = count_in_log("ignored: not pending");
    assert_int_equal(testserver_stop_keep(&srv), 0); /* a clean exit: no leaks under ASan */

    /* Only this thread is left now. */
    tally_t t = check_store("final", 1);
    if (t.failed)
        fail_msg("%s", check_err);
    long requests = 0, tfail = 0, resent = 0, s503 = 0, other = 0, bad = 0, acked = 0, notnow = 0, after = 0;
    int drained = 0;
    for (int i = 0; i < NDEV; i++) {
        simdev_t *v = &devs[i];
        requests += v->requests;
        tfail += v->transport_failures;
        resent += v->resent_results;
        s503 += v->status_503;
        other += v->status_other;
        bad += v->bad_bodies;
        acked += v->acked_final;
        notnow += v->acked_notnow;
        after += v->after_final;
        drained += v->drained;
    }
    size_t confirmed = 0;
    for (size_t k = 0; k < nenqs; k++)
        confirmed += enqs[k].confirmed != 0;

    printf("crash test: %d kills, %ld mid-run checks (%ld acknowledged results checked); final: %ld "
           "acknowledged results verified, %ld command targets finished\n",
           kills, checks, acked_checked, t.acked_verified, t.finished);
    printf("crash test: %ld requests, %ld failed in transport, %ld results re-sent (%ld repeats ignored as "
           "already recorded), %ld NotNow, %zu/%zu enqueues confirmed (%ld retries, %ld found committed), "
           "%ld 503s, drain %.1f s, total %.1f s\n",
           requests, tfail, resent, repeats_ignored, notnow, confirmed, nenqs, enq_retries, enq_409, s503, drain_s,
           (double)(util_now_us() - t0) / 1e6);

    assert_int_equal(drained, NDEV);        /* every device worked off its queue */
    assert_int_equal(after, 0);             /* nothing handed out after its final result was acknowledged */
    assert_int_equal(other, 0);             /* no 4xx/5xx other than 503 */
    assert_int_equal(bad, 0);               /* every 200 body was empty or a command */
    assert_int_equal(enq_unexpected, 0);    /* enqueue answered only 200, 409 on a retry, or 503 */
    assert_int_equal(confirmed, nenqs);     /* every enqueue completed (retried until it did) */
    assert_int_equal(t.acked_verified, acked);
    assert_true(t.finished > 0);
    test_passed = 1;
}

/* Runs after a failure too: stop the threads, kill the server, free. A
 * failed run keeps its data directory for a look at the database and log. */
static int teardown(void **state)
{
    (void)state;
    enqueuer_stop = 1;
    phase = PHASE_STOP;
    if (srv.pid > 0)
        testserver_kill(&srv); /* requests fail fast from now on */
    if (enqueuer_started)
        pthread_join(enq_th, NULL);
    for (int i = 0; i < threads_started; i++)
        pthread_join(devs[i].th, NULL);
    for (int i = 0; i < NDEV; i++) {
        devsim_free(devs[i].d);
        EVP_PKEY_free(devs[i].key);
        X509_free(devs[i].cert);
        free(devs[i].recs);
    }
    free(enqs);
    free(store_url);
    if (srv.dir[0]) {
        if (test_passed)
            testserver_remove_dir(&srv);
        else
            fprintf(stderr, "crash test: failed; data directory and server log kept in %s\n", srv.dir);
    }
    return 0;
}

int main(void)
{
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_crash_consistency, teardown),
    };
    int rc = cmocka_run_group_tests(tests, NULL, NULL);
    curl_global_cleanup();
    return rc;
}
