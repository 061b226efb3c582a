/* Sealing secrets before they reach the store: AES-256-GCM with a key in a
 * file of the data directory (32 random bytes, mode 0600, created at first
 * use). Every orchard instance sharing a database must share the key files
 * (like pairing.key). A name is bound as associated data, so a sealed blob
 * copied onto another row does not open.
 *
 * Users: ADE server-token credentials (ade.key, ade_sync.c) and escrowed
 * bootstrap tokens (escrow.key, mdm_bootstrap.c). */
#ifndef ORCHARD_SEAL_H
#define ORCHARD_SEAL_H

#include <stddef.h>

#define SEAL_KEY_LEN 32

/* Loads DATA_DIR/FILE, creating it if missing; `label` names the key in
 * errors. 0, or -1 with err. */
int seal_key_load(const char *data_dir, const char *file, const char *label, unsigned char key[SEAL_KEY_LEN],
                  char *err, size_t errlen);
/* version(1) | nonce(12) | ciphertext | tag(16). Heap, NULL on failure
 * (or a plaintext over 1 MiB). */
unsigned char *seal(const unsigned char key[SEAL_KEY_LEN], const char *aad, const void *plain, size_t len,
                    size_t *outlen);
/* The plaintext (heap, NUL-terminated after *outlen bytes; free it with
 * unsealed_free), or NULL if the blob is damaged, sealed with another key,
 * or for another name. */
char *unseal(const unsigned char key[SEAL_KEY_LEN], const char *aad, const unsigned char *sealed, size_t len,
             size_t *outlen);
/* Wipes and frees an unseal result. */
void unsealed_free(char *p, size_t len);

#endif
