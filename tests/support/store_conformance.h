/* Fixtures for the storage conformance suite (tests/test_store.c).
 *
 * The suite talks to the store only through store.h, so every backend runs
 * the same tests. Where the database comes from:
 *   - ORCHARD_TEST_DB set: that URL (e.g. a PostgreSQL database). It may
 *     hold data from earlier runs or other tests, so every test names its
 *     enrollments and commands with a random per-test prefix and checks
 *     counts as differences, never as absolute numbers.
 *   - otherwise: a fresh SQLite file in a new mkdtemp directory under /tmp,
 *     removed again after the test.
 *
 * Header-only (static inline) so a backend's own test file can include it
 * without linking anything. The .c files in tests/support are linked into
 * every test binary, which is why this is not one of them.
 *
 * Include after <cmocka.h>.
 */
#ifndef ORCHARD_STORE_CONFORMANCE_H
#define ORCHARD_STORE_CONFORMANCE_H

#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "store.h"
#include "util.h"

/* A fixed clock: tests pass explicit times so timestamps can be asserted. */
#define CONF_T0 ((int64_t)1700000000)

#define CONF_NAME_SLOTS 64
#define CONF_NAME_LEN 128

typedef struct {
    store_t *s;
    char *url;
    int shared;              /* ORCHARD_TEST_DB: database shared with other runs */
    char dir[64];            /* temporary directory (SQLite mode only) */
    char path[96];           /* SQLite file inside dir (SQLite mode only) */
    char prefix[17];         /* random hex, unique to this test */
    char names[CONF_NAME_SLOTS][CONF_NAME_LEN];
    int next_name;
} conf_t;

/* Opens another handle on the test database (caller closes). */
static inline store_t *conf_open(conf_t *fx)
{
    char *err = NULL;
    store_t *s = store_open(fx->url, &err);
    if (!s)
        fprintf(stderr, "store_open(%s): %s\n", fx->url, err ? err : "?");
    free(err);
    return s;
}

static inline int conf_setup(void **state)
{
    conf_t *fx = calloc(1, sizeof *fx);
    if (!fx)
        return -1;
    const char *shared_url = getenv("ORCHARD_TEST_DB");
    if (shared_url && *shared_url) {
        fx->shared = 1;
        fx->url = strdup(shared_url);
    } else {
        snprintf(fx->dir, sizeof fx->dir, "/tmp/orchard-store-XXXXXX");
        if (!mkdtemp(fx->dir)) {
            free(fx);
            return -1;
        }
        snprintf(fx->path, sizeof fx->path, "%s/orchard.db", fx->dir);
        fx->url = util_strdup_printf("sqlite:%s", fx->path);
    }
    if (!fx->url || util_random_hex(fx->prefix, 8) != 0 || !(fx->s = conf_open(fx))) {
        if (fx->dir[0])
            rmdir(fx->dir);
        free(fx->url);
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

/* Removes the temporary directory with everything SQLite put in it (the
 * database, its -wal and -shm files, extra databases a test created). */
static inline void conf_remove_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *ent;
    while ((ent = readdir(d)) != NULL) {
        if (strcmp(ent->d_name, ".") == 0 || strcmp(ent->d_name, "..") == 0)
            continue;
        char p[512];
        snprintf(p, sizeof p, "%s/%s", dir, ent->d_name);
        unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static inline int conf_teardown(void **state)
{
    conf_t *fx = *state;
    if (!fx)
        return 0;
    store_close(fx->s);
    if (fx->dir[0])
        conf_remove_dir(fx->dir);
    free(fx->url);
    free(fx);
    return 0;
}

/* "<prefix>-<suffix>": an id or UUID unique to this test. The string lives in
 * the fixture (a ring of CONF_NAME_SLOTS slots), enough for one test. */
static inline const char *conf_name(conf_t *fx, const char *suffix)
{
    char *slot = fx->names[fx->next_name++ % CONF_NAME_SLOTS];
    snprintf(slot, CONF_NAME_LEN, "%s-%s", fx->prefix, suffix);
    return slot;
}

/* A 64-hex-digit certificate fingerprint unique to this test and n. */
static inline const char *conf_cert(conf_t *fx, int n)
{
    char *slot = fx->names[fx->next_name++ % CONF_NAME_SLOTS];
    snprintf(slot, CONF_NAME_LEN, "%s%048x", fx->prefix, (unsigned)n);
    return slot;
}

/* Authenticates a device channel with a full set of identity fields derived
 * from its id. Returns the store result. */
static inline int conf_authenticate(conf_t *fx, const char *id, const char *cert, const char *model,
                                    const char *serial, int64_t now)
{
    enrollment_t e;
    memset(&e, 0, sizeof e);
    e.id = e.device_id = e.udid = (char *)id;
    e.channel = "device";
    e.topic = "com.apple.mgmt.External.test";
    e.serial_number = (char *)serial;
    e.model = (char *)model;
    e.model_name = "iPhone";
    e.product_name = (char *)model;
    e.os_version = "17.4.1";
    e.build_version = "21E258";
    e.device_name = "Test iPhone";
    e.imei = "35 328708 123456 7";
    e.meid = "35328708123456";
    e.cert_sha256 = (char *)cert;
    return fx->s->ops->authenticate(fx->s, &e, now);
}

static const unsigned char conf_push_token[] = {0xde, 0xad, 0x00, 0xbe, 0xef, 0x00, 0x42, 0x17};
#define CONF_PUSH_MAGIC "2F1A6B0C-7E3D-4C55-9A21-SECRET-MAGIC"

/* TokenUpdate with push token, magic and topic; the unlock token is optional. */
static inline int conf_token_update(conf_t *fx, const char *id, const char *device_id,
                                    const unsigned char *unlock, size_t unlock_len, int64_t now)
{
    token_update_t t;
    memset(&t, 0, sizeof t);
    t.topic = "com.apple.mgmt.External.test";
    t.push_token = conf_push_token;
    t.push_token_len = sizeof conf_push_token;
    t.push_magic = CONF_PUSH_MAGIC;
    t.unlock_token = unlock;
    t.unlock_token_len = unlock_len;
    return fx->s->ops->token_update(fx->s, id, device_id, &t, now);
}

/* An enrolled, active device channel. */
static inline const char *conf_active_device(conf_t *fx, const char *suffix, int cert_n, int64_t now)
{
    const char *id = conf_name(fx, suffix);
    char serial[64];
    snprintf(serial, sizeof serial, "SN-%s", suffix);
    if (conf_authenticate(fx, id, conf_cert(fx, cert_n), "iPhone14,5", conf_name(fx, serial), now) !=
            STORE_OK ||
        conf_token_update(fx, id, id, NULL, 0, now) != STORE_OK)
        return NULL;
    return id;
}

/* The plist body orchard would send for a command of this type and UUID. */
static inline void conf_command(command_t *c, const char *uuid, const char *request_type, char *body,
                                size_t body_cap)
{
    memset(c, 0, sizeof *c);
    snprintf(body, body_cap,
             "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>"
             "<key>Command</key><dict><key>RequestType</key><string>%s</string></dict>"
             "<key>CommandUUID</key><string>%s</string></dict></plist>",
             request_type, uuid);
    c->uuid = (char *)uuid;
    c->request_type = (char *)request_type;
    c->body = (unsigned char *)body;
    c->body_len = strlen(body);
}

/* Enqueues a DeviceInformation-like command for ids[0..n); returns the
 * store result (status per id is discarded). */
static inline int conf_enqueue(conf_t *fx, const char *uuid, const char *request_type, const char *const *ids,
                               size_t n, int64_t now)
{
    char body[512];
    command_t c;
    conf_command(&c, uuid, request_type, body, sizeof body);
    int status[16];
    return fx->s->ops->command_enqueue(fx->s, &c, ids, n, n <= 16 ? status : NULL, now);
}

/* A device report for one command. */
static inline command_report_t conf_report(const char *uuid, const char *status, const char *raw,
                                           const char *error_chain_json)
{
    command_report_t r;
    memset(&r, 0, sizeof r);
    r.command_uuid = uuid;
    r.status = status;
    r.raw = (const unsigned char *)raw;
    r.raw_len = raw ? strlen(raw) : 0;
    r.error_chain_json = error_chain_json;
    return r;
}

/* One exchange; the UUID of the next command is copied to next_uuid ("" when
 * the queue is empty). Returns the store result. */
static inline int conf_exchange(conf_t *fx, const char *id, const command_report_t *report, int64_t now,
                                int *applied, char *next_uuid, size_t next_cap)
{
    command_t next;
    int dummy = -1;
    int rc = fx->s->ops->command_exchange(fx->s, id, report, now, applied ? applied : &dummy, &next);
    if (next_uuid)
        snprintf(next_uuid, next_cap, "%s", rc == STORE_OK && next.uuid ? next.uuid : "");
    command_free(&next);
    return rc;
}

/* ---- collectors for the callback-based listings -------------------------- */

#define CONF_MAX_ROWS 64

typedef struct {
    int n;
    int stop_after; /* 0: never stop early */
    struct {
        char id[CONF_NAME_LEN];
        char state[24];
        char channel[16];
    } row[CONF_MAX_ROWS];
} conf_enrollments_t;

static inline int conf_collect_enrollment(void *ctx, const enrollment_t *e)
{
    conf_enrollments_t *c = ctx;
    if (c->n < CONF_MAX_ROWS) {
        snprintf(c->row[c->n].id, sizeof c->row[c->n].id, "%s", e->id);
        snprintf(c->row[c->n].state, sizeof c->row[c->n].state, "%s", e->state);
        snprintf(c->row[c->n].channel, sizeof c->row[c->n].channel, "%s", e->channel);
    }
    c->n++;
    return c->stop_after && c->n >= c->stop_after;
}

typedef struct {
    char uuid[CONF_NAME_LEN];
    char enrollment_id[CONF_NAME_LEN];
    char request_type[64];
    char status[32];
    int has_result;
    char result[256]; /* NUL-terminated copy (results in tests are text) */
    size_t result_len;
    int has_error_chain;
    char error_chain[256];
    int64_t queued_at, updated_at;
} conf_target_row_t;

typedef struct {
    int n;
    conf_target_row_t row[CONF_MAX_ROWS];
} conf_targets_t;

static inline int conf_collect_target(void *ctx, const command_target_t *t)
{
    conf_targets_t *c = ctx;
    if (c->n < CONF_MAX_ROWS) {
        conf_target_row_t *r = &c->row[c->n];
        snprintf(r->uuid, sizeof r->uuid, "%s", t->command_uuid);
        snprintf(r->enrollment_id, sizeof r->enrollment_id, "%s", t->enrollment_id);
        snprintf(r->request_type, sizeof r->request_type, "%s", t->request_type);
        snprintf(r->status, sizeof r->status, "%s", t->status);
        r->has_result = t->result != NULL;
        r->result_len = t->result_len;
        if (t->result) {
            size_t n = t->result_len < sizeof r->result - 1 ? t->result_len : sizeof r->result - 1;
            memcpy(r->result, t->result, n);
            r->result[n] = '\0';
        }
        r->has_error_chain = t->error_chain_json != NULL;
        if (t->error_chain_json)
            snprintf(r->error_chain, sizeof r->error_chain, "%s", t->error_chain_json);
        r->queued_at = t->queued_at;
        r->updated_at = t->updated_at;
    }
    c->n++;
    return 0;
}

typedef struct {
    int64_t id, at;
    int has_enrollment;
    char enrollment_id[CONF_NAME_LEN];
    char kind[48];
    char detail[512];
} conf_event_row_t;

typedef struct {
    int n;
    conf_event_row_t row[CONF_MAX_ROWS];
} conf_events_t;

static inline int conf_collect_event(void *ctx, const store_event_t *ev)
{
    conf_events_t *c = ctx;
    if (c->n < CONF_MAX_ROWS) {
        conf_event_row_t *r = &c->row[c->n];
        r->id = ev->id;
        r->at = ev->at;
        r->has_enrollment = ev->enrollment_id != NULL;
        snprintf(r->enrollment_id, sizeof r->enrollment_id, "%s", ev->enrollment_id ? ev->enrollment_id : "");
        snprintf(r->kind, sizeof r->kind, "%s", ev->kind);
        snprintf(r->detail, sizeof r->detail, "%s", ev->detail ? ev->detail : "");
    }
    c->n++;
    return 0;
}

/* The status of command `uuid` for enrollment `id`, via command_targets. */
static inline int conf_target_of(conf_t *fx, const char *uuid, const char *id, conf_targets_t *all, int *index)
{
    memset(all, 0, sizeof *all);
    int rc = fx->s->ops->command_targets(fx->s, uuid, conf_collect_target, all);
    if (rc != STORE_OK)
        return rc;
    for (int i = 0; i < all->n && i < CONF_MAX_ROWS; i++) {
        if (strcmp(all->row[i].enrollment_id, id) == 0) {
            *index = i;
            return STORE_OK;
        }
    }
    return STORE_NOTFOUND;
}

#endif
