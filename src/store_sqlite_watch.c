/* SQLite backend: supervision and Apple Watch pairing (store.h, schema 5):
 * enrollment_set_supervised, the single-use pairing security tokens and the
 * watch-to-phone pairings. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store_sqlite_internal.h"
#include "util.h"

enum {
    W_SUPERVISED,
    W_TOKEN_PURGE,
    W_TOKEN_ADD,
    W_TOKEN_GET,
    W_TOKEN_BIND,
    W_TOKEN_CONSUME,
    W_PAIR,
    W_PAIR_STATE,
    W_PAIR_GET,
    W_PHONE_WATCHES,
    W_COUNT_
};

#define PAIRING_COLUMNS "watch_udid, phone_udid, state, paired_at, updated_at"

static const char *const sql[W_COUNT_] = {
    [W_SUPERVISED] = "UPDATE enrollments SET supervised = ?2, updated_at = ?3 WHERE id = ?1",
    /* Tokens live minutes; a day after expiry they explain nothing more. */
    [W_TOKEN_PURGE] = "DELETE FROM pairing_tokens WHERE expires_at < ?1 - 86400",
    [W_TOKEN_ADD] = "INSERT INTO pairing_tokens (digest, watch_udid, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)"
                    " ON CONFLICT (digest) DO NOTHING",
    [W_TOKEN_GET] = "SELECT watch_udid, phone_udid, created_at, expires_at, bound_at, used_at"
                    " FROM pairing_tokens WHERE digest = ?1",
    /* Binds once; binding again to the same phone matches (and keeps the
     * first bound_at), another phone does not. */
    [W_TOKEN_BIND] = "UPDATE pairing_tokens SET phone_udid = ?3, bound_at = CASE WHEN bound_at = 0 THEN ?4"
                     " ELSE bound_at END"
                     " WHERE digest = ?1 AND watch_udid = ?2 AND expires_at > ?4 AND used_at = 0"
                     "  AND (phone_udid IS NULL OR phone_udid = ?3)",
    [W_TOKEN_CONSUME] = "UPDATE pairing_tokens SET used_at = ?3"
                        " WHERE digest = ?1 AND watch_udid = ?2 AND phone_udid IS NOT NULL AND expires_at > ?3"
                        "  AND used_at = 0",
    [W_PAIR] = "INSERT INTO watch_pairings (watch_udid, phone_udid, state, paired_at, updated_at)"
               " VALUES (?1, ?2, 'profile_issued', ?3, ?3)"
               " ON CONFLICT (watch_udid) DO UPDATE SET phone_udid = excluded.phone_udid, state = excluded.state,"
               "  paired_at = excluded.paired_at, updated_at = excluded.updated_at",
    [W_PAIR_STATE] = "UPDATE watch_pairings SET state = ?2, updated_at = ?3 WHERE watch_udid = ?1",
    [W_PAIR_GET] = "SELECT " PAIRING_COLUMNS " FROM watch_pairings WHERE watch_udid = ?1",
    [W_PHONE_WATCHES] = "SELECT " PAIRING_COLUMNS " FROM watch_pairings WHERE phone_udid = ?1 ORDER BY watch_udid",
};

static sqlite3_stmt *prep(sq_store *s, int id)
{
    return sq_watch_stmt(s, id, sql[id]);
}

/* Security tokens are bearer secrets: the database keeps their SHA-256. */
static int token_digest(const char *token, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (EVP_Digest(token, strlen(token), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    util_hex(md, 32, out);
    return 0;
}

/* One write statement in its own transaction; *changes = rows changed.
 * The statement is bound by the caller. */
static int write_one(sq_store *s, sqlite3_stmt *st, const char *what, int *changes)
{
    if (sq_exec(s, st, what, changes) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    return sq_tx_commit(s);
}

int sq_enrollment_set_supervised(store_t *base, const char *id, int supervised, int64_t now)
{
    sq_store *s = sq(base);
    if (!id || supervised < -1 || supervised > 1)
        return sq_fail_arg(s, "enrollment_set_supervised");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, W_SUPERVISED);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, id) | sqlite3_bind_int(st, 2, supervised) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "enrollment_set_supervised"));
    int changed = 0;
    if (sq_exec(s, st, "recording supervision", &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_NOTFOUND);
    return sq_tx_commit(s);
}

int sq_pairing_add(store_t *base, const char *security_token, const char *watch_udid, int64_t expires_at,
                   int64_t now)
{
    sq_store *s = sq(base);
    char digest[65];
    if (!security_token || !*security_token || !watch_udid || !*watch_udid ||
        token_digest(security_token, digest) != 0)
        return sq_fail_arg(s, "pairing_add");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, W_TOKEN_PURGE);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sqlite3_bind_int64(st, 1, now) != SQLITE_OK)
        return sq_tx_abort(s, sq_bind_failed(s, st, "pairing_add"));
    if (sq_exec(s, st, "purging expired pairing tokens", NULL) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (!(st = prep(s, W_TOKEN_ADD)))
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, digest) | sq_bind_text(st, 2, watch_udid) | sqlite3_bind_int64(st, 3, now) |
        sqlite3_bind_int64(st, 4, expires_at))
        return sq_tx_abort(s, sq_bind_failed(s, st, "pairing_add"));
    int changed = 0;
    if (sq_exec(s, st, "storing pairing token", &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_CONFLICT);
    return sq_tx_commit(s);
}

int sq_pairing_get(store_t *base, const char *security_token, pairing_token_t *out)
{
    sq_store *s = sq(base);
    char digest[65];
    memset(out, 0, sizeof *out);
    if (!security_token || token_digest(security_token, digest) != 0)
        return sq_fail_arg(s, "pairing_get");
    sqlite3_stmt *st = prep(s, W_TOKEN_GET);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, digest) != SQLITE_OK)
        return sq_bind_failed(s, st, "pairing_get");
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW) {
        /* Only the hash is stored: the token handed back is the caller's. */
        int bad = !(out->security_token = strdup(security_token));
        bad |= sq_col_text(st, 0, &out->watch_udid);
        bad |= sq_col_text(st, 1, &out->phone_udid);
        out->created_at = sqlite3_column_int64(st, 2);
        out->expires_at = sqlite3_column_int64(st, 3);
        out->bound_at = sqlite3_column_int64(st, 4);
        out->used_at = sqlite3_column_int64(st, 5);
        result = STORE_OK;
        if (bad) {
            pairing_token_free(out);
            result = sq_fail_oom(s);
        }
    } else if (rc == SQLITE_DONE) {
        result = STORE_NOTFOUND;
    } else {
        result = sq_fail_db(s, "reading pairing token");
    }
    sq_stmt_release(st);
    return result;
}

int sq_pairing_bind_phone(store_t *base, const char *security_token, const char *watch_udid, const char *phone_udid,
                          int64_t now)
{
    sq_store *s = sq(base);
    char digest[65];
    if (!security_token || !watch_udid || !phone_udid || !*phone_udid || token_digest(security_token, digest) != 0)
        return sq_fail_arg(s, "pairing_bind_phone");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, W_TOKEN_BIND);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, digest) | sq_bind_text(st, 2, watch_udid) | sq_bind_text(st, 3, phone_udid) |
        sqlite3_bind_int64(st, 4, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "pairing_bind_phone"));
    int changed = 0;
    if (sq_exec(s, st, "binding pairing token", &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_NOTFOUND);
    return sq_tx_commit(s);
}

int sq_pairing_consume(store_t *base, const char *security_token, const char *watch_udid, int64_t now)
{
    sq_store *s = sq(base);
    char digest[65];
    if (!security_token || !watch_udid || token_digest(security_token, digest) != 0)
        return sq_fail_arg(s, "pairing_consume");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, W_TOKEN_CONSUME);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, digest) | sq_bind_text(st, 2, watch_udid) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "pairing_consume"));
    int changed = 0;
    if (sq_exec(s, st, "consuming pairing token", &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_NOTFOUND);
    return sq_tx_commit(s);
}

int sq_watch_pair(store_t *base, const char *watch_udid, const char *phone_udid, int64_t now)
{
    sq_store *s = sq(base);
    if (!watch_udid || !*watch_udid || !phone_udid || !*phone_udid)
        return sq_fail_arg(s, "watch_pair");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, W_PAIR);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, watch_udid) | sq_bind_text(st, 2, phone_udid) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "watch_pair"));
    return write_one(s, st, "recording watch pairing", NULL);
}

int sq_watch_pair_state(store_t *base, const char *watch_udid, const char *state, int64_t now)
{
    sq_store *s = sq(base);
    if (!watch_udid || !state || (strcmp(state, "profile_issued") != 0 && strcmp(state, "enrolled") != 0))
        return sq_fail_arg(s, "watch_pair_state");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, W_PAIR_STATE);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, watch_udid) | sq_bind_text(st, 2, state) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "watch_pair_state"));
    int changed = 0;
    if (sq_exec(s, st, "updating watch pairing", &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_NOTFOUND);
    return sq_tx_commit(s);
}

static int read_pairing(sqlite3_stmt *st, watch_pairing_t *p)
{
    memset(p, 0, sizeof *p);
    int bad = sq_col_text(st, 0, &p->watch_udid);
    bad |= sq_col_text(st, 1, &p->phone_udid);
    bad |= sq_col_text(st, 2, &p->state);
    p->paired_at = sqlite3_column_int64(st, 3);
    p->updated_at = sqlite3_column_int64(st, 4);
    if (bad) {
        watch_pairing_free(p);
        return -1;
    }
    return 0;
}

int sq_watch_pairing_get(store_t *base, const char *watch_udid, watch_pairing_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!watch_udid)
        return sq_fail_arg(s, "watch_pairing_get");
    sqlite3_stmt *st = prep(s, W_PAIR_GET);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, watch_udid) != SQLITE_OK)
        return sq_bind_failed(s, st, "watch_pairing_get");
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW)
        result = read_pairing(st, out) == 0 ? STORE_OK : sq_fail_oom(s);
    else if (rc == SQLITE_DONE)
        result = STORE_NOTFOUND;
    else
        result = sq_fail_db(s, "reading watch pairing");
    sq_stmt_release(st);
    return result;
}

int sq_phone_watches(store_t *base, const char *phone_udid, watch_pairing_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (!phone_udid)
        return sq_fail_arg(s, "phone_watches");
    sqlite3_stmt *st = prep(s, W_PHONE_WATCHES);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, phone_udid) != SQLITE_OK)
        return sq_bind_failed(s, st, "phone_watches");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        watch_pairing_t p;
        if (read_pairing(st, &p) != 0) {
            sq_stmt_release(st);
            return sq_fail_oom(s);
        }
        int stop = cb ? cb(ctx, &p) : 0;
        watch_pairing_free(&p);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_bind_failed(s, st, "listing a phone's watches");
    sq_stmt_release(st);
    return STORE_OK;
}
