/* Queueing commands through the admin API, and waking devices.
 *
 *   PUT /v1/enqueue/ID[,ID...]      NanoMDM's call and response shape (at
 *                                   most MAX_TARGETS ids, and the URL caps
 *                                   the list at about 1,200 UDIDs)
 *   PUT /v1/enqueue?group=NAME      every active member of a device group
 *   PUT /v1/enqueue?all=1           every active device channel
 *   GET|POST /v1/push/ID[,ID...]    a wake-up push, NanoMDM-style
 *
 * All take ?nopush=1. The command is the request body (a command plist with
 * CommandUUID and Command.RequestType), stored once however many targets it
 * has. A command watchOS cannot run is refused when an explicit target is
 * an Apple Watch; a group or fleet call leaves the watches out instead and
 * says how many, since "everything" never means "also what cannot run it".
 * The group and fleet calls answer with counts, not one entry per device.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "app.h"
#include "ddm_schema.h"
#include "log.h"
#include "mdm_message.h"
#include "plist.h"
#include "util.h"
#include "watch.h"

#define MAX_TARGETS 10000
/* A fleet call gathers its targets in memory (about 200 bytes each). */
#define MAX_BULK_TARGETS 2000000

/* ---- helpers ---------------------------------------------------------------- */

/* Splits "a,b,c" into validated ids. Returns the count, or -1 (reason set). */
static int split_ids(const char *list, char ***out, char *why, size_t len)
{
    *out = NULL;
    char *copy = strdup(list);
    if (!copy) {
        snprintf(why, len, "out of memory");
        return -1;
    }
    size_t cap = 8, n = 0;
    char **ids = malloc(cap * sizeof *ids);
    char *save = NULL;
    for (char *tok = strtok_r(copy, ",", &save); ids && tok; tok = strtok_r(NULL, ",", &save)) {
        /* A user channel id is "<device>:<user>", each part a plain id. */
        char *colon = strchr(tok, ':');
        int ok = colon ? (*colon = '\0', mdm_id_valid(tok) && mdm_id_valid(colon + 1)) : mdm_id_valid(tok);
        if (colon)
            *colon = ':';
        if (!ok) {
            snprintf(why, len, "'%.64s' is not a valid enrollment id", tok);
            goto fail;
        }
        if (n == MAX_TARGETS) {
            snprintf(why, len, "more than %d ids in one call", MAX_TARGETS);
            goto fail;
        }
        if (n == cap) {
            char **grown = realloc(ids, 2 * cap * sizeof *ids);
            if (!grown)
                goto oom;
            ids = grown;
            cap *= 2;
        }
        if (!(ids[n] = strdup(tok)))
            goto oom;
        n++;
    }
    if (!ids)
        goto oom;
    if (n == 0) {
        snprintf(why, len, "no enrollment id given");
        goto fail;
    }
    free(copy);
    *out = ids;
    return (int)n;
oom:
    snprintf(why, len, "out of memory");
fail:
    for (size_t i = 0; ids && i < n; i++)
        free(ids[i]);
    free(ids);
    free(copy);
    return -1;
}

static void free_ids(char **ids, int n)
{
    for (int i = 0; i < n; i++)
        free(ids[i]);
    free(ids);
}

/* Sends a wake-up to one enrollment; fills the NanoMDM-style per-id object. */
static void push_one(worker_t *w, const char *id, json_t *entry)
{
    enrollment_t e;
    int rc = w->store->ops->enrollment_get(w->store, id, &e);
    if (rc != STORE_OK) {
        json_object_set_new(entry, "push_error", json_string(rc == STORE_NOTFOUND ? "unknown enrollment"
                                                                                    : "storage error"));
        return;
    }
    /* Asynchronous: "queued" means the push thread has it; its outcome is
     * recorded on the enrollment (last_push_*) and in GET /v1/push-status. */
    char err[700];
    if (pusher_push(w->app->pusher, &e, err, sizeof err) == 0)
        json_object_set_new(entry, "push_result", json_string("queued"));
    else
        json_object_set_new(entry, "push_error", json_string(err));
    enrollment_free(&e);
}

/* ---- Apple Watch targets ------------------------------------------------------------ */

/* What in this command watchOS cannot run: the RequestType, or a payload
 * type inside an InstallProfile's (unsigned) profile. NULL when all is
 * supported or unknown to Apple's schema (new names are let through).
 * *note is set when an InstallProfile payload could not be read (signed). */
static const char *watch_unsupported(const plist_t *inner, const char *rtype, char *what, size_t len,
                                     const char **note)
{
    *note = NULL;
    if (mdm_command_on_watchos(rtype) == 0) {
        snprintf(what, len, "command %s", rtype);
        return what;
    }
    if (strcmp(rtype, "InstallProfile") != 0)
        return NULL;
    size_t plen = 0;
    const unsigned char *pdata = plist_data(plist_dict_get(inner, "Payload"), &plen);
    plist_t *profile = pdata && plen ? plist_parse((const char *)pdata, plen, NULL, 0) : NULL;
    if (!profile) {
        *note = "the profile is signed or not a plist: its payload types were not checked against watchOS";
        return NULL;
    }
    const plist_t *content = plist_dict_get(profile, "PayloadContent");
    const char *found = NULL;
    for (size_t i = 0; !found && i < plist_array_size(content); i++) {
        const char *t = plist_dict_get_string(plist_array_get(content, i), "PayloadType");
        if (t && mdm_payload_on_watchos(t) == 0) {
            snprintf(what, len, "profile payload %.100s", t);
            found = what;
        }
    }
    plist_free(profile);
    return found;
}

/* Refuses (400, 1 returned) a command that watchOS does not support when a
 * target is an Apple Watch; enrollments are only looked up when the
 * command has something a watch cannot run. */
static int refuse_on_watches(worker_t *w, const plist_t *inner, const char *rtype, char *const *ids, int n,
                             http_response_t *resp)
{
    char what[160];
    const char *note = NULL;
    const char *bad = watch_unsupported(inner, rtype, what, sizeof what, &note);
    if (note)
        log_info("enqueue %s: %s", rtype, note);
    if (!bad)
        return 0;
    store_t *s = w->store;
    for (int i = 0; i < n; i++) {
        enrollment_t e;
        int rc = s->ops->enrollment_get(s, ids[i], &e);
        if (rc == STORE_NOTFOUND)
            continue;
        if (rc != STORE_OK) {
            http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
            return 1;
        }
        int watch = watch_is_watch(s, &e);
        enrollment_free(&e);
        if (watch < 0) {
            http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
            return 1;
        }
        if (watch) {
            http_refuse(resp, 400, 1, "%s is not supported on watchOS and %.100s is an Apple Watch; nothing queued",
                        bad, ids[i]);
            return 1;
        }
    }
    return 0;
}

/* ---- the command in the body ------------------------------------------------- */

typedef struct {
    plist_t *root;
    const plist_t *inner; /* Command */
    const char *uuid, *rtype;
} body_command_t;

/* Parses and checks the command plist of an enqueue request; 0, or -1
 * after refusing (400/405). cmd->root is freed by the caller either way. */
static int parse_command(const http_request_t *req, body_command_t *cmd, http_response_t *resp)
{
    memset(cmd, 0, sizeof *cmd);
    if (req->method != HTTP_M_PUT && req->method != HTTP_M_POST) {
        http_refuse(resp, 405, 1, "enqueue takes PUT with a command plist body");
        return -1;
    }
    char why[256];
    cmd->root = req->body_len ? plist_parse((const char *)req->body, req->body_len, why, sizeof why) : NULL;
    if (!cmd->root) {
        http_refuse(resp, 400, 1, "command is not a valid plist: %s", req->body_len ? why : "empty body");
        return -1;
    }
    int dict = plist_type(cmd->root) == PLIST_DICT;
    cmd->inner = dict ? plist_dict_get(cmd->root, "Command") : NULL;
    cmd->uuid = dict ? plist_dict_get_string(cmd->root, "CommandUUID") : NULL;
    cmd->rtype = cmd->inner && plist_type(cmd->inner) == PLIST_DICT
                     ? plist_dict_get_string(cmd->inner, "RequestType")
                     : NULL;
    if (!cmd->uuid || !mdm_id_valid(cmd->uuid)) {
        http_refuse(resp, 400, 1, "command plist needs a CommandUUID string (printable, no spaces, commas or colons)");
        return -1;
    }
    if (!cmd->rtype || !*cmd->rtype) {
        http_refuse(resp, 400, 1, "command plist needs Command (a dict) with a RequestType string");
        return -1;
    }
    HTTP_LOG(resp, log_type, cmd->rtype);
    HTTP_LOG(resp, log_id, cmd->uuid);
    return 0;
}

/* Stores the command for ids[0..n); status[i] per id. 0, or -1 after
 * refusing (409 reused UUID, 503). */
static int store_command(worker_t *w, const http_request_t *req, const body_command_t *cmd, const char *const *ids,
                         size_t n, int *status, http_response_t *resp)
{
    command_t c = {.uuid = (char *)cmd->uuid,
                   .request_type = (char *)cmd->rtype,
                   .body = (unsigned char *)req->body,
                   .body_len = req->body_len,
                   .created_at = util_now()};
    int rc = w->store->ops->command_enqueue(w->store, &c, ids, n, status, c.created_at);
    if (rc == STORE_CONFLICT)
        http_refuse(resp, 409, 1, "a command with UUID %s already exists", cmd->uuid);
    else if (rc == STORE_ERR)
        http_refuse(resp, 503, 1, "storage error: %s", w->store->ops->errmsg(w->store));
    return rc == STORE_CONFLICT || rc == STORE_ERR ? -1 : 0;
}

static int want_push(const http_request_t *req)
{
    char buf[8];
    const char *nopush = http_query(req, "nopush", buf, sizeof buf);
    return !(nopush && strcmp(nopush, "0") != 0 && strcasecmp(nopush, "false") != 0);
}

/* ---- NanoMDM-compatible calls ------------------------------------------------ */

static void api_enqueue(worker_t *w, const http_request_t *req, const char *idlist, http_response_t *resp)
{
    char why[256];
    char **ids;
    int n = split_ids(idlist, &ids, why, sizeof why);
    if (n < 0) {
        http_refuse(resp, 400, 1, "%s", why);
        return;
    }
    body_command_t cmd;
    int *status = NULL;
    if (parse_command(req, &cmd, resp) != 0 || refuse_on_watches(w, cmd.inner, cmd.rtype, ids, n, resp))
        goto out;
    if (!(status = calloc((size_t)n, sizeof *status))) {
        http_refuse(resp, 503, 1, "out of memory");
        goto out;
    }
    if (store_command(w, req, &cmd, (const char *const *)ids, (size_t)n, status, resp) != 0)
        goto out;
    int do_push = want_push(req);

    json_t *result = json_object(), *per = json_object();
    int queued = 0;
    for (int i = 0; i < n; i++) {
        json_t *entry = json_object();
        if (status[i] == STORE_OK) {
            queued++;
            if (do_push)
                push_one(w, ids[i], entry);
        } else {
            json_object_set_new(entry, "command_error", json_string("unknown enrollment"));
        }
        json_object_set_new(per, ids[i], entry);
    }
    json_object_set_new(result, "status", per);
    if (!do_push)
        json_object_set_new(result, "no_push", json_true());
    json_object_set_new(result, "command_uuid", json_string(cmd.uuid));
    json_object_set_new(result, "request_type", json_string(cmd.rtype));
    if (queued == 0) {
        json_object_set_new(result, "command_error", json_string("no target enrollment is known; nothing queued"));
        snprintf(resp->log_problem, sizeof resp->log_problem, "enqueue: no known target");
    }
    /* Push outcomes are reported per id but do not fail the call: the
     * command is queued and waits for the device to poll. */
    http_reply_json(resp, queued == 0 ? 404 : queued < n ? 207 : 200, result);
out:
    free(status);
    plist_free(cmd.root);
    free_ids(ids, n);
}

static void api_push(worker_t *w, const http_request_t *req, const char *idlist, http_response_t *resp)
{
    if (req->method != HTTP_M_GET && req->method != HTTP_M_POST) {
        http_refuse(resp, 405, 1, "push takes GET or POST");
        return;
    }
    char why[256];
    char **ids;
    int n = split_ids(idlist, &ids, why, sizeof why);
    if (n < 0) {
        http_refuse(resp, 400, 1, "%s", why);
        return;
    }
    json_t *per = json_object();
    for (int i = 0; i < n; i++) {
        json_t *entry = json_object();
        push_one(w, ids[i], entry);
        json_object_set_new(per, ids[i], entry);
    }
    free_ids(ids, n);
    http_reply_json(resp, 200, json_pack("{s:o}", "status", per));
}


/* ---- a group, or the whole fleet ---------------------------------------------- */

typedef struct {
    worker_t *w;
    const char *watch_bad; /* non-NULL: the command cannot run on a watch */
    /* What a push needs of each target, kept compact (a fleet call holds
     * one per device): id, topic, push token and magic, invalid flag. */
    enrollment_t *t;
    size_t n, cap;
    int64_t skipped_watches, skipped_inactive, unknown;
    int failed, too_many; /* failed: storage error or out of memory, in why */
    char why[300];
    char *last; /* paging: the last id seen */
    int rows;   /* rows in the current page */
} bulk_t;

static void bulk_free(bulk_t *b)
{
    for (size_t i = 0; i < b->n; i++)
        enrollment_free(&b->t[i]);
    free(b->t);
    free(b->last);
}

static int bulk_stop(bulk_t *b, const char *fmt, const char *detail)
{
    b->failed = 1;
    snprintf(b->why, sizeof b->why, fmt, detail);
    return 1;
}

static char *dup_or_null(const char *s, int *bad)
{
    char *d = s ? strdup(s) : NULL;
    if (s && !d)
        *bad = 1;
    return d;
}

/* Takes e as a target unless it is inactive or a watch that cannot run the
 * command. Non-zero stops the walk. */
static int bulk_take(bulk_t *b, const enrollment_t *e)
{
    if (strcmp(e->state, ENR_STATE_ACTIVE) != 0) {
        b->skipped_inactive++;
        return 0;
    }
    if (b->watch_bad) {
        int watch = watch_is_watch(b->w->store, e);
        if (watch < 0)
            return bulk_stop(b, "storage error: %s", b->w->store->ops->errmsg(b->w->store));
        if (watch) {
            b->skipped_watches++;
            return 0;
        }
    }
    if (b->n == MAX_BULK_TARGETS) {
        b->too_many = 1;
        return 1;
    }
    if (b->n == b->cap) {
        size_t cap = b->cap ? 2 * b->cap : 1024;
        enrollment_t *grown = realloc(b->t, cap * sizeof *grown);
        if (!grown)
            return bulk_stop(b, "%s", "out of memory");
        b->t = grown;
        b->cap = cap;
    }
    enrollment_t *p = &b->t[b->n++]; /* counted at once: freed with the rest */
    memset(p, 0, sizeof *p);
    int bad = 0;
    p->id = dup_or_null(e->id, &bad);
    p->topic = dup_or_null(e->topic, &bad);
    p->push_magic = dup_or_null(e->push_magic, &bad);
    p->push_token_invalid = e->push_token_invalid;
    if (e->push_token && e->push_token_len) {
        if ((p->push_token = malloc(e->push_token_len))) {
            memcpy(p->push_token, e->push_token, e->push_token_len);
            p->push_token_len = e->push_token_len;
        } else {
            bad = 1;
        }
    }
    return bad ? bulk_stop(b, "%s", "out of memory") : 0;
}

static int collect_device(void *ctx, const enrollment_t *e)
{
    bulk_t *b = ctx;
    b->rows++;
    free(b->last);
    if (!(b->last = strdup(e->id)))
        return bulk_stop(b, "%s", "out of memory");
    /* "all" means every device; user channels get user-scoped commands by id. */
    return strcmp(e->channel, "device") == 0 ? bulk_take(b, e) : 0;
}

static int collect_member(void *ctx, const char *id)
{
    bulk_t *b = ctx;
    store_t *s = b->w->store;
    enrollment_t e;
    int rc = s->ops->enrollment_get(s, id, &e);
    if (rc == STORE_NOTFOUND) {
        b->unknown++;
        return 0;
    }
    if (rc != STORE_OK)
        return bulk_stop(b, "storage error: %s", s->ops->errmsg(s));
    int stop = bulk_take(b, &e);
    enrollment_free(&e);
    return stop;
}

/* Fills b with the targets; 0, or -1 with b->why (or b->too_many). */
static int gather(bulk_t *b, const char *group)
{
    store_t *s = b->w->store;
    int rc;
    if (group) {
        rc = s->ops->group_members ? s->ops->group_members(s, group, collect_member, b) : STORE_ERR;
    } else {
        /* Every active enrollment, a page at a time by id. */
        do {
            b->rows = 0;
            enrollment_filter_t f = {.state = ENR_STATE_ACTIVE, .after = b->last, .limit = 1000};
            rc = s->ops->enrollment_list(s, &f, collect_device, b);
        } while (rc == STORE_OK && !b->failed && !b->too_many && b->rows == 1000);
    }
    if (rc != STORE_OK && !b->failed)
        bulk_stop(b, "storage error: %s", s->ops->errmsg(s));
    return b->failed || b->too_many ? -1 : 0;
}

static void api_enqueue_bulk(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    char group[MDM_ID_MAX + 1], all[8];
    int by_group = http_query(req, "group", group, sizeof group) != NULL;
    int by_all = http_query(req, "all", all, sizeof all) && strcmp(all, "1") == 0;
    if (by_group == by_all) {
        http_refuse(resp, 400, 1, "PUT /v1/enqueue needs ?group=NAME or ?all=1 (or ids: /v1/enqueue/ID,ID)");
        return;
    }
    if (by_group && !mdm_id_valid(group)) {
        http_refuse(resp, 400, 1, "'%.64s' is not a valid group name", group);
        return;
    }
    body_command_t cmd;
    bulk_t b = {.w = w};
    const char **ids = NULL;
    int *status = NULL;
    if (parse_command(req, &cmd, resp) != 0)
        goto out;
    char what[160];
    const char *note = NULL;
    b.watch_bad = watch_unsupported(cmd.inner, cmd.rtype, what, sizeof what, &note);
    if (note)
        log_info("enqueue %s: %s", cmd.rtype, note);
    if (gather(&b, by_group ? group : NULL) != 0) {
        if (b.too_many)
            http_refuse(resp, 400, 1, "more than %d targets: enqueue to groups instead", MAX_BULK_TARGETS);
        else
            http_refuse(resp, 503, 1, "%s", b.why);
        goto out;
    }
    const char *target = by_group ? group : "all";
    if (b.n == 0) {
        http_reply_json(resp, 404,
                        json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "command_error",
                                  "no active target (nothing queued)", "command_uuid", cmd.uuid, "target", target,
                                  "skipped_watches", (json_int_t)b.skipped_watches, "skipped_inactive",
                                  (json_int_t)b.skipped_inactive, "unknown", (json_int_t)b.unknown));
        snprintf(resp->log_problem, sizeof resp->log_problem, "enqueue: no active target in %.100s", target);
        goto out;
    }
    ids = malloc(b.n * sizeof *ids);
    status = malloc(b.n * sizeof *status);
    if (!ids || !status) {
        http_refuse(resp, 503, 1, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < b.n; i++)
        ids[i] = b.t[i].id;
    if (store_command(w, req, &cmd, ids, b.n, status, resp) != 0)
        goto out;
    int do_push = want_push(req);
    json_int_t queued = 0, pushed = 0, push_failed = 0;
    char first_error[MDM_ID_MAX * 2 + 2 + 2 + 256] = "";
    for (size_t i = 0; i < b.n; i++) {
        if (status[i] != STORE_OK) /* gone since it was listed */
            continue;
        queued++;
        char err[256];
        if (!do_push)
            continue;
        if (pusher_push(w->app->pusher, &b.t[i], err, sizeof err) == 0) {
            pushed++;
        } else {
            if (!push_failed)
                snprintf(first_error, sizeof first_error, "%s: %s", b.t[i].id, err);
            push_failed++;
        }
    }
    json_t *result = json_pack("{s:s,s:s,s:s,s:I,s:I,s:I}", "command_uuid", cmd.uuid, "request_type", cmd.rtype,
                               "target", target, "queued", queued, "skipped_watches",
                               (json_int_t)b.skipped_watches, "skipped_inactive", (json_int_t)b.skipped_inactive);
    if (by_group)
        json_object_set_new(result, "unknown", json_integer((json_int_t)b.unknown));
    if (do_push) {
        json_object_set_new(result, "pushed", json_integer(pushed));
        json_object_set_new(result, "push_failed", json_integer(push_failed));
        if (push_failed)
            json_object_set_new(result, "first_push_error", json_string(first_error));
    } else {
        json_object_set_new(result, "no_push", json_true());
    }
    log_info("enqueue %s %s to %s%s: %lld queued, %lld watches and %lld inactive left out", cmd.rtype, cmd.uuid,
             by_group ? "group " : "", target, (long long)queued, (long long)b.skipped_watches,
             (long long)b.skipped_inactive);
    http_reply_json(resp, 200, result);
out:
    free(ids);
    free(status);
    bulk_free(&b);
    plist_free(cmd.root);
}

/* ---- routing ------------------------------------------------------------------ */

int admin_enqueue_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp)
{
    if (strncmp(sub, "enqueue/", 8) == 0 && sub[8])
        api_enqueue(w, req, sub + 8, resp);
    else if (strcmp(sub, "enqueue") == 0 || strcmp(sub, "enqueue/") == 0)
        api_enqueue_bulk(w, req, resp);
    else if (strncmp(sub, "push/", 5) == 0)
        api_push(w, req, sub + 5, resp);
    else
        return 0;
    return 1;
}
