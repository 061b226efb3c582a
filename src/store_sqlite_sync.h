/* Write coordination between the SQLite handles of one process: a writer
 * gate and group fsync (see store_sqlite_sync.c for why). */
#ifndef ORCHARD_STORE_SQLITE_SYNC_H
#define ORCHARD_STORE_SQLITE_SYNC_H

#include <stdint.h>

typedef struct sq_sync sq_sync_t;

/* The shared state of one database file (reference counted). NULL only on
 * allocation failure. */
sq_sync_t *sq_sync_get(const char *db_path);
void sq_sync_put(sq_sync_t *s);

/* Held from before BEGIN IMMEDIATE until after COMMIT/ROLLBACK. */
void sq_sync_writer_lock(sq_sync_t *s);
void sq_sync_writer_unlock(sq_sync_t *s);

/* Call right after a successful COMMIT; returns its generation. */
uint64_t sq_sync_committed(sq_sync_t *s);
/* Returns 0 once every commit up to `gen` is flushed to disk, -1 if the
 * flush failed (the caller must not report success). */
int sq_sync_durable(sq_sync_t *s, uint64_t gen);

#endif
