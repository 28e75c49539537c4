#!/usr/bin/env bash
# The whole test suite, over the matrix of PostgreSQL builds in PG_MAJORS (default: all of them):
#
#   15          Debian 12's packages: every test, with Citus (tests/citus.rs: a coordinator and
#               two workers, built by scripts/citus.sh from the vendored Citus source, or CITUS_SRC)
#   16, 17      the in-backend tests and the client-side suite (with the isolation specs and
#               the upgrade tests)
#   18          every test
#   15-cassert  PostgreSQL 15 built with assertions: every test
#
# each against three targets: the Rust build (the unit tests, the in-backend #[pg_test]s and
# every test binary in tests/; on 16 and 17 the #[pg_test]s and tests/integration), the
# Rust build with its fast path off and the SQL edition (the client-side binary, both); and, for
# 15 to 18, the Debian package of the Rust build (scripts/package.sh), installed into a scratch
# server of its major and run. Each build's servers run as the `postgres` user, in scratch data
# directories. Then, once, the client tests (scripts/clients.sh: Python with PgBouncer and
# Celery end to end, Rust, Node) against both editions; PG_BARRIER_CLIENTS=0 skips them.
#
#   PG_MAJORS="15" ./scripts/test.sh        a quick run on one build
#   ./scripts/test.sh NAME                  the tests whose names contain NAME, on every build
set -euo pipefail
if [[ $EUID -ne 0 ]]; then
  exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR,PG_MAJORS,PG_BARRIER_CACHE,PG_BARRIER_TEST_SEED,PG_BARRIER_MODEL_SECONDS,PG_BARRIER_FUZZ_SECONDS,PG_BARRIER_CHURN,PG_BARRIER_CLIENTS,PG_BARRIER_EDITIONS,PG_BARRIER_PYTEST_ARGS,RUST_TEST_NOCAPTURE,CITUS_SRC \
    "$(realpath "$0")" "$@"
fi
cd "$(dirname "$0")/.."
source scripts/setup.sh

builds=(${PG_MAJORS:-15 16 17 18 15-cassert})

# Tests a build cannot run, with the reason and the build that covers them.
declare -A missing_tool=(
  [18]="managed_pg_cron_runs_the_sweep: Debian 12 has no pg_cron for 18 (the test runs on 15 and 15-cassert)"
)
# tests/citus.rs needs Citus, which scripts/citus.sh builds for Debian's PostgreSQL 15 (Citus 13.2
# supports 15 to 17; the assertion build and 18 have none).
citus_elsewhere="citus::: Citus is built for Debian's PostgreSQL 15 only (tests/citus.rs runs on 15)"

# Every build first, so that a missing one fails before any test runs.
for build in "${builds[@]}"; do use_postgres "$build"; done

summary=()
package_15=
for build in "${builds[@]}"; do
  use_postgres "$build"
  major=$BUILD_MAJOR
  pgdata=/tmp/pg_barrier-test-pgdata-$build
  env=(
    "${BUILD_ENV[@]}"
    PG_BARRIER_BUILD="$build" CARGO_PGRX_TEST_RUNAS=postgres CARGO_PGRX_TEST_PGDATA="$pgdata"
    PGRX_FEATURES="pg$major pg_test" PGRX_NO_DEFAULT_FEATURES=true PGRX_ALL_FEATURES=false
    PGRX_BUILD_PROFILE=dev PGRX_NO_SCHEMA=false
  )
  # pg_cron: tests/managed.rs schedules the SQL edition's sweep with it, as docs/managed.md does.
  [[ $build != 15 ]] || ensure_packages "postgresql-15-cron"
  [[ $build != 15 ]] || scripts/citus.sh /usr/lib/postgresql/15/bin/pg_config
  cargo_test=(cargo test --features "pg$major pg_test" --no-default-features)
  skips=()
  if [[ -n ${missing_tool[$build]:-} ]]; then
    say "PostgreSQL $build does not run ${missing_tool[$build]}"
    skips+=(--skip "${missing_tool[$build]%%:*}")
  fi
  if [[ $build != 15 ]]; then
    say "PostgreSQL $build does not run ${citus_elsewhere}"
    skips+=(--skip "${citus_elsewhere%%: *}")
  fi
  case $build in
    16 | 17) runs=("rust:backend+clients" "rust-without-fast-path:clients" "sql:clients") ;;
    *) runs=("rust:all" "rust-without-fast-path:clients" "sql:clients") ;;
  esac
  for run in "${runs[@]}"; do
    target=${run%%:*} scope=${run#*:}
    case $scope in
      all) what="every test" selection=() ;;
      backend+clients) what="the in-backend and client-side tests" selection=(--lib --test integration) ;;
      clients) what="the client-side tests" selection=(--test integration) ;;
    esac
    say "PostgreSQL $build, $target: $what (server data in $pgdata)"
    started=$SECONDS
    filters=("$@")
    [[ $scope == all ]] && filters+=("${skips[@]}")
    [[ $target == rust ]] || filters+=(--skip library::)
    env "${env[@]}" PG_BARRIER_EDITION="$target" "${cargo_test[@]}" "${selection[@]}" -- \
      "${filters[@]}"
    summary+=("$(printf '%-11s %-23s %-16s %4ds' "$build" "$target" "$scope" $((SECONDS - started)))")
  done

  # The Debian package of this major, installed into a scratch server and run (not when the
  # run is narrowed to some tests by name).
  if [[ $build != *-* && $# -eq 0 ]]; then
    say "PostgreSQL $build: the Debian package"
    started=$SECONDS
    deb=$(scripts/package.sh "$build" --check | tail -1)
    [[ $build != 15 ]] || package_15=$deb
    summary+=("$(printf '%-11s %-23s %-16s %4ds' "$build" rust package $((SECONDS - started)))")
  fi
done

# The clients (Python with Celery and PgBouncer, Rust, Node) against both editions, once: they
# call the SQL API, whose answers the matrix has just checked on every build.
if [[ $# -eq 0 && ${PG_BARRIER_CLIENTS:-1} != 0 ]]; then
  say "The client tests (scripts/clients.sh)"
  started=$SECONDS
  # The package of 15 just checked, if the matrix built it: clients.sh installs it.
  PG_BARRIER_DEB=${package_15:-} scripts/clients.sh
  summary+=("$(printf '%-11s %-23s %-16s %4ds' 15 "rust, sql" clients $((SECONDS - started)))")
fi

say "Passed:"
printf '  %s\n' "${summary[@]}"
