/* Bootstrap token escrow (macOS 10.15+, device channel): SetBootstrapToken
 * hands orchard the token, GetBootstrapToken asks for it back, typically
 * from Setup Assistant after the Mac was erased and enrolled again, so the
 * new local account gets a secure token without an administrator's
 * password. The token unlocks that Mac's secure-token grants: it is sealed
 * (seal.h, DATA_DIR/escrow.key, the UDID bound as associated data) before
 * it reaches the store, and neither it nor its length is ever logged.
 *
 * Stored as the setting "bootstrap-token/<UDID>" (store.h settings), not on
 * the enrollment row: it must outlive an erase and re-enrollment, which is
 * exactly when the Mac asks for it.
 *
 * Refusals other than identity are 400 or 503, never 401: a 401 tells the
 * Mac to remove its MDM profile.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mdm_checkin.h"
#include "plist.h"
#include "seal.h"
#include "util.h"

#define SETTING_PREFIX "bootstrap-token/"
#define AAD_PREFIX "bootstrap-token:"

/* Apple's bootstrap tokens are well under a kilobyte; anything this large
 * is not one. */
#define BOOTSTRAP_TOKEN_MAX 16384

/* Checks that the message comes from the active device channel of a Mac
 * orchard knows. 0, or the status it answered with. */
static int authorize_device_channel(worker_t *w, const mdm_message_t *m, const mdm_identity_t *ident,
                                    http_response_t *resp)
{
    if (m->user_channel) {
        http_refuse(resp, 400, 0, "%s is a device-channel message but names a user", m->message_type);
        return 400;
    }
    char why[300];
    enrollment_t dev;
    int code = mdm_authorize(w, ident, m->device_id, &dev, why, sizeof why);
    if (code == 200) {
        code = mdm_channel_active(w, m, &dev, NULL, NULL, why, sizeof why);
        enrollment_free(&dev);
    }
    if (code == 200 || code == 0)
        return 0;
    http_refuse(resp, code, 0, "%s", why);
    return code;
}

/* The start both messages share: the Mac's device channel is authorized,
 * the store can keep settings, and this Mac's setting name and sealing
 * label are made (the caller frees both). 0, or -1 after refusing. */
static int escrow_begin(worker_t *w, const mdm_message_t *m, const mdm_identity_t *ident, http_response_t *resp,
                        char **name, char **aad)
{
    *name = *aad = NULL;
    if (authorize_device_channel(w, m, ident, resp) != 0)
        return -1;
    const store_t *s = w->store;
    if (!s->ops->setting_put || !s->ops->setting_get || !s->ops->setting_delete) {
        http_refuse(resp, 503, 0, "%s: this storage backend cannot keep bootstrap tokens", m->message_type);
        return -1;
    }
    *name = util_strdup_printf(SETTING_PREFIX "%s", m->device_id);
    *aad = util_strdup_printf(AAD_PREFIX "%s", m->device_id);
    if (!*name || !*aad) {
        free(*name);
        free(*aad);
        *name = *aad = NULL;
        http_refuse(resp, 503, 0, "%s: out of memory", m->message_type);
        return -1;
    }
    return 0;
}

int mdm_bootstrap_token_escrowed(store_t *s, const char *udid)
{
    if (!s->ops->setting_get)
        return 0;
    char *name = util_strdup_printf(SETTING_PREFIX "%s", udid);
    unsigned char *v = NULL;
    size_t len = 0;
    int rc = name ? s->ops->setting_get(s, name, &v, &len) : STORE_ERR;
    free(name);
    free(v);
    return rc == STORE_OK ? 1 : rc == STORE_NOTFOUND ? 0 : -1;
}

void mdm_checkin_set_bootstrap_token(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                     const mdm_identity_t *ident, http_response_t *resp)
{
    (void)req;
    store_t *s = w->store;
    char *name, *aad;
    if (escrow_begin(w, m, ident, resp, &name, &aad) != 0)
        return;
    size_t len = 0;
    const unsigned char *token = plist_dict_get_data(m->root, "BootstrapToken", &len);
    if (token && len > BOOTSTRAP_TOKEN_MAX) {
        free(name);
        free(aad);
        http_refuse(resp, 400, 0, "SetBootstrapToken: BootstrapToken is larger than %d bytes", BOOTSTRAP_TOKEN_MAX);
        return;
    }
    int64_t now = util_now();
    int rc;
    const char *event = "bootstrap_token_escrowed", *what = "bootstrap token escrowed";
    if (token && len > 0) {
        size_t sealed_len = 0;
        unsigned char *sealed = seal(w->app->escrow_key, aad, token, len, &sealed_len);
        if (!sealed) {
            free(name);
            free(aad);
            http_refuse(resp, 503, 0, "SetBootstrapToken: cannot seal the token (out of memory)");
            return;
        }
        rc = s->ops->setting_put(s, name, sealed, sealed_len, now);
        free(sealed);
    } else {
        /* Missing or empty: the Mac asks orchard to forget it. */
        rc = s->ops->setting_delete(s, name);
        if (rc == STORE_NOTFOUND)
            rc = STORE_OK;
        event = "bootstrap_token_removed";
        what = "bootstrap token removed";
    }
    free(name);
    free(aad);
    if (rc != STORE_OK) {
        http_refuse(resp, 503, 0, "SetBootstrapToken: storage error: %s", s->ops->errmsg(s));
        return;
    }
    if (s->ops->event_add(s, m->device_id, event, NULL, now) != STORE_OK)
        log_warn("bootstrap token of %s: cannot log the event: %s", m->device_id, s->ops->errmsg(s));
    log_info("%s: %s", m->device_id, what);
    http_reply(resp, 200, NULL, NULL, 0);
}

/* The answer: a dict with BootstrapToken when one is escrowed, empty when
 * not (the key is optional: the Mac then goes on without it). */
static void reply_token(http_response_t *resp, const unsigned char *token, size_t len)
{
    plist_t *reply = plist_new_dict();
    if (reply && token && plist_dict_set(reply, "BootstrapToken", plist_new_data(token, len)) != 0) {
        plist_free(reply);
        reply = NULL;
    }
    mdm_checkin_reply(resp, reply, 1);
}

void mdm_checkin_get_bootstrap_token(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                     const mdm_identity_t *ident, http_response_t *resp)
{
    (void)req;
    store_t *s = w->store;
    char *name, *aad;
    if (escrow_begin(w, m, ident, resp, &name, &aad) != 0)
        return;
    unsigned char *sealed = NULL;
    size_t sealed_len = 0;
    int rc = s->ops->setting_get(s, name, &sealed, &sealed_len);
    free(name);
    if (rc == STORE_ERR) {
        free(aad);
        http_refuse(resp, 503, 0, "GetBootstrapToken: storage error: %s", s->ops->errmsg(s));
        return;
    }
    if (rc == STORE_NOTFOUND) {
        free(aad);
        log_info("%s: bootstrap token asked for, none escrowed", m->device_id);
        reply_token(resp, NULL, 0);
        return;
    }
    size_t len = 0;
    char *token = unseal(w->app->escrow_key, aad, sealed, sealed_len, &len);
    free(aad);
    free(sealed);
    if (!token) {
        /* Retrying will not help, and an error would hold up Setup
         * Assistant: answer as if none were escrowed, and say why. */
        log_error("%s: the escrowed bootstrap token does not open with DATA_DIR/%s (another instance's key, or "
                  "damaged); answering without it",
                  m->device_id, MDM_ESCROW_KEY_FILE);
        reply_token(resp, NULL, 0);
        return;
    }
    reply_token(resp, (const unsigned char *)token, len);
    unsealed_free(token, len);
    if (s->ops->event_add(s, m->device_id, "bootstrap_token_retrieved", NULL, util_now()) != STORE_OK)
        log_warn("bootstrap token of %s: cannot log the event: %s", m->device_id, s->ops->errmsg(s));
    log_info("%s: escrowed bootstrap token handed out", m->device_id);
}
