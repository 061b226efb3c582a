/* Checks property lists against Apple's device-management schema files
 * (apple/device-management: the YAML files under mdm/profiles and friends).
 *
 * The YAML files follow one regular shape:
 *   payload: { payloadtype: X, ... }
 *   payloadkeys:
 *   - key: Name
 *     type: <string>|<integer>|<boolean>|<array>|<dictionary>|<data>|<date>|<real>|<any>
 *     presence: required|optional
 *     rangelist: [allowed values]      range: {min, max}      format: regex
 *     repetition: {min, max}           (on an array's item: the array's length)
 *     subkeys: [...]  dictionary keys ("ANY" = any key), or an array's item
 *     assettypes: [asset declaration types the value refers to] (declarations)
 *   payload.supportedOS: { iOS: { introduced: '17.0' }, ..., watchOS: {...} }
 * A small YAML reader handles exactly what these files use: block mappings
 * and sequences, plain/quoted/multi-line and block scalars, anchors and
 * aliases; anything else is a load error, never silently skipped.
 *
 * Checks: every key present is in the schema, types match, required keys
 * are present, rangelist/range/format/repetition hold, recursively.
 */
#ifndef ORCHARD_SCHEMA_CHECK_H
#define ORCHARD_SCHEMA_CHECK_H

#include <stddef.h>

#include "plist.h"

typedef struct schema_key schema_key_t;
struct schema_key {
    char *name;
    char *type; /* "string", "integer", ... or "any" */
    int required;
    char **rangelist;
    size_t nrange;
    int has_min, has_max;
    double min, max;
    char *format;
    int rep_min, rep_max; /* -1 when not given */
    char **assettypes;    /* declarations: the value names asset declarations of these types */
    size_t nassettypes;
    schema_key_t *sub;
    size_t nsub;
};

/* The operating systems of supportedOS, in this order. */
enum { SCHEMA_IOS, SCHEMA_MACOS, SCHEMA_TVOS, SCHEMA_VISIONOS, SCHEMA_WATCHOS, SCHEMA_NOS };
extern const char *const schema_os_names[SCHEMA_NOS]; /* "iOS", "macOS", ... as the YAML spells them */

typedef struct {
    char *path;
    char *payloadtype;     /* payload.payloadtype, or payload.requesttype for commands */
    char *requesttype;     /* payload.requesttype (commands, check-in, DDM protocol); NULL if absent */
    char *declarationtype; /* payload.declarationtype (declarations); NULL if absent */
    char *statusitemtype;  /* payload.statusitemtype (status items); NULL if absent */
    int has_supported_os;  /* payload.supportedOS present */
    char *introduced[SCHEMA_NOS]; /* payload.supportedOS.<OS>.introduced ("n/a" included); NULL if absent */
    schema_key_t *keys;
    size_t nkeys;
} schema_t;

/* Loads one YAML schema file. NULL with a reason ("file:line: ...") on error. */
schema_t *schema_load(const char *path, char *err, size_t errlen);
void schema_free(schema_t *s);

typedef struct {
    char *text;   /* one problem per line */
    size_t len, cap;
    int problems;
    int keys_checked;    /* values compared against a schema entry */
    int schemas_used;    /* schema files applied */
} schema_report_t;

void schema_report_free(schema_report_t *r);

/* Checks `dict` against the union of the given schemas' payload keys (the
 * first that defines a key wins; required keys of all must be present).
 * `where` prefixes problem lines. Returns the number of new problems. */
int schema_check_dict(const schema_t *const *schemas, size_t n, const plist_t *dict, const char *where,
                      schema_report_t *r);

/* A whole configuration profile: the top level against DIR/TopLevel.yaml,
 * each PayloadContent item against DIR/CommonPayloadKeys.yaml plus the
 * file of its PayloadType (DIR/<PayloadType>.yaml, else the file whose
 * payloadtype matches). A payload type with no schema is a problem. Returns
 * the number of problems (-1 if a schema file cannot be loaded). */
int schema_check_profile(const char *dir, const plist_t *profile, schema_report_t *r);

#endif
