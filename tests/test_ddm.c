/* Declarative device management end to end: a real orchard server, the admin
 * API over HTTPS, devices simulated with devsim's DDM client loop. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/evp.h>
#include <openssl/pem.h>

#include "curl_buffer.h"
#include "devsim.h"
#include "store.h"
#include "testpki.h"
#include "testserver.h"
#include "util.h"

static testserver_t srv;

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
    devsim_t *d;
} sim_t;

static void sim_enroll(sim_t *s, const char *udid)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(testserver_device_identity(&srv, udid, &s->key, &s->cert), 0);
    s->d = devsim_new(srv.base_url, srv.ca_path, udid, s->key, s->cert, DEVSIM_AUTH_MTLS);
    assert_non_null(s->d);
    assert_int_equal(devsim_authenticate(s->d), 200);
    assert_int_equal(devsim_token_update(s->d), 200);
}

static void sim_free(sim_t *s)
{
    devsim_free(s->d);
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
}

static long api(const char *method, const char *path, const char *body, json_t **out)
{
    return testserver_api(&srv, "", method, path, body, body ? strlen(body) : 0, out);
}

static void api_ok(const char *method, const char *path, const char *body)
{
    json_t *j = NULL;
    long st = api(method, path, body, &j);
    if (st != 200 && st != 201) {
        char *t = j ? json_dumps(j, 0) : NULL;
        fprintf(stderr, "%s %s -> %ld %s\n", method, path, st, t ? t : "");
        free(t);
    }
    json_decref(j);
    assert_true(st == 200 || st == 201);
}

/* The "sync" report of a mutation's answer, field `f`. */
static json_int_t sync_field(const json_t *answer, const char *f)
{
    return json_integer_value(json_object_get(json_object_get(answer, "sync"), f));
}

static json_t *device_view(const char *id)
{
    char *path = util_strdup_printf("/v1/devices/%s/declarations", id);
    json_t *j = NULL;
    assert_int_equal(api("GET", path, NULL, &j), 200);
    free(path);
    return j;
}

static char *device_token(const char *id)
{
    json_t *j = device_view(id);
    char *t = strdup(json_string_value(json_object_get(j, "token")));
    json_decref(j);
    return t;
}

static int pending_ddm_commands(const char *id)
{
    char *path = util_strdup_printf("/v1/devices/%s/commands?pending=1", id);
    json_t *j = NULL;
    assert_int_equal(api("GET", path, NULL, &j), 200);
    free(path);
    int n = 0;
    size_t i;
    json_t *c;
    json_array_foreach(json_object_get(j, "commands"), i, c)
    {
        if (strcmp(json_string_value(json_object_get(c, "request_type")), "DeclarativeManagement") == 0)
            n++;
    }
    json_decref(j);
    return n;
}

/* The DeclarationsToken in a DeclarativeManagement command's Data (heap). */
static char *command_data_token(const devsim_reply_t *r)
{
    const plist_t *cmd = plist_dict_get(r->command, "Command");
    size_t len = 0;
    const unsigned char *data = plist_dict_get_data(cmd, "Data", &len);
    assert_non_null(data);
    json_t *j = json_loadb((const char *)data, len, 0, NULL);
    assert_non_null(j);
    const char *t = json_string_value(json_object_get(json_object_get(j, "SyncTokens"), "DeclarationsToken"));
    assert_non_null(t);
    assert_non_null(json_string_value(json_object_get(json_object_get(j, "SyncTokens"), "Timestamp")));
    char *copy = strdup(t);
    json_decref(j);
    return copy;
}

/* Polls; expects a DeclarativeManagement command carrying the channel's
 * current token, runs the client loop on it and acknowledges it. */
static void poll_ddm(sim_t *s, const char *id, devsim_ddm_result_t *res)
{
    devsim_reply_t r, next;
    assert_int_equal(devsim_idle(s->d, &r), 0);
    assert_int_equal(r.status, 200);
    assert_non_null(devsim_request_type(&r));
    assert_string_equal(devsim_request_type(&r), "DeclarativeManagement");
    char *data_token = command_data_token(&r);
    char *current = device_token(id);
    assert_string_equal(data_token, current);
    free(data_token);
    free(current);
    assert_int_equal(devsim_ddm_handle_command(s->d, &r, res, &next), 1);
    assert_int_equal(next.status, 200);
    assert_null(next.command); /* one coalesced command, nothing after it */
    devsim_reply_free(&next);
    devsim_reply_free(&r);
}

static void poll_nothing(sim_t *s)
{
    devsim_reply_t r;
    assert_int_equal(devsim_idle(s->d, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    devsim_reply_free(&r);
}

/* The reported entry of declaration `ident` in a device view (borrowed). */
static json_t *reported(json_t *view, const char *ident)
{
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(view, "declarations"), i, d)
    {
        if (strcmp(json_string_value(json_object_get(d, "identifier")), ident) == 0)
            return json_object_get(d, "reported");
    }
    return NULL;
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    if (testserver_start(&srv, NULL) != 0)
        return -1;
    /* Declarations shared by the tests. */
    static const char *const decls[] = {
        "{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"cfg-pass\","
        "\"Payload\":{\"MinimumLength\":6}}",
        "{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"act-1\","
        "\"Payload\":{\"StandardConfigurations\":[\"cfg-pass\"]}}",
        "{\"Type\":\"com.apple.management.server-capabilities\",\"Identifier\":\"mgmt-caps\","
        "\"Payload\":{\"Version\":\"1.0\",\"SupportedFeatures\":{}}}",
        "{\"Type\":\"com.apple.management.organization-info\",\"Identifier\":\"mgmt-org\","
        "\"Payload\":{\"Name\":\"Orchard Test Org\",\"Email\":\"it@example.com\"}}",
        "{\"Type\":\"com.apple.management.properties\",\"Identifier\":\"mgmt-props\","
        "\"Payload\":{\"building\":\"A\",\"floor\":3}}",
        "{\"Type\":\"com.apple.configuration.management.test\",\"Identifier\":\"cfg-echo\","
        "\"Payload\":{\"Echo\":\"hello\"}}",
    };
    for (size_t i = 0; i < sizeof decls / sizeof decls[0]; i++) {
        json_t *j = NULL;
        long st = api("PUT", "/v1/declarations", decls[i], &j);
        if (st != 201) {
            char *t = j ? json_dumps(j, 0) : NULL;
            fprintf(stderr, "setup: declaration %zu -> %ld %s\n", i, st, t ? t : "");
            free(t);
            json_decref(j);
            return -1;
        }
        json_decref(j);
    }
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = testserver_stop(&srv);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* ---- converging, updates, removals ---------------------------------------------- */

static void test_converge_update_remove(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "DDM-DEV-1");
    poll_nothing(&s); /* no declarations assigned: DDM is not even enabled */

    api_ok("PUT", "/v1/sets/base", "{\"declarations\":[\"act-1\",\"mgmt-caps\",\"mgmt-org\",\"mgmt-props\"]}");
    json_t *j = NULL;
    assert_int_equal(api("POST", "/v1/sets/base/assignments", "{\"device\":\"DDM-DEV-1\"}", &j), 200);
    assert_int_equal(sync_field(j, "changed"), 1);
    assert_int_equal(sync_field(j, "queued"), 1);
    json_decref(j);

    /* act-1 brings cfg-pass along (references are followed). */
    devsim_ddm_result_t res;
    poll_ddm(&s, "DDM-DEV-1", &res);
    assert_true(res.token_changed);
    assert_int_equal(res.fetched, 5);
    assert_int_equal(res.removed, 0);
    assert_int_equal(res.status, 200);
    assert_int_equal(devsim_ddm_count(s.d), 5);
    assert_non_null(devsim_ddm_json(s.d, "cfg-pass"));
    assert_non_null(strstr(devsim_ddm_json(s.d, "mgmt-org"), "Orchard Test Org"));
    char *tok = device_token("DDM-DEV-1");
    assert_string_equal(devsim_ddm_token(s.d), tok);
    free(tok);

    /* What the device reported is visible: everything active and in sync. */
    j = device_view("DDM-DEV-1");
    assert_int_equal(json_array_size(json_object_get(j, "declarations")), 5);
    json_t *rep = reported(j, "cfg-pass");
    assert_non_null(rep);
    assert_true(json_is_true(json_object_get(rep, "active")));
    assert_string_equal(json_string_value(json_object_get(rep, "valid")), "valid");
    assert_true(json_is_true(json_object_get(rep, "in_sync")));
    assert_int_equal(json_array_size(json_object_get(j, "failed")), 0);
    assert_false(json_is_true(json_object_get(j, "sync_pending")));
    json_decref(j);

    /* A sync without a change: same token, the loop stops at tokens. */
    assert_int_equal(devsim_ddm_sync(s.d, NULL, &res), 0);
    assert_false(res.token_changed);

    /* Update one configuration: only it is fetched again. */
    const char *old_act = devsim_ddm_server_token(s.d, "act-1");
    char *act_token = strdup(old_act);
    api_ok("PUT", "/v1/declarations/cfg-pass",
           "{\"Type\":\"com.apple.configuration.passcode.settings\",\"Payload\":{\"MinimumLength\":8}}");
    poll_ddm(&s, "DDM-DEV-1", &res);
    assert_int_equal(res.fetched, 1);
    assert_int_equal(res.removed, 0);
    assert_non_null(strstr(devsim_ddm_json(s.d, "cfg-pass"), "8"));
    assert_string_equal(devsim_ddm_server_token(s.d, "act-1"), act_token);
    free(act_token);

    /* Several changes before the device polls: one command, current Data. */
    api_ok("PUT", "/v1/declarations/cfg-pass",
           "{\"Type\":\"com.apple.configuration.passcode.settings\",\"Payload\":{\"MinimumLength\":10}}");
    api_ok("PUT", "/v1/sets/base", "{\"declarations\":[\"act-1\",\"mgmt-caps\",\"mgmt-org\"]}");
    api_ok("PUT", "/v1/declarations/mgmt-org",
           "{\"Type\":\"com.apple.management.organization-info\",\"Payload\":{\"Name\":\"Renamed Org\"}}");
    assert_int_equal(pending_ddm_commands("DDM-DEV-1"), 1);
    poll_ddm(&s, "DDM-DEV-1", &res); /* checks Data == the current token */
    assert_int_equal(res.fetched, 2);  /* cfg-pass, mgmt-org */
    assert_int_equal(res.removed, 1);  /* mgmt-props left the set */
    assert_null(devsim_ddm_json(s.d, "mgmt-props"));
    assert_non_null(strstr(devsim_ddm_json(s.d, "mgmt-org"), "Renamed Org"));
    assert_int_equal(devsim_ddm_count(s.d), 4);

    /* Unassigning the set removes everything. */
    assert_int_equal(api("DELETE", "/v1/sets/base/assignments?device=DDM-DEV-1", NULL, &j), 200);
    assert_int_equal(sync_field(j, "queued"), 1);
    json_decref(j);
    poll_ddm(&s, "DDM-DEV-1", &res);
    assert_int_equal(res.removed, 4);
    assert_int_equal(devsim_ddm_count(s.d), 0);
    j = device_view("DDM-DEV-1");
    assert_int_equal(json_array_size(json_object_get(j, "declarations")), 0);
    json_decref(j);

    /* The set reads back with members and no assignments. */
    assert_int_equal(api("GET", "/v1/sets/base", NULL, &j), 200);
    assert_int_equal(json_array_size(json_object_get(j, "declarations")), 3);
    assert_int_equal(json_array_size(json_object_get(j, "assignments")), 0);
    json_decref(j);
    sim_free(&s);
}

/* ---- "all", groups, new devices, user channels -------------------------------- */

static void test_all_group_and_user_channel(void **state)
{
    (void)state;
    sim_t a, b;
    sim_enroll(&a, "DDM-ALL-A");
    sim_enroll(&b, "DDM-ALL-B");
    api_ok("PUT", "/v1/sets/everyone", "{\"declarations\":[\"mgmt-caps\"]}");
    json_t *j = NULL;
    assert_int_equal(api("POST", "/v1/sets/everyone/assignments", "{\"all\":true}", &j), 200);
    assert_true(sync_field(j, "queued") >= 2);
    json_decref(j);
    devsim_ddm_result_t res;
    poll_ddm(&a, "DDM-ALL-A", &res);
    assert_int_equal(res.fetched, 1);
    poll_ddm(&b, "DDM-ALL-B", &res);
    assert_int_equal(res.fetched, 1);

    /* A group assignment reaches only the group's members. */
    api_ok("PUT", "/v1/groups/lab/members/DDM-ALL-B", NULL);
    api_ok("PUT", "/v1/sets/labset", "{\"declarations\":[\"cfg-echo\"]}");
    api_ok("POST", "/v1/sets/labset/assignments", "{\"group\":\"lab\"}");
    poll_nothing(&a);
    poll_ddm(&b, "DDM-ALL-B", &res);
    assert_int_equal(res.fetched, 1);
    assert_non_null(devsim_ddm_json(b.d, "cfg-echo"));
    assert_int_equal(api("GET", "/v1/groups/lab", NULL, &j), 200);
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "members"), 0)), "DDM-ALL-B");
    assert_string_equal(json_string_value(json_array_get(json_object_get(j, "sets"), 0)), "labset");
    json_decref(j);
    /* Leaving the group removes its declarations. */
    api_ok("DELETE", "/v1/groups/lab/members/DDM-ALL-B", NULL);
    poll_ddm(&b, "DDM-ALL-B", &res);
    assert_int_equal(res.removed, 1);
    assert_null(devsim_ddm_json(b.d, "cfg-echo"));

    /* A device enrolled after the "all" assignment gets it at TokenUpdate. */
    sim_t c;
    sim_enroll(&c, "DDM-ALL-C");
    poll_ddm(&c, "DDM-ALL-C", &res);
    assert_int_equal(res.fetched, 1);

    /* The user channel has its own set, and its own token. */
    sim_t u;
    memset(&u, 0, sizeof u);
    u.d = devsim_new(srv.base_url, srv.ca_path, "DDM-ALL-C", c.key, c.cert, DEVSIM_AUTH_MTLS);
    devsim_set_user_channel(u.d, "USER-0001", "alice");
    assert_int_equal(devsim_token_update(u.d), 200);
    poll_nothing(&u); /* "all" covers device channels only */
    api_ok("PUT", "/v1/sets/userset", "{\"declarations\":[\"mgmt-org\",\"mgmt-props\"]}");
    assert_int_equal(api("POST", "/v1/sets/userset/assignments", "{\"device\":\"DDM-ALL-C:USER-0001\"}", &j), 200);
    assert_int_equal(sync_field(j, "queued"), 1);
    json_decref(j);
    poll_nothing(&c); /* the device channel is unchanged */
    poll_ddm(&u, "DDM-ALL-C:USER-0001", &res);
    assert_int_equal(res.fetched, 2);
    char *dev_tok = device_token("DDM-ALL-C"), *user_tok = device_token("DDM-ALL-C:USER-0001");
    assert_string_not_equal(dev_tok, user_tok);
    assert_string_equal(devsim_ddm_token(u.d), user_tok);
    assert_string_equal(devsim_ddm_token(c.d), dev_tok);
    free(dev_tok);
    free(user_tok);
    /* The device channel cannot fetch the user channel's declaration. */
    devsim_reply_t r;
    assert_int_equal(devsim_ddm_checkin(c.d, "declaration/management/mgmt-props", NULL, 0, &r), 404);
    devsim_reply_free(&r);
    assert_int_equal(devsim_ddm_checkin(u.d, "declaration/management/mgmt-props", NULL, 0, &r), 200);
    assert_non_null(strstr(r.body, "\"ServerToken\""));
    devsim_reply_free(&r);

    api_ok("DELETE", "/v1/sets/everyone/assignments?all=1", NULL);
    api_ok("DELETE", "/v1/sets/userset", NULL);
    sim_free(&a);
    sim_free(&b);
    devsim_free(u.d);
    sim_free(&c);
}

/* ---- status ---------------------------------------------------------------------- */

static long send_status(sim_t *s, const char *json)
{
    devsim_reply_t r;
    long st = devsim_ddm_checkin(s->d, "status", json, strlen(json), &r);
    devsim_reply_free(&r);
    return st;
}

static json_t *status_item(const char *id, const char *name)
{
    char *path = util_strdup_printf("/v1/devices/%s/status-items", id);
    json_t *j = NULL;
    assert_int_equal(api("GET", path, NULL, &j), 200);
    free(path);
    json_t *found = NULL;
    size_t i;
    json_t *it;
    json_array_foreach(json_object_get(j, "status_items"), i, it)
    {
        if (strcmp(json_string_value(json_object_get(it, "name")), name) == 0)
            found = json_incref(json_object_get(it, "value"));
    }
    json_decref(j);
    return found;
}

static size_t status_item_count(const char *id)
{
    char *path = util_strdup_printf("/v1/devices/%s/status-items", id);
    json_t *j = NULL;
    assert_int_equal(api("GET", path, NULL, &j), 200);
    free(path);
    size_t n = json_array_size(json_object_get(j, "status_items"));
    json_decref(j);
    return n;
}

static void test_status_failures_and_items(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "DDM-STATUS-1");
    api_ok("PUT", "/v1/sets/st", "{\"declarations\":[\"act-1\",\"cfg-echo\"]}");
    api_ok("POST", "/v1/sets/st/assignments", "{\"device\":\"DDM-STATUS-1\"}");
    devsim_ddm_result_t res;
    poll_ddm(&s, "DDM-STATUS-1", &res);
    assert_int_equal(res.fetched, 3);

    /* Device items from the loop's report, flattened by status item name. */
    json_t *v = status_item("DDM-STATUS-1", "device.operating-system.version");
    assert_string_equal(json_string_value(v), "18.1");
    json_decref(v);
    v = status_item("DDM-STATUS-1", "device.identifier.udid");
    assert_string_equal(json_string_value(v), "DDM-STATUS-1");
    json_decref(v);

    /* A failed configuration shows up with its reason. */
    devsim_ddm_set_failure(s.d, "cfg-echo", "Error.ConfigurationCannotBeApplied");
    api_ok("PUT", "/v1/declarations/cfg-echo",
           "{\"Type\":\"com.apple.configuration.management.test\",\"Payload\":{\"Echo\":\"again\"}}");
    poll_ddm(&s, "DDM-STATUS-1", &res);
    json_t *j = device_view("DDM-STATUS-1");
    json_t *failed = json_object_get(j, "failed");
    assert_int_equal(json_array_size(failed), 1);
    json_t *f = json_array_get(failed, 0);
    assert_string_equal(json_string_value(json_object_get(f, "identifier")), "cfg-echo");
    assert_string_equal(json_string_value(json_object_get(f, "valid")), "invalid");
    assert_false(json_is_true(json_object_get(f, "active")));
    assert_string_equal(
        json_string_value(json_object_get(json_array_get(json_object_get(f, "reasons"), 0), "code")),
        "Error.ConfigurationCannotBeApplied");
    json_t *rep = reported(j, "act-1");
    assert_true(json_is_true(json_object_get(rep, "active")));
    json_decref(j);

    /* Incremental array items: "_removed" deletes by identifier. */
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"mdm\":{\"app\":["
                                     "{\"identifier\":\"com.example.a\",\"name\":\"A\",\"state\":\"managed\"},"
                                     "{\"identifier\":\"com.example.b\",\"name\":\"B\",\"state\":\"managed\"}]}},"
                                     "\"Errors\":[]}"),
                     200);
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"mdm\":{\"app\":["
                                     "{\"identifier\":\"com.example.a\",\"_removed\":true},"
                                     "{\"identifier\":\"com.example.c\",\"name\":\"C\",\"state\":\"managed\"}]}},"
                                     "\"Errors\":[]}"),
                     200);
    v = status_item("DDM-STATUS-1", "mdm.app");
    assert_int_equal(json_array_size(v), 2);
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 0), "identifier")), "com.example.b");
    assert_string_equal(json_string_value(json_object_get(json_array_get(v, 1), "identifier")), "com.example.c");
    json_decref(v);
    /* A full report replaces the list. */
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"mdm\":{\"app\":["
                                     "{\"identifier\":\"com.example.d\",\"name\":\"D\"}]}},"
                                     "\"Errors\":[],\"FullReport\":true}"),
                     200);
    v = status_item("DDM-STATUS-1", "mdm.app");
    assert_int_equal(json_array_size(v), 1);
    json_decref(v);

    /* Errors become an event. */
    assert_int_equal(send_status(&s, "{\"StatusItems\":{},\"Errors\":[{\"StatusItem\":\"passcode.is-compliant\","
                                     "\"Reasons\":[{\"Code\":\"Error.Unknown\"}]}]}"),
                     200);
    assert_int_equal(api("GET", "/v1/devices/DDM-STATUS-1/events", NULL, &j), 200);
    char *dump = json_dumps(j, 0);
    assert_non_null(strstr(dump, "ddm_status_errors"));
    assert_non_null(strstr(dump, "passcode.is-compliant"));
    free(dump);
    json_decref(j);
    sim_free(&s);
}

/* management.declarations always lists every declaration the device holds
 * (its four arrays are required and have no removal markers), so an
 * incremental report carrying it replaces the reported rows; a report
 * without it leaves them alone. */
static void test_status_declarations_replace(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "DDM-STATUS-2");
    api_ok("PUT", "/v1/sets/st2", "{\"declarations\":[\"act-1\",\"cfg-echo\"]}");
    api_ok("POST", "/v1/sets/st2/assignments", "{\"device\":\"DDM-STATUS-2\"}");
    devsim_ddm_result_t res;
    poll_ddm(&s, "DDM-STATUS-2", &res);
    json_t *j = device_view("DDM-STATUS-2");
    assert_int_equal(json_array_size(json_object_get(j, "reported")), 3);
    const char *echo_token = json_string_value(json_object_get(reported(j, "cfg-echo"), "server_token"));
    char *report = util_strdup_printf(
        "{\"StatusItems\":{\"management\":{\"declarations\":{\"activations\":[],\"configurations\":["
        "{\"identifier\":\"cfg-echo\",\"server-token\":\"%s\",\"active\":false,\"valid\":\"invalid\","
        "\"reasons\":[{\"code\":\"Error.ConfigurationCannotBeApplied\"}]}],\"assets\":[],\"management\":[]}}},"
        "\"Errors\":[]}",
        echo_token);
    json_decref(j);
    /* Without management.declarations: the rows stay. */
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"passcode\":{\"is-present\":true}},\"Errors\":[]}"), 200);
    j = device_view("DDM-STATUS-2");
    assert_int_equal(json_array_size(json_object_get(j, "reported")), 3);
    json_decref(j);
    /* With it (incremental report): exactly what the device listed. */
    assert_int_equal(send_status(&s, report), 200);
    free(report);
    j = device_view("DDM-STATUS-2");
    assert_int_equal(json_array_size(json_object_get(j, "reported")), 1);
    assert_true(json_is_null(reported(j, "act-1")));
    assert_true(json_is_null(reported(j, "cfg-pass")));
    assert_false(json_is_true(json_object_get(reported(j, "cfg-echo"), "active")));
    assert_int_equal(json_array_size(json_object_get(j, "failed")), 1);
    json_decref(j);
    api_ok("DELETE", "/v1/sets/st2", NULL);
    sim_free(&s);
}

/* ---- asset data ---------------------------------------------------------------------- */

static char *key_pem(EVP_PKEY *key)
{
    BIO *b = BIO_new(BIO_s_mem());
    PEM_write_bio_PrivateKey(b, key, NULL, NULL, 0, NULL, NULL);
    char *p;
    long n = BIO_get_mem_data(b, &p);
    char *out = malloc((size_t)n + 1);
    memcpy(out, p, (size_t)n);
    out[n] = '\0';
    BIO_free(b);
    return out;
}

/* GET path; with_identity: present the device's certificate by mTLS. */
static long fetch(const char *path, const sim_t *s, curl_buffer_t *out, char *ctype, size_t ctlen)
{
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s%s", srv.base_url, path);
    char *cpem = s ? testpki_cert_pem(s->cert) : NULL, *kpem = s ? key_pem(s->key) : NULL;
    memset(out, 0, sizeof *out);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, srv.ca_path);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, out);
    if (s) {
        struct curl_blob cb = {cpem, strlen(cpem), CURL_BLOB_COPY};
        struct curl_blob kb = {kpem, strlen(kpem), CURL_BLOB_COPY};
        curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cb);
        curl_easy_setopt(c, CURLOPT_SSLCERTTYPE, "PEM");
        curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &kb);
        curl_easy_setopt(c, CURLOPT_SSLKEYTYPE, "PEM");
    }
    long st = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(ctype, ctlen, "%s", ct ? ct : "");
    }
    curl_easy_cleanup(c);
    free(url);
    free(cpem);
    free(kpem);
    return st;
}

static long put_asset(const char *name, const char *ctype, const char *data, json_t **out)
{
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s/v1/asset-data/%s", srv.base_url, name);
    struct curl_slist *h = curl_slist_append(NULL, "Authorization: Bearer " TESTSERVER_API_KEY);
    char *cth = util_strdup_printf("Content-Type: %s", ctype);
    h = curl_slist_append(h, cth);
    curl_buffer_t b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, srv.ca_path);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, data);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(data));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    long st = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    *out = b.data ? json_loads(b.data, 0, NULL) : NULL;
    curl_buffer_free(&b);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(url);
    free(cth);
    return st;
}

static void test_asset_data(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "DDM-ASSET-1");
    json_t *j = NULL;
    assert_int_equal(put_asset("echo.txt", "text/plain", "echo data\n", &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "size")), 10);
    const char *sha = json_string_value(json_object_get(j, "sha256"));
    assert_non_null(sha);
    assert_int_equal(strlen(sha), 64);
    const char *url = json_string_value(json_object_get(j, "url"));
    assert_non_null(strstr(url, "/mdm/assets/echo.txt"));

    /* An asset declaration pointing at it, referenced by a configuration. */
    char *asset = util_strdup_printf(
        "{\"Type\":\"com.apple.asset.data\",\"Identifier\":\"asset-echo\",\"Payload\":{\"Reference\":{"
        "\"DataURL\":\"%s\",\"ContentType\":\"text/plain\",\"Size\":10,\"Hash-SHA-256\":\"%s\"},"
        "\"Authentication\":{\"Type\":\"MDM\"}}}",
        url, sha);
    json_decref(j);
    api_ok("PUT", "/v1/declarations", asset);
    free(asset);
    api_ok("PUT", "/v1/declarations",
           "{\"Type\":\"com.apple.configuration.management.test\",\"Identifier\":\"cfg-echo-asset\","
           "\"Payload\":{\"Echo\":\"x\",\"EchoDataAssetReference\":\"asset-echo\"}}");
    api_ok("PUT", "/v1/sets/assets", "{\"declarations\":[\"cfg-echo-asset\"]}");
    api_ok("POST", "/v1/sets/assets/assignments", "{\"device\":\"DDM-ASSET-1\"}");
    devsim_ddm_result_t res;
    poll_ddm(&s, "DDM-ASSET-1", &res);
    assert_int_equal(res.fetched, 2); /* the configuration and the asset it names */
    assert_non_null(strstr(devsim_ddm_json(s.d, "asset-echo"), "/mdm/assets/echo.txt"));

    /* The device downloads the data with its own identity. */
    curl_buffer_t b;
    char ct[128];
    assert_int_equal(fetch("/mdm/assets/echo.txt", &s, &b, ct, sizeof ct), 200);
    assert_string_equal(b.data, "echo data\n");
    assert_string_equal(ct, "text/plain");
    curl_buffer_free(&b);
    assert_int_equal(fetch("/mdm/assets/echo.txt", NULL, &b, ct, sizeof ct), 401);
    curl_buffer_free(&b);
    assert_true(testserver_log_contains(&srv, "asset echo.txt: no client certificate"));
    assert_int_equal(fetch("/mdm/assets/missing.bin", &s, &b, ct, sizeof ct), 404);
    curl_buffer_free(&b);
    assert_int_equal(fetch("/mdm/assets/orchard-anchor.pem", &s, &b, ct, sizeof ct), 200);
    assert_non_null(strstr(b.data, "-----BEGIN CERTIFICATE-----"));
    assert_string_equal(ct, "application/pem");
    curl_buffer_free(&b);

    /* The asset declaration cannot go while the configuration names it. */
    assert_int_equal(api("DELETE", "/v1/declarations/asset-echo", NULL, &j), 409);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "cfg-echo-asset"));
    json_decref(j);
    sim_free(&s);
}

/* ---- bad input ------------------------------------------------------------------------- */

static void expect_decl_refused(const char *body, long status, const char *says, const char *ident)
{
    json_t *j = NULL;
    assert_int_equal(api("PUT", "/v1/declarations", body, &j), status);
    const char *err = json_string_value(json_object_get(j, "error"));
    assert_non_null(err);
    if (!strstr(err, says))
        fprintf(stderr, "error was: %s\n", err);
    assert_non_null(strstr(err, says));
    assert_true(testserver_log_contains(&srv, says));
    json_decref(j);
    if (ident) {
        char *path = util_strdup_printf("/v1/declarations/%s", ident);
        assert_int_equal(api("GET", path, NULL, NULL), 404);
        free(path);
    }
}

static void test_bad_declarations(void **state)
{
    (void)state;
    expect_decl_refused("{\"Type\": \"com.apple.configuration.passcode.settings\", \"Identifier\":", 400,
                        "body is not valid JSON", NULL);
    expect_decl_refused("{\"Type\":\"com.apple.configuration.no-such-thing\",\"Identifier\":\"bad-1\","
                        "\"Payload\":{}}",
                        400, "com.apple.configuration.no-such-thing", "bad-1");
    expect_decl_refused("{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"bad-2\","
                        "\"Payload\":{\"MinimumLenght\":6}}",
                        400, "MinimumLenght", "bad-2");
    expect_decl_refused("{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":\"bad-3\","
                        "\"Payload\":{\"MinimumLength\":\"six\"}}",
                        400, "MinimumLength", "bad-3");
    expect_decl_refused("{\"Type\":\"com.apple.configuration.passcode.settings\",\"Identifier\":"
                        "\"x0123456789012345678901234567890123456789012345678901234567890123\",\"Payload\":{}}",
                        400, "Identifier must be 1..64 octets", NULL);
    expect_decl_refused("{\"Type\":\"com.apple.activation.simple\",\"Identifier\":\"bad-4\","
                        "\"Payload\":{\"StandardConfigurations\":[\"no-such-config\"]}}",
                        400, "dangling reference: 'no-such-config'", "bad-4");
    expect_decl_refused("{\"Type\":\"com.apple.configuration.management.test\",\"Identifier\":\"bad-5\","
                        "\"Payload\":{\"Echo\":\"x\",\"EchoDataAssetReference\":\"bad-5\"}}",
                        400, "circular reference", "bad-5");
    /* The management declarations are checked like any other. */
    expect_decl_refused("{\"Type\":\"com.apple.management.organization-info\",\"Identifier\":\"bad-6\","
                        "\"Payload\":{\"Email\":\"x@example.com\"}}",
                        400, "Name", "bad-6");

    /* Deleting a referenced declaration names the referrer; nothing goes. */
    json_t *j = NULL;
    assert_int_equal(api("DELETE", "/v1/declarations/cfg-pass", NULL, &j), 409);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "act-1"));
    json_decref(j);
    assert_true(testserver_log_contains(&srv, "is referenced by 'act-1'"));
    assert_int_equal(api("GET", "/v1/declarations/cfg-pass", NULL, NULL), 200);

    /* Sets and assignments. */
    assert_int_equal(api("PUT", "/v1/sets/badset", "{\"declarations\":[\"no-such-decl\"]}", NULL), 400);
    assert_true(testserver_log_contains(&srv, "no declaration 'no-such-decl'"));
    assert_int_equal(api("GET", "/v1/sets/badset", NULL, NULL), 404);
    assert_int_equal(api("PUT", "/v1/sets/badset", "{\"declarations\":\"act-1\"}", NULL), 400);
    assert_int_equal(api("POST", "/v1/sets/st/assignments", "{\"device\":\"NO-SUCH-DEVICE\"}", NULL), 404);
    assert_int_equal(api("POST", "/v1/sets/st/assignments", "{\"device\":\"X\",\"all\":true}", NULL), 400);
    assert_true(testserver_log_contains(&srv, "give exactly one of device, group or all"));

    /* The list filters by kind. */
    assert_int_equal(api("GET", "/v1/declarations?kind=management", NULL, &j), 200);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(j, "declarations"), i, d)
    {
        assert_string_equal(json_string_value(json_object_get(d, "kind")), "management");
    }
    assert_true(json_array_size(json_object_get(j, "declarations")) >= 3);
    json_decref(j);
}

static void test_bad_device_requests(void **state)
{
    (void)state;
    sim_t s, other;
    sim_enroll(&s, "DDM-BAD-1");
    sim_enroll(&other, "DDM-BAD-2");
    api_ok("PUT", "/v1/sets/badtest", "{\"declarations\":[\"mgmt-caps\"]}");
    api_ok("POST", "/v1/sets/badtest/assignments", "{\"device\":\"DDM-BAD-1\"}");
    api_ok("PUT", "/v1/sets/other", "{\"declarations\":[\"cfg-echo\"]}");
    api_ok("POST", "/v1/sets/other/assignments", "{\"device\":\"DDM-BAD-2\"}");
    devsim_ddm_result_t res;
    poll_ddm(&s, "DDM-BAD-1", &res);
    size_t items_before = status_item_count("DDM-BAD-1");

    devsim_reply_t r;
    assert_int_equal(devsim_ddm_checkin(s.d, "bogus", NULL, 0, &r), 400);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "unknown Endpoint 'bogus'"));
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration/widget/mgmt-caps", NULL, 0, &r), 400);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "unknown declaration kind 'widget'"));
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration/management", NULL, 0, &r), 400);
    devsim_reply_free(&r);
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration/management/a/b", NULL, 0, &r), 400);
    devsim_reply_free(&r);
    assert_int_equal(devsim_ddm_checkin(
                         s.d, "declaration/configuration/x0123456789012345678901234567890123456789012345678901234567890123",
                         NULL, 0, &r),
                     400);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "Identifier in Endpoint must be 1 to 64 octets"));
    /* Another device's declaration, and a kind that does not match: 404. */
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration/configuration/cfg-echo", NULL, 0, &r), 404);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "no configuration declaration 'cfg-echo' for this enrollment"));
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration/configuration/mgmt-caps", NULL, 0, &r), 404);
    devsim_reply_free(&r);
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration/management/mgmt-caps", NULL, 0, &r), 200);
    devsim_reply_free(&r);
    /* A declaration that exists but is not assigned to anyone. */
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration/management/mgmt-props", NULL, 0, &r), 404);
    devsim_reply_free(&r);

    /* Status reports: each refused, logged, nothing stored. */
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"device\":{\"model\":{\"family\":\"iPhone\"}}},"), 400);
    assert_true(testserver_log_contains(&srv, "status report is not valid JSON"));
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"device\":{\"model\":{\"family\":\"iPhone\"}}}}"), 400);
    assert_true(testserver_log_contains(&srv, "status report needs Errors"));
    assert_int_equal(send_status(&s, "{\"StatusItems\":[],\"Errors\":[]}"), 400);
    assert_true(testserver_log_contains(&srv, "status report needs StatusItems"));
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"device\":{\"model\":{\"family\":\"iPhone\"}},"
                                     "\"management\":{\"declarations\":{\"configurations\":[{\"identifier\":\"c\","
                                     "\"server-token\":\"t\",\"active\":\"yes\",\"valid\":\"valid\"}]}}},"
                                     "\"Errors\":[]}"),
                     400);
    assert_true(testserver_log_contains(&srv, "'active' of 'c' must be a boolean"));
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"management\":{\"declarations\":{\"configurations\":[{"
                                     "\"identifier\":\"c\",\"server-token\":"
                                     "\"t0123456789012345678901234567890123456789012345678901234567890123\","
                                     "\"active\":true,\"valid\":\"valid\"}]}}},\"Errors\":[]}"),
                     400);
    assert_true(testserver_log_contains(&srv, "'server-token' must be 1 to 64 octets"));
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"mdm\":{\"app\":[{\"identifier\":\"a\",\"_removed\":1}]}},"
                                     "\"Errors\":[]}"),
                     400);
    assert_true(testserver_log_contains(&srv, "'_removed' in status item 'mdm.app' must be a boolean"));
    assert_int_equal(send_status(&s, "{\"StatusItems\":{},\"Errors\":[],\"FullReport\":\"yes\"}"), 400);
    assert_int_equal(send_status(&s, "{\"StatusItems\":{\"device.model\":\"x\"},\"Errors\":[]}"), 400);
    assert_true(testserver_log_contains(&srv, "status item segment 'device.model'"));
    /* Nesting deeper than 16 levels of unknown names, and names over 256 octets. */
    char deep[512] = "{\"StatusItems\":";
    for (int i = 0; i < 20; i++)
        strcat(deep, "{\"x\":");
    strcat(deep, "1");
    for (int i = 0; i < 20; i++)
        strcat(deep, "}");
    strcat(deep, ",\"Errors\":[]}");
    assert_int_equal(send_status(&s, deep), 400);
    assert_true(testserver_log_contains(&srv, "StatusItems nested deeper than 16 levels"));
    char longname[700];
    snprintf(longname, sizeof longname, "{\"StatusItems\":{\"a%0300d\":1},\"Errors\":[]}", 0);
    assert_int_equal(send_status(&s, longname), 400);
    assert_true(testserver_log_contains(&srv, "is longer than 256 octets"));
    assert_int_equal(send_status(&s, "{\"StatusItems\":{},\"Errors\":[{\"Reasons\":[]}]}"), 400);
    assert_int_equal(send_status(&s, "[1,2]"), 400);
    /* Over the 1 MiB limit: 413. */
    size_t big = 1024 * 1024 + 16;
    char *huge = malloc(big + 1);
    memset(huge, ' ', big);
    memcpy(huge, "{\"StatusItems\":{},\"Errors\":[]}", 30);
    huge[big] = '\0';
    assert_int_equal(send_status(&s, huge), 413);
    free(huge);
    assert_true(testserver_log_contains(&srv, "over the 1048576 byte limit"));
    assert_int_equal(status_item_count("DDM-BAD-1"), items_before);
    json_t *j = device_view("DDM-BAD-1");
    assert_null(reported(j, "c"));
    assert_non_null(reported(j, "mgmt-caps"));
    json_decref(j);

    /* status without Data; unknown device; no identity. */
    assert_int_equal(devsim_ddm_checkin(s.d, "status", NULL, 0, &r), 400);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "status without Data"));
    devsim_t *anon = devsim_new(srv.base_url, srv.ca_path, "DDM-BAD-1", NULL, NULL, DEVSIM_AUTH_NONE);
    assert_int_equal(devsim_ddm_checkin(anon, "tokens", NULL, 0, &r), 401);
    devsim_reply_free(&r);
    devsim_free(anon);
    /* Another device's certificate speaking for this UDID. */
    devsim_t *imp = devsim_new(srv.base_url, srv.ca_path, "DDM-BAD-1", other.key, other.cert, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_ddm_checkin(imp, "tokens", NULL, 0, &r), 401);
    devsim_reply_free(&r);
    devsim_free(imp);

    /* Tokens and manifest are JSON. */
    assert_int_equal(devsim_ddm_checkin(s.d, "declaration-items", NULL, 0, &r), 200);
    json_t *m = json_loadb(r.body, r.body_len, 0, NULL);
    json_t *dl = json_object_get(m, "Declarations");
    assert_true(json_is_array(json_object_get(dl, "Activations")));
    assert_true(json_is_array(json_object_get(dl, "Configurations")));
    assert_true(json_is_array(json_object_get(dl, "Assets")));
    assert_int_equal(json_array_size(json_object_get(dl, "Management")), 1);
    assert_non_null(json_string_value(json_object_get(m, "DeclarationsToken")));
    json_decref(m);
    devsim_reply_free(&r);
    sim_free(&s);
    sim_free(&other);
}

/* ---- command line ---------------------------------------------------------------------- */

/* Runs `orchard ARGS` against the test server; returns the exit status and
 * the combined output (heap). */
static int run_cli(const char *args, char **out)
{
    char outpath[] = "/tmp/orchard-ddm-cli-XXXXXX";
    int fd = mkstemp(outpath);
    assert_true(fd >= 0);
    close(fd);
    char *cmd = util_strdup_printf("%s %s --server %s --cacert %s --api-key %s > %s 2>&1", getenv("ORCHARD_BIN"),
                                   args, srv.base_url, srv.ca_path, TESTSERVER_API_KEY, outpath);
    int rc = system(cmd);
    free(cmd);
    *out = util_read_file(outpath, 1 << 20, NULL);
    unlink(outpath);
    return rc;
}

static void test_cli(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "DDM-CLI-1");
    char file[] = "/tmp/orchard-ddm-decl-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    const char *decl = "{\"Type\":\"com.apple.management.properties\",\"Identifier\":\"cli-props\","
                       "\"Payload\":{\"site\":\"cli\"}}";
    assert_int_equal(write(fd, decl, strlen(decl)), (ssize_t)strlen(decl));
    close(fd);
    char *out = NULL, *args = util_strdup_printf("declaration put %s", file);
    assert_int_equal(run_cli(args, &out), 0);
    assert_non_null(strstr(out, "cli-props"));
    free(out);
    free(args);
    assert_int_equal(run_cli("set put cliset cli-props", &out), 0);
    free(out);
    assert_int_equal(run_cli("set assign cliset --device DDM-CLI-1", &out), 0);
    assert_non_null(strstr(out, "\"queued\": 1"));
    free(out);
    devsim_ddm_result_t res;
    poll_ddm(&s, "DDM-CLI-1", &res);
    assert_int_equal(res.fetched, 1);
    assert_int_equal(run_cli("device-ddm DDM-CLI-1", &out), 0);
    assert_non_null(strstr(out, "cli-props"));
    assert_non_null(strstr(out, "\"in_sync\": true"));
    assert_non_null(strstr(out, "device.operating-system.version"));
    free(out);
    assert_int_equal(run_cli("group add cligroup DDM-CLI-1", &out), 0);
    free(out);
    assert_int_equal(run_cli("group show cligroup", &out), 0);
    assert_non_null(strstr(out, "DDM-CLI-1"));
    free(out);
    args = util_strdup_printf("asset-data put cli.json %s --type application/json", file);
    assert_int_equal(run_cli(args, &out), 0);
    assert_non_null(strstr(out, "sha256"));
    free(out);
    free(args);
    assert_int_equal(run_cli("set unassign cliset --device DDM-CLI-1", &out), 0);
    free(out);
    assert_int_equal(run_cli("set delete cliset", &out), 0);
    free(out);
    assert_int_equal(run_cli("declaration delete cli-props", &out), 0);
    free(out);
    assert_int_not_equal(run_cli("declaration get cli-props", &out), 0);
    free(out);
    assert_int_not_equal(run_cli("set assign cliset", &out), 0); /* no target: usage error */
    free(out);
    unlink(file);
    sim_free(&s);
}

/* DeviceInformation's IsSupervised is kept (schema 5). */
static void test_supervision_recorded(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "DDM-SUP-1");
    plist_t *c = plist_new_dict(), *inner = plist_new_dict();
    plist_dict_set(inner, "RequestType", plist_new_string("DeviceInformation"));
    plist_dict_set(c, "Command", inner);
    plist_dict_set(c, "CommandUUID", plist_new_string("SUP-CMD-1"));
    size_t len;
    char *xml = plist_to_xml(c, &len);
    plist_free(c);
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/enqueue/DDM-SUP-1?nopush=1", xml, len, NULL), 200);
    free(xml);
    devsim_reply_t r;
    assert_int_equal(devsim_idle(s.d, &r), 0);
    assert_string_equal(devsim_command_uuid(&r), "SUP-CMD-1");
    devsim_reply_free(&r);
    plist_t *extra = plist_new_dict(), *qr = plist_new_dict();
    plist_dict_set(qr, "IsSupervised", plist_new_bool(1));
    plist_dict_set(extra, "QueryResponses", qr);
    assert_int_equal(devsim_report(s.d, "SUP-CMD-1", "Acknowledged", extra, &r), 0);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);
    /* Read it back from the database (WAL: a second reader is fine). */
    char *url = util_strdup_printf("sqlite:%s/orchard.db", srv.dir);
    char *err = NULL;
    store_t *st = store_open(url, &err);
    free(url);
    assert_non_null(st);
    enrollment_t e;
    assert_int_equal(st->ops->enrollment_get(st, "DDM-SUP-1", &e), STORE_OK);
    assert_int_equal(e.supervised, 1);
    enrollment_free(&e);
    store_close(st);
    sim_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_converge_update_remove),
        cmocka_unit_test(test_all_group_and_user_channel),
        cmocka_unit_test(test_status_failures_and_items),
        cmocka_unit_test(test_status_declarations_replace),
        cmocka_unit_test(test_asset_data),
        cmocka_unit_test(test_bad_declarations),
        cmocka_unit_test(test_bad_device_requests),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_supervision_recorded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
