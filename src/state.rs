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
    /// Failed reports held now.
    pub failed: i32,
    /// The quorum: complete on this many successes (`None`: when every task has reported).
    pub need: Option<i32>,
    /// An open barrier cannot complete until it is sealed.
    pub sealed: bool,
    /// Expiry delivers the results so far instead of freeing them.
    pub deliver: bool,
}

impl Locked {
    /// Reports counted that succeeded.
    pub fn successes(&self) -> i32 {
        self.expected - self.remaining - self.failed
    }

    /// A finished round whose results wait for a consumer.
    pub fn takeable(&self) -> bool {
        !self.taken
            && (self.status == Status::Complete || (self.status == Status::Expired && self.deliver))
    }

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
const TIMESTAMPTZ: PgOid = PgOid::BuiltIn(pg_sys::BuiltinOid::TIMESTAMPTZOID);

/// `statement_timestamp()`, as a value to bind. Citus refuses a statement that calls a
/// non-IMMUTABLE function inside CASE or COALESCE (it cannot evaluate it once, up front, for the
/// shard), so a time that only some rows get is bound as a parameter instead.
fn statement_time() -> Result<TimestampWithTimeZone> {
    // SAFETY: reads the start time of the current statement, set for every statement.
    let now = unsafe { pg_sys::GetCurrentStatementStartTimestamp() };
    TimestampWithTimeZone::try_from(now)
        .map_err(|e| BarrierError::Internal(format!("statement time: {e:?}")))
}

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
                 b.taken_at IS NOT NULL, b.result_bytes, b.failed, b.need, b.sealed, b.deliver \
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
    /// The first thirteen columns of a row of `LOCK` or `LOCK_AND_COUNT`.
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
            failed: required(row.get(10)?)?,
            need: row.get(11)?,
            sealed: required(row.get(12)?)?,
            deliver: required(row.get(13)?)?,
        })
    }
}

static LOCK_AND_COUNT: Statement = Statement {
    sql: "WITH locked AS ( \
              SELECT b.owner::oid, b.status, b.expected, b.remaining, b.slotted, b.round, \
                     b.status = 'pending' AND b.expires_at <= pg_catalog.statement_timestamp() \
                       AS past_expiry, \
                     b.taken_at IS NOT NULL, b.result_bytes, b.failed, b.need, b.sealed, \
                     b.deliver \
                FROM barrier_internal.barrier b \
               WHERE b.id = $1 \
                 FOR NO KEY UPDATE), \
          recorded AS ( \
              INSERT INTO barrier_internal.result (barrier_id, slot, result) \
              SELECT $1, COALESCE($3, l.expected - l.remaining), $2 \
                FROM locked l \
               WHERE l.status = 'pending' AND NOT l.past_expiry \
                 AND l.remaining > 1 AND l.remaining <= l.expected \
                 AND (l.need IS NULL OR l.expected - l.remaining - l.failed + 1 < l.need) \
                 AND pg_catalog.pg_has_role($4, l.owner, 'USAGE') \
                 AND (l.slotted IS NULL OR l.slotted = ($3 IS NOT NULL)) \
                 AND ($3 IS NULL OR $3 < l.expected) \
                 AND l.result_bytes + $5 \
                     + CASE WHEN l.need IS NOT NULL OR l.deliver THEN 4 * l.expected::bigint \
                            ELSE 0 END <= $6 \
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

/// `lock`, and in the same statement the common report: a success the barrier is waiting for
/// that leaves work to do (more reports remain, a quorum is not reached), passing every check
/// `report` makes (the caller may act on the
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
    Ok(Some((Locked::read(&row)?, row.get(14)?)))
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
    /// The shape (docs/shapes.md); a plain barrier has `None`, `None`, sealed, no delivery and
    /// no parent.
    pub max_failures: Option<i32>,
    pub need: Option<i32>,
    pub sealed: bool,
    pub deliver: bool,
    /// The barrier and slot this one reports into.
    pub parent: Option<(&'a str, i32)>,
}

impl Spec<'_> {
    /// A round of this spec completes at once: nothing to wait for, and sealed.
    pub fn complete_at_once(&self) -> bool {
        self.expected == 0 && self.sealed
    }
}

static INSERT_BARRIER: Statement = Statement {
    sql: "INSERT INTO barrier_internal.barrier AS b \
                 (id, round, owner, status, expected, remaining, created_at, expires_at, \
                  finished_at, progress_at, need, sealed, deliver) \
          VALUES ($1, 1, $2, CASE WHEN $3 = 0 AND $6 THEN 'complete' ELSE 'pending' END, $3, $3, \
                  pg_catalog.statement_timestamp(), pg_catalog.statement_timestamp() + $4, \
                  CASE WHEN $3 = 0 AND $6 THEN $8 END, \
                  pg_catalog.statement_timestamp(), $5, $6, $7) \
          ON CONFLICT (id) DO NOTHING",
    types: &[TEXT, OID, INT4, INTERVAL, INT4, BOOL, BOOL, TIMESTAMPTZ],
    writes: true,
};

/// Registers a new barrier's hot row (its spec follows: `write_spec`); false if the id exists
/// (the caller then locks and inspects it).
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
                spec.need.into(),
                spec.sealed.into(),
                spec.deliver.into(),
                statement_time()?.into(),
            ],
        )?
        .len()
        == 1;
    Ok(inserted)
}

static NEW_ROUND: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET round = round + 1, \
                 status = CASE WHEN $2 = 0 AND $5 THEN 'complete' ELSE 'pending' END, \
                 expected = $2, remaining = $2, slotted = NULL, \
                 created_at = pg_catalog.statement_timestamp(), \
                 expires_at = pg_catalog.statement_timestamp() + $3, \
                 finished_at = CASE WHEN $2 = 0 AND $5 THEN $7 END, \
                 progress_at = pg_catalog.statement_timestamp(), taken_at = NULL, \
                 result_bytes = 0, failed = 0, need = $4, sealed = $5, deliver = $6 \
           WHERE id = $1 \
          RETURNING round",
    types: &[TEXT, INT4, INTERVAL, INT4, BOOL, BOOL, TIMESTAMPTZ],
    writes: true,
};

/// Starts the barrier over: a new round with no recorded results. Returns the new round.
pub fn start_new_round(client: &mut SpiClient<'_>, id: &str, spec: &Spec<'_>) -> Result<i64> {
    delete_results(client, id)?;
    let table = NEW_ROUND.write(
        client,
        &[
            id.into(),
            spec.expected.into(),
            spec.ttl.into(),
            spec.need.into(),
            spec.sealed.into(),
            spec.deliver.into(),
            statement_time()?.into(),
        ],
    )?;
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
    sql: "INSERT INTO barrier_internal.barrier_spec AS s \
                 (id, callback, channel, ttl, stall_timeout, max_failures, parent, parent_slot) \
          VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
          ON CONFLICT (id) DO UPDATE \
             SET callback = excluded.callback, channel = excluded.channel, ttl = excluded.ttl, \
                 stall_timeout = excluded.stall_timeout, reason = NULL, \
                 max_failures = excluded.max_failures, parent = excluded.parent, \
                 parent_slot = excluded.parent_slot",
    types: &[TEXT, JSONB, TEXT, INTERVAL, INTERVAL, INT4, TEXT, INT4],
    writes: true,
};

/// Stores what the enqueue asked for, and clears the reason of the round before.
pub fn write_spec(client: &mut SpiClient<'_>, id: &str, spec: &Spec<'_>) -> Result<()> {
    WRITE_SPEC.write(
        client,
        &[
            id.into(),
            spec.callback.into(),
            spec.channel.into(),
            spec.ttl.into(),
            spec.stall_timeout.into(),
            spec.max_failures.into(),
            spec.parent.map(|(parent, _)| parent).into(),
            spec.parent.map(|(_, slot)| slot).into(),
        ],
    )?;
    Ok(())
}

static SAME_SPEC: Statement = Statement {
    sql: "SELECT b.expected = $2 AND s.callback IS NOT DISTINCT FROM $3 \
                 AND s.channel = $4 AND s.ttl = $5 \
                 AND s.stall_timeout IS NOT DISTINCT FROM $6, \
                 b.expected, s.callback IS NOT DISTINCT FROM $3, s.channel, s.ttl::text, \
                 s.max_failures IS NOT DISTINCT FROM $7, b.need IS NOT DISTINCT FROM $8, \
                 b.deliver = $9, \
                 s.parent IS NOT DISTINCT FROM $10 AND s.parent_slot IS NOT DISTINCT FROM $11 \
            FROM barrier_internal.barrier b \
            JOIN barrier_internal.barrier_spec s ON s.id = b.id \
           WHERE b.id = $1",
    types: &[
        TEXT, INT4, JSONB, TEXT, INTERVAL, INTERVAL, INT4, INT4, BOOL, TEXT, INT4,
    ],
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
            spec.max_failures.into(),
            spec.need.into(),
            spec.deliver.into(),
            spec.parent.map(|(parent, _)| parent).into(),
            spec.parent.map(|(_, slot)| slot).into(),
        ],
    )?;
    let row = table
        .into_iter()
        .next()
        .ok_or_else(|| BarrierError::Internal("barrier spec is missing".into()))?;
    let same_shape = [
        (6, "max_failures differs"),
        (7, "need differs"),
        (8, "on_expiry differs"),
        (9, "parent differs"),
    ]
    .into_iter()
    .map(|(column, difference)| Ok((required(row.get::<bool>(column)?)?, difference)))
    .collect::<Result<Vec<_>>>()?;
    if required(row.get::<bool>(1)?)? && same_shape.iter().all(|(same, _)| *same) {
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
    differences.extend(
        same_shape
            .into_iter()
            .filter(|(same, _)| !same)
            .map(|(_, difference)| difference.to_string()),
    );
    let ttl: String = required(row.get(5)?)?;
    if differences.is_empty() {
        differences.push(format!("ttl or stall_timeout differs (ttl is {ttl})"));
    }
    Ok(Err(differences.join("; ")))
}

static RECORD_RESULT: Statement = Statement {
    sql: "INSERT INTO barrier_internal.result (barrier_id, slot, result, failed) \
          VALUES ($1, $2, $3, $4) \
          ON CONFLICT (barrier_id, slot) DO NOTHING",
    types: &[TEXT, INT4, JSONB, BOOL],
    writes: true,
};

/// Records one task's result (or, `failed`, its error) at `slot`; false if that slot already
/// reported.
///
/// The caller holds the barrier's row lock, so no other transaction is inserting for this
/// barrier and the conflict check never waits.
pub fn record_result(
    client: &mut SpiClient<'_>,
    id: &str,
    slot: i32,
    result: Option<RawJsonb>,
    failed: bool,
) -> Result<bool> {
    Ok(RECORD_RESULT
        .write(
            client,
            &[id.into(), slot.into(), result.into(), failed.into()],
        )?
        .len()
        == 1)
}

static SLOT_FAILED: Statement = Statement {
    sql: "SELECT failed FROM barrier_internal.result WHERE barrier_id = $1 AND slot = $2",
    types: &[TEXT, INT4],
    writes: false,
};

/// Whether `slot` has reported in this round: `Some(true)` if it failed, `None` if not at all.
pub fn slot_failed(client: &SpiClient<'_>, id: &str, slot: i32) -> Result<Option<bool>> {
    let row = only_row(SLOT_FAILED.read(client, &[id.into(), slot.into()])?);
    Ok(row.map(|row| row.get::<bool>(1)).transpose()?.flatten())
}

static REARM: Statement = Statement {
    sql: "UPDATE barrier_internal.result SET result = $3, failed = false \
           WHERE barrier_id = $1 AND slot = $2 AND failed",
    types: &[TEXT, INT4, JSONB],
    writes: true,
};

/// Replaces the failure recorded at `slot` with a success (a retried task).
pub fn rearm(
    client: &mut SpiClient<'_>,
    id: &str,
    slot: i32,
    result: Option<RawJsonb>,
) -> Result<()> {
    let updated = REARM
        .write(client, &[id.into(), slot.into(), result.into()])?
        .len();
    if updated != 1 {
        return Err(BarrierError::Internal(format!(
            "slot {slot} held no failure to replace"
        )));
    }
    Ok(())
}

static COUNT: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET remaining = $2, slotted = $3, result_bytes = $4, failed = $5, \
                 progress_at = pg_catalog.statement_timestamp(), \
                 status = CASE WHEN $6 THEN 'complete' ELSE status END, \
                 finished_at = CASE WHEN $6 THEN $7 END \
           WHERE id = $1",
    types: &[TEXT, INT4, BOOL, INT8, INT4, BOOL, TIMESTAMPTZ],
    writes: true,
};

/// A locked, pending barrier's counters after a report.
pub struct Counted {
    pub remaining: i32,
    /// `None` until the first report.
    pub slotted: Option<bool>,
    pub result_bytes: i64,
    pub failed: i32,
    /// The report completed the barrier.
    pub complete: bool,
}

/// Stores the counters after a report, and completion. Only the narrow hot row changes, and no
/// indexed column unless it completes, so the update is HOT.
pub fn count(client: &mut SpiClient<'_>, id: &str, counted: &Counted) -> Result<()> {
    COUNT.write(
        client,
        &[
            id.into(),
            counted.remaining.into(),
            counted.slotted.into(),
            counted.result_bytes.into(),
            counted.failed.into(),
            counted.complete.into(),
            statement_time()?.into(),
        ],
    )?;
    Ok(())
}

static SEAL: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier SET sealed = true WHERE id = $1 AND NOT sealed",
    types: &[TEXT],
    writes: true,
};

/// Seals a locked, pending barrier.
pub fn seal(client: &mut SpiClient<'_>, id: &str) -> Result<()> {
    SEAL.write(client, &[id.into()])?;
    Ok(())
}

/// How a round ended for its consumer: `complete`, `complete_with_failures` or (a delivered
/// expiry) `expired`.
pub fn completion_status(status: Status, failed: i32) -> &'static str {
    match status {
        Status::Complete if failed > 0 => "complete_with_failures",
        other => other.as_str(),
    }
}

/// What the completer, and the consumer that takes it, is handed (docs/shapes.md).
pub struct Completion {
    pub results: RawJsonb,
    pub callback: Option<RawJsonb>,
    pub channel: String,
    pub failed_slots: Vec<i32>,
    pub errors: RawJsonb,
    pub missing_slots: Vec<i32>,
}

// Every slot reported and none failed (every plain completion): the results as they are.
static COMPLETION_WHOLE: Statement = Statement {
    sql: "SELECT s.channel, s.callback, \
                 COALESCE((SELECT pg_catalog.jsonb_agg(r.result ORDER BY r.slot) \
                             FROM barrier_internal.result r \
                            WHERE r.barrier_id = $1), '[]'::jsonb), \
                 '{}'::integer[], '[]'::jsonb, '{}'::integer[] \
            FROM barrier_internal.barrier_spec s \
           WHERE s.id = $1",
    types: &[TEXT],
    writes: false,
};

// Failed or missing slots: one element per slot, each found through the primary key.
static COMPLETION_PARTIAL: Statement = Statement {
    sql: "SELECT s.channel, s.callback, \
                 COALESCE((SELECT pg_catalog.jsonb_agg( \
                                      (SELECT CASE WHEN r.failed THEN NULL ELSE r.result END \
                                         FROM barrier_internal.result r \
                                        WHERE r.barrier_id = $1 AND r.slot = g.slot) \
                                      ORDER BY g.slot) \
                             FROM pg_catalog.generate_series(0, $2 - 1) AS g(slot)), \
                          '[]'::jsonb), \
                 COALESCE((SELECT pg_catalog.array_agg(r.slot ORDER BY r.slot) \
                             FROM barrier_internal.result r \
                            WHERE r.barrier_id = $1 AND r.failed), '{}'::integer[]), \
                 COALESCE((SELECT pg_catalog.jsonb_agg(r.result ORDER BY r.slot) \
                             FROM barrier_internal.result r \
                            WHERE r.barrier_id = $1 AND r.failed), '[]'::jsonb), \
                 COALESCE((SELECT pg_catalog.array_agg(g.slot ORDER BY g.slot) \
                             FROM pg_catalog.generate_series(0, $2 - 1) AS g(slot) \
                            WHERE NOT EXISTS (SELECT FROM barrier_internal.result r \
                                               WHERE r.barrier_id = $1 AND r.slot = g.slot)), \
                          '{}'::integer[]) \
            FROM barrier_internal.barrier_spec s \
           WHERE s.id = $1",
    types: &[TEXT, INT4],
    writes: false,
};

/// The round's completion: one result per slot in slot (or arrival) order, the failures and the
/// slots that never reported, with the callback and channel; the jsonb values are copied into
/// `memory`. `barrier` is the locked row as it stands now.
pub fn completion(
    client: &SpiClient<'_>,
    id: &str,
    barrier: &Locked,
    memory: pg_sys::MemoryContext,
) -> Result<Completion> {
    let table = if barrier.remaining == 0 && barrier.failed == 0 {
        COMPLETION_WHOLE.read(client, &[id.into()])?
    } else {
        COMPLETION_PARTIAL.read(client, &[id.into(), barrier.expected.into()])?
    };
    let row =
        only_row(table).ok_or_else(|| BarrierError::Internal("barrier spec is missing".into()))?;
    Ok(Completion {
        channel: required(row.get(1)?)?,
        callback: jsonb_at(&row, 2, memory)?,
        results: required(jsonb_at(&row, 3, memory)?)?,
        failed_slots: required(row.get(4)?)?,
        errors: required(jsonb_at(&row, 5, memory)?)?,
        missing_slots: required(row.get(6)?)?,
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
             SET status = $2, finished_at = pg_catalog.statement_timestamp(), \
                 result_bytes = CASE WHEN $3 THEN result_bytes ELSE 0 END \
           WHERE id = $1",
    types: &[TEXT, TEXT, BOOL],
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

/// Ends round `round` of a locked, live barrier as aborted or expired: frees its results (unless
/// `keep`: an expiry that delivers them), keeps a tombstone (the hot row and spec) so that late
/// calls learn what happened, and notifies.
pub fn end_round(
    client: &mut SpiClient<'_>,
    id: &str,
    round: i64,
    status: Status,
    reason: Option<&str>,
    keep: bool,
) -> Result<()> {
    FINISH.write(client, &[id.into(), status.as_str().into(), keep.into()])?;
    let table = SET_REASON.write(client, &[id.into(), reason.into()])?;
    let channel = table
        .into_iter()
        .next()
        .map(|row| row.get::<String>(1))
        .transpose()?
        .flatten();
    if !keep {
        delete_results(client, id)?;
    }
    notify(client, &required(channel)?, id, status.as_str(), round)
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
    pub failed: i32,
    pub sealed: bool,
    pub need: Option<i32>,
}

static STATUS: Statement = Statement {
    sql: "SELECT b.owner::oid, b.id, \
                 CASE WHEN b.status = 'pending' AND b.expires_at <= pg_catalog.statement_timestamp() \
                      THEN 'expired' \
                      WHEN b.status = 'complete' AND b.failed > 0 THEN 'complete_with_failures' \
                      ELSE b.status END, \
                 b.expected, b.remaining, b.created_at, b.expires_at, b.finished_at, \
                 s.channel, s.callback, s.reason, b.round, b.failed, b.sealed, b.need \
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
        failed: required(row.get(13)?)?,
        sealed: required(row.get(14)?)?,
        need: row.get(15)?,
    }))
}

static RESULTS: Statement = Statement {
    sql: "SELECT b.owner::oid, \
                 b.status = 'pending' AND b.expires_at > pg_catalog.statement_timestamp(), \
                 b.taken_at IS NULL \
                   AND (b.status = 'complete' OR (b.status = 'expired' AND b.deliver)), \
                 b.remaining = 0 AND b.failed = 0, b.expected \
            FROM barrier_internal.barrier b \
           WHERE b.id = $1",
    types: &[TEXT],
    writes: false,
};

static REPORTED: Statement = Statement {
    sql: "SELECT COALESCE(pg_catalog.jsonb_agg(CASE WHEN r.failed THEN NULL ELSE r.result END \
                                               ORDER BY r.slot), '[]'::jsonb) \
            FROM barrier_internal.result r \
           WHERE r.barrier_id = $1",
    types: &[TEXT],
    writes: false,
};

/// The owner and the results: of a pending barrier, those reported so far (a failure as
/// `null`); of a completion waiting for its consumer, the completion's; `None` for a finished
/// barrier that holds none. `None` overall if there is no such barrier.
pub fn results(
    client: &SpiClient<'_>,
    id: &str,
    memory: pg_sys::MemoryContext,
) -> Result<Option<(pg_sys::Oid, Option<RawJsonb>)>> {
    let Some(row) = only_row(RESULTS.read(client, &[id.into()])?) else {
        return Ok(None);
    };
    let owner = required(row.get(1)?)?;
    let pending: bool = required(row.get(2)?)?;
    let takeable: bool = required(row.get(3)?)?;
    let whole: bool = required(row.get(4)?)?;
    let expected: i32 = required(row.get(5)?)?;
    let results = if pending {
        let row = only_row(REPORTED.read(client, &[id.into()])?);
        match row {
            Some(row) => jsonb_at(&row, 1, memory)?,
            None => None,
        }
    } else if takeable {
        let table = if whole {
            COMPLETION_WHOLE.read(client, &[id.into()])?
        } else {
            COMPLETION_PARTIAL.read(client, &[id.into(), expected.into()])?
        };
        match only_row(table) {
            Some(row) => jsonb_at(&row, 3, memory)?,
            None => None,
        }
    } else {
        None
    };
    Ok(Some((owner, results)))
}

static PENDING_BARRIER: Statement = Statement {
    sql: "SELECT b.owner::oid, \
                 b.status = 'pending' AND b.expires_at > pg_catalog.statement_timestamp(), \
                 b.expected \
            FROM barrier_internal.barrier b \
           WHERE b.id = $1",
    types: &[TEXT],
    writes: false,
};

// The candidate slots come from a set-returning function in the select list, which yields them
// one at a time (in FROM it would produce them all first), and each is looked up by a scalar
// subquery, which the planner cannot turn into a join that reads them all (as it may turn NOT
// EXISTS): the LIMIT stops it after `max_rows` pending slots, however many the barrier has.
static PENDING_SLOTS: Statement = Statement {
    sql: "SELECT pg_catalog.array_agg(p.slot ORDER BY p.slot) FROM ( \
              SELECT g.slot FROM (SELECT pg_catalog.generate_series($2, $3) AS slot) g \
               WHERE (SELECT true FROM barrier_internal.result r \
                       WHERE r.barrier_id = $1 AND r.slot = g.slot) IS NULL \
               LIMIT $4) p",
    types: &[TEXT, INT4, INT4, INT8],
    writes: false,
};

/// The owner and up to `max_rows` slots of a pending barrier above `after` that have not
/// reported, in order (none for a finished barrier); `None` if there is no such barrier. One
/// primary-key probe per slot looked at: O(`max_rows` + the reported slots skipped).
pub fn pending_slots(
    client: &SpiClient<'_>,
    id: &str,
    after: Option<i32>,
    max_rows: i32,
) -> Result<Option<(pg_sys::Oid, Vec<i32>)>> {
    let Some(row) = only_row(PENDING_BARRIER.read(client, &[id.into()])?) else {
        return Ok(None);
    };
    let owner = required(row.get(1)?)?;
    let pending: bool = required(row.get(2)?)?;
    let expected: i32 = required(row.get(3)?)?;
    let first = after.map_or(0, |after| after.saturating_add(1));
    if !pending || first >= expected {
        return Ok(Some((owner, Vec::new())));
    }
    let table = PENDING_SLOTS.read(
        client,
        &[
            id.into(),
            first.into(),
            (expected - 1).into(),
            i64::from(max_rows).into(),
        ],
    )?;
    let slots = only_row(table)
        .map(|row| row.get::<Vec<i32>>(1))
        .transpose()?
        .flatten()
        .unwrap_or_default();
    Ok(Some((owner, slots)))
}

static NOTIFY: Statement = Statement {
    sql: "SELECT pg_catalog.pg_notify($1, \
                 pg_catalog.json_build_object('id', $2, 'status', $3, 'round', $4)::text)",
    types: &[TEXT, TEXT, TEXT, INT8],
    writes: true,
};

/// Queues the wake-up for a terminal transition (`status`: `complete`,
/// `complete_with_failures`, `aborted` or `expired`); PostgreSQL delivers it when the
/// transaction commits and drops it if it rolls back. The payload never carries results.
pub fn notify(
    client: &mut SpiClient<'_>,
    channel: &str,
    id: &str,
    status: &str,
    round: i64,
) -> Result<()> {
    NOTIFY.write(
        client,
        &[channel.into(), id.into(), status.into(), round.into()],
    )?;
    Ok(())
}

// Where Citus distributes the tables (`distributed`), no statement may lock rows of many shards
// at once. The statements that lock rows across barriers then run in two steps: the candidates
// are listed without a lock, then each is locked by its id (one shard), skipping it if another
// transaction holds it or if it no longer qualifies. Each pair shares its conditions (these
// macros), so the two forms cannot drift apart.

macro_rules! due_by_ttl {
    ($($tail:literal)*) => {
        concat!(
            "SELECT b.id, b.round, true FROM barrier_internal.barrier b \
              WHERE b.status = 'pending' AND b.expires_at <= pg_catalog.statement_timestamp() ",
            $($tail),*
        )
    };
}

macro_rules! due_by_stall {
    ($($tail:literal)*) => {
        concat!(
            "SELECT b.id, b.round, false \
               FROM barrier_internal.barrier_spec s \
               JOIN barrier_internal.barrier b ON b.id = s.id \
              WHERE s.stall_timeout IS NOT NULL AND b.status = 'pending' \
                AND b.expires_at > pg_catalog.statement_timestamp() \
                AND b.progress_at + s.stall_timeout <= pg_catalog.statement_timestamp() ",
            $($tail),*
        )
    };
}

static SWEEP_DUE_TTL: Statement = Statement {
    sql: due_by_ttl!("ORDER BY b.expires_at LIMIT $1 FOR NO KEY UPDATE OF b SKIP LOCKED"),
    types: &[INT4],
    writes: true,
};

static SWEEP_DUE_STALL: Statement = Statement {
    sql: due_by_stall!("LIMIT $1 FOR NO KEY UPDATE OF b SKIP LOCKED"),
    types: &[INT4],
    writes: true,
};

static SHARDED_DUE_TTL: [Statement; 2] = [
    Statement {
        sql: due_by_ttl!("ORDER BY b.expires_at LIMIT $1"),
        types: &[INT4],
        writes: false,
    },
    Statement {
        sql: due_by_ttl!("AND b.id = $1 FOR NO KEY UPDATE OF b SKIP LOCKED"),
        types: &[TEXT],
        writes: true,
    },
];

static SHARDED_DUE_STALL: [Statement; 2] = [
    Statement {
        sql: due_by_stall!("LIMIT $1"),
        types: &[INT4],
        writes: false,
    },
    Statement {
        sql: due_by_stall!("AND b.id = $1 AND s.id = $1 FOR NO KEY UPDATE OF b SKIP LOCKED"),
        types: &[TEXT],
        writes: true,
    },
];

static DISTRIBUTED: Statement = Statement {
    sql: "SELECT barrier_internal.distributed()",
    types: &[],
    writes: false,
};

static HOLD_SHARD: Statement = Statement {
    sql: "SELECT barrier_internal.hold_shard($1)",
    types: &[TEXT],
    writes: true,
};

/// Holds the metadata lock of barrier `id`'s shard until the transaction ends (distributed
/// tables only: see `barrier_internal.hold_shard` in src/distribute.sql).
pub fn hold_shard(client: &mut SpiClient<'_>, id: &str) -> Result<()> {
    HOLD_SHARD.write(client, &[id.into()])?;
    Ok(())
}

/// Whether Citus distributes the state tables in this database. Where Citus is not installed
/// (its catalog is missing) that is one catalog-cache look-up, and no SQL.
pub fn distributed(client: &SpiClient<'_>) -> Result<bool> {
    // SAFETY: a catalog cache look-up by name.
    let citus = unsafe {
        pg_sys::get_relname_relid(
            c"pg_dist_partition".as_ptr(),
            pg_sys::Oid::from(pg_sys::PG_CATALOG_NAMESPACE),
        )
    };
    if citus == pg_sys::InvalidOid {
        return Ok(false);
    }
    let table = DISTRIBUTED.read(client, &[])?;
    required(table.first().get::<bool>(1)?)
}

/// The two-step form of a locking statement over many barriers, for distributed tables:
/// `list` (its arguments `args`) gives candidate ids, `lock` (its arguments `lock_args(id)`)
/// locks one that still qualifies. Returns the rows of `lock`, in the order of `list`.
fn lock_each<T>(
    client: &mut SpiClient<'_>,
    [list, lock]: &'static [Statement; 2],
    args: &[DatumWithOid<'_>],
    lock_args: impl for<'x> Fn(&'x str) -> Vec<DatumWithOid<'x>>,
    mut read: impl FnMut(&pgrx::spi::SpiHeapTupleData<'_>) -> Result<T>,
) -> Result<Vec<T>> {
    let candidates = list
        .read(client, args)?
        .map(|row| required(row.get::<String>(1)?))
        .collect::<Result<Vec<_>>>()?;
    let mut locked = Vec::new();
    for id in candidates {
        hold_shard(client, &id)?;
        if let Some(row) = lock.write(client, &lock_args(&id))?.next() {
            locked.push(read(&row)?);
        }
    }
    Ok(locked)
}

/// A pending barrier the sweep found past its ttl or its no-progress window, now locked.
pub struct Due {
    pub id: String,
    /// Past its ttl (else: stalled).
    pub by_ttl: bool,
}

/// Locks up to `limit` pending barriers past their ttl or stall window. Rows another
/// transaction holds are skipped (their holder decides first), so sweeps never wait for them,
/// and two sweeps never pick the same barrier.
/// `sharded`: Citus distributes the tables (`Caller::sharded`).
pub fn lock_due(client: &mut SpiClient<'_>, limit: i32, sharded: bool) -> Result<Vec<Due>> {
    // Past the ttl through its index; stalled through the (few) barriers that have a window.
    if sharded {
        let mut due = lock_each(client, &SHARDED_DUE_TTL, &[limit.into()], by_id, due_row)?;
        let left = limit - due.len() as i32;
        if left > 0 {
            due.extend(lock_each(
                client,
                &SHARDED_DUE_STALL,
                &[left.into()],
                by_id,
                due_row,
            )?);
        }
        return Ok(due);
    }
    let mut due = due_rows(SWEEP_DUE_TTL.write(client, &[limit.into()])?)?;
    let left = limit - due.len() as i32;
    if left > 0 {
        due.extend(due_rows(SWEEP_DUE_STALL.write(client, &[left.into()])?)?);
    }
    Ok(due)
}

fn by_id(id: &str) -> Vec<DatumWithOid<'_>> {
    vec![id.into()]
}

fn due_rows(table: SpiTupleTable<'_>) -> Result<Vec<Due>> {
    table.into_iter().map(|row| due_row(&row)).collect()
}

fn due_row(row: &pgrx::spi::SpiHeapTupleData<'_>) -> Result<Due> {
    Ok(Due {
        id: required(row.get(1)?)?,
        by_ttl: required(row.get(3)?)?,
    })
}

// `$2` is the retention.
macro_rules! doomed {
    ($($tail:literal)*) => {
        concat!(
            "SELECT b.id FROM barrier_internal.barrier b \
              WHERE b.status <> 'pending' \
                AND b.finished_at <= pg_catalog.statement_timestamp() - $2 \
                AND (b.status <> 'aborted' OR b.expires_at <= pg_catalog.statement_timestamp()) ",
            $($tail),*
        )
    };
}

static SWEEP_DOOMED: Statement = Statement {
    sql: concat!(
        "SELECT pg_catalog.array_agg(d.id) FROM (",
        doomed!("LIMIT $1 FOR UPDATE OF b SKIP LOCKED"),
        ") d"
    ),
    types: &[INT4, INTERVAL],
    writes: true,
};

static SHARDED_DOOMED: [Statement; 2] = [
    Statement {
        sql: doomed!("LIMIT $1"),
        types: &[INT4, INTERVAL],
        writes: false,
    },
    Statement {
        sql: doomed!("AND b.id = $1 FOR UPDATE OF b SKIP LOCKED"),
        types: &[TEXT, INTERVAL],
        writes: true,
    },
];

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
    sharded: bool,
) -> Result<usize> {
    let doomed = if sharded {
        lock_each(
            client,
            &SHARDED_DOOMED,
            &[limit.into(), retention.into()],
            |id| vec![id.into(), retention.into()],
            |row| required(row.get::<String>(1)?),
        )?
    } else {
        only_row(SWEEP_DOOMED.write(client, &[limit.into(), retention.into()])?)
            .map(|row| row.get::<Vec<String>>(1))
            .transpose()?
            .flatten()
            .unwrap_or_default()
    };
    if doomed.is_empty() {
        return Ok(0);
    }
    DELETE_RESULTS_OF.write(client, &[doomed.clone().into()])?;
    DELETE_SPECS_OF.write(client, &[doomed.clone().into()])?;
    Ok(DELETE_BARRIERS_OF.write(client, &[doomed.into()])?.len())
}

// `$2` is the channel, or NULL for any.
macro_rules! untaken {
    ($($tail:literal)*) => {
        concat!(
            "SELECT b.id, b.status, b.failed FROM barrier_internal.barrier b \
               JOIN barrier_internal.barrier_spec s ON s.id = b.id \
              WHERE b.taken_at IS NULL \
                AND (b.status = 'complete' OR (b.status = 'expired' AND b.deliver)) \
                AND ($2::text IS NULL OR s.channel = $2) ",
            $($tail),*
        )
    };
}

static CLAIM_COMPLETIONS: Statement = Statement {
    sql: untaken!(
        "AND pg_catalog.pg_has_role($3, b.owner::oid, 'USAGE') \
         ORDER BY b.finished_at, b.id LIMIT $1 FOR NO KEY UPDATE OF b SKIP LOCKED"
    ),
    types: &[INT4, TEXT, OID],
    writes: true,
};

// Only roles with the owner's privileges get here on Citus (`context`): every barrier is theirs.
static SHARDED_COMPLETIONS: [Statement; 2] = [
    Statement {
        sql: untaken!("ORDER BY b.finished_at, b.id LIMIT $1"),
        types: &[INT4, TEXT],
        writes: false,
    },
    Statement {
        sql: untaken!("AND b.id = $1 AND s.id = $1 FOR NO KEY UPDATE OF b SKIP LOCKED"),
        types: &[TEXT, TEXT],
        writes: true,
    },
];

/// Locks up to `limit` untaken completions (and delivered expiries) the role may act for,
/// oldest first, skipping those another consumer holds: each id with its completion status.
pub fn claim_completions(
    client: &mut SpiClient<'_>,
    limit: i32,
    channel: Option<&str>,
    role: pg_sys::Oid,
    sharded: bool,
) -> Result<Vec<(String, &'static str)>> {
    let claimed = |row: &pgrx::spi::SpiHeapTupleData<'_>| {
        let status: String = required(row.get(2)?)?;
        Ok((
            required(row.get::<String>(1)?)?,
            completion_status(Status::parse(&status)?, required(row.get(3)?)?),
        ))
    };
    if sharded {
        return lock_each(
            client,
            &SHARDED_COMPLETIONS,
            &[limit.into(), channel.into()],
            |id| vec![id.into(), channel.into()],
            claimed,
        );
    }
    let table = CLAIM_COMPLETIONS.write(client, &[limit.into(), channel.into(), role.into()])?;
    table.into_iter().map(|row| claimed(&row)).collect()
}

static MARK_TAKEN: Statement = Statement {
    sql: "UPDATE barrier_internal.barrier \
             SET taken_at = pg_catalog.statement_timestamp(), result_bytes = 0 \
           WHERE id = $1 \
          RETURNING finished_at",
    types: &[TEXT],
    writes: true,
};

/// Hands a locked, takeable barrier to its consumer: its completion, freed from the tables, and
/// when it finished.
pub fn take(
    client: &mut SpiClient<'_>,
    id: &str,
    memory: pg_sys::MemoryContext,
) -> Result<(Completion, TimestampWithTimeZone)> {
    let barrier = lock(client, id)?
        .ok_or_else(|| BarrierError::Internal("a claimed barrier vanished".into()))?;
    let completion = completion(client, id, &barrier, memory)?;
    let finished = mark_taken(client, id)?;
    Ok((completion, finished))
}

/// Marks a locked, takeable barrier taken and frees its results: when it finished.
pub fn mark_taken(client: &mut SpiClient<'_>, id: &str) -> Result<TimestampWithTimeZone> {
    let table = MARK_TAKEN.write(client, &[id.into()])?;
    let finished = table
        .into_iter()
        .next()
        .map(|row| row.get(1))
        .transpose()?
        .flatten();
    delete_results(client, id)?;
    required(finished)
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
                 count(*) FILTER (WHERE b.taken_at IS NULL \
                                     AND (b.status = 'complete' \
                                          OR (b.status = 'expired' AND b.deliver))), \
                 pg_catalog.statement_timestamp() - min(b.created_at) \
                   FILTER (WHERE b.status = 'pending' \
                             AND b.expires_at > pg_catalog.statement_timestamp() \
                             AND pg_catalog.isfinite(b.created_at)), \
                 COALESCE(sum(CASE WHEN b.status = 'pending' THEN b.expected - b.remaining \
                                   WHEN b.taken_at IS NULL \
                                    AND (b.status = 'complete' \
                                         OR (b.status = 'expired' AND b.deliver)) \
                                   THEN b.expected - b.remaining ELSE 0 END), 0)::bigint, \
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

/// What a report needs from the spec beyond the hot row: the failure limit and the parent.
pub struct Shape {
    pub max_failures: Option<i32>,
    pub parent: Option<(String, i32)>,
}

static SHAPE: Statement = Statement {
    sql: "SELECT s.max_failures, s.parent, s.parent_slot \
            FROM barrier_internal.barrier_spec s \
           WHERE s.id = $1",
    types: &[TEXT],
    writes: false,
};

/// The barrier's failure limit and parent; a barrier without a spec has neither.
pub fn shape(client: &SpiClient<'_>, id: &str) -> Result<Shape> {
    let Some(row) = only_row(SHAPE.read(client, &[id.into()])?) else {
        return Ok(Shape {
            max_failures: None,
            parent: None,
        });
    };
    let parent: Option<String> = row.get(2)?;
    let parent_slot: Option<i32> = row.get(3)?;
    Ok(Shape {
        max_failures: row.get(1)?,
        parent: parent.zip(parent_slot),
    })
}

static CLAIMED_BY_ANOTHER: Statement = Statement {
    sql: "SELECT EXISTS (SELECT FROM barrier_internal.barrier_spec s \
                          WHERE s.parent = $1 AND s.parent_slot = $2 AND s.id <> $3)",
    types: &[TEXT, INT4, TEXT],
    writes: false,
};

/// Whether a barrier other than `child` reports into `slot` of `parent`.
pub fn claimed_by_another(
    client: &SpiClient<'_>,
    parent: &str,
    slot: i32,
    child: &str,
) -> Result<bool> {
    let row =
        only_row(CLAIMED_BY_ANOTHER.read(client, &[parent.into(), slot.into(), child.into()])?);
    required(row.map(|row| row.get::<bool>(1)).transpose()?.flatten())
}

static ENDED_WITH_RESULTS: Statement = Statement {
    sql: "SELECT pg_catalog.jsonb_build_object('id', $1, 'round', $2, 'status', $3, \
                 'results', $4, 'failed_slots', pg_catalog.to_jsonb($5::integer[]), \
                 'errors', $6, 'missing_slots', pg_catalog.to_jsonb($7::integer[]))",
    types: &[
        TEXT,
        INT8,
        TEXT,
        JSONB,
        pg_sys::PgOid::BuiltIn(pg_sys::BuiltinOid::INT4ARRAYOID),
        JSONB,
        pg_sys::PgOid::BuiltIn(pg_sys::BuiltinOid::INT4ARRAYOID),
    ],
    writes: false,
};

static ENDED_WITHOUT_RESULTS: Statement = Statement {
    sql: "SELECT pg_catalog.jsonb_build_object('id', $1, 'round', $2, 'status', $3, \
                 'reason', $4)",
    types: &[TEXT, INT8, TEXT, TEXT],
    writes: false,
};

/// What a child reports into its parent's slot (docs/shapes.md): how its round ended, with the
/// completion when it has one, else the reason; copied into `memory`.
pub fn ended_value(
    client: &SpiClient<'_>,
    id: &str,
    round: i64,
    status: &str,
    ended: &crate::nesting::Ended<'_>,
    memory: pg_sys::MemoryContext,
) -> Result<RawJsonb> {
    let table = match ended {
        crate::nesting::Ended::Completion(done) => ENDED_WITH_RESULTS.read(
            client,
            &[
                id.into(),
                round.into(),
                status.into(),
                done.results.into(),
                done.failed_slots.clone().into(),
                done.errors.into(),
                done.missing_slots.clone().into(),
            ],
        )?,
        crate::nesting::Ended::Reason(reason) => ENDED_WITHOUT_RESULTS.read(
            client,
            &[id.into(), round.into(), status.into(), (*reason).into()],
        )?,
    };
    let row = only_row(table).ok_or_else(|| BarrierError::Internal("no value built".into()))?;
    required(jsonb_at(&row, 1, memory)?)
}
