/* DeclarativeManagement check-in (placeholder until the DDM endpoints land). */
#include "mdm_checkin.h"

void mdm_checkin_declarative_management(worker_t *w, const http_request_t *req, mdm_message_t *m,
                                        const mdm_identity_t *ident, http_response_t *resp)
{
    (void)w, (void)req, (void)m, (void)ident;
    http_refuse(resp, 400, 0, "DeclarativeManagement is not supported yet");
}
