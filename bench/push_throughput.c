/* APNs push throughput: orchard's provider (push.c: push threads, libcurl
 * multi, HTTP/2 multiplexing) pushing to the mock APNs server
 * (tests/support/mockapns.c, TLS + client certificate) in this process, for
 * N devices (default 100,000), twice, with RSS before and after each round
 * to show memory stays flat. Outcomes are recorded in a real SQLite store
 * holding the N enrollments (bulk-inserted: benchmark setup only).
 *
 * The mock's own ceiling is measured in the same run with h2load (Debian
 * package nghttp2-client; bench/run.sh installs it) against a second mock
 * instance that does not ask for a client certificate (h2load cannot send
 * one): same TLS, HTTP/2 and request handling, one connection, 1000 streams.
 *
 * Usage: push_throughput [N [THREADS]]   (THREADS: push threads, default:
 * orchard's own default; BENCH_DIR picks the directory, default /tmp)
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <sqlite3.h>

#include "log.h"
#include "mockapns.h"
#include "push.h"
#include "store.h"
#include "testpki.h"
#include "util.h"

#define TOPIC "com.apple.mgmt.External.bench"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static long rss_kb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0)
            kb = atol(line + 6);
    if (f)
        fclose(f);
    return kb;
}

static void dev_id(long n, char *out, size_t len)
{
    snprintf(out, len, "BENCH-%08ld", n);
}

static void id_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    char id[32];
    dev_id((long)sqlite3_value_int64(argv[0]), id, sizeof id);
    sqlite3_result_text(ctx, id, -1, SQLITE_TRANSIENT);
}

/* N active enrollments with push tokens, in one transaction. */
static int populate(const char *path, long n)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_create_function(db, "dev_id", 1, SQLITE_UTF8, NULL, id_func, NULL, NULL);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "PRAGMA synchronous=OFF; BEGIN;"
             "WITH RECURSIVE k(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM k WHERE i + 1 < %ld)"
             " INSERT INTO enrollments (id, device_id, udid, channel, topic, state, push_token, push_magic,"
             "  created_at, updated_at)"
             " SELECT dev_id(i), dev_id(i), dev_id(i), 'device', '%s', 'active', randomblob(32), 'MAGIC', 1, 1"
             " FROM k; COMMIT;",
             n, TOPIC);
    int rc = sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    if (rc)
        fprintf(stderr, "populate: %s\n", sqlite3_errmsg(db));
    sqlite3_close(db);
    return rc;
}

static int round_trip(pusher_t *p, mockapns_t *m, long n, int round)
{
    pusher_stats_t before, st;
    pusher_stats(p, &before);
    size_t mock_before = mockapns_count(m);
    long rss0 = rss_kb();
    enrollment_t e;
    memset(&e, 0, sizeof e);
    unsigned char token[32];
    char id[32], magic[48];
    e.topic = TOPIC;
    e.push_token = token;
    e.push_token_len = sizeof token;
    e.push_magic = magic;
    e.id = id;
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        dev_id(i, id, sizeof id);
        for (int k = 0; k < 32; k++)
            token[k] = (unsigned char)((i >> (k % 4 * 8)) + k);
        snprintf(magic, sizeof magic, "MAGIC-%ld", i);
        char err[256];
        if (pusher_push(p, &e, err, sizeof err) != 0) {
            fprintf(stderr, "push %ld: %s\n", i, err);
            return -1;
        }
    }
    double submitted = now_s();
    for (;;) {
        pusher_stats(p, &st);
        if ((st.accepted - before.accepted) + (st.failed - before.failed) >= (uint64_t)n)
            break;
        if (now_s() - t0 > 300) {
            fprintf(stderr, "timed out\n");
            return -1;
        }
        usleep(2000);
    }
    double t1 = now_s();
    long rss1 = rss_kb();
    printf("round %d: %ld pushes in %.2f s = %.0f pushes/s (submit %.2f s); accepted %llu, failed %llu, "
           "retried %llu; mock saw %zu; RSS %ld -> %ld KiB\n",
           round, n, t1 - t0, n / (t1 - t0), submitted - t0, (unsigned long long)(st.accepted - before.accepted),
           (unsigned long long)(st.failed - before.failed), (unsigned long long)(st.retried - before.retried),
           mockapns_count(m) - mock_before, rss0, rss1);
    return 0;
}

static void ceiling(const char *dir, long n)
{
    if (system("command -v h2load >/dev/null 2>&1") != 0) {
        printf("mock ceiling: not measured (h2load not installed; Debian package nghttp2-client)\n");
        return;
    }
    mockapns_t *m = mockapns_start(dir, NULL);
    if (!m)
        return;
    mockapns_set_recording(m, 0);
    char body[300], cmd[1600];
    snprintf(body, sizeof body, "%s/body.json", dir);
    FILE *f = fopen(body, "w");
    if (f) {
        fputs("{\"mdm\":\"MAGIC-1\"}", f);
        fclose(f);
    }
    snprintf(cmd, sizeof cmd,
             "h2load -n %ld -c 1 -m 1000 -d %s -H 'apns-topic: %s' -H 'apns-push-type: mdm' "
             "-H 'apns-priority: 10' -H 'apns-expiration: 0' "
             "%s/3/device/00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff 2>&1 | "
             "grep -E '^finished in|^requests:'",
             n, body, TOPIC, mockapns_url(m));
    printf("mock ceiling (h2load, 1 connection, 1000 streams, no client certificate):\n");
    fflush(stdout);
    if (system(cmd) != 0)
        printf("h2load failed\n");
    mockapns_stop(m);
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    int threads = argc > 2 ? atoi(argv[2]) : 0;
    if (getenv("BENCH_DEBUG"))
        log_set_level(LOG_DEBUG);
    if (n < 1)
        n = 100000;
    const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    char dir[256], ca[300], cakey[300], cert[300], key[300], db[300], url[320];
    snprintf(dir, sizeof dir, "%s/orchard-pushbench-XXXXXX", base);
    if (!mkdtemp(dir))
        return 1;
    snprintf(ca, sizeof ca, "%s/pushca.pem", dir);
    snprintf(cakey, sizeof cakey, "%s/pushca.key", dir);
    snprintf(cert, sizeof cert, "%s/push.pem", dir);
    snprintf(key, sizeof key, "%s/push.key", dir);
    snprintf(db, sizeof db, "%s/orchard.db", dir);
    snprintf(url, sizeof url, "sqlite:%s", db);
    int rc = 1;
    char *err = NULL;
    store_t *s = store_open(url, &err); /* creates the schema */
    if (!s || testpki_make_ca(dir, "pushca") != 0 ||
        testpki_issue_push_cert(ca, cakey, TOPIC, 0, cert, key) != 0) {
        fprintf(stderr, "setup failed: %s\n", err ? err : "pki");
        goto out;
    }
    store_close(s);
    s = NULL;
    if (populate(db, n) != 0)
        goto out;
    mockapns_t *m = mockapns_start(dir, ca);
    if (!m)
        goto out;
    mockapns_set_recording(m, 0);
    const char *certs[] = {cert}, *keys[] = {key};
    pusher_opts_t o = {.db_url = url,
                       .cert_paths = certs,
                       .key_paths = keys,
                       .ntopics = 1,
                       .base_url = mockapns_url(m),
                       .ca_file = mockapns_server_ca(m),
                       .expiration_s = 86400,
                       .coalesce_ms = 0,
                       .timeout_s = 30,
                       .attempts = 3,
                       .threads = threads};
    pusher_t *p = pusher_new(&o);
    if (!p) {
        mockapns_stop(m);
        goto out;
    }
    printf("%ld devices, %s push thread(s), mock APNs over TLS + HTTP/2 (client certificate required)\n", n,
           threads > 0 ? argv[2] : "default");
    rc = round_trip(p, m, n, 1) == 0 && round_trip(p, m, n, 2) == 0 ? 0 : 1;
    printf("mock connections: %d\n", mockapns_connections(m));
    pusher_free(p);
    mockapns_stop(m);
    ceiling(dir, n);
out:
    free(err);
    store_close(s);
    char *cmd = util_strdup_printf("rm -rf '%s'", dir);
    if (cmd && system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(cmd);
    return rc;
}
