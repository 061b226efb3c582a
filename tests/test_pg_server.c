/* Integration on PostgreSQL: a real `orchard serve --db postgres://...`
 * runs the core device flow (Authenticate, TokenUpdate, enqueue, Idle,
 * Acknowledged) over HTTPS with real certificates, and refuses to start,
 * saying why and never echoing the password, on a wrong password, an
 * unreachable server or a database from a newer orchard.
 *
 * Needs ORCHARD_TEST_DB=postgres://... (tests/run.sh sets it); each test
 * skips itself otherwise. */
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
#include <libpq-fe.h>

#include "devsim.h"
#include "plist.h"
#include "store.h"
#include "testserver.h"
#include "util.h"

static const char *test_url(void)
{
    const char *u = getenv("ORCHARD_TEST_DB");
    return u && strncmp(u, "postgres", 8) == 0 ? u : NULL;
}

#define NEED_PG()                                                                                  \
    do {                                                                                           \
        if (!test_url())                                                                           \
            skip();                                                                                \
    } while (0)

static const char *json_str(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v ? v : "";
}

static void test_core_device_flow(void **state)
{
    (void)state;
    NEED_PG();
    char hex[9], udid[64], uuid[64];
    assert_int_equal(util_random_hex(hex, 4), 0);
    snprintf(udid, sizeof udid, "PG-UDID-%s", hex);
    snprintf(uuid, sizeof uuid, "PG-CMD-%s", hex);

    testserver_t srv;
    const char *args[] = {"--db", test_url(), NULL};
    assert_int_equal(testserver_start(&srv, args), 0);

    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testserver_device_identity(&srv, udid, &key, &cert), 0);
    devsim_t *d = devsim_new(srv.base_url, srv.ca_path, udid, key, cert, DEVSIM_AUTH_MTLS);
    assert_non_null(d);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(devsim_token_update(d), 200);

    size_t len;
    char *xml = testserver_command_xml(uuid, "DeviceInformation", NULL, &len);
    char *path = util_strdup_printf("/v1/enqueue/%s?nopush=1", udid);
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "PUT", path, xml, len, &j), 200);
    assert_string_equal(json_str(j, "command_uuid"), uuid);
    json_decref(j);
    free(path);
    free(xml);

    devsim_reply_t r;
    assert_int_equal(devsim_idle(d, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(devsim_command_uuid(&r), uuid);
    devsim_reply_free(&r);
    assert_int_equal(devsim_report(d, uuid, "Acknowledged", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, 0); /* nothing more queued */
    devsim_reply_free(&r);

    path = util_strdup_printf("/v1/devices/%s", udid);
    assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, &j), 200);
    assert_string_equal(json_str(j, "state"), "active");
    json_decref(j);
    free(path);
    path = util_strdup_printf("/v1/commands/%s", uuid);
    assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, &j), 200);
    assert_string_equal(json_str(json_array_get(json_object_get(j, "targets"), 0), "status"), "Acknowledged");
    json_decref(j);
    free(path);

    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
    assert_int_equal(testserver_stop(&srv), 0);

    /* It is in the database, as another instance would see it. */
    store_t *s = store_open(test_url(), NULL);
    assert_non_null(s);
    enrollment_t e;
    assert_int_equal(s->ops->enrollment_get(s, udid, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    assert_non_null(e.push_token);
    enrollment_free(&e);
    store_close(s);
}

/* The server must not start; its log names the reason and never the
 * secret. */
static void assert_start_refused(const char *db_url, const char *reason, const char *secret)
{
    testserver_t srv;
    const char *args[] = {"--db", db_url, NULL};
    int64_t t0 = util_now_us();
    assert_int_not_equal(testserver_start(&srv, args), 0);
    assert_true(util_now_us() - t0 < 20 * 1000 * 1000);
    if (!testserver_log_contains(&srv, reason))
        fprintf(stderr, "server log lacks \"%s\" (%s)\n", reason, srv.log_path);
    assert_true(testserver_log_contains(&srv, "cannot open database"));
    assert_true(testserver_log_contains(&srv, reason));
    if (secret)
        assert_false(testserver_log_contains(&srv, secret));
    testserver_remove_dir(&srv);
}

static void test_start_refused_on_wrong_password(void **state)
{
    (void)state;
    NEED_PG();
    const char *u = test_url();
    const char *colon = strchr(strstr(u, "://") + 3, ':');
    const char *at = strchr(u, '@');
    assert_non_null(colon);
    assert_non_null(at);
    char *bad = util_strdup_printf("%.*sWrong-Pass-77%s", (int)(colon + 1 - u), u, at);
    assert_start_refused(bad, "password authentication failed", "Wrong-Pass-77");
    free(bad);
}

static void test_start_refused_when_unreachable(void **state)
{
    (void)state;
    NEED_PG();
    assert_start_refused("postgres://orchard:Secret-PW-88@127.0.0.1:1/orchard", "cannot connect to PostgreSQL",
                         "Secret-PW-88");
}

static void test_start_refused_on_newer_schema(void **state)
{
    (void)state;
    NEED_PG();
    char hex[17], sql[160];
    assert_int_equal(util_random_hex(hex, 8), 0);
    PGconn *admin = PQconnectdb(test_url());
    assert_int_equal(PQstatus(admin), CONNECTION_OK);
    snprintf(sql, sizeof sql, "CREATE DATABASE orchard_srv_%s", hex);
    PQclear(PQexec(admin, sql));
    const char *slash = strrchr(test_url(), '/');
    char *url = util_strdup_printf("%.*s/orchard_srv_%s", (int)(slash - test_url()), test_url(), hex);

    store_t *s = store_open(url, NULL); /* migrate it to this version */
    assert_non_null(s);
    store_close(s);
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PGresult *r = PQexec(c, "INSERT INTO schema_version (version) VALUES (1000)");
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);

    assert_start_refused(url, "newer than this orchard supports", NULL);

    snprintf(sql, sizeof sql, "DROP DATABASE orchard_srv_%s WITH (FORCE)", hex);
    r = PQexec(admin, sql);
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(admin);
    free(url);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    curl_global_cleanup();
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_core_device_flow),
        cmocka_unit_test(test_start_refused_on_wrong_password),
        cmocka_unit_test(test_start_refused_when_unreachable),
        cmocka_unit_test(test_start_refused_on_newer_schema),
    };
    return cmocka_run_group_tests_name("pg_server", tests, setup, teardown);
}
