//! Client-side tests: separate connections to a real server, for what one backend cannot show
//! (races between sessions, NOTIFY at commit, rollbacks, roles and installs).
//!
//! One binary, run once per target by scripts/test.sh, which names the target in
//! `PG_BARRIER_EDITION`:
//!
//! - `rust` (the default): the Rust build, with its fast path; the only run that includes
//!   `library`, the tests of what only the library has (its fast path, its background sweeper);
//! - `rust-without-fast-path`: the Rust build with `pg_barrier.fast_path = off`, every report
//!   through its SQL path;
//! - `sql`: the SQL edition, on a server that loads no pg_barrier library.
//!
//! Tests whose assertions must differ between the editions ask `support::edition()`; every
//! such difference is listed in docs/managed.md ("What differs").

use std::sync::OnceLock;

/// The target of this run, from `PG_BARRIER_EDITION`.
fn target() -> support::Target {
    static TARGET: OnceLock<support::Target> = OnceLock::new();
    *TARGET.get_or_init(|| {
        let name = std::env::var("PG_BARRIER_EDITION").unwrap_or_else(|_| "rust".into());
        let target = match name.as_str() {
            "rust" => support::Target::RUST,
            "rust-without-fast-path" => support::Target::RUST_WITHOUT_FAST_PATH,
            "sql" => support::Target::SQL,
            other => {
                panic!("PG_BARRIER_EDITION={other}: expected rust, rust-without-fast-path or sql")
            }
        };
        eprintln!("client-side tests against: {name}");
        target
    })
}

mod editions;
mod faults;
mod inputs;
mod isolation;
mod library;
mod lifecycle;
mod model;
mod notify;
mod operations;
mod races;
mod roles;
mod shapes;
mod support;
