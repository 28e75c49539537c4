//! A random workload from many sessions, logged and then checked offline against a sequential
//! model of a barrier.
//!
//! Every call that can change a barrier runs in its own transaction, followed in that
//! transaction by a read of the barrier (`barrier_status`, `barrier_results` and the statement
//! time) and of each of its ancestors. All of them hold the barrier's row lock from the call to
//! the end of the transaction, so the read shows exactly the state the call left, and the
//! read's statement time orders the calls on one barrier as the server serialized them. The
//! checker replays each barrier's calls in that order through the model and requires every
//! answer, and every state read, to be one the model allows. Where a call answered without the
//! lock (`unknown`, errors, which roll back), it is checked against every state the barrier may
//! have had while the call ran.
//!
//! The barriers have the shapes of docs/shapes.md: reports fail (a quarter of them) and are
//! retried, which re-arms their slot; some barriers have a quorum, a failure limit, an open
//! fan-in that only a seal completes, or an expiry that delivers. Four of them form a tree
//! (a root, two children, a grandchild): a child's round that ends reports into its parent's
//! slot, in the transaction of the call that ended it, which then holds the parent's row lock
//! too and reads it. A tree is replayed as one: its calls in the order of their reads, each
//! call on a child carrying its effect up the tree, and the read of every ancestor it reported
//! into checked.
//!
//! `PG_BARRIER_MODEL_SECONDS` sets how long the workload runs (default 15). `PG_BARRIER_TEST_SEED`
//! replays each session's choice of calls; the interleaving is the server's, so a failure may
//! take a few runs to recur. On a failure, the failing barrier's whole log (its tree's), in the
//! server's order, is written to `target/tmp/model-failure.log`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::Client;
use serde_json::{json, Value};

use crate::support::{
    assert_no_backend_crashed, assert_storage_whole, connect, connect_as, create_extension,
    ended_up, fresh_database, handed_up, seed, sqlstate, Rng,
};

/// A database of its own: the workload's sweeps (with a 1 s retention) act on every barrier in
/// their database, and would delete other tests' barriers.
const DATABASE: &str = "barrier_model";
const SESSIONS: usize = 8;
/// Barrier ids in play: see `shape`.
const IDS: usize = 16;
const SHORT_TTL_MS: i64 = 1_000;
const LONG_TTL_MS: i64 = 3_600_000;
/// The retention the sweeping sessions use, so that finished barriers are also deleted.
const RETENTION_MS: i64 = 1_000;

/// A barrier's shape, fixed per id: its ttl, whether it is slotted, the `expected` values its
/// enqueues draw from (so that most re-enqueues repeat the same arguments, and some differ), and
/// the arguments of docs/shapes.md every enqueue of it passes.
#[derive(Clone, Copy, Debug)]
struct Shape {
    ttl_ms: i64,
    slotted: bool,
    widths: [i32; 3],
    max_failures: Option<i32>,
    need: Option<i32>,
    /// Enqueued with `sealed => false`.
    open: bool,
    /// Enqueued with `on_expiry => 'deliver'`.
    deliver: bool,
    /// The barrier it reports into, and its slot there.
    parent: Option<(usize, i32)>,
}

/// Ids `k < 12` with `k % 3 == 0` are short-lived and wide, so that some expire; ids with
/// `k % 4 == 1` are counted without slots. Id 3 delivers on expiry, 4 and 9 have a quorum,
/// 7 and 10 are open fan-ins (10 with a quorum), 8 aborts on its second failure. Ids 12 to 15
/// are a tree, all long-lived (an expiry in the tree would be handed up by a sweep, which the
/// log does not see): 13 (at most one failure) and 14 (unslotted, a quorum of 2) report into
/// slots 0 and 1 of 12, and 15 (open) into slot 1 of 13.
fn shape(k: usize) -> Shape {
    let short = k < 12 && k.is_multiple_of(3);
    let mut shape = Shape {
        ttl_ms: if short { SHORT_TTL_MS } else { LONG_TTL_MS },
        slotted: k % 4 != 1,
        widths: if short { [40, 48, 60] } else { [2, 3, 4] },
        max_failures: None,
        need: None,
        open: false,
        deliver: false,
        parent: None,
    };
    match k {
        3 => shape.deliver = true,
        4 => shape.need = Some(2),
        7 => shape.open = true,
        8 => shape.max_failures = Some(1),
        9 => shape.need = Some(30),
        10 => {
            shape.open = true;
            shape.need = Some(2);
        }
        13 => {
            shape.slotted = true;
            shape.max_failures = Some(1);
            shape.parent = Some((12, 0));
        }
        14 => {
            shape.slotted = false;
            shape.need = Some(2);
            shape.parent = Some((12, 1));
        }
        15 => {
            shape.open = true;
            shape.parent = Some((13, 1));
        }
        _ => {}
    }
    shape
}

/// The barriers `k` reports into, nearest first, with its slot in each.
fn ancestors(k: usize) -> Vec<(usize, i32)> {
    let mut chain = Vec::new();
    let mut at = k;
    while let Some((parent, slot)) = shape(at).parent {
        chain.push((parent, slot));
        at = parent;
    }
    chain
}

/// The root of `k`'s tree (`k` itself for a barrier that has no parent).
fn root(k: usize) -> usize {
    ancestors(k).last().map_or(k, |&(root, _)| root)
}

/// Whether some barrier reports into `k`.
fn has_children(k: usize) -> bool {
    (0..IDS).any(|child| shape(child).parent.is_some_and(|(parent, _)| parent == k))
}

fn id_of(run: u64, k: usize) -> String {
    format!("model:{run}:{k}")
}

#[derive(Clone, Debug, PartialEq)]
enum Op {
    Enqueue {
        expected: i32,
        replace: bool,
    },
    Decr {
        slot: Option<i32>,
        result: String,
        failed: bool,
    },
    Seal,
    Abort,
    Add {
        extra: i32,
    },
    Take,
    /// `barrier_completions(NULL, 1)`: a take of whichever completion it claims.
    Claim,
}

/// The columns of a completion: `results`, `failed_slots`, `errors`, `missing_slots`. An answer
/// that hands out no completion has them all NULL.
#[derive(Clone, Debug, Default, PartialEq)]
struct Done {
    results: Option<Value>,
    failed_slots: Option<Vec<i32>>,
    errors: Option<Value>,
    missing_slots: Option<Vec<i32>>,
}

/// What a call answered.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// `barrier_enqueue`, `barrier_abort`: the status text.
    Text(String),
    /// `barrier_decr`, `barrier_seal`: status, remaining, and the completion if it handed one
    /// out (None when every column of it is NULL).
    Decr(String, Option<i32>, Option<Done>),
    /// `barrier_add`: the new `expected`.
    Expected(i32),
    /// `barrier_take`, `barrier_completions`: the status column and the completion, if a row
    /// came back.
    Taken(Option<(String, Done)>),
    Error(String),
}

/// A barrier as a transaction read it right after a call.
#[derive(Clone, Debug, PartialEq)]
struct Seen {
    round: i64,
    created_at: i64,
    status: String,
    expected: i32,
    remaining: i32,
    expires_at: i64,
    finished_at: Option<i64>,
    results: Option<Value>,
    failed: i32,
    sealed: bool,
    need: Option<i32>,
}

#[derive(Clone, Debug)]
struct Call {
    session: usize,
    seq: usize,
    k: usize,
    op: Op,
    /// Microseconds since the epoch: before sending, and the read's statement time (or, for a
    /// failed call, when the error came back).
    sent: i64,
    at: i64,
    /// When the call's transaction ended, as the client saw it.
    done: i64,
    outcome: Outcome,
    seen: Option<Seen>,
    /// The reads of the barrier's ancestors, nearest first, after the call (None: no such
    /// barrier). Empty for a failed call.
    above: Vec<Option<Seen>>,
    committed: bool,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as i64
}

const READ: &str = "
    SELECT (extract(epoch FROM statement_timestamp()) * 1e6)::int8,
           s.round, (extract(epoch FROM s.created_at) * 1e6)::int8, s.status, s.expected,
           s.remaining, (extract(epoch FROM s.expires_at) * 1e6)::int8,
           (extract(epoch FROM s.finished_at) * 1e6)::int8, barrier_results($1)::text,
           s.failed, s.sealed, s.need
      FROM (SELECT) one LEFT JOIN LATERAL barrier_status($1) s ON true";

const DECR: &str = "SELECT status, remaining, results::text, failed_slots, errors::text,
                           missing_slots
                      FROM barrier_decr($1, to_jsonb($2::text), $3, $4)";
const SEAL: &str = "SELECT status, remaining, results::text, failed_slots, errors::text,
                           missing_slots
                      FROM barrier_seal($1)";
const TAKE: &str = "SELECT status, results::text, failed_slots, errors::text, missing_slots
                      FROM barrier_take($1)";
const CLAIM: &str = "SELECT id, status, results::text, failed_slots, errors::text, missing_slots
                       FROM barrier_completions(NULL, 1)";

/// The completion columns of `row`, from column `from` on.
fn done_of(row: &postgres::Row, from: usize) -> Done {
    Done {
        results: row.get::<_, Option<String>>(from).map(|text| parse(&text)),
        failed_slots: row.get(from + 1),
        errors: row
            .get::<_, Option<String>>(from + 2)
            .map(|text| parse(&text)),
        missing_slots: row.get(from + 3),
    }
}

/// A `barrier_decr` or `barrier_seal` answer.
fn answer_of(row: &postgres::Row) -> Outcome {
    let done = done_of(row, 2);
    let done = (done != Done::default()).then_some(done);
    Outcome::Decr(row.get(0), row.get(1), done)
}

/// Runs one call and the reads after it in one transaction; rolls back when `roll_back`.
fn perform(client: &mut Client, run: u64, k: usize, op: &Op, roll_back: bool) -> Performed {
    let id = id_of(run, k);
    let shape = shape(k);
    let mut tx = client.transaction().expect("BEGIN");
    let outcome = match op {
        Op::Claim => unreachable!("claims name no barrier: see `claim`"),
        Op::Enqueue { expected, replace } => {
            let ttl = format!("{} milliseconds", shape.ttl_ms);
            let sealed = !shape.open;
            let on_expiry = if shape.deliver { "deliver" } else { "discard" };
            let parent = shape.parent.map(|(parent, _)| id_of(run, parent));
            let parent_slot = shape.parent.map(|(_, slot)| slot);
            tx.query_one(
                "SELECT barrier_enqueue($1, $2, '{\"next\": \"publish\"}', $3::text::interval,
                                        replace => $4, max_failures => $5, need => $6,
                                        sealed => $7, on_expiry => $8, parent => $9,
                                        parent_slot => $10)",
                &[
                    &id,
                    expected,
                    &ttl,
                    replace,
                    &shape.max_failures,
                    &shape.need,
                    &sealed,
                    &on_expiry,
                    &parent,
                    &parent_slot,
                ],
            )
            .map(|row| Outcome::Text(row.get(0)))
        }
        Op::Decr {
            slot,
            result,
            failed,
        } => tx
            .query_one(DECR, &[&id, result, slot, failed])
            .map(|row| answer_of(&row)),
        Op::Seal => tx.query_one(SEAL, &[&id]).map(|row| answer_of(&row)),
        Op::Abort => tx
            .query_one("SELECT barrier_abort($1, 'model')", &[&id])
            .map(|row| Outcome::Text(row.get(0))),
        Op::Add { extra } => tx
            .query_one("SELECT barrier_add($1, $2)", &[&id, extra])
            .map(|row| Outcome::Expected(row.get(0))),
        Op::Take => tx
            .query_opt(TAKE, &[&id])
            .map(|row| Outcome::Taken(row.map(|row| (row.get(0), done_of(&row, 1))))),
    };
    finish(tx, run, k, outcome, roll_back)
}

/// Claims one completion with `barrier_completions`, then reads the barrier it names and ends
/// the transaction as `perform` does; `None` if there was none to claim.
fn claim(client: &mut Client, run: u64, roll_back: bool) -> Option<(usize, Performed)> {
    let mut tx = client.transaction().expect("BEGIN");
    let row = tx.query_opt(CLAIM, &[]).expect("barrier_completions");
    let row = row?;
    let id: String = row.get(0);
    let k = id
        .strip_prefix(&format!("model:{run}:"))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("claimed a barrier of another run: {id}"));
    let outcome = Outcome::Taken(Some((row.get(1), done_of(&row, 2))));
    Some((k, finish(tx, run, k, Ok(outcome), roll_back)))
}

/// Reads barrier `id` in `tx`: the read's statement time and what it shows.
fn read(tx: &mut postgres::Transaction<'_>, id: &str) -> (i64, Option<Seen>) {
    let row = tx.query_one(READ, &[&id]).expect("read after the call");
    let seen = row.get::<_, Option<i64>>(1).map(|round| Seen {
        round,
        created_at: row.get(2),
        status: row.get(3),
        expected: row.get(4),
        remaining: row.get(5),
        expires_at: row.get(6),
        finished_at: row.get(7),
        results: row.get::<_, Option<String>>(8).map(|text| parse(&text)),
        failed: row.get(9),
        sealed: row.get(10),
        need: row.get(11),
    });
    (row.get(0), seen)
}

/// The reads after a call (the barrier's, then each ancestor's), in its transaction, and the
/// transaction's end.
fn finish(
    mut tx: postgres::Transaction<'_>,
    run: u64,
    k: usize,
    outcome: Result<Outcome, postgres::Error>,
    roll_back: bool,
) -> Performed {
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(error) => {
            let at = now_us();
            drop(tx);
            return Performed {
                outcome: Outcome::Error(sqlstate(&error)),
                at,
                seen: None,
                above: Vec::new(),
                committed: false,
            };
        }
    };
    let (at, seen) = read(&mut tx, &id_of(run, k));
    let above = ancestors(k)
        .iter()
        .map(|&(parent, _)| read(&mut tx, &id_of(run, parent)).1)
        .collect();
    let committed = if roll_back {
        tx.rollback().expect("ROLLBACK");
        false
    } else {
        tx.commit().expect("COMMIT");
        true
    };
    Performed {
        outcome,
        at,
        seen,
        above,
        committed,
    }
}

struct Performed {
    outcome: Outcome,
    at: i64,
    seen: Option<Seen>,
    above: Vec<Option<Seen>>,
    committed: bool,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("jsonb text is JSON")
}

/// Slotted reports delivered so far, shared by all sessions so that any of them can deliver one
/// again (a redelivered or retried task): barrier, slot, result, whether it failed.
type Deliveries = Mutex<Vec<(usize, i32, String, bool)>>;

/// One session's share of the workload, until `deadline`.
fn session(
    run: u64,
    session: usize,
    base_seed: u64,
    deadline: Instant,
    deliveries: &Deliveries,
) -> (Vec<Call>, usize) {
    let mut rng = Rng::new(base_seed ^ ((session as u64 + 1) << 32));
    let mut client = connect_as(&pgrx_tests::get_pg_user(), DATABASE);
    client
        .batch_execute(&format!("SET pg_barrier.retention = '{RETENTION_MS}ms'"))
        .unwrap();
    let mut calls = Vec::new();
    let mut sweeps = 0;
    let mut seq = 0;
    while Instant::now() < deadline {
        seq += 1;
        let roll = rng.below(100);
        if roll < 2 {
            client
                .query_one("SELECT * FROM barrier_sweep(100)", &[])
                .expect("sweep");
            sweeps += 1;
            continue;
        }
        let (k, op) = if roll < 12 {
            let known = deliveries.lock().unwrap();
            if known.is_empty() {
                continue;
            }
            let (k, slot, result, failed) = known[rng.below(known.len())].clone();
            // The same delivery again, or a failed task's retry, succeeding.
            let failed = failed && rng.below(2) == 0;
            (
                k,
                Op::Decr {
                    slot: Some(slot),
                    result,
                    failed,
                },
            )
        } else {
            let k = rng.below(IDS);
            let shape = shape(k);
            let result = format!("s{session}.{seq}");
            let op = match roll {
                12..=63 => Op::Decr {
                    slot: shape
                        .slotted
                        .then(|| rng.below(shape.widths[2] as usize + 1) as i32),
                    result,
                    failed: rng.below(4) == 0,
                },
                64..=77 => Op::Enqueue {
                    expected: shape.widths[rng.below(3)],
                    replace: shape.ttl_ms == LONG_TTL_MS && rng.below(4) == 0,
                },
                78..=79 => Op::Abort,
                80..=86 => Op::Add {
                    extra: 1 + rng.below(2) as i32,
                },
                87..=90 => Op::Take,
                91..=94 => Op::Seal,
                _ => Op::Claim,
            };
            (k, op)
        };
        let roll_back = rng.below(10) == 0;
        let sent = now_us();
        let (k, performed) = if op == Op::Claim {
            match claim(&mut client, run, roll_back) {
                Some(claimed) => claimed,
                None => continue,
            }
        } else {
            (k, perform(&mut client, run, k, &op, roll_back))
        };
        if let (
            Op::Decr {
                slot: Some(slot),
                result,
                failed,
            },
            Outcome::Decr(..),
        ) = (&op, &performed.outcome)
        {
            deliveries
                .lock()
                .unwrap()
                .push((k, *slot, result.clone(), *failed));
        }
        calls.push(Call {
            session,
            seq,
            k,
            op,
            sent,
            at: performed.at,
            done: now_us(),
            outcome: performed.outcome,
            seen: performed.seen,
            above: performed.above,
            committed: performed.committed,
        });
    }
    (calls, sweeps)
}

#[test]
fn a_random_workload_matches_the_sequential_model() {
    let base_seed = seed();
    fresh_database(&mut connect(), DATABASE)
        .batch_execute(&create_extension())
        .unwrap();
    let seconds: u64 = std::env::var("PG_BARRIER_MODEL_SECONDS")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(15);
    // Ids unique to this run, so a replay against a used server starts clean.
    let run = (now_us() as u64) ^ base_seed;
    let deliveries = Deliveries::default();
    let start = Barrier::new(SESSIONS);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let (mut calls, sweeps) = thread::scope(|scope| {
        let sessions: Vec<_> = (0..SESSIONS)
            .map(|n| {
                let (start, deliveries) = (&start, &deliveries);
                scope.spawn(move || {
                    start.wait();
                    session(run, n, base_seed, deadline, deliveries)
                })
            })
            .collect();
        sessions
            .into_iter()
            .fold((Vec::new(), 0), |(mut all, sweeps), s| {
                let (calls, swept) = s.join().expect("session panicked");
                all.extend(calls);
                (all, sweeps + swept)
            })
    });
    calls.sort_by_key(|call| (call.at, call.session, call.seq));

    let mut admin = connect_as(&pgrx_tests::get_pg_user(), DATABASE);
    let finals: Vec<Final> = (0..IDS)
        .map(|k| {
            let row = admin
                .query_one(READ, &[&id_of(run, k)])
                .expect("final read");
            let at = row.get(0);
            let barrier = row
                .get::<_, Option<i64>>(1)
                .map(|round| (round, row.get(2), row.get(5)));
            (at, barrier)
        })
        .collect();
    let summary = verify(run, &calls, &finals).unwrap_or_else(|(k, problem)| {
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-failure.log");
        let lines: Vec<String> = calls
            .iter()
            .filter(|call| root(call.k) == root(k))
            .map(|call| format!("{call:?}"))
            .collect();
        let _ = std::fs::write(&log, lines.join("\n"));
        panic!(
            "PG_BARRIER_TEST_SEED={base_seed}: {problem}\n(barrier {k}'s calls: {})",
            log.display()
        )
    });
    assert_storage_whole(&mut admin);
    assert_no_backend_crashed();
    eprintln!(
        "model: {} calls, {sweeps} sweeps in {seconds} s; {summary}",
        calls.len()
    );
    for (answer, least) in [
        ("complete", 1),
        ("complete_with_failures", 1),
        ("duplicate", 1),
        ("expired", 1),
        ("aborted", 1),
        ("claimed", 1),
    ] {
        let seen = summary.by_answer.get(answer).copied().unwrap_or(0);
        assert!(
            seen >= least,
            "the workload answered {answer} only {seen} times"
        );
    }
    assert!(summary.rolled_back > 0 && summary.takes > 0);
    assert!(
        summary.rearmed > 0 && summary.handed_up > 0,
        "the workload re-armed {} slots and reported {} rounds into a parent",
        summary.rearmed,
        summary.handed_up
    );

    // The checker is able to fail: logs with one lie each are rejected.
    for (lie, corrupt) in LIES {
        let mut forged = calls.clone();
        assert!(corrupt(&mut forged), "no call to forge for: {lie}");
        assert!(
            verify(run, &forged, &finals).is_err(),
            "the checker accepted a log with {lie}"
        );
    }
}

/// The final read of a barrier: when, and (round, created_at, remaining) if it exists.
type Final = (i64, Option<(i64, i64, i32)>);

/// Checks every tree's calls against the model and the final reads; on a failure, the barrier
/// and what is wrong.
fn verify(run: u64, calls: &[Call], finals: &[Final]) -> Result<Summary, (usize, String)> {
    let mut summary = Summary::default();
    for tree in (0..IDS).filter(|&k| root(k) == k) {
        let members: Vec<usize> = (0..IDS).filter(|&k| root(k) == tree).collect();
        let mine: Vec<&Call> = calls
            .iter()
            .filter(|call| members.contains(&call.k))
            .collect();
        let mut replay = Replay::new(run, &members);
        let fail = |problem: Problem, call: Option<&Call>, k: usize, replay: &Replay| {
            let text = format!(
                "barrier {k}: {problem}\n  call: {call:?}\n  model before: {:?}",
                replay.states
            );
            (k, text)
        };
        for call in &mine {
            replay
                .apply(call)
                .map_err(|problem| fail(problem, Some(call), call.k, &replay))?;
        }
        for call in mine.iter().filter(|call| unordered(call)) {
            replay
                .check_unordered(call)
                .map_err(|problem| fail(problem, Some(call), call.k, &replay))?;
        }
        for &k in &members {
            let (final_at, final_row) = finals[k];
            replay
                .check_final(k, final_at, final_row)
                .map_err(|problem| fail(problem, None, k, &replay))?;
            let own: Vec<&Call> = mine.iter().copied().filter(|call| call.k == k).collect();
            check_rounds(k, &own).map_err(|problem| fail(problem, None, k, &replay))?;
        }
        summary.add(&mine, &replay);
    }
    Ok(summary)
}

/// A forgery of a log: returns false if the log has no call to forge.
type Forgery = fn(&mut [Call]) -> bool;

/// Lies a broken implementation could tell, each planted in a copy of a real log.
const LIES: [(&str, Forgery); 5] = [
    (
        "a counted report answered as a duplicate (a lost count)",
        |calls| {
            forge(calls, |call| match &mut call.outcome {
                Outcome::Decr(status, _, _)
                    if status == "pending"
                        && call.committed
                        && matches!(call.op, Op::Decr { .. }) =>
                {
                    *status = "duplicate".into();
                    true
                }
                _ => false,
            })
        },
    ),
    ("a completion missing one result", |calls| {
        forge(calls, |call| match &mut call.outcome {
            Outcome::Decr(status, _, Some(done)) if status == "complete" => {
                match &mut done.results {
                    Some(Value::Array(results)) if !results.is_empty() => {
                        results.pop();
                        true
                    }
                    _ => false,
                }
            }
            _ => false,
        })
    }),
    ("a second completer in a round", |calls| {
        let Some((k, done)) = calls.iter().find_map(|call| match &call.outcome {
            Outcome::Decr(status, _, Some(done)) if status == "complete" && call.committed => {
                Some((call.k, done.clone()))
            }
            _ => None,
        }) else {
            return false;
        };
        forge(calls, |call| match &mut call.outcome {
            Outcome::Decr(status, _, answer) if call.k == k && status == "already_complete" => {
                *status = "complete".into();
                *answer = Some(done.clone());
                true
            }
            _ => false,
        })
    }),
    ("a rolled-back report counted", |calls| {
        forge(calls, |call| match &call.outcome {
            Outcome::Decr(status, ..)
                if status == "pending" && !call.committed && matches!(call.op, Op::Decr { .. }) =>
            {
                call.committed = true;
                true
            }
            _ => false,
        })
    }),
    ("a failure left out of a completion", |calls| {
        forge(calls, |call| match &mut call.outcome {
            Outcome::Decr(status, _, Some(done)) if status == "complete_with_failures" => {
                done.failed_slots = Some(Vec::new());
                true
            }
            _ => false,
        })
    }),
];

/// Applies `lie` to the first call it accepts.
fn forge(calls: &mut [Call], lie: impl FnMut(&mut Call) -> bool) -> bool {
    calls.iter_mut().any(lie)
}

/// The model's view of one barrier.
#[derive(Clone, Debug, PartialEq)]
enum Stored {
    Pending,
    Complete,
    Aborted,
    Expired,
}

#[derive(Clone, Debug, PartialEq)]
struct State {
    round: i64,
    created_at: i64,
    stored: Stored,
    expected: i32,
    remaining: i32,
    expires_at: i64,
    /// When it finished, if the model knows (a sweep's expiry is seen only later).
    finished_at: Option<i64>,
    /// Recorded reports by position (slot, or arrival number): the result, and whether the
    /// report failed.
    results: BTreeMap<i32, (Value, bool)>,
    /// Failed reports held (`barrier_status.failed`).
    failed: i32,
    sealed: bool,
    taken: bool,
    /// What a take hands out: the status column and the completion.
    completion: Option<(String, Done)>,
}

impl State {
    /// The status `barrier_status` shows at time `at`.
    fn status_at(&self, at: i64) -> &'static str {
        match self.stored {
            Stored::Pending if self.expires_at <= at => "expired",
            Stored::Pending => "pending",
            Stored::Complete if self.failed > 0 => "complete_with_failures",
            Stored::Complete => "complete",
            Stored::Aborted => "aborted",
            Stored::Expired => "expired",
        }
    }

    /// The results so far, as `barrier_results` shows a pending barrier: the recorded
    /// positions in order, a failure as null.
    fn so_far(&self) -> Value {
        Value::Array(
            self.results
                .values()
                .map(|(value, failed)| if *failed { Value::Null } else { value.clone() })
                .collect(),
        )
    }

    /// What `barrier_results` shows at time `at`.
    fn results_view(&self, at: i64) -> Option<Value> {
        match self.stored {
            Stored::Pending if self.expires_at > at => Some(self.so_far()),
            Stored::Complete | Stored::Expired if !self.taken => self
                .completion
                .as_ref()
                .and_then(|(_, done)| done.results.clone()),
            _ => None,
        }
    }

    /// The completion of the round as it stands: one element per position, null where the
    /// report failed or never came.
    fn done(&self) -> Done {
        let (mut results, mut failed_slots, mut errors, mut missing) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for position in 0..self.expected {
            match self.results.get(&position) {
                Some((value, false)) => results.push(value.clone()),
                Some((value, true)) => {
                    results.push(Value::Null);
                    failed_slots.push(position);
                    errors.push(value.clone());
                }
                None => {
                    results.push(Value::Null);
                    missing.push(position);
                }
            }
        }
        Done {
            results: Some(Value::Array(results)),
            failed_slots: Some(failed_slots),
            errors: Some(Value::Array(errors)),
            missing_slots: Some(missing),
        }
    }

    fn successes(&self) -> i32 {
        self.expected - self.remaining - self.failed
    }

    /// Whether a sweep may have deleted it by time `at`.
    fn deletable_at(&self, at: i64) -> bool {
        let retention = RETENTION_MS * 1000;
        match self.stored {
            Stored::Pending => false,
            Stored::Complete => self.finished_at.is_some_and(|f| f + retention <= at),
            // A sweep's expiry is seen late: it finished no earlier than its expiry.
            Stored::Expired => self.finished_at.unwrap_or(self.expires_at) + retention <= at,
            Stored::Aborted => {
                self.finished_at.is_some_and(|f| f + retention <= at) && self.expires_at <= at
            }
        }
    }

    /// The stored expiry, as a call that noticed it (or a sweep) leaves it: the results kept
    /// and handed out if the barrier delivers, freed otherwise.
    fn expired(&self, shape: Shape) -> State {
        if shape.deliver {
            State {
                stored: Stored::Expired,
                completion: Some(("expired".into(), self.done())),
                ..self.clone()
            }
        } else {
            State {
                stored: Stored::Expired,
                results: BTreeMap::new(),
                ..self.clone()
            }
        }
    }

    /// Aborted: the results freed.
    fn aborted(&self) -> State {
        State {
            stored: Stored::Aborted,
            results: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// Complete, with its completion and the completion's status.
    fn completed(&self) -> (State, String, Done) {
        let status = if self.failed > 0 {
            "complete_with_failures"
        } else {
            "complete"
        };
        let done = self.done();
        let state = State {
            stored: Stored::Complete,
            completion: Some((status.into(), done.clone())),
            ..self.clone()
        };
        (state, status.into(), done)
    }

    /// Handed out (to a consumer or a parent): not takeable again, its results freed.
    fn handed_over(&self) -> State {
        State {
            taken: true,
            results: BTreeMap::new(),
            ..self.clone()
        }
    }

    /// Whether a take finds it takeable: a completion, or an expiry that delivers, not taken.
    fn takeable(&self, shape: Shape) -> bool {
        !self.taken
            && match self.stored {
                Stored::Complete => true,
                Stored::Expired => shape.deliver,
                Stored::Pending | Stored::Aborted => false,
            }
    }
}

/// What the counters decide after a report or a seal (the contract's step 3).
enum Decision {
    Wait,
    Complete,
    Abort(String),
}

fn decide(state: &State, shape: Shape, failure: Option<i32>) -> Decision {
    if let (Some(position), Some(limit)) = (failure, shape.max_failures) {
        if state.failed > limit {
            return Decision::Abort(format!(
                "slot {position} failed: more than {limit} failures"
            ));
        }
    }
    if !state.sealed {
        return Decision::Wait;
    }
    match shape.need {
        Some(need) if state.successes() + state.remaining < need => {
            Decision::Abort(format!("quorum of {need} can no longer be reached"))
        }
        Some(need) if state.successes() >= need => Decision::Complete,
        None if state.remaining == 0 => Decision::Complete,
        _ => Decision::Wait,
    }
}

/// A report into a pending barrier (the contract's steps 1 and 2): the state it leaves and the
/// position of a failure it recorded; None for a duplicate, which changes nothing.
fn record(
    state: &State,
    slot: Option<i32>,
    result: Value,
    failed: bool,
) -> Option<(State, Option<i32>)> {
    let position = slot.unwrap_or(state.expected - state.remaining);
    let mut after = state.clone();
    match state.results.get(&position) {
        // A failed slot's retry succeeding: the success replaces the failure, counted once.
        Some((_, true)) if slot.is_some() && !failed => {
            after.results.insert(position, (result, false));
            after.failed -= 1;
            Some((after, None))
        }
        Some(_) => None,
        None if slot.is_none() && state.remaining == 0 => None,
        None => {
            after.results.insert(position, (result, failed));
            after.remaining -= 1;
            after.failed += i32::from(failed);
            Some((after, failed.then_some(position)))
        }
    }
}

/// What a round that ended reports into the parent's slot.
struct HandUp {
    value: Value,
    success: bool,
    /// Whether the child's round is takeable (a completion), so that a parent that accepts it
    /// takes it.
    takeable: bool,
}

/// The end of a round, in the answer's terms: its status, and the completion it hands out.
struct Concluded {
    state: State,
    status: String,
    done: Option<Done>,
    up: Option<HandUp>,
}

/// Carries out `decide`'s decision for barrier `id` (after a report or a seal).
fn conclude(id: &str, after: State, shape: Shape, failure: Option<i32>) -> Concluded {
    match decide(&after, shape, failure) {
        Decision::Wait => Concluded {
            state: after,
            status: "pending".into(),
            done: None,
            up: None,
        },
        Decision::Complete => {
            let (state, status, done) = after.completed();
            let value = handed_up(
                id,
                state.round,
                &status,
                done.results.clone().unwrap(),
                done.failed_slots.as_deref().unwrap(),
                done.errors.clone().unwrap(),
                done.missing_slots.as_deref().unwrap(),
            );
            let up = HandUp {
                value,
                success: status == "complete",
                takeable: true,
            };
            Concluded {
                state,
                status,
                done: Some(done),
                up: Some(up),
            }
        }
        Decision::Abort(reason) => {
            let up = HandUp {
                value: ended_up(id, after.round, "aborted", Some(&reason)),
                success: false,
                takeable: false,
            };
            Concluded {
                state: after.aborted(),
                status: "aborted".into(),
                done: None,
                up: Some(up),
            }
        }
    }
}

/// A barrier's states as one call leaves them: before it (as the call found it) and after.
type Change = (Option<State>, Option<State>);

struct Replay {
    run: u64,
    states: BTreeMap<usize, Option<State>>,
    /// Every state each barrier had: (the read time of the call that left it, when that call
    /// ended, the state). A state is visible to others from its call's commit at the latest
    /// until the next call's commit.
    history: BTreeMap<usize, Vec<(i64, i64, Option<State>)>>,
    counted: usize,
    completions: usize,
    takes: usize,
    rearmed: usize,
    handed_up: usize,
}

impl Replay {
    fn new(run: u64, members: &[usize]) -> Self {
        Replay {
            run,
            states: members.iter().map(|&k| (k, None)).collect(),
            history: members
                .iter()
                .map(|&k| (k, vec![(i64::MIN, i64::MIN, None)]))
                .collect(),
            counted: 0,
            completions: 0,
            takes: 0,
            rearmed: 0,
            handed_up: 0,
        }
    }

    fn id(&self, k: usize) -> String {
        id_of(self.run, k)
    }

    /// Replays `call`, which must come after every call already applied in the server's order.
    fn apply(&mut self, call: &Call) -> Result<(), Problem> {
        if unordered(call) {
            // Checked once every state is known.
            return Ok(());
        }
        let k = call.k;
        let seen = call.seen.as_ref().expect("ordered calls have a read");
        let mut accepted = None;
        let mut tried = Vec::new();
        for (before, expired_now) in self.candidates(k, call) {
            let attempt =
                self.step(k, before.as_ref(), expired_now, call)
                    .and_then(|(after, up)| {
                        let mut changes = BTreeMap::new();
                        let taken = self.climb(k, up, call, 0, &mut changes)?;
                        let after = if taken { after.handed_over() } else { after };
                        let after = self.shown(k, after, call, seen)?;
                        Ok((after, changes))
                    });
            match attempt {
                Ok((after, changes)) => {
                    accepted = Some((before, after, changes));
                    break;
                }
                Err(problem) => tried.push(problem),
            }
        }
        let Some((before, after, changes)) = accepted else {
            return Err(Problem(format!("no state allows it: {}", join(&tried))));
        };
        if call.committed {
            if let (Op::Decr { .. }, Outcome::Decr(status, ..)) = (&call.op, &call.outcome) {
                self.counted += usize::from(status == "pending" || status.starts_with("complete"));
                self.completions += usize::from(status.starts_with("complete"));
            }
            if let (Op::Decr { failed: false, .. }, Some(found)) = (&call.op, &before) {
                // A success that took a failure's place.
                self.rearmed += usize::from(
                    found.stored == Stored::Pending
                        && after.stored == Stored::Pending
                        && after.failed < found.failed,
                );
            }
            self.takes += usize::from(matches!(call.outcome, Outcome::Taken(Some(_))));
            // Each ancestor the call changed took a report.
            self.handed_up += changes
                .values()
                .filter(|(found, changed)| found != changed)
                .count();
            self.states.insert(k, Some(after));
            for (&p, (_, changed)) in &changes {
                self.states.insert(p, changed.clone());
            }
        } else {
            // What a sweep or time did stays; what the call did is undone.
            self.states.insert(k, before);
            for (&p, (found, _)) in &changes {
                self.states.insert(p, found.clone());
            }
        }
        self.record(k, call);
        for &p in changes.keys() {
            self.record(p, call);
        }
        Ok(())
    }

    /// Notes barrier `k`'s state as `call` left it in its history.
    fn record(&mut self, k: usize, call: &Call) {
        let state = self.states[&k].clone();
        self.history
            .get_mut(&k)
            .expect("a member of the tree")
            .push((call.at, call.done, state));
    }

    /// The round of `k` that `call` ended reports into `k`'s parent, which applies its own
    /// policy and may end in turn, reporting further up. Returns whether the parent accepted a
    /// takeable round (and so took it); notes each ancestor's states in `changes`, and checks
    /// the read of each ancestor that the call changed.
    fn climb(
        &self,
        k: usize,
        up: Option<HandUp>,
        call: &Call,
        level: usize,
        changes: &mut BTreeMap<usize, Change>,
    ) -> Result<bool, Problem> {
        let (Some(up), Some((parent, slot))) = (up, shape(k).parent) else {
            return Ok(false);
        };
        let mut tried = Vec::new();
        for (found, _) in self.candidates(parent, call) {
            // Not accepted: absent, finished, or its slot reported.
            let recorded = found
                .as_ref()
                .filter(|state| state.stored == Stored::Pending && state.expires_at > call.at)
                .and_then(|state| record(state, Some(slot), up.value.clone(), !up.success));
            let Some((after, failure)) = recorded else {
                changes.insert(parent, (found.clone(), found));
                return Ok(false);
            };
            let concluded = conclude(&self.id(parent), after, shape(parent), failure);
            let mut above = changes.clone();
            let attempt = self
                .climb(parent, concluded.up, call, level + 1, &mut above)
                .and_then(|taken| {
                    let after = if taken {
                        concluded.state.handed_over()
                    } else {
                        concluded.state
                    };
                    let Some(Some(seen)) = call.above.get(level) else {
                        return Err(Problem(format!(
                            "barrier {parent} took a report from {k} but its read shows no \
                             barrier"
                        )));
                    };
                    self.shown(parent, after, call, seen)
                });
            match attempt {
                Ok(after) => {
                    *changes = above;
                    changes.insert(parent, (found, Some(after)));
                    return Ok(up.takeable);
                }
                Err(problem) => tried.push(problem),
            }
        }
        Err(Problem(format!(
            "no state of parent {parent} allows it: {}",
            join(&tried)
        )))
    }

    /// The states barrier `k` may have been in when `call` took its lock, each with whether
    /// the call's own clock found it expired: as last seen, expired by a sweep, or deleted by a
    /// sweep. The call's clock lies between `call.sent` and `call.at`.
    fn candidates(&self, k: usize, call: &Call) -> Vec<(Option<State>, bool)> {
        let Some(state) = &self.states[&k] else {
            return vec![(None, false)];
        };
        let mut candidates = Vec::new();
        if state.stored == Stored::Pending && state.expires_at <= call.at {
            candidates.push((Some(state.clone()), true));
            if state.expires_at > call.sent {
                candidates.push((Some(state.clone()), false));
            }
            let swept = state.expired(shape(k));
            if swept.deletable_at(call.at) {
                candidates.push((None, false));
            }
            candidates.push((Some(swept), false));
        } else {
            candidates.push((Some(state.clone()), false));
            if state.deletable_at(call.at) {
                candidates.push((None, false));
            }
        }
        candidates
    }

    /// The sequential model: the state `call` leaves barrier `k` in and what its round reports
    /// into a parent, if its answer is what the model allows from `before` (`expired_now`: the
    /// call's clock found it past its expiry).
    fn step(
        &self,
        k: usize,
        before: Option<&State>,
        expired_now: bool,
        call: &Call,
    ) -> Result<(State, Option<HandUp>), Problem> {
        let answer = &call.outcome;
        let shape = shape(k);
        let seen = call.seen.as_ref().expect("ordered calls have a read");
        let Some(state) = before else {
            return match call.op {
                Op::Enqueue { expected, .. } => {
                    expect(answer, &Outcome::Text("pending".into()))?;
                    Ok((fresh_round(shape, 1, expected, seen), None))
                }
                _ => Err(Problem("a locked answer for an absent barrier".into())),
            };
        };
        // What the call's clock made of it: a pending barrier past its expiry is expired, and a
        // call that notices it stores that.
        let effective = if expired_now {
            Stored::Expired
        } else {
            state.stored.clone()
        };
        let noticed = if expired_now {
            state.expired(shape)
        } else {
            state.clone()
        };
        let same = |status: &str, remaining: i32| -> Result<(State, Option<HandUp>), Problem> {
            expect(answer, &Outcome::Decr(status.into(), Some(remaining), None))?;
            Ok((noticed.clone(), None))
        };
        match &call.op {
            Op::Enqueue { expected, replace } => {
                expect(answer, &Outcome::Text("pending".into()))?;
                match effective {
                    Stored::Pending if !replace => {
                        if state.expected != *expected {
                            return Err(Problem(format!(
                                "other arguments (expected {} vs {expected}) accepted",
                                state.expected
                            )));
                        }
                        Ok((state.clone(), None))
                    }
                    _ => Ok((fresh_round(shape, state.round + 1, *expected, seen), None)),
                }
            }
            Op::Decr {
                slot,
                result,
                failed,
            } => match effective {
                Stored::Complete => {
                    // A late report: not stored. (Its `remaining` is not part of the contract
                    // after a quorum: the stored count or 0.)
                    let repeat = slot.is_some_and(|slot| state.results.contains_key(&slot));
                    let status = if repeat {
                        "duplicate"
                    } else {
                        "already_complete"
                    };
                    let late = |remaining| Outcome::Decr(status.into(), Some(remaining), None);
                    if *answer != late(0) {
                        expect(answer, &late(state.remaining))?;
                    }
                    Ok((noticed, None))
                }
                Stored::Aborted => same("aborted", state.remaining),
                Stored::Expired => same("expired", state.remaining),
                Stored::Pending => match record(state, *slot, json!(result), *failed) {
                    None => same("duplicate", state.remaining),
                    Some((after, failure)) => {
                        let concluded = conclude(&self.id(k), after, shape, failure);
                        let remaining = concluded.state.remaining;
                        expect(
                            answer,
                            &Outcome::Decr(concluded.status, Some(remaining), concluded.done),
                        )?;
                        Ok((concluded.state, concluded.up))
                    }
                },
            },
            Op::Seal => {
                if effective != Stored::Pending {
                    return Err(Problem("barrier_seal answered a finished barrier".into()));
                }
                let after = State {
                    sealed: true,
                    ..state.clone()
                };
                let concluded = conclude(&self.id(k), after, shape, None);
                let remaining = concluded.state.remaining;
                expect(
                    answer,
                    &Outcome::Decr(concluded.status, Some(remaining), concluded.done),
                )?;
                Ok((concluded.state, concluded.up))
            }
            Op::Abort => {
                let (text, after, up) = match effective {
                    Stored::Pending => {
                        let up = HandUp {
                            value: ended_up(&self.id(k), state.round, "aborted", Some("model")),
                            success: false,
                            takeable: false,
                        };
                        ("aborted", state.aborted(), Some(up))
                    }
                    Stored::Complete => ("already_complete", noticed, None),
                    Stored::Aborted => ("already_aborted", noticed, None),
                    Stored::Expired => ("expired", noticed, None),
                };
                expect(answer, &Outcome::Text(text.into()))?;
                Ok((after, up))
            }
            Op::Add { extra } => {
                if effective != Stored::Pending {
                    return Err(Problem(
                        "barrier_add succeeded on a finished barrier".into(),
                    ));
                }
                expect(answer, &Outcome::Expected(state.expected + extra))?;
                Ok((
                    State {
                        expected: state.expected + extra,
                        remaining: state.remaining + extra,
                        ..state.clone()
                    },
                    None,
                ))
            }
            Op::Take | Op::Claim => {
                // barrier_completions claims only what is stored takeable; a take expires a
                // barrier past its ttl first.
                if call.op == Op::Claim && expired_now {
                    return Err(Problem("claimed a barrier not stored as finished".into()));
                }
                if noticed.takeable(shape) {
                    expect(answer, &Outcome::Taken(noticed.completion.clone()))?;
                    Ok((noticed.handed_over(), None))
                } else {
                    expect(answer, &Outcome::Taken(None))?;
                    Ok((noticed, None))
                }
            }
        }
    }

    /// `after`, if the call's read of barrier `k` shows it.
    fn shown(
        &self,
        k: usize,
        mut after: State,
        call: &Call,
        seen: &Seen,
    ) -> Result<State, Problem> {
        let shape = shape(k);
        if after.stored != Stored::Pending && after.finished_at.is_none() {
            after.finished_at = seen.finished_at;
        }
        // How many failures an aborted round, or an expiry that freed its results, still
        // counts is not part of the contract.
        let freed =
            after.stored == Stored::Aborted || (after.stored == Stored::Expired && !shape.deliver);
        let model = Seen {
            round: after.round,
            created_at: after.created_at,
            status: after.status_at(call.at).to_string(),
            expected: after.expected,
            remaining: after.remaining,
            expires_at: after.expires_at,
            finished_at: if after.stored == Stored::Pending {
                None
            } else {
                seen.finished_at
            },
            results: after.results_view(call.at),
            failed: if freed { seen.failed } else { after.failed },
            sealed: after.sealed,
            need: shape.need,
        };
        if &model != seen {
            return Err(Problem(format!(
                "the read of barrier {k} shows {seen:?}, the model {model:?}"
            )));
        }
        Ok(after)
    }

    /// Whether some state the barrier had while `call` ran explains its answer, which came
    /// without the row lock (an absent barrier, a take that got nothing, or an error); for an
    /// enqueue of a nested barrier, also a state of its parent (unknown, finished, its slot
    /// reported).
    fn check_unordered(&self, call: &Call) -> Result<(), Problem> {
        let k = call.k;
        let explained = self.any_state(k, call, |state, lo, hi| {
            explains(shape(k), state, lo, hi, call)
        }) || match (&call.op, &call.outcome, shape(k).parent) {
            (Op::Enqueue { .. }, Outcome::Error(code), Some((parent, slot))) => {
                self.any_state(parent, call, |state, _, hi| match code.as_str() {
                    "42704" => state.is_none_or(|state| state.deletable_at(hi)),
                    "55000" => state.is_some_and(|state| state.status_at(hi) != "pending"),
                    "42710" => state.is_some_and(|state| state.results.contains_key(&slot)),
                    _ => false,
                })
            }
            _ => false,
        };
        if explained {
            Ok(())
        } else {
            Err(Problem(format!(
                "no state of the barrier while the call ran explains {:?}",
                call.outcome
            )))
        }
    }

    /// Whether `test` holds for some state barrier `k` had while `call` ran, held from `lo` to
    /// `hi`.
    fn any_state(
        &self,
        k: usize,
        call: &Call,
        test: impl Fn(Option<&State>, i64, i64) -> bool,
    ) -> bool {
        let history = &self.history[&k];
        history.iter().enumerate().any(|(i, (from, _, state))| {
            let until = history.get(i + 1).map_or(i64::MAX, |(_, done, _)| *done);
            if *from > call.at || until < call.sent {
                return false;
            }
            test(state.as_ref(), (*from).max(call.sent), until.min(call.at))
        })
    }

    /// The barrier at the end of the run, read at `at`, matches the model.
    fn check_final(
        &self,
        k: usize,
        at: i64,
        round: Option<(i64, i64, i32)>,
    ) -> Result<(), Problem> {
        let ok = match (&self.states[&k], round) {
            (None, None) => true,
            (Some(state), None) => {
                state.deletable_at(at) || state.expired(shape(k)).deletable_at(at)
            }
            (Some(state), Some((round, created_at, remaining))) => {
                (state.round, state.created_at, state.remaining) == (round, created_at, remaining)
            }
            (None, Some(_)) => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Problem(format!(
                "at the end the server has (round, created_at, remaining) {round:?}, the model \
                 {:?}",
                self.states[&k]
            )))
        }
    }
}

/// A new round of a barrier of `shape`, as its enqueue's read shows it.
fn fresh_round(shape: Shape, round: i64, expected: i32, seen: &Seen) -> State {
    State {
        round,
        created_at: seen.created_at,
        stored: Stored::Pending,
        expected,
        remaining: expected,
        expires_at: seen.created_at + shape.ttl_ms * 1000,
        finished_at: None,
        results: BTreeMap::new(),
        failed: 0,
        sealed: !shape.open,
        taken: false,
        completion: None,
    }
}

/// Calls that answered without holding the barrier's row.
fn unordered(call: &Call) -> bool {
    match &call.outcome {
        Outcome::Error(_) | Outcome::Taken(None) => true,
        Outcome::Text(text) | Outcome::Decr(text, ..) => text == "unknown",
        _ => call.seen.is_none(),
    }
}

/// Whether `state`, held from `lo` to `hi`, explains an answer given without the row lock.
fn explains(shape: Shape, state: Option<&State>, lo: i64, hi: i64, call: &Call) -> bool {
    let absent = state.is_none_or(|state| {
        state.deletable_at(hi) || (state.expires_at <= hi && state.expired(shape).deletable_at(hi))
    });
    let live_at_lo = state.filter(|state| state.stored == Stored::Pending && state.expires_at > lo);
    let finished_by_hi = state.is_some_and(|state| state.status_at(hi) != "pending");
    match (&call.op, &call.outcome) {
        (Op::Decr { .. } | Op::Seal, Outcome::Decr(status, None, None)) => {
            status == "unknown" && absent
        }
        (Op::Abort, Outcome::Text(text)) => text == "unknown" && absent,
        (Op::Take, Outcome::Taken(None)) => {
            // Not takeable. (A take expires a barrier past its ttl first: one that delivers
            // is takeable then.)
            let lapsed_delivery = |state: &State| {
                state.stored == Stored::Pending
                    && shape.deliver
                    && !state.taken
                    && state.expires_at <= lo
            };
            absent || state.is_some_and(|state| !(state.takeable(shape) || lapsed_delivery(state)))
        }
        (Op::Add { .. } | Op::Seal, Outcome::Error(code)) => match code.as_str() {
            "42704" => absent,
            "55000" => finished_by_hi,
            _ => false,
        },
        (Op::Enqueue { expected, replace }, Outcome::Error(code)) => {
            code == "42710" && !replace && live_at_lo.is_some_and(|s| s.expected != *expected)
        }
        (
            Op::Decr {
                slot: Some(slot), ..
            },
            Outcome::Error(code),
        ) => code == "22023" && shape.slotted && state.is_some_and(|s| *slot >= s.expected),
        _ => false,
    }
}

/// One position of a round as the log shows it: the counted failure and the counted success.
#[derive(Clone, Default, Debug)]
struct Position {
    failure: Option<String>,
    success: Option<String>,
}

/// Properties checked straight from barrier `k`'s log, without the model: per round, no
/// position counted twice (a success after a counted failure is its re-arm, once); at most one
/// committed completion, carrying exactly the committed counted reports before it, by position
/// (for a barrier that children report into, whose reports the log of its own calls does not
/// show, only that there is at most one); at most one committed take, equal to the completion.
fn check_rounds(k: usize, calls: &[&Call]) -> Result<(), Problem> {
    type Round = (i64, i64);
    let children = has_children(k);
    let mut counted: BTreeMap<Round, BTreeMap<i32, Position>> = BTreeMap::new();
    let mut completions: BTreeMap<Round, Vec<(String, Done)>> = BTreeMap::new();
    let mut takes: BTreeMap<Round, Vec<(String, Done)>> = BTreeMap::new();
    for call in calls.iter().filter(|call| call.committed) {
        let Some(seen) = &call.seen else { continue };
        let round = (seen.created_at, seen.round);
        let positions = counted.entry(round).or_default();
        match (&call.op, &call.outcome) {
            (
                Op::Decr {
                    slot,
                    result,
                    failed,
                },
                Outcome::Decr(status, remaining, done),
            ) if status == "pending" || status.starts_with("complete") => {
                // An arrival's position: what had arrived before it.
                let position = slot.unwrap_or(seen.expected - remaining.unwrap_or(-1) - 1);
                let entry = positions.entry(position).or_default();
                let twice = entry.success.is_some() || (*failed && entry.failure.is_some());
                if twice {
                    return Err(Problem(format!(
                        "position {position} counted twice in {round:?}"
                    )));
                }
                if *failed {
                    entry.failure = Some(result.clone());
                } else {
                    entry.success = Some(result.clone());
                }
                if let Some(done) = done {
                    let completion = (status.clone(), done.clone());
                    if !children {
                        let expected = completion_of(positions, seen.expected);
                        if completion != expected {
                            return Err(Problem(format!(
                                "round {round:?} completed with {completion:?} but its counted \
                                 reports were {expected:?}"
                            )));
                        }
                    }
                    completions.entry(round).or_default().push(completion);
                }
            }
            (Op::Seal, Outcome::Decr(status, _, Some(done))) => {
                let completion = (status.clone(), done.clone());
                if !children {
                    let expected = completion_of(positions, seen.expected);
                    if completion != expected {
                        return Err(Problem(format!(
                            "round {round:?} was sealed with {completion:?} but its counted \
                             reports were {expected:?}"
                        )));
                    }
                }
                completions.entry(round).or_default().push(completion);
            }
            (Op::Take | Op::Claim, Outcome::Taken(Some(handed))) => {
                takes.entry(round).or_default().push(handed.clone())
            }
            _ => {}
        }
    }
    for (round, completed) in &completions {
        if completed.len() != 1 {
            return Err(Problem(format!(
                "{} completions in round {round:?}",
                completed.len()
            )));
        }
    }
    for (round, taken) in &takes {
        let matches = completions
            .get(round)
            .is_none_or(|completed| completed == taken);
        if taken.len() != 1 || !matches {
            return Err(Problem(format!("round {round:?} taken as {taken:?}")));
        }
    }
    Ok(())
}

/// The completion the counted reports `positions` make, of `expected` positions.
fn completion_of(positions: &BTreeMap<i32, Position>, expected: i32) -> (String, Done) {
    let mut state = State {
        round: 0,
        created_at: 0,
        stored: Stored::Pending,
        expected,
        remaining: 0,
        expires_at: 0,
        finished_at: None,
        results: BTreeMap::new(),
        failed: 0,
        sealed: true,
        taken: false,
        completion: None,
    };
    for (&position, entry) in positions {
        match (&entry.success, &entry.failure) {
            (Some(result), _) => {
                state.results.insert(position, (json!(result), false));
            }
            (None, Some(error)) => {
                state.results.insert(position, (json!(error), true));
                state.failed += 1;
            }
            (None, None) => {}
        }
    }
    let (_, status, done) = state.completed();
    (status, done)
}

fn expect(answer: &Outcome, model: &Outcome) -> Result<(), Problem> {
    if answer == model {
        Ok(())
    } else {
        Err(Problem(format!(
            "answered {answer:?}, the model says {model:?}"
        )))
    }
}

struct Problem(String);

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn join(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|problem| problem.0.as_str())
        .collect::<Vec<_>>()
        .join("; or ")
}

#[derive(Default)]
struct Summary {
    by_answer: BTreeMap<String, usize>,
    counted: usize,
    completions: usize,
    takes: usize,
    rolled_back: usize,
    rearmed: usize,
    handed_up: usize,
}

impl Summary {
    fn add(&mut self, calls: &[&Call], replay: &Replay) {
        for call in calls {
            let answer = match &call.outcome {
                Outcome::Text(text) => text.clone(),
                Outcome::Decr(status, ..) if call.op == Op::Seal => format!("sealed: {status}"),
                Outcome::Decr(status, ..) => status.clone(),
                Outcome::Expected(_) => "added".into(),
                Outcome::Taken(_) if call.op == Op::Claim => "claimed".into(),
                Outcome::Taken(row) => if row.is_some() { "taken" } else { "not taken" }.into(),
                Outcome::Error(code) => format!("error {code}"),
            };
            if !call.committed && call.seen.is_some() {
                self.rolled_back += 1;
            }
            *self.by_answer.entry(answer).or_default() += 1;
        }
        self.counted += replay.counted;
        self.completions += replay.completions;
        self.takes += replay.takes;
        self.rearmed += replay.rearmed;
        self.handed_up += replay.handed_up;
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reports counted, {} completions, {} takes, {} re-arms, {} rounds reported into \
             a parent, {} calls rolled back; answers {:?}",
            self.counted,
            self.completions,
            self.takes,
            self.rearmed,
            self.handed_up,
            self.rolled_back,
            self.by_answer
        )
    }
}
