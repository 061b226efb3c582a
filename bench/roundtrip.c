/* Command round-trip benchmark.
 *
 * Starts a release orchard, enrolls N simulated devices (Mdm-Signature over
 * keep-alive HTTPS, one connection per device), optionally preloads extra
 * enrollments into the database, then measures in the same run:
 *   noop:  two PUTs per round trip to /bench/noop (same TLS, same HTTP stack,
 *          same signed bodies): the ceiling of the front;
 *   mdm:   Idle → command → Acknowledged → empty, the real protocol, with the
 *          command queued for every device (one multi-target enqueue, not
 *          timed) before each round.
 * Reports round trips/s, p50/p99 latency, server CPU seconds per 1,000 round
 * trips and server RSS. Usage:
 *   roundtrip [--devices N] [--rounds R] [--threads T] [--preload M] [--auth signature|mtls] [--db URL]
 * with ORCHARD_BIN pointing at the server binary. --db runs the server on
 * that database (e.g. postgres://...; a fresh one: the bench's UDIDs and
 * command UUIDs are fixed); --preload needs the default SQLite database.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <sqlite3.h>

#include "devsim.h"
#include "testserver.h"
#include "util.h"

typedef struct {
    devsim_t **devs;
    int ndevs;
    int rounds; /* noop phase: rounds per device; mdm phase: 1 */
    int noop;
    double *lat_ms; /* one slot per round trip */
    int nlat;
    int errors;
} worker_arg_t;

static testserver_t srv;
static const char *idle_body;
static size_t idle_len;

static void *worker(void *p)
{
    worker_arg_t *a = p;
    for (int r = 0; r < a->rounds; r++) {
        for (int i = 0; i < a->ndevs; i++) {
            devsim_t *d = a->devs[i];
            int64_t t0 = util_now_us();
            devsim_reply_t rep;
            if (a->noop) {
                devsim_send(d, "/bench/noop", NULL, idle_body, idle_len, &rep);
                int ok = rep.status == 200;
                devsim_reply_free(&rep);
                devsim_send(d, "/bench/noop", NULL, idle_body, idle_len, &rep);
                ok = ok && rep.status == 200;
                devsim_reply_free(&rep);
                a->errors += !ok;
            } else {
                devsim_idle(d, &rep);
                const char *uuid = devsim_command_uuid(&rep);
                char *u = uuid ? strdup(uuid) : NULL;
                devsim_reply_free(&rep);
                if (!u) {
                    a->errors++;
                    continue;
                }
                devsim_report(d, u, "Acknowledged", NULL, &rep);
                a->errors += rep.status != 200 || rep.body_len != 0;
                devsim_reply_free(&rep);
                free(u);
            }
            a->lat_ms[a->nlat++] = (double)(util_now_us() - t0) / 1000.0;
        }
    }
    return NULL;
}

static int cmp_double(const void *x, const void *y)
{
    double a = *(const double *)x, b = *(const double *)y;
    return a < b ? -1 : a > b;
}

/* utime+stime of the server, seconds. */
static double server_cpu(void)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)srv.pid);
    char *s = util_read_file(path, 8192, NULL);
    if (!s)
        return 0;
    char *p = strrchr(s, ')');
    unsigned long ut = 0, st = 0;
    /* fields after ')' : state(3) ... utime(14) stime(15) */
    if (p)
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st);
    free(s);
    return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long server_kb(const char *field)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)srv.pid);
    char *s = util_read_file(path, 65536, NULL);
    long kb = 0;
    char *p = s ? strstr(s, field) : NULL;
    if (p)
        sscanf(p + strlen(field), ":%ld", &kb);
    free(s);
    return kb;
}

typedef struct {
    double seconds, cpu, p50, p99;
    int rts, errors;
} phase_t;

typedef struct {
    double *v;
    int n, cap;
} lat_t;

static void lat_summary(lat_t *l, phase_t *ph)
{
    qsort(l->v, (size_t)l->n, sizeof(double), cmp_double);
    ph->p50 = l->n ? l->v[l->n / 2] : 0;
    ph->p99 = l->n ? l->v[(int)(l->n * 0.99)] : 0;
}

static phase_t run_phase(devsim_t **devs, int ndev, int threads, int rounds, int noop, int64_t *elapsed_us,
                         lat_t *lat)
{
    phase_t ph = {0};
    pthread_t th[64];
    worker_arg_t args[64];
    int per = ndev / threads;
    for (int t = 0; t < threads; t++) {
        args[t] = (worker_arg_t){.devs = devs + t * per,
                                 .ndevs = t == threads - 1 ? ndev - t * per : per,
                                 .rounds = rounds,
                                 .noop = noop};
        args[t].lat_ms = calloc((size_t)(args[t].ndevs * rounds + 1), sizeof(double));
    }
    int64_t t0 = util_now_us();
    for (int t = 0; t < threads; t++)
        pthread_create(&th[t], NULL, worker, &args[t]);
    for (int t = 0; t < threads; t++)
        pthread_join(th[t], NULL);
    *elapsed_us = util_now_us() - t0;
    int total = 0;
    for (int t = 0; t < threads; t++)
        total += args[t].nlat;
    if (lat && lat->n + total > lat->cap) {
        lat->cap = (lat->n + total) * 2;
        lat->v = realloc(lat->v, (size_t)lat->cap * sizeof(double));
    }
    for (int t = 0; t < threads; t++) {
        if (lat) {
            memcpy(lat->v + lat->n, args[t].lat_ms, (size_t)args[t].nlat * sizeof(double));
            lat->n += args[t].nlat;
        }
        ph.errors += args[t].errors;
        free(args[t].lat_ms);
    }
    ph.rts = total;
    return ph;
}

/* Bulk-inserts `n` extra active enrollments straight into the database
 * (benchmark only: the store API commits one durable transaction each). */
static int preload(int n)
{
    char *path = util_strdup_printf("%s/orchard.db", srv.dir);
    sqlite3 *db = NULL;
    int rc = sqlite3_open(path, &db);
    free(path);
    if (rc != SQLITE_OK)
        return -1;
    sqlite3_busy_timeout(db, 10000);
    char *sql = util_strdup_printf(
        "PRAGMA synchronous=OFF; BEGIN;"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < %d) "
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state, "
        "cert_sha256, push_token, push_magic, created_at, updated_at, last_seen_at) "
        "SELECT printf('PRELOAD-%%08d', i), printf('PRELOAD-%%08d', i), printf('PRELOAD-%%08d', i), 'device', "
        "'com.apple.mgmt.External.bench', printf('SER%%08d', i), 'iPhone16,1', 'active', "
        "lower(hex(randomblob(32))), randomblob(32), 'magic', 0, 0, 0 FROM n; COMMIT;",
        n);
    char *err = NULL;
    rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "preload: %s\n", err ? err : "?");
    sqlite3_free(err);
    free(sql);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

int main(int argc, char **argv)
{
    int ndev = 200, rounds = 10, threads = 4, preload_n = 0;
    const char *db = NULL;
    devsim_auth_t auth = DEVSIM_AUTH_SIGNATURE;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--devices") == 0)
            ndev = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--rounds") == 0)
            rounds = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--preload") == 0)
            preload_n = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--auth") == 0)
            auth = strcmp(argv[i + 1], "mtls") == 0 ? DEVSIM_AUTH_MTLS : DEVSIM_AUTH_SIGNATURE;
        else if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
    }
    if (threads < 1 || threads > 64 || ndev < threads || rounds < 1 || (db && preload_n > 0)) {
        fprintf(stderr, "usage: roundtrip [--devices N] [--rounds R] [--threads T<=64] [--preload M] "
                        "[--auth signature|mtls] [--db URL (not with --preload)]\n");
        return 2;
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *args[] = {"--enable-noop-endpoint", "--log-level", "warn", db ? "--db" : NULL, db, NULL};
    if (testserver_start(&srv, args) != 0)
        return 1;
    if (preload_n > 0 && preload(preload_n) != 0)
        return 1;

    devsim_t **devs = calloc((size_t)ndev, sizeof *devs);
    char *ids = calloc((size_t)ndev, 48);
    size_t idlen = 0;
    for (int i = 0; i < ndev; i++) {
        char udid[40];
        snprintf(udid, sizeof udid, "BENCH-%06d", i);
        EVP_PKEY *key = NULL;
        X509 *cert = NULL;
        if (testserver_device_identity(&srv, udid, &key, &cert) != 0)
            return 1;
        devs[i] = devsim_new(srv.base_url, srv.ca_path, udid, key, cert, auth);
        EVP_PKEY_free(key);
        X509_free(cert);
        if (devsim_authenticate(devs[i]) != 200 || devsim_token_update(devs[i]) != 200) {
            fprintf(stderr, "enrollment of %s failed\n", udid);
            return 1;
        }
        idlen += (size_t)sprintf(ids + idlen, "%s%s", i ? "," : "", udid);
    }
    static char idle_xml[512];
    idle_len = (size_t)snprintf(idle_xml, sizeof idle_xml,
                                "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<plist version=\"1.0\">\n<dict>\n"
                                "\t<key>Status</key>\n\t<string>Idle</string>\n\t<key>UDID</key>\n"
                                "\t<string>BENCH-000000</string>\n</dict>\n</plist>\n");
    idle_body = idle_xml;

    /* warm-up: connections and sessions established */
    int64_t us;
    run_phase(devs, ndev, threads, 1, 1, &us, NULL);

    lat_t noop_lat = {0}, mdm_lat = {0};
    double cpu0 = server_cpu();
    phase_t noop = run_phase(devs, ndev, threads, rounds, 1, &us, &noop_lat);
    lat_summary(&noop_lat, &noop);
    noop.seconds = (double)us / 1e6;
    noop.cpu = server_cpu() - cpu0;

    phase_t mdm = {0};
    double enqueue_s = 0;
    int64_t mdm_us = 0;
    double mdm_cpu = 0;
    for (int r = 0; r < rounds; r++) {
        char uuid[37];
        util_uuid4(uuid);
        char *body = util_strdup_printf(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict><key>CommandUUID</key>"
            "<string>%s</string><key>Command</key><dict><key>RequestType</key><string>ProfileList</string>"
            "</dict></dict></plist>",
            uuid);
        char *path = util_strdup_printf("/v1/enqueue/%s?nopush=1", ids);
        int64_t e0 = util_now_us();
        long st = testserver_api(&srv, "", "PUT", path, body, strlen(body), NULL);
        enqueue_s += (double)(util_now_us() - e0) / 1e6;
        free(path);
        free(body);
        if (st != 200) {
            fprintf(stderr, "enqueue failed: %ld\n", st);
            return 1;
        }
        double c0 = server_cpu();
        phase_t ph = run_phase(devs, ndev, threads, 1, 0, &us, &mdm_lat);
        mdm_cpu += server_cpu() - c0;
        mdm_us += us;
        mdm.rts += ph.rts;
        mdm.errors += ph.errors;
    }
    lat_summary(&mdm_lat, &mdm);
    mdm.seconds = (double)mdm_us / 1e6;
    mdm.cpu = mdm_cpu;
    free(noop_lat.v);
    free(mdm_lat.v);

    long rss = server_kb("VmRSS"), hwm = server_kb("VmHWM");
    double noop_rate = noop.rts / noop.seconds, mdm_rate = mdm.rts / mdm.seconds;
    printf("round-trip benchmark: %d devices (%s, keep-alive HTTPS), %d client threads, "
           "%d rounds, %d preloaded enrollments, %s\n",
           ndev, auth == DEVSIM_AUTH_MTLS ? "mTLS identity" : "Mdm-Signature", threads, rounds, preload_n,
           db && strncmp(db, "postgres", 8) == 0 ? "PostgreSQL" : "SQLite");
    printf("%-6s %10s %10s %10s %14s %8s\n", "phase", "rt/s", "p50 ms", "p99 ms", "cpu s/1000rt", "errors");
    printf("%-6s %10.0f %10.2f %10.2f %14.3f %8d\n", "noop", noop_rate, noop.p50, noop.p99,
           noop.cpu / noop.rts * 1000, noop.errors);
    printf("%-6s %10.0f %10.2f %10.2f %14.3f %8d\n", "mdm", mdm_rate, mdm.p50, mdm.p99, mdm.cpu / mdm.rts * 1000,
           mdm.errors);
    printf("mdm / noop = %.0f%%; enqueue to %d devices: %.1f ms per call; server RSS %ld KiB (peak %ld KiB)\n",
           100.0 * mdm_rate / noop_rate, ndev, enqueue_s / rounds * 1000, rss, hwm);

    for (int i = 0; i < ndev; i++)
        devsim_free(devs[i]);
    free(devs);
    free(ids);
    int rc = testserver_stop(&srv);
    curl_global_cleanup();
    return rc == 0 && mdm.errors == 0 && noop.errors == 0 ? 0 : 1;
}
