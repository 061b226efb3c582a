/* SQLite backend: declarative device management (store.h, schema 5) —
 * declarations and their reference edges, sets, assignments, device groups,
 * effective declarations, sync bookkeeping, the status channel — and the
 * asset data that asset declarations point at. */
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"

enum {
    D_FORGET_STATE,
    D_FORGET_ITEMS,
    D_FORGET_DECLS,
    D_DECL_TOKEN,
    D_DECL_UPSERT,
    D_REFS_CLEAR,
    D_REF_ADD,
    D_DECL_GET,
    D_DECL_REFERRER,
    D_DECL_DROP_MEMBERS,
    D_DECL_DROP_REFS,
    D_DECL_DROP,
    D_DECL_LIST_ALL,
    D_DECL_LIST_KIND,
    D_DECL_REFERRERS,
    D_SET_UPSERT,
    D_SET_CLEAR,
    D_SET_ADD,
    D_SET_DROP_ASSIGNMENTS,
    D_SET_DROP,
    D_SET_EXISTS,
    D_SET_LIST,
    D_SET_MEMBERS,
    D_DECL_SETS,
    D_ASSIGN,
    D_UNASSIGN,
    D_ASSIGNMENTS_ALL,
    D_ASSIGNMENTS_SET,
    D_GROUP_ADD,
    D_GROUP_REMOVE,
    D_GROUP_MEMBERS,
    D_ENR_GROUPS,
    D_EFFECTIVE,
    D_ENR_SETS,
    D_STATE_GET,
    D_CANDIDATES,
    D_CMD_EXISTS,
    D_ENR_EXISTS,
    D_SYNC_PENDING,
    D_SYNC_TOKEN,
    D_SYNC_MARK,
    D_HANDED_OUT,
    D_TOUCH,
    D_ITEM_UPSERT,
    D_DECLS_CLEAR,
    D_DECL_STATUS_UPSERT,
    D_STATUS_AT,
    D_ERRORS_EVENT,
    D_ITEM_GET,
    D_ITEMS,
    D_DECL_STATUSES,
    D_ASSET_PUT,
    D_ASSET_GET,
    D_ASSET_DROP,
    D_COUNT_
};

_Static_assert(D_COUNT_ <= SQ_DDM_STMTS, "raise SQ_DDM_STMTS");

#define DECL_COLUMNS "identifier, type, kind, payload_json, server_token, created_at, updated_at"
#define DECL_COLUMNS_D "d.identifier, d.type, d.kind, d.payload_json, d.server_token, d.created_at, d.updated_at"

/* The device channel plus its user channels (?1 = device id). */
#define OF_DEVICE "enrollment_id = ?1 OR enrollment_id IN (SELECT id FROM enrollments WHERE device_id = ?1)"

/* A sync command counts as waiting while the flag is set and the command
 * it refers to is still pending for the enrollment: one cancelled by an
 * admin (or finished some other way) before it was handed out must not
 * block every later sync. An index seek on command_targets. */
#define SYNC_PENDING_OF(st)                                                                              \
    "(" st ".sync_pending = 1 AND EXISTS (SELECT 1 FROM command_targets t WHERE t.enrollment_id = " st    \
    ".enrollment_id AND t.command_id = " st ".sync_command_id AND t.pending = 1))"

static const char *const sql[D_COUNT_] = {
    [D_FORGET_STATE] = "DELETE FROM ddm_state WHERE " OF_DEVICE,
    [D_FORGET_ITEMS] = "DELETE FROM ddm_status_items WHERE " OF_DEVICE,
    [D_FORGET_DECLS] = "DELETE FROM ddm_decl_status WHERE " OF_DEVICE,

    [D_DECL_TOKEN] = "SELECT server_token FROM declarations WHERE identifier = ?1",
    /* An upsert, not INSERT OR REPLACE: a replace deletes the row first,
     * which the memberships and reference edges pointing at it forbid. */
    [D_DECL_UPSERT] = "INSERT INTO declarations (" DECL_COLUMNS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
                      " ON CONFLICT (identifier) DO UPDATE SET type = excluded.type, kind = excluded.kind,"
                      "  payload_json = excluded.payload_json, server_token = excluded.server_token,"
                      "  updated_at = excluded.updated_at",
    [D_REFS_CLEAR] = "DELETE FROM decl_refs WHERE from_id = ?1",
    [D_REF_ADD] = "INSERT INTO decl_refs (from_id, to_id) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    [D_DECL_GET] = "SELECT " DECL_COLUMNS " FROM declarations WHERE identifier = ?1",
    /* A declaration naming itself does not keep itself alive. */
    [D_DECL_REFERRER] = "SELECT from_id FROM decl_refs WHERE to_id = ?1 AND from_id <> ?1 ORDER BY from_id LIMIT 1",
    [D_DECL_DROP_MEMBERS] = "DELETE FROM set_members WHERE identifier = ?1",
    [D_DECL_DROP_REFS] = "DELETE FROM decl_refs WHERE from_id = ?1 OR to_id = ?1",
    [D_DECL_DROP] = "DELETE FROM declarations WHERE identifier = ?1",
    [D_DECL_LIST_ALL] = "SELECT " DECL_COLUMNS " FROM declarations ORDER BY identifier",
    [D_DECL_LIST_KIND] = "SELECT " DECL_COLUMNS " FROM declarations WHERE kind = ?1 ORDER BY identifier",
    [D_DECL_REFERRERS] = "SELECT from_id FROM decl_refs WHERE to_id = ?1 ORDER BY from_id",

    [D_SET_UPSERT] = "INSERT INTO decl_sets (name, created_at, updated_at) VALUES (?1, ?2, ?2)"
                     " ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
    [D_SET_CLEAR] = "DELETE FROM set_members WHERE set_name = ?1",
    [D_SET_ADD] = "INSERT INTO set_members (set_name, identifier) VALUES (?1, ?2) ON CONFLICT DO NOTHING",
    [D_SET_DROP_ASSIGNMENTS] = "DELETE FROM set_assignments WHERE set_name = ?1",
    [D_SET_DROP] = "DELETE FROM decl_sets WHERE name = ?1",
    [D_SET_EXISTS] = "SELECT 1 FROM decl_sets WHERE name = ?1",
    [D_SET_LIST] = "SELECT name FROM decl_sets ORDER BY name",
    [D_SET_MEMBERS] = "SELECT " DECL_COLUMNS_D " FROM set_members m JOIN declarations d ON d.identifier = m.identifier"
                      " WHERE m.set_name = ?1 ORDER BY d.identifier",
    [D_DECL_SETS] = "SELECT set_name FROM set_members WHERE identifier = ?1 ORDER BY set_name",

    [D_ASSIGN] = "INSERT INTO set_assignments (set_name, target_kind, target, assigned_at) VALUES (?1, ?2, ?3, ?4)"
                 " ON CONFLICT DO NOTHING",
    [D_UNASSIGN] = "DELETE FROM set_assignments WHERE set_name = ?1 AND target_kind = ?2 AND target = ?3",
    [D_ASSIGNMENTS_ALL] = "SELECT set_name, target_kind, target FROM set_assignments"
                          " ORDER BY set_name, target_kind, target",
    [D_ASSIGNMENTS_SET] = "SELECT set_name, target_kind, target FROM set_assignments WHERE set_name = ?1"
                          " ORDER BY target_kind, target",

    [D_GROUP_ADD] = "INSERT INTO group_members (group_name, enrollment_id, added_at) VALUES (?1, ?2, ?3)"
                    " ON CONFLICT DO NOTHING",
    [D_GROUP_REMOVE] = "DELETE FROM group_members WHERE group_name = ?1 AND enrollment_id = ?2",
    [D_GROUP_MEMBERS] = "SELECT enrollment_id FROM group_members WHERE group_name = ?1 ORDER BY enrollment_id",
    [D_ENR_GROUPS] = "SELECT group_name FROM group_members WHERE enrollment_id = ?1 ORDER BY group_name",

    /* ?1 = set names joined by '\n', split here so that any other character
     * may appear in a name. The closure follows reference edges; UNION (not
     * UNION ALL) visits each declaration once, so it ends even on a cycle. */
    [D_EFFECTIVE] = "WITH RECURSIVE"
                    " split(name, rest) AS (SELECT NULL, ?1 || char(10)"
                    "  UNION ALL SELECT substr(rest, 1, instr(rest, char(10)) - 1),"
                    "   substr(rest, instr(rest, char(10)) + 1) FROM split WHERE rest <> ''),"
                    " closure(identifier) AS ("
                    "  SELECT identifier FROM set_members"
                    "   WHERE set_name IN (SELECT name FROM split WHERE name IS NOT NULL)"
                    "  UNION SELECT r.to_id FROM decl_refs r JOIN closure c ON r.from_id = c.identifier)"
                    " SELECT " DECL_COLUMNS " FROM declarations"
                    " WHERE identifier IN (SELECT identifier FROM closure) ORDER BY kind, identifier",
    /* "all" applies to device channels; an id without an enrollment row is
     * taken as one (a device that has not enrolled yet). */
    [D_ENR_SETS] = "SELECT set_name FROM set_assignments WHERE target_kind = 'device' AND target = ?1"
                   " UNION SELECT a.set_name FROM group_members g"
                   "  JOIN set_assignments a ON a.target_kind = 'group' AND a.target = g.group_name"
                   "  WHERE g.enrollment_id = ?1"
                   " UNION SELECT set_name FROM set_assignments WHERE target_kind = 'all'"
                   "  AND COALESCE((SELECT id = device_id FROM enrollments WHERE id = ?1), 1)"
                   " ORDER BY 1",
    [D_STATE_GET] = "SELECT enrollment_id, token, " SYNC_PENDING_OF("st") ", token_changed_at, status_at,"
                    " manifest_at FROM ddm_state st WHERE enrollment_id = ?1",
    /* One pass over the active enrollments in id order. The sets assigned
     * to particular enrollments (directly or through groups) are grouped
     * once into a per-enrollment list; the "all" list is one constant
     * subquery. group_concat's order is unspecified, so the C side sorts
     * and de-duplicates each row's names. */
    [D_CANDIDATES] = "WITH specific(eid, set_name) AS ("
                     "  SELECT target, set_name FROM set_assignments WHERE target_kind = 'device'"
                     "  UNION ALL SELECT g.enrollment_id, a.set_name FROM set_assignments a"
                     "   JOIN group_members g ON g.group_name = a.target WHERE a.target_kind = 'group'),"
                     " per(eid, names) AS (SELECT eid, group_concat(set_name, char(10)) FROM specific GROUP BY eid)"
                     " SELECT e.*, per.names,"
                     "  CASE WHEN e.id = e.device_id THEN (SELECT group_concat(set_name, char(10))"
                     "   FROM set_assignments WHERE target_kind = 'all') END,"
                     "  st.token, COALESCE(" SYNC_PENDING_OF("st") ", 0)"
                     " FROM (SELECT " SQ_ENR_COLUMNS " FROM enrollments WHERE state = 'active') e"
                     " LEFT JOIN per ON per.eid = e.id"
                     " LEFT JOIN ddm_state st ON st.enrollment_id = e.id"
                     " ORDER BY e.id",

    [D_CMD_EXISTS] = "SELECT 1 FROM commands WHERE uuid = ?1",
    [D_ENR_EXISTS] = "SELECT 1 FROM enrollments WHERE id = ?1",
    [D_SYNC_PENDING] = "SELECT " SYNC_PENDING_OF("st") " FROM ddm_state st WHERE enrollment_id = ?1",
    /* token_changed_at moves only when the token does: it is the
     * TokensResponse Timestamp, "when the token last changed". */
    [D_SYNC_TOKEN] = "INSERT INTO ddm_state (enrollment_id, token, token_changed_at) VALUES (?1, ?2, ?3)"
                     " ON CONFLICT (enrollment_id) DO UPDATE SET token = excluded.token,"
                     "  token_changed_at = CASE WHEN token IS excluded.token THEN token_changed_at"
                     "   ELSE excluded.token_changed_at END",
    [D_SYNC_MARK] = "UPDATE ddm_state SET sync_pending = 1, sync_command_id = ?2 WHERE enrollment_id = ?1",
    [D_HANDED_OUT] = "UPDATE ddm_state SET sync_pending = 0, sync_command_id = NULL WHERE enrollment_id = ?1",
    [D_TOUCH] = "INSERT INTO ddm_state (enrollment_id, manifest_at) VALUES (?1, ?2)"
                " ON CONFLICT (enrollment_id) DO UPDATE SET manifest_at = excluded.manifest_at",

    [D_ITEM_UPSERT] = "INSERT INTO ddm_status_items (enrollment_id, name, value_json, updated_at)"
                      " VALUES (?1, ?2, ?3, ?4) ON CONFLICT (enrollment_id, name) DO UPDATE SET"
                      "  value_json = excluded.value_json, updated_at = excluded.updated_at",
    [D_DECLS_CLEAR] = "DELETE FROM ddm_decl_status WHERE enrollment_id = ?1",
    [D_DECL_STATUS_UPSERT] = "INSERT INTO ddm_decl_status (enrollment_id, identifier, kind, server_token, active,"
                             "  valid, reasons_json, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
                             " ON CONFLICT (enrollment_id, identifier) DO UPDATE SET kind = excluded.kind,"
                             "  server_token = excluded.server_token, active = excluded.active,"
                             "  valid = excluded.valid, reasons_json = excluded.reasons_json,"
                             "  updated_at = excluded.updated_at",
    [D_STATUS_AT] = "INSERT INTO ddm_state (enrollment_id, status_at) VALUES (?1, ?2)"
                    " ON CONFLICT (enrollment_id) DO UPDATE SET status_at = excluded.status_at",
    /* Kept as JSON when it is JSON (as a string otherwise: the log must not
     * lose what the device said); an empty array is no error. CASE keeps
     * json_type away from text that is not JSON. */
    [D_ERRORS_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                       " SELECT ?1, ?2, 'ddm_status_errors',"
                       "  json_object('errors', CASE WHEN json_valid(?3) THEN json(?3) ELSE ?3 END)"
                       " WHERE CASE WHEN json_valid(?3)"
                       "  THEN json_type(?3) <> 'array' OR json_array_length(?3) > 0 ELSE 1 END",
    [D_ITEM_GET] = "SELECT name, value_json, updated_at FROM ddm_status_items WHERE enrollment_id = ?1 AND name = ?2",
    [D_ITEMS] = "SELECT name, value_json, updated_at FROM ddm_status_items WHERE enrollment_id = ?1 ORDER BY name",
    [D_DECL_STATUSES] = "SELECT identifier, kind, server_token, active, valid, reasons_json, updated_at"
                        " FROM ddm_decl_status WHERE enrollment_id = ?1 ORDER BY identifier",

    [D_ASSET_PUT] = "INSERT INTO asset_data (name, content_type, data, sha256, updated_at) VALUES (?1, ?2, ?3, ?4, ?5)"
                    " ON CONFLICT (name) DO UPDATE SET content_type = excluded.content_type, data = excluded.data,"
                    "  sha256 = excluded.sha256, updated_at = excluded.updated_at",
    [D_ASSET_GET] = "SELECT name, content_type, data, sha256, updated_at FROM asset_data WHERE name = ?1",
    [D_ASSET_DROP] = "DELETE FROM asset_data WHERE name = ?1",
};

static sqlite3_stmt *prep(sq_store *s, int id)
{
    return sq_ddm_stmt(s, id, sql[id]);
}

/* Prepares statement `id` and binds text values ?1..?n (NULL binds SQL NULL). */
static sqlite3_stmt *prep_texts(sq_store *s, int id, int n, const char *a, const char *b, const char *c)
{
    sqlite3_stmt *st = prep(s, id);
    if (!st)
        return NULL;
    const char *v[3] = {a, b, c};
    for (int i = 0; i < n; i++) {
        if (sq_bind_text(st, i + 1, v[i]) != SQLITE_OK) {
            sq_bind_failed(s, st, "binding");
            return NULL;
        }
    }
    return st;
}

/* Steps a statement to its first row: STORE_OK (row present: the caller
 * reads it, then releases), STORE_NOTFOUND (released), STORE_ERR
 * (released). */
static int first_row(sq_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        return STORE_OK;
    if (rc == SQLITE_DONE) {
        sq_stmt_release(st);
        return STORE_NOTFOUND;
    }
    return sq_bind_failed(s, st, what);
}

/* Whether a row exists for the bound statement (released afterwards). */
static int exists(sq_store *s, sqlite3_stmt *st, const char *what)
{
    int rc = first_row(s, st, what);
    if (rc == STORE_OK)
        sq_stmt_release(st);
    return rc;
}

static int read_decl(sqlite3_stmt *st, declaration_t *d)
{
    memset(d, 0, sizeof *d);
    int bad = sq_col_text(st, 0, &d->identifier);
    bad |= sq_col_text(st, 1, &d->type);
    bad |= sq_col_text(st, 2, &d->kind);
    bad |= sq_col_text(st, 3, &d->payload_json);
    bad |= sq_col_text(st, 4, &d->server_token);
    d->created_at = sqlite3_column_int64(st, 5);
    d->updated_at = sqlite3_column_int64(st, 6);
    if (bad) {
        declaration_free(d);
        return -1;
    }
    return 0;
}

/* Streams declaration rows to cb; the statement is released afterwards. */
static int stream_decls(sq_store *s, sqlite3_stmt *st, declaration_cb cb, void *ctx, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        declaration_t d;
        if (read_decl(st, &d) != 0) {
            sq_stmt_release(st);
            return sq_fail_oom(s);
        }
        int stop = cb ? cb(ctx, &d) : 0;
        declaration_free(&d);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_bind_failed(s, st, what);
    sq_stmt_release(st);
    return STORE_OK;
}

/* Streams column 0 of each row to a name callback. */
static int stream_names(sq_store *s, sqlite3_stmt *st, name_cb cb, void *ctx, const char *what)
{
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const unsigned char *v = sqlite3_column_text(st, 0);
        if (!v) {
            sq_stmt_release(st);
            return sq_fail_oom(s);
        }
        if (cb && cb(ctx, (const char *)v))
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_bind_failed(s, st, what);
    sq_stmt_release(st);
    return STORE_OK;
}

/* Prepares a one-key listing and streams its names. */
static int list_names(store_t *base, int id, const char *key, name_cb cb, void *ctx, const char *what)
{
    sq_store *s = sq(base);
    if (!key)
        return sq_fail_arg(s, what);
    sqlite3_stmt *st = prep_texts(s, id, 1, key, NULL, NULL);
    return st ? stream_names(s, st, cb, ctx, what) : STORE_ERR;
}

/* Runs statement `id` with text parameters inside the open transaction. */
static int exec_texts(sq_store *s, int id, int n, const char *a, const char *b, const char *c, const char *what,
                      int *changes)
{
    sqlite3_stmt *st = prep_texts(s, id, n, a, b, c);
    return st ? sq_exec(s, st, what, changes) : STORE_ERR;
}

/* Commits when rc is STORE_OK, rolls back otherwise; returns the result. */
static int finish(sq_store *s, int rc)
{
    return rc == STORE_OK ? sq_tx_commit(s) : sq_tx_abort(s, rc);
}

/* ---- re-enrollment ------------------------------------------------------- */

int sq_ddm_forget(sq_store *s, const char *device_id)
{
    for (int id = D_FORGET_STATE; id <= D_FORGET_DECLS; id++)
        if (exec_texts(s, id, 1, device_id, NULL, NULL, "forgetting DDM state", NULL) != STORE_OK)
            return STORE_ERR;
    return STORE_OK;
}

/* ---- declarations -------------------------------------------------------- */

/* STORE_OK if every identifier names a declaration. */
static int all_declared(sq_store *s, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        sqlite3_stmt *st = prep_texts(s, D_DECL_TOKEN, 1, ids[i], NULL, NULL);
        if (!st)
            return STORE_ERR;
        int rc = exists(s, st, "looking up declaration");
        if (rc != STORE_OK)
            return rc;
    }
    return STORE_OK;
}

static int decl_put_in_tx(sq_store *s, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now,
                          int *changed)
{
    int rc = all_declared(s, refs, nrefs);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st = prep_texts(s, D_DECL_TOKEN, 1, d->identifier, NULL, NULL);
    if (!st)
        return STORE_ERR;
    rc = first_row(s, st, "reading declaration");
    if (rc == STORE_ERR)
        return rc;
    if (rc == STORE_OK) {
        const unsigned char *old = sqlite3_column_text(st, 0);
        int same = old && strcmp((const char *)old, d->server_token) == 0;
        sq_stmt_release(st);
        /* The token is derived from the content, references included. */
        if (same)
            return STORE_OK;
    }

    if (!(st = prep_texts(s, D_DECL_UPSERT, 3, d->identifier, d->type, d->kind)))
        return STORE_ERR;
    if (sq_bind_text(st, 4, d->payload_json) | sq_bind_text(st, 5, d->server_token) | sqlite3_bind_int64(st, 6, now))
        return sq_bind_failed(s, st, "decl_put");
    if (sq_exec(s, st, "storing declaration", NULL) != STORE_OK)
        return STORE_ERR;
    if (exec_texts(s, D_REFS_CLEAR, 1, d->identifier, NULL, NULL, "replacing references", NULL) != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < nrefs; i++)
        if (exec_texts(s, D_REF_ADD, 2, d->identifier, refs[i], NULL, "storing reference", NULL) != STORE_OK)
            return STORE_ERR;
    *changed = 1;
    return STORE_OK;
}

int sq_decl_put(store_t *base, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now,
                int *changed)
{
    sq_store *s = sq(base);
    if (!changed || !d || !d->identifier || !*d->identifier || !d->type || !d->kind || !d->payload_json ||
        !d->server_token || (nrefs && !refs))
        return sq_fail_arg(s, "decl_put");
    for (size_t i = 0; i < nrefs; i++)
        if (!refs[i])
            return sq_fail_arg(s, "decl_put");
    *changed = 0;
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int c = 0;
    int rc = decl_put_in_tx(s, d, refs, nrefs, now, &c);
    /* Identical content writes nothing: no commit (and no fsync) needed. */
    rc = rc == STORE_OK && c ? sq_tx_commit(s) : sq_tx_abort(s, rc);
    if (rc == STORE_OK)
        *changed = c;
    return rc;
}

int sq_decl_get(store_t *base, const char *identifier, declaration_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!identifier)
        return sq_fail_arg(s, "decl_get");
    sqlite3_stmt *st = prep_texts(s, D_DECL_GET, 1, identifier, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = first_row(s, st, "reading declaration");
    if (rc != STORE_OK)
        return rc;
    rc = read_decl(st, out) == 0 ? STORE_OK : sq_fail_oom(s);
    sq_stmt_release(st);
    return rc;
}

static int decl_delete_in_tx(sq_store *s, const char *identifier, char **referrer)
{
    sqlite3_stmt *st = prep_texts(s, D_DECL_TOKEN, 1, identifier, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = exists(s, st, "reading declaration");
    if (rc != STORE_OK)
        return rc;
    if (!(st = prep_texts(s, D_DECL_REFERRER, 1, identifier, NULL, NULL)))
        return STORE_ERR;
    rc = first_row(s, st, "looking for referrers");
    if (rc == STORE_ERR)
        return rc;
    if (rc == STORE_OK) {
        int bad = sq_col_text(st, 0, referrer);
        sq_stmt_release(st);
        return bad ? sq_fail_oom(s) : STORE_CONFLICT;
    }
    /* Children first: the foreign keys forbid the reverse order. */
    for (int id = D_DECL_DROP_MEMBERS; id <= D_DECL_DROP; id++)
        if (exec_texts(s, id, 1, identifier, NULL, NULL, "deleting declaration", NULL) != STORE_OK)
            return STORE_ERR;
    return STORE_OK;
}

int sq_decl_delete(store_t *base, const char *identifier, char **referrer)
{
    sq_store *s = sq(base);
    if (referrer)
        *referrer = NULL;
    if (!identifier)
        return sq_fail_arg(s, "decl_delete");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    char *who = NULL;
    int rc = finish(s, decl_delete_in_tx(s, identifier, &who));
    if (rc == STORE_CONFLICT && referrer)
        *referrer = who;
    else
        free(who);
    return rc;
}

int sq_decl_list(store_t *base, const char *kind, declaration_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st = kind ? prep_texts(s, D_DECL_LIST_KIND, 1, kind, NULL, NULL) : prep(s, D_DECL_LIST_ALL);
    return st ? stream_decls(s, st, cb, ctx, "listing declarations") : STORE_ERR;
}

int sq_decl_referrers(store_t *base, const char *identifier, name_cb cb, void *ctx)
{
    return list_names(base, D_DECL_REFERRERS, identifier, cb, ctx, "decl_referrers");
}

/* ---- sets ---------------------------------------------------------------- */

static int set_put_in_tx(sq_store *s, const char *name, const char *const *members, size_t n, int64_t now)
{
    int rc = all_declared(s, members, n);
    if (rc != STORE_OK)
        return rc;
    sqlite3_stmt *st = prep_texts(s, D_SET_UPSERT, 1, name, NULL, NULL);
    if (!st)
        return STORE_ERR;
    if (sqlite3_bind_int64(st, 2, now) != SQLITE_OK)
        return sq_bind_failed(s, st, "set_put");
    if (sq_exec(s, st, "storing set", NULL) != STORE_OK)
        return STORE_ERR;
    if (exec_texts(s, D_SET_CLEAR, 1, name, NULL, NULL, "replacing set members", NULL) != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < n; i++)
        if (exec_texts(s, D_SET_ADD, 2, name, members[i], NULL, "storing set member", NULL) != STORE_OK)
            return STORE_ERR;
    return STORE_OK;
}

int sq_set_put(store_t *base, const char *name, const char *const *members, size_t n, int64_t now)
{
    sq_store *s = sq(base);
    /* '\n' separates set names in the sets lists (ddm_candidate_t.sets). */
    if (!name || !*name || strchr(name, '\n') || (n && !members))
        return sq_fail_arg(s, "set_put");
    for (size_t i = 0; i < n; i++)
        if (!members[i])
            return sq_fail_arg(s, "set_put");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    return finish(s, set_put_in_tx(s, name, members, n, now));
}

int sq_set_delete(store_t *base, const char *name)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "set_delete");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    /* Members and assignments first (foreign keys), the set row last: its
     * change count says whether the set existed. */
    static const int steps[] = {D_SET_CLEAR, D_SET_DROP_ASSIGNMENTS, D_SET_DROP};
    int rc = STORE_OK, changed = 0;
    for (size_t i = 0; rc == STORE_OK && i < sizeof steps / sizeof steps[0]; i++)
        rc = exec_texts(s, steps[i], 1, name, NULL, NULL, "deleting set", &changed);
    if (rc == STORE_OK && changed == 0)
        rc = STORE_NOTFOUND;
    return finish(s, rc);
}

int sq_set_list(store_t *base, name_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st = prep(s, D_SET_LIST);
    return st ? stream_names(s, st, cb, ctx, "listing sets") : STORE_ERR;
}

/* STORE_NOTFOUND for an unknown set (an empty one is STORE_OK). */
int sq_set_members(store_t *base, const char *name, declaration_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "set_members");
    sqlite3_stmt *st = prep_texts(s, D_SET_EXISTS, 1, name, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = exists(s, st, "reading set");
    if (rc != STORE_OK)
        return rc;
    if (!(st = prep_texts(s, D_SET_MEMBERS, 1, name, NULL, NULL)))
        return STORE_ERR;
    return stream_decls(s, st, cb, ctx, "listing set members");
}

int sq_decl_sets(store_t *base, const char *identifier, name_cb cb, void *ctx)
{
    return list_names(base, D_DECL_SETS, identifier, cb, ctx, "decl_sets");
}

/* ---- assignments and groups ---------------------------------------------- */

/* Normalises an assignment target: "all" has target "" whatever is given;
 * the others need a non-empty one. NULL if invalid. */
static const char *assignment_target(const char *kind, const char *target)
{
    if (!kind)
        return NULL;
    if (strcmp(kind, DDM_TARGET_ALL) == 0)
        return "";
    if (strcmp(kind, DDM_TARGET_DEVICE) != 0 && strcmp(kind, DDM_TARGET_GROUP) != 0)
        return NULL;
    return target && *target ? target : NULL;
}

static int set_assign_in_tx(sq_store *s, const char *set_name, const char *kind, const char *target, int64_t now)
{
    sqlite3_stmt *st = prep_texts(s, D_SET_EXISTS, 1, set_name, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = exists(s, st, "reading set");
    if (rc != STORE_OK)
        return rc;
    if (!(st = prep_texts(s, D_ASSIGN, 3, set_name, kind, target)))
        return STORE_ERR;
    if (sqlite3_bind_int64(st, 4, now) != SQLITE_OK)
        return sq_bind_failed(s, st, "set_assign");
    return sq_exec(s, st, "storing assignment", NULL);
}

int sq_set_assign(store_t *base, const char *set_name, const char *target_kind, const char *target, int64_t now)
{
    sq_store *s = sq(base);
    const char *t = assignment_target(target_kind, target);
    if (!set_name || !t)
        return sq_fail_arg(s, "set_assign");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    return finish(s, set_assign_in_tx(s, set_name, target_kind, t, now));
}

int sq_set_unassign(store_t *base, const char *set_name, const char *target_kind, const char *target)
{
    sq_store *s = sq(base);
    const char *t = assignment_target(target_kind, target);
    if (!set_name || !t)
        return sq_fail_arg(s, "set_unassign");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int changed = 0;
    int rc = exec_texts(s, D_UNASSIGN, 3, set_name, target_kind, t, "removing assignment", &changed);
    return finish(s, rc == STORE_OK && changed == 0 ? STORE_NOTFOUND : rc);
}

int sq_set_assignments(store_t *base, const char *set_name, assignment_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st =
        set_name ? prep_texts(s, D_ASSIGNMENTS_SET, 1, set_name, NULL, NULL) : prep(s, D_ASSIGNMENTS_ALL);
    if (!st)
        return STORE_ERR;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *v[3];
        for (int i = 0; i < 3; i++)
            v[i] = (const char *)sqlite3_column_text(st, i);
        if (!v[0] || !v[1] || !v[2]) {
            sq_stmt_release(st);
            return sq_fail_oom(s);
        }
        if (cb && cb(ctx, v[0], v[1], v[2]))
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_bind_failed(s, st, "listing assignments");
    sq_stmt_release(st);
    return STORE_OK;
}

int sq_group_add(store_t *base, const char *group, const char *enrollment_id, int64_t now)
{
    sq_store *s = sq(base);
    if (!group || !*group || !enrollment_id || !*enrollment_id)
        return sq_fail_arg(s, "group_add");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep_texts(s, D_GROUP_ADD, 2, group, enrollment_id, NULL);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    if (sqlite3_bind_int64(st, 3, now) != SQLITE_OK)
        return sq_tx_abort(s, sq_bind_failed(s, st, "group_add"));
    return finish(s, sq_exec(s, st, "adding group member", NULL));
}

int sq_group_remove(store_t *base, const char *group, const char *enrollment_id)
{
    sq_store *s = sq(base);
    if (!group || !enrollment_id)
        return sq_fail_arg(s, "group_remove");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int changed = 0;
    int rc = exec_texts(s, D_GROUP_REMOVE, 2, group, enrollment_id, NULL, "removing group member", &changed);
    return finish(s, rc == STORE_OK && changed == 0 ? STORE_NOTFOUND : rc);
}

int sq_group_members(store_t *base, const char *group, name_cb cb, void *ctx)
{
    return list_names(base, D_GROUP_MEMBERS, group, cb, ctx, "group_members");
}

int sq_enrollment_groups(store_t *base, const char *enrollment_id, name_cb cb, void *ctx)
{
    return list_names(base, D_ENR_GROUPS, enrollment_id, cb, ctx, "enrollment_groups");
}

/* ---- effective declarations ---------------------------------------------- */

int sq_ddm_effective(store_t *base, const char *sets_csv, declaration_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (!sets_csv)
        return sq_fail_arg(s, "ddm_effective");
    sqlite3_stmt *st = prep_texts(s, D_EFFECTIVE, 1, sets_csv, NULL, NULL);
    return st ? stream_decls(s, st, cb, ctx, "computing effective declarations") : STORE_ERR;
}

/* A growing string. */
typedef struct {
    char *p;
    size_t len, cap;
} buf_t;

static int buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 64;
        while (b->len + n + 1 > cap)
            cap *= 2;
        char *p = realloc(b->p, cap);
        if (!p)
            return -1;
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

int sq_ddm_enrollment_sets(store_t *base, const char *enrollment_id, char **sets_csv)
{
    sq_store *s = sq(base);
    if (!sets_csv)
        return sq_fail_arg(s, "ddm_enrollment_sets");
    *sets_csv = NULL;
    if (!enrollment_id)
        return sq_fail_arg(s, "ddm_enrollment_sets");
    sqlite3_stmt *st = prep_texts(s, D_ENR_SETS, 1, enrollment_id, NULL, NULL);
    if (!st)
        return STORE_ERR;
    buf_t b = {0};
    int rc = SQLITE_DONE, bad = buf_add(&b, "", 0);
    /* The statement yields distinct names in order already. */
    while (!bad && (rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        bad = !name || (b.len && buf_add(&b, "\n", 1)) || buf_add(&b, name, strlen(name));
    }
    if (bad) {
        sq_stmt_release(st);
        free(b.p);
        return sq_fail_oom(s);
    }
    if (rc != SQLITE_DONE) {
        free(b.p);
        return sq_bind_failed(s, st, "listing an enrollment's sets");
    }
    sq_stmt_release(st);
    *sets_csv = b.p;
    return STORE_OK;
}

/* ---- candidates ---------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Sorted, de-duplicated '\n'-joined union of two '\n'-joined lists (either
 * may be NULL), in `out`, using `work` and `names` as scratch space kept
 * between rows. -1 when out of memory. */
typedef struct {
    buf_t work, out;
    const char **names;
    size_t cap;
} set_merge_t;

static int merge_sets(set_merge_t *m, const char *a, const char *b)
{
    m->work.len = m->out.len = 0;
    if (buf_add(&m->out, "", 0) != 0)
        return -1;
    if (!a && !b)
        return 0;
    if ((a && buf_add(&m->work, a, strlen(a))) || (a && b && buf_add(&m->work, "\n", 1)) ||
        (b && buf_add(&m->work, b, strlen(b))))
        return -1;
    size_t n = 1;
    for (size_t i = 0; i < m->work.len; i++)
        n += m->work.p[i] == '\n';
    if (n > m->cap) {
        const char **p = realloc(m->names, n * sizeof *p);
        if (!p)
            return -1;
        m->names = p;
        m->cap = n;
    }
    size_t k = 0;
    for (char *p = m->work.p, *nl;; p = nl + 1) {
        m->names[k++] = p;
        if (!(nl = strchr(p, '\n')))
            break;
        *nl = '\0';
    }
    qsort(m->names, k, sizeof *m->names, cmp_str);
    for (size_t i = 0; i < k; i++) {
        if (i && strcmp(m->names[i], m->names[i - 1]) == 0)
            continue;
        if ((m->out.len && buf_add(&m->out, "\n", 1)) || buf_add(&m->out, m->names[i], strlen(m->names[i])))
            return -1;
    }
    return 0;
}

int sq_ddm_candidates(store_t *base, ddm_candidate_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st = prep(s, D_CANDIDATES);
    if (!st)
        return STORE_ERR;
    /* The columns after the enrollment's own. */
    enum { C_SPECIFIC = SQ_ENR_NCOLUMNS, C_ALL, C_TOKEN, C_PENDING };
    set_merge_t m = {0};
    int rc, result = STORE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        enrollment_t e;
        if (sq_read_enrollment(st, &e) != 0) {
            result = sq_fail_oom(s);
            break;
        }
        const char *token = (const char *)sqlite3_column_text(st, C_TOKEN);
        if (merge_sets(&m, (const char *)sqlite3_column_text(st, C_SPECIFIC),
                       (const char *)sqlite3_column_text(st, C_ALL)) != 0) {
            enrollment_free(&e);
            result = sq_fail_oom(s);
            break;
        }
        ddm_candidate_t c = {.enrollment = &e,
                             .sets = m.out.p,
                             .token = token,
                             .sync_pending = sqlite3_column_int(st, C_PENDING) != 0};
        int stop = cb ? cb(ctx, &c) : 0;
        enrollment_free(&e);
        if (stop)
            break;
    }
    if (result == STORE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE)
        result = sq_fail_db(s, "listing DDM candidates");
    sq_stmt_release(st);
    free(m.work.p);
    free(m.out.p);
    free(m.names);
    return result;
}

/* ---- sync bookkeeping ---------------------------------------------------- */

int sq_ddm_state_get(store_t *base, const char *enrollment_id, ddm_state_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!enrollment_id)
        return sq_fail_arg(s, "ddm_state_get");
    sqlite3_stmt *st = prep_texts(s, D_STATE_GET, 1, enrollment_id, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = first_row(s, st, "reading DDM state");
    if (rc != STORE_OK)
        return rc;
    int bad = sq_col_text(st, 0, &out->enrollment_id) | sq_col_text(st, 1, &out->token);
    out->sync_pending = sqlite3_column_int(st, 2) != 0;
    out->token_changed_at = sqlite3_column_int64(st, 3);
    out->status_at = sqlite3_column_int64(st, 4);
    out->manifest_at = sqlite3_column_int64(st, 5);
    sq_stmt_release(st);
    if (bad) {
        ddm_state_free(out);
        return sq_fail_oom(s);
    }
    return STORE_OK;
}

/* Updates one target's token and queues the sync command for it unless one
 * is waiting. *command_id is 0 until the command row is stored, which
 * happens for the first target that needs it. */
static int sync_one(sq_store *s, const command_t *cmd, const char *id, const char *token, int64_t now,
                    int64_t *command_id, int *queued)
{
    sqlite3_stmt *st = prep_texts(s, D_SYNC_PENDING, 1, id, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = first_row(s, st, "reading DDM state");
    if (rc == STORE_ERR)
        return rc;
    int pending = 0;
    if (rc == STORE_OK) {
        pending = sqlite3_column_int(st, 0) != 0;
        sq_stmt_release(st);
    }

    if (!(st = prep_texts(s, D_SYNC_TOKEN, 2, id, token, NULL)))
        return STORE_ERR;
    if (sqlite3_bind_int64(st, 3, now) != SQLITE_OK)
        return sq_bind_failed(s, st, "ddm_sync_queue");
    if (sq_exec(s, st, "storing declarations token", NULL) != STORE_OK)
        return STORE_ERR;
    if (pending)
        return STORE_OK;

    if (*command_id == 0) {
        /* Store the command only for a target that can take it. */
        if (!(st = prep_texts(s, D_ENR_EXISTS, 1, id, NULL, NULL)))
            return STORE_ERR;
        if ((rc = exists(s, st, "looking up enrollment")) != STORE_OK)
            return rc == STORE_NOTFOUND ? STORE_OK : rc;
        if ((rc = sq_command_insert(s, cmd, now, command_id)) != STORE_OK)
            return rc;
    }
    int added = 0;
    if (sq_command_target_add(s, *command_id, cmd, id, now, &added) != STORE_OK)
        return STORE_ERR;
    if (!added)
        return STORE_OK; /* no such enrollment */
    if (!(st = prep_texts(s, D_SYNC_MARK, 1, id, NULL, NULL)))
        return STORE_ERR;
    if (sqlite3_bind_int64(st, 2, *command_id) != SQLITE_OK)
        return sq_bind_failed(s, st, "ddm_sync_queue");
    if (sq_exec(s, st, "marking sync pending", NULL) != STORE_OK)
        return STORE_ERR;
    *queued = 1;
    return STORE_OK;
}

static int sync_queue_in_tx(sq_store *s, const command_t *cmd, const char *const *ids, const char *const *tokens,
                            size_t n, int64_t now, int *queued)
{
    /* The UUID is checked up front: when no target needs the command it is
     * never inserted, and a reused UUID must still be refused. */
    sqlite3_stmt *st = prep_texts(s, D_CMD_EXISTS, 1, cmd->uuid, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = exists(s, st, "looking up command");
    if (rc == STORE_OK)
        return STORE_CONFLICT;
    if (rc == STORE_ERR)
        return rc;
    int64_t command_id = 0;
    for (size_t i = 0; i < n; i++)
        if ((rc = sync_one(s, cmd, ids[i], tokens[i], now, &command_id, &queued[i])) != STORE_OK)
            return rc;
    return STORE_OK;
}

int sq_ddm_sync_queue(store_t *base, const command_t *cmd, const char *const *ids, const char *const *tokens,
                      size_t n, int64_t now, int *queued)
{
    sq_store *s = sq(base);
    if (!cmd || !cmd->uuid || !cmd->request_type || !cmd->body || (n && (!ids || !tokens || !queued)))
        return sq_fail_arg(s, "ddm_sync_queue");
    for (size_t i = 0; i < n; i++) {
        if (!ids[i])
            return sq_fail_arg(s, "ddm_sync_queue");
        queued[i] = 0;
    }
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int rc = finish(s, sync_queue_in_tx(s, cmd, ids, tokens, n, now, queued));
    if (rc != STORE_OK) /* rolled back: nothing was queued */
        for (size_t i = 0; i < n; i++)
            queued[i] = 0;
    return rc;
}

/* One statement keyed by enrollment id and a time, in its own transaction. */
static int state_write(store_t *base, int id, const char *enrollment_id, int64_t now, const char *what)
{
    sq_store *s = sq(base);
    if (!enrollment_id)
        return sq_fail_arg(s, what);
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep_texts(s, id, 1, enrollment_id, NULL, NULL);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    /* D_HANDED_OUT has no time parameter. */
    if (sqlite3_bind_parameter_count(st) >= 2 && sqlite3_bind_int64(st, 2, now) != SQLITE_OK)
        return sq_tx_abort(s, sq_bind_failed(s, st, what));
    return finish(s, sq_exec(s, st, what, NULL));
}

/* Clearing a flag that is not set (or of an enrollment without DDM state)
 * is STORE_OK: the hand-out happened either way. */
int sq_ddm_handed_out(store_t *base, const char *enrollment_id, int64_t now)
{
    return state_write(base, D_HANDED_OUT, enrollment_id, now, "recording sync hand-out");
}

/* Creates the state row if needed, like a status report does. */
int sq_ddm_touch(store_t *base, const char *enrollment_id, int64_t now)
{
    return state_write(base, D_TOUCH, enrollment_id, now, "recording manifest fetch");
}

/* ---- status channel ------------------------------------------------------ */

static int status_in_tx(sq_store *s, const char *id, const ddm_status_item_t *items, size_t nitems,
                        const ddm_decl_status_t *decls, size_t ndecls, int replace_decls, const char *errors_json,
                        int64_t now)
{
    sqlite3_stmt *st;
    for (size_t i = 0; i < nitems; i++) {
        if (!(st = prep_texts(s, D_ITEM_UPSERT, 3, id, items[i].name, items[i].value_json)))
            return STORE_ERR;
        if (sqlite3_bind_int64(st, 4, now) != SQLITE_OK)
            return sq_bind_failed(s, st, "ddm_status_record");
        if (sq_exec(s, st, "storing status item", NULL) != STORE_OK)
            return STORE_ERR;
    }
    if (replace_decls &&
        exec_texts(s, D_DECLS_CLEAR, 1, id, NULL, NULL, "replacing declaration statuses", NULL) != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < ndecls; i++) {
        const ddm_decl_status_t *d = &decls[i];
        if (!(st = prep_texts(s, D_DECL_STATUS_UPSERT, 3, id, d->identifier, d->kind)))
            return STORE_ERR;
        if (sq_bind_text(st, 4, d->server_token) | sqlite3_bind_int(st, 5, d->active != 0) |
            sq_bind_text(st, 6, d->valid) | sq_bind_text(st, 7, d->reasons_json) | sqlite3_bind_int64(st, 8, now))
            return sq_bind_failed(s, st, "ddm_status_record");
        if (sq_exec(s, st, "storing declaration status", NULL) != STORE_OK)
            return STORE_ERR;
    }
    if (!(st = prep_texts(s, D_STATUS_AT, 1, id, NULL, NULL)))
        return STORE_ERR;
    if (sqlite3_bind_int64(st, 2, now) != SQLITE_OK)
        return sq_bind_failed(s, st, "ddm_status_record");
    if (sq_exec(s, st, "recording status report", NULL) != STORE_OK)
        return STORE_ERR;
    if (!errors_json || !*errors_json)
        return STORE_OK;
    if (!(st = prep(s, D_ERRORS_EVENT)))
        return STORE_ERR;
    if (sqlite3_bind_int64(st, 1, now) | sq_bind_text(st, 2, id) | sq_bind_text(st, 3, errors_json))
        return sq_bind_failed(s, st, "ddm_status_record");
    return sq_exec(s, st, "logging status errors", NULL);
}

int sq_ddm_status_record(store_t *base, const char *enrollment_id, const ddm_status_item_t *items, size_t nitems,
                         const ddm_decl_status_t *decls, size_t ndecls, int replace_decls, const char *errors_json,
                         int64_t now)
{
    sq_store *s = sq(base);
    if (!enrollment_id || (nitems && !items) || (ndecls && !decls))
        return sq_fail_arg(s, "ddm_status_record");
    for (size_t i = 0; i < nitems; i++)
        if (!items[i].name || !items[i].value_json)
            return sq_fail_arg(s, "ddm_status_record");
    for (size_t i = 0; i < ndecls; i++)
        if (!decls[i].identifier)
            return sq_fail_arg(s, "ddm_status_record");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    return finish(s, status_in_tx(s, enrollment_id, items, nitems, decls, ndecls, replace_decls, errors_json, now));
}

static int read_item(sqlite3_stmt *st, ddm_status_item_t *i)
{
    memset(i, 0, sizeof *i);
    int bad = sq_col_text(st, 0, &i->name) | sq_col_text(st, 1, &i->value_json);
    i->updated_at = sqlite3_column_int64(st, 2);
    if (bad) {
        ddm_status_item_free(i);
        return -1;
    }
    return 0;
}

int sq_ddm_status_item_get(store_t *base, const char *enrollment_id, const char *name, ddm_status_item_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!enrollment_id || !name)
        return sq_fail_arg(s, "ddm_status_item_get");
    sqlite3_stmt *st = prep_texts(s, D_ITEM_GET, 2, enrollment_id, name, NULL);
    if (!st)
        return STORE_ERR;
    int rc = first_row(s, st, "reading status item");
    if (rc != STORE_OK)
        return rc;
    rc = read_item(st, out) == 0 ? STORE_OK : sq_fail_oom(s);
    sq_stmt_release(st);
    return rc;
}

int sq_ddm_status_items(store_t *base, const char *enrollment_id, ddm_status_item_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (!enrollment_id)
        return sq_fail_arg(s, "ddm_status_items");
    sqlite3_stmt *st = prep_texts(s, D_ITEMS, 1, enrollment_id, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ddm_status_item_t i;
        if (read_item(st, &i) != 0) {
            sq_stmt_release(st);
            return sq_fail_oom(s);
        }
        int stop = cb ? cb(ctx, &i) : 0;
        ddm_status_item_free(&i);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_bind_failed(s, st, "listing status items");
    sq_stmt_release(st);
    return STORE_OK;
}

int sq_ddm_decl_statuses(store_t *base, const char *enrollment_id, ddm_decl_status_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (!enrollment_id)
        return sq_fail_arg(s, "ddm_decl_statuses");
    sqlite3_stmt *st = prep_texts(s, D_DECL_STATUSES, 1, enrollment_id, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        ddm_decl_status_t d;
        memset(&d, 0, sizeof d);
        int bad = sq_col_text(st, 0, &d.identifier) | sq_col_text(st, 1, &d.kind) |
                  sq_col_text(st, 2, &d.server_token) | sq_col_text(st, 4, &d.valid) |
                  sq_col_text(st, 5, &d.reasons_json);
        d.active = sqlite3_column_int(st, 3) != 0;
        d.updated_at = sqlite3_column_int64(st, 6);
        if (bad) {
            ddm_decl_status_free(&d);
            sq_stmt_release(st);
            return sq_fail_oom(s);
        }
        int stop = cb ? cb(ctx, &d) : 0;
        ddm_decl_status_free(&d);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return sq_bind_failed(s, st, "listing declaration statuses");
    sq_stmt_release(st);
    return STORE_OK;
}

/* ---- asset data ---------------------------------------------------------- */

int sq_asset_data_put(store_t *base, const asset_data_t *a, int64_t now)
{
    sq_store *s = sq(base);
    if (!a || !a->name || !*a->name || !a->content_type || !a->sha256 || (a->len && !a->data))
        return sq_fail_arg(s, "asset_data_put");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = prep_texts(s, D_ASSET_PUT, 2, a->name, a->content_type, NULL);
    if (!st)
        return sq_tx_abort(s, STORE_ERR);
    /* Empty data is stored as an empty blob, never NULL. */
    static const unsigned char none[1];
    if (sq_bind_blob(st, 3, a->data ? a->data : none, a->len) | sq_bind_text(st, 4, a->sha256) |
        sqlite3_bind_int64(st, 5, now))
        return sq_tx_abort(s, sq_bind_failed(s, st, "asset_data_put"));
    return finish(s, sq_exec(s, st, "storing asset data", NULL));
}

int sq_asset_data_get(store_t *base, const char *name, asset_data_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    if (!name)
        return sq_fail_arg(s, "asset_data_get");
    sqlite3_stmt *st = prep_texts(s, D_ASSET_GET, 1, name, NULL, NULL);
    if (!st)
        return STORE_ERR;
    int rc = first_row(s, st, "reading asset data");
    if (rc != STORE_OK)
        return rc;
    int bad = sq_col_text(st, 0, &out->name) | sq_col_text(st, 1, &out->content_type) |
              sq_col_blob(st, 2, &out->data, &out->len) | sq_col_text(st, 3, &out->sha256);
    out->updated_at = sqlite3_column_int64(st, 4);
    sq_stmt_release(st);
    if (bad) {
        asset_data_free(out);
        return sq_fail_oom(s);
    }
    return STORE_OK;
}

int sq_asset_data_delete(store_t *base, const char *name)
{
    sq_store *s = sq(base);
    if (!name)
        return sq_fail_arg(s, "asset_data_delete");
    if (sq_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int changed = 0;
    int rc = exec_texts(s, D_ASSET_DROP, 1, name, NULL, NULL, "deleting asset data", &changed);
    return finish(s, rc == STORE_OK && changed == 0 ? STORE_NOTFOUND : rc);
}
