//! A barrier's life as its coordinator drives it: registering it (`barrier_enqueue`), growing
//! its fan-out (`barrier_add`), sealing an open one (`barrier_seal`) and giving up on it
//! (`barrier_abort`).

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::context::write_barrier_as_owner;
use crate::ending;
use crate::error::{report, BarrierError, Result};
use crate::jsonb::RawJsonb;
use crate::nesting;
use crate::owner::check_owner;
use crate::report::{self as reports, Decrement};
use crate::state::{self, Counted, Locked, Spec, Status};
use crate::validate;

/// What `barrier_abort` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AbortStatus {
    Aborted,
    AlreadyAborted,
    AlreadyComplete,
    Expired,
    Unknown,
}

impl AbortStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            AbortStatus::Aborted => "aborted",
            AbortStatus::AlreadyAborted => "already_aborted",
            AbortStatus::AlreadyComplete => "already_complete",
            AbortStatus::Expired => "expired",
            AbortStatus::Unknown => "unknown",
        }
    }
}

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
#[allow(clippy::too_many_arguments)] // one per SQL argument
fn barrier_enqueue_v3(
    id: Option<&str>,
    expected: Option<i32>,
    callback: default!(Option<RawJsonb>, "NULL"),
    ttl: default!(Option<Interval>, "NULL"),
    channel: default!(Option<&str>, "NULL"),
    replace: default!(Option<bool>, "false"),
    stall_timeout: default!(Option<Interval>, "NULL"),
    max_failures: default!(Option<i32>, "NULL"),
    need: default!(Option<i32>, "NULL"),
    sealed: default!(Option<bool>, "true"),
    on_expiry: default!(Option<&str>, "'discard'"),
    parent: default!(Option<&str>, "NULL"),
    parent_slot: default!(Option<i32>, "NULL"),
) -> String {
    report("barrier_enqueue", || {
        let id = validate::id(id)?;
        let channel = validate::channel(channel)?;
        let expected = validate::expected(expected)?;
        let callback = validate::jsonb_size("callback", callback)?;
        let ttl = validate::ttl(ttl)?;
        let stall_timeout = validate::stall_timeout(stall_timeout)?;
        let replace = validate::required("replace", replace)?;
        let shape = validate::shape(
            expected,
            max_failures,
            need,
            sealed,
            on_expiry,
            parent,
            parent_slot,
        )?;
        let spec = Spec {
            expected,
            callback,
            channel: &channel,
            ttl,
            stall_timeout,
            max_failures: shape.max_failures,
            need: shape.need,
            sealed: shape.sealed,
            deliver: shape.deliver,
            parent: shape.parent,
        };
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

/// The 0.2 and 0.3 signature (without the shape arguments), under its original C symbol, for
/// the same reason as the 0.1.0 one above. No SQL is generated for it.
#[pg_extern(sql = false)]
fn barrier_enqueue_v2(
    id: Option<&str>,
    expected: Option<i32>,
    callback: Option<RawJsonb>,
    ttl: Option<Interval>,
    channel: Option<&str>,
    replace: Option<bool>,
    stall_timeout: Option<Interval>,
) -> String {
    barrier_enqueue_v3(
        id,
        expected,
        callback,
        ttl,
        channel,
        replace,
        stall_timeout,
        None,
        None,
        Some(true),
        Some("discard"),
        None,
        None,
    )
}

fn enqueue(id: &str, spec: &Spec<'_>, replace: bool) -> Result<Status> {
    write_barrier_as_owner(id, |client, caller| {
        // The row may vanish between a failed insert and the lock (a sweep deleting a tombstone),
        // so try again once; a second miss cannot happen inside one transaction's own snapshot.
        for _ in 0..2 {
            if state::insert_barrier(client, id, caller.role, spec)? {
                // The parent is checked before the spec claims its slot.
                if let Some((parent, slot)) = spec.parent {
                    nesting::check_parent(client, id, caller.role, parent, slot, None)?;
                }
                state::write_spec(client, id, spec)?;
                return begin_round(client, id, spec, caller.memory);
            }
            let Some(barrier) = state::lock(client, id)? else {
                continue;
            };
            check_owner(caller, barrier.owner, id)?;
            return re_enqueue(client, id, spec, replace, &barrier, caller.memory);
        }
        Err(BarrierError::Internal(
            "barrier row vanished twice during enqueue".into(),
        ))
    })
}

/// The status of a round just registered; an empty, sealed fan-in is complete at once, and says
/// so (to a parent too).
fn begin_round(
    client: &mut SpiClient<'_>,
    id: &str,
    spec: &Spec<'_>,
    memory: pg_sys::MemoryContext,
) -> Result<Status> {
    if !spec.complete_at_once() {
        return Ok(Status::Pending);
    }
    let barrier = state::lock(client, id)?
        .ok_or_else(|| BarrierError::Internal("a barrier just registered vanished".into()))?;
    ending::complete(client, id, &barrier, memory, 0)?;
    Ok(Status::Complete)
}

fn re_enqueue(
    client: &mut SpiClient<'_>,
    id: &str,
    spec: &Spec<'_>,
    replace: bool,
    barrier: &Locked,
    memory: pg_sys::MemoryContext,
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
        Status::Expired if barrier.status == Status::Pending => {
            ending::expire(client, id, barrier, None, memory, 0)?
        }
        _ => {}
    }
    if let Some((parent, slot)) = spec.parent {
        let claim = state::shape(client, id)?.parent;
        nesting::check_parent(client, id, barrier.owner, parent, slot, claim)?;
    }
    state::start_new_round(client, id, spec)?;
    begin_round(client, id, spec, memory)
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
        abort(id, reason).map(|status| status.as_str().to_string())
    })
}

fn abort(id: &str, reason: Option<&str>) -> Result<AbortStatus> {
    write_barrier_as_owner(id, |client, caller| {
        let Some(barrier) = state::lock(client, id)? else {
            return Ok(AbortStatus::Unknown);
        };
        check_owner(caller, barrier.owner, id)?;
        Ok(match barrier.effective_status() {
            Status::Complete => AbortStatus::AlreadyComplete,
            Status::Aborted => AbortStatus::AlreadyAborted,
            Status::Expired => {
                if barrier.status == Status::Pending {
                    ending::expire(client, id, &barrier, None, caller.memory, 0)?;
                }
                AbortStatus::Expired
            }
            Status::Pending => {
                ending::abort(client, id, &barrier, reason, caller.memory, 0)?;
                AbortStatus::Aborted
            }
        })
    })
}

/// Adds `extra` tasks to a pending barrier (slots `expected` .. `expected + extra - 1` for a
/// slotted one) and returns the new `expected`. The barrier then completes only when every task,
/// old and new, has reported.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn barrier_add(id: Option<&str>, extra: Option<i32>) -> i32 {
    report("barrier_add", || {
        let id = validate::id(id)?;
        let extra = validate::positive_count("extra", extra)?;
        write_barrier_as_owner(id, |client, caller| {
            let Some(barrier) = state::lock(client, id)? else {
                return Err(BarrierError::Unknown { id: id.to_string() });
            };
            check_owner(caller, barrier.owner, id)?;
            let status = barrier.effective_status();
            if status != Status::Pending {
                return Err(BarrierError::WrongState {
                    id: id.to_string(),
                    status: status.as_str(),
                    detail: "Only a pending barrier can take more tasks.",
                });
            }
            let expected = barrier.expected.checked_add(extra).ok_or_else(|| {
                BarrierError::invalid(
                    "extra",
                    format!("{extra} more tasks would exceed {} in all", i32::MAX),
                )
            })?;
            validate::padded_slots("extra", expected, barrier.need.is_some() || barrier.deliver)?;
            state::add(client, id, extra)?;
            Ok(expected)
        })
    })
}

/// Seals an open barrier: from now on it completes when its reports are in (docs/shapes.md). If
/// they are, it completes here, and this call answers as the completing `barrier_decr` would.
/// Sealing a sealed, pending barrier changes nothing.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out here
fn barrier_seal(
    id: Option<&str>,
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
    report("barrier_seal", || {
        let id = validate::id(id)?;
        let sealed = write_barrier_as_owner(id, |client, caller| seal(client, id, caller))?;
        Ok(TableIterator::once(sealed.into_row()))
    })
}

fn seal(client: &mut SpiClient<'_>, id: &str, caller: crate::context::Caller) -> Result<Decrement> {
    let Some(mut barrier) = state::lock(client, id)? else {
        return Err(BarrierError::Unknown { id: id.to_string() });
    };
    check_owner(caller, barrier.owner, id)?;
    let status = barrier.effective_status();
    if status != Status::Pending {
        return Err(BarrierError::WrongState {
            id: id.to_string(),
            status: state::completion_status(status, barrier.failed),
            detail: "Only a pending barrier can be sealed.",
        });
    }
    if !barrier.sealed {
        state::seal(client, id)?;
        barrier.sealed = true;
    }
    let ending = reports::decide(client, id, &barrier, None)?;
    if ending == reports::Ending::Complete {
        let counted = Counted {
            remaining: barrier.remaining,
            slotted: barrier.slotted,
            result_bytes: barrier.result_bytes,
            failed: barrier.failed,
            complete: true,
        };
        state::count(client, id, &counted)?;
    }
    reports::conclude(client, id, barrier, ending, caller.memory, 0)
}
