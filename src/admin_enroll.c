/* Admin API for enrollment: /v1/certificates, /v1/admission, /v1/renewals.
 * Placeholder: handles nothing yet. Returns 1 when it answered. */
#include "app.h"

int admin_enroll_handle(worker_t *w, const http_request_t *req, const char *sub, http_response_t *resp)
{
    (void)w;
    (void)req;
    (void)sub;
    (void)resp;
    return 0;
}
