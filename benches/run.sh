#!/usr/bin/env bash
# pg_barrier against the designs it replaces, side by side on one dedicated server in one run.
# Both editions run: the Rust build in database `bench`, the SQL edition (PL/pgSQL, the same API
# and tables) in database `bench_sql`, which the same pgbench scripts drive. The Rust build also
# runs a second time with its fast path off (`sql_path`: every report through its SQL path), by
# a role that has `pg_barrier.fast_path = off`.
#
# Builds the extension (release) and installs it into a copy of PostgreSQL 15's installation of
# the benchmark's own, starts a scratch server from it (and, for the default run, a loopback
# Redis), drives each scenario with pgbench (redis-benchmark for Redis)
# from several connections, and writes a report with its plots (benches/report.sh, which can
# write it again from the raw figures). Three modes, each with a report and figures of its own:
#
#   benches/run.sh            throughput, hot barrier, flatness, churn: benches/RESULTS.md,
#                             benches/results/, benches/throughput.png, benches/flatness.png.
#                             About 13 minutes on 2 cores.
#   benches/run.sh --scaling  throughput and hot barrier at 1 to 64 clients, one round each:
#                             benches/SCALING.md, benches/results-scaling/, benches/scaling.png.
#                             About 12 minutes on 2 cores.
#   benches/run.sh --pinned   throughput and flatness while another session holds a snapshot
#                             open: benches/PINNED.md, benches/results-pinned/,
#                             benches/pinned.png. About 14 minutes on 2 cores.
#
# Runs as root (re-executed through sudo if not); the server runs as the postgres user in
# /var/tmp/pg_barrier-bench (its installation in pg/ there, its data in data/) and is stopped at
# the end. The system's installation is left alone: another `cargo pgrx install` or test run
# rewriting its pg_barrier.so in place would crash a server that has it loaded.
#
# Sizes can be lowered for a quick look (the figures are then not the documented scenarios):
#   BENCH_SECONDS (4) per round of throughput and hot barrier (and per scaling point),
#   BENCH_ROUNDS (3) of throughput, BENCH_HOT_ROUNDS (1: three would take the default run past
#   12 minutes), BENCH_HOT_SLOTS (10000000), BENCH_FLAT_SLOTS (20000),
#   BENCH_JSONB_SLOTS (2000), BENCH_CHURN_BARRIERS (50000),
#   BENCH_CHURN_RUNS ("on:pg_barrier off:floor off:jsonb off:pg_barrier off:sql_edition");
#   --scaling: BENCH_SCALING_CLIENTS ("1 2 4 8 16 32 64"), BENCH_SCALING_SYNC ("on off"),
#   BENCH_SCALING_DESIGNS ("floor floor2 jsonb twin pg_barrier sql_edition"; sql_path can be
#   added), BENCH_SCALING_THREADS (2: pgbench -j is the smaller of this and the clients);
#   --pinned: BENCH_PINNED_SECONDS (30) per round, BENCH_PINNED_RECOVERY_SECONDS (10),
#   BENCH_PINNED_SYNC ("on off"), BENCH_PINNED_DESIGNS ("floor floor2 twin pg_barrier
#   sql_edition"; jsonb can be added to the throughput part: under a pinned snapshot its growing
#   rows leave gigabytes of dead TOAST behind in 30 seconds).
set -euo pipefail
cd "$(dirname "$0")/.."
mode=default
case ${1:-} in
  "") ;;
  --scaling) mode=scaling ;;
  --pinned) mode=pinned ;;
  *)
    echo "usage: $0 [--scaling | --pinned]" >&2
    exit 2
    ;;
esac
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$0" "$@"; fi
source scripts/setup.sh
ensure_packages redis-server gnuplot-nox

SECONDS_PER_ROUND=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-3}
HOT_ROUNDS=${BENCH_HOT_ROUNDS:-1}
HOT_SLOTS=${BENCH_HOT_SLOTS:-10000000}
FLAT_SLOTS=${BENCH_FLAT_SLOTS:-20000}
JSONB_SLOTS=${BENCH_JSONB_SLOTS:-2000}
CHURN_BARRIERS=${BENCH_CHURN_BARRIERS:-50000}
CHURN_RUNS=${BENCH_CHURN_RUNS:-on:pg_barrier off:floor off:jsonb off:pg_barrier off:sql_edition}
SCALING_CLIENTS=${BENCH_SCALING_CLIENTS:-1 2 4 8 16 32 64}
SCALING_SYNC=${BENCH_SCALING_SYNC:-on off}
SCALING_DESIGNS=${BENCH_SCALING_DESIGNS:-floor floor2 jsonb twin pg_barrier sql_edition}
SCALING_THREADS=${BENCH_SCALING_THREADS:-2}
PINNED_SECONDS=${BENCH_PINNED_SECONDS:-30}
PINNED_RECOVERY_SECONDS=${BENCH_PINNED_RECOVERY_SECONDS:-10}
PINNED_SYNC=${BENCH_PINNED_SYNC:-on off}
PINNED_DESIGNS=${BENCH_PINNED_DESIGNS:-floor floor2 twin pg_barrier sql_edition}
CLIENTS=8
COMPARATORS=(floor floor2 jsonb twin pg_barrier sql_path sql_edition)
PAYLOAD='"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'

root=/var/tmp/pg_barrier-bench
pgdata=$root/data
port=${PG_BARRIER_BENCH_PORT:-5498}
redis_port=${PG_BARRIER_BENCH_REDIS_PORT:-6398}
# The clients, and pg_ctl to stop a server left running.
bindir=$("$PG_CONFIG" --bindir)
# The server's own installation.
server=$root/pg/usr/lib/postgresql/$PG_MAJOR
work=$(mktemp -d)
# The raw figures, the latency curves and the server settings: kept beside the report, so that
# benches/report.sh can write the report and plots again from them.
case $mode in
  default) data=benches/results ;;
  *) data=benches/results-$mode ;;
esac
# Enough connections for the largest client count of --scaling and a few more.
max_connections=40
if [[ $mode == scaling ]]; then
  for clients in $SCALING_CLIENTS; do
    ((clients + 16 <= max_connections)) || max_connections=$((clients + 16))
  done
fi
rm -rf "$data"
mkdir -p "$data"
figures=$data/figures.tsv
started=$(date +%s)

as_postgres() { runuser -u postgres -- "$@"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$root" -p "$port" -U postgres -d bench "$@"; }
# The same in the SQL edition's database.
qs() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$root" -p "$port" -U postgres -d bench_sql "$@"; }
redis() { redis-cli -p "$redis_port" "$@"; }
# pgbench at the given synchronous_commit, against the database of COMPARATOR, with its script
# of SCENARIO: bench SYNC COMPARATOR SCENARIO PGBENCH-OPTIONS...
bench() {
  local sync=$1 comparator=$2 scenario=$3 db=bench script=$3-$2 user=postgres
  shift 3
  case $comparator in
    sql_edition) db=bench_sql script=$scenario-pg_barrier user=bench_app ;;
    sql_path) script=$scenario-pg_barrier user=bench_app_sql_path ;;
    pg_barrier) user=bench_app ;;
  esac
  PGOPTIONS="-c synchronous_commit=$sync" "$bindir/pgbench" -h "$root" -p "$port" -U "$user" \
    -n -M prepared -f "benches/pgbench/$script.sql" "$@" "$db"
}
# The pgbench threads for CLIENTS clients: two (the machine's cores, in the documented runs),
# fewer for fewer clients, BENCH_SCALING_THREADS in --scaling.
threads() {
  local most=2
  [[ $mode == scaling ]] && most=$SCALING_THREADS
  echo $(($1 < most ? $1 : most))
}
tps_of() { sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p'; }
# record SCENARIO SYNC COMPARATOR METRIC VALUE
record() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$figures"; }
# figure SCENARIO SYNC COMPARATOR METRIC
figure() {
  awk -F'\t' -v s="$1" -v y="$2" -v c="$3" -v m="$4" \
    '$1 == s && $2 == y && $3 == c && $4 == m { v = $5 } END { print (v == "" ? "-" : v) }' "$figures"
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }

stop_servers() {
  as_postgres "$bindir/pg_ctl" -D "$pgdata" -m fast stop >/dev/null 2>&1 || true
  redis shutdown nosave >/dev/null 2>&1 || true
}
trap 'stop_servers; rm -rf "$work"' EXIT
# mark SECTION: records the seconds since the last mark (or the start) as SECTION's (scenario
# timing), to see where a run's time goes.
last_mark=$started
mark() {
  local now
  now=$(date +%s)
  record timing - - "$1" $((now - last_mark))
  printf '  (%s: %d s)\n' "$1" $((now - last_mark)) >&2
  last_mark=$now
}

say "Building the extension (release)"
cargo pgrx package --pg-config "$PG_CONFIG" --out-dir "$work/build" >/dev/null
sql_version=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" sql-edition/pg_barrier.control)
mark build

say "Starting a scratch PostgreSQL $PG_MAJOR on port $port$([[ $mode == default ]] && echo " and Redis on port $redis_port")"
stop_servers
rm -rf "$root"
install -d -o postgres -g postgres "$root"
scratch_server_with_build "$PG_CONFIG" "$PG_MAJOR" "$root/pg" "$work/build"
as_postgres "$server/bin/initdb" -D "$pgdata" --auth=trust -U postgres --encoding=UTF8 >/dev/null
cat >>"$pgdata/postgresql.conf" <<CONF
# pg_barrier benchmark server
listen_addresses = ''
unix_socket_directories = '$root'
port = $port
max_connections = $max_connections
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
pg_barrier.retention = '0'
CONF
# Nothing preloaded: the library's settings would then exist in every database's sessions, the
# SQL edition's too, which on a managed server (no library) they do not; the SQL edition reads a
# setting that exists from the catalog (its stored value) on every report. The sweeps of churn
# run from a loop instead of the background worker.
as_postgres "$server/bin/pg_ctl" -D "$pgdata" -l "$root/server.log" -w start >/dev/null
psql -X -q -h "$root" -p "$port" -U postgres -d postgres -c "CREATE DATABASE bench"
q -c "CREATE EXTENSION pg_barrier" -f benches/sql/comparators.sql >/dev/null
psql -X -q -h "$root" -p "$port" -U postgres -d postgres -c "CREATE DATABASE bench_sql"
qs -c "CREATE EXTENSION pg_barrier VERSION '$sql_version'" -f benches/sql/comparators.sql >/dev/null
# Both editions are driven by a plain role that owns its barriers, as applications do (the SQL
# edition reads its settings differently for superusers); the other designs run as postgres.
q -c "CREATE ROLE bench_app LOGIN"
# The fast path off: a member of bench_app (so it acts on bench_app's barriers) whose sessions
# have pg_barrier.fast_path = off, a setting only a superuser can give.
q -c "CREATE ROLE bench_app_sql_path LOGIN IN ROLE bench_app" \
  -c "ALTER ROLE bench_app_sql_path SET pg_barrier.fast_path = off"
for db in q qs; do $db -c "GRANT SELECT ON bench_payload TO bench_app" >/dev/null; done
if [[ $mode == default ]]; then
  install -d -o redis -g redis "$root/redis"
  runuser -u redis -- redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$root/redis" \
    --save '' --appendonly no --daemonize yes --logfile "$root/redis/redis.log"
  until redis ping >/dev/null 2>&1; do sleep 0.1; done
  redis_sha=$(redis script load "$(cat benches/redis/barrier.lua)")
fi
mark startup

# Every comparator's tables emptied and their counters' statistics reset, then what a scenario
# needs: `live N SLOTS` registers barriers t0..t(N-1) of SLOTS slots, `one ID SLOTS` one barrier.
reset_state() {
  q <<SQL >/dev/null
TRUNCATE floor_counter, floor2_counter, floor2_result, jsonb_barrier, twin_barrier, twin_result;
TRUNCATE barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result;
SELECT pg_stat_reset();
SQL
  qs <<SQL >/dev/null
TRUNCATE barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result;
SELECT pg_stat_reset();
SQL
}
live() {
  q <<SQL >/dev/null
INSERT INTO floor_counter SELECT 't' || i, $2 FROM generate_series(0, $1 - 1) i;
INSERT INTO floor2_counter SELECT 't' || i, $2 FROM generate_series(0, $1 - 1) i;
INSERT INTO jsonb_barrier (id, remaining) SELECT 't' || i, $2 FROM generate_series(0, $1 - 1) i;
SELECT count(twin_enqueue('t' || i, $2)) FROM generate_series(0, $1 - 1) i;
SET ROLE bench_app;
SELECT count(barrier_enqueue('t' || i, $2, ttl => '1 day')) FROM generate_series(0, $1 - 1) i;
SQL
  qs -c "SET ROLE bench_app" -c "SELECT count(barrier_enqueue('t' || i, $2, ttl => '1 day')) FROM generate_series(0, $1 - 1) i" >/dev/null
}
one() {
  q <<SQL >/dev/null
INSERT INTO floor_counter VALUES ('$1', $2);
INSERT INTO floor2_counter VALUES ('$1', $2);
INSERT INTO jsonb_barrier (id, remaining) VALUES ('$1', $2);
SELECT twin_enqueue('$1', $2);
SET ROLE bench_app;
SELECT barrier_enqueue('$1', $2, ttl => '1 day');
SQL
  qs -c "SET ROLE bench_app" -c "SELECT barrier_enqueue('$1', $2, ttl => '1 day')" >/dev/null
}
# The benchmark's tables vacuumed and analyzed (not the whole databases: that doubled the time
# a round's preparation takes), and a checkpoint, so that no round pays for the last one.
settle() {
  qs -c "VACUUM ANALYZE barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result" >/dev/null
  q -c "VACUUM ANALYZE floor_counter, floor2_counter, floor2_result, jsonb_barrier, twin_barrier, twin_result,
                       barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result" \
    -c "CHECKPOINT" >/dev/null
}

# prepare SCENARIO: a fresh state for a round of throughput (1,000 live barriers that never
# complete) or hot (one barrier that never completes), vacuumed and checkpointed.
prepare() {
  reset_state
  case $1 in
    throughput) live 1000 10000000 ;;
    hot) one hot "$HOT_SLOTS" ;;
  esac
  settle
}
# run_round SYNC COMPARATOR SCENARIO CLIENTS SECONDS [PGBENCH-OPTIONS...]: a round of throughput or
# hot on a fresh state; prints the calls per second. In the hot barrier, client c reports
# slots c, c + CLIENTS, c + 2 * CLIENTS, ...
run_round() {
  local sync=$1 comparator=$2 scenario=$3 clients=$4 seconds=$5
  shift 5
  prepare "$scenario"
  bench "$sync" "$comparator" "$scenario" -c "$clients" -j "$(threads "$clients")" -T "$seconds" \
    -D n=0 -D clients="$clients" "$@" | tps_of
}

redis_mode() {
  if [[ $1 == on ]]; then
    redis config set appendonly yes >/dev/null
    redis config set appendfsync always >/dev/null
  else
    redis config set appendonly yes >/dev/null
    redis config set appendfsync everysec >/dev/null
  fi
}

# Each comparator's tables, its counter table, and its table of one row per result (none for
# the floor and jsonb).
tables_of() {
  case $1 in
    floor) echo "'floor_counter'" ;;
    floor2) echo "'floor2_counter', 'floor2_result'" ;;
    jsonb) echo "'jsonb_barrier'" ;;
    twin) echo "'twin_barrier', 'twin_result'" ;;
    pg_barrier | sql_path | sql_edition) echo "'barrier_internal.barrier', 'barrier_internal.barrier_spec', 'barrier_internal.result'" ;;
  esac
}
counter_of() {
  case $1 in
    floor) echo floor_counter ;;
    floor2) echo floor2_counter ;;
    jsonb) echo jsonb_barrier ;;
    twin) echo twin_barrier ;;
    pg_barrier | sql_path | sql_edition) echo barrier_internal.barrier ;;
  esac
}
result_of() {
  case $1 in
    floor2) echo floor2_result ;;
    twin) echo twin_result ;;
    pg_barrier | sql_path | sql_edition) echo barrier_internal.result ;;
  esac
}
# The query function and the database of COMPARATOR.
q_of() { if [[ $1 == sql_edition ]]; then echo qs; else echo q; fi; }
db_of() { if [[ $1 == sql_edition ]]; then echo bench_sql; else echo bench; fi; }
# Bytes of a comparator's tables (heap and TOAST data; the free-space and visibility maps, a few
# pages each, are left out) and of their indexes.
sizes() {
  $(q_of "$1") -F $'\t' -c "SELECT sum(pg_relation_size(t) + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)),
                          sum(pg_indexes_size(t))
                     FROM unnest(ARRAY[$(tables_of "$1")]::regclass[]) t JOIN pg_class c ON c.oid = t"
}

# --- The pin: another session holding a snapshot open (--pinned) ----------------------------
# pin_start DB: a session of DB begins a REPEATABLE READ transaction, takes its snapshot with a
# first query and stays idle in transaction (its input is a fifo kept open) until pin_end; the
# horizon of DB (not of the other database: PostgreSQL keeps horizons per database) stays
# behind its xmin, so no dead row version newer than it can be removed, by pruning or VACUUM.
pin_start() {
  local waited=0
  rm -f "$work/pin"
  mkfifo "$work/pin"
  PGAPPNAME=bench_pin psql -X -q -At -v ON_ERROR_STOP=1 -h "$root" -p "$port" -U postgres -d "$1" \
    <"$work/pin" >"$work/pin.out" 2>&1 &
  pin_pid=$!
  exec {pin_fd}>"$work/pin"
  echo "BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM bench_payload;" >&"$pin_fd"
  until [[ -n $(pin_age) ]]; do
    ((waited++ < 100)) || { echo "the pinning session took no snapshot:" >&2; cat "$work/pin.out" >&2; exit 1; }
    sleep 0.1
  done
}
# The age (in transaction ids) of the pin's backend_xmin, empty if it holds none.
pin_age() {
  q -c "SELECT age(backend_xmin) FROM pg_stat_activity
         WHERE application_name = 'bench_pin' AND state = 'idle in transaction' AND backend_xmin IS NOT NULL"
}
# pin_check: the pin still holds its snapshot (fails otherwise); prints how far behind it is.
pin_check() {
  local age
  age=$(pin_age)
  [[ -n $age ]] || { echo "the pinning session lost its snapshot" >&2; exit 1; }
  echo "$age"
}
pin_end() {
  echo "COMMIT;" >&"$pin_fd"
  exec {pin_fd}>&-
  wait "$pin_pid"
}

# --- 1. Throughput -------------------------------------------------------------------------
# rounds SCENARIO SYNC COUNT: COUNT rounds of every comparator at SYNC, each on a fresh state,
# then the median of each comparator's rounds as its figure.
rounds() {
  local scenario=$1 sync=$2 count=$3 round comparator tps value
  for round in $(seq "$count"); do
    for comparator in "${COMPARATORS[@]}"; do
      tps=$(run_round "$sync" "$comparator" "$scenario" "$CLIENTS" "$SECONDS_PER_ROUND")
      record "$scenario" "$sync" "$comparator" "round$round" "$tps"
      printf '  synchronous_commit=%-3s round %d  %-11s %8.0f/s\n' "$sync" "$round" "$comparator" "$tps"
    done
  done
  for comparator in "${COMPARATORS[@]}"; do
    value=$(for round in $(seq "$count"); do figure "$scenario" "$sync" "$comparator" "round$round"; done | median)
    record "$scenario" "$sync" "$comparator" tps "$value"
  done
}

scenario_throughput() {
  local sync rps
  say "Throughput: 1,000 live barriers, $CLIENTS clients, 100-byte results ($ROUNDS rounds of ${SECONDS_PER_ROUND}s)"
  for sync in on off; do
    rounds throughput "$sync" "$ROUNDS"
    redis flushall >/dev/null
    redis_mode "$sync"
    redis eval "for i = 0, 999 do redis.call('HSET', 'barrier:' .. i, 'remaining', 10000000) end" 0 >/dev/null
    # About as long as a round of the others: a third of the calls where every call is flushed.
    rps=$(redis-benchmark -p "$redis_port" -c "$CLIENTS" -n "$([[ $sync == on ]] && echo 100000 || echo 300000)" -r 10000000 -q \
      evalsha "$redis_sha" 0 __rand_int__ "$PAYLOAD" 1000 |
      tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
    record throughput "$sync" redis tps "$rps"
    printf '  synchronous_commit=%-3s redis (appendfsync %s) %8.0f/s\n' "$sync" \
      "$([[ $sync == on ]] && echo always || echo everysec)" "$rps"
  done
}

# --- 2. Hot barrier ------------------------------------------------------------------------
# One barrier too big to complete, every client reporting its own slots of it, for a fixed
# time: BENCH_HOT_ROUNDS rounds (one by default, for the run's time), each on a fresh state. (The
# client-side jsonb design rewrites the whole growing array on every call: its rate is that of a
# barrier still filling.)
scenario_hot() {
  local sync
  say "Hot barrier: one barrier of $HOT_SLOTS slots, $CLIENTS clients ($HOT_ROUNDS rounds of ${SECONDS_PER_ROUND}s)"
  for sync in on off; do rounds hot "$sync" "$HOT_ROUNDS"; done
}

# --- 3. Flatness ---------------------------------------------------------------------------
# flat SCENARIO SYNC COMPARATOR SLOTS REPEATS: one client reports every slot of a fresh barrier,
# with a per-call latency log, REPEATS times; records each run's latencies, WAL per call and
# time to completion (metric.N), and their medians, under SCENARIO (flat, or flat-pinned: the
# same with the pin held from before the first call to after the last). One client on a shared
# 2-core machine sees bursts of background work (autovacuum, the sweeper, other tenants) of tens
# of percent over a thousand calls: the median of three runs keeps one burst from deciding a
# ratio.
flat() {
  local scenario=$1 sync=$2 comparator=$3 slots=$4 repeats=$5 run metric
  for run in $(seq "$repeats"); do
    flat_once "$scenario" "$sync" "$comparator" "$slots" "$run"
  done
  for metric in first_mean last_mean completing_call total_us wal_per_call; do
    record "$scenario" "$sync" "$comparator-$slots" "$metric" \
      "$(for run in $(seq "$repeats"); do figure "$scenario" "$sync" "$comparator-$slots" "$metric.$run"; done | median)"
  done
}
flat_once() {
  local scenario=$1 sync=$2 comparator=$3 slots=$4 run=$5 log lsn curve=curve
  reset_state
  one flat "$slots"
  settle
  if [[ $scenario == flat-pinned ]]; then
    pin_start "$(db_of "$comparator")"
    curve='curve-pinned'
  fi
  lsn=$(q -c "SELECT pg_current_wal_lsn()")
  bench "$sync" "$comparator" flat -c 1 -t "$slots" -D n=0 -l --log-prefix="$work/log" >/dev/null
  record "$scenario" "$sync" "$comparator-$slots" "wal_per_call.$run" \
    "$(q -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn') / $slots)")"
  if [[ $scenario == flat-pinned ]]; then
    record "$scenario" "$sync" "$comparator-$slots" "pin_xid_age.$run" "$(pin_check)"
    pin_end
  fi
  log=$(ls "$work"/log.*)
  # Columns: client, transaction number (from 1), latency in microseconds, ... The first call
  # (a new backend preparing its statements) and the completing call are left out of the means;
  # the completing call is reported on its own.
  awk -v slots="$slots" '
    { lat[$2] = $3; total += $3 }
    END {
      k = (slots >= 2002 ? 1000 : int((slots - 2) / 2))
      for (i = 2; i < 2 + k; i++) first += lat[i]
      for (i = slots - k; i < slots; i++) last += lat[i]
      printf "first_mean\t%.1f\nlast_mean\t%.1f\ncompleting_call\t%d\ntotal_us\t%d\n", first / k, last / k, lat[slots], total
    }' "$log" | while IFS=$'\t' read -r metric value; do
    record "$scenario" "$sync" "$comparator-$slots" "$metric.$run" "$value"
  done
  # The curve (of the last run): mean latency of each block of slots/100 calls.
  awk -v step=$((slots / 100)) '{ sum += $3; if ($2 % step == 0) { print $2, sum / step; sum = 0 } }' \
    "$log" >"$data/$curve-$sync-$comparator-$slots.dat"
  rm -f "$log"
}
# flat_line SCENARIO SYNC KEY: one line of progress.
flat_line() {
  printf '  synchronous_commit=%-3s %-17s first %7s us  last %7s us  completing %9s us  WAL %7s B/call%s\n' \
    "$2" "$3" "$(figure "$1" "$2" "$3" first_mean)" "$(figure "$1" "$2" "$3" last_mean)" \
    "$(figure "$1" "$2" "$3" completing_call)" "$(figure "$1" "$2" "$3" wal_per_call)" \
    "$([[ $1 == flat-pinned ]] && echo "  (snapshot held)")"
}
scenario_flatness() {
  local sync comparator key
  say "Flatness: one barrier of $FLAT_SLOTS slots, 1 KB incompressible results, one client"
  for sync in on off; do
    for comparator in floor floor2 twin pg_barrier sql_edition; do
      flat flat "$sync" "$comparator" "$FLAT_SLOTS" 3
    done
    for comparator in jsonb pg_barrier; do
      flat flat "$sync" "$comparator" "$JSONB_SLOTS" 1
    done
    for key in floor-$FLAT_SLOTS floor2-$FLAT_SLOTS twin-$FLAT_SLOTS pg_barrier-$FLAT_SLOTS sql_edition-$FLAT_SLOTS jsonb-$JSONB_SLOTS pg_barrier-$JSONB_SLOTS; do
      flat_line flat "$sync" "$key"
    done
  done
}

# --- 4. Churn ------------------------------------------------------------------------------
calls_per_barrier() { [[ $1 == floor || $1 == floor2 || $1 == jsonb ]] && echo 12 || echo 11; }
scenario_churn() {
  local comparator heap0 index0 heap1 index1 heap2 index2 run sync sweeper sweep begin end hot calls pair
  say "Churn: $CHURN_BARRIERS barriers of 10 slots created, completed and swept, $CLIENTS clients"
  # (sql_path stores exactly what pg_barrier stores.)
  for comparator in floor floor2 jsonb twin pg_barrier sql_edition; do
    # The footprint of 10,000 live barriers, each half-way (5 of 10 slots reported).
    reset_state
    settle
    IFS=$'\t' read -r heap0 index0 < <(sizes "$comparator")
    case $comparator in
      floor) q -c "INSERT INTO floor_counter SELECT 'l' || i, 5 FROM generate_series(1, 10000) i" ;;
      floor2) q -c "INSERT INTO floor2_counter SELECT 'l' || i, 5 FROM generate_series(1, 10000) i" \
        -c "INSERT INTO floor2_result SELECT 'l' || i, s, '$PAYLOAD' FROM generate_series(1, 10000) i, generate_series(0, 4) s" ;;
      jsonb) q -c "INSERT INTO jsonb_barrier SELECT 'l' || i, 5, jsonb_build_array($(printf "'%s'::jsonb, " "$PAYLOAD" "$PAYLOAD" "$PAYLOAD" "$PAYLOAD")'$PAYLOAD'::jsonb) FROM generate_series(1, 10000) i" ;;
      twin) q -c "SELECT count(twin_enqueue('l' || i, 10)) FROM generate_series(1, 10000) i" \
        -c "SELECT count(*) FROM generate_series(1, 10000) i, generate_series(0, 4) s, twin_decr('l' || i, '$PAYLOAD', s)" ;;
      pg_barrier | sql_edition) $(q_of "$comparator") -c "SELECT count(barrier_enqueue('l' || i, 10)) FROM generate_series(1, 10000) i" \
        -c "SELECT count(*) FROM generate_series(1, 10000) i, generate_series(0, 4) s, barrier_decr('l' || i, '$PAYLOAD', s)" ;;
    esac >/dev/null
    settle
    IFS=$'\t' read -r heap1 index1 < <(sizes "$comparator")
    record churn footprint "$comparator" bytes_per_live_barrier $(((heap1 + index1 - heap0 - index0) / 10000))
  done
  # Every call commits on its own: at synchronous_commit = on this scenario measures mostly the
  # disk's flush rate, for every design alike, so only pg_barrier (whose storage and HOT figures
  # are the point) runs there; the comparators run at off. The PL/pgSQL twin, the slowest, and
  # floor2 are left out to keep the run short (BENCH_CHURN_RUNS can add "off:twin" or any other
  # pair).
  for run in $CHURN_RUNS; do
    sync=${run%%:*} comparator=${run#*:}
    reset_state
    settle
    IFS=$'\t' read -r heap0 index0 < <(sizes "$comparator")
    # Each design's sweep every second, as pg_cron (or pg_barrier's background worker, at
    # pg_barrier.sweep_interval = '1s') would run it.
    sweeper=
    case $comparator in
      twin) sweep=(q -c "SELECT twin_sweep()") ;;
      pg_barrier) sweep=(q -c "SELECT barrier_sweep()") ;;
      sql_edition) sweep=(qs -c "SELECT barrier_sweep()") ;;
      *) sweep=() ;;
    esac
    if ((${#sweep[@]})); then
      (while sleep 1; do "${sweep[@]}" >/dev/null; done) &
      sweeper=$!
    fi
    begin=$(date +%s.%N)
    bench "$sync" "$comparator" churn -c "$CLIENTS" -j 2 -t $((CHURN_BARRIERS / CLIENTS)) -D n=0 >/dev/null
    end=$(date +%s.%N)
    [[ -n $sweeper ]] && kill "$sweeper" && wait "$sweeper" 2>/dev/null || true
    # Whatever the last sweep has not reached yet goes now.
    case $comparator in
      twin) q -c "SELECT twin_sweep()" >/dev/null ;;
      sql_edition) while [[ $(qs -c "SELECT deleted FROM barrier_sweep()") != 0 ]]; do :; done ;;
      pg_barrier) while [[ $(q -c "SELECT deleted FROM barrier_sweep()") != 0 ]]; do :; done ;;
    esac
    IFS=$'\t' read -r heap1 index1 < <(sizes "$comparator")
    $(q_of "$comparator") -c "VACUUM $(tables_of "$comparator" | tr -d "'")" >/dev/null
    IFS=$'\t' read -r heap2 index2 < <(sizes "$comparator")
    hot=$($(q_of "$comparator") -c "SELECT round(100.0 * n_tup_hot_upd / nullif(n_tup_upd, 0), 1)
                  FROM pg_stat_user_tables WHERE relid = '$(counter_of "$comparator")'::regclass")
    calls=$(awk -v n="$CHURN_BARRIERS" -v c="$(calls_per_barrier "$comparator")" -v b="$begin" -v e="$end" \
      'BEGIN { printf "%.0f", n * c / (e - b) }')
    for pair in "calls_per_s $calls" "heap_empty $heap0" "index_empty $index0" "heap_swept $heap1" \
      "index_swept $index1" "heap_vacuumed $heap2" "index_vacuumed $index2" "hot_percent $hot"; do
      # shellcheck disable=SC2086 # the pair is two words
      record churn "$sync" "$comparator" $pair
    done
    printf '  synchronous_commit=%-3s %-10s %7s calls/s  heap %s -> %s -> %s B  indexes %s -> %s -> %s B  HOT %s%%\n' \
      "$sync" "$comparator" "$calls" "$heap0" "$heap1" "$heap2" "$index0" "$index1" "$index2" "$hot"
  done
}

# --- --scaling: throughput and hot barrier against the number of clients --------------------
scenario_scaling() {
  local sync clients scenario comparator tps
  say "Scaling: throughput and hot barrier at $SCALING_CLIENTS clients, one round of ${SECONDS_PER_ROUND}s each"
  for sync in $SCALING_SYNC; do
    for clients in $SCALING_CLIENTS; do
      for scenario in throughput hot; do
        for comparator in $SCALING_DESIGNS; do
          tps=$(run_round "$sync" "$comparator" "$scenario" "$clients" "$SECONDS_PER_ROUND")
          record "scaling-$scenario" "$sync" "$comparator" "c$clients" "$tps"
          printf '  synchronous_commit=%-3s %-10s %2d clients  %-11s %8.0f/s\n' "$sync" "$scenario" "$clients" "$comparator" "$tps"
        done
      done
    done
  done
}

# --- --pinned: throughput and flatness while another session holds a snapshot --------------
# pinned_state SYNC COMPARATOR PHASE: the heap (with TOAST) and index bytes and the dead rows
# (n_dead_tup) of COMPARATOR's counter and result tables, as metrics PHASE_counter_heap, ...
pinned_state() {
  local sync=$1 comparator=$2 phase=$3 role table heap index dead
  # The benchmark's backends send their statistics as they exit, after pgbench has returned.
  sleep 1
  for role in counter result; do
    table=$("${role}_of" "$comparator")
    [[ -n $table ]] || continue
    IFS=$'\t' read -r heap index dead < <($(q_of "$comparator") -F $'\t' -c "
      SELECT pg_relation_size(c.oid) + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0),
             pg_indexes_size(c.oid), coalesce(s.n_dead_tup, 0)
        FROM pg_class c LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
       WHERE c.oid = '$table'::regclass")
    record pinned "$sync" "$comparator" "${phase}_${role}_heap" "$heap"
    record pinned "$sync" "$comparator" "${phase}_${role}_index" "$index"
    record pinned "$sync" "$comparator" "${phase}_${role}_dead" "$dead"
  done
}
# pinned_bench SYNC COMPARATOR PHASE SECONDS: throughput on the current state for SECONDS,
# recording the calls per second (PHASE_tps) and those of every 5 s (PHASE_i5, PHASE_i10, ...).
pinned_bench() {
  local sync=$1 comparator=$2 phase=$3 seconds=$4 tps t v
  if ! bench "$sync" "$comparator" throughput -c "$CLIENTS" -j 2 -T "$seconds" --progress=5 \
    >"$work/out" 2>"$work/progress"; then
    cat "$work/out" "$work/progress" >&2
    exit 1
  fi
  tps=$(tps_of <"$work/out")
  record pinned "$sync" "$comparator" "${phase}_tps" "$tps"
  # pgbench often leaves out the progress line of the last 5 s, which end with the run: their
  # rate is then what the run's count of transactions leaves over.
  awk -v seconds="$seconds" '
    FILENAME == ARGV[1] { if (match($0, /processed: [0-9]+/)) total = substr($0, RSTART + 11, RLENGTH - 11) + 0; next }
    /^progress: / { t = int($2); print t, $4; counted += 5 * $4; last = t }
    END { if (seconds - last == 5 && total > counted) printf "%d %.1f\n", seconds, (total - counted) / 5 }
  ' "$work/out" "$work/progress" |
    while read -r t v; do record pinned "$sync" "$comparator" "${phase}_i$t" "$v"; done
  printf '%.0f' "$tps"
}
scenario_pinned() {
  local sync comparator free pinned age begin recovered key
  say "Pinned: throughput with a free horizon and with a snapshot held (${PINNED_SECONDS}s each), then VACUUM and ${PINNED_RECOVERY_SECONDS}s more"
  for sync in $PINNED_SYNC; do
    for comparator in $PINNED_DESIGNS; do
      prepare throughput
      free=$(pinned_bench "$sync" "$comparator" free "$PINNED_SECONDS")
      pinned_state "$sync" "$comparator" free
      prepare throughput
      pin_start "$(db_of "$comparator")"
      pinned=$(pinned_bench "$sync" "$comparator" pinned "$PINNED_SECONDS")
      age=$(pin_check)
      record pinned "$sync" "$comparator" pin_xid_age "$age"
      pinned_state "$sync" "$comparator" pinned
      # Recovery: the pin's transaction ends, a plain VACUUM of the tables (timed), and the
      # throughput again on the tables as VACUUM left them.
      pin_end
      begin=$(date +%s.%N)
      $(q_of "$comparator") -c "VACUUM $(tables_of "$comparator" | tr -d "'")"
      record pinned "$sync" "$comparator" vacuum_s "$(awk -v b="$begin" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - b }')"
      pinned_state "$sync" "$comparator" vacuumed
      recovered=$(pinned_bench "$sync" "$comparator" recovered "$PINNED_RECOVERY_SECONDS")
      pinned_state "$sync" "$comparator" recovered
      printf '  synchronous_commit=%-3s %-11s free %7s/s  pinned %7s/s (horizon %s xids behind)  after VACUUM %7s/s\n' \
        "$sync" "$comparator" "$free" "$pinned" "$age" "$recovered"
    done
  done
  say "Pinned: flatness, one barrier of $FLAT_SLOTS slots, one client, with a free horizon and with the snapshot held"
  for sync in $PINNED_SYNC; do
    for comparator in $PINNED_DESIGNS; do
      # The jsonb design would take hours at this size.
      [[ $comparator == jsonb ]] && continue
      flat flat "$sync" "$comparator" "$FLAT_SLOTS" 1
      flat flat-pinned "$sync" "$comparator" "$FLAT_SLOTS" 1
      key=$comparator-$FLAT_SLOTS
      flat_line flat "$sync" "$key"
      flat_line flat-pinned "$sync" "$key"
    done
  done
}

case $mode in
  default)
    record config - - churn_barriers "$CHURN_BARRIERS"
    record config - - hot_slots "$HOT_SLOTS"
    scenario_throughput
    mark throughput
    scenario_hot
    mark hot
    scenario_flatness
    mark flatness
    scenario_churn
    mark churn
    ;;
  scaling)
    record config - - seconds "$SECONDS_PER_ROUND"
    record config - - hot_slots "$HOT_SLOTS"
    record config - - threads "$SCALING_THREADS"
    scenario_scaling
    mark scaling
    ;;
  pinned)
    record config - - seconds "$PINNED_SECONDS"
    record config - - recovery_seconds "$PINNED_RECOVERY_SECONDS"
    scenario_pinned
    mark pinned
    ;;
esac

report=benches/RESULTS.md
[[ $mode == default ]] || report=benches/${mode^^}.md
say "Writing $report and the plots"
{
  q -F $'\t' -c "SELECT name, current_setting(name) FROM unnest(ARRAY[
                    'shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'max_connections',
                    'fsync', 'full_page_writes', 'wal_level', 'autovacuum', 'jit',
                    'shared_preload_libraries', 'pg_barrier.retention']) name"
  for db in q qs; do
    $db -F $'\t' -c "SELECT 'barrier_internal.barrier storage (' || current_database() || ')',
                            coalesce(array_to_string(reloptions, ', '), 'defaults')
                       FROM pg_class WHERE oid = 'barrier_internal.barrier'::regclass"
  done
} >"$data/settings.tsv"
elapsed=$(($(date +%s) - started))
echo "$elapsed" >"$data/elapsed"
benches/report.sh "$mode"
say "Done in $((elapsed / 60)) min $((elapsed % 60)) s: $report"
