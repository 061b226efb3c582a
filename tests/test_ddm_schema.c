/* Unit tests for the compiled-in Apple schemas (src/ddm_schema.c over the
 * generated src/ddm_schema_table.c): declaration payload checks and the
 * references they report, status item names, watchOS command/payload
 * support cross-checked against ../shared/reference, and that the
 * checked-in table is what tools/gen_schema_tables makes of the schemas
 * ($ORCHARD_APPLE_SCHEMAS, default ../shared/apple-device-management). No
 * server needed. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "ddm_schema.h"
#include "ddm_schema_rules.h"
#include "util.h"

#define REFERENCE_DIR "../shared/reference"

static const char *schemas_dir(void)
{
    const char *env = getenv("ORCHARD_APPLE_SCHEMAS");
    return env && *env ? env : "../shared/apple-device-management";
}

/* ---- helpers ----------------------------------------------------------------------- */

typedef struct {
    char **refs;
    const char **kinds, **types;
    size_t n;
    char err[256];
} result_t;

static void result_free(result_t *r)
{
    ddm_schema_refs_free(r->refs, r->kinds, r->types, r->n);
    memset(r, 0, sizeof *r);
}

/* Checks `json` (a Payload) as `type`; returns ddm_schema_check's result. */
static int check(const char *type, const char *json, result_t *r)
{
    memset(r, 0, sizeof *r);
    json_error_t jerr;
    json_t *payload = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!payload)
        fail_msg("test JSON does not parse: %s: %s", jerr.text, json);
    int rc = ddm_schema_check(type, payload, &r->refs, &r->kinds, &r->types, &r->n, r->err, sizeof r->err);
    json_decref(payload);
    return rc;
}

static void assert_valid(const char *type, const char *json)
{
    result_t r;
    int rc = check(type, json, &r);
    if (rc != 0)
        fail_msg("%s refused: %s", type, r.err);
    assert_int_equal(r.n, 0);
    result_free(&r);
}

static void assert_invalid(const char *type, const char *json, const char *message)
{
    result_t r;
    assert_int_equal(check(type, json, &r), -1);
    assert_string_equal(r.err, message);
    assert_int_equal(r.n, 0);
    result_free(&r);
}

/* ---- valid payloads ---------------------------------------------------------------- */

static void test_passcode_settings_valid(void **state)
{
    (void)state;
    assert_valid("com.apple.configuration.passcode.settings", "{}");
    assert_valid("com.apple.configuration.passcode.settings",
                 "{\"RequirePasscode\": true, \"RequireAlphanumericPasscode\": false, \"MinimumLength\": 6,"
                 " \"MaximumFailedAttempts\": 10, \"MaximumInactivityInMinutes\": 5, \"ChangeAtNextAuth\": false,"
                 " \"CustomRegex\": {\"Regex\": \"^[0-9]+$\", \"Description\": {\"en\": \"Digits\","
                 " \"de\": \"Ziffern\"}}}");
    const ds_declaration_t *d = ddm_schema_find("com.apple.configuration.passcode.settings");
    assert_non_null(d);
    assert_string_equal(d->kind, "configuration");
    assert_string_equal(d->watchos, "10.0");
    assert_string_equal(d->ios, "15.0");
    assert_string_equal(d->tvos, "n/a");
}

static void test_watch_enrollment_asset_refs(void **state)
{
    (void)state;
    result_t r;
    assert_int_equal(check("com.apple.configuration.watch.enrollment",
                           "{\"EnrollmentProfileURL\": \"https://mdm.example.com/enroll\","
                           " \"AnchorCertificateAssetReferences\": [\"anchor-1\", \"anchor-2\", \"anchor-1\"]}",
                           &r),
                     0);
    assert_int_equal(r.n, 2); /* one entry per referenced declaration */
    assert_string_equal(r.refs[0], "anchor-1");
    assert_string_equal(r.refs[1], "anchor-2");
    for (size_t i = 0; i < r.n; i++) {
        assert_string_equal(r.kinds[i], "asset");
        assert_string_equal(r.types[i], "com.apple.asset.credential.certificate");
    }
    result_free(&r);

    const ds_declaration_t *d = ddm_schema_find("com.apple.configuration.watch.enrollment");
    assert_non_null(d);
    assert_string_equal(d->ios, "17.0");
    assert_string_equal(d->watchos, "n/a"); /* configured on the iPhone */
}

static void test_asset_refs_multiple_types(void **state)
{
    (void)state;
    /* A string key with several allowed asset types, appended after refs
     * the caller already holds. */
    result_t r;
    memset(&r, 0, sizeof r);
    r.refs = calloc(1, sizeof *r.refs);
    r.kinds = calloc(1, sizeof *r.kinds);
    r.types = calloc(1, sizeof *r.types);
    assert_non_null(r.refs && r.kinds && r.types);
    r.refs[0] = strdup("earlier");
    r.kinds[0] = "configuration";
    r.n = 1;
    json_t *p = json_pack("{s:s}", "CredentialAssetReference", "my-identity");
    assert_int_equal(ddm_schema_check("com.apple.configuration.security.identity", p, &r.refs, &r.kinds, &r.types,
                                      &r.n, r.err, sizeof r.err),
                     0);
    json_decref(p);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.refs[0], "earlier");
    assert_string_equal(r.refs[1], "my-identity");
    assert_string_equal(r.kinds[1], "asset");
    assert_non_null(strstr(r.types[1], "com.apple.asset.credential.identity"));
    assert_non_null(strstr(r.types[1], "com.apple.asset.credential.scep"));
    assert_non_null(strstr(r.types[1], "com.apple.asset.credential.acme"));
    result_free(&r);
}

static void test_activation_configuration_refs(void **state)
{
    (void)state;
    result_t r;
    assert_int_equal(check("com.apple.activation.simple",
                           "{\"StandardConfigurations\": [\"passcode\", \"watch\"],"
                           " \"Predicate\": \"@status(device.model.family) == 'iPhone'\"}",
                           &r),
                     0);
    assert_int_equal(r.n, 2);
    assert_string_equal(r.refs[0], "passcode");
    assert_string_equal(r.refs[1], "watch");
    assert_string_equal(r.kinds[0], "configuration");
    assert_string_equal(r.kinds[1], "configuration");
    assert_null(r.types[0]);
    assert_null(r.types[1]);
    result_free(&r);

    assert_valid("com.apple.activation.simple", "{\"StandardConfigurations\": []}");
    assert_string_equal(ddm_schema_find("com.apple.activation.simple")->kind, "activation");
}

static void test_credential_certificate_asset(void **state)
{
    (void)state;
    assert_valid("com.apple.asset.credential.certificate",
                 "{\"Reference\": {\"DataURL\": \"https://mdm.example.com/assets/anchor.der\","
                 " \"ContentType\": \"application/pkix-cert\", \"Size\": 1234,"
                 " \"Hash-SHA-256\": \"00112233\"}, \"Authentication\": {\"Type\": \"MDM\"}}");
    assert_string_equal(ddm_schema_find("com.apple.asset.credential.certificate")->kind, "asset");
}

static void test_management_any_keys(void **state)
{
    (void)state;
    assert_valid("com.apple.management.organization-info", "{\"Name\": \"Orchard Test Org\", \"Email\": \"it@x.org\"}");
    assert_valid("com.apple.management.server-capabilities",
                 "{\"Version\": \"1.0\", \"SupportedFeatures\": {\"com.apple.x\": {\"a\": [1, 2]}, \"y\": 3}}");
    assert_valid("com.apple.management.properties",
                 "{\"building\": \"B\", \"floor\": 3, \"tags\": [\"a\"], \"deep\": {\"x\": null}}");
    assert_valid("com.apple.management.properties", "{}");
    assert_string_equal(ddm_schema_find("com.apple.management.properties")->kind, "management");
    /* Named ANY keys still carry their type. */
    assert_invalid("com.apple.configuration.passcode.settings",
                   "{\"CustomRegex\": {\"Regex\": \"x\", \"Description\": {\"en\": 5}}}",
                   "Payload.CustomRegex.Description.en must be a string");
}

/* ---- refused payloads ------------------------------------------------------------- */

static void test_unknown_type(void **state)
{
    (void)state;
    assert_null(ddm_schema_find("com.apple.configuration.nonexistent"));
    assert_null(ddm_schema_find(""));
    assert_null(ddm_schema_find(NULL));
    /* Credential data formats are not declarations. */
    assert_null(ddm_schema_find("com.apple.credential.scep"));
    assert_invalid("com.apple.configuration.nonexistent", "{}",
                   "unknown declaration type 'com.apple.configuration.nonexistent'");
}

static void test_unknown_key(void **state)
{
    (void)state;
    assert_invalid("com.apple.configuration.passcode.settings", "{\"MinimumLength\": 4, \"Foo\": 1}",
                   "unknown payload key 'Foo' for com.apple.configuration.passcode.settings");
    assert_invalid("com.apple.asset.credential.certificate",
                   "{\"Reference\": {\"DataURL\": \"https://x/a\", \"Bar\": true}}",
                   "unknown payload key 'Reference.Bar' for com.apple.asset.credential.certificate");
}

static void test_wrong_types(void **state)
{
    (void)state;
    assert_invalid("com.apple.asset.credential.certificate", "{\"Reference\": {\"DataURL\": 42}}",
                   "Payload.Reference.DataURL must be a string");
    assert_invalid("com.apple.configuration.passcode.settings", "{\"MinimumLength\": \"6\"}",
                   "Payload.MinimumLength must be an integer");
    assert_invalid("com.apple.configuration.passcode.settings", "{\"MinimumLength\": 6.0}",
                   "Payload.MinimumLength must be an integer");
    assert_invalid("com.apple.configuration.passcode.settings", "{\"RequirePasscode\": 1}",
                   "Payload.RequirePasscode must be a boolean");
    assert_invalid("com.apple.configuration.passcode.settings", "{\"CustomRegex\": [\"x\"]}",
                   "Payload.CustomRegex must be an object");
    assert_invalid("com.apple.activation.simple", "{\"StandardConfigurations\": \"passcode\"}",
                   "Payload.StandardConfigurations must be an array");
    assert_invalid("com.apple.activation.simple", "{\"StandardConfigurations\": [\"a\", 7]}",
                   "Payload.StandardConfigurations[1] must be a string");
    assert_invalid("com.apple.configuration.watch.enrollment",
                   "{\"EnrollmentProfileURL\": \"https://x\", \"AnchorCertificateAssetReferences\": [{}]}",
                   "Payload.AnchorCertificateAssetReferences[0] must be a string");
}

static void test_missing_required(void **state)
{
    (void)state;
    assert_invalid("com.apple.configuration.watch.enrollment", "{\"AnchorCertificateAssetReferences\": [\"a\"]}",
                   "Payload.EnrollmentProfileURL is required for com.apple.configuration.watch.enrollment");
    assert_invalid("com.apple.asset.credential.certificate", "{\"Reference\": {\"Size\": 3}}",
                   "Payload.Reference.DataURL is required for com.apple.asset.credential.certificate");
    assert_invalid("com.apple.activation.simple", "{}",
                   "Payload.StandardConfigurations is required for com.apple.activation.simple");
}

static void test_rangelist(void **state)
{
    (void)state;
    assert_invalid("com.apple.asset.credential.certificate",
                   "{\"Reference\": {\"DataURL\": \"https://x/a\"}, \"Authentication\": {\"Type\": \"Basic\"}}",
                   "Payload.Authentication.Type: 'Basic' is not an allowed value");
    assert_valid("com.apple.asset.credential.certificate",
                 "{\"Reference\": {\"DataURL\": \"https://x/a\"}, \"Authentication\": {\"Type\": \"None\"}}");
}

/* ---- range, format, repetition ----------------------------------------------------- */

static void test_range(void **state)
{
    (void)state;
    const char *passcode = "com.apple.configuration.passcode.settings";
    assert_invalid(passcode, "{\"MinimumLength\": 500}", "Payload.MinimumLength must be between 0 and 16 (got 500)");
    assert_invalid(passcode, "{\"MinimumLength\": 17}", "Payload.MinimumLength must be between 0 and 16 (got 17)");
    assert_invalid(passcode, "{\"MinimumLength\": -1}", "Payload.MinimumLength must be between 0 and 16 (got -1)");
    assert_invalid(passcode, "{\"MaximumFailedAttempts\": 1}",
                   "Payload.MaximumFailedAttempts must be between 2 and 11 (got 1)");
    assert_invalid(passcode, "{\"MinimumLength\": 9223372036854775807}",
                   "Payload.MinimumLength must be between 0 and 16 (got 9223372036854775807)");
    /* The bounds themselves are allowed. */
    assert_valid(passcode, "{\"MinimumLength\": 0}");
    assert_valid(passcode, "{\"MinimumLength\": 16}");
    assert_valid(passcode, "{\"MaximumFailedAttempts\": 2, \"MaximumPasscodeAgeInDays\": 730}");
    assert_valid(passcode, "{\"MaximumFailedAttempts\": 11, \"PasscodeReuseLimit\": 1}");
    /* An integer key takes no real, in range or not: the type is checked first. */
    assert_invalid(passcode, "{\"MinimumLength\": 6.5}", "Payload.MinimumLength must be an integer");
    assert_invalid(passcode, "{\"MinimumLength\": 500.0}", "Payload.MinimumLength must be an integer");
    /* A range below the top level. */
    const char *updates = "com.apple.configuration.softwareupdate.settings";
    assert_invalid(updates, "{\"Deferrals\": {\"MajorPeriodInDays\": 91}}",
                   "Payload.Deferrals.MajorPeriodInDays must be between 1 and 90 (got 91)");
    assert_invalid(updates, "{\"Deferrals\": {\"MinorPeriodInDays\": 0}}",
                   "Payload.Deferrals.MinorPeriodInDays must be between 1 and 90 (got 0)");
    assert_valid(updates, "{\"Deferrals\": {\"MajorPeriodInDays\": 90, \"MinorPeriodInDays\": 1}}");
}

/* ddm_schema_rules_check on one value; returns its result, err in r->err. */
static int rules(const ds_key_t *k, const char *json, char *err, size_t errlen)
{
    json_error_t jerr;
    json_t *v = json_loads(json, JSON_DECODE_ANY, &jerr);
    if (!v)
        fail_msg("test JSON does not parse: %s: %s", jerr.text, json);
    err[0] = '\0';
    int rc = ddm_schema_rules_check(k, v, "Payload.X", err, errlen);
    json_decref(v);
    return rc;
}

static void assert_rules_hold(const ds_key_t *k, const char *json)
{
    char err[256];
    if (rules(k, json, err, sizeof err) != 0)
        fail_msg("%s refused: %s", json, err);
}

static void assert_rules_fail(const ds_key_t *k, const char *json, const char *message)
{
    char err[256];
    assert_int_equal(rules(k, json, err, sizeof err), -1);
    assert_string_equal(err, message);
}

/* One-sided ranges, and a real key, which takes JSON integers and reals alike. */
static void test_range_one_sided_and_real(void **state)
{
    (void)state;
    const ds_key_t at_least = {.name = "X", .type = DS_INTEGER, .has_min = 1, .min = 1};
    assert_rules_fail(&at_least, "0", "Payload.X must be at least 1 (got 0)");
    assert_rules_hold(&at_least, "1");
    assert_rules_hold(&at_least, "9223372036854775807");
    const ds_key_t at_most = {.name = "X", .type = DS_REAL, .has_max = 1, .max = 2.5};
    assert_rules_fail(&at_most, "2.75", "Payload.X must be at most 2.5 (got 2.75)");
    assert_rules_fail(&at_most, "3", "Payload.X must be at most 2.5 (got 3)");
    assert_rules_hold(&at_most, "2.5");
    assert_rules_hold(&at_most, "2");
    assert_rules_hold(&at_most, "-1e300");
    const ds_key_t none = {.name = "X", .type = DS_INTEGER};
    assert_rules_hold(&none, "-9223372036854775807");
}

/* Formats as the generator emits them: Apple's, anchored as a whole. */
static void test_format(void **state)
{
    (void)state;
    const ds_key_t digits = {.name = "X", .type = DS_STRING, .format = "^(^[0-9]{6}$)$"};
    assert_rules_hold(&digits, "\"123456\"");
    assert_rules_fail(&digits, "\"12345\"", "Payload.X does not match the format ^(^[0-9]{6}$)$ (got '12345')");
    assert_rules_fail(&digits, "\"1234567\"", "Payload.X does not match the format ^(^[0-9]{6}$)$ (got '1234567')");
    assert_rules_fail(&digits, "\"12345a\"", "Payload.X does not match the format ^(^[0-9]{6}$)$ (got '12345a')");
    /* An embedded NUL does not hide what follows it (payloads are parsed
     * without JSON_ALLOW_NUL today; this keeps the check safe regardless). */
    char err[256];
    json_t *nul = json_stringn("123456\0x", 8);
    assert_int_equal(ddm_schema_rules_check(&digits, nul, "Payload.X", err, sizeof err), -1);
    assert_string_equal(err, "Payload.X does not match the format ^(^[0-9]{6}$)$ (got '123456')");
    json_decref(nul);
    /* Apple's alternation means the whole value is one or the other. */
    const ds_key_t team = {.name = "X", .type = DS_STRING, .format = "^(^([0-9A-Za-z]{6})|([0-9A-Za-z]{9})$)$"};
    assert_rules_hold(&team, "\"ABC123\"");
    assert_rules_hold(&team, "\"ABCDE1234\"");
    assert_rules_fail(&team, "\"ABC123x\"",
                      "Payload.X does not match the format ^(^([0-9A-Za-z]{6})|([0-9A-Za-z]{9})$)$ (got 'ABC123x')");
    assert_rules_fail(&team, "\"xABCDE1234\"",
                      "Payload.X does not match the format ^(^([0-9A-Za-z]{6})|([0-9A-Za-z]{9})$)$ (got 'xABCDE1234')");
    /* Arrays of strings: the item spec carries the format. */
    const ds_key_t url_item = {.name = "XItem", .type = DS_STRING, .format = "^(^https://.*$)$"};
    const ds_key_t urls = {.name = "X", .type = DS_ARRAY, .sub = &url_item, .nsub = 1};
    json_t *v = json_pack("[ss]", "https://a.example", "http://b.example");
    assert_int_equal(ddm_schema_rules_check(&url_item, json_array_get(v, 0), "Payload.X[0]", err, sizeof err), 0);
    assert_int_equal(ddm_schema_rules_check(&url_item, json_array_get(v, 1), "Payload.X[1]", err, sizeof err), -1);
    assert_string_equal(err, "Payload.X[1] does not match the format ^(^https://.*$)$ (got 'http://b.example')");
    assert_int_equal(ddm_schema_rules_check(&urls, v, "Payload.X", err, sizeof err), 0); /* items are the walker's */
    json_decref(v);
}

static void test_repetition(void **state)
{
    (void)state;
    const ds_key_t pair_item = {.name = "XItem", .type = DS_STRING, .rep_min = 2, .rep_max = 2};
    const ds_key_t pair = {.name = "X", .type = DS_ARRAY, .sub = &pair_item, .nsub = 1};
    assert_rules_fail(&pair, "[\"2.5.4.3\"]", "Payload.X must have exactly 2 items (got 1)");
    assert_rules_fail(&pair, "[\"a\", \"b\", \"c\"]", "Payload.X must have exactly 2 items (got 3)");
    assert_rules_hold(&pair, "[\"2.5.4.3\", \"name\"]");
    const ds_key_t some_item = {.name = "XItem", .type = DS_STRING, .rep_min = 1, .rep_max = 3};
    const ds_key_t some = {.name = "X", .type = DS_ARRAY, .sub = &some_item, .nsub = 1};
    assert_rules_fail(&some, "[]", "Payload.X must have at least 1 item (got 0)");
    assert_rules_fail(&some, "[1, 2, 3, 4]", "Payload.X must have at most 3 items (got 4)");
    assert_rules_hold(&some, "[1]");
    assert_rules_hold(&some, "[1, 2, 3]");
    const ds_key_t open_item = {.name = "XItem", .type = DS_STRING, .rep_min = 2};
    const ds_key_t open = {.name = "X", .type = DS_ARRAY, .sub = &open_item, .nsub = 1};
    assert_rules_fail(&open, "[1]", "Payload.X must have at least 2 items (got 1)");
    assert_rules_hold(&open, "[1, 2, 3, 4, 5, 6, 7, 8, 9]");
    const ds_key_t capped_item = {.name = "XItem", .type = DS_STRING, .rep_max = 1};
    const ds_key_t capped = {.name = "X", .type = DS_ARRAY, .sub = &capped_item, .nsub = 1};
    assert_rules_fail(&capped, "[1, 2]", "Payload.X must have at most 1 item (got 2)");
    assert_rules_hold(&capped, "[]");
}

/* Workers validate concurrently: many threads meeting a format for the first
 * time at once compile it once and all judge right. */
#define FORMAT_THREADS 8

static void *format_worker(void *arg)
{
    const ds_key_t *k = arg;
    json_t *good = json_string("AB12CD"), *bad = json_string("AB12C");
    char err[256];
    intptr_t wrong = 0;
    for (int i = 0; i < 200; i++) {
        wrong += ddm_schema_rules_check(k, good, "Payload.X", err, sizeof err) != 0;
        wrong += ddm_schema_rules_check(k, bad, "Payload.X", err, sizeof err) != -1;
    }
    json_decref(good);
    json_decref(bad);
    return (void *)wrong;
}

static void test_format_concurrent_first_use(void **state)
{
    (void)state;
    const ds_key_t k = {.name = "X", .type = DS_STRING, .format = "^(^[0-9A-Z]{6}$)$"};
    pthread_t threads[FORMAT_THREADS];
    for (int i = 0; i < FORMAT_THREADS; i++)
        assert_int_equal(pthread_create(&threads[i], NULL, format_worker, (void *)&k), 0);
    for (int i = 0; i < FORMAT_THREADS; i++) {
        void *wrong = NULL;
        assert_int_equal(pthread_join(threads[i], &wrong), 0);
        assert_int_equal((intptr_t)wrong, 0);
    }
}

static void test_non_object_payload(void **state)
{
    (void)state;
    const char *bad[] = {"[]", "\"x\"", "3", "null", "true"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_invalid("com.apple.management.properties", bad[i],
                       "Payload for com.apple.management.properties must be an object");
    result_t r;
    memset(&r, 0, sizeof r);
    assert_int_equal(ddm_schema_check("com.apple.management.properties", NULL, &r.refs, &r.kinds, &r.types, &r.n,
                                      r.err, sizeof r.err),
                     -1);
    assert_int_equal(r.n, 0);
}

static void test_refused_payload_reports_no_refs(void **state)
{
    (void)state;
    /* The references come before the problem: they must not be reported. */
    assert_invalid("com.apple.activation.simple", "{\"StandardConfigurations\": [\"a\", \"b\"], \"Predicate\": 1}",
                   "Payload.Predicate must be a string");
    /* A NULL refs out-list is allowed: checking only. */
    json_t *p = json_pack("{s:[s]}", "StandardConfigurations", "a");
    char err[128];
    assert_int_equal(ddm_schema_check("com.apple.activation.simple", p, NULL, NULL, NULL, NULL, err, sizeof err), 0);
    json_decref(p);
}

static void test_many_references_linear(void **state)
{
    (void)state;
    /* 200,000 names (about what a 2 MiB body holds), half of them repeats:
     * must finish quickly and report each distinct name once. */
    json_t *list = json_array();
    char id[32];
    for (int i = 0; i < 200000; i++) {
        snprintf(id, sizeof id, "c%d", i % 100000);
        json_array_append_new(list, json_string(id));
    }
    json_t *p = json_pack("{s:o}", "StandardConfigurations", list);
    result_t r;
    memset(&r, 0, sizeof r);
    int64_t t0 = util_now_us();
    assert_int_equal(ddm_schema_check("com.apple.activation.simple", p, &r.refs, &r.kinds, &r.types, &r.n, r.err,
                                      sizeof r.err),
                     0);
    int64_t us = util_now_us() - t0;
    json_decref(p);
    assert_int_equal(r.n, 100000);
    assert_string_equal(r.refs[0], "c0");
    assert_string_equal(r.refs[99999], "c99999");
    assert_true(us < 5 * 1000 * 1000);
    result_free(&r);
}

/* ---- status items ------------------------------------------------------------------ */

static void test_status_items(void **state)
{
    (void)state;
    assert_true(ddm_status_item_known("device.identifier.serial-number"));
    assert_true(ddm_status_item_known("device.operating-system.version"));
    assert_true(ddm_status_item_known("passcode.is-compliant"));
    assert_true(ddm_status_item_known("management.declarations"));
    assert_false(ddm_status_item_known("device.identifier")); /* an inner node of the report */
    assert_false(ddm_status_item_known("device"));
    assert_false(ddm_status_item_known("status-reason"));
    assert_false(ddm_status_item_known("passcode.is-compliant.x"));
    assert_false(ddm_status_item_known(""));
    assert_false(ddm_status_item_known(NULL));
}

/* ---- cross-checks against ../shared/reference ---------------------------------------- */

/* Column `col` (0-based) of a TSV line, copied into out. */
static void tsv_field(const char *line, int col, char *out, size_t outlen)
{
    for (int i = 0; i < col && line; i++) {
        line = strchr(line, '\t');
        if (line)
            line++;
    }
    size_t n = line ? strcspn(line, "\t\n") : 0;
    snprintf(out, outlen, "%.*s", (int)n, line ? line : "");
}

/* Each data line of a reference TSV; NULL-terminated heap array (skip() if absent). */
static char **tsv_lines(const char *name, char **buf)
{
    char *path = util_strdup_printf("%s/%s", REFERENCE_DIR, name);
    *buf = path ? util_read_file(path, 8 << 20, NULL) : NULL;
    free(path);
    if (!*buf) {
        fprintf(stderr, "skipped: %s/%s is absent\n", REFERENCE_DIR, name);
        skip();
    }
    size_t cap = 512, n = 0;
    char **lines = calloc(cap, sizeof *lines);
    assert_non_null(lines);
    char *save = NULL;
    strtok_r(*buf, "\n", &save); /* the header */
    for (char *l = strtok_r(NULL, "\n", &save); l && n + 1 < cap; l = strtok_r(NULL, "\n", &save))
        lines[n++] = l;
    return lines;
}

static void test_watchos_commands_match_reference(void **state)
{
    (void)state;
    char *buf;
    char **lines = tsv_lines("commands.tsv", &buf);
    int total = 0, on_watch = 0;
    for (size_t i = 0; lines[i]; i++) {
        char name[128], supported[64];
        tsv_field(lines[i], 0, name, sizeof name);
        tsv_field(lines[i], 7, supported, sizeof supported);
        int expect = strncmp(supported, "yes", 3) == 0;
        int got = mdm_command_on_watchos(name);
        if (got != expect)
            fail_msg("%s: mdm_command_on_watchos %d, reference says %s", name, got, supported);
        total++;
        on_watch += expect;
    }
    assert_int_equal(total, 66);
    assert_int_equal(on_watch, 21);
    assert_int_equal(mdm_command_on_watchos("DeclarativeManagement"), 1);
    assert_int_equal(mdm_command_on_watchos("RestartDevice"), 0);
    assert_int_equal(mdm_command_on_watchos("NoSuchCommand"), -1);
    assert_int_equal(mdm_command_on_watchos(NULL), -1);
    free(lines);
    free(buf);
}

static void test_watchos_payloads_match_reference(void **state)
{
    (void)state;
    char *buf;
    char **lines = tsv_lines("profiles.tsv", &buf);
    int on_watch = 0;
    for (size_t i = 0; lines[i]; i++) {
        char name[128], supported[64];
        tsv_field(lines[i], 0, name, sizeof name);
        tsv_field(lines[i], 7, supported, sizeof supported);
        if (strcmp(name, "TopLevel") == 0 || strcmp(name, "CommonPayloadKeys") == 0) {
            assert_int_equal(mdm_payload_on_watchos(name), -1); /* the envelope, not a payload type */
            continue;
        }
        int expect = strncmp(supported, "yes", 3) == 0;
        int got = mdm_payload_on_watchos(name);
        if (got != expect)
            fail_msg("%s: mdm_payload_on_watchos %d, reference says %s", name, got, supported);
        on_watch += expect;
    }
    assert_int_equal(on_watch, 14);
    assert_int_equal(mdm_payload_on_watchos("com.apple.mdm"), 1);
    assert_int_equal(mdm_payload_on_watchos("com.apple.security.wapi-identity"), 0); /* no supportedOS at all */
    assert_int_equal(mdm_payload_on_watchos("com.apple.dock"), 0);
    assert_int_equal(mdm_payload_on_watchos("com.example.nope"), -1);
    free(lines);
    free(buf);
}

static void test_declarations_match_reference(void **state)
{
    (void)state;
    char *buf;
    char **lines = tsv_lines("declarations.tsv", &buf);
    int found = 0;
    for (size_t i = 0; lines[i]; i++) {
        char type[128], kind[128], watchos[32];
        tsv_field(lines[i], 0, type, sizeof type);
        tsv_field(lines[i], 1, kind, sizeof kind);
        tsv_field(lines[i], 7, watchos, sizeof watchos);
        const ds_declaration_t *d = ddm_schema_find(type);
        if (strncmp(kind, "credential-data", 15) == 0) {
            assert_null(d);
            continue;
        }
        if (!d)
            fail_msg("%s is missing from the compiled schemas", type);
        assert_string_equal(d->kind, kind);
        assert_string_equal(d->watchos ? d->watchos : "-", watchos);
        found++;
    }
    assert_int_equal(found, 38);
    free(lines);
    free(buf);
}

static void test_status_items_match_reference(void **state)
{
    (void)state;
    char *buf;
    char **lines = tsv_lines("status-items.tsv", &buf);
    int known = 0;
    for (size_t i = 0; lines[i]; i++) {
        char name[160];
        tsv_field(lines[i], 0, name, sizeof name);
        if (name[0] == '(') /* "(status-reason: StatusReason object schema, not a status item)" */
            continue;
        if (!ddm_status_item_known(name))
            fail_msg("status item %s is not known", name);
        known++;
    }
    assert_int_equal(known, 44);
    free(lines);
    free(buf);
}

/* ---- the checked-in table is current ------------------------------------------------- */

static void test_regeneration_matches_checked_in(void **state)
{
    (void)state;
    const char *schemas = schemas_dir();
    char *probe = util_strdup_printf("%s/declarative/declarations", schemas);
    int have = probe && access(probe, R_OK) == 0;
    free(probe);
    if (!have) {
        fprintf(stderr, "skipped: Apple's schemas are not at %s (set ORCHARD_APPLE_SCHEMAS)\n", schemas);
        skip();
    }
    /* The generator sits beside the orchard binary under test. */
    const char *bin = getenv("ORCHARD_BIN");
    if (!bin)
        fail_msg("ORCHARD_BIN is not set (run the tests through tests/run.sh)");
    const char *slash = strrchr(bin, '/');
    char *tool = util_strdup_printf("%.*s/tools/gen_schema_tables", slash ? (int)(slash - bin) : 1, slash ? bin : ".");
    assert_non_null(tool);
    if (access(tool, X_OK) != 0)
        fail_msg("%s is not built (make %s)", tool, tool);
    char out[] = "/tmp/orchard-schema-table-XXXXXX";
    int fd = mkstemp(out);
    assert_true(fd >= 0);
    close(fd);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        execl(tool, tool, schemas, out, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    free(tool);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
    size_t newlen = 0, oldlen = 0;
    char *fresh = util_read_file(out, 8 << 20, &newlen);
    char *checked_in = util_read_file("src/ddm_schema_table.c", 8 << 20, &oldlen);
    unlink(out);
    assert_non_null(fresh);
    assert_non_null(checked_in);
    if (newlen != oldlen || memcmp(fresh, checked_in, newlen) != 0)
        fail_msg("src/ddm_schema_table.c differs from what %s generates: run make schema-tables", schemas);
    free(fresh);
    free(checked_in);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_passcode_settings_valid),
        cmocka_unit_test(test_watch_enrollment_asset_refs),
        cmocka_unit_test(test_asset_refs_multiple_types),
        cmocka_unit_test(test_activation_configuration_refs),
        cmocka_unit_test(test_credential_certificate_asset),
        cmocka_unit_test(test_management_any_keys),
        cmocka_unit_test(test_unknown_type),
        cmocka_unit_test(test_unknown_key),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_missing_required),
        cmocka_unit_test(test_rangelist),
        cmocka_unit_test(test_range),
        cmocka_unit_test(test_range_one_sided_and_real),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_repetition),
        cmocka_unit_test(test_format_concurrent_first_use),
        cmocka_unit_test(test_non_object_payload),
        cmocka_unit_test(test_refused_payload_reports_no_refs),
        cmocka_unit_test(test_many_references_linear),
        cmocka_unit_test(test_status_items),
        cmocka_unit_test(test_watchos_commands_match_reference),
        cmocka_unit_test(test_watchos_payloads_match_reference),
        cmocka_unit_test(test_declarations_match_reference),
        cmocka_unit_test(test_status_items_match_reference),
        cmocka_unit_test(test_regeneration_matches_checked_in),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
