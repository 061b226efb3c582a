/* Device identity behind a TLS-terminating proxy: the client certificate in
 * a configured header (nginx's URL-escaped PEM, or RFC 9440), honoured only
 * when configured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>

#include "devsim.h"
#include "testpki.h"
#include "testserver.h"
#include "util.h"

static testserver_t proxied; /* --insecure-http --client-cert-header X-Client-Cert */
static testserver_t direct;  /* default: TLS, no header configured */

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *args[] = {"--insecure-http", "--client-cert-header", "X-Client-Cert", NULL};
    if (testserver_start(&proxied, args) != 0)
        return -1;
    return testserver_start(&direct, NULL);
}

static int teardown(void **state)
{
    (void)state;
    int a = testserver_stop(&proxied);
    int b = testserver_stop(&direct);
    curl_global_cleanup();
    return a == 0 && b == 0 ? 0 : -1;
}

static const char *state_of(testserver_t *s, const char *udid)
{
    static char st[32];
    char *path = util_strdup_printf("/v1/devices/%s", udid);
    json_t *j = NULL;
    long code = testserver_api(s, "", "GET", path, NULL, 0, &j);
    free(path);
    snprintf(st, sizeof st, "%s", code == 200 ? json_string_value(json_object_get(j, "state")) : "absent");
    json_decref(j);
    return st;
}

static void enroll_through_header(int kind, const char *udid)
{
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testserver_device_identity(&proxied, udid, &key, &cert), 0);
    devsim_t *d = devsim_new(proxied.base_url, proxied.ca_path, udid, key, cert, DEVSIM_AUTH_HEADER);
    devsim_set_header(d, "X-Client-Cert", kind);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(devsim_token_update(d), 200);
    assert_string_equal(state_of(&proxied, udid), "active");
    devsim_reply_t r;
    devsim_idle(d, &r);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);
    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
}

static void test_escaped_pem_header(void **state)
{
    (void)state;
    enroll_through_header(0, "UDID-PROXY-PEM-1");
}

static void test_rfc9440_header(void **state)
{
    (void)state;
    enroll_through_header(1, "UDID-PROXY-9440-1");
}

static void test_malformed_and_untrusted_header(void **state)
{
    (void)state;
    const char *body = "<?xml version=\"1.0\"?><plist version=\"1.0\"><dict>"
                       "<key>MessageType</key><string>Authenticate</string>"
                       "<key>UDID</key><string>UDID-PROXY-BAD-1</string>"
                       "<key>Topic</key><string>t</string></dict></plist>";
    const char *bad_values[] = {":not base64!:", "%ZZ%41", "-----BEGIN CERTIFICATE-----garbage"};
    for (size_t i = 0; i < 3; i++) {
        CURL *c = curl_easy_init();
        char *url = util_strdup_printf("%s/mdm/checkin", proxied.base_url);
        char *h = util_strdup_printf("X-Client-Cert: %s", bad_values[i]);
        struct curl_slist *hl = curl_slist_append(NULL, h);
        FILE *devnull = fopen("/dev/null", "w");
        curl_easy_setopt(c, CURLOPT_URL, url);
        curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PUT");
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
        curl_easy_setopt(c, CURLOPT_WRITEDATA, devnull);
        assert_int_equal(curl_easy_perform(c), CURLE_OK);
        long st = 0;
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
        assert_int_equal(st, 401);
        fclose(devnull);
        curl_slist_free_all(hl);
        curl_easy_cleanup(c);
        free(url);
        free(h);
    }
    assert_true(testserver_log_contains(&proxied, "client certificate header X-Client-Cert"));
    assert_string_equal(state_of(&proxied, "UDID-PROXY-BAD-1"), "absent");

    /* A well-formed certificate from another CA in the header. */
    char dir[] = "/tmp/orchard-proxyca-XXXXXX";
    assert_non_null(mkdtemp(dir));
    assert_int_equal(testpki_make_ca(dir, "other"), 0);
    char *cp = util_strdup_printf("%s/other.pem", dir), *kp = util_strdup_printf("%s/other.key", dir);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testpki_issue_device_identity(cp, kp, "UDID-PROXY-BAD-2", &key, &cert), 0);
    devsim_t *d = devsim_new(proxied.base_url, proxied.ca_path, "UDID-PROXY-BAD-2", key, cert, DEVSIM_AUTH_HEADER);
    devsim_set_header(d, "X-Client-Cert", 0);
    assert_int_equal(devsim_authenticate(d), 401);
    assert_true(testserver_log_contains(&proxied, "(header X-Client-Cert) is not trusted"));
    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
    free(cp);
    free(kp);
    char *rm = util_strdup_printf("rm -rf %s", dir);
    assert_int_equal(system(rm), 0);
    free(rm);
}

static void test_header_ignored_when_not_configured(void **state)
{
    (void)state;
    /* The same header sent straight to a server without the option is not
     * an identity: anyone could set it. */
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    assert_int_equal(testserver_device_identity(&direct, "UDID-PROXY-IGNORED-1", &key, &cert), 0);
    devsim_t *d = devsim_new(direct.base_url, direct.ca_path, "UDID-PROXY-IGNORED-1", key, cert, DEVSIM_AUTH_HEADER);
    devsim_set_header(d, "X-Client-Cert", 0);
    assert_int_equal(devsim_authenticate(d), 401);
    assert_true(testserver_log_contains(&direct, "no client certificate"));
    assert_string_equal(state_of(&direct, "UDID-PROXY-IGNORED-1"), "absent");
    devsim_free(d);
    EVP_PKEY_free(key);
    X509_free(cert);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escaped_pem_header),
        cmocka_unit_test(test_rfc9440_header),
        cmocka_unit_test(test_malformed_and_untrusted_header),
        cmocka_unit_test(test_header_ignored_when_not_configured),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
