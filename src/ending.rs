//! How a round ends: complete, aborted or expired. Each end notifies, and a child barrier's end
//! reaches its parent's slot in the same transaction (`nesting::hand_up`).

use pgrx::pg_sys;
use pgrx::spi::SpiClient;

use crate::error::Result;
use crate::nesting::{self, Child, Ended};
use crate::state::{self, Completion, Locked, Status};

/// Completes a locked barrier whose completion is stored: builds the completion, notifies, and
/// hands it to the parent, which then holds it (the child is marked taken).
pub fn complete(
    client: &mut SpiClient<'_>,
    id: &str,
    barrier: &Locked,
    memory: pg_sys::MemoryContext,
    depth: u32,
) -> Result<Completion> {
    let completion = state::completion(client, id, barrier, memory)?;
    let status = state::completion_status(Status::Complete, barrier.failed);
    state::notify(client, &completion.channel, id, status, barrier.round)?;
    hand_up(
        client,
        id,
        barrier,
        status,
        Ended::Completion(&completion),
        memory,
        depth,
    )?;
    Ok(completion)
}

/// Aborts a locked, pending barrier: its results freed, `reason` kept, notified; a parent's slot
/// fails.
pub fn abort(
    client: &mut SpiClient<'_>,
    id: &str,
    barrier: &Locked,
    reason: Option<&str>,
    memory: pg_sys::MemoryContext,
    depth: u32,
) -> Result<()> {
    state::end_round(client, id, barrier.round, Status::Aborted, reason, false)?;
    let status = Status::Aborted.as_str();
    hand_up(
        client,
        id,
        barrier,
        status,
        Ended::Reason(reason),
        memory,
        depth,
    )
}

/// Expires a locked, pending barrier (past its ttl, or stalled: `reason`). With
/// `on_expiry => 'deliver'` its results stay, to be taken, and go to a parent; otherwise they
/// are freed. Either way a parent's slot fails.
pub fn expire(
    client: &mut SpiClient<'_>,
    id: &str,
    barrier: &Locked,
    reason: Option<&str>,
    memory: pg_sys::MemoryContext,
    depth: u32,
) -> Result<()> {
    let status = Status::Expired;
    state::end_round(client, id, barrier.round, status, reason, barrier.deliver)?;
    if !barrier.deliver {
        let ended = Ended::Reason(reason);
        return hand_up(client, id, barrier, status.as_str(), ended, memory, depth);
    }
    if state::shape(client, id)?.parent.is_none() {
        return Ok(());
    }
    let completion = state::completion(client, id, barrier, memory)?;
    let ended = Ended::Completion(&completion);
    hand_up(client, id, barrier, status.as_str(), ended, memory, depth)
}

/// Reports the end of the round into the parent's slot, if the barrier has a parent: a success
/// for `complete`, a failure otherwise. A completion the parent counted is the parent's now:
/// the child is marked taken.
fn hand_up(
    client: &mut SpiClient<'_>,
    id: &str,
    barrier: &Locked,
    status: &str,
    ended: Ended<'_>,
    memory: pg_sys::MemoryContext,
    depth: u32,
) -> Result<()> {
    let Some(parent) = state::shape(client, id)?.parent else {
        return Ok(());
    };
    let takeable = matches!(ended, Ended::Completion(_));
    let child = Child {
        id,
        owner: barrier.owner,
        round: barrier.round,
        status,
    };
    let failed = status != Status::Complete.as_str();
    if nesting::hand_up(client, &parent, &child, ended, failed, memory, depth)? && takeable {
        state::mark_taken(client, id)?;
    }
    Ok(())
}
