#!/bin/sh
# Runs every test binary of a build directory and prints one closing line:
# "tests: N passed, N failed". Exit status is non-zero if any test failed.
# Usage: tests/run.sh BUILD_DIR [TEST_NAME...]   (default: every test binary)
#
# Two passes. The first runs every binary except test_pg_* as it is (the
# storage tests on fresh SQLite files). The second runs the storage
# conformance suites (test_store*) again, and the PostgreSQL tests
# (test_pg_*), against a throwaway PostgreSQL server that tests/pg.sh starts
# (ORCHARD_TEST_DB=its URL, a fresh database per binary where the role may
# create one); their names are reported as NAME@postgres and
# both passes count in the closing line. Set ORCHARD_TEST_PG_URL to use an
# existing database instead. A PostgreSQL server that cannot be started is a
# test failure, not a skip.
set -u
dir=${1:?build dir}
shift
export ORCHARD_BIN="$PWD/$dir/orchard"
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:strict_string_checks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"
passed=0
failed=0
failed_names=""
for name in "$@"; do
    [ -x "$dir/tests/$name" ] || { echo "run.sh: no test binary $dir/tests/$name"; exit 1; }
done

# True if test `name` was asked for (all are when no names were given).
selected()
{
    [ $# -gt 1 ] || return 0
    want=$1
    shift
    case " $* " in *" $want "*) return 0 ;; esac
    return 1
}

# Runs one binary and adds its counts; $2 is the name it is reported as.
run_one()
{
    t=$1
    label=$2
    echo "=== $label"
    out=$(mktemp)
    if "$t" >"$out" 2>&1; then
        status=0
    else
        status=$?
    fi
    cat "$out"
    # cmocka 1.1 exits 0 when a group setup or teardown fails (it counts
    # failed tests only) and still prints "[  PASSED  ]"; a teardown is where
    # the integration tests check the server's exit status, i.e. its ASan or
    # valgrind report at the clean stop. Such a binary has failed.
    if grep -q '^\[  FAILED  \] GROUP\|^\[  ERROR   \]' "$out"; then
        [ "$status" -ne 0 ] || status=1
    fi
    # cmocka prints "[  PASSED  ] N test(s)." and "[  FAILED  ] N test(s)..."
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$out" | tail -n 1)
    rm -f "$out"
    passed=$((passed + ${p:-0}))
    if [ "$status" -ne 0 ] && [ "${f:-0}" -eq 0 ]; then
        f=1 # crashed or aborted before cmocka could count
    fi
    failed=$((failed + ${f:-0}))
    [ "$status" -eq 0 ] || failed_names="$failed_names $label"
}

# ---- pass 1: as built (SQLite) -------------------------------------------
pg_wanted=""
for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    case "$t" in *.o) continue ;; esac
    name=$(basename "$t")
    selected "$name" "$@" || continue
    case "$name" in
    test_pg_*) pg_wanted="$pg_wanted $t"; continue ;;
    test_store*) pg_wanted="$pg_wanted $t" ;;
    esac
    run_one "$t" "$name"
done

# ---- pass 2: PostgreSQL -------------------------------------------------
if [ -n "$pg_wanted" ]; then
    pg_dir=""
    url=${ORCHARD_TEST_PG_URL:-}
    if [ -z "$url" ]; then
        pg_dir=$(mktemp -d /tmp/orchard-pg-XXXXXX)
        trap 'sh tests/pg.sh stop "$pg_dir"' EXIT INT TERM
        echo "=== starting a PostgreSQL server in $pg_dir"
        url=$(sh tests/pg.sh start "$pg_dir" | tail -n 1) || url=""
    fi
    if [ -z "$url" ]; then
        echo "run.sh: no PostgreSQL server: the PostgreSQL tests cannot run"
        failed=$((failed + 1))
        failed_names="$failed_names postgresql-server"
    else
        # Each binary gets a database of its own where the role may create
        # one (the suites are written for a shared database, but a fresh one
        # keeps one binary's rows from crowding another's listings).
        for t in $pg_wanted; do
            name=$(basename "$t")
            db_url="$url"
            if psql -q "${url%/*}/postgres" -c "DROP DATABASE IF EXISTS orchard_$name" \
                -c "CREATE DATABASE orchard_$name" >/dev/null 2>&1; then
                db_url="${url%/*}/orchard_$name"
            fi
            ORCHARD_TEST_DB="$db_url" run_one "$t" "$name@postgres"
        done
    fi
    if [ -n "$pg_dir" ]; then
        sh tests/pg.sh stop "$pg_dir"
        trap - EXIT INT TERM
    fi
fi

echo
[ -z "$failed_names" ] || echo "failing binaries:$failed_names"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ -z "$failed_names" ]
