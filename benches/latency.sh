#!/usr/bin/env bash
# Completion latency: how long after the completing report of a barrier its consumers learn of
# it, through LISTEN/NOTIFY and through polling barrier_completions() every 100 ms, while eight
# other clients report into 1,000 other barriers (the throughput scenario of benches/run.sh).
# Both editions (the Rust build in database `lat`, the SQL edition in `lat_sql`), at
# synchronous_commit on and off; benches/latency.py measures (see there).
#
# Writes the raw samples to benches/results-latency/ and the report to benches/LATENCY.md. About
# 6 minutes on 2 cores (plus a release build). Runs as root (re-executed through sudo if not);
# the server runs as the postgres user in /var/tmp/pg_barrier-latency on port 5496 and is
# stopped at the end. LATENCY_COMPLETIONS (10000) completions are timed per edition and setting,
# one every LATENCY_INTERVAL_MS (10) milliseconds; LATENCY_RUNS ("rust:on sql:on rust:off sql:off")
# picks editions and settings.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$0" "$@"; fi
source scripts/setup.sh

COMPLETIONS=${LATENCY_COMPLETIONS:-10000}
INTERVAL_MS=${LATENCY_INTERVAL_MS:-10}
RUNS=${LATENCY_RUNS:-rust:on sql:on rust:off sql:off}
CLIENTS=8
root=/var/tmp/pg_barrier-latency
pgdata=$root/data
port=5496
bindir=$("$PG_CONFIG" --bindir)
# The server's own installation, with the build under test: another checkout's `cargo pgrx
# install` into the system's one cannot replace the library under the running server.
server=$root/pg/usr/lib/postgresql/$PG_MAJOR
cache=${PG_BARRIER_CACHE:-/var/cache/pg_barrier}
data=benches/results-latency
out=benches/LATENCY.md
work=$(mktemp -d)
started=$(date +%s)
pgbench_pid=
sweeper_pid=
# The figures are only as good as the machine is quiet: its load before the run goes in the report.
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${load_before%% *}" 'BEGIN { exit !(l > 0.5) }'; then
  say "Warning: the load average is $load_before; other work on this machine distorts the figures"
fi

as_postgres() { runuser -u postgres -- "$@"; }
# q DATABASE PSQL-OPTIONS...: as postgres.
q() {
  local db=$1
  shift
  psql -X -q -At -v ON_ERROR_STOP=1 -h "$root" -p "$port" -U postgres -d "$db" "$@"
}
stop() {
  if [[ -n $pgbench_pid ]]; then kill "$pgbench_pid" 2>/dev/null || true; fi
  if [[ -n $sweeper_pid ]]; then kill "$sweeper_pid" 2>/dev/null || true; fi
  as_postgres "$bindir/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap stop EXIT

# psycopg 3 in a virtual environment of pinned versions, cached outside the checkout under the
# hash of its requirements.
requirements='psycopg[binary]==3.3.9
psycopg-binary==3.3.9
typing_extensions==4.16.0'
venv=$cache/python-latency-$(sha256sum <<<"$requirements" | cut -c1-12)
if [[ ! -f $venv/.complete ]]; then
  say "Creating the Python environment $venv (pinned versions)"
  rm -rf "$venv"
  mkdir -p "$cache"
  /usr/bin/python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r /dev/stdin <<<"$requirements"
  touch "$venv/.complete"
fi

say "Building the extension (release)"
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$work/build" >/dev/null
sql_version=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" sql-edition/pg_barrier.control)

say "Starting a scratch PostgreSQL $PG_MAJOR on port $port"
as_postgres "$bindir/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
rm -rf "$root"
install -d -o postgres -g postgres "$root"
# What a WAL flush costs on this disk, for synchronous_commit = on: pg_test_fsync's fdatasync of
# one 8 kB write, in microseconds.
flush_us=$(as_postgres "$bindir/pg_test_fsync" -s 1 -f "$root/pg_test_fsync.tmp" |
  awk '/^Compare file sync methods using one 8kB write/ { one = 1 } one && $1 == "fdatasync" { print $4; exit }')
rm -f "$root/pg_test_fsync.tmp"
scratch_server_with_build "$PG_CONFIG" "$PG_MAJOR" "$root/pg" "$work/build"
as_postgres "$server/bin/initdb" -D "$pgdata" --auth=trust -U postgres --encoding=UTF8 >/dev/null
# As benches/run.sh's server (nothing preloaded: the SQL edition's sessions never load the
# library, as on a managed server), but for the retention: with 0, a sweep deletes a completion
# (taken or not) at its next pass, up to 1 s after it completes, and so could delete one before
# the 100 ms poller has claimed it. 10 s keeps every completion for the poller.
cat >>"$pgdata/postgresql.conf" <<CONF
# pg_barrier latency benchmark server
listen_addresses = ''
unix_socket_directories = '$root'
port = $port
max_connections = 40
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
pg_barrier.retention = '10s'
CONF
as_postgres "$server/bin/pg_ctl" -D "$pgdata" -l "$root/server.log" -w start >/dev/null
q postgres -c "CREATE DATABASE lat" -c "CREATE DATABASE lat_sql" -c "CREATE ROLE bench_app LOGIN"
q lat -c "CREATE EXTENSION pg_barrier"
q lat_sql -c "CREATE EXTENSION pg_barrier VERSION '$sql_version'"

rm -rf "$data"
mkdir -p "$data"
q lat -F $'\t' -c "SELECT name, current_setting(name) FROM unnest(ARRAY[
                     'server_version', 'shared_buffers', 'max_wal_size', 'checkpoint_timeout',
                     'fsync', 'wal_level', 'autovacuum', 'jit', 'shared_preload_libraries',
                     'pg_barrier.retention']) name" >"$data/settings.tsv"

# measure EDITION DATABASE SYNC
measure() {
  local edition=$1 db=$2 sync=$3 begin end tps
  say "$edition edition, synchronous_commit = $sync: $COMPLETIONS completions under $CLIENTS reporting clients"
  q "$db" <<SQL >/dev/null
TRUNCATE barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result;
SET ROLE bench_app;
SELECT count(barrier_enqueue('t' || i, 10000000, ttl => '1 day')) FROM generate_series(0, 999) i;
RESET ROLE;
VACUUM ANALYZE;
CHECKPOINT;
SQL
  # The background load, reported every second; stopped once the measurement is over.
  PGOPTIONS="-c synchronous_commit=$sync" "$bindir/pgbench" -h "$root" -p "$port" -U bench_app \
    -n -M prepared -f benches/pgbench/throughput-pg_barrier.sql -c "$CLIENTS" -j 2 -T 3600 -P 1 \
    "$db" >"$work/pgbench.out" 2>"$work/pgbench.err" &
  pgbench_pid=$!
  # barrier_sweep() every second, as pg_cron (or the Rust build's background worker) would run
  # it (benches/run.sh's churn scenario does the same).
  (while sleep 1; do q "$db" -c "SELECT barrier_sweep()" >/dev/null; done) &
  sweeper_pid=$!
  local pgbench_start
  pgbench_start=$(date +%s.%N)
  sleep 3
  begin=$(date +%s.%N)
  "$venv/bin/python" benches/latency.py measure --run "$edition-$sync" --sync "$sync" \
    --completions "$COMPLETIONS" --interval-ms "$INTERVAL_MS" --out "$data/samples-$edition-$sync.tsv" \
    --dsn "host=$root port=$port user=bench_app dbname=$db"
  end=$(date +%s.%N)
  kill "$pgbench_pid"
  wait "$pgbench_pid" 2>/dev/null || true
  pgbench_pid=
  if [[ -n $sweeper_pid ]]; then
    kill "$sweeper_pid"
    wait "$sweeper_pid" 2>/dev/null || true
    sweeper_pid=
  fi
  # The mean of pgbench's one-second progress reports that overlap the measurement.
  tps=$(awk -v start="$pgbench_start" -v begin="$begin" -v end="$end" '
    BEGIN { from = begin - start; to = end - start }
    $1 == "progress:" { t = $2 + 0; sub(",", "", $4)
      if (t > from && t - 1 < to) { sum += $4; n++ } }
    END { if (n) printf "%.0f", sum / n; else print "-" }' "$work/pgbench.err")
  if [[ $tps == - ]]; then
    echo "pgbench reported no progress during the measurement:" >&2
    cat "$work/pgbench.err" >&2
    exit 1
  fi
  printf '%s\t%s\t%s\n' "$edition" "$sync" "$tps" >>"$data/background.tsv"
  printf '%s\t%s\t%s\n' "$edition" "$sync" "$(cut -d' ' -f1 /proc/loadavg)" >>"$data/loadavg.tsv"
  printf '    background load: %s calls/s; load average %s\n' "$tps" "$(cut -d' ' -f1 /proc/loadavg)" >&2
}

for run in $RUNS; do
  case ${run%%:*} in
    rust) measure rust lat "${run#*:}" ;;
    sql) measure sql lat_sql "${run#*:}" ;;
  esac
done

elapsed=$(($(date +%s) - started))
setting() { awk -F'\t' -v n="$1" '$1 == n { print $2 }' "$data/settings.tsv"; }
table=$("$venv/bin/python" benches/latency.py table "$data")
{
  cat <<MD
# Completion latency

How long after a barrier completes does its consumer know?

Written by \`benches/latency.sh\` on $(date -u '+%Y-%m-%d %H:%M UTC'), at commit $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src sql sql-edition 2>/dev/null || echo ' with uncommitted changes'), in $((elapsed / 60)) min $((elapsed % 60)) s.
The raw samples (microseconds) are in \`benches/results-latency/\`.

## Machine and settings

- $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) of memory, Linux $(uname -r);
  a WAL flush (pg_test_fsync, fdatasync of one 8 kB write) takes $flush_us µs on its disk
- Load average before the run $load_before; at the end of each measurement (1 min):
  $(awk -F'\t' '{ printf "%s%s %s %s", (NR > 1 ? ", " : ""), $1, $2, $3 }' "$data/loadavg.tsv") (its own processes
  included)
- PostgreSQL $(setting server_version), one server for both editions: the Rust build (release)
  in database \`lat\`, the SQL edition $sql_version in \`lat_sql\`
- shared_buffers $(setting shared_buffers), max_wal_size $(setting max_wal_size), checkpoint_timeout $(setting checkpoint_timeout), fsync $(setting fsync), wal_level $(setting wal_level), jit $(setting jit)
- Nothing preloaded; in each database a loop calls \`barrier_sweep()\` every second, as pg_cron
  (or the Rust build's background worker) would, with retention $(setting pg_barrier.retention)
  (not 0 as in benches/run.sh: a sweep could then delete a completion before the poller claims
  it)
- $COMPLETIONS completions per edition and setting, one every $INTERVAL_MS ms at most, after 100
  unrecorded ones

## Method

Eight pgbench clients (\`-M prepared\`, 2 threads) report random slots of 1,000 live barriers of
10,000,000 slots (\`benches/pgbench/throughput-pg_barrier.sql\`, as in benches/RESULTS.md's
throughput scenario) for the whole measurement; their calls per second are the mean of pgbench's
one-second progress reports during it. Meanwhile \`benches/latency.py\` runs three processes, each
with its own connection as the same plain role \`bench_app\`, at the same synchronous_commit as
the load: a **completer** enqueues a barrier of 2 slots and reports slot 0 (one transaction),
then reports slot 1, the completing report, in autocommit, noting the time just before sending it
(*call start*) and when its reply arrives (*commit ack*: the reply comes after the commit); a
**NOTIFY listener** LISTENs on \`pg_barrier\` and notes when each \`complete\` notification arrives;
a **poller** calls \`barrier_completions(max_rows => 1000)\` every 100 ms and notes when each
completion comes back. The completer starts a barrier every $INTERVAL_MS ms (or right after the
previous one, should that take longer), so that each completion is timed on its own rather than
behind a queue of the measurer's own notifications. Every time is
\`time.monotonic_ns()\` (CLOCK_MONOTONIC, one clock for all processes of the machine). Every
completion must reach both receivers exactly once, or the run fails.

The table gives each receiver's delay after the commit ack and after the call start (an upper
bound on the delay after the commit itself), in milliseconds, as nearest-rank percentiles over
all completions. A notification goes out at commit, before the reply to the completer, so its
delay after the commit ack can be negative (*min*). For the poller, most of the delay is the
wait for its next round: up to 100 ms, 50 ms on average. The last row of each group is the
completing call itself (call start to commit ack).

## Results (ms)

$table
MD
} >"$out"
echo "$table"
say "Done in $((elapsed / 60)) min $((elapsed % 60)) s: $out"
