/* libFuzzer target for the plist parser and writer.
 *
 * Whatever parses must serialize, and the serialization must parse again and
 * serialize to the same bytes (the writer is canonical). Any other outcome
 * aborts so the fuzzer records it. Sanitizers catch memory errors and leaks.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plist.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[256];
    plist_t *p = plist_parse((const char *)data, size, err, sizeof err);
    if (!p)
        return 0;

    size_t len;
    char *xml = plist_to_xml(p, &len);
    if (!xml) {
        fprintf(stderr, "parsed input could not be serialized\n");
        abort();
    }
    plist_t *again = plist_parse(xml, len, err, sizeof err);
    if (!again) {
        fprintf(stderr, "serialized output does not parse: %s\n%s", err, xml);
        abort();
    }
    size_t len2;
    char *xml2 = plist_to_xml(again, &len2);
    if (!xml2 || len2 != len || memcmp(xml, xml2, len) != 0) {
        fprintf(stderr, "writer is not stable across a round trip\n");
        abort();
    }
    free(xml2);
    plist_free(again);
    free(xml);
    plist_free(p);
    return 0;
}
