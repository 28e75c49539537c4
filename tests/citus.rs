//! pg_barrier distributed with Citus: a coordinator and two workers, each a scratch PostgreSQL
//! cluster (tests/scratch/cluster.rs) of the installation the pgrx test server runs from, with
//! Citus installed in it by `scripts/citus.sh`. On the coordinator `barrier_distribute` spreads
//! the state tables over the workers by barrier id and delegates every call that names one
//! barrier to the worker that holds it; the clients talk to the coordinator only, as an
//! application would. Each test runs for both editions (the Rust build, preloaded on every node,
//! and the SQL edition, with no library), on a cluster of its own, one cluster at a time.
//!
//! What is checked is what a client relies on, under the events a distributed deployment adds:
//! reports racing across shards, a shard moved to another worker while reports arrive, and a
//! worker killed and restarted. In each: every report counted once with its result, exactly one
//! completing answer per barrier (or, where the answer was lost to an error, a completion found
//! by `barrier_completions`: never two), every completion handed out once from the
//! coordinator, and a notification per completion on the worker that ran it.

// Shared with tests/integration; this binary uses only part of it.
#[allow(dead_code)]
#[path = "integration/support.rs"]
mod support;

#[allow(dead_code)]
#[path = "scratch/cluster.rs"]
mod cluster;

/// What `support` connects to: the pgrx test server, started only so that the harness installs
/// the extension (both editions' scripts) into the installation the Citus nodes run from.
fn target() -> support::Target {
    support::Target::RUST
}

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;
use postgres::Client;
use serde_json::{json, Value};

use cluster::Cluster;
use support::{claim, decr, seed, Edition, Rng};

/// Three servers and eight clients load a two-core machine enough: the tests take turns.
static ONE_CLUSTER_AT_A_TIME: Mutex<()> = Mutex::new(());

/// Shards of the state tables: four on each worker.
const SHARDS: i32 = 8;
/// Client sessions reporting at once, all on the coordinator.
const CLIENTS: usize = 8;
/// The channel every barrier notifies on.
const CHANNEL: &str = "citus_done";

/// Each active shard placement with the port of its node. Not `citus_shards`: that view leaves
/// out the tables of extensions, as pg_barrier's are.
const PLACEMENTS: &str = "(SELECT s.logicalrelid, s.shardid, n.nodeport
                             FROM pg_dist_shard s
                             JOIN pg_dist_placement p ON p.shardid = s.shardid
                             JOIN pg_dist_node n ON n.groupid = p.groupid
                            WHERE p.shardstate = 1) placements";

/// A coordinator and two workers running Citus, with pg_barrier installed and distributed.
struct Citus {
    coordinator: Cluster,
    workers: [Cluster; 2],
}

/// The statement that installs `edition`.
fn create_extension(edition: Edition) -> String {
    let version = match edition {
        Edition::Rust => env!("CARGO_PKG_VERSION").to_string(),
        Edition::Sql => support::sql_edition_version(),
    };
    format!("CREATE EXTENSION pg_barrier VERSION '{version}'")
}

impl Citus {
    /// Three fresh clusters, Citus in database `app` on each, the workers added to the
    /// coordinator, then pg_barrier installed (Citus creates it on the workers too) and
    /// distributed over `SHARDS` shards.
    fn start(name: &str, edition: Edition) -> Citus {
        let citus = Citus::undistributed(name, edition);
        citus.distribute();
        citus
    }

    /// `start` without `barrier_distribute`: pg_barrier's tables still on the coordinator alone.
    fn undistributed(name: &str, edition: Edition) -> Citus {
        // Connecting to the pgrx test server makes the harness install the extension.
        let bin = support::server_bin_dir();
        let pkglibdir = Command::new(bin.join("pg_config"))
            .arg("--pkglibdir")
            .output()
            .expect("pg_config --pkglibdir");
        let pkglibdir = String::from_utf8(pkglibdir.stdout).unwrap();
        assert!(
            Path::new(pkglibdir.trim()).join("citus.so").exists(),
            "Citus is not installed in {}: run scripts/citus.sh",
            pkglibdir.trim()
        );
        let preload = match edition {
            Edition::Rust => "shared_preload_libraries = 'citus,pg_barrier'",
            Edition::Sql => "shared_preload_libraries = 'citus'",
        };
        let settings = [
            preload,
            // For shard moves by logical replication.
            "wal_level = logical",
            "max_connections = 200",
            "citus.max_cached_conns_per_worker = 1",
            // A SIGKILL of the server processes loses nothing the kernel holds; fsync only
            // slows these servers down.
            "fsync = off",
            // Citus 13.2.2's distributed deadlock detector crashed workers of this build
            // (PostgreSQL 15.20, pg_barrier preloaded) in dump_local_wait_edges() while sessions
            // waited for locks (docs/scale-out.md, "Known problems"); these calls make no
            // distributed transaction.
            "citus.distributed_deadlock_detection_factor = -1",
        ];
        let node = |role: &str| {
            let cluster = Cluster::start(bin.clone(), &format!("citus-{name}-{role}"), &settings);
            cluster
                .connect("app")
                .batch_execute("CREATE EXTENSION citus")
                .unwrap_or_else(|e| panic!("CREATE EXTENSION citus on the {role}: {e}"));
            cluster
        };
        let citus = Citus {
            coordinator: node("coordinator"),
            workers: [node("worker1"), node("worker2")],
        };
        let mut admin = citus.connect();
        admin
            .execute(
                "SELECT citus_set_coordinator_host('localhost', $1)",
                &[&i32::from(citus.coordinator.port)],
            )
            .unwrap();
        for worker in &citus.workers {
            admin
                .execute(
                    "SELECT citus_add_node('localhost', $1)",
                    &[&i32::from(worker.port)],
                )
                .unwrap();
        }
        admin.batch_execute(&create_extension(edition)).unwrap();
        let version: String = admin
            .query_one(
                "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'",
                &[],
            )
            .unwrap()
            .get(0);
        for (index, worker) in citus.workers.iter().enumerate() {
            let installed: Option<String> = worker
                .connect("app")
                .query_opt(
                    "SELECT extversion FROM pg_extension WHERE extname = 'pg_barrier'",
                    &[],
                )
                .unwrap()
                .map(|row| row.get(0));
            assert_eq!(
                installed.as_ref(),
                Some(&version),
                "pg_barrier on worker {}",
                index + 1
            );
        }
        citus
    }

    /// `barrier_distribute`, twice: the second call distributes nothing again.
    fn distribute(&self) {
        let mut admin = self.connect();
        let steps = |admin: &mut Client| -> Vec<String> {
            admin
                .query(
                    "SELECT step FROM barrier_distribute(shard_count => $1)",
                    &[&SHARDS],
                )
                .unwrap_or_else(|e| panic!("barrier_distribute: {e:?}"))
                .iter()
                .map(|row| row.get(0))
                .collect()
        };
        let first = steps(&mut admin);
        assert_eq!(
            first.iter().filter(|step| *step == "distributed").count(),
            3,
            "{first:?}"
        );
        // The nine functions that name one barrier are delegated by their first argument.
        let delegated: Vec<String> = admin
            .query(
                "SELECT p.proname::text FROM pg_dist_object o JOIN pg_proc p ON p.oid = o.objid
                  WHERE o.classid = 'pg_proc'::regclass AND o.distribution_argument_index = 0
                    AND o.colocationid = (SELECT colocationid FROM pg_dist_partition
                                           WHERE logicalrelid = 'barrier_internal.barrier'::regclass)
                  ORDER BY 1",
                &[],
            )
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(
            delegated,
            [
                "barrier_abort",
                "barrier_add",
                "barrier_decr",
                "barrier_enqueue",
                "barrier_pending_slots",
                "barrier_results",
                "barrier_seal",
                "barrier_status",
                "barrier_take"
            ],
            "{first:?}"
        );
        let again = steps(&mut admin);
        assert!(
            !again.iter().any(|step| step == "distributed") && again.contains(&"kept".into()),
            "{again:?}"
        );
    }

    /// A client session on the coordinator.
    fn connect(&self) -> Client {
        let mut client = self.coordinator.connect("app");
        client
            .batch_execute("SET client_min_messages = warning")
            .unwrap();
        client
    }

    fn worker_ports(&self) -> [u16; 2] {
        [self.workers[0].port, self.workers[1].port]
    }

    /// How many shards of `table` each node holds, by port.
    fn shards(&self, admin: &mut Client, table: &str) -> BTreeMap<u16, i64> {
        admin
            .query(
                &format!("SELECT nodeport, count(*) FROM {PLACEMENTS} WHERE logicalrelid = $1::text::regclass GROUP BY 1"),
                &[&table],
            )
            .unwrap()
            .iter()
            .map(|row| (row.get::<_, i32>(0) as u16, row.get(1)))
            .collect()
    }

    /// The port of the worker that holds barrier `id`.
    fn holder(&self, admin: &mut Client, id: &str) -> u16 {
        let port: i32 = admin
            .query_one(
                &format!(
                    "SELECT nodeport FROM {PLACEMENTS}
                      WHERE shardid = get_shard_id_for_distribution_column(
                                        'barrier_internal.barrier', $1::text)"
                ),
                &[&id],
            )
            .unwrap()
            .get(0);
        port as u16
    }

    /// Every node's log shows no crash and no PANIC, other than the SIGKILL a test caused.
    fn assert_logs_clean(&self) {
        self.coordinator.assert_log_clean();
        for worker in &self.workers {
            worker.assert_log_clean();
        }
    }
}

fn barrier_id(test: &str, n: usize) -> String {
    format!("{test}-{n}")
}

/// The result a task reports for its slot: the same on every delivery.
fn task_result(n: usize, slot: i32) -> Value {
    json!(format!("b{n}s{slot}"))
}

/// Every task's result, in slot order: what a barrier completes with.
fn all_results(n: usize, slots: i32) -> Value {
    Value::Array((0..slots).map(|slot| task_result(n, slot)).collect())
}

/// Every slot of `barriers` barriers once, a fifth of them twice (a redelivery), shuffled;
/// `group` barriers at a time when `group` is given (so that, part way, some barriers are
/// complete, some part way and some untouched), else all together.
fn deliveries(
    rng: &mut Rng,
    barriers: usize,
    slots: i32,
    group: Option<usize>,
) -> Vec<(usize, i32)> {
    let mut work: Vec<(u64, usize, i32)> = Vec::new();
    for n in 0..barriers {
        for slot in 0..slots {
            let times = if rng.below(5) == 0 { 2 } else { 1 };
            for _ in 0..times {
                work.push((rng.next(), n, slot));
            }
        }
    }
    let group = group.unwrap_or(barriers);
    work.sort_by_key(|&(order, n, _)| (n / group, order));
    work.into_iter().map(|(_, n, slot)| (n, slot)).collect()
}

/// One call of `barrier_decr` as the client saw it.
#[derive(Debug, Clone)]
enum Outcome {
    /// The coordinator answered: status, remaining, results.
    Answered(String, Option<i32>, Option<Value>),
    /// It failed: the SQLSTATE (none when the connection broke) and the message.
    Failed(Option<String>, String),
}

#[derive(Debug, Clone)]
struct Attempt {
    n: usize,
    slot: i32,
    outcome: Outcome,
    /// When the answer or the error came, since the test binary's first report.
    at: Duration,
}

/// The time since the first call, to put reports and the events of a test on one timeline.
fn since_start() -> Duration {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}

/// Sends `work` from `CLIENTS` sessions on the coordinator, dealt round-robin. A failed report is
/// sent again, the same slot with the same result, until it is answered (within two minutes);
/// a session whose connection broke is replaced. When `gate` is given, each session stops
/// before its last quarter of reports until the flag is set, so that whatever disturbs the
/// cluster meanwhile happens with reports still to come. `sent` counts answered deliveries.
fn report_all(
    citus: &Citus,
    test: &str,
    work: &[(usize, i32)],
    gate: Option<&AtomicBool>,
    sent: &AtomicUsize,
) -> Vec<Attempt> {
    let attempts: Mutex<Vec<Attempt>> = Mutex::default();
    thread::scope(|scope| {
        for client_index in 0..CLIENTS {
            let mine: Vec<(usize, i32)> = work
                .iter()
                .copied()
                .skip(client_index)
                .step_by(CLIENTS)
                .collect();
            let attempts = &attempts;
            scope.spawn(move || {
                let mut client = citus.connect();
                let hold_at = mine.len() * 3 / 4;
                for (index, (n, slot)) in mine.into_iter().enumerate() {
                    if let Some(gate) = gate.filter(|_| index == hold_at) {
                        while !gate.load(Ordering::Acquire) {
                            thread::sleep(Duration::from_millis(10));
                        }
                    }
                    let id = barrier_id(test, n);
                    let deadline = Instant::now() + Duration::from_secs(120);
                    loop {
                        let answer =
                            decr(&mut client, &id, Some(&task_result(n, slot)), Some(slot));
                        let outcome = match &answer {
                            Ok(answer) => Outcome::Answered(
                                answer.status.clone(),
                                answer.remaining,
                                answer.results.clone(),
                            ),
                            Err(error) => Outcome::Failed(
                                error.code().map(|code| code.code().to_string()),
                                error.as_db_error().map_or_else(
                                    || error.to_string(),
                                    |db| db.message().to_string(),
                                ),
                            ),
                        };
                        attempts.lock().unwrap().push(Attempt {
                            n,
                            slot,
                            outcome,
                            at: since_start(),
                        });
                        if answer.is_ok() {
                            break;
                        }
                        assert!(
                            Instant::now() < deadline,
                            "barrier {id} slot {slot}: still failing after two minutes: {answer:?}"
                        );
                        thread::sleep(Duration::from_millis(50));
                        if client.is_closed() {
                            client = citus.connect();
                        }
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    attempts.into_inner().unwrap()
}

/// What the answers show, barrier by barrier, given `slots` slots each: every answer is
/// `pending`, `complete` or `duplicate`; no slot is counted twice (at most one counting answer
/// per slot, and a slot answered only `duplicate` had a failed attempt, which counted); no
/// two counting answers of a barrier saw the same `remaining`; at most one answer completes a
/// barrier, with `remaining` 0 and every result in slot order, and a barrier with none had a
/// failed attempt (the completing answer lost to the error). Returns the barriers whose
/// completing answer the clients saw.
fn check_answers(attempts: &[Attempt], barriers: usize, slots: i32) -> BTreeSet<usize> {
    let mut completed = BTreeSet::new();
    for n in 0..barriers {
        let mine: Vec<&Attempt> = attempts.iter().filter(|a| a.n == n).collect();
        let failed_slots: BTreeSet<i32> = mine
            .iter()
            .filter(|a| matches!(a.outcome, Outcome::Failed(..)))
            .map(|a| a.slot)
            .collect();
        let mut counted: BTreeMap<i32, usize> = BTreeMap::new();
        let mut remainders: Vec<i32> = Vec::new();
        let mut completers = 0;
        for attempt in &mine {
            let Outcome::Answered(status, remaining, results) = &attempt.outcome else {
                continue;
            };
            let slot = attempt.slot;
            match status.as_str() {
                "pending" | "complete" => {
                    *counted.entry(slot).or_default() += 1;
                    remainders.push(remaining.expect("a counting answer has remaining"));
                    if status == "complete" {
                        completers += 1;
                        assert_eq!(*remaining, Some(0), "barrier {n}: completed with remaining");
                        assert_eq!(
                            results.as_ref(),
                            Some(&all_results(n, slots)),
                            "barrier {n}: the completing answer's results"
                        );
                    } else {
                        assert_eq!(results, &None, "barrier {n}: a pending answer has results");
                    }
                }
                "duplicate" => {}
                other => panic!("barrier {n} slot {slot} answered {other}"),
            }
        }
        for slot in 0..slots {
            match counted.get(&slot).copied().unwrap_or(0) {
                0 => assert!(
                    failed_slots.contains(&slot),
                    "barrier {n} slot {slot}: answered only duplicate, and no attempt of it failed"
                ),
                1 => {}
                times => panic!("barrier {n} slot {slot}: counted {times} times"),
            }
        }
        let distinct: BTreeSet<i32> = remainders.iter().copied().collect();
        assert_eq!(
            distinct.len(),
            remainders.len(),
            "barrier {n}: two counting answers saw the same remaining: {remainders:?}; its \
             answers (ms, slot, outcome): {:#?}",
            mine.iter()
                .map(|a| (a.at.as_millis(), a.slot, &a.outcome))
                .collect::<Vec<_>>()
        );
        assert!(
            distinct.iter().all(|r| (0..slots).contains(r)),
            "barrier {n}: remaining out of range: {remainders:?}"
        );
        match completers {
            0 => assert!(
                !failed_slots.is_empty(),
                "barrier {n}: no answer completed it, and none of its reports failed"
            ),
            1 => {
                completed.insert(n);
            }
            _ => panic!("barrier {n}: {completers} answers completed it"),
        }
    }
    completed
}

/// Each barrier, read back through the coordinator: complete, nothing remaining, every result
/// in slot order.
fn check_stored(admin: &mut Client, test: &str, barriers: usize, slots: i32) {
    for n in 0..barriers {
        let id = barrier_id(test, n);
        let row = admin
            .query_one(
                "SELECT status, remaining, expected, barrier_results($1)::text
                   FROM barrier_status($1)",
                &[&id],
            )
            .unwrap_or_else(|e| panic!("barrier {id}: {e}"));
        let (status, remaining, expected): (String, i32, i32) =
            (row.get(0), row.get(1), row.get(2));
        assert_eq!(
            (status.as_str(), remaining, expected),
            ("complete", 0, slots),
            "barrier {id}"
        );
        let results: Option<String> = row.get(3);
        let results: Value = serde_json::from_str(&results.expect("results")).unwrap();
        assert_eq!(
            results,
            all_results(n, slots),
            "barrier {id}: stored results"
        );
    }
}

/// Two consumers on the coordinator claim completions, three at a time, until there are none;
/// every barrier is handed out exactly once, with every result, and nothing is left.
fn check_completions(citus: &Citus, test: &str, barriers: usize, slots: i32) {
    let claimed: Mutex<Vec<(String, support::Handed)>> = Mutex::default();
    thread::scope(|scope| {
        for _ in 0..2 {
            let claimed = &claimed;
            scope.spawn(move || {
                let mut consumer = citus.connect();
                loop {
                    let batch = claim(&mut consumer, CHANNEL, 3).unwrap();
                    if batch.is_empty() {
                        break;
                    }
                    claimed.lock().unwrap().extend(batch);
                }
            });
        }
    });
    let mut handed: BTreeMap<String, Value> = BTreeMap::new();
    for (id, completion) in claimed.into_inner().unwrap() {
        assert_eq!(completion.status, "complete", "{id}");
        assert!(
            handed.insert(id.clone(), completion.results).is_none(),
            "{id} was handed out twice"
        );
    }
    let expected: BTreeMap<String, Value> = (0..barriers)
        .map(|n| (barrier_id(test, n), all_results(n, slots)))
        .collect();
    assert_eq!(handed, expected, "the completions handed out");
    let mut admin = citus.connect();
    assert!(
        claim(&mut admin, CHANNEL, 1000).unwrap().is_empty(),
        "a completion was left after the consumers found none"
    );
    for n in 0..barriers {
        assert_eq!(
            support::take(&mut admin, &barrier_id(test, n)).unwrap(),
            None,
            "barrier {n}: taken again"
        );
    }
}

/// A session on each worker, listening on `CHANNEL`.
fn listen(citus: &Citus) -> Vec<Client> {
    citus
        .workers
        .iter()
        .map(|worker| {
            let mut listener = worker.connect("app");
            listener
                .batch_execute(&format!("LISTEN {CHANNEL}"))
                .unwrap();
            listener
        })
        .collect()
}

/// What the listeners heard, until each has been quiet for a second: the payloads, in the order
/// each worker sent them.
fn heard(listeners: &mut [Client]) -> Vec<Value> {
    let mut payloads = Vec::new();
    for listener in listeners {
        let mut notifications = listener.notifications();
        let mut iter = notifications.timeout_iter(Duration::from_secs(1));
        while let Some(notification) = iter.next().expect("notification stream") {
            payloads.push(serde_json::from_str(notification.payload()).expect("JSON payload"));
        }
    }
    payloads
}

/// Exactly one `complete` notification per barrier, from the workers together.
fn check_notifications(payloads: &[Value], test: &str, barriers: usize) {
    let mut by_id: BTreeMap<String, usize> = BTreeMap::new();
    for payload in payloads {
        let id = payload["id"]
            .as_str()
            .expect("an id in the payload")
            .to_string();
        assert_eq!(
            payload,
            &json!({"id": id, "status": "complete", "round": 1}),
            "a notification"
        );
        *by_id.entry(id).or_default() += 1;
    }
    let expected: BTreeMap<String, usize> =
        (0..barriers).map(|n| (barrier_id(test, n), 1)).collect();
    assert_eq!(by_id, expected, "complete notifications per barrier");
}

/// Enqueues `barriers` barriers of `slots` slots, notifying on `CHANNEL`, from the coordinator.
fn enqueue(admin: &mut Client, test: &str, barriers: usize, slots: i32) {
    for n in 0..barriers {
        admin
            .execute(
                "SELECT barrier_enqueue($1, $2, channel => 'citus_done')",
                &[&barrier_id(test, n), &slots],
            )
            .unwrap();
    }
}

/// The failures the clients met, by SQLSTATE and message, with how many of each.
fn failures(attempts: &[Attempt]) -> BTreeMap<(Option<String>, String), usize> {
    let mut kinds = BTreeMap::new();
    for attempt in attempts {
        if let Outcome::Failed(code, message) = &attempt.outcome {
            *kinds.entry((code.clone(), message.clone())).or_default() += 1;
        }
    }
    kinds
}

fn edition_name(edition: Edition) -> &'static str {
    match edition {
        Edition::Rust => "rust",
        Edition::Sql => "sql",
    }
}

const RACE_BARRIERS: usize = 16;
const RACE_SLOTS: i32 = 32;

/// Sixteen barriers of 32 slots, spread over both workers, every slot reported from eight
/// coordinator sessions at once (a fifth twice), all barriers shuffled together: each barrier
/// completes exactly once, with every result in slot order; every report counts once (the
/// counting answers' `remaining` run through 31..0, a redelivery answers `duplicate`); each
/// worker notifies the completions it ran, one per barrier in all; two consumers on the
/// coordinator are handed every completion exactly once; and a nested barrier is refused.
fn races(edition: Edition) {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let test = format!("races-{}", edition_name(edition));
    let citus = Citus::start(&test, edition);
    let up = started.elapsed();
    let mut admin = citus.connect();
    let [w1, w2] = citus.worker_ports();
    let shards = citus.shards(&mut admin, "barrier_internal.barrier");
    assert_eq!(
        shards,
        BTreeMap::from([(w1, i64::from(SHARDS / 2)), (w2, i64::from(SHARDS / 2))]),
        "the barrier table's shards by node"
    );
    enqueue(&mut admin, &test, RACE_BARRIERS, RACE_SLOTS);
    let holders: BTreeSet<u16> = (0..RACE_BARRIERS)
        .map(|n| citus.holder(&mut admin, &barrier_id(&test, n)))
        .collect();
    assert_eq!(
        holders,
        BTreeSet::from([w1, w2]),
        "the barriers are on both workers"
    );
    let mut listeners = listen(&citus);

    let mut rng = Rng::new(seed());
    let work = deliveries(&mut rng, RACE_BARRIERS, RACE_SLOTS, None);
    let sent = AtomicUsize::new(0);
    let clock = Instant::now();
    let attempts = report_all(&citus, &test, &work, None, &sent);
    let reporting = clock.elapsed();
    assert_eq!(
        failures(&attempts),
        BTreeMap::new(),
        "reports failed with nothing disturbing the cluster"
    );
    let completed = check_answers(&attempts, RACE_BARRIERS, RACE_SLOTS);
    assert_eq!(
        completed.len(),
        RACE_BARRIERS,
        "a completing answer per barrier"
    );
    for n in 0..RACE_BARRIERS {
        let mut remainders: Vec<i32> = attempts
            .iter()
            .filter(|a| a.n == n)
            .filter_map(|a| match &a.outcome {
                Outcome::Answered(status, remaining, _) if status != "duplicate" => *remaining,
                _ => None,
            })
            .collect();
        remainders.sort_unstable();
        assert_eq!(
            remainders,
            (0..RACE_SLOTS).collect::<Vec<_>>(),
            "barrier {n}: the counting answers' remaining"
        );
        let duplicates = attempts
            .iter()
            .filter(|a| {
                a.n == n && matches!(&a.outcome, Outcome::Answered(s, ..) if s == "duplicate")
            })
            .count();
        let delivered = work.iter().filter(|(m, _)| *m == n).count();
        assert_eq!(
            duplicates,
            delivered - RACE_SLOTS as usize,
            "barrier {n}: a redelivery answers duplicate"
        );
    }
    check_stored(&mut admin, &test, RACE_BARRIERS, RACE_SLOTS);
    check_notifications(&heard(&mut listeners), &test, RACE_BARRIERS);

    // The readers across shards, before and after the consumers.
    let stats = |admin: &mut Client| -> (i64, i64, i64) {
        let row = admin
            .query_one(
                "SELECT pending, complete, untaken FROM barrier_stats()",
                &[],
            )
            .unwrap();
        (row.get(0), row.get(1), row.get(2))
    };
    let all = RACE_BARRIERS as i64;
    assert_eq!(
        stats(&mut admin),
        (0, all, all),
        "barrier_stats before the consumers"
    );
    check_completions(&citus, &test, RACE_BARRIERS, RACE_SLOTS);
    assert_eq!(
        stats(&mut admin),
        (0, all, 0),
        "barrier_stats after the consumers"
    );

    // A nested barrier would report across shards: refused.
    let error = admin
        .execute(
            "SELECT barrier_enqueue($1, 1, parent => $2, parent_slot => 0)",
            &[&format!("{test}-child"), &barrier_id(&test, 0)],
        )
        .expect_err("a nested barrier on Citus");
    assert_eq!(support::sqlstate(&error), "0A000", "{error}");
    assert!(
        format!("{error:?}").contains("nested barriers are not supported"),
        "{error:?}"
    );
    citus.assert_logs_clean();
    eprintln!(
        "citus {test}: {} deliveries from {CLIENTS} sessions in {:.1} s, {} barriers completed \
         once each; the cluster up in {:.1} s, {:.1} s in all",
        work.len(),
        reporting.as_secs_f64(),
        RACE_BARRIERS,
        up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

/// One shard moved from worker 1 to worker 2 while reports ran.
#[derive(Debug)]
#[allow(dead_code)] // read through Debug
struct Move {
    shard: i64,
    mode: &'static str,
    from_ms: u128,
    to_ms: u128,
    /// Deliveries answered meanwhile.
    answered: usize,
}

const MOVE_BARRIERS: usize = 32;
const MOVE_SLOTS: i32 = 48;

/// While eight sessions report (grouped eight barriers at a time, so that completions happen
/// throughout), every shard of the barrier table on worker 1 is moved to worker 2, the
/// colocated shards with it: all but the last blocking writes while they copy, the last by
/// logical replication. A failed report is sent again. Afterwards: every report counted once,
/// at most one completing answer per barrier (none only where a report failed), every barrier
/// complete with every result, one notification per barrier, every completion handed out once;
/// and worker 1 holds no shard of the state tables.
fn moves(edition: Edition) {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let test = format!("moves-{}", edition_name(edition));
    let citus = Citus::start(&test, edition);
    let up = started.elapsed();
    let mut admin = citus.connect();
    let [w1, w2] = citus.worker_ports();
    enqueue(&mut admin, &test, MOVE_BARRIERS, MOVE_SLOTS);
    let mut listeners = listen(&citus);
    let to_move: Vec<i64> = admin
        .query(
            &format!(
                "SELECT shardid FROM {PLACEMENTS}
                  WHERE logicalrelid = 'barrier_internal.barrier'::regclass AND nodeport = $1
                  ORDER BY shardid"
            ),
            &[&i32::from(w1)],
        )
        .unwrap()
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(to_move.len(), SHARDS as usize / 2, "shards on worker 1");

    let mut rng = Rng::new(seed());
    let work = deliveries(&mut rng, MOVE_BARRIERS, MOVE_SLOTS, Some(8));
    let total = work.len();
    let sent = AtomicUsize::new(0);
    let moved = AtomicBool::new(false);
    let mut windows: Vec<Move> = Vec::new();
    let clock = Instant::now();
    let attempts = thread::scope(|scope| {
        let clients = scope.spawn(|| report_all(&citus, &test, &work, Some(&moved), &sent));
        while sent.load(Ordering::Relaxed) < total / 5 {
            thread::sleep(Duration::from_millis(5));
        }
        let mut mover = citus.connect();
        for (index, shard) in to_move.iter().enumerate() {
            let mode = if index + 1 == to_move.len() {
                "force_logical"
            } else {
                "block_writes"
            };
            let (answered_before, from) = (sent.load(Ordering::Relaxed), since_start());
            mover
                .execute(
                    "SELECT citus_move_shard_placement($1, 'localhost', $2, 'localhost', $3,
                                                       shard_transfer_mode => $4::text::citus.shard_transfer_mode)",
                    &[shard, &i32::from(w1), &i32::from(w2), &mode],
                )
                .unwrap_or_else(|e| panic!("move shard {shard} ({mode}): {e:?}"));
            windows.push(Move {
                shard: *shard,
                mode,
                from_ms: from.as_millis(),
                to_ms: since_start().as_millis(),
                answered: sent.load(Ordering::Relaxed) - answered_before,
            });
        }
        moved.store(true, Ordering::Release);
        clients.join().unwrap()
    });
    let reporting = clock.elapsed();
    eprintln!("citus {test}: the moves (ms on the reports' timeline): {windows:#?}");
    let during: usize = windows.iter().map(|window| window.answered).sum();
    assert!(
        during > 0,
        "no report was answered while shards moved: {windows:?}"
    );
    let shards = citus.shards(&mut admin, "barrier_internal.barrier");
    assert_eq!(
        shards,
        BTreeMap::from([(w2, i64::from(SHARDS))]),
        "the barrier table's shards by node after the moves"
    );
    for table in ["barrier_internal.barrier_spec", "barrier_internal.result"] {
        let shards = citus.shards(&mut admin, table);
        assert_eq!(
            shards.keys().copied().collect::<Vec<_>>(),
            vec![w2],
            "{table} moved with the barrier table"
        );
    }
    let completed = check_answers(&attempts, MOVE_BARRIERS, MOVE_SLOTS);
    check_stored(&mut admin, &test, MOVE_BARRIERS, MOVE_SLOTS);
    check_notifications(&heard(&mut listeners), &test, MOVE_BARRIERS);
    check_completions(&citus, &test, MOVE_BARRIERS, MOVE_SLOTS);
    citus.assert_logs_clean();
    eprintln!(
        "citus {test}: {total} deliveries in {:.1} s, {during} answered during the moves \
         {windows:?}; {} attempts failed: {:?}; {} completing answers seen, every barrier \
         complete once; the cluster up in {:.1} s, {:.1} s in all",
        reporting.as_secs_f64(),
        attempts.len() - total,
        failures(&attempts),
        completed.len(),
        up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
}

const CRASH_BARRIERS: usize = 32;
const CRASH_SLOTS: i32 = 40;

/// Whether a failure is what a worker's death or restart explains: the connection to the
/// coordinator broke (no SQLSTATE), a connection exception (class 08), or the coordinator's
/// own report that its connection to the worker failed (Citus reports them as XX000, with
/// libpq's message: "connection to the remote node ... failed", "SSL SYSCALL error: EOF
/// detected", "invalid socket").
fn connection_failure(code: &Option<String>, message: &str) -> bool {
    match code.as_deref() {
        None => true,
        Some(code) if code.starts_with("08") => true,
        Some(_) => {
            let message = message.to_lowercase();
            ["connection", "remote node", "ssl syscall", "socket"]
                .iter()
                .any(|sign| message.contains(sign))
        }
    }
}

/// While eight sessions report (grouped eight barriers at a time), worker 1 is SIGKILLed, every
/// process of it at once, between a third and two thirds of the way, and restarted a second
/// later; reports that fail meanwhile are sent again until answered. Every failure is a
/// connection failure; afterwards, as for a shard move: every report counted once, at most one
/// completing answer per barrier (none only where a report failed), every barrier complete with
/// every result, every completion handed out once; and no report of a barrier on worker 2
/// failed, since none needs worker 1.
fn worker_crash(edition: Edition) {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let started = Instant::now();
    let test = format!("crash-{}", edition_name(edition));
    let citus = Citus::start(&test, edition);
    let up = started.elapsed();
    let mut admin = citus.connect();
    enqueue(&mut admin, &test, CRASH_BARRIERS, CRASH_SLOTS);
    let [w1, w2] = citus.worker_ports();
    let holders: Vec<u16> = (0..CRASH_BARRIERS)
        .map(|n| citus.holder(&mut admin, &barrier_id(&test, n)))
        .collect();
    assert_eq!(
        holders.iter().copied().collect::<BTreeSet<u16>>(),
        BTreeSet::from([w1, w2]),
        "the barriers are on both workers"
    );

    let mut rng = Rng::new(seed());
    let work = deliveries(&mut rng, CRASH_BARRIERS, CRASH_SLOTS, Some(8));
    let total = work.len();
    let sent = AtomicUsize::new(0);
    let restarted = AtomicBool::new(false);
    let crash_at = total / 3 + rng.below(total / 3);
    let mut at_crash = 0;
    let clock = Instant::now();
    let attempts = thread::scope(|scope| {
        let clients = scope.spawn(|| report_all(&citus, &test, &work, Some(&restarted), &sent));
        while sent.load(Ordering::Relaxed) < crash_at {
            thread::sleep(Duration::from_millis(2));
        }
        citus.workers[0].crash();
        at_crash = sent.load(Ordering::Relaxed);
        thread::sleep(Duration::from_secs(1));
        citus.workers[0].pg_ctl_start();
        restarted.store(true, Ordering::Release);
        clients.join().unwrap()
    });
    let reporting = clock.elapsed();
    let log = citus.workers[0].log();
    assert!(
        log.contains("database system was interrupted") || log.contains("not properly shut down"),
        "worker 1 did not go through crash recovery:\n{log}"
    );
    let kinds = failures(&attempts);
    assert!(
        !kinds.is_empty(),
        "no report failed: the crash came when none was in flight"
    );
    let unexplained: Vec<_> = kinds
        .keys()
        .filter(|(code, message)| !connection_failure(code, message))
        .collect();
    assert!(
        unexplained.is_empty(),
        "failures that a worker's crash does not explain: {unexplained:?} (all: {kinds:?})"
    );
    let completed = check_answers(&attempts, CRASH_BARRIERS, CRASH_SLOTS);
    check_stored(&mut admin, &test, CRASH_BARRIERS, CRASH_SLOTS);
    check_completions(&citus, &test, CRASH_BARRIERS, CRASH_SLOTS);
    citus.assert_logs_clean();
    // A report runs where its barrier is: the barriers on worker 2 never needed worker 1.
    let elsewhere: Vec<Attempt> = attempts
        .iter()
        .filter(|a| holders[a.n] == w2 && matches!(a.outcome, Outcome::Failed(..)))
        .cloned()
        .collect();
    eprintln!(
        "citus {test}: {total} deliveries in {:.1} s, worker 1 SIGKILLed after {at_crash}; {} \
         attempts failed ({} of them for barriers on worker 2): {kinds:?}; {} completing \
         answers seen, every barrier complete once; the cluster up in {:.1} s, {:.1} s in all",
        reporting.as_secs_f64(),
        attempts.len() - total,
        elsewhere.len(),
        completed.len(),
        up.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        elsewhere.is_empty(),
        "{} reports of barriers on worker 2 failed while worker 1 was down, e.g. {:?}",
        elsewhere.len(),
        elsewhere.first()
    );
}

const LIVE_BARRIERS: usize = 8;
const LIVE_SLOTS: i32 = 10;

/// A server in use becomes a Citus cluster (docs/scale-out.md): barriers enqueued and half
/// reported while the tables are on the coordinator alone, one of them completed and not yet
/// taken, and a nested pair in flight, which `barrier_distribute` refuses (55000) until it has
/// finished. Once distributed, the other half of the reports goes to the shards: each barrier
/// completes once, with every result, from either side of the move, and every completion
/// (the one from before included) is handed out once from the coordinator. Then what spans the
/// shards, from the coordinator: a barrier past its ttl is expired by `barrier_sweep`, which
/// then deletes every finished barrier past the retention on both workers, as `barrier_stats`
/// shows; and what Citus cannot keep is refused: a role without the tables' owner's privileges
/// (42501, for a call delegated to a worker and one that runs on the coordinator) and a nested
/// barrier (0A000).
fn live_server(edition: Edition) {
    let _turn = ONE_CLUSTER_AT_A_TIME
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let test = format!("live-{}", edition_name(edition));
    let citus = Citus::undistributed(&test, edition);
    let mut admin = citus.connect();
    enqueue(&mut admin, &test, LIVE_BARRIERS, LIVE_SLOTS);
    let report = |admin: &mut Client, n: usize, slot: i32| {
        decr(
            admin,
            &barrier_id(&test, n),
            Some(&task_result(n, slot)),
            Some(slot),
        )
        .unwrap_or_else(|e| panic!("barrier {n} slot {slot}: {e}"))
    };
    // Barrier 0 completes before the move; the others get their even slots.
    for slot in 0..LIVE_SLOTS {
        report(&mut admin, 0, slot);
    }
    for n in 1..LIVE_BARRIERS {
        for slot in (0..LIVE_SLOTS).step_by(2) {
            assert_eq!(report(&mut admin, n, slot).status, "pending");
        }
    }
    let (parent, child) = (format!("{test}-parent"), format!("{test}-child"));
    admin
        .execute("SELECT barrier_enqueue($1, 1)", &[&parent])
        .unwrap();
    admin
        .execute(
            "SELECT barrier_enqueue($1, 1, parent => $2, parent_slot => 0)",
            &[&child, &parent],
        )
        .unwrap();
    let error = admin
        .query("SELECT * FROM barrier_distribute(shard_count => 8)", &[])
        .expect_err("distributing with a nested barrier in flight");
    assert_eq!(support::sqlstate(&error), "55000", "{error}");
    assert_eq!(
        decr(&mut admin, &child, Some(&json!("leaf")), Some(0))
            .unwrap()
            .status,
        "complete"
    );
    let parent_status: String = admin
        .query_one("SELECT status FROM barrier_status($1)", &[&parent])
        .unwrap()
        .get(0);
    assert_eq!(
        parent_status, "complete",
        "the child reported into its parent"
    );

    citus.distribute();
    let [w1, w2] = citus.worker_ports();
    let holders: BTreeSet<u16> = (0..LIVE_BARRIERS)
        .map(|n| citus.holder(&mut admin, &barrier_id(&test, n)))
        .collect();
    assert_eq!(
        holders,
        BTreeSet::from([w1, w2]),
        "barriers on both workers"
    );
    for n in 1..LIVE_BARRIERS {
        for slot in (1..LIVE_SLOTS).step_by(2) {
            let answer = report(&mut admin, n, slot);
            if slot == LIVE_SLOTS - 1 {
                assert_eq!(answer.status, "complete", "barrier {n}");
                assert_eq!(
                    answer.results,
                    Some(all_results(n, LIVE_SLOTS)),
                    "barrier {n}"
                );
            } else {
                assert_eq!(answer.status, "pending", "barrier {n} slot {slot}");
            }
        }
        // A report from before the move, delivered again after it.
        assert_eq!(report(&mut admin, n, 0).status, "duplicate", "barrier {n}");
    }
    check_stored(&mut admin, &test, LIVE_BARRIERS, LIVE_SLOTS);
    check_completions(&citus, &test, LIVE_BARRIERS, LIVE_SLOTS);

    // Sweeping from the coordinator reaches every shard.
    let expiring = format!("{test}-expiring");
    admin
        .execute(
            "SELECT barrier_enqueue($1, 2, ttl => '1 second')",
            &[&expiring],
        )
        .unwrap();
    thread::sleep(Duration::from_millis(1100));
    let expired: i64 = admin
        .query_one("SELECT expired FROM barrier_sweep()", &[])
        .unwrap()
        .get(0);
    assert_eq!(expired, 1, "the sweep expired the barrier past its ttl");
    let status: String = admin
        .query_one("SELECT status FROM barrier_status($1)", &[&expiring])
        .unwrap()
        .get(0);
    assert_eq!(status, "expired");
    let finished = (LIVE_BARRIERS + 3) as i64; // the fan-in, the nested pair, the expired one
    let stats = admin
        .query_one(
            "SELECT pending, complete + expired, result_rows FROM barrier_stats()",
            &[],
        )
        .unwrap();
    assert_eq!(
        (stats.get::<_, i64>(0), stats.get::<_, i64>(1)),
        (0, finished),
        "barrier_stats across the shards"
    );
    admin
        .batch_execute("SET pg_barrier.retention = '0'")
        .unwrap();
    let deleted: i64 = admin
        .query_one("SELECT deleted FROM barrier_sweep()", &[])
        .unwrap()
        .get(0);
    assert_eq!(
        deleted, finished,
        "the sweep deleted every finished barrier"
    );
    for (node, port) in [("worker 1", w1), ("worker 2", w2)] {
        let worker = citus.workers.iter().find(|w| w.port == port).unwrap();
        let left: i64 = worker
            .connect("app")
            .query_one(
                "SELECT (SELECT count(*) FROM barrier_internal.barrier)
                        + (SELECT count(*) FROM barrier_internal.result)",
                &[],
            )
            .unwrap()
            .get(0);
        assert_eq!(left, 0, "rows left on {node}");
    }

    // What Citus cannot keep.
    admin
        .batch_execute("CREATE ROLE barrier_app LOGIN")
        .unwrap();
    let mut app = postgres::Config::new()
        .host("localhost")
        .port(citus.coordinator.port)
        .user("barrier_app")
        .dbname("app")
        .connect(postgres::NoTls)
        .unwrap();
    for call in [
        "SELECT * FROM barrier_decr('anything', '1', 0)",
        "SELECT * FROM barrier_completions()",
    ] {
        let error = app.query(call, &[]).expect_err(call);
        assert_eq!(support::sqlstate(&error), "42501", "{call}: {error}");
        assert!(
            format!("{error:?}").contains("only roles with the privileges of their owner"),
            "{call}: {error:?}"
        );
    }
    let error = admin
        .execute(
            "SELECT barrier_enqueue($1, 1, parent => $2, parent_slot => 0)",
            &[&format!("{test}-child-2"), &barrier_id(&test, 1)],
        )
        .expect_err("a nested barrier on Citus");
    assert_eq!(support::sqlstate(&error), "0A000", "{error}");
    assert!(
        format!("{error:?}").contains("nested barriers are not supported"),
        "{error:?}"
    );
    citus.assert_logs_clean();
}

/// The tests, in a module of their own so that a run can leave them all out by name
/// (`--skip citus::`), as scripts/test.sh does where no Citus is built.
mod citus {
    use super::*;

    #[test]
    fn rust_reports_race_across_shards_and_complete_each_barrier_once() {
        races(Edition::Rust);
    }

    #[test]
    fn sql_reports_race_across_shards_and_complete_each_barrier_once() {
        races(Edition::Sql);
    }

    #[test]
    fn rust_a_shard_moved_mid_workload_loses_and_repeats_nothing() {
        moves(Edition::Rust);
    }

    #[test]
    fn sql_a_shard_moved_mid_workload_loses_and_repeats_nothing() {
        moves(Edition::Sql);
    }

    #[test]
    fn rust_a_worker_killed_mid_workload_loses_and_repeats_nothing() {
        worker_crash(Edition::Rust);
    }

    #[test]
    fn sql_a_worker_killed_mid_workload_loses_and_repeats_nothing() {
        worker_crash(Edition::Sql);
    }

    #[test]
    fn rust_a_live_server_moves_to_citus_and_sweeps_every_shard() {
        live_server(Edition::Rust);
    }

    #[test]
    fn sql_a_live_server_moves_to_citus_and_sweeps_every_shard() {
        live_server(Edition::Sql);
    }
}
