/* Storage conformance suite: the contract of store.h, checked through the
 * interface only, so every backend (SQLite now, PostgreSQL next) runs it.
 * Set ORCHARD_TEST_DB to a store URL to run it against that database;
 * otherwise each test gets a fresh SQLite file. See store_conformance.h.
 *
 * Only the tests marked SQLite-specific look beneath the interface; they
 * skip themselves when ORCHARD_TEST_DB is set.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_conformance.h"
#include "util.h"

#define OPS(fx) ((fx)->s->ops)
#define UUID_LEN 160

/* ---- opening ------------------------------------------------------------- */

static void test_open_twice_is_idempotent(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_name(fx, "dev");
    assert_int_equal(conf_authenticate(fx, id, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0), STORE_OK);

    /* A second handle while the first is open, then a full close/reopen:
     * neither may re-run migrations or lose data. */
    store_t *second = conf_open(fx);
    assert_non_null(second);
    enrollment_t e;
    assert_int_equal(second->ops->enrollment_get(second, id, &e), STORE_OK);
    enrollment_free(&e);
    store_close(second);

    for (int i = 0; i < 2; i++) {
        store_close(fx->s);
        fx->s = conf_open(fx);
        assert_non_null(fx->s);
        assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
        assert_string_equal(e.id, id);
        enrollment_free(&e);
    }
}

/* SQLite-specific: bumps PRAGMA user_version past what the code knows. */
static void test_newer_schema_is_refused(void **state)
{
    conf_t *fx = *state;
    if (fx->shared)
        skip();
    store_close(fx->s);
    fx->s = NULL;

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 999", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);

    char *err = NULL;
    store_t *s = store_open(fx->url, &err);
    assert_null(s);
    assert_non_null(err);
    assert_non_null(strstr(err, "newer"));
    assert_non_null(strstr(err, "999"));
    free(err);
}

/* SQLite-specific: the three spellings of a SQLite URL reach one file. */
static void test_sqlite_url_forms(void **state)
{
    conf_t *fx = *state;
    if (fx->shared)
        skip();
    const char *id = conf_name(fx, "dev");
    assert_int_equal(conf_authenticate(fx, id, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0), STORE_OK);

    char *urls[3] = {util_strdup_printf("sqlite:%s", fx->path), util_strdup_printf("sqlite://%s", fx->path),
                     util_strdup_printf("%s", fx->path)};
    for (int i = 0; i < 3; i++) {
        assert_non_null(urls[i]);
        char *err = NULL;
        store_t *s = store_open(urls[i], &err);
        assert_non_null(s);
        assert_null(err);
        enrollment_t e;
        assert_int_equal(s->ops->enrollment_get(s, id, &e), STORE_OK);
        enrollment_free(&e);
        store_close(s);
        free(urls[i]);
    }
}

static void test_unsupported_url_is_refused(void **state)
{
    (void)state;
    char *err = NULL;
    assert_null(store_open("mysql://db.example/orchard", &err));
    assert_non_null(err);
    assert_non_null(strstr(err, "unsupported database URL scheme"));
    assert_non_null(strstr(err, "mysql"));
    free(err);

    err = NULL;
    assert_null(store_open("", &err));
    assert_non_null(err);
    free(err);

    assert_null(store_open("sqlite:", NULL)); /* no err pointer: must not leak */
}

/* ---- enrollments --------------------------------------------------------- */

static void test_authenticate_new(void **state)
{
    conf_t *fx = *state;
    int64_t all0, auth0, all1, auth1;
    assert_int_equal(OPS(fx)->enrollment_count(fx->s, NULL, &all0), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_count(fx->s, ENR_STATE_AUTHENTICATED, &auth0), STORE_OK);

    const char *id = conf_name(fx, "dev");
    const char *cert = conf_cert(fx, 1);
    assert_int_equal(conf_authenticate(fx, id, cert, "iPhone14,5", "F2LXK0ABCD12", CONF_T0), STORE_OK);

    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.id, id);
    assert_string_equal(e.device_id, id);
    assert_string_equal(e.udid, id);
    assert_string_equal(e.channel, "device");
    assert_string_equal(e.state, ENR_STATE_AUTHENTICATED);
    assert_string_equal(e.topic, "com.apple.mgmt.External.test");
    assert_string_equal(e.serial_number, "F2LXK0ABCD12");
    assert_string_equal(e.model, "iPhone14,5");
    assert_string_equal(e.model_name, "iPhone");
    assert_string_equal(e.product_name, "iPhone14,5");
    assert_string_equal(e.os_version, "17.4.1");
    assert_string_equal(e.build_version, "21E258");
    assert_string_equal(e.device_name, "Test iPhone");
    assert_string_equal(e.imei, "35 328708 123456 7");
    assert_string_equal(e.meid, "35328708123456");
    assert_string_equal(e.cert_sha256, cert);
    assert_null(e.user_id);
    assert_null(e.push_token);
    assert_null(e.push_magic);
    assert_null(e.unlock_token);
    assert_int_equal(e.created_at, CONF_T0);
    assert_int_equal(e.updated_at, CONF_T0);
    assert_int_equal(e.authenticated_at, CONF_T0);
    assert_int_equal(e.token_updated_at, 0);
    assert_int_equal(e.checked_out_at, 0);
    enrollment_free(&e);
    assert_null(e.id); /* *_free zeroes the struct */

    assert_int_equal(OPS(fx)->enrollment_count(fx->s, NULL, &all1), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_count(fx->s, ENR_STATE_AUTHENTICATED, &auth1), STORE_OK);
    assert_int_equal(all1 - all0, 1);
    assert_int_equal(auth1 - auth0, 1);
}

static void test_authenticate_again_keeps_state_and_updates_fields(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_name(fx, "dev");
    const char *cert = conf_cert(fx, 1);
    assert_int_equal(conf_authenticate(fx, id, cert, "iPhone14,5", "SN1", CONF_T0), STORE_OK);

    /* Authenticated and authenticated again: still "authenticated". */
    assert_int_equal(conf_authenticate(fx, id, cert, "iPhone14,5", "SN1", CONF_T0 + 1), STORE_OK);
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_AUTHENTICATED);
    enrollment_free(&e);

    const unsigned char unlock[] = {1, 2, 3};
    assert_int_equal(conf_token_update(fx, id, id, unlock, sizeof unlock, CONF_T0 + 2), STORE_OK);

    /* Active, authenticates again with a new OS version and without a serial
     * number: stays active, takes the new value, keeps the one not given. */
    enrollment_t again;
    memset(&again, 0, sizeof again);
    again.id = again.device_id = again.udid = (char *)id;
    again.os_version = "17.5";
    again.cert_sha256 = (char *)conf_cert(fx, 2);
    assert_int_equal(OPS(fx)->authenticate(fx->s, &again, CONF_T0 + 3), STORE_OK);

    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    assert_string_equal(e.os_version, "17.5");
    assert_string_equal(e.serial_number, "SN1");
    assert_string_equal(e.model, "iPhone14,5");
    assert_string_equal(e.cert_sha256, again.cert_sha256);
    assert_int_equal(e.created_at, CONF_T0);
    assert_int_equal(e.authenticated_at, CONF_T0 + 3);
    assert_int_equal(e.token_updated_at, CONF_T0 + 2);
    assert_int_equal(e.push_token_len, sizeof conf_push_token); /* push info survives */
    assert_memory_equal(e.push_token, conf_push_token, sizeof conf_push_token);
    assert_int_equal(e.unlock_token_len, sizeof unlock);
    enrollment_free(&e);
}

static void test_authenticate_after_checkout_reenrolls(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(id);
    assert_int_equal(OPS(fx)->checkout(fx->s, id, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_authenticate(fx, id, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0 + 2), STORE_OK);

    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_AUTHENTICATED);
    assert_int_equal(e.authenticated_at, CONF_T0 + 2);
    assert_int_equal(e.created_at, CONF_T0);
    enrollment_free(&e);

    assert_int_equal(conf_token_update(fx, id, id, NULL, 0, CONF_T0 + 3), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    enrollment_free(&e);
}

static void test_token_update_device_channel(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_name(fx, "dev");
    assert_int_equal(conf_authenticate(fx, id, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0), STORE_OK);

    const unsigned char unlock[] = {0x00, 0x11, 0x00, 0x22};
    assert_int_equal(conf_token_update(fx, id, id, unlock, sizeof unlock, CONF_T0 + 5), STORE_OK);

    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    assert_string_equal(e.channel, "device");
    assert_int_equal(e.push_token_len, sizeof conf_push_token);
    assert_memory_equal(e.push_token, conf_push_token, sizeof conf_push_token);
    assert_string_equal(e.push_magic, CONF_PUSH_MAGIC);
    assert_int_equal(e.unlock_token_len, sizeof unlock);
    assert_memory_equal(e.unlock_token, unlock, sizeof unlock);
    assert_int_equal(e.token_updated_at, CONF_T0 + 5);
    assert_int_equal(e.authenticated_at, CONF_T0);
    enrollment_free(&e);

    /* A later TokenUpdate without an unlock token or topic keeps them and
     * replaces what it does carry. */
    const unsigned char token2[] = {9, 8, 7};
    token_update_t t;
    memset(&t, 0, sizeof t);
    t.push_token = token2;
    t.push_token_len = sizeof token2;
    t.push_magic = "MAGIC-2";
    assert_int_equal(OPS(fx)->token_update(fx->s, id, id, &t, CONF_T0 + 6), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.push_token_len, sizeof token2);
    assert_memory_equal(e.push_token, token2, sizeof token2);
    assert_string_equal(e.push_magic, "MAGIC-2");
    assert_string_equal(e.topic, "com.apple.mgmt.External.test");
    assert_int_equal(e.unlock_token_len, sizeof unlock);
    assert_memory_equal(e.unlock_token, unlock, sizeof unlock);
    assert_int_equal(e.token_updated_at, CONF_T0 + 6);
    enrollment_free(&e);

    /* Nothing but the topic: the push credentials stay. */
    memset(&t, 0, sizeof t);
    t.topic = "com.apple.mgmt.External.other";
    assert_int_equal(OPS(fx)->token_update(fx->s, id, id, &t, CONF_T0 + 7), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_string_equal(e.topic, "com.apple.mgmt.External.other");
    assert_int_equal(e.push_token_len, sizeof token2);
    assert_memory_equal(e.push_token, token2, sizeof token2);
    assert_string_equal(e.push_magic, "MAGIC-2");
    assert_int_equal(e.unlock_token_len, sizeof unlock);
    enrollment_free(&e);
}

static void test_token_update_user_channel(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);
    char user[UUID_LEN];
    snprintf(user, sizeof user, "%s:%s", dev, "user-1");

    token_update_t t;
    memset(&t, 0, sizeof t);
    const unsigned char token[] = {0xaa, 0x00, 0xbb};
    t.topic = "com.apple.mgmt.External.test";
    t.push_token = token;
    t.push_token_len = sizeof token;
    t.push_magic = "USER-MAGIC";
    t.user_id = "user-1-guid";
    t.user_short_name = "anna";
    t.user_long_name = "Anna Example";
    assert_int_equal(OPS(fx)->token_update(fx->s, user, dev, &t, CONF_T0 + 1), STORE_OK);

    enrollment_t e, d;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, user, &e), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, dev, &d), STORE_OK);
    assert_string_equal(e.channel, "user");
    assert_string_equal(e.device_id, dev);
    assert_string_equal(e.udid, d.udid);
    assert_string_equal(e.cert_sha256, d.cert_sha256);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    assert_string_equal(e.user_id, "user-1-guid");
    assert_string_equal(e.user_short_name, "anna");
    assert_string_equal(e.user_long_name, "Anna Example");
    assert_string_equal(e.push_magic, "USER-MAGIC");
    assert_int_equal(e.push_token_len, sizeof token);
    assert_memory_equal(e.push_token, token, sizeof token);
    assert_int_equal(e.token_updated_at, CONF_T0 + 1);
    /* The device channel's own push info is untouched. */
    assert_string_equal(d.push_magic, CONF_PUSH_MAGIC);
    enrollment_free(&e);
    enrollment_free(&d);

    /* Updating the user channel: given fields change, others stay. */
    memset(&t, 0, sizeof t);
    t.push_magic = "USER-MAGIC-2";
    t.user_short_name = "anna.e";
    assert_int_equal(OPS(fx)->token_update(fx->s, user, dev, &t, CONF_T0 + 2), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, user, &e), STORE_OK);
    assert_string_equal(e.user_short_name, "anna.e");
    assert_string_equal(e.user_id, "user-1-guid");
    assert_string_equal(e.push_magic, "USER-MAGIC-2");
    assert_int_equal(e.push_token_len, sizeof token);
    assert_int_equal(e.created_at, CONF_T0 + 1);
    assert_int_equal(e.token_updated_at, CONF_T0 + 2);
    enrollment_free(&e);

    /* The certificate finds the device channel, not the user channel that
     * shares it. */
    assert_int_equal(OPS(fx)->enrollment_by_cert(fx->s, conf_cert(fx, 1), &e), STORE_OK);
    assert_string_equal(e.id, dev);
    enrollment_free(&e);
}

static void test_token_update_unknown_is_notfound(void **state)
{
    conf_t *fx = *state;
    const char *ghost = conf_name(fx, "ghost");
    assert_int_equal(conf_token_update(fx, ghost, ghost, NULL, 0, CONF_T0), STORE_NOTFOUND);
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, ghost, &e), STORE_NOTFOUND);

    /* A user channel under a device that does not exist is not created. */
    char user[UUID_LEN];
    snprintf(user, sizeof user, "%s:%s", ghost, "user");
    assert_int_equal(conf_token_update(fx, user, ghost, NULL, 0, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, user, &e), STORE_NOTFOUND);
    assert_null(e.id);
}

static void test_checkout_marks_device_and_user_channels(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *other = conf_active_device(fx, "other", 2, CONF_T0);
    assert_non_null(dev);
    assert_non_null(other);
    char user[UUID_LEN];
    snprintf(user, sizeof user, "%s:%s", dev, "user");
    assert_int_equal(conf_token_update(fx, user, dev, NULL, 0, CONF_T0 + 1), STORE_OK);

    int64_t inactive0, inactive1;
    assert_int_equal(OPS(fx)->enrollment_count(fx->s, ENR_STATE_INACTIVE, &inactive0), STORE_OK);
    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 5), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_count(fx->s, ENR_STATE_INACTIVE, &inactive1), STORE_OK);
    assert_int_equal(inactive1 - inactive0, 2);

    const char *ids[] = {dev, user};
    for (int i = 0; i < 2; i++) {
        enrollment_t e;
        assert_int_equal(OPS(fx)->enrollment_get(fx->s, ids[i], &e), STORE_OK);
        assert_string_equal(e.state, ENR_STATE_INACTIVE);
        assert_int_equal(e.checked_out_at, CONF_T0 + 5);
        enrollment_free(&e);
    }
    enrollment_t o;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, other, &o), STORE_OK);
    assert_string_equal(o.state, ENR_STATE_ACTIVE);
    assert_int_equal(o.checked_out_at, 0);
    enrollment_free(&o);

    assert_int_equal(OPS(fx)->checkout(fx->s, conf_name(fx, "ghost"), CONF_T0), STORE_NOTFOUND);
}

static void test_enrollment_by_cert_and_get_unknown(void **state)
{
    conf_t *fx = *state;
    const char *d1 = conf_name(fx, "dev1");
    const char *d2 = conf_name(fx, "dev2");
    assert_int_equal(conf_authenticate(fx, d1, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0), STORE_OK);
    assert_int_equal(conf_authenticate(fx, d2, conf_cert(fx, 2), "iPhone14,5", "SN2", CONF_T0), STORE_OK);

    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_by_cert(fx->s, conf_cert(fx, 2), &e), STORE_OK);
    assert_string_equal(e.id, d2);
    assert_string_equal(e.channel, "device");
    enrollment_free(&e);
    assert_int_equal(OPS(fx)->enrollment_by_cert(fx->s, conf_cert(fx, 3), &e), STORE_NOTFOUND);
    assert_null(e.id);
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, conf_name(fx, "nobody"), &e), STORE_NOTFOUND);
    assert_null(e.id);
}

static void test_touch_records_last_seen(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(id);
    assert_int_equal(OPS(fx)->touch(fx->s, id, CONF_T0 + 100), STORE_OK);
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, id, &e), STORE_OK);
    assert_int_equal(e.last_seen_at, CONF_T0 + 100);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    enrollment_free(&e);
    assert_int_equal(OPS(fx)->touch(fx->s, conf_name(fx, "ghost"), CONF_T0), STORE_NOTFOUND);
}

/* Five devices sharing a model unique to this test:
 *   dev1, dev2 active; dev3 inactive; dev4, dev5 authenticated;
 *   dev5 matches the model through product_name only. */
static const char *list_fixture(conf_t *fx, const char *ids[5])
{
    const char *model = conf_name(fx, "model");
    for (int i = 0; i < 5; i++) {
        char suffix[24], serial[24];
        snprintf(suffix, sizeof suffix, "dev%d", i + 1);
        snprintf(serial, sizeof serial, "serial%d", i + 1);
        ids[i] = conf_name(fx, suffix);
        enrollment_t e;
        memset(&e, 0, sizeof e);
        e.id = e.udid = (char *)ids[i];
        e.serial_number = (char *)conf_name(fx, serial);
        e.model = i == 4 ? (char *)conf_name(fx, "other-model") : (char *)model;
        e.product_name = (char *)model;
        e.cert_sha256 = (char *)conf_cert(fx, i + 1);
        assert_int_equal(OPS(fx)->authenticate(fx->s, &e, CONF_T0), STORE_OK);
    }
    for (int i = 0; i < 3; i++)
        assert_int_equal(conf_token_update(fx, ids[i], ids[i], NULL, 0, CONF_T0 + 1), STORE_OK);
    assert_int_equal(OPS(fx)->checkout(fx->s, ids[2], CONF_T0 + 2), STORE_OK);
    return model;
}

static void assert_listed(const conf_enrollments_t *got, const char *const *want, int n)
{
    assert_int_equal(got->n, n);
    for (int i = 0; i < n; i++)
        assert_string_equal(got->row[i].id, want[i]);
}

static void test_enrollment_list_filters(void **state)
{
    conf_t *fx = *state;
    const char *ids[5];
    const char *model = list_fixture(fx, ids);
    conf_enrollments_t got;
    enrollment_filter_t f;

    memset(&f, 0, sizeof f);
    f.model = model; /* model or product_name */
    f.limit = 100;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_listed(&got, ids, 5);

    f.state = ENR_STATE_ACTIVE;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_listed(&got, (const char *[]){ids[0], ids[1]}, 2);
    assert_string_equal(got.row[0].state, ENR_STATE_ACTIVE);

    f.state = ENR_STATE_INACTIVE;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_listed(&got, (const char *[]){ids[2]}, 1);

    f.state = ENR_STATE_AUTHENTICATED;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_listed(&got, (const char *[]){ids[3], ids[4]}, 2);

    /* Model matched on `model` only for dev5's own model value. */
    memset(&f, 0, sizeof f);
    f.model = conf_name(fx, "other-model");
    f.limit = 100;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_listed(&got, (const char *[]){ids[4]}, 1);

    memset(&f, 0, sizeof f);
    f.serial = conf_name(fx, "serial3");
    f.limit = 100;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_listed(&got, (const char *[]){ids[2]}, 1);
    assert_string_equal(got.row[0].state, ENR_STATE_INACTIVE);

    /* State alone: this test's ids sort together right after the bare
     * prefix, so paging from there reaches them first even on a shared
     * database. */
    memset(&f, 0, sizeof f);
    f.state = ENR_STATE_ACTIVE;
    f.after = fx->prefix;
    f.limit = 2;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_listed(&got, (const char *[]){ids[0], ids[1]}, 2);

    /* No match. */
    memset(&f, 0, sizeof f);
    f.serial = conf_name(fx, "no-such-serial");
    f.limit = 100;
    memset(&got, 0, sizeof got);
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_int_equal(got.n, 0);
}

static void test_enrollment_list_paging_and_limits(void **state)
{
    conf_t *fx = *state;
    const char *ids[5];
    const char *model = list_fixture(fx, ids);
    enrollment_filter_t f;
    memset(&f, 0, sizeof f);
    f.model = model;
    f.limit = 2;

    /* Keyset paging by id: each page starts after the last id seen. */
    const int expect_pages[] = {2, 2, 1, 0};
    int seen = 0;
    char after[CONF_NAME_LEN] = "";
    for (int page = 0; page < 4; page++) {
        conf_enrollments_t got;
        memset(&got, 0, sizeof got);
        f.after = page ? after : NULL;
        assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
        assert_int_equal(got.n, expect_pages[page]);
        for (int i = 0; i < got.n; i++)
            assert_string_equal(got.row[i].id, ids[seen++]);
        if (got.n)
            snprintf(after, sizeof after, "%s", got.row[got.n - 1].id);
    }
    assert_int_equal(seen, 5);

    /* Limits below 1 are clamped to 1. */
    const int low[] = {0, -5};
    for (int i = 0; i < 2; i++) {
        conf_enrollments_t got;
        memset(&got, 0, sizeof got);
        f.after = NULL;
        f.limit = low[i];
        assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
        assert_listed(&got, ids, 1);
    }

    /* A callback returning non-zero stops the listing. */
    conf_enrollments_t got;
    memset(&got, 0, sizeof got);
    got.stop_after = 3;
    f.limit = 1000;
    assert_int_equal(OPS(fx)->enrollment_list(fx->s, &f, conf_collect_enrollment, &got), STORE_OK);
    assert_int_equal(got.n, 3);
}

static void test_enrollment_count_by_state(void **state)
{
    conf_t *fx = *state;
    const char *states[] = {NULL, ENR_STATE_AUTHENTICATED, ENR_STATE_ACTIVE, ENR_STATE_INACTIVE};
    int64_t before[4], after[4];
    for (int i = 0; i < 4; i++)
        assert_int_equal(OPS(fx)->enrollment_count(fx->s, states[i], &before[i]), STORE_OK);

    const char *ids[5];
    list_fixture(fx, ids); /* 2 authenticated, 2 active, 1 inactive */

    for (int i = 0; i < 4; i++)
        assert_int_equal(OPS(fx)->enrollment_count(fx->s, states[i], &after[i]), STORE_OK);
    assert_int_equal(after[0] - before[0], 5);
    assert_int_equal(after[1] - before[1], 2);
    assert_int_equal(after[2] - before[2], 2);
    assert_int_equal(after[3] - before[3], 1);

    int64_t none = -1;
    assert_int_equal(OPS(fx)->enrollment_count(fx->s, "no-such-state", &none), STORE_OK);
    assert_int_equal(none, 0);
}

/* ---- enqueue ------------------------------------------------------------- */

static void test_enqueue_single_target(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);
    const char *uuid = conf_name(fx, "cmd-1");

    /* The body goes to the device verbatim, so arbitrary bytes (NULs too)
     * must round-trip. */
    unsigned char body[] = {'<', 'p', 0x00, 0xff, '>', 0x00, 'x'};
    command_t c = {.uuid = (char *)uuid, .request_type = "DeviceInformation", .body = body, .body_len = sizeof body};
    int status[1] = {-7};
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &c, &dev, 1, status, CONF_T0 + 1), STORE_OK);
    assert_int_equal(status[0], STORE_OK);

    command_t got;
    assert_int_equal(OPS(fx)->command_get(fx->s, uuid, &got), STORE_OK);
    assert_string_equal(got.uuid, uuid);
    assert_string_equal(got.request_type, "DeviceInformation");
    assert_int_equal(got.body_len, sizeof body);
    assert_memory_equal(got.body, body, sizeof body);
    assert_int_equal(got.created_at, CONF_T0 + 1);
    command_free(&got);
    assert_null(got.uuid);

    conf_targets_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->command_targets(fx->s, uuid, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.row[0].uuid, uuid);
    assert_string_equal(t.row[0].enrollment_id, dev);
    assert_string_equal(t.row[0].request_type, "DeviceInformation");
    assert_string_equal(t.row[0].status, CMD_STATUS_QUEUED);
    assert_false(t.row[0].has_result);
    assert_false(t.row[0].has_error_chain);
    assert_int_equal(t.row[0].queued_at, CONF_T0 + 1);

    command_t next;
    int applied = -1;
    assert_int_equal(OPS(fx)->command_exchange(fx->s, dev, NULL, CONF_T0 + 2, &applied, &next), STORE_OK);
    assert_int_equal(applied, 0);
    assert_string_equal(next.uuid, uuid);
    assert_int_equal(next.body_len, sizeof body);
    assert_memory_equal(next.body, body, sizeof body);
    command_free(&next);
}

static void test_enqueue_multi_target_with_unknown_and_repeated_ids(void **state)
{
    conf_t *fx = *state;
    const char *d1 = conf_active_device(fx, "dev1", 1, CONF_T0);
    const char *d2 = conf_active_device(fx, "dev2", 2, CONF_T0);
    const char *d3 = conf_active_device(fx, "dev3", 3, CONF_T0);
    const char *ghost = conf_name(fx, "ghost");
    const char *uuid = conf_name(fx, "cmd");
    const char *ids[] = {d1, d2, ghost, d3, d1};
    int status[5];
    char body[512];
    command_t c;
    conf_command(&c, uuid, "ProfileList", body, sizeof body);
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &c, ids, 5, status, CONF_T0 + 1), STORE_OK);
    assert_int_equal(status[0], STORE_OK);
    assert_int_equal(status[1], STORE_OK);
    assert_int_equal(status[2], STORE_NOTFOUND);
    assert_int_equal(status[3], STORE_OK);
    assert_int_equal(status[4], STORE_OK); /* known; already queued once */

    conf_targets_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->command_targets(fx->s, uuid, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.row[0].enrollment_id, d1);
    assert_string_equal(t.row[1].enrollment_id, d2);
    assert_string_equal(t.row[2].enrollment_id, d3);

    /* Repeating d1 did not queue the command twice for it. */
    char next[UUID_LEN];
    const command_report_t ack = conf_report(uuid, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    int applied = -1;
    assert_int_equal(conf_exchange(fx, d1, &ack, CONF_T0 + 2, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    assert_string_equal(next, "");
}

/* Ids are data, whatever they contain (a backend may pass them in a list
 * syntax of its own), and a fleet-sized target list is taken whole: known
 * ids far apart, one repeated across the list, most of it unknown. */
static void test_enqueue_odd_ids_and_long_lists(void **state)
{
    conf_t *fx = *state;
    const char *odd = conf_active_device(fx, "q\"u,o{t}e\\ \\\"NULL", 1, CONF_T0);
    char odd_copy[CONF_NAME_LEN];
    snprintf(odd_copy, sizeof odd_copy, "%s", odd);
    const char *plain = conf_active_device(fx, "plain", 2, CONF_T0);
    char plain_copy[CONF_NAME_LEN];
    snprintf(plain_copy, sizeof plain_copy, "%s", plain);
    enum { N = 12001 };
    const char **ids = calloc(N, sizeof *ids);
    char(*ghosts)[24] = calloc(N, sizeof *ghosts);
    int *status = calloc(N, sizeof *status);
    assert_non_null(ids);
    assert_non_null(ghosts);
    assert_non_null(status);
    for (int i = 0; i < N; i++) {
        snprintf(ghosts[i], sizeof ghosts[i], "ghost-%d", i);
        ids[i] = ghosts[i];
    }
    ids[0] = odd_copy;
    ids[7000] = plain_copy;
    ids[N - 1] = odd_copy;
    const char *uuid = conf_name(fx, "cmd");
    char body[512];
    command_t c;
    conf_command(&c, uuid, "ProfileList", body, sizeof body);
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &c, ids, N, status, CONF_T0 + 1), STORE_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(status[i], i == 0 || i == 7000 || i == N - 1 ? STORE_OK : STORE_NOTFOUND);

    conf_targets_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->command_targets(fx->s, uuid, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 2);
    /* Each known id got it once: one acknowledgement empties its queue. */
    const command_report_t ack = conf_report(uuid, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    char next[UUID_LEN];
    int applied = -1;
    assert_int_equal(conf_exchange(fx, odd_copy, NULL, CONF_T0 + 2, NULL, next, sizeof next), STORE_OK);
    assert_string_equal(next, uuid);
    assert_int_equal(conf_exchange(fx, odd_copy, &ack, CONF_T0 + 2, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    assert_int_equal(conf_exchange(fx, plain_copy, &ack, CONF_T0 + 2, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    free(ids);
    free(ghosts);
    free(status);
}

static void test_enqueue_to_unknown_ids_stores_nothing(void **state)
{
    conf_t *fx = *state;
    const char *uuid = conf_name(fx, "cmd");
    const char *ids[] = {conf_name(fx, "ghost1"), conf_name(fx, "ghost2")};
    int status[2] = {-7, -7};
    char body[512];
    command_t c;
    conf_command(&c, uuid, "DeviceInformation", body, sizeof body);
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &c, ids, 2, status, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(status[0], STORE_NOTFOUND);
    assert_int_equal(status[1], STORE_NOTFOUND);

    command_t got;
    assert_int_equal(OPS(fx)->command_get(fx->s, uuid, &got), STORE_NOTFOUND);
    assert_null(got.uuid);
    conf_targets_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->command_targets(fx->s, uuid, conf_collect_target, &t), STORE_NOTFOUND);
    assert_int_equal(t.n, 0);

    /* No targets at all is the same. */
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &c, NULL, 0, NULL, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->command_get(fx->s, uuid, &got), STORE_NOTFOUND);

    /* The UUID is still free for a real enqueue. */
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &c, &dev, 1, NULL, CONF_T0), STORE_OK);
}

static void test_enqueue_duplicate_uuid_conflicts(void **state)
{
    conf_t *fx = *state;
    const char *d1 = conf_active_device(fx, "dev1", 1, CONF_T0);
    const char *d2 = conf_active_device(fx, "dev2", 2, CONF_T0);
    const char *uuid = conf_name(fx, "cmd");
    assert_int_equal(conf_enqueue(fx, uuid, "DeviceInformation", &d1, 1, CONF_T0 + 1), STORE_OK);

    unsigned char other_body[] = "different";
    command_t again = {.uuid = (char *)uuid, .request_type = "EraseDevice", .body = other_body,
                       .body_len = sizeof other_body - 1};
    int status[1] = {-7};
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &again, &d2, 1, status, CONF_T0 + 2), STORE_CONFLICT);
    assert_int_not_equal(status[0], STORE_OK);

    command_t got;
    assert_int_equal(OPS(fx)->command_get(fx->s, uuid, &got), STORE_OK);
    assert_string_equal(got.request_type, "DeviceInformation");
    assert_int_equal(got.created_at, CONF_T0 + 1);
    command_free(&got);

    conf_targets_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->command_targets(fx->s, uuid, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.row[0].enrollment_id, d1);
    assert_int_equal(conf_exchange(fx, d2, NULL, CONF_T0 + 3, NULL, NULL, 0), STORE_NOTFOUND);
}

/* ---- exchange ------------------------------------------------------------ */

static void test_exchange_idle_returns_oldest_pending(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);

    command_t next;
    int applied = -1;
    assert_int_equal(OPS(fx)->command_exchange(fx->s, dev, NULL, CONF_T0, &applied, &next), STORE_NOTFOUND);
    assert_int_equal(applied, 0);
    assert_null(next.uuid);
    command_free(&next); /* safe on the zeroed struct */

    const char *c1 = conf_name(fx, "c1"), *c2 = conf_name(fx, "c2");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_enqueue(fx, c2, "ProfileList", &dev, 1, CONF_T0 + 2), STORE_OK);

    /* Handing a command out does not consume it: until a result arrives the
     * same command is offered on every Idle. */
    for (int i = 0; i < 2; i++) {
        assert_int_equal(OPS(fx)->command_exchange(fx->s, dev, NULL, CONF_T0 + 3, &applied, &next), STORE_OK);
        assert_string_equal(next.uuid, c1);
        assert_string_equal(next.request_type, "DeviceInformation");
        assert_int_equal(next.created_at, CONF_T0 + 1);
        assert_non_null(memmem(next.body, next.body_len, "DeviceInformation", 17));
        command_free(&next);
    }

    /* Another enrollment's queue is separate. */
    const char *other = conf_active_device(fx, "other", 2, CONF_T0);
    assert_int_equal(conf_exchange(fx, other, NULL, CONF_T0 + 4, NULL, NULL, 0), STORE_NOTFOUND);
    /* An unknown enrollment simply has nothing queued. */
    assert_int_equal(conf_exchange(fx, conf_name(fx, "ghost"), NULL, CONF_T0, NULL, NULL, 0), STORE_NOTFOUND);
}

static void test_exchange_acknowledged_finishes(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *c1 = conf_name(fx, "c1"), *c2 = conf_name(fx, "c2");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_enqueue(fx, c2, "ProfileList", &dev, 1, CONF_T0 + 2), STORE_OK);

    const char *raw = "<plist><dict><key>Status</key><string>Acknowledged</string></dict></plist>";
    command_report_t ack = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, raw, NULL);
    int applied = -1;
    char next[UUID_LEN];
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 10, &applied, next, sizeof next), STORE_OK);
    assert_int_equal(applied, 1);
    assert_string_equal(next, c2);

    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_ACKNOWLEDGED);
    assert_true(t.row[i].has_result);
    assert_int_equal(t.row[i].result_len, strlen(raw));
    assert_string_equal(t.row[i].result, raw);
    assert_false(t.row[i].has_error_chain);
    assert_int_equal(t.row[i].queued_at, CONF_T0 + 1);
    assert_int_equal(t.row[i].updated_at, CONF_T0 + 10);

    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, dev, 1, 100, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.row[0].uuid, c2);

    ack = conf_report(c2, CMD_STATUS_ACKNOWLEDGED, raw, NULL);
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 11, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 12, &applied, next, sizeof next), STORE_NOTFOUND);
}

static void test_exchange_errors_finish_with_error_chain(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *c1 = conf_name(fx, "c1"), *c2 = conf_name(fx, "c2");
    assert_int_equal(conf_enqueue(fx, c1, "InstallProfile", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_enqueue(fx, c2, "Bogus", &dev, 1, CONF_T0 + 2), STORE_OK);

    const char *chain1 = "[{\"ErrorCode\":4001,\"ErrorDomain\":\"MCProfileErrorDomain\","
                         "\"LocalizedDescription\":\"Profile \\\"x\\\" is invalid\"}]";
    const char *chain2 = "[{\"ErrorCode\":12021,\"ErrorDomain\":\"MCMDMErrorDomain\"}]";
    const struct {
        const char *uuid, *status, *chain;
    } reports[] = {{c1, CMD_STATUS_ERROR, chain1}, {c2, CMD_STATUS_FORMAT_ERROR, chain2}};

    for (int r = 0; r < 2; r++) {
        command_report_t rep = conf_report(reports[r].uuid, reports[r].status, "<plist>error</plist>", reports[r].chain);
        int applied = -1;
        char next[UUID_LEN];
        int rc = conf_exchange(fx, dev, &rep, CONF_T0 + 10 + r, &applied, next, sizeof next);
        assert_int_equal(applied, 1);
        if (r == 0) {
            assert_int_equal(rc, STORE_OK);
            assert_string_equal(next, c2);
        } else {
            assert_int_equal(rc, STORE_NOTFOUND);
        }
        conf_targets_t t;
        int i = -1;
        assert_int_equal(conf_target_of(fx, reports[r].uuid, dev, &t, &i), STORE_OK);
        assert_string_equal(t.row[i].status, reports[r].status);
        assert_true(t.row[i].has_error_chain);
        assert_string_equal(t.row[i].error_chain, reports[r].chain);
        assert_string_equal(t.row[i].result, "<plist>error</plist>");
    }
    conf_targets_t pending;
    memset(&pending, 0, sizeof pending);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, dev, 1, 100, conf_collect_target, &pending), STORE_OK);
    assert_int_equal(pending.n, 0);
}

static void test_exchange_notnow_stays_pending_and_is_skipped(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *c1 = conf_name(fx, "c1"), *c2 = conf_name(fx, "c2");
    assert_int_equal(conf_enqueue(fx, c1, "InstallApplication", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_enqueue(fx, c2, "DeviceInformation", &dev, 1, CONF_T0 + 2), STORE_OK);

    int applied = -1;
    char next[UUID_LEN];
    /* NotNow for c1: recorded, still pending, and not offered again in this
     * exchange, so the device gets c2. */
    command_report_t notnow = conf_report(c1, CMD_STATUS_NOTNOW, "<plist>NotNow</plist>", NULL);
    assert_int_equal(conf_exchange(fx, dev, &notnow, CONF_T0 + 3, &applied, next, sizeof next), STORE_OK);
    assert_int_equal(applied, 1);
    assert_string_equal(next, c2);

    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_NOTNOW);
    assert_string_equal(t.row[i].result, "<plist>NotNow</plist>");
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, dev, 1, 100, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 2);

    /* NotNow for c2 as well: nothing else to offer now. */
    notnow.command_uuid = c2;
    assert_int_equal(conf_exchange(fx, dev, &notnow, CONF_T0 + 4, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);

    /* The next Idle offers the oldest again. */
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 5, &applied, next, sizeof next), STORE_OK);
    assert_int_equal(applied, 0);
    assert_string_equal(next, c1);

    /* Acknowledging c1 skips c2, which is still NotNow... */
    command_report_t ack = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist>ok</plist>", NULL);
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 6, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    /* ...until the next Idle. */
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 7, &applied, next, sizeof next), STORE_OK);
    assert_string_equal(next, c2);
    ack.command_uuid = c2;
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 8, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    assert_int_equal(conf_target_of(fx, c2, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_ACKNOWLEDGED);
}

static int count_kind(const conf_events_t *ev, const char *kind)
{
    int n = 0;
    for (int i = 0; i < ev->n && i < CONF_MAX_ROWS; i++)
        n += strcmp(ev->row[i].kind, kind) == 0;
    return n;
}

static void test_repeated_report_is_idempotent(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *c1 = conf_name(fx, "c1"), *c2 = conf_name(fx, "c2");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_enqueue(fx, c2, "ProfileList", &dev, 1, CONF_T0 + 2), STORE_OK);

    int applied = -1;
    char next[UUID_LEN];
    char type[8] = "junk"; /* short: the type is cut to fit */
    command_report_t ack = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist>first</plist>", NULL);
    ack.applied_type = type;
    ack.applied_type_len = sizeof type;
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 10, &applied, next, sizeof next), STORE_OK);
    assert_int_equal(applied, 1);
    assert_string_equal(type, "DeviceI"); /* DeviceInformation, cut */

    /* The device resends (its response was lost), then sends something
     * contradictory: neither changes the stored outcome. */
    command_report_t again = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist>second</plist>", NULL);
    command_report_t contra = conf_report(c1, CMD_STATUS_ERROR, "<plist>error</plist>", "[]");
    again.applied_type = contra.applied_type = type;
    again.applied_type_len = contra.applied_type_len = sizeof type;
    const command_report_t *repeats[] = {&again, &contra};
    for (int r = 0; r < 2; r++) {
        applied = -1;
        assert_int_equal(conf_exchange(fx, dev, repeats[r], CONF_T0 + 20 + r, &applied, next, sizeof next),
                         STORE_OK);
        assert_int_equal(applied, 0);
        assert_string_equal(type, ""); /* not applied: no type */
        assert_string_equal(next, c2); /* the queue is served as usual */
    }

    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_ACKNOWLEDGED);
    assert_string_equal(t.row[i].result, "<plist>first</plist>");
    assert_false(t.row[i].has_error_chain);
    assert_int_equal(t.row[i].updated_at, CONF_T0 + 10);

    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, dev, 100, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(count_kind(&ev, "command_result"), 1);
}

static void test_report_for_unknown_or_foreign_command(void **state)
{
    conf_t *fx = *state;
    const char *d1 = conf_active_device(fx, "dev1", 1, CONF_T0);
    const char *d2 = conf_active_device(fx, "dev2", 2, CONF_T0);
    const char *c1 = conf_name(fx, "c1");
    assert_int_equal(conf_enqueue(fx, c1, "EraseDevice", &d1, 1, CONF_T0 + 1), STORE_OK);

    int applied = -1;
    char next[UUID_LEN];
    command_report_t unknown = conf_report(conf_name(fx, "never-sent"), CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    assert_int_equal(conf_exchange(fx, d1, &unknown, CONF_T0 + 2, &applied, next, sizeof next), STORE_OK);
    assert_int_equal(applied, 0);
    assert_string_equal(next, c1);

    /* d2 cannot complete (or learn about) a command queued for d1. */
    command_report_t foreign = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    char type[32] = "junk";
    foreign.applied_type = type;
    foreign.applied_type_len = sizeof type;
    applied = -1;
    assert_int_equal(conf_exchange(fx, d2, &foreign, CONF_T0 + 3, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 0);
    assert_string_equal(type, "");
    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, c1, d1, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_QUEUED);
    assert_false(t.row[i].has_result);
    /* d1 can, and learns what it acknowledged. */
    assert_int_equal(conf_exchange(fx, d1, &foreign, CONF_T0 + 4, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    assert_string_equal(type, "EraseDevice");

    assert_int_equal(conf_target_of(fx, c1, d1, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_ACKNOWLEDGED); /* by d1 itself */
    assert_true(t.row[i].has_result);
}

static void test_commands_handed_out_in_enqueue_order(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    /* Enqueued in this order, all in the same second, with UUIDs that do not
     * sort in enqueue order: the order must come from the enqueue itself. */
    const char *order[] = {conf_name(fx, "m"), conf_name(fx, "z"), conf_name(fx, "a"), conf_name(fx, "k")};
    for (int i = 0; i < 4; i++)
        assert_int_equal(conf_enqueue(fx, order[i], "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);

    char next[UUID_LEN];
    int applied = -1;
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 2, &applied, next, sizeof next), STORE_OK);
    for (int i = 0; i < 4; i++) {
        assert_string_equal(next, order[i]);
        command_report_t ack = conf_report(order[i], CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
        int rc = conf_exchange(fx, dev, &ack, CONF_T0 + 3 + i, &applied, next, sizeof next);
        assert_int_equal(applied, 1);
        assert_int_equal(rc, i < 3 ? STORE_OK : STORE_NOTFOUND);
    }
}

static void test_cancel_pending_and_finished(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *other = conf_active_device(fx, "other", 2, CONF_T0);
    const char *c1 = conf_name(fx, "c1"), *c2 = conf_name(fx, "c2");
    assert_int_equal(conf_enqueue(fx, c1, "EraseDevice", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_enqueue(fx, c2, "DeviceInformation", &dev, 1, CONF_T0 + 2), STORE_OK);

    assert_int_equal(OPS(fx)->command_cancel(fx->s, dev, c1, CONF_T0 + 3), STORE_OK);
    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_CANCELLED);
    assert_int_equal(t.row[i].updated_at, CONF_T0 + 3);

    char next[UUID_LEN];
    int applied = -1;
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 4, &applied, next, sizeof next), STORE_OK);
    assert_string_equal(next, c2);

    /* A late result for the cancelled command is ignored. */
    command_report_t late = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    assert_int_equal(conf_exchange(fx, dev, &late, CONF_T0 + 5, &applied, next, sizeof next), STORE_OK);
    assert_int_equal(applied, 0);
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_CANCELLED);

    /* Cancelled already, finished, unknown, or for another enrollment. */
    assert_int_equal(OPS(fx)->command_cancel(fx->s, dev, c1, CONF_T0 + 6), STORE_NOTFOUND);
    command_report_t ack = conf_report(c2, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 7, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->command_cancel(fx->s, dev, c2, CONF_T0 + 8), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->command_cancel(fx->s, dev, conf_name(fx, "nope"), CONF_T0 + 8), STORE_NOTFOUND);
    const char *c3 = conf_name(fx, "c3");
    assert_int_equal(conf_enqueue(fx, c3, "DeviceInformation", &dev, 1, CONF_T0 + 9), STORE_OK);
    assert_int_equal(OPS(fx)->command_cancel(fx->s, other, c3, CONF_T0 + 10), STORE_NOTFOUND);
    assert_int_equal(conf_target_of(fx, c3, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_QUEUED);

    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, dev, 100, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(count_kind(&ev, "command_cancelled"), 1);
}

static void test_enrollment_commands_newest_first(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *c[3] = {conf_name(fx, "c1"), conf_name(fx, "c2"), conf_name(fx, "c3")};
    for (int i = 0; i < 3; i++)
        assert_int_equal(conf_enqueue(fx, c[i], "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    command_report_t ack = conf_report(c[0], CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 2, NULL, NULL, 0), STORE_OK);

    conf_targets_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, dev, 0, 10, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 3);
    assert_string_equal(t.row[0].uuid, c[2]);
    assert_string_equal(t.row[1].uuid, c[1]);
    assert_string_equal(t.row[2].uuid, c[0]);
    assert_string_equal(t.row[2].status, CMD_STATUS_ACKNOWLEDGED);
    assert_string_equal(t.row[0].status, CMD_STATUS_QUEUED);

    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, dev, 1, 10, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 2);
    assert_string_equal(t.row[0].uuid, c[2]);
    assert_string_equal(t.row[1].uuid, c[1]);

    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, dev, 0, 1, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 1);
    assert_string_equal(t.row[0].uuid, c[2]);

    const char *idle = conf_active_device(fx, "idle", 2, CONF_T0);
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, idle, 0, 10, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, 0);
    assert_int_equal(OPS(fx)->enrollment_commands(fx->s, conf_name(fx, "ghost"), 0, 10, conf_collect_target, &t),
                     STORE_NOTFOUND);
}

static void test_command_stored_once_for_many_targets(void **state)
{
    conf_t *fx = *state;
    enum { N = 10 };
    const char *ids[N];
    for (int i = 0; i < N; i++) {
        char suffix[16];
        snprintf(suffix, sizeof suffix, "dev%02d", i);
        ids[i] = conf_active_device(fx, suffix, i + 1, CONF_T0);
        assert_non_null(ids[i]);
    }
    const char *uuid = conf_name(fx, "broadcast");
    int status[N];
    char body[512];
    command_t c;
    conf_command(&c, uuid, "InstalledApplicationList", body, sizeof body);
    assert_int_equal(OPS(fx)->command_enqueue(fx->s, &c, ids, N, status, CONF_T0 + 1), STORE_OK);
    for (int i = 0; i < N; i++)
        assert_int_equal(status[i], STORE_OK);

    /* Each target has its own outcome. */
    for (int i = 0; i < N; i += 2) {
        command_report_t ack = conf_report(uuid, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
        int applied = -1;
        assert_int_equal(conf_exchange(fx, ids[i], &ack, CONF_T0 + 2, &applied, NULL, 0), STORE_NOTFOUND);
        assert_int_equal(applied, 1);
    }
    conf_targets_t t;
    memset(&t, 0, sizeof t);
    assert_int_equal(OPS(fx)->command_targets(fx->s, uuid, conf_collect_target, &t), STORE_OK);
    assert_int_equal(t.n, N);
    for (int i = 0; i < N; i++) {
        assert_string_equal(t.row[i].enrollment_id, ids[i]);
        assert_string_equal(t.row[i].request_type, "InstalledApplicationList");
        assert_string_equal(t.row[i].status, i % 2 == 0 ? CMD_STATUS_ACKNOWLEDGED : CMD_STATUS_QUEUED);
    }

    command_t got;
    assert_int_equal(OPS(fx)->command_get(fx->s, uuid, &got), STORE_OK);
    assert_int_equal(got.body_len, strlen(body));
    assert_memory_equal(got.body, body, got.body_len);
    command_free(&got);
}

static void test_reauthenticate_after_checkout_cancels_stale_commands(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    char user[UUID_LEN];
    snprintf(user, sizeof user, "%s:%s", dev, "user");
    assert_int_equal(conf_token_update(fx, user, dev, NULL, 0, CONF_T0), STORE_OK);
    const char *bystander = conf_active_device(fx, "bystander", 2, CONF_T0);

    const char *done = conf_name(fx, "done"), *stale = conf_name(fx, "stale"), *ustale = conf_name(fx, "ustale");
    const char *both[] = {dev, bystander};
    assert_int_equal(conf_enqueue(fx, done, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    assert_int_equal(conf_enqueue(fx, stale, "EraseDevice", both, 2, CONF_T0 + 2), STORE_OK);
    const char *user_ids[] = {user};
    assert_int_equal(conf_enqueue(fx, ustale, "InstallProfile", user_ids, 1, CONF_T0 + 3), STORE_OK);
    command_report_t ack = conf_report(done, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 4, NULL, NULL, 0), STORE_OK);

    /* Checkout alone does not touch the queue... */
    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 5), STORE_OK);
    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, stale, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_QUEUED);

    /* ...re-enrolling does: what was pending for the device and its user
     * channels is cancelled; finished results and other devices stay. */
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 1), "iPhone14,5", "SN", CONF_T0 + 6), STORE_OK);
    assert_int_equal(conf_target_of(fx, stale, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_CANCELLED);
    assert_int_equal(t.row[i].updated_at, CONF_T0 + 6);
    assert_int_equal(conf_target_of(fx, ustale, user, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_CANCELLED);
    assert_int_equal(conf_target_of(fx, done, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_ACKNOWLEDGED);
    assert_int_equal(conf_target_of(fx, stale, bystander, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_QUEUED);

    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 7, NULL, NULL, 0), STORE_NOTFOUND);
    assert_int_equal(conf_exchange(fx, user, NULL, CONF_T0 + 7, NULL, NULL, 0), STORE_NOTFOUND);

    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, dev, 100, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(count_kind(&ev, "command_cancelled"), 1);
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, user, 100, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(count_kind(&ev, "command_cancelled"), 1);

    /* Re-authenticating while active cancels nothing. */
    const char *fresh = conf_name(fx, "fresh");
    assert_int_equal(conf_token_update(fx, dev, dev, NULL, 0, CONF_T0 + 8), STORE_OK);
    assert_int_equal(conf_enqueue(fx, fresh, "DeviceInformation", &dev, 1, CONF_T0 + 9), STORE_OK);
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 1), "iPhone14,5", "SN", CONF_T0 + 10), STORE_OK);
    assert_int_equal(conf_target_of(fx, fresh, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_QUEUED);
}

static void test_user_channel_has_its_own_queue(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    char user[UUID_LEN];
    snprintf(user, sizeof user, "%s:%s", dev, "user");
    assert_int_equal(conf_token_update(fx, user, dev, NULL, 0, CONF_T0), STORE_OK);
    const char *uc = conf_name(fx, "user-cmd");
    const char *ids[] = {user};
    assert_int_equal(conf_enqueue(fx, uc, "ProfileList", ids, 1, CONF_T0 + 1), STORE_OK);

    char next[UUID_LEN];
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 2, NULL, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(conf_exchange(fx, user, NULL, CONF_T0 + 2, NULL, next, sizeof next), STORE_OK);
    assert_string_equal(next, uc);
}

/* ---- events -------------------------------------------------------------- */

static void test_events_written_and_listed(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_name(fx, "dev");
    const unsigned char unlock[] = {0x5e, 0xc7, 0xe7, 0x00, 0x01};
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0), STORE_OK);
    assert_int_equal(conf_token_update(fx, dev, dev, unlock, sizeof unlock, CONF_T0 + 1), STORE_OK);
    const char *c1 = conf_name(fx, "c1");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceLock", &dev, 1, CONF_T0 + 2), STORE_OK);
    command_report_t ack = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 3, NULL, NULL, 0), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 4), STORE_OK);

    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, dev, 100, conf_collect_event, &ev), STORE_OK);
    const char *kinds[] = {"checkout", "command_result", "command_queued", "token_update", "authenticate"};
    assert_int_equal(ev.n, 5);
    for (int i = 0; i < 5; i++) {
        assert_string_equal(ev.row[i].kind, kinds[i]); /* newest first */
        assert_string_equal(ev.row[i].enrollment_id, dev);
        assert_int_equal(ev.row[i].at, CONF_T0 + 4 - i);
        assert_int_equal(ev.row[i].detail[0], '{');
        if (i > 0)
            assert_true(ev.row[i].id < ev.row[i - 1].id);
    }
    assert_non_null(strstr(ev.row[1].detail, c1));
    assert_non_null(strstr(ev.row[1].detail, "Acknowledged"));
    assert_non_null(strstr(ev.row[1].detail, "DeviceLock"));
    assert_non_null(strstr(ev.row[2].detail, c1));

    /* Push credentials and the unlock token are secrets: never logged. */
    char *token_b64 = util_base64_encode(conf_push_token, sizeof conf_push_token);
    char *unlock_b64 = util_base64_encode(unlock, sizeof unlock);
    char token_hex[2 * sizeof conf_push_token + 1], unlock_hex[2 * sizeof unlock + 1];
    util_hex(conf_push_token, sizeof conf_push_token, token_hex);
    util_hex(unlock, sizeof unlock, unlock_hex);
    for (int i = 0; i < ev.n; i++) {
        assert_null(strstr(ev.row[i].detail, CONF_PUSH_MAGIC));
        assert_null(strstr(ev.row[i].detail, token_b64));
        assert_null(strstr(ev.row[i].detail, unlock_b64));
        assert_null(strcasestr(ev.row[i].detail, token_hex));
        assert_null(strcasestr(ev.row[i].detail, unlock_hex));
    }
    free(token_b64);
    free(unlock_b64);

    /* Limit. */
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, dev, 2, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(ev.n, 2);
    assert_string_equal(ev.row[0].kind, "checkout");
}

static void test_event_add_and_list_all(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_name(fx, "dev");
    assert_int_equal(OPS(fx)->event_add(fx->s, dev, "push_sent", "{\"apns_id\":\"abc\",\"status\":200}", CONF_T0),
                     STORE_OK);
    assert_int_equal(OPS(fx)->event_add(fx->s, NULL, "server_start", "{\"version\":\"test\"}", CONF_T0 + 1),
                     STORE_OK);

    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, dev, 10, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(ev.n, 1);
    assert_string_equal(ev.row[0].kind, "push_sent");
    assert_int_equal(ev.row[0].at, CONF_T0);
    assert_non_null(strstr(ev.row[0].detail, "\"apns_id\""));
    assert_non_null(strstr(ev.row[0].detail, "abc"));

    /* NULL lists every enrollment's events, newest first. */
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, NULL, 2, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(ev.n, 2);
    assert_string_equal(ev.row[0].kind, "server_start");
    assert_false(ev.row[0].has_enrollment);
    assert_string_equal(ev.row[1].kind, "push_sent");
    assert_string_equal(ev.row[1].enrollment_id, dev);

    /* No events for an id is not an error. */
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, conf_name(fx, "quiet"), 10, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(ev.n, 0);
}

static void test_malformed_event_detail_fails_cleanly(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_name(fx, "dev");
    assert_int_equal(OPS(fx)->event_add(fx->s, dev, "broken", "{\"unterminated\": ", CONF_T0), STORE_ERR);
    const char *why = OPS(fx)->errmsg(fx->s);
    assert_non_null(why);
    assert_true(strlen(why) > 0);

    /* Nothing was written and the handle is usable afterwards. */
    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, dev, 10, conf_collect_event, &ev), STORE_OK);
    assert_int_equal(ev.n, 0);
    assert_int_equal(OPS(fx)->event_add(fx->s, dev, "fine", "{}", CONF_T0), STORE_OK);
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 1), "iPhone14,5", "SN1", CONF_T0), STORE_OK);
}

/* SQLite-specific: another connection holds the write lock for longer than
 * the busy timeout. The write fails with STORE_ERR and a reason, changes
 * nothing, and the handle works again once the lock is gone. */
static void test_write_lock_timeout_fails_cleanly(void **state)
{
    conf_t *fx = *state;
    if (fx->shared)
        skip();
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    const char *c1 = conf_name(fx, "c1");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);

    sqlite3 *blocker = NULL;
    assert_int_equal(sqlite3_open(fx->path, &blocker), SQLITE_OK);
    assert_int_equal(sqlite3_exec(blocker, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);

    command_report_t ack = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    int applied = -1;
    char next[UUID_LEN];
    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 2, &applied, next, sizeof next), STORE_ERR);
    assert_int_equal(applied, 0);
    assert_non_null(strstr(OPS(fx)->errmsg(fx->s), "locked"));
    /* Reads are not blocked by a writer. */
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 2, &applied, next, sizeof next), STORE_OK);
    assert_string_equal(next, c1);

    assert_int_equal(sqlite3_exec(blocker, "ROLLBACK", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(blocker);

    assert_int_equal(conf_exchange(fx, dev, &ack, CONF_T0 + 3, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
}

/* ---- several handles and processes --------------------------------------- */

static void test_two_handles_on_one_database(void **state)
{
    conf_t *fx = *state;
    store_t *a = fx->s;
    store_t *b = conf_open(fx);
    assert_non_null(b);

    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0); /* written through a */
    enrollment_t e;
    assert_int_equal(b->ops->enrollment_get(b, dev, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    enrollment_free(&e);

    const char *c1 = conf_name(fx, "c1");
    assert_int_equal(conf_enqueue(fx, c1, "DeviceInformation", &dev, 1, CONF_T0 + 1), STORE_OK);
    command_t next;
    int applied = -1;
    assert_int_equal(b->ops->command_exchange(b, dev, NULL, CONF_T0 + 2, &applied, &next), STORE_OK);
    assert_string_equal(next.uuid, c1);
    command_free(&next);

    /* b writes the result, a reads it. */
    command_report_t ack = conf_report(c1, CMD_STATUS_ACKNOWLEDGED, "<plist>via b</plist>", NULL);
    assert_int_equal(b->ops->command_exchange(b, dev, &ack, CONF_T0 + 3, &applied, &next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);
    conf_targets_t t;
    int i = -1;
    assert_int_equal(conf_target_of(fx, c1, dev, &t, &i), STORE_OK);
    assert_string_equal(t.row[i].status, CMD_STATUS_ACKNOWLEDGED);
    assert_string_equal(t.row[i].result, "<plist>via b</plist>");

    /* The same report through a is now a repeat. */
    assert_int_equal(a->ops->command_exchange(a, dev, &ack, CONF_T0 + 4, &applied, &next), STORE_NOTFOUND);
    assert_int_equal(applied, 0);
    store_close(b);
}

/* What one child process does in test_concurrent_processes: opens its own
 * handle (on a brand-new SQLite file, racing the others to create and
 * migrate it), enrolls its own device, and pushes commands through it.
 * Exit status 0 on success; cmocka assertions are not usable in a child. */
enum { PROCS = 4, CMDS_PER_PROC = 15 };

static int child_work(const char *url, const char *prefix, int n)
{
    char *err = NULL;
    store_t *s = store_open(url, &err);
    if (!s) {
        fprintf(stderr, "child %d: open: %s\n", n, err ? err : "?");
        free(err);
        return 1;
    }
    int ok = 1;
    char id[96];
    snprintf(id, sizeof id, "%s-proc%d", prefix, n);
    enrollment_t e;
    memset(&e, 0, sizeof e);
    e.id = e.udid = id;
    ok = ok && s->ops->authenticate(s, &e, CONF_T0) == STORE_OK;
    token_update_t t;
    memset(&t, 0, sizeof t);
    t.push_magic = "m";
    ok = ok && s->ops->token_update(s, id, id, &t, CONF_T0) == STORE_OK;
    for (int i = 0; ok && i < CMDS_PER_PROC; i++) {
        char uuid[128];
        snprintf(uuid, sizeof uuid, "%s-proc%d-cmd%d", prefix, n, i);
        unsigned char body[] = "<plist/>";
        command_t c = {.uuid = uuid, .request_type = "DeviceInformation", .body = body, .body_len = 8};
        const char *ids[] = {id};
        ok = s->ops->command_enqueue(s, &c, ids, 1, NULL, CONF_T0 + i) == STORE_OK;
        ok = ok && s->ops->touch(s, id, CONF_T0 + i) == STORE_OK;
        ok = ok && s->ops->event_add(s, id, "test", "{}", CONF_T0 + i) == STORE_OK;
    }
    /* Work through the queue exactly as a device would. */
    command_t next;
    int applied = 0, done = 0;
    int rc = ok ? s->ops->command_exchange(s, id, NULL, CONF_T0, &applied, &next) : STORE_ERR;
    while (rc == STORE_OK) {
        command_report_t ack = conf_report(next.uuid, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
        char uuid[128];
        snprintf(uuid, sizeof uuid, "%s", next.uuid);
        ack.command_uuid = uuid;
        command_free(&next);
        rc = s->ops->command_exchange(s, id, &ack, CONF_T0 + 100, &applied, &next);
        done += applied;
    }
    if (rc == STORE_ERR || done != CMDS_PER_PROC) {
        fprintf(stderr, "child %d: rc %d, %d done: %s\n", n, rc, done, s->ops->errmsg(s));
        ok = 0;
    }
    store_close(s);
    return ok ? 0 : 1;
}

static void test_concurrent_processes(void **state)
{
    conf_t *fx = *state;
    /* SQLite: a database file nobody has opened yet, so the children also
     * race to create and migrate it. Shared mode: the shared database. */
    char *url = fx->shared ? strdup(fx->url) : util_strdup_printf("sqlite:%s/concurrent.db", fx->dir);
    assert_non_null(url);

    pid_t pids[PROCS];
    for (int n = 0; n < PROCS; n++) {
        fflush(NULL);
        pids[n] = fork();
        assert_true(pids[n] >= 0);
        if (pids[n] == 0)
            _exit(child_work(url, fx->prefix, n));
    }
    /* Reap every child before asserting: a failed assertion runs the
     * teardown, which must not delete the database under running children. */
    int exit_codes[PROCS];
    for (int n = 0; n < PROCS; n++) {
        int status = 0;
        exit_codes[n] = waitpid(pids[n], &status, 0) == pids[n] && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }
    for (int n = 0; n < PROCS; n++)
        assert_int_equal(exit_codes[n], 0);

    char *err = NULL;
    store_t *s = store_open(url, &err);
    assert_non_null(s);
    for (int n = 0; n < PROCS; n++) {
        char id[96];
        snprintf(id, sizeof id, "%s-proc%d", fx->prefix, n);
        conf_targets_t t;
        memset(&t, 0, sizeof t);
        assert_int_equal(s->ops->enrollment_commands(s, id, 0, 100, conf_collect_target, &t), STORE_OK);
        assert_int_equal(t.n, CMDS_PER_PROC);
        for (int i = 0; i < t.n; i++)
            assert_string_equal(t.row[i].status, CMD_STATUS_ACKNOWLEDGED);
    }
    store_close(s);
    free(url);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_open_twice_is_idempotent),
        STORE_TEST(test_newer_schema_is_refused),
        STORE_TEST(test_sqlite_url_forms),
        STORE_TEST(test_unsupported_url_is_refused),
        STORE_TEST(test_authenticate_new),
        STORE_TEST(test_authenticate_again_keeps_state_and_updates_fields),
        STORE_TEST(test_authenticate_after_checkout_reenrolls),
        STORE_TEST(test_token_update_device_channel),
        STORE_TEST(test_token_update_user_channel),
        STORE_TEST(test_token_update_unknown_is_notfound),
        STORE_TEST(test_checkout_marks_device_and_user_channels),
        STORE_TEST(test_enrollment_by_cert_and_get_unknown),
        STORE_TEST(test_touch_records_last_seen),
        STORE_TEST(test_enrollment_list_filters),
        STORE_TEST(test_enrollment_list_paging_and_limits),
        STORE_TEST(test_enrollment_count_by_state),
        STORE_TEST(test_enqueue_single_target),
        STORE_TEST(test_enqueue_multi_target_with_unknown_and_repeated_ids),
        STORE_TEST(test_enqueue_odd_ids_and_long_lists),
        STORE_TEST(test_enqueue_to_unknown_ids_stores_nothing),
        STORE_TEST(test_enqueue_duplicate_uuid_conflicts),
        STORE_TEST(test_exchange_idle_returns_oldest_pending),
        STORE_TEST(test_exchange_acknowledged_finishes),
        STORE_TEST(test_exchange_errors_finish_with_error_chain),
        STORE_TEST(test_exchange_notnow_stays_pending_and_is_skipped),
        STORE_TEST(test_repeated_report_is_idempotent),
        STORE_TEST(test_report_for_unknown_or_foreign_command),
        STORE_TEST(test_commands_handed_out_in_enqueue_order),
        STORE_TEST(test_cancel_pending_and_finished),
        STORE_TEST(test_enrollment_commands_newest_first),
        STORE_TEST(test_command_stored_once_for_many_targets),
        STORE_TEST(test_reauthenticate_after_checkout_cancels_stale_commands),
        STORE_TEST(test_user_channel_has_its_own_queue),
        STORE_TEST(test_events_written_and_listed),
        STORE_TEST(test_event_add_and_list_all),
        STORE_TEST(test_malformed_event_detail_fails_cleanly),
        STORE_TEST(test_write_lock_timeout_fails_cleanly),
        STORE_TEST(test_two_handles_on_one_database),
        STORE_TEST(test_concurrent_processes),
    };
    return cmocka_run_group_tests_name("store", tests, NULL, NULL);
}
