/* The declarative-management model (src/ddm.c) on a real store: validation
 * and canonical ServerTokens, reference rules, effective sets and
 * DeclarationsTokens, and the coalesced sync fan-out. The wire protocol and
 * admin API are covered end to end by test_ddm.c. Runs on a fresh SQLite
 * database (an "all" assignment must not reach other tests' devices). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "ddm.h"
#include "plist.h"
#include "store_conformance.h"

static int setup(void **state)
{
    unsetenv("ORCHARD_TEST_DB");
    return conf_setup(state);
}

static int put(conf_t *fx, const char *json, int *changed, char *err, size_t errlen)
{
    json_error_t je;
    json_t *d = json_loads(json, 0, &je);
    assert_non_null(d);
    int code = ddm_declaration_put(fx->s, d, changed, err, errlen);
    json_decref(d);
    return code;
}

static void must_put(conf_t *fx, const char *json)
{
    char err[512] = "";
    int code = put(fx, json, NULL, err, sizeof err);
    if (code != 200 && code != 201)
        fail_msg("put %s: %d %s", json, code, err);
}

static char *server_token(conf_t *fx, const char *id)
{
    declaration_t d;
    assert_int_equal(fx->s->ops->decl_get(fx->s, id, &d), STORE_OK);
    char *t = strdup(d.server_token);
    declaration_free(&d);
    return t;
}

#define PASSCODE(id, len) \
    "{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"" id "\"," \
    "\"Payload\":{\"MinimumLength\":" #len ",\"RequirePasscode\":true}}"

static void test_server_token_follows_content(void **state)
{
    conf_t *fx = *state;
    char err[512];
    int changed = -1;
    assert_int_equal(put(fx, PASSCODE("pc", 6), &changed, err, sizeof err), 201);
    assert_int_equal(changed, 1);
    char *t1 = server_token(fx, "pc");
    assert_true(strlen(t1) > 0 && strlen(t1) <= DDM_IDENTIFIER_MAX);
    /* Same content, other key order, a client-sent ServerToken: no change. */
    assert_int_equal(put(fx,
                         "{\"ServerToken\":\"mine\",\"Payload\":{\"RequirePasscode\":true,\"MinimumLength\":6},"
                         "\"Identifier\":\"pc\",\"Type\":\"com.apple.configuration.passcode.settings\"}",
                         &changed, err, sizeof err),
                     200);
    assert_int_equal(changed, 0);
    char *t2 = server_token(fx, "pc");
    assert_string_equal(t1, t2);
    assert_int_equal(put(fx, PASSCODE("pc", 8), &changed, err, sizeof err), 200);
    assert_int_equal(changed, 1);
    char *t3 = server_token(fx, "pc");
    assert_string_not_equal(t1, t3);
    free(t1);
    free(t2);
    free(t3);
}

static void test_bad_declarations(void **state)
{
    conf_t *fx = *state;
    char err[512];
    static const struct {
        const char *json, *needle;
    } cases[] = {
        {"[]", "JSON object"},
        {"{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"x\"}", "Payload"},
        {"{\"Type\":\"com.apple.configuration.nope\",\"Identifier\":\"x\",\"Payload\":{}}", "com.apple.configuration.nope"},
        {"{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"a/b\",\"Payload\":{}}",
         "Identifier"},
        {"{\"Type\":\"com.apple.configuration.passcode.settings\","
         "\"Identifier\":\"0123456789012345678901234567890123456789012345678901234567890123X\",\"Payload\":{}}",
         "Identifier"},
        {"{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"x\",\"Payload\":{\"Bogus\":1}}",
         "Bogus"},
        {"{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"x\","
         "\"Payload\":{\"MinimumLength\":\"six\"}}",
         "MinimumLength"},
        {"{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"x\",\"Payload\":{},\"Extra\":1}",
         "Extra"},
        {"{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"act\","
         "\"Payload\":{\"StandardConfigurations\":[\"missing\"]}}",
         "dangling"},
        {"{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"act\","
         "\"Payload\":{\"StandardConfigurations\":[\"act\"]}}",
         "circular"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int code = put(fx, cases[i].json, NULL, err, sizeof err);
        if (code != 400 || !strstr(err, cases[i].needle))
            fail_msg("case %zu: %d '%s' (want 400 naming '%s')", i, code, err, cases[i].needle);
        declaration_t d;
        assert_int_equal(fx->s->ops->decl_get(fx->s, "x", &d), STORE_NOTFOUND);
        assert_int_equal(fx->s->ops->decl_get(fx->s, "act", &d), STORE_NOTFOUND);
    }
    /* A reference to the wrong kind: an activation naming an activation. */
    must_put(fx, "{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"a1\",\"Payload\":{\"StandardConfigurations\":[]}}");
    assert_int_equal(put(fx,
                         "{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"a2\","
                         "\"Payload\":{\"StandardConfigurations\":[\"a1\"]}}",
                         NULL, err, sizeof err),
                     400);
    assert_non_null(strstr(err, "configuration"));
    /* Changing the kind under an existing Identifier is refused. */
    assert_int_equal(put(fx, PASSCODE("a1", 4), NULL, err, sizeof err), 400);
}

/* An activation, its configuration and the configuration's asset. */
static void put_watch_chain(conf_t *fx)
{
    must_put(fx, "{\"Type\":\"com.apple.asset.credential.certificate\",\"Identifier\":\"anchor\","
                 "\"Payload\":{\"Reference\":{\"DataURL\":\"https://mdm.example.com/mdm/assets/a.pem\","
                 "\"ContentType\":\"application/pem\"},\"Authentication\":{\"Type\":\"MDM\"}}}");
    must_put(fx, "{\"Type\":\"com.apple.configuration.watch.enrollment\",\"Identifier\":\"watch\","
                 "\"Payload\":{\"EnrollmentProfileURL\":\"https://mdm.example.com/enroll/watch\","
                 "\"AnchorCertificateAssetReferences\":[\"anchor\"]}}");
    must_put(fx, "{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"act\","
                 "\"Payload\":{\"StandardConfigurations\":[\"watch\"]}}");
}

static void test_references_and_closure(void **state)
{
    conf_t *fx = *state;
    char err[512];
    put_watch_chain(fx);
    /* The asset must be a certificate asset. */
    must_put(fx, "{\"Type\":\"com.apple.asset.data\",\"Identifier\":\"blob\","
                 "\"Payload\":{\"Reference\":{\"DataURL\":\"https://mdm.example.com/x\",\"ContentType\":\"text/plain\"}}}");
    assert_int_equal(put(fx,
                         "{\"Type\":\"com.apple.configuration.watch.enrollment\",\"Identifier\":\"w2\","
                         "\"Payload\":{\"EnrollmentProfileURL\":\"https://x/enroll/watch\","
                         "\"AnchorCertificateAssetReferences\":[\"blob\"]}}",
                         NULL, err, sizeof err),
                     400);
    assert_non_null(strstr(err, "com.apple.asset.credential.certificate"));

    const char *dev = conf_active_device(fx, "phone", 1, CONF_T0);
    assert_non_null(dev);
    const char *members[] = {"act"};
    assert_int_equal(fx->s->ops->set_put(fx->s, "watchset", members, 1, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->set_assign(fx->s, "watchset", DDM_TARGET_DEVICE, dev, CONF_T0), STORE_OK);
    declaration_t *decls;
    size_t n;
    char tok1[33];
    assert_int_equal(ddm_effective_for(fx->s, dev, &decls, &n, tok1), STORE_OK);
    assert_int_equal(n, 3); /* activation + configuration + asset, ordered by kind */
    assert_string_equal(decls[0].identifier, "act");
    assert_string_equal(decls[1].identifier, "anchor");
    assert_string_equal(decls[2].identifier, "watch");
    for (size_t i = 0; i < n; i++)
        declaration_free(&decls[i]);
    free(decls);

    /* Changing the asset changes the device's token. */
    must_put(fx, "{\"Type\":\"com.apple.asset.credential.certificate\",\"Identifier\":\"anchor\","
                 "\"Payload\":{\"Reference\":{\"DataURL\":\"https://mdm.example.com/mdm/assets/b.pem\","
                 "\"ContentType\":\"application/pem\"},\"Authentication\":{\"Type\":\"MDM\"}}}");
    char tok2[33];
    assert_int_equal(ddm_effective_for(fx->s, dev, &decls, &n, tok2), STORE_OK);
    for (size_t i = 0; i < n; i++)
        declaration_free(&decls[i]);
    free(decls);
    assert_string_not_equal(tok1, tok2);

    /* Referenced declarations cannot be deleted. */
    char *referrer = NULL;
    assert_int_equal(fx->s->ops->decl_delete(fx->s, "watch", &referrer), STORE_CONFLICT);
    assert_string_equal(referrer, "act");
    free(referrer);
}

typedef struct {
    int n;
    char token[64];
} handout_t;

static void test_sync_coalesces(void **state)
{
    conf_t *fx = *state;
    char err[512];
    const char *a = conf_active_device(fx, "a", 1, CONF_T0);
    const char *b = conf_active_device(fx, "b", 2, CONF_T0);
    const char *c = conf_active_device(fx, "c", 3, CONF_T0);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    ddm_sync_report_t r;
    /* No declarations anywhere: nothing to do for anyone. */
    assert_int_equal(ddm_sync(fx->s, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.examined, 3);
    assert_int_equal(r.changed, 0);

    must_put(fx, PASSCODE("pc", 6));
    const char *members[] = {"pc"};
    assert_int_equal(fx->s->ops->set_put(fx->s, "base", members, 1, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->set_assign(fx->s, "base", DDM_TARGET_ALL, "", CONF_T0), STORE_OK);
    assert_int_equal(ddm_sync(fx->s, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.changed, 3);
    assert_int_equal(r.queued, 3);
    /* Nothing changed since: nothing queued. */
    assert_int_equal(ddm_sync(fx->s, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.changed, 0);
    /* A change while the sync commands wait: tokens move, no new commands. */
    must_put(fx, PASSCODE("pc", 8));
    assert_int_equal(ddm_sync(fx->s, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.changed, 3);
    assert_int_equal(r.queued, 0);

    /* Device a fetches its command: exactly one, carrying the current token. */
    command_t next;
    int applied = 0;
    assert_int_equal(fx->s->ops->command_exchange(fx->s, a, NULL, CONF_T0 + 5, &applied, &next), STORE_OK);
    assert_string_equal(next.request_type, "DeclarativeManagement");
    assert_int_equal(ddm_command_for_device(fx->s, a, &next), 0);
    plist_t *p = plist_parse((const char *)next.body, next.body_len, NULL, 0);
    assert_non_null(p);
    size_t dlen = 0;
    const unsigned char *data = plist_dict_get_data(plist_dict_get(p, "Command"), "Data", &dlen);
    assert_non_null(data);
    json_t *tj = json_loadb((const char *)data, dlen, 0, NULL);
    assert_non_null(tj);
    const char *sent = json_string_value(json_object_get(json_object_get(tj, "SyncTokens"), "DeclarationsToken"));
    declaration_t *decls;
    size_t n;
    char now_tok[33];
    assert_int_equal(ddm_effective_for(fx->s, a, &decls, &n, now_tok), STORE_OK);
    for (size_t i = 0; i < n; i++)
        declaration_free(&decls[i]);
    free(decls);
    assert_non_null(sent);
    assert_string_equal(sent, now_tok);
    assert_non_null(json_string_value(json_object_get(json_object_get(tj, "SyncTokens"), "Timestamp")));
    json_decref(tj);
    plist_free(p);
    /* Handed out: the next change queues a new command for a only. */
    command_report_t ack = {.command_uuid = next.uuid, .status = CMD_STATUS_ACKNOWLEDGED,
                            .raw = (const unsigned char *)"x", .raw_len = 1};
    command_t after;
    assert_int_not_equal(fx->s->ops->command_exchange(fx->s, a, &ack, CONF_T0 + 6, &applied, &after), STORE_ERR);
    assert_int_equal(applied, 1);
    command_free(&next);
    must_put(fx, PASSCODE("pc", 10));
    assert_int_equal(ddm_sync(fx->s, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.changed, 3);
    assert_int_equal(r.queued, 1);

    /* Removal propagates: unassigning makes the set empty, tokens change. */
    assert_int_equal(fx->s->ops->set_unassign(fx->s, "base", DDM_TARGET_ALL, ""), STORE_OK);
    assert_int_equal(ddm_sync(fx->s, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.changed, 3);
}

/* A device that joins after the set was assigned gets its sync at TokenUpdate. */
static void test_sync_one_enrollment(void **state)
{
    conf_t *fx = *state;
    char err[512];
    must_put(fx, PASSCODE("pc", 6));
    const char *members[] = {"pc"};
    assert_int_equal(fx->s->ops->set_put(fx->s, "base", members, 1, CONF_T0), STORE_OK);
    assert_int_equal(fx->s->ops->set_assign(fx->s, "base", DDM_TARGET_ALL, "", CONF_T0), STORE_OK);
    const char *late = conf_active_device(fx, "late", 9, CONF_T0);
    assert_int_equal(ddm_sync_enrollment(fx->s, NULL, late, err, sizeof err), 0);
    ddm_state_t st;
    assert_int_equal(fx->s->ops->ddm_state_get(fx->s, late, &st), STORE_OK);
    assert_int_equal(st.sync_pending, 1);
    assert_non_null(st.token);
    ddm_state_free(&st);
    /* Again: nothing new. */
    ddm_sync_report_t r;
    assert_int_equal(ddm_sync(fx->s, NULL, &r, err, sizeof err), 0);
    assert_int_equal(r.changed, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_server_token_follows_content, setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_bad_declarations, setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_references_and_closure, setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_sync_coalesces, setup, conf_teardown),
        cmocka_unit_test_setup_teardown(test_sync_one_enrollment, setup, conf_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
