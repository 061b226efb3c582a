/* The crash-consistency test (test_crash.c: SIGKILLs under device load, no
 * acknowledged result or command lost, the store consistent after every
 * restart) against PostgreSQL. tests/run.sh runs test_pg_* only in its
 * PostgreSQL pass, with ORCHARD_TEST_DB set; without it the test skips
 * (test_crash itself covers SQLite). Fewer kills than the SQLite run by
 * default (ORCHARD_CRASH_KILLS overrides), to keep the suite's time: each
 * restart of a PostgreSQL-backed server also reconnects every worker. */
#define DEFAULT_KILLS 5
#define CRASH_REQUIRES_TEST_DB 1
#include "test_crash.c"
