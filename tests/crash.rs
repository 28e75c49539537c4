//! Servers of their own, for faults that would disturb the shared test server: a crash in the
//! middle of a workload, a hot standby, and two-phase commit. Each test runs a scratch
//! PostgreSQL cluster (initdb, as the `postgres` user, so the tests run as root, as
//! `scripts/test.sh` does) from the same installation as the pgrx test server, with the
//! pg_barrier the harness just installed. A cluster's directory, under /var/tmp and named for
//! this process, is removed when its test passes and kept for inspection when it fails.

// Shared with tests/integration; this binary uses only part of it.
#[allow(dead_code)]
#[path = "integration/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "scratch/cluster.rs"]
mod cluster;

/// What `support` connects to.
fn target() -> support::Target {
    support::Target::RUST
}

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::thread;
use std::time::{Duration, Instant};

use postgres::Client;
use serde_json::{json, Value};

use cluster::{as_postgres, free_port, run, scratch_dir, Cluster};
use support::{assert_storage_whole, claim, decr, handed_up, report, seed, sqlstate, stored, Rng};

/// A fresh cluster from the pgrx test server's installation, started with `settings`, with
/// pg_barrier (and amcheck) installed in database `app`.
fn started(name: &str, settings: &[&str]) -> Cluster {
    // Connecting to the pgrx test server also makes the harness install the extension.
    let cluster = Cluster::start(support::server_bin_dir(), name, settings);
    cluster
        .connect("app")
        .batch_execute("CREATE EXTENSION pg_barrier; CREATE EXTENSION amcheck")
        .unwrap();
    cluster
}

const BARRIERS: usize = 48;
const SLOTS: i32 = 40;
const WORKERS: usize = 6;

fn barrier_id(n: usize) -> String {
    format!("crash-{n}")
}

/// The result a task reports for its slot: the same on every delivery.
fn task_result(n: usize, slot: i32) -> Value {
    json!(format!("b{n}s{slot}"))
}

/// The calls a coordinator makes on some barriers while the reports run: barriers `n % 6 == 1`
/// are aborted, barriers `n % 6 == 4` grow by `EXTRA` tasks.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Control {
    Abort,
    Add,
}

const EXTRA: i32 = 2;

fn control(n: usize) -> Option<Control> {
    match n % 6 {
        1 => Some(Control::Abort),
        4 => Some(Control::Add),
        _ => None,
    }
}

/// What the client learned about one report before the crash.
#[derive(Debug)]
enum Delivery {
    /// The server answered (and, in autocommit, committed): status and results.
    Acknowledged(String, Option<Value>),
    /// Sent, but the connection died before an answer: it may or may not have counted.
    InFlight,
}

/// Drives reports from several sessions, and aborts and adds from a coordinator, SIGKILLs the
/// whole cluster part way, restarts it, and checks the recovered state against what the clients
/// were told: every acknowledged report is there with its result, every acknowledged abort and
/// add holds, no barrier has two completers, and a consumer that comes back finds every
/// completion through `barrier_completions`. Then the tasks are delivered again, as a queue
/// would after a crash: every barrier not aborted completes exactly once with every result.
#[test]
fn a_crash_mid_workload_loses_no_acknowledged_report() {
    let cluster = started("crash", &["synchronous_commit = on"]);
    let mut admin = cluster.connect("app");
    for n in 0..BARRIERS {
        admin
            .execute(
                "SELECT barrier_enqueue($1, $2, channel => 'crash_done')",
                &[&barrier_id(n), &SLOTS],
            )
            .unwrap();
    }
    let mut listener = cluster.connect("app");
    listener.batch_execute("LISTEN crash_done").unwrap();

    // Every slot once, a fifth of them twice (a redelivery), shuffled within groups of eight
    // barriers taken in turn, so that at the crash some barriers are complete, some part way and
    // some untouched; dealt round-robin to the workers.
    let base_seed = seed();
    let mut rng = Rng::new(base_seed);
    let mut work: Vec<(u64, usize, i32)> = Vec::new();
    for n in 0..BARRIERS {
        for slot in 0..SLOTS {
            let deliveries = if rng.below(5) == 0 { 2 } else { 1 };
            for _ in 0..deliveries {
                work.push((rng.next(), n, slot));
            }
        }
    }
    work.sort_by_key(|&(order, n, _)| (n / 8, order));
    let work: Vec<(usize, i32)> = work.into_iter().map(|(_, n, slot)| (n, slot)).collect();
    let total = work.len();
    let done = AtomicUsize::new(0);
    let crashed = AtomicBool::new(false);
    let log: Mutex<Vec<(usize, i32, Delivery)>> = Mutex::default();
    // What the coordinator's calls answered: the status or new `expected`, or the SQLSTATE.
    let controls: Mutex<Vec<(usize, Control, Delivery)>> = Mutex::default();
    thread::scope(|scope| {
        // The coordinator aborts or grows each of its barriers halfway through that barrier's
        // group of reports, so some calls land before the crash and one may be in flight.
        let (cluster_ref, done_ref, crashed_ref, controls_ref) =
            (&cluster, &done, &crashed, &controls);
        scope.spawn(move || {
            let mut client = cluster_ref.connect("app");
            for n in (0..BARRIERS).filter(|&n| control(n).is_some()) {
                let due = (n / 8) * total / (BARRIERS / 8) + total / (BARRIERS / 8) / 2;
                while done_ref.load(Ordering::Relaxed) < due {
                    if crashed_ref.load(Ordering::Relaxed) {
                        return;
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                let kind = control(n).unwrap();
                let answer = match kind {
                    Control::Abort => client
                        .query_one("SELECT barrier_abort($1)", &[&barrier_id(n)])
                        .map(|row| row.get::<_, String>(0)),
                    Control::Add => client
                        .query_one(
                            "SELECT barrier_add($1, $2)::text",
                            &[&barrier_id(n), &EXTRA],
                        )
                        .map(|row| row.get::<_, String>(0)),
                };
                let delivery = match answer {
                    Ok(answer) => Delivery::Acknowledged(answer, None),
                    Err(error) => match error.code() {
                        None => Delivery::InFlight,
                        Some(code) => {
                            Delivery::Acknowledged(format!("error {}", code.code()), None)
                        }
                    },
                };
                let lost = matches!(delivery, Delivery::InFlight);
                controls_ref.lock().unwrap().push((n, kind, delivery));
                if lost {
                    return;
                }
            }
        });
        for worker in 0..WORKERS {
            let mine: Vec<(usize, i32)> =
                work.iter().copied().skip(worker).step_by(WORKERS).collect();
            let (cluster, done, log) = (&cluster, &done, &log);
            scope.spawn(move || {
                let mut client = cluster.connect("app");
                for (n, slot) in mine {
                    let answer = decr(
                        &mut client,
                        &barrier_id(n),
                        Some(&task_result(n, slot)),
                        Some(slot),
                    );
                    let delivery = match answer {
                        Ok(answer) => Delivery::Acknowledged(answer.status, answer.results),
                        // No SQLSTATE: the connection died with the server.
                        Err(error) if error.code().is_none() => Delivery::InFlight,
                        Err(error) => panic!("barrier {n} slot {slot}: {error}"),
                    };
                    let lost = matches!(delivery, Delivery::InFlight);
                    log.lock().unwrap().push((n, slot, delivery));
                    done.fetch_add(1, Ordering::Relaxed);
                    if lost {
                        return;
                    }
                }
            });
        }
        // Somewhere between a third and two thirds of the way.
        let crash_at = total / 3 + rng.below(total / 3);
        while done.load(Ordering::Relaxed) < crash_at {
            thread::sleep(Duration::from_millis(5));
        }
        cluster.crash();
        crashed.store(true, Ordering::Relaxed);
    });
    let log = log.into_inner().unwrap();
    let acknowledged = log
        .iter()
        .filter(|(_, _, d)| matches!(d, Delivery::Acknowledged(..)))
        .count();
    let in_flight = log.len() - acknowledged;
    assert!(
        in_flight > 0,
        "the crash interrupted no report; it came too late"
    );
    assert!(
        log.iter()
            .any(|(_, _, d)| matches!(d, Delivery::Acknowledged(s, _) if s == "complete")),
        "no barrier completed before the crash"
    );
    assert!(
        listener.batch_execute("SELECT 1").is_err(),
        "a session survived the crash"
    );

    cluster.pg_ctl_start();
    let server_log = cluster.log();
    assert!(
        server_log.contains("database system was interrupted")
            || server_log.contains("not properly shut down"),
        "the restart did not go through crash recovery:\n{server_log}"
    );
    let mut admin = cluster.connect("app");
    let mut completers: BTreeMap<usize, Vec<Value>> = BTreeMap::new();
    let mut counted: BTreeMap<usize, BTreeSet<i32>> = BTreeMap::new();
    let mut maybe: BTreeMap<usize, BTreeSet<i32>> = BTreeMap::new();
    for (n, slot, delivery) in &log {
        match delivery {
            Delivery::Acknowledged(status, _) if status == "aborted" => {
                assert_eq!(
                    control(*n),
                    Some(Control::Abort),
                    "barrier {n} answered aborted"
                );
            }
            Delivery::Acknowledged(status, results) => {
                assert!(
                    ["pending", "complete", "duplicate"].contains(&status.as_str()),
                    "barrier {n} slot {slot} answered {status}"
                );
                counted.entry(*n).or_default().insert(*slot);
                if status == "complete" {
                    completers
                        .entry(*n)
                        .or_default()
                        .push(results.clone().unwrap());
                }
            }
            Delivery::InFlight => {
                maybe.entry(*n).or_default().insert(*slot);
            }
        }
    }
    let controls = controls.into_inner().unwrap();
    let controlled = |n: usize| -> Option<&Delivery> {
        controls
            .iter()
            .find(|(m, _, _)| *m == n)
            .map(|(_, _, delivery)| delivery)
    };
    let all_results = |n: usize, expected: i32| {
        Value::Array((0..expected).map(|slot| task_result(n, slot)).collect())
    };
    // After recovery: each barrier's status and size, as the acknowledged calls require.
    let mut aborted = BTreeSet::new();
    let mut sizes = BTreeMap::new();
    for n in 0..BARRIERS {
        let id = barrier_id(n);
        let (status, remaining, results) = stored(&mut admin, &id);
        let expected: i32 = admin
            .query_one("SELECT expected FROM barrier_status($1)", &[&id])
            .unwrap()
            .get(0);
        let acknowledged = |answer: &str| matches!(controlled(n), Some(Delivery::Acknowledged(a, _)) if a == answer);
        let in_flight = matches!(controlled(n), Some(Delivery::InFlight));
        if status == "aborted" {
            assert!(
                control(n) == Some(Control::Abort) && (acknowledged("aborted") || in_flight),
                "barrier {n} is aborted, but no abort of it was acknowledged or in flight"
            );
            assert!(
                !completers.contains_key(&n),
                "barrier {n} completed and was aborted"
            );
            assert_eq!(results, None, "an aborted barrier keeps no results");
            aborted.insert(n);
            continue;
        }
        assert!(
            !acknowledged("aborted"),
            "barrier {n}: an acknowledged abort was lost"
        );
        let grown = acknowledged(&(SLOTS + EXTRA).to_string());
        assert!(
            expected == SLOTS + EXTRA && (grown || in_flight) || expected == SLOTS && !grown,
            "barrier {n} expects {expected} tasks; the coordinator was told {:?}",
            controlled(n)
        );
        sizes.insert(n, expected);
        let results: Vec<Value> = serde_json::from_str::<Value>(&results.expect("results"))
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        let slots: BTreeSet<i32> = results
            .iter()
            .map(|value| {
                let text = value.as_str().expect("a task's result");
                let slot = text.rsplit_once('s').unwrap().1.parse().unwrap();
                assert_eq!(value, &task_result(n, slot), "a result changed");
                slot
            })
            .collect();
        assert_eq!(slots.len(), results.len(), "a slot is stored twice");
        assert_eq!(
            slots.len() as i32,
            expected - remaining,
            "barrier {n}: the count and the results disagree"
        );
        let mine = counted.get(&n).cloned().unwrap_or_default();
        let missing: Vec<&i32> = mine.difference(&slots).collect();
        assert!(
            missing.is_empty(),
            "barrier {n}: acknowledged slots {missing:?} were lost"
        );
        let extra: Vec<&i32> = slots
            .difference(&mine)
            .filter(|slot| !maybe.get(&n).is_some_and(|m| m.contains(slot)))
            .collect();
        assert!(
            extra.is_empty(),
            "barrier {n}: slots {extra:?} were never sent"
        );
        // A completing report can commit just before the SIGKILL without its answer reaching
        // the client: then one of this barrier's reports was in flight, and the completion
        // is whole.
        if status == "complete" && !completers.contains_key(&n) {
            assert!(
                maybe.contains_key(&n),
                "barrier {n} is complete, but no report of it answered complete or was in flight"
            );
            assert_eq!(Value::Array(results.clone()), all_results(n, expected));
            completers.insert(n, vec![all_results(n, expected)]);
        }
        let completions = completers.get(&n).map_or(0, Vec::len);
        assert!(
            completions <= 1,
            "barrier {n} completed {completions} times"
        );
        if completions == 1 {
            assert_eq!(status, "complete");
            assert_eq!(completers[&n][0], all_results(n, expected));
        }
    }

    // The tasks are delivered again after the crash: each barrier that was not aborted
    // completes exactly once, and reports to an aborted one learn it.
    let mut client = cluster.connect("app");
    for n in 0..BARRIERS {
        if aborted.contains(&n) {
            for slot in 0..SLOTS {
                let answer = decr(&mut client, &barrier_id(n), None, Some(slot)).unwrap();
                assert_eq!(answer.status, "aborted");
            }
            continue;
        }
        let expected = sizes[&n];
        for slot in 0..expected {
            let answer = decr(
                &mut client,
                &barrier_id(n),
                Some(&task_result(n, slot)),
                Some(slot),
            )
            .unwrap();
            match answer.status.as_str() {
                "complete" => completers
                    .entry(n)
                    .or_default()
                    .push(answer.results.expect("a completion carries results")),
                "pending" | "duplicate" => {}
                other => panic!("barrier {n} slot {slot} answered {other}"),
            }
        }
        assert_eq!(
            completers.get(&n).map(Vec::as_slice),
            Some(&[all_results(n, expected)][..]),
            "barrier {n}: not exactly one completion with every result"
        );
    }
    // A consumer that was away (its LISTEN died with the server) finds every completion by
    // reading state, each exactly once.
    let mut consumer = cluster.connect("app");
    let claimed = consumer
        .query(
            "SELECT id, results::text FROM barrier_completions('crash_done', 1000)",
            &[],
        )
        .unwrap();
    let claimed: BTreeMap<String, Value> = claimed
        .iter()
        .map(|row| {
            (
                row.get(0),
                serde_json::from_str(&row.get::<_, String>(1)).unwrap(),
            )
        })
        .collect();
    assert_eq!(claimed.len(), BARRIERS - aborted.len());
    for (n, expected) in &sizes {
        assert_eq!(
            claimed.get(&barrier_id(*n)),
            Some(&all_results(*n, *expected))
        );
    }
    assert!(consumer
        .query(
            "SELECT id FROM barrier_completions('crash_done', 1000)",
            &[]
        )
        .unwrap()
        .is_empty());
    assert_storage_whole(&mut admin);
    cluster.assert_log_clean();
    let controls_in_flight = controls
        .iter()
        .filter(|(_, _, delivery)| matches!(delivery, Delivery::InFlight))
        .count();
    eprintln!(
        "crash: {total} deliveries planned, {acknowledged} acknowledged and {in_flight} in \
         flight at the SIGKILL; {} aborts and adds, {controls_in_flight} in flight; all \
         acknowledged calls recovered; {} barriers aborted, {} completed once each",
        controls.len(),
        aborted.len(),
        sizes.len()
    );
}

/// Polls until the standby has replayed everything the primary has written.
fn wait_for_replay(primary: &mut Client, standby: &mut Client) {
    let target: String = primary
        .query_one("SELECT pg_current_wal_lsn()::text", &[])
        .unwrap()
        .get(0);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let caught_up: bool = standby
            .query_one(
                "SELECT pg_last_wal_replay_lsn() >= $1::text::pg_lsn",
                &[&target],
            )
            .unwrap()
            .get(0);
        if caught_up {
            return;
        }
        assert!(Instant::now() < deadline, "the standby did not catch up");
        thread::sleep(Duration::from_millis(50));
    }
}

/// On a hot standby, every call that would change a barrier fails cleanly with 25006, and the
/// readers show the primary's state.
#[test]
fn a_hot_standby_refuses_changes_with_25006_and_reads_the_primary_state() {
    let primary = started("primary", &["wal_level = replica"]);
    let mut writer = primary.connect("app");
    writer
        .batch_execute(
            "SELECT barrier_enqueue('standby', 3, '{\"next\": \"merge\"}');
             SELECT barrier_decr('standby', '\"a\"', 0);
             SELECT barrier_enqueue('standby-done', 1);
             SELECT barrier_decr('standby-done', '\"z\"', 0);",
        )
        .unwrap();
    let standby_dir = scratch_dir("standby");
    run({
        let mut backup = as_postgres(&primary.bin.join("pg_basebackup"));
        backup
            .args([
                "-R",
                "-X",
                "stream",
                "--checkpoint=fast",
                "-h",
                "localhost",
                "-U",
                "postgres",
                "-p",
            ])
            .arg(primary.port.to_string())
            .arg("-D")
            .arg(standby_dir.join("data"));
        backup
    });
    let standby = Cluster {
        bin: primary.bin.clone(),
        dir: standby_dir,
        port: free_port(),
    };
    // The copied settings name the primary's port and socket directory; the standby's own
    // come last and win.
    let conf = standby.dir.join("data/postgresql.auto.conf");
    let mut settings = fs::read_to_string(&conf).unwrap();
    settings.push_str(&format!(
        "port = {}\nunix_socket_directories = '{}'\nhot_standby = on\n",
        standby.port,
        standby.dir.display()
    ));
    fs::write(&conf, settings).unwrap();
    standby.pg_ctl_start();
    let mut reader = standby.connect("app");
    wait_for_replay(&mut writer, &mut reader);
    let in_recovery: bool = reader
        .query_one("SELECT pg_is_in_recovery()", &[])
        .unwrap()
        .get(0);
    assert!(in_recovery);

    let refused = [
        "SELECT barrier_enqueue('standby-new', 2)",
        "SELECT barrier_enqueue('standby', 4, replace => true)",
        "SELECT * FROM barrier_decr('standby', '\"b\"', 1)",
        "SELECT * FROM barrier_decr('standby', '\"a\"', 0)",
        "SELECT barrier_abort('standby')",
        "SELECT barrier_add('standby', 1)",
        "SELECT * FROM barrier_take('standby-done')",
        "SELECT * FROM barrier_completions()",
        "SELECT * FROM barrier_sweep()",
    ];
    for statement in refused {
        let error = reader.batch_execute(statement).expect_err(statement);
        assert_eq!(sqlstate(&error), "25006", "{statement}: {error}");
    }
    let row = reader
        .query_one(
            "SELECT status, remaining, barrier_results('standby')::text, callback::text
               FROM barrier_status('standby')",
            &[],
        )
        .unwrap();
    assert_eq!(
        (
            row.get::<_, String>(0),
            row.get::<_, i32>(1),
            row.get::<_, String>(2),
            row.get::<_, String>(3)
        ),
        (
            "pending".to_string(),
            2,
            "[\"a\"]".to_string(),
            "{\"next\": \"merge\"}".to_string()
        )
    );
    let pending: i64 = reader
        .query_one("SELECT pending FROM barrier_stats()", &[])
        .unwrap()
        .get(0);
    assert_eq!(pending, 1);
    // The primary carries on, untouched by the refused calls.
    let answer = decr(&mut writer, "standby", Some(&json!("b")), Some(1)).unwrap();
    assert_eq!(answer.status, "pending");
    let answer = decr(&mut writer, "standby", Some(&json!("c")), Some(2)).unwrap();
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.results, Some(json!(["a", "b", "c"])));
    primary.assert_log_clean();
    standby.assert_log_clean();
    eprintln!("standby: {} calls refused with 25006", refused.len());
}

/// Two-phase commit: a report that would notify (the completing one, an abort) cannot be
/// prepared, and the refusal rolls it back; a report that does not notify can, and counts only
/// once COMMIT PREPARED runs.
#[test]
fn prepare_transaction_is_refused_after_a_notifying_call_and_counts_only_when_committed() {
    let cluster = started("twophase", &["max_prepared_transactions = 4"]);
    let mut client = cluster.connect("app");
    client
        .batch_execute(
            "SELECT barrier_enqueue('twophase', 2);
             SELECT barrier_enqueue('twophase-abort', 2);",
        )
        .unwrap();

    // A pending report, prepared: invisible until committed, and it holds the row meanwhile.
    client
        .batch_execute(
            "BEGIN; SELECT barrier_decr('twophase', '\"a\"', 0); PREPARE TRANSACTION 'report-a';",
        )
        .unwrap();
    let mut other = cluster.connect("app");
    other.batch_execute("SET lock_timeout = '200ms'").unwrap();
    let error = other
        .batch_execute("SELECT barrier_decr('twophase', '\"b\"', 1)")
        .expect_err("the prepared report holds the row");
    assert_eq!(sqlstate(&error), "55P03", "{error}");
    let remaining: i32 = other
        .query_one("SELECT remaining FROM barrier_status('twophase')", &[])
        .unwrap()
        .get(0);
    assert_eq!(remaining, 2);
    client.batch_execute("COMMIT PREPARED 'report-a'").unwrap();

    // The completing report notifies, so PREPARE is refused and the transaction rolls back.
    let error = client
        .batch_execute(
            "BEGIN; SELECT barrier_decr('twophase', '\"b\"', 1); PREPARE TRANSACTION 'report-b';",
        )
        .expect_err("a completing report cannot be prepared");
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    client.batch_execute("ROLLBACK").unwrap();
    assert_eq!(
        stored(&mut client, "twophase"),
        ("pending".into(), 1, Some("[\"a\"]".into()))
    );
    let error = client
        .batch_execute(
            "BEGIN; SELECT barrier_abort('twophase-abort'); PREPARE TRANSACTION 'abort';",
        )
        .expect_err("an abort cannot be prepared");
    assert_eq!(sqlstate(&error), "0A000", "{error}");
    client.batch_execute("ROLLBACK").unwrap();
    let prepared: i64 = client
        .query_one("SELECT count(*) FROM pg_prepared_xacts", &[])
        .unwrap()
        .get(0);
    assert_eq!(prepared, 0);

    // Both barriers still work: the last report completes with both results.
    let answer = decr(&mut client, "twophase", Some(&json!("b")), Some(1)).unwrap();
    assert_eq!(answer.status, "complete");
    assert_eq!(answer.results, Some(json!(["a", "b"])));
    let aborted: String = client
        .query_one("SELECT barrier_abort('twophase-abort')", &[])
        .unwrap()
        .get(0);
    assert_eq!(aborted, "aborted");
    cluster.assert_log_clean();
}

// ---------------------------------------------------------------------------------------------
// Nested barriers
// ---------------------------------------------------------------------------------------------

const TREES: usize = 120;
/// Each tree: a root of two mids, each mid of two leaves; leaf `j` expects `j + 1` reports, so
/// that most reports complete a leaf and carry its completion up in their transaction.
const FAN: i32 = 2;

fn root_id(n: usize) -> String {
    format!("tree-{n}")
}

fn mid_id(n: usize, mid: i32) -> String {
    format!("tree-{n}/{mid}")
}

fn leaf_id(n: usize, mid: i32, leaf: i32) -> String {
    format!("tree-{n}/{mid}/{leaf}")
}

/// One report of a leaf: tree, mid, leaf, slot.
type LeafReport = (usize, i32, i32, i32);

fn leaf_slots(leaf: i32) -> i32 {
    leaf + 1
}

fn leaf_result(n: usize, mid: i32, leaf: i32, slot: i32) -> Value {
    json!(format!("t{n}m{mid}l{leaf}s{slot}"))
}

/// What a leaf's completion reports into its mid.
fn leaf_up(n: usize, mid: i32, leaf: i32) -> Value {
    let results = (0..leaf_slots(leaf))
        .map(|slot| leaf_result(n, mid, leaf, slot))
        .collect();
    handed_up(
        &leaf_id(n, mid, leaf),
        1,
        "complete",
        Value::Array(results),
        &[],
        json!([]),
        &[],
    )
}

/// What a mid's completion reports into the root.
fn mid_up(n: usize, mid: i32) -> Value {
    let results = (0..FAN).map(|leaf| leaf_up(n, mid, leaf)).collect();
    handed_up(
        &mid_id(n, mid),
        1,
        "complete",
        Value::Array(results),
        &[],
        json!([]),
        &[],
    )
}

/// The root's completion: every mid's, in slot order.
fn root_results(n: usize) -> Value {
    Value::Array((0..FAN).map(|mid| mid_up(n, mid)).collect())
}

/// A barrier as stored after recovery: status, whether taken, and its result rows by slot.
struct Recovered {
    status: String,
    taken: bool,
    rows: BTreeMap<i32, (Value, bool)>,
}

fn recovered(client: &mut Client, id: &str) -> Recovered {
    let row = client
        .query_one(
            "SELECT status, taken_at IS NOT NULL FROM barrier_internal.barrier WHERE id = $1",
            &[&id],
        )
        .unwrap_or_else(|error| panic!("barrier {id}: {error}"));
    let rows = client
        .query(
            "SELECT slot, coalesce(result, 'null'::jsonb)::text, failed
               FROM barrier_internal.result WHERE barrier_id = $1",
            &[&id],
        )
        .unwrap()
        .iter()
        .map(|row| {
            let result: String = row.get(1);
            (
                row.get(0),
                (serde_json::from_str(&result).unwrap(), row.get(2)),
            )
        })
        .collect();
    Recovered {
        status: row.get(0),
        taken: row.get(1),
        rows,
    }
}

/// Trees of nested barriers (a root, two mids, four leaves each) complete bottom-up while
/// workers report their leaves; the whole cluster is SIGKILLed with reports in flight, most of
/// which complete a leaf and report it into its mid, some the mid too and into the root. After
/// recovery every tree is whole: a leaf is complete exactly when its mid holds its completion
/// (and it is handed over), a mid exactly when the root holds its, never one without the other;
/// every acknowledged report is there. Delivered again, every tree completes exactly once, and
/// only the roots are left to claim, each with the whole tree's results.
#[test]
fn a_crash_mid_nested_completions_leaves_each_tree_whole_or_not() {
    let cluster = started("crash-trees", &["synchronous_commit = on"]);
    let mut admin = cluster.connect("app");
    let mut setup = admin.transaction().unwrap();
    for n in 0..TREES {
        setup
            .execute(
                "SELECT barrier_enqueue($1, $2, channel => 'crash_tree')",
                &[&root_id(n), &FAN],
            )
            .unwrap();
        for mid in 0..FAN {
            setup
                .execute(
                    "SELECT barrier_enqueue($1, $2, channel => 'crash_tree', parent => $3,
                                            parent_slot => $4)",
                    &[&mid_id(n, mid), &FAN, &root_id(n), &mid],
                )
                .unwrap();
            for leaf in 0..FAN {
                setup
                    .execute(
                        "SELECT barrier_enqueue($1, $2, channel => 'crash_tree', parent => $3,
                                                parent_slot => $4)",
                        &[
                            &leaf_id(n, mid, leaf),
                            &leaf_slots(leaf),
                            &mid_id(n, mid),
                            &leaf,
                        ],
                    )
                    .unwrap();
            }
        }
    }
    setup.commit().unwrap();

    // Every leaf slot once, a fifth of them twice, shuffled within groups of eight trees taken
    // in turn, so that at the crash some trees are done, some part way and some untouched.
    let mut rng = Rng::new(seed());
    let mut work: Vec<(u64, usize, i32, i32, i32)> = Vec::new();
    for n in 0..TREES {
        for mid in 0..FAN {
            for leaf in 0..FAN {
                for slot in 0..leaf_slots(leaf) {
                    let deliveries = if rng.below(5) == 0 { 2 } else { 1 };
                    for _ in 0..deliveries {
                        work.push((rng.next(), n, mid, leaf, slot));
                    }
                }
            }
        }
    }
    work.sort_by_key(|&(order, n, ..)| (n / 8, order));
    let work: Vec<(usize, i32, i32, i32)> = work
        .into_iter()
        .map(|(_, n, mid, leaf, slot)| (n, mid, leaf, slot))
        .collect();
    let total = work.len();
    let done = AtomicUsize::new(0);
    let log: Mutex<Vec<(LeafReport, Delivery)>> = Mutex::default();
    thread::scope(|scope| {
        for worker in 0..WORKERS {
            let mine: Vec<(usize, i32, i32, i32)> =
                work.iter().copied().skip(worker).step_by(WORKERS).collect();
            let (cluster, done, log) = (&cluster, &done, &log);
            scope.spawn(move || {
                let mut client = cluster.connect("app");
                for (n, mid, leaf, slot) in mine {
                    let result = leaf_result(n, mid, leaf, slot);
                    let answer = report(
                        &mut client,
                        &leaf_id(n, mid, leaf),
                        Some(&result),
                        Some(slot),
                        false,
                    );
                    let delivery = match answer {
                        Ok(answer) => Delivery::Acknowledged(answer.status, answer.results),
                        Err(error) if error.code().is_none() => Delivery::InFlight,
                        Err(error) => panic!("tree {n} leaf {mid}/{leaf} slot {slot}: {error}"),
                    };
                    let lost = matches!(delivery, Delivery::InFlight);
                    log.lock().unwrap().push(((n, mid, leaf, slot), delivery));
                    done.fetch_add(1, Ordering::Relaxed);
                    if lost {
                        return;
                    }
                }
            });
        }
        let crash_at = total / 3 + rng.below(total / 3);
        while done.load(Ordering::Relaxed) < crash_at {
            thread::sleep(Duration::from_millis(1));
        }
        cluster.crash();
    });
    let log = log.into_inner().unwrap();
    let in_flight = log
        .iter()
        .filter(|(_, delivery)| matches!(delivery, Delivery::InFlight))
        .count();
    assert!(
        in_flight > 0,
        "the crash interrupted no report; it came too late"
    );

    cluster.pg_ctl_start();
    let mut admin = cluster.connect("app");
    // What the workers were told, per leaf.
    let mut acknowledged: BTreeMap<(usize, i32, i32), BTreeSet<i32>> = BTreeMap::new();
    let mut sent: BTreeMap<(usize, i32, i32), BTreeSet<i32>> = BTreeMap::new();
    let mut completers: BTreeMap<(usize, i32, i32), usize> = BTreeMap::new();
    let mut maybe: BTreeSet<(usize, i32, i32)> = BTreeSet::new();
    for ((n, mid, leaf, slot), delivery) in &log {
        let key = (*n, *mid, *leaf);
        sent.entry(key).or_default().insert(*slot);
        match delivery {
            Delivery::Acknowledged(status, results) => {
                // A leaf's completion is handed to its parent (taken, its results freed), so a
                // delivery that comes later learns `already_complete`, as after any take.
                assert!(
                    ["pending", "complete", "duplicate", "already_complete"]
                        .contains(&status.as_str()),
                    "tree {n} leaf {mid}/{leaf} slot {slot} answered {status}"
                );
                acknowledged.entry(key).or_default().insert(*slot);
                if status == "complete" {
                    let all: Vec<Value> = (0..leaf_slots(*leaf))
                        .map(|slot| leaf_result(*n, *mid, *leaf, slot))
                        .collect();
                    assert_eq!(results.as_ref(), Some(&Value::Array(all)));
                    *completers.entry(key).or_default() += 1;
                }
            }
            Delivery::InFlight => {
                maybe.insert(key);
            }
        }
    }
    let mut trees_done = 0;
    let mut trees_partial = 0;
    for n in 0..TREES {
        let root = recovered(&mut admin, &root_id(n));
        let mut mids_done = 0;
        let mut leaves_in_tree = 0;
        for mid in 0..FAN {
            let middle = recovered(&mut admin, &mid_id(n, mid));
            let mut leaves_done = 0;
            for leaf in 0..FAN {
                let key = (n, mid, leaf);
                let bottom = recovered(&mut admin, &leaf_id(n, mid, leaf));
                let what = format!("tree {n} leaf {mid}/{leaf}");
                let mine = acknowledged.get(&key).cloned().unwrap_or_default();
                match bottom.status.as_str() {
                    "complete" => {
                        leaves_done += 1;
                        assert!(bottom.taken, "{what}: complete but not handed to its mid");
                        assert!(bottom.rows.is_empty(), "{what}: handed over, results kept");
                        let completions = completers.get(&key).copied().unwrap_or(0);
                        assert!(completions <= 1, "{what}: completed twice");
                        // A completing report can commit just before the SIGKILL without its
                        // answer reaching the worker: then one of the leaf's reports was in
                        // flight.
                        assert!(
                            completions == 1 || maybe.contains(&key),
                            "{what}: complete, but no report of it answered complete or was \
                             in flight"
                        );
                        // Its completion is in its mid (or, the mid done, in the root).
                        if middle.status == "pending" {
                            assert_eq!(
                                middle.rows.get(&leaf),
                                Some(&(leaf_up(n, mid, leaf), false)),
                                "{what}: complete, but its mid does not hold it"
                            );
                        }
                    }
                    "pending" => {
                        assert_eq!(completers.get(&key), None, "{what}: a completion was lost");
                        assert_eq!(
                            middle.status, "pending",
                            "{what}: pending, but its mid is {}",
                            middle.status
                        );
                        assert_eq!(
                            middle.rows.get(&leaf),
                            None,
                            "{what}: pending, but its mid holds a report of it"
                        );
                        let slots: BTreeSet<i32> = bottom.rows.keys().copied().collect();
                        for slot in &slots {
                            assert_eq!(
                                bottom.rows[slot],
                                (leaf_result(n, mid, leaf, *slot), false),
                                "{what}: slot {slot}"
                            );
                        }
                        let lost: Vec<&i32> = mine.difference(&slots).collect();
                        assert!(
                            lost.is_empty(),
                            "{what}: acknowledged slots {lost:?} were lost"
                        );
                        let never = sent.get(&key).cloned().unwrap_or_default();
                        assert!(
                            slots.is_subset(&never),
                            "{what}: slots never sent are stored"
                        );
                    }
                    other => panic!("{what} is {other}"),
                }
            }
            leaves_in_tree += leaves_done;
            let what = format!("tree {n} mid {mid}");
            match middle.status.as_str() {
                "complete" => {
                    mids_done += 1;
                    assert_eq!(leaves_done, FAN, "{what}: complete with leaves pending");
                    assert!(middle.taken, "{what}: complete but not handed to the root");
                    if root.status == "pending" {
                        assert_eq!(
                            root.rows.get(&mid),
                            Some(&(mid_up(n, mid), false)),
                            "{what}: complete, but the root does not hold it"
                        );
                    }
                }
                "pending" => {
                    assert!(
                        leaves_done < FAN,
                        "{what}: every leaf done, the mid pending"
                    );
                    assert_eq!(
                        middle.rows.len(),
                        leaves_done as usize,
                        "{what}: holds reports of leaves that are not done"
                    );
                    assert_eq!(root.status, "pending", "{what}: pending, the root done");
                    assert_eq!(root.rows.get(&mid), None, "{what}: pending, in the root");
                }
                other => panic!("{what} is {other}"),
            }
        }
        match root.status.as_str() {
            "complete" => {
                assert_eq!(
                    mids_done, FAN,
                    "tree {n}: the root is complete, a mid is not"
                );
                assert!(!root.taken, "tree {n}: the root was handed out");
                let results: Option<String> = admin
                    .query_one("SELECT barrier_results($1)::text", &[&root_id(n)])
                    .unwrap()
                    .get(0);
                let results: Value = serde_json::from_str(&results.unwrap()).unwrap();
                assert_eq!(results, root_results(n), "tree {n}");
                trees_done += 1;
            }
            "pending" => {
                assert!(
                    mids_done < FAN,
                    "tree {n}: every mid done, the root pending"
                );
                assert_eq!(
                    root.rows.len(),
                    mids_done as usize,
                    "tree {n}: the root's rows"
                );
                trees_partial += usize::from(leaves_in_tree > 0);
            }
            other => panic!("tree {n}: the root is {other}"),
        }
    }
    assert!(trees_done > 0, "no tree completed before the crash");

    // The leaves are delivered again: every leaf completes once in all, every tree completes.
    let mut client = cluster.connect("app");
    for n in 0..TREES {
        for mid in 0..FAN {
            for leaf in 0..FAN {
                let key = (n, mid, leaf);
                let was_complete = stored(&mut client, &leaf_id(n, mid, leaf)).0 == "complete";
                let mut completions = usize::from(was_complete);
                for slot in 0..leaf_slots(leaf) {
                    let result = leaf_result(n, mid, leaf, slot);
                    let answer = decr(
                        &mut client,
                        &leaf_id(n, mid, leaf),
                        Some(&result),
                        Some(slot),
                    )
                    .unwrap();
                    match answer.status.as_str() {
                        "complete" => completions += 1,
                        "pending" | "duplicate" | "already_complete" => {}
                        other => panic!("tree {n} leaf {mid}/{leaf} slot {slot}: {other}"),
                    }
                }
                assert_eq!(completions, 1, "tree {n} leaf {mid}/{leaf}: {key:?}");
            }
        }
    }
    let mut claimed: BTreeMap<String, Value> = BTreeMap::new();
    loop {
        let batch = claim(&mut client, "crash_tree", 1000).unwrap();
        if batch.is_empty() {
            break;
        }
        for (id, handed) in batch {
            assert_eq!(handed.status, "complete", "{id}");
            assert!(claimed.insert(id, handed.results).is_none());
        }
    }
    assert_eq!(claimed.len(), TREES, "only the roots are left to claim");
    for n in 0..TREES {
        assert_eq!(claimed.get(&root_id(n)), Some(&root_results(n)), "tree {n}");
    }
    assert_storage_whole(&mut admin);
    cluster.assert_log_clean();
    eprintln!(
        "crash-trees: {total} deliveries planned, {} made and {in_flight} in flight at the \
         SIGKILL; {trees_done} trees complete and {trees_partial} part way after recovery, \
         each whole",
        log.len() - in_flight
    );
}
