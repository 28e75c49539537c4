//! Many sessions reporting to one barrier at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Barrier;
use std::thread;

use postgres::IsolationLevel;
use serde_json::{json, Value};

use crate::lifecycle::notifications;
use crate::support::{
    assert_no_backend_crashed, assert_storage_whole, backend_pid, claim, connect, decr, handed_up,
    report, seal, seed, sqlstate, stored, take, wait_until_blocked, Answer, Handed, Reply, Rng,
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

// ---------------------------------------------------------------------------------------------
// The shapes of docs/shapes.md under races
// ---------------------------------------------------------------------------------------------

/// The stored status, remaining count and failures held of a barrier, as `barrier_status`
/// shows them.
fn counts(admin: &mut postgres::Client, id: &str) -> (String, i32, i32) {
    let row = admin
        .query_one(
            "SELECT status, remaining, failed FROM barrier_status($1)",
            &[&id],
        )
        .unwrap();
    (row.get(0), row.get(1), row.get(2))
}

/// Whether an answer counted its report: inserted it (pending, or the completion).
fn counted(reply: &Reply) -> bool {
    reply.status == "pending" || reply.completed()
}

/// Every slot reported twice at once from 16 sessions: a failure and a success (the task's
/// retry), in any order. Whichever comes first is counted; a success after a counted failure
/// re-arms the slot (answering `pending`, counting nothing) until the barrier completes, and
/// answers `duplicate` after; a failure after a success answers `duplicate`. Exactly one report
/// completes, with exactly the failures no retry replaced in time.
#[test]
fn sixteen_sessions_fail_and_retry_every_slot_and_one_completes() {
    const SLOTS: i32 = 300;
    let id = "race-rearm";
    let mut admin = connect();
    admin
        .execute("SELECT barrier_enqueue($1, $2)", &[&id, &SLOTS])
        .unwrap();
    let mut reports: Vec<(i32, bool)> = (0..SLOTS)
        .flat_map(|slot| [(slot, true), (slot, false)])
        .collect();
    Rng::new(seed()).shuffle(&mut reports);
    let answers = race(reports, |client, _, (slot, failed)| {
        let result = if failed {
            json!(format!("err-{slot}"))
        } else {
            json!(format!("ok-{slot}"))
        };
        let reply =
            report(client, id, Some(&result), Some(slot), failed).expect("barrier_decr failed");
        (slot, failed, reply)
    });

    let mut failure: BTreeMap<i32, &Reply> = BTreeMap::new();
    let mut success: BTreeMap<i32, &Reply> = BTreeMap::new();
    for (slot, failed, reply) in &answers {
        if *failed {
            failure.insert(*slot, reply);
        } else {
            success.insert(*slot, reply);
        }
    }
    let completers: Vec<&Reply> = answers
        .iter()
        .map(|(_, _, reply)| reply)
        .filter(|reply| reply.completed())
        .collect();
    assert_eq!(completers.len(), 1, "exactly one completer");
    let mut inserted_remaining = BTreeSet::new();
    let mut failed_at_end = BTreeSet::new();
    let mut rearmed = 0;
    for slot in 0..SLOTS {
        let (f, s) = (failure[&slot], success[&slot]);
        for reply in [f, s] {
            assert!(
                counted(reply) || reply.status == "duplicate",
                "slot {slot}: {reply:?}"
            );
        }
        let inserted = if counted(f) {
            // Counted first; the retry re-armed it before the completion, or came after.
            match s.status.as_str() {
                "pending" => rearmed += 1,
                "duplicate" => {
                    failed_at_end.insert(slot);
                }
                other => panic!("slot {slot}: a retry after a counted failure answered {other}"),
            }
            f
        } else {
            assert!(counted(s), "slot {slot} was never counted: {f:?} {s:?}");
            s
        };
        assert!(
            inserted_remaining.insert(inserted.remaining.unwrap()),
            "slot {slot}: remaining {:?} seen twice",
            inserted.remaining
        );
    }
    assert_eq!(inserted_remaining, (0..SLOTS).collect::<BTreeSet<_>>());
    assert!(rearmed > 0, "the workload re-armed no slot");

    let results: Vec<Value> = (0..SLOTS)
        .map(|slot| {
            if failed_at_end.contains(&slot) {
                Value::Null
            } else {
                json!(format!("ok-{slot}"))
            }
        })
        .collect();
    let failed_slots: Vec<i32> = failed_at_end.iter().copied().collect();
    let errors: Vec<Value> = failed_slots
        .iter()
        .map(|slot| json!(format!("err-{slot}")))
        .collect();
    let status = if failed_slots.is_empty() {
        "complete"
    } else {
        "complete_with_failures"
    };
    assert_eq!(
        completers[0],
        &Reply::completion(
            status,
            0,
            Value::Array(results.clone()),
            None,
            &failed_slots,
            Value::Array(errors),
            &[]
        )
    );
    assert_eq!(
        counts(&mut admin, id),
        (status.to_string(), 0, failed_slots.len() as i32)
    );
    let (_, _, stored_results) = stored(&mut admin, id);
    assert_eq!(
        serde_json::from_str::<Value>(&stored_results.unwrap()).unwrap(),
        Value::Array(results)
    );
    assert_storage_whole(&mut admin);
    assert_no_backend_crashed();
}

/// One report per slot from 16 sessions into a quorum barrier (`need => 100` of 400, one slot
/// in ten failing): exactly one report completes it, with exactly the reports counted before
/// it, and every later one answers `already_complete` and is not stored.
#[test]
fn sixteen_sessions_race_a_quorum_and_exactly_one_completes() {
    const SLOTS: i32 = 400;
    const NEED: i32 = 100;
    let id = "race-quorum";
    let mut admin = connect();
    admin
        .execute(
            "SELECT barrier_enqueue($1, $2, need => $3)",
            &[&id, &SLOTS, &NEED],
        )
        .unwrap();
    let mut slots: Vec<i32> = (0..SLOTS).collect();
    Rng::new(seed()).shuffle(&mut slots);
    let answers = race(slots, |client, _, slot| {
        let failed = slot % 10 == 0;
        let result = json!(format!("{}-{slot}", if failed { "err" } else { "ok" }));
        let reply =
            report(client, id, Some(&result), Some(slot), failed).expect("barrier_decr failed");
        (slot, reply)
    });
    let completers: Vec<&Reply> = answers
        .iter()
        .map(|(_, reply)| reply)
        .filter(|reply| reply.completed())
        .collect();
    assert_eq!(completers.len(), 1, "exactly one completer");
    let completer = completers[0];
    let counted_slots: BTreeSet<i32> = answers
        .iter()
        .filter(|(_, reply)| counted(reply))
        .map(|(slot, _)| *slot)
        .collect();
    for (slot, reply) in &answers {
        assert!(
            counted(reply) || reply.status == "already_complete",
            "slot {slot}: {reply:?}"
        );
    }
    let successes = counted_slots.iter().filter(|slot| *slot % 10 != 0).count();
    assert_eq!(
        successes, NEED as usize,
        "completed on the {NEED}th success"
    );
    let failed_slots: Vec<i32> = counted_slots
        .iter()
        .copied()
        .filter(|slot| slot % 10 == 0)
        .collect();
    let missing: Vec<i32> = (0..SLOTS)
        .filter(|slot| !counted_slots.contains(slot))
        .collect();
    let remaining = SLOTS - counted_slots.len() as i32;
    let results: Vec<Value> = (0..SLOTS)
        .map(|slot| {
            if counted_slots.contains(&slot) && slot % 10 != 0 {
                json!(format!("ok-{slot}"))
            } else {
                Value::Null
            }
        })
        .collect();
    let errors: Vec<Value> = failed_slots
        .iter()
        .map(|slot| json!(format!("err-{slot}")))
        .collect();
    let status = if failed_slots.is_empty() {
        "complete"
    } else {
        "complete_with_failures"
    };
    assert_eq!(
        completer,
        &Reply::completion(
            status,
            remaining,
            Value::Array(results.clone()),
            None,
            &failed_slots,
            Value::Array(errors),
            &missing
        )
    );
    // The counted reports before it saw remaining go down one by one.
    let pending: BTreeSet<i32> = answers
        .iter()
        .filter(|(_, reply)| reply.status == "pending")
        .map(|(_, reply)| reply.remaining.unwrap())
        .collect();
    assert_eq!(pending, (remaining + 1..SLOTS).collect::<BTreeSet<_>>());
    assert_eq!(
        counts(&mut admin, id),
        (status.to_string(), remaining, failed_slots.len() as i32)
    );
    let stored_slots: i64 = admin
        .query_one(
            "SELECT count(*) FROM barrier_internal.result WHERE barrier_id = $1",
            &[&id],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        stored_slots,
        counted_slots.len() as i64,
        "a late report was stored"
    );
    let (_, _, stored_results) = stored(&mut admin, id);
    assert_eq!(
        serde_json::from_str::<Value>(&stored_results.unwrap()).unwrap(),
        Value::Array(results)
    );
    assert_storage_whole(&mut admin);
    assert_no_backend_crashed();
}

/// `barrier_seal` racing the last two reports of an open fan-in: whatever the order, exactly
/// one of the three calls hands out the completion, with every result.
#[test]
fn a_seal_racing_the_last_reports_completes_once() {
    for round in 0..20 {
        let id = format!("seal-race-{round}");
        let mut admin = connect();
        admin
            .execute("SELECT barrier_enqueue($1, 6, sealed => false)", &[&id])
            .unwrap();
        for slot in 0..4 {
            report(&mut admin, &id, Some(&json!(slot)), Some(slot), false).unwrap();
        }
        let start = Barrier::new(3);
        let replies: Vec<(&str, Reply)> = thread::scope(|scope| {
            let calls: Vec<_> = [None, Some(4), Some(5)]
                .into_iter()
                .map(|slot| {
                    let (id, start) = (&id, &start);
                    scope.spawn(move || {
                        let mut client = connect();
                        start.wait();
                        match slot {
                            None => ("seal", seal(&mut client, id).unwrap()),
                            Some(slot) => (
                                "report",
                                report(&mut client, id, Some(&json!(slot)), Some(slot), false)
                                    .unwrap(),
                            ),
                        }
                    })
                })
                .collect();
            calls.into_iter().map(|call| call.join().unwrap()).collect()
        });
        let completions: Vec<&Reply> = replies
            .iter()
            .map(|(_, reply)| reply)
            .filter(|reply| reply.completed())
            .collect();
        assert_eq!(completions.len(), 1, "round {round}: {replies:?}");
        assert_eq!(
            completions[0],
            &Reply::completion(
                "complete",
                0,
                json!([0, 1, 2, 3, 4, 5]),
                None,
                &[],
                json!([]),
                &[]
            ),
            "round {round}"
        );
        for (what, reply) in &replies {
            if !reply.completed() {
                assert_eq!(reply.status, "pending", "round {round}: {what} {reply:?}");
            }
        }
        assert_eq!(counts(&mut admin, &id), ("complete".to_string(), 0, 0));
    }
}

/// Sixteen children of one parent, each finishing as its last report lands, from 16 sessions at
/// once: every child's completion is counted into the parent once, the parent completes once
/// (one notification), with each child's completion in its slot, and only the parent is left
/// to take. Every fourth child has a failed task, so its slot in the parent fails.
#[test]
fn sixteen_children_finishing_at_once_complete_their_parent_once() {
    const CHILDREN: i32 = 16;
    let parent = "race-tree";
    let child = |n: i32| format!("race-tree/{n}");
    let mut listener = connect();
    listener.batch_execute("LISTEN race_tree").unwrap();
    let mut admin = connect();
    admin
        .execute(
            "SELECT barrier_enqueue($1, $2, channel => 'race_tree')",
            &[&parent, &CHILDREN],
        )
        .unwrap();
    for n in 0..CHILDREN {
        admin
            .execute(
                "SELECT barrier_enqueue($1, 3, channel => 'race_tree', parent => $2,
                                        parent_slot => $3)",
                &[&child(n), &parent, &n],
            )
            .unwrap();
    }
    let mut reports: Vec<(i32, i32)> = (0..CHILDREN)
        .flat_map(|n| (0..3).map(move |slot| (n, slot)))
        .collect();
    Rng::new(seed()).shuffle(&mut reports);
    let answers = race(reports, |client, _, (n, slot)| {
        let failed = n % 4 == 0 && slot == 1;
        let result = json!(format!("c{n}s{slot}"));
        let reply = report(client, &child(n), Some(&result), Some(slot), failed)
            .expect("barrier_decr failed");
        (n, reply)
    });
    let mut expected_results = Vec::new();
    let mut errors = Vec::new();
    let mut failed_slots = Vec::new();
    for n in 0..CHILDREN {
        let mine: Vec<&Reply> = answers
            .iter()
            .filter(|(m, _)| *m == n)
            .map(|(_, reply)| reply)
            .collect();
        let completions: Vec<&&Reply> = mine.iter().filter(|reply| reply.completed()).collect();
        assert_eq!(completions.len(), 1, "child {n}: {mine:?}");
        let handed = if n % 4 == 0 {
            let results = json!([format!("c{n}s0"), null, format!("c{n}s2")]);
            let errors = json!([format!("c{n}s1")]);
            handed_up(
                &child(n),
                1,
                "complete_with_failures",
                results,
                &[1],
                errors,
                &[],
            )
        } else {
            let results = json!([format!("c{n}s0"), format!("c{n}s1"), format!("c{n}s2")]);
            handed_up(&child(n), 1, "complete", results, &[], json!([]), &[])
        };
        assert_eq!(
            completions[0].results.as_ref(),
            handed.get("results"),
            "child {n}"
        );
        if n % 4 == 0 {
            expected_results.push(Value::Null);
            failed_slots.push(n);
            errors.push(handed);
        } else {
            expected_results.push(handed);
        }
        assert_eq!(
            take(&mut admin, &child(n)).unwrap(),
            None,
            "child {n} was not taken"
        );
    }
    assert_eq!(
        counts(&mut admin, parent),
        (
            "complete_with_failures".to_string(),
            0,
            failed_slots.len() as i32
        )
    );
    assert_eq!(
        take(&mut admin, parent).unwrap(),
        Some(Handed::new(
            "complete_with_failures",
            Value::Array(expected_results),
            None,
            &failed_slots,
            Value::Array(errors),
            &[]
        ))
    );
    assert_eq!(claim(&mut admin, "race_tree", 100).unwrap(), vec![]);
    let heard = notifications(&mut listener, std::time::Duration::from_millis(500));
    let about_parent: Vec<&Value> = heard.iter().filter(|n| n["id"] == parent).collect();
    assert_eq!(
        about_parent,
        vec![&json!({"id": parent, "status": "complete_with_failures", "round": 1})]
    );
    assert_eq!(heard.len(), CHILDREN as usize + 1, "{heard:?}");
    assert_no_backend_crashed();
}

/// A child's last report racing its parent's abort: either the abort wins (the parent is
/// aborted, and the child's completion, not accepted, stays takeable) or the child's report
/// does (the parent takes it and completes; the abort answers `already_complete`). Never both,
/// never neither.
#[test]
fn a_child_completing_while_its_parent_aborts_is_accepted_or_left_takeable() {
    let mut outcomes = BTreeMap::new();
    for round in 0..30 {
        let parent = format!("abort-tree-{round}");
        let child = format!("abort-tree-{round}/child");
        let mut admin = connect();
        admin
            .execute("SELECT barrier_enqueue($1, 1)", &[&parent])
            .unwrap();
        admin
            .execute(
                "SELECT barrier_enqueue($1, 1, parent => $2, parent_slot => 0)",
                &[&child, &parent],
            )
            .unwrap();
        let start = Barrier::new(2);
        let (aborted, reply) = thread::scope(|scope| {
            let aborting = scope.spawn(|| {
                let mut client = connect();
                start.wait();
                client
                    .query_one("SELECT barrier_abort($1, 'race')", &[&parent])
                    .unwrap()
                    .get::<_, String>(0)
            });
            let reporting = scope.spawn(|| {
                let mut client = connect();
                start.wait();
                report(&mut client, &child, Some(&json!("x")), Some(0), false).unwrap()
            });
            (aborting.join().unwrap(), reporting.join().unwrap())
        });
        assert_eq!(
            reply,
            Reply::completion("complete", 0, json!(["x"]), None, &[], json!([]), &[]),
            "round {round}"
        );
        let taken_by_consumer = take(&mut admin, &child).unwrap();
        let parent_status = counts(&mut admin, &parent).0;
        match aborted.as_str() {
            "aborted" => {
                assert_eq!(parent_status, "aborted", "round {round}");
                assert!(
                    taken_by_consumer.is_some(),
                    "round {round}: the child's completion was lost"
                );
            }
            "already_complete" => {
                assert_eq!(parent_status, "complete", "round {round}");
                assert_eq!(taken_by_consumer, None, "round {round}: handed out twice");
                let handed = handed_up(&child, 1, "complete", json!(["x"]), &[], json!([]), &[]);
                assert_eq!(
                    take(&mut admin, &parent)
                        .unwrap()
                        .map(|taken| taken.results),
                    Some(json!([handed])),
                    "round {round}"
                );
            }
            other => panic!("round {round}: the abort answered {other}"),
        }
        *outcomes.entry(aborted).or_insert(0) += 1;
    }
    eprintln!("parent aborts racing a child's completion: {outcomes:?}");
}
