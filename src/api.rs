//! The SQL surface. Each function validates its arguments, then does its work in the caller's
//! transaction as the state tables' owner (see `security`), under the barrier's row lock.
//!
//! The readers are PARALLEL RESTRICTED rather than SAFE: they switch roles and run SPI, which we
//! keep in the leader.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::error::{report, BarrierError, Result};
use crate::hot;
use crate::jsonb::RawJsonb;
use crate::security::{self, check_owner, read_as_owner, write_as_owner};
use crate::state::{self, Completion, Locked, Spec, Status};
use crate::validate;

/// Registers barrier `id`, which completes after `expected` task reports.
///
/// Returns `'pending'`, or `'complete'` for `expected = 0` (an empty fan-in completes, and
/// notifies, at once). Re-enqueueing a live barrier with the same arguments changes nothing;
/// with other arguments it is an error unless `replace`, which starts it over. A finished
/// barrier (complete, aborted or expired) is replaced by a new round. `stall_timeout` (default
/// `pg_barrier.stall_timeout`, off) lets `barrier_sweep` expire a barrier that gets no report for
/// that long.
#[pg_extern(name = "barrier_enqueue", volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn barrier_enqueue_v2(
    id: Option<&str>,
    expected: Option<i32>,
    callback: default!(Option<RawJsonb>, "NULL"),
    ttl: default!(Option<Interval>, "NULL"),
    channel: default!(Option<&str>, "NULL"),
    replace: default!(Option<bool>, "false"),
    stall_timeout: default!(Option<Interval>, "NULL"),
) -> String {
    report("barrier_enqueue", || {
        let id = validate::id(id)?;
        let channel = validate::channel(channel)?;
        let spec = Spec {
            expected: validate::expected(expected)?,
            callback: validate::jsonb_size("callback", callback)?,
            channel: &channel,
            ttl: validate::ttl(ttl)?,
            stall_timeout: validate::stall_timeout(stall_timeout)?,
        };
        let replace = validate::required("replace", replace)?;
        enqueue(id, &spec, replace).map(|status| status.as_str().to_string())
    })
}

/// The 0.1.0 signature (without `stall_timeout`), under its original C symbol, so that SQL
/// definitions not yet updated reach this library and get its clear "run ALTER EXTENSION
/// pg_barrier UPDATE" error rather than a missing-symbol one. No SQL is generated for it.
#[pg_extern(sql = false)]
fn barrier_enqueue(
    id: Option<&str>,
    expected: Option<i32>,
    callback: Option<RawJsonb>,
    ttl: Option<Interval>,
    channel: Option<&str>,
    replace: Option<bool>,
) -> String {
    barrier_enqueue_v2(id, expected, callback, ttl, channel, replace, None)
}

fn enqueue(id: &str, spec: &Spec<'_>, replace: bool) -> Result<Status> {
    write_as_owner(|client, caller| {
        // The row may vanish between a failed insert and the lock (a sweep deleting a tombstone),
        // so try again once; a second miss cannot happen inside one transaction's own snapshot.
        for _ in 0..2 {
            if state::insert_barrier(client, id, caller.role, spec)? {
                return begin_round(client, id, spec, 1);
            }
            let Some(barrier) = state::lock(client, id)? else {
                continue;
            };
            check_owner(caller, barrier.owner, id)?;
            return re_enqueue(client, id, spec, replace, &barrier);
        }
        Err(BarrierError::Internal(
            "barrier row vanished twice during enqueue".into(),
        ))
    })
}

/// The status of a round just registered; an empty fan-in is complete at once, and says so.
fn begin_round(
    client: &mut SpiClient<'_>,
    id: &str,
    spec: &Spec<'_>,
    round: i64,
) -> Result<Status> {
    if spec.expected > 0 {
        return Ok(Status::Pending);
    }
    state::notify(client, spec.channel, id, Status::Complete, round)?;
    Ok(Status::Complete)
}

fn re_enqueue(
    client: &mut SpiClient<'_>,
    id: &str,
    spec: &Spec<'_>,
    replace: bool,
    barrier: &Locked,
) -> Result<Status> {
    match barrier.effective_status() {
        Status::Pending if !replace => {
            return match state::compare_spec(client, id, spec)? {
                Ok(()) => Ok(Status::Pending),
                Err(detail) => Err(BarrierError::Conflict {
                    id: id.to_string(),
                    detail,
                }),
            };
        }
        Status::Expired if barrier.status == Status::Pending => expire(client, id, barrier)?,
        _ => {}
    }
    let round = state::start_new_round(client, id, spec)?;
    begin_round(client, id, spec, round)
}

/// Stores the expiry that a caller just observed, and tells the listeners.
fn expire(client: &mut SpiClient<'_>, id: &str, barrier: &Locked) -> Result<()> {
    state::end_round(client, id, barrier.round, Status::Expired, None)
}

/// One row of `barrier_decr`: what this report did.
struct Decrement {
    status: &'static str,
    remaining: Option<i32>,
    completion: Option<Completion>,
}

impl Decrement {
    fn answer(status: &'static str, remaining: Option<i32>) -> Self {
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
            decrement.status.to_string(),
            decrement.remaining,
            results,
            callback,
        )))
    })
}

fn decrement(id: &str, result: Option<RawJsonb>, slot: Option<i32>) -> Result<Decrement> {
    security::require_current_schema()?;
    if let Some(answer) = hot::decrement(id, result, slot)? {
        return Ok(Decrement::answer(answer.status, Some(answer.remaining)));
    }
    write_as_owner(|client, caller| {
        let Some(barrier) = state::lock(client, id)? else {
            return Ok(Decrement::answer("unknown", None));
        };
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
                    "duplicate"
                } else {
                    "already_complete"
                };
                return Ok(Decrement::answer(status, Some(0)));
            }
            Status::Aborted => return Ok(Decrement::answer("aborted", Some(barrier.remaining))),
            Status::Expired => {
                if barrier.status == Status::Pending {
                    expire(client, id, &barrier)?;
                }
                return Ok(Decrement::answer("expired", Some(barrier.remaining)));
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
            return Ok(Decrement::answer("duplicate", Some(barrier.remaining)));
        }
        // Refused (and the insert above rolled back with the error) if the completion could no
        // longer be built as one jsonb value.
        let result_bytes = validate::results_weight(id, barrier.result_bytes, result)?;
        let remaining = barrier.remaining - 1;
        state::count(client, id, remaining, slot.is_some(), result_bytes)?;
        if remaining > 0 {
            return Ok(Decrement::answer("pending", Some(remaining)));
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
            status: "complete",
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

/// Aborts a live barrier: frees its results, keeps a tombstone until its expiry, notifies.
///
/// Returns `'aborted'`, `'already_aborted'`, `'already_complete'`, `'expired'` or `'unknown'`.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn barrier_abort(id: Option<&str>, reason: default!(Option<&str>, "NULL")) -> String {
    report("barrier_abort", || {
        let id = validate::id(id)?;
        let reason = validate::reason(reason)?;
        abort(id, reason).map(str::to_string)
    })
}

fn abort(id: &str, reason: Option<&str>) -> Result<&'static str> {
    write_as_owner(|client, caller| {
        let Some(barrier) = state::lock(client, id)? else {
            return Ok("unknown");
        };
        check_owner(caller, barrier.owner, id)?;
        Ok(match barrier.effective_status() {
            Status::Complete => "already_complete",
            Status::Aborted => "already_aborted",
            Status::Expired => {
                if barrier.status == Status::Pending {
                    expire(client, id, &barrier)?;
                }
                "expired"
            }
            Status::Pending => {
                state::end_round(client, id, barrier.round, Status::Aborted, reason)?;
                "aborted"
            }
        })
    })
}

/// The barrier as stored: one row, or none if there is no such barrier. This, not NOTIFY, is
/// the truth about a barrier.
#[pg_extern(stable, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out here
fn barrier_status(
    id: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(status, String),
        name!(expected, i32),
        name!(remaining, i32),
        name!(created_at, TimestampWithTimeZone),
        name!(expires_at, TimestampWithTimeZone),
        name!(finished_at, Option<TimestampWithTimeZone>),
        name!(channel, String),
        name!(callback, Option<RawJsonb>),
        name!(reason, Option<String>),
        name!(round, i64),
    ),
> {
    report("barrier_status", || {
        let id = validate::id(id)?;
        let row = read_as_owner(|client, caller| {
            let row = state::status(client, id, caller.memory)?;
            if let Some(row) = &row {
                check_owner(caller, row.owner, id)?;
            }
            Ok(row)
        })?;
        let Some(row) = row else {
            return Ok(TableIterator::new(Vec::new()));
        };
        Ok(TableIterator::once((
            row.id,
            row.status,
            row.expected,
            row.remaining,
            row.created_at,
            row.expires_at,
            row.finished_at,
            row.channel,
            row.callback,
            row.reason,
            row.round,
        )))
    })
}

/// The results recorded so far, as a jsonb array in slot (or arrival) order; NULL for an
/// unknown barrier and for an aborted or expired one, whose results were freed.
#[pg_extern(stable, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn barrier_results(id: Option<&str>) -> Option<RawJsonb> {
    report("barrier_results", || {
        let id = validate::id(id)?;
        read_as_owner(|client, caller| {
            let Some((owner, results)) = state::results(client, id, caller.memory)? else {
                return Ok(None);
            };
            check_owner(caller, owner, id)?;
            Ok(results)
        })
    })
}
