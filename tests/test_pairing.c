/* Apple Watch pairing tokens (src/pairing.c), without a server: the key
 * file, the exact byte format, and every way verification refuses. */
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

#include <jansson.h>
#include <openssl/hmac.h>

#include "pairing.h"
#include "util.h"

static char dir[64];
static const char *ORG = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0";

static pairing_claims_t claims(int64_t iat, int64_t exp)
{
    pairing_claims_t c = {.security_token = "2F6E3C0A-7D0B-4F6B-9C1E-6B3E3A1E2D44",
                          .phone_udid = "PHONE-UDID-1",
                          .watch_udid = "WATCH-UDID-1",
                          .org = (char *)ORG,
                          .iat = iat,
                          .exp = exp};
    return c;
}

static void test_key_file(void **state)
{
    (void)state;
    unsigned char k1[PAIRING_KEY_LEN], k2[PAIRING_KEY_LEN];
    char err[256];
    assert_int_equal(pairing_key_load(dir, k1, err, sizeof err), 0);
    char *path = util_strdup_printf("%s/pairing.key", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(st.st_size, PAIRING_KEY_LEN);
    /* A second start (or another instance) reads the same key. */
    assert_int_equal(pairing_key_load(dir, k2, err, sizeof err), 0);
    assert_memory_equal(k1, k2, PAIRING_KEY_LEN);
    /* A damaged key file is refused, not replaced. */
    assert_int_equal(util_write_file(path, "short", 5, 0600), 0);
    assert_int_equal(pairing_key_load(dir, k2, err, sizeof err), -1);
    assert_non_null(strstr(err, "must be exactly 32 bytes"));
    size_t len = 0;
    char *data = util_read_file(path, 100, &len);
    assert_int_equal(len, 5);
    free(data);
    unlink(path);
    free(path);
}

/* The documented format, recomputed independently here. */
static void test_format(void **state)
{
    (void)state;
    unsigned char key[PAIRING_KEY_LEN];
    memset(key, 7, sizeof key);
    pairing_claims_t c = claims(1700000000, 1700000600);
    size_t len = 0;
    char *t = pairing_token_mint(key, &c, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    assert_int_equal(strncmp(t, "OWP1.", 5), 0);
    char *dot = strchr(t + 5, '.');
    assert_non_null(dot);
    assert_null(strchr(dot + 1, '.'));
    assert_null(strpbrk(t, "+/= "));
    /* claims = base64url(compact sorted JSON) */
    size_t n = (size_t)(dot - (t + 5));
    char *b64 = malloc(n + 4);
    memcpy(b64, t + 5, n);
    for (size_t i = 0; i < n; i++)
        b64[i] = b64[i] == '-' ? '+' : b64[i] == '_' ? '/' : b64[i];
    while (n % 4)
        b64[n++] = '=';
    size_t jl = 0;
    unsigned char *json = util_base64_decode(b64, n, &jl);
    free(b64);
    assert_non_null(json);
    char *expect = util_strdup_printf("{\"exp\":1700000600,\"iat\":1700000000,\"org\":\"%s\",\"phone\":\"PHONE-UDID-1\","
                                      "\"st\":\"2F6E3C0A-7D0B-4F6B-9C1E-6B3E3A1E2D44\",\"v\":1,"
                                      "\"watch\":\"WATCH-UDID-1\"}",
                                      ORG);
    assert_string_equal((char *)json, expect);
    free(expect);
    free(json);
    /* mac = base64url(HMAC-SHA256(key, everything before the second dot)) */
    unsigned char mac[32];
    unsigned int ml = 0;
    HMAC(EVP_sha256(), key, sizeof key, (unsigned char *)t, (size_t)(dot - t), mac, &ml);
    char *m64 = util_base64_encode(mac, 32);
    m64[strcspn(m64, "=")] = '\0';
    for (char *p = m64; *p; p++)
        *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
    assert_string_equal(dot + 1, m64);
    free(m64);

    pairing_claims_t out;
    char err[256];
    assert_int_equal(pairing_token_verify(key, t, len, ORG, 1700000100, &out, err, sizeof err), PAIRING_OK);
    assert_string_equal(out.security_token, c.security_token);
    assert_string_equal(out.phone_udid, "PHONE-UDID-1");
    assert_string_equal(out.watch_udid, "WATCH-UDID-1");
    assert_int_equal(out.iat, 1700000000);
    assert_int_equal(out.exp, 1700000600);
    pairing_claims_free(&out);
    free(t);
}

static pairing_result_t try(const unsigned char *key, const char *t, size_t len, int64_t now, char *err, size_t el)
{
    pairing_claims_t out;
    pairing_result_t r = pairing_token_verify(key, t, len, ORG, now, &out, err, el);
    if (r == PAIRING_OK)
        pairing_claims_free(&out);
    else
        assert_null(out.security_token);
    return r;
}

static void test_refusals(void **state)
{
    (void)state;
    unsigned char key[PAIRING_KEY_LEN], other[PAIRING_KEY_LEN];
    memset(key, 7, sizeof key);
    memset(other, 8, sizeof other);
    pairing_claims_t c = claims(1000, 1600);
    size_t len = 0;
    char *t = pairing_token_mint(key, &c, &len);
    char err[256];

    /* Another key: forged. */
    assert_int_equal(try(other, t, len, 1100, err, sizeof err), PAIRING_BAD_MAC);
    assert_non_null(strstr(err, "MAC does not verify"));
    /* Any altered byte of the claims or MAC. */
    for (size_t i = 5; i < len; i++) {
        if (t[i] == '.')
            continue;
        char *copy = strdup(t);
        copy[i] = copy[i] == 'A' ? 'B' : 'A';
        pairing_result_t r = try(key, copy, len, 1100, err, sizeof err);
        assert_true(r == PAIRING_BAD_MAC || r == PAIRING_MALFORMED);
        free(copy);
    }
    /* Expired: exp <= now. */
    assert_int_equal(try(key, t, len, 1600, err, sizeof err), PAIRING_EXPIRED);
    assert_non_null(strstr(err, "expired"));
    assert_int_equal(try(key, t, len, 1599, err, sizeof err), PAIRING_OK);
    /* Another organization, same key. */
    pairing_claims_t o = claims(1000, 1600);
    o.org = "ffff";
    size_t olen;
    char *ot = pairing_token_mint(key, &o, &olen);
    assert_int_equal(try(key, ot, olen, 1100, err, sizeof err), PAIRING_OTHER_ORG);
    free(ot);
    /* Shapes. */
    assert_int_equal(try(key, "", 0, 1100, err, sizeof err), PAIRING_MALFORMED);
    assert_int_equal(try(key, "OWP2.abc.def", 12, 1100, err, sizeof err), PAIRING_MALFORMED);
    assert_int_equal(try(key, "OWP1.abc", 8, 1100, err, sizeof err), PAIRING_MALFORMED);
    assert_int_equal(try(key, "OWP1.abc.d+f=", 13, 1100, err, sizeof err), PAIRING_MALFORMED);
    assert_int_equal(try(key, t, len - 1, 1100, err, sizeof err), PAIRING_MALFORMED);
    char big[PAIRING_TOKEN_MAX + 10];
    memset(big, 'A', sizeof big);
    memcpy(big, "OWP1.", 5);
    assert_int_equal(try(key, big, sizeof big, 1100, err, sizeof err), PAIRING_MALFORMED);
    /* A NUL inside. */
    char *nul = strdup(t);
    nul[7] = '\0';
    assert_int_equal(try(key, nul, len, 1100, err, sizeof err), PAIRING_MALFORMED);
    free(nul);
    /* Valid MAC over claims that are not ours (not JSON / wrong version). */
    const char *bad_claims[] = {"bm90IGpzb24", /* "not json" */
                                "eyJ2IjoyfQ", /* {"v":2} */
                                "eyJleHAiOjE2MDAsImlhdCI6MTAwMCwidiI6MX0"}; /* no strings */
    for (size_t i = 0; i < 3; i++) {
        char *signed_part = util_strdup_printf("OWP1.%s", bad_claims[i]);
        unsigned char mac[32];
        unsigned int ml;
        HMAC(EVP_sha256(), key, sizeof key, (unsigned char *)signed_part, strlen(signed_part), mac, &ml);
        char *m = util_base64_encode(mac, 32);
        m[strcspn(m, "=")] = '\0';
        for (char *p = m; *p; p++)
            *p = *p == '+' ? '-' : *p == '/' ? '_' : *p;
        char *tok = util_strdup_printf("%s.%s", signed_part, m);
        assert_int_equal(try(key, tok, strlen(tok), 1100, err, sizeof err), PAIRING_MALFORMED);
        free(tok);
        free(m);
        free(signed_part);
    }
    /* Missing claims refuse to mint. */
    pairing_claims_t none = claims(1, 2);
    none.watch_udid = NULL;
    size_t nl;
    assert_null(pairing_token_mint(key, &none, &nl));
    free(t);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/orchard-pairing-XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    return rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_file),
        cmocka_unit_test(test_format),
        cmocka_unit_test(test_refusals),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
