/* DDM status reports (see ddm_status.h). */
#include "ddm_status.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ddm.h"
#include "ddm_schema.h"
#include "log.h"

#define DECLARATIONS_ITEM "management.declarations"

/* Parser state: the report being built and where errors go. */
typedef struct {
    ddm_status_report_t *out;
    char *err;
    size_t errlen;
} report_t;

void ddm_status_report_free(ddm_status_report_t *r)
{
    if (!r)
        return;
    for (size_t i = 0; i < r->nitems; i++) {
        free(r->items[i].name);
        json_decref(r->items[i].value);
    }
    free(r->items);
    for (size_t i = 0; i < r->ndecls; i++)
        ddm_decl_status_free(&r->decls[i]);
    free(r->decls);
    free(r->errors_json);
    memset(r, 0, sizeof *r);
}

static int fail(report_t *r, const char *fmt, const char *a, const char *b)
{
    snprintf(r->err, r->errlen, fmt, a, b);
    return -1;
}

static int add_item(report_t *p, const char *name, json_t *value)
{
    ddm_status_report_t *r = p->out;
    if (r->nitems == DDM_STATUS_MAX_ITEMS)
        return fail(p, "status report has more than %s status items%s", "1000", "");
    if (r->nitems == r->items_cap) {
        size_t cap = r->items_cap ? 2 * r->items_cap : 16;
        ddm_status_value_t *grown = realloc(r->items, cap * sizeof *grown);
        if (!grown)
            return fail(p, "out of memory%s%s", "", "");
        r->items = grown;
        r->items_cap = cap;
    }
    char *copy = strdup(name);
    if (!copy)
        return fail(p, "out of memory%s%s", "", "");
    r->items[r->nitems].name = copy;
    r->items[r->nitems].value = json_incref(value);
    r->items[r->nitems].keyed = 0;
    r->nitems++;
    return 0;
}

/* ---- management.declarations ------------------------------------------------ */

static const struct {
    const char *key;
    const char *kind;
} decl_arrays[] = {
    {"activations", DDM_KIND_ACTIVATION},
    {"configurations", DDM_KIND_CONFIGURATION},
    {"assets", DDM_KIND_ASSET},
    {"management", DDM_KIND_MANAGEMENT},
};

/* A required short string of one declaration element (identifier, server-token). */
static const char *decl_string(report_t *r, const json_t *el, const char *key, const char *where)
{
    const json_t *v = json_object_get(el, key);
    if (!json_is_string(v))
        return fail(r, "%s: '%s' must be a string", where, key), NULL;
    size_t n = json_string_length(v);
    if (n == 0 || n > DDM_IDENTIFIER_MAX || strlen(json_string_value(v)) != n)
        return fail(r, "%s: '%s' must be 1 to 64 octets", where, key), NULL;
    return json_string_value(v);
}

static int add_decl(report_t *r, const json_t *el, const char *kind, const char *where)
{
    if (!json_is_object(el))
        return fail(r, "%s: each element must be an object%s", where, "");
    const char *ident = decl_string(r, el, "identifier", where);
    const char *token = ident ? decl_string(r, el, "server-token", where) : NULL;
    if (!token)
        return -1;
    const json_t *active = json_object_get(el, "active");
    const json_t *valid = json_object_get(el, "valid");
    const json_t *reasons = json_object_get(el, "reasons");
    if (!json_is_boolean(active))
        return fail(r, "%s: 'active' of '%s' must be a boolean", where, ident);
    const char *vs = json_string_value(valid);
    if (!vs || (strcmp(vs, "valid") != 0 && strcmp(vs, "invalid") != 0 && strcmp(vs, "unknown") != 0))
        return fail(r, "%s: 'valid' of '%s' must be \"valid\", \"invalid\" or \"unknown\"", where, ident);
    if (reasons && !json_is_array(reasons))
        return fail(r, "%s: 'reasons' of '%s' must be an array", where, ident);
    size_t i;
    const json_t *reason;
    json_array_foreach(reasons, i, reason)
    {
        if (!json_is_object(reason) || !json_is_string(json_object_get(reason, "code")))
            return fail(r, "%s: each reason of '%s' must be an object with a 'code' string", where, ident);
    }
    ddm_status_report_t *o = r->out;
    if (o->ndecls == DDM_STATUS_MAX_DECLS)
        return fail(r, "%s: more than %s declarations", where, "10000");
    if (o->ndecls == o->decls_cap) {
        size_t cap = o->decls_cap ? 2 * o->decls_cap : 16;
        ddm_decl_status_t *grown = realloc(o->decls, cap * sizeof *grown);
        if (!grown)
            return fail(r, "out of memory%s%s", "", "");
        o->decls = grown;
        o->decls_cap = cap;
    }
    ddm_decl_status_t *d = &o->decls[o->ndecls];
    memset(d, 0, sizeof *d);
    d->identifier = strdup(ident);
    d->kind = strdup(kind);
    d->server_token = strdup(token);
    d->active = json_is_true(active);
    d->valid = strdup(vs);
    d->reasons_json = json_array_size(reasons) ? json_dumps(reasons, JSON_COMPACT) : NULL;
    o->ndecls++;
    if (!d->identifier || !d->kind || !d->server_token || !d->valid ||
        (json_array_size(reasons) && !d->reasons_json))
        return fail(r, "out of memory%s%s", "", "");
    return 0;
}

static int parse_declarations(report_t *r, const json_t *v)
{
    if (!json_is_object(v))
        return fail(r, "status item '%s' must be an object%s", DECLARATIONS_ITEM, "");
    r->out->has_declarations = 1;
    const char *key;
    const json_t *arr;
    json_object_foreach((json_t *)v, key, arr)
    {
        size_t k = 0;
        for (; k < sizeof decl_arrays / sizeof decl_arrays[0]; k++)
            if (strcmp(key, decl_arrays[k].key) == 0)
                break;
        if (k == sizeof decl_arrays / sizeof decl_arrays[0])
            return fail(r, "unknown key '%.64s' in %s", key, DECLARATIONS_ITEM);
        if (!json_is_array(arr))
            return fail(r, "%s.%s must be an array", DECLARATIONS_ITEM, key);
        char where[96];
        snprintf(where, sizeof where, "%s.%s", DECLARATIONS_ITEM, key);
        size_t i;
        const json_t *el;
        json_array_foreach(arr, i, el)
        {
            if (add_decl(r, el, decl_arrays[k].kind, where) != 0)
                return -1;
        }
    }
    return 0;
}

/* ---- StatusItems ---------------------------------------------------------------- */

static int flatten(report_t *r, const json_t *obj, const char *prefix, int depth)
{
    if (depth > DDM_STATUS_MAX_DEPTH)
        return fail(r, "StatusItems nested deeper than %s levels under '%.64s'", "16", prefix);
    const char *key;
    const json_t *v;
    json_object_foreach((json_t *)obj, key, v)
    {
        size_t klen = strlen(key);
        if (klen == 0 || strchr(key, '.'))
            return fail(r, "status item segment '%.64s' under '%.64s' is empty or contains a dot", key,
                        *prefix ? prefix : "StatusItems");
        char name[DDM_STATUS_MAX_NAME + 1];
        int n = snprintf(name, sizeof name, "%s%s%s", prefix, *prefix ? "." : "", key);
        if (n < 0 || (size_t)n >= sizeof name)
            return fail(r, "status item name '%.64s...' is longer than %s octets", *prefix ? prefix : key, "256");
        if (strcmp(name, DECLARATIONS_ITEM) == 0) {
            if (parse_declarations(r, v) != 0)
                return -1;
        } else if (ddm_status_item_known(name) || !json_is_object(v)) {
            if (add_item(r, name, (json_t *)v) != 0)
                return -1;
        } else if (flatten(r, v, name, depth + 1) != 0) {
            return -1;
        }
    }
    return 0;
}

static int check_errors(report_t *r, const json_t *errors)
{
    size_t i;
    const json_t *e;
    json_array_foreach(errors, i, e)
    {
        if (!json_is_object(e) || !json_is_string(json_object_get(e, "StatusItem")))
            return fail(r, "each element of Errors must be an object with a StatusItem string%s%s", "", "");
        const json_t *reasons = json_object_get(e, "Reasons");
        if (reasons && !json_is_array(reasons))
            return fail(r, "Errors: Reasons of '%.64s' must be an array%s", json_string_value(json_object_get(e, "StatusItem")),
                        "");
    }
    return 0;
}

/* ---- incremental arrays ----------------------------------------------------------- */

/* An array is merged by identifier only when every element is an object
 * with a string identifier (lists like mdm.app); other arrays are values. */
static int keyed_array(report_t *r, const char *name, const json_t *arr, int *keyed)
{
    *keyed = json_array_size(arr) > 0;
    size_t i;
    const json_t *el;
    json_array_foreach(arr, i, el)
    {
        if (!json_is_object(el) || !json_is_string(json_object_get(el, "identifier"))) {
            *keyed = 0;
            continue;
        }
        const json_t *rm = json_object_get(el, "_removed");
        if (rm && !json_is_boolean(rm))
            return fail(r, "'_removed' in status item '%.64s' must be a boolean%s", name, "");
    }
    return 0;
}

static void array_drop(json_t *arr, const char *identifier)
{
    for (size_t i = json_array_size(arr); i-- > 0;) {
        const char *id = json_string_value(json_object_get(json_array_get(arr, i), "identifier"));
        if (id && strcmp(id, identifier) == 0)
            json_array_remove(arr, i);
    }
}

json_t *ddm_status_merge_array(json_t *base, const json_t *update)
{
    if (!base)
        return NULL;
    size_t i;
    const json_t *el;
    json_array_foreach(update, i, el)
    {
        const char *id = json_string_value(json_object_get(el, "identifier"));
        if (!id)
            continue;
        array_drop(base, id);
        if (json_is_true(json_object_get(el, "_removed")))
            continue;
        json_t *copy = json_deep_copy(el);
        if (!copy || json_array_append_new(base, copy) != 0) {
            json_decref(base);
            return NULL;
        }
    }
    return base;
}

/* Resolves keyed array items against what is stored (incremental reports
 * only). 0, or -1 on storage failure, -2 out of memory. */
static int merge_arrays(ddm_status_report_t *r, store_t *s, const char *enrollment_id)
{
    for (size_t k = 0; k < r->nitems; k++) {
        ddm_status_value_t *it = &r->items[k];
        if (!it->keyed)
            continue;
        json_t *base = NULL;
        if (!r->full_report && s->ops->ddm_status_item_get) {
            ddm_status_item_t prev;
            int rc = s->ops->ddm_status_item_get(s, enrollment_id, it->name, &prev);
            if (rc == STORE_ERR)
                return -1;
            if (rc == STORE_OK) {
                json_t *old = json_loads(prev.value_json, 0, NULL);
                if (json_is_array(old))
                    base = old;
                else
                    json_decref(old);
                ddm_status_item_free(&prev);
            }
        }
        json_t *merged = ddm_status_merge_array(base ? base : json_array(), it->value);
        if (!merged)
            return -2;
        json_decref(it->value);
        it->value = merged;
    }
    return 0;
}

/* ---- entry points ---------------------------------------------------------------------- */

int ddm_status_parse(const unsigned char *data, size_t len, ddm_status_report_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof *out);
    if (len > DDM_STATUS_MAX_BYTES) {
        snprintf(err, errlen, "status report of %zu bytes is over the %d byte limit", len, DDM_STATUS_MAX_BYTES);
        return 413;
    }
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(err, errlen, "status report is not valid JSON: %s (line %d)", jerr.text, jerr.line);
        return 400;
    }
    report_t r = {out, err, errlen};
    int code = 400;
    const json_t *items = json_object_get(root, "StatusItems");
    const json_t *errors = json_object_get(root, "Errors");
    const json_t *full = json_object_get(root, "FullReport");
    if (!json_is_object(root)) {
        snprintf(err, errlen, "status report must be a JSON object");
        goto out;
    }
    if (!json_is_object(items)) {
        snprintf(err, errlen, "status report needs StatusItems (an object)");
        goto out;
    }
    if (!json_is_array(errors)) {
        snprintf(err, errlen, "status report needs Errors (an array)");
        goto out;
    }
    if (full && !json_is_boolean(full)) {
        snprintf(err, errlen, "FullReport must be a boolean");
        goto out;
    }
    out->full_report = json_is_true(full);
    if (check_errors(&r, errors) != 0 || flatten(&r, items, "", 1) != 0)
        goto out;
    for (size_t k = 0; k < out->nitems; k++) {
        ddm_status_value_t *it = &out->items[k];
        if (json_is_array(it->value) && keyed_array(&r, it->name, it->value, &it->keyed) != 0)
            goto out;
    }
    if (json_array_size(errors) && !(out->errors_json = json_dumps(errors, JSON_COMPACT))) {
        snprintf(err, errlen, "out of memory");
        code = 503;
        goto out;
    }
    code = 200;
out:
    json_decref(root);
    if (code != 200)
        ddm_status_report_free(out);
    return code;
}

int ddm_status_apply(store_t *s, const char *enrollment_id, const unsigned char *data, size_t len, int64_t now,
                     char *err, size_t errlen)
{
    ddm_status_report_t r;
    int code = ddm_status_parse(data, len, &r, err, errlen);
    if (code != 200)
        return code;
    code = 503;
    int mrc = merge_arrays(&r, s, enrollment_id);
    if (mrc != 0) {
        if (mrc == -1)
            snprintf(err, errlen, "storage error: %s", s->ops->errmsg(s));
        else
            snprintf(err, errlen, "out of memory");
        goto out;
    }
    ddm_status_item_t *rows = calloc(r.nitems ? r.nitems : 1, sizeof *rows);
    if (!rows) {
        snprintf(err, errlen, "out of memory");
        goto out;
    }
    size_t nrows = 0;
    for (; nrows < r.nitems; nrows++) {
        rows[nrows].name = r.items[nrows].name;
        rows[nrows].value_json = json_dumps(r.items[nrows].value, JSON_COMPACT | JSON_ENCODE_ANY);
        rows[nrows].updated_at = now;
        if (!rows[nrows].value_json)
            break;
    }
    /* The declaration list is complete whenever it is reported at all. */
    int replace_decls = r.full_report || r.has_declarations;
    if (nrows < r.nitems) {
        snprintf(err, errlen, "out of memory");
    } else if (!s->ops->ddm_status_record) {
        snprintf(err, errlen, "this storage backend does not keep DDM status");
    } else if (s->ops->ddm_status_record(s, enrollment_id, rows, r.nitems, r.decls, r.ndecls, replace_decls,
                                         r.errors_json, now) != STORE_OK) {
        snprintf(err, errlen, "storage error: %s", s->ops->errmsg(s));
    } else {
        code = 200;
        log_debug("status report from %s: %zu items, %zu declarations%s", enrollment_id, r.nitems, r.ndecls,
                  r.full_report ? " (full)" : "");
    }
    for (size_t i = 0; i < nrows; i++)
        free(rows[i].value_json);
    free(rows);
out:
    ddm_status_report_free(&r);
    return code;
}
