/* Apple Watch enrollment: phone eligibility and the pairing lifecycle
 * (see watch.h). */
#include "watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "ddm.h"
#include "log.h"
#include "plist.h"
#include "strlist.h"
#include "util.h"

int watch_enrollment_enabled(store_t *s, const char *phone)
{
    declaration_t *decls = NULL;
    size_t n = 0;
    char token[33];
    if (ddm_effective_for(s, phone, &decls, &n, token) != STORE_OK)
        return -1;
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        if (decls[i].type && strcmp(decls[i].type, WATCH_ENROLLMENT_TYPE) == 0)
            found = 1;
        declaration_free(&decls[i]);
    }
    free(decls);
    return found;
}

static int is_supervision_query(void *ctx, const command_target_t *t)
{
    if (t->command_uuid && strncmp(t->command_uuid, "orchard-supervision-", 20) == 0)
        *(int *)ctx = 1;
    return *(int *)ctx;
}

int watch_ask_supervision(store_t *s, pusher_t *pusher, const char *phone)
{
    enrollment_t e;
    int rc = s->ops->enrollment_get(s, phone, &e);
    if (rc != STORE_OK) {
        if (rc == STORE_ERR)
            log_warn("phone %s: cannot read it to ask about supervision: %s", phone, s->ops->errmsg(s));
        return rc == STORE_NOTFOUND ? 0 : -1;
    }
    int result = 0;
    if (e.supervised != -1 || strcmp(e.state, ENR_STATE_ACTIVE) != 0 || strcmp(e.id, e.device_id) != 0)
        goto out;
    /* One question at a time: repeated pairing attempts must not pile up
     * queries while the phone has not answered the first. */
    int waiting = 0;
    if (s->ops->enrollment_commands(s, phone, 1, 100, is_supervision_query, &waiting) == STORE_ERR) {
        result = -1;
        goto out;
    }
    if (waiting)
        goto out;
    char uuid[37], cmd_uuid[64];
    if (util_uuid4(uuid) != 0) {
        result = -1;
        goto out;
    }
    snprintf(cmd_uuid, sizeof cmd_uuid, "orchard-supervision-%s", uuid);
    plist_t *root = plist_new_dict(), *cmd = plist_new_dict(), *queries = plist_new_array();
    plist_array_append(queries, plist_new_string("IsSupervised"));
    plist_dict_set(cmd, "RequestType", plist_new_string("DeviceInformation"));
    plist_dict_set(cmd, "Queries", queries);
    plist_dict_set(root, "Command", cmd);
    plist_dict_set(root, "CommandUUID", plist_new_string(cmd_uuid));
    size_t len = 0;
    char *xml = plist_to_xml(root, &len);
    plist_free(root);
    if (!xml) {
        result = -1;
        goto out;
    }
    command_t c = {.uuid = cmd_uuid,
                   .request_type = "DeviceInformation",
                   .body = (unsigned char *)xml,
                   .body_len = len,
                   .created_at = util_now()};
    const char *ids[1] = {phone};
    int st[1] = {0};
    rc = s->ops->command_enqueue(s, &c, ids, 1, st, c.created_at);
    free(xml);
    if (rc != STORE_OK || st[0] != STORE_OK) {
        log_warn("phone %s: cannot queue the supervision query: %s", phone,
                 rc == STORE_ERR ? s->ops->errmsg(s) : "not queued");
        result = -1;
        goto out;
    }
    char perr[256] = "";
    int pushed = pusher && pusher_push(pusher, &e, perr, sizeof perr) == 0;
    log_info("phone %s: asked whether it is supervised (DeviceInformation IsSupervised, command %s)%s%s", phone,
             cmd_uuid, pushed ? "" : "; not pushed: ", pushed ? "" : (pusher ? perr : "no pusher"));
    result = 1;
out:
    enrollment_free(&e);
    return result;
}

int watch_phone_eligible(store_t *s, const char *phone, int require_enabled, char *why, size_t whylen)
{
    enrollment_t e;
    int rc = s->ops->enrollment_get(s, phone, &e);
    if (rc == STORE_NOTFOUND) {
        util_set_err(why, whylen, "phone %.100s is not enrolled", phone);
        return 403;
    }
    if (rc != STORE_OK) {
        util_set_err(why, whylen, "storage error: %s", s->ops->errmsg(s));
        return 503;
    }
    int status = 200;
    if (strcmp(e.channel, "device") != 0 || strcmp(e.id, e.device_id) != 0) {
        util_set_err(why, whylen, "phone %.100s is not a device-channel enrollment", phone);
        status = 403;
    } else if (strcmp(e.state, ENR_STATE_ACTIVE) != 0) {
        util_set_err(why, whylen, "phone %.100s is not active (state %s)", phone, e.state);
        status = 403;
    } else if (e.supervised != 1) {
        util_set_err(why, whylen, "phone %.100s is not supervised (IsSupervised %s)", phone,
                     e.supervised == 0 ? "false" : "not reported yet: send DeviceInformation");
        status = 403;
    }
    enrollment_free(&e);
    if (status != 200 || !require_enabled)
        return status;
    int enabled = watch_enrollment_enabled(s, phone);
    if (enabled < 0) {
        util_set_err(why, whylen, "storage error reading declarations: %s", s->ops->errmsg(s));
        return 503;
    }
    if (!enabled) {
        util_set_err(why, whylen, "watch enrollment is not enabled for phone %.100s (no %s declaration)", phone,
                     WATCH_ENROLLMENT_TYPE);
        return 403;
    }
    return 200;
}

int watch_is_watch(store_t *s, const enrollment_t *e)
{
    if (e->product_name && strncmp(e->product_name, "Watch", 5) == 0)
        return 1;
    if (!e->udid || !s->ops->watch_pairing_get)
        return 0;
    watch_pairing_t p;
    int rc = s->ops->watch_pairing_get(s, e->udid, &p);
    if (rc == STORE_OK) {
        watch_pairing_free(&p);
        return 1;
    }
    return rc == STORE_NOTFOUND ? 0 : -1;
}

void watch_on_authenticate(store_t *s, const char *udid)
{
    if (!s->ops->watch_pairing_get)
        return;
    watch_pairing_t p;
    int rc = s->ops->watch_pairing_get(s, udid, &p);
    if (rc == STORE_NOTFOUND)
        return;
    if (rc != STORE_OK) {
        log_warn("watch %s: cannot read its pairing after Authenticate: %s", udid, s->ops->errmsg(s));
        return;
    }
    if (strcmp(p.state, WATCH_PAIR_ENROLLED) != 0) {
        if (s->ops->watch_pair_state(s, udid, WATCH_PAIR_ENROLLED, util_now()) != STORE_OK)
            log_warn("watch %s: cannot record its enrollment: %s", udid, s->ops->errmsg(s));
        else
            log_info("watch %s enrolled (paired with phone %s)", udid, p.phone_udid);
    }
    watch_pairing_free(&p);
}

static int collect_watch(void *ctx, const watch_pairing_t *p)
{
    return strlist_add(ctx, p->watch_udid) != 0;
}

void watch_on_phone_gone(store_t *s, const char *phone, const char *why)
{
    if (!s->ops->phone_watches)
        return;
    /* Collected first: phone_watches' callback runs inside the read and
     * must not write through the same handle. The pairing rows are not
     * rewritten: "phone_gone" is derived from the phone's CheckOut time
     * (watch_pairing_state), which the store keeps anyway. */
    strlist_t l = {0};
    if (s->ops->phone_watches(s, phone, collect_watch, &l) != STORE_OK)
        log_warn("phone %s: cannot list its watches after %s: %s", phone, why, s->ops->errmsg(s));
    int64_t now = util_now();
    for (size_t i = 0; i < l.n; i++) {
        json_t *d = json_pack("{s:s,s:s}", "phone_udid", phone, "reason", why);
        char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
        json_decref(d);
        if (s->ops->event_add(s, l.v[i], "phone_unenrolled", detail ? detail : "{}", now) != STORE_OK)
            log_warn("watch %s: cannot flag it after its phone %s left: %s", l.v[i], phone,
                     s->ops->errmsg(s));
        else
            log_info("watch %s flagged: its phone %s %s; no new pairing tokens for that phone", l.v[i],
                     phone, why);
        free(detail);
    }
    strlist_free(&l);
}

const char *watch_pairing_state(store_t *s, const watch_pairing_t *p)
{
    enrollment_t phone;
    int rc = s->ops->enrollment_get(s, p->phone_udid, &phone);
    if (rc == STORE_ERR)
        return p->state;
    /* Gone: the phone record is gone, the phone is not active (checked
     * out), or it checked out after this pairing was made and enrolled
     * again since (a re-enrolled phone vouches for no earlier watch). */
    int gone = rc == STORE_NOTFOUND || strcmp(phone.state, ENR_STATE_ACTIVE) != 0 ||
               phone.checked_out_at > p->paired_at;
    if (rc == STORE_OK)
        enrollment_free(&phone);
    return gone ? WATCH_PAIR_PHONE_GONE : p->state;
}
