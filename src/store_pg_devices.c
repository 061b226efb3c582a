/* PostgreSQL backend: enrollments, commands and the event log (store.h).
 * The semantics are the SQLite backend's (store_sqlite.c); what differs is
 * how they stay correct with several orchard instances on one database
 * (store_pg.c explains the approach):
 *   - a write and its event are one statement where possible (a
 *     data-modifying WITH), which is atomic and durable on its own and costs
 *     one round trip;
 *   - a device exchange is a single statement: the report is applied only
 *     to a target still pending (the row lock makes a concurrent duplicate
 *     re-check that and change nothing) and the next command is chosen in
 *     the same statement;
 *   - authenticate locks the device's rows before deciding about
 *     re-enrollment.
 * Event details are assembled in SQL in the compact JSON form the SQLite
 * backend writes (orchard_json_str, store_pg_schema.c). */
#include <stdlib.h>
#include <string.h>

#include "store_pg_internal.h"

#define TARGET_COLUMNS                                                                                   \
    "c.uuid, t.enrollment_id, c.request_type, t.status, t.result, t.error_chain, t.queued_at, "          \
    "t.updated_at"
#define COMMAND_COLUMNS "c.uuid, c.request_type, c.body, c.created_at"

enum {
    D_ENR_GET = PG_ST_CORE,
    D_ENR_BY_CERT,
    D_ENR_EXISTS,
    D_AUTH_LOCK,
    D_AUTH_UPSERT,
    D_REENROLL_CANCEL,
    D_AUTH_EVENT,
    D_TOKEN_DEVICE,
    D_TOKEN_USER,
    D_TOKEN_EVENT,
    D_CHECKOUT,
    D_TOUCH,
    D_COUNT_ALL,
    D_COUNT_STATE,
    D_CMD_INSERT,
    D_TARGET_INSERT,
    D_EXCHANGE_REPORT,
    D_NEXT_ANY,
    D_CMD_GET,
    D_TARGETS_OF_CMD,
    D_ENR_CMDS_ALL,
    D_ENR_CMDS_PENDING,
    D_CANCEL,
    D_EVENT_ADD,
    D_EVENT_LIST_ALL,
    D_EVENT_LIST_ENR,
    D_COUNT_
};

_Static_assert((int)D_COUNT_ <= (int)PG_ST_LIST, "statement ids overlap");

static const char *const sql[] = {
    [D_ENR_GET] = "SELECT " PG_ENR_COLUMNS " FROM enrollments WHERE id = $1::text",
    /* Should two device rows carry the same certificate, prefer the one
     * still enrolled, then the most recently changed. */
    [D_ENR_BY_CERT] = "SELECT " PG_ENR_COLUMNS " FROM enrollments"
                      " WHERE cert_sha256 = $1::text AND channel = 'device'"
                      " ORDER BY state = 'inactive', updated_at DESC, id LIMIT 1",
    [D_ENR_EXISTS] = "SELECT 1 FROM enrollments WHERE id = $1::text",
    /* Locks the device row and its user channels for the rest of the
     * transaction (in id order, so two authenticates cannot deadlock). FOR
     * UPDATE, not FOR NO KEY UPDATE: it must also wait for an enqueue in
     * flight to this device, whose foreign-key check holds KEY SHARE. */
    [D_AUTH_LOCK] = "SELECT id, state FROM enrollments WHERE id = $1::text OR device_id = $1::text"
                    " ORDER BY id FOR UPDATE",
    /* Identity fields not given (NULL) keep their stored value. */
    [D_AUTH_UPSERT] =
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, model_name,"
        "  product_name, os_version, build_version, device_name, imei, meid, cert_sha256, state,"
        "  created_at, updated_at, last_seen_at, authenticated_at)"
        " VALUES ($1::text, $1::text, $2::text, 'device', $3::text, $4::text, $5::text, $6::text, $7::text,"
        "  $8::text, $9::text, $10::text, $11::text, $12::text, $13::text, 'authenticated',"
        "  $14::bigint, $14::bigint, $14::bigint, $14::bigint)"
        " ON CONFLICT (id) DO UPDATE SET"
        "  udid = COALESCE(excluded.udid, enrollments.udid),"
        "  topic = COALESCE(excluded.topic, enrollments.topic),"
        "  serial_number = COALESCE(excluded.serial_number, enrollments.serial_number),"
        "  model = COALESCE(excluded.model, enrollments.model),"
        "  model_name = COALESCE(excluded.model_name, enrollments.model_name),"
        "  product_name = COALESCE(excluded.product_name, enrollments.product_name),"
        "  os_version = COALESCE(excluded.os_version, enrollments.os_version),"
        "  build_version = COALESCE(excluded.build_version, enrollments.build_version),"
        "  device_name = COALESCE(excluded.device_name, enrollments.device_name),"
        "  imei = COALESCE(excluded.imei, enrollments.imei),"
        "  meid = COALESCE(excluded.meid, enrollments.meid),"
        "  cert_sha256 = COALESCE(excluded.cert_sha256, enrollments.cert_sha256),"
        "  state = CASE WHEN enrollments.state = 'inactive' THEN 'authenticated' ELSE enrollments.state END,"
        "  updated_at = excluded.updated_at,"
        "  last_seen_at = excluded.last_seen_at, silent_since = 0,"
        "  authenticated_at = excluded.authenticated_at",
    /* Re-enrollment cancels what is still pending for the device channel
     * and its user channels, with one event per cancelled command. */
    [D_REENROLL_CANCEL] =
        "WITH c AS ("
        "  UPDATE command_targets t SET status = 'cancelled', updated_at = $1::bigint"
        "  FROM enrollments e WHERE e.device_id = $2::text AND t.enrollment_id = e.id AND t.pending"
        "  RETURNING t.seq, t.enrollment_id, t.command_id)"
        " INSERT INTO events (at, enrollment_id, kind, detail)"
        " SELECT $1::bigint, c.enrollment_id, 'command_cancelled',"
        "  '{\"command_uuid\":' || orchard_json_str(m.uuid) || ',\"request_type\":' ||"
        "  orchard_json_str(m.request_type) || ',\"reason\":\"re-enrollment\"}'"
        " FROM c JOIN commands m ON m.id = c.command_id ORDER BY c.seq",
    [D_AUTH_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                     " VALUES ($1::bigint, $2::text, 'authenticate',"
                     "  '{\"previous_state\":' || orchard_json_str($3::text) || ',\"state\":' ||"
                     "  orchard_json_str($4::text) || ',\"cert_sha256\":' || orchard_json_str($5::text) ||"
                     "  ',\"cancelled_commands\":' || $6::bigint || '}')",

    /* Push fields not given (NULL) keep their stored value. */
    [D_TOKEN_DEVICE] = "UPDATE enrollments SET"
                       "  topic = COALESCE($2::text, topic),"
                       "  push_token = COALESCE($3::bytea, push_token),"
                       "  push_magic = COALESCE($4::text, push_magic),"
                       "  unlock_token = COALESCE($5::bytea, unlock_token),"
                       "  state = 'active', token_updated_at = $6::bigint, updated_at = $6::bigint,"
                       "  last_seen_at = $6::bigint, push_token_invalid = false, silent_since = 0"
                       " WHERE id = $1::text",
    /* A user channel inherits the UDID and certificate binding of its
     * device channel; nothing is inserted when that does not exist. The DO
     * UPDATE guard keeps a device row with the requested id a device row. */
    [D_TOKEN_USER] =
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, user_id, user_short_name,"
        "  user_long_name, cert_sha256, state, push_token, push_magic, unlock_token, created_at,"
        "  updated_at, last_seen_at, token_updated_at)"
        " SELECT $1::text, d.id, d.udid, 'user', COALESCE($3::text, d.topic), $4::text, $5::text, $6::text,"
        "  d.cert_sha256, 'active', $7::bytea, $8::text, $9::bytea, $10::bigint, $10::bigint, $10::bigint,"
        "  $10::bigint"
        " FROM enrollments d WHERE d.id = $2::text AND d.channel = 'device'"
        " ON CONFLICT (id) DO UPDATE SET"
        "  device_id = excluded.device_id,"
        "  udid = excluded.udid,"
        "  cert_sha256 = excluded.cert_sha256,"
        "  topic = COALESCE($3::text, enrollments.topic),"
        "  user_id = COALESCE($4::text, enrollments.user_id),"
        "  user_short_name = COALESCE($5::text, enrollments.user_short_name),"
        "  user_long_name = COALESCE($6::text, enrollments.user_long_name),"
        "  push_token = COALESCE($7::bytea, enrollments.push_token),"
        "  push_magic = COALESCE($8::text, enrollments.push_magic),"
        "  unlock_token = COALESCE($9::bytea, enrollments.unlock_token),"
        "  state = 'active', updated_at = $10::bigint, last_seen_at = $10::bigint,"
        "  token_updated_at = $10::bigint, push_token_invalid = false, silent_since = 0"
        " WHERE enrollments.channel = 'user'",
    /* Never the token, unlock token or push magic: they are secrets. */
    [D_TOKEN_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                      " VALUES ($1::bigint, $2::text, 'token_update',"
                      "  '{\"channel\":' || orchard_json_str($3::text) || ',\"topic\":' ||"
                      "  orchard_json_str($4::text) || ',\"unlock_token_updated\":' ||"
                      "  CASE WHEN $5::boolean THEN 'true' ELSE 'false' END || '}')",
    /* The device row and its user channels (id = device_id), or a lone user
     * channel by its own id; the event only when something was checked
     * out. */
    [D_CHECKOUT] = "WITH u AS ("
                   "  UPDATE enrollments SET state = 'inactive', checked_out_at = $2::bigint,"
                   "   updated_at = $2::bigint, last_seen_at = $2::bigint, silent_since = 0"
                   "  WHERE id = $1::text OR device_id = $1::text RETURNING 1)"
                   " INSERT INTO events (at, enrollment_id, kind, detail)"
                   " SELECT $2::bigint, $1::text, 'checkout', '{\"enrollments\":' || count(*) || '}'"
                   " FROM u HAVING count(*) > 0",
    /* Heard from: no longer silent. */
    [D_TOUCH] = "UPDATE enrollments SET last_seen_at = $2::bigint, silent_since = 0 WHERE id = $1::text",
    [D_COUNT_ALL] = "SELECT count(*) FROM enrollments",
    [D_COUNT_STATE] = "SELECT count(*) FROM enrollments WHERE state = $1::text",

    /* No row back: the UUID exists (a concurrent enqueue of the same UUID
     * waits for the first to commit, then finds it). */
    [D_CMD_INSERT] = "INSERT INTO commands (uuid, request_type, body, created_at)"
                     " VALUES ($1::text, $2::text, $3::bytea, $4::bigint)"
                     " ON CONFLICT (uuid) DO NOTHING RETURNING id",
    /* Queues for one enrollment and logs it; no row for an unknown
     * enrollment (the SELECT is empty) or an id listed twice (the
     * conflict). */
    /* Queues a command for a batch of ids ($2, an array) in one statement:
     * k keeps the listed ids that are enrollments (with their positions, a
     * repeated id at each), t queues each once, and the positions come back
     * so the caller can tell known ids from unknown ones. */
    [D_TARGET_INSERT] = "WITH k AS ("
                        "  SELECT x.id, x.pos FROM unnest($2::text[]) WITH ORDINALITY AS x(id, pos)"
                        "  JOIN enrollments e ON e.id = x.id),"
                        " t AS ("
                        "  INSERT INTO command_targets (command_id, enrollment_id, status, queued_at, updated_at)"
                        "  SELECT DISTINCT $1::bigint, id, 'queued', $3::bigint, $3::bigint FROM k"
                        "  ON CONFLICT (enrollment_id, command_id) DO NOTHING RETURNING enrollment_id),"
                        " ev AS ("
                        "  INSERT INTO events (at, enrollment_id, kind, detail)"
                        "  SELECT $3::bigint, enrollment_id, 'command_queued',"
                        "   '{\"command_uuid\":' || orchard_json_str($4::text) || ',\"request_type\":' ||"
                        "   orchard_json_str($5::text) || '}'"
                        "  FROM t)"
                        " SELECT pos FROM k",
    /* One exchange step in one statement. r applies the report, only to a
     * target still pending for this enrollment; ev logs it. The main query
     * picks the next command. It sees the table as it was before r (a WITH
     * is one snapshot), so the reported command is excluded by UUID: after
     * the report it is either finished or NotNow, and NotNow commands are
     * skipped after a report anyway. Always exactly one row: the number of
     * targets the report applied to, then the next command (NULLs if
     * none). */
    [D_EXCHANGE_REPORT] =
        "WITH r AS ("
        "  UPDATE command_targets t SET status = $3::text, result = $4::bytea, error_chain = $5::text,"
        "   updated_at = $6::bigint"
        "  FROM commands c"
        "  WHERE c.uuid = $2::text AND t.command_id = c.id AND t.enrollment_id = $1::text AND t.pending"
        "  RETURNING c.uuid, c.request_type),"
        " ev AS ("
        "  INSERT INTO events (at, enrollment_id, kind, detail)"
        "  SELECT $6::bigint, $1::text, 'command_result',"
        "   '{\"command_uuid\":' || orchard_json_str(uuid) || ',\"status\":' || orchard_json_str($3::text) ||"
        "   ',\"request_type\":' || orchard_json_str(request_type) || '}'"
        "  FROM r)"
        " SELECT (SELECT count(*) FROM r), (SELECT request_type FROM r LIMIT 1),"
        "  n.uuid, n.request_type, n.body, n.created_at"
        " FROM (SELECT 1) AS one LEFT JOIN LATERAL ("
        "  SELECT " COMMAND_COLUMNS " FROM command_targets t JOIN commands c ON c.id = t.command_id"
        "  WHERE t.enrollment_id = $1::text AND t.pending AND t.status <> 'NotNow' AND c.uuid <> $2::text"
        "  ORDER BY t.seq LIMIT 1) AS n ON true",
    [D_NEXT_ANY] = "SELECT " COMMAND_COLUMNS " FROM command_targets t JOIN commands c ON c.id = t.command_id"
                   " WHERE t.enrollment_id = $1::text AND t.pending ORDER BY t.seq LIMIT 1",

    [D_CMD_GET] = "SELECT " COMMAND_COLUMNS " FROM commands c WHERE c.uuid = $1::text",
    [D_TARGETS_OF_CMD] = "SELECT " TARGET_COLUMNS " FROM commands c"
                         " JOIN command_targets t ON t.command_id = c.id"
                         " WHERE c.uuid = $1::text ORDER BY t.seq",
    [D_ENR_CMDS_ALL] = "SELECT " TARGET_COLUMNS " FROM command_targets t"
                       " JOIN commands c ON c.id = t.command_id"
                       " WHERE t.enrollment_id = $1::text ORDER BY t.seq DESC LIMIT $2::integer",
    [D_ENR_CMDS_PENDING] = "SELECT " TARGET_COLUMNS " FROM command_targets t"
                           " JOIN commands c ON c.id = t.command_id"
                           " WHERE t.enrollment_id = $1::text AND t.pending ORDER BY t.seq DESC LIMIT $2::integer",
    [D_CANCEL] = "WITH x AS ("
                 "  UPDATE command_targets t SET status = 'cancelled', updated_at = $3::bigint"
                 "  FROM commands c"
                 "  WHERE c.uuid = $2::text AND t.command_id = c.id AND t.enrollment_id = $1::text AND t.pending"
                 "  RETURNING c.uuid, c.request_type)"
                 " INSERT INTO events (at, enrollment_id, kind, detail)"
                 " SELECT $3::bigint, $1::text, 'command_cancelled',"
                 "  '{\"command_uuid\":' || orchard_json_str(uuid) || ',\"request_type\":' ||"
                 "  orchard_json_str(request_type) || ',\"reason\":\"cancelled\"}'"
                 " FROM x",

    /* The json cast rejects malformed detail text, so the log stays valid
     * JSON. */
    [D_EVENT_ADD] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                    " VALUES ($1::bigint, $2::text, $3::text, COALESCE($4::text::json::text, '{}'))",
    [D_EVENT_LIST_ALL] = "SELECT id, at, enrollment_id, kind, detail FROM events ORDER BY id DESC LIMIT $1::integer",
    [D_EVENT_LIST_ENR] = "SELECT id, at, enrollment_id, kind, detail FROM events WHERE enrollment_id = $1::text"
                         " ORDER BY id DESC LIMIT $2::integer",
};

#define REQUIRE_ARG(s, cond)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return pg_fail((s), STORE_ERR, "%s: invalid argument (%s)", __func__, #cond);        \
    } while (0)

static int run(pg_store *s, int id, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    return pg_run(s, id, sql[id], p, what, res, rows);
}

/* ---- row decoding -------------------------------------------------------- */

static int read_command(const PGresult *r, int row, int col, command_t *c)
{
    memset(c, 0, sizeof *c);
    int bad = pgc_text(r, row, col, &c->uuid) | pgc_text(r, row, col + 1, &c->request_type) |
              pgc_blob(r, row, col + 2, &c->body, &c->body_len);
    c->created_at = pgc_int(r, row, col + 3);
    if (bad) {
        command_free(c);
        return -1;
    }
    return 0;
}

static int read_target(const PGresult *r, int row, command_target_t *t)
{
    memset(t, 0, sizeof *t);
    int bad = pgc_text(r, row, 0, &t->command_uuid) | pgc_text(r, row, 1, &t->enrollment_id) |
              pgc_text(r, row, 2, &t->request_type) | pgc_text(r, row, 3, &t->status) |
              pgc_blob(r, row, 4, &t->result, &t->result_len) | pgc_text(r, row, 5, &t->error_chain_json);
    t->queued_at = pgc_int(r, row, 6);
    t->updated_at = pgc_int(r, row, 7);
    if (bad) {
        command_target_free(t);
        return -1;
    }
    return 0;
}

static int read_event(const PGresult *r, int row, store_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    ev->id = pgc_int(r, row, 0);
    ev->at = pgc_int(r, row, 1);
    int bad = pgc_text(r, row, 2, &ev->enrollment_id) | pgc_text(r, row, 3, &ev->kind) |
              pgc_text(r, row, 4, &ev->detail);
    if (bad) {
        store_event_free(ev);
        return -1;
    }
    return 0;
}

/* Hands each row of a target listing to cb. */
static int stream_targets(pg_store *s, PGresult *r, command_target_cb cb, void *ctx)
{
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        command_target_t t;
        if (read_target(r, i, &t) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &t) : 0;
        command_target_free(&t);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

/* One enrollment by a one-text-parameter statement. */
static int get_enrollment(pg_store *s, int id, const char *key, enrollment_t *out, const char *what,
                          const char *notfound)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, key);
    PGresult *r;
    if (run(s, id, &p, what, &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "%s", notfound);
    else
        rc = pg_read_enrollment(r, 0, out) == 0 ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

/* STORE_OK if enrollment `id` exists, STORE_NOTFOUND if not. */
static int enrollment_exists(pg_store *s, const char *id)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    int rows = 0;
    if (run(s, D_ENR_EXISTS, &p, "reading enrollment", NULL, &rows) != STORE_OK)
        return STORE_ERR;
    return rows > 0 ? STORE_OK : STORE_NOTFOUND;
}

/* ---- enrollments --------------------------------------------------------- */

int pg_enrollment_get(store_t *base, const char *id, enrollment_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    REQUIRE_ARG(s, id);
    return get_enrollment(s, D_ENR_GET, id, out, "reading enrollment", "enrollment not found");
}

int pg_enrollment_by_cert(store_t *base, const char *cert_sha256, enrollment_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    REQUIRE_ARG(s, cert_sha256);
    return get_enrollment(s, D_ENR_BY_CERT, cert_sha256, out, "finding enrollment by certificate",
                          "no device enrollment is bound to this certificate");
}

/* Locks the device's rows and reads the state of `id` (heap, NULL when it
 * does not exist yet). */
static int lock_device(pg_store *s, const char *id, char **state)
{
    *state = NULL;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    if (run(s, D_AUTH_LOCK, &p, "reading enrollment state", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++)
        if (strcmp(PQgetvalue(r, i, 0), id) == 0 && pgc_text(r, i, 1, state) != 0)
            rc = pg_fail_oom(s);
    PQclear(r);
    return rc;
}

static int authenticate_in_tx(pg_store *s, const enrollment_t *e, int64_t now)
{
    char *prev_state = NULL;
    if (lock_device(s, e->id, &prev_state) != STORE_OK)
        return STORE_ERR;

    /* A new enrollment has nothing queued yet; an inactive one is being
     * re-enrolled and its leftovers must not run. Either way the device
     * starts without DDM state (unenrollment wiped it on the device). */
    int cancelled = 0;
    int reenrolling = prev_state && strcmp(prev_state, ENR_STATE_INACTIVE) == 0;
    pg_params p;
    if (reenrolling) {
        pgp_init(&p);
        pgp_int(&p, now);
        pgp_text(&p, e->id);
        if (run(s, D_REENROLL_CANCEL, &p, "cancelling stale commands", NULL, &cancelled) != STORE_OK)
            goto fail;
    }
    if ((!prev_state || reenrolling) && pg_ddm_forget(s, e->id) != STORE_OK)
        goto fail;

    pgp_init(&p);
    const char *fields[] = {e->id,           e->udid,       e->topic,         e->serial_number, e->model,
                            e->model_name,   e->product_name, e->os_version,  e->build_version, e->device_name,
                            e->imei,         e->meid,       e->cert_sha256};
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        pgp_text(&p, fields[i]);
    pgp_int(&p, now);
    if (run(s, D_AUTH_UPSERT, &p, "storing enrollment", NULL, NULL) != STORE_OK)
        goto fail;

    const char *new_state =
        prev_state && strcmp(prev_state, ENR_STATE_INACTIVE) != 0 ? prev_state : ENR_STATE_AUTHENTICATED;
    pgp_init(&p);
    pgp_int(&p, now);
    pgp_text(&p, e->id);
    pgp_text(&p, prev_state);
    pgp_text(&p, new_state);
    pgp_text(&p, e->cert_sha256);
    pgp_int(&p, cancelled);
    if (run(s, D_AUTH_EVENT, &p, "logging authenticate", NULL, NULL) != STORE_OK)
        goto fail;
    free(prev_state);
    return STORE_OK;
fail:
    free(prev_state);
    return STORE_ERR;
}

int pg_authenticate(store_t *base, const enrollment_t *e, int64_t now)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, e && e->id);
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    if (authenticate_in_tx(s, e, now) != STORE_OK)
        return pg_tx_abort(s, STORE_ERR);
    return pg_tx_commit(s);
}

int pg_token_update(store_t *base, const char *id, const char *device_id, const token_update_t *t, int64_t now)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, id && t);
    int user_channel = device_id && strcmp(id, device_id) != 0;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    if (!user_channel) {
        pgp_text(&p, t->topic);
        pgp_blob(&p, t->push_token, t->push_token_len);
        pgp_text(&p, t->push_magic);
        pgp_blob(&p, t->unlock_token, t->unlock_token_len);
        pgp_int(&p, now);
    } else {
        pgp_text(&p, device_id);
        pgp_text(&p, t->topic);
        pgp_text(&p, t->user_id);
        pgp_text(&p, t->user_short_name);
        pgp_text(&p, t->user_long_name);
        pgp_blob(&p, t->push_token, t->push_token_len);
        pgp_text(&p, t->push_magic);
        pgp_blob(&p, t->unlock_token, t->unlock_token_len);
        pgp_int(&p, now);
    }
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int changed = 0;
    if (run(s, user_channel ? D_TOKEN_USER : D_TOKEN_DEVICE, &p, "storing token update", NULL, &changed) !=
        STORE_OK)
        return pg_tx_abort(s, STORE_ERR);
    if (changed == 0)
        return pg_tx_abort(s, pg_fail(s, STORE_NOTFOUND, "device-channel enrollment %s not found",
                                      user_channel ? device_id : id));
    pgp_init(&p);
    pgp_int(&p, now);
    pgp_text(&p, id);
    pgp_text(&p, user_channel ? "user" : "device");
    pgp_text(&p, t->topic);
    pgp_bool(&p, t->unlock_token != NULL);
    if (run(s, D_TOKEN_EVENT, &p, "logging token update", NULL, NULL) != STORE_OK)
        return pg_tx_abort(s, STORE_ERR);
    return pg_tx_commit(s);
}

int pg_checkout(store_t *base, const char *id, int64_t now)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, id);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_int(&p, now);
    int logged = 0;
    if (run(s, D_CHECKOUT, &p, "checking out", NULL, &logged) != STORE_OK)
        return STORE_ERR;
    return logged ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "enrollment %s not found", id);
}

int pg_touch(store_t *base, const char *id, int64_t now)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, id);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_int(&p, now);
    int changed = 0;
    if (run(s, D_TOUCH, &p, "recording last seen", NULL, &changed) != STORE_OK)
        return STORE_ERR;
    return changed ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "enrollment %s not found", id);
}

/* enrollment_list has optional filters. Rather than one statement with
 * "($1 IS NULL OR state = $1)" terms, which keep a generic plan from using
 * the right index, one statement is prepared per combination of filters
 * present, assembled from the constant fragments below (never from user
 * data). */
enum {
    LIST_BY_STATE = 1,
    LIST_BY_MODEL = 2,
    LIST_BY_SERIAL = 4,
    LIST_AFTER = 8,
    LIST_SILENT = 16,
    LIST_NOT_SILENT = 32,
    LIST_VARIANTS = 64
};

_Static_assert((int)PG_ST_LIST + (int)LIST_VARIANTS <= (int)PG_ST_ENROLL, "statement ids overlap");

int pg_enrollment_list(store_t *base, const enrollment_filter_t *f, enrollment_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, f);
    unsigned variant = (f->state ? LIST_BY_STATE : 0) | (f->model ? LIST_BY_MODEL : 0) |
                       (f->serial ? LIST_BY_SERIAL : 0) | (f->after ? LIST_AFTER : 0) |
                       (f->silent > 0 ? LIST_SILENT : f->silent < 0 ? LIST_NOT_SILENT : 0);
    /* Parameters are numbered in the order the present filters are added,
     * which is fixed per variant. */
    char text[1024];
    size_t len = (size_t)snprintf(text, sizeof text, "SELECT " PG_ENR_COLUMNS " FROM enrollments WHERE true");
    pg_params p;
    pgp_init(&p);
    const struct {
        unsigned flag;
        const char *fmt;
        const char *value;
    } filters[] = {
        {LIST_BY_STATE, " AND state = $%d::text", f->state},
        {LIST_BY_MODEL, " AND (model = $%d::text OR product_name = $%d::text)", f->model},
        {LIST_BY_SERIAL, " AND serial_number = $%d::text", f->serial},
        {LIST_AFTER, " AND id > $%d::text", f->after},
    };
    for (size_t i = 0; i < sizeof filters / sizeof filters[0]; i++) {
        if (!(variant & filters[i].flag))
            continue;
        pgp_text(&p, filters[i].value);
        len += (size_t)snprintf(text + len, sizeof text - len, filters[i].fmt, p.n, p.n);
    }
    pgp_int(&p, pg_clamp_limit(f->limit));
    snprintf(text + len, sizeof text - len, "%s ORDER BY id LIMIT $%d::integer",
             variant & LIST_SILENT ? " AND silent_since > 0" : variant & LIST_NOT_SILENT ? " AND silent_since = 0" : "",
             p.n);
    PGresult *r;
    if (pg_run(s, PG_ST_LIST + (int)variant, text, &p, "listing enrollments", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        enrollment_t e;
        if (pg_read_enrollment(r, i, &e) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &e) : 0;
        enrollment_free(&e);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}

int pg_enrollment_count(store_t *base, const char *state, int64_t *out)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, out);
    *out = 0;
    pg_params p;
    pgp_init(&p);
    if (state)
        pgp_text(&p, state);
    PGresult *r;
    if (run(s, state ? D_COUNT_STATE : D_COUNT_ALL, &p, "counting enrollments", &r, NULL) != STORE_OK)
        return STORE_ERR;
    *out = PQntuples(r) == 1 ? pgc_int(r, 0, 0) : 0;
    PQclear(r);
    return STORE_OK;
}

/* ---- commands ------------------------------------------------------------ */

int pg_command_insert(pg_store *s, const command_t *cmd, int64_t now, int64_t *command_id)
{
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, cmd->uuid);
    pgp_text(&p, cmd->request_type);
    pgp_blob(&p, cmd->body, cmd->body_len);
    pgp_int(&p, now);
    PGresult *r;
    if (run(s, D_CMD_INSERT, &p, "storing command", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_CONFLICT, "command %s already exists", cmd->uuid);
    else
        *command_id = pgc_int(r, 0, 0);
    PQclear(r);
    return rc;
}

/* ids[0..n) as a PostgreSQL array literal: {"a","b"} with \ and " escaped. */
static char *text_array_literal(const char *const *ids, size_t n)
{
    size_t len = 3;
    for (size_t i = 0; i < n; i++) {
        len += 3;
        for (const char *c = ids[i]; *c; c++)
            len += (*c == '"' || *c == '\\') ? 2 : 1;
    }
    char *out = malloc(len);
    if (!out)
        return NULL;
    char *w = out;
    *w++ = '{';
    for (size_t i = 0; i < n; i++) {
        if (i)
            *w++ = ',';
        *w++ = '"';
        for (const char *c = ids[i]; *c; c++) {
            if (*c == '"' || *c == '\\')
                *w++ = '\\';
            *w++ = *c;
        }
        *w++ = '"';
    }
    *w++ = '}';
    *w = '\0';
    return out;
}

int pg_command_targets_add(pg_store *s, int64_t command_id, const command_t *cmd, const char *const *ids,
                           size_t n, int64_t now, int *status)
{
    char *list = text_array_literal(ids, n);
    if (!list)
        return pg_fail_oom(s);
    pg_params p;
    pgp_init(&p);
    pgp_int(&p, command_id);
    pgp_text(&p, list);
    pgp_int(&p, now);
    pgp_text(&p, cmd->uuid);
    pgp_text(&p, cmd->request_type);
    PGresult *r;
    int rc = run(s, D_TARGET_INSERT, &p, "queueing command", &r, NULL);
    free(list);
    if (rc != STORE_OK)
        return rc;
    for (int row = 0; row < PQntuples(r); row++) {
        int64_t pos = pgc_int(r, row, 0);
        if (pos >= 1 && (uint64_t)pos <= n)
            status[pos - 1] = STORE_OK;
    }
    PQclear(r);
    return STORE_OK;
}

int pg_command_target_add(pg_store *s, int64_t command_id, const command_t *cmd, const char *id, int64_t now,
                          int *added)
{
    int status = STORE_NOTFOUND;
    int rc = pg_command_targets_add(s, command_id, cmd, &id, 1, now, &status);
    *added = rc == STORE_OK && status == STORE_OK;
    return rc;
}

/* Ids per statement: big enough that a fleet-wide command takes a handful
 * of statements, small enough that one statement's array stays a few
 * hundred kilobytes. */
#define ENQUEUE_BATCH 5000

/* Does the work of command_enqueue inside the open transaction. */
static int enqueue_in_tx(pg_store *s, const command_t *cmd, const char *const *ids, size_t n, int *status,
                         int64_t now)
{
    int64_t command_id = 0;
    int rc = pg_command_insert(s, cmd, now, &command_id);
    if (rc != STORE_OK)
        return rc;
    for (size_t at = 0; at < n; at += ENQUEUE_BATCH) {
        size_t k = n - at < ENQUEUE_BATCH ? n - at : ENQUEUE_BATCH;
        if (pg_command_targets_add(s, command_id, cmd, ids + at, k, now, status + at) != STORE_OK)
            return STORE_ERR;
    }
    /* A repeated id is known and already queued by its first listing, so it
     * counts as STORE_OK too. Nothing to deliver it to: do not keep an
     * orphan command. */
    for (size_t i = 0; i < n; i++)
        if (status[i] == STORE_OK)
            return STORE_OK;
    return pg_fail(s, STORE_NOTFOUND, "none of the %zu target enrollments exists", n);
}

int pg_command_enqueue(store_t *base, const command_t *cmd, const char *const *ids, size_t n, int *status,
                       int64_t now)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, cmd && cmd->uuid && cmd->request_type && cmd->body && (ids || n == 0));
    for (size_t i = 0; i < n; i++)
        REQUIRE_ARG(s, ids[i]);
    int *per_id = status;
    if (!per_id && n > 0 && !(per_id = calloc(n, sizeof *per_id)))
        return pg_fail_oom(s);
    for (size_t i = 0; i < n; i++)
        per_id[i] = STORE_NOTFOUND;

    int rc = pg_tx_begin(s);
    if (rc == STORE_OK) {
        rc = enqueue_in_tx(s, cmd, ids, n, per_id, now);
        rc = rc == STORE_OK ? pg_tx_commit(s) : pg_tx_abort(s, rc);
    }
    if (rc != STORE_OK)
        for (size_t i = 0; i < n; i++)
            per_id[i] = STORE_NOTFOUND;
    if (per_id != status)
        free(per_id);
    return rc;
}

/* -1 for a status that is not a command result. */
static int is_result_status(const char *status)
{
    return strcmp(status, CMD_STATUS_NOTNOW) == 0 || strcmp(status, CMD_STATUS_ACKNOWLEDGED) == 0 ||
           strcmp(status, CMD_STATUS_ERROR) == 0 || strcmp(status, CMD_STATUS_FORMAT_ERROR) == 0;
}

int pg_command_exchange(store_t *base, const char *id, const command_report_t *report, int64_t now,
                        int *report_applied, command_t *next)
{
    pg_store *s = pgs(base);
    if (report_applied)
        *report_applied = 0;
    if (next)
        memset(next, 0, sizeof *next);
    REQUIRE_ARG(s, id);
    if (report && report->applied_type && report->applied_type_len)
        report->applied_type[0] = '\0';

    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    PGresult *r;
    int col = 0; /* where the next command's columns start */
    if (report) {
        REQUIRE_ARG(s, report->command_uuid && report->status);
        if (!is_result_status(report->status))
            return pg_fail(s, STORE_ERR, "command_exchange: \"%s\" is not a command result status", report->status);
        pgp_text(&p, report->command_uuid);
        pgp_text(&p, report->status);
        pgp_blob(&p, report->raw, report->raw_len);
        pgp_text(&p, report->error_chain_json);
        pgp_int(&p, now);
        if (run(s, D_EXCHANGE_REPORT, &p, "recording command result", &r, NULL) != STORE_OK)
            return STORE_ERR;
        col = 2;
    } else if (run(s, D_NEXT_ANY, &p, "selecting next command", &r, NULL) != STORE_OK) {
        return STORE_ERR;
    }

    int applied = report && PQntuples(r) == 1 ? pgc_int(r, 0, 0) > 0 : 0;
    if (report_applied)
        *report_applied = applied;
    if (applied && report->applied_type && report->applied_type_len && !PQgetisnull(r, 0, 1))
        snprintf(report->applied_type, report->applied_type_len, "%s", PQgetvalue(r, 0, 1));
    int rc;
    if (PQntuples(r) == 0 || PQgetisnull(r, 0, col)) {
        rc = pg_fail(s, STORE_NOTFOUND, "no pending command");
    } else {
        command_t found;
        if (read_command(r, 0, col, &found) != 0) {
            rc = pg_fail_oom(s);
        } else {
            rc = STORE_OK;
            if (next)
                *next = found;
            else
                command_free(&found);
        }
    }
    PQclear(r);
    return rc;
}

int pg_command_get(store_t *base, const char *uuid, command_t *out)
{
    pg_store *s = pgs(base);
    memset(out, 0, sizeof *out);
    REQUIRE_ARG(s, uuid);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, uuid);
    PGresult *r;
    if (run(s, D_CMD_GET, &p, "reading command", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc;
    if (PQntuples(r) == 0)
        rc = pg_fail(s, STORE_NOTFOUND, "command %s not found", uuid);
    else
        rc = read_command(r, 0, 0, out) == 0 ? STORE_OK : pg_fail_oom(s);
    PQclear(r);
    return rc;
}

/* STORE_NOTFOUND when the command does not exist (every stored command has
 * at least one target). */
int pg_command_targets(store_t *base, const char *uuid, command_target_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, uuid);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, uuid);
    PGresult *r;
    if (run(s, D_TARGETS_OF_CMD, &p, "listing command targets", &r, NULL) != STORE_OK)
        return STORE_ERR;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return pg_fail(s, STORE_NOTFOUND, "command %s not found", uuid);
    }
    return stream_targets(s, r, cb, ctx);
}

int pg_enrollment_commands(store_t *base, const char *id, int pending_only, int limit, command_target_cb cb,
                           void *ctx)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, id);
    int rc = enrollment_exists(s, id);
    if (rc == STORE_NOTFOUND)
        return pg_fail(s, rc, "enrollment %s not found", id);
    if (rc != STORE_OK)
        return rc;
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_int(&p, pg_clamp_limit(limit));
    PGresult *r;
    if (run(s, pending_only ? D_ENR_CMDS_PENDING : D_ENR_CMDS_ALL, &p, "listing enrollment commands", &r, NULL) !=
        STORE_OK)
        return STORE_ERR;
    return stream_targets(s, r, cb, ctx);
}

int pg_command_cancel(store_t *base, const char *id, const char *uuid, int64_t now)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, id && uuid);
    pg_params p;
    pgp_init(&p);
    pgp_text(&p, id);
    pgp_text(&p, uuid);
    pgp_int(&p, now);
    int changed = 0;
    if (run(s, D_CANCEL, &p, "cancelling command", NULL, &changed) != STORE_OK)
        return STORE_ERR;
    return changed ? STORE_OK : pg_fail(s, STORE_NOTFOUND, "command %s is not pending for %s", uuid, id);
}

/* ---- events -------------------------------------------------------------- */

int pg_event_add(store_t *base, const char *enrollment_id, const char *kind, const char *detail_json, int64_t now)
{
    pg_store *s = pgs(base);
    REQUIRE_ARG(s, kind);
    pg_params p;
    pgp_init(&p);
    pgp_int(&p, now);
    pgp_text(&p, enrollment_id);
    pgp_text(&p, kind);
    pgp_text(&p, detail_json);
    return run(s, D_EVENT_ADD, &p, "adding event", NULL, NULL);
}

/* Newest first. enrollment_id NULL lists events of every enrollment. */
int pg_event_list(store_t *base, const char *enrollment_id, int limit, event_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    pg_params p;
    pgp_init(&p);
    if (enrollment_id)
        pgp_text(&p, enrollment_id);
    pgp_int(&p, pg_clamp_limit(limit));
    PGresult *r;
    if (run(s, enrollment_id ? D_EVENT_LIST_ENR : D_EVENT_LIST_ALL, &p, "listing events", &r, NULL) != STORE_OK)
        return STORE_ERR;
    int rc = STORE_OK;
    for (int i = 0; i < PQntuples(r); i++) {
        store_event_t ev;
        if (read_event(r, i, &ev) != 0) {
            rc = pg_fail_oom(s);
            break;
        }
        int stop = cb ? cb(ctx, &ev) : 0;
        store_event_free(&ev);
        if (stop)
            break;
    }
    PQclear(r);
    return rc;
}
