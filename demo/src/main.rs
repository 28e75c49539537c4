//! A fan-in through pg_barrier, as a job runner would drive it.
//!
//! One connection LISTENs; the coordinator enqueues a barrier for twenty tasks; eight workers,
//! each on its own connection, take tasks, "work", and report with `barrier_decr`. Some reports
//! are delivered twice, as at-least-once queues do. Exactly one worker is told `complete` and
//! prints every result in task order; the listener hears one notification.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use postgres::fallible_iterator::FallibleIterator;
use postgres::{Client, NoTls};

const TASKS: i32 = 20;
const WORKERS: usize = 8;
const CHANNEL: &str = "pg_barrier_demo";

fn connect(dsn: &str) -> Client {
    Client::connect(dsn, NoTls).unwrap_or_else(|e| panic!("cannot connect to {dsn}: {e}"))
}

/// A tiny deterministic generator: the demo needs variety, not quality.
fn jitter(seed: &mut u64) -> u64 {
    *seed ^= *seed << 13;
    *seed ^= *seed >> 7;
    *seed ^= *seed << 17;
    *seed
}

fn main() {
    let dsn = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "host=localhost port=5499 user=postgres dbname=postgres".into());
    let mut coordinator = connect(&dsn);
    coordinator
        // UPDATE brings a database from an earlier demo up to this library's version.
        .batch_execute(
            "CREATE EXTENSION IF NOT EXISTS pg_barrier; ALTER EXTENSION pg_barrier UPDATE",
        )
        .expect("CREATE EXTENSION pg_barrier");

    let mut listener = connect(&dsn);
    listener
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .unwrap();

    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let id = format!("demo-report-{nanos}");
    let status: String = coordinator
        .query_one(
            "SELECT barrier_enqueue($1, $2, callback => '{\"task\": \"merge_reports\"}', channel => $3)",
            &[&id, &TASKS, &CHANNEL],
        )
        .unwrap()
        .get(0);
    println!("coordinator: enqueued barrier {id} for {TASKS} tasks -> {status}");

    let listening = thread::spawn(move || {
        let started = Instant::now();
        let mut notifications = listener.notifications();
        let mut waiting = notifications.timeout_iter(Duration::from_secs(30));
        match waiting.next() {
            Ok(Some(n)) => println!(
                "listener:    NOTIFY on {} after {:?}: {}",
                n.channel(),
                started.elapsed(),
                n.payload()
            ),
            Ok(None) => println!("listener:    no notification within 30 s"),
            Err(e) => println!("listener:    {e}"),
        }
    });

    let queue: Arc<Mutex<VecDeque<i32>>> = Arc::new(Mutex::new((0..TASKS).rev().collect()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|worker| {
            let (dsn, id, queue) = (dsn.clone(), id.clone(), Arc::clone(&queue));
            thread::spawn(move || {
                let mut client = connect(&dsn);
                let mut seed = 0x9E37_79B9_7F4A_7C15 ^ ((worker as u64 + 1) * 7919) ^ nanos as u64;
                loop {
                    let Some(task) = queue.lock().unwrap().pop_back() else {
                        break;
                    };
                    thread::sleep(Duration::from_millis(20 + jitter(&mut seed) % 120));
                    let result = format!("{{\"task\": {task}, \"rows\": {}}}", (task + 1) * 100);
                    // One report in four is delivered twice.
                    let deliveries = if jitter(&mut seed).is_multiple_of(4) {
                        2
                    } else {
                        1
                    };
                    for _ in 0..deliveries {
                        let row = client
                            .query_one(
                                "SELECT status, remaining, results::text, callback::text \
                                   FROM barrier_decr($1, $2::text::jsonb, $3)",
                                &[&id, &result, &task],
                            )
                            .expect("barrier_decr");
                        let status: String = row.get(0);
                        let remaining: Option<i32> = row.get(1);
                        println!(
                            "worker {worker}:    task {task:>2} -> {status:<9} remaining {}",
                            remaining.map_or("-".into(), |r| r.to_string())
                        );
                        if status == "complete" {
                            let results: String = row.get(2);
                            let callback: String = row.get(3);
                            println!(
                                "worker {worker}:    I completed it (committed). Callback to dispatch \
                                 through barrier_take: {callback}"
                            );
                            println!("worker {worker}:    results in task order: {results}");
                        }
                    }
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().expect("worker panicked");
    }
    listening.join().expect("listener panicked");

    let row = coordinator
        .query_one(
            "SELECT status, remaining, finished_at::text FROM barrier_status($1)",
            &[&id],
        )
        .unwrap();
    let (status, remaining, finished): (String, i32, String) = (row.get(0), row.get(1), row.get(2));
    println!(
        "coordinator: barrier_status says {status}, remaining {remaining}, finished at {finished}"
    );
}
