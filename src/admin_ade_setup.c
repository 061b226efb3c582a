/* Admin API for the ADE setup commands (called by admin_api_handle after
 * the key check; `sub` is the path after "/v1/"):
 *
 *   PUT    ade/setup-commands   body: a JSON array of commands, each a
 *                               command plist as a string or the Command
 *                               dictionary as a JSON object (ade_await.h);
 *                               replaces the list
 *   GET    ade/setup-commands   {"count", "commands": [{"request_type", "command"}]}
 *   DELETE ade/setup-commands   removes the list (devices awaiting
 *                               configuration then get DeviceConfigured alone)
 *
 * The list is one setting (ADE_SETUP_SETTING), so every instance uses the
 * same one; it is copied to a device when its TokenUpdate says
 * AwaitingConfiguration, so a change affects devices that start setup
 * afterwards, not those already queued.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ade_await.h"
#include "app.h"
#include "log.h"
#include "util.h"

static void reply_list(http_response_t *resp, int status, const unsigned char *stored, size_t len)
{
    json_t *cmds = stored ? ade_setup_describe(stored, len) : json_array();
    if (!cmds) {
        http_refuse(resp, 500, 1, "the stored setup commands are unreadable; PUT them again");
        return;
    }
    http_reply_json(resp, status, json_pack("{s:I,s:o}", "count", (json_int_t)json_array_size(cmds), "commands", cmds));
}

static void setup_put(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    store_t *s = w->store;
    json_error_t e;
    json_t *j = req->body_len ? json_loadb((const char *)req->body, req->body_len, JSON_REJECT_DUPLICATES, &e) : NULL;
    if (!j) {
        http_refuse(resp, 400, 1, "setup commands: body is not valid JSON: %s", req->body_len ? e.text : "empty body");
        return;
    }
    char *stored = NULL, why[256];
    size_t n = 0;
    int rc = ade_setup_normalize(j, &stored, &n, why, sizeof why);
    json_decref(j);
    if (rc != 0) {
        http_refuse(resp, 400, 1, "setup commands: %s", why);
        return;
    }
    if (s->ops->setting_put(s, ADE_SETUP_SETTING, (const unsigned char *)stored, strlen(stored), util_now()) !=
        STORE_OK) {
        free(stored);
        http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    log_info("ADE: setup commands replaced (%zu command(s))", n);
    reply_list(resp, 200, (const unsigned char *)stored, strlen(stored));
    free(stored);
}

int admin_ade_setup_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp)
{
    if (strcmp(sub, "ade/setup-commands") != 0)
        return 0;
    store_t *s = w->store;
    HTTP_LOG(resp, log_id, "ade/setup-commands");
    if (!s->ops->setting_put || !s->ops->setting_get || !s->ops->setting_delete) {
        http_refuse(resp, 501, 1, "this storage backend cannot keep settings");
        return 1;
    }
    if (req->method == HTTP_M_PUT) {
        setup_put(w, req, resp);
    } else if (req->method == HTTP_M_GET) {
        unsigned char *v = NULL;
        size_t len = 0;
        int rc = s->ops->setting_get(s, ADE_SETUP_SETTING, &v, &len);
        if (rc == STORE_ERR)
            http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        else
            reply_list(resp, 200, rc == STORE_OK ? v : NULL, len);
        free(v);
    } else if (req->method == HTTP_M_DELETE) {
        int rc = s->ops->setting_delete(s, ADE_SETUP_SETTING);
        if (rc == STORE_ERR) {
            http_refuse(resp, 503, 1, "storage error: %s", s->ops->errmsg(s));
        } else {
            if (rc == STORE_OK)
                log_info("ADE: setup commands cleared");
            http_reply_json(resp, 200, json_pack("{s:b,s:I,s:[]}", "deleted", rc == STORE_OK, "count", (json_int_t)0,
                                                 "commands"));
        }
    } else {
        http_refuse(resp, 405, 1, "ade/setup-commands takes GET, PUT or DELETE");
        http_add_header(resp, "Allow", "GET, PUT, DELETE");
    }
    return 1;
}
