/* Enqueue to a device group and to the whole fleet (PUT /v1/enqueue?group=
 * and ?all=1), over HTTPS with real devices:
 *   - only active targets get the command, each once; a checked-out member
 *     and a device outside the group do not;
 *   - a command watchOS cannot run leaves the watches out (counted), one it
 *     can run reaches them;
 *   - the fleet call takes every active device channel, not user channels;
 *   - without a push certificate each push is reported failed, and the
 *     command is queued all the same;
 *   - refusals: both or neither selector, a bad group name, a reused UUID,
 *     a bad plist; an empty group is 404 and stores nothing. */
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
#include "plist.h"
#include "testserver.h"
#include "util.h"

#define CHECKIN_CT "Content-Type: application/x-apple-aspen-mdm-checkin"

static testserver_t srv;

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
    return rc;
}

/* An enrolled device; product "iPhone16,1" or e.g. "Watch7,1". */
static devsim_t *enroll(const char *udid, const char *product)
{
    devsim_t *d = testserver_devsim(&srv, udid, DEVSIM_AUTH_MTLS);
    assert_non_null(d);
    plist_t *m = plist_new_dict();
    plist_dict_set(m, "MessageType", plist_new_string("Authenticate"));
    plist_dict_set(m, "UDID", plist_new_string(udid));
    plist_dict_set(m, "Topic", plist_new_string("com.apple.mgmt.External.orchard-test"));
    plist_dict_set(m, "ProductName", plist_new_string(product));
    plist_dict_set(m, "SerialNumber", plist_new_string(udid));
    size_t len = 0;
    char *xml = devsim_plist_xml(m, &len);
    plist_free(m);
    devsim_reply_t r;
    devsim_send(d, "/mdm/checkin", CHECKIN_CT, xml, len, &r);
    free(xml);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);
    assert_int_equal(devsim_token_update(d), 200);
    return d;
}

static long enqueue_to(const char *query, const char *uuid, const char *rtype, json_t **out)
{
    size_t len = 0;
    char *xml = testserver_command_xml(uuid, rtype, NULL, &len);
    char *path = util_strdup_printf("/v1/enqueue?%s", query);
    long st = testserver_api(&srv, "", "PUT", path, xml, len, out);
    free(path);
    free(xml);
    return st;
}

static json_int_t num(const json_t *o, const char *key)
{
    const json_t *v = json_object_get(o, key);
    assert_true(json_is_integer(v));
    return json_integer_value(v);
}

/* The UUIDs a device is handed, in order, acknowledging each. */
static int drain(devsim_t *d, char uuids[][64], int max)
{
    int n = 0;
    devsim_reply_t r;
    assert_int_equal(devsim_idle(d, &r), 0);
    while (devsim_command_uuid(&r)) {
        assert_true(n < max);
        snprintf(uuids[n], 64, "%s", devsim_command_uuid(&r));
        n++;
        char uuid[64];
        snprintf(uuid, sizeof uuid, "%s", devsim_command_uuid(&r));
        devsim_reply_free(&r);
        assert_int_equal(devsim_report(d, uuid, "Acknowledged", NULL, &r), 0);
    }
    devsim_reply_free(&r);
    return n;
}

static void add_member(const char *group, const char *id)
{
    char *path = util_strdup_printf("/v1/groups/%s/members/%s", group, id);
    assert_int_equal(testserver_api(&srv, "", "PUT", path, NULL, 0, NULL), 200);
    free(path);
}

static void test_group_and_fleet(void **state)
{
    (void)state;
    char hex[9], u[5][64], g[32];
    assert_int_equal(util_random_hex(hex, 4), 0);
    const char *names[] = {"A", "B", "C", "GONE", "WATCH"};
    for (int i = 0; i < 5; i++)
        snprintf(u[i], sizeof u[i], "BULK-%s-%s", names[i], hex);
    snprintf(g, sizeof g, "sales-%s", hex);
    devsim_t *a = enroll(u[0], "iPhone16,1"), *b = enroll(u[1], "iPhone16,1"), *c = enroll(u[2], "iPad14,1");
    devsim_t *gone = enroll(u[3], "iPhone16,1"), *watch = enroll(u[4], "Watch7,1");
    assert_int_equal(devsim_checkout(gone), 200);
    /* A user channel on A: not part of "all". */
    devsim_set_user_channel(a, "BULK-USER-0001", "someone");
    assert_int_equal(devsim_user_token_update(a, "BULK-USER-0001", "someone"), 200);
    devsim_set_user_channel(a, NULL, NULL);
    add_member(g, u[0]);
    add_member(g, u[1]);
    add_member(g, u[3]);
    add_member(g, u[4]);

    /* EnableLostMode: not on watchOS. The group's active phones get it. */
    char uuid1[64], uuid2[64];
    snprintf(uuid1, sizeof uuid1, "BULK-LOST-%s", hex);
    json_t *o = NULL;
    char *q = util_strdup_printf("group=%s&nopush=1", g);
    assert_int_equal(enqueue_to(q, uuid1, "EnableLostMode", &o), 200);
    free(q);
    assert_int_equal(num(o, "queued"), 2);
    assert_int_equal(num(o, "skipped_watches"), 1);
    assert_int_equal(num(o, "skipped_inactive"), 1);
    assert_int_equal(num(o, "unknown"), 0);
    assert_true(json_is_true(json_object_get(o, "no_push")));
    assert_string_equal(json_string_value(json_object_get(o, "target")), g);
    json_decref(o);

    /* DeviceInformation to all, with pushes asked for (none configured). */
    snprintf(uuid2, sizeof uuid2, "BULK-INFO-%s", hex);
    assert_int_equal(enqueue_to("all=1", uuid2, "DeviceInformation", &o), 200);
    json_int_t queued = num(o, "queued");
    assert_true(queued >= 4); /* A, B, C, the watch (and other tests' devices: none here) */
    assert_int_equal(num(o, "skipped_watches"), 0);
    assert_int_equal(num(o, "pushed"), 0);
    assert_int_equal(num(o, "push_failed"), queued);
    assert_non_null(strstr(json_string_value(json_object_get(o, "first_push_error")), "not configured"));
    json_decref(o);

    char got[8][64];
    assert_int_equal(drain(a, got, 8), 2);
    assert_string_equal(got[0], uuid1);
    assert_string_equal(got[1], uuid2);
    assert_int_equal(drain(b, got, 8), 2);
    assert_int_equal(drain(c, got, 8), 1);
    assert_string_equal(got[0], uuid2);
    assert_int_equal(drain(watch, got, 8), 1);
    assert_string_equal(got[0], uuid2);
    devsim_set_user_channel(a, "BULK-USER-0001", "someone");
    assert_int_equal(drain(a, got, 8), 0);
    /* The checked-out device comes back: nothing was queued for it. */
    assert_int_equal(devsim_authenticate(gone), 200);
    assert_int_equal(devsim_token_update(gone), 200);
    assert_int_equal(drain(gone, got, 8), 0);
    assert_true(testserver_log_contains(&srv, "2 queued, 1 watches and 1 inactive left out"));

    /* Refusals. */
    assert_int_equal(enqueue_to("nopush=1", "BULK-X-1", "DeviceInformation", NULL), 400);
    q = util_strdup_printf("group=%s&all=1", g);
    assert_int_equal(enqueue_to(q, "BULK-X-2", "DeviceInformation", NULL), 400);
    free(q);
    assert_int_equal(enqueue_to("group=bad%2Fname", "BULK-X-3", "DeviceInformation", NULL), 400);
    assert_int_equal(enqueue_to("all=1&nopush=1", uuid2, "DeviceInformation", NULL), 409);
    assert_int_equal(enqueue_to("group=nobody-here&nopush=1", "BULK-X-4", "DeviceInformation", &o), 404);
    assert_int_equal(num(o, "skipped_inactive"), 0);
    json_decref(o);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/commands/BULK-X-4", NULL, 0, NULL), 404);
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/enqueue?all=1", "<plist", 6, NULL), 400);

    devsim_free(a);
    devsim_free(b);
    devsim_free(c);
    devsim_free(gone);
    devsim_free(watch);
}

/* The CLI's --group and --all reach the same calls. */
static void test_cli(void **state)
{
    (void)state;
    char hex[9], udid[64], group[32], uuid[64];
    assert_int_equal(util_random_hex(hex, 4), 0);
    snprintf(udid, sizeof udid, "BULK-CLI-%s", hex);
    snprintf(group, sizeof group, "cli-%s", hex);
    devsim_t *d = enroll(udid, "iPhone16,1");
    add_member(group, udid);
    char file[] = "/tmp/orchard-bulk-cmd-XXXXXX";
    int fd = mkstemp(file);
    assert_true(fd >= 0);
    close(fd);
    const char *bin = getenv("ORCHARD_BIN");
    char *common = util_strdup_printf("--server %s --cacert %s --api-key %s", srv.base_url, srv.ca_path,
                                      TESTSERVER_API_KEY);
    char *outpath = util_strdup_printf("%s.out", file);
    const char *how[] = {"--group", "--all"};
    for (int i = 0; i < 2; i++) {
        snprintf(uuid, sizeof uuid, "BULK-CLI-%d-%s", i, hex);
        size_t len = 0;
        char *xml = testserver_command_xml(uuid, "ProfileList", NULL, &len);
        assert_int_equal(util_write_file(file, xml, len, 0600), 0);
        free(xml);
        char *cmd = util_strdup_printf("%s enqueue %s %s %s --nopush %s > %s 2>&1", bin, how[i], i ? "" : group,
                                       file, common, outpath);
        assert_int_equal(system(cmd), 0);
        free(cmd);
        char *out = util_read_file(outpath, 1 << 20, NULL);
        assert_non_null(out);
        /* The group has this device only; the fleet has the first test's too. */
        assert_non_null(strstr(out, i ? "\"queued\": " : "\"queued\": 1,"));
        free(out);
    }
    char got[4][64];
    assert_int_equal(drain(d, got, 4), 2);
    /* Both selectors at once: a usage error, nothing sent. */
    char *cmd = util_strdup_printf("%s enqueue --group %s --all %s %s > %s 2>&1", bin, group, file, common, outpath);
    assert_int_not_equal(system(cmd), 0);
    free(cmd);
    unlink(outpath);
    unlink(file);
    free(outpath);
    free(common);
    devsim_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_group_and_fleet),
        cmocka_unit_test(test_cli),
    };
    return cmocka_run_group_tests_name("enqueue", tests, setup, teardown);
}
