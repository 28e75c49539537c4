#![doc = include_str!("../README.md")]

mod calls;
mod connection;
mod error;
mod types;
mod waiter;

pub use calls::{
    abort, add, completions, decr, decr_failed, enqueue, pending_slots, results, seal, stats,
    status, sweep, take, EnqueueOptions, Parent, DEFAULT_COMPLETIONS_MAX_ROWS,
    DEFAULT_SWEEP_MAX_ROWS,
};
pub use connection::{connect, Notifications};
pub use error::Error;
pub use types::{
    AbortStatus, BarrierState, BarrierStatus, Completion, CompletionStatus, EnqueueStatus,
    Notification, OnExpiry, Report, ReportStatus, Stats, Sweep, Taken,
};
pub use waiter::{Claimed, Waiter, WaiterOptions};
