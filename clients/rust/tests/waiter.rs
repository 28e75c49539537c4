//! Notifications, the waiter and the completions consumer, against a real server (see
//! `common::dsn`).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pg_barrier_client::{
    BarrierState, CompletionStatus, EnqueueOptions, Error, Notification, OnExpiry, ReportStatus,
    Waiter, WaiterOptions,
};
use serde_json::json;
use tokio_postgres::Client;

use common::{connect, dsn, unique_channel, unique_id};

/// A poll interval so long that a test finishing well within it was woken by a notification.
const NEVER_POLLS: Duration = Duration::from_secs(60);
/// How long a notification may take to arrive on a loaded machine, and still count as prompt.
const PROMPTLY: Duration = Duration::from_secs(10);

fn listening(poll_interval: Duration) -> WaiterOptions {
    WaiterOptions {
        listen: true,
        poll_interval,
    }
}

fn polling(poll_interval: Duration) -> WaiterOptions {
    WaiterOptions {
        listen: false,
        poll_interval,
    }
}

fn on_channel(channel: &str) -> EnqueueOptions {
    EnqueueOptions {
        channel: Some(channel.to_owned()),
        ..EnqueueOptions::default()
    }
}

/// Enqueues `count` barriers of one task on `channel` and completes each, in order.
async fn complete_barriers(
    client: &Client,
    channel: &str,
    label: &str,
    count: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for number in 0..count {
        let id = unique_id(label);
        let options = EnqueueOptions {
            callback: Some(json!({"number": number})),
            ..on_channel(channel)
        };
        pg_barrier_client::enqueue(client, &id, 1, &options)
            .await
            .unwrap();
        let report = pg_barrier_client::decr(client, &id, Some(&json!(number)), Some(0))
            .await
            .unwrap();
        assert_eq!(report.status, ReportStatus::Complete);
        ids.push(id);
    }
    ids
}

#[tokio::test]
async fn the_notify_payload_deserialises_into_notification() {
    let (listener, mut notifications) = pg_barrier_client::connect(&dsn()).await.unwrap();
    let client = connect(&dsn()).await;
    let channel = unique_channel();
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();

    let complete = unique_id("notify-complete");
    pg_barrier_client::enqueue(&client, &complete, 1, &on_channel(&channel))
        .await
        .unwrap();
    pg_barrier_client::decr(&client, &complete, None, None)
        .await
        .unwrap();
    let aborted = unique_id("notify-aborted");
    pg_barrier_client::enqueue(&client, &aborted, 1, &on_channel(&channel))
        .await
        .unwrap();
    pg_barrier_client::abort(&client, &aborted, None)
        .await
        .unwrap();

    let mut received = Vec::new();
    for _ in 0..2 {
        let notification = tokio::time::timeout(PROMPTLY, notifications.recv())
            .await
            .expect("a notification within the time")
            .expect("the connection is open");
        assert_eq!(notification.channel(), channel);
        received.push(Notification::from_payload(notification.payload()).unwrap());
    }
    assert_eq!(
        received,
        [
            Notification {
                id: complete,
                status: BarrierState::Complete,
                round: 1
            },
            Notification {
                id: aborted,
                status: BarrierState::Aborted,
                round: 1
            },
        ]
    );
}

#[tokio::test]
async fn wait_is_woken_by_the_notification_of_a_completion() {
    let client = connect(&dsn()).await;
    let mut waiter = Waiter::connect(&dsn(), listening(NEVER_POLLS))
        .await
        .unwrap();
    let id = unique_id("wait-complete");
    let channel = unique_channel();
    pg_barrier_client::enqueue(&client, &id, 1, &on_channel(&channel))
        .await
        .unwrap();

    let reporter = {
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pg_barrier_client::decr(&client, &id, Some(&json!("done")), Some(0))
                .await
                .unwrap()
        })
    };
    let started = Instant::now();
    let status = waiter.wait(&id, NEVER_POLLS).await.unwrap();
    assert!(
        started.elapsed() < PROMPTLY,
        "woken by LISTEN, not by polling"
    );
    assert_eq!(status.status, BarrierState::Complete);
    assert_eq!(status.id, id);
    assert_eq!(reporter.await.unwrap().status, ReportStatus::Complete);

    // A finished barrier answers at once.
    let status = waiter.wait(&id, Duration::ZERO).await.unwrap();
    assert_eq!(status.status, BarrierState::Complete);
}

#[tokio::test]
async fn wait_by_polling_returns_an_abort_and_an_expiry() {
    let client = connect(&dsn()).await;
    let mut waiter = Waiter::connect(&dsn(), polling(Duration::from_millis(100)))
        .await
        .unwrap();
    let id = unique_id("wait-aborted");
    pg_barrier_client::enqueue(&client, &id, 3, &EnqueueOptions::default())
        .await
        .unwrap();
    let aborter = {
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pg_barrier_client::abort(&client, &id, Some("given up"))
                .await
                .unwrap();
            client
        })
    };
    let status = waiter.wait(&id, PROMPTLY).await.unwrap();
    assert_eq!(status.status, BarrierState::Aborted);
    assert_eq!(status.reason.as_deref(), Some("given up"));
    let client = aborter.await.unwrap();

    // No notification goes out for an expiry nobody touches: the waiter reads it.
    let expiring = unique_id("wait-expired");
    let options = EnqueueOptions {
        ttl: Some(Duration::from_secs(1)),
        ..EnqueueOptions::default()
    };
    pg_barrier_client::enqueue(&client, &expiring, 1, &options)
        .await
        .unwrap();
    let status = waiter.wait(&expiring, PROMPTLY).await.unwrap();
    assert_eq!(status.status, BarrierState::Expired);
}

#[tokio::test]
async fn wait_times_out_on_a_pending_barrier_and_rejects_an_unknown_one() {
    let client = connect(&dsn()).await;
    let mut waiter = Waiter::connect(&dsn(), listening(Duration::from_millis(100)))
        .await
        .unwrap();
    let id = unique_id("wait-timeout");
    pg_barrier_client::enqueue(&client, &id, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    let started = Instant::now();
    let error = waiter
        .wait(&id, Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(400));
    match error {
        Error::Timeout {
            id: waited_for,
            waited,
        } => {
            assert_eq!(waited_for, id);
            assert!(waited >= Duration::from_millis(400));
        }
        other => panic!("expected Timeout, got {other:?}"),
    }

    let unknown = unique_id("wait-unknown");
    let error = waiter.wait(&unknown, PROMPTLY).await.unwrap_err();
    assert!(
        matches!(&error, Error::UnknownBarrier { id, source: None } if *id == unknown),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumers_racing_hand_out_each_of_fifty_completions_once() {
    let client = connect(&dsn()).await;
    let channel = unique_channel();
    let ids = complete_barriers(&client, &channel, "race-consumers", 50).await;

    let start = Arc::new(tokio::sync::Barrier::new(2));
    let mut consumers = tokio::task::JoinSet::new();
    for _ in 0..2 {
        let (channel, start) = (channel.clone(), Arc::clone(&start));
        consumers.spawn(async move {
            let mut waiter = Waiter::connect(&dsn(), listening(Duration::from_millis(200)))
                .await
                .unwrap();
            start.wait().await;
            let mut handled = Vec::new();
            while let Some(claimed) = waiter
                .next_completion(Some(&channel), Duration::from_millis(500))
                .await
                .unwrap()
            {
                // Hold the claim a moment, so that the other consumer works meanwhile.
                tokio::time::sleep(Duration::from_millis(5)).await;
                let completion = claimed.ack().await.unwrap();
                let number = completion.callback.as_ref().unwrap()["number"].clone();
                assert_eq!(completion.results, json!([number]));
                handled.push(completion.id);
            }
            handled
        });
    }
    let mut per_consumer = Vec::new();
    while let Some(joined) = consumers.join_next().await {
        per_consumer.push(joined.unwrap());
    }
    let all: Vec<&String> = per_consumer.iter().flatten().collect();
    let distinct: BTreeSet<&String> = all.iter().copied().collect();
    assert_eq!(
        all.len(),
        50,
        "each completion handed out once: {per_consumer:?}"
    );
    assert_eq!(distinct, ids.iter().collect::<BTreeSet<_>>());
    assert!(
        per_consumer.iter().all(|handled| !handled.is_empty()),
        "both consumers took part: {per_consumer:?}"
    );
}

#[tokio::test]
async fn a_completion_not_acknowledged_is_handed_out_again() {
    let client = connect(&dsn()).await;
    let channel = unique_channel();
    let ids = complete_barriers(&client, &channel, "unacknowledged", 1).await;
    let options = polling(Duration::from_millis(100));
    let mut first = Waiter::connect(&dsn(), options.clone()).await.unwrap();
    let mut second = Waiter::connect(&dsn(), options).await.unwrap();
    let short = Duration::from_millis(300);

    // Held by one consumer, it is not handed to another.
    let claimed = first.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("a completion is ready");
    assert_eq!(claimed.completion.id, ids[0]);
    let meanwhile = second.next_completion(Some(&channel), short).await.unwrap();
    assert!(meanwhile.is_none(), "claimed elsewhere");

    // A failed handler releases it: the other consumer gets it.
    claimed.release().await.unwrap();
    let claimed = second.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("released, so listed again");
    assert_eq!(claimed.completion.id, ids[0]);

    // Dropped without an acknowledgement: the same.
    drop(claimed);
    let claimed = second.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("dropped, so listed again");
    assert_eq!(claimed.completion.id, ids[0]);

    // A failed statement in the claim's transaction makes the acknowledgement fail.
    let failed = claimed.client().batch_execute("SELECT 1/0").await;
    assert!(failed.is_err());
    let error = claimed.ack().await.unwrap_err();
    assert!(error.postgres().is_some(), "{error:?}");
    let claimed = second.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("not acknowledged, so listed again");
    assert_eq!(claimed.completion.id, ids[0]);

    // Acknowledged: gone for everyone.
    claimed.ack().await.unwrap();
    let after = first.next_completion(Some(&channel), short).await.unwrap();
    assert!(after.is_none());
    let after = second.next_completion(Some(&channel), Duration::ZERO).await;
    assert!(after.unwrap().is_none());
}

#[tokio::test]
async fn the_handlers_writes_commit_and_roll_back_with_the_claim() {
    let client = connect(&dsn()).await;
    let channel = unique_channel();
    complete_barriers(&client, &channel, "handler-writes", 1).await;
    let mut waiter = Waiter::connect(&dsn(), polling(Duration::from_millis(100)))
        .await
        .unwrap();
    let short = Duration::from_millis(300);

    let next = unique_id("handler-next");
    let claimed = waiter.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("a completion is ready");
    pg_barrier_client::enqueue(claimed.client(), &next, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    claimed.release().await.unwrap();
    let status = pg_barrier_client::status(&client, &next).await.unwrap();
    assert_eq!(status, None, "rolled back with the claim");

    let claimed = waiter.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("listed again");
    pg_barrier_client::enqueue(claimed.client(), &next, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    claimed.ack().await.unwrap();
    let status = pg_barrier_client::status(&client, &next).await.unwrap();
    assert!(status.is_some(), "committed with the acknowledgement");
}

/// Terminates a backend from another connection, waiting until it is gone.
async fn terminate(killer: &Client, pid: i32) {
    let row = killer
        .query_one(
            "SELECT pg_terminate_backend($1::int4, 10000::int8)",
            &[&pid],
        )
        .await
        .unwrap();
    assert!(row.get::<_, bool>(0), "backend {pid} terminated");
}

#[tokio::test]
async fn a_consumer_whose_backend_is_terminated_reconnects_and_goes_on() {
    let client = connect(&dsn()).await;
    let killer = connect(&dsn()).await;
    let channel = unique_channel();
    let mut consumer = Waiter::connect(&dsn(), listening(Duration::from_millis(200)))
        .await
        .unwrap();
    let timeout = PROMPTLY;

    let first = complete_barriers(&client, &channel, "terminated", 1).await;
    let claimed = consumer.next_completion(Some(&channel), timeout).await;
    let claimed = claimed.unwrap().expect("the first completion");
    assert_eq!(claimed.completion.id, first[0]);
    claimed.ack().await.unwrap();

    // Terminated while idle: the next claim reconnects and finds the later completion.
    let killed_pid = consumer.backend_pid();
    terminate(&killer, killed_pid).await;
    let second = complete_barriers(&client, &channel, "terminated", 1).await;
    let claimed = consumer.next_completion(Some(&channel), timeout).await;
    let claimed = claimed.unwrap().expect("a completion after the reconnect");
    assert_eq!(claimed.completion.id, second[0]);
    claimed.ack().await.unwrap();
    assert_ne!(consumer.backend_pid(), killed_pid, "a new connection");

    // Terminated while holding a claim: the acknowledgement fails, nothing is lost, and the
    // completion is handed out again after the reconnect.
    let third = complete_barriers(&client, &channel, "terminated", 1).await;
    let claimed = consumer.next_completion(Some(&channel), timeout).await;
    let claimed = claimed.unwrap().expect("the third completion");
    assert_eq!(claimed.completion.id, third[0]);
    let holding_pid: i32 = claimed
        .client()
        .query_one("SELECT pg_backend_pid()", &[])
        .await
        .unwrap()
        .get(0);
    terminate(&killer, holding_pid).await;
    assert!(claimed.ack().await.is_err(), "the connection is gone");
    let claimed = consumer.next_completion(Some(&channel), timeout).await;
    let claimed = claimed.unwrap().expect("handed out again");
    assert_eq!(claimed.completion.id, third[0]);
    claimed.ack().await.unwrap();

    // The waiter reconnects too.
    let pending = unique_id("terminated-wait");
    pg_barrier_client::enqueue(&client, &pending, 1, &on_channel(&channel))
        .await
        .unwrap();
    terminate(&killer, consumer.backend_pid()).await;
    let reporter = {
        let pending = pending.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pg_barrier_client::decr(&client, &pending, None, None)
                .await
                .unwrap();
        })
    };
    let status = consumer.wait(&pending, timeout).await.unwrap();
    assert_eq!(status.status, BarrierState::Complete);
    reporter.await.unwrap();
}

#[tokio::test]
async fn wait_returns_a_completion_with_failures_and_waits_for_a_seal() {
    let client = connect(&dsn()).await;
    let mut waiter = Waiter::connect(&dsn(), listening(NEVER_POLLS))
        .await
        .unwrap();
    let channel = unique_channel();
    let id = unique_id("wait-failures");
    pg_barrier_client::enqueue(&client, &id, 2, &on_channel(&channel))
        .await
        .unwrap();
    let open = unique_id("wait-open");
    let open_options = EnqueueOptions {
        sealed: false,
        ..on_channel(&channel)
    };
    pg_barrier_client::enqueue(&client, &open, 1, &open_options)
        .await
        .unwrap();
    let reporter = {
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pg_barrier_client::decr(&client, &id, Some(&json!("ok")), Some(0))
                .await
                .unwrap();
            pg_barrier_client::decr_failed(&client, &id, Some(&json!("e")), Some(1))
                .await
                .unwrap();
            client
        })
    };
    let started = Instant::now();
    let status = waiter.wait(&id, NEVER_POLLS).await.unwrap();
    assert!(started.elapsed() < PROMPTLY, "woken by the notification");
    assert_eq!(status.status, BarrierState::CompleteWithFailures);
    assert_eq!((status.failed, status.remaining), (1, 0));
    let client = reporter.await.unwrap();

    // Every report in, but open: not finished until sealed.
    let report = pg_barrier_client::decr(&client, &open, None, Some(0))
        .await
        .unwrap();
    assert_eq!(
        (report.status, report.remaining),
        (ReportStatus::Pending, Some(0))
    );
    let error = waiter
        .wait(&open, Duration::from_millis(400))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Timeout { .. }), "{error:?}");
    let sealer = {
        let open = open.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pg_barrier_client::seal(&client, &open).await.unwrap()
        })
    };
    let status = waiter.wait(&open, NEVER_POLLS).await.unwrap();
    assert_eq!(
        (status.status, status.sealed),
        (BarrierState::Complete, true)
    );
    assert_eq!(sealer.await.unwrap().status, ReportStatus::Complete);
}

#[tokio::test]
async fn the_consumer_hands_out_completions_with_failures_and_delivered_expiries() {
    let client = connect(&dsn()).await;
    let channel = unique_channel();
    let (failures, delivered) = (unique_id("claim-failures"), unique_id("claim-delivered"));
    pg_barrier_client::enqueue(&client, &failures, 2, &on_channel(&channel))
        .await
        .unwrap();
    pg_barrier_client::decr(&client, &failures, Some(&json!("a")), Some(0))
        .await
        .unwrap();
    pg_barrier_client::decr_failed(&client, &failures, Some(&json!("e")), Some(1))
        .await
        .unwrap();
    let delivering = EnqueueOptions {
        ttl: Some(Duration::from_secs(1)),
        on_expiry: OnExpiry::Deliver,
        ..on_channel(&channel)
    };
    pg_barrier_client::enqueue(&client, &delivered, 2, &delivering)
        .await
        .unwrap();
    pg_barrier_client::decr(&client, &delivered, Some(&json!("b")), Some(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1300)).await;
    // barrier_completions claims stored completions: the sweep stores the expiry.
    pg_barrier_client::sweep(&client, pg_barrier_client::DEFAULT_SWEEP_MAX_ROWS)
        .await
        .unwrap();

    let mut waiter = Waiter::connect(&dsn(), polling(Duration::from_millis(100)))
        .await
        .unwrap();
    let mut handed = Vec::new();
    while let Some(claimed) = waiter
        .next_completion(Some(&channel), Duration::from_secs(1))
        .await
        .unwrap()
    {
        handed.push(claimed.ack().await.unwrap());
    }
    handed.sort_by_key(|completion| completion.id != failures);
    assert_eq!(handed.len(), 2, "{handed:?}");
    assert_eq!(handed[0].id, failures);
    assert_eq!(handed[0].status, CompletionStatus::CompleteWithFailures);
    assert_eq!(handed[0].results, json!(["a", null]));
    assert_eq!(handed[0].failed_slots, vec![1]);
    assert_eq!(handed[0].errors, json!(["e"]));
    assert_eq!(handed[1].id, delivered);
    assert_eq!(handed[1].status, CompletionStatus::Expired);
    assert_eq!(handed[1].results, json!([null, "b"]));
    assert_eq!(handed[1].missing_slots, vec![0]);
}
