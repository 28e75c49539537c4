//! The client-side tests of tests/integration, run against the SQL edition of pg_barrier: the
//! same modules, compiled a second time with `EDITION` set to the SQL edition, against a server
//! that loads no pg_barrier library.
//!
//! Left out: `hot_path` (the library's fast path for reports) and `sweeper` (its background
//! worker). Tests that must differ between the editions ask `support::edition()`.

/// The edition these tests run against.
const EDITION: support::Edition = support::Edition::Sql;

#[path = "../integration/editions.rs"]
mod editions;
#[path = "../integration/faults.rs"]
mod faults;
#[path = "../integration/inputs.rs"]
mod inputs;
#[path = "../integration/isolation.rs"]
mod isolation;
#[path = "../integration/lifecycle.rs"]
mod lifecycle;
#[path = "../integration/model.rs"]
mod model;
#[path = "../integration/notify.rs"]
mod notify;
#[path = "../integration/operations.rs"]
mod operations;
#[path = "../integration/races.rs"]
mod races;
#[path = "../integration/roles.rs"]
mod roles;
#[path = "../integration/support.rs"]
mod support;
