/* Next-command lookup against store size.
 *
 * Grows one SQLite database through the given sizes (default 1,000,
 * 100,000 and 1,000,000 enrollments, each with 10 pending commands) and at
 * each size times, through the real store API:
 *   idle: command_exchange with no report (the next-command lookup) for
 *         random enrollments;
 *   ack:  command_exchange with an Acknowledged report (write + group fsync).
 * Population is bulk SQL with synchronous=OFF (benchmark only; it mirrors
 * migration 1's tables). The 1,000,000 size needs ~7 GB of disk and about
 * four minutes to populate. Usage: store_scale [N ...]  (BENCH_DIR picks the
 * directory, default /tmp).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "util.h"

#define CMDS 10
#define T0 1700000000

/* UDID-like ids in no particular order, so lookups are not sequential. */
static void dev_id(long n, char *out, size_t len)
{
    unsigned long long h = (unsigned long long)n * 0x9E3779B97F4A7C15ULL;
    snprintf(out, len, "%08llX-%016llX", (h >> 32) & 0xffffffffULL, h ^ (unsigned long long)n);
}

static void id_func(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    (void)argc;
    char id[64];
    dev_id((long)sqlite3_value_int64(argv[0]), id, sizeof id);
    sqlite3_result_text(ctx, id, -1, SQLITE_TRANSIENT);
}

/* Adds enrollments [from, to) with CMDS pending commands each. */
static int grow(const char *path, long from, long to)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_create_function(db, "dev_id", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, id_func, NULL, NULL);
    char *sql = util_strdup_printf(
        "PRAGMA synchronous=OFF; PRAGMA cache_size=-1000000; BEGIN;"
        "CREATE TEMP TABLE n(n INTEGER PRIMARY KEY);"
        "WITH RECURSIVE r(i) AS (SELECT %ld UNION ALL SELECT i+1 FROM r WHERE i < %ld) INSERT INTO n SELECT i FROM r;"
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state, cert_sha256,"
        " push_token, push_magic, created_at, updated_at, last_seen_at, authenticated_at, token_updated_at)"
        " SELECT dev_id(n), dev_id(n), dev_id(n), 'device', 'com.apple.mgmt.External.bench', printf('F2LX%%08d', n),"
        " 'iPhone14,5', 'active', lower(hex(randomblob(32))), randomblob(32), 'magic', %d, %d, %d, %d, %d FROM n;"
        "WITH RECURSIVE k(k) AS (SELECT 0 UNION ALL SELECT k+1 FROM k WHERE k < %d)"
        " INSERT INTO commands (id, uuid, request_type, body, created_at)"
        " SELECT k.k * 100000000 + n + 1, printf('%%08X-%%04X-4000-8000-%%012X', n, k.k, n), 'DeviceInformation',"
        " CAST(printf('<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict><key>Command</key>"
        "<dict><key>RequestType</key><string>DeviceInformation</string></dict><key>CommandUUID</key>"
        "<string>%%08X-%%04X-4000-8000-%%012X</string></dict></plist>', n, k.k, n) AS BLOB), %d + k.k FROM k, n;"
        "WITH RECURSIVE k(k) AS (SELECT 0 UNION ALL SELECT k+1 FROM k WHERE k < %d)"
        " INSERT INTO command_targets (command_id, enrollment_id, status, pending, queued_at, updated_at)"
        " SELECT k.k * 100000000 + n + 1, dev_id(n), 'queued', 1, %d + k.k, %d + k.k FROM k, n ORDER BY k.k, n;"
        "DROP TABLE n; COMMIT; PRAGMA wal_checkpoint(TRUNCATE);",
        from, to - 1, T0, T0, T0, T0, T0, CMDS - 1, T0, CMDS - 1, T0, T0);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "populate: %s\n", err ? err : "?");
    sqlite3_free(err);
    free(sql);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static unsigned long long rng = 88172645463325252ULL;
static unsigned long long xr(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static int cmp64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? -1 : x > y;
}

static int measure(const char *url, long n)
{
    char *err = NULL;
    store_t *s = store_open(url, &err);
    if (!s) {
        fprintf(stderr, "%s\n", err ? err : "?");
        free(err);
        return -1;
    }
    char id[64];
    command_t next;
    int applied;
    long idle_calls = 200000, ack_calls = 1000;
    for (long i = 0; i < 2000; i++) { /* warm-up */
        dev_id((long)(xr() % (unsigned long long)n), id, sizeof id);
        s->ops->command_exchange(s, id, NULL, T0 + 100, &applied, &next);
        command_free(&next);
    }
    int64_t t0 = util_now_us();
    for (long i = 0; i < idle_calls; i++) {
        dev_id((long)(xr() % (unsigned long long)n), id, sizeof id);
        if (s->ops->command_exchange(s, id, NULL, T0 + 100, &applied, &next) != STORE_OK) {
            fprintf(stderr, "idle lookup failed: %s\n", s->ops->errmsg(s));
            store_close(s);
            return -1;
        }
        command_free(&next);
    }
    double idle_us = (double)(util_now_us() - t0) / (double)idle_calls;

    int64_t *lat = calloc((size_t)ack_calls, sizeof *lat);
    for (long i = 0; i < ack_calls; i++) {
        dev_id((long)(xr() % (unsigned long long)n), id, sizeof id);
        if (s->ops->command_exchange(s, id, NULL, T0 + 100, &applied, &next) != STORE_OK) {
            i--; /* this device's queue is drained */
            continue;
        }
        char uuid[64];
        snprintf(uuid, sizeof uuid, "%s", next.uuid);
        command_free(&next);
        static const char raw[] = "<plist><dict><key>Status</key><string>Acknowledged</string></dict></plist>";
        command_report_t r = {.command_uuid = uuid, .status = "Acknowledged", .raw = (const unsigned char *)raw,
                              .raw_len = sizeof raw - 1};
        int64_t a = util_now_us();
        int rc = s->ops->command_exchange(s, id, &r, T0 + 200, &applied, &next);
        lat[i] = util_now_us() - a;
        command_free(&next);
        if (rc == STORE_ERR || !applied) {
            fprintf(stderr, "acknowledge failed: %s\n", s->ops->errmsg(s));
            free(lat);
            store_close(s);
            return -1;
        }
    }
    qsort(lat, (size_t)ack_calls, sizeof *lat, cmp64);
    printf("%10ld %10ld %12.2f %12lld %12lld\n", n, n * CMDS, idle_us, (long long)lat[ack_calls / 2],
           (long long)lat[ack_calls * 99 / 100]);
    fflush(stdout);
    free(lat);
    store_close(s);
    return 0;
}

int main(int argc, char **argv)
{
    long sizes[16] = {1000, 100000, 1000000};
    int nsizes = 3;
    if (argc > 1) {
        nsizes = 0;
        for (int i = 1; i < argc && nsizes < 16; i++)
            sizes[nsizes++] = atol(argv[i]);
    }
    const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    char *dir = util_strdup_printf("%s/orchard-store-scale-XXXXXX", base);
    if (!dir || !mkdtemp(dir))
        return 1;
    char *path = util_strdup_printf("%s/orchard.db", dir);
    char *url = util_strdup_printf("sqlite:%s", path);
    char *err = NULL;
    store_t *s = store_open(url, &err); /* creates the schema */
    if (!s) {
        fprintf(stderr, "%s\n", err ? err : "?");
        return 1;
    }
    store_close(s);
    printf("next-command lookup vs store size (SQLite, %d pending commands per enrollment)\n", CMDS);
    printf("%10s %10s %12s %12s %12s\n", "devices", "queued", "idle us/op", "ack p50 us", "ack p99 us");
    long have = 0;
    int rc = 0;
    for (int i = 0; i < nsizes && rc == 0; i++) {
        int64_t t = util_now_us();
        if (sizes[i] > have && grow(path, have, sizes[i]) != 0) {
            rc = 1;
            break;
        }
        fprintf(stderr, "populated to %ld in %.0f s\n", sizes[i], (double)(util_now_us() - t) / 1e6);
        have = sizes[i] > have ? sizes[i] : have;
        rc = measure(url, have) == 0 ? 0 : 1;
    }
    char *rm = util_strdup_printf("rm -rf '%s'", dir);
    if (rm && system(rm) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    free(rm);
    free(url);
    free(path);
    free(dir);
    return rc;
}
