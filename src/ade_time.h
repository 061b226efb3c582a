/* ISO 8601 timestamps as Apple's enrollment services write them
 * ("2013-05-09T14:30:00Z", sometimes with fractional seconds or an offset). */
#ifndef ORCHARD_ADE_TIME_H
#define ORCHARD_ADE_TIME_H

#include <stdint.h>

/* Parses into Unix seconds. 0 on success, -1 if s is not such a timestamp. */
int ade_time_parse(const char *s, int64_t *out);
/* "YYYY-MM-DDTHH:MM:SSZ" into out (21 bytes). */
void ade_time_format(int64_t t, char out[21]);

#endif
