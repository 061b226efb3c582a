/* HTTP Digest authentication (see digest_auth.h).
 *
 * Replay table: in memory, per process, shared by the worker threads under
 * a mutex. Keeping nonce counts in the store instead would make every
 * authenticated enrollment a durable write and would need a purge job;
 * what it would add is replay protection across instances. The exposure
 * left is narrow: replaying needs a captured Authorization header, i.e.
 * the plaintext of a TLS session, and a replay succeeds only on another
 * instance and only within the nonce lifetime (a few minutes); what it
 * gets is an enrollment profile for a device that is assigned to this
 * organization anyway (MachineInfo is signed by the device). Behind a load
 * balancer, stickiness per client makes even that window disappear.
 *
 * The table is bounded: slots are found by hashing the nonce tag with a
 * short linear probe; an expired entry is reused first; when the probe
 * window is full of live entries, the oldest one is evicted and the
 * "floor" moves to its issue time: every nonce issued at or before the
 * floor counts as stale from then on, so an evicted nonce can never be
 * replayed (its owner just gets a fresh stale=true challenge).
 */
#include "digest_auth.h"

#include <ctype.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "log.h"
#include "util.h"

#define USERS_FILE_MAX (1024 * 1024)
#define FIELD_MAX 256         /* any one Authorization parameter */
#define AUTH_HEADER_MAX 4096
#define NONCE_TAG_LEN 16
#define NONCE_HEX_LEN (2 * (8 + 8 + NONCE_TAG_LEN)) /* time, random, tag */
#define PROBE 8
#define FUTURE_SKEW 30 /* seconds a nonce may be "from the future" (clocks of other instances) */

typedef struct {
    char *user;
    char ha1[65];
    int sha256; /* 1: SHA-256 HA1, 0: MD5 */
} digest_user_t;

typedef struct {
    char *realm;
    digest_user_t *users;
    size_t n;
    int has_md5, has_sha256;
} user_table_t;

typedef struct {
    unsigned char tag[NONCE_TAG_LEN];
    int64_t issued;
    uint32_t nc; /* highest accepted nonce count; 0 = free */
} replay_slot_t;

struct digest_auth {
    char *path;
    unsigned char key[DIGEST_KEY_LEN];
    int64_t ttl;
    char opaque[33];
    pthread_mutex_t lock; /* users, file identity, replay table */
    user_table_t users;
    struct stat file_id;
    replay_slot_t *slots;
    size_t nslots;
    int64_t floor;
};

/* ---- user file ------------------------------------------------------------- */

static void users_clear(user_table_t *t)
{
    for (size_t i = 0; i < t->n; i++) {
        free(t->users[i].user);
        OPENSSL_cleanse(t->users[i].ha1, sizeof t->users[i].ha1);
    }
    free(t->users);
    free(t->realm);
    memset(t, 0, sizeof *t);
}

static int is_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]))
            return 0;
    return 1;
}

/* Names and realms go into quoted header values and log lines: printable,
 * no quote or backslash, no colon (the file's separator). */
static int field_ok(const char *s, size_t n)
{
    if (n == 0 || n > FIELD_MAX)
        return 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '"' || c == '\\' || c == ':')
            return 0;
    }
    return 1;
}

static int users_parse(const char *text, size_t len, user_table_t *t, char *err, size_t errlen)
{
    memset(t, 0, sizeof *t);
    size_t cap = 0;
    int lineno = 0;
    const char *p = text, *end = text + len;
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        const char *le = nl ? nl : end;
        lineno++;
        const char *line = p;
        p = nl ? nl + 1 : end;
        if (le > line && le[-1] == '\r')
            le--;
        if (le == line || line[0] == '#')
            continue;
        const char *c1 = memchr(line, ':', (size_t)(le - line));
        const char *c2 = c1 ? memchr(c1 + 1, ':', (size_t)(le - c1 - 1)) : NULL;
        size_t hlen = c2 ? (size_t)(le - c2 - 1) : 0;
        if (!c2 || !field_ok(line, (size_t)(c1 - line)) || !field_ok(c1 + 1, (size_t)(c2 - c1 - 1)) ||
            (hlen != 32 && hlen != 64) || !is_hex(c2 + 1, hlen)) {
            util_set_err(err, errlen,
                         "line %d: expected user:realm:HA1 (HA1 = 32 hex digits for MD5 or 64 for SHA-256)",
                         lineno);
            goto fail;
        }
        size_t rlen = (size_t)(c2 - c1 - 1);
        if (!t->realm) {
            if (!(t->realm = strndup(c1 + 1, rlen)))
                goto oom;
        } else if (strlen(t->realm) != rlen || memcmp(t->realm, c1 + 1, rlen) != 0) {
            util_set_err(err, errlen, "line %d: realm differs from the first line's \"%s\" (one realm per file)",
                         lineno, t->realm);
            goto fail;
        }
        if (t->n == cap) {
            size_t ncap = cap ? 2 * cap : 16;
            digest_user_t *nu = realloc(t->users, ncap * sizeof *nu);
            if (!nu)
                goto oom;
            t->users = nu;
            cap = ncap;
        }
        digest_user_t *u = &t->users[t->n];
        memset(u, 0, sizeof *u);
        if (!(u->user = strndup(line, (size_t)(c1 - line))))
            goto oom;
        for (size_t i = 0; i < hlen; i++)
            u->ha1[i] = (char)tolower((unsigned char)c2[1 + i]);
        u->sha256 = hlen == 64;
        for (size_t i = 0; i < t->n; i++)
            if (t->users[i].sha256 == u->sha256 && strcmp(t->users[i].user, u->user) == 0) {
                util_set_err(err, errlen, "line %d: user \"%s\" appears twice for %s", lineno, u->user,
                             u->sha256 ? "SHA-256" : "MD5");
                free(u->user);
                goto fail;
            }
        t->n++;
        if (u->sha256)
            t->has_sha256 = 1;
        else
            t->has_md5 = 1;
    }
    if (t->n == 0) {
        util_set_err(err, errlen, "no users (expected user:realm:HA1 lines, as htdigest writes)");
        goto fail;
    }
    return 0;
oom:
    util_set_err(err, errlen, "out of memory");
fail:
    users_clear(t);
    return -1;
}

static int users_load(const char *path, user_table_t *t, struct stat *id, char *err, size_t errlen)
{
    struct stat st;
    if (stat(path, &st) != 0) {
        util_set_err(err, errlen, "cannot read %s", path);
        return -1;
    }
    size_t len = 0;
    char *text = util_read_file(path, USERS_FILE_MAX, &len);
    if (!text) {
        util_set_err(err, errlen, "cannot read %s (missing, unreadable or over 1 MiB)", path);
        return -1;
    }
    char why[256];
    int rc = users_parse(text, len, t, why, sizeof why);
    OPENSSL_cleanse(text, len);
    free(text);
    if (rc != 0) {
        util_set_err(err, errlen, "%s: %s", path, why);
        return -1;
    }
    *id = st;
    return 0;
}

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_ino == b->st_ino && a->st_dev == b->st_dev && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec;
}

/* With the lock held: re-reads the user file when it changed. A file that
 * no longer parses leaves the old users in force (logged once per change). */
static void maybe_reload(digest_auth_t *a)
{
    struct stat st;
    if (stat(a->path, &st) != 0 || same_file(&st, &a->file_id))
        return;
    user_table_t fresh;
    struct stat id;
    char err[512];
    if (users_load(a->path, &fresh, &id, err, sizeof err) != 0) {
        log_warn("ADE authentication: user file changed but cannot be used, keeping the previous users: %s", err);
        a->file_id = st; /* do not re-read (and re-log) until it changes again */
        return;
    }
    users_clear(&a->users);
    a->users = fresh;
    a->file_id = id;
    log_info("ADE authentication: user file %s reloaded (%zu entries, realm \"%s\")", a->path, fresh.n, fresh.realm);
}

/* ---- nonces ---------------------------------------------------------------- */

static int hmac_tag(const digest_auth_t *a, const unsigned char *msg, size_t len, unsigned char *out, size_t outlen)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(EVP_sha256(), a->key, DIGEST_KEY_LEN, msg, len, md, &n) || n < outlen)
        return -1;
    memcpy(out, md, outlen);
    OPENSSL_cleanse(md, sizeof md);
    return 0;
}

static int nonce_new(const digest_auth_t *a, int64_t now, char out[NONCE_HEX_LEN + 1])
{
    unsigned char raw[8 + 8 + NONCE_TAG_LEN];
    uint64_t t = (uint64_t)now;
    for (int i = 0; i < 8; i++)
        raw[i] = (unsigned char)(t >> (56 - 8 * i));
    if (RAND_bytes(raw + 8, 8) != 1 || hmac_tag(a, raw, 16, raw + 16, NONCE_TAG_LEN) != 0)
        return -1;
    util_hex(raw, sizeof raw, out);
    return 0;
}

static int unhex(const char *s, size_t n, unsigned char *out)
{
    for (size_t i = 0; i < n; i++) {
        unsigned int v;
        char two[3] = {s[2 * i], s[2 * i + 1], 0};
        if (!isxdigit((unsigned char)two[0]) || !isxdigit((unsigned char)two[1]) || sscanf(two, "%x", &v) != 1)
            return -1;
        out[i] = (unsigned char)v;
    }
    return 0;
}

/* DIGEST_OK with the issue time and tag, DIGEST_FORGED_NONCE otherwise. */
static digest_result_t nonce_check(const digest_auth_t *a, const char *nonce, int64_t *issued,
                                   unsigned char tag[NONCE_TAG_LEN])
{
    unsigned char raw[8 + 8 + NONCE_TAG_LEN], want[NONCE_TAG_LEN];
    if (strlen(nonce) != NONCE_HEX_LEN || unhex(nonce, sizeof raw, raw) != 0 ||
        hmac_tag(a, raw, 16, want, sizeof want) != 0 || CRYPTO_memcmp(want, raw + 16, NONCE_TAG_LEN) != 0)
        return DIGEST_FORGED_NONCE;
    uint64_t t = 0;
    for (int i = 0; i < 8; i++)
        t = (t << 8) | raw[i];
    *issued = (int64_t)t;
    memcpy(tag, raw + 16, NONCE_TAG_LEN);
    return DIGEST_OK;
}

/* With the lock held: spends nonce count nc of the nonce with this tag.
 * DIGEST_OK, DIGEST_REPLAY, or DIGEST_STALE_NONCE when the nonce has fallen
 * under the floor. */
static digest_result_t replay_spend(digest_auth_t *a, const unsigned char tag[NONCE_TAG_LEN], int64_t issued,
                                    uint32_t nc, int64_t now)
{
    if (issued <= a->floor)
        return DIGEST_STALE_NONCE;
    size_t h = ((size_t)tag[0] << 24 | (size_t)tag[1] << 16 | (size_t)tag[2] << 8 | tag[3]) % a->nslots;
    replay_slot_t *free_slot = NULL, *oldest = NULL;
    for (size_t i = 0; i < PROBE && i < a->nslots; i++) {
        replay_slot_t *sl = &a->slots[(h + i) % a->nslots];
        if (sl->nc && memcmp(sl->tag, tag, NONCE_TAG_LEN) == 0) {
            if (nc <= sl->nc)
                return DIGEST_REPLAY;
            sl->nc = nc;
            return DIGEST_OK;
        }
        int dead = sl->nc == 0 || sl->issued + a->ttl < now || sl->issued <= a->floor;
        if (dead && !free_slot)
            free_slot = sl;
        if (!oldest || sl->issued < oldest->issued)
            oldest = sl;
    }
    if (!free_slot) {
        /* Evicting a live entry: nonces as old as it become stale, so it
         * cannot be replayed after being forgotten. */
        if (oldest->issued > a->floor)
            a->floor = oldest->issued;
        free_slot = oldest;
        if (issued <= a->floor)
            return DIGEST_STALE_NONCE;
    }
    memcpy(free_slot->tag, tag, NONCE_TAG_LEN);
    free_slot->issued = issued;
    free_slot->nc = nc;
    return DIGEST_OK;
}

/* ---- hashing ----------------------------------------------------------------- */

/* Hex digest of the parts joined with ':'. */
static int hash_hex(int sha256, const char *const *parts, size_t n, char out[65])
{
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    int ok = c && EVP_DigestInit_ex(c, sha256 ? EVP_sha256() : EVP_md5(), NULL) == 1;
    for (size_t i = 0; ok && i < n; i++) {
        if (i)
            ok = EVP_DigestUpdate(c, ":", 1) == 1;
        ok = ok && EVP_DigestUpdate(c, parts[i], strlen(parts[i])) == 1;
    }
    ok = ok && EVP_DigestFinal_ex(c, md, &len) == 1;
    EVP_MD_CTX_free(c);
    if (!ok)
        return -1;
    util_hex(md, len, out);
    OPENSSL_cleanse(md, sizeof md);
    return 0;
}

int digest_ha1(const char *algorithm, const char *user, const char *realm, const char *password, char out[65])
{
    int sha256;
    if (strcasecmp(algorithm, "SHA-256") == 0)
        sha256 = 1;
    else if (strcasecmp(algorithm, "MD5") == 0)
        sha256 = 0;
    else
        return -1;
    const char *parts[] = {user, realm, password};
    return hash_hex(sha256, parts, 3, out);
}

/* ---- Authorization header ---------------------------------------------------- */

enum { P_USERNAME, P_REALM, P_NONCE, P_URI, P_RESPONSE, P_ALGORITHM, P_CNONCE, P_OPAQUE, P_QOP, P_NC, P_USERHASH,
       P_COUNT_ };
static const char *const param_names[P_COUNT_] = {"username", "realm",  "nonce",  "uri", "response", "algorithm",
                                                  "cnonce",   "opaque", "qop",    "nc",  "userhash"};

typedef struct {
    char v[P_COUNT_][FIELD_MAX + 1];
    int set[P_COUNT_];
} params_t;

/* auth-param list: name=token or name="quoted string" (backslash escapes),
 * separated by commas. Unknown names are ignored; a repeated known name or
 * an over-long value is malformed. */
static int parse_params(const char *s, params_t *p, char *why, size_t whylen)
{
    memset(p, 0, sizeof *p);
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == ',')
            s++;
        if (!*s)
            return 0;
        const char *name = s;
        while (*s && *s != '=' && *s != ' ' && *s != '\t' && *s != ',')
            s++;
        size_t nlen = (size_t)(s - name);
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s != '=' || nlen == 0) {
            util_set_err(why, whylen, "Authorization: expected name=value");
            return -1;
        }
        s++;
        while (*s == ' ' || *s == '\t')
            s++;
        char val[FIELD_MAX + 1];
        size_t vlen = 0;
        if (*s == '"') {
            s++;
            while (*s && *s != '"') {
                if (*s == '\\' && s[1])
                    s++;
                if (vlen >= FIELD_MAX) {
                    util_set_err(why, whylen, "Authorization: a parameter is too long");
                    return -1;
                }
                val[vlen++] = *s++;
            }
            if (*s != '"') {
                util_set_err(why, whylen, "Authorization: unterminated quoted string");
                return -1;
            }
            s++;
        } else {
            while (*s && *s != ',' && *s != ' ' && *s != '\t') {
                if (vlen >= FIELD_MAX) {
                    util_set_err(why, whylen, "Authorization: a parameter is too long");
                    return -1;
                }
                val[vlen++] = *s++;
            }
        }
        val[vlen] = '\0';
        for (int i = 0; i < P_COUNT_; i++) {
            if (strlen(param_names[i]) == nlen && strncasecmp(name, param_names[i], nlen) == 0) {
                if (p->set[i]) {
                    util_set_err(why, whylen, "Authorization: %s given twice", param_names[i]);
                    return -1;
                }
                p->set[i] = 1;
                memcpy(p->v[i], val, vlen + 1);
            }
        }
        while (*s == ' ' || *s == '\t')
            s++;
        if (*s && *s != ',') {
            util_set_err(why, whylen, "Authorization: expected ',' between parameters");
            return -1;
        }
    }
}

static void copy_user(const char *name, char *user, size_t userlen)
{
    if (!user || !userlen)
        return;
    /* Only printable ASCII reaches the caller (it goes into log lines). */
    size_t i = 0;
    for (; name[i] && i + 1 < userlen; i++)
        user[i] = (name[i] >= 0x20 && name[i] < 0x7f) ? name[i] : '?';
    user[i] = '\0';
}

digest_result_t digest_auth_verify(digest_auth_t *a, const char *authorization, const char *method,
                                   const char *uri, int64_t now, char *user, size_t userlen, char *why,
                                   size_t whylen)
{
    if (user && userlen)
        user[0] = '\0';
    if (!authorization || strncasecmp(authorization, "Digest", 6) != 0 ||
        (authorization[6] != ' ' && authorization[6] != '\t')) {
        util_set_err(why, whylen, authorization ? "Authorization is not Digest" : "no Authorization header");
        return DIGEST_MISSING;
    }
    if (strlen(authorization) > AUTH_HEADER_MAX) {
        util_set_err(why, whylen, "Authorization header over %d bytes", AUTH_HEADER_MAX);
        return DIGEST_MALFORMED;
    }
    params_t *p = malloc(sizeof *p);
    if (!p) {
        util_set_err(why, whylen, "out of memory");
        return DIGEST_ERROR;
    }
    digest_result_t r = DIGEST_MALFORMED;
    if (parse_params(authorization + 7, p, why, whylen) != 0)
        goto out;
    if (p->set[P_USERNAME])
        copy_user(p->v[P_USERNAME], user, userlen);
    static const int required[] = {P_USERNAME, P_REALM, P_NONCE, P_URI, P_RESPONSE, P_CNONCE, P_NC};
    for (size_t i = 0; i < sizeof required / sizeof required[0]; i++)
        if (!p->set[required[i]]) {
            util_set_err(why, whylen, "Authorization lacks %s", param_names[required[i]]);
            goto out;
        }
    if (!p->set[P_QOP] || strcmp(p->v[P_QOP], "auth") != 0) {
        util_set_err(why, whylen, "qop must be auth (got %s)", p->set[P_QOP] ? "another" : "none");
        r = DIGEST_UNSUPPORTED;
        goto out;
    }
    int sha256 = 0;
    if (p->set[P_ALGORITHM] && strcasecmp(p->v[P_ALGORITHM], "SHA-256") == 0)
        sha256 = 1;
    else if (p->set[P_ALGORITHM] && strcasecmp(p->v[P_ALGORITHM], "MD5") != 0) {
        util_set_err(why, whylen, "algorithm %.40s is not supported (SHA-256 or MD5)", p->v[P_ALGORITHM]);
        r = DIGEST_UNSUPPORTED;
        goto out;
    }
    if (p->set[P_USERHASH] && strcasecmp(p->v[P_USERHASH], "false") != 0) {
        util_set_err(why, whylen, "userhash is not supported");
        r = DIGEST_UNSUPPORTED;
        goto out;
    }
    size_t nclen = strlen(p->v[P_NC]);
    if (nclen == 0 || nclen > 8 || !is_hex(p->v[P_NC], nclen)) {
        util_set_err(why, whylen, "nc must be 1 to 8 hex digits");
        goto out;
    }
    uint32_t nc = (uint32_t)strtoul(p->v[P_NC], NULL, 16);
    if (nc == 0) {
        util_set_err(why, whylen, "nc must not be 0");
        goto out;
    }
    if (strcmp(p->v[P_URI], uri) != 0) {
        util_set_err(why, whylen, "uri \"%.80s\" is not the request's", p->v[P_URI]);
        r = DIGEST_WRONG_URI;
        goto out;
    }
    if (!p->set[P_OPAQUE] || strcmp(p->v[P_OPAQUE], a->opaque) != 0) {
        util_set_err(why, whylen, "opaque %s", p->set[P_OPAQUE] ? "is not this server's" : "is missing");
        r = DIGEST_WRONG_REALM;
        goto out;
    }
    int64_t issued = 0;
    unsigned char tag[NONCE_TAG_LEN];
    if (nonce_check(a, p->v[P_NONCE], &issued, tag) != DIGEST_OK) {
        util_set_err(why, whylen, "nonce was not issued by this server (forged or from another key)");
        r = DIGEST_FORGED_NONCE;
        goto out;
    }
    if (issued + a->ttl < now || issued > now + FUTURE_SKEW) {
        util_set_err(why, whylen, "nonce issued %lld s ago, lifetime %lld s", (long long)(now - issued),
                     (long long)a->ttl);
        r = DIGEST_STALE_NONCE;
        goto out;
    }

    /* The HA1 and realm under the lock; hashing outside it. */
    char ha1[65] = "", realm[FIELD_MAX + 1] = "";
    int found = 0;
    pthread_mutex_lock(&a->lock);
    maybe_reload(a);
    if (a->users.realm)
        snprintf(realm, sizeof realm, "%s", a->users.realm);
    for (size_t i = 0; i < a->users.n; i++)
        if (a->users.users[i].sha256 == sha256 && strcmp(a->users.users[i].user, p->v[P_USERNAME]) == 0) {
            memcpy(ha1, a->users.users[i].ha1, sizeof ha1);
            found = 1;
            break;
        }
    pthread_mutex_unlock(&a->lock);
    if (strcmp(p->v[P_REALM], realm) != 0) {
        util_set_err(why, whylen, "realm \"%.80s\" is not \"%.80s\"", p->v[P_REALM], realm);
        r = DIGEST_WRONG_REALM;
        goto out;
    }
    if (!found) {
        util_set_err(why, whylen, "unknown user \"%.64s\" (no %s entry in the user file)", user ? user : "",
                     sha256 ? "SHA-256" : "MD5");
        r = DIGEST_UNKNOWN_USER;
        goto out;
    }
    char ha2[65], expect[65], given[65];
    const char *h2[] = {method, p->v[P_URI]};
    const char *resp_parts[] = {ha1, p->v[P_NONCE], p->v[P_NC], p->v[P_CNONCE], p->v[P_QOP], ha2};
    if (hash_hex(sha256, h2, 2, ha2) != 0 || hash_hex(sha256, resp_parts, 6, expect) != 0) {
        OPENSSL_cleanse(ha1, sizeof ha1);
        util_set_err(why, whylen, "hashing failed");
        r = DIGEST_ERROR;
        goto out;
    }
    OPENSSL_cleanse(ha1, sizeof ha1);
    size_t rlen = strlen(p->v[P_RESPONSE]), elen = strlen(expect);
    memset(given, 0, sizeof given);
    for (size_t i = 0; i < rlen && i < sizeof given - 1; i++)
        given[i] = (char)tolower((unsigned char)p->v[P_RESPONSE][i]);
    if (rlen != elen || CRYPTO_memcmp(given, expect, elen) != 0) {
        util_set_err(why, whylen, "wrong password for user \"%.64s\" (response does not match)", user ? user : "");
        r = DIGEST_WRONG_PASSWORD;
        goto out;
    }
    pthread_mutex_lock(&a->lock);
    r = replay_spend(a, tag, issued, nc, now);
    pthread_mutex_unlock(&a->lock);
    if (r == DIGEST_REPLAY)
        util_set_err(why, whylen, "nonce count %08x was already used with this nonce (replayed request)", nc);
    else if (r == DIGEST_STALE_NONCE)
        util_set_err(why, whylen, "nonce was evicted from the replay table under load");
    else
        util_set_err(why, whylen, "user \"%.64s\" authenticated", user ? user : "");
out:
    OPENSSL_cleanse(p, sizeof *p);
    free(p);
    return r;
}

/* ---- challenge, lifecycle ------------------------------------------------------ */

int digest_auth_challenge(digest_auth_t *a, int64_t now, int stale, char *values[DIGEST_MAX_CHALLENGES], size_t *n)
{
    *n = 0;
    char nonce[NONCE_HEX_LEN + 1];
    if (nonce_new(a, now, nonce) != 0)
        return -1;
    pthread_mutex_lock(&a->lock);
    maybe_reload(a);
    char *realm = a->users.realm ? strdup(a->users.realm) : NULL;
    int algs[2], nalgs = 0;
    if (a->users.has_sha256)
        algs[nalgs++] = 1;
    if (a->users.has_md5)
        algs[nalgs++] = 0;
    pthread_mutex_unlock(&a->lock);
    if (!realm)
        return -1;
    for (int i = 0; i < nalgs; i++) {
        values[i] = util_strdup_printf("Digest realm=\"%s\", qop=\"auth\", algorithm=%s, nonce=\"%s\", "
                                       "opaque=\"%s\"%s",
                                       realm, algs[i] ? "SHA-256" : "MD5", nonce, a->opaque,
                                       stale ? ", stale=true" : "");
        if (!values[i]) {
            for (int j = 0; j < i; j++)
                free(values[j]);
            free(realm);
            return -1;
        }
    }
    free(realm);
    *n = (size_t)nalgs;
    return 0;
}

const char *digest_auth_realm(digest_auth_t *a)
{
    return a->users.realm;
}

digest_auth_t *digest_auth_new(const char *users_path, const unsigned char *key, int64_t nonce_ttl,
                               size_t replay_slots, char *err, size_t errlen)
{
    digest_auth_t *a = calloc(1, sizeof *a);
    if (!a || !(a->path = strdup(users_path))) {
        free(a);
        util_set_err(err, errlen, "out of memory");
        return NULL;
    }
    memcpy(a->key, key, DIGEST_KEY_LEN);
    a->ttl = nonce_ttl > 0 ? nonce_ttl : 300;
    a->nslots = replay_slots ? replay_slots : 4096;
    pthread_mutex_init(&a->lock, NULL);
    /* opaque: fixed per key, so every instance sends and accepts the same. */
    unsigned char o[16];
    if (!(a->slots = calloc(a->nslots, sizeof *a->slots)) ||
        hmac_tag(a, (const unsigned char *)"orchard digest opaque", 21, o, sizeof o) != 0) {
        util_set_err(err, errlen, "out of memory");
        digest_auth_free(a);
        return NULL;
    }
    util_hex(o, sizeof o, a->opaque);
    if (users_load(users_path, &a->users, &a->file_id, err, errlen) != 0) {
        digest_auth_free(a);
        return NULL;
    }
    return a;
}

void digest_auth_free(digest_auth_t *a)
{
    if (!a)
        return;
    users_clear(&a->users);
    free(a->slots);
    free(a->path);
    OPENSSL_cleanse(a->key, sizeof a->key);
    pthread_mutex_destroy(&a->lock);
    free(a);
}

const char *digest_result_name(digest_result_t r)
{
    switch (r) {
    case DIGEST_OK: return "ok";
    case DIGEST_MISSING: return "no credentials";
    case DIGEST_MALFORMED: return "malformed credentials";
    case DIGEST_UNSUPPORTED: return "unsupported digest parameters";
    case DIGEST_WRONG_REALM: return "wrong realm or opaque";
    case DIGEST_WRONG_URI: return "wrong uri";
    case DIGEST_FORGED_NONCE: return "forged nonce";
    case DIGEST_STALE_NONCE: return "stale nonce";
    case DIGEST_UNKNOWN_USER: return "unknown user";
    case DIGEST_WRONG_PASSWORD: return "wrong password";
    case DIGEST_REPLAY: return "replayed nonce count";
    case DIGEST_ERROR: return "internal error";
    }
    return "?";
}
