//! Who may touch which barrier, and how the functions reach tables their callers cannot.
//!
//! The state tables grant nothing to anyone but their owner (in a trusted install, the bootstrap
//! superuser). The API functions are SECURITY INVOKER: each records the calling role, then runs
//! its fixed, parameterised SQL as the tables' owner inside a security-restricted operation, the
//! way PostgreSQL itself runs maintenance commands as a table's owner. The caller's own identity
//! decides ownership checks; it never reaches SQL text.

use std::cell::Cell;

use pgrx::pg_sys;
use pgrx::spi::{Spi, SpiClient};

use crate::error::{BarrierError, Result};

/// Runs `work` as the state tables' owner with an SPI client that may write, handing it the
/// calling role for ownership checks.
pub fn write_as_owner<T>(
    work: impl FnOnce(&mut SpiClient<'_>, pg_sys::Oid) -> Result<T>,
) -> Result<T> {
    let caller = calling_role();
    let _as_owner = AsStateOwner::enter()?;
    Spi::connect_mut(|client| work(client, caller))
}

/// Like `write_as_owner`, for work that only reads (STABLE functions: the caller's snapshot).
pub fn read_as_owner<T>(work: impl FnOnce(&SpiClient<'_>, pg_sys::Oid) -> Result<T>) -> Result<T> {
    let caller = calling_role();
    let _as_owner = AsStateOwner::enter()?;
    Spi::connect(|client| work(client, caller))
}

/// The role calling us (after SET ROLE, before any switch of ours).
fn calling_role() -> pg_sys::Oid {
    // SAFETY: reads backend-local state.
    unsafe { pg_sys::GetUserId() }
}

/// A role may act on a barrier if it has the privileges of the barrier's owner (is the owner, an
/// inheriting member of it, or a superuser).
pub fn check_owner(caller: pg_sys::Oid, owner: pg_sys::Oid, id: &str) -> Result<()> {
    // SAFETY: a catalog lookup on two role oids.
    if unsafe { pg_sys::has_privs_of_role(caller, owner) } {
        Ok(())
    } else {
        Err(BarrierError::NotOwner { id: id.to_string() })
    }
}

thread_local! {
    static STATE_OWNER: Cell<Option<pg_sys::Oid>> = const { Cell::new(None) };
}

/// The owner of the state tables, looked up once per backend.
fn state_owner() -> Result<pg_sys::Oid> {
    if let Some(owner) = STATE_OWNER.get() {
        return Ok(owner);
    }
    let owner = Spi::get_one::<pg_sys::Oid>(
        // By name through the catalogs: a regclass cast would need USAGE on the schema, which
        // callers do not have.
        "SELECT c.relowner FROM pg_catalog.pg_class c \
           JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace \
          WHERE n.nspname OPERATOR(pg_catalog.=) 'barrier_internal' \
            AND c.relname OPERATOR(pg_catalog.=) 'barrier'",
    )?
    .ok_or_else(|| BarrierError::Internal("pg_barrier state table is missing".into()))?;
    STATE_OWNER.set(Some(owner));
    Ok(owner)
}

/// While alive, SQL runs as the state tables' owner, in a security-restricted operation.
/// Dropping it (also while unwinding from an error) restores the caller's identity; PostgreSQL's
/// (sub)transaction abort would restore it too.
struct AsStateOwner {
    saved_user: pg_sys::Oid,
    saved_context: i32,
}

impl AsStateOwner {
    fn enter() -> Result<Self> {
        let owner = state_owner()?;
        let mut saved_user = pg_sys::InvalidOid;
        let mut saved_context = 0;
        // SAFETY: the documented save/switch pair; restored in Drop.
        unsafe {
            pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
            pg_sys::SetUserIdAndSecContext(
                owner,
                saved_context
                    | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                    | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
            );
        }
        Ok(AsStateOwner {
            saved_user,
            saved_context,
        })
    }
}

impl Drop for AsStateOwner {
    fn drop(&mut self) {
        // SAFETY: restores exactly what `enter` saved.
        unsafe { pg_sys::SetUserIdAndSecContext(self.saved_user, self.saved_context) }
    }
}
