#!/usr/bin/env bash
# The client tests, from the stacks pg_barrier's users run, against real servers this script
# starts and stops:
#
#   python  clients/python: mypy --strict, then pytest over the package installed from the wheel
#           `python -m build` makes (typed calls, errors, the waiter, PgBouncer, Celery end to
#           end on Redis)
#   rust    clients/rust: cargo test
#   node    clients/node: the example
#
# each against both editions of pg_barrier, on PostgreSQL 15 (a scratch copy of the server,
# into which the Rust build's Debian package is installed): the Rust build on a server that
# preloads it, the SQL edition on a server that loads no pg_barrier library. In front of them a
# PgBouncer in transaction-pooling mode and a Redis for Celery, both from Debian.
#
#   scripts/clients.sh [python|rust|node ...]   some suites only (default: all three)
#   PG_BARRIER_EDITIONS="sql"                   one edition only (default: "rust sql")
#   PG_BARRIER_PYTEST_ARGS="-x -k=waiter"       extra arguments for pytest (split on spaces)
#
# Run by scripts/test.sh after the matrix. The Python environment (pinned in
# clients/python/requirements-test.txt) and npm's cache live in /var/cache/pg_barrier (or
# $PG_BARRIER_CACHE), outside the checkout.
set -euo pipefail
shopt -s inherit_errexit
if [[ $EUID -ne 0 ]]; then
  exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CARGO_TARGET_DIR,PG_BARRIER_CACHE,PG_BARRIER_EDITIONS,PG_BARRIER_PYTEST_ARGS,RUST_TEST_NOCAPTURE \
    "$(realpath "$0")" "$@"
fi
cd "$(dirname "$0")/.."
source scripts/setup.sh

suites=("$@")
((${#suites[@]})) || suites=(python rust node)
for suite in "${suites[@]}"; do
  case $suite in python | rust | node) ;; *)
    echo "scripts/clients.sh: no suite '$suite' (python, rust or node)" >&2
    exit 2
    ;;
  esac
done
editions=(${PG_BARRIER_EDITIONS:-rust sql})
cache=${PG_BARRIER_CACHE:-/var/cache/pg_barrier}
major=15

ensure_packages pgbouncer redis-server python3-venv
command -v node >/dev/null || ensure_packages nodejs
command -v npm >/dev/null || ensure_packages npm

# --- The servers ------------------------------------------------------------------------------
# The Rust build's package: the one scripts/test.sh has just built and checked, or a new one.
deb=${PG_BARRIER_DEB:-$(scripts/package.sh "$major" | tail -1)}
scratch=$(mktemp -d /tmp/pg_barrier-clients-XXXXXX)
chmod 755 "$scratch"
server=$scratch/usr/lib/postgresql/$major
declare -A port=([rust]=5581 [sql]=5582)
bouncer_port=6581 redis_port=6582
stop() {
  local edition
  for edition in rust sql; do
    [[ -d $scratch/$edition ]] || continue
    runuser -u postgres -- "$server/bin/pg_ctl" -D "$scratch/$edition" -m immediate stop \
      >/dev/null 2>&1 || true
  done
  [[ -f $scratch/run/pgbouncer.pid ]] && kill "$(cat "$scratch/run/pgbouncer.pid")" 2>/dev/null || true
  [[ -f $scratch/redis.pid ]] && kill "$(cat "$scratch/redis.pid")" 2>/dev/null || true
  rm -rf "$scratch"
}
trap stop EXIT
for used in "${port[@]}" "$bouncer_port" "$redis_port"; do
  if (exec 3<>"/dev/tcp/127.0.0.1/$used") 2>/dev/null; then
    echo "scripts/clients.sh: port $used is in use (a leftover server?)" >&2
    exit 1
  fi
done

say "Installing $(basename "$deb") into a scratch PostgreSQL $major"
scratch_server "$(scripts/postgres.sh "$major" | tail -1)" "$major" "$scratch"
dpkg-deb -x "$deb" "$scratch"
scripts/install-sql-edition.sh --scripts-only "$scratch/usr/share/postgresql/$major/extension" >&2
install -d -o postgres -g postgres "$scratch/run"

sql_version=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" sql-edition/pg_barrier.control)
for edition in "${editions[@]}"; do
  case $edition in
    rust) settings="-c shared_preload_libraries=pg_barrier" version="" ;;
    sql) settings="" version=" VERSION '$sql_version'" ;;
    *) echo "scripts/clients.sh: no edition '$edition' (rust or sql)" >&2 && exit 2 ;;
  esac
  install -d -o postgres -g postgres "$scratch/$edition"
  runuser -u postgres -- "$server/bin/initdb" -D "$scratch/$edition" --auth=trust -U postgres \
    >/dev/null
  runuser -u postgres -- "$server/bin/pg_ctl" -D "$scratch/$edition" -l "$scratch/run/$edition.log" -w \
    -o "-p ${port[$edition]} -c listen_addresses=127.0.0.1 -k $scratch/run -c max_connections=200 $settings" \
    start >/dev/null || { cat "$scratch/run/$edition.log" >&2; exit 1; }
  # Two ordinary roles: the tests' own (which owns a schema for their bookkeeping tables) and
  # another one, whose barriers are not the first one's.
  psql -h 127.0.0.1 -p "${port[$edition]}" -U postgres -X -q -v ON_ERROR_STOP=1 <<SQL
CREATE ROLE barrier_app LOGIN;
CREATE ROLE barrier_other LOGIN;
CREATE DATABASE barriers;
\connect barriers
CREATE EXTENSION pg_barrier$version;
CREATE SCHEMA client_tests AUTHORIZATION barrier_app;
SQL
done

say "Starting PgBouncer (transaction pooling) and Redis"
cat >"$scratch/run/pgbouncer.ini" <<INI
[databases]
barriers_rust = host=127.0.0.1 port=${port[rust]} dbname=barriers
barriers_sql = host=127.0.0.1 port=${port[sql]} dbname=barriers

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $bouncer_port
unix_socket_dir =
auth_type = trust
auth_file = $scratch/run/userlist.txt
pool_mode = transaction
; fewer server connections than the tests' clients, so that their transactions really share them
default_pool_size = 6
max_client_conn = 500
ignore_startup_parameters = extra_float_digits
pidfile = $scratch/run/pgbouncer.pid
logfile = $scratch/run/pgbouncer.log
INI
printf '"barrier_app" ""\n"barrier_other" ""\n' >"$scratch/run/userlist.txt"
chown postgres:postgres "$scratch/run/pgbouncer.ini" "$scratch/run/userlist.txt"
runuser -u postgres -- pgbouncer -d "$scratch/run/pgbouncer.ini" >&2
redis-server --port "$redis_port" --bind 127.0.0.1 --save '' --appendonly no --daemonize yes \
  --pidfile "$scratch/redis.pid" --logfile "$scratch/redis.log" --dir "$scratch" >&2

# --- The suites' tools ------------------------------------------------------------------------
if [[ " ${suites[*]} " == *" python "* ]]; then
  requirements=clients/python/requirements-test.txt
  venv=$cache/python-$(sha256sum "$requirements" | cut -c1-12)
  if [[ ! -f $venv/.complete ]]; then
    say "Creating the Python environment $venv (pinned versions)"
    rm -rf "$venv"
    /usr/bin/python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    touch "$venv/.complete"
  fi
  say "Building the pg-barrier wheel with python -m build"
  build=$scratch/python-build
  cp -a clients/python "$build"
  rm -rf "$build"/{build,dist} "$build"/src/*.egg-info
  "$venv/bin/python" -m build --wheel --no-isolation --outdir "$scratch/dist" "$build" >/dev/null
  wheel=$(echo "$scratch"/dist/pg_barrier-*.whl)
  "$venv/bin/python" - "$wheel" <<'PY'
import sys, zipfile
names = zipfile.ZipFile(sys.argv[1]).namelist()
for needed in ("pg_barrier/py.typed", "pg_barrier/celery.py", "pg_barrier/waiter.py"):
    assert needed in names, f"the wheel lacks {needed}: {names}"
PY
  "$venv/bin/pip" install --quiet --disable-pip-version-check --no-deps --force-reinstall "$wheel"
  say "Type-checking the package (mypy --strict, configured in pyproject.toml)"
  (cd clients/python && "$venv/bin/mypy" --cache-dir "$scratch/mypy" src/pg_barrier >&2)
fi
if [[ " ${suites[*]} " == *" node "* ]]; then
  say "Installing the Node example's dependencies (npm ci)"
  (cd clients/node && npm_config_cache=$cache/npm npm ci --no-audit --no-fund --loglevel=error >&2)
fi

# --- The suites, against each edition ---------------------------------------------------------
summary=()
redis_db=0
for edition in "${editions[@]}"; do
  url=postgresql://barrier_app@127.0.0.1:${port[$edition]}/barriers
  env=(
    PG_BARRIER_EDITION="$edition"
    PG_BARRIER_DSN="$url"
    PG_BARRIER_OTHER_DSN="postgresql://barrier_other@127.0.0.1:${port[$edition]}/barriers"
    PG_BARRIER_BOUNCER_DSN="postgresql://barrier_app@127.0.0.1:$bouncer_port/barriers_$edition"
    PG_BARRIER_REDIS_URL="redis://127.0.0.1:$redis_port/$redis_db"
    PG_BARRIER_FIGURES="$scratch/figures.jsonl"
  )
  redis_db=$((redis_db + 1))
  for suite in "${suites[@]}"; do
    say "Client tests: $suite against the $edition edition"
    started=$SECONDS
    case $suite in
      python)
        # From the scratch directory, so that `import pg_barrier` is the installed wheel.
        (cd "$scratch" && env "${env[@]}" "$venv/bin/python" -m pytest -p no:cacheprovider \
          --rootdir "$PWD" -c /dev/null -q "$OLDPWD/clients/python/tests" \
          ${PG_BARRIER_PYTEST_ARGS:-})
        ;;
      rust) env "${env[@]}" cargo test -p pg-barrier-client --quiet ;;
      node) env "${env[@]}" node clients/node/example.js ;;
    esac
    summary+=("$(printf '%-8s %-6s %4ds' "$suite" "$edition" $((SECONDS - started)))")
  done
done

say "Client tests passed:"
printf '  %s\n' "${summary[@]}"
if [[ -s $scratch/figures.jsonl ]]; then
  say "What the Celery end-to-end tests did:"
  sed 's/^/  /' "$scratch/figures.jsonl" >&2
fi
