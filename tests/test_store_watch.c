/* Storage conformance, supervision and Apple Watch pairing (schema 5):
 * enrollment_set_supervised, the single-use pairing security tokens and the
 * watch-to-phone pairings. Written against store.h only (one check of how
 * tokens are kept is SQLite-specific), so every backend runs it
 * (ORCHARD_TEST_DB=URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "store_conformance.h"

#define OPS(fx) ((fx)->s->ops)

static int supervised_of(conf_t *fx, const char *id)
{
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    int v = e.supervised;
    enrollment_free(&e);
    return v;
}

typedef struct {
    const char *id;
    int supervised;
    int seen;
} find_t;

static int find_enrollment(void *ctx, const enrollment_t *e)
{
    find_t *f = ctx;
    if (strcmp(e->id, f->id) == 0) {
        f->supervised = e->supervised;
        f->seen++;
    }
    return 0;
}

/* Unknown at first, recorded, kept across re-enrollment, in listings too. */
static void test_supervised(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "sup", 1, CONF_T0);
    assert_non_null(dev);
    assert_int_equal(supervised_of(fx, dev), -1);
    assert_int_equal(OPS(fx)->enrollment_set_supervised(fx->s, dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(supervised_of(fx, dev), 1);
    assert_int_equal(OPS(fx)->enrollment_set_supervised(fx->s, dev, 0, CONF_T0 + 2), STORE_OK);
    assert_int_equal(supervised_of(fx, dev), 0);
    assert_int_equal(OPS(fx)->enrollment_set_supervised(fx->s, dev, 1, CONF_T0 + 3), STORE_OK);

    /* Re-enrollment keeps the last answer. */
    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 4), STORE_OK);
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 2), "iPhone14,5", NULL, CONF_T0 + 5), STORE_OK);
    assert_int_equal(supervised_of(fx, dev), 1);
    assert_int_equal(conf_token_update(fx, dev, dev, NULL, 0, CONF_T0 + 6), STORE_OK);
    assert_int_equal(supervised_of(fx, dev), 1);

    find_t f = {.id = dev};
    enrollment_filter_t filter = {.after = fx->prefix, .limit = 1000};
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &filter, find_enrollment, &f), STORE_OK);
    assert_int_equal(f.seen, 1);
    assert_int_equal(f.supervised, 1);
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_by_cert(fx->s, conf_cert(fx, 2), &e), STORE_OK);
    assert_int_equal(e.supervised, 1);
    enrollment_free(&e);

    /* A new enrollment starts unknown, whatever others say. */
    const char *other = conf_active_device(fx, "sup-new", 3, CONF_T0);
    assert_non_null(other);
    assert_int_equal(supervised_of(fx, other), -1);

    assert_int_equal(OPS(fx)->enrollment_set_supervised(fx->s, conf_name(fx, "nobody"), 1, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->enrollment_set_supervised(fx->s, dev, 2, CONF_T0), STORE_ERR);
    assert_int_equal(supervised_of(fx, dev), 1);
}

/* The security token of one pairing attempt: a random-looking string unique
 * to this test. */
static const char *token_of(conf_t *fx, const char *suffix)
{
    return conf_name(fx, suffix);
}

static void test_pairing_bind_consume(void **state)
{
    conf_t *fx = *state;
    const char *tok = token_of(fx, "secret-token-1");
    const char *watch = conf_name(fx, "watch-1"), *phone = conf_name(fx, "phone-1"),
               *other_phone = conf_name(fx, "phone-2"), *other_watch = conf_name(fx, "watch-2");
    const int64_t exp = CONF_T0 + 300;

    pairing_token_t p;
    assert_int_equal(OPS(fx)->pairing_get(fx->s, tok, &p), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_add(fx->s, tok, watch, exp, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->pairing_add(fx->s, tok, other_watch, exp, CONF_T0), STORE_CONFLICT);
    assert_int_equal(OPS(fx)->pairing_get(fx->s, tok, &p), STORE_OK);
    assert_string_equal(p.security_token, tok);
    assert_string_equal(p.watch_udid, watch);
    assert_null(p.phone_udid);
    assert_int_equal(p.created_at, CONF_T0);
    assert_int_equal(p.expires_at, exp);
    assert_int_equal(p.bound_at, 0);
    assert_int_equal(p.used_at, 0);
    pairing_token_free(&p);

    /* Not bound yet: the watch cannot spend it. */
    assert_int_equal(OPS(fx)->pairing_consume(fx->s, tok, watch, CONF_T0 + 1), STORE_NOTFOUND);
    /* Binding names the watch the token was made for. */
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, tok, other_watch, phone, CONF_T0 + 2), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, tok, watch, phone, CONF_T0 + 3), STORE_OK);
    /* Again to the same phone: fine, the first time is kept; another phone: no. */
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, tok, watch, phone, CONF_T0 + 4), STORE_OK);
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, tok, watch, other_phone, CONF_T0 + 5), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_get(fx->s, tok, &p), STORE_OK);
    assert_string_equal(p.phone_udid, phone);
    assert_int_equal(p.bound_at, CONF_T0 + 3);
    pairing_token_free(&p);

    /* Spent once, by the right watch only. */
    assert_int_equal(OPS(fx)->pairing_consume(fx->s, tok, other_watch, CONF_T0 + 6), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_consume(fx->s, tok, watch, CONF_T0 + 7), STORE_OK);
    assert_int_equal(OPS(fx)->pairing_consume(fx->s, tok, watch, CONF_T0 + 8), STORE_NOTFOUND); /* replay */
    /* Used: no binding any more, but still readable (callers name why). */
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, tok, watch, phone, CONF_T0 + 9), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_get(fx->s, tok, &p), STORE_OK);
    assert_int_equal(p.used_at, CONF_T0 + 7);
    pairing_token_free(&p);

    /* Unknown tokens. */
    const char *unknown = token_of(fx, "never-issued");
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, unknown, watch, phone, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_consume(fx->s, unknown, watch, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_add(fx->s, "", watch, exp, CONF_T0), STORE_ERR);
}

/* Expiry is "expires_at > now": at expires_at the token is dead. */
static void test_pairing_expiry(void **state)
{
    conf_t *fx = *state;
    const char *watch = conf_name(fx, "watch-exp"), *phone = conf_name(fx, "phone-exp");
    const char *late_bind = token_of(fx, "late-bind");
    assert_int_equal(OPS(fx)->pairing_add(fx->s, late_bind, watch, CONF_T0 + 60, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, late_bind, watch, phone, CONF_T0 + 60), STORE_NOTFOUND);
    pairing_token_t p;
    assert_int_equal(OPS(fx)->pairing_get(fx->s, late_bind, &p), STORE_OK); /* still there */
    assert_int_equal(p.bound_at, 0);
    pairing_token_free(&p);

    const char *late_use = token_of(fx, "late-use");
    assert_int_equal(OPS(fx)->pairing_add(fx->s, late_use, watch, CONF_T0 + 60, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->pairing_bind_phone(fx->s, late_use, watch, phone, CONF_T0 + 59), STORE_OK);
    assert_int_equal(OPS(fx)->pairing_consume(fx->s, late_use, watch, CONF_T0 + 60), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->pairing_get(fx->s, late_use, &p), STORE_OK);
    assert_int_equal(p.used_at, 0);
    pairing_token_free(&p);
}

/* SQLite-specific: the bearer secret itself is nowhere in the database. */
static void test_pairing_token_not_stored(void **state)
{
    conf_t *fx = *state;
    if (fx->shared)
        skip();
    const char *tok = token_of(fx, "do-not-store-me");
    assert_int_equal(OPS(fx)->pairing_add(fx->s, tok, conf_name(fx, "w"), CONF_T0 + 60, CONF_T0), STORE_OK);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db,
                                        "SELECT count(*) FROM pairing_tokens WHERE instr(digest, ?1) > 0"
                                        " OR instr(watch_udid, ?1) > 0",
                                        -1, &st, NULL),
                     SQLITE_OK);
    sqlite3_bind_text(st, 1, tok, -1, SQLITE_STATIC);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 0);
    sqlite3_finalize(st);
    assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM pairing_tokens", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    assert_int_equal(sqlite3_column_int(st, 0), 1);
    sqlite3_finalize(st);
    sqlite3_close(db);
}

typedef struct {
    int n;
    char watch[8][CONF_NAME_LEN];
    char state[8][24];
} watches_t;

static int collect_watch(void *ctx, const watch_pairing_t *p)
{
    watches_t *c = ctx;
    if (c->n < 8) {
        snprintf(c->watch[c->n], CONF_NAME_LEN, "%s", p->watch_udid);
        snprintf(c->state[c->n], sizeof c->state[0], "%s", p->state);
    }
    c->n++;
    return 0;
}

static void test_watch_pairings(void **state)
{
    conf_t *fx = *state;
    const char *w1 = conf_name(fx, "w-a"), *w2 = conf_name(fx, "w-b");
    const char *p1 = conf_name(fx, "p-1"), *p2 = conf_name(fx, "p-2");
    watch_pairing_t wp;
    assert_int_equal(OPS(fx)->watch_pairing_get(fx->s, w1, &wp), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->watch_pair_state(fx->s, w1, "enrolled", CONF_T0), STORE_NOTFOUND);

    assert_int_equal(OPS(fx)->watch_pair(fx->s, w2, p1, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->watch_pair(fx->s, w1, p1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(OPS(fx)->watch_pairing_get(fx->s, w1, &wp), STORE_OK);
    assert_string_equal(wp.watch_udid, w1);
    assert_string_equal(wp.phone_udid, p1);
    assert_string_equal(wp.state, "profile_issued");
    assert_int_equal(wp.paired_at, CONF_T0 + 1);
    assert_int_equal(wp.updated_at, CONF_T0 + 1);
    watch_pairing_free(&wp);

    assert_int_equal(OPS(fx)->watch_pair_state(fx->s, w1, "enrolled", CONF_T0 + 2), STORE_OK);
    assert_int_equal(OPS(fx)->watch_pairing_get(fx->s, w1, &wp), STORE_OK);
    assert_string_equal(wp.state, "enrolled");
    assert_int_equal(wp.paired_at, CONF_T0 + 1);
    assert_int_equal(wp.updated_at, CONF_T0 + 2);
    watch_pairing_free(&wp);
    assert_int_equal(OPS(fx)->watch_pair_state(fx->s, w1, "bogus", CONF_T0 + 2), STORE_ERR);

    watches_t c = {0};
    assert_int_equal(OPS(fx)->phone_watches(fx->s, p1, collect_watch, &c), STORE_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.watch[0], w1); /* by watch udid */
    assert_string_equal(c.state[0], "enrolled");
    assert_string_equal(c.watch[1], w2);
    assert_string_equal(c.state[1], "profile_issued");

    /* A reset watch pairs again, with another phone: replaced, state anew. */
    assert_int_equal(OPS(fx)->watch_pair(fx->s, w1, p2, CONF_T0 + 10), STORE_OK);
    assert_int_equal(OPS(fx)->watch_pairing_get(fx->s, w1, &wp), STORE_OK);
    assert_string_equal(wp.phone_udid, p2);
    assert_string_equal(wp.state, "profile_issued");
    assert_int_equal(wp.paired_at, CONF_T0 + 10);
    watch_pairing_free(&wp);
    memset(&c, 0, sizeof c);
    assert_int_equal(OPS(fx)->phone_watches(fx->s, p1, collect_watch, &c), STORE_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.watch[0], w2);
    memset(&c, 0, sizeof c);
    assert_int_equal(OPS(fx)->phone_watches(fx->s, p2, collect_watch, &c), STORE_OK);
    assert_int_equal(c.n, 1);
    assert_string_equal(c.watch[0], w1);
    memset(&c, 0, sizeof c);
    assert_int_equal(OPS(fx)->phone_watches(fx->s, conf_name(fx, "p-none"), collect_watch, &c), STORE_OK);
    assert_int_equal(c.n, 0);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_supervised),
        STORE_TEST(test_pairing_bind_consume),
        STORE_TEST(test_pairing_expiry),
        STORE_TEST(test_pairing_token_not_stored),
        STORE_TEST(test_watch_pairings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
