//! Client-side tests: separate connections to a real server, for what one backend cannot show
//! (races between sessions, NOTIFY at commit, rollbacks, roles and installs).
//!
//! This binary tests the Rust build. tests/integration_sql runs the same modules against the
//! SQL edition, without `hot_path` and `sweeper`, which test what only the library has.

/// The edition these tests run against.
const EDITION: support::Edition = support::Edition::Rust;

mod editions;
mod faults;
mod hot_path;
mod inputs;
mod isolation;
mod lifecycle;
mod model;
mod notify;
mod operations;
mod races;
mod roles;
mod support;
mod sweeper;
