/* Apple Watch enrollment: what the GetToken handler, the watch endpoint,
 * the check-in lifecycle hooks and the admin API share (watch_lifecycle.c).
 * The flow and its checks are described in docs/apple-watch-enrollment.md.
 */
#ifndef ORCHARD_WATCH_H
#define ORCHARD_WATCH_H

#include <stddef.h>

#include "push.h"
#include "store.h"

#define WATCH_ENROLLMENT_TYPE "com.apple.configuration.watch.enrollment"
#define WATCH_PAIR_PROFILE_ISSUED "profile_issued"
#define WATCH_PAIR_ENROLLED "enrolled"
#define WATCH_PAIR_PHONE_GONE "phone_gone"

/* Whether `phone` may vouch for a watch now: a device-channel enrollment
 * that is active, supervised (IsSupervised true) and, when
 * require_enabled, has a com.apple.configuration.watch.enrollment
 * declaration among its effective declarations. Returns 200, 403 (why says
 * which condition failed) or 503 (storage). */
int watch_phone_eligible(store_t *s, const char *phone, int require_enabled, char *why, size_t whylen);

/* Asks a device whether it is supervised: queues DeviceInformation with
 * Queries [IsSupervised] (CommandUUID "orchard-supervision-<UUID>") and
 * pushes (pusher may be NULL), unless orchard already knows the answer.
 * Used when watch enrollment is enabled for a phone and when GetToken meets
 * a phone whose supervision was never reported, so an admin does not have
 * to send the query by hand. 1 queued, 0 not needed, -1 failed (logged). */
int watch_ask_supervision(store_t *s, pusher_t *pusher, const char *phone);

/* 1 if the phone's effective declarations include the watch.enrollment
 * configuration, 0 if not, -1 on storage failure. */
int watch_enrollment_enabled(store_t *s, const char *phone);

/* 1 if the enrollment is an Apple Watch: a watch pairing exists for it or
 * its ProductName starts with "Watch". 0 if not, -1 on storage failure. */
int watch_is_watch(store_t *s, const enrollment_t *e);

/* After a successful Authenticate: a watch with a pairing becomes
 * "enrolled". Failures are logged, never fatal (the device is enrolled
 * either way). */
void watch_on_authenticate(store_t *s, const char *udid);

/* After a phone's CheckOut, or its acknowledged EraseDevice (a wiped phone
 * sends no CheckOut; mdm_connect.c learns the RequestType from the
 * exchange): each of its watches gets a "phone_unenrolled" event
 * ({"phone_udid", "reason"}). Logged, never fatal. */
void watch_on_phone_gone(store_t *s, const char *phone, const char *why);

/* The state shown for a pairing: the stored "profile_issued" / "enrolled",
 * or "phone_gone" when the phone has checked out since the pairing was made
 * (or its enrollment no longer exists). The store keeps only the first two
 * states (store.h), so this one is derived from the phone's checked_out_at. */
const char *watch_pairing_state(store_t *s, const watch_pairing_t *p);

#endif
