#!/usr/bin/env bash
# Start a throwaway PostgreSQL server for the storage tests (Debian, as root) and print the line
#   export PTMOE_TEST_DATABASE_URL=postgresql+psycopg://...
# on stdout, for `eval "$(bash .ci/postgres.sh)"`. Everything else goes to stderr.
# The cluster lives in $PTMOE_PG_DIR (default /tmp/ptmoe-pg) on port $PTMOE_PG_PORT (default 54329),
# owned by the postgres user, apart from any system cluster; running it again reuses a running one.
set -euo pipefail

PG_DIR=${PTMOE_PG_DIR:-/tmp/ptmoe-pg}
PG_PORT=${PTMOE_PG_PORT:-54329}
DB_NAME=ptmoe_test
DB_USER=ptmoe
DB_PASS=ptmoe

log() { echo "postgres.sh: $*" >&2; }

find_bindir() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1; }

BINDIR=$(find_bindir)
if [ -z "$BINDIR" ] || [ ! -x "$BINDIR/initdb" ]; then
  log "installing postgresql from Debian's packages"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq --no-install-recommends postgresql >&2
  BINDIR=$(find_bindir)
fi
[ -x "$BINDIR/initdb" ] || { log "no initdb found after installing postgresql"; exit 1; }

as_pg() { runuser -u postgres -- "$@"; }

if ! as_pg "$BINDIR/pg_ctl" -D "$PG_DIR/data" status >/dev/null 2>&1; then
  if [ ! -f "$PG_DIR/data/PG_VERSION" ]; then
    log "creating a cluster in $PG_DIR"
    rm -rf "$PG_DIR"
    mkdir -p "$PG_DIR"
    chown postgres:postgres "$PG_DIR"
    as_pg "$BINDIR/initdb" -D "$PG_DIR/data" -U postgres -A trust -E UTF8 --no-locale >&2
  fi
  log "starting the server on 127.0.0.1:$PG_PORT"
  as_pg "$BINDIR/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/server.log" -w -t 60 \
    -o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200" start >&2
fi

psql_admin() { as_pg "$BINDIR/psql" -h "$PG_DIR" -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA "$@"; }
if [ "$(psql_admin -c "SELECT 1 FROM pg_roles WHERE rolname = '$DB_USER'")" != "1" ]; then
  psql_admin -c "CREATE ROLE $DB_USER LOGIN PASSWORD '$DB_PASS'" >&2
fi
if [ "$(psql_admin -c "SELECT 1 FROM pg_database WHERE datname = '$DB_NAME'")" != "1" ]; then
  psql_admin -c "CREATE DATABASE $DB_NAME OWNER $DB_USER" >&2
fi
log "ready"
echo "export PTMOE_TEST_DATABASE_URL=postgresql+psycopg://$DB_USER:$DB_PASS@127.0.0.1:$PG_PORT/$DB_NAME"
