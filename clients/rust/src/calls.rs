//! One typed function per SQL function of pg_barrier.
//!
//! Each takes any [`GenericClient`], a [`Client`](tokio_postgres::Client) or a
//! [`Transaction`](tokio_postgres::Transaction), and runs in that session's current transaction:
//! a report made inside the caller's transaction counts when, and only if, it commits.
//!
//! Every value travels as a bind parameter with an explicit cast, never inside the SQL text.
//! Statements go through [`GenericClient::query_typed`], which sends parse, bind and execute of an
//! *unnamed* statement in one round trip, with the parameter types given by the client. Nothing
//! depends on a named prepared statement surviving between calls, so the calls work behind a
//! transaction-pooling PgBouncer (where plain `query(&str)` would not: it prepares a named
//! statement `sN` in one round trip and executes it in the next, which may reach another server
//! connection outside a transaction), and each call costs one round trip.
//!
//! The functions are called unqualified: the schema pg_barrier is installed into must be on the
//! session's `search_path` (it is `public` by default).
//!
//! A call that uses none of pg_barrier 0.4's arguments sends the function call the 0.3 client
//! sent (0.4's arguments are appended, named, only when they differ from the server's
//! defaults), and the answers that gained columns in 0.4 are read with `SELECT *` and by column
//! name, a column a 0.3 server lacks reading as its 0.3 meaning. So the client works against a
//! 0.3 server for everything 0.3 could do; a call that needs 0.4 fails there (42883,
//! [`Error::Database`]) rather than being silently ignored.

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row};

use crate::types::{
    AbortStatus, BarrierStatus, Completion, CompletionStatus, EnqueueStatus, OnExpiry, Report,
    ReportStatus, Stats, Sweep, Taken,
};
use crate::Error;

/// The barrier a child reports into, and its slot there (`parent`, `parent_slot`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parent {
    /// The parent barrier's id: it must exist, be pending and belong to the same role.
    pub id: String,
    /// The child's slot in the parent (0 to the parent's expected - 1), not reported and not
    /// claimed by another child.
    pub slot: i32,
}

/// The optional arguments of `barrier_enqueue`; `Default` leaves each to the server's default
/// (`sealed` is `true`: a barrier is sealed unless asked otherwise).
#[derive(Debug, Clone, PartialEq)]
pub struct EnqueueOptions {
    /// Any JSON, stored and handed out with the completion (the task to run next), to be
    /// dispatched after the completing report commits (see `take` and `completions`).
    pub callback: Option<Value>,
    /// How long the barrier may stay pending; default `pg_barrier.default_ttl` (6 hours).
    /// Sent as seconds, with microsecond precision.
    pub ttl: Option<Duration>,
    /// The NOTIFY channel, a lower-case identifier; default `pg_barrier.channel`.
    pub channel: Option<String>,
    /// Start over if a live barrier with this id exists, discarding its results.
    pub replace: bool,
    /// The no-progress window after which a sweep expires a pending barrier; default
    /// `pg_barrier.stall_timeout` (off).
    pub stall_timeout: Option<Duration>,
    /// Abort the barrier once more than this many reports have failed ([`decr_failed`]);
    /// `None`: any number. `Some(0)` fails fast.
    pub max_failures: Option<i32>,
    /// A quorum: complete with the `need`-th successful report; `None`: every task.
    pub need: Option<i32>,
    /// `false` enqueues an open barrier: it grows with [`add`] and completes only once
    /// [`seal`]ed. Default `true`.
    pub sealed: bool,
    /// What an expiry does: discard the results (the default) or deliver them.
    pub on_expiry: OnExpiry,
    /// The barrier this one reports into when its round ends.
    pub parent: Option<Parent>,
}

impl Default for EnqueueOptions {
    fn default() -> Self {
        EnqueueOptions {
            callback: None,
            ttl: None,
            channel: None,
            replace: false,
            stall_timeout: None,
            max_failures: None,
            need: None,
            sealed: true,
            on_expiry: OnExpiry::Discard,
            parent: None,
        }
    }
}

/// The server's default `max_rows` of `barrier_completions`.
pub const DEFAULT_COMPLETIONS_MAX_ROWS: i32 = 100;
/// The server's default `max_rows` of `barrier_sweep`.
pub const DEFAULT_SWEEP_MAX_ROWS: i32 = 10_000;

/// A `Duration` as float8 seconds, for `$n::float8 * interval '1 second'`: the product is NULL
/// when the argument is, so an unset option reaches the server as NULL, its default.
fn seconds(duration: Option<Duration>) -> Option<f64> {
    duration.map(|duration| duration.as_secs_f64())
}

/// An age in seconds as a `Duration`: a negative one (a clock stepped back) as zero, one beyond
/// `Duration`'s range as its maximum.
fn age_from_seconds(seconds: f64) -> Duration {
    if seconds.is_nan() || seconds <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(seconds).unwrap_or(Duration::MAX)
}

/// Reads a column, or fails with the decoding error (a NULL where none was expected, say) instead
/// of panicking as `Row::get` would.
fn column<'a, T>(row: &'a Row, name: &str) -> Result<T, Error>
where
    T: tokio_postgres::types::FromSql<'a>,
{
    row.try_get(name).map_err(Error::Database)
}

/// Reads a column a 0.3 server's answer does not have: `absent` when the row lacks it.
fn column_or<'a, T>(row: &'a Row, name: &str, absent: T) -> Result<T, Error>
where
    T: tokio_postgres::types::FromSql<'a>,
{
    if row.columns().iter().any(|column| column.name() == name) {
        column(row, name)
    } else {
        Ok(absent)
    }
}

/// The parameters of a call: each value with the type it is sent as.
type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

/// A statement whose named arguments are appended one by one, each a bind parameter.
struct Statement<'a> {
    sql: String,
    params: Vec<(&'a (dyn ToSql + Sync), Type)>,
}

impl<'a> Statement<'a> {
    /// Appends `, name => $n::cast`.
    fn named(&mut self, name: &str, cast: &str, value: &'a (dyn ToSql + Sync), kind: Type) {
        self.params.push((value, kind));
        self.sql
            .push_str(&format!(", {name} => ${}::{cast}", self.params.len()));
    }
}

/// Runs a call that answers exactly one row. `id` names the barrier the call is about, so that
/// 42704 reads as [`Error::UnknownBarrier`].
async fn one_row<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &Params<'_>,
    id: Option<&str>,
) -> Result<Row, Error> {
    client
        .query_typed_one(sql, params)
        .await
        .map_err(|error| Error::from_call(error, id))
}

/// Runs a call that answers one row or none (a barrier that does not exist, or is not takeable).
async fn optional_row<C: GenericClient>(
    client: &C,
    sql: &str,
    params: &Params<'_>,
    id: &str,
) -> Result<Option<Row>, Error> {
    client
        .query_typed_opt(sql, params)
        .await
        .map_err(|error| Error::from_call(error, Some(id)))
}

/// The arguments of `barrier_enqueue`, converted to what is sent.
struct EnqueueArguments<'a> {
    id: &'a str,
    expected: i32,
    options: &'a EnqueueOptions,
    ttl: Option<f64>,
    stall_timeout: Option<f64>,
    on_expiry: &'static str,
    parent: Option<&'a str>,
    parent_slot: Option<i32>,
}

impl<'a> EnqueueArguments<'a> {
    fn new(id: &'a str, expected: i32, options: &'a EnqueueOptions) -> Self {
        EnqueueArguments {
            id,
            expected,
            options,
            ttl: seconds(options.ttl),
            stall_timeout: seconds(options.stall_timeout),
            on_expiry: options.on_expiry.as_str(),
            parent: options.parent.as_ref().map(|parent| parent.id.as_str()),
            parent_slot: options.parent.as_ref().map(|parent| parent.slot),
        }
    }

    /// The statement: 0.4's arguments only where they differ from the server's defaults, so
    /// that a call without them is the 0.3 call.
    fn statement(&self) -> Statement<'_> {
        let options = self.options;
        let mut statement = Statement {
            sql: "SELECT barrier_enqueue(id => $1::text, expected => $2::int4, \
                callback => $3::jsonb, ttl => $4::float8 * interval '1 second', \
                channel => $5::text, replace => $6::bool, \
                stall_timeout => $7::float8 * interval '1 second'"
                .to_owned(),
            params: vec![
                (&self.id, Type::TEXT),
                (&self.expected, Type::INT4),
                (&options.callback, Type::JSONB),
                (&self.ttl, Type::FLOAT8),
                (&options.channel, Type::TEXT),
                (&options.replace, Type::BOOL),
                (&self.stall_timeout, Type::FLOAT8),
            ],
        };
        if let Some(max_failures) = &options.max_failures {
            statement.named("max_failures", "int4", max_failures, Type::INT4);
        }
        if let Some(need) = &options.need {
            statement.named("need", "int4", need, Type::INT4);
        }
        if !options.sealed {
            statement.named("sealed", "bool", &options.sealed, Type::BOOL);
        }
        if options.on_expiry != OnExpiry::Discard {
            statement.named("on_expiry", "text", &self.on_expiry, Type::TEXT);
        }
        if options.parent.is_some() {
            statement.named("parent", "text", &self.parent, Type::TEXT);
            statement.named("parent_slot", "int4", &self.parent_slot, Type::INT4);
        }
        statement.sql.push_str(") AS status");
        statement
    }
}

/// Registers barrier `id`, which completes after `expected` (>= 0) reports, in the shape the
/// options give it (see `docs/shapes.md`).
///
/// Retrying with the same arguments while the barrier is live changes nothing and answers
/// `Pending`; other arguments fail with [`Error::Conflict`] unless `options.replace` (`sealed`
/// is not compared, and a retry leaves a live barrier's sealing as it is). With a `parent`:
/// [`Error::UnknownBarrier`] (the parent does not exist; its `id` is the parent's),
/// [`Error::NotOwner`] (another role's parent), [`Error::Finished`] (the parent is not pending),
/// [`Error::InvalidArgument`] (the slot is out of range, or the parent is counted without
/// slots), [`Error::Conflict`] (the slot is taken), [`Error::Nesting`] (the barrier would be its
/// own ancestor), [`Error::LimitExceeded`] (more than 16 levels).
pub async fn enqueue<C: GenericClient>(
    client: &C,
    id: &str,
    expected: i32,
    options: &EnqueueOptions,
) -> Result<EnqueueStatus, Error> {
    let arguments = EnqueueArguments::new(id, expected, options);
    let statement = arguments.statement();
    // barrier_enqueue raises 42704 only for a parent that does not exist: the unknown barrier
    // is the parent.
    let unknown = arguments.parent.unwrap_or(id);
    let row = one_row(client, &statement.sql, &statement.params, Some(unknown)).await?;
    column::<&str>(&row, "status")?.parse()
}

/// The answer of `barrier_decr` and `barrier_seal`, with or without 0.4's columns.
fn report_from(row: &Row) -> Result<Report, Error> {
    let status: ReportStatus = column::<&str>(row, "status")?.parse()?;
    // A 0.3 server has no failure columns; its completions have no failures and no missing
    // slots, which is what a 0.4 server says.
    let completed = status.is_complete();
    Ok(Report {
        status,
        remaining: column(row, "remaining")?,
        results: column(row, "results")?,
        callback: column(row, "callback")?,
        failed_slots: column_or(row, "failed_slots", completed.then(Vec::new))?,
        errors: column_or(row, "errors", completed.then(|| Value::Array(Vec::new())))?,
        missing_slots: column_or(row, "missing_slots", completed.then(Vec::new))?,
    })
}

async fn report<C: GenericClient>(
    client: &C,
    id: &str,
    result: Option<&Value>,
    slot: Option<i32>,
    failed: bool,
) -> Result<Report, Error> {
    const SQL: &str = "SELECT * FROM barrier_decr(id => $1::text, result => $2::jsonb, \
        slot => $3::int4)";
    const FAILED_SQL: &str = "SELECT * FROM barrier_decr(id => $1::text, result => $2::jsonb, \
        slot => $3::int4, failed => true)";
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&id, Type::TEXT),
        (&result, Type::JSONB),
        (&slot, Type::INT4),
    ];
    let sql = if failed { FAILED_SQL } else { SQL };
    let row = one_row(client, sql, &params, Some(id)).await?;
    report_from(&row)
}

/// Reports one task of barrier `id` done, with its `result` and, for a slotted barrier, its
/// `slot` (0 to expected - 1). With slots a redelivered task answers `Duplicate` instead of
/// counting twice; a slot that failed ([`decr_failed`]) and reports again with a success is
/// re-armed while the barrier is pending: the success replaces the failure, counted once.
pub async fn decr<C: GenericClient>(
    client: &C,
    id: &str,
    result: Option<&Value>,
    slot: Option<i32>,
) -> Result<Report, Error> {
    report(client, id, result, slot, false).await
}

/// Reports one task of barrier `id` failed (`barrier_decr(..., failed => true)`), with `error`
/// as its result: it counts toward completion, which is then
/// [`CompleteWithFailures`](crate::ReportStatus::CompleteWithFailures), under the barrier's
/// `max_failures` (one failure too many aborts it) and `need` (failures count against the
/// quorum). A second failure of a failed slot answers `Duplicate`.
pub async fn decr_failed<C: GenericClient>(
    client: &C,
    id: &str,
    error: Option<&Value>,
    slot: Option<i32>,
) -> Result<Report, Error> {
    report(client, id, error, slot, true).await
}

/// Seals an open barrier (`barrier_seal`): the completion if every report is in (or the quorum
/// is met), `Pending` if reports are still to come (and for a barrier sealed already), `Aborted`
/// if its quorum can no longer be reached. Fails with [`Error::UnknownBarrier`],
/// [`Error::NotOwner`], or [`Error::Finished`] for a finished barrier.
pub async fn seal<C: GenericClient>(client: &C, id: &str) -> Result<Report, Error> {
    const SQL: &str = "SELECT * FROM barrier_seal(id => $1::text)";
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&id, Type::TEXT)];
    let row = one_row(client, SQL, &params, Some(id)).await?;
    report_from(&row)
}

/// Up to `max_rows` slots of a pending barrier that have not reported, ascending, above `after`
/// (page on with the last slot seen; for a barrier counted without slots, the arrival positions
/// still to come); empty for a finished barrier. Fails with [`Error::UnknownBarrier`] or
/// [`Error::NotOwner`].
pub async fn pending_slots<C: GenericClient>(
    client: &C,
    id: &str,
    max_rows: i32,
    after: Option<i32>,
) -> Result<Vec<i32>, Error> {
    const SQL: &str = "SELECT slot FROM barrier_pending_slots(id => $1::text, \
                       max_rows => $2::integer, after => $3::integer)";
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&id, Type::TEXT),
        (&max_rows, Type::INT4),
        (&after, Type::INT4),
    ];
    let rows = client
        .query_typed(SQL, &params)
        .await
        .map_err(|error| Error::from_call(error, Some(id)))?;
    rows.iter().map(|row| column(row, "slot")).collect()
}

/// Aborts a live barrier; late reports then answer `Aborted`.
pub async fn abort<C: GenericClient>(
    client: &C,
    id: &str,
    reason: Option<&str>,
) -> Result<AbortStatus, Error> {
    const SQL: &str = "SELECT barrier_abort(id => $1::text, reason => $2::text) AS status";
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&id, Type::TEXT), (&reason, Type::TEXT)];
    let row = one_row(client, SQL, &params, Some(id)).await?;
    column::<&str>(&row, "status")?.parse()
}

/// Adds `extra` (>= 1) tasks to a pending barrier and returns the new `expected`; for a slotted
/// barrier the new slots follow the old ones. Fails with [`Error::UnknownBarrier`] or
/// [`Error::Finished`].
pub async fn add<C: GenericClient>(client: &C, id: &str, extra: i32) -> Result<i32, Error> {
    const SQL: &str = "SELECT barrier_add(id => $1::text, extra => $2::int4) AS expected";
    let params: [(&(dyn ToSql + Sync), Type); 2] = [(&id, Type::TEXT), (&extra, Type::INT4)];
    let row = one_row(client, SQL, &params, Some(id)).await?;
    column(&row, "expected")
}

/// The barrier's status row, or `None` if no barrier has this id.
pub async fn status<C: GenericClient>(
    client: &C,
    id: &str,
) -> Result<Option<BarrierStatus>, Error> {
    const SQL: &str = "SELECT * FROM barrier_status(id => $1::text)";
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&id, Type::TEXT)];
    let row = optional_row(client, SQL, &params, id).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(BarrierStatus {
        id: column(&row, "id")?,
        status: column::<&str>(&row, "status")?.parse()?,
        expected: column(&row, "expected")?,
        remaining: column(&row, "remaining")?,
        created_at: column(&row, "created_at")?,
        expires_at: column(&row, "expires_at")?,
        finished_at: column(&row, "finished_at")?,
        channel: column(&row, "channel")?,
        callback: column(&row, "callback")?,
        reason: column(&row, "reason")?,
        round: column(&row, "round")?,
        // 0.4's columns, with their 0.3 meaning where the server has none.
        failed: column_or(&row, "failed", 0)?,
        sealed: column_or(&row, "sealed", true)?,
        need: column_or(&row, "need", None)?,
    }))
}

/// The results recorded so far, as a JSON array; `None` for an unknown, aborted, expired or taken
/// barrier.
pub async fn results<C: GenericClient>(client: &C, id: &str) -> Result<Option<Value>, Error> {
    const SQL: &str = "SELECT barrier_results(id => $1::text) AS results";
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&id, Type::TEXT)];
    let row = one_row(client, SQL, &params, Some(id)).await?;
    column(&row, "results")
}

/// A completion's 0.4 fields: status, failed slots, errors, missing slots. A 0.3 server's
/// completions are all complete, without failures.
fn completion_fields(row: &Row) -> Result<(CompletionStatus, Vec<i32>, Value, Vec<i32>), Error> {
    let status = match column_or::<Option<&str>>(row, "status", None)? {
        Some(status) => status.parse()?,
        None => CompletionStatus::Complete,
    };
    Ok((
        status,
        column_or(row, "failed_slots", Vec::new())?,
        column_or(row, "errors", Value::Array(Vec::new()))?,
        column_or(row, "missing_slots", Vec::new())?,
    ))
}

/// Takes a finished barrier's completion, handed out once: the first take that commits gets
/// it, every other (and a take of a barrier that is pending, aborted, or expired without
/// [`OnExpiry::Deliver`]) gets `None`. A pending barrier past its expiry is expired first (and,
/// delivering, handed out). The barrier stays locked until the caller's transaction ends.
pub async fn take<C: GenericClient>(client: &C, id: &str) -> Result<Option<Taken>, Error> {
    const SQL: &str = "SELECT * FROM barrier_take(id => $1::text)";
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&id, Type::TEXT)];
    let row = optional_row(client, SQL, &params, id).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (status, failed_slots, errors, missing_slots) = completion_fields(&row)?;
    Ok(Some(Taken {
        results: column(&row, "results")?,
        callback: column(&row, "callback")?,
        status,
        failed_slots,
        errors,
        missing_slots,
    }))
}

/// Claims up to `max_rows` finished, untaken completions of the calling role (complete, or a
/// delivered expiry), on `channel` or on any channel when `None`, oldest first. Call it in the
/// transaction that handles them: a rollback lists them again, a commit hands each out for
/// good. Consumers racing skip each other's claims.
/// [`Waiter::next_completion`](crate::Waiter::next_completion) wraps this.
pub async fn completions<C: GenericClient>(
    client: &C,
    channel: Option<&str>,
    max_rows: i32,
) -> Result<Vec<Completion>, Error> {
    const SQL: &str =
        "SELECT * FROM barrier_completions(channel => $1::text, max_rows => $2::int4)";
    let params: [(&(dyn ToSql + Sync), Type); 2] =
        [(&channel, Type::TEXT), (&max_rows, Type::INT4)];
    let rows = client
        .query_typed(SQL, &params)
        .await
        .map_err(Error::from)?;
    rows.iter()
        .map(|row| {
            let (status, failed_slots, errors, missing_slots) = completion_fields(row)?;
            Ok(Completion {
                id: column(row, "id")?,
                finished_at: column(row, "finished_at")?,
                results: column(row, "results")?,
                callback: column(row, "callback")?,
                status,
                failed_slots,
                errors,
                missing_slots,
            })
        })
        .collect()
}

/// One bounded round of housekeeping: expires overdue barriers and deletes old finished ones.
pub async fn sweep<C: GenericClient>(client: &C, max_rows: i32) -> Result<Sweep, Error> {
    const SQL: &str = "SELECT expired, deleted FROM barrier_sweep(max_rows => $1::int4)";
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&max_rows, Type::INT4)];
    let row = one_row(client, SQL, &params, None).await?;
    Ok(Sweep {
        expired: column(&row, "expired")?,
        deleted: column(&row, "deleted")?,
    })
}

/// Counts over the calling role's barriers, for dashboards and alerts.
pub async fn stats<C: GenericClient>(client: &C) -> Result<Stats, Error> {
    // The interval is read as float8 seconds: tokio-postgres has no interval type of its own.
    const SQL: &str = "SELECT pending, complete, aborted, expired, untaken, \
        extract(epoch FROM oldest_pending_age)::float8 AS oldest_pending_seconds, \
        result_rows, result_bytes FROM barrier_stats()";
    let row = one_row(client, SQL, &[], None).await?;
    let oldest_pending_seconds: Option<f64> = column(&row, "oldest_pending_seconds")?;
    Ok(Stats {
        pending: column(&row, "pending")?,
        complete: column(&row, "complete")?,
        aborted: column(&row, "aborted")?,
        expired: column(&row, "expired")?,
        untaken: column(&row, "untaken")?,
        oldest_pending_age: oldest_pending_seconds.map(age_from_seconds),
        result_rows: column(&row, "result_rows")?,
        result_bytes: column(&row, "result_bytes")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The 0.3 client's statement, which a call without 0.4's arguments must still send.
    const ENQUEUE_0_3: &str = "SELECT barrier_enqueue(id => $1::text, expected => $2::int4, \
        callback => $3::jsonb, ttl => $4::float8 * interval '1 second', channel => $5::text, \
        replace => $6::bool, stall_timeout => $7::float8 * interval '1 second') AS status";

    fn normalised(sql: &str) -> String {
        sql.split_whitespace().collect::<Vec<_>>().join(" ")
    }

    #[test]
    fn a_plain_enqueue_sends_the_0_3_statement() {
        let options = EnqueueOptions {
            callback: Some(serde_json::json!({"task": "x"})),
            ttl: Some(Duration::from_secs(60)),
            channel: Some("etl".to_owned()),
            replace: true,
            stall_timeout: Some(Duration::from_secs(5)),
            ..EnqueueOptions::default()
        };
        let arguments = EnqueueArguments::new("id", 2, &options);
        let statement = arguments.statement();
        assert_eq!(normalised(&statement.sql), normalised(ENQUEUE_0_3));
        assert_eq!(statement.params.len(), 7);
    }

    #[test]
    fn the_shape_arguments_are_named_and_sent_only_when_set() {
        let options = EnqueueOptions {
            max_failures: Some(0),
            need: Some(1),
            sealed: false,
            on_expiry: OnExpiry::Deliver,
            parent: Some(Parent {
                id: "p".to_owned(),
                slot: 3,
            }),
            ..EnqueueOptions::default()
        };
        let arguments = EnqueueArguments::new("id", 2, &options);
        let statement = arguments.statement();
        assert!(
            normalised(&statement.sql).ends_with(
                "stall_timeout => $7::float8 * interval '1 second', max_failures => $8::int4, \
                 need => $9::int4, sealed => $10::bool, on_expiry => $11::text, \
                 parent => $12::text, parent_slot => $13::int4) AS status"
            ),
            "{}",
            statement.sql
        );
        let types: Vec<Type> = statement
            .params
            .iter()
            .map(|(_, kind)| kind.clone())
            .collect();
        assert_eq!(
            types[7..],
            [
                Type::INT4,
                Type::INT4,
                Type::BOOL,
                Type::TEXT,
                Type::TEXT,
                Type::INT4
            ]
        );

        let need_only = EnqueueOptions {
            need: Some(2),
            ..EnqueueOptions::default()
        };
        let arguments = EnqueueArguments::new("id", 2, &need_only);
        let statement = arguments.statement();
        assert!(statement.sql.ends_with(", need => $8::int4) AS status"));
        assert_eq!(statement.params.len(), 8);
    }

    #[test]
    fn the_defaults_are_the_servers() {
        let options = EnqueueOptions::default();
        assert!(options.sealed);
        assert_eq!(options.on_expiry, OnExpiry::Discard);
        assert_eq!(
            (options.max_failures, options.need, options.parent),
            (None, None, None)
        );
    }
}
