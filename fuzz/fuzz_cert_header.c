/* libFuzzer target: identity_from_header (proxy client-certificate header:
 * URL-escaped PEM, plain PEM, RFC 9440 :base64:). The whole input is the
 * header value. A certificate that decodes is also run through
 * identity_verify_cert against a CA generated once at startup, so odd but
 * parseable certificates reach chain building and purpose checks.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       fuzz/fuzz_cert_header.c src/identity.c src/pki.c src/util.c \
 *       $(pkg-config --cflags --libs openssl) -o fuzz_cert_header
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include "fuzz_verifier.h"
#include "identity.h"
#include "pki.h"

static identity_verifier_t *verifier;

static void cleanup(void)
{
    identity_verifier_free(verifier);
    verifier = NULL;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    verifier = fuzz_make_verifier();
    atexit(cleanup);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *value = malloc(size + 1);
    if (!value)
        return 0;
    memcpy(value, data, size);
    value[size] = '\0';

    char reason[256];
    reason[0] = '\0';
    X509 *x = identity_from_header(value, reason, sizeof reason);
    if (x) {
        char why[256];
        identity_verify_cert(verifier, x, NULL, why, sizeof why);
        char hex[65];
        pki_cert_sha256_hex(x, hex);
        X509_free(x);
    } else if (reason[0] == '\0') {
        abort(); /* every failure must say why */
    }
    if (ERR_peek_error() != 0)
        abort(); /* the error queue must be left clean */
    free(value);
    return 0;
}
