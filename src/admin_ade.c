/* Admin API for Automated Device Enrollment (called by admin_api_handle
 * after the key check; `sub` is the path after "/v1/"):
 *
 *   GET    ade/tokens                         tokens with sync state, last error, expiry
 *   PUT    ade/tokens/{name}                  import: body = Apple's token file (.p7m)
 *   GET    ade/tokens/{name}                  one token
 *   DELETE ade/tokens/{name}                  forget it (and its devices and profiles)
 *   POST   ade/tokens/{name}/sync             sync now (fetch the first time)
 *   PUT    ade/tokens/{name}/default-profile  {"profile_uuid": ...}: assigned to new devices
 *   DELETE ade/tokens/{name}/default-profile
 *   POST   ade/tokens/{name}/disown           {"devices": [serials]} (permanent at Apple)
 *   GET    ade/devices?token=&deleted=1&after=&limit=
 *   GET    ade/devices/{serial}
 *   POST   ade/devices/{serial}/refresh       device details from Apple
 *   GET    ade/profiles?token=
 *   POST   ade/profiles                       define: {"token": ..., profile keys}
 *   GET    ade/profiles/{uuid}[?apple=1]      as stored, or as Apple has it
 *   PUT    ade/profiles/{uuid}/devices        {"devices": [...]}: assign
 *   DELETE ade/profiles/{uuid}/devices        {"devices": [...]}: remove
 *
 * Calls to Apple run in the worker thread with the client's bounded
 * timeouts and retries: admin calls are rare and the admin waits for the
 * answer. Credentials never appear in answers or logs. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/x509.h>

#include "ade_sync.h"
#include "ade_token.h"
#include "api_json.h"
#include "app.h"
#include "log.h"
#include "util.h"

#define SERIALS_MAX 1000

/* ---- helpers ------------------------------------------------------------------ */

static json_t *body_json(const http_request_t *req, http_response_t *resp)
{
    json_error_t e;
    json_t *j = req->body_len ? json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &e) : NULL;
    if (!json_is_object(j)) {
        http_refuse(resp, 400, 1, "body is not a JSON object%s%s", j || !req->body_len ? "" : ": ",
                    j || !req->body_len ? "" : e.text);
        json_decref(j);
        return NULL;
    }
    return j;
}

/* A failed call to Apple: the admin sees Apple's word and what it means. */
static void refuse_apple(http_response_t *resp, const ade_error_t *err)
{
    int status = err->rc == ADE_E_REQUEST ? 400 : err->rc == ADE_E_NOTFOUND ? 404 : 502;
    snprintf(resp->log_problem, sizeof resp->log_problem, "%.250s", err->message);
    json_t *j = json_pack("{s:s}", "error", err->message);
    if (err->code[0])
        json_object_set_new(j, "apple_code", json_string(err->code));
    if (err->status)
        json_object_set_new(j, "apple_status", json_integer(err->status));
    http_reply_json(resp, status, j);
}

static ade_env_t *env_of(worker_t *w, http_response_t *resp)
{
    if (!w->app->ade)
        http_refuse(resp, 503, 1, "ADE is not available on this server (see the startup log)");
    return w->app->ade;
}

static json_t *token_json(const ade_token_t *t, int64_t now)
{
    json_t *o = json_object();
    json_object_set_new(o, "name", json_string(t->name));
    json_object_set_new(o, "server_name", api_json_string(t->server_name));
    json_object_set_new(o, "server_uuid", api_json_string(t->server_uuid));
    json_object_set_new(o, "org_name", api_json_string(t->org_name));
    json_object_set_new(o, "default_profile_uuid", api_json_string(t->default_profile_uuid));
    json_object_set_new(o, "access_token_expiry", api_json_time(t->access_token_expiry));
    if (t->access_token_expiry > 0) {
        int64_t left = t->access_token_expiry - now;
        json_object_set_new(o, "expires_in_days", json_integer(left > 0 ? left / 86400 : 0));
        json_object_set_new(o, "expired", json_boolean(left <= 0));
        json_object_set_new(o, "renewal_due", json_boolean(left <= (int64_t)ADE_RENEWAL_WARN_DAYS * 86400));
    }
    const char *state = t->last_error ? "error" : t->last_sync_at ? "ok" : "never";
    json_object_set_new(o, "sync_state", json_string(state));
    json_object_set_new(o, "has_cursor", json_boolean(t->cursor != NULL));
    json_object_set_new(o, "cursor_at", api_json_time(t->cursor_at));
    json_object_set_new(o, "last_sync_at", api_json_time(t->last_sync_at));
    json_object_set_new(o, "last_error", api_json_string(t->last_error));
    json_object_set_new(o, "last_error_at", api_json_time(t->last_error_at));
    json_object_set_new(o, "imported_at", api_json_time(t->imported_at));
    return o;
}

static json_t *device_json(const ade_device_t *d)
{
    json_t *o = json_object();
    json_object_set_new(o, "serial_number", json_string(d->serial_number));
    json_object_set_new(o, "token", api_json_string(d->token_name));
    json_object_set_new(o, "model", api_json_string(d->model));
    json_object_set_new(o, "description", api_json_string(d->description));
    json_object_set_new(o, "color", api_json_string(d->color));
    json_object_set_new(o, "asset_tag", api_json_string(d->asset_tag));
    json_object_set_new(o, "device_family", api_json_string(d->device_family));
    json_object_set_new(o, "os", api_json_string(d->os));
    json_object_set_new(o, "profile_status", api_json_string(d->profile_status));
    json_object_set_new(o, "profile_uuid", api_json_string(d->profile_uuid));
    json_object_set_new(o, "profile_assign_time", api_json_time(d->profile_assign_time));
    json_object_set_new(o, "profile_push_time", api_json_time(d->profile_push_time));
    json_object_set_new(o, "device_assigned_date", api_json_time(d->device_assigned_date));
    json_object_set_new(o, "device_assigned_by", api_json_string(d->device_assigned_by));
    json_object_set_new(o, "op_type", api_json_string(d->op_type));
    json_object_set_new(o, "op_date", api_json_time(d->op_date));
    json_object_set_new(o, "deleted", json_boolean(d->deleted));
    json_object_set_new(o, "updated_at", api_json_time(d->updated_at));
    return o;
}

static json_t *profile_json(const ade_profile_t *p)
{
    json_t *o = json_object();
    json_object_set_new(o, "profile_uuid", json_string(p->profile_uuid));
    json_object_set_new(o, "token", json_string(p->token_name));
    json_object_set_new(o, "profile_name", api_json_string(p->name));
    json_object_set_new(o, "created_at", api_json_time(p->created_at));
    json_t *def = p->json ? json_loads(p->json, 0, NULL) : NULL;
    json_object_set_new(o, "definition", def ? def : json_null());
    return o;
}

static int serial_valid(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > 64)
        return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f || s[i] == '/')
            return 0;
    return 1;
}

/* body["devices"]: 1..SERIALS_MAX valid serials (borrowed from body). */
static const char **serials_of(json_t *body, size_t *n, http_response_t *resp)
{
    json_t *a = json_object_get(body, "devices");
    size_t count = json_array_size(a);
    if (!json_is_array(a) || count == 0 || count > SERIALS_MAX) {
        http_refuse(resp, 400, 1, "\"devices\" must be an array of 1 to %d serial numbers", SERIALS_MAX);
        return NULL;
    }
    const char **v = calloc(count, sizeof *v);
    if (!v) {
        http_refuse(resp, 500, 1, "out of memory");
        return NULL;
    }
    for (size_t i = 0; i < count; i++) {
        v[i] = json_string_value(json_array_get(a, i));
        if (!serial_valid(v[i])) {
            http_refuse(resp, 400, 1, "\"devices\"[%zu] is not a serial number", i);
            free(v);
            return NULL;
        }
    }
    *n = count;
    return v;
}

static ade_client_t *client_for(worker_t *w, ade_env_t *env, const char *token, http_response_t *resp)
{
    int src = STORE_OK;
    char err[400];
    ade_client_t *c = ade_env_client(env, w->store, token, &src, err, sizeof err);
    if (!c)
        http_refuse(resp, src == STORE_NOTFOUND ? 404 : 500, 1, "%s", err);
    return c;
}

/* Records Apple's per-serial answers of an assign/remove on stored devices. */
static void record_profile(worker_t *w, json_t *ans, const char *const *serials, size_t n, const char *uuid,
                           const char *status)
{
    json_t *devs = json_object_get(ans, "devices");
    int64_t now = util_now();
    for (size_t i = 0; i < n; i++) {
        const char *st = json_string_value(json_object_get(devs, serials[i]));
        if (st && strcmp(st, "SUCCESS") == 0)
            w->store->ops->ade_device_set_profile(w->store, serials[i], uuid, status, now); /* unknown: fine */
    }
}

/* ---- tokens -------------------------------------------------------------------- */

typedef struct {
    json_t *arr;
    int64_t now;
} list_ctx_t;

static int add_token(void *ctx, const ade_token_t *t)
{
    list_ctx_t *c = ctx;
    json_array_append_new(c->arr, token_json(t, c->now));
    return 0;
}

static void tokens_list(worker_t *w, http_response_t *resp)
{
    list_ctx_t c = {.arr = json_array(), .now = util_now()};
    if (w->store->ops->ade_token_list(w->store, add_token, &c) != STORE_OK) {
        json_decref(c.arr);
        http_refuse(resp, 503, 1, "storage error: %s", w->store->ops->errmsg(w->store));
        return;
    }
    http_reply_json(resp, 200, json_pack("{s:o}", "tokens", c.arr));
}

static void token_get(worker_t *w, const char *name, http_response_t *resp)
{
    ade_token_t t;
    int rc = w->store->ops->ade_token_get(w->store, name, &t);
    if (rc != STORE_OK) {
        http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s %s",
                    rc == STORE_NOTFOUND ? "no ADE token named" : "storage error reading", name);
        return;
    }
    http_reply_json(resp, 200, token_json(&t, util_now()));
    ade_token_free(&t);
}

static void token_import(worker_t *w, const http_request_t *req, const char *name, http_response_t *resp)
{
    ade_env_t *env = env_of(w, resp);
    if (!env)
        return;
    if (req->body_len == 0 || req->body_len > ADE_TOKEN_MAX) {
        http_refuse(resp, req->body_len ? 413 : 400, 1, "the body must be Apple's token file (.p7m, at most %d bytes)",
                    ADE_TOKEN_MAX);
        return;
    }
    ade_creds_t creds;
    char *err = NULL;
    if (ade_token_decrypt(env->data_dir, req->body, req->body_len, &creds, &err) != 0) {
        http_refuse(resp, 400, 1, "token %s not imported: %s", name, err ? err : "unknown error");
        free(err);
        return;
    }
    int64_t now = util_now();
    ade_token_t old;
    int existed = w->store->ops->ade_token_get(w->store, name, &old) == STORE_OK;
    if (existed)
        ade_token_free(&old);
    int rc = ade_token_store(env, w->store, name, &creds, now);
    int64_t expiry = creds.access_token_expiry;
    ade_creds_free(&creds);
    if (rc != STORE_OK) {
        http_refuse(resp, 503, 1, "storing token %s failed: %s", name, w->store->ops->errmsg(w->store));
        return;
    }
    char when[32] = "unknown";
    if (expiry > 0) {
        json_t *t = api_json_time(expiry);
        snprintf(when, sizeof when, "%s", json_string_value(t) ? json_string_value(t) : "unknown");
        json_decref(t);
    }
    log_info("ade: token %s %s (access token expires %s)", name, existed ? "renewed" : "imported", when);
    /* Ask Apple at once: the admin learns now whether the token works. */
    ade_error_t aerr;
    ade_refresh_account(env, w->store, name, &aerr);
    token_get(w, name, resp);
    if (resp->status == 200)
        resp->status = existed ? 200 : 201;
}

static void token_delete(worker_t *w, const char *name, http_response_t *resp)
{
    int rc = w->store->ops->ade_token_delete(w->store, name);
    if (rc != STORE_OK) {
        http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s %s",
                    rc == STORE_NOTFOUND ? "no ADE token named" : "storage error deleting", name);
        return;
    }
    log_info("ade: token %s deleted", name);
    http_reply_json(resp, 200, json_pack("{s:s,s:b}", "name", name, "deleted", 1));
}

static void token_sync(worker_t *w, const char *name, http_response_t *resp)
{
    ade_env_t *env = env_of(w, resp);
    if (!env)
        return;
    ade_sync_report_t rep;
    ade_sync_token(env, w->store, name, &rep);
    if (rep.outcome == ADE_SYNC_NO_TOKEN) {
        http_refuse(resp, 404, 1, "%s", rep.error.message);
        return;
    }
    if (rep.outcome == ADE_SYNC_LEASED) {
        http_refuse(resp, 409, 1, "%s", rep.error.message);
        return;
    }
    json_t *o = json_pack("{s:s,s:s,s:b,s:b,s:i,s:I,s:I,s:I,s:I,s:i}", "token", name, "outcome",
                          rep.outcome == ADE_SYNC_DONE ? "ok" : "failed", "full_fetch", rep.full_fetch,
                          "cursor_reset", rep.cursor_reset, "pages", rep.pages, "records", (json_int_t)rep.records,
                          "changed", (json_int_t)rep.applied, "added", (json_int_t)rep.added, "assigned",
                          (json_int_t)rep.assigned, "sessions", rep.sessions);
    if (rep.outcome == ADE_SYNC_FAILED) {
        json_object_set_new(o, "error", json_string(rep.error.message));
        if (rep.error.code[0])
            json_object_set_new(o, "apple_code", json_string(rep.error.code));
        snprintf(resp->log_problem, sizeof resp->log_problem, "%.250s", rep.error.message);
    }
    http_reply_json(resp, rep.outcome == ADE_SYNC_DONE ? 200 : 502, o);
}

static void token_default_profile(worker_t *w, const http_request_t *req, const char *name, http_response_t *resp)
{
    const char *uuid = NULL;
    json_t *body = NULL;
    if (req->method == HTTP_M_PUT) {
        if (!(body = body_json(req, resp)))
            return;
        uuid = json_string_value(json_object_get(body, "profile_uuid"));
        ade_profile_t p;
        int prc = uuid ? w->store->ops->ade_profile_get(w->store, uuid, &p) : STORE_NOTFOUND;
        if (prc != STORE_OK || strcmp(p.token_name, name) != 0) {
            http_refuse(resp, 400, 1, "\"profile_uuid\" must name a profile defined for token %s", name);
            if (prc == STORE_OK)
                ade_profile_free(&p);
            json_decref(body);
            return;
        }
        ade_profile_free(&p);
    }
    int rc = w->store->ops->ade_token_set_default_profile(w->store, name, uuid, util_now());
    if (rc != STORE_OK)
        http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s %s",
                    rc == STORE_NOTFOUND ? "no ADE token named" : "storage error for", name);
    else
        token_get(w, name, resp);
    json_decref(body);
}

static void token_disown(worker_t *w, const http_request_t *req, const char *name, http_response_t *resp)
{
    ade_env_t *env = env_of(w, resp);
    json_t *body = env ? body_json(req, resp) : NULL;
    size_t n = 0;
    const char **serials = body ? serials_of(body, &n, resp) : NULL;
    ade_client_t *c = serials ? client_for(w, env, name, resp) : NULL;
    if (c) {
        json_t *ans = NULL;
        ade_error_t err;
        if (ade_disown_devices(c, serials, n, &ans, &err) != ADE_OK) {
            refuse_apple(resp, &err);
        } else {
            log_info("ade: token %s: disowned %zu devices", name, n);
            json_t *devs = json_object_get(ans, "devices");
            http_reply_json(resp, 200, json_pack("{s:O}", "devices", devs ? devs : json_object()));
        }
        json_decref(ans);
        ade_client_free(c);
    }
    free(serials);
    json_decref(body);
}

/* ---- devices ------------------------------------------------------------------- */

typedef struct {
    json_t *arr;
    char last[80];
} dev_list_t;

static int add_device(void *ctx, const ade_device_t *d)
{
    dev_list_t *c = ctx;
    json_array_append_new(c->arr, device_json(d));
    snprintf(c->last, sizeof c->last, "%s", d->serial_number);
    return 0;
}

static void devices_list(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    char token[80], del[8], after[80], lim[16];
    const char *t = http_query(req, "token", token, sizeof token);
    const char *a = http_query(req, "after", after, sizeof after);
    int include_deleted = http_query(req, "deleted", del, sizeof del) && strcmp(del, "0") != 0;
    int limit = 100;
    if (http_query(req, "limit", lim, sizeof lim)) {
        char *end;
        long l = strtol(lim, &end, 10);
        if (*end || l < 1 || l > 1000) {
            http_refuse(resp, 400, 1, "limit must be 1..1000");
            return;
        }
        limit = (int)l;
    }
    dev_list_t c = {.arr = json_array()};
    if (w->store->ops->ade_device_list(w->store, t, include_deleted, a, limit, add_device, &c) != STORE_OK) {
        json_decref(c.arr);
        http_refuse(resp, 503, 1, "storage error: %s", w->store->ops->errmsg(w->store));
        return;
    }
    json_t *o = json_pack("{s:o}", "devices", c.arr);
    json_object_set_new(o, "next_after", (int)json_array_size(c.arr) == limit ? json_string(c.last) : json_null());
    http_reply_json(resp, 200, o);
}

static void device_get(worker_t *w, const char *serial, http_response_t *resp)
{
    ade_device_t d;
    int rc = w->store->ops->ade_device_get(w->store, serial, &d);
    if (rc != STORE_OK) {
        http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s %.64s",
                    rc == STORE_NOTFOUND ? "no ADE device with serial" : "storage error reading", serial);
        return;
    }
    http_reply_json(resp, 200, device_json(&d));
    ade_device_free(&d);
}

static void device_refresh(worker_t *w, const char *serial, http_response_t *resp)
{
    ade_env_t *env = env_of(w, resp);
    if (!env)
        return;
    ade_device_t d;
    int rc = w->store->ops->ade_device_get(w->store, serial, &d);
    if (rc != STORE_OK) {
        http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s %.64s",
                    rc == STORE_NOTFOUND ? "no ADE device with serial" : "storage error reading", serial);
        return;
    }
    char *token = strdup(d.token_name);
    int64_t op_date = d.op_date;
    ade_device_free(&d);
    ade_client_t *c = token ? client_for(w, env, token, resp) : NULL;
    if (c) {
        json_t *ans = NULL;
        ade_error_t err;
        const char *one[1] = {serial};
        if (ade_device_details(c, one, 1, &ans, &err) != ADE_OK) {
            refuse_apple(resp, &err);
        } else {
            json_t *rec = json_object_get(json_object_get(ans, "devices"), serial);
            const char *st = json_string_value(json_object_get(rec, "response_status"));
            char why[256];
            ade_device_t fresh;
            if (!st || strcmp(st, "SUCCESS") != 0) {
                http_refuse(resp, 404, 1, "Apple does not know %.64s for token %s (%s)", serial, token,
                            st ? st : "no answer");
            } else if (ade_device_from_json(rec, serial, token, &fresh, why, sizeof why) != 0) {
                http_refuse(resp, 502, 1, "Apple's device details are malformed: %s", why);
            } else {
                /* Details carry no op_type: a modification at the date of
                 * the latest applied operation (Apple's clock, not ours), so
                 * a later sync record of this device still applies. */
                int64_t now = util_now();
                fresh.op_type = "modified";
                fresh.op_date = op_date;
                if (w->store->ops->ade_devices_apply(w->store, &fresh, 1, now, NULL, NULL) != STORE_OK)
                    http_refuse(resp, 503, 1, "storage error: %s", w->store->ops->errmsg(w->store));
                else
                    device_get(w, serial, resp);
            }
        }
        json_decref(ans);
        ade_client_free(c);
    }
    free(token);
}

/* ---- profiles ------------------------------------------------------------------ */

typedef enum { K_STRING, K_BOOL, K_STRINGS, K_CERTS } kind_t;

/* Every key of Apple's profile definition orchard passes on. */
static const struct {
    const char *key;
    kind_t kind;
} profile_keys[] = {
    {"profile_name", K_STRING},
    {"url", K_STRING},
    {"allow_pairing", K_BOOL},
    {"is_supervised", K_BOOL},
    {"is_multi_user", K_BOOL},
    {"is_mandatory", K_BOOL},
    {"await_device_configured", K_BOOL},
    {"is_mdm_removable", K_BOOL},
    {"auto_advance_setup", K_BOOL},
    {"support_phone_number", K_STRING},
    {"support_email_address", K_STRING},
    {"org_magic", K_STRING},
    {"anchor_certs", K_CERTS},
    {"supervising_host_certs", K_CERTS},
    {"skip_setup_items", K_STRINGS},
    {"department", K_STRING},
    {"language", K_STRING},
    {"region", K_STRING},
    {"configuration_web_url", K_STRING},
    {"devices", K_STRINGS},
};

static int cert_b64_valid(const char *s)
{
    size_t len = 0;
    unsigned char *der = util_base64_decode(s, strlen(s), &len);
    const unsigned char *p = der;
    X509 *x = der ? d2i_X509(NULL, &p, (long)len) : NULL;
    int ok = x != NULL && p == der + len;
    X509_free(x);
    free(der);
    return ok;
}

/* Checks every key and type; 0 or -1 after refusing. */
static int profile_check(json_t *def, http_response_t *resp)
{
    const char *key;
    json_t *v;
    json_object_foreach(def, key, v)
    {
        size_t i = 0, n = sizeof profile_keys / sizeof profile_keys[0];
        while (i < n && strcmp(profile_keys[i].key, key) != 0)
            i++;
        if (i == n) {
            http_refuse(resp, 400, 1, "unknown profile key \"%.64s\"", key);
            return -1;
        }
        kind_t k = profile_keys[i].kind;
        int ok = k == K_STRING ? json_is_string(v) && json_string_length(v) <= 2048
                 : k == K_BOOL ? json_is_boolean(v)
                               : json_is_array(v) && json_array_size(v) <= SERIALS_MAX;
        for (size_t j = 0; ok && (k == K_STRINGS || k == K_CERTS) && j < json_array_size(v); j++) {
            json_t *e = json_array_get(v, j);
            ok = json_is_string(e) && (k == K_STRINGS ? json_string_length(e) <= 256 : cert_b64_valid(json_string_value(e)));
        }
        if (!ok) {
            http_refuse(resp, 400, 1, "profile key \"%s\" must be %s", key,
                        k == K_STRING    ? "a string"
                        : k == K_BOOL    ? "true or false"
                        : k == K_STRINGS ? "an array of strings"
                                         : "an array of base64 DER certificates");
            return -1;
        }
    }
    const char *name = json_string_value(json_object_get(def, "profile_name"));
    if (!name || !*name) {
        http_refuse(resp, 400, 1, "\"profile_name\" is required");
        return -1;
    }
    const char *url = json_string_value(json_object_get(def, "url"));
    if (url && strncmp(url, "https://", 8) != 0) {
        http_refuse(resp, 400, 1, "\"url\" must be an https:// URL");
        return -1;
    }
    return 0;
}

/* orchard's defaults for what the admin left out: the configuration URL
 * endpoint, supervised, MDM profile not removable, and the anchors devices
 * need to trust orchard's TLS certificate during Setup Assistant. */
static void profile_defaults(const app_t *app, json_t *def)
{
    if (!json_object_get(def, "url")) {
        const char *base = app->cfg->public_url;
        size_t n = strlen(base);
        while (n > 0 && base[n - 1] == '/')
            n--;
        char *u = util_strdup_printf("%.*s/enroll/ade", (int)n, base);
        json_object_set_new(def, "url", json_string(u ? u : ""));
        free(u);
    }
    if (!json_object_get(def, "is_supervised"))
        json_object_set_new(def, "is_supervised", json_true());
    if (!json_object_get(def, "is_mdm_removable"))
        json_object_set_new(def, "is_mdm_removable", json_false());
    if (!json_object_get(def, "is_mandatory"))
        json_object_set_new(def, "is_mandatory", json_true());
    if (!json_object_get(def, "await_device_configured"))
        json_object_set_new(def, "await_device_configured", json_false());
    if (!json_object_get(def, "anchor_certs") && sk_X509_num(app->anchors) > 0) {
        json_t *a = json_array();
        for (int i = 0; i < sk_X509_num(app->anchors); i++) {
            X509 *x = sk_X509_value(app->anchors, i);
            int dup = 0;
            for (int j = 0; j < i; j++)
                dup |= X509_cmp(sk_X509_value(app->anchors, j), x) == 0;
            unsigned char *der = NULL;
            int len = dup ? 0 : i2d_X509(x, &der);
            char *b64 = len > 0 ? util_base64_encode(der, (size_t)len) : NULL;
            if (b64)
                json_array_append_new(a, json_string(b64));
            free(b64);
            OPENSSL_free(der);
        }
        json_object_set_new(def, "anchor_certs", a);
    }
}

static void profile_define(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    ade_env_t *env = env_of(w, resp);
    json_t *body = env ? body_json(req, resp) : NULL;
    if (!body)
        return;
    char token[80];
    const char *t = json_string_value(json_object_get(body, "token"));
    if (!t || !ade_token_name_valid(t)) {
        http_refuse(resp, 400, 1, "\"token\" must name the ADE token (MDM server) the profile is for");
        json_decref(body);
        return;
    }
    snprintf(token, sizeof token, "%s", t);
    json_object_del(body, "token");
    if (profile_check(body, resp) != 0) {
        json_decref(body);
        return;
    }
    profile_defaults(w->app, body);
    ade_client_t *c = client_for(w, env, token, resp);
    if (c) {
        json_t *ans = NULL;
        ade_error_t err;
        if (ade_define_profile(c, body, &ans, &err) != ADE_OK) {
            refuse_apple(resp, &err);
        } else {
            const char *uuid = json_string_value(json_object_get(ans, "profile_uuid"));
            char *text = json_dumps(body, JSON_COMPACT | JSON_SORT_KEYS);
            ade_profile_t p = {.profile_uuid = (char *)uuid,
                               .token_name = token,
                               .name = (char *)json_string_value(json_object_get(body, "profile_name")),
                               .json = text,
                               .created_at = util_now()};
            if (!uuid || !*uuid) {
                http_refuse(resp, 502, 1, "Apple's answer to define_profile has no profile_uuid");
            } else if (!text || w->store->ops->ade_profile_put(w->store, &p) != STORE_OK) {
                http_refuse(resp, 503, 1, "storing profile %s failed: %s", uuid, w->store->ops->errmsg(w->store));
            } else {
                size_t n = json_array_size(json_object_get(body, "devices"));
                const char **serials = n ? calloc(n, sizeof *serials) : NULL;
                for (size_t i = 0; serials && i < n; i++)
                    serials[i] = json_string_value(json_array_get(json_object_get(body, "devices"), i));
                if (serials)
                    record_profile(w, ans, serials, n, uuid, "assigned");
                free(serials);
                log_info("ade: token %s: profile %s \"%s\" defined", token, uuid, p.name);
                json_t *o = json_pack("{s:s,s:s,s:O}", "profile_uuid", uuid, "token", token, "definition", body);
                json_t *devs = json_object_get(ans, "devices");
                json_object_set(o, "devices", devs ? devs : json_object());
                http_reply_json(resp, 201, o);
            }
            free(text);
        }
        json_decref(ans);
        ade_client_free(c);
    }
    json_decref(body);
}

static int add_profile(void *ctx, const ade_profile_t *p)
{
    json_array_append_new(ctx, profile_json(p));
    return 0;
}

static void profiles_list(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    char token[80];
    const char *t = http_query(req, "token", token, sizeof token);
    json_t *arr = json_array();
    if (w->store->ops->ade_profile_list(w->store, t, add_profile, arr) != STORE_OK) {
        json_decref(arr);
        http_refuse(resp, 503, 1, "storage error: %s", w->store->ops->errmsg(w->store));
        return;
    }
    http_reply_json(resp, 200, json_pack("{s:o}", "profiles", arr));
}

static int profile_load(worker_t *w, const char *uuid, ade_profile_t *p, http_response_t *resp)
{
    int rc = w->store->ops->ade_profile_get(w->store, uuid, p);
    if (rc != STORE_OK)
        http_refuse(resp, rc == STORE_NOTFOUND ? 404 : 503, 1, "%s %.64s",
                    rc == STORE_NOTFOUND ? "no ADE profile" : "storage error reading profile", uuid);
    return rc;
}

static void profile_get(worker_t *w, const http_request_t *req, const char *uuid, http_response_t *resp)
{
    ade_profile_t p;
    if (profile_load(w, uuid, &p, resp) != STORE_OK)
        return;
    char apple[8];
    if (!http_query(req, "apple", apple, sizeof apple) || strcmp(apple, "0") == 0) {
        http_reply_json(resp, 200, profile_json(&p));
        ade_profile_free(&p);
        return;
    }
    ade_env_t *env = env_of(w, resp);
    ade_client_t *c = env ? client_for(w, env, p.token_name, resp) : NULL;
    if (c) {
        json_t *ans = NULL;
        ade_error_t err;
        if (ade_fetch_profile(c, uuid, &ans, &err) != ADE_OK)
            refuse_apple(resp, &err);
        else
            http_reply_json(resp, 200, json_incref(ans));
        json_decref(ans);
        ade_client_free(c);
    }
    ade_profile_free(&p);
}

static void profile_devices(worker_t *w, const http_request_t *req, const char *uuid, http_response_t *resp)
{
    ade_env_t *env = env_of(w, resp);
    ade_profile_t p;
    if (!env || profile_load(w, uuid, &p, resp) != STORE_OK)
        return;
    json_t *body = body_json(req, resp);
    size_t n = 0;
    const char **serials = body ? serials_of(body, &n, resp) : NULL;
    ade_client_t *c = serials ? client_for(w, env, p.token_name, resp) : NULL;
    if (c) {
        int assign = req->method == HTTP_M_PUT;
        json_t *ans = NULL;
        ade_error_t err;
        ade_rc_t rc = assign ? ade_assign_profile(c, uuid, serials, n, &ans, &err)
                             : ade_remove_profile(c, serials, n, &ans, &err);
        if (rc != ADE_OK) {
            refuse_apple(resp, &err);
        } else {
            record_profile(w, ans, serials, n, assign ? uuid : NULL, assign ? "assigned" : "removed");
            log_info("ade: profile %s %s %zu devices", uuid, assign ? "assigned to" : "removed from", n);
            json_t *devs = json_object_get(ans, "devices");
            http_reply_json(resp, 200,
                            json_pack("{s:s,s:O}", "profile_uuid", uuid, "devices", devs ? devs : json_object()));
        }
        json_decref(ans);
        ade_client_free(c);
    }
    free(serials);
    json_decref(body);
    ade_profile_free(&p);
}

/* ---- routing ------------------------------------------------------------------- */

/* Splits "a/b" after a prefix: id into idbuf, the rest ("" or "leaf"). */
static const char *split(const char *rest, char *idbuf, size_t len)
{
    const char *slash = strchr(rest, '/');
    size_t n = slash ? (size_t)(slash - rest) : strlen(rest);
    if (n == 0 || n >= len)
        return NULL;
    memcpy(idbuf, rest, n);
    idbuf[n] = '\0';
    return slash ? slash + 1 : "";
}

static void method_not_allowed(http_response_t *resp, const char *what, const char *allowed)
{
    http_refuse(resp, 405, 1, "%s takes %s", what, allowed);
}

int admin_ade_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp)
{
    if (strncmp(sub, "ade/", 4) != 0)
        return 0;
    const char *p = sub + 4;
    http_method_t m = req->method;
    char id[128];
    HTTP_LOG(resp, log_type, "ade");
    const struct store_ops *ops = w->store->ops;
    if (!ops->ade_token_get || !ops->ade_token_list || !ops->ade_device_list || !ops->ade_profile_list) {
        http_refuse(resp, 503, 1, "ADE is not available with the %s storage backend", ops->name);
        return 1;
    }
    if (strcmp(p, "tokens") == 0) {
        if (m == HTTP_M_GET)
            tokens_list(w, resp);
        else
            method_not_allowed(resp, "ade/tokens", "GET");
        return 1;
    }
    if (strncmp(p, "tokens/", 7) == 0) {
        const char *leaf = split(p + 7, id, sizeof id);
        if (!leaf || !ade_token_name_valid(id)) {
            http_refuse(resp, 400, 1, "token names are 1-64 of [A-Za-z0-9._-]");
            return 1;
        }
        HTTP_LOG(resp, log_id, id);
        if (*leaf == '\0') {
            if (m == HTTP_M_GET)
                token_get(w, id, resp);
            else if (m == HTTP_M_PUT)
                token_import(w, req, id, resp);
            else if (m == HTTP_M_DELETE)
                token_delete(w, id, resp);
            else
                method_not_allowed(resp, "ade/tokens/{name}", "GET, PUT (import) or DELETE");
        } else if (strcmp(leaf, "sync") == 0) {
            if (m == HTTP_M_POST)
                token_sync(w, id, resp);
            else
                method_not_allowed(resp, "sync", "POST");
        } else if (strcmp(leaf, "default-profile") == 0) {
            if (m == HTTP_M_PUT || m == HTTP_M_DELETE)
                token_default_profile(w, req, id, resp);
            else
                method_not_allowed(resp, "default-profile", "PUT or DELETE");
        } else if (strcmp(leaf, "disown") == 0) {
            if (m == HTTP_M_POST)
                token_disown(w, req, id, resp);
            else
                method_not_allowed(resp, "disown", "POST");
        } else {
            http_refuse(resp, 404, 1, "no such ADE token resource: %.64s", leaf);
        }
        return 1;
    }
    if (strcmp(p, "devices") == 0) {
        if (m == HTTP_M_GET)
            devices_list(w, req, resp);
        else
            method_not_allowed(resp, "ade/devices", "GET");
        return 1;
    }
    if (strncmp(p, "devices/", 8) == 0) {
        const char *leaf = split(p + 8, id, sizeof id);
        if (!leaf || !serial_valid(id)) {
            http_refuse(resp, 400, 1, "not a serial number");
            return 1;
        }
        HTTP_LOG(resp, log_id, id);
        if (*leaf == '\0' && m == HTTP_M_GET)
            device_get(w, id, resp);
        else if (strcmp(leaf, "refresh") == 0 && m == HTTP_M_POST)
            device_refresh(w, id, resp);
        else
            http_refuse(resp, 404, 1, "ade/devices/{serial} takes GET, or POST .../refresh");
        return 1;
    }
    if (strcmp(p, "profiles") == 0) {
        if (m == HTTP_M_GET)
            profiles_list(w, req, resp);
        else if (m == HTTP_M_POST)
            profile_define(w, req, resp);
        else
            method_not_allowed(resp, "ade/profiles", "GET or POST (define)");
        return 1;
    }
    if (strncmp(p, "profiles/", 9) == 0) {
        const char *leaf = split(p + 9, id, sizeof id);
        if (!leaf || !serial_valid(id)) {
            http_refuse(resp, 400, 1, "not a profile UUID");
            return 1;
        }
        HTTP_LOG(resp, log_id, id);
        if (*leaf == '\0' && m == HTTP_M_GET)
            profile_get(w, req, id, resp);
        else if (strcmp(leaf, "devices") == 0 && (m == HTTP_M_PUT || m == HTTP_M_DELETE))
            profile_devices(w, req, id, resp);
        else
            http_refuse(resp, 404, 1, "ade/profiles/{uuid} takes GET, or PUT/DELETE .../devices");
        return 1;
    }
    http_refuse(resp, 404, 1, "no such ADE resource: %.64s", p);
    return 1;
}
