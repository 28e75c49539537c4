//! A barrier's life as its coordinator drives it: registering it (`barrier_enqueue`), growing
//! its fan-out (`barrier_add`) and giving up on it (`barrier_abort`).

use pgrx::datum::Interval;
use pgrx::prelude::*;
use pgrx::spi::SpiClient;

use crate::context::write_as_owner;
use crate::error::{report, BarrierError, Result};
use crate::jsonb::RawJsonb;
use crate::owner::check_owner;
use crate::state::{self, Locked, Spec, Status};
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
pub fn expire(client: &mut SpiClient<'_>, id: &str, barrier: &Locked) -> Result<()> {
    state::end_round(client, id, barrier.round, Status::Expired, None)
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
    write_as_owner(|client, caller| {
        let Some(barrier) = state::lock(client, id)? else {
            return Ok(AbortStatus::Unknown);
        };
        check_owner(caller, barrier.owner, id)?;
        Ok(match barrier.effective_status() {
            Status::Complete => AbortStatus::AlreadyComplete,
            Status::Aborted => AbortStatus::AlreadyAborted,
            Status::Expired => {
                if barrier.status == Status::Pending {
                    expire(client, id, &barrier)?;
                }
                AbortStatus::Expired
            }
            Status::Pending => {
                state::end_round(client, id, barrier.round, Status::Aborted, reason)?;
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
        write_as_owner(|client, caller| {
            let Some(barrier) = state::lock(client, id)? else {
                return Err(BarrierError::Unknown { id: id.to_string() });
            };
            check_owner(caller, barrier.owner, id)?;
            let status = barrier.effective_status();
            if status != Status::Pending {
                return Err(BarrierError::WrongState {
                    id: id.to_string(),
                    status: status.as_str(),
                });
            }
            let expected = barrier.expected.checked_add(extra).ok_or_else(|| {
                BarrierError::invalid(
                    "extra",
                    format!("{extra} more tasks would exceed {} in all", i32::MAX),
                )
            })?;
            state::add(client, id, extra)?;
            Ok(expected)
        })
    })
}
