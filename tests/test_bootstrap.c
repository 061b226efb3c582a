/* Bootstrap token escrow and UserAuthenticate, over HTTPS with real device
 * certificates, the way a Mac speaks them:
 *   - GetBootstrapToken before any is escrowed: 200 without the key;
 *   - SetBootstrapToken escrows it: the Mac gets the same bytes back, also
 *     after it was erased and enrolled again; neither the database files
 *     nor the log hold the token; the admin API says it is escrowed (and
 *     never shows it); events record escrow and retrieval;
 *   - an empty or missing BootstrapToken removes it;
 *   - another device's certificate cannot fetch it (401), a user channel
 *     cannot set it (400), an oversized token is refused (400);
 *   - after the escrow key changed, the Mac gets an answer without the
 *     token and the log says why;
 *   - UserAuthenticate: empty DigestChallenge, then the user channel enrolls;
 *     a DigestResponse gets an empty AuthToken; no UserID is 400; an
 *     unknown device 401. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
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

static devsim_t *mac(const char *udid)
{
    devsim_t *d = testserver_devsim(&srv, udid, DEVSIM_AUTH_MTLS);
    assert_non_null(d);
    return d;
}

static devsim_t *enrolled_mac(const char *udid)
{
    devsim_t *d = mac(udid);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(devsim_token_update(d), 200);
    return d;
}

/* A check-in message of `type` for `udid` (any UDID: a device may lie). */
static plist_t *message(const char *type, const char *udid)
{
    plist_t *m = plist_new_dict();
    plist_dict_set(m, "MessageType", plist_new_string(type));
    plist_dict_set(m, "UDID", plist_new_string(udid));
    return m;
}

static long send_message(devsim_t *d, plist_t *m, devsim_reply_t *r)
{
    size_t len = 0;
    char *xml = devsim_plist_xml(m, &len);
    plist_free(m);
    assert_non_null(xml);
    int rc = devsim_send(d, "/mdm/checkin", CHECKIN_CT, xml, len, r);
    free(xml);
    (void)rc;
    return r->status;
}

static long set_token(devsim_t *d, const char *udid, const unsigned char *tok, size_t len, int with_key)
{
    plist_t *m = message("SetBootstrapToken", udid);
    if (with_key)
        plist_dict_set(m, "BootstrapToken", plist_new_data(tok, len));
    devsim_reply_t r;
    long st = send_message(d, m, &r);
    devsim_reply_free(&r);
    return st;
}

/* GetBootstrapToken; *out and *len get the token (NULL/0 when the answer has
 * none). Returns the HTTP status. */
static long get_token(devsim_t *d, const char *udid, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    plist_t *m = message("GetBootstrapToken", udid);
    plist_dict_set(m, "AwaitingConfiguration", plist_new_bool(1));
    devsim_reply_t r;
    long st = send_message(d, m, &r);
    if (st == 200) {
        assert_non_null(r.command); /* a plist dict, even when empty */
        size_t n = 0;
        const unsigned char *v = plist_dict_get_data(r.command, "BootstrapToken", &n);
        if (v) {
            *out = malloc(n ? n : 1);
            memcpy(*out, v, n);
            *len = n;
        }
    }
    devsim_reply_free(&r);
    return st;
}

static int file_contains(const char *path, const unsigned char *needle, size_t n)
{
    size_t len = 0;
    char *data = util_read_file(path, 256 << 20, &len);
    if (!data)
        return 0;
    int found = memmem(data, len, needle, n) != NULL;
    free(data);
    return found;
}

static int escrowed(const char *udid)
{
    char *path = util_strdup_printf("/v1/devices/%s", udid);
    json_t *o = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, &o), 200);
    free(path);
    json_t *v = json_object_get(o, "bootstrap_token_escrowed");
    assert_true(json_is_boolean(v));
    int out = json_is_true(v);
    /* The token itself is never part of the answer. */
    char *text = json_dumps(o, 0);
    assert_null(strstr(text, "BootstrapToken"));
    free(text);
    json_decref(o);
    return out;
}

static int count_events(const char *udid, const char *kind)
{
    char *path = util_strdup_printf("/v1/devices/%s/events", udid);
    json_t *o = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", path, NULL, 0, &o), 200);
    free(path);
    int n = 0;
    size_t i;
    json_t *ev;
    json_array_foreach(json_object_get(o, "events"), i, ev)
    {
        const char *k = json_string_value(json_object_get(ev, "kind"));
        if (k && strcmp(k, kind) == 0)
            n++;
    }
    json_decref(o);
    return n;
}

static void test_escrow_round_trip(void **state)
{
    (void)state;
    char udid[64];
    char hex[9];
    assert_int_equal(util_random_hex(hex, 4), 0);
    snprintf(udid, sizeof udid, "MAC-BOOT-%s", hex);
    devsim_t *d = enrolled_mac(udid);

    unsigned char *got = NULL;
    size_t got_len = 0;
    assert_int_equal(get_token(d, udid, &got, &got_len), 200);
    assert_null(got);
    assert_false(escrowed(udid));

    /* A token no other test data could contain by chance. */
    unsigned char token[96];
    for (size_t i = 0; i < sizeof token; i++)
        token[i] = (unsigned char)(0xa5 ^ (i * 37) ^ hex[i % 8]);
    assert_int_equal(set_token(d, udid, token, sizeof token, 1), 200);
    assert_true(escrowed(udid));
    assert_int_equal(get_token(d, udid, &got, &got_len), 200);
    assert_non_null(got);
    assert_int_equal(got_len, sizeof token);
    assert_memory_equal(got, token, sizeof token);
    free(got);

    /* Sealed at rest, never logged. */
    char *db = util_strdup_printf("%s/orchard.db", srv.dir);
    char *wal = util_strdup_printf("%s/orchard.db-wal", srv.dir);
    assert_false(file_contains(db, token, 32));
    assert_false(file_contains(wal, token, 32));
    assert_false(file_contains(srv.log_path, token, 32));
    free(db);
    free(wal);
    assert_true(testserver_log_contains(&srv, "bootstrap token escrowed"));

    /* Erased and enrolled again: the token is still there for Setup
     * Assistant. */
    assert_int_equal(devsim_checkout(d), 200);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(devsim_token_update(d), 200);
    assert_int_equal(get_token(d, udid, &got, &got_len), 200);
    assert_int_equal(got_len, sizeof token);
    assert_memory_equal(got, token, sizeof token);
    free(got);
    assert_int_equal(count_events(udid, "bootstrap_token_escrowed"), 1);
    assert_int_equal(count_events(udid, "bootstrap_token_retrieved"), 2);

    /* Replaced, then removed by an empty token, and by none. */
    token[0] ^= 0xff;
    assert_int_equal(set_token(d, udid, token, sizeof token, 1), 200);
    assert_int_equal(get_token(d, udid, &got, &got_len), 200);
    assert_memory_equal(got, token, sizeof token);
    free(got);
    assert_int_equal(set_token(d, udid, token, 0, 1), 200);
    assert_false(escrowed(udid));
    assert_int_equal(get_token(d, udid, &got, &got_len), 200);
    assert_null(got);
    assert_int_equal(set_token(d, udid, token, sizeof token, 1), 200);
    assert_int_equal(set_token(d, udid, NULL, 0, 0), 200);
    assert_false(escrowed(udid));
    assert_int_equal(count_events(udid, "bootstrap_token_removed"), 2);
    devsim_free(d);
}

static void test_escrow_refusals(void **state)
{
    (void)state;
    char hex[9];
    assert_int_equal(util_random_hex(hex, 4), 0);
    char a[64], b[64], ghost[64];
    snprintf(a, sizeof a, "MAC-A-%s", hex);
    snprintf(b, sizeof b, "MAC-B-%s", hex);
    snprintf(ghost, sizeof ghost, "MAC-GHOST-%s", hex);
    devsim_t *da = enrolled_mac(a);
    devsim_t *db = enrolled_mac(b);
    static const unsigned char token[] = "token-of-mac-a-0123456789";
    assert_int_equal(set_token(da, a, token, sizeof token, 1), 200);

    /* Mac B's certificate speaking for Mac A: refused, nothing handed out. */
    unsigned char *got = NULL;
    size_t n = 0;
    assert_int_equal(get_token(db, a, &got, &n), 401);
    assert_null(got);
    assert_int_equal(set_token(db, a, token, 3, 1), 401);
    /* A device orchard never enrolled. */
    devsim_t *dg = mac(ghost);
    assert_int_equal(get_token(dg, ghost, &got, &n), 401);
    devsim_free(dg);

    /* A user channel cannot escrow a device's token. */
    plist_t *m = message("SetBootstrapToken", a);
    plist_dict_set(m, "UserID", plist_new_string("A1B2C3D4-0000-4000-8000-00000000USER"));
    plist_dict_set(m, "UserShortName", plist_new_string("jappleseed"));
    plist_dict_set(m, "BootstrapToken", plist_new_data(token, sizeof token));
    devsim_reply_t r;
    assert_int_equal(send_message(da, m, &r), 400);
    devsim_reply_free(&r);
    /* Wrong type, oversized. */
    m = message("SetBootstrapToken", a);
    plist_dict_set(m, "BootstrapToken", plist_new_string("not data"));
    assert_int_equal(send_message(da, m, &r), 400);
    devsim_reply_free(&r);
    size_t big_len = 20000;
    unsigned char *big = calloc(1, big_len);
    assert_int_equal(set_token(da, a, big, big_len, 1), 400);
    free(big);
    assert_true(testserver_log_contains(&srv, "BootstrapToken is larger than"));

    /* None of it touched Mac A's token. */
    assert_int_equal(get_token(da, a, &got, &n), 200);
    assert_int_equal(n, sizeof token);
    assert_memory_equal(got, token, sizeof token);
    free(got);
    devsim_free(da);
    devsim_free(db);
}

static void test_user_authenticate(void **state)
{
    (void)state;
    char hex[9];
    assert_int_equal(util_random_hex(hex, 4), 0);
    char udid[64];
    snprintf(udid, sizeof udid, "MAC-UA-%s", hex);
    const char *user = "2E6F1B2A-3C4D-4E5F-8A9B-0C1D2E3F4A5B";
    devsim_t *d = enrolled_mac(udid);

    plist_t *m = message("UserAuthenticate", udid);
    plist_dict_set(m, "UserID", plist_new_string(user));
    devsim_reply_t r;
    assert_int_equal(send_message(d, m, &r), 200);
    assert_non_null(r.command);
    const char *challenge = plist_dict_get_string(r.command, "DigestChallenge");
    assert_non_null(challenge);
    assert_string_equal(challenge, "");
    devsim_reply_free(&r);
    /* The user channel then enrolls as usual. */
    assert_int_equal(devsim_user_token_update(d, user, "netuser"), 200);

    /* A digest orchard never asked for: an empty AuthToken (not managed). */
    m = message("UserAuthenticate", udid);
    plist_dict_set(m, "UserID", plist_new_string(user));
    plist_dict_set(m, "DigestResponse", plist_new_string("c2FtcGxlIGRpZ2VzdA=="));
    assert_int_equal(send_message(d, m, &r), 200);
    const char *auth = plist_dict_get_string(r.command, "AuthToken");
    assert_non_null(auth);
    assert_string_equal(auth, "");
    devsim_reply_free(&r);

    /* Without a user it means nothing. */
    assert_int_equal(send_message(d, message("UserAuthenticate", udid), &r), 400);
    devsim_reply_free(&r);
    /* A device orchard does not know. */
    char ghost[64];
    snprintf(ghost, sizeof ghost, "MAC-UA-GHOST-%s", hex);
    devsim_t *dg = mac(ghost);
    m = message("UserAuthenticate", ghost);
    plist_dict_set(m, "UserID", plist_new_string(user));
    assert_int_equal(send_message(dg, m, &r), 401);
    devsim_reply_free(&r);
    devsim_free(dg);
    devsim_free(d);
}

/* Last: it restarts the server with another escrow key. */
static void test_escrow_key_changed(void **state)
{
    (void)state;
    char hex[9];
    assert_int_equal(util_random_hex(hex, 4), 0);
    char udid[64];
    snprintf(udid, sizeof udid, "MAC-KEY-%s", hex);
    devsim_t *d = enrolled_mac(udid);
    static const unsigned char token[] = "escrowed-under-the-first-key";
    assert_int_equal(set_token(d, udid, token, sizeof token, 1), 200);

    assert_int_equal(testserver_stop_keep(&srv), 0);
    char *key = util_strdup_printf("%s/escrow.key", srv.dir);
    assert_int_equal(unlink(key), 0); /* a new one is made at start */
    free(key);
    assert_int_equal(testserver_restart(&srv, NULL), 0);

    unsigned char *got = NULL;
    size_t n = 0;
    assert_int_equal(get_token(d, udid, &got, &n), 200);
    assert_null(got);
    assert_true(testserver_log_contains(&srv, "does not open with DATA_DIR/escrow.key"));
    devsim_free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escrow_round_trip),
        cmocka_unit_test(test_escrow_refusals),
        cmocka_unit_test(test_user_authenticate),
        cmocka_unit_test(test_escrow_key_changed),
    };
    return cmocka_run_group_tests_name("bootstrap", tests, setup, teardown);
}
