//! The background sweeper: with pg_barrier in `shared_preload_libraries`, one worker per database
//! named in `pg_barrier.sweep_databases` runs a sweep every `pg_barrier.sweep_interval`.

use std::time::Duration;

use pgrx::bgworkers::{BackgroundWorker, BackgroundWorkerBuilder, SignalWakeFlags};
use pgrx::prelude::*;

use crate::gucs;
use crate::housekeeping::{sweep, Swept};

/// Rows per sweep transaction; a full batch is followed at once by another.
const BATCH: i32 = 10_000;

/// Registers the workers; only possible while the server loads preloaded libraries.
pub fn register() {
    // SAFETY: reads a flag the postmaster sets while loading shared_preload_libraries.
    if !unsafe { pg_sys::process_shared_preload_libraries_in_progress } {
        return;
    }
    for database in gucs::sweep_databases() {
        BackgroundWorkerBuilder::new(&format!("pg_barrier sweeper for {database}"))
            .set_type("pg_barrier sweeper")
            .set_library("pg_barrier")
            .set_function("pg_barrier_sweeper_main")
            .set_extra(&database)
            .enable_spi_access()
            .set_restart_time(Some(Duration::from_secs(10)))
            .load();
    }
}

#[pg_guard]
#[unsafe(no_mangle)]
pub extern "C-unwind" fn pg_barrier_sweeper_main(_argument: pg_sys::Datum) {
    BackgroundWorker::attach_signal_handlers(SignalWakeFlags::SIGHUP | SignalWakeFlags::SIGTERM);
    let database = BackgroundWorker::get_extra().to_string();
    BackgroundWorker::connect_worker_to_spi(Some(&database), None);
    // Sweeps rely on READ COMMITTED re-checks of the rows they lock, whatever the server default.
    // SAFETY: a session-level setting of a built-in parameter, from static strings.
    unsafe {
        pg_sys::SetConfigOption(
            c"default_transaction_isolation".as_ptr(),
            c"read committed".as_ptr(),
            pg_sys::GucContext::PGC_SUSET,
            pg_sys::GucSource::PGC_S_OVERRIDE,
        );
    }
    log!(
        "pg_barrier sweeper started in database \"{database}\", every {} s",
        gucs::SWEEP_INTERVAL.get()
    );
    let mut last_failure: Option<String> = None;
    loop {
        // A full batch means more is due: sweep again at once.
        let full = match sweep_once() {
            Ok(swept) => {
                if last_failure.take().is_some() {
                    log!("pg_barrier sweeper in \"{database}\": sweeping again");
                }
                if swept.expired + swept.deleted > 0 {
                    log!(
                        "pg_barrier sweeper in \"{database}\": expired {}, deleted {}",
                        swept.expired,
                        swept.deleted
                    );
                }
                swept.expired == BATCH as usize || swept.deleted == BATCH as usize
            }
            Err(message) => {
                // Say each failure once, not every round (e.g. the extension is not installed).
                if last_failure.as_deref() != Some(message.as_str()) {
                    warning!("pg_barrier sweeper in \"{database}\": {message}");
                    last_failure = Some(message);
                }
                false
            }
        };
        let wait = if full { Duration::ZERO } else { interval() };
        if !BackgroundWorker::wait_latch(Some(wait)) {
            break; // SIGTERM
        }
        if BackgroundWorker::sighup_received() {
            // SAFETY: the documented way for a worker to re-read its configuration.
            unsafe { pg_sys::ProcessConfigFile(pg_sys::GucContext::PGC_SIGHUP) };
        }
    }
    log!("pg_barrier sweeper in \"{database}\" stopping");
}

fn interval() -> Duration {
    Duration::from_secs(u64::try_from(gucs::SWEEP_INTERVAL.get()).unwrap_or(60))
}

/// One sweep in its own transaction. An error rolls that transaction back and is returned, so
/// the worker lives on to the next round.
fn sweep_once() -> Result<Swept, String> {
    PgTryBuilder::new(|| {
        Ok(BackgroundWorker::transaction(|| {
            // `sweep` runs its SQL under the settings every API function fixes (see
            // `context::PinnedSettings`). Any failure is raised as an ERROR, so the
            // transaction is rolled back below.
            crate::error::report("pg_barrier sweeper", || sweep(BATCH))
        }))
    })
    .catch_others(|caught| {
        // SAFETY: the error was caught and flushed; abort the transaction it interrupted.
        unsafe { pg_sys::AbortCurrentTransaction() };
        Err(match caught {
            pg_sys::panic::CaughtError::PostgresError(report)
            | pg_sys::panic::CaughtError::ErrorReport(report)
            | pg_sys::panic::CaughtError::RustPanic {
                ereport: report, ..
            } => report.message().to_string(),
        })
    })
    .execute()
}
