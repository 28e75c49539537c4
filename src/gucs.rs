//! Settings, all under the reserved prefix `pg_barrier.`.

use std::ffi::CStr;

use pgrx::guc::{GucContext, GucFlags, GucRegistry, GucSetting};
use pgrx::pg_sys;

/// The NOTIFY channel of a barrier enqueued without one.
pub static CHANNEL: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(Some(c"pg_barrier"));

/// How long a barrier enqueued without a ttl may live, in seconds (6 hours).
pub static DEFAULT_TTL: GucSetting<i32> = GucSetting::<i32>::new(6 * 60 * 60);

/// How long finished barriers are kept before `barrier_sweep` deletes them, in seconds (1 day).
/// Superuser-only: anyone may sweep, and a shorter retention deletes other roles' completions.
pub static RETENTION: GucSetting<i32> = GucSetting::<i32>::new(24 * 60 * 60);

/// Expire barriers with no report for this long, in seconds; 0 (the default) never does.
pub static STALL_TIMEOUT: GucSetting<i32> = GucSetting::<i32>::new(0);

/// Largest accepted result or callback, in bytes (1 MB). Superuser-only: it guards the server.
pub static MAX_RESULT_BYTES: GucSetting<i32> = GucSetting::<i32>::new(1024 * 1024);

/// How often the background sweeper runs, in seconds.
pub static SWEEP_INTERVAL: GucSetting<i32> = GucSetting::<i32>::new(60);

/// Databases the background sweeper works in, comma-separated; empty: none.
pub static SWEEP_DATABASES: GucSetting<Option<std::ffi::CString>> =
    GucSetting::<Option<std::ffi::CString>>::new(None);

/// Count the common report without SQL (`fast_path`). Superuser-only: turning it off costs
/// every role throughput, and it exists to compare the two paths and to rule one out.
pub static FAST_PATH: GucSetting<bool> = GucSetting::<bool>::new(true);

pub fn init() {
    GucRegistry::define_bool_guc(
        c"pg_barrier.fast_path",
        c"Counts the common report without running SQL.",
        c"Off: every report takes the SQL path. The answers are the same either way.",
        &FAST_PATH,
        GucContext::Suset,
        GucFlags::default(),
    );
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
    GucRegistry::define_int_guc(
        c"pg_barrier.retention",
        c"How long barrier_sweep keeps finished barriers.",
        c"Completed (taken or not), aborted and expired barriers older than this are deleted; aborted ones are kept at least until their expiry.",
        &RETENTION,
        0,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_barrier.stall_timeout",
        c"Default no-progress window of new barriers; 0 disables it.",
        c"barrier_sweep expires a pending barrier that has had no report for this long.",
        &STALL_TIMEOUT,
        0,
        i32::MAX,
        GucContext::Userset,
        GucFlags::UNIT_S,
    );
    GucRegistry::define_int_guc(
        c"pg_barrier.max_result_bytes",
        c"Largest result or callback accepted, in bytes.",
        c"Larger values are refused with SQLSTATE 54000.",
        &MAX_RESULT_BYTES,
        1,
        i32::MAX,
        GucContext::Suset,
        GucFlags::UNIT_BYTE,
    );
    GucRegistry::define_int_guc(
        c"pg_barrier.sweep_interval",
        c"How often the background sweeper runs barrier_sweep().",
        c"Takes effect on reload (SIGHUP).",
        &SWEEP_INTERVAL,
        1,
        24 * 60 * 60,
        GucContext::Sighup,
        GucFlags::UNIT_S,
    );
    // A server-start setting can only be defined while the server loads preloaded libraries.
    // SAFETY: reads a flag the postmaster sets while loading shared_preload_libraries.
    if unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        GucRegistry::define_string_guc(
            c"pg_barrier.sweep_databases",
            c"Databases the background sweeper works in, comma-separated.",
            c"Needs pg_barrier in shared_preload_libraries; one worker per database, started with the server.",
            &SWEEP_DATABASES,
            GucContext::Postmaster,
            GucFlags::default(),
        );
    }
    reserve_prefix(c"pg_barrier");
}

/// The databases named in `pg_barrier.sweep_databases`.
pub fn sweep_databases() -> Vec<String> {
    SWEEP_DATABASES
        .get()
        .map(|value| {
            value
                .to_string_lossy()
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// The channel setting as text; `None` if it was set to an empty value.
pub fn channel() -> Option<String> {
    CHANNEL
        .get()
        .map(|value| value.to_string_lossy().into_owned())
        .filter(|value| !value.is_empty())
}

fn reserve_prefix(prefix: &CStr) {
    // SAFETY: a static NUL-terminated string; called from _PG_init.
    unsafe { pg_sys::MarkGUCPrefixReserved(prefix.as_ptr()) }
}
