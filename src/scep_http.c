/* SCEP endpoint (RFC 8894) at /scep. Placeholder until the SCEP server
 * lands: refuses clearly. */
#include "app.h"

void scep_http_handle(worker_t *w, const http_request_t *req, http_response_t *resp)
{
    (void)w;
    (void)req;
    http_refuse(resp, 501, 0, "SCEP is not implemented yet");
}
