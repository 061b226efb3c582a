/* PostgreSQL backend of the storage interface (store.h), on libpq.
 *
 * Handles and the pool. A handle is one database connection, used by one
 * thread at a time. The server opens one handle per worker thread (plus one
 * per push thread and one for the inactivity sweep), so the connection pool
 * is the set of worker handles and its size is --workers: every request
 * a worker serves has its connection ready, and no request waits for
 * another's. Several orchard instances may share one database; the
 * database's max_connections must cover all of their handles.
 *
 * Statements. Every SQL text is a constant of this program; values are
 * always bound parameters (bytea in binary format, so binary command bodies
 * and push tokens need no escaping). Each statement is prepared on a
 * connection at its first use (PQprepare) and then only executed
 * (PQexecPrepared): one round trip per statement. Results come back in
 * binary format and are decoded by length (store_pg_internal.h).
 *
 * Transactions and several instances. The isolation level is PostgreSQL's
 * default, READ COMMITTED; what each operation needs to stay correct when
 * several instances work on the same rows is obtained with row locks and
 * single-statement writes rather than with SERIALIZABLE retries:
 *   - a write that must happen at most once is a conditional UPDATE
 *     (a command result applies only while the target is pending; a
 *     challenge is consumed only while unused; a lease is taken only while
 *     free or expired): the row lock makes a concurrent second attempt
 *     re-check the condition after the first commits, and change nothing;
 *   - a device exchange is one statement (store_pg_devices.c);
 *   - authenticate locks the device's enrollment rows (FOR UPDATE) before
 *     deciding about re-enrollment, which also waits for a concurrent
 *     enqueue to that device (its foreign-key check holds a KEY SHARE lock);
 *   - the inactivity sweep claims rows with FOR UPDATE SKIP LOCKED.
 * Each operation is durable when it returns (synchronous commit).
 *
 * Connection loss. Before each operation outside a transaction, an idle
 * session the server has ended (restart, failover) is replaced at once, so
 * a request never fails for a session that was already gone. An operation
 * that finds the connection broken fails with
 * STORE_ERR and says so. The next operation on the handle (outside a
 * transaction) reconnects first (PQreset), so service recovers by itself
 * when the database comes back. A failed reconnect is not retried for
 * RECONNECT_BACKOFF_S, so while the database is down operations fail at
 * once instead of each waiting out a connect timeout. The connection
 * defaults (below) bound every wait: connect_timeout, TCP keepalives and
 * tcp_user_timeout for a vanished server, statement_timeout and
 * lock_timeout for a stuck statement or lock.
 *
 * Callbacks. Listing operations fetch their (limited) result first and then
 * invoke the callback for each row.
 */
#include <endian.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "store_pg_internal.h"

#define RECONNECT_BACKOFF_S 1

struct pg_store {
    store_t base; /* first: store_t * and pg_store * convert both ways */
    PGconn *conn;
    unsigned char prepared[PG_ST_MAX]; /* statement prepared on the current connection */
    int in_tx;
    int lost;               /* the connection broke; reconnect before the next operation */
    int64_t retry_after;    /* monotonic seconds: no reconnect attempt before this */
    int schema_version;
    char sqlstate[6];
    char err[512];
};

pg_store *pgs(store_t *s)
{
    return (pg_store *)s;
}

PGconn *pg_conn(pg_store *s)
{
    return s->conn;
}

/* ---- errors -------------------------------------------------------------- */

int pg_fail(pg_store *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return rc;
}

int pg_fail_oom(pg_store *s)
{
    return pg_fail(s, STORE_ERR, "out of memory");
}

int pg_fail_arg(pg_store *s, const char *what)
{
    return pg_fail(s, STORE_ERR, "%s: invalid argument", what);
}

const char *pg_sqlstate(pg_store *s)
{
    return s->sqlstate;
}

/* libpq messages end in a newline and may span lines; errmsg is one line. */
static void one_line(char *msg)
{
    for (char *p = msg; *p; p++)
        if (*p == '\n' || *p == '\r' || *p == '\t')
            *p = ' ';
    size_t n = strlen(msg);
    while (n > 0 && msg[n - 1] == ' ')
        msg[--n] = '\0';
}

static int64_t mono_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* Records why a statement failed. A broken connection is named as such,
 * and marks the handle for reconnection. */
static int fail_result(pg_store *s, const PGresult *res, const char *what)
{
    const char *state = res ? PQresultErrorField(res, PG_DIAG_SQLSTATE) : NULL;
    snprintf(s->sqlstate, sizeof s->sqlstate, "%s", state ? state : "");
    if (PQstatus(s->conn) != CONNECTION_OK) {
        s->lost = 1;
        pg_fail(s, STORE_ERR, "%s: database connection lost (%s); reconnecting on next use", what,
                PQerrorMessage(s->conn));
    } else {
        const char *primary = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_PRIMARY) : NULL;
        const char *detail = res ? PQresultErrorField(res, PG_DIAG_MESSAGE_DETAIL) : NULL;
        if (!primary)
            primary = PQerrorMessage(s->conn);
        pg_fail(s, STORE_ERR, "%s: %s%s%s (SQLSTATE %s)", what, primary, detail ? ": " : "", detail ? detail : "",
                s->sqlstate[0] ? s->sqlstate : "?");
    }
    one_line(s->err);
    return STORE_ERR;
}

/* ---- connection ---------------------------------------------------------- */

/* True if the server ended this idle session. Every operation reads its
 * results through to the end, and orchard never LISTENs, so an idle session
 * has nothing to read unless the server is ending it (the FATAL of a
 * shutdown or restart, or end of file). Without this check the first
 * operation after a database restart would be sent on the dead session and
 * fail although it never reached the server: one 503 per worker and per
 * restart. One poll() with no wait; a session that dies after it fails as
 * before. */
static int idle_session_ended(pg_store *s)
{
    int fd = PQsocket(s->conn);
    if (fd < 0)
        return 1;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, 0) > 0;
}

/* Makes the connection usable before an operation. Inside a transaction a
 * broken connection cannot be replaced: the transaction's earlier work is
 * gone with it, so the operation fails. */
static int ensure_connected(pg_store *s, const char *what)
{
    if (!s->lost && !s->in_tx && idle_session_ended(s))
        s->lost = 1;
    if (!s->lost && PQstatus(s->conn) == CONNECTION_OK)
        return STORE_OK;
    if (s->in_tx)
        return pg_fail(s, STORE_ERR, "%s: database connection lost during a transaction", what);
    int64_t now = mono_now();
    if (now < s->retry_after)
        return pg_fail(s, STORE_ERR, "%s: database unavailable (reconnecting)", what);
    PQreset(s->conn);
    if (PQstatus(s->conn) != CONNECTION_OK) {
        s->retry_after = now + RECONNECT_BACKOFF_S;
        pg_fail(s, STORE_ERR, "%s: database unavailable: cannot reconnect: %s", what, PQerrorMessage(s->conn));
        one_line(s->err);
        return STORE_ERR;
    }
    /* Prepared statements belong to the old server session. */
    memset(s->prepared, 0, sizeof s->prepared);
    s->lost = 0;
    return STORE_OK;
}

/* ---- parameters ---------------------------------------------------------- */

void pgp_init(pg_params *p)
{
    memset(p, 0, sizeof *p);
}

static int pgp_slot(pg_params *p)
{
    if (p->n >= PG_MAX_PARAMS) {
        p->oom = 1;
        return -1;
    }
    return p->n++;
}

void pgp_text(pg_params *p, const char *v)
{
    int i = pgp_slot(p);
    if (i >= 0)
        p->values[i] = v;
}

void pgp_blob(pg_params *p, const void *v, size_t len)
{
    static const char empty[1];
    int i = pgp_slot(p);
    if (i < 0)
        return;
    if (len > (size_t)INT_MAX) {
        p->oom = 1;
        return;
    }
    p->values[i] = v ? (len ? v : empty) : NULL;
    p->lengths[i] = (int)len;
    p->formats[i] = 1;
}

void pgp_int(pg_params *p, int64_t v)
{
    int i = pgp_slot(p);
    if (i < 0)
        return;
    snprintf(p->ints[i], sizeof p->ints[i], "%lld", (long long)v);
    p->values[i] = p->ints[i];
}

void pgp_bool(pg_params *p, int v)
{
    pgp_text(p, v ? "true" : "false");
}

/* ---- statements ---------------------------------------------------------- */

int pg_run(pg_store *s, int id, const char *sql, const pg_params *p, const char *what, PGresult **res, int *rows)
{
    if (res)
        *res = NULL;
    if (rows)
        *rows = 0;
    s->sqlstate[0] = '\0';
    if (p && p->oom)
        return pg_fail(s, STORE_ERR, "%s: too many or too large parameters", what);
    if (id < 0 || id >= PG_ST_MAX)
        return pg_fail(s, STORE_ERR, "%s: statement id %d out of range", what, id);
    if (ensure_connected(s, what) != STORE_OK)
        return STORE_ERR;

    char name[16];
    snprintf(name, sizeof name, "o%d", id);
    if (!s->prepared[id]) {
        PGresult *pr = PQprepare(s->conn, name, sql, 0, NULL);
        if (PQresultStatus(pr) != PGRES_COMMAND_OK) {
            fail_result(s, pr, what);
            PQclear(pr);
            return STORE_ERR;
        }
        PQclear(pr);
        s->prepared[id] = 1;
    }
    PGresult *r = PQexecPrepared(s->conn, name, p ? p->n : 0, p ? p->values : NULL, p ? p->lengths : NULL,
                                 p ? p->formats : NULL, 1);
    ExecStatusType st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        fail_result(s, r, what);
        PQclear(r);
        return STORE_ERR;
    }
    if (rows) {
        const char *n = PQcmdTuples(r);
        *rows = st == PGRES_TUPLES_OK && !*n ? PQntuples(r) : atoi(n);
        /* A SELECT reports its row count in PQcmdTuples too; RETURNING
         * statements likewise. Either way it is what the caller wants. */
    }
    if (res)
        *res = r;
    else
        PQclear(r);
    return STORE_OK;
}

/* Runs a constant command without parameters (transaction control, DDL). */
static int exec_simple(pg_store *s, const char *sql, const char *what)
{
    PGresult *r = PQexec(s->conn, sql);
    ExecStatusType st = PQresultStatus(r);
    int rc = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK ? STORE_OK : fail_result(s, r, what);
    PQclear(r);
    return rc;
}

/* ---- transactions -------------------------------------------------------- */

int pg_tx_begin(pg_store *s)
{
    if (s->in_tx)
        return pg_fail(s, STORE_ERR, "starting transaction: one is already open");
    if (ensure_connected(s, "starting transaction") != STORE_OK)
        return STORE_ERR;
    if (exec_simple(s, "BEGIN", "starting transaction") != STORE_OK)
        return STORE_ERR;
    s->in_tx = 1;
    return STORE_OK;
}

/* The error message of the failure that led here is kept. A broken
 * connection has lost the transaction already. */
static void tx_rollback(pg_store *s)
{
    if (s->in_tx && PQstatus(s->conn) == CONNECTION_OK &&
        PQtransactionStatus(s->conn) != PQTRANS_IDLE) {
        PGresult *r = PQexec(s->conn, "ROLLBACK");
        PQclear(r);
    }
    if (PQstatus(s->conn) != CONNECTION_OK)
        s->lost = 1;
    s->in_tx = 0;
}

int pg_tx_commit(pg_store *s)
{
    if (!s->in_tx)
        return pg_fail(s, STORE_ERR, "committing: no transaction open");
    PGresult *r = PQexec(s->conn, "COMMIT");
    int ok = PQresultStatus(r) == PGRES_COMMAND_OK;
    /* A COMMIT of a transaction that had failed "succeeds" as ROLLBACK. */
    if (ok && strcmp(PQcmdStatus(r), "COMMIT") != 0) {
        PQclear(r);
        s->in_tx = 0;
        return pg_fail(s, STORE_ERR, "committing: the transaction was rolled back");
    }
    if (!ok) {
        fail_result(s, r, "committing (the outcome is unknown if the connection was lost)");
        PQclear(r);
        tx_rollback(s);
        return STORE_ERR;
    }
    PQclear(r);
    s->in_tx = 0;
    return STORE_OK;
}

int pg_tx_abort(pg_store *s, int rc)
{
    tx_rollback(s);
    return rc;
}

/* ---- row decoding -------------------------------------------------------- */

int pgc_text(const PGresult *r, int row, int col, char **out)
{
    *out = NULL;
    if (PQgetisnull(r, row, col))
        return 0;
    size_t n = (size_t)PQgetlength(r, row, col);
    *out = malloc(n + 1);
    if (!*out)
        return -1;
    memcpy(*out, PQgetvalue(r, row, col), n);
    (*out)[n] = '\0';
    return 0;
}

int pgc_blob(const PGresult *r, int row, int col, unsigned char **out, size_t *len)
{
    *len = 0;
    int rc = pgc_text(r, row, col, (char **)out);
    if (rc == 0 && *out)
        *len = (size_t)PQgetlength(r, row, col);
    return rc;
}

int64_t pgc_int(const PGresult *r, int row, int col)
{
    if (PQgetisnull(r, row, col))
        return 0;
    const unsigned char *v = (const unsigned char *)PQgetvalue(r, row, col);
    switch (PQgetlength(r, row, col)) {
    case 8: {
        uint64_t x;
        memcpy(&x, v, 8);
        return (int64_t)be64toh(x);
    }
    case 4: {
        uint32_t x;
        memcpy(&x, v, 4);
        return (int32_t)be32toh(x);
    }
    case 2: {
        uint16_t x;
        memcpy(&x, v, 2);
        return (int16_t)be16toh(x);
    }
    case 1:
        return v[0];
    default:
        return 0;
    }
}

int pg_read_enrollment(const PGresult *r, int row, enrollment_t *e)
{
    memset(e, 0, sizeof *e);
    int bad = 0;
    char **text_cols[] = {&e->id,          &e->device_id,  &e->udid,          &e->channel,        &e->topic,
                          &e->serial_number, &e->model,    &e->model_name,    &e->product_name,   &e->os_version,
                          &e->build_version, &e->device_name, &e->imei,       &e->meid,           &e->user_id,
                          &e->user_short_name, &e->user_long_name, &e->cert_sha256, &e->state};
    for (int i = 0; i < (int)(sizeof text_cols / sizeof text_cols[0]); i++)
        bad |= pgc_text(r, row, i, text_cols[i]);
    bad |= pgc_blob(r, row, 19, &e->push_token, &e->push_token_len);
    bad |= pgc_text(r, row, 20, &e->push_magic);
    bad |= pgc_blob(r, row, 21, &e->unlock_token, &e->unlock_token_len);
    e->created_at = pgc_int(r, row, 22);
    e->updated_at = pgc_int(r, row, 23);
    e->last_seen_at = pgc_int(r, row, 24);
    e->authenticated_at = pgc_int(r, row, 25);
    e->token_updated_at = pgc_int(r, row, 26);
    e->checked_out_at = pgc_int(r, row, 27);
    e->last_push_at = pgc_int(r, row, 28);
    bad |= pgc_text(r, row, 29, &e->last_push_id);
    bad |= pgc_text(r, row, 30, &e->last_push_error);
    e->push_token_invalid = pgc_int(r, row, 31) != 0;
    e->silent_since = pgc_int(r, row, 32);
    e->last_repush_at = pgc_int(r, row, 33);
    e->supervised = (int)pgc_int(r, row, 34);
    e->awaiting_configuration = (int)pgc_int(r, row, 35);
    if (bad) {
        enrollment_free(e);
        return -1;
    }
    return 0;
}

int pg_clamp_limit(int limit)
{
    return limit < 1 ? 1 : limit > 1000 ? 1000 : limit;
}

/* ---- handle lifecycle ---------------------------------------------------- */

static const char *pg_errmsg(store_t *base)
{
    pg_store *s = pgs(base);
    return s->err[0] ? s->err : "no error";
}

static void pg_close(store_t *base)
{
    pg_store *s = pgs(base);
    if (!s)
        return;
    if (s->conn)
        PQfinish(s->conn);
    free(s);
}

int store_pg_schema_version(store_t *base)
{
    return pgs(base)->schema_version;
}

static const struct store_ops pg_ops = {
    .name = "postgres",
    .close = pg_close,
    .errmsg = pg_errmsg,
    .enrollment_get = pg_enrollment_get,
    .enrollment_by_cert = pg_enrollment_by_cert,
    .authenticate = pg_authenticate,
    .token_update = pg_token_update,
    .checkout = pg_checkout,
    .touch = pg_touch,
    .enrollment_list = pg_enrollment_list,
    .enrollment_count = pg_enrollment_count,
    .command_enqueue = pg_command_enqueue,
    .command_exchange = pg_command_exchange,
    .command_get = pg_command_get,
    .command_targets = pg_command_targets,
    .enrollment_commands = pg_enrollment_commands,
    .command_cancel = pg_command_cancel,
    .event_add = pg_event_add,
    .event_list = pg_event_list,
    .cert_add = pg_cert_add,
    .cert_get = pg_cert_get,
    .cert_by_sha256 = pg_cert_by_sha256,
    .cert_list = pg_cert_list,
    .cert_revoke = pg_cert_revoke,
    .challenge_add = pg_challenge_add,
    .challenge_consume = pg_challenge_consume,
    .device_allow = pg_device_allow,
    .device_disallow = pg_device_disallow,
    .device_allowed = pg_device_allowed,
    .push_results_record = pg_push_results_record,
    .repush_claim = pg_repush_claim,
    .inactive_mark = pg_inactive_mark,
    .lease_acquire = pg_lease_acquire,
    .lease_release = pg_lease_release,
    .enrollment_set_supervised = pg_enrollment_set_supervised,
    .decl_put = pg_decl_put,
    .decl_get = pg_decl_get,
    .decl_delete = pg_decl_delete,
    .decl_list = pg_decl_list,
    .decl_referrers = pg_decl_referrers,
    .set_put = pg_set_put,
    .set_delete = pg_set_delete,
    .set_list = pg_set_list,
    .set_members = pg_set_members,
    .decl_sets = pg_decl_sets,
    .set_assign = pg_set_assign,
    .set_unassign = pg_set_unassign,
    .set_assignments = pg_set_assignments,
    .group_add = pg_group_add,
    .group_remove = pg_group_remove,
    .group_members = pg_group_members,
    .enrollment_groups = pg_enrollment_groups,
    .ddm_effective = pg_ddm_effective,
    .ddm_enrollment_sets = pg_ddm_enrollment_sets,
    .ddm_state_get = pg_ddm_state_get,
    .ddm_candidates = pg_ddm_candidates,
    .ddm_sync_queue = pg_ddm_sync_queue,
    .ddm_handed_out = pg_ddm_handed_out,
    .ddm_touch = pg_ddm_touch,
    .ddm_status_record = pg_ddm_status_record,
    .ddm_status_item_get = pg_ddm_status_item_get,
    .ddm_status_items = pg_ddm_status_items,
    .ddm_decl_statuses = pg_ddm_decl_statuses,
    .asset_data_put = pg_asset_data_put,
    .asset_data_get = pg_asset_data_get,
    .asset_data_delete = pg_asset_data_delete,
    .pairing_add = pg_pairing_add,
    .pairing_get = pg_pairing_get,
    .pairing_bind_phone = pg_pairing_bind_phone,
    .pairing_consume = pg_pairing_consume,
    .watch_pair = pg_watch_pair,
    .watch_pair_state = pg_watch_pair_state,
    .watch_pairing_get = pg_watch_pairing_get,
    .phone_watches = pg_phone_watches,
    .ade_token_put = pg_ade_token_put,
    .ade_token_get = pg_ade_token_get,
    .ade_token_list = pg_ade_token_list,
    .ade_token_delete = pg_ade_token_delete,
    .ade_token_sync_state = pg_ade_token_sync_state,
    .ade_token_set_account = pg_ade_token_set_account,
    .ade_token_set_default_profile = pg_ade_token_set_default_profile,
    .ade_token_reset_cursor = pg_ade_token_reset_cursor,
    .ade_devices_apply = pg_ade_devices_apply,
    .ade_device_get = pg_ade_device_get,
    .ade_device_list = pg_ade_device_list,
    .ade_device_set_profile = pg_ade_device_set_profile,
    .ade_profile_put = pg_ade_profile_put,
    .ade_profile_get = pg_ade_profile_get,
    .ade_profile_list = pg_ade_profile_list,
    .enrollment_set_awaiting = pg_enrollment_set_awaiting,
    .enrollment_awaiting = pg_enrollment_awaiting,
    .setting_put = pg_setting_put,
    .setting_get = pg_setting_get,
    .setting_delete = pg_setting_delete,
    .copy_begin = pg_copy_begin,
    .copy_end = pg_copy_end,
    .copy_columns = pg_copy_columns,
    .copy_count = pg_copy_count,
    .copy_read = pg_copy_read,
    .copy_write = pg_copy_write,
};

/* Replaces every occurrence of `secret` in msg with "***": libpq may echo
 * parts of a malformed connection URL in its messages, and the password
 * must not reach a log. */
static void redact(char *msg, size_t cap, const char *secret)
{
    if (!secret || !*secret)
        return;
    char out[512];
    size_t n = strlen(secret), o = 0;
    for (const char *p = msg; *p && o + 4 < sizeof out;) {
        if (strncmp(p, secret, n) == 0) {
            memcpy(out + o, "***", 3);
            o += 3;
            p += n;
        } else {
            out[o++] = *p++;
        }
    }
    out[o] = '\0';
    snprintf(msg, cap, "%s", out);
}

/* The password of a URL (heap, NULL if none or unparsable). */
static char *url_password(const char *url)
{
    PQconninfoOption *opts = PQconninfoParse(url, NULL);
    char *pw = NULL;
    for (PQconninfoOption *o = opts; o && o->keyword; o++)
        if (strcmp(o->keyword, "password") == 0 && o->val)
            pw = strdup(o->val);
    PQconninfoFree(opts);
    return pw;
}

/* Connection defaults; the URL's own settings come later in the list and
 * win (PQconnectdbParams: later keywords override earlier ones). */
static PGconn *connect_url(const char *url)
{
    const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout", "application_name", "options",
                                "dbname", NULL};
    const char *const values[] = {"3", "1", "10", "5", "3", "10000", "orchard",
                                  /* 30 s for any statement, 5 s for any lock wait (like SQLite's busy
                                   * timeout); a transaction left idle by a stuck client is ended. */
                                  "-c statement_timeout=30000 -c lock_timeout=5000 "
                                  "-c idle_in_transaction_session_timeout=60000 -c client_min_messages=warning",
                                  url, NULL};
    return PQconnectdbParams(keys, values, 1);
}

store_t *store_pg_open(const char *url, char **err)
{
    if (err)
        *err = NULL;
    pg_store *s = calloc(1, sizeof *s);
    if (!s) {
        if (err)
            *err = strdup("out of memory");
        return NULL;
    }
    s->base.ops = &pg_ops;
    s->conn = connect_url(url);
    if (!s->conn) {
        pg_fail(s, STORE_ERR, "out of memory");
    } else if (PQstatus(s->conn) != CONNECTION_OK) {
        pg_fail(s, STORE_ERR, "cannot connect to PostgreSQL: %s", PQerrorMessage(s->conn));
        one_line(s->err);
    } else if (PQserverVersion(s->conn) < 120000) {
        pg_fail(s, STORE_ERR, "PostgreSQL %d.%d is too old: orchard needs 12 or newer",
                PQserverVersion(s->conn) / 10000, PQserverVersion(s->conn) % 10000);
    } else if (pg_migrate(s, &s->schema_version) == STORE_OK) {
        return &s->base;
    } else {
        /* Name the database so the message is useful in a startup log. */
        char why[sizeof s->err];
        snprintf(why, sizeof why, "%s", s->err);
        pg_fail(s, STORE_ERR, "PostgreSQL database \"%s\" on %s: %s", PQdb(s->conn), PQhost(s->conn), why);
    }
    char *pw = url_password(url);
    redact(s->err, sizeof s->err, pw);
    if (pw) {
        memset(pw, 0, strlen(pw));
        free(pw);
    }
    if (err)
        *err = strdup(s->err);
    pg_close(&s->base);
    return NULL;
}
