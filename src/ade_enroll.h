/* Automated Device Enrollment, the device side: the configuration URL
 * (POST /enroll/ade, ade_enroll.c) that orchard's ADE profiles carry as
 * `url`. The handler itself is declared in app.h with the others. */
#ifndef ORCHARD_ADE_ENROLL_H
#define ORCHARD_ADE_ENROLL_H

#include "ade_min_os.h"
#include "store.h"

/* Settings-table name prefix of the "enrolled through ADE" fact, followed
 * by the UDID (see ade_enroll.c). */
#define ADE_ENROLLED_SETTING "ade.enrolled."

/* After a successful Authenticate of a device channel (mdm_checkin.c): if
 * the device got its profile from the configuration URL, records that it is
 * supervised (unless its ADE profile says is_supervised false) and clears a
 * stale await-configuration flag (re-enrollment starts over). Logged, never
 * fatal. */
void ade_on_authenticate(store_t *s, const char *udid);

#endif
