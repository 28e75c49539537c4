//! Settings, all under the reserved prefix `pg_barrier.`.

use std::ffi::CStr;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

/// The NOTIFY channel of a barrier enqueued without one.
pub static CHANNEL: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"pg_barrier"));

/// How long a barrier enqueued without a ttl may live, in seconds (6 hours).
pub static DEFAULT_TTL: GucSetting<i32> = GucSetting::<i32>::new(6 * 60 * 60);

pub fn init() {
    GucRegistry::define_string_guc(
        c"pg_barrier.channel",
        c"NOTIFY channel for barriers enqueued without a channel.",
        c"A lower-case identifier of at most 63 bytes, so that LISTEN can name it unquoted.",
        &CHANNEL,
        GucContext::Userset,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_barrier.default_ttl",
        c"Lifetime of barriers enqueued without a ttl.",
        c"After it a pending barrier counts as expired: decrements answer 'expired'.",
        &DEFAULT_TTL,
        1,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    reserve_prefix(c"pg_barrier");
}

/// The channel setting as text; `None` if it was set to an empty value.
pub fn channel() -> Option<String> {
    CHANNEL
        .get()
        .map(|value| value.to_string_lossy().into_owned())
        .filter(|value| !value.is_empty())
}

#[cfg(not(any(feature = "pg13", feature = "pg14")))]
fn reserve_prefix(prefix: &CStr) {
    // SAFETY: a static NUL-terminated string; called from _PG_init.
    unsafe { pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) }
}

#[cfg(any(feature = "pg13", feature = "pg14"))]
fn reserve_prefix(prefix: &CStr) {
    // SAFETY: a static NUL-terminated string; called from _PG_init.
    unsafe { pg_sys::EmitWarningsOnPlaceholders(prefix.as_ptr()) }
}
