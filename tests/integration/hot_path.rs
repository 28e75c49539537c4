//! The decrement's fast path (src/hot.rs) writes tables and indexes without the executor: what
//! it leaves behind must be what SQL would have left.

use std::thread;

use serde_json::{json, Value};

use crate::support::{assert_indexes_whole, connect, decr};

/// Reports that cannot update the hot row in place (its page is full of versions an open
/// snapshot still needs) give the row new index entries, in every index whose predicate it
/// meets; afterwards every index agrees with its table.
#[test]
fn reports_that_cannot_update_in_place_keep_every_index_whole() {
    const TASKS: i32 = 3000;
    let mut admin = connect();
    admin
        .batch_execute(
            "SELECT barrier_enqueue('crowded', 3000);
             SELECT barrier_enqueue('crowded-neighbour', 3000);",
        )
        .unwrap();
    // An open snapshot keeps every old version of the hot rows: no pruning, no room.
    let mut holder = connect();
    let mut old_snapshot = holder
        .build_transaction()
        .isolation_level(postgres::IsolationLevel::RepeatableRead)
        .start()
        .unwrap();
    old_snapshot
        .query_one("SELECT count(*) FROM barrier_status('crowded')", &[])
        .unwrap();

    let mut worker = connect();
    // One transaction's own versions cannot be pruned either; its statistics show the effect.
    let mut tx = worker.transaction().unwrap();
    for slot in 0..TASKS / 2 {
        let answer = decr(&mut tx, "crowded", Some(&json!({"slot": slot})), Some(slot)).unwrap();
        assert_eq!(answer.remaining, Some(TASKS - slot - 1));
    }
    let row = tx
        .query_one(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_xact_user_tables \
              WHERE relid = 'barrier_internal.barrier'::regclass",
            &[],
        )
        .unwrap();
    let (updates, hot): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(updates, i64::from(TASKS / 2));
    assert!(
        hot < updates,
        "some updates should have left the page ({hot} of {updates} HOT)"
    );
    tx.commit().unwrap();

    // All but the last from eight sessions at once, across transactions, beside a neighbour's
    // reports.
    thread::scope(|scope| {
        for session in 0..8 {
            scope.spawn(move || {
                let mut client = connect();
                let mine = (TASKS / 2..TASKS - 1).filter(|slot| slot % 8 == session);
                for slot in mine {
                    decr(
                        &mut client,
                        "crowded",
                        Some(&json!({"slot": slot})),
                        Some(slot),
                    )
                    .unwrap();
                    decr(&mut client, "crowded-neighbour", None, Some(slot)).unwrap();
                }
            });
        }
    });
    old_snapshot.rollback().unwrap();
    assert_indexes_whole(&mut admin);

    // Every index finds the row as the table holds it, pending and then complete.
    let find = |admin: &mut postgres::Client, query: &str| -> i32 {
        let mut tx = admin.transaction().unwrap();
        tx.batch_execute("SET LOCAL enable_seqscan = off").unwrap();
        let remaining = tx.query_one(query, &[]).unwrap().get(0);
        tx.commit().unwrap();
        remaining
    };
    let by_id = "SELECT remaining FROM barrier_internal.barrier WHERE id = 'crowded'";
    assert_eq!(find(&mut admin, by_id), 1);
    let pending = "SELECT remaining FROM barrier_internal.barrier \
                    WHERE status = 'pending' AND expires_at > '-infinity' AND id = 'crowded'";
    assert_eq!(find(&mut admin, pending), 1);
    let last = decr(
        &mut admin,
        "crowded",
        Some(&json!({"slot": TASKS - 1})),
        Some(TASKS - 1),
    );
    assert_eq!(last.unwrap().status, "complete");
    let finished = "SELECT remaining FROM barrier_internal.barrier \
                     WHERE status <> 'pending' AND finished_at > '-infinity' AND id = 'crowded'";
    assert_eq!(find(&mut admin, finished), 0);
    assert_indexes_whole(&mut admin);
    let results: String = admin
        .query_one("SELECT barrier_results('crowded')::text", &[])
        .unwrap()
        .get(0);
    let results: Vec<Value> = serde_json::from_str(&results).unwrap();
    let expected: Vec<Value> = (0..TASKS).map(|slot| json!({"slot": slot})).collect();
    assert_eq!(results, expected);
}

/// A repeated slot, in the same transaction or after commit, writes a row and takes it back;
/// one row per slot survives, the index agrees, and savepoint rollbacks undo a report.
#[test]
fn repeats_and_savepoint_rollbacks_leave_one_row_per_slot() {
    let mut client = connect();
    client
        .batch_execute("SELECT barrier_enqueue('repeats', 4)")
        .unwrap();
    let mut tx = client.transaction().unwrap();
    assert_eq!(
        decr(&mut tx, "repeats", Some(&json!("a")), Some(0))
            .unwrap()
            .status,
        "pending"
    );
    let again = decr(&mut tx, "repeats", Some(&json!("b")), Some(0)).unwrap();
    assert_eq!(
        (again.status.as_str(), again.remaining),
        ("duplicate", Some(3))
    );
    let mut savepoint = tx.transaction().unwrap();
    assert_eq!(
        decr(&mut savepoint, "repeats", Some(&json!("c")), Some(1))
            .unwrap()
            .remaining,
        Some(2)
    );
    savepoint.rollback().unwrap();
    assert_eq!(
        decr(&mut tx, "repeats", Some(&json!("d")), Some(1))
            .unwrap()
            .remaining,
        Some(2)
    );
    tx.commit().unwrap();
    assert_eq!(
        decr(&mut client, "repeats", Some(&json!("e")), Some(1))
            .unwrap()
            .status,
        "duplicate"
    );
    assert_eq!(
        decr(&mut client, "repeats", Some(&json!("f")), Some(2))
            .unwrap()
            .remaining,
        Some(1)
    );
    let done = decr(&mut client, "repeats", Some(&json!("g")), Some(3)).unwrap();
    assert_eq!(done.results, Some(json!(["a", "d", "f", "g"])));
    let rows: i64 = client
        .query_one(
            "SELECT count(*) FROM barrier_internal.result WHERE barrier_id = 'repeats'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 4);
    assert_indexes_whole(&mut client);
}

/// A trigger an administrator puts on a state table (say, for auditing) fires for every report:
/// the fast path leaves tables it does not recognise to the SQL path.
#[test]
fn triggers_on_the_state_tables_fire_for_every_report() {
    let mut admin = connect();
    admin
        .batch_execute(
            "CREATE TABLE public.result_audit (barrier_id text, slot integer);
             CREATE FUNCTION public.audit_result() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO public.result_audit VALUES (NEW.barrier_id, NEW.slot);
                 RETURN NEW;
             END $$;
             CREATE TRIGGER audit AFTER INSERT ON barrier_internal.result
                 FOR EACH ROW EXECUTE FUNCTION public.audit_result();
             SELECT barrier_enqueue('audited', 3);",
        )
        .unwrap();
    for slot in [2, 0, 1] {
        decr(&mut admin, "audited", None, Some(slot)).unwrap();
    }
    admin
        .batch_execute("DROP TRIGGER audit ON barrier_internal.result")
        .unwrap();
    let audited: Vec<i32> = admin
        .query(
            "SELECT slot FROM public.result_audit WHERE barrier_id = 'audited' ORDER BY slot",
            &[],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(audited, vec![0, 1, 2]);
}
