//! All SQL that reads or writes barrier state, in one place.
//!
//! Every statement is fixed text with parameters, prepared once per backend, and names every
//! object by schema. It runs with `search_path` pinned to `pg_catalog, pg_temp`
//! (`context::PinnedSettings`), so an unqualified operator or function here can only resolve to
//! the built-in one.

use std::cell::RefCell;
use std::collections::HashMap;

use pgrx::datum::{DatumWithOid, Interval, TimestampWithTimeZone};
use pgrx::pg_sys::{self, PgOid};
use pgrx::spi::{OwnedPreparedStatement, SpiClient, SpiTupleTable};

use crate::error::{BarrierError, Result};
use crate::jsonb::RawJsonb;

/// A barrier's status as stored. A pending barrier past `expires_at` is reported as expired
/// before any sweep has stored that (see `Locked::past_expiry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pending,
    Complete,
    Aborted,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Complete => "complete",
            Status::Aborted => "aborted",
            Status::Expired => "expired",
        }
    }

    fn parse(text: &str) -> Result<Self> {
        Ok(match text {
            "pending" => Status::Pending,
            "complete" => Status::Complete,
            "aborted" => Status::Aborted,
            "expired" => Status::Expired,
            other => {
                return Err(BarrierError::Internal(format!(
                    "unknown stored status {other:?}"
                )))
            }
        })
    }
}

/// The hot row, read under its row lock.
#[derive(Debug)]
pub struct Locked {
    pub owner: pg_sys::Oid,
    pub status: Status,
    pub expected: i32,
    pub remaining: i32,
    /// `None` until the first decrement fixes whether the barrier is slotted.
    pub slotted: Option<bool>,
    pub round: i64,
    /// Pending, but its ttl has run out: any call that sees it finishes it as expired.
    pub past_expiry: bool,
    /// Complete, and its results were handed to a consumer.
    pub taken: bool,
    /// The weight of the recorded results as one jsonb array.
    pub result_bytes: i64,
}

impl Locked {
    /// The status callers see.
    pub fn effective_status(&self) -> Status {
        if self.status == Status::Pending && self.past_expiry {
            Status::Expired
        } else {
            self.status
        }
    }
}

const TEXT: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTOID);
const INT4: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT4OID);
const INT8: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INT8OID);
const OID: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::OIDOID);
const BOOL: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::BOOLOID);
const JSONB: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::JSONBOID);
const INTERVAL: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::INTERVALOID);
const TEXT_ARRAY: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TEXTARRAYOID);

/// A statement and its parameter types; prepared on first use in each backend.
struct Statement {
    sql: &'static str,
    types: &'static [PgOid],
    /// Writes or locks rows. Other statements are prepared read-only: in a transaction that has
    /// written nothing yet they run on the caller's snapshot; inside the writing functions the
    /// row lock taken first has made the transaction a writer, so they see its own changes.
    writes: bool,
}

thread_local! {
    // Plans are kept for the backend's life: SPI replans them itself when the tables change.
    static PLANS: RefCell<HashMap<usize, &'static OwnedPreparedStatement>> = RefCell::new(HashMap::new());
}

impl Statement {
    fn plan(&'static self, client: &SpiClient<'_>) -> Result<&'static OwnedPreparedStatement> {
        let key = self as *const Statement as usize;
        if let Some(plan) = PLANS.with_borrow(|plans| plans.get(&key).copied()) {
            return Ok(plan);
        }
        let prepared = if self.writes {
            client.prepare_mut(self.sql, self.types)?
        } else {
            client.prepare(self.sql, self.types)?
        };
        let plan: &'static OwnedPreparedStatement = Box::leak(Box::new(prepared.keep()));
        PLANS.with_borrow_mut(|plans| plans.insert(key, plan));
        Ok(plan)
    }

    /// Runs a statement that writes, or locks rows.
    fn write<'conn>(
        &'static self,
        client: &mut SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> Result<SpiTupleTable<'conn>> {
        let plan = self.plan(client)?;
        Ok(client.update(plan, None, args)?)
    }

    /// Runs a statement that only reads.
    fn read<'conn>(
        &'static self,
        client: &SpiClient<'conn>,
        args: &[DatumWithOid<'_>],
    ) -> Result<SpiTupleTable<'conn>> {
        let plan = self.plan(client)?;
        Ok(client.select(plan, None, args)?)
    }
}

static LOCK: Statement = Statement {
    sql: "SELECT b.owner::oid, b.status, b.expected, b.remaining, b.slotted, b.round, \
                 b.status = 'pending' AND b.expires_at <= pg_catalog.statement_timestamp(), \
                 b.taken_at IS NOT NULL, b.result_bytes \
            FROM barrier_internal.barrier b \
           WHERE b.id = $1 \
             FOR NO KEY UPDATE",
    types: &[TEXT],
    writes: true,
};

/// Takes the barrier's row lock and reads its hot row; `None` if there is no such barrier.
///
/// At READ COMMITTED this waits for a concurrent holder and then sees its committed change; at
/// REPEATABLE READ or SERIALIZABLE a concurrent committed change raises 40001 instead.
pub fn lock(client: &mut SpiClient<'_>, id: &str) -> Result<Option<Locked>> {
    let table = LOCK.write(client, &[id.into()])?;
    let Some(row) = table.into_iter().next() else {
        return Ok(None);
    };
    Ok(Some(Locked::read(&row)?))
}

impl Locked {
    /// The first nine columns of a row of `LOCK` or `LOCK_AND_COUNT`.
    fn read(row: &pgrx::spi::SpiHeapTupleData<'_>) -> Result<Locked> {
        let status: String = required(row.get(2)?)?;
        Ok(Locked {
            owner: required(row.get(1)?)?,
            status: Status::parse(&status)?,
            expected: required(row.get(3)?)?,
            remaining: required(row.get(4)?)?,
            slotted: row.get(5)?,
            round: required(row.get(6)?)?,
            past_expiry: required(row.get(7)?)?,
            taken: required(row.get(8)?)?,
            result_bytes: required(row.get(9)?)?,
        })
    }
}

static LOCK_AND_COUNT: Statement = Statement {
    sql: "WITH locked AS ( \
              SELECT b.owner::oid, b.status, b.expected, b.remaining, b.slotted, b.round, \
                     b.status = 'pending' AND b.expires_at <= pg_catalog.statement_timestamp() \
                       AS past_expiry, \
                     b.taken_at IS NOT NULL, b.result_bytes \
                FROM barrier_internal.barrier b \
               WHERE b.id = $1 \
                 FOR NO KEY UPDATE), \
          recorded AS ( \
              INSERT INTO barrier_internal.result (barrier_id, slot, result) \
              SELECT $1, COALESCE($3, l.expected - l.remaining), $2 \
                FROM locked l \
               WHERE l.status = 'pending' AND NOT l.past_expiry \
                 AND l.remaining > 1 AND l.remaining <= l.expected \
                 AND pg_catalog.pg_has_role($4, l.owner, 'USAGE') \
                 AND (l.slotted IS NULL OR l.slotted = ($3 IS NOT NULL)) \
                 AND ($3 IS NULL OR $3 < l.expected) \
                 AND l.result_bytes + $5 <= $6 \
              ON CONFLICT (barrier_id, slot) DO NOTHING \
              RETURNING 1), \
          counted AS ( \
              UPDATE barrier_internal.barrier b \
                 SET remaining = pg_catalog.int4larger(b.remaining - 1, 0), \
                     slotted = ($3 IS NOT NULL), \
                     result_bytes = b.result_bytes + $5, \
                     progress_at = pg_catalog.statement_timestamp() \
               WHERE b.id = $1 AND EXISTS (SELECT FROM recorded) \
              RETURNING b.remaining) \
          SELECT l.*, (SELECT c.remaining FROM counted c) FROM locked l",
    types: &[TEXT, JSONB, INT4, OID, INT8, INT8],
    writes: true,
};

/// `lock`, and in the same statement the common report: one that the barrier is waiting for and
/// that leaves work to do, passing every check `report` makes (the caller may act on the
/// barrier, the slot fits and has not reported, the results stay under their cap). Then the
/// result is recorded and the counter decremented, and the new remaining count comes back
/// beside the row as it was; otherwise nothing is written and `report` decides with the row.
///
/// `weight` is what `result` adds to the barrier's results (`validate::result_weight`).
///
/// At READ COMMITTED, when the row changed after the statement's snapshot (a new round began,
/// say), `locked` waits for that change and decides on the newest version, and so does the
/// `UPDATE`: it finds the version its snapshot sees, fails to update it and follows the chain
/// to the newest one, which it computes the new counter from. But it checks the constraints of
/// the row computed from the old version first, so `remaining` there must not go below zero
/// (an old version may be a finished round): hence `int4larger(remaining - 1, 0)`, which on the
/// version actually written, decided on by `recorded` (`remaining > 1`), is `remaining - 1`.
pub fn lock_and_count(
    client: &mut SpiClient<'_>,
    id: &str,
    result: Option<RawJsonb>,
    slot: Option<i32>,
    caller: pg_sys::Oid,
    weight: i64,
) -> Result<Option<(Locked, Option<i32>)>> {
    let table = LOCK_AND_COUNT.write(
        client,
        &[
            id.into(),
            result.into(),
            slot.into(),
            caller.into(),
            weight.into(),
            crate::validate::MAX_BARRIER_RESULT_BYTES.into(),
        ],
    )?;
    let Some(row) = table.into_iter().next() else {
        return Ok(None);
    };
    Ok(Some((Locked::read(&row)?, row.get(10)?)))
}

fn required<T>(value: Option<T>) -> Result<T> {
    value.ok_or_else(|| BarrierError::Internal("unexpected NULL in barrier state".into()))
}

/// What an enqueue asks for.
pub struct Spec<'a> {
    pub expected: i32,
    pub callback: Option<RawJsonb>,
    pub channel: &'a str,
    pub ttl: Interval,
    /// Expire the barrier after this long without a report; `None`: never.
    pub stall_timeout: Option<Interval>,
}

static INSERT_BARRIER: Statement = Statement {
    sql: "INSERT INTO barrier_internal.barrier AS b \
                 (id, round, owner, status, expected, remaining, created_at, expires_at, \
                  finished_at, progress_at) \
          VALUES ($1, 1, $2, CASE WHEN $3 = 0 THEN 'complete' ELSE 'pending' END, $3, $3, \
                  pg_catalog.statement_timestamp(), pg_catalog.statement_timestamp() + $4, \
                  CASE WHEN $3 = 0 THEN pg_catalog.statement_timestamp() END, \
                  pg_catalog.statement_timestamp()) \
          ON CONFLICT (id) DO NOTHING",
    types: &[TEXT, OID, INT4, INTERVAL],
    writes: true,
};

/// Registers a new barrier; false if the id exists (the caller then locks and inspects it).
pub fn insert_barrier(
    client: &mut SpiClient<'_>,
    id: &str,
    owner: pg_sys::Oid,
    spec: &Spec<'_>,
) -> Result<bool> {
    let inserted = INSERT_BARRIER
        .write(
            client,
            &[
                id.into(),
                owner.into(),
                spec.expected.into(),
                spec.ttl.into(),
            ],
        )?
        .len()
        == 1;
    if inserted {
        write_spec(client, id, spec)?;
    }
    Ok(inserted)
}

static NEW_ROUND: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET round = round + 1, \
                 status = CASE WHEN $2 = 0 THEN 'complete' ELSE 'pending' END, \
                 expected = $2, remaining = $2, slotted = NULL, \
                 created_at = pg_catalog.statement_timestamp(), \
                 expires_at = pg_catalog.statement_timestamp() + $3, \
                 finished_at = CASE WHEN $2 = 0 THEN pg_catalog.statement_timestamp() END, \
                 progress_at = pg_catalog.statement_timestamp(), taken_at = NULL, \
                 result_bytes = 0 \
           WHERE id = $1 \
          RETURNING round",
    types: &[TEXT, INT4, INTERVAL],
    writes: true,
};

/// Starts the barrier over: a new round with no recorded results. Returns the new round.
pub fn start_new_round(client: &mut SpiClient<'_>, id: &str, spec: &Spec<'_>) -> Result<i64> {
    delete_results(client, id)?;
    let table = NEW_ROUND.write(client, &[id.into(), spec.expected.into(), spec.ttl.into()])?;
    let round = table
        .into_iter()
        .next()
        .map(|row| row.get::<i64>(1))
        .transpose()?
        .flatten();
    write_spec(client, id, spec)?;
    required(round)
}

static WRITE_SPEC: Statement = Statement {
    sql: "INSERT INTO barrier_internal.barrier_spec AS s (id, callback, channel, ttl, stall_timeout) \
          VALUES ($1, $2, $3, $4, $5) \
          ON CONFLICT (id) DO UPDATE \
             SET callback = excluded.callback, channel = excluded.channel, ttl = excluded.ttl, \
                 stall_timeout = excluded.stall_timeout, reason = NULL",
    types: &[TEXT, JSONB, TEXT, INTERVAL, INTERVAL],
    writes: true,
};

fn write_spec(client: &mut SpiClient<'_>, id: &str, spec: &Spec<'_>) -> Result<()> {
    WRITE_SPEC.write(
        client,
        &[
            id.into(),
            spec.callback.into(),
            spec.channel.into(),
            spec.ttl.into(),
            spec.stall_timeout.into(),
        ],
    )?;
    Ok(())
}

static SAME_SPEC: Statement = Statement {
    sql: "SELECT b.expected = $2 AND s.callback IS NOT DISTINCT FROM $3 \
                 AND s.channel = $4 AND s.ttl = $5 \
                 AND s.stall_timeout IS NOT DISTINCT FROM $6, \
                 b.expected, s.callback IS NOT DISTINCT FROM $3, s.channel, s.ttl::text \
            FROM barrier_internal.barrier b \
            JOIN barrier_internal.barrier_spec s ON s.id = b.id \
           WHERE b.id = $1",
    types: &[TEXT, INT4, JSONB, TEXT, INTERVAL, INTERVAL],
    writes: false,
};

/// Whether a live barrier was registered with exactly these arguments; if not, what differs.
pub fn compare_spec(
    client: &SpiClient<'_>,
    id: &str,
    spec: &Spec<'_>,
) -> Result<std::result::Result<(), String>> {
    let table = SAME_SPEC.read(
        client,
        &[
            id.into(),
            spec.expected.into(),
            spec.callback.into(),
            spec.channel.into(),
            spec.ttl.into(),
            spec.stall_timeout.into(),
        ],
    )?;
    let row = table
        .into_iter()
        .next()
        .ok_or_else(|| BarrierError::Internal("barrier spec is missing".into()))?;
    if required(row.get::<bool>(1)?)? {
        return Ok(Ok(()));
    }
    let mut differences = Vec::new();
    let expected: i32 = required(row.get(2)?)?;
    if expected != spec.expected {
        differences.push(format!("expected is {expected}, not {}", spec.expected));
    }
    if !required(row.get::<bool>(3)?)? {
        differences.push("callback differs".to_string());
    }
    let channel: String = required(row.get(4)?)?;
    if channel != spec.channel {
        differences.push(format!(
            "channel is \"{channel}\", not \"{}\"",
            spec.channel
        ));
    }
    let ttl: String = required(row.get(5)?)?;
    if differences.is_empty() {
        differences.push(format!("ttl or stall_timeout differs (ttl is {ttl})"));
    }
    Ok(Err(differences.join("; ")))
}

static RECORD_RESULT: Statement = Statement {
    sql: "INSERT INTO barrier_internal.result (barrier_id, slot, result) VALUES ($1, $2, $3) \
          ON CONFLICT (barrier_id, slot) DO NOTHING",
    types: &[TEXT, INT4, JSONB],
    writes: true,
};

/// Records one task's result at `slot`; false if that slot already reported.
///
/// The caller holds the barrier's row lock, so no other transaction is inserting for this
/// barrier and the conflict check never waits.
pub fn record_result(
    client: &mut SpiClient<'_>,
    id: &str,
    slot: i32,
    result: Option<RawJsonb>,
) -> Result<bool> {
    Ok(RECORD_RESULT
        .write(client, &[id.into(), slot.into(), result.into()])?
        .len()
        == 1)
}

static HAS_RESULT: Statement = Statement {
    sql: "SELECT EXISTS (SELECT FROM barrier_internal.result WHERE barrier_id = $1 AND slot = $2)",
    types: &[TEXT, INT4],
    writes: false,
};

/// Whether `slot` has reported in this round.
pub fn has_result(client: &SpiClient<'_>, id: &str, slot: i32) -> Result<bool> {
    let row = only_row(HAS_RESULT.read(client, &[id.into(), slot.into()])?);
    required(row.map(|row| row.get::<bool>(1)).transpose()?.flatten())
}

static COUNT: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET remaining = $2, slotted = $3, result_bytes = $4, \
                 progress_at = pg_catalog.statement_timestamp(), \
                 status = CASE WHEN $2 = 0 THEN 'complete' ELSE status END, \
                 finished_at = CASE WHEN $2 = 0 THEN pg_catalog.statement_timestamp() END \
           WHERE id = $1",
    types: &[TEXT, INT4, BOOL, INT8],
    writes: true,
};

/// Stores the decremented counter; at zero the barrier is complete. Only the narrow hot row
/// changes, and no indexed column, so the update is HOT.
pub fn count(
    client: &mut SpiClient<'_>,
    id: &str,
    remaining: i32,
    slotted: bool,
    result_bytes: i64,
) -> Result<()> {
    COUNT.write(
        client,
        &[
            id.into(),
            remaining.into(),
            slotted.into(),
            result_bytes.into(),
        ],
    )?;
    Ok(())
}

/// What the completer is handed.
pub struct Completion {
    pub results: RawJsonb,
    pub callback: Option<RawJsonb>,
    pub channel: String,
}

static COMPLETION: Statement = Statement {
    sql: "SELECT s.channel, s.callback, \
                 COALESCE((SELECT pg_catalog.jsonb_agg(r.result ORDER BY r.slot) \
                             FROM barrier_internal.result r \
                            WHERE r.barrier_id = $1), '[]'::jsonb) \
            FROM barrier_internal.barrier_spec s \
           WHERE s.id = $1",
    types: &[TEXT],
    writes: false,
};

/// Every result of the round, in slot (or arrival) order, with the callback and channel; the
/// jsonb values are copied into `memory`.
pub fn completion(
    client: &SpiClient<'_>,
    id: &str,
    memory: pg_sys::MemoryContext,
) -> Result<Completion> {
    let row = only_row(COMPLETION.read(client, &[id.into()])?)
        .ok_or_else(|| BarrierError::Internal("barrier spec is missing".into()))?;
    Ok(Completion {
        channel: required(row.get(1)?)?,
        callback: jsonb_at(&row, 2, memory)?,
        results: required(jsonb_at(&row, 3, memory)?)?,
    })
}

/// The first row of `table`, positioned for `get`; `None` if it has no rows.
fn only_row(table: SpiTupleTable<'_>) -> Option<SpiTupleTable<'_>> {
    (!table.is_empty()).then(|| table.first())
}

/// A jsonb column of the current row, copied out of SPI's memory into `memory`.
fn jsonb_at(
    row: &SpiTupleTable<'_>,
    ordinal: usize,
    memory: pg_sys::MemoryContext,
) -> Result<Option<RawJsonb>> {
    // SAFETY: the column is jsonb (our own fixed SQL); the datum stays valid until SPI finishes,
    // and the copy is made before that.
    Ok(row
        .get_datum_by_ordinal(ordinal)?
        .map(|datum| unsafe { RawJsonb::copy_into(datum, memory) }))
}

static FINISH: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET status = $2, finished_at = pg_catalog.statement_timestamp(), result_bytes = 0 \
           WHERE id = $1",
    types: &[TEXT, TEXT],
    writes: true,
};

static SET_REASON: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier_spec SET reason = $2 WHERE id = $1 RETURNING channel",
    types: &[TEXT, TEXT],
    writes: true,
};

static DELETE_RESULTS: Statement = Statement {
    sql: "DELETE FROM barrier_internal.result WHERE barrier_id = $1",
    types: &[TEXT],
    writes: true,
};

fn delete_results(client: &mut SpiClient<'_>, id: &str) -> Result<()> {
    DELETE_RESULTS.write(client, &[id.into()])?;
    Ok(())
}

/// Ends round `round` of a locked, live barrier as aborted or expired: frees its results, keeps
/// a tombstone (the hot row and spec) so that late calls learn what happened, and notifies.
pub fn end_round(
    client: &mut SpiClient<'_>,
    id: &str,
    round: i64,
    status: Status,
    reason: Option<&str>,
) -> Result<()> {
    FINISH.write(client, &[id.into(), status.as_str().into()])?;
    let table = SET_REASON.write(client, &[id.into(), reason.into()])?;
    let channel = table
        .into_iter()
        .next()
        .map(|row| row.get::<String>(1))
        .transpose()?
        .flatten();
    delete_results(client, id)?;
    notify(client, &required(channel)?, id, status, round)
}

/// One barrier as `barrier_status` shows it.
pub struct StatusRow {
    pub owner: pg_sys::Oid,
    pub id: String,
    pub status: String,
    pub expected: i32,
    pub remaining: i32,
    pub created_at: TimestampWithTimeZone,
    pub expires_at: TimestampWithTimeZone,
    pub finished_at: Option<TimestampWithTimeZone>,
    pub channel: String,
    pub callback: Option<RawJsonb>,
    pub reason: Option<String>,
    pub round: i64,
}

static STATUS: Statement = Statement {
    sql: "SELECT b.owner::oid, b.id, \
                 CASE WHEN b.status = 'pending' AND b.expires_at <= pg_catalog.statement_timestamp() \
                      THEN 'expired' ELSE b.status END, \
                 b.expected, b.remaining, b.created_at, b.expires_at, b.finished_at, \
                 s.channel, s.callback, s.reason, b.round \
            FROM barrier_internal.barrier b \
            JOIN barrier_internal.barrier_spec s ON s.id = b.id \
           WHERE b.id = $1",
    types: &[TEXT],
    writes: false,
};

pub fn status(
    client: &SpiClient<'_>,
    id: &str,
    memory: pg_sys::MemoryContext,
) -> Result<Option<StatusRow>> {
    let Some(row) = only_row(STATUS.read(client, &[id.into()])?) else {
        return Ok(None);
    };
    Ok(Some(StatusRow {
        owner: required(row.get(1)?)?,
        id: required(row.get(2)?)?,
        status: required(row.get(3)?)?,
        expected: required(row.get(4)?)?,
        remaining: required(row.get(5)?)?,
        created_at: required(row.get(6)?)?,
        expires_at: required(row.get(7)?)?,
        finished_at: row.get(8)?,
        channel: required(row.get(9)?)?,
        callback: jsonb_at(&row, 10, memory)?,
        reason: row.get(11)?,
        round: required(row.get(12)?)?,
    }))
}

static RESULTS: Statement = Statement {
    sql: "SELECT b.owner::oid, \
                 CASE WHEN (b.status = 'complete' AND b.taken_at IS NULL) \
                        OR (b.status = 'pending' AND b.expires_at > pg_catalog.statement_timestamp()) \
                 THEN COALESCE((SELECT pg_catalog.jsonb_agg(r.result ORDER BY r.slot) \
                                  FROM barrier_internal.result r \
                                 WHERE r.barrier_id = b.id), '[]'::jsonb) END \
            FROM barrier_internal.barrier b \
           WHERE b.id = $1",
    types: &[TEXT],
    writes: false,
};

/// The owner and the results recorded so far (`None` for a finished barrier that holds none);
/// `None` overall if there is no such barrier.
pub fn results(
    client: &SpiClient<'_>,
    id: &str,
    memory: pg_sys::MemoryContext,
) -> Result<Option<(pg_sys::Oid, Option<RawJsonb>)>> {
    let Some(row) = only_row(RESULTS.read(client, &[id.into()])?) else {
        return Ok(None);
    };
    Ok(Some((required(row.get(1)?)?, jsonb_at(&row, 2, memory)?)))
}

static NOTIFY: Statement = Statement {
    sql: "SELECT pg_catalog.pg_notify($1, \
                 pg_catalog.json_build_object('id', $2, 'status', $3, 'round', $4)::text)",
    types: &[TEXT, TEXT, TEXT, INT8],
    writes: true,
};

/// Queues the wake-up for a terminal transition; PostgreSQL delivers it when the transaction
/// commits and drops it if it rolls back. The payload never carries results.
pub fn notify(
    client: &mut SpiClient<'_>,
    channel: &str,
    id: &str,
    status: Status,
    round: i64,
) -> Result<()> {
    NOTIFY.write(
        client,
        &[
            channel.into(),
            id.into(),
            status.as_str().into(),
            round.into(),
        ],
    )?;
    Ok(())
}

static SWEEP_DUE_TTL: Statement = Statement {
    sql: "SELECT b.id, b.round, true \
            FROM barrier_internal.barrier b \
           WHERE b.status = 'pending' AND b.expires_at <= pg_catalog.statement_timestamp() \
           ORDER BY b.expires_at \
           LIMIT $1 \
             FOR NO KEY UPDATE OF b SKIP LOCKED",
    types: &[INT4],
    writes: true,
};

static SWEEP_DUE_STALL: Statement = Statement {
    sql: "SELECT b.id, b.round, false \
            FROM barrier_internal.barrier_spec s \
            JOIN barrier_internal.barrier b ON b.id = s.id \
           WHERE s.stall_timeout IS NOT NULL AND b.status = 'pending' \
             AND b.expires_at > pg_catalog.statement_timestamp() \
             AND b.progress_at + s.stall_timeout <= pg_catalog.statement_timestamp() \
           LIMIT $1 \
             FOR NO KEY UPDATE OF b SKIP LOCKED",
    types: &[INT4],
    writes: true,
};

/// A pending barrier the sweep found past its ttl or its no-progress window, now locked.
pub struct Due {
    pub id: String,
    pub round: i64,
    /// Past its ttl (else: stalled).
    pub by_ttl: bool,
}

/// Locks up to `limit` pending barriers past their ttl or stall window. Rows another
/// transaction holds are skipped (their holder decides first), so sweeps never wait or deadlock,
/// and two sweeps never pick the same barrier.
pub fn lock_due(client: &mut SpiClient<'_>, limit: i32) -> Result<Vec<Due>> {
    // Past the ttl through its index; stalled through the (few) barriers that have a window.
    let mut due = due_rows(SWEEP_DUE_TTL.write(client, &[limit.into()])?)?;
    let left = limit - due.len() as i32;
    if left > 0 {
        due.extend(due_rows(SWEEP_DUE_STALL.write(client, &[left.into()])?)?);
    }
    Ok(due)
}

fn due_rows(table: SpiTupleTable<'_>) -> Result<Vec<Due>> {
    table
        .into_iter()
        .map(|row| {
            Ok(Due {
                id: required(row.get(1)?)?,
                round: required(row.get(2)?)?,
                by_ttl: required(row.get(3)?)?,
            })
        })
        .collect()
}

static SWEEP_DOOMED: Statement = Statement {
    sql: "SELECT pg_catalog.array_agg(d.id) FROM ( \
              SELECT b.id FROM barrier_internal.barrier b \
               WHERE b.status <> 'pending' \
                 AND b.finished_at <= pg_catalog.statement_timestamp() - $2 \
                 AND (b.status <> 'aborted' OR b.expires_at <= pg_catalog.statement_timestamp()) \
               LIMIT $1 \
                 FOR UPDATE OF b SKIP LOCKED) d",
    types: &[INT4, INTERVAL],
    writes: true,
};

// Deletes by a list of ids: one index probe per id whatever the tables' statistics were when
// the plan was made (a join with the list could be planned as a scan of every result).
static DELETE_RESULTS_OF: Statement = Statement {
    sql: "DELETE FROM barrier_internal.result WHERE barrier_id = ANY ($1)",
    types: &[TEXT_ARRAY],
    writes: true,
};

static DELETE_SPECS_OF: Statement = Statement {
    sql: "DELETE FROM barrier_internal.barrier_spec WHERE id = ANY ($1)",
    types: &[TEXT_ARRAY],
    writes: true,
};

static DELETE_BARRIERS_OF: Statement = Statement {
    sql: "DELETE FROM barrier_internal.barrier WHERE id = ANY ($1)",
    types: &[TEXT_ARRAY],
    writes: true,
};

/// Deletes up to `limit` finished barriers older than `retention` (aborted ones not before
/// their expiry, so late reports still learn they were aborted). Returns how many.
pub fn delete_finished(
    client: &mut SpiClient<'_>,
    limit: i32,
    retention: Interval,
) -> Result<usize> {
    let doomed = only_row(SWEEP_DOOMED.write(client, &[limit.into(), retention.into()])?)
        .map(|row| row.get::<Vec<String>>(1))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    if doomed.is_empty() {
        return Ok(0);
    }
    DELETE_RESULTS_OF.write(client, &[doomed.clone().into()])?;
    DELETE_SPECS_OF.write(client, &[doomed.clone().into()])?;
    Ok(DELETE_BARRIERS_OF.write(client, &[doomed.into()])?.len())
}

static CLAIM_COMPLETIONS: Statement = Statement {
    sql: "SELECT b.id FROM barrier_internal.barrier b \
            JOIN barrier_internal.barrier_spec s ON s.id = b.id \
           WHERE b.status = 'complete' AND b.taken_at IS NULL \
             AND ($2::text IS NULL OR s.channel = $2) \
             AND pg_catalog.pg_has_role($3, b.owner::oid, 'USAGE') \
           ORDER BY b.finished_at, b.id \
           LIMIT $1 \
             FOR NO KEY UPDATE OF b SKIP LOCKED",
    types: &[INT4, TEXT, OID],
    writes: true,
};

/// Locks up to `limit` completed, untaken barriers the role may act for, oldest first, skipping
/// those another consumer holds.
pub fn claim_completions(
    client: &mut SpiClient<'_>,
    limit: i32,
    channel: Option<&str>,
    role: pg_sys::Oid,
) -> Result<Vec<String>> {
    let table = CLAIM_COMPLETIONS.write(client, &[limit.into(), channel.into(), role.into()])?;
    table
        .into_iter()
        .map(|row| required(row.get::<String>(1)?))
        .collect()
}

static MARK_TAKEN: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET taken_at = pg_catalog.statement_timestamp(), result_bytes = 0 \
           WHERE id = $1 \
          RETURNING finished_at",
    types: &[TEXT],
    writes: true,
};

/// Hands a locked, complete, untaken barrier to its consumer: its completion, freed from the
/// tables, and when it finished.
pub fn take(
    client: &mut SpiClient<'_>,
    id: &str,
    memory: pg_sys::MemoryContext,
) -> Result<(Completion, TimestampWithTimeZone)> {
    let completion = completion(client, id, memory)?;
    let table = MARK_TAKEN.write(client, &[id.into()])?;
    let finished = table
        .into_iter()
        .next()
        .map(|row| row.get(1))
        .transpose()?
        .flatten();
    delete_results(client, id)?;
    Ok((completion, required(finished)?))
}

static ADD: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET expected = expected + $2, remaining = remaining + $2, \
                 progress_at = pg_catalog.statement_timestamp() \
           WHERE id = $1",
    types: &[TEXT, INT4],
    writes: true,
};

/// Grows a locked, pending barrier by `extra` tasks.
pub fn add(client: &mut SpiClient<'_>, id: &str, extra: i32) -> Result<()> {
    ADD.write(client, &[id.into(), extra.into()])?;
    Ok(())
}

/// What `barrier_stats` reports, over the barriers a role may act for.
pub struct Stats {
    pub pending: i64,
    pub complete: i64,
    pub aborted: i64,
    pub expired: i64,
    pub untaken: i64,
    pub oldest_pending_age: Option<Interval>,
    pub result_rows: i64,
    pub result_bytes: i64,
}

static STATS: Statement = Statement {
    sql: "SELECT count(*) FILTER (WHERE b.status = 'pending' \
                                   AND b.expires_at > pg_catalog.statement_timestamp()), \
                 count(*) FILTER (WHERE b.status = 'complete'), \
                 count(*) FILTER (WHERE b.status = 'aborted'), \
                 count(*) FILTER (WHERE b.status = 'expired' \
                                     OR (b.status = 'pending' \
                                         AND b.expires_at <= pg_catalog.statement_timestamp())), \
                 count(*) FILTER (WHERE b.status = 'complete' AND b.taken_at IS NULL), \
                 pg_catalog.statement_timestamp() - min(b.created_at) \
                   FILTER (WHERE b.status = 'pending' \
                             AND b.expires_at > pg_catalog.statement_timestamp() \
                             AND pg_catalog.isfinite(b.created_at)), \
                 COALESCE(sum(CASE WHEN b.status = 'pending' THEN b.expected - b.remaining \
                                   WHEN b.status = 'complete' AND b.taken_at IS NULL \
                                   THEN b.expected ELSE 0 END), 0)::bigint, \
                 pg_catalog.numeric_smaller(COALESCE(sum(b.result_bytes), 0), \
                                            9223372036854775807)::bigint \
            FROM barrier_internal.barrier b \
           WHERE pg_catalog.pg_has_role($1, b.owner::oid, 'USAGE')",
    types: &[OID],
    writes: false,
};

pub fn stats(client: &SpiClient<'_>, role: pg_sys::Oid) -> Result<Stats> {
    let row = only_row(STATS.read(client, &[role.into()])?)
        .ok_or_else(|| BarrierError::Internal("stats returned no row".into()))?;
    Ok(Stats {
        pending: required(row.get(1)?)?,
        complete: required(row.get(2)?)?,
        aborted: required(row.get(3)?)?,
        expired: required(row.get(4)?)?,
        untaken: required(row.get(5)?)?,
        oldest_pending_age: row.get(6)?,
        result_rows: required(row.get(7)?)?,
        result_bytes: required(row.get(8)?)?,
    })
}
