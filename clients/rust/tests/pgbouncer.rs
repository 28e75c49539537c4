//! The calls and the polling waiter through a transaction-pooling PgBouncer (see
//! `common::bouncer_dsn`), where consecutive statements outside a transaction may run on
//! different server connections and nothing session-level (named prepared statements, LISTEN)
//! survives.

mod common;

use std::time::Duration;

use pg_barrier_client::{
    AbortStatus, BarrierState, EnqueueOptions, EnqueueStatus, ReportStatus, Waiter, WaiterOptions,
};
use serde_json::json;

use common::{bouncer_dsn, connect, unique_channel, unique_id};

/// More clients than the pool's server connections, so that they really share them.
const CLIENTS: usize = 12;
const BARRIERS_PER_CLIENT: i32 = 10;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_call_works_with_server_connections_shared_between_clients() {
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        clients.spawn(async move {
            let mut client = connect(&bouncer_dsn()).await;
            for _ in 0..BARRIERS_PER_CLIENT {
                let id = unique_id("bouncer");
                let options = EnqueueOptions {
                    callback: Some(json!({"via": "pgbouncer"})),
                    ttl: Some(Duration::from_secs(60)),
                    ..EnqueueOptions::default()
                };
                let enqueued = pg_barrier_client::enqueue(&client, &id, 2, &options).await;
                assert_eq!(enqueued.unwrap(), EnqueueStatus::Pending);
                assert_eq!(pg_barrier_client::add(&client, &id, 1).await.unwrap(), 3);
                for slot in 0..2 {
                    let report =
                        pg_barrier_client::decr(&client, &id, Some(&json!(slot)), Some(slot))
                            .await
                            .unwrap();
                    assert_eq!(report.status, ReportStatus::Pending);
                }
                let partial = pg_barrier_client::results(&client, &id).await.unwrap();
                assert_eq!(partial, Some(json!([0, 1])));
                let report = pg_barrier_client::decr(&client, &id, Some(&json!(2)), Some(2))
                    .await
                    .unwrap();
                assert_eq!(report.status, ReportStatus::Complete);
                assert_eq!(report.results, Some(json!([0, 1, 2])));
                let status = pg_barrier_client::status(&client, &id).await.unwrap();
                assert_eq!(status.unwrap().status, BarrierState::Complete);
                let transaction = client.transaction().await.unwrap();
                let taken = pg_barrier_client::take(&transaction, &id).await.unwrap();
                assert_eq!(taken.unwrap().results, json!([0, 1, 2]));
                transaction.commit().await.unwrap();
                let aborted = pg_barrier_client::abort(&client, &id, None).await;
                assert_eq!(aborted.unwrap(), AbortStatus::AlreadyComplete);
            }
            pg_barrier_client::stats(&client).await.unwrap();
        });
    }
    while let Some(joined) = clients.join_next().await {
        joined.unwrap();
    }
}

#[tokio::test]
async fn the_polling_waiter_waits_and_consumes_completions() {
    let client = connect(&bouncer_dsn()).await;
    let options = WaiterOptions {
        listen: false,
        poll_interval: Duration::from_millis(100),
    };
    let mut waiter = Waiter::connect(&bouncer_dsn(), options).await.unwrap();
    let channel = unique_channel();
    let id = unique_id("bouncer-wait");
    let enqueue_options = EnqueueOptions {
        channel: Some(channel.clone()),
        ..EnqueueOptions::default()
    };
    pg_barrier_client::enqueue(&client, &id, 1, &enqueue_options)
        .await
        .unwrap();
    let reporter = {
        let id = id.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            pg_barrier_client::decr(&client, &id, Some(&json!("done")), None)
                .await
                .unwrap();
        })
    };
    let status = waiter.wait(&id, Duration::from_secs(10)).await.unwrap();
    assert_eq!(status.status, BarrierState::Complete);
    reporter.await.unwrap();

    let short = Duration::from_millis(500);
    let claimed = waiter.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("the completion");
    assert_eq!(claimed.completion.id, id);
    claimed.release().await.unwrap();
    let claimed = waiter.next_completion(Some(&channel), short).await.unwrap();
    let claimed = claimed.expect("released, so listed again");
    assert_eq!(claimed.completion.results, json!(["done"]));
    claimed.ack().await.unwrap();
    let after = waiter.next_completion(Some(&channel), short).await.unwrap();
    assert!(after.is_none(), "acknowledged once, for good");
}
