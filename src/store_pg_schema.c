/* PostgreSQL backend: the schema and its versioned migrations.
 *
 * The versions are the SQLite backend's (store_sqlite.c): migration i takes
 * version i to i+1 with the same tables, written for PostgreSQL (BIGINT
 * times, BYTEA blobs, identity columns). The table schema_version has one
 * row per applied migration (with its time); the version is the highest.
 * Migrations run in one transaction together with their version rows
 * (PostgreSQL DDL is transactional), under an advisory lock,
 * so when several instances start at once against a new database one of
 * them migrates and the others wait, then find nothing to do. A database
 * from a newer orchard is refused, never changed.
 *
 * Text columns that are ordered or paged on (ids, names) use the "C"
 * collation: byte order, as in SQLite, whatever the database's locale, so
 * keyset paging ("ids greater than") means the same on both backends.
 *
 * Append new migrations; never edit applied ones.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store_pg_internal.h"

/* pg_advisory_xact_lock key: "orch" in ASCII. */
#define MIGRATION_LOCK_KEY "1869767528"

static const char *const migrations[] = {
    /* 1: enrollments, commands and their per-target state, events. */
    /* JSON string literal of a text value (null for NULL): event details
     * are assembled in SQL with it, in the compact form SQLite's
     * json_object writes. */
    "CREATE FUNCTION orchard_json_str(v text) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE"
    "  AS $$ SELECT COALESCE(to_json(v)::text, 'null') $$;"
    "CREATE TABLE enrollments ("
    "  id               text COLLATE \"C\" PRIMARY KEY,"
    "  device_id        text COLLATE \"C\" NOT NULL,"
    "  udid             text,"
    "  channel          text NOT NULL CHECK (channel IN ('device', 'user')),"
    "  topic            text,"
    "  serial_number    text,"
    "  model            text,"
    "  model_name       text,"
    "  product_name     text,"
    "  os_version       text,"
    "  build_version    text,"
    "  device_name      text,"
    "  imei             text,"
    "  meid             text,"
    "  user_id          text,"
    "  user_short_name  text,"
    "  user_long_name   text,"
    "  cert_sha256      text,"
    "  state            text NOT NULL CHECK (state IN ('authenticated', 'active', 'inactive')),"
    "  push_token       bytea,"
    "  push_magic       text,"
    "  unlock_token     bytea,"
    "  created_at       bigint NOT NULL,"
    "  updated_at       bigint NOT NULL,"
    "  last_seen_at     bigint NOT NULL DEFAULT 0,"
    "  authenticated_at bigint NOT NULL DEFAULT 0,"
    "  token_updated_at bigint NOT NULL DEFAULT 0,"
    "  checked_out_at   bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX enrollments_by_cert ON enrollments (cert_sha256);"
    "CREATE INDEX enrollments_by_device ON enrollments (device_id);"
    "CREATE INDEX enrollments_by_state ON enrollments (state, id);"
    "CREATE INDEX enrollments_by_serial ON enrollments (serial_number);"
    /* Stored once however many targets; targets refer to it by id. */
    "CREATE TABLE commands ("
    "  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  uuid         text COLLATE \"C\" NOT NULL UNIQUE,"
    "  request_type text NOT NULL,"
    "  body         bytea NOT NULL,"
    "  created_at   bigint NOT NULL"
    ");"
    /* One row per (enrollment, command); seq orders by enqueue time.
     * pending is derived from status, so it can never disagree with it. */
    "CREATE TABLE command_targets ("
    "  seq           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  command_id    bigint NOT NULL REFERENCES commands (id),"
    "  enrollment_id text COLLATE \"C\" NOT NULL REFERENCES enrollments (id),"
    "  status        text NOT NULL CHECK (status IN ('queued', 'NotNow', 'Acknowledged', 'Error',"
    "                                               'CommandFormatError', 'cancelled')),"
    "  pending       boolean GENERATED ALWAYS AS (status IN ('queued', 'NotNow')) STORED,"
    "  result        bytea,"
    "  error_chain   text,"
    "  queued_at     bigint NOT NULL,"
    "  updated_at    bigint NOT NULL,"
    "  UNIQUE (enrollment_id, command_id)"
    ");"
    /* The hot path: the next pending command of one enrollment. A partial
     * index holds only pending targets, so it stays small however many
     * finished commands accumulate; status and command_id are included so
     * the NotNow filter and the join need no visit to the table row. */
    "CREATE INDEX command_targets_next ON command_targets (enrollment_id, seq) INCLUDE (status, command_id)"
    "  WHERE pending;"
    "CREATE INDEX command_targets_by_enrollment ON command_targets (enrollment_id, seq);"
    "CREATE INDEX command_targets_by_command ON command_targets (command_id, seq);"
    /* enrollment_id is deliberately not a foreign key (as in SQLite). */
    "CREATE TABLE events ("
    "  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,"
    "  at            bigint NOT NULL,"
    "  enrollment_id text COLLATE \"C\","
    "  kind          text NOT NULL,"
    "  detail        text NOT NULL DEFAULT '{}'"
    ");"
    "CREATE INDEX events_by_enrollment ON events (enrollment_id, id);",

    /* 2: issued certificates, one-time SCEP challenges, admission list. */
    "CREATE TABLE issued_certs ("
    "  serial        text COLLATE \"C\" PRIMARY KEY,"
    "  subject       text NOT NULL,"
    "  enrollment_id text COLLATE \"C\","
    "  sha256        text NOT NULL UNIQUE,"
    "  not_before    bigint NOT NULL,"
    "  not_after     bigint NOT NULL,"
    "  issued_at     bigint NOT NULL,"
    "  revoked_at    bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX issued_certs_by_enrollment ON issued_certs (enrollment_id, not_after);"
    "CREATE INDEX issued_certs_by_expiry ON issued_certs (revoked_at, not_after);"
    "CREATE TABLE scep_challenges ("
    "  digest        text PRIMARY KEY,"
    "  enrollment_id text,"
    "  created_at    bigint NOT NULL,"
    "  expires_at    bigint NOT NULL,"
    "  used_at       bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX scep_challenges_by_expiry ON scep_challenges (expires_at);"
    "CREATE TABLE admission ("
    "  value    text PRIMARY KEY,"
    "  added_at bigint NOT NULL"
    ");",

    /* 3: the latest APNs push per enrollment. */
    "ALTER TABLE enrollments ADD COLUMN last_push_at bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN last_push_id text,"
    "  ADD COLUMN last_push_error text,"
    "  ADD COLUMN push_token_invalid boolean NOT NULL DEFAULT false;",

    /* 4: inactive devices and leases. */
    "ALTER TABLE enrollments ADD COLUMN silent_since bigint NOT NULL DEFAULT 0,"
    "  ADD COLUMN last_repush_at bigint NOT NULL DEFAULT 0;"
    "CREATE INDEX enrollments_by_seen ON enrollments (state, last_seen_at);"
    "CREATE TABLE leases ("
    "  name       text PRIMARY KEY,"
    "  holder     text NOT NULL,"
    "  expires_at bigint NOT NULL"
    ");",

    /* 5: supervision, declarative device management, Apple Watch pairing
     * (see store_sqlite.c for the reasoning behind each table). Group
     * members and assignment targets are not foreign keys: an admin may
     * place an id before it enrolls. */
    "ALTER TABLE enrollments ADD COLUMN supervised smallint NOT NULL DEFAULT -1;"
    "CREATE TABLE declarations ("
    "  identifier   text COLLATE \"C\" PRIMARY KEY,"
    "  type         text NOT NULL,"
    "  kind         text COLLATE \"C\" NOT NULL,"
    "  payload_json text NOT NULL,"
    "  server_token text NOT NULL,"
    "  created_at   bigint NOT NULL,"
    "  updated_at   bigint NOT NULL"
    ");"
    "CREATE INDEX declarations_by_kind ON declarations (kind, identifier);"
    "CREATE TABLE decl_refs ("
    "  from_id text COLLATE \"C\" NOT NULL REFERENCES declarations (identifier),"
    "  to_id   text COLLATE \"C\" NOT NULL REFERENCES declarations (identifier),"
    "  PRIMARY KEY (from_id, to_id)"
    ");"
    "CREATE INDEX decl_refs_by_to ON decl_refs (to_id, from_id);"
    "CREATE TABLE decl_sets ("
    "  name       text COLLATE \"C\" PRIMARY KEY,"
    "  created_at bigint NOT NULL,"
    "  updated_at bigint NOT NULL"
    ");"
    "CREATE TABLE set_members ("
    "  set_name   text COLLATE \"C\" NOT NULL REFERENCES decl_sets (name),"
    "  identifier text COLLATE \"C\" NOT NULL REFERENCES declarations (identifier),"
    "  PRIMARY KEY (set_name, identifier)"
    ");"
    "CREATE INDEX set_members_by_decl ON set_members (identifier, set_name);"
    "CREATE TABLE set_assignments ("
    "  set_name    text COLLATE \"C\" NOT NULL REFERENCES decl_sets (name),"
    "  target_kind text COLLATE \"C\" NOT NULL CHECK (target_kind IN ('device', 'group', 'all')),"
    "  target      text COLLATE \"C\" NOT NULL,"
    "  assigned_at bigint NOT NULL,"
    "  PRIMARY KEY (set_name, target_kind, target)"
    ");"
    "CREATE INDEX set_assignments_by_target ON set_assignments (target_kind, target, set_name);"
    "CREATE TABLE group_members ("
    "  group_name    text COLLATE \"C\" NOT NULL,"
    "  enrollment_id text COLLATE \"C\" NOT NULL,"
    "  added_at      bigint NOT NULL,"
    "  PRIMARY KEY (group_name, enrollment_id)"
    ");"
    "CREATE INDEX group_members_by_enrollment ON group_members (enrollment_id, group_name);"
    "CREATE TABLE ddm_state ("
    "  enrollment_id    text COLLATE \"C\" PRIMARY KEY,"
    "  token            text,"
    "  sync_pending     boolean NOT NULL DEFAULT false,"
    "  sync_command_id  bigint,"
    "  token_changed_at bigint NOT NULL DEFAULT 0,"
    "  status_at        bigint NOT NULL DEFAULT 0,"
    "  manifest_at      bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE TABLE ddm_status_items ("
    "  enrollment_id text COLLATE \"C\" NOT NULL,"
    "  name          text COLLATE \"C\" NOT NULL,"
    "  value_json    text NOT NULL,"
    "  updated_at    bigint NOT NULL,"
    "  PRIMARY KEY (enrollment_id, name)"
    ");"
    "CREATE TABLE ddm_decl_status ("
    "  enrollment_id text COLLATE \"C\" NOT NULL,"
    "  identifier    text COLLATE \"C\" NOT NULL,"
    "  kind          text,"
    "  server_token  text,"
    "  active        boolean NOT NULL DEFAULT false,"
    "  valid         text,"
    "  reasons_json  text,"
    "  updated_at    bigint NOT NULL,"
    "  PRIMARY KEY (enrollment_id, identifier)"
    ");"
    "CREATE TABLE asset_data ("
    "  name         text COLLATE \"C\" PRIMARY KEY,"
    "  content_type text NOT NULL,"
    "  data         bytea NOT NULL,"
    "  sha256       text NOT NULL,"
    "  updated_at   bigint NOT NULL"
    ");"
    /* Only a SHA-256 of each pairing security token is kept. */
    "CREATE TABLE pairing_tokens ("
    "  digest     text PRIMARY KEY,"
    "  watch_udid text NOT NULL,"
    "  phone_udid text,"
    "  created_at bigint NOT NULL,"
    "  expires_at bigint NOT NULL,"
    "  bound_at   bigint NOT NULL DEFAULT 0,"
    "  used_at    bigint NOT NULL DEFAULT 0"
    ");"
    "CREATE INDEX pairing_tokens_by_expiry ON pairing_tokens (expires_at);"
    "CREATE TABLE watch_pairings ("
    "  watch_udid text COLLATE \"C\" PRIMARY KEY,"
    "  phone_udid text COLLATE \"C\" NOT NULL,"
    "  state      text NOT NULL CHECK (state IN ('profile_issued', 'enrolled')),"
    "  paired_at  bigint NOT NULL,"
    "  updated_at bigint NOT NULL"
    ");"
    "CREATE INDEX watch_pairings_by_phone ON watch_pairings (phone_udid, watch_udid);",
};

#define SCHEMA_VERSION ((int)(sizeof migrations / sizeof migrations[0]))

static int exec_simple(pg_store *s, const char *sql, const char *what)
{
    PGresult *r = PQexec(pg_conn(s), sql);
    ExecStatusType st = PQresultStatus(r);
    int ok = st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
    if (!ok) {
        const char *msg = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
        const char *state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
        pg_fail(s, STORE_ERR, "%s: %s (SQLSTATE %s)", what, msg ? msg : PQerrorMessage(pg_conn(s)),
                state ? state : "?");
    }
    PQclear(r);
    return ok ? STORE_OK : STORE_ERR;
}

/* Reads the recorded version: 0 when the table does not exist yet. */
static int read_version(pg_store *s, int *version)
{
    *version = 0;
    PGresult *r = PQexec(pg_conn(s), "SELECT to_regclass('schema_version') IS NOT NULL");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(s, STORE_ERR, "reading the schema version: %s", PQerrorMessage(pg_conn(s)));
    }
    int exists = strcmp(PQgetvalue(r, 0, 0), "t") == 0;
    PQclear(r);
    if (!exists)
        return STORE_OK;
    r = PQexec(pg_conn(s), "SELECT COALESCE(max(version), 0) FROM schema_version");
    if (PQresultStatus(r) != PGRES_TUPLES_OK || PQntuples(r) != 1) {
        PQclear(r);
        return pg_fail(s, STORE_ERR, "reading the schema version: %s", PQerrorMessage(pg_conn(s)));
    }
    *version = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
    return STORE_OK;
}

static int refuse_newer(pg_store *s, int version)
{
    return pg_fail(s, STORE_ERR,
                   "database schema version %d is newer than this orchard supports (%d); "
                   "upgrade orchard or point it at another database",
                   version, SCHEMA_VERSION);
}

static int rollback(pg_store *s, int rc)
{
    PGresult *r = PQexec(pg_conn(s), "ROLLBACK");
    PQclear(r);
    return rc;
}

int pg_migrate(pg_store *s, int *version_out)
{
    int version = 0;
    if (read_version(s, &version) != STORE_OK)
        return STORE_ERR;
    if (version > SCHEMA_VERSION)
        return refuse_newer(s, version);
    if (version == SCHEMA_VERSION) {
        *version_out = version;
        return STORE_OK; /* the common case: no lock, no write */
    }

    if (exec_simple(s, "BEGIN", "starting migration") != STORE_OK)
        return STORE_ERR;
    /* Another instance may be migrating: wait for it, then look again. */
    if (exec_simple(s, "SELECT pg_advisory_xact_lock(" MIGRATION_LOCK_KEY ")", "waiting for the migration lock") !=
            STORE_OK ||
        exec_simple(s,
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    "  version integer NOT NULL,"
                    "  applied_at timestamptz NOT NULL DEFAULT now())",
                    "creating the schema_version table") != STORE_OK ||
        read_version(s, &version) != STORE_OK)
        return rollback(s, STORE_ERR);
    if (version > SCHEMA_VERSION)
        return rollback(s, refuse_newer(s, version));
    for (int v = version; v < SCHEMA_VERSION; v++) {
        char what[64], record[96];
        snprintf(what, sizeof what, "applying schema migration %d", v + 1);
        /* The version is a constant of this program, not outside data. */
        snprintf(record, sizeof record, "INSERT INTO schema_version (version) VALUES (%d)", v + 1);
        if (exec_simple(s, migrations[v], what) != STORE_OK || exec_simple(s, record, what) != STORE_OK)
            return rollback(s, STORE_ERR);
    }
    if (exec_simple(s, "COMMIT", "committing the migration") != STORE_OK)
        return rollback(s, STORE_ERR);
    *version_out = SCHEMA_VERSION;
    return STORE_OK;
}
