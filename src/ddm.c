/* Declarative device management: declarations, tokens and sync (ddm.h). */
#include "ddm.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>

#include "ddm_schema.h"
#include "log.h"
#include "plist.h"
#include "strlist.h"
#include "util.h"

/* ---- tokens ------------------------------------------------------------------ */

/* 32 hex digits (128 bits of SHA-256) are plenty to tell revisions apart and
 * keep both tokens well under Apple's 64-octet ServerToken limit. */
static void sha256_hex32(const void *data, size_t len, char out[33])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (!EVP_Digest(data, len, md, &mdlen, EVP_sha256(), NULL) || mdlen < 16) {
        memset(out, '0', 32);
        out[32] = '\0';
        return;
    }
    util_hex(md, 16, out);
}

void ddm_declarations_token(const char *lines, size_t len, char out[33])
{
    sha256_hex32(lines ? lines : "", lines ? len : 0, out);
}

/* ---- declarations ---------------------------------------------------------------- */

/* Identifiers travel inside the check-in Endpoint ("declaration/<kind>/<id>")
 * and admin URLs, so '/' and URL-special characters are refused, as is
 * anything that is not printable ASCII (keeps logs and paths unambiguous). */
static int identifier_ok(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > DDM_IDENTIFIER_MAX)
        return 0;
    for (const char *p = id; *p; p++) {
        unsigned char c = (unsigned char)*p;
        if (c <= 0x20 || c >= 0x7f || strchr("/\\%?#\"'<>", c))
            return 0;
    }
    return 1;
}

static const char *kind_of_type(const char *type)
{
    const ds_declaration_t *ds = ddm_schema_find(type);
    return ds ? ds->kind : NULL;
}

/* Is `target` reachable from `from` by following referrer edges (who
 * references whom, backwards)? Then a new edge from -> target closes a cycle.
 * Breadth-first over decl_referrers, bounded. -1 on storage failure. */
static int reaches_by_referrers(store_t *s, const char *from, const char *target)
{
    /* seen.v[0] is `from`; each round appends the referrers of one entry. */
    strlist_t seen = {0};
    int rc = strlist_add(&seen, from) != 0 ? -1 : 0;
    for (size_t i = 0; rc == 0 && i < seen.n && seen.n < 10000; i++) {
        if (s->ops->decl_referrers(s, seen.v[i], strlist_collect_unique, &seen) != STORE_OK || seen.oom)
            rc = -1;
    }
    for (size_t i = 1; rc == 0 && i < seen.n; i++)
        if (strcmp(seen.v[i], target) == 0)
            rc = 1;
    strlist_free(&seen);
    return rc;
}

/* Checks one reference of the declaration being stored. 0 ok, 400 or 503. */
static int check_reference(store_t *s, const char *self, const char *ref, const char *want_kind,
                           const char *assettypes, char *err, size_t errlen)
{
    if (strcmp(ref, self) == 0) {
        util_set_err(err, errlen, "circular reference: declaration '%s' references itself", self);
        return 400;
    }
    declaration_t d;
    int rc = s->ops->decl_get(s, ref, &d);
    if (rc == STORE_NOTFOUND) {
        util_set_err(err, errlen, "dangling reference: '%.64s' names no declaration (create it first)", ref);
        return 400;
    }
    if (rc != STORE_OK) {
        util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
        return 503;
    }
    int code = 0;
    if (strcmp(d.kind, want_kind) != 0) {
        util_set_err(err, errlen, "reference '%.64s' is a%s %s declaration, but a%s %s is expected here", ref,
                     d.kind[0] == 'a' ? "n" : "", d.kind, want_kind[0] == 'a' ? "n" : "", want_kind);
        code = 400;
    } else if (assettypes && *assettypes) {
        /* assettypes is a comma-joined list of the asset Types allowed. */
        size_t tl = strlen(d.type);
        const char *p = assettypes;
        int ok = 0;
        while (*p && !ok) {
            const char *comma = strchr(p, ',');
            size_t n = comma ? (size_t)(comma - p) : strlen(p);
            ok = n == tl && strncmp(p, d.type, n) == 0;
            p += n + (comma ? 1 : 0);
        }
        if (!ok) {
            util_set_err(err, errlen, "reference '%.64s' is a %s asset, but one of %s is expected", ref, d.type,
                         assettypes);
            code = 400;
        }
    }
    declaration_free(&d);
    if (code)
        return code;
    int cyc = reaches_by_referrers(s, self, ref);
    if (cyc < 0) {
        util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
        return 503;
    }
    if (cyc) {
        util_set_err(err, errlen, "circular reference: '%.64s' already references '%.64s'", ref, self);
        return 400;
    }
    return 0;
}

int ddm_declaration_put(store_t *s, const json_t *decl, int *changed, char *err, size_t errlen)
{
    if (changed)
        *changed = 0;
    if (!json_is_object(decl)) {
        util_set_err(err, errlen, "a declaration is a JSON object with Type, Identifier and Payload");
        return 400;
    }
    const char *key;
    json_t *val;
    json_object_foreach((json_t *)decl, key, val)
    {
        if (strcmp(key, "Type") && strcmp(key, "Identifier") && strcmp(key, "Payload") && strcmp(key, "ServerToken")) {
            util_set_err(err, errlen, "unknown declaration key '%.64s' (allowed: Type, Identifier, Payload)", key);
            return 400;
        }
    }
    const char *type = json_string_value(json_object_get(decl, "Type"));
    const char *ident = json_string_value(json_object_get(decl, "Identifier"));
    json_t *payload = json_object_get(decl, "Payload");
    if (!type || !ident) {
        util_set_err(err, errlen, "declaration needs string Type and Identifier");
        return 400;
    }
    if (!identifier_ok(ident)) {
        util_set_err(err, errlen,
                     "Identifier must be 1..%d octets of printable ASCII without spaces, slashes, backslashes, "
                     "'%%', '?', '#', quotes or '<>'",
                     DDM_IDENTIFIER_MAX);
        return 400;
    }
    if (!json_is_object(payload)) {
        util_set_err(err, errlen, "declaration '%.64s' needs a Payload object", ident);
        return 400;
    }
    json_incref(payload);
    const char *kind = kind_of_type(type);
    char **refs = NULL;
    const char **ref_kinds = NULL, **ref_types = NULL;
    size_t nrefs = 0;
    int code = 400;
    char *canon = NULL, *whole = NULL;
    json_t *tmp = NULL;
    if (!kind) {
        util_set_err(err, errlen, "unknown declaration type '%.100s'", type);
        goto out;
    }
    if (ddm_schema_check(type, payload, &refs, &ref_kinds, &ref_types, &nrefs, err, errlen) != 0)
        goto out;
    for (size_t i = 0; i < nrefs; i++) {
        int c = check_reference(s, ident, refs[i], ref_kinds[i], ref_types[i], err, errlen);
        if (c) {
            code = c;
            goto out;
        }
    }
    canon = json_dumps(payload, JSON_SORT_KEYS | JSON_COMPACT);
    tmp = json_pack("{s:s,s:s,s:O}", "Identifier", ident, "Type", type, "Payload", payload);
    whole = tmp ? json_dumps(tmp, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    if (!canon || !whole) {
        util_set_err(err, errlen, "out of memory");
        code = 503;
        goto out;
    }
    char token[33];
    sha256_hex32(whole, strlen(whole), token);

    declaration_t old;
    int exists = s->ops->decl_get(s, ident, &old);
    if (exists == STORE_ERR) {
        util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
        code = 503;
        goto out;
    }
    if (exists == STORE_OK) {
        /* The kind is part of the device's path to it; changing it under the
         * same Identifier would leave devices holding a stale kind. */
        int kind_changed = strcmp(old.kind, kind) != 0;
        declaration_free(&old);
        if (kind_changed) {
            util_set_err(err, errlen, "declaration '%.64s' exists as another kind; delete it first", ident);
            goto out;
        }
    }
    declaration_t d = {.identifier = (char *)ident,
                       .type = (char *)type,
                       .kind = (char *)kind,
                       .payload_json = canon,
                       .server_token = token};
    int ch = 0;
    int rc = s->ops->decl_put(s, &d, (const char *const *)refs, nrefs, util_now(), &ch);
    if (rc == STORE_NOTFOUND) {
        util_set_err(err, errlen, "dangling reference: a referenced declaration was deleted meanwhile");
        goto out;
    }
    if (rc != STORE_OK) {
        util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
        code = 503;
        goto out;
    }
    if (changed)
        *changed = ch;
    code = exists == STORE_NOTFOUND ? 201 : 200;
out:
    ddm_schema_refs_free(refs, ref_kinds, ref_types, nrefs);
    free(canon);
    free(whole);
    json_decref(tmp);
    json_decref(payload);
    return code;
}

json_t *ddm_declaration_json(const declaration_t *d)
{
    json_t *payload = json_loads(d->payload_json ? d->payload_json : "{}", 0, NULL);
    if (!payload)
        return NULL;
    return json_pack("{s:s,s:s,s:s,s:o}", "Type", d->type, "Identifier", d->identifier, "ServerToken",
                     d->server_token, "Payload", payload);
}

/* ---- effective declarations ------------------------------------------------------ */

typedef struct {
    declaration_t *v;
    size_t n, cap;
    int oom;
} decl_vec_t;

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static int collect_decl(void *ctx, const declaration_t *d)
{
    decl_vec_t *v = ctx;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 16;
        declaration_t *g = realloc(v->v, cap * sizeof *g);
        if (!g) {
            v->oom = 1;
            return 1;
        }
        v->v = g;
        v->cap = cap;
    }
    declaration_t *c = &v->v[v->n];
    memset(c, 0, sizeof *c);
    c->identifier = dup_or_null(d->identifier);
    c->type = dup_or_null(d->type);
    c->kind = dup_or_null(d->kind);
    c->payload_json = dup_or_null(d->payload_json);
    c->server_token = dup_or_null(d->server_token);
    c->created_at = d->created_at;
    c->updated_at = d->updated_at;
    v->n++;
    if (!c->identifier || !c->kind || !c->server_token) {
        v->oom = 1;
        return 1;
    }
    return 0;
}

static void decl_vec_free(decl_vec_t *v)
{
    for (size_t i = 0; i < v->n; i++)
        declaration_free(&v->v[i]);
    free(v->v);
    memset(v, 0, sizeof *v);
}

/* Token over "kind/Identifier=ServerToken\n" lines, in store order. */
typedef struct {
    char *buf;
    size_t len, cap;
    size_t count;
    int oom;
} token_acc_t;

static int acc_line(void *ctx, const declaration_t *d)
{
    token_acc_t *a = ctx;
    size_t need = strlen(d->kind) + strlen(d->identifier) + strlen(d->server_token) + 4;
    if (a->len + need > a->cap) {
        size_t cap = a->cap ? a->cap : 1024;
        while (cap < a->len + need)
            cap *= 2;
        char *g = realloc(a->buf, cap);
        if (!g) {
            a->oom = 1;
            return 1;
        }
        a->buf = g;
        a->cap = cap;
    }
    a->len += (size_t)snprintf(a->buf + a->len, a->cap - a->len, "%s/%s=%s\n", d->kind, d->identifier,
                               d->server_token);
    a->count++;
    return 0;
}

static void token_of_decls(const declaration_t *v, size_t n, char token[33])
{
    token_acc_t a = {0};
    for (size_t i = 0; i < n && !a.oom; i++)
        acc_line(&a, &v[i]);
    ddm_declarations_token(a.buf, a.len, token);
    free(a.buf);
}

int ddm_effective_for(store_t *s, const char *enrollment_id, declaration_t **decls, size_t *n, char token[33])
{
    *decls = NULL;
    *n = 0;
    char *sets = NULL;
    if (s->ops->ddm_enrollment_sets(s, enrollment_id, &sets) != STORE_OK)
        return STORE_ERR;
    decl_vec_t v = {0};
    int rc = *sets ? s->ops->ddm_effective(s, sets, collect_decl, &v) : STORE_OK;
    free(sets);
    if (rc != STORE_OK || v.oom) {
        decl_vec_free(&v);
        return STORE_ERR;
    }
    token_of_decls(v.v, v.n, token);
    *decls = v.v;
    *n = v.n;
    return STORE_OK;
}

static void format_time(int64_t t, char out[32])
{
    time_t tt = (time_t)t;
    struct tm tm;
    if (!gmtime_r(&tt, &tm) || strftime(out, 32, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        snprintf(out, 32, "1970-01-01T00:00:00Z");
}

json_t *ddm_tokens_response(store_t *s, const char *enrollment_id)
{
    declaration_t *decls;
    size_t n;
    char token[33];
    if (ddm_effective_for(s, enrollment_id, &decls, &n, token) != STORE_OK)
        return NULL;
    for (size_t i = 0; i < n; i++)
        declaration_free(&decls[i]);
    free(decls);
    /* Timestamp: when this token came about, as far as orchard knows (the
     * sync that computed it); now when no sync has computed it yet. */
    int64_t when = util_now();
    ddm_state_t st;
    int rc = s->ops->ddm_state_get(s, enrollment_id, &st);
    if (rc == STORE_ERR)
        return NULL;
    if (rc == STORE_OK) {
        if (st.token && strcmp(st.token, token) == 0 && st.token_changed_at > 0)
            when = st.token_changed_at;
        ddm_state_free(&st);
    }
    char ts[32];
    format_time(when, ts);
    return json_pack("{s:{s:s,s:s}}", "SyncTokens", "DeclarationsToken", token, "Timestamp", ts);
}

/* ---- sync ---------------------------------------------------------------------------- */

/* What a push needs of an enrollment, copied out of the candidate scan. */
typedef struct {
    char *id;
    char *sets;
    char *old_token;
    int sync_pending;
    enrollment_t push; /* id, topic, push_token, push_magic, push_token_invalid */
    char new_token[33];
} cand_t;

typedef struct {
    cand_t *v;
    size_t n, cap;
    int oom;
} cand_vec_t;

static int copy_push_fields(enrollment_t *dst, const enrollment_t *src)
{
    memset(dst, 0, sizeof *dst);
    dst->id = dup_or_null(src->id);
    dst->topic = dup_or_null(src->topic);
    dst->push_magic = dup_or_null(src->push_magic);
    dst->last_push_error = dup_or_null(src->last_push_error);
    dst->push_token_invalid = src->push_token_invalid;
    if (src->push_token && src->push_token_len) {
        dst->push_token = malloc(src->push_token_len);
        if (!dst->push_token)
            return -1;
        memcpy(dst->push_token, src->push_token, src->push_token_len);
        dst->push_token_len = src->push_token_len;
    }
    return dst->id ? 0 : -1;
}

static int collect_candidate(void *ctx, const ddm_candidate_t *c)
{
    cand_vec_t *v = ctx;
    if (v->n == v->cap) {
        size_t cap = v->cap ? 2 * v->cap : 256;
        cand_t *g = realloc(v->v, cap * sizeof *g);
        if (!g) {
            v->oom = 1;
            return 1;
        }
        v->v = g;
        v->cap = cap;
    }
    cand_t *x = &v->v[v->n];
    memset(x, 0, sizeof *x);
    v->n++;
    x->id = dup_or_null(c->enrollment->id);
    x->sets = dup_or_null(c->sets ? c->sets : "");
    x->old_token = dup_or_null(c->token);
    x->sync_pending = c->sync_pending;
    if (!x->id || !x->sets || (c->token && !x->old_token) || copy_push_fields(&x->push, c->enrollment) != 0) {
        v->oom = 1;
        return 1;
    }
    return 0;
}

static void cand_vec_free(cand_vec_t *v)
{
    for (size_t i = 0; i < v->n; i++) {
        free(v->v[i].id);
        free(v->v[i].sets);
        free(v->v[i].old_token);
        enrollment_free(&v->v[i].push);
    }
    free(v->v);
    memset(v, 0, sizeof *v);
}

/* Tokens per distinct set list: many devices share one (an "all" set, a
 * group), so each list's effective declarations are read once per sync. */
typedef struct {
    char *sets;
    char token[33];
    int empty;
} tok_entry_t;

typedef struct {
    tok_entry_t *slots;
    size_t cap, n;
} tok_cache_t;

static size_t hash_str(const char *s)
{
    size_t h = 1469598103934665603ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return h;
}

static tok_entry_t *cache_slot(tok_cache_t *c, const char *sets)
{
    if (c->n * 2 >= c->cap) {
        size_t cap = c->cap ? 2 * c->cap : 64;
        tok_entry_t *g = calloc(cap, sizeof *g);
        if (!g)
            return NULL;
        for (size_t i = 0; i < c->cap; i++) {
            if (!c->slots[i].sets)
                continue;
            size_t h = hash_str(c->slots[i].sets) & (cap - 1);
            while (g[h].sets)
                h = (h + 1) & (cap - 1);
            g[h] = c->slots[i];
        }
        free(c->slots);
        c->slots = g;
        c->cap = cap;
    }
    size_t h = hash_str(sets) & (c->cap - 1);
    while (c->slots[h].sets && strcmp(c->slots[h].sets, sets) != 0)
        h = (h + 1) & (c->cap - 1);
    return &c->slots[h];
}

static void cache_free(tok_cache_t *c)
{
    for (size_t i = 0; i < c->cap; i++)
        free(c->slots[i].sets);
    free(c->slots);
    memset(c, 0, sizeof *c);
}

/* Token of a set list (cached); *empty = no declarations at all. */
static int token_for_sets(store_t *s, tok_cache_t *cache, const char *sets, char token[33], int *empty)
{
    tok_entry_t *e = cache_slot(cache, sets);
    if (!e)
        return STORE_ERR;
    if (!e->sets) {
        token_acc_t a = {0};
        int rc = *sets ? s->ops->ddm_effective(s, sets, acc_line, &a) : STORE_OK;
        if (rc != STORE_OK || a.oom) {
            free(a.buf);
            return STORE_ERR;
        }
        ddm_declarations_token(a.buf, a.len, e->token);
        e->empty = a.count == 0;
        free(a.buf);
        if (!(e->sets = strdup(sets)))
            return STORE_ERR;
        cache->n++;
    }
    memcpy(token, e->token, 33);
    *empty = e->empty;
    return STORE_OK;
}

/* The sync command as stored: Data is added when it is handed out. */
static int sync_command(command_t *c, char uuid[80], unsigned char **body, size_t *len)
{
    char u[37];
    if (util_uuid4(u) != 0)
        return -1;
    snprintf(uuid, 80, "%s%s", DDM_SYNC_UUID_PREFIX, u);
    plist_t *root = plist_new_dict(), *cmd = plist_new_dict();
    if (!root || !cmd) {
        plist_free(root);
        plist_free(cmd);
        return -1;
    }
    plist_dict_set(cmd, "RequestType", plist_new_string("DeclarativeManagement"));
    plist_dict_set(root, "Command", cmd);
    plist_dict_set(root, "CommandUUID", plist_new_string(uuid));
    char *xml = plist_to_xml(root, len);
    plist_free(root);
    if (!xml)
        return -1;
    *body = (unsigned char *)xml;
    memset(c, 0, sizeof *c);
    c->uuid = uuid;
    c->request_type = "DeclarativeManagement";
    c->body = *body;
    c->body_len = *len;
    c->created_at = util_now();
    return 0;
}

#define SYNC_BATCH 1000

/* Stores new tokens for changed[0..n) and queues/pushes. */
static int queue_changed(store_t *s, pusher_t *pusher, cand_t **changed, size_t n, ddm_sync_report_t *r, char *err,
                         size_t errlen)
{
    const char **ids = calloc(SYNC_BATCH, sizeof *ids);
    const char **toks = calloc(SYNC_BATCH, sizeof *toks);
    int *queued = calloc(SYNC_BATCH, sizeof *queued);
    int rc = 0;
    if (!ids || !toks || !queued) {
        util_set_err(err, errlen, "out of memory");
        rc = -1;
        goto out;
    }
    for (size_t off = 0; off < n; off += SYNC_BATCH) {
        size_t k = n - off < SYNC_BATCH ? n - off : SYNC_BATCH;
        for (size_t i = 0; i < k; i++) {
            ids[i] = changed[off + i]->id;
            toks[i] = changed[off + i]->new_token;
            queued[i] = 0;
        }
        command_t cmd;
        char uuid[80];
        unsigned char *body = NULL;
        size_t len = 0;
        if (sync_command(&cmd, uuid, &body, &len) != 0) {
            util_set_err(err, errlen, "out of memory");
            rc = -1;
            goto out;
        }
        int src = s->ops->ddm_sync_queue(s, &cmd, ids, toks, k, util_now(), queued);
        free(body);
        if (src != STORE_OK) {
            util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
            rc = -1;
            goto out;
        }
        for (size_t i = 0; i < k; i++) {
            if (!queued[i])
                continue;
            r->queued++;
            char perr[256];
            if (pusher && pusher_push(pusher, &changed[off + i]->push, perr, sizeof perr) == 0)
                r->pushed++;
        }
    }
out:
    free(ids);
    free(toks);
    free(queued);
    return rc;
}

int ddm_sync(store_t *s, pusher_t *pusher, ddm_sync_report_t *report, char *err, size_t errlen)
{
    ddm_sync_report_t r = {0};
    int64_t t0 = util_now_us();
    cand_vec_t v = {0};
    tok_cache_t cache = {0};
    cand_t **changed = NULL;
    int rc = -1;
    if (s->ops->ddm_candidates(s, collect_candidate, &v) != STORE_OK || v.oom) {
        util_set_err(err, errlen, v.oom ? "out of memory" : "storage error: %s", s->ops->errmsg(s));
        goto out;
    }
    r.examined = v.n;
    changed = calloc(v.n ? v.n : 1, sizeof *changed);
    if (!changed) {
        util_set_err(err, errlen, "out of memory");
        goto out;
    }
    size_t nch = 0;
    for (size_t i = 0; i < v.n; i++) {
        cand_t *c = &v.v[i];
        int empty;
        if (token_for_sets(s, &cache, c->sets, c->new_token, &empty) != STORE_OK) {
            util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
            goto out;
        }
        /* A device that never had declarations and still has none needs no
         * DDM at all; one that had some must hear that they are gone. */
        if (c->old_token ? strcmp(c->old_token, c->new_token) == 0 : empty)
            continue;
        changed[nch++] = c;
    }
    r.changed = nch;
    rc = queue_changed(s, pusher, changed, nch, &r, err, errlen);
out:
    r.seconds = (double)(util_now_us() - t0) / 1e6;
    if (rc == 0 && r.changed)
        log_msg(LOG_INFO, "ddm sync: %zu enrollments examined, %zu tokens changed, %zu commands queued, %zu pushed "
                          "(%.3f s)",
                r.examined, r.changed, r.queued, r.pushed, r.seconds);
    if (report)
        *report = r;
    free(changed);
    cache_free(&cache);
    cand_vec_free(&v);
    return rc;
}

int ddm_sync_enrollment(store_t *s, pusher_t *pusher, const char *enrollment_id, char *err, size_t errlen)
{
    enrollment_t e;
    int rc = s->ops->enrollment_get(s, enrollment_id, &e);
    if (rc == STORE_NOTFOUND)
        return 0;
    if (rc != STORE_OK) {
        util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
        return -1;
    }
    cand_t c;
    memset(&c, 0, sizeof c);
    tok_cache_t cache = {0};
    ddm_state_t st;
    memset(&st, 0, sizeof st);
    int out = -1;
    if (strcmp(e.state, ENR_STATE_ACTIVE) != 0) {
        out = 0;
        goto done;
    }
    c.id = e.id;
    if (s->ops->ddm_enrollment_sets(s, enrollment_id, &c.sets) != STORE_OK)
        goto storage;
    rc = s->ops->ddm_state_get(s, enrollment_id, &st);
    if (rc == STORE_ERR)
        goto storage;
    int empty;
    if (token_for_sets(s, &cache, c.sets, c.new_token, &empty) != STORE_OK)
        goto storage;
    if (st.token ? strcmp(st.token, c.new_token) == 0 : empty) {
        out = 0;
        goto done;
    }
    c.push = e; /* borrowed for the push; freed once below via e */
    cand_t *one = &c;
    ddm_sync_report_t r = {0};
    out = queue_changed(s, pusher, &one, 1, &r, err, errlen);
    memset(&c.push, 0, sizeof c.push);
    goto done;
storage:
    util_set_err(err, errlen, "storage error: %s", s->ops->errmsg(s));
done:
    free(c.sets);
    ddm_state_free(&st);
    cache_free(&cache);
    enrollment_free(&e);
    return out;
}

int ddm_command_for_device(store_t *s, const char *enrollment_id, command_t *cmd)
{
    if (!cmd->uuid || strncmp(cmd->uuid, DDM_SYNC_UUID_PREFIX, strlen(DDM_SYNC_UUID_PREFIX)) != 0 ||
        !cmd->request_type || strcmp(cmd->request_type, "DeclarativeManagement") != 0)
        return 0;
    json_t *tokens = ddm_tokens_response(s, enrollment_id);
    if (!tokens)
        return -1;
    char *json = json_dumps(tokens, JSON_COMPACT);
    json_decref(tokens);
    if (!json)
        return -1;
    plist_t *root = plist_new_dict(), *c = plist_new_dict();
    int ok = root && c;
    if (ok) {
        plist_dict_set(c, "RequestType", plist_new_string("DeclarativeManagement"));
        plist_dict_set(c, "Data", plist_new_data((const unsigned char *)json, strlen(json)));
        plist_dict_set(root, "Command", c);
        c = NULL;
        plist_dict_set(root, "CommandUUID", plist_new_string(cmd->uuid));
    }
    free(json);
    size_t len = 0;
    char *xml = ok ? plist_to_xml(root, &len) : NULL;
    plist_free(root);
    plist_free(c);
    if (!xml)
        return -1;
    free(cmd->body);
    cmd->body = (unsigned char *)xml;
    cmd->body_len = len;
    return s->ops->ddm_handed_out(s, enrollment_id, util_now()) == STORE_ERR ? -1 : 0;
}
