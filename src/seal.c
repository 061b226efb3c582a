/* AES-256-GCM sealing of stored secrets (see seal.h). */
#include "seal.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "keyfile.h"
#include "util.h"

#define SEAL_VERSION 1
#define NONCE_LEN 12
#define TAG_LEN 16

int seal_key_load(const char *data_dir, const char *file, const char *label, unsigned char key[SEAL_KEY_LEN],
                  char *err, size_t errlen)
{
    return keyfile_load_or_create(data_dir, file, label, key, SEAL_KEY_LEN, err, errlen);
}

unsigned char *seal(const unsigned char key[SEAL_KEY_LEN], const char *aad, const void *plain, size_t len,
                        size_t *outlen)
{
    if (len > (size_t)1 << 20)
        return NULL;
    unsigned char *out = malloc(1 + NONCE_LEN + len + TAG_LEN);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int ok = out && c;
    int n = 0, fin = 0;
    if (ok) {
        out[0] = SEAL_VERSION;
        ok = RAND_bytes(out + 1, NONCE_LEN) == 1 &&
             EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
             EVP_EncryptInit_ex(c, NULL, NULL, key, out + 1) == 1 &&
             EVP_EncryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
             EVP_EncryptUpdate(c, out + 1 + NONCE_LEN, &n, plain, (int)len) == 1 &&
             EVP_EncryptFinal_ex(c, out + 1 + NONCE_LEN + n, &fin) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, TAG_LEN, out + 1 + NONCE_LEN + len) == 1;
    }
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        free(out);
        return NULL;
    }
    *outlen = 1 + NONCE_LEN + len + TAG_LEN;
    return out;
}

char *unseal(const unsigned char key[SEAL_KEY_LEN], const char *aad, const unsigned char *sealed, size_t len,
                 size_t *outlen)
{
    if (!sealed || len < 1 + NONCE_LEN + TAG_LEN || sealed[0] != SEAL_VERSION)
        return NULL;
    size_t clen = len - 1 - NONCE_LEN - TAG_LEN;
    char *out = malloc(clen + 1);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    int ok = out && c && EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, NULL, NULL) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_IVLEN, NONCE_LEN, NULL) == 1 &&
             EVP_DecryptInit_ex(c, NULL, NULL, key, sealed + 1) == 1 &&
             EVP_DecryptUpdate(c, NULL, &n, (const unsigned char *)aad, (int)strlen(aad)) == 1 &&
             EVP_DecryptUpdate(c, (unsigned char *)out, &n, sealed + 1 + NONCE_LEN, (int)clen) == 1 &&
             EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, TAG_LEN, (void *)(sealed + len - TAG_LEN)) == 1 &&
             EVP_DecryptFinal_ex(c, (unsigned char *)out + n, &fin) == 1;
    EVP_CIPHER_CTX_free(c);
    if (!ok) {
        if (out)
            unsealed_free(out, clen);
        return NULL;
    }
    out[clen] = '\0';
    *outlen = clen;
    return out;
}

void unsealed_free(char *p, size_t len)
{
    if (p) {
        OPENSSL_cleanse(p, len);
        free(p);
    }
}
