//! Every typed call's answers and errors, against a real server (see `common::dsn`).

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use pg_barrier_client::{
    AbortStatus, BarrierState, EnqueueOptions, EnqueueStatus, Error, ReportStatus,
};
use serde_json::{json, Value};

use common::{connect, dsn, other_dsn, unique_channel, unique_id};

fn with_ttl(ttl: Duration) -> EnqueueOptions {
    EnqueueOptions {
        ttl: Some(ttl),
        ..EnqueueOptions::default()
    }
}

/// Long enough for a barrier with a one-second ttl to be past it, whatever the clocks' rounding.
const PAST_A_ONE_SECOND_TTL: Duration = Duration::from_millis(1300);

#[tokio::test]
async fn enqueue_answers_pending_complete_and_accepts_a_same_argument_retry() {
    let client = connect(&dsn()).await;
    let id = unique_id("enqueue");
    let options = EnqueueOptions {
        callback: Some(json!({"task": "publish", "kwargs": {"day": 29}})),
        ttl: Some(Duration::from_millis(7_200_500)),
        channel: Some(unique_channel()),
        replace: false,
        stall_timeout: Some(Duration::from_secs(90)),
        ..EnqueueOptions::default()
    };
    let first = pg_barrier_client::enqueue(&client, &id, 3, &options).await;
    assert_eq!(first.unwrap(), EnqueueStatus::Pending);
    // The same arguments again (intervals sent as seconds compare equal): a retry, no conflict.
    let retried = pg_barrier_client::enqueue(&client, &id, 3, &options).await;
    assert_eq!(retried.unwrap(), EnqueueStatus::Pending);

    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    let status = status.expect("an enqueued barrier has a status row");
    let ttl = status.expires_at.duration_since(status.created_at).unwrap();
    assert_eq!(
        ttl,
        Duration::from_millis(7_200_500),
        "the ttl keeps its milliseconds"
    );

    let empty = unique_id("enqueue-empty");
    let answer = pg_barrier_client::enqueue(&client, &empty, 0, &EnqueueOptions::default()).await;
    assert_eq!(answer.unwrap(), EnqueueStatus::Complete);
}

#[tokio::test]
async fn decr_answers_pending_duplicate_and_complete_with_results_in_slot_order() {
    let client = connect(&dsn()).await;
    let id = unique_id("decr-slots");
    let callback = json!({"task": "merge", "files": ["a", "b", "c"]});
    let options = EnqueueOptions {
        callback: Some(callback.clone()),
        ..EnqueueOptions::default()
    };
    pg_barrier_client::enqueue(&client, &id, 3, &options)
        .await
        .unwrap();

    let slot_two = json!({"slot": 2, "rows": 7});
    let report = pg_barrier_client::decr(&client, &id, Some(&slot_two), Some(2))
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Pending);
    assert_eq!(report.remaining, Some(2));
    assert_eq!(report.results, None, "only `complete` carries results");
    assert_eq!(
        report.callback, None,
        "only `complete` carries the callback"
    );

    let again = pg_barrier_client::decr(&client, &id, Some(&json!("ignored")), Some(2))
        .await
        .unwrap();
    assert_eq!(again.status, ReportStatus::Duplicate);
    assert_eq!(again.remaining, Some(2));

    // Slot 1 reports without a result: JSON null in its place.
    let report = pg_barrier_client::decr(&client, &id, None, Some(1))
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Pending);
    assert_eq!(report.remaining, Some(1));

    let slot_zero = json!([0, "zero"]);
    let report = pg_barrier_client::decr(&client, &id, Some(&slot_zero), Some(0))
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Complete);
    assert_eq!(report.remaining, Some(0));
    assert_eq!(report.results, Some(json!([slot_zero, null, slot_two])));
    assert_eq!(report.callback, Some(callback));

    let late = pg_barrier_client::decr(&client, &id, None, Some(1))
        .await
        .unwrap();
    assert_eq!(
        late.status,
        ReportStatus::Duplicate,
        "a slot repeated after completion"
    );
}

#[tokio::test]
async fn decr_answers_already_complete_aborted_expired_and_unknown() {
    let client = connect(&dsn()).await;

    let unslotted = unique_id("decr-unslotted");
    pg_barrier_client::enqueue(&client, &unslotted, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    let report = pg_barrier_client::decr(&client, &unslotted, Some(&json!(1)), None)
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Complete);
    assert_eq!(report.results, Some(json!([1])));
    let report = pg_barrier_client::decr(&client, &unslotted, Some(&json!(2)), None)
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::AlreadyComplete);
    assert_eq!(report.remaining, Some(0));
    assert_eq!(report.results, None);

    let aborted = unique_id("decr-aborted");
    pg_barrier_client::enqueue(&client, &aborted, 2, &EnqueueOptions::default())
        .await
        .unwrap();
    pg_barrier_client::abort(&client, &aborted, Some("a task failed"))
        .await
        .unwrap();
    let report = pg_barrier_client::decr(&client, &aborted, None, Some(0))
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Aborted);
    assert_eq!(report.remaining, Some(2));

    let expired = unique_id("decr-expired");
    let one_second = with_ttl(Duration::from_secs(1));
    pg_barrier_client::enqueue(&client, &expired, 2, &one_second)
        .await
        .unwrap();
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;
    let report = pg_barrier_client::decr(&client, &expired, None, Some(0))
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Expired);
    assert_eq!(report.remaining, Some(2), "nothing counted");

    let unknown = unique_id("decr-unknown");
    let report = pg_barrier_client::decr(&client, &unknown, None, None)
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Unknown);
    assert_eq!(report.remaining, None);
}

#[tokio::test]
async fn abort_answers_each_of_its_statuses() {
    let client = connect(&dsn()).await;

    let id = unique_id("abort");
    pg_barrier_client::enqueue(&client, &id, 2, &EnqueueOptions::default())
        .await
        .unwrap();
    let first = pg_barrier_client::abort(&client, &id, Some("operator said so")).await;
    assert_eq!(first.unwrap(), AbortStatus::Aborted);
    let second = pg_barrier_client::abort(&client, &id, None).await;
    assert_eq!(second.unwrap(), AbortStatus::AlreadyAborted);
    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    let status = status.expect("an aborted barrier keeps its status row");
    assert_eq!(status.status, BarrierState::Aborted);
    assert_eq!(status.reason.as_deref(), Some("operator said so"));
    assert!(status.finished_at.is_some());

    let complete = unique_id("abort-complete");
    pg_barrier_client::enqueue(&client, &complete, 0, &EnqueueOptions::default())
        .await
        .unwrap();
    let answer = pg_barrier_client::abort(&client, &complete, None).await;
    assert_eq!(answer.unwrap(), AbortStatus::AlreadyComplete);

    let expired = unique_id("abort-expired");
    pg_barrier_client::enqueue(&client, &expired, 1, &with_ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;
    let answer = pg_barrier_client::abort(&client, &expired, None).await;
    assert_eq!(answer.unwrap(), AbortStatus::Expired);

    let unknown = unique_id("abort-unknown");
    let answer = pg_barrier_client::abort(&client, &unknown, None).await;
    assert_eq!(answer.unwrap(), AbortStatus::Unknown);
}

#[tokio::test]
async fn add_grows_expected_and_the_new_slots_count() {
    let client = connect(&dsn()).await;
    let id = unique_id("add");
    pg_barrier_client::enqueue(&client, &id, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    let expected = pg_barrier_client::add(&client, &id, 2).await.unwrap();
    assert_eq!(expected, 3);
    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    let status = status.expect("status row");
    assert_eq!((status.expected, status.remaining), (3, 3));
    for slot in [2, 0] {
        let report = pg_barrier_client::decr(&client, &id, Some(&json!(slot)), Some(slot))
            .await
            .unwrap();
        assert_eq!(report.status, ReportStatus::Pending);
    }
    let report = pg_barrier_client::decr(&client, &id, Some(&json!(1)), Some(1))
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Complete);
    assert_eq!(report.results, Some(json!([0, 1, 2])));
}

#[tokio::test]
async fn status_describes_a_barrier_through_its_rounds() {
    let client = connect(&dsn()).await;
    let id = unique_id("status");
    let channel = unique_channel();
    let before = SystemTime::now() - Duration::from_secs(5);
    let options = EnqueueOptions {
        callback: Some(json!({"next": "report"})),
        ttl: Some(Duration::from_secs(600)),
        channel: Some(channel.clone()),
        ..EnqueueOptions::default()
    };
    pg_barrier_client::enqueue(&client, &id, 2, &options)
        .await
        .unwrap();
    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    let status = status.expect("status row");
    assert_eq!(status.id, id);
    assert_eq!(status.status, BarrierState::Pending);
    assert_eq!((status.expected, status.remaining), (2, 2));
    assert_eq!(status.channel, channel);
    assert_eq!(status.callback, Some(json!({"next": "report"})));
    assert_eq!(status.reason, None);
    assert_eq!(status.round, 1);
    assert_eq!(status.finished_at, None);
    assert!(status.created_at > before, "created_at is a real timestamp");
    let ttl = status.expires_at.duration_since(status.created_at).unwrap();
    assert_eq!(ttl, Duration::from_secs(600));

    pg_barrier_client::decr(&client, &id, None, Some(0))
        .await
        .unwrap();
    pg_barrier_client::decr(&client, &id, None, Some(1))
        .await
        .unwrap();
    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    let status = status.expect("status row");
    assert_eq!(status.status, BarrierState::Complete);
    assert_eq!(status.remaining, 0);
    let finished_at = status.finished_at.expect("a complete barrier has finished");
    assert!(finished_at >= status.created_at);

    // A finished barrier enqueued again starts round 2, with the new arguments.
    pg_barrier_client::enqueue(&client, &id, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    let status = status.expect("status row");
    assert_eq!(status.round, 2);
    assert_eq!(status.status, BarrierState::Pending);
    assert_eq!(status.channel, "pg_barrier", "the default channel");

    let unknown = unique_id("status-unknown");
    let status = pg_barrier_client::status(&client, &unknown).await.unwrap();
    assert_eq!(status, None);

    let expired = unique_id("status-expired");
    pg_barrier_client::enqueue(&client, &expired, 1, &with_ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;
    let status = pg_barrier_client::status(&client, &expired).await.unwrap();
    assert_eq!(status.expect("status row").status, BarrierState::Expired);
}

#[tokio::test]
async fn results_and_take_hand_out_the_results_once() {
    let mut client = connect(&dsn()).await;
    let id = unique_id("take");
    let options = EnqueueOptions {
        callback: Some(json!("cb")),
        ..EnqueueOptions::default()
    };
    pg_barrier_client::enqueue(&client, &id, 2, &options)
        .await
        .unwrap();
    pg_barrier_client::decr(&client, &id, Some(&json!("one")), Some(1))
        .await
        .unwrap();
    let partial = pg_barrier_client::results(&client, &id).await.unwrap();
    assert_eq!(
        partial,
        Some(json!(["one"])),
        "only the slots that reported"
    );
    let early = pg_barrier_client::take(&client, &id).await.unwrap();
    assert_eq!(early, None, "a pending barrier is not taken");

    pg_barrier_client::decr(&client, &id, Some(&json!("zero")), Some(0))
        .await
        .unwrap();
    let full = pg_barrier_client::results(&client, &id).await.unwrap();
    assert_eq!(full, Some(json!(["zero", "one"])));

    // A take that rolls back hands nothing out.
    let transaction = client.transaction().await.unwrap();
    let taken = pg_barrier_client::take(&transaction, &id).await.unwrap();
    assert!(taken.is_some());
    transaction.rollback().await.unwrap();

    let taken = pg_barrier_client::take(&client, &id).await.unwrap();
    let taken = taken.expect("the first committed take gets the row");
    assert_eq!(taken.results, json!(["zero", "one"]));
    assert_eq!(taken.callback, Some(json!("cb")));
    let again = pg_barrier_client::take(&client, &id).await.unwrap();
    assert_eq!(again, None, "handed out once");
    let freed = pg_barrier_client::results(&client, &id).await.unwrap();
    assert_eq!(freed, None);

    let unknown = unique_id("take-unknown");
    assert_eq!(
        pg_barrier_client::take(&client, &unknown).await.unwrap(),
        None
    );
    let results = pg_barrier_client::results(&client, &unknown).await.unwrap();
    assert_eq!(results, None);
}

#[tokio::test]
async fn completions_claims_oldest_first_and_a_rollback_lists_them_again() {
    let mut client = connect(&dsn()).await;
    let channel = unique_channel();
    let ids: Vec<String> = (0..3).map(|_| unique_id("completions")).collect();
    for (number, id) in ids.iter().enumerate() {
        let options = EnqueueOptions {
            callback: Some(json!({"number": number})),
            channel: Some(channel.clone()),
            ..EnqueueOptions::default()
        };
        pg_barrier_client::enqueue(&client, id, 1, &options)
            .await
            .unwrap();
        pg_barrier_client::decr(&client, id, Some(&json!(number)), None)
            .await
            .unwrap();
    }

    let transaction = client.transaction().await.unwrap();
    let claimed = pg_barrier_client::completions(&transaction, Some(&channel), 2)
        .await
        .unwrap();
    let claimed_ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(
        claimed_ids,
        [ids[0].as_str(), ids[1].as_str()],
        "oldest first"
    );
    assert_eq!(claimed[1].results, json!([1]));
    assert_eq!(claimed[1].callback, Some(json!({"number": 1})));
    transaction.rollback().await.unwrap();

    let transaction = client.transaction().await.unwrap();
    let claimed = pg_barrier_client::completions(
        &transaction,
        Some(&channel),
        pg_barrier_client::DEFAULT_COMPLETIONS_MAX_ROWS,
    )
    .await
    .unwrap();
    assert_eq!(claimed.len(), 3, "the rolled-back claims are listed again");
    transaction.commit().await.unwrap();
    let after = pg_barrier_client::completions(&client, Some(&channel), 10)
        .await
        .unwrap();
    assert!(after.is_empty(), "committed claims are gone");
}

#[tokio::test]
async fn sweep_expires_overdue_barriers_and_stats_counts_them() {
    let client = connect(&dsn()).await;
    let overdue = unique_id("sweep");
    pg_barrier_client::enqueue(&client, &overdue, 1, &with_ttl(Duration::from_secs(1)))
        .await
        .unwrap();
    let pending = unique_id("stats-pending");
    pg_barrier_client::enqueue(&client, &pending, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;

    let stats = pg_barrier_client::stats(&client).await.unwrap();
    assert!(stats.pending >= 1, "{stats:?}");
    let oldest = stats.oldest_pending_age.expect("a barrier is pending");
    assert!(oldest >= Duration::from_secs(1), "{stats:?}");

    // No other test sweeps, and nothing else touches this barrier: this sweep expires it (and
    // maybe other tests' overdue barriers too).
    let sweep = pg_barrier_client::sweep(&client, pg_barrier_client::DEFAULT_SWEEP_MAX_ROWS)
        .await
        .unwrap();
    assert!(sweep.expired >= 1, "{sweep:?}");
    assert!(sweep.deleted >= 0, "{sweep:?}");
    let status = pg_barrier_client::status(&client, &overdue).await.unwrap();
    let status = status.expect("an expired barrier keeps its row");
    assert_eq!(status.status, BarrierState::Expired);
    assert!(status.finished_at.is_some(), "the sweep ended the round");

    let later = pg_barrier_client::stats(&client).await.unwrap();
    assert!(later.expired >= 1, "{later:?}");
}

#[tokio::test]
async fn a_report_in_a_rolled_back_transaction_does_not_count() {
    let mut client = connect(&dsn()).await;
    let id = unique_id("rollback");
    pg_barrier_client::enqueue(&client, &id, 1, &EnqueueOptions::default())
        .await
        .unwrap();
    let transaction = client.transaction().await.unwrap();
    let report = pg_barrier_client::decr(&transaction, &id, None, Some(0))
        .await
        .unwrap();
    assert_eq!(report.status, ReportStatus::Complete);
    transaction.rollback().await.unwrap();
    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    assert_eq!(status.expect("status row").status, BarrierState::Pending);
}

fn sqlstate(error: &Error) -> &str {
    error.sqlstate().map_or("none", |code| code.code())
}

#[tokio::test]
async fn errors_map_to_their_variants() {
    let mut client = connect(&dsn()).await;

    let id = unique_id("errors");
    pg_barrier_client::enqueue(&client, &id, 2, &EnqueueOptions::default())
        .await
        .unwrap();
    let error = pg_barrier_client::enqueue(&client, &id, 3, &EnqueueOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Conflict(_)), "{error:?}");
    assert_eq!(sqlstate(&error), "42710");
    assert!(
        std::error::Error::source(&error).is_some(),
        "the server's error is kept"
    );
    let replaced = EnqueueOptions {
        replace: true,
        ..EnqueueOptions::default()
    };
    let answer = pg_barrier_client::enqueue(&client, &id, 3, &replaced).await;
    assert_eq!(answer.unwrap(), EnqueueStatus::Pending);

    let negative = pg_barrier_client::enqueue(&client, &unique_id("neg"), -1, &replaced)
        .await
        .unwrap_err();
    assert!(
        matches!(negative, Error::InvalidArgument(_)),
        "{negative:?}"
    );
    assert_eq!(sqlstate(&negative), "22023");
    assert!(negative.to_string().contains("expected"), "{negative}");

    let zero_ttl = with_ttl(Duration::ZERO);
    let error = pg_barrier_client::enqueue(&client, &unique_id("ttl"), 1, &zero_ttl)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");

    let bad_channel = EnqueueOptions {
        channel: Some("Not A Channel".to_owned()),
        ..EnqueueOptions::default()
    };
    let error = pg_barrier_client::enqueue(&client, &unique_id("channel"), 1, &bad_channel)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");

    let error = pg_barrier_client::decr(&client, &id, None, Some(3))
        .await
        .unwrap_err();
    assert!(
        matches!(error, Error::InvalidArgument(_)),
        "slot out of range: {error:?}"
    );

    let error = pg_barrier_client::status(&client, "").await.unwrap_err();
    assert!(
        matches!(error, Error::InvalidArgument(_)),
        "empty id: {error:?}"
    );

    let too_long = "x".repeat(513);
    let error = pg_barrier_client::decr(&client, &too_long, None, None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    assert_eq!(sqlstate(&error), "22001");

    let error = pg_barrier_client::completions(&client, None, 0)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");

    let unknown = unique_id("add-unknown");
    let error = pg_barrier_client::add(&client, &unknown, 1)
        .await
        .unwrap_err();
    match &error {
        Error::UnknownBarrier { id, source } => {
            assert_eq!(id, &unknown);
            assert!(source.is_some());
        }
        other => panic!("expected UnknownBarrier, got {other:?}"),
    }

    let complete = unique_id("add-complete");
    pg_barrier_client::enqueue(&client, &complete, 0, &EnqueueOptions::default())
        .await
        .unwrap();
    let error = pg_barrier_client::add(&client, &complete, 1)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Finished(_)), "{error:?}");

    // Over pg_barrier.max_result_bytes (1 MB by default).
    let huge = Value::String("x".repeat(1_100_000));
    let error = pg_barrier_client::decr(&client, &id, Some(&huge), Some(0))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::LimitExceeded(_)), "{error:?}");

    let transaction = client
        .build_transaction()
        .read_only(true)
        .start()
        .await
        .unwrap();
    let error = pg_barrier_client::decr(&transaction, &id, None, Some(0))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::ReadOnly(_)), "{error:?}");
    transaction.rollback().await.unwrap();
}

#[tokio::test]
async fn another_roles_barrier_is_refused_with_not_owner() {
    let client = connect(&dsn()).await;
    let other = connect(&other_dsn()).await;
    let id = unique_id("owner");
    pg_barrier_client::enqueue(&client, &id, 2, &EnqueueOptions::default())
        .await
        .unwrap();

    let error = pg_barrier_client::decr(&other, &id, None, Some(0))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotOwner(_)), "{error:?}");
    let error = pg_barrier_client::abort(&other, &id, None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotOwner(_)), "{error:?}");
    let error = pg_barrier_client::enqueue(&other, &id, 2, &EnqueueOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotOwner(_)), "{error:?}");

    let status = pg_barrier_client::status(&client, &id).await.unwrap();
    assert_eq!(status.expect("status row").remaining, 2, "nothing changed");
}

#[tokio::test]
async fn a_repeatable_read_report_racing_a_committed_one_is_a_serialization_failure() {
    let client = connect(&dsn()).await;
    let mut racer = connect(&dsn()).await;
    let id = unique_id("serialization");
    pg_barrier_client::enqueue(&client, &id, 3, &EnqueueOptions::default())
        .await
        .unwrap();

    let transaction = racer
        .build_transaction()
        .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
        .start()
        .await
        .unwrap();
    // Takes the snapshot before the other report commits.
    pg_barrier_client::status(&transaction, &id).await.unwrap();
    pg_barrier_client::decr(&client, &id, None, Some(0))
        .await
        .unwrap();
    let error = pg_barrier_client::decr(&transaction, &id, None, Some(1))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::SerializationFailure(_)), "{error:?}");
    assert!(error.is_retryable());
    transaction.rollback().await.unwrap();

    let retried = pg_barrier_client::decr(&racer, &id, None, Some(1))
        .await
        .unwrap();
    assert_eq!(retried.status, ReportStatus::Pending);
    assert_eq!(retried.remaining, Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sixteen_connections_race_and_exactly_one_report_completes() {
    const CONNECTIONS: i32 = 16;
    const SLOTS_PER_CONNECTION: i32 = 8;
    const SLOTS: i32 = CONNECTIONS * SLOTS_PER_CONNECTION;

    let setup = connect(&dsn()).await;
    let id = unique_id("race");
    let callback = json!({"then": "publish"});
    let options = EnqueueOptions {
        callback: Some(callback.clone()),
        ..EnqueueOptions::default()
    };
    pg_barrier_client::enqueue(&setup, &id, SLOTS, &options)
        .await
        .unwrap();

    let start = Arc::new(tokio::sync::Barrier::new(CONNECTIONS as usize));
    let mut reporters = tokio::task::JoinSet::new();
    for connection in 0..CONNECTIONS {
        let (id, start) = (id.clone(), Arc::clone(&start));
        reporters.spawn(async move {
            let client = connect(&dsn()).await;
            start.wait().await;
            let mut reports = Vec::new();
            for round in 0..SLOTS_PER_CONNECTION {
                let slot = round * CONNECTIONS + connection;
                let result = json!({"slot": slot});
                let report = pg_barrier_client::decr(&client, &id, Some(&result), Some(slot))
                    .await
                    .unwrap();
                reports.push(report);
            }
            reports
        });
    }
    let mut reports = Vec::new();
    while let Some(joined) = reporters.join_next().await {
        reports.extend(joined.unwrap());
    }

    assert_eq!(reports.len(), SLOTS as usize);
    let complete: Vec<_> = reports
        .iter()
        .filter(|report| report.status == ReportStatus::Complete)
        .collect();
    assert_eq!(complete.len(), 1, "exactly one completer");
    let expected_results: Vec<Value> = (0..SLOTS).map(|slot| json!({"slot": slot})).collect();
    assert_eq!(complete[0].results, Some(Value::Array(expected_results)));
    assert_eq!(complete[0].callback, Some(callback));
    // Reports are serialised on the barrier's row: every other answer is `pending`, and each
    // remaining count from SLOTS - 1 down to 1 is seen exactly once.
    let remaining: BTreeSet<i32> = reports
        .iter()
        .filter(|report| report.status == ReportStatus::Pending)
        .filter_map(|report| report.remaining)
        .collect();
    assert_eq!(remaining, (1..SLOTS).collect::<BTreeSet<i32>>());
    assert!(reports.iter().all(|report| matches!(
        report.status,
        ReportStatus::Pending | ReportStatus::Complete
    )));
}
