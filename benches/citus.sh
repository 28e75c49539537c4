#!/usr/bin/env bash
# pg_barrier on one plain PostgreSQL 15 against a Citus cluster (a coordinator and two workers,
# docs/scale-out.md's layout), side by side in one run, each edition in its own database:
#
#   many barriers   8 clients report random slots of 1,000 barriers (calls per second)
#   hot barrier     8 clients report the slots of one barrier (calls per second)
#   latency         1 client, barrier_decr on many barriers (mean ms per call)
#
# Every server runs on this machine, so the cluster's three servers share its cores with the
# clients: the figures show what a call costs through the coordinator, not what more machines
# would add. Writes benches/CITUS.md. About 6 minutes on 2 cores. Runs as root (the servers as
# the postgres user, in /var/tmp/pg_barrier-citus-bench), Citus from scripts/citus.sh.
#   BENCH_SECONDS (10) per round, BENCH_ROUNDS (3), BENCH_CLIENTS (8).
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME,CITUS_SRC "$0" "$@"; fi
source scripts/setup.sh

SECONDS_PER_ROUND=${BENCH_SECONDS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
CLIENTS=${BENCH_CLIENTS:-8}
pg_config=/usr/lib/postgresql/15/bin/pg_config
bindir=$("$pg_config" --bindir)
root=/var/tmp/pg_barrier-citus-bench
base_port=${PG_BARRIER_CITUS_BENCH_PORT:-5520}
work=$(mktemp -d)
out=benches/CITUS.md

say "Installing Citus and pg_barrier (release) into PostgreSQL 15"
scripts/citus.sh "$pg_config"
cargo pgrx install --release --pg-config "$pg_config" >/dev/null
scripts/install-sql-edition.sh --scripts-only "$("$pg_config" --sharedir)/extension" >/dev/null

as_postgres() { runuser -u postgres -- "$@"; }
stop_all() {
  for dir in "$root"/*/; do
    [[ -f $dir/postmaster.pid ]] && as_postgres "$bindir/pg_ctl" -D "$dir" stop -m fast >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap stop_all EXIT

# node NAME PORT PRELOAD: a fresh server.
node() {
  local dir=$root/$1 port=$2 preload=$3
  as_postgres "$bindir/initdb" -A trust -U postgres -D "$dir" >/dev/null
  cat >>"$dir/postgresql.auto.conf" <<EOF
port = $port
unix_socket_directories = '$root'
listen_addresses = 'localhost'
shared_preload_libraries = '$preload'
max_connections = 200
shared_buffers = '512MB'
wal_level = logical
max_prepared_transactions = 200
# Citus 13.2.2's distributed deadlock detection crashes on PostgreSQL 15.20 with pg_barrier
# loaded (docs/scale-out.md); these workloads make no distributed transaction.
citus.distributed_deadlock_detection_factor = -1
EOF
  as_postgres "$bindir/pg_ctl" -D "$dir" -l "$root/$1.log" start -w >/dev/null
}
q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$root" -p "$1" -U postgres -d "$2" "${@:3}"; }

rm -rf "$root"
mkdir -p "$root"
chown postgres "$root"
plain=$base_port coordinator=$((base_port + 1)) worker1=$((base_port + 2)) worker2=$((base_port + 3))
say "Starting one plain server and a Citus cluster (coordinator and two workers)"
node plain "$plain" pg_barrier
node coordinator "$coordinator" citus,pg_barrier
node worker1 "$worker1" citus,pg_barrier
node worker2 "$worker2" citus,pg_barrier

# The Rust build in database `rust`, the SQL edition in `sql`, on every server.
for db in rust sql; do
  if [[ $db == rust ]]; then create="CREATE EXTENSION pg_barrier"; else
    create="CREATE EXTENSION pg_barrier VERSION '$(sed -n "s/^default_version = '\(.*\)'$/\1/p" sql-edition/pg_barrier.control)'"
  fi
  q "$plain" postgres -c "CREATE DATABASE $db"
  q "$plain" "$db" -c "$create"
  for port in "$coordinator" "$worker1" "$worker2"; do
    q "$port" postgres -c "CREATE DATABASE $db"
    q "$port" "$db" -c "CREATE EXTENSION citus"
  done
  q "$coordinator" "$db" -c "SELECT citus_set_coordinator_host('localhost', $coordinator)" \
    -c "SELECT citus_add_node('localhost', $worker1)" -c "SELECT citus_add_node('localhost', $worker2)" >/dev/null
  q "$coordinator" "$db" -c "$create" -c "SET client_min_messages = warning" \
    -c "SELECT count(*) FROM barrier_distribute(shard_count => 32)" >/dev/null
done

cat >"$work/many.sql" <<'EOF'
\set b random(0, 999)
\set s random(0, 9999999)
SELECT status FROM barrier_decr('m' || :b, '"result:0123456789abcdef0123456789abcdef"', :s);
EOF
cat >"$work/hot.sql" <<'EOF'
\set s random(0, 99999999)
SELECT status FROM barrier_decr('hot', '"result:0123456789abcdef0123456789abcdef"', :s);
EOF

# Fresh barriers before each round, so every round starts alike.
prepare() {
  local port=$1 db=$2
  q "$port" "$db" -c "SELECT count(barrier_enqueue('m' || i, 100000000, replace => true)) FROM generate_series(0, 999) AS i" \
    -c "SELECT barrier_enqueue('hot', 100000000, replace => true)" >/dev/null
}
run() {
  local port=$1 db=$2 script=$3 clients=$4
  "$bindir/pgbench" -n -h "$root" -p "$port" -U postgres -d "$db" -f "$work/$script.sql" \
    -c "$clients" -j 2 -T "$SECONDS_PER_ROUND" 2>/dev/null
}
median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

declare -A figure
for db in rust sql; do
  for setup in plain citus; do
    port=$plain
    [[ $setup == citus ]] && port=$coordinator
    for scenario in many hot latency; do
      values=()
      for round in $(seq "$ROUNDS"); do
        prepare "$port" "$db"
        case $scenario in
          many) value=$(run "$port" "$db" many "$CLIENTS" | sed -n 's/^tps = \([0-9.]*\).*/\1/p') ;;
          hot) value=$(run "$port" "$db" hot "$CLIENTS" | sed -n 's/^tps = \([0-9.]*\).*/\1/p') ;;
          latency) value=$(run "$port" "$db" many 1 | sed -n 's/^latency average = \([0-9.]*\) ms/\1/p') ;;
        esac
        values+=("$value")
      done
      figure[$db/$setup/$scenario]=$(printf '%s\n' "${values[@]}" | median |
        awk -v s="$scenario" '{ printf(s == "latency" ? "%.3f" : "%.0f", $1) }')
      say "$db, $setup, $scenario: ${values[*]} (median ${figure[$db/$setup/$scenario]})"
    done
  done
done

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
{
  echo "# pg_barrier on Citus: one plain server against a coordinator and two workers"
  echo
  echo "Written by \`benches/citus.sh\` on $(date -u +%Y-%m-%d) ($(nproc) cores, $(free -g | awk '/^Mem/ {print $2}') GB;"
  echo "PostgreSQL 15, Citus 13.2.2, 32 shards, $CLIENTS clients, median of $ROUNDS rounds of ${SECONDS_PER_ROUND} s)."
  echo "All four servers and the clients share this machine, so the cluster cannot be faster than"
  echo "the plain server here: the ratios are the cost of the hop through the coordinator on the"
  echo "same cores. What more machines buy is in docs/scale-out.md. The Rust build's fast path"
  echo "takes the plain server's reports; on Citus every report goes through its SQL path."
  echo
  echo "| edition | scenario | plain server | Citus (delegated) | Citus / plain |"
  echo "|---|---|---|---|---|"
  for db in rust sql; do
    edition="Rust build"
    [[ $db == sql ]] && edition="SQL edition"
    for scenario in many hot latency; do
      unit="calls/s"
      [[ $scenario == latency ]] && unit="ms per call"
      plain_value=${figure[$db/plain/$scenario]} citus_value=${figure[$db/citus/$scenario]}
      echo "| $edition | $scenario ($unit) | $plain_value | $citus_value | $(ratio "$citus_value" "$plain_value") |"
    done
  done
} >"$out"
say "Wrote $out"
cat "$out"
