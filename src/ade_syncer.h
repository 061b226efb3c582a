/* The background ADE sync: every --ade-sync-interval, each server token is
 * synced (ade_sync_token: the first run fetches, later runs sync), in the
 * instance holding that token's lease. At start and then daily it warns
 * about tokens whose yearly renewal is due (ADE_RENEWAL_WARN_DAYS) or that
 * have expired. */
#ifndef ORCHARD_ADE_SYNCER_H
#define ORCHARD_ADE_SYNCER_H

#include "ade_sync.h"

typedef struct ade_syncer ade_syncer_t;

/* Starts the thread (env outlives it). NULL when interval_s is 0 or the
 * thread cannot start (logged). */
ade_syncer_t *ade_syncer_start(ade_env_t *env);
/* Stops (a run in progress finishes), releases the leases held, frees. */
void ade_syncer_stop(ade_syncer_t *x);

/* Logs renewal warnings for every token (also used at start without a
 * syncer). */
void ade_warn_expiry(store_t *s, int64_t now);

#endif
