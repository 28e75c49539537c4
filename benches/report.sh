#!/usr/bin/env bash
# Writes benches/RESULTS.md and the plots from the figures benches/run.sh collected in
# benches/results/ (run it again after changing the report: no server needed).
set -euo pipefail
cd "$(dirname "$0")/.."
data=benches/results
figures=$data/figures.tsv
elapsed=$(cat "$data/elapsed")
written=$(date -u -r "$figures" '+%Y-%m-%d %H:%M UTC')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
out=benches/RESULTS.md

figure() {
  awk -F'\t' -v s="$1" -v y="$2" -v c="$3" -v m="$4" \
    '$1 == s && $2 == y && $3 == c && $4 == m { v = $5 } END { print (v == "" ? "-" : v) }' "$figures"
}
# ratio A B: A / B to two decimals.
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "-" || b == "-" || b == 0) print "-"; else printf "%.2f", a / b }'; }
# human BYTES: 0 B, 8 kB, 141.9 MB.
human() {
  awk -v b="$1" 'BEGIN {
    if (b == "-") print "-"; else if (b < 1024) printf "%d B", b
    else if (b < 1048576) printf "%.0f kB", b / 1024; else printf "%.1f MB", b / 1048576 }'
}
int() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a }'; }
# verdict VALUE OP LIMIT: "met" or "missed" (or "-" without a value).
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "-") { print "-"; exit }
    ok = (op == ">=" ? v >= l : v <= l); print (ok ? "**met**" : "**missed**") }'
}
# ratio_table SCENARIO DESIGN...: calls per second and the ratio to the floor, at both settings.
ratio_table() {
  local scenario=$1 c on off
  shift
  echo "| design | on: calls/s | on: x floor | off: calls/s | off: x floor |"
  echo "|---|---:|---:|---:|---:|"
  for c in "$@"; do
    on=$(figure "$scenario" on "$c" tps) off=$(figure "$scenario" off "$c" tps)
    echo "| $(label "$c") | $(int "$on") | $(ratio "$on" "$(figure "$scenario" on floor tps)") | $(int "$off") | $(ratio "$off" "$(figure "$scenario" off floor tps)") |"
  done
}
short() {
  case $1 in
    floor) echo "floor" ;;
    jsonb) echo "jsonb row" ;;
    twin) echo "PL/pgSQL twin" ;;
    pg_barrier) echo "pg_barrier" ;;
    sql_path) echo "pg_barrier, no fast path" ;;
    sql_edition) echo "SQL edition" ;;
    redis) echo "Redis (context)" ;;
  esac
}
label() {
  case $1 in
    floor) echo "floor (bare UPDATE)" ;;
    jsonb) echo "client-side jsonb" ;;
    twin) echo "PL/pgSQL twin" ;;
    pg_barrier) echo "pg_barrier" ;;
    sql_path) echo "pg_barrier, fast path off" ;;
    sql_edition) echo "pg_barrier, SQL edition" ;;
    redis) echo "Redis DECR+Lua (context)" ;;
  esac
}

flat_key=$(awk -F'\t' '$1 == "flat" && $3 ~ /^pg_barrier-/ { print $3 }' "$figures" | sort -t- -k2 -n | tail -1)
flat_slots=${flat_key#pg_barrier-}
jsonb_key=$(awk -F'\t' '$1 == "flat" && $3 ~ /^jsonb-/ { print $3; exit }' "$figures")
jsonb_slots=${jsonb_key#jsonb-}

{
  echo "# pg_barrier benchmark results"
  echo
  echo "Measured by \`./benches/run.sh\` on $written in $((elapsed / 60)) min $((elapsed % 60)) s (raw figures in \`benches/results/\`)."
  echo "Every figure below comes from that one run, on one server, comparators side by side."
  echo
  echo "## Machine and server"
  echo
  echo "- $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) memory, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)."
  echo "- $(psql --version | head -1 | sed 's/psql (PostgreSQL)/PostgreSQL/') server on a scratch data directory, pgbench clients on the same machine over a Unix socket, prepared statements (\`-M prepared\`)."
  echo "- $(redis-server --version | cut -d' ' -f1-3) on loopback, driven by redis-benchmark."
  echo "- pg_barrier (the Rust build, database \`bench\`) and its SQL edition (PL/pgSQL, database \`bench_sql\`, the same"
  echo "  pgbench scripts) are called by a plain role that owns the barriers, as applications do; the other designs"
  echo "  run as \`postgres\`."
  echo "- Server settings (\`synchronous_commit\` is set per run, as each table says):"
  echo
  echo "| setting | value |"
  echo "|---|---|"
  awk -F'\t' '{ printf "| %s | %s |\n", $1, $2 }' "$data/settings.tsv"
  echo
  echo "## 1. Throughput"
  echo
  echo "1,000 live slotted barriers (10,000,000 slots each, so none completes), 8 clients, a random barrier and slot per call,"
  echo "100-byte results. Decrements per second, median of $(awk -F'\t' '$1 == "throughput" && $4 ~ /^round/ { print $4 }' "$figures" | sort -u | wc -l) rounds"
  echo "of a fresh state each; the ratio is to the floor of the same setting. Redis runs with \`appendfsync always\`"
  echo "beside \`synchronous_commit = on\` and \`appendfsync everysec\` beside \`off\`."
  echo
  ratio_table throughput floor jsonb twin pg_barrier sql_path sql_edition redis
  echo
  echo "Rounds (calls/s), to show the spread:"
  echo
  echo "| design | setting | rounds |"
  echo "|---|---|---|"
  for sync in on off; do
    for c in floor jsonb twin pg_barrier sql_path sql_edition; do
      echo "| $(label "$c") | $sync | $(awk -F'\t' -v y="$sync" -v c="$c" '$1 == "throughput" && $2 == y && $3 == c && $4 ~ /^round/ { printf "%s%.0f", sep, $5; sep = ", " }' "$figures") |"
    done
  done
  echo
  echo "## 2. Hot barrier"
  echo
  echo "One barrier of $(printf "%'d" "$(figure config - - hot_slots)") slots, every one reported once by 8 clients (client c takes slots c, c+8, ...); the floor"
  echo "decrements one counter as often. The client-side jsonb design rewrites the whole growing array on every"
  echo "call: it runs for a fixed time instead, and its rate is that of a barrier still filling."
  echo
  ratio_table hot floor jsonb twin pg_barrier sql_path sql_edition
  echo
  echo "## 3. Flatness"
  echo
  echo "One client reports every slot of one barrier in order, each result a distinct 1 KB incompressible string"
  echo "(read from a table by primary key, the same look-up for every design). Latencies are per call as pgbench"
  echo "logs them (microseconds): \"first 1,000\" are calls 2 to 1,001 (call 1 is a new backend preparing its"
  echo "statements), \"last 1,000\" the 1,000 calls before the completing one, which is shown on its own (for jsonb:"
  echo "the update that reads 0 and the delete that takes the results). \"To complete\" is the sum of all calls,"
  echo "WAL is bytes per call. At $flat_slots slots each figure is the median of three runs (one client on a shared"
  echo "machine sees bursts of background work over a thousand calls); the other sizes ran once."
  echo
  echo "| design | slots | setting | first 1,000 | last 1,000 | last / first | completing call | to complete | WAL per call |"
  echo "|---|---:|---|---:|---:|---:|---:|---:|---:|"
  for sync in on off; do
    for key in "floor-$flat_slots" "twin-$flat_slots" "pg_barrier-$flat_slots" "sql_edition-$flat_slots" "$jsonb_key" "pg_barrier-$jsonb_slots"; do
      first=$(figure flat "$sync" "$key" first_mean) last=$(figure flat "$sync" "$key" last_mean)
      total=$(figure flat "$sync" "$key" total_us)
      echo "| $(label "${key%-*}") | ${key##*-} | $sync | $first | $last | $(ratio "$last" "$first") | $(figure flat "$sync" "$key" completing_call) | $(awk -v t="$total" 'BEGIN { printf "%.2f s", t / 1e6 }') | $(figure flat "$sync" "$key" wal_per_call) |"
    done
  done
  echo
  echo "The jsonb design at $jsonb_slots slots (its cost per call grows with the array, so the whole barrier costs"
  echo "the square of its size; at $flat_slots slots it would run for hours) against pg_barrier at the same size:"
  echo "see the plot below for the curve."
  echo
  echo "![Latency per call along the barrier](flatness.png)"
  echo
  echo "## 4. Churn"
  echo
  echo "$(printf "%'d" "$(figure config - - churn_barriers)") barriers of 10 slots each, created, completed and removed by 8 clients, every call its own"
  echo "transaction. pg_barrier's background sweeper (every second, \`pg_barrier.retention = 0\`) removes finished"
  echo "barriers; for the SQL edition, which has no worker, a loop calls \`barrier_sweep()\` every second, as pg_cron"
  echo "would; the floor and jsonb clients delete their own row. With every call committing on its own, at"
  echo "\`synchronous_commit = on\` this measures mostly the disk's flush rate, the same for every design: only"
  echo "pg_barrier runs there, for its storage and HOT figures. The PL/pgSQL twin is left out of this scenario"
  echo "to keep the run short."
  echo "Sizes are bytes of the tables (heap and TOAST data, without the free-space and visibility maps, which"
  echo "keep a few pages each) and of their indexes: empty,"
  echo "right after the run and the last sweep (dead rows included), and after a plain VACUUM. HOT is the share of"
  echo "updates of the counter row that were heap-only: for pg_barrier every report but the completing one, which"
  echo "moves the barrier between the sweep's partial indexes, so at most 90% with 10 slots. VACUUM does not"
  echo "shrink index files: their pages are reused by the next barriers."
  echo
  echo "| design | setting | calls/s | tables: empty | swept | vacuumed | indexes: empty | swept | vacuumed | HOT updates |"
  echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
  for sync in on off; do
    for c in floor jsonb twin pg_barrier sql_edition; do
      [[ $(figure churn "$sync" "$c" calls_per_s) == - ]] && continue
      f() { figure churn "$sync" "$c" "$1"; }
      echo "| $(label "$c") | $sync | $(f calls_per_s) | $(human "$(f heap_empty)") | $(human "$(f heap_swept)") | $(human "$(f heap_vacuumed)") | $(human "$(f index_empty)") | $(human "$(f index_swept)") | $(human "$(f index_vacuumed)") | $(f hot_percent)% |"
    done
  done
  echo
  echo "Bytes per live barrier (10,000 barriers half-way: 5 of 10 slots reported with 100-byte results; tables and"
  echo "indexes, after VACUUM): $(sep=''; for c in floor jsonb twin pg_barrier sql_edition; do printf '%s%s %s' "$sep" "$(label "$c")" "$(figure churn footprint "$c" bytes_per_live_barrier)"; sep=', '; done)."
  echo
  echo "## The fast path, on and off"
  echo
  echo 'The Rust build counts the common report without SQL (src/fast_path.rs); `pg_barrier.fast_path = off` sends'
  echo "every report through its SQL path (one statement for the common report). Both run above, side by side:"
  echo
  echo "| scenario | setting | fast path on | off | on / off | off / PL/pgSQL twin |"
  echo "|---|---|---:|---:|---:|---:|"
  for sync in on off; do
    for scenario in throughput hot; do
      r=$(figure "$scenario" "$sync" pg_barrier tps) p=$(figure "$scenario" "$sync" sql_path tps)
      t=$(figure "$scenario" "$sync" twin tps)
      echo "| $scenario (calls/s) | $sync | $(int "$r") | $(int "$p") | $(ratio "$r" "$p") | $(ratio "$p" "$t") |"
    done
  done
  echo
  echo "## The two editions side by side"
  echo
  echo "The SQL edition (PL/pgSQL, for managed services that load no library) runs the same API on the same"
  echo "tables, in a database of its own on the same server. What the Rust build buys, as the Rust build's"
  echo "figure over the SQL edition's (above 1: the Rust build is faster or smaller):"
  echo
  echo "| scenario | setting | Rust build | SQL edition | Rust / SQL |"
  echo "|---|---|---:|---:|---:|"
  for sync in on off; do
    for scenario in throughput hot; do
      r=$(figure "$scenario" "$sync" pg_barrier tps) q=$(figure "$scenario" "$sync" sql_edition tps)
      echo "| $scenario (calls/s) | $sync | $(int "$r") | $(int "$q") | $(ratio "$r" "$q") |"
    done
    r=$(figure flat "$sync" "pg_barrier-$flat_slots" last_mean) q=$(figure flat "$sync" "sql_edition-$flat_slots" last_mean)
    echo "| flatness: last 1,000 calls (us per call) | $sync | $r | $q | $(ratio "$q" "$r") |"
    r=$(figure flat "$sync" "pg_barrier-$flat_slots" completing_call) q=$(figure flat "$sync" "sql_edition-$flat_slots" completing_call)
    echo "| flatness: completing call, $flat_slots results (us) | $sync | $r | $q | $(ratio "$q" "$r") |"
    r=$(figure flat "$sync" "pg_barrier-$flat_slots" wal_per_call) q=$(figure flat "$sync" "sql_edition-$flat_slots" wal_per_call)
    echo "| flatness: WAL per call (B) | $sync | $r | $q | $(ratio "$q" "$r") |"
    r=$(figure churn "$sync" pg_barrier calls_per_s) q=$(figure churn "$sync" sql_edition calls_per_s)
    [[ $q != - ]] && echo "| churn (calls/s) | $sync | $r | $q | $(ratio "$r" "$q") |"
  done
  for sync in on off; do
    key=sql_edition-$flat_slots
    growth=$(ratio "$(figure flat "$sync" "$key" last_mean)" "$(figure flat "$sync" "$key" first_mean)")
    echo
    echo "SQL edition flatness, $sync: the last 1,000 calls cost ${growth}x the first 1,000."
  done
  echo
  echo "## Targets"
  echo
  tput_on=$(ratio "$(figure throughput on pg_barrier tps)" "$(figure throughput on floor tps)")
  tput_off=$(ratio "$(figure throughput off pg_barrier tps)" "$(figure throughput off floor tps)")
  twin_on=$(ratio "$(figure throughput on pg_barrier tps)" "$(figure throughput on twin tps)")
  twin_off=$(ratio "$(figure throughput off pg_barrier tps)" "$(figure throughput off twin tps)")
  hot_on=$(ratio "$(figure hot on pg_barrier tps)" "$(figure hot on floor tps)")
  hot_off=$(ratio "$(figure hot off pg_barrier tps)" "$(figure hot off floor tps)")
  echo "| target | measured | verdict |"
  echo "|---|---|---|"
  echo "| throughput, on: pg_barrier >= 0.9x floor | $tput_on | $(verdict "$tput_on" '>=' 0.9) |"
  echo "| throughput, off: pg_barrier >= 0.75x floor | $tput_off | $(verdict "$tput_off" '>=' 0.75) |"
  echo "| throughput, on: ahead of the PL/pgSQL twin | $twin_on | $(verdict "$twin_on" '>=' 1.0) |"
  echo "| throughput, off: >= 1.15x the PL/pgSQL twin | $twin_off | $(verdict "$twin_off" '>=' 1.15) |"
  echo "| hot barrier, on: >= 0.8x floor | $hot_on | $(verdict "$hot_on" '>=' 0.8) |"
  echo "| hot barrier, off: >= 0.8x floor | $hot_off | $(verdict "$hot_off" '>=' 0.8) |"
  for sync in on off; do
    key=pg_barrier-$flat_slots
    growth=$(ratio "$(figure flat "$sync" "$key" last_mean)" "$(figure flat "$sync" "$key" first_mean)")
    echo "| flatness, $sync: last 1,000 <= 1.15x first 1,000 | $growth | $(verdict "$growth" '<=' 1.15) |"
    wal=$(ratio "$(figure flat "$sync" "$key" wal_per_call)" 1024)
    echo "| flatness, $sync: WAL per call < 3x the 1 KB result | ${wal}x | $(verdict "$wal" '<=' 2.999) |"
    sooner=$(ratio "$(figure flat "$sync" "$jsonb_key" total_us)" "$(figure flat "$sync" "pg_barrier-$jsonb_slots" total_us)")
    echo "| flatness, $sync: $jsonb_slots x 1 KB completed >= 20x sooner than jsonb | ${sooner}x | $(verdict "$sooner" '>=' 20) |"
  done
  for sync in on off; do
    empty=$(figure churn "$sync" pg_barrier heap_empty) vacuumed=$(figure churn "$sync" pg_barrier heap_vacuumed)
    echo "| churn, $sync: tables within 2x of empty after sweep and VACUUM | $vacuumed B after, $empty B empty | $(verdict "$vacuumed" '<=' "$(awk -v e="$empty" 'BEGIN { print 2 * e }')") |"
    hot=$(figure churn "$sync" pg_barrier hot_percent)
    echo "| churn, $sync: counter updates >= 90% HOT | $hot% | $(verdict "$hot" '>=' 90) |"
  done
  echo
  echo "## Reproduce"
  echo
  echo '```'
  echo './benches/run.sh'
  echo '```'
} >"$out"

# Latency along the barrier (synchronous_commit = off): one point per 1% of the calls.
curves=()
for key in "floor-$flat_slots" "twin-$flat_slots" "pg_barrier-$flat_slots" "sql_edition-$flat_slots" "$jsonb_key"; do
  file="$data/curve-off-$key.dat"
  [[ -s $file ]] && curves+=("'$file' using 1:2 with linespoints title '$(label "${key%-*}") ($(printf "%'d" "${key##*-}") slots)'")
done
gnuplot <<GP
set terminal pngcairo noenhanced size 1000,560 font ",11"
set output 'benches/flatness.png'
set title "Latency per call along one barrier (1 KB results, one client, synchronous_commit = off)"
set xlabel "call number (slot + 1)"
set ylabel "mean latency of 1% of the calls (microseconds)"
set logscale y
set key top left
set grid
plot $(IFS=,; echo "${curves[*]}")
GP

# Throughput against the floor, both settings.
{
  for c in floor jsonb twin pg_barrier sql_edition redis; do
    echo "\"$(short "$c")\" $(ratio "$(figure throughput on "$c" tps)" "$(figure throughput on floor tps)") $(ratio "$(figure throughput off "$c" tps)" "$(figure throughput off floor tps)")"
  done
} >"$work/throughput.dat"
gnuplot <<GP
set terminal pngcairo noenhanced size 1000,520 font ",11"
set output 'benches/throughput.png'
set title "Throughput as a multiple of the bare UPDATE (1,000 barriers, 8 clients, 100-byte results)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.8 border -1
set boxwidth 0.9
set ylabel "x floor"
set yrange [0:*]
set grid ytics
set key top left
set xtics noenhanced
plot '$work/throughput.dat' using 2:xtic(1) title 'synchronous_commit = on', '' using 3 title 'synchronous_commit = off'
GP
