/* PostgreSQL backend: raw row access for the whole-database copier
 * (store.h copy_*, store_copy.c). Table, column and ORDER BY names come
 * from the copier's constant list; they are still checked to be plain
 * identifiers before they reach SQL text. Values are always parameters.
 *
 * Reading goes through a cursor inside a REPEATABLE READ, READ ONLY
 * transaction (one snapshot for every table), fetched in binary in pages
 * of FETCH_ROWS. Writing is one multi-row INSERT per batch with
 * OVERRIDING SYSTEM VALUE (ids are copied as they are); at commit each
 * identity column's sequence is moved past the largest copied id, so new
 * rows continue after them. Parameter types are left to PostgreSQL (the
 * target column's): integers travel as text, so 0/1 fill a boolean
 * column as well as a bigint one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_internal.h"

#define FETCH_ROWS "1000"
/* PostgreSQL's limit on parameters in one statement. */
#define MAX_STATEMENT_PARAMS 65535

static int ident_ok(const char *name)
{
    if (!name || !*name || strlen(name) > 63)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_' || (p != name && *p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

/* ORDER BY lists: identifiers separated by ", ". */
static int order_ok(const char *order_by)
{
    char buf[256];
    if (!order_by || strlen(order_by) >= sizeof buf)
        return 0;
    strcpy(buf, order_by);
    char *save = NULL;
    int n = 0;
    for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save), n++) {
        while (*tok == ' ')
            tok++;
        if (!ident_ok(tok))
            return 0;
    }
    return n > 0;
}

static int exec_ok(pg_store *s, PGresult *r, const char *what)
{
    ExecStatusType st = PQresultStatus(r);
    if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
        return STORE_OK;
    const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
    const char *detail = PQresultErrorField(r, PG_DIAG_MESSAGE_DETAIL);
    pg_fail(s, STORE_ERR, "%s: %s%s%s", what, msg ? msg : PQerrorMessage(pg_conn(s)), detail ? ": " : "",
            detail ? detail : "");
    return STORE_ERR;
}

static int exec_simple(pg_store *s, const char *sql, const char *what)
{
    PGresult *r = PQexec(pg_conn(s), sql);
    int rc = exec_ok(s, r, what);
    PQclear(r);
    return rc;
}

int pg_copy_begin(store_t *base, int writable)
{
    pg_store *s = pgs(base);
    if (pg_tx_begin(s) != STORE_OK)
        return STORE_ERR;
    /* A large copy may take longer than the server's per-statement bound,
     * and one side waits while the other works. */
    const char *setup = writable ? "SET LOCAL statement_timeout = 0; SET LOCAL idle_in_transaction_session_timeout = "
                                   "600000"
                                 : "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY;"
                                   " SET LOCAL statement_timeout = 0;"
                                   " SET LOCAL idle_in_transaction_session_timeout = 600000";
    if (exec_simple(s, setup, "starting the copy transaction") != STORE_OK)
        return pg_tx_abort(s, STORE_ERR);
    return STORE_OK;
}

/* Moves every identity column's sequence past the largest id present. */
static const char *const advance_sequences =
    "DO $$ DECLARE r record; m bigint; BEGIN"
    " FOR r IN SELECT table_name, column_name FROM information_schema.columns"
    "  WHERE table_schema = current_schema() AND is_identity = 'YES' LOOP"
    "  EXECUTE format('SELECT max(%I) FROM %I', r.column_name, r.table_name) INTO m;"
    "  IF m IS NOT NULL THEN"
    "   PERFORM setval(pg_get_serial_sequence(format('%I', r.table_name), r.column_name), m);"
    "  END IF;"
    " END LOOP; END $$";

int pg_copy_end(store_t *base, int commit)
{
    pg_store *s = pgs(base);
    if (!commit)
        return pg_tx_abort(s, STORE_OK);
    PGresult *r = PQexec(pg_conn(s), "SELECT current_setting('transaction_read_only')");
    int writable = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && strcmp(PQgetvalue(r, 0, 0), "off") == 0;
    PQclear(r);
    if (writable && exec_simple(s, advance_sequences, "advancing id sequences") != STORE_OK)
        return pg_tx_abort(s, STORE_ERR);
    return pg_tx_commit(s);
}

int pg_copy_columns(store_t *base, const char *table, name_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (table && !ident_ok(table))
        return pg_fail_arg(s, "copy_columns");
    const char *values[1] = {table};
    /* Generated columns (command_targets.pending) are derived, not copied. */
    PGresult *r = table ? PQexecParams(pg_conn(s),
                                       "SELECT column_name FROM information_schema.columns"
                                       " WHERE table_schema = current_schema() AND table_name = $1"
                                       " AND is_generated = 'NEVER' ORDER BY ordinal_position",
                                       1, NULL, values, NULL, NULL, 0)
                        : PQexec(pg_conn(s), "SELECT table_name FROM information_schema.tables"
                                             " WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
                                             " ORDER BY table_name");
    if (exec_ok(s, r, table ? "listing columns" : "listing tables") != STORE_OK) {
        PQclear(r);
        return STORE_ERR;
    }
    for (int i = 0; i < PQntuples(r); i++)
        if (cb(ctx, PQgetvalue(r, i, 0)))
            break;
    PQclear(r);
    return STORE_OK;
}

int pg_copy_count(store_t *base, const char *table, int64_t *rows)
{
    pg_store *s = pgs(base);
    *rows = 0;
    if (!ident_ok(table))
        return pg_fail_arg(s, "copy_count");
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", table);
    PGresult *r = PQexec(pg_conn(s), sql);
    int rc = exec_ok(s, r, "counting rows");
    if (rc == STORE_OK)
        *rows = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
    PQclear(r);
    return rc;
}

/* "a, b, c" for columns[0..n), NULL if a name is not a plain identifier. */
static char *column_list(const char *const *columns, size_t n)
{
    size_t cap = 1;
    for (size_t i = 0; i < n; i++) {
        if (!ident_ok(columns[i]))
            return NULL;
        cap += strlen(columns[i]) + 4;
    }
    char *out = malloc(cap);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n; i++)
        o += (size_t)snprintf(out + o, cap - o, "%s\"%s\"", i ? ", " : "", columns[i]);
    return out;
}

int pg_copy_read(store_t *base, const char *table, const char *const *columns, const char *kinds, size_t n,
                 const char *order_by, copy_row_cb cb, void *ctx)
{
    pg_store *s = pgs(base);
    if (!ident_ok(table) || !order_ok(order_by) || n == 0 || strlen(kinds) != n)
        return pg_fail_arg(s, "copy_read");
    char *cols = column_list(columns, n);
    if (!cols)
        return pg_fail_arg(s, "copy_read");
    char *sql = malloc(strlen(cols) + strlen(table) + strlen(order_by) + 96);
    if (!sql) {
        free(cols);
        return pg_fail_oom(s);
    }
    sprintf(sql, "DECLARE orchard_copy NO SCROLL CURSOR FOR SELECT %s FROM \"%s\" ORDER BY %s", cols, table,
            order_by);
    free(cols);
    int rc = exec_simple(s, sql, "reading rows");
    free(sql);
    if (rc != STORE_OK)
        return rc;
    store_value_t *row = calloc(n, sizeof *row);
    if (!row) {
        exec_simple(s, "CLOSE orchard_copy", "closing the cursor");
        return pg_fail_oom(s);
    }
    int stop = 0;
    while (rc == STORE_OK && !stop) {
        PGresult *r = PQexecParams(pg_conn(s), "FETCH " FETCH_ROWS " FROM orchard_copy", 0, NULL, NULL, NULL, NULL, 1);
        if ((rc = exec_ok(s, r, "reading rows")) != STORE_OK) {
            PQclear(r);
            break;
        }
        int got = PQntuples(r);
        for (int i = 0; i < got && !stop; i++) {
            for (size_t c = 0; c < n; c++) {
                store_value_t *v = &row[c];
                memset(v, 0, sizeof *v);
                v->is_null = PQgetisnull(r, i, (int)c);
                if (v->is_null)
                    continue;
                if (kinds[c] == 'i') {
                    v->i = pgc_int(r, i, (int)c);
                } else {
                    v->p = (const unsigned char *)PQgetvalue(r, i, (int)c);
                    v->len = (size_t)PQgetlength(r, i, (int)c);
                }
            }
            if (cb(ctx, row)) {
                stop = 1;
                rc = pg_fail(s, STORE_ERR, "reading rows of %s: stopped", table);
            }
        }
        PQclear(r);
        if (got == 0)
            break;
    }
    free(row);
    if (PQtransactionStatus(pg_conn(s)) == PQTRANS_INTRANS)
        exec_simple(s, "CLOSE orchard_copy", "closing the cursor");
    return rc;
}

int pg_copy_write(store_t *base, const char *table, const char *const *columns, const char *kinds, size_t n,
                  const store_value_t *values, size_t nrows)
{
    pg_store *s = pgs(base);
    if (!ident_ok(table) || n == 0 || strlen(kinds) != n || nrows == 0 || n * nrows > MAX_STATEMENT_PARAMS)
        return pg_fail_arg(s, "copy_write");
    char *cols = column_list(columns, n);
    if (!cols)
        return pg_fail_arg(s, "copy_write");
    size_t total = n * nrows;
    /* "($12345, " per value at most, plus the row parentheses. */
    size_t cap = strlen(cols) + strlen(table) + 96 + total * 9 + nrows * 4;
    char *sql = malloc(cap);
    const char **pv = calloc(total, sizeof *pv);
    int *plen = calloc(total, sizeof *plen);
    int *pfmt = calloc(total, sizeof *pfmt);
    char (*ints)[24] = calloc(total, sizeof *ints);
    if (!sql || !pv || !plen || !pfmt || !ints) {
        free(sql), free(pv), free(plen), free(pfmt), free(ints), free(cols);
        return pg_fail_oom(s);
    }
    size_t o = (size_t)snprintf(sql, cap, "INSERT INTO \"%s\" (%s) OVERRIDING SYSTEM VALUE VALUES ", table, cols);
    free(cols);
    for (size_t r = 0; r < nrows; r++) {
        o += (size_t)snprintf(sql + o, cap - o, "%s(", r ? ", " : "");
        for (size_t c = 0; c < n; c++) {
            size_t k = r * n + c;
            o += (size_t)snprintf(sql + o, cap - o, "%s$%zu", c ? ", " : "", k + 1);
            const store_value_t *v = &values[k];
            if (v->is_null)
                continue;
            if (kinds[c] == 'i') {
                snprintf(ints[k], sizeof ints[k], "%lld", (long long)v->i);
                pv[k] = ints[k];
            } else if (kinds[c] == 'b') {
                static const char empty[1];
                pv[k] = v->len ? (const char *)v->p : empty;
                plen[k] = (int)v->len;
                pfmt[k] = 1;
            } else {
                pv[k] = (const char *)v->p; /* NUL-terminated (store_value_t) */
            }
        }
        o += (size_t)snprintf(sql + o, cap - o, ")");
    }
    PGresult *res = PQexecParams(pg_conn(s), sql, (int)total, NULL, pv, plen, pfmt, 0);
    char what[96];
    snprintf(what, sizeof what, "inserting rows into %s", table);
    int rc = exec_ok(s, res, what);
    PQclear(res);
    free(sql), free(pv), free(plen), free(pfmt), free(ints);
    return rc;
}
