/* JSON values shared by the admin API handlers. */
#ifndef ORCHARD_API_JSON_H
#define ORCHARD_API_JSON_H

#include <stdint.h>

#include <jansson.h>

/* "YYYY-MM-DDTHH:MM:SSZ", or null for 0 (never). New reference. */
json_t *api_json_time(int64_t unix_seconds);
/* A string, or null for NULL. New reference. */
json_t *api_json_string(const char *s);

#endif
