//! Keeping barriers bounded in time and space: `barrier_sweep` expires barriers past their
//! deadlines and deletes finished ones after the retention. The background sweeper (`sweeper`)
//! and pg_cron call the same code.

use pgrx::datum::Interval;
use pgrx::prelude::*;

use crate::context::write_as_owner;
use crate::ending;
use crate::error::{report, BarrierError};
use crate::gucs;
use crate::state::{self, Status};
use crate::validate;

/// Expires pending barriers past their ttl or their no-progress window (notifying `expired`),
/// then deletes finished barriers older than `pg_barrier.retention`; at most `max_rows` of each.
///
/// Barriers another transaction holds are skipped, not waited for: safe beside decrements and
/// beside other sweeps. (Expiring a nested barrier reports into its parent, which waits for the
/// parent's row lock: see docs/api.md, `barrier_sweep`.) Call it until both counts are below `max_rows` to
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
    write_as_owner(|client, caller| {
        let due = state::lock_due(client, max_rows, caller.sharded)?;
        for barrier in &due {
            let reason = (!barrier.by_ttl).then_some("no report within stall_timeout");
            // Locked by lock_due; read again, as a parent's expiry handed up by an earlier one
            // of the batch may have finished it.
            let Some(locked) = state::lock(client, &barrier.id)? else {
                continue;
            };
            if locked.status != Status::Pending {
                continue;
            }
            ending::expire(client, &barrier.id, &locked, reason, caller.memory, 0)?;
        }
        let deleted = state::delete_finished(client, max_rows, retention, caller.sharded)?;
        Ok(Swept {
            expired: due.len(),
            deleted,
        })
    })
}
