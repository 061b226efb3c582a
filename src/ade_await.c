/* Await configuration: setup commands and DeviceConfigured (ade_await.h). */
#include "ade_await.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mdm_message.h"
#include "plist_json.h"
#include "util.h"

#define JSON_DEPTH_MAX 32

/* ---- the admin's setup commands --------------------------------------------- */

/* JSON → plist for a Command dictionary. NULL with a reason (null values,
 * too deep). */
static plist_t *json_to_plist(const json_t *j, int depth, char *why, size_t whylen)
{
    if (depth > JSON_DEPTH_MAX) {
        util_set_err(why, whylen, "nested deeper than %d levels", JSON_DEPTH_MAX);
        return NULL;
    }
    switch (json_typeof(j)) {
    case JSON_STRING: return plist_new_string(json_string_value(j));
    case JSON_INTEGER: return plist_new_integer((int64_t)json_integer_value(j));
    case JSON_REAL: return plist_new_real(json_real_value(j));
    case JSON_TRUE: return plist_new_bool(1);
    case JSON_FALSE: return plist_new_bool(0);
    case JSON_ARRAY: {
        plist_t *a = plist_new_array();
        for (size_t i = 0; a && i < json_array_size(j); i++) {
            plist_t *v = json_to_plist(json_array_get(j, i), depth + 1, why, whylen);
            if (!v || plist_array_append(a, v) != 0) {
                plist_free(a);
                return NULL;
            }
        }
        return a;
    }
    case JSON_OBJECT: {
        plist_t *d = plist_new_dict();
        const char *k;
        json_t *v;
        json_object_foreach((json_t *)j, k, v) {
            plist_t *pv = d ? json_to_plist(v, depth + 1, why, whylen) : NULL;
            if (!pv || plist_dict_set(d, k, pv) != 0) {
                plist_free(d);
                return NULL;
            }
        }
        return d;
    }
    case JSON_NULL: break;
    }
    util_set_err(why, whylen, "null has no property list form");
    return NULL;
}

/* One admin element → the Command dictionary's XML (heap). */
static char *normalize_one(const json_t *e, size_t i, char *why, size_t whylen)
{
    char err[200] = "";
    plist_t *owned = NULL;
    const plist_t *inner = NULL;
    if (json_is_string(e)) {
        owned = plist_parse(json_string_value(e), json_string_length(e), err, sizeof err);
        if (!owned) {
            util_set_err(why, whylen, "command %zu: not a valid plist: %s", i, err);
            return NULL;
        }
        inner = plist_type(owned) == PLIST_DICT ? plist_dict_get(owned, "Command") : NULL;
        if (!inner || plist_type(inner) != PLIST_DICT) {
            util_set_err(why, whylen, "command %zu: the plist needs a Command dictionary", i);
            plist_free(owned);
            return NULL;
        }
    } else if (json_is_object(e)) {
        if (!(owned = json_to_plist(e, 0, err, sizeof err))) {
            util_set_err(why, whylen, "command %zu: %s", i, err[0] ? err : "out of memory");
            return NULL;
        }
        inner = owned;
    } else {
        util_set_err(why, whylen, "command %zu: expected a command plist (string) or a Command object", i);
        return NULL;
    }
    const char *rtype = plist_dict_get_string(inner, "RequestType");
    char *xml = NULL;
    if (!rtype || !*rtype)
        util_set_err(why, whylen, "command %zu: Command needs a RequestType string", i);
    else if (strcmp(rtype, "DeviceConfigured") == 0)
        util_set_err(why, whylen, "command %zu: DeviceConfigured is sent by orchard after the setup commands", i);
    else if (!(xml = plist_to_xml(inner, NULL)))
        util_set_err(why, whylen, "command %zu: cannot be written as a plist", i);
    plist_free(owned);
    return xml;
}

int ade_setup_normalize(const json_t *in, char **out, size_t *count, char *why, size_t whylen)
{
    *out = NULL;
    *count = 0;
    if (!json_is_array(in) || json_array_size(in) == 0 || json_array_size(in) > ADE_SETUP_MAX) {
        util_set_err(why, whylen, "expected a JSON array of 1 to %d commands", ADE_SETUP_MAX);
        return -1;
    }
    json_t *stored = json_array();
    for (size_t i = 0; stored && i < json_array_size(in); i++) {
        char *xml = normalize_one(json_array_get(in, i), i, why, whylen);
        if (!xml || json_array_append_new(stored, json_string(xml)) != 0) {
            free(xml);
            json_decref(stored);
            return -1;
        }
        free(xml);
    }
    *out = stored ? json_dumps(stored, JSON_COMPACT) : NULL;
    *count = json_array_size(stored);
    json_decref(stored);
    if (!*out) {
        util_set_err(why, whylen, "out of memory");
        return -1;
    }
    return 0;
}

json_t *ade_setup_describe(const unsigned char *stored, size_t len)
{
    json_t *arr = json_loadb((const char *)stored, len, 0, NULL), *out = json_array();
    if (!json_is_array(arr) || !out) {
        json_decref(arr);
        json_decref(out);
        return NULL;
    }
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const char *xml = json_string_value(json_array_get(arr, i));
        plist_t *p = xml ? plist_parse(xml, strlen(xml), NULL, 0) : NULL;
        json_t *cmd = p ? plist_to_json(p) : NULL;
        const char *rtype = p ? plist_dict_get_string(p, "RequestType") : NULL;
        json_array_append_new(out, json_pack("{s:s?,s:o?}", "request_type", rtype, "command", cmd));
        plist_free(p);
    }
    json_decref(arr);
    return out;
}

/* ---- TokenUpdate ------------------------------------------------------------ */

/* A full command plist for the Command XML `inner_xml` with a fresh UUID
 * with `prefix`. *uuid gets the UUID. Heap XML or NULL. */
static char *command_with_uuid(const char *inner_xml, size_t inner_len, const char *prefix, char *uuid,
                               size_t uuidlen, const char **rtype_out, plist_t **holder)
{
    char u[37];
    plist_t *inner = plist_parse(inner_xml, inner_len, NULL, 0);
    plist_t *c = plist_new_dict();
    if (!inner || !c || util_uuid4(u) != 0) {
        plist_free(inner);
        plist_free(c);
        return NULL;
    }
    snprintf(uuid, uuidlen, "%s%s", prefix, u);
    *rtype_out = plist_dict_get_string(inner, "RequestType");
    if (plist_dict_set(c, "Command", inner) != 0 || plist_dict_set(c, "CommandUUID", plist_new_string(uuid)) != 0) {
        plist_free(c);
        return NULL;
    }
    *holder = c; /* keeps rtype alive */
    return plist_to_xml(c, NULL);
}

static int enqueue_one(store_t *s, const char *device_id, const char *inner_xml, const char *prefix, char *uuid,
                       size_t uuidlen, int64_t now)
{
    const char *rtype = NULL;
    plist_t *holder = NULL;
    char *xml = command_with_uuid(inner_xml, strlen(inner_xml), prefix, uuid, uuidlen, &rtype, &holder);
    if (!xml || !rtype) {
        free(xml);
        plist_free(holder);
        return STORE_ERR;
    }
    command_t c = {.uuid = uuid,
                   .request_type = (char *)rtype,
                   .body = (unsigned char *)xml,
                   .body_len = strlen(xml),
                   .created_at = now};
    int status = STORE_ERR;
    int rc = s->ops->command_enqueue(s, &c, &device_id, 1, &status, now);
    free(xml);
    plist_free(holder);
    return rc == STORE_OK && status == STORE_OK ? STORE_OK : rc == STORE_OK ? STORE_NOTFOUND : rc;
}

/* Queues the setup commands for the device; all or nothing. *n = how many.
 * 0 or -1 (why set). */
static int queue_setup(store_t *s, const char *device_id, int64_t now, size_t *n, char *why, size_t whylen)
{
    *n = 0;
    unsigned char *stored = NULL;
    size_t len = 0;
    int rc = s->ops->setting_get(s, ADE_SETUP_SETTING, &stored, &len);
    if (rc == STORE_NOTFOUND)
        return 0;
    if (rc != STORE_OK) {
        util_set_err(why, whylen, "storage error reading the setup commands: %s", s->ops->errmsg(s));
        return -1;
    }
    json_t *arr = json_loadb((const char *)stored, len, 0, NULL);
    free(stored);
    size_t total = json_array_size(arr);
    char (*uuids)[80] = total ? calloc(total, sizeof *uuids) : NULL;
    int result = 0;
    if (!json_is_array(arr) || (total && !uuids)) {
        util_set_err(why, whylen, "the stored setup commands are unreadable (PUT them again)");
        result = -1;
    }
    for (size_t i = 0; result == 0 && i < total; i++) {
        const char *xml = json_string_value(json_array_get(arr, i));
        rc = xml ? enqueue_one(s, device_id, xml, ADE_SETUP_UUID_PREFIX, uuids[i], sizeof uuids[i], now) : STORE_ERR;
        if (rc != STORE_OK) {
            util_set_err(why, whylen, "cannot queue setup command %zu: %s", i,
                         rc == STORE_ERR ? s->ops->errmsg(s) : "enrollment unknown or UUID taken");
            result = -1;
            break;
        }
        (*n)++;
    }
    if (result != 0) {
        /* Undo: the device retries the TokenUpdate and gets the full list. */
        for (size_t i = 0; i < *n; i++)
            if (s->ops->command_cancel(s, device_id, uuids[i], now) == STORE_ERR)
                log_warn("ADE: cannot cancel setup command %s of %s: %s", uuids[i], device_id, s->ops->errmsg(s));
        *n = 0;
    }
    free(uuids);
    json_decref(arr);
    return result;
}

int ade_await_on_token_update(store_t *s, pusher_t *pusher, const char *device_id, const plist_t *root,
                              char *why, size_t whylen)
{
    const plist_t *flag = plist_dict_get(root, "AwaitingConfiguration");
    if (!flag || plist_type(flag) != PLIST_BOOL)
        return 0;
    if (!s->ops->enrollment_awaiting || !s->ops->enrollment_set_awaiting || !s->ops->setting_get) {
        log_warn("ADE: %s awaits configuration but this storage backend cannot track it", device_id);
        return 0;
    }
    int64_t now = util_now();
    int awaiting = 0;
    if (s->ops->enrollment_awaiting(s, device_id, &awaiting) == STORE_ERR) {
        util_set_err(why, whylen, "storage error reading await configuration: %s", s->ops->errmsg(s));
        return 503;
    }
    if (!plist_bool(flag)) {
        if (awaiting) {
            if (s->ops->enrollment_set_awaiting(s, device_id, 0, now) == STORE_ERR) {
                util_set_err(why, whylen, "storage error clearing await configuration: %s", s->ops->errmsg(s));
                return 503;
            }
            log_info("ADE: device %s no longer awaits configuration (TokenUpdate AwaitingConfiguration false)",
                     device_id);
        }
        return 0;
    }
    if (awaiting)
        return 0; /* a repeated TokenUpdate during setup: the commands are already queued */
    size_t n = 0;
    if (queue_setup(s, device_id, now, &n, why, whylen) != 0)
        return 503;
    if (s->ops->enrollment_set_awaiting(s, device_id, 1, now) != STORE_OK) {
        util_set_err(why, whylen, "storage error recording await configuration: %s", s->ops->errmsg(s));
        return 503;
    }
    log_info("ADE: device %s awaits configuration: %zu setup command(s) queued, DeviceConfigured follows them",
             device_id, n);
    /* The device waits in Setup Assistant; wake it rather than wait for its
     * next poll. Not fatal: it polls anyway. */
    enrollment_t e;
    if (pusher && s->ops->enrollment_get(s, device_id, &e) == STORE_OK) {
        char err[256];
        if (pusher_push(pusher, &e, err, sizeof err) != 0)
            log_debug("ADE: no push for %s after AwaitingConfiguration: %s", device_id, err);
        enrollment_free(&e);
    }
    return 0;
}

/* ---- the command exchange --------------------------------------------------- */

static int count_pending(void *ctx, const command_target_t *t)
{
    (void)t;
    (*(int *)ctx)++;
    return 1;
}

void ade_await_after_exchange(store_t *s, const char *device_id, int awaiting, const char *reported_uuid,
                              const char *status, int64_t now, int *rc, command_t *next)
{
    if (!s->ops->enrollment_set_awaiting)
        return;
    if (reported_uuid && status && strcmp(status, "NotNow") != 0 &&
        strncmp(reported_uuid, ADE_CONFIGURED_UUID_PREFIX, strlen(ADE_CONFIGURED_UUID_PREFIX)) == 0) {
        /* Acknowledged: released. Error: the device is not waiting (or
         * cannot be released); asking again would loop, so stop too. */
        if (s->ops->enrollment_set_awaiting(s, device_id, 0, now) == STORE_ERR) {
            log_warn("ADE: cannot clear await configuration of %s: %s", device_id, s->ops->errmsg(s));
            return;
        }
        if (strcmp(status, "Acknowledged") == 0)
            log_info("ADE: device %s released from await configuration (DeviceConfigured acknowledged)", device_id);
        else
            log_warn("ADE: device %s answered DeviceConfigured with %s; no longer treated as awaiting configuration",
                     device_id, status);
        if (s->ops->event_add(s, device_id, "ade_device_configured", status[0] == 'A' ? "{\"status\":\"Acknowledged\"}"
                                                                                     : "{\"status\":\"Error\"}",
                              now) != STORE_OK)
            log_warn("ADE: cannot record the ade_device_configured event of %s: %s", device_id, s->ops->errmsg(s));
        return;
    }
    if (*rc != STORE_NOTFOUND || !awaiting)
        return;
    /* Nothing to hand out now, but a NotNow command may still be pending:
     * the release waits until every command has run. */
    int pending = 0;
    if (s->ops->enrollment_commands(s, device_id, 1, 1, count_pending, &pending) != STORE_OK) {
        log_warn("ADE: cannot list pending commands of %s: %s", device_id, s->ops->errmsg(s));
        return;
    }
    if (pending)
        return;
    static const char inner[] = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>"
                                "<plist version=\"1.0\"><dict><key>RequestType</key>"
                                "<string>DeviceConfigured</string></dict></plist>";
    char uuid[80];
    if (enqueue_one(s, device_id, inner, ADE_CONFIGURED_UUID_PREFIX, uuid, sizeof uuid, now) != STORE_OK) {
        log_warn("ADE: cannot queue DeviceConfigured for %s: %s", device_id, s->ops->errmsg(s));
        return;
    }
    log_info("ADE: setup commands of %s done: DeviceConfigured queued (%s)", device_id, uuid);
    int applied = 0;
    *rc = s->ops->command_exchange(s, device_id, NULL, now, &applied, next);
    if (*rc == STORE_ERR) {
        log_warn("ADE: cannot hand out DeviceConfigured to %s now: %s", device_id, s->ops->errmsg(s));
        *rc = STORE_NOTFOUND; /* the empty answer stands; it is handed out at the next poll */
    }
}
