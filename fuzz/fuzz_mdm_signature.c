/* libFuzzer target: identity_from_mdm_signature.
 *
 * Input layout: byte 0 picks the split point (proportionally) between the
 * header part and the request body that follow it:
 *   header = data[1 .. 1+split), body = data[1+split .. size),
 *   split  = (data[0] & 0x7f) * (size - 1) / 127.
 * Bit 7 of byte 0 selects how the header part is used: clear, it is the
 * Mdm-Signature text as sent (exercises base64 handling); set, it is raw
 * DER that the harness base64-encodes first, so that mutations land in the
 * CMS structure itself instead of mostly producing invalid base64.
 * The trust store is a P-256 CA generated once at startup in a temporary
 * directory (removed as soon as the verifier is loaded).
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc \
 *       fuzz/fuzz_mdm_signature.c src/identity.c src/pki.c src/util.c \
 *       $(pkg-config --cflags --libs openssl) -o fuzz_mdm_signature
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
#include "util.h"

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
    if (size < 1)
        return 0;
    size_t rest = size - 1;
    size_t split = (size_t)(data[0] & 0x7f) * rest / 127;
    char *header;
    if (data[0] & 0x80) {
        header = util_base64_encode(data + 1, split);
    } else {
        header = malloc(split + 1);
        if (header) {
            memcpy(header, data + 1, split);
            header[split] = '\0';
        }
    }
    if (!header)
        return 0;
    /* Copy the body so ASan sees reads past its end. */
    size_t body_len = rest - split;
    unsigned char *body = malloc(body_len ? body_len : 1);
    if (!body) {
        free(header);
        return 0;
    }
    memcpy(body, data + 1 + split, body_len);

    char reason[256];
    reason[0] = '\0';
    X509 *signer = identity_from_mdm_signature(verifier, header, body, body_len, reason, sizeof reason);
    if (signer) {
        char hex[65];
        pki_cert_sha256_hex(signer, hex);
        X509_free(signer);
    } else if (reason[0] == '\0') {
        abort(); /* every failure must say why */
    }
    if (ERR_peek_error() != 0)
        abort(); /* the error queue must be left clean */
    free(body);
    free(header);
    return 0;
}
