/* Check-in protocol: PUT /mdm/checkin (and /mdm with a MessageType).
 *
 * Apple's rule: 200 accepts, 401 rejects (and makes the device remove its
 * MDM profile). orchard answers 400 for malformed messages and unknown
 * message types, 401 for identity failures, 503 when storage fails (so the
 * device retries instead of unenrolling).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "ade_await.h"
#include "ade_enroll.h"
#include "app.h"
#include "ddm.h"
#include "log.h"
#include "mdm_auth.h"
#include "mdm_checkin.h"
#include "mdm_message.h"
#include "util.h"
#include "watch.h"

typedef void (*checkin_fn)(worker_t *w, const http_request_t *req, mdm_message_t *m, const mdm_identity_t *ident,
                           http_response_t *resp);

static void storage_failed(worker_t *w, http_response_t *resp)
{
    http_refuse(resp, 503, 0, "storage error: %s", w->store->ops->errmsg(w->store));
}

void mdm_checkin_reply(http_response_t *resp, plist_t *reply, int secret)
{
    size_t len = 0;
    char *xml = reply ? plist_to_xml(reply, &len) : NULL;
    plist_free(reply);
    if (!xml) {
        http_refuse(resp, 503, 0, "out of memory building the check-in answer");
        return;
    }
    http_reply(resp, 200, "application/xml", xml, len);
    if (secret)
        OPENSSL_cleanse(xml, len);
    free(xml);
}

void mdm_authenticate_fields(const mdm_message_t *m, enrollment_t *e)
{
    memset(e, 0, sizeof *e);
    e->id = e->device_id = (char *)m->device_id;
    e->udid = (char *)m->udid;
    e->channel = "device";
    e->topic = (char *)m->topic;
    e->serial_number = (char *)plist_dict_get_string(m->root, "SerialNumber");
    e->model = (char *)plist_dict_get_string(m->root, "Model");
    e->model_name = (char *)plist_dict_get_string(m->root, "ModelName");
    e->product_name = (char *)plist_dict_get_string(m->root, "ProductName");
    e->os_version = (char *)plist_dict_get_string(m->root, "OSVersion");
    e->build_version = (char *)plist_dict_get_string(m->root, "BuildVersion");
    e->device_name = (char *)plist_dict_get_string(m->root, "DeviceName");
    e->imei = (char *)plist_dict_get_string(m->root, "IMEI");
    e->meid = (char *)plist_dict_get_string(m->root, "MEID");
}

static void checkin_authenticate(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                 const mdm_identity_t *ident, http_response_t *resp)
{
    (void)req;
    store_t *s = w->store;
    if (m->user_channel) {
        http_refuse(resp, 400, 0, "Authenticate is a device-channel message but names a user");
        return;
    }
    enrollment_t other;
    int rc = s->ops->enrollment_by_cert(s, ident->sha256, &other);
    if (rc == STORE_ERR) {
        storage_failed(w, resp);
        return;
    }
    if (rc == STORE_OK) {
        int elsewhere = strcmp(other.id, m->device_id) != 0;
        enrollment_free(&other);
        if (elsewhere) {
            http_refuse(resp, 401, 0, "certificate is bound to another device");
            return;
        }
    }
    enrollment_t cur;
    rc = s->ops->enrollment_get(s, m->device_id, &cur);
    if (rc == STORE_ERR) {
        storage_failed(w, resp);
        return;
    }
    if (rc == STORE_OK) {
        /* Renewal rule: an active enrollment moves to a new certificate only
         * if orchard issued that certificate for this very device (a SCEP
         * challenge bound to its UDID). A name in the certificate is not
         * enough: whoever holds the static or an unbound challenge chooses
         * the subject. Otherwise anyone with some certificate from the CA
         * could take over an enrolled UDID with a forged Authenticate. */
        int rebind = cur.cert_sha256 && strcmp(cur.cert_sha256, ident->sha256) != 0;
        int active = strcmp(cur.state, ENR_STATE_ACTIVE) == 0;
        enrollment_free(&cur);
        if (rebind && active) {
            issued_cert_t issued;
            int irc = s->ops->cert_by_sha256(s, ident->sha256, &issued);
            if (irc == STORE_ERR) {
                storage_failed(w, resp);
                return;
            }
            int for_this_device = irc == STORE_OK && issued.enrollment_id &&
                                  strcmp(issued.enrollment_id, m->device_id) == 0;
            if (irc == STORE_OK)
                issued_cert_free(&issued);
            if (!for_this_device) {
                http_refuse(resp, 401, 0,
                            "device is enrolled with another certificate, and orchard did not issue the new "
                            "one for this UDID");
                return;
            }
        }
    }
    enrollment_t e;
    mdm_authenticate_fields(m, &e);
    e.cert_sha256 = (char *)ident->sha256;
    if (s->ops->authenticate(s, &e, util_now()) != STORE_OK) {
        storage_failed(w, resp);
        return;
    }
    /* Apple Watch: a paired watch is now enrolled. */
    watch_on_authenticate(s, m->device_id);
    /* ADE: supervised when it came through the configuration URL. */
    ade_on_authenticate(s, m->device_id);
    http_reply(resp, 200, NULL, NULL, 0);
}

static void checkin_token_update(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                 const mdm_identity_t *ident, http_response_t *resp)
{
    (void)req;
    store_t *s = w->store;
    char why[256];
    enrollment_t dev;
    int code = mdm_authorize(w, ident, m->device_id, &dev, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }
    /* A user channel only exists under a managed device channel. */
    int device_gone = m->user_channel && strcmp(dev.state, ENR_STATE_INACTIVE) == 0;
    enrollment_free(&dev);
    if (device_gone) {
        http_refuse(resp, 401, 0, "user-channel TokenUpdate for a checked-out device");
        return;
    }
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
        http_refuse(resp, 401, 0, "unknown enrollment");
        return;
    }
    if (rc != STORE_OK) {
        storage_failed(w, resp);
        return;
    }
    /* ADE await configuration: queue the setup commands (DeviceConfigured
     * follows them in mdm_connect.c). */
    if (!m->user_channel) {
        int acode = ade_await_on_token_update(s, w->app->pusher, m->device_id, m->root, why, sizeof why);
        if (acode) {
            http_refuse(resp, acode, 0, "%s", why);
            return;
        }
    }
    /* A new (or re-enrolled) channel gets the declarations already assigned
     * to it, e.g. through an "all" set. Not fatal: the next ddm_sync or
     * TokenUpdate catches up. */
    char err[256];
    if (ddm_sync_enrollment(s, w->app->pusher, m->id, err, sizeof err) != 0)
        log_warn("DDM sync after TokenUpdate of %s failed: %s", m->id, err);
    http_reply(resp, 200, NULL, NULL, 0);
}

static void checkin_checkout(worker_t *w, const http_request_t *req, mdm_message_t *m,
                             const mdm_identity_t *ident, http_response_t *resp)
{
    (void)req;
    store_t *s = w->store;
    if (m->user_channel) {
        http_refuse(resp, 400, 0, "CheckOut is a device-channel message but names a user");
        return;
    }
    char why[256];
    enrollment_t dev;
    int code = mdm_authorize(w, ident, m->device_id, &dev, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }
    enrollment_free(&dev);
    int rc = s->ops->checkout(s, m->device_id, util_now());
    if (rc != STORE_OK) {
        if (rc == STORE_NOTFOUND)
            http_refuse(resp, 401, 0, "unknown enrollment");
        else
            storage_failed(w, resp);
        return;
    }
    watch_on_phone_gone(s, m->device_id, "checked out");
    http_reply(resp, 200, NULL, NULL, 0);
}

/* The message types orchard handles and the keys each must carry, beyond the
 * envelope checked by mdm_message_parse. Later features add rows here. */
const mdm_key_spec_t mdm_authenticate_keys[] = {
    {"Topic", PLIST_STRING, 1},        {"SerialNumber", PLIST_STRING, 0}, {"Model", PLIST_STRING, 0},
    {"ModelName", PLIST_STRING, 0},    {"ProductName", PLIST_STRING, 0},  {"OSVersion", PLIST_STRING, 0},
    {"BuildVersion", PLIST_STRING, 0}, {"DeviceName", PLIST_STRING, 0},   {"IMEI", PLIST_STRING, 0},
    {"MEID", PLIST_STRING, 0},
};
const mdm_key_spec_t mdm_token_update_keys[] = {
    {"Topic", PLIST_STRING, 1},
    {"Token", PLIST_DATA, 1},
    {"PushMagic", PLIST_STRING, 1},
    {"UnlockToken", PLIST_DATA, 0},
    {"AwaitingConfiguration", PLIST_BOOL, 0},
};
static const mdm_key_spec_t checkout_keys[] = {
    {"Topic", PLIST_STRING, 0},
};
static const mdm_key_spec_t declarative_management_keys[] = {
    {"Endpoint", PLIST_STRING, 1},
    {"Data", PLIST_DATA, 0},
};
static const mdm_key_spec_t get_token_keys[] = {
    {"TokenServiceType", PLIST_STRING, 1},
    {"TokenParameters", PLIST_DICT, 0},
};
static const mdm_key_spec_t set_bootstrap_token_keys[] = {
    {"BootstrapToken", PLIST_DATA, 0},
    {"AwaitingConfiguration", PLIST_BOOL, 0},
};
static const mdm_key_spec_t get_bootstrap_token_keys[] = {
    {"AwaitingConfiguration", PLIST_BOOL, 0},
};
/* UserID is required too; the envelope parser has checked its type and the
 * handler that it is there. */
static const mdm_key_spec_t user_authenticate_keys[] = {
    {"DigestResponse", PLIST_STRING, 0},
};
#define NKEYS(a) (sizeof(a) / sizeof(a)[0])

static const struct {
    const char *type;
    checkin_fn fn;
    const mdm_key_spec_t *keys;
    size_t nkeys;
} checkin_types[] = {
    {"Authenticate", checkin_authenticate, mdm_authenticate_keys, MDM_AUTHENTICATE_NKEYS},
    {"TokenUpdate", checkin_token_update, mdm_token_update_keys, MDM_TOKEN_UPDATE_NKEYS},
    {"CheckOut", checkin_checkout, checkout_keys, NKEYS(checkout_keys)},
    {"DeclarativeManagement", mdm_checkin_declarative_management, declarative_management_keys,
     NKEYS(declarative_management_keys)},
    {"GetToken", mdm_checkin_get_token, get_token_keys, NKEYS(get_token_keys)},
    {"SetBootstrapToken", mdm_checkin_set_bootstrap_token, set_bootstrap_token_keys,
     NKEYS(set_bootstrap_token_keys)},
    {"GetBootstrapToken", mdm_checkin_get_bootstrap_token, get_bootstrap_token_keys,
     NKEYS(get_bootstrap_token_keys)},
    {"UserAuthenticate", mdm_checkin_user_authenticate, user_authenticate_keys, NKEYS(user_authenticate_keys)},
};

/* Handles a parsed check-in message (shared with the single-URL route). */
void mdm_checkin_dispatch(worker_t *w, const http_request_t *req, mdm_message_t *m, http_response_t *resp)
{
    HTTP_LOG(resp, log_id, m->id);
    HTTP_LOG(resp, log_type, m->message_type ? m->message_type : "-");
    if (!m->message_type) {
        http_refuse(resp, 400, 0, "check-in message without MessageType");
        return;
    }
    size_t i;
    for (i = 0; i < sizeof checkin_types / sizeof checkin_types[0]; i++)
        if (strcmp(checkin_types[i].type, m->message_type) == 0)
            break;
    if (i == sizeof checkin_types / sizeof checkin_types[0]) {
        http_refuse(resp, 400, 0, "unsupported check-in MessageType '%.64s'", m->message_type);
        return;
    }
    char why[256];
    if (mdm_check_keys(m->root, checkin_types[i].keys, checkin_types[i].nkeys, why, sizeof why) != 0) {
        http_refuse(resp, 400, 0, "%s: %s", m->message_type, why);
        return;
    }
    mdm_identity_t ident;
    int icode = mdm_identify(w, req, &ident, why, sizeof why);
    if (icode != 200) {
        http_refuse(resp, icode, 0, "%s", why);
        return;
    }
    checkin_types[i].fn(w, req, m, &ident, resp);
    mdm_identity_clear(&ident);
}

void mdm_checkin_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    mdm_message_t m;
    char why[256];
    if (mdm_message_parse(req->body, req->body_len, &m, why, sizeof why) != 0) {
        http_refuse(resp, 400, 0, "check-in: %s", why);
        return;
    }
    mdm_checkin_dispatch(w, req, &m, resp);
    mdm_message_free(&m);
}
