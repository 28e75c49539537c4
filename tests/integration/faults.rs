//! Faults on the shared test server: interrupting a report that waits for the barrier's row
//! lock, terminating the session that holds it, read-only transactions, and a listener that
//! never reads. (Crashes, a hot standby and two-phase commit are in tests/crash.rs, on servers
//! of their own.)

use std::thread;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use serde_json::json;

use crate::support::{backend_pid, connect, decr, sqlstate, stored, wait_until_blocked};

#[test]
fn timeouts_and_cancels_while_waiting_change_nothing() {
    let id = "fault-wait";
    let mut admin = connect();
    admin
        .execute("SELECT barrier_enqueue($1, 3)", &[&id])
        .unwrap();

    // A report holds the row lock in an open transaction.
    let mut holder = connect();
    let mut held = holder.transaction().unwrap();
    assert_eq!(
        decr(&mut held, id, None, Some(0)).unwrap().status,
        "pending"
    );

    let mut waiter = connect();
    waiter.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let error = decr(&mut waiter, id, None, Some(1)).expect_err("lock_timeout");
    assert_eq!(sqlstate(&error), "55P03", "{error}");

    waiter
        .batch_execute("SET lock_timeout = 0; SET statement_timeout = '200ms'")
        .unwrap();
    let error = decr(&mut waiter, id, None, Some(1)).expect_err("statement_timeout");
    assert_eq!(sqlstate(&error), "57014", "{error}");

    waiter.batch_execute("SET statement_timeout = 0").unwrap();
    let pid = backend_pid(&mut waiter);
    let cancelled = thread::scope(|scope| {
        let waiting = scope.spawn(|| decr(&mut waiter, id, None, Some(1)));
        // Cancel once the waiter is queued on the lock.
        wait_until_blocked(&mut admin, pid);
        admin
            .execute("SELECT pg_cancel_backend($1)", &[&pid])
            .unwrap();
        waiting.join().unwrap()
    });
    assert_eq!(sqlstate(&cancelled.expect_err("cancelled")), "57014");

    // Only the holder's report exists; once it commits, the waiter's retry counts.
    held.commit().unwrap();
    let remaining: i32 = admin
        .query_one("SELECT remaining FROM barrier_status($1)", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(remaining, 2);
    assert_eq!(
        decr(&mut waiter, id, None, Some(1)).unwrap().status,
        "pending"
    );
    assert_eq!(
        decr(&mut waiter, id, None, Some(2)).unwrap().status,
        "complete"
    );
}

#[test]
fn terminating_the_uncommitted_completer_lets_a_waiter_complete() {
    let id = "fault-terminate";
    let mut admin = connect();
    admin
        .execute("SELECT barrier_enqueue($1, 2)", &[&id])
        .unwrap();
    decr(&mut admin, id, Some(&json!("a")), Some(0)).unwrap();

    // The completing report, uncommitted, in a session that is then terminated.
    let mut doomed = connect();
    let doomed_pid = backend_pid(&mut doomed);
    doomed
        .batch_execute("BEGIN; SELECT barrier_decr('fault-terminate', '\"lost\"', 1)")
        .unwrap();
    let mut waiter = connect();
    let waiter_pid = backend_pid(&mut waiter);
    let answer = thread::scope(|scope| {
        let waiting = scope.spawn(|| decr(&mut waiter, id, Some(&json!("b")), Some(1)));
        wait_until_blocked(&mut admin, waiter_pid);
        let terminated: bool = admin
            .query_one("SELECT pg_terminate_backend($1)", &[&doomed_pid])
            .unwrap()
            .get(0);
        assert!(terminated);
        waiting.join().unwrap()
    });
    // The waiter completes, with its own result, not the terminated session's.
    let answer = answer.unwrap();
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.results, Some(json!(["a", "b"])));
    assert!(
        doomed.batch_execute("COMMIT").is_err(),
        "the session is gone"
    );
    assert_eq!(
        stored(&mut admin, id),
        ("complete".into(), 0, Some("[\"a\", \"b\"]".into()))
    );
}

/// Every call that changes barriers, each in a read-only transaction: 25006, and nothing changed.
#[test]
fn read_only_transactions_refuse_every_change_and_change_nothing() {
    let mut admin = connect();
    admin
        .batch_execute(
            "SELECT barrier_enqueue('ro-live', 3, '{\"next\": 1}');
             SELECT barrier_decr('ro-live', '\"a\"', 0);
             SELECT barrier_enqueue('ro-done', 1, channel => 'ro_done');
             SELECT barrier_decr('ro-done', '\"z\"', 0);",
        )
        .unwrap();
    let state = |admin: &mut postgres::Client| -> Vec<String> {
        admin
            .query(
                "SELECT s::text || coalesce(barrier_results(s.id)::text, '-')
                   FROM unnest(ARRAY['ro-live', 'ro-done', 'ro-new']) AS i(id),
                        LATERAL barrier_status(i.id) s",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let before = state(&mut admin);
    let calls = [
        "SELECT barrier_enqueue('ro-new', 2)",
        "SELECT barrier_enqueue('ro-live', 3, '{\"next\": 1}')",
        "SELECT barrier_enqueue('ro-live', 5, replace => true)",
        "SELECT barrier_decr('ro-live', '\"b\"', 1)",
        "SELECT barrier_decr('ro-live', '\"a\"', 0)",
        "SELECT barrier_decr('ro-unknown', NULL, 0)",
        "SELECT barrier_abort('ro-live')",
        "SELECT barrier_add('ro-live', 1)",
        "SELECT barrier_take('ro-done')",
        "SELECT barrier_completions('ro_done')",
        "SELECT barrier_sweep()",
    ];
    let mut client = connect();
    for call in calls {
        // A read-only transaction, and one that is read-only by default (its own statement:
        // a SET in the same query string would belong to the transaction the BEGIN continues).
        for setup in [
            &["BEGIN READ ONLY"][..],
            &["SET default_transaction_read_only = on", "BEGIN"],
        ] {
            for statement in setup {
                client.batch_execute(statement).unwrap();
            }
            let error = client.batch_execute(call).expect_err(call);
            assert_eq!(sqlstate(&error), "25006", "{call}: {error}");
            client
                .batch_execute("ROLLBACK; RESET default_transaction_read_only")
                .unwrap();
        }
    }
    // The readers work there.
    client
        .batch_execute(
            "BEGIN READ ONLY;
             SELECT * FROM barrier_status('ro-live');
             SELECT barrier_results('ro-live');
             SELECT * FROM barrier_stats();
             COMMIT;",
        )
        .unwrap();
    assert_eq!(state(&mut admin), before);
    eprintln!("read-only: {} calls refused, twice each", calls.len());
}

/// A listener that never reads does not make completions fail or vanish: they commit, the
/// notifications wait in the queue, and the listener gets every one, once, when it reads.
#[test]
fn a_listener_that_never_reads_does_not_block_completions() {
    const BARRIERS: usize = 300;
    let mut listener = connect();
    listener.batch_execute("LISTEN stalled_listener").unwrap();
    // The listener also sits in an open transaction, which holds the queue's tail.
    listener.batch_execute("BEGIN").unwrap();
    let mut worker = connect();
    for n in 0..BARRIERS {
        let id = format!("stalled-{n}");
        worker
            .execute(
                "SELECT barrier_enqueue($1, 1, channel => 'stalled_listener')",
                &[&id],
            )
            .unwrap();
        let answer = decr(&mut worker, &id, Some(&json!(n)), Some(0)).unwrap();
        assert_eq!(answer.status, "complete");
    }
    listener.batch_execute("COMMIT").unwrap();
    let mut ids = std::collections::BTreeSet::new();
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(Duration::from_secs(5));
    while let Some(notification) = iter.next().unwrap() {
        let payload: serde_json::Value = serde_json::from_str(notification.payload()).unwrap();
        assert_eq!(payload["status"], "complete");
        assert!(
            ids.insert(payload["id"].as_str().unwrap().to_string()),
            "notified twice: {payload}"
        );
        if ids.len() == BARRIERS {
            break;
        }
    }
    assert_eq!(ids.len(), BARRIERS);
}
