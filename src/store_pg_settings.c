/* PostgreSQL backend: await configuration (the flag a device's TokenUpdate
 * raises while Setup Assistant waits for DeviceConfigured) and settings,
 * the small named blobs an admin sets through the API (store.h, schema 6).
 * Each operation is one statement. */
#include <stdlib.h>
#include <string.h>

#include "store_pg_internal.h"

enum {
    S_AWAITING_SET = PG_ST_SETTINGS,
    S_AWAITING_GET,
    S_PUT,
    S_GET,
    S_DELETE,
    S_COUNT_
};

_Static_assert((int)S_COUNT_ <= (int)PG_ST_MAX, "statement ids overlap");

static const char *const sql[] = {
    /* Device channels only: await configuration is a Setup Assistant state
     * of the device (user channels have their own UserConfigured flow). */
    [S_AWAITING_SET - PG_ST_SETTINGS] = "UPDATE enrollments SET awaiting_configuration = $2::boolean,"
                                        " updated_at = $3::bigint WHERE id = $1::text AND id = device_id",
    [S_AWAITING_GET - PG_ST_SETTINGS] = "SELECT awaiting_configuration FROM enrollments"
                                        " WHERE id = $1::text AND id = device_id",
    [S_PUT - PG_ST_SETTINGS] = "INSERT INTO settings (name, value, updated_at) VALUES ($1::text, $2::bytea, $3::bigint)"
                               " ON CONFLICT (name) DO UPDATE SET value = excluded.value,"
                               "  updated_at = excluded.updated_at",
    [S_GET - PG_ST_SETTINGS] = "SELECT value FROM settings WHERE name = $1::text",
    [S_DELETE - PG_ST_SETTINGS] = "DELETE FROM settings WHERE name = $1::text",
};

static int run(pg_store *s, int id, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    return pg_run(s, id, sql[id - PG_ST_SETTINGS], p, what, res, rows);
}

int pg_enrollment_set_awaiting(store_t *base, const char *id, int awaiting, int64_t now)
{
    pg_store *s = pgs(base);
    if (!id || (awaiting != 0 && awaiting != 1))
        return pg_fail_arg(s, "enrollment_set_awaiting");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_bool(&p, awaiting);
    pgp_int(&p, now);
    int rows = 0;
    if (run(s, S_AWAITING_SET, &p, "recording await configuration", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "device enrollment not found");
}

int pg_enrollment_awaiting(store_t *base, const char *id, int *awaiting)
{
    pg_store *s = pgs(base);
    if (awaiting)
        *awaiting = 0;
    if (!id || !awaiting)
        return pg_fail_arg(s, "enrollment_awaiting");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    if (run(s, S_AWAITING_GET, &p, "reading await configuration", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "device enrollment not found");
    else
        *awaiting = pgc_int(r, 0, 0) != 0;
    PQclear(r);
    return rc;
}

int pg_setting_put(store_t *base, const char *name, const unsigned char *value, size_t len, int64_t now)
{
    pg_store *s = pgs(base);
    if (!name || !*name || (!value && len > 0))
        return pg_fail_arg(s, "setting_put");
    static const unsigned char empty[1];
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    pgp_blob(&p, value ? value : empty, len); /* an empty value is a value, not NULL */
    pgp_int(&p, now);
    return run(s, S_PUT, &p, "storing setting", NULL, NULL);
}

int pg_setting_get(store_t *base, const char *name, unsigned char **value, size_t *len)
{
    pg_store *s = pgs(base);
    if (value)
        *value = NULL;
    if (len)
        *len = 0;
    if (!name || !value || !len)
        return pg_fail_arg(s, "setting_get");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    PGresult *r;
    if (run(s, S_GET, &p, "reading setting", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "setting not found");
    else if (pgc_blob(r, 0, 0, value, len) != 0)
        rc = pg_fail_oom(s);
    PQclear(r);
    return rc;
}

int pg_setting_delete(store_t *base, const char *name)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "setting_delete");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    int rows = 0;
    if (run(s, S_DELETE, &p, "deleting setting", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "setting not found");
}
