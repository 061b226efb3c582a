/* Admin API for declarative device management (JSON; key already checked
 * by admin_api.c, `sub` is the path after "/v1/"):
 *
 *   PUT    /v1/declarations                  body = declaration JSON {Type, Identifier, Payload}
 *   PUT    /v1/declarations/{identifier}     same; the body's Identifier must match (or is taken from the path)
 *   GET    /v1/declarations[?kind=K]         list
 *   GET    /v1/declarations/{identifier}     as devices get it, plus created_at, updated_at, sets, referrers
 *   DELETE /v1/declarations/{identifier}     409 (naming one) while another declaration references it
 *   PUT    /v1/sets/{name}                   body {"declarations": [identifier, ...]} (replaces the members)
 *   GET    /v1/sets | /v1/sets/{name}        names | members and assignments
 *   DELETE /v1/sets/{name}
 *   POST   /v1/sets/{name}/assignments       body {"device": id} | {"group": name} | {"all": true}
 *   DELETE /v1/sets/{name}/assignments?device=ID | ?group=G | ?all=1   (evhttp reads no body on DELETE)
 *   PUT|DELETE /v1/groups/{group}/members/{enrollment id}
 *   GET    /v1/groups/{group}                members and the sets assigned to the group
 *   PUT    /v1/asset-data/{name}             raw body, its Content-Type kept → {name, size, sha256, url}
 *   GET|DELETE /v1/asset-data/{name}
 *   GET    /v1/devices/{id}/declarations     effective declarations, token, what the device reports, failures
 *   GET    /v1/devices/{id}/status-items     latest status item values
 *   POST   /v1/ddm/sync                      runs the sync fan-out now
 *
 * Every mutation runs ddm_sync (one coalesced DeclarativeManagement command
 * and a push per enrollment whose DeclarationsToken changed) and returns its
 * report as "sync": {examined, changed, queued, pushed, seconds}.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "api_json.h"
#include "app.h"
#include "ddm.h"
#include "log.h"
#include "mdm_message.h"
#include "util.h"

#define SET_MEMBERS_MAX 10000
#define CONTENT_TYPE_MAX 127

/* ---- helpers ----------------------------------------------------------------------- */

static void storage_error(store_t *s, http_response_t *resp)
{
    http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
}

/* Runs the sync fan-out and adds its report to `o` as "sync". A failed sync
 * does not undo the change: the report says so and the next sync finishes. */
static void add_sync(worker_t *w, json_t *o)
{
    ddm_sync_report_t r;
    char err[256] = "";
    if (ddm_sync(w->store, w->app->pusher, &r, err, sizeof err) != 0) {
        log_warn("ddm sync after an admin change failed: %s", err);
        json_object_set_new(o, "sync", json_pack("{s:s}", "error", err));
        return;
    }
    json_object_set_new(o, "sync", json_pack("{s:I,s:I,s:I,s:I,s:f}", "examined", (json_int_t)r.examined, "changed",
                                             (json_int_t)r.changed, "queued", (json_int_t)r.queued, "pushed",
                                             (json_int_t)r.pushed, "seconds", r.seconds));
}

static json_t *body_json(const http_request_t *req, http_response_t *resp)
{
    json_error_t e;
    json_t *j = req->body_len ? json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &e) : NULL;
    if (!j)
        http_refuse(resp, 400, 1, "body is not valid JSON: %s", req->body_len ? e.text : "empty body");
    return j;
}

/* An enrollment id as the API takes it: a plain id, or "<device>:<user>". */
static int enrollment_id_valid(const char *id)
{
    char buf[2 * MDM_ID_MAX + 2];
    if (strlen(id) >= sizeof buf)
        return 0;
    snprintf(buf, sizeof buf, "%s", id);
    char *colon = strchr(buf, ':');
    if (!colon)
        return mdm_id_valid(buf);
    *colon = '\0';
    return mdm_id_valid(buf) && mdm_id_valid(colon + 1);
}

/* Splits "name" or "name/rest" (rest may be NULL). 0, or -1 when the name
 * is empty or too long. */
static int first_segment(const char *path, char *name, size_t len, const char **rest)
{
    const char *slash = strchr(path, '/');
    size_t n = slash ? (size_t)(slash - path) : strlen(path);
    if (n == 0 || n >= len)
        return -1;
    memcpy(name, path, n);
    name[n] = '\0';
    *rest = slash ? slash + 1 : NULL;
    return 0;
}

static json_t *decl_summary(const declaration_t *d)
{
    return json_pack("{s:s,s:s,s:s,s:s}", "identifier", d->identifier, "type", d->type, "kind", d->kind,
                     "server_token", d->server_token);
}

static int collect_decl_summary(void *ctx, const declaration_t *d)
{
    json_array_append_new(ctx, decl_summary(d));
    return 0;
}

static int collect_name(void *ctx, const char *name)
{
    json_array_append_new(ctx, json_string(name));
    return 0;
}

/* ---- declarations -------------------------------------------------------------------- */

static void decl_put(worker_t *w, const http_request_t *req, const char *path_id, http_response_t *resp)
{
    store_t *s = w->store;
    json_t *decl = body_json(req, resp);
    if (!decl)
        return;
    if (path_id && json_is_object(decl)) {
        const json_t *id = json_object_get(decl, "Identifier");
        if (!id)
            json_object_set_new(decl, "Identifier", json_string(path_id));
        else if (!json_is_string(id) || strcmp(json_string_value(id), path_id) != 0) {
            http_refuse(resp, 400, 1, "the body's Identifier does not match the URL's '%.64s'", path_id);
            json_decref(decl);
            return;
        }
    }
    const char *ident = json_string_value(json_object_get(decl, "Identifier"));
    HTTP_LOG(resp, log_id, ident ? ident : "-");
    char err[512];
    int changed = 0;
    int code = ddm_declaration_put(s, decl, &changed, err, sizeof err);
    if (code != 200 && code != 201) {
        http_refuse(resp, code, 1, "%s", err);
        json_decref(decl);
        return;
    }
    declaration_t d;
    int rc = s->ops->decl_get(s, ident, &d);
    json_decref(decl);
    if (rc != STORE_OK) {
        storage_error(s, resp);
        return;
    }
    json_t *o = json_pack("{s:o,s:b}", "declaration", ddm_declaration_json(&d), "changed", changed);
    declaration_free(&d);
    add_sync(w, o);
    http_reply_json(resp, code, o);
}

static void decl_get(worker_t *w, const char *ident, http_response_t *resp)
{
    store_t *s = w->store;
    declaration_t d;
    int rc = s->ops->decl_get(s, ident, &d);
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 404, 1, "no declaration '%.64s'", ident);
        return;
    }
    if (rc != STORE_OK) {
        storage_error(s, resp);
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "declaration", ddm_declaration_json(&d));
    json_object_set_new(o, "kind", json_string(d.kind));
    json_object_set_new(o, "created_at", api_json_time(d.created_at));
    json_object_set_new(o, "updated_at", api_json_time(d.updated_at));
    declaration_free(&d);
    json_t *sets = json_array(), *refs = json_array();
    if (s->ops->decl_sets(s, ident, collect_name, sets) != STORE_OK ||
        s->ops->decl_referrers(s, ident, collect_name, refs) != STORE_OK) {
        json_decref(sets);
        json_decref(refs);
        json_decref(o);
        storage_error(s, resp);
        return;
    }
    json_object_set_new(o, "sets", sets);
    json_object_set_new(o, "referrers", refs);
    http_reply_json(resp, 200, o);
}

static void decl_list(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    char kind[32];
    const char *k = http_query(req, "kind", kind, sizeof kind);
    if (k && strcmp(k, DDM_KIND_ACTIVATION) && strcmp(k, DDM_KIND_CONFIGURATION) && strcmp(k, DDM_KIND_ASSET) &&
        strcmp(k, DDM_KIND_MANAGEMENT)) {
        http_refuse(resp, 400, 1, "kind must be activation, configuration, asset or management");
        return;
    }
    json_t *arr = json_array();
    if (w->store->ops->decl_list(w->store, k, collect_decl_summary, arr) != STORE_OK) {
        json_decref(arr);
        storage_error(w->store, resp);
        return;
    }
    http_reply_json(resp, 200, json_pack("{s:o}", "declarations", arr));
}

static void decl_delete(worker_t *w, const char *ident, http_response_t *resp)
{
    store_t *s = w->store;
    char *referrer = NULL;
    int rc = s->ops->decl_delete(s, ident, &referrer);
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 404, 1, "no declaration '%.64s'", ident);
    } else if (rc == STORE_CONFLICT) {
        http_refuse(resp, 409, 1, "declaration '%.64s' is referenced by '%.64s'; change or delete that first", ident,
                    referrer ? referrer : "another declaration");
    } else if (rc != STORE_OK) {
        storage_error(s, resp);
    } else {
        json_t *o = json_pack("{s:s,s:b}", "identifier", ident, "deleted", 1);
        add_sync(w, o);
        http_reply_json(resp, 200, o);
    }
    free(referrer);
}

static void api_declarations(worker_t *w, const http_request_t *req, const char *rest, http_response_t *resp)
{
    if (!rest || !*rest) {
        if (req->method == HTTP_M_PUT || req->method == HTTP_M_POST)
            decl_put(w, req, NULL, resp);
        else if (req->method == HTTP_M_GET)
            decl_list(w, req, resp);
        else
            http_refuse(resp, 405, 1, "/v1/declarations takes GET or PUT");
        return;
    }
    if (strlen(rest) > DDM_IDENTIFIER_MAX || strchr(rest, '/')) {
        http_refuse(resp, 404, 1, "no declaration '%.64s' (identifiers are at most %d octets)", rest,
                    DDM_IDENTIFIER_MAX);
        return;
    }
    HTTP_LOG(resp, log_id, rest);
    if (req->method == HTTP_M_PUT)
        decl_put(w, req, rest, resp);
    else if (req->method == HTTP_M_GET)
        decl_get(w, rest, resp);
    else if (req->method == HTTP_M_DELETE)
        decl_delete(w, rest, resp);
    else
        http_refuse(resp, 405, 1, "/v1/declarations/{identifier} takes GET, PUT or DELETE");
}

/* ---- sets ----------------------------------------------------------------------------- */

static int collect_assignment(void *ctx, const char *set_name, const char *target_kind, const char *target)
{
    json_t *o = json_pack("{s:s,s:s}", "set", set_name, "kind", target_kind);
    if (strcmp(target_kind, DDM_TARGET_DEVICE) == 0)
        json_object_set_new(o, "device", json_string(target));
    else if (strcmp(target_kind, DDM_TARGET_GROUP) == 0)
        json_object_set_new(o, "group", json_string(target));
    else
        json_object_set_new(o, "all", json_true());
    json_array_append_new(ctx, o);
    return 0;
}

static void set_put(worker_t *w, const http_request_t *req, const char *name, http_response_t *resp)
{
    store_t *s = w->store;
    json_t *body = body_json(req, resp);
    if (!body)
        return;
    const json_t *list = json_object_get(body, "declarations");
    const char **ids = NULL;
    size_t n = json_array_size(list);
    if (!json_is_object(body) || !json_is_array(list) || json_object_size(body) != 1) {
        http_refuse(resp, 400, 1, "body must be {\"declarations\": [identifier, ...]}");
        goto out;
    }
    if (n > SET_MEMBERS_MAX) {
        http_refuse(resp, 400, 1, "a set has at most %d declarations", SET_MEMBERS_MAX);
        goto out;
    }
    ids = calloc(n ? n : 1, sizeof *ids);
    if (!ids) {
        http_refuse(resp, 503, 1, "out of memory");
        goto out;
    }
    for (size_t i = 0; i < n; i++) {
        ids[i] = json_string_value(json_array_get(list, i));
        if (!ids[i] || !*ids[i] || strlen(ids[i]) > DDM_IDENTIFIER_MAX) {
            http_refuse(resp, 400, 1, "declarations[%zu] must be an identifier of 1 to %d octets", i,
                        DDM_IDENTIFIER_MAX);
            goto out;
        }
        for (size_t j = 0; j < i; j++)
            if (strcmp(ids[j], ids[i]) == 0) {
                http_refuse(resp, 400, 1, "declaration '%.64s' is listed twice", ids[i]);
                goto out;
            }
        declaration_t d;
        int rc = s->ops->decl_get(s, ids[i], &d);
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 400, 1, "no declaration '%.64s'", ids[i]);
            goto out;
        }
        if (rc != STORE_OK) {
            storage_error(s, resp);
            goto out;
        }
        declaration_free(&d);
    }
    int rc = s->ops->set_put(s, name, ids, n, util_now());
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 409, 1, "a listed declaration was deleted meanwhile");
    } else if (rc != STORE_OK) {
        storage_error(s, resp);
    } else {
        json_t *o = json_pack("{s:s,s:O}", "name", name, "declarations", list);
        add_sync(w, o);
        http_reply_json(resp, 200, o);
    }
out:
    free(ids);
    json_decref(body);
}

static int set_exists(store_t *s, const char *name, int *found)
{
    *found = 0;
    json_t *names = json_array();
    int rc = s->ops->set_list(s, collect_name, names);
    size_t i;
    json_t *v;
    json_array_foreach(names, i, v)
    {
        if (strcmp(json_string_value(v), name) == 0)
            *found = 1;
    }
    json_decref(names);
    return rc;
}

static void set_get(worker_t *w, const char *name, http_response_t *resp)
{
    store_t *s = w->store;
    int found;
    if (set_exists(s, name, &found) != STORE_OK) {
        storage_error(s, resp);
        return;
    }
    if (!found) {
        http_refuse(resp, 404, 1, "no set '%.64s'", name);
        return;
    }
    json_t *members = json_array(), *assigned = json_array();
    if (s->ops->set_members(s, name, collect_decl_summary, members) != STORE_OK ||
        s->ops->set_assignments(s, name, collect_assignment, assigned) != STORE_OK) {
        json_decref(members);
        json_decref(assigned);
        storage_error(s, resp);
        return;
    }
    http_reply_json(resp, 200,
                    json_pack("{s:s,s:o,s:o}", "name", name, "declarations", members, "assignments", assigned));
}

/* The assignment target from a JSON body (POST) or the query (DELETE). */
static int assignment_target(worker_t *w, const http_request_t *req, const char **kind, char *target, size_t tlen,
                             http_response_t *resp)
{
    char dev[2 * MDM_ID_MAX + 2], group[MDM_ID_MAX + 1], all[8];
    const char *d = NULL, *g = NULL;
    int a = 0, nkeys = 0;
    json_t *body = NULL;
    if (req->method == HTTP_M_POST || req->body_len) {
        if (!(body = body_json(req, resp)))
            return -1;
        if (!json_is_object(body)) {
            json_decref(body);
            http_refuse(resp, 400, 1, "body must be {\"device\": id}, {\"group\": name} or {\"all\": true}");
            return -1;
        }
        const json_t *jd = json_object_get(body, "device"), *jg = json_object_get(body, "group"),
                     *ja = json_object_get(body, "all");
        nkeys = (int)json_object_size(body);
        if ((jd && !json_is_string(jd)) || (jg && !json_is_string(jg)) || (ja && !json_is_true(ja))) {
            json_decref(body);
            http_refuse(resp, 400, 1, "device and group take strings, all takes true");
            return -1;
        }
        d = json_string_value(jd);
        g = json_string_value(jg);
        a = ja != NULL;
    } else {
        d = http_query(req, "device", dev, sizeof dev);
        g = http_query(req, "group", group, sizeof group);
        a = http_query(req, "all", all, sizeof all) && strcmp(all, "0") != 0 && strcasecmp(all, "false") != 0;
        nkeys = (d != NULL) + (g != NULL) + a;
    }
    int code = 0;
    if (nkeys != 1 || (d != NULL) + (g != NULL) + a != 1) {
        http_refuse(resp, 400, 1, "give exactly one of device, group or all");
        code = -1;
    } else if (d && !enrollment_id_valid(d)) {
        http_refuse(resp, 400, 1, "'%.64s' is not a valid enrollment id", d);
        code = -1;
    } else if (g && !mdm_id_valid(g)) {
        http_refuse(resp, 400, 1, "'%.64s' is not a valid group name", g);
        code = -1;
    } else if (d && req->method == HTTP_M_POST) {
        enrollment_t e;
        int rc = w->store->ops->enrollment_get(w->store, d, &e);
        if (rc == STORE_OK)
            enrollment_free(&e);
        if (rc == STORE_NOTFOUND)
            http_refuse(resp, 404, 1, "no enrollment '%.64s'", d);
        else if (rc != STORE_OK)
            storage_error(w->store, resp);
        code = rc == STORE_OK ? 0 : -1;
    }
    if (code == 0) {
        *kind = d ? DDM_TARGET_DEVICE : g ? DDM_TARGET_GROUP : DDM_TARGET_ALL;
        snprintf(target, tlen, "%s", d ? d : g ? g : "");
    }
    json_decref(body);
    return code;
}

static void set_assignment(worker_t *w, const http_request_t *req, const char *name, http_response_t *resp)
{
    store_t *s = w->store;
    if (req->method != HTTP_M_POST && req->method != HTTP_M_DELETE) {
        http_refuse(resp, 405, 1, "/v1/sets/{name}/assignments takes POST or DELETE");
        return;
    }
    const char *kind = NULL;
    char target[2 * MDM_ID_MAX + 2];
    if (assignment_target(w, req, &kind, target, sizeof target, resp) != 0)
        return;
    int assign = req->method == HTTP_M_POST;
    int rc = assign ? s->ops->set_assign(s, name, kind, target, util_now()) : s->ops->set_unassign(s, name, kind, target);
    if (rc == STORE_NOTFOUND) {
        if (assign)
            http_refuse(resp, 404, 1, "no set '%.64s'", name);
        else
            http_refuse(resp, 404, 1, "set '%.64s' is not assigned to %s %.64s", name, kind, target);
        return;
    }
    if (rc != STORE_OK) {
        storage_error(s, resp);
        return;
    }
    json_t *o = json_pack("{s:s,s:s,s:s,s:b}", "set", name, "kind", kind, "target", target, "assigned", assign);
    add_sync(w, o);
    http_reply_json(resp, 200, o);
}

static void api_sets(worker_t *w, const http_request_t *req, const char *rest, http_response_t *resp)
{
    store_t *s = w->store;
    if (!rest || !*rest) {
        if (req->method != HTTP_M_GET) {
            http_refuse(resp, 405, 1, "/v1/sets takes GET");
            return;
        }
        json_t *names = json_array();
        if (s->ops->set_list(s, collect_name, names) != STORE_OK) {
            json_decref(names);
            storage_error(s, resp);
            return;
        }
        http_reply_json(resp, 200, json_pack("{s:o}", "sets", names));
        return;
    }
    char name[MDM_ID_MAX + 1];
    const char *sub = NULL;
    if (first_segment(rest, name, sizeof name, &sub) != 0 || !mdm_id_valid(name)) {
        http_refuse(resp, 400, 1, "set names are 1 to %d printable characters without spaces, '/', ',', ':', '%%' "
                                  "or quotes",
                    MDM_ID_MAX);
        return;
    }
    HTTP_LOG(resp, log_id, name);
    if (sub && strcmp(sub, "assignments") == 0) {
        set_assignment(w, req, name, resp);
    } else if (sub) {
        http_refuse(resp, 404, 1, "no such endpoint: /v1/sets/{name}/%.64s", sub);
    } else if (req->method == HTTP_M_PUT) {
        set_put(w, req, name, resp);
    } else if (req->method == HTTP_M_GET) {
        set_get(w, name, resp);
    } else if (req->method == HTTP_M_DELETE) {
        int rc = s->ops->set_delete(s, name);
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "no set '%.64s'", name);
        } else if (rc != STORE_OK) {
            storage_error(s, resp);
        } else {
            json_t *o = json_pack("{s:s,s:b}", "name", name, "deleted", 1);
            add_sync(w, o);
            http_reply_json(resp, 200, o);
        }
    } else {
        http_refuse(resp, 405, 1, "/v1/sets/{name} takes GET, PUT or DELETE");
    }
}

/* ---- groups ---------------------------------------------------------------------------- */

typedef struct {
    const char *group;
    json_t *sets;
} group_sets_t;

static int collect_group_set(void *ctx, const char *set_name, const char *target_kind, const char *target)
{
    group_sets_t *g = ctx;
    if (strcmp(target_kind, DDM_TARGET_GROUP) == 0 && strcmp(target, g->group) == 0)
        json_array_append_new(g->sets, json_string(set_name));
    return 0;
}

static void api_groups(worker_t *w, const http_request_t *req, const char *rest, http_response_t *resp)
{
    store_t *s = w->store;
    char group[MDM_ID_MAX + 1];
    const char *sub = NULL;
    if (!rest || first_segment(rest, group, sizeof group, &sub) != 0 || !mdm_id_valid(group)) {
        http_refuse(resp, 400, 1, "group names are 1 to %d printable characters without spaces, '/', ',', ':', "
                                  "'%%' or quotes",
                    MDM_ID_MAX);
        return;
    }
    HTTP_LOG(resp, log_id, group);
    if (!sub) {
        if (req->method != HTTP_M_GET) {
            http_refuse(resp, 405, 1, "/v1/groups/{group} takes GET");
            return;
        }
        json_t *members = json_array();
        group_sets_t gs = {group, json_array()};
        if (s->ops->group_members(s, group, collect_name, members) != STORE_OK ||
            s->ops->set_assignments(s, NULL, collect_group_set, &gs) != STORE_OK) {
            json_decref(members);
            json_decref(gs.sets);
            storage_error(s, resp);
            return;
        }
        http_reply_json(resp, 200, json_pack("{s:s,s:o,s:o}", "group", group, "members", members, "sets", gs.sets));
        return;
    }
    if (strncmp(sub, "members/", 8) != 0 || !enrollment_id_valid(sub + 8)) {
        http_refuse(resp, 404, 1, "no such endpoint: /v1/groups/{group}/%.64s", sub);
        return;
    }
    const char *id = sub + 8;
    int rc;
    if (req->method == HTTP_M_PUT) {
        enrollment_t e;
        rc = s->ops->enrollment_get(s, id, &e);
        if (rc == STORE_OK) {
            enrollment_free(&e);
            rc = s->ops->group_add(s, group, id, util_now());
        } else if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "no enrollment '%.64s'", id);
            return;
        }
    } else if (req->method == HTTP_M_DELETE) {
        rc = s->ops->group_remove(s, group, id);
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "'%.64s' is not a member of group '%.64s'", id, group);
            return;
        }
    } else {
        http_refuse(resp, 405, 1, "/v1/groups/{group}/members/{id} takes PUT or DELETE");
        return;
    }
    if (rc != STORE_OK) {
        storage_error(s, resp);
        return;
    }
    json_t *o = json_pack("{s:s,s:s,s:b}", "group", group, "member", id, "added", req->method == HTTP_M_PUT);
    add_sync(w, o);
    http_reply_json(resp, 200, o);
}

/* ---- asset data ------------------------------------------------------------------------- */

static json_t *asset_json(const app_t *app, const asset_data_t *a)
{
    char *url = util_strdup_printf("%s/mdm/assets/%s", app->cfg->public_url, a->name);
    json_t *o = json_pack("{s:s,s:s,s:I,s:s,s:o,s:o}", "name", a->name, "content_type",
                          a->content_type ? a->content_type : "", "size", (json_int_t)a->len, "sha256",
                          a->sha256 ? a->sha256 : "", "url", api_json_string(url), "updated_at",
                          api_json_time(a->updated_at));
    free(url);
    return o;
}

static int content_type_ok(const char *ct)
{
    size_t n = ct ? strlen(ct) : 0;
    if (n == 0 || n > CONTENT_TYPE_MAX || !strchr(ct, '/'))
        return 0;
    for (const char *p = ct; *p; p++)
        if ((unsigned char)*p < 0x20 || (unsigned char)*p > 0x7e)
            return 0;
    return 1;
}

static void api_asset_data(worker_t *w, const http_request_t *req, const char *name, http_response_t *resp)
{
    store_t *s = w->store;
    if (!name || !mdm_asset_name_valid(name)) {
        http_refuse(resp, 400, 1, "asset data names are 1 to 128 characters of A-Z a-z 0-9 . _ -");
        return;
    }
    HTTP_LOG(resp, log_id, name);
    if (!s->ops->asset_data_put || !s->ops->asset_data_get || !s->ops->asset_data_delete) {
        http_refuse(resp, 501, 1, "this storage backend does not keep asset data");
        return;
    }
    if (strcmp(name, "orchard-anchor.pem") == 0) {
        http_refuse(resp, 409, 1, "'orchard-anchor.pem' is built in (the server's anchor certificates)");
        return;
    }
    if (req->method == HTTP_M_PUT) {
        const char *ct = http_header(req, "Content-Type");
        if (!content_type_ok(ct)) {
            http_refuse(resp, 400, 1, "asset data needs a Content-Type header (type/subtype, printable ASCII, at most "
                                      "%d characters)",
                        CONTENT_TYPE_MAX);
            return;
        }
        unsigned char md[32];
        char hex[65];
        unsigned int mdlen = 0;
        if (EVP_Digest(req->body, req->body_len, md, &mdlen, EVP_sha256(), NULL) != 1) {
            http_refuse(resp, 503, 1, "cannot hash the asset data");
            return;
        }
        util_hex(md, sizeof md, hex);
        asset_data_t a = {.name = (char *)name,
                          .content_type = (char *)ct,
                          .data = (unsigned char *)req->body,
                          .len = req->body_len,
                          .sha256 = hex,
                          .updated_at = util_now()};
        if (s->ops->asset_data_put(s, &a, a.updated_at) != STORE_OK) {
            storage_error(s, resp);
            return;
        }
        json_t *o = asset_json(w->app, &a);
        add_sync(w, o);
        http_reply_json(resp, 200, o);
        return;
    }
    if (req->method == HTTP_M_GET) {
        asset_data_t a;
        int rc = s->ops->asset_data_get(s, name, &a);
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "no asset data '%s'", name);
        } else if (rc != STORE_OK) {
            storage_error(s, resp);
        } else {
            http_reply_json(resp, 200, asset_json(w->app, &a));
            asset_data_free(&a);
        }
        return;
    }
    if (req->method == HTTP_M_DELETE) {
        int rc = s->ops->asset_data_delete(s, name);
        if (rc == STORE_NOTFOUND) {
            http_refuse(resp, 404, 1, "no asset data '%s'", name);
        } else if (rc != STORE_OK) {
            storage_error(s, resp);
        } else {
            json_t *o = json_pack("{s:s,s:b}", "name", name, "deleted", 1);
            add_sync(w, o);
            http_reply_json(resp, 200, o);
        }
        return;
    }
    http_refuse(resp, 405, 1, "/v1/asset-data/{name} takes GET, PUT or DELETE");
}

/* ---- per-device views ----------------------------------------------------------------- */

static int collect_decl_status(void *ctx, const ddm_decl_status_t *d)
{
    json_t *reasons = d->reasons_json ? json_loads(d->reasons_json, 0, NULL) : NULL;
    json_t *o = json_pack("{s:s,s:s,s:s,s:b,s:s,s:o,s:o}", "identifier", d->identifier, "kind", d->kind,
                          "server_token", d->server_token, "active", d->active, "valid", d->valid, "reasons",
                          reasons ? reasons : json_array(), "updated_at", api_json_time(d->updated_at));
    json_array_append_new(ctx, o);
    return 0;
}

/* A reported declaration failed when the device calls it invalid or gives
 * an Error.* reason. */
static int reported_failed(const json_t *rep)
{
    if (strcmp(json_string_value(json_object_get(rep, "valid")), "invalid") == 0)
        return 1;
    size_t i;
    const json_t *r;
    json_array_foreach(json_object_get(rep, "reasons"), i, r)
    {
        const char *code = json_string_value(json_object_get(r, "code"));
        if (code && strncmp(code, "Error.", 6) == 0)
            return 1;
    }
    return 0;
}

static void device_declarations(worker_t *w, const char *id, http_response_t *resp)
{
    store_t *s = w->store;
    declaration_t *decls = NULL;
    size_t n = 0;
    char token[33];
    if (ddm_effective_for(s, id, &decls, &n, token) != 0) {
        storage_error(s, resp);
        return;
    }
    json_t *reported = json_array();
    ddm_state_t st;
    memset(&st, 0, sizeof st);
    int src = s->ops->ddm_decl_statuses(s, id, collect_decl_status, reported);
    int strc = src == STORE_OK ? s->ops->ddm_state_get(s, id, &st) : STORE_ERR;
    if (src != STORE_OK || strc == STORE_ERR) {
        for (size_t i = 0; i < n; i++)
            declaration_free(&decls[i]);
        free(decls);
        json_decref(reported);
        storage_error(s, resp);
        return;
    }
    json_t *effective = json_array(), *failed = json_array();
    for (size_t i = 0; i < n; i++) {
        json_t *o = decl_summary(&decls[i]);
        json_t *rep = NULL;
        size_t k;
        json_t *r;
        json_array_foreach(reported, k, r)
        {
            if (strcmp(json_string_value(json_object_get(r, "identifier")), decls[i].identifier) == 0)
                rep = r;
        }
        if (rep) {
            json_t *copy = json_deep_copy(rep);
            json_object_del(copy, "identifier");
            json_object_set_new(copy, "in_sync", json_boolean(strcmp(json_string_value(json_object_get(
                                                                          rep, "server_token")),
                                                                      decls[i].server_token) == 0));
            json_object_set_new(o, "reported", copy);
        } else {
            json_object_set_new(o, "reported", json_null());
        }
        json_array_append_new(effective, o);
        declaration_free(&decls[i]);
    }
    free(decls);
    size_t k;
    json_t *r;
    json_array_foreach(reported, k, r)
    {
        if (reported_failed(r))
            json_array_append(failed, r);
    }
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(id));
    json_object_set_new(o, "token", json_string(token));
    json_object_set_new(o, "synced_token", api_json_string(strc == STORE_OK ? st.token : NULL));
    json_object_set_new(o, "sync_pending", json_boolean(strc == STORE_OK && st.sync_pending));
    json_object_set_new(o, "token_changed_at", api_json_time(strc == STORE_OK ? st.token_changed_at : 0));
    json_object_set_new(o, "manifest_at", api_json_time(strc == STORE_OK ? st.manifest_at : 0));
    json_object_set_new(o, "status_at", api_json_time(strc == STORE_OK ? st.status_at : 0));
    json_object_set_new(o, "declarations", effective);
    json_object_set_new(o, "reported", reported);
    json_object_set_new(o, "failed", failed);
    ddm_state_free(&st);
    http_reply_json(resp, 200, o);
}

static int collect_status_item(void *ctx, const ddm_status_item_t *i)
{
    json_t *v = json_loads(i->value_json, JSON_DECODE_ANY, NULL);
    json_array_append_new(ctx, json_pack("{s:s,s:o,s:o}", "name", i->name, "value", v ? v : json_null(),
                                         "updated_at", api_json_time(i->updated_at)));
    return 0;
}

static void device_status_items(worker_t *w, const char *id, http_response_t *resp)
{
    json_t *arr = json_array();
    if (w->store->ops->ddm_status_items(w->store, id, collect_status_item, arr) != STORE_OK) {
        json_decref(arr);
        storage_error(w->store, resp);
        return;
    }
    http_reply_json(resp, 200, json_pack("{s:s,s:o}", "id", id, "status_items", arr));
}

/* 1 if handled: only devices/{id}/declarations and devices/{id}/status-items. */
static int api_device_ddm(worker_t *w, const http_request_t *req, const char *rest, http_response_t *resp)
{
    const char *slash = strrchr(rest, '/');
    if (!slash || (strcmp(slash, "/declarations") != 0 && strcmp(slash, "/status-items") != 0))
        return 0;
    char id[2 * MDM_ID_MAX + 2];
    size_t n = (size_t)(slash - rest);
    if (n == 0 || n >= sizeof id)
        return 0;
    memcpy(id, rest, n);
    id[n] = '\0';
    HTTP_LOG(resp, log_id, id);
    if (req->method != HTTP_M_GET) {
        http_refuse(resp, 405, 1, "%s takes GET", req->path);
        return 1;
    }
    enrollment_t e;
    int rc = enrollment_id_valid(id) ? w->store->ops->enrollment_get(w->store, id, &e) : STORE_NOTFOUND;
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 404, 1, "no enrollment with id %.100s", id);
        return 1;
    }
    if (rc != STORE_OK) {
        storage_error(w->store, resp);
        return 1;
    }
    enrollment_free(&e);
    if (strcmp(slash, "/declarations") == 0)
        device_declarations(w, id, resp);
    else
        device_status_items(w, id, resp);
    return 1;
}

/* ---- dispatch ---------------------------------------------------------------------------- */

/* The DDM store ops (schema 5) exist in this backend. */
static int ddm_supported(const store_t *s)
{
    const struct store_ops *o = s->ops;
    return o->decl_put && o->decl_get && o->decl_delete && o->decl_list && o->decl_referrers && o->set_put &&
           o->set_delete && o->set_list && o->set_members && o->decl_sets && o->set_assign && o->set_unassign &&
           o->set_assignments && o->group_add && o->group_remove && o->group_members && o->ddm_effective &&
           o->ddm_enrollment_sets && o->ddm_state_get && o->ddm_candidates && o->ddm_sync_queue &&
           o->ddm_status_items && o->ddm_decl_statuses;
}

static const char *after(const char *p, const char *prefix)
{
    size_t n = strlen(prefix);
    if (strncmp(p, prefix, n) != 0)
        return NULL;
    if (p[n] == '\0')
        return p + n;
    return p[n] == '/' ? p + n + 1 : NULL;
}

int admin_ddm_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp)
{
    const char *rest;
    void (*fn)(worker_t *, const http_request_t *, const char *, http_response_t *) = NULL;
    if ((rest = after(sub, "declarations")))
        fn = api_declarations;
    else if ((rest = after(sub, "sets")))
        fn = api_sets;
    else if ((rest = after(sub, "groups")))
        fn = api_groups;
    else if ((rest = after(sub, "asset-data")))
        fn = api_asset_data;
    else if (strcmp(sub, "ddm/sync") == 0)
        rest = sub;
    else if (strncmp(sub, "devices/", 8) == 0) {
        const char *slash = strrchr(sub + 8, '/');
        if (!slash || (strcmp(slash, "/declarations") != 0 && strcmp(slash, "/status-items") != 0))
            return 0;
        rest = sub + 8;
    } else {
        return 0;
    }
    if (!ddm_supported(w->store)) {
        http_refuse(resp, 501, 1, "this storage backend does not support declarative device management");
        return 1;
    }
    if (fn) {
        fn(w, req, rest, resp);
    } else if (strcmp(sub, "ddm/sync") == 0) {
        if (req->method != HTTP_M_POST) {
            http_refuse(resp, 405, 1, "/v1/ddm/sync takes POST");
            return 1;
        }
        json_t *o = json_object();
        add_sync(w, o);
        http_reply_json(resp, json_object_get(json_object_get(o, "sync"), "error") ? 503 : 200, o);
    } else {
        api_device_ddm(w, req, rest, resp);
    }
    return 1;
}
