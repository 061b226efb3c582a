/* UserAuthenticate (macOS): before it opens a user channel for a network
 * or mobile-account user, the Mac asks whether the server wants that user's
 * password digest. orchard answers with an empty DigestChallenge: it needs
 * no AuthToken, the user channel then enrolls with its own TokenUpdate, and
 * the user's password never travels to orchard. A DigestResponse can only
 * follow a challenge orchard never sent, so it is refused the way Apple
 * defines a refusal: 200 with an empty AuthToken (the Mac then leaves the
 * user unmanaged).
 *
 * The message arrives with the device's identity, so the device channel
 * must be enrolled, bound to that certificate and active (401 otherwise,
 * as for every device message).
 */
#include <string.h>

#include "log.h"
#include "mdm_checkin.h"
#include "plist.h"

/* A dict with one empty string: what Apple defines for "no challenge"
 * (DigestChallenge) and for "refused" (AuthToken). */
static void reply_empty(http_response_t *resp, const char *key)
{
    plist_t *reply = plist_new_dict();
    if (reply && plist_dict_set(reply, key, plist_new_string("")) != 0) {
        plist_free(reply);
        reply = NULL;
    }
    mdm_checkin_reply(resp, reply, 0);
}

void mdm_checkin_user_authenticate(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                   const mdm_identity_t *ident, http_response_t *resp)
{
    (void)req;
    if (!m->user_channel) {
        http_refuse(resp, 400, 0, "UserAuthenticate needs the UserID of the user it is for");
        return;
    }
    char why[300];
    enrollment_t dev;
    int code = mdm_authorize(w, ident, m->device_id, &dev, why, sizeof why);
    if (code != 200) {
        http_refuse(resp, code, 0, "%s", why);
        return;
    }
    /* The device channel only: the user channel does not exist yet. */
    int active = strcmp(dev.state, ENR_STATE_ACTIVE) == 0;
    enrollment_free(&dev);
    if (!active) {
        http_refuse(resp, 401, 0, "UserAuthenticate: the device enrollment is not active");
        return;
    }
    if (plist_dict_get_string(m->root, "DigestResponse")) {
        log_warn("%s: UserAuthenticate with a DigestResponse, but orchard sent no challenge: user not managed",
                 m->id);
        reply_empty(resp, "AuthToken");
        return;
    }
    log_info("%s: UserAuthenticate: no password digest needed", m->id);
    reply_empty(resp, "DigestChallenge");
}
