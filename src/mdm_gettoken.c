/* GetToken check-in: an iPhone asks for the pairing token of an Apple Watch
 * that is enrolling through it (TokenServiceType com.apple.watch.pairing,
 * TokenParameters {SecurityToken, PhoneUDID, WatchUDID}).
 *
 * Refusals other than identity are 403, never 401: a 401 tells the phone to
 * remove its MDM profile, and a pairing that is not allowed is no reason to
 * unenroll the phone. Apple requires 400 for an unknown service type.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "log.h"
#include "mdm_checkin.h"
#include "pairing.h"
#include "plist.h"
#include "util.h"
#include "watch.h"

static const char *param(const plist_t *params, const char *key)
{
    const char *v = plist_dict_get_string(params, key);
    return v && *v && mdm_id_valid(v) ? v : NULL;
}

void mdm_checkin_get_token(worker_t *w, const http_request_t *req, mdm_message_t *m, const mdm_identity_t *ident,
                           http_response_t *resp)
{
    (void)req;
    store_t *s = w->store;
    const char *service = plist_dict_get_string(m->root, "TokenServiceType");
    if (!service || strcmp(service, PAIRING_SERVICE_TYPE) != 0) {
        http_refuse(resp, 400, 0, "GetToken: unsupported TokenServiceType '%.64s' (orchard serves %s)",
                    service ? service : "", PAIRING_SERVICE_TYPE);
        return;
    }
    if (m->user_channel) {
        http_refuse(resp, 400, 0, "GetToken %s is a device-channel request but names a user", PAIRING_SERVICE_TYPE);
        return;
    }
    char why[300];
    enrollment_t phone;
    int code = mdm_authorize(w, ident, m->device_id, &phone, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }
    enrollment_free(&phone);
    const plist_t *params = plist_dict_get(m->root, "TokenParameters");
    const char *security_token = param(params, "SecurityToken");
    const char *phone_udid = param(params, "PhoneUDID");
    const char *watch_udid = param(params, "WatchUDID");
    if (!security_token || !phone_udid || !watch_udid) {
        http_refuse(resp, 400, 0, "GetToken: TokenParameters needs SecurityToken, PhoneUDID and WatchUDID strings "
                                  "(valid identifiers)");
        return;
    }
    HTTP_LOG(resp, log_type, "GetToken watch.pairing");
    if (strcmp(phone_udid, m->device_id) != 0) {
        http_refuse(resp, 403, 0, "GetToken: PhoneUDID %.100s is not the authenticated phone %.100s", phone_udid,
                    m->device_id);
        return;
    }
    code = watch_phone_eligible(s, m->device_id, 1, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "GetToken: %s", why);
        /* Never asked: ask now, so the user's next pairing attempt works. */
        if (code == 403)
            watch_ask_supervision(s, w->app->pusher, m->device_id);
        return;
    }
    if (!s->ops->pairing_get || !s->ops->pairing_bind_phone) {
        http_refuse(resp, 503, 0, "GetToken: this storage backend cannot keep watch pairing tokens");
        return;
    }
    /* Name the reason precisely for the admin; pairing_bind_phone then
     * re-checks everything in one transaction (two phones racing). */
    int64_t now = util_now();
    pairing_token_t pt;
    int rc = s->ops->pairing_get(s, security_token, &pt);
    if (rc == STORE_ERR) {
        http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    if (rc == STORE_NOTFOUND) {
        http_refuse(resp, 403, 0, "GetToken: security token for watch %.100s was never issued by orchard",
                    watch_udid);
        return;
    }
    const char *problem = NULL;
    if (strcmp(pt.watch_udid, watch_udid) != 0)
        problem = "was issued to another watch";
    else if (pt.used_at)
        problem = "was already used";
    else if (pt.expires_at <= now)
        problem = "has expired";
    else if (pt.phone_udid && strcmp(pt.phone_udid, m->device_id) != 0)
        problem = "is already bound to another phone";
    pairing_token_free(&pt);
    if (problem) {
        http_refuse(resp, 403, 0, "GetToken: security token for watch %.100s %s", watch_udid, problem);
        return;
    }
    rc = s->ops->pairing_bind_phone(s, security_token, watch_udid, m->device_id, now);
    if (rc != STORE_OK) {
        if (rc == STORE_NOTFOUND)
            http_refuse(resp, 403, 0, "GetToken: security token for watch %.100s is no longer usable", watch_udid);
        else
            http_refuse(resp, 503, 0, "storage error: %s", s->ops->errmsg(s));
        return;
    }
    pairing_claims_t c = {.security_token = (char *)security_token,
                          .phone_udid = m->device_id,
                          .watch_udid = (char *)watch_udid,
                          .org = (char *)w->app->org_id,
                          .iat = now,
                          .exp = now + w->app->cfg->watch_token_ttl};
    size_t len = 0;
    char *token = pairing_token_mint(w->app->pairing_key, &c, &len);
    plist_t *reply = token ? plist_new_dict() : NULL;
    if (reply && plist_dict_set(reply, "TokenData", plist_new_data((unsigned char *)token, len)) != 0) {
        plist_free(reply);
        reply = NULL;
    }
    if (token) {
        OPENSSL_cleanse(token, len);
        free(token);
    }
    if (!reply) {
        http_refuse(resp, 503, 0, "GetToken: out of memory building the pairing token");
        return;
    }
    mdm_checkin_reply(resp, reply, 1);
    log_info("pairing token issued: phone %s vouches for watch %s (valid %ld s)", m->device_id, watch_udid,
             w->app->cfg->watch_token_ttl);
}
