/* Token buckets per key (a client address), shared by all worker threads.
 *
 * Each key gets a bucket of `burst` tokens refilled at `rate` per second; a
 * request takes one token or is refused with the time until the next one.
 * The table is bounded: at `max_keys` the least recently used key is
 * dropped (it only loses its history: a dropped key starts with a full
 * bucket), and keys idle long enough to have refilled are dropped as the
 * table is used, since a full bucket is the same as no entry.
 */
#ifndef ORCHARD_RATELIMIT_H
#define ORCHARD_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit_t;

/* rate > 0 tokens per second, burst >= 1, max_keys >= 1. NULL if out of
 * memory or the arguments are out of range. */
ratelimit_t *ratelimit_new(double rate, double burst, size_t max_keys);
void ratelimit_free(ratelimit_t *rl);

/* Takes one token for `key` at now_us (monotonic microseconds). 0: allowed.
 * 1: refused, *retry_after_s = whole seconds until a token is there (>= 1).
 * Keys longer than RATELIMIT_KEY_MAX - 1 bytes are truncated. Out of memory
 * for a new key: allowed (a limiter must not turn into an outage). */
#define RATELIMIT_KEY_MAX 80
int ratelimit_take(ratelimit_t *rl, const char *key, int64_t now_us, int *retry_after_s);

/* Keys currently held (tests). */
size_t ratelimit_size(ratelimit_t *rl);

/* The key for a client address on one endpoint class: "class|address",
 * with an IPv6 address cut to its /64 prefix (one host usually owns a whole
 * /64, so per-address buckets would give it 2^64 of them). */
void ratelimit_client_key(const char *endpoint, const char *address, char *out, size_t len);

#endif
