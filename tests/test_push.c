/* APNs push, end to end: a real orchard server pushing to the mock APNs
 * server (HTTP/2 + TLS with client certificates) running in this process;
 * devices simulated over HTTPS. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>

#include "devsim.h"
#include "mockapns.h"
#include "push.h"
#include "testpki.h"
#include "testserver.h"
#include "util.h"

#define TOPIC "com.apple.mgmt.External.orchard-test"

static testserver_t srv;
static mockapns_t *mock;
static char dir[64];
static char cert_path[128], key_path[128], ca_path[128], ca_key_path[128];

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
    devsim_t *d;
    unsigned char token[32];
    char hex[65];
    char magic[64];
    char udid[64];
} pdev_t;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* A device with its own push token (derived from n) and PushMagic. */
static void dev_make(pdev_t *d, const char *udid, int n, int token_update)
{
    memset(d, 0, sizeof *d);
    snprintf(d->udid, sizeof d->udid, "%s", udid);
    for (int i = 0; i < 32; i++)
        d->token[i] = (unsigned char)(n * 7 + i * 13 + 1);
    util_hex(d->token, 32, d->hex);
    snprintf(d->magic, sizeof d->magic, "MAGIC-%d-\"quoted\"", n);
    assert_int_equal(testserver_device_identity(&srv, udid, &d->key, &d->cert), 0);
    d->d = devsim_new(srv.base_url, srv.ca_path, udid, d->key, d->cert, DEVSIM_AUTH_MTLS);
    assert_non_null(d->d);
    assert_int_equal(devsim_authenticate(d->d), 200);
    if (token_update)
        assert_int_equal(devsim_token_update_with(d->d, d->token, 32, d->magic), 200);
}

static void dev_free(pdev_t *d)
{
    devsim_free(d->d);
    EVP_PKEY_free(d->key);
    X509_free(d->cert);
}

static long enqueue(const char *ids, const char *uuid, json_t **out)
{
    char xml[512];
    snprintf(xml, sizeof xml,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict><key>Command</key><dict>"
             "<key>RequestType</key><string>DeviceInformation</string></dict><key>CommandUUID</key><string>%s"
             "</string></dict></plist>",
             uuid);
    char *path = util_strdup_printf("/v1/enqueue/%s", ids);
    long st = testserver_api(&srv, "", "PUT", path, xml, strlen(xml), out);
    free(path);
    return st;
}

/* The per-id entry of an enqueue/push answer. */
static const char *entry_str(json_t *j, const char *id, const char *key)
{
    return json_string_value(json_object_get(json_object_get(json_object_get(j, "status"), id), key));
}

static json_t *device(const char *udid)
{
    char *path = util_strdup_printf("/v1/devices/%s", udid);
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, &j), 200);
    free(path);
    return j;
}

/* Waits until the device's recorded push outcome satisfies `want` (outcomes
 * are written by the push thread in batches). */
static json_t *device_when(const char *udid, const char *field, int want_non_null)
{
    for (int i = 0; i < 100; i++) {
        json_t *j = device(udid);
        json_t *v = json_object_get(j, field);
        if (want_non_null ? !json_is_null(v) && v : (!v || json_is_null(v)))
            return j;
        json_decref(j);
        sleep_ms(50);
    }
    return device(udid);
}

static json_t *push_status(void)
{
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/push-status", NULL, 0, &j), 200);
    return j;
}

static int start_server(testserver_t *s, const char *cert, const char *key)
{
    const char *args[] = {"--push-cert", cert, "--push-key", key, "--apns-url", mockapns_url(mock), "--apns-ca",
                          mockapns_server_ca(mock), "--push-coalesce-ms", "300", "--push-timeout", "2",
                          "--push-attempts", "3",
                          /* One lane: the tests assert multiplexing on one connection. */
                          "--push-threads", "1", NULL};
    return testserver_start(s, args);
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    snprintf(dir, sizeof dir, "/tmp/orchard-push-XXXXXX");
    if (!mkdtemp(dir) || testpki_make_ca(dir, "pushca") != 0)
        return -1;
    snprintf(ca_path, sizeof ca_path, "%s/pushca.pem", dir);
    snprintf(ca_key_path, sizeof ca_key_path, "%s/pushca.key", dir);
    snprintf(cert_path, sizeof cert_path, "%s/push.pem", dir);
    snprintf(key_path, sizeof key_path, "%s/push.key", dir);
    if (testpki_issue_push_cert(ca_path, ca_key_path, TOPIC, 0, cert_path, key_path) != 0)
        return -1;
    if (!(mock = mockapns_start(dir, ca_path)))
        return -1;
    return start_server(&srv, cert_path, key_path);
}

static int teardown(void **state)
{
    (void)state;
    int rc = testserver_stop(&srv);
    mockapns_stop(mock);
    char *cmd = util_strdup_printf("rm -rf '%s'", dir);
    if (system(cmd) != 0)
        rc = -1;
    free(cmd);
    curl_global_cleanup();
    return rc == 0 ? 0 : -1;
}

/* ---- tests ----------------------------------------------------------------------- */

#define FANOUT 20

/* Enqueue to many devices: exactly one correct push each, all multiplexed
 * on one connection, authenticated with the push certificate. */
static void test_fanout(void **state)
{
    (void)state;
    mockapns_reset(mock);
    static pdev_t d[FANOUT];
    char ids[FANOUT * 40] = "";
    for (int i = 0; i < FANOUT; i++) {
        char udid[32];
        snprintf(udid, sizeof udid, "PUSH-FAN-%02d", i);
        dev_make(&d[i], udid, i, 1);
        strcat(ids, i ? "," : "");
        strcat(ids, udid);
    }
    json_t *j = NULL;
    int64_t before = util_now();
    assert_int_equal(enqueue(ids, "CMD-FAN-1", &j), 200);
    for (int i = 0; i < FANOUT; i++)
        assert_string_equal(entry_str(j, d[i].udid, "push_result"), "queued");
    json_decref(j);
    assert_int_equal(mockapns_wait(mock, FANOUT, 10000), 0);
    sleep_ms(800); /* anything extra would have arrived by now */
    assert_int_equal(mockapns_count(mock), FANOUT);
    for (int i = 0; i < FANOUT; i++)
        assert_int_equal(mockapns_count_token(mock, d[i].hex), 1);
    for (size_t k = 0; k < FANOUT; k++) {
        mockapns_req_t r;
        assert_int_equal(mockapns_get(mock, k, &r), 0);
        assert_string_equal(r.method, "POST");
        assert_string_equal(r.topic, TOPIC);
        assert_string_equal(r.push_type, "mdm");
        assert_string_equal(r.priority, "10");
        assert_string_equal(r.client_uid, TOPIC);
        long long exp = atoll(r.expiration);
        assert_true(exp >= before + 86400 - 5 && exp <= util_now() + 86400 + 5);
        int which = -1;
        for (int i = 0; i < FANOUT; i++) {
            char path[128];
            snprintf(path, sizeof path, "/3/device/%s", d[i].hex);
            if (strcmp(r.path, path) == 0)
                which = i;
        }
        assert_true(which >= 0);
        /* The whole payload, JSON-escaped PushMagic, nothing else. */
        char body[128];
        snprintf(body, sizeof body, "{\"mdm\":\"MAGIC-%d-\\\"quoted\\\"\"}", which);
        assert_string_equal(r.body, body);
        assert_int_equal(r.conn, 1);
    }
    assert_int_equal(mockapns_connections(mock), 1);

    j = device_when(d[0].udid, "last_push_id", 1);
    assert_non_null(json_string_value(json_object_get(j, "last_push_id")));
    assert_non_null(json_string_value(json_object_get(j, "last_push_at")));
    assert_true(json_is_null(json_object_get(j, "last_push_error")));
    assert_false(json_is_true(json_object_get(j, "push_token_invalid")));
    char *dump = json_dumps(j, 0);
    assert_null(strstr(dump, "MAGIC")); /* PushMagic stays secret */
    free(dump);
    json_decref(j);
    assert_false(testserver_log_contains(&srv, "MAGIC-"));
    assert_false(testserver_log_contains(&srv, d[0].hex));
    for (int i = 0; i < FANOUT; i++)
        dev_free(&d[i]);
}

/* Several commands in the coalescing window: one push. */
static void test_coalescing(void **state)
{
    (void)state;
    mockapns_reset(mock);
    pdev_t d;
    dev_make(&d, "PUSH-COALESCE", 100, 1);
    for (int i = 0; i < 5; i++) {
        char uuid[32];
        snprintf(uuid, sizeof uuid, "CMD-COAL-%d", i);
        json_t *j = NULL;
        assert_int_equal(enqueue("PUSH-COALESCE", uuid, &j), 200);
        assert_string_equal(entry_str(j, "PUSH-COALESCE", "push_result"), "queued");
        json_decref(j);
    }
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/PUSH-COALESCE", NULL, 0, &j), 200);
    assert_string_equal(entry_str(j, "PUSH-COALESCE", "push_result"), "queued");
    json_decref(j);
    assert_int_equal(mockapns_wait(mock, 1, 5000), 0);
    sleep_ms(900);
    assert_int_equal(mockapns_count_token(mock, d.hex), 1);
    /* After the window a new request is a new push. */
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/PUSH-COALESCE", NULL, 0, NULL), 200);
    assert_int_equal(mockapns_wait(mock, 2, 5000), 0);
    assert_int_equal(mockapns_count_token(mock, d.hex), 2);
    dev_free(&d);
}

/* 410 Unregistered or 400 BadDeviceToken: token marked invalid, no push
 * until TokenUpdate, then pushes resume. */
static void invalid_token_case(mockapns_action_t action, const char *udid, int n, const char *reason)
{
    mockapns_reset(mock);
    pdev_t d;
    dev_make(&d, udid, n, 1);
    mockapns_script(mock, d.hex, action, 1);
    char push_path[128];
    snprintf(push_path, sizeof push_path, "/v1/push/%s", udid);
    assert_int_equal(testserver_api(&srv, "", "POST", push_path, NULL, 0, NULL), 200);
    assert_int_equal(mockapns_wait(mock, 1, 5000), 0);
    json_t *j = NULL;
    for (int i = 0; i < 100; i++) {
        json_decref(j);
        j = device(udid);
        if (json_is_true(json_object_get(j, "push_token_invalid")))
            break;
        sleep_ms(50);
    }
    assert_true(json_is_true(json_object_get(j, "push_token_invalid")));
    assert_non_null(strstr(json_string_value(json_object_get(j, "last_push_error")), reason));
    json_decref(j);

    char cmd_uuid[64];
    snprintf(cmd_uuid, sizeof cmd_uuid, "CMD-INV-%d", n);
    assert_int_equal(enqueue(udid, cmd_uuid, &j), 200);
    assert_non_null(strstr(entry_str(j, udid, "push_error"), "push token invalid"));
    json_decref(j);
    sleep_ms(600);
    assert_int_equal(mockapns_count_token(mock, d.hex), 1);

    char events_path[128];
    snprintf(events_path, sizeof events_path, "/v1/devices/%s/events", udid);
    assert_int_equal(testserver_api(&srv, "", "GET", events_path, NULL, 0, &j), 200);
    char *dump = json_dumps(j, 0);
    assert_non_null(strstr(dump, "push_token_invalid"));
    free(dump);
    json_decref(j);

    /* A new TokenUpdate makes the token usable again. */
    assert_int_equal(devsim_token_update_with(d.d, d.token, 32, d.magic), 200);
    j = device(udid);
    assert_false(json_is_true(json_object_get(j, "push_token_invalid")));
    json_decref(j);
    snprintf(cmd_uuid, sizeof cmd_uuid, "CMD-INV-%d-b", n);
    assert_int_equal(enqueue(udid, cmd_uuid, &j), 200);
    assert_string_equal(entry_str(j, udid, "push_result"), "queued");
    json_decref(j);
    assert_int_equal(mockapns_wait(mock, 2, 5000), 0);
    assert_int_equal(mockapns_count_token(mock, d.hex), 2);
    j = device_when(udid, "last_push_error", 0);
    assert_true(json_is_null(json_object_get(j, "last_push_error")));
    json_decref(j);
    dev_free(&d);
}

static void test_unregistered(void **state)
{
    (void)state;
    invalid_token_case(MOCKAPNS_UNREGISTERED, "PUSH-GONE-410", 200, "Unregistered");
}

static void test_bad_device_token(void **state)
{
    (void)state;
    invalid_token_case(MOCKAPNS_BAD_TOKEN, "PUSH-BAD-400", 201, "BadDeviceToken");
}

/* Answers that deserve another try, each followed by success. */
static void retry_case(const char *udid, int n, mockapns_action_t first, mockapns_action_t second)
{
    mockapns_reset(mock);
    pdev_t d;
    dev_make(&d, udid, n, 1);
    mockapns_script(mock, d.hex, first, 1);
    mockapns_script(mock, d.hex, second, 1);
    char *path = util_strdup_printf("/v1/push/%s", udid);
    assert_int_equal(testserver_api(&srv, "", "POST", path, NULL, 0, NULL), 200);
    free(path);
    assert_int_equal(mockapns_wait(mock, 3, 12000), 0);
    json_t *j = device_when(udid, "last_push_id", 1);
    assert_non_null(json_string_value(json_object_get(j, "last_push_id")));
    assert_true(json_is_null(json_object_get(j, "last_push_error")));
    json_decref(j);
    sleep_ms(500);
    assert_int_equal(mockapns_count_token(mock, d.hex), 3);
    dev_free(&d);
}

static void test_retry_429_500(void **state)
{
    (void)state;
    retry_case("PUSH-RETRY-1", 300, MOCKAPNS_TOO_MANY, MOCKAPNS_SERVER_ERROR);
}

static void test_retry_close_garbage(void **state)
{
    (void)state;
    retry_case("PUSH-RETRY-2", 301, MOCKAPNS_CLOSE, MOCKAPNS_GARBAGE);
}

static void test_retry_stall_503(void **state)
{
    (void)state;
    retry_case("PUSH-RETRY-3", 302, MOCKAPNS_STALL, MOCKAPNS_UNAVAILABLE);
}

/* Bounded retries: after --push-attempts the push is reported, not lost. */
static void test_give_up(void **state)
{
    (void)state;
    mockapns_reset(mock);
    pdev_t d;
    dev_make(&d, "PUSH-GIVEUP", 400, 1);
    mockapns_script(mock, d.hex, MOCKAPNS_SERVER_ERROR, -1);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/PUSH-GIVEUP", NULL, 0, NULL), 200);
    assert_int_equal(mockapns_wait(mock, 3, 10000), 0);
    json_t *j = device_when("PUSH-GIVEUP", "last_push_error", 1);
    const char *err = json_string_value(json_object_get(j, "last_push_error"));
    assert_non_null(err);
    assert_non_null(strstr(err, "500"));
    assert_non_null(strstr(err, "gave up after 3 attempts"));
    assert_false(json_is_true(json_object_get(j, "push_token_invalid")));
    json_decref(j);
    sleep_ms(1500);
    assert_int_equal(mockapns_count_token(mock, d.hex), 3);
    assert_true(testserver_log_contains(&srv, "PUSH-GIVEUP: giving up after 3 attempts"));
    dev_free(&d);
}

/* No TokenUpdate yet, or an unknown id: reported per id. */
static void test_no_token(void **state)
{
    (void)state;
    mockapns_reset(mock);
    pdev_t d;
    dev_make(&d, "PUSH-NOTOKEN", 500, 0);
    json_t *j = NULL;
    assert_int_equal(enqueue("PUSH-NOTOKEN", "CMD-NOTOKEN", &j), 200);
    assert_non_null(strstr(entry_str(j, "PUSH-NOTOKEN", "push_error"), "no push token"));
    json_decref(j);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/PUSH-NOTOKEN,PUSH-NOBODY", NULL, 0, &j), 200);
    assert_non_null(strstr(entry_str(j, "PUSH-NOTOKEN", "push_error"), "no push token"));
    assert_string_equal(entry_str(j, "PUSH-NOBODY", "push_error"), "unknown enrollment");
    json_decref(j);
    sleep_ms(500);
    assert_int_equal(mockapns_count(mock), 0);
    dev_free(&d);
}

/* APNs refuses the certificate (403): the topic is reported rejected, pushes
 * say why; a new certificate (rotation, no restart) makes it work again. */
static void test_forbidden_then_rotation(void **state)
{
    (void)state;
    mockapns_reset(mock);
    pdev_t d;
    dev_make(&d, "PUSH-FORBID", 600, 1);
    mockapns_script(mock, d.hex, MOCKAPNS_FORBIDDEN, 1);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/PUSH-FORBID", NULL, 0, NULL), 200);
    assert_int_equal(mockapns_wait(mock, 1, 5000), 0);
    json_t *j = device_when("PUSH-FORBID", "last_push_error", 1);
    assert_non_null(strstr(json_string_value(json_object_get(j, "last_push_error")), "BadCertificate"));
    json_decref(j);
    j = push_status();
    json_t *t = json_array_get(json_object_get(j, "topics"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "state")), "rejected");
    assert_string_equal(json_string_value(json_object_get(t, "topic")), TOPIC);
    assert_non_null(strstr(json_string_value(json_object_get(t, "error")), "403"));
    json_decref(j);
    assert_true(testserver_log_contains(&srv, "BadCertificate"));
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/PUSH-FORBID", NULL, 0, &j), 200);
    assert_non_null(strstr(entry_str(j, "PUSH-FORBID", "push_error"), "refused"));
    json_decref(j);

    /* Rotate: write the new pair elsewhere, then rename over (atomic). */
    char tmp_cert[160], tmp_key[160];
    snprintf(tmp_cert, sizeof tmp_cert, "%s/new.pem", dir);
    snprintf(tmp_key, sizeof tmp_key, "%s/new.key", dir);
    assert_int_equal(testpki_issue_push_cert(ca_path, ca_key_path, TOPIC, 0, tmp_cert, tmp_key), 0);
    assert_int_equal(rename(tmp_key, key_path), 0);
    assert_int_equal(rename(tmp_cert, cert_path), 0);
    int ready = 0;
    for (int i = 0; i < 60 && !ready; i++) {
        sleep_ms(100);
        j = push_status();
        t = json_array_get(json_object_get(j, "topics"), 0);
        ready = strcmp(json_string_value(json_object_get(t, "state")), "ready") == 0;
        json_decref(j);
    }
    assert_true(ready);
    assert_true(testserver_log_contains(&srv, "certificate reloaded"));
    int conns = mockapns_connections(mock);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/push/PUSH-FORBID", NULL, 0, &j), 200);
    assert_string_equal(entry_str(j, "PUSH-FORBID", "push_result"), "queued");
    json_decref(j);
    assert_int_equal(mockapns_wait(mock, 2, 5000), 0);
    /* The new certificate needs its own TLS connection. */
    assert_true(mockapns_connections(mock) > conns);
    j = device_when("PUSH-FORBID", "last_push_error", 0);
    assert_true(json_is_null(json_object_get(j, "last_push_error")));
    json_decref(j);
    dev_free(&d);
}

/* An expired push certificate: clear error at startup, in the status and
 * per push; nothing is sent. */
static void test_expired_certificate(void **state)
{
    (void)state;
    char c[160], k[160];
    snprintf(c, sizeof c, "%s/expired.pem", dir);
    snprintf(k, sizeof k, "%s/expired.key", dir);
    assert_int_equal(testpki_issue_push_cert(ca_path, ca_key_path, TOPIC, 1, c, k), 0);
    testserver_t s2;
    assert_int_equal(start_server(&s2, c, k), 0);
    mockapns_reset(mock);
    assert_true(testserver_log_contains(&s2, "expired on"));
    json_t *j = NULL;
    assert_int_equal(testserver_api(&s2, "", "GET", "/v1/push-status", NULL, 0, &j), 200);
    json_t *t = json_array_get(json_object_get(j, "topics"), 0);
    assert_string_equal(json_string_value(json_object_get(t, "state")), "expired");
    assert_non_null(strstr(json_string_value(json_object_get(t, "error")), "expired"));
    json_decref(j);

    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testserver_device_identity(&s2, "PUSH-EXPIRED", &key, &cert), 0);
    devsim_t *d = devsim_new(s2.base_url, s2.ca_path, "PUSH-EXPIRED", key, cert, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(devsim_token_update(d), 200);
    assert_int_equal(testserver_api(&s2, "", "POST", "/v1/push/PUSH-EXPIRED", NULL, 0, &j), 200);
    assert_non_null(strstr(entry_str(j, "PUSH-EXPIRED", "push_error"), "expired"));
    json_decref(j);
    sleep_ms(300);
    assert_int_equal(mockapns_count(mock), 0);
    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
    assert_int_equal(testserver_stop(&s2), 0);
}

/* A certificate APNs does not trust (another CA): the TLS handshake fails
 * with an alert, reported as a rejected certificate. */
static void test_untrusted_certificate(void **state)
{
    (void)state;
    char c[160], k[160], oca[160], ocak[160];
    assert_int_equal(testpki_make_ca(dir, "otherca"), 0);
    snprintf(oca, sizeof oca, "%s/otherca.pem", dir);
    snprintf(ocak, sizeof ocak, "%s/otherca.key", dir);
    snprintf(c, sizeof c, "%s/other.pem", dir);
    snprintf(k, sizeof k, "%s/other.key", dir);
    assert_int_equal(testpki_issue_push_cert(oca, ocak, TOPIC, 0, c, k), 0);
    testserver_t s2;
    assert_int_equal(start_server(&s2, c, k), 0);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testserver_device_identity(&s2, "PUSH-UNTRUSTED", &key, &cert), 0);
    devsim_t *d = devsim_new(s2.base_url, s2.ca_path, "PUSH-UNTRUSTED", key, cert, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(devsim_token_update(d), 200);
    json_t *j = NULL;
    assert_int_equal(testserver_api(&s2, "", "POST", "/v1/push/PUSH-UNTRUSTED", NULL, 0, &j), 200);
    assert_string_equal(entry_str(j, "PUSH-UNTRUSTED", "push_result"), "queued");
    json_decref(j);
    j = NULL;
    const char *state_s = "";
    for (int i = 0; i < 100; i++) {
        sleep_ms(100);
        json_decref(j);
        assert_int_equal(testserver_api(&s2, "", "GET", "/v1/push-status", NULL, 0, &j), 200);
        state_s = json_string_value(json_object_get(json_array_get(json_object_get(j, "topics"), 0), "state"));
        if (strcmp(state_s, "rejected") == 0)
            break;
    }
    assert_string_equal(state_s, "rejected");
    json_decref(j);
    assert_true(testserver_log_contains(&s2, "TLS handshake"));
    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
    assert_int_equal(testserver_stop(&s2), 0);
}

/* Regression: thousands of pushes in a burst stay on one connection with no
 * retry and exactly one request each. libcurl 7.88 sends RST_STREAM after
 * every finished stream; the mock's nghttp2 used to count those as a
 * "rapid reset" attack and send GOAWAY INTERNAL_ERROR about every 1000
 * pushes (refused streams, retries, duplicates). Drives the provider
 * directly (no devices needed: outcomes for unknown ids are skipped). */
#define BURST 2500

static void test_burst_one_connection(void **state)
{
    (void)state;
    mockapns_reset(mock);
    char db[160];
    snprintf(db, sizeof db, "sqlite:%s/burst.db", dir);
    const char *certs[] = {cert_path}, *keys[] = {key_path};
    pusher_opts_t o = {.db_url = db,
                       .cert_paths = certs,
                       .key_paths = keys,
                       .ntopics = 1,
                       .base_url = mockapns_url(mock),
                       .ca_file = mockapns_server_ca(mock),
                       .expiration_s = 60,
                       .timeout_s = 10,
                       .attempts = 3,
                       .threads = 1};
    pusher_t *p = pusher_new(&o);
    assert_non_null(p);
    enrollment_t e;
    memset(&e, 0, sizeof e);
    unsigned char token[32];
    char id[32];
    e.id = id;
    e.topic = TOPIC;
    e.push_token = token;
    e.push_token_len = sizeof token;
    e.push_magic = "MAGIC-BURST";
    /* One push first: once the connection's SETTINGS (1000 streams) are
     * known, the whole burst shares it (before that, curl opens up to its
     * host limit of connections). */
    char err[256];
    snprintf(id, sizeof id, "BURST-WARMUP");
    memset(token, 0xee, sizeof token);
    assert_int_equal(pusher_push(p, &e, err, sizeof err), 0);
    assert_int_equal(mockapns_wait(mock, 1, 10000), 0);
    for (int i = 0; i < BURST; i++) {
        snprintf(id, sizeof id, "BURST-%05d", i);
        for (int k = 0; k < 32; k++)
            token[k] = (unsigned char)(i >> (k % 2 * 8)) ^ (unsigned char)k;
        assert_int_equal(pusher_push(p, &e, err, sizeof err), 0);
    }
    pusher_stats_t st;
    for (int i = 0; i < 600; i++) {
        pusher_stats(p, &st);
        if (st.accepted + st.failed >= BURST + 1)
            break;
        sleep_ms(50);
    }
    assert_int_equal(st.accepted, BURST + 1);
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.retried, 0);
    assert_int_equal(mockapns_count(mock), BURST + 1);
    assert_int_equal(mockapns_connections(mock), 1);
    pusher_free(p);
}

/* Whether GET /v1/devices?silent=... lists this id. */
static int listed(testserver_t *s, const char *silent, const char *id)
{
    char *path = util_strdup_printf("/v1/devices?silent=%s&limit=1000", silent);
    json_t *j = NULL;
    long st = testserver_api(s, "", "GET", path, NULL, 0, &j);
    free(path);
    int found = 0;
    json_t *devs = json_object_get(j, "devices");
    for (size_t i = 0; st == 200 && i < json_array_size(devs); i++)
        found |= strcmp(json_string_value(json_object_get(json_array_get(devs, i), "id")), id) == 0;
    json_decref(j);
    return found;
}

/* Inactive devices (issue item 5): with intervals in seconds, a device that
 * stays silent is pushed again after --repush-after (at most once per
 * interval), flagged inactive after --inactive-after (filter, event), and
 * un-flagged when it polls again; the server still stops cleanly. */
static void test_inactive_sweep(void **state)
{
    (void)state;
    mockapns_reset(mock);
    const char *args[] = {"--push-cert", cert_path, "--push-key", key_path, "--apns-url", mockapns_url(mock),
                          "--apns-ca", mockapns_server_ca(mock), "--push-coalesce-ms", "0", "--push-threads", "1",
                          "--repush-after", "2s", "--inactive-after", "4s", NULL};
    testserver_t s3;
    assert_int_equal(testserver_start(&s3, args), 0);
    const char *udid = "PUSH-SILENT";
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testserver_device_identity(&s3, udid, &key, &cert), 0);
    devsim_t *d = devsim_new(s3.base_url, s3.ca_path, udid, key, cert, DEVSIM_AUTH_MTLS);
    assert_non_null(d);
    unsigned char token[32];
    char hex[65];
    for (int i = 0; i < 32; i++)
        token[i] = (unsigned char)(0xa0 + i);
    util_hex(token, 32, hex);
    assert_int_equal(devsim_authenticate(d), 200);
    int64_t t0 = util_now();
    assert_int_equal(devsim_token_update_with(d, token, 32, "MAGIC-SILENT"), 200);

    /* Re-pushed once silent for 2 s, not before. */
    assert_int_equal(mockapns_wait(mock, 1, 15000), 0);
    int64_t first = util_now();
    assert_true(first - t0 >= 2);
    assert_int_equal(mockapns_count_token(mock, hex), 1);
    mockapns_req_t r;
    assert_int_equal(mockapns_get(mock, 0, &r), 0);
    assert_string_equal(r.body, "{\"mdm\":\"MAGIC-SILENT\"}");
    assert_string_equal(r.topic, TOPIC);

    /* Flagged inactive after 4 s: filter, fields, event. */
    int flagged = 0;
    for (int i = 0; i < 150 && !flagged; i++) {
        flagged = listed(&s3, "1", udid);
        if (!flagged)
            sleep_ms(100);
    }
    assert_true(flagged);
    assert_true(util_now() - t0 >= 4);
    assert_false(listed(&s3, "0", udid));
    json_t *j = NULL;
    assert_int_equal(testserver_api(&s3, "", "GET", "/v1/devices/PUSH-SILENT", NULL, 0, &j), 200);
    assert_true(json_is_true(json_object_get(j, "silent")));
    assert_non_null(json_string_value(json_object_get(j, "silent_since")));
    assert_non_null(json_string_value(json_object_get(j, "last_repush_at")));
    assert_string_equal(json_string_value(json_object_get(j, "state")), "active");
    json_decref(j);
    assert_int_equal(testserver_api(&s3, "", "GET", "/v1/devices/PUSH-SILENT/events", NULL, 0, &j), 200);
    char *dump = json_dumps(j, 0);
    assert_non_null(strstr(dump, "marked_inactive"));
    free(dump);
    json_decref(j);
    assert_int_equal(testserver_api(&s3, "", "GET", "/v1/devices?silent=yes", NULL, 0, NULL), 400);

    /* At most one re-push per 2 s interval while silent. */
    int64_t elapsed = util_now() - first;
    size_t pushes = mockapns_count_token(mock, hex);
    assert_true(pushes >= 1 && pushes <= (size_t)(elapsed / 2 + 1));

    /* The device polls: heard from, no longer flagged. */
    devsim_reply_t reply;
    assert_int_equal(devsim_idle(d, &reply), 0);
    assert_int_equal(reply.status, 200);
    devsim_reply_free(&reply);
    assert_false(listed(&s3, "1", udid));
    assert_true(listed(&s3, "0", udid));
    assert_true(testserver_log_contains(&s3, "pushed again"));
    assert_true(testserver_log_contains(&s3, "flagged inactive"));
    assert_false(testserver_log_contains(&s3, "MAGIC-SILENT"));

    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
    assert_int_equal(testserver_stop(&s3), 0); /* SIGTERM mid-sweep-wait: clean exit, no leaks */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fanout),
        cmocka_unit_test(test_burst_one_connection),
        cmocka_unit_test(test_coalescing),
        cmocka_unit_test(test_unregistered),
        cmocka_unit_test(test_bad_device_token),
        cmocka_unit_test(test_retry_429_500),
        cmocka_unit_test(test_retry_close_garbage),
        cmocka_unit_test(test_retry_stall_503),
        cmocka_unit_test(test_give_up),
        cmocka_unit_test(test_no_token),
        cmocka_unit_test(test_expired_certificate),
        cmocka_unit_test(test_untrusted_certificate),
        cmocka_unit_test(test_forbidden_then_rotation),
        cmocka_unit_test(test_inactive_sweep),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
