/* Next-command lookup against store size, on PostgreSQL.
 *
 * The PostgreSQL counterpart of store_scale.c: grows one PostgreSQL
 * database through the given sizes (default 1,000 and 100,000 enrollments,
 * each with 10 pending commands) and at each size times, through the real
 * store API, over a loopback connection:
 *   idle: command_exchange with no report (the next-command lookup, one
 *         round trip) for random enrollments;
 *   ack:  command_exchange with an Acknowledged report (one durable
 *         statement: the report, its event and the next command).
 * Population is bulk SQL (benchmark only). Usage:
 *   ORCHARD_BENCH_DB=postgres://... store_scale_pg [N ...]
 * The database should be empty: the tables are filled directly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libpq-fe.h>
#include <openssl/evp.h>

#include "store.h"
#include "util.h"

#define CMDS 10
#define T0 1700000000

/* The id of device n: upper-case MD5 hex of its number, the same in SQL
 * (upper(md5(n::text))), so lookups are not sequential. */
static void dev_id(long n, char *out)
{
    char num[24];
    unsigned char md[16];
    unsigned int len = 0;
    snprintf(num, sizeof num, "%ld", n);
    EVP_Digest(num, strlen(num), md, &len, EVP_md5(), NULL);
    for (int i = 0; i < 16; i++)
        sprintf(out + 2 * i, "%02X", md[i]);
}

/* Adds enrollments [from, to) with CMDS pending commands each. */
static int grow(const char *url, long from, long to)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "populate: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    char *sql = util_strdup_printf(
        "SET synchronous_commit = off; BEGIN;"
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state, cert_sha256,"
        " push_token, push_magic, created_at, updated_at, last_seen_at, authenticated_at, token_updated_at)"
        " SELECT upper(md5(n::text)), upper(md5(n::text)), upper(md5(n::text)), 'device',"
        " 'com.apple.mgmt.External.bench', 'F2LX' || n, 'iPhone14,5', 'active', md5(random()::text),"
        " decode(md5(n::text), 'hex'), 'magic', %d, %d, %d, %d, %d FROM generate_series(%ld, %ld) AS n;"
        "INSERT INTO commands (uuid, request_type, body, created_at)"
        " SELECT format('%%s-%%s', n, k), 'DeviceInformation',"
        " convert_to(format('<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>"
        "<key>Command</key><dict><key>RequestType</key><string>DeviceInformation</string></dict>"
        "<key>CommandUUID</key><string>%%s-%%s</string></dict></plist>', n, k), 'UTF8'), %d + k"
        " FROM generate_series(0, %d) AS k, generate_series(%ld, %ld) AS n;"
        "INSERT INTO command_targets (command_id, enrollment_id, status, queued_at, updated_at)"
        " SELECT c.id, upper(md5(split_part(c.uuid, '-', 1))), 'queued', c.created_at, c.created_at"
        " FROM commands c WHERE c.id > (SELECT COALESCE(max(command_id), 0) FROM command_targets)"
        " ORDER BY c.created_at, c.id;"
        "COMMIT; ANALYZE enrollments; ANALYZE commands; ANALYZE command_targets;",
        T0, T0, T0, T0, T0, from, to - 1, T0, CMDS - 1, from, to - 1);
    PGresult *r = PQexec(c, sql);
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    if (!ok)
        fprintf(stderr, "populate: %s", PQerrorMessage(c));
    PQclear(r);
    free(sql);
    PQfinish(c);
    return ok ? 0 : -1;
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
    char id[40];
    command_t next;
    int applied;
    long idle_calls = 50000, ack_calls = 2000;
    for (long i = 0; i < 2000; i++) { /* warm-up */
        dev_id((long)(xr() % (unsigned long long)n), id);
        s->ops->command_exchange(s, id, NULL, T0 + 100, &applied, &next);
        command_free(&next);
    }
    int64_t t0 = util_now_us();
    for (long i = 0; i < idle_calls; i++) {
        dev_id((long)(xr() % (unsigned long long)n), id);
        if (s->ops->command_exchange(s, id, NULL, T0 + 100, &applied, &next) != STORE_OK) {
            fprintf(stderr, "idle lookup failed: %s\n", s->ops->errmsg(s));
            store_close(s);
            return -1;
        }
        command_free(&next);
    }
    double idle_us = (double)(util_now_us() - t0) / (double)idle_calls;

    int64_t *lat = calloc((size_t)ack_calls, sizeof *lat);
    for (long i = 0; lat && i < ack_calls; i++) {
        dev_id((long)(xr() % (unsigned long long)n), id);
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
    if (!lat) {
        store_close(s);
        return -1;
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
    long sizes[16] = {1000, 100000};
    int nsizes = 2;
    if (argc > 1) {
        nsizes = 0;
        for (int i = 1; i < argc && nsizes < 16; i++)
            sizes[nsizes++] = atol(argv[i]);
    }
    const char *url = getenv("ORCHARD_BENCH_DB");
    if (!url || strncmp(url, "postgres", 8) != 0) {
        fprintf(stderr, "store_scale_pg: set ORCHARD_BENCH_DB to an empty PostgreSQL database's URL\n");
        return 2;
    }
    char *err = NULL;
    store_t *s = store_open(url, &err); /* creates the schema */
    if (!s) {
        fprintf(stderr, "%s\n", err ? err : "?");
        free(err);
        return 1;
    }
    store_close(s);
    printf("next-command lookup vs store size (PostgreSQL over loopback, %d pending commands per enrollment)\n",
           CMDS);
    printf("%10s %10s %12s %12s %12s\n", "devices", "queued", "idle us/op", "ack p50 us", "ack p99 us");
    long have = 0;
    for (int i = 0; i < nsizes; i++) {
        int64_t t = util_now_us();
        if (sizes[i] > have && grow(url, have, sizes[i]) != 0)
            return 1;
        fprintf(stderr, "populated to %ld in %.0f s\n", sizes[i], (double)(util_now_us() - t) / 1e6);
        have = sizes[i] > have ? sizes[i] : have;
        if (measure(url, have) != 0)
            return 1;
    }
    return 0;
}
