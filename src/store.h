/* Storage interface: everything orchard keeps durably.
 *
 * Protocol handlers talk only to this interface; each backend (SQLite now,
 * PostgreSQL next) implements `struct store_ops`. A store_t handle is used by
 * one thread at a time: the server opens one handle per worker thread.
 *
 * Return convention for every operation:
 *   STORE_OK (0)        success
 *   STORE_NOTFOUND (1)  the thing asked for does not exist (or is not in the
 *                       state the operation needs, where documented)
 *   STORE_CONFLICT (2)  a uniqueness rule would be broken (e.g. command UUID)
 *   STORE_ERR (-1)      backend failure; store_errmsg() says why
 *
 * All strings passed in are borrowed; all strings/buffers handed back in the
 * *_t structs are heap copies owned by the caller and released with the
 * matching *_free() function. Times are Unix seconds (int64_t).
 */
#ifndef ORCHARD_STORE_H
#define ORCHARD_STORE_H

#include <stddef.h>
#include <stdint.h>

enum { STORE_ERR = -1, STORE_OK = 0, STORE_NOTFOUND = 1, STORE_CONFLICT = 2 };

/* Enrollment lifecycle. */
#define ENR_STATE_AUTHENTICATED "authenticated" /* Authenticate seen, no TokenUpdate yet */
#define ENR_STATE_ACTIVE "active"               /* TokenUpdate seen: managed */
#define ENR_STATE_INACTIVE "inactive"           /* CheckOut (history kept) */

/* Per-target command states. "queued" and "NotNow" are still pending. */
#define CMD_STATUS_QUEUED "queued"
#define CMD_STATUS_NOTNOW "NotNow"
#define CMD_STATUS_ACKNOWLEDGED "Acknowledged"
#define CMD_STATUS_ERROR "Error"
#define CMD_STATUS_FORMAT_ERROR "CommandFormatError"
#define CMD_STATUS_CANCELLED "cancelled"

typedef struct store store_t;

/* One enrollment: a device channel (id = UDID, or EnrollmentID for a user
 * enrollment) or a user channel (id = "<device id>:<user id>"). */
typedef struct {
    char *id;
    char *device_id;  /* the device-channel enrollment this belongs to (== id for a device channel) */
    char *udid;       /* may be NULL for user enrollments */
    char *channel;    /* "device" or "user" */
    char *topic;
    char *serial_number, *model, *model_name, *product_name;
    char *os_version, *build_version, *device_name, *imei, *meid;
    char *user_id, *user_short_name, *user_long_name; /* user channel only */
    char *cert_sha256; /* hex SHA-256 of the bound identity certificate DER */
    char *state;       /* ENR_STATE_* */
    unsigned char *push_token;
    size_t push_token_len;
    char *push_magic;
    unsigned char *unlock_token;
    size_t unlock_token_len;
    int64_t created_at, updated_at, last_seen_at;
    int64_t authenticated_at, token_updated_at, checked_out_at;
    /* Latest APNs push (schema 3). last_push_id: apns-id of the latest
     * accepted push; last_push_error: why the latest push failed (NULL when it
     * was accepted); push_token_invalid: APNs called the token Unregistered
     * or BadDeviceToken, so no push is sent until the next TokenUpdate. */
    int64_t last_push_at;
    char *last_push_id;
    char *last_push_error;
    int push_token_invalid;
    /* Inactive devices (schema 4). silent_since: when the enrollment was
     * flagged inactive for not being heard from (inactive_mark), 0 if not
     * flagged; a flag, not a state: the device stays enrolled and the flag
     * clears the next time it is heard from (touch, authenticate,
     * token_update, checkout). last_repush_at: the latest re-push of a
     * silent enrollment (repush_claim). */
    int64_t silent_since;
    int64_t last_repush_at;
} enrollment_t;

/* TokenUpdate content. */
typedef struct {
    const char *topic;
    const unsigned char *push_token;
    size_t push_token_len;
    const char *push_magic;
    const unsigned char *unlock_token; /* NULL: keep any stored unlock token */
    size_t unlock_token_len;
    /* user channel only; ignored for device channel */
    const char *user_id, *user_short_name, *user_long_name;
} token_update_t;

/* A command as enqueued: stored once however many targets it has. */
typedef struct {
    char *uuid;
    char *request_type;
    unsigned char *body; /* the raw command plist, sent to devices verbatim */
    size_t body_len;
    int64_t created_at;
} command_t;

/* One target's view of a command. */
typedef struct {
    char *command_uuid;
    char *enrollment_id;
    char *request_type;
    char *status;             /* CMD_STATUS_* */
    unsigned char *result;    /* raw plist of the latest report, NULL if none */
    size_t result_len;
    char *error_chain_json;   /* JSON array text, NULL if none */
    int64_t queued_at, updated_at;
} command_target_t;

/* What a device reported on /mdm/connect for one command. */
typedef struct {
    const char *command_uuid;
    const char *status; /* Acknowledged, Error, CommandFormatError or NotNow */
    const unsigned char *raw;
    size_t raw_len;
    const char *error_chain_json; /* may be NULL */
} command_report_t;

typedef struct {
    const char *state;  /* NULL = any */
    const char *model;  /* exact match on model or product_name; NULL = any */
    const char *serial; /* NULL = any */
    const char *after;  /* keyset paging: ids greater than this; NULL = from start */
    int limit;          /* 1..1000 */
    int silent;         /* 0 = any; 1 = only flagged inactive (silent_since set); -1 = only not flagged */
} enrollment_filter_t;

typedef struct {
    int64_t id;
    int64_t at;
    char *enrollment_id;
    char *kind;
    char *detail; /* JSON object text */
} store_event_t;

/* A device identity certificate issued by orchard's CA (SCEP). */
typedef struct {
    char *serial;        /* lower-case hex, no leading zeros beyond one byte */
    char *subject;       /* one line, RFC 2253 */
    char *enrollment_id; /* device the one-time challenge was bound to; NULL for the static challenge */
    char *sha256;        /* hex SHA-256 of the DER */
    int64_t not_before, not_after, issued_at;
    int64_t revoked_at;  /* 0 while valid */
} issued_cert_t;

/* The outcome of one APNs push (push_results_record). */
typedef struct {
    const char *enrollment_id;
    const unsigned char *push_token; /* the token the push went to */
    size_t push_token_len;
    const char *apns_id;             /* accepted: APNs' apns-id (may be NULL); failed: NULL */
    const char *error;               /* NULL = accepted; otherwise why it failed */
    int token_invalid;               /* APNs rejected the token itself (410 / BadDeviceToken) */
    int64_t at;
} push_result_t;

typedef int (*enrollment_cb)(void *ctx, const enrollment_t *e);          /* non-zero stops */
typedef int (*command_target_cb)(void *ctx, const command_target_t *t); /* non-zero stops */
typedef int (*event_cb)(void *ctx, const store_event_t *ev);                   /* non-zero stops */
typedef int (*issued_cert_cb)(void *ctx, const issued_cert_t *c);           /* non-zero stops */

struct store_ops {
    const char *name;
    void (*close)(store_t *s);
    const char *(*errmsg)(store_t *s);

    /* Enrollments */
    int (*enrollment_get)(store_t *s, const char *id, enrollment_t *out);
    /* Finds the device-channel enrollment bound to this certificate. */
    int (*enrollment_by_cert)(store_t *s, const char *cert_sha256, enrollment_t *out);
    /* Authenticate: insert or update the device-channel enrollment with the
     * identity fields of `e` (id, udid, topic, device info, cert_sha256).
     * A new or inactive enrollment becomes "authenticated" and any command
     * still pending for it is cancelled (a re-enrolled device must not run
     * stale commands); an active one stays active. Writes an event. */
    int (*authenticate)(store_t *s, const enrollment_t *e, int64_t now);
    /* TokenUpdate: stores push info and makes the enrollment active. For a
     * user channel (id != device_id) the enrollment is created if missing.
     * STORE_NOTFOUND if the device-channel enrollment does not exist. */
    int (*token_update)(store_t *s, const char *id, const char *device_id,
                        const token_update_t *t, int64_t now);
    /* CheckOut: marks the device enrollment and its user channels inactive. */
    int (*checkout)(store_t *s, const char *id, int64_t now);
    /* Records that the enrollment was heard from (cheap; may be skipped by
     * callers when last_seen_at is recent). */
    int (*touch)(store_t *s, const char *id, int64_t now);
    int (*enrollment_list)(store_t *s, const enrollment_filter_t *f, enrollment_cb cb, void *ctx);
    int (*enrollment_count)(store_t *s, const char *state, int64_t *out);

    /* Commands */
    /* Stores `cmd` once and queues it for each of ids[0..n). Per id, status[i]
     * is set to STORE_OK or STORE_NOTFOUND (unknown enrollment). If no id is
     * known nothing is stored and STORE_NOTFOUND is returned. STORE_CONFLICT
     * if the UUID already exists (nothing stored). */
    int (*command_enqueue)(store_t *s, const command_t *cmd, const char *const *ids, size_t n,
                           int *status, int64_t now);
    /* One device exchange step, in one transaction: record `report` (NULL for
     * Idle) and fetch the next command to hand out. Acknowledged, Error and
     * CommandFormatError finish the command; NotNow keeps it pending. A
     * report for a command that is not pending for this enrollment changes
     * nothing (*report_applied = 0), which makes repeated reports idempotent.
     * The next command is the oldest pending one; when `report` is not NULL,
     * commands in NotNow state are skipped (not handed out again in the same
     * exchange). `next` is filled when STORE_OK, STORE_NOTFOUND = queue empty.
     * The transaction is durable before this returns. */
    int (*command_exchange)(store_t *s, const char *id, const command_report_t *report,
                            int64_t now, int *report_applied, command_t *next);
    int (*command_get)(store_t *s, const char *uuid, command_t *out);
    int (*command_targets)(store_t *s, const char *uuid, command_target_cb cb, void *ctx);
    /* Commands of one enrollment, newest first. pending_only restricts to
     * queued/NotNow. */
    int (*enrollment_commands)(store_t *s, const char *id, int pending_only, int limit,
                               command_target_cb cb, void *ctx);
    /* Cancels a pending command for one enrollment. STORE_NOTFOUND if it is
     * not pending there. */
    int (*command_cancel)(store_t *s, const char *id, const char *uuid, int64_t now);

    /* Event log */
    int (*event_add)(store_t *s, const char *enrollment_id, const char *kind, const char *detail_json,
                     int64_t now);
    int (*event_list)(store_t *s, const char *enrollment_id, int limit, event_cb cb, void *ctx);

    /* Issued certificates (SCEP). cert_add: STORE_CONFLICT if the serial
     * exists. cert_list: enrollment_id NULL = all; expiring_before > 0 keeps
     * unrevoked certificates whose not_after is before it; ordered by
     * not_after. cert_revoke: STORE_NOTFOUND if unknown or already revoked.
     * Events "cert_issued" / "cert_revoked" are written. */
    int (*cert_add)(store_t *s, const issued_cert_t *c);
    int (*cert_get)(store_t *s, const char *serial, issued_cert_t *out);
    int (*cert_by_sha256)(store_t *s, const char *sha256, issued_cert_t *out);
    int (*cert_list)(store_t *s, const char *enrollment_id, int64_t expiring_before, int limit, issued_cert_cb cb,
                     void *ctx);
    int (*cert_revoke)(store_t *s, const char *serial, int64_t now);

    /* One-time SCEP challenges, optionally bound to a device (the UDID from
     * its MachineInfo). challenge_consume succeeds once: STORE_OK marks it
     * used in the same transaction and hands back the bound id (heap, NULL
     * if unbound); STORE_NOTFOUND if unknown, used or expired. Only a hash of
     * the challenge needs to be kept. */
    int (*challenge_add)(store_t *s, const char *challenge, const char *enrollment_id, int64_t expires_at,
                         int64_t now);
    int (*challenge_consume)(store_t *s, const char *challenge, int64_t now, char **enrollment_id);

    /* Admission list for enrollment under the "known devices" policy: a
     * serial number or a UDID an admin registered. device_allowed:
     * STORE_OK if either given value (may be NULL) is on the list. */
    int (*device_allow)(store_t *s, const char *serial_or_udid, int64_t now);
    int (*device_disallow)(store_t *s, const char *serial_or_udid);
    int (*device_allowed)(store_t *s, const char *udid, const char *serial);

    /* Push outcomes, many in one transaction (the push thread batches them:
     * one fsync per batch, not per push). Per result: last_push_at = at;
     * accepted: last_push_id = apns_id, last_push_error = NULL; failed:
     * last_push_error = error (last_push_id kept). token_invalid sets
     * push_token_invalid only while the stored token is still the one pushed
     * to (a TokenUpdate since then wins) and writes a "push_token_invalid"
     * event; other failures write a "push_failed" event. Unknown ids are
     * skipped (the enrollment may have been removed meanwhile). */
    int (*push_results_record)(store_t *s, const push_result_t *r, size_t n);

    /* Inactive devices (schema 4): the periodic sweep's operations.
     *
     * repush_claim: in one transaction, takes up to `limit` (1..1000)
     * active enrollments that have a push token not marked invalid, were
     * last heard from before `seen_before` and were not re-pushed since then
     * either (last_repush_at < seen_before: so at most once per interval),
     * oldest last_seen_at first; sets their last_repush_at = now and hands
     * each to cb (during the transaction: cb must not use this handle).
     * *claimed = how many. Call again while *claimed == limit.
     *
     * inactive_mark: flags active enrollments last heard from before
     * `seen_before` and not flagged yet (silent_since = now) and writes a
     * "marked_inactive" event for each ({"last_seen_at": ...}), in one
     * transaction. *marked = how many. */
    int (*repush_claim)(store_t *s, int64_t seen_before, int64_t now, int limit, enrollment_cb cb, void *ctx,
                        int *claimed);
    int (*inactive_mark)(store_t *s, int64_t seen_before, int64_t now, int *marked);

    /* Leases: a named lock with an expiry, so that of several orchard
     * instances on one database only one does a periodic job (e.g. the
     * inactivity sweep), and another takes over when the holder dies.
     * lease_acquire: STORE_OK when `holder` holds `name` until now + ttl
     * afterwards (it was free, expired, or already this holder's: renewed);
     * STORE_CONFLICT while another holder's lease has not expired (expiry is
     * compared with `now`, so holders need roughly synchronised clocks).
     * lease_release: ends holder's lease early; STORE_NOTFOUND if holder
     * does not hold it. Both are durable when they return. */
    int (*lease_acquire)(store_t *s, const char *name, const char *holder, int64_t ttl, int64_t now);
    int (*lease_release)(store_t *s, const char *name, const char *holder);
};

struct store {
    const struct store_ops *ops;
};

/* Opens a store from a URL: "sqlite:PATH" (or a bare path). Creates and
 * migrates the schema when needed. NULL on failure, with *err set (heap). */
store_t *store_open(const char *url, char **err);
void store_close(store_t *s);

void enrollment_free(enrollment_t *e);
void command_free(command_t *c);
void command_target_free(command_target_t *t);
void store_event_free(store_event_t *ev);
void issued_cert_free(issued_cert_t *c);

/* Backend constructors (used by store_open). */
store_t *store_sqlite_open(const char *path, char **err);

#endif
