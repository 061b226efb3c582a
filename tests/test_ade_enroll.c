/* The ADE configuration URL and await configuration end to end (docs/ade.md,
 * "Configuration URL").
 *
 * Real servers over HTTPS: srv (no authentication, --ade-min-os 17.4,
 * --ade-min-build 21E219) and srv_auth (--ade-auth with a Digest user file,
 * nonces fresh for 3 s). The MachineInfo is signed by a test "Apple" CA
 * given as --machineinfo-ca; ADE devices, tokens and profiles are put into
 * the server's database through the store interface, as the device sync
 * would. devsim plays enrolled devices.
 *
 * Every refusal: its status, its log line, and nothing stored (no SCEP
 * challenge, no "enrolled through ADE" record, no enrollment).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "ade_enroll.h"
#include "cli_ade_setup.h"
#include "devsim.h"
#include "digest_auth.h"
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

#define TOPIC "com.apple.mgmt.External.aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
#define REALM "Orchard Test Enrollment"
#define PROFILE_SUP "11111111-AAAA-4BBB-8CCC-000000000001"
#define PROFILE_UNSUP "11111111-AAAA-4BBB-8CCC-000000000002"

static char pki_dir[64], apple_pem[128], apple_key[128], evil_pem[128], evil_key[128], users_path[128];
static char profiles_dir[600], errors_dir[600];
static testserver_t srv, srv_auth;

/* ---- database helpers ------------------------------------------------------------------ */

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

static long enrollment_column(const testserver_t *s, const char *udid, const char *column)
{
    char *where = util_strdup_printf("id = '%s' AND %s = 1", udid, column);
    long n = count_rows(s, "enrollments", where);
    free(where);
    char *minus = util_strdup_printf("id = '%s' AND %s = -1", udid, column);
    long m = count_rows(s, "enrollments", minus);
    free(minus);
    return n ? 1 : m ? -1 : 0;
}

typedef struct {
    long challenges, settings, enrollments, certs;
} snapshot_t;

static snapshot_t snap(const testserver_t *s)
{
    snapshot_t n = {count_rows(s, "scep_challenges", NULL), count_rows(s, "settings", NULL),
                    count_rows(s, "enrollments", NULL), count_rows(s, "issued_certs", NULL)};
    return n;
}

static void assert_nothing_stored(const testserver_t *s, snapshot_t before)
{
    snapshot_t now = snap(s);
    assert_int_equal(now.challenges, before.challenges);
    assert_int_equal(now.settings, before.settings);
    assert_int_equal(now.enrollments, before.enrollments);
    assert_int_equal(now.certs, before.certs);
}

static store_t *open_store(const testserver_t *s)
{
    char *url = util_strdup_printf("sqlite:%s/orchard.db", s->dir);
    char *err = NULL;
    store_t *st = store_open(url, &err);
    if (!st)
        fprintf(stderr, "store_open: %s\n", err ? err : "?");
    free(err);
    free(url);
    assert_non_null(st);
    return st;
}

/* Assigned to token "tok-1" with `profile` (NULL: none); deleted = released. */
static void ade_assign(const testserver_t *s, const char *serial, const char *profile, int deleted)
{
    store_t *st = open_store(s);
    ade_token_t t = {.name = "tok-1", .sealed = (unsigned char *)"sealed", .sealed_len = 6};
    ade_token_t have;
    if (st->ops->ade_token_get(st, "tok-1", &have) == STORE_OK)
        ade_token_free(&have);
    else
        assert_int_equal(st->ops->ade_token_put(st, &t, util_now()), STORE_OK);
    static int64_t op_date = 1700000000;
    ade_device_t d;
    memset(&d, 0, sizeof d);
    d.serial_number = (char *)serial;
    d.token_name = "tok-1";
    d.model = "iPhone 15";
    d.op_type = "added";
    d.op_date = ++op_date;
    d.device_assigned_date = op_date;
    int applied = 0;
    size_t added = 0;
    assert_int_equal(st->ops->ade_devices_apply(st, &d, 1, util_now(), &applied, &added), STORE_OK);
    if (deleted) {
        d.op_type = "deleted";
        d.op_date = ++op_date;
        assert_int_equal(st->ops->ade_devices_apply(st, &d, 1, util_now(), &applied, &added), STORE_OK);
    }
    if (profile)
        assert_int_equal(st->ops->ade_device_set_profile(st, serial, profile, "assigned", util_now()), STORE_OK);
    store_close(st);
}

static void ade_define_profile(const testserver_t *s, const char *uuid, int supervised)
{
    store_t *st = open_store(s);
    char *json = util_strdup_printf("{\"profile_name\":\"test\",\"url\":\"%s/enroll/ade\",\"is_supervised\":%s,"
                                    "\"await_device_configured\":true}",
                                    s->base_url, supervised ? "true" : "false");
    ade_profile_t p = {.profile_uuid = (char *)uuid, .token_name = "tok-1", .name = "test", .json = json,
                       .created_at = util_now()};
    assert_int_equal(st->ops->ade_profile_put(st, &p), STORE_OK);
    free(json);
    store_close(st);
}

/* ---- the device's MachineInfo POST -------------------------------------------------------- */

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} signer_t;

static signer_t device_signer(const char *ca_pem, const char *ca_key)
{
    signer_t s;
    assert_int_equal(testpki_issue_device_identity(ca_pem, ca_key, "iPhone device identity", &s.key, &s.cert), 0);
    return s;
}

static void signer_free(signer_t *s)
{
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
}

/* os NULL: no OS_VERSION (before iOS 17). */
static unsigned char *machineinfo_of(const signer_t *sg, const char *product, const char *udid, const char *serial,
                                     const char *os, size_t *len)
{
    plist_t *d = plist_new_dict();
    plist_dict_set(d, "UDID", plist_new_string(udid));
    plist_dict_set(d, "SERIAL", plist_new_string(serial));
    plist_dict_set(d, "PRODUCT", plist_new_string(product));
    plist_dict_set(d, "VERSION", plist_new_string("21E236"));
    if (os)
        plist_dict_set(d, "OS_VERSION", plist_new_string(os));
    plist_dict_set(d, "LANGUAGE", plist_new_string("en"));
    plist_dict_set(d, "MDM_CAN_REQUEST_SOFTWARE_UPDATE", plist_new_bool(1));
    size_t xml_len = 0;
    char *xml = plist_to_xml(d, &xml_len);
    plist_free(d);
    BIO *in = BIO_new_mem_buf(xml, (int)xml_len);
    CMS_ContentInfo *cms = CMS_sign(sg->cert, sg->key, NULL, in, CMS_BINARY);
    assert_non_null(cms);
    unsigned char *der = NULL;
    int n = i2d_CMS_ContentInfo(cms, &der);
    assert_true(n > 0);
    unsigned char *copy = malloc((size_t)n);
    memcpy(copy, der, (size_t)n);
    *len = (size_t)n;
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    free(xml);
    return copy;
}

/* An iPhone's. */
static unsigned char *machineinfo(const signer_t *sg, const char *udid, const char *serial, const char *os,
                                  size_t *len)
{
    return machineinfo_of(sg, "iPhone16,1", udid, serial, os, len);
}

typedef struct {
    long status;
    char content_type[128];
    char *body;
    size_t len;
    char challenges[DIGEST_MAX_CHALLENGES + 2][1024]; /* WWW-Authenticate values */
    int nchallenges;
} reply_t;

static size_t body_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    reply_t *r = ud;
    size_t n = size * nmemb;
    char *b = realloc(r->body, r->len + n + 1);
    memcpy(b + r->len, ptr, n);
    r->len += n;
    b[r->len] = '\0';
    r->body = b;
    return n;
}

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    reply_t *r = ud;
    size_t n = size * nmemb;
    if (strncmp(ptr, "HTTP/", 5) == 0)
        r->nchallenges = 0; /* a new response (curl's Digest retry) */
    if (n > 18 && strncasecmp(ptr, "WWW-Authenticate: ", 18) == 0 &&
        r->nchallenges < (int)(sizeof r->challenges / sizeof r->challenges[0])) {
        size_t vlen = n - 18;
        while (vlen && (ptr[18 + vlen - 1] == '\r' || ptr[18 + vlen - 1] == '\n'))
            vlen--;
        snprintf(r->challenges[r->nchallenges++], sizeof r->challenges[0], "%.*s", (int)vlen, ptr + 18);
    }
    return n;
}

/* POST to /enroll/ade: authorization = a whole header value (NULL: none),
 * or user/password for libcurl's own Digest. */
static reply_t post_ade(const testserver_t *s, const void *body, size_t len, const char *authorization,
                        const char *user, const char *password)
{
    reply_t r;
    memset(&r, 0, sizeof r);
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s/enroll/ade", s->base_url);
    struct curl_slist *h = curl_slist_append(NULL, "Content-Type: application/pkcs7-signature");
    char *auth_line = authorization ? util_strdup_printf("Authorization: %s", authorization) : NULL;
    if (auth_line)
        h = curl_slist_append(h, auth_line);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_path);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)len);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &r);
    if (user) {
        curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_DIGEST);
        curl_easy_setopt(c, CURLOPT_USERNAME, user);
        curl_easy_setopt(c, CURLOPT_PASSWORD, password);
    }
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r.status);
    char *ct = NULL;
    curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
    snprintf(r.content_type, sizeof r.content_type, "%s", ct ? ct : "");
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(auth_line);
    free(url);
    return r;
}

static void reply_free(reply_t *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static void expect_log(const testserver_t *s, const char *needle)
{
    if (!testserver_log_contains(s, needle))
        fprintf(stderr, "log lacks: %s\n", needle);
    assert_true(testserver_log_contains(s, needle));
}

/* ---- profile checks ------------------------------------------------------------------------ */

/* The schema-checked profile's one-time SCEP challenge (heap). */
static char *checked_profile_challenge(const testserver_t *s, const reply_t *r)
{
    assert_int_equal(r->status, 200);
    assert_string_equal(r->content_type, PROFILE_CONTENT_TYPE);
    plist_t *p = profilecheck_open_file(r->body, r->len, s->ca_path);
    assert_non_null(p);
    schema_report_t rep;
    memset(&rep, 0, sizeof rep);
    int problems = schema_check_profile(profiles_dir, p, &rep);
    if (problems)
        fprintf(stderr, "schema problems:\n%s", rep.text ? rep.text : "");
    assert_int_equal(problems, 0);
    schema_report_free(&rep);
    assert_non_null(profilecheck_payload(p, "com.apple.mdm", 0));
    const plist_t *scep = plist_dict_get(profilecheck_payload(p, "com.apple.security.scep", 0), "PayloadContent");
    const char *challenge = plist_dict_get_string(scep, "Challenge");
    assert_non_null(challenge);
    char *copy = strdup(challenge);
    plist_free(p);
    return copy;
}

/* A 403 error body: JSON content type, the code, and valid against
 * Apple's error schema (mdm/errors/<code without com.apple.>.yaml). */
static json_t *checked_error(const reply_t *r, const char *code)
{
    assert_int_equal(r->status, 403);
    assert_string_equal(r->content_type, "application/json");
    json_t *j = json_loadb(r->body, r->len, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "code")), code);
    /* Flat strings and one dictionary of strings: enough for these schemas. */
    plist_t *d = plist_new_dict();
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) {
        if (json_is_string(v)) {
            plist_dict_set(d, k, plist_new_string(json_string_value(v)));
        } else if (json_is_object(v)) {
            plist_t *sub = plist_new_dict();
            const char *k2;
            json_t *v2;
            json_object_foreach(v, k2, v2) plist_dict_set(sub, k2, plist_new_string(json_string_value(v2)));
            plist_dict_set(d, k, sub);
        }
    }
    char *path = util_strdup_printf("%s/%s.yaml", errors_dir, code + strlen("com.apple."));
    char err[256];
    schema_t *sc = schema_load(path, err, sizeof err);
    if (!sc)
        fprintf(stderr, "schema %s: %s\n", path, err);
    assert_non_null(sc);
    schema_report_t rep;
    memset(&rep, 0, sizeof rep);
    const schema_t *list[] = {sc};
    int problems = schema_check_dict(list, 1, d, code, &rep);
    if (problems)
        fprintf(stderr, "schema problems:\n%s", rep.text ? rep.text : "");
    assert_int_equal(problems, 0);
    schema_report_free(&rep);
    schema_free(sc);
    plist_free(d);
    free(path);
    return j;
}

/* ---- an enrolled device -------------------------------------------------------------------- */

typedef struct {
    devsim_t *d;
    EVP_PKEY *key;
    X509 *cert;
} device_t;

/* SCEP with the profile's challenge (CN = UDID), then Authenticate. */
static void device_enroll_with(const testserver_t *s, device_t *dev, const char *udid, const char *challenge)
{
    char err[256];
    if (testscep_enroll(s->base_url, s->ca_path, challenge, udid, &dev->key, &dev->cert, err, sizeof err) != 0)
        fprintf(stderr, "SCEP: %s\n", err);
    assert_non_null(dev->cert);
    dev->d = devsim_new(s->base_url, s->ca_path, udid, dev->key, dev->cert, DEVSIM_AUTH_MTLS);
    assert_non_null(dev->d);
    assert_int_equal(devsim_authenticate(dev->d), 200);
}

static void device_free(device_t *dev)
{
    devsim_free(dev->d);
    EVP_PKEY_free(dev->key);
    X509_free(dev->cert);
}

/* TokenUpdate with AwaitingConfiguration (awaiting < 0: key left out). */
static long token_update_awaiting(devsim_t *d, int awaiting)
{
    plist_t *m = plist_new_dict();
    static const unsigned char token[] = {1, 2, 3, 4, 5, 6, 7, 8};
    plist_dict_set(m, "MessageType", plist_new_string("TokenUpdate"));
    plist_dict_set(m, "UDID", plist_new_string(devsim_udid(d)));
    plist_dict_set(m, "Topic", plist_new_string(TOPIC));
    plist_dict_set(m, "Token", plist_new_data(token, sizeof token));
    plist_dict_set(m, "PushMagic", plist_new_string("magic-ade"));
    if (awaiting >= 0)
        plist_dict_set(m, "AwaitingConfiguration", plist_new_bool(awaiting));
    size_t len;
    char *xml = devsim_plist_xml(m, &len);
    plist_free(m);
    devsim_reply_t r;
    assert_int_equal(devsim_send(d, "/mdm/checkin", "application/x-apple-aspen-mdm-checkin", xml, len, &r), 0);
    long st = r.status;
    devsim_reply_free(&r);
    free(xml);
    return st;
}

/* Enrolls `udid` through the configuration URL of `s` (no Digest). */
static void ade_enroll_device(const testserver_t *s, const signer_t *sg, device_t *dev, const char *udid,
                              const char *serial)
{
    size_t len;
    unsigned char *mi = machineinfo(sg, udid, serial, "17.5", &len);
    reply_t r = post_ade(s, mi, len, NULL, NULL, NULL);
    char *challenge = checked_profile_challenge(s, &r);
    reply_free(&r);
    free(mi);
    device_enroll_with(s, dev, udid, challenge);
    free(challenge);
}

/* ---- tests ----------------------------------------------------------------------------------- */

static void test_ade_profile_and_supervision(void **state)
{
    (void)state;
    signer_t sg = device_signer(apple_pem, apple_key);
    ade_define_profile(&srv, PROFILE_SUP, 1);
    ade_define_profile(&srv, PROFILE_UNSUP, 0);
    ade_assign(&srv, "ADE-SERIAL-0001", PROFILE_SUP, 0);
    ade_assign(&srv, "ADE-SERIAL-0002", PROFILE_UNSUP, 0);

    /* 17.10 is above 17.4 numerically (not as text). */
    size_t len;
    unsigned char *mi = machineinfo(&sg, "ADE-UDID-0001", "ADE-SERIAL-0001", "17.10", &len);
    long challenges = count_rows(&srv, "scep_challenges", NULL);
    reply_t r = post_ade(&srv, mi, len, NULL, NULL, NULL);
    char *challenge = checked_profile_challenge(&srv, &r);
    reply_free(&r);
    free(mi);
    assert_int_equal(count_rows(&srv, "scep_challenges", "enrollment_id = 'ADE-UDID-0001'"), 1);
    assert_int_equal(count_rows(&srv, "scep_challenges", NULL), challenges + 1);
    assert_int_equal(count_rows(&srv, "settings", "name = 'ade.enrolled.ADE-UDID-0001'"), 1);
    expect_log(&srv, "ADE enrollment profile for serial ADE-SERIAL-0001 udid=ADE-UDID-0001");
    assert_false(testserver_log_contains(&srv, challenge));

    /* SCEP (bound challenge, CN = UDID), Authenticate → supervised. */
    device_t dev;
    device_enroll_with(&srv, &dev, "ADE-UDID-0001", challenge);
    free(challenge);
    assert_int_equal(count_rows(&srv, "issued_certs", "enrollment_id = 'ADE-UDID-0001'"), 1);
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-0001", "supervised"), 1);
    assert_int_equal(count_rows(&srv, "settings", "name = 'ade.enrolled.ADE-UDID-0001'"), 0);
    assert_int_equal(count_rows(&srv, "events", "enrollment_id = 'ADE-UDID-0001' AND kind = 'ade_enrolled'"), 1);
    expect_log(&srv, "ADE: device ADE-UDID-0001 (serial ADE-SERIAL-0001) authenticated after ADE enrollment; supervised");
    assert_int_equal(token_update_awaiting(dev.d, -1), 200);
    device_free(&dev);

    /* A profile that says is_supervised false: supervision stays unknown. */
    device_t dev2;
    ade_enroll_device(&srv, &sg, &dev2, "ADE-UDID-0002", "ADE-SERIAL-0002");
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-0002", "supervised"), -1);
    expect_log(&srv, "authenticated after ADE enrollment; not supervised (profile is_supervised false)");
    device_free(&dev2);

    /* A device enrolled by hand (POST /enroll would do the same; here a
     * direct identity) is not called supervised. */
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    assert_int_equal(testserver_device_identity(&srv, "ADE-UDID-MANUAL", &k, &c), 0);
    devsim_t *d = devsim_new(srv.base_url, srv.ca_path, "ADE-UDID-MANUAL", k, c, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-MANUAL", "supervised"), -1);
    devsim_free(d);
    EVP_PKEY_free(k);
    X509_free(c);
    signer_free(&sg);
}

static void expect_refused(const testserver_t *s, const void *body, size_t len, long status, const char *needle,
                           json_t **json_out)
{
    snapshot_t before = snap(s);
    reply_t r = post_ade(s, body, len, NULL, NULL, NULL);
    if (r.status != status)
        fprintf(stderr, "POST /enroll/ade: %ld %s\n", r.status, r.body ? r.body : "");
    assert_int_equal(r.status, status);
    if (json_out)
        *json_out = checked_error(&r, status == 403 && strstr(needle, "software") ? "com.apple.softwareupdate.required"
                                                                                  : "com.apple.unrecognized.device");
    reply_free(&r);
    expect_log(s, needle);
    assert_nothing_stored(s, before);
}

static void test_ade_refusals(void **state)
{
    (void)state;
    signer_t sg = device_signer(apple_pem, apple_key), evil = device_signer(evil_pem, evil_key);
    ade_assign(&srv, "ADE-SERIAL-OLD", NULL, 0);
    ade_assign(&srv, "ADE-SERIAL-GONE", NULL, 1);
    size_t len;
    json_t *j = NULL;

    unsigned char *mi = machineinfo(&sg, "ADE-UDID-X1", "NOT-OURS-1", "17.5", &len);
    expect_refused(&srv, mi, len, 403,
                   "ADE: serial NOT-OURS-1 (UDID ADE-UDID-X1) is not assigned to this MDM server: "
                   "com.apple.unrecognized.device",
                   &j);
    assert_non_null(json_string_value(json_object_get(j, "message")));
    json_decref(j);
    free(mi);

    mi = machineinfo(&sg, "ADE-UDID-X2", "ADE-SERIAL-GONE", "17.5", &len);
    expect_refused(&srv, mi, len, 403, "ADE: serial ADE-SERIAL-GONE (UDID ADE-UDID-X2) was released from this MDM server",
                   &j);
    json_decref(j);
    free(mi);

    /* 17.3.1 < 17.4: software update required, with the build. */
    mi = machineinfo(&sg, "ADE-UDID-X3", "ADE-SERIAL-OLD", "17.3.1", &len);
    expect_refused(&srv, mi, len, 403,
                   "ADE: serial ADE-SERIAL-OLD runs OS 17.3.1 (build 21E236), below the minimum 17.4 for iOS (--ade-min-os): "
                   "com.apple.softwareupdate.required",
                   &j);
    json_t *details = json_object_get(j, "details");
    assert_string_equal(json_string_value(json_object_get(details, "OSVersion")), "17.4");
    assert_string_equal(json_string_value(json_object_get(details, "BuildVersion")), "21E219");
    json_decref(j);
    free(mi);

    /* No OS_VERSION at all (iOS 16): below any minimum. */
    mi = machineinfo(&sg, "ADE-UDID-X4", "ADE-SERIAL-OLD", NULL, &len);
    expect_refused(&srv, mi, len, 403,
                   "ADE: serial ADE-SERIAL-OLD runs OS unknown (no OS_VERSION) (build 21E236), below the minimum 17.4 for iOS "
                   "(--ade-min-os): "
                   "com.apple.softwareupdate.required",
                   &j);
    json_decref(j);
    free(mi);

    /* Per platform: a Mac has its own minimum (with its build), so a Mac on
     * 15.1 enrolls although 15.1 < 17.4; an Apple TV falls under the bare
     * minimum for every platform not named. */
    ade_assign(&srv, "ADE-SERIAL-MAC", NULL, 0);
    mi = machineinfo_of(&sg, "Mac14,2", "ADE-UDID-M1", "ADE-SERIAL-MAC", "14.5", &len);
    expect_refused(&srv, mi, len, 403,
                   "ADE: serial ADE-SERIAL-MAC runs OS 14.5 (build 21E236), below the minimum 14.6 for macOS "
                   "(--ade-min-os): com.apple.softwareupdate.required",
                   &j);
    details = json_object_get(j, "details");
    assert_string_equal(json_string_value(json_object_get(details, "OSVersion")), "14.6");
    assert_string_equal(json_string_value(json_object_get(details, "BuildVersion")), "23G80");
    assert_non_null(strstr(json_string_value(json_object_get(j, "message")), "macOS 14.6"));
    json_decref(j);
    free(mi);
    mi = machineinfo_of(&sg, "Mac14,2", "ADE-UDID-M2", "ADE-SERIAL-MAC", "15.1", &len);
    reply_t ok = post_ade(&srv, mi, len, NULL, NULL, NULL);
    assert_int_equal(ok.status, 200);
    reply_free(&ok);
    free(mi);
    ade_assign(&srv, "ADE-SERIAL-TV", NULL, 0);
    mi = machineinfo_of(&sg, "AppleTV14,1", "ADE-UDID-T1", "ADE-SERIAL-TV", "17.3", &len);
    expect_refused(&srv, mi, len, 403, "below the minimum 17.4 for tvOS (--ade-min-os): com.apple.softwareupdate.required",
                   &j);
    details = json_object_get(j, "details");
    assert_string_equal(json_string_value(json_object_get(details, "BuildVersion")), "21E219");
    json_decref(j);
    free(mi);

    /* Signed by someone else's CA; not a signed plist; wrong method. */
    mi = machineinfo(&evil, "ADE-UDID-X5", "ADE-SERIAL-OLD", "17.5", &len);
    expect_refused(&srv, mi, len, 403, "ADE enrollment: ", NULL);
    free(mi);
    expect_refused(&srv, "not a cms", 9, 400, "ADE enrollment: ", NULL);
    snapshot_t before = snap(&srv);
    long st = 0;
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s/enroll/ade", srv.base_url);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, srv.ca_path);
    curl_easy_setopt(c, CURLOPT_NOBODY, 0L);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, body_cb);
    reply_t sink;
    memset(&sink, 0, sizeof sink);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
    assert_int_equal(curl_easy_perform(c), CURLE_OK);
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &st);
    assert_int_equal(st, 405);
    curl_easy_cleanup(c);
    free(url);
    reply_free(&sink);
    expect_log(&srv, "GET is not allowed on /enroll/ade");
    assert_nothing_stored(&srv, before);
    signer_free(&sg);
    signer_free(&evil);
}

/* ---- Digest ------------------------------------------------------------------------------------- */

/* The value of param `name` in a challenge (static buffer). */
static const char *challenge_param(const char *ch, const char *name)
{
    static char out[256];
    char key[64];
    snprintf(key, sizeof key, "%s=", name);
    const char *p = strstr(ch, key);
    assert_non_null(p);
    p += strlen(key);
    size_t n;
    if (*p == '"') {
        p++;
        n = strcspn(p, "\"");
    } else {
        n = strcspn(p, ", ");
    }
    snprintf(out, sizeof out, "%.*s", (int)n, p);
    return out;
}

/* A Digest Authorization value. */
static char *digest_header(const char *alg, const char *user, const char *password, const char *nonce,
                           const char *opaque, const char *nc, const char *uri, const char *realm)
{
    int sha = strcmp(alg, "SHA-256") == 0;
    char ha1[65], ha2[65], resp[65];
    assert_int_equal(digest_ha1(alg, user, realm, password, ha1), 0);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen;
    char *a2 = util_strdup_printf("POST:%s", uri);
    EVP_Digest(a2, strlen(a2), md, &mdlen, sha ? EVP_sha256() : EVP_md5(), NULL);
    util_hex(md, mdlen, ha2);
    char *r = util_strdup_printf("%s:%s:%s:%s:auth:%s", ha1, nonce, nc, "0a4f113b", ha2);
    EVP_Digest(r, strlen(r), md, &mdlen, sha ? EVP_sha256() : EVP_md5(), NULL);
    util_hex(md, mdlen, resp);
    free(a2);
    free(r);
    return util_strdup_printf("Digest username=\"%s\", realm=\"%s\", nonce=\"%s\", uri=\"%s\", algorithm=%s, "
                              "qop=auth, nc=%s, cnonce=\"0a4f113b\", response=\"%s\", opaque=\"%s\"",
                              user, realm, nonce, uri, alg, nc, resp, opaque);
}

/* A fresh challenge: the SHA-256 one's nonce and opaque (heap). */
static void fresh_challenge(const void *mi, size_t len, char **nonce, char **opaque)
{
    reply_t r = post_ade(&srv_auth, mi, len, NULL, NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_int_equal(r.nchallenges, 2);
    *nonce = strdup(challenge_param(r.challenges[0], "nonce"));
    *opaque = strdup(challenge_param(r.challenges[0], "opaque"));
    reply_free(&r);
}

static void expect_401(const void *mi, size_t len, const char *authorization, const char *needle, int stale)
{
    snapshot_t before = snap(&srv_auth);
    reply_t r = post_ade(&srv_auth, mi, len, authorization, NULL, NULL);
    if (r.status != 401)
        fprintf(stderr, "POST /enroll/ade: %ld %s\n", r.status, r.body ? r.body : "");
    assert_int_equal(r.status, 401);
    assert_true(r.nchallenges >= 1);
    assert_int_equal(strstr(r.challenges[0], "stale=true") != NULL, stale);
    reply_free(&r);
    expect_log(&srv_auth, needle);
    assert_nothing_stored(&srv_auth, before);
}

static void test_ade_digest(void **state)
{
    (void)state;
    signer_t sg = device_signer(apple_pem, apple_key);
    ade_assign(&srv_auth, "ADE-SERIAL-AUTH", NULL, 0);
    size_t len;
    unsigned char *mi = machineinfo(&sg, "ADE-UDID-AUTH", "ADE-SERIAL-AUTH", "17.5", &len);

    /* The challenge: SHA-256 first, then MD5; a sentence for the person. */
    snapshot_t before = snap(&srv_auth);
    reply_t r = post_ade(&srv_auth, mi, len, NULL, NULL, NULL);
    assert_int_equal(r.status, 401);
    assert_int_equal(r.nchallenges, 2);
    assert_non_null(strstr(r.challenges[0], "Digest realm=\"" REALM "\""));
    assert_non_null(strstr(r.challenges[0], "algorithm=SHA-256"));
    assert_non_null(strstr(r.challenges[1], "algorithm=MD5"));
    assert_non_null(strstr(r.challenges[0], "qop=\"auth\""));
    assert_non_null(strstr(r.challenges[0], "opaque=\""));
    assert_null(strstr(r.challenges[0], "stale"));
    assert_non_null(r.body);
    assert_non_null(strstr(r.body, "Sign in"));
    reply_free(&r);
    expect_log(&srv_auth, "ADE: serial ADE-SERIAL-AUTH: authentication required, Digest challenge sent");
    assert_nothing_stored(&srv_auth, before);

    char *nonce, *opaque;
    fresh_challenge(mi, len, &nonce, &opaque);
    const char *uri = "/enroll/ade";
    char *h = digest_header("SHA-256", "alice", "wrong", nonce, opaque, "00000001", uri, REALM);
    expect_401(mi, len, h, "ADE authentication failed for serial ADE-SERIAL-AUTH: wrong password: wrong password for "
                           "user \"alice\"", 0);
    free(h);
    h = digest_header("SHA-256", "mallory", "pw", nonce, opaque, "00000001", uri, REALM);
    expect_401(mi, len, h, "unknown user: unknown user \"mallory\"", 0);
    free(h);
    /* bob has only an MD5 entry. */
    h = digest_header("SHA-256", "bob", "bob-pw", nonce, opaque, "00000001", uri, REALM);
    expect_401(mi, len, h, "unknown user \"bob\" (no SHA-256 entry in the user file)", 0);
    free(h);
    /* A nonce with a changed tag, or made up. */
    char *forged = strdup(nonce);
    forged[strlen(forged) - 1] = forged[strlen(forged) - 1] == '0' ? '1' : '0';
    h = digest_header("SHA-256", "alice", "alice-pw", forged, opaque, "00000001", uri, REALM);
    expect_401(mi, len, h, "forged nonce: nonce was not issued by this server", 0);
    free(h);
    free(forged);
    h = digest_header("SHA-256", "alice", "alice-pw", "deadbeef", opaque, "00000001", uri, REALM);
    expect_401(mi, len, h, "forged nonce", 0);
    free(h);
    h = digest_header("SHA-256", "alice", "alice-pw", nonce, opaque, "00000001", "/enroll", REALM);
    expect_401(mi, len, h, "wrong uri: uri \"/enroll\" is not the request's", 0);
    free(h);
    h = digest_header("SHA-256", "alice", "alice-pw", nonce, "0000", "00000001", uri, REALM);
    expect_401(mi, len, h, "wrong realm or opaque: opaque is not this server's", 0);
    free(h);
    h = digest_header("SHA-256", "alice", "alice-pw", nonce, opaque, "00000001", uri, "Other Realm");
    expect_401(mi, len, h, "realm \"Other Realm\" is not", 0);
    free(h);
    expect_401(mi, len, "Digest username=\"alice\", qop=auth", "malformed credentials: Authorization lacks realm", 0);
    expect_401(mi, len, "Digest username=\"alice, realm=x", "malformed credentials: Authorization: unterminated", 0);
    expect_401(mi, len, "Basic YWxpY2U6YWxpY2UtcHc=", "authentication required, Digest challenge sent", 0);
    char *sess = util_strdup_printf("Digest username=\"alice\", realm=\"%s\", nonce=\"%s\", uri=\"/enroll/ade\", "
                                    "algorithm=MD5-sess, qop=auth, nc=00000001, cnonce=\"x\", response=\"00\", "
                                    "opaque=\"%s\"",
                                    REALM, nonce, opaque);
    expect_401(mi, len, sess, "unsupported digest parameters: algorithm MD5-sess is not supported", 0);
    free(sess);

    /* The right password (MD5, as htdigest writes): a profile. The same
     * request again is a replay; a higher count on the same nonce is fine. */
    h = digest_header("MD5", "alice", "alice-pw", nonce, opaque, "00000001", uri, REALM);
    r = post_ade(&srv_auth, mi, len, h, NULL, NULL);
    char *challenge = checked_profile_challenge(&srv_auth, &r);
    free(challenge);
    reply_free(&r);
    expect_log(&srv_auth, "ADE enrollment profile for serial ADE-SERIAL-AUTH udid=ADE-UDID-AUTH");
    expect_log(&srv_auth, "user=alice");
    expect_401(mi, len, h, "replayed nonce count: nonce count 00000001 was already used", 0);
    free(h);
    h = digest_header("SHA-256", "alice", "alice-pw", nonce, opaque, "00000002", uri, REALM);
    r = post_ade(&srv_auth, mi, len, h, NULL, NULL);
    assert_int_equal(r.status, 200);
    reply_free(&r);
    expect_401(mi, len, h, "replayed nonce count: nonce count 00000002", 0);
    free(h);
    /* Lower than the highest seen: also a replay. */
    h = digest_header("SHA-256", "alice", "alice-pw", nonce, opaque, "00000001", uri, REALM);
    expect_401(mi, len, h, "replayed nonce count: nonce count 00000001", 0);
    free(h);

    /* libcurl's own Digest (its first try has no credentials). */
    r = post_ade(&srv_auth, mi, len, NULL, "alice", "alice-pw");
    if (r.status != 200)
        fprintf(stderr, "curl Digest: %ld %s\n", r.status, r.body ? r.body : "");
    assert_int_equal(r.status, 200);
    assert_string_equal(r.content_type, PROFILE_CONTENT_TYPE);
    reply_free(&r);
    r = post_ade(&srv_auth, mi, len, NULL, "alice", "not-her-password");
    assert_int_equal(r.status, 401);
    reply_free(&r);

    /* Stale: after the lifetime the right answer gets stale=true. */
    sleep(4);
    h = digest_header("SHA-256", "alice", "alice-pw", nonce, opaque, "00000003", uri, REALM);
    expect_401(mi, len, h, "stale nonce: nonce issued", 1);
    expect_log(&srv_auth, "(stale=true)");
    free(h);

    /* A user added to the file is accepted without a restart. */
    char ha1[65];
    assert_int_equal(digest_ha1("SHA-256", "carol", REALM, "carol-pw", ha1), 0);
    FILE *f = fopen(users_path, "a");
    fprintf(f, "carol:%s:%s\n", REALM, ha1);
    fclose(f);
    r = post_ade(&srv_auth, mi, len, NULL, "carol", "carol-pw");
    assert_int_equal(r.status, 200);
    reply_free(&r);
    expect_log(&srv_auth, "ADE authentication: user file");

    /* Unrecognized devices and old OS are refused before any password. */
    unsigned char *mi2 = machineinfo(&sg, "ADE-UDID-AUTH2", "NOT-OURS-AUTH", "17.5", &len);
    r = post_ade(&srv_auth, mi2, len, NULL, NULL, NULL);
    assert_int_equal(r.status, 403);
    reply_free(&r);
    free(mi2);

    free(nonce);
    free(opaque);
    free(mi);
    signer_free(&sg);
}

/* ---- await configuration -------------------------------------------------------------------- */

static const char *setup_json =
    "[{\"RequestType\": \"DeviceInformation\", \"Queries\": [\"SerialNumber\", \"OSVersion\"]},"
    " \"<?xml version=\\\"1.0\\\" encoding=\\\"UTF-8\\\"?><plist version=\\\"1.0\\\"><dict><key>Command</key>"
    "<dict><key>RequestType</key><string>SecurityInfo</string></dict><key>CommandUUID</key>"
    "<string>ignored</string></dict></plist>\","
    " {\"RequestType\": \"ProfileList\"}]";

static int run_cli(const testserver_t *s, const char *const *args)
{
    const char *argv[16];
    int n = 0;
    argv[n++] = "setup-commands";
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
    return cli_ade_setup_main(n, (char **)argv);
}

/* Answers commands until the queue is empty; returns the request types
 * seen, joined with ',' (static). notnow_first: answer the first command
 * NotNow once. */
static const char *drain(devsim_t *d, int notnow_first)
{
    static char seen[512];
    seen[0] = '\0';
    devsim_reply_t r;
    assert_int_equal(devsim_idle(d, &r), 0);
    assert_int_equal(r.status, 200);
    for (int i = 0; i < 20 && r.command; i++) {
        const char *type = devsim_request_type(&r);
        const char *uuid = devsim_command_uuid(&r);
        snprintf(seen + strlen(seen), sizeof seen - strlen(seen), "%s%s", seen[0] ? "," : "", type);
        if (strcmp(type, "DeviceConfigured") == 0)
            assert_int_equal(strncmp(uuid, "orchard-deviceconfigured-", 25), 0);
        else
            assert_int_equal(strncmp(uuid, "orchard-setup-", 14), 0);
        devsim_reply_t next;
        assert_int_equal(devsim_report(d, uuid, i == 0 && notnow_first ? "NotNow" : "Acknowledged", NULL, &next), 0);
        devsim_reply_free(&r);
        r = next;
        assert_int_equal(r.status, 200);
    }
    assert_null(r.command);
    devsim_reply_free(&r);
    return seen;
}

static void test_ade_await_configuration(void **state)
{
    (void)state;
    json_t *j = NULL;
    /* Admin API: bad lists are refused, nothing stored. */
    long settings = count_rows(&srv, "settings", NULL);
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/setup-commands", "{}", 2, NULL), 400);
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/setup-commands", "[]", 2, NULL), 400);
    const char *dc = "[{\"RequestType\": \"DeviceConfigured\"}]";
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/setup-commands", dc, strlen(dc), NULL), 400);
    expect_log(&srv, "setup commands: command 0: DeviceConfigured is sent by orchard after the setup commands");
    const char *nul = "[{\"RequestType\": \"DeviceInformation\", \"Queries\": null}]";
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/setup-commands", nul, strlen(nul), NULL), 400);
    expect_log(&srv, "null has no property list form");
    const char *bad = "[\"<plist><dict>\"]";
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/setup-commands", bad, strlen(bad), NULL), 400);
    const char *norq = "[{\"Queries\": []}]";
    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/setup-commands", norq, strlen(norq), NULL), 400);
    assert_int_equal(count_rows(&srv, "settings", NULL), settings);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/ade/setup-commands", NULL, 0, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 0);
    json_decref(j);

    assert_int_equal(testserver_api(&srv, "", "PUT", "/v1/ade/setup-commands", setup_json, strlen(setup_json), &j),
                     200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 3);
    json_decref(j);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/ade/setup-commands", NULL, 0, &j), 200);
    json_t *cmds = json_object_get(j, "commands");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cmds, 0), "request_type")),
                        "DeviceInformation");
    assert_string_equal(json_string_value(json_array_get(
                            json_object_get(json_object_get(json_array_get(cmds, 0), "command"), "Queries"), 1)),
                        "OSVersion");
    assert_string_equal(json_string_value(json_object_get(json_array_get(cmds, 1), "request_type")), "SecurityInfo");
    json_decref(j);
    assert_int_equal(run_cli(&srv, (const char *[]){"get", NULL}), 0);
    assert_int_equal(run_cli(&srv, (const char *[]){"frob", NULL}), 2);

    /* A device awaiting configuration: the setup commands in order, then
     * DeviceConfigured in the same exchange as the last result. */
    signer_t sg = device_signer(apple_pem, apple_key);
    ade_assign(&srv, "ADE-SERIAL-AWAIT", PROFILE_SUP, 0);
    device_t dev;
    ade_enroll_device(&srv, &sg, &dev, "ADE-UDID-AWAIT", "ADE-SERIAL-AWAIT");
    assert_int_equal(token_update_awaiting(dev.d, 1), 200);
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-AWAIT", "awaiting_configuration"), 1);
    expect_log(&srv, "ADE: device ADE-UDID-AWAIT awaits configuration: 3 setup command(s) queued");
    /* A repeated TokenUpdate during setup queues nothing more. */
    assert_int_equal(token_update_awaiting(dev.d, 1), 200);
    assert_int_equal(count_rows(&srv, "command_targets", "enrollment_id = 'ADE-UDID-AWAIT'"), 3);
    assert_string_equal(drain(dev.d, 0), "DeviceInformation,SecurityInfo,ProfileList,DeviceConfigured");
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-AWAIT", "awaiting_configuration"), 0);
    expect_log(&srv, "ADE: setup commands of ADE-UDID-AWAIT done: DeviceConfigured queued");
    expect_log(&srv, "ADE: device ADE-UDID-AWAIT released from await configuration (DeviceConfigured acknowledged)");
    assert_int_equal(count_rows(&srv, "events", "enrollment_id = 'ADE-UDID-AWAIT' AND kind = 'ade_device_configured'"),
                     1);
    /* Released: never again. */
    assert_string_equal(drain(dev.d, 0), "");

    /* Re-enrollment resets the flag; a NotNow setup command holds the
     * release back until it has run. */
    assert_int_equal(token_update_awaiting(dev.d, 1), 200);
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-AWAIT", "awaiting_configuration"), 1);
    assert_int_equal(devsim_authenticate(dev.d), 200);
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-AWAIT", "awaiting_configuration"), 0);
    assert_string_equal(drain(dev.d, 0), "DeviceInformation,SecurityInfo,ProfileList");
    assert_int_equal(token_update_awaiting(dev.d, 1), 200);
    assert_string_equal(drain(dev.d, 1), "DeviceInformation,SecurityInfo,ProfileList");
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-AWAIT", "awaiting_configuration"), 1);
    assert_string_equal(drain(dev.d, 0), "DeviceInformation,DeviceConfigured");
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-AWAIT", "awaiting_configuration"), 0);
    device_free(&dev);

    /* A device that does not await configuration: setup commands are not
     * its business and DeviceConfigured never comes. */
    device_t plain;
    ade_assign(&srv, "ADE-SERIAL-PLAIN", PROFILE_SUP, 0);
    ade_enroll_device(&srv, &sg, &plain, "ADE-UDID-PLAIN", "ADE-SERIAL-PLAIN");
    assert_int_equal(token_update_awaiting(plain.d, -1), 200);
    assert_string_equal(drain(plain.d, 0), "");
    assert_int_equal(token_update_awaiting(plain.d, 0), 200);
    assert_string_equal(drain(plain.d, 0), "");
    assert_int_equal(count_rows(&srv, "command_targets", "enrollment_id = 'ADE-UDID-PLAIN'"), 0);

    /* Without setup commands: DeviceConfigured straight away. */
    assert_int_equal(run_cli(&srv, (const char *[]){"clear", NULL}), 0);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/ade/setup-commands", NULL, 0, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 0);
    json_decref(j);
    device_t bare;
    ade_assign(&srv, "ADE-SERIAL-BARE", PROFILE_SUP, 0);
    ade_enroll_device(&srv, &sg, &bare, "ADE-UDID-BARE", "ADE-SERIAL-BARE");
    assert_int_equal(token_update_awaiting(bare.d, 1), 200);
    assert_string_equal(drain(bare.d, 0), "DeviceConfigured");
    assert_int_equal(enrollment_column(&srv, "ADE-UDID-BARE", "awaiting_configuration"), 0);
    device_free(&bare);

    /* CLI put from a file. */
    char *path = util_strdup_printf("%s/setup.json", pki_dir);
    FILE *f = fopen(path, "w");
    fputs(setup_json, f);
    fclose(f);
    assert_int_equal(run_cli(&srv, (const char *[]){"put", path, NULL}), 0);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/ade/setup-commands", NULL, 0, &j), 200);
    assert_int_equal(json_integer_value(json_object_get(j, "count")), 3);
    json_decref(j);
    free(path);
    device_free(&plain);
    signer_free(&sg);
}

static void test_os_versions(void **state)
{
    (void)state;
    assert_true(ade_os_version_cmp("17.4", "17.10") < 0);
    assert_true(ade_os_version_cmp("17.10", "17.4") > 0);
    assert_int_equal(ade_os_version_cmp("17", "17.0.0"), 0);
    assert_true(ade_os_version_cmp("17.4.1", "17.4") > 0);
    assert_true(ade_os_version_cmp("16.7.8", "17.4") < 0);
    assert_int_equal(ade_os_version_cmp("17.4 (a)", "17.4"), 0);
    assert_true(ade_os_version_cmp("18", "17.99.99") > 0);
    assert_true(ade_os_version_valid("17.4"));
    assert_true(ade_os_version_valid("14.6.1"));
    assert_false(ade_os_version_valid("17."));
    assert_false(ade_os_version_valid(".4"));
    assert_false(ade_os_version_valid("17.4a"));
    assert_false(ade_os_version_valid("1.2.3.4.5"));
    assert_false(ade_os_version_valid(""));

    /* --ade-min-os specs. */
    char why[160];
    assert_int_equal(ade_min_os_check("17.4", why, sizeof why), 0);
    assert_int_equal(ade_min_os_check("iOS:17.4:21E219,macOS:14.6,tvos:17", why, sizeof why), 0);
    assert_int_equal(ade_min_os_check("17.4,visionOS:1.2", why, sizeof why), 0);
    assert_int_equal(ade_min_os_check("Android:14", why, sizeof why), -1);
    assert_non_null(strstr(why, "unknown platform 'Android'"));
    assert_int_equal(ade_min_os_check("iOS:17.4,ios:17.5", why, sizeof why), -1);
    assert_non_null(strstr(why, "iOS is named twice"));
    assert_int_equal(ade_min_os_check("17.4,18", why, sizeof why), -1);
    assert_int_equal(ade_min_os_check("iOS:17.x", why, sizeof why), -1);
    assert_int_equal(ade_min_os_check("iOS:17.4:21-E", why, sizeof why), -1);
    assert_int_equal(ade_min_os_check("", why, sizeof why), -1);
    assert_int_equal(ade_min_os_check(",", why, sizeof why), -1);
    ade_min_os_t m;
    assert_int_equal(ade_min_os_for("iOS:17.4:21E219,macOS:14.6", NULL, "iPad13,4", &m), 1);
    assert_string_equal(m.platform, "iOS");
    assert_string_equal(m.version, "17.4");
    assert_string_equal(m.build, "21E219");
    assert_int_equal(ade_min_os_for("iOS:17.4:21E219,macOS:14.6", NULL, "MacBookPro18,1", &m), 1);
    assert_string_equal(m.version, "14.6");
    assert_string_equal(m.build, "");
    assert_int_equal(ade_min_os_for("iOS:17.4:21E219,macOS:14.6", NULL, "AppleTV14,1", &m), 0); /* not named */
    assert_int_equal(ade_min_os_for("17,macOS:14.6", "21A329", "AppleTV14,1", &m), 1);
    assert_string_equal(m.platform, "tvOS");
    assert_string_equal(m.build, "21A329");
    assert_int_equal(ade_min_os_for("17", NULL, "Something1,1", &m), 1); /* unknown product: the bare one */
    assert_string_equal(m.platform, "");
    assert_int_equal(ade_min_os_for(NULL, NULL, "iPhone16,1", &m), 0);
    assert_string_equal(ade_platform_of("iMac21,1"), "macOS");
    assert_string_equal(ade_platform_of("RealityDevice14,1"), "visionOS");
    assert_null(ade_platform_of(NULL));
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *env = getenv("ORCHARD_APPLE_SCHEMAS");
    const char *base = env ? env : "../shared/apple-device-management";
    snprintf(profiles_dir, sizeof profiles_dir, "%s/mdm/profiles", base);
    snprintf(errors_dir, sizeof errors_dir, "%s/mdm/errors", base);
    snprintf(pki_dir, sizeof pki_dir, "/tmp/orchard-ade-XXXXXX");
    if (!mkdtemp(pki_dir))
        return -1;
    snprintf(apple_pem, sizeof apple_pem, "%s/appleca.pem", pki_dir);
    snprintf(apple_key, sizeof apple_key, "%s/appleca.key", pki_dir);
    snprintf(evil_pem, sizeof evil_pem, "%s/evilca.pem", pki_dir);
    snprintf(evil_key, sizeof evil_key, "%s/evilca.key", pki_dir);
    snprintf(users_path, sizeof users_path, "%s/ade-users.digest", pki_dir);
    if (testpki_make_ca(pki_dir, "appleca") != 0 || testpki_make_ca(pki_dir, "evilca") != 0)
        return -1;
    /* alice: SHA-256 and MD5 lines; bob: MD5 only (htdigest). */
    char a256[65], a5[65], b5[65];
    if (digest_ha1("SHA-256", "alice", REALM, "alice-pw", a256) || digest_ha1("MD5", "alice", REALM, "alice-pw", a5) ||
        digest_ha1("MD5", "bob", REALM, "bob-pw", b5))
        return -1;
    FILE *f = fopen(users_path, "w");
    if (!f)
        return -1;
    fprintf(f, "# ADE enrollment users\nalice:%s:%s\nalice:%s:%s\nbob:%s:%s\n", REALM, a256, REALM, a5, REALM, b5);
    fclose(f);
    const char *args[] = {"--push-topic", TOPIC, "--machineinfo-ca", apple_pem, "--org-name", "ADE Org",
                          "--ade-min-os", "17.4,macOS:14.6:23G80", "--ade-min-build", "21E219", NULL};
    /* test_ade_digest probes Digest with one device's MachineInfo some 30
     * times; the per-identity limit would stop it (test_limits.c tests it). */
    const char *args_auth[] = {"--push-topic", TOPIC, "--machineinfo-ca", apple_pem, "--ade-auth", users_path,
                               "--ade-auth-nonce-ttl", "3", "--enroll-identity-rate", "0", NULL};
    if (testserver_start(&srv, args) != 0 || testserver_start(&srv_auth, args_auth) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    if (srv.pid > 0 && testserver_stop(&srv) != 0)
        rc = -1;
    if (srv_auth.pid > 0 && testserver_stop(&srv_auth) != 0)
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
        cmocka_unit_test(test_os_versions),
        cmocka_unit_test(test_ade_profile_and_supervision),
        cmocka_unit_test(test_ade_refusals),
        cmocka_unit_test(test_ade_digest),
        cmocka_unit_test(test_ade_await_configuration),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
