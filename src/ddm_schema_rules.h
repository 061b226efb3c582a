/* Apple's value rules of a schema key beyond its type: `range` (numbers),
 * `format` (strings) and `repetition` (array lengths), as the generator
 * copies them from the YAML into ds_key_t. ddm_schema.c applies them while
 * walking a payload; they are separate so they can be tested on keys that
 * the current schema release does not have (no declaration uses a format or
 * a repetition yet, while mdm/profiles do). */
#ifndef ORCHARD_DDM_SCHEMA_RULES_H
#define ORCHARD_DDM_SCHEMA_RULES_H

#include <stddef.h>

#include <jansson.h>

#include "ddm_schema.h"

/* Checks `v` (already of k's type) against k's range and format, and, if it
 * is an array, its length against the repetition of k's item spec. `path`
 * names the value in messages ("Payload.MinimumLength"). 0 = holds; -1 with
 * err naming the path and the rule ("Payload.MinimumLength must be between
 * 0 and 16 (got 500)"). Thread-safe: formats are compiled once, on first
 * use, under a lock. */
int ddm_schema_rules_check(const ds_key_t *k, const json_t *v, const char *path, char *err, size_t errlen);

#endif
