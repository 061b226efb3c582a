/* PostgreSQL backend: Automated Device Enrollment (store.h, schema 6): server
 * tokens with their sync state, the devices Apple's fetch/sync services
 * report, and the profiles orchard defined; the semantics of
 * store_sqlite_ade.c. Credentials arrive sealed by the caller; this file
 * stores the bytes and never interprets them.
 *
 * Several instances: ADE sync runs under a lease (one instance per token at
 * a time), but an admin's profile assignment may race with it. Applying a
 * device record locks its row (FOR UPDATE) before comparing op dates, and
 * the upsert itself only replaces an older operation, so two writers of
 * the same serial end with the newest operation whatever the order. */
#include <stdlib.h>
#include <string.h>

#include "store_pg_internal.h"

enum {
    A_TOKEN_PUT = PG_ST_ADE,
    A_TOKEN_GET,
    A_TOKEN_LIST,
    A_TOKEN_DELETE,
    A_TOKEN_OK,
    A_TOKEN_FAILED,
    A_TOKEN_ACCOUNT,
    A_TOKEN_DEFAULT,
    A_TOKEN_RESET,
    A_DEVICE_STATE,
    A_DEVICE_UPSERT,
    A_DEVICE_DELETED,
    A_DEVICE_GET,
    A_DEVICE_LIST,
    A_DEVICE_PROFILE,
    A_PROFILE_PUT,
    A_PROFILE_GET,
    A_PROFILE_LIST,
    A_COUNT_
};

_Static_assert((int)A_COUNT_ <= (int)PG_ST_SETTINGS, "statement ids overlap");

#define TOKEN_COLUMNS                                                                                          \
    "name, sealed, access_token_expiry, server_name, server_uuid, org_name, default_profile_uuid, cursor, "   \
    "cursor_at, last_sync_at, last_error, last_error_at, imported_at, updated_at"
#define DEVICE_COLUMNS                                                                                         \
    "serial_number, token_name, model, description, color, asset_tag, device_family, os, profile_status, "    \
    "profile_uuid, profile_assign_time, profile_push_time, device_assigned_date, device_assigned_by, op_type, " \
    "op_date, deleted, updated_at"
#define PROFILE_COLUMNS "profile_uuid, token_name, name, json, created_at"

static const char *const sql[] = {
    /* A re-import (the yearly renewal) replaces the credentials only: the
     * cursor, account and default profile still describe the same server. */
    [A_TOKEN_PUT - PG_ST_ADE] =
        "INSERT INTO ade_tokens (name, sealed, access_token_expiry, imported_at, updated_at)"
        " VALUES ($1::text, $2::bytea, $3::bigint, $4::bigint, $4::bigint)"
        " ON CONFLICT (name) DO UPDATE SET sealed = excluded.sealed,"
        "  access_token_expiry = excluded.access_token_expiry, imported_at = excluded.imported_at,"
        "  updated_at = excluded.updated_at",
    [A_TOKEN_GET - PG_ST_ADE] = "SELECT " TOKEN_COLUMNS " FROM ade_tokens WHERE name = $1::text",
    [A_TOKEN_LIST - PG_ST_ADE] = "SELECT " TOKEN_COLUMNS " FROM ade_tokens ORDER BY name",
    /* One statement: the token's devices and profiles go with it, and
     * only when the token exists (the row count is the token's). */
    [A_TOKEN_DELETE - PG_ST_ADE] =
        "WITH t AS (DELETE FROM ade_tokens WHERE name = $1::text RETURNING name),"
        " d AS (DELETE FROM ade_devices WHERE token_name IN (SELECT name FROM t)),"
        " p AS (DELETE FROM ade_profiles WHERE token_name IN (SELECT name FROM t))"
        " SELECT name FROM t",
    [A_TOKEN_OK - PG_ST_ADE] =
        "UPDATE ade_tokens SET cursor = COALESCE($2::text, cursor),"
        " cursor_at = CASE WHEN $2::text IS NULL THEN cursor_at ELSE $3::bigint END,"
        " last_sync_at = $3::bigint, last_error = NULL, updated_at = $3::bigint WHERE name = $1::text",
    [A_TOKEN_FAILED - PG_ST_ADE] = "UPDATE ade_tokens SET last_error = $2::text, last_error_at = $3::bigint,"
                                   " updated_at = $3::bigint WHERE name = $1::text",
    [A_TOKEN_ACCOUNT - PG_ST_ADE] = "UPDATE ade_tokens SET server_name = $2::text, server_uuid = $3::text,"
                                    " org_name = $4::text, updated_at = $5::bigint WHERE name = $1::text",
    [A_TOKEN_DEFAULT - PG_ST_ADE] = "UPDATE ade_tokens SET default_profile_uuid = $2::text, updated_at = $3::bigint"
                                    " WHERE name = $1::text",
    [A_TOKEN_RESET - PG_ST_ADE] = "UPDATE ade_tokens SET cursor = NULL, cursor_at = 0, updated_at = $2::bigint"
                                  " WHERE name = $1::text",
    [A_DEVICE_STATE - PG_ST_ADE] = "SELECT op_date, deleted FROM ade_devices WHERE serial_number = $1::text"
                                   " FOR UPDATE",
    /* Sync records carry "some of" the keys: an absent one keeps what is
     * known. The WHERE keeps a newer operation another writer stored since
     * the state was read. */
    [A_DEVICE_UPSERT - PG_ST_ADE] =
        "INSERT INTO ade_devices AS o (serial_number, token_name, model, description, color, asset_tag,"
        " device_family, os, profile_status, profile_uuid, profile_assign_time, profile_push_time,"
        " device_assigned_date, device_assigned_by, op_type, op_date, deleted, updated_at)"
        " VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::text, $7::text, $8::text, $9::text,"
        "  $10::text, $11::bigint, $12::bigint, $13::bigint, $14::text, $15::text, $16::bigint, false, $17::bigint)"
        " ON CONFLICT (serial_number) DO UPDATE SET token_name = excluded.token_name,"
        "  model = COALESCE(excluded.model, o.model), description = COALESCE(excluded.description, o.description),"
        "  color = COALESCE(excluded.color, o.color), asset_tag = COALESCE(excluded.asset_tag, o.asset_tag),"
        "  device_family = COALESCE(excluded.device_family, o.device_family), os = COALESCE(excluded.os, o.os),"
        "  profile_status = COALESCE(excluded.profile_status, o.profile_status),"
        "  profile_uuid = COALESCE(excluded.profile_uuid, o.profile_uuid),"
        "  profile_assign_time = CASE WHEN excluded.profile_assign_time <> 0 THEN excluded.profile_assign_time"
        "   ELSE o.profile_assign_time END,"
        "  profile_push_time = CASE WHEN excluded.profile_push_time <> 0 THEN excluded.profile_push_time"
        "   ELSE o.profile_push_time END,"
        "  device_assigned_date = CASE WHEN excluded.device_assigned_date <> 0 THEN excluded.device_assigned_date"
        "   ELSE o.device_assigned_date END,"
        "  device_assigned_by = COALESCE(excluded.device_assigned_by, o.device_assigned_by),"
        "  op_type = excluded.op_type, op_date = excluded.op_date, deleted = false, updated_at = excluded.updated_at"
        " WHERE o.op_date <= excluded.op_date",
    /* A deletion of a device never seen is kept too: its op_date orders a
     * later duplicate "added" of the same serial. */
    [A_DEVICE_DELETED - PG_ST_ADE] =
        "INSERT INTO ade_devices AS o (serial_number, token_name, op_type, op_date, deleted, updated_at)"
        " VALUES ($1::text, $2::text, 'deleted', $3::bigint, true, $4::bigint)"
        " ON CONFLICT (serial_number) DO UPDATE SET op_type = 'deleted', op_date = excluded.op_date,"
        "  deleted = true, updated_at = excluded.updated_at WHERE o.op_date <= excluded.op_date",
    [A_DEVICE_GET - PG_ST_ADE] = "SELECT " DEVICE_COLUMNS " FROM ade_devices WHERE serial_number = $1::text",
    [A_DEVICE_LIST - PG_ST_ADE] = "SELECT " DEVICE_COLUMNS " FROM ade_devices"
                                  " WHERE ($1::text IS NULL OR token_name = $1::text) AND ($2::boolean OR NOT deleted)"
                                  " AND serial_number > $3::text ORDER BY serial_number LIMIT $4::integer",
    [A_DEVICE_PROFILE - PG_ST_ADE] =
        "UPDATE ade_devices SET profile_uuid = $2::text, profile_status = $3::text,"
        " profile_assign_time = CASE WHEN $3::text = 'assigned' THEN $4::bigint ELSE profile_assign_time END,"
        " updated_at = $4::bigint WHERE serial_number = $1::text",
    [A_PROFILE_PUT - PG_ST_ADE] =
        "INSERT INTO ade_profiles (" PROFILE_COLUMNS ") VALUES ($1::text, $2::text, $3::text, $4::text, $5::bigint)"
        " ON CONFLICT (profile_uuid) DO UPDATE SET token_name = excluded.token_name, name = excluded.name,"
        "  json = excluded.json, created_at = excluded.created_at",
    [A_PROFILE_GET - PG_ST_ADE] = "SELECT " PROFILE_COLUMNS " FROM ade_profiles WHERE profile_uuid = $1::text",
    [A_PROFILE_LIST - PG_ST_ADE] = "SELECT " PROFILE_COLUMNS " FROM ade_profiles"
                                   " WHERE $1::text IS NULL OR token_name = $1::text"
                                   " ORDER BY created_at DESC, profile_uuid",
};

static int run(pg_store *s, int id, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    return pg_run(s, id, sql[id - PG_ST_ADE], p, what, res, rows);
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

static int read_token(const PGresult *r, int row, void *out)
{
    ade_token_t *t = out;
    memset(t, 0, sizeof *t);
    int bad = pgc_text(r, row, 0, &t->name);
    bad |= pgc_blob(r, row, 1, &t->sealed, &t->sealed_len);
    t->access_token_expiry = pgc_int(r, row, 2);
    bad |= pgc_text(r, row, 3, &t->server_name);
    bad |= pgc_text(r, row, 4, &t->server_uuid);
    bad |= pgc_text(r, row, 5, &t->org_name);
    bad |= pgc_text(r, row, 6, &t->default_profile_uuid);
    bad |= pgc_text(r, row, 7, &t->cursor);
    t->cursor_at = pgc_int(r, row, 8);
    t->last_sync_at = pgc_int(r, row, 9);
    bad |= pgc_text(r, row, 10, &t->last_error);
    t->last_error_at = pgc_int(r, row, 11);
    t->imported_at = pgc_int(r, row, 12);
    t->updated_at = pgc_int(r, row, 13);
    if (bad) {
        ade_token_free(t);
        return -1;
    }
    return 0;
}

static int read_device(const PGresult *r, int row, void *out)
{
    ade_device_t *d = out;
    memset(d, 0, sizeof *d);
    char **text_cols[] = {&d->serial_number, &d->token_name, &d->model,         &d->description, &d->color,
                          &d->asset_tag,     &d->device_family, &d->os,         &d->profile_status, &d->profile_uuid};
    int bad = 0;
    for (int i = 0; i < (int)(sizeof text_cols / sizeof text_cols[0]); i++)
        bad |= pgc_text(r, row, i, text_cols[i]);
    d->profile_assign_time = pgc_int(r, row, 10);
    d->profile_push_time = pgc_int(r, row, 11);
    d->device_assigned_date = pgc_int(r, row, 12);
    bad |= pgc_text(r, row, 13, &d->device_assigned_by);
    bad |= pgc_text(r, row, 14, &d->op_type);
    d->op_date = pgc_int(r, row, 15);
    d->deleted = pgc_int(r, row, 16) != 0;
    d->updated_at = pgc_int(r, row, 17);
    if (bad) {
        ade_device_free(d);
        return -1;
    }
    return 0;
}

static int read_profile(const PGresult *r, int row, void *out)
{
    ade_profile_t *p = out;
    memset(p, 0, sizeof *p);
    int bad = pgc_text(r, row, 0, &p->profile_uuid) | pgc_text(r, row, 1, &p->token_name) |
              pgc_text(r, row, 2, &p->name) | pgc_text(r, row, 3, &p->json);
    p->created_at = pgc_int(r, row, 4);
    if (bad) {
        ade_profile_free(p);
        return -1;
    }
    return 0;
}

/* Runs a single-row SELECT and decodes its row with `read` into out. */
static int get_one(pg_store *s, int id, const pg_params *p, int (*read)(const PGresult *, int, void *), void *out,
                   const char *what, const char *notfound)
{
    PGresult *r;
    if (run(s, id, p, what, &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "%s", notfound);
    else
        rc = read(r, 0, out) == 0 ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

/* Runs a write whose "no row changed" means STORE_NOTFOUND. */
static int write_found(pg_store *s, int id, const pg_params *p, const char *what, const char *notfound)
{
    int rows = 0;
    if (run(s, id, p, what, NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "%s", notfound);
}

int pg_ade_token_put(store_t *base, const ade_token_t *t, int64_t now)
{
    pg_store *s = pgs(base);
    if (!t || !token_name_ok(t->name) || !t->sealed || t->sealed_len == 0)
        return pg_fail_arg(s, "ade_token_put");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, t->name);
    pgp_blob(&p, t->sealed, t->sealed_len);
    pgp_int(&p, t->access_token_expiry);
    pgp_int(&p, now);
    return run(s, A_TOKEN_PUT, &p, "storing ADE token", NULL, NULL);
}

int pg_ade_token_get(store_t *base, const char *name, ade_token_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!name)
        return pg_fail_arg(s, "ade_token_get");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    return get_one(s, A_TOKEN_GET, &p, read_token, out, "reading ADE token", "ADE token not found");
}

int pg_ade_token_list(store_t *base, ade_token_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    PGresult *r;
    if (run(s, A_TOKEN_LIST, NULL, "listing ADE tokens", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        ade_token_t t;
        if (read_token(r, i, &t) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &t) : 0;
        ade_token_free(&t);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

int pg_ade_token_delete(store_t *base, const char *name)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "ade_token_delete");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    return write_found(s, A_TOKEN_DELETE, &p, "deleting ADE token", "ADE token not found");
}

int pg_ade_token_sync_state(store_t *base, const char *name, const char *cursor, const char *error, int64_t now)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "ade_token_sync_state");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    pgp_text(&p, error ? error : cursor);
    pgp_int(&p, now);
    return write_found(s, error ? A_TOKEN_FAILED : A_TOKEN_OK, &p, "recording ADE sync state", "ADE token not found");
}

int pg_ade_token_set_account(store_t *base, const char *name, const char *server_name, const char *server_uuid,
                             const char *org_name, int64_t now)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "ade_token_set_account");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    pgp_text(&p, server_name);
    pgp_text(&p, server_uuid);
    pgp_text(&p, org_name);
    pgp_int(&p, now);
    return write_found(s, A_TOKEN_ACCOUNT, &p, "recording ADE account", "ADE token not found");
}

int pg_ade_token_set_default_profile(store_t *base, const char *name, const char *profile_uuid, int64_t now)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "ade_token_set_default_profile");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    pgp_text(&p, profile_uuid);
    pgp_int(&p, now);
    return write_found(s, A_TOKEN_DEFAULT, &p, "setting ADE default profile", "ADE token not found");
}

int pg_ade_token_reset_cursor(store_t *base, const char *name, int64_t now)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "ade_token_reset_cursor");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, name);
    pgp_int(&p, now);
    return write_found(s, A_TOKEN_RESET, &p, "resetting ADE cursor", "ADE token not found");
}

/* Applies one record inside the open transaction; *changed / *added say
 * what it did. */
static int apply_one(pg_store *s, const ade_device_t *d, int64_t now, int *changed, int *added)
{
    *changed = *added = 0;
    int deleted = d->op_type && strcmp(d->op_type, "deleted") == 0;
    const char *op = d->op_type ? d->op_type : "added";
    int64_t op_date = d->op_type ? d->op_date : d->device_assigned_date;

    pg_params p;
    pgp_init(&p);
    pgp_text(&p, d->serial_number);
    PGresult *r;
    if (run(s, A_DEVICE_STATE, &p, "reading ADE device", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int exists = PQntuples(r) > 0;
    int64_t stored_date = exists ? pgc_int(r, 0, 0) : 0;
    int was_deleted = exists && pgc_int(r, 0, 1) != 0;
    PQclear(r);
    /* Apple may report a device more than once: an older operation than the
     * one already applied is history, not news. */
    if (exists && op_date < stored_date)
        return STORE_OK;

    pgp_init(&p);
    pgp_text(&p, d->serial_number);
    pgp_text(&p, d->token_name);
    int rows = 0;
    if (deleted) {
        pgp_int(&p, op_date);
        pgp_int(&p, now);
        if (run(s, A_DEVICE_DELETED, &p, "applying ADE device", NULL, &rows) != STORE_OK)
            return STORE_ERR;
    } else {
        const char *texts[] = {d->model, d->description, d->color, d->asset_tag, d->device_family, d->os,
                               d->profile_status, d->profile_uuid};
        for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
            pgp_text(&p, texts[i]);
        pgp_int(&p, d->profile_assign_time);
        pgp_int(&p, d->profile_push_time);
        pgp_int(&p, d->device_assigned_date);
        pgp_text(&p, d->device_assigned_by);
        pgp_text(&p, op);
        pgp_int(&p, op_date);
        pgp_int(&p, now);
        if (run(s, A_DEVICE_UPSERT, &p, "applying ADE device", NULL, &rows) != STORE_OK)
            return STORE_ERR;
        *added = rows > 0 && (!exists || was_deleted);
    }
    *changed = rows > 0;
    return STORE_OK;
}

int pg_ade_devices_apply(store_t *base, const ade_device_t *d, size_t n, int64_t now, int *applied, size_t *added)
{
    pg_store *s = pgs(base);
    if (added)
        *added = 0;
    if (!d && n > 0)
        return pg_fail_arg(s, "ade_devices_apply");
    for (size_t i = 0; i < n; i++)
        if (!d[i].serial_number || !*d[i].serial_number || !d[i].token_name)
            return pg_fail_arg(s, "ade_devices_apply");
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    size_t count = 0;
    for (size_t i = 0; i < n; i++) {
        int changed = 0, new_one = 0;
        if (apply_one(s, &d[i], now, &changed, &new_one) != STORE_OK)
            return pg_tx_abort(s, STORE_ERR);
        if (applied)
            applied[i] = changed;
        count += (size_t)new_one;
    }
    int rc = pg_tx_commit(s);
    if (rc == STORE_OK && added)
        *added = count;
    return rc;
}

int pg_ade_device_get(store_t *base, const char *serial, ade_device_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!serial)
        return pg_fail_arg(s, "ade_device_get");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, serial);
    return get_one(s, A_DEVICE_GET, &p, read_device, out, "reading ADE device", "ADE device not found");
}

int pg_ade_device_list(store_t *base, const char *token_name, int include_deleted, const char *after, int limit,
                       ade_device_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (limit < 1 || limit > 1000 || !cb)
        return pg_fail_arg(s, "ade_device_list");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, token_name);
    pgp_bool(&p, include_deleted != 0);
    pgp_text(&p, after ? after : "");
    pgp_int(&p, limit);
    PGresult *r;
    if (run(s, A_DEVICE_LIST, &p, "listing ADE devices", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        ade_device_t d;
        if (read_device(r, i, &d) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &d);
        ade_device_free(&d);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

int pg_ade_device_set_profile(store_t *base, const char *serial, const char *profile_uuid, const char *status,
                              int64_t now)
{
    pg_store *s = pgs(base);
    if (!serial || !status)
        return pg_fail_arg(s, "ade_device_set_profile");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, serial);
    pgp_text(&p, profile_uuid);
    pgp_text(&p, status);
    pgp_int(&p, now);
    return write_found(s, A_DEVICE_PROFILE, &p, "recording ADE device profile", "ADE device not found");
}

int pg_ade_profile_put(store_t *base, const ade_profile_t *pr)
{
    pg_store *s = pgs(base);
    if (!pr || !pr->profile_uuid || !*pr->profile_uuid || !pr->token_name || !pr->json)
        return pg_fail_arg(s, "ade_profile_put");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, pr->profile_uuid);
    pgp_text(&p, pr->token_name);
    pgp_text(&p, pr->name);
    pgp_text(&p, pr->json);
    pgp_int(&p, pr->created_at);
    return run(s, A_PROFILE_PUT, &p, "storing ADE profile", NULL, NULL);
}

int pg_ade_profile_get(store_t *base, const char *profile_uuid, ade_profile_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!profile_uuid)
        return pg_fail_arg(s, "ade_profile_get");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, profile_uuid);
    return get_one(s, A_PROFILE_GET, &p, read_profile, out, "reading ADE profile", "ADE profile not found");
}

int pg_ade_profile_list(store_t *base, const char *token_name, ade_profile_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (!cb)
        return pg_fail_arg(s, "ade_profile_list");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, token_name);
    PGresult *r;
    if (run(s, A_PROFILE_LIST, &p, "listing ADE profiles", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        ade_profile_t pr;
        if (read_profile(r, i, &pr) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb(ctx, &pr);
        ade_profile_free(&pr);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}
