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

    /// Values read through SPI live in SPI's memory, freed when SPI disconnects: copy them out.
    unsafe fn from_datum_in_memory_context(
        mut memory_context: PgMemoryContexts,
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        if is_null {
            return None;
        }
        // SAFETY: a non-null jsonb datum is a varlena pointer; the copy is detoasted and owned
        // by the context we switch to.
        unsafe {
            memory_context.switch_to(|_| {
                let copy = pg_sys::pg_detoast_datum_copy(datum.cast_mut_ptr());
                Some(RawJsonb(pg_sys::Datum::from(copy)))
            })
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
