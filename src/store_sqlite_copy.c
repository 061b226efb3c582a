/* SQLite backend: raw row access for the whole-database copier (store.h
 * copy_*, store_copy.c). Table, column and ORDER BY names come from the
 * copier's constant list and are checked to be plain identifiers before
 * they reach SQL text; values are always bound.
 *
 * The source side reads in one deferred transaction (a WAL snapshot); the
 * target side writes in one write transaction taken like every other
 * write (sq_tx_begin: the handle's writer gate, BEGIN IMMEDIATE, group
 * fsync at commit). Ids are inserted as they are; SQLite's next rowid is
 * then one past the largest, so nothing else needs adjusting.
 *
 * command_targets.pending is derived from status (the table's CHECK
 * demands it equal status IN ('queued', 'NotNow')); it is not a copied
 * column, so it is left out of copy_columns and computed on insert. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"

static int ident_ok(const char *name)
{
    if (!name || !*name || strlen(name) > 63)
        return 0;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || *p == '_' || (p != name && *p >= '0' && *p <= '9')))
            return 0;
    return 1;
}

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

/* The derived column of a table, if any: name and the status column it
 * follows. */
static int derived_pending(const char *table)
{
    return strcmp(table, "command_targets") == 0;
}

int sq_copy_begin(store_t *base, int writable)
{
    sq_store *s = sq(base);
    if (writable)
        return sq_tx_begin(s);
    if (sqlite3_exec(sq_db(s), "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
        return sq_fail_db(s, "starting a read snapshot");
    /* A deferred transaction takes its snapshot at the first read. */
    if (sqlite3_exec(sq_db(s), "SELECT count(*) FROM sqlite_master", NULL, NULL, NULL) != SQLITE_OK) {
        int rc = sq_fail_db(s, "starting a read snapshot");
        sqlite3_exec(sq_db(s), "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return STORE_OK;
}

int sq_copy_end(store_t *base, int commit)
{
    sq_store *s = sq(base);
    if (sqlite3_txn_state(sq_db(s), NULL) == SQLITE_TXN_WRITE)
        return commit ? sq_tx_commit(s) : sq_tx_abort(s, STORE_OK);
    if (!sqlite3_get_autocommit(sq_db(s)))
        sqlite3_exec(sq_db(s), "ROLLBACK", NULL, NULL, NULL); /* a read snapshot: nothing to keep */
    return STORE_OK;
}

int sq_copy_columns(store_t *base, const char *table, name_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (table && !ident_ok(table))
        return sq_fail_arg(s, "copy_columns");
    sqlite3_stmt *st = NULL;
    const char *sql = table ? "SELECT name FROM pragma_table_info(?1) ORDER BY cid"
                            : "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%'"
                              " ESCAPE '\\' ORDER BY name";
    if (sqlite3_prepare_v2(sq_db(s), sql, -1, &st, NULL) != SQLITE_OK)
        return sq_fail_db(s, "listing columns");
    if (table)
        sqlite3_bind_text(st, 1, table, -1, SQLITE_STATIC);
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *name = (const char *)sqlite3_column_text(st, 0);
        if (!name || (table && derived_pending(table) && strcmp(name, "pending") == 0))
            continue;
        if (cb(ctx, name))
            break;
    }
    int result = rc == SQLITE_ROW || rc == SQLITE_DONE ? STORE_OK : sq_fail_db(s, "listing columns");
    sqlite3_finalize(st);
    return result;
}

int sq_copy_count(store_t *base, const char *table, int64_t *rows)
{
    sq_store *s = sq(base);
    *rows = 0;
    if (!ident_ok(table))
        return sq_fail_arg(s, "copy_count");
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM \"%s\"", table);
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(sq_db(s), sql, -1, &st, NULL) != SQLITE_OK)
        return sq_fail_db(s, "counting rows");
    int rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *rows = sqlite3_column_int64(st, 0);
    int result = rc == SQLITE_ROW ? STORE_OK : sq_fail_db(s, "counting rows");
    sqlite3_finalize(st);
    return result;
}

/* "a, b, c" for columns[0..n) plus `extra` (may be NULL); NULL if a name
 * is not a plain identifier or out of memory. */
static char *column_list(const char *const *columns, size_t n, const char *extra)
{
    size_t cap = 16 + (extra ? strlen(extra) : 0);
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
    if (extra)
        snprintf(out + o, cap - o, ", %s", extra);
    return out;
}

int sq_copy_read(store_t *base, const char *table, const char *const *columns, const char *kinds, size_t n,
                 const char *order_by, copy_row_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    if (!ident_ok(table) || !order_ok(order_by) || n == 0 || strlen(kinds) != n)
        return sq_fail_arg(s, "copy_read");
    char *cols = column_list(columns, n, NULL);
    if (!cols)
        return sq_fail_arg(s, "copy_read");
    char *sql = malloc(strlen(cols) + strlen(table) + strlen(order_by) + 48);
    if (!sql) {
        free(cols);
        return sq_fail_oom(s);
    }
    sprintf(sql, "SELECT %s FROM \"%s\" ORDER BY %s", cols, table, order_by);
    free(cols);
    sqlite3_stmt *st = NULL;
    int prc = sqlite3_prepare_v2(sq_db(s), sql, -1, &st, NULL);
    free(sql);
    if (prc != SQLITE_OK)
        return sq_fail_db(s, "reading rows");
    store_value_t *row = calloc(n, sizeof *row);
    if (!row) {
        sqlite3_finalize(st);
        return sq_fail_oom(s);
    }
    int rc, result = STORE_OK;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        for (size_t c = 0; c < n; c++) {
            store_value_t *v = &row[c];
            memset(v, 0, sizeof *v);
            int i = (int)c;
            v->is_null = sqlite3_column_type(st, i) == SQLITE_NULL;
            if (v->is_null)
                continue;
            if (kinds[c] == 'i') {
                v->i = sqlite3_column_int64(st, i);
            } else if (kinds[c] == 'b') {
                v->p = sqlite3_column_blob(st, i);
                v->len = (size_t)sqlite3_column_bytes(st, i);
            } else {
                v->p = sqlite3_column_text(st, i);
                v->len = (size_t)sqlite3_column_bytes(st, i);
            }
        }
        if (cb(ctx, row)) {
            result = STORE_ERR;
            break;
        }
    }
    if (result == STORE_OK && rc != SQLITE_DONE)
        result = sq_fail_db(s, "reading rows");
    free(row);
    sqlite3_finalize(st);
    return result;
}

/* Binds one value of kind `kind` (SQLITE_STATIC: the batch outlives the step). */
static int bind_value(sqlite3_stmt *st, int i, char kind, const store_value_t *v)
{
    if (v->is_null)
        return sqlite3_bind_null(st, i);
    if (kind == 'i')
        return sqlite3_bind_int64(st, i, v->i);
    if (v->len > (size_t)0x7fffffff)
        return SQLITE_TOOBIG;
    if (kind == 'b')
        return v->len ? sqlite3_bind_blob(st, i, v->p, (int)v->len, SQLITE_STATIC) : sqlite3_bind_zeroblob(st, i, 0);
    return sqlite3_bind_text(st, i, v->len ? (const char *)v->p : "", (int)v->len, SQLITE_STATIC);
}

int sq_copy_write(store_t *base, const char *table, const char *const *columns, const char *kinds, size_t n,
                  const store_value_t *values, size_t nrows)
{
    sq_store *s = sq(base);
    if (!ident_ok(table) || n == 0 || n > 900 || strlen(kinds) != n)
        return sq_fail_arg(s, "copy_write");
    /* pending follows the row's status (bound again as the last parameter). */
    size_t status_col = n;
    if (derived_pending(table))
        for (size_t c = 0; c < n; c++)
            if (strcmp(columns[c], "status") == 0)
                status_col = c;
    int with_pending = status_col < n;
    char *cols = column_list(columns, n, with_pending ? "pending" : NULL);
    if (!cols)
        return sq_fail_arg(s, "copy_write");
    size_t cap = strlen(cols) + strlen(table) + 64 + n * 8;
    char *sql = malloc(cap);
    if (!sql) {
        free(cols);
        return sq_fail_oom(s);
    }
    size_t o = (size_t)snprintf(sql, cap, "INSERT INTO \"%s\" (%s) VALUES (", table, cols);
    free(cols);
    for (size_t c = 0; c < n; c++)
        o += (size_t)snprintf(sql + o, cap - o, "%s?%zu", c ? ", " : "", c + 1);
    snprintf(sql + o, cap - o, with_pending ? ", ?%zu IN ('queued', 'NotNow'))" : ")", status_col + 1);
    sqlite3_stmt *st = NULL;
    int prc = sqlite3_prepare_v2(sq_db(s), sql, -1, &st, NULL);
    free(sql);
    if (prc != SQLITE_OK)
        return sq_fail_db(s, "inserting rows");
    int result = STORE_OK;
    for (size_t r = 0; r < nrows && result == STORE_OK; r++) {
        int brc = SQLITE_OK;
        for (size_t c = 0; c < n && brc == SQLITE_OK; c++)
            brc = bind_value(st, (int)c + 1, kinds[c], &values[r * n + c]);
        if (brc != SQLITE_OK || sqlite3_step(st) != SQLITE_DONE)
            result = sq_fail_db(s, "inserting rows");
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
    sqlite3_finalize(st);
    return result;
}
