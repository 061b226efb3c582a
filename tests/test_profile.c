/* Enrollment profiles, OTA enrollment, MachineInfo and identity renewal.
 *
 * Every profile generated here, by the library or by a running server, is
 * checked against Apple's schema files (tests/support/schema_check.c reads
 * apple/device-management's YAML: $ORCHARD_APPLE_SCHEMAS, default
 * ../shared/apple-device-management). Integration tests run real servers:
 *   srv        --push-topic, --enroll-secret, --machineinfo-ca (a test device CA)
 *   srv_known  the same plus --admission known and --scep-challenge
 *   srv_bare   defaults only (no topic, no MachineInfo trust)
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
#include <openssl/err.h>
#include <openssl/pkcs12.h>
#include <openssl/x509_vfy.h>
#include <sqlite3.h>

#include "cli_enroll.h"
#include "curl_buffer.h"
#include "devsim.h"
#include "machineinfo.h"
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

#define TOPIC "com.apple.mgmt.External.11111111-2222-3333-4444-555555555555"
#define SECRET "enroll-secret-0123456789abcdefXYZ"
#define STATIC_CHALLENGE "static-challenge-for-tests-42"

static char schemas[512];         /* apple/device-management checkout */
static char profiles_dir[600];    /* its mdm/profiles */
static char pki_dir[64];          /* throw-away CAs */
static char devca_pem[128], devca_key[128], evilca_pem[128], evilca_key[128];

/* Unit-test signing identity: a CA and a TLS leaf it issued. */
static X509 *u_ca, *u_tls;
static EVP_PKEY *u_ca_key, *u_tls_key;
static STACK_OF(X509) *u_anchors;

static testserver_t srv, srv_known, srv_bare;

/* ---- helpers: schema and profile checks ------------------------------------------ */

/* Fails the test with the validator's report if the profile breaks Apple's schema. */
static void assert_schema_valid(const plist_t *profile)
{
    schema_report_t r;
    memset(&r, 0, sizeof r);
    int n = schema_check_profile(profiles_dir, profile, &r);
    if (n != 0)
        fprintf(stderr, "schema problems:\n%s", r.text ? r.text : "(none listed)\n");
    assert_int_equal(n, 0);
    assert_true(r.keys_checked > 20);
    schema_report_free(&r);
}

static const char *scep_cn(const plist_t *scep)
{
    const plist_t *c = plist_dict_get(scep, "PayloadContent");
    const plist_t *subject = plist_dict_get(c, "Subject");
    const plist_t *pair = plist_array_get(plist_array_get(subject, 0), 0);
    assert_int_equal(plist_array_size(pair), 2);
    assert_string_equal(plist_string(plist_array_get(pair, 0)), "CN");
    return plist_string(plist_array_get(pair, 1));
}

/* What every orchard profile must hold beyond the schema: the wiring between
 * payloads and the values the brief fixes. Returns the identity payload. */
static const plist_t *assert_orchard_profile(const plist_t *p, const char *public_url, const char *ident,
                                             const char *org)
{
    assert_schema_valid(p);
    assert_string_equal(plist_dict_get_string(p, "PayloadType"), "Configuration");
    assert_string_equal(plist_dict_get_string(p, "PayloadIdentifier"), ident);
    assert_string_equal(plist_dict_get_string(p, "PayloadOrganization"), org);
    /* Identifiers and UUIDs unique within the profile. */
    const plist_t *content = plist_dict_get(p, "PayloadContent");
    size_t n = plist_array_size(content);
    assert_true(n >= 2);
    for (size_t i = 0; i < n; i++) {
        const plist_t *a = plist_array_get(content, i);
        assert_string_not_equal(plist_dict_get_string(a, "PayloadUUID"), plist_dict_get_string(p, "PayloadUUID"));
        assert_string_equal(plist_dict_get_string(a, "PayloadOrganization"), org);
        for (size_t j = i + 1; j < n; j++) {
            const plist_t *b = plist_array_get(content, j);
            assert_string_not_equal(plist_dict_get_string(a, "PayloadUUID"), plist_dict_get_string(b, "PayloadUUID"));
            assert_string_not_equal(plist_dict_get_string(a, "PayloadIdentifier"),
                                    plist_dict_get_string(b, "PayloadIdentifier"));
        }
    }
    const plist_t *mdm = profilecheck_payload(p, "com.apple.mdm", 0);
    assert_non_null(mdm);
    assert_null(profilecheck_payload(p, "com.apple.mdm", 1));
    char *server = util_strdup_printf("%s/mdm/connect", public_url);
    char *checkin = util_strdup_printf("%s/mdm/checkin", public_url);
    assert_string_equal(plist_dict_get_string(mdm, "ServerURL"), server);
    assert_string_equal(plist_dict_get_string(mdm, "CheckInURL"), checkin);
    free(server);
    free(checkin);
    assert_string_equal(plist_dict_get_string(mdm, "Topic"), TOPIC);
    assert_true(plist_bool(plist_dict_get(mdm, "CheckOutWhenRemoved")));
    assert_int_equal(plist_integer(plist_dict_get(mdm, "AccessRights")), 8191);
    const plist_t *caps = plist_dict_get(mdm, "ServerCapabilities");
    assert_int_equal(plist_array_size(caps), 3);
    assert_string_equal(plist_string(plist_array_get(caps, 0)), "com.apple.mdm.per-user-connections");
    assert_string_equal(plist_string(plist_array_get(caps, 1)), "com.apple.mdm.bootstraptoken");
    assert_string_equal(plist_string(plist_array_get(caps, 2)), "com.apple.mdm.token");
    /* IdentityCertificateUUID names the identity payload. */
    const plist_t *id = profilecheck_payload(p, "com.apple.security.scep", 0);
    if (!id)
        id = profilecheck_payload(p, "com.apple.security.pkcs12", 0);
    assert_non_null(id);
    assert_string_equal(plist_dict_get_string(mdm, "IdentityCertificateUUID"), plist_dict_get_string(id, "PayloadUUID"));
    if (strcmp(plist_dict_get_string(id, "PayloadType"), "com.apple.security.scep") == 0) {
        const plist_t *c = plist_dict_get(id, "PayloadContent");
        char *scep = util_strdup_printf("%s/scep", public_url);
        assert_string_equal(plist_dict_get_string(c, "URL"), scep);
        free(scep);
        assert_string_equal(plist_dict_get_string(c, "Key Type"), "RSA");
        assert_int_equal(plist_integer(plist_dict_get(c, "Keysize")), 2048);
    }
    return id;
}

/* ---- helpers: MachineInfo --------------------------------------------------------- */

static plist_t *mi_dict(const char *udid, const char *serial)
{
    plist_t *d = plist_new_dict();
    if (udid)
        plist_dict_set(d, "UDID", plist_new_string(udid));
    if (serial)
        plist_dict_set(d, "SERIAL", plist_new_string(serial));
    plist_dict_set(d, "PRODUCT", plist_new_string("iPhone16,1"));
    plist_dict_set(d, "VERSION", plist_new_string("22B83"));
    plist_dict_set(d, "OS_VERSION", plist_new_string("18.1"));
    plist_dict_set(d, "LANGUAGE", plist_new_string("en"));
    plist_dict_set(d, "IMEI", plist_new_string("35 000000 000000 0"));
    plist_dict_set(d, "MDM_CAN_REQUEST_SOFTWARE_UPDATE", plist_new_bool(1));
    return d;
}

/* CMS SignedData (attached) over the dict's XML: what a device POSTs. */
static unsigned char *mi_sign(plist_t *dict, X509 *cert, EVP_PKEY *key, unsigned int flags, size_t *len)
{
    size_t xml_len = 0;
    char *xml = plist_to_xml(dict, &xml_len);
    plist_free(dict);
    assert_non_null(xml);
    BIO *in = BIO_new_mem_buf(xml, (int)xml_len);
    CMS_ContentInfo *cms = CMS_sign(cert, key, NULL, in, CMS_BINARY | flags);
    assert_non_null(cms);
    unsigned char *der = NULL;
    int n = i2d_CMS_ContentInfo(cms, &der);
    assert_true(n > 0);
    unsigned char *copy = malloc((size_t)n);
    memcpy(copy, der, (size_t)n);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    free(xml);
    *len = (size_t)n;
    return copy;
}

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
} signer_t;

static void signer_make(signer_t *s, const char *ca_pem, const char *ca_key, const char *cn)
{
    assert_int_equal(testpki_issue_device_identity(ca_pem, ca_key, cn, &s->key, &s->cert), 0);
}

static void signer_free(signer_t *s)
{
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
}

/* ---- helpers: HTTP ----------------------------------------------------------------- */

typedef struct {
    long status;
    curl_buffer_t body;
    char ctype[128];
    char www_auth[128];
    char cache_control[64];
} hresp_t;

static size_t header_cb(char *ptr, size_t size, size_t nmemb, void *ud)
{
    hresp_t *r = ud;
    size_t n = size * nmemb;
    char line[256];
    size_t m = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, ptr, m);
    line[m] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    if (strncasecmp(line, "WWW-Authenticate: ", 18) == 0)
        snprintf(r->www_auth, sizeof r->www_auth, "%.127s", line + 18);
    if (strncasecmp(line, "Cache-Control: ", 15) == 0)
        snprintf(r->cache_control, sizeof r->cache_control, "%.63s", line + 15);
    return n;
}

static void http_do(const testserver_t *s, const char *method, const char *path, const char *userpwd,
                    const char *ctype, const void *body, size_t len, hresp_t *r)
{
    memset(r, 0, sizeof *r);
    CURL *c = curl_easy_init();
    char *url = util_strdup_printf("%s%s", s->base_url, path);
    struct curl_slist *h = NULL;
    char *cth = ctype ? util_strdup_printf("Content-Type: %s", ctype) : NULL;
    if (cth)
        h = curl_slist_append(h, cth);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CAINFO, s->ca_path);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, curl_buffer_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r->body);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, header_cb);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, r);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, 30L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    if (userpwd)
        curl_easy_setopt(c, CURLOPT_USERPWD, userpwd);
    if (body) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    }
    r->status = -1;
    if (curl_easy_perform(c) == CURLE_OK) {
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
        char *ct = NULL;
        curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct);
        snprintf(r->ctype, sizeof r->ctype, "%s", ct ? ct : "");
    }
    curl_slist_free_all(h);
    free(cth);
    free(url);
    curl_easy_cleanup(c);
}

static void hresp_free(hresp_t *r)
{
    curl_buffer_free(&r->body);
}

static X509 *server_ca(const testserver_t *s)
{
    X509 *ca = pki_load_cert(s->ca_path);
    assert_non_null(ca);
    return ca;
}

/* GET /enroll with the right secret; the verified profile. */
static plist_t *get_profile(const testserver_t *s, const char *query_extra)
{
    char *path = util_strdup_printf("/enroll?secret=%s%s", SECRET, query_extra ? query_extra : "");
    hresp_t r;
    http_do(s, "GET", path, NULL, NULL, NULL, 0, &r);
    free(path);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, PROFILE_CONTENT_TYPE);
    assert_string_equal(r.cache_control, "no-store");
    X509 *ca = server_ca(s);
    plist_t *p = profilecheck_open((const unsigned char *)r.body.data, r.body.len, ca);
    assert_non_null(p);
    X509_free(ca);
    hresp_free(&r);
    return p;
}

static store_t *open_store(const testserver_t *s)
{
    char *url = util_strdup_printf("sqlite:%s/orchard.db", s->dir);
    char *err = NULL;
    store_t *st = store_open(url, &err);
    if (!st)
        fprintf(stderr, "store_open: %s\n", err ? err : "?");
    assert_non_null(st);
    free(err);
    free(url);
    return st;
}

/* Rows in one table of the server's SQLite database: used only to show that
 * a refused request stored nothing (the interface has no challenge listing). */
static long count_rows(const testserver_t *s, const char *table)
{
    char *path = util_strdup_printf("%s/orchard.db", s->dir);
    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_busy_timeout(db, 5000);
    char *sql = util_strdup_printf("SELECT count(*) FROM %s", table);
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

/* Consumes a challenge through the store; returns the bound id (heap, or
 * NULL when unbound) and asserts it was valid and is now used up. */
static char *consume_challenge(const testserver_t *s, const char *challenge)
{
    store_t *st = open_store(s);
    char *bound = NULL;
    assert_int_equal(st->ops->challenge_consume(st, challenge, util_now(), &bound), STORE_OK);
    char *again = NULL;
    assert_int_equal(st->ops->challenge_consume(st, challenge, util_now(), &again), STORE_NOTFOUND);
    store_close(st);
    return bound;
}

static const char *scep_challenge_of(const plist_t *profile)
{
    const plist_t *scep = profilecheck_payload(profile, "com.apple.security.scep", 0);
    assert_non_null(scep);
    return plist_dict_get_string(plist_dict_get(scep, "PayloadContent"), "Challenge");
}

/* ---- setup ------------------------------------------------------------------------- */

static int make_unit_pki(void)
{
    char *p = util_strdup_printf("%s/unitca.pem", pki_dir), *k = util_strdup_printf("%s/unitca.key", pki_dir);
    if (testpki_make_ca(pki_dir, "unitca") != 0)
        return -1;
    u_ca = pki_load_cert(p);
    u_ca_key = pki_load_key(k);
    free(p);
    free(k);
    u_tls_key = pki_new_ec_key();
    const char *sans[] = {"mdm.example.com"};
    u_tls = u_ca && u_ca_key && u_tls_key
                ? pki_issue_cert(u_ca, u_ca_key, u_tls_key, "mdm.example.com", 30, PKI_USAGE_SERVER, sans, 1)
                : NULL;
    if (!u_tls)
        return -1;
    /* As serve.c loads them: the TLS chain file, then the CA. */
    u_anchors = sk_X509_new_null();
    X509_up_ref(u_tls);
    sk_X509_push(u_anchors, u_tls);
    X509_up_ref(u_ca);
    sk_X509_push(u_anchors, u_ca);
    return 0;
}

static int setup(void **state)
{
    (void)state;
    curl_global_init(CURL_GLOBAL_DEFAULT);
    const char *env = getenv("ORCHARD_APPLE_SCHEMAS");
    snprintf(schemas, sizeof schemas, "%s", env ? env : "../shared/apple-device-management");
    snprintf(profiles_dir, sizeof profiles_dir, "%s/mdm/profiles", schemas);
    char *top = util_strdup_printf("%s/TopLevel.yaml", profiles_dir);
    int have = access(top, R_OK) == 0;
    free(top);
    if (!have) {
        fprintf(stderr, "Apple's schema files are not at %s (set ORCHARD_APPLE_SCHEMAS)\n", schemas);
        return -1;
    }
    snprintf(pki_dir, sizeof pki_dir, "/tmp/orchard-profile-XXXXXX");
    if (!mkdtemp(pki_dir))
        return -1;
    snprintf(devca_pem, sizeof devca_pem, "%s/devca.pem", pki_dir);
    snprintf(devca_key, sizeof devca_key, "%s/devca.key", pki_dir);
    snprintf(evilca_pem, sizeof evilca_pem, "%s/evilca.pem", pki_dir);
    snprintf(evilca_key, sizeof evilca_key, "%s/evilca.key", pki_dir);
    if (testpki_make_ca(pki_dir, "devca") != 0 || testpki_make_ca(pki_dir, "evilca") != 0 || make_unit_pki() != 0)
        return -1;
    const char *args[] = {"--push-topic", TOPIC, "--enroll-secret", SECRET, "--machineinfo-ca", devca_pem,
                          "--org-name", "Test Org", NULL};
    const char *args_known[] = {"--push-topic", TOPIC, "--enroll-secret", SECRET, "--machineinfo-ca", devca_pem,
                                "--admission", "known", "--scep-challenge", STATIC_CHALLENGE, NULL};
    if (testserver_start(&srv, args) != 0 || testserver_start(&srv_known, args_known) != 0 ||
        testserver_start(&srv_bare, NULL) != 0)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    int rc = 0;
    testserver_t *all[] = {&srv, &srv_known, &srv_bare};
    for (size_t i = 0; i < 3; i++)
        if (all[i]->pid > 0 && testserver_stop(all[i]) != 0)
            rc = -1;
    X509_free(u_ca);
    X509_free(u_tls);
    EVP_PKEY_free(u_ca_key);
    EVP_PKEY_free(u_tls_key);
    sk_X509_pop_free(u_anchors, X509_free);
    char *cmd = util_strdup_printf("rm -rf '%s'", pki_dir);
    if (pki_dir[0] && system(cmd) != 0)
        rc = -1;
    free(cmd);
    curl_global_cleanup();
    return rc;
}

/* ---- the schema validator itself ----------------------------------------------------- */

static void test_schema_files_load(void **state)
{
    (void)state;
    /* Every schema file of the snapshot loads (a file the reader cannot
     * follow would otherwise make checks pass vacuously). */
    const char *sub[] = {"mdm/profiles", "mdm/commands", "mdm/checkin", "mdm/errors", "other"};
    int loaded = 0;
    for (size_t i = 0; i < sizeof sub / sizeof sub[0]; i++) {
        char *cmd = util_strdup_printf("ls '%s/%s'", schemas, sub[i]);
        FILE *f = popen(cmd, "r");
        free(cmd);
        assert_non_null(f);
        char name[512];
        while (fgets(name, sizeof name, f)) {
            name[strcspn(name, "\n")] = '\0';
            if (!strstr(name, ".yaml"))
                continue;
            char *path = util_strdup_printf("%s/%s/%s", schemas, sub[i], name);
            char err[512];
            schema_t *s = schema_load(path, err, sizeof err);
            if (!s)
                fprintf(stderr, "%s\n", err);
            assert_non_null(s);
            schema_free(s);
            free(path);
            loaded++;
        }
        pclose(f);
    }
    printf("schema files loaded: %d\n", loaded);
    assert_true(loaded >= 200);
}

static plist_t *unit_profile(const char *cn, const char *challenge)
{
    profile_opts_t o;
    profile_opts_init(&o);
    o.public_url = "https://MDM.example.com:8443/";
    o.topic = TOPIC;
    o.org_name = "Example Org";
    o.scep_challenge = challenge;
    o.subject_cn = cn;
    o.anchors = u_anchors;
    char err[256];
    plist_t *p = profile_build(&o, err, sizeof err);
    if (!p)
        fprintf(stderr, "profile_build: %s\n", err);
    assert_non_null(p);
    return p;
}

/* The validator must catch each kind of mistake, or its passes mean nothing. */
static void expect_problem(plist_t *p, const char *needle)
{
    schema_report_t r;
    memset(&r, 0, sizeof r);
    int n = schema_check_profile(profiles_dir, p, &r);
    if (n <= 0 || !r.text || !strstr(r.text, needle))
        fprintf(stderr, "expected a problem containing '%s', got:\n%s", needle, r.text ? r.text : "(none)\n");
    assert_true(n > 0);
    assert_non_null(r.text);
    assert_non_null(strstr(r.text, needle));
    schema_report_free(&r);
    plist_free(p);
}

static plist_t *mdm_of(plist_t *p)
{
    return (plist_t *)profilecheck_payload(p, "com.apple.mdm", 0);
}

static plist_t *scep_content_of(plist_t *p)
{
    return plist_dict_get(profilecheck_payload(p, "com.apple.security.scep", 0), "PayloadContent");
}

static void test_schema_validator_catches_mistakes(void **state)
{
    (void)state;
    plist_t *p = unit_profile(NULL, "x");
    plist_dict_set(mdm_of(p), "ServerUrl", plist_new_string("https://x")); /* misspelt key */
    expect_problem(p, "ServerUrl: key not in Apple's schema");

    p = unit_profile(NULL, "x");
    plist_dict_set(mdm_of(p), "AccessRights", plist_new_string("8191"));
    expect_problem(p, "AccessRights: type is string, the schema says integer");

    p = unit_profile(NULL, "x");
    plist_t *copy = plist_new_dict(); /* the mdm payload without Topic */
    plist_t *mdm = mdm_of(p);
    for (size_t i = 0; i < plist_dict_size(mdm); i++)
        if (strcmp(plist_dict_key_at(mdm, i), "Topic") != 0) {
            size_t xl;
            char *x = plist_to_xml(plist_dict_value_at(mdm, i), &xl);
            plist_dict_set(copy, plist_dict_key_at(mdm, i), plist_parse(x, xl, NULL, 0));
            free(x);
        }
    plist_t *content = plist_dict_get(p, "PayloadContent");
    plist_array_append(content, copy); /* second MDM payload, missing Topic */
    expect_problem(p, "required key Topic is missing");

    p = unit_profile(NULL, "x");
    plist_t *caps = plist_dict_get(mdm_of(p), "ServerCapabilities");
    plist_array_append(caps, plist_new_string("com.apple.mdm.everything"));
    expect_problem(p, "'com.apple.mdm.everything' is not in the schema's rangelist");

    p = unit_profile(NULL, "x");
    plist_dict_set(scep_content_of(p), "Keysize", plist_new_integer(3000));
    expect_problem(p, "Keysize: value '3000' is not in the schema's rangelist");

    p = unit_profile(NULL, "x");
    plist_dict_set(mdm_of(p), "ServerURL", plist_new_string("http://mdm.example.com/mdm"));
    expect_problem(p, "does not match the schema format");

    p = unit_profile(NULL, "x");
    plist_dict_set(mdm_of(p), "IdentityCertificateUUID", plist_new_string("not-a-uuid"));
    expect_problem(p, "IdentityCertificateUUID: value 'not-a-uuid' does not match");

    p = unit_profile(NULL, "x");
    plist_t *pair = plist_array_get(plist_array_get(plist_dict_get(scep_content_of(p), "Subject"), 0), 0);
    plist_array_append(pair, plist_new_string("extra"));
    expect_problem(p, "3 items, the schema wants 2..2");

    p = unit_profile(NULL, "x");
    plist_dict_set(p, "PayloadVersion", plist_new_integer(2));
    expect_problem(p, "profile.PayloadVersion: value '2' is not in the schema's rangelist");

    p = unit_profile(NULL, "x");
    plist_dict_set(mdm_of(p), "PayloadType", plist_new_string("com.example.nothing"));
    expect_problem(p, "no schema file");
}

/* ---- profile.c -------------------------------------------------------------------------- */

static void test_profile_scep_matches_schema(void **state)
{
    (void)state;
    plist_t *p = unit_profile(NULL, "one-time-challenge-1");
    const plist_t *id = assert_orchard_profile(p, "https://MDM.example.com:8443", "com.orchard.enroll.mdm.example.com",
                                               "Example Org");
    assert_string_equal(plist_dict_get_string(id, "PayloadType"), "com.apple.security.scep");
    const plist_t *c = plist_dict_get(id, "PayloadContent");
    assert_string_equal(plist_dict_get_string(c, "Challenge"), "one-time-challenge-1");
    assert_int_equal(strncmp(scep_cn(id), "orchard-device-", 15), 0); /* random when the device is unknown */
    const plist_t *mdm = profilecheck_payload(p, "com.apple.mdm", 0);
    assert_true(plist_bool(plist_dict_get(mdm, "SignMessage")));
    assert_false(plist_bool(plist_dict_get(mdm, "UseDevelopmentAPNS")));
    /* Anchors: the self-signed CA as a root, the TLS leaf as a plain certificate. */
    const plist_t *root = profilecheck_payload(p, "com.apple.security.root", 0);
    const plist_t *leaf = profilecheck_payload(p, "com.apple.security.pkcs1", 0);
    assert_non_null(root);
    assert_non_null(leaf);
    assert_null(profilecheck_payload(p, "com.apple.security.root", 1));
    size_t n = 0;
    const unsigned char *der = plist_data(plist_dict_get(root, "PayloadContent"), &n);
    X509 *x = d2i_X509(NULL, &der, (long)n);
    assert_non_null(x);
    assert_int_equal(X509_cmp(x, u_ca), 0);
    X509_free(x);
    plist_free(p);

    /* Two builds: same identifiers (a renewal replaces), fresh UUIDs. */
    plist_t *a = unit_profile("UDID-1", "c"), *b = unit_profile("UDID-1", "c");
    assert_string_equal(plist_dict_get_string(a, "PayloadIdentifier"), plist_dict_get_string(b, "PayloadIdentifier"));
    assert_string_not_equal(plist_dict_get_string(a, "PayloadUUID"), plist_dict_get_string(b, "PayloadUUID"));
    assert_string_equal(plist_dict_get_string(mdm_of(a), "PayloadIdentifier"),
                        plist_dict_get_string(mdm_of(b), "PayloadIdentifier"));
    plist_free(a);
    plist_free(b);
}

static void test_profile_names_the_device(void **state)
{
    (void)state;
    plist_t *p = unit_profile("00008110-000A1B2C3D4E5F60", "c");
    assert_schema_valid(p);
    assert_string_equal(scep_cn(profilecheck_payload(p, "com.apple.security.scep", 0)), "00008110-000A1B2C3D4E5F60");
    plist_free(p);
}

static void test_profile_options(void **state)
{
    (void)state;
    profile_opts_t o;
    profile_opts_init(&o);
    assert_int_equal(o.sign_message, 1);
    o.public_url = "https://[2001:db8::1]:8443";
    o.topic = TOPIC;
    o.sign_message = 0;
    o.use_development_apns = 1;
    char err[256];
    plist_t *p = profile_build(&o, err, sizeof err);
    assert_non_null(p);
    assert_orchard_profile(p, "https://[2001:db8::1]:8443", "com.orchard.enroll.2001-db8--1", "orchard");
    assert_false(plist_bool(plist_dict_get(mdm_of(p), "SignMessage")));
    assert_true(plist_bool(plist_dict_get(mdm_of(p), "UseDevelopmentAPNS")));
    /* No anchors given, no challenge given: none emitted. */
    assert_null(profilecheck_payload(p, "com.apple.security.root", 0));
    assert_null(plist_dict_get(scep_content_of(p), "Challenge"));
    plist_free(p);

    o.public_url = "http://mdm.example.com";
    assert_null(profile_build(&o, err, sizeof err));
    assert_non_null(strstr(err, "https://"));
    o.public_url = "https://mdm.example.com";
    o.topic = NULL;
    assert_null(profile_build(&o, err, sizeof err));
    assert_non_null(strstr(err, "push topic"));

    char *id = profile_identifier("https://Orchard.Example.COM:8443/base");
    assert_string_equal(id, "com.orchard.enroll.orchard.example.com");
    free(id);
    assert_null(profile_identifier("https://"));
}

static void test_profile_pkcs12(void **state)
{
    (void)state;
    unsigned char *der = NULL;
    size_t len = 0;
    char password[33];
    X509 *issued = NULL;
    char err[256];
    assert_int_equal(profile_issue_pkcs12(u_ca, u_ca_key, "UDID-P12", 30, &der, &len, password, &issued, err, sizeof err),
                     0);
    assert_int_equal(strlen(password), 32);
    /* The PKCS#12 opens with its password and holds the key and certificate. */
    const unsigned char *q = der;
    PKCS12 *p12 = d2i_PKCS12(NULL, &q, (long)len);
    assert_non_null(p12);
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    STACK_OF(X509) *extra = NULL;
    assert_int_equal(PKCS12_parse(p12, password, &k, &c, &extra), 1);
    assert_int_equal(X509_cmp(c, issued), 0);
    assert_int_equal(X509_check_private_key(c, k), 1);
    assert_int_equal(EVP_PKEY_get_bits(k), 2048);
    assert_true(extra == NULL || sk_X509_num(extra) == 0); /* "Only one certificate may be included." */
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(c), NID_commonName, cn, sizeof cn);
    assert_string_equal(cn, "UDID-P12");
    EVP_PKEY_free(k);
    X509_free(c);
    sk_X509_pop_free(extra, X509_free);
    k = NULL;
    c = NULL;
    extra = NULL;
    assert_int_equal(PKCS12_parse(p12, "wrong", &k, &c, &extra), 0);
    ERR_clear_error();
    PKCS12_free(p12);

    profile_opts_t o;
    profile_opts_init(&o);
    o.public_url = "https://mdm.example.com";
    o.topic = TOPIC;
    o.anchors = u_anchors;
    o.pkcs12 = der;
    o.pkcs12_len = len;
    o.pkcs12_password = password;
    plist_t *p = profile_build(&o, err, sizeof err);
    assert_non_null(p);
    const plist_t *id = assert_orchard_profile(p, "https://mdm.example.com", "com.orchard.enroll.mdm.example.com",
                                               "orchard");
    assert_string_equal(plist_dict_get_string(id, "PayloadType"), "com.apple.security.pkcs12");
    assert_string_equal(plist_dict_get_string(id, "Password"), password);
    assert_null(profilecheck_payload(p, "com.apple.security.scep", 0));
    plist_free(p);
    free(der);
    X509_free(issued);

    assert_int_equal(profile_issue_pkcs12(u_ca, NULL, "x", 30, &der, &len, password, NULL, err, sizeof err), -1);
    assert_non_null(strstr(err, "CA key"));
}

static void test_profile_signature(void **state)
{
    (void)state;
    profile_opts_t o;
    profile_opts_init(&o);
    o.public_url = "https://mdm.example.com";
    o.topic = TOPIC;
    o.scep_challenge = "c";
    o.anchors = u_anchors;
    unsigned char *der = NULL;
    size_t len = 0;
    char err[256];
    assert_int_equal(profile_generate(&o, u_tls, u_tls_key, u_anchors, &der, &len, err, sizeof err), 0);
    plist_t *p = profilecheck_open(der, len, u_ca);
    assert_non_null(p);
    assert_schema_valid(p);
    plist_free(p);

    /* The chain travels with the signature: signer and CA, each once. */
    const unsigned char *q = der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &q, (long)len);
    STACK_OF(X509) *certs = CMS_get1_certs(cms);
    assert_int_equal(sk_X509_num(certs), 2);
    sk_X509_pop_free(certs, X509_free);
    CMS_ContentInfo_free(cms);

    /* A changed byte in the content breaks the signature. */
    unsigned char *hit = memmem(der, len, "mdm.example.com", 15);
    assert_non_null(hit);
    hit[0] = 'M';
    q = der;
    cms = d2i_CMS_ContentInfo(NULL, &q, (long)len);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, u_ca);
    X509_STORE_set_purpose(store, X509_PURPOSE_ANY);
    assert_int_not_equal(CMS_verify(cms, NULL, store, NULL, NULL, CMS_BINARY), 1);
    ERR_clear_error();
    X509_STORE_free(store);
    CMS_ContentInfo_free(cms);
    OPENSSL_free(der);

    /* A key that does not belong to the certificate is refused by name. */
    EVP_PKEY *other = pki_new_ec_key();
    assert_int_equal(profile_generate(&o, u_tls, other, u_anchors, &der, &len, err, sizeof err), -1);
    assert_non_null(strstr(err, "does not match"));
    EVP_PKEY_free(other);
}

/* ---- machineinfo.c ------------------------------------------------------------------------ */

static identity_verifier_t *dev_verifier(void)
{
    char *err = NULL;
    identity_verifier_t *v = identity_verifier_new(devca_pem, &err);
    assert_non_null(v);
    free(err);
    return v;
}

static machineinfo_result_t mi_try(identity_verifier_t *v, const void *body, size_t len, char *why, size_t wl)
{
    machineinfo_t m;
    machineinfo_result_t r = machineinfo_verify_and_parse(v, body, len, &m, why, wl);
    if (r == MACHINEINFO_OK)
        machineinfo_free(&m);
    else
        assert_null(m.udid); /* nothing handed back on failure */
    return r;
}

static void test_machineinfo_parse(void **state)
{
    (void)state;
    identity_verifier_t *v = dev_verifier();
    signer_t s;
    signer_make(&s, devca_pem, devca_key, "device-signer");
    plist_t *d = mi_dict("00008110-000A1B2C3D4E5F60", "C02XYZ123");
    unsigned char tok[] = {1, 2, 3, 4};
    plist_dict_set(d, "PAIRING_TOKEN", plist_new_data(tok, sizeof tok));
    plist_dict_set(d, "SOME_FUTURE_KEY", plist_new_string("ignored"));
    size_t len;
    unsigned char *body = mi_sign(d, s.cert, s.key, 0, &len);
    machineinfo_t m;
    char why[256];
    assert_int_equal(machineinfo_verify_and_parse(v, body, len, &m, why, sizeof why), MACHINEINFO_OK);
    assert_string_equal(m.udid, "00008110-000A1B2C3D4E5F60");
    assert_string_equal(m.serial, "C02XYZ123");
    assert_string_equal(m.product, "iPhone16,1");
    assert_string_equal(m.version, "22B83");
    assert_string_equal(m.os_version, "18.1");
    assert_string_equal(m.language, "en");
    assert_string_equal(m.imei, "35 000000 000000 0");
    assert_null(m.meid);
    assert_int_equal(m.mdm_can_request_software_update, 1);
    assert_int_equal(m.pairing_token_len, 4);
    assert_memory_equal(m.pairing_token, tok, 4);
    assert_int_equal(X509_cmp(m.signer, s.cert), 0);
    machineinfo_free(&m);

    /* Base64 of the same bytes (the x-apple-aspen-deviceinfo form). */
    char *b64 = util_base64_encode(body, len);
    assert_int_equal(machineinfo_verify_and_parse(v, b64, strlen(b64), &m, why, sizeof why), MACHINEINFO_OK);
    machineinfo_free(&m);
    free(b64);

    /* OS_VERSION only exists from iOS 17: older devices are accepted. */
    plist_t *d2 = plist_new_dict();
    plist_dict_set(d2, "UDID", plist_new_string("UDID-OLD"));
    plist_dict_set(d2, "SERIAL", plist_new_string("SERIAL-OLD"));
    plist_dict_set(d2, "PRODUCT", plist_new_string("iPhone10,1"));
    plist_dict_set(d2, "VERSION", plist_new_string("20H115"));
    free(body);
    body = mi_sign(d2, s.cert, s.key, 0, &len);
    assert_int_equal(machineinfo_verify_and_parse(v, body, len, &m, why, sizeof why), MACHINEINFO_OK);
    assert_null(m.os_version);
    machineinfo_free(&m);
    free(body);
    signer_free(&s);
    identity_verifier_free(v);
}

static void test_machineinfo_refusals(void **state)
{
    (void)state;
    identity_verifier_t *v = dev_verifier();
    signer_t s, evil;
    signer_make(&s, devca_pem, devca_key, "device-signer");
    signer_make(&evil, evilca_pem, evilca_key, "device-signer");
    char why[256];
    size_t len;
    unsigned char *body;

    /* Tampered: one byte of the signed plist changed. */
    body = mi_sign(mi_dict("UDID-T", "SERIAL-TAMPER"), s.cert, s.key, 0, &len);
    unsigned char *hit = memmem(body, len, "SERIAL-TAMPER", 13);
    assert_non_null(hit);
    hit[7] = 'X';
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_UNTRUSTED);
    assert_non_null(strstr(why, "signature does not verify"));
    free(body);

    /* Signed by a CA we do not trust. */
    body = mi_sign(mi_dict("UDID-E", "S"), evil.cert, evil.key, 0, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_UNTRUSTED);
    assert_non_null(strstr(why, "not trusted"));
    free(body);

    /* Not signed at all. */
    plist_t *d = mi_dict("UDID-U", "S");
    size_t xl;
    char *xml = plist_to_xml(d, &xl);
    plist_free(d);
    assert_int_equal(mi_try(v, xml, xl, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "not signed"));
    free(xml);

    /* Detached signature: the plist is not inside. */
    body = mi_sign(mi_dict("UDID-D", "S"), s.cert, s.key, CMS_DETACHED, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "detached"));
    free(body);

    /* Missing and mistyped keys. */
    body = mi_sign(mi_dict(NULL, "S"), s.cert, s.key, 0, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_string_equal(why, "MachineInfo: UDID is missing");
    free(body);
    d = mi_dict("UDID-W", NULL);
    plist_dict_set(d, "SERIAL", plist_new_integer(42));
    body = mi_sign(d, s.cert, s.key, 0, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "SERIAL must be a string"));
    free(body);
    d = mi_dict("UDID-W", "S");
    plist_dict_set(d, "PAIRING_TOKEN", plist_new_string("token"));
    body = mi_sign(d, s.cert, s.key, 0, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "PAIRING_TOKEN must be data"));
    free(body);
    d = mi_dict("UDID-W", "S");
    plist_dict_set(d, "MDM_CAN_REQUEST_SOFTWARE_UPDATE", plist_new_string("yes"));
    body = mi_sign(d, s.cert, s.key, 0, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "must be a boolean"));
    free(body);
    body = mi_sign(mi_dict("bad udid/with space", "S"), s.cert, s.key, 0, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "UDID has characters"));
    free(body);
    d = plist_new_array();
    body = mi_sign(d, s.cert, s.key, 0, &len);
    assert_int_equal(mi_try(v, body, len, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "must be a dict"));
    free(body);

    /* Garbage, trailing bytes, nothing, no verifier. */
    assert_int_equal(mi_try(v, "\x30\x03\x02\x01\x01", 5, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_int_equal(mi_try(v, "hello world", 11, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_int_equal(mi_try(v, "", 0, why, sizeof why), MACHINEINFO_MALFORMED);
    body = mi_sign(mi_dict("UDID-X", "S"), s.cert, s.key, 0, &len);
    unsigned char *longer = malloc(len + 1);
    memcpy(longer, body, len);
    longer[len] = 0;
    assert_int_equal(mi_try(v, longer, len + 1, why, sizeof why), MACHINEINFO_MALFORMED);
    assert_non_null(strstr(why, "trailing"));
    assert_int_equal(mi_try(NULL, body, len, why, sizeof why), MACHINEINFO_UNTRUSTED);
    free(longer);
    free(body);

    signer_free(&s);
    signer_free(&evil);
    identity_verifier_free(v);
}

/* ---- GET /enroll -------------------------------------------------------------------------- */

static void test_ota_get_requires_secret(void **state)
{
    (void)state;
    hresp_t r;
    http_do(&srv, "GET", "/enroll", NULL, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 401);
    assert_non_null(strstr(r.www_auth, "Basic"));
    hresp_free(&r);
    assert_true(testserver_log_contains(&srv, "enrollment secret missing"));
    http_do(&srv, "GET", "/enroll?secret=not-the-secret", NULL, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 401);
    hresp_free(&r);
    http_do(&srv, "GET", "/enroll?secret=" SECRET "x", NULL, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 401);
    hresp_free(&r);
    http_do(&srv, "GET", "/enroll", "anyone:wrong", NULL, NULL, 0, &r);
    assert_int_equal(r.status, 401);
    hresp_free(&r);
    assert_true(testserver_log_contains(&srv, "enrollment secret wrong"));

    /* Right secret, as HTTP Basic password (any user). */
    http_do(&srv, "GET", "/enroll", "admin:" SECRET, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.ctype, PROFILE_CONTENT_TYPE);
    hresp_free(&r);

    http_do(&srv, "PUT", "/enroll", NULL, NULL, "x", 1, &r);
    assert_int_equal(r.status, 405);
    hresp_free(&r);
    http_do(&srv, "GET", "/enroll?secret=" SECRET "&identity=smartcard", NULL, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 400);
    hresp_free(&r);
    assert_false(testserver_log_contains(&srv, SECRET));
}

static void test_ota_get_profile(void **state)
{
    (void)state;
    plist_t *p = get_profile(&srv, NULL);
    const plist_t *id = assert_orchard_profile(p, "https://127.0.0.1", "com.orchard.enroll.127.0.0.1", "Test Org");
    assert_int_equal(strncmp(scep_cn(id), "orchard-device-", 15), 0);
    /* Anchors: the server's CA (root) and its TLS certificate. */
    assert_non_null(profilecheck_payload(p, "com.apple.security.root", 0));
    assert_non_null(profilecheck_payload(p, "com.apple.security.pkcs1", 0));
    /* A fresh one-time challenge, not bound to any device, usable once. */
    const char *challenge = scep_challenge_of(p);
    assert_int_equal(strlen(challenge), 32);
    assert_false(testserver_log_contains(&srv, challenge));
    assert_null(consume_challenge(&srv, challenge));
    plist_t *q = get_profile(&srv, NULL);
    assert_string_not_equal(scep_challenge_of(q), challenge);
    plist_free(q);
    plist_free(p);

    /* A static challenge, when configured, goes into GET profiles. */
    p = get_profile(&srv_known, NULL);
    assert_schema_valid(p);
    assert_string_equal(scep_challenge_of(p), STATIC_CHALLENGE);
    plist_free(p);
}

static void test_ota_get_pkcs12(void **state)
{
    (void)state;
    plist_t *p = get_profile(&srv, "&identity=pkcs12");
    const plist_t *id = assert_orchard_profile(p, "https://127.0.0.1", "com.orchard.enroll.127.0.0.1", "Test Org");
    assert_string_equal(plist_dict_get_string(id, "PayloadType"), "com.apple.security.pkcs12");
    size_t len = 0;
    const unsigned char *der = plist_data(plist_dict_get(id, "PayloadContent"), &len);
    PKCS12 *p12 = d2i_PKCS12(NULL, &der, (long)len);
    assert_non_null(p12);
    EVP_PKEY *k = NULL;
    X509 *c = NULL;
    assert_int_equal(PKCS12_parse(p12, plist_dict_get_string(id, "Password"), &k, &c, NULL), 1);
    /* Issued by the server's CA and recorded. */
    X509 *ca = server_ca(&srv);
    assert_int_equal(X509_check_issued(ca, c), X509_V_OK);
    char sha[65];
    assert_int_equal(pki_cert_sha256_hex(c, sha), 0);
    store_t *st = open_store(&srv);
    issued_cert_t rec;
    assert_int_equal(st->ops->cert_by_sha256(st, sha, &rec), STORE_OK);
    assert_null(rec.enrollment_id);
    issued_cert_free(&rec);
    store_close(st);
    X509_free(ca);
    X509_free(c);
    EVP_PKEY_free(k);
    PKCS12_free(p12);
    plist_free(p);
    assert_true(testserver_log_contains(&srv, "via=pkcs12-profile"));
}

static void test_ota_unconfigured(void **state)
{
    (void)state;
    /* srv_bare: generated secret, no push topic, no MachineInfo trust. */
    char *path = util_strdup_printf("%s/enroll.secret", srv_bare.dir);
    char *secret = util_read_file(path, 4096, NULL);
    free(path);
    assert_non_null(secret);
    secret[strcspn(secret, "\r\n")] = '\0';
    char *q = util_strdup_printf("/enroll?secret=%s", secret);
    hresp_t r;
    http_do(&srv_bare, "GET", q, NULL, NULL, NULL, 0, &r);
    assert_int_equal(r.status, 503);
    assert_non_null(strstr(r.body.data, "no push topic"));
    hresp_free(&r);
    free(q);
    free(secret);
    http_do(&srv_bare, "POST", "/enroll", NULL, "application/pkcs7-signature", "\x30\x00", 2, &r);
    assert_int_equal(r.status, 403);
    assert_non_null(strstr(r.body.data, "enrollment by MachineInfo is not configured (--machineinfo-ca)"));
    hresp_free(&r);
    assert_true(testserver_log_contains(&srv_bare, "enrollment by MachineInfo is not configured"));
}

/* ---- POST /enroll ---------------------------------------------------------------------------- */

static plist_t *post_machineinfo(const testserver_t *s, const char *udid, const char *serial, long expect)
{
    signer_t sg;
    signer_make(&sg, devca_pem, devca_key, "device-signer");
    size_t len;
    unsigned char *body = mi_sign(mi_dict(udid, serial), sg.cert, sg.key, 0, &len);
    hresp_t r;
    http_do(s, "POST", "/enroll", NULL, "application/pkcs7-signature", body, len, &r);
    free(body);
    signer_free(&sg);
    if (r.status != expect)
        fprintf(stderr, "POST /enroll: %ld %s\n", r.status, r.body.data ? r.body.data : "");
    assert_int_equal(r.status, expect);
    plist_t *p = NULL;
    if (expect == 200) {
        assert_string_equal(r.ctype, PROFILE_CONTENT_TYPE);
        X509 *ca = server_ca(s);
        p = profilecheck_open((const unsigned char *)r.body.data, r.body.len, ca);
        assert_non_null(p);
        X509_free(ca);
    }
    hresp_free(&r);
    return p;
}

static void test_ota_post_machineinfo(void **state)
{
    (void)state;
    plist_t *p = post_machineinfo(&srv, "UDID-MI-OK-1", "SERIAL-MI-1", 200);
    const plist_t *id = assert_orchard_profile(p, "https://127.0.0.1", "com.orchard.enroll.127.0.0.1", "Test Org");
    assert_string_equal(scep_cn(id), "UDID-MI-OK-1");
    char *bound = consume_challenge(&srv, scep_challenge_of(p));
    assert_non_null(bound);
    assert_string_equal(bound, "UDID-MI-OK-1");
    free(bound);
    plist_free(p);

    /* With a static challenge configured, MachineInfo still gets a bound
     * one-time challenge. */
    store_t *st = open_store(&srv_known);
    assert_int_equal(st->ops->device_allow(st, "SERIAL-MI-2", util_now()), STORE_OK);
    store_close(st);
    p = post_machineinfo(&srv_known, "UDID-MI-OK-2", "SERIAL-MI-2", 200);
    assert_string_not_equal(scep_challenge_of(p), STATIC_CHALLENGE);
    bound = consume_challenge(&srv_known, scep_challenge_of(p));
    assert_string_equal(bound, "UDID-MI-OK-2");
    free(bound);
    plist_free(p);
}

static void post_expect(const void *body, size_t len, long status, const char *log_needle)
{
    long before = count_rows(&srv, "scep_challenges");
    hresp_t r;
    http_do(&srv, "POST", "/enroll", NULL, "application/pkcs7-signature", body, len, &r);
    assert_int_equal(r.status, status);
    hresp_free(&r);
    assert_true(testserver_log_contains(&srv, log_needle));
    assert_int_equal(count_rows(&srv, "scep_challenges"), before); /* nothing stored */
}

static void test_ota_post_refusals(void **state)
{
    (void)state;
    signer_t s, evil;
    signer_make(&s, devca_pem, devca_key, "device-signer");
    signer_make(&evil, evilca_pem, evilca_key, "device-signer");
    size_t len;
    unsigned char *body = mi_sign(mi_dict("UDID-TAMPER", "SERIAL-TAMPER"), s.cert, s.key, 0, &len);
    unsigned char *hit = memmem(body, len, "UDID-TAMPER", 11);
    hit[5] = 'X';
    post_expect(body, len, 403, "MachineInfo signature does not verify");
    free(body);

    body = mi_sign(mi_dict("UDID-EVIL", "SERIAL-EVIL"), evil.cert, evil.key, 0, &len);
    post_expect(body, len, 403, "MachineInfo signer is not trusted");
    free(body);

    plist_t *d = mi_dict("UDID-PLAIN", "SERIAL-PLAIN");
    size_t xl;
    char *xml = plist_to_xml(d, &xl);
    plist_free(d);
    post_expect(xml, xl, 400, "MachineInfo is not signed");
    free(xml);

    body = mi_sign(mi_dict(NULL, "SERIAL-NOUDID"), s.cert, s.key, 0, &len);
    post_expect(body, len, 400, "MachineInfo: UDID is missing");
    free(body);

    d = mi_dict("UDID-TYPES", "SERIAL-TYPES");
    plist_dict_set(d, "VERSION", plist_new_integer(22));
    body = mi_sign(d, s.cert, s.key, 0, &len);
    post_expect(body, len, 400, "MachineInfo: VERSION must be a string");
    free(body);

    post_expect("", 0, 400, "MachineInfo is missing (empty body)");
    signer_free(&s);
    signer_free(&evil);
}

static void test_admission_known(void **state)
{
    (void)state;
    long before = count_rows(&srv_known, "scep_challenges");
    signer_t sg;
    signer_make(&sg, devca_pem, devca_key, "device-signer");
    size_t len;
    unsigned char *body = mi_sign(mi_dict("UDID-ADM-1", "SERIAL-ADM-1"), sg.cert, sg.key, 0, &len);
    hresp_t r;
    http_do(&srv_known, "POST", "/enroll", NULL, "application/pkcs7-signature", body, len, &r);
    assert_int_equal(r.status, 403);
    assert_string_equal(r.ctype, "application/json");
    json_t *j = json_loads(r.body.data, 0, NULL);
    assert_non_null(j);
    assert_string_equal(json_string_value(json_object_get(j, "code")), "com.apple.unrecognized.device");
    assert_non_null(json_string_value(json_object_get(j, "description")));
    assert_non_null(json_string_value(json_object_get(j, "message")));
    /* The body is Apple's documented error shape: check it like a plist. */
    schema_report_t rep;
    memset(&rep, 0, sizeof rep);
    char *ypath = util_strdup_printf("%s/mdm/errors/unrecognized.device.yaml", schemas);
    char err[512];
    schema_t *sch = schema_load(ypath, err, sizeof err);
    assert_non_null(sch);
    plist_t *as_plist = plist_new_dict();
    const char *k;
    json_t *v;
    json_object_foreach(j, k, v) plist_dict_set(as_plist, k, plist_new_string(json_string_value(v)));
    const schema_t *one[1] = {sch};
    assert_int_equal(schema_check_dict(one, 1, as_plist, "403", &rep), 0);
    plist_free(as_plist);
    schema_free(sch);
    free(ypath);
    schema_report_free(&rep);
    json_decref(j);
    hresp_free(&r);
    assert_true(testserver_log_contains(&srv_known, "serial SERIAL-ADM-1 / UDID UDID-ADM-1 is not on the known-devices list"));
    assert_int_equal(count_rows(&srv_known, "scep_challenges"), before);

    /* Register the serial through the API; then the same device enrolls. */
    json_t *out = NULL;
    assert_int_equal(testserver_api(&srv_known, "", "GET", "/v1/admission/SERIAL-ADM-1", NULL, 0, &out), 200);
    assert_false(json_is_true(json_object_get(out, "allowed")));
    assert_string_equal(json_string_value(json_object_get(out, "policy")), "known");
    json_decref(out);
    assert_int_equal(testserver_api(&srv_known, "", "PUT", "/v1/admission/SERIAL-ADM-1", NULL, 0, &out), 200);
    assert_true(json_is_true(json_object_get(out, "allowed")));
    json_decref(out);
    http_do(&srv_known, "POST", "/enroll", NULL, "application/pkcs7-signature", body, len, &r);
    assert_int_equal(r.status, 200);
    hresp_free(&r);

    /* Removed again: refused again. By UDID works as well as by serial. */
    assert_int_equal(testserver_api(&srv_known, "", "DELETE", "/v1/admission/SERIAL-ADM-1", NULL, 0, &out), 200);
    json_decref(out);
    assert_int_equal(testserver_api(&srv_known, "", "DELETE", "/v1/admission/SERIAL-ADM-1", NULL, 0, &out), 404);
    json_decref(out);
    http_do(&srv_known, "POST", "/enroll", NULL, "application/pkcs7-signature", body, len, &r);
    assert_int_equal(r.status, 403);
    hresp_free(&r);
    assert_int_equal(testserver_api(&srv_known, "", "PUT", "/v1/admission/UDID-ADM-1", NULL, 0, &out), 200);
    json_decref(out);
    http_do(&srv_known, "POST", "/enroll", NULL, "application/pkcs7-signature", body, len, &r);
    assert_int_equal(r.status, 200);
    hresp_free(&r);
    assert_int_equal(testserver_api(&srv_known, "", "PUT", "/v1/admission/bad%20id", NULL, 0, &out), 400);
    json_decref(out);
    free(body);
    signer_free(&sg);
}

/* ---- admin: challenges, certificates, renewals ---------------------------------------------- */

static void test_challenges_api(void **state)
{
    (void)state;
    json_t *out = NULL;
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/challenges?udid=UDID-CH-1", NULL, 0, &out), 201);
    const char *ch = json_string_value(json_object_get(out, "challenge"));
    assert_non_null(ch);
    assert_int_equal(strlen(ch), 32);
    assert_string_equal(json_string_value(json_object_get(out, "udid")), "UDID-CH-1");
    assert_false(testserver_log_contains(&srv, ch));
    char *bound = consume_challenge(&srv, ch);
    assert_string_equal(bound, "UDID-CH-1");
    free(bound);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/challenges", NULL, 0, &out), 201);
    assert_true(json_is_null(json_object_get(out, "udid")));
    assert_null(consume_challenge(&srv, json_string_value(json_object_get(out, "challenge"))));
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/challenges?udid=a%2Cb", NULL, 0, &out), 400);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/challenges", NULL, 0, &out), 405);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, NULL, "POST", "/v1/challenges", NULL, 0, &out), 401);
    json_decref(out);
}

typedef struct {
    EVP_PKEY *key;
    X509 *cert;
    devsim_t *d;
} sim_t;

static void sim_enroll(sim_t *s, const char *udid)
{
    memset(s, 0, sizeof *s);
    assert_int_equal(testserver_device_identity(&srv, udid, &s->key, &s->cert), 0);
    s->d = devsim_new(srv.base_url, srv.ca_path, udid, s->key, s->cert, DEVSIM_AUTH_MTLS);
    assert_non_null(s->d);
    assert_int_equal(devsim_authenticate(s->d), 200);
    assert_int_equal(devsim_token_update(s->d), 200);
}

static void sim_free(sim_t *s)
{
    devsim_free(s->d);
    EVP_PKEY_free(s->key);
    X509_free(s->cert);
}

/* Records a device's certificate as one orchard issued, expiring in `days`. */
static void record_cert(store_t *st, X509 *cert, const char *serial, const char *udid, int days)
{
    char sha[65];
    assert_int_equal(pki_cert_sha256_hex(cert, sha), 0);
    char *subject = util_strdup_printf("CN=%s", udid);
    issued_cert_t c = {.serial = (char *)serial, .subject = subject, .enrollment_id = (char *)udid, .sha256 = sha,
                       .not_before = util_now() - 86400, .not_after = util_now() + (int64_t)days * 86400,
                       .issued_at = util_now() - 86400};
    assert_int_equal(st->ops->cert_add(st, &c), STORE_OK);
    free(subject);
}

static void test_renewals(void **state)
{
    (void)state;
    sim_t a, b, c;
    sim_enroll(&a, "UDID-RENEW-A");
    sim_enroll(&b, "UDID-RENEW-B");
    sim_enroll(&c, "UDID-RENEW-C");
    assert_int_equal(devsim_checkout(c.d), 200); /* inactive: never renewed */
    store_t *st = open_store(&srv);
    record_cert(st, a.cert, "0a0a01", "UDID-RENEW-A", 10);
    record_cert(st, b.cert, "0b0b01", "UDID-RENEW-B", 200);
    record_cert(st, c.cert, "0c0c01", "UDID-RENEW-C", 5);
    store_close(st);

    json_t *out = NULL;
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/renewals", NULL, 0, &out), 400);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/renewals?days=30", NULL, 0, &out), 405);
    json_decref(out);

    /* Dry run: who would be renewed, nothing queued. */
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/renewals?days=30&dry_run=1", NULL, 0, &out), 200);
    json_t *devs = json_object_get(out, "devices");
    assert_non_null(json_object_get(devs, "UDID-RENEW-A"));
    assert_null(json_object_get(devs, "UDID-RENEW-B"));
    assert_null(json_object_get(devs, "UDID-RENEW-C"));
    assert_null(json_object_get(json_object_get(devs, "UDID-RENEW-A"), "command_uuid"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(json_object_get(out, "skipped"), "0c0c01"),
                                                          "reason")),
                        "enrollment is not active");
    assert_int_equal(json_integer_value(json_object_get(out, "queued")), 0);
    json_decref(out);

    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/renewals?days=30", NULL, 0, &out), 200);
    json_t *ea = json_object_get(json_object_get(out, "devices"), "UDID-RENEW-A");
    const char *uuid = json_string_value(json_object_get(ea, "command_uuid"));
    assert_non_null(uuid);
    assert_int_equal(strncmp(uuid, "renew-", 6), 0);
    char *cmd_uuid = strdup(uuid);
    assert_string_equal(json_string_value(json_object_get(ea, "certificate_serial")), "0a0a01");
    /* Push outcome reported per device (no push certificate here). */
    assert_true(json_object_get(ea, "push_error") || json_object_get(ea, "push_result"));
    assert_null(json_object_get(json_object_get(out, "devices"), "UDID-RENEW-B"));
    assert_int_equal(json_integer_value(json_object_get(out, "queued")), 1);
    json_decref(out);

    /* Called again while the first is pending: not queued twice. */
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/renewals?days=30", NULL, 0, &out), 200);
    ea = json_object_get(json_object_get(out, "devices"), "UDID-RENEW-A");
    assert_string_equal(json_string_value(json_object_get(ea, "already_pending")), cmd_uuid);
    assert_int_equal(json_integer_value(json_object_get(out, "queued")), 0);
    json_decref(out);

    /* B has nothing; A receives InstallProfile with a profile for itself. */
    devsim_reply_t r;
    assert_int_equal(devsim_idle(b.d, &r), 0);
    assert_null(devsim_command_uuid(&r));
    devsim_reply_free(&r);
    assert_int_equal(devsim_idle(a.d, &r), 0);
    assert_int_equal(r.status, 200);
    assert_string_equal(devsim_request_type(&r), "InstallProfile");
    assert_string_equal(devsim_command_uuid(&r), cmd_uuid);
    const plist_t *inner = plist_dict_get(r.command, "Command");
    /* The command itself against Apple's InstallProfile schema. */
    char *ypath = util_strdup_printf("%s/mdm/commands/profile.install.yaml", schemas);
    char err[512];
    schema_t *sch = schema_load(ypath, err, sizeof err);
    assert_non_null(sch);
    assert_string_equal(sch->payloadtype, "InstallProfile");
    schema_key_t rt = {.name = "RequestType", .type = "string", .required = 1, .rep_min = -1, .rep_max = -1};
    schema_t rts = {.keys = &rt, .nkeys = 1};
    const schema_t *both[2] = {sch, &rts};
    schema_report_t rep;
    memset(&rep, 0, sizeof rep);
    assert_int_equal(schema_check_dict(both, 2, inner, "Command", &rep), 0);
    schema_report_free(&rep);
    schema_free(sch);
    free(ypath);
    size_t plen = 0;
    const unsigned char *pder = plist_data(plist_dict_get(inner, "Payload"), &plen);
    X509 *ca = server_ca(&srv);
    plist_t *profile = profilecheck_open(pder, plen, ca);
    assert_non_null(profile);
    X509_free(ca);
    const plist_t *id = assert_orchard_profile(profile, "https://127.0.0.1", "com.orchard.enroll.127.0.0.1", "Test Org");
    assert_string_equal(scep_cn(id), "UDID-RENEW-A");
    char *bound = consume_challenge(&srv, scep_challenge_of(profile));
    assert_string_equal(bound, "UDID-RENEW-A");
    free(bound);
    plist_free(profile);
    devsim_reply_free(&r);
    assert_int_equal(devsim_report(a.d, cmd_uuid, "Acknowledged", NULL, &r), 0);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);
    free(cmd_uuid);

    /* Certificates API over the same records. */
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/certificates?udid=UDID-RENEW-A", NULL, 0, &out), 200);
    assert_int_equal(json_array_size(json_object_get(out, "certificates")), 1);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/certificates?expiring_within_days=30", NULL, 0, &out), 200);
    json_t *arr = json_object_get(out, "certificates");
    int seen_a = 0, seen_b = 0, seen_c = 0;
    size_t i;
    json_t *v;
    json_array_foreach(arr, i, v)
    {
        const char *sn = json_string_value(json_object_get(v, "serial"));
        seen_a |= strcmp(sn, "0a0a01") == 0;
        seen_b |= strcmp(sn, "0b0b01") == 0;
        seen_c |= strcmp(sn, "0c0c01") == 0;
    }
    assert_true(seen_a && seen_c && !seen_b);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/certificates/0B:0B:01", NULL, 0, &out), 200);
    assert_string_equal(json_string_value(json_object_get(out, "subject")), "CN=UDID-RENEW-B");
    assert_false(json_is_true(json_object_get(out, "revoked")));
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/certificates/ffff01", NULL, 0, &out), 404);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/certificates/xyz", NULL, 0, &out), 400);
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/certificates/0b0b01/revoke", NULL, 0, &out), 200);
    assert_true(json_is_true(json_object_get(out, "revoked")));
    json_decref(out);
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/certificates/0b0b01/revoke", NULL, 0, &out), 404);
    json_decref(out);
    /* B's identity is refused from now on. */
    assert_int_equal(devsim_idle(b.d, &r), 0);
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);

    sim_free(&a);
    sim_free(&b);
    sim_free(&c);
}

/* ---- end to end: MachineInfo → profile → SCEP → check-in → renewal ----------------------------- */

static int scep_ready(const testserver_t *s)
{
    long status = 0;
    size_t len = 0;
    char ct[128];
    unsigned char *b = testscep_get(s->base_url, s->ca_path, "GetCACaps", &status, &len, ct, sizeof ct);
    free(b);
    return status == 200;
}

static void test_end_to_end(void **state)
{
    (void)state;
    if (!scep_ready(&srv)) {
        fprintf(stderr, "SCEP endpoint not available yet: end-to-end test skipped\n");
        skip();
    }
    const char *udid = "UDID-E2E-0001";
    plist_t *p = post_machineinfo(&srv, udid, "SERIAL-E2E", 200);
    const plist_t *scep = profilecheck_payload(p, "com.apple.security.scep", 0);
    const plist_t *c = plist_dict_get(scep, "PayloadContent");
    const char *url = plist_dict_get_string(c, "URL");
    char *expect = util_strdup_printf("https://127.0.0.1/scep");
    assert_string_equal(url, expect); /* the public URL; the test talks to the real port */
    free(expect);
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char err[256];
    if (testscep_enroll(srv.base_url, srv.ca_path, plist_dict_get_string(c, "Challenge"), scep_cn(scep), &key, &cert,
                        err, sizeof err) != 0)
        fprintf(stderr, "SCEP: %s\n", err);
    assert_non_null(cert);
    plist_free(p);

    devsim_t *d = devsim_new(srv.base_url, srv.ca_path, udid, key, cert, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(d), 200);
    assert_int_equal(devsim_token_update(d), 200);
    devsim_reply_t r;
    assert_int_equal(devsim_idle(d, &r), 0);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);

    /* Renewal: the certificate SCEP issued is due within 400 days. */
    json_t *out = NULL;
    assert_int_equal(testserver_api(&srv, "", "POST", "/v1/renewals?days=400", NULL, 0, &out), 200);
    const char *uuid = json_string_value(json_object_get(json_object_get(json_object_get(out, "devices"), udid),
                                                         "command_uuid"));
    assert_non_null(uuid);
    char *cmd_uuid = strdup(uuid);
    json_decref(out);
    assert_int_equal(devsim_idle(d, &r), 0);
    assert_string_equal(devsim_command_uuid(&r), cmd_uuid);
    size_t plen = 0;
    const unsigned char *pder = plist_data(plist_dict_get(plist_dict_get(r.command, "Command"), "Payload"), &plen);
    X509 *ca = server_ca(&srv);
    p = profilecheck_open(pder, plen, ca);
    assert_non_null(p);
    X509_free(ca);
    devsim_reply_free(&r);
    assert_int_equal(devsim_report(d, cmd_uuid, "Acknowledged", NULL, &r), 0);
    devsim_reply_free(&r);
    free(cmd_uuid);
    scep = profilecheck_payload(p, "com.apple.security.scep", 0);
    EVP_PKEY *key2 = NULL;
    X509 *cert2 = NULL;
    if (testscep_enroll(srv.base_url, srv.ca_path, scep_challenge_of(p), scep_cn(scep), &key2, &cert2, err,
                        sizeof err) != 0)
        fprintf(stderr, "SCEP renewal: %s\n", err);
    assert_non_null(cert2);
    plist_free(p);

    /* The device installs the new identity and re-authenticates: accepted
     * for the active enrollment because the certificate names the UDID. */
    devsim_t *d2 = devsim_new(srv.base_url, srv.ca_path, udid, key2, cert2, DEVSIM_AUTH_MTLS);
    assert_int_equal(devsim_authenticate(d2), 200);
    assert_int_equal(devsim_token_update(d2), 200);
    assert_int_equal(devsim_idle(d2, &r), 0);
    assert_int_equal(r.status, 200);
    devsim_reply_free(&r);
    assert_int_equal(devsim_idle(d, &r), 0); /* the old identity is no longer bound */
    assert_int_equal(r.status, 401);
    devsim_reply_free(&r);
    json_t *dev = NULL;
    assert_int_equal(testserver_api(&srv, "", "GET", "/v1/devices/UDID-E2E-0001", NULL, 0, &dev), 200);
    assert_string_equal(json_string_value(json_object_get(dev, "state")), "active");
    json_decref(dev);
    devsim_free(d);
    devsim_free(d2);
    EVP_PKEY_free(key);
    X509_free(cert);
    EVP_PKEY_free(key2);
    X509_free(cert2);
}


/* ---- command line (cli_enroll_main, called directly: main.c wires it) ----------------------- */

static int run_cli(const char *command, const char *const *args)
{
    const char *argv[24];
    int n = 0;
    argv[n++] = command;
    for (int i = 0; args[i] && n < 16; i++)
        argv[n++] = args[i];
    argv[n++] = "--server";
    argv[n++] = srv.base_url;
    argv[n++] = "--cacert";
    argv[n++] = srv.ca_path;
    argv[n++] = "--api-key";
    argv[n++] = TESTSERVER_API_KEY;
    argv[n] = NULL;
    fflush(stdout);
    return cli_enroll_main(command, n, (char **)argv);
}

static void test_cli_enroll(void **state)
{
    (void)state;
    assert_int_equal(run_cli("certs", (const char *[]){"list", "--expiring-within-days", "30", NULL}), 0);
    assert_int_equal(run_cli("certs", (const char *[]){"show", "ffff01", NULL}), 1);
    assert_int_equal(run_cli("certs", (const char *[]){"list", "--limit", "many", NULL}), 2);
    assert_int_equal(run_cli("admission", (const char *[]){"allow", "SERIAL-CLI-1", NULL}), 0);
    assert_int_equal(run_cli("admission", (const char *[]){"show", "SERIAL-CLI-1", NULL}), 0);
    assert_int_equal(run_cli("admission", (const char *[]){"deny", "SERIAL-CLI-1", NULL}), 0);
    assert_int_equal(run_cli("admission", (const char *[]){"deny", "SERIAL-CLI-1", NULL}), 1);
    assert_int_equal(run_cli("admission", (const char *[]){"permit", "SERIAL-CLI-1", NULL}), 2);
    assert_int_equal(run_cli("renew", (const char *[]){NULL}), 2);
    assert_int_equal(run_cli("renew", (const char *[]){"--days", "30", "--dry-run", NULL}), 0);
    assert_int_equal(run_cli("challenge", (const char *[]){"--udid", "UDID-CLI-1", NULL}), 0);

    char *out = util_strdup_printf("%s/cli.mobileconfig", pki_dir);
    assert_int_equal(run_cli("profile", (const char *[]){"--secret", SECRET, "--output", out, NULL}), 0);
    size_t len = 0;
    char *der = util_read_file(out, 1 << 20, &len);
    assert_non_null(der);
    X509 *ca = server_ca(&srv);
    plist_t *p = profilecheck_open((const unsigned char *)der, len, ca);
    assert_non_null(p);
    assert_orchard_profile(p, "https://127.0.0.1", "com.orchard.enroll.127.0.0.1", "Test Org");
    plist_free(p);
    free(der);
    X509_free(ca);
    unlink(out);
    assert_int_equal(run_cli("profile", (const char *[]){"--secret", "wrong-secret", "--output", out, NULL}), 1);
    assert_int_not_equal(access(out, F_OK), 0);
    free(out);
    assert_false(testserver_log_contains(&srv, SECRET));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_files_load),
        cmocka_unit_test(test_schema_validator_catches_mistakes),
        cmocka_unit_test(test_profile_scep_matches_schema),
        cmocka_unit_test(test_profile_names_the_device),
        cmocka_unit_test(test_profile_options),
        cmocka_unit_test(test_profile_pkcs12),
        cmocka_unit_test(test_profile_signature),
        cmocka_unit_test(test_machineinfo_parse),
        cmocka_unit_test(test_machineinfo_refusals),
        cmocka_unit_test(test_ota_get_requires_secret),
        cmocka_unit_test(test_ota_get_profile),
        cmocka_unit_test(test_ota_get_pkcs12),
        cmocka_unit_test(test_ota_unconfigured),
        cmocka_unit_test(test_ota_post_machineinfo),
        cmocka_unit_test(test_ota_post_refusals),
        cmocka_unit_test(test_admission_known),
        cmocka_unit_test(test_challenges_api),
        cmocka_unit_test(test_renewals),
        cmocka_unit_test(test_cli_enroll),
        cmocka_unit_test(test_end_to_end),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
