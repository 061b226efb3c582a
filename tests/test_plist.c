/* Unit tests for the property-list layer (src/plist.c). */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plist.h"

#define PLIST_HEADER                                                                                          \
    "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"                                                           \
    "<!DOCTYPE plist PUBLIC \"-//Apple//DTD PLIST 1.0//EN\" "                                                \
    "\"http://www.apple.com/DTDs/PropertyList-1.0.dtd\">\n"                                                  \
    "<plist version=\"1.0\">\n"

/* What an iPhone sends on its first check-in. */
static const char authenticate_xml[] =
    PLIST_HEADER
    "<dict>\n"
    "\t<key>BuildVersion</key>\n"
    "\t<string>21E258</string>\n"
    "\t<key>DeviceName</key>\n"
    "\t<string>Anna\xe2\x80\x99s iPhone</string>\n"
    "\t<key>IMEI</key>\n"
    "\t<string>35 328708 123456 7</string>\n"
    "\t<key>MEID</key>\n"
    "\t<string>35328708123456</string>\n"
    "\t<key>MessageType</key>\n"
    "\t<string>Authenticate</string>\n"
    "\t<key>Model</key>\n"
    "\t<string>iPhone14,5</string>\n"
    "\t<key>ModelName</key>\n"
    "\t<string>iPhone</string>\n"
    "\t<key>OSVersion</key>\n"
    "\t<string>17.4.1</string>\n"
    "\t<key>ProductName</key>\n"
    "\t<string>iPhone14,5</string>\n"
    "\t<key>SerialNumber</key>\n"
    "\t<string>F2LXK0ABCD12</string>\n"
    "\t<key>Topic</key>\n"
    "\t<string>com.apple.mgmt.External.2f4e6b2a-91c3-4d1e-8f6a-0b7c5d3e9a21</string>\n"
    "\t<key>UDID</key>\n"
    "\t<string>00008110-000A1B2C3D4E801E</string>\n"
    "</dict>\n"
    "</plist>\n";

/* A DeviceInformation answer: every value type appears once. */
static const char all_types_xml[] =
    PLIST_HEADER
    "<dict>\n"
    "\t<key>CommandUUID</key>\n"
    "\t<string>0B7A6C1E-4F5D-4C2B-9E8A-1D2C3B4A5F60</string>\n"
    "\t<key>QueryResponses</key>\n"
    "\t<dict>\n"
    "\t\t<key>AvailableDeviceCapacity</key>\n"
    "\t\t<real>97.25</real>\n"
    "\t\t<key>BatteryLevel</key>\n"
    "\t\t<real>-0.5e1</real>\n"
    "\t\t<key>IsSupervised</key>\n"
    "\t\t<true/>\n"
    "\t\t<key>IsActivationLockEnabled</key>\n"
    "\t\t<false/>\n"
    "\t\t<key>LastCloudBackupDate</key>\n"
    "\t\t<date>2024-02-29T12:34:56Z</date>\n"
    "\t\t<key>ModemFirmwareVersion</key>\n"
    "\t\t<string/>\n"
    "\t\t<key>SubscriberCarrierNetwork</key>\n"
    "\t\t<integer>-42</integer>\n"
    "\t\t<key>Token</key>\n"
    "\t\t<data>\n"
    "\t\tAAECAwQFBgcICQoLDA0ODxAREhMU\n"
    "\t\tFRYXGBkaGxwdHh8=\n"
    "\t\t</data>\n"
    "\t\t<key>Empty</key>\n"
    "\t\t<data/>\n"
    "\t\t<key>Queries</key>\n"
    "\t\t<array>\n"
    "\t\t\t<integer>+7</integer>\n"
    "\t\t\t<array/>\n"
    "\t\t\t<dict/>\n"
    "\t\t</array>\n"
    "\t</dict>\n"
    "\t<key>Status</key>\n"
    "\t<string>Acknowledged</string>\n"
    "</dict>\n"
    "</plist>\n";

/* ---- helpers ------------------------------------------------------------- */

static plist_t *parse_ok(const char *xml)
{
    char err[256];
    plist_t *p = plist_parse(xml, strlen(xml), err, sizeof err);
    if (!p)
        fail_msg("unexpected parse failure: %s", err);
    return p;
}

/* Asserts that `xml` is refused with an error containing `expected`, on one
 * line. */
static void assert_rejected(const char *xml, size_t len, const char *expected)
{
    char err[256];
    memset(err, 'x', sizeof err);
    plist_t *p = plist_parse(xml, len, err, sizeof err);
    if (p) {
        plist_free(p);
        fail_msg("accepted, wanted an error containing \"%s\"", expected);
    }
    if (!strstr(err, expected))
        fail_msg("error \"%s\" does not contain \"%s\"", err, expected);
    assert_null(strchr(err, '\n'));
}

static void reject(const char *xml, const char *expected)
{
    assert_rejected(xml, strlen(xml), expected);
}

static char *wrap(const char *body)
{
    size_t n = strlen(PLIST_HEADER) + strlen(body) + 16;
    char *xml = malloc(n);
    assert_non_null(xml);
    snprintf(xml, n, "%s%s</plist>\n", PLIST_HEADER, body);
    return xml;
}

static void reject_body(const char *body, const char *expected)
{
    char *xml = wrap(body);
    reject(xml, expected);
    free(xml);
}

static plist_t *parse_body(const char *body)
{
    char *xml = wrap(body);
    plist_t *p = parse_ok(xml);
    free(xml);
    return p;
}

/* Concatenates `count` copies of `unit` between `head` and `tail`. */
static char *repeat(const char *head, const char *unit, size_t count, const char *tail)
{
    size_t hl = strlen(head), ul = strlen(unit), tl = strlen(tail);
    char *s = malloc(hl + ul * count + tl + 1);
    assert_non_null(s);
    char *w = s;
    memcpy(w, head, hl);
    w += hl;
    for (size_t i = 0; i < count; i++, w += ul)
        memcpy(w, unit, ul);
    memcpy(w, tail, tl + 1);
    return s;
}

/* <plist> holding `levels` nested <array>s, the innermost holding `leaf`. */
static char *nested_arrays(size_t levels, const char *leaf)
{
    char *open = repeat("<plist>", "<array>", levels, leaf);
    char *xml = repeat(open, "</array>", levels, "</plist>");
    free(open);
    return xml;
}

/* Deep equality. Recursion is bounded: test trees are at most
 * PLIST_MAX_DEPTH levels deep, and the depth is checked. */
static int plist_equal_at(const plist_t *a, const plist_t *b, int depth)
{
    assert_true(depth <= PLIST_MAX_DEPTH + 1);
    if (plist_type(a) != plist_type(b))
        return 0;
    switch (plist_type(a)) {
    case PLIST_DICT:
        if (plist_dict_size(a) != plist_dict_size(b))
            return 0;
        for (size_t i = 0; i < plist_dict_size(a); i++) {
            if (strcmp(plist_dict_key_at(a, i), plist_dict_key_at(b, i)) != 0 ||
                !plist_equal_at(plist_dict_value_at(a, i), plist_dict_value_at(b, i), depth + 1))
                return 0;
        }
        return 1;
    case PLIST_ARRAY:
        if (plist_array_size(a) != plist_array_size(b))
            return 0;
        for (size_t i = 0; i < plist_array_size(a); i++)
            if (!plist_equal_at(plist_array_get(a, i), plist_array_get(b, i), depth + 1))
                return 0;
        return 1;
    case PLIST_STRING:
        return strcmp(plist_string(a), plist_string(b)) == 0;
    case PLIST_INTEGER:
        return plist_integer(a) == plist_integer(b);
    case PLIST_REAL: {
        double x = plist_real(a), y = plist_real(b);
        if (isnan(x) || isnan(y))
            return isnan(x) && isnan(y);
        return x == y && signbit(x) == signbit(y);
    }
    case PLIST_BOOL:
        return plist_bool(a) == plist_bool(b);
    case PLIST_DATE:
        return plist_date(a) == plist_date(b);
    case PLIST_DATA: {
        size_t la, lb;
        const unsigned char *da = plist_data(a, &la), *db = plist_data(b, &lb);
        return la == lb && (la == 0 || memcmp(da, db, la) == 0);
    }
    }
    return 0;
}

static int plist_equal(const plist_t *a, const plist_t *b)
{
    return plist_equal_at(a, b, 0);
}

/* Serializes, parses the output and checks it equals `p`. */
static void assert_round_trips(const plist_t *p)
{
    size_t len = 0;
    char *xml = plist_to_xml(p, &len);
    assert_non_null(xml);
    assert_int_equal(len, strlen(xml));
    char err[256];
    plist_t *again = plist_parse(xml, len, err, sizeof err);
    if (!again)
        fail_msg("re-parse failed: %s\n%s", err, xml);
    assert_true(plist_equal(p, again));
    plist_free(again);
    free(xml);
}

/* ---- parsing: accepted input --------------------------------------------- */

static void test_authenticate_checkin(void **state)
{
    (void)state;
    plist_t *p = parse_ok(authenticate_xml);
    assert_int_equal(plist_type(p), PLIST_DICT);
    assert_int_equal(plist_dict_size(p), 12);
    assert_string_equal(plist_dict_get_string(p, "MessageType"), "Authenticate");
    assert_string_equal(plist_dict_get_string(p, "UDID"), "00008110-000A1B2C3D4E801E");
    assert_string_equal(plist_dict_get_string(p, "Topic"),
                        "com.apple.mgmt.External.2f4e6b2a-91c3-4d1e-8f6a-0b7c5d3e9a21");
    assert_string_equal(plist_dict_get_string(p, "DeviceName"), "Anna\xe2\x80\x99s iPhone");
    assert_string_equal(plist_dict_get_string(p, "IMEI"), "35 328708 123456 7");
    assert_string_equal(plist_dict_key_at(p, 0), "BuildVersion");
    assert_null(plist_dict_get(p, "Missing"));
    assert_null(plist_dict_get(p, "udid")); /* keys are case-sensitive */
    plist_free(p);
}

static void test_every_value_type(void **state)
{
    (void)state;
    plist_t *p = parse_ok(all_types_xml);
    assert_string_equal(plist_dict_get_string(p, "Status"), "Acknowledged");
    plist_t *q = plist_dict_get(p, "QueryResponses");
    assert_non_null(q);
    assert_int_equal(plist_type(q), PLIST_DICT);

    assert_int_equal(plist_type(plist_dict_get(q, "AvailableDeviceCapacity")), PLIST_REAL);
    assert_true(plist_real(plist_dict_get(q, "AvailableDeviceCapacity")) == 97.25);
    assert_true(plist_real(plist_dict_get(q, "BatteryLevel")) == -5.0);
    assert_int_equal(plist_type(plist_dict_get(q, "IsSupervised")), PLIST_BOOL);
    assert_int_equal(plist_bool(plist_dict_get(q, "IsSupervised")), 1);
    assert_int_equal(plist_bool(plist_dict_get(q, "IsActivationLockEnabled")), 0);
    assert_int_equal(plist_type(plist_dict_get(q, "LastCloudBackupDate")), PLIST_DATE);
    assert_int_equal(plist_date(plist_dict_get(q, "LastCloudBackupDate")), 1709210096);
    assert_string_equal(plist_dict_get_string(q, "ModemFirmwareVersion"), "");
    assert_int_equal(plist_integer(plist_dict_get(q, "SubscriberCarrierNetwork")), -42);

    size_t len = 99;
    const unsigned char *token = plist_dict_get_data(q, "Token", &len);
    assert_non_null(token);
    assert_int_equal(len, 32);
    for (size_t i = 0; i < len; i++)
        assert_int_equal(token[i], i);
    const unsigned char *empty = plist_dict_get_data(q, "Empty", &len);
    assert_non_null(empty);
    assert_int_equal(len, 0);

    plist_t *queries = plist_dict_get(q, "Queries");
    assert_int_equal(plist_type(queries), PLIST_ARRAY);
    assert_int_equal(plist_array_size(queries), 3);
    assert_int_equal(plist_integer(plist_array_get(queries, 0)), 7);
    assert_int_equal(plist_type(plist_array_get(queries, 1)), PLIST_ARRAY);
    assert_int_equal(plist_array_size(plist_array_get(queries, 1)), 0);
    assert_int_equal(plist_type(plist_array_get(queries, 2)), PLIST_DICT);
    assert_null(plist_array_get(queries, 3));
    plist_free(p);
}

static void test_scalar_roots_and_empty_forms(void **state)
{
    (void)state;
    plist_t *p = parse_body("<string/>");
    assert_string_equal(plist_string(p), "");
    plist_free(p);
    p = parse_body("<data></data>");
    size_t len = 1;
    assert_non_null(plist_data(p, &len));
    assert_int_equal(len, 0);
    plist_free(p);
    p = parse_body("<dict><key/><true/></dict>"); /* the empty key is a key */
    assert_int_equal(plist_bool(plist_dict_get(p, "")), 1);
    plist_free(p);
    p = parse_ok("<plist><integer>5</integer></plist>"); /* no prolog at all */
    assert_int_equal(plist_integer(p), 5);
    plist_free(p);
}

static void test_integer_limits(void **state)
{
    (void)state;
    plist_t *p = parse_body("<array><integer>9223372036854775807</integer>"
                            "<integer>-9223372036854775808</integer><integer>-0</integer>"
                            "<integer> 12 </integer><integer>007</integer></array>");
    assert_true(plist_integer(plist_array_get(p, 0)) == INT64_MAX);
    assert_true(plist_integer(plist_array_get(p, 1)) == INT64_MIN);
    assert_int_equal(plist_integer(plist_array_get(p, 2)), 0);
    assert_int_equal(plist_integer(plist_array_get(p, 3)), 12);
    assert_int_equal(plist_integer(plist_array_get(p, 4)), 7);
    plist_free(p);
}

static void test_real_forms(void **state)
{
    (void)state;
    plist_t *p = parse_body("<array><real>0.1</real><real>1e308</real><real>nan</real>"
                            "<real>+infinity</real><real>-infinity</real><real>-0</real></array>");
    assert_true(plist_real(plist_array_get(p, 0)) == 0.1);
    assert_true(plist_real(plist_array_get(p, 1)) == 1e308);
    assert_true(isnan(plist_real(plist_array_get(p, 2))));
    assert_true(isinf(plist_real(plist_array_get(p, 3))) && plist_real(plist_array_get(p, 3)) > 0);
    assert_true(isinf(plist_real(plist_array_get(p, 4))) && plist_real(plist_array_get(p, 4)) < 0);
    assert_true(signbit(plist_real(plist_array_get(p, 5))));
    plist_free(p);
}

static void test_dates(void **state)
{
    (void)state;
    plist_t *p = parse_body("<array><date>1970-01-01T00:00:00Z</date><date>1969-12-31T23:59:59Z</date>"
                            "<date>0000-01-01T00:00:00Z</date><date>9999-12-31T23:59:59Z</date>"
                            "<date>2000-02-29T00:00:00Z</date></array>");
    assert_int_equal(plist_date(plist_array_get(p, 0)), 0);
    assert_int_equal(plist_date(plist_array_get(p, 1)), -1);
    assert_true(plist_date(plist_array_get(p, 2)) == INT64_C(-62167219200));
    assert_true(plist_date(plist_array_get(p, 3)) == INT64_C(253402300799));
    assert_int_equal(plist_date(plist_array_get(p, 4)), 951782400);
    plist_free(p);
}

static void test_entities_comments_and_cdata(void **state)
{
    (void)state;
    plist_t *p = parse_body("<!-- a comment --><dict><key>a&amp;b</key><string>&lt;x&gt; &#x2603; "
                            "<![CDATA[<raw & text>]]></string></dict>");
    assert_string_equal(plist_dict_get_string(p, "a&b"), "<x> \xe2\x98\x83 <raw & text>");
    plist_free(p);
}

static void test_nesting_64_accepted(void **state)
{
    (void)state;
    char *xml = nested_arrays(PLIST_MAX_DEPTH, "<string>deepest</string>");
    plist_t *p = parse_ok(xml);
    const plist_t *n = p;
    for (int i = 1; i < PLIST_MAX_DEPTH; i++)
        n = plist_array_get(n, 0);
    assert_string_equal(plist_string(plist_array_get(n, 0)), "deepest");
    assert_round_trips(p);
    plist_free(p);
    free(xml);

    /* Same with dicts, whose keys also sit on the element stack. */
    char *open = repeat("<plist>", "<dict><key>k</key>", PLIST_MAX_DEPTH - 1, "<dict><key>k</key><true/>");
    xml = repeat(open, "</dict>", PLIST_MAX_DEPTH, "</plist>");
    p = parse_ok(xml);
    plist_free(p);
    free(open);
    free(xml);
}

static void test_node_limit_accepted(void **state)
{
    (void)state;
    /* The root array plus 99999 members is exactly PLIST_MAX_NODES values. */
    char *xml = repeat("<plist><array>", "<true/>", PLIST_MAX_NODES - 1, "</array></plist>");
    plist_t *p = parse_ok(xml);
    assert_int_equal(plist_array_size(p), PLIST_MAX_NODES - 1);
    plist_free(p);
    free(xml);
}

/* ---- parsing: refused input ---------------------------------------------- */

static void test_reject_malformed_xml(void **state)
{
    (void)state;
    reject("<plist><dict></plist>", "mismatched tag at line 1");
    reject("<plist><<string/></plist>", "not well-formed (invalid token) at line 1");
    reject("<plist><string>a</string></plist>trailing", "junk after document element");
    reject("<plist><string>\xff</string></plist>", "not well-formed");
    reject("<plist><string>&#0;</string></plist>", "reference to invalid character number");
}

static void test_reject_empty_and_truncated(void **state)
{
    (void)state;
    reject("", "no element found at line 1");
    assert_rejected(NULL, 0, "no element found");
    reject("  \n ", "no element found");
    reject("<?xml version=\"1.0\"?>", "no element found");
    /* Every proper prefix of a valid document is refused. */
    size_t len = strlen(authenticate_xml);
    for (size_t cut = 0; cut + 1 < len; cut += 7) {
        char err[256];
        plist_t *p = plist_parse(authenticate_xml, cut, err, sizeof err);
        if (p) {
            plist_free(p);
            fail_msg("prefix of %zu bytes accepted", cut);
        }
        assert_true(err[0] != '\0');
    }
    reject("<plist><dict><key>UDID</key><string>00008110", "line 1");
}

static void test_reject_wrong_root(void **state)
{
    (void)state;
    reject("<dict><key>a</key><true/></dict>", "line 1: root element is <dict>, not <plist>");
    reject("<html><body/></html>", "root element is <html>, not <plist>");
    reject("<?xml version=\"1.0\"?>\n<plists/>", "line 2: root element is <plists>");
    reject_body("", "<plist> holds no value");
    reject_body("<key>a</key>", "<key> outside a <dict>");
    reject_body("<plist><true/></plist>", "unexpected element <plist>");
}

static void test_reject_two_root_values(void **state)
{
    (void)state;
    reject_body("<dict/><dict/>", "more than one value in <plist>");
    reject_body("<string>a</string><string>b</string>", "more than one value in <plist>");
    reject_body("<true/><array/>", "more than one value in <plist>");
}

static void test_reject_unknown_elements(void **state)
{
    (void)state;
    reject(PLIST_HEADER "<dict>\n\t<foo/>\n</dict>\n</plist>\n", "line 5: unexpected element <foo>");
    reject_body("<array><String>a</String></array>", "unexpected element <String>");
    reject_body("<array><ns:string xmlns:ns=\"x\">a</ns:string></array>", "unexpected element <ns:string>");
    reject_body("<string>a<b>bold</b></string>", "unexpected element <b>");
    reject_body("<string><string>a</string></string>", "unexpected element <string> inside <string>");
    reject_body("<dict><key><key>a</key></key></dict>", "unexpected element <key> inside <key>");
    reject_body("<true><false/></true>", "unexpected element <false> inside <true>");
}

static void test_reject_misplaced_text(void **state)
{
    (void)state;
    reject_body("<dict>hello<key>a</key><true/></dict>", "unexpected text inside <dict>");
    reject_body("<dict><key>a</key> x <true/></dict>", "unexpected text inside <dict>");
    reject_body("<array><true/>1</array>", "unexpected text inside <array>");
    reject_body("<true>yes</true>", "unexpected text inside <true>");
    reject("<plist>text<true/></plist>", "line 1: unexpected text inside <plist>");
    /* Whitespace in those places is fine. */
    plist_t *p = parse_body("\n <dict> \n\t<key>a</key> \r\n <true> </true>\n</dict> ");
    assert_int_equal(plist_bool(plist_dict_get(p, "a")), 1);
    plist_free(p);
}

static void test_reject_dict_structure(void **state)
{
    (void)state;
    reject_body("<dict><key>a</key></dict>", "<key> without a value");
    reject_body("<dict><key>a</key><key>b</key><true/></dict>", "<key> without a value");
    reject_body("<dict><string>orphan</string></dict>", "<string> in <dict> without a <key>");
    reject_body("<dict><key>a</key><true/><false/></dict>", "<false> in <dict> without a <key>");
    reject_body("<dict><key>a</key><true/><dict/></dict>", "<dict> in <dict> without a <key>");
    reject_body("<array><key>a</key></array>", "<key> outside a <dict>");
}

static void test_reject_duplicate_keys(void **state)
{
    (void)state;
    /* Duplicates are found when the dict closes: the line is that of </dict>. */
    reject(PLIST_HEADER "<dict>\n<key>UDID</key><string>a</string>\n<key>X</key><true/>\n"
                        "<key>UDID</key><string>b</string>\n</dict>\n</plist>\n",
           "line 8: duplicate key \"UDID\" in <dict>");
    /* Duplicates in a large dict are found too (sorted, not pairwise). */
    char *entries = malloc(2000 * 24);
    assert_non_null(entries);
    char *w = entries;
    for (int i = 0; i < 2000; i++)
        w += sprintf(w, "<key>k%d</key><true/>", i == 1999 ? 3 : i);
    char *body = repeat("<dict>", entries, 1, "</dict>");
    reject_body(body, "duplicate key \"k3\"");
    free(body);
    free(entries);
    /* Unprintable bytes in the echoed key are masked. */
    reject_body("<dict><key>a&#10;b</key><true/><key>a&#10;b</key><true/></dict>", "duplicate key \"a?b\"");
    /* The same key in different dicts is not a duplicate. */
    plist_t *p = parse_body("<dict><key>a</key><dict><key>a</key><true/></dict></dict>");
    plist_free(p);
}

static void test_reject_bad_integers(void **state)
{
    (void)state;
    reject(PLIST_HEADER "<array>\n<integer>12a</integer>\n</array>\n</plist>\n", "line 5: invalid integer");
    reject_body("<integer></integer>", "invalid integer");
    reject_body("<integer/>", "invalid integer");
    reject_body("<integer>-</integer>", "invalid integer");
    reject_body("<integer>+-1</integer>", "invalid integer");
    reject_body("<integer>0x10</integer>", "invalid integer");
    reject_body("<integer>1 2</integer>", "invalid integer");
    reject_body("<integer>1.0</integer>", "invalid integer");
    reject_body("<integer>9223372036854775808</integer>", "invalid integer");
    reject_body("<integer>-9223372036854775809</integer>", "invalid integer");
    reject_body("<integer>99999999999999999999999</integer>", "invalid integer");
}

static void test_reject_bad_reals(void **state)
{
    (void)state;
    reject_body("<real></real>", "invalid real");
    reject_body("<real>1.5x</real>", "invalid real");
    reject_body("<real>abc</real>", "invalid real");
    reject_body("<real>1e999</real>", "invalid real");
    reject_body("<real>1,5</real>", "invalid real");
}

static void test_reject_bad_base64(void **state)
{
    (void)state;
    reject_body("<data>!!!!</data>", "invalid base64 in <data>");
    reject_body("<data>AAA</data>", "invalid base64");
    reject_body("<data>AA==AA==</data>", "invalid base64");
    reject_body("<data>A===</data>", "invalid base64");
}

static void test_reject_bad_dates(void **state)
{
    (void)state;
    reject_body("<date></date>", "invalid date");
    reject_body("<date>2024-13-01T00:00:00Z</date>", "invalid date");
    reject_body("<date>2023-02-29T00:00:00Z</date>", "invalid date");
    reject_body("<date>1900-02-29T00:00:00Z</date>", "invalid date");
    reject_body("<date>2024-04-31T00:00:00Z</date>", "invalid date");
    reject_body("<date>2024-01-00T00:00:00Z</date>", "invalid date");
    reject_body("<date>2024-01-01T24:00:00Z</date>", "invalid date");
    reject_body("<date>2024-01-01T00:60:00Z</date>", "invalid date");
    reject_body("<date>2024-01-01T00:00:60Z</date>", "invalid date");
    reject_body("<date>2024-01-01 00:00:00Z</date>", "invalid date");
    reject_body("<date>2024-01-01T00:00:00</date>", "invalid date");
    reject_body("<date>2024-01-01T00:00:00+01:00</date>", "invalid date");
    reject_body("<date>2024-01-01T00:00:00.5Z</date>", "invalid date");
    reject_body("<date>24-01-01T00:00:00Z</date>", "invalid date");
}

static void test_reject_nesting_65(void **state)
{
    (void)state;
    char *xml = nested_arrays(PLIST_MAX_DEPTH + 1, "");
    reject(xml, "nesting deeper than 64 levels");
    free(xml);
    /* Very deep input stops at the limit instead of exhausting anything. */
    xml = nested_arrays(1000000, "");
    reject(xml, "nesting deeper than 64 levels");
    free(xml);
}

static void test_reject_node_limit(void **state)
{
    (void)state;
    char *xml = repeat("<plist><array>", "<true/>", PLIST_MAX_NODES, "</array></plist>");
    reject(xml, "more than 100000 nodes");
    free(xml);
    xml = repeat("<plist><dict>", "<key/><string/>", PLIST_MAX_NODES, "</dict></plist>");
    reject(xml, "more than 100000 nodes");
    free(xml);
}

static void test_reject_entity_declarations(void **state)
{
    (void)state;
    reject("<?xml version=\"1.0\"?>\n"
           "<!DOCTYPE plist [\n"
           " <!ENTITY lol \"lol\">\n"
           " <!ENTITY lol1 \"&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;\">\n"
           " <!ENTITY lol2 \"&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;\">\n"
           " <!ENTITY lol3 \"&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;\">\n"
           " <!ENTITY lol9 \"&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;\">\n"
           "]>\n"
           "<plist><string>&lol9;</string></plist>\n",
           "line 3: entity declarations are not allowed");
    reject("<!DOCTYPE plist [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
           "<plist><string>&xxe;</string></plist>",
           "entity declarations are not allowed");
    reject("<!DOCTYPE plist [<!ENTITY % pe SYSTEM \"http://example.com/x.dtd\"> %pe;]><plist><true/></plist>",
           "entity declarations are not allowed");
    /* With an external DTD, expat would silently skip an undeclared entity. */
    reject(PLIST_HEADER "<string>a&foo;b</string></plist>", "line 4: reference to undefined entity &foo;");
    reject("<plist><string>a&foo;b</string></plist>", "undefined entity at line 1");
}

static void test_error_buffer_handling(void **state)
{
    (void)state;
    const char *bad = "<plist><integer>x</integer></plist>";
    assert_null(plist_parse(bad, strlen(bad), NULL, 0)); /* no errbuf at all */
    char small[8];
    assert_null(plist_parse(bad, strlen(bad), small, sizeof small));
    assert_string_equal(small, "line 1:");
    char err[64] = "stale";
    plist_t *p = plist_parse("<plist><true/></plist>", 22, err, sizeof err);
    assert_non_null(p);
    assert_string_equal(err, ""); /* cleared on success */
    plist_free(p);
}

/* ---- writer --------------------------------------------------------------- */

static void test_writer_exact_output(void **state)
{
    (void)state;
    plist_t *d = plist_new_dict();
    assert_int_equal(plist_dict_set(d, "k&<>", plist_new_string("v<&>\"'")), 0);
    assert_int_equal(plist_dict_set(d, "n", plist_new_integer(-5)), 0);
    plist_t *list = plist_new_array();
    assert_int_equal(plist_array_append(list, plist_new_bool(1)), 0);
    assert_int_equal(plist_array_append(list, plist_new_bool(0)), 0);
    assert_int_equal(plist_array_append(list, plist_new_array()), 0);
    assert_int_equal(plist_array_append(list, plist_new_dict()), 0);
    assert_int_equal(plist_dict_set(d, "list", list), 0);
    assert_int_equal(plist_dict_set(d, "when", plist_new_date(1709210096)), 0);
    const unsigned char bytes[] = {0, 1, 2, 0xfe, 0xff};
    assert_int_equal(plist_dict_set(d, "blob", plist_new_data(bytes, sizeof bytes)), 0);
    assert_int_equal(plist_dict_set(d, "r", plist_new_real(0.5)), 0);
    assert_int_equal(plist_dict_set(d, "empty", plist_new_string("")), 0);

    size_t len = 0;
    char *xml = plist_to_xml(d, &len);
    assert_non_null(xml);
    assert_string_equal(xml, PLIST_HEADER "<dict>\n"
                                          "\t<key>k&amp;&lt;&gt;</key>\n"
                                          "\t<string>v&lt;&amp;&gt;\"'</string>\n"
                                          "\t<key>n</key>\n"
                                          "\t<integer>-5</integer>\n"
                                          "\t<key>list</key>\n"
                                          "\t<array>\n"
                                          "\t\t<true/>\n"
                                          "\t\t<false/>\n"
                                          "\t\t<array/>\n"
                                          "\t\t<dict/>\n"
                                          "\t</array>\n"
                                          "\t<key>when</key>\n"
                                          "\t<date>2024-02-29T12:34:56Z</date>\n"
                                          "\t<key>blob</key>\n"
                                          "\t<data>AAEC/v8=</data>\n"
                                          "\t<key>r</key>\n"
                                          "\t<real>0.5</real>\n"
                                          "\t<key>empty</key>\n"
                                          "\t<string></string>\n"
                                          "</dict>\n"
                                          "</plist>\n");
    assert_int_equal(len, strlen(xml));
    free(xml);

    plist_t *s = plist_new_string("]]> & \r\n");
    xml = plist_to_xml(s, NULL);
    assert_string_equal(xml, PLIST_HEADER "<string>]]&gt; &amp; &#13;\n</string>\n</plist>\n");
    free(xml);
    assert_round_trips(s);
    plist_free(s);
    assert_round_trips(d);
    plist_free(d);
}

static void test_writer_refuses_unwritable_dates(void **state)
{
    (void)state;
    plist_t *p = plist_new_date(INT64_C(253402300800)); /* year 10000 */
    assert_null(plist_to_xml(p, NULL));
    plist_free(p);
    p = plist_new_date(INT64_C(-62167219201)); /* before year 0 */
    assert_null(plist_to_xml(p, NULL));
    plist_free(p);
    assert_null(plist_to_xml(NULL, NULL));
}

static void test_round_trip_parsed(void **state)
{
    (void)state;
    const char *docs[] = {authenticate_xml, all_types_xml};
    for (size_t i = 0; i < sizeof docs / sizeof docs[0]; i++) {
        plist_t *p = parse_ok(docs[i]);
        assert_round_trips(p);
        /* Writing is canonical: write(parse(write(p))) == write(p). */
        char *first = plist_to_xml(p, NULL);
        plist_t *again = parse_ok(first);
        char *second = plist_to_xml(again, NULL);
        assert_string_equal(first, second);
        free(first);
        free(second);
        plist_free(again);
        plist_free(p);
    }
    /* The writer's output for Authenticate is the input itself. */
    plist_t *p = parse_ok(authenticate_xml);
    char *xml = plist_to_xml(p, NULL);
    assert_string_equal(xml, authenticate_xml);
    free(xml);
    plist_free(p);
}

static void test_round_trip_constructed(void **state)
{
    (void)state;
    plist_t *root = plist_new_dict();
    unsigned char all_bytes[256];
    for (int i = 0; i < 256; i++)
        all_bytes[i] = (unsigned char)i;
    const int64_t ints[] = {0, 1, -1, INT64_MAX, INT64_MIN};
    const double reals[] = {0.1, -0.0, 1e308, 5e-324, 1.0 / 3.0, INFINITY, -INFINITY, NAN};
    const int64_t dates[] = {0, -1, 1709210096, INT64_C(-62167219200), INT64_C(253402300799)};
    plist_t *numbers = plist_new_array();
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
        assert_int_equal(plist_array_append(numbers, plist_new_integer(ints[i])), 0);
    for (size_t i = 0; i < sizeof reals / sizeof reals[0]; i++)
        assert_int_equal(plist_array_append(numbers, plist_new_real(reals[i])), 0);
    for (size_t i = 0; i < sizeof dates / sizeof dates[0]; i++)
        assert_int_equal(plist_array_append(numbers, plist_new_date(dates[i])), 0);
    assert_int_equal(plist_dict_set(root, "numbers", numbers), 0);
    assert_int_equal(plist_dict_set(root, "bytes", plist_new_data(all_bytes, sizeof all_bytes)), 0);
    assert_int_equal(plist_dict_set(root, "nothing", plist_new_data(NULL, 0)), 0);
    assert_int_equal(plist_dict_set(root, "<&>\r\t\n key", plist_new_string("<&>\r\t\n \xe2\x98\x83 ]]>")), 0);
    assert_int_equal(plist_dict_set(root, "", plist_new_string("")), 0);
    plist_t *nested = plist_new_dict();
    assert_int_equal(plist_dict_set(nested, "inner", plist_new_array()), 0);
    assert_int_equal(plist_dict_set(nested, "flag", plist_new_bool(42)), 0);
    assert_int_equal(plist_dict_set(root, "nested", nested), 0);
    assert_round_trips(root);
    plist_free(root);
}

/* ---- tree API ------------------------------------------------------------- */

static void test_accessors_on_wrong_types(void **state)
{
    (void)state;
    plist_t *i = plist_new_integer(5);
    plist_t *s = plist_new_string("x");
    plist_t *a = plist_new_array();
    plist_t *d = plist_new_dict();
    plist_t *date = plist_new_date(77);
    size_t len = 123;

    assert_null(plist_string(i));
    assert_int_equal(plist_integer(s), 0);
    assert_int_equal(plist_integer(date), 0); /* same storage, other type */
    assert_int_equal(plist_date(i), 0);
    assert_true(plist_real(i) == 0.0);
    assert_int_equal(plist_bool(s), 0);
    assert_null(plist_data(s, &len));
    assert_int_equal(len, 0);
    assert_null(plist_dict_get(a, "x"));
    assert_int_equal(plist_dict_size(a), 0);
    assert_null(plist_dict_key_at(a, 0));
    assert_null(plist_dict_value_at(a, 0));
    assert_int_equal(plist_array_size(d), 0);
    assert_null(plist_array_get(d, 0));
    assert_null(plist_array_get(a, 0));

    assert_int_equal(plist_dict_set(d, "n", plist_new_integer(1)), 0);
    assert_null(plist_dict_get_string(d, "n"));
    assert_null(plist_dict_get_data(d, "n", &len));
    assert_null(plist_dict_get_string(d, "absent"));
    assert_null(plist_dict_key_at(d, 1));

    /* NULL is tolerated so lookups can be chained. */
    assert_null(plist_string(NULL));
    assert_null(plist_dict_get(NULL, "x"));
    assert_null(plist_dict_get(d, NULL));
    assert_null(plist_dict_get_string(plist_dict_get(d, "absent"), "deeper"));
    assert_int_equal(plist_array_size(NULL), 0);
    assert_null(plist_new_string(NULL));
    plist_free(NULL);

    /* Inserting into the wrong type fails and frees the value (LSan checks). */
    assert_int_equal(plist_dict_set(a, "k", plist_new_string("leak?")), -1);
    assert_int_equal(plist_array_append(d, plist_new_string("leak?")), -1);
    assert_int_equal(plist_dict_set(d, NULL, plist_new_string("leak?")), -1);
    assert_int_equal(plist_array_append(a, NULL), -1);

    assert_string_equal(plist_type_name(plist_type(d)), "dict");
    assert_string_equal(plist_type_name(PLIST_DATE), "date");
    assert_string_equal(plist_type_name(PLIST_DATA), "data");

    plist_free(i);
    plist_free(s);
    plist_free(a);
    plist_free(d);
    plist_free(date);
}

static void test_dict_set_replaces(void **state)
{
    (void)state;
    plist_t *d = plist_new_dict();
    assert_int_equal(plist_dict_set(d, "a", plist_new_string("first")), 0);
    assert_int_equal(plist_dict_set(d, "b", plist_new_integer(2)), 0);
    assert_int_equal(plist_dict_set(d, "a", plist_new_string("second")), 0);
    assert_int_equal(plist_dict_size(d), 2);
    assert_string_equal(plist_dict_key_at(d, 0), "a"); /* keeps its position */
    assert_string_equal(plist_dict_get_string(d, "a"), "second");
    plist_free(d);
}

static void test_deep_constructed_tree(void **state)
{
    (void)state;
    /* The constructors impose no depth limit, so free and write must not
     * recurse. */
    plist_t *p = plist_new_string("bottom");
    for (int i = 0; i < 200000; i++) {
        plist_t *outer = plist_new_array();
        assert_non_null(outer);
        assert_int_equal(plist_array_append(outer, p), 0);
        p = outer;
    }
    plist_free(p);

    p = plist_new_integer(1);
    for (int i = 0; i < 2000; i++) {
        plist_t *outer = plist_new_dict();
        assert_int_equal(plist_dict_set(outer, "k", p), 0);
        p = outer;
    }
    size_t len;
    char *xml = plist_to_xml(p, &len);
    assert_non_null(xml);
    assert_non_null(strstr(xml, "<integer>1</integer>"));
    assert_rejected(xml, len, "nesting deeper than 64 levels"); /* but we don't read it back */
    free(xml);
    plist_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_authenticate_checkin),
        cmocka_unit_test(test_every_value_type),
        cmocka_unit_test(test_scalar_roots_and_empty_forms),
        cmocka_unit_test(test_integer_limits),
        cmocka_unit_test(test_real_forms),
        cmocka_unit_test(test_dates),
        cmocka_unit_test(test_entities_comments_and_cdata),
        cmocka_unit_test(test_nesting_64_accepted),
        cmocka_unit_test(test_node_limit_accepted),
        cmocka_unit_test(test_reject_malformed_xml),
        cmocka_unit_test(test_reject_empty_and_truncated),
        cmocka_unit_test(test_reject_wrong_root),
        cmocka_unit_test(test_reject_two_root_values),
        cmocka_unit_test(test_reject_unknown_elements),
        cmocka_unit_test(test_reject_misplaced_text),
        cmocka_unit_test(test_reject_dict_structure),
        cmocka_unit_test(test_reject_duplicate_keys),
        cmocka_unit_test(test_reject_bad_integers),
        cmocka_unit_test(test_reject_bad_reals),
        cmocka_unit_test(test_reject_bad_base64),
        cmocka_unit_test(test_reject_bad_dates),
        cmocka_unit_test(test_reject_nesting_65),
        cmocka_unit_test(test_reject_node_limit),
        cmocka_unit_test(test_reject_entity_declarations),
        cmocka_unit_test(test_error_buffer_handling),
        cmocka_unit_test(test_writer_exact_output),
        cmocka_unit_test(test_writer_refuses_unwritable_dates),
        cmocka_unit_test(test_round_trip_parsed),
        cmocka_unit_test(test_round_trip_constructed),
        cmocka_unit_test(test_accessors_on_wrong_types),
        cmocka_unit_test(test_dict_set_replaces),
        cmocka_unit_test(test_deep_constructed_tree),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
