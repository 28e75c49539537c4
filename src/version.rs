//! The version gate: this library works only on the SQL objects of its own version.
//!
//! After the library file is replaced, calls fail with a clear error until `ALTER EXTENSION
//! pg_barrier UPDATE` brings the SQL objects up; a database switched to the SQL edition
//! (`ALTER EXTENSION pg_barrier UPDATE TO '<v>-sql'`) is refused too, since its functions no
//! longer reach this library (only the background sweeper and hand-made C functions would).
//!
//! The answer holds for one transaction: the editions switch both ways, so the installed
//! version can change under a long-lived backend at any commit. That matters most for a library
//! preloaded with `shared_preload_libraries`: its background sweeper lives as long as the server,
//! and new backends inherit the library the postmaster loaded, whatever file is installed now
//! (hence "restart the server after installing a new library", in docs/operations.md). The check reads
//! the catalog directly, without SPI: a few microseconds, once per transaction that calls us.

use std::cell::Cell;
use std::ffi::c_void;
use std::ptr::null_mut;

use pgrx::pg_sys;

use crate::error::{BarrierError, Result};

thread_local! {
    /// Set once the running transaction has seen the installed SQL at this library's version;
    /// cleared when it (or a subtransaction) ends.
    static CHECKED: Cell<bool> = const { Cell::new(false) };
}

/// Clears the answer at the end of every transaction and subtransaction; called once, from
/// `_PG_init`.
pub fn init() {
    // SAFETY: registers two callbacks for this process's lifetime; they only clear a flag.
    unsafe {
        pg_sys::RegisterXactCallback(Some(forget_at_transaction_end), null_mut());
        pg_sys::RegisterSubXactCallback(Some(forget_at_subtransaction_end), null_mut());
    }
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_at_transaction_end(
    _event: pg_sys::XactEvent::Type,
    _argument: *mut c_void,
) {
    CHECKED.set(false);
}

#[pgrx::pg_guard]
unsafe extern "C-unwind" fn forget_at_subtransaction_end(
    event: pg_sys::SubXactEvent::Type,
    _my_subid: pg_sys::SubTransactionId,
    _parent_subid: pg_sys::SubTransactionId,
    _argument: *mut c_void,
) {
    // A subtransaction that rolls back may take an ALTER EXTENSION with it.
    if event == pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB {
        CHECKED.set(false);
    }
}

/// Fails unless the installed pg_barrier is this library's version of the Rust build.
pub fn require_current_schema() -> Result<()> {
    if CHECKED.get() {
        return Ok(());
    }
    let Some(version) = installed_version() else {
        return Err(BarrierError::OutdatedSchema { installed: None });
    };
    if version.ends_with("-sql") {
        return Err(BarrierError::SqlEdition { installed: version });
    }
    if version != env!("CARGO_PKG_VERSION") {
        return Err(BarrierError::OutdatedSchema {
            installed: Some(version),
        });
    }
    CHECKED.set(true);
    Ok(())
}

/// `pg_extension.extversion` of pg_barrier in this database, as this transaction sees it.
fn installed_version() -> Option<String> {
    // SAFETY: a catalog index scan under the transaction's catalog snapshot; the relation, the
    // scan and the tuple are released before returning. Reading a catalog needs no privilege,
    // takes no transaction id and works on a standby.
    unsafe {
        let catalog = pg_sys::table_open(
            pg_sys::ExtensionRelationId,
            pg_sys::AccessShareLock as pg_sys::LOCKMODE,
        );
        let mut name = pg_sys::NameData::default();
        pg_sys::namestrcpy(&mut name, c"pg_barrier".as_ptr());
        let mut key = pg_sys::ScanKeyData::default();
        pg_sys::ScanKeyInit(
            &mut key,
            pg_sys::Anum_pg_extension_extname as pg_sys::AttrNumber,
            pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
            pg_sys::Oid::from(pg_sys::F_NAMEEQ),
            pg_sys::Datum::from(&mut name as *mut pg_sys::NameData),
        );
        let scan = pg_sys::systable_beginscan(
            catalog,
            pg_sys::Oid::from(pg_sys::ExtensionNameIndexId),
            true,
            null_mut(),
            1,
            &mut key,
        );
        let tuple = pg_sys::systable_getnext(scan);
        let mut version = None;
        if !tuple.is_null() {
            let mut is_null = false;
            let datum = pg_sys::heap_getattr(
                tuple,
                pg_sys::Anum_pg_extension_extversion as i32,
                (*catalog).rd_att,
                &mut is_null,
            );
            if !is_null {
                version = <String as pgrx::FromDatum>::from_datum(datum, false);
            }
        }
        pg_sys::systable_endscan(scan);
        pg_sys::table_close(catalog, pg_sys::AccessShareLock as pg_sys::LOCKMODE);
        version
    }
}
