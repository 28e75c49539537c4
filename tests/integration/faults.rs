//! Interrupting a report while it waits for the barrier's row lock.

use std::thread;
use std::time::Duration;

use crate::support::{connect, decr, sqlstate};

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
    let pid: i32 = waiter
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let cancelled = thread::scope(|scope| {
        let waiting = scope.spawn(|| decr(&mut waiter, id, None, Some(1)));
        // Cancel once the waiter is queued on the lock.
        loop {
            let waiting_on_lock: bool = admin
                .query_one(
                    "SELECT coalesce(wait_event_type = 'Lock', false) FROM pg_stat_activity WHERE pid = $1",
                    &[&pid],
                )
                .unwrap()
                .get(0);
            if waiting_on_lock {
                break;
            }
            thread::sleep(Duration::from_millis(20));
        }
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
