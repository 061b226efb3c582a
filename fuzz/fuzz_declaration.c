/* libFuzzer target: declarations as admins send them, through
 * ddm_declaration_put (shape and Identifier checks, ddm_schema_check against
 * Apple's compiled-in schemas, reference and cycle checks, canonicalisation,
 * ServerToken).
 *
 * The input is JSON: one declaration, or an array of up to 16 declarations
 * put in order, so later ones can reference earlier ones (and try to close
 * cycles or change a declaration's kind). They go into a small in-memory
 * store (the four declaration ops ddm_declaration_put uses), emptied for
 * every input, so no database grows while fuzzing.
 *
 * For every declaration accepted, the harness checks:
 * - the stored payload is canonical: parsing and re-printing it (sorted
 *   keys, compact) gives the same text;
 * - the ServerToken is the first 32 hex digits of SHA-256 over the canonical
 *   {"Identifier","Payload","Type"} text, computed here independently;
 * - the payload passes ddm_schema_check on its own, and
 *   ddm_declaration_json renders the stored row;
 * - putting the same declaration again answers 200 with changed = 0.
 * A refused declaration must come with a message and change nothing.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/evp.h>

#include "ddm.h"
#include "ddm_schema.h"
#include "util.h"

#define MAX_DECLS 16
#define MAX_REFS 4096

/* ---- in-memory declaration store ---------------------------------------------------- */

typedef struct {
    declaration_t d;
} row_t;

typedef struct {
    char *from, *to; /* `from` references `to` */
} edge_t;

static row_t rows[MAX_DECLS];
static size_t nrows;
static edge_t edges[MAX_REFS];
static size_t nedges;

static row_t *row_find(const char *id)
{
    for (size_t i = 0; i < nrows; i++)
        if (strcmp(rows[i].d.identifier, id) == 0)
            return &rows[i];
    return NULL;
}

static char *dup(const char *s)
{
    char *c = s ? strdup(s) : NULL;
    if (s && !c)
        abort();
    return c;
}

static void decl_copy(declaration_t *dst, const declaration_t *src)
{
    dst->identifier = dup(src->identifier);
    dst->type = dup(src->type);
    dst->kind = dup(src->kind);
    dst->payload_json = dup(src->payload_json);
    dst->server_token = dup(src->server_token);
    dst->created_at = src->created_at;
    dst->updated_at = src->updated_at;
}

static void mem_reset(void)
{
    for (size_t i = 0; i < nrows; i++)
        declaration_free(&rows[i].d);
    for (size_t i = 0; i < nedges; i++) {
        free(edges[i].from);
        free(edges[i].to);
    }
    nrows = nedges = 0;
}

static int mem_decl_get(store_t *s, const char *identifier, declaration_t *out)
{
    (void)s;
    const row_t *r = row_find(identifier);
    if (!r)
        return STORE_NOTFOUND;
    decl_copy(out, &r->d);
    return STORE_OK;
}

static int mem_decl_put(store_t *s, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now,
                        int *changed)
{
    (void)s;
    for (size_t i = 0; i < nrefs; i++)
        if (!row_find(refs[i]))
            return STORE_NOTFOUND;
    row_t *r = row_find(d->identifier);
    if (r && strcmp(r->d.server_token, d->server_token) == 0) {
        *changed = 0;
        return STORE_OK;
    }
    if (!r && nrows == MAX_DECLS)
        return STORE_ERR;
    if (nedges + nrefs > MAX_REFS)
        return STORE_ERR;
    int64_t created = r ? r->d.created_at : now;
    if (r)
        declaration_free(&r->d);
    else
        r = &rows[nrows++];
    decl_copy(&r->d, d);
    r->d.created_at = created;
    r->d.updated_at = now;
    /* Replace this declaration's outgoing edges. */
    size_t kept = 0;
    for (size_t i = 0; i < nedges; i++) {
        if (strcmp(edges[i].from, d->identifier) == 0) {
            free(edges[i].from);
            free(edges[i].to);
        } else {
            edges[kept++] = edges[i];
        }
    }
    nedges = kept;
    for (size_t i = 0; i < nrefs; i++) {
        edges[nedges].from = dup(d->identifier);
        edges[nedges].to = dup(refs[i]);
        nedges++;
    }
    *changed = 1;
    return STORE_OK;
}

static int mem_decl_referrers(store_t *s, const char *identifier, name_cb cb, void *ctx)
{
    (void)s;
    for (size_t i = 0; i < nedges; i++)
        if (strcmp(edges[i].to, identifier) == 0 && cb(ctx, edges[i].from) != 0)
            break;
    return STORE_OK;
}

static const char *mem_errmsg(store_t *s)
{
    (void)s;
    return "in-memory store full";
}

static struct store_ops mem_ops;
static store_t mem_store = {&mem_ops};

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mem_ops.decl_get = mem_decl_get;
    mem_ops.decl_put = mem_decl_put;
    mem_ops.decl_referrers = mem_decl_referrers;
    mem_ops.errmsg = mem_errmsg;
    return 0;
}

/* ---- checks ------------------------------------------------------------------------------ */

static void expect_token(const declaration_t *d)
{
    json_t *payload = json_loads(d->payload_json, 0, NULL);
    if (!json_is_object(payload))
        abort();
    char *again = json_dumps(payload, JSON_SORT_KEYS | JSON_COMPACT);
    if (!again || strcmp(again, d->payload_json) != 0) {
        fprintf(stderr, "payload not canonical:\n%s\n%s\n", d->payload_json, again ? again : "(null)");
        abort();
    }
    free(again);
    if (ddm_schema_check(d->type, payload, NULL, NULL, NULL, NULL, NULL, 0) != 0)
        abort();
    json_t *whole = json_pack("{s:s,s:s,s:O}", "Identifier", d->identifier, "Type", d->type, "Payload", payload);
    char *text = whole ? json_dumps(whole, JSON_SORT_KEYS | JSON_COMPACT) : NULL;
    if (!text)
        abort();
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    char hex[65];
    if (!EVP_Digest(text, strlen(text), md, &mdlen, EVP_sha256(), NULL) || mdlen != 32)
        abort();
    util_hex(md, 16, hex);
    if (strlen(d->server_token) != 32 || strcmp(hex, d->server_token) != 0) {
        fprintf(stderr, "ServerToken %s, expected %s\n", d->server_token, hex);
        abort();
    }
    free(text);
    json_decref(whole);
    json_t *rendered = ddm_declaration_json(d);
    if (!rendered)
        abort();
    json_decref(rendered);
    json_decref(payload);
}

static void put_one(const json_t *decl)
{
    char err[512] = "";
    int changed = -1;
    size_t rows_before = nrows;
    int code = ddm_declaration_put(&mem_store, decl, &changed, err, sizeof err);
    if (code != 200 && code != 201) {
        if ((code != 400 && code != 503) || err[0] == '\0' || changed != 0 || nrows != rows_before)
            abort();
        return;
    }
    if ((code == 201) != (nrows == rows_before + 1) || (code == 201 && !changed))
        abort();
    const row_t *r = row_find(json_string_value(json_object_get(decl, "Identifier")));
    if (!r)
        abort();
    expect_token(&r->d);
    /* The same content again is unchanged, with the same token. */
    char *token = dup(r->d.server_token);
    if (ddm_declaration_put(&mem_store, decl, &changed, err, sizeof err) != 200 || changed != 0 ||
        strcmp(row_find(json_string_value(json_object_get(decl, "Identifier")))->d.server_token, token) != 0)
        abort();
    free(token);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_t *root = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!root)
        return 0;
    if (json_is_array(root)) {
        for (size_t i = 0; i < json_array_size(root) && i < MAX_DECLS; i++)
            put_one(json_array_get(root, i));
    } else {
        put_one(root);
    }
    json_decref(root);
    mem_reset();
    return 0;
}
