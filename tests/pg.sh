#!/bin/sh
# A throwaway PostgreSQL cluster for the tests (Debian's postgresql package).
#
#   sh tests/pg.sh start DIR   initdb a new cluster in DIR (new or empty),
#                              start it on 127.0.0.1 and a free port, create
#                              a role with a password and a database, and
#                              print the database URL as the last line
#   sh tests/pg.sh stop DIR    stop that cluster and remove DIR
#
# The role may create databases (tests/test_pg_store.c makes scratch ones)
# and connects over TCP with a SCRAM password, as a real deployment does;
# only the local socket (inside DIR) is trusted, for the setup here.
# fsync is off (a throwaway test server); ORCHARD_PG_FSYNC=on turns it on,
# for benchmarks that compare durable commits with SQLite's.
# Run as root (CI), the cluster runs as the postgres user; run as anyone
# else, as that user. Exits non-zero, saying why, if the cluster does not
# come up: the PostgreSQL half of the test run then fails.
set -eu

PG_ROLE=orchard_test
PG_PASSWORD=orchard-test-password
PG_DATABASE=orchard_test

pg_bindir()
{
    for v in 17 16 15 14 13; do
        if [ -x "/usr/lib/postgresql/$v/bin/initdb" ]; then
            echo "/usr/lib/postgresql/$v/bin"
            return 0
        fi
    done
    command -v initdb >/dev/null 2>&1 && dirname "$(command -v initdb)" && return 0
    echo "pg.sh: no PostgreSQL server found (apt-get install postgresql)" >&2
    return 1
}

# Runs a command as the cluster's owner.
as_owner()
{
    if [ "$(id -u)" -eq 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

start()
{
    dir=$1
    bin=$(pg_bindir)
    [ -z "$(ls -A "$dir" 2>/dev/null)" ] || { echo "pg.sh: $dir is not empty" >&2; return 1; }
    mkdir -p "$dir"
    [ "$(id -u)" -ne 0 ] || chown postgres "$dir"
    chmod 700 "$dir"
    as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
        --encoding=UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 ||
        { cat "$dir/initdb.log" >&2; echo "pg.sh: initdb failed" >&2; return 1; }
    # A port no one else uses: several test runs (worktrees) may run at once.
    port=$((50000 + $$ % 10000))
    tries=0
    while :; do
        if as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
            -o "-k $dir -p $port -c listen_addresses=127.0.0.1 -c fsync=${ORCHARD_PG_FSYNC:-off} -c max_connections=200" \
            start >/dev/null 2>&1; then
            break
        fi
        tries=$((tries + 1))
        if [ "$tries" -ge 10 ]; then
            cat "$dir/server.log" >&2 || true
            echo "pg.sh: the PostgreSQL server did not start" >&2
            return 1
        fi
        port=$((port + 7))
    done
    echo "$port" >"$dir/port"
    as_owner "$bin/psql" -h "$dir" -p "$port" -U postgres -d postgres -qAt -v ON_ERROR_STOP=1 >/dev/null <<EOF
CREATE ROLE $PG_ROLE LOGIN CREATEDB PASSWORD '$PG_PASSWORD';
CREATE DATABASE $PG_DATABASE OWNER $PG_ROLE;
EOF
    echo "postgres://$PG_ROLE:$PG_PASSWORD@127.0.0.1:$port/$PG_DATABASE"
}

stop()
{
    dir=$1
    [ -d "$dir" ] || return 0
    bin=$(pg_bindir)
    if [ -f "$dir/data/postmaster.pid" ]; then
        as_owner "$bin/pg_ctl" -D "$dir/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
    rm -rf "$dir"
}

case "${1:-}" in
start) start "${2:?cluster directory}" ;;
stop) stop "${2:?cluster directory}" ;;
*)
    echo "usage: sh tests/pg.sh start|stop DIR" >&2
    exit 2
    ;;
esac
