//! Where barriers stand, read without changing anything: `barrier_status`, `barrier_results`
//! and `barrier_stats`.
//!
//! The readers are PARALLEL RESTRICTED rather than SAFE: they switch roles and run SPI, which we
//! keep in the leader.

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::context::read_as_owner;
use crate::error::{report, BarrierError};
use crate::jsonb::RawJsonb;
use crate::owner::check_owner;
use crate::state;
use crate::validate;

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
        name!(failed, i32),
        name!(sealed, bool),
        name!(need, Option<i32>),
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
            row.failed,
            row.sealed,
            row.need,
        )))
    })
}

/// Up to `max_rows` slots of a pending barrier that have not reported, above `after` (from the
/// first when NULL), one row each, in slot order (for a barrier counted without slots, the
/// arrival positions still to come); none for a finished barrier. Page through a large fan-in
/// with `after =>` the last slot seen. One primary-key probe per slot looked at.
#[pg_extern(stable, parallel_restricted)]
#[search_path(pg_catalog, pg_temp)]
fn barrier_pending_slots(
    id: Option<&str>,
    max_rows: default!(Option<i32>, 1000),
    after: default!(Option<i32>, "NULL"),
) -> TableIterator<'static, (name!(slot, i32),)> {
    report("barrier_pending_slots", || {
        let id = validate::id(id)?;
        let max_rows = validate::positive_count("max_rows", max_rows)?;
        let after = validate::non_negative("after", after)?;
        let slots = read_as_owner(|client, caller| {
            let Some((owner, slots)) = state::pending_slots(client, id, after, max_rows)? else {
                return Err(BarrierError::Unknown { id: id.to_string() });
            };
            check_owner(caller, owner, id)?;
            Ok(slots)
        })?;
        Ok(TableIterator::new(slots.into_iter().map(|slot| (slot,))))
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
