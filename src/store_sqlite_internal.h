/* What the SQLite backend's files share (store_sqlite.c owns the handle,
 * transactions and statement cache; store_sqlite_enroll.c adds the
 * enrollment-PKI operations). Not part of the storage interface. */
#ifndef ORCHARD_STORE_SQLITE_INTERNAL_H
#define ORCHARD_STORE_SQLITE_INTERNAL_H

#include <sqlite3.h>

#include "store.h"

#define SQ_ENROLL_STMTS 16
#define SQ_PUSH_STMTS 4
#define SQ_INACTIVE_STMTS 8
#define SQ_DDM_STMTS 64
#define SQ_WATCH_STMTS 16
#define SQ_SETTINGS_STMTS 8
#define SQ_ADE_STMTS 32

/* The enrollments columns read_enrollment decodes, in order. */
#define SQ_ENR_COLUMNS                                                                                   \
    "id, device_id, udid, channel, topic, serial_number, model, model_name, product_name, os_version, " \
    "build_version, device_name, imei, meid, user_id, user_short_name, user_long_name, cert_sha256, "   \
    "state, push_token, push_magic, unlock_token, created_at, updated_at, last_seen_at, "              \
    "authenticated_at, token_updated_at, checked_out_at, last_push_at, last_push_id, last_push_error, "     \
    "push_token_invalid, silent_since, last_repush_at, supervised, awaiting_configuration"
/* How many columns SQ_ENR_COLUMNS has: queries that select more after them count from here. */
#define SQ_ENR_NCOLUMNS 36

typedef struct sq_store sq_store;

sq_store *sq(store_t *s);
sqlite3 *sq_db(sq_store *s);

/* Error recording: each returns STORE_ERR with the message kept for errmsg. */
int sq_fail_db(sq_store *s, const char *what);
int sq_fail_oom(sq_store *s);
int sq_fail_arg(sq_store *s, const char *what);

/* Statement `id` of store_sqlite_enroll.c, prepared once per handle. */
sqlite3_stmt *sq_enroll_stmt(sq_store *s, int id, const char *sql);
/* Statement `id` of store_sqlite_push.c, prepared once per handle. */
sqlite3_stmt *sq_push_stmt(sq_store *s, int id, const char *sql);
/* Statement `id` of store_sqlite_inactive.c, prepared once per handle. */
sqlite3_stmt *sq_inactive_stmt(sq_store *s, int id, const char *sql);
/* Statement `id` of store_sqlite_ddm.c, prepared once per handle. */
sqlite3_stmt *sq_ddm_stmt(sq_store *s, int id, const char *sql);
/* Statement `id` of store_sqlite_watch.c, prepared once per handle. */
sqlite3_stmt *sq_watch_stmt(sq_store *s, int id, const char *sql);
/* Statement `id` of store_sqlite_settings.c, prepared once per handle. */
sqlite3_stmt *sq_settings_stmt(sq_store *s, int id, const char *sql);
/* Statement `id` of store_sqlite_ade.c, prepared once per handle. */
sqlite3_stmt *sq_ade_stmt(sq_store *s, int id, const char *sql);
/* Decodes a row of SQ_ENR_COLUMNS; -1 only when out of memory. */
int sq_read_enrollment(sqlite3_stmt *st, enrollment_t *e);
void sq_stmt_release(sqlite3_stmt *st);

/* Binding (SQLITE_STATIC: the value must outlive the step; NULL binds SQL
 * NULL) and column copies (-1 only when out of memory; SQL NULL gives NULL). */
int sq_bind_text(sqlite3_stmt *st, int i, const char *v);
int sq_bind_blob(sqlite3_stmt *st, int i, const void *v, size_t len);
int sq_col_text(sqlite3_stmt *st, int i, char **out);
int sq_col_blob(sqlite3_stmt *st, int i, unsigned char **out, size_t *len);
/* Steps a statement that returns no rows and makes it reusable; *changes (if
 * given) = rows changed. STORE_OK or STORE_ERR (message recorded). */
int sq_exec(sq_store *s, sqlite3_stmt *st, const char *what, int *changes);
/* Records the connection's error, resets st; returns STORE_ERR. */
int sq_bind_failed(sq_store *s, sqlite3_stmt *st, const char *what);

/* Write transactions: gate, BEGIN IMMEDIATE, COMMIT + group fsync. */
int sq_tx_begin(sq_store *s);
int sq_tx_commit(sq_store *s);
int sq_tx_abort(sq_store *s, int rc);

/* Commands, inside an open write transaction (store_sqlite.c; shared by
 * command_enqueue and ddm_sync_queue). sq_command_insert: STORE_CONFLICT if
 * the UUID exists. sq_command_target_add: queues the command for `id` and
 * logs "command_queued"; *added = 0 if `id` is unknown or already has it. */
int sq_command_insert(sq_store *s, const command_t *cmd, int64_t now, int64_t *command_id);
int sq_command_target_add(sq_store *s, int64_t command_id, const command_t *cmd, const char *id, int64_t now,
                          int *added);

/* Enrollment-PKI operations (store_sqlite_enroll.c). */
int sq_cert_add(store_t *s, const issued_cert_t *c);
int sq_cert_get(store_t *s, const char *serial, issued_cert_t *out);
int sq_cert_by_sha256(store_t *s, const char *sha256, issued_cert_t *out);
int sq_cert_list(store_t *s, const char *enrollment_id, int64_t expiring_before, int limit, issued_cert_cb cb,
                 void *ctx);
int sq_cert_revoke(store_t *s, const char *serial, int64_t now);
int sq_challenge_add(store_t *s, const char *challenge, const char *enrollment_id, int64_t expires_at, int64_t now);
int sq_challenge_consume(store_t *s, const char *challenge, int64_t now, char **enrollment_id);
int sq_device_allow(store_t *s, const char *serial_or_udid, int64_t now);
int sq_device_disallow(store_t *s, const char *serial_or_udid);
int sq_device_allowed(store_t *s, const char *udid, const char *serial);

/* Push outcomes (store_sqlite_push.c). */
int sq_push_results_record(store_t *s, const push_result_t *r, size_t n);

/* Inactive devices and leases (store_sqlite_inactive.c). */
int sq_repush_claim(store_t *s, int64_t seen_before, int64_t now, int limit, enrollment_cb cb, void *ctx,
                    int *claimed);
int sq_inactive_mark(store_t *s, int64_t seen_before, int64_t now, int *marked);
int sq_lease_acquire(store_t *s, const char *name, const char *holder, int64_t ttl, int64_t now);
int sq_lease_release(store_t *s, const char *name, const char *holder);

/* Supervision, watch pairing (store_sqlite_watch.c). */
int sq_enrollment_set_supervised(store_t *s, const char *id, int supervised, int64_t now);
int sq_pairing_add(store_t *s, const char *security_token, const char *watch_udid, int64_t expires_at, int64_t now);
int sq_pairing_get(store_t *s, const char *security_token, pairing_token_t *out);
int sq_pairing_bind_phone(store_t *s, const char *security_token, const char *watch_udid, const char *phone_udid,
                          int64_t now);
int sq_pairing_consume(store_t *s, const char *security_token, const char *watch_udid, int64_t now);
int sq_watch_pair(store_t *s, const char *watch_udid, const char *phone_udid, int64_t now);
int sq_watch_pair_state(store_t *s, const char *watch_udid, const char *state, int64_t now);
int sq_watch_pairing_get(store_t *s, const char *watch_udid, watch_pairing_t *out);
int sq_phone_watches(store_t *s, const char *phone_udid, watch_pairing_cb cb, void *ctx);

/* Await configuration and settings (store_sqlite_settings.c). */
int sq_enrollment_set_awaiting(store_t *s, const char *id, int awaiting, int64_t now);
int sq_enrollment_awaiting(store_t *s, const char *id, int *awaiting);
int sq_setting_put(store_t *s, const char *name, const unsigned char *value, size_t len, int64_t now);
int sq_setting_get(store_t *s, const char *name, unsigned char **value, size_t *len);
int sq_setting_delete(store_t *s, const char *name);
/* Automated Device Enrollment (store_sqlite_ade.c). */
int sq_ade_token_put(store_t *s, const ade_token_t *t, int64_t now);
int sq_ade_token_get(store_t *s, const char *name, ade_token_t *out);
int sq_ade_token_list(store_t *s, ade_token_cb cb, void *ctx);
int sq_ade_token_delete(store_t *s, const char *name);
int sq_ade_token_sync_state(store_t *s, const char *name, const char *cursor, const char *error, int64_t now);
int sq_ade_token_set_account(store_t *s, const char *name, const char *server_name, const char *server_uuid,
                             const char *org_name, int64_t now);
int sq_ade_token_set_default_profile(store_t *s, const char *name, const char *profile_uuid, int64_t now);
int sq_ade_token_reset_cursor(store_t *s, const char *name, int64_t now);
int sq_ade_devices_apply(store_t *s, const ade_device_t *d, size_t n, int64_t now, int *applied, size_t *added);
int sq_ade_device_get(store_t *s, const char *serial, ade_device_t *out);
int sq_ade_device_list(store_t *s, const char *token_name, int include_deleted, const char *after, int limit,
                       ade_device_cb cb, void *ctx);
int sq_ade_device_set_profile(store_t *s, const char *serial, const char *profile_uuid, const char *status,
                              int64_t now);
int sq_ade_profile_put(store_t *s, const ade_profile_t *p);
int sq_ade_profile_get(store_t *s, const char *profile_uuid, ade_profile_t *out);
int sq_ade_profile_list(store_t *s, const char *token_name, ade_profile_cb cb, void *ctx);

/* Declarative device management and asset data (store_sqlite_ddm.c). */
/* Drops the DDM state, status items and declaration statuses of device
 * `device_id` and its user channels, inside the open transaction. */
int sq_ddm_forget(sq_store *s, const char *device_id);
int sq_decl_put(store_t *s, const declaration_t *d, const char *const *refs, size_t nrefs, int64_t now,
                int *changed);
int sq_decl_get(store_t *s, const char *identifier, declaration_t *out);
int sq_decl_delete(store_t *s, const char *identifier, char **referrer);
int sq_decl_list(store_t *s, const char *kind, declaration_cb cb, void *ctx);
int sq_decl_referrers(store_t *s, const char *identifier, name_cb cb, void *ctx);
int sq_set_put(store_t *s, const char *name, const char *const *members, size_t n, int64_t now);
int sq_set_delete(store_t *s, const char *name);
int sq_set_list(store_t *s, name_cb cb, void *ctx);
int sq_set_members(store_t *s, const char *name, declaration_cb cb, void *ctx);
int sq_decl_sets(store_t *s, const char *identifier, name_cb cb, void *ctx);
int sq_set_assign(store_t *s, const char *set_name, const char *target_kind, const char *target, int64_t now);
int sq_set_unassign(store_t *s, const char *set_name, const char *target_kind, const char *target);
int sq_set_assignments(store_t *s, const char *set_name, assignment_cb cb, void *ctx);
int sq_group_add(store_t *s, const char *group, const char *enrollment_id, int64_t now);
int sq_group_remove(store_t *s, const char *group, const char *enrollment_id);
int sq_group_members(store_t *s, const char *group, name_cb cb, void *ctx);
int sq_enrollment_groups(store_t *s, const char *enrollment_id, name_cb cb, void *ctx);
int sq_ddm_effective(store_t *s, const char *sets_csv, declaration_cb cb, void *ctx);
int sq_ddm_enrollment_sets(store_t *s, const char *enrollment_id, char **sets_csv);
int sq_ddm_state_get(store_t *s, const char *enrollment_id, ddm_state_t *out);
int sq_ddm_candidates(store_t *s, ddm_candidate_cb cb, void *ctx);
int sq_ddm_sync_queue(store_t *s, const command_t *cmd, const char *const *ids, const char *const *tokens, size_t n,
                      int64_t now, int *queued);
int sq_ddm_handed_out(store_t *s, const char *enrollment_id, int64_t now);
int sq_ddm_touch(store_t *s, const char *enrollment_id, int64_t now);
int sq_ddm_status_record(store_t *s, const char *enrollment_id, const ddm_status_item_t *items, size_t nitems,
                         const ddm_decl_status_t *decls, size_t ndecls, int replace_decls, const char *errors_json,
                         int64_t now);
int sq_ddm_status_item_get(store_t *s, const char *enrollment_id, const char *name, ddm_status_item_t *out);
int sq_ddm_status_items(store_t *s, const char *enrollment_id, ddm_status_item_cb cb, void *ctx);
int sq_ddm_decl_statuses(store_t *s, const char *enrollment_id, ddm_decl_status_cb cb, void *ctx);
int sq_asset_data_put(store_t *s, const asset_data_t *a, int64_t now);
int sq_asset_data_get(store_t *s, const char *name, asset_data_t *out);
int sq_asset_data_delete(store_t *s, const char *name);

/* store_sqlite_copy.c: raw row access for the whole-database copier. */
int sq_copy_begin(store_t *s, int writable);
int sq_copy_end(store_t *s, int commit);
int sq_copy_columns(store_t *s, const char *table, name_cb cb, void *ctx);
int sq_copy_count(store_t *s, const char *table, int64_t *rows);
int sq_copy_read(store_t *s, const char *table, const char *const *columns, const char *kinds, size_t n,
                 const char *order_by, copy_row_cb cb, void *ctx);
int sq_copy_write(store_t *s, const char *table, const char *const *columns, const char *kinds, size_t n,
                  const store_value_t *values, size_t nrows);

#endif
