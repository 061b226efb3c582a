/* DDM status channel: a device's StatusReport (the JSON in the `status`
 * check-in's Data) turned into what the store keeps.
 *
 * - Shape: an object with StatusItems (object) and Errors (array), optional
 *   FullReport (boolean); anything else is refused.
 * - StatusItems is nested by the dot-separated segments of status item names
 *   ("device": {"operating-system": {"version": ...}}). It is flattened to
 *   one row per status item: a path that names a status item Apple defines
 *   (ddm_status_item_known) is one item whatever its value; a path that does
 *   not and whose value is an object is descended into; any other value is
 *   kept under its dotted path (a newer OS may report items orchard's schema
 *   snapshot does not know).
 * - Array items are incremental unless FullReport: elements with
 *   "_removed": true delete the element with that "identifier" from the
 *   previously stored value, other elements replace or add by identifier.
 *   A full report replaces the value (removal markers dropped).
 * - management.declarations becomes per-declaration rows (active, valid,
 *   reasons); it is not kept as a status item. Its four arrays are required
 *   and have no removal markers: the device always lists every declaration
 *   it holds, so a report carrying it replaces the enrollment's declaration
 *   rows (a declaration the device dropped disappears), as does a full
 *   report.
 * - Errors, when non-empty, go to the event log.
 *
 * Limits: DDM_STATUS_MAX_BYTES decoded (413 above it), DDM_STATUS_MAX_ITEMS
 * status items, DDM_STATUS_MAX_DECLS declaration rows, item names up to
 * DDM_STATUS_MAX_NAME octets, nesting up to DDM_STATUS_MAX_DEPTH levels.
 */
#ifndef ORCHARD_DDM_STATUS_H
#define ORCHARD_DDM_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

#define DDM_STATUS_MAX_BYTES (1024 * 1024)
#define DDM_STATUS_MAX_ITEMS 1000
#define DDM_STATUS_MAX_DECLS 10000
#define DDM_STATUS_MAX_NAME 256
#define DDM_STATUS_MAX_DEPTH 16

/* One status item of a parsed report. */
typedef struct {
    char *name;  /* dotted status item name */
    json_t *value; /* own reference */
    int keyed;   /* a non-empty array of objects with string "identifier"s: merged by identifier */
} ddm_status_value_t;

/* A status report parsed and flattened, before it meets what is stored. */
typedef struct {
    ddm_status_value_t *items;
    size_t nitems, items_cap;
    ddm_decl_status_t *decls; /* updated_at left 0 */
    size_t ndecls, decls_cap;
    int full_report;
    int has_declarations; /* management.declarations was reported: decls is the device's whole list */
    char *errors_json;    /* the Errors array as compact JSON; NULL when empty */
} ddm_status_report_t;

/* Parses and flattens a StatusReport without touching storage (shape,
 * limits, names, declaration rows, "_removed" types, Errors). Returns an
 * HTTP status: 200 (*out filled; free with ddm_status_report_free), 400
 * malformed or 413 too large (err names the problem), 503 out of memory.
 * *out is always safe to free. */
int ddm_status_parse(const unsigned char *data, size_t len, ddm_status_report_t *out, char *err, size_t errlen);
void ddm_status_report_free(ddm_status_report_t *r);

/* The new value of a keyed array item: `base` (the stored elements, or an
 * empty array; consumed) with `update`'s elements applied by identifier
 * ("_removed": true deletes, others replace or add). New reference, NULL on
 * out of memory. `update` must be keyed (ddm_status_value_t.keyed). */
json_t *ddm_status_merge_array(json_t *base, const json_t *update);

/* Parses, merges and records one status report for `enrollment_id`.
 * Returns an HTTP status: 200 recorded, 400 malformed (err names the
 * problem; nothing stored), 413 too large, 503 storage failure. */
int ddm_status_apply(store_t *s, const char *enrollment_id, const unsigned char *data, size_t len, int64_t now,
                     char *err, size_t errlen);

#endif
