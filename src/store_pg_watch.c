/* PostgreSQL backend: supervision and Apple Watch pairing (store.h, schema
 * 5); the semantics of store_sqlite_watch.c. Binding and consuming a
 * pairing token are conditional updates: with two instances racing, the
 * second re-checks the condition after the first commits, so a token is
 * bound to one phone and spent once. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store_pg_internal.h"
#include "util.h"

enum {
    W_SUPERVISED = PG_ST_WATCH,
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

_Static_assert((int)W_COUNT_ <= (int)PG_ST_MAX, "statement ids overlap");

#define PAIRING_COLUMNS "watch_udid, phone_udid, state, paired_at, updated_at"

static const char *const sql[] = {
    [W_SUPERVISED - PG_ST_WATCH] = "UPDATE enrollments SET supervised = $2::smallint, updated_at = $3::bigint"
                                   " WHERE id = $1::text",
    /* Tokens live minutes; a day after expiry they explain nothing more,
     * and are purged as new ones are added. No row: the token exists. */
    [W_TOKEN_ADD - PG_ST_WATCH] =
        "WITH purge AS (DELETE FROM pairing_tokens WHERE expires_at < $3::bigint - 86400)"
        " INSERT INTO pairing_tokens (digest, watch_udid, created_at, expires_at)"
        " VALUES ($1::text, $2::text, $3::bigint, $4::bigint) ON CONFLICT (digest) DO NOTHING",
    [W_TOKEN_GET - PG_ST_WATCH] = "SELECT watch_udid, phone_udid, created_at, expires_at, bound_at, used_at"
                                  " FROM pairing_tokens WHERE digest = $1::text",
    /* Binds once; binding again to the same phone matches (and keeps the
     * first bound_at), another phone does not. */
    [W_TOKEN_BIND - PG_ST_WATCH] =
        "UPDATE pairing_tokens SET phone_udid = $3::text,"
        "  bound_at = CASE WHEN bound_at = 0 THEN $4::bigint ELSE bound_at END"
        " WHERE digest = $1::text AND watch_udid = $2::text AND expires_at > $4::bigint AND used_at = 0"
        "  AND (phone_udid IS NULL OR phone_udid = $3::text)",
    [W_TOKEN_CONSUME - PG_ST_WATCH] =
        "UPDATE pairing_tokens SET used_at = $3::bigint"
        " WHERE digest = $1::text AND watch_udid = $2::text AND phone_udid IS NOT NULL"
        "  AND expires_at > $3::bigint AND used_at = 0",
    [W_PAIR - PG_ST_WATCH] =
        "INSERT INTO watch_pairings (watch_udid, phone_udid, state, paired_at, updated_at)"
        " VALUES ($1::text, $2::text, 'profile_issued', $3::bigint, $3::bigint)"
        " ON CONFLICT (watch_udid) DO UPDATE SET phone_udid = excluded.phone_udid, state = excluded.state,"
        "  paired_at = excluded.paired_at, updated_at = excluded.updated_at",
    [W_PAIR_STATE - PG_ST_WATCH] = "UPDATE watch_pairings SET state = $2::text, updated_at = $3::bigint"
                                   " WHERE watch_udid = $1::text",
    [W_PAIR_GET - PG_ST_WATCH] = "SELECT " PAIRING_COLUMNS " FROM watch_pairings WHERE watch_udid = $1::text",
    [W_PHONE_WATCHES - PG_ST_WATCH] = "SELECT " PAIRING_COLUMNS " FROM watch_pairings WHERE phone_udid = $1::text"
                                      " ORDER BY watch_udid",
};

static int run(pg_store *s, int id, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    return pg_run(s, id, sql[id - PG_ST_WATCH], p, what, res, rows);
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

/* Runs a write whose "no row changed" means STORE_NOTFOUND. */
static int write_found(pg_store *s, int id, const pg_params *p, const char *what, const char *notfound)
{
    int rows = 0;
    if (run(s, id, p, what, NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "%s", notfound);
}

int pg_enrollment_set_supervised(store_t *base, const char *id, int supervised, int64_t now)
{
    pg_store *s = pgs(base);
    if (!id || supervised < -1 || supervised > 1)
        return pg_fail_arg(s, "enrollment_set_supervised");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_int(&p, supervised);
    pgp_int(&p, now);
    return write_found(s, W_SUPERVISED, &p, "recording supervision", "enrollment not found");
}

int pg_pairing_add(store_t *base, const char *security_token, const char *watch_udid, int64_t expires_at,
                   int64_t now)
{
    pg_store *s = pgs(base);
    char digest[65];
    if (!security_token || !*security_token || !watch_udid || !*watch_udid ||
        token_digest(security_token, digest) != 0)
        return pg_fail_arg(s, "pairing_add");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, digest);
    pgp_text(&p, watch_udid);
    pgp_int(&p, now);
    pgp_int(&p, expires_at);
    int rows = 0;
    if (run(s, W_TOKEN_ADD, &p, "storing pairing token", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_CONFLICT, "pairing token exists already");
}

int pg_pairing_get(store_t *base, const char *security_token, pairing_token_t *out)
{
    pg_store *s = pgs(base);
    char digest[65];
    memset(out, 0, sizeof *out);
    if (!security_token || token_digest(security_token, digest) != 0)
        return pg_fail_arg(s, "pairing_get");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, digest);
    PGresult *r;
    if (run(s, W_TOKEN_GET, &p, "reading pairing token", &r, NULL) != STORE_OK)
        return STORE_ERR;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return pg_fail(s, STORE_NOTFOUND, "pairing token not found");
    }
    /* Only the hash is stored: the token handed back is the caller's. */
    int bad = !(out->security_token = strdup(security_token));
    bad |= pgc_text(r, 0, 0, &out->watch_udid) | pgc_text(r, 0, 1, &out->phone_udid);
    out->created_at = pgc_int(r, 0, 2);
    out->expires_at = pgc_int(r, 0, 3);
    out->bound_at = pgc_int(r, 0, 4);
    out->used_at = pgc_int(r, 0, 5);
    PQclear(r);
    if (bad) {
        pairing_token_free(out);
        return pg_fail_oom(s);
    }
    return STORE_OK;
}

int pg_pairing_bind_phone(store_t *base, const char *security_token, const char *watch_udid, const char *phone_udid,
                          int64_t now)
{
    pg_store *s = pgs(base);
    char digest[65];
    if (!security_token || !watch_udid || !phone_udid || !*phone_udid || token_digest(security_token, digest) != 0)
        return pg_fail_arg(s, "pairing_bind_phone");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, digest);
    pgp_text(&p, watch_udid);
    pgp_text(&p, phone_udid);
    pgp_int(&p, now);
    return write_found(s, W_TOKEN_BIND, &p, "binding pairing token",
                       "pairing token unknown, for another watch, expired, used or bound to another phone");
}

int pg_pairing_consume(store_t *base, const char *security_token, const char *watch_udid, int64_t now)
{
    pg_store *s = pgs(base);
    char digest[65];
    if (!security_token || !watch_udid || token_digest(security_token, digest) != 0)
        return pg_fail_arg(s, "pairing_consume");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, digest);
    pgp_text(&p, watch_udid);
    pgp_int(&p, now);
    return write_found(s, W_TOKEN_CONSUME, &p, "consuming pairing token",
                       "pairing token unknown, for another watch, not bound, expired or used");
}

int pg_watch_pair(store_t *base, const char *watch_udid, const char *phone_udid, int64_t now)
{
    pg_store *s = pgs(base);
    if (!watch_udid || !*watch_udid || !phone_udid || !*phone_udid)
        return pg_fail_arg(s, "watch_pair");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, watch_udid);
    pgp_text(&p, phone_udid);
    pgp_int(&p, now);
    return run(s, W_PAIR, &p, "recording watch pairing", NULL, NULL);
}

int pg_watch_pair_state(store_t *base, const char *watch_udid, const char *state, int64_t now)
{
    pg_store *s = pgs(base);
    if (!watch_udid || !state || (strcmp(state, "profile_issued") != 0 && strcmp(state, "enrolled") != 0))
        return pg_fail_arg(s, "watch_pair_state");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, watch_udid);
    pgp_text(&p, state);
    pgp_int(&p, now);
    return write_found(s, W_PAIR_STATE, &p, "updating watch pairing", "watch pairing not found");
}

static int read_pairing(const PGresult *r, int row, watch_pairing_t *p)
{
    memset(p, 0, sizeof *p);
    int bad = pgc_text(r, row, 0, &p->watch_udid) | pgc_text(r, row, 1, &p->phone_udid) |
              pgc_text(r, row, 2, &p->state);
    p->paired_at = pgc_int(r, row, 3);
    p->updated_at = pgc_int(r, row, 4);
    if (bad) {
        watch_pairing_free(p);
        return -1;
    }
    return 0;
}

int pg_watch_pairing_get(store_t *base, const char *watch_udid, watch_pairing_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!watch_udid)
        return pg_fail_arg(s, "watch_pairing_get");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, watch_udid);
    PGresult *r;
    if (run(s, W_PAIR_GET, &p, "reading watch pairing", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "watch pairing not found");
    else
        rc = read_pairing(r, 0, out) == 0 ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

int pg_phone_watches(store_t *base, const char *phone_udid, watch_pairing_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (!phone_udid)
        return pg_fail_arg(s, "phone_watches");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, phone_udid);
    PGresult *r;
    if (run(s, W_PHONE_WATCHES, &p, "listing a phone's watches", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        watch_pairing_t wp;
        if (read_pairing(r, i, &wp) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &wp) : 0;
        watch_pairing_free(&wp);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}
