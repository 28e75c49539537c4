//! Handing each completion to exactly one consumer: `barrier_take` for one barrier,
//! `barrier_completions` for a queue of them. For clients that cannot LISTEN, or that missed a
//! notification: the tables are the truth, NOTIFY only a wake-up hint.

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;

use crate::context::{write_as_owner, write_barrier_as_owner};
use crate::ending;
use crate::error::{report, BarrierError};
use crate::jsonb::RawJsonb;
use crate::owner::check_owner;
use crate::state::{self, Status};
use crate::validate;

/// The results and callback of a completed barrier, handed out once across all sessions: the
/// first committed take gets them and frees them; any other gets no row.
#[pg_extern(volatile, parallel_unsafe)]
#[search_path(pg_catalog, pg_temp)]
#[allow(clippy::type_complexity)] // pgrx needs the row's tuple written out here
fn barrier_take(
    id: Option<&str>,
) -> TableIterator<
    'static,
    (
        name!(results, RawJsonb),
        name!(callback, Option<RawJsonb>),
        name!(status, String),
        name!(failed_slots, Vec<i32>),
        name!(errors, RawJsonb),
        name!(missing_slots, Vec<i32>),
    ),
> {
    report("barrier_take", || {
        let id = validate::id(id)?;
        let taken = write_barrier_as_owner(id, |client, caller| {
            let Some(mut barrier) = state::lock(client, id)? else {
                return Ok(None);
            };
            check_owner(caller, barrier.owner, id)?;
            if barrier.status == Status::Pending && barrier.past_expiry {
                // An expiry no sweep has stored yet: one that delivers becomes takeable here
                // (unless a parent takes it).
                ending::expire(client, id, &barrier, None, caller.memory, 0)?;
                barrier = match state::lock(client, id)? {
                    Some(barrier) => barrier,
                    None => return Ok(None),
                };
            }
            if !barrier.takeable() {
                return Ok(None);
            }
            let status = state::completion_status(barrier.status, barrier.failed);
            let (done, _) = state::take(client, id, caller.memory)?;
            Ok(Some((
                done.results,
                done.callback,
                status.to_string(),
                done.failed_slots,
                done.errors,
                done.missing_slots,
            )))
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
        name!(status, String),
        name!(failed_slots, Vec<i32>),
        name!(errors, RawJsonb),
        name!(missing_slots, Vec<i32>),
    ),
> {
    report("barrier_completions", || {
        let max_rows = validate::positive_count("max_rows", max_rows)?;
        let rows = write_as_owner(|client, caller| {
            let claimed =
                state::claim_completions(client, max_rows, channel, caller.role, caller.sharded)?;
            claimed
                .into_iter()
                .map(|(id, status)| {
                    let (done, finished_at) = state::take(client, &id, caller.memory)?;
                    Ok((
                        id,
                        finished_at,
                        done.results,
                        done.callback,
                        status.to_string(),
                        done.failed_slots,
                        done.errors,
                        done.missing_slots,
                    ))
                })
                .collect::<Result<Vec<_>, BarrierError>>()
        })?;
        Ok(TableIterator::new(rows))
    })
}
