//! The report path: `barrier_decr`, one task reporting its result.
//!
//! A report first tries the fast path (`fast_path`), which counts the common report (a success
//! that a pending barrier waits for and that does not complete it) without SQL. Everything else,
//! and every report when the fast path is off or declines, runs here through prepared SQL as the
//! state tables' owner, under the barrier's row lock: failures and their re-arming, the failure
//! limit, quorums, open barriers, and the completion. A child barrier's end reaches its parent
//! through `count` too (`ending`).

use pgrx::prelude::*;

use crate::context::write_barrier_as_owner;
use crate::ending;
use crate::error::{report, BarrierError, Result};
use crate::fast_path;
use crate::jsonb::RawJsonb;
use crate::owner::check_owner;
use crate::state::{self, Completion, Counted, Locked, Status};
use crate::validate;
use crate::version::require_current_schema;

/// What a report did, as `barrier_decr` answers it in `status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReportStatus {
    /// Counted; more reports are to come.
    Pending,
    /// Counted, and this report completed the barrier: the one completer of its round. Every
    /// counted report succeeded.
    Complete,
    /// As `Complete`, with failed reports among those counted.
    CompleteWithFailures,
    /// This slot had reported already (before or after completion); nothing changed.
    Duplicate,
    /// The barrier completed before this report, which changed nothing.
    AlreadyComplete,
    /// The barrier is aborted: before this report, or by it (too many failures, a quorum out of
    /// reach).
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
            ReportStatus::CompleteWithFailures => "complete_with_failures",
            ReportStatus::Duplicate => "duplicate",
            ReportStatus::AlreadyComplete => "already_complete",
            ReportStatus::Aborted => "aborted",
            ReportStatus::Expired => "expired",
            ReportStatus::Unknown => "unknown",
        }
    }
}

/// What a report (or a seal) did: one row of `barrier_decr` / `barrier_seal`.
pub struct Decrement {
    pub status: ReportStatus,
    pub remaining: Option<i32>,
    /// For the completer only.
    pub completion: Option<Completion>,
    /// The report changed the barrier (recorded, or replaced a failure).
    pub counted: bool,
}

impl Decrement {
    pub fn answer(status: ReportStatus, remaining: Option<i32>) -> Self {
        Decrement {
            status,
            remaining,
            completion: None,
            counted: false,
        }
    }

    fn counted(status: ReportStatus, remaining: i32) -> Self {
        Decrement {
            counted: true,
            ..Decrement::answer(status, Some(remaining))
        }
    }
}

/// The row `barrier_decr` and `barrier_seal` return.
pub type AnswerRow = (
    String,
    Option<i32>,
    Option<RawJsonb>,
    Option<RawJsonb>,
    Option<Vec<i32>>,
    Option<RawJsonb>,
    Option<Vec<i32>>,
);

impl Decrement {
    pub fn into_row(self) -> AnswerRow {
        let status = self.status.as_str().to_string();
        match self.completion {
            Some(done) => (
                status,
                self.remaining,
                Some(done.results),
                done.callback,
                Some(done.failed_slots),
                Some(done.errors),
                Some(done.missing_slots),
            ),
            None => (status, self.remaining, None, None, None, None, None),
        }
    }
}

/// One task reports completion, with its `result` and, for slotted barriers, its `slot`; with
/// `failed`, the task failed and `result` is its error (docs/shapes.md).
///
/// Exactly one call per barrier round answers `'complete'` (or `'complete_with_failures'`),
/// with every task's result in slot (or arrival) order, the failures, the slots that did not
/// report, and the stored callback. Other answers: `'pending'`, `'duplicate'` (this slot
/// already reported, also after completion), `'already_complete'`, `'aborted'`, `'expired'`,
/// `'unknown'`.
#[pg_extern(name = "barrier_decr", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out here
fn barrier_decr_v2(
    id: Option<&str>,
    result: default!(Option<RawJsonb>, "NULL"),
    slot: default!(Option<i32>, "NULL"),
    failed: default!(Option<bool>, "false"),
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(remaining, Option<i32>),
        name!(results, Option<RawJsonb>),
        name!(callback, Option<RawJsonb>),
        name!(failed_slots, Option<Vec<i32>>),
        name!(errors, Option<RawJsonb>),
        name!(missing_slots, Option<Vec<i32>>),
    ),
> {
    report("barrier_decr", || {
        let id = validate::id(id)?;
        let slot = validate::slot(slot)?;
        let result = validate::jsonb_size("result", result)?;
        let failed = validate::required("failed", failed)?;
        let decrement = decrement(id, result, slot, failed)?;
        Ok(TableIterator::once(decrement.into_row()))
    })
}

/// The 0.3 signature (without `failed`), under its original C symbol: SQL definitions not yet
/// updated reach this library and get its "run ALTER EXTENSION pg_barrier UPDATE" error rather
/// than a failure to read an argument they do not pass. No SQL is generated for it.
#[pg_extern(sql = false)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out, even here
fn barrier_decr(
    id: Option<&str>,
    result: Option<RawJsonb>,
    slot: Option<i32>,
) -> TableIterator<
    'static,
    (
        name!(status, String),
        name!(remaining, Option<i32>),
        name!(results, Option<RawJsonb>),
        name!(callback, Option<RawJsonb>),
        name!(failed_slots, Option<Vec<i32>>),
        name!(errors, Option<RawJsonb>),
        name!(missing_slots, Option<Vec<i32>>),
    ),
> {
    barrier_decr_v2(id, result, slot, Some(false))
}

fn decrement(
    id: &str,
    result: Option<RawJsonb>,
    slot: Option<i32>,
    failed: bool,
) -> Result<Decrement> {
    require_current_schema()?;
    if !failed {
        if let Some(remaining) = fast_path::report(id, result, slot)? {
            return Ok(Decrement::counted(ReportStatus::Pending, remaining));
        }
    }
    write_barrier_as_owner(id, |client, caller| {
        let weight = validate::result_weight(result);
        // On Citus the one-statement report (a CTE that writes two tables) is planned across
        // every node, through intermediate results and a two-phase commit: the plain lock and
        // count below stay on the barrier's node.
        let barrier = if failed || caller.sharded {
            state::lock(client, id)?
        } else {
            match state::lock_and_count(client, id, result, slot, caller.role, weight)? {
                Some((_, Some(remaining))) => {
                    // The common report, counted by the statement that took the row lock.
                    return Ok(Decrement::counted(ReportStatus::Pending, remaining));
                }
                other => other.map(|(barrier, _)| barrier),
            }
        };
        let Some(barrier) = barrier else {
            return Ok(Decrement::answer(ReportStatus::Unknown, None));
        };
        check_owner(caller, barrier.owner, id)?;
        check_slot(id, &barrier, slot)?;
        match barrier.effective_status() {
            Status::Pending => {}
            Status::Complete => {
                // A retried task whose slot was counted learns just that, before or after the
                // barrier fired.
                let repeat = match slot {
                    Some(slot) => state::slot_failed(client, id, slot)?.is_some(),
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
                    ending::expire(client, id, &barrier, None, caller.memory, 0)?;
                }
                return Ok(Decrement::answer(
                    ReportStatus::Expired,
                    Some(barrier.remaining),
                ));
            }
        }
        let counted = count(
            client,
            id,
            barrier,
            Report {
                result,
                slot,
                failed,
            },
            caller.memory,
            0,
        )?;
        // An oversized result was refused by `count` (the insert rolled back with the error).
        Ok(counted)
    })
}

/// One report into a locked, pending barrier, whose slot the caller checked.
pub struct Report {
    pub result: Option<RawJsonb>,
    pub slot: Option<i32>,
    pub failed: bool,
}

/// Records a report into a locked, pending barrier and decides what follows: a failure over
/// the limit aborts, a quorum out of reach aborts, the last report needed completes (and hands
/// the completion up to a parent), anything else waits. `depth` counts the parents reached so
/// far from the report that started it.
pub fn count(
    client: &mut pgrx::spi::SpiClient<'_>,
    id: &str,
    mut barrier: Locked,
    report: Report,
    memory: pg_sys::MemoryContext,
    depth: u32,
) -> Result<Decrement> {
    if barrier.remaining < 0 {
        return Err(BarrierError::Internal(format!(
            "pending barrier with remaining {}",
            barrier.remaining
        )));
    }
    // The slot, or the next arrival position (unique: arrivals are numbered under the lock).
    let position = report.slot.unwrap_or(barrier.expected - barrier.remaining);
    // (An open barrier may have nothing remaining: every further arrival is one too many.)
    let recorded = (report.slot.is_some() || barrier.remaining > 0)
        && state::record_result(client, id, position, report.result, report.failed)?;
    if recorded {
        barrier.remaining -= 1;
        barrier.failed += i32::from(report.failed);
    } else {
        // A retried task succeeding where it had failed replaces the failure; anything else
        // about a slot that reported changes nothing.
        let replaces = match report.slot {
            Some(slot) => !report.failed && state::slot_failed(client, id, slot)? == Some(true),
            None if barrier.remaining > 0 => {
                return Err(BarrierError::Internal(format!(
                    "arrival position {position} was already taken"
                )))
            }
            None => false,
        };
        if !replaces {
            return Ok(Decrement::answer(
                ReportStatus::Duplicate,
                Some(barrier.remaining),
            ));
        }
        state::rearm(client, id, position, report.result)?;
        barrier.failed -= 1;
    }
    // Refused (and the write above rolled back with the error) if the completion could no
    // longer be built as one jsonb value.
    // A completion that may leave slots out keeps room for their nulls.
    let room = validate::padding(barrier.expected, barrier.need.is_some() || barrier.deliver);
    let result_bytes =
        validate::results_weight(id, barrier.result_bytes.saturating_add(room), report.result)?
            - room;
    barrier.result_bytes = result_bytes;
    let failure = report.failed.then_some(position);
    let ending = decide(client, id, &barrier, failure)?;
    state::count(
        client,
        id,
        &Counted {
            remaining: barrier.remaining,
            slotted: Some(report.slot.is_some()),
            result_bytes,
            failed: barrier.failed,
            complete: ending == Ending::Complete,
        },
    )?;
    barrier.slotted = Some(report.slot.is_some());
    conclude(client, id, barrier, ending, memory, depth)
}

/// How a round goes on after a report or a seal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    Wait,
    Complete,
    Abort(String),
}

/// Decides on the counters as they now stand; `failure` is the position of a failure this
/// report recorded.
pub fn decide(
    client: &pgrx::spi::SpiClient<'_>,
    id: &str,
    barrier: &Locked,
    failure: Option<i32>,
) -> Result<Ending> {
    if let Some(position) = failure {
        if let Some(limit) = state::shape(client, id)?.max_failures {
            if barrier.failed > limit {
                return Ok(Ending::Abort(format!(
                    "slot {position} failed: more than {limit} failures"
                )));
            }
        }
    }
    if !barrier.sealed {
        return Ok(Ending::Wait);
    }
    Ok(match barrier.need {
        Some(need) if barrier.successes() + barrier.remaining < need => {
            Ending::Abort(format!("quorum of {need} can no longer be reached"))
        }
        Some(need) if barrier.successes() >= need => Ending::Complete,
        None if barrier.remaining == 0 => Ending::Complete,
        _ => Ending::Wait,
    })
}

/// Carries out what `decide` chose, on a barrier whose counters are stored.
pub fn conclude(
    client: &mut pgrx::spi::SpiClient<'_>,
    id: &str,
    barrier: Locked,
    ending: Ending,
    memory: pg_sys::MemoryContext,
    depth: u32,
) -> Result<Decrement> {
    let remaining = barrier.remaining;
    match ending {
        Ending::Wait => Ok(Decrement::counted(ReportStatus::Pending, remaining)),
        Ending::Abort(reason) => {
            ending::abort(client, id, &barrier, Some(&reason), memory, depth)?;
            Ok(Decrement::counted(ReportStatus::Aborted, remaining))
        }
        Ending::Complete => {
            let completion = ending::complete(client, id, &barrier, memory, depth)?;
            let status = if barrier.failed > 0 {
                ReportStatus::CompleteWithFailures
            } else {
                ReportStatus::Complete
            };
            Ok(Decrement {
                completion: Some(completion),
                ..Decrement::counted(status, remaining)
            })
        }
    }
}

/// A barrier is slotted or not from its first report on, and slots run from 0 to expected - 1;
/// a report that breaks either is a bad argument whatever state the barrier is in.
pub fn check_slot(id: &str, barrier: &Locked, slot: Option<i32>) -> Result<()> {
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
