/* PostgreSQL backend, what the shared conformance suites cannot show:
 * refusals at open (wrong password, unreachable or silent server, unknown
 * database, malformed URL, a database from a newer orchard), schema
 * migration by several processes at once, recovery after the connection is
 * lost, and correctness with several instances (handles in separate
 * processes) working on the same rows.
 *
 * Needs ORCHARD_TEST_DB=postgres://... (tests/run.sh starts a throwaway
 * server and sets it); each test skips itself otherwise. The role must be
 * allowed to create databases: scratch databases are made and dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_conformance.h"
#include "store_pg_internal.h"
#include "util.h"

#define OPS(fx) ((fx)->s->ops)

static const char *test_url(void)
{
    const char *u = getenv("ORCHARD_TEST_DB");
    return u && strncmp(u, "postgres", 8) == 0 ? u : NULL;
}

#define NEED_PG()                                                                                  \
    do {                                                                                           \
        if (!test_url())                                                                           \
            skip();                                                                                \
    } while (0)

/* The test URL with its database name replaced (the URLs tests/pg.sh
 * prints have no query part). Heap. */
static char *url_with_db(const char *dbname)
{
    const char *u = test_url();
    const char *slash = strrchr(u, '/');
    return util_strdup_printf("%.*s/%s", (int)(slash - u), u, dbname);
}

/* The test URL with its password replaced. Heap. */
static char *url_with_password(const char *password)
{
    const char *u = test_url();
    const char *scheme_end = strstr(u, "://") + 3;
    const char *colon = strchr(scheme_end, ':');
    const char *at = strchr(scheme_end, '@');
    assert_non_null(colon);
    assert_non_null(at);
    return util_strdup_printf("%.*s%s%s", (int)(colon + 1 - u), u, password, at);
}

static PGconn *admin_connect(const char *url)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    return c;
}

static void admin_exec(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    assert_true(st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK);
    PQclear(r);
}

static long admin_long(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
    long v = atol(PQgetvalue(r, 0, 0));
    PQclear(r);
    return v;
}

/* A scratch database, dropped again by scratch_drop. */
typedef struct {
    char name[48];
    char *url;
    PGconn *admin; /* connected to the test database, not the scratch one */
} scratch_t;

static void scratch_create(scratch_t *sc)
{
    char hex[17];
    assert_int_equal(util_random_hex(hex, 8), 0);
    snprintf(sc->name, sizeof sc->name, "orchard_scratch_%s", hex);
    sc->admin = admin_connect(test_url());
    char sql[128];
    snprintf(sql, sizeof sql, "CREATE DATABASE %s", sc->name);
    admin_exec(sc->admin, sql);
    sc->url = url_with_db(sc->name);
}

static void scratch_drop(scratch_t *sc)
{
    char sql[128];
    snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", sc->name);
    admin_exec(sc->admin, sql);
    PQfinish(sc->admin);
    free(sc->url);
}

/* Opening must fail, quickly, with a message containing `want` and never
 * the password. */
static void assert_open_refused(const char *url, const char *want, const char *secret)
{
    int64_t t0 = util_now_us();
    char *err = NULL;
    store_t *s = store_open(url, &err);
    int64_t took_ms = (util_now_us() - t0) / 1000;
    assert_null(s);
    assert_non_null(err);
    if (!strstr(err, want))
        fprintf(stderr, "expected \"%s\" in: %s\n", want, err);
    assert_non_null(strstr(err, want));
    if (secret)
        assert_null(strstr(err, secret));
    assert_null(strchr(err, '\n'));
    assert_true(took_ms < 6000); /* connect_timeout is 3 s */
    free(err);
}

/* ---- refusals at open ---------------------------------------------------- */

static void test_wrong_password_is_refused(void **state)
{
    (void)state;
    NEED_PG();
    char *url = url_with_password("not-the-Password-42");
    assert_open_refused(url, "password authentication failed", "not-the-Password-42");
    free(url);
}

static void test_unknown_database_is_refused(void **state)
{
    (void)state;
    NEED_PG();
    char *url = url_with_db("orchard_no_such_database");
    assert_open_refused(url, "does not exist", "orchard-test-password");
    free(url);
}

static void test_refused_port_fails_at_once(void **state)
{
    (void)state;
    NEED_PG();
    /* Nothing listens on port 1 of the loopback address. */
    assert_open_refused("postgres://orchard:secret-pw-1@127.0.0.1:1/orchard", "cannot connect to PostgreSQL",
                        "secret-pw-1");
}

/* A server that accepts TCP connections but never answers (a hung host):
 * the connect timeout, not the caller, decides how long it takes. */
static void test_silent_server_times_out(void **state)
{
    (void)state;
    NEED_PG();
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 8), 0);
    socklen_t len = sizeof a;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
    char url[128];
    snprintf(url, sizeof url, "postgres://orchard:secret-pw-2@127.0.0.1:%d/orchard", ntohs(a.sin_port));
    assert_open_refused(url, "timeout", "secret-pw-2");
    close(fd);
}

static void test_malformed_url_is_refused_without_password(void **state)
{
    (void)state;
    NEED_PG();
    assert_open_refused("postgres://orchard:very-secret-pw@127.0.0.1:notaport/orchard", "cannot connect",
                        "very-secret-pw");
    assert_open_refused("postgresql://orchard:very-secret-pw@127.0.0.1:5432/db?nosuchoption=1", "cannot connect",
                        "very-secret-pw");
}

/* A database migrated by a newer orchard is refused and left as it is. */
static void test_newer_schema_is_refused(void **state)
{
    (void)state;
    NEED_PG();
    scratch_t sc;
    scratch_create(&sc);
    char *err = NULL;
    store_t *s = store_open(sc.url, &err);
    assert_non_null(s);
    int current = store_pg_schema_version(s);
    assert_true(current >= 5);
    store_close(s);

    PGconn *c = admin_connect(sc.url);
    admin_exec(c, "INSERT INTO schema_version (version) VALUES (999)");
    long rows_before = admin_long(c, "SELECT count(*) FROM schema_version");
    assert_open_refused(sc.url, "newer", NULL);
    err = NULL;
    assert_null(store_open(sc.url, &err));
    assert_non_null(strstr(err, "999"));
    free(err);
    assert_int_equal(admin_long(c, "SELECT count(*) FROM schema_version"), rows_before);
    assert_int_equal(admin_long(c, "SELECT max(version) FROM schema_version"), 999);
    PQfinish(c);
    scratch_drop(&sc);
}

/* ---- migrations ---------------------------------------------------------- */

enum { OPENERS = 4 };

/* Several processes open a brand-new database at once: one migrates under
 * the advisory lock, the others wait and find it done. Every migration is
 * applied exactly once. */
static void test_concurrent_first_open_migrates_once(void **state)
{
    (void)state;
    NEED_PG();
    scratch_t sc;
    scratch_create(&sc);
    pid_t pids[OPENERS];
    for (int i = 0; i < OPENERS; i++) {
        fflush(NULL);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            char *err = NULL;
            store_t *s = store_open(sc.url, &err);
            if (!s)
                fprintf(stderr, "opener %d: %s\n", i, err ? err : "?");
            int ok = s != NULL;
            store_close(s);
            free(err);
            _exit(ok ? 0 : 1);
        }
    }
    int failures = 0;
    for (int i = 0; i < OPENERS; i++) {
        int st = 0;
        failures += !(waitpid(pids[i], &st, 0) == pids[i] && WIFEXITED(st) && WEXITSTATUS(st) == 0);
    }
    assert_int_equal(failures, 0);
    PGconn *c = admin_connect(sc.url);
    long versions = admin_long(c, "SELECT count(*) FROM schema_version");
    assert_int_equal(admin_long(c, "SELECT count(DISTINCT version) FROM schema_version"), versions);
    assert_int_equal(admin_long(c, "SELECT max(version) FROM schema_version"), versions);
    PQfinish(c);
    scratch_drop(&sc);
}

/* ---- connection loss ----------------------------------------------------- */

static void terminate_backend(store_t *s)
{
    int pid = PQbackendPID(pg_conn(pgs(s)));
    assert_true(pid > 0);
    PGconn *c = admin_connect(test_url());
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", pid);
    admin_exec(c, sql);
    PQfinish(c);
    usleep(100 * 1000); /* let the server close it */
}

/* The server ends an idle session (restart, failover, an administrator):
 * the next operation notices before sending anything, reconnects and
 * works, with its prepared statements prepared again. No request fails for
 * a session that was already gone (test_pg_outage shows it end to end). */
static void test_idle_connection_loss_recovers_at_once(void **state)
{
    conf_t *fx = *state;
    NEED_PG();
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);
    const char *c1 = conf_name(fx, "c1");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);

    int pid_before = PQbackendPID(pg_conn(pgs(fx->s)));
    terminate_backend(fx->s);
    command_report_t ack = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    int applied = -1;
    char next[160];
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 3, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    assert_int_not_equal(PQbackendPID(pg_conn(pgs(fx->s))), pid_before); /* a new session */

    /* A write transaction after another loss. */
    terminate_backend(fx->s);
    assert_int_equal(conf_enqueue(fx, conf_name(fx, "c2"), "DeviceInformation", &dev, 1, CONF_T0 + 5), STORE_OK);
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 6, &applied, next, sizeof next), STORE_OK);
    assert_string_equal(next, conf_name(fx, "c2"));
}

/* The connection dies while an operation is inside its transaction (here:
 * authenticate, waiting for a row lock another session holds). The
 * operation fails, none of it is kept, and the handle recovers. */
static void test_connection_loss_mid_transaction(void **state)
{
    conf_t *fx = *state;
    NEED_PG();
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);
    const char *c1 = conf_name(fx, "c1");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 2), STORE_OK);

    PGconn *holder = admin_connect(test_url());
    admin_exec(holder, "BEGIN");
    char *lock = util_strdup_printf("SELECT 1 FROM enrollments WHERE id = '%s' FOR UPDATE", dev);
    admin_exec(holder, lock);
    free(lock);

    int pid = PQbackendPID(pg_conn(pgs(fx->s)));
    fflush(NULL);
    pid_t killer = fork();
    assert_true(killer >= 0);
    if (killer == 0) {
        usleep(500 * 1000); /* the authenticate below is waiting for the lock by now */
        PGconn *c = PQconnectdb(test_url());
        char sql[96];
        snprintf(sql, sizeof sql, "SELECT pg_terminate_backend(%d)", pid);
        PGresult *r = PQexec(c, sql);
        int ok = PQresultStatus(r) == PGRES_TUPLES_OK;
        PQclear(r);
        PQfinish(c);
        _exit(ok ? 0 : 1);
    }
    /* Re-enrollment would cancel c1 and make the device "authenticated". */
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0 + 3), STORE_ERR);
    assert_non_null(strstr(OPS(fx)->errmsg(fx->s), "connection lost"));
    int st = 0;
    assert_int_equal(waitpid(killer, &st, 0), killer);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    admin_exec(holder, "ROLLBACK");
    PQfinish(holder);

    /* Nothing of it was kept. */
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, dev, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_INACTIVE);
    enrollment_free(&e);
    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_QUEUED);

    /* And the handle works: the re-enrollment now happens. */
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0 + 4), STORE_OK);
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_CANCELLED);
}

/* A row lock held elsewhere for longer than lock_timeout: the operation
 * fails with a clear reason instead of hanging, and changes nothing. */
static void test_lock_wait_is_bounded(void **state)
{
    conf_t *fx = *state;
    NEED_PG();
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);
    PGconn *holder = admin_connect(test_url());
    admin_exec(holder, "BEGIN");
    char *lock = util_strdup_printf("SELECT 1 FROM enrollments WHERE id = '%s' FOR UPDATE", dev);
    admin_exec(holder, lock);
    free(lock);
    int64_t t0 = util_now_us();
    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 1), STORE_ERR);
    int64_t took_ms = (util_now_us() - t0) / 1000;
    assert_true(took_ms >= 4000 && took_ms < 9000); /* lock_timeout = 5 s */
    assert_non_null(strstr(OPS(fx)->errmsg(fx->s), "lock timeout"));
    admin_exec(holder, "ROLLBACK");
    PQfinish(holder);
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, dev, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    enrollment_free(&e);
    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 2), STORE_OK);
}

/* ---- several instances --------------------------------------------------- */

enum { RACERS = 3, RACE_CMDS = 40, RACE_LEASES = 30 };

static int count_events(store_t *s, const char *id, const char *kind)
{
    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    if (s->ops->event_list(s, id, 1000, conf_collect_event, &ev) != STORE_OK)
        return -1;
    int n = 0;
    for (int i = 0; i < ev.n && i < CONF_MAX_ROWS; i++)
        n += strcmp(ev.row[i].kind, kind) == 0;
    return n;
}

/* Every child reports every command of one device as Acknowledged, in a
 * different order: each result is applied (and logged) exactly once. A
 * child's exit status is how many of its reports applied. */
static void test_result_applied_once_across_instances(void **state)
{
    conf_t *fx = *state;
    NEED_PG();
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);
    char uuids[RACE_CMDS][96];
    for (int i = 0; i < RACE_CMDS; i++) {
        snprintf(uuids[i], sizeof uuids[i], "%s-race-%d", fx->prefix, i);
        assert_int_equal(conf_enqueue(fx, uuids[i], "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    }
    pid_t pids[RACERS];
    for (int k = 0; k < RACERS; k++) {
        fflush(NULL);
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            store_t *s = store_open(fx->url, NULL);
            int won = 0;
            for (int j = 0; s && j < RACE_CMDS; j++) {
                int i = k % 2 ? RACE_CMDS - 1 - j : j;
                command_report_t ack = conf_report(uuids[i], CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
                command_t next;
                int applied = 0;
                int rc = s->ops->command_exchange(s, dev, &ack, CONF_T0 + 2, &applied, &next);
                if (rc == STORE_OK)
                    command_free(&next);
                if (rc == STORE_ERR)
                    _exit(255);
                won += applied;
            }
            store_close(s);
            _exit(s ? won : 255);
        }
    }
    int total = 0;
    for (int k = 0; k < RACERS; k++) {
        int st = 0;
        assert_int_equal(waitpid(pids[k], &st, 0), pids[k]);
        assert_true(WIFEXITED(st));
        assert_int_not_equal(WEXITSTATUS(st), 255);
        total += WEXITSTATUS(st);
    }
    assert_int_equal(total, RACE_CMDS);
    assert_int_equal(count_events(fx->s, dev, "command_result"), RACE_CMDS);
    int applied = -1;
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 3, &applied, NULL, 0), STORE_NOTFOUND);
}

/* Children race for the same leases at the same moment: each lease goes to
 * exactly one holder. */
static void test_lease_taken_by_one_instance(void **state)
{
    conf_t *fx = *state;
    NEED_PG();
    pid_t pids[RACERS];
    for (int k = 0; k < RACERS; k++) {
        fflush(NULL);
        pids[k] = fork();
        assert_true(pids[k] >= 0);
        if (pids[k] == 0) {
            store_t *s = store_open(fx->url, NULL);
            char holder[64];
            snprintf(holder, sizeof holder, "instance-%d", k);
            int won = 0;
            for (int i = 0; s && i < RACE_LEASES; i++) {
                char name[96];
                snprintf(name, sizeof name, "%s-lease-%d", fx->prefix, i);
                int rc = s->ops->lease_acquire(s, name, holder, 60, CONF_T0);
                if (rc == STORE_ERR)
                    _exit(255);
                won += rc == STORE_OK;
            }
            store_close(s);
            _exit(s ? won : 255);
        }
    }
    int total = 0;
    for (int k = 0; k < RACERS; k++) {
        int st = 0;
        assert_int_equal(waitpid(pids[k], &st, 0), pids[k]);
        assert_true(WIFEXITED(st));
        assert_int_not_equal(WEXITSTATUS(st), 255);
        total += WEXITSTATUS(st);
    }
    assert_int_equal(total, RACE_LEASES);
}

/* Two handles claim silent devices for re-push at the same time: no device
 * is claimed by both. */
typedef struct {
    int n;
    char id[64][CONF_NAME_LEN];
} claimed_t;

static int collect_claim(void *ctx, const enrollment_t *e)
{
    claimed_t *c = ctx;
    if (c->n < 64)
        snprintf(c->id[c->n++], CONF_NAME_LEN, "%s", e->id);
    return 0;
}

static void test_repush_claim_takes_each_device_once(void **state)
{
    conf_t *fx = *state;
    NEED_PG();
    enum { DEVICES = 12 };
    for (int i = 0; i < DEVICES; i++) {
        char suffix[32];
        snprintf(suffix, sizeof suffix, "silent-%d", i);
        assert_non_null(conf_active_device(fx, suffix, i + 1, CONF_T0 - 1000000000));
    }
    store_t *b = conf_open(fx);
    assert_non_null(b);
    claimed_t ca, cb;
    memset(&ca, 0, sizeof ca);
    memset(&cb, 0, sizeof cb);
    int na = 0, nb = 0;
    /* Small batches, alternating handles, until nothing is left. */
    for (int round = 0; round < 1000; round++) {
        int ra = 0, rb = 0;
        int64_t before = CONF_T0 - 900000000;
        assert_int_equal(OPS(fx)->repush_claim(fx->s, before, CONF_T0, 2, collect_claim, &ca, &ra), STORE_OK);
        assert_int_equal(b->ops->repush_claim(b, before, CONF_T0, 3, collect_claim, &cb, &rb), STORE_OK);
        na += ra;
        nb += rb;
        if (ra == 0 && rb == 0)
            break;
    }
    store_close(b);
    int mine = 0;
    for (int i = 0; i < ca.n; i++) {
        mine += strncmp(ca.id[i], fx->prefix, strlen(fx->prefix)) == 0;
        for (int j = 0; j < cb.n; j++)
            assert_string_not_equal(ca.id[i], cb.id[j]);
    }
    for (int j = 0; j < cb.n; j++)
        mine += strncmp(cb.id[j], fx->prefix, strlen(fx->prefix)) == 0;
    assert_int_equal(mine, DEVICES);
}

/* Schema 6 on PostgreSQL: the await-configuration flag and settings (the
 * ADE operations have their own conformance suite). Binary values with NUL
 * bytes and an empty value survive the round trip. */
static void test_awaiting_and_settings(void **state)
{
    conf_t *fx = *state;
    NEED_PG();
    store_t *s = fx->s;
    const char *dev = conf_active_device(fx, "await", 1, CONF_T0);
    assert_non_null(dev);
    int awaiting = -1;
    assert_int_equal(OPS(fx)->enrollment_awaiting(s, dev, &awaiting), STORE_OK);
    assert_int_equal(awaiting, 0);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(s, dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_awaiting(s, dev, &awaiting), STORE_OK);
    assert_int_equal(awaiting, 1);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(s, dev, 0, CONF_T0 + 2), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_awaiting(s, dev, &awaiting), STORE_OK);
    assert_int_equal(awaiting, 0);
    const char *ghost = conf_name(fx, "ghost");
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(s, ghost, 1, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->enrollment_awaiting(s, ghost, &awaiting), STORE_NOTFOUND);

    const char *name = conf_name(fx, "setting");
    static const unsigned char v1[] = {'a', 0, 'b', 0xff};
    unsigned char *got = NULL;
    size_t len = 0;
    assert_int_equal(OPS(fx)->setting_get(s, name, &got, &len), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->setting_put(s, name, v1, sizeof v1, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->setting_get(s, name, &got, &len), STORE_OK);
    assert_int_equal(len, sizeof v1);
    assert_memory_equal(got, v1, sizeof v1);
    free(got);
    assert_int_equal(OPS(fx)->setting_put(s, name, (const unsigned char *)"", 0, CONF_T0 + 1), STORE_OK);
    assert_int_equal(OPS(fx)->setting_get(s, name, &got, &len), STORE_OK);
    assert_non_null(got);
    assert_int_equal(len, 0);
    free(got);
    assert_int_equal(OPS(fx)->setting_delete(s, name), STORE_OK);
    assert_int_equal(OPS(fx)->setting_delete(s, name), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->setting_get(s, name, &got, &len), STORE_NOTFOUND);
}

#define PG_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wrong_password_is_refused),
        cmocka_unit_test(test_unknown_database_is_refused),
        cmocka_unit_test(test_refused_port_fails_at_once),
        cmocka_unit_test(test_silent_server_times_out),
        cmocka_unit_test(test_malformed_url_is_refused_without_password),
        cmocka_unit_test(test_newer_schema_is_refused),
        cmocka_unit_test(test_concurrent_first_open_migrates_once),
        PG_TEST(test_idle_connection_loss_recovers_at_once),
        PG_TEST(test_connection_loss_mid_transaction),
        PG_TEST(test_lock_wait_is_bounded),
        PG_TEST(test_result_applied_once_across_instances),
        PG_TEST(test_lease_taken_by_one_instance),
        PG_TEST(test_repush_claim_takes_each_device_once),
        PG_TEST(test_awaiting_and_settings),
    };
    return cmocka_run_group_tests_name("store_pg", tests, NULL, NULL);
}
