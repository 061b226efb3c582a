/* SQLite backend: the inactivity sweep's operations (repush_claim,
 * inactive_mark) and leases (store.h). */
#include <string.h>

#include "store_sqlite_internal.h"

enum { I_CLAIM, I_MARK_EVENTS, I_MARK, I_LEASE_TAKE, I_LEASE_DROP };

/* "Silent" is always: active, last heard from before ?1. Both sweeps are
 * range scans on enrollments_by_seen (state, last_seen_at). */
static const char *const sql[] = {
    /* RETURNING hands back the rows as updated, so the claim and the read
     * are one statement and no other instance can claim the same rows. */
    [I_CLAIM] = "UPDATE enrollments SET last_repush_at = ?2"
                " WHERE id IN (SELECT id FROM enrollments"
                "  WHERE state = 'active' AND last_seen_at < ?1 AND last_repush_at < ?1"
                "   AND push_token IS NOT NULL AND push_token_invalid = 0"
                "  ORDER BY last_seen_at LIMIT ?3)"
                " RETURNING " SQ_ENR_COLUMNS,
    /* Events first, while the rows still match (as in re-enrollment). */
    [I_MARK_EVENTS] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                      " SELECT ?2, id, 'marked_inactive', json_object('last_seen_at', last_seen_at)"
                      " FROM enrollments WHERE state = 'active' AND last_seen_at < ?1 AND silent_since = 0",
    [I_MARK] = "UPDATE enrollments SET silent_since = ?2"
               " WHERE state = 'active' AND last_seen_at < ?1 AND silent_since = 0",
    /* Takes the lease when it is free, expired (?4 = now), or already ours
     * (renewal); otherwise the WHERE leaves the row alone: no change. */
    [I_LEASE_TAKE] = "INSERT INTO leases (name, holder, expires_at) VALUES (?1, ?2, ?3)"
                     " ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at"
                     " WHERE leases.holder = excluded.holder OR leases.expires_at <= ?4",
    [I_LEASE_DROP] = "DELETE FROM leases WHERE name = ?1 AND holder = ?2",
};

static sqlite3_stmt *prep(sq_store *s, int id)
{
    return sq_inactive_stmt(s, id, sql[id]);
}

static int bind_failed(sq_store *s, sqlite3_stmt *st, const char *what)
{
    sq_fail_db(s, what);
    sq_stmt_release(st);
    return STORE_ERR;
}

/* Runs a statement that returns no rows; *changes (if given) = rows changed. */
static int run(sq_store *s, sqlite3_stmt *st, const char *what, int *changes)
{
    if (sqlite3_step(st) != SQLITE_DONE)
        return bind_failed(s, st, what);
    if (changes)
        *changes = sqlite3_changes(sq_db(s));
    sq_stmt_release(st);
    return STORE_OK;
}

int sq_repush_claim(store_t *base, int64_t seen_before, int64_t now, int limit, enrollment_cb cb, void *ctx,
                    int *claimed)
{
    sq_store *s = sq(base);
    if (!claimed || limit < 1 || limit > 1000)
        return sq_fail_arg(s, "repush_claim");
    *claimed = 0;
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, I_CLAIM);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sqlite3_bind_int64(st, 1, seen_before) | sqlite3_bind_int64(st, 2, now) | sqlite3_bind_int(st, 3, limit))
        return sq_tx_abort(s, bind_failed(s, st, "repush_claim"));
    int rc, n = 0, stop = 0;
    /* Every row is stepped even after cb asks to stop: the UPDATE is
     * complete only when the statement is. */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        n++;
        if (stop || !cb)
            continue;
        enrollment_t e;
        if (sq_read_enrollment(st, &e) != 0) {
            sq_stmt_release(st);
            return sq_tx_abort(s, sq_fail_oom(s));
        }
        stop = cb(ctx, &e);
        enrollment_free(&e);
    }
    if (rc != SQLITE_DONE)
        return sq_tx_abort(s, bind_failed(s, st, "claiming silent enrollments"));
    sq_stmt_release(st);
    if (sq_tx_commit(s) != STORE_OK)
        return STORE_ERR;
    *claimed = n;
    return STORE_OK;
}

int sq_inactive_mark(store_t *base, int64_t seen_before, int64_t now, int *marked)
{
    sq_store *s = sq(base);
    if (!marked)
        return sq_fail_arg(s, "inactive_mark");
    *marked = 0;
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int n = 0;
    for (int id = I_MARK_EVENTS; id <= I_MARK; id++) {
        sqlite3_stmt *st = prep(s, id);
        if (!st)
            return sq_tx_abort(s, STORE_ERR);
        if (sqlite3_bind_int64(st, 1, seen_before) | sqlite3_bind_int64(st, 2, now))
            return sq_tx_abort(s, bind_failed(s, st, "inactive_mark"));
        if (run(s, st, id == I_MARK ? "flagging silent enrollments" : "logging marked_inactive", &n) != STORE_OK)
            return sq_tx_abort(s, STORE_ERR);
    }
    if (sq_tx_commit(s) != STORE_OK)
        return STORE_ERR;
    *marked = n;
    return STORE_OK;
}

int sq_lease_acquire(store_t *base, const char *name, const char *holder, int64_t ttl, int64_t now)
{
    sq_store *s = sq(base);
    if (!name || !holder || ttl < 1)
        return sq_fail_arg(s, "lease_acquire");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, I_LEASE_TAKE);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    int changed = 0;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) | sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC) |
        sqlite3_bind_int64(st, 3, now + ttl) | sqlite3_bind_int64(st, 4, now))
        return sq_tx_abort(s, bind_failed(s, st, "lease_acquire"));
    if (run(s, st, "taking lease", &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_CONFLICT); /* nothing written: no commit needed */
    return sq_tx_commit(s);
}

int sq_lease_release(store_t *base, const char *name, const char *holder)
{
    sq_store *s = sq(base);
    if (!name || !holder)
        return sq_fail_arg(s, "lease_release");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, I_LEASE_DROP);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    int changed = 0;
    if (sqlite3_bind_text(st, 1, name, -1, SQLITE_STATIC) | sqlite3_bind_text(st, 2, holder, -1, SQLITE_STATIC))
        return sq_tx_abort(s, bind_failed(s, st, "lease_release"));
    if (run(s, st, "releasing lease", &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_NOTFOUND);
    return sq_tx_commit(s);
}
