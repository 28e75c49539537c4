"""Completion latency of pg_barrier: how long after a barrier completes its consumers learn of it.

Run by benches/latency.sh, which starts the server and the background load; two subcommands:

  latency.py measure --dsn DSN --run NAME --sync on|off --completions N [--interval-ms MS]
             --out FILE.tsv
      Three processes, each with its own connection (all at the given synchronous_commit):
      the completer (this process), one barrier every --interval-ms (10) at most, enqueues
      barrier 'lat-NAME-i' with 2 slots, reports slot 0, then times the completing report of
      slot 1; a listener LISTENs on 'pg_barrier' and notes when each of our 'complete'
      notifications arrives; a poller calls barrier_completions() every 100 ms and notes when
      each of our ids comes back. Every time is
      time.monotonic_ns() (CLOCK_MONOTONIC, one clock for every process of the machine).
      Writes one row per completion: i, t_start, t_end, t_listen, t_poll, in microseconds from
      the first t_start. Fails if a receiver missed a completion or saw one twice.

  latency.py table DIR
      Prints the Markdown table of every DIR/samples-EDITION-SYNC.tsv, with the background
      load's calls per second from DIR/background.tsv (edition, sync, tps).
"""

import argparse
import json
import math
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg

CHANNEL = "pg_barrier"
POLL_INTERVAL_NS = 100_000_000
WARMUP = 100
# The pgbench throughput script's result: 100 bytes of JSON.
RESULT = json.dumps("result:" + "0123456789abcdef" * 5 + "0123456789x")
STOP = "latency-stop"


def connect(dsn, sync):
    conn = psycopg.connect(dsn, autocommit=True, options=f"-c synchronous_commit={sync}")
    actual = conn.execute("SHOW synchronous_commit").fetchone()[0]
    assert actual == sync, f"synchronous_commit is {actual}, not {sync}"
    return conn


def ours(run, barrier_id):
    """The number i of our barrier 'lat-RUN-i', or None for any other id."""
    prefix = f"lat-{run}-"
    return int(barrier_id[len(prefix):]) if barrier_id.startswith(prefix) else None


def listener(dsn, sync, run, path, ready, seen):
    """Notes the arrival of each of our 'complete' notifications until the STOP one."""
    received = []
    with connect(dsn, sync) as conn:
        conn.execute(f"LISTEN {CHANNEL}")
        ready.set()
        for notify in conn.notifies():
            now = time.monotonic_ns()
            if notify.payload == STOP:
                break
            payload = json.loads(notify.payload)
            i = ours(run, payload["id"])
            if i is not None and payload["status"] == "complete":
                received.append((i, now))
                with seen.get_lock():
                    seen.value += 1
    write_pairs(path, received)


def poller(dsn, sync, run, path, ready, stop, seen):
    """Claims completions every 100 ms (on a fixed cadence) and notes when each of ours comes;
    the duration of each round goes to PATH.rounds."""
    received = []
    rounds = []
    with connect(dsn, sync) as conn:
        query = "SELECT id, status FROM barrier_completions(max_rows => 1000)"
        conn.execute(query).fetchall()
        ready.set()
        tick = time.monotonic_ns()
        while not stop.is_set():
            sent = time.monotonic_ns()
            rows = conn.execute(query).fetchall()
            now = time.monotonic_ns()
            rounds.append((len(rows), now - sent))
            mine = [(ours(run, barrier_id), status) for barrier_id, status in rows]
            assert all(status == "complete" for i, status in mine if i is not None), rows
            mine = [i for i, _ in mine if i is not None]
            received.extend((i, now) for i in mine)
            if mine:
                with seen.get_lock():
                    seen.value += len(mine)
            tick += POLL_INTERVAL_NS
            now = time.monotonic_ns()
            if tick > now:
                time.sleep((tick - now) / 1e9)
            else:
                tick = now  # a slow round: start the cadence again from now
    write_pairs(path, received)
    write_pairs(f"{path}.rounds", rounds)


def write_pairs(path, pairs):
    with open(path, "w") as f:
        f.writelines(f"{i}\t{t}\n" for i, t in pairs)


def read_pairs(path):
    with open(path) as f:
        return [tuple(int(v) for v in line.split("\t")) for line in f]


def complete_one(conn, barrier_id):
    """Enqueues BARRIER_ID (2 slots) and reports slot 0 in one transaction (one round trip),
    then times the completing report of slot 1: (t_start, t_end)."""
    with conn.pipeline(), conn.transaction():
        conn.execute("SELECT barrier_enqueue(%s, 2, ttl => '1 hour')", (barrier_id,))
        conn.execute("SELECT status FROM barrier_decr(%s, %s::jsonb, 0)", (barrier_id, RESULT))
    t_start = time.monotonic_ns()
    status = conn.execute(
        "SELECT status FROM barrier_decr(%s, %s::jsonb, 1)", (barrier_id, RESULT)
    ).fetchone()[0]
    t_end = time.monotonic_ns()
    assert status == "complete", f"{barrier_id}: the completing report answered {status!r}"
    return t_start, t_end


def measure(args):
    n, run = args.completions, args.run
    ctx = multiprocessing.get_context("fork")
    scratch = Path(tempfile.mkdtemp(prefix="pg_barrier-latency-"))
    listen_path, poll_path = scratch / "listen.tsv", scratch / "poll.tsv"
    listen_ready, poll_ready, stop = ctx.Event(), ctx.Event(), ctx.Event()
    listen_seen, poll_seen = ctx.Value("q", 0), ctx.Value("q", 0)
    children = [
        ctx.Process(target=listener,
                    args=(args.dsn, args.sync, run, listen_path, listen_ready, listen_seen)),
        ctx.Process(target=poller,
                    args=(args.dsn, args.sync, run, poll_path, poll_ready, stop, poll_seen)),
    ]
    for child in children:
        child.daemon = True  # ended with this process, should it fail
        child.start()
    for event in (listen_ready, poll_ready):
        if not event.wait(30):
            sys.exit("latency.py: the listener or the poller did not start")

    conn = connect(args.dsn, args.sync)
    # Warm-up (not recorded): the connection prepares its statements, the caches fill.
    for i in range(1, WARMUP + 1):
        complete_one(conn, f"warm-{run}-{i}")
    calls = []
    began = time.monotonic()
    interval = args.interval_ms * 1_000_000
    due = time.monotonic_ns()
    for i in range(1, n + 1):
        # One completion every INTERVAL (or right after the previous one, should it take
        # longer): each is timed on its own, not behind a queue of the measurer's own.
        now = time.monotonic_ns()
        if due > now:
            time.sleep((due - now) / 1e9)
        due = max(due, now) + interval
        calls.append(complete_one(conn, f"lat-{run}-{i}"))
        if i % max(1, n // 10) == 0:
            print(f"    {run}: {i}/{n} completions, {i / (time.monotonic() - began):.0f}/s",
                  file=sys.stderr, flush=True)

    # Every completion has committed: give the receivers a few seconds to see the last ones.
    deadline = time.monotonic() + 10
    while (listen_seen.value < n or poll_seen.value < n) and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    conn.execute("SELECT pg_notify(%s, %s)", (CHANNEL, STOP))
    conn.close()
    for child in children:
        child.join(30)
        if child.exitcode != 0:
            sys.exit(f"latency.py: {child.name} failed (exit code {child.exitcode})")

    received = {}
    for name, path in (("listener", listen_path), ("poller", poll_path)):
        times = {}
        twice = set()
        for i, t in read_pairs(path):
            if i in times:
                twice.add(i)
            times[i] = t
        missing = sorted(set(range(1, n + 1)) - times.keys())
        if missing or twice:
            if name == "poller":
                rounds = read_pairs(f"{poll_path}.rounds")
                print(f"    the poller's last rounds (rows, ns): {rounds[-20:]}", file=sys.stderr)
            sys.exit(f"latency.py: the {name} missed {len(missing)} completions "
                     f"(first: {missing[:5]}) and saw {len(twice)} twice ({sorted(twice)[:5]})")
        received[name] = times
        path.unlink()
    rounds = read_pairs(f"{poll_path}.rounds")
    os.unlink(f"{poll_path}.rounds")
    scratch.rmdir()
    durations = sorted(d for _, d in rounds)
    print(f"    {run}: the poller's {len(rounds)} rounds took {percentile(durations, 50) / 1e6:.2f} ms "
          f"(median), {durations[-1] / 1e6:.2f} ms at most, and returned up to "
          f"{max(n for n, _ in rounds)} rows", file=sys.stderr)

    base = calls[0][0]
    with open(args.out, "w") as f:
        f.write("i\tt_start_us\tt_end_us\tt_listen_us\tt_poll_us\n")
        for i, (t_start, t_end) in enumerate(calls, start=1):
            values = (t_start, t_end, received["listener"][i], received["poller"][i])
            f.write(f"{i}\t" + "\t".join(str((t - base) // 1000) for t in values) + "\n")
    print(f"    {run}: {n} completions in {time.monotonic() - began:.1f} s, every one seen once "
          "by the listener and by the poller", file=sys.stderr)


def percentile(ordered, p):
    """Nearest rank: the smallest value with at least p percent of the values at or below it."""
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def figures(values_us):
    ordered = sorted(values_us)
    ms = [percentile(ordered, p) / 1000 for p in (50, 99, 99.9, 100)]
    return ms + [ordered[0] / 1000]


def table(args):
    data = Path(args.dir)
    tps = {}
    background = data / "background.tsv"
    if background.exists():
        for line in background.read_text().splitlines():
            edition, sync, value = line.split("\t")
            tps[edition, sync] = float(value)
    editions = {"rust": "Rust build", "sql": "SQL edition"}
    print("| edition | synchronous_commit | receiver | completions "
          "| from commit ack: p50 | p99 | p99.9 | max | min "
          "| from call start: p50 | p99 | p99.9 | max | background calls/s |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for edition in editions:
        for sync in ("on", "off"):
            path = data / f"samples-{edition}-{sync}.tsv"
            if not path.exists():
                continue
            with open(path) as f:
                next(f)
                rows = [[int(v) for v in line.split("\t")] for line in f]
            load = f"{tps[edition, sync]:.0f}" if (edition, sync) in tps else "-"
            receivers = (("NOTIFY listener", 3), ("poller (100 ms)", 4))
            for label, column in receivers:
                ack = figures([r[column] - r[2] for r in rows])
                start = figures([r[column] - r[1] for r in rows])
                print(f"| {editions[edition]} | {sync} | {label} | {len(rows)} | "
                      + " | ".join(f"{v:.2f}" for v in ack) + " | "
                      + " | ".join(f"{v:.2f}" for v in start[:4]) + f" | {load} |")
            call = figures([r[2] - r[1] for r in rows])
            print(f"| {editions[edition]} | {sync} | the completing call's reply | {len(rows)} "
                  "| - | - | - | - | - | " + " | ".join(f"{v:.2f}" for v in call[:4])
                  + f" | {load} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    m = commands.add_parser("measure")
    m.add_argument("--dsn", required=True)
    m.add_argument("--run", required=True)
    m.add_argument("--sync", choices=("on", "off"), required=True)
    m.add_argument("--completions", type=int, default=10_000)
    m.add_argument("--interval-ms", type=float, default=10,
                   help="one completion every this many milliseconds, at most")
    m.add_argument("--out", required=True)
    t = commands.add_parser("table")
    t.add_argument("dir")
    args = parser.parse_args()
    if args.command == "measure":
        measure(args)
    else:
        table(args)


if __name__ == "__main__":
    main()
