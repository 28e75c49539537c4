//! Who may act on which barrier.

use pgrx::pg_sys;

use crate::context::Caller;
use crate::error::{BarrierError, Result};

/// A role may act on a barrier if it has the privileges of the barrier's owner (is the owner, an
/// inheriting member of it, or a superuser). On Citus every caller has the tables' owner's
/// privileges (`context`), and acts on every barrier.
pub fn may_act(caller: Caller, owner: pg_sys::Oid) -> bool {
    // SAFETY: a catalog lookup on two role oids.
    caller.sharded
        || caller.role == owner
        || unsafe { pg_sys::has_privs_of_role(caller.role, owner) }
}

pub fn check_owner(caller: Caller, owner: pg_sys::Oid, id: &str) -> Result<()> {
    if may_act(caller, owner) {
        Ok(())
    } else {
        Err(BarrierError::NotOwner { id: id.to_string() })
    }
}
