/* Copying a whole database between backends (orchard db copy).
 *
 * Why a backend-neutral copier over raw rows, rather than a copy through
 * the storage operations (enrollment_get, command_enqueue, ...): the
 * operations are shaped for the protocol, not for history. They stamp
 * their own times, generate ids, write events, apply state machines
 * (an acknowledged result cannot be "enqueued"), and several tables (scep
 * challenges and pairing tokens, stored as digests of secrets the store
 * never sees again) cannot be read back through them at all. A copy must
 * be exact: every row with its ids and times. So each backend exposes six
 * small raw-row operations (store.h, copy_*) and this file, which knows
 * the tables, drives them: the table list below, in foreign-key order,
 * is the one place that names every copied column.
 *
 * Safety. The copier asks each backend for each table's columns and
 * refuses to start when a table or column is not in its list (a later
 * migration that adds one must add it here too, or the copy would drop
 * data silently). The target must be empty: copying into a live database
 * would merge two fleets' ids and histories, so there is no "force"; an
 * operator who wants to start over creates an empty database. The whole
 * import is one transaction on the target: a failure leaves it empty, as
 * it was. The source is read in one snapshot (a consistent copy even
 * while a server runs on it, though it is best stopped so that nothing
 * written after the snapshot is lost).
 *
 * Rows move in batches (COPY_BATCH_ROWS rows or COPY_BATCH_BYTES bytes,
 * whichever comes first): one multi-row insert per batch on the target.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "util.h"

#define COPY_BATCH_ROWS 500
#define COPY_BATCH_BYTES (8u << 20)
#define COPY_MAX_COLUMNS 48

/* A table: name, ORDER BY for reading (its primary key), columns as
 * "name kind" pairs (kinds as in store_value_t). */
struct copy_table {
    const char *name;
    const char *order_by;
    const char *columns;
};

static const struct copy_table tables[] = {
    {"enrollments", "id",
     "id t, device_id t, udid t, channel t, topic t, serial_number t, model t, model_name t, product_name t, "
     "os_version t, build_version t, device_name t, imei t, meid t, user_id t, user_short_name t, "
     "user_long_name t, cert_sha256 t, state t, push_token b, push_magic t, unlock_token b, created_at i, "
     "updated_at i, last_seen_at i, authenticated_at i, token_updated_at i, checked_out_at i, last_push_at i, "
     "last_push_id t, last_push_error t, push_token_invalid i, silent_since i, last_repush_at i, supervised i, "
     "awaiting_configuration i"},
    {"commands", "id", "id i, uuid t, request_type t, body b, created_at i"},
    {"command_targets", "seq",
     "seq i, command_id i, enrollment_id t, status t, result b, error_chain t, queued_at i, updated_at i"},
    {"events", "id", "id i, at i, enrollment_id t, kind t, detail t"},
    {"issued_certs", "serial",
     "serial t, subject t, enrollment_id t, sha256 t, not_before i, not_after i, issued_at i, revoked_at i"},
    {"scep_challenges", "digest", "digest t, enrollment_id t, created_at i, expires_at i, used_at i"},
    {"admission", "value", "value t, added_at i"},
    {"declarations", "identifier",
     "identifier t, type t, kind t, payload_json t, server_token t, created_at i, updated_at i"},
    {"decl_refs", "from_id, to_id", "from_id t, to_id t"},
    {"decl_sets", "name", "name t, created_at i, updated_at i"},
    {"set_members", "set_name, identifier", "set_name t, identifier t"},
    {"set_assignments", "set_name, target_kind, target", "set_name t, target_kind t, target t, assigned_at i"},
    {"group_members", "group_name, enrollment_id", "group_name t, enrollment_id t, added_at i"},
    {"ddm_state", "enrollment_id",
     "enrollment_id t, token t, sync_pending i, sync_command_id i, token_changed_at i, status_at i, manifest_at i"},
    {"ddm_status_items", "enrollment_id, name", "enrollment_id t, name t, value_json t, updated_at i"},
    {"ddm_decl_status", "enrollment_id, identifier",
     "enrollment_id t, identifier t, kind t, server_token t, active i, valid t, reasons_json t, updated_at i"},
    {"asset_data", "name", "name t, content_type t, data b, sha256 t, updated_at i"},
    {"pairing_tokens", "digest",
     "digest t, watch_udid t, phone_udid t, created_at i, expires_at i, bound_at i, used_at i"},
    {"watch_pairings", "watch_udid", "watch_udid t, phone_udid t, state t, paired_at i, updated_at i"},
    {"ade_tokens", "name",
     "name t, sealed b, access_token_expiry i, server_name t, server_uuid t, org_name t, default_profile_uuid t, "
     "cursor t, cursor_at i, last_sync_at i, last_error t, last_error_at i, imported_at i, updated_at i"},
    {"ade_devices", "serial_number",
     "serial_number t, token_name t, model t, description t, color t, asset_tag t, device_family t, os t, "
     "profile_status t, profile_uuid t, profile_assign_time i, profile_push_time i, device_assigned_date i, "
     "device_assigned_by t, op_type t, op_date i, deleted i, updated_at i"},
    {"ade_profiles", "profile_uuid", "profile_uuid t, token_name t, name t, json t, created_at i"},
    {"settings", "name", "name t, value b, updated_at i"},
};

/* Tables deliberately not copied: leases coordinate the running instances
 * of one database (a copied lease would only delay the new database's
 * first sweep); schema_version is each database's own. */
static const char *const skipped[] = {"leases", "schema_version"};

#define NTABLES (sizeof tables / sizeof tables[0])

/* One table's columns, parsed from its spec. */
typedef struct {
    char buf[1024];
    const char *names[COPY_MAX_COLUMNS];
    char kinds[COPY_MAX_COLUMNS + 1];
    size_t n;
} columns_t;

static int parse_columns(const struct copy_table *t, columns_t *c)
{
    memset(c, 0, sizeof *c);
    if (strlen(t->columns) >= sizeof c->buf)
        return -1;
    strcpy(c->buf, t->columns);
    char *save = NULL;
    for (char *tok = strtok_r(c->buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
        while (*tok == ' ')
            tok++;
        char *sp = strchr(tok, ' ');
        if (!sp || c->n >= COPY_MAX_COLUMNS || (sp[1] != 'i' && sp[1] != 't' && sp[1] != 'b'))
            return -1;
        *sp = '\0';
        c->names[c->n] = tok;
        c->kinds[c->n] = sp[1];
        c->n++;
    }
    return 0;
}

typedef struct {
    char **err;
    const char *side;  /* "source" or "target" */
    const char *table; /* NULL while listing tables */
    const columns_t *cols;
    size_t matched;
    int bad;
} check_t;

static int known_table(const char *name)
{
    for (size_t i = 0; i < NTABLES; i++)
        if (strcmp(tables[i].name, name) == 0)
            return 1;
    for (size_t i = 0; i < sizeof skipped / sizeof skipped[0]; i++)
        if (strcmp(skipped[i], name) == 0)
            return 1;
    return 0;
}

static int check_name(void *ctx, const char *name)
{
    check_t *c = ctx;
    if (!c->table) {
        if (known_table(name))
            return 0;
        *c->err = util_strdup_printf("the %s database has a table \"%s\" this orchard cannot copy", c->side, name);
        c->bad = 1;
        return 1;
    }
    for (size_t i = 0; i < c->cols->n; i++)
        if (strcmp(c->cols->names[i], name) == 0) {
            c->matched++;
            return 0;
        }
    *c->err = util_strdup_printf("the %s database's table %s has a column \"%s\" this orchard cannot copy", c->side,
                                 c->table, name);
    c->bad = 1;
    return 1;
}

static int fail_store(store_t *s, const char *side, const char *what, char **err)
{
    *err = util_strdup_printf("%s database: %s: %s", side, what, s->ops->errmsg(s));
    return STORE_ERR;
}

/* Both databases have exactly the tables and columns the list names. */
static int check_schema(store_t *s, const char *side, char **err)
{
    check_t c = {.err = err, .side = side};
    if (s->ops->copy_columns(s, NULL, check_name, &c) != STORE_OK && !c.bad)
        return fail_store(s, side, "listing tables", err);
    if (c.bad)
        return STORE_ERR;
    for (size_t i = 0; i < NTABLES; i++) {
        columns_t cols;
        if (parse_columns(&tables[i], &cols) != 0) {
            *err = util_strdup_printf("internal error: bad column list for %s", tables[i].name);
            return STORE_ERR;
        }
        c = (check_t){.err = err, .side = side, .table = tables[i].name, .cols = &cols};
        if (s->ops->copy_columns(s, tables[i].name, check_name, &c) != STORE_OK && !c.bad)
            return fail_store(s, side, "listing columns", err);
        if (c.bad)
            return STORE_ERR;
        if (c.matched != cols.n) {
            *err = util_strdup_printf("the %s database's table %s lacks columns orchard expects (%zu of %zu): "
                                      "is it at this orchard's schema version?",
                                      side, tables[i].name, c.matched, cols.n);
            return STORE_ERR;
        }
    }
    return STORE_OK;
}

/* Rows gathered for one multi-row insert; the values own their bytes. */
typedef struct {
    store_t *to;
    const char *table;
    const columns_t *cols;
    store_value_t *values; /* COPY_BATCH_ROWS * cols->n */
    size_t nrows, bytes;
    int64_t total;
    int failed; /* 1: target write failed; 2: out of memory */
} batch_t;

static void batch_clear(batch_t *b)
{
    for (size_t i = 0; i < b->nrows * b->cols->n; i++)
        free((void *)b->values[i].p);
    memset(b->values, 0, sizeof *b->values * COPY_BATCH_ROWS * b->cols->n);
    b->nrows = 0;
    b->bytes = 0;
}

static int batch_flush(batch_t *b)
{
    if (b->nrows == 0)
        return STORE_OK;
    int rc = b->to->ops->copy_write(b->to, b->table, b->cols->names, b->cols->kinds, b->cols->n, b->values,
                                    b->nrows);
    if (rc == STORE_OK)
        b->total += (int64_t)b->nrows;
    batch_clear(b);
    return rc;
}

static int take_row(void *ctx, const store_value_t *row)
{
    batch_t *b = ctx;
    store_value_t *dst = b->values + b->nrows * b->cols->n;
    for (size_t i = 0; i < b->cols->n; i++) {
        dst[i] = row[i];
        dst[i].p = NULL;
        if (row[i].is_null || b->cols->kinds[i] == 'i')
            continue;
        /* One NUL after the bytes: text values stay C strings. */
        unsigned char *copy = malloc(row[i].len + 1);
        if (!copy) {
            b->nrows++; /* so batch_clear frees what this row has */
            b->failed = 2;
            return 1;
        }
        if (row[i].len)
            memcpy(copy, row[i].p, row[i].len);
        copy[row[i].len] = '\0';
        dst[i].p = copy;
        b->bytes += row[i].len;
    }
    b->nrows++;
    if (b->nrows == COPY_BATCH_ROWS || b->bytes >= COPY_BATCH_BYTES) {
        if (batch_flush(b) != STORE_OK) {
            b->failed = 1;
            return 1;
        }
    }
    return 0;
}

static int copy_table(store_t *from, store_t *to, const struct copy_table *t, int64_t *total, char **err)
{
    columns_t cols;
    if (parse_columns(t, &cols) != 0) {
        *err = util_strdup_printf("internal error: bad column list for %s", t->name);
        return STORE_ERR;
    }
    batch_t b = {.to = to, .table = t->name, .cols = &cols};
    b.values = calloc((size_t)COPY_BATCH_ROWS * cols.n, sizeof *b.values);
    if (!b.values) {
        *err = util_strdup_printf("out of memory");
        return STORE_ERR;
    }
    int rc = from->ops->copy_read(from, t->name, cols.names, cols.kinds, cols.n, t->order_by, take_row, &b);
    if (b.failed == 2) {
        *err = util_strdup_printf("copying %s: out of memory", t->name);
        rc = STORE_ERR;
    } else if (b.failed == 1) {
        char what[96];
        snprintf(what, sizeof what, "writing %s", t->name);
        rc = fail_store(to, "target", what, err);
    } else if (rc != STORE_OK) {
        char what[96];
        snprintf(what, sizeof what, "reading %s", t->name);
        rc = fail_store(from, "source", what, err);
    } else if (batch_flush(&b) != STORE_OK) {
        char what[96];
        snprintf(what, sizeof what, "writing %s", t->name);
        rc = fail_store(to, "target", what, err);
    }
    batch_clear(&b);
    free(b.values);
    *total += b.total;
    return rc;
}

int store_copy(store_t *from, store_t *to, int64_t *rows, char **err)
{
    char *dummy = NULL;
    if (!err)
        err = &dummy;
    *err = NULL;
    if (rows)
        *rows = 0;
    if (from == to || !from->ops->copy_begin || !to->ops->copy_begin) {
        *err = util_strdup_printf("copying is not supported between these databases");
        free(dummy);
        return STORE_ERR;
    }
    if (check_schema(from, "source", err) != STORE_OK || check_schema(to, "target", err) != STORE_OK) {
        free(dummy);
        return STORE_ERR;
    }
    if (from->ops->copy_begin(from, 0) != STORE_OK) {
        fail_store(from, "source", "starting a read snapshot", err);
        free(dummy);
        return STORE_ERR;
    }
    if (to->ops->copy_begin(to, 1) != STORE_OK) {
        fail_store(to, "target", "starting the import transaction", err);
        from->ops->copy_end(from, 0);
        free(dummy);
        return STORE_ERR;
    }
    int rc = STORE_OK;
    /* Inside the import transaction, so nothing can fill the target
     * between the check and the copy. */
    for (size_t i = 0; i < NTABLES && rc == STORE_OK; i++) {
        int64_t n = 0;
        if (to->ops->copy_count(to, tables[i].name, &n) != STORE_OK) {
            rc = fail_store(to, "target", "counting rows", err);
        } else if (n > 0) {
            *err = util_strdup_printf("the target database is not empty (table %s has %lld rows): copy into a new, "
                                      "empty database",
                                      tables[i].name, (long long)n);
            rc = STORE_CONFLICT;
        }
    }
    int64_t total = 0;
    for (size_t i = 0; i < NTABLES && rc == STORE_OK; i++)
        rc = copy_table(from, to, &tables[i], &total, err);
    if (rc == STORE_OK && to->ops->copy_end(to, 1) != STORE_OK)
        rc = fail_store(to, "target", "committing the import", err);
    else if (rc != STORE_OK)
        to->ops->copy_end(to, 0);
    from->ops->copy_end(from, 0);
    if (rc == STORE_OK && rows)
        *rows = total;
    free(dummy);
    return rc;
}
