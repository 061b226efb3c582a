/* Property lists (XML format) on top of expat.
 *
 * Parsing builds a small tree. It is strict: only the plist DTD's elements,
 * one root value, dict keys must be followed by a value, a key may appear only
 * once per dict (duplicates are refused), integers must fit in int64, base64
 * in <data> must be valid, and nesting depth (dict/array levels) and node
 * count (values) are capped (PLIST_MAX_DEPTH, PLIST_MAX_NODES) so hostile
 * input can neither overflow the stack nor exhaust memory. DOCTYPE is allowed,
 * but entity declarations and external entities are refused.
 *
 * Writing produces canonical Apple-style XML with a DOCTYPE.
 */
#ifndef ORCHARD_PLIST_H
#define ORCHARD_PLIST_H

#include <stddef.h>
#include <stdint.h>

#define PLIST_MAX_DEPTH 64
#define PLIST_MAX_NODES 100000

typedef enum {
    PLIST_DICT,
    PLIST_ARRAY,
    PLIST_STRING,
    PLIST_INTEGER,
    PLIST_REAL,
    PLIST_BOOL,
    PLIST_DATE, /* seconds since the Unix epoch */
    PLIST_DATA
} plist_type_t;

typedef struct plist plist_t;

/* Parses `len` bytes. On failure returns NULL and, if errbuf is non-NULL,
 * writes a one-line reason (e.g. "nesting deeper than 64 levels", "line 3:
 * unexpected element <foo>"); on success errbuf is set to "". */
plist_t *plist_parse(const char *buf, size_t len, char *errbuf, size_t errlen);
void plist_free(plist_t *p);

plist_type_t plist_type(const plist_t *p);
const char *plist_type_name(plist_type_t t);

/* Constructors: a new detached node (NULL on allocation failure). */
plist_t *plist_new_dict(void);
plist_t *plist_new_array(void);
plist_t *plist_new_string(const char *s);
plist_t *plist_new_integer(int64_t v);
plist_t *plist_new_real(double v);
plist_t *plist_new_bool(int v);
plist_t *plist_new_date(int64_t unix_seconds);
plist_t *plist_new_data(const unsigned char *d, size_t len);

/* Dict: set takes ownership of `value` (replaces an existing key). Returns 0
 * on success, -1 on failure (value freed). */
int plist_dict_set(plist_t *dict, const char *key, plist_t *value);
plist_t *plist_dict_get(const plist_t *dict, const char *key); /* NULL if absent or not a dict */
size_t plist_dict_size(const plist_t *dict);
/* Iteration by index: key and value of entry i (0 <= i < size). */
const char *plist_dict_key_at(const plist_t *dict, size_t i);
plist_t *plist_dict_value_at(const plist_t *dict, size_t i);

/* Array: append takes ownership of `value`. */
int plist_array_append(plist_t *array, plist_t *value);
size_t plist_array_size(const plist_t *array);
plist_t *plist_array_get(const plist_t *array, size_t i);

/* Scalar accessors. They return NULL / 0 for a node of another type; callers
 * check plist_type() first when the type matters. */
const char *plist_string(const plist_t *p);
int64_t plist_integer(const plist_t *p);
double plist_real(const plist_t *p);
int plist_bool(const plist_t *p);
int64_t plist_date(const plist_t *p);
const unsigned char *plist_data(const plist_t *p, size_t *len);

/* Convenience lookups on a dict. *_get_string returns NULL if the key is
 * absent or its value is not a string. */
const char *plist_dict_get_string(const plist_t *dict, const char *key);
const unsigned char *plist_dict_get_data(const plist_t *dict, const char *key, size_t *len);

/* Serializes to XML. Returns a heap buffer (NUL-terminated; *len excludes the
 * NUL; len may be NULL), NULL on allocation failure or if a date lies outside
 * years 0000-9999 (the XML date form cannot express it). */
char *plist_to_xml(const plist_t *p, size_t *len);

#endif
