/* DDM sync fan-out cost in the store (SQLite).
 *
 * Populates N active device enrollments (default 100,000; bulk SQL with
 * synchronous=OFF, as bench/store_scale.c does), three declarations in one
 * set assigned to "all", and times through the real store API:
 *   candidates: one full ddm_candidates pass (every active enrollment with
 *               its sets, token and pending flag);
 *   sync queue: ddm_sync_queue for all N ids in batches of 1000 (one durable
 *               transaction per batch; every id gets the command);
 *   coalesced:  the same again while every sync is still pending (tokens
 *               updated, nothing queued);
 *   candidates again, now that every enrollment has DDM state;
 * then the same candidates pass with groups (N/1000 groups of 1000 members,
 * each assigned its own set) and a direct assignment for every tenth
 * enrollment. Usage: ddm_store [N]  (BENCH_DIR picks the directory).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <sqlite3.h>

#include "store.h"
#include "util.h"

#define T0 1700000000
#define BATCH 1000

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

static int run_sql(const char *path, const char *sql)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_create_function(db, "dev_id", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, id_func, NULL, NULL);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "populate: %s\n", err ? err : "?");
    sqlite3_free(err);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int populate(const char *path, long n)
{
    char *sql = util_strdup_printf(
        "PRAGMA synchronous=OFF; BEGIN;"
        "WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM r WHERE i < %ld)"
        " INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state, cert_sha256,"
        " push_token, push_magic, created_at, updated_at, last_seen_at, authenticated_at, token_updated_at)"
        " SELECT dev_id(i), dev_id(i), dev_id(i), 'device', 'com.apple.mgmt.External.bench',"
        " printf('F2LX%%08d', i), 'iPhone14,5', 'active', lower(hex(randomblob(32))), randomblob(32), 'magic',"
        " %d, %d, %d, %d, %d FROM r;"
        "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);",
        n - 1, T0, T0, T0, T0, T0);
    int rc = sql ? run_sql(path, sql) : -1;
    free(sql);
    return rc;
}

static int add_groups(const char *path, long n)
{
    char *sql = util_strdup_printf(
        "PRAGMA synchronous=OFF; BEGIN;"
        "WITH RECURSIVE g(k) AS (SELECT 0 UNION ALL SELECT k+1 FROM g WHERE k < %ld)"
        " INSERT INTO decl_sets (name, created_at, updated_at) SELECT printf('group-set-%%04d', k), %d, %d FROM g;"
        "INSERT INTO decl_sets (name, created_at, updated_at) VALUES ('direct-set', %d, %d);"
        "INSERT INTO set_assignments (set_name, target_kind, target, assigned_at)"
        " SELECT name, 'group', substr(name, 7), %d FROM decl_sets WHERE name LIKE 'group-set-%%';"
        "WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM r WHERE i < %ld)"
        " INSERT INTO group_members (group_name, enrollment_id, added_at)"
        " SELECT printf('set-%%04d', i / 1000), dev_id(i), %d FROM r;"
        "WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i+10 FROM r WHERE i + 10 < %ld)"
        " INSERT INTO set_assignments (set_name, target_kind, target, assigned_at)"
        " SELECT 'direct-set', 'device', dev_id(i), %d FROM r;"
        "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);",
        (n + 999) / 1000 - 1, T0, T0, T0, T0, T0, n - 1, T0, n, T0);
    int rc = sql ? run_sql(path, sql) : -1;
    free(sql);
    return rc;
}

typedef struct {
    long rows, with_sets, pending;
    size_t set_bytes;
} tally_t;

static int count_candidate(void *ctx, const ddm_candidate_t *c)
{
    tally_t *t = ctx;
    t->rows++;
    t->with_sets += c->sets[0] != '\0';
    t->pending += c->sync_pending;
    t->set_bytes += strlen(c->sets);
    return 0;
}

static int candidates(store_t *s, const char *label)
{
    tally_t t = {0};
    int64_t t0 = util_now_us();
    if (s->ops->ddm_candidates(s, count_candidate, &t) != STORE_OK) {
        fprintf(stderr, "ddm_candidates: %s\n", s->ops->errmsg(s));
        return -1;
    }
    double sec = (double)(util_now_us() - t0) / 1e6;
    printf("%-44s %8.3f s  (%ld rows, %ld with sets, %ld pending, %.1f us/row)\n", label, sec, t.rows,
           t.with_sets, t.pending, sec * 1e6 / (double)(t.rows ? t.rows : 1));
    return 0;
}

static int cmp_id(const void *a, const void *b)
{
    return strcmp(a, b);
}

/* ddm_sync_queue of all n ids in batches, in id order as ddm_sync walks the
 * candidates. */
static int sync_all(store_t *s, long n, int round, const char *label)
{
    char (*all)[64] = malloc((size_t)n * sizeof *all);
    const char **idp = malloc((size_t)BATCH * sizeof *idp);
    const char **tokp = malloc((size_t)BATCH * sizeof *tokp);
    int *queued = malloc((size_t)BATCH * sizeof *queued);
    if (!all || !idp || !tokp || !queued)
        return -1;
    for (long i = 0; i < n; i++)
        dev_id(i, all[i], sizeof all[i]);
    qsort(all, (size_t)n, sizeof *all, cmp_id);
    char token[40];
    snprintf(token, sizeof token, "bench-token-round-%d", round);
    long total = 0;
    int64_t t0 = util_now_us();
    int rc = 0;
    for (long from = 0; from < n && rc == 0; from += BATCH) {
        size_t k = 0;
        for (long i = from; i < n && k < BATCH; i++, k++) {
            idp[k] = all[i];
            tokp[k] = token;
        }
        char uuid[64], body[256];
        snprintf(uuid, sizeof uuid, "orchard-ddm-sync-bench-%d-%ld", round, from);
        snprintf(body, sizeof body, "<plist><dict><key>CommandUUID</key><string>%s</string></dict></plist>", uuid);
        command_t c = {.uuid = uuid, .request_type = "DeclarativeManagement", .body = (unsigned char *)body,
                       .body_len = strlen(body)};
        if (s->ops->ddm_sync_queue(s, &c, idp, tokp, k, T0 + 100 + round, queued) != STORE_OK) {
            fprintf(stderr, "ddm_sync_queue: %s\n", s->ops->errmsg(s));
            rc = -1;
        }
        for (size_t i = 0; i < k; i++)
            total += queued[i];
    }
    double sec = (double)(util_now_us() - t0) / 1e6;
    if (rc == 0)
        printf("%-44s %8.3f s  (%ld ids, %ld queued, %.1f us/id)\n", label, sec, n, total, sec * 1e6 / (double)n);
    free(all);
    free(idp);
    free(tokp);
    free(queued);
    return rc;
}

static int setup_declarations(store_t *s)
{
    const char *ids[] = {"bench.asset", "bench.config", "bench.activation"};
    const char *kinds[] = {DDM_KIND_ASSET, DDM_KIND_CONFIGURATION, DDM_KIND_ACTIVATION};
    for (int i = 0; i < 3; i++) {
        char type[64];
        snprintf(type, sizeof type, "com.apple.%s.bench", kinds[i]);
        declaration_t d = {.identifier = (char *)ids[i], .type = type, .kind = (char *)kinds[i],
                           .payload_json = "{}", .server_token = "t1"};
        const char *ref[] = {i ? ids[i - 1] : NULL};
        int changed;
        if (s->ops->decl_put(s, &d, ref, i ? 1 : 0, T0, &changed) != STORE_OK)
            return -1;
    }
    const char *members[] = {"bench.activation"};
    if (s->ops->set_put(s, "everyone", members, 1, T0) != STORE_OK ||
        s->ops->set_assign(s, "everyone", DDM_TARGET_ALL, "", T0) != STORE_OK)
        return -1;
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    if (n < 1)
        return 2;
    const char *base = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    char *dir = util_strdup_printf("%s/orchard-ddm-bench-XXXXXX", base);
    if (!dir || !mkdtemp(dir))
        return 1;
    char *path = util_strdup_printf("%s/orchard.db", dir);
    char *url = util_strdup_printf("sqlite:%s", path);
    char *err = NULL;
    int rc = 1;
    store_t *s = store_open(url, &err); /* creates the schema */
    if (!s) {
        fprintf(stderr, "%s\n", err ? err : "?");
        free(err);
        goto out;
    }
    store_close(s);
    int64_t t = util_now_us();
    if (populate(path, n) != 0)
        goto out;
    fprintf(stderr, "populated %ld enrollments in %.1f s\n", n, (double)(util_now_us() - t) / 1e6);
    if (!(s = store_open(url, &err))) {
        fprintf(stderr, "%s\n", err ? err : "?");
        free(err);
        goto out;
    }
    printf("DDM store operations, %ld active enrollments, one set assigned to \"all\" (SQLite)\n", n);
    rc = setup_declarations(s) != 0 || candidates(s, "ddm_candidates, no DDM state yet") != 0 ||
         sync_all(s, n, 1, "ddm_sync_queue, batches of 1000, all queue") != 0 ||
         sync_all(s, n, 2, "ddm_sync_queue again, all pending (coalesced)") != 0 ||
         candidates(s, "ddm_candidates, with DDM state") != 0;
    store_close(s);
    if (rc == 0) {
        if (add_groups(path, n) != 0 || !(s = store_open(url, NULL))) {
            rc = 1;
            goto out;
        }
        rc = candidates(s, "ddm_candidates, + groups of 1000, 10% direct") != 0;
        store_close(s);
    }
out: {
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
