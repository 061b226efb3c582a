/* NanoMDM-compatible enrollment migration: PUT /migration.
 *
 * NanoMDM's migration tools (nano2nano, micro2nano's llorne) replay the raw
 * Authenticate and TokenUpdate check-ins another server recorded, with the
 * admin API key as HTTP Basic password ("nanomdm:KEY"). That moves what a
 * device needs to stay managed without re-enrolling: its identity fields,
 * push topic, token and PushMagic (and UnlockToken when present). There is
 * no device certificate in such a message, so none is bound: the device's
 * certificate is bound at its first authenticated request to orchard
 * (mdm_authorize: a migrated enrollment accepts the first certificate that
 * chains to --client-ca and is not bound to another device). For that the
 * old server's device CA must be in --client-ca and the server URLs must
 * stay the same (devices cannot be told a new ServerURL without
 * re-enrolling). Security: until the real device's first request, a holder
 * of another certificate from that CA could claim a migrated UDID; run the
 * migration right before switching DNS (docs/SECURITY.md).
 */
#include <stdio.h>
#include <string.h>

#include "app.h"
#include "log.h"
#include "mdm_checkin.h"
#include "mdm_message.h"
#include "util.h"

static int migrate_authenticate(worker_t *w, mdm_message_t *m, http_response_t *resp)
{
    store_t *s = w->store;
    if (m->user_channel) {
        http_refuse(resp, 400, 0, "migration: Authenticate is a device-channel message but names a user");
        return -1;
    }
    enrollment_t e;
    mdm_authenticate_fields(m, &e);
    e.cert_sha256 = NULL; /* no certificate: kept if one is bound, else bound at first contact */
    if (s->ops->authenticate(s, &e, util_now()) != STORE_OK) {
        http_refuse(resp, 503, 0, "migration: storage error: %s", s->ops->errmsg(s));
        return -1;
    }
    return 0;
}

static int migrate_token_update(worker_t *w, mdm_message_t *m, http_response_t *resp)
{
    store_t *s = w->store;
    token_update_t t;
    memset(&t, 0, sizeof t);
    t.topic = m->topic;
    t.push_token = plist_dict_get_data(m->root, "Token", &t.push_token_len);
    t.push_magic = plist_dict_get_string(m->root, "PushMagic");
    t.unlock_token = plist_dict_get_data(m->root, "UnlockToken", &t.unlock_token_len);
    t.user_id = m->user_id;
    t.user_short_name = m->user_short_name;
    t.user_long_name = m->user_long_name;
    int rc = s->ops->token_update(s, m->id, m->device_id, &t, util_now());
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 400, 0, "migration: TokenUpdate for %.100s before its Authenticate", m->device_id);
        return -1;
    }
    if (rc != STORE_OK) {
        http_refuse(resp, 503, 0, "migration: storage error: %s", s->ops->errmsg(s));
        return -1;
    }
    return 0;
}

void migration_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    HTTP_LOG(resp, log_type, "migration");
    if (!admin_authorized(w->app, req)) {
        http_add_header(resp, "WWW-Authenticate", "Basic realm=\"orchard\"");
        http_refuse(resp, 401, 1, "migration: admin API key missing or wrong");
        return;
    }
    if (req->method != HTTP_M_PUT && req->method != HTTP_M_POST) {
        http_refuse(resp, 405, 1, "migration takes PUT (or POST) with a check-in plist");
        return;
    }
    mdm_message_t m;
    char why[256];
    if (mdm_message_parse(req->body, req->body_len, &m, why, sizeof why) != 0) {
        http_refuse(resp, 400, 1, "migration: %s", why);
        return;
    }
    HTTP_LOG(resp, log_id, m.id);
    const char *type = m.message_type;
    int is_auth = type && strcmp(type, "Authenticate") == 0;
    int is_token = type && strcmp(type, "TokenUpdate") == 0;
    if (!is_auth && !is_token) {
        http_refuse(resp, 400, 1, "migration takes Authenticate and TokenUpdate check-ins, not '%.64s'",
                    type ? type : "(no MessageType)");
        goto out;
    }
    HTTP_LOG(resp, log_type, is_auth ? "migration Authenticate" : "migration TokenUpdate");
    if (mdm_check_keys(m.root, is_auth ? mdm_authenticate_keys : mdm_token_update_keys,
                       is_auth ? MDM_AUTHENTICATE_NKEYS : MDM_TOKEN_UPDATE_NKEYS, why, sizeof why) != 0) {
        http_refuse(resp, 400, 1, "migration %s: %s", type, why);
        goto out;
    }
    if ((is_auth ? migrate_authenticate(w, &m, resp) : migrate_token_update(w, &m, resp)) != 0)
        goto out;
    char detail[96];
    snprintf(detail, sizeof detail, "{\"message_type\":\"%s\"}", type);
    if (w->store->ops->event_add(w->store, m.id, "migrated", detail, util_now()) != STORE_OK)
        log_warn("migration: cannot record the event for %s: %s", m.id, w->store->ops->errmsg(w->store));
    http_reply(resp, 200, NULL, NULL, 0);
out:
    mdm_message_free(&m);
}
