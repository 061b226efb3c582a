/* SQLite backend: await configuration and settings (store.h, schema 6):
 * enrollment_set_awaiting / enrollment_awaiting on
 * enrollments.awaiting_configuration, and setting_put / get / delete on the
 * settings table (small named blobs an admin sets, e.g. the ADE setup
 * commands, and short-lived facts several instances must share). */
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"

enum { S_AWAIT_SET, S_AWAIT_GET, S_PUT, S_GET, S_DELETE, S_COUNT_ };

static const char *const sql[S_COUNT_] = {
    /* Device channels only: await configuration is a Setup Assistant state
     * of the device (user channels have their own UserConfigured flow). */
    [S_AWAIT_SET] = "UPDATE enrollments SET awaiting_configuration = ?2, updated_at = ?3"
                    " WHERE id = ?1 AND id = device_id",
    [S_AWAIT_GET] = "SELECT awaiting_configuration FROM enrollments WHERE id = ?1 AND id = device_id",
    [S_PUT] = "INSERT INTO settings (name, value, updated_at) VALUES (?1, ?2, ?3)"
              " ON CONFLICT (name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
    [S_GET] = "SELECT value FROM settings WHERE name = ?1",
    [S_DELETE] = "DELETE FROM settings WHERE name = ?1",
};

static sqlite3_stmt *prep(sq_store *s, int id)
{
    return sq_settings_stmt(s, id, sql[id]);
}

/* One bound write statement in its own durable transaction. *changes = rows
 * changed. */
static int write_one(sq_store *s, sqlite3_stmt *st, const char *what, int *changes)
{
    if (sq_exec(s, st, what, changes) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    return sq_tx_commit(s);
}

int sq_enrollment_set_awaiting(store_t *base, const char *id, int awaiting, int64_t now)
{
    sq_store *s = sq(base);
    if (!id || (awaiting != 0 && awaiting != 1))
        return sq_fail_arg(s, "enrollment_set_awaiting");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, S_AWAIT_SET);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, id) | sqlite3_bind_int(st, 2, awaiting) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "enrollment_set_awaiting"));
    int changed = 0;
    int rc = write_one(s, st, "recording await configuration", &changed);
    return rc == STORE_OK && changed == 0 ? STORE_NOTFOUND : rc;
}

int sq_enrollment_awaiting(store_t *base, const char *id, int *awaiting)
{
    sq_store *s = sq(base);
    *awaiting = 0;
    if (!id)
        return sq_fail_arg(s, "enrollment_awaiting");
    sqlite3_stmt *st = prep(s, S_AWAIT_GET);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, id) != SQLITE_OK)
        return sq_bind_failed(s, st, "enrollment_awaiting");
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW) {
        *awaiting = sqlite3_column_int(st, 0) != 0;
        result = STORE_OK;
    } else if (rc == SQLITE_DONE) {
        result = STORE_NOTFOUND;
    } else {
        result = sq_fail_db(s, "reading await configuration");
    }
    sq_stmt_release(st);
    return result;
}

int sq_setting_put(store_t *base, const char *name, const unsigned char *value, size_t len, int64_t now)
{
    sq_store *s = sq(base);
    if (!name || !*name || (!value && len))
        return sq_fail_arg(s, "setting_put");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, S_PUT);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    /* bind_blob turns a non-NULL empty buffer into an empty blob; the
     * column is NOT NULL, so an empty value needs a non-NULL pointer. */
    static const unsigned char empty[1];
    if (sq_bind_text(st, 1, name) | sq_bind_blob(st, 2, value ? value : empty, len) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "setting_put"));
    return write_one(s, st, "storing a setting", NULL);
}

int sq_setting_get(store_t *base, const char *name, unsigned char **value, size_t *len)
{
    sq_store *s = sq(base);
    *value = NULL;
    *len = 0;
    if (!name)
        return sq_fail_arg(s, "setting_get");
    sqlite3_stmt *st = prep(s, S_GET);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, name) != SQLITE_OK)
        return sq_bind_failed(s, st, "setting_get");
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW) {
        result = sq_col_blob(st, 0, value, len) == 0 && *value ? STORE_OK : sq_fail_oom(s);
    } else if (rc == SQLITE_DONE) {
        result = STORE_NOTFOUND;
    } else {
        result = sq_fail_db(s, "reading a setting");
    }
    sq_stmt_release(st);
    return result;
}

int sq_setting_delete(store_t *base, const char *name)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "setting_delete");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, S_DELETE);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, name) != SQLITE_OK)
        return sq_tx_abort(s, sq_bind_failed(s, st, "setting_delete"));
    int changed = 0;
    int rc = write_one(s, st, "deleting a setting", &changed);
    return rc == STORE_OK && changed == 0 ? STORE_NOTFOUND : rc;
}
