/* OTA enrollment at /enroll. Placeholder until enrollment lands. */
#include "app.h"

void enroll_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    (void)w;
    (void)req;
    http_refuse(resp, 501, 0, "enrollment is not implemented yet");
}
