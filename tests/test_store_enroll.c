/* Storage conformance, enrollment part: issued certificates, one-time SCEP
 * challenges and the admission list. Written against store.h only, like
 * test_store.c, so every backend runs it (ORCHARD_TEST_DB=URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_conformance.h"

static issued_cert_t cert(conf_t *fx, const char *serial_suffix, const char *enrollment, int n, int64_t not_after)
{
    issued_cert_t c = {
        .serial = (char *)conf_name(fx, serial_suffix),
        .subject = "CN=device,O=orchard",
        .enrollment_id = (char *)enrollment,
        .sha256 = (char *)conf_cert(fx, n),
        .not_before = CONF_T0,
        .not_after = not_after,
        .issued_at = CONF_T0,
    };
    return c;
}

static void test_cert_add_get_revoke(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_name(fx, "dev");
    issued_cert_t c = cert(fx, "serial1", dev, 1, CONF_T0 + 86400 * 365);
    assert_int_equal(fx->s->ops->cert_add(fx->s, &c), STORE_OK);
    assert_int_equal(fx->s->ops->cert_add(fx->s, &c), STORE_CONFLICT);

    issued_cert_t got;
    assert_int_equal(fx->s->ops->cert_get(fx->s, c.serial, &got), STORE_OK);
    assert_string_equal(got.subject, "CN=device,O=orchard");
    assert_string_equal(got.enrollment_id, dev);
    assert_string_equal(got.sha256, c.sha256);
    assert_int_equal(got.not_after, c.not_after);
    assert_int_equal(got.revoked_at, 0);
    issued_cert_free(&got);
    assert_int_equal(fx->s->ops->cert_by_sha256(fx->s, c.sha256, &got), STORE_OK);
    assert_string_equal(got.serial, c.serial);
    issued_cert_free(&got);
    assert_int_equal(fx->s->ops->cert_get(fx->s, conf_name(fx, "nope"), &got), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->cert_by_sha256(fx->s, conf_cert(fx, 99), &got), STORE_NOTFOUND);

    assert_int_equal(fx->s->ops->cert_revoke(fx->s, c.serial, CONF_T0 + 5), STORE_OK);
    assert_int_equal(fx->s->ops->cert_revoke(fx->s, c.serial, CONF_T0 + 6), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->cert_revoke(fx->s, conf_name(fx, "nope"), CONF_T0), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->cert_get(fx->s, c.serial, &got), STORE_OK);
    assert_int_equal(got.revoked_at, CONF_T0 + 5);
    issued_cert_free(&got);

    /* Unbound certificates (static challenge) are fine too. */
    issued_cert_t u = cert(fx, "serial2", NULL, 2, CONF_T0 + 100);
    assert_int_equal(fx->s->ops->cert_add(fx->s, &u), STORE_OK);
    assert_int_equal(fx->s->ops->cert_get(fx->s, u.serial, &got), STORE_OK);
    assert_null(got.enrollment_id);
    issued_cert_free(&got);

    static conf_events_t ev; /* large: keep it off the stack */
    memset(&ev, 0, sizeof ev);
    assert_int_equal(fx->s->ops->event_list(fx->s, dev, 100, conf_collect_event, &ev), STORE_OK);
    int issued = 0, revoked = 0;
    for (int i = 0; i < ev.n && i < CONF_MAX_ROWS; i++) {
        issued += strcmp(ev.row[i].kind, "cert_issued") == 0;
        revoked += strcmp(ev.row[i].kind, "cert_revoked") == 0;
    }
    assert_int_equal(issued, 1);
    assert_int_equal(revoked, 1);
}

typedef struct {
    int n;
    char serial[16][CONF_NAME_LEN];
} serials_t;

static int collect_serial(void *ctx, const issued_cert_t *c)
{
    serials_t *s = ctx;
    if (s->n < 16)
        snprintf(s->serial[s->n++], CONF_NAME_LEN, "%s", c->serial);
    return 0;
}

static void test_cert_list_filters(void **state)
{
    conf_t *fx = *state;
    const char *a = conf_name(fx, "a"), *b = conf_name(fx, "b");
    issued_cert_t c1 = cert(fx, "s1", a, 1, CONF_T0 + 30 * 86400);
    issued_cert_t c2 = cert(fx, "s2", a, 2, CONF_T0 + 10 * 86400);
    issued_cert_t c3 = cert(fx, "s3", b, 3, CONF_T0 + 5 * 86400);
    issued_cert_t c4 = cert(fx, "s4", b, 4, CONF_T0 + 400 * 86400);
    issued_cert_t *all[] = {&c1, &c2, &c3, &c4};
    for (int i = 0; i < 4; i++)
        assert_int_equal(fx->s->ops->cert_add(fx->s, all[i]), STORE_OK);
    assert_int_equal(fx->s->ops->cert_revoke(fx->s, c3.serial, CONF_T0 + 1), STORE_OK);

    serials_t got = {0};
    assert_int_equal(fx->s->ops->cert_list(fx->s, a, 0, 100, collect_serial, &got), STORE_OK);
    assert_int_equal(got.n, 2);
    assert_string_equal(got.serial[0], c2.serial); /* by expiry */
    assert_string_equal(got.serial[1], c1.serial);

    /* Expiring within 31 days, unrevoked, across all enrollments. A shared
     * database may hold other tests' rows: count only ours. */
    memset(&got, 0, sizeof got);
    assert_int_equal(fx->s->ops->cert_list(fx->s, NULL, CONF_T0 + 31 * 86400, 1000, collect_serial, &got), STORE_OK);
    int mine = 0, saw_revoked = 0, saw_late = 0;
    for (int i = 0; i < got.n; i++) {
        mine += strcmp(got.serial[i], c1.serial) == 0 || strcmp(got.serial[i], c2.serial) == 0;
        saw_revoked |= strcmp(got.serial[i], c3.serial) == 0;
        saw_late |= strcmp(got.serial[i], c4.serial) == 0;
    }
    assert_int_equal(mine, 2);
    assert_false(saw_revoked);
    assert_false(saw_late);

    memset(&got, 0, sizeof got);
    assert_int_equal(fx->s->ops->cert_list(fx->s, b, 0, 1, collect_serial, &got), STORE_OK);
    assert_int_equal(got.n, 1); /* limit */
}

static void test_challenge_is_one_time(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_name(fx, "dev");
    const char *bound = conf_name(fx, "challenge-bound");
    const char *open = conf_name(fx, "challenge-open");
    const char *old = conf_name(fx, "challenge-old");
    assert_int_equal(fx->s->ops->challenge_add(fx->s, bound, dev, CONF_T0 + 3600, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->challenge_add(fx->s, open, NULL, CONF_T0 + 3600, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->challenge_add(fx->s, old, NULL, CONF_T0 + 10, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->challenge_add(fx->s, bound, NULL, CONF_T0 + 3600, CONF_T0), STORE_CONFLICT);

    char *who = (char *)"unset";
    assert_int_equal(fx->s->ops->challenge_consume(fx->s, bound, CONF_T0 + 60, &who), STORE_OK);
    assert_string_equal(who, dev);
    free(who);
    who = (char *)"unset";
    assert_int_equal(fx->s->ops->challenge_consume(fx->s, bound, CONF_T0 + 61, &who), STORE_NOTFOUND);
    assert_null(who);

    assert_int_equal(fx->s->ops->challenge_consume(fx->s, open, CONF_T0 + 60, &who), STORE_OK);
    assert_null(who);
    assert_int_equal(fx->s->ops->challenge_consume(fx->s, old, CONF_T0 + 11, &who), STORE_NOTFOUND); /* expired */
    assert_int_equal(fx->s->ops->challenge_consume(fx->s, conf_name(fx, "never"), CONF_T0, &who), STORE_NOTFOUND);
}

static void test_challenge_is_not_stored_in_clear(void **state)
{
    conf_t *fx = *state;
    if (fx->shared)
        skip(); /* reads the SQLite file directly */
    const char *secret = conf_name(fx, "plaintext-challenge-7f3a");
    assert_int_equal(fx->s->ops->challenge_add(fx->s, secret, NULL, CONF_T0 + 3600, CONF_T0), STORE_OK);
    size_t len = 0;
    char *db = util_read_file(fx->path, 64 << 20, &len);
    assert_non_null(db);
    assert_null(memmem(db, len, secret, strlen(secret)));
    free(db);
    char *wal_path = util_strdup_printf("%s-wal", fx->path);
    char *wal = util_read_file(wal_path, 64 << 20, &len);
    if (wal)
        assert_null(memmem(wal, len, secret, strlen(secret)));
    free(wal);
    free(wal_path);
}

static void test_admission_list(void **state)
{
    conf_t *fx = *state;
    const char *serial = conf_name(fx, "SERIAL"), *udid = conf_name(fx, "UDID");
    assert_int_equal(fx->s->ops->device_allowed(fx->s, udid, serial), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->device_allow(fx->s, serial, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->device_allow(fx->s, serial, CONF_T0), STORE_OK); /* idempotent */
    assert_int_equal(fx->s->ops->device_allowed(fx->s, udid, serial), STORE_OK);
    assert_int_equal(fx->s->ops->device_allowed(fx->s, NULL, serial), STORE_OK);
    assert_int_equal(fx->s->ops->device_allowed(fx->s, udid, NULL), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->device_allowed(fx->s, NULL, NULL), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->device_allow(fx->s, udid, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->device_allowed(fx->s, udid, NULL), STORE_OK);
    assert_int_equal(fx->s->ops->device_disallow(fx->s, serial), STORE_OK);
    assert_int_equal(fx->s->ops->device_disallow(fx->s, serial), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->device_allowed(fx->s, NULL, serial), STORE_NOTFOUND);
    assert_int_equal(fx->s->ops->device_allowed(fx->s, udid, serial), STORE_OK);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_cert_add_get_revoke),
        STORE_TEST(test_cert_list_filters),
        STORE_TEST(test_challenge_is_one_time),
        STORE_TEST(test_challenge_is_not_stored_in_clear),
        STORE_TEST(test_admission_list),
    };
    return cmocka_run_group_tests_name("store-enroll", tests, NULL, NULL);
}
