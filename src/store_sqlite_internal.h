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

/* The enrollments columns read_enrollment decodes, in order. */
#define SQ_ENR_COLUMNS                                                                                   \
    "id, device_id, udid, channel, topic, serial_number, model, model_name, product_name, os_version, " \
    "build_version, device_name, imei, meid, user_id, user_short_name, user_long_name, cert_sha256, "   \
    "state, push_token, push_magic, unlock_token, created_at, updated_at, last_seen_at, "              \
    "authenticated_at, token_updated_at, checked_out_at, last_push_at, last_push_id, last_push_error, "     \
    "push_token_invalid, silent_since, last_repush_at"

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
/* Decodes a row of SQ_ENR_COLUMNS; -1 only when out of memory. */
int sq_read_enrollment(sqlite3_stmt *st, enrollment_t *e);
void sq_stmt_release(sqlite3_stmt *st);

/* Write transactions: gate, BEGIN IMMEDIATE, COMMIT + group fsync. */
int sq_tx_begin(sq_store *s);
int sq_tx_commit(sq_store *s);
int sq_tx_abort(sq_store *s, int rc);

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

#endif
