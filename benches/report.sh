#!/usr/bin/env bash
# Writes a report of benches/run.sh and its plots from the figures the run collected (run it
# again after changing the report: no server needed):
#   benches/report.sh [default]  benches/RESULTS.md, throughput.png, flatness.png (benches/results/)
#   benches/report.sh scaling    benches/SCALING.md, scaling.png (benches/results-scaling/)
#   benches/report.sh pinned     benches/PINNED.md, pinned.png (benches/results-pinned/)
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-default}
case $mode in
  default) data=benches/results out=benches/RESULTS.md flag= ;;
  scaling | pinned) data=benches/results-$mode out=benches/${mode^^}.md flag=" --$mode" ;;
  *)
    echo "usage: $0 [default | scaling | pinned]" >&2
    exit 2
    ;;
esac
figures=$data/figures.tsv
elapsed=$(cat "$data/elapsed")
written=$(date -u -r "$figures" '+%Y-%m-%d %H:%M UTC')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

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
# thousands N: 10000000 as 10,000,000.
thousands() { echo "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
int() { awk -v a="$1" 'BEGIN { if (a == "-") print "-"; else printf "%.0f", a }'; }
# verdict VALUE OP LIMIT: "met" or "missed" (or "-" without a value).
verdict() {
  awk -v v="$1" -v op="$2" -v l="$3" 'BEGIN {
    if (v == "-") { print "-"; exit }
    ok = (op == ">=" ? v >= l : v <= l); print (ok ? "**met**" : "**missed**") }'
}
# ratio_table SCENARIO DESIGN...: calls per second and the ratios to the floor and to floor2,
# at both settings.
ratio_table() {
  local scenario=$1 c sync row
  shift
  echo "| design | on: calls/s | on: x floor | on: x floor2 | off: calls/s | off: x floor | off: x floor2 |"
  echo "|---|---:|---:|---:|---:|---:|---:|"
  for c in "$@"; do
    row="| $(label "$c") |"
    for sync in on off; do
      v=$(figure "$scenario" "$sync" "$c" tps)
      row+=" $(int "$v") | $(ratio "$v" "$(figure "$scenario" "$sync" floor tps)") | $(ratio "$v" "$(figure "$scenario" "$sync" floor2 tps)") |"
    done
    echo "$row"
  done
}
# rounds_table SCENARIO DESIGN...: every round's calls per second.
rounds_table() {
  local scenario=$1 sync c
  shift
  echo "| design | setting | rounds |"
  echo "|---|---|---|"
  for sync in on off; do
    for c in "$@"; do
      echo "| $(label "$c") | $sync | $(awk -F'\t' -v s="$scenario" -v y="$sync" -v c="$c" '$1 == s && $2 == y && $3 == c && $4 ~ /^round/ { printf "%s%.0f", sep, $5; sep = ", " }' "$figures") |"
    done
  done
}
# rounds SCENARIO: how many rounds it ran.
rounds() { awk -F'\t' -v s="$1" '$1 == s && $4 ~ /^round/ { print $4 }' "$figures" | sort -u | wc -l; }
short() {
  case $1 in
    floor) echo "floor" ;;
    floor2) echo "floor2" ;;
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
    floor2) echo "floor2 (UPDATE + result row)" ;;
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

# The report's opening: where and how long, the machine and the server settings.
opening() {
  local parts
  parts=$(awk -F'\t' '$1 == "timing" { printf "%s%s %d s", sep, $4, $5; sep = ", " }' "$figures")
  echo "Measured by \`./benches/run.sh$flag\` on $written in $((elapsed / 60)) min $((elapsed % 60)) s (raw figures in \`$data/\`${parts:+; $parts})."
  echo "Every figure below comes from that one run, on one server, comparators side by side."
  echo
  echo "## Machine and server"
  echo
  echo "- $(nproc) cores ($(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1)), $(awk '/MemTotal/ { printf "%.0f GB", $2 / 1048576 }' /proc/meminfo) memory, $(. /etc/os-release && echo "$PRETTY_NAME"), kernel $(uname -r)."
  echo "- $(psql --version | head -1 | sed 's/psql (PostgreSQL)/PostgreSQL/') server (a copy of the installation, with the build under test) on a scratch data directory, pgbench clients on the same machine over a Unix socket, prepared statements (\`-M prepared\`)."
  [[ $mode == default ]] && echo "- $(redis-server --version | cut -d' ' -f1-3) on loopback, driven by redis-benchmark."
  echo "- pg_barrier (the Rust build, database \`bench\`) and its SQL edition (PL/pgSQL, database \`bench_sql\`, the same"
  echo "  pgbench scripts) are called by a plain role that owns the barriers, as applications do; the other designs"
  echo "  run as \`postgres\`. Nothing is preloaded: the SQL edition's sessions never load the library, as on a"
  echo "  managed server, and the PL/pgSQL twin works on tables made like pg_barrier's own (benches/sql/comparators.sql)."
  echo "- Server settings (\`synchronous_commit\` is set per run, as each table says):"
  echo
  echo "| setting | value |"
  echo "|---|---|"
  awk -F'\t' '{ printf "| %s | %s |\n", $1, $2 }' "$data/settings.tsv"
  echo
}

report_default() {
flat_key=$(awk -F'\t' '$1 == "flat" && $3 ~ /^pg_barrier-/ { print $3 }' "$figures" | sort -t- -k2 -n | tail -1)
flat_slots=${flat_key#pg_barrier-}
jsonb_key=$(awk -F'\t' '$1 == "flat" && $3 ~ /^jsonb-/ { print $3; exit }' "$figures")
jsonb_slots=${jsonb_key#jsonb-}

{
  echo "# pg_barrier benchmark results"
  echo
  opening
  echo "## 1. Throughput"
  echo
  echo "1,000 live slotted barriers (10,000,000 slots each, so none completes), 8 clients, a random barrier and slot per call,"
  echo "100-byte results. Decrements per second, median of $(rounds throughput) rounds"
  echo "of a fresh state each; the ratios are to the floor (a bare UPDATE of a counter) and to floor2 (the same UPDATE"
  echo "and an INSERT of the result row in one statement, ON CONFLICT DO NOTHING: the practical limit of a counter"
  echo "and a row per result, with none of a barrier's checks) of the same setting. Redis runs with"
  echo "\`appendfsync always\` beside \`synchronous_commit = on\` and \`appendfsync everysec\` beside \`off\`."
  echo
  ratio_table throughput floor floor2 jsonb twin pg_barrier sql_path sql_edition redis
  echo
  echo "Rounds (calls/s), to show the spread:"
  echo
  rounds_table throughput floor floor2 jsonb twin pg_barrier sql_path sql_edition
  echo
  echo "## 2. Hot barrier"
  echo
  echo "One barrier of $(thousands "$(figure config - - hot_slots)") slots (so it never completes), 8 clients, each reporting its own slots"
  if (($(rounds hot) > 1)); then
    echo "(client c takes slots c, c+8, ...), 100-byte results, for a fixed time: decrements per second, median of"
    echo "$(rounds hot) rounds of a fresh state each, as in the throughput scenario."
  else
    echo "(client c takes slots c, c+8, ...), 100-byte results, for a fixed time: decrements per second of one round"
    echo "on a fresh state (one round, not a median, to keep the run short: \`BENCH_HOT_ROUNDS=3\` gives the median of three)."
  fi
  echo "The floor decrements one counter as often, floor2 also inserts the result rows. The client-side jsonb design"
  echo "rewrites the whole growing array on every call: its rate is that of a barrier still filling, and falls as"
  echo "the round goes on."
  echo
  ratio_table hot floor floor2 jsonb twin pg_barrier sql_path sql_edition
  echo
  if (($(rounds hot) > 1)); then
    echo "Rounds (calls/s):"
    echo
    rounds_table hot floor floor2 jsonb twin pg_barrier sql_path sql_edition
    echo
  fi
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
    for key in "floor-$flat_slots" "floor2-$flat_slots" "twin-$flat_slots" "pg_barrier-$flat_slots" "sql_edition-$flat_slots" "$jsonb_key" "pg_barrier-$jsonb_slots"; do
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
  echo "$(thousands "$(figure config - - churn_barriers)") barriers of 10 slots each, created, completed and removed by 8 clients, every call its own"
  echo "transaction. For both editions of pg_barrier a loop calls \`barrier_sweep()\` every second (\`pg_barrier.retention"
  echo "= 0\`), as pg_cron or the background worker would; the floor and jsonb clients delete their own row. With every call committing on its own, at"
  echo "\`synchronous_commit = on\` this measures mostly the disk's flush rate, the same for every design: only"
  echo "pg_barrier runs there, for its storage and HOT figures. The PL/pgSQL twin and floor2 are left out of this"
  echo "scenario to keep the run short."
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
    for c in floor floor2 jsonb twin pg_barrier sql_edition; do
      [[ $(figure churn "$sync" "$c" calls_per_s) == - ]] && continue
      f() { figure churn "$sync" "$c" "$1"; }
      echo "| $(label "$c") | $sync | $(f calls_per_s) | $(human "$(f heap_empty)") | $(human "$(f heap_swept)") | $(human "$(f heap_vacuumed)") | $(human "$(f index_empty)") | $(human "$(f index_swept)") | $(human "$(f index_vacuumed)") | $(f hot_percent)% |"
    done
  done
  echo
  echo "Bytes per live barrier (10,000 barriers half-way: 5 of 10 slots reported with 100-byte results; tables and"
  echo "indexes, after VACUUM): $(sep=''; for c in floor floor2 jsonb twin pg_barrier sql_edition; do printf '%s%s %s' "$sep" "$(label "$c")" "$(figure churn footprint "$c" bytes_per_live_barrier)"; sep=', '; done)."
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
  for scenario in throughput hot; do
    for sync in on off; do
      edition=$(ratio "$(figure "$scenario" "$sync" sql_edition tps)" "$(figure "$scenario" "$sync" twin tps)")
      echo "| ${scenario/hot/hot barrier}, $sync: SQL edition >= 0.9x the PL/pgSQL twin | $edition | $(verdict "$edition" '>=' 0.9) |"
    done
  done
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
  echo './benches/run.sh             # this report'
  echo './benches/run.sh --scaling   # benches/SCALING.md: throughput and hot barrier at 1 to 64 clients'
  echo './benches/run.sh --pinned    # benches/PINNED.md: throughput and flatness with a snapshot held open'
  echo '```'
} >"$out"

# Latency along the barrier (synchronous_commit = off): one point per 1% of the calls.
curves=()
for key in "floor-$flat_slots" "floor2-$flat_slots" "twin-$flat_slots" "pg_barrier-$flat_slots" "sql_edition-$flat_slots" "$jsonb_key"; do
  file="$data/curve-off-$key.dat"
  [[ -s $file ]] && curves+=("'$file' using 1:2 with linespoints title '$(label "${key%-*}") ($(thousands "${key##*-}") slots)'")
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
  for c in floor floor2 jsonb twin pg_barrier sql_edition redis; do
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
set key below horizontal
set xtics noenhanced
plot '$work/throughput.dat' using 2:xtic(1) title 'synchronous_commit = on', '' using 3 title 'synchronous_commit = off'
GP
}

report_scaling() {
  local clients designs syncs scenario sync c n row best at panels=() plots file title
  clients=$(awk -F'\t' '$1 ~ /^scaling-/ { print substr($4, 2) }' "$figures" | sort -n -u | tr '\n' ' ')
  designs=$(awk -F'\t' '$1 ~ /^scaling-/ && !seen[$3]++ { print $3 }' "$figures" | tr '\n' ' ')
  syncs=$(awk -F'\t' '$1 ~ /^scaling-/ && !seen[$2]++ { print $2 }' "$figures" | tr '\n' ' ')
  {
    echo "# pg_barrier scaling with the number of clients"
    echo
    opening
    echo "## Scaling"
    echo
    echo "The throughput scenario (1,000 live barriers of 10,000,000 slots, a random barrier and slot per call) and the"
    echo "hot barrier (one barrier of $(thousands "$(figure config - - hot_slots)") slots, client c reporting slots c, c+N, c+2N, ... with N clients),"
    echo "100-byte results, at each number of clients: one round of $(figure config - - seconds) s on a fresh state, calls per second."
    echo "pgbench runs $(figure config - - threads) threads (fewer for fewer clients) on the same $(nproc) cores as the server, so past a"
    echo "few clients the designs compete with their own load generator, as clients on the database host would."
    echo "\"peak\" is the highest figure of the row and the clients it came at."
    for scenario in throughput hot; do
      for sync in $syncs; do
        echo
        echo "### $([[ $scenario == hot ]] && echo "Hot barrier" || echo "Throughput"), \`synchronous_commit = $sync\`"
        echo
        row="| design |"
        for n in $clients; do row+=" $n |"; done
        echo "$row peak |"
        row="|---|"
        for n in $clients; do row+="---:|"; done
        echo "$row---:|"
        for c in $designs; do
          row="| $(label "$c") |" best=- at=-
          for n in $clients; do
            v=$(figure "scaling-$scenario" "$sync" "$c" "c$n")
            row+=" $(int "$v") |"
            if [[ $v != - ]] && { [[ $best == - ]] || awk -v a="$v" -v b="$best" 'BEGIN { exit !(a > b) }'; }; then
              best=$v at=$n
            fi
          done
          echo "$row $(int "$best") ($at) |"
        done
      done
    done
    echo
    echo "![Calls per second against clients](scaling.png)"
    echo
    echo "## Reproduce"
    echo
    echo '```'
    echo './benches/run.sh --scaling'
    echo 'BENCH_SCALING_CLIENTS="1 8 64" BENCH_SCALING_SYNC=off BENCH_SCALING_DESIGNS="floor pg_barrier sql_path" ./benches/run.sh --scaling'
    echo '```'
  } >"$out"

  # One panel per scenario and setting, one line per design, clients on a log2 axis.
  for scenario in throughput hot; do
    for sync in $syncs; do
      plots=()
      for c in $designs; do
        file=$work/scaling-$scenario-$sync-$c.dat
        for n in $clients; do
          v=$(figure "scaling-$scenario" "$sync" "$c" "c$n")
          [[ $v != - ]] && echo "$n $v"
        done >"$file"
        [[ -s $file ]] && plots+=("'$file' using 1:2 with linespoints lw 2 title '$(short "$c")'")
      done
      title="$([[ $scenario == hot ]] && echo "Hot barrier" || echo "Throughput, 1,000 barriers"), synchronous_commit = $sync"
      panels+=("set title '$title'
plot $(IFS=,; echo "${plots[*]}")")
    done
  done
  gnuplot <<GP
set terminal pngcairo noenhanced size 1200,$((420 * ${#panels[@]} / 2 + 60)) font ",10"
set output 'benches/scaling.png'
set multiplot layout $(((${#panels[@]} + 1) / 2)),2 title "Calls per second against clients (100-byte results; pgbench on the same $(nproc) cores)"
set logscale x 2
set xrange [0.8:$(echo "$clients" | awk '{ print $NF * 1.25 }')]
set xtics ($(echo "$clients" | sed 's/ *$//; s/ /, /g'))
set xlabel "clients"
set ylabel "calls/s (log scale)"
set logscale y
set key outside right
set grid
$(printf '%s\n' "${panels[@]}")
unset multiplot
GP
}

report_pinned() {
  local designs syncs sync c table phase v row intervals n recovery first free pinned
  designs=$(awk -F'\t' '$1 == "pinned" && !seen[$3]++ { print $3 }' "$figures" | tr '\n' ' ')
  syncs=$(awk -F'\t' '$1 == "pinned" && !seen[$2]++ { print $2 }' "$figures" | tr '\n' ' ')
  intervals=$(awk -F'\t' '$1 == "pinned" && $4 ~ /^(free|pinned)_i[0-9]+$/ { sub(/.*_i/, "", $4); print $4 }' "$figures" | sort -n -u | tr '\n' ' ')
  recovery=$(figure config - - recovery_seconds)
  # cell PHASE SYNC DESIGN ROLE: "heap / index" of the counter or result table.
  cell() {
    local heap index
    heap=$(figure pinned "$2" "$3" "${1}_${4}_heap") index=$(figure pinned "$2" "$3" "${1}_${4}_index")
    echo "$(human "$heap") / $(human "$index")"
  }
  # first_seconds SYNC DESIGN PHASE SECONDS: the mean calls/s of PHASE's 5 s intervals up to SECONDS.
  first_seconds() {
    awk -F'\t' -v y="$1" -v c="$2" -v p="$3" -v s="$4" '
      $1 == "pinned" && $2 == y && $3 == c && index($4, p "_i") == 1 {
        t = substr($4, length(p) + 3) + 0; if (t <= s) { sum += $5; n++ } }
      END { if (n == 0) print "-"; else printf "%.0f", sum / n }' "$figures"
  }
  {
    echo "# pg_barrier with a snapshot held open"
    echo
    opening
    echo "## What is measured"
    echo
    echo "A long transaction anywhere in a database holds back its horizon: no row version that died after the"
    echo "transaction's snapshot was taken can be removed, by page pruning or by VACUUM, until it ends. Every design here"
    echo "updates a counter row per call, so each keeps every dead version of its counters while the horizon is held."
    echo "Here a second session (\`psql\`, in the database of the design under test) runs"
    echo "\`BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT count(*) FROM bench_payload;\` (the SELECT takes the snapshot)"
    echo "and stays idle in transaction from before the first call of the round to after the last; its"
    echo "\`pg_stat_activity.backend_xmin\` is checked to be set at both ends, and \"horizon behind\" is its age in"
    echo "transaction ids at the end of the round (the writes made since the snapshot)."
    echo
    echo "## 1. Throughput"
    echo
    echo "The throughput scenario (1,000 live barriers of 10,000,000 slots, 8 clients, a random barrier and slot per"
    echo "call, 100-byte results) for $(figure config - - seconds) s on a fresh state, once with a free horizon and once with the snapshot"
    echo "held, side by side in this run. Then the pin's transaction ends, a plain VACUUM of the design's tables runs"
    echo "(its duration is shown), and the scenario runs $recovery s more on the tables as VACUUM left them, beside the"
    echo "first $recovery s of the free round (same length, but that round started from empty tables)."
    echo
    echo "| design | setting | free: calls/s | pinned: calls/s | pinned / free | horizon behind (xids) | VACUUM took | after VACUUM: calls/s | free, first $recovery s |"
    echo "|---|---|---:|---:|---:|---:|---:|---:|---:|"
    for sync in $syncs; do
      for c in $designs; do
        free=$(figure pinned "$sync" "$c" free_tps) pinned=$(figure pinned "$sync" "$c" pinned_tps)
        echo "| $(label "$c") | $sync | $(int "$free") | $(int "$pinned") | $(ratio "$pinned" "$free") | $(figure pinned "$sync" "$c" pin_xid_age) | $(figure pinned "$sync" "$c" vacuum_s) s | $(int "$(figure pinned "$sync" "$c" recovered_tps)") | $(first_seconds "$sync" "$c" free "$recovery") |"
      done
    done
    echo
    echo "Calls per second in each 5 s of the round (pgbench \`--progress=5\`; where pgbench printed no line for the"
    echo "last 5 s, which end with the run, their rate is what the run's count of transactions leaves over):"
    echo
    row="| design | setting | horizon |"
    for n in $intervals; do row+=" $((n - 5))-$n s |"; done
    echo "$row"
    row="|---|---|---|"
    for n in $intervals; do row+="---:|"; done
    echo "$row"
    for sync in $syncs; do
      for c in $designs; do
        for phase in free pinned; do
          row="| $(label "$c") | $sync | $phase |"
          for n in $intervals; do row+=" $(int "$(figure pinned "$sync" "$c" "${phase}_i$n")") |"; done
          echo "$row"
        done
      done
    done
    echo
    echo "![Calls per second along the round, free and pinned](pinned.png)"
    echo
    echo "## 2. The tables"
    echo
    echo "Heap (with TOAST) / index bytes and dead rows (\`pg_stat_user_tables.n_dead_tup\`) of each design's counter"
    echo "table and result table (floor and jsonb have none; jsonb keeps its results in the counter row), at the end"
    echo "of the free round, at the end of the pinned round, after the pin ends and a VACUUM, and after the $recovery s that"
    echo "follow. VACUUM gives dead rows' space back to the table for reuse but does not shrink the files (only"
    echo "empty pages at the end), nor indexes."
    echo
    echo "| design | setting | table | free: heap / index | dead | pinned: heap / index | dead | after VACUUM: heap / index | dead | $recovery s later: heap / index | dead |"
    echo "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for sync in $syncs; do
      for c in $designs; do
        for table in counter result; do
          [[ $(figure pinned "$sync" "$c" "free_${table}_heap") == - ]] && continue
          row="| $(label "$c") | $sync | $table |"
          for phase in free pinned vacuumed recovered; do
            row+=" $(cell "$phase" "$sync" "$c" "$table") | $(figure pinned "$sync" "$c" "${phase}_${table}_dead") |"
          done
          echo "$row"
        done
      done
    done
    echo
    echo "## 3. Flatness with the snapshot held"
    echo
    echo "The flatness scenario (one client reports every slot of one barrier in order, 1 KB incompressible results;"
    echo "latencies in microseconds as pgbench logs them, \"first 1,000\" are calls 2 to 1,001 and \"last 1,000\" the"
    echo "1,000 calls before the completing one), once with a free horizon and once with the snapshot held from"
    echo "before the first call to after the last. One run each."
    echo
    echo "| design | slots | setting | free: first 1,000 | last 1,000 | last / first | pinned: first 1,000 | last 1,000 | last / first | horizon behind (xids) | WAL per call, free / pinned |"
    echo "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"
    for sync in $syncs; do
      for key in $(awk -F'\t' -v y="$sync" '$1 == "flat-pinned" && $2 == y && !seen[$3]++ { print $3 }' "$figures"); do
        row="| $(label "${key%-*}") | ${key##*-} | $sync |"
        for phase in flat flat-pinned; do
          first=$(figure "$phase" "$sync" "$key" first_mean) v=$(figure "$phase" "$sync" "$key" last_mean)
          row+=" $first | $v | $(ratio "$v" "$first") |"
        done
        echo "$row $(figure flat-pinned "$sync" "$key" pin_xid_age.1) | $(figure flat "$sync" "$key" wal_per_call) / $(figure flat-pinned "$sync" "$key" wal_per_call) |"
      done
    done
    echo
    echo "## Reproduce"
    echo
    echo '```'
    echo './benches/run.sh --pinned'
    echo 'BENCH_PINNED_SECONDS=60 BENCH_PINNED_SYNC=off BENCH_PINNED_DESIGNS="floor2 pg_barrier" ./benches/run.sh --pinned'
    echo '```'
  } >"$out"

  # Calls/s along the round: one panel per setting, per design a line for each horizon.
  local panels=() plots=() file color
  for sync in $syncs; do
    plots=() color=0
    for c in $designs; do
      color=$((color + 1))
      for phase in free pinned; do
        file=$work/pinned-$sync-$c-$phase.dat
        for n in $intervals; do
          v=$(figure pinned "$sync" "$c" "${phase}_i$n")
          [[ $v != - ]] && echo "$n $v"
        done >"$file"
        [[ -s $file ]] && plots+=("'$file' using 1:2 with linespoints lw 2 lc $color dt $([[ $phase == free ]] && echo 2 || echo 1) title '$(short "$c"), $phase'")
      done
    done
    panels+=("set title 'synchronous_commit = $sync'
plot $(IFS=,; echo "${plots[*]}")")
  done
  gnuplot <<GP
set terminal pngcairo noenhanced size 1200,$((440 * ${#panels[@]} + 40)) font ",10"
set output 'benches/pinned.png'
set multiplot layout ${#panels[@]},1 title "Calls per second in each 5 s, free horizon (dashed) and snapshot held (solid); 1,000 barriers, 8 clients"
set xlabel "seconds into the round (end of the 5 s interval)"
set xtics 5
set ylabel "calls/s"
set yrange [0:*]
set key outside right
set grid
$(printf '%s\n' "${panels[@]}")
unset multiplot
GP
}

"report_$mode"
