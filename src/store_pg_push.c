/* PostgreSQL backend: APNs push outcomes (store.h, push_results_record);
 * the semantics of store_sqlite_push.c. */
#include <stdlib.h>
#include <string.h>

#include "store_pg_internal.h"

enum { P_RESULT = PG_ST_PUSH, P_COUNT_ };

_Static_assert((int)P_COUNT_ <= (int)PG_ST_INACTIVE, "statement ids overlap");

/* One result in one statement: the push fields; for a failure, marking the
 * token invalid (only while the stored token is still the one pushed to: a
 * TokenUpdate that arrived meanwhile brought a new one, which must stay
 * usable) and the event, whose kind says whether the token was marked.
 * $5 is true only when APNs rejected the token itself and a non-empty
 * token was pushed to. $3 (apns-id) is kept only for an accepted push ($4 NULL): after a failure
 * last_push_id still names the latest push APNs accepted. */
static const char *const result_sql =
    "WITH u AS ("
    "  UPDATE enrollments SET last_push_at = $2::bigint,"
    "   last_push_id = CASE WHEN $4::text IS NULL THEN $3::text ELSE last_push_id END,"
    "   last_push_error = $4::text,"
    "   push_token_invalid = push_token_invalid"
    "    OR COALESCE($4::text IS NOT NULL AND $5::boolean AND push_token = $6::bytea, false)"
    "  WHERE id = $1::text"
    "  RETURNING COALESCE(push_token_invalid AND push_token = $6::bytea, false) AS marked)"
    " INSERT INTO events (at, enrollment_id, kind, detail)"
    " SELECT $2::bigint, $1::text, CASE WHEN $5::boolean AND marked THEN 'push_token_invalid' ELSE 'push_failed' END,"
    "  '{\"error\":' || orchard_json_str($4::text) || '}'"
    " FROM u WHERE $4::text IS NOT NULL";

/* Results are applied in enrollment-id order (stable, so later results for
 * one id still win): two instances recording overlapping batches then lock
 * the rows in the same order and cannot deadlock. */
typedef struct {
    const push_result_t *r;
    size_t index;
} ordered_t;

static int ordered_cmp(const void *a, const void *b)
{
    const ordered_t *x = a, *y = b;
    int c = strcmp(x->r->enrollment_id, y->r->enrollment_id);
    if (c)
        return c;
    return x->index < y->index ? -1 : x->index > y->index;
}

int pg_push_results_record(store_t *base, const push_result_t *r, size_t n)
{
    pg_store *s = pgs(base);
    if (!r && n)
        return pg_fail_arg(s, "push_results_record");
    for (size_t i = 0; i < n; i++)
        if (!r[i].enrollment_id)
            return pg_fail_arg(s, "push_results_record");
    if (n == 0)
        return STORE_OK;
    ordered_t *order = calloc(n, sizeof *order);
    if (!order)
        return pg_fail_oom(s);
    for (size_t i = 0; i < n; i++)
        order[i] = (ordered_t){&r[i], i};
    qsort(order, n, sizeof *order, ordered_cmp);

    int rc = pg_tx_begin(s);
    for (size_t i = 0; rc == STORE_OK && i < n; i++) {
        const push_result_t *x = order[i].r;
        pg_params p;
        pgp_init(&p);
        pgp_text(&p, x->enrollment_id);
        pgp_int(&p, x->at);
        pgp_text(&p, x->apns_id);
        pgp_text(&p, x->error);
        pgp_bool(&p, x->token_invalid && x->push_token && x->push_token_len);
        pgp_blob(&p, x->push_token ? x->push_token : (const void *)"", x->push_token ? x->push_token_len : 0);
        if (pg_run(s, P_RESULT, result_sql, &p, "recording push result", NULL, NULL) != STORE_OK)
            rc = pg_tx_abort(s, STORE_ERR);
    }
    free(order);
    return rc == STORE_OK ? pg_tx_commit(s) : rc;
}
