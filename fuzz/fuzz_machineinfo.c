/* libFuzzer target: machineinfo_verify_and_parse (POST /enroll bodies).
 *
 * Input layout: byte 0 chooses the mode, the rest is the payload.
 *   even: the payload is the request body as a device would send it (DER,
 *         base64 or anything else): exercises CMS decoding, the structure
 *         bounds and the signature/trust checks.
 *   odd:  the payload is the signed content: the harness wraps it in a CMS
 *         SignedData made with a trusted device identity, so mutations reach
 *         the plist parser and the key/type checks behind the signature.
 * The trust store is a P-256 CA generated once at startup in a temporary
 * directory, removed as soon as the verifier has loaded it.
 *
 *   clang -g -O1 -fsanitize=fuzzer,address,undefined -Isrc fuzz/fuzz_machineinfo.c \
 *       src/machineinfo.c src/identity.c src/pki.c src/plist.c src/mdm_message.c src/util.c \
 *       $(pkg-config --cflags --libs openssl expat) -o fuzz_machineinfo
 * (fuzz/run.sh links every src file, which also works.)
 */
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/x509.h>

#include "identity.h"
#include "machineinfo.h"
#include "pki.h"

static identity_verifier_t *verifier;
static X509 *signer_cert;
static EVP_PKEY *signer_key;

static void cleanup(void)
{
    identity_verifier_free(verifier);
    X509_free(signer_cert);
    EVP_PKEY_free(signer_key);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[64], path[128];
    snprintf(dir, sizeof dir, "/tmp/orchard-fuzz-mi-XXXXXX");
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        abort();
    }
    snprintf(path, sizeof path, "%s/ca.pem", dir);
    EVP_PKEY *ca_key = pki_new_ec_key();
    X509 *ca = ca_key ? pki_issue_cert(NULL, ca_key, ca_key, "fuzz device CA", 365, PKI_USAGE_CA, NULL, 0) : NULL;
    signer_key = pki_new_ec_key();
    signer_cert = ca && signer_key
                      ? pki_issue_cert(ca, ca_key, signer_key, "fuzz device", 365, PKI_USAGE_CLIENT, NULL, 0)
                      : NULL;
    int written = ca && pki_write_cert(path, ca) == 0;
    char *err = NULL;
    verifier = written ? identity_verifier_new(path, &err) : NULL;
    unlink(path);
    rmdir(dir);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    if (!verifier || !signer_cert) {
        fprintf(stderr, "fuzz setup failed: %s\n", err ? err : "cannot create the test PKI");
        abort();
    }
    free(err);
    atexit(cleanup);
    return 0;
}

/* DER SignedData over content, attached, made with the trusted signer. */
static unsigned char *sign(const uint8_t *content, size_t len, size_t *out_len)
{
    if (len > INT_MAX)
        return NULL;
    BIO *in = BIO_new_mem_buf(len ? content : (const uint8_t *)"", (int)len);
    CMS_ContentInfo *cms = in ? CMS_sign(signer_cert, signer_key, NULL, in, CMS_BINARY) : NULL;
    unsigned char *der = NULL;
    int n = cms ? i2d_CMS_ContentInfo(cms, &der) : -1;
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    ERR_clear_error();
    if (n <= 0)
        return NULL;
    *out_len = (size_t)n;
    return der;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    const uint8_t *payload = data + 1;
    size_t len = size - 1;
    unsigned char *signed_body = NULL;
    if (data[0] & 1) {
        signed_body = sign(payload, len, &len);
        if (!signed_body)
            return 0;
        payload = signed_body;
    }
    /* A private copy of exactly len bytes: nothing may read past it. */
    uint8_t *body = malloc(len ? len : 1);
    if (!body) {
        OPENSSL_free(signed_body);
        return 0;
    }
    if (len)
        memcpy(body, payload, len);
    machineinfo_t mi;
    char err[256];
    machineinfo_result_t r = machineinfo_verify_and_parse(verifier, body, len, &mi, err, sizeof err);
    if (r == MACHINEINFO_OK) {
        /* What the server relies on after a success. */
        if (!mi.udid || !mi.serial || !mi.product || !mi.version || !mi.signer)
            abort();
        machineinfo_free(&mi);
    } else if (mi.udid || mi.signer || err[0] == '\0') {
        abort(); /* failures hand nothing back and always say why */
    }
    free(body);
    OPENSSL_free(signed_body);
    return 0;
}
