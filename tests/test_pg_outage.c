/* PostgreSQL outage under load: a real `orchard serve` on its own
 * throwaway PostgreSQL cluster serves devices (threads of simulated
 * devices fetching commands and acknowledging them) while the database
 * server is stopped (fast shutdown: every session cut, as when the
 * database host fails) and, a few seconds later, started again.
 *
 * What must hold:
 *   - while the database is down, device and admin requests are answered
 *     503 quickly (every request, before, during and after, within
 *     MAX_REQUEST_S): no hang, no crash;
 *   - orchard recovers by itself (no restart): after the database is back
 *     every command is fetched and acknowledged;
 *   - nothing acknowledged is lost or applied twice: every command was
 *     answered 200 to its Acknowledged report exactly once, and the
 *     database holds exactly one result for each (status Acknowledged, one
 *     command_result event per command).
 * A device that gets 503 for a report keeps the result and sends it again,
 * as a real device does.
 *
 * Runs in tests/run.sh's PostgreSQL pass (skips without ORCHARD_TEST_DB):
 * it starts a cluster of its own with tests/pg.sh, since it stops it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>

#include "devsim.h"
#include "plist.h"
#include "store.h"
#include "testserver.h"
#include "util.h"

#define DEVICES 6
#define CMDS 25             /* per device */
#define MAX_REQUEST_S 4     /* bound on any one request's latency */
#define OUTAGE_S 4          /* how long the database stays down */
#define RECOVERY_DEADLINE_S 90

typedef struct {
    pthread_t th;
    devsim_t *d;
    char udid[64];
    char uuid[CMDS][64];
    int acked[CMDS];          /* 200 answers to our Acknowledged reports */
    int unknown_commands;     /* handed a command that is not ours */
    int other_status;         /* neither 200 nor 503 */
    int n503;
    int64_t max_latency_us;
    int done;
} device_t;

static device_t devices[DEVICES];
static _Atomic int stop_flag;
static _Atomic int total_acked;

static int index_of(device_t *dv, const char *uuid)
{
    for (int i = 0; uuid && i < CMDS; i++)
        if (strcmp(dv->uuid[i], uuid) == 0)
            return i;
    return -1;
}

static void *device_main(void *arg)
{
    device_t *dv = arg;
    char pending[64] = ""; /* a result the server has not accepted yet */
    while (!atomic_load(&stop_flag)) {
        devsim_reply_t r;
        int64_t t0 = util_now_us();
        int rc = pending[0] ? devsim_report(dv->d, pending, "Acknowledged", NULL, &r) : devsim_idle(dv->d, &r);
        int64_t took = util_now_us() - t0;
        if (took > dv->max_latency_us)
            dv->max_latency_us = took;
        if (rc != 0 || r.status == 503) {
            dv->n503 += rc == 0;
            dv->other_status += rc != 0;
            if (rc == 0)
                devsim_reply_free(&r);
            usleep(100 * 1000);
            continue;
        }
        if (r.status != 200) {
            dv->other_status++;
            devsim_reply_free(&r);
            usleep(100 * 1000);
            continue;
        }
        if (pending[0]) {
            int i = index_of(dv, pending);
            if (i >= 0) {
                dv->acked[i]++;
                atomic_fetch_add(&total_acked, 1);
            }
            pending[0] = '\0';
        }
        const char *next = devsim_command_uuid(&r);
        if (next) {
            if (index_of(dv, next) < 0)
                dv->unknown_commands++;
            snprintf(pending, sizeof pending, "%s", next);
        } else {
            int all = 1;
            for (int i = 0; i < CMDS; i++)
                all &= dv->acked[i] > 0;
            if (all) {
                dv->done = 1;
                devsim_reply_free(&r);
                break;
            }
            usleep(50 * 1000);
        }
        devsim_reply_free(&r);
    }
    return NULL;
}

/* Runs tests/pg.sh; the last output line in `out` (if given). */
static int pg_sh(const char *verb, const char *dir, char *out, size_t cap)
{
    char cmd[512];
    snprintf(cmd, sizeof cmd, "sh tests/pg.sh %s %s", verb, dir);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -1;
    char line[512];
    if (out && cap)
        out[0] = '\0';
    while (fgets(line, sizeof line, p))
        if (out)
            snprintf(out, cap, "%s", line);
    if (out) {
        size_t n = strlen(out);
        while (n && (out[n - 1] == '\n' || out[n - 1] == '\r'))
            out[--n] = '\0';
    }
    return pclose(p);
}

typedef struct {
    int n, events;
} count_t;

static int count_result_events(void *ctx, const store_event_t *ev)
{
    count_t *c = ctx;
    c->events += strcmp(ev->kind, "command_result") == 0;
    return 0;
}

static int check_target(void *ctx, const command_target_t *t)
{
    count_t *c = ctx;
    c->n += strcmp(t->status, CMD_STATUS_ACKNOWLEDGED) == 0 && t->result != NULL;
    return 0;
}

static void test_outage_under_load(void **state)
{
    (void)state;
    if (!getenv("ORCHARD_TEST_DB"))
        skip();
    char dir[] = "/tmp/orchard-outage-XXXXXX";
    assert_non_null(mkdtemp(dir));
    rmdir(dir); /* pg.sh wants to create it */
    char url[512];
    assert_int_equal(pg_sh("start", dir, url, sizeof url), 0);
    assert_int_equal(strncmp(url, "postgres://", 11), 0);

    testserver_t srv;
    const char *args[] = {"--db", url, "--workers", "4", NULL};
    assert_int_equal(testserver_start(&srv, args), 0);

    char hex[9];
    assert_int_equal(util_random_hex(hex, 4), 0);
    for (int k = 0; k < DEVICES; k++) {
        device_t *dv = &devices[k];
        snprintf(dv->udid, sizeof dv->udid, "OUTAGE-%s-%d", hex, k);
        EVP_PKEY *key = NULL;
        X509 *cert = NULL;
        assert_int_equal(testserver_device_identity(&srv, dv->udid, &key, &cert), 0);
        dv->d = devsim_new(srv.base_url, srv.ca_path, dv->udid, key, cert, DEVSIM_AUTH_MTLS);
        EVP_PKEY_free(key);
        X509_free(cert);
        assert_non_null(dv->d);
        devsim_set_quiet(dv->d, 1);
        assert_int_equal(devsim_authenticate(dv->d), 200);
        assert_int_equal(devsim_token_update(dv->d), 200);
        for (int i = 0; i < CMDS; i++) {
            snprintf(dv->uuid[i], sizeof dv->uuid[i], "OUT-%s-%d-%02d", hex, k, i);
            size_t len;
            char *xml = testserver_command_xml(dv->uuid[i], "DeviceInformation", NULL, &len);
            char *path = util_strdup_printf("/v1/enqueue/%s?nopush=1", dv->udid);
            assert_int_equal(testserver_api(&srv, "", "PUT", path, xml, len, NULL), 200);
            free(path);
            free(xml);
        }
    }

    for (int k = 0; k < DEVICES; k++)
        assert_int_equal(pthread_create(&devices[k].th, NULL, device_main, &devices[k]), 0);
    /* Let some work happen first. */
    int64_t until = util_now_us() + 30 * 1000000LL;
    while (atomic_load(&total_acked) < DEVICES * CMDS / 5 && util_now_us() < until)
        usleep(20 * 1000);
    assert_true(atomic_load(&total_acked) >= DEVICES * CMDS / 5);
    /* The database goes away. */
    assert_int_equal(pg_sh("halt", dir, NULL, 0), 0);
    int acked_before = atomic_load(&total_acked);
    int n503_before = 0;
    for (int k = 0; k < DEVICES; k++)
        n503_before += devices[k].n503;
    sleep(1);
    /* An admin request: 503 at once, not a hang. */
    char *path = util_strdup_printf("/v1/devices/%s", devices[0].udid);
    int64_t t0 = util_now_us();
    assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, NULL), 503);
    assert_true(util_now_us() - t0 < MAX_REQUEST_S * 1000000LL);
    sleep(OUTAGE_S - 1);
    int n503_during = 0;
    for (int k = 0; k < DEVICES; k++)
        n503_during += devices[k].n503;
    assert_true(n503_during - n503_before >= DEVICES); /* every device was refused */
    int acked_during = atomic_load(&total_acked) - acked_before;
    assert_true(acked_during <= DEVICES); /* at most the reports in flight at the stop */
    assert_int_equal(kill(srv.pid, 0), 0); /* still running */
    assert_true(testserver_log_contains(&srv, "storage error"));

    /* It comes back; orchard reconnects by itself. */
    assert_int_equal(pg_sh("resume", dir, NULL, 0), 0);
    until = util_now_us() + RECOVERY_DEADLINE_S * 1000000LL;
    for (;;) {
        int done = 0;
        for (int k = 0; k < DEVICES; k++)
            done += devices[k].done;
        if (done == DEVICES || util_now_us() > until)
            break;
        usleep(50 * 1000);
    }
    atomic_store(&stop_flag, 1);
    for (int k = 0; k < DEVICES; k++)
        pthread_join(devices[k].th, NULL);
    /* Every worker serves again at once: each had an idle session the
     * restart ended, and none may fail a request on it. */
    for (int i = 0; i < 4 * 4; i++)
        assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, NULL), 200);
    free(path);

    int64_t worst = 0;
    for (int k = 0; k < DEVICES; k++) {
        device_t *dv = &devices[k];
        if (!dv->done)
            fprintf(stderr, "device %d did not finish\n", k);
        assert_true(dv->done);
        assert_int_equal(dv->unknown_commands, 0);
        assert_int_equal(dv->other_status, 0);
        for (int i = 0; i < CMDS; i++)
            assert_int_equal(dv->acked[i], 1);
        if (dv->max_latency_us > worst)
            worst = dv->max_latency_us;
    }
    fprintf(stderr, "outage: %d reports acknowledged before, %d during; slowest request %.2f s\n", acked_before,
            acked_during, (double)worst / 1e6);
    assert_true(worst < MAX_REQUEST_S * 1000000LL);
    assert_int_equal(testserver_stop(&srv), 0);

    /* Exactly one stored result per command. */
    char *err = NULL;
    store_t *s = store_open(url, &err);
    assert_non_null(s);
    free(err);
    for (int k = 0; k < DEVICES; k++) {
        count_t c = {0, 0};
        assert_int_equal(s->ops->event_list(s, devices[k].udid, 1000, count_result_events, &c), STORE_OK);
        assert_int_equal(c.events, CMDS);
        for (int i = 0; i < CMDS; i++) {
            count_t t = {0, 0};
            assert_int_equal(s->ops->command_targets(s, devices[k].uuid[i], check_target, &t), STORE_OK);
            assert_int_equal(t.n, 1);
        }
        devsim_free(devices[k].d);
    }
    store_close(s);
    pg_sh("stop", dir, NULL, 0);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outage_under_load),
    };
    return cmocka_run_group_tests_name("pg_outage", tests, setup, teardown);
}
