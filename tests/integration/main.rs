//! Client-side tests: separate connections to a real server, for what one backend cannot show
//! (races between sessions, NOTIFY at commit, rollbacks, roles and installs).

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
