/* Secret key files (keyfile.h). */
#include "keyfile.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "util.h"

static int read_key(const char *path, const char *what, unsigned char *key, size_t want, char *err, size_t errlen)
{
    size_t len = 0;
    char *data = util_read_file(path, 4096, &len);
    if (!data) {
        util_set_err(err, errlen, "cannot read the %s %s: %s", what, path, strerror(errno));
        return -1;
    }
    int ok = len == want;
    if (ok)
        memcpy(key, data, want);
    OPENSSL_cleanse(data, len);
    free(data);
    if (!ok) {
        util_set_err(err, errlen, "the %s %s must be exactly %zu bytes (it has %zu); not replacing it", what, path,
                     want, len);
        return -1;
    }
    return 0;
}

int keyfile_load_or_create(const char *data_dir, const char *name, const char *what, unsigned char *key, size_t len,
                           char *err, size_t errlen)
{
    char *path = util_strdup_printf("%s/%s", data_dir, name);
    char *tmp = util_strdup_printf("%s/%s.new.%ld", data_dir, name, (long)getpid());
    unsigned char *fresh = malloc(len);
    int rc = -1;
    if (!path || !tmp || !fresh) {
        util_set_err(err, errlen, "out of memory");
        goto out;
    }
    if (access(path, F_OK) == 0) {
        rc = read_key(path, what, key, len, err, errlen);
        goto out;
    }
    if (RAND_bytes(fresh, (int)len) != 1) {
        util_set_err(err, errlen, "no randomness for the %s", what);
        goto out;
    }
    /* Temporary file, then link(): link fails with EEXIST when another
     * instance created the key meanwhile, and then its key wins. A rename
     * would silently replace it, and whatever that instance already made
     * with its key (pairing tokens, sealed credentials) would stop working. */
    int wrote = util_write_file(tmp, fresh, len, 0600) == 0;
    if (wrote && link(tmp, path) == 0) {
        memcpy(key, fresh, len);
        rc = 0;
    } else if (wrote && errno == EEXIST) {
        rc = read_key(path, what, key, len, err, errlen);
    } else {
        util_set_err(err, errlen, "cannot create the %s %s: %s", what, path, strerror(errno));
    }
    if (wrote)
        unlink(tmp);
out:
    if (fresh) {
        OPENSSL_cleanse(fresh, len);
        free(fresh);
    }
    free(path);
    free(tmp);
    return rc;
}
