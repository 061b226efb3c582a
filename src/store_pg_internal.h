/* What the PostgreSQL backend's files share (store_pg.c owns the handle:
 * connection, reconnection, prepared statements, transactions, errors and
 * row decoding; store_pg_schema.c the migrations; the other store_pg_*.c
 * files implement the operations, grouped by concern as in the SQLite
 * backend). Not part of the storage interface. */
#ifndef ORCHARD_STORE_PG_INTERNAL_H
#define ORCHARD_STORE_PG_INTERNAL_H

#include <libpq-fe.h>
#include <stddef.h>
#include <stdint.h>

#include "store.h"

typedef struct pg_store pg_store;

/* Opens a PostgreSQL store from a libpq URL (postgres://...) and brings
 * its schema up to date. NULL on failure with *err set (heap; never
 * contains the password). Used by store_open. */
store_t *store_pg_open(const char *url, char **err);

/* Schema version of an open PostgreSQL store's database (after
 * migrations), for "orchard db migrate". */
int store_pg_schema_version(store_t *s);

pg_store *pgs(store_t *s);
PGconn *pg_conn(pg_store *s);

/* Statement ids: each file numbers its statements from its own base, so a
 * statement is prepared once per connection under the name "o<id>". */
enum {
    PG_ST_CORE = 0,       /* store_pg_devices.c */
    PG_ST_LIST = 40,      /* store_pg_devices.c: the 64 enrollment_list variants */
    PG_ST_ENROLL = 104,   /* store_pg_enroll.c */
    PG_ST_PUSH = 120,     /* store_pg_push.c */
    PG_ST_INACTIVE = 128, /* store_pg_inactive.c */
    PG_ST_DDM = 136,      /* store_pg_ddm.c */
    PG_ST_WATCH = 216,    /* store_pg_watch.c */
    PG_ST_ADE = 240,      /* store_pg_ade.c */
    PG_ST_SETTINGS = 264, /* store_pg_settings.c */
    PG_ST_MAX = 272
};

/* Parameters of one statement. Integers travel as text, byte strings in
 * binary format (no escaping: bytea values are sent as they are). The
 * pointers are borrowed and must outlive pg_run. */
#define PG_MAX_PARAMS 20
typedef struct {
    int n;
    int oom; /* more parameters than PG_MAX_PARAMS, or a blob too large */
    const char *values[PG_MAX_PARAMS];
    int lengths[PG_MAX_PARAMS];
    int formats[PG_MAX_PARAMS];
    char ints[PG_MAX_PARAMS][24];
} pg_params;

void pgp_init(pg_params *p);
void pgp_text(pg_params *p, const char *v); /* NULL binds SQL NULL */
void pgp_blob(pg_params *p, const void *v, size_t len); /* NULL binds SQL NULL; len 0 an empty value */
void pgp_int(pg_params *p, int64_t v);
void pgp_bool(pg_params *p, int v);

/* Runs statement `id` (SQL text `sql`, prepared on this connection at its
 * first use) with `p` (may be NULL). Results come back in binary format.
 * On STORE_OK: *res (if given) holds the result for the caller to PQclear,
 * *rows (if given) the rows returned or changed. On failure STORE_ERR with
 * the reason in errmsg (prefixed by `what`). Outside a transaction a lost
 * connection is re-established first (see store_pg.c). */
int pg_run(pg_store *s, int id, const char *sql, const pg_params *p, const char *what, PGresult **res, int *rows);

/* Explicit transactions (READ COMMITTED; see store_pg.c for the locking
 * each operation relies on). pg_tx_abort rolls back and returns rc. */
int pg_tx_begin(pg_store *s);
int pg_tx_commit(pg_store *s);
int pg_tx_abort(pg_store *s, int rc);

/* Error recording: each returns rc (or STORE_ERR) with the message kept for
 * errmsg. */
int pg_fail(pg_store *s, int rc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
int pg_fail_oom(pg_store *s);
int pg_fail_arg(pg_store *s, const char *what);
/* SQLSTATE of the latest failed statement ("" if none). */
const char *pg_sqlstate(pg_store *s);

/* Column decoders for binary results. Text and bytea copies return -1 only
 * when out of memory; SQL NULL gives NULL. A blob copy has one NUL byte
 * after its *len bytes (as in the SQLite backend). */
int pgc_text(const PGresult *r, int row, int col, char **out);
int pgc_blob(const PGresult *r, int row, int col, unsigned char **out, size_t *len);
int64_t pgc_int(const PGresult *r, int row, int col); /* int2/4/8 or bool; NULL reads 0 */

/* The enrollments columns pg_read_enrollment decodes, in order (as in the
 * SQLite backend). */
#define PG_ENR_COLUMNS                                                                                   \
    "id, device_id, udid, channel, topic, serial_number, model, model_name, product_name, os_version, " \
    "build_version, device_name, imei, meid, user_id, user_short_name, user_long_name, cert_sha256, "   \
    "state, push_token, push_magic, unlock_token, created_at, updated_at, last_seen_at, "              \
    "authenticated_at, token_updated_at, checked_out_at, last_push_at, last_push_id, last_push_error, "     \
    "push_token_invalid, silent_since, last_repush_at, supervised, awaiting_configuration"
#define PG_ENR_NCOLUMNS 36
/* Decodes row `row` of PG_ENR_COLUMNS (starting at column 0); -1 only when
 * out of memory. */
int pg_read_enrollment(const PGresult *r, int row, enrollment_t *e);

int pg_clamp_limit(int limit);

/* Operations, by file. */
/* store_pg_devices.c: enrollments, commands, events. */
int pg_enrollment_get(store_t *s, const char *id, enrollment_t *out);
int pg_enrollment_by_cert(store_t *s, const char *cert_sha256, enrollment_t *out);
int pg_authenticate(store_t *s, const enrollment_t *e, int64_t now);
int pg_token_update(store_t *s, const char *id, const char *device_id, const token_update_t *t, int64_t now);
int pg_checkout(store_t *s, const char *id, int64_t now);
int pg_touch(store_t *s, const char *id, int64_t now);
int pg_enrollment_list(store_t *s, const enrollment_filter_t *f, enrollment_cb cb, void *ctx);
int pg_enrollment_count(store_t *s, const char *state, int64_t *out);
int pg_command_enqueue(store_t *s, const command_t *cmd, const char *const *ids, size_t n, int *status,
                       int64_t now);
int pg_command_exchange(store_t *s, const char *id, const command_report_t *report, int64_t now,
                        int *report_applied, command_t *next);
int pg_command_get(store_t *s, const char *uuid, command_t *out);
int pg_command_targets(store_t *s, const char *uuid, command_target_cb cb, void *ctx);
int pg_enrollment_commands(store_t *s, const char *id, int pending_only, int limit, command_target_cb cb,
                           void *ctx);
int pg_command_cancel(store_t *s, const char *id, const char *uuid, int64_t now);
int pg_event_add(store_t *s, const char *enrollment_id, const char *kind, const char *detail_json, int64_t now);
int pg_event_list(store_t *s, const char *enrollment_id, int limit, event_cb cb, void *ctx);

/* Inside an open transaction (shared with ddm_sync_queue): stores a command
 * row (STORE_CONFLICT if the UUID exists), and queues a stored command for
 * enrollments with their "command_queued" events. pg_command_targets_add
 * sets status[i] = STORE_OK for each of ids[0..n) that is an enrollment
 * (and leaves the others); pg_command_target_add queues for one id (*added
 * = 0 when it is not an enrollment). A target that has the command already
 * keeps it as it is. */
int pg_command_insert(pg_store *s, const command_t *cmd, int64_t now, int64_t *command_id);
int pg_command_targets_add(pg_store *s, int64_t command_id, const command_t *cmd, const char *const *ids,
                           size_t n, int64_t now, int *status);
int pg_command_target_add(pg_store *s, int64_t command_id, const command_t *cmd, const char *id, int64_t now,
                          int *added);
/* Deletes the DDM state, status items and declaration statuses of a
 * device and its user channels (authenticate of a new or re-enrolling
 * device). */
int pg_ddm_forget(pg_store *s, const char *device_id);

/* store_pg_enroll.c: issued certificates, SCEP challenges, admission. */
int pg_cert_add(store_t *s, const issued_cert_t *c);
int pg_cert_get(store_t *s, const char *serial, issued_cert_t *out);
int pg_cert_by_sha256(store_t *s, const char *sha256, issued_cert_t *out);
int pg_cert_list(store_t *s, const char *enrollment_id, int64_t expiring_before, int limit, issued_cert_cb cb,
                 void *ctx);
int pg_cert_revoke(store_t *s, const char *serial, int64_t now);
int pg_challenge_add(store_t *s, const char *challenge, const char *enrollment_id, int64_t expires_at, int64_t now);
int pg_challenge_consume(store_t *s, const char *challenge, int64_t now, char **enrollment_id);
int pg_device_allow(store_t *s, const char *serial_or_udid, int64_t now);
int pg_device_disallow(store_t *s, const char *serial_or_udid);
int pg_device_allowed(store_t *s, const char *udid, const char *serial);

/* store_pg_push.c */
int pg_push_results_record(store_t *s, const push_result_t *r, size_t n);

/* store_pg_inactive.c: the inactivity sweep and leases. */
int pg_repush_claim(store_t *s, int64_t seen_before, int64_t now, int limit, enrollment_cb cb, void *ctx,
                    int *claimed);
int pg_inactive_mark(store_t *s, int64_t seen_before, int64_t now, int *marked);
int pg_lease_acquire(store_t *s, const char *name, const char *holder, int64_t ttl, int64_t now);
int pg_lease_release(store_t *s, const char *name, const char *holder);

/* store_pg_ddm.c: declarative device management and asset data. */
int pg_decl_put(store_t *s, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now, int *changed);
int pg_decl_get(store_t *s, const char *identifier, declaration_t *out);
int pg_decl_delete(store_t *s, const char *identifier, char **referrer);
int pg_decl_list(store_t *s, const char *kind, declaration_cb cb, void *ctx);
int pg_decl_referrers(store_t *s, const char *identifier, name_cb cb, void *ctx);
int pg_set_put(store_t *s, const char *name, const char *const *members, size_t n, int64_t now);
int pg_set_delete(store_t *s, const char *name);
int pg_set_list(store_t *s, name_cb cb, void *ctx);
int pg_set_members(store_t *s, const char *name, declaration_cb cb, void *ctx);
int pg_decl_sets(store_t *s, const char *identifier, name_cb cb, void *ctx);
int pg_set_assign(store_t *s, const char *set_name, const char *target_kind, const char *target, int64_t now);
int pg_set_unassign(store_t *s, const char *set_name, const char *target_kind, const char *target);
int pg_set_assignments(store_t *s, const char *set_name, assignment_cb cb, void *ctx);
int pg_group_add(store_t *s, const char *group, const char *enrollment_id, int64_t now);
int pg_group_remove(store_t *s, const char *group, const char *enrollment_id);
int pg_group_members(store_t *s, const char *group, name_cb cb, void *ctx);
int pg_enrollment_groups(store_t *s, const char *enrollment_id, name_cb cb, void *ctx);
int pg_ddm_effective(store_t *s, const char *sets_csv, declaration_cb cb, void *ctx);
int pg_ddm_enrollment_sets(store_t *s, const char *enrollment_id, char **sets_csv);
int pg_ddm_state_get(store_t *s, const char *enrollment_id, ddm_state_t *out);
int pg_ddm_candidates(store_t *s, ddm_candidate_cb cb, void *ctx);
int pg_ddm_sync_queue(store_t *s, const command_t *cmd, const char *const *ids, const char *const *tokens, size_t n,
                      int64_t now, int *queued);
int pg_ddm_handed_out(store_t *s, const char *enrollment_id, int64_t now);
int pg_ddm_touch(store_t *s, const char *enrollment_id, int64_t now);
int pg_ddm_status_record(store_t *s, const char *enrollment_id, const ddm_status_item_t *items, size_t nitems,
                         const ddm_decl_status_t *decls, size_t ndecls, int replace_decls, const char *errors_json,
                         int64_t now);
int pg_ddm_status_item_get(store_t *s, const char *enrollment_id, const char *name, ddm_status_item_t *out);
int pg_ddm_status_items(store_t *s, const char *enrollment_id, ddm_status_item_cb cb, void *ctx);
int pg_ddm_decl_statuses(store_t *s, const char *enrollment_id, ddm_decl_status_cb cb, void *ctx);
int pg_asset_data_put(store_t *s, const asset_data_t *a, int64_t now);
int pg_asset_data_get(store_t *s, const char *name, asset_data_t *out);
int pg_asset_data_delete(store_t *s, const char *name);

/* store_pg_watch.c: supervision and Apple Watch pairing. */
int pg_enrollment_set_supervised(store_t *s, const char *id, int supervised, int64_t now);
int pg_pairing_add(store_t *s, const char *security_token, const char *watch_udid, int64_t expires_at, int64_t now);
int pg_pairing_get(store_t *s, const char *security_token, pairing_token_t *out);
int pg_pairing_bind_phone(store_t *s, const char *security_token, const char *watch_udid, const char *phone_udid,
                          int64_t now);
int pg_pairing_consume(store_t *s, const char *security_token, const char *watch_udid, int64_t now);
int pg_watch_pair(store_t *s, const char *watch_udid, const char *phone_udid, int64_t now);
int pg_watch_pair_state(store_t *s, const char *watch_udid, const char *state, int64_t now);
int pg_watch_pairing_get(store_t *s, const char *watch_udid, watch_pairing_t *out);
int pg_phone_watches(store_t *s, const char *phone_udid, watch_pairing_cb cb, void *ctx);

/* store_pg_ade.c: Automated Device Enrollment (schema 6). */
int pg_ade_token_put(store_t *s, const ade_token_t *t, int64_t now);
int pg_ade_token_get(store_t *s, const char *name, ade_token_t *out);
int pg_ade_token_list(store_t *s, ade_token_cb cb, void *ctx);
int pg_ade_token_delete(store_t *s, const char *name);
int pg_ade_token_sync_state(store_t *s, const char *name, const char *cursor, const char *error, int64_t now);
int pg_ade_token_set_account(store_t *s, const char *name, const char *server_name, const char *server_uuid,
                             const char *org_name, int64_t now);
int pg_ade_token_set_default_profile(store_t *s, const char *name, const char *profile_uuid, int64_t now);
int pg_ade_token_reset_cursor(store_t *s, const char *name, int64_t now);
int pg_ade_devices_apply(store_t *s, const ade_device_t *d, size_t n, int64_t now, int *applied, size_t *added);
int pg_ade_device_get(store_t *s, const char *serial, ade_device_t *out);
int pg_ade_device_list(store_t *s, const char *token_name, int include_deleted, const char *after, int limit,
                       ade_device_cb cb, void *ctx);
int pg_ade_device_set_profile(store_t *s, const char *serial, const char *profile_uuid, const char *status,
                              int64_t now);
int pg_ade_profile_put(store_t *s, const ade_profile_t *p);
int pg_ade_profile_get(store_t *s, const char *profile_uuid, ade_profile_t *out);
int pg_ade_profile_list(store_t *s, const char *token_name, ade_profile_cb cb, void *ctx);

/* store_pg_settings.c: await configuration and settings (schema 6). */
int pg_enrollment_set_awaiting(store_t *s, const char *id, int awaiting, int64_t now);
int pg_enrollment_awaiting(store_t *s, const char *id, int *awaiting);
int pg_setting_put(store_t *s, const char *name, const unsigned char *value, size_t len, int64_t now);
int pg_setting_get(store_t *s, const char *name, unsigned char **value, size_t *len);
int pg_setting_delete(store_t *s, const char *name);

/* store_pg_copy.c: raw row access for the whole-database copier. */
int pg_copy_begin(store_t *s, int writable);
int pg_copy_end(store_t *s, int commit);
int pg_copy_columns(store_t *s, const char *table, name_cb cb, void *ctx);
int pg_copy_count(store_t *s, const char *table, int64_t *rows);
int pg_copy_read(store_t *s, const char *table, const char *const *columns, const char *kinds, size_t n,
                 const char *order_by, copy_row_cb cb, void *ctx);
int pg_copy_write(store_t *s, const char *table, const char *const *columns, const char *kinds, size_t n,
                  const store_value_t *values, size_t nrows);

/* store_pg_schema.c: brings the schema to the version this build knows,
 * under an advisory lock; refuses a newer database. */
int pg_migrate(pg_store *s, int *version);

#endif
