/* Range, format and repetition rules of schema keys (see ddm_schema_rules.h).
 *
 * Formats are POSIX extended regexes that the generator has already anchored
 * as Apple means them (whole value) and checked to compile. Each distinct
 * format is compiled on first use and kept for the life of the process:
 * worker threads validate concurrently, so the cache is guarded by a mutex;
 * regexec itself runs outside the lock, as it only reads the compiled regex
 * (glibc locks internally where it needs to). The set of formats is fixed by
 * the compiled-in tables, so the cache stays small; it is reachable until
 * exit and never freed.
 */
#include "ddm_schema_rules.h"

#include <pthread.h>
#include <regex.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"

/* ---- compiled formats ---------------------------------------------------------------- */

typedef struct compiled_format compiled_format_t;
struct compiled_format {
    compiled_format_t *next;
    char *format;
    int usable; /* regcomp succeeded */
    regex_t re;
};

static pthread_mutex_t formats_lock = PTHREAD_MUTEX_INITIALIZER;
static compiled_format_t *formats;

/* The compiled regex of `format`, compiling it on first use; NULL if out of
 * memory. Nodes are never moved or freed, so the pointer stays valid. */
static const compiled_format_t *compiled(const char *format)
{
    pthread_mutex_lock(&formats_lock);
    compiled_format_t *f = formats;
    while (f && strcmp(f->format, format) != 0)
        f = f->next;
    if (!f && (f = calloc(1, sizeof *f)) != NULL) {
        if (!(f->format = strdup(format))) {
            free(f);
            f = NULL;
        } else {
            f->usable = regcomp(&f->re, format, REG_EXTENDED | REG_NOSUB) == 0;
            if (!f->usable) /* the generator refuses these, so only a libc that differs gets here */
                log_msg(LOG_WARN, "schema format is not a POSIX extended regex here, not checked format=%s", format);
            f->next = formats;
            formats = f;
        }
    }
    pthread_mutex_unlock(&formats_lock);
    return f;
}

/* ---- checks -------------------------------------------------------------------------- */

static int fail(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int fail(char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

/* A JSON integer and real compare the same way against the bounds (a real
 * key may be given 3, an integer key never gets here with 3.5: its type
 * check refuses that first). */
static int check_range(const ds_key_t *k, const json_t *v, const char *path, char *err, size_t errlen)
{
    if ((!k->has_min && !k->has_max) || !json_is_number(v))
        return 0;
    double d = json_number_value(v);
    if ((!k->has_min || d >= k->min) && (!k->has_max || d <= k->max))
        return 0;
    char got[64];
    if (json_is_integer(v))
        snprintf(got, sizeof got, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        snprintf(got, sizeof got, "%.15g", d);
    if (k->has_min && k->has_max)
        return fail(err, errlen, "%s must be between %.15g and %.15g (got %s)", path, k->min, k->max, got);
    if (k->has_min)
        return fail(err, errlen, "%s must be at least %.15g (got %s)", path, k->min, got);
    return fail(err, errlen, "%s must be at most %.15g (got %s)", path, k->max, got);
}

static int check_format(const ds_key_t *k, const json_t *v, const char *path, char *err, size_t errlen)
{
    if (!k->format || !json_is_string(v))
        return 0;
    const compiled_format_t *f = compiled(k->format);
    if (!f)
        return fail(err, errlen, "out of memory");
    if (!f->usable)
        return 0;
    const char *s = json_string_value(v);
    /* regexec stops at a NUL, so a string with an embedded one would be
     * judged by its prefix alone: it matches no format. */
    if (strlen(s) == json_string_length(v) && regexec(&f->re, s, 0, NULL, 0) == 0)
        return 0;
    return fail(err, errlen, "%s does not match the format %s (got '%.64s')", path, k->format, s);
}

static const char *items(int n)
{
    return n == 1 ? "item" : "items";
}

/* Apple puts an array's repetition on its item spec. */
static int check_repetition(const ds_key_t *k, const json_t *v, const char *path, char *err, size_t errlen)
{
    if (!json_is_array(v) || k->type != DS_ARRAY || k->nsub == 0)
        return 0;
    const ds_key_t *item = &k->sub[0];
    size_t n = json_array_size(v);
    int below = item->rep_min > 0 && n < (size_t)item->rep_min;
    int above = item->rep_max > 0 && n > (size_t)item->rep_max;
    if (!below && !above)
        return 0;
    if (item->rep_min > 0 && item->rep_min == item->rep_max)
        return fail(err, errlen, "%s must have exactly %d %s (got %zu)", path, item->rep_min, items(item->rep_min), n);
    if (below)
        return fail(err, errlen, "%s must have at least %d %s (got %zu)", path, item->rep_min, items(item->rep_min), n);
    return fail(err, errlen, "%s must have at most %d %s (got %zu)", path, item->rep_max, items(item->rep_max), n);
}

int ddm_schema_rules_check(const ds_key_t *k, const json_t *v, const char *path, char *err, size_t errlen)
{
    if (check_range(k, v, path, err, errlen) != 0 || check_format(k, v, path, err, errlen) != 0 ||
        check_repetition(k, v, path, err, errlen) != 0)
        return -1;
    return 0;
}
