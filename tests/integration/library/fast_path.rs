//! The fast path of reports (src/fast_path.rs) writes tables and indexes without the executor: what
//! it leaves behind must be what SQL would have left.

use std::thread;

use serde_json::{json, Value};

use crate::support::{
    assert_storage_whole, backend_pid, connect, decr, fast_reports, fresh_database, sqlstate,
    wait_until_blocked,
};

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
    assert_storage_whole(&mut admin);

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
    assert_storage_whole(&mut admin);
    let results: String = admin
        .query_one("SELECT barrier_results('crowded')::text", &[])
        .unwrap()
        .get(0);
    let results: Vec<Value> = serde_json::from_str(&results).unwrap();
    let expected: Vec<Value> = (0..TASKS).map(|slot| json!({"slot": slot})).collect();
    assert_eq!(results, expected);
}

/// A repeated slot, in the same transaction or after commit, is answered `duplicate` without a
/// write; one row per slot exists, the index agrees, and savepoint rollbacks undo a report.
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
    assert_storage_whole(&mut client);
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

/// A slot reported and committed by another transaction while this report waits for the
/// barrier's row is seen once the row lock is held: the report answers `duplicate`, counts
/// nothing and writes nothing. (The fast path probed the slot before the other transaction wrote
/// it; without the probe under the lock, its insert would meet the other row.)
#[test]
fn a_slot_committed_while_a_report_waits_for_the_row_is_found_again_under_its_lock() {
    let mut admin = connect();
    admin
        .batch_execute("SELECT barrier_enqueue('reprobe', 4)")
        .unwrap();
    let mut reporter = connect();
    let pid = backend_pid(&mut reporter);
    // The reporter's session takes the fast path.
    let fast_before = fast_reports(&mut reporter);
    decr(&mut reporter, "reprobe", Some(&json!("own")), Some(3)).unwrap();
    assert_eq!(fast_reports(&mut reporter), fast_before + 1);
    let fast_before = fast_before + 1;
    // A writer that keeps the rule of src/schema.sql by hand: the row lock first, then the
    // result and the counter, in one transaction.
    let mut writer_session = connect();
    let mut writer = writer_session.transaction().unwrap();
    writer
        .batch_execute(
            "SELECT 1 FROM barrier_internal.barrier WHERE id = 'reprobe' FOR NO KEY UPDATE",
        )
        .unwrap();
    let report = thread::spawn(move || {
        let answer = decr(&mut reporter, "reprobe", Some(&json!("late")), Some(1));
        (reporter, answer)
    });
    wait_until_blocked(&mut admin, pid);
    writer
        .batch_execute(
            "INSERT INTO barrier_internal.result VALUES ('reprobe', 1, '\"first\"');
             UPDATE barrier_internal.barrier SET remaining = remaining - 1, slotted = true
              WHERE id = 'reprobe';",
        )
        .unwrap();
    writer.commit().unwrap();
    let (mut reporter, answer) = report.join().unwrap();
    let answer = answer.expect("the waiting report must not fail");
    assert_eq!(
        (answer.status.as_str(), answer.remaining),
        ("duplicate", Some(2))
    );
    assert_eq!(
        fast_reports(&mut reporter),
        fast_before,
        "nothing was counted fast"
    );
    let results: String = admin
        .query_one("SELECT barrier_results('reprobe')::text", &[])
        .unwrap()
        .get(0);
    let results: Value = serde_json::from_str(&results).unwrap();
    assert_eq!(results, json!(["first", "own"]));
    let rows: i64 = admin
        .query_one(
            "SELECT count(*) FROM barrier_internal.result WHERE barrier_id = 'reprobe'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(rows, 2);
    assert_storage_whole(&mut admin);
}

/// What an administrator changes in the state tables (a NOT NULL, a CHECK replaced by another,
/// an expression index, a publication) holds for every report: the fast path sees the change
/// at once and leaves reports to the SQL path, which honours it, until the change is undone.
/// `pg_barrier.fast_path` turns the path off, and only a superuser may set it.
#[test]
fn an_administrators_change_to_the_tables_holds_for_every_report() {
    let mut admin = connect();
    let mut db = fresh_database(&mut admin, "barrier_altered_tables");
    db.batch_execute(&crate::support::create_extension())
        .unwrap();
    db.batch_execute("SELECT barrier_enqueue('altered', 100)")
        .unwrap();
    let mut slot = 0;
    let mut report = |db: &mut postgres::Client, result: Option<&Value>| {
        slot += 1;
        decr(db, "altered", result, Some(slot))
    };
    // Counted fast, then not while each change stands, then fast again once it is undone.
    let changes = [
        (
            "ALTER TABLE barrier_internal.result ALTER COLUMN result SET NOT NULL",
            "ALTER TABLE barrier_internal.result ALTER COLUMN result DROP NOT NULL",
        ),
        (
            "ALTER TABLE barrier_internal.result DROP CONSTRAINT result_slot_check,
                 ADD CONSTRAINT result_slot_check CHECK (slot >= 0 AND slot < 1000)",
            "ALTER TABLE barrier_internal.result DROP CONSTRAINT result_slot_check,
                 ADD CONSTRAINT result_slot_check CHECK (slot >= 0)",
        ),
        (
            "CREATE INDEX result_x ON barrier_internal.result ((result ->> 'x'))",
            "DROP INDEX barrier_internal.result_x",
        ),
        (
            "ALTER TABLE barrier_internal.barrier ALTER COLUMN slotted SET NOT NULL",
            "ALTER TABLE barrier_internal.barrier ALTER COLUMN slotted DROP NOT NULL",
        ),
        (
            "SET pg_barrier.fast_path = off",
            "RESET pg_barrier.fast_path",
        ),
    ];
    for (change, undo) in changes {
        let before = fast_reports(&mut db);
        assert_eq!(report(&mut db, Some(&json!(1))).unwrap().status, "pending");
        assert_eq!(fast_reports(&mut db), before + 1, "fast before: {change}");
        db.batch_execute(change).unwrap();
        assert_eq!(report(&mut db, Some(&json!(2))).unwrap().status, "pending");
        assert_eq!(
            fast_reports(&mut db),
            before + 1,
            "not fast while: {change}"
        );
        db.batch_execute(undo).unwrap();
        assert_eq!(report(&mut db, Some(&json!(3))).unwrap().status, "pending");
        assert_eq!(
            fast_reports(&mut db),
            before + 2,
            "fast again after: {undo}"
        );
    }

    // The NOT NULL holds on every path: a NULL result is refused, and nothing is stored.
    db.batch_execute("ALTER TABLE barrier_internal.result ALTER COLUMN result SET NOT NULL")
        .unwrap();
    let error = report(&mut db, None).unwrap_err();
    assert_eq!(sqlstate(&error), "23502");
    db.batch_execute("ALTER TABLE barrier_internal.result ALTER COLUMN result DROP NOT NULL")
        .unwrap();
    let nulls: i64 = db
        .query_one(
            "SELECT count(*) FROM barrier_internal.result WHERE result IS NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(nulls, 0);

    // A publication of updates needs a replica identity, fast path or not.
    db.batch_execute(
        "ALTER TABLE barrier_internal.barrier REPLICA IDENTITY NOTHING;
         CREATE PUBLICATION barrier_changes FOR TABLE barrier_internal.barrier;",
    )
    .unwrap();
    let remaining_before: i32 = db
        .query_one(
            "SELECT remaining FROM barrier_internal.barrier WHERE id = 'altered'",
            &[],
        )
        .unwrap()
        .get(0);
    let error = report(&mut db, Some(&json!(4))).unwrap_err();
    assert_eq!(sqlstate(&error), "55000");
    db.batch_execute(
        "DROP PUBLICATION barrier_changes;
         ALTER TABLE barrier_internal.barrier REPLICA IDENTITY DEFAULT;",
    )
    .unwrap();
    let remaining: i32 = db
        .query_one(
            "SELECT remaining FROM barrier_internal.barrier WHERE id = 'altered'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(remaining, remaining_before, "the refused report counted");

    // The setting is a superuser's.
    db.batch_execute("CREATE ROLE barrier_fast_path_plain LOGIN")
        .unwrap();
    let mut plain = crate::support::connect_as("barrier_fast_path_plain", "barrier_altered_tables");
    let error = plain
        .batch_execute("SET pg_barrier.fast_path = off")
        .unwrap_err();
    assert_eq!(sqlstate(&error), "42501");
    drop(plain);
    drop(db);
    admin
        .batch_execute("DROP DATABASE barrier_altered_tables WITH (FORCE)")
        .unwrap();
    admin
        .batch_execute("DROP ROLE barrier_fast_path_plain")
        .unwrap();
}
