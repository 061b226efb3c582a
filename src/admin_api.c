/* Admin API under /v1 (JSON), key required: the key check, routing to the
 * feature files (enqueue and push in admin_enqueue.c, which keep NanoMDM's
 * URLs and response shape so existing tools work unchanged), and orchard's
 * own device, command and event views.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <openssl/crypto.h>

#include "api_json.h"
#include "app.h"
#include "log.h"
#include "mdm_checkin.h"
#include "mdm_message.h"
#include "plist.h"
#include "plist_json.h"
#include "util.h"
#include "watch.h"

/* ---- helpers ---------------------------------------------------------------- */

int admin_authorized(const app_t *app, const http_request_t *req)
{
    const char *h = http_header(req, "Authorization");
    if (!h)
        return 0;
    if (strncasecmp(h, "Bearer ", 7) == 0)
        return util_secure_streq(h + 7, app->api_key);
    if (strncasecmp(h, "Basic ", 6) == 0) {
        size_t n = 0;
        unsigned char *dec = util_base64_decode(h + 6, strlen(h + 6), &n);
        if (!dec)
            return 0;
        /* Any user name; the key is the password. The decoded buffer is
         * NUL-terminated; a NUL inside the password makes it not match. */
        char *colon = memchr(dec, ':', n);
        int ok = 0;
        if (colon) {
            const char *pass = colon + 1;
            size_t plen = n - (size_t)(pass - (char *)dec);
            ok = strlen(pass) == plen && util_secure_streq(pass, app->api_key);
        }
        OPENSSL_cleanse(dec, n);
        free(dec);
        return ok;
    }
    return 0;
}

/* ---- devices and commands ------------------------------------------------------ */

static json_t *enrollment_json(const enrollment_t *e)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(e->id));
    json_object_set_new(o, "device_id", api_json_string(e->device_id));
    json_object_set_new(o, "udid", api_json_string(e->udid));
    json_object_set_new(o, "channel", api_json_string(e->channel));
    json_object_set_new(o, "state", api_json_string(e->state));
    json_object_set_new(o, "topic", api_json_string(e->topic));
    json_object_set_new(o, "serial_number", api_json_string(e->serial_number));
    json_object_set_new(o, "model", api_json_string(e->model));
    json_object_set_new(o, "model_name", api_json_string(e->model_name));
    json_object_set_new(o, "product_name", api_json_string(e->product_name));
    json_object_set_new(o, "os_version", api_json_string(e->os_version));
    json_object_set_new(o, "build_version", api_json_string(e->build_version));
    json_object_set_new(o, "device_name", api_json_string(e->device_name));
    json_object_set_new(o, "imei", api_json_string(e->imei));
    json_object_set_new(o, "meid", api_json_string(e->meid));
    if (e->user_id || e->user_short_name) {
        json_object_set_new(o, "user_id", api_json_string(e->user_id));
        json_object_set_new(o, "user_short_name", api_json_string(e->user_short_name));
        json_object_set_new(o, "user_long_name", api_json_string(e->user_long_name));
    }
    json_object_set_new(o, "cert_sha256", api_json_string(e->cert_sha256));
    /* Push token, PushMagic and UnlockToken are secrets: presence only. */
    json_object_set_new(o, "push_token_present", json_boolean(e->push_token_len > 0));
    json_object_set_new(o, "unlock_token_present", json_boolean(e->unlock_token_len > 0));
    json_object_set_new(o, "created_at", api_json_time(e->created_at));
    json_object_set_new(o, "updated_at", api_json_time(e->updated_at));
    json_object_set_new(o, "last_seen_at", api_json_time(e->last_seen_at));
    json_object_set_new(o, "authenticated_at", api_json_time(e->authenticated_at));
    json_object_set_new(o, "token_updated_at", api_json_time(e->token_updated_at));
    json_object_set_new(o, "checked_out_at", api_json_time(e->checked_out_at));
    json_object_set_new(o, "last_push_at", api_json_time(e->last_push_at));
    json_object_set_new(o, "last_push_id", api_json_string(e->last_push_id));
    json_object_set_new(o, "last_push_error", api_json_string(e->last_push_error));
    json_object_set_new(o, "push_token_invalid", json_boolean(e->push_token_invalid));
    /* Flagged by the inactivity sweep (--inactive-after); clears when the
     * device is heard from again. */
    json_object_set_new(o, "silent", json_boolean(e->silent_since > 0));
    json_object_set_new(o, "silent_since", api_json_time(e->silent_since));
    json_object_set_new(o, "last_repush_at", api_json_time(e->last_repush_at));
    return o;
}

static int collect_enrollment(void *ctx, const enrollment_t *e)
{
    json_array_append_new(ctx, enrollment_json(e));
    return 0;
}

static void api_devices_list(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    char state[32], model[128], serial[128], after[2 * MDM_ID_MAX + 2], limit_s[16], silent[8];
    enrollment_filter_t f = {
        .state = http_query(req, "state", state, sizeof state),
        .model = http_query(req, "model", model, sizeof model),
        .serial = http_query(req, "serial", serial, sizeof serial),
        .after = http_query(req, "after", after, sizeof after),
        .limit = 100,
    };
    if (f.state && strcmp(f.state, ENR_STATE_ACTIVE) != 0 && strcmp(f.state, ENR_STATE_INACTIVE) != 0 &&
        strcmp(f.state, ENR_STATE_AUTHENTICATED) != 0) {
        http_refuse(resp, 400, 1, "state must be active, inactive or authenticated");
        return;
    }
    /* silent=1: devices the sweep flagged inactive; silent=0: the others. */
    if (http_query(req, "silent", silent, sizeof silent)) {
        if (strcmp(silent, "1") != 0 && strcmp(silent, "0") != 0) {
            http_refuse(resp, 400, 1, "silent must be 1 or 0");
            return;
        }
        f.silent = silent[0] == '1' ? 1 : -1;
    }
    if (http_query(req, "limit", limit_s, sizeof limit_s)) {
        char *end;
        long l = strtol(limit_s, &end, 10);
        if (*end || l < 1 || l > 1000) {
            http_refuse(resp, 400, 1, "limit must be from 1 to 1000");
            return;
        }
        f.limit = (int)l;
    }
    json_t *arr = json_array();
    if (w->store->ops->enrollment_list(w->store, &f, collect_enrollment, arr) != STORE_OK) {
        json_decref(arr);
        http_refuse(resp, 503, 1, "storage error: %s", w->store->ops->errmsg(w->store));
        return;
    }
    size_t n = json_array_size(arr);
    json_t *next = json_null();
    if (n == (size_t)f.limit)
        next = json_incref(json_object_get(json_array_get(arr, n - 1), "id"));
    http_reply_json(resp, 200, json_pack("{s:o,s:o}", "devices", arr, "next", next));
}

static json_t *target_json(const command_target_t *t)
{
    json_t *o = json_object();
    json_object_set_new(o, "command_uuid", json_string(t->command_uuid));
    json_object_set_new(o, "enrollment_id", json_string(t->enrollment_id));
    json_object_set_new(o, "request_type", api_json_string(t->request_type));
    json_object_set_new(o, "status", json_string(t->status));
    json_object_set_new(o, "queued_at", api_json_time(t->queued_at));
    json_object_set_new(o, "updated_at", api_json_time(t->updated_at));
    json_t *result = json_null();
    if (t->result && t->result_len) {
        plist_t *p = plist_parse((const char *)t->result, t->result_len, NULL, 0);
        if (p) {
            json_t *j = plist_to_json(p);
            if (j) {
                json_decref(result);
                result = j;
            }
            plist_free(p);
        }
    }
    json_object_set_new(o, "result", result);
    json_t *chain = t->error_chain_json ? json_loads(t->error_chain_json, 0, NULL) : NULL;
    json_object_set_new(o, "error_chain", chain ? chain : json_null());
    return o;
}

static int collect_target(void *ctx, const command_target_t *t)
{
    json_array_append_new(ctx, target_json(t));
    return 0;
}

static int collect_event(void *ctx, const store_event_t *ev)
{
    json_t *detail = ev->detail ? json_loads(ev->detail, 0, NULL) : NULL;
    json_array_append_new(ctx, json_pack("{s:I,s:o,s:s,s:o}", "id", (json_int_t)ev->id, "at", api_json_time(ev->at),
                                         "kind", ev->kind, "detail", detail ? detail : json_null()));
    return 0;
}

static void api_device(worker_t *w, const http_request_t *req, const char *rest, http_response_t *resp)
{
    store_t *s = w->store;
    /* rest = "{id}" | "{id}/commands" | "{id}/commands/{uuid}" | "{id}/events" */
    char id[2 * MDM_ID_MAX + 2];
    const char *slash = strchr(rest, '/');
    size_t idlen = slash ? (size_t)(slash - rest) : strlen(rest);
    if (idlen == 0 || idlen >= sizeof id) {
        http_refuse(resp, 404, 1, "no such device");
        return;
    }
    memcpy(id, rest, idlen);
    id[idlen] = '\0';
    HTTP_LOG(resp, log_id, id);
    const char *sub = slash ? slash + 1 : "";

    enrollment_t e;
    int rc = s->ops->enrollment_get(s, id, &e);
    if (rc == STORE_ERR) {
        http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 404, 1, "no enrollment with id %.100s", id);
        return;
    }
    if (*sub == '\0' && req->method == HTTP_M_GET) {
        json_t *o = enrollment_json(&e);
        /* Apple Watch: the phone it enrolled through (null otherwise). */
        watch_pairing_t wp;
        int wrc = s->ops->watch_pairing_get && e.udid ? s->ops->watch_pairing_get(s, e.udid, &wp) : STORE_NOTFOUND;
        json_object_set_new(o, "paired_phone", wrc == STORE_OK ? json_string(wp.phone_udid) : json_null());
        json_object_set_new(o, "watch_pairing_state",
                            wrc == STORE_OK ? json_string(watch_pairing_state(s, &wp)) : json_null());
        if (wrc == STORE_OK)
            watch_pairing_free(&wp);
        /* Macs: whether a bootstrap token is escrowed (never the token). */
        if (strcmp(e.channel, "device") == 0) {
            int esc = mdm_bootstrap_token_escrowed(s, e.device_id);
            json_object_set_new(o, "bootstrap_token_escrowed", esc < 0 ? json_null() : json_boolean(esc));
        }
        http_reply_json(resp, 200, o);
    } else if (strcmp(sub, "commands") == 0 && req->method == HTTP_M_GET) {
        char pend[8], lim[16];
        int pending_only = http_query(req, "pending", pend, sizeof pend) && strcmp(pend, "0") != 0;
        int limit = 100;
        if (http_query(req, "limit", lim, sizeof lim))
            limit = atoi(lim) < 1 ? 1 : atoi(lim) > 1000 ? 1000 : atoi(lim);
        json_t *arr = json_array();
        if (s->ops->enrollment_commands(s, id, pending_only, limit, collect_target, arr) != STORE_OK) {
            json_decref(arr);
            http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        } else {
            http_reply_json(resp, 200, json_pack("{s:o}", "commands", arr));
        }
    } else if (strncmp(sub, "commands/", 9) == 0 && req->method == HTTP_M_DELETE) {
        const char *uuid = sub + 9;
        HTTP_LOG(resp, log_type, "cancel");
        rc = mdm_id_valid(uuid) ? s->ops->command_cancel(s, id, uuid, util_now()) : STORE_NOTFOUND;
        if (rc == STORE_OK)
            http_reply_json(resp, 200, json_pack("{s:s,s:s,s:s}", "command_uuid", uuid, "enrollment_id", id,
                                                 "status", CMD_STATUS_CANCELLED));
        else if (rc == STORE_NOTFOUND)
            http_refuse(resp, 404, 1, "no pending command %.64s for %.100s", uuid, id);
        else
            http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
    } else if (strcmp(sub, "events") == 0 && req->method == HTTP_M_GET) {
        json_t *arr = json_array();
        if (s->ops->event_list(s, id, 200, collect_event, arr) != STORE_OK) {
            json_decref(arr);
            http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        } else {
            http_reply_json(resp, 200, json_pack("{s:o}", "events", arr));
        }
    } else {
        http_refuse(resp, 404, 1, "no such endpoint for %s /v1/devices/{id}/%.64s", req->method_name, sub);
    }
    enrollment_free(&e);
}

static void api_command(worker_t *w, const http_request_t *req, const char *uuid, http_response_t *resp)
{
    store_t *s = w->store;
    if (req->method != HTTP_M_GET) {
        http_refuse(resp, 405, 1, "commands/{uuid} takes GET");
        return;
    }
    HTTP_LOG(resp, log_id, uuid);
    command_t c;
    int rc = mdm_id_valid(uuid) ? s->ops->command_get(s, uuid, &c) : STORE_NOTFOUND;
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 404, 1, "no command %.64s", uuid);
        return;
    }
    if (rc != STORE_OK) {
        http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    json_t *targets = json_array();
    if (s->ops->command_targets(s, uuid, collect_target, targets) != STORE_OK) {
        json_decref(targets);
        command_free(&c);
        http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    json_t *o = json_object();
    json_object_set_new(o, "command_uuid", json_string(c.uuid));
    json_object_set_new(o, "request_type", api_json_string(c.request_type));
    json_object_set_new(o, "created_at", api_json_time(c.created_at));
    plist_t *p = plist_parse((const char *)c.body, c.body_len, NULL, 0);
    json_object_set_new(o, "command", p ? plist_to_json(p) : json_null());
    plist_free(p);
    json_object_set_new(o, "targets", targets);
    command_free(&c);
    http_reply_json(resp, 200, o);
}

void admin_api_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    if (!admin_authorized(w->app, req)) {
        http_add_header(resp, "WWW-Authenticate", "Basic realm=\"orchard\"");
        http_refuse(resp, 401, 1, "admin API key missing or wrong");
        return;
    }
    const char *p = req->path + 4; /* after "/v1/" */
    if (admin_enroll_handle(w, req, p, resp))
        return;
    if (admin_watch_handle(w, req, p, resp))
        return;
    if (admin_ade_setup_handle(w, req, p, resp))
        return;
    if (admin_ade_handle(w, req, p, resp))
        return;
    if (admin_ddm_handle(w, req, p, resp))
        return;
    if (admin_enqueue_handle(w, req, p, resp))
        return;
    if (strcmp(p, "push-status") == 0 && req->method == HTTP_M_GET)
        http_reply_json(resp, 200, pusher_status(w->app->pusher));
    else if (strcmp(p, "devices") == 0 && req->method == HTTP_M_GET)
        api_devices_list(w, req, resp);
    else if (strncmp(p, "devices/", 8) == 0)
        api_device(w, req, p + 8, resp);
    else if (strncmp(p, "commands/", 9) == 0)
        api_command(w, req, p + 9, resp);
    else
        http_refuse(resp, 404, 1, "no such endpoint: %s %.100s", req->method_name, req->path);
}
