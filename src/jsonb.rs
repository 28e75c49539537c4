//! A jsonb value passed through untouched.
//!
//! pgrx's `JsonB` decodes into `serde_json::Value` and encodes back, which costs a parse per call
//! and loses precision on numbers serde cannot hold (1e400, 30-digit integers). Results and
//! callbacks are opaque to us, so we keep them as the datum PostgreSQL gave us.

use pgrx::callconv::{Arg, ArgAbi, BoxRet, FcInfo};
use pgrx::datum::Datum;
use pgrx::memcxt::PgMemoryContexts;
use pgrx::nullable::Nullable;
use pgrx::{pg_sys, FromDatum, IntoDatum};

#[derive(Clone, Copy, Debug)]
pub struct RawJsonb(pg_sys::Datum);

impl FromDatum for RawJsonb {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then_some(RawJsonb(datum))
    }

    /// pgrx's SPI getters use this; copying keeps such values valid after SPI disconnects.
    /// (We copy explicitly into the caller's context instead: see `copy_into`.)
    unsafe fn from_datum_in_memory_context(
        memory_context: PgMemoryContexts,
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        // SAFETY: a non-null jsonb datum, copied into a live context.
        (!is_null).then(|| unsafe { RawJsonb::copy_into(datum, memory_context.value()) })
    }
}

impl RawJsonb {
    /// The datum as PostgreSQL passed it (possibly compressed or toasted).
    pub fn datum(self) -> pg_sys::Datum {
        self.0
    }

    /// The value's uncompressed size in bytes.
    pub fn size(self) -> usize {
        // SAFETY: a valid jsonb datum; only its header is read.
        unsafe { pg_sys::toast_raw_datum_size(self.0) }
    }

    /// A detoasted copy of a jsonb datum, allocated in `memory`.
    ///
    /// # Safety
    /// `datum` must be a valid, non-null jsonb datum and `memory` a live memory context.
    pub unsafe fn copy_into(datum: pg_sys::Datum, memory: pg_sys::MemoryContext) -> Self {
        // SAFETY: per the contract above; the previous context is restored before returning.
        unsafe {
            let previous = pg_sys::MemoryContextSwitchTo(memory);
            let copy = pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr());
            pg_sys::MemoryContextSwitchTo(previous);
            RawJsonb(pg_sys::Datum::from(copy))
        }
    }
}

impl IntoDatum for RawJsonb {
    fn into_datum(self) -> Option<pg_sys::Datum> {
        Some(self.0)
    }

    fn type_oid() -> pg_sys::Oid {
        pg_sys::JSONBOID
    }
}

pgrx::impl_sql_translatable!(RawJsonb, "jsonb");

// SAFETY: the function's SQL signature declares this argument jsonb.
unsafe impl<'fcx> ArgAbi<'fcx> for RawJsonb {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        // SAFETY: forwarded from the caller.
        unsafe { arg.unbox_arg_using_from_datum() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"))
    }

    unsafe fn unbox_nullable_arg(arg: Arg<'_, 'fcx>) -> Nullable<Self> {
        // SAFETY: forwarded from the caller.
        unsafe { arg.unbox_arg_using_from_datum() }.into()
    }
}

// SAFETY: the function's SQL signature declares this result jsonb.
unsafe impl BoxRet for RawJsonb {
    unsafe fn box_into<'fcx>(self, fcinfo: &mut FcInfo<'fcx>) -> Datum<'fcx> {
        // SAFETY: a valid jsonb datum, in memory that outlives the call.
        unsafe { fcinfo.return_raw_datum(self.0) }
    }
}
