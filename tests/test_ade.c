/* Automated Device Enrollment end to end: OAuth signing against RFC 5849,
 * sealing, then a real `orchard serve` talking HTTPS to the DEP simulator
 * (tests/support/depsim.c): key pair → token import (good, wrong recipient,
 * garbage) → account → fetch with pagination → sync (add, modify, delete,
 * duplicates) → cursor errors → session rotation and 401 → T_C_NOT_SIGNED →
 * 429/5xx retries → malformed answers → profiles → default profile → device
 * refresh, disown → CLI; then the background sync with two instances on one
 * database (only the lease holder syncs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ade_oauth.h"
#include "seal.h"
#include "ade_time.h"
#include "depsim.h"
#include "testserver.h"
#include "util.h"

static testserver_t srv;
static depsim_t *sim;
static char sim_dir[64];
static char profile_uuid[64];

/* ---- helpers ---------------------------------------------------------------------------- */

static long api(const char *method, const char *path, const char *body, json_t **out)
{
    return testserver_api(&srv, "", method, path, body, body ? strlen(body) : 0, out);
}

/* Runs `orchard ARGS` (output captured, heap) against srv. */
static int run_cli(const char *args, char **out)
{
    char outpath[] = "/tmp/orchard-ade-cli-XXXXXX";
    int fd = mkstemp(outpath);
    assert_true(fd >= 0);
    close(fd);
    char *cmd = util_strdup_printf("%s %s --server %s --cacert %s --api-key %s --data-dir %s > %s 2>&1",
                                   getenv("ORCHARD_BIN"), args, srv.base_url, srv.ca_path, TESTSERVER_API_KEY,
                                   srv.dir, outpath);
    int rc = system(cmd);
    free(cmd);
    *out = util_read_file(outpath, 1 << 22, NULL);
    unlink(outpath);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

static char *write_temp(const void *data, size_t len)
{
    char *path = strdup("/tmp/orchard-ade-file-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
    return path;
}

static json_t *token_state(const char *name)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/ade/tokens/%s", name);
    json_t *t = NULL;
    assert_int_equal(api("GET", path, NULL, &t), 200);
    return t;
}

static json_t *sync_now(const char *name, long expect)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/ade/tokens/%s/sync", name);
    json_t *r = NULL;
    long st = api("POST", path, NULL, &r);
    if (st != expect)
        fprintf(stderr, "sync %s: %ld %s\n", name, st, r ? json_dumps(r, 0) : "");
    assert_int_equal(st, expect);
    return r;
}

static size_t count_devices(const char *token, int deleted)
{
    char path[160];
    snprintf(path, sizeof path, "/v1/ade/devices?token=%s&limit=1000%s", token, deleted ? "&deleted=1" : "");
    json_t *r = NULL;
    assert_int_equal(api("GET", path, NULL, &r), 200);
    size_t n = json_array_size(json_object_get(r, "devices"));
    json_decref(r);
    return n;
}

static json_t *device(const char *serial)
{
    char path[128];
    snprintf(path, sizeof path, "/v1/ade/devices/%s", serial);
    json_t *r = NULL;
    assert_int_equal(api("GET", path, NULL, &r), 200);
    return r;
}

/* ---- units -------------------------------------------------------------------------------- */

/* RFC 5849 section 3.4.1.1 (base string), 1.2 (signature) and the OAuth
 * Core 1.0a appendix example (with oauth_version). */
static void test_oauth_vectors(void **state)
{
    (void)state;
    char *e = ade_oauth_encode("Ladies + Gentlemen ~/-._ é");
    assert_string_equal(e, "Ladies%20%2B%20Gentlemen%20~%2F-._%20%C3%A9");
    free(e);
    ade_oauth_param_t body[] = {{"c2", ""},
                                {"a3", "2 q"},
                                {"oauth_consumer_key", "9djdj82h48djs9d2"},
                                {"oauth_token", "kkk9d7dh3k39sjv7"},
                                {"oauth_signature_method", "HMAC-SHA1"},
                                {"oauth_timestamp", "137131201"},
                                {"oauth_nonce", "7d8f3e4a"}};
    char *base = ade_oauth_base_string("POST", "http://EXAMPLE.COM:80/request?b5=%3D%253D&a3=a&c%40=&a2=r%20b", body,
                                       sizeof body / sizeof body[0]);
    assert_string_equal(base, "POST&http%3A%2F%2Fexample.com%2Frequest&a2%3Dr%2520b%26a3%3D2%2520q%26a3%3Da%26b5%3D%"
                              "253D%25253D%26c%2540%3D%26c2%3D%26oauth_consumer_key%3D9djdj82h48djs9d2%26oauth_"
                              "nonce%3D7d8f3e4a%26oauth_signature_method%3DHMAC-SHA1%26oauth_timestamp%3D137131201%"
                              "26oauth_token%3Dkkk9d7dh3k39sjv7");
    free(base);

    ade_oauth_param_t p[] = {{"oauth_consumer_key", "dpf43f3p2l4k3l03"}, {"oauth_token", "nnch734d00sl2jdk"},
                             {"oauth_signature_method", "HMAC-SHA1"},   {"oauth_timestamp", "137131202"},
                             {"oauth_nonce", "chapoH"}};
    base = ade_oauth_base_string("GET", "http://photos.example.net/photos?file=vacation.jpg&size=original", p, 5);
    char sig[32];
    assert_int_equal(ade_oauth_sign(base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00", sig), 0);
    assert_string_equal(sig, "MdpQcU8iPSUjWoN/UDMsK2sui9I=");
    free(base);

    ade_oauth_param_t q[] = {{"oauth_consumer_key", "dpf43f3p2l4k3l03"}, {"oauth_token", "nnch734d00sl2jdk"},
                             {"oauth_signature_method", "HMAC-SHA1"},   {"oauth_timestamp", "1191242096"},
                             {"oauth_nonce", "kllo9940pd9333jh"},       {"oauth_version", "1.0"}};
    base = ade_oauth_base_string("GET", "http://photos.example.net/photos?file=vacation.jpg&size=original", q, 6);
    assert_int_equal(ade_oauth_sign(base, "kd94hf93k423kf44", "pfkkdhi9sl3r4s00", sig), 0);
    assert_string_equal(sig, "tR3+Ty81lMeYAr/Fid0kMTYa/WM=");
    free(base);

    char *h = ade_oauth_authorization("GET", "https://mdmenrollment.apple.com/session", "CK", "CS", "AT", "AS", "n1",
                                      137131200);
    assert_non_null(strstr(h, "OAuth realm=\"ADM\", oauth_consumer_key=\"CK\", oauth_token=\"AT\""));
    assert_non_null(strstr(h, "oauth_version=\"1.0\""));
    assert_non_null(strstr(h, "oauth_signature=\""));
    free(h);
}

static void test_seal_and_time(void **state)
{
    (void)state;
    char dir[] = "/tmp/orchard-ade-seal-XXXXXX";
    assert_non_null(mkdtemp(dir));
    unsigned char k1[32], k2[32];
    char err[256];
    assert_int_equal(seal_key_load(dir, "ade.key", "ADE key", k1, err, sizeof err), 0);
    assert_int_equal(seal_key_load(dir, "ade.key", "ADE key", k2, err, sizeof err), 0); /* same file, same key */
    assert_memory_equal(k1, k2, 32);
    char *path = util_strdup_printf("%s/ade.key", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    size_t n = 0, m = 0;
    unsigned char *sealed = seal(k1, "tok", "secret stuff", 12, &n);
    assert_non_null(sealed);
    assert_null(memmem(sealed, n, "secret", 6));
    char *plain = unseal(k1, "tok", sealed, n, &m);
    assert_int_equal(m, 12);
    assert_string_equal(plain, "secret stuff");
    unsealed_free(plain, m);
    assert_null(unseal(k1, "other", sealed, n, &m)); /* bound to the name */
    sealed[n - 1] ^= 1;
    assert_null(unseal(k1, "tok", sealed, n, &m)); /* tampered */
    free(sealed);
    unlink(path);
    free(path);
    rmdir(dir);

    int64_t t;
    assert_int_equal(ade_time_parse("2013-05-09T14:30:00Z", &t), 0);
    assert_int_equal(t, 1368109800);
    assert_int_equal(ade_time_parse("2013-05-09T16:30:00.123+02:00", &t), 0);
    assert_int_equal(t, 1368109800);
    assert_int_equal(ade_time_parse("2013-05-09 14:30", &t), -1);
    assert_int_equal(ade_time_parse("yesterday", &t), -1);
}

/* ---- the server sequence -------------------------------------------------------------------- */

static int setup_server(void **state)
{
    (void)state;
    snprintf(sim_dir, sizeof sim_dir, "/tmp/orchard-depsim-XXXXXX");
    if (!mkdtemp(sim_dir) || !(sim = depsim_start(sim_dir)))
        return -1;
    const char *args[] = {"--ade-url", depsim_url(sim), "--ade-ca", depsim_ca_path(sim), "--ade-sync-interval", "0",
                          NULL};
    return testserver_start(&srv, args);
}

static int teardown_server(void **state)
{
    (void)state;
    int rc = testserver_stop(&srv);
    depsim_stop(sim);
    char *cmd = util_strdup_printf("rm -rf %s", sim_dir);
    if (cmd && system(cmd) != 0)
        rc = -1;
    free(cmd);
    return rc;
}

static void test_import(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(run_cli("ade keypair", &out), 0);
    assert_non_null(strstr(out, "ade-cert.pem"));
    free(out);
    char *cert = util_strdup_printf("%s/ade-cert.pem", srv.dir);

    /* Garbage. */
    json_t *r = NULL;
    assert_int_equal(api("PUT", "/v1/ade/tokens/T1", "this is not a token", &r), 400);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "not an S/MIME"));
    json_decref(r);
    assert_true(testserver_log_contains(&srv, "token T1 not imported: the token file is not an S/MIME"));

    /* Encrypted to another server's certificate. */
    char other[] = "/tmp/orchard-ade-other-XXXXXX";
    assert_non_null(mkdtemp(other));
    char *cmd = util_strdup_printf("%s ade keypair --data-dir %s > /dev/null", getenv("ORCHARD_BIN"), other);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *other_cert = util_strdup_printf("%s/ade-cert.pem", other);
    size_t len = 0;
    unsigned char *wrong = depsim_token_file(other_cert, NULL, util_now() + 20 * 86400, &len);
    assert_non_null(wrong);
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/tokens/T1", (char *)wrong, len, &r), 400);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "not encrypted to this server's ADE"));
    json_decref(r);
    free(wrong);
    cmd = util_strdup_printf("rm -rf %s", other);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    free(other_cert);
    assert_int_equal(api("GET", "/v1/ade/tokens", NULL, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r, "tokens")), 0); /* nothing stored */
    json_decref(r);
    assert_int_equal(api("PUT", "/v1/ade/tokens/bad%20name", "x", NULL), 400);

    /* The good one, through the CLI; expiring in 20 days: renewal due. */
    unsigned char *good = depsim_token_file(cert, NULL, util_now() + 20 * 86400, &len);
    char *file = write_temp(good, len);
    char *args = util_strdup_printf("ade token import T1 %s", file);
    assert_int_equal(run_cli(args, &out), 0);
    free(args);
    free(out);
    unlink(file);
    free(file);
    free(good);
    json_t *t = token_state("T1");
    assert_string_equal(json_string_value(json_object_get(t, "server_name")), "orchard test server");
    assert_string_equal(json_string_value(json_object_get(t, "org_name")), "Sample Inc");
    assert_true(json_is_true(json_object_get(t, "renewal_due")));
    assert_true(json_integer_value(json_object_get(t, "expires_in_days")) >= 19);
    assert_string_equal(json_string_value(json_object_get(t, "sync_state")), "never");
    assert_null(json_object_get(t, "sealed"));
    json_decref(t);
    assert_int_equal(depsim_oauth_failures(sim), 0);
    assert_true(depsim_sessions(sim) >= 1);
    assert_int_equal(depsim_header_violations(sim), 0);

    /* Credentials are sealed in the database and never logged. */
    char *dbpath = util_strdup_printf("%s/orchard.db", srv.dir), *wal = util_strdup_printf("%s/orchard.db-wal", srv.dir);
    size_t dblen = 0, wallen = 0;
    char *db = util_read_file(dbpath, 64u << 20, &dblen), *w = util_read_file(wal, 64u << 20, &wallen);
    assert_non_null(db);
    assert_null(memmem(db, dblen, DEPSIM_CONSUMER_SECRET, strlen(DEPSIM_CONSUMER_SECRET)));
    assert_null(memmem(db, dblen, DEPSIM_ACCESS_SECRET, strlen(DEPSIM_ACCESS_SECRET)));
    if (w) {
        assert_null(memmem(w, wallen, DEPSIM_CONSUMER_SECRET, strlen(DEPSIM_CONSUMER_SECRET)));
        assert_null(memmem(w, wallen, DEPSIM_ACCESS_TOKEN, strlen(DEPSIM_ACCESS_TOKEN)));
    }
    free(db);
    free(w);
    free(dbpath);
    free(wal);
    assert_false(testserver_log_contains(&srv, DEPSIM_CONSUMER_SECRET));
    assert_false(testserver_log_contains(&srv, DEPSIM_ACCESS_TOKEN));
    assert_true(testserver_log_contains(&srv, "ade: token T1 imported"));
    free(cert);
}

static void test_fetch_pages(void **state)
{
    (void)state;
    depsim_add_devices(sim, "FET", 250);
    depsim_set_limit_cap(sim, 100); /* orchard asks for 1000: three pages */
    json_t *r = sync_now("T1", 200);
    assert_true(json_is_true(json_object_get(r, "full_fetch")));
    assert_int_equal(json_integer_value(json_object_get(r, "pages")), 3);
    assert_int_equal(json_integer_value(json_object_get(r, "records")), 250);
    assert_int_equal(json_integer_value(json_object_get(r, "added")), 250);
    json_decref(r);
    assert_int_equal(count_devices("T1", 0), 250);
    json_t *d = device("FET000042");
    assert_string_equal(json_string_value(json_object_get(d, "model")), "iPad");
    assert_string_equal(json_string_value(json_object_get(d, "op_type")), "added");
    json_decref(d);
    json_t *t = token_state("T1");
    assert_string_equal(json_string_value(json_object_get(t, "sync_state")), "ok");
    assert_true(json_is_true(json_object_get(t, "has_cursor")));
    json_decref(t);
    /* Keyset paging of the API. */
    json_t *page = NULL;
    assert_int_equal(api("GET", "/v1/ade/devices?token=T1&limit=100", NULL, &page), 200);
    assert_string_equal(json_string_value(json_object_get(page, "next_after")), "FET000100");
    json_decref(page);
    assert_int_equal(api("GET", "/v1/ade/devices?limit=5000", NULL, NULL), 400);
}

static void test_sync_changes(void **state)
{
    (void)state;
    depsim_add_device(sim, "NEW1", "iPhone");
    depsim_add_device(sim, "NEW2", "iPhone");
    depsim_modify_device(sim, "FET000001", "gold");
    depsim_delete_device(sim, "FET000002");
    depsim_repeat_event(sim, "FET000001"); /* duplicate */
    json_t *r = sync_now("T1", 200);
    assert_false(json_is_true(json_object_get(r, "full_fetch")));
    assert_int_equal(json_integer_value(json_object_get(r, "records")), 5);
    assert_int_equal(json_integer_value(json_object_get(r, "added")), 2);
    json_decref(r);
    json_t *d = device("FET000001");
    assert_string_equal(json_string_value(json_object_get(d, "color")), "gold");
    assert_string_equal(json_string_value(json_object_get(d, "op_type")), "modified");
    json_decref(d);
    d = device("FET000002");
    assert_true(json_is_true(json_object_get(d, "deleted")));
    json_decref(d);
    assert_int_equal(count_devices("T1", 0), 251);
    assert_int_equal(count_devices("T1", 1), 252);
    /* Nothing new: an empty sync. */
    r = sync_now("T1", 200);
    assert_int_equal(json_integer_value(json_object_get(r, "records")), 0);
    json_decref(r);
}

static void test_cursor_errors(void **state)
{
    (void)state;
    depsim_expire_cursors(sim);
    json_t *r = sync_now("T1", 200);
    assert_true(json_is_true(json_object_get(r, "cursor_reset")));
    assert_true(json_is_true(json_object_get(r, "full_fetch")));
    assert_int_equal(json_integer_value(json_object_get(r, "added")), 0); /* all known */
    json_decref(r);
    assert_true(testserver_log_contains(&srv, "Apple refused the sync cursor (EXPIRED_CURSOR)"));
    depsim_fail(sim, "/devices/sync", 400, "INVALID_CURSOR", -1, 1);
    r = sync_now("T1", 200);
    assert_true(json_is_true(json_object_get(r, "cursor_reset")));
    json_decref(r);
    assert_int_equal(count_devices("T1", 0), 251);
}

static void test_sessions(void **state)
{
    (void)state;
    /* Rotation: every answer carries a new session, the old one dies. */
    depsim_rotate_every(sim, 1);
    depsim_expire_cursors(sim); /* a three-page fetch */
    int before = depsim_sessions(sim);
    json_t *r = sync_now("T1", 200);
    assert_int_equal(json_integer_value(json_object_get(r, "sessions")), 1); /* one /session at the start */
    json_decref(r);
    depsim_rotate_every(sim, 0);
    /* Expiry: 401, one new session, the call again. */
    depsim_add_device(sim, "SESS1", "iPad");
    depsim_expire_sessions(sim);
    r = sync_now("T1", 200);
    assert_int_equal(json_integer_value(json_object_get(r, "added")), 1);
    json_decref(r);
    assert_true(depsim_sessions(sim) >= before + 2);
    /* 401 again right after a new session: an error, not a loop. */
    depsim_fail(sim, "/devices/sync", 401, "UNAUTHORIZED", -1, 1);
    before = depsim_sessions(sim);
    r = sync_now("T1", 200);
    json_decref(r);
    assert_int_equal(depsim_sessions(sim), before + 2); /* the run's session, then one after the 401 */
    depsim_fail(sim, "/devices/sync", 401, "UNAUTHORIZED", -1, 2);
    r = sync_now("T1", 502);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "401 UNAUTHORIZED even with a new session"));
    json_decref(r);
    json_t *t = token_state("T1");
    assert_string_equal(json_string_value(json_object_get(t, "sync_state")), "error");
    json_decref(t);
    assert_int_equal(depsim_header_violations(sim), 0);
}

static void test_terms_not_signed(void **state)
{
    (void)state;
    depsim_set_terms(sim, 1);
    json_t *r = sync_now("T1", 502);
    assert_string_equal(json_string_value(json_object_get(r, "apple_code")), "T_C_NOT_SIGNED");
    json_decref(r);
    json_t *t = token_state("T1");
    assert_non_null(strstr(json_string_value(json_object_get(t, "last_error")), "T_C_NOT_SIGNED"));
    assert_non_null(strstr(json_string_value(json_object_get(t, "last_error")), "terms and conditions"));
    json_decref(t);
    assert_true(testserver_log_contains(&srv, "T_C_NOT_SIGNED"));
    depsim_set_terms(sim, 0);
    depsim_fail(sim, "/devices/sync", 403, "ACCESS_DENIED", -1, 1);
    r = sync_now("T1", 502);
    assert_string_equal(json_string_value(json_object_get(r, "apple_code")), "ACCESS_DENIED");
    json_decref(r);
    r = sync_now("T1", 200);
    json_decref(r);
    t = token_state("T1");
    assert_true(json_is_null(json_object_get(t, "last_error")));
    assert_string_equal(json_string_value(json_object_get(t, "sync_state")), "ok");
    json_decref(t);
}

static void test_retries(void **state)
{
    (void)state;
    depsim_fail(sim, "/devices/sync", 503, "", -1, 2);
    int before = depsim_requests(sim, "/devices/sync");
    json_t *r = sync_now("T1", 200);
    json_decref(r);
    assert_int_equal(depsim_requests(sim, "/devices/sync"), before + 3);
    depsim_fail(sim, "/devices/sync", 429, "", 1, 1);
    int64_t t0 = util_now_us();
    r = sync_now("T1", 200);
    json_decref(r);
    assert_true(util_now_us() - t0 >= 900000); /* Retry-After: 1 honoured */
    depsim_fail(sim, "/session", 503, "", 0, 1); /* the session request is retried too */
    r = sync_now("T1", 200);
    json_decref(r);
    depsim_fail(sim, "/devices/sync", 500, "", 0, 4);
    r = sync_now("T1", 502);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "500"));
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "after 4 attempts"));
    json_decref(r);
}

static void test_malformed_answer(void **state)
{
    (void)state;
    depsim_add_device(sim, "GARB1", "iPad");
    depsim_garbage(sim, "/devices/sync");
    json_t *r = sync_now("T1", 502);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "not a JSON object"));
    json_decref(r);
    json_t *t = token_state("T1");
    assert_non_null(strstr(json_string_value(json_object_get(t, "last_error")), "not a JSON object"));
    assert_true(json_is_true(json_object_get(t, "has_cursor"))); /* cursor kept */
    json_decref(t);
    assert_int_equal(api("GET", "/v1/ade/devices/GARB1", NULL, NULL), 404); /* nothing half-stored */
    r = sync_now("T1", 200);
    assert_int_equal(json_integer_value(json_object_get(r, "added")), 1);
    json_decref(r);
}

static void test_profiles(void **state)
{
    (void)state;
    json_t *r = NULL;
    assert_int_equal(api("POST", "/v1/ade/profiles", "{\"token\":\"T1\",\"profile_name\":\"x\",\"colour\":1}", &r), 400);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "unknown profile key \"colour\""));
    json_decref(r);
    assert_int_equal(api("POST", "/v1/ade/profiles", "{\"token\":\"T1\",\"is_supervised\":\"yes\",\"profile_name\":\"x\"}", NULL), 400);
    assert_int_equal(api("POST", "/v1/ade/profiles", "{\"token\":\"T1\"}", NULL), 400);
    assert_int_equal(api("POST", "/v1/ade/profiles", "{\"token\":\"T1\",\"profile_name\":\"x\",\"anchor_certs\":[\"AAAA\"]}", NULL), 400);
    assert_int_equal(api("POST", "/v1/ade/profiles", "{\"token\":\"nope\",\"profile_name\":\"x\"}", NULL), 404);
    assert_true(testserver_log_contains(&srv, "unknown profile key"));
    /* Apple's own refusal comes through with its word. */
    depsim_fail(sim, "/profile", 400, "DEPARTMENT_REQUIRED", -1, 1);
    assert_int_equal(api("POST", "/v1/ade/profiles", "{\"token\":\"T1\",\"profile_name\":\"x\"}", &r), 400);
    assert_string_equal(json_string_value(json_object_get(r, "apple_code")), "DEPARTMENT_REQUIRED");
    json_decref(r);

    const char *def = "{\"token\":\"T1\",\"profile_name\":\"Staff iPads\",\"department\":\"IT\","
                      "\"support_phone_number\":\"+1 555 0100\",\"support_email_address\":\"it@example.com\","
                      "\"skip_setup_items\":[\"Location\",\"Siri\"],\"language\":\"en\",\"region\":\"US\","
                      "\"await_device_configured\":true,\"devices\":[\"FET000003\"]}";
    assert_int_equal(api("POST", "/v1/ade/profiles", def, &r), 201);
    snprintf(profile_uuid, sizeof profile_uuid, "%s", json_string_value(json_object_get(r, "profile_uuid")));
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "devices"), "FET000003")), "SUCCESS");
    json_decref(r);
    char *sent = depsim_profile_json(sim, profile_uuid);
    assert_non_null(sent);
    assert_non_null(strstr(sent, "\"url\":\"https://127.0.0.1/enroll/ade\""));
    assert_non_null(strstr(sent, "\"is_supervised\":true"));
    assert_non_null(strstr(sent, "\"is_mdm_removable\":false"));
    assert_non_null(strstr(sent, "\"await_device_configured\":true"));
    assert_non_null(strstr(sent, "\"anchor_certs\":[\""));
    assert_non_null(strstr(sent, "\"support_email_address\":\"it@example.com\""));
    free(sent);
    char at_apple[64];
    assert_int_equal(depsim_device_profile(sim, "FET000003", at_apple, sizeof at_apple), 0);
    assert_string_equal(at_apple, profile_uuid);
    json_t *d = device("FET000003");
    assert_string_equal(json_string_value(json_object_get(d, "profile_status")), "assigned");
    assert_string_equal(json_string_value(json_object_get(d, "profile_uuid")), profile_uuid);
    json_decref(d);

    char path[160];
    snprintf(path, sizeof path, "/v1/ade/profiles/%s/devices", profile_uuid);
    assert_int_equal(api("PUT", path, "{\"devices\":[\"FET000004\",\"UNKNOWN9\"]}", &r), 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "devices"), "FET000004")), "SUCCESS");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "devices"), "UNKNOWN9")),
                        "NOT_ACCESSIBLE");
    json_decref(r);
    assert_int_equal(api("PUT", path, "{\"devices\":[]}", NULL), 400);
    assert_int_equal(api("DELETE", path, "{\"devices\":[\"FET000004\"]}", &r), 200);
    json_decref(r);
    assert_int_equal(depsim_device_profile(sim, "FET000004", at_apple, sizeof at_apple), 0);
    assert_string_equal(at_apple, "");
    d = device("FET000004");
    assert_string_equal(json_string_value(json_object_get(d, "profile_status")), "removed");
    json_decref(d);
    assert_int_equal(api("PUT", "/v1/ade/profiles/0000/devices", "{\"devices\":[\"FET000004\"]}", NULL), 404);

    snprintf(path, sizeof path, "/v1/ade/profiles/%s?apple=1", profile_uuid);
    assert_int_equal(api("GET", path, NULL, &r), 200);
    assert_string_equal(json_string_value(json_object_get(r, "profile_name")), "Staff iPads");
    json_decref(r);
    assert_int_equal(api("GET", "/v1/ade/profiles?token=T1", NULL, &r), 200);
    assert_int_equal(json_array_size(json_object_get(r, "profiles")), 1);
    json_decref(r);
}

static void test_default_profile(void **state)
{
    (void)state;
    assert_int_equal(api("PUT", "/v1/ade/tokens/T1/default-profile", "{\"profile_uuid\":\"unknown\"}", NULL), 400);
    char body[128];
    snprintf(body, sizeof body, "{\"profile_uuid\":\"%s\"}", profile_uuid);
    json_t *t = NULL;
    assert_int_equal(api("PUT", "/v1/ade/tokens/T1/default-profile", body, &t), 200);
    assert_string_equal(json_string_value(json_object_get(t, "default_profile_uuid")), profile_uuid);
    json_decref(t);
    depsim_add_device(sim, "AUTO1", "iPad");
    depsim_add_device(sim, "AUTO2", "iPad");
    depsim_modify_device(sim, "FET000005", "blue"); /* a modification: not assigned */
    json_t *r = sync_now("T1", 200);
    assert_int_equal(json_integer_value(json_object_get(r, "added")), 2);
    assert_int_equal(json_integer_value(json_object_get(r, "assigned")), 2);
    json_decref(r);
    char at_apple[64];
    assert_int_equal(depsim_device_profile(sim, "AUTO2", at_apple, sizeof at_apple), 0);
    assert_string_equal(at_apple, profile_uuid);
    assert_int_equal(depsim_device_profile(sim, "FET000005", at_apple, sizeof at_apple), 0);
    assert_string_equal(at_apple, "");
    json_t *d = device("AUTO1");
    assert_string_equal(json_string_value(json_object_get(d, "profile_status")), "assigned");
    json_decref(d);
    /* The assignment shows up in the next sync as a modification: no loop. */
    r = sync_now("T1", 200);
    assert_int_equal(json_integer_value(json_object_get(r, "assigned")), 0);
    json_decref(r);
}

static void test_refresh_disown(void **state)
{
    (void)state;
    json_t *r = NULL;
    assert_int_equal(api("POST", "/v1/ade/devices/AUTO1/refresh", NULL, &r), 200);
    assert_string_equal(json_string_value(json_object_get(r, "device_assigned_by")), "facilitator@example.com");
    json_decref(r);
    assert_int_equal(api("POST", "/v1/ade/devices/NOSUCH/refresh", NULL, NULL), 404);
    assert_int_equal(api("POST", "/v1/ade/tokens/T1/disown", "{\"devices\":[\"AUTO2\",\"ZZZ\"]}", &r), 200);
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "devices"), "AUTO2")), "SUCCESS");
    assert_string_equal(json_string_value(json_object_get(json_object_get(r, "devices"), "ZZZ")), "NOT_ACCESSIBLE");
    json_decref(r);
    r = sync_now("T1", 200);
    json_decref(r);
    json_t *d = device("AUTO2");
    assert_true(json_is_true(json_object_get(d, "deleted")));
    json_decref(d);
}

static void test_cli(void **state)
{
    (void)state;
    char *out = NULL;
    assert_int_equal(run_cli("ade token list", &out), 0);
    assert_non_null(strstr(out, "\"orchard test server\""));
    free(out);
    assert_int_equal(run_cli("ade token sync T1", &out), 0);
    assert_non_null(strstr(out, "\"outcome\": \"ok\""));
    free(out);
    assert_int_equal(run_cli("ade devices --token T1 --limit 2", &out), 0);
    assert_non_null(strstr(out, "FET000001"));
    assert_non_null(strstr(out, "\"next_after\": \"FET000001\"")); /* AUTO1, FET000001 */
    free(out);
    assert_int_equal(run_cli("ade devices --deleted --after FET000001 --limit 1", &out), 0);
    assert_non_null(strstr(out, "FET000002"));
    free(out);
    assert_int_equal(run_cli("ade device AUTO1 --refresh", &out), 0);
    assert_non_null(strstr(out, "AUTO1"));
    free(out);
    assert_int_equal(run_cli("ade profile list --token T1", &out), 0);
    assert_non_null(strstr(out, "Staff iPads"));
    free(out);
    char *args = util_strdup_printf("ade profile assign %s FET000010", profile_uuid);
    assert_int_equal(run_cli(args, &out), 0);
    assert_non_null(strstr(out, "SUCCESS"));
    free(out);
    free(args);
    const char *def = "{\"token\":\"T1\",\"profile_name\":\"CLI\",\"is_mandatory\":false}";
    char *file = write_temp(def, strlen(def));
    args = util_strdup_printf("ade profile define %s", file);
    assert_int_equal(run_cli(args, &out), 0);
    assert_non_null(strstr(out, "profile_uuid"));
    free(out);
    free(args);
    unlink(file);
    free(file);
    assert_int_equal(run_cli("ade token default-profile T1 --clear", &out), 0);
    assert_non_null(strstr(out, "\"default_profile_uuid\": null"));
    free(out);
    assert_int_equal(run_cli("ade token show NOPE", &out), 1);
    free(out);
    assert_int_equal(run_cli("ade frobnicate", &out), 2);
    free(out);
}

static void test_delete_token(void **state)
{
    (void)state;
    json_t *r = NULL;
    assert_int_equal(api("DELETE", "/v1/ade/tokens/T1", NULL, &r), 200);
    json_decref(r);
    assert_int_equal(api("GET", "/v1/ade/tokens/T1", NULL, NULL), 404);
    assert_int_equal(count_devices("T1", 1), 0);
    assert_int_equal(api("POST", "/v1/ade/tokens/T1/sync", NULL, NULL), 404);
}

/* ---- background sync, two instances ------------------------------------------------------------ */

static void test_background_lease(void **state)
{
    (void)state;
    char dir[64];
    snprintf(dir, sizeof dir, "/tmp/orchard-depsim-XXXXXX");
    assert_non_null(mkdtemp(dir));
    depsim_t *bsim = depsim_start(dir);
    assert_non_null(bsim);
    depsim_add_devices(bsim, "BG", 30);
    testserver_t a, b;
    const char *args_a[] = {"--ade-url", depsim_url(bsim), "--ade-ca", depsim_ca_path(bsim), "--ade-sync-interval",
                            "2s", NULL};
    assert_int_equal(testserver_start(&a, args_a), 0);
    /* B shares A's database and, as instances sharing a database must,
     * its seal key (DATA_DIR/ade.key): copied over, then B restarted. */
    char *db = util_strdup_printf("sqlite:%s/orchard.db", a.dir);
    const char *args_b[] = {"--ade-url", depsim_url(bsim), "--ade-ca", depsim_ca_path(bsim), "--ade-sync-interval",
                            "2s", "--db", db, NULL};
    assert_int_equal(testserver_start(&b, args_b), 0);
    assert_int_equal(testserver_stop_keep(&b), 0);
    char *cp = util_strdup_printf("cp %s/ade.key %s/ade.key", a.dir, b.dir);
    assert_int_equal(system(cp), 0);
    free(cp);
    assert_int_equal(testserver_restart(&b, args_b), 0);
    char *cmd = util_strdup_printf("%s ade keypair --data-dir %s > /dev/null", getenv("ORCHARD_BIN"), a.dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
    char *cert = util_strdup_printf("%s/ade-cert.pem", a.dir);
    size_t len = 0;
    unsigned char *tok = depsim_token_file(cert, NULL, util_now() + 400 * 86400, &len);
    assert_int_equal(testserver_api(&a, "", "PUT", "/v1/ade/tokens/bg", (char *)tok, len, NULL), 201);
    free(tok);
    free(cert);
    /* Within a few intervals the holder has fetched everything. */
    json_t *r = NULL;
    size_t n = 0;
    for (int i = 0; i < 40 && n < 30; i++) {
        usleep(250000);
        assert_int_equal(testserver_api(&b, "", "GET", "/v1/ade/devices?token=bg&limit=1000", NULL, 0, &r), 200);
        n = json_array_size(json_object_get(r, "devices"));
        json_decref(r);
    }
    assert_int_equal(n, 30);
    depsim_add_device(bsim, "BGLATE", "iPad");
    for (int i = 0; i < 40 && testserver_api(&a, "", "GET", "/v1/ade/devices/BGLATE", NULL, 0, NULL) != 200; i++)
        usleep(250000);
    assert_int_equal(testserver_api(&a, "", "GET", "/v1/ade/devices/BGLATE", NULL, 0, NULL), 200);
    /* Exactly one instance syncs; the other is refused the lease. */
    int a_synced = testserver_log_contains(&a, "ade: token bg: full fetch");
    int b_synced = testserver_log_contains(&b, "ade: token bg: full fetch");
    assert_true(a_synced != b_synced);
    testserver_t *other = a_synced ? &b : &a;
    assert_false(testserver_log_contains(other, "ade: token bg: sync,"));
    assert_int_equal(testserver_api(other, "", "POST", "/v1/ade/tokens/bg/sync", NULL, 0, &r), 409);
    assert_non_null(strstr(json_string_value(json_object_get(r, "error")), "another orchard instance"));
    json_decref(r);
    assert_int_equal(testserver_stop(&b), 0);
    assert_int_equal(testserver_stop(&a), 0);
    depsim_stop(bsim);
    free(db);
    cmd = util_strdup_printf("rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    free(cmd);
}

int main(void)
{
    const struct CMUnitTest units[] = {
        cmocka_unit_test(test_oauth_vectors),
        cmocka_unit_test(test_seal_and_time),
    };
    const struct CMUnitTest sequence[] = {
        cmocka_unit_test(test_import),           cmocka_unit_test(test_fetch_pages),
        cmocka_unit_test(test_sync_changes),     cmocka_unit_test(test_cursor_errors),
        cmocka_unit_test(test_sessions),         cmocka_unit_test(test_terms_not_signed),
        cmocka_unit_test(test_retries),          cmocka_unit_test(test_malformed_answer),
        cmocka_unit_test(test_profiles),         cmocka_unit_test(test_default_profile),
        cmocka_unit_test(test_refresh_disown),   cmocka_unit_test(test_cli),
        cmocka_unit_test(test_delete_token),
    };
    const struct CMUnitTest background[] = {
        cmocka_unit_test(test_background_lease),
    };
    int failed = cmocka_run_group_tests_name("units", units, NULL, NULL);
    failed += cmocka_run_group_tests_name("server", sequence, setup_server, teardown_server);
    failed += cmocka_run_group_tests_name("background", background, NULL, NULL);
    return failed;
}
