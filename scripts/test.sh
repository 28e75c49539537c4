#!/usr/bin/env bash
# The whole test suite: unit tests, in-backend #[pg_test]s and the multi-connection tests in
# tests/, against a PostgreSQL 15 server that the pgrx harness starts as the `postgres` user.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$0" "$@"; fi
source scripts/setup.sh
# pg_cron: tests/managed.rs schedules the SQL edition's sweep with it, as the README does.
ensure_packages "postgresql-$PG_MAJOR-cron"

# PostgreSQL refuses to run as root: the harness runs initdb and the server as `postgres`, in a
# scratch data directory that user can write.
pgdata=${PG_BARRIER_TEST_PGDATA:-/tmp/pg_barrier-test-pgdata}
say "Running the test suite (server data in $pgdata)"
cargo pgrx test pg15 --runas postgres --pgdata "$pgdata" "$@"
