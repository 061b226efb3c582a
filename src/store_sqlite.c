/* SQLite backend of the storage interface (store.h).
 *
 * Concurrency model. Each server worker thread owns one handle (one sqlite3
 * connection, opened NOMUTEX because it is never shared), and several
 * processes may open the same file. The database runs in WAL mode so readers
 * never block the single writer. Every operation that writes starts with
 * BEGIN IMMEDIATE: it takes the write lock up front (waiting up to
 * busy_timeout for it). A deferred transaction that first reads and then
 * writes could instead fail with SQLITE_BUSY_SNAPSHOT when another connection
 * committed in between, and that failure is not retried by the busy handler.
 * Read-only operations run as single autocommit statements.
 *
 * Durability. Every write transaction is on disk before the operation
 * returns, so a command result acknowledged to a device survives a power
 * cut. Handles of one process queue on a writer gate and share fsyncs
 * (store_sqlite_sync.c); other processes use SQLite's busy timeout.
 *
 * Callbacks (enrollment_list, command_targets, enrollment_commands,
 * event_list) are invoked while the query is being stepped, so results are
 * streamed rather than buffered: a callback must not call back into the same
 * handle (use another handle, or collect and act after the call returns).
 *
 * Every SQL statement is a constant string; values are always bound. The
 * statements are prepared once per handle and kept for its lifetime.
 */
#include "store.h"

#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_sqlite_internal.h"
#include "store_sqlite_sync.h"

/* ---- schema -------------------------------------------------------------- */

/* Schema versions are kept in PRAGMA user_version, which lives in the
 * database header and is therefore updated atomically with the DDL of the
 * migration that sets it. migrations[i] upgrades version i to version i+1;
 * append new migrations, never edit applied ones. */
static const char *const migrations[] = {
    /* 1: initial schema */
    "CREATE TABLE enrollments ("
    "  id               TEXT PRIMARY KEY NOT NULL,"
    "  device_id        TEXT NOT NULL," /* == id for a device channel */
    "  udid             TEXT,"
    "  channel          TEXT NOT NULL CHECK (channel IN ('device', 'user')),"
    "  topic            TEXT,"
    "  serial_number    TEXT,"
    "  model            TEXT,"
    "  model_name       TEXT,"
    "  product_name     TEXT,"
    "  os_version       TEXT,"
    "  build_version    TEXT,"
    "  device_name      TEXT,"
    "  imei             TEXT,"
    "  meid             TEXT,"
    "  user_id          TEXT,"
    "  user_short_name  TEXT,"
    "  user_long_name   TEXT,"
    "  cert_sha256      TEXT,"
    "  state            TEXT NOT NULL CHECK (state IN ('authenticated', 'active', 'inactive')),"
    "  push_token       BLOB,"
    "  push_magic       TEXT,"
    "  unlock_token     BLOB,"
    "  created_at       INTEGER NOT NULL,"
    "  updated_at       INTEGER NOT NULL,"
    "  last_seen_at     INTEGER NOT NULL DEFAULT 0,"
    "  authenticated_at INTEGER NOT NULL DEFAULT 0,"
    "  token_updated_at INTEGER NOT NULL DEFAULT 0,"
    "  checked_out_at   INTEGER NOT NULL DEFAULT 0"
    ");"
    /* enrollment_by_cert: which device a certificate is bound to. */
    "CREATE INDEX enrollments_by_cert ON enrollments (cert_sha256);"
    /* CheckOut and re-authentication reach the user channels of a device. */
    "CREATE INDEX enrollments_by_device ON enrollments (device_id);"
    /* enrollment_list/enrollment_count filtered by state, paged by id. */
    "CREATE INDEX enrollments_by_state ON enrollments (state, id);"
    "CREATE INDEX enrollments_by_serial ON enrollments (serial_number);"

    /* A command is stored once, however many enrollments it targets.
     * Targets refer to it by the integer id rather than the UUID: the
     * next-command lookup then reaches the body with one rowid seek, and
     * the per-target rows and their indexes stay small (with 10 million
     * targets the UUID text alone would add about 1 GB of index). */
    "CREATE TABLE commands ("
    "  id           INTEGER PRIMARY KEY,"
    "  uuid         TEXT NOT NULL UNIQUE,"
    "  request_type TEXT NOT NULL,"
    "  body         BLOB NOT NULL,"
    "  created_at   INTEGER NOT NULL"
    ");"

    /* One row per (enrollment, command). seq is the rowid, assigned at
     * enqueue time under the write lock, so ordering by seq is ordering by
     * enqueue time. Without AUTOINCREMENT a new rowid is one more than the
     * largest present, which still sorts after every existing row; that is
     * all the ordering needs, so AUTOINCREMENT's bookkeeping is skipped.
     * pending is kept in step with status by the CHECK. */
    "CREATE TABLE command_targets ("
    "  seq           INTEGER PRIMARY KEY,"
    "  command_id    INTEGER NOT NULL REFERENCES commands (id),"
    "  enrollment_id TEXT NOT NULL REFERENCES enrollments (id),"
    "  status        TEXT NOT NULL CHECK (status IN ('queued', 'NotNow', 'Acknowledged', 'Error',"
    "                                                'CommandFormatError', 'cancelled')),"
    "  pending       INTEGER NOT NULL CHECK (pending = (status IN ('queued', 'NotNow'))),"
    "  result        BLOB,"
    "  error_chain   TEXT,"
    "  queued_at     INTEGER NOT NULL,"
    "  updated_at    INTEGER NOT NULL,"
    "  UNIQUE (enrollment_id, command_id)"
    ");"
    /* The hot path: the next pending command of one enrollment is an index
     * seek to (enrollment_id, 1) and the first entry in seq order, however
     * many enrollments and finished commands exist. status and command_id
     * make the index covering, so the NotNow filter and the join to
     * commands need no visit to the command_targets row. */
    "CREATE INDEX command_targets_next ON command_targets (enrollment_id, pending, seq, status, command_id);"
    "CREATE INDEX command_targets_by_command ON command_targets (command_id, seq);"

    /* Audit log. enrollment_id is deliberately not a foreign key: events are
     * also written for ids that never enrolled, and for no enrollment. */
    "CREATE TABLE events ("
    "  id            INTEGER PRIMARY KEY,"
    "  at            INTEGER NOT NULL,"
    "  enrollment_id TEXT,"
    "  kind          TEXT NOT NULL,"
    "  detail        TEXT NOT NULL DEFAULT '{}'"
    ");"
    "CREATE INDEX events_by_enrollment ON events (enrollment_id, id);",

    /* 2: enrollment — certificates issued by the SCEP CA, one-time SCEP
     * challenges (only a SHA-256 of each is kept), the admission list. */
    "CREATE TABLE issued_certs ("
    "  serial        TEXT PRIMARY KEY NOT NULL,"
    "  subject       TEXT NOT NULL,"
    "  enrollment_id TEXT,"
    "  sha256        TEXT NOT NULL UNIQUE,"
    "  not_before    INTEGER NOT NULL,"
    "  not_after     INTEGER NOT NULL,"
    "  issued_at     INTEGER NOT NULL,"
    "  revoked_at    INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX issued_certs_by_enrollment ON issued_certs (enrollment_id, not_after);"
    /* renewal sweeps: unrevoked certificates by expiry */
    "CREATE INDEX issued_certs_by_expiry ON issued_certs (revoked_at, not_after);"
    "CREATE TABLE scep_challenges ("
    "  digest        TEXT PRIMARY KEY NOT NULL,"
    "  enrollment_id TEXT,"
    "  created_at    INTEGER NOT NULL,"
    "  expires_at    INTEGER NOT NULL,"
    "  used_at       INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX scep_challenges_by_expiry ON scep_challenges (expires_at);"
    "CREATE TABLE admission ("
    "  value    TEXT PRIMARY KEY NOT NULL,"
    "  added_at INTEGER NOT NULL"
    ");",

    /* 3: push — the outcome of the latest APNs push per enrollment.
     * push_token_invalid is set when APNs answers Unregistered or
     * BadDeviceToken and cleared by the next TokenUpdate: until then orchard
     * does not push to that token. */
    "ALTER TABLE enrollments ADD COLUMN last_push_at INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE enrollments ADD COLUMN last_push_id TEXT;"
    "ALTER TABLE enrollments ADD COLUMN last_push_error TEXT;"
    "ALTER TABLE enrollments ADD COLUMN push_token_invalid INTEGER NOT NULL DEFAULT 0;",

    /* 4: inactive devices and leases. silent_since flags an active
     * enrollment not heard from for --inactive-after (0 = not flagged);
     * last_repush_at limits re-pushes of silent enrollments to one per
     * --repush-after. The sweep's queries are range scans on
     * (state, last_seen_at). leases: one row per named periodic job, held by
     * one instance until expires_at. */
    "ALTER TABLE enrollments ADD COLUMN silent_since INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE enrollments ADD COLUMN last_repush_at INTEGER NOT NULL DEFAULT 0;"
    "CREATE INDEX enrollments_by_seen ON enrollments (state, last_seen_at);"
    "CREATE TABLE leases ("
    "  name       TEXT PRIMARY KEY NOT NULL,"
    "  holder     TEXT NOT NULL,"
    "  expires_at INTEGER NOT NULL"
    ");",

    /* 5: supervision, declarative device management, Apple Watch pairing.
     * supervised: -1 unknown until a DeviceInformation answer says.
     * Declarations are upserted in place, never INSERT OR REPLACE'd: a
     * replace would delete the row and, with it, the foreign-key children
     * (memberships, reference edges). Group members and assignment targets
     * are not foreign keys: an admin may place an id before it enrolls. */
    "ALTER TABLE enrollments ADD COLUMN supervised INTEGER NOT NULL DEFAULT -1;"
    "CREATE TABLE declarations ("
    "  identifier   TEXT PRIMARY KEY NOT NULL,"
    "  type         TEXT NOT NULL,"
    "  kind         TEXT NOT NULL,"
    "  payload_json TEXT NOT NULL,"
    "  server_token TEXT NOT NULL,"
    "  created_at   INTEGER NOT NULL,"
    "  updated_at   INTEGER NOT NULL"
    ");"
    "CREATE INDEX declarations_by_kind ON declarations (kind, identifier);"
    /* from_id names to_id (activation -> configuration -> asset). The to_id
     * index answers "who references this" (delete refused, referrers) and
     * the parent-side foreign-key checks. */
    "CREATE TABLE decl_refs ("
    "  from_id TEXT NOT NULL REFERENCES declarations (identifier),"
    "  to_id   TEXT NOT NULL REFERENCES declarations (identifier),"
    "  PRIMARY KEY (from_id, to_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX decl_refs_by_to ON decl_refs (to_id, from_id);"
    "CREATE TABLE decl_sets ("
    "  name       TEXT PRIMARY KEY NOT NULL,"
    "  created_at INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");"
    "CREATE TABLE set_members ("
    "  set_name   TEXT NOT NULL REFERENCES decl_sets (name),"
    "  identifier TEXT NOT NULL REFERENCES declarations (identifier),"
    "  PRIMARY KEY (set_name, identifier)"
    ") WITHOUT ROWID;"
    "CREATE INDEX set_members_by_decl ON set_members (identifier, set_name);"
    /* target: enrollment id ('device'), group name ('group'), '' ('all'). */
    "CREATE TABLE set_assignments ("
    "  set_name    TEXT NOT NULL REFERENCES decl_sets (name),"
    "  target_kind TEXT NOT NULL CHECK (target_kind IN ('device', 'group', 'all')),"
    "  target      TEXT NOT NULL,"
    "  assigned_at INTEGER NOT NULL,"
    "  PRIMARY KEY (set_name, target_kind, target)"
    ") WITHOUT ROWID;"
    "CREATE INDEX set_assignments_by_target ON set_assignments (target_kind, target, set_name);"
    "CREATE TABLE group_members ("
    "  group_name    TEXT NOT NULL,"
    "  enrollment_id TEXT NOT NULL,"
    "  added_at      INTEGER NOT NULL,"
    "  PRIMARY KEY (group_name, enrollment_id)"
    ") WITHOUT ROWID;"
    "CREATE INDEX group_members_by_enrollment ON group_members (enrollment_id, group_name);"
    /* Per-enrollment sync bookkeeping. sync_command_id: the commands.id of
     * the sync command queued while sync_pending was set, so a sync command
     * that was cancelled (or otherwise finished) without being handed out
     * does not block later syncs forever. */
    "CREATE TABLE ddm_state ("
    "  enrollment_id    TEXT PRIMARY KEY NOT NULL,"
    "  token            TEXT,"
    "  sync_pending     INTEGER NOT NULL DEFAULT 0,"
    "  sync_command_id  INTEGER,"
    "  token_changed_at INTEGER NOT NULL DEFAULT 0,"
    "  status_at        INTEGER NOT NULL DEFAULT 0,"
    "  manifest_at      INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE ddm_status_items ("
    "  enrollment_id TEXT NOT NULL,"
    "  name          TEXT NOT NULL,"
    "  value_json    TEXT NOT NULL,"
    "  updated_at    INTEGER NOT NULL,"
    "  PRIMARY KEY (enrollment_id, name)"
    ") WITHOUT ROWID;"
    "CREATE TABLE ddm_decl_status ("
    "  enrollment_id TEXT NOT NULL,"
    "  identifier    TEXT NOT NULL,"
    "  kind          TEXT,"
    "  server_token  TEXT,"
    "  active        INTEGER NOT NULL DEFAULT 0,"
    "  valid         TEXT,"
    "  reasons_json  TEXT,"
    "  updated_at    INTEGER NOT NULL,"
    "  PRIMARY KEY (enrollment_id, identifier)"
    ") WITHOUT ROWID;"
    "CREATE TABLE asset_data ("
    "  name         TEXT PRIMARY KEY NOT NULL,"
    "  content_type TEXT NOT NULL,"
    "  data         BLOB NOT NULL,"
    "  sha256       TEXT NOT NULL,"
    "  updated_at   INTEGER NOT NULL"
    ");"
    /* Watch pairing security tokens are bearer secrets: only their SHA-256
     * is kept, as with SCEP challenges. */
    "CREATE TABLE pairing_tokens ("
    "  digest     TEXT PRIMARY KEY NOT NULL,"
    "  watch_udid TEXT NOT NULL,"
    "  phone_udid TEXT,"
    "  created_at INTEGER NOT NULL,"
    "  expires_at INTEGER NOT NULL,"
    "  bound_at   INTEGER NOT NULL DEFAULT 0,"
    "  used_at    INTEGER NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX pairing_tokens_by_expiry ON pairing_tokens (expires_at);"
    "CREATE TABLE watch_pairings ("
    "  watch_udid TEXT PRIMARY KEY NOT NULL,"
    "  phone_udid TEXT NOT NULL,"
    "  state      TEXT NOT NULL CHECK (state IN ('profile_issued', 'enrolled')),"
    "  paired_at  INTEGER NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");"
    "CREATE INDEX watch_pairings_by_phone ON watch_pairings (phone_udid, watch_udid);",

    /* 6: Automated Device Enrollment (server tokens, devices, profiles),
     * await configuration, settings. Token credentials arrive sealed
     * (encrypted by the caller); the store never holds them in clear. */
    "CREATE TABLE ade_tokens ("
    "  name                 TEXT PRIMARY KEY NOT NULL,"
    "  sealed               BLOB NOT NULL,"
    "  access_token_expiry  INTEGER NOT NULL DEFAULT 0,"
    "  server_name          TEXT,"
    "  server_uuid          TEXT,"
    "  org_name             TEXT,"
    "  default_profile_uuid TEXT,"
    "  cursor               TEXT,"
    "  cursor_at            INTEGER NOT NULL DEFAULT 0,"
    "  last_sync_at         INTEGER NOT NULL DEFAULT 0,"
    "  last_error           TEXT,"
    "  last_error_at        INTEGER NOT NULL DEFAULT 0,"
    "  imported_at          INTEGER NOT NULL,"
    "  updated_at           INTEGER NOT NULL"
    ");"
    "CREATE TABLE ade_devices ("
    "  serial_number        TEXT PRIMARY KEY NOT NULL,"
    "  token_name           TEXT NOT NULL,"
    "  model                TEXT,"
    "  description          TEXT,"
    "  color                TEXT,"
    "  asset_tag            TEXT,"
    "  device_family        TEXT,"
    "  os                   TEXT,"
    "  profile_status       TEXT,"
    "  profile_uuid         TEXT,"
    "  profile_assign_time  INTEGER NOT NULL DEFAULT 0,"
    "  profile_push_time    INTEGER NOT NULL DEFAULT 0,"
    "  device_assigned_date INTEGER NOT NULL DEFAULT 0,"
    "  device_assigned_by   TEXT,"
    "  op_type              TEXT,"
    "  op_date              INTEGER NOT NULL DEFAULT 0,"
    "  deleted              INTEGER NOT NULL DEFAULT 0,"
    "  updated_at           INTEGER NOT NULL"
    ");"
    "CREATE INDEX ade_devices_by_token ON ade_devices (token_name, serial_number);"
    "CREATE TABLE ade_profiles ("
    "  profile_uuid TEXT PRIMARY KEY NOT NULL,"
    "  token_name   TEXT NOT NULL,"
    "  name         TEXT,"
    "  json         TEXT NOT NULL,"
    "  created_at   INTEGER NOT NULL"
    ");"
    "CREATE INDEX ade_profiles_by_token ON ade_profiles (token_name, created_at);"
    "ALTER TABLE enrollments ADD COLUMN awaiting_configuration INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE settings ("
    "  name       TEXT PRIMARY KEY NOT NULL,"
    "  value      BLOB NOT NULL,"
    "  updated_at INTEGER NOT NULL"
    ");",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

/* Page size for list operations. */
#define LIST_LIMIT_MAX 1000

/* How long an operation waits for another connection's write lock. */
#define BUSY_TIMEOUT_MS 5000
#define BUSY_RETRY_MS 10

/* ---- statements ---------------------------------------------------------- */

#define ENR_COLUMNS SQ_ENR_COLUMNS

#define TARGET_COLUMNS                                                                                   \
    "c.uuid, t.enrollment_id, c.request_type, t.status, t.result, t.error_chain, t.queued_at, "          \
    "t.updated_at"

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_ENR_GET,
    ST_ENR_BY_CERT,
    ST_ENR_EXISTS,
    ST_ENR_STATE,
    ST_AUTH_UPSERT,
    ST_REENROLL_CANCEL_EVENTS,
    ST_REENROLL_CANCEL,
    ST_AUTH_EVENT,
    ST_TOKEN_DEVICE,
    ST_TOKEN_USER,
    ST_TOKEN_EVENT,
    ST_CHECKOUT,
    ST_CHECKOUT_EVENT,
    ST_TOUCH,
    ST_COUNT_ALL,
    ST_COUNT_STATE,
    ST_CMD_INSERT,
    ST_TARGET_INSERT,
    ST_QUEUED_EVENT,
    ST_REPORT_APPLY,
    ST_RESULT_EVENT,
    ST_NEXT_ANY,
    ST_NEXT_SKIP_NOTNOW,
    ST_CMD_GET,
    ST_TARGETS_OF_CMD,
    ST_ENR_CMDS_ALL,
    ST_ENR_CMDS_PENDING,
    ST_CANCEL_ONE,
    ST_CANCEL_EVENT,
    ST_EVENT_ADD,
    ST_EVENT_LIST_ALL,
    ST_EVENT_LIST_ENR,
    ST_COUNT_
};

static const char *const stmt_sql[ST_COUNT_] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",

    [ST_ENR_GET] = "SELECT " ENR_COLUMNS " FROM enrollments WHERE id = ?1",
    /* Should two device rows ever carry the same certificate, prefer the one
     * still enrolled, then the most recently changed. */
    [ST_ENR_BY_CERT] = "SELECT " ENR_COLUMNS " FROM enrollments"
                       " WHERE cert_sha256 = ?1 AND channel = 'device'"
                       " ORDER BY state = 'inactive', updated_at DESC, id LIMIT 1",
    [ST_ENR_EXISTS] = "SELECT 1 FROM enrollments WHERE id = ?1",
    [ST_ENR_STATE] = "SELECT state FROM enrollments WHERE id = ?1",

    /* Identity fields not given (NULL) keep their stored value. */
    [ST_AUTH_UPSERT] =
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, serial_number, model, model_name,"
        "  product_name, os_version, build_version, device_name, imei, meid, cert_sha256, state,"
        "  created_at, updated_at, last_seen_at, authenticated_at)"
        " VALUES (?1, ?1, ?2, 'device', ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, 'authenticated',"
        "  ?14, ?14, ?14, ?14)"
        " ON CONFLICT (id) DO UPDATE SET"
        "  udid = COALESCE(excluded.udid, udid),"
        "  topic = COALESCE(excluded.topic, topic),"
        "  serial_number = COALESCE(excluded.serial_number, serial_number),"
        "  model = COALESCE(excluded.model, model),"
        "  model_name = COALESCE(excluded.model_name, model_name),"
        "  product_name = COALESCE(excluded.product_name, product_name),"
        "  os_version = COALESCE(excluded.os_version, os_version),"
        "  build_version = COALESCE(excluded.build_version, build_version),"
        "  device_name = COALESCE(excluded.device_name, device_name),"
        "  imei = COALESCE(excluded.imei, imei),"
        "  meid = COALESCE(excluded.meid, meid),"
        "  cert_sha256 = COALESCE(excluded.cert_sha256, cert_sha256),"
        "  state = CASE WHEN state = 'inactive' THEN 'authenticated' ELSE state END,"
        "  updated_at = excluded.updated_at,"
        "  last_seen_at = excluded.last_seen_at, silent_since = 0,"
        "  authenticated_at = excluded.authenticated_at",
    /* Re-enrollment cancels what is still pending for the device channel and
     * its user channels: they were queued for the previous enrollment. The
     * events are written first, while the rows are still pending. */
    [ST_REENROLL_CANCEL_EVENTS] =
        "INSERT INTO events (at, enrollment_id, kind, detail)"
        " SELECT ?1, t.enrollment_id, 'command_cancelled',"
        "  json_object('command_uuid', c.uuid, 'request_type', c.request_type,"
        "              'reason', 're-enrollment')"
        " FROM enrollments e"
        " JOIN command_targets t ON t.enrollment_id = e.id AND t.pending = 1"
        " JOIN commands c ON c.id = t.command_id"
        " WHERE e.device_id = ?2 ORDER BY t.seq",
    [ST_REENROLL_CANCEL] = "UPDATE command_targets SET status = 'cancelled', pending = 0, updated_at = ?1"
                           " WHERE pending = 1"
                           "  AND enrollment_id IN (SELECT id FROM enrollments WHERE device_id = ?2)",
    [ST_AUTH_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                      " VALUES (?1, ?2, 'authenticate', json_object('previous_state', ?3, 'state', ?4,"
                      "  'cert_sha256', ?5, 'cancelled_commands', ?6))",

    /* Push fields not given (NULL) keep their stored value. */
    [ST_TOKEN_DEVICE] = "UPDATE enrollments SET"
                        "  topic = COALESCE(?2, topic),"
                        "  push_token = COALESCE(?3, push_token),"
                        "  push_magic = COALESCE(?4, push_magic),"
                        "  unlock_token = COALESCE(?5, unlock_token),"
                        "  state = 'active', token_updated_at = ?6, updated_at = ?6, last_seen_at = ?6,"
                        "  push_token_invalid = 0, silent_since = 0"
                        " WHERE id = ?1",
    /* A user channel inherits the UDID and certificate binding of its device
     * channel; the SELECT yields no row (nothing inserted) when that device
     * channel does not exist. The DO UPDATE guard keeps a device row that
     * happens to have the requested id from being rewritten as a user row. */
    [ST_TOKEN_USER] =
        "INSERT INTO enrollments (id, device_id, udid, channel, topic, user_id, user_short_name,"
        "  user_long_name, cert_sha256, state, push_token, push_magic, unlock_token, created_at,"
        "  updated_at, last_seen_at, token_updated_at)"
        " SELECT ?1, d.id, d.udid, 'user', COALESCE(?3, d.topic), ?4, ?5, ?6, d.cert_sha256, 'active',"
        "  ?7, ?8, ?9, ?10, ?10, ?10, ?10"
        " FROM enrollments d WHERE d.id = ?2 AND d.channel = 'device'"
        " ON CONFLICT (id) DO UPDATE SET"
        "  device_id = excluded.device_id,"
        "  udid = excluded.udid,"
        "  cert_sha256 = excluded.cert_sha256,"
        "  topic = COALESCE(?3, topic),"
        "  user_id = COALESCE(?4, user_id),"
        "  user_short_name = COALESCE(?5, user_short_name),"
        "  user_long_name = COALESCE(?6, user_long_name),"
        "  push_token = COALESCE(?7, push_token),"
        "  push_magic = COALESCE(?8, push_magic),"
        "  unlock_token = COALESCE(?9, unlock_token),"
        "  state = 'active', updated_at = ?10, last_seen_at = ?10, token_updated_at = ?10,"
        "  push_token_invalid = 0, silent_since = 0"
        " WHERE channel = 'user'",
    /* Never the token, unlock token or push magic: they are secrets. */
    [ST_TOKEN_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                       " VALUES (?1, ?2, 'token_update', json_object('channel', ?3, 'topic', ?4,"
                       "  'unlock_token_updated', json(CASE WHEN ?5 THEN 'true' ELSE 'false' END)))",

    /* id = device_id covers the device row and its user channels; id = ?1
     * also lets a lone user channel be checked out by its own id. */
    [ST_CHECKOUT] = "UPDATE enrollments SET state = 'inactive', checked_out_at = ?2, updated_at = ?2,"
                    "  last_seen_at = ?2, silent_since = 0"
                    " WHERE id = ?1 OR device_id = ?1",
    [ST_CHECKOUT_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                          " VALUES (?1, ?2, 'checkout', json_object('enrollments', ?3))",
    /* Heard from: no longer silent. */
    [ST_TOUCH] = "UPDATE enrollments SET last_seen_at = ?2, silent_since = 0 WHERE id = ?1",
    [ST_COUNT_ALL] = "SELECT count(*) FROM enrollments",
    [ST_COUNT_STATE] = "SELECT count(*) FROM enrollments WHERE state = ?1",

    /* On success the new command's id is sqlite3_last_insert_rowid(). */
    [ST_CMD_INSERT] = "INSERT INTO commands (uuid, request_type, body, created_at) VALUES (?1, ?2, ?3, ?4)"
                      " ON CONFLICT (uuid) DO NOTHING",
    /* Inserts nothing for an unknown enrollment (the SELECT is empty) or for
     * an id listed twice (the conflict). */
    [ST_TARGET_INSERT] = "INSERT INTO command_targets (command_id, enrollment_id, status, pending,"
                         "  queued_at, updated_at)"
                         " SELECT ?1, id, 'queued', 1, ?3, ?3 FROM enrollments WHERE id = ?2"
                         " ON CONFLICT (enrollment_id, command_id) DO NOTHING",
    [ST_QUEUED_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                        " VALUES (?1, ?2, 'command_queued', json_object('command_uuid', ?3,"
                        "  'request_type', ?4))",

    /* Only a pending target takes a report: a repeat or a report for another
     * enrollment's command updates nothing. */
    [ST_REPORT_APPLY] = "UPDATE command_targets SET status = ?3, pending = ?4, result = ?5, error_chain = ?6,"
                        "  updated_at = ?7"
                        " WHERE enrollment_id = ?1 AND pending = 1"
                        "  AND command_id = (SELECT id FROM commands WHERE uuid = ?2)",
    [ST_RESULT_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                        " SELECT ?1, ?2, 'command_result', json_object('command_uuid', uuid, 'status', ?3,"
                        "  'request_type', request_type)"
                        " FROM commands WHERE uuid = ?4 RETURNING json_extract(detail, '$.request_type')",
    [ST_NEXT_ANY] = "SELECT c.uuid, c.request_type, c.body, c.created_at"
                    " FROM command_targets t JOIN commands c ON c.id = t.command_id"
                    " WHERE t.enrollment_id = ?1 AND t.pending = 1"
                    " ORDER BY t.seq LIMIT 1",
    [ST_NEXT_SKIP_NOTNOW] = "SELECT c.uuid, c.request_type, c.body, c.created_at"
                            " FROM command_targets t JOIN commands c ON c.id = t.command_id"
                            " WHERE t.enrollment_id = ?1 AND t.pending = 1 AND t.status <> 'NotNow'"
                            " ORDER BY t.seq LIMIT 1",

    [ST_CMD_GET] = "SELECT uuid, request_type, body, created_at FROM commands WHERE uuid = ?1",
    [ST_TARGETS_OF_CMD] = "SELECT " TARGET_COLUMNS " FROM commands c"
                          " JOIN command_targets t ON t.command_id = c.id"
                          " WHERE c.uuid = ?1 ORDER BY t.seq",
    [ST_ENR_CMDS_ALL] = "SELECT " TARGET_COLUMNS " FROM command_targets t"
                        " JOIN commands c ON c.id = t.command_id"
                        " WHERE t.enrollment_id = ?1 ORDER BY t.seq DESC LIMIT ?2",
    [ST_ENR_CMDS_PENDING] = "SELECT " TARGET_COLUMNS " FROM command_targets t"
                            " JOIN commands c ON c.id = t.command_id"
                            " WHERE t.enrollment_id = ?1 AND t.pending = 1 ORDER BY t.seq DESC LIMIT ?2",
    [ST_CANCEL_ONE] = "UPDATE command_targets SET status = 'cancelled', pending = 0, updated_at = ?3"
                      " WHERE enrollment_id = ?1 AND pending = 1"
                      "  AND command_id = (SELECT id FROM commands WHERE uuid = ?2)",
    [ST_CANCEL_EVENT] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                        " SELECT ?1, ?2, 'command_cancelled', json_object('command_uuid', uuid,"
                        "  'request_type', request_type, 'reason', 'cancelled')"
                        " FROM commands WHERE uuid = ?3",

    /* json() rejects malformed detail text, so the log stays valid JSON. */
    [ST_EVENT_ADD] = "INSERT INTO events (at, enrollment_id, kind, detail)"
                     " VALUES (?1, ?2, ?3, COALESCE(json(?4), '{}'))",
    [ST_EVENT_LIST_ALL] = "SELECT id, at, enrollment_id, kind, detail FROM events ORDER BY id DESC LIMIT ?1",
    [ST_EVENT_LIST_ENR] = "SELECT id, at, enrollment_id, kind, detail FROM events WHERE enrollment_id = ?1"
                          " ORDER BY id DESC LIMIT ?2",
};

/* enrollment_list has four optional filters. Rather than one statement with
 * "(?1 IS NULL OR state = ?1)" terms, which hide the usable index from the
 * planner, one statement is prepared per combination of filters present,
 * assembled from the constant fragments below (never from user data). */
enum {
    LIST_BY_STATE = 1,
    LIST_BY_MODEL = 2,
    LIST_BY_SERIAL = 4,
    LIST_AFTER = 8,
    LIST_SILENT = 16,
    LIST_NOT_SILENT = 32,
    LIST_VARIANTS = 64
};

struct sq_store {
    store_t base; /* first: store_t * and sq_store * convert both ways */
    sqlite3 *db;
    sqlite3_stmt *stmts[ST_COUNT_];
    sqlite3_stmt *list_stmts[LIST_VARIANTS];
    sqlite3_stmt *enroll_stmts[SQ_ENROLL_STMTS]; /* store_sqlite_enroll.c */
    sqlite3_stmt *push_stmts[SQ_PUSH_STMTS];     /* store_sqlite_push.c */
    sqlite3_stmt *inactive_stmts[SQ_INACTIVE_STMTS]; /* store_sqlite_inactive.c */
    sqlite3_stmt *ddm_stmts[SQ_DDM_STMTS];           /* store_sqlite_ddm.c */
    sqlite3_stmt *watch_stmts[SQ_WATCH_STMTS];       /* store_sqlite_watch.c */
    sqlite3_stmt *settings_stmts[SQ_SETTINGS_STMTS]; /* store_sqlite_settings.c */
    sqlite3_stmt *ade_stmts[SQ_ADE_STMTS];           /* store_sqlite_ade.c */
    sq_sync_t *sync; /* writer gate and group fsync shared with this process's other handles */
    int writing;     /* holds the writer gate */
    char err[512];
};

sq_store *sq(store_t *s)
{
    return (sq_store *)s;
}

/* ---- errors -------------------------------------------------------------- */

__attribute__((format(printf, 3, 4))) static int fail(sq_store *s, int rc, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(s->err, sizeof s->err, fmt, ap);
    va_end(ap);
    return rc;
}

/* Records the connection's current error with what was being done. Call it
 * before resetting the statement or rolling back, which may replace it. */
static int fail_db(sq_store *s, const char *what)
{
    return fail(s, STORE_ERR, "%s: %s (sqlite error %d)", what, sqlite3_errmsg(s->db),
                sqlite3_extended_errcode(s->db));
}

static int fail_oom(sq_store *s)
{
    return fail(s, STORE_ERR, "out of memory");
}

/* ---- statement helpers --------------------------------------------------- */

static sqlite3_stmt *prepare_cached(sq_store *s, sqlite3_stmt **slot, const char *sql)
{
    if (*slot)
        return *slot;
    /* PERSISTENT: these live as long as the handle, so SQLite may keep them
     * out of its short-lived lookaside memory. */
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, slot, NULL) != SQLITE_OK) {
        fail_db(s, "preparing statement");
        sqlite3_finalize(*slot);
        *slot = NULL;
    }
    return *slot;
}

static sqlite3_stmt *stmt(sq_store *s, enum stmt_id id)
{
    return prepare_cached(s, &s->stmts[id], stmt_sql[id]);
}

/* Makes a cached statement ready for its next use. Resetting also ends the
 * implicit read transaction of an autocommit SELECT, which would otherwise
 * pin an old WAL snapshot and block checkpoints. */
static void stmt_release(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* Values are bound SQLITE_STATIC: the caller's buffers outlive the step, and
 * stmt_release() clears the bindings before they could dangle. NULL binds SQL
 * NULL, which the statements read as "not given". */
static int bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

static int bind_blob(sqlite3_stmt *st, int i, const void *v, size_t len)
{
    /* A non-NULL zero-length buffer is an empty blob, not NULL. */
    static const char empty[1];
    if (!v)
        return sqlite3_bind_null(st, i);
    return sqlite3_bind_blob64(st, i, len ? v : empty, (sqlite3_uint64)len, SQLITE_STATIC);
}

static int bind_int(sqlite3_stmt *st, int i, int64_t v)
{
    return sqlite3_bind_int64(st, i, (sqlite3_int64)v);
}

/* Runs a statement that returns no rows. *changes (if given) receives the
 * number of rows it inserted/updated. */
static int exec_stmt(sq_store *s, sqlite3_stmt *st, const char *what, int *changes)
{
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) {
        fail_db(s, what);
        stmt_release(st);
        return STORE_ERR;
    }
    if (changes)
        *changes = sqlite3_changes(s->db);
    stmt_release(st);
    return STORE_OK;
}

static int bind_failed(sq_store *s, sqlite3_stmt *st, const char *what)
{
    fail_db(s, what);
    stmt_release(st);
    return STORE_ERR;
}

/* ---- transactions -------------------------------------------------------- */

static void gate_release(sq_store *s)
{
    if (s->writing) {
        s->writing = 0;
        sq_sync_writer_unlock(s->sync);
    }
}

static int tx_begin(sq_store *s)
{
    sq_sync_writer_lock(s->sync);
    s->writing = 1;
    sqlite3_stmt *st = stmt(s, ST_BEGIN);
    int rc = st ? exec_stmt(s, st, "starting write transaction", NULL) : STORE_ERR;
    if (rc != STORE_OK)
        gate_release(s);
    return rc;
}

/* Some errors (I/O, disk full, busy during commit) already roll the
 * transaction back; only roll back what is still open. The error message of
 * the failure that led here is kept. */
static void tx_rollback(sq_store *s)
{
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_stmt *st = stmt(s, ST_ROLLBACK);
        if (st) {
            sqlite3_step(st);
            stmt_release(st);
        }
        if (!sqlite3_get_autocommit(s->db))
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); /* last resort, e.g. the prepare failed */
    }
    gate_release(s);
}

/* Commits, lets the next writer in, then waits for the group fsync: the
 * transaction is on disk when this returns STORE_OK. */
static int tx_commit(sq_store *s)
{
    sqlite3_stmt *st = stmt(s, ST_COMMIT);
    if (!st || exec_stmt(s, st, "committing", NULL) != STORE_OK) {
        tx_rollback(s);
        return STORE_ERR;
    }
    uint64_t gen = sq_sync_committed(s->sync);
    gate_release(s);
    if (sq_sync_durable(s->sync, gen) != 0)
        return fail(s, STORE_ERR, "flushing the write-ahead log to disk failed");
    return STORE_OK;
}

/* Abandons the write operation in progress (undoing all of it) and passes
 * `rc` through, so error paths read "return tx_abort(s, rc)". */
static int tx_abort(sq_store *s, int rc)
{
    tx_rollback(s);
    return rc;
}

/* Helpers shared with store_sqlite_enroll.c (store_sqlite_internal.h). */
int sq_fail_db(sq_store *s, const char *what)
{
    return fail_db(s, what);
}

int sq_fail_oom(sq_store *s)
{
    return fail_oom(s);
}

int sq_fail_arg(sq_store *s, const char *what)
{
    return fail(s, STORE_ERR, "%s: invalid argument", what);
}

sqlite3_stmt *sq_prepare_cached(sq_store *s, sqlite3_stmt **slot, const char *sql)
{
    return prepare_cached(s, slot, sql);
}

sqlite3_stmt *sq_enroll_stmt(sq_store *s, int id, const char *sql)
{
    return prepare_cached(s, &s->enroll_stmts[id], sql);
}

sqlite3_stmt *sq_push_stmt(sq_store *s, int id, const char *sql)
{
    return prepare_cached(s, &s->push_stmts[id], sql);
}

sqlite3_stmt *sq_inactive_stmt(sq_store *s, int id, const char *sql)
{
    return prepare_cached(s, &s->inactive_stmts[id], sql);
}

sqlite3_stmt *sq_ddm_stmt(sq_store *s, int id, const char *sql)
{
    return prepare_cached(s, &s->ddm_stmts[id], sql);
}

sqlite3_stmt *sq_watch_stmt(sq_store *s, int id, const char *sql)
{
    return prepare_cached(s, &s->watch_stmts[id], sql);
}

sqlite3_stmt *sq_settings_stmt(sq_store *s, int id, const char *sql)
{
    return prepare_cached(s, &s->settings_stmts[id], sql);
}

sqlite3_stmt *sq_ade_stmt(sq_store *s, int id, const char *sql)
{
    return prepare_cached(s, &s->ade_stmts[id], sql);
}

int sq_bind_text(sqlite3_stmt *st, int i, const char *v)
{
    return bind_text(st, i, v);
}

int sq_bind_blob(sqlite3_stmt *st, int i, const void *v, size_t len)
{
    return bind_blob(st, i, v, len);
}

int sq_exec(sq_store *s, sqlite3_stmt *st, const char *what, int *changes)
{
    return exec_stmt(s, st, what, changes);
}

int sq_bind_failed(sq_store *s, sqlite3_stmt *st, const char *what)
{
    return bind_failed(s, st, what);
}

void sq_stmt_release(sqlite3_stmt *st)
{
    stmt_release(st);
}

int sq_tx_begin(sq_store *s)
{
    return tx_begin(s);
}

int sq_tx_commit(sq_store *s)
{
    return tx_commit(s);
}

int sq_tx_abort(sq_store *s, int rc)
{
    return tx_abort(s, rc);
}

sqlite3 *sq_db(sq_store *s)
{
    return s->db;
}

/* ---- row decoding -------------------------------------------------------- */

/* Column copies return -1 only on allocation failure. */
static int col_text(sqlite3_stmt *st, int i, char **out)
{
    *out = NULL;
    const unsigned char *v = sqlite3_column_text(st, i);
    if (!v)
        return sqlite3_column_type(st, i) == SQLITE_NULL ? 0 : -1;
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    *out = malloc(n + 1);
    if (!*out)
        return -1;
    memcpy(*out, v, n + 1);
    return 0;
}

/* SQL NULL comes back as NULL; an empty blob as a non-NULL buffer of length
 * 0, so callers can tell "no value" from "empty value". One NUL byte is
 * appended beyond *len, so a text plist can also be handed to string
 * functions (e.g. for logging) without overrunning. */
static int col_blob(sqlite3_stmt *st, int i, unsigned char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    if (sqlite3_column_type(st, i) == SQLITE_NULL)
        return 0;
    const void *v = sqlite3_column_blob(st, i);
    size_t n = (size_t)sqlite3_column_bytes(st, i);
    if (!v && n > 0)
        return -1; /* conversion ran out of memory */
    *out = malloc(n + 1);
    if (!*out)
        return -1;
    if (n)
        memcpy(*out, v, n);
    (*out)[n] = '\0';
    *len = n;
    return 0;
}

static int read_enrollment(sqlite3_stmt *st, enrollment_t *e)
{
    memset(e, 0, sizeof *e);
    int bad = 0;
    bad |= col_text(st, 0, &e->id);
    bad |= col_text(st, 1, &e->device_id);
    bad |= col_text(st, 2, &e->udid);
    bad |= col_text(st, 3, &e->channel);
    bad |= col_text(st, 4, &e->topic);
    bad |= col_text(st, 5, &e->serial_number);
    bad |= col_text(st, 6, &e->model);
    bad |= col_text(st, 7, &e->model_name);
    bad |= col_text(st, 8, &e->product_name);
    bad |= col_text(st, 9, &e->os_version);
    bad |= col_text(st, 10, &e->build_version);
    bad |= col_text(st, 11, &e->device_name);
    bad |= col_text(st, 12, &e->imei);
    bad |= col_text(st, 13, &e->meid);
    bad |= col_text(st, 14, &e->user_id);
    bad |= col_text(st, 15, &e->user_short_name);
    bad |= col_text(st, 16, &e->user_long_name);
    bad |= col_text(st, 17, &e->cert_sha256);
    bad |= col_text(st, 18, &e->state);
    bad |= col_blob(st, 19, &e->push_token, &e->push_token_len);
    bad |= col_text(st, 20, &e->push_magic);
    bad |= col_blob(st, 21, &e->unlock_token, &e->unlock_token_len);
    e->created_at = sqlite3_column_int64(st, 22);
    e->updated_at = sqlite3_column_int64(st, 23);
    e->last_seen_at = sqlite3_column_int64(st, 24);
    e->authenticated_at = sqlite3_column_int64(st, 25);
    e->token_updated_at = sqlite3_column_int64(st, 26);
    e->checked_out_at = sqlite3_column_int64(st, 27);
    e->last_push_at = sqlite3_column_int64(st, 28);
    bad |= col_text(st, 29, &e->last_push_id);
    bad |= col_text(st, 30, &e->last_push_error);
    e->push_token_invalid = sqlite3_column_int(st, 31) != 0;
    e->silent_since = sqlite3_column_int64(st, 32);
    e->last_repush_at = sqlite3_column_int64(st, 33);
    e->supervised = sqlite3_column_int(st, 34);
    e->awaiting_configuration = sqlite3_column_int(st, 35);
    if (bad) {
        enrollment_free(e);
        return -1;
    }
    return 0;
}

int sq_read_enrollment(sqlite3_stmt *st, enrollment_t *e)
{
    return read_enrollment(st, e);
}

int sq_col_text(sqlite3_stmt *st, int i, char **out)
{
    return col_text(st, i, out);
}

int sq_col_blob(sqlite3_stmt *st, int i, unsigned char **out, size_t *len)
{
    return col_blob(st, i, out, len);
}

static int read_command(sqlite3_stmt *st, command_t *c)
{
    memset(c, 0, sizeof *c);
    int bad = 0;
    bad |= col_text(st, 0, &c->uuid);
    bad |= col_text(st, 1, &c->request_type);
    bad |= col_blob(st, 2, &c->body, &c->body_len);
    c->created_at = sqlite3_column_int64(st, 3);
    if (bad) {
        command_free(c);
        return -1;
    }
    return 0;
}

static int read_target(sqlite3_stmt *st, command_target_t *t)
{
    memset(t, 0, sizeof *t);
    int bad = 0;
    bad |= col_text(st, 0, &t->command_uuid);
    bad |= col_text(st, 1, &t->enrollment_id);
    bad |= col_text(st, 2, &t->request_type);
    bad |= col_text(st, 3, &t->status);
    bad |= col_blob(st, 4, &t->result, &t->result_len);
    bad |= col_text(st, 5, &t->error_chain_json);
    t->queued_at = sqlite3_column_int64(st, 6);
    t->updated_at = sqlite3_column_int64(st, 7);
    if (bad) {
        command_target_free(t);
        return -1;
    }
    return 0;
}

static int read_event(sqlite3_stmt *st, store_event_t *ev)
{
    memset(ev, 0, sizeof *ev);
    int bad = 0;
    ev->id = sqlite3_column_int64(st, 0);
    ev->at = sqlite3_column_int64(st, 1);
    bad |= col_text(st, 2, &ev->enrollment_id);
    bad |= col_text(st, 3, &ev->kind);
    bad |= col_text(st, 4, &ev->detail);
    if (bad) {
        store_event_free(ev);
        return -1;
    }
    return 0;
}

/* Steps a statement expected to yield at most one row and decodes it with
 * `decode` into `out`. STORE_OK, STORE_NOTFOUND (no row) or STORE_ERR. */
static int fetch_one(sq_store *s, sqlite3_stmt *st, int (*decode)(sqlite3_stmt *, void *), void *out,
                     const char *what)
{
    int rc = sqlite3_step(st);
    int result;
    if (rc == SQLITE_ROW)
        result = decode(st, out) == 0 ? STORE_OK : fail_oom(s);
    else if (rc == SQLITE_DONE)
        result = STORE_NOTFOUND;
    else
        result = fail_db(s, what);
    stmt_release(st);
    return result;
}

static int read_enrollment_v(sqlite3_stmt *st, void *out)
{
    return read_enrollment(st, out);
}

static int read_command_v(sqlite3_stmt *st, void *out)
{
    return read_command(st, out);
}

/* Existence/state probe: copies column 0 as text, or just checks presence
 * when out is NULL. */
static int read_text0_v(sqlite3_stmt *st, void *out)
{
    return out ? col_text(st, 0, out) : 0;
}

/* Streams the rows of `st` to a command_target callback. */
static int stream_targets(sq_store *s, sqlite3_stmt *st, command_target_cb cb, void *ctx, int *rows,
                          const char *what)
{
    int n = 0, rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        command_target_t t;
        if (read_target(st, &t) != 0) {
            stmt_release(st);
            return fail_oom(s);
        }
        n++;
        int stop = cb ? cb(ctx, &t) : 0;
        command_target_free(&t);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fail_db(s, what);
        stmt_release(st);
        return STORE_ERR;
    }
    stmt_release(st);
    if (rows)
        *rows = n;
    return STORE_OK;
}

static int clamp_limit(int limit)
{
    return limit < 1 ? 1 : limit > LIST_LIMIT_MAX ? LIST_LIMIT_MAX : limit;
}

#define REQUIRE_ARG(s, cond)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            return fail((s), STORE_ERR, "%s: invalid argument (%s)", __func__, #cond);           \
    } while (0)

/* ---- enrollments --------------------------------------------------------- */

static int sq_enrollment_get(store_t *base, const char *id, enrollment_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    REQUIRE_ARG(s, id);
    sqlite3_stmt *st = stmt(s, ST_ENR_GET);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, id) != SQLITE_OK)
        return bind_failed(s, st, "enrollment_get");
    int rc = fetch_one(s, st, read_enrollment_v, out, "reading enrollment");
    if (rc == STORE_NOTFOUND)
        fail(s, rc, "enrollment not found");
    return rc;
}

static int sq_enrollment_by_cert(store_t *base, const char *cert_sha256, enrollment_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    REQUIRE_ARG(s, cert_sha256);
    sqlite3_stmt *st = stmt(s, ST_ENR_BY_CERT);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, cert_sha256) != SQLITE_OK)
        return bind_failed(s, st, "enrollment_by_cert");
    int rc = fetch_one(s, st, read_enrollment_v, out, "finding enrollment by certificate");
    if (rc == STORE_NOTFOUND)
        fail(s, rc, "no device enrollment is bound to this certificate");
    return rc;
}

/* Cancels everything still pending for device `device_id` and its user
 * channels, with one event per cancelled command. Inside a transaction. */
static int cancel_for_reenrollment(sq_store *s, const char *device_id, int64_t now, int *cancelled)
{
    sqlite3_stmt *st = stmt(s, ST_REENROLL_CANCEL_EVENTS);
    if (!st)
        return STORE_ERR;
    if (bind_int(st, 1, now) | bind_text(st, 2, device_id))
        return bind_failed(s, st, "authenticate");
    if (exec_stmt(s, st, "logging cancelled commands", NULL) != STORE_OK)
        return STORE_ERR;

    st = stmt(s, ST_REENROLL_CANCEL);
    if (!st)
        return STORE_ERR;
    if (bind_int(st, 1, now) | bind_text(st, 2, device_id))
        return bind_failed(s, st, "authenticate");
    return exec_stmt(s, st, "cancelling stale commands", cancelled);
}

static int sq_authenticate(store_t *base, const enrollment_t *e, int64_t now)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, e && e->id);
    if (tx_begin(s) != STORE_OK)
        return STORE_ERR;

    char *prev_state = NULL;
    sqlite3_stmt *st = stmt(s, ST_ENR_STATE);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_text(st, 1, e->id) != SQLITE_OK)
        return tx_abort(s, bind_failed(s, st, "authenticate"));
    int rc = fetch_one(s, st, read_text0_v, &prev_state, "reading enrollment state");
    if (rc == STORE_ERR)
        return tx_abort(s, rc);

    /* A new enrollment has nothing queued yet; an inactive one is being
     * re-enrolled and its leftovers must not run. Either way the device
     * starts without DDM state (unenrollment wiped it on the device), so
     * what orchard kept about it, e.g. rows a status report left for an id
     * that never enrolled, is dropped. */
    int cancelled = 0;
    int reenrolling = prev_state && strcmp(prev_state, ENR_STATE_INACTIVE) == 0;
    if (reenrolling && cancel_for_reenrollment(s, e->id, now, &cancelled) != STORE_OK)
        goto fail;
    if ((!prev_state || reenrolling) && sq_ddm_forget(s, e->id) != STORE_OK)
        goto fail;

    st = stmt(s, ST_AUTH_UPSERT);
    if (!st)
        goto fail;
    if (bind_text(st, 1, e->id) | bind_text(st, 2, e->udid) | bind_text(st, 3, e->topic) |
        bind_text(st, 4, e->serial_number) | bind_text(st, 5, e->model) | bind_text(st, 6, e->model_name) |
        bind_text(st, 7, e->product_name) | bind_text(st, 8, e->os_version) |
        bind_text(st, 9, e->build_version) | bind_text(st, 10, e->device_name) | bind_text(st, 11, e->imei) |
        bind_text(st, 12, e->meid) | bind_text(st, 13, e->cert_sha256) | bind_int(st, 14, now)) {
        bind_failed(s, st, "authenticate");
        goto fail;
    }
    if (exec_stmt(s, st, "storing enrollment", NULL) != STORE_OK)
        goto fail;

    const char *new_state =
        prev_state && strcmp(prev_state, ENR_STATE_INACTIVE) != 0 ? prev_state : ENR_STATE_AUTHENTICATED;
    st = stmt(s, ST_AUTH_EVENT);
    if (!st)
        goto fail;
    if (bind_int(st, 1, now) | bind_text(st, 2, e->id) | bind_text(st, 3, prev_state) |
        bind_text(st, 4, new_state) | bind_text(st, 5, e->cert_sha256) | bind_int(st, 6, cancelled)) {
        bind_failed(s, st, "authenticate");
        goto fail;
    }
    if (exec_stmt(s, st, "logging authenticate", NULL) != STORE_OK)
        goto fail;
    free(prev_state);
    return tx_commit(s);

fail:
    free(prev_state);
    return tx_abort(s, STORE_ERR);
}

static int sq_token_update(store_t *base, const char *id, const char *device_id, const token_update_t *t,
                           int64_t now)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, id && t);
    int user_channel = device_id && strcmp(id, device_id) != 0;
    if (tx_begin(s) != STORE_OK)
        return STORE_ERR;

    int changed = 0, brc;
    sqlite3_stmt *st;
    if (!user_channel) {
        st = stmt(s, ST_TOKEN_DEVICE);
        if (!st)
            return tx_abort(s, STORE_ERR);
        brc = bind_text(st, 1, id) | bind_text(st, 2, t->topic) |
              bind_blob(st, 3, t->push_token, t->push_token_len) | bind_text(st, 4, t->push_magic) |
              bind_blob(st, 5, t->unlock_token, t->unlock_token_len) | bind_int(st, 6, now);
    } else {
        st = stmt(s, ST_TOKEN_USER);
        if (!st)
            return tx_abort(s, STORE_ERR);
        brc = bind_text(st, 1, id) | bind_text(st, 2, device_id) | bind_text(st, 3, t->topic) |
              bind_text(st, 4, t->user_id) | bind_text(st, 5, t->user_short_name) |
              bind_text(st, 6, t->user_long_name) | bind_blob(st, 7, t->push_token, t->push_token_len) |
              bind_text(st, 8, t->push_magic) | bind_blob(st, 9, t->unlock_token, t->unlock_token_len) |
              bind_int(st, 10, now);
    }
    if (brc)
        return tx_abort(s, bind_failed(s, st, "token_update"));
    if (exec_stmt(s, st, "storing token update", &changed) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    if (changed == 0)
        return tx_abort(s, fail(s, STORE_NOTFOUND, "device-channel enrollment %s not found",
                                user_channel ? device_id : id));

    st = stmt(s, ST_TOKEN_EVENT);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_int(st, 1, now) | bind_text(st, 2, id) | bind_text(st, 3, user_channel ? "user" : "device") |
        bind_text(st, 4, t->topic) | bind_int(st, 5, t->unlock_token != NULL))
        return tx_abort(s, bind_failed(s, st, "token_update"));
    if (exec_stmt(s, st, "logging token update", NULL) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    return tx_commit(s);
}

static int sq_checkout(store_t *base, const char *id, int64_t now)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, id);
    if (tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int changed = 0;
    sqlite3_stmt *st = stmt(s, ST_CHECKOUT);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_text(st, 1, id) | bind_int(st, 2, now))
        return tx_abort(s, bind_failed(s, st, "checkout"));
    if (exec_stmt(s, st, "checking out", &changed) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    if (changed == 0)
        return tx_abort(s, fail(s, STORE_NOTFOUND, "enrollment %s not found", id));

    st = stmt(s, ST_CHECKOUT_EVENT);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_int(st, 1, now) | bind_text(st, 2, id) | bind_int(st, 3, changed))
        return tx_abort(s, bind_failed(s, st, "checkout"));
    if (exec_stmt(s, st, "logging checkout", NULL) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    return tx_commit(s);
}

static int sq_touch(store_t *base, const char *id, int64_t now)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, id);
    if (tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int changed = 0;
    sqlite3_stmt *st = stmt(s, ST_TOUCH);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_text(st, 1, id) | bind_int(st, 2, now))
        return tx_abort(s, bind_failed(s, st, "touch"));
    if (exec_stmt(s, st, "recording last seen", &changed) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    if (changed == 0)
        return tx_abort(s, fail(s, STORE_NOTFOUND, "enrollment %s not found", id));
    return tx_commit(s);
}

static sqlite3_stmt *list_stmt(sq_store *s, unsigned variant)
{
    if (s->list_stmts[variant])
        return s->list_stmts[variant];
    char sql[1024];
    snprintf(sql, sizeof sql, "SELECT " ENR_COLUMNS " FROM enrollments WHERE 1%s%s%s%s%s ORDER BY id LIMIT ?5",
             variant & LIST_BY_STATE ? " AND state = ?1" : "",
             variant & LIST_BY_MODEL ? " AND (model = ?2 OR product_name = ?2)" : "",
             variant & LIST_BY_SERIAL ? " AND serial_number = ?3" : "", variant & LIST_AFTER ? " AND id > ?4" : "",
             variant & LIST_SILENT ? " AND silent_since > 0" : variant & LIST_NOT_SILENT ? " AND silent_since = 0" : "");
    return prepare_cached(s, &s->list_stmts[variant], sql);
}

static int sq_enrollment_list(store_t *base, const enrollment_filter_t *f, enrollment_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, f);
    unsigned variant = (f->state ? LIST_BY_STATE : 0) | (f->model ? LIST_BY_MODEL : 0) |
                       (f->serial ? LIST_BY_SERIAL : 0) | (f->after ? LIST_AFTER : 0) |
                       (f->silent > 0 ? LIST_SILENT : f->silent < 0 ? LIST_NOT_SILENT : 0);
    sqlite3_stmt *st = list_stmt(s, variant);
    if (!st)
        return STORE_ERR;
    int brc = bind_int(st, 5, clamp_limit(f->limit));
    if (f->state)
        brc |= bind_text(st, 1, f->state);
    if (f->model)
        brc |= bind_text(st, 2, f->model);
    if (f->serial)
        brc |= bind_text(st, 3, f->serial);
    if (f->after)
        brc |= bind_text(st, 4, f->after);
    if (brc)
        return bind_failed(s, st, "enrollment_list");

    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        enrollment_t e;
        if (read_enrollment(st, &e) != 0) {
            stmt_release(st);
            return fail_oom(s);
        }
        int stop = cb ? cb(ctx, &e) : 0;
        enrollment_free(&e);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fail_db(s, "listing enrollments");
        stmt_release(st);
        return STORE_ERR;
    }
    stmt_release(st);
    return STORE_OK;
}

static int sq_enrollment_count(store_t *base, const char *state, int64_t *out)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, out);
    *out = 0;
    sqlite3_stmt *st = stmt(s, state ? ST_COUNT_STATE : ST_COUNT_ALL);
    if (!st)
        return STORE_ERR;
    if (state && bind_text(st, 1, state) != SQLITE_OK)
        return bind_failed(s, st, "enrollment_count");
    int rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        fail_db(s, "counting enrollments");
        stmt_release(st);
        return STORE_ERR;
    }
    *out = sqlite3_column_int64(st, 0);
    stmt_release(st);
    return STORE_OK;
}

/* ---- commands ------------------------------------------------------------ */

/* Stores a command row inside the open transaction (shared with
 * ddm_sync_queue). STORE_CONFLICT if the UUID exists. */
int sq_command_insert(sq_store *s, const command_t *cmd, int64_t now, int64_t *command_id)
{
    int changed = 0;
    sqlite3_stmt *st = stmt(s, ST_CMD_INSERT);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, cmd->uuid) | bind_text(st, 2, cmd->request_type) |
        bind_blob(st, 3, cmd->body, cmd->body_len) | bind_int(st, 4, now))
        return bind_failed(s, st, "storing command");
    if (exec_stmt(s, st, "storing command", &changed) != STORE_OK)
        return STORE_ERR;
    if (changed == 0)
        return fail(s, STORE_CONFLICT, "command %s already exists", cmd->uuid);
    *command_id = sqlite3_last_insert_rowid(s->db);
    return STORE_OK;
}

/* Queues stored command `command_id` for enrollment `id` with its
 * "command_queued" event, inside the open transaction. *added = 0 when the
 * enrollment does not exist or already has this command. */
int sq_command_target_add(sq_store *s, int64_t command_id, const command_t *cmd, const char *id, int64_t now,
                          int *added)
{
    int changed = 0;
    *added = 0;
    sqlite3_stmt *st = stmt(s, ST_TARGET_INSERT);
    if (!st)
        return STORE_ERR;
    if (bind_int(st, 1, command_id) | bind_text(st, 2, id) | bind_int(st, 3, now))
        return bind_failed(s, st, "queueing command");
    if (exec_stmt(s, st, "queueing command", &changed) != STORE_OK)
        return STORE_ERR;
    if (changed == 0)
        return STORE_OK;
    if (!(st = stmt(s, ST_QUEUED_EVENT)))
        return STORE_ERR;
    if (bind_int(st, 1, now) | bind_text(st, 2, id) | bind_text(st, 3, cmd->uuid) |
        bind_text(st, 4, cmd->request_type))
        return bind_failed(s, st, "queueing command");
    if (exec_stmt(s, st, "logging queued command", NULL) != STORE_OK)
        return STORE_ERR;
    *added = 1;
    return STORE_OK;
}

/* Does the work of command_enqueue inside the open transaction; returns the
 * operation's result without committing or rolling back. */
static int enqueue_in_tx(sq_store *s, const command_t *cmd, const char *const *ids, size_t n, int *status,
                         int64_t now)
{
    int64_t command_id = 0;
    int inserted = sq_command_insert(s, cmd, now, &command_id);
    if (inserted != STORE_OK)
        return inserted;

    size_t queued = 0;
    for (size_t i = 0; i < n; i++) {
        int added = 0;
        if (sq_command_target_add(s, command_id, cmd, ids[i], now, &added) != STORE_OK)
            return STORE_ERR;
        if (!added) {
            /* Unknown, or listed twice: a repeated id is known and already
             * queued by its first listing, so it counts as STORE_OK. */
            sqlite3_stmt *st = stmt(s, ST_ENR_EXISTS);
            if (!st)
                return STORE_ERR;
            if (bind_text(st, 1, ids[i]) != SQLITE_OK)
                return bind_failed(s, st, "command_enqueue");
            int rc = fetch_one(s, st, read_text0_v, NULL, "reading enrollment");
            if (rc == STORE_ERR)
                return rc;
            status[i] = rc;
            continue;
        }
        queued++;
        status[i] = STORE_OK;
    }
    /* Nothing to deliver it to: do not keep an orphan command. */
    if (queued == 0)
        return fail(s, STORE_NOTFOUND, "none of the %zu target enrollments exists", n);
    return STORE_OK;
}

static int sq_command_enqueue(store_t *base, const command_t *cmd, const char *const *ids, size_t n, int *status,
                              int64_t now)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, cmd && cmd->uuid && cmd->request_type && cmd->body && (ids || n == 0));
    for (size_t i = 0; i < n; i++)
        REQUIRE_ARG(s, ids[i]);
    /* Per-id results go to a scratch array when the caller passes none, and
     * are reset on failure: nothing was stored, so no id was queued. */
    int *per_id = status;
    if (!per_id && n > 0 && !(per_id = calloc(n, sizeof *per_id)))
        return fail_oom(s);
    for (size_t i = 0; i < n; i++)
        per_id[i] = STORE_NOTFOUND;

    int rc = tx_begin(s);
    if (rc == STORE_OK) {
        rc = enqueue_in_tx(s, cmd, ids, n, per_id, now);
        rc = rc == STORE_OK ? tx_commit(s) : tx_abort(s, rc);
    }
    if (rc != STORE_OK)
        for (size_t i = 0; i < n; i++)
            per_id[i] = STORE_NOTFOUND;
    if (per_id != status)
        free(per_id);
    return rc;
}

/* Maps a reported status to whether the command stays pending. -1 for a
 * status that is not a command result. */
static int report_keeps_pending(const char *status)
{
    if (strcmp(status, CMD_STATUS_NOTNOW) == 0)
        return 1;
    if (strcmp(status, CMD_STATUS_ACKNOWLEDGED) == 0 || strcmp(status, CMD_STATUS_ERROR) == 0 ||
        strcmp(status, CMD_STATUS_FORMAT_ERROR) == 0)
        return 0;
    return -1;
}

/* Applies a report inside the open transaction. *applied = 1 if the command
 * was pending for this enrollment. */
static int apply_report(sq_store *s, const char *id, const command_report_t *r, int keeps_pending, int64_t now,
                        int *applied)
{
    int changed = 0;
    sqlite3_stmt *st = stmt(s, ST_REPORT_APPLY);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, id) | bind_text(st, 2, r->command_uuid) | bind_text(st, 3, r->status) |
        bind_int(st, 4, keeps_pending) | bind_blob(st, 5, r->raw, r->raw_len) |
        bind_text(st, 6, r->error_chain_json) | bind_int(st, 7, now))
        return bind_failed(s, st, "command_exchange");
    if (exec_stmt(s, st, "recording command result", &changed) != STORE_OK)
        return STORE_ERR;
    *applied = changed > 0;
    if (!*applied)
        return STORE_OK;

    st = stmt(s, ST_RESULT_EVENT);
    if (!st)
        return STORE_ERR;
    if (bind_int(st, 1, now) | bind_text(st, 2, id) | bind_text(st, 3, r->status) |
        bind_text(st, 4, r->command_uuid))
        return bind_failed(s, st, "command_exchange");
    /* One row back: the RequestType the event recorded. */
    int step = sqlite3_step(st);
    if (step == SQLITE_ROW) {
        const char *type = (const char *)sqlite3_column_text(st, 0);
        if (r->applied_type && r->applied_type_len)
            snprintf(r->applied_type, r->applied_type_len, "%s", type ? type : "");
        step = sqlite3_step(st);
    }
    if (step != SQLITE_DONE)
        return bind_failed(s, st, "logging command result");
    stmt_release(st);
    return STORE_OK;
}

static int sq_command_exchange(store_t *base, const char *id, const command_report_t *report, int64_t now,
                               int *report_applied, command_t *next)
{
    sq_store *s = sq(base);
    int applied = 0;
    if (report_applied)
        *report_applied = 0;
    if (next)
        memset(next, 0, sizeof *next);
    REQUIRE_ARG(s, id);
    if (report && report->applied_type && report->applied_type_len)
        report->applied_type[0] = '\0';

    /* An Idle poll only reads: it runs as one autocommit SELECT and takes no
     * write lock, so idle devices never queue behind writers. */
    if (report) {
        REQUIRE_ARG(s, report->command_uuid && report->status);
        int keeps_pending = report_keeps_pending(report->status);
        if (keeps_pending < 0)
            return fail(s, STORE_ERR, "command_exchange: \"%s\" is not a command result status", report->status);
        if (tx_begin(s) != STORE_OK)
            return STORE_ERR;
        if (apply_report(s, id, report, keeps_pending, now, &applied) != STORE_OK)
            return tx_abort(s, STORE_ERR);
    }

    command_t found;
    sqlite3_stmt *st = stmt(s, report ? ST_NEXT_SKIP_NOTNOW : ST_NEXT_ANY);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_text(st, 1, id) != SQLITE_OK)
        return tx_abort(s, bind_failed(s, st, "command_exchange"));
    int rc = fetch_one(s, st, read_command_v, &found, "selecting next command");
    if (rc == STORE_ERR)
        return tx_abort(s, rc);

    if (report && tx_commit(s) != STORE_OK) {
        if (rc == STORE_OK)
            command_free(&found);
        return STORE_ERR;
    }
    if (report_applied)
        *report_applied = applied;
    if (rc == STORE_OK) {
        if (next)
            *next = found;
        else
            command_free(&found);
    } else {
        fail(s, rc, "no pending command");
    }
    return rc;
}

static int sq_command_get(store_t *base, const char *uuid, command_t *out)
{
    sq_store *s = sq(base);
    memset(out, 0, sizeof *out);
    REQUIRE_ARG(s, uuid);
    sqlite3_stmt *st = stmt(s, ST_CMD_GET);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, uuid) != SQLITE_OK)
        return bind_failed(s, st, "command_get");
    int rc = fetch_one(s, st, read_command_v, out, "reading command");
    if (rc == STORE_NOTFOUND)
        fail(s, rc, "command %s not found", uuid);
    return rc;
}

/* STORE_NOTFOUND when the command does not exist (every stored command has
 * at least one target). */
static int sq_command_targets(store_t *base, const char *uuid, command_target_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, uuid);
    sqlite3_stmt *st = stmt(s, ST_TARGETS_OF_CMD);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, uuid) != SQLITE_OK)
        return bind_failed(s, st, "command_targets");
    int rows = 0;
    int rc = stream_targets(s, st, cb, ctx, &rows, "listing command targets");
    if (rc == STORE_OK && rows == 0)
        return fail(s, STORE_NOTFOUND, "command %s not found", uuid);
    return rc;
}

/* STORE_NOTFOUND when the enrollment does not exist; a known enrollment with
 * no commands is STORE_OK with no callback. */
static int sq_enrollment_commands(store_t *base, const char *id, int pending_only, int limit,
                                  command_target_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, id);
    sqlite3_stmt *st = stmt(s, ST_ENR_EXISTS);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, id) != SQLITE_OK)
        return bind_failed(s, st, "enrollment_commands");
    int rc = fetch_one(s, st, read_text0_v, NULL, "reading enrollment");
    if (rc == STORE_NOTFOUND)
        return fail(s, rc, "enrollment %s not found", id);
    if (rc != STORE_OK)
        return rc;

    st = stmt(s, pending_only ? ST_ENR_CMDS_PENDING : ST_ENR_CMDS_ALL);
    if (!st)
        return STORE_ERR;
    if (bind_text(st, 1, id) | bind_int(st, 2, clamp_limit(limit)))
        return bind_failed(s, st, "enrollment_commands");
    return stream_targets(s, st, cb, ctx, NULL, "listing enrollment commands");
}

static int sq_command_cancel(store_t *base, const char *id, const char *uuid, int64_t now)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, id && uuid);
    if (tx_begin(s) != STORE_OK)
        return STORE_ERR;
    int changed = 0;
    sqlite3_stmt *st = stmt(s, ST_CANCEL_ONE);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_text(st, 1, id) | bind_text(st, 2, uuid) | bind_int(st, 3, now))
        return tx_abort(s, bind_failed(s, st, "command_cancel"));
    if (exec_stmt(s, st, "cancelling command", &changed) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    if (changed == 0)
        return tx_abort(s, fail(s, STORE_NOTFOUND, "command %s is not pending for %s", uuid, id));

    st = stmt(s, ST_CANCEL_EVENT);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_int(st, 1, now) | bind_text(st, 2, id) | bind_text(st, 3, uuid))
        return tx_abort(s, bind_failed(s, st, "command_cancel"));
    if (exec_stmt(s, st, "logging cancelled command", NULL) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    return tx_commit(s);
}

/* ---- events -------------------------------------------------------------- */

/* enrollment_id may be NULL (a server-wide event); detail_json NULL is
 * stored as "{}". */
static int sq_event_add(store_t *base, const char *enrollment_id, const char *kind, const char *detail_json,
                        int64_t now)
{
    sq_store *s = sq(base);
    REQUIRE_ARG(s, kind);
    if (tx_begin(s) != STORE_OK)
        return STORE_ERR;
    sqlite3_stmt *st = stmt(s, ST_EVENT_ADD);
    if (!st)
        return tx_abort(s, STORE_ERR);
    if (bind_int(st, 1, now) | bind_text(st, 2, enrollment_id) | bind_text(st, 3, kind) |
        bind_text(st, 4, detail_json))
        return tx_abort(s, bind_failed(s, st, "event_add"));
    if (exec_stmt(s, st, "adding event", NULL) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    return tx_commit(s);
}

/* Newest first. enrollment_id NULL lists events of every enrollment. */
static int sq_event_list(store_t *base, const char *enrollment_id, int limit, event_cb cb, void *ctx)
{
    sq_store *s = sq(base);
    sqlite3_stmt *st;
    int brc;
    if (enrollment_id) {
        if (!(st = stmt(s, ST_EVENT_LIST_ENR)))
            return STORE_ERR;
        brc = bind_text(st, 1, enrollment_id) | bind_int(st, 2, clamp_limit(limit));
    } else {
        if (!(st = stmt(s, ST_EVENT_LIST_ALL)))
            return STORE_ERR;
        brc = bind_int(st, 1, clamp_limit(limit));
    }
    if (brc)
        return bind_failed(s, st, "event_list");
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        store_event_t ev;
        if (read_event(st, &ev) != 0) {
            stmt_release(st);
            return fail_oom(s);
        }
        int stop = cb ? cb(ctx, &ev) : 0;
        store_event_free(&ev);
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE) {
        fail_db(s, "listing events");
        stmt_release(st);
        return STORE_ERR;
    }
    stmt_release(st);
    return STORE_OK;
}

/* ---- handle lifecycle ---------------------------------------------------- */

static const char *sq_errmsg(store_t *base)
{
    sq_store *s = sq(base);
    return s->err[0] ? s->err : "no error";
}

static void sq_close(store_t *base)
{
    sq_store *s = sq(base);
    if (!s)
        return;
    for (int i = 0; i < ST_COUNT_; i++)
        sqlite3_finalize(s->stmts[i]);
    for (int i = 0; i < LIST_VARIANTS; i++)
        sqlite3_finalize(s->list_stmts[i]);
    for (int i = 0; i < SQ_ENROLL_STMTS; i++)
        sqlite3_finalize(s->enroll_stmts[i]);
    for (int i = 0; i < SQ_PUSH_STMTS; i++)
        sqlite3_finalize(s->push_stmts[i]);
    for (int i = 0; i < SQ_INACTIVE_STMTS; i++)
        sqlite3_finalize(s->inactive_stmts[i]);
    for (int i = 0; i < SQ_DDM_STMTS; i++)
        sqlite3_finalize(s->ddm_stmts[i]);
    for (int i = 0; i < SQ_WATCH_STMTS; i++)
        sqlite3_finalize(s->watch_stmts[i]);
    for (int i = 0; i < SQ_SETTINGS_STMTS; i++)
        sqlite3_finalize(s->settings_stmts[i]);
    for (int i = 0; i < SQ_ADE_STMTS; i++)
        sqlite3_finalize(s->ade_stmts[i]);
    /* Every statement is finalized, so close cannot be refused as busy. */
    sqlite3_close(s->db);
    gate_release(s);
    sq_sync_put(s->sync);
    free(s);
}

static const struct store_ops sqlite_ops = {
    .name = "sqlite",
    .cert_add = sq_cert_add,
    .cert_get = sq_cert_get,
    .cert_by_sha256 = sq_cert_by_sha256,
    .cert_list = sq_cert_list,
    .cert_revoke = sq_cert_revoke,
    .challenge_add = sq_challenge_add,
    .challenge_consume = sq_challenge_consume,
    .device_allow = sq_device_allow,
    .device_disallow = sq_device_disallow,
    .device_allowed = sq_device_allowed,
    .push_results_record = sq_push_results_record,
    .close = sq_close,
    .errmsg = sq_errmsg,
    .enrollment_get = sq_enrollment_get,
    .enrollment_by_cert = sq_enrollment_by_cert,
    .authenticate = sq_authenticate,
    .token_update = sq_token_update,
    .checkout = sq_checkout,
    .touch = sq_touch,
    .enrollment_list = sq_enrollment_list,
    .enrollment_count = sq_enrollment_count,
    .command_enqueue = sq_command_enqueue,
    .command_exchange = sq_command_exchange,
    .command_get = sq_command_get,
    .command_targets = sq_command_targets,
    .enrollment_commands = sq_enrollment_commands,
    .command_cancel = sq_command_cancel,
    .event_add = sq_event_add,
    .event_list = sq_event_list,
    .repush_claim = sq_repush_claim,
    .inactive_mark = sq_inactive_mark,
    .lease_acquire = sq_lease_acquire,
    .lease_release = sq_lease_release,
    .enrollment_set_supervised = sq_enrollment_set_supervised,
    .decl_put = sq_decl_put,
    .decl_get = sq_decl_get,
    .decl_delete = sq_decl_delete,
    .decl_list = sq_decl_list,
    .decl_referrers = sq_decl_referrers,
    .set_put = sq_set_put,
    .set_delete = sq_set_delete,
    .set_list = sq_set_list,
    .set_members = sq_set_members,
    .decl_sets = sq_decl_sets,
    .set_assign = sq_set_assign,
    .set_unassign = sq_set_unassign,
    .set_assignments = sq_set_assignments,
    .group_add = sq_group_add,
    .group_remove = sq_group_remove,
    .group_members = sq_group_members,
    .enrollment_groups = sq_enrollment_groups,
    .ddm_effective = sq_ddm_effective,
    .ddm_enrollment_sets = sq_ddm_enrollment_sets,
    .ddm_state_get = sq_ddm_state_get,
    .ddm_candidates = sq_ddm_candidates,
    .ddm_sync_queue = sq_ddm_sync_queue,
    .ddm_handed_out = sq_ddm_handed_out,
    .ddm_touch = sq_ddm_touch,
    .ddm_status_record = sq_ddm_status_record,
    .ddm_status_item_get = sq_ddm_status_item_get,
    .ddm_status_items = sq_ddm_status_items,
    .ddm_decl_statuses = sq_ddm_decl_statuses,
    .asset_data_put = sq_asset_data_put,
    .asset_data_get = sq_asset_data_get,
    .asset_data_delete = sq_asset_data_delete,
    .pairing_add = sq_pairing_add,
    .pairing_get = sq_pairing_get,
    .pairing_bind_phone = sq_pairing_bind_phone,
    .pairing_consume = sq_pairing_consume,
    .watch_pair = sq_watch_pair,
    .watch_pair_state = sq_watch_pair_state,
    .watch_pairing_get = sq_watch_pairing_get,
    .phone_watches = sq_phone_watches,
    .copy_begin = sq_copy_begin,
    .copy_end = sq_copy_end,
    .copy_columns = sq_copy_columns,
    .copy_count = sq_copy_count,
    .copy_read = sq_copy_read,
    .copy_write = sq_copy_write,
    .enrollment_set_awaiting = sq_enrollment_set_awaiting,
    .enrollment_awaiting = sq_enrollment_awaiting,
    .setting_put = sq_setting_put,
    .setting_get = sq_setting_get,
    .setting_delete = sq_setting_delete,
    .ade_token_put = sq_ade_token_put,
    .ade_token_get = sq_ade_token_get,
    .ade_token_list = sq_ade_token_list,
    .ade_token_delete = sq_ade_token_delete,
    .ade_token_sync_state = sq_ade_token_sync_state,
    .ade_token_set_account = sq_ade_token_set_account,
    .ade_token_set_default_profile = sq_ade_token_set_default_profile,
    .ade_token_reset_cursor = sq_ade_token_reset_cursor,
    .ade_devices_apply = sq_ade_devices_apply,
    .ade_device_get = sq_ade_device_get,
    .ade_device_list = sq_ade_device_list,
    .ade_device_set_profile = sq_ade_device_set_profile,
    .ade_profile_put = sq_ade_profile_put,
    .ade_profile_get = sq_ade_profile_get,
    .ade_profile_list = sq_ade_profile_list,
};

/* Runs a PRAGMA that returns one row and copies its first column as text.
 * SQLite does not call the busy handler for every lock a PRAGMA can need:
 * switching a file to WAL takes an exclusive lock, and when several
 * processes create the same new file at once all but one get SQLITE_BUSY
 * straight away. So busy results are retried here, within the same budget as
 * the busy timeout. */
static int pragma_text(sq_store *s, const char *sql, char *out, size_t outlen)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, sql, -1, &st, NULL);
    for (int waited_ms = 0; rc == SQLITE_OK; waited_ms += BUSY_RETRY_MS) {
        rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            const unsigned char *v = sqlite3_column_text(st, 0);
            snprintf(out, outlen, "%s", v ? (const char *)v : "");
            sqlite3_finalize(st);
            return STORE_OK;
        }
        if ((rc & 0xff) != SQLITE_BUSY || waited_ms >= BUSY_TIMEOUT_MS)
            break;
        sqlite3_reset(st);
        sqlite3_sleep(BUSY_RETRY_MS);
        rc = SQLITE_OK;
    }
    fail_db(s, sql);
    sqlite3_finalize(st);
    return STORE_ERR;
}

static int read_user_version(sq_store *s, int *version)
{
    char text[24];
    if (pragma_text(s, "PRAGMA user_version", text, sizeof text) != STORE_OK)
        return STORE_ERR;
    *version = atoi(text);
    return STORE_OK;
}

static int refuse_newer(sq_store *s, int version)
{
    return fail(s, STORE_ERR,
                "database schema version %d is newer than this orchard supports (%d); "
                "upgrade orchard or point it at another database",
                version, SCHEMA_VERSION);
}

/* Brings the schema to SCHEMA_VERSION. The check-then-migrate runs under
 * BEGIN IMMEDIATE, so when several processes open a new file at once one of
 * them migrates and the others wait for the write lock, then see the new
 * version and do nothing. */
static int migrate(sq_store *s)
{
    int version = 0;
    if (read_user_version(s, &version) != STORE_OK)
        return STORE_ERR;
    if (version == SCHEMA_VERSION)
        return STORE_OK; /* the common case: no write lock taken on open */
    if (version > SCHEMA_VERSION)
        return refuse_newer(s, version);

    if (tx_begin(s) != STORE_OK)
        return STORE_ERR;
    if (read_user_version(s, &version) != STORE_OK)
        return tx_abort(s, STORE_ERR);
    if (version > SCHEMA_VERSION)
        return tx_abort(s, refuse_newer(s, version));
    for (int v = version; v < SCHEMA_VERSION; v++) {
        if (sqlite3_exec(s->db, migrations[v], NULL, NULL, NULL) != SQLITE_OK) {
            char what[64];
            snprintf(what, sizeof what, "applying schema migration %d", v + 1);
            return tx_abort(s, fail_db(s, what));
        }
    }
    /* PRAGMA takes no bound parameters; the value is a constant of this
     * program, not outside data. */
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA user_version = %d", SCHEMA_VERSION);
    if (sqlite3_exec(s->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return tx_abort(s, fail_db(s, "recording schema version"));
    return tx_commit(s);
}

/* Sets connection options. journal_mode=WAL is persistent in the file and
 * is checked because the concurrency model above depends on it. */
static int configure(sq_store *s, const char *path)
{
    /* Waits (instead of failing at once) when another connection holds the
     * write lock. */
    if (sqlite3_busy_timeout(s->db, BUSY_TIMEOUT_MS) != SQLITE_OK)
        return fail_db(s, "setting busy timeout");
    if (sqlite3_exec(s->db, "PRAGMA foreign_keys = ON", NULL, NULL, NULL) != SQLITE_OK)
        return fail_db(s, "enabling foreign keys");

    char mode[16];
    if (pragma_text(s, "PRAGMA journal_mode = WAL", mode, sizeof mode) != STORE_OK)
        return STORE_ERR;
    /* An in-memory database reports "memory": there is no file to share. */
    if (strcmp(mode, "wal") != 0 && !(strcmp(mode, "memory") == 0 && strcmp(path, ":memory:") == 0))
        return fail(s, STORE_ERR, "cannot enable WAL journal mode (got \"%s\")", mode);

    /* NORMAL: COMMIT writes the WAL without flushing it; tx_commit then
     * waits for the group fsync (store_sqlite_sync.c), so a commit is still
     * on disk before tx_commit returns, but concurrent commits share one
     * flush. */
    if (sqlite3_exec(s->db, "PRAGMA synchronous = NORMAL", NULL, NULL, NULL) != SQLITE_OK)
        return fail_db(s, "setting synchronous mode");
    return STORE_OK;
}

store_t *store_sqlite_open(const char *path, char **err)
{
    if (err)
        *err = NULL;
    sq_store *s = calloc(1, sizeof *s);
    if (!s) {
        if (err)
            *err = strdup("out of memory");
        return NULL;
    }
    s->base.ops = &sqlite_ops;
    /* NOMUTEX: a handle is only ever used by one thread at a time. */
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX,
                             NULL);
    if (rc != SQLITE_OK) {
        if (s->db)
            fail(s, STORE_ERR, "cannot open %s: %s", path, sqlite3_errmsg(s->db));
        else
            fail(s, STORE_ERR, "cannot open %s: %s", path, sqlite3_errstr(rc));
    } else if (!(s->sync = sq_sync_get(path))) {
        fail(s, STORE_ERR, "out of memory");
    } else if (configure(s, path) == STORE_OK && migrate(s) == STORE_OK) {
        return &s->base;
    } else {
        /* Prefix the path so the message is useful in a startup log. */
        char why[sizeof s->err];
        snprintf(why, sizeof why, "%s", s->err);
        fail(s, STORE_ERR, "%s: %s", path, why);
    }
    if (err)
        *err = strdup(s->err);
    sq_close(&s->base);
    return NULL;
}
