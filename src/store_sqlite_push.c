/* SQLite backend: APNs push outcomes (store.h, push_results_record). */
#include <string.h>

#include "store_sqlite_internal.h"

enum { P_RESULT, P_INVALIDATE, P_EVENT };

static const char *const sql[] = {
    /* ?3 NULL (a failure) keeps the previous apns-id: it still names the
     * latest push APNs accepted. */
    [P_RESULT] = "UPDATE enrollments SET last_push_at = ?2,"
                 "  last_push_id = CASE WHEN ?4 IS NULL THEN ?3 ELSE last_push_id END,"
                 "  last_push_error = ?4"
                 " WHERE id = ?1",
    /* Only the token APNs rejected is marked: a TokenUpdate that arrived
     * while the push was in flight brought a new one, which must stay usable. */
    [P_INVALIDATE] = "UPDATE enrollments SET push_token_invalid = 1 WHERE id = ?1 AND push_token = ?2",
    /* Never the token or PushMagic: they are secrets. */
    [P_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                " VALUES (?1, ?2, ?3, json_object('error', ?4))",
};

static int step_done(sq_store *s, sqlite3_stmt *st, const char *what, int *changes)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        sq_fail_db(s, what);
        sq_stmt_release(st);
        return STORE_ERR;
    }
    if (changes)
        *changes = sqlite3_changes(sq_db(s));
    sq_stmt_release(st);
    return STORE_OK;
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int record_one(sq_store *s, const push_result_t *r)
{
    sqlite3_stmt *st = sq_push_stmt(s, P_RESULT, sql[P_RESULT]);
    if (!st)
        return STORE_ERR;
    int changed = 0;
    if (bind_text(st, 1, r->enrollment_id) | sqlite3_bind_int64(st, 2, r->at) | bind_text(st, 3, r->apns_id) |
        bind_text(st, 4, r->error)) {
        sq_fail_db(s, "push_results_record");
        sq_stmt_release(st);
        return STORE_ERR;
    }
    if (step_done(s, st, "recording push result", &changed) != STORE_OK)
        return STORE_ERR;
    if (changed == 0 || !r->error)
        return STORE_OK; /* unknown enrollment, or accepted: nothing more to note */

    const char *kind = "push_failed";
    if (r->token_invalid && r->push_token && r->push_token_len) {
        st = sq_push_stmt(s, P_INVALIDATE, sql[P_INVALIDATE]);
        if (!st)
            return STORE_ERR;
        if (bind_text(st, 1, r->enrollment_id) |
            sqlite3_bind_blob64(st, 2, r->push_token, (sqlite3_uint64)r->push_token_len, SQLITE_STATIC)) {
            sq_fail_db(s, "push_results_record");
            sq_stmt_release(st);
            return STORE_ERR;
        }
        if (step_done(s, st, "marking push token invalid", &changed) != STORE_OK)
            return STORE_ERR;
        if (changed)
            kind = "push_token_invalid";
    }
    st = sq_push_stmt(s, P_EVENT, sql[P_EVENT]);
    if (!st)
        return STORE_ERR;
    if (sqlite3_bind_int64(st, 1, r->at) | bind_text(st, 2, r->enrollment_id) | bind_text(st, 3, kind) |
        bind_text(st, 4, r->error)) {
        sq_fail_db(s, "push_results_record");
        sq_stmt_release(st);
        return STORE_ERR;
    }
    return step_done(s, st, "logging push failure", NULL);
}

int sq_push_results_record(store_t *base, const push_result_t *r, size_t n)
{
    sq_store *s = sq(base);
    if (!r && n)
        return sq_fail_arg(s, "push_results_record");
    for (size_t i = 0; i < n; i++)
        if (!r[i].enrollment_id)
            return sq_fail_arg(s, "push_results_record");
    if (n == 0)
        return STORE_OK;
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < n; i++)
        if (record_one(s, &r[i]) != STORE_OK)
            return sq_tx_abort(s, STORE_ERR);
    return sq_tx_commit(s);
}
