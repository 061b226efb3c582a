#!/bin/sh
# The declarative-management, Apple Watch and ADE figures in one run, each
# beside the core round trip measured in the same run.
# Usage: bench/run_features.sh BUILD_DIR   (make bench-features)
set -eu
dir=${1:?build dir}
export ORCHARD_BIN="$PWD/$dir/orchard"
echo "== $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo -), load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== core round trips (200 devices, mTLS)"
"$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8 --auth mtls
echo
echo "== DDM: sync fan-out and manifest builds, 100,000 devices"
"$dir/bench/ddm_sync" 100000 2>&1 | grep -v " info "
echo
echo "== Apple Watch: complete enrollments (403 + GetToken + profile)"
"$dir/bench/watch_enroll"
echo
echo "== ADE: configuration-URL enrollments"
"$dir/bench/ade_enroll"
echo
echo "== ADE: sync of 100,000 devices from the simulator"
"$dir/bench/ade_sync"
