/* Device identity: TLS client certificates, proxy client-certificate
 * headers, and Mdm-Signature (detached CMS SignedData over the body). */
#include "identity.h"

#include "pki.h"
#include "util.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509_vfy.h>

#define MDM_SIGNATURE_MAX (64 * 1024) /* header text, bytes */
#define CERT_HEADER_MAX (16 * 1024)   /* header text, bytes */

/* A device sends one signer, one digest algorithm and its certificate (plus
 * perhaps intermediates). CMS_verify hashes the whole body once for every
 * entry of digestAlgorithms, duplicates included, before any signature is
 * checked: unbounded, a 64 KiB header could make one unauthenticated request
 * hash a 2 MiB body thousands of times. */
#define MDM_MAX_DIGEST_ALGS 4
#define MDM_MAX_SIGNERS 4
#define MDM_MAX_CERTS 16

/* Signer-chain cache (see identity.h): 4-way set-associative, 4,096 sets
 * of 4 entries. 16,384 rather than 65,536 entries because an entry holds
 * the parsed certificate (about 5 KiB with its decoded P-256 key: the
 * expensive part to rebuild), not just a "verified" bit. */
#define CHAIN_CACHE_WAYS 4
#define CHAIN_CACHE_SETS 4096
#define CHAIN_CACHE_TTL 300 /* seconds */

typedef struct {
    unsigned char key[32]; /* SHA-256 of the certificates' bytes, as sent */
    STACK_OF(X509) *certs; /* parsed certificates, in the order sent; NULL: free */
    X509 *leaf;            /* the member of certs whose chain verified */
    int64_t expires;       /* monotonic seconds: insertion + CHAIN_CACHE_TTL */
    int64_t not_after;     /* Unix seconds: earliest notAfter in the verified chain */
    uint64_t used;         /* LRU stamp, within a set */
} chain_entry_t;

typedef struct {
    pthread_mutex_t lock;
    chain_entry_t *slots; /* CHAIN_CACHE_SETS * CHAIN_CACHE_WAYS, allocated on first insert */
    uint64_t clock;       /* LRU stamps */
    size_t entries;
    atomic_uint_fast64_t hits, misses;
} chain_cache_t;

struct identity_verifier {
    X509_STORE *store;
    int purpose;          /* X509_PURPOSE_SSL_CLIENT unless identity_verifier_any_purpose() */
    chain_cache_t *cache; /* own allocation: it changes behind a const verifier */
};

/* ---- signer-chain cache ------------------------------------------------- */

static int64_t mono_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec;
}

/* The bucket for a key. The key is a SHA-256 output, so any of its bytes
 * are evenly spread; only certificates whose chain verified ever get in, so
 * nobody without our CA's help can aim at one bucket. */
static chain_entry_t *cache_bucket(const chain_cache_t *c, const unsigned char key[32])
{
    uint32_t h = (uint32_t)key[0] | (uint32_t)key[1] << 8 | (uint32_t)key[2] << 16 | (uint32_t)key[3] << 24;
    return c->slots + (size_t)(h % CHAIN_CACHE_SETS) * CHAIN_CACHE_WAYS;
}

/* Valid until the TTL runs out (monotonic clock: immune to clock steps) and
 * while every certificate of the verified chain is (wall clock, the same
 * test X509_verify_cert applies: valid while now < notAfter). */
static int entry_live(const chain_entry_t *e, int64_t mono, int64_t now)
{
    return e->certs && mono < e->expires && now < e->not_after;
}

/* On a hit: 1, *certs a copy of the cached certificates (own references)
 * and *leaf the one whose chain verified. Else 0 (an expired entry for the
 * key is dropped). */
static int cache_lookup(chain_cache_t *c, const unsigned char key[32], STACK_OF(X509) **certs, X509 **leaf)
{
    int64_t mono = mono_seconds(), now = (int64_t)time(NULL);
    STACK_OF(X509) *stale = NULL;
    int found = 0;
    pthread_mutex_lock(&c->lock);
    if (c->slots) {
        chain_entry_t *set = cache_bucket(c, key);
        for (int i = 0; i < CHAIN_CACHE_WAYS; i++) {
            chain_entry_t *e = &set[i];
            if (!e->certs || memcmp(e->key, key, sizeof e->key) != 0)
                continue;
            if (!entry_live(e, mono, now)) {
                stale = e->certs;
                e->certs = NULL;
                e->leaf = NULL;
                c->entries--;
            } else if ((*certs = X509_chain_up_ref(e->certs)) != NULL) {
                *leaf = e->leaf;
                e->used = ++c->clock;
                found = 1;
            }
            break;
        }
    }
    pthread_mutex_unlock(&c->lock);
    sk_X509_pop_free(stale, X509_free); /* outside the lock */
    return found;
}

/* Remembers that leaf (a member of certs) chains to the trust store, until
 * the TTL or not_after. Takes its own references. */
static void cache_insert(chain_cache_t *c, const unsigned char key[32], STACK_OF(X509) *certs, X509 *leaf,
                         int64_t not_after)
{
    int64_t mono = mono_seconds(), now = (int64_t)time(NULL);
    if (not_after <= now)
        return;
    STACK_OF(X509) *mine = X509_chain_up_ref(certs), *victim = NULL;
    if (!mine)
        return;
    pthread_mutex_lock(&c->lock);
    if (!c->slots)
        c->slots = calloc((size_t)CHAIN_CACHE_SETS * CHAIN_CACHE_WAYS, sizeof *c->slots);
    if (c->slots) {
        chain_entry_t *set = cache_bucket(c, key), *slot = NULL;
        for (int i = 0; i < CHAIN_CACHE_WAYS && !slot; i++) /* same key (another thread won the race) */
            if (set[i].certs && memcmp(set[i].key, key, sizeof set[i].key) == 0)
                slot = &set[i];
        for (int i = 0; i < CHAIN_CACHE_WAYS && !slot; i++) /* free or expired */
            if (!entry_live(&set[i], mono, now))
                slot = &set[i];
        if (!slot) { /* least recently used */
            slot = &set[0];
            for (int i = 1; i < CHAIN_CACHE_WAYS; i++)
                if (set[i].used < slot->used)
                    slot = &set[i];
        }
        victim = slot->certs;
        if (!victim)
            c->entries++;
        memcpy(slot->key, key, sizeof slot->key);
        slot->certs = mine;
        slot->leaf = leaf;
        slot->expires = mono + CHAIN_CACHE_TTL;
        slot->not_after = not_after;
        slot->used = ++c->clock;
        mine = NULL;
    }
    pthread_mutex_unlock(&c->lock);
    sk_X509_pop_free(victim, X509_free);
    sk_X509_pop_free(mine, X509_free); /* only if the table could not be allocated */
}

static void cache_clear_locked(chain_cache_t *c)
{
    if (!c->slots)
        return;
    for (size_t i = 0; i < (size_t)CHAIN_CACHE_SETS * CHAIN_CACHE_WAYS; i++) {
        sk_X509_pop_free(c->slots[i].certs, X509_free);
        c->slots[i].certs = NULL;
        c->slots[i].leaf = NULL;
    }
    c->entries = 0;
}

void identity_verifier_forget_all(const identity_verifier_t *v)
{
    if (!v)
        return;
    pthread_mutex_lock(&v->cache->lock);
    cache_clear_locked(v->cache);
    pthread_mutex_unlock(&v->cache->lock);
}

void identity_verifier_cache_stats(const identity_verifier_t *v, identity_cache_stats_t *out)
{
    if (!out)
        return;
    memset(out, 0, sizeof *out);
    if (!v)
        return;
    out->hits = atomic_load(&v->cache->hits);
    out->misses = atomic_load(&v->cache->misses);
    pthread_mutex_lock(&v->cache->lock);
    out->entries = v->cache->entries;
    pthread_mutex_unlock(&v->cache->lock);
}

/* ---- verifier ----------------------------------------------------------- */

identity_verifier_t *identity_verifier_new(const char *ca_bundle_path, char **err)
{
    char *dummy = NULL;
    if (!err)
        err = &dummy;
    *err = NULL;
    if (!ca_bundle_path || !*ca_bundle_path) {
        *err = util_strdup_printf("device identity CA bundle path is not set");
        return NULL;
    }
    STACK_OF(X509) *certs = pki_load_cert_bundle(ca_bundle_path);
    if (!certs) {
        FILE *f = fopen(ca_bundle_path, "r");
        if (!f)
            *err = util_strdup_printf("%s: cannot read: %s", ca_bundle_path, strerror(errno));
        else {
            fclose(f);
            *err = util_strdup_printf("%s: no PEM certificates, or a malformed certificate", ca_bundle_path);
        }
        free(dummy);
        return NULL;
    }

    identity_verifier_t *v = calloc(1, sizeof *v);
    if (v)
        v->purpose = X509_PURPOSE_SSL_CLIENT;
    chain_cache_t *cache = calloc(1, sizeof *cache);
    X509_STORE *store = X509_STORE_new();
    int ok = v && cache && store && pthread_mutex_init(&cache->lock, NULL) == 0;
    int have_lock = ok;
    for (int i = 0; ok && i < sk_X509_num(certs); i++) {
        if (X509_STORE_add_cert(store, sk_X509_value(certs, i)) != 1) {
            /* A duplicate certificate in the bundle is harmless. */
            unsigned long e = ERR_peek_last_error();
            ok = ERR_GET_LIB(e) == ERR_LIB_X509 && ERR_GET_REASON(e) == X509_R_CERT_ALREADY_IN_HASH_TABLE;
            ERR_clear_error();
        }
    }
    /* Every certificate in the bundle is a trust anchor, including an
     * intermediate configured on its own (trusting only that sub-CA rather
     * than its whole root). */
    ok = ok && X509_STORE_set_flags(store, X509_V_FLAG_PARTIAL_CHAIN) == 1;
    sk_X509_pop_free(certs, X509_free);
    if (!ok) {
        if (have_lock)
            pthread_mutex_destroy(&cache->lock);
        free(cache);
        X509_STORE_free(store);
        free(v);
        ERR_clear_error();
        *err = util_strdup_printf("%s: cannot build the trust store", ca_bundle_path);
        free(dummy);
        return NULL;
    }
    v->store = store;
    v->cache = cache;
    free(dummy);
    return v;
}

void identity_verifier_any_purpose(identity_verifier_t *v)
{
    if (v)
        v->purpose = X509_PURPOSE_ANY;
}

void identity_verifier_free(identity_verifier_t *v)
{
    if (!v)
        return;
    cache_clear_locked(v->cache); /* no other thread may use v any more */
    free(v->cache->slots);
    pthread_mutex_destroy(&v->cache->lock);
    free(v->cache);
    X509_STORE_free(v->store);
    free(v);
}

/* Earliest notAfter (Unix seconds) of a verified chain; 0 if unknown. */
static int64_t chain_not_after(X509_STORE_CTX *ctx)
{
    STACK_OF(X509) *chain = X509_STORE_CTX_get0_chain(ctx);
    int64_t min = 0;
    for (int i = 0; i < sk_X509_num(chain); i++) {
        struct tm tm;
        if (ASN1_TIME_to_tm(X509_get0_notAfter(sk_X509_value(chain, i)), &tm) != 1)
            return 0;
        time_t t = timegm(&tm);
        if (t == (time_t)-1)
            return 0;
        if (i == 0 || (int64_t)t < min)
            min = (int64_t)t;
    }
    return min;
}

/* identity_verify_cert, also reporting (when not_after is not NULL) the
 * verified chain's earliest notAfter. */
static int verify_chain(const identity_verifier_t *v, X509 *leaf, STACK_OF(X509) *untrusted, char *err,
                        size_t errlen, int64_t *not_after)
{
    if (!v || !leaf) {
        util_set_err(err, errlen, "no certificate");
        return -1;
    }
    X509_STORE_CTX *ctx = X509_STORE_CTX_new();
    if (!ctx) {
        ERR_clear_error();
        util_set_err(err, errlen, "out of memory");
        return -1;
    }
    int rc = -1;
    if (X509_STORE_CTX_init(ctx, v->store, leaf, untrusted) != 1 ||
        X509_STORE_CTX_set_purpose(ctx, v->purpose) != 1) {
        util_set_err(err, errlen, "cannot initialise certificate verification");
    } else if (X509_verify_cert(ctx) == 1) {
        rc = 0;
        if (not_after)
            *not_after = chain_not_after(ctx);
    } else {
        int e = X509_STORE_CTX_get_error(ctx);
        util_set_err(err, errlen, "%s",
                e == X509_V_OK ? "certificate verification failed" : X509_verify_cert_error_string(e));
    }
    X509_STORE_CTX_free(ctx);
    ERR_clear_error();
    return rc;
}

int identity_verify_cert(const identity_verifier_t *v, X509 *leaf, STACK_OF(X509) *untrusted, char *err,
                         size_t errlen)
{
    return verify_chain(v, leaf, untrusted, err, errlen, NULL);
}

/* ---- Mdm-Signature ------------------------------------------------------ */

/* Enters (or, with skip, steps over) one definite-length DER element of the
 * given tag and class at *p, which has `avail` bytes. Returns the content
 * length, or -1. */
static long der_element(const unsigned char **p, long avail, int tag, int cls, int skip)
{
    const unsigned char *q = *p;
    long len = 0;
    int t = 0, c = 0;
    int r = ASN1_get_object(&q, &len, &t, &c, avail);
    if ((r & 0x80) || (r & 0x01) || (tag >= 0 && (t != tag || c != cls)))
        return -1;
    *p = skip ? q + len : q;
    return len;
}

/* Number of entries in SignedData.digestAlgorithms of a DER ContentInfo, or
 * -1 if it is not shaped like one. OpenSSL has no accessor for the field. */
static int count_digest_algorithms(const unsigned char *der, long len)
{
    const unsigned char *p = der, *end = der + len;
    if (der_element(&p, end - p, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 0) < 0 ||    /* ContentInfo */
        der_element(&p, end - p, V_ASN1_OBJECT, V_ASN1_UNIVERSAL, 1) < 0 ||      /* contentType */
        der_element(&p, end - p, 0, V_ASN1_CONTEXT_SPECIFIC, 0) < 0 ||           /* [0] */
        der_element(&p, end - p, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 0) < 0 ||    /* SignedData */
        der_element(&p, end - p, V_ASN1_INTEGER, V_ASN1_UNIVERSAL, 1) < 0)       /* version */
        return -1;
    long set_len = der_element(&p, end - p, V_ASN1_SET, V_ASN1_UNIVERSAL, 0); /* digestAlgorithms */
    if (set_len < 0)
        return -1;
    const unsigned char *set_end = p + set_len;
    int n = 0;
    while (p < set_end) {
        if (der_element(&p, set_end - p, -1, 0, 1) < 0)
            return -1;
        n++;
    }
    return n;
}

/* -- fast path: the certificates apart from the rest --
 *
 * Parsing a certificate is the most expensive step of all: OpenSSL 3.0
 * decodes its public key through the provider decoder framework, ~100 us
 * for one P-256 key on the reference machine, twice the ECDSA verification
 * itself, and d2i_CMS_ContentInfo does it for every certificate carried.
 * So the SignedData is taken apart first: the certificates are looked up
 * in the signer-chain cache by the SHA-256 of their exact bytes (parsed
 * only on a miss) and the rest is parsed without them. Anything this walk
 * does not recognise (another content type, a certificate choice that is
 * not a plain Certificate, an indefinite-length certificate, more signers,
 * digest algorithms or certificates than allowed, excessive nesting) goes
 * to the slow path, the full parse, which then gives the usual answer. BER
 * with indefinite lengths around the certificates (as Apple's CMS encoder
 * writes) is handled here. */

/* One BER element. For a definite length content_end == end; for an
 * indefinite one, end is past the end-of-contents octets at content_end. */
typedef struct {
    const unsigned char *start, *content, *content_end, *end;
    int tag, cls, constructed, indefinite;
} ber_t;

#define BER_MAX_DEPTH 30 /* OpenSSL's own decoder nests no deeper */

static int ber_read(const unsigned char *p, const unsigned char *limit, ber_t *e, int depth)
{
    if (p >= limit || depth > BER_MAX_DEPTH)
        return -1;
    const unsigned char *q = p;
    long len = 0;
    int r = ASN1_get_object(&q, &len, &e->tag, &e->cls, limit - p);
    if (r & 0x80) /* malformed, or longer than what holds it */
        return -1;
    e->start = p;
    e->content = q;
    e->constructed = (r & V_ASN1_CONSTRUCTED) != 0;
    e->indefinite = r & 0x01;
    if (!e->indefinite) {
        e->content_end = e->end = q + len;
        return 0;
    }
    while (q < limit) { /* children, up to the end-of-contents octets */
        if (limit - q >= 2 && q[0] == 0 && q[1] == 0) {
            e->content_end = q;
            e->end = q + 2;
            return 0;
        }
        ber_t child;
        if (ber_read(q, limit, &child, depth + 1) < 0)
            return -1;
        q = child.end;
    }
    return -1;
}

static int ber_is(const ber_t *e, int tag, int cls, int constructed)
{
    return e->tag == tag && e->cls == cls && e->constructed == constructed;
}

/* Counts the children of a constructed element; with certs_only, each
 * must be a definite-length SEQUENCE (a Certificate). */
static int ber_count(const ber_t *e, int depth, int certs_only, int *n)
{
    *n = 0;
    for (const unsigned char *p = e->content; p < e->content_end; (*n)++) {
        ber_t c;
        if (ber_read(p, e->content_end, &c, depth) < 0 ||
            (certs_only && (c.indefinite || !ber_is(&c, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 1))))
            return -1;
        p = c.end;
    }
    return 0;
}

typedef struct {
    ber_t ci, a0, sd; /* ContentInfo, its [0], SignedData */
    ber_t certs;      /* SignedData [0] certificates, if has_certs */
    int has_certs;
    int ndigests, ncerts, nsigners;
} sd_layout_t;

static int sd_walk(const unsigned char *der, size_t der_len, sd_layout_t *L)
{
    static const unsigned char signed_data_oid[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02};
    const unsigned char *end = der + der_len;
    ber_t oid, e;
    memset(L, 0, sizeof *L);
    if (ber_read(der, end, &L->ci, 0) < 0 || L->ci.end != end || /* no trailing bytes */
        !ber_is(&L->ci, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 1))
        return -1;
    if (ber_read(L->ci.content, L->ci.content_end, &oid, 1) < 0 || !ber_is(&oid, V_ASN1_OBJECT, V_ASN1_UNIVERSAL, 0) ||
        oid.end - oid.content != (long)sizeof signed_data_oid ||
        memcmp(oid.content, signed_data_oid, sizeof signed_data_oid) != 0)
        return -1;
    if (ber_read(oid.end, L->ci.content_end, &L->a0, 1) < 0 || L->a0.end != L->ci.content_end ||
        !ber_is(&L->a0, 0, V_ASN1_CONTEXT_SPECIFIC, 1))
        return -1;
    if (ber_read(L->a0.content, L->a0.content_end, &L->sd, 2) < 0 || L->sd.end != L->a0.content_end ||
        !ber_is(&L->sd, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 1))
        return -1;
    const unsigned char *p = L->sd.content, *lim = L->sd.content_end;
    if (ber_read(p, lim, &e, 3) < 0 || !ber_is(&e, V_ASN1_INTEGER, V_ASN1_UNIVERSAL, 0)) /* version */
        return -1;
    if (ber_read(e.end, lim, &e, 3) < 0 || !ber_is(&e, V_ASN1_SET, V_ASN1_UNIVERSAL, 1) ||
        ber_count(&e, 4, 0, &L->ndigests) < 0) /* digestAlgorithms */
        return -1;
    if (ber_read(e.end, lim, &e, 3) < 0 || !ber_is(&e, V_ASN1_SEQUENCE, V_ASN1_UNIVERSAL, 1)) /* encapContentInfo */
        return -1;
    if (ber_read(e.end, lim, &e, 3) < 0)
        return -1;
    if (ber_is(&e, 0, V_ASN1_CONTEXT_SPECIFIC, 1)) { /* certificates */
        L->certs = e;
        L->has_certs = 1;
        if (ber_count(&e, 4, 1, &L->ncerts) < 0 || ber_read(e.end, lim, &e, 3) < 0)
            return -1;
    }
    if (ber_is(&e, 1, V_ASN1_CONTEXT_SPECIFIC, 1) && ber_read(e.end, lim, &e, 3) < 0) /* crls */
        return -1;
    if (!ber_is(&e, V_ASN1_SET, V_ASN1_UNIVERSAL, 1) || ber_count(&e, 4, 0, &L->nsigners) < 0 || e.end != lim)
        return -1; /* signerInfos, and nothing after them */
    return 0;
}

/* Header length of e once its content is content_len long. */
static long header_len(const ber_t *e, long content_len)
{
    if (e->indefinite)
        return e->content - e->start; /* kept as is */
    return ASN1_object_size(1, content_len, e->tag) - content_len;
}

static unsigned char *put_header(unsigned char *q, const ber_t *e, long content_len)
{
    if (e->indefinite) {
        memcpy(q, e->start, (size_t)(e->content - e->start));
        return q + (e->content - e->start);
    }
    ASN1_put_object(&q, 1, (int)content_len, e->tag, e->cls);
    return q;
}

/* The ContentInfo without SignedData.certificates (malloc'd). Definite
 * lengths of SignedData, [0] and ContentInfo shrink by what was removed
 * inside them, including any header below that got shorter (a length that
 * drops under 128 or 256 takes fewer octets); indefinite ones stay. Every
 * header is at most as long as the original one, so der_len bytes suffice. */
static unsigned char *strip_certs(const sd_layout_t *L, size_t der_len, long *out_len)
{
    long shrink = L->certs.end - L->certs.start;
    long sd_len = (L->sd.content_end - L->sd.content) - shrink;
    shrink += (L->sd.content - L->sd.start) - header_len(&L->sd, sd_len);
    long a0_len = (L->a0.content_end - L->a0.content) - shrink;
    shrink += (L->a0.content - L->a0.start) - header_len(&L->a0, a0_len);
    long ci_len = (L->ci.content_end - L->ci.content) - shrink;
    unsigned char *out = malloc(der_len), *q = out;
    if (!out)
        return NULL;
    q = put_header(q, &L->ci, ci_len);
    memcpy(q, L->ci.content, (size_t)(L->a0.start - L->ci.content)); /* contentType */
    q += L->a0.start - L->ci.content;
    q = put_header(q, &L->a0, a0_len);
    q = put_header(q, &L->sd, sd_len);
    memcpy(q, L->sd.content, (size_t)(L->certs.start - L->sd.content)); /* version .. encapContentInfo */
    q += L->certs.start - L->sd.content;
    /* crls, signerInfos, and the end-of-contents octets of indefinite
     * SignedData, [0] and ContentInfo. */
    memcpy(q, L->certs.end, (size_t)(L->ci.end - L->certs.end));
    q += L->ci.end - L->certs.end;
    *out_len = q - out;
    return out;
}

/* Each certificate of the set, parsed on its own, exactly. */
static STACK_OF(X509) *parse_certs(const sd_layout_t *L)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    for (const unsigned char *p = L->certs.content; certs && p < L->certs.content_end;) {
        ber_t c;
        const unsigned char *q = p;
        X509 *x = ber_read(p, L->certs.content_end, &c, 4) == 0 ? d2i_X509(NULL, &q, c.end - p) : NULL;
        if (!x || q != c.end || !sk_X509_push(certs, x)) {
            X509_free(x);
            sk_X509_pop_free(certs, X509_free);
            return NULL;
        }
        p = c.end;
    }
    return certs;
}

typedef struct {
    CMS_ContentInfo *cms;
    STACK_OF(X509) *certs; /* own references; what CMS_get1_certs would give */
    int ndigests;
    int have_key; /* key identifies certs: a verified chain may be cached */
    unsigned char key[32];
    X509 *cached_leaf; /* member of certs whose chain the cache vouches for */
} mdm_parsed_t;

/* 0 and *out filled, or -1 (nothing allocated): use the slow path. */
static int fast_parse(chain_cache_t *cache, const unsigned char *der, size_t der_len, mdm_parsed_t *out)
{
    sd_layout_t L;
    if (sd_walk(der, der_len, &L) < 0 || L.nsigners < 1 || L.nsigners > MDM_MAX_SIGNERS ||
        L.ndigests > MDM_MAX_DIGEST_ALGS || L.ncerts > MDM_MAX_CERTS)
        return -1;
    unsigned char *stripped = NULL;
    const unsigned char *cms_der = der;
    long cms_len = (long)der_len;
    if (L.has_certs) {
        if (!(stripped = strip_certs(&L, der_len, &cms_len)))
            return -1;
        cms_der = stripped;
    }
    const unsigned char *p = cms_der;
    CMS_ContentInfo *cms = d2i_CMS_ContentInfo(NULL, &p, cms_len);
    free(stripped);
    if (!cms || p != cms_der + cms_len) {
        CMS_ContentInfo_free(cms);
        return -1;
    }
    STACK_OF(X509) *certs = NULL;
    X509 *cached_leaf = NULL;
    int have_key = 0;
    if (L.ncerts > 0) {
        /* The certificates are contiguous: hash them in one go. */
        have_key = EVP_Digest(L.certs.content, (size_t)(L.certs.content_end - L.certs.content), out->key, NULL,
                              EVP_sha256(), NULL) == 1;
        if (!have_key || !cache_lookup(cache, out->key, &certs, &cached_leaf))
            certs = parse_certs(&L);
    } else if (L.has_certs) {
        certs = sk_X509_new_null();
    }
    if (L.has_certs && !certs) {
        CMS_ContentInfo_free(cms);
        return -1;
    }
    out->cms = cms;
    out->certs = certs;
    out->ndigests = L.ndigests;
    out->have_key = have_key;
    out->cached_leaf = cached_leaf;
    return 0;
}

X509 *identity_from_mdm_signature(const identity_verifier_t *v, const char *header_b64, const void *body,
                                  size_t body_len, char *err, size_t errlen)
{
    if (!v) {
        util_set_err(err, errlen, "no identity verifier configured");
        return NULL;
    }
    if (!header_b64) {
        util_set_err(err, errlen, "Mdm-Signature is missing");
        return NULL;
    }
    if (!body && body_len > 0) {
        util_set_err(err, errlen, "Mdm-Signature does not match the request body");
        return NULL;
    }
    if (body_len > INT_MAX) {
        util_set_err(err, errlen, "request body is too large to verify");
        return NULL;
    }
    size_t hlen = strnlen(header_b64, MDM_SIGNATURE_MAX + 1);
    if (hlen > MDM_SIGNATURE_MAX) {
        util_set_err(err, errlen, "Mdm-Signature is too large");
        return NULL;
    }

    size_t der_len = 0;
    unsigned char *der = util_base64_decode(header_b64, hlen, &der_len);
    if (!der || der_len == 0) {
        free(der);
        util_set_err(err, errlen, hlen == 0 ? "Mdm-Signature is empty" : "Mdm-Signature is not valid base64");
        return NULL;
    }

    X509 *result = NULL;
    BIO *content = NULL;
    STACK_OF(X509) *signers = NULL;
    mdm_parsed_t m = {.ndigests = -1};

    if (fast_parse(v->cache, der, der_len, &m) < 0) {
        /* Slow path: the whole header must be one CMS structure: no
         * trailing bytes. */
        memset(&m, 0, sizeof m);
        m.ndigests = -1;
        const unsigned char *p = der;
        m.cms = d2i_CMS_ContentInfo(NULL, &p, (long)der_len);
        if (!m.cms || p != der + der_len) {
            util_set_err(err, errlen, "Mdm-Signature is not a CMS structure");
            goto out;
        }
        m.certs = CMS_get1_certs(m.cms); /* all certificates: signer and intermediates */
    }
    CMS_ContentInfo *cms = m.cms;
    if (OBJ_obj2nid(CMS_get0_type(cms)) != NID_pkcs7_signed || CMS_is_detached(cms) != 1) {
        util_set_err(err, errlen, "Mdm-Signature is not a detached SignedData");
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *sinfos = CMS_get0_SignerInfos(cms);
    int nsigners = sk_CMS_SignerInfo_num(sinfos);
    if (nsigners <= 0) {
        util_set_err(err, errlen, "Mdm-Signature has no signer");
        goto out;
    }
    /* Bound the work CMS_verify will do (see MDM_MAX_DIGEST_ALGS). The fast
     * path counted from the input; otherwise the input may be BER, whose
     * DER re-encoding has definite lengths to walk. */
    if (m.ndigests < 0) {
        unsigned char *reenc = NULL;
        int reenc_len = i2d_CMS_ContentInfo(cms, &reenc);
        m.ndigests = reenc_len > 0 ? count_digest_algorithms(reenc, reenc_len) : -1;
        OPENSSL_free(reenc);
        if (m.ndigests < 0) {
            util_set_err(err, errlen, "Mdm-Signature is not a CMS structure");
            goto out;
        }
    }
    if (nsigners > MDM_MAX_SIGNERS || m.ndigests > MDM_MAX_DIGEST_ALGS || sk_X509_num(m.certs) > MDM_MAX_CERTS) {
        util_set_err(err, errlen, "Mdm-Signature has too many signers, digest algorithms or certificates");
        goto out;
    }
    /* Match every SignerInfo with a certificate carried in the structure
     * (on the fast path they were taken out of it: m.certs holds them). */
    CMS_set1_signers_certs(cms, m.certs, 0);
    for (int i = 0; i < nsigners; i++) {
        X509 *signer = NULL;
        CMS_SignerInfo_get0_algs(sk_CMS_SignerInfo_value(sinfos, i), NULL, &signer, NULL, NULL);
        if (!signer) {
            util_set_err(err, errlen, "Mdm-Signature does not include the signer certificate");
            goto out;
        }
    }

    /* Signature over the exact body bytes (binary: no MIME canonicalisation),
     * every signer, every call, never cached; the signer's chain is checked
     * afterwards against our own trust store. The body goes in behind a
     * pass-through filter: given a memory BIO directly, OpenSSL 3.0's
     * CMS_verify makes a private copy of it that it leaks if CMS_dataInit
     * then fails (e.g. an unknown digest algorithm in digestAlgorithms;
     * found by fuzz/fuzz_mdm_signature.c). CMS_verify rather than
     * CMS_SignerInfo_verify + CMS_SignerInfo_verify_content: the split
     * measured no faster (the ECDSA verification is nearly all of it) and
     * CMS_verify keeps every existing rule (all digestAlgorithms must be
     * known; SignerInfos without signed attributes verified directly). */
    BIO *mem = BIO_new_mem_buf(body_len ? body : "", (int)body_len);
    content = mem ? BIO_new(BIO_f_null()) : NULL;
    if (!content) {
        BIO_free(mem);
        util_set_err(err, errlen, "out of memory");
        goto out;
    }
    BIO_push(content, mem);
    if (CMS_verify(cms, m.certs, NULL, content, NULL, CMS_BINARY | CMS_NO_SIGNER_CERT_VERIFY) != 1) {
        util_set_err(err, errlen, "Mdm-Signature does not match the request body");
        goto out;
    }

    signers = CMS_get0_signers(cms);
    X509 *signer = sk_X509_value(signers, 0);
    if (!signer) {
        util_set_err(err, errlen, "Mdm-Signature does not include the signer certificate");
        goto out;
    }
    if (m.cached_leaf && signer == m.cached_leaf) {
        /* Same certificate bytes, signer and intermediates, as a chain that
         * verified less than CHAIN_CACHE_TTL ago and has not expired since. */
        atomic_fetch_add(&v->cache->hits, 1);
    } else {
        char reason[256];
        int64_t not_after = 0;
        if (verify_chain(v, signer, m.certs, reason, sizeof reason, &not_after) != 0) {
            util_set_err(err, errlen, "Mdm-Signature signer is not trusted: %s", reason);
            goto out;
        }
        if (m.have_key) {
            atomic_fetch_add(&v->cache->misses, 1);
            cache_insert(v->cache, m.key, m.certs, signer, not_after);
        }
    }
    if (X509_up_ref(signer) != 1) {
        util_set_err(err, errlen, "out of memory");
        goto out;
    }
    result = signer;

out:
    sk_X509_pop_free(m.certs, X509_free);
    sk_X509_free(signers);
    BIO_free_all(content);
    CMS_ContentInfo_free(m.cms);
    free(der);
    ERR_clear_error();
    return result;
}

/* ---- proxy client-certificate headers ----------------------------------- */

static int is_ows(unsigned char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

static int is_b64_char(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* DER certificate, exactly one, no trailing bytes. */
static X509 *cert_from_der(const unsigned char *der, size_t len, char *err, size_t errlen)
{
    if (len == 0 || len > LONG_MAX) {
        util_set_err(err, errlen, "client certificate header holds no certificate");
        return NULL;
    }
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    if (!x || p != der + len) {
        X509_free(x);
        ERR_clear_error();
        util_set_err(err, errlen, "client certificate header is not a valid DER certificate");
        return NULL;
    }
    return x;
}

/* RFC 9440 Client-Cert: an RFC 8941 byte sequence, ":" base64 ":". */
static X509 *cert_from_sf_binary(const char *s, size_t n, char *err, size_t errlen)
{
    if (n < 2 || s[0] != ':' || s[n - 1] != ':') {
        util_set_err(err, errlen, "client certificate header is not an RFC 9440 :base64: value");
        return NULL;
    }
    const char *b = s + 1;
    size_t blen = n - 2;
    size_t pad_at = blen;
    for (size_t i = 0; i < blen; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '=') {
            if (pad_at == blen)
                pad_at = i;
        } else if (!is_b64_char(c) || pad_at != blen) {
            util_set_err(err, errlen, "client certificate header is not valid base64");
            return NULL;
        }
    }
    /* RFC 8941 s.4.2.7: accept missing "=" padding. */
    char *tmp = malloc(blen + 3);
    if (!tmp) {
        util_set_err(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(tmp, b, blen);
    size_t tlen = blen;
    if (pad_at == blen)
        while (tlen % 4 != 0)
            tmp[tlen++] = '=';
    size_t der_len = 0;
    unsigned char *der = util_base64_decode(tmp, tlen, &der_len);
    free(tmp);
    if (!der) {
        util_set_err(err, errlen, "client certificate header is not valid base64");
        return NULL;
    }
    X509 *x = cert_from_der(der, der_len, err, errlen);
    free(der);
    return x;
}

static const char PEM_BEGIN[] = "-----BEGIN CERTIFICATE-----";
static const char PEM_END[] = "-----END CERTIFICATE-----";

/* One PEM certificate. The base64 body may be split by newlines (proper
 * PEM) or by spaces (proxies that flatten the header onto one line); any
 * ASCII whitespace between base64 characters is ignored. Nothing but
 * whitespace may surround the block. */
static X509 *cert_from_pem(const char *s, size_t n, char *err, size_t errlen)
{
    const size_t bl = sizeof PEM_BEGIN - 1, el = sizeof PEM_END - 1;
    if (n < bl + el || memcmp(s, PEM_BEGIN, bl) != 0) {
        util_set_err(err, errlen, "client certificate header is not a PEM certificate");
        return NULL;
    }
    const char *body = s + bl;
    size_t body_len = 0;
    for (;; body_len++) {
        if (bl + body_len + el > n) {
            util_set_err(err, errlen, "client certificate header has no PEM end line");
            return NULL;
        }
        if (body[body_len] == '-')
            break;
    }
    if (bl + body_len + el != n || memcmp(body + body_len, PEM_END, el) != 0) {
        util_set_err(err, errlen, "client certificate header has a malformed PEM end line or trailing data");
        return NULL;
    }
    for (size_t i = 0; i < body_len; i++) {
        unsigned char c = (unsigned char)body[i];
        if (!is_b64_char(c) && c != '=' && !is_ows(c)) {
            util_set_err(err, errlen, "client certificate header PEM body is not valid base64");
            return NULL;
        }
    }
    size_t der_len = 0;
    unsigned char *der = util_base64_decode(body, body_len, &der_len);
    if (!der) {
        util_set_err(err, errlen, "client certificate header PEM body is not valid base64");
        return NULL;
    }
    X509 *x = cert_from_der(der, der_len, err, errlen);
    free(der);
    return x;
}

X509 *identity_from_header(const char *value, char *err, size_t errlen)
{
    if (!value) {
        util_set_err(err, errlen, "client certificate header is missing");
        return NULL;
    }
    size_t n = strnlen(value, CERT_HEADER_MAX + 1);
    if (n > CERT_HEADER_MAX) {
        util_set_err(err, errlen, "client certificate header is too large");
        return NULL;
    }
    /* Surrounding whitespace is not part of the field value. */
    while (n > 0 && is_ows((unsigned char)value[0])) {
        value++;
        n--;
    }
    while (n > 0 && is_ows((unsigned char)value[n - 1]))
        n--;
    if (n == 0) {
        util_set_err(err, errlen, "client certificate header is empty");
        return NULL;
    }

    if (value[0] == ':')
        return cert_from_sf_binary(value, n, err, errlen);

    if (!memchr(value, '%', n)) {
        X509 *x = cert_from_pem(value, n, err, errlen);
        ERR_clear_error();
        return x;
    }

    /* URL-escaped PEM (nginx $ssl_client_escaped_cert): decode %XX only;
     * '+' stays '+', as it is a base64 character here, not a space. */
    char *dec = malloc(n + 1);
    if (!dec) {
        util_set_err(err, errlen, "out of memory");
        return NULL;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)value[i];
        if (c == '%') {
            int hi = i + 2 < n ? hexval((unsigned char)value[i + 1]) : -1;
            int lo = hi >= 0 ? hexval((unsigned char)value[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
                free(dec);
                util_set_err(err, errlen, "client certificate header has a bad %%-escape");
                return NULL;
            }
            c = (unsigned char)(hi << 4 | lo);
            i += 2;
        }
        dec[m++] = (char)c;
    }
    dec[m] = '\0';
    /* Decoded text may carry its own surrounding newline. */
    const char *d = dec;
    while (m > 0 && is_ows((unsigned char)d[0])) {
        d++;
        m--;
    }
    while (m > 0 && is_ows((unsigned char)d[m - 1]))
        m--;
    X509 *x = cert_from_pem(d, m, err, errlen);
    free(dec);
    ERR_clear_error();
    return x;
}
