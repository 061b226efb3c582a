/* Declaration payload checks and schema lookups over the compiled-in
 * tables (ddm_schema_table.c, generated from Apple's YAML).
 *
 * JSON encoding of the schema's plist-flavoured types, as declarations are
 * JSON: <integer> a JSON integer, <real> any JSON number, <boolean>
 * true/false, <string> a string, <data> a base64 string, <date> an ISO-8601
 * date-time string (YYYY-MM-DDTHH:MM:SS...), <dictionary> an object,
 * <array> an array, <any> anything. A <dictionary> whose schema lists no
 * subkeys takes any keys (e.g. StatusReason details); an <array> without an
 * item spec takes any items. A value of the right type then meets the key's
 * range, format and repetition rules (ddm_schema_rules.c).
 */
#include "ddm_schema.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ddm_schema_rules.h"
#include "ddm_schema_table.h"
#include "util.h"

/* ---- lookups ---------------------------------------------------------------------- */

static int cmp_declaration(const void *key, const void *elem)
{
    return strcmp(key, ((const ds_declaration_t *)elem)->type);
}

static int cmp_string(const void *key, const void *elem)
{
    return strcmp(key, *(const char *const *)elem);
}

static int cmp_support(const void *key, const void *elem)
{
    return strcmp(key, ((const ds_os_support_t *)elem)->name);
}

const ds_declaration_t *ddm_schema_find(const char *type)
{
    if (!type)
        return NULL;
    return bsearch(type, ddm_schema_declarations, ddm_schema_ndeclarations, sizeof ddm_schema_declarations[0],
                   cmp_declaration);
}

int ddm_status_item_known(const char *name)
{
    return name && bsearch(name, ddm_schema_status_items, ddm_schema_nstatus_items, sizeof ddm_schema_status_items[0],
                           cmp_string) != NULL;
}

static int on_watchos(const ds_os_support_t *table, size_t n, const char *name)
{
    const ds_os_support_t *s = name ? bsearch(name, table, n, sizeof table[0], cmp_support) : NULL;
    if (!s)
        return -1;
    return s->watchos && strcmp(s->watchos, "n/a") != 0;
}

int mdm_command_on_watchos(const char *request_type)
{
    return on_watchos(ddm_schema_commands, ddm_schema_ncommands, request_type);
}

int mdm_payload_on_watchos(const char *payload_type)
{
    return on_watchos(ddm_schema_payloads, ddm_schema_npayloads, payload_type);
}

/* The comma-joined text of a key's assettypes list (the generator shares
 * one array per distinct list, so the address identifies it). */
static const char *assettypes_joined(const char *const *types)
{
    for (size_t i = 0; i < ddm_schema_nassetlists; i++)
        if (ddm_schema_assetlists[i].types == types)
            return ddm_schema_assetlists[i].joined;
    return types && types[0] ? types[0] : ""; /* unreachable with a generated table */
}

/* ---- payload checks ---------------------------------------------------------------- */

typedef struct {
    const char *type; /* declaration type, for messages */
    char ***refs;
    const char ***kinds;
    const char ***assettypes;
    size_t *nrefs;
    size_t cap; /* entries allocated in the three arrays */
    char *err;
    size_t errlen;
} check_t;

/* What a string value names, if anything: inherited from an array key
 * (AnchorCertificateAssetReferences: [ "id", ... ]) or the key's own. */
typedef struct {
    const char *const *assettypes;
    int configurations;
} refspec_t;

/* Appends one reference. The arrays grow geometrically (cap counts what is
 * allocated; the caller's arrays are taken as exactly full), so a payload
 * naming many identifiers costs linear time; duplicates are removed once at
 * the end (dedupe_refs). */
static int add_ref(check_t *c, const char *id, const char *kind, const char *assettypes)
{
    if (!c->refs || !c->kinds || !c->assettypes || !c->nrefs)
        return 0;
    size_t n = *c->nrefs;
    if (n == c->cap) {
        size_t cap = n < 8 ? 8 : 2 * n;
        char **refs = realloc(*c->refs, cap * sizeof *refs);
        if (refs)
            *c->refs = refs;
        const char **kinds = refs ? realloc(*c->kinds, cap * sizeof *kinds) : NULL;
        if (kinds)
            *c->kinds = kinds;
        const char **types = kinds ? realloc(*c->assettypes, cap * sizeof *types) : NULL;
        if (types)
            *c->assettypes = types;
        if (!types) {
            util_set_err(c->err, c->errlen, "out of memory");
            return -1;
        }
        c->cap = cap;
    }
    if (!((*c->refs)[n] = strdup(id))) {
        util_set_err(c->err, c->errlen, "out of memory");
        return -1;
    }
    (*c->kinds)[n] = kind;
    (*c->assettypes)[n] = assettypes;
    *c->nrefs = n + 1;
    return 0;
}

typedef struct {
    const char *id, *kind;
    size_t index;
} ref_order_t;

static int cmp_ref_order(const void *a, const void *b)
{
    const ref_order_t *x = a, *y = b;
    int d = strcmp(x->id, y->id);
    if (!d)
        d = strcmp(x->kind, y->kind);
    return d ? d : (x->index > y->index) - (x->index < y->index);
}

/* One entry per referenced declaration (identifier and kind), however often
 * the payload names it; the first occurrence stays, order is kept. */
static int dedupe_refs(check_t *c)
{
    if (!c->refs || !c->kinds || !c->assettypes || !c->nrefs)
        return 0;
    size_t n = *c->nrefs;
    if (n < 2)
        return 0;
    ref_order_t *order = malloc(n * sizeof *order);
    unsigned char *drop = calloc(n, 1);
    if (!order || !drop) {
        free(order);
        free(drop);
        util_set_err(c->err, c->errlen, "out of memory");
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (ref_order_t){(*c->refs)[i], (*c->kinds)[i], i};
    qsort(order, n, sizeof *order, cmp_ref_order);
    for (size_t i = 1; i < n; i++)
        if (strcmp(order[i].id, order[i - 1].id) == 0 && strcmp(order[i].kind, order[i - 1].kind) == 0)
            drop[order[i].index] = 1;
    free(order);
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        if (drop[i]) {
            free((*c->refs)[i]);
            continue;
        }
        (*c->refs)[kept] = (*c->refs)[i];
        (*c->kinds)[kept] = (*c->kinds)[i];
        (*c->assettypes)[kept++] = (*c->assettypes)[i];
    }
    free(drop);
    *c->nrefs = kept;
    return 0;
}

static int fail(check_t *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(check_t *c, const char *fmt, ...)
{
    if (c->err && c->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static const char *type_phrase(ds_type_t t)
{
    switch (t) {
    case DS_STRING: return "a string";
    case DS_INTEGER: return "an integer";
    case DS_REAL: return "a number";
    case DS_BOOLEAN: return "a boolean";
    case DS_ARRAY: return "an array";
    case DS_DICTIONARY: return "an object";
    case DS_DATA: return "a base64 string";
    case DS_DATE: return "an ISO-8601 date string";
    case DS_ANY: break;
    }
    return "any value";
}

/* YYYY-MM-DDTHH:MM:SS at the start (a zone or fraction may follow). */
static int iso8601_datetime(const char *s)
{
    static const char shape[] = "dddd-dd-ddTdd:dd:dd";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? !isdigit((unsigned char)s[i]) : s[i] != shape[i])
            return 0;
    }
    return 1;
}

static int type_ok(ds_type_t t, const json_t *v)
{
    switch (t) {
    case DS_STRING: return json_is_string(v);
    case DS_INTEGER: return json_is_integer(v);
    case DS_REAL: return json_is_number(v);
    case DS_BOOLEAN: return json_is_boolean(v);
    case DS_ARRAY: return json_is_array(v);
    case DS_DICTIONARY: return json_is_object(v);
    case DS_DATA: {
        if (!json_is_string(v))
            return 0;
        size_t len;
        unsigned char *bytes = util_base64_decode(json_string_value(v), json_string_length(v), &len);
        free(bytes);
        return bytes != NULL;
    }
    case DS_DATE: return json_is_string(v) && iso8601_datetime(json_string_value(v));
    case DS_ANY: return 1;
    }
    return 0;
}

/* The rangelist compares text: a string as is, other scalars as JSON prints them. */
static int in_rangelist(const char *const *list, const json_t *v, char *text, size_t textlen)
{
    if (json_is_string(v))
        snprintf(text, textlen, "%s", json_string_value(v));
    else if (json_is_integer(v))
        snprintf(text, textlen, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else if (json_is_real(v))
        snprintf(text, textlen, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        snprintf(text, textlen, "%s", json_is_true(v) ? "true" : "false");
    else
        return 1;
    for (size_t i = 0; list[i]; i++)
        if (strcmp(list[i], text) == 0)
            return 1;
    return 0;
}

static int check_object(check_t *c, const ds_key_t *keys, size_t nkeys, const json_t *obj, const char *path);

static int check_value(check_t *c, const ds_key_t *k, const json_t *v, const char *path, refspec_t inherited)
{
    if (!type_ok(k->type, v))
        return fail(c, "%s must be %s", path, type_phrase(k->type));
    if (k->rangelist) {
        char text[128];
        if (!in_rangelist(k->rangelist, v, text, sizeof text))
            return fail(c, "%s: '%.64s' is not an allowed value", path, text);
    }
    if (ddm_schema_rules_check(k, v, path, c->err, c->errlen) != 0)
        return -1;
    refspec_t ref = {k->assettypes ? k->assettypes : inherited.assettypes,
                     k->refers_configurations || inherited.configurations};
    if (json_is_string(v)) {
        if (ref.assettypes)
            return add_ref(c, json_string_value(v), "asset", assettypes_joined(ref.assettypes));
        if (ref.configurations)
            return add_ref(c, json_string_value(v), "configuration", NULL);
        return 0;
    }
    if (json_is_object(v) && k->type == DS_DICTIONARY && k->nsub > 0)
        return check_object(c, k->sub, k->nsub, v, path);
    if (json_is_array(v) && k->type == DS_ARRAY && k->nsub > 0) {
        size_t i;
        const json_t *item;
        json_array_foreach(v, i, item)
        {
            char item_path[512];
            snprintf(item_path, sizeof item_path, "%s[%zu]", path, i);
            if (check_value(c, &k->sub[0], item, item_path, ref) != 0)
                return -1;
        }
    }
    return 0;
}

static const ds_key_t *find_key(const ds_key_t *keys, size_t n, const char *name)
{
    const ds_key_t *any = NULL;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
        if (strcmp(keys[i].name, "ANY") == 0)
            any = &keys[i];
    }
    return any;
}

/* path is "Payload" or "Payload.A.B[2]"; messages about unknown keys name
 * the key below Payload ("unknown payload key 'Reference.Foo' for ..."). */
static int check_object(check_t *c, const ds_key_t *keys, size_t nkeys, const json_t *obj, const char *path)
{
    const char *below = strchr(path, '.');
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        const ds_key_t *k = find_key(keys, nkeys, key);
        if (!k) {
            if (below)
                return fail(c, "unknown payload key '%s.%.100s' for %s", below + 1, key, c->type);
            return fail(c, "unknown payload key '%.100s' for %s", key, c->type);
        }
        char key_path[512];
        snprintf(key_path, sizeof key_path, "%s.%.100s", path, key);
        if (check_value(c, k, v, key_path, (refspec_t){NULL, 0}) != 0)
            return -1;
    }
    for (size_t i = 0; i < nkeys; i++)
        if (keys[i].required && strcmp(keys[i].name, "ANY") != 0 && !json_object_get(obj, keys[i].name))
            return fail(c, "%s.%s is required for %s", path, keys[i].name, c->type);
    return 0;
}

int ddm_schema_check(const char *type, const json_t *payload, char ***refs, const char ***ref_kinds,
                     const char ***ref_assettypes, size_t *nrefs, char *err, size_t errlen)
{
    check_t c = {type, refs, ref_kinds, ref_assettypes, nrefs, nrefs ? *nrefs : 0, err, errlen};
    const ds_declaration_t *d = ddm_schema_find(type);
    if (!d)
        return fail(&c, "unknown declaration type '%.200s'", type ? type : "");
    if (!json_is_object(payload))
        return fail(&c, "Payload for %s must be an object", type);
    size_t before = nrefs ? *nrefs : 0;
    if (check_object(&c, d->keys, d->nkeys, payload, "Payload") == 0 && dedupe_refs(&c) == 0)
        return 0;
    /* An invalid payload references nothing: drop what this call added. */
    if (refs && *refs && nrefs) {
        for (size_t i = before; i < *nrefs; i++)
            free((*refs)[i]);
        *nrefs = before;
    }
    return -1;
}

void ddm_schema_refs_free(char **refs, const char **ref_kinds, const char **ref_assettypes, size_t n)
{
    for (size_t i = 0; refs && i < n; i++)
        free(refs[i]);
    free(refs);
    free(ref_kinds);
    free(ref_assettypes);
}
