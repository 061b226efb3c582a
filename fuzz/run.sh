#!/bin/sh
# Builds every fuzz/fuzz_*.c target with clang's libFuzzer (+ASan+UBSan) and
# runs each for SECONDS. Corpora live in build/fuzz/corpus-NAME, seeded from
# fuzz/seeds/NAME (if present). A crash leaves its input in build/fuzz/ and
# makes this script fail. Usage: fuzz/run.sh [SECONDS]
set -eu
secs=${1:-60}
sh tools/install-deps.sh clang libclang-rt-14-dev
PKGS="openssl libevent libevent_openssl libevent_pthreads sqlite3 libpq jansson expat libcurl"
mkdir -p build/fuzz
lib=$(ls src/*.c | grep -v '/main.c$')
status=0
for t in fuzz/fuzz_*.c; do
    name=$(basename "$t" .c)
    short=${name#fuzz_}
    bin=build/fuzz/$name
    # shellcheck disable=SC2086
    clang -std=c17 -D_GNU_SOURCE -g -O1 -fsanitize=fuzzer,address,undefined -Isrc -Itests/support \
        "$t" $lib $(pkg-config --cflags --libs $PKGS) -lpthread -o "$bin"
    corpus=build/fuzz/corpus-$short
    mkdir -p "$corpus"
    [ -d "fuzz/seeds/$short" ] && cp -n fuzz/seeds/"$short"/* "$corpus"/ 2>/dev/null || true
    echo "== $name: ${secs}s"
    if ! "$bin" -max_total_time="$secs" -max_len=65536 -print_final_stats=1 \
        -artifact_prefix=build/fuzz/"$name"- "$corpus" 2>build/fuzz/"$name".log; then
        status=1
        echo "$name: FAILED (see build/fuzz/$name.log)"
    fi
    grep -E "stat::number_of_executed_units|Done [0-9]+ runs" build/fuzz/"$name".log | tail -2
done
exit $status
