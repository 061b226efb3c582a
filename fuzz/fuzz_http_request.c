/* libFuzzer target: the HTTP request path as a whole. The input is written
 * as raw bytes (one or more pipelined HTTP/1.1 requests) to orchard's real
 * front — evhttp's parser, http_server.c's dispatch, the router and every
 * handler, on a real SQLite store — over a loopback TCP connection to one
 * worker (http_local_worker_new) whose event loop this thread runs, so the
 * server and its client take turns deterministically.
 *
 * The set-up (fuzz_http_harness.h) opens the device and admin handlers to
 * the seeds. Two placeholders let inputs carry what the fuzzer cannot forge:
 *   @KEY@  → the admin API key  (also accepted literally: FUZZ_API_KEY)
 *   @CERT@ → a device certificate issued by the CA at start-up, as
 *            RFC 9440 :base64-DER:, for X-Client-Cert
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_http_harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fuzz_http_start();
    return 0;
}

/* The input with its placeholders replaced; heap, *out_len set. */
static char *expand(const uint8_t *data, size_t size, size_t *out_len)
{
    static const struct {
        const char *token;
        const char *value;
    } subst[] = {{"@KEY@", FUZZ_API_KEY}, {"@CERT@", cert_b64}};
    size_t cap = size + 1, len = 0;
    for (size_t i = 0; i < size; i++)
        if (data[i] == '@')
            cap += sizeof cert_b64;
    char *out = malloc(cap);
    if (!out)
        die("out of memory");
    for (size_t i = 0; i < size;) {
        size_t k = 0;
        for (; k < sizeof subst / sizeof subst[0]; k++) {
            size_t tl = strlen(subst[k].token);
            if (size - i >= tl && memcmp(data + i, subst[k].token, tl) == 0) {
                size_t vl = strlen(subst[k].value);
                memcpy(out + len, subst[k].value, vl);
                len += vl;
                i += tl;
                break;
            }
        }
        if (k == sizeof subst / sizeof subst[0])
            out[len++] = (char)data[i++];
    }
    *out_len = len;
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t len;
    char *req = expand(data, size, &len);
    fuzz_http_send(req, len);
    free(req);
    return 0;
}
