/* Storage conformance, push part: recording APNs outcomes per enrollment and
 * the invalid-token flag that TokenUpdate clears. Written against store.h
 * only, like test_store.c, so every backend runs it (ORCHARD_TEST_DB=URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_conformance.h"

static push_result_t result(const char *id, const char *apns_id, const char *error, int invalid, int64_t at)
{
    push_result_t r = {.enrollment_id = id,
                       .push_token = conf_push_token,
                       .push_token_len = sizeof conf_push_token,
                       .apns_id = apns_id,
                       .error = error,
                       .token_invalid = invalid,
                       .at = at};
    return r;
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

static void test_push_defaults_and_success(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_active_device(fx, "push-ok", 1, CONF_T0);
    assert_non_null(id);
    enrollment_t e;
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.last_push_at, 0);
    assert_null(e.last_push_id);
    assert_null(e.last_push_error);
    assert_int_equal(e.push_token_invalid, 0);
    enrollment_free(&e);

    push_result_t r = result(id, "APNS-ID-1", NULL, 0, CONF_T0 + 5);
    assert_int_equal(fx->s->ops->push_results_record(fx->s, &r, 1), STORE_OK);
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.last_push_at, CONF_T0 + 5);
    assert_string_equal(e.last_push_id, "APNS-ID-1");
    assert_null(e.last_push_error);
    enrollment_free(&e);

    /* A failure keeps the last accepted apns-id and says why. */
    r = result(id, NULL, "APNs 500 InternalServerError", 0, CONF_T0 + 9);
    assert_int_equal(fx->s->ops->push_results_record(fx->s, &r, 1), STORE_OK);
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.last_push_at, CONF_T0 + 9);
    assert_string_equal(e.last_push_id, "APNS-ID-1");
    assert_string_equal(e.last_push_error, "APNs 500 InternalServerError");
    assert_int_equal(e.push_token_invalid, 0);
    enrollment_free(&e);
    assert_int_equal(count_kind(fx, id, "push_failed"), 1);

    /* Success again clears the error. */
    r = result(id, "APNS-ID-2", NULL, 0, CONF_T0 + 12);
    assert_int_equal(fx->s->ops->push_results_record(fx->s, &r, 1), STORE_OK);
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.last_push_id, "APNS-ID-2");
    assert_null(e.last_push_error);
    enrollment_free(&e);
}

static void test_push_token_invalid_until_token_update(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_active_device(fx, "push-gone", 2, CONF_T0);
    assert_non_null(id);
    push_result_t r = result(id, NULL, "APNs 410 Unregistered", 1, CONF_T0 + 1);
    assert_int_equal(fx->s->ops->push_results_record(fx->s, &r, 1), STORE_OK);
    enrollment_t e;
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.push_token_invalid, 1);
    assert_string_equal(e.last_push_error, "APNs 410 Unregistered");
    enrollment_free(&e);
    assert_int_equal(count_kind(fx, id, "push_token_invalid"), 1);

    assert_int_equal(conf_token_update(fx, id, id, NULL, 0, CONF_T0 + 2), STORE_OK);
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.push_token_invalid, 0);
    enrollment_free(&e);
}

/* A TokenUpdate with a new token while the push was in flight: the answer
 * about the old token must not invalidate the new one. */
static void test_push_stale_token_not_invalidated(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_active_device(fx, "push-stale", 3, CONF_T0);
    assert_non_null(id);
    static const unsigned char old_token[] = {1, 2, 3, 4};
    push_result_t r = result(id, NULL, "APNs 400 BadDeviceToken", 1, CONF_T0 + 1);
    r.push_token = old_token;
    r.push_token_len = sizeof old_token;
    assert_int_equal(fx->s->ops->push_results_record(fx->s, &r, 1), STORE_OK);
    enrollment_t e;
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.push_token_invalid, 0);
    assert_string_equal(e.last_push_error, "APNs 400 BadDeviceToken");
    enrollment_free(&e);
    assert_int_equal(count_kind(fx, id, "push_token_invalid"), 0);
}

/* Many outcomes in one call; unknown ids are skipped, not an error. */
static void test_push_batch(void **state)
{
    conf_t *fx = *state;
    const char *a = conf_active_device(fx, "push-a", 4, CONF_T0);
    const char *b = conf_active_device(fx, "push-b", 5, CONF_T0);
    assert_non_null(a);
    assert_non_null(b);
    push_result_t r[3] = {result(a, "ID-A", NULL, 0, CONF_T0 + 3), result(conf_name(fx, "nobody"), "ID-X", NULL, 0,
                                                                          CONF_T0 + 3),
                          result(b, NULL, "APNs 410 Unregistered", 1, CONF_T0 + 3)};
    assert_int_equal(fx->s->ops->push_results_record(fx->s, r, 3), STORE_OK);
    enrollment_t e;
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, a, &e), STORE_OK);
    assert_string_equal(e.last_push_id, "ID-A");
    enrollment_free(&e);
    assert_int_equal(fx->s->ops->enrollment_get(fx->s, b, &e), STORE_OK);
    assert_int_equal(e.push_token_invalid, 1);
    enrollment_free(&e);
    assert_int_equal(fx->s->ops->push_results_record(fx->s, NULL, 0), STORE_OK);
    push_result_t bad = result(NULL, NULL, NULL, 0, 0);
    assert_int_equal(fx->s->ops->push_results_record(fx->s, &bad, 1), STORE_ERR);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_push_defaults_and_success),
        STORE_TEST(test_push_token_invalid_until_token_update),
        STORE_TEST(test_push_stale_token_not_invalidated),
        STORE_TEST(test_push_batch),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
