/* Write coordination between the SQLite handles of one process.
 *
 * Writer gate. SQLite lets one connection write at a time; a connection that
 * finds the lock taken sleeps in its busy handler in steps of 1 to 100 ms,
 * whatever the holder's actual duration. With a handle per worker thread
 * that turned sub-millisecond commits into multi-millisecond waits. Handles
 * of the same file in this process therefore queue on a mutex before
 * BEGIN IMMEDIATE and wake as soon as the previous writer is done; the busy
 * handler still covers other processes.
 *
 * Group fsync. Handles commit with synchronous=NORMAL (the WAL is written but
 * not flushed), then call sq_sync_durable(): it returns once an fsync of the
 * WAL file that started after the caller's commit has completed. One waiting
 * thread performs the fsync for all threads waiting at that moment, so N
 * concurrent commits cost one flush instead of N, and every result is on
 * disk before the device hears back, as with synchronous=FULL. (On Linux an
 * fsync of any descriptor of a file flushes all of the file's dirty data.)
 */
#include "store_sqlite_sync.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct sq_sync {
    char *path;    /* canonical database path: the registry key */
    char *wal;     /* path + "-wal" */
    int refs;
    pthread_mutex_t writer;
    pthread_mutex_t mu; /* guards the fields below */
    pthread_cond_t synced;
    uint64_t committed; /* generation of the latest commit */
    uint64_t durable;   /* every commit up to this generation is on disk */
    int syncing;
    sq_sync_t *next;
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static sq_sync_t *registry;

/* Makes the new WAL file's directory entry durable too. */
static void sync_dir_of(const char *path)
{
    char *copy = strdup(path);
    if (!copy)
        return;
    int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd);
        close(fd);
    }
    free(copy);
}

sq_sync_t *sq_sync_get(const char *db_path)
{
    char real[PATH_MAX];
    const char *key = realpath(db_path, real) ? real : db_path;
    pthread_mutex_lock(&registry_mu);
    sq_sync_t *s;
    for (s = registry; s; s = s->next)
        if (strcmp(s->path, key) == 0)
            break;
    if (s) {
        s->refs++;
    } else if ((s = calloc(1, sizeof *s)) != NULL) {
        s->path = strdup(key);
        size_t n = strlen(key);
        s->wal = malloc(n + 5);
        if (!s->path || !s->wal) {
            free(s->path);
            free(s->wal);
            free(s);
            s = NULL;
        } else {
            memcpy(s->wal, key, n);
            memcpy(s->wal + n, "-wal", 5);
            s->refs = 1;
            pthread_mutex_init(&s->writer, NULL);
            pthread_mutex_init(&s->mu, NULL);
            pthread_cond_init(&s->synced, NULL);
            s->next = registry;
            registry = s;
            sync_dir_of(key);
        }
    }
    pthread_mutex_unlock(&registry_mu);
    return s;
}

void sq_sync_put(sq_sync_t *s)
{
    if (!s)
        return;
    pthread_mutex_lock(&registry_mu);
    if (--s->refs == 0) {
        sq_sync_t **pp = &registry;
        while (*pp != s)
            pp = &(*pp)->next;
        *pp = s->next;
        pthread_mutex_destroy(&s->writer);
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->synced);
        free(s->path);
        free(s->wal);
        free(s);
    }
    pthread_mutex_unlock(&registry_mu);
}

void sq_sync_writer_lock(sq_sync_t *s)
{
    pthread_mutex_lock(&s->writer);
}

void sq_sync_writer_unlock(sq_sync_t *s)
{
    pthread_mutex_unlock(&s->writer);
}

uint64_t sq_sync_committed(sq_sync_t *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t gen = ++s->committed;
    pthread_mutex_unlock(&s->mu);
    return gen;
}

/* fsync of the WAL by path: the file can be replaced when the last
 * connection closes, so no descriptor is kept. A missing WAL means it was
 * checkpointed into the database (which SQLite syncs) and removed. */
static int flush_wal(const char *wal)
{
    int fd = open(wal, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int sq_sync_durable(sq_sync_t *s, uint64_t gen)
{
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    while (s->durable < gen) {
        if (s->syncing) {
            pthread_cond_wait(&s->synced, &s->mu);
            continue;
        }
        /* Everything committed so far is covered by a flush starting now. */
        uint64_t target = s->committed;
        s->syncing = 1;
        pthread_mutex_unlock(&s->mu);
        int frc = flush_wal(s->wal);
        pthread_mutex_lock(&s->mu);
        s->syncing = 0;
        if (frc == 0 && target > s->durable)
            s->durable = target;
        pthread_cond_broadcast(&s->synced);
        if (frc != 0) {
            rc = -1;
            break;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return rc;
}
