/* Storage conformance, await configuration and settings (schema 6):
 * enrollment_set_awaiting / enrollment_awaiting and setting_put / get /
 * delete. Written against store.h only, so every backend runs it
 * (ORCHARD_TEST_DB=URL). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_conformance.h"

#define OPS(fx) ((fx)->s->ops)

static int awaiting_of(conf_t *fx, const char *id)
{
    int a = -1;
    assert_int_equal(OPS(fx)->enrollment_awaiting(fx->s, id, &a), STORE_OK);
    return a;
}

/* Off for a new enrollment; set, cleared; unknown ids and user channels
 * are not found; other enrollments untouched. */
static void test_awaiting(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "await", 1, CONF_T0);
    const char *other = conf_active_device(fx, "other", 2, CONF_T0);
    assert_non_null(dev);
    assert_non_null(other);
    assert_int_equal(awaiting_of(fx, dev), 0);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(awaiting_of(fx, dev), 1);
    assert_int_equal(awaiting_of(fx, other), 0);
    /* Setting it again is fine (a repeated TokenUpdate). */
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, dev, 1, CONF_T0 + 2), STORE_OK);
    assert_int_equal(awaiting_of(fx, dev), 1);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, dev, 0, CONF_T0 + 3), STORE_OK);
    assert_int_equal(awaiting_of(fx, dev), 0);

    const char *unknown = conf_name(fx, "nobody");
    int a = 7;
    assert_int_equal(OPS(fx)->enrollment_awaiting(fx->s, unknown, &a), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, unknown, 1, CONF_T0), STORE_NOTFOUND);

    /* A user channel has no await-configuration flag of its own. */
    char user[CONF_NAME_LEN + 8];
    snprintf(user, sizeof user, "%s:user-1", dev);
    token_update_t t;
    memset(&t, 0, sizeof t);
    t.topic = "com.apple.mgmt.External.test";
    t.push_token = conf_push_token;
    t.push_token_len = sizeof conf_push_token;
    t.push_magic = CONF_PUSH_MAGIC;
    t.user_id = "user-1";
    t.user_short_name = "user";
    assert_int_equal(OPS(fx)->token_update(fx->s, user, dev, &t, CONF_T0 + 4), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, user, 1, CONF_T0 + 5), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->enrollment_awaiting(fx->s, user, &a), STORE_NOTFOUND);
    assert_int_equal(awaiting_of(fx, dev), 0);

    /* Bad arguments are errors, not silent no-ops. */
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, dev, 2, CONF_T0), STORE_ERR);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, NULL, 1, CONF_T0), STORE_ERR);
}

/* The flag survives a new store handle (durable) and check-out. */
static void test_awaiting_durable(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "durable", 3, CONF_T0);
    assert_non_null(dev);
    assert_int_equal(OPS(fx)->enrollment_set_awaiting(fx->s, dev, 1, CONF_T0 + 1), STORE_OK);
    store_t *s2 = conf_open(fx);
    assert_non_null(s2);
    int a = 0;
    assert_int_equal(s2->ops->enrollment_awaiting(s2, dev, &a), STORE_OK);
    assert_int_equal(a, 1);
    store_close(s2);
}

static void test_settings(void **state)
{
    conf_t *fx = *state;
    const char *name = conf_name(fx, "setting.one");
    unsigned char *v = (unsigned char *)"x";
    size_t len = 99;
    assert_int_equal(OPS(fx)->setting_get(fx->s, name, &v, &len), STORE_NOTFOUND);
    assert_null(v);
    assert_int_equal(len, 0);

    /* Binary-safe: NUL bytes and high bytes survive. */
    const unsigned char blob[] = {'a', 0, 0xff, 'b', 0};
    assert_int_equal(OPS(fx)->setting_put(fx->s, name, blob, sizeof blob, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->setting_get(fx->s, name, &v, &len), STORE_OK);
    assert_int_equal(len, sizeof blob);
    assert_memory_equal(v, blob, sizeof blob);
    free(v);

    /* Replace. */
    assert_int_equal(OPS(fx)->setting_put(fx->s, name, (const unsigned char *)"[1,2]", 5, CONF_T0 + 1), STORE_OK);
    assert_int_equal(OPS(fx)->setting_get(fx->s, name, &v, &len), STORE_OK);
    assert_int_equal(len, 5);
    assert_memory_equal(v, "[1,2]", 5);
    free(v);

    /* Empty is a value, not "unset". */
    const char *empty = conf_name(fx, "setting.empty");
    assert_int_equal(OPS(fx)->setting_put(fx->s, empty, NULL, 0, CONF_T0), STORE_OK);
    v = NULL;
    assert_int_equal(OPS(fx)->setting_get(fx->s, empty, &v, &len), STORE_OK);
    assert_non_null(v);
    assert_int_equal(len, 0);
    free(v);

    /* Another name is untouched by a delete. */
    assert_int_equal(OPS(fx)->setting_delete(fx->s, empty), STORE_OK);
    assert_int_equal(OPS(fx)->setting_get(fx->s, empty, &v, &len), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->setting_delete(fx->s, empty), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->setting_get(fx->s, name, &v, &len), STORE_OK);
    free(v);

    /* Durable: another handle sees it. */
    store_t *s2 = conf_open(fx);
    assert_non_null(s2);
    assert_int_equal(s2->ops->setting_get(s2, name, &v, &len), STORE_OK);
    assert_memory_equal(v, "[1,2]", 5);
    free(v);
    store_close(s2);

    assert_int_equal(OPS(fx)->setting_put(fx->s, "", blob, 1, CONF_T0), STORE_ERR);
    assert_int_equal(OPS(fx)->setting_put(fx->s, NULL, blob, 1, CONF_T0), STORE_ERR);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_awaiting),
        STORE_TEST(test_awaiting_durable),
        STORE_TEST(test_settings),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
