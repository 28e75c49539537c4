//! Sweeping, durable completions and dynamic fan-out, across sessions.

use std::collections::BTreeSet;
use std::sync::Barrier;
use std::thread;
use std::time::Duration;

use postgres::fallible_iterator::FallibleIterator;
use serde_json::{json, Value};

use crate::support::{connect, decr, sqlstate};

pub fn notifications(listener: &mut postgres::Client, within: Duration) -> Vec<Value> {
    let mut received = Vec::new();
    let mut notifications = listener.notifications();
    let mut iter = notifications.timeout_iter(within);
    while let Some(n) = iter.next().unwrap() {
        received.push(serde_json::from_str(n.payload()).unwrap());
    }
    received
}

#[test]
fn concurrent_sweeps_expire_each_barrier_once_and_notify_once() {
    const BARRIERS: i32 = 100;
    let mut listener = connect();
    listener.batch_execute("LISTEN sweep_race").unwrap();
    let mut admin = connect();
    admin
        .execute(
            "SELECT count(barrier_enqueue('sw-' || g, 2, ttl => '1 second', channel => 'sweep_race'))
               FROM generate_series(1, $1) g",
            &[&BARRIERS],
        )
        .unwrap();
    thread::sleep(Duration::from_millis(1100));
    // Two sweeps at once (and the background sweeper, every second): each barrier expires once.
    let start = Barrier::new(2);
    // (What each sweep counts is not checked: other tests' barriers expire in the same sweeps,
    // as the tests run at once. The notifications and states below prove each of ours expired
    // once.)
    thread::scope(|scope| {
        let sweeps: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = connect();
                    start.wait();
                    client
                        .batch_execute("SELECT barrier_sweep(30); SELECT barrier_sweep()")
                        .unwrap();
                })
            })
            .collect();
        for sweep in sweeps {
            sweep.join().unwrap();
        }
    });
    let heard = notifications(&mut listener, Duration::from_millis(2500));
    let ids: Vec<&str> = heard.iter().map(|n| n["id"].as_str().unwrap()).collect();
    let unique: BTreeSet<&str> = ids.iter().copied().collect();
    assert_eq!(ids.len(), BARRIERS as usize, "one notification per barrier");
    assert_eq!(unique.len(), BARRIERS as usize);
    assert!(heard.iter().all(|n| n["status"] == "expired"));
    let expired: i64 = admin
        .query_one(
            "SELECT count(*) FROM barrier_internal.barrier WHERE id LIKE 'sw-%' AND status = 'expired'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(expired, i64::from(BARRIERS));
    assert_eq!(
        decr(&mut admin, "sw-1", None, None).unwrap().status,
        "expired"
    );
}

#[test]
fn concurrent_consumers_never_receive_the_same_completion() {
    const BARRIERS: i32 = 200;
    let mut admin = connect();
    admin
        .execute(
            "SELECT count(*) FROM generate_series(1, $1) g, \
                    LATERAL (SELECT barrier_enqueue('cc-' || g, 1, channel => 'cc')) e, \
                    LATERAL barrier_decr('cc-' || g, to_jsonb(g)) d",
            &[&BARRIERS],
        )
        .unwrap();
    let start = Barrier::new(3);
    let claimed: Vec<Vec<(String, Value)>> = thread::scope(|scope| {
        // A third consumer takes them one by one, by id, from the other end.
        let taker = scope.spawn(|| {
            let mut client = connect();
            start.wait();
            let mut mine = Vec::new();
            for n in (1..=BARRIERS).rev() {
                let id = format!("cc-{n}");
                if let Some(row) = client
                    .query_opt("SELECT results::text FROM barrier_take($1)", &[&id])
                    .unwrap()
                {
                    let results: String = row.get(0);
                    mine.push((id, serde_json::from_str(&results).unwrap()));
                }
            }
            mine
        });
        let consumers: Vec<_> = (0..2)
            .map(|_| {
                scope.spawn(|| {
                    let mut client = connect();
                    start.wait();
                    let mut mine = Vec::new();
                    loop {
                        let mut tx = client.transaction().unwrap();
                        let rows = tx
                            .query(
                                "SELECT id, results::text FROM barrier_completions('cc', 7)",
                                &[],
                            )
                            .unwrap();
                        tx.commit().unwrap();
                        if rows.is_empty() {
                            return mine;
                        }
                        for row in rows {
                            let results: String = row.get(1);
                            mine.push((row.get(0), serde_json::from_str(&results).unwrap()));
                        }
                    }
                })
            })
            .collect();
        let mut all: Vec<_> = consumers.into_iter().map(|c| c.join().unwrap()).collect();
        all.push(taker.join().unwrap());
        all
    });
    let ids: Vec<&String> = claimed.iter().flatten().map(|(id, _)| id).collect();
    let unique: BTreeSet<&String> = ids.iter().copied().collect();
    assert_eq!(
        ids.len(),
        BARRIERS as usize,
        "every completion handed out exactly once"
    );
    assert_eq!(unique.len(), BARRIERS as usize);
    for (id, results) in claimed.iter().flatten() {
        let n: i64 = id.trim_start_matches("cc-").parse().unwrap();
        assert_eq!(results, &json!([n]));
    }
}

#[test]
fn two_takes_race_and_one_wins() {
    for round in 0..20 {
        let id = format!("take-race-{round}");
        let mut admin = connect();
        admin
            .execute("SELECT barrier_enqueue($1, 1)", &[&id])
            .unwrap();
        decr(&mut admin, &id, Some(&json!(round)), None).unwrap();
        let start = Barrier::new(2);
        let got: Vec<usize> = thread::scope(|scope| {
            let takers: Vec<_> = (0..2)
                .map(|_| {
                    scope.spawn(|| {
                        let mut client = connect();
                        start.wait();
                        client
                            .query("SELECT results FROM barrier_take($1)", &[&id])
                            .unwrap()
                            .len()
                    })
                })
                .collect();
            takers.into_iter().map(|t| t.join().unwrap()).collect()
        });
        assert_eq!(got.iter().sum::<usize>(), 1, "round {round}: {got:?}");
    }
}

#[test]
fn add_racing_the_last_reports_never_completes_early() {
    // 100 tasks, then 50 more added while the last reports race in: whichever wins the row
    // lock, the completer's results match what was expected at that moment.
    for round in 0..10 {
        let id = format!("add-race-{round}");
        let mut admin = connect();
        admin
            .execute("SELECT barrier_enqueue($1, 100)", &[&id])
            .unwrap();
        admin
            .execute(
                "SELECT count(*) FROM generate_series(1, 98) g, LATERAL barrier_decr($1, to_jsonb(g))",
                &[&id],
            )
            .unwrap();
        let start = Barrier::new(5);
        let (added, answers) = thread::scope(|scope| {
            let reporters: Vec<_> = (0..4)
                .map(|worker| {
                    let (id, start) = (&id, &start);
                    scope.spawn(move || {
                        let mut client = connect();
                        start.wait();
                        (0..13)
                            .map(|i| {
                                decr(&mut client, id, Some(&json!(1000 + worker * 100 + i)), None)
                                    .unwrap()
                            })
                            .collect::<Vec<_>>()
                    })
                })
                .collect();
            let mut client = connect();
            start.wait();
            let added = client
                .query_one("SELECT barrier_add($1, 50)", &[&id])
                .map(|r| r.get::<_, i32>(0));
            let answers: Vec<_> = reporters
                .into_iter()
                .flat_map(|r| r.join().unwrap())
                .collect();
            (added, answers)
        });
        let completes: Vec<_> = answers.iter().filter(|a| a.status == "complete").collect();
        assert_eq!(completes.len(), 1, "round {round}");
        let results = completes[0]
            .results
            .as_ref()
            .unwrap()
            .as_array()
            .unwrap()
            .len();
        match added {
            Ok(expected) => {
                assert_eq!(expected, 150);
                assert_eq!(
                    results, 150,
                    "round {round}: completed before the added tasks"
                );
                assert_eq!(
                    answers
                        .iter()
                        .filter(|a| a.status == "already_complete")
                        .count(),
                    0
                );
            }
            Err(error) => {
                assert_eq!(sqlstate(&error), "55000", "{error}");
                assert_eq!(results, 100, "round {round}");
            }
        }
    }
}
