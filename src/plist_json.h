/* Property list → JSON, for showing device results through the admin API. */
#ifndef ORCHARD_PLIST_JSON_H
#define ORCHARD_PLIST_JSON_H

#include <jansson.h>

#include "plist.h"

/* New reference, NULL on allocation failure. data → base64 string, date →
 * "YYYY-MM-DDTHH:MM:SSZ" string. Depth is bounded by the parser's cap. */
json_t *plist_to_json(const plist_t *p);

#endif
