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
    /* Supervision (schema 5): 1 supervised, 0 not, -1 unknown. Learned from
     * DeviceInformation IsSupervised answers (enrollment_set_supervised). A
     * new enrollment starts unknown; re-enrollment keeps the last answer. */
    int supervised;
    /* ADE await configuration (schema 6): set by enrollment_set_awaiting,
     * read with the row so the exchange needs no extra query. */
    int awaiting_configuration;
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
    /* Optional out (NULL = not wanted): when the report applies, the
     * command's RequestType is copied here, NUL-terminated and cut to fit
     * applied_type_len; "" when it does not. The exchange knows it anyway,
     * so callers need no second lookup to act on, say, EraseDevice. */
    char *applied_type;
    size_t applied_type_len;
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

/* ---- Declarative device management (schema 5) ----------------------------
 *
 * Declarations are global (one row per Identifier); sets group them; sets
 * are assigned to an enrollment ("device", target = enrollment id), to a
 * device group ("group", target = group name) or to every device channel
 * ("all", target = ""). An enrollment's effective declarations are the
 * members of every set that applies to it, closed over declaration
 * references (an activation brings the configurations it names, a
 * configuration the assets it names): decl_refs holds those edges. */

#define DDM_KIND_ACTIVATION "activation"
#define DDM_KIND_CONFIGURATION "configuration"
#define DDM_KIND_ASSET "asset"
#define DDM_KIND_MANAGEMENT "management"

typedef struct {
    char *identifier;   /* <= 64 octets */
    char *type;         /* e.g. com.apple.configuration.passcode.settings */
    char *kind;         /* DDM_KIND_* (the second component of type) */
    char *payload_json; /* the Payload object as canonical JSON text */
    char *server_token; /* derived from the content (ddm.c) */
    int64_t created_at, updated_at;
} declaration_t;

/* The set assignment target kinds. */
#define DDM_TARGET_DEVICE "device"
#define DDM_TARGET_GROUP "group"
#define DDM_TARGET_ALL "all"

/* Per enrollment (device or user channel) DDM bookkeeping. */
typedef struct {
    char *enrollment_id;
    char *token;          /* DeclarationsToken last computed for it; NULL = never */
    int sync_pending;     /* a sync command is queued and not handed out yet */
    int64_t token_changed_at;
    int64_t status_at;    /* latest status report; 0 = none */
    int64_t manifest_at;  /* latest declaration-items fetch; 0 = none */
} ddm_state_t;

/* One enrollment as the sync fan-out sees it. */
typedef struct {
    const enrollment_t *enrollment; /* full row (push fields included) */
    const char *sets;               /* names of the sets applying to it, sorted, joined by '\n'; "" = none */
    const char *token;              /* ddm_state.token, NULL if none */
    int sync_pending;
} ddm_candidate_t;

/* A status item's latest value. */
typedef struct {
    char *name;       /* dotted status item name, e.g. "device.operating-system.version" */
    char *value_json; /* JSON text */
    int64_t updated_at;
} ddm_status_item_t;

/* What a device reported about one declaration (management.declarations). */
typedef struct {
    char *identifier;
    char *kind;          /* DDM_KIND_* */
    char *server_token;  /* the revision the device reports on */
    int active;
    char *valid;         /* "valid", "invalid" or "unknown" */
    char *reasons_json;  /* JSON array text, NULL if none */
    int64_t updated_at;
} ddm_decl_status_t;

/* ---- Apple Watch enrollment (schema 5) ------------------------------------
 *
 * A security token is handed to a watch in the 403 pairing.token.missing
 * answer (bound to the watch UDID, short lifetime); the phone's GetToken
 * binds it to the phone (pairing_bind_phone) and the watch's retry spends
 * it (pairing_consume). A watch pairing records which phone a watch enrolled
 * through. */
typedef struct {
    char *security_token;
    char *watch_udid;
    char *phone_udid;   /* NULL until GetToken */
    int64_t created_at, expires_at;
    int64_t bound_at;   /* GetToken time, 0 = not yet */
    int64_t used_at;    /* consumed, 0 = not yet */
} pairing_token_t;

typedef struct {
    char *watch_udid;
    char *phone_udid;
    char *state;        /* "profile_issued" (profile handed out), "enrolled" (watch authenticated) */
    int64_t paired_at, updated_at;
} watch_pairing_t;

/* Data an asset declaration's Reference.DataURL points at, uploaded by an
 * admin and served to enrolled devices (with their own authentication). */
typedef struct {
    char *name;          /* URL-safe name: [A-Za-z0-9._-], 1..128 */
    char *content_type;  /* e.g. application/pem */
    unsigned char *data;
    size_t len;
    char *sha256;        /* hex, for Reference.Hash-SHA-256 */
    int64_t updated_at;
} asset_data_t;

/* ---- Automated Device Enrollment (schema 6) --------------------------------
 *
 * An ADE server token (one per MDM server defined in Apple Business/School
 * Manager): OAuth credentials, sealed by the caller before they reach the
 * store (the store never sees them in clear: see ade_token_t.sealed), plus
 * the sync state of that token. */
typedef struct {
    char *name;               /* admin-chosen, [A-Za-z0-9._-] 1..64 */
    unsigned char *sealed;    /* the encrypted credentials (consumer key/secret, access token/secret) */
    size_t sealed_len;
    int64_t access_token_expiry; /* from the token file; drives renewal warnings */
    char *server_name;        /* from GET /account, NULL until known */
    char *server_uuid;
    char *org_name;
    char *default_profile_uuid; /* profile assigned automatically to new devices; NULL = none */
    char *cursor;             /* latest fetch/sync cursor, NULL before the first fetch */
    int64_t cursor_at;        /* when that cursor was obtained (Apple: sync cursors expire after 7 days) */
    int64_t last_sync_at;     /* latest successful fetch or sync */
    char *last_error;         /* latest failure, NULL after a success */
    int64_t last_error_at;
    int64_t imported_at, updated_at;
} ade_token_t;

/* One device as Apple's fetch/sync services describe it. */
typedef struct {
    char *serial_number;
    char *token_name;
    char *model, *description, *color, *asset_tag, *device_family, *os;
    char *profile_status;     /* empty | assigned | pushed | removed */
    char *profile_uuid;
    int64_t profile_assign_time, profile_push_time, device_assigned_date;
    char *device_assigned_by;
    char *op_type;            /* added | modified | deleted (latest applied) */
    int64_t op_date;          /* of the latest applied op */
    int deleted;              /* op_type deleted: no longer ours */
    int64_t updated_at;
} ade_device_t;

/* A profile orchard defined with Apple (define_profile). */
typedef struct {
    char *profile_uuid;       /* Apple's */
    char *token_name;
    char *name;               /* profile_name */
    char *json;               /* the definition as sent */
    int64_t created_at;
} ade_profile_t;

typedef int (*declaration_cb)(void *ctx, const declaration_t *d);          /* non-zero stops */
typedef int (*ddm_candidate_cb)(void *ctx, const ddm_candidate_t *c);      /* non-zero stops */
typedef int (*ddm_status_item_cb)(void *ctx, const ddm_status_item_t *i);  /* non-zero stops */
typedef int (*ddm_decl_status_cb)(void *ctx, const ddm_decl_status_t *d);  /* non-zero stops */
typedef int (*name_cb)(void *ctx, const char *name);                       /* non-zero stops */
/* One assignment of a set: target_kind DDM_TARGET_*, target "" for "all". */
typedef int (*assignment_cb)(void *ctx, const char *set_name, const char *target_kind, const char *target);
typedef int (*watch_pairing_cb)(void *ctx, const watch_pairing_t *p);      /* non-zero stops */
typedef int (*ade_token_cb)(void *ctx, const ade_token_t *t);              /* non-zero stops */
typedef int (*ade_device_cb)(void *ctx, const ade_device_t *d);            /* non-zero stops */
typedef int (*ade_profile_cb)(void *ctx, const ade_profile_t *p);          /* non-zero stops */

/* One column value of a copied row (copy_read / copy_write): kind 'i'
 * (integer; booleans are 0/1), 't' (text, NUL-terminated) or 'b' (bytes). */
typedef struct {
    int is_null;
    int64_t i;              /* kind 'i' */
    const unsigned char *p; /* kinds 't' and 'b' */
    size_t len;
} store_value_t;
typedef int (*copy_row_cb)(void *ctx, const store_value_t *values); /* non-zero stops (and fails the read) */

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

    /* ---- Supervision (schema 5) ---- */
    /* Records IsSupervised for a device enrollment. STORE_NOTFOUND if unknown. */
    int (*enrollment_set_supervised)(store_t *s, const char *id, int supervised, int64_t now);

    /* ---- Declarative device management (schema 5) ----
     *
     * decl_put: inserts or replaces the declaration with d->identifier and
     * replaces its reference edges with refs[0..nrefs) (identifiers it names;
     * each must exist: else STORE_NOTFOUND and nothing changes). *changed =
     * 1 if it is new or its server_token differs, 0 if identical (then
     * nothing is written). created_at is kept on replace.
     * decl_delete: STORE_NOTFOUND if unknown; STORE_CONFLICT if another
     * declaration references it (*referrer = one such identifier, heap) —
     * otherwise removes it and its set memberships.
     * decl_list: ordered by identifier; kind NULL = all kinds. */
    int (*decl_put)(store_t *s, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now,
                    int *changed);
    int (*decl_get)(store_t *s, const char *identifier, declaration_t *out);
    int (*decl_delete)(store_t *s, const char *identifier, char **referrer);
    int (*decl_list)(store_t *s, const char *kind, declaration_cb cb, void *ctx);
    /* Identifiers of the declarations that reference `identifier`. */
    int (*decl_referrers)(store_t *s, const char *identifier, name_cb cb, void *ctx);

    /* Sets. set_put creates the set or replaces its members with
     * members[0..n) (each must be a declaration: else STORE_NOTFOUND,
     * nothing changes). set_delete: STORE_NOTFOUND if unknown; drops its
     * members and assignments too. set_list: names in order. set_members:
     * the explicit members (not the reference closure), by identifier. */
    int (*set_put)(store_t *s, const char *name, const char *const *members, size_t n, int64_t now);
    int (*set_delete)(store_t *s, const char *name);
    int (*set_list)(store_t *s, name_cb cb, void *ctx);
    int (*set_members)(store_t *s, const char *name, declaration_cb cb, void *ctx);
    /* Sets containing `identifier` explicitly. */
    int (*decl_sets)(store_t *s, const char *identifier, name_cb cb, void *ctx);

    /* Assignments. set_assign: STORE_NOTFOUND if the set is unknown;
     * assigning twice is STORE_OK (no change). set_unassign: STORE_NOTFOUND
     * if not assigned. set_assignments: set_name NULL = all sets. */
    int (*set_assign)(store_t *s, const char *set_name, const char *target_kind, const char *target, int64_t now);
    int (*set_unassign)(store_t *s, const char *set_name, const char *target_kind, const char *target);
    int (*set_assignments)(store_t *s, const char *set_name, assignment_cb cb, void *ctx);

    /* Device groups (membership by enrollment id; a group exists while it
     * has members). group_add twice is STORE_OK; group_remove:
     * STORE_NOTFOUND if not a member. group_members: ids in order;
     * enrollment_groups: group names of one enrollment. */
    int (*group_add)(store_t *s, const char *group, const char *enrollment_id, int64_t now);
    int (*group_remove)(store_t *s, const char *group, const char *enrollment_id);
    int (*group_members)(store_t *s, const char *group, name_cb cb, void *ctx);
    int (*enrollment_groups)(store_t *s, const char *enrollment_id, name_cb cb, void *ctx);

    /* Effective declarations. sets_csv: set names joined by '\n' (as in
     * ddm_candidate_t.sets); the result is the members of those sets closed
     * over decl_refs, each declaration once, ordered by kind then identifier.
     * enrollment_sets: the sets applying to one enrollment, in that same
     * '\n'-joined sorted form (heap; "" when none). "all" assignments apply
     * to device channels (id == device_id) only. */
    int (*ddm_effective)(store_t *s, const char *sets_csv, declaration_cb cb, void *ctx);
    int (*ddm_enrollment_sets)(store_t *s, const char *enrollment_id, char **sets_csv);

    /* Sync bookkeeping. ddm_state_get: STORE_NOTFOUND if the enrollment has
     * no DDM state yet. ddm_candidates: every active enrollment (device and
     * user channels) with its sets and state, in id order (cb runs inside
     * the read: it must not use this handle).
     * ddm_sync_queue: in one durable transaction, for each i: sets
     * ddm_state.token = tokens[i] (token_changed_at = now), and if no sync
     * command is pending for ids[i], queues `cmd` for it (one command row
     * shared by the targets queued) and sets sync_pending; queued[i] = 1 if
     * it queued there. STORE_CONFLICT if cmd->uuid exists (nothing stored).
     * ddm_handed_out: clears sync_pending (the connect handler handed the
     * sync command to the device). ddm_touch: records a manifest fetch
     * (manifest_at). Authenticate of a new or re-enrolling (inactive)
     * enrollment deletes its DDM state, status and status items (the device
     * forgot them at unenrollment). */
    int (*ddm_state_get)(store_t *s, const char *enrollment_id, ddm_state_t *out);
    int (*ddm_candidates)(store_t *s, ddm_candidate_cb cb, void *ctx);
    int (*ddm_sync_queue)(store_t *s, const command_t *cmd, const char *const *ids, const char *const *tokens,
                          size_t n, int64_t now, int *queued);
    int (*ddm_handed_out)(store_t *s, const char *enrollment_id, int64_t now);
    int (*ddm_touch)(store_t *s, const char *enrollment_id, int64_t now);

    /* Status channel. ddm_status_record, in one transaction: upserts the
     * status items (latest value per name), upserts the declaration
     * statuses (per identifier) — or, with replace_decls, first deletes
     * every declaration status of the enrollment (a full report) — and sets
     * ddm_state.status_at = now (creating the state row if needed). When
     * errors_json (the report's Errors array, non-empty) is given, a
     * "ddm_status_errors" event carries it. */
    int (*ddm_status_record)(store_t *s, const char *enrollment_id, const ddm_status_item_t *items, size_t nitems,
                             const ddm_decl_status_t *decls, size_t ndecls, int replace_decls,
                             const char *errors_json, int64_t now);
    int (*ddm_status_item_get)(store_t *s, const char *enrollment_id, const char *name, ddm_status_item_t *out);
    int (*ddm_status_items)(store_t *s, const char *enrollment_id, ddm_status_item_cb cb, void *ctx);
    int (*ddm_decl_statuses)(store_t *s, const char *enrollment_id, ddm_decl_status_cb cb, void *ctx);

    /* Asset data. asset_data_put inserts or replaces (sha256 computed by
     * the caller); asset_data_get / asset_data_delete: STORE_NOTFOUND if
     * unknown. */
    int (*asset_data_put)(store_t *s, const asset_data_t *a, int64_t now);
    int (*asset_data_get)(store_t *s, const char *name, asset_data_t *out);
    int (*asset_data_delete)(store_t *s, const char *name);

    /* ---- Apple Watch pairing (schema 5) ----
     * pairing_add: STORE_CONFLICT if the token exists.
     * pairing_get: STORE_NOTFOUND if unknown (expired/used ones are still
     * returned: callers name the reason).
     * pairing_bind_phone: sets phone_udid/bound_at once; STORE_NOTFOUND
     * unless the token exists, is for watch_udid, is unexpired (expires_at >
     * now), unused and not yet bound to another phone (binding again to the
     * same phone is STORE_OK).
     * pairing_consume: STORE_OK exactly once (sets used_at) for a token that
     * is for watch_udid, bound, unexpired and unused; else STORE_NOTFOUND.
     * watch_pair: inserts or replaces the pairing of watch_udid (a reset
     * watch may pair again, with another phone too) with state
     * "profile_issued"; watch_pair_state updates state (STORE_NOTFOUND if
     * none). watch_pairing_get by watch; phone_watches: pairings of one
     * phone, by watch udid. */
    int (*pairing_add)(store_t *s, const char *security_token, const char *watch_udid, int64_t expires_at,
                       int64_t now);
    int (*pairing_get)(store_t *s, const char *security_token, pairing_token_t *out);
    int (*pairing_bind_phone)(store_t *s, const char *security_token, const char *watch_udid,
                              const char *phone_udid, int64_t now);
    int (*pairing_consume)(store_t *s, const char *security_token, const char *watch_udid, int64_t now);
    int (*watch_pair)(store_t *s, const char *watch_udid, const char *phone_udid, int64_t now);
    int (*watch_pair_state)(store_t *s, const char *watch_udid, const char *state, int64_t now);
    int (*watch_pairing_get)(store_t *s, const char *watch_udid, watch_pairing_t *out);
    int (*phone_watches)(store_t *s, const char *phone_udid, watch_pairing_cb cb, void *ctx);

    /* ---- Automated Device Enrollment (schema 6) ----
     * ade_token_put: inserts, or replaces the credentials (sealed,
     * access_token_expiry) of an existing token keeping its sync state and
     * default profile. ade_token_sync_state: records the outcome of one
     * fetch/sync run: on success (error NULL) cursor/cursor_at (when cursor
     * is not NULL), last_sync_at = now and last_error cleared; on failure
     * last_error/last_error_at only. ade_token_set_account: server name,
     * uuid and org from GET /account. ade_token_set_default_profile: NULL
     * clears. ade_token_reset_cursor: forgets the cursor (the next run does
     * a full fetch: after INVALID/EXPIRED/EXHAUSTED_CURSOR). All:
     * STORE_NOTFOUND for an unknown token. ade_token_delete also deletes
     * its devices and profiles. */
    int (*ade_token_put)(store_t *s, const ade_token_t *t, int64_t now);
    int (*ade_token_get)(store_t *s, const char *name, ade_token_t *out);
    int (*ade_token_list)(store_t *s, ade_token_cb cb, void *ctx);
    int (*ade_token_delete)(store_t *s, const char *name);
    int (*ade_token_sync_state)(store_t *s, const char *name, const char *cursor, const char *error, int64_t now);
    int (*ade_token_set_account)(store_t *s, const char *name, const char *server_name, const char *server_uuid,
                                 const char *org_name, int64_t now);
    int (*ade_token_set_default_profile)(store_t *s, const char *name, const char *profile_uuid, int64_t now);
    int (*ade_token_reset_cursor)(store_t *s, const char *name, int64_t now);

    /* ADE devices. ade_devices_apply: in one transaction, applies records
     * from a fetch or sync (each with token_name, op_type, op_date): a
     * record older than the stored one for that serial (op_date less than
     * the stored op_date) is skipped — Apple may return a device more than
     * once; "deleted" marks the device deleted (row kept, fields kept),
     * "added"/"modified" (or a fetch record without op_type, treated as
     * "added" at op_date = device_assigned_date) insert or update it and
     * clear deleted. applied[i] = 1 if record i changed the store; *added
     * counts serials that were new or came back from deleted (the ones a
     * default profile should be assigned to). ade_device_get by serial
     * (deleted ones too). ade_device_list: token NULL = all; include_deleted
     * 0/1; keyset paging by serial (after NULL = from start); limit 1..1000.
     * ade_device_set_profile: profile_uuid, profile_status, and
     * profile_assign_time = now (status "assigned") — after a successful
     * assign/remove call. */
    int (*ade_devices_apply)(store_t *s, const ade_device_t *d, size_t n, int64_t now, int *applied, size_t *added);
    int (*ade_device_get)(store_t *s, const char *serial, ade_device_t *out);
    int (*ade_device_list)(store_t *s, const char *token_name, int include_deleted, const char *after, int limit,
                           ade_device_cb cb, void *ctx);
    int (*ade_device_set_profile)(store_t *s, const char *serial, const char *profile_uuid, const char *status,
                                  int64_t now);

    /* ADE profiles orchard defined. ade_profile_put: insert or replace by
     * uuid. ade_profile_list: token NULL = all, newest first. */
    int (*ade_profile_put)(store_t *s, const ade_profile_t *p);
    int (*ade_profile_get)(store_t *s, const char *profile_uuid, ade_profile_t *out);
    int (*ade_profile_list)(store_t *s, const char *token_name, ade_profile_cb cb, void *ctx);

    /* Await configuration (ADE profiles with await_device_configured): the
     * device's TokenUpdate says AwaitingConfiguration; orchard then runs
     * the setup commands and sends DeviceConfigured. enrollment_set_awaiting
     * sets/clears the flag on a device enrollment (STORE_NOTFOUND if
     * unknown); enrollment_awaiting reads it (*awaiting 0/1). */
    int (*enrollment_set_awaiting)(store_t *s, const char *id, int awaiting, int64_t now);
    int (*enrollment_awaiting)(store_t *s, const char *id, int *awaiting);

    /* Settings: small named blobs an admin sets through the API (e.g. the
     * ADE setup commands). setting_get: STORE_NOTFOUND if unset. */
    int (*setting_put)(store_t *s, const char *name, const unsigned char *value, size_t len, int64_t now);
    int (*setting_get)(store_t *s, const char *name, unsigned char **value, size_t *len);
    int (*setting_delete)(store_t *s, const char *name);

    /* ---- Whole-database copy (orchard db copy; store_copy.c) ----
     * Raw row access for the backend-neutral copier only; protocol code
     * never uses these. Table and column names are the copier's constants
     * (the same on every backend); kinds are as in store_value_t.
     * copy_begin: writable 0 opens a read-only snapshot (the source),
     * 1 the one write transaction the whole import runs in (the target);
     * copy_end commits (commit 1) or rolls back; on commit the target
     * makes its id generators continue after the copied ids.
     * copy_columns: the table's stored columns, each once, in any order
     * (columns the backend derives itself, such as command_targets.pending,
     * left out), so the copier can refuse a table it does not fully know.
     * copy_count: rows in the table. copy_read: every row, ordered by
     * `order_by` (column names, comma-separated), values in the order of
     * columns[0..n). copy_write: inserts nrows rows of n values each
     * (values[row * n + col]) with their ids as given. */
    int (*copy_begin)(store_t *s, int writable);
    int (*copy_end)(store_t *s, int commit);
    int (*copy_columns)(store_t *s, const char *table, name_cb cb, void *ctx);
    int (*copy_count)(store_t *s, const char *table, int64_t *rows);
    int (*copy_read)(store_t *s, const char *table, const char *const *columns, const char *kinds, size_t n,
                     const char *order_by, copy_row_cb cb, void *ctx);
    int (*copy_write)(store_t *s, const char *table, const char *const *columns, const char *kinds, size_t n,
                      const store_value_t *values, size_t nrows);
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
void declaration_free(declaration_t *d);
void ddm_state_free(ddm_state_t *st);
void ddm_status_item_free(ddm_status_item_t *i);
void ddm_decl_status_free(ddm_decl_status_t *d);
void pairing_token_free(pairing_token_t *p);
void watch_pairing_free(watch_pairing_t *p);
void asset_data_free(asset_data_t *a);
void ade_token_free(ade_token_t *t);
void ade_device_free(ade_device_t *d);
void ade_profile_free(ade_profile_t *p);

/* Copies every table of `from` into `to` (store_copy.c): both open, at the
 * same schema version (store_open sees to that), `to` empty (else
 * STORE_CONFLICT, nothing written), all of it in one transaction on `to`.
 * *rows (if given) counts the rows copied. On failure *err (heap) says
 * why and `to` is unchanged. */
int store_copy(store_t *from, store_t *to, int64_t *rows, char **err);

/* Backend constructors (used by store_open). */
store_t *store_sqlite_open(const char *path, char **err);

#endif
