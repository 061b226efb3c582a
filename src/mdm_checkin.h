/* Check-in message handlers that live in their own files (one concern per
 * file); mdm_checkin.c's dispatch table calls them after the envelope, the
 * message's key types and the device identity have been checked. */
#ifndef ORCHARD_MDM_CHECKIN_H
#define ORCHARD_MDM_CHECKIN_H

#include "app.h"
#include "mdm_auth.h"
#include "mdm_message.h"

/* DeclarativeManagement: Endpoint tokens | declaration-items |
 * declaration/<kind>/<Identifier> | status (mdm_ddm.c). */
void mdm_checkin_declarative_management(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                        const mdm_identity_t *ident, http_response_t *resp);
/* GetToken: TokenServiceType com.apple.watch.pairing (mdm_gettoken.c). */
void mdm_checkin_get_token(worker_t *w, const http_request_t *req, mdm_message_t *m, const mdm_identity_t *ident,
                           http_response_t *resp);

/* SetBootstrapToken / GetBootstrapToken: bootstrap token escrow, sealed
 * with DATA_DIR/escrow.key (mdm_bootstrap.c). */
#define MDM_ESCROW_KEY_FILE "escrow.key"
void mdm_checkin_set_bootstrap_token(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                     const mdm_identity_t *ident, http_response_t *resp);
void mdm_checkin_get_bootstrap_token(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                     const mdm_identity_t *ident, http_response_t *resp);
/* 1 if a bootstrap token is escrowed for this UDID, 0 if not, -1 on a
 * storage error (admin API). */
int mdm_bootstrap_token_escrowed(store_t *s, const char *udid);
/* UserAuthenticate: no digest needed for network users (mdm_userauth.c). */
void mdm_checkin_user_authenticate(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                   const mdm_identity_t *ident, http_response_t *resp);

/* Answers 200 with `reply` (a dict, taken over; NULL means it could not be
 * built) as an XML plist, or 503 when it cannot be serialized. secret != 0
 * wipes the serialized copy after sending (tokens). */
void mdm_checkin_reply(http_response_t *resp, plist_t *reply, int secret);

/* The keys Authenticate and TokenUpdate must carry beyond the envelope
 * (shared with the NanoMDM migration endpoint, which takes the same
 * messages). */
#define MDM_AUTHENTICATE_NKEYS 10
#define MDM_TOKEN_UPDATE_NKEYS 5
extern const mdm_key_spec_t mdm_authenticate_keys[MDM_AUTHENTICATE_NKEYS];
extern const mdm_key_spec_t mdm_token_update_keys[MDM_TOKEN_UPDATE_NKEYS];

/* An Authenticate message's device fields as a device-channel enrollment
 * (strings borrowed from m; cert_sha256 left NULL for the caller). */
void mdm_authenticate_fields(const mdm_message_t *m, enrollment_t *e);

#endif
