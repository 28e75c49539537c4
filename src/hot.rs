//! The common decrement without SQL: one task reporting to a pending barrier that it does not
//! complete.
//!
//! Run through SPI, that report costs three statements, each with its own executor start-up,
//! constraint expressions and snapshot: several times the work of the counter update itself.
//! Here it is done with the access methods PostgreSQL's own executor uses for the same steps:
//!
//! 1. find the hot row through its primary key and lock it `FOR NO KEY UPDATE`, following
//!    concurrent updates at READ COMMITTED like `SELECT ... FOR NO KEY UPDATE` does;
//! 2. look for the slot's result under a dirty snapshot (committed and our own rows);
//! 3. insert the result row and its index entries;
//! 4. update the hot row (HOT whenever the page has room; otherwise its index entries are made
//!    by the executor's own routine, which evaluates partial-index predicates).
//!
//! The path only takes reports it can finish: the barrier is pending and not past its ttl, the
//! caller may act on it, the slot fits, the results stay under their cap, and at least one more
//! report will remain. Everything else (an unknown id, a finished barrier, the completing report,
//! any bad argument, a table somebody changed) is declined before anything is written, and the
//! SQL path in `api` handles it with its full logic and errors. Declining keeps the row lock,
//! which that path then takes again at no cost.
//!
//! The state tables are ours and plain heap tables; each call checks that they still are (no
//! triggers, no row security, the columns and keys we expect) and declines otherwise. The CHECK
//! constraints of the hot row hold by construction here: `remaining` only moves from at least 2
//! to at least 1, and nothing else that they cover changes.
//!
//! Built against PostgreSQL 15's access-method API, the version we build and test; on other
//! versions every report takes the SQL path.

use crate::error::Result;
use crate::jsonb::RawJsonb;

/// The CHECK constraints and indexes src/schema.sql gives the hot-row and result tables. The
/// fast path declines on tables with any other number (an administrator's addition), so these
/// must follow the schema; a test compares them with the installed tables.
pub const BARRIER_CHECKS: u16 = 8;
pub const BARRIER_INDEXES: i32 = 4;
pub const RESULT_CHECKS: u16 = 1;
pub const RESULT_INDEXES: i32 = 1;

/// What a finished fast report answers: `pending` with the new remaining count, or
/// `duplicate` (the slot had reported) with the unchanged one.
pub struct Answer {
    pub status: &'static str,
    pub remaining: i32,
}

/// Counts the report if it is the common case; `None` hands it to the SQL path untouched.
#[cfg(feature = "pg15")]
pub fn decrement(id: &str, result: Option<RawJsonb>, slot: Option<i32>) -> Result<Option<Answer>> {
    let answer = pg15::decrement(id, result, slot)?;
    #[cfg(any(test, feature = "pg_test"))]
    if answer.is_some() {
        TAKEN.set(TAKEN.get() + 1);
    }
    Ok(answer)
}

#[cfg(any(test, feature = "pg_test"))]
thread_local! {
    /// Reports this backend counted on the fast path (test builds only: `tests.fast_reports()`).
    pub static TAKEN: std::cell::Cell<i64> = const { std::cell::Cell::new(0) };
}

#[cfg(not(feature = "pg15"))]
pub fn decrement(
    _id: &str,
    _result: Option<RawJsonb>,
    _slot: Option<i32>,
) -> Result<Option<Answer>> {
    Ok(None)
}

#[cfg(feature = "pg15")]
mod pg15 {
    use std::ffi::CStr;
    use std::ptr::null_mut;

    use pgrx::pg_sys::{self, Datum, Oid};
    use pgrx::FromDatum;

    use super::Answer;
    use crate::error::Result;
    use crate::jsonb::RawJsonb;
    use crate::security::{self, Caller};
    use crate::validate;

    pub fn decrement(
        id: &str,
        result: Option<RawJsonb>,
        slot: Option<i32>,
    ) -> Result<Option<Answer>> {
        // A read-only transaction or a standby: the SQL path raises what PostgreSQL raises
        // there (these access methods do not check). A call made from inside this path (by an
        // index expression an administrator added) takes the SQL path too.
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
        // SAFETY: everything below works on relations opened and locked here, allocating in
        // this backend's scratch context, which is emptied before returning (or, after an
        // error, at the next call).
        unsafe {
            let memory = scratch_memory();
            let previous = pg_sys::MemoryContextSwitchTo(memory);
            let answer = count(barrier, results, caller, id, result, slot);
            pg_sys::MemoryContextSwitchTo(previous);
            pg_sys::MemoryContextReset(memory);
            answer
        }
    }

    thread_local! {
        static SCRATCH: std::cell::Cell<pg_sys::MemoryContext> =
            const { std::cell::Cell::new(null_mut()) };
        static BUSY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }

    /// Marks the path in use (its scratch memory is live) until dropped, also when unwinding.
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

    /// A memory context for one call, kept for the backend's life and emptied on every use.
    unsafe fn scratch_memory() -> pg_sys::MemoryContext {
        // SAFETY: a context under TopMemoryContext lives as long as the backend.
        unsafe {
            let mut memory = SCRATCH.get();
            if memory.is_null() {
                memory = pg_sys::AllocSetContextCreateInternal(
                    pg_sys::TopMemoryContext,
                    c"pg_barrier decrement".as_ptr(),
                    0,
                    8 * 1024,
                    8 * 1024 * 1024,
                );
                SCRATCH.set(memory);
            }
            pg_sys::MemoryContextReset(memory);
            memory
        }
    }

    /// The oids of the hot-row and result tables, if the schema is there.
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

    /// What src/schema.sql creates (checked against the installed tables by a test).
    const BARRIER_CHECKS: u16 = super::BARRIER_CHECKS;
    const BARRIER_INDEXES: i32 = super::BARRIER_INDEXES;
    const RESULT_CHECKS: u16 = super::RESULT_CHECKS;
    const RESULT_INDEXES: i32 = super::RESULT_INDEXES;
    const TEXT_FAMILY: Oid = pg_sys::TEXT_BTREE_FAM_OID;
    const INTEGER_FAMILY: Oid = pg_sys::INTEGER_BTREE_FAM_OID;

    /// The hot row's columns that a decrement reads or writes, by attribute number.
    struct HotColumns {
        id: usize,
        owner: usize,
        status: usize,
        expected: usize,
        remaining: usize,
        slotted: usize,
        expires_at: usize,
        progress_at: usize,
        result_bytes: usize,
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
    }

    unsafe fn count(
        barrier_oid: Oid,
        results_oid: Oid,
        caller: Caller,
        id: &str,
        result: Option<RawJsonb>,
        slot: Option<i32>,
    ) -> Result<Option<Answer>> {
        // SAFETY: see `decrement`; each opened object is closed on every path below, and on error
        // the transaction's abort releases them.
        unsafe {
            let table = pg_sys::table_open(barrier_oid, pg_sys::RowExclusiveLock as _);
            let columns = hot_columns(table);
            let key = columns.as_ref().map(|columns| [(columns.id, TEXT_FAMILY)]);
            let (Some(columns), Some(hot)) =
                (columns, Keyed::new(table, key.as_ref().map(|k| &k[..])))
            else {
                return Ok(None);
            };
            let table = pg_sys::table_open(results_oid, pg_sys::RowExclusiveLock as _);
            // The result table's only index is its primary key, which we maintain ourselves.
            let ours = plain_table(table, RESULT_CHECKS, RESULT_INDEXES) && result_columns(table);
            let key = [(0, TEXT_FAMILY), (1, INTEGER_FAMILY)];
            let Some(stored) = Keyed::new(table, ours.then_some(&key[..])) else {
                hot.close();
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
            let row = pg_sys::table_slot_create(hot.table, null_mut());
            let answer = count_in(&hot, &stored, &columns, row, &report);
            pg_sys::ExecDropSingleTupleTableSlot(row);
            pg_sys::PopActiveSnapshot();
            stored.close();
            hot.close();
            Ok(answer)
        }
    }

    /// One report's arguments.
    struct Report<'a> {
        caller: Caller,
        id: &'a str,
        id_datum: Datum,
        result: Option<RawJsonb>,
        slot: Option<i32>,
    }

    /// Counts the report with the hot row in `row`'s slot; `None` to decline.
    ///
    /// The counter is updated first, straight from the version the snapshot sees, the way an
    /// `UPDATE` does: the update takes the row lock (waiting for a concurrent holder) and fails
    /// if that version is no longer the newest. At READ COMMITTED the newest version is then
    /// locked and decided on again; at REPEATABLE READ and above the report is declined and the
    /// SQL path raises the serialization failure. Holding the row, the result is recorded. A
    /// slot seen to have reported before the update goes to the SQL path; one that a concurrent
    /// reporter committed between that look and our update is caught by the insert's unique
    /// check, and then the result row is taken back and the counter restored.
    unsafe fn count_in(
        hot: &Keyed,
        stored: &Keyed,
        columns: &HotColumns,
        row: *mut pg_sys::TupleTableSlot,
        report: &Report<'_>,
    ) -> Option<Answer> {
        // SAFETY: open relations, a slot of the hot table's kind, the active snapshot.
        unsafe {
            let snapshot = pg_sys::GetActiveSnapshot();
            let mut key = [key_on(hot.primary, 1, pg_sys::F_TEXTEQ, report.id_datum)];
            if !fetch_by_key(hot.table, hot.primary, snapshot, &mut key, row) {
                return None;
            }
            let mut seen = read_row(row, columns, report.id);
            let (mut position, mut weight) = decide(report, &seen)?;
            // A slot that has reported goes to the SQL path, which answers `duplicate` holding
            // only the row lock (writing and taking back here would make concurrent reporters
            // at REPEATABLE READ fail for a report that changed nothing).
            if report.slot.is_some() && slot_reported(stored, report.id_datum, position) {
                return None;
            }
            // A copy of the version we count from, to restore should the slot have reported.
            let mut old =
                pg_sys::heap_copytuple(pg_sys::ExecFetchSlotHeapTuple(row, false, null_mut()));
            let mut counted = update_counter(hot.table, old, columns, &seen, report, weight);
            if counted.is_none() {
                if pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32
                    || !lock_newest(hot.table, snapshot, row)
                {
                    return None;
                }
                // The newest version, which the executor would check against the WHERE clause
                // again: `read_row` compares its id.
                seen = read_row(row, columns, report.id);
                (position, weight) = decide(report, &seen)?;
                old =
                    pg_sys::heap_copytuple(pg_sys::ExecFetchSlotHeapTuple(row, false, null_mut()));
                counted = update_counter(hot.table, old, columns, &seen, report, weight);
            }
            // Holding the row lock, the update cannot miss; if it did, nothing is written yet.
            let mut counter = counted?;
            let recorded = insert_result(stored, report, position);
            // Later statements and calls of this transaction see the changes, as after any SQL
            // statement (and the restore below sees the new counter version).
            pg_sys::CommandCounterIncrement();
            if recorded {
                return Some(Answer {
                    status: "pending",
                    remaining: seen.remaining - 1,
                });
            }
            // The slot had reported: the counter goes back to what it was.
            pg_sys::simple_heap_update(hot.table, &mut counter, old);
            if !heap_only(old) {
                insert_index_entries(hot.table, old);
            }
            pg_sys::CommandCounterIncrement();
            // Only a slotted report can repeat; a taken arrival position is for the SQL path
            // to report.
            report.slot.map(|_| Answer {
                status: "duplicate",
                remaining: seen.remaining,
            })
        }
    }

    /// Whether `position` has a result row, committed or written by this transaction.
    ///
    /// Looked up without the barrier's row lock, so this is a hint: a committer may come between
    /// the look and the update, and the insert's own unique check catches that.
    unsafe fn slot_reported(stored: &Keyed, id: Datum, position: i32) -> bool {
        // SAFETY: open relations; the slot is dropped before returning.
        unsafe {
            let mut dirty = pg_sys::SnapshotData {
                snapshot_type: pg_sys::SnapshotType::SNAPSHOT_DIRTY,
                ..Default::default()
            };
            let mut keys = [
                key_on(stored.primary, 1, pg_sys::F_TEXTEQ, id),
                key_on(stored.primary, 2, pg_sys::F_INT4EQ, Datum::from(position)),
            ];
            let found = pg_sys::table_slot_create(stored.table, null_mut());
            let reported = fetch_by_key(stored.table, stored.primary, &mut dirty, &mut keys, found);
            pg_sys::ExecDropSingleTupleTableSlot(found);
            reported
        }
    }

    /// Locks the newest version of the row in `row` FOR NO KEY UPDATE, waiting for a concurrent
    /// holder as the executor's row locking does, and leaves it in `row`.
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

    unsafe fn read_row(row: *mut pg_sys::TupleTableSlot, columns: &HotColumns, id: &str) -> Row {
        // SAFETY: a slot holding a tuple of the hot-row table, whose columns `columns` located.
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
            && security::may_act(caller, row.owner);
        if !usable {
            return None;
        }
        let position = match (row.slotted, slot) {
            (Some(true), None) | (Some(false), Some(_)) => return None,
            (_, Some(slot)) if slot >= row.expected => return None,
            (_, Some(slot)) => slot,
            (_, None) => row.expected - row.remaining,
        };
        let weight = validate::results_weight(id, row.result_bytes, result).ok()?;
        Some((position, weight))
    }

    /// Writes the decremented counter over `old` (the version `seen` was read from). The new
    /// version's location, or `None` if `old` is no longer the newest (or is gone); the update
    /// waits for a concurrent holder of the row first.
    unsafe fn update_counter(
        barrier: pg_sys::Relation,
        old: pg_sys::HeapTuple,
        columns: &HotColumns,
        seen: &Row,
        report: &Report<'_>,
        weight: i64,
    ) -> Option<pg_sys::ItemPointerData> {
        // SAFETY: `old` is a tuple of `barrier`, pinned by the caller's slot.
        unsafe {
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
            let mut tid = (*old).t_self;
            let mut failure = pg_sys::TM_FailureData::default();
            let mut lock_mode = pg_sys::LockTupleMode::LockTupleNoKeyExclusive;
            let outcome = pg_sys::heap_update(
                barrier,
                &mut tid,
                new,
                pg_sys::GetCurrentCommandId(true),
                null_mut(),
                true,
                &mut failure,
                &mut lock_mode,
            );
            if outcome != pg_sys::TM_Result::TM_Ok {
                return None;
            }
            if !heap_only(new) {
                // No room on the page for a HOT update: the new version needs index entries.
                insert_index_entries(barrier, new);
            }
            Some((*new).t_self)
        }
    }

    /// Whether an updated tuple stayed on its page without new index entries (a HOT update).
    unsafe fn heap_only(tuple: pg_sys::HeapTuple) -> bool {
        // SAFETY: a tuple just written by heap_update, which marks the caller's copy.
        unsafe { (*(*tuple).t_data).t_infomask2 as u32 & pg_sys::HEAP_ONLY_TUPLE != 0 }
    }

    /// Inserts the result row; false, with the row taken back, if `position` already has one.
    ///
    /// The uniqueness check is the primary key's own, made while inserting the index entry
    /// (one descent of the index instead of a look-up and an insert). Under the barrier's row
    /// lock no other transaction writes this barrier's results, so a conflict is a committed
    /// row or one of ours: the slot has reported. The row we wrote is then deleted again; it
    /// and its index entry are dead once we commit, like the row of a rolled-back insert.
    unsafe fn insert_result(stored: &Keyed, report: &Report<'_>, position: i32) -> bool {
        let (results, primary) = (stored.table, stored.primary);
        let (id, result) = (report.id_datum, report.result);
        // SAFETY: open relations; the result table's three columns `result_columns` checked.
        unsafe {
            let mut values = [id, Datum::from(position), Datum::from(0usize)];
            let mut nulls = [false, false, result.is_none()];
            if let Some(result) = result {
                values[2] = result.datum();
            }
            let tuple =
                pg_sys::heap_form_tuple((*results).rd_att, values.as_mut_ptr(), nulls.as_mut_ptr());
            // Toasts the value as needed; sets the tuple's new location in `t_self`.
            pg_sys::heap_insert(
                results,
                tuple,
                pg_sys::GetCurrentCommandId(true),
                0,
                null_mut(),
            );
            let unique = pg_sys::index_insert(
                primary,
                values.as_mut_ptr(),
                nulls.as_mut_ptr(),
                &mut (*tuple).t_self,
                results,
                pg_sys::IndexUniqueCheck::UNIQUE_CHECK_PARTIAL,
                false,
                pg_sys::BuildIndexInfo(primary),
            );
            if !unique {
                // Our row must be visible to the delete as an earlier command's.
                pg_sys::CommandCounterIncrement();
                pg_sys::simple_heap_delete(results, &mut (*tuple).t_self);
            }
            unique
        }
    }

    /// Makes the index entries of a newly written heap tuple in every index of `relation`,
    /// through the executor's routine (partial-index predicates and unique checks included).
    unsafe fn insert_index_entries(relation: pg_sys::Relation, tuple: pg_sys::HeapTuple) {
        // SAFETY: an open relation and a tuple just written to it.
        unsafe {
            let estate = pg_sys::CreateExecutorState();
            let info = pg_sys::palloc0(std::mem::size_of::<pg_sys::ResultRelInfo>())
                .cast::<pg_sys::ResultRelInfo>();
            pg_sys::InitResultRelInfo(info, relation, 0, null_mut(), 0);
            pg_sys::ExecOpenIndices(info, false);
            let slot =
                pg_sys::MakeSingleTupleTableSlot((*relation).rd_att, &pg_sys::TTSOpsHeapTuple);
            pg_sys::ExecStoreHeapTuple(tuple, slot, false);
            pg_sys::ExecInsertIndexTuples(info, slot, estate, false, false, null_mut(), null_mut());
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
            let scan = pg_sys::index_beginscan(table, index, snapshot, keys.len() as i32, 0);
            pg_sys::index_rescan(scan, keys.as_mut_ptr(), keys.len() as i32, null_mut(), 0);
            let found =
                pg_sys::index_getnext_slot(scan, pg_sys::ScanDirection::ForwardScanDirection, slot);
            pg_sys::index_endscan(scan);
            found
        }
    }

    /// A plain heap table as we created it: no triggers, rules, row security or partitioning,
    /// no generated columns, and exactly our CHECK constraints and indexes (counted: anything an
    /// administrator adds makes the fast path decline, and the SQL path honours it).
    unsafe fn plain_table(relation: pg_sys::Relation, checks: u16, indexes: i32) -> bool {
        // SAFETY: an open relation.
        unsafe {
            let class = &*(*relation).rd_rel;
            let constraints = (*(*relation).rd_att).constr;
            let (check_count, generated) = if constraints.is_null() {
                (0, false)
            } else {
                (
                    (*constraints).num_check,
                    (*constraints).has_generated_stored,
                )
            };
            class.relam == pg_sys::HEAP_TABLE_AM_OID
                && class.relkind == pg_sys::RELKIND_RELATION as std::ffi::c_char
                && !class.relrowsecurity
                && !class.relhasrules
                && !class.relispartition
                && (*relation).trigdesc.is_null()
                && check_count == checks
                && !generated
                && index_count(relation) == indexes
        }
    }

    /// The hot-row table's columns, if it is the plain table we expect.
    unsafe fn hot_columns(barrier: pg_sys::Relation) -> Option<HotColumns> {
        // SAFETY: an open relation.
        unsafe {
            if !plain_table(barrier, BARRIER_CHECKS, BARRIER_INDEXES) {
                return None;
            }
            let find = |name: &CStr, type_oid: Oid| column(barrier, name, type_oid);
            Some(HotColumns {
                id: find(c"id", pg_sys::TEXTOID)?,
                owner: find(c"owner", pg_sys::REGROLEOID)?,
                status: find(c"status", pg_sys::TEXTOID)?,
                expected: find(c"expected", pg_sys::INT4OID)?,
                remaining: find(c"remaining", pg_sys::INT4OID)?,
                slotted: find(c"slotted", pg_sys::BOOLOID)?,
                expires_at: find(c"expires_at", pg_sys::TIMESTAMPTZOID)?,
                progress_at: find(c"progress_at", pg_sys::TIMESTAMPTZOID)?,
                result_bytes: find(c"result_bytes", pg_sys::INT8OID)?,
            })
        }
    }

    /// The result table has exactly the columns (barrier_id, slot, result), in that order.
    unsafe fn result_columns(results: pg_sys::Relation) -> bool {
        // SAFETY: an open relation.
        unsafe {
            (*(*results).rd_att).natts == 3
                && column(results, c"barrier_id", pg_sys::TEXTOID) == Some(0)
                && column(results, c"slot", pg_sys::INT4OID) == Some(1)
                && column(results, c"result", pg_sys::JSONBOID) == Some(2)
        }
    }

    /// How many indexes the table has.
    unsafe fn index_count(relation: pg_sys::Relation) -> i32 {
        // SAFETY: an open relation; the list is a copy we free.
        unsafe {
            let list = pg_sys::RelationGetIndexList(relation);
            let count = if list.is_null() { 0 } else { (*list).length };
            pg_sys::list_free(list);
            count
        }
    }

    /// The 0-based position of a live column, if it has this type.
    unsafe fn column(relation: pg_sys::Relation, name: &CStr, type_oid: Oid) -> Option<usize> {
        // SAFETY: an open relation's tuple descriptor.
        unsafe {
            let descriptor = (*relation).rd_att;
            let attributes = (*descriptor).attrs.as_slice((*descriptor).natts as usize);
            let position = attributes.iter().position(|attribute| {
                !attribute.attisdropped && CStr::from_ptr(attribute.attname.data.as_ptr()) == name
            })?;
            (attributes[position].atttypid == type_oid).then_some(position)
        }
    }

    /// One of our tables, open for writing, with its primary key. Locks are kept until the
    /// transaction ends, as the executor keeps them.
    struct Keyed {
        table: pg_sys::Relation,
        primary: pg_sys::Relation,
    }

    impl Keyed {
        /// `table` with its primary key on `key` (0-based columns and their btree operator
        /// families); `None`, with `table` closed, if `key` is `None` (the table is not as we
        /// made it) or the key differs.
        unsafe fn new(table: pg_sys::Relation, key: Option<&[(usize, Oid)]>) -> Option<Keyed> {
            // SAFETY: an open relation.
            unsafe {
                let primary = key.and_then(|key| primary_key(table, key));
                if primary.is_none() {
                    pg_sys::table_close(table, pg_sys::NoLock as _);
                }
                primary.map(|primary| Keyed { table, primary })
            }
        }

        unsafe fn close(self) {
            // SAFETY: both were opened by `new`'s caller and `new`.
            unsafe {
                pg_sys::index_close(self.primary, pg_sys::NoLock as _);
                pg_sys::table_close(self.table, pg_sys::NoLock as _);
            }
        }
    }

    /// The table's primary key, opened, if it is a plain btree on exactly `columns` (0-based,
    /// each with the default operator family of its type).
    unsafe fn primary_key(
        relation: pg_sys::Relation,
        columns: &[(usize, Oid)],
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
            let families = std::slice::from_raw_parts((*index).rd_opfamily, columns.len());
            let plain = (*(*index).rd_rel).relam == pg_sys::BTREE_AM_OID
                && form.indnkeyatts as usize == columns.len()
                && form.indnatts == form.indnkeyatts
                && keys.iter().zip(columns).zip(families).all(
                    |((attnum, (column, family)), index_family)| {
                        *attnum as usize == column + 1 && index_family == family
                    },
                )
                && pg_sys::heap_attisnull(
                    (*index).rd_indextuple,
                    pg_sys::Anum_pg_index_indexprs as i32,
                    null_mut(),
                )
                && pg_sys::heap_attisnull(
                    (*index).rd_indextuple,
                    pg_sys::Anum_pg_index_indpred as i32,
                    null_mut(),
                );
            if plain {
                Some(index)
            } else {
                pg_sys::index_close(index, pg_sys::NoLock as _);
                None
            }
        }
    }
}
