#!/bin/sh
# Issue #7's figures, all in one run, ending with one table:
#   round trips/s (no-op ceiling and MDM) on SQLite, on PostgreSQL with one
#   instance and with two; multi-target enqueue to 100,000 enrollments on
#   both; next-command latency with 10,000,000 queued commands on both.
# Usage: bench/run7.sh BUILD_DIR (a release build; `make bench7` builds it
# and runs this). Needs ~15 GB free in /tmp and about half an hour.
#
# PostgreSQL is a throwaway cluster (tests/pg.sh) with fsync on, so commits
# are as durable as SQLite's, set up as the scaling guide recommends for a
# database server rather than with initdb's defaults: shared_buffers 2GB,
# max_wal_size 16GB (a 10,000,000-row load otherwise checkpoints every GB).
# The heavy populations run last so they do not disturb the round trips.
set -eu
dir=${1:?build dir}
export ORCHARD_BIN="$PWD/$dir/orchard"
scale_n=${RUN7_SCALE_DEVICES:-1000000} # x 10 pending commands each
fan_n=${RUN7_FANOUT_TARGETS:-100000}
# 1,200 25-character UDIDs fill the request line to ~31 KB, under the
# server's 32 KiB header limit (enqueue_fanout.c).
fan_batch=1200
out=$(mktemp -d /tmp/orchard-run7-XXXXXX)
pg_dir=$(mktemp -d /tmp/orchard-pg-run7-XXXXXX)
cleanup()
{
    sh tests/pg.sh stop "$pg_dir" || true
    rm -rf "$out"
}
trap cleanup EXIT INT TERM

# Runs a section, shows its output and keeps it in $out/NAME for the table.
section()
{
    name=$1
    title=$2
    shift 2
    echo
    echo "== $title  [$(date -u +%H:%M:%S), load $(cut -d' ' -f1-3 /proc/loadavg)]"
    t0=$(date +%s)
    if ! "$@" >"$out/$name" 2>&1; then
        echo "(section $name failed)" >>"$out/$name"
    fi
    cat "$out/$name"
    echo "($(($(date +%s) - t0)) s)"
}

echo "issue #7 benchmark run, $(date -u '+%Y-%m-%d %H:%M UTC'), orchard $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "host: $(nproc) cores ($(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)), "\
"$(awk '/MemTotal/ {printf "%.0f GB RAM", $2 / 1048576}' /proc/meminfo), shared with other jobs"

section rt_sqlite "round trips, SQLite, 1 instance (200 devices, Mdm-Signature, 8 client threads, 10 rounds)" \
    "$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8
section fan_sqlite "enqueue fan-out to $fan_n enrollments, SQLite" \
    "$dir/bench/enqueue_fanout" --targets "$fan_n" --batch "$fan_batch"

url=$(ORCHARD_PG_FSYNC=on sh tests/pg.sh start "$pg_dir" | tail -n 1)
port=$(cat "$pg_dir/port")
as_super() { psql -q -h "$pg_dir" -p "$port" -U postgres -d postgres -v ON_ERROR_STOP=1 "$@"; }
as_super -c "ALTER SYSTEM SET shared_buffers = '2GB'" -c "ALTER SYSTEM SET max_wal_size = '16GB'" \
    -c "ALTER SYSTEM SET checkpoint_timeout = '30min'"
sh tests/pg.sh halt "$pg_dir"
ORCHARD_PG_FSYNC=on sh tests/pg.sh resume "$pg_dir"
for d in orchard_rt orchard_rt2 orchard_fan orchard_scale; do
    as_super -c "CREATE DATABASE $d OWNER orchard_test"
done
base=${url%/*}
echo "PostgreSQL: $(as_super -Atc 'SHOW server_version'), fsync $(as_super -Atc 'SHOW fsync'),"\
" shared_buffers $(as_super -Atc 'SHOW shared_buffers'), loopback TCP"

section rt_pg1 "round trips, PostgreSQL, 1 instance" \
    "$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8 --db "$base/orchard_rt"
section rt_pg2 "round trips, PostgreSQL, 2 instances on one database" \
    "$dir/bench/roundtrip" --devices 200 --rounds 10 --threads 8 --instances 2 --db "$base/orchard_rt2"
section fan_pg "enqueue fan-out to $fan_n enrollments, PostgreSQL" \
    "$dir/bench/enqueue_fanout" --db "$base/orchard_fan" --targets "$fan_n" --batch "$fan_batch"
section scale_pg "next-command latency, $scale_n enrollments x 10 pending commands, PostgreSQL" \
    env ORCHARD_BENCH_DB="$base/orchard_scale" "$dir/bench/store_scale_pg" "$scale_n"
sh tests/pg.sh stop "$pg_dir"

section scale_sqlite "next-command latency, $scale_n enrollments x 10 pending commands, SQLite" \
    "$dir/bench/store_scale" "$scale_n"

# ---- the table ------------------------------------------------------------
# Field $col of the line starting with $word in section $name ("?" if none).
field() { awk -v w="$2" -v c="$3" '$1 == w && NF == 6 { v = $c } END { print (v == "" ? "?" : v) }' "$out/$1"; }
rate() { awk '/^store/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1) " s, " $(i + 1) "/s" }' "$out/$1"; }
http() { awk '/^http   PUT/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1) " s, " $(i + 1) "/s" }' "$out/$1"; }
fleet() { awk '/^fleet/ { for (i = 1; i <= NF; i++) if ($i == "s,") print $(i - 1) " s, " $(i + 1) "/s" }' "$out/$1"; }
scale() { awk -v c="$2" '$1 ~ /^[0-9]+$/ && NF == 5 { v = $c } END { print (v == "" ? "?" : v) }' "$out/$1"; }
populated() { sed -n 's/^populated to [0-9]* in \([0-9]*\) s$/\1 s/p' "$out/$1" | tail -n 1; }
echo
echo "== issue #7 summary"
printf '%-52s | %16s | %16s | %16s\n' "" "SQLite" "PostgreSQL 1" "PostgreSQL 2"
printf '%-52s | %16s | %16s | %16s\n' "no-op ceiling, round trips/s" \
    "$(field rt_sqlite noop 2)" "$(field rt_pg1 noop 2)" "$(field rt_pg2 noop 2)"
printf '%-52s | %16s | %16s | %16s\n' "MDM round trips/s" \
    "$(field rt_sqlite mdm 2)" "$(field rt_pg1 mdm 2)" "$(field rt_pg2 mdm 2)"
printf '%-52s | %16s | %16s | %16s\n' "MDM round trip p50 / p99 ms" \
    "$(field rt_sqlite mdm 3) / $(field rt_sqlite mdm 4)" "$(field rt_pg1 mdm 3) / $(field rt_pg1 mdm 4)" \
    "$(field rt_pg2 mdm 3) / $(field rt_pg2 mdm 4)"
printf '%-52s | %16s | %16s | %16s\n' "server CPU s per 1,000 MDM round trips" \
    "$(field rt_sqlite mdm 5)" "$(field rt_pg1 mdm 5)" "$(field rt_pg2 mdm 5)"
printf '%-52s | %16s | %16s | %16s\n' "enqueue to $fan_n: store op, one call" "$(rate fan_sqlite)" "$(rate fan_pg)" ""
printf '%-52s | %16s | %16s | %16s\n' "enqueue to $fan_n: admin API, calls of $fan_batch ids" \
    "$(http fan_sqlite)" "$(http fan_pg)" ""
printf '%-52s | %16s | %16s | %16s\n' "enqueue to $fan_n: admin API, one ?all=1 call" \
    "$(fleet fan_sqlite)" "$(fleet fan_pg)" ""
printf '%-52s | %16s | %16s | %16s\n' "$((scale_n * 10)) queued: next-command lookup us/op" \
    "$(scale scale_sqlite 3)" "$(scale scale_pg 3)" ""
printf '%-52s | %16s | %16s | %16s\n' "$((scale_n * 10)) queued: ack + next p50 / p99 us" \
    "$(scale scale_sqlite 4) / $(scale scale_sqlite 5)" "$(scale scale_pg 4) / $(scale scale_pg 5)" ""
printf '%-52s | %16s | %16s | %16s\n' "$((scale_n * 10)) queued: time to populate (bulk SQL)" \
    "$(populated scale_sqlite)" "$(populated scale_pg)" ""
if grep -q "^(section .* failed)" "$out"/*; then
    echo "some sections failed: see above"
    exit 1
fi
