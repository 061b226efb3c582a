/* PostgreSQL backend: declarative device management (store.h, schema 5) —
 * declarations and their reference edges, sets, assignments, device groups,
 * effective declarations, sync bookkeeping, the status channel — and asset
 * data. The semantics are store_sqlite_ddm.c's.
 *
 * Several instances: multi-statement writes run in a transaction; the
 * sync fan-out takes each target's ddm_state row lock (by upserting its
 * token) before it reads whether a sync is pending, so two instances
 * fanning out at once queue at most one sync command per enrollment. */
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_internal.h"

enum {
    X_FORGET = PG_ST_DDM,
    X_DECL_TOKEN,
    X_DECL_UPSERT,
    X_REFS_CLEAR,
    X_REF_ADD,
    X_DECL_GET,
    X_DECL_REFERRER,
    X_DECL_DROP,
    X_DECL_LIST_ALL,
    X_DECL_LIST_KIND,
    X_DECL_REFERRERS,
    X_SET_UPSERT,
    X_SET_CLEAR,
    X_SET_ADD,
    X_SET_DROP,
    X_SET_EXISTS,
    X_SET_LIST,
    X_SET_MEMBERS,
    X_DECL_SETS,
    X_ASSIGN,
    X_UNASSIGN,
    X_ASSIGNMENTS_ALL,
    X_ASSIGNMENTS_SET,
    X_GROUP_ADD,
    X_GROUP_REMOVE,
    X_GROUP_MEMBERS,
    X_ENR_GROUPS,
    X_EFFECTIVE,
    X_ENR_SETS,
    X_STATE_GET,
    X_CANDIDATES,
    X_CMD_EXISTS,
    X_SYNC_TOKEN,
    X_SYNC_PENDING,
    X_SYNC_MARK,
    X_HANDED_OUT,
    X_TOUCH,
    X_ITEM_UPSERT,
    X_DECLS_CLEAR,
    X_DECL_STATUS_UPSERT,
    X_STATUS_AT,
    X_EVENT,
    X_ITEM_GET,
    X_ITEMS,
    X_DECL_STATUSES,
    X_ASSET_PUT,
    X_ASSET_GET,
    X_ASSET_DROP,
    X_COUNT_
};

_Static_assert((int)X_COUNT_ <= (int)PG_ST_WATCH, "statement ids overlap");

#define DECL_COLUMNS "identifier, type, kind, payload_json, server_token, created_at, updated_at"
#define DECL_COLUMNS_D "d.identifier, d.type, d.kind, d.payload_json, d.server_token, d.created_at, d.updated_at"

/* A sync command counts as waiting while the flag is set and the command
 * it refers to is still pending for the enrollment (one cancelled before it
 * was handed out must not block later syncs). */
#define SYNC_PENDING_OF(st)                                                                              \
    "(" st ".sync_pending AND EXISTS (SELECT 1 FROM command_targets t WHERE t.enrollment_id = " st        \
    ".enrollment_id AND t.command_id = " st ".sync_command_id AND t.pending))"

/* Candidates are read in pages of this many enrollments. */
#define CANDIDATE_PAGE 500

static const char *const sql[] = {
    /* The device channel and its user channels. */
    [X_FORGET - PG_ST_DDM] =
        "WITH ids AS (SELECT $1::text AS id UNION SELECT id FROM enrollments WHERE device_id = $1::text),"
        " a AS (DELETE FROM ddm_state WHERE enrollment_id IN (SELECT id FROM ids)),"
        " b AS (DELETE FROM ddm_status_items WHERE enrollment_id IN (SELECT id FROM ids))"
        " DELETE FROM ddm_decl_status WHERE enrollment_id IN (SELECT id FROM ids)",

    /* FOR UPDATE: a concurrent put of the same declaration waits, then
     * compares with what the first one stored. */
    [X_DECL_TOKEN - PG_ST_DDM] = "SELECT server_token FROM declarations WHERE identifier = $1::text FOR UPDATE",
    [X_DECL_UPSERT - PG_ST_DDM] =
        "INSERT INTO declarations (" DECL_COLUMNS ")"
        " VALUES ($1::text, $2::text, $3::text, $4::text, $5::text, $6::bigint, $6::bigint)"
        " ON CONFLICT (identifier) DO UPDATE SET type = excluded.type, kind = excluded.kind,"
        "  payload_json = excluded.payload_json, server_token = excluded.server_token,"
        "  updated_at = excluded.updated_at",
    [X_REFS_CLEAR - PG_ST_DDM] = "DELETE FROM decl_refs WHERE from_id = $1::text",
    [X_REF_ADD - PG_ST_DDM] = "INSERT INTO decl_refs (from_id, to_id) VALUES ($1::text, $2::text)"
                              " ON CONFLICT DO NOTHING",
    [X_DECL_GET - PG_ST_DDM] = "SELECT " DECL_COLUMNS " FROM declarations WHERE identifier = $1::text",
    /* A declaration naming itself does not keep itself alive. */
    [X_DECL_REFERRER - PG_ST_DDM] = "SELECT from_id FROM decl_refs WHERE to_id = $1::text AND from_id <> $1::text"
                                    " ORDER BY from_id LIMIT 1",
    /* Children first (foreign keys); a row back when it existed. */
    [X_DECL_DROP - PG_ST_DDM] =
        "WITH m AS (DELETE FROM set_members WHERE identifier = $1::text),"
        " r AS (DELETE FROM decl_refs WHERE from_id = $1::text OR to_id = $1::text)"
        " DELETE FROM declarations WHERE identifier = $1::text",
    [X_DECL_LIST_ALL - PG_ST_DDM] = "SELECT " DECL_COLUMNS " FROM declarations ORDER BY identifier",
    [X_DECL_LIST_KIND - PG_ST_DDM] = "SELECT " DECL_COLUMNS " FROM declarations WHERE kind = $1::text"
                                     " ORDER BY identifier",
    [X_DECL_REFERRERS - PG_ST_DDM] = "SELECT from_id FROM decl_refs WHERE to_id = $1::text ORDER BY from_id",

    [X_SET_UPSERT - PG_ST_DDM] = "INSERT INTO decl_sets (name, created_at, updated_at)"
                                 " VALUES ($1::text, $2::bigint, $2::bigint)"
                                 " ON CONFLICT (name) DO UPDATE SET updated_at = excluded.updated_at",
    [X_SET_CLEAR - PG_ST_DDM] = "DELETE FROM set_members WHERE set_name = $1::text",
    [X_SET_ADD - PG_ST_DDM] = "INSERT INTO set_members (set_name, identifier) VALUES ($1::text, $2::text)"
                              " ON CONFLICT DO NOTHING",
    /* Members and assignments first (foreign keys); a row back when the
     * set existed. */
    [X_SET_DROP - PG_ST_DDM] =
        "WITH m AS (DELETE FROM set_members WHERE set_name = $1::text),"
        " a AS (DELETE FROM set_assignments WHERE set_name = $1::text)"
        " DELETE FROM decl_sets WHERE name = $1::text",
    /* FOR SHARE: the set cannot be deleted while an assignment to it is
     * being written. */
    [X_SET_EXISTS - PG_ST_DDM] = "SELECT 1 FROM decl_sets WHERE name = $1::text FOR SHARE",
    [X_SET_LIST - PG_ST_DDM] = "SELECT name FROM decl_sets ORDER BY name",
    [X_SET_MEMBERS - PG_ST_DDM] = "SELECT " DECL_COLUMNS_D " FROM set_members m"
                                  " JOIN declarations d ON d.identifier = m.identifier"
                                  " WHERE m.set_name = $1::text ORDER BY d.identifier",
    [X_DECL_SETS - PG_ST_DDM] = "SELECT set_name FROM set_members WHERE identifier = $1::text ORDER BY set_name",

    [X_ASSIGN - PG_ST_DDM] = "INSERT INTO set_assignments (set_name, target_kind, target, assigned_at)"
                             " VALUES ($1::text, $2::text, $3::text, $4::bigint) ON CONFLICT DO NOTHING",
    [X_UNASSIGN - PG_ST_DDM] = "DELETE FROM set_assignments"
                               " WHERE set_name = $1::text AND target_kind = $2::text AND target = $3::text",
    [X_ASSIGNMENTS_ALL - PG_ST_DDM] = "SELECT set_name, target_kind, target FROM set_assignments"
                                      " ORDER BY set_name, target_kind, target",
    [X_ASSIGNMENTS_SET - PG_ST_DDM] = "SELECT set_name, target_kind, target FROM set_assignments"
                                      " WHERE set_name = $1::text ORDER BY target_kind, target",

    [X_GROUP_ADD - PG_ST_DDM] = "INSERT INTO group_members (group_name, enrollment_id, added_at)"
                                " VALUES ($1::text, $2::text, $3::bigint) ON CONFLICT DO NOTHING",
    [X_GROUP_REMOVE - PG_ST_DDM] = "DELETE FROM group_members WHERE group_name = $1::text AND enrollment_id = $2::text",
    [X_GROUP_MEMBERS - PG_ST_DDM] = "SELECT enrollment_id FROM group_members WHERE group_name = $1::text"
                                    " ORDER BY enrollment_id",
    [X_ENR_GROUPS - PG_ST_DDM] = "SELECT group_name FROM group_members WHERE enrollment_id = $1::text"
                                 " ORDER BY group_name",

    /* $1 = set names joined by '\n'. UNION (not UNION ALL) visits each
     * declaration once, so the closure ends even on a reference cycle. */
    [X_EFFECTIVE - PG_ST_DDM] =
        "WITH RECURSIVE closure(identifier) AS ("
        "  SELECT identifier FROM set_members WHERE set_name = ANY (string_to_array($1::text, E'\\n'))"
        "  UNION SELECT r.to_id FROM decl_refs r JOIN closure c ON r.from_id = c.identifier)"
        " SELECT " DECL_COLUMNS " FROM declarations"
        " WHERE identifier IN (SELECT identifier FROM closure) ORDER BY kind, identifier",
    /* "all" applies to device channels; an id without an enrollment row is
     * taken as one (a device that has not enrolled yet). */
    [X_ENR_SETS - PG_ST_DDM] =
        "SELECT COALESCE(string_agg(n, E'\\n' ORDER BY n), '') FROM ("
        "  SELECT set_name FROM set_assignments WHERE target_kind = 'device' AND target = $1::text"
        "  UNION SELECT a.set_name FROM group_members g"
        "   JOIN set_assignments a ON a.target_kind = 'group' AND a.target = g.group_name"
        "   WHERE g.enrollment_id = $1::text"
        "  UNION SELECT set_name FROM set_assignments WHERE target_kind = 'all'"
        "   AND COALESCE((SELECT id = device_id FROM enrollments WHERE id = $1::text), true)) AS x(n)",
    [X_STATE_GET - PG_ST_DDM] = "SELECT enrollment_id, token, " SYNC_PENDING_OF("st") ", token_changed_at, status_at,"
                                " manifest_at FROM ddm_state st WHERE enrollment_id = $1::text",
    /* One page of active enrollments after $1 (NULL: from the start), each
     * with the sorted names of the sets applying to it. */
    [X_CANDIDATES - PG_ST_DDM] =
        "SELECT e.*,"
        "  (SELECT string_agg(n, E'\\n' ORDER BY n) FROM ("
        "    SELECT a.set_name FROM set_assignments a WHERE a.target_kind = 'device' AND a.target = e.id"
        "    UNION SELECT a.set_name FROM group_members g"
        "     JOIN set_assignments a ON a.target_kind = 'group' AND a.target = g.group_name"
        "     WHERE g.enrollment_id = e.id"
        "    UNION SELECT a.set_name FROM set_assignments a WHERE a.target_kind = 'all' AND e.id = e.device_id"
        "   ) AS x(n)),"
        "  st.token, COALESCE(" SYNC_PENDING_OF("st") ", false)"
        " FROM (SELECT " PG_ENR_COLUMNS " FROM enrollments WHERE state = 'active'"
        "  AND ($1::text IS NULL OR id > $1::text) ORDER BY id LIMIT $2::integer) e"
        " LEFT JOIN ddm_state st ON st.enrollment_id = e.id"
        " ORDER BY e.id",

    [X_CMD_EXISTS - PG_ST_DDM] = "SELECT 1 FROM commands WHERE uuid = $1::text",
    /* token_changed_at moves only when the token does. The upsert also
     * locks the row for the rest of the transaction. */
    [X_SYNC_TOKEN - PG_ST_DDM] =
        "INSERT INTO ddm_state (enrollment_id, token, token_changed_at) VALUES ($1::text, $2::text, $3::bigint)"
        " ON CONFLICT (enrollment_id) DO UPDATE SET token = excluded.token,"
        "  token_changed_at = CASE WHEN ddm_state.token IS NOT DISTINCT FROM excluded.token"
        "   THEN ddm_state.token_changed_at ELSE excluded.token_changed_at END",
    /* Whether a sync is waiting, and whether the enrollment exists. */
    [X_SYNC_PENDING - PG_ST_DDM] =
        "SELECT COALESCE((SELECT " SYNC_PENDING_OF("st") " FROM ddm_state st WHERE enrollment_id = $1::text), false),"
        "  EXISTS (SELECT 1 FROM enrollments WHERE id = $1::text)",
    [X_SYNC_MARK - PG_ST_DDM] = "UPDATE ddm_state SET sync_pending = true, sync_command_id = $2::bigint"
                                " WHERE enrollment_id = $1::text",
    [X_HANDED_OUT - PG_ST_DDM] = "UPDATE ddm_state SET sync_pending = false, sync_command_id = NULL"
                                 " WHERE enrollment_id = $1::text",
    [X_TOUCH - PG_ST_DDM] = "INSERT INTO ddm_state (enrollment_id, manifest_at) VALUES ($1::text, $2::bigint)"
                            " ON CONFLICT (enrollment_id) DO UPDATE SET manifest_at = excluded.manifest_at",

    [X_ITEM_UPSERT - PG_ST_DDM] =
        "INSERT INTO ddm_status_items (enrollment_id, name, value_json, updated_at)"
        " VALUES ($1::text, $2::text, $3::text, $4::bigint) ON CONFLICT (enrollment_id, name) DO UPDATE SET"
        "  value_json = excluded.value_json, updated_at = excluded.updated_at",
    [X_DECLS_CLEAR - PG_ST_DDM] = "DELETE FROM ddm_decl_status WHERE enrollment_id = $1::text",
    [X_DECL_STATUS_UPSERT - PG_ST_DDM] =
        "INSERT INTO ddm_decl_status (enrollment_id, identifier, kind, server_token, active, valid, reasons_json,"
        "  updated_at) VALUES ($1::text, $2::text, $3::text, $4::text, $5::boolean, $6::text, $7::text, $8::bigint)"
        " ON CONFLICT (enrollment_id, identifier) DO UPDATE SET kind = excluded.kind,"
        "  server_token = excluded.server_token, active = excluded.active, valid = excluded.valid,"
        "  reasons_json = excluded.reasons_json, updated_at = excluded.updated_at",
    [X_STATUS_AT - PG_ST_DDM] = "INSERT INTO ddm_state (enrollment_id, status_at) VALUES ($1::text, $2::bigint)"
                                " ON CONFLICT (enrollment_id) DO UPDATE SET status_at = excluded.status_at",
    [X_EVENT - PG_ST_DDM] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                            " VALUES ($1::bigint, $2::text, $3::text, $4::text)",
    [X_ITEM_GET - PG_ST_DDM] = "SELECT name, value_json, updated_at FROM ddm_status_items"
                               " WHERE enrollment_id = $1::text AND name = $2::text",
    [X_ITEMS - PG_ST_DDM] = "SELECT name, value_json, updated_at FROM ddm_status_items WHERE enrollment_id = $1::text"
                            " ORDER BY name",
    [X_DECL_STATUSES - PG_ST_DDM] = "SELECT identifier, kind, server_token, active, valid, reasons_json, updated_at"
                                    " FROM ddm_decl_status WHERE enrollment_id = $1::text ORDER BY identifier",

    [X_ASSET_PUT - PG_ST_DDM] =
        "INSERT INTO asset_data (name, content_type, data, sha256, updated_at)"
        " VALUES ($1::text, $2::text, $3::bytea, $4::text, $5::bigint)"
        " ON CONFLICT (name) DO UPDATE SET content_type = excluded.content_type, data = excluded.data,"
        "  sha256 = excluded.sha256, updated_at = excluded.updated_at",
    [X_ASSET_GET - PG_ST_DDM] = "SELECT name, content_type, data, sha256, updated_at FROM asset_data"
                                " WHERE name = $1::text",
    [X_ASSET_DROP - PG_ST_DDM] = "DELETE FROM asset_data WHERE name = $1::text",
};

static int run(pg_store *s, int id, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    return pg_run(s, id, sql[id - PG_ST_DDM], p, what, res, rows);
}

/* Runs statement `id` with up to three text parameters (NULL = SQL NULL)
 * and optionally a trailing integer. */
static int run_texts(pg_store *s, int id, int n, const char *a, const char *b, const char *c, const int64_t *num,
                     const char *what, PGresult **res, int *rows)
{
    pg_params p;
    pgp_init(&p);
    const char *v[3] = {a, b, c};
    for (int i = 0; i < n; i++)
        pgp_text(&p, v[i]);
    if (num)
        pgp_int(&p, *num);
    return run(s, id, &p, what, res, rows);
}

/* Commits when rc is STORE_OK, rolls back otherwise; returns the result. */
static int finish(pg_store *s, int rc)
{
    return rc == STORE_OK ? pg_tx_commit(s) : pg_tx_abort(s, rc);
}

static int read_decl(const PGresult *r, int row, declaration_t *d)
{
    memset(d, 0, sizeof *d);
    int bad = pgc_text(r, row, 0, &d->identifier) | pgc_text(r, row, 1, &d->type) | pgc_text(r, row, 2, &d->kind) |
              pgc_text(r, row, 3, &d->payload_json) | pgc_text(r, row, 4, &d->server_token);
    d->created_at = pgc_int(r, row, 5);
    d->updated_at = pgc_int(r, row, 6);
    if (bad) {
        declaration_free(d);
        return -1;
    }
    return 0;
}

static int stream_decls(pg_store *s, PGresult *r, declaration_cb cb, void *ctx)
{
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        declaration_t d;
        if (read_decl(r, i, &d) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &d) : 0;
        declaration_free(&d);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

/* A one-key listing of names (column 0). */
static int list_names(store_t *base, int id, const char *key, name_cb cb, void *ctx, const char *what)
{
    pg_store *s = pgs(base);
    if (!key)
        return pg_fail_arg(s, what);
    PGresult *r;
    if (run_texts(s, id, 1, key, NULL, NULL, NULL, what, &r, NULL) != STORE_OK)
        return STORE_ERR;
    for (int i = 0; i < PQntuples(r); i++)
        if (cb && cb(ctx, PQgetvalue(r, i, 0)))
            break;
    PQclear(r);
    return STORE_OK;
}

/* ---- re-enrollment ------------------------------------------------------- */

int pg_ddm_forget(pg_store *s, const char *device_id)
{
    return run_texts(s, X_FORGET, 1, device_id, NULL, NULL, NULL, "forgetting DDM state", NULL, NULL);
}

/* ---- declarations -------------------------------------------------------- */

/* STORE_OK if every identifier names a declaration. */
static int all_declared(pg_store *s, const char *const *ids, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int rows = 0;
        if (run_texts(s, X_DECL_GET, 1, ids[i], NULL, NULL, NULL, "looking up declaration", NULL, &rows) != STORE_OK)
            return STORE_ERR;
        if (rows == 0)
            return pg_fail(s, STORE_NOTFOUND, "declaration %s not found", ids[i]);
    }
    return STORE_OK;
}

static int decl_put_in_tx(pg_store *s, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now,
                          int *changed)
{
    int rc = all_declared(s, refs, nrefs);
    if (rc != STORE_OK)
        return rc;
    PGresult *r;
    if (run_texts(s, X_DECL_TOKEN, 1, d->identifier, NULL, NULL, NULL, "reading declaration", &r, NULL) != STORE_OK)
        return STORE_ERR;
    /* The token is derived from the content, references included. */
    int same = PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), d->server_token) == 0;
    PQclear(r);
    if (same)
        return STORE_OK;

    pg_params p;
    pgp_init(&p);
    pgp_text(&p, d->identifier);
    pgp_text(&p, d->type);
    pgp_text(&p, d->kind);
    pgp_text(&p, d->payload_json);
    pgp_text(&p, d->server_token);
    pgp_int(&p, now);
    if (run(s, X_DECL_UPSERT, &p, "storing declaration", NULL, NULL) != STORE_OK ||
        run_texts(s, X_REFS_CLEAR, 1, d->identifier, NULL, NULL, NULL, "replacing references", NULL, NULL) !=
            STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < nrefs; i++)
        if (run_texts(s, X_REF_ADD, 2, d->identifier, refs[i], NULL, NULL, "storing reference", NULL, NULL) !=
            STORE_OK)
            return STORE_ERR;
    *changed = 1;
    return STORE_OK;
}

int pg_decl_put(store_t *base, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now,
                int *changed)
{
    pg_store *s = pgs(base);
    if (!changed || !d || !d->identifier || !*d->identifier || !d->type || !d->kind || !d->payload_json ||
        !d->server_token || (nrefs && !refs))
        return pg_fail_arg(s, "decl_put");
    for (size_t i = 0; i < nrefs; i++)
        if (!refs[i])
            return pg_fail_arg(s, "decl_put");
    *changed = 0;
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int c = 0;
    int rc = finish(s, decl_put_in_tx(s, d, refs, nrefs, now, &c));
    if (rc == STORE_OK)
        *changed = c;
    return rc;
}

int pg_decl_get(store_t *base, const char *identifier, declaration_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!identifier)
        return pg_fail_arg(s, "decl_get");
    PGresult *r;
    if (run_texts(s, X_DECL_GET, 1, identifier, NULL, NULL, NULL, "reading declaration", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "declaration %s not found", identifier);
    else
        rc = read_decl(r, 0, out) == 0 ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

static int decl_delete_in_tx(pg_store *s, const char *identifier, char **referrer)
{
    PGresult *r;
    int rows = 0;
    /* Locks the row: a put referencing it must wait for the outcome. */
    if (run_texts(s, X_DECL_TOKEN, 1, identifier, NULL, NULL, NULL, "reading declaration", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    if (rows == 0)
        return pg_fail(s, STORE_NOTFOUND, "declaration %s not found", identifier);
    if (run_texts(s, X_DECL_REFERRER, 1, identifier, NULL, NULL, NULL, "looking for referrers", &r, NULL) !=
        STORE_OK)
        return STORE_ERR;
    if (PQntuples(r) > 0) {
        int bad = pgc_text(r, 0, 0, referrer);
        PQclear(r);
        return bad ? pg_fail_oom(s) : pg_fail(s, STORE_CONFLICT, "declaration %s is referenced by %s", identifier,
                                              *referrer);
    }
    PQclear(r);
    return run_texts(s, X_DECL_DROP, 1, identifier, NULL, NULL, NULL, "deleting declaration", NULL, NULL);
}

int pg_decl_delete(store_t *base, const char *identifier, char **referrer)
{
    pg_store *s = pgs(base);
    if (referrer)
        *referrer = NULL;
    if (!identifier)
        return pg_fail_arg(s, "decl_delete");
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    char *who = NULL;
    int rc = finish(s, decl_delete_in_tx(s, identifier, &who));
    if (rc == STORE_CONFLICT && referrer)
        *referrer = who;
    else
        free(who);
    return rc;
}

int pg_decl_list(store_t *base, const char *kind, declaration_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    PGresult *r;
    if (run_texts(s, kind ? X_DECL_LIST_KIND : X_DECL_LIST_ALL, kind ? 1 : 0, kind, NULL, NULL, NULL,
                  "listing declarations", &r, NULL) != STORE_OK)
        return STORE_ERR;
    return stream_decls(s, r, cb, ctx);
}

int pg_decl_referrers(store_t *base, const char *identifier, name_cb cb, void *ctx)
{
    return list_names(base, X_DECL_REFERRERS, identifier, cb, ctx, "decl_referrers");
}

/* ---- sets ---------------------------------------------------------------- */

static int set_put_in_tx(pg_store *s, const char *name, const char *const *members, size_t n, int64_t now)
{
    int rc = all_declared(s, members, n);
    if (rc != STORE_OK)
        return rc;
    if (run_texts(s, X_SET_UPSERT, 1, name, NULL, NULL, &now, "storing set", NULL, NULL) != STORE_OK ||
        run_texts(s, X_SET_CLEAR, 1, name, NULL, NULL, NULL, "replacing set members", NULL, NULL) != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < n; i++)
        if (run_texts(s, X_SET_ADD, 2, name, members[i], NULL, NULL, "storing set member", NULL, NULL) != STORE_OK)
            return STORE_ERR;
    return STORE_OK;
}

int pg_set_put(store_t *base, const char *name, const char *const *members, size_t n, int64_t now)
{
    pg_store *s = pgs(base);
    /* '\n' separates set names in the sets lists (ddm_candidate_t.sets). */
    if (!name || !*name || strchr(name, '\n') || (n && !members))
        return pg_fail_arg(s, "set_put");
    for (size_t i = 0; i < n; i++)
        if (!members[i])
            return pg_fail_arg(s, "set_put");
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    return finish(s, set_put_in_tx(s, name, members, n, now));
}

int pg_set_delete(store_t *base, const char *name)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "set_delete");
    int rows = 0;
    if (run_texts(s, X_SET_DROP, 1, name, NULL, NULL, NULL, "deleting set", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "set %s not found", name);
}

int pg_set_list(store_t *base, name_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    PGresult *r;
    if (run(s, X_SET_LIST, NULL, "listing sets", &r, NULL) != STORE_OK)
        return STORE_ERR;
    for (int i = 0; i < PQntuples(r); i++)
        if (cb && cb(ctx, PQgetvalue(r, i, 0)))
            break;
    PQclear(r);
    return STORE_OK;
}

/* STORE_NOTFOUND for an unknown set (an empty one is STORE_OK). */
int pg_set_members(store_t *base, const char *name, declaration_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "set_members");
    int rows = 0;
    if (run_texts(s, X_SET_EXISTS, 1, name, NULL, NULL, NULL, "reading set", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    if (rows == 0)
        return pg_fail(s, STORE_NOTFOUND, "set %s not found", name);
    PGresult *r;
    if (run_texts(s, X_SET_MEMBERS, 1, name, NULL, NULL, NULL, "listing set members", &r, NULL) != STORE_OK)
        return STORE_ERR;
    return stream_decls(s, r, cb, ctx);
}

int pg_decl_sets(store_t *base, const char *identifier, name_cb cb, void *ctx)
{
    return list_names(base, X_DECL_SETS, identifier, cb, ctx, "decl_sets");
}

/* ---- assignments and groups ---------------------------------------------- */

/* "all" has target "" whatever is given; the others need a non-empty one.
 * NULL if invalid. */
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

int pg_set_assign(store_t *base, const char *set_name, const char *target_kind, const char *target, int64_t now)
{
    pg_store *s = pgs(base);
    const char *t = assignment_target(target_kind, target);
    if (!set_name || !t)
        return pg_fail_arg(s, "set_assign");
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int rows = 0;
    int rc = run_texts(s, X_SET_EXISTS, 1, set_name, NULL, NULL, NULL, "reading set", NULL, &rows);
    if (rc == STORE_OK && rows == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "set %s not found", set_name);
    if (rc == STORE_OK)
        rc = run_texts(s, X_ASSIGN, 3, set_name, target_kind, t, &now, "storing assignment", NULL, NULL);
    return finish(s, rc);
}

int pg_set_unassign(store_t *base, const char *set_name, const char *target_kind, const char *target)
{
    pg_store *s = pgs(base);
    const char *t = assignment_target(target_kind, target);
    if (!set_name || !t)
        return pg_fail_arg(s, "set_unassign");
    int rows = 0;
    if (run_texts(s, X_UNASSIGN, 3, set_name, target_kind, t, NULL, "removing assignment", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "set %s is not assigned there", set_name);
}

int pg_set_assignments(store_t *base, const char *set_name, assignment_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    PGresult *r;
    if (run_texts(s, set_name ? X_ASSIGNMENTS_SET : X_ASSIGNMENTS_ALL, set_name ? 1 : 0, set_name, NULL, NULL, NULL,
                  "listing assignments", &r, NULL) != STORE_OK)
        return STORE_ERR;
    for (int i = 0; i < PQntuples(r); i++)
        if (cb && cb(ctx, PQgetvalue(r, i, 0), PQgetvalue(r, i, 1), PQgetvalue(r, i, 2)))
            break;
    PQclear(r);
    return STORE_OK;
}

int pg_group_add(store_t *base, const char *group, const char *enrollment_id, int64_t now)
{
    pg_store *s = pgs(base);
    if (!group || !*group || !enrollment_id || !*enrollment_id)
        return pg_fail_arg(s, "group_add");
    return run_texts(s, X_GROUP_ADD, 2, group, enrollment_id, NULL, &now, "adding group member", NULL, NULL);
}

int pg_group_remove(store_t *base, const char *group, const char *enrollment_id)
{
    pg_store *s = pgs(base);
    if (!group || !enrollment_id)
        return pg_fail_arg(s, "group_remove");
    int rows = 0;
    if (run_texts(s, X_GROUP_REMOVE, 2, group, enrollment_id, NULL, NULL, "removing group member", NULL, &rows) !=
        STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "%s is not a member of group %s", enrollment_id, group);
}

int pg_group_members(store_t *base, const char *group, name_cb cb, void *ctx)
{
    return list_names(base, X_GROUP_MEMBERS, group, cb, ctx, "group_members");
}

int pg_enrollment_groups(store_t *base, const char *enrollment_id, name_cb cb, void *ctx)
{
    return list_names(base, X_ENR_GROUPS, enrollment_id, cb, ctx, "enrollment_groups");
}

/* ---- effective declarations ---------------------------------------------- */

int pg_ddm_effective(store_t *base, const char *sets_csv, declaration_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (!sets_csv)
        return pg_fail_arg(s, "ddm_effective");
    PGresult *r;
    if (run_texts(s, X_EFFECTIVE, 1, sets_csv, NULL, NULL, NULL, "computing effective declarations", &r, NULL) !=
        STORE_OK)
        return STORE_ERR;
    return stream_decls(s, r, cb, ctx);
}

int pg_ddm_enrollment_sets(store_t *base, const char *enrollment_id, char **sets_csv)
{
    pg_store *s = pgs(base);
    if (!sets_csv)
        return pg_fail_arg(s, "ddm_enrollment_sets");
    *sets_csv = NULL;
    if (!enrollment_id)
        return pg_fail_arg(s, "ddm_enrollment_sets");
    PGresult *r;
    if (run_texts(s, X_ENR_SETS, 1, enrollment_id, NULL, NULL, NULL, "listing an enrollment's sets", &r, NULL) !=
        STORE_OK)
        return STORE_ERR;
    int rc = PQntuples(r) == 1 && pgc_text(r, 0, 0, sets_csv) == 0 && *sets_csv ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

/* ---- candidates ---------------------------------------------------------- */

/* Pages through the active enrollments in id order; each page is its own
 * read, so a long fan-out holds no snapshot open (an enrollment changing
 * meanwhile is seen either way, and the next fan-out catches up). */
int pg_ddm_candidates(store_t *base, ddm_candidate_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    enum { C_SETS = PG_ENR_NCOLUMNS, C_TOKEN, C_PENDING };
    char *after = NULL;
    int rc = STORE_OK, stop = 0;
    while (rc == STORE_OK && !stop) {
        pg_params p;
        pgp_init(&p);
        pgp_text(&p, after);
        pgp_int(&p, CANDIDATE_PAGE);
        PGresult *r;
        if (run(s, X_CANDIDATES, &p, "listing DDM candidates", &r, NULL) != STORE_OK) {
            rc = STORE_ERR;
            break;
        }
        int n = PQntuples(r);
        for (int i = 0; i < n && !stop; i++) {
            enrollment_t e;
            if (pg_read_enrollment(r, i, &e) != 0) {
                rc = pg_fail_oom(s);
                break;
            }
            ddm_candidate_t c = {.enrollment = &e,
                                 .sets = PQgetisnull(r, i, C_SETS) ? "" : PQgetvalue(r, i, C_SETS),
                                 .token = PQgetisnull(r, i, C_TOKEN) ? NULL : PQgetvalue(r, i, C_TOKEN),
                                 .sync_pending = pgc_int(r, i, C_PENDING) != 0};
            stop = cb ? cb(ctx, &c) : 0;
            enrollment_free(&e);
        }
        free(after);
        after = NULL;
        if (rc == STORE_OK && n == CANDIDATE_PAGE && !stop && pgc_text(r, n - 1, 0, &after) != 0)
            rc = pg_fail_oom(s);
        PQclear(r);
        if (n < CANDIDATE_PAGE)
            break;
    }
    free(after);
    return rc;
}

/* ---- sync bookkeeping ---------------------------------------------------- */

int pg_ddm_state_get(store_t *base, const char *enrollment_id, ddm_state_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!enrollment_id)
        return pg_fail_arg(s, "ddm_state_get");
    PGresult *r;
    if (run_texts(s, X_STATE_GET, 1, enrollment_id, NULL, NULL, NULL, "reading DDM state", &r, NULL) != STORE_OK)
        return STORE_ERR;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return pg_fail(s, STORE_NOTFOUND, "no DDM state for %s", enrollment_id);
    }
    int bad = pgc_text(r, 0, 0, &out->enrollment_id) | pgc_text(r, 0, 1, &out->token);
    out->sync_pending = pgc_int(r, 0, 2) != 0;
    out->token_changed_at = pgc_int(r, 0, 3);
    out->status_at = pgc_int(r, 0, 4);
    out->manifest_at = pgc_int(r, 0, 5);
    PQclear(r);
    if (bad) {
        ddm_state_free(out);
        return pg_fail_oom(s);
    }
    return STORE_OK;
}

/* Updates one target's token and queues the sync command for it unless one
 * is waiting. *command_id is 0 until the command row is stored, which
 * happens for the first target that needs it. */
static int sync_one(pg_store *s, const command_t *cmd, const char *id, const char *token, int64_t now,
                    int64_t *command_id, int *queued)
{
    /* The token upsert comes first: it locks the state row, so the read
     * below sees what a concurrent fan-out committed for this enrollment. */
    if (run_texts(s, X_SYNC_TOKEN, 2, id, token, NULL, &now, "storing declarations token", NULL, NULL) != STORE_OK)
        return STORE_ERR;
    PGresult *r;
    if (run_texts(s, X_SYNC_PENDING, 1, id, NULL, NULL, NULL, "reading DDM state", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int pending = pgc_int(r, 0, 0) != 0, known = pgc_int(r, 0, 1) != 0;
    PQclear(r);
    if (pending || !known)
        return STORE_OK;
    /* Store the command only for a target that can take it. */
    int rc;
    if (*command_id == 0 && (rc = pg_command_insert(s, cmd, now, command_id)) != STORE_OK)
        return rc;
    int added = 0;
    if (pg_command_target_add(s, *command_id, cmd, id, now, &added) != STORE_OK)
        return STORE_ERR;
    if (!added)
        return STORE_OK;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_int(&p, *command_id);
    if (run(s, X_SYNC_MARK, &p, "marking sync pending", NULL, NULL) != STORE_OK)
        return STORE_ERR;
    *queued = 1;
    return STORE_OK;
}

static int sync_queue_in_tx(pg_store *s, const command_t *cmd, const char *const *ids, const char *const *tokens,
                            size_t n, int64_t now, int *queued)
{
    /* Checked up front: when no target needs the command it is never
     * inserted, and a reused UUID must still be refused. */
    int rows = 0;
    if (run_texts(s, X_CMD_EXISTS, 1, cmd->uuid, NULL, NULL, NULL, "looking up command", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    if (rows)
        return pg_fail(s, STORE_CONFLICT, "command %s already exists", cmd->uuid);
    int64_t command_id = 0;
    for (size_t i = 0; i < n; i++) {
        int rc = sync_one(s, cmd, ids[i], tokens[i], now, &command_id, &queued[i]);
        if (rc != STORE_OK)
            return rc;
    }
    return STORE_OK;
}

int pg_ddm_sync_queue(store_t *base, const command_t *cmd, const char *const *ids, const char *const *tokens,
                      size_t n, int64_t now, int *queued)
{
    pg_store *s = pgs(base);
    if (!cmd || !cmd->uuid || !cmd->request_type || !cmd->body || (n && (!ids || !tokens || !queued)))
        return pg_fail_arg(s, "ddm_sync_queue");
    for (size_t i = 0; i < n; i++) {
        if (!ids[i])
            return pg_fail_arg(s, "ddm_sync_queue");
        queued[i] = 0;
    }
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int rc = finish(s, sync_queue_in_tx(s, cmd, ids, tokens, n, now, queued));
    if (rc != STORE_OK) /* rolled back: nothing was queued */
        for (size_t i = 0; i < n; i++)
            queued[i] = 0;
    return rc;
}

/* Clearing a flag that is not set (or of an enrollment without DDM state)
 * is STORE_OK: the hand-out happened either way. */
int pg_ddm_handed_out(store_t *base, const char *enrollment_id, int64_t now)
{
    pg_store *s = pgs(base);
    (void)now;
    if (!enrollment_id)
        return pg_fail_arg(s, "ddm_handed_out");
    return run_texts(s, X_HANDED_OUT, 1, enrollment_id, NULL, NULL, NULL, "recording sync hand-out", NULL, NULL);
}

/* Creates the state row if needed, like a status report does. */
int pg_ddm_touch(store_t *base, const char *enrollment_id, int64_t now)
{
    pg_store *s = pgs(base);
    if (!enrollment_id)
        return pg_fail_arg(s, "ddm_touch");
    return run_texts(s, X_TOUCH, 1, enrollment_id, NULL, NULL, &now, "recording manifest fetch", NULL, NULL);
}

/* ---- status channel ------------------------------------------------------ */

/* The "ddm_status_errors" event detail for a report's Errors text: the JSON
 * as compact JSON, or a string when it is not JSON (the log must not lose
 * what the device said). NULL (no event) for an empty array; *oom set
 * when out of memory. */
static char *errors_detail(const char *errors_json, int *oom)
{
    *oom = 0;
    json_t *v = json_loads(errors_json, JSON_DECODE_ANY, NULL);
    if (v && json_is_array(v) && json_array_size(v) == 0) {
        json_decref(v);
        return NULL;
    }
    if (!v)
        v = json_string(errors_json);
    if (!v) /* not UTF-8 either */
        v = json_string("(not UTF-8)");
    json_t *obj = json_object();
    char *text = NULL;
    if (obj && v && json_object_set_new(obj, "errors", v) == 0) {
        v = NULL;
        text = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
    }
    json_decref(v);
    json_decref(obj);
    if (!text)
        *oom = 1;
    return text;
}

static int status_in_tx(pg_store *s, const char *id, const ddm_status_item_t *items, size_t nitems,
                        const ddm_decl_status_t *decls, size_t ndecls, int replace_decls, const char *errors_json,
                        int64_t now)
{
    for (size_t i = 0; i < nitems; i++)
        if (run_texts(s, X_ITEM_UPSERT, 3, id, items[i].name, items[i].value_json, &now, "storing status item", NULL,
                      NULL) != STORE_OK)
            return STORE_ERR;
    if (replace_decls &&
        run_texts(s, X_DECLS_CLEAR, 1, id, NULL, NULL, NULL, "replacing declaration statuses", NULL, NULL) != STORE_OK)
        return STORE_ERR;
    for (size_t i = 0; i < ndecls; i++) {
        const ddm_decl_status_t *d = &decls[i];
        pg_params p;
        pgp_init(&p);
        pgp_text(&p, id);
        pgp_text(&p, d->identifier);
        pgp_text(&p, d->kind);
        pgp_text(&p, d->server_token);
        pgp_bool(&p, d->active != 0);
        pgp_text(&p, d->valid);
        pgp_text(&p, d->reasons_json);
        pgp_int(&p, now);
        if (run(s, X_DECL_STATUS_UPSERT, &p, "storing declaration status", NULL, NULL) != STORE_OK)
            return STORE_ERR;
    }
    if (run_texts(s, X_STATUS_AT, 1, id, NULL, NULL, &now, "recording status report", NULL, NULL) != STORE_OK)
        return STORE_ERR;
    if (!errors_json || !*errors_json)
        return STORE_OK;
    int oom = 0;
    char *detail = errors_detail(errors_json, &oom);
    if (!detail)
        return oom ? pg_fail_oom(s) : STORE_OK;
    pg_params p;
    pgp_init(&p);
    pgp_int(&p, now);
    pgp_text(&p, id);
    pgp_text(&p, "ddm_status_errors");
    pgp_text(&p, detail);
    int rc = run(s, X_EVENT, &p, "logging status errors", NULL, NULL);
    free(detail);
    return rc;
}

int pg_ddm_status_record(store_t *base, const char *enrollment_id, const ddm_status_item_t *items, size_t nitems,
                         const ddm_decl_status_t *decls, size_t ndecls, int replace_decls, const char *errors_json,
                         int64_t now)
{
    pg_store *s = pgs(base);
    if (!enrollment_id || (nitems && !items) || (ndecls && !decls))
        return pg_fail_arg(s, "ddm_status_record");
    for (size_t i = 0; i < nitems; i++)
        if (!items[i].name || !items[i].value_json)
            return pg_fail_arg(s, "ddm_status_record");
    for (size_t i = 0; i < ndecls; i++)
        if (!decls[i].identifier)
            return pg_fail_arg(s, "ddm_status_record");
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    return finish(s, status_in_tx(s, enrollment_id, items, nitems, decls, ndecls, replace_decls, errors_json, now));
}

static int read_item(const PGresult *r, int row, ddm_status_item_t *i)
{
    memset(i, 0, sizeof *i);
    int bad = pgc_text(r, row, 0, &i->name) | pgc_text(r, row, 1, &i->value_json);
    i->updated_at = pgc_int(r, row, 2);
    if (bad) {
        ddm_status_item_free(i);
        return -1;
    }
    return 0;
}

int pg_ddm_status_item_get(store_t *base, const char *enrollment_id, const char *name, ddm_status_item_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!enrollment_id || !name)
        return pg_fail_arg(s, "ddm_status_item_get");
    PGresult *r;
    if (run_texts(s, X_ITEM_GET, 2, enrollment_id, name, NULL, NULL, "reading status item", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "no status item %s for %s", name, enrollment_id);
    else
        rc = read_item(r, 0, out) == 0 ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

int pg_ddm_status_items(store_t *base, const char *enrollment_id, ddm_status_item_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (!enrollment_id)
        return pg_fail_arg(s, "ddm_status_items");
    PGresult *r;
    if (run_texts(s, X_ITEMS, 1, enrollment_id, NULL, NULL, NULL, "listing status items", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        ddm_status_item_t it;
        if (read_item(r, i, &it) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &it) : 0;
        ddm_status_item_free(&it);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

int pg_ddm_decl_statuses(store_t *base, const char *enrollment_id, ddm_decl_status_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (!enrollment_id)
        return pg_fail_arg(s, "ddm_decl_statuses");
    PGresult *r;
    if (run_texts(s, X_DECL_STATUSES, 1, enrollment_id, NULL, NULL, NULL, "listing declaration statuses", &r, NULL) !=
        STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        ddm_decl_status_t d;
        memset(&d, 0, sizeof d);
        int bad = pgc_text(r, i, 0, &d.identifier) | pgc_text(r, i, 1, &d.kind) | pgc_text(r, i, 2, &d.server_token) |
                  pgc_text(r, i, 4, &d.valid) | pgc_text(r, i, 5, &d.reasons_json);
        d.active = pgc_int(r, i, 3) != 0;
        d.updated_at = pgc_int(r, i, 6);
        if (bad) {
            ddm_decl_status_free(&d);
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &d) : 0;
        ddm_decl_status_free(&d);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

/* ---- asset data ---------------------------------------------------------- */

int pg_asset_data_put(store_t *base, const asset_data_t *a, int64_t now)
{
    pg_store *s = pgs(base);
    if (!a || !a->name || !*a->name || !a->content_type || !a->sha256 || (a->len && !a->data))
        return pg_fail_arg(s, "asset_data_put");
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, a->name);
    pgp_text(&p, a->content_type);
    /* Empty data is stored as an empty value, never NULL. */
    pgp_blob(&p, a->data ? (const void *)a->data : (const void *)"", a->len);
    pgp_text(&p, a->sha256);
    pgp_int(&p, now);
    return run(s, X_ASSET_PUT, &p, "storing asset data", NULL, NULL);
}

int pg_asset_data_get(store_t *base, const char *name, asset_data_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    if (!name)
        return pg_fail_arg(s, "asset_data_get");
    PGresult *r;
    if (run_texts(s, X_ASSET_GET, 1, name, NULL, NULL, NULL, "reading asset data", &r, NULL) != STORE_OK)
        return STORE_ERR;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return pg_fail(s, STORE_NOTFOUND, "asset data %s not found", name);
    }
    int bad = pgc_text(r, 0, 0, &out->name) | pgc_text(r, 0, 1, &out->content_type) |
              pgc_blob(r, 0, 2, &out->data, &out->len) | pgc_text(r, 0, 3, &out->sha256);
    out->updated_at = pgc_int(r, 0, 4);
    PQclear(r);
    if (bad) {
        asset_data_free(out);
        return pg_fail_oom(s);
    }
    return STORE_OK;
}

int pg_asset_data_delete(store_t *base, const char *name)
{
    pg_store *s = pgs(base);
    if (!name)
        return pg_fail_arg(s, "asset_data_delete");
    int rows = 0;
    if (run_texts(s, X_ASSET_DROP, 1, name, NULL, NULL, NULL, "deleting asset data", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "asset data %s not found", name);
}
