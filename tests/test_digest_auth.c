/* digest_auth.c on its own: user file parsing and reload, nonce checks, the
 * bounded replay table (eviction makes old nonces stale, never replayable). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "digest_auth.h"
#include "util.h"

#define REALM "Unit Realm"
#define T0 ((int64_t)1700000000)

static char dir[64], path[128];
static const unsigned char key[DIGEST_KEY_LEN] = {1, 2, 3, 4, 5, 6, 7, 8, 9};

static void write_users(const char *text)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    fclose(f);
}

static char *users_line(const char *alg, const char *user, const char *pw)
{
    char ha1[65];
    assert_int_equal(digest_ha1(alg, user, REALM, pw, ha1), 0);
    return util_strdup_printf("%s:%s:%s\n", user, REALM, ha1);
}

static char *param(const char *ch, const char *name)
{
    char k[32];
    snprintf(k, sizeof k, "%s=\"", name);
    const char *p = strstr(ch, k);
    assert_non_null(p);
    p += strlen(k);
    return strndup(p, strcspn(p, "\""));
}

static char *authz(const char *alg, const char *user, const char *pw, const char *nonce, const char *opaque,
                   const char *nc)
{
    int sha = strcmp(alg, "SHA-256") == 0;
    char ha1[65], ha2[65], resp[65];
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n;
    digest_ha1(alg, user, REALM, pw, ha1);
    EVP_Digest("POST:/enroll/ade", 16, md, &n, sha ? EVP_sha256() : EVP_md5(), NULL);
    util_hex(md, n, ha2);
    char *s = util_strdup_printf("%s:%s:%s:abc:auth:%s", ha1, nonce, nc, ha2);
    EVP_Digest(s, strlen(s), md, &n, sha ? EVP_sha256() : EVP_md5(), NULL);
    util_hex(md, n, resp);
    free(s);
    return util_strdup_printf("Digest username=\"%s\", realm=\"" REALM "\", nonce=\"%s\", uri=\"/enroll/ade\", "
                              "algorithm=%s, qop=auth, nc=%s, cnonce=\"abc\", response=\"%s\", opaque=\"%s\"",
                              user, nonce, alg, nc, resp, opaque);
}

static digest_result_t check(digest_auth_t *a, const char *h, int64_t now)
{
    char user[64], why[256];
    return digest_auth_verify(a, h, "POST", "/enroll/ade", now, user, sizeof user, why, sizeof why);
}

/* A fresh nonce and opaque (heap) issued at `now`. */
static void issue(digest_auth_t *a, int64_t now, char **nonce, char **opaque)
{
    char *v[DIGEST_MAX_CHALLENGES];
    size_t n = 0;
    assert_int_equal(digest_auth_challenge(a, now, 0, v, &n), 0);
    assert_true(n >= 1);
    *nonce = param(v[0], "nonce");
    *opaque = param(v[0], "opaque");
    for (size_t i = 0; i < n; i++)
        free(v[i]);
}

static void test_user_file(void **state)
{
    (void)state;
    char err[256];
    const char *bad[] = {
        "",                                              /* no users */
        "alice:" REALM ":0123\n",                        /* short HA1 */
        "alice:" REALM "\n",                             /* two fields */
        "alice:" REALM ":zz23456789abcdef0123456789abcdef\n", /* not hex */
        "alice:A:0123456789abcdef0123456789abcdef\nbob:B:0123456789abcdef0123456789abcdef\n", /* two realms */
        "alice:" REALM ":0123456789abcdef0123456789abcdef\nalice:" REALM ":0123456789abcdef0123456789abcdef\n",
        ":" REALM ":0123456789abcdef0123456789abcdef\n", /* empty user */
        "al\"ice:" REALM ":0123456789abcdef0123456789abcdef\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_users(bad[i]);
        digest_auth_t *a = digest_auth_new(path, key, 60, 0, err, sizeof err);
        if (a)
            fprintf(stderr, "accepted bad file %zu\n", i);
        assert_null(a);
        assert_true(strlen(err) > 0);
    }
    assert_null(digest_auth_new("/nonexistent/users", key, 60, 0, err, sizeof err));

    char *l1 = users_line("MD5", "alice", "pw");
    char *text = util_strdup_printf("# comment\r\n\n%s", l1);
    write_users(text);
    digest_auth_t *a = digest_auth_new(path, key, 60, 0, err, sizeof err);
    assert_non_null(a);
    assert_string_equal(digest_auth_realm(a), REALM);
    /* Only MD5 entries: only an MD5 challenge. */
    char *v[DIGEST_MAX_CHALLENGES];
    size_t n = 0;
    assert_int_equal(digest_auth_challenge(a, T0, 1, v, &n), 0);
    assert_int_equal(n, 1);
    assert_non_null(strstr(v[0], "algorithm=MD5"));
    assert_non_null(strstr(v[0], "stale=true"));
    free(v[0]);

    /* Reload: a new user appears; a broken file keeps the old users. */
    char *nonce, *opaque;
    issue(a, T0, &nonce, &opaque);
    char *l2 = users_line("SHA-256", "bob", "bob-pw");
    char *text2 = util_strdup_printf("%s%s", l1, l2);
    usleep(20000);
    write_users(text2);
    char *h = authz("SHA-256", "bob", "bob-pw", nonce, opaque, "1");
    assert_int_equal(check(a, h, T0 + 1), DIGEST_OK);
    free(h);
    usleep(20000);
    write_users("garbage\n");
    h = authz("SHA-256", "bob", "bob-pw", nonce, opaque, "2");
    assert_int_equal(check(a, h, T0 + 2), DIGEST_OK);
    free(h);
    free(nonce);
    free(opaque);
    digest_auth_free(a);
    free(l1);
    free(l2);
    free(text);
    free(text2);
}

static void test_verify(void **state)
{
    (void)state;
    char *l = users_line("SHA-256", "alice", "pw");
    write_users(l);
    free(l);
    char err[256];
    digest_auth_t *a = digest_auth_new(path, key, 60, 0, err, sizeof err);
    assert_non_null(a);
    char *nonce, *opaque;
    issue(a, T0, &nonce, &opaque);
    char *h = authz("SHA-256", "alice", "pw", nonce, opaque, "00000001");
    assert_int_equal(check(a, NULL, T0), DIGEST_MISSING);
    assert_int_equal(check(a, "Basic abc", T0), DIGEST_MISSING);
    assert_int_equal(check(a, h, T0 + 61), DIGEST_STALE_NONCE);
    assert_int_equal(check(a, h, T0 - 3600), DIGEST_STALE_NONCE); /* from the future */
    assert_int_equal(check(a, h, T0 + 1), DIGEST_OK);
    assert_int_equal(check(a, h, T0 + 1), DIGEST_REPLAY);
    /* Another key did not issue it. */
    unsigned char other[DIGEST_KEY_LEN] = {9};
    digest_auth_t *b = digest_auth_new(path, other, 60, 0, err, sizeof err);
    assert_int_equal(check(b, h, T0 + 1), DIGEST_WRONG_REALM); /* opaque differs first */
    char *bn, *bo;
    issue(b, T0, &bn, &bo);
    char *hb = authz("SHA-256", "alice", "pw", nonce, bo, "00000001");
    assert_int_equal(check(b, hb, T0 + 1), DIGEST_FORGED_NONCE);
    free(hb);
    free(bn);
    free(bo);
    digest_auth_free(b);
    free(h);
    /* Malformed inputs: never a crash, never OK. */
    const char *junk[] = {"Digest ", "Digest =", "Digest a", "Digest username=\"x", "Digest nc=zz",
                          "Digest username=a, username=b", "Digest\tusername=\"\\\"\", realm=\"" REALM "\""};
    for (size_t i = 0; i < sizeof junk / sizeof junk[0]; i++)
        assert_int_not_equal(check(a, junk[i], T0), DIGEST_OK);
    char big[5000];
    memset(big, 'a', sizeof big - 1);
    memcpy(big, "Digest ", 7);
    big[sizeof big - 1] = '\0';
    assert_int_equal(check(a, big, T0), DIGEST_MALFORMED);
    h = authz("SHA-256", "alice", "pw", nonce, opaque, "0");
    assert_int_equal(check(a, h, T0), DIGEST_MALFORMED);
    free(h);
    h = authz("SHA-256", "alice", "pw", nonce, opaque, "123456789");
    assert_int_equal(check(a, h, T0), DIGEST_MALFORMED);
    free(h);
    free(nonce);
    free(opaque);
    digest_auth_free(a);
}

/* With 8 slots, many live nonces force evictions: an evicted nonce's
 * replay is refused as stale, never accepted. */
static void test_replay_table_bounded(void **state)
{
    (void)state;
    char *l = users_line("SHA-256", "alice", "pw");
    write_users(l);
    free(l);
    char err[256];
    digest_auth_t *a = digest_auth_new(path, key, 600, 8, err, sizeof err);
    assert_non_null(a);
    enum { N = 64 };
    char *hs[N];
    for (int i = 0; i < N; i++) {
        char *nonce, *opaque;
        issue(a, T0 + i, &nonce, &opaque);
        hs[i] = authz("SHA-256", "alice", "pw", nonce, opaque, "00000001");
        digest_result_t r = check(a, hs[i], T0 + i);
        assert_true(r == DIGEST_OK || r == DIGEST_STALE_NONCE);
        free(nonce);
        free(opaque);
    }
    for (int i = 0; i < N; i++)
        assert_int_not_equal(check(a, hs[i], T0 + N), DIGEST_OK);
    for (int i = 0; i < N; i++)
        free(hs[i]);
    digest_auth_free(a);
}

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/orchard-digest-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    snprintf(path, sizeof path, "%s/users", dir);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    unlink(path);
    rmdir(dir);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_user_file),
        cmocka_unit_test(test_verify),
        cmocka_unit_test(test_replay_table_bounded),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
