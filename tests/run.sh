#!/bin/sh
# Runs every test binary of a build directory and prints one closing line:
# "tests: N passed, N failed". Exit status is non-zero if any test failed.
# Usage: tests/run.sh BUILD_DIR [TEST_NAME...]   (default: every test binary)
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
for t in "$dir"/tests/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if [ $# -gt 0 ]; then
        case " $* " in *" $name "*) ;; *) continue ;; esac
    fi
    echo "=== $name"
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
    [ "$status" -eq 0 ] || failed_names="$failed_names $name"
done
echo
[ -z "$failed_names" ] || echo "failing binaries:$failed_names"
echo "tests: $passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ -z "$failed_names" ]
