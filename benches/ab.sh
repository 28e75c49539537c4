#!/usr/bin/env bash
# One setting measured on and off, side by side on one scratch server, with the benchmark's
# throughput script (1,000 live barriers, a random slot per call, synchronous_commit = off):
#
#   benches/ab.sh search-path   the API functions' SET search_path (Rust build), without / with
#   benches/ab.sh trigger       the SQL edition's ownership trigger on results, with / without
#   benches/ab.sh checks        the state tables' CHECK constraints (SQL edition), with / without
#   benches/ab.sh barrier-views the SQL edition's views as security barriers, or plain views
#
# Each pair is what one guarantee costs: the trigger holds writes of results through the views
# to the barrier's newest row; the constraints hold every row, written by hand or not, to what
# the calls that read every role's barriers expect; a security barrier keeps a caller's own
# conditions from seeing other roles' rows (docs/managed.md). The second of each pair gives that
# guarantee up, so it is a measurement only, never a setting to run with.
#
# Five alternating 4 s rounds of each, from one client and from eight; prints every round, so the
# spread shows. About 2 minutes (plus a release build). Runs as root; the server runs as the
# postgres user in /var/tmp/pg_barrier-ab on port 5497 and is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ $EUID -ne 0 ]]; then exec sudo --preserve-env=PATH,HOME,CARGO_HOME,RUSTUP_HOME "$0" "$@"; fi
usage="usage: benches/ab.sh search-path | trigger | checks | barrier-views"
mode=${1:?"$usage"}
source scripts/setup.sh

root=/var/tmp/pg_barrier-ab
port=5497
bindir=$("$PG_CONFIG" --bindir)
as_postgres() { runuser -u postgres -- "$@"; }
q() { psql -X -q -At -v ON_ERROR_STOP=1 -h "$root" -p "$port" -U postgres -d postgres "$@"; }
stop() { as_postgres "$bindir/pg_ctl" -D "$root/data" -m fast stop >/dev/null 2>&1 || true; }
trap stop EXIT

case $mode in
  search-path) cargo pgrx install --release --pg-config "$PG_CONFIG" >/dev/null ;;
  trigger | checks | barrier-views) scripts/sql-edition.sh --dist "$root.dist" >/dev/null ;;
  *) echo "$usage" >&2; exit 2 ;;
esac
stop
rm -rf "$root"
install -d -o postgres -g postgres "$root"
as_postgres "$bindir/initdb" -D "$root/data" --auth=trust -U postgres --encoding=UTF8 >/dev/null
cat >>"$root/data/postgresql.conf" <<CONF
listen_addresses = ''
unix_socket_directories = '$root'
port = $port
shared_buffers = 1GB
synchronous_commit = off
CONF
as_postgres "$bindir/pg_ctl" -D "$root/data" -l "$root/server.log" -w start >/dev/null
if [[ $mode == search-path ]]; then
  q -c "CREATE EXTENSION pg_barrier"
  a="ALTER FUNCTION barrier_decr(text, jsonb, integer, boolean) RESET search_path"
  b="ALTER FUNCTION barrier_decr(text, jsonb, integer, boolean) SET search_path = pg_catalog, pg_temp"
  labels=("without SET search_path" "with it")
else
  q --single-transaction -f "$root.dist/pg_barrier-schema--$(sed -n "s/^default_version = '\(.*\)'$/\1/p" sql-edition/pg_barrier.control).sql" >/dev/null
fi
case $mode in
  trigger)
    a="ALTER TABLE barrier_internal.result ENABLE TRIGGER barrier_result_owner"
    b="ALTER TABLE barrier_internal.result DISABLE TRIGGER barrier_result_owner"
    labels=("with the trigger" "without")
    ;;
  checks)
    # Dropped, and added back as they were (NOT VALID: the rows are the API's, and valid).
    constraints=$(q -F $'\t' -c "SELECT conrelid::regclass, conname, pg_get_constraintdef(oid)
                                  FROM pg_constraint
                                 WHERE connamespace = 'barrier_internal'::regnamespace
                                   AND contype = 'c'")
    a='' b=''
    while IFS=$'\t' read -r table name definition; do
      a+="ALTER TABLE $table ADD CONSTRAINT $name $definition NOT VALID; "
      b+="ALTER TABLE $table DROP CONSTRAINT $name; "
    done <<<"$constraints"
    labels=("with the CHECK constraints" "without")
    q -c "$b"
    ;;
  barrier-views)
    a='' b=''
    for view in my_barrier my_barrier_spec my_result; do
      a+="ALTER VIEW barrier_internal.$view SET (security_barrier = true); "
      b+="ALTER VIEW barrier_internal.$view SET (security_barrier = false); "
    done
    labels=("with security-barrier views" "with plain views")
    ;;
esac
q -c "CREATE ROLE ab_app LOGIN"
q -c "SET ROLE ab_app" -c "SELECT count(barrier_enqueue('t' || i, 10000000, ttl => '1 day')) FROM generate_series(0, 999) i" >/dev/null
round() {
  "$bindir/pgbench" -h "$root" -p "$port" -U ab_app -n -M prepared \
    -f benches/pgbench/throughput-pg_barrier.sql -c "$1" -j "$2" -T 4 postgres 2>/dev/null |
    sed -n 's/^tps = \([0-9.]*\) (without initial connection time)$/\1/p'
}
for clients in "1 1" "8 2"; do
  first=() second=()
  for _ in 1 2 3 4 5; do
    q -c "$a"
    first+=("$(round $clients)")
    q -c "$b"
    second+=("$(round $clients)")
  done
  printf '%s client(s), %s: %s\n' "${clients%% *}" "${labels[0]}" "${first[*]}"
  printf '%s client(s), %s: %s\n' "${clients%% *}" "${labels[1]}" "${second[*]}"
done
