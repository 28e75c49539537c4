//! Keeping barriers bounded in time and space: sweeping, handing completions to consumers that
//! did not report the last task, growing a fan-out, and counting what is held.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::error::{report, BarrierError};
use crate::gucs;
use crate::jsonb::RawJsonb;
use crate::security::{check_owner, read_as_owner, write_as_owner};
use crate::state::{self, Status};
use crate::validate;

/// Expires pending barriers past their ttl or their no-progress window (notifying `expired`),
/// then deletes finished barriers older than `pg_barrier.retention`; at most `max_rows` of each.
///
/// Barriers another transaction holds are skipped, not waited for: safe beside decrements and
/// beside other sweeps, and never deadlocks. Call it until both counts are below `max_rows` to
/// catch up.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn barrier_sweep(
    max_rows: default!(Option<i32>, 10000),
) -> TableIterator<'static, (name!(expired, i64), name!(deleted, i64))> {
    report("barrier_sweep", || {
        let max_rows = validate::positive_count("max_rows", max_rows)?;
        let swept = sweep(max_rows)?;
        Ok(TableIterator::once((
            swept.expired as i64,
            swept.deleted as i64,
        )))
    })
}

/// What one sweep did.
pub struct Swept {
    pub expired: usize,
    pub deleted: usize,
}

/// One bounded sweep in the current transaction (also run by the background sweeper).
pub fn sweep(max_rows: i32) -> Result<Swept, BarrierError> {
    let retention = Interval::from_seconds(f64::from(gucs::RETENTION.get()));
    write_as_owner(|client, _| {
        let due = state::lock_due(client, max_rows)?;
        for barrier in &due {
            let reason = (!barrier.by_ttl).then_some("no report within stall_timeout");
            state::end_round(client, &barrier.id, barrier.round, Status::Expired, reason)?;
        }
        let deleted = state::delete_finished(client, max_rows, retention)?;
        Ok(Swept {
            expired: due.len(),
            deleted,
        })
    })
}

/// The results and callback of a completed barrier, handed out once across all sessions: the
/// first committed take gets them and frees them; any other gets no row.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
fn barrier_take(
    id: Option<&str>,
) -> TableIterator<'static, (name!(results, RawJsonb), name!(callback, Option<RawJsonb>))> {
    report("barrier_take", || {
        let id = validate::id(id)?;
        let taken = write_as_owner(|client, caller| {
            let Some(barrier) = state::lock(client, id)? else {
                return Ok(None);
            };
            check_owner(caller, barrier.owner, id)?;
            if barrier.status != Status::Complete || barrier.taken {
                return Ok(None);
            }
            let (completion, _) = state::take(client, id, caller.memory)?;
            Ok(Some((completion.results, completion.callback)))
        })?;
        Ok(TableIterator::new(taken))
    })
}

/// Claims up to `max_rows` completed, untaken barriers (on `channel`, or any), oldest first, and
/// hands each out as `barrier_take` would. Concurrent consumers never get the same barrier: rows
/// one holds are skipped by the others. Call it in the transaction that processes them; if that
/// rolls back, they are listed again.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out here
fn barrier_completions(
    channel: default!(Option<&str>, "NULL"),
    max_rows: default!(Option<i32>, 100),
) -> TableIterator<
    'static,
    (
        name!(id, String),
        name!(finished_at, TimestampWithTimeZone),
        name!(results, RawJsonb),
        name!(callback, Option<RawJsonb>),
    ),
> {
    report("barrier_completions", || {
        let max_rows = validate::positive_count("max_rows", max_rows)?;
        let rows = write_as_owner(|client, caller| {
            let claimed = state::claim_completions(client, max_rows, channel, caller.role)?;
            claimed
                .into_iter()
                .map(|id| {
                    let (completion, finished_at) = state::take(client, &id, caller.memory)?;
                    Ok((id, finished_at, completion.results, completion.callback))
                })
                .collect::<Result<Vec<_>, BarrierError>>()
        })?;
        Ok(TableIterator::new(rows))
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

/// Counts over the barriers the calling role may act for, for dashboards and alerts.
#[pg_extern(stable, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out here
fn barrier_stats() -> TableIterator<
    'static,
    (
        name!(pending, i64),
        name!(complete, i64),
        name!(aborted, i64),
        name!(expired, i64),
        name!(untaken, i64),
        name!(oldest_pending_age, Option<Interval>),
        name!(result_rows, i64),
        name!(result_bytes, i64),
    ),
> {
    report("barrier_stats", || {
        let stats = read_as_owner(|client, caller| state::stats(client, caller.role))?;
        Ok(TableIterator::once((
            stats.pending,
            stats.complete,
            stats.aborted,
            stats.expired,
            stats.untaken,
            stats.oldest_pending_age,
            stats.result_rows,
            stats.result_bytes,
        )))
    })
}
