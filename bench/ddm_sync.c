/* DDM sync fan-out and manifest builds at scale.
 *
 * One SQLite database with N active device enrollments (default 100,000;
 * bulk SQL, synchronous=OFF, benchmark only), then through the real store
 * API and ddm.c:
 *   1. a set of declarations assigned to "all": ddm_sync computes every
 *      token and queues one DeclarativeManagement command per device (no
 *      pusher: pushes are not sent, the queueing is what is timed);
 *   2. a declaration in that set changes: ddm_sync again (every token
 *      changes, no new command since one is still waiting per device);
 *   3. a sync with nothing changed (the cost of the scan alone);
 *   4. manifest builds per second: ddm_effective_for + the
 *      declaration-items JSON, for random enrollments.
 * Usage: ddm_sync [N]   (BENCH_DIR picks the directory, default /tmp).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>

#include "ddm.h"
#include "store.h"
#include "util.h"

#define T0 1700000000

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

static int populate(const char *path, long n)
{
    sqlite3 *db;
    if (sqlite3_open(path, &db) != SQLITE_OK)
        return -1;
    sqlite3_create_function(db, "dev_id", 1, SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL, id_func, NULL, NULL);
    char *sql = util_strdup_printf(
        "PRAGMA synchronous=OFF; BEGIN;"
        "WITH RECURSIVE r(i) AS (SELECT 0 UNION ALL SELECT i+1 FROM r WHERE i < %ld)"
        " INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, state, cert_sha256,"
        " push_token, push_magic, created_at, updated_at, last_seen_at, authenticated_at, token_updated_at)"
        " SELECT dev_id(i), dev_id(i), dev_id(i), 'device', 'com.apple.mgmt.External.bench', printf('F2LX%%08d', i),"
        " 'iPhone14,5', 'active', lower(hex(randomblob(32))), randomblob(32), 'magic', %d, %d, %d, %d, %d FROM r;"
        "COMMIT; PRAGMA wal_checkpoint(TRUNCATE);",
        n - 1, T0, T0, T0, T0, T0);
    char *err = NULL;
    int rc = sqlite3_exec(db, sql, NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "populate: %s\n", err ? err : "?");
    sqlite3_free(err);
    free(sql);
    sqlite3_close(db);
    return rc == SQLITE_OK ? 0 : -1;
}

static int put(store_t *s, const char *json)
{
    json_t *d = json_loads(json, 0, NULL);
    char err[256];
    int changed;
    int code = d ? ddm_declaration_put(s, d, &changed, err, sizeof err) : 400;
    json_decref(d);
    if (code != 200 && code != 201) {
        fprintf(stderr, "declaration: %d %s\n", code, err);
        return -1;
    }
    return 0;
}

static int sync_once(store_t *s, const char *what)
{
    ddm_sync_report_t r;
    char err[256];
    if (ddm_sync(s, NULL, &r, err, sizeof err) != 0) {
        fprintf(stderr, "ddm_sync: %s\n", err);
        return -1;
    }
    printf("%-44s %8.3f s  examined %zu, tokens changed %zu, commands queued %zu (%.0f enrollments/s)\n", what,
           r.seconds, r.examined, r.changed, r.queued, r.seconds > 0 ? (double)r.examined / r.seconds : 0.0);
    return 0;
}

static const char *manifest_key(const char *kind)
{
    return strcmp(kind, "activation") == 0      ? "Activations"
           : strcmp(kind, "configuration") == 0 ? "Configurations"
           : strcmp(kind, "asset") == 0         ? "Assets"
                                                : "Management";
}

static int manifests(store_t *s, long n)
{
    unsigned long long rng = 88172645463325252ULL;
    long calls = 20000;
    size_t bytes = 0;
    int64_t t0 = util_now_us();
    for (long i = 0; i < calls; i++) {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        char id[64];
        dev_id((long)(rng % (unsigned long long)n), id, sizeof id);
        declaration_t *decls;
        size_t nd;
        char token[33];
        if (ddm_effective_for(s, id, &decls, &nd, token) != 0) {
            fprintf(stderr, "ddm_effective_for failed\n");
            return -1;
        }
        json_t *lists = json_pack("{s:[],s:[],s:[],s:[]}", "Activations", "Configurations", "Assets", "Management");
        for (size_t k = 0; k < nd; k++) {
            json_array_append_new(json_object_get(lists, manifest_key(decls[k].kind)),
                                  json_pack("{s:s,s:s}", "Identifier", decls[k].identifier, "ServerToken",
                                            decls[k].server_token));
            declaration_free(&decls[k]);
        }
        free(decls);
        json_t *m = json_pack("{s:o,s:s}", "Declarations", lists, "DeclarationsToken", token);
        char *text = json_dumps(m, JSON_COMPACT);
        bytes += text ? strlen(text) : 0;
        free(text);
        json_decref(m);
    }
    double secs = (double)(util_now_us() - t0) / 1e6;
    printf("%-44s %8.0f /s (%.1f us each, %zu bytes average)\n", "manifest builds (effective set + JSON)",
           (double)calls / secs, secs * 1e6 / (double)calls, bytes / (size_t)calls);
    return 0;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 100000;
    if (n < 1) {
        fprintf(stderr, "usage: ddm_sync [N]\n");
        return 2;
    }
    const char *dir = getenv("BENCH_DIR") ? getenv("BENCH_DIR") : "/tmp";
    char *path = util_strdup_printf("%s/orchard-bench-ddm-%d.db", dir, (int)getpid());
    char *url = util_strdup_printf("sqlite:%s", path);
    char *err = NULL;
    store_t *s = store_open(url, &err); /* creates the schema */
    int rc = 1;
    if (!s) {
        fprintf(stderr, "%s\n", err ? err : "?");
        goto out;
    }
    store_close(s);
    int64_t t0 = util_now_us();
    if (populate(path, n) != 0)
        goto out;
    printf("%ld active enrollments inserted in %.1f s\n", n, (double)(util_now_us() - t0) / 1e6);
    s = store_open(url, &err);
    if (!s)
        goto out;
    static const char *const decls[] = {
        "{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"bench-pass\","
        "\"Payload\":{\"MinimumLength\":6}}",
        "{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"bench-act\","
        "\"Payload\":{\"StandardConfigurations\":[\"bench-pass\"]}}",
        "{\"Type\":\"com.apple.management.server-capabilities\",\"Identifier\":\"bench-caps\","
        "\"Payload\":{\"Version\":\"1.0\",\"SupportedFeatures\":{}}}",
        "{\"Type\":\"com.apple.management.organization-info\",\"Identifier\":\"bench-org\","
        "\"Payload\":{\"Name\":\"Bench Org\"}}",
    };
    for (size_t i = 0; i < sizeof decls / sizeof decls[0]; i++)
        if (put(s, decls[i]) != 0)
            goto out_store;
    const char *members[] = {"bench-act", "bench-caps", "bench-org"};
    if (s->ops->set_put(s, "bench", members, 3, T0) != STORE_OK ||
        s->ops->set_assign(s, "bench", DDM_TARGET_ALL, "", T0) != STORE_OK) {
        fprintf(stderr, "set: %s\n", s->ops->errmsg(s));
        goto out_store;
    }
    if (sync_once(s, "sync after assigning a set to all") != 0)
        goto out_store;
    if (put(s, "{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"bench-pass\","
               "\"Payload\":{\"MinimumLength\":8}}") != 0 ||
        sync_once(s, "sync after changing a member (commands wait)") != 0 ||
        sync_once(s, "sync with nothing changed") != 0 || manifests(s, n) != 0)
        goto out_store;
    rc = 0;
out_store:
    store_close(s);
out:
    free(err);
    unlink(path);
    char *side = util_strdup_printf("%s-wal", path);
    unlink(side);
    free(side);
    side = util_strdup_printf("%s-shm", path);
    unlink(side);
    free(side);
    free(path);
    free(url);
    return rc;
}
