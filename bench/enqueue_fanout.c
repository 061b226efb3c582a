/* Multi-target enqueue: one command to every enrollment of a large fleet.
 *
 * Inserts N active enrollments (default 100,000) with bulk SQL (benchmark
 * only: the store API would commit one durable transaction each), then times:
 *   store: one command_enqueue with all N ids (the store operation a fan-out
 *          is made of: one command row, N target rows, one transaction);
 *   http:  the admin API path through a running release server
 *          (PUT /v1/enqueue/ID,ID,...?nopush=1), N ids in calls of --batch
 *          ids each, one command (one UUID) per call as an admin tool does.
 *          The ids travel in the request line, which the server's 32 KiB
 *          header limit bounds: with 25-character UDIDs about 1,200 ids fit
 *          in one call, not the 10,000 the API would accept; one call with
 *          10,000 ids is sent too and its status reported;
 *   fleet: one PUT /v1/enqueue?all=1 (every active device channel: the
 *          call an admin makes for the whole fleet, no id list at all).
 * nopush=1: no APNs here, so the figures leave the pushes out.
 * Usage: enqueue_fanout [--db URL] [--targets N] [--batch B]
 * Without --db a fresh SQLite database in a temporary directory; with --db a
 * fresh (empty) PostgreSQL database. The http part runs when ORCHARD_BIN
 * names the server binary.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <libpq-fe.h>
#include <sqlite3.h>

#include "store.h"
#include "testserver.h"
#include "util.h"

#define T0 1700000000
#define ID_LEN 25 /* "00008110-" + 16 hex digits, the shape of a current UDID */

/* The id of enrollment n, the same as the SQL expressions in populate(). */
static void dev_id(long n, char *out, size_t len)
{
    snprintf(out, len, "00008110-%016lX", (unsigned long)n);
}

static int populate_sqlite(const char *path, long n)
{
    sqlite3 *db = NULL;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        sqlite3_close(db);
        return -1;
    }
    char *sql = util_strdup_printf(
        "PRAGMA synchronous=OFF; BEGIN;"
        "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n+1 FROM r WHERE n < %ld)"
        " INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state, cert_sha256,"
        " push_token, push_magic, created_at, updated_at, last_seen_at, authenticated_at, token_updated_at)"
        " SELECT printf('00008110-%%016X', n), printf('00008110-%%016X', n), printf('00008110-%%016X', n), 'device',"
        " 'com.apple.mgmt.External.bench', printf('F2LX%%08d', n), 'iPhone14,5', 'active',"
        " lower(hex(randomblob(32))), randomblob(32), 'magic', %d, %d, %d, %d, %d FROM r;"
        "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);",
        n, T0, T0, T0, T0, T0);
    char *err = NULL;
    int rc = sql ? sqlite3_exec(db, sql, NULL, NULL, &err) : SQLITE_NOMEM;
    if (rc != SQLITE_OK)
        fprintf(stderr, "populate: %s\n", err ? err : "?");
    sqlite3_free(err);
    free(sql);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int populate_pg(const char *url, long n)
{
    PGconn *c = PQconnectdb(url);
    char *sql = util_strdup_printf(
        "SET synchronous_commit = off;"
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state, cert_sha256,"
        " push_token, push_magic, created_at, updated_at, last_seen_at, authenticated_at, token_updated_at)"
        " SELECT i, i, i, 'device', 'com.apple.mgmt.External.bench', 'F2LX' || n, 'iPhone14,5', 'active',"
        " md5(random()::text), decode(md5(n::text), 'hex'), 'magic', %d, %d, %d, %d, %d"
        " FROM generate_series(1, %ld) AS n, LATERAL (SELECT '00008110-' || lpad(upper(to_hex(n)), 16, '0')) AS x(i);"
        "ANALYZE enrollments;",
        T0, T0, T0, T0, T0, n);
    PGresult *r = PQstatus(c) == CONNECTION_OK && sql ? PQexec(c, sql) : NULL;
    int ok = r && PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "populate: %s", PQerrorMessage(c));
    PQclear(r);
    free(sql);
    PQfinish(c);
    return ok ? 0 : -1;
}

static char *command_body(const char *uuid)
{
    return util_strdup_printf("<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>"
                              "<key>CommandUUID</key><string>%s</string><key>Command</key><dict>"
                              "<key>RequestType</key><string>ProfileList</string></dict></dict></plist>",
                              uuid);
}

/* One command_enqueue with all n ids. Seconds, or -1. */
static double store_fanout(const char *url, long n)
{
    char *err = NULL;
    store_t *s = store_open(url, &err);
    if (!s) {
        fprintf(stderr, "%s\n", err ? err : "?");
        free(err);
        return -1;
    }
    char *ids = malloc((size_t)n * (ID_LEN + 1));
    const char **idv = malloc((size_t)n * sizeof *idv);
    int *status = calloc((size_t)n, sizeof *status);
    char uuid[37];
    util_uuid4(uuid);
    char *body = command_body(uuid);
    double secs = -1;
    if (ids && idv && status && body) {
        for (long i = 0; i < n; i++) {
            idv[i] = ids + i * (ID_LEN + 1);
            dev_id(i + 1, ids + i * (ID_LEN + 1), ID_LEN + 1);
        }
        command_t c = {.uuid = uuid, .request_type = "ProfileList", .body = (unsigned char *)body,
                       .body_len = strlen(body), .created_at = T0 + 10};
        int64_t t0 = util_now_us();
        int rc = s->ops->command_enqueue(s, &c, idv, (size_t)n, status, T0 + 10);
        secs = (double)(util_now_us() - t0) / 1e6;
        long queued = 0;
        for (long i = 0; i < n; i++)
            queued += status[i] == STORE_OK;
        if (rc != STORE_OK || queued != n) {
            fprintf(stderr, "store enqueue: rc %d, %ld of %ld queued: %s\n", rc, queued, n, s->ops->errmsg(s));
            secs = -1;
        }
    }
    free(body);
    free(status);
    free(idv);
    free(ids);
    store_close(s);
    return secs;
}

/* PUT /v1/enqueue with ids [first, first+count). Returns the HTTP status. */
static long http_enqueue(const testserver_t *srv, long first, long count)
{
    char *path = malloc(64 + (size_t)count * (ID_LEN + 1));
    if (!path)
        return -1;
    size_t len = (size_t)sprintf(path, "/v1/enqueue/");
    for (long i = 0; i < count; i++) {
        if (i)
            path[len++] = ',';
        dev_id(first + i, path + len, ID_LEN + 1);
        len += ID_LEN;
    }
    strcpy(path + len, "?nopush=1");
    char uuid[37];
    util_uuid4(uuid);
    char *body = command_body(uuid);
    long st = body ? testserver_api(srv, "", "PUT", path, body, strlen(body), NULL) : -1;
    free(body);
    free(path);
    return st;
}

int main(int argc, char **argv)
{
    long n = 100000, batch = 1000;
    const char *db = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--db") == 0)
            db = argv[i + 1];
        else if (strcmp(argv[i], "--targets") == 0)
            n = atol(argv[i + 1]);
        else if (strcmp(argv[i], "--batch") == 0)
            batch = atol(argv[i + 1]);
    }
    if (n < 1 || n > 10000000 || batch < 1 || batch > 10000 || (db && strncmp(db, "postgres", 8) != 0)) {
        fprintf(stderr, "usage: enqueue_fanout [--db postgres://...] [--targets N] [--batch B<=10000]\n");
        return 2;
    }
    int pg = db != NULL;
    char *dir = NULL, *path = NULL, *url = NULL;
    if (!pg) {
        dir = strdup("/tmp/orchard-fanout-XXXXXX");
        if (!dir || !mkdtemp(dir))
            return 1;
        path = util_strdup_printf("%s/orchard.db", dir);
        url = util_strdup_printf("sqlite:%s", path);
    } else {
        url = strdup(db);
    }
    int rc = 1;
    char *err = NULL;
    store_t *s = store_open(url, &err); /* creates the schema */
    if (!s) {
        fprintf(stderr, "%s\n", err ? err : "?");
        free(err);
        goto out;
    }
    store_close(s);
    int64_t t = util_now_us();
    if ((pg ? populate_pg(url, n) : populate_sqlite(path, n)) != 0)
        goto out;
    fprintf(stderr, "populated %ld enrollments in %.1f s\n", n, (double)(util_now_us() - t) / 1e6);

    const char *backend = pg ? "PostgreSQL" : "SQLite";
    double secs = store_fanout(url, n);
    if (secs < 0)
        goto out;
    printf("enqueue fan-out, %s, %ld active enrollments\n", backend, n);
    printf("store  command_enqueue, %ld ids in one call: %.2f s, %.0f targets/s\n", n, secs, (double)n / secs);
    fflush(stdout);

    const char *bin = getenv("ORCHARD_BIN");
    if (bin && *bin) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        testserver_t srv;
        const char *args[] = {"--log-level", "warn", "--db", url, NULL};
        if (testserver_start(&srv, args) != 0) {
            curl_global_cleanup();
            goto out;
        }
        long calls = 0, failed = 0;
        int64_t h0 = util_now_us();
        for (long first = 1; first <= n; first += batch, calls++) {
            long count = n - first + 1 < batch ? n - first + 1 : batch;
            long st = http_enqueue(&srv, first, count);
            if (st != 200) {
                if (!failed)
                    fprintf(stderr, "http enqueue of ids %ld..%ld: status %ld\n", first, first + count - 1, st);
                failed++;
            }
        }
        double hs = (double)(util_now_us() - h0) / 1e6;
        long big = n >= 10000 ? http_enqueue(&srv, 1, 10000) : 0;
        printf("http   PUT /v1/enqueue, %ld calls of %ld ids (nopush): %.2f s, %.0f targets/s, %.1f ms per call,"
               " %ld failed\n",
               calls, batch, hs, (double)n / hs, hs / (double)calls * 1000, failed);
        if (big)
            printf("http   one call with 10,000 ids (%d-byte request line): status %ld\n", 10000 * (ID_LEN + 1) + 21,
                   big);
        char uuid[37];
        util_uuid4(uuid);
        char *body = command_body(uuid);
        json_t *o = NULL;
        int64_t f0 = util_now_us();
        long fst = body ? testserver_api(&srv, "", "PUT", "/v1/enqueue?all=1&nopush=1", body, strlen(body), &o) : -1;
        double fs = (double)(util_now_us() - f0) / 1e6;
        json_int_t fq = json_integer_value(json_object_get(o, "queued"));
        printf("fleet  PUT /v1/enqueue?all=1 (nopush), one call: %.2f s, %.0f targets/s, %lld queued, status %ld\n",
               fs, (double)fq / fs, (long long)fq, fst);
        json_decref(o);
        free(body);
        if (fst != 200 || fq != n)
            failed++;
        rc = testserver_stop(&srv) == 0 && failed == 0 ? 0 : 1;
        curl_global_cleanup();
    } else {
        rc = 0;
    }
out:
    if (dir) {
        char *rm = util_strdup_printf("rm -rf '%s'", dir);
        if (rm && system(rm) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
        free(rm);
    }
    free(url);
    free(path);
    free(dir);
    return rc;
}
