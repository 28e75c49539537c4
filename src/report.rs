//! The report path: `barrier_decr`, one task reporting its result.
//!
//! A report first tries the fast path (`fast_path`), which counts the common report (a pending
//! barrier that it does not complete) without SQL. Everything else, and every report when the
//! fast path is off or declines, runs here through prepared SQL as the state tables' owner,
//! under the barrier's row lock.

use pgrx::prelude::*;

use crate::context::write_as_owner;
use crate::error::{report, BarrierError, Result};
use crate::fast_path;
use crate::jsonb::RawJsonb;
use crate::lifecycle::expire;
use crate::owner::check_owner;
use crate::state::{self, Completion, Locked, Status};
use crate::validate;
use crate::version::require_current_schema;

/// What a report did, as `barrier_decr` answers it in `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportStatus {
    /// Counted; more reports are to come.
    Pending,
    /// Counted, and this report completed the barrier: the one completer of its round.
    Complete,
    /// This slot had reported already (before or after completion); nothing changed.
    Duplicate,
    /// The barrier completed before this report, which changed nothing.
    AlreadyComplete,
    Aborted,
    Expired,
    /// No barrier has this id.
    Unknown,
}

impl ReportStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportStatus::Pending => "pending",
            ReportStatus::Complete => "complete",
            ReportStatus::Duplicate => "duplicate",
            ReportStatus::AlreadyComplete => "already_complete",
            ReportStatus::Aborted => "aborted",
            ReportStatus::Expired => "expired",
            ReportStatus::Unknown => "unknown",
        }
    }
}

/// One row of `barrier_decr`: what this report did.
struct Decrement {
    status: ReportStatus,
    remaining: Option<i32>,
    completion: Option<Completion>,
}

impl Decrement {
    fn answer(status: ReportStatus, remaining: Option<i32>) -> Self {
        Decrement {
            status,
            remaining,
            completion: None,
        }
    }
}

/// One task reports completion, with its `result` and, for slotted barriers, its `slot`.
///
/// Exactly one call per barrier round answers `'complete'`, with every task's result in slot
/// (or arrival) order and the stored callback. Other answers: `'pending'`, `'duplicate'` (this
/// slot already reported, also after completion), `'already_complete'`, `'aborted'`, `'expired'`, `'unknown'`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out here
fn barrier_decr(
    id: Option<&str>,
    result: default!(Option<RawJsonb>, "NULL"),
    slot: default!(Option<i32>, "NULL"),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(remaining, Option<i32>),
        name!(results, Option<RawJsonb>),
        name!(callback, Option<RawJsonb>),
    ),
> {
    report("barrier_decr", || {
        let id = validate::id(id)?;
        let slot = validate::slot(slot)?;
        let result = validate::jsonb_size("result", result)?;
        let decrement = decrement(id, result, slot)?;
        let (results, callback) = match decrement.completion {
            Some(completion) => (Some(completion.results), completion.callback),
            None => (None, None),
        };
        Ok(TableIterator::once((
            decrement.status.as_str().to_string(),
            decrement.remaining,
            results,
            callback,
        )))
    })
}

fn decrement(id: &str, result: Option<RawJsonb>, slot: Option<i32>) -> Result<Decrement> {
    require_current_schema()?;
    if let Some(remaining) = fast_path::report(id, result, slot)? {
        return Ok(Decrement::answer(ReportStatus::Pending, Some(remaining)));
    }
    write_as_owner(|client, caller| {
        let weight = validate::result_weight(result);
        let Some((barrier, counted)) =
            state::lock_and_count(client, id, result, slot, caller.role, weight)?
        else {
            return Ok(Decrement::answer(ReportStatus::Unknown, None));
        };
        if let Some(remaining) = counted {
            // The common report, counted by the statement that took the row lock.
            return Ok(Decrement::answer(ReportStatus::Pending, Some(remaining)));
        }
        check_owner(caller, barrier.owner, id)?;
        check_slot(id, &barrier, slot)?;
        match barrier.effective_status() {
            Status::Pending => {}
            Status::Complete => {
                // A retried task whose slot was counted learns just that, before or after the
                // barrier fired.
                let repeat = match slot {
                    Some(slot) => state::has_result(client, id, slot)?,
                    None => false,
                };
                let status = if repeat {
                    ReportStatus::Duplicate
                } else {
                    ReportStatus::AlreadyComplete
                };
                return Ok(Decrement::answer(status, Some(0)));
            }
            Status::Aborted => {
                return Ok(Decrement::answer(
                    ReportStatus::Aborted,
                    Some(barrier.remaining),
                ))
            }
            Status::Expired => {
                if barrier.status == Status::Pending {
                    expire(client, id, &barrier)?;
                }
                return Ok(Decrement::answer(
                    ReportStatus::Expired,
                    Some(barrier.remaining),
                ));
            }
        }
        if barrier.remaining <= 0 {
            return Err(BarrierError::Internal(format!(
                "pending barrier with remaining {}",
                barrier.remaining
            )));
        }
        // The slot, or the next arrival position (unique: arrivals are numbered under the lock).
        let position = slot.unwrap_or(barrier.expected - barrier.remaining);
        if !state::record_result(client, id, position, result)? {
            if slot.is_none() {
                return Err(BarrierError::Internal(format!(
                    "arrival position {position} was already taken"
                )));
            }
            return Ok(Decrement::answer(
                ReportStatus::Duplicate,
                Some(barrier.remaining),
            ));
        }
        // Refused (and the insert above rolled back with the error) if the completion could no
        // longer be built as one jsonb value.
        let result_bytes = validate::results_weight(id, barrier.result_bytes, result)?;
        let remaining = barrier.remaining - 1;
        state::count(client, id, remaining, slot.is_some(), result_bytes)?;
        if remaining > 0 {
            return Ok(Decrement::answer(ReportStatus::Pending, Some(remaining)));
        }
        let completion = state::completion(client, id, caller.memory)?;
        state::notify(
            client,
            &completion.channel,
            id,
            Status::Complete,
            barrier.round,
        )?;
        Ok(Decrement {
            status: ReportStatus::Complete,
            remaining: Some(0),
            completion: Some(completion),
        })
    })
}

/// A barrier is slotted or not from its first report on, and slots run from 0 to expected - 1;
/// a report that breaks either is a bad argument whatever state the barrier is in.
fn check_slot(id: &str, barrier: &Locked, slot: Option<i32>) -> Result<()> {
    match (barrier.slotted, slot) {
        (Some(true), None) => Err(BarrierError::invalid_with_hint(
            "slot",
            format!("barrier \"{id}\" is slotted: every report must name its slot"),
            "One barrier is either slotted or not; pass the task's slot.",
        )),
        (Some(false), Some(_)) => Err(BarrierError::invalid_with_hint(
            "slot",
            format!("barrier \"{id}\" is counted without slots: reports must not name one"),
            "One barrier is either slotted or not; pass slot => NULL.",
        )),
        (_, Some(slot)) => validate::slot_in_range(slot, barrier.expected),
        (_, None) => Ok(()),
    }
}
