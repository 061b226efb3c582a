/* PostgreSQL backend: certificates issued by the SCEP CA, one-time SCEP
 * challenges and the admission list (store.h, "Issued certificates"); the
 * semantics of store_sqlite_enroll.c. Each write and its event are one
 * statement, and "at most once" writes (revocation, consuming a challenge)
 * are conditional updates, which a concurrent second attempt re-checks after
 * the first commits. */
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

#include "store_pg_internal.h"
#include "util.h"

enum {
    E_CERT_ADD = PG_ST_ENROLL,
    E_CERT_GET,
    E_CERT_BY_SHA,
    E_CERT_LIST,
    E_CERT_REVOKE,
    E_CH_ADD,
    E_CH_CONSUME,
    E_ALLOW,
    E_DISALLOW,
    E_ALLOWED,
    E_COUNT_
};

_Static_assert((int)E_COUNT_ <= (int)PG_ST_PUSH, "statement ids overlap");

#define CERT_COLUMNS "serial, subject, enrollment_id, sha256, not_before, not_after, issued_at, revoked_at"

static const char *const sql[] = {
    /* No row: the serial (or the fingerprint) exists already. */
    [E_CERT_ADD - PG_ST_ENROLL] =
        "WITH c AS ("
        "  INSERT INTO issued_certs (" CERT_COLUMNS ")"
        "  VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint, $6::bigint, $7::bigint, 0)"
        "  ON CONFLICT DO NOTHING RETURNING 1)"
        " INSERT INTO events (at, enrollment_id, kind, detail)"
        " SELECT $7::bigint, $3::text, 'cert_issued', '{\"serial\":' || orchard_json_str($1::text) ||"
        "  ',\"subject\":' || orchard_json_str($2::text) || ',\"not_after\":' || $6::bigint || '}'"
        " FROM c",
    [E_CERT_GET - PG_ST_ENROLL] = "SELECT " CERT_COLUMNS " FROM issued_certs WHERE serial = $1::text",
    [E_CERT_BY_SHA - PG_ST_ENROLL] = "SELECT " CERT_COLUMNS " FROM issued_certs WHERE sha256 = $1::text",
    /* $2 > 0 restricts to unrevoked certificates expiring before it. */
    [E_CERT_LIST - PG_ST_ENROLL] = "SELECT " CERT_COLUMNS " FROM issued_certs"
                                   " WHERE ($1::text IS NULL OR enrollment_id = $1::text)"
                                   "   AND ($2::bigint = 0 OR (revoked_at = 0 AND not_after < $2::bigint))"
                                   " ORDER BY not_after, serial LIMIT $3::integer",
    [E_CERT_REVOKE - PG_ST_ENROLL] =
        "WITH r AS ("
        "  UPDATE issued_certs SET revoked_at = $2::bigint WHERE serial = $1::text AND revoked_at = 0"
        "  RETURNING enrollment_id)"
        " INSERT INTO events (at, enrollment_id, kind, detail)"
        " SELECT $2::bigint, enrollment_id, 'cert_revoked', '{\"serial\":' || orchard_json_str($1::text) || '}'"
        " FROM r",
    /* Challenges expired for a day are of no further use, even for audit;
     * they are purged as new ones are added. No row: the digest exists. */
    [E_CH_ADD - PG_ST_ENROLL] =
        "WITH purge AS (DELETE FROM scep_challenges WHERE expires_at < $3::bigint - 86400)"
        " INSERT INTO scep_challenges (digest, enrollment_id, created_at, expires_at)"
        " VALUES ($1::text, $2::text, $3::bigint, $4::bigint) ON CONFLICT DO NOTHING",
    [E_CH_CONSUME - PG_ST_ENROLL] = "UPDATE scep_challenges SET used_at = $2::bigint"
                                    " WHERE digest = $1::text AND used_at = 0 AND expires_at > $2::bigint"
                                    " RETURNING enrollment_id",
    [E_ALLOW - PG_ST_ENROLL] = "INSERT INTO admission (value, added_at) VALUES ($1::text, $2::bigint)"
                               " ON CONFLICT (value) DO NOTHING",
    [E_DISALLOW - PG_ST_ENROLL] = "DELETE FROM admission WHERE value = $1::text",
    [E_ALLOWED - PG_ST_ENROLL] = "SELECT 1 FROM admission WHERE value = $1::text OR value = $2::text LIMIT 1",
};

static int run(pg_store *s, int id, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    return pg_run(s, id, sql[id - PG_ST_ENROLL], p, what, res, rows);
}

static int decode_cert(const PGresult *r, int row, issued_cert_t *c)
{
    memset(c, 0, sizeof *c);
    int bad = pgc_text(r, row, 0, &c->serial) | pgc_text(r, row, 1, &c->subject) |
              pgc_text(r, row, 2, &c->enrollment_id) | pgc_text(r, row, 3, &c->sha256);
    c->not_before = pgc_int(r, row, 4);
    c->not_after = pgc_int(r, row, 5);
    c->issued_at = pgc_int(r, row, 6);
    c->revoked_at = pgc_int(r, row, 7);
    if (bad) {
        issued_cert_free(c);
        return -1;
    }
    return 0;
}

int pg_cert_add(store_t *base, const issued_cert_t *c)
{
    pg_store *s = pgs(base);
    if (!c || !c->serial || !c->subject || !c->sha256)
        return pg_fail_arg(s, "cert_add");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, c->serial);
    pgp_text(&p, c->subject);
    pgp_text(&p, c->enrollment_id);
    pgp_text(&p, c->sha256);
    pgp_int(&p, c->not_before);
    pgp_int(&p, c->not_after);
    pgp_int(&p, c->issued_at);
    int rows = 0;
    if (run(s, E_CERT_ADD, &p, "recording issued certificate", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_CONFLICT, "certificate serial %s (or its fingerprint) exists", c->serial);
}

static int get_one(pg_store *s, int id, const char *key, issued_cert_t *out)
{
    memset(out, 0, sizeof *out);
    if (!key)
        return pg_fail_arg(s, "cert lookup");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, key);
    PGresult *r;
    if (run(s, id, &p, "reading issued certificate", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "certificate not found");
    else
        rc = decode_cert(r, 0, out) == 0 ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

int pg_cert_get(store_t *base, const char *serial, issued_cert_t *out)
{
    return get_one(pgs(base), E_CERT_GET, serial, out);
}

int pg_cert_by_sha256(store_t *base, const char *sha256, issued_cert_t *out)
{
    return get_one(pgs(base), E_CERT_BY_SHA, sha256, out);
}

int pg_cert_list(store_t *base, const char *enrollment_id, int64_t expiring_before, int limit, issued_cert_cb cb,
                 void *ctx)
{
    pg_store *s = pgs(base);
    if (!cb)
        return pg_fail_arg(s, "cert_list");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, enrollment_id);
    pgp_int(&p, expiring_before > 0 ? expiring_before : 0);
    pgp_int(&p, pg_clamp_limit(limit));
    PGresult *r;
    if (run(s, E_CERT_LIST, &p, "listing issued certificates", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        issued_cert_t c;
        if (decode_cert(r, i, &c) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &c);
        issued_cert_free(&c);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

int pg_cert_revoke(store_t *base, const char *serial, int64_t now)
{
    pg_store *s = pgs(base);
    if (!serial)
        return pg_fail_arg(s, "cert_revoke");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, serial);
    pgp_int(&p, now);
    int rows = 0;
    if (run(s, E_CERT_REVOKE, &p, "revoking certificate", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "certificate %s unknown or already revoked", serial);
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

int pg_challenge_add(store_t *base, const char *challenge, const char *enrollment_id, int64_t expires_at,
                     int64_t now)
{
    pg_store *s = pgs(base);
    char digest[65];
    if (!challenge || !*challenge || challenge_digest(challenge, digest) != 0)
        return pg_fail_arg(s, "challenge_add");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, digest);
    pgp_text(&p, enrollment_id);
    pgp_int(&p, now);
    pgp_int(&p, expires_at);
    int rows = 0;
    if (run(s, E_CH_ADD, &p, "storing challenge", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_CONFLICT, "storing challenge: it exists already");
}

int pg_challenge_consume(store_t *base, const char *challenge, int64_t now, char **enrollment_id)
{
    pg_store *s = pgs(base);
    if (enrollment_id)
        *enrollment_id = NULL;
    char digest[65];
    if (!challenge || challenge_digest(challenge, digest) != 0)
        return pg_fail_arg(s, "challenge_consume");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, digest);
    pgp_int(&p, now);
    PGresult *r;
    if (run(s, E_CH_CONSUME, &p, "consuming challenge", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "challenge unknown, used or expired");
    else if (enrollment_id && pgc_text(r, 0, 0, enrollment_id) != 0)
        rc = pg_fail_oom(s);
    PQclear(r);
    return rc;
}

int pg_device_allow(store_t *base, const char *serial_or_udid, int64_t now)
{
    pg_store *s = pgs(base);
    if (!serial_or_udid || !*serial_or_udid)
        return pg_fail_arg(s, "admission");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, serial_or_udid);
    pgp_int(&p, now);
    return run(s, E_ALLOW, &p, "updating the admission list", NULL, NULL);
}

int pg_device_disallow(store_t *base, const char *serial_or_udid)
{
    pg_store *s = pgs(base);
    if (!serial_or_udid || !*serial_or_udid)
        return pg_fail_arg(s, "admission");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, serial_or_udid);
    int rows = 0;
    if (run(s, E_DISALLOW, &p, "updating the admission list", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "%s is not on the admission list", serial_or_udid);
}

int pg_device_allowed(store_t *base, const char *udid, const char *serial)
{
    pg_store *s = pgs(base);
    if (!udid && !serial)
        return STORE_NOTFOUND;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, udid ? udid : serial);
    pgp_text(&p, serial ? serial : udid);
    int rows = 0;
    if (run(s, E_ALLOWED, &p, "checking the admission list", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : STORE_NOTFOUND;
}
