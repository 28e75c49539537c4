//! Many sessions reporting to one barrier at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Barrier;
use std::thread;

use postgres::IsolationLevel;
use serde_json::{json, Value};

use crate::support::{
    assert_no_backend_crashed, assert_storage_whole, backend_pid, connect, decr, seed, sqlstate,
    stored, wait_until_blocked, Answer, Rng,
};

const SESSIONS: usize = 16;
const TASKS: i32 = 1000;

/// Deals `work` round-robin to `SESSIONS` connections that start together, and collects what
/// each call answered, labelled by its item.
fn race<T, R>(work: Vec<T>, call: impl Fn(&mut postgres::Client, &mut Rng, T) -> R + Sync) -> Vec<R>
where
    T: Copy + Send + Sync,
    R: Send,
{
    let base_seed = seed();
    let start = Barrier::new(SESSIONS);
    thread::scope(|scope| {
        let sessions: Vec<_> = (0..SESSIONS)
            .map(|session| {
                let mine: Vec<T> = work
                    .iter()
                    .skip(session)
                    .step_by(SESSIONS)
                    .copied()
                    .collect();
                let (start, call) = (&start, &call);
                scope.spawn(move || {
                    let mut client = connect();
                    let mut rng = Rng::new(base_seed ^ (session as u64 + 1));
                    start.wait();
                    mine.into_iter()
                        .map(|item| call(&mut client, &mut rng, item))
                        .collect::<Vec<R>>()
                })
            })
            .collect();
        sessions
            .into_iter()
            .flat_map(|session| session.join().expect("session panicked"))
            .collect()
    })
}

fn count(answers: &[&Answer], status: &str) -> usize {
    answers
        .iter()
        .filter(|answer| answer.status == status)
        .count()
}

fn assert_stored_complete(admin: &mut postgres::Client, id: &str) {
    let row = admin
        .query_one("SELECT status, remaining FROM barrier_status($1)", &[&id])
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        ("complete".into(), 0)
    );
}

#[test]
fn sixteen_sessions_report_every_slot_twice_and_one_completes() {
    let id = "race-slotted";
    let mut admin = connect();
    admin
        .execute(
            "SELECT barrier_enqueue($1, $2, '{\"fn\": \"merge\"}')",
            &[&id, &TASKS],
        )
        .unwrap();

    // Every slot reported twice, with a payload that says which attempt it was.
    let mut reports: Vec<(i32, u32)> = (0..TASKS).flat_map(|slot| [(slot, 0), (slot, 1)]).collect();
    Rng::new(seed()).shuffle(&mut reports);
    let answers = race(reports, |client, _, (slot, attempt)| {
        let result = json!({"slot": slot, "attempt": attempt});
        (
            slot,
            attempt,
            decr(client, id, Some(&result), Some(slot)).expect("barrier_decr failed"),
        )
    });

    let all: Vec<&Answer> = answers.iter().map(|(_, _, answer)| answer).collect();
    assert_eq!(count(&all, "complete"), 1, "exactly one completer");
    assert_eq!(count(&all, "pending"), TASKS as usize - 1);
    assert_eq!(count(&all, "duplicate"), TASKS as usize);
    assert!(all
        .iter()
        .all(|answer| answer.remaining.is_some_and(|r| r >= 0)));

    // Counted calls saw remaining go 999, 998, ..., 0: each value exactly once.
    let counted: Vec<&(i32, u32, Answer)> = answers
        .iter()
        .filter(|(_, _, answer)| answer.status == "pending" || answer.status == "complete")
        .collect();
    let remaining: BTreeSet<i32> = counted
        .iter()
        .map(|(_, _, a)| a.remaining.unwrap())
        .collect();
    assert_eq!(remaining, (0..TASKS).collect::<BTreeSet<_>>());

    // Each slot was counted once, and the completer holds exactly the counted attempts, in slot order.
    let counted_attempt: BTreeMap<i32, u32> = counted
        .iter()
        .map(|(slot, attempt, _)| (*slot, *attempt))
        .collect();
    assert_eq!(counted_attempt.len(), TASKS as usize);
    let completer = all
        .iter()
        .find(|answer| answer.status == "complete")
        .unwrap();
    let expected: Vec<Value> = (0..TASKS)
        .map(|slot| json!({"slot": slot, "attempt": counted_attempt[&slot]}))
        .collect();
    assert_eq!(completer.results, Some(Value::Array(expected.clone())));

    // The stored state agrees.
    assert_stored_complete(&mut admin, id);
    let stored: String = admin
        .query_one("SELECT barrier_results($1)::text", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(
        serde_json::from_str::<Value>(&stored).unwrap(),
        Value::Array(expected)
    );
    // The repeated reports wrote rows and took them back; the indexes agree with the tables.
    assert_storage_whole(&mut admin);
    assert_no_backend_crashed();
}

#[test]
fn sixteen_sessions_count_unslotted_reports_with_rollbacks_and_one_completes() {
    let id = "race-unslotted";
    let mut admin = connect();
    admin
        .execute("SELECT barrier_enqueue($1, $2)", &[&id, &TASKS])
        .unwrap();

    // Each task reports in its own transaction; one in ten rolls back and is tried again, as a
    // worker would after a failure. Rolled-back reports must not count.
    let tasks: Vec<i32> = (0..TASKS).collect();
    let outcomes = race(tasks, |client, rng, task| {
        let result = json!({"task": task});
        let mut rolled_back = Vec::new();
        loop {
            let mut tx = client.transaction().unwrap();
            let answer = decr(&mut tx, id, Some(&result), None).expect("barrier_decr failed");
            if rng.below(10) == 0 {
                tx.rollback().unwrap();
                rolled_back.push(answer);
            } else {
                tx.commit().unwrap();
                return (answer, rolled_back);
            }
        }
    });

    let committed: Vec<&Answer> = outcomes.iter().map(|(answer, _)| answer).collect();
    let rollbacks: usize = outcomes
        .iter()
        .map(|(_, rolled_back)| rolled_back.len())
        .sum();
    assert!(
        rollbacks > 0,
        "the workload should have rolled some reports back"
    );
    assert_eq!(
        count(&committed, "complete"),
        1,
        "exactly one committed completer"
    );
    assert_eq!(count(&committed, "pending"), TASKS as usize - 1);
    let remaining: BTreeSet<i32> = committed.iter().map(|a| a.remaining.unwrap()).collect();
    assert_eq!(remaining, (0..TASKS).collect::<BTreeSet<_>>());

    // The completer holds every task's result once (arrival order is whatever it was).
    let completer = committed
        .iter()
        .find(|answer| answer.status == "complete")
        .unwrap();
    let Some(Value::Array(results)) = &completer.results else {
        panic!("no results array")
    };
    let mut tasks: Vec<i64> = results
        .iter()
        .map(|r| r["task"].as_i64().unwrap())
        .collect();
    tasks.sort_unstable();
    assert_eq!(tasks, (0..i64::from(TASKS)).collect::<Vec<_>>());

    // Late reports change nothing.
    for _ in 0..3 {
        assert_eq!(
            decr(&mut admin, id, None, None).unwrap().status,
            "already_complete"
        );
    }
    assert_stored_complete(&mut admin, id);
}

#[test]
fn concurrent_enqueues_of_one_id_register_it_once() {
    let id = "race-enqueue";
    let statuses = race((0..SESSIONS).collect(), |client, _, _| {
        client
            .query_one("SELECT barrier_enqueue($1, 5, '{\"k\": 1}')", &[&id])
            .map(|row| row.get::<_, String>(0))
            .expect("barrier_enqueue failed")
    });
    assert!(
        statuses.iter().all(|status| status == "pending"),
        "{statuses:?}"
    );
    let mut admin = connect();
    let row = admin
        .query_one("SELECT round, remaining FROM barrier_status($1)", &[&id])
        .unwrap();
    assert_eq!((row.get::<_, i64>(0), row.get::<_, i32>(1)), (1, 5));
}

#[test]
fn snapshot_isolation_waits_for_an_open_report_then_fails_or_counts() {
    let id = "race-rr-wait";
    let mut admin = connect();
    admin
        .execute("SELECT barrier_enqueue($1, 3)", &[&id])
        .unwrap();
    let mut holder = connect();
    let mut late = connect();
    for (holder_commits, expected) in [(true, Err("40001")), (false, Ok("pending"))] {
        let mut held = holder.transaction().unwrap();
        assert_eq!(decr(&mut held, id, None, None).unwrap().status, "pending");
        let mut tx = late
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .start()
            .unwrap();
        tx.query_one("SELECT 1", &[]).unwrap(); // snapshot taken while the report is open
        let answer = thread::scope(|scope| {
            let waiting = scope.spawn(|| decr(&mut tx, id, None, None));
            thread::sleep(std::time::Duration::from_millis(300));
            if holder_commits {
                held.commit().unwrap();
            } else {
                held.rollback().unwrap();
            }
            waiting.join().unwrap()
        });
        match (answer, expected) {
            (Err(error), Err(code)) => assert_eq!(sqlstate(&error), code, "{error}"),
            (Ok(answer), Ok(status)) => assert_eq!(answer.status, status),
            (got, want) => panic!("holder commits: {holder_commits}: got {got:?}, want {want:?}"),
        }
        tx.commit().ok();
    }
    // One report from the committed holder, one from the RR session after the rollback.
    let remaining: i32 = admin
        .query_one("SELECT remaining FROM barrier_status($1)", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(remaining, 1);
}

#[test]
fn snapshot_isolation_turns_a_lost_race_into_40001() {
    for (id, level) in [
        ("race-rr", IsolationLevel::RepeatableRead),
        ("race-ser", IsolationLevel::Serializable),
    ] {
        let mut admin = connect();
        admin
            .execute("SELECT barrier_enqueue($1, 2)", &[&id])
            .unwrap();
        let mut late = connect();
        let mut tx = late
            .build_transaction()
            .isolation_level(level)
            .start()
            .unwrap();
        tx.query_one("SELECT 1", &[]).unwrap(); // takes the snapshot
        assert_eq!(decr(&mut admin, id, None, None).unwrap().status, "pending");
        let error = decr(&mut tx, id, None, None).expect_err("a stale snapshot must not count");
        assert_eq!(sqlstate(&error), "40001", "{error}");
        tx.rollback().unwrap();
        // Nothing double-counted; a retry in a new transaction completes.
        let remaining: i32 = admin
            .query_one("SELECT remaining FROM barrier_status($1)", &[&id])
            .unwrap()
            .get(0);
        assert_eq!(remaining, 1);
        let mut tx = late
            .build_transaction()
            .isolation_level(level)
            .start()
            .unwrap();
        assert_eq!(decr(&mut tx, id, None, None).unwrap().status, "complete");
        tx.commit().unwrap();
    }
}

/// A report that finds its barrier finished and waits for a coordinator's enqueue of a new
/// round counts in that round once the enqueue commits: it is decided on the newest version of
/// the barrier, not on the finished one its snapshot saw.
#[test]
fn a_report_waiting_for_a_new_round_counts_in_it() {
    for slot in [None, Some(2)] {
        let id = format!("next-round-{}", slot.is_some());
        let mut admin = connect();
        admin
            .batch_execute(&format!("SELECT barrier_enqueue('{id}', 1)"))
            .unwrap();
        let slot_of_first = slot.map(|_| 0);
        assert_eq!(
            decr(&mut admin, &id, None, slot_of_first).unwrap().status,
            "complete"
        );
        let mut coordinator_session = connect();
        let mut coordinator = coordinator_session.transaction().unwrap();
        coordinator
            .batch_execute(&format!("SELECT barrier_enqueue('{id}', 4)"))
            .unwrap();
        let mut reporter = connect();
        let pid = backend_pid(&mut reporter);
        let waiting_id = id.clone();
        let report =
            thread::spawn(move || decr(&mut reporter, &waiting_id, Some(&json!("late")), slot));
        wait_until_blocked(&mut admin, pid);
        coordinator.commit().unwrap();
        let answer = report
            .join()
            .unwrap()
            .expect("the waiting report must count");
        assert_eq!(
            (answer.status.as_str(), answer.remaining),
            ("pending", Some(3)),
            "{id}"
        );
        let (status, remaining, _) = stored(&mut admin, &id);
        assert_eq!((status.as_str(), remaining), ("pending", 3), "{id}");
    }
}
