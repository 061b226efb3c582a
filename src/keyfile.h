/* Secret keys kept as files in the data directory (the Apple Watch pairing
 * key, the ADE sealing key): created once with random bytes, mode 0600, and
 * shared by every instance that uses the same directory. */
#ifndef ORCHARD_KEYFILE_H
#define ORCHARD_KEYFILE_H

#include <stddef.h>

/* Loads DATA_DIR/NAME, exactly len bytes, creating it when missing. `what`
 * names the key in errors ("pairing key"). 0, or -1 with err. A file of the
 * wrong length is refused, never replaced (what it protects would be lost). */
int keyfile_load_or_create(const char *data_dir, const char *name, const char *what, unsigned char *key, size_t len,
                           char *err, size_t errlen);

#endif
