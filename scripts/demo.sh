#!/usr/bin/env bash
# Live demo: builds and installs pg_barrier, starts a local PostgreSQL 15 on port 5499 if it is
# not running, then runs demo/: a listener, eight workers racing to report twenty tasks, and the
# one worker that completes the barrier printing every result in order.
set -euo pipefail
if [[ $EUID -ne 0 ]]; then
  exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$(realpath "$0")" "$@"
fi
cd "$(dirname "$0")/.."
source scripts/setup.sh

port=${PG_BARRIER_DEMO_PORT:-5499}
pgdata=${PG_BARRIER_DEMO_PGDATA:-/var/tmp/pg_barrier-demo}
bindir=$("$PG_CONFIG" --bindir)

say "Building and installing the extension (release)"
cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null

as_postgres() { runuser -u postgres -- "$@"; }
if [[ ! -s "$pgdata/PG_VERSION" ]]; then
  say "Creating a demo cluster in $pgdata"
  install -d -o postgres -g postgres "$pgdata"
  as_postgres "$bindir/initdb" -D "$pgdata" --auth=trust -U postgres >/dev/null
fi
if ! as_postgres "$bindir/pg_ctl" -D "$pgdata" status >/dev/null 2>&1; then
  say "Starting PostgreSQL $PG_MAJOR on port $port"
  as_postgres "$bindir/pg_ctl" -D "$pgdata" -l "$pgdata/server.log" -w \
    -o "-p $port -k /tmp -c listen_addresses=localhost" start >/dev/null
else
  # A server from an earlier demo still has the old library loaded: restart to load the new one.
  as_postgres "$bindir/pg_ctl" -D "$pgdata" -w restart >/dev/null
fi

say "Running the demo"
cargo run --quiet --release -p pg_barrier_demo -- "host=localhost port=$port user=postgres dbname=postgres"

cat <<TXT

The demo server keeps running. Try it yourself:
  psql -h localhost -p $port -U postgres
Stop it with:
  runuser -u postgres -- $bindir/pg_ctl -D $pgdata stop
TXT
