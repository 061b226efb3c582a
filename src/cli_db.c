/* `orchard db migrate`: brings a database's schema to the version this
 * orchard knows, then exits. The server does the same when it starts; the
 * subcommand lets an operator migrate once, before starting several
 * instances of a new version (or to see a refusal without starting one).
 * Opening the store applies the migrations (store.h), so this is an open and
 * a close; a database from a newer orchard is refused and left unchanged. */
#include "cli_db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "store_pg_internal.h"
#include "util.h"

static const char *const usage_text =
    "usage: orchard db migrate [--db URL] [--data-dir DIR]\n"
    "\n"
    "Applies the database schema migrations and exits.\n"
    "  --db URL        sqlite:PATH or postgres://USER:PASSWORD@HOST:PORT/DATABASE\n"
    "                  (default $ORCHARD_DB, else sqlite:DIR/orchard.db); prefer\n"
    "                  $ORCHARD_DB for a URL with a password: flags are visible\n"
    "                  in the process list\n"
    "  --data-dir DIR  where the default SQLite database lives\n"
    "                  (default $ORCHARD_DATA_DIR, else ./var)\n";

static int migrate(int argc, char **argv)
{
    const char *db = getenv("ORCHARD_DB");
    const char *data_dir = getenv("ORCHARD_DATA_DIR");
    for (int i = 2; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            fputs(usage_text, stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "orchard db migrate: %s needs a value (or is unknown)\n%s", argv[i], usage_text);
            return 2;
        }
        if (strcmp(argv[i], "--db") == 0)
            db = argv[++i];
        else if (strcmp(argv[i], "--data-dir") == 0)
            data_dir = argv[++i];
        else {
            fprintf(stderr, "orchard db migrate: unknown option %s\n%s", argv[i], usage_text);
            return 2;
        }
    }
    char *fallback = NULL;
    if (!db || !*db) {
        fallback = util_strdup_printf("sqlite:%s/orchard.db", data_dir && *data_dir ? data_dir : "./var");
        if (!fallback) {
            fprintf(stderr, "orchard db migrate: out of memory\n");
            return 1;
        }
        db = fallback;
    }
    char *err = NULL;
    store_t *s = store_open(db, &err);
    free(fallback);
    if (!s) {
        /* err never contains a password (store_open). */
        fprintf(stderr, "orchard db migrate: cannot open database: %s\n", err ? err : "unknown error");
        free(err);
        return 1;
    }
    if (strcmp(s->ops->name, "postgres") == 0)
        printf("database schema is up to date (version %d)\n", store_pg_schema_version(s));
    else
        printf("database schema is up to date\n");
    store_close(s);
    return 0;
}

int cli_db_main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "migrate") == 0)
        return migrate(argc, argv);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    fprintf(stderr, "%s", usage_text);
    return 2;
}
