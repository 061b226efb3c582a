/* Storage conformance, inactive devices: the sweep's repush_claim and
 * inactive_mark, the silent filter of enrollment_list, and leases. Written
 * against store.h only, like test_store.c, so every backend runs it
 * (ORCHARD_TEST_DB=URL). A shared database may hold other tests' rows, so
 * results are checked for this test's ids, never as totals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_conformance.h"

#define MAX_IDS 64

typedef struct {
    int n;
    char id[MAX_IDS][CONF_NAME_LEN];
} ids_t;

static int collect_id(void *ctx, const enrollment_t *e)
{
    ids_t *c = ctx;
    if (c->n < MAX_IDS)
        snprintf(c->id[c->n], CONF_NAME_LEN, "%s", e->id);
    c->n++;
    return 0;
}

static int has_id(const ids_t *c, const char *id)
{
    for (int i = 0; i < c->n && i < MAX_IDS; i++)
        if (strcmp(c->id[i], id) == 0)
            return 1;
    return 0;
}

/* Claims everything due (several batches if need be) and collects it. */
static void claim_all(conf_t *fx, int64_t seen_before, int64_t now, ids_t *out)
{
    memset(out, 0, sizeof *out);
    int claimed = 1000;
    while (claimed == 1000)
        assert_int_equal(fx->s->ops->repush_claim(fx->s, seen_before, now, 1000, collect_id, out, &claimed), STORE_OK);
}

static int count_kind(conf_t *fx, const char *id, const char *kind)
{
    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(fx->s->ops->event_list(fx->s, id, 100, conf_collect_event, &ev), STORE_OK);
    int n = 0;
    for (int i = 0; i < ev.n && i < CONF_MAX_ROWS; i++)
        n += strcmp(ev.row[i].kind, kind) == 0;
    return n;
}

static enrollment_t get(conf_t *fx, const char *id)
{
    enrollment_t e;
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    return e;
}

/* Re-push: only active enrollments with a usable token that have been silent
 * since the cut-off, each at most once per interval. */
static void test_repush_claim(void **state)
{
    conf_t *fx = *state;
    const char *old = conf_active_device(fx, "old", 1, CONF_T0);
    const char *fresh = conf_active_device(fx, "fresh", 2, CONF_T0 + 1000);
    const char *gone = conf_active_device(fx, "gone", 3, CONF_T0);
    const char *out = conf_active_device(fx, "out", 4, CONF_T0);
    const char *notoken = conf_name(fx, "notoken");
    assert_non_null(old);
    assert_non_null(fresh);
    assert_non_null(gone);
    assert_non_null(out);
    assert_int_equal(conf_authenticate(fx, notoken, conf_cert(fx, 5), "iPhone14,5", NULL, CONF_T0), STORE_OK);
    push_result_t r = {.enrollment_id = gone,
                       .push_token = conf_push_token,
                       .push_token_len = sizeof conf_push_token,
                       .error = "APNs 410 Unregistered",
                       .token_invalid = 1,
                       .at = CONF_T0 + 1};
    assert_int_equal(fx->s->ops->push_results_record(fx->s, &r, 1), STORE_OK);
    assert_int_equal(fx->s->ops->checkout(fx->s, out, CONF_T0 + 2), STORE_OK);
    /* checkout refreshed last_seen_at; it must not count even when old. */

    ids_t c;
    claim_all(fx, CONF_T0 + 500, CONF_T0 + 1000, &c);
    assert_true(has_id(&c, old));
    assert_false(has_id(&c, fresh));
    assert_false(has_id(&c, gone));
    assert_false(has_id(&c, out));
    assert_false(has_id(&c, notoken));
    enrollment_t e = get(fx, old);
    assert_int_equal(e.last_repush_at, CONF_T0 + 1000);
    enrollment_free(&e);

    /* Same interval: not again. */
    claim_all(fx, CONF_T0 + 600, CONF_T0 + 1100, &c);
    assert_false(has_id(&c, old));

    /* A later interval: again, and now the other one too. */
    claim_all(fx, CONF_T0 + 1500, CONF_T0 + 2000, &c);
    assert_true(has_id(&c, old));
    assert_true(has_id(&c, fresh));
    assert_false(has_id(&c, out));

    /* Heard from since: no longer silent. */
    assert_int_equal(fx->s->ops->touch(fx->s, old, CONF_T0 + 2900), STORE_OK);
    claim_all(fx, CONF_T0 + 2500, CONF_T0 + 3000, &c);
    assert_false(has_id(&c, old));
    assert_true(has_id(&c, fresh));

    int claimed = -1;
    assert_int_equal(fx->s->ops->repush_claim(fx->s, CONF_T0, CONF_T0, 0, NULL, NULL, &claimed), STORE_ERR);
    assert_int_equal(fx->s->ops->repush_claim(fx->s, CONF_T0, CONF_T0, 1001, NULL, NULL, &claimed), STORE_ERR);
}

/* A callback may stop early; the claim still covers every row it took. */
static void test_repush_claim_limit(void **state)
{
    conf_t *fx = *state;
    const char *a = conf_active_device(fx, "lim-a", 1, CONF_T0 - 3000);
    const char *b = conf_active_device(fx, "lim-b", 2, CONF_T0 - 2000);
    assert_non_null(a);
    assert_non_null(b);
    /* Oldest first: with other tests' rows around, claim until both are in. */
    ids_t c, all;
    memset(&all, 0, sizeof all);
    for (int round = 0; round < 1000 && !(has_id(&all, a) && has_id(&all, b)); round++) {
        memset(&c, 0, sizeof c);
        int claimed = 0;
        assert_int_equal(fx->s->ops->repush_claim(fx->s, CONF_T0 - 1000, CONF_T0, 1, collect_id, &c, &claimed),
                         STORE_OK);
        assert_true(claimed <= 1);
        if (claimed == 0)
            break;
        collect_id(&all, &(enrollment_t){.id = c.id[0]});
    }
    assert_true(has_id(&all, a));
    assert_true(has_id(&all, b));
}

/* Flagging: once per silence, with an event; the flag clears when the
 * device is heard from; enrollment_list filters on it. */
static void test_inactive_mark_and_filter(void **state)
{
    conf_t *fx = *state;
    const char *old = conf_active_device(fx, "quiet", 1, CONF_T0);
    const char *fresh = conf_active_device(fx, "chatty", 2, CONF_T0 + 1000);
    const char *out = conf_active_device(fx, "left", 3, CONF_T0);
    assert_non_null(old);
    assert_non_null(fresh);
    assert_non_null(out);
    assert_int_equal(fx->s->ops->checkout(fx->s, out, CONF_T0 + 1), STORE_OK);

    int marked = -1;
    assert_int_equal(fx->s->ops->inactive_mark(fx->s, CONF_T0 + 500, CONF_T0 + 1000, &marked), STORE_OK);
    assert_true(marked >= 1);
    enrollment_t e = get(fx, old);
    assert_int_equal(e.silent_since, CONF_T0 + 1000);
    assert_string_equal(e.state, ENR_STATE_ACTIVE); /* a flag, not a state */
    enrollment_free(&e);
    e = get(fx, fresh);
    assert_int_equal(e.silent_since, 0);
    enrollment_free(&e);
    e = get(fx, out);
    assert_int_equal(e.silent_since, 0);
    enrollment_free(&e);
    assert_int_equal(count_kind(fx, old, "marked_inactive"), 1);
    assert_int_equal(count_kind(fx, fresh, "marked_inactive"), 0);

    /* Already flagged: no second event, the first time is kept. */
    assert_int_equal(fx->s->ops->inactive_mark(fx->s, CONF_T0 + 600, CONF_T0 + 1100, &marked), STORE_OK);
    assert_int_equal(count_kind(fx, old, "marked_inactive"), 1);
    e = get(fx, old);
    assert_int_equal(e.silent_since, CONF_T0 + 1000);
    enrollment_free(&e);

    ids_t c;
    memset(&c, 0, sizeof c);
    enrollment_filter_t f = {.after = fx->prefix, .limit = 1000, .silent = 1};
    assert_int_equal(fx->s->ops->enrollment_list(fx->s, &f, collect_id, &c), STORE_OK);
    assert_true(has_id(&c, old));
    assert_false(has_id(&c, fresh));
    memset(&c, 0, sizeof c);
    f.silent = -1;
    assert_int_equal(fx->s->ops->enrollment_list(fx->s, &f, collect_id, &c), STORE_OK);
    assert_false(has_id(&c, old));
    assert_true(has_id(&c, fresh));
    memset(&c, 0, sizeof c);
    f.silent = 1;
    f.state = ENR_STATE_ACTIVE;
    assert_int_equal(fx->s->ops->enrollment_list(fx->s, &f, collect_id, &c), STORE_OK);
    assert_true(has_id(&c, old));

    /* Heard from again: the flag clears. */
    assert_int_equal(fx->s->ops->touch(fx->s, old, CONF_T0 + 1200), STORE_OK);
    e = get(fx, old);
    assert_int_equal(e.silent_since, 0);
    enrollment_free(&e);
    memset(&c, 0, sizeof c);
    f.state = NULL;
    assert_int_equal(fx->s->ops->enrollment_list(fx->s, &f, collect_id, &c), STORE_OK);
    assert_false(has_id(&c, old));

    /* So does a TokenUpdate. */
    assert_int_equal(fx->s->ops->inactive_mark(fx->s, CONF_T0 + 1500, CONF_T0 + 2000, &marked), STORE_OK);
    e = get(fx, fresh);
    assert_int_equal(e.silent_since, CONF_T0 + 2000);
    enrollment_free(&e);
    assert_int_equal(conf_token_update(fx, fresh, fresh, NULL, 0, CONF_T0 + 2100), STORE_OK);
    e = get(fx, fresh);
    assert_int_equal(e.silent_since, 0);
    enrollment_free(&e);
}

/* Two handles (two orchard instances): one holds the lease until it
 * expires or is released. */
static void test_lease_two_handles(void **state)
{
    conf_t *fx = *state;
    store_t *a = fx->s, *b = conf_open(fx);
    assert_non_null(b);
    const char *name = conf_name(fx, "sweep");
    const int64_t ttl = 30;
    assert_int_equal(a->ops->lease_acquire(a, name, "holder-a", ttl, CONF_T0), STORE_OK);
    assert_int_equal(b->ops->lease_acquire(b, name, "holder-b", ttl, CONF_T0 + 1), STORE_CONFLICT);
    /* Renewal by the holder moves the expiry. */
    assert_int_equal(a->ops->lease_acquire(a, name, "holder-a", ttl, CONF_T0 + 20), STORE_OK);
    assert_int_equal(b->ops->lease_acquire(b, name, "holder-b", ttl, CONF_T0 + ttl + 1), STORE_CONFLICT);
    /* Expired: the other takes it, and the first is now refused. */
    assert_int_equal(b->ops->lease_acquire(b, name, "holder-b", ttl, CONF_T0 + 20 + ttl), STORE_OK);
    assert_int_equal(a->ops->lease_acquire(a, name, "holder-a", ttl, CONF_T0 + 21 + ttl), STORE_CONFLICT);
    /* Only the holder can release; then anyone may take it at once. */
    assert_int_equal(a->ops->lease_release(a, name, "holder-a"), STORE_NOTFOUND);
    assert_int_equal(b->ops->lease_release(b, name, "holder-b"), STORE_OK);
    assert_int_equal(a->ops->lease_acquire(a, name, "holder-a", ttl, CONF_T0 + 22 + ttl), STORE_OK);
    /* Leases are independent by name. */
    const char *other = conf_name(fx, "other-job");
    assert_int_equal(b->ops->lease_acquire(b, other, "holder-b", ttl, CONF_T0 + 22 + ttl), STORE_OK);
    assert_int_equal(b->ops->lease_acquire(b, name, "holder-b", 0, CONF_T0), STORE_ERR);
    store_close(b);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_repush_claim),
        STORE_TEST(test_repush_claim_limit),
        STORE_TEST(test_inactive_mark_and_filter),
        STORE_TEST(test_lease_two_handles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
