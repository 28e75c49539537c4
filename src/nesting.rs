//! Nested barriers: a child names a slot of its parent at enqueue (`check_parent`), and the end
//! of each of its rounds is reported into that slot (`hand_up`), in the same transaction.
//!
//! Locks are always taken child first, then parent, so trees never deadlock among themselves.
//! Recursion is bounded: enqueue refuses a child more than `MAX_DEPTH` levels down, and a
//! hand-up that climbs further (possible only when an ancestor was enqueued again under a new
//! parent) stops there with a WARNING, leaving that round takeable, instead of recursing on.

use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use crate::error::{BarrierError, Result};
use crate::report::{self, Report};
use crate::state::{self, Completion, Status};
use crate::validate;

/// The most levels of parents a barrier may have.
pub const MAX_DEPTH: u32 = 16;

/// The reason a parent is given instead of a completion it could not hold.
const TOO_LARGE: &str = "results too large to report into the parent";

/// The child whose round ended.
pub struct Child<'a> {
    pub id: &'a str,
    pub owner: pg_sys::Oid,
    pub round: i64,
    pub status: &'a str,
}

/// How the child's round ended, for its parent: with its completion (a completion or a
/// delivered expiry), or with a reason.
pub enum Ended<'a> {
    Completion(&'a Completion),
    Reason(Option<&'a str>),
}

/// Checks, with the child's row locked, that `child` (owned by `owner`) may report into `slot`
/// of `parent`: no cycle, the parent exists, has the same owner, is pending and slotted (or not
/// yet reported into), the slot is in range and free, and the tree stays within `MAX_DEPTH`.
/// `claim` is the parent slot the child reported into before this enqueue (a new round): a
/// failure it left there may be re-armed. Takes the parent's row lock.
pub fn check_parent(
    client: &mut SpiClient<'_>,
    child: &str,
    owner: pg_sys::Oid,
    parent: &str,
    slot: i32,
    claim: Option<(String, i32)>,
) -> Result<()> {
    // A parent's slot is claimed through a unique index, which Citus cannot keep across shards.
    if state::distributed(client)? {
        return Err(BarrierError::NotOnCitus {
            what: "nested barriers",
        });
    }
    let Some(barrier) = state::lock(client, parent)? else {
        return Err(BarrierError::Unknown {
            id: parent.to_string(),
        });
    };
    // The parent's ancestors, nearest first, read once its lock is held (a re-parenting that
    // committed meanwhile is seen): the child must not be among them. (A missing parent cannot
    // close a cycle, so the error a caller sees first is the same either way.)
    let mut ancestors = 0;
    let mut above = Some(parent.to_string());
    while let Some(id) = above {
        if id == child {
            return Err(BarrierError::Cycle {
                id: child.to_string(),
            });
        }
        ancestors += 1;
        if ancestors > MAX_DEPTH {
            break;
        }
        above = state::shape(client, &id)?.parent.map(|(id, _)| id);
    }
    if barrier.owner != owner {
        return Err(BarrierError::NotOwner {
            id: parent.to_string(),
        });
    }
    let status = barrier.effective_status();
    if status != Status::Pending {
        return Err(BarrierError::WrongState {
            id: parent.to_string(),
            status: status.as_str(),
            detail: "Only a pending barrier can take more tasks.",
        });
    }
    if barrier.slotted == Some(false) {
        return Err(BarrierError::invalid(
            "parent_slot",
            format!(
                "barrier \"{}\" is counted without slots",
                crate::error::display_id(parent)
            ),
        ));
    }
    validate::slot_in_range_of("parent_slot", parent, slot, barrier.expected)?;
    // Depth: the parent's ancestors, plus the parent itself.
    if ancestors > MAX_DEPTH {
        return Err(BarrierError::TooDeep {
            id: child.to_string(),
        });
    }
    let claimed_here = claim == Some((parent.to_string(), slot));
    let taken = state::claimed_by_another(client, parent, slot, child)?
        || match state::slot_failed(client, parent, slot)? {
            None => false,
            Some(failed) => !failed || !claimed_here,
        };
    if taken {
        return Err(BarrierError::SlotTaken {
            parent: parent.to_string(),
            slot,
        });
    }
    Ok(())
}

/// Reports how `child`'s round ended into its parent's slot, as a success or (`failed`) a
/// failure, under the parent's policy. Nothing happens when the parent cannot take it (gone,
/// of another owner, finished, counted without slots, the slot already reported, or no room
/// left in its results): never an error, so a child can always end. A completion too large for
/// the parent's results becomes a failure that says so. Returns whether the parent counted it.
pub fn hand_up(
    client: &mut SpiClient<'_>,
    parent: &(String, i32),
    child: &Child<'_>,
    ended: Ended<'_>,
    failed: bool,
    memory: pg_sys::MemoryContext,
    depth: u32,
) -> Result<bool> {
    let (parent, slot) = (parent.0.as_str(), parent.1);
    if depth >= MAX_DEPTH {
        // Failing would fail every report of the leaf, for good: the child keeps its round.
        pgrx::warning!(
            "pg_barrier: barrier \"{}\" is nested more than {MAX_DEPTH} levels deep: its end is not reported into barrier \"{}\"",
            crate::error::display_id(child.id),
            crate::error::display_id(parent)
        );
        return Ok(false);
    }
    let Some(barrier) = state::lock(client, parent)? else {
        return Ok(false);
    };
    // An id can be reused by another role once the sweep deleted the parent: never report
    // into a barrier of another owner.
    if barrier.owner != child.owner || barrier.slotted == Some(false) || slot >= barrier.expected {
        return Ok(false);
    }
    match barrier.effective_status() {
        Status::Pending => {}
        Status::Expired if barrier.status == Status::Pending => {
            crate::ending::expire(client, parent, &barrier, None, memory, depth + 1)?;
            return Ok(false);
        }
        _ => return Ok(false),
    }
    // The completion goes up whole if it fits beside the parent's results, estimated before it
    // is built (so that building it can never fail on size): its jsonb parts, and a jsonb
    // number of at most 16 bytes per listed slot.
    let fits = match &ended {
        Ended::Completion(done) => {
            let listed = (done.failed_slots.len() + done.missing_slots.len()) as i64;
            let estimate = (done.results.size() + done.errors.size()) as i64 + 16 * listed + 1024;
            validate::fits(barrier.result_bytes, estimate + 8)
        }
        Ended::Reason(_) => true,
    };
    let (ended, failed) = if fits {
        (ended, failed)
    } else {
        (Ended::Reason(Some(TOO_LARGE)), true)
    };
    let value = state::ended_value(client, child.id, child.round, child.status, &ended, memory)?;
    let room = validate::padding(barrier.expected, barrier.need.is_some() || barrier.deliver);
    let weight = validate::result_weight(Some(value)).saturating_add(room);
    if !validate::fits(barrier.result_bytes, weight) {
        return Ok(false);
    }
    let report = Report {
        result: Some(value),
        slot: Some(slot),
        failed,
    };
    Ok(report::count(client, parent, barrier, report, memory, depth + 1)?.counted)
}
