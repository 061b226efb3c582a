/* Integration tests: a real orchard server, devices simulated over HTTPS with
 * real certificates, the admin API over HTTPS with the key. */
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

#include "devsim.h"
#include "pki.h"
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

static void sim_make(sim_t *s, const char *udid, devsim_auth_t auth)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(testserver_device_identity(&srv, udid, &s->key, &s->cert), 0);
    s->d = devsim_new(srv.base_url, srv.ca_path, udid, s->key, s->cert, auth);
    assert_non_null(s->d);
}

static void sim_enroll(sim_t *s, const char *udid, devsim_auth_t auth)
{
    sim_make(s, udid, auth);
    assert_int_equal(devsim_authenticate(s->d), 200);
    assert_int_equal(devsim_token_update(s->d), 200);
}

static void sim_free(sim_t *s)
{
    devsim_free(s->d);
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
}

static long enqueue(const char *ids, const char *uuid, const char *rtype, json_t **out)
{
    size_t len;
    char *xml = testserver_command_xml(uuid, rtype, NULL, &len);
    char *path = util_strdup_printf("/v1/enqueue/%s?nopush=1", ids);
    long st = testserver_api(&srv, "", "PUT", path, xml, len, out);
    free(path);
    free(xml);
    return st;
}

static json_t *api_get(const char *path, long expect)
{
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, &j), expect);
    return j;
}

static const char *device_state(const char *udid)
{
    static char state[32];
    char *path = util_strdup_printf("/v1/devices/%s", udid);
    json_t *j = NULL;
    long st = testserver_api(&srv, "", "GET", path, NULL, 0, &j);
    free(path);
    snprintf(state, sizeof state, "%s", st == 200 ? json_string_value(json_object_get(j, "state")) : "absent");
    json_decref(j);
    return state;
}

/* Status of command `uuid` for `udid` as the API reports it. */
static const char *target_status(const char *uuid, const char *udid)
{
    static char status[32];
    snprintf(status, sizeof status, "absent");
    char *path = util_strdup_printf("/v1/commands/%s", uuid);
    json_t *j = NULL;
    testserver_api(&srv, "", "GET", path, NULL, 0, &j);
    free(path);
    size_t i;
    json_t *t;
    json_array_foreach(json_object_get(j, "targets"), i, t)
    {
        if (strcmp(json_string_value(json_object_get(t, "enrollment_id")), udid) == 0)
            snprintf(status, sizeof status, "%s", json_string_value(json_object_get(t, "status")));
    }
    json_decref(j);
    return status;
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return testserver_start(&srv, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int rc = testserver_stop(&srv);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* ---- check-in -------------------------------------------------------------- */

static void test_enrollment_lifecycle(void **state)
{
    (void)state;
    sim_t s;
    sim_make(&s, "UDID-LIFECYCLE-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(s.d), 200);
    assert_string_equal(device_state("UDID-LIFECYCLE-1"), "authenticated");
    json_t *j = api_get("/v1/devices/UDID-LIFECYCLE-1", 200);
    assert_string_equal(json_string_value(json_object_get(j, "serial_number")), "SIM-SERIAL-0001");
    assert_string_equal(json_string_value(json_object_get(j, "model")), "iPhone16,1");
    assert_string_equal(json_string_value(json_object_get(j, "os_version")), "18.1");
    assert_string_equal(json_string_value(json_object_get(j, "imei")), "35 000000 000000 0");
    assert_false(json_is_true(json_object_get(j, "push_token_present")));
    json_decref(j);

    assert_int_equal(devsim_token_update(s.d), 200);
    assert_string_equal(device_state("UDID-LIFECYCLE-1"), "active");
    j = api_get("/v1/devices/UDID-LIFECYCLE-1", 200);
    assert_true(json_is_true(json_object_get(j, "push_token_present")));
    assert_true(json_is_true(json_object_get(j, "unlock_token_present")));
    /* secrets never leave through the API */
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "PUSH-MAGIC"));
    free(dump);
    json_decref(j);

    devsim_reply_t r;
    devsim_idle(s.d, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0); /* zero bytes, not an empty plist */
    devsim_reply_free(&r);

    assert_int_equal(devsim_checkout(s.d), 200);
    assert_string_equal(device_state("UDID-LIFECYCLE-1"), "inactive");
    devsim_idle(s.d, &r);
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);

    /* A restore brings a TokenUpdate with the same identity: active again. */
    assert_int_equal(devsim_token_update(s.d), 200);
    assert_string_equal(device_state("UDID-LIFECYCLE-1"), "active");
    devsim_idle(s.d, &r);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);

    j = api_get("/v1/devices/UDID-LIFECYCLE-1/events", 200);
    assert_true(json_array_size(json_object_get(j, "events")) >= 4);
    json_decref(j);
    sim_free(&s);
}

static void test_user_channel(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-USERCHAN-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_user_token_update(s.d, "A1B2C3D4-0000-0000-0000-000000000001", "alice"), 200);
    json_t *j = api_get("/v1/devices/UDID-USERCHAN-1:A1B2C3D4-0000-0000-0000-000000000001", 200);
    assert_string_equal(json_string_value(json_object_get(j, "channel")), "user");
    assert_string_equal(json_string_value(json_object_get(j, "user_short_name")), "alice");
    assert_string_equal(json_string_value(json_object_get(j, "device_id")), "UDID-USERCHAN-1");
    json_decref(j);
    sim_free(&s);
}

/* ---- commands -------------------------------------------------------------- */

static void test_command_acknowledged(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-ACK-1", DEVSIM_AUTH_MTLS);
    json_t *j = NULL;
    assert_int_equal(enqueue("UDID-ACK-1", "CMD-ACK-1", "DeviceInformation", &j), 200);
    assert_string_equal(json_string_value(json_object_get(j, "command_uuid")), "CMD-ACK-1");
    assert_string_equal(json_string_value(json_object_get(j, "request_type")), "DeviceInformation");
    assert_true(json_is_true(json_object_get(j, "no_push")));
    json_decref(j);
    assert_string_equal(target_status("CMD-ACK-1", "UDID-ACK-1"), "queued");

    devsim_reply_t r;
    devsim_idle(s.d, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(devsim_command_uuid(&r), "CMD-ACK-1");
    assert_string_equal(devsim_request_type(&r), "DeviceInformation");
    devsim_reply_free(&r);

    /* Until the result arrives the command stays queued and is sent again. */
    devsim_idle(s.d, &r);
    assert_string_equal(devsim_command_uuid(&r), "CMD-ACK-1");
    devsim_reply_free(&r);

    plist_t *extra = plist_new_dict();
    plist_t *qr = plist_new_dict();
    plist_dict_set(qr, "DeviceName", plist_new_string("Simulated iPhone"));
    plist_dict_set(qr, "BatteryLevel", plist_new_real(0.5));
    plist_dict_set(extra, "QueryResponses", qr);
    devsim_report(s.d, "CMD-ACK-1", "Acknowledged", extra, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    devsim_reply_free(&r);
    assert_string_equal(target_status("CMD-ACK-1", "UDID-ACK-1"), "Acknowledged");

    j = api_get("/v1/devices/UDID-ACK-1/commands", 200);
    json_t *t = json_array_get(json_object_get(j, "commands"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "status")), "Acknowledged");
    json_t *res = json_object_get(json_object_get(t, "result"), "QueryResponses");
    assert_string_equal(json_string_value(json_object_get(res, "DeviceName")), "Simulated iPhone");
    json_decref(j);

    /* The same result again is harmless. */
    devsim_report(s.d, "CMD-ACK-1", "Acknowledged", NULL, &r);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);
    assert_string_equal(target_status("CMD-ACK-1", "UDID-ACK-1"), "Acknowledged");
    j = api_get("/v1/commands/CMD-ACK-1", 200);
    t = json_array_get(json_object_get(j, "targets"), 0);
    assert_non_null(json_object_get(json_object_get(t, "result"), "QueryResponses")); /* first result kept */
    json_decref(j);
    sim_free(&s);
}

static void test_command_error_and_format_error(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-ERR-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(enqueue("UDID-ERR-1", "CMD-ERR-1", "InstallProfile", NULL), 200);
    assert_int_equal(enqueue("UDID-ERR-1", "CMD-ERR-2", "NoSuchCommand", NULL), 200);
    devsim_reply_t r;
    devsim_idle(s.d, &r);
    assert_string_equal(devsim_command_uuid(&r), "CMD-ERR-1");
    devsim_reply_free(&r);

    plist_t *extra = plist_new_dict();
    plist_t *chain = plist_new_array();
    plist_t *e = plist_new_dict();
    plist_dict_set(e, "ErrorCode", plist_new_integer(4001));
    plist_dict_set(e, "ErrorDomain", plist_new_string("MCProfileErrorDomain"));
    plist_dict_set(e, "LocalizedDescription", plist_new_string("Profile is malformed"));
    plist_array_append(chain, e);
    plist_dict_set(extra, "ErrorChain", chain);
    devsim_report(s.d, "CMD-ERR-1", "Error", extra, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(devsim_command_uuid(&r), "CMD-ERR-2"); /* next in the same exchange */
    devsim_reply_free(&r);

    devsim_report(s.d, "CMD-ERR-2", "CommandFormatError", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    devsim_reply_free(&r);

    assert_string_equal(target_status("CMD-ERR-1", "UDID-ERR-1"), "Error");
    assert_string_equal(target_status("CMD-ERR-2", "UDID-ERR-1"), "CommandFormatError");
    json_t *j = api_get("/v1/commands/CMD-ERR-1", 200);
    json_t *t = json_array_get(json_object_get(j, "targets"), 0);
    json_t *ec = json_array_get(json_object_get(t, "error_chain"), 0);
    assert_int_equal(json_integer_value(json_object_get(ec, "ErrorCode")), 4001);
    assert_string_equal(json_string_value(json_object_get(ec, "ErrorDomain")), "MCProfileErrorDomain");
    json_decref(j);
    sim_free(&s);
}

static void test_command_notnow(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-NOTNOW-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(enqueue("UDID-NOTNOW-1", "CMD-NN-A", "InstallApplication", NULL), 200);
    assert_int_equal(enqueue("UDID-NOTNOW-1", "CMD-NN-B", "ProfileList", NULL), 200);
    devsim_reply_t r;
    devsim_idle(s.d, &r);
    assert_string_equal(devsim_command_uuid(&r), "CMD-NN-A");
    devsim_reply_free(&r);
    /* NotNow: A stays queued but is not handed out again in this exchange. */
    devsim_report(s.d, "CMD-NN-A", "NotNow", NULL, &r);
    assert_string_equal(devsim_command_uuid(&r), "CMD-NN-B");
    devsim_reply_free(&r);
    assert_string_equal(target_status("CMD-NN-A", "UDID-NOTNOW-1"), "NotNow");
    devsim_report(s.d, "CMD-NN-B", "Acknowledged", NULL, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    devsim_reply_free(&r);
    /* The device polls again later: A comes back. */
    devsim_idle(s.d, &r);
    assert_string_equal(devsim_command_uuid(&r), "CMD-NN-A");
    devsim_reply_free(&r);
    devsim_report(s.d, "CMD-NN-A", "Acknowledged", NULL, &r);
    assert_int_equal(r.body_len, 0);
    devsim_reply_free(&r);
    assert_string_equal(target_status("CMD-NN-A", "UDID-NOTNOW-1"), "Acknowledged");
    sim_free(&s);
}

static void test_multi_target_enqueue(void **state)
{
    (void)state;
    sim_t a, b, c;
    sim_enroll(&a, "UDID-MULTI-A", DEVSIM_AUTH_MTLS);
    sim_enroll(&b, "UDID-MULTI-B", DEVSIM_AUTH_SIGNATURE);
    sim_enroll(&c, "UDID-MULTI-C", DEVSIM_AUTH_BOTH);
    json_t *j = NULL;
    assert_int_equal(enqueue("UDID-MULTI-A,UDID-MULTI-B,UDID-MULTI-C,UDID-NOT-ENROLLED", "CMD-MULTI-1",
                             "SecurityInfo", &j),
                     207);
    json_t *st = json_object_get(j, "status");
    assert_null(json_object_get(json_object_get(st, "UDID-MULTI-A"), "command_error"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(st, "UDID-NOT-ENROLLED"), "command_error")),
                        "unknown enrollment");
    json_decref(j);
    j = api_get("/v1/commands/CMD-MULTI-1", 200);
    assert_int_equal(json_array_size(json_object_get(j, "targets")), 3);
    assert_string_equal(json_string_value(json_object_get(json_object_get(j, "command"), "CommandUUID")),
                        "CMD-MULTI-1");
    json_decref(j);
    sim_t *all[] = {&a, &b, &c};
    for (int i = 0; i < 3; i++) {
        devsim_reply_t r;
        devsim_idle(all[i]->d, &r);
        assert_int_equal(r.status, 200);
        assert_string_equal(devsim_command_uuid(&r), "CMD-MULTI-1");
        devsim_reply_free(&r);
        devsim_report(all[i]->d, "CMD-MULTI-1", "Acknowledged", NULL, &r);
        assert_int_equal(r.status, 200);
        devsim_reply_free(&r);
        assert_string_equal(target_status("CMD-MULTI-1", devsim_udid(all[i]->d)), "Acknowledged");
    }
    /* Enqueue with push: no push certificate yet, reported per id, still queued. */
    size_t len;
    char *xml = testserver_command_xml("CMD-MULTI-2", "ProfileList", NULL, &len);
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/enqueue/UDID-MULTI-A", xml, len, &j), 200);
    free(xml);
    assert_non_null(json_object_get(json_object_get(json_object_get(j, "status"), "UDID-MULTI-A"), "push_error"));
    json_decref(j);
    assert_string_equal(target_status("CMD-MULTI-2", "UDID-MULTI-A"), "queued");
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/UDID-MULTI-A,UDID-MULTI-B", NULL, 0, &j), 200);
    assert_non_null(json_object_get(json_object_get(json_object_get(j, "status"), "UDID-MULTI-B"), "push_error"));
    json_decref(j);
    sim_free(&a);
    sim_free(&b);
    sim_free(&c);
}

static void test_cancel(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-CANCEL-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(enqueue("UDID-CANCEL-1", "CMD-CANCEL-1", "EraseDevice", NULL), 200);
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "DELETE", "/v1/devices/UDID-CANCEL-1/commands/CMD-CANCEL-1", NULL, 0, &j),
                     200);
    json_decref(j);
    assert_string_equal(target_status("CMD-CANCEL-1", "UDID-CANCEL-1"), "cancelled");
    devsim_reply_t r;
    devsim_idle(s.d, &r);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0);
    devsim_reply_free(&r);
    assert_int_equal(testserver_api(&srv, "", "DELETE", "/v1/devices/UDID-CANCEL-1/commands/CMD-CANCEL-1", NULL, 0, &j),
                     404);
    json_decref(j);
    /* A finished command cannot be cancelled either. */
    assert_int_equal(enqueue("UDID-CANCEL-1", "CMD-CANCEL-2", "ProfileList", NULL), 200);
    devsim_idle(s.d, &r);
    devsim_reply_free(&r);
    devsim_report(s.d, "CMD-CANCEL-2", "Acknowledged", NULL, &r);
    devsim_reply_free(&r);
    assert_int_equal(testserver_api(&srv, "", "DELETE", "/v1/devices/UDID-CANCEL-1/commands/CMD-CANCEL-2", NULL, 0, &j),
                     404);
    json_decref(j);
    assert_string_equal(target_status("CMD-CANCEL-2", "UDID-CANCEL-1"), "Acknowledged");
    sim_free(&s);
}

static void test_single_url(void **state)
{
    (void)state;
    sim_t s;
    sim_make(&s, "UDID-SINGLEURL-1", DEVSIM_AUTH_SIGNATURE);
    devsim_set_paths(s.d, "/mdm", "/mdm");
    assert_int_equal(devsim_authenticate(s.d), 200);
    assert_int_equal(devsim_token_update(s.d), 200);
    assert_int_equal(enqueue("UDID-SINGLEURL-1", "CMD-SINGLE-1", "DeviceInformation", NULL), 200);
    devsim_reply_t r;
    devsim_idle(s.d, &r);
    assert_string_equal(devsim_command_uuid(&r), "CMD-SINGLE-1");
    devsim_reply_free(&r);
    devsim_report(s.d, "CMD-SINGLE-1", "Acknowledged", NULL, &r);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);
    assert_string_equal(target_status("CMD-SINGLE-1", "UDID-SINGLEURL-1"), "Acknowledged");
    sim_free(&s);
}

static void test_devices_list(void **state)
{
    (void)state;
    sim_t a, b;
    sim_enroll(&a, "UDID-LIST-A", DEVSIM_AUTH_MTLS);
    sim_make(&b, "UDID-LIST-B", DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(b.d), 200);
    json_t *j = api_get("/v1/devices?state=authenticated&limit=1000", 200);
    size_t i;
    json_t *d;
    int seen_b = 0;
    json_array_foreach(json_object_get(j, "devices"), i, d)
    {
        assert_string_equal(json_string_value(json_object_get(d, "state")), "authenticated");
        seen_b |= strcmp(json_string_value(json_object_get(d, "id")), "UDID-LIST-B") == 0;
    }
    assert_true(seen_b);
    json_decref(j);
    /* Paging: one at a time, following "next", visits every device once. */
    int count = 0;
    char after[256] = "";
    for (;;) {
        char *path = util_strdup_printf("/v1/devices?limit=1%s%s", *after ? "&after=" : "", after);
        j = api_get(path, 200);
        free(path);
        count += (int)json_array_size(json_object_get(j, "devices"));
        json_t *next = json_object_get(j, "next");
        if (!json_is_string(next)) {
            json_decref(j);
            break;
        }
        snprintf(after, sizeof after, "%s", json_string_value(next));
        json_decref(j);
        assert_true(count < 1000);
    }
    j = api_get("/v1/devices?limit=1000", 200);
    assert_int_equal(count, (int)json_array_size(json_object_get(j, "devices")));
    json_decref(j);
    j = api_get("/v1/devices?serial=SIM-SERIAL-0001&model=iPhone16,1", 200);
    assert_true(json_array_size(json_object_get(j, "devices")) >= 2);
    json_decref(j);
    j = api_get("/v1/devices?state=bogus", 400);
    json_decref(j);
    sim_free(&a);
    sim_free(&b);
}

/* ---- bad input: each refused with a specific status and a log line, and
 * nothing stored ----------------------------------------------------------- */

static long send_body(sim_t *s, const char *path, const char *body)
{
    devsim_reply_t r;
    devsim_send(s->d, path, NULL, body, strlen(body), &r);
    long st = r.status;
    devsim_reply_free(&r);
    return st;
}

#define PLIST_HEAD "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>"
#define PLIST_TAIL "</dict></plist>"

static void test_bad_checkin_messages(void **state)
{
    (void)state;
    sim_t s;
    sim_make(&s, "UDID-BAD-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(send_body(&s, "/mdm/checkin", "<plist><dict><key>MessageType</key>"), 400);
    assert_true(testserver_log_contains(&srv, "malformed plist"));
    assert_int_equal(send_body(&s, "/mdm/checkin", PLIST_HEAD "<key>UDID</key><string>UDID-BAD-1</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "without MessageType"));
    assert_int_equal(send_body(&s, "/mdm/checkin", PLIST_HEAD "<key>MessageType</key><string>Authenticate</string>"
                                                   "<key>Topic</key><string>t</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "UDID is missing"));
    assert_int_equal(send_body(&s, "/mdm/checkin", PLIST_HEAD "<key>MessageType</key><string>Authenticate</string>"
                                                   "<key>UDID</key><integer>7</integer>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "UDID must be a string"));
    assert_int_equal(send_body(&s, "/mdm/checkin", PLIST_HEAD "<key>MessageType</key><string>Rumba</string>"
                                                   "<key>UDID</key><string>UDID-BAD-1</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "unsupported check-in MessageType 'Rumba'"));
    assert_int_equal(send_body(&s, "/mdm/checkin", PLIST_HEAD "<key>MessageType</key><string>Authenticate</string>"
                                                   "<key>UDID</key><string>UDID-BAD-1</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "Authenticate: Topic is missing"));
    assert_string_equal(device_state("UDID-BAD-1"), "absent");

    /* TokenUpdate with the token as a string instead of data */
    assert_int_equal(devsim_authenticate(s.d), 200);
    assert_int_equal(send_body(&s, "/mdm/checkin",
                               PLIST_HEAD "<key>MessageType</key><string>TokenUpdate</string>"
                                          "<key>UDID</key><string>UDID-BAD-1</string><key>Topic</key><string>t</string>"
                                          "<key>Token</key><string>abc</string>"
                                          "<key>PushMagic</key><string>m</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "Token must be a data, not a string"));
    assert_string_equal(device_state("UDID-BAD-1"), "authenticated");

    /* Deep nesting is refused by the parser's depth cap. */
    size_t depth = 200, cap = depth * 15 + 256;
    char *deep = malloc(cap);
    strcpy(deep, PLIST_HEAD "<key>MessageType</key><string>Authenticate</string><key>X</key>");
    for (size_t i = 0; i < depth; i++)
        strcat(deep, "<array>");
    for (size_t i = 0; i < depth; i++)
        strcat(deep, "</array>");
    strcat(deep, PLIST_TAIL);
    assert_int_equal(send_body(&s, "/mdm/checkin", deep), 400);
    free(deep);
    assert_true(testserver_log_contains(&srv, "nesting deeper than"));
    sim_free(&s);
}

static void test_bad_connect_messages(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-BADCONN-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(enqueue("UDID-BADCONN-1", "CMD-BADCONN-1", "ProfileList", NULL), 200);
    assert_int_equal(send_body(&s, "/mdm/connect", PLIST_HEAD "<key>UDID</key><string>UDID-BADCONN-1</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "command report without Status"));
    assert_int_equal(send_body(&s, "/mdm/connect", PLIST_HEAD "<key>UDID</key><string>UDID-BADCONN-1</string>"
                                                   "<key>Status</key><string>Maybe</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "unknown Status 'Maybe'"));
    assert_int_equal(send_body(&s, "/mdm/connect", PLIST_HEAD "<key>UDID</key><string>UDID-BADCONN-1</string>"
                                                   "<key>Status</key><string>Acknowledged</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "Status Acknowledged without CommandUUID"));
    assert_int_equal(send_body(&s, "/mdm/connect", PLIST_HEAD "<key>UDID</key><string>UDID-BADCONN-1</string>"
                                                   "<key>CommandUUID</key><string>CMD-BADCONN-1</string>"
                                                   "<key>Status</key><string>Error</string>"
                                                   "<key>ErrorChain</key><string>oops</string>" PLIST_TAIL),
                     400);
    assert_true(testserver_log_contains(&srv, "ErrorChain must be an array"));
    assert_int_equal(send_body(&s, "/mdm/connect", PLIST_HEAD "<key>UDID</key><false/>"
                                                   "<key>Status</key><string>Idle</string>" PLIST_TAIL),
                     400);
    assert_string_equal(target_status("CMD-BADCONN-1", "UDID-BADCONN-1"), "queued");

    /* Over the body limit (2 MiB default) */
    size_t big = 2 * 1024 * 1024 + 10;
    char *body = malloc(big + 1);
    memset(body, ' ', big);
    body[big] = '\0';
    assert_int_equal(send_body(&s, "/mdm/connect", body), 413);
    free(body);
    assert_true(testserver_log_contains(&srv, "over the 2097152-byte limit"));
    assert_string_equal(target_status("CMD-BADCONN-1", "UDID-BADCONN-1"), "queued");
    sim_free(&s);
}

static void test_identity_refusals(void **state)
{
    (void)state;
    /* no certificate at all */
    sim_t none;
    sim_make(&none, "UDID-NOCERT-1", DEVSIM_AUTH_NONE);
    assert_int_equal(devsim_authenticate(none.d), 401);
    assert_true(testserver_log_contains(&srv, "no client certificate"));
    assert_string_equal(device_state("UDID-NOCERT-1"), "absent");
    sim_free(&none);

    /* a certificate from a CA orchard does not trust */
    char dir[] = "/tmp/orchard-untrusted-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(testpki_make_ca(dir, "rogue"), 0);
    char *cp = util_strdup_printf("%s/rogue.pem", dir), *kp = util_strdup_printf("%s/rogue.key", dir);
    EVP_PKEY *rk = NULL;
    X509 *rc = NULL;
    assert_int_equal(testpki_issue_device_identity(cp, kp, "UDID-ROGUE-1", &rk, &rc), 0);
    devsim_t *rogue = devsim_new(srv.base_url, srv.ca_path, "UDID-ROGUE-1", rk, rc, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(rogue), 401);
    assert_true(testserver_log_contains(&srv, "client certificate (TLS) is not trusted"));
    devsim_free(rogue);
    rogue = devsim_new(srv.base_url, srv.ca_path, "UDID-ROGUE-1", rk, rc, DEVSIM_AUTH_SIGNATURE);
    assert_int_equal(devsim_authenticate(rogue), 401);
    assert_true(testserver_log_contains(&srv, "Mdm-Signature signer is not trusted"));
    devsim_free(rogue);
    assert_string_equal(device_state("UDID-ROGUE-1"), "absent");
    EVP_PKEY_free(rk);
    X509_free(rc);
    free(cp);
    free(kp);
    char *rm = util_strdup_printf("rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
    free(rm);

    /* a device's certificate used for another UDID */
    sim_t victim;
    sim_enroll(&victim, "UDID-VICTIM-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(enqueue("UDID-VICTIM-1", "CMD-VICTIM-1", "DeviceLock", NULL), 200);
    devsim_t *t = devsim_new(srv.base_url, srv.ca_path, "UDID-THIEF-1", victim.key, victim.cert, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(t), 401);
    assert_true(testserver_log_contains(&srv, "certificate is bound to another device"));
    devsim_free(t);
    assert_string_equal(device_state("UDID-THIEF-1"), "absent");

    /* another enrolled device's certificate presented for the victim's UDID */
    sim_t other;
    sim_enroll(&other, "UDID-OTHER-1", DEVSIM_AUTH_MTLS);
    t = devsim_new(srv.base_url, srv.ca_path, "UDID-VICTIM-1", other.key, other.cert, DEVSIM_AUTH_MTLS);
    devsim_reply_t r;
    devsim_idle(t, &r);
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "is not the one bound to this UDID"));
    assert_int_equal(devsim_checkout(t), 401);
    assert_int_equal(devsim_token_update(t), 401);
    /* re-Authenticate with a certificate that does not name the UDID */
    assert_int_equal(devsim_authenticate(t), 401);
    devsim_free(t);
    assert_string_equal(device_state("UDID-VICTIM-1"), "active");
    assert_string_equal(target_status("CMD-VICTIM-1", "UDID-VICTIM-1"), "queued");

    /* an Mdm-Signature copied from another body */
    sim_t sig;
    sim_enroll(&sig, "UDID-SIGCOPY-1", DEVSIM_AUTH_SIGNATURE);
    const char *idle = PLIST_HEAD "<key>UDID</key><string>UDID-SIGCOPY-1</string>"
                                  "<key>Status</key><string>Idle</string>" PLIST_TAIL;
    const char *checkout = PLIST_HEAD "<key>MessageType</key><string>CheckOut</string>"
                                      "<key>UDID</key><string>UDID-SIGCOPY-1</string>"
                                      "<key>Topic</key><string>t</string>" PLIST_TAIL;
    devsim_send_signed_other(sig.d, "/mdm/checkin", checkout, strlen(checkout), idle, strlen(idle), &r);
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "Mdm-Signature does not match the request body"));
    assert_string_equal(device_state("UDID-SIGCOPY-1"), "active");

    /* A certificate that merely names the UDID does not replace the bound
     * one: whoever holds a static or unbound challenge picks the subject. */
    sim_t renewed;
    sim_make(&renewed, "UDID-VICTIM-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(renewed.d), 401);
    assert_true(testserver_log_contains(&srv, "orchard did not issue the new one for this UDID"));
    /* One orchard issued for this device (a challenge bound to its UDID)
     * does: renewal. */
    char *url = util_strdup_printf("sqlite:%s/orchard.db", srv.dir);
    char *err = NULL;
    store_t *st = store_open(url, &err);
    assert_non_null(st);
    char sha[65];
    assert_int_equal(pki_cert_sha256_hex(renewed.cert, sha), 0);
    issued_cert_t c = {.serial = "0feed0001", .subject = "CN=UDID-VICTIM-1", .enrollment_id = "UDID-OTHER-1",
                       .sha256 = sha, .not_before = util_now() - 60, .not_after = util_now() + 86400,
                       .issued_at = util_now()};
    assert_int_equal(st->ops->cert_add(st, &c), STORE_OK); /* issued, but for another device */
    assert_int_equal(devsim_authenticate(renewed.d), 401);
    EVP_PKEY *nk = NULL;
    X509 *nc = NULL;
    assert_int_equal(testserver_device_identity(&srv, "UDID-VICTIM-1", &nk, &nc), 0);
    X509_free(renewed.cert);
    EVP_PKEY_free(renewed.key);
    devsim_free(renewed.d);
    renewed.key = nk;
    renewed.cert = nc;
    renewed.d = devsim_new(srv.base_url, srv.ca_path, "UDID-VICTIM-1", nk, nc, DEVSIM_AUTH_MTLS);
    assert_int_equal(pki_cert_sha256_hex(nc, sha), 0);
    c.serial = "0feed0002";
    c.enrollment_id = "UDID-VICTIM-1";
    assert_int_equal(st->ops->cert_add(st, &c), STORE_OK);
    store_close(st);
    free(url);
    free(err);
    assert_int_equal(devsim_authenticate(renewed.d), 200);
    devsim_idle(victim.d, &r); /* the old certificate no longer works */
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);
    devsim_idle(renewed.d, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(devsim_command_uuid(&r), "CMD-VICTIM-1");
    devsim_reply_free(&r);

    sim_free(&sig);
    sim_free(&other);
    sim_free(&victim);
    sim_free(&renewed);
}

static void test_revoked_certificate_is_refused(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-REVOKED-1", DEVSIM_AUTH_MTLS);
    /* Record the certificate as issued by orchard, then revoke it, through
     * the store on the server's own database. */
    char *url = util_strdup_printf("sqlite:%s/orchard.db", srv.dir);
    char *err = NULL;
    store_t *st = store_open(url, &err);
    assert_non_null(st);
    char sha[65];
    assert_int_equal(pki_cert_sha256_hex(s.cert, sha), 0);
    issued_cert_t c = {.serial = "0badc0de01", .subject = "CN=UDID-REVOKED-1", .enrollment_id = "UDID-REVOKED-1",
                       .sha256 = sha, .not_before = util_now() - 60, .not_after = util_now() + 86400,
                       .issued_at = util_now()};
    assert_int_equal(st->ops->cert_add(st, &c), STORE_OK);
    devsim_reply_t r;
    devsim_idle(s.d, &r);
    assert_int_equal(r.status, 200); /* issued and valid */
    devsim_reply_free(&r);
    assert_int_equal(st->ops->cert_revoke(st, "0badc0de01", util_now()), STORE_OK);
    devsim_idle(s.d, &r);
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "certificate was revoked"));
    assert_int_equal(devsim_authenticate(s.d), 401); /* cannot re-enroll with it either */
    store_close(st);
    free(url);
    free(err);
    sim_free(&s);
}

static void test_admin_api_auth_and_enqueue_validation(void **state)
{
    (void)state;
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, NULL, "GET", "/v1/devices", NULL, 0, &j), 401);
    json_decref(j);
    assert_int_equal(testserver_api(&srv, "wrong-key-wrong-key-wrong", "GET", "/v1/devices", NULL, 0, &j), 401);
    json_decref(j);
    assert_true(testserver_log_contains(&srv, "admin API key missing or wrong"));

    /* HTTP Basic with any user name and the key as password */
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s/v1/devices", srv.base_url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, srv.ca_path);
    curl_easy_setopt(c, CURLOPT_USERPWD, "nanomdm:" TESTSERVER_API_KEY);
    FILE *devnull = fopen("/dev/null", "w");
    curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    long st = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    assert_int_equal(st, 200);
    curl_easy_setopt(c, CURLOPT_USERPWD, "nanomdm:nope");
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    assert_int_equal(st, 401);
    fclose(devnull);
    curl_easy_cleanup(c);
    free(url);

    sim_t s;
    sim_enroll(&s, "UDID-ENQBAD-1", DEVSIM_AUTH_MTLS);
    assert_int_equal(enqueue("UDID-ENQBAD-1", NULL, "ProfileList", &j), 400);
    json_decref(j);
    assert_true(testserver_log_contains(&srv, "command plist needs a CommandUUID"));
    assert_int_equal(enqueue("UDID-ENQBAD-1", "CMD-ENQBAD-1", NULL, &j), 400);
    json_decref(j);
    assert_true(testserver_log_contains(&srv, "needs Command (a dict) with a RequestType"));
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/enqueue/UDID-ENQBAD-1", "<plist>", 7, &j), 400);
    json_decref(j);
    assert_int_equal(enqueue("UDID-NOBODY-1", "CMD-ENQBAD-2", "ProfileList", &j), 404);
    json_decref(j);
    assert_int_equal(enqueue("UDID-ENQBAD-1", "CMD-ENQBAD-3", "ProfileList", &j), 200);
    json_decref(j);
    assert_int_equal(enqueue("UDID-ENQBAD-1", "CMD-ENQBAD-3", "ProfileList", &j), 409);
    json_decref(j);
    /* nothing from the refused calls was queued */
    j = api_get("/v1/devices/UDID-ENQBAD-1/commands", 200);
    assert_int_equal(json_array_size(json_object_get(j, "commands")), 1);
    json_decref(j);
    j = api_get("/v1/commands/CMD-ENQBAD-2", 404);
    json_decref(j);
    sim_free(&s);
}

static void test_cli(void **state)
{
    (void)state;
    sim_t s;
    sim_enroll(&s, "UDID-CLI-1", DEVSIM_AUTH_MTLS);
    char cmdfile[] = "/tmp/orchard-cli-cmd-XXXXXX";
    int fd = mkstemp(cmdfile);
    assert_true(fd >= 0);
    size_t len;
    char *xml = testserver_command_xml("CMD-CLI-1", "DeviceInformation", NULL, &len);
    assert_int_equal(write(fd, xml, len), (ssize_t)len);
    close(fd);
    free(xml);
    const char *bin = getenv("ORCHARD_BIN");
    char *common = util_strdup_printf("--server %s --cacert %s --api-key %s", srv.base_url, srv.ca_path,
                                      TESTSERVER_API_KEY);
    char *cmd = util_strdup_printf("%s enqueue UDID-CLI-1 %s --nopush %s > %s.out 2>&1", bin, cmdfile, common, cmdfile);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *outpath = util_strdup_printf("%s.out", cmdfile);
    char *out = util_read_file(outpath, 1 << 20, NULL);
    assert_non_null(strstr(out, "CMD-CLI-1"));
    free(out);
    cmd = util_strdup_printf("%s devices show UDID-CLI-1 %s > %s 2>&1", bin, common, outpath);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    out = util_read_file(outpath, 1 << 20, NULL);
    assert_non_null(strstr(out, "\"state\": \"active\""));
    free(out);
    cmd = util_strdup_printf("%s commands cancel UDID-CLI-1 CMD-CLI-1 %s > %s 2>&1", bin, common, outpath);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    assert_string_equal(target_status("CMD-CLI-1", "UDID-CLI-1"), "cancelled");
    cmd = util_strdup_printf("%s devices show UDID-NOPE %s > %s 2>&1", bin, common, outpath);
    assert_int_not_equal(system(cmd), 0); /* refused → non-zero exit */
    free(cmd);
    cmd = util_strdup_printf("%s devices --help > %s 2>&1", bin, outpath);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    cmd = util_strdup_printf("%s serve --help > %s 2>&1", bin, outpath);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    out = util_read_file(outpath, 1 << 20, NULL);
    assert_non_null(strstr(out, "--client-cert-header"));
    assert_non_null(strstr(out, "ORCHARD_DATA_DIR"));
    free(out);
    unlink(outpath);
    unlink(cmdfile);
    free(outpath);
    free(common);
    sim_free(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_enrollment_lifecycle),
        cmocka_unit_test(test_user_channel),
        cmocka_unit_test(test_command_acknowledged),
        cmocka_unit_test(test_command_error_and_format_error),
        cmocka_unit_test(test_command_notnow),
        cmocka_unit_test(test_multi_target_enqueue),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_single_url),
        cmocka_unit_test(test_devices_list),
        cmocka_unit_test(test_bad_checkin_messages),
        cmocka_unit_test(test_bad_connect_messages),
        cmocka_unit_test(test_identity_refusals),
        cmocka_unit_test(test_revoked_certificate_is_refused),
        cmocka_unit_test(test_admin_api_auth_and_enqueue_validation),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
