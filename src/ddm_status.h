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
 *   reasons); it is not kept as a status item. A full report replaces the
 *   enrollment's declaration rows.
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

#include "store.h"

#define DDM_STATUS_MAX_BYTES (1024 * 1024)
#define DDM_STATUS_MAX_ITEMS 1000
#define DDM_STATUS_MAX_DECLS 10000
#define DDM_STATUS_MAX_NAME 256
#define DDM_STATUS_MAX_DEPTH 16

/* Parses, merges and records one status report for `enrollment_id`.
 * Returns an HTTP status: 200 recorded, 400 malformed (err names the
 * problem; nothing stored), 413 too large, 503 storage failure. */
int ddm_status_apply(store_t *s, const char *enrollment_id, const unsigned char *data, size_t len, int64_t now,
                     char *err, size_t errlen);

#endif
