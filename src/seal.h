/* Sealing ADE server-token credentials before they reach the store:
 * AES-256-GCM with a key in DATA_DIR/ade.key (32 random bytes, mode 0600,
 * created at first use). Every orchard instance sharing a database must
 * share this file (like pairing.key). The token name is bound as associated
 * data, so a sealed blob copied onto another token's row does not open. */
#ifndef ORCHARD_ADE_SEAL_H
#define ORCHARD_ADE_SEAL_H

#include <stddef.h>

#define ADE_SEAL_KEY_LEN 32
#define ADE_SEAL_KEY_FILE "ade.key"

/* Loads DATA_DIR/ade.key, creating it if missing. 0, or -1 with err. */
int ade_seal_key_load(const char *data_dir, unsigned char key[ADE_SEAL_KEY_LEN], char *err, size_t errlen);
/* version(1) | nonce(12) | ciphertext | tag(16). Heap, NULL on failure. */
unsigned char *ade_seal(const unsigned char key[ADE_SEAL_KEY_LEN], const char *aad, const void *plain, size_t len,
                        size_t *outlen);
/* The plaintext (heap, NUL-terminated after *outlen bytes; free it with
 * ade_unsealed_free), or NULL if the blob is damaged, sealed with another
 * key, or for another name. */
char *ade_unseal(const unsigned char key[ADE_SEAL_KEY_LEN], const char *aad, const unsigned char *sealed, size_t len,
                 size_t *outlen);
/* Wipes and frees an ade_unseal result. */
void ade_unsealed_free(char *p, size_t len);

#endif
