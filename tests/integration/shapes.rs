//! The fan-in shapes of docs/shapes.md over real connections: failures kept per slot and
//! re-armed, `max_failures`, quorums, open fan-ins and `barrier_seal`, expiries that deliver,
//! nested barriers, `barrier_pending_slots`, and the new columns of the readers. Every test
//! checks the exact answers, the stored state and, where one is sent, the notification; each
//! runs against both editions (and the Rust build without its fast path).

use std::sync::OnceLock;
use std::time::Duration;

use postgres::{Client, GenericClient};
use serde_json::{json, Value};

use crate::lifecycle::notifications;
use crate::support::{
    claim, connect, ended_up, handed_up, report, seal, sqlstate, take, Handed, Reply,
};

/// How long a listener waits for notifications that must (or must not) arrive.
const QUIET: Duration = Duration::from_millis(400);

/// `barrier_enqueue(id, expected, <rest>)`, where `rest` is SQL: the named arguments of the
/// shape (`"need => 2, sealed => false"`), or empty.
fn try_enqueue(
    client: &mut impl GenericClient,
    id: &str,
    expected: i32,
    rest: &str,
) -> Result<String, postgres::Error> {
    let sql = if rest.is_empty() {
        "SELECT barrier_enqueue($1, $2)".to_string()
    } else {
        format!("SELECT barrier_enqueue($1, $2, {rest})")
    };
    client
        .query_one(&sql, &[&id, &expected])
        .map(|row| row.get(0))
}

/// An enqueue that must succeed; its answer.
fn enqueue(client: &mut impl GenericClient, id: &str, expected: i32, rest: &str) -> String {
    try_enqueue(client, id, expected, rest)
        .unwrap_or_else(|error| panic!("barrier_enqueue({id:?}, {expected}, {rest}): {error}"))
}

/// A report that must be accepted; its answer.
fn ok(
    client: &mut impl GenericClient,
    id: &str,
    result: Value,
    slot: Option<i32>,
    failed: bool,
) -> Reply {
    let shown = result.to_string();
    report(client, id, Some(&result), slot, failed).unwrap_or_else(|error| {
        panic!("barrier_decr({id:?}, {shown}, {slot:?}, failed => {failed}): {error}")
    })
}

/// A successful report of `result` into `slot`.
fn succeed(client: &mut impl GenericClient, id: &str, slot: i32, result: Value) -> Reply {
    ok(client, id, result, Some(slot), false)
}

/// A failed report of `error` into `slot`.
fn fail(client: &mut impl GenericClient, id: &str, slot: i32, error: Value) -> Reply {
    ok(client, id, error, Some(slot), true)
}

/// A seal that must succeed; its answer.
fn sealed(client: &mut impl GenericClient, id: &str) -> Reply {
    seal(client, id).unwrap_or_else(|error| panic!("barrier_seal({id:?}): {error}"))
}

/// `barrier_status(id)`, with the columns the shapes added.
#[derive(Debug, Clone, PartialEq)]
struct Shown {
    status: String,
    expected: i32,
    remaining: i32,
    failed: i32,
    sealed: bool,
    need: Option<i32>,
    reason: Option<String>,
    round: i64,
}

impl Shown {
    /// Status, remaining and failed reports held.
    fn counts(&self) -> (&str, i32, i32) {
        (self.status.as_str(), self.remaining, self.failed)
    }
}

fn status(client: &mut impl GenericClient, id: &str) -> Shown {
    let row = client
        .query_one(
            "SELECT status, expected, remaining, failed, sealed, need, reason, round
               FROM barrier_status($1)",
            &[&id],
        )
        .unwrap_or_else(|error| panic!("barrier_status({id:?}): {error}"));
    Shown {
        status: row.get(0),
        expected: row.get(1),
        remaining: row.get(2),
        failed: row.get(3),
        sealed: row.get(4),
        need: row.get(5),
        reason: row.get(6),
        round: row.get(7),
    }
}

/// Whether `barrier_status` has a row for `id`.
fn exists(client: &mut impl GenericClient, id: &str) -> bool {
    client
        .query_opt("SELECT 1 FROM barrier_status($1)", &[&id])
        .unwrap()
        .is_some()
}

/// `barrier_results(id)`.
fn results_so_far(client: &mut impl GenericClient, id: &str) -> Option<Value> {
    client
        .query_one("SELECT barrier_results($1)::text", &[&id])
        .unwrap()
        .get::<_, Option<String>>(0)
        .map(|text| serde_json::from_str(&text).unwrap())
}

/// The stored result rows of a barrier: slot, result (JSON null for none) and whether the
/// report failed.
fn rows(client: &mut impl GenericClient, id: &str) -> Vec<(i32, Value, bool)> {
    client
        .query(
            "SELECT slot, coalesce(result, 'null'::jsonb)::text, failed
               FROM barrier_internal.result WHERE barrier_id = $1 ORDER BY slot",
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|row| {
            let result: String = row.get(1);
            (
                row.get(0),
                serde_json::from_str(&result).unwrap(),
                row.get(2),
            )
        })
        .collect()
}

/// The status column as stored, under what `barrier_status` shows.
fn stored_status(client: &mut impl GenericClient, id: &str) -> String {
    client
        .query_one(
            "SELECT status FROM barrier_internal.barrier WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
}

/// Whether a finished barrier's completion has been handed out (to a consumer or a parent).
fn taken(client: &mut impl GenericClient, id: &str) -> bool {
    client
        .query_one(
            "SELECT taken_at IS NOT NULL FROM barrier_internal.barrier WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
}

/// `barrier_pending_slots(id)`.
fn pending_slots(client: &mut impl GenericClient, id: &str) -> Result<Vec<i32>, postgres::Error> {
    client
        .query("SELECT slot FROM barrier_pending_slots($1)", &[&id])
        .map(|rows| rows.iter().map(|row| row.get(0)).collect())
}

/// The SQLSTATE, message and detail of a call that must be refused.
fn refusal<T: std::fmt::Debug>(
    outcome: Result<T, postgres::Error>,
) -> (String, String, Option<String>) {
    let error = outcome.expect_err("the call must be refused");
    let code = sqlstate(&error);
    let db = error.as_db_error().expect("a server error");
    (
        code,
        db.message().to_string(),
        db.detail().map(String::from),
    )
}

/// An enqueue that must be refused: its id, `expected` and other arguments (SQL), and the
/// SQLSTATE, message and (where checked) detail it gets.
type Refused<'a> = (&'a str, i32, &'a str, &'a str, String, Option<&'a str>);

/// A role that owns nothing here, made once per test binary.
fn stranger() -> &'static str {
    static MADE: OnceLock<()> = OnceLock::new();
    MADE.get_or_init(|| {
        connect()
            .batch_execute(
                "DO $$ BEGIN CREATE ROLE shapes_stranger;
                       EXCEPTION WHEN duplicate_object THEN NULL; END $$",
            )
            .unwrap();
    });
    "shapes_stranger"
}

/// A listener on `channel`.
fn listen(channel: &str) -> Client {
    let mut listener = connect();
    listener
        .batch_execute(&format!("LISTEN {channel}"))
        .unwrap();
    listener
}

fn payload(id: &str, status: &str, round: i64) -> Value {
    json!({"id": id, "status": status, "round": round})
}

// ---------------------------------------------------------------------------------------------
// Plain barriers
// ---------------------------------------------------------------------------------------------

/// A barrier enqueued without the new arguments answers as in 0.3: non-completing answers carry
/// no completion columns, the completion has `{}`, `[]`, `{}`, and the readers show no failure,
/// sealed and no quorum.
#[test]
fn plain_barriers_answer_exactly_as_before() {
    let mut client = connect();
    let id = "plain/slotted";
    let callback = json!({"next": "merge"});
    enqueue(&mut client, id, 3, "callback => '{\"next\": \"merge\"}'");
    let shown = status(&mut client, id);
    assert_eq!(
        (shown.failed, shown.sealed, shown.need),
        (0, true, None),
        "{shown:?}"
    );
    assert_eq!(pending_slots(&mut client, id).unwrap(), vec![0, 1, 2]);
    assert_eq!(
        succeed(&mut client, id, 2, json!("c")),
        Reply::only("pending", 2)
    );
    let answer = report(&mut client, id, None, Some(0), false).unwrap();
    assert_eq!(answer, Reply::only("pending", 1));
    assert_eq!(
        succeed(&mut client, id, 0, json!("again")),
        Reply::only("duplicate", 1)
    );
    // Sealing a sealed barrier changes nothing.
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 1));
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::completion(
            "complete",
            0,
            json!([null, "b", "c"]),
            Some(callback.clone()),
            &[],
            json!([]),
            &[]
        )
    );
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("duplicate", 0)
    );
    assert_eq!(status(&mut client, id).counts(), ("complete", 0, 0));
    assert_eq!(pending_slots(&mut client, id).unwrap(), Vec::<i32>::new());
    assert_eq!(
        take(&mut client, id).unwrap(),
        Some(Handed::new(
            "complete",
            json!([null, "b", "c"]),
            Some(callback),
            &[],
            json!([]),
            &[]
        ))
    );
    assert_eq!(take(&mut client, id).unwrap(), None);
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("already_complete", 0)
    );

    let id = "plain/unslotted";
    enqueue(&mut client, id, 2, "");
    assert_eq!(
        ok(&mut client, id, json!("x"), None, false),
        Reply::only("pending", 1)
    );
    assert_eq!(
        ok(&mut client, id, json!("y"), None, false),
        Reply::completion("complete", 0, json!(["x", "y"]), None, &[], json!([]), &[])
    );
    assert_eq!(
        ok(&mut client, id, json!("z"), None, false),
        Reply::only("already_complete", 0)
    );

    let id = "plain/empty";
    assert_eq!(
        enqueue(&mut client, id, 0, "channel => 'shape_plain'"),
        "complete"
    );
    let id = "plain/claimed";
    enqueue(&mut client, id, 1, "channel => 'shape_plain'");
    succeed(&mut client, id, 0, json!(1));
    let mut claimed = claim(&mut client, "shape_plain", 10).unwrap();
    claimed.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        claimed,
        vec![
            (
                "plain/claimed".to_string(),
                Handed::new("complete", json!([1]), None, &[], json!([]), &[])
            ),
            (
                "plain/empty".to_string(),
                Handed::new("complete", json!([]), None, &[], json!([]), &[])
            ),
        ]
    );
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

/// Failed reports count toward completion; the completion says which slots failed and hands
/// over their errors, in slot order, with JSON null in `results` for each; a failed report's
/// `result` may itself be NULL. The stored status stays `complete`, shown as
/// `complete_with_failures`.
#[test]
fn failed_reports_complete_with_failures_and_hand_over_errors() {
    let mut client = connect();
    let id = "failures/job";
    let callback = json!({"next": "report"});
    enqueue(&mut client, id, 4, "callback => '{\"next\": \"report\"}'");
    assert_eq!(
        succeed(&mut client, id, 0, json!("a")),
        Reply::only("pending", 3)
    );
    assert_eq!(
        fail(&mut client, id, 1, json!({"error": "timeout"})),
        Reply::only("pending", 2)
    );
    let answer = report(&mut client, id, None, Some(2), true).unwrap();
    assert_eq!(answer, Reply::only("pending", 1));
    assert_eq!(status(&mut client, id).counts(), ("pending", 1, 2));
    // So far: a failure is null, never its error.
    assert_eq!(
        results_so_far(&mut client, id),
        Some(json!(["a", null, null]))
    );
    assert_eq!(
        rows(&mut client, id),
        vec![
            (0, json!("a"), false),
            (1, json!({"error": "timeout"}), true),
            (2, Value::Null, true),
        ]
    );
    let completion = report(&mut client, id, None, Some(3), false).unwrap();
    assert_eq!(
        completion,
        Reply::completion(
            "complete_with_failures",
            0,
            json!(["a", null, null, null]),
            Some(callback.clone()),
            &[1, 2],
            json!([{"error": "timeout"}, null]),
            &[]
        )
    );
    assert_eq!(
        status(&mut client, id).counts(),
        ("complete_with_failures", 0, 2)
    );
    assert_eq!(stored_status(&mut client, id), "complete");
    assert_eq!(
        results_so_far(&mut client, id),
        Some(json!(["a", null, null, null]))
    );
    assert_eq!(
        take(&mut client, id).unwrap(),
        Some(Handed::new(
            "complete_with_failures",
            json!(["a", null, null, null]),
            Some(callback),
            &[1, 2],
            json!([{"error": "timeout"}, null]),
            &[]
        ))
    );
    assert_eq!(take(&mut client, id).unwrap(), None);
    // Taken, it still shows how it ended.
    assert_eq!(
        status(&mut client, id).counts(),
        ("complete_with_failures", 0, 2)
    );
}

/// Without slots, a failure is listed by its arrival position.
#[test]
fn unslotted_failures_are_listed_by_arrival_position() {
    let mut client = connect();
    let id = "failures/unslotted";
    enqueue(&mut client, id, 3, "");
    assert_eq!(
        ok(&mut client, id, json!("a"), None, false),
        Reply::only("pending", 2)
    );
    assert_eq!(
        ok(&mut client, id, json!("e"), None, true),
        Reply::only("pending", 1)
    );
    assert_eq!(
        ok(&mut client, id, json!("c"), None, false),
        Reply::completion(
            "complete_with_failures",
            0,
            json!(["a", null, "c"]),
            None,
            &[1],
            json!(["e"]),
            &[]
        )
    );
}

/// A success replaces a slot's failure without being counted a second time: `remaining` does
/// not move, the failure count drops, and the stored weight only grows. A second failure, or a
/// second success, answers `duplicate`; a rolled-back retry leaves the failure in place.
#[test]
fn a_retried_slot_rearms_without_counting_twice() {
    let mut client = connect();
    let id = "rearm/job";
    enqueue(&mut client, id, 3, "");
    assert_eq!(
        fail(&mut client, id, 0, json!("first attempt timed out")),
        Reply::only("pending", 2)
    );
    assert_eq!(
        fail(&mut client, id, 0, json!("second failure")),
        Reply::only("duplicate", 2)
    );
    assert_eq!(
        rows(&mut client, id),
        vec![(0, json!("first attempt timed out"), true)]
    );
    assert_eq!(status(&mut client, id).counts(), ("pending", 2, 1));
    let weight = |client: &mut Client| -> i64 {
        client
            .query_one(
                "SELECT result_bytes FROM barrier_internal.barrier WHERE id = $1",
                &[&id],
            )
            .unwrap()
            .get(0)
    };
    let before = weight(&mut client);
    assert_eq!(
        succeed(&mut client, id, 0, json!("ok")),
        Reply::only("pending", 2)
    );
    assert_eq!(status(&mut client, id).counts(), ("pending", 2, 0));
    assert_eq!(rows(&mut client, id), vec![(0, json!("ok"), false)]);
    let after = weight(&mut client);
    assert!(
        after > before,
        "result_bytes went from {before} to {after}: it must only grow"
    );
    assert_eq!(
        succeed(&mut client, id, 0, json!("again")),
        Reply::only("duplicate", 2)
    );
    assert_eq!(
        fail(&mut client, id, 0, json!("late")),
        Reply::only("duplicate", 2)
    );
    assert_eq!(rows(&mut client, id), vec![(0, json!("ok"), false)]);
    assert_eq!(results_so_far(&mut client, id), Some(json!(["ok"])));
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        succeed(&mut client, id, 2, json!("c")),
        Reply::completion(
            "complete",
            0,
            json!(["ok", "b", "c"]),
            None,
            &[],
            json!([]),
            &[]
        )
    );

    let id = "rearm/rolled-back";
    enqueue(&mut client, id, 2, "");
    assert_eq!(
        fail(&mut client, id, 0, json!("e")),
        Reply::only("pending", 1)
    );
    let mut tx = client.transaction().unwrap();
    assert_eq!(
        succeed(&mut tx, id, 0, json!("retry")),
        Reply::only("pending", 1)
    );
    tx.rollback().unwrap();
    assert_eq!(status(&mut client, id).counts(), ("pending", 1, 1));
    assert_eq!(rows(&mut client, id), vec![(0, json!("e"), true)]);
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::completion(
            "complete_with_failures",
            0,
            json!([null, "b"]),
            None,
            &[0],
            json!(["e"]),
            &[]
        )
    );
    // After completion a retry of the failed slot changes nothing.
    assert_eq!(
        succeed(&mut client, id, 0, json!("too late")).status,
        "duplicate"
    );
    assert_eq!(rows(&mut client, id)[0], (0, json!("e"), true));
}

/// `max_failures => 0`: the first failure aborts the barrier in its own transaction, with a
/// reason naming the slot; the results are freed and `aborted` is notified.
#[test]
fn max_failures_zero_aborts_on_the_first_failure_naming_the_slot() {
    let mut listener = listen("shape_max_failures");
    let mut client = connect();
    let id = "maxfail/zero";
    enqueue(
        &mut client,
        id,
        3,
        "channel => 'shape_max_failures', max_failures => 0",
    );
    assert_eq!(
        succeed(&mut client, id, 0, json!("a")),
        Reply::only("pending", 2)
    );
    assert_eq!(
        fail(&mut client, id, 2, json!({"error": "disk full"})),
        Reply::only("aborted", 1)
    );
    let shown = status(&mut client, id);
    assert_eq!(shown.counts().0, "aborted");
    assert_eq!(shown.remaining, 1);
    assert_eq!(
        shown.reason.as_deref(),
        Some("slot 2 failed: more than 0 failures")
    );
    assert_eq!(results_so_far(&mut client, id), None);
    assert_eq!(rows(&mut client, id), vec![]);
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("aborted", 1)
    );
    assert_eq!(
        notifications(&mut listener, QUIET),
        vec![payload(id, "aborted", 1)]
    );
}

/// Only the failures held now count against `max_failures`: a re-armed failure no longer does.
#[test]
fn max_failures_counts_only_the_failures_held_now() {
    let mut client = connect();
    let id = "maxfail/one";
    enqueue(&mut client, id, 4, "max_failures => 1");
    assert_eq!(
        fail(&mut client, id, 0, json!("x")),
        Reply::only("pending", 3)
    );
    assert_eq!(
        succeed(&mut client, id, 0, json!("ok")),
        Reply::only("pending", 3)
    );
    assert_eq!(
        fail(&mut client, id, 1, json!("y")),
        Reply::only("pending", 2)
    );
    assert_eq!(status(&mut client, id).counts(), ("pending", 2, 1));
    assert_eq!(
        fail(&mut client, id, 2, json!("z")),
        Reply::only("aborted", 1)
    );
    assert_eq!(
        status(&mut client, id).reason.as_deref(),
        Some("slot 2 failed: more than 1 failures")
    );
}

// ---------------------------------------------------------------------------------------------
// Quorums
// ---------------------------------------------------------------------------------------------

/// `need => k` completes on the k-th success with the results so far: the slots that have not
/// reported are null and listed in `missing_slots`, and `remaining` says how many they are.
#[test]
fn quorum_completes_on_the_kth_success_with_missing_slots_null() {
    let mut client = connect();
    let id = "quorum/two-of-five";
    let callback = json!({"next": "pick"});
    enqueue(
        &mut client,
        id,
        5,
        "callback => '{\"next\": \"pick\"}', need => 2",
    );
    assert_eq!(status(&mut client, id).need, Some(2));
    assert_eq!(
        succeed(&mut client, id, 3, json!("d")),
        Reply::only("pending", 4)
    );
    assert_eq!(pending_slots(&mut client, id).unwrap(), vec![0, 1, 2, 4]);
    let completion = Reply::completion(
        "complete",
        3,
        json!(["a", null, null, "d", null]),
        Some(callback.clone()),
        &[],
        json!([]),
        &[1, 2, 4],
    );
    assert_eq!(succeed(&mut client, id, 0, json!("a")), completion);
    assert_eq!(status(&mut client, id).counts(), ("complete", 3, 0));
    assert_eq!(pending_slots(&mut client, id).unwrap(), Vec::<i32>::new());
    assert_eq!(
        take(&mut client, id).unwrap(),
        Some(Handed::new(
            "complete",
            json!(["a", null, null, "d", null]),
            Some(callback),
            &[],
            json!([]),
            &[1, 2, 4]
        ))
    );
}

/// After a quorum, later reports answer `already_complete` (`duplicate` for a slot that
/// reported) and are not stored: not in the rows, the completion, or the failure count.
#[test]
fn late_reports_after_a_quorum_are_not_stored() {
    let mut client = connect();
    let id = "quorum/late";
    enqueue(&mut client, id, 3, "need => 1");
    assert_eq!(
        succeed(&mut client, id, 1, json!("first")),
        Reply::completion(
            "complete",
            2,
            json!([null, "first", null]),
            None,
            &[],
            json!([]),
            &[0, 2]
        )
    );
    // (What `remaining` these late answers carry is not part of the contract: not checked.)
    let late = succeed(&mut client, id, 0, json!("late"));
    assert_eq!(
        (late.status.as_str(), late.results),
        ("already_complete", None)
    );
    let again = succeed(&mut client, id, 1, json!("again"));
    assert_eq!((again.status.as_str(), again.results), ("duplicate", None));
    let failed = fail(&mut client, id, 2, json!("late failure"));
    assert_eq!(
        (failed.status.as_str(), failed.results),
        ("already_complete", None)
    );
    assert_eq!(rows(&mut client, id), vec![(1, json!("first"), false)]);
    assert_eq!(status(&mut client, id).counts(), ("complete", 2, 0));
    assert_eq!(
        results_so_far(&mut client, id),
        Some(json!([null, "first", null]))
    );
    let handed = take(&mut client, id)
        .unwrap()
        .expect("the quorum's completion");
    assert_eq!(handed.results, json!([null, "first", null]));
    assert_eq!(handed.missing_slots, vec![0, 2]);
}

/// Failures count toward the reports but not toward the quorum: the quorum's completion lists
/// the failures it holds.
#[test]
fn failures_count_against_a_quorum() {
    let mut client = connect();
    let id = "quorum/with-failures";
    enqueue(&mut client, id, 4, "need => 2");
    assert_eq!(
        fail(&mut client, id, 0, json!("x")),
        Reply::only("pending", 3)
    );
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("pending", 2)
    );
    assert_eq!(
        fail(&mut client, id, 2, json!("y")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        succeed(&mut client, id, 3, json!("d")),
        Reply::completion(
            "complete_with_failures",
            0,
            json!([null, "b", null, "d"]),
            None,
            &[0, 2],
            json!(["x", "y"]),
            &[]
        )
    );
}

/// When the successes so far plus the reports still to come can no longer reach the quorum,
/// the report that made it so aborts the barrier.
#[test]
fn an_impossible_quorum_aborts() {
    let mut listener = listen("shape_quorum_abort");
    let mut client = connect();
    let id = "quorum/impossible";
    enqueue(
        &mut client,
        id,
        3,
        "channel => 'shape_quorum_abort', need => 2",
    );
    assert_eq!(
        fail(&mut client, id, 0, json!("x")),
        Reply::only("pending", 2)
    );
    assert_eq!(
        fail(&mut client, id, 2, json!("y")),
        Reply::only("aborted", 1)
    );
    let shown = status(&mut client, id);
    assert_eq!((shown.status.as_str(), shown.remaining), ("aborted", 1));
    assert_eq!(
        shown.reason.as_deref(),
        Some("quorum of 2 can no longer be reached")
    );
    assert_eq!(results_so_far(&mut client, id), None);
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("aborted", 1)
    );
    assert_eq!(
        notifications(&mut listener, QUIET),
        vec![payload(id, "aborted", 1)]
    );
}

/// A re-armed slot that brings the successes to the quorum completes the barrier.
#[test]
fn a_rearm_that_meets_the_quorum_completes() {
    let mut client = connect();
    let id = "quorum/rearm";
    enqueue(&mut client, id, 3, "need => 2");
    assert_eq!(
        succeed(&mut client, id, 0, json!("a")),
        Reply::only("pending", 2)
    );
    assert_eq!(
        fail(&mut client, id, 1, json!("x")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::completion(
            "complete",
            1,
            json!(["a", "b", null]),
            None,
            &[],
            json!([]),
            &[2]
        )
    );
    assert_eq!(status(&mut client, id).counts(), ("complete", 1, 0));
}

// ---------------------------------------------------------------------------------------------
// Open fan-ins
// ---------------------------------------------------------------------------------------------

/// `sealed => false`: the barrier grows with `barrier_add` and waits with nothing remaining
/// until it is sealed; `expected => 0` is pending, not complete.
#[test]
fn an_open_barrier_completes_only_when_sealed() {
    let mut client = connect();
    let id = "open/grow";
    assert_eq!(enqueue(&mut client, id, 2, "sealed => false"), "pending");
    assert!(!status(&mut client, id).sealed);
    assert_eq!(
        succeed(&mut client, id, 0, json!("a")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("pending", 0)
    );
    let shown = status(&mut client, id);
    assert_eq!(
        (shown.counts(), shown.sealed),
        (("pending", 0, 0), false),
        "{shown:?}"
    );
    let grown: i32 = client
        .query_one("SELECT barrier_add($1, 1)", &[&id])
        .unwrap()
        .get(0);
    assert_eq!(grown, 3);
    assert_eq!(pending_slots(&mut client, id).unwrap(), vec![2]);
    assert_eq!(
        succeed(&mut client, id, 2, json!("c")),
        Reply::only("pending", 0)
    );
    assert_eq!(pending_slots(&mut client, id).unwrap(), Vec::<i32>::new());
    assert_eq!(
        sealed(&mut client, id),
        Reply::completion(
            "complete",
            0,
            json!(["a", "b", "c"]),
            None,
            &[],
            json!([]),
            &[]
        )
    );
    let shown = status(&mut client, id);
    assert_eq!((shown.counts(), shown.sealed), (("complete", 0, 0), true));

    let id = "open/empty";
    assert_eq!(enqueue(&mut client, id, 0, "sealed => false"), "pending");
    let shown = status(&mut client, id);
    assert_eq!((shown.status.as_str(), shown.expected), ("pending", 0));
    assert_eq!(pending_slots(&mut client, id).unwrap(), Vec::<i32>::new());
    client
        .query_one("SELECT barrier_add($1, 2)", &[&id])
        .unwrap();
    assert_eq!(pending_slots(&mut client, id).unwrap(), vec![0, 1]);
    assert_eq!(
        succeed(&mut client, id, 1, json!("y")),
        Reply::only("pending", 1)
    );
    // Sealed with a report to come: pending, and the last report completes it.
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 1));
    assert!(status(&mut client, id).sealed);
    assert_eq!(
        succeed(&mut client, id, 0, json!("x")),
        Reply::completion("complete", 0, json!(["x", "y"]), None, &[], json!([]), &[])
    );
}

/// An open fan-in with every report in completes in the transaction that seals it, and
/// notifies at its commit; a rolled-back seal leaves it open and pending.
#[test]
fn sealing_completes_in_the_sealing_transaction() {
    let mut listener = listen("shape_seal");
    let mut client = connect();
    let id = "open/sealing-tx";
    let callback = json!({"next": "merge"});
    enqueue(
        &mut client,
        id,
        2,
        "callback => '{\"next\": \"merge\"}', channel => 'shape_seal', sealed => false",
    );
    assert_eq!(
        succeed(&mut client, id, 0, json!("a")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        fail(&mut client, id, 1, json!("e")),
        Reply::only("pending", 0)
    );
    let completion = Reply::completion(
        "complete_with_failures",
        0,
        json!(["a", null]),
        Some(callback),
        &[1],
        json!(["e"]),
        &[],
    );
    let mut tx = client.transaction().unwrap();
    assert_eq!(sealed(&mut tx, id), completion);
    assert_eq!(
        status(&mut tx, id).counts(),
        ("complete_with_failures", 0, 1)
    );
    assert_eq!(notifications(&mut listener, QUIET), Vec::<Value>::new());
    tx.rollback().unwrap();
    let shown = status(&mut client, id);
    assert_eq!((shown.counts(), shown.sealed), (("pending", 0, 1), false));
    assert_eq!(notifications(&mut listener, QUIET), Vec::<Value>::new());
    assert_eq!(sealed(&mut client, id), completion);
    assert_eq!(
        notifications(&mut listener, QUIET),
        vec![payload(id, "complete_with_failures", 1)]
    );
}

/// An open fan-in may ask for more than it expects so far; sealing it when the quorum can no
/// longer be reached aborts it, and sealing it when it still can leaves it pending.
#[test]
fn sealing_an_open_fan_in_that_cannot_reach_its_quorum_aborts() {
    let mut client = connect();
    let id = "open/short";
    enqueue(&mut client, id, 2, "need => 3, sealed => false");
    assert_eq!(
        succeed(&mut client, id, 0, json!("a")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("pending", 0)
    );
    assert_eq!(sealed(&mut client, id), Reply::only("aborted", 0));
    let shown = status(&mut client, id);
    assert_eq!(shown.status, "aborted");
    assert_eq!(
        shown.reason.as_deref(),
        Some("quorum of 3 can no longer be reached")
    );

    let id = "open/enough";
    enqueue(&mut client, id, 2, "need => 3, sealed => false");
    succeed(&mut client, id, 0, json!("a"));
    succeed(&mut client, id, 1, json!("b"));
    client
        .query_one("SELECT barrier_add($1, 1)", &[&id])
        .unwrap();
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 1));
    assert_eq!(
        succeed(&mut client, id, 2, json!("c")),
        Reply::completion(
            "complete",
            0,
            json!(["a", "b", "c"]),
            None,
            &[],
            json!([]),
            &[]
        )
    );
}

/// Sealing is idempotent on a pending barrier; a finished one refuses with 55000 naming its
/// status, an unknown id with 42704, another role's barrier with 42501.
#[test]
fn seal_is_idempotent_and_refuses_finished_or_unknown_barriers() {
    let mut client = connect();
    let id = "seal/sealed";
    enqueue(&mut client, id, 2, "");
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 2));
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 2));
    let id = "seal/open";
    enqueue(&mut client, id, 2, "sealed => false");
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 2));
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 2));
    let shown = status(&mut client, id);
    assert_eq!((shown.counts(), shown.sealed), (("pending", 2, 0), true));

    enqueue(&mut client, "seal/complete", 1, "");
    succeed(&mut client, "seal/complete", 0, json!(1));
    enqueue(&mut client, "seal/failed", 1, "");
    fail(&mut client, "seal/failed", 0, json!("e"));
    enqueue(&mut client, "seal/aborted", 1, "");
    client
        .query_one("SELECT barrier_abort('seal/aborted')", &[])
        .unwrap();
    client
        .batch_execute("SELECT barrier_enqueue('seal/expired', 1, ttl => '1 microsecond')")
        .unwrap();
    for (id, shown) in [
        ("seal/complete", "complete"),
        ("seal/failed", "complete_with_failures"),
        ("seal/aborted", "aborted"),
        ("seal/expired", "expired"),
    ] {
        let (code, message, detail) = refusal(seal(&mut client, id));
        assert_eq!(code, "55000", "{id}: {message}");
        assert_eq!(
            message,
            format!("barrier_seal: barrier \"{id}\" is {shown}")
        );
        assert_eq!(
            detail.as_deref(),
            Some("Only a pending barrier can be sealed.")
        );
    }
    let (code, message, _) = refusal(seal(&mut client, "seal/unknown"));
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "42704",
            "barrier_seal: barrier \"seal/unknown\" does not exist"
        )
    );
    assert!(!exists(&mut client, "seal/unknown"));
    client
        .batch_execute(&format!("SET ROLE {}", stranger()))
        .unwrap();
    let (code, message, _) = refusal(seal(&mut client, "seal/open"));
    client.batch_execute("RESET ROLE").unwrap();
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "42501",
            "barrier_seal: permission denied for barrier \"seal/open\""
        )
    );
}

// ---------------------------------------------------------------------------------------------
// Expiry that delivers
// ---------------------------------------------------------------------------------------------

/// Enqueues `id` with a ttl of 1 microsecond and makes `reports` (SQL statements), all in one
/// command: expiry is decided against statement_timestamp(), the same for every statement of a
/// command, so the reports count, and every later command finds the barrier past its ttl.
fn enqueue_lapsing(client: &mut Client, id: &str, expected: i32, rest: &str, reports: &[&str]) {
    let mut batch = format!(
        "SELECT barrier_enqueue('{id}', {expected}, ttl => '1 microsecond'{}{rest});",
        if rest.is_empty() { "" } else { ", " }
    );
    for statement in reports {
        batch.push_str(statement);
        batch.push(';');
    }
    client.batch_execute(&batch).unwrap();
}

/// `on_expiry => 'deliver'`: past its ttl the barrier ends `expired` with the results so far
/// kept, notifies `expired` once, and `barrier_take` hands it out once, with every slot that
/// did not report listed as missing.
#[test]
fn an_expiry_that_delivers_is_taken_once_with_missing_slots() {
    let mut listener = listen("shape_deliver");
    let mut client = connect();
    let id = "deliver/take";
    let callback = json!({"next": "partial"});
    enqueue_lapsing(
        &mut client,
        id,
        4,
        "callback => '{\"next\": \"partial\"}', channel => 'shape_deliver', \
         on_expiry => 'deliver'",
        &[
            "SELECT barrier_decr('deliver/take', '\"a\"', 0)",
            "SELECT barrier_decr('deliver/take', '\"e\"', 2, failed => true)",
        ],
    );
    // The first call after the ttl stores the expiry (unless the background sweeper did).
    assert_eq!(
        succeed(&mut client, id, 1, json!("late")),
        Reply::only("expired", 2)
    );
    let shown = status(&mut client, id);
    assert_eq!(shown.counts(), ("expired", 2, 1));
    assert_eq!(
        results_so_far(&mut client, id),
        Some(json!(["a", null, null, null]))
    );
    assert_eq!(
        notifications(&mut listener, QUIET),
        vec![payload(id, "expired", 1)]
    );
    assert_eq!(
        take(&mut client, id).unwrap(),
        Some(Handed::new(
            "expired",
            json!(["a", null, null, null]),
            Some(callback),
            &[2],
            json!(["e"]),
            &[1, 3]
        ))
    );
    assert_eq!(take(&mut client, id).unwrap(), None);
    assert_eq!(results_so_far(&mut client, id), None);
    assert_eq!(claim(&mut client, "shape_deliver", 10).unwrap(), vec![]);
    assert_eq!(notifications(&mut listener, QUIET), Vec::<Value>::new());
}

/// A stored expiry that delivers is listed by `barrier_completions` and claimed once.
#[test]
fn a_delivered_expiry_is_claimed_by_barrier_completions() {
    let mut client = connect();
    let id = "deliver/claim";
    enqueue_lapsing(
        &mut client,
        id,
        3,
        "channel => 'shape_deliver_claim', on_expiry => 'deliver'",
        &["SELECT barrier_decr('deliver/claim', '\"b\"', 1)"],
    );
    assert_eq!(
        succeed(&mut client, id, 0, json!("late")),
        Reply::only("expired", 2)
    );
    assert_eq!(
        claim(&mut client, "shape_deliver_claim", 10).unwrap(),
        vec![(
            id.to_string(),
            Handed::new(
                "expired",
                json!([null, "b", null]),
                None,
                &[],
                json!([]),
                &[0, 2]
            )
        )]
    );
    assert_eq!(
        claim(&mut client, "shape_deliver_claim", 10).unwrap(),
        vec![]
    );
    assert_eq!(take(&mut client, id).unwrap(), None);
}

/// `barrier_take` of a pending barrier past its ttl expires it: with `'deliver'` it hands out
/// the results so far at once; with `'discard'` (the default) there is nothing to take.
#[test]
fn a_take_past_the_expiry_delivers_at_once() {
    let mut client = connect();
    let id = "deliver/lazy";
    enqueue_lapsing(
        &mut client,
        id,
        2,
        "on_expiry => 'deliver'",
        &["SELECT barrier_decr('deliver/lazy', '\"a\"', 0)"],
    );
    assert_eq!(
        take(&mut client, id).unwrap(),
        Some(Handed::new(
            "expired",
            json!(["a", null]),
            None,
            &[],
            json!([]),
            &[1]
        ))
    );
    assert_eq!(status(&mut client, id).counts(), ("expired", 1, 0));

    let id = "deliver/discard";
    enqueue_lapsing(
        &mut client,
        id,
        2,
        "",
        &["SELECT barrier_decr('deliver/discard', '\"a\"', 0)"],
    );
    assert_eq!(take(&mut client, id).unwrap(), None);
    assert_eq!(status(&mut client, id).status, "expired");
    assert_eq!(results_so_far(&mut client, id), None);
}

// ---------------------------------------------------------------------------------------------
// Nested barriers
// ---------------------------------------------------------------------------------------------

/// A child's completion is a successful report into its parent's slot, in the transaction of
/// the report that completes the child, and the child is handed over (taken); a rollback of
/// that report takes back the child's completion and the parent's report together.
#[test]
fn a_child_completion_reports_into_its_parent_in_the_same_transaction() {
    let mut listener = listen("shape_nest");
    let mut client = connect();
    let (parent, child) = ("nest/parent", "nest/child");
    let callback = json!({"next": "root"});
    enqueue(
        &mut client,
        parent,
        2,
        "callback => '{\"next\": \"root\"}', channel => 'shape_nest'",
    );
    enqueue(
        &mut client,
        child,
        2,
        "channel => 'shape_nest', parent => 'nest/parent', parent_slot => 0",
    );
    assert_eq!(
        succeed(&mut client, child, 0, json!("a")),
        Reply::only("pending", 1)
    );
    assert_eq!(status(&mut client, parent).counts(), ("pending", 2, 0));
    assert_eq!(rows(&mut client, parent), vec![]);

    let child_done = Reply::completion("complete", 0, json!(["a", "b"]), None, &[], json!([]), &[]);
    let reported = handed_up(child, 1, "complete", json!(["a", "b"]), &[], json!([]), &[]);
    let mut tx = client.transaction().unwrap();
    assert_eq!(succeed(&mut tx, child, 1, json!("b")), child_done);
    assert_eq!(status(&mut tx, parent).counts(), ("pending", 1, 0));
    assert_eq!(rows(&mut tx, parent), vec![(0, reported.clone(), false)]);
    assert!(
        taken(&mut tx, child),
        "the parent took the child's completion"
    );
    assert_eq!(take(&mut tx, child).unwrap(), None);
    tx.rollback().unwrap();

    assert_eq!(status(&mut client, parent).counts(), ("pending", 2, 0));
    assert_eq!(rows(&mut client, parent), vec![]);
    assert_eq!(status(&mut client, child).counts(), ("pending", 1, 0));
    assert_eq!(results_so_far(&mut client, child), Some(json!(["a"])));
    assert_eq!(notifications(&mut listener, QUIET), Vec::<Value>::new());

    assert_eq!(succeed(&mut client, child, 1, json!("b")), child_done);
    assert_eq!(status(&mut client, parent).counts(), ("pending", 1, 0));
    assert_eq!(results_so_far(&mut client, parent), Some(json!([reported])));
    assert!(taken(&mut client, child));
    assert_eq!(results_so_far(&mut client, child), None);
    assert_eq!(claim(&mut client, "shape_nest", 10).unwrap(), vec![]);
    assert_eq!(
        succeed(&mut client, parent, 1, json!("z")),
        Reply::completion(
            "complete",
            0,
            json!([reported, "z"]),
            Some(callback),
            &[],
            json!([]),
            &[]
        )
    );
    assert_eq!(
        notifications(&mut listener, QUIET),
        vec![
            payload(child, "complete", 1),
            payload(parent, "complete", 1)
        ]
    );
}

/// One leaf report completes a leaf, its parent and the root, bottom-up, in its transaction:
/// each level reports into the next, each notifies, and only the root is left to take.
#[test]
fn a_three_level_tree_completes_from_one_leaf_report() {
    let mut listener = listen("shape_tree");
    let mut client = connect();
    let (root, mid, leaf) = ("tree/root", "tree/mid", "tree/leaf");
    enqueue(&mut client, root, 1, "channel => 'shape_tree'");
    enqueue(
        &mut client,
        mid,
        2,
        "channel => 'shape_tree', parent => 'tree/root', parent_slot => 0",
    );
    enqueue(
        &mut client,
        leaf,
        2,
        "channel => 'shape_tree', parent => 'tree/mid', parent_slot => 1",
    );
    assert_eq!(
        succeed(&mut client, mid, 0, json!("m0")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        succeed(&mut client, leaf, 0, json!("x")),
        Reply::only("pending", 1)
    );
    // In a transaction that rolls back, the whole tree completes and is taken back.
    let mut tx = client.transaction().unwrap();
    assert!(succeed(&mut tx, leaf, 1, json!("y")).completed());
    for id in [leaf, mid, root] {
        assert_eq!(status(&mut tx, id).status, "complete", "{id}");
    }
    tx.rollback().unwrap();
    assert_eq!(status(&mut client, leaf).counts(), ("pending", 1, 0));
    assert_eq!(status(&mut client, mid).counts(), ("pending", 1, 0));
    assert_eq!(status(&mut client, root).counts(), ("pending", 1, 0));
    assert_eq!(rows(&mut client, mid), vec![(0, json!("m0"), false)]);
    assert_eq!(rows(&mut client, root), vec![]);
    assert_eq!(notifications(&mut listener, QUIET), Vec::<Value>::new());
    assert_eq!(
        succeed(&mut client, leaf, 1, json!("y")),
        Reply::completion("complete", 0, json!(["x", "y"]), None, &[], json!([]), &[])
    );
    let leaf_up = handed_up(leaf, 1, "complete", json!(["x", "y"]), &[], json!([]), &[]);
    let mid_up = handed_up(
        mid,
        1,
        "complete",
        json!(["m0", leaf_up]),
        &[],
        json!([]),
        &[],
    );
    for id in [leaf, mid, root] {
        assert_eq!(status(&mut client, id).counts(), ("complete", 0, 0), "{id}");
    }
    assert!(taken(&mut client, leaf) && taken(&mut client, mid));
    assert_eq!(results_so_far(&mut client, root), Some(json!([mid_up])));
    assert_eq!(
        notifications(&mut listener, QUIET),
        vec![
            payload(leaf, "complete", 1),
            payload(mid, "complete", 1),
            payload(root, "complete", 1)
        ]
    );
    assert_eq!(
        claim(&mut client, "shape_tree", 10).unwrap(),
        vec![(
            root.to_string(),
            Handed::new("complete", json!([mid_up]), None, &[], json!([]), &[])
        )]
    );
}

/// An aborted child is a failed report into its parent's slot, once: a second abort or a late
/// report of the child changes nothing there; the parent completes with the failure.
#[test]
fn a_child_abort_fails_the_parent_slot_exactly_once() {
    let mut client = connect();
    let (parent, child) = ("abortup/parent", "abortup/child");
    enqueue(&mut client, parent, 2, "");
    enqueue(
        &mut client,
        child,
        3,
        "parent => 'abortup/parent', parent_slot => 1",
    );
    assert_eq!(
        succeed(&mut client, child, 0, json!("c0")),
        Reply::only("pending", 2)
    );
    let aborted: String = client
        .query_one("SELECT barrier_abort($1, 'gave up')", &[&child])
        .unwrap()
        .get(0);
    assert_eq!(aborted, "aborted");
    let reported = ended_up(child, 1, "aborted", Some("gave up"));
    assert_eq!(status(&mut client, parent).counts(), ("pending", 1, 1));
    assert_eq!(rows(&mut client, parent), vec![(1, reported.clone(), true)]);
    assert_eq!(results_so_far(&mut client, parent), Some(json!([null])));
    let again: String = client
        .query_one("SELECT barrier_abort($1, 'again')", &[&child])
        .unwrap()
        .get(0);
    assert_eq!(again, "already_aborted");
    assert_eq!(
        succeed(&mut client, child, 1, json!("c1")),
        Reply::only("aborted", 2)
    );
    assert_eq!(status(&mut client, parent).counts(), ("pending", 1, 1));
    assert_eq!(rows(&mut client, parent), vec![(1, reported.clone(), true)]);
    assert_eq!(
        succeed(&mut client, parent, 0, json!("p0")),
        Reply::completion(
            "complete_with_failures",
            0,
            json!(["p0", null]),
            None,
            &[1],
            json!([reported]),
            &[]
        )
    );
}

/// A child aborted by its own policy hands its reason up.
#[test]
fn a_child_aborted_by_its_policy_hands_up_the_reason() {
    let mut client = connect();
    let (parent, child) = ("policyup/parent", "policyup/child");
    enqueue(&mut client, parent, 1, "");
    enqueue(
        &mut client,
        child,
        2,
        "max_failures => 0, parent => 'policyup/parent', parent_slot => 0",
    );
    assert_eq!(
        fail(&mut client, child, 1, json!("boom")),
        Reply::only("aborted", 1)
    );
    let reported = ended_up(
        child,
        1,
        "aborted",
        Some("slot 1 failed: more than 0 failures"),
    );
    assert_eq!(
        take(&mut client, parent).unwrap(),
        Some(Handed::new(
            "complete_with_failures",
            json!([null]),
            None,
            &[0],
            json!([reported]),
            &[]
        ))
    );
}

/// A child that failed, enqueued again (a new round) and completed, re-arms its parent's slot:
/// the parent's failure count drops, its remaining count does not move.
#[test]
fn a_child_enqueued_again_rearms_its_parent_slot() {
    let mut client = connect();
    let (parent, child) = ("rearmup/parent", "rearmup/child");
    enqueue(&mut client, parent, 2, "");
    let shape = "parent => 'rearmup/parent', parent_slot => 0";
    enqueue(&mut client, child, 1, shape);
    client
        .query_one(
            "SELECT barrier_abort($1, 'first attempt failed')",
            &[&child],
        )
        .unwrap();
    assert_eq!(status(&mut client, parent).counts(), ("pending", 1, 1));
    assert_eq!(enqueue(&mut client, child, 1, shape), "pending");
    assert_eq!(status(&mut client, child).round, 2);
    assert_eq!(
        succeed(&mut client, child, 0, json!("ok")),
        Reply::completion("complete", 0, json!(["ok"]), None, &[], json!([]), &[])
    );
    let reported = handed_up(child, 2, "complete", json!(["ok"]), &[], json!([]), &[]);
    assert_eq!(status(&mut client, parent).counts(), ("pending", 1, 0));
    assert_eq!(
        rows(&mut client, parent),
        vec![(0, reported.clone(), false)]
    );
    assert!(taken(&mut client, child));
    assert_eq!(
        succeed(&mut client, parent, 1, json!("p1")),
        Reply::completion(
            "complete",
            0,
            json!([reported, "p1"]),
            None,
            &[],
            json!([]),
            &[]
        )
    );
}

/// A child's expiry is a failed report into its parent: with `'discard'` it carries no
/// results, with `'deliver'` the results so far, and the delivered child is handed over.
#[test]
fn a_child_expiry_fails_the_parent_slot_with_or_without_its_results() {
    let mut client = connect();
    let parent = "expireup/parent";
    let (discarding, delivering) = ("expireup/discard", "expireup/deliver");
    enqueue(&mut client, parent, 2, "");
    client
        .batch_execute(
            "SELECT barrier_enqueue('expireup/discard', 2, ttl => '1 microsecond',
                                    parent => 'expireup/parent', parent_slot => 0);
             SELECT barrier_enqueue('expireup/deliver', 2, ttl => '1 microsecond',
                                    on_expiry => 'deliver',
                                    parent => 'expireup/parent', parent_slot => 1);
             SELECT barrier_decr('expireup/discard', '\"d0\"', 0);
             SELECT barrier_decr('expireup/deliver', '\"v0\"', 0);",
        )
        .unwrap();
    assert_eq!(
        succeed(&mut client, discarding, 1, json!("late")),
        Reply::only("expired", 1)
    );
    assert_eq!(
        succeed(&mut client, delivering, 1, json!("late")),
        Reply::only("expired", 1)
    );
    let discarded = ended_up(discarding, 1, "expired", None);
    let delivered = handed_up(
        delivering,
        1,
        "expired",
        json!(["v0", null]),
        &[],
        json!([]),
        &[1],
    );
    assert_eq!(
        take(&mut client, parent).unwrap(),
        Some(Handed::new(
            "complete_with_failures",
            json!([null, null]),
            None,
            &[0, 1],
            json!([discarded, delivered]),
            &[]
        ))
    );
    assert!(
        taken(&mut client, delivering),
        "the parent took the delivered expiry"
    );
    assert_eq!(take(&mut client, delivering).unwrap(), None);
    assert_eq!(results_so_far(&mut client, discarding), None);
}

/// An empty child (`expected => 0`, sealed) completes at enqueue, and reports into its parent
/// in that transaction.
#[test]
fn an_empty_child_reports_into_its_parent_at_enqueue() {
    let mut client = connect();
    let (parent, child) = ("emptyup/parent", "emptyup/child");
    enqueue(&mut client, parent, 1, "channel => 'shape_empty_up'");
    assert_eq!(
        enqueue(
            &mut client,
            child,
            0,
            "channel => 'shape_empty_up', parent => 'emptyup/parent', parent_slot => 0"
        ),
        "complete"
    );
    let reported = handed_up(child, 1, "complete", json!([]), &[], json!([]), &[]);
    assert_eq!(status(&mut client, parent).counts(), ("complete", 0, 0));
    assert_eq!(
        claim(&mut client, "shape_empty_up", 10).unwrap(),
        vec![(
            parent.to_string(),
            Handed::new("complete", json!([reported]), None, &[], json!([]), &[])
        )]
    );
}

/// A parent that cannot accept a child's completion (finished, its slot already reported, or
/// counted without slots) is left as it was, never with an error, and the child's completion
/// stays takeable.
#[test]
fn a_parent_that_cannot_accept_leaves_the_child_completion_takeable() {
    let mut client = connect();
    let cases = [
        (
            "noaccept/aborted",
            "SELECT barrier_abort('noaccept/aborted')",
        ),
        (
            "noaccept/reported",
            "SELECT barrier_decr('noaccept/reported', '\"direct\"', 0)",
        ),
        (
            "noaccept/unslotted",
            "SELECT barrier_decr('noaccept/unslotted', '\"direct\"')",
        ),
    ];
    for (parent, meanwhile) in cases {
        let child = format!("{parent}/child");
        enqueue(&mut client, parent, 3, "");
        enqueue(
            &mut client,
            &child,
            1,
            &format!("parent => '{parent}', parent_slot => 0"),
        );
        client.batch_execute(meanwhile).unwrap();
        let before = (status(&mut client, parent), rows(&mut client, parent));
        assert_eq!(
            succeed(&mut client, &child, 0, json!("x")),
            Reply::completion("complete", 0, json!(["x"]), None, &[], json!([]), &[]),
            "{parent}"
        );
        assert_eq!(
            (status(&mut client, parent), rows(&mut client, parent)),
            before,
            "{parent} changed"
        );
        assert_eq!(
            take(&mut client, &child).unwrap(),
            Some(Handed::new(
                "complete",
                json!(["x"]),
                None,
                &[],
                json!([]),
                &[]
            )),
            "{parent}"
        );
    }
}

/// The refusals of `parent`/`parent_slot` at enqueue, each with its SQLSTATE and message and
/// no child left behind: the child as its own ancestor (42P19), an unknown parent (42704),
/// another role's parent, either way round (42501), a finished parent (55000), a parent
/// counted without slots or a slot out of range (22023), nesting deeper than 16 (54001), and a
/// slot that reported or that another child claims (42710).
#[test]
fn nesting_refuses_cycles_depth_taken_slots_and_other_roles() {
    let mut client = connect();
    let parent = "refuse/p";
    enqueue(&mut client, parent, 3, "");
    enqueue(
        &mut client,
        "refuse/claim",
        1,
        "parent => 'refuse/p', parent_slot => 0",
    );
    // The same enqueue again is a retry, not a second claim.
    assert_eq!(
        enqueue(
            &mut client,
            "refuse/claim",
            1,
            "parent => 'refuse/p', parent_slot => 0"
        ),
        "pending"
    );
    succeed(&mut client, parent, 1, json!("direct"));
    fail(&mut client, parent, 2, json!("failed"));
    enqueue(&mut client, "refuse/done", 1, "");
    succeed(&mut client, "refuse/done", 0, json!(1));
    enqueue(&mut client, "refuse/counted", 2, "");
    ok(&mut client, "refuse/counted", json!(1), None, false);
    enqueue(&mut client, "refuse/a", 1, "");
    enqueue(
        &mut client,
        "refuse/b",
        1,
        "parent => 'refuse/a', parent_slot => 0",
    );
    client
        .batch_execute(&format!(
            "SET ROLE {}; SELECT barrier_enqueue('refuse/foreign', 2); RESET ROLE",
            stranger()
        ))
        .unwrap();
    let taken_detail = "It has reported, or another barrier reports into it.";
    let cases: Vec<Refused> = vec![
        (
            "refuse/self",
            1,
            "parent => 'refuse/self', parent_slot => 0",
            "42P19",
            "barrier_enqueue: barrier \"refuse/self\" cannot be its own ancestor".into(),
            None,
        ),
        (
            "refuse/a",
            1,
            "replace => true, parent => 'refuse/b', parent_slot => 0",
            "42P19",
            "barrier_enqueue: barrier \"refuse/a\" cannot be its own ancestor".into(),
            None,
        ),
        (
            "refuse/orphan",
            1,
            "parent => 'refuse/nobody', parent_slot => 0",
            "42704",
            "barrier_enqueue: barrier \"refuse/nobody\" does not exist".into(),
            None,
        ),
        (
            "refuse/into-foreign",
            1,
            "parent => 'refuse/foreign', parent_slot => 0",
            "42501",
            "barrier_enqueue: permission denied for barrier \"refuse/foreign\"".into(),
            Some("A barrier belongs to the role that enqueued it."),
        ),
        (
            "refuse/finished",
            1,
            "parent => 'refuse/done', parent_slot => 0",
            "55000",
            "barrier_enqueue: barrier \"refuse/done\" is complete".into(),
            Some("Only a pending barrier can take more tasks."),
        ),
        (
            "refuse/unslotted",
            1,
            "parent => 'refuse/counted', parent_slot => 0",
            "22023",
            "barrier_enqueue: invalid argument \"parent_slot\": barrier \"refuse/counted\" is \
             counted without slots"
                .into(),
            None,
        ),
        (
            "refuse/out-of-range",
            1,
            "parent => 'refuse/p', parent_slot => 3",
            "22023",
            "barrier_enqueue: invalid argument \"parent_slot\": 3 is out of range: barrier \
             \"refuse/p\" expects 3 tasks, slots 0 to 2"
                .into(),
            None,
        ),
        (
            "refuse/rival",
            1,
            "parent => 'refuse/p', parent_slot => 0",
            "42710",
            "barrier_enqueue: slot 0 of barrier \"refuse/p\" is taken".into(),
            Some(taken_detail),
        ),
        (
            "refuse/after-report",
            1,
            "parent => 'refuse/p', parent_slot => 1",
            "42710",
            "barrier_enqueue: slot 1 of barrier \"refuse/p\" is taken".into(),
            Some(taken_detail),
        ),
        (
            "refuse/after-failure",
            1,
            "parent => 'refuse/p', parent_slot => 2",
            "42710",
            "barrier_enqueue: slot 2 of barrier \"refuse/p\" is taken".into(),
            Some(taken_detail),
        ),
    ];
    for (id, expected, rest, code, message, detail) in cases {
        let existed = exists(&mut client, id);
        let (got_code, got_message, got_detail) =
            refusal(try_enqueue(&mut client, id, expected, rest));
        assert_eq!(got_code, code, "{id} ({rest}): {got_message}");
        assert_eq!(got_message, message, "{id} ({rest})");
        if detail.is_some() {
            assert_eq!(got_detail.as_deref(), detail, "{id} ({rest})");
        }
        assert_eq!(exists(&mut client, id), existed, "{id}: left behind");
    }
    // The refused cycle left `refuse/a` as it was: round 1, no parent.
    assert_eq!(status(&mut client, "refuse/a").round, 1);
    let parent_of_a: Option<String> = client
        .query_one(
            "SELECT parent FROM barrier_internal.barrier_spec WHERE id = 'refuse/a'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(parent_of_a, None);

    // Another role's child under this role's parent is refused as well.
    let child_of_stranger = "refuse/stranger-child";
    client
        .batch_execute(&format!("SET ROLE {}", stranger()))
        .unwrap();
    let outcome = try_enqueue(
        &mut client,
        child_of_stranger,
        1,
        "parent => 'refuse/p', parent_slot => 0",
    );
    client.batch_execute("RESET ROLE").unwrap();
    let (code, message, _) = refusal(outcome);
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "42501",
            "barrier_enqueue: permission denied for barrier \"refuse/p\""
        )
    );
    assert!(!exists(&mut client, child_of_stranger));

    // Sixteen levels of ancestors are allowed, seventeen are not.
    enqueue(&mut client, "refuse/d0", 1, "");
    for level in 1..=16 {
        let rest = format!("parent => 'refuse/d{}', parent_slot => 0", level - 1);
        enqueue(&mut client, &format!("refuse/d{level}"), 1, &rest);
    }
    let (code, message, _) = refusal(try_enqueue(
        &mut client,
        "refuse/d17",
        1,
        "parent => 'refuse/d16', parent_slot => 0",
    ));
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "54001",
            "barrier_enqueue: barrier \"refuse/d17\" would be nested more than 16 levels deep"
        )
    );
    assert!(!exists(&mut client, "refuse/d17"));
    // Nothing reported into the parent meanwhile.
    assert_eq!(status(&mut client, parent).counts(), ("pending", 1, 1));
}

/// Re-enqueueing a live barrier compares the new arguments too (42710 naming each one that
/// differs), except `sealed`, which a re-enqueue never changes.
#[test]
fn a_live_reenqueue_compares_the_new_shape_but_not_sealing() {
    let mut client = connect();
    enqueue(&mut client, "reenqueue/parent", 2, "");
    let id = "reenqueue/live";
    let shape = "max_failures => 1, need => 2, sealed => false, on_expiry => 'deliver', \
                 parent => 'reenqueue/parent', parent_slot => 0";
    assert_eq!(enqueue(&mut client, id, 2, shape), "pending");
    assert_eq!(enqueue(&mut client, id, 2, shape), "pending");
    let sealed_too = shape.replace("sealed => false", "sealed => true");
    assert_eq!(enqueue(&mut client, id, 2, &sealed_too), "pending");
    assert!(!status(&mut client, id).sealed, "a re-enqueue sealed it");
    let changed = |from: &str, to: &str| shape.replace(from, to);
    for (rest, detail) in [
        (
            changed("max_failures => 1", "max_failures => 2"),
            "max_failures differs",
        ),
        (changed("need => 2", "need => 1"), "need differs"),
        (
            changed("on_expiry => 'deliver'", "on_expiry => 'discard'"),
            "on_expiry differs",
        ),
        (
            changed("parent_slot => 0", "parent_slot => 1"),
            "parent differs",
        ),
        (
            changed(", parent => 'reenqueue/parent', parent_slot => 0", ""),
            "parent differs",
        ),
        (
            changed(
                "max_failures => 1, need => 2",
                "max_failures => 0, need => 1",
            ),
            "max_failures differs; need differs",
        ),
    ] {
        let (code, _, got) = refusal(try_enqueue(&mut client, id, 2, &rest));
        assert_eq!(code, "42710", "{rest}");
        assert_eq!(got.as_deref(), Some(detail), "{rest}");
    }
    let shown = status(&mut client, id);
    assert_eq!((shown.round, shown.need, shown.sealed), (1, Some(2), false));
}

/// A new round of a finished barrier takes the shape of its enqueue, with no failure carried
/// over.
#[test]
fn a_new_round_takes_the_new_shape() {
    let mut client = connect();
    let id = "newround/job";
    enqueue(&mut client, id, 2, "");
    fail(&mut client, id, 0, json!("e"));
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")).status,
        "complete_with_failures"
    );
    assert_eq!(
        enqueue(&mut client, id, 2, "need => 1, sealed => false"),
        "pending"
    );
    let shown = status(&mut client, id);
    assert_eq!(
        (shown.round, shown.counts(), shown.sealed, shown.need),
        (2, ("pending", 2, 0), false, Some(1))
    );
    assert_eq!(rows(&mut client, id), vec![]);
    assert_eq!(
        succeed(&mut client, id, 1, json!("x")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        sealed(&mut client, id),
        Reply::completion(
            "complete",
            1,
            json!([null, "x"]),
            None,
            &[],
            json!([]),
            &[0]
        )
    );
    assert_eq!(enqueue(&mut client, id, 2, "max_failures => 0"), "pending");
    let shown = status(&mut client, id);
    assert_eq!((shown.round, shown.sealed, shown.need), (3, true, None));
    assert_eq!(
        fail(&mut client, id, 1, json!("e")),
        Reply::only("aborted", 1)
    );
}

// ---------------------------------------------------------------------------------------------
// Where a fan-in stands
// ---------------------------------------------------------------------------------------------

/// `barrier_pending_slots`: the slots (or arrival positions) not yet reported, in order, for a
/// pending barrier; a failed report counts as reported; nothing for a finished or lapsed
/// barrier; 42704 for an unknown id; 42501 for another role's barrier.
/// Ids are reused once the sweep has deleted a barrier: a child never reports into a barrier of
/// its parent's id that another role enqueued since, and keeps its completion.
#[test]
fn a_child_never_reports_into_another_roles_barrier_of_its_parents_id() {
    let mut client = connect();
    let (parent, child) = ("reuse/p", "reuse/c");
    enqueue(&mut client, parent, 1, "");
    enqueue(
        &mut client,
        child,
        1,
        "parent => 'reuse/p', parent_slot => 0",
    );
    // The parent ends, and is deleted as the sweep deletes it after the retention.
    client
        .query_one("SELECT barrier_abort($1)", &[&parent])
        .unwrap();
    client
        .batch_execute(
            "DELETE FROM barrier_internal.result WHERE barrier_id = 'reuse/p';
             DELETE FROM barrier_internal.barrier_spec WHERE id = 'reuse/p';
             DELETE FROM barrier_internal.barrier WHERE id = 'reuse/p';",
        )
        .unwrap();
    // Another role takes the id.
    client
        .batch_execute(&format!("SET ROLE {}", stranger()))
        .unwrap();
    enqueue(&mut client, parent, 1, "");
    client.batch_execute("RESET ROLE").unwrap();

    let reply = succeed(&mut client, child, 0, json!("mine"));
    assert_eq!(reply.status, "complete");
    let row = client
        .query_one(
            "SELECT status, remaining FROM barrier_status($1)",
            &[&parent],
        )
        .unwrap();
    assert_eq!(
        (row.get::<_, String>(0), row.get::<_, i32>(1)),
        ("pending".to_string(), 1),
        "the other role's barrier was reported into"
    );
    let taken: Vec<String> = client
        .query("SELECT results::text FROM barrier_take($1)", &[&child])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(taken, vec![r#"["mine"]"#.to_string()]);
}

/// A fan-in of two billion tasks answers its pages of pending slots: the slots are looked at
/// one by one and the call stops after `max_rows`, whatever `expected` is (listing them all
/// would write gigabytes of temporary files, as the fuzzer once found out).
#[test]
fn pending_slots_come_in_pages_however_large_the_fan_in() {
    let mut client = connect();
    let page = |client: &mut postgres::Client, id: &str, max_rows: i32, after: Option<i32>| {
        client
            .query(
                "SELECT slot FROM barrier_pending_slots($1, max_rows => $2, after => $3)",
                &[&id, &max_rows, &after],
            )
            .unwrap()
            .iter()
            .map(|row| row.get::<_, i32>(0))
            .collect::<Vec<i32>>()
    };
    let id = "slots/huge";
    enqueue(&mut client, id, 2_000_000_000, "");
    succeed(&mut client, id, 1, json!("b"));
    succeed(&mut client, id, 3, json!("d"));
    let first: Vec<i32> = client
        .query("SELECT slot FROM barrier_pending_slots($1)", &[&id])
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    let expected_first: Vec<i32> = [0, 2].into_iter().chain(4..1002).collect();
    assert_eq!(first, expected_first, "the default page is 1,000 slots");
    assert_eq!(page(&mut client, id, 3, Some(1)), vec![2, 4, 5]);
    assert_eq!(
        page(&mut client, id, 2, Some(1_999_999_998)),
        vec![1_999_999_999]
    );
    assert_eq!(
        page(&mut client, id, 5, Some(1_999_999_999)),
        Vec::<i32>::new()
    );
}

#[test]
fn pending_slots_lists_unreported_slots() {
    let mut client = connect();
    let id = "slots/five";
    enqueue(&mut client, id, 5, "");
    succeed(&mut client, id, 1, json!("b"));
    fail(&mut client, id, 3, json!("d"));
    assert_eq!(pending_slots(&mut client, id).unwrap(), vec![0, 2, 4]);
    client
        .query_one("SELECT barrier_add($1, 2)", &[&id])
        .unwrap();
    assert_eq!(pending_slots(&mut client, id).unwrap(), vec![0, 2, 4, 5, 6]);

    let id = "slots/unslotted";
    enqueue(&mut client, id, 4, "");
    ok(&mut client, id, json!("first"), None, false);
    assert_eq!(pending_slots(&mut client, id).unwrap(), vec![1, 2, 3]);

    let id = "slots/done";
    enqueue(&mut client, id, 1, "");
    succeed(&mut client, id, 0, json!(1));
    assert_eq!(pending_slots(&mut client, id).unwrap(), Vec::<i32>::new());
    let id = "slots/aborted";
    enqueue(&mut client, id, 2, "");
    client
        .query_one("SELECT barrier_abort($1)", &[&id])
        .unwrap();
    assert_eq!(pending_slots(&mut client, id).unwrap(), Vec::<i32>::new());
    client
        .batch_execute("SELECT barrier_enqueue('slots/lapsed', 3, ttl => '1 microsecond')")
        .unwrap();
    assert_eq!(
        pending_slots(&mut client, "slots/lapsed").unwrap(),
        Vec::<i32>::new()
    );

    let (code, message, _) = refusal(pending_slots(&mut client, "slots/unknown"));
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "42704",
            "barrier_pending_slots: barrier \"slots/unknown\" does not exist"
        )
    );
    client
        .batch_execute(&format!("SET ROLE {}", stranger()))
        .unwrap();
    let outcome = pending_slots(&mut client, "slots/five");
    client.batch_execute("RESET ROLE").unwrap();
    let (code, message, _) = refusal(outcome);
    assert_eq!(
        (code.as_str(), message.as_str()),
        (
            "42501",
            "barrier_pending_slots: permission denied for barrier \"slots/five\""
        )
    );
}

/// `barrier_status` shows the failures held now, whether the barrier is sealed, and its quorum;
/// a completion with failures is shown as such, also once taken.
#[test]
fn status_shows_failures_sealing_and_need() {
    let mut client = connect();
    let id = "status/shaped";
    enqueue(&mut client, id, 3, "need => 2, sealed => false");
    let shown = status(&mut client, id);
    assert_eq!(
        (shown.counts(), shown.sealed, shown.need),
        (("pending", 3, 0), false, Some(2))
    );
    fail(&mut client, id, 0, json!("x"));
    assert_eq!(status(&mut client, id).counts(), ("pending", 2, 1));
    assert_eq!(sealed(&mut client, id), Reply::only("pending", 2));
    assert!(status(&mut client, id).sealed);
    assert_eq!(
        succeed(&mut client, id, 1, json!("b")),
        Reply::only("pending", 1)
    );
    assert_eq!(
        succeed(&mut client, id, 2, json!("c")).status,
        "complete_with_failures"
    );
    let shown = status(&mut client, id);
    assert_eq!(
        (shown.counts(), shown.sealed, shown.need),
        (("complete_with_failures", 0, 1), true, Some(2))
    );
    take(&mut client, id).unwrap().expect("the completion");
    assert_eq!(
        status(&mut client, id).counts(),
        ("complete_with_failures", 0, 1)
    );
}

/// Notifications carry the completion's status: `complete_with_failures`, `complete` for a
/// quorum, `expired` for an expiry that delivers.
#[test]
fn notifications_carry_complete_with_failures_and_expired() {
    let mut listener = listen("shape_notify");
    let mut client = connect();
    enqueue(
        &mut client,
        "notify/failures",
        1,
        "channel => 'shape_notify'",
    );
    fail(&mut client, "notify/failures", 0, json!("e"));
    enqueue(
        &mut client,
        "notify/quorum",
        3,
        "channel => 'shape_notify', need => 1",
    );
    succeed(&mut client, "notify/quorum", 2, json!("c"));
    enqueue_lapsing(
        &mut client,
        "notify/deliver",
        2,
        "channel => 'shape_notify', on_expiry => 'deliver'",
        &["SELECT barrier_decr('notify/deliver', '1', 0)"],
    );
    assert_eq!(
        succeed(&mut client, "notify/deliver", 1, json!(2)).status,
        "expired"
    );
    assert_eq!(
        notifications(&mut listener, QUIET),
        vec![
            payload("notify/failures", "complete_with_failures", 1),
            payload("notify/quorum", "complete", 1),
            payload("notify/deliver", "expired", 1),
        ]
    );
}

/// `barrier_stats` counts a delivered expiry and a quorum's completion as untaken, with the
/// rows they hold (`expected - remaining` each), until they are taken. Run as a role of its
/// own, so that only these barriers count.
#[test]
fn stats_count_delivered_expiries_and_quorums_as_untaken() {
    let mut client = connect();
    client
        .batch_execute(
            "DO $$ BEGIN CREATE ROLE shapes_counted;
                   EXCEPTION WHEN duplicate_object THEN NULL; END $$;
             SET ROLE shapes_counted",
        )
        .unwrap();
    enqueue_lapsing(
        &mut client,
        "stats/deliver",
        3,
        "on_expiry => 'deliver'",
        &[
            "SELECT barrier_decr('stats/deliver', '\"a\"', 0)",
            "SELECT barrier_decr('stats/deliver', '\"e\"', 1, failed => true)",
        ],
    );
    enqueue(&mut client, "stats/quorum", 4, "need => 1");
    succeed(&mut client, "stats/quorum", 0, json!("q"));
    assert_eq!(
        succeed(&mut client, "stats/deliver", 2, json!("late")).status,
        "expired"
    );
    let counts = |client: &mut Client| -> (i64, i64, i64, i64) {
        let row = client
            .query_one(
                "SELECT complete, expired, untaken, result_rows FROM barrier_stats()",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2), row.get(3))
    };
    assert_eq!(counts(&mut client), (1, 1, 2, 3));
    take(&mut client, "stats/deliver")
        .unwrap()
        .expect("delivered");
    take(&mut client, "stats/quorum")
        .unwrap()
        .expect("complete");
    assert_eq!(counts(&mut client), (1, 1, 0, 0));
    client.batch_execute("RESET ROLE").unwrap();
}
