#!/usr/bin/env bash
# The whole test suite: unit tests, in-backend #[pg_test]s and the multi-connection tests in
# tests/, against a PostgreSQL 15 server that the pgrx harness starts as the `postgres` user.
#
# The client-side tests (tests/integration) run three times: against the Rust build (with the
# tests of what only its library has), against the Rust build with its fast path off, and
# against the SQL edition. `./scripts/test.sh NAME` runs the tests whose names contain NAME.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$0" "$@"; fi
source scripts/setup.sh
# pg_cron: tests/managed.rs schedules the SQL edition's sweep with it, as the README does.
ensure_packages "postgresql-$PG_MAJOR-cron"

# PostgreSQL refuses to run as root: the harness runs initdb and the server as `postgres`, in a
# scratch data directory that user can write.
pgdata=${PG_BARRIER_TEST_PGDATA:-/tmp/pg_barrier-test-pgdata}
say "Running the test suite against the Rust build (server data in $pgdata)"
cargo pgrx test pg15 --runas postgres --pgdata "$pgdata" "$@"

# The same client-side binary again, for the other two targets. This is what `cargo pgrx test`
# runs, narrowed to that binary: its harness reads these variables to build, install and start
# the server as above.
for target in rust-without-fast-path sql; do
  say "Running the client-side tests against: $target"
  PG_BARRIER_EDITION=$target \
    CARGO_PGRX_TEST_RUNAS=postgres CARGO_PGRX_TEST_PGDATA="$pgdata" \
    PGRX_FEATURES="pg$PG_MAJOR pg_test" PGRX_NO_DEFAULT_FEATURES=true PGRX_ALL_FEATURES=false \
    PGRX_BUILD_PROFILE=dev PGRX_NO_SCHEMA=false \
    cargo test --features "pg$PG_MAJOR pg_test" --no-default-features --test integration -- \
    --skip library:: "$@"
done
