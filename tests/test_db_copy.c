/* orchard db copy (store_copy.c): a SQLite store filled through the store
 * API with every kind of row is copied to PostgreSQL and from there back
 * to a new SQLite file; each copy must read back, through the store API,
 * exactly like the original (a text dump of everything the API can list).
 * The copies keep working: new commands and events get fresh ids after
 * the copied ones, and secrets stored as digests (SCEP challenges,
 * pairing tokens) are still recognised. A non-empty target is refused and
 * left as it was; the CLI reports that and a failed open without the
 * password.
 *
 * With ORCHARD_TEST_DB=postgres://... (tests/run.sh's second pass) the
 * middle hop is a scratch PostgreSQL database; without it, a SQLite file
 * (so the copier's SQLite side is tested in the first pass too). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "store.h"
#include "store_conformance.h"
#include "util.h"

typedef struct {
    char dir[64];
    char *src_url, *mid_url, *back_url;
    char *pg_admin_url; /* the test database, to create/drop the scratch one */
    char scratch_db[64];
} copy_fx;

static const char *pg_url(void)
{
    const char *u = getenv("ORCHARD_TEST_DB");
    return u && strncmp(u, "postgres", 8) == 0 ? u : NULL;
}

static void pg_admin(const char *url, const char *sql)
{
    PGconn *c = PQconnectdb(url);
    assert_int_equal(PQstatus(c), CONNECTION_OK);
    PQclear(PQexec(c, "SET client_min_messages = warning"));
    PGresult *r = PQexec(c, sql);
    if (PQresultStatus(r) != PGRES_COMMAND_OK)
        fprintf(stderr, "%s: %s", sql, PQerrorMessage(c));
    assert_int_equal(PQresultStatus(r), PGRES_COMMAND_OK);
    PQclear(r);
    PQfinish(c);
}

static int setup(void **state)
{
    copy_fx *fx = calloc(1, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/orchard-copy-XXXXXX");
    if (!mkdtemp(fx->dir))
        return -1;
    fx->src_url = util_strdup_printf("sqlite:%s/source.db", fx->dir);
    fx->back_url = util_strdup_printf("sqlite:%s/back.db", fx->dir);
    const char *pg = pg_url();
    if (pg) {
        /* A scratch database: the copy target must be empty. */
        snprintf(fx->scratch_db, sizeof fx->scratch_db, "orchard_copy_%d", (int)getpid());
        fx->pg_admin_url = strdup(pg);
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", fx->scratch_db);
        pg_admin(pg, sql);
        snprintf(sql, sizeof sql, "CREATE DATABASE %s", fx->scratch_db);
        pg_admin(pg, sql);
        const char *slash = strrchr(pg, '/');
        fx->mid_url = util_strdup_printf("%.*s/%s", (int)(slash - pg), pg, fx->scratch_db);
    } else {
        fx->mid_url = util_strdup_printf("sqlite:%s/middle.db", fx->dir);
    }
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    copy_fx *fx = *state;
    if (fx->pg_admin_url) {
        char sql[128];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS %s WITH (FORCE)", fx->scratch_db);
        pg_admin(fx->pg_admin_url, sql);
    }
    conf_remove_dir(fx->dir);
    free(fx->src_url), free(fx->mid_url), free(fx->back_url), free(fx->pg_admin_url);
    free(fx);
    return 0;
}

static store_t *open_url(const char *url)
{
    char *err = NULL;
    store_t *s = store_open(url, &err);
    if (!s)
        fprintf(stderr, "store_open: %s\n", err ? err : "?");
    free(err);
    assert_non_null(s);
    return s;
}

/* ---- filling the source -------------------------------------------------- */

#define T0 CONF_T0
static const char *const pairing_secret = "pairing-secret-token-1";
static const char *const challenge_secret = "challenge-secret-1";

static void must(store_t *s, int rc)
{
    if (rc != STORE_OK)
        fprintf(stderr, "store: %s\n", s->ops->errmsg(s));
    assert_int_equal(rc, STORE_OK);
}

static void put_decl(store_t *s, const char *id, const char *type, const char *kind, const char *payload,
                     const char *const *refs, size_t nrefs)
{
    declaration_t d = {.identifier = (char *)id, .type = (char *)type, .kind = (char *)kind,
                       .payload_json = (char *)payload, .server_token = (char *)"tok-1"};
    int changed = 0;
    must(s, s->ops->decl_put(s, &d, refs, nrefs, T0 + 5, &changed));
}

static void fill(conf_t *fx)
{
    store_t *s = fx->s;
    /* Enrollments: active, with a user channel and an unlock token; one
     * authenticated only; one checked out; one flagged silent. */
    static const unsigned char unlock[] = {0, 1, 2, 0xff, 0};
    must(s, conf_authenticate(fx, "DEV-A", conf_cert(fx, 1), "iPhone14,5", "SERIAL-A", T0));
    must(s, conf_token_update(fx, "DEV-A", "DEV-A", unlock, sizeof unlock, T0 + 1));
    token_update_t ut = {.topic = "com.apple.mgmt.External.test", .push_token = conf_push_token,
                         .push_token_len = sizeof conf_push_token, .push_magic = "user-magic",
                         .user_id = "UID-1", .user_short_name = "jane", .user_long_name = "Jane \xc3\x89toile"};
    must(s, s->ops->token_update(s, "DEV-A:UID-1", "DEV-A", &ut, T0 + 2));
    must(s, conf_authenticate(fx, "DEV-B", conf_cert(fx, 2), "iPad13,1", "SERIAL-B", T0));
    must(s, conf_authenticate(fx, "DEV-C", conf_cert(fx, 3), "Mac14,2", "SERIAL-C", T0));
    must(s, conf_token_update(fx, "DEV-C", "DEV-C", NULL, 0, T0 + 1));
    must(s, s->ops->checkout(s, "DEV-C", T0 + 3));
    must(s, conf_authenticate(fx, "DEV-D", conf_cert(fx, 4), "iPhone15,2", "SERIAL-D", T0 - 9000));
    must(s, conf_token_update(fx, "DEV-D", "DEV-D", NULL, 0, T0 - 9000));
    int marked = 0;
    must(s, s->ops->inactive_mark(s, T0 - 100, T0 + 4, &marked));
    assert_int_equal(marked, 1);
    must(s, s->ops->enrollment_set_supervised(s, "DEV-A", 1, T0 + 4));
    if (s->ops->enrollment_set_awaiting)
        must(s, s->ops->enrollment_set_awaiting(s, "DEV-A", 1, T0 + 4));
    push_result_t pr[2] = {{.enrollment_id = "DEV-A", .push_token = conf_push_token,
                            .push_token_len = sizeof conf_push_token, .apns_id = "APNS-1", .at = T0 + 5},
                           {.enrollment_id = "DEV-D", .push_token = conf_push_token,
                            .push_token_len = sizeof conf_push_token, .error = "BadDeviceToken",
                            .token_invalid = 1, .at = T0 + 5}};
    must(s, s->ops->push_results_record(s, pr, 2));

    /* Commands in every state, one with a binary body. */
    const char *a = "DEV-A", *both[] = {"DEV-A", "DEV-D"};
    must(s, conf_enqueue(fx, "CMD-1", "DeviceInformation", &a, 1, T0 + 10));
    must(s, conf_enqueue(fx, "CMD-2", "InstalledApplicationList", both, 2, T0 + 11));
    must(s, conf_enqueue(fx, "CMD-3", "ProfileList", &a, 1, T0 + 12));
    must(s, conf_enqueue(fx, "CMD-4", "RestartDevice", &a, 1, T0 + 13));
    static const unsigned char bin_body[] = {0x62, 0x70, 0x6c, 0x69, 0x73, 0x74, 0, 0xff, 0x10};
    command_t bin = {.uuid = "CMD-BIN", .request_type = "Settings", .body = (unsigned char *)bin_body,
                     .body_len = sizeof bin_body};
    int st[1];
    must(s, s->ops->command_enqueue(s, &bin, &a, 1, st, T0 + 14));
    command_report_t ack = conf_report("CMD-1", CMD_STATUS_ACKNOWLEDGED, "<plist>ack</plist>", NULL);
    must(s, conf_exchange(fx, "DEV-A", &ack, T0 + 20, NULL, NULL, 0));
    command_report_t err = conf_report("CMD-2", CMD_STATUS_ERROR, "<plist>err</plist>",
                                       "[{\"ErrorCode\":12021,\"ErrorDomain\":\"MCMDMErrorDomain\"}]");
    must(s, conf_exchange(fx, "DEV-A", &err, T0 + 21, NULL, NULL, 0));
    command_report_t notnow = conf_report("CMD-3", CMD_STATUS_NOTNOW, "<plist>later</plist>", NULL);
    must(s, conf_exchange(fx, "DEV-A", &notnow, T0 + 22, NULL, NULL, 0));
    must(s, s->ops->command_cancel(s, "DEV-A", "CMD-4", T0 + 23));
    must(s, s->ops->event_add(s, "DEV-A", "note", "{\"text\":\"caf\\u00e9 \\\"quoted\\\"\"}", T0 + 24));
    must(s, s->ops->event_add(s, NULL, "global", "{}", T0 + 24));

    /* Enrollment PKI. */
    issued_cert_t c1 = {.serial = "0a1b", .subject = "CN=DEV-A,O=orchard", .enrollment_id = "DEV-A",
                        .sha256 = (char *)conf_cert(fx, 1), .not_before = T0, .not_after = T0 + 86400 * 365,
                        .issued_at = T0};
    issued_cert_t c2 = {.serial = "0c", .subject = "CN=static", .sha256 = (char *)conf_cert(fx, 9),
                        .not_before = T0, .not_after = T0 + 86400, .issued_at = T0};
    must(s, s->ops->cert_add(s, &c1));
    must(s, s->ops->cert_add(s, &c2));
    must(s, s->ops->cert_revoke(s, "0c", T0 + 30));
    must(s, s->ops->challenge_add(s, challenge_secret, "DEV-NEW", T0 + 3600, T0));
    must(s, s->ops->challenge_add(s, "challenge-used", NULL, T0 + 3600, T0));
    char *bound = NULL;
    must(s, s->ops->challenge_consume(s, "challenge-used", T0 + 1, &bound));
    free(bound);
    must(s, s->ops->device_allow(s, "SERIAL-ALLOWED", T0));

    /* Declarative management. */
    put_decl(s, "asset.cred", "com.apple.asset.credential.scep", DDM_KIND_ASSET, "{\"Reference\":{}}", NULL, 0);
    const char *to_asset[] = {"asset.cred"};
    put_decl(s, "cfg.passcode", "com.apple.configuration.passcode.settings", DDM_KIND_CONFIGURATION,
             "{\"MinimumLength\":6}", to_asset, 1);
    const char *to_cfg[] = {"cfg.passcode"};
    put_decl(s, "act.base", "com.apple.activation.simple", DDM_KIND_ACTIVATION,
             "{\"StandardConfigurations\":[\"cfg.passcode\"]}", to_cfg, 1);
    const char *members[] = {"act.base", "cfg.passcode"};
    must(s, s->ops->set_put(s, "base", members, 2, T0 + 6));
    must(s, s->ops->set_put(s, "empty", NULL, 0, T0 + 6));
    must(s, s->ops->set_assign(s, "base", DDM_TARGET_DEVICE, "DEV-A", T0 + 7));
    must(s, s->ops->set_assign(s, "base", DDM_TARGET_GROUP, "staff", T0 + 7));
    must(s, s->ops->set_assign(s, "empty", DDM_TARGET_ALL, "", T0 + 7));
    must(s, s->ops->group_add(s, "staff", "DEV-A", T0 + 7));
    must(s, s->ops->group_add(s, "staff", "DEV-NOT-YET", T0 + 7));
    char sync_body[] = "<plist>sync</plist>";
    command_t sync = {.uuid = "CMD-SYNC", .request_type = "DeclarativeManagement",
                      .body = (unsigned char *)sync_body, .body_len = strlen(sync_body)};
    const char *ids[] = {"DEV-A", "DEV-D"}, *tokens[] = {"dtok-a", "dtok-d"};
    int queued[2];
    must(s, s->ops->ddm_sync_queue(s, &sync, ids, tokens, 2, T0 + 8, queued));
    must(s, s->ops->ddm_handed_out(s, "DEV-A", T0 + 9));
    must(s, s->ops->ddm_touch(s, "DEV-A", T0 + 9));
    ddm_status_item_t items[] = {{.name = "device.operating-system.version", .value_json = "\"17.4.1\""},
                                 {.name = "device.model.family", .value_json = "\"iPhone\""}};
    ddm_decl_status_t decls[] = {{.identifier = "cfg.passcode", .kind = DDM_KIND_CONFIGURATION,
                                  .server_token = "tok-1", .active = 1, .valid = "valid"},
                                 {.identifier = "act.base", .kind = DDM_KIND_ACTIVATION, .server_token = "tok-1",
                                  .active = 0, .valid = "invalid", .reasons_json = "[{\"Code\":\"Error.X\"}]"}};
    must(s, s->ops->ddm_status_record(s, "DEV-A", items, 2, decls, 2, 1, "[{\"e\":1}]", T0 + 10));
    static const unsigned char pem[] = "-----BEGIN CERTIFICATE-----\n\0binary\xff";
    asset_data_t ad = {.name = "ca.pem", .content_type = "application/pem", .data = (unsigned char *)pem,
                       .len = sizeof pem, .sha256 = "ab12"};
    must(s, s->ops->asset_data_put(s, &ad, T0 + 11));

    /* Apple Watch. */
    must(s, s->ops->pairing_add(s, pairing_secret, "WATCH-1", T0 + 600, T0));
    must(s, s->ops->pairing_bind_phone(s, pairing_secret, "WATCH-1", "DEV-A", T0 + 1));
    must(s, s->ops->watch_pair(s, "WATCH-1", "DEV-A", T0 + 2));
    must(s, s->ops->watch_pair_state(s, "WATCH-1", "enrolled", T0 + 3));
    must(s, s->ops->watch_pair(s, "WATCH-2", "DEV-A", T0 + 4));

    /* Automated Device Enrollment and settings, where the backend has them. */
    if (s->ops->ade_token_put) {
        ade_token_t t = {.name = "abm", .sealed = (unsigned char *)"\x01sealed\x00bytes", .sealed_len = 13,
                         .access_token_expiry = T0 + 86400 * 300};
        must(s, s->ops->ade_token_put(s, &t, T0));
        must(s, s->ops->ade_token_set_account(s, "abm", "Orchard MDM", "SRV-UUID", "Example Org", T0 + 1));
        must(s, s->ops->ade_token_sync_state(s, "abm", "cursor-1", NULL, T0 + 2));
        must(s, s->ops->ade_token_sync_state(s, "abm", NULL, "HTTP 503", T0 + 3));
        ade_profile_t p = {.profile_uuid = "PROF-1", .token_name = "abm", .name = "Default",
                           .json = "{\"profile_name\":\"Default\"}", .created_at = T0 + 4};
        must(s, s->ops->ade_profile_put(s, &p));
        must(s, s->ops->ade_token_set_default_profile(s, "abm", "PROF-1", T0 + 4));
        ade_device_t d[3] = {{.serial_number = "ADE-1", .token_name = "abm", .model = "iPad", .color = "black",
                              .device_assigned_date = T0 - 10, .profile_status = "empty"},
                             {.serial_number = "ADE-2", .token_name = "abm", .model = "Mac", .op_type = "added",
                              .op_date = T0 - 5},
                             {.serial_number = "ADE-2", .token_name = "abm", .op_type = "deleted",
                              .op_date = T0 - 1}};
        int applied[3];
        size_t added = 0;
        must(s, s->ops->ade_devices_apply(s, d, 3, T0 + 5, applied, &added));
        must(s, s->ops->ade_device_set_profile(s, "ADE-1", "PROF-1", "assigned", T0 + 6));
    }
    if (s->ops->setting_put) {
        static const unsigned char blob[] = {'{', 0, '}', 0xfe};
        must(s, s->ops->setting_put(s, "ade.setup_commands", blob, sizeof blob, T0));
        must(s, s->ops->setting_put(s, "empty", (const unsigned char *)"", 0, T0));
    }
}

/* ---- reading everything back as text ------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    store_t *s;
} dump_t;

/* What the source backend implements of schema 6 (every store in a run
 * then shows the same parts; the copy itself carries every table). */
static int with_ade, with_settings, with_awaiting;

__attribute__((format(printf, 2, 3))) static void out(dump_t *d, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    assert_true(n >= 0);
    if (d->len + (size_t)n + 1 > d->cap) {
        d->cap = (d->len + (size_t)n + 1) * 2;
        d->buf = realloc(d->buf, d->cap);
        assert_non_null(d->buf);
    }
    va_start(ap, fmt);
    vsnprintf(d->buf + d->len, d->cap - d->len, fmt, ap);
    va_end(ap);
    d->len += (size_t)n;
}

static void out_blob(dump_t *d, const char *name, const unsigned char *p, size_t len)
{
    out(d, " %s=", name);
    if (!p) {
        out(d, "NULL");
        return;
    }
    for (size_t i = 0; i < len; i++)
        out(d, "%02x", p[i]);
}

#define S(x) ((x) ? (x) : "NULL")

static int dump_target(void *ctx, const command_target_t *t)
{
    dump_t *d = ctx;
    out(d, "  target %s %s %s %s err=%s q=%lld u=%lld", t->command_uuid, t->enrollment_id, t->request_type,
        t->status, S(t->error_chain_json), (long long)t->queued_at, (long long)t->updated_at);
    out_blob(d, "result", t->result, t->result_len);
    out(d, "\n");
    return 0;
}

static int dump_event(void *ctx, const store_event_t *ev)
{
    dump_t *d = ctx;
    /* Event ids are the source's; they are copied as they are. */
    out(d, "  event %lld at=%lld %s %s %s\n", (long long)ev->id, (long long)ev->at, S(ev->enrollment_id), ev->kind,
        ev->detail);
    return 0;
}

static int dump_name(void *ctx, const char *name)
{
    out(ctx, " %s", name);
    return 0;
}

static int dump_status_item(void *ctx, const ddm_status_item_t *i)
{
    out(ctx, "  status %s=%s at=%lld\n", i->name, i->value_json, (long long)i->updated_at);
    return 0;
}

static int dump_decl_status(void *ctx, const ddm_decl_status_t *x)
{
    out(ctx, "  declstatus %s %s %s active=%d %s %s at=%lld\n", x->identifier, S(x->kind), S(x->server_token),
        x->active, S(x->valid), S(x->reasons_json), (long long)x->updated_at);
    return 0;
}

static int dump_enrollment(void *ctx, const enrollment_t *e)
{
    dump_t *d = ctx;
    store_t *s = d->s;
    out(d, "enrollment %s dev=%s udid=%s %s topic=%s sn=%s %s %s %s os=%s %s %s imei=%s meid=%s user=%s %s %s "
           "cert=%s %s magic=%s c=%lld u=%lld seen=%lld auth=%lld tok=%lld out=%lld push=%lld %s %s inv=%d "
           "silent=%lld repush=%lld sup=%d",
        e->id, e->device_id, S(e->udid), e->channel, S(e->topic), S(e->serial_number), S(e->model),
        S(e->model_name), S(e->product_name), S(e->os_version), S(e->build_version), S(e->device_name), S(e->imei),
        S(e->meid), S(e->user_id), S(e->user_short_name), S(e->user_long_name), S(e->cert_sha256), e->state,
        S(e->push_magic), (long long)e->created_at, (long long)e->updated_at, (long long)e->last_seen_at,
        (long long)e->authenticated_at, (long long)e->token_updated_at, (long long)e->checked_out_at,
        (long long)e->last_push_at, S(e->last_push_id), S(e->last_push_error), e->push_token_invalid,
        (long long)e->silent_since, (long long)e->last_repush_at, e->supervised);
    out_blob(d, "push", e->push_token, e->push_token_len);
    out_blob(d, "unlock", e->unlock_token, e->unlock_token_len);
    if (with_awaiting && strcmp(e->id, e->device_id) == 0) {
        int aw = -1;
        assert_int_equal(s->ops->enrollment_awaiting(s, e->id, &aw), STORE_OK);
        out(d, " awaiting=%d", aw);
    }
    out(d, "\n  groups:");
    assert_int_equal(s->ops->enrollment_groups(s, e->id, dump_name, d), STORE_OK);
    char *sets = NULL;
    assert_int_equal(s->ops->ddm_enrollment_sets(s, e->id, &sets), STORE_OK);
    out(d, "\n  sets: %s\n", sets);
    free(sets);
    assert_int_equal(s->ops->enrollment_commands(s, e->id, 0, 1000, dump_target, d), STORE_OK);
    assert_int_equal(s->ops->event_list(s, e->id, 1000, dump_event, d), STORE_OK);
    ddm_state_t st;
    int rc = s->ops->ddm_state_get(s, e->id, &st);
    if (rc == STORE_OK) {
        out(d, "  ddm token=%s pending=%d changed=%lld status=%lld manifest=%lld\n", S(st.token), st.sync_pending,
            (long long)st.token_changed_at, (long long)st.status_at, (long long)st.manifest_at);
        ddm_state_free(&st);
    } else {
        assert_int_equal(rc, STORE_NOTFOUND);
    }
    assert_int_equal(s->ops->ddm_status_items(s, e->id, dump_status_item, d), STORE_OK);
    assert_int_equal(s->ops->ddm_decl_statuses(s, e->id, dump_decl_status, d), STORE_OK);
    return 0;
}

static int dump_cert(void *ctx, const issued_cert_t *c)
{
    out(ctx, "cert %s %s %s %s %lld %lld %lld revoked=%lld\n", c->serial, c->subject, S(c->enrollment_id), c->sha256,
        (long long)c->not_before, (long long)c->not_after, (long long)c->issued_at, (long long)c->revoked_at);
    return 0;
}

static int dump_decl(void *ctx, const declaration_t *x)
{
    dump_t *d = ctx;
    out(d, "decl %s %s %s %s %s c=%lld u=%lld referrers:", x->identifier, x->type, x->kind, x->payload_json,
        x->server_token, (long long)x->created_at, (long long)x->updated_at);
    assert_int_equal(d->s->ops->decl_referrers(d->s, x->identifier, dump_name, d), STORE_OK);
    out(d, "\n");
    return 0;
}

static int dump_member(void *ctx, const declaration_t *x)
{
    out(ctx, " %s", x->identifier);
    return 0;
}

static int dump_set(void *ctx, const char *name)
{
    dump_t *d = ctx;
    out(d, "set %s:", name);
    assert_int_equal(d->s->ops->set_members(d->s, name, dump_member, d), STORE_OK);
    out(d, "\n");
    return 0;
}

static int dump_assignment(void *ctx, const char *set, const char *kind, const char *target)
{
    out(ctx, "assign %s %s '%s'\n", set, kind, target);
    return 0;
}

static int dump_watch(void *ctx, const watch_pairing_t *p)
{
    out(ctx, "watch %s %s %s %lld %lld\n", p->watch_udid, p->phone_udid, p->state, (long long)p->paired_at,
        (long long)p->updated_at);
    return 0;
}

static int dump_ade_token(void *ctx, const ade_token_t *t)
{
    dump_t *d = ctx;
    out(d, "ade token %s exp=%lld %s %s %s def=%s cur=%s %lld sync=%lld err=%s %lld imp=%lld u=%lld", t->name,
        (long long)t->access_token_expiry, S(t->server_name), S(t->server_uuid), S(t->org_name),
        S(t->default_profile_uuid), S(t->cursor), (long long)t->cursor_at, (long long)t->last_sync_at,
        S(t->last_error), (long long)t->last_error_at, (long long)t->imported_at, (long long)t->updated_at);
    out_blob(d, "sealed", t->sealed, t->sealed_len);
    out(d, "\n");
    return 0;
}

static int dump_ade_device(void *ctx, const ade_device_t *x)
{
    out(ctx, "ade device %s %s %s %s %s %s %s %s %s %s %lld %lld %lld %s %s %lld del=%d u=%lld\n", x->serial_number,
        x->token_name, S(x->model), S(x->description), S(x->color), S(x->asset_tag), S(x->device_family), S(x->os),
        S(x->profile_status), S(x->profile_uuid), (long long)x->profile_assign_time,
        (long long)x->profile_push_time, (long long)x->device_assigned_date, S(x->device_assigned_by),
        S(x->op_type), (long long)x->op_date, x->deleted, (long long)x->updated_at);
    return 0;
}

static int dump_ade_profile(void *ctx, const ade_profile_t *p)
{
    out(ctx, "ade profile %s %s %s %s %lld\n", p->profile_uuid, p->token_name, S(p->name), p->json,
        (long long)p->created_at);
    return 0;
}

/* Everything the store API can show about the filled store. Heap. */
static char *dump(store_t *s)
{
    dump_t d = {.s = s};
    enrollment_filter_t f = {.limit = 1000};
    assert_int_equal(s->ops->enrollment_list(s, &f, dump_enrollment, &d), STORE_OK);
    static const char *const uuids[] = {"CMD-1", "CMD-2", "CMD-3", "CMD-4", "CMD-BIN", "CMD-SYNC"};
    for (size_t i = 0; i < sizeof uuids / sizeof uuids[0]; i++) {
        command_t c;
        assert_int_equal(s->ops->command_get(s, uuids[i], &c), STORE_OK);
        out(&d, "command %s %s at=%lld", c.uuid, c.request_type, (long long)c.created_at);
        out_blob(&d, "body", c.body, c.body_len);
        out(&d, "\n");
        command_free(&c);
        assert_int_equal(s->ops->command_targets(s, uuids[i], dump_target, &d), STORE_OK);
    }
    assert_int_equal(s->ops->event_list(s, NULL, 1000, dump_event, &d), STORE_OK);
    assert_int_equal(s->ops->cert_list(s, NULL, 0, 1000, dump_cert, &d), STORE_OK);
    out(&d, "allowed=%d,%d\n", s->ops->device_allowed(s, NULL, "SERIAL-ALLOWED"),
        s->ops->device_allowed(s, "OTHER", NULL));
    assert_int_equal(s->ops->decl_list(s, NULL, dump_decl, &d), STORE_OK);
    assert_int_equal(s->ops->set_list(s, dump_set, &d), STORE_OK);
    assert_int_equal(s->ops->set_assignments(s, NULL, dump_assignment, &d), STORE_OK);
    out(&d, "group staff:");
    assert_int_equal(s->ops->group_members(s, "staff", dump_name, &d), STORE_OK);
    out(&d, "\n");
    asset_data_t ad;
    assert_int_equal(s->ops->asset_data_get(s, "ca.pem", &ad), STORE_OK);
    out(&d, "asset %s %s %s %lld", ad.name, ad.content_type, ad.sha256, (long long)ad.updated_at);
    out_blob(&d, "data", ad.data, ad.len);
    out(&d, "\n");
    asset_data_free(&ad);
    pairing_token_t pt;
    assert_int_equal(s->ops->pairing_get(s, pairing_secret, &pt), STORE_OK);
    out(&d, "pairing %s %s %lld %lld %lld %lld\n", pt.watch_udid, S(pt.phone_udid), (long long)pt.created_at,
        (long long)pt.expires_at, (long long)pt.bound_at, (long long)pt.used_at);
    pairing_token_free(&pt);
    assert_int_equal(s->ops->phone_watches(s, "DEV-A", dump_watch, &d), STORE_OK);
    if (with_ade) {
        assert_int_equal(s->ops->ade_token_list(s, dump_ade_token, &d), STORE_OK);
        assert_int_equal(s->ops->ade_device_list(s, NULL, 1, NULL, 1000, dump_ade_device, &d), STORE_OK);
        assert_int_equal(s->ops->ade_profile_list(s, NULL, dump_ade_profile, &d), STORE_OK);
    }
    if (with_settings) {
        static const char *const names[] = {"ade.setup_commands", "empty"};
        for (size_t i = 0; i < 2; i++) {
            unsigned char *v = NULL;
            size_t len = 0;
            assert_int_equal(s->ops->setting_get(s, names[i], &v, &len), STORE_OK);
            out(&d, "setting %s", names[i]);
            out_blob(&d, "value", v, len);
            out(&d, "\n");
            free(v);
        }
    }
    return d.buf;
}

/* The copy keeps working: fresh ids continue after the copied ones, and
 * the secrets kept as digests still match. */
static void still_works(store_t *s)
{
    char body[] = "<plist>new</plist>";
    command_t c = {.uuid = "CMD-NEW", .request_type = "DeviceInformation", .body = (unsigned char *)body,
                   .body_len = strlen(body)};
    const char *a = "DEV-A";
    int st[1];
    must(s, s->ops->command_enqueue(s, &c, &a, 1, st, T0 + 100));
    must(s, s->ops->event_add(s, "DEV-A", "after-copy", "{}", T0 + 100));
    char *bound = NULL;
    must(s, s->ops->challenge_consume(s, challenge_secret, T0 + 100, &bound));
    assert_string_equal(bound, "DEV-NEW");
    free(bound);
    assert_int_equal(s->ops->challenge_consume(s, "challenge-used", T0 + 100, &bound), STORE_NOTFOUND);
    must(s, s->ops->pairing_consume(s, pairing_secret, "WATCH-1", T0 + 100));
    /* The queue order survives: CMD-3 (NotNow) then CMD-BIN, CMD-NEW. */
    command_t next;
    int applied = 0;
    must(s, s->ops->command_exchange(s, "DEV-A", NULL, T0 + 101, &applied, &next));
    assert_string_equal(next.uuid, "CMD-3");
    command_free(&next);
}

static int64_t copy_between(const char *from_url, const char *to_url, int expect)
{
    store_t *from = open_url(from_url), *to = open_url(to_url);
    int64_t rows = -1;
    char *err = NULL;
    int rc = store_copy(from, to, &rows, &err);
    if (rc != expect)
        fprintf(stderr, "store_copy: %s\n", err ? err : "?");
    assert_int_equal(rc, expect);
    if (expect == STORE_OK)
        assert_null(err);
    else
        assert_non_null(err);
    free(err);
    store_close(to);
    store_close(from);
    return rows;
}

static void test_copy_round_trip(void **state)
{
    copy_fx *fx = *state;
    conf_t cf;
    memset(&cf, 0, sizeof cf);
    snprintf(cf.prefix, sizeof cf.prefix, "c0ffee");
    cf.s = open_url(fx->src_url);
    with_ade = cf.s->ops->ade_token_put != NULL;
    with_settings = cf.s->ops->setting_put != NULL;
    with_awaiting = cf.s->ops->enrollment_set_awaiting != NULL;
    fill(&cf);
    char *original = dump(cf.s);
    store_close(cf.s);
    /* The dump shows every kind of row filled in. */
    static const char *const expected[] = {
        "enrollment DEV-A:UID-1", "unlock=000102ff00", " inactive magic=", "target CMD-2 DEV-A", "MCMDMErrorDomain",
        "result=3c706c6973743e61636b", "body=62706c6973740", "event ", "caf\\u00e9", "cert 0c CN=static",
        "allowed=0,1", "decl act.base", "set base: act.base cfg.passcode", "assign empty all ''", "group staff: DEV-A",
        "ddm token=dtok-a", "status device.model.family", "declstatus act.base", "asset ca.pem", "pairing WATCH-1",
        "watch WATCH-1 DEV-A enrolled", "sup=1", "silent=1700000004", "inv=1"};
    for (size_t i = 0; i < sizeof expected / sizeof expected[0]; i++)
        if (!strstr(original, expected[i]))
            fail_msg("the dump lacks \"%s\":\n%s", expected[i], original);
    static const char *const expected_ade[] = {"ade token abm exp=", "ade device ADE-1 abm iPad", "del=1",
                                               "ade profile PROF-1", "setting ade.setup_commands value=7b007dfe",
                                               "awaiting=1"};
    for (size_t i = 0; with_ade && with_settings && i < sizeof expected_ade / sizeof expected_ade[0]; i++)
        if (!strstr(original, expected_ade[i]))
            fail_msg("the dump lacks \"%s\":\n%s", expected_ade[i], original);

    int64_t rows = copy_between(fx->src_url, fx->mid_url, STORE_OK);
    assert_true(rows > 50);
    int64_t back_rows = copy_between(fx->mid_url, fx->back_url, STORE_OK);
    assert_int_equal(back_rows, rows);

    store_t *mid = open_url(fx->mid_url), *back = open_url(fx->back_url);
    char *mid_dump = dump(mid), *back_dump = dump(back);
    assert_string_equal(mid_dump, original);
    assert_string_equal(back_dump, original);
    still_works(mid);
    still_works(back);
    store_close(mid);
    store_close(back);
    free(original), free(mid_dump), free(back_dump);
}

/* A target with rows is refused and left as it was. */
static void test_non_empty_target_refused(void **state)
{
    copy_fx *fx = *state;
    store_t *src = open_url(fx->src_url);
    must(src, src->ops->device_allow(src, "ONLY-ROW", T0));
    store_close(src);
    assert_true(copy_between(fx->src_url, fx->mid_url, STORE_OK) == 1);
    store_t *mid = open_url(fx->mid_url);
    must(mid, mid->ops->device_allow(mid, "TARGET-ROW", T0));
    store_close(mid);
    store_t *other = open_url(fx->back_url);
    must(other, other->ops->device_allow(other, "SECOND-SOURCE", T0));
    store_close(other);
    copy_between(fx->back_url, fx->mid_url, STORE_CONFLICT);
    mid = open_url(fx->mid_url);
    assert_int_equal(mid->ops->device_allowed(mid, NULL, "SECOND-SOURCE"), STORE_NOTFOUND);
    assert_int_equal(mid->ops->device_allowed(mid, NULL, "TARGET-ROW"), STORE_OK);
    store_close(mid);
}

/* Runs `orchard db copy`; returns its exit status, output in out. */
static int run_cli(const char *from, const char *to, char *outbuf, size_t cap)
{
    const char *bin = getenv("ORCHARD_BIN");
    if (!bin)
        bin = "build/san/orchard";
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' db copy --from '%s' --to '%s' 2>&1", bin, from, to);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(outbuf, 1, cap - 1, p);
    outbuf[n] = '\0';
    int st = pclose(p);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void test_cli(void **state)
{
    copy_fx *fx = *state;
    store_t *src = open_url(fx->src_url);
    must(src, src->ops->device_allow(src, "CLI-ROW", T0));
    store_close(src);
    char buf[2048];
    assert_int_equal(run_cli(fx->src_url, fx->mid_url, buf, sizeof buf), 0);
    assert_non_null(strstr(buf, "copied 1 rows"));
    /* Again: the target is no longer empty. */
    assert_int_equal(run_cli(fx->src_url, fx->mid_url, buf, sizeof buf), 1);
    assert_non_null(strstr(buf, "the target database is not empty (table admission has 1 rows)"));
    assert_non_null(strstr(buf, "nothing was written"));
    assert_int_equal(run_cli(fx->src_url, fx->src_url, buf, sizeof buf), 2);
    if (fx->pg_admin_url) {
        /* A wrong password: refused, and the message does not echo it. */
        const char *u = fx->mid_url;
        const char *colon = strchr(strstr(u, "://") + 3, ':'), *at = strchr(u, '@');
        char *bad = util_strdup_printf("%.*sWrongSecret99%s", (int)(colon + 1 - u), u, at);
        assert_int_equal(run_cli(fx->src_url, bad, buf, sizeof buf), 1);
        assert_non_null(strstr(buf, "cannot open the target database"));
        assert_null(strstr(buf, "WrongSecret99"));
        free(bad);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_copy_round_trip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_non_empty_target_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cli, setup, teardown),
    };
    return cmocka_run_group_tests_name("db_copy", tests, NULL, NULL);
}
