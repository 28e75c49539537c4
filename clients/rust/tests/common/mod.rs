//! What every test file shares: the servers' addresses, connections, unique names.
#![allow(dead_code)] // each test file uses a different part of this module

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use tokio_postgres::Client;

/// Reads a server address the harness sets, and fails (never skips) without it: a test that
/// silently passes without a server would prove nothing.
fn address(variable: &str) -> String {
    match std::env::var(variable) {
        Ok(value) if !value.is_empty() => value,
        _ => panic!(
            "{variable} is not set: run these tests through scripts/clients.sh (`scripts/clients.sh \
             rust`), which starts the servers (both editions of pg_barrier, and PgBouncer) and sets \
             PG_BARRIER_DSN, PG_BARRIER_OTHER_DSN and PG_BARRIER_BOUNCER_DSN"
        ),
    }
}

/// The tests' own role, which owns nothing special.
pub fn dsn() -> String {
    address("PG_BARRIER_DSN")
}

/// Another role, whose barriers are not the first one's.
pub fn other_dsn() -> String {
    address("PG_BARRIER_OTHER_DSN")
}

/// The first role through a transaction-pooling PgBouncer.
pub fn bouncer_dsn() -> String {
    address("PG_BARRIER_BOUNCER_DSN")
}

pub async fn connect(dsn: &str) -> Client {
    let (client, _notifications) = pg_barrier_client::connect(dsn)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {dsn}: {error}"));
    client
}

/// A tag for this run, so that runs against the same database never meet each other's barriers.
fn run_tag() -> &'static str {
    static TAG: OnceLock<String> = OnceLock::new();
    TAG.get_or_init(|| {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|since| since.as_nanos())
            .unwrap_or(0);
        format!("{:x}{:x}", std::process::id(), nanos % (1 << 40))
    })
}

fn sequence() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// A barrier id no other test or run uses.
pub fn unique_id(label: &str) -> String {
    format!("rust-client/{label}/{}-{}", run_tag(), sequence())
}

/// A NOTIFY channel no other test or run uses (a lower-case identifier).
pub fn unique_channel() -> String {
    format!("rc_{}_{}", run_tag(), sequence())
}
