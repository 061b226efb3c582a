/* Token-bucket table (see ratelimit.h): a chained hash with a random seed
 * (keys come from the network) and an LRU list for eviction, under one
 * mutex: a take is a few hundred nanoseconds, far below a request's cost. */
#include "ratelimit.h"

#include <arpa/inet.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

typedef struct bucket bucket_t;
struct bucket {
    bucket_t *chain;           /* next in the hash slot */
    bucket_t *newer, *older;   /* LRU list */
    uint64_t hash;
    double tokens;
    int64_t last_us;
    char key[RATELIMIT_KEY_MAX];
};

struct ratelimit {
    pthread_mutex_t mu;
    double rate, burst;
    int64_t refill_us; /* an idle key is full again after this long */
    size_t max_keys, nkeys;
    size_t nslots;     /* power of two */
    bucket_t **slots;
    bucket_t *newest, *oldest;
    uint64_t seed;
};

ratelimit_t *ratelimit_new(double rate, double burst, size_t max_keys)
{
    if (!(rate > 0) || !(burst >= 1) || max_keys < 1 || max_keys > ((size_t)1 << 30))
        return NULL;
    ratelimit_t *rl = calloc(1, sizeof *rl);
    if (!rl)
        return NULL;
    rl->rate = rate;
    rl->burst = burst;
    rl->refill_us = (int64_t)(burst / rate * 1e6) + 1;
    rl->max_keys = max_keys;
    rl->nslots = 16;
    while (rl->nslots < max_keys)
        rl->nslots <<= 1;
    rl->slots = calloc(rl->nslots, sizeof *rl->slots);
    if (!rl->slots || RAND_bytes((unsigned char *)&rl->seed, sizeof rl->seed) != 1) {
        free(rl->slots);
        free(rl);
        return NULL;
    }
    pthread_mutex_init(&rl->mu, NULL);
    return rl;
}

void ratelimit_free(ratelimit_t *rl)
{
    if (!rl)
        return;
    for (bucket_t *b = rl->newest, *next; b; b = next) {
        next = b->older;
        free(b);
    }
    free(rl->slots);
    pthread_mutex_destroy(&rl->mu);
    free(rl);
}

/* FNV-1a over the seed and the key, then a final mix so the low bits (the
 * slot index) depend on every byte. */
static uint64_t key_hash(uint64_t seed, const char *key)
{
    uint64_t h = 1469598103934665603ULL ^ seed;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) {
        h ^= *p;
        h *= 1099511628211ULL;
    }
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

static void lru_unlink(ratelimit_t *rl, bucket_t *b)
{
    if (b->newer)
        b->newer->older = b->older;
    else
        rl->newest = b->older;
    if (b->older)
        b->older->newer = b->newer;
    else
        rl->oldest = b->newer;
    b->newer = b->older = NULL;
}

static void lru_push_newest(ratelimit_t *rl, bucket_t *b)
{
    b->older = rl->newest;
    b->newer = NULL;
    if (rl->newest)
        rl->newest->newer = b;
    rl->newest = b;
    if (!rl->oldest)
        rl->oldest = b;
}

static void remove_bucket(ratelimit_t *rl, bucket_t *b)
{
    bucket_t **pp = &rl->slots[b->hash & (rl->nslots - 1)];
    while (*pp && *pp != b)
        pp = &(*pp)->chain;
    if (*pp)
        *pp = b->chain;
    lru_unlink(rl, b);
    rl->nkeys--;
    free(b);
}

int ratelimit_take(ratelimit_t *rl, const char *key, int64_t now_us, int *retry_after_s)
{
    char k[RATELIMIT_KEY_MAX];
    snprintf(k, sizeof k, "%s", key ? key : "");
    uint64_t h = key_hash(rl->seed, k);
    int refused = 0;

    pthread_mutex_lock(&rl->mu);
    /* Drop up to two keys that have refilled: bounded work per call keeps
     * the table small when traffic is spread over time. */
    for (int i = 0; i < 2 && rl->oldest && now_us - rl->oldest->last_us >= rl->refill_us; i++)
        remove_bucket(rl, rl->oldest);

    bucket_t *b = rl->slots[h & (rl->nslots - 1)];
    while (b && (b->hash != h || strcmp(b->key, k) != 0))
        b = b->chain;
    if (b) {
        double elapsed = now_us > b->last_us ? (double)(now_us - b->last_us) / 1e6 : 0;
        b->tokens += elapsed * rl->rate;
        if (b->tokens > rl->burst)
            b->tokens = rl->burst;
        b->last_us = now_us > b->last_us ? now_us : b->last_us;
        lru_unlink(rl, b);
        lru_push_newest(rl, b);
        if (b->tokens >= 1) {
            b->tokens -= 1;
        } else {
            refused = 1;
            /* Whole seconds, rounded up (no libm in the link). */
            double wait = (1 - b->tokens) / rl->rate;
            int secs = wait > 86400 ? 86400 : (int)wait;
            if (secs < wait)
                secs++;
            *retry_after_s = secs < 1 ? 1 : secs;
        }
    } else {
        if (rl->nkeys >= rl->max_keys && rl->oldest)
            remove_bucket(rl, rl->oldest);
        b = calloc(1, sizeof *b);
        if (b) {
            b->hash = h;
            memcpy(b->key, k, sizeof b->key);
            b->tokens = rl->burst - 1;
            b->last_us = now_us;
            size_t slot = h & (rl->nslots - 1);
            b->chain = rl->slots[slot];
            rl->slots[slot] = b;
            lru_push_newest(rl, b);
            rl->nkeys++;
        }
    }
    pthread_mutex_unlock(&rl->mu);
    return refused;
}

size_t ratelimit_size(ratelimit_t *rl)
{
    pthread_mutex_lock(&rl->mu);
    size_t n = rl->nkeys;
    pthread_mutex_unlock(&rl->mu);
    return n;
}

void ratelimit_client_key(const char *endpoint, const char *address, char *out, size_t len)
{
    const char *addr = address ? address : "-";
    unsigned char a6[16];
    if (strchr(addr, ':') && inet_pton(AF_INET6, addr, a6) == 1) {
        /* An IPv4-mapped address stays whole: it is one IPv4 host. */
        static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
        if (memcmp(a6, mapped, sizeof mapped) != 0) {
            memset(a6 + 8, 0, 8);
            char prefix[INET6_ADDRSTRLEN];
            if (inet_ntop(AF_INET6, a6, prefix, sizeof prefix)) {
                snprintf(out, len, "%s|%s/64", endpoint, prefix);
                return;
            }
        }
    }
    snprintf(out, len, "%s|%s", endpoint, addr);
}
