/* Storage conformance, declarative device management (schema 5):
 * declarations and references, sets, assignments, groups, effective
 * declarations, sync candidates and queueing, the status channel, asset data,
 * the DDM reset at re-enrollment, and the schema 4 -> 5 migration. Written
 * against store.h only (except the migration test, SQLite-specific), so
 * every backend runs it (ORCHARD_TEST_DB=URL). A shared database may hold
 * other tests' rows: every name carries this test's prefix and listings are
 * checked for this test's names only. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <sqlite3.h>

#include "store_conformance.h"

#define OPS(fx) ((fx)->s->ops)
#define MAX_NAMES 64

typedef struct {
    int n;
    char name[MAX_NAMES][CONF_NAME_LEN];
    char kind[MAX_NAMES][24];
} names_t;

static int collect_name(void *ctx, const char *name)
{
    names_t *c = ctx;
    if (c->n < MAX_NAMES)
        snprintf(c->name[c->n], CONF_NAME_LEN, "%s", name);
    c->n++;
    return 0;
}

static int collect_decl(void *ctx, const declaration_t *d)
{
    names_t *c = ctx;
    if (c->n < MAX_NAMES) {
        snprintf(c->name[c->n], CONF_NAME_LEN, "%s", d->identifier);
        snprintf(c->kind[c->n], sizeof c->kind[0], "%s", d->kind);
    }
    c->n++;
    return 0;
}

/* Keeps only the names that carry this test's prefix (shared databases). */
static void only_mine(conf_t *fx, names_t *c)
{
    int k = 0;
    for (int i = 0; i < c->n && i < MAX_NAMES; i++) {
        if (strncmp(c->name[i], fx->prefix, strlen(fx->prefix)) != 0)
            continue;
        if (k != i) {
            memcpy(c->name[k], c->name[i], CONF_NAME_LEN);
            memcpy(c->kind[k], c->kind[i], sizeof c->kind[0]);
        }
        k++;
    }
    c->n = k;
}

static int has(const names_t *c, const char *name)
{
    for (int i = 0; i < c->n && i < MAX_NAMES; i++)
        if (strcmp(c->name[i], name) == 0)
            return 1;
    return 0;
}

/* "a\nb\n..." of this test's names only, in the given order. */
static void mine_csv(conf_t *fx, const char *csv, char *out, size_t cap)
{
    out[0] = '\0';
    const char *p = csv;
    while (*p) {
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        if (strncmp(p, fx->prefix, strlen(fx->prefix)) == 0) {
            size_t used = strlen(out);
            snprintf(out + used, cap - used, "%s%.*s", used ? "\n" : "", (int)len, p);
        }
        if (!nl)
            break;
        p = nl + 1;
    }
}

static void assert_sets(conf_t *fx, const char *id, const char *expected)
{
    char *csv = NULL, mine[1024];
    assert_int_equal(OPS(fx)->ddm_enrollment_sets(fx->s, id, &csv), STORE_OK);
    assert_non_null(csv);
    mine_csv(fx, csv, mine, sizeof mine);
    assert_string_equal(mine, expected);
    free(csv);
}

/* Stores a declaration of `kind` whose token is derived from `rev`. */
static int put_decl(conf_t *fx, const char *id, const char *kind, const char *rev, const char *const *refs,
                    size_t nrefs, int64_t now, int *changed)
{
    char type[96], token[64], payload[96];
    snprintf(type, sizeof type, "com.apple.%s.test", kind);
    snprintf(token, sizeof token, "tok-%s", rev);
    snprintf(payload, sizeof payload, "{\"rev\":\"%s\"}", rev);
    declaration_t d = {.identifier = (char *)id,
                       .type = type,
                       .kind = (char *)kind,
                       .payload_json = payload,
                       .server_token = token};
    int dummy;
    return OPS(fx)->decl_put(fx->s, &d, refs, nrefs, now, changed ? changed : &dummy);
}

/* Stores (or replaces) this test's names as a set's members. */
static int put_set(conf_t *fx, const char *name, const char *const *members, size_t n)
{
    return OPS(fx)->set_put(fx->s, name, members, n, CONF_T0);
}

/* Effective declarations of a '\n'-joined list of set names. */
static void effective(conf_t *fx, const char *csv, names_t *out)
{
    memset(out, 0, sizeof *out);
    assert_int_equal(OPS(fx)->ddm_effective(fx->s, csv, collect_decl, out), STORE_OK);
}

static void test_decl_put_get_changed(void **state)
{
    conf_t *fx = *state;
    const char *id = conf_name(fx, "passcode");
    int changed = -1;
    assert_int_equal(put_decl(fx, id, DDM_KIND_CONFIGURATION, "1", NULL, 0, CONF_T0, &changed), STORE_OK);
    assert_int_equal(changed, 1);

    declaration_t d;
    assert_int_equal(OPS(fx)->decl_get(fx->s, id, &d), STORE_OK);
    assert_string_equal(d.identifier, id);
    assert_string_equal(d.type, "com.apple.configuration.test");
    assert_string_equal(d.kind, DDM_KIND_CONFIGURATION);
    assert_string_equal(d.payload_json, "{\"rev\":\"1\"}");
    assert_string_equal(d.server_token, "tok-1");
    assert_int_equal(d.created_at, CONF_T0);
    assert_int_equal(d.updated_at, CONF_T0);
    declaration_free(&d);

    /* Identical: nothing written, not even updated_at. */
    assert_int_equal(put_decl(fx, id, DDM_KIND_CONFIGURATION, "1", NULL, 0, CONF_T0 + 5, &changed), STORE_OK);
    assert_int_equal(changed, 0);
    assert_int_equal(OPS(fx)->decl_get(fx->s, id, &d), STORE_OK);
    assert_int_equal(d.updated_at, CONF_T0);
    declaration_free(&d);

    /* New content: replaced, created_at kept. */
    assert_int_equal(put_decl(fx, id, DDM_KIND_CONFIGURATION, "2", NULL, 0, CONF_T0 + 9, &changed), STORE_OK);
    assert_int_equal(changed, 1);
    assert_int_equal(OPS(fx)->decl_get(fx->s, id, &d), STORE_OK);
    assert_string_equal(d.server_token, "tok-2");
    assert_string_equal(d.payload_json, "{\"rev\":\"2\"}");
    assert_int_equal(d.created_at, CONF_T0);
    assert_int_equal(d.updated_at, CONF_T0 + 9);
    declaration_free(&d);

    assert_int_equal(OPS(fx)->decl_get(fx->s, conf_name(fx, "nope"), &d), STORE_NOTFOUND);

    /* Listing: by identifier, filtered by kind. */
    const char *asset = conf_name(fx, "a-asset");
    assert_int_equal(put_decl(fx, asset, DDM_KIND_ASSET, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    names_t all = {0}, configs = {0};
    assert_int_equal(OPS(fx)->decl_list(fx->s, NULL, collect_decl, &all), STORE_OK);
    only_mine(fx, &all);
    assert_int_equal(all.n, 2);
    assert_string_equal(all.name[0], asset);
    assert_string_equal(all.name[1], id);
    assert_int_equal(OPS(fx)->decl_list(fx->s, DDM_KIND_CONFIGURATION, collect_decl, &configs), STORE_OK);
    only_mine(fx, &configs);
    assert_int_equal(configs.n, 1);
    assert_string_equal(configs.name[0], id);

    /* Bad arguments. */
    declaration_t bad = {.identifier = (char *)id};
    assert_int_equal(OPS(fx)->decl_put(fx->s, &bad, NULL, 0, CONF_T0, &changed), STORE_ERR);
}

/* activation -> configuration -> asset: edges stored, dangling refused,
 * deletion refused while referenced. */
static void test_decl_refs(void **state)
{
    conf_t *fx = *state;
    const char *asset = conf_name(fx, "cert-asset");
    const char *config = conf_name(fx, "wifi");
    const char *act = conf_name(fx, "activate");
    const char *missing = conf_name(fx, "missing");
    assert_int_equal(put_decl(fx, asset, DDM_KIND_ASSET, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    const char *to_asset[] = {asset};
    assert_int_equal(put_decl(fx, config, DDM_KIND_CONFIGURATION, "1", to_asset, 1, CONF_T0, NULL), STORE_OK);
    const char *to_config[] = {config, config}; /* named twice: one edge */
    assert_int_equal(put_decl(fx, act, DDM_KIND_ACTIVATION, "1", to_config, 2, CONF_T0, NULL), STORE_OK);

    names_t r = {0};
    assert_int_equal(OPS(fx)->decl_referrers(fx->s, asset, collect_name, &r), STORE_OK);
    assert_int_equal(r.n, 1);
    assert_string_equal(r.name[0], config);

    /* Dangling: a new declaration is not stored, an existing one unchanged. */
    const char *dangling[] = {asset, missing};
    const char *fresh = conf_name(fx, "fresh");
    int changed = -1;
    assert_int_equal(put_decl(fx, fresh, DDM_KIND_CONFIGURATION, "1", dangling, 2, CONF_T0, &changed),
                     STORE_NOTFOUND);
    assert_int_equal(changed, 0);
    declaration_t d;
    assert_int_equal(OPS(fx)->decl_get(fx->s, fresh, &d), STORE_NOTFOUND);
    assert_int_equal(put_decl(fx, config, DDM_KIND_CONFIGURATION, "2", dangling, 2, CONF_T0 + 1, NULL),
                     STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->decl_get(fx->s, config, &d), STORE_OK);
    assert_string_equal(d.server_token, "tok-1");
    declaration_free(&d);

    /* Referenced: refused, naming the referrer. */
    char *who = NULL;
    assert_int_equal(OPS(fx)->decl_delete(fx->s, asset, &who), STORE_CONFLICT);
    assert_non_null(who);
    assert_string_equal(who, config);
    free(who);
    who = NULL;
    assert_int_equal(OPS(fx)->decl_delete(fx->s, config, &who), STORE_CONFLICT);
    assert_string_equal(who, act);
    free(who);
    who = NULL;

    /* Replacing a declaration replaces its edges. */
    assert_int_equal(put_decl(fx, config, DDM_KIND_CONFIGURATION, "3", NULL, 0, CONF_T0 + 2, NULL), STORE_OK);
    memset(&r, 0, sizeof r);
    assert_int_equal(OPS(fx)->decl_referrers(fx->s, asset, collect_name, &r), STORE_OK);
    assert_int_equal(r.n, 0);
    assert_int_equal(OPS(fx)->decl_delete(fx->s, asset, &who), STORE_OK);
    assert_null(who);
    assert_int_equal(OPS(fx)->decl_get(fx->s, asset, &d), STORE_NOTFOUND);

    /* Top-down deletion works. */
    assert_int_equal(OPS(fx)->decl_delete(fx->s, act, &who), STORE_OK);
    assert_int_equal(OPS(fx)->decl_delete(fx->s, config, &who), STORE_OK);
    assert_int_equal(OPS(fx)->decl_delete(fx->s, config, &who), STORE_NOTFOUND);
    assert_null(who);
}

static int count_assignment(void *ctx, const char *set_name, const char *kind, const char *target)
{
    (void)set_name, (void)kind, (void)target;
    (*(int *)ctx)++;
    return 0;
}

static void test_sets(void **state)
{
    conf_t *fx = *state;
    const char *a = conf_name(fx, "decl-a"), *b = conf_name(fx, "decl-b"), *c = conf_name(fx, "decl-c");
    assert_int_equal(put_decl(fx, a, DDM_KIND_CONFIGURATION, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    assert_int_equal(put_decl(fx, b, DDM_KIND_CONFIGURATION, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    assert_int_equal(put_decl(fx, c, DDM_KIND_ASSET, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    const char *set = conf_name(fx, "set one, with spaces");
    const char *other = conf_name(fx, "set two");

    const char *ba[] = {b, a};
    assert_int_equal(put_set(fx, set, ba, 2), STORE_OK);
    names_t m = {0};
    assert_int_equal(OPS(fx)->set_members(fx->s, set, collect_decl, &m), STORE_OK);
    assert_int_equal(m.n, 2);
    assert_string_equal(m.name[0], a); /* by identifier */
    assert_string_equal(m.name[1], b);

    /* Replace: the members are exactly the new list. */
    const char *cc[] = {c, c};
    assert_int_equal(put_set(fx, set, cc, 2), STORE_OK);
    memset(&m, 0, sizeof m);
    assert_int_equal(OPS(fx)->set_members(fx->s, set, collect_decl, &m), STORE_OK);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.name[0], c);

    /* An unknown member: refused, the set unchanged. */
    const char *bad[] = {a, conf_name(fx, "ghost")};
    assert_int_equal(put_set(fx, set, bad, 2), STORE_NOTFOUND);
    memset(&m, 0, sizeof m);
    assert_int_equal(OPS(fx)->set_members(fx->s, set, collect_decl, &m), STORE_OK);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.name[0], c);
    assert_int_equal(put_set(fx, conf_name(fx, "never"), bad, 2), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->set_members(fx->s, conf_name(fx, "never"), collect_decl, &m), STORE_NOTFOUND);

    /* An empty set exists. */
    assert_int_equal(put_set(fx, other, NULL, 0), STORE_OK);
    names_t l = {0};
    assert_int_equal(OPS(fx)->set_list(fx->s, collect_name, &l), STORE_OK);
    only_mine(fx, &l);
    assert_int_equal(l.n, 2);
    assert_string_equal(l.name[0], set);
    assert_string_equal(l.name[1], other);
    memset(&m, 0, sizeof m);
    assert_int_equal(OPS(fx)->set_members(fx->s, other, collect_decl, &m), STORE_OK);
    assert_int_equal(m.n, 0);

    /* decl_sets; deleting a declaration drops its memberships. */
    const char *ca[] = {c, a};
    assert_int_equal(put_set(fx, other, ca, 2), STORE_OK);
    names_t s = {0};
    assert_int_equal(OPS(fx)->decl_sets(fx->s, c, collect_name, &s), STORE_OK);
    assert_int_equal(s.n, 2);
    assert_string_equal(s.name[0], set);
    assert_string_equal(s.name[1], other);
    char *who = NULL;
    assert_int_equal(OPS(fx)->decl_delete(fx->s, c, &who), STORE_OK);
    memset(&s, 0, sizeof s);
    assert_int_equal(OPS(fx)->decl_sets(fx->s, c, collect_name, &s), STORE_OK);
    assert_int_equal(s.n, 0);
    memset(&m, 0, sizeof m);
    assert_int_equal(OPS(fx)->set_members(fx->s, other, collect_decl, &m), STORE_OK);
    assert_int_equal(m.n, 1);
    assert_string_equal(m.name[0], a);

    /* Deleting a set drops its assignments too. */
    assert_int_equal(OPS(fx)->set_assign(fx->s, other, DDM_TARGET_GROUP, conf_name(fx, "grp"), CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_delete(fx->s, other), STORE_OK);
    assert_int_equal(OPS(fx)->set_delete(fx->s, other), STORE_NOTFOUND);
    int rows = 0;
    assert_int_equal(OPS(fx)->set_assignments(fx->s, other, count_assignment, &rows), STORE_OK);
    assert_int_equal(rows, 0);
    assert_int_equal(OPS(fx)->set_members(fx->s, other, collect_decl, &m), STORE_NOTFOUND);
    /* The declaration itself stays. */
    declaration_t d;
    assert_int_equal(OPS(fx)->decl_get(fx->s, a, &d), STORE_OK);
    declaration_free(&d);

    /* A name with '\n' could not be told apart in a sets list. */
    assert_int_equal(OPS(fx)->set_put(fx->s, "bad\nname", NULL, 0, CONF_T0), STORE_ERR);
}

typedef struct {
    int n;
    char row[MAX_NAMES][3 * CONF_NAME_LEN];
} assignments_t;

static int collect_assignment(void *ctx, const char *set_name, const char *kind, const char *target)
{
    assignments_t *c = ctx;
    if (c->n < MAX_NAMES)
        snprintf(c->row[c->n], sizeof c->row[0], "%s|%s|%s", set_name, kind, target);
    c->n++;
    return 0;
}

/* Direct, group and "all" assignments; "all" reaches device channels only
 * (and ids that have not enrolled yet). */
static void test_assignments_and_groups(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "dev", 1, CONF_T0);
    assert_non_null(dev);
    char user[CONF_NAME_LEN];
    snprintf(user, sizeof user, "%s:user-1", dev);
    assert_int_equal(conf_token_update(fx, user, dev, NULL, 0, CONF_T0), STORE_OK);
    const char *later = conf_name(fx, "not-enrolled-yet");

    const char *s_dev = conf_name(fx, "s-direct"), *s_grp = conf_name(fx, "s-group"),
               *s_all = conf_name(fx, "s-all"), *s_user = conf_name(fx, "s-user");
    for (const char *const *n = (const char *const[]){s_dev, s_grp, s_all, s_user, NULL}; *n; n++)
        assert_int_equal(put_set(fx, *n, NULL, 0), STORE_OK);
    const char *grp = conf_name(fx, "grp-lab");
    const char *grp2 = conf_name(fx, "grp-floor");

    assert_int_equal(OPS(fx)->set_assign(fx->s, conf_name(fx, "nosuchset"), DDM_TARGET_ALL, "", CONF_T0),
                     STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_dev, "bogus", dev, CONF_T0), STORE_ERR);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_dev, DDM_TARGET_DEVICE, "", CONF_T0), STORE_ERR);

    /* Nothing assigned yet. */
    assert_sets(fx, dev, "");

    assert_int_equal(OPS(fx)->set_assign(fx->s, s_dev, DDM_TARGET_DEVICE, dev, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_dev, DDM_TARGET_DEVICE, dev, CONF_T0), STORE_OK); /* twice */
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_grp, DDM_TARGET_GROUP, grp, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_grp, DDM_TARGET_GROUP, grp2, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_user, DDM_TARGET_DEVICE, user, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_all, DDM_TARGET_ALL, "", CONF_T0), STORE_OK);

    assignments_t a = {0};
    assert_int_equal(OPS(fx)->set_assignments(fx->s, s_grp, collect_assignment, &a), STORE_OK);
    assert_int_equal(a.n, 2);
    char expect[3 * CONF_NAME_LEN];
    snprintf(expect, sizeof expect, "%s|group|%s", s_grp, grp2); /* by target */
    assert_string_equal(a.row[0], expect);
    memset(&a, 0, sizeof a);
    assert_int_equal(OPS(fx)->set_assignments(fx->s, NULL, collect_assignment, &a), STORE_OK);
    int found_all = 0;
    snprintf(expect, sizeof expect, "%s|all|", s_all);
    for (int i = 0; i < a.n && i < MAX_NAMES; i++)
        found_all |= strcmp(a.row[i], expect) == 0;
    assert_true(found_all || a.n > MAX_NAMES);

    /* Groups. */
    assert_int_equal(OPS(fx)->group_add(fx->s, grp, dev, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->group_add(fx->s, grp, dev, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->group_add(fx->s, grp, later, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->group_add(fx->s, grp2, dev, CONF_T0), STORE_OK);
    names_t g = {0};
    assert_int_equal(OPS(fx)->group_members(fx->s, grp, collect_name, &g), STORE_OK);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.name[0], dev);
    assert_string_equal(g.name[1], later);
    memset(&g, 0, sizeof g);
    assert_int_equal(OPS(fx)->enrollment_groups(fx->s, dev, collect_name, &g), STORE_OK);
    assert_int_equal(g.n, 2);
    assert_string_equal(g.name[0], grp2);
    assert_string_equal(g.name[1], grp);

    /* Sorted, distinct (s_grp reaches dev through two groups). */
    char expect_dev[1024];
    snprintf(expect_dev, sizeof expect_dev, "%s\n%s\n%s", s_all, s_dev, s_grp);
    assert_sets(fx, dev, expect_dev);
    /* A user channel: its own assignment, not "all". */
    assert_sets(fx, user, s_user);
    /* An id without an enrollment is a (future) device channel. */
    char expect_later[1024];
    snprintf(expect_later, sizeof expect_later, "%s\n%s", s_all, s_grp);
    assert_sets(fx, later, expect_later);

    /* Removal. */
    assert_int_equal(OPS(fx)->group_remove(fx->s, grp, dev), STORE_OK);
    assert_int_equal(OPS(fx)->group_remove(fx->s, grp, dev), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->group_remove(fx->s, grp2, dev), STORE_OK);
    assert_int_equal(OPS(fx)->set_unassign(fx->s, s_all, DDM_TARGET_ALL, ""), STORE_OK);
    assert_int_equal(OPS(fx)->set_unassign(fx->s, s_all, DDM_TARGET_ALL, ""), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->set_unassign(fx->s, s_dev, DDM_TARGET_DEVICE, later), STORE_NOTFOUND);
    assert_sets(fx, dev, s_dev);
    memset(&g, 0, sizeof g);
    assert_int_equal(OPS(fx)->group_members(fx->s, grp2, collect_name, &g), STORE_OK);
    assert_int_equal(g.n, 0); /* a group exists while it has members */
}

/* Members of several sets closed over references, each once, ordered by
 * kind then identifier; set names may hold commas and spaces. */
static void test_effective(void **state)
{
    conf_t *fx = *state;
    const char *asset = conf_name(fx, "z-asset"), *config = conf_name(fx, "y-config"),
               *act = conf_name(fx, "x-act"), *mgmt = conf_name(fx, "w-mgmt"), *config2 = conf_name(fx, "b-config");
    assert_int_equal(put_decl(fx, asset, DDM_KIND_ASSET, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    const char *r1[] = {asset};
    assert_int_equal(put_decl(fx, config, DDM_KIND_CONFIGURATION, "1", r1, 1, CONF_T0, NULL), STORE_OK);
    const char *r2[] = {config};
    assert_int_equal(put_decl(fx, act, DDM_KIND_ACTIVATION, "1", r2, 1, CONF_T0, NULL), STORE_OK);
    assert_int_equal(put_decl(fx, mgmt, DDM_KIND_MANAGEMENT, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    assert_int_equal(put_decl(fx, config2, DDM_KIND_CONFIGURATION, "1", r1, 1, CONF_T0, NULL), STORE_OK);

    const char *s1 = conf_name(fx, "apps, phase 1");
    const char *s2 = conf_name(fx, "apps");
    const char *m1[] = {act};
    const char *m2[] = {config2, mgmt, config};
    assert_int_equal(put_set(fx, s1, m1, 1), STORE_OK);
    assert_int_equal(put_set(fx, s2, m2, 3), STORE_OK);

    names_t e;
    effective(fx, s1, &e); /* the activation brings the configuration and its asset */
    assert_int_equal(e.n, 3);
    assert_string_equal(e.name[0], act);
    assert_string_equal(e.kind[0], DDM_KIND_ACTIVATION);
    assert_string_equal(e.name[1], asset);
    assert_string_equal(e.name[2], config);

    char both[512];
    snprintf(both, sizeof both, "%s\n%s", s2, s1);
    effective(fx, both, &e);
    assert_int_equal(e.n, 5);
    assert_string_equal(e.name[0], act);     /* activation */
    assert_string_equal(e.name[1], asset);   /* asset */
    assert_string_equal(e.name[2], config2); /* configuration, by identifier */
    assert_string_equal(e.name[3], config);
    assert_string_equal(e.name[4], mgmt); /* management */

    /* The comma is part of a name, not a separator: "apps" alone. */
    effective(fx, s2, &e);
    assert_int_equal(e.n, 4);
    assert_false(has(&e, act));

    effective(fx, "", &e);
    assert_int_equal(e.n, 0);
    effective(fx, conf_name(fx, "no such set"), &e);
    assert_int_equal(e.n, 0);
    assert_int_equal(OPS(fx)->ddm_effective(fx->s, NULL, collect_decl, &e), STORE_ERR);
}

typedef struct {
    const char *want[4];
    int seen[4];
    char sets[4][512];
    char token[4][64];
    int has_token[4];
    int pending[4];
    char channel[4][16];
    int64_t seen_total;
} candidates_t;

static int collect_candidate(void *ctx, const ddm_candidate_t *c)
{
    candidates_t *k = ctx;
    k->seen_total++;
    for (int i = 0; i < 4; i++) {
        if (!k->want[i] || strcmp(k->want[i], c->enrollment->id) != 0)
            continue;
        k->seen[i]++;
        snprintf(k->sets[i], sizeof k->sets[i], "%s", c->sets);
        k->has_token[i] = c->token != NULL;
        snprintf(k->token[i], sizeof k->token[i], "%s", c->token ? c->token : "");
        k->pending[i] = c->sync_pending;
        snprintf(k->channel[i], sizeof k->channel[i], "%s", c->enrollment->channel);
    }
    return 0;
}

static void run_candidates(conf_t *fx, candidates_t *k)
{
    memset(k->seen, 0, sizeof k->seen);
    k->seen_total = 0;
    assert_int_equal(OPS(fx)->ddm_candidates(fx->s, collect_candidate, k), STORE_OK);
}

/* Queues a sync command `uuid` for ids with the given tokens. */
static int sync_queue(conf_t *fx, const char *uuid, const char *const *ids, const char *const *tokens, size_t n,
                      int64_t now, int *queued)
{
    char body[512];
    command_t c;
    conf_command(&c, uuid, "DeclarativeManagement", body, sizeof body);
    return OPS(fx)->ddm_sync_queue(fx->s, &c, ids, tokens, n, now, queued);
}

static void test_candidates(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "cand-dev", 1, CONF_T0);
    const char *gone = conf_active_device(fx, "cand-gone", 2, CONF_T0);
    const char *fresh = conf_name(fx, "cand-fresh"); /* authenticated, no TokenUpdate */
    assert_non_null(dev);
    assert_non_null(gone);
    assert_int_equal(conf_authenticate(fx, fresh, conf_cert(fx, 3), "iPhone14,5", NULL, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->checkout(fx->s, gone, CONF_T0 + 1), STORE_OK);
    char user[CONF_NAME_LEN];
    snprintf(user, sizeof user, "%s:u", dev);
    assert_int_equal(conf_token_update(fx, user, dev, NULL, 0, CONF_T0), STORE_OK);

    const char *s_all = conf_name(fx, "c-all"), *s_dev = conf_name(fx, "c-dev"), *s_user = conf_name(fx, "c-user"),
               *s_grp = conf_name(fx, "c-grp");
    for (const char *const *n = (const char *const[]){s_all, s_dev, s_user, s_grp, NULL}; *n; n++)
        assert_int_equal(put_set(fx, *n, NULL, 0), STORE_OK);
    const char *grp = conf_name(fx, "c-group");
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_all, DDM_TARGET_ALL, "", CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_dev, DDM_TARGET_DEVICE, dev, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_user, DDM_TARGET_DEVICE, user, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_grp, DDM_TARGET_GROUP, grp, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->set_assign(fx->s, s_grp, DDM_TARGET_DEVICE, dev, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->group_add(fx->s, grp, dev, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->group_add(fx->s, grp, user, CONF_T0), STORE_OK);

    candidates_t k = {.want = {dev, user, gone, fresh}};
    run_candidates(fx, &k);
    assert_int_equal(k.seen[0], 1);
    assert_int_equal(k.seen[1], 1);
    assert_int_equal(k.seen[2], 0); /* inactive */
    assert_int_equal(k.seen[3], 0); /* not active yet */
    char mine[1024], expect[1024];
    mine_csv(fx, k.sets[0], mine, sizeof mine);
    snprintf(expect, sizeof expect, "%s\n%s\n%s", s_all, s_dev, s_grp); /* s_grp twice: once */
    assert_string_equal(mine, expect);
    assert_string_equal(k.channel[0], "device");
    mine_csv(fx, k.sets[1], mine, sizeof mine);
    snprintf(expect, sizeof expect, "%s\n%s", s_grp, s_user); /* no "all" */
    assert_string_equal(mine, expect);
    assert_string_equal(k.channel[1], "user");
    /* The same as ddm_enrollment_sets. */
    char *csv = NULL;
    assert_int_equal(OPS(fx)->ddm_enrollment_sets(fx->s, dev, &csv), STORE_OK);
    assert_string_equal(csv, k.sets[0]);
    free(csv);
    assert_false(k.has_token[0]);
    assert_int_equal(k.pending[0], 0);

    /* After a sync: token and pending flag. */
    const char *ids[] = {dev};
    const char *tokens[] = {"tok-A"};
    int queued[1] = {0};
    assert_int_equal(sync_queue(fx, conf_name(fx, "cand-sync"), ids, tokens, 1, CONF_T0 + 10, queued), STORE_OK);
    run_candidates(fx, &k);
    assert_true(k.has_token[0]);
    assert_string_equal(k.token[0], "tok-A");
    assert_int_equal(k.pending[0], 1);
    assert_false(k.has_token[1]);
    assert_int_equal(OPS(fx)->ddm_candidates(fx->s, NULL, NULL), STORE_OK);
}

static int stop_first(void *ctx, const ddm_candidate_t *c)
{
    (void)c;
    (*(int *)ctx)++;
    return 1;
}

static void test_candidates_stop(void **state)
{
    conf_t *fx = *state;
    assert_non_null(conf_active_device(fx, "stop-a", 1, CONF_T0));
    assert_non_null(conf_active_device(fx, "stop-b", 2, CONF_T0));
    int calls = 0;
    assert_int_equal(OPS(fx)->ddm_candidates(fx->s, stop_first, &calls), STORE_OK);
    assert_int_equal(calls, 1);
}

static int count_kind(conf_t *fx, const char *id, const char *kind, char *detail, size_t cap)
{
    conf_events_t ev;
    memset(&ev, 0, sizeof ev);
    assert_int_equal(OPS(fx)->event_list(fx->s, id, 100, conf_collect_event, &ev), STORE_OK);
    int n = 0;
    for (int i = 0; i < ev.n && i < CONF_MAX_ROWS; i++) {
        if (strcmp(ev.row[i].kind, kind) != 0)
            continue;
        if (n == 0 && detail)
            snprintf(detail, cap, "%s", ev.row[i].detail);
        n++;
    }
    return n;
}

/* Coalescing, hand-out, UUID conflict, delivery through command_exchange. */
static void test_sync_queue(void **state)
{
    conf_t *fx = *state;
    const char *a = conf_active_device(fx, "sync-a", 1, CONF_T0);
    const char *b = conf_active_device(fx, "sync-b", 2, CONF_T0);
    const char *unknown = conf_name(fx, "sync-unknown");
    assert_non_null(a);
    assert_non_null(b);
    ddm_state_t st;
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, a, &st), STORE_NOTFOUND);

    const char *u1 = conf_name(fx, "sync-1");
    const char *ids[] = {a, b, unknown, a};
    const char *tok1[] = {"t1a", "t1b", "t1u", "t1a"};
    int queued[4] = {9, 9, 9, 9};
    assert_int_equal(sync_queue(fx, u1, ids, tok1, 4, CONF_T0 + 10, queued), STORE_OK);
    assert_int_equal(queued[0], 1);
    assert_int_equal(queued[1], 1);
    assert_int_equal(queued[2], 0); /* no such enrollment */
    assert_int_equal(queued[3], 0); /* listed twice: already queued by the first */
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, a, &st), STORE_OK);
    assert_string_equal(st.enrollment_id, a);
    assert_string_equal(st.token, "t1a");
    assert_int_equal(st.sync_pending, 1);
    assert_int_equal(st.token_changed_at, CONF_T0 + 10);
    assert_int_equal(st.status_at, 0);
    assert_int_equal(st.manifest_at, 0);
    ddm_state_free(&st);
    conf_targets_t t;
    int idx = -1;
    assert_int_equal(conf_target_of(fx, u1, a, &t, &idx), STORE_OK);
    assert_int_equal(t.n, 2); /* one command row, two targets */
    assert_string_equal(t.row[idx].request_type, "DeclarativeManagement");
    assert_int_equal(count_kind(fx, a, "command_queued", NULL, 0), 1);

    /* Pending: a second sync updates the token but queues nothing, and
     * stores no command. */
    const char *u2 = conf_name(fx, "sync-2");
    const char *ids2[] = {a};
    const char *tok2[] = {"t2a"};
    queued[0] = 9;
    assert_int_equal(sync_queue(fx, u2, ids2, tok2, 1, CONF_T0 + 20, queued), STORE_OK);
    assert_int_equal(queued[0], 0);
    command_t cmd;
    assert_int_equal(OPS(fx)->command_get(fx->s, u2, &cmd), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, a, &st), STORE_OK);
    assert_string_equal(st.token, "t2a");
    assert_int_equal(st.token_changed_at, CONF_T0 + 20);
    assert_int_equal(st.sync_pending, 1);
    ddm_state_free(&st);

    /* The same token again: Timestamp (token_changed_at) stays. */
    assert_int_equal(sync_queue(fx, conf_name(fx, "sync-2b"), ids2, tok2, 1, CONF_T0 + 25, queued), STORE_OK);
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, a, &st), STORE_OK);
    assert_int_equal(st.token_changed_at, CONF_T0 + 20);
    ddm_state_free(&st);

    /* A reused UUID is a conflict, even when nothing would be queued. */
    queued[0] = 9;
    assert_int_equal(sync_queue(fx, u1, ids2, tok2, 1, CONF_T0 + 30, queued), STORE_CONFLICT);
    assert_int_equal(queued[0], 0);

    /* The device gets the command through the normal exchange. */
    char next[CONF_NAME_LEN];
    assert_int_equal(conf_exchange(fx, a, NULL, CONF_T0 + 40, NULL, next, sizeof next), STORE_OK);
    assert_string_equal(next, u1);
    assert_int_equal(OPS(fx)->ddm_handed_out(fx->s, a, CONF_T0 + 40), STORE_OK);
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, a, &st), STORE_OK);
    assert_int_equal(st.sync_pending, 0);
    ddm_state_free(&st);
    command_report_t ack = conf_report(u1, CMD_STATUS_ACKNOWLEDGED, "<plist/>", NULL);
    int applied = 0;
    assert_int_equal(conf_exchange(fx, a, &ack, CONF_T0 + 41, &applied, next, sizeof next), STORE_NOTFOUND);
    assert_int_equal(applied, 1);

    /* Handed out: the next sync queues again. */
    const char *u3 = conf_name(fx, "sync-3");
    const char *tok3[] = {"t3a"};
    assert_int_equal(sync_queue(fx, u3, ids2, tok3, 1, CONF_T0 + 50, queued), STORE_OK);
    assert_int_equal(queued[0], 1);
    assert_int_equal(OPS(fx)->command_get(fx->s, u3, &cmd), STORE_OK);
    command_free(&cmd);

    /* A waiting sync command that an admin cancels does not block later
     * syncs. */
    assert_int_equal(OPS(fx)->command_cancel(fx->s, a, u3, CONF_T0 + 55), STORE_OK);
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, a, &st), STORE_OK);
    assert_int_equal(st.sync_pending, 0);
    ddm_state_free(&st);
    const char *u4 = conf_name(fx, "sync-4");
    const char *tok4[] = {"t4a"};
    assert_int_equal(sync_queue(fx, u4, ids2, tok4, 1, CONF_T0 + 60, queued), STORE_OK);
    assert_int_equal(queued[0], 1);

    /* Nothing queued at all: no command row. */
    const char *u5 = conf_name(fx, "sync-5");
    const char *ids5[] = {unknown};
    assert_int_equal(sync_queue(fx, u5, ids5, tok4, 1, CONF_T0 + 70, queued), STORE_OK);
    assert_int_equal(queued[0], 0);
    assert_int_equal(OPS(fx)->command_get(fx->s, u5, &cmd), STORE_NOTFOUND);

    /* Manifest fetches and hand-outs of unknown state are harmless. */
    assert_int_equal(OPS(fx)->ddm_touch(fx->s, b, CONF_T0 + 80), STORE_OK);
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, b, &st), STORE_OK);
    assert_int_equal(st.manifest_at, CONF_T0 + 80);
    assert_string_equal(st.token, "t1b");
    ddm_state_free(&st);
    assert_int_equal(OPS(fx)->ddm_handed_out(fx->s, unknown, CONF_T0), STORE_OK);
}

typedef struct {
    int n;
    ddm_status_item_t item[16];
} items_t;

static int collect_item(void *ctx, const ddm_status_item_t *i)
{
    items_t *c = ctx;
    if (c->n < 16) {
        c->item[c->n].name = strdup(i->name);
        c->item[c->n].value_json = strdup(i->value_json);
        c->item[c->n].updated_at = i->updated_at;
    }
    c->n++;
    return 0;
}

static void items_free(items_t *c)
{
    for (int i = 0; i < c->n && i < 16; i++)
        ddm_status_item_free(&c->item[i]);
    memset(c, 0, sizeof *c);
}

typedef struct {
    int n;
    ddm_decl_status_t d[16];
} decl_statuses_t;

static int collect_decl_status(void *ctx, const ddm_decl_status_t *d)
{
    decl_statuses_t *c = ctx;
    if (c->n < 16) {
        ddm_decl_status_t *o = &c->d[c->n];
        o->identifier = strdup(d->identifier);
        o->kind = d->kind ? strdup(d->kind) : NULL;
        o->server_token = d->server_token ? strdup(d->server_token) : NULL;
        o->valid = d->valid ? strdup(d->valid) : NULL;
        o->reasons_json = d->reasons_json ? strdup(d->reasons_json) : NULL;
        o->active = d->active;
        o->updated_at = d->updated_at;
    }
    c->n++;
    return 0;
}

static void decl_statuses_free(decl_statuses_t *c)
{
    for (int i = 0; i < c->n && i < 16; i++)
        ddm_decl_status_free(&c->d[i]);
    memset(c, 0, sizeof *c);
}

static void test_status_record(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "status", 1, CONF_T0);
    assert_non_null(dev);
    ddm_status_item_t items[] = {
        {.name = "device.operating-system.version", .value_json = "\"17.4\""},
        {.name = "device.model.family", .value_json = "\"iPhone\""},
    };
    ddm_decl_status_t decls[] = {
        {.identifier = "cfg-1", .kind = DDM_KIND_CONFIGURATION, .server_token = "s1", .active = 1, .valid = "valid"},
        {.identifier = "act-1",
         .kind = DDM_KIND_ACTIVATION,
         .server_token = "s2",
         .active = 0,
         .valid = "invalid",
         .reasons_json = "[{\"Code\":\"Error.ConfigurationCannotBeApplied\"}]"},
    };
    assert_int_equal(OPS(fx)->ddm_status_record(fx->s, dev, items, 2, decls, 2, 1, NULL, CONF_T0 + 5), STORE_OK);
    ddm_state_t st;
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, dev, &st), STORE_OK);
    assert_int_equal(st.status_at, CONF_T0 + 5);
    assert_null(st.token);
    assert_int_equal(st.sync_pending, 0);
    ddm_state_free(&st);

    items_t it = {0};
    assert_int_equal(OPS(fx)->ddm_status_items(fx->s, dev, collect_item, &it), STORE_OK);
    assert_int_equal(it.n, 2);
    assert_string_equal(it.item[0].name, "device.model.family"); /* by name */
    assert_string_equal(it.item[1].value_json, "\"17.4\"");
    assert_int_equal(it.item[1].updated_at, CONF_T0 + 5);
    items_free(&it);

    decl_statuses_t ds = {0};
    assert_int_equal(OPS(fx)->ddm_decl_statuses(fx->s, dev, collect_decl_status, &ds), STORE_OK);
    assert_int_equal(ds.n, 2);
    assert_string_equal(ds.d[0].identifier, "act-1");
    assert_int_equal(ds.d[0].active, 0);
    assert_string_equal(ds.d[0].valid, "invalid");
    assert_string_equal(ds.d[0].reasons_json, "[{\"Code\":\"Error.ConfigurationCannotBeApplied\"}]");
    assert_string_equal(ds.d[1].identifier, "cfg-1");
    assert_int_equal(ds.d[1].active, 1);
    assert_null(ds.d[1].reasons_json);
    decl_statuses_free(&ds);

    /* An incremental report: latest value per name and per identifier. */
    ddm_status_item_t newer[] = {{.name = "device.operating-system.version", .value_json = "\"17.5\""}};
    ddm_decl_status_t changed[] = {
        {.identifier = "act-1", .kind = DDM_KIND_ACTIVATION, .server_token = "s3", .active = 1, .valid = "valid"}};
    const char *errors = "[{\"StatusItem\":\"x\",\"Reasons\":[]}]";
    assert_int_equal(OPS(fx)->ddm_status_record(fx->s, dev, newer, 1, changed, 1, 0, errors, CONF_T0 + 9), STORE_OK);
    ddm_status_item_t one;
    assert_int_equal(OPS(fx)->ddm_status_item_get(fx->s, dev, "device.operating-system.version", &one), STORE_OK);
    assert_string_equal(one.value_json, "\"17.5\"");
    assert_int_equal(one.updated_at, CONF_T0 + 9);
    ddm_status_item_free(&one);
    assert_int_equal(OPS(fx)->ddm_status_item_get(fx->s, dev, "device.model.family", &one), STORE_OK);
    assert_int_equal(one.updated_at, CONF_T0 + 5);
    ddm_status_item_free(&one);
    assert_int_equal(OPS(fx)->ddm_status_item_get(fx->s, dev, "nope", &one), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->ddm_decl_statuses(fx->s, dev, collect_decl_status, &ds), STORE_OK);
    assert_int_equal(ds.n, 2);
    assert_string_equal(ds.d[0].server_token, "s3");
    assert_int_equal(ds.d[0].active, 1);
    assert_null(ds.d[0].reasons_json);
    decl_statuses_free(&ds);
    char detail[512] = "";
    assert_int_equal(count_kind(fx, dev, "ddm_status_errors", detail, sizeof detail), 1);
    assert_non_null(strstr(detail, "\"errors\":[{\"StatusItem\":\"x\""));

    /* A full report replaces the declaration statuses; an empty Errors
     * array writes no event. */
    assert_int_equal(OPS(fx)->ddm_status_record(fx->s, dev, NULL, 0, changed, 1, 1, "[]", CONF_T0 + 12), STORE_OK);
    assert_int_equal(OPS(fx)->ddm_decl_statuses(fx->s, dev, collect_decl_status, &ds), STORE_OK);
    assert_int_equal(ds.n, 1);
    assert_string_equal(ds.d[0].identifier, "act-1");
    decl_statuses_free(&ds);
    assert_int_equal(count_kind(fx, dev, "ddm_status_errors", NULL, 0), 1);
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, dev, &st), STORE_OK);
    assert_int_equal(st.status_at, CONF_T0 + 12);
    ddm_state_free(&st);

    /* Full report with no declarations at all: none left. */
    assert_int_equal(OPS(fx)->ddm_status_record(fx->s, dev, NULL, 0, NULL, 0, 1, NULL, CONF_T0 + 13), STORE_OK);
    assert_int_equal(OPS(fx)->ddm_decl_statuses(fx->s, dev, collect_decl_status, &ds), STORE_OK);
    assert_int_equal(ds.n, 0);

    ddm_status_item_t bad[] = {{.name = "x"}};
    assert_int_equal(OPS(fx)->ddm_status_record(fx->s, dev, bad, 1, NULL, 0, 0, NULL, CONF_T0), STORE_ERR);
}

static void test_asset_data(void **state)
{
    conf_t *fx = *state;
    const char *name = conf_name(fx, "root-ca.pem");
    unsigned char bytes[] = {'-', '-', 0, 0xff, '\n'};
    asset_data_t a = {.name = (char *)name,
                      .content_type = "application/pem",
                      .data = bytes,
                      .len = sizeof bytes,
                      .sha256 = "ab12"};
    asset_data_t out;
    assert_int_equal(OPS(fx)->asset_data_get(fx->s, name, &out), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->asset_data_put(fx->s, &a, CONF_T0), STORE_OK);
    assert_int_equal(OPS(fx)->asset_data_get(fx->s, name, &out), STORE_OK);
    assert_string_equal(out.name, name);
    assert_string_equal(out.content_type, "application/pem");
    assert_int_equal(out.len, sizeof bytes);
    assert_memory_equal(out.data, bytes, sizeof bytes);
    assert_string_equal(out.sha256, "ab12");
    assert_int_equal(out.updated_at, CONF_T0);
    asset_data_free(&out);

    /* Replace, with empty data. */
    asset_data_t empty = {.name = (char *)name, .content_type = "text/plain", .sha256 = "e3b0"};
    assert_int_equal(OPS(fx)->asset_data_put(fx->s, &empty, CONF_T0 + 1), STORE_OK);
    assert_int_equal(OPS(fx)->asset_data_get(fx->s, name, &out), STORE_OK);
    assert_int_equal(out.len, 0);
    assert_non_null(out.data);
    assert_string_equal(out.content_type, "text/plain");
    assert_int_equal(out.updated_at, CONF_T0 + 1);
    asset_data_free(&out);

    assert_int_equal(OPS(fx)->asset_data_delete(fx->s, name), STORE_OK);
    assert_int_equal(OPS(fx)->asset_data_delete(fx->s, name), STORE_NOTFOUND);
    assert_int_equal(OPS(fx)->asset_data_get(fx->s, name, &out), STORE_NOTFOUND);
    asset_data_t bad = {.name = (char *)name};
    assert_int_equal(OPS(fx)->asset_data_put(fx->s, &bad, CONF_T0), STORE_ERR);
}

/* The device forgot its DDM state at unenrollment: so does orchard when it
 * enrolls again; an Authenticate of an enrolled device keeps it. */
static void test_reenrollment_resets_ddm(void **state)
{
    conf_t *fx = *state;
    const char *dev = conf_active_device(fx, "reenroll", 1, CONF_T0);
    assert_non_null(dev);
    char user[CONF_NAME_LEN];
    snprintf(user, sizeof user, "%s:u", dev);
    assert_int_equal(conf_token_update(fx, user, dev, NULL, 0, CONF_T0), STORE_OK);
    const char *ids[] = {dev, user};
    const char *tokens[] = {"tk", "tku"};
    int queued[2];
    const char *u1 = conf_name(fx, "re-sync");
    assert_int_equal(sync_queue(fx, u1, ids, tokens, 2, CONF_T0 + 1, queued), STORE_OK);
    ddm_status_item_t items[] = {{.name = "device.operating-system.version", .value_json = "\"17.4\""}};
    ddm_decl_status_t decls[] = {{.identifier = "cfg", .kind = DDM_KIND_CONFIGURATION, .active = 1, .valid = "valid"}};
    for (int i = 0; i < 2; i++)
        assert_int_equal(OPS(fx)->ddm_status_record(fx->s, ids[i], items, 1, decls, 1, 1, NULL, CONF_T0 + 2),
                         STORE_OK);

    /* Active device authenticating again (renewal): state kept. */
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 1), "iPhone14,5", NULL, CONF_T0 + 3), STORE_OK);
    ddm_state_t st;
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, dev, &st), STORE_OK);
    assert_int_equal(st.sync_pending, 1);
    ddm_state_free(&st);

    assert_int_equal(OPS(fx)->checkout(fx->s, dev, CONF_T0 + 4), STORE_OK);
    assert_int_equal(conf_authenticate(fx, dev, conf_cert(fx, 2), "iPhone14,5", NULL, CONF_T0 + 5), STORE_OK);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(OPS(fx)->ddm_state_get(fx->s, ids[i], &st), STORE_NOTFOUND);
        items_t it = {0};
        assert_int_equal(OPS(fx)->ddm_status_items(fx->s, ids[i], collect_item, &it), STORE_OK);
        assert_int_equal(it.n, 0);
        decl_statuses_t ds = {0};
        assert_int_equal(OPS(fx)->ddm_decl_statuses(fx->s, ids[i], collect_decl_status, &ds), STORE_OK);
        assert_int_equal(ds.n, 0);
    }
    /* The old sync command was cancelled; a new sync queues afresh. */
    conf_targets_t t;
    int idx = -1;
    assert_int_equal(conf_target_of(fx, u1, dev, &t, &idx), STORE_OK);
    assert_string_equal(t.row[idx].status, CMD_STATUS_CANCELLED);
    assert_int_equal(sync_queue(fx, conf_name(fx, "re-sync-2"), ids, tokens, 1, CONF_T0 + 6, queued), STORE_OK);
    assert_int_equal(queued[0], 1);

    /* A brand-new enrollment drops rows left for its id beforehand. */
    const char *newdev = conf_name(fx, "brand-new");
    assert_int_equal(OPS(fx)->ddm_status_record(fx->s, newdev, items, 1, decls, 1, 1, NULL, CONF_T0), STORE_OK);
    assert_int_equal(conf_authenticate(fx, newdev, conf_cert(fx, 3), "iPhone14,5", NULL, CONF_T0 + 7), STORE_OK);
    assert_int_equal(OPS(fx)->ddm_state_get(fx->s, newdev, &st), STORE_NOTFOUND);
}

/* SQLite-specific: a schema 4 database (made by stripping schema 5 from a
 * fresh one) upgrades in place and keeps its rows. */
static void test_migration_from_schema_4(void **state)
{
    conf_t *fx = *state;
    if (fx->shared)
        skip();
    const char *dev = conf_active_device(fx, "old-dev", 1, CONF_T0);
    assert_non_null(dev);
    assert_int_equal(conf_enqueue(fx, conf_name(fx, "old-cmd"), "DeviceInformation", &dev, 1, CONF_T0), STORE_OK);
    store_close(fx->s);
    fx->s = NULL;

    sqlite3 *db = NULL;
    assert_int_equal(sqlite3_open(fx->path, &db), SQLITE_OK);
    char *err = NULL;
    int rc = sqlite3_exec(db,
                          "DROP TABLE settings; DROP TABLE ade_profiles; DROP TABLE ade_devices; DROP TABLE ade_tokens;"
                          "ALTER TABLE enrollments DROP COLUMN awaiting_configuration;"
                          "DROP TABLE watch_pairings; DROP TABLE pairing_tokens; DROP TABLE asset_data;"
                          "DROP TABLE ddm_decl_status; DROP TABLE ddm_status_items; DROP TABLE ddm_state;"
                          "DROP TABLE group_members; DROP TABLE set_assignments; DROP TABLE set_members;"
                          "DROP TABLE decl_sets; DROP TABLE decl_refs; DROP TABLE declarations;"
                          "ALTER TABLE enrollments DROP COLUMN supervised; PRAGMA user_version = 4;",
                          NULL, NULL, &err);
    if (rc != SQLITE_OK)
        fprintf(stderr, "%s\n", err ? err : "?");
    sqlite3_free(err);
    assert_int_equal(rc, SQLITE_OK);
    sqlite3_close(db);

    fx->s = conf_open(fx);
    assert_non_null(fx->s);
    enrollment_t e;
    assert_int_equal(OPS(fx)->enrollment_get(fx->s, dev, &e), STORE_OK);
    assert_string_equal(e.state, ENR_STATE_ACTIVE);
    assert_int_equal(e.supervised, -1);
    enrollment_free(&e);
    char next[CONF_NAME_LEN];
    assert_int_equal(conf_exchange(fx, dev, NULL, CONF_T0 + 1, NULL, next, sizeof next), STORE_OK);
    assert_string_equal(next, conf_name(fx, "old-cmd"));
    /* The new tables work. */
    assert_int_equal(put_decl(fx, conf_name(fx, "d"), DDM_KIND_CONFIGURATION, "1", NULL, 0, CONF_T0, NULL), STORE_OK);
    assert_int_equal(OPS(fx)->enrollment_set_supervised(fx->s, dev, 1, CONF_T0), STORE_OK);

    sqlite3 *check = NULL;
    assert_int_equal(sqlite3_open(fx->path, &check), SQLITE_OK);
    sqlite3_stmt *st = NULL;
    assert_int_equal(sqlite3_prepare_v2(check, "PRAGMA user_version", -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    /* Migrated past 5 to whatever the binary's latest schema is. */
    assert_true(sqlite3_column_int(st, 0) >= 5);
    sqlite3_finalize(st);
    sqlite3_close(check);
}

#define STORE_TEST(f) cmocka_unit_test_setup_teardown(f, conf_setup, conf_teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        STORE_TEST(test_decl_put_get_changed),
        STORE_TEST(test_decl_refs),
        STORE_TEST(test_sets),
        STORE_TEST(test_assignments_and_groups),
        STORE_TEST(test_effective),
        STORE_TEST(test_candidates),
        STORE_TEST(test_candidates_stop),
        STORE_TEST(test_sync_queue),
        STORE_TEST(test_status_record),
        STORE_TEST(test_asset_data),
        STORE_TEST(test_reenrollment_resets_ddm),
        STORE_TEST(test_migration_from_schema_4),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
