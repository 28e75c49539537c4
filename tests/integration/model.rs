//! A random workload from many sessions, logged and then checked offline against a sequential
//! model of a barrier.
//!
//! Every call that can change a barrier runs in its own transaction, followed in that
//! transaction by a read of the barrier (`barrier_status`, `barrier_results` and the statement
//! time). All of them hold the barrier's row lock from the call to the end of the transaction,
//! so the read shows exactly the state the call left, and the read's statement time orders the
//! calls on one barrier as the server serialized them. The checker replays each barrier's calls
//! in that order through the model and requires every answer, and every state read, to be one
//! the model allows. Where a call answered without the lock (`unknown`, errors, which roll
//! back), it is checked against every state the barrier may have had while the call ran.
//!
//! `PG_BARRIER_MODEL_SECONDS` sets how long the workload runs (default 15). `PG_BARRIER_TEST_SEED`
//! replays each session's choice of calls; the interleaving is the server's, so a failure may
//! take a few runs to recur. On a failure, the failing barrier's whole log, in the server's
//! order, is written to `target/tmp/model-failure.log`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::Client;
use serde_json::{json, Value};

use crate::support::{
    assert_no_backend_crashed, assert_storage_whole, connect, connect_as, create_extension,
    fresh_database, seed, sqlstate, Rng,
};

/// A database of its own: the workload's sweeps (with a 1 s retention) act on every barrier in
/// their database, and would delete other tests' barriers.
const DATABASE: &str = "barrier_model";
const SESSIONS: usize = 8;
/// Barrier ids in play. Ids with `k % 3 == 0` are short-lived and wide, so that some expire;
/// ids with `k % 4 == 1` are counted without slots.
const IDS: usize = 12;
const SHORT_TTL_MS: i64 = 1_000;
const LONG_TTL_MS: i64 = 3_600_000;
/// The retention the sweeping sessions use, so that finished barriers are also deleted.
const RETENTION_MS: i64 = 1_000;

/// A barrier's shape, fixed per id: its ttl, whether it is slotted, and the `expected` values its
/// enqueues draw from (so that most re-enqueues repeat the same arguments, and some differ).
#[derive(Clone, Copy)]
struct Shape {
    ttl_ms: i64,
    slotted: bool,
    widths: [i32; 3],
}

fn shape(k: usize) -> Shape {
    Shape {
        ttl_ms: if k.is_multiple_of(3) {
            SHORT_TTL_MS
        } else {
            LONG_TTL_MS
        },
        slotted: k % 4 != 1,
        widths: if k.is_multiple_of(3) {
            [40, 48, 60]
        } else {
            [2, 3, 4]
        },
    }
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
    },
    Abort,
    Add {
        extra: i32,
    },
    Take,
    /// `barrier_completions(NULL, 1)`: a take of whichever completion it claims.
    Claim,
}

/// What a call answered.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    /// `barrier_enqueue`, `barrier_abort`: the status text.
    Text(String),
    /// `barrier_decr`: status, remaining, results.
    Decr(String, Option<i32>, Option<Value>),
    /// `barrier_add`: the new `expected`.
    Expected(i32),
    /// `barrier_take`: the row, if one came back.
    Taken(Option<Value>),
    Error(String),
}

/// The barrier as the call's transaction saw it right after the call.
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
           (extract(epoch FROM s.finished_at) * 1e6)::int8, barrier_results($1)::text
      FROM (SELECT) one LEFT JOIN LATERAL barrier_status($1) s ON true";

/// Runs one call and the read after it in one transaction; rolls back when `roll_back`.
fn perform(client: &mut Client, id: &str, shape: Shape, op: &Op, roll_back: bool) -> Performed {
    let mut tx = client.transaction().expect("BEGIN");
    let outcome = match op {
        Op::Claim => unreachable!("claims name no barrier: see `claim`"),
        Op::Enqueue { expected, replace } => {
            let ttl = format!("{} milliseconds", shape.ttl_ms);
            tx.query_one(
                "SELECT barrier_enqueue($1, $2, '{\"next\": \"publish\"}', $3::text::interval,
                                        replace => $4)",
                &[&id, expected, &ttl, replace],
            )
            .map(|row| Outcome::Text(row.get(0)))
        }
        Op::Decr { slot, result } => tx
            .query_one(
                "SELECT status, remaining, results::text
                   FROM barrier_decr($1, to_jsonb($2::text), $3)",
                &[&id, result, slot],
            )
            .map(|row| {
                let results: Option<String> = row.get(2);
                Outcome::Decr(row.get(0), row.get(1), results.map(|text| parse(&text)))
            }),
        Op::Abort => tx
            .query_one("SELECT barrier_abort($1, 'model')", &[&id])
            .map(|row| Outcome::Text(row.get(0))),
        Op::Add { extra } => tx
            .query_one("SELECT barrier_add($1, $2)", &[&id, extra])
            .map(|row| Outcome::Expected(row.get(0))),
        Op::Take => tx
            .query_opt("SELECT results::text FROM barrier_take($1)", &[&id])
            .map(|row| Outcome::Taken(row.map(|row| parse(&row.get::<_, String>(0))))),
    };
    finish(tx, id, outcome, roll_back)
}

/// Claims one completion with `barrier_completions`, then reads the barrier it names and ends
/// the transaction as `perform` does; `None` if there was none to claim.
fn claim(client: &mut Client, run: u64, roll_back: bool) -> Option<(usize, Performed)> {
    let mut tx = client.transaction().expect("BEGIN");
    let row = tx
        .query_opt(
            "SELECT id, results::text FROM barrier_completions(NULL, 1)",
            &[],
        )
        .expect("barrier_completions");
    let row = row?;
    let id: String = row.get(0);
    let k = id
        .strip_prefix(&format!("model:{run}:"))
        .and_then(|k| k.parse().ok())
        .unwrap_or_else(|| panic!("claimed a barrier of another run: {id}"));
    let outcome = Outcome::Taken(Some(parse(&row.get::<_, String>(1))));
    Some((k, finish(tx, &id, Ok(outcome), roll_back)))
}

/// The read after a call, in its transaction, and the transaction's end.
fn finish(
    mut tx: postgres::Transaction<'_>,
    id: &str,
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
                committed: false,
            };
        }
    };
    let row = tx.query_one(READ, &[&id]).expect("read after the call");
    let at: i64 = row.get(0);
    let seen = row.get::<_, Option<i64>>(1).map(|round| Seen {
        round,
        created_at: row.get(2),
        status: row.get(3),
        expected: row.get(4),
        remaining: row.get(5),
        expires_at: row.get(6),
        finished_at: row.get(7),
        results: row.get::<_, Option<String>>(8).map(|text| parse(&text)),
    });
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
        committed,
    }
}

struct Performed {
    outcome: Outcome,
    at: i64,
    seen: Option<Seen>,
    committed: bool,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("jsonb text is JSON")
}

/// Slotted reports delivered so far, shared by all sessions so that any of them can deliver one
/// again (a redelivered or retried task).
type Deliveries = Mutex<Vec<(usize, i32, String)>>;

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
            let (k, slot, result) = known[rng.below(known.len())].clone();
            (
                k,
                Op::Decr {
                    slot: Some(slot),
                    result,
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
                },
                64..=79 => Op::Enqueue {
                    expected: shape.widths[rng.below(3)],
                    replace: shape.ttl_ms == LONG_TTL_MS && rng.below(4) == 0,
                },
                80..=81 => Op::Abort,
                82..=89 => Op::Add {
                    extra: 1 + rng.below(2) as i32,
                },
                90..=94 => Op::Take,
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
            (
                k,
                perform(&mut client, &id_of(run, k), shape(k), &op, roll_back),
            )
        };
        if let (
            Op::Decr {
                slot: Some(slot),
                result,
            },
            Outcome::Decr(..),
        ) = (&op, &performed.outcome)
        {
            deliveries.lock().unwrap().push((k, *slot, result.clone()));
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
    calls.sort_by_key(|call| (call.k, call.at, call.session, call.seq));

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
    let summary = verify(&calls, &finals).unwrap_or_else(|(k, problem)| {
        let log = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("model-failure.log");
        let lines: Vec<String> = calls
            .iter()
            .filter(|call| call.k == k)
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

    // The checker is able to fail: logs with one lie each are rejected.
    for (lie, corrupt) in LIES {
        let mut forged = calls.clone();
        assert!(corrupt(&mut forged), "no call to forge for: {lie}");
        assert!(
            verify(&forged, &finals).is_err(),
            "the checker accepted a log with {lie}"
        );
    }
}

/// The final read of a barrier: when, and (round, created_at, remaining) if it exists.
type Final = (i64, Option<(i64, i64, i32)>);

/// Checks every barrier's calls against the model and the final reads; on a failure, the
/// barrier and what is wrong.
fn verify(calls: &[Call], finals: &[Final]) -> Result<Summary, (usize, String)> {
    let mut summary = Summary::default();
    for (k, &(final_at, final_row)) in finals.iter().enumerate() {
        let mine: Vec<&Call> = calls.iter().filter(|call| call.k == k).collect();
        let mut replay = Replay::new(k);
        let fail = |problem: Problem, call: Option<&Call>, replay: &Replay| {
            let text = format!(
                "barrier {k}: {problem}\n  call: {call:?}\n  model before: {:?}",
                replay.state
            );
            (k, text)
        };
        for call in &mine {
            replay
                .apply(call)
                .map_err(|problem| fail(problem, Some(call), &replay))?;
        }
        for call in mine.iter().filter(|call| unordered(call)) {
            replay
                .check_unordered(call)
                .map_err(|problem| fail(problem, Some(call), &replay))?;
        }
        replay
            .check_final(final_at, final_row)
            .map_err(|problem| fail(problem, None, &replay))?;
        check_rounds(&mine).map_err(|problem| fail(problem, None, &replay))?;
        summary.add(&mine, &replay);
    }
    Ok(summary)
}

/// A forgery of a log: returns false if the log has no call to forge.
type Forgery = fn(&mut [Call]) -> bool;

/// Lies a broken implementation could tell, each planted in a copy of a real log.
const LIES: [(&str, Forgery); 4] = [
    (
        "a counted report answered as a duplicate (a lost count)",
        |calls| {
            forge(calls, |call| match &mut call.outcome {
                Outcome::Decr(status, _, _) if status == "pending" && call.committed => {
                    *status = "duplicate".into();
                    true
                }
                _ => false,
            })
        },
    ),
    ("a completion missing one result", |calls| {
        forge(calls, |call| match &mut call.outcome {
            Outcome::Decr(status, _, Some(Value::Array(results))) if status == "complete" => {
                results.pop();
                true
            }
            _ => false,
        })
    }),
    ("a second completer in a round", |calls| {
        let Some((k, results)) = calls.iter().find_map(|call| match &call.outcome {
            Outcome::Decr(status, _, Some(results)) if status == "complete" && call.committed => {
                Some((call.k, results.clone()))
            }
            _ => None,
        }) else {
            return false;
        };
        forge(calls, |call| match &mut call.outcome {
            Outcome::Decr(status, _, answer) if call.k == k && status == "already_complete" => {
                *status = "complete".into();
                *answer = Some(results.clone());
                true
            }
            _ => false,
        })
    }),
    ("a rolled-back report counted", |calls| {
        forge(calls, |call| match &call.outcome {
            Outcome::Decr(status, ..) if status == "pending" && !call.committed => {
                call.committed = true;
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

#[derive(Clone, Debug)]
struct State {
    round: i64,
    created_at: i64,
    stored: Stored,
    expected: i32,
    remaining: i32,
    expires_at: i64,
    /// When it finished, if the model knows (a sweep's expiry is seen only later).
    finished_at: Option<i64>,
    /// Recorded results by position (slot, or arrival number).
    results: BTreeMap<i32, String>,
    taken: bool,
    completion: Option<Value>,
}

impl State {
    /// The status `barrier_status` shows at time `at`.
    fn status_at(&self, at: i64) -> &'static str {
        match self.stored {
            Stored::Pending if self.expires_at <= at => "expired",
            Stored::Pending => "pending",
            Stored::Complete => "complete",
            Stored::Aborted => "aborted",
            Stored::Expired => "expired",
        }
    }

    /// What `barrier_results` shows at time `at`.
    fn results_view(&self, at: i64) -> Option<Value> {
        match self.stored {
            Stored::Pending if self.expires_at > at => Some(Value::Array(
                self.results.values().map(|r| json!(r)).collect(),
            )),
            Stored::Complete if !self.taken => self.completion.clone(),
            _ => None,
        }
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

    /// The stored expiry, as a call that noticed it (or a sweep) leaves it.
    fn expired(&self) -> State {
        State {
            stored: Stored::Expired,
            results: BTreeMap::new(),
            ..self.clone()
        }
    }
}

struct Replay {
    shape: Shape,
    state: Option<State>,
    /// Every state the barrier had: (the read time of the call that left it, when that call
    /// ended, the state). A state is visible to others from its call's commit at the latest
    /// until the next call's commit.
    history: Vec<(i64, i64, Option<State>)>,
    counted: usize,
    completions: usize,
    takes: usize,
}

impl Replay {
    fn new(k: usize) -> Self {
        Replay {
            shape: shape(k),
            state: None,
            history: vec![(i64::MIN, i64::MIN, None)],
            counted: 0,
            completions: 0,
            takes: 0,
        }
    }

    /// Replays `call`, which must come after every call already applied in the server's order.
    fn apply(&mut self, call: &Call) -> Result<(), Problem> {
        if unordered(call) {
            // Checked once every state is known.
            return Ok(());
        }
        let seen = call.seen.as_ref().expect("ordered calls have a read");
        let mut accepted = None;
        let mut tried = Vec::new();
        for (before, expired_now) in self.candidates(call) {
            match self.step(before.as_ref(), expired_now, call, seen) {
                Ok(after) => {
                    accepted = Some((before, after));
                    break;
                }
                Err(problem) => tried.push(problem),
            }
        }
        let Some((before, after)) = accepted else {
            return Err(Problem(format!("no state allows it: {}", join(&tried))));
        };
        if call.committed {
            if let (Op::Decr { .. }, Outcome::Decr(status, ..)) = (&call.op, &call.outcome) {
                self.counted += usize::from(status == "pending" || status == "complete");
                self.completions += usize::from(status == "complete");
            }
            self.takes += usize::from(matches!(call.outcome, Outcome::Taken(Some(_))));
            self.state = Some(after);
        } else {
            // What a sweep or time did stays; what the call did is undone.
            self.state = before;
        }
        self.history.push((call.at, call.done, self.state.clone()));
        Ok(())
    }

    /// The states the barrier may have been in when `call` took its lock, each with whether
    /// the call's own clock found it expired: as last seen, expired by a sweep, or deleted by a
    /// sweep. The call's clock lies between `call.sent` and `call.at`.
    fn candidates(&self, call: &Call) -> Vec<(Option<State>, bool)> {
        let Some(state) = &self.state else {
            return vec![(None, false)];
        };
        let mut candidates = Vec::new();
        if state.stored == Stored::Pending && state.expires_at <= call.at {
            candidates.push((Some(state.clone()), true));
            if state.expires_at > call.sent {
                candidates.push((Some(state.clone()), false));
            }
            let swept = state.expired();
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

    /// The sequential model: the state `call` leaves, if its answer and its read are what the
    /// model allows from `before` (`expired_now`: the call's clock found it past its expiry).
    fn step(
        &self,
        before: Option<&State>,
        expired_now: bool,
        call: &Call,
        seen: &Seen,
    ) -> Result<State, Problem> {
        let answer = &call.outcome;
        let Some(state) = before else {
            return match call.op {
                Op::Enqueue { expected, .. } => {
                    expect(answer, &Outcome::Text("pending".into()))?;
                    self.shown(self.fresh_round(1, expected, seen), call, seen)
                }
                _ => Err(Problem("a locked answer for an absent barrier".into())),
            };
        };
        // What the call's clock made of it: a pending barrier past its expiry is expired, and a
        // call that notices it (all but a take) stores that.
        let effective = if expired_now {
            Stored::Expired
        } else {
            state.stored.clone()
        };
        let noticed = if expired_now {
            state.expired()
        } else {
            state.clone()
        };
        let after = match &call.op {
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
                        state.clone()
                    }
                    _ => self.fresh_round(state.round + 1, *expected, seen),
                }
            }
            Op::Decr { slot, result } => decrement(&noticed, &effective, *slot, result, answer)?,
            Op::Abort => {
                let (text, after) = match effective {
                    Stored::Pending => (
                        "aborted",
                        State {
                            stored: Stored::Aborted,
                            results: BTreeMap::new(),
                            ..state.clone()
                        },
                    ),
                    Stored::Complete => ("already_complete", noticed),
                    Stored::Aborted => ("already_aborted", noticed),
                    Stored::Expired => ("expired", noticed),
                };
                expect(answer, &Outcome::Text(text.into()))?;
                after
            }
            Op::Add { extra } => {
                if effective != Stored::Pending {
                    return Err(Problem(
                        "barrier_add succeeded on a finished barrier".into(),
                    ));
                }
                expect(answer, &Outcome::Expected(state.expected + extra))?;
                State {
                    expected: state.expected + extra,
                    remaining: state.remaining + extra,
                    ..state.clone()
                }
            }
            Op::Take | Op::Claim => {
                if effective == Stored::Complete && !state.taken {
                    expect(answer, &Outcome::Taken(state.completion.clone()))?;
                    State {
                        taken: true,
                        results: BTreeMap::new(),
                        ..state.clone()
                    }
                } else {
                    expect(answer, &Outcome::Taken(None))?;
                    state.clone()
                }
            }
        };
        self.shown(after, call, seen)
    }

    /// `after`, if the call's read shows it.
    fn shown(&self, mut after: State, call: &Call, seen: &Seen) -> Result<State, Problem> {
        if after.stored != Stored::Pending && after.finished_at.is_none() {
            after.finished_at = seen.finished_at;
        }
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
        };
        if &model != seen {
            return Err(Problem(format!(
                "the read shows {seen:?}, the model {model:?}"
            )));
        }
        Ok(after)
    }

    fn fresh_round(&self, round: i64, expected: i32, seen: &Seen) -> State {
        State {
            round,
            created_at: seen.created_at,
            stored: Stored::Pending,
            expected,
            remaining: expected,
            expires_at: seen.created_at + self.shape.ttl_ms * 1000,
            finished_at: None,
            results: BTreeMap::new(),
            taken: false,
            completion: None,
        }
    }

    /// Whether some state the barrier had while `call` ran explains its answer, which came
    /// without the row lock (an absent barrier, a take that got nothing, or an error).
    fn check_unordered(&self, call: &Call) -> Result<(), Problem> {
        let explained = self
            .history
            .iter()
            .enumerate()
            .any(|(i, (from, _, state))| {
                let until = self
                    .history
                    .get(i + 1)
                    .map_or(i64::MAX, |(_, done, _)| *done);
                if *from > call.at || until < call.sent {
                    return false;
                }
                explains(
                    self.shape,
                    state.as_ref(),
                    (*from).max(call.sent),
                    until.min(call.at),
                    call,
                )
            });
        if explained {
            Ok(())
        } else {
            Err(Problem(format!(
                "no state of the barrier while the call ran explains {:?}",
                call.outcome
            )))
        }
    }

    /// The barrier at the end of the run, read at `at`, matches the model.
    fn check_final(&self, at: i64, round: Option<(i64, i64, i32)>) -> Result<(), Problem> {
        let ok = match (&self.state, round) {
            (None, None) => true,
            (Some(state), None) => state.deletable_at(at) || state.expired().deletable_at(at),
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
                self.state
            )))
        }
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

/// A report, by the model: `state` as the report's clock found it (expiry stored), and its
/// status then.
fn decrement(
    state: &State,
    effective: &Stored,
    slot: Option<i32>,
    result: &str,
    answer: &Outcome,
) -> Result<State, Problem> {
    let repeat = slot.is_some_and(|slot| state.results.contains_key(&slot));
    let same = |status: &str, remaining: i32| {
        expect(answer, &Outcome::Decr(status.into(), Some(remaining), None)).map(|()| state.clone())
    };
    match effective {
        Stored::Complete if repeat => same("duplicate", 0),
        Stored::Complete => same("already_complete", 0),
        Stored::Aborted => same("aborted", state.remaining),
        Stored::Expired => same("expired", state.remaining),
        Stored::Pending if repeat => same("duplicate", state.remaining),
        Stored::Pending => {
            let mut after = state.clone();
            let position = slot.unwrap_or(state.expected - state.remaining);
            after.results.insert(position, result.to_string());
            after.remaining -= 1;
            if after.remaining > 0 {
                expect(
                    answer,
                    &Outcome::Decr("pending".into(), Some(after.remaining), None),
                )?;
            } else {
                let all = Value::Array(after.results.values().map(|r| json!(r)).collect());
                expect(
                    answer,
                    &Outcome::Decr("complete".into(), Some(0), Some(all.clone())),
                )?;
                after.stored = Stored::Complete;
                after.completion = Some(all);
            }
            Ok(after)
        }
    }
}

/// Whether `state`, held from `lo` to `hi`, explains an answer given without the row lock.
fn explains(shape: Shape, state: Option<&State>, lo: i64, hi: i64, call: &Call) -> bool {
    let absent = state.is_none_or(|state| {
        state.deletable_at(hi) || (state.expires_at <= hi && state.expired().deletable_at(hi))
    });
    let live_at_lo = state.filter(|state| state.stored == Stored::Pending && state.expires_at > lo);
    let finished_by_hi = state.is_some_and(|state| state.status_at(hi) != "pending");
    match (&call.op, &call.outcome) {
        (Op::Decr { .. }, Outcome::Decr(status, None, None)) => status == "unknown" && absent,
        (Op::Abort, Outcome::Text(text)) => text == "unknown" && absent,
        (Op::Take, Outcome::Taken(None)) => {
            absent || state.is_some_and(|state| state.stored != Stored::Complete || state.taken)
        }
        (Op::Add { .. }, Outcome::Error(code)) => match code.as_str() {
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

/// Properties checked straight from the log, without the model: per round, at most one committed
/// completion, carrying exactly the committed counted reports' results in slot order; no slot
/// counted twice; at most one committed take, equal to the completion.
fn check_rounds(calls: &[&Call]) -> Result<(), Problem> {
    type Round = (i64, i64);
    let mut counted: BTreeMap<Round, BTreeMap<i32, String>> = BTreeMap::new();
    let mut completions: BTreeMap<Round, Vec<Value>> = BTreeMap::new();
    let mut takes: BTreeMap<Round, Vec<Value>> = BTreeMap::new();
    for call in calls.iter().filter(|call| call.committed) {
        let Some(seen) = &call.seen else { continue };
        let round = (seen.created_at, seen.round);
        match (&call.op, &call.outcome) {
            (Op::Decr { slot, result }, Outcome::Decr(status, remaining, results))
                if status == "pending" || status == "complete" =>
            {
                let slots = counted.entry(round).or_default();
                let position = slot.unwrap_or(seen.expected - remaining.unwrap_or(-1) - 1);
                if slots.insert(position, result.clone()).is_some() {
                    return Err(Problem(format!(
                        "position {position} counted twice in {round:?}"
                    )));
                }
                if let Some(results) = results {
                    completions.entry(round).or_default().push(results.clone());
                }
            }
            (Op::Take | Op::Claim, Outcome::Taken(Some(results))) => {
                takes.entry(round).or_default().push(results.clone())
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
        let slots = &counted[round];
        let expected = Value::Array(slots.values().map(|r| json!(r)).collect());
        if completed[0] != expected {
            return Err(Problem(format!(
                "round {round:?} completed with {} but its counted reports were {expected}",
                completed[0]
            )));
        }
        let positions: BTreeSet<i32> = slots.keys().copied().collect();
        if positions != (0..slots.len() as i32).collect() {
            return Err(Problem(format!(
                "round {round:?} completed with positions {positions:?}"
            )));
        }
    }
    for (round, taken) in &takes {
        if taken.len() != 1 || completions.get(round) != Some(taken) {
            return Err(Problem(format!("round {round:?} taken as {taken:?}")));
        }
    }
    Ok(())
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
}

impl Summary {
    fn add(&mut self, calls: &[&Call], replay: &Replay) {
        for call in calls {
            let answer = match &call.outcome {
                Outcome::Text(text) => text.clone(),
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
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} reports counted, {} completions, {} takes, {} calls rolled back; answers {:?}",
            self.counted, self.completions, self.takes, self.rolled_back, self.by_answer
        )
    }
}
