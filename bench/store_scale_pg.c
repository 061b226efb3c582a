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
 * Population is bulk SQL (benchmark only; see grow: 1,000,000 enrollments
 * with 10,000,000 queued commands in a few minutes). Usage:
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

static int exec_ok(PGconn *c, const char *sql)
{
    PGresult *r = PQexec(c, sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK || st == PGRES_EMPTY_QUERY;
    if (!ok)
        fprintf(stderr, "populate: %s", PQerrorMessage(c));
    PQclear(r);
    return ok;
}

/* The secondary indexes of the three tables and the unique and foreign-key
 * constraints of commands and command_targets, as statements that drop them
 * (drops[0]: constraints, foreign keys first; drops[1]: indexes) and that
 * recreate them as the schema has them (creates[0], creates[1]). Loading
 * 10,000,000 rows into tables without them and building each once, sorted,
 * is several times faster than maintaining random-order B-trees row by row.
 * The primary keys stay: their inserts are (nearly) sequential. */
static int schema_extras(PGconn *c, char *drops[2], char *creates[2])
{
    static const char *q[2] = {
        "SELECT string_agg(format('ALTER TABLE %s DROP CONSTRAINT %I', conrelid::regclass, conname), ';'"
        "                  ORDER BY contype = 'f' DESC),"
        " string_agg(format('ALTER TABLE %s ADD CONSTRAINT %I %s', conrelid::regclass, conname,"
        "                   pg_get_constraintdef(oid)), ';' ORDER BY contype = 'f')"
        " FROM pg_constraint WHERE contype IN ('f', 'u')"
        " AND conrelid IN ('commands'::regclass, 'command_targets'::regclass)",
        "SELECT string_agg(format('DROP INDEX %I', indexname), ';'), string_agg(indexdef, ';')"
        " FROM pg_indexes WHERE schemaname = current_schema()"
        " AND tablename IN ('enrollments', 'commands', 'command_targets')"
        " AND indexname NOT IN (SELECT conname FROM pg_constraint)",
    };
    for (int i = 0; i < 2; i++) {
        PGresult *r = PQexec(c, q[i]);
        if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
            fprintf(stderr, "populate: %s", PQerrorMessage(c));
            PQclear(r);
            return -1;
        }
        drops[i] = strdup(PQgetisnull(r, 0, 0) ? "" : PQgetvalue(r, 0, 0));
        creates[i] = strdup(PQgetisnull(r, 0, 1) ? "" : PQgetvalue(r, 0, 1));
        PQclear(r);
        if (!drops[i] || !creates[i])
            return -1;
    }
    return 0;
}

/* Adds enrollments [from, to) with CMDS pending commands each, in one
 * transaction: secondary indexes and constraints dropped and rebuilt
 * (schema_extras), command ids chosen (k * 10^8 + n + 1) so the targets
 * come from generate_series without reading commands back, one INSERT per
 * command rank so each enrollment's queue order (seq) is its enqueue order,
 * synchronous_commit off; then VACUUM ANALYZE, as autovacuum would after a
 * bulk insert, so the measurement does not pay for first-touch hint bits. */
static int grow(const char *url, long from, long to)
{
    PGconn *c = PQconnectdb(url);
    if (PQstatus(c) != CONNECTION_OK) {
        fprintf(stderr, "populate: %s", PQerrorMessage(c));
        PQfinish(c);
        return -1;
    }
    char *drops[2] = {NULL, NULL}, *creates[2] = {NULL, NULL};
    int ok = exec_ok(c, "SET synchronous_commit = off; SET maintenance_work_mem = '1GB'; SET work_mem = '256MB';"
                        "BEGIN") &&
             schema_extras(c, drops, creates) == 0 && exec_ok(c, drops[0]) && exec_ok(c, drops[1]);
    char *sql = ok ? util_strdup_printf(
                         "INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state,"
                         " cert_sha256, push_token, push_magic, created_at, updated_at, last_seen_at, authenticated_at,"
                         " token_updated_at)"
                         " SELECT upper(md5(n::text)), upper(md5(n::text)), upper(md5(n::text)), 'device',"
                         " 'com.apple.mgmt.External.bench', 'F2LX' || n, 'iPhone14,5', 'active', md5(random()::text),"
                         " decode(md5(n::text), 'hex'), 'magic', %d, %d, %d, %d, %d FROM generate_series(%ld, %ld) AS n;"
                         "INSERT INTO commands (id, uuid, request_type, body, created_at) OVERRIDING SYSTEM VALUE"
                         " SELECT k::bigint * 100000000 + n + 1, format('%%s-%%s', n, k), 'DeviceInformation',"
                         " convert_to(format('<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>"
                         "<key>Command</key><dict><key>RequestType</key><string>DeviceInformation</string></dict>"
                         "<key>CommandUUID</key><string>%%s-%%s</string></dict></plist>', n, k), 'UTF8'), %d + k"
                         " FROM generate_series(0, %d) AS k, generate_series(%ld, %ld) AS n;"
                         "SELECT setval(pg_get_serial_sequence('commands', 'id'), (SELECT max(id) FROM commands))",
                         T0, T0, T0, T0, T0, from, to - 1, T0, CMDS - 1, from, to - 1)
                   : NULL;
    ok = ok && sql && exec_ok(c, sql);
    free(sql);
    for (int k = 0; ok && k < CMDS; k++) {
        sql = util_strdup_printf("INSERT INTO command_targets (command_id, enrollment_id, status, queued_at, updated_at)"
                                 " SELECT %d::bigint * 100000000 + n + 1, upper(md5(n::text)), 'queued', %d, %d"
                                 " FROM generate_series(%ld, %ld) AS n",
                                 k, T0 + k, T0 + k, from, to - 1);
        ok = sql && exec_ok(c, sql);
        free(sql);
    }
    ok = ok && exec_ok(c, creates[0]) && exec_ok(c, creates[1]) && exec_ok(c, "COMMIT") &&
         exec_ok(c, "VACUUM ANALYZE enrollments") && exec_ok(c, "VACUUM ANALYZE commands") &&
         exec_ok(c, "VACUUM ANALYZE command_targets");
    for (int i = 0; i < 2; i++) {
        free(drops[i]);
        free(creates[i]);
    }
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
