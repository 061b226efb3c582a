/* Small shared helpers: time, random identifiers, encodings. */
#ifndef ORCHARD_UTIL_H
#define ORCHARD_UTIL_H

#include <stddef.h>
#include <stdint.h>

int64_t util_now(void);       /* Unix seconds */
int64_t util_now_us(void);    /* monotonic microseconds, for latency */

/* Upper-case RFC 4122 version 4 UUID; out must hold 37 bytes. 0 or -1. */
int util_uuid4(char out[37]);
/* Lower-case hex of n random bytes; out must hold 2n+1 bytes. 0 or -1. */
int util_random_hex(char *out, size_t nbytes);

/* Standard base64 (RFC 4648) without line breaks. Heap result, NULL on
 * allocation failure. */
char *util_base64_encode(const unsigned char *in, size_t len);
/* Decodes standard base64, ignoring ASCII whitespace. Returns a heap buffer
 * (NUL-terminated after the *outlen decoded bytes), or NULL on invalid input. */
unsigned char *util_base64_decode(const char *in, size_t len, size_t *outlen);

void util_hex(const unsigned char *in, size_t len, char *out); /* out: 2*len+1 */

/* Constant-time string equality (length is not secret). */
int util_secure_streq(const char *a, const char *b);

/* Reads a whole file (at most max bytes). Heap, NUL-terminated. NULL on error. */
char *util_read_file(const char *path, size_t max, size_t *len);
/* Writes all of len bytes to fd, retrying after EINTR. 0 or -1. */
int util_write_all(int fd, const void *data, size_t len);
/* Writes data to path atomically (temp file + rename) with the given mode. */
int util_write_file(const char *path, const void *data, size_t len, int mode);

/* Writes a one-line reason into a caller's buffer (err may be NULL). */
void util_set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Safe formatted heap string; NULL on failure. */
char *util_strdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
