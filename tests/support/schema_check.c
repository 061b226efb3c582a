/* Apple schema checks for property lists (see schema_check.h). */
#include "schema_check.h"

#include <dirent.h>
#include <inttypes.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

/* ---- a small YAML reader ------------------------------------------------------ */

typedef enum { Y_SCALAR, Y_MAP, Y_SEQ } ytype_t;

typedef struct ynode ynode_t;
struct ynode {
    ytype_t t;
    char *scalar;  /* Y_SCALAR */
    char **keys;   /* Y_MAP */
    ynode_t **vals; /* Y_MAP values, Y_SEQ items */
    size_t n, cap;
    int line;
};

typedef struct {
    int indent;
    char *text; /* trimmed on the right; points into the file copy */
    int lineno;
} yline_t;

typedef struct {
    const char *path;
    yline_t *lines;
    size_t n, pos;
    ynode_t **all; /* every node, freed together (aliases share nodes) */
    size_t nall, capall;
    struct {
        char *name;
        ynode_t *node;
    } anchors[64];
    size_t nanchors;
    char err[256];
} yctx_t;

static void yfail(yctx_t *c, int line, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void yfail(yctx_t *c, int line, const char *fmt, ...)
{
    if (c->err[0])
        return;
    int k = snprintf(c->err, sizeof c->err, "%s:%d: ", c->path, line);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + k, sizeof c->err - (size_t)k, fmt, ap);
    va_end(ap);
}

static ynode_t *ynew(yctx_t *c, ytype_t t, int line)
{
    if (c->nall == c->capall) {
        size_t cap = c->capall ? 2 * c->capall : 256;
        ynode_t **g = realloc(c->all, cap * sizeof *g);
        if (!g)
            return NULL;
        c->all = g;
        c->capall = cap;
    }
    ynode_t *y = calloc(1, sizeof *y);
    if (!y)
        return NULL;
    y->t = t;
    y->line = line;
    c->all[c->nall++] = y;
    return y;
}

static int yadd(ynode_t *y, char *key, ynode_t *v)
{
    if (y->n == y->cap) {
        size_t cap = y->cap ? 2 * y->cap : 8;
        ynode_t **g = realloc(y->vals, cap * sizeof *g);
        if (!g)
            return -1;
        y->vals = g;
        if (y->t == Y_MAP) {
            char **k = realloc(y->keys, cap * sizeof *k);
            if (!k)
                return -1;
            y->keys = k;
        }
        y->cap = cap;
    }
    if (y->t == Y_MAP)
        y->keys[y->n] = key;
    y->vals[y->n++] = v;
    return 0;
}

static const ynode_t *yget(const ynode_t *map, const char *key)
{
    if (!map || map->t != Y_MAP)
        return NULL;
    for (size_t i = 0; i < map->n; i++)
        if (strcmp(map->keys[i], key) == 0)
            return map->vals[i];
    return NULL;
}

static const char *yscalar(const ynode_t *y)
{
    return y && y->t == Y_SCALAR ? y->scalar : NULL;
}

static yline_t *cur(yctx_t *c)
{
    return c->pos < c->n ? &c->lines[c->pos] : NULL;
}

static int is_dash(const char *t)
{
    return t[0] == '-' && (t[1] == ' ' || t[1] == '\0');
}

/* Position of the ':' that ends a mapping key in t, or -1. */
static long key_colon(const char *t)
{
    if (t[0] == '\'' || t[0] == '"' || t[0] == '&' || t[0] == '*' || t[0] == '|' || t[0] == '>')
        return -1;
    for (const char *p = t; *p; p++)
        if (*p == ':' && (p[1] == ' ' || p[1] == '\0'))
            return p - t;
    return -1;
}

static char *trim_dup(const char *s, size_t n)
{
    while (n > 0 && (*s == ' '))
        s++, n--;
    while (n > 0 && s[n - 1] == ' ')
        n--;
    return strndup(s, n);
}

/* Undoes YAML quoting of a complete scalar text ('..' with '' escapes, or
 * ".." with backslash escapes); plain text is returned as is. */
static char *unquote(yctx_t *c, int line, const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || (s[0] != '\'' && s[0] != '"'))
        return strdup(s);
    char q = s[0];
    if (n < 2 || s[n - 1] != q) {
        yfail(c, line, "unterminated quoted scalar");
        return NULL;
    }
    char *out = malloc(n);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 1; i + 1 < n; i++) {
        if (q == '\'' && s[i] == '\'' && s[i + 1] == '\'' && i + 2 < n) {
            out[o++] = '\'';
            i++;
        } else if (q == '"' && s[i] == '\\' && i + 2 < n) {
            char e = s[++i];
            out[o++] = e == 'n' ? '\n' : e == 't' ? '\t' : e;
        } else {
            out[o++] = s[i];
        }
    }
    out[o] = '\0';
    return out;
}

static ynode_t *parse_block(yctx_t *c, int indent, ynode_t *into);

static int add_anchor(yctx_t *c, const char *name, ynode_t *node, int line)
{
    if (c->nanchors == sizeof c->anchors / sizeof c->anchors[0]) {
        yfail(c, line, "too many anchors");
        return -1;
    }
    if (!(c->anchors[c->nanchors].name = strdup(name)))
        return -1;
    c->anchors[c->nanchors++].node = node;
    return 0;
}

/* A value after "key:" (or after "- "): text is the rest of the line at
 * mapping indentation `indent`; continuation lines are those indented more. */
static ynode_t *parse_value(yctx_t *c, const char *text, int indent, int line)
{
    char anchor[64] = "";
    while (*text == ' ')
        text++;
    if (*text == '&') {
        size_t k = strcspn(text + 1, " ");
        if (k == 0 || k >= sizeof anchor) {
            yfail(c, line, "bad anchor");
            return NULL;
        }
        memcpy(anchor, text + 1, k);
        anchor[k] = '\0';
        text += 1 + k;
        while (*text == ' ')
            text++;
    }
    ynode_t *v = NULL;
    if (*text == '*') {
        for (size_t i = 0; i < c->nanchors; i++)
            if (strcmp(c->anchors[i].name, text + 1) == 0)
                v = c->anchors[i].node;
        if (!v)
            yfail(c, line, "unknown alias %s", text);
        return v;
    }
    if (*text == '\0') {
        yline_t *l = cur(c);
        int child = l && l->indent > indent ? l->indent : indent;
        if (l && (l->indent > indent || (l->indent == indent && is_dash(l->text)))) {
            /* A nested block ("key:\n- item" may sit at the key's own
             * column). An anchored block is registered before it is read:
             * Apple's schemas refer to an enclosing block (recursion). */
            ynode_t *into = NULL;
            if (anchor[0]) {
                if (!(into = ynew(c, is_dash(l->text) ? Y_SEQ : Y_MAP, l->lineno)) || add_anchor(c, anchor, into, line))
                    return NULL;
                anchor[0] = '\0';
            }
            v = parse_block(c, child, into);
        } else if ((v = ynew(c, Y_SCALAR, line)) != NULL && !(v->scalar = strdup(""))) {
            v = NULL;
        }
    } else if (*text == '[' || *text == '{') {
        if (strcmp(text, "[]") == 0 || strcmp(text, "{}") == 0)
            v = ynew(c, *text == '[' ? Y_SEQ : Y_MAP, line);
        else
            yfail(c, line, "flow collections are not supported");
    } else {
        int block = *text == '|' || *text == '>';
        size_t cap = strlen(text) + 1;
        char *acc = malloc(cap);
        if (!acc)
            return NULL;
        strcpy(acc, block ? "" : text);
        size_t len = strlen(acc);
        /* Continuation: every following line indented more than the key. */
        for (yline_t *l = cur(c); l && l->indent > indent; l = cur(c)) {
            size_t add = strlen(l->text) + 1;
            char *g = realloc(acc, len + add + 1);
            if (!g) {
                free(acc);
                return NULL;
            }
            acc = g;
            if (len)
                acc[len++] = block && text[0] == '|' ? '\n' : ' ';
            memcpy(acc + len, l->text, add);
            len += add - 1;
            c->pos++;
        }
        if ((v = ynew(c, Y_SCALAR, line)) != NULL)
            v->scalar = block ? strdup(acc) : unquote(c, line, acc);
        free(acc);
        if (v && !v->scalar)
            v = NULL;
    }
    if (v && anchor[0] && add_anchor(c, anchor, v, line))
        return NULL;
    return v;
}

static ynode_t *parse_map(yctx_t *c, int indent, ynode_t *into)
{
    yline_t *l = cur(c);
    ynode_t *m = into ? into : ynew(c, Y_MAP, l ? l->lineno : 0);
    while (m && (l = cur(c)) != NULL && l->indent == indent && !is_dash(l->text) && !c->err[0]) {
        long k = key_colon(l->text);
        if (k < 0) {
            yfail(c, l->lineno, "expected 'key:'");
            return NULL;
        }
        char *key = trim_dup(l->text, (size_t)k);
        const char *rest = l->text + k + 1;
        int line = l->lineno;
        c->pos++;
        ynode_t *v = key ? parse_value(c, rest, indent, line) : NULL;
        if (!v || yadd(m, key, v) != 0) {
            free(key);
            yfail(c, line, "cannot read the value of this key");
            return NULL;
        }
    }
    if ((l = cur(c)) != NULL && l->indent > indent && !c->err[0])
        yfail(c, l->lineno, "unexpected indentation");
    return c->err[0] ? NULL : m;
}

static ynode_t *parse_seq(yctx_t *c, int indent, ynode_t *into)
{
    yline_t *l = cur(c);
    ynode_t *s = into ? into : ynew(c, Y_SEQ, l ? l->lineno : 0);
    while (s && (l = cur(c)) != NULL && l->indent == indent && is_dash(l->text) && !c->err[0]) {
        const char *item = l->text + 1;
        int off = 1;
        while (*item == ' ')
            item++, off++;
        int line = l->lineno;
        ynode_t *v;
        if (*item == '\0') {
            c->pos++;
            yline_t *n = cur(c);
            v = n && n->indent > indent ? parse_block(c, n->indent, NULL) : NULL;
        } else if (key_colon(item) >= 0) {
            /* "- key: v" opens a mapping at the column after the dash:
             * reread this line as its first entry. */
            l->indent = indent + off;
            l->text = (char *)item;
            v = parse_map(c, indent + off, NULL);
        } else {
            c->pos++;
            v = parse_value(c, item, indent, line);
        }
        if (!v || yadd(s, NULL, v) != 0) {
            yfail(c, line, "cannot read this sequence item");
            return NULL;
        }
    }
    return c->err[0] ? NULL : s;
}

static ynode_t *parse_block(yctx_t *c, int indent, ynode_t *into)
{
    yline_t *l = cur(c);
    if (!l)
        return NULL;
    return is_dash(l->text) ? parse_seq(c, indent, into) : parse_map(c, indent, into);
}

static void yctx_free(yctx_t *c)
{
    for (size_t i = 0; i < c->nall; i++) {
        ynode_t *y = c->all[i];
        if (y->t == Y_MAP)
            for (size_t j = 0; j < y->n; j++)
                free(y->keys[j]);
        free(y->keys);
        free(y->vals);
        free(y->scalar);
        free(y);
    }
    free(c->all);
    for (size_t i = 0; i < c->nanchors; i++)
        free(c->anchors[i].name);
    free(c->lines);
}

/* Splits the file into significant lines (no blanks, no comments). */
static int ysplit(yctx_t *c, char *buf)
{
    size_t cap = 256;
    c->lines = malloc(cap * sizeof *c->lines);
    int lineno = 0;
    for (char *p = buf; c->lines && p && *p;) {
        char *nl = strchr(p, '\n');
        if (nl)
            *nl = '\0';
        lineno++;
        size_t len = strlen(p);
        while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\r'))
            p[--len] = '\0';
        int ind = 0;
        while (p[ind] == ' ')
            ind++;
        if (p[ind] == '\t') {
            yfail(c, lineno, "tab in indentation");
            return -1;
        }
        if (p[ind] != '\0' && p[ind] != '#' && !(lineno == 1 && strcmp(p, "---") == 0)) {
            if (c->n == cap) {
                cap *= 2;
                yline_t *g = realloc(c->lines, cap * sizeof *g);
                if (!g)
                    return -1;
                c->lines = g;
            }
            c->lines[c->n++] = (yline_t){.indent = ind, .text = p + ind, .lineno = lineno};
        }
        p = nl ? nl + 1 : NULL;
    }
    return c->lines ? 0 : -1;
}

/* ---- schema from the YAML tree ------------------------------------------------- */

#define SCHEMA_EXPAND_DEPTH 12

static void key_free(schema_key_t *k)
{
    free(k->name);
    free(k->type);
    for (size_t i = 0; i < k->nrange; i++)
        free(k->rangelist[i]);
    free(k->rangelist);
    for (size_t i = 0; i < k->nassettypes; i++)
        free(k->assettypes[i]);
    free(k->assettypes);
    free(k->format);
    for (size_t i = 0; i < k->nsub; i++)
        key_free(&k->sub[i]);
    free(k->sub);
}

static int keys_from(yctx_t *c, const ynode_t *seq, schema_key_t **out, size_t *nout, int depth);

static int number_of(const ynode_t *y, double *out)
{
    const char *s = yscalar(y);
    if (!s || !*s)
        return -1;
    char *end;
    double d = strtod(s, &end);
    if (*end)
        return -1;
    *out = d;
    return 0;
}

/* A sequence of scalars (rangelist, assettypes) as a heap array of strings;
 * an absent node leaves *out NULL. */
static int scalar_list(yctx_t *c, const ynode_t *seq, const char *what, char ***out, size_t *n)
{
    if (!seq)
        return 0;
    if (seq->t != Y_SEQ) {
        yfail(c, seq->line, "%s is not a sequence", what);
        return -1;
    }
    if (!(*out = calloc(seq->n ? seq->n : 1, sizeof **out)))
        return -1;
    for (size_t i = 0; i < seq->n; i++) {
        const char *v = yscalar(seq->vals[i]);
        if (!v) {
            yfail(c, seq->vals[i]->line, "%s item is not a scalar", what);
            return -1;
        }
        if (!((*out)[*n] = strdup(v)))
            return -1;
        (*n)++;
    }
    return 0;
}

static int key_from(yctx_t *c, const ynode_t *m, schema_key_t *k, int depth)
{
    memset(k, 0, sizeof *k);
    k->rep_min = k->rep_max = -1;
    if (!m || m->t != Y_MAP) {
        yfail(c, m ? m->line : 0, "a key entry must be a mapping");
        return -1;
    }
    const char *name = yscalar(yget(m, "key"));
    const char *type = yscalar(yget(m, "type"));
    if (!name || !type) {
        yfail(c, m->line, "key entry without key: or type:");
        return -1;
    }
    size_t tl = strlen(type);
    if (tl < 3 || type[0] != '<' || type[tl - 1] != '>') {
        yfail(c, m->line, "type %s is not <...>", type);
        return -1;
    }
    k->name = strdup(name);
    k->type = strndup(type + 1, tl - 2);
    const char *presence = yscalar(yget(m, "presence"));
    k->required = presence && strcmp(presence, "required") == 0;
    const char *format = yscalar(yget(m, "format"));
    if (format)
        k->format = strdup(format);
    if (scalar_list(c, yget(m, "rangelist"), "rangelist", &k->rangelist, &k->nrange) != 0 ||
        scalar_list(c, yget(m, "assettypes"), "assettypes", &k->assettypes, &k->nassettypes) != 0)
        return -1;
    const ynode_t *range = yget(m, "range");
    if (range) {
        k->has_min = number_of(yget(range, "min"), &k->min) == 0;
        k->has_max = number_of(yget(range, "max"), &k->max) == 0;
    }
    const ynode_t *rep = yget(m, "repetition");
    if (rep) {
        double v;
        if (number_of(yget(rep, "min"), &v) == 0)
            k->rep_min = (int)v;
        if (number_of(yget(rep, "max"), &v) == 0)
            k->rep_max = (int)v;
    }
    /* Recursive schemas (an alias to an enclosing block) are expanded to a
     * fixed depth; below it a value's contents go unchecked. */
    const ynode_t *sub = yget(m, "subkeys");
    if (sub && depth < SCHEMA_EXPAND_DEPTH && keys_from(c, sub, &k->sub, &k->nsub, depth + 1) != 0)
        return -1;
    return k->name && k->type ? 0 : -1;
}

static int keys_from(yctx_t *c, const ynode_t *seq, schema_key_t **out, size_t *nout, int depth)
{
    *out = NULL;
    *nout = 0;
    if (!seq || seq->t != Y_SEQ) {
        yfail(c, seq ? seq->line : 0, "payloadkeys/subkeys must be a sequence");
        return -1;
    }
    schema_key_t *keys = calloc(seq->n ? seq->n : 1, sizeof *keys);
    if (!keys)
        return -1;
    for (size_t i = 0; i < seq->n; i++) {
        if (key_from(c, seq->vals[i], &keys[i], depth) != 0) {
            for (size_t j = 0; j <= i; j++)
                key_free(&keys[j]);
            free(keys);
            return -1;
        }
    }
    *out = keys;
    *nout = seq->n;
    return 0;
}

void schema_free(schema_t *s)
{
    if (!s)
        return;
    for (size_t i = 0; i < s->nkeys; i++)
        key_free(&s->keys[i]);
    free(s->keys);
    free(s->path);
    free(s->payloadtype);
    free(s->requesttype);
    free(s->declarationtype);
    free(s->statusitemtype);
    for (int i = 0; i < SCHEMA_NOS; i++)
        free(s->introduced[i]);
    free(s);
}

const char *const schema_os_names[SCHEMA_NOS] = {"iOS", "macOS", "tvOS", "visionOS", "watchOS"};

/* strdup of an optional scalar: 0 when absent or copied, -1 on allocation failure. */
static int dup_opt(const char *v, char **out)
{
    *out = v ? strdup(v) : NULL;
    return v && !*out ? -1 : 0;
}

/* The file-level facts of payload: its type names and supportedOS.*.introduced. */
static int payload_facts(const ynode_t *payload, schema_t *s)
{
    const ynode_t *os = yget(payload, "supportedOS");
    s->has_supported_os = os != NULL;
    for (int i = 0; i < SCHEMA_NOS; i++)
        if (dup_opt(yscalar(yget(yget(os, schema_os_names[i]), "introduced")), &s->introduced[i]) != 0)
            return -1;
    return dup_opt(yscalar(yget(payload, "requesttype")), &s->requesttype) != 0 ||
                   dup_opt(yscalar(yget(payload, "declarationtype")), &s->declarationtype) != 0 ||
                   dup_opt(yscalar(yget(payload, "statusitemtype")), &s->statusitemtype) != 0
               ? -1
               : 0;
}

schema_t *schema_load(const char *path, char *err, size_t errlen)
{
    char *buf = util_read_file(path, 8 << 20, NULL);
    if (!buf) {
        snprintf(err, errlen, "%s: cannot read", path);
        return NULL;
    }
    yctx_t c;
    memset(&c, 0, sizeof c);
    c.path = path;
    schema_t *s = NULL;
    ynode_t *root = NULL;
    if (ysplit(&c, buf) == 0 && c.n > 0)
        root = parse_block(&c, c.lines[0].indent, NULL);
    if (root && cur(&c))
        yfail(&c, cur(&c)->lineno, "trailing content");
    if (root && !c.err[0]) {
        const ynode_t *payload = yget(root, "payload");
        const char *pt = yscalar(yget(payload, "payloadtype"));
        if (!pt)
            pt = yscalar(yget(payload, "requesttype"));
        const ynode_t *keys = yget(root, "payloadkeys");
        s = calloc(1, sizeof *s);
        if (s) {
            s->path = strdup(path);
            s->payloadtype = pt ? strdup(pt) : NULL;
            /* A schema may legitimately have no keys (commands without
             * parameters). */
            if (payload_facts(payload, s) != 0 || (keys && keys_from(&c, keys, &s->keys, &s->nkeys, 0) != 0)) {
                schema_free(s);
                s = NULL;
            }
        }
    }
    if (!s)
        snprintf(err, errlen, "%s", c.err[0] ? c.err : "cannot parse the schema");
    yctx_free(&c);
    free(buf);
    return s;
}

/* ---- checking ------------------------------------------------------------------ */

void schema_report_free(schema_report_t *r)
{
    free(r->text);
    memset(r, 0, sizeof *r);
}

static void problem(schema_report_t *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(schema_report_t *r, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    if (r->len + n + 2 > r->cap) {
        size_t cap = (r->cap ? r->cap * 2 : 1024) + n + 2;
        char *g = realloc(r->text, cap);
        if (!g)
            return;
        r->text = g;
        r->cap = cap;
    }
    memcpy(r->text + r->len, line, n);
    r->len += n;
    r->text[r->len++] = '\n';
    r->text[r->len] = '\0';
    r->problems++;
}

static int type_matches(const char *type, plist_type_t t)
{
    if (strcmp(type, "any") == 0)
        return 1;
    static const struct {
        const char *name;
        plist_type_t t;
    } map[] = {{"string", PLIST_STRING}, {"integer", PLIST_INTEGER}, {"boolean", PLIST_BOOL},
               {"array", PLIST_ARRAY},   {"dictionary", PLIST_DICT}, {"data", PLIST_DATA},
               {"date", PLIST_DATE},     {"real", PLIST_REAL}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(type, map[i].name) == 0)
            return map[i].t == t;
    return 0; /* a type we do not know never matches: the caller sees it */
}

static void check_value(const schema_key_t *k, const plist_t *v, const char *where, schema_report_t *r, int depth);

static const schema_key_t *find_key(const schema_key_t *keys, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(keys[i].name, name) == 0)
            return &keys[i];
    return NULL;
}

/* dict against one or more key lists (payload's own, then common keys). */
static void check_dict_keys(const schema_key_t *const *lists, const size_t *counts, size_t nlists, const plist_t *d,
                            const char *where, schema_report_t *r, int depth)
{
    char path[512];
    for (size_t i = 0; i < plist_dict_size(d); i++) {
        const char *key = plist_dict_key_at(d, i);
        const schema_key_t *k = NULL;
        for (size_t l = 0; !k && l < nlists; l++)
            k = find_key(lists[l], counts[l], key);
        for (size_t l = 0; !k && l < nlists; l++)
            k = find_key(lists[l], counts[l], "ANY");
        snprintf(path, sizeof path, "%s.%s", where, key);
        if (!k) {
            problem(r, "%s: key not in Apple's schema", path);
            continue;
        }
        check_value(k, plist_dict_value_at(d, i), path, r, depth + 1);
    }
    for (size_t l = 0; l < nlists; l++)
        for (size_t j = 0; j < counts[l]; j++)
            if (lists[l][j].required && strcmp(lists[l][j].name, "ANY") != 0 &&
                !plist_dict_get(d, lists[l][j].name))
                problem(r, "%s: required key %s is missing", where, lists[l][j].name);
}

static void check_scalar_rules(const schema_key_t *k, const plist_t *v, const char *where, schema_report_t *r)
{
    char text[64];
    const char *s = NULL;
    switch (plist_type(v)) {
    case PLIST_STRING: s = plist_string(v); break;
    case PLIST_INTEGER:
        snprintf(text, sizeof text, "%" PRId64, plist_integer(v));
        s = text;
        break;
    case PLIST_REAL:
        snprintf(text, sizeof text, "%g", plist_real(v));
        s = text;
        break;
    case PLIST_BOOL: s = plist_bool(v) ? "true" : "false"; break;
    default: break;
    }
    if (k->nrange && s) {
        int found = 0;
        for (size_t i = 0; !found && i < k->nrange; i++) {
            if (plist_type(v) == PLIST_REAL)
                found = strtod(k->rangelist[i], NULL) == plist_real(v);
            else
                found = strcmp(k->rangelist[i], s) == 0;
        }
        if (!found)
            problem(r, "%s: value '%.64s' is not in the schema's rangelist", where, s);
    }
    if ((k->has_min || k->has_max) && (plist_type(v) == PLIST_INTEGER || plist_type(v) == PLIST_REAL)) {
        double d = plist_type(v) == PLIST_INTEGER ? (double)plist_integer(v) : plist_real(v);
        if ((k->has_min && d < k->min) || (k->has_max && d > k->max))
            problem(r, "%s: value %s is outside the schema's range", where, s);
    }
    if (k->format && plist_type(v) == PLIST_STRING) {
        regex_t re;
        if (regcomp(&re, k->format, REG_EXTENDED | REG_NOSUB) != 0) {
            problem(r, "%s: schema format '%s' is not a regular expression we can use", where, k->format);
            return;
        }
        if (regexec(&re, plist_string(v), 0, NULL, 0) != 0)
            problem(r, "%s: value '%.64s' does not match the schema format %s", where, plist_string(v), k->format);
        regfree(&re);
    }
}

static void check_value(const schema_key_t *k, const plist_t *v, const char *where, schema_report_t *r, int depth)
{
    r->keys_checked++;
    if (depth > 64) {
        problem(r, "%s: nested too deeply to check", where);
        return;
    }
    if (!type_matches(k->type, plist_type(v))) {
        problem(r, "%s: type is %s, the schema says %s", where, plist_type_name(plist_type(v)), k->type);
        return;
    }
    check_scalar_rules(k, v, where, r);
    if (plist_type(v) == PLIST_DICT && k->nsub > 0) {
        const schema_key_t *lists[1] = {k->sub};
        size_t counts[1] = {k->nsub};
        check_dict_keys(lists, counts, 1, v, where, r, depth);
    } else if (plist_type(v) == PLIST_ARRAY && k->nsub > 0) {
        size_t n = plist_array_size(v);
        char path[512];
        for (size_t i = 0; i < n; i++) {
            const plist_t *item = plist_array_get(v, i);
            /* The item spec: the one whose type fits (usually the only one). */
            const schema_key_t *spec = NULL;
            for (size_t j = 0; !spec && j < k->nsub; j++)
                if (type_matches(k->sub[j].type, plist_type(item)))
                    spec = &k->sub[j];
            snprintf(path, sizeof path, "%s[%zu]", where, i);
            check_value(spec ? spec : &k->sub[0], item, path, r, depth + 1);
        }
        const schema_key_t *item = &k->sub[0];
        if ((item->rep_min >= 0 && n < (size_t)item->rep_min) || (item->rep_max >= 0 && n > (size_t)item->rep_max))
            problem(r, "%s: %zu items, the schema wants %d..%d", where, n, item->rep_min, item->rep_max);
    }
}

int schema_check_dict(const schema_t *const *schemas, size_t n, const plist_t *dict, const char *where,
                      schema_report_t *r)
{
    int before = r->problems;
    if (!dict || plist_type(dict) != PLIST_DICT) {
        problem(r, "%s: not a dictionary", where);
        return r->problems - before;
    }
    const schema_key_t *lists[8];
    size_t counts[8];
    size_t m = 0;
    for (size_t i = 0; i < n && m < 8; i++) {
        lists[m] = schemas[i]->keys;
        counts[m++] = schemas[i]->nkeys;
        r->schemas_used++;
    }
    check_dict_keys(lists, counts, m, dict, where, r, 0);
    return r->problems - before;
}

/* The schema file for a payload type: DIR/TYPE.yaml, else a scan. */
static schema_t *schema_for_type(const char *dir, const char *type, char *err, size_t errlen)
{
    if (strchr(type, '/') == NULL) {
        char *path = util_strdup_printf("%s/%s.yaml", dir, type);
        schema_t *s = path ? schema_load(path, err, errlen) : NULL;
        free(path);
        if (s && s->payloadtype && strcmp(s->payloadtype, type) == 0)
            return s;
        schema_free(s);
    }
    DIR *d = opendir(dir);
    schema_t *found = NULL;
    for (struct dirent *e = d ? readdir(d) : NULL; e && !found; e = readdir(d)) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        char *path = util_strdup_printf("%s/%s", dir, e->d_name);
        schema_t *s = path ? schema_load(path, err, errlen) : NULL;
        free(path);
        if (s && s->payloadtype && strcmp(s->payloadtype, type) == 0)
            found = s;
        else
            schema_free(s);
    }
    if (d)
        closedir(d);
    if (!found)
        snprintf(err, errlen, "no schema file in %s for payload type %s", dir, type);
    return found;
}

int schema_check_profile(const char *dir, const plist_t *profile, schema_report_t *r)
{
    char err[512];
    char *tp = util_strdup_printf("%s/TopLevel.yaml", dir);
    char *cp = util_strdup_printf("%s/CommonPayloadKeys.yaml", dir);
    schema_t *top = tp ? schema_load(tp, err, sizeof err) : NULL;
    schema_t *common = top && cp ? schema_load(cp, err, sizeof err) : NULL;
    free(tp);
    free(cp);
    if (!top || !common) {
        problem(r, "cannot load the top-level schemas: %s", err);
        schema_free(top);
        return -1;
    }
    int before = r->problems;
    const schema_t *t1[1] = {top};
    schema_check_dict(t1, 1, profile, "profile", r);
    const plist_t *content = plist_type(profile) == PLIST_DICT ? plist_dict_get(profile, "PayloadContent") : NULL;
    for (size_t i = 0; content && plist_type(content) == PLIST_ARRAY && i < plist_array_size(content); i++) {
        const plist_t *p = plist_array_get(content, i);
        const char *type = plist_type(p) == PLIST_DICT ? plist_dict_get_string(p, "PayloadType") : NULL;
        char where[128];
        snprintf(where, sizeof where, "PayloadContent[%zu](%s)", i, type ? type : "?");
        if (!type) {
            problem(r, "%s: no PayloadType string", where);
            continue;
        }
        schema_t *s = schema_for_type(dir, type, err, sizeof err);
        if (!s) {
            problem(r, "%s: %s", where, err);
            continue;
        }
        /* The payload's own keys first: some (PayloadContent) are
         * redefined per payload type. */
        const schema_t *both[2] = {s, common};
        schema_check_dict(both, 2, p, where, r);
        schema_free(s);
    }
    schema_free(top);
    schema_free(common);
    return r->problems - before;
}
