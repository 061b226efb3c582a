/* libFuzzer target: admin API request bodies through the real admin
 * handlers, server and store (fuzz_http_harness.h). fuzz_http_request
 * reaches them too, but spends most mutations on the request framing; here
 * the framing is fixed and every mutation lands in the body.
 *
 * Input layout: byte 0 picks the call, the rest is its body.
 *   0 PUT /v1/declarations                 (declaration JSON, Identifier inside)
 *   1 PUT /v1/declarations/fz-decl         (declaration JSON, Identifier from the path)
 *   2 PUT /v1/sets/fz-set                  ({"declarations":[...]})
 *   3 POST /v1/sets/fz-set/assignments     ({"device"|"group"|"all"})
 *   4 DELETE /v1/sets/fz-set/assignments
 *   5 POST /v1/enqueue/FUZZ-UDID?nopush=1  (a command plist)
 * Start-up enrolls FUZZ-UDID (Authenticate, TokenUpdate) and puts it in group
 * "lab", so assignments and enqueues have a real target and every change
 * runs the DDM fan-out over it. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_http_harness.h"

#define FUZZ_UDID "FUZZ-UDID-0001"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void send_checkin(const char *type, const char *extra)
{
    char body[1024], req[8192];
    int blen = snprintf(body, sizeof body,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?><plist version=\"1.0\"><dict>"
                        "<key>MessageType</key><string>%s</string><key>UDID</key><string>" FUZZ_UDID "</string>"
                        "<key>Topic</key><string>%s</string>%s</dict></plist>",
                        type, app.push_topic, extra);
    int rlen = snprintf(req, sizeof req,
                        "PUT /mdm/checkin HTTP/1.1\r\nHost: x\r\nX-Client-Cert: %s\r\nContent-Length: %d\r\n\r\n%s",
                        cert_b64, blen, body);
    if (blen <= 0 || (size_t)blen >= sizeof body || rlen <= 0 || (size_t)rlen >= sizeof req)
        die("check-in request too long");
    fuzz_http_send(req, (size_t)rlen);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_http_start();
    send_checkin("Authenticate", "");
    send_checkin("TokenUpdate", "<key>Token</key><data>3q2+7w==</data><key>PushMagic</key><string>magic</string>");
    static const char group[] = "PUT /v1/groups/lab/members/" FUZZ_UDID " HTTP/1.1\r\nHost: x\r\n"
                                "Authorization: Bearer " FUZZ_API_KEY "\r\nContent-Length: 0\r\n\r\n";
    fuzz_http_send(group, sizeof group - 1);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const struct {
        const char *method, *path, *content_type;
    } calls[] = {
        {"PUT", "/v1/declarations", "application/json"},
        {"PUT", "/v1/declarations/fz-decl", "application/json"},
        {"PUT", "/v1/sets/fz-set", "application/json"},
        {"POST", "/v1/sets/fz-set/assignments", "application/json"},
        {"DELETE", "/v1/sets/fz-set/assignments", "application/json"},
        {"POST", "/v1/enqueue/" FUZZ_UDID "?nopush=1", "application/x-apple-plist"},
    };
    if (size < 1)
        return 0;
    const size_t ncalls = sizeof calls / sizeof calls[0];
    size_t which = data[0] % ncalls;
    char head[512];
    int hlen = snprintf(head, sizeof head,
                        "%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " FUZZ_API_KEY
                        "\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                        calls[which].method, calls[which].path, calls[which].content_type, size - 1);
    char *req = malloc((size_t)hlen + size);
    if (!req)
        die("out of memory");
    memcpy(req, head, (size_t)hlen);
    memcpy(req + hlen, data + 1, size - 1);
    fuzz_http_send(req, (size_t)hlen + size - 1);
    free(req);
    return 0;
}
