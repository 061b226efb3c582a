/* Waking devices: the APNs provider.
 *
 * Push threads ("lanes", --push-threads, default 2 on 2+ CPUs) each own a
 * libcurl multi handle and send MDM pushes over HTTP/2, many streams
 * multiplexed on few connections, authenticated with the push certificate
 * of each topic (several topics = several certificates). Worker threads
 * hand pushes over with pusher_push(), which only queues (a mutex-protected
 * map + heap shared by the lanes; a curl_multi_wakeup when the earliest due
 * time changes); each lane takes due pushes up to its share of
 * max_inflight, records outcomes in the store (batched, its own handle) and
 * they are shown per enrollment and in pusher_status(). With libcurl 7.88 one
 * lane is CPU-bound at ~16,000 pushes/s (per-request setup, one send() per
 * request, every curl_multi_perform visiting all its transfers); lanes
 * scale that across cores.
 *
 * Coalescing: a push waits --push-coalesce-ms in the queue, and every
 * further request for the same enrollment meanwhile joins it, so a burst of
 * enqueues gives one push. A request arriving while that push is in flight
 * schedules one more (the device may already have polled).
 *
 * Certificate rotation: the push thread checks the certificate and key files
 * once a second and reloads a topic when either changed (mtime, size or
 * inode) and the pair is valid; in-flight pushes finish with the old one. */
#ifndef ORCHARD_PUSH_H
#define ORCHARD_PUSH_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "store.h"

typedef struct pusher pusher_t;

typedef struct {
    const char *db_url;              /* where outcomes are recorded (the push thread opens its own handle) */
    const char *const *cert_paths;   /* one per topic */
    const char *const *key_paths;
    size_t ntopics;                  /* 0: push not configured, every push reports so */
    const char *base_url;            /* APNs base URL, e.g. APNS_URL_PRODUCTION */
    const char *ca_file;             /* verifies the APNs server; NULL = system store */
    long expiration_s;               /* apns-expiration = now + this; 0 = "0" (deliver once) */
    int coalesce_ms;
    int timeout_s;                   /* one request */
    int attempts;                    /* for retryable failures */
    int max_inflight;                /* concurrent streams in total; 0 = default (1000) */
    int threads;                     /* push threads, each with its own connections; 0 = default (2 on 2+ CPUs) */
} pusher_opts_t;

/* Loads each topic's certificate (problems are logged and reported in the
 * status, not fatal: a missing DIR/push.pem may be imported later) and
 * starts the push thread. NULL only when the thread or memory fails. */
pusher_t *pusher_new(const pusher_opts_t *o);
/* Stops the thread: in-flight pushes get a short grace period; pushes still
 * not sent are recorded as failed ("server shutting down"). Frees all. */
void pusher_free(pusher_t *p);

/* Queues the MDM wake-up for one enrollment. 0 = queued; -1 with the reason
 * in err (no push token, token invalid, push not configured, no certificate
 * for the topic, certificate expired or refused by APNs). */
int pusher_push(pusher_t *p, const enrollment_t *e, char *err, size_t errlen);

/* {"configured", "url", "queued", "in_flight", "topics": [...]} for the
 * admin API; per topic its certificate file, expiry, state (ready, missing,
 * invalid, expired, rejected), last error and counters. */
json_t *pusher_status(pusher_t *p);

typedef struct {
    uint64_t accepted, failed, token_invalid, retried;
    size_t queued, in_flight;
} pusher_stats_t;
void pusher_stats(pusher_t *p, pusher_stats_t *out);

#endif
