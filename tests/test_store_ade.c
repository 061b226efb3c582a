/* Storage conformance, Automated Device Enrollment (schema 6): tokens and
 * their sync state, devices from fetch/sync (duplicates, deletions, paging),
 * profiles. Written against store.h only (ORCHARD_TEST_DB=URL runs it on
 * another backend); names carry the per-test prefix. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "store_conformance.h"

/* A backend without the ADE operations (none yet but SQLite's) is skipped,
 * not crashed into: the ops are optional until every backend has them. */
static int has_ade(void **state)
{
    conf_t *fx = *state;
    return fx->s->ops->ade_token_put && fx->s->ops->ade_devices_apply && fx->s->ops->ade_profile_put;
}

static int put_token(conf_t *fx, const char *name, const char *sealed, int64_t expiry, int64_t now)
{
    ade_token_t t = {.name = (char *)name,
                     .sealed = (unsigned char *)sealed,
                     .sealed_len = strlen(sealed),
                     .access_token_expiry = expiry};
    return fx->s->ops->ade_token_put(fx->s, &t, now);
}

static ade_device_t rec(const char *serial, const char *token, const char *op, int64_t op_date)
{
    ade_device_t d;
    memset(&d, 0, sizeof d);
    d.serial_number = (char *)serial;
    d.token_name = (char *)token;
    d.op_type = (char *)op;
    d.op_date = op_date;
    d.device_assigned_date = op_date;
    d.model = "IPAD";
    return d;
}

typedef struct {
    int n;
    char name[16][CONF_NAME_LEN];
    int deleted[16];
} seen_t;

static int see_token(void *ctx, const ade_token_t *t)
{
    seen_t *s = ctx;
    if (s->n < 16)
        snprintf(s->name[s->n], CONF_NAME_LEN, "%s", t->name);
    s->n++;
    return 0;
}

static int see_device(void *ctx, const ade_device_t *d)
{
    seen_t *s = ctx;
    if (s->n < 16) {
        snprintf(s->name[s->n], CONF_NAME_LEN, "%s", d->serial_number);
        s->deleted[s->n] = d->deleted;
    }
    s->n++;
    return 0;
}

static int see_profile(void *ctx, const ade_profile_t *p)
{
    seen_t *s = ctx;
    if (s->n < 16)
        snprintf(s->name[s->n], CONF_NAME_LEN, "%s", p->profile_uuid);
    s->n++;
    return 0;
}

static int seen_has(const seen_t *s, const char *name)
{
    for (int i = 0; i < s->n && i < 16; i++)
        if (strcmp(s->name[i], name) == 0)
            return 1;
    return 0;
}

/* Put, get, re-import keeps sync state, sync outcomes, account, default
 * profile, cursor reset, delete; unknown names are NOTFOUND; bad names
 * refused. */
static void test_token_lifecycle(void **state)
{
    if (!has_ade(state))
        skip();
    conf_t *fx = *state;
    store_t *s = fx->s;
    const char *name = conf_name(fx, "tok");
    assert_int_equal(put_token(fx, name, "sealed-1", CONF_T0 + 86400 * 365, CONF_T0), STORE_OK);
    ade_token_t t;
    assert_int_equal(s->ops->ade_token_get(s, name, &t), STORE_OK);
    assert_int_equal(t.sealed_len, 8);
    assert_memory_equal(t.sealed, "sealed-1", 8);
    assert_int_equal(t.access_token_expiry, CONF_T0 + 86400 * 365);
    assert_null(t.cursor);
    assert_null(t.server_name);
    assert_int_equal(t.imported_at, CONF_T0);
    ade_token_free(&t);

    assert_int_equal(s->ops->ade_token_sync_state(s, name, "c1", NULL, CONF_T0 + 10), STORE_OK);
    assert_int_equal(s->ops->ade_token_set_account(s, name, "Server", "uuid-1", "Org", CONF_T0 + 11), STORE_OK);
    assert_int_equal(s->ops->ade_token_set_default_profile(s, name, "prof-1", CONF_T0 + 12), STORE_OK);
    /* Renewal: new credentials, same state. */
    assert_int_equal(put_token(fx, name, "sealed-2", CONF_T0 + 86400 * 730, CONF_T0 + 20), STORE_OK);
    assert_int_equal(s->ops->ade_token_get(s, name, &t), STORE_OK);
    assert_memory_equal(t.sealed, "sealed-2", 8);
    assert_string_equal(t.cursor, "c1");
    assert_int_equal(t.cursor_at, CONF_T0 + 10);
    assert_int_equal(t.last_sync_at, CONF_T0 + 10);
    assert_string_equal(t.server_name, "Server");
    assert_string_equal(t.server_uuid, "uuid-1");
    assert_string_equal(t.org_name, "Org");
    assert_string_equal(t.default_profile_uuid, "prof-1");
    ade_token_free(&t);

    /* Failure: error recorded, cursor and last sync kept; a success without
     * a cursor clears the error and keeps the cursor. */
    assert_int_equal(s->ops->ade_token_sync_state(s, name, NULL, "T_C_NOT_SIGNED", CONF_T0 + 30), STORE_OK);
    assert_int_equal(s->ops->ade_token_get(s, name, &t), STORE_OK);
    assert_string_equal(t.last_error, "T_C_NOT_SIGNED");
    assert_int_equal(t.last_error_at, CONF_T0 + 30);
    assert_string_equal(t.cursor, "c1");
    assert_int_equal(t.last_sync_at, CONF_T0 + 10);
    ade_token_free(&t);
    assert_int_equal(s->ops->ade_token_sync_state(s, name, NULL, NULL, CONF_T0 + 40), STORE_OK);
    assert_int_equal(s->ops->ade_token_get(s, name, &t), STORE_OK);
    assert_null(t.last_error);
    assert_string_equal(t.cursor, "c1");
    assert_int_equal(t.last_sync_at, CONF_T0 + 40);
    ade_token_free(&t);

    assert_int_equal(s->ops->ade_token_reset_cursor(s, name, CONF_T0 + 50), STORE_OK);
    assert_int_equal(s->ops->ade_token_set_default_profile(s, name, NULL, CONF_T0 + 50), STORE_OK);
    assert_int_equal(s->ops->ade_token_get(s, name, &t), STORE_OK);
    assert_null(t.cursor);
    assert_null(t.default_profile_uuid);
    ade_token_free(&t);

    const char *other = conf_name(fx, "tok2");
    assert_int_equal(put_token(fx, other, "x", 0, CONF_T0), STORE_OK);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(s->ops->ade_token_list(s, see_token, &seen), STORE_OK);
    assert_true(seen_has(&seen, name));
    assert_true(seen_has(&seen, other));

    const char *ghost = conf_name(fx, "ghost");
    assert_int_equal(s->ops->ade_token_get(s, ghost, &t), STORE_NOTFOUND);
    assert_int_equal(s->ops->ade_token_sync_state(s, ghost, "c", NULL, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(s->ops->ade_token_set_account(s, ghost, "a", "b", "c", CONF_T0), STORE_NOTFOUND);
    assert_int_equal(s->ops->ade_token_set_default_profile(s, ghost, "p", CONF_T0), STORE_NOTFOUND);
    assert_int_equal(s->ops->ade_token_reset_cursor(s, ghost, CONF_T0), STORE_NOTFOUND);
    assert_int_equal(s->ops->ade_token_delete(s, ghost), STORE_NOTFOUND);
    assert_int_equal(put_token(fx, "bad name/with slash", "x", 0, CONF_T0), STORE_ERR);
    assert_int_equal(put_token(fx, "", "x", 0, CONF_T0), STORE_ERR);

    /* Delete takes devices and profiles along. */
    ade_device_t d = rec(conf_name(fx, "SER1"), name, NULL, CONF_T0);
    assert_int_equal(s->ops->ade_devices_apply(s, &d, 1, CONF_T0, NULL, NULL), STORE_OK);
    ade_profile_t p = {.profile_uuid = (char *)conf_name(fx, "p1"), .token_name = (char *)name, .name = "P",
                       .json = "{}", .created_at = CONF_T0};
    assert_int_equal(s->ops->ade_profile_put(s, &p), STORE_OK);
    assert_int_equal(s->ops->ade_token_delete(s, name), STORE_OK);
    assert_int_equal(s->ops->ade_token_get(s, name, &t), STORE_NOTFOUND);
    ade_device_t got;
    assert_int_equal(s->ops->ade_device_get(s, d.serial_number, &got), STORE_NOTFOUND);
    ade_profile_t gp;
    assert_int_equal(s->ops->ade_profile_get(s, p.profile_uuid, &gp), STORE_NOTFOUND);
}

/* Fetch records (no op_type) add; sync records add/modify/delete, ordered
 * by op_date per serial; added counts new and returning devices. */
static void test_devices_apply(void **state)
{
    if (!has_ade(state))
        skip();
    conf_t *fx = *state;
    store_t *s = fx->s;
    const char *tok = conf_name(fx, "tok");
    assert_int_equal(put_token(fx, tok, "x", 0, CONF_T0), STORE_OK);
    const char *a = conf_name(fx, "A"), *b = conf_name(fx, "B"), *c = conf_name(fx, "C");

    ade_device_t fetch[2] = {rec(a, tok, NULL, CONF_T0 - 100), rec(b, tok, NULL, CONF_T0 - 50)};
    fetch[0].color = "black";
    fetch[0].asset_tag = "304214";
    int applied[4] = {0};
    size_t added = 99;
    assert_int_equal(s->ops->ade_devices_apply(s, fetch, 2, CONF_T0, applied, &added), STORE_OK);
    assert_int_equal(added, 2);
    assert_int_equal(applied[0] + applied[1], 2);
    ade_device_t d;
    assert_int_equal(s->ops->ade_device_get(s, a, &d), STORE_OK);
    assert_string_equal(d.op_type, "added");
    assert_int_equal(d.op_date, CONF_T0 - 100);
    assert_string_equal(d.color, "black");
    assert_string_equal(d.token_name, tok);
    assert_false(d.deleted);
    ade_device_free(&d);

    /* Sync page: A modified (fields absent keep their value), B added then
     * deleted at the same date (both apply, in order), C deleted without
     * ever being seen, a stale duplicate of A skipped. */
    ade_device_t sync[5] = {rec(a, tok, "modified", CONF_T0 + 10), rec(b, tok, "added", CONF_T0 + 20),
                            rec(b, tok, "deleted", CONF_T0 + 20), rec(c, tok, "deleted", CONF_T0 + 5),
                            rec(a, tok, "modified", CONF_T0 + 1)};
    sync[0].color = NULL;
    sync[0].description = "IPAD WI-FI 16GB";
    sync[4].color = "stale";
    int ap[5];
    assert_int_equal(s->ops->ade_devices_apply(s, sync, 5, CONF_T0 + 30, ap, &added), STORE_OK);
    assert_int_equal(added, 0);
    assert_int_equal(ap[0], 1);
    assert_int_equal(ap[1], 1);
    assert_int_equal(ap[2], 1);
    assert_int_equal(ap[3], 1);
    assert_int_equal(ap[4], 0);
    assert_int_equal(s->ops->ade_device_get(s, a, &d), STORE_OK);
    assert_string_equal(d.op_type, "modified");
    assert_string_equal(d.color, "black");
    assert_string_equal(d.description, "IPAD WI-FI 16GB");
    assert_int_equal(d.op_date, CONF_T0 + 10);
    ade_device_free(&d);
    assert_int_equal(s->ops->ade_device_get(s, b, &d), STORE_OK);
    assert_true(d.deleted);
    assert_string_equal(d.model, "IPAD"); /* fields kept */
    ade_device_free(&d);
    assert_int_equal(s->ops->ade_device_get(s, c, &d), STORE_OK);
    assert_true(d.deleted);
    ade_device_free(&d);

    /* B comes back: counted as added again. An older "added" of C is not. */
    ade_device_t back[2] = {rec(b, tok, "added", CONF_T0 + 40), rec(c, tok, "added", CONF_T0 + 1)};
    assert_int_equal(s->ops->ade_devices_apply(s, back, 2, CONF_T0 + 50, ap, &added), STORE_OK);
    assert_int_equal(added, 1);
    assert_int_equal(ap[0], 1);
    assert_int_equal(ap[1], 0);

    /* Profile recorded after an assign call. */
    assert_int_equal(s->ops->ade_device_set_profile(s, a, "prof-9", "assigned", CONF_T0 + 60), STORE_OK);
    assert_int_equal(s->ops->ade_device_get(s, a, &d), STORE_OK);
    assert_string_equal(d.profile_uuid, "prof-9");
    assert_string_equal(d.profile_status, "assigned");
    assert_int_equal(d.profile_assign_time, CONF_T0 + 60);
    ade_device_free(&d);
    assert_int_equal(s->ops->ade_device_set_profile(s, conf_name(fx, "nope"), "p", "assigned", CONF_T0), STORE_NOTFOUND);

    /* A record without serial refuses the whole batch. */
    ade_device_t bad[2] = {rec(conf_name(fx, "D"), tok, "added", CONF_T0), rec(NULL, tok, "added", CONF_T0)};
    assert_int_equal(s->ops->ade_devices_apply(s, bad, 2, CONF_T0, NULL, &added), STORE_ERR);
    assert_int_equal(s->ops->ade_device_get(s, bad[0].serial_number, &d), STORE_NOTFOUND);
}

/* Listing: by token, deleted hidden unless asked, keyset paging. */
static void test_device_list(void **state)
{
    if (!has_ade(state))
        skip();
    conf_t *fx = *state;
    store_t *s = fx->s;
    const char *t1 = conf_name(fx, "t1"), *t2 = conf_name(fx, "t2");
    assert_int_equal(put_token(fx, t1, "x", 0, CONF_T0), STORE_OK);
    assert_int_equal(put_token(fx, t2, "x", 0, CONF_T0), STORE_OK);
    ade_device_t d[5] = {rec(conf_name(fx, "S1"), t1, "added", CONF_T0), rec(conf_name(fx, "S2"), t1, "added", CONF_T0),
                         rec(conf_name(fx, "S3"), t1, "added", CONF_T0), rec(conf_name(fx, "S4"), t2, "added", CONF_T0),
                         rec(conf_name(fx, "S2"), t1, "deleted", CONF_T0 + 1)};
    assert_int_equal(s->ops->ade_devices_apply(s, d, 5, CONF_T0, NULL, NULL), STORE_OK);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(s->ops->ade_device_list(s, t1, 0, NULL, 100, see_device, &seen), STORE_OK);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.name[0], d[0].serial_number);
    assert_string_equal(seen.name[1], d[2].serial_number);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(s->ops->ade_device_list(s, t1, 1, NULL, 100, see_device, &seen), STORE_OK);
    assert_int_equal(seen.n, 3);
    assert_true(seen.deleted[1]);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(s->ops->ade_device_list(s, t1, 1, NULL, 1, see_device, &seen), STORE_OK);
    assert_int_equal(seen.n, 1);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(s->ops->ade_device_list(s, t1, 1, d[0].serial_number, 1, see_device, &seen), STORE_OK);
    assert_int_equal(seen.n, 1);
    assert_string_equal(seen.name[0], d[1].serial_number);
    memset(&seen, 0, sizeof seen);
    assert_int_equal(s->ops->ade_device_list(s, NULL, 0, NULL, 1000, see_device, &seen), STORE_OK);
    assert_true(seen_has(&seen, d[3].serial_number));
    assert_true(seen_has(&seen, d[0].serial_number));
    assert_false(seen_has(&seen, d[1].serial_number));
    assert_int_equal(s->ops->ade_device_list(s, t1, 0, NULL, 0, see_device, &seen), STORE_ERR);
    assert_int_equal(s->ops->ade_device_list(s, t1, 0, NULL, 1001, see_device, &seen), STORE_ERR);
}

/* Profiles: put (replace by uuid), get, list per token newest first. */
static void test_profiles(void **state)
{
    if (!has_ade(state))
        skip();
    conf_t *fx = *state;
    store_t *s = fx->s;
    const char *tok = conf_name(fx, "tok");
    assert_int_equal(put_token(fx, tok, "x", 0, CONF_T0), STORE_OK);
    ade_profile_t p1 = {.profile_uuid = (char *)conf_name(fx, "p1"), .token_name = (char *)tok, .name = "One",
                        .json = "{\"profile_name\":\"One\"}", .created_at = CONF_T0};
    ade_profile_t p2 = {.profile_uuid = (char *)conf_name(fx, "p2"), .token_name = (char *)tok, .name = "Two",
                        .json = "{}", .created_at = CONF_T0 + 5};
    assert_int_equal(s->ops->ade_profile_put(s, &p1), STORE_OK);
    assert_int_equal(s->ops->ade_profile_put(s, &p2), STORE_OK);
    p1.name = "One again";
    assert_int_equal(s->ops->ade_profile_put(s, &p1), STORE_OK);
    ade_profile_t got;
    assert_int_equal(s->ops->ade_profile_get(s, p1.profile_uuid, &got), STORE_OK);
    assert_string_equal(got.name, "One again");
    assert_string_equal(got.json, "{\"profile_name\":\"One\"}");
    assert_string_equal(got.token_name, tok);
    ade_profile_free(&got);
    seen_t seen;
    memset(&seen, 0, sizeof seen);
    assert_int_equal(s->ops->ade_profile_list(s, tok, see_profile, &seen), STORE_OK);
    assert_int_equal(seen.n, 2);
    assert_string_equal(seen.name[0], p2.profile_uuid);
    assert_string_equal(seen.name[1], p1.profile_uuid);
    assert_int_equal(s->ops->ade_profile_get(s, conf_name(fx, "none"), &got), STORE_NOTFOUND);
    ade_profile_t bad = {.profile_uuid = "", .token_name = (char *)tok, .json = "{}"};
    assert_int_equal(s->ops->ade_profile_put(s, &bad), STORE_ERR);
}

static int ade_setup(void **state)
{
    int rc = conf_setup(state);
    if (rc == 0) {
        conf_t *fx = *state;
        if (!fx->s->ops->ade_token_put || !fx->s->ops->ade_devices_apply || !fx->s->ops->ade_profile_put)
            fprintf(stderr, "store backend %s has no ADE operations: skipped\n", fx->s->ops->name);
    }
    return rc;
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, ade_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_token_lifecycle),
        STORE_TEST(test_devices_apply),
        STORE_TEST(test_device_list),
        STORE_TEST(test_profiles),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
