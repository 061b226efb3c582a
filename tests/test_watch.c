/* Apple Watch enrollment end to end (docs/apple-watch-enrollment.md).
 *
 * A real server (srv) with a test "Apple" CA as --machineinfo-ca; devsim
 * plays the iPhones (real identities from the server's CA, mTLS), watchsim
 * the watches (MachineInfo signed by the Apple CA). srv_short has
 * --watch-token-ttl 1 for the expiry cases.
 *
 * Every refusal: its status, its own log line, and nothing stored (no
 * pairing, no SCEP challenge, no binding of the security token).
 */
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
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sqlite3.h>

#include "cli_watch.h"
#include "curl_buffer.h"
#include "devsim.h"
#include "pairing.h"
#include "pki.h"
#include "plist.h"
#include "profilecheck.h"
#include "profile.h"
#include "schema_check.h"
#include "store.h"
#include "testpki.h"
#include "testscep.h"
#include "testserver.h"
#include "util.h"
#include "watchsim.h"

#define TOPIC "com.apple.mgmt.External.aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"

static char pki_dir[64], apple_pem[128], apple_key[128], evil_pem[128], evil_key[128];
static char profiles_dir[600];
static testserver_t srv, srv_short;

/* ---- helpers ------------------------------------------------------------------------ */

typedef struct {
    devsim_t *d;
    EVP_PKEY *key;
    X509 *cert;
} phone_t;

static long count_rows(const testserver_t *s, const char *table, const char *where)
{
    char *path = util_strdup_printf("%s/orchard.db", s->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *sql = util_strdup_printf("SELECT count(*) FROM %s%s%s", table, where ? " WHERE " : "", where ? where : "");
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long n = (long)sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    free(sql);
    free(path);
    return n;
}

/* What a refused step must leave untouched. */
typedef struct {
    long pairings, challenges, bound, used, enrollments;
} snapshot_t;

static snapshot_t snap(const testserver_t *s)
{
    snapshot_t n = {count_rows(s, "watch_pairings", NULL), count_rows(s, "scep_challenges", NULL),
                    count_rows(s, "pairing_tokens", "bound_at > 0"), count_rows(s, "pairing_tokens", "used_at > 0"),
                    count_rows(s, "enrollments", NULL)};
    return n;
}

static void assert_nothing_stored(const testserver_t *s, snapshot_t before)
{
    snapshot_t now = snap(s);
    assert_int_equal(now.pairings, before.pairings);
    assert_int_equal(now.challenges, before.challenges);
    assert_int_equal(now.bound, before.bound);
    assert_int_equal(now.used, before.used);
    assert_int_equal(now.enrollments, before.enrollments);
}

static long enqueue(const testserver_t *s, const char *id, const char *uuid, const char *rtype, plist_t *extra,
                    json_t **out)
{
    size_t len;
    char *xml = testserver_command_xml(uuid, rtype, extra, &len);
    char *path = util_strdup_printf("/v1/enqueue/%s?nopush=1", id);
    long st = testserver_api(s, "", "PUT", path, xml, len, out);
    free(path);
    free(xml);
    return st;
}

/* Polls until the queue is empty: DeclarativeManagement commands run the
 * DDM loop, DeviceInformation is answered with IsSupervised, anything else
 * is acknowledged. */
static void drain(devsim_t *d, int supervised)
{
    devsim_reply_t r;
    assert_int_equal(devsim_idle(d, &r), 0);
    assert_int_equal(r.status, 200);
    for (int i = 0; i < 20 && r.command; i++) {
        const char *type = devsim_request_type(&r);
        devsim_reply_t next;
        if (strcmp(type, "DeclarativeManagement") == 0) {
            devsim_ddm_result_t res;
            assert_int_equal(devsim_ddm_handle_command(d, &r, &res, &next), 1);
        } else {
            plist_t *extra = NULL;
            if (strcmp(type, "DeviceInformation") == 0) {
                extra = plist_new_dict();
                plist_t *q = plist_new_dict();
                plist_dict_set(q, "IsSupervised", plist_new_bool(supervised));
                plist_dict_set(extra, "QueryResponses", q);
            }
            assert_int_equal(devsim_report(d, devsim_command_uuid(&r), "Acknowledged", extra, &next), 0);
        }
        devsim_reply_free(&r);
        r = next;
        assert_int_equal(r.status, 200);
    }
    assert_null(r.command);
    devsim_reply_free(&r);
}

/* An enrolled iPhone; supervised 1/0 is reported through DeviceInformation,
 * -1 leaves it unknown. */
static void phone_enroll(const testserver_t *s, phone_t *p, const char *udid, int supervised)
{
    assert_int_equal(testserver_device_identity(s, udid, &p->key, &p->cert), 0);
    p->d = devsim_new(s->base_url, s->ca_path, udid, p->key, p->cert, DEVSIM_AUTH_MTLS);
    assert_non_null(p->d);
    assert_int_equal(devsim_authenticate(p->d), 200);
    assert_int_equal(devsim_token_update(p->d), 200);
    if (supervised >= 0) {
        char uuid[64];
        snprintf(uuid, sizeof uuid, "devinfo-%s", udid);
        plist_t *extra = plist_new_dict();
        plist_t *q = plist_new_array();
        plist_array_append(q, plist_new_string("IsSupervised"));
        plist_dict_set(extra, "Queries", q);
        assert_int_equal(enqueue(s, udid, uuid, "DeviceInformation", extra, NULL), 200);
    }
    drain(p->d, supervised == 1);
}

static void phone_free(phone_t *p)
{
    devsim_free(p->d);
    EVP_PKEY_free(p->key);
    X509_free(p->cert);
}

static long enable_watch(const testserver_t *s, const char *phone, const char *method)
{
    char *path = util_strdup_printf("/v1/devices/%s/watch-enrollment", phone);
    long st = testserver_api(s, "", method, path, NULL, 0, NULL);
    free(path);
    return st;
}

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} signer_t;

static signer_t watch_signer(const char *ca_pem, const char *ca_key)
{
    signer_t s;
    assert_int_equal(testpki_issue_device_identity(ca_pem, ca_key, "Apple Watch device identity", &s.key, &s.cert),
                     0);
    return s;
}

static void signer_free(signer_t *s)
{
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
}

/* The watch's POST; returns the reply (caller frees). */
static watchsim_reply_t watch_post(const testserver_t *s, const signer_t *sg, const char *udid, const void *token,
                                   size_t token_len)
{
    size_t len = 0;
    unsigned char *body = watchsim_machineinfo(sg->cert, sg->key, udid, "SERIAL-W", token, token_len, &len);
    assert_non_null(body);
    watchsim_reply_t r;
    assert_int_equal(watchsim_post(s->base_url, s->ca_path, body, len, &r), 0);
    free(body);
    return r;
}

/* First watch request: 403 + a security token (heap). */
static char *watch_first(const testserver_t *s, const signer_t *sg, const char *udid)
{
    watchsim_reply_t r = watch_post(s, sg, udid, NULL, 0);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.content_type, "application/json");
    char *st = watchsim_security_token(&r);
    assert_non_null(st);
    json_t *j = json_loadb((const char *)r.body, r.len, 0, NULL);
    assert_non_null(json_string_value(json_object_get(j, "description")));
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
    watchsim_reply_free(&r);
    assert_int_equal(strlen(st), 36);
    return st;
}

/* GET with the phone's identity over mTLS (asset data); heap body. */
static unsigned char *get_with_identity(const testserver_t *s, const char *path, X509 *cert, EVP_PKEY *key,
                                        long *status, size_t *len)
{
    char *cpath = util_strdup_printf("%s/asset-client.pem", pki_dir);
    char *kpath = util_strdup_printf("%s/asset-client.key", pki_dir);
    FILE *f = fopen(cpath, "w");
    PEM_write_X509(f, cert);
    fclose(f);
    f = fopen(kpath, "w");
    PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL);
    fclose(f);
    curl_buffer_t buf;
    memset(&buf, 0, sizeof buf);
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s%s", s->base_url, path);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_path);
    curl_easy_setopt(c, CURLOPT_SSLCERT, cpath);
    curl_easy_setopt(c, CURLOPT_SSLKEY, kpath);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &buf);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
    curl_easy_cleanup(c);
    unlink(cpath);
    unlink(kpath);
    free(cpath);
    free(kpath);
    free(url);
    *len = buf.len;
    return (unsigned char *)buf.data;
}

static int run_cli(const testserver_t *s, const char *command, const char *const *args)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = command;
    for (int i = 0; args[i] && n < 8; i++)
        argv[n++] = args[i];
    argv[n++] = "--server";
    argv[n++] = s->base_url;
    argv[n++] = "--cacert";
    argv[n++] = s->ca_path;
    argv[n++] = "--api-key";
    argv[n++] = TESTSERVER_API_KEY;
    argv[n] = NULL;
    fflush(stdout);
    return cli_watch_main(command, n, (char **)argv);
}

/* The server's pairing key and org id, for minting tokens the server
 * would accept (forgery is only possible with the key). */
static void server_secrets(const testserver_t *s, unsigned char key[PAIRING_KEY_LEN], char org[65])
{
    char err[256];
    assert_int_equal(pairing_key_load(s->dir, key, err, sizeof err), 0);
    X509 *ca = pki_load_cert(s->ca_path);
    assert_int_equal(pairing_org_id(ca, org), 0);
    X509_free(ca);
}

/* ---- the whole sequence ------------------------------------------------------------------- */

static void test_watch_end_to_end(void **state)
{
    (void)state;
    const char *phone_udid = "PHONE-E2E-0001", *watch_udid = "WATCH-E2E-0001";
    phone_t ph;
    phone_enroll(&srv, &ph, phone_udid, 1);
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/PHONE-E2E-0001/watch-enrollment", NULL, 0, &j),
                     200);
    assert_true(json_is_true(json_object_get(j, "supervised")));
    assert_true(json_is_false(json_object_get(j, "enabled")));
    json_decref(j);

    /* Admin enables watch enrollment; the phone syncs and holds the three
     * declarations. */
    assert_int_equal(enable_watch(&srv, phone_udid, "PUT"), 200);
    drain(ph.d, 1);
    const char *cfg = devsim_ddm_json(ph.d, "orchard.watch-enrollment.configuration");
    const char *asset = devsim_ddm_json(ph.d, "orchard.watch-enrollment.anchor");
    assert_non_null(cfg);
    assert_non_null(asset);
    assert_non_null(devsim_ddm_json(ph.d, "orchard.watch-enrollment.activation"));
    json_t *cj = json_loads(cfg, 0, NULL), *aj = json_loads(asset, 0, NULL);
    assert_string_equal(json_string_value(json_object_get(cj, "Type")), "com.apple.configuration.watch.enrollment");
    assert_string_equal(json_string_value(json_object_get(json_object_get(cj, "Payload"), "EnrollmentProfileURL")),
                        "https://127.0.0.1/enroll/watch");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(cj, "Payload"), "AnchorCertificateAssetReferences"), 0)),
                        "orchard.watch-enrollment.anchor");
    json_t *ref = json_object_get(json_object_get(aj, "Payload"), "Reference");
    assert_string_equal(json_string_value(json_object_get(ref, "DataURL")),
                        "https://127.0.0.1/mdm/assets/orchard-anchor.pem");
    assert_string_equal(json_string_value(json_object_get(ref, "ContentType")), "application/pem");
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(aj, "Payload"),
                                                                          "Authentication"),
                                                          "Type")),
                        "MDM");
    /* The asset data the phone downloads matches Size and Hash-SHA-256. */
    long status = 0;
    size_t len = 0;
    unsigned char *pem = get_with_identity(&srv, "/mdm/assets/orchard-anchor.pem", ph.cert, ph.key, &status, &len);
    assert_int_equal(status, 200);
    assert_int_equal((json_int_t)len, json_integer_value(json_object_get(ref, "Size")));
    unsigned char md[32];
    char hex[65];
    EVP_Digest(pem, len, md, NULL, EVP_sha256(), NULL);
    util_hex(md, 32, hex);
    assert_string_equal(hex, json_string_value(json_object_get(ref, "Hash-SHA-256")));
    assert_non_null(strstr((char *)pem, "-----BEGIN CERTIFICATE-----"));
    free(pem);
    json_decref(cj);
    json_decref(aj);

    /* Watch, first try → 403 + security token; phone GetToken → TokenData;
     * watch retry → the profile. */
    signer_t sg = watch_signer(apple_pem, apple_key);
    char *st = watch_first(&srv, &sg, watch_udid);
    unsigned char *tok = NULL;
    size_t tok_len = 0;
    assert_int_equal(watchsim_get_token(ph.d, NULL, st, phone_udid, watch_udid, &tok, &tok_len), 200);
    assert_non_null(tok);
    assert_int_equal(strncmp((char *)tok, "OWP1.", 5), 0);
    assert_true(testserver_log_contains(&srv, "pairing token issued: phone PHONE-E2E-0001 vouches for watch"));
    assert_false(testserver_log_contains(&srv, (char *)tok + 5)); /* no token in the log */
    watchsim_reply_t r = watch_post(&srv, &sg, watch_udid, tok, tok_len);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, PROFILE_CONTENT_TYPE);
    plist_t *p = profilecheck_open_file(r.body, r.len, srv.ca_path);
    assert_non_null(p);
    watchsim_reply_free(&r);
    schema_report_t rep;
    memset(&rep, 0, sizeof rep);
    int problems = schema_check_profile(profiles_dir, p, &rep);
    if (problems)
        fprintf(stderr, "schema problems:\n%s", rep.text ? rep.text : "");
    assert_int_equal(problems, 0);
    schema_report_free(&rep);
    assert_int_equal(plist_integer(plist_dict_get(p, "TargetDeviceType")), 2);
    const plist_t *mdm = profilecheck_payload(p, "com.apple.mdm", 0);
    assert_non_null(mdm);
    assert_null(plist_dict_get(mdm, "ServerCapabilities"));
    const plist_t *scep = plist_dict_get(profilecheck_payload(p, "com.apple.security.scep", 0), "PayloadContent");
    const char *challenge = plist_dict_get_string(scep, "Challenge");
    assert_non_null(challenge);
    assert_false(testserver_log_contains(&srv, challenge));
    json_t *pairings = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/PHONE-E2E-0001/watches", NULL, 0, &pairings), 200);
    json_t *first = json_array_get(json_object_get(pairings, "watches"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "watch_udid")), watch_udid);
    assert_string_equal(json_string_value(json_object_get(first, "state")), "profile_issued");
    json_decref(pairings);

    /* The watch runs SCEP with the bound challenge (CN = its UDID) and
     * checks in. */
    EVP_PKEY *wkey = NULL;
    X509 *wcert = NULL;
    char err[256];
    if (testscep_enroll(srv.base_url, srv.ca_path, challenge, watch_udid, &wkey, &wcert, err, sizeof err) != 0)
        fprintf(stderr, "SCEP: %s\n", err);
    assert_non_null(wcert);
    plist_free(p);
    devsim_t *wd = devsim_new(srv.base_url, srv.ca_path, watch_udid, wkey, wcert, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(wd), 200);
    assert_int_equal(devsim_token_update(wd), 200);
    assert_true(testserver_log_contains(&srv, "watch WATCH-E2E-0001 enrolled (paired with phone PHONE-E2E-0001)"));
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/PHONE-E2E-0001/watches", NULL, 0, &pairings), 200);
    first = json_array_get(json_object_get(pairings, "watches"), 0);
    assert_string_equal(json_string_value(json_object_get(first, "state")), "enrolled");
    json_decref(pairings);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/WATCH-E2E-0001", NULL, 0, &j), 200);
    assert_string_equal(json_string_value(json_object_get(j, "paired_phone")), phone_udid);
    assert_string_equal(json_string_value(json_object_get(j, "state")), "active");
    json_decref(j);
    assert_int_equal(run_cli(&srv, "watches", (const char *[]){phone_udid, NULL}), 0);
    assert_int_equal(run_cli(&srv, "watch-enrollment", (const char *[]){"status", phone_udid, NULL}), 0);
    assert_int_equal(run_cli(&srv, "watch-enrollment", (const char *[]){"frobnicate", phone_udid, NULL}), 2);

    /* Managing the watch: DeviceLock goes; RestartDevice and a profile with
     * a payload watchOS lacks are refused, nothing queued. */
    assert_int_equal(enqueue(&srv, watch_udid, "watch-lock-1", "DeviceLock", NULL, NULL), 200);
    assert_int_equal(enqueue(&srv, watch_udid, "watch-restart-1", "RestartDevice", NULL, &j), 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")),
                           "command RestartDevice is not supported on watchOS and WATCH-E2E-0001 is an Apple Watch"));
    json_decref(j);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/commands/watch-restart-1", NULL, 0, NULL), 404);
    plist_t *prof = plist_new_dict();
    plist_t *content = plist_new_array();
    plist_t *dock = plist_new_dict();
    plist_dict_set(dock, "PayloadType", plist_new_string("com.apple.dock"));
    plist_array_append(content, dock);
    plist_dict_set(prof, "PayloadContent", content);
    size_t xl;
    char *pxml = plist_to_xml(prof, &xl);
    plist_free(prof);
    plist_t *extra = plist_new_dict();
    plist_dict_set(extra, "Payload", plist_new_data((unsigned char *)pxml, xl));
    free(pxml);
    assert_int_equal(enqueue(&srv, watch_udid, "watch-dock-1", "InstallProfile", extra, &j), 400);
    assert_non_null(strstr(json_string_value(json_object_get(j, "error")), "profile payload com.apple.dock"));
    json_decref(j);
    /* The same refused command is fine for the phone. */
    assert_int_equal(enqueue(&srv, phone_udid, "phone-restart-1", "RestartDevice", NULL, NULL), 200);
    drain(ph.d, 1);
    drain(wd, 1);

    devsim_free(wd);
    EVP_PKEY_free(wkey);
    X509_free(wcert);
    signer_free(&sg);
    free(st);
    free(tok);
    phone_free(&ph);
}

/* ---- refusals ----------------------------------------------------------------------------- */

/* A watch retry that must be refused with `needle` in the log. */
static void expect_retry_refused(const testserver_t *s, const signer_t *sg, const char *udid, const void *tok,
                                 size_t len, long status, const char *needle)
{
    snapshot_t before = snap(s);
    watchsim_reply_t r = watch_post(s, sg, udid, tok, len);
    if (r.status != status)
        fprintf(stderr, "POST /enroll/watch: %ld %s\n", r.status, r.body ? (char *)r.body : "");
    assert_int_equal(r.status, status);
    watchsim_reply_free(&r);
    if (!testserver_log_contains(s, needle))
        fprintf(stderr, "log lacks: %s\n", needle);
    assert_true(testserver_log_contains(s, needle));
    assert_nothing_stored(s, before);
}

static void expect_gettoken_refused(const testserver_t *s, phone_t *ph, const char *service, const char *st,
                                    const char *phone_udid, const char *watch_udid, long status, const char *needle)
{
    snapshot_t before = snap(s);
    unsigned char *tok = NULL;
    size_t len = 0;
    assert_int_equal(watchsim_get_token(ph->d, service, st, phone_udid, watch_udid, &tok, &len), status);
    assert_null(tok);
    if (!testserver_log_contains(s, needle))
        fprintf(stderr, "log lacks: %s\n", needle);
    assert_true(testserver_log_contains(s, needle));
    assert_nothing_stored(s, before);
}

static void test_watch_refusals(void **state)
{
    (void)state;
    phone_t ph, unsup, plain;
    phone_enroll(&srv, &ph, "PHONE-NEG-0001", 1);
    phone_enroll(&srv, &unsup, "PHONE-NEG-UNSUP", 0);
    phone_enroll(&srv, &plain, "PHONE-NEG-PLAIN", 1);
    assert_int_equal(enable_watch(&srv, "PHONE-NEG-0001", "PUT"), 200);
    assert_int_equal(enable_watch(&srv, "PHONE-NEG-UNSUP", "PUT"), 200);
    drain(ph.d, 1);
    drain(unsup.d, 0);
    signer_t sg = watch_signer(apple_pem, apple_key);

    /* No PAIRING_TOKEN: 403 with a security token, logged; no pairing. */
    snapshot_t before = snap(&srv);
    char *st = watch_first(&srv, &sg, "WATCH-NEG-A");
    assert_true(testserver_log_contains(&srv, "watch MachineInfo without PAIRING_TOKEN: security token issued"));
    snapshot_t after = snap(&srv);
    assert_int_equal(after.pairings, before.pairings);
    assert_int_equal(after.challenges, before.challenges);
    assert_int_equal(count_rows(&srv, "enrollments", "id = 'WATCH-NEG-A'"), 0);

    /* GetToken refusals. */
    expect_gettoken_refused(&srv, &ph, "com.apple.maid", st, "PHONE-NEG-0001", "WATCH-NEG-A", 400,
                            "GetToken: unsupported TokenServiceType 'com.apple.maid'");
    expect_gettoken_refused(&srv, &unsup, NULL, st, "PHONE-NEG-UNSUP", "WATCH-NEG-A", 403,
                            "GetToken: phone PHONE-NEG-UNSUP is not supervised (IsSupervised false)");
    expect_gettoken_refused(&srv, &ph, NULL, st, "PHONE-NEG-PLAIN", "WATCH-NEG-A", 403,
                            "GetToken: PhoneUDID PHONE-NEG-PLAIN is not the authenticated phone PHONE-NEG-0001");
    expect_gettoken_refused(&srv, &plain, NULL, st, "PHONE-NEG-PLAIN", "WATCH-NEG-A", 403,
                            "GetToken: watch enrollment is not enabled for phone PHONE-NEG-PLAIN");
    expect_gettoken_refused(&srv, &ph, NULL, "5D1A0C2E-0000-4000-8000-000000000000", "PHONE-NEG-0001", "WATCH-NEG-A",
                            403, "GetToken: security token for watch WATCH-NEG-A was never issued by orchard");
    expect_gettoken_refused(&srv, &ph, NULL, st, "PHONE-NEG-0001", "WATCH-NEG-OTHER", 403,
                            "GetToken: security token for watch WATCH-NEG-OTHER was issued to another watch");
    expect_gettoken_refused(&srv, &ph, NULL, st, "PHONE-NEG-0001", NULL, 400,
                            "GetToken: TokenParameters needs SecurityToken, PhoneUDID and WatchUDID");

    /* A good token, then the retry refusals. */
    unsigned char *tok = NULL;
    size_t tok_len = 0;
    assert_int_equal(watchsim_get_token(ph.d, NULL, st, "PHONE-NEG-0001", "WATCH-NEG-A", &tok, &tok_len), 200);
    /* Forged: one MAC character changed. */
    unsigned char *forged = (unsigned char *)strdup((char *)tok);
    forged[tok_len - 2] = forged[tok_len - 2] == 'A' ? 'B' : 'A';
    expect_retry_refused(&srv, &sg, "WATCH-NEG-A", forged, tok_len, 403,
                         "watch WATCH-NEG-A: pairing token MAC does not verify");
    free(forged);
    /* Another watch presents it. */
    expect_retry_refused(&srv, &sg, "WATCH-NEG-B", tok, tok_len, 403,
                         "watch WATCH-NEG-B: pairing token is for another watch (WATCH-NEG-A)");
    /* Tampered MachineInfo signature. */
    size_t mlen = 0;
    unsigned char *mi = watchsim_machineinfo(sg.cert, sg.key, "WATCH-NEG-A", "SERIAL-W", tok, tok_len, &mlen);
    unsigned char *hit = memmem(mi, mlen, "WATCH-NEG-A", 11);
    hit[6] = 'X';
    before = snap(&srv);
    watchsim_reply_t r;
    assert_int_equal(watchsim_post(srv.base_url, srv.ca_path, mi, mlen, &r), 0);
    assert_int_equal(r.status, 403);
    watchsim_reply_free(&r);
    free(mi);
    assert_true(testserver_log_contains(&srv, "watch enrollment: MachineInfo signature does not verify"));
    assert_nothing_stored(&srv, before);
    /* A signer outside --machineinfo-ca. */
    signer_t evil = watch_signer(evil_pem, evil_key);
    mi = watchsim_machineinfo(evil.cert, evil.key, "WATCH-NEG-A", "SERIAL-W", tok, tok_len, &mlen);
    assert_int_equal(watchsim_post(srv.base_url, srv.ca_path, mi, mlen, &r), 0);
    assert_int_equal(r.status, 403);
    watchsim_reply_free(&r);
    free(mi);
    assert_true(testserver_log_contains(&srv, "watch enrollment: MachineInfo signer is not trusted"));
    signer_free(&evil);

    /* The real one works once; the replay is refused. */
    r = watch_post(&srv, &sg, "WATCH-NEG-A", tok, tok_len);
    assert_int_equal(r.status, 200);
    watchsim_reply_free(&r);
    expect_retry_refused(&srv, &sg, "WATCH-NEG-A", tok, tok_len, 403,
                         "watch WATCH-NEG-A: security token was already used (replayed pairing token)");
    free(tok);
    free(st);

    /* A validly MACed token whose security token was never issued (made
     * with the server's own key: only forgeable by someone holding it). */
    unsigned char key[PAIRING_KEY_LEN];
    char org[65];
    server_secrets(&srv, key, org);
    pairing_claims_t c = {.security_token = "00000000-1111-4222-8333-444444444444",
                          .phone_udid = "PHONE-NEG-0001",
                          .watch_udid = "WATCH-NEG-C",
                          .org = org,
                          .iat = util_now(),
                          .exp = util_now() + 300};
    size_t mlen2 = 0;
    char *minted = pairing_token_mint(key, &c, &mlen2);
    expect_retry_refused(&srv, &sg, "WATCH-NEG-C", minted, mlen2, 403,
                         "watch WATCH-NEG-C: the pairing token's security token was never issued");
    free(minted);
    /* Garbage in PAIRING_TOKEN. */
    expect_retry_refused(&srv, &sg, "WATCH-NEG-C", "hello", 5, 403,
                         "watch WATCH-NEG-C: pairing token is not an orchard OWP1 token");

    /* A phone that never reported IsSupervised. */
    phone_t unknown;
    phone_enroll(&srv, &unknown, "PHONE-NEG-UNKNOWN", -1);
    expect_gettoken_refused(&srv, &unknown, NULL, "00000000-1111-4222-8333-444444444444", "PHONE-NEG-UNKNOWN",
                            "WATCH-NEG-C", 403, "is not supervised (IsSupervised not reported yet");
    /* orchard asks the phone itself (once, however often pairing is tried),
     * and enabling watch enrollment for such a phone asks too. */
    assert_true(testserver_log_contains(&srv, "phone PHONE-NEG-UNKNOWN: asked whether it is supervised"));
    json_t *en = NULL;
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/devices/PHONE-NEG-UNKNOWN/watch-enrollment", NULL, 0, &en),
                     200);
    assert_int_equal(json_integer_value(json_object_get(en, "supervision_queries")), 0); /* one already waits */
    json_decref(en);
    assert_int_equal(count_rows(&srv, "command_targets t JOIN commands c ON c.id = t.command_id",
                                "t.enrollment_id = 'PHONE-NEG-UNKNOWN' AND c.uuid LIKE 'orchard-supervision-%'"),
                     1);
    devsim_reply_t q;
    for (;;) { /* the DDM sync command may come first */
        assert_int_equal(devsim_idle(unknown.d, &q), 0);
        const char *rt = devsim_request_type(&q);
        assert_non_null(rt);
        if (strcmp(rt, "DeviceInformation") == 0)
            break;
        char *uuid = strdup(devsim_command_uuid(&q));
        devsim_reply_free(&q);
        devsim_reply_t ack;
        assert_int_equal(devsim_report(unknown.d, uuid, "Acknowledged", NULL, &ack), 0);
        devsim_reply_free(&ack);
        free(uuid);
    }
    devsim_reply_free(&q);
    phone_free(&unknown);

    /* Admin API input. */
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/devices/NO-SUCH-PHONE/watch-enrollment", NULL, 0, NULL),
                     404);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/devices/PHONE-NEG-0001/watch-enrollment", NULL, 0, NULL),
                     405);
    assert_int_equal(testserver_api(&srv, "", "DELETE", "/v1/devices/PHONE-NEG-PLAIN/watch-enrollment", NULL, 0,
                                    NULL),
                     404);
    /* Wrong method on the watch endpoint. */
    signer_free(&sg);
    phone_free(&ph);
    phone_free(&unsup);
    phone_free(&plain);
}

/* Lifetime: with --watch-token-ttl 1 both the security token and the
 * pairing token expire. */
static void test_watch_expiry(void **state)
{
    (void)state;
    phone_t ph;
    phone_enroll(&srv_short, &ph, "PHONE-TTL-0001", 1);
    assert_int_equal(enable_watch(&srv_short, "PHONE-TTL-0001", "PUT"), 200);
    drain(ph.d, 1);
    signer_t sg = watch_signer(apple_pem, apple_key);
    /* Security token expired before GetToken. */
    char *st = watch_first(&srv_short, &sg, "WATCH-TTL-A");
    sleep(2);
    expect_gettoken_refused(&srv_short, &ph, NULL, st, "PHONE-TTL-0001", "WATCH-TTL-A", 403,
                            "GetToken: security token for watch WATCH-TTL-A has expired");
    free(st);
    /* Pairing token expired before the retry. */
    st = watch_first(&srv_short, &sg, "WATCH-TTL-B");
    unsigned char *tok = NULL;
    size_t tok_len = 0;
    assert_int_equal(watchsim_get_token(ph.d, NULL, st, "PHONE-TTL-0001", "WATCH-TTL-B", &tok, &tok_len), 200);
    sleep(2);
    expect_retry_refused(&srv_short, &sg, "WATCH-TTL-B", tok, tok_len, 403, "watch WATCH-TTL-B: pairing token expired");
    free(tok);
    free(st);
    signer_free(&sg);
    phone_free(&ph);
}

/* The phone leaves: its watches are flagged, it can vouch for no more;
 * disabling withdraws the declarations; a reset watch pairs again. */
static void test_watch_lifecycle(void **state)
{
    (void)state;
    phone_t ph;
    phone_enroll(&srv, &ph, "PHONE-LIFE-0001", 1);
    assert_int_equal(enable_watch(&srv, "PHONE-LIFE-0001", "PUT"), 200);
    drain(ph.d, 1);
    signer_t sg = watch_signer(apple_pem, apple_key);
    for (int round = 0; round < 2; round++) { /* the second round: the same watch, reset, pairs again */
        char *st = watch_first(&srv, &sg, "WATCH-LIFE-A");
        unsigned char *tok = NULL;
        size_t tok_len = 0;
        assert_int_equal(watchsim_get_token(ph.d, NULL, st, "PHONE-LIFE-0001", "WATCH-LIFE-A", &tok, &tok_len), 200);
        watchsim_reply_t r = watch_post(&srv, &sg, "WATCH-LIFE-A", tok, tok_len);
        assert_int_equal(r.status, 200);
        watchsim_reply_free(&r);
        free(tok);
        free(st);
    }
    assert_int_equal(count_rows(&srv, "watch_pairings", "watch_udid = 'WATCH-LIFE-A'"), 1);

    /* Group enablement, and disabling. */
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/groups/watch-fleet/watch-enrollment", NULL, 0, NULL), 200);
    assert_int_equal(run_cli(&srv, "watch-enrollment", (const char *[]){"disable", "--group", "watch-fleet", NULL}),
                     0);
    assert_int_equal(run_cli(&srv, "watch-enrollment", (const char *[]){"disable", "PHONE-LIFE-0001", NULL}), 0);
    drain(ph.d, 1);
    assert_null(devsim_ddm_json(ph.d, "orchard.watch-enrollment.configuration"));
    char *st = watch_first(&srv, &sg, "WATCH-LIFE-B");
    expect_gettoken_refused(&srv, &ph, NULL, st, "PHONE-LIFE-0001", "WATCH-LIFE-B", 403,
                            "GetToken: watch enrollment is not enabled for phone PHONE-LIFE-0001");
    assert_int_equal(run_cli(&srv, "watch-enrollment", (const char *[]){"enable", "PHONE-LIFE-0001", NULL}), 0);
    drain(ph.d, 1);
    unsigned char *tok = NULL;
    size_t tok_len = 0;
    assert_int_equal(watchsim_get_token(ph.d, NULL, st, "PHONE-LIFE-0001", "WATCH-LIFE-B", &tok, &tok_len), 200);

    /* Erasing the phone flags its watches (an erased phone sends no CheckOut). */
    assert_int_equal(enqueue(&srv, "PHONE-LIFE-0001", "phone-erase-1", "EraseDevice", NULL, NULL), 200);
    devsim_reply_t er;
    assert_int_equal(devsim_idle(ph.d, &er), 0);
    assert_string_equal(devsim_request_type(&er), "EraseDevice");
    devsim_reply_free(&er);
    assert_int_equal(devsim_report(ph.d, "phone-erase-1", "Acknowledged", NULL, &er), 0);
    devsim_reply_free(&er);
    assert_true(testserver_log_contains(
        &srv, "watch WATCH-LIFE-A flagged: its phone PHONE-LIFE-0001 was erased (EraseDevice acknowledged)"));
    assert_int_equal(count_rows(&srv, "events", "enrollment_id = 'WATCH-LIFE-A' AND kind = 'phone_unenrolled'"), 1);

    /* CheckOut: watches flagged; the pending pairing token no longer works;
     * no new tokens. */
    assert_int_equal(devsim_checkout(ph.d), 200);
    json_t *j = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/PHONE-LIFE-0001/watches", NULL, 0, &j), 200);
    json_t *w0 = json_array_get(json_object_get(j, "watches"), 0);
    assert_string_equal(json_string_value(json_object_get(w0, "state")), "phone_gone");
    json_decref(j);
    assert_true(testserver_log_contains(&srv, "watch WATCH-LIFE-A flagged: its phone PHONE-LIFE-0001 checked out"));
    assert_int_equal(count_rows(&srv, "events", "enrollment_id = 'WATCH-LIFE-A' AND kind = 'phone_unenrolled'"), 2);
    expect_retry_refused(&srv, &sg, "WATCH-LIFE-B", tok, tok_len, 403,
                         "watch WATCH-LIFE-B: phone PHONE-LIFE-0001 is not active (state inactive)");
    free(tok);
    free(st);
    st = watch_first(&srv, &sg, "WATCH-LIFE-C");
    expect_gettoken_refused(&srv, &ph, NULL, st, "PHONE-LIFE-0001", "WATCH-LIFE-C", 403,
                            "GetToken: phone PHONE-LIFE-0001 is not active (state inactive)");
    free(st);
    signer_free(&sg);
    phone_free(&ph);
}

static void test_watch_endpoint_misuse(void **state)
{
    (void)state;
    watchsim_reply_t r;
    assert_int_equal(watchsim_post(srv.base_url, srv.ca_path, "", 0, &r), 0);
    assert_int_equal(r.status, 400);
    watchsim_reply_free(&r);
    assert_true(testserver_log_contains(&srv, "watch enrollment: MachineInfo is missing (empty body)"));
    long st = testserver_api(&srv, "", "GET", "/v1/devices/x/watches/extra", NULL, 0, NULL);
    assert_int_equal(st, 404);
}

/* ---- setup ---------------------------------------------------------------------------------- */

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *env = getenv("ORCHARD_APPLE_SCHEMAS");
    snprintf(profiles_dir, sizeof profiles_dir, "%s/mdm/profiles", env ? env : "../shared/apple-device-management");
    snprintf(pki_dir, sizeof pki_dir, "/tmp/orchard-watch-XXXXXX");
    if (!mkdtemp(pki_dir))
        return -1;
    snprintf(apple_pem, sizeof apple_pem, "%s/appleca.pem", pki_dir);
    snprintf(apple_key, sizeof apple_key, "%s/appleca.key", pki_dir);
    snprintf(evil_pem, sizeof evil_pem, "%s/evilca.pem", pki_dir);
    snprintf(evil_key, sizeof evil_key, "%s/evilca.key", pki_dir);
    if (testpki_make_ca(pki_dir, "appleca") != 0 || testpki_make_ca(pki_dir, "evilca") != 0)
        return -1;
    const char *args[] = {"--push-topic", TOPIC, "--machineinfo-ca", apple_pem, "--org-name", "Watch Org", NULL};
    const char *args_short[] = {"--push-topic", TOPIC, "--machineinfo-ca", apple_pem, "--watch-token-ttl", "1", NULL};
    if (testserver_start(&srv, args) != 0 || testserver_start(&srv_short, args_short) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (srv.pid > 0 && testserver_stop(&srv) != 0)
        rc = -1;
    if (srv_short.pid > 0 && testserver_stop(&srv_short) != 0)
        rc = -1;
    char *cmd = util_strdup_printf("rm -rf '%s'", pki_dir);
    if (pki_dir[0] && system(cmd) != 0)
        rc = -1;
    free(cmd);
    curl_global_cleanup();
    return rc;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_watch_end_to_end),
        cmocka_unit_test(test_watch_refusals),
        cmocka_unit_test(test_watch_expiry),
        cmocka_unit_test(test_watch_lifecycle),
        cmocka_unit_test(test_watch_endpoint_misuse),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
