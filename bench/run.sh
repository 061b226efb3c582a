#!/bin/sh
# Runs the benchmarks against a release build. Usage: bench/run.sh BUILD_DIR
set -eu
dir=${1:?build dir}
export ORCHARD_BIN="$PWD/$dir/orchard"
echo "== round trips (200 devices, Mdm-Signature), store empty"
"$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8
echo
echo "== round trips (200 devices, mTLS), store empty"
"$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8 --auth mtls
echo
echo "== round trips (200 devices, Mdm-Signature), 100,000 enrollments stored"
"$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8 --preload 100000
# PostgreSQL: the same round trips and the next-command lookup on a
# throwaway server (tests/pg.sh, fsync on so commits are as durable as
# SQLite's), one fresh database each.
if [ -x "$dir/bench/store_scale_pg" ]; then
    pg_dir=$(mktemp -d /tmp/orchard-pg-bench-XXXXXX)
    if url=$(ORCHARD_PG_FSYNC=on sh tests/pg.sh start "$pg_dir" | tail -n 1) && [ -n "$url" ]; then
        psql -q "${url%/*}/postgres" -c "CREATE DATABASE orchard_rt" -c "CREATE DATABASE orchard_rt2" \
            -c "CREATE DATABASE orchard_scale" >/dev/null
        echo
        echo "== round trips (200 devices, Mdm-Signature), PostgreSQL"
        "$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8 --db "${url%/*}/orchard_rt" || true
        echo
        echo "== round trips (200 devices, Mdm-Signature), PostgreSQL, two instances"
        "$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8 --instances 2 \
            --db "${url%/*}/orchard_rt2" || true
        echo
        echo "== next-command lookup vs store size, PostgreSQL"
        ORCHARD_BENCH_DB="${url%/*}/orchard_scale" "$dir/bench/store_scale_pg" || true
    else
        echo "(PostgreSQL server did not start: no PostgreSQL figures)"
    fi
    sh tests/pg.sh stop "$pg_dir"
fi
for b in identity_verify scep_issue profile_gen; do
    if [ -x "$dir/bench/$b" ]; then
        echo
        echo "== $b"
        "$dir/bench/$b"
    fi
done
if [ -x "$dir/bench/store_scale" ]; then
    echo
    echo "== next-command lookup vs store size"
    "$dir/bench/store_scale"
fi
if [ -x "$dir/bench/ddm_store" ]; then
    echo
    echo "== DDM sync fan-out in the store (100,000 enrollments)"
    "$dir/bench/ddm_store" 100000
fi
if [ -x "$dir/bench/push_throughput" ]; then
    echo
    echo "== APNs pushes to the mock APNs server (100,000 devices), mock ceiling via h2load"
    # h2load measures the mock's own ceiling in the same run.
    sh tools/install-deps.sh nghttp2-client || echo "(nghttp2-client not installed: no ceiling)"
    "$dir/bench/push_throughput" 100000
fi
if [ -x "$dir/bench/ddm_sync" ]; then
    echo
    echo "== DDM sync fan-out and manifest builds (100,000 devices)"
    "$dir/bench/ddm_sync" 100000
fi
if [ -x "$dir/bench/watch_enroll" ]; then
    echo
    echo "== complete Apple Watch enrollments (403 + GetToken + profile) beside Idle round trips"
    "$dir/bench/watch_enroll"
fi
if [ -x "$dir/bench/ade_sync" ]; then
    echo
    echo "== ADE device sync from the DEP simulator (100,000 devices)"
    "$dir/bench/ade_sync" 100000
fi
if [ -x "$dir/bench/ade_enroll" ]; then
    echo
    echo "== ADE configuration-URL enrollments (with and without Digest) beside Idle round trips"
    "$dir/bench/ade_enroll"
fi
