#!/bin/sh
# Runs the benchmarks against a release build. Usage: bench/run.sh BUILD_DIR
set -eu
dir=${1:?build dir}
export ORCHARD_BIN="$PWD/$dir/orchard"
echo "== round trips (200 devices), store empty"
"$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 4
echo
echo "== round trips (200 devices), 100,000 enrollments stored"
"$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 4 --preload 100000
if [ -x "$dir/bench/store_scale" ]; then
    echo
    echo "== next-command lookup vs store size"
    "$dir/bench/store_scale"
fi
