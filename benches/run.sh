#!/usr/bin/env bash
# pg_barrier against the designs it replaces, side by side on one dedicated server in one run.
# Both editions run: the Rust build in database `bench`, the SQL edition (PL/pgSQL, the same API
# and tables) in database `bench_sql`, which the same pgbench scripts drive. The Rust build also
# runs a second time with its fast path off (`sql_path`: every report through its SQL path), by
# a role that has `pg_barrier.fast_path = off`.
#
# Builds and installs the extension (release), starts a scratch PostgreSQL 15 and a loopback
# Redis, drives each scenario with pgbench (redis-benchmark for Redis) from several connections,
# and writes benches/RESULTS.md with two plots, benches/throughput.png and benches/flatness.png.
# About 18 minutes on 2 cores. Runs as root (re-executed through sudo if not); the server runs
# as the postgres user in /var/tmp/pg_barrier-bench and is stopped at the end.
#
# Sizes can be lowered for a quick look (the figures are then not the documented scenarios):
#   BENCH_SECONDS (4) per throughput round, BENCH_ROUNDS (3), BENCH_HOT_SLOTS (200000),
#   BENCH_FLAT_SLOTS (20000), BENCH_JSONB_SLOTS (2000), BENCH_CHURN_BARRIERS (100000),
#   BENCH_CHURN_RUNS ("on:pg_barrier off:floor off:jsonb off:pg_barrier off:sql_edition").
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$0" "$@"; fi
source scripts/setup.sh
ensure_packages redis-server gnuplot-nox

SECONDS_PER_ROUND=${BENCH_SECONDS:-4}
ROUNDS=${BENCH_ROUNDS:-3}
HOT_SLOTS=${BENCH_HOT_SLOTS:-200000}
FLAT_SLOTS=${BENCH_FLAT_SLOTS:-20000}
JSONB_SLOTS=${BENCH_JSONB_SLOTS:-2000}
CHURN_BARRIERS=${BENCH_CHURN_BARRIERS:-100000}
CHURN_RUNS=${BENCH_CHURN_RUNS:-on:pg_barrier off:floor off:jsonb off:pg_barrier off:sql_edition}
CLIENTS=8
COMPARATORS=(floor jsonb twin pg_barrier sql_path sql_edition)
PAYLOAD='"result:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789x"'

root=/var/tmp/pg_barrier-bench
pgdata=$root/data
port=${PG_BARRIER_BENCH_PORT:-5498}
redis_port=${PG_BARRIER_BENCH_REDIS_PORT:-6398}
bindir=$("$PG_CONFIG" --bindir)
work=$(mktemp -d)
# The raw figures, the latency curves and the server settings: kept beside RESULTS.md, so that
# benches/report.sh can write the report and plots again from them.
data=benches/results
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

say "Building and installing the extension (release)"
cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null
sql_version=$(sed -n "s/^default_version = '\(.*\)'$/\1/p" sql-edition/pg_barrier.control)
PATH="$bindir:$PATH" scripts/install-sql-edition.sh --scripts-only >/dev/null

say "Starting a scratch PostgreSQL $PG_MAJOR on port $port and Redis on port $redis_port"
stop_servers
rm -rf "$root"
install -d -o postgres -g postgres "$root"
as_postgres "$bindir/initdb" -D "$pgdata" --auth=trust -U postgres --encoding=UTF8 >/dev/null
cat >>"$pgdata/postgresql.conf" <<CONF
# pg_barrier benchmark server
listen_addresses = ''
unix_socket_directories = '$root'
port = $port
max_connections = 40
shared_buffers = 1GB
max_wal_size = 8GB
checkpoint_timeout = 30min
shared_preload_libraries = 'pg_barrier'
pg_barrier.sweep_databases = 'bench'
pg_barrier.sweep_interval = '1s'
pg_barrier.retention = '0'
CONF
as_postgres "$bindir/pg_ctl" -D "$pgdata" -l "$root/server.log" -w start >/dev/null
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
install -d -o redis -g redis "$root/redis"
runuser -u redis -- redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$root/redis" \
  --save '' --appendonly no --daemonize yes --logfile "$root/redis/redis.log"
until redis ping >/dev/null 2>&1; do sleep 0.1; done
redis_sha=$(redis script load "$(cat benches/redis/barrier.lua)")

# Every comparator's tables emptied and their counters' statistics reset, then what a scenario
# needs: `live N SLOTS` registers barriers t0..t(N-1) of SLOTS slots, `one ID SLOTS` one barrier.
reset_state() {
  q <<SQL >/dev/null
TRUNCATE floor_counter, jsonb_barrier, twin_barrier, twin_result;
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
INSERT INTO jsonb_barrier (id, remaining) VALUES ('$1', $2);
SELECT twin_enqueue('$1', $2);
SET ROLE bench_app;
SELECT barrier_enqueue('$1', $2, ttl => '1 day');
SQL
  qs -c "SET ROLE bench_app" -c "SELECT barrier_enqueue('$1', $2, ttl => '1 day')" >/dev/null
}
settle() { qs -c "VACUUM ANALYZE" >/dev/null; q -c "VACUUM ANALYZE" -c "CHECKPOINT" >/dev/null; }

redis_mode() {
  if [[ $1 == on ]]; then
    redis config set appendonly yes >/dev/null
    redis config set appendfsync always >/dev/null
  else
    redis config set appendonly yes >/dev/null
    redis config set appendfsync everysec >/dev/null
  fi
}

record config - - churn_barriers "$CHURN_BARRIERS"
record config - - hot_slots "$HOT_SLOTS"

# --- 1. Throughput -------------------------------------------------------------------------
say "Throughput: 1,000 live barriers, $CLIENTS clients, 100-byte results ($ROUNDS rounds of ${SECONDS_PER_ROUND}s)"
for sync in on off; do
  for round in $(seq "$ROUNDS"); do
    for comparator in "${COMPARATORS[@]}"; do
      reset_state
      live 1000 10000000
      settle
      tps=$(bench "$sync" "$comparator" throughput -c "$CLIENTS" -j 2 -T "$SECONDS_PER_ROUND" | tps_of)
      record throughput "$sync" "$comparator" "round$round" "$tps"
      printf '  synchronous_commit=%-3s round %d  %-10s %8.0f/s\n' "$sync" "$round" "$comparator" "$tps"
    done
  done
  for comparator in "${COMPARATORS[@]}"; do
    value=$(for round in $(seq "$ROUNDS"); do figure throughput "$sync" "$comparator" "round$round"; done | median)
    record throughput "$sync" "$comparator" tps "$value"
  done
  redis flushall >/dev/null
  redis_mode "$sync"
  redis eval "for i = 0, 999 do redis.call('HSET', 'barrier:' .. i, 'remaining', 10000000) end" 0 >/dev/null
  rps=$(redis-benchmark -p "$redis_port" -c "$CLIENTS" -n 300000 -r 10000000 -q \
    evalsha "$redis_sha" 0 __rand_int__ "$PAYLOAD" 1000 |
    tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
  record throughput "$sync" redis tps "$rps"
  printf '  synchronous_commit=%-3s redis (appendfsync %s) %8.0f/s\n' "$sync" \
    "$([[ $sync == on ]] && echo always || echo everysec)" "$rps"
done

# --- 2. Hot barrier ------------------------------------------------------------------------
say "Hot barrier: one barrier of $HOT_SLOTS slots, $CLIENTS clients"
for sync in on off; do
  for comparator in "${COMPARATORS[@]}"; do
    reset_state
    one hot "$HOT_SLOTS"
    settle
    if [[ $comparator == jsonb ]]; then
      # Every append rewrites the whole growing array: time-boxed, it would take hours.
      args=(-T "$SECONDS_PER_ROUND")
    else
      args=(-t $((HOT_SLOTS / CLIENTS)))
    fi
    tps=$(bench "$sync" "$comparator" hot -c "$CLIENTS" -j 2 "${args[@]}" -D n=0 | tps_of)
    record hot "$sync" "$comparator" tps "$tps"
    printf '  synchronous_commit=%-3s %-10s %8.0f/s\n' "$sync" "$comparator" "$tps"
  done
done

# --- 3. Flatness ---------------------------------------------------------------------------
# flat SYNC COMPARATOR SLOTS REPEATS: one client reports every slot of a fresh barrier, with a
# per-call latency log, REPEATS times; records each run's latencies, WAL per call and time to
# completion (metric.N), and their medians. One client on a shared 2-core machine sees bursts
# of background work (autovacuum, the sweeper, other tenants) of tens of percent over a thousand
# calls: the median of three runs keeps one burst from deciding a ratio.
flat() {
  local sync=$1 comparator=$2 slots=$3 repeats=$4 run metric
  for run in $(seq "$repeats"); do
    flat_once "$sync" "$comparator" "$slots" "$run"
  done
  for metric in first_mean last_mean completing_call total_us wal_per_call; do
    record flat "$sync" "$comparator-$slots" "$metric" \
      "$(for run in $(seq "$repeats"); do figure flat "$sync" "$comparator-$slots" "$metric.$run"; done | median)"
  done
}
flat_once() {
  local sync=$1 comparator=$2 slots=$3 run=$4 log lsn
  reset_state
  one flat "$slots"
  settle
  lsn=$(q -c "SELECT pg_current_wal_lsn()")
  bench "$sync" "$comparator" flat -c 1 -t "$slots" -D n=0 -l --log-prefix="$work/log" >/dev/null
  record flat "$sync" "$comparator-$slots" "wal_per_call.$run" \
    "$(q -c "SELECT round(pg_wal_lsn_diff(pg_current_wal_lsn(), '$lsn') / $slots)")"
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
    record flat "$sync" "$comparator-$slots" "$metric.$run" "$value"
  done
  # The curve (of the last run): mean latency of each block of slots/100 calls.
  awk -v step=$((slots / 100)) '{ sum += $3; if ($2 % step == 0) { print $2, sum / step; sum = 0 } }' \
    "$log" >"$data/curve-$sync-$comparator-$slots.dat"
  rm -f "$log"
}
say "Flatness: one barrier of $FLAT_SLOTS slots, 1 KB incompressible results, one client"
for sync in on off; do
  for comparator in floor twin pg_barrier sql_edition; do
    flat "$sync" "$comparator" "$FLAT_SLOTS" 3
  done
  for comparator in jsonb pg_barrier; do
    flat "$sync" "$comparator" "$JSONB_SLOTS" 1
  done
  for key in floor-$FLAT_SLOTS twin-$FLAT_SLOTS pg_barrier-$FLAT_SLOTS sql_edition-$FLAT_SLOTS jsonb-$JSONB_SLOTS pg_barrier-$JSONB_SLOTS; do
    printf '  synchronous_commit=%-3s %-17s first %7s us  last %7s us  completing %9s us  WAL %7s B/call\n' \
      "$sync" "$key" "$(figure flat "$sync" "$key" first_mean)" "$(figure flat "$sync" "$key" last_mean)" \
      "$(figure flat "$sync" "$key" completing_call)" "$(figure flat "$sync" "$key" wal_per_call)"
  done
done

# --- 4. Churn ------------------------------------------------------------------------------
# Bytes of a comparator's tables (heap and TOAST data; the free-space and visibility maps, a few
# pages each, are left out) and of their indexes.
tables_of() {
  case $1 in
    floor) echo "'floor_counter'" ;;
    jsonb) echo "'jsonb_barrier'" ;;
    twin) echo "'twin_barrier', 'twin_result'" ;;
    pg_barrier | sql_path | sql_edition) echo "'barrier_internal.barrier', 'barrier_internal.barrier_spec', 'barrier_internal.result'" ;;
  esac
}
counter_of() {
  case $1 in
    floor) echo floor_counter ;;
    jsonb) echo jsonb_barrier ;;
    twin) echo twin_barrier ;;
    pg_barrier | sql_path | sql_edition) echo barrier_internal.barrier ;;
  esac
}
# The query function of COMPARATOR's database.
q_of() { if [[ $1 == sql_edition ]]; then echo qs; else echo q; fi; }
sizes() {
  $(q_of "$1") -F $'\t' -c "SELECT sum(pg_relation_size(t) + coalesce(pg_relation_size(nullif(c.reltoastrelid, 0)), 0)),
                          sum(pg_indexes_size(t))
                     FROM unnest(ARRAY[$(tables_of "$1")]::regclass[]) t JOIN pg_class c ON c.oid = t"
}
calls_per_barrier() { [[ $1 == floor || $1 == jsonb ]] && echo 12 || echo 11; }

say "Churn: $CHURN_BARRIERS barriers of 10 slots created, completed and swept, $CLIENTS clients"
# (sql_path stores exactly what pg_barrier stores.)
for comparator in floor jsonb twin pg_barrier sql_edition; do
  # The footprint of 10,000 live barriers, each half-way (5 of 10 slots reported).
  reset_state
  settle
  IFS=$'\t' read -r heap0 index0 < <(sizes "$comparator")
  case $comparator in
    floor) q -c "INSERT INTO floor_counter SELECT 'l' || i, 5 FROM generate_series(1, 10000) i" ;;
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
# are the point) runs there; the comparators run at off. The PL/pgSQL twin, the slowest, is
# left out to keep the run short (BENCH_CHURN_RUNS can add "off:twin" or any other pair).
for run in $CHURN_RUNS; do
  sync=${run%%:*} comparator=${run#*:}
  {
    reset_state
    settle
    IFS=$'\t' read -r heap0 index0 < <(sizes "$comparator")
    sweeper=
    if [[ $comparator == twin ]]; then
      # The twin's sweep, at the cadence of pg_barrier's background sweeper.
      (while sleep 1; do q -c "SELECT twin_sweep()" >/dev/null; done) &
      sweeper=$!
    elif [[ $comparator == sql_edition ]]; then
      # The SQL edition has no background worker: barrier_sweep() every second, as pg_cron
      # would run it.
      (while sleep 1; do qs -c "SELECT barrier_sweep()" >/dev/null; done) &
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
      pg_barrier)
        waited=0
        until [[ $(q -c "SELECT count(*) FROM barrier_internal.barrier") == 0 ]]; do
          ((waited++ < 600)) || { echo "the sweeper left finished barriers for 2 minutes" >&2; exit 1; }
          sleep 0.2
        done
        ;;
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
      record churn "$sync" "$comparator" $pair
    done
    printf '  synchronous_commit=%-3s %-10s %7s calls/s  heap %s -> %s -> %s B  indexes %s -> %s -> %s B  HOT %s%%\n' \
      "$sync" "$comparator" "$calls" "$heap0" "$heap1" "$heap2" "$index0" "$index1" "$index2" "$hot"
  }
done

say "Writing benches/RESULTS.md and the plots"
q -F $'\t' -c "SELECT name, current_setting(name) FROM unnest(ARRAY[
                  'shared_buffers', 'max_wal_size', 'checkpoint_timeout', 'max_connections',
                  'fsync', 'full_page_writes', 'wal_level', 'autovacuum', 'jit',
                  'shared_preload_libraries', 'pg_barrier.sweep_interval', 'pg_barrier.retention',
                  'pg_barrier.sweep_databases']) name" >"$data/settings.tsv"
elapsed=$(($(date +%s) - started))
echo "$elapsed" >"$data/elapsed"
benches/report.sh
say "Done in $((elapsed / 60)) min $((elapsed % 60)) s: benches/RESULTS.md"
