/* gen_schema_tables REPO [OUT]: compiles Apple's device-management schemas
 * (github.com/apple/device-management, checked out at REPO) into C tables
 * for src/ddm_schema.c, written to OUT (default: standard output).
 *
 * Read:
 *   declarative/declarations/{activations,assets,configurations,management}/NAME.yaml
 *       the declaration types and their Payload keys. assets/credentials/ is
 *       not read: its files (payload.credentialtype) describe the data formats
 *       an asset's DataURL serves, not declarations a server sends.
 *   declarative/status/NAME.yaml    status item names (payload.statusitemtype;
 *       statusreason.yaml describes the StatusReason object, not an item)
 *   mdm/commands/NAME.yaml          RequestType + watchOS support
 *   mdm/profiles/NAME.yaml          PayloadType + watchOS support (TopLevel and
 *       CommonPayloadKeys are the profile envelope, not payload types)
 *
 * Value rules: range (on <integer>/<real> keys), format (on <string> keys,
 * emitted anchored as "^(FORMAT)$": Apple means the whole value, and
 * "^([0-9A-Za-z]{6})|([0-9A-Za-z]{9})$" only says six or nine characters
 * when grouped so) and repetition (on an array's item spec: the array's
 * length) are copied into ds_key_t. A rule on a key it cannot apply to is an
 * error, so a new use of one gets looked at. A format POSIX extended regexes
 * cannot compile is emitted as NULL with a comment naming it (none in the
 * declarations of this release; the formats Apple uses elsewhere, in
 * mdm/profiles, all compile).
 *
 * The output depends only on the files' contents (directories are read in
 * sorted order), so regenerating from the same release gives the same bytes;
 * tests/test_ddm_schema.c checks that the checked-in table is current.
 * `make schema-tables` runs this on $(APPLE_SCHEMAS).
 */
#include <dirent.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "schema_check.h"
#include "util.h"

/* Keys whose strings name configurations (the schema has no marker for
 * these, unlike assettypes for asset references). A rule that matches no
 * key is an error, so a renamed key cannot silently drop a reference. */
static const struct {
    const char *declaration, *key;
} configuration_refs[] = {
    {"com.apple.activation.simple", "StandardConfigurations"},
};
#define NCONFIG_REFS (sizeof configuration_refs / sizeof configuration_refs[0])

static const struct {
    const char *dir, *kind;
} declaration_dirs[] = {
    {"activations", "activation"},
    {"assets", "asset"},
    {"configurations", "configuration"},
    {"management", "management"},
};

typedef struct {
    FILE *out;
    int next_id;                /* symbol numbers: k<n> key arrays, r<n> rangelists, a<n> assettypes */
    char **asset_joined;        /* distinct assettypes lists, comma-joined, and their symbol numbers */
    int *asset_ids;
    size_t nasset, capasset;
    int config_refs_found[NCONFIG_REFS];
    char err[512];
} gen_t;

static void fail(gen_t *g, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void fail(gen_t *g, const char *fmt, ...)
{
    if (g->err[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g->err, sizeof g->err, fmt, ap);
    va_end(ap);
}

/* ---- reading ------------------------------------------------------------------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.yaml files of dir, sorted (readdir order is the filesystem's). */
static char **yaml_files(gen_t *g, const char *dir, size_t *n)
{
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        fail(g, "%s: cannot open the directory", dir);
        return NULL;
    }
    char **names = NULL;
    size_t cap = 0;
    for (struct dirent *e = readdir(d); e; e = readdir(d)) {
        size_t len = strlen(e->d_name);
        if (len < 6 || strcmp(e->d_name + len - 5, ".yaml") != 0)
            continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 64;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown)
                break;
            names = grown;
        }
        if (!(names[*n] = util_strdup_printf("%s/%s", dir, e->d_name)))
            break;
        (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(names, *n, sizeof *names, cmp_str);
    return names;
}

static void free_strings(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

/* Every schema file of dir, loaded, in file-name order. */
static schema_t **load_dir(gen_t *g, const char *repo, const char *sub, size_t *n)
{
    char *dir = util_strdup_printf("%s/%s", repo, sub);
    size_t nfiles = 0;
    char **files = dir ? yaml_files(g, dir, &nfiles) : NULL;
    free(dir);
    schema_t **out = calloc(nfiles ? nfiles : 1, sizeof *out);
    *n = 0;
    for (size_t i = 0; out && i < nfiles && !g->err[0]; i++) {
        char err[512];
        if (!(out[i] = schema_load(files[i], err, sizeof err)))
            fail(g, "%s", err);
        else
            *n = i + 1;
    }
    free_strings(files, nfiles);
    if (!out && !g->err[0])
        fail(g, "out of memory");
    return out;
}

static void free_schemas(schema_t **s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        schema_free(s[i]);
    free(s);
}

/* "commit <sha>" if REPO is a git checkout, and the release README names
 * ("iOS 18.1, macOS 15.1, ..."): what the checked-in table came from. */
static char *source_of(const char *repo)
{
    char commit[64] = "";
    char *path = util_strdup_printf("%s/.git/HEAD", repo);
    char *head = path ? util_read_file(path, 4096, NULL) : NULL;
    free(path);
    if (head) {
        head[strcspn(head, "\r\n")] = '\0';
        char *sha = NULL;
        if (strncmp(head, "ref: ", 5) == 0) {
            path = util_strdup_printf("%s/.git/%s", repo, head + 5);
            sha = path ? util_read_file(path, 4096, NULL) : NULL;
            free(path);
        } else {
            sha = strdup(head);
        }
        if (sha) {
            sha[strcspn(sha, "\r\n")] = '\0';
            if (strlen(sha) == 40)
                snprintf(commit, sizeof commit, "commit %s", sha);
            free(sha);
        }
        free(head);
    }
    /* README: "This release corresponds to the following OS versions" and a
     * table of "| iOS      | 18.1    |" rows. */
    char release[256] = "";
    path = util_strdup_printf("%s/README.md", repo);
    char *readme = path ? util_read_file(path, 1 << 20, NULL) : NULL;
    free(path);
    const char *table = readme ? strstr(readme, "This release corresponds") : NULL;
    for (int os = 0; table && os < SCHEMA_NOS; os++) {
        char pattern[32];
        snprintf(pattern, sizeof pattern, "| %s ", schema_os_names[os]);
        const char *row = strstr(table, pattern);
        char version[32];
        if (row && sscanf(row + strlen(pattern), " | %31[0-9.]", version) == 1) {
            size_t len = strlen(release);
            snprintf(release + len, sizeof release - len, "%s%s %s", len ? ", " : "", schema_os_names[os], version);
        }
    }
    free(readme);
    if (!commit[0] && !release[0])
        return strdup("unknown release");
    return util_strdup_printf("%s%s%s", release[0] ? "release " : "", release,
                              commit[0] ? (release[0] ? ", " : "") : "");
}

/* ---- writing --------------------------------------------------------------------- */

/* s as a C string literal. '?' is escaped too, so no trigraph can form. */
static void put_literal(FILE *f, const char *s)
{
    if (!s) {
        fputs("NULL", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\' || *p == '?')
            fprintf(f, "\\%c", *p);
        else if (*p >= 0x20 && *p < 0x7f)
            fputc(*p, f);
        else
            fprintf(f, "\\%03o", *p);
    }
    fputc('"', f);
}

static const char *ds_type_name(gen_t *g, const char *yaml_type, const char *key)
{
    static const struct {
        const char *yaml, *c;
    } map[] = {{"string", "DS_STRING"}, {"integer", "DS_INTEGER"}, {"real", "DS_REAL"},
               {"boolean", "DS_BOOLEAN"}, {"array", "DS_ARRAY"},   {"dictionary", "DS_DICTIONARY"},
               {"data", "DS_DATA"},       {"date", "DS_DATE"},     {"any", "DS_ANY"}};
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strcmp(yaml_type, map[i].yaml) == 0)
            return map[i].c;
    fail(g, "key %s: type <%s> has no ds_type_t", key, yaml_type);
    return "DS_ANY";
}

/* The symbol number of the assettypes list of k, emitting it on first use. */
static int assettypes_id(gen_t *g, const schema_key_t *k)
{
    size_t len = 1;
    for (size_t i = 0; i < k->nassettypes; i++)
        len += strlen(k->assettypes[i]) + 1;
    char *joined = calloc(1, len);
    if (!joined) {
        fail(g, "out of memory");
        return 0;
    }
    for (size_t i = 0; i < k->nassettypes; i++) {
        if (i)
            strcat(joined, ",");
        strcat(joined, k->assettypes[i]);
    }
    for (size_t i = 0; i < g->nasset; i++) {
        if (strcmp(g->asset_joined[i], joined) == 0) {
            free(joined);
            return g->asset_ids[i];
        }
    }
    if (g->nasset == g->capasset) {
        size_t cap = g->capasset ? 2 * g->capasset : 16;
        char **j = realloc(g->asset_joined, cap * sizeof *j);
        if (j)
            g->asset_joined = j;
        int *ids = j ? realloc(g->asset_ids, cap * sizeof *ids) : NULL;
        if (!ids) {
            free(joined);
            fail(g, "out of memory");
            return 0;
        }
        g->asset_ids = ids;
        g->capasset = cap;
    }
    int id = g->next_id++;
    g->asset_joined[g->nasset] = joined;
    g->asset_ids[g->nasset++] = id;
    fprintf(g->out, "static const char *const a%d[] = {", id);
    for (size_t i = 0; i < k->nassettypes; i++) {
        put_literal(g->out, k->assettypes[i]);
        fputs(", ", g->out);
    }
    fputs("NULL};\n", g->out);
    return id;
}

static int is_number_type(const char *t)
{
    return strcmp(t, "integer") == 0 || strcmp(t, "real") == 0;
}

/* k's format as the regex ds_key_t carries: anchored as a whole. *usable is
 * 0 if POSIX extended regexes cannot compile it (then it is not checked). */
static char *anchored_format(gen_t *g, const schema_key_t *k, int *usable)
{
    *usable = 0;
    char *regex = util_strdup_printf("^(%s)$", k->format);
    if (!regex) {
        fail(g, "out of memory");
        return NULL;
    }
    regex_t re;
    if (regcomp(&re, regex, REG_EXTENDED | REG_NOSUB) == 0) {
        regfree(&re);
        *usable = 1;
    }
    return regex;
}

/* The range, format and repetition fields of k's ds_key_t initializer.
 * `item` says k is an array's item spec, where repetition belongs. */
static void put_rules(gen_t *g, const schema_key_t *k, int item, const char *decl)
{
    if ((k->has_min || k->has_max) && !is_number_type(k->type))
        fail(g, "%s: key %s has a range but type <%s>", decl, k->name, k->type);
    if (k->format && strcmp(k->type, "string") != 0)
        fail(g, "%s: key %s has a format but type <%s>", decl, k->name, k->type);
    if ((k->rep_min >= 0 || k->rep_max >= 0) && !item)
        fail(g, "%s: key %s has a repetition but is not an array's item", decl, k->name);
    /* ds_key_t reads 0 as "no bound"; a maximum of 0 (only empty arrays) has
     * no meaning for a setting and cannot be said that way. */
    if (k->rep_max == 0 || (k->rep_max > 0 && k->rep_min > k->rep_max))
        fail(g, "%s: key %s has repetition %d..%d", decl, k->name, k->rep_min, k->rep_max);
    fprintf(g->out, ", %d, %d, %.17g, %.17g, ", k->has_min, k->has_max, k->has_min ? k->min : 0.0,
            k->has_max ? k->max : 0.0);
    int usable = 0;
    char *regex = k->format ? anchored_format(g, k, &usable) : NULL;
    if (usable)
        put_literal(g->out, regex);
    else
        fputs("NULL", g->out);
    free(regex);
    fprintf(g->out, ", %d, %d", k->rep_min > 0 ? k->rep_min : 0, k->rep_max > 0 ? k->rep_max : 0);
}

/* Emits the key array for keys (children first, so every array is defined
 * before it is referenced) and returns its symbol number. `item`: keys is
 * an array's item spec. */
static int emit_keys(gen_t *g, const schema_key_t *keys, size_t n, const char *decl, int top, int item)
{
    int *sub = calloc(n, sizeof *sub), *range = calloc(n, sizeof *range), *assets = calloc(n, sizeof *assets);
    int *config = calloc(n, sizeof *config);
    int id = -1;
    if (!sub || !range || !assets || !config) {
        fail(g, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n && !g->err[0]; i++) {
        const schema_key_t *k = &keys[i];
        sub[i] = k->nsub ? emit_keys(g, k->sub, k->nsub, decl, 0, strcmp(k->type, "array") == 0) : -1;
        range[i] = -1;
        if (k->nrange) {
            range[i] = g->next_id++;
            fprintf(g->out, "static const char *const r%d[] = {", range[i]);
            for (size_t j = 0; j < k->nrange; j++) {
                put_literal(g->out, k->rangelist[j]);
                fputs(", ", g->out);
            }
            fputs("NULL};\n", g->out);
        }
        assets[i] = k->nassettypes ? assettypes_id(g, k) : -1;
        for (size_t r = 0; top && r < NCONFIG_REFS; r++) {
            if (strcmp(configuration_refs[r].declaration, decl) == 0 && strcmp(configuration_refs[r].key, k->name) == 0) {
                config[i] = 1;
                g->config_refs_found[r] = 1;
            }
        }
    }
    if (g->err[0])
        goto out;
    id = g->next_id++;
    fprintf(g->out, "static const ds_key_t k%d[] = {\n", id);
    for (size_t i = 0; i < n; i++) {
        const schema_key_t *k = &keys[i];
        int usable = 1;
        free(k->format ? anchored_format(g, k, &usable) : NULL);
        if (!usable) {
            fputs("    /* not checked, POSIX extended regexes cannot compile the format: ", g->out);
            /* Inside a comment: printable only, and no comment start or end. */
            for (const char *p = k->format; *p; p++) {
                int delimiter = (*p == '*' && p[1] == '/') || (*p == '/' && p[1] == '*');
                fputc(!delimiter && *p >= 0x20 && *p < 0x7f ? *p : '?', g->out);
            }
            fputs(" */\n", g->out);
        }
        fputs("    {", g->out);
        put_literal(g->out, k->name);
        fprintf(g->out, ", %s, %d, ", ds_type_name(g, k->type, k->name), k->required);
        if (range[i] >= 0)
            fprintf(g->out, "r%d, ", range[i]);
        else
            fputs("NULL, ", g->out);
        if (assets[i] >= 0)
            fprintf(g->out, "a%d, ", assets[i]);
        else
            fputs("NULL, ", g->out);
        fprintf(g->out, "%d, ", config[i]);
        if (sub[i] >= 0)
            fprintf(g->out, "k%d, %zu", sub[i], k->nsub);
        else
            fputs("NULL, 0", g->out);
        put_rules(g, k, item, decl);
        fputs("},\n", g->out);
    }
    fputs("};\n", g->out);
out:
    free(sub);
    free(range);
    free(assets);
    free(config);
    return id;
}

typedef struct {
    const schema_t *s;
    const char *kind;
    int keys_id; /* -1: no keys */
} decl_t;

static int cmp_decl(const void *a, const void *b)
{
    return strcmp(((const decl_t *)a)->s->declarationtype, ((const decl_t *)b)->s->declarationtype);
}

static void put_os_versions(FILE *f, const schema_t *s)
{
    for (int os = 0; os < SCHEMA_NOS; os++) {
        fputs(", ", f);
        put_literal(f, s->introduced[os]);
    }
}

static void emit_declarations(gen_t *g, schema_t **const *sets, const size_t *counts)
{
    size_t total = 0;
    for (size_t d = 0; d < 4; d++)
        total += counts[d];
    decl_t *decls = calloc(total ? total : 1, sizeof *decls);
    if (!decls) {
        fail(g, "out of memory");
        return;
    }
    size_t n = 0;
    for (size_t d = 0; d < 4 && !g->err[0]; d++) {
        for (size_t i = 0; i < counts[d] && !g->err[0]; i++) {
            const schema_t *s = sets[d][i];
            if (!s->declarationtype) {
                fail(g, "%s: no payload.declarationtype", s->path);
                break;
            }
            fprintf(g->out, "\n/* %s */\n", s->declarationtype);
            decls[n] = (decl_t){.s = s, .kind = declaration_dirs[d].kind, .keys_id = -1};
            if (s->nkeys)
                decls[n].keys_id = emit_keys(g, s->keys, s->nkeys, s->declarationtype, 1, 0);
            n++;
        }
    }
    qsort(decls, n, sizeof *decls, cmp_decl);
    for (size_t i = 1; i < n && !g->err[0]; i++)
        if (strcmp(decls[i - 1].s->declarationtype, decls[i].s->declarationtype) == 0)
            fail(g, "declaration type %s is defined twice (%s, %s)", decls[i].s->declarationtype, decls[i - 1].s->path,
                 decls[i].s->path);
    for (size_t r = 0; r < NCONFIG_REFS && !g->err[0]; r++)
        if (!g->config_refs_found[r])
            fail(g, "no key %s in %s (configuration reference rule)", configuration_refs[r].key,
                 configuration_refs[r].declaration);
    fputs("\n/* type, kind, Payload keys, introduced on iOS, macOS, tvOS, visionOS, watchOS */\n"
          "const ds_declaration_t ddm_schema_declarations[] = {\n",
          g->out);
    for (size_t i = 0; i < n; i++) {
        fputs("    {", g->out);
        put_literal(g->out, decls[i].s->declarationtype);
        fprintf(g->out, ", \"%s\", ", decls[i].kind);
        if (decls[i].keys_id >= 0)
            fprintf(g->out, "k%d, %zu", decls[i].keys_id, decls[i].s->nkeys);
        else
            fputs("NULL, 0", g->out);
        put_os_versions(g->out, decls[i].s);
        fputs("},\n", g->out);
    }
    fputs("};\nconst size_t ddm_schema_ndeclarations = sizeof ddm_schema_declarations / sizeof "
          "ddm_schema_declarations[0];\n",
          g->out);
    free(decls);
}

static void emit_assetlists(gen_t *g)
{
    /* In order of first use; ddm_schema.c looks these up by the address of
     * `types`. */
    fputs("\n/* distinct assettypes lists, comma-joined */\nconst ds_assetlist_t ddm_schema_assetlists[] = {\n", g->out);
    for (size_t i = 0; i < g->nasset; i++) {
        fprintf(g->out, "    {a%d, ", g->asset_ids[i]);
        put_literal(g->out, g->asset_joined[i]);
        fputs("},\n", g->out);
    }
    if (!g->nasset)
        fputs("    {NULL, NULL},\n", g->out);
    fprintf(g->out, "};\nconst size_t ddm_schema_nassetlists = %zu;\n", g->nasset);
}

static void emit_status_items(gen_t *g, schema_t **s, size_t n)
{
    char **names = calloc(n ? n : 1, sizeof *names);
    if (!names) {
        fail(g, "out of memory");
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n; i++)
        if (s[i]->statusitemtype)
            names[m++] = s[i]->statusitemtype;
    qsort(names, m, sizeof *names, cmp_str);
    fputs("\n/* declarative/status: statusitemtype */\nconst char *const ddm_schema_status_items[] = {\n", g->out);
    size_t out = 0;
    for (size_t i = 0; i < m; i++) {
        if (i && strcmp(names[i - 1], names[i]) == 0)
            continue;
        fputs("    ", g->out);
        put_literal(g->out, names[i]);
        fputs(",\n", g->out);
        out++;
    }
    fprintf(g->out, "};\nconst size_t ddm_schema_nstatus_items = %zu;\n", out);
    free(names);
}

typedef struct {
    const char *name, *watchos;
} support_t;

static int cmp_support(const void *a, const void *b)
{
    return strcmp(((const support_t *)a)->name, ((const support_t *)b)->name);
}

static int on_watchos(const char *introduced)
{
    return introduced && strcmp(introduced, "n/a") != 0;
}

/* name (requesttype/payloadtype) -> watchOS introduced. Rule: the schema
 * docs (docs/schema.md) let a *key* inherit supportedOS from its payload;
 * the payload itself inherits from nothing, so a file without a watchOS
 * entry (or without supportedOS at all, e.g. com.apple.security.wapi-identity)
 * does not claim watchOS: not supported. A type defined by several files
 * (com.apple.MCX, com.apple.extensiblesso) is supported if any file says so. */
static void emit_support(gen_t *g, schema_t **s, size_t n, int commands, const char *symbol, const char *count)
{
    support_t *v = calloc(n ? n : 1, sizeof *v);
    if (!v) {
        fail(g, "out of memory");
        return;
    }
    size_t m = 0;
    for (size_t i = 0; i < n && !g->err[0]; i++) {
        const char *name = commands ? s[i]->requesttype : s[i]->payloadtype;
        if (!name) {
            fail(g, "%s: no payload.%s", s[i]->path, commands ? "requesttype" : "payloadtype");
            break;
        }
        if (!commands && (strcmp(name, "TopLevel") == 0 || strcmp(name, "CommonPayloadKeys") == 0))
            continue;
        v[m++] = (support_t){.name = name, .watchos = s[i]->introduced[SCHEMA_WATCHOS]};
    }
    qsort(v, m, sizeof *v, cmp_support);
    fprintf(g->out, "\n/* %s: name, watchOS introduced */\nconst ds_os_support_t %s[] = {\n",
            commands ? "mdm/commands" : "mdm/profiles", symbol);
    size_t out = 0;
    for (size_t i = 0; i < m; i++) {
        /* Merge a repeated name: keep the first version that supports watchOS. */
        const char *watchos = v[i].watchos;
        size_t j = i;
        while (j + 1 < m && strcmp(v[j + 1].name, v[i].name) == 0) {
            j++;
            if (!on_watchos(watchos) && on_watchos(v[j].watchos))
                watchos = v[j].watchos;
        }
        fputs("    {", g->out);
        put_literal(g->out, v[i].name);
        fputs(", ", g->out);
        put_literal(g->out, watchos);
        fputs("},\n", g->out);
        out++;
        i = j;
    }
    fprintf(g->out, "};\nconst size_t %s = %zu;\n", count, out);
    free(v);
}

/* ---- main ------------------------------------------------------------------------ */

static int generate(gen_t *g, const char *repo)
{
    schema_t **decl[4] = {NULL};
    size_t ndecl[4] = {0};
    for (size_t d = 0; d < 4 && !g->err[0]; d++) {
        char *sub = util_strdup_printf("declarative/declarations/%s", declaration_dirs[d].dir);
        decl[d] = sub ? load_dir(g, repo, sub, &ndecl[d]) : NULL;
        free(sub);
    }
    size_t nstatus = 0, ncmd = 0, nprof = 0;
    schema_t **status = g->err[0] ? NULL : load_dir(g, repo, "declarative/status", &nstatus);
    schema_t **cmds = g->err[0] ? NULL : load_dir(g, repo, "mdm/commands", &ncmd);
    schema_t **profs = g->err[0] ? NULL : load_dir(g, repo, "mdm/profiles", &nprof);
    char *source = source_of(repo);
    if (!g->err[0] && source) {
        fputs("/* GENERATED by tools/gen_schema_tables.c from Apple's device-management schemas\n"
              " * (github.com/apple/device-management), ",
              g->out);
        fputs(source, g->out);
        fputs(".\n"
              " * Do not edit. Regenerate: make schema-tables APPLE_SCHEMAS=<path to the schema repository>\n"
              " * (default ../shared/apple-device-management).\n"
              " *\n"
              " * Key fields: name, type, required, rangelist, assettypes, refers_configurations, subkeys, count,\n"
              " * has_min, has_max, min, max, format, rep_min, rep_max.\n"
              " */\n"
              "#include \"ddm_schema_table.h\"\n"
              "\n"
              "const char ddm_schema_source[] = ",
              g->out);
        put_literal(g->out, source);
        fputs(";\n", g->out);
        emit_declarations(g, decl, ndecl);
        emit_assetlists(g);
        emit_status_items(g, status, nstatus);
        emit_support(g, cmds, ncmd, 1, "ddm_schema_commands", "ddm_schema_ncommands");
        emit_support(g, profs, nprof, 0, "ddm_schema_payloads", "ddm_schema_npayloads");
    } else if (!source) {
        fail(g, "out of memory");
    }
    free(source);
    for (size_t d = 0; d < 4; d++)
        free_schemas(decl[d], ndecl[d]);
    free_schemas(status, nstatus);
    free_schemas(cmds, ncmd);
    free_schemas(profs, nprof);
    return g->err[0] ? -1 : 0;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: %s APPLE_DEVICE_MANAGEMENT_DIR [OUT.c]\n", argv[0]);
        return 2;
    }
    gen_t g;
    memset(&g, 0, sizeof g);
    char *text = NULL;
    size_t len = 0;
    if (!(g.out = open_memstream(&text, &len))) {
        fprintf(stderr, "gen_schema_tables: out of memory\n");
        return 1;
    }
    int rc = generate(&g, argv[1]);
    fclose(g.out);
    for (size_t i = 0; i < g.nasset; i++)
        free(g.asset_joined[i]);
    free(g.asset_joined);
    free(g.asset_ids);
    /* Written only when complete: a failed run leaves the old table. */
    if (rc == 0) {
        if (argc == 3)
            rc = util_write_file(argv[2], text, len, 0644);
        else
            rc = fwrite(text, 1, len, stdout) == len ? 0 : -1;
        if (rc != 0)
            snprintf(g.err, sizeof g.err, "cannot write %s", argc == 3 ? argv[2] : "standard output");
    }
    free(text);
    if (rc != 0) {
        fprintf(stderr, "gen_schema_tables: %s\n", g.err);
        return 1;
    }
    return 0;
}
