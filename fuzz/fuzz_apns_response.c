/* libFuzzer target: what orchard makes of an APNs answer — the status comes
 * from the first two input bytes, the rest is the response body (any bytes,
 * JSON or not) — plus apns-id header sanitizing and the transport-error
 * classifier on the same bytes. Checks that every outcome carries printable
 * text only, so nothing from APNs reaches logs or the API unfiltered.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       fuzz/fuzz_apns_response.c src/apns.c src/pushcert.c src/util.c ... \
 *       $(pkg-config --cflags --libs openssl jansson) -o fuzz_apns_response
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "apns.h"

static void check_printable(const char *s, size_t cap)
{
    size_t n = strnlen(s, cap);
    if (n == cap)
        abort(); /* not terminated */
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] >= 0x7f)
            abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    long status = size >= 2 ? 100 + (long)((data[0] << 8 | data[1]) % 500) : 200;
    const char *body = size >= 2 ? (const char *)data + 2 : "";
    size_t len = size >= 2 ? size - 2 : 0;

    apns_result_t r;
    apns_classify_http(status, body, len, &r);
    check_printable(r.reason, sizeof r.reason);
    check_printable(r.error, sizeof r.error);
    if (status == 200 && r.outcome != APNS_OK)
        abort();

    char id[65];
    apns_copy_id(body, len, id, sizeof id);
    check_printable(id, sizeof id);

    char *detail = malloc(len + 1);
    if (!detail)
        return 0;
    memcpy(detail, body, len);
    detail[len] = '\0';
    apns_classify_transport(size & 1, detail, &r);
    check_printable(r.error, sizeof r.error);
    free(detail);
    return 0;
}
