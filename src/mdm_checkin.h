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

#endif
