//! Churn: many barriers created, finished and swept, in a test binary of its own so that no
//! other test's transactions hold back VACUUM while it measures storage.

// Shared with tests/integration; this binary uses only part of it.
#[allow(dead_code)]
#[path = "integration/support.rs"]
mod support;

/// What `support` connects to.
fn target() -> support::Target {
    support::Target::RUST
}

use postgres::Client;

use support::{connect, fresh_database};

/// (updates, HOT updates) of the barrier table so far.
fn barrier_updates(db: &mut Client) -> (i64, i64) {
    db.batch_execute("SELECT pg_stat_force_next_flush()")
        .unwrap();
    db.batch_execute("SELECT pg_stat_clear_snapshot()").unwrap();
    let row = db
        .query_one(
            "SELECT n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables
              WHERE schemaname = 'barrier_internal' AND relname = 'barrier'",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Sizes of the state tables after VACUUM: (heaps, heaps with indexes).
fn vacuumed_sizes(db: &mut Client) -> (i64, i64) {
    // The second VACUUM recycles the index pages the first one deleted.
    for _ in 0..2 {
        db.batch_execute(
            "VACUUM barrier_internal.barrier, barrier_internal.barrier_spec, barrier_internal.result",
        )
        .unwrap();
    }
    let row = db
        .query_one(
            "SELECT sum(pg_table_size(c.oid))::bigint, sum(pg_total_relation_size(c.oid))::bigint
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
              WHERE n.nspname = 'barrier_internal' AND c.relkind = 'r'",
            &[],
        )
        .unwrap();
    (row.get(0), row.get(1))
}

/// Storage stays bounded: create, complete or abort and sweep many barriers, in three cycles;
/// after VACUUM the heaps are back near empty, and once the first cycle's freed index pages are
/// reused, the indexes stop growing. `PG_BARRIER_CHURN` sets the number of barriers per cycle
/// (default 100,000 in all).
#[test]
fn churn_leaves_storage_bounded_and_counter_updates_hot() {
    let barriers: i32 = std::env::var("PG_BARRIER_CHURN")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let half = barriers / 3;
    let mut admin = connect();
    let mut db = fresh_database(&mut admin, "barrier_churn");
    db.batch_execute(
        "CREATE EXTENSION pg_barrier; SET pg_barrier.retention = 0; SET synchronous_commit = off",
    )
    .unwrap();
    let empty = vacuumed_sizes(&mut db);
    let mut hot_stats = None;
    let mut totals = Vec::new();
    for cycle in 0..3 {
        // As workers would: every call its own transaction. Nine in ten barriers complete (ten
        // slotted reports); one in ten is aborted after five.
        db.batch_execute(&format!(
            r#"DO $$
               BEGIN
                   FOR g IN 1..{half} LOOP
                       PERFORM barrier_enqueue('churn-' || g, 10);
                       COMMIT;
                       FOR s IN 0..9 LOOP
                           EXIT WHEN g % 10 = 0 AND s >= 5;
                           PERFORM barrier_decr('churn-' || g, '{{"ok": true}}', s);
                           COMMIT;
                       END LOOP;
                       IF g % 10 = 0 THEN
                           PERFORM barrier_abort('churn-' || g);
                           COMMIT;
                       END IF;
                   END LOOP;
               END $$"#
        ))
        .unwrap();
        if cycle == 0 {
            hot_stats = Some(barrier_updates(&mut db));
        }
        while db
            .query_one("SELECT deleted FROM barrier_sweep(10000)", &[])
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {}
        // Aborted tombstones stay until their expiry (6 hours): only they remain.
        let remaining: i64 = db
            .query_one("SELECT count(*) FROM barrier_internal.barrier", &[])
            .unwrap()
            .get(0);
        assert_eq!(remaining, i64::from(half / 10), "cycle {cycle}");
        db.execute(
            "UPDATE barrier_internal.barrier SET expires_at = now() - interval '1 s'",
            &[],
        )
        .unwrap();
        while db
            .query_one("SELECT deleted FROM barrier_sweep(10000)", &[])
            .unwrap()
            .get::<_, i64>(0)
            > 0
        {}
        let (heap, total) = vacuumed_sizes(&mut db);
        eprintln!(
            "churn cycle {cycle}: {half} barriers; heap {heap} B (empty {}), with indexes {total} B (empty {})",
            empty.0, empty.1
        );
        assert!(
            heap <= 2 * empty.0 + 64 * 1024,
            "heap {heap} B after cycle {cycle}, empty {}",
            empty.0
        );
        totals.push(total);
    }
    // Deleted index pages are reused by later cycles: no growth beyond the first cycle's peak.
    assert!(
        totals
            .iter()
            .all(|&total| total <= totals[0] + totals[0] / 4),
        "indexes grew between cycles: {totals:?}"
    );

    let (updates, hot) = hot_stats.unwrap();
    eprintln!(
        "churn: {hot} of {updates} barrier updates HOT ({:.1}%)",
        100.0 * hot as f64 / updates as f64
    );
    // Every decrement but the completing one is HOT; completions and aborts change indexed state.
    assert!(
        hot as f64 >= 0.85 * updates as f64,
        "{hot} of {updates} updates HOT"
    );
}
