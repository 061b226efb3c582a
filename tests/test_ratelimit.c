/* Unit tests of the token-bucket table (ratelimit.c): refill, Retry-After,
 * keys kept apart, the memory bound and eviction, expiry of refilled keys,
 * IPv6 /64 keys, and use from several threads at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "ratelimit.h"

#define SEC 1000000LL

static void test_burst_then_refill(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(10, 20, 100);
    assert_non_null(rl);
    int retry = -1;
    int64_t t = 5 * SEC;
    for (int i = 0; i < 20; i++)
        assert_int_equal(ratelimit_take(rl, "a", t, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "a", t, &retry), 1);
    assert_int_equal(retry, 1); /* 0.1 s to the next token, rounded up */
    /* 0.1 s later exactly one token is back */
    assert_int_equal(ratelimit_take(rl, "a", t + SEC / 10, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "a", t + SEC / 10, &retry), 1);
    /* a long pause refills to the burst, not beyond */
    int64_t later = t + 3600 * SEC;
    for (int i = 0; i < 20; i++)
        assert_int_equal(ratelimit_take(rl, "a", later, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "a", later, &retry), 1);
    ratelimit_free(rl);
}

static void test_retry_after_rounds_up(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(1.0 / 60, 2, 10); /* 1 per minute */
    int retry = -1;
    assert_int_equal(ratelimit_take(rl, "k", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "k", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "k", 0, &retry), 1);
    assert_int_equal(retry, 60);
    assert_int_equal(ratelimit_take(rl, "k", 30 * SEC + 1, &retry), 1);
    assert_int_equal(retry, 30);
    assert_int_equal(ratelimit_take(rl, "k", 60 * SEC, &retry), 0);
    ratelimit_free(rl);
}

static void test_keys_are_independent(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(1, 3, 100);
    int retry;
    for (int i = 0; i < 3; i++)
        assert_int_equal(ratelimit_take(rl, "/enroll|10.0.0.1", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "/enroll|10.0.0.1", 0, &retry), 1);
    /* another address, and the same address on another endpoint */
    assert_int_equal(ratelimit_take(rl, "/enroll|10.0.0.2", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "/scep|10.0.0.1", 0, &retry), 0);
    assert_int_equal(ratelimit_size(rl), 3);
    ratelimit_free(rl);
}

static void test_bounded_memory_evicts_oldest(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(1, 2, 50);
    int retry;
    /* exhaust key-0 first, so it is the least recently used */
    assert_int_equal(ratelimit_take(rl, "key-0", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "key-0", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "key-0", 0, &retry), 1);
    char k[32];
    for (int i = 1; i < 10000; i++) {
        snprintf(k, sizeof k, "key-%d", i);
        ratelimit_take(rl, k, 0, &retry);
        assert_true(ratelimit_size(rl) <= 50);
    }
    assert_int_equal(ratelimit_size(rl), 50);
    /* key-0 was evicted: it starts again with a full bucket */
    assert_int_equal(ratelimit_take(rl, "key-0", 0, &retry), 0);
    /* the 49 most recent keys are still there with their history */
    assert_int_equal(ratelimit_take(rl, "key-9999", 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, "key-9999", 0, &retry), 1);
    ratelimit_free(rl);
}

static void test_refilled_keys_expire(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(10, 20, 1000); /* full again after 2 s */
    int retry;
    char k[32];
    for (int i = 0; i < 100; i++) {
        snprintf(k, sizeof k, "10.1.0.%d", i);
        ratelimit_take(rl, k, 0, &retry);
    }
    assert_int_equal(ratelimit_size(rl), 100);
    /* later traffic from one client sweeps out the refilled keys */
    for (int i = 0; i < 60; i++)
        ratelimit_take(rl, "late", 3 * SEC + i, &retry);
    assert_int_equal(ratelimit_size(rl), 1);
    ratelimit_free(rl);
}

static void test_long_keys_truncated(void **state)
{
    (void)state;
    ratelimit_t *rl = ratelimit_new(1, 1, 10);
    char a[300], b[300];
    memset(a, 'x', sizeof a - 1);
    a[sizeof a - 1] = '\0';
    memcpy(b, a, sizeof b);
    b[250] = 'y'; /* differs only beyond the kept prefix */
    int retry;
    assert_int_equal(ratelimit_take(rl, a, 0, &retry), 0);
    assert_int_equal(ratelimit_take(rl, b, 0, &retry), 1);
    ratelimit_free(rl);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    assert_null(ratelimit_new(0, 10, 10));
    assert_null(ratelimit_new(1, 0.5, 10));
    assert_null(ratelimit_new(1, 10, 0));
}

static void test_client_keys(void **state)
{
    (void)state;
    char k[RATELIMIT_KEY_MAX];
    ratelimit_client_key("/scep", "192.0.2.7", k, sizeof k);
    assert_string_equal(k, "/scep|192.0.2.7");
    /* two hosts in one IPv6 /64 share a bucket */
    ratelimit_client_key("/enroll", "2001:db8:1:2:aaaa::1", k, sizeof k);
    assert_string_equal(k, "/enroll|2001:db8:1:2::/64");
    ratelimit_client_key("/enroll", "2001:db8:1:2:bbbb:cccc:dddd:eeee", k, sizeof k);
    assert_string_equal(k, "/enroll|2001:db8:1:2::/64");
    ratelimit_client_key("/enroll", "::ffff:192.0.2.9", k, sizeof k);
    assert_string_equal(k, "/enroll|::ffff:192.0.2.9");
    ratelimit_client_key("/enroll", NULL, k, sizeof k);
    assert_string_equal(k, "/enroll|-");
}

typedef struct {
    ratelimit_t *rl;
    int allowed;
} worker_arg_t;

static void *take_many(void *p)
{
    worker_arg_t *a = p;
    int retry;
    for (int i = 0; i < 20000; i++) {
        char k[32];
        snprintf(k, sizeof k, "k%d", i % 7);
        if (ratelimit_take(a->rl, k, 0, &retry) == 0)
            a->allowed++;
    }
    return NULL;
}

static void test_threads_share_buckets(void **state)
{
    (void)state;
    /* time frozen: exactly burst tokens per key in total, however the
     * threads interleave */
    ratelimit_t *rl = ratelimit_new(1, 100, 1000);
    pthread_t th[4];
    worker_arg_t args[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (worker_arg_t){rl, 0};
        assert_int_equal(pthread_create(&th[i], NULL, take_many, &args[i]), 0);
    }
    int total = 0;
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        total += args[i].allowed;
    }
    assert_int_equal(total, 7 * 100);
    ratelimit_free(rl);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_burst_then_refill),
        cmocka_unit_test(test_retry_after_rounds_up),
        cmocka_unit_test(test_keys_are_independent),
        cmocka_unit_test(test_bounded_memory_evicts_oldest),
        cmocka_unit_test(test_refilled_keys_expire),
        cmocka_unit_test(test_long_keys_truncated),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_client_keys),
        cmocka_unit_test(test_threads_share_buckets),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
