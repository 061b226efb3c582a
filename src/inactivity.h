/* Inactive devices ("Detecting Inactive Devices"): a periodic sweep that
 * re-pushes active enrollments not heard from for --repush-after (at most
 * once per that interval each: a device that missed a push or was offline
 * gets another chance) and flags those silent for --inactive-after as
 * inactive (silent_since, event "marked_inactive", GET /v1/devices?silent=1).
 *
 * Inactive is a flag, not an enrollment state: the state "inactive" means
 * CheckOut, and a checked-out device is refused (401). A silent device is
 * still enrolled; when it is heard from again it is served as usual and the
 * flag clears.
 *
 * Several orchard instances may share a database: the sweep runs only in
 * the instance holding the lease "inactivity-sweep" (store lease_acquire),
 * renewed every period and released on a clean stop, so another instance
 * takes over at once, or within three periods if the holder died. */
#ifndef ORCHARD_INACTIVITY_H
#define ORCHARD_INACTIVITY_H

#include <stdint.h>

#include "push.h"

typedef struct inactivity inactivity_t;

typedef struct {
    const char *db_url;
    pusher_t *pusher;         /* re-pushes go through it (coalesced like any push); outlives the sweep */
    int64_t repush_after_s;   /* 0 = no re-push */
    int64_t inactive_after_s; /* 0 = no flagging */
} inactivity_opts_t;

/* Starts the sweep thread. NULL when both intervals are 0 (nothing to do)
 * or the thread cannot start (logged). */
inactivity_t *inactivity_start(const inactivity_opts_t *o);
/* Stops the thread (a sweep in progress finishes its current batch),
 * releases the lease, frees. NULL is fine. */
void inactivity_stop(inactivity_t *x);

#endif
