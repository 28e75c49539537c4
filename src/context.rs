//! The SPI context every API function runs its SQL in: as the state tables' owner, inside a
//! security-restricted operation, with the planner and name-resolution settings fixed.
//!
//! The state tables grant nothing to anyone but their owner (in a trusted install, the bootstrap
//! superuser). The API functions are SECURITY INVOKER: each records the calling role, then runs
//! its fixed, parameterised SQL as the tables' owner, the way PostgreSQL itself runs maintenance
//! commands as a table's owner. The caller's own identity decides ownership checks (`owner`); it
//! never reaches SQL text.

use pgrx::pg_sys;
use pgrx::spi::{Spi, SpiClient};

use crate::error::{BarrierError, Result};
use crate::version::require_current_schema;

/// Who called, captured before the switch.
#[derive(Clone, Copy)]
pub struct Caller {
    /// The calling role (after SET ROLE), for ownership checks.
    pub role: pg_sys::Oid,
    /// The memory context the function was called in: values returned to the caller are copied
    /// here, so they outlive SPI but not the call.
    pub memory: pg_sys::MemoryContext,
    /// Citus distributes the state tables (`check_citus_role`): the caller has the tables'
    /// owner's privileges, may act on every barrier, and statements that Citus cannot route to
    /// the barrier's node alone are not used.
    pub sharded: bool,
}

impl Caller {
    pub fn capture() -> Self {
        // SAFETY: reads backend-local state.
        unsafe {
            Caller {
                role: pg_sys::GetUserId(),
                memory: pg_sys::CurrentMemoryContext,
                sharded: false,
            }
        }
    }
}

/// Runs `work` as the state tables' owner with an SPI client that may write.
///
/// Refused up front in a read-only transaction: a writing SPI client takes a transaction id, which
/// a hot standby cannot give (an internal error there, rather than PostgreSQL's 25006).
pub fn write_as_owner<T>(work: impl FnOnce(&mut SpiClient<'_>, Caller) -> Result<T>) -> Result<T> {
    // SAFETY: reads a flag of this backend's transaction state.
    if unsafe { pg_sys::XactReadOnly } {
        return Err(BarrierError::ReadOnly);
    }
    require_current_schema()?;
    let caller = Caller::capture();
    let _settings = PinnedSettings::enter();
    let _as_owner = AsStateOwner::enter()?;
    Spi::connect_mut(|client| {
        let caller = check_citus_role(client, caller)?;
        work(client, caller)
    })
}

/// `write_as_owner` for a call that changes barrier `id`. Where Citus distributes the tables, it
/// first holds the metadata lock of the barrier's shard (`barrier_internal.hold_shard` in
/// src/distribute.sql says why): a shard move and the call then never overlap.
pub fn write_barrier_as_owner<T>(
    id: &str,
    work: impl FnOnce(&mut SpiClient<'_>, Caller) -> Result<T>,
) -> Result<T> {
    write_as_owner(|client, caller| {
        if caller.sharded {
            crate::state::hold_shard(client, id)?;
        }
        work(client, caller)
    })
}

/// Like `write_as_owner`, for work that only reads.
pub fn read_as_owner<T>(work: impl FnOnce(&SpiClient<'_>, Caller) -> Result<T>) -> Result<T> {
    require_current_schema()?;
    let caller = Caller::capture();
    let _settings = PinnedSettings::enter();
    let _as_owner = AsStateOwner::enter()?;
    Spi::connect(|client| {
        let caller = check_citus_role(client, caller)?;
        work(client, caller)
    })
}

/// Where Citus distributes the state tables, only roles with the privileges of their owner may
/// call: a barrier's owner is a role oid, and oids differ from node to node (and move with the
/// shards), so per-barrier ownership means nothing there; such a caller then acts on every
/// barrier, as the owner may. Elsewhere this costs one catalog-cache look-up.
fn check_citus_role(client: &SpiClient<'_>, mut caller: Caller) -> Result<Caller> {
    if crate::state::distributed(client)? {
        if !crate::owner::may_act(caller, state_owner()?) {
            return Err(BarrierError::NotOwnerOnCitus);
        }
        caller.sharded = true;
    }
    Ok(caller)
}

/// The owner of the state tables, from the catalog caches: no SPI, no transaction id, nothing
/// cached across calls (so a re-created extension or a reassigned owner is seen at once).
fn state_owner() -> Result<pg_sys::Oid> {
    // SAFETY: catalog cache look-ups by name and oid; the tuple is released before returning.
    // Name look-ups here check no privileges, which callers of the API do not have on the schema.
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"barrier_internal".as_ptr(), true);
        let table = pg_sys::get_relname_relid(c"barrier".as_ptr(), schema);
        if table == pg_sys::InvalidOid {
            return Err(BarrierError::Internal(
                "the pg_barrier state tables are missing".into(),
            ));
        }
        let tuple =
            pg_sys::SearchSysCache1(pg_sys::SysCacheIdentifier::RELOID as i32, table.into());
        if tuple.is_null() {
            return Err(BarrierError::Internal(
                "the pg_barrier state table vanished".into(),
            ));
        }
        let owner = (*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_class>(tuple)).relowner;
        pg_sys::ReleaseSysCache(tuple);
        Ok(owner)
    }
}

/// While alive, the settings our SQL is planned and run under are fixed, whatever the caller set:
///
/// - `search_path = pg_catalog, pg_temp`: every object our SQL names is schema-qualified, and an
///   unqualified operator or function can only resolve to the built-in one, not to a look-alike
///   on the caller's path;
/// - `enable_seqscan = off`: statements are prepared once per backend and kept; one first
///   prepared while the tables are nearly empty would otherwise keep a sequential-scan plan as
///   they grow, and every look-up by id would scan the table;
/// - `jit = off`: with sequential scans priced out, a plan that must scan (the counts of
///   `barrier_stats`) costs more than every JIT threshold, and compiling it took 90-200 ms per
///   call for sub-millisecond work. None of our statements is big enough to gain from JIT.
///
/// The API functions also carry `SET search_path` in their definition. That one matters for a
/// 0.2.0 library still loaded in a session after `ALTER EXTENSION UPDATE`: it runs its SQL under
/// the function's settings only. (Measured for 0.3.2, it costs no more than the noise of the
/// benchmark; dropping it would need new C symbols, so that old libraries fail closed.)
pub(crate) struct PinnedSettings {
    level: std::ffi::c_int,
}

impl PinnedSettings {
    pub(crate) fn enter() -> Self {
        // SAFETY: a new configuration nesting level, closed in Drop (or by the abort of the
        // (sub)transaction, which restores every level above its own).
        unsafe {
            let level = pg_sys::NewGUCNestLevel();
            for (name, value) in [
                (c"search_path", c"pg_catalog, pg_temp"),
                (c"enable_seqscan", c"off"),
                (c"jit", c"off"),
            ] {
                pg_sys::set_config_option(
                    name.as_ptr(),
                    value.as_ptr(),
                    pg_sys::GucContext::PGC_USERSET,
                    pg_sys::GucSource::PGC_S_SESSION,
                    pg_sys::GucAction::GUC_ACTION_SAVE,
                    true,
                    0,
                    false,
                );
            }
            PinnedSettings { level }
        }
    }
}

impl Drop for PinnedSettings {
    fn drop(&mut self) {
        // While unwinding from an error the (sub)transaction abort restores the settings.
        if !std::thread::panicking() {
            // SAFETY: closes the level `enter` opened, restoring the caller's values.
            unsafe { pg_sys::AtEOXact_GUC(true, self.level) }
        }
    }
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
