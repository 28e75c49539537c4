//! The fast path of a report: the common `barrier_decr` (a pending barrier that the report does
//! not complete) counted without SQL.
//!
//! Run through SPI, that report costs three statements, each with its own executor start-up,
//! constraint expressions and snapshot: several times the work of the counter update itself.
//! Here it is done with the access methods PostgreSQL's own executor uses for the same steps:
//!
//! 1. find the barrier's row through its primary key;
//! 2. for a slotted report, look for the slot's result (committed, in progress or our own);
//! 3. update the row's counter, which takes its row lock the way an `UPDATE` does (waiting for a
//!    concurrent holder; at READ COMMITTED following its change and deciding again on the newest
//!    version, which is then locked first; at REPEATABLE READ and above raising the same
//!    serialization failure an `UPDATE` raises);
//! 4. insert the result row and its index entry, with the primary key's own unique check.
//!
//! Step 2 is exact once step 3 holds the row: every writer of a barrier's result rows holds the
//! barrier's row lock and changes its row in the same transaction (the rule is written down in
//! src/schema.sql). So an update of the very version our snapshot read proves that no result was
//! committed since; and after following a concurrent change, the slot is looked up again under
//! the lock, before anything is written. Should a result row exist all the same, the unique check
//! waits for its writer and raises 23505: nothing is ever taken back.
//!
//! The path only takes reports it can finish: a success (never `failed => true`), the barrier is
//! pending and not past its ttl, the caller may act on it, the slot fits and has not reported
//! (a slot holding a failure is there: its re-arming goes to SQL), the results stay under their
//! cap, at least one more report will remain, and a quorum is not reached by this report. Everything else (an unknown id, a finished barrier,
//! the completing report, any bad argument, a repeated slot) is declined before anything is
//! written, and the SQL path in `report` handles it with its full logic and errors. Declining
//! after taking the row lock keeps it, and the SQL path then takes it again at no cost.
//!
//! It also declines unless the state tables are exactly as src/schema.sql makes them: plain heap
//! tables without triggers, rules, row security or generated columns, with our columns (names,
//! types, collations, NOT NULL flags), our CHECK constraints and our indexes, compared as
//! PostgreSQL deparses them (`EXPECTED_BARRIER` and `EXPECTED_RESULT`). Anything an
//! administrator changes there (a NOT NULL, another CHECK, an expression index, a trigger) sends
//! every report to the SQL path, which honours it. The comparison runs again after every
//! relcache invalidation of either table, so it costs nothing per report. Publications are
//! checked on every write, as the executor does (`CheckCmdReplicaIdentity`).
//!
//! `pg_barrier.fast_path = off` (superuser) sends every report to the SQL path.
//!
//! On Citus (docs/scale-out.md) the rows live in shards, not in the tables this path opens, and
//! Citus puts a truncate trigger on every distributed table: the path declines every report
//! there, and `barrier_distribute` empties the coordinator's local copies, so that nothing this
//! path could find is left in them either.
//!
//! Built for PostgreSQL 15 to 18. Where their access-method API differs, the code says which
//! major does what: PostgreSQL 16 made `heap_update` report which indexes an update needs
//! (`TU_UpdateIndexes`, with summarizing indexes apart) and gave `ExecInsertIndexTuples` the
//! matching argument; 17 added `index_insert_cleanup` after index inserts; 18 keeps a tuple
//! descriptor's attributes after compact copies of them, gave `index_beginscan` an
//! instrumentation argument and added virtual generated columns.

use crate::error::Result;
use crate::jsonb::RawJsonb;

/// The state tables as src/schema.sql creates them, in the form `fingerprint` writes: sorted
/// columns (name, type, collation, NOT NULL), CHECK constraints and index definitions. A test
/// compares them with the installed tables, fresh and upgraded.
pub const EXPECTED_BARRIER: &str = "\
check ((remaining >= 0) AND (remaining <= expected))
check ((status <> 'complete'::text) OR (remaining = 0) OR (need IS NOT NULL))
check ((status = 'pending'::text) = (finished_at IS NULL))
check ((taken_at IS NULL) OR (status = 'complete'::text) OR ((status = 'expired'::text) AND deliver))
check (expected >= 0)
check (failed >= 0)
check (need > 0)
check (result_bytes >= 0)
check (round > 0)
check (status = ANY (ARRAY['pending'::text, 'complete'::text, 'aborted'::text, 'expired'::text]))
column created_at timestamp with time zone not null
column deliver boolean not null
column expected integer not null
column expires_at timestamp with time zone not null
column failed integer not null
column finished_at timestamp with time zone
column id text collate 950 not null
column need integer
column owner regrole not null
column progress_at timestamp with time zone not null
column remaining integer not null
column result_bytes bigint not null
column round bigint not null
column sealed boolean not null
column slotted boolean
column status text collate 100 not null
column taken_at timestamp with time zone
index CREATE INDEX barrier_finished_age ON barrier_internal.barrier USING btree (finished_at) WHERE (status <> 'pending'::text)
index CREATE INDEX barrier_pending_expiry ON barrier_internal.barrier USING btree (expires_at) WHERE (status = 'pending'::text)
index CREATE INDEX barrier_untaken ON barrier_internal.barrier USING btree (finished_at) WHERE ((taken_at IS NULL) AND ((status = 'complete'::text) OR ((status = 'expired'::text) AND deliver)))
index CREATE UNIQUE INDEX barrier_pkey ON barrier_internal.barrier USING btree (id)
";

/// See `EXPECTED_BARRIER`.
pub const EXPECTED_RESULT: &str = "\
check (slot >= 0)
column barrier_id text collate 950 not null
column failed boolean not null
column result jsonb
column slot integer not null
index CREATE UNIQUE INDEX result_pkey ON barrier_internal.result USING btree (barrier_id, slot)
";

/// Counts the report if it is the common case: the barrier's new `remaining`. `None` hands it
/// to the SQL path untouched.
pub fn report(id: &str, result: Option<RawJsonb>, slot: Option<i32>) -> Result<Option<i32>> {
    if !crate::gucs::FAST_PATH.get() {
        return Ok(None);
    }
    let remaining = access::report(id, result, slot)?;
    #[cfg(any(test, feature = "pg_test"))]
    if remaining.is_some() {
        TAKEN.set(TAKEN.get() + 1);
    }
    Ok(remaining)
}

/// Forgets the verdict on the state tables when either changes; called once, from `_PG_init`.
pub fn init() {
    access::watch_tables();
}

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    /// Reports this backend counted on the fast path (test builds only: `tests.fast_reports()`).
    pub static TAKEN: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

/// The state tables' fingerprint as this backend sees them now (test builds only: compared with
/// `EXPECTED_BARRIER` and `EXPECTED_RESULT` by `tests.table_fingerprint()`).
#[cfg(any(test, feature = "pg_test"))]
pub fn fingerprint_of(table: &str) -> Option<String> {
    access::fingerprint_of(table)
}

mod access {
    use std::cell::Cell;
    use std::ffi::{CStr, CString};
    use std::fmt::Write;
    use std::ptr::null_mut;

    use pgrx::pg_sys::{self, Datum, Oid};
    use pgrx::{ereport, FromDatum, PgLogLevel, PgSqlErrorCode};

    use super::{EXPECTED_BARRIER, EXPECTED_RESULT};
    use crate::context::{Caller, PinnedSettings};
    use crate::error::Result;
    use crate::jsonb::RawJsonb;
    use crate::owner;
    use crate::validate;

    pub fn report(id: &str, result: Option<RawJsonb>, slot: Option<i32>) -> Result<Option<i32>> {
        // A read-only transaction or a standby: the SQL path raises what PostgreSQL raises
        // there (these access methods do not check). A call made from inside this path (by
        // code an administrator attached to our tables) takes the SQL path too.
        // SAFETY: reads backend-local state.
        if unsafe { pg_sys::XactReadOnly || pg_sys::RecoveryInProgress() } || BUSY.get() {
            return Ok(None);
        }
        let _busy = Busy::enter();
        let caller = Caller::capture();
        // SAFETY: catalog cache look-ups by name; nothing is held.
        let Some((barrier, results)) = (unsafe { state_tables() }) else {
            return Ok(None);
        };
        let _memory = Scratch::enter();
        // SAFETY: relations opened and locked here, memory in the scratch context above.
        unsafe { count(barrier, results, caller, id, result, slot) }
    }

    thread_local! {
        static SCRATCH: Cell<pg_sys::MemoryContext> = const { Cell::new(null_mut()) };
        static BUSY: Cell<bool> = const { Cell::new(false) };
        /// The state tables (barrier, result) this backend last opened, and how many relcache
        /// invalidations of either it has seen: a verdict stands while that count does.
        static WATCHED: Cell<(Oid, Oid)> = const { Cell::new((pg_sys::InvalidOid, pg_sys::InvalidOid)) };
        static CHANGES: Cell<u64> = const { Cell::new(0) };
        /// The state tables found as expected, and the count of changes then.
        static VERIFIED: Cell<Option<((Oid, Oid), u64)>> = const { Cell::new(None) };
    }

    /// Marks the path in use until dropped, also when unwinding from an error.
    struct Busy;

    impl Busy {
        fn enter() -> Busy {
            BUSY.set(true);
            Busy
        }
    }

    impl Drop for Busy {
        fn drop(&mut self) {
            BUSY.set(false);
        }
    }

    /// While alive, allocations go to a context of this backend's that lives as long as the
    /// backend and is emptied on every use. Dropping it (also when unwinding from an error)
    /// switches back to the caller's context.
    struct Scratch {
        previous: pg_sys::MemoryContext,
    }

    impl Scratch {
        fn enter() -> Scratch {
            // SAFETY: a context under TopMemoryContext lives as long as the backend; it is
            // reset here, before use, so whatever an interrupted call left there goes now.
            unsafe {
                let mut memory = SCRATCH.get();
                if memory.is_null() {
                    memory = pg_sys::AllocSetContextCreateInternal(
                        pg_sys::TopMemoryContext,
                        c"pg_barrier fast path".as_ptr(),
                        0,
                        8 * 1024,
                        8 * 1024 * 1024,
                    );
                    SCRATCH.set(memory);
                }
                pg_sys::MemoryContextReset(memory);
                Scratch {
                    previous: pg_sys::MemoryContextSwitchTo(memory),
                }
            }
        }
    }

    impl Drop for Scratch {
        fn drop(&mut self) {
            // SAFETY: restores the context `enter` replaced. When unwinding, the transaction's
            // abort resets contexts itself, and this one is emptied at its next use.
            unsafe {
                let memory = pg_sys::MemoryContextSwitchTo(self.previous);
                if !std::thread::panicking() {
                    pg_sys::MemoryContextReset(memory);
                }
            }
        }
    }

    /// Registers the relcache callback that counts changes of the state tables.
    pub fn watch_tables() {
        // SAFETY: one callback for the process's lifetime (PostgreSQL allows several per
        // process); it only clears a flag.
        unsafe {
            pg_sys::CacheRegisterRelcacheCallback(Some(tables_changed), Datum::from(0usize));
        }
    }

    #[pgrx::pg_guard]
    unsafe extern "C-unwind" fn tables_changed(_argument: Datum, relation: Oid) {
        let (barrier, results) = WATCHED.get();
        if relation == pg_sys::InvalidOid || relation == barrier || relation == results {
            CHANGES.set(CHANGES.get() + 1);
        }
    }

    /// The oids of the state tables, if the schema is there.
    unsafe fn state_tables() -> Option<(Oid, Oid)> {
        // SAFETY: forwarded.
        unsafe {
            let schema = pg_sys::get_namespace_oid(c"barrier_internal".as_ptr(), true);
            if schema == pg_sys::InvalidOid {
                return None;
            }
            let barrier = pg_sys::get_relname_relid(c"barrier".as_ptr(), schema);
            let results = pg_sys::get_relname_relid(c"result".as_ptr(), schema);
            (barrier != pg_sys::InvalidOid && results != pg_sys::InvalidOid)
                .then_some((barrier, results))
        }
    }

    const TEXT_FAMILY: Oid = pg_sys::TEXT_BTREE_FAM_OID;
    const INTEGER_FAMILY: Oid = pg_sys::INTEGER_BTREE_FAM_OID;

    /// The barrier row's columns that a report reads or writes, by attribute number.
    struct Columns {
        id: usize,
        owner: usize,
        status: usize,
        expected: usize,
        remaining: usize,
        slotted: usize,
        expires_at: usize,
        progress_at: usize,
        result_bytes: usize,
        failed: usize,
        need: usize,
        deliver: usize,
    }

    /// The row's values the decision needs.
    struct Row {
        /// The version has the id we looked for.
        same_id: bool,
        owner: Oid,
        pending: bool,
        expected: i32,
        remaining: i32,
        slotted: Option<bool>,
        expires_at: i64,
        result_bytes: i64,
        failed: i32,
        need: Option<i32>,
        deliver: bool,
    }

    /// One report's arguments.
    struct Report<'a> {
        caller: Caller,
        id: &'a str,
        id_datum: Datum,
        result: Option<RawJsonb>,
        slot: Option<i32>,
    }

    /// Both tables, open for writing, each with its primary key. Locks are kept until the
    /// transaction ends, as the executor keeps them.
    struct Tables {
        barrier: Keyed,
        results: Keyed,
        columns: Columns,
    }

    unsafe fn count(
        barrier_oid: Oid,
        results_oid: Oid,
        caller: Caller,
        id: &str,
        result: Option<RawJsonb>,
        slot: Option<i32>,
    ) -> Result<Option<i32>> {
        // SAFETY: see `report`; each opened object is closed on every path below, and on error
        // the transaction's abort releases them.
        unsafe {
            let Some(tables) = Tables::open(barrier_oid, results_oid) else {
                return Ok(None);
            };
            let report = Report {
                caller,
                id,
                id_datum: Datum::from(pg_sys::cstring_to_text_with_len(
                    id.as_ptr().cast(),
                    id.len() as i32,
                )),
                result,
                slot,
            };
            pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
            let row = pg_sys::table_slot_create(tables.barrier.table, null_mut());
            let remaining = count_in(&tables, row, &report);
            pg_sys::ExecDropSingleTupleTableSlot(row);
            pg_sys::PopActiveSnapshot();
            tables.close();
            Ok(remaining)
        }
    }

    impl Tables {
        /// Both tables, if they are as src/schema.sql makes them; `None`, with nothing left
        /// open, otherwise.
        unsafe fn open(barrier_oid: Oid, results_oid: Oid) -> Option<Tables> {
            // SAFETY: opens and locks the relations the way an INSERT or UPDATE does.
            unsafe {
                let oids = (barrier_oid, results_oid);
                WATCHED.set(oids);
                let barrier = pg_sys::table_open(barrier_oid, pg_sys::RowExclusiveLock as _);
                let results = pg_sys::table_open(results_oid, pg_sys::RowExclusiveLock as _);
                // Invalidations arrive while locks are taken, so the count is read after them.
                let changes = CHANGES.get();
                let verified = VERIFIED.get() == Some((oids, changes)) || {
                    // PostgreSQL deparses names relative to search_path: pinned, the text
                    // depends on the catalog alone.
                    let _settings = PinnedSettings::enter();
                    matches(barrier, EXPECTED_BARRIER) && matches(results, EXPECTED_RESULT)
                };
                // The result row is formed by position: (barrier_id, slot, result, failed).
                let columns = (verified
                    && (*(*results).rd_att).natts == 4
                    && column(results, c"result") == Some(2)
                    && column(results, c"failed") == Some(3))
                .then(|| columns(barrier))
                .flatten();
                let primaries = columns.as_ref().and_then(|_| {
                    let barrier_key = primary_key(barrier, &[TEXT_FAMILY])?;
                    match primary_key(results, &[TEXT_FAMILY, INTEGER_FAMILY]) {
                        Some(results_key) => Some((barrier_key, results_key)),
                        None => {
                            pg_sys::index_close(barrier_key, pg_sys::NoLock as _);
                            None
                        }
                    }
                });
                let (Some(columns), Some((barrier_key, results_key))) = (columns, primaries) else {
                    pg_sys::table_close(results, pg_sys::NoLock as _);
                    pg_sys::table_close(barrier, pg_sys::NoLock as _);
                    return None;
                };
                if CHANGES.get() != changes {
                    // A change arrived while the indexes were opened: decide again next time.
                    pg_sys::index_close(results_key, pg_sys::NoLock as _);
                    pg_sys::index_close(barrier_key, pg_sys::NoLock as _);
                    pg_sys::table_close(results, pg_sys::NoLock as _);
                    pg_sys::table_close(barrier, pg_sys::NoLock as _);
                    return None;
                }
                VERIFIED.set(Some((oids, changes)));
                Some(Tables {
                    barrier: Keyed {
                        table: barrier,
                        primary: barrier_key,
                    },
                    results: Keyed {
                        table: results,
                        primary: results_key,
                    },
                    columns,
                })
            }
        }

        unsafe fn close(self) {
            // SAFETY: opened by `open`.
            unsafe {
                self.results.close();
                self.barrier.close();
            }
        }
    }

    /// Counts the report; `None` to decline, before anything is written.
    ///
    /// The counter is updated straight from the version the snapshot sees, the way an `UPDATE`
    /// does: the update takes the row lock (waiting for a concurrent holder) and fails if that
    /// version is no longer the newest. At READ COMMITTED the newest version is then locked,
    /// decided on and probed again, holding the lock; at REPEATABLE READ and above the report
    /// fails with the serialization failure an `UPDATE` raises.
    unsafe fn count_in(
        tables: &Tables,
        row: *mut pg_sys::TupleTableSlot,
        report: &Report<'_>,
    ) -> Option<i32> {
        let (barrier, results, columns) = (&tables.barrier, &tables.results, &tables.columns);
        // SAFETY: open relations, a slot of the barrier table's kind, the active snapshot.
        unsafe {
            let snapshot = pg_sys::GetActiveSnapshot();
            let mut key = [key_on(
                barrier.primary,
                1,
                pg_sys::F_TEXTEQ,
                report.id_datum,
            )];
            if !fetch_by_key(barrier.table, barrier.primary, snapshot, &mut key, row) {
                return None;
            }
            let mut seen = read_row(row, columns, report.id);
            let (mut position, mut weight) = decide(report, &seen)?;
            if report.slot.is_some() && slot_reported(results, report.id_datum, position) {
                return None;
            }
            let mut outcome = update_counter(barrier.table, row, columns, &seen, report, weight);
            if outcome == Updated::Concurrently {
                if uses_transaction_snapshot() {
                    serialization_failure();
                }
                if !lock_newest(barrier.table, snapshot, row) {
                    return None;
                }
                // The newest version, which the executor would check against the WHERE clause
                // again (`read_row` compares its id), and the slot, now exactly.
                seen = read_row(row, columns, report.id);
                (position, weight) = decide(report, &seen)?;
                if report.slot.is_some() && slot_reported(results, report.id_datum, position) {
                    return None;
                }
                outcome = update_counter(barrier.table, row, columns, &seen, report, weight);
            }
            if outcome != Updated::Yes {
                // Gone, or (holding the lock, which cannot happen) changed again: nothing has
                // been written yet.
                return None;
            }
            insert_result(results, report, position);
            // Later statements and calls of this transaction see the changes, as after any SQL
            // statement.
            pg_sys::CommandCounterIncrement();
            Some(seen.remaining - 1)
        }
    }

    /// REPEATABLE READ or SERIALIZABLE: PostgreSQL's `IsolationUsesXactSnapshot()`.
    fn uses_transaction_snapshot() -> bool {
        // SAFETY: reads this backend's transaction state.
        unsafe { pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32 }
    }

    /// What PostgreSQL's executor raises when an `UPDATE` at REPEATABLE READ or SERIALIZABLE
    /// finds its row changed by a transaction its snapshot does not see.
    fn serialization_failure() -> ! {
        ereport!(
            PgLogLevel::ERROR,
            PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
            "could not serialize access due to concurrent update"
        );
        unreachable!("an ERROR does not return")
    }

    /// Whether `position` of the barrier has a result row: committed, in progress elsewhere or
    /// written by this transaction (a dirty snapshot). Exact while the barrier's row lock is
    /// held; before that a row in progress is seen, and one committed after our snapshot makes
    /// the counter update fail.
    unsafe fn slot_reported(results: &Keyed, id: Datum, position: i32) -> bool {
        // SAFETY: open relations; the slot and snapshot are ours.
        unsafe {
            let mut dirty = pg_sys::SnapshotData {
                snapshot_type: pg_sys::SnapshotType::SNAPSHOT_DIRTY,
                ..Default::default()
            };
            let found = pg_sys::table_slot_create(results.table, null_mut());
            let mut keys = [
                key_on(results.primary, 1, pg_sys::F_TEXTEQ, id),
                key_on(results.primary, 2, pg_sys::F_INT4EQ, Datum::from(position)),
            ];
            let reported =
                fetch_by_key(results.table, results.primary, &mut dirty, &mut keys, found);
            pg_sys::ExecDropSingleTupleTableSlot(found);
            reported
        }
    }

    /// Locks the newest version of the row in `row` (following its update chain, waiting for a
    /// concurrent holder), leaving that version in `row`. False if it was deleted.
    unsafe fn lock_newest(
        barrier: pg_sys::Relation,
        snapshot: pg_sys::Snapshot,
        row: *mut pg_sys::TupleTableSlot,
    ) -> bool {
        // SAFETY: an open relation, a slot holding one of its tuples.
        unsafe {
            let flags = pg_sys::TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS
                | pg_sys::TUPLE_LOCK_FLAG_FIND_LAST_VERSION;
            let mut tid = (*row).tts_tid;
            let mut failure = pg_sys::TM_FailureData::default();
            pg_sys::table_tuple_lock(
                barrier,
                &mut tid,
                snapshot,
                row,
                pg_sys::GetCurrentCommandId(true),
                pg_sys::LockTupleMode::LockTupleNoKeyExclusive,
                pg_sys::LockWaitPolicy::LockWaitBlock,
                flags as u8,
                &mut failure,
            ) == pg_sys::TM_Result::TM_Ok
        }
    }

    unsafe fn read_row(row: *mut pg_sys::TupleTableSlot, columns: &Columns, id: &str) -> Row {
        // SAFETY: a slot holding a tuple of the barrier table, whose columns `columns` located.
        unsafe {
            pg_sys::slot_getsomeattrs_int(row, (*(*row).tts_tupleDescriptor).natts);
            let value = |column: usize| {
                let datum = *(*row).tts_values.add(column);
                (!*(*row).tts_isnull.add(column)).then_some(datum)
            };
            let status = value(columns.status).and_then(|datum| <&str>::from_datum(datum, false));
            let row_id = value(columns.id).and_then(|datum| <&str>::from_datum(datum, false));
            Row {
                same_id: row_id == Some(id),
                owner: value(columns.owner).map_or(pg_sys::InvalidOid, |d| {
                    Oid::from_datum(d, false).unwrap_or_default()
                }),
                pending: status == Some("pending"),
                expected: value(columns.expected).map_or(0, |d| d.value() as i32),
                remaining: value(columns.remaining).map_or(0, |d| d.value() as i32),
                slotted: value(columns.slotted).map(|d| d.value() != 0),
                expires_at: value(columns.expires_at).map_or(i64::MIN, |d| d.value() as i64),
                result_bytes: value(columns.result_bytes).map_or(-1, |d| d.value() as i64),
                failed: value(columns.failed).map_or(-1, |d| d.value() as i32),
                need: value(columns.need).map(|d| d.value() as i32),
                deliver: value(columns.deliver).is_some_and(|d| d.value() != 0),
            }
        }
    }

    /// Whether this path may count the report: its position and the new result weight, or
    /// `None` to leave it to the SQL path.
    fn decide(report: &Report<'_>, row: &Row) -> Option<(i32, i64)> {
        let Report {
            caller,
            id,
            result,
            slot,
            ..
        } = *report;
        // SAFETY: reads the statement's start time.
        let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
        let usable = row.same_id
            && row.pending
            && row.expires_at > now
            && row.remaining > 1
            && row.remaining <= row.expected
            && row.result_bytes >= 0
            && row.failed >= 0
            // A quorum this report would reach completes: not here.
            && row
                .need
                .is_none_or(|need| row.expected - row.remaining - row.failed + 1 < need)
            && owner::may_act(caller, row.owner);
        if !usable {
            return None;
        }
        let position = match (row.slotted, slot) {
            (Some(true), None) | (Some(false), Some(_)) => return None,
            (_, Some(slot)) if slot >= row.expected => return None,
            (_, Some(slot)) => slot,
            (_, None) => row.expected - row.remaining,
        };
        // A completion that may leave slots out keeps room for their nulls (report::count).
        let room = validate::padding(row.expected, row.need.is_some() || row.deliver);
        let weight = validate::results_weight(id, row.result_bytes + room, result).ok()? - room;
        Some((position, weight))
    }

    /// How a counter update went.
    #[derive(PartialEq, Eq)]
    enum Updated {
        Yes,
        /// The version was no longer the newest: a concurrent transaction changed the row.
        Concurrently,
        /// The row is gone (or no version could be written).
        No,
    }

    /// Writes the decremented counter over the version in `row` (the one `seen` was read
    /// from), waiting for a concurrent holder of the row lock first.
    unsafe fn update_counter(
        barrier: pg_sys::Relation,
        row: *mut pg_sys::TupleTableSlot,
        columns: &Columns,
        seen: &Row,
        report: &Report<'_>,
        weight: i64,
    ) -> Updated {
        // SAFETY: `row` holds a tuple of `barrier`, pinned by the slot.
        unsafe {
            let old = pg_sys::ExecFetchSlotHeapTuple(row, false, null_mut());
            let natts = (*(*barrier).rd_att).natts as usize;
            let mut values = vec![Datum::from(0usize); natts];
            let mut nulls = vec![false; natts];
            let mut replace = vec![false; natts];
            for (column, value) in [
                (columns.remaining, Datum::from(seen.remaining - 1)),
                (columns.slotted, Datum::from(report.slot.is_some())),
                (columns.result_bytes, Datum::from(weight)),
                (
                    columns.progress_at,
                    Datum::from(pg_sys::GetCurrentStatementStartTimestamp()),
                ),
            ] {
                values[column] = value;
                replace[column] = true;
            }
            let new = pg_sys::heap_modify_tuple(
                old,
                (*barrier).rd_att,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
                replace.as_mut_ptr(),
            );
            pg_sys::CheckCmdReplicaIdentity(barrier, pg_sys::CmdType::CMD_UPDATE);
            let mut tid = (*row).tts_tid;
            let mut failure = pg_sys::TM_FailureData::default();
            let mut lock_mode = pg_sys::LockTupleMode::LockTupleNoKeyExclusive;
            #[cfg(not(feature = "pg15"))]
            let mut indexes = pg_sys::TU_UpdateIndexes::TU_None;
            let outcome = pg_sys::heap_update(
                barrier,
                &mut tid,
                new,
                pg_sys::GetCurrentCommandId(true),
                null_mut(),
                true,
                &mut failure,
                &mut lock_mode,
                #[cfg(not(feature = "pg15"))]
                &mut indexes,
            );
            match outcome {
                pg_sys::TM_Result::TM_Ok => {}
                pg_sys::TM_Result::TM_Updated => return Updated::Concurrently,
                pg_sys::TM_Result::TM_Deleted if uses_transaction_snapshot() => {
                    ereport!(
                        PgLogLevel::ERROR,
                        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                        "could not serialize access due to concurrent delete"
                    );
                }
                _ => return Updated::No,
            }
            // No room on the page for a HOT update: the new version needs index entries.
            #[cfg(feature = "pg15")]
            if !heap_only(new) {
                insert_index_entries(barrier, new, false);
            }
            // From 16 on, heap_update says which: none, all, or (a HOT update) only the
            // summarizing ones, which the fingerprint leaves no room for but are honoured.
            #[cfg(not(feature = "pg15"))]
            if indexes != pg_sys::TU_UpdateIndexes::TU_None {
                let summarizing = indexes == pg_sys::TU_UpdateIndexes::TU_Summarizing;
                insert_index_entries(barrier, new, summarizing);
            }
            Updated::Yes
        }
    }

    /// Whether an updated tuple stayed on its page without new index entries (a HOT update).
    #[cfg(feature = "pg15")]
    unsafe fn heap_only(tuple: pg_sys::HeapTuple) -> bool {
        // SAFETY: a tuple just written by heap_update, which marks the caller's copy.
        unsafe { (*(*tuple).t_data).t_infomask2 as u32 & pg_sys::HEAP_ONLY_TUPLE != 0 }
    }

    /// Inserts the result row and its primary-key entry. The key's unique check is the one an
    /// `INSERT` makes: it waits for a conflicting writer in progress and raises 23505 on a
    /// committed conflict (which the probe under the row lock rules out).
    unsafe fn insert_result(results: &Keyed, report: &Report<'_>, position: i32) {
        let (table, primary) = (results.table, results.primary);
        // SAFETY: open relations; the result table's four columns `Tables::open` checked. The
        // index's key columns come first, so `values` serves the index insert too.
        unsafe {
            let mut values = [
                report.id_datum,
                Datum::from(position),
                Datum::from(0usize),
                Datum::from(false),
            ];
            let mut nulls = [false, false, report.result.is_none(), false];
            if let Some(result) = report.result {
                values[2] = result.datum();
            }
            let tuple =
                pg_sys::heap_form_tuple((*table).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            // Toasts the value as needed; sets the tuple's new location in `t_self`.
            pg_sys::heap_insert(
                table,
                tuple,
                pg_sys::GetCurrentCommandId(true),
                0,
                null_mut(),
            );
            let info = pg_sys::BuildIndexInfo(primary);
            pg_sys::index_insert(
                primary,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
                &mut (*tuple).t_self,
                table,
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_YES,
                false,
                info,
            );
            // From 17 on, what an index access method cached for the insert is released here,
            // as the executor does (btree caches nothing; the call keeps the protocol).
            #[cfg(any(feature = "pg17", feature = "pg18"))]
            pg_sys::index_insert_cleanup(primary, info);
        }
    }

    /// Makes the index entries of a new version of a barrier row in every index whose predicate
    /// it meets, through the executor's routine, marked as an update that changed no indexed
    /// column: the hint that lets btree delete older duplicates bottom-up instead of splitting
    /// pages while old snapshots keep the row's versions alive.
    /// With `only_summarizing` (16 and later), only the summarizing indexes get entries.
    unsafe fn insert_index_entries(
        relation: pg_sys::Relation,
        tuple: pg_sys::HeapTuple,
        only_summarizing: bool,
    ) {
        // SAFETY: an open relation and a tuple just written to it. The ResultRelInfo has no
        // range table entry: the executor then counts no column as updated, and a report
        // changes none that an index covers.
        unsafe {
            let estate = pg_sys::CreateExecutorState();
            let info = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
                .cast::<pg_sys::ResultRelInfo>();
            pg_sys::InitResultRelInfo(info, relation, 0, null_mut(), 0);
            pg_sys::ExecOpenIndices(info, false);
            let slot =
                pg_sys::MakeSingleTupleTableSlot((*relation).rd_att, &pg_sys::TTSOpsHeapTuple);
            pg_sys::ExecStoreHeapTuple(tuple, slot, false);
            #[cfg(feature = "pg15")]
            let _ = only_summarizing;
            pg_sys::ExecInsertIndexTuples(
                info,
                slot,
                estate,
                true,
                false,
                null_mut(),
                null_mut(),
                #[cfg(not(feature = "pg15"))]
                only_summarizing,
            );
            pg_sys::ExecDropSingleTupleTableSlot(slot);
            pg_sys::ExecCloseIndices(info);
            pg_sys::FreeExecutorState(estate);
        }
    }

    /// An equality scan key on index column `column` (1-based), compared in the index's own
    /// collation (the default `ScanKeyInit` collation, C, would walk a tree sorted otherwise).
    unsafe fn key_on(
        index: pg_sys::Relation,
        column: usize,
        procedure: u32,
        value: Datum,
    ) -> pg_sys::ScanKeyData {
        // SAFETY: an open index with at least `column` key columns.
        unsafe {
            let mut key = pg_sys::ScanKeyData::default();
            pg_sys::ScanKeyEntryInitialize(
                &mut key,
                0,
                column as pg_sys::AttrNumber,
                pg_sys::BTEqualStrategyNumber as pg_sys::StrategyNumber,
                pg_sys::InvalidOid,
                *(*index).rd_indcollation.add(column - 1),
                Oid::from(procedure),
                value,
            );
            key
        }
    }

    /// The first row the index finds for `keys` under `snapshot`, stored in `slot`.
    unsafe fn fetch_by_key(
        table: pg_sys::Relation,
        index: pg_sys::Relation,
        snapshot: pg_sys::Snapshot,
        keys: &mut [pg_sys::ScanKeyData],
        slot: *mut pg_sys::TupleTableSlot,
    ) -> bool {
        // SAFETY: open relations; the scan ends before returning.
        unsafe {
            let scan = pg_sys::index_beginscan(
                table,
                index,
                snapshot,
                #[cfg(feature = "pg18")]
                null_mut(),
                keys.len() as i32,
                0,
            );
            pg_sys::index_rescan(scan, keys.as_mut_ptr(), keys.len() as i32, null_mut(), 0);
            let found =
                pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
            pg_sys::index_endscan(scan);
            found
        }
    }

    /// Whether the open table is exactly as `expected` describes it (see `fingerprint`).
    unsafe fn matches(relation: pg_sys::Relation, expected: &str) -> bool {
        // SAFETY: forwarded.
        unsafe { fingerprint(relation).as_deref() == Some(expected) }
    }

    /// What the path relies on in a table, as text: its columns (sorted by name: upgrades may
    /// have added some at the end) with type, collation and NOT NULL; its CHECK constraints
    /// and its index definitions, each as PostgreSQL deparses them, sorted. `None` for a table
    /// that is not a plain heap table (triggers, rules, row security, partitioning, generated
    /// columns, an index that is not yet valid or whose uniqueness is deferred).
    unsafe fn fingerprint(relation: pg_sys::Relation) -> Option<String> {
        // SAFETY: an open relation; the strings PostgreSQL returns are in the scratch context.
        unsafe {
            let class = &*(*relation).rd_rel;
            let descriptor = (*relation).rd_att;
            let constraints = (*descriptor).constr;
            #[cfg(not(feature = "pg18"))]
            let generated = !constraints.is_null() && (*constraints).has_generated_stored;
            #[cfg(feature = "pg18")]
            let generated = !constraints.is_null()
                && ((*constraints).has_generated_stored || (*constraints).has_generated_virtual);
            let plain = class.relam == pg_sys::HEAP_TABLE_AM_OID
                && class.relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char
                && !class.relrowsecurity
                && !class.relhasrules
                && !class.relispartition
                && (*relation).trigdesc.is_null()
                && !generated;
            if !plain {
                return None;
            }
            let mut lines = Vec::new();
            for attribute in attributes(descriptor) {
                if attribute.attisdropped {
                    continue;
                }
                let type_name = CStr::from_ptr(pg_sys::format_type_be(attribute.atttypid));
                let mut line = format!(
                    "column {} {}",
                    CStr::from_ptr(attribute.attname.data.as_ptr()).to_string_lossy(),
                    type_name.to_string_lossy()
                );
                if attribute.attcollation != pg_sys::InvalidOid {
                    write!(line, " collate {}", attribute.attcollation.to_u32()).ok()?;
                }
                if attribute.attnotnull {
                    line.push_str(" not null");
                }
                lines.push(line);
            }
            if !constraints.is_null() {
                let name = CString::new("t").ok()?;
                let context = pg_sys::deparse_context_for(name.as_ptr(), (*relation).rd_id);
                let checks = std::slice::from_raw_parts(
                    (*constraints).check,
                    (*constraints).num_check as usize,
                );
                for check in checks {
                    let expression = pg_sys::stringToNode(check.ccbin).cast::<pg_sys::Node>();
                    let text = pg_sys::deparse_expression(expression, context, false, false);
                    lines.push(format!("check {}", CStr::from_ptr(text).to_string_lossy()));
                }
            }
            let list = pg_sys::RelationGetIndexList(relation);
            let indexes = if list.is_null() {
                &[][..]
            } else {
                std::slice::from_raw_parts((*list).elements, (*list).length as usize)
            };
            for cell in indexes {
                let index = cell.oid_value;
                let tuple = pg_sys::SearchSysCache1(
                    pg_sys::SysCacheIdentifier::INDEXRELID as i32,
                    index.into(),
                );
                if tuple.is_null() {
                    return None;
                }
                let form = &*pg_sys::heap_tuple_get_struct::<pg_sys::FormData_pg_index>(tuple);
                let usable = form.indisvalid && form.indisready && form.indimmediate;
                pg_sys::ReleaseSysCache(tuple);
                if !usable {
                    return None;
                }
                let definition = CStr::from_ptr(pg_sys::pg_get_indexdef_string(index));
                lines.push(format!("index {}", definition.to_string_lossy()));
            }
            lines.sort();
            Some(lines.iter().map(|line| format!("{line}\n")).collect())
        }
    }

    /// The fingerprint of `barrier_internal.<table>`, for the test that compares it with the
    /// expected one.
    #[cfg(any(test, feature = "pg_test"))]
    pub fn fingerprint_of(table: &str) -> Option<String> {
        let name = CString::new(table).ok()?;
        let _memory = Scratch::enter();
        let _settings = PinnedSettings::enter();
        // SAFETY: opened and closed here.
        unsafe {
            let schema = pg_sys::get_namespace_oid(c"barrier_internal".as_ptr(), false);
            let oid = pg_sys::get_relname_relid(name.as_ptr(), schema);
            let relation = pg_sys::table_open(oid, pg_sys::AccessShareLock as _);
            let text = fingerprint(relation);
            pg_sys::table_close(relation, pg_sys::AccessShareLock as _);
            text
        }
    }

    /// The barrier table's columns, by name (an upgraded table may have them in another order).
    unsafe fn columns(barrier: pg_sys::Relation) -> Option<Columns> {
        // SAFETY: an open relation.
        unsafe {
            let find = |name: &CStr| column(barrier, name);
            Some(Columns {
                id: find(c"id")?,
                owner: find(c"owner")?,
                status: find(c"status")?,
                expected: find(c"expected")?,
                remaining: find(c"remaining")?,
                slotted: find(c"slotted")?,
                expires_at: find(c"expires_at")?,
                progress_at: find(c"progress_at")?,
                result_bytes: find(c"result_bytes")?,
                failed: find(c"failed")?,
                need: find(c"need")?,
                deliver: find(c"deliver")?,
            })
        }
    }

    /// The 0-based position of a live column. (Its type is in the fingerprint.)
    unsafe fn column(relation: pg_sys::Relation, name: &CStr) -> Option<usize> {
        // SAFETY: an open relation's tuple descriptor.
        unsafe {
            attributes((*relation).rd_att).iter().position(|attribute| {
                !attribute.attisdropped && CStr::from_ptr(attribute.attname.data.as_ptr()) == name
            })
        }
    }

    /// A tuple descriptor's attributes. PostgreSQL 18 stores them after an array of compact
    /// copies, one per attribute, where earlier majors start the array with them.
    unsafe fn attributes<'a>(descriptor: pg_sys::TupleDesc) -> &'a [pg_sys::FormData_pg_attribute] {
        // SAFETY: a valid descriptor of `natts` attributes, laid out as its major lays it out.
        unsafe {
            let count = (*descriptor).natts as usize;
            #[cfg(not(feature = "pg18"))]
            let first = (*descriptor).attrs.as_ptr();
            #[cfg(feature = "pg18")]
            let first = (*descriptor)
                .compact_attrs
                .as_ptr()
                .add(count)
                .cast::<pg_sys::FormData_pg_attribute>();
            std::slice::from_raw_parts(first, count)
        }
    }

    /// A table open for writing, with its primary key.
    struct Keyed {
        table: pg_sys::Relation,
        primary: pg_sys::Relation,
    }

    impl Keyed {
        unsafe fn close(&self) {
            // SAFETY: both were opened by `Tables::open`.
            unsafe {
                pg_sys::index_close(self.primary, pg_sys::NoLock as _);
                pg_sys::table_close(self.table, pg_sys::NoLock as _);
            }
        }
    }

    /// The table's primary key, opened, if it is a btree on the table's first columns, in
    /// order, each with `families` (the fingerprint has the rest of its definition). The result
    /// table's row is formed by position: (barrier_id, slot, result).
    unsafe fn primary_key(
        relation: pg_sys::Relation,
        families: &[Oid],
    ) -> Option<pg_sys::Relation> {
        // SAFETY: an open relation; the index is opened with the lock that writes need.
        unsafe {
            // Loads the relation's index list, which sets `rd_pkindex`.
            pg_sys::list_free(pg_sys::RelationGetIndexList(relation));
            let oid = (*relation).rd_pkindex;
            if oid == pg_sys::InvalidOid {
                return None;
            }
            let index = pg_sys::index_open(oid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            let form = &*(*index).rd_index;
            let keys = form.indkey.values.as_slice(form.indnatts as usize);
            let index_families = std::slice::from_raw_parts((*index).rd_opfamily, families.len());
            let fits = (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
                && form.indnkeyatts as usize == families.len()
                && form.indnatts == form.indnkeyatts
                && keys
                    .iter()
                    .enumerate()
                    .all(|(position, attnum)| *attnum as usize == position + 1)
                && index_families == families;
            if fits {
                Some(index)
            } else {
                pg_sys::index_close(index, pg_sys::NoLock as _);
                None
            }
        }
    }
}
