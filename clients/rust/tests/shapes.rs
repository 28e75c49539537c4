//! pg_barrier 0.4's fan-in shapes through the client (`docs/shapes.md`): failed reports and
//! re-arm, `max_failures`, quorum, open barriers and `seal`, `pending_slots`, delivered expiry,
//! nested barriers, their errors and the new answer fields, against a real server (see
//! `common::dsn`).

mod common;

use std::time::Duration;

use pg_barrier_client::{
    AbortStatus, BarrierState, CompletionStatus, EnqueueOptions, EnqueueStatus, Error,
    Notification, OnExpiry, Parent, ReportStatus,
};
use serde_json::{json, Value};
use tokio_postgres::Client;

use common::{connect, dsn, other_dsn, unique_channel, unique_id};

/// Long enough for a barrier with a one-second ttl to be past it, whatever the clocks' rounding.
const PAST_A_ONE_SECOND_TTL: Duration = Duration::from_millis(1300);

fn sqlstate(error: &Error) -> &str {
    error.sqlstate().map_or("none", |code| code.code())
}

fn child_of(parent: &str, slot: i32) -> EnqueueOptions {
    EnqueueOptions {
        parent: Some(Parent {
            id: parent.to_owned(),
            slot,
        }),
        ..EnqueueOptions::default()
    }
}

async fn enqueue(client: &Client, id: &str, expected: i32, options: &EnqueueOptions) {
    let answer = pg_barrier_client::enqueue(client, id, expected, options).await;
    assert_eq!(answer.unwrap(), EnqueueStatus::Pending, "{id}");
}

async fn ok(client: &Client, id: &str, result: Value, slot: i32) -> pg_barrier_client::Report {
    pg_barrier_client::decr(client, id, Some(&result), Some(slot))
        .await
        .unwrap()
}

async fn fail(client: &Client, id: &str, error: Value, slot: i32) -> pg_barrier_client::Report {
    pg_barrier_client::decr_failed(client, id, Some(&error), Some(slot))
        .await
        .unwrap()
}

async fn status(client: &Client, id: &str) -> pg_barrier_client::BarrierStatus {
    pg_barrier_client::status(client, id)
        .await
        .unwrap()
        .expect("a status row")
}

#[tokio::test]
async fn a_plain_completion_has_empty_failure_fields() {
    let client = connect(&dsn()).await;
    let id = unique_id("plain");
    enqueue(&client, &id, 2, &EnqueueOptions::default()).await;
    let first = ok(&client, &id, json!("a"), 0).await;
    assert_eq!(
        (first.failed_slots, first.errors, first.missing_slots),
        (None, None, None)
    );
    let last = ok(&client, &id, json!("b"), 1).await;
    assert_eq!(last.status, ReportStatus::Complete);
    assert!(last.is_complete());
    assert_eq!(last.results, Some(json!(["a", "b"])));
    assert_eq!(last.failed_slots, Some(vec![]));
    assert_eq!(last.errors, Some(json!([])));
    assert_eq!(last.missing_slots, Some(vec![]));
    let state = status(&client, &id).await;
    assert_eq!(
        (state.status, state.failed, state.sealed, state.need),
        (BarrierState::Complete, 0, true, None)
    );
    let taken = pg_barrier_client::take(&client, &id).await.unwrap();
    let taken = taken.expect("a complete barrier is taken");
    assert_eq!(taken.status, CompletionStatus::Complete);
    assert_eq!(
        (taken.failed_slots, taken.errors, taken.missing_slots),
        (vec![], json!([]), vec![])
    );
}

#[tokio::test]
async fn failed_reports_complete_with_failures_and_a_failed_slot_re_arms() {
    let client = connect(&dsn()).await;
    let id = unique_id("failures");
    let options = EnqueueOptions {
        callback: Some(json!({"task": "merge"})),
        ..EnqueueOptions::default()
    };
    enqueue(&client, &id, 3, &options).await;
    assert_eq!(ok(&client, &id, json!("r0"), 0).await.remaining, Some(2));
    let failed = fail(&client, &id, json!({"error": "boom"}), 1).await;
    assert_eq!(
        (failed.status, failed.remaining),
        (ReportStatus::Pending, Some(1))
    );
    assert_eq!(status(&client, &id).await.failed, 1);
    let partial = pg_barrier_client::results(&client, &id).await.unwrap();
    assert_eq!(partial, Some(json!(["r0", null])), "a failure is no result");

    let again = fail(&client, &id, json!({"error": "again"}), 1).await;
    assert_eq!(
        (again.status, again.remaining),
        (ReportStatus::Duplicate, Some(1))
    );
    let re_armed = ok(&client, &id, json!("r1"), 1).await;
    assert_eq!(
        (re_armed.status, re_armed.remaining),
        (ReportStatus::Pending, Some(1)),
        "the success replaces the failure, counted once"
    );
    assert_eq!(status(&client, &id).await.failed, 0);
    let duplicate = ok(&client, &id, json!("r1 again"), 1).await;
    assert_eq!(duplicate.status, ReportStatus::Duplicate);

    let last = fail(&client, &id, json!({"error": "late"}), 2).await;
    assert_eq!(last.status, ReportStatus::CompleteWithFailures);
    assert!(last.is_complete());
    assert_eq!(last.remaining, Some(0));
    assert_eq!(last.results, Some(json!(["r0", "r1", null])));
    assert_eq!(last.failed_slots, Some(vec![2]));
    assert_eq!(last.errors, Some(json!([{"error": "late"}])));
    assert_eq!(last.missing_slots, Some(vec![]));
    assert_eq!(last.callback, Some(json!({"task": "merge"})));

    let state = status(&client, &id).await;
    assert_eq!(
        (state.status, state.failed),
        (BarrierState::CompleteWithFailures, 1)
    );
    assert!(state.status.is_finished());
    let taken = pg_barrier_client::take(&client, &id).await.unwrap();
    let taken = taken.expect("a completion with failures is taken");
    assert_eq!(taken.status, CompletionStatus::CompleteWithFailures);
    assert_eq!(taken.results, json!(["r0", "r1", null]));
    assert_eq!(taken.failed_slots, vec![2]);
    assert_eq!(taken.errors, json!([{"error": "late"}]));
    assert_eq!(taken.missing_slots, Vec::<i32>::new());
}

#[tokio::test]
async fn max_failures_aborts_on_one_failure_too_many() {
    let client = connect(&dsn()).await;
    let fail_fast = unique_id("max-failures-0");
    let options = EnqueueOptions {
        max_failures: Some(0),
        ..EnqueueOptions::default()
    };
    enqueue(&client, &fail_fast, 3, &options).await;
    let answer = fail(&client, &fail_fast, json!("timeout"), 0).await;
    assert_eq!(
        (answer.status, answer.remaining),
        (ReportStatus::Aborted, Some(2))
    );
    let state = status(&client, &fail_fast).await;
    assert_eq!(state.status, BarrierState::Aborted);
    assert_eq!(
        state.reason.as_deref(),
        Some("slot 0 failed: more than 0 failures")
    );

    let id = unique_id("max-failures-1");
    let options = EnqueueOptions {
        max_failures: Some(1),
        ..EnqueueOptions::default()
    };
    enqueue(&client, &id, 3, &options).await;
    assert_eq!(
        fail(&client, &id, json!("e0"), 0).await.status,
        ReportStatus::Pending
    );
    assert_eq!(
        ok(&client, &id, json!("ok"), 0).await.status,
        ReportStatus::Pending,
        "re-armed: the failure no longer counts"
    );
    assert_eq!(
        fail(&client, &id, json!("e1"), 1).await.status,
        ReportStatus::Pending
    );
    let answer = fail(&client, &id, json!("e2"), 2).await;
    assert_eq!(
        (answer.status, answer.remaining),
        (ReportStatus::Aborted, Some(0))
    );
    let state = status(&client, &id).await;
    assert_eq!(
        state.reason.as_deref(),
        Some("slot 2 failed: more than 1 failures")
    );
}

#[tokio::test]
async fn a_quorum_completes_early_and_aborts_when_out_of_reach() {
    let client = connect(&dsn()).await;
    let need = |need| EnqueueOptions {
        need: Some(need),
        ..EnqueueOptions::default()
    };

    let id = unique_id("quorum");
    enqueue(&client, &id, 4, &need(2)).await;
    assert_eq!(status(&client, &id).await.need, Some(2));
    assert_eq!(ok(&client, &id, json!("c"), 3).await.remaining, Some(3));
    let met = ok(&client, &id, json!("a"), 1).await;
    assert_eq!(
        (met.status, met.remaining),
        (ReportStatus::Complete, Some(2))
    );
    assert_eq!(met.results, Some(json!([null, "a", null, "c"])));
    assert_eq!(met.failed_slots, Some(vec![]));
    assert_eq!(met.missing_slots, Some(vec![0, 2]));
    let late = ok(&client, &id, json!("late"), 0).await;
    assert_eq!(late.status, ReportStatus::AlreadyComplete);
    let again = ok(&client, &id, json!("again"), 1).await;
    assert_eq!(again.status, ReportStatus::Duplicate);
    let taken = pg_barrier_client::take(&client, &id).await.unwrap();
    assert_eq!(taken.expect("taken").missing_slots, vec![0, 2]);

    let with_failure = unique_id("quorum-failure");
    enqueue(&client, &with_failure, 3, &need(2)).await;
    fail(&client, &with_failure, json!("e"), 0).await;
    ok(&client, &with_failure, json!("b"), 1).await;
    let met = ok(&client, &with_failure, json!("c"), 2).await;
    assert_eq!(met.status, ReportStatus::CompleteWithFailures);
    assert_eq!(met.results, Some(json!([null, "b", "c"])));
    assert_eq!(met.failed_slots, Some(vec![0]));
    assert_eq!(met.errors, Some(json!(["e"])));

    let lost = unique_id("quorum-lost");
    enqueue(&client, &lost, 3, &need(2)).await;
    assert_eq!(
        fail(&client, &lost, json!("e0"), 0).await.status,
        ReportStatus::Pending
    );
    let answer = fail(&client, &lost, json!("e1"), 1).await;
    assert_eq!(
        (answer.status, answer.remaining),
        (ReportStatus::Aborted, Some(1))
    );
    assert_eq!(
        status(&client, &lost).await.reason.as_deref(),
        Some("quorum of 2 can no longer be reached")
    );
}

#[tokio::test]
async fn an_open_barrier_completes_when_sealed() {
    let client = connect(&dsn()).await;
    let open = EnqueueOptions {
        callback: Some(json!("cb")),
        sealed: false,
        ..EnqueueOptions::default()
    };
    let id = unique_id("open");
    enqueue(&client, &id, 0, &open).await;
    let state = status(&client, &id).await;
    assert_eq!(
        (state.status, state.sealed, state.expected),
        (BarrierState::Pending, false, 0)
    );
    let slots = pg_barrier_client::pending_slots(&client, &id, 1000, None).await;
    assert_eq!(slots.unwrap(), Vec::<i32>::new());
    assert_eq!(pg_barrier_client::add(&client, &id, 2).await.unwrap(), 2);
    let slots = pg_barrier_client::pending_slots(&client, &id, 1000, None).await;
    assert_eq!(slots.unwrap(), [0, 1]);
    assert_eq!(ok(&client, &id, json!("b"), 1).await.remaining, Some(1));
    let slots = pg_barrier_client::pending_slots(&client, &id, 1000, None).await;
    assert_eq!(slots.unwrap(), [0]);
    let answer = ok(&client, &id, json!("a"), 0).await;
    assert_eq!(
        (answer.status, answer.remaining),
        (ReportStatus::Pending, Some(0)),
        "an open barrier waits for its seal"
    );
    let sealed = pg_barrier_client::seal(&client, &id).await.unwrap();
    assert_eq!(
        (sealed.status, sealed.remaining),
        (ReportStatus::Complete, Some(0))
    );
    assert_eq!(sealed.results, Some(json!(["a", "b"])));
    assert_eq!(sealed.callback, Some(json!("cb")));
    assert_eq!(sealed.failed_slots, Some(vec![]));
    let state = status(&client, &id).await;
    assert_eq!((state.status, state.sealed), (BarrierState::Complete, true));
    let error = pg_barrier_client::seal(&client, &id).await.unwrap_err();
    assert!(matches!(error, Error::Finished(_)), "{error:?}");
    let slots = pg_barrier_client::pending_slots(&client, &id, 1000, None).await;
    assert_eq!(slots.unwrap(), Vec::<i32>::new());

    // Sealed with reports to come: pending; sealing again changes nothing.
    let later = unique_id("open-later");
    let open = EnqueueOptions {
        sealed: false,
        ..EnqueueOptions::default()
    };
    enqueue(&client, &later, 2, &open).await;
    for _ in 0..2 {
        let answer = pg_barrier_client::seal(&client, &later).await.unwrap();
        assert_eq!(
            (answer.status, answer.remaining),
            (ReportStatus::Pending, Some(2))
        );
    }
    ok(&client, &later, json!(0), 0).await;
    let last = ok(&client, &later, json!(1), 1).await;
    assert_eq!(last.status, ReportStatus::Complete);

    // A barrier enqueued sealed: sealing is a no-op.
    let plain = unique_id("open-plain");
    enqueue(&client, &plain, 1, &EnqueueOptions::default()).await;
    let answer = pg_barrier_client::seal(&client, &plain).await.unwrap();
    assert_eq!(
        (answer.status, answer.remaining, answer.results),
        (ReportStatus::Pending, Some(1), None)
    );

    // Sealing a quorum out of reach aborts it.
    let quorum = unique_id("open-quorum");
    let options = EnqueueOptions {
        need: Some(2),
        sealed: false,
        ..EnqueueOptions::default()
    };
    enqueue(&client, &quorum, 2, &options).await;
    assert_eq!(
        fail(&client, &quorum, json!("e"), 0).await.status,
        ReportStatus::Pending
    );
    let answer = pg_barrier_client::seal(&client, &quorum).await.unwrap();
    assert_eq!(answer.status, ReportStatus::Aborted);
    assert_eq!(status(&client, &quorum).await.status, BarrierState::Aborted);

    let unknown = unique_id("seal-unknown");
    let error = pg_barrier_client::seal(&client, &unknown)
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::UnknownBarrier { id, source: Some(_) } if id == &unknown),
        "{error:?}"
    );
}

#[tokio::test]
async fn pending_slots_lists_the_slots_still_to_report() {
    let client = connect(&dsn()).await;
    let id = unique_id("pending-slots");
    enqueue(&client, &id, 4, &EnqueueOptions::default()).await;
    let slots = pg_barrier_client::pending_slots(&client, &id, 1000, None).await;
    assert_eq!(slots.unwrap(), [0, 1, 2, 3]);
    ok(&client, &id, Value::Null, 2).await;
    fail(&client, &id, Value::Null, 0).await;
    let slots = pg_barrier_client::pending_slots(&client, &id, 1000, None).await;
    assert_eq!(slots.unwrap(), [1, 3], "a failed slot has reported");

    let unslotted = unique_id("pending-unslotted");
    enqueue(&client, &unslotted, 3, &EnqueueOptions::default()).await;
    pg_barrier_client::decr(&client, &unslotted, Some(&json!("first")), None)
        .await
        .unwrap();
    let slots = pg_barrier_client::pending_slots(&client, &unslotted, 1000, None).await;
    assert_eq!(slots.unwrap(), [1, 2], "the arrival positions to come");

    let aborted = unique_id("pending-aborted");
    enqueue(&client, &aborted, 2, &EnqueueOptions::default()).await;
    pg_barrier_client::abort(&client, &aborted, None)
        .await
        .unwrap();
    let slots = pg_barrier_client::pending_slots(&client, &aborted, 1000, None).await;
    assert_eq!(slots.unwrap(), Vec::<i32>::new());

    let unknown = unique_id("pending-unknown");
    let error = pg_barrier_client::pending_slots(&client, &unknown, 1000, None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::UnknownBarrier { .. }), "{error:?}");
    let other = connect(&other_dsn()).await;
    let error = pg_barrier_client::pending_slots(&other, &id, 1000, None)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotOwner(_)), "{error:?}");
    let error = pg_barrier_client::seal(&other, &id).await.unwrap_err();
    assert!(matches!(error, Error::NotOwner(_)), "{error:?}");
}

#[tokio::test]
async fn an_expiry_that_delivers_hands_out_what_was_reported() {
    let mut client = connect(&dsn()).await;
    let deliver = |channel: Option<String>| EnqueueOptions {
        callback: Some(json!("cb")),
        ttl: Some(Duration::from_secs(1)),
        channel,
        on_expiry: OnExpiry::Deliver,
        ..EnqueueOptions::default()
    };
    let id = unique_id("deliver");
    enqueue(&client, &id, 3, &deliver(None)).await;
    ok(&client, &id, json!("a"), 0).await;
    fail(&client, &id, json!({"error": "x"}), 2).await;
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;
    let taken = pg_barrier_client::take(&client, &id).await.unwrap();
    let taken = taken.expect("the take expires it and hands out the delivery");
    assert_eq!(taken.status, CompletionStatus::Expired);
    assert_eq!(taken.results, json!(["a", null, null]));
    assert_eq!(taken.callback, Some(json!("cb")));
    assert_eq!(taken.failed_slots, vec![2]);
    assert_eq!(taken.errors, json!([{"error": "x"}]));
    assert_eq!(taken.missing_slots, vec![1]);
    assert_eq!(pg_barrier_client::take(&client, &id).await.unwrap(), None);
    assert_eq!(status(&client, &id).await.status, BarrierState::Expired);

    // Claimed with barrier_completions once an expiry (the sweep's) has stored it.
    let channel = unique_channel();
    let claimed_id = unique_id("deliver-claimed");
    enqueue(&client, &claimed_id, 2, &deliver(Some(channel.clone()))).await;
    ok(&client, &claimed_id, json!("only"), 0).await;
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;
    let swept = pg_barrier_client::sweep(&client, pg_barrier_client::DEFAULT_SWEEP_MAX_ROWS)
        .await
        .unwrap();
    assert!(swept.expired >= 1, "{swept:?}");
    let transaction = client.transaction().await.unwrap();
    let claimed = pg_barrier_client::completions(&transaction, Some(&channel), 10)
        .await
        .unwrap();
    transaction.commit().await.unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!(claimed[0].id, claimed_id);
    assert_eq!(claimed[0].status, CompletionStatus::Expired);
    assert_eq!(claimed[0].results, json!(["only", null]));
    assert_eq!(claimed[0].missing_slots, vec![1]);

    // The default discards, as in 0.3.
    let discarded = unique_id("discard");
    let options = EnqueueOptions {
        ttl: Some(Duration::from_secs(1)),
        ..EnqueueOptions::default()
    };
    enqueue(&client, &discarded, 2, &options).await;
    ok(&client, &discarded, json!("gone"), 0).await;
    tokio::time::sleep(PAST_A_ONE_SECOND_TTL).await;
    let taken = pg_barrier_client::take(&client, &discarded).await.unwrap();
    assert_eq!(taken, None);
}

#[tokio::test]
async fn children_report_into_their_parents_slots() {
    let client = connect(&dsn()).await;
    let parent = unique_id("parent");
    let options = EnqueueOptions {
        callback: Some(json!("merge")),
        ..EnqueueOptions::default()
    };
    enqueue(&client, &parent, 2, &options).await;
    let (left, right) = (unique_id("left"), unique_id("right"));
    enqueue(&client, &left, 2, &child_of(&parent, 0)).await;
    enqueue(&client, &right, 1, &child_of(&parent, 1)).await;
    let slots = pg_barrier_client::pending_slots(&client, &parent, 1000, None).await;
    assert_eq!(slots.unwrap(), [0, 1]);

    ok(&client, &left, json!("l0"), 0).await;
    let done = ok(&client, &left, json!("l1"), 1).await;
    assert_eq!(done.status, ReportStatus::Complete);
    assert_eq!(done.results, Some(json!(["l0", "l1"])));
    let taken = pg_barrier_client::take(&client, &left).await.unwrap();
    assert_eq!(taken, None, "the parent took the child's completion");
    let slots = pg_barrier_client::pending_slots(&client, &parent, 1000, None).await;
    assert_eq!(slots.unwrap(), [1]);

    let ended = fail(&client, &right, json!({"error": "x"}), 0).await;
    assert_eq!(ended.status, ReportStatus::CompleteWithFailures);
    let state = status(&client, &parent).await;
    assert_eq!(state.status, BarrierState::CompleteWithFailures);
    let taken = pg_barrier_client::take(&client, &right).await.unwrap();
    assert_eq!(taken, None);
    let taken = pg_barrier_client::take(&client, &parent).await.unwrap();
    let taken = taken.expect("the parent's completion");
    assert_eq!(taken.status, CompletionStatus::CompleteWithFailures);
    assert_eq!(taken.callback, Some(json!("merge")));
    assert_eq!(
        taken.results,
        json!([
            {
                "id": left, "round": 1, "status": "complete", "results": ["l0", "l1"],
                "failed_slots": [], "errors": [], "missing_slots": []
            },
            null
        ])
    );
    assert_eq!(taken.failed_slots, vec![1]);
    let error = &taken.errors[0];
    assert_eq!(error["id"], json!(right));
    assert_eq!(error["status"], json!("complete_with_failures"));
    assert_eq!(error["failed_slots"], json!([0]));
    assert_eq!(error["errors"], json!([{"error": "x"}]));
}

#[tokio::test]
async fn a_child_enqueued_again_re_arms_its_parents_slot() {
    let client = connect(&dsn()).await;
    let parent = unique_id("re-arm-parent");
    enqueue(&client, &parent, 2, &EnqueueOptions::default()).await;
    let child = unique_id("re-arm-child");
    enqueue(&client, &child, 1, &child_of(&parent, 0)).await;
    let aborted = pg_barrier_client::abort(&client, &child, Some("first try failed")).await;
    assert_eq!(aborted.unwrap(), AbortStatus::Aborted);
    let state = status(&client, &parent).await;
    assert_eq!((state.remaining, state.failed), (1, 1));

    enqueue(&client, &child, 1, &child_of(&parent, 0)).await;
    let done = ok(&client, &child, json!("ok"), 0).await;
    assert_eq!(done.status, ReportStatus::Complete);
    let state = status(&client, &parent).await;
    assert_eq!((state.remaining, state.failed), (1, 0));
    let last = ok(&client, &parent, json!("direct"), 1).await;
    assert_eq!(last.status, ReportStatus::Complete);
    let results = last.results.expect("a completion");
    assert_eq!(results[1], json!("direct"));
    assert_eq!(
        (
            &results[0]["id"],
            &results[0]["round"],
            &results[0]["status"]
        ),
        (&json!(child), &json!(2), &json!("complete"))
    );
}

#[tokio::test]
async fn nesting_errors_map_to_their_variants() {
    let client = connect(&dsn()).await;
    let parent = unique_id("nesting");
    enqueue(&client, &parent, 2, &EnqueueOptions::default()).await;
    let refused = |id: &str, expected: i32, options: EnqueueOptions| {
        let (client, id) = (&client, id.to_owned());
        async move {
            let error = pg_barrier_client::enqueue(client, &id, expected, &options)
                .await
                .unwrap_err();
            let status = pg_barrier_client::status(client, &id).await.unwrap();
            assert_eq!(status, None, "the error changed nothing: {error:?}");
            error
        }
    };

    let itself = unique_id("itself");
    let error = refused(&itself, 1, child_of(&itself, 0)).await;
    assert!(matches!(error, Error::Nesting(_)), "{error:?}");
    assert_eq!(sqlstate(&error), "42P19");

    let missing = unique_id("missing-parent");
    let error = refused(&unique_id("orphan"), 1, child_of(&missing, 0)).await;
    assert!(
        matches!(&error, Error::UnknownBarrier { id, source: Some(_) } if id == &missing),
        "the unknown barrier is the parent: {error:?}"
    );

    let finished = unique_id("finished-parent");
    let answer = pg_barrier_client::enqueue(&client, &finished, 0, &EnqueueOptions::default())
        .await
        .unwrap();
    assert_eq!(
        answer,
        EnqueueStatus::Complete,
        "an empty fan-in completes at once"
    );
    let error = refused(&unique_id("late-child"), 1, child_of(&finished, 0)).await;
    assert!(matches!(error, Error::Finished(_)), "{error:?}");

    let error = refused(&unique_id("out-of-range"), 1, child_of(&parent, 2)).await;
    assert!(matches!(error, Error::InvalidArgument(_)), "{error:?}");
    assert_eq!(sqlstate(&error), "22023");

    enqueue(&client, &unique_id("first-child"), 1, &child_of(&parent, 0)).await;
    let error = refused(&unique_id("second-child"), 1, child_of(&parent, 0)).await;
    assert!(matches!(error, Error::Conflict(_)), "{error:?}");
    assert_eq!(sqlstate(&error), "42710");
    ok(&client, &parent, json!("reported"), 1).await;
    let error = refused(&unique_id("reported-slot"), 1, child_of(&parent, 1)).await;
    assert!(matches!(error, Error::Conflict(_)), "{error:?}");

    let other = connect(&other_dsn()).await;
    let error = pg_barrier_client::enqueue(&other, &unique_id("other"), 1, &child_of(&parent, 0))
        .await
        .unwrap_err();
    assert!(matches!(error, Error::NotOwner(_)), "{error:?}");

    // A root and 16 levels below it are allowed; a 17th is not.
    let mut chain = vec![unique_id("level-0")];
    enqueue(&client, &chain[0], 1, &EnqueueOptions::default()).await;
    for level in 1..=16 {
        let id = unique_id(&format!("level-{level}"));
        enqueue(&client, &id, 1, &child_of(chain.last().unwrap(), 0)).await;
        chain.push(id);
    }
    let error = refused(
        &unique_id("level-17"),
        1,
        child_of(chain.last().unwrap(), 0),
    )
    .await;
    assert!(matches!(error, Error::LimitExceeded(_)), "{error:?}");
    assert_eq!(sqlstate(&error), "54001");
}

#[tokio::test]
async fn the_shape_arguments_are_checked() {
    let client = connect(&dsn()).await;
    let cases = [
        (
            "22023",
            EnqueueOptions {
                max_failures: Some(-1),
                ..EnqueueOptions::default()
            },
        ),
        (
            "22023",
            EnqueueOptions {
                need: Some(0),
                ..EnqueueOptions::default()
            },
        ),
        (
            "22023",
            EnqueueOptions {
                need: Some(3),
                ..EnqueueOptions::default()
            },
        ),
        ("22023", child_of("", 0)),
        ("22001", child_of(&"p".repeat(513), 0)),
        ("22023", child_of("p", -1)),
    ];
    for (expected_sqlstate, options) in cases {
        let id = unique_id("checked");
        let error = pg_barrier_client::enqueue(&client, &id, 2, &options)
            .await
            .unwrap_err();
        assert!(
            matches!(error, Error::InvalidArgument(_)),
            "{options:?}: {error:?}"
        );
        assert_eq!(sqlstate(&error), expected_sqlstate, "{options:?}: {error}");
    }
    let open_need = EnqueueOptions {
        need: Some(3),
        sealed: false,
        ..EnqueueOptions::default()
    };
    enqueue(&client, &unique_id("open-need"), 2, &open_need).await;
}

#[tokio::test]
async fn a_re_enqueue_compares_the_shape_but_not_sealing() {
    let client = connect(&dsn()).await;
    let id = unique_id("re-enqueue");
    let shape = EnqueueOptions {
        need: Some(1),
        max_failures: Some(1),
        ..EnqueueOptions::default()
    };
    enqueue(&client, &id, 2, &shape).await;
    enqueue(&client, &id, 2, &shape).await;
    let detail = |error: &Error| {
        let source = error.postgres().and_then(|error| error.as_db_error());
        source
            .and_then(|error| error.detail())
            .unwrap_or("")
            .to_owned()
    };
    let other_need = EnqueueOptions {
        need: Some(2),
        ..shape.clone()
    };
    let error = pg_barrier_client::enqueue(&client, &id, 2, &other_need)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Conflict(_)), "{error:?}");
    assert!(detail(&error).contains("need differs"), "{error:?}");
    let delivering = EnqueueOptions {
        on_expiry: OnExpiry::Deliver,
        ..shape.clone()
    };
    let error = pg_barrier_client::enqueue(&client, &id, 2, &delivering)
        .await
        .unwrap_err();
    assert!(detail(&error).contains("on_expiry differs"), "{error:?}");
    let unsealed = EnqueueOptions {
        sealed: false,
        ..shape.clone()
    };
    enqueue(&client, &id, 2, &unsealed).await;
    assert!(
        status(&client, &id).await.sealed,
        "a retry leaves sealing as it is"
    );
    let replaced = EnqueueOptions {
        need: Some(2),
        sealed: false,
        replace: true,
        ..EnqueueOptions::default()
    };
    enqueue(&client, &id, 3, &replaced).await;
    let state = status(&client, &id).await;
    assert_eq!(
        (state.expected, state.need, state.sealed),
        (3, Some(2), false)
    );
}

#[tokio::test]
async fn the_notification_of_a_completion_with_failures() {
    let (listener, mut notifications) = pg_barrier_client::connect(&dsn()).await.unwrap();
    let client = connect(&dsn()).await;
    let channel = unique_channel();
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .await
        .unwrap();
    let id = unique_id("notify-failures");
    let options = EnqueueOptions {
        channel: Some(channel.clone()),
        ..EnqueueOptions::default()
    };
    enqueue(&client, &id, 1, &options).await;
    fail(&client, &id, json!("e"), 0).await;
    let notification = tokio::time::timeout(Duration::from_secs(10), notifications.recv())
        .await
        .expect("a notification within the time")
        .expect("the connection is open");
    assert_eq!(
        Notification::from_payload(notification.payload()).unwrap(),
        Notification {
            id,
            status: BarrierState::CompleteWithFailures,
            round: 1
        }
    );
}
