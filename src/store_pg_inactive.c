/* PostgreSQL backend: the inactivity sweep's operations (repush_claim,
 * inactive_mark) and leases (store.h); the semantics of
 * store_sqlite_inactive.c. Each is a single statement, so it is atomic and
 * durable on its own, and safe with several instances:
 *   - repush_claim locks the rows it claims with FOR UPDATE SKIP LOCKED, so
 *     a concurrent claim takes other rows instead of waiting for, or
 *     double-claiming, these;
 *   - inactive_mark flags the rows and logs an event for exactly the rows it
 *     flagged (a data-modifying WITH), so a touch committed in between
 *     cannot make the two disagree;
 *   - a lease is taken by an upsert whose update applies only when the
 *     lease is free, expired or already this holder's; the row lock makes
 *     two instances racing for it serialise, and the second re-checks. */
#include <string.h>

#include "store_pg_internal.h"

enum { I_CLAIM = PG_ST_INACTIVE, I_MARK, I_LEASE_TAKE, I_LEASE_DROP, I_COUNT_ };

_Static_assert((int)I_COUNT_ <= (int)PG_ST_DDM, "statement ids overlap");

/* "Silent" is always: active, last heard from before $1. */
static const char *const sql[] = {
    [I_CLAIM - PG_ST_INACTIVE] =
        "WITH due AS ("
        "  SELECT id FROM enrollments"
        "  WHERE state = 'active' AND last_seen_at < $1::bigint AND last_repush_at < $1::bigint"
        "   AND push_token IS NOT NULL AND NOT push_token_invalid"
        "  ORDER BY last_seen_at LIMIT $3::integer FOR UPDATE SKIP LOCKED),"
        " claimed AS ("
        "  UPDATE enrollments e SET last_repush_at = $2::bigint FROM due WHERE e.id = due.id"
        "  RETURNING e.*)"
        " SELECT " PG_ENR_COLUMNS " FROM claimed ORDER BY last_seen_at, id",
    [I_MARK - PG_ST_INACTIVE] =
        "WITH m AS ("
        "  UPDATE enrollments SET silent_since = $2::bigint"
        "  WHERE state = 'active' AND last_seen_at < $1::bigint AND silent_since = 0"
        "  RETURNING id, last_seen_at)"
        " INSERT INTO events (at, enrollment_id, kind, detail)"
        " SELECT $2::bigint, id, 'marked_inactive', '{\"last_seen_at\":' || last_seen_at || '}'"
        " FROM m ORDER BY last_seen_at, id",
    [I_LEASE_TAKE - PG_ST_INACTIVE] =
        "INSERT INTO leases (name, holder, expires_at) VALUES ($1::text, $2::text, $3::bigint)"
        " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
        " WHERE leases.holder = excluded.holder OR leases.expires_at <= $4::bigint",
    [I_LEASE_DROP - PG_ST_INACTIVE] = "DELETE FROM leases WHERE name = $1::text AND holder = $2::text",
};

static int run(pg_store *s, int id, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    return pg_run(s, id, sql[id - PG_ST_INACTIVE], p, what, res, rows);
}

int pg_repush_claim(store_t *base, int64_t seen_before, int64_t now, int limit, enrollment_cb cb, void *ctx,
                    int *claimed)
{
    pg_store *s = pgs(base);
    if (!claimed || limit < 1 || limit > 1000)
        return pg_fail_arg(s, "repush_claim");
    *claimed = 0;
    pg_params p;
    pgp_init(&p);
    pgp_int(&p, seen_before);
    pgp_int(&p, now);
    pgp_int(&p, limit);
    PGresult *r;
    if (run(s, I_CLAIM, &p, "claiming silent enrollments", &r, NULL) != STORE_OK)
        return STORE_ERR;
    /* The claim is committed; the callbacks follow it. */
    int n = PQntuples(r), rc = STORE_OK;
    for (int i = 0; cb && i < n; i++) {
        enrollment_t e;
        if (pg_read_enrollment(r, i, &e) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &e);
        enrollment_free(&e);
        if (stop)
            break;
    }
    PQclear(r);
    if (rc == STORE_OK)
        *claimed = n;
    return rc;
}

int pg_inactive_mark(store_t *base, int64_t seen_before, int64_t now, int *marked)
{
    pg_store *s = pgs(base);
    if (!marked)
        return pg_fail_arg(s, "inactive_mark");
    *marked = 0;
    pg_params p;
    pgp_init(&p);
    pgp_int(&p, seen_before);
    pgp_int(&p, now);
    return run(s, I_MARK, &p, "flagging silent enrollments", NULL, marked);
}

int pg_lease_acquire(store_t *base, const char *name, const char *holder, int64_t ttl, int64_t now)
{
    pg_store *s = pgs(base);
    if (!name || !holder || ttl < 1)
        return pg_fail_arg(s, "lease_acquire");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    pgp_text(&p, holder);
    pgp_int(&p, now + ttl);
    pgp_int(&p, now);
    int rows = 0;
    if (run(s, I_LEASE_TAKE, &p, "taking lease", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_CONFLICT, "lease %s is held by another instance", name);
}

int pg_lease_release(store_t *base, const char *name, const char *holder)
{
    pg_store *s = pgs(base);
    if (!name || !holder)
        return pg_fail_arg(s, "lease_release");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    pgp_text(&p, holder);
    int rows = 0;
    if (run(s, I_LEASE_DROP, &p, "releasing lease", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "%s does not hold lease %s", holder, name);
}
