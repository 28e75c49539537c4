//! pg_barrier: fan-in barriers inside PostgreSQL.
//!
//! A job runner registers a barrier for N tasks; each task reports once; the database takes the
//! row-locked decrement and decides, inside the reporting transaction, which single call completes
//! the barrier and hands it every result. This file only wires the modules together.
#![deny(unsafe_op_in_unsafe_fn)]

use pgrx::prelude::*;

// The SQL API, one module per concern.
mod completions;
mod housekeeping;
mod inspect;
mod lifecycle;
mod report;

// What the API is built on.
mod context;
mod ending;
mod error;
mod fast_path;
mod gucs;
mod jsonb;
mod nesting;
mod owner;
mod state;
mod sweeper;
mod validate;
mod version;

::pgrx::pg_module_magic!(name, version);

// The state tables, hand-written; every generated function comes after them.
extension_sql_file!("schema.sql", name = "state_tables", bootstrap);
// Citus: barrier_distribute and its helpers, shared with the SQL edition.
extension_sql_file!("distribute.sql", name = "citus", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    gucs::init();
    version::init();
    fast_path::init();
    sweeper::register();
}

#[cfg(any(test, feature = "pg_test"))]
mod backend_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
