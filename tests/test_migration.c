/* NanoMDM-compatible enrollment migration (PUT /migration) over HTTPS: the
 * replayed Authenticate/TokenUpdate create a managed enrollment without a
 * certificate; the device's first request binds its certificate; refusals
 * for a missing key, other message types, TokenUpdate before Authenticate,
 * and a certificate already bound elsewhere. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "devsim.h"
#include "plist.h"
#include "testserver.h"
#include "util.h"

static testserver_t srv;

#define TOPIC "com.apple.mgmt.External.0b7c1f2e-migration"

static int setup(void **state)
{
    (void)state;
    return testserver_start(&srv, NULL);
}

static int teardown(void **state)
{
    (void)state;
    return testserver_stop(&srv);
}

static char *checkin_xml(const char *type, const char *udid, size_t *len)
{
    plist_t *d = plist_new_dict();
    plist_dict_set(d, "MessageType", plist_new_string(type));
    plist_dict_set(d, "UDID", plist_new_string(udid));
    plist_dict_set(d, "Topic", plist_new_string(TOPIC));
    if (strcmp(type, "Authenticate") == 0) {
        plist_dict_set(d, "SerialNumber", plist_new_string("C02MIGRATED1"));
        plist_dict_set(d, "ProductName", plist_new_string("iPhone15,2"));
        plist_dict_set(d, "OSVersion", plist_new_string("17.5"));
    } else if (strcmp(type, "TokenUpdate") == 0) {
        static const unsigned char tok[] = {0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10, 0x11};
        plist_dict_set(d, "Token", plist_new_data(tok, sizeof tok));
        plist_dict_set(d, "PushMagic", plist_new_string("MIGRATED-PUSH-MAGIC-0001"));
    }
    char *xml = plist_to_xml(d, len);
    plist_free(d);
    return xml;
}

static size_t discard(char *p, size_t sz, size_t n, void *ctx)
{
    (void)p, (void)ctx;
    return sz * n;
}

/* PUT /migration as NanoMDM's tools do: HTTP Basic, user "nanomdm", the key as password. */
static long migrate(const char *type, const char *udid, const char *key)
{
    size_t len = 0;
    char *xml = checkin_xml(type, udid, &len);
    CURL *c = curl_easy_init();
    char url[128];
    snprintf(url, sizeof url, "%s/migration", srv.base_url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, srv.ca_path);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, xml);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    if (key) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, CURLAUTH_BASIC);
        curl_easy_setopt(c, CURLOPT_USERNAME, "nanomdm");
        curl_easy_setopt(c, CURLOPT_PASSWORD, key);
    }
    long status = -1;
    if (curl_easy_perform(c) == CURLE_OK)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup(c);
    free(xml);
    return status;
}

static const char *device_state(const char *udid, json_t **j)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/devices/%s", udid);
    if (testserver_api(&srv, "", "GET", path, NULL, 0, j) != 200)
        return NULL;
    return json_string_value(json_object_get(*j, "state"));
}

static void test_migrate_then_bind(void **state)
{
    (void)state;
    const char *udid = "MIGRATED-UDID-0001";
    assert_int_equal(migrate("Authenticate", udid, TESTSERVER_API_KEY), 200);
    assert_int_equal(migrate("TokenUpdate", udid, TESTSERVER_API_KEY), 200);
    json_t *j = NULL;
    const char *st = device_state(udid, &j);
    assert_non_null(st);
    assert_string_equal(st, "active");
    assert_string_equal(json_string_value(json_object_get(j, "serial_number")), "C02MIGRATED1");
    json_decref(j);

    /* A command waits; the device comes with its own certificate (the old
     * server's CA is orchard's --client-ca here) and gets it. */
    const char *cmd = "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>"
                      "<key>Command</key><dict><key>RequestType</key><string>ProfileList</string></dict>"
                      "<key>CommandUUID</key><string>migrated-cmd-1</string></dict></plist>";
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/enqueue/MIGRATED-UDID-0001?nopush=1", cmd, strlen(cmd),
                                    NULL),
                     200);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testserver_device_identity(&srv, udid, &key, &cert), 0);
    devsim_t *d = devsim_new(srv.base_url, srv.ca_path, udid, key, cert, DEVSIM_AUTH_MTLS);
    devsim_reply_t r;
    assert_int_equal(devsim_idle(d, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(devsim_command_uuid(&r), "migrated-cmd-1");
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "MIGRATED-UDID-0001: migrated enrollment bound to certificate"));
    json_t *ev = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/MIGRATED-UDID-0001/events", NULL, 0, &ev), 200);
    int bound = 0, migrated = 0;
    json_t *e;
    size_t i;
    json_array_foreach(json_object_get(ev, "events"), i, e)
    {
        const char *k = json_string_value(json_object_get(e, "kind"));
        bound += k && strcmp(k, "certificate_bound") == 0;
        migrated += k && strcmp(k, "migrated") == 0;
    }
    json_decref(ev);
    assert_int_equal(bound, 1);
    assert_int_equal(migrated, 2);

    /* Bound now: another certificate from the same CA is refused. */
    EVP_PKEY *k2 = NULL;
    X509 *c2 = NULL;
    assert_int_equal(testserver_device_identity(&srv, udid, &k2, &c2), 0);
    devsim_t *other = devsim_new(srv.base_url, srv.ca_path, udid, k2, c2, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_idle(other, &r), 0);
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);

    /* That device's certificate cannot claim a second migrated UDID. */
    assert_int_equal(migrate("Authenticate", "MIGRATED-UDID-0002", TESTSERVER_API_KEY), 200);
    assert_int_equal(migrate("TokenUpdate", "MIGRATED-UDID-0002", TESTSERVER_API_KEY), 200);
    devsim_t *thief = devsim_new(srv.base_url, srv.ca_path, "MIGRATED-UDID-0002", key, cert, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_idle(thief, &r), 0);
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "is bound to another device"));

    devsim_free(thief);
    devsim_free(other);
    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
    EVP_PKEY_free(k2);
    X509_free(c2);
}

static void test_migration_refusals(void **state)
{
    (void)state;
    assert_int_equal(migrate("Authenticate", "MIGRATED-NOKEY-1", NULL), 401);
    assert_int_equal(migrate("Authenticate", "MIGRATED-NOKEY-1", "not-the-key-at-all"), 401);
    assert_true(testserver_log_contains(&srv, "migration: admin API key missing or wrong"));
    assert_int_equal(migrate("CheckOut", "MIGRATED-NOKEY-1", TESTSERVER_API_KEY), 400);
    assert_true(testserver_log_contains(&srv, "migration takes Authenticate and TokenUpdate check-ins, not 'CheckOut'"));
    assert_int_equal(migrate("TokenUpdate", "MIGRATED-NEVER-1", TESTSERVER_API_KEY), 400);
    assert_true(testserver_log_contains(&srv, "migration: TokenUpdate for MIGRATED-NEVER-1 before its Authenticate"));
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/MIGRATED-NOKEY-1", NULL, 0, &j), 404);
    json_decref(j);
    j = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/MIGRATED-NEVER-1", NULL, 0, &j), 404);
    json_decref(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_migrate_then_bind),
        cmocka_unit_test(test_migration_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
