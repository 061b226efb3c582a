/* SQLite backend: Automated Device Enrollment (store.h, schema 6): server
 * tokens with their sync state, the devices Apple's fetch/sync services
 * report, and the profiles orchard defined. Credentials arrive sealed by the
 * caller (seal.c); this file stores the bytes and never interprets them. */
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"

enum {
    A_TOKEN_INSERT,
    A_TOKEN_GET,
    A_TOKEN_LIST,
    A_TOKEN_DELETE,
    A_TOKEN_DEVICES_DELETE,
    A_TOKEN_PROFILES_DELETE,
    A_TOKEN_OK,
    A_TOKEN_FAILED,
    A_TOKEN_ACCOUNT,
    A_TOKEN_DEFAULT,
    A_TOKEN_RESET,
    A_DEVICE_STATE,
    A_DEVICE_UPSERT,
    A_DEVICE_DELETED,
    A_DEVICE_GET,
    A_DEVICE_LIST_TOKEN,
    A_DEVICE_LIST_ALL,
    A_DEVICE_PROFILE,
    A_PROFILE_PUT,
    A_PROFILE_GET,
    A_PROFILE_LIST_TOKEN,
    A_PROFILE_LIST_ALL,
    A_COUNT_
};

#define TOKEN_COLUMNS                                                                                          \
    "name, sealed, access_token_expiry, server_name, server_uuid, org_name, default_profile_uuid, cursor, "   \
    "cursor_at, last_sync_at, last_error, last_error_at, imported_at, updated_at"
#define DEVICE_COLUMNS                                                                                         \
    "serial_number, token_name, model, description, color, asset_tag, device_family, os, profile_status, "    \
    "profile_uuid, profile_assign_time, profile_push_time, device_assigned_date, device_assigned_by, op_type, " \
    "op_date, deleted, updated_at"
#define PROFILE_COLUMNS "profile_uuid, token_name, name, json, created_at"

static const char *const sql[A_COUNT_] = {
    /* A re-import (the yearly renewal) replaces the credentials only: the
     * cursor, account and default profile still describe the same server. */
    [A_TOKEN_INSERT] = "INSERT INTO ade_tokens (name, sealed, access_token_expiry, imported_at, updated_at)"
                       " VALUES (?1, ?2, ?3, ?4, ?4)"
                       " ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed,"
                       "  access_token_expiry = excluded.access_token_expiry, imported_at = excluded.imported_at,"
                       "  updated_at = excluded.updated_at",
    [A_TOKEN_GET] = "SELECT " TOKEN_COLUMNS " FROM ade_tokens WHERE name = ?1",
    [A_TOKEN_LIST] = "SELECT " TOKEN_COLUMNS " FROM ade_tokens ORDER BY name",
    [A_TOKEN_DELETE] = "DELETE FROM ade_tokens WHERE name = ?1",
    [A_TOKEN_DEVICES_DELETE] = "DELETE FROM ade_devices WHERE token_name = ?1",
    [A_TOKEN_PROFILES_DELETE] = "DELETE FROM ade_profiles WHERE token_name = ?1",
    [A_TOKEN_OK] = "UPDATE ade_tokens SET cursor = CASE WHEN ?2 IS NULL THEN cursor ELSE ?2 END,"
                   " cursor_at = CASE WHEN ?2 IS NULL THEN cursor_at ELSE ?3 END,"
                   " last_sync_at = ?3, last_error = NULL, updated_at = ?3 WHERE name = ?1",
    [A_TOKEN_FAILED] = "UPDATE ade_tokens SET last_error = ?2, last_error_at = ?3, updated_at = ?3 WHERE name = ?1",
    [A_TOKEN_ACCOUNT] = "UPDATE ade_tokens SET server_name = ?2, server_uuid = ?3, org_name = ?4, updated_at = ?5"
                        " WHERE name = ?1",
    [A_TOKEN_DEFAULT] = "UPDATE ade_tokens SET default_profile_uuid = ?2, updated_at = ?3 WHERE name = ?1",
    [A_TOKEN_RESET] = "UPDATE ade_tokens SET cursor = NULL, cursor_at = 0, updated_at = ?2 WHERE name = ?1",
    [A_DEVICE_STATE] = "SELECT op_date, deleted FROM ade_devices WHERE serial_number = ?1",
    /* Sync records carry "some of" the keys: an absent one keeps what is
     * known. */
    [A_DEVICE_UPSERT] =
        "INSERT INTO ade_devices (serial_number, token_name, model, description, color, asset_tag, device_family, os,"
        " profile_status, profile_uuid, profile_assign_time, profile_push_time, device_assigned_date,"
        " device_assigned_by, op_type, op_date, deleted, updated_at)"
        " VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, 0, ?17)"
        " ON CONFLICT (serial_number) DO UPDATE SET token_name = excluded.token_name,"
        "  model = COALESCE(excluded.model, model), description = COALESCE(excluded.description, description),"
        "  color = COALESCE(excluded.color, color), asset_tag = COALESCE(excluded.asset_tag, asset_tag),"
        "  device_family = COALESCE(excluded.device_family, device_family), os = COALESCE(excluded.os, os),"
        "  profile_status = COALESCE(excluded.profile_status, profile_status),"
        "  profile_uuid = COALESCE(excluded.profile_uuid, profile_uuid),"
        "  profile_assign_time = CASE WHEN excluded.profile_assign_time != 0 THEN excluded.profile_assign_time"
        "   ELSE profile_assign_time END,"
        "  profile_push_time = CASE WHEN excluded.profile_push_time != 0 THEN excluded.profile_push_time"
        "   ELSE profile_push_time END,"
        "  device_assigned_date = CASE WHEN excluded.device_assigned_date != 0 THEN excluded.device_assigned_date"
        "   ELSE device_assigned_date END,"
        "  device_assigned_by = COALESCE(excluded.device_assigned_by, device_assigned_by),"
        "  op_type = excluded.op_type, op_date = excluded.op_date, deleted = 0, updated_at = excluded.updated_at",
    /* A deletion of a device never seen is kept too: its op_date orders a
     * later duplicate "added" of the same serial. */
    [A_DEVICE_DELETED] = "INSERT INTO ade_devices (serial_number, token_name, op_type, op_date, deleted, updated_at)"
                         " VALUES (?1, ?2, 'deleted', ?3, 1, ?4)"
                         " ON CONFLICT (serial_number) DO UPDATE SET op_type = 'deleted', op_date = excluded.op_date,"
                         "  deleted = 1, updated_at = excluded.updated_at",
    [A_DEVICE_GET] = "SELECT " DEVICE_COLUMNS " FROM ade_devices WHERE serial_number = ?1",
    [A_DEVICE_LIST_TOKEN] = "SELECT " DEVICE_COLUMNS " FROM ade_devices WHERE token_name = ?1"
                            " AND (?2 OR deleted = 0) AND serial_number > ?3 ORDER BY serial_number LIMIT ?4",
    [A_DEVICE_LIST_ALL] = "SELECT " DEVICE_COLUMNS " FROM ade_devices WHERE (?2 OR deleted = 0)"
                          " AND serial_number > ?3 ORDER BY serial_number LIMIT ?4",
    [A_DEVICE_PROFILE] = "UPDATE ade_devices SET profile_uuid = ?2, profile_status = ?3,"
                         " profile_assign_time = CASE WHEN ?3 = 'assigned' THEN ?4 ELSE profile_assign_time END,"
                         " updated_at = ?4 WHERE serial_number = ?1",
    [A_PROFILE_PUT] = "INSERT OR REPLACE INTO ade_profiles (" PROFILE_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5)",
    [A_PROFILE_GET] = "SELECT " PROFILE_COLUMNS " FROM ade_profiles WHERE profile_uuid = ?1",
    [A_PROFILE_LIST_TOKEN] = "SELECT " PROFILE_COLUMNS " FROM ade_profiles WHERE token_name = ?1"
                             " ORDER BY created_at DESC, profile_uuid",
    [A_PROFILE_LIST_ALL] = "SELECT " PROFILE_COLUMNS " FROM ade_profiles ORDER BY created_at DESC, profile_uuid",
};

static sqlite3_stmt *prep(sq_store *s, int id)
{
    return sq_ade_stmt(s, id, sql[id]);
}

/* Token names appear in URLs and lease names: [A-Za-z0-9._-], 1..64. */
static int token_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return 0;
    }
    return 1;
}

static int read_token(sqlite3_stmt *st, ade_token_t *t)
{
    memset(t, 0, sizeof *t);
    int bad = sq_col_text(st, 0, &t->name);
    bad |= sq_col_blob(st, 1, &t->sealed, &t->sealed_len);
    t->access_token_expiry = sqlite3_column_int64(st, 2);
    bad |= sq_col_text(st, 3, &t->server_name);
    bad |= sq_col_text(st, 4, &t->server_uuid);
    bad |= sq_col_text(st, 5, &t->org_name);
    bad |= sq_col_text(st, 6, &t->default_profile_uuid);
    bad |= sq_col_text(st, 7, &t->cursor);
    t->cursor_at = sqlite3_column_int64(st, 8);
    t->last_sync_at = sqlite3_column_int64(st, 9);
    bad |= sq_col_text(st, 10, &t->last_error);
    t->last_error_at = sqlite3_column_int64(st, 11);
    t->imported_at = sqlite3_column_int64(st, 12);
    t->updated_at = sqlite3_column_int64(st, 13);
    if (bad) {
        ade_token_free(t);
        return -1;
    }
    return 0;
}

static int read_device(sqlite3_stmt *st, ade_device_t *d)
{
    memset(d, 0, sizeof *d);
    int bad = sq_col_text(st, 0, &d->serial_number);
    bad |= sq_col_text(st, 1, &d->token_name);
    bad |= sq_col_text(st, 2, &d->model);
    bad |= sq_col_text(st, 3, &d->description);
    bad |= sq_col_text(st, 4, &d->color);
    bad |= sq_col_text(st, 5, &d->asset_tag);
    bad |= sq_col_text(st, 6, &d->device_family);
    bad |= sq_col_text(st, 7, &d->os);
    bad |= sq_col_text(st, 8, &d->profile_status);
    bad |= sq_col_text(st, 9, &d->profile_uuid);
    d->profile_assign_time = sqlite3_column_int64(st, 10);
    d->profile_push_time = sqlite3_column_int64(st, 11);
    d->device_assigned_date = sqlite3_column_int64(st, 12);
    bad |= sq_col_text(st, 13, &d->device_assigned_by);
    bad |= sq_col_text(st, 14, &d->op_type);
    d->op_date = sqlite3_column_int64(st, 15);
    d->deleted = sqlite3_column_int(st, 16) != 0;
    d->updated_at = sqlite3_column_int64(st, 17);
    if (bad) {
        ade_device_free(d);
        return -1;
    }
    return 0;
}

static int read_profile(sqlite3_stmt *st, ade_profile_t *p)
{
    memset(p, 0, sizeof *p);
    int bad = sq_col_text(st, 0, &p->profile_uuid);
    bad |= sq_col_text(st, 1, &p->token_name);
    bad |= sq_col_text(st, 2, &p->name);
    bad |= sq_col_text(st, 3, &p->json);
    p->created_at = sqlite3_column_int64(st, 4);
    if (bad) {
        ade_profile_free(p);
        return -1;
    }
    return 0;
}

/* Runs a bound single-row SELECT and decodes it with `read` into out. */
static int get_one(sq_store *s, sqlite3_stmt *st, int (*read)(sqlite3_stmt *, void *), void *out, const char *what)
{
    int rc = sqlite3_step(st), result;
    if (rc == SQLITE_ROW)
        result = read(st, out) == 0 ? STORE_OK : sq_fail_oom(s);
    else if (rc == SQLITE_DONE)
        result = STORE_NOTFOUND;
    else
        result = sq_fail_db(s, what);
    sq_stmt_release(st);
    return result;
}

static int read_token_v(sqlite3_stmt *st, void *out)
{
    return read_token(st, out);
}

static int read_device_v(sqlite3_stmt *st, void *out)
{
    return read_device(st, out);
}

static int read_profile_v(sqlite3_stmt *st, void *out)
{
    return read_profile(st, out);
}

/* One bound write statement in its own transaction; STORE_NOTFOUND when it
 * changed no row. */
static int write_one(sq_store *s, sqlite3_stmt *st, const char *what)
{
    int changed = 0;
    if (sq_exec(s, st, what, &changed) != STORE_OK)
        return sq_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return sq_tx_abort(s, STORE_NOTFOUND);
    return sq_tx_commit(s);
}

int sq_ade_token_put(store_t *base, const ade_token_t *t, int64_t now)
{
    sq_store *s = sq(base);
    if (!t || !token_name_ok(t->name) || !t->sealed || t->sealed_len == 0)
        return sq_fail_arg(s, "ade_token_put");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, A_TOKEN_INSERT);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, t->name) | sq_bind_blob(st, 2, t->sealed, t->sealed_len) |
        sqlite3_bind_int64(st, 3, t->access_token_expiry) | sqlite3_bind_int64(st, 4, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "ade_token_put"));
    return write_one(s, st, "storing ADE token");
}

int sq_ade_token_get(store_t *base, const char *name, ade_token_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!name)
        return sq_fail_arg(s, "ade_token_get");
    sqlite3_stmt *st = prep(s, A_TOKEN_GET);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, name) != SQLITE_OK)
        return sq_bind_failed(s, st, "ade_token_get");
    return get_one(s, st, read_token_v, out, "reading ADE token");
}

int sq_ade_token_list(store_t *base, ade_token_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st = prep(s, A_TOKEN_LIST);
    if (!st)
        return STORE_ERR;
    int rc, result = STORE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ade_token_t t;
        if (read_token(st, &t) != 0) {
            result = sq_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &t);
        ade_token_free(&t);
        if (stop)
            break;
    }
    if (result == STORE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = sq_fail_db(s, "listing ADE tokens");
    sq_stmt_release(st);
    return result;
}

int sq_ade_token_delete(store_t *base, const char *name)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "ade_token_delete");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    static const int order[] = {A_TOKEN_DEVICES_DELETE, A_TOKEN_PROFILES_DELETE, A_TOKEN_DELETE};
    int changed = 0;
    for (size_t i = 0; i < sizeof order / sizeof order[0]; i++) {
        sqlite3_stmt *st = prep(s, order[i]);
        if (!st)
            return sq_tx_abort(s, STORE_ERR);
        if (sq_bind_text(st, 1, name) != SQLITE_OK)
            return sq_tx_abort(s, sq_bind_failed(s, st, "ade_token_delete"));
        if (sq_exec(s, st, "deleting ADE token", &changed) != STORE_OK)
            return sq_tx_abort(s, STORE_ERR);
    }
    if (changed == 0) /* the token row itself, deleted last */
        return sq_tx_abort(s, STORE_NOTFOUND);
    return sq_tx_commit(s);
}

int sq_ade_token_sync_state(store_t *base, const char *name, const char *cursor, const char *error, int64_t now)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "ade_token_sync_state");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, error ? A_TOKEN_FAILED : A_TOKEN_OK);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, name) | sq_bind_text(st, 2, error ? error : cursor) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "ade_token_sync_state"));
    return write_one(s, st, "recording ADE sync state");
}

int sq_ade_token_set_account(store_t *base, const char *name, const char *server_name, const char *server_uuid,
                             const char *org_name, int64_t now)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "ade_token_set_account");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, A_TOKEN_ACCOUNT);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, name) | sq_bind_text(st, 2, server_name) | sq_bind_text(st, 3, server_uuid) |
        sq_bind_text(st, 4, org_name) | sqlite3_bind_int64(st, 5, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "ade_token_set_account"));
    return write_one(s, st, "recording ADE account");
}

int sq_ade_token_set_default_profile(store_t *base, const char *name, const char *profile_uuid, int64_t now)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "ade_token_set_default_profile");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, A_TOKEN_DEFAULT);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, name) | sq_bind_text(st, 2, profile_uuid) | sqlite3_bind_int64(st, 3, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "ade_token_set_default_profile"));
    return write_one(s, st, "setting ADE default profile");
}

int sq_ade_token_reset_cursor(store_t *base, const char *name, int64_t now)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "ade_token_reset_cursor");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, A_TOKEN_RESET);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, name) | sqlite3_bind_int64(st, 2, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "ade_token_reset_cursor"));
    return write_one(s, st, "resetting ADE cursor");
}

/* Applies one record inside the open transaction. *changed / *added report
 * what it did. */
static int apply_one(sq_store *s, const ade_device_t *d, int64_t now, int *changed, int *added)
{
    *changed = *added = 0;
    int deleted = d->op_type && strcmp(d->op_type, "deleted") == 0;
    const char *op = d->op_type ? d->op_type : "added";
    int64_t op_date = d->op_type ? d->op_date : d->device_assigned_date;

    sqlite3_stmt *st = prep(s, A_DEVICE_STATE);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, d->serial_number) != SQLITE_OK)
        return sq_bind_failed(s, st, "ade_devices_apply");
    int rc = sqlite3_step(st), exists = 0, was_deleted = 0;
    int64_t stored_date = 0;
    if (rc == SQLITE_ROW) {
        exists = 1;
        stored_date = sqlite3_column_int64(st, 0);
        was_deleted = sqlite3_column_int(st, 1) != 0;
    } else if (rc != SQLITE_DONE) {
        int r = sq_fail_db(s, "reading ADE device");
        sq_stmt_release(st);
        return r;
    }
    sq_stmt_release(st);
    /* Apple may report a device more than once: an older operation than the
     * one already applied is history, not news. */
    if (exists && op_date < stored_date)
        return STORE_OK;

    if (deleted) {
        if (!(st = prep(s, A_DEVICE_DELETED)))
            return STORE_ERR;
        if (sq_bind_text(st, 1, d->serial_number) | sq_bind_text(st, 2, d->token_name) |
            sqlite3_bind_int64(st, 3, op_date) | sqlite3_bind_int64(st, 4, now))
            return sq_bind_failed(s, st, "ade_devices_apply");
    } else {
        if (!(st = prep(s, A_DEVICE_UPSERT)))
            return STORE_ERR;
        if (sq_bind_text(st, 1, d->serial_number) | sq_bind_text(st, 2, d->token_name) |
            sq_bind_text(st, 3, d->model) | sq_bind_text(st, 4, d->description) | sq_bind_text(st, 5, d->color) |
            sq_bind_text(st, 6, d->asset_tag) | sq_bind_text(st, 7, d->device_family) | sq_bind_text(st, 8, d->os) |
            sq_bind_text(st, 9, d->profile_status) | sq_bind_text(st, 10, d->profile_uuid) |
            sqlite3_bind_int64(st, 11, d->profile_assign_time) | sqlite3_bind_int64(st, 12, d->profile_push_time) |
            sqlite3_bind_int64(st, 13, d->device_assigned_date) | sq_bind_text(st, 14, d->device_assigned_by) |
            sq_bind_text(st, 15, op) | sqlite3_bind_int64(st, 16, op_date) | sqlite3_bind_int64(st, 17, now))
            return sq_bind_failed(s, st, "ade_devices_apply");
        *added = !exists || was_deleted;
    }
    if (sq_exec(s, st, "applying ADE device", NULL) != STORE_OK)
        return STORE_ERR;
    *changed = 1;
    return STORE_OK;
}

int sq_ade_devices_apply(store_t *base, const ade_device_t *d, size_t n, int64_t now, int *applied, size_t *added)
{
    sq_store *s = sq(base);
    if (added)
        *added = 0;
    if (!d && n > 0)
        return sq_fail_arg(s, "ade_devices_apply");
    for (size_t i = 0; i < n; i++)
        if (!d[i].serial_number || !*d[i].serial_number || !d[i].token_name)
            return sq_fail_arg(s, "ade_devices_apply");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int changed = 0, new_one = 0;
        if (apply_one(s, &d[i], now, &changed, &new_one) != STORE_OK)
            return sq_tx_abort(s, STORE_ERR);
        if (applied)
            applied[i] = changed;
        count += (size_t)new_one;
    }
    int rc = sq_tx_commit(s);
    if (rc == STORE_OK && added)
        *added = count;
    return rc;
}

int sq_ade_device_get(store_t *base, const char *serial, ade_device_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!serial)
        return sq_fail_arg(s, "ade_device_get");
    sqlite3_stmt *st = prep(s, A_DEVICE_GET);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, serial) != SQLITE_OK)
        return sq_bind_failed(s, st, "ade_device_get");
    return get_one(s, st, read_device_v, out, "reading ADE device");
}

int sq_ade_device_list(store_t *base, const char *token_name, int include_deleted, const char *after, int limit,
                       ade_device_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (limit < 1 || limit > 1000 || !cb)
        return sq_fail_arg(s, "ade_device_list");
    sqlite3_stmt *st = prep(s, token_name ? A_DEVICE_LIST_TOKEN : A_DEVICE_LIST_ALL);
    if (!st)
        return STORE_ERR;
    if ((token_name ? sq_bind_text(st, 1, token_name) : SQLITE_OK) | sqlite3_bind_int(st, 2, include_deleted != 0) |
        sq_bind_text(st, 3, after ? after : "") | sqlite3_bind_int(st, 4, limit))
        return sq_bind_failed(s, st, "ade_device_list");
    int rc, result = STORE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ade_device_t d;
        if (read_device(st, &d) != 0) {
            result = sq_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &d);
        ade_device_free(&d);
        if (stop)
            break;
    }
    if (result == STORE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = sq_fail_db(s, "listing ADE devices");
    sq_stmt_release(st);
    return result;
}

int sq_ade_device_set_profile(store_t *base, const char *serial, const char *profile_uuid, const char *status,
                              int64_t now)
{
    sq_store *s = sq(base);
    if (!serial || !status)
        return sq_fail_arg(s, "ade_device_set_profile");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, A_DEVICE_PROFILE);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, serial) | sq_bind_text(st, 2, profile_uuid) | sq_bind_text(st, 3, status) |
        sqlite3_bind_int64(st, 4, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "ade_device_set_profile"));
    return write_one(s, st, "recording ADE device profile");
}

int sq_ade_profile_put(store_t *base, const ade_profile_t *p)
{
    sq_store *s = sq(base);
    if (!p || !p->profile_uuid || !*p->profile_uuid || !p->token_name || !p->json)
        return sq_fail_arg(s, "ade_profile_put");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep(s, A_PROFILE_PUT);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sq_bind_text(st, 1, p->profile_uuid) | sq_bind_text(st, 2, p->token_name) | sq_bind_text(st, 3, p->name) |
        sq_bind_text(st, 4, p->json) | sqlite3_bind_int64(st, 5, p->created_at))
        return sq_tx_abort(s, sq_bind_failed(s, st, "ade_profile_put"));
    return write_one(s, st, "storing ADE profile");
}

int sq_ade_profile_get(store_t *base, const char *profile_uuid, ade_profile_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!profile_uuid)
        return sq_fail_arg(s, "ade_profile_get");
    sqlite3_stmt *st = prep(s, A_PROFILE_GET);
    if (!st)
        return STORE_ERR;
    if (sq_bind_text(st, 1, profile_uuid) != SQLITE_OK)
        return sq_bind_failed(s, st, "ade_profile_get");
    return get_one(s, st, read_profile_v, out, "reading ADE profile");
}

int sq_ade_profile_list(store_t *base, const char *token_name, ade_profile_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (!cb)
        return sq_fail_arg(s, "ade_profile_list");
    sqlite3_stmt *st = prep(s, token_name ? A_PROFILE_LIST_TOKEN : A_PROFILE_LIST_ALL);
    if (!st)
        return STORE_ERR;
    if (token_name && sq_bind_text(st, 1, token_name) != SQLITE_OK)
        return sq_bind_failed(s, st, "ade_profile_list");
    int rc, result = STORE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ade_profile_t p;
        if (read_profile(st, &p) != 0) {
            result = sq_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &p);
        ade_profile_free(&p);
        if (stop)
            break;
    }
    if (result == STORE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = sq_fail_db(s, "listing ADE profiles");
    sq_stmt_release(st);
    return result;
}
