//! The Rust build's background sweeper (the SQL edition has none: docs/managed.md schedules
//! `barrier_sweep()` with pg_cron instead).

use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::lifecycle::notifications;
use crate::support::connect;

/// The tests here change the sweepers' interval and watch them work: one at a time.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

#[test]
fn the_background_sweeper_expires_within_two_intervals_and_stops_on_sigterm() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut admin = connect();
    // The worker starts with the server, before the test database exists, and is restarted
    // until it can connect: wait for it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let sweeper = |admin: &mut postgres::Client, database: &str| -> Option<i32> {
        admin
            .query_opt(
                "SELECT pid FROM pg_stat_activity
                  WHERE backend_type = 'pg_barrier sweeper' AND datname = $1",
                &[&database],
            )
            .unwrap()
            .map(|row| row.get(0))
    };
    let pid = loop {
        let row = sweeper(&mut admin, "pgrx_tests").map(|pid| (pid,));
        if let Some((pid,)) = row {
            break pid;
        }
        assert!(
            Instant::now() < deadline,
            "no pg_barrier sweeper is running"
        );
        thread::sleep(Duration::from_millis(200));
    };

    let mut listener = connect();
    listener.batch_execute("LISTEN bgw_notify").unwrap();
    admin
        .batch_execute(
            "SELECT barrier_enqueue('bgw-late', 1, ttl => '1 second', channel => 'bgw_notify')",
        )
        .unwrap();
    // Expired after 1 s; swept by the worker within two 1 s intervals after that.
    let heard = notifications(&mut listener, Duration::from_millis(3500));
    assert_eq!(
        heard,
        vec![json!({"id": "bgw-late", "status": "expired", "round": 1})]
    );

    // A reload (SIGHUP) changes the interval: at an hour, nothing is swept for a while ...
    let stored = |admin: &mut postgres::Client| -> String {
        admin
            .query_one(
                "SELECT status FROM barrier_internal.barrier WHERE id = 'bgw-hup'",
                &[],
            )
            .unwrap()
            .get(0)
    };
    admin
        .batch_execute("ALTER SYSTEM SET pg_barrier.sweep_interval = '1h'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    thread::sleep(Duration::from_millis(1500));
    admin
        .batch_execute("SELECT barrier_enqueue('bgw-hup', 1, ttl => '1 second')")
        .unwrap();
    thread::sleep(Duration::from_millis(3000));
    assert_eq!(stored(&mut admin), "pending");
    // ... and back at a second, the reload wakes the worker, which sweeps.
    admin
        .batch_execute("ALTER SYSTEM SET pg_barrier.sweep_interval = '1s'")
        .unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while stored(&mut admin) != "expired" {
        assert!(Instant::now() < deadline, "not swept after the reload");
        thread::sleep(Duration::from_millis(100));
    }

    // The worker for `postgres`, where every round fails (no extension there), lives on.
    let failing = sweeper(&mut admin, "postgres").expect("a sweeper for postgres");
    thread::sleep(Duration::from_millis(2500));
    assert_eq!(
        sweeper(&mut admin, "postgres"),
        Some(failing),
        "the failing sweeper restarted"
    );

    let terminated: bool = admin
        .query_one("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap()
        .get(0);
    assert!(terminated);
    let deadline = Instant::now() + Duration::from_secs(10);
    while admin
        .query_opt("SELECT 1 FROM pg_stat_activity WHERE pid = $1", &[&pid])
        .unwrap()
        .is_some()
    {
        assert!(
            Instant::now() < deadline,
            "the sweeper did not stop on SIGTERM"
        );
        thread::sleep(Duration::from_millis(100));
    }
}

/// The library checks the installed version once per transaction, not once per backend: its
/// sweeper (a process as old as the server) leaves a database alone while it runs the SQL
/// edition, and sweeps it again once it is switched back, without a restart.
#[test]
fn the_sweeper_follows_the_installed_edition_without_a_restart() {
    let _alone = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut db = crate::support::connect_as(&pgrx_tests::get_pg_user(), "postgres");
    db.batch_execute(&format!(
        "DROP EXTENSION IF EXISTS pg_barrier; {}",
        crate::support::create_extension()
    ))
    .unwrap();
    // Every second (the server's setting; said again, as a reload may have lost it).
    db.batch_execute("ALTER SYSTEM SET pg_barrier.sweep_interval = '1s'")
        .unwrap();
    db.batch_execute("SELECT pg_reload_conf()").unwrap();
    let stored = |db: &mut postgres::Client, id: &str| -> String {
        db.query_one(
            "SELECT status FROM barrier_internal.barrier WHERE id = $1",
            &[&id],
        )
        .unwrap()
        .get(0)
    };
    let wait_for_expiry = |db: &mut postgres::Client, id: &str| {
        let deadline = Instant::now() + Duration::from_secs(10);
        while stored(db, id) != "expired" {
            if Instant::now() > deadline {
                let sweepers: Vec<String> = db
                    .query(
                        "SELECT pid || ' ' || datname || ' ' || coalesce(wait_event, '-')
                                || ' ' || current_setting('pg_barrier.sweep_interval')
                           FROM pg_stat_activity WHERE backend_type = 'pg_barrier sweeper'",
                        &[],
                    )
                    .unwrap()
                    .iter()
                    .map(|row| row.get(0))
                    .collect();
                panic!("{id} was not swept; sweepers: {sweepers:?}");
            }
            thread::sleep(Duration::from_millis(100));
        }
    };
    // The sweeper of `postgres` works here, and has seen the Rust build installed.
    db.batch_execute("SELECT barrier_enqueue('gate-rust', 1, ttl => '1 second')")
        .unwrap();
    wait_for_expiry(&mut db, "gate-rust");

    db.batch_execute(&format!(
        "ALTER EXTENSION pg_barrier UPDATE TO '{}'",
        crate::support::sql_edition_version()
    ))
    .unwrap();
    db.batch_execute("SELECT barrier_enqueue('gate-sql', 1, ttl => '1 second')")
        .unwrap();
    thread::sleep(Duration::from_millis(3500));
    assert_eq!(
        stored(&mut db, "gate-sql"),
        "pending",
        "the library swept a database that runs the SQL edition"
    );

    db.batch_execute(&format!(
        "ALTER EXTENSION pg_barrier UPDATE TO '{}'",
        env!("CARGO_PKG_VERSION")
    ))
    .unwrap();
    wait_for_expiry(&mut db, "gate-sql");
    db.batch_execute("DROP EXTENSION pg_barrier").unwrap();
}
