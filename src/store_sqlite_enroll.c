/* SQLite backend: certificates issued by the SCEP CA, one-time SCEP
 * challenges and the admission list (store.h, "Issued certificates"). */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store_sqlite_internal.h"
#include "util.h"

enum {
    E_CERT_ADD,
    E_CERT_EVENT,
    E_CERT_GET,
    E_CERT_BY_SHA,
    E_CERT_LIST,
    E_CERT_REVOKE,
    E_REVOKE_EVENT,
    E_CH_PURGE,
    E_CH_ADD,
    E_CH_CONSUME,
    E_ALLOW,
    E_DISALLOW,
    E_ALLOWED,
};

#define CERT_COLUMNS "serial, subject, enrollment_id, sha256, not_before, not_after, issued_at, revoked_at"

static const char *const sql[] = {
    [E_CERT_ADD] = "INSERT INTO issued_certs (" CERT_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0)",
    [E_CERT_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                     " VALUES (?1, ?2, 'cert_issued', json_object('serial', ?3, 'subject', ?4, 'not_after', ?5))",
    [E_CERT_GET] = "SELECT " CERT_COLUMNS " FROM issued_certs WHERE serial = ?1",
    [E_CERT_BY_SHA] = "SELECT " CERT_COLUMNS " FROM issued_certs WHERE sha256 = ?1",
    /* ?2 > 0 restricts to unrevoked certificates expiring before it. */
    [E_CERT_LIST] = "SELECT " CERT_COLUMNS " FROM issued_certs"
                    " WHERE (?1 IS NULL OR enrollment_id = ?1)"
                    "   AND (?2 = 0 OR (revoked_at = 0 AND not_after < ?2))"
                    " ORDER BY not_after, serial LIMIT ?3",
    [E_CERT_REVOKE] = "UPDATE issued_certs SET revoked_at = ?2 WHERE serial = ?1 AND revoked_at = 0"
                      " RETURNING enrollment_id",
    [E_REVOKE_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                       " VALUES (?1, ?2, 'cert_revoked', json_object('serial', ?3))",
    /* Challenges expired for a day are of no further use, even for audit. */
    [E_CH_PURGE] = "DELETE FROM scep_challenges WHERE expires_at < ?1 - 86400",
    [E_CH_ADD] = "INSERT INTO scep_challenges (digest, enrollment_id, created_at, expires_at) VALUES (?1, ?2, ?3, ?4)",
    [E_CH_CONSUME] = "UPDATE scep_challenges SET used_at = ?2"
                     " WHERE digest = ?1 AND used_at = 0 AND expires_at > ?2 RETURNING enrollment_id",
    [E_ALLOW] = "INSERT INTO admission (value, added_at) VALUES (?1, ?2) ON CONFLICT (value) DO NOTHING",
    [E_DISALLOW] = "DELETE FROM admission WHERE value = ?1",
    [E_ALLOWED] = "SELECT 1 FROM admission WHERE value = ?1 OR value = ?2 LIMIT 1",
};

static sqlite3_stmt *st_get(sq_store *s, int id)
{
    return sq_enroll_stmt(s, id, sql[id]);
}

static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static char *col_dup(sqlite3_stmt *st, int i, int *oom)
{
    const unsigned char *v = sqlite3_column_text(st, i);
    if (!v)
        return NULL;
    char *d = strdup((const char *)v);
    if (!d)
        *oom = 1;
    return d;
}

static int decode_cert(sqlite3_stmt *st, issued_cert_t *c)
{
    int oom = 0;
    memset(c, 0, sizeof *c);
    c->serial = col_dup(st, 0, &oom);
    c->subject = col_dup(st, 1, &oom);
    c->enrollment_id = col_dup(st, 2, &oom);
    c->sha256 = col_dup(st, 3, &oom);
    c->not_before = sqlite3_column_int64(st, 4);
    c->not_after = sqlite3_column_int64(st, 5);
    c->issued_at = sqlite3_column_int64(st, 6);
    c->revoked_at = sqlite3_column_int64(st, 7);
    if (oom) {
        issued_cert_free(c);
        return -1;
    }
    return 0;
}

/* Steps a statement that returns no rows and makes it reusable. */
static int step_done(sq_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    int ok = rc == SQLITE_DONE;
    if (!ok)
        sq_fail_db(s, what);
    sq_stmt_release(st);
    return ok ? STORE_OK : STORE_ERR;
}

int sq_cert_add(store_t *base, const issued_cert_t *c)
{
    sq_store *s = sq(base);
    if (!c || !c->serial || !c->subject || !c->sha256)
        return sq_fail_arg(s, "cert_add");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = st_get(s, E_CERT_ADD);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    bind_text(st, 1, c->serial);
    bind_text(st, 2, c->subject);
    bind_text(st, 3, c->enrollment_id);
    bind_text(st, 4, c->sha256);
    sqlite3_bind_int64(st, 5, c->not_before);
    sqlite3_bind_int64(st, 6, c->not_after);
    sqlite3_bind_int64(st, 7, c->issued_at);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        int conflict = (sqlite3_extended_errcode(sq_db(s)) & 0xff) == SQLITE_CONSTRAINT;
        sq_fail_db(s, "recording issued certificate");
        sq_stmt_release(st);
        return sq_tx_abort(s, conflict ? STORE_CONFLICT : STORE_ERR);
    }
    sq_stmt_release(st);
    st = st_get(s, E_CERT_EVENT);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    sqlite3_bind_int64(st, 1, c->issued_at);
    bind_text(st, 2, c->enrollment_id);
    bind_text(st, 3, c->serial);
    bind_text(st, 4, c->subject);
    sqlite3_bind_int64(st, 5, c->not_after);
    if (step_done(s, st, "logging issued certificate") != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    return sq_tx_commit(s);
}

static int get_one(sq_store *s, int id, const char *key, issued_cert_t *out)
{
    memset(out, 0, sizeof *out);
    if (!key)
        return sq_fail_arg(s, "cert lookup");
    sqlite3_stmt *st = st_get(s, id);
    if (!st)
        return STORE_ERR;
    bind_text(st, 1, key);
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW)
        result = decode_cert(st, out) == 0 ? STORE_OK : sq_fail_oom(s);
    else if (rc == SQLITE_DONE)
        result = STORE_NOTFOUND;
    else
        result = sq_fail_db(s, "reading issued certificate");
    sq_stmt_release(st);
    return result;
}

int sq_cert_get(store_t *base, const char *serial, issued_cert_t *out)
{
    return get_one(sq(base), E_CERT_GET, serial, out);
}

int sq_cert_by_sha256(store_t *base, const char *sha256, issued_cert_t *out)
{
    return get_one(sq(base), E_CERT_BY_SHA, sha256, out);
}

int sq_cert_list(store_t *base, const char *enrollment_id, int64_t expiring_before, int limit, issued_cert_cb cb,
                 void *ctx)
{
    sq_store *s = sq(base);
    if (!cb)
        return sq_fail_arg(s, "cert_list");
    sqlite3_stmt *st = st_get(s, E_CERT_LIST);
    if (!st)
        return STORE_ERR;
    bind_text(st, 1, enrollment_id);
    sqlite3_bind_int64(st, 2, expiring_before > 0 ? expiring_before : 0);
    sqlite3_bind_int(st, 3, limit < 1 ? 1 : limit > 1000 ? 1000 : limit);
    int result = STORE_OK, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        issued_cert_t c;
        if (decode_cert(st, &c) != 0) {
            result = sq_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &c);
        issued_cert_free(&c);
        if (stop)
            break;
    }
    if (result == STORE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = sq_fail_db(s, "listing issued certificates");
    sq_stmt_release(st);
    return result;
}

/* Steps an UPDATE ... RETURNING of one text column inside the open
 * transaction: STORE_OK with the value (heap, NULL for SQL NULL) when a row
 * was updated, STORE_NOTFOUND when none was, STORE_ERR otherwise. */
static int step_returning(sq_store *s, sqlite3_stmt *st, const char *what, char **value)
{
    *value = NULL;
    int rc = sqlite3_step(st);
    if (rc == SQLITE_DONE) {
        sq_stmt_release(st);
        return STORE_NOTFOUND;
    }
    if (rc != SQLITE_ROW) {
        sq_fail_db(s, what);
        sq_stmt_release(st);
        return STORE_ERR;
    }
    int oom = 0;
    *value = col_dup(st, 0, &oom);
    /* RETURNING rows must be stepped to the end before the change is done. */
    while (sqlite3_step(st) == SQLITE_ROW) {
    }
    sq_stmt_release(st);
    return oom ? sq_fail_oom(s) : STORE_OK;
}

int sq_cert_revoke(store_t *base, const char *serial, int64_t now)
{
    sq_store *s = sq(base);
    if (!serial)
        return sq_fail_arg(s, "cert_revoke");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = st_get(s, E_CERT_REVOKE);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    bind_text(st, 1, serial);
    sqlite3_bind_int64(st, 2, now);
    char *enrollment = NULL;
    int rc = step_returning(s, st, "revoking certificate", &enrollment);
    if (rc != STORE_OK)
        return sq_tx_abort(s, rc);
    st = st_get(s, E_REVOKE_EVENT);
    int result = STORE_ERR;
    if (st) {
        sqlite3_bind_int64(st, 1, now);
        bind_text(st, 2, enrollment);
        bind_text(st, 3, serial);
        result = step_done(s, st, "logging revocation");
    }
    free(enrollment);
    return result == STORE_OK ? sq_tx_commit(s) : sq_tx_abort(s, STORE_ERR);
}

/* Challenges are stored as SHA-256 hex so the database never holds a usable
 * secret. */
static int challenge_digest(const char *challenge, char out[65])
{
    unsigned char md[32];
    unsigned int n = 0;
    if (EVP_Digest(challenge, strlen(challenge), md, &n, EVP_sha256(), NULL) != 1 || n != 32)
        return -1;
    util_hex(md, 32, out);
    return 0;
}

int sq_challenge_add(store_t *base, const char *challenge, const char *enrollment_id, int64_t expires_at,
                     int64_t now)
{
    sq_store *s = sq(base);
    char digest[65];
    if (!challenge || !*challenge || challenge_digest(challenge, digest) != 0)
        return sq_fail_arg(s, "challenge_add");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = st_get(s, E_CH_PURGE);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    sqlite3_bind_int64(st, 1, now);
    if (step_done(s, st, "purging expired challenges") != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    st = st_get(s, E_CH_ADD);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    bind_text(st, 1, digest);
    bind_text(st, 2, enrollment_id);
    sqlite3_bind_int64(st, 3, now);
    sqlite3_bind_int64(st, 4, expires_at);
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        int conflict = (sqlite3_extended_errcode(sq_db(s)) & 0xff) == SQLITE_CONSTRAINT;
        sq_fail_db(s, "storing challenge");
        sq_stmt_release(st);
        return sq_tx_abort(s, conflict ? STORE_CONFLICT : STORE_ERR);
    }
    sq_stmt_release(st);
    return sq_tx_commit(s);
}

int sq_challenge_consume(store_t *base, const char *challenge, int64_t now, char **enrollment_id)
{
    sq_store *s = sq(base);
    if (enrollment_id)
        *enrollment_id = NULL;
    char digest[65];
    if (!challenge || challenge_digest(challenge, digest) != 0)
        return sq_fail_arg(s, "challenge_consume");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = st_get(s, E_CH_CONSUME);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    bind_text(st, 1, digest);
    sqlite3_bind_int64(st, 2, now);
    char *bound = NULL;
    int rc = step_returning(s, st, "consuming challenge", &bound);
    if (rc != STORE_OK)
        return sq_tx_abort(s, rc);
    int result = sq_tx_commit(s);
    if (result == STORE_OK && enrollment_id)
        *enrollment_id = bound;
    else
        free(bound);
    return result;
}

static int admission_write(sq_store *s, int id, const char *value, int64_t now, int *changes)
{
    if (!value || !*value)
        return sq_fail_arg(s, "admission");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = st_get(s, id);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    bind_text(st, 1, value);
    if (id == E_ALLOW)
        sqlite3_bind_int64(st, 2, now);
    if (step_done(s, st, "updating the admission list") != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    *changes = sqlite3_changes(sq_db(s));
    return sq_tx_commit(s);
}

int sq_device_allow(store_t *base, const char *serial_or_udid, int64_t now)
{
    int changes = 0;
    return admission_write(sq(base), E_ALLOW, serial_or_udid, now, &changes);
}

int sq_device_disallow(store_t *base, const char *serial_or_udid)
{
    int changes = 0;
    int rc = admission_write(sq(base), E_DISALLOW, serial_or_udid, 0, &changes);
    return rc == STORE_OK && changes == 0 ? STORE_NOTFOUND : rc;
}

int sq_device_allowed(store_t *base, const char *udid, const char *serial)
{
    sq_store *s = sq(base);
    if (!udid && !serial)
        return STORE_NOTFOUND;
    sqlite3_stmt *st = st_get(s, E_ALLOWED);
    if (!st)
        return STORE_ERR;
    bind_text(st, 1, udid ? udid : serial);
    bind_text(st, 2, serial ? serial : udid);
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW)
        result = STORE_OK;
    else if (rc == SQLITE_DONE)
        result = STORE_NOTFOUND;
    else
        result = sq_fail_db(s, "checking the admission list");
    sq_stmt_release(st);
    return result;
}
