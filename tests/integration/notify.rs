//! NOTIFY on terminal transitions: sent by the transaction that made the transition, delivered
//! at its commit, never on rollback.

use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::{json, Value};

use crate::support::{connect, decr};

/// Everything `listener` receives within `wait`, as parsed payloads.
fn received(listener: &mut Client, wait: Duration) -> Vec<Value> {
    let mut notifications = listener.notifications();
    let mut payloads = Vec::new();
    let mut iter = notifications.timeout_iter(wait);
    while let Some(notification) = iter.next().expect("notification stream") {
        payloads.push(serde_json::from_str(notification.payload()).expect("payload is JSON"));
    }
    payloads
}

const QUIET: Duration = Duration::from_millis(400);

fn listen(channel: &str) -> Client {
    let mut listener = connect();
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .unwrap();
    listener
}

#[test]
fn a_completion_notifies_once_at_commit() {
    let mut listener = listen("notify_once");
    let mut worker = connect();
    worker
        .execute(
            "SELECT barrier_enqueue('n-once', 2, channel => 'notify_once')",
            &[],
        )
        .unwrap();
    assert_eq!(
        decr(&mut worker, "n-once", None, None).unwrap().status,
        "pending"
    );
    let mut tx = worker.transaction().unwrap();
    assert_eq!(
        decr(&mut tx, "n-once", None, None).unwrap().status,
        "complete"
    );
    assert_eq!(
        received(&mut listener, QUIET),
        Vec::<Value>::new(),
        "nothing before commit"
    );
    tx.commit().unwrap();
    assert_eq!(
        received(&mut listener, QUIET),
        vec![json!({"id": "n-once", "status": "complete", "round": 1})]
    );
    // Late reports notify nothing.
    assert_eq!(
        decr(&mut worker, "n-once", None, None).unwrap().status,
        "already_complete"
    );
    assert_eq!(received(&mut listener, QUIET), Vec::<Value>::new());
}

#[test]
fn a_rolled_back_completion_notifies_nothing_and_the_next_report_completes() {
    let mut listener = listen("notify_rollback");
    let mut worker = connect();
    worker
        .execute(
            "SELECT barrier_enqueue('n-rollback', 1, channel => 'notify_rollback')",
            &[],
        )
        .unwrap();
    let mut tx = worker.transaction().unwrap();
    assert_eq!(
        decr(&mut tx, "n-rollback", Some(&json!("lost")), None)
            .unwrap()
            .status,
        "complete"
    );
    tx.rollback().unwrap();
    assert_eq!(received(&mut listener, QUIET), Vec::<Value>::new());
    let row = worker
        .query_one(
            "SELECT status, remaining FROM barrier_status('n-rollback')",
            &[],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        ("pending".into(), 1)
    );

    let answer = decr(&mut worker, "n-rollback", Some(&json!("kept")), None).unwrap();
    assert_eq!(
        (answer.status.as_str(), answer.results),
        ("complete", Some(json!(["kept"])))
    );
    assert_eq!(
        received(&mut listener, QUIET),
        vec![json!({"id": "n-rollback", "status": "complete", "round": 1})]
    );
}

#[test]
fn abort_empty_fan_in_and_observed_expiry_notify_too() {
    let mut listener = listen("notify_terminal");
    let mut worker = connect();
    worker
        .batch_execute(
            "SET pg_barrier.channel = 'notify_terminal';
             SELECT barrier_enqueue('n-abort', 3);
             SELECT barrier_abort('n-abort', 'cancelled by user');
             SELECT barrier_abort('n-abort');
             SELECT barrier_enqueue('n-empty', 0);
             SELECT barrier_enqueue('n-expire', 2, ttl => '1 second');",
        )
        .unwrap();
    assert_eq!(
        received(&mut listener, QUIET),
        vec![
            json!({"id": "n-abort", "status": "aborted", "round": 1}),
            json!({"id": "n-empty", "status": "complete", "round": 1}),
        ]
    );
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(
        decr(&mut worker, "n-expire", None, None).unwrap().status,
        "expired"
    );
    assert_eq!(
        decr(&mut worker, "n-expire", None, None).unwrap().status,
        "expired"
    );
    assert_eq!(
        received(&mut listener, QUIET),
        vec![json!({"id": "n-expire", "status": "expired", "round": 1})]
    );
}

#[test]
fn payloads_carry_any_id_exactly() {
    let mut listener = listen("notify_ids");
    let mut worker = connect();
    let long = "\u{1F600}'\"\\".repeat(64); // 448 bytes of emoji, quotes and backslashes
                                            // The worst case for the payload: 512 control characters, each escaped to six bytes.
    let controls = "\u{1}".repeat(512);
    let ids = [
        long.as_str(),
        controls.as_str(),
        "tab\there",
        "новый",
        "a'b\"c",
    ];
    for id in ids {
        worker
            .execute(
                "SELECT barrier_enqueue($1, 0, channel => 'notify_ids')",
                &[&id],
            )
            .unwrap();
    }
    let payloads = received(&mut listener, QUIET);
    let got: Vec<&str> = payloads.iter().map(|p| p["id"].as_str().unwrap()).collect();
    assert_eq!(got, ids);
}
