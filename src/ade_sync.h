/* Automated Device Enrollment: what a running server knows about Apple's
 * services (ade_env_t: seal key, client options, sync cadence, this
 * instance's lease holder id) and one sync run of a server token:
 *
 *   1. the lease "ade-sync:<token>" (store lease_acquire), so of several
 *      instances on one database only one syncs a token (it keeps the lease
 *      by renewing it every run; another takes over when it lapses);
 *   2. GET /account once, for the server name shown to the admin;
 *   3. without a cursor, a full fetch (POST /server/devices, pages of
 *      page_limit until more_to_follow is false; the cursor is kept only
 *      when the fetch completed); with one, POST /devices/sync pages, the
 *      cursor saved after each page; INVALID/EXPIRED/EXHAUSTED_CURSOR or
 *      CURSOR_REQUIRED forget it (ade_token_reset_cursor) and fetch afresh;
 *   4. each page is validated as a whole before anything is stored
 *      (ade_devices_apply resolves duplicates by serial and op_date);
 *   5. devices that are new to orchard get the token's default profile
 *      (PUT /profile/devices; ade_device_set_profile for each SUCCESS).
 * The outcome lands in the token's sync state (last_error for the admin). */
#ifndef ORCHARD_ADE_SYNC_H
#define ORCHARD_ADE_SYNC_H

#include <pthread.h>
#include <stdint.h>

#include <jansson.h>

#include "ade_client.h"
#include "seal.h"
#include "store.h"

#define ADE_RENEWAL_WARN_DAYS 30
/* The key that seals token credentials (seal.h), in the data directory. */
#define ADE_SEAL_KEY_FILE "ade.key"

typedef struct ade_env_s {
    const char *data_dir;
    const char *db_url;
    const char *public_url;
    unsigned char seal_key[SEAL_KEY_LEN];
    ade_client_opts_t client; /* strings borrowed from the configuration */
    int64_t interval_s;       /* background sync cadence; 0 = only on demand */
    int page_limit;           /* devices per fetch/sync page (Apple: at most 1000) */
    char holder[128];         /* this instance's lease holder id */
    pthread_mutex_t mu;       /* one sync at a time in this process */
} ade_env_t;

/* Loads (or creates) the seal key and fills the holder id. 0, or -1 with
 * err. The caller sets client options, interval and page_limit. */
int ade_env_init(ade_env_t *env, const char *data_dir, const char *db_url, const char *public_url, char *err,
                 size_t errlen);
void ade_env_clear(ade_env_t *env);

/* Token names: [A-Za-z0-9._-], 1..64. */
int ade_token_name_valid(const char *name);

/* A client for a stored token (its credentials unsealed). NULL with err
 * (STORE_NOTFOUND in *store_rc when the token does not exist). */
ade_client_t *ade_env_client(ade_env_t *env, store_t *s, const char *name, int *store_rc, char *err, size_t errlen);

/* Seals and stores imported credentials under name. STORE_* code. */
int ade_token_store(ade_env_t *env, store_t *s, const char *name, const ade_creds_t *creds, int64_t now);

/* Asks Apple for the account and records it (or the error) in the token's
 * state. ADE_OK or the failure. */
ade_rc_t ade_refresh_account(ade_env_t *env, store_t *s, const char *name, ade_error_t *err);

/* One device record of a fetch, sync or details answer into d (strings
 * borrowed from o). -1 with why when it is not a valid record. */
int ade_device_from_json(json_t *o, const char *serial, const char *token_name, ade_device_t *d, char *why,
                         size_t whylen);

typedef enum { ADE_SYNC_DONE, ADE_SYNC_FAILED, ADE_SYNC_LEASED, ADE_SYNC_NO_TOKEN } ade_sync_outcome_t;

typedef struct {
    ade_sync_outcome_t outcome;
    int full_fetch;      /* a fetch ran (first run, or after a cursor error) */
    int cursor_reset;    /* a cursor error made it start over */
    int pages;
    size_t records;      /* device records Apple sent */
    size_t applied;      /* records that changed the store */
    size_t added;        /* devices new to orchard */
    size_t assigned;     /* of those, default profile assigned */
    int sessions;        /* /session requests */
    ade_error_t error;   /* when FAILED */
} ade_sync_report_t;

/* One sync run of token `name` (see above). */
void ade_sync_token(ade_env_t *env, store_t *s, const char *name, ade_sync_report_t *rep);

#endif
