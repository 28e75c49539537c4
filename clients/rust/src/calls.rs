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

use std::time::Duration;

use serde_json::Value;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{GenericClient, Row};

use crate::types::{
    AbortStatus, BarrierStatus, Completion, EnqueueStatus, Report, Stats, Sweep, Taken,
};
use crate::Error;

/// The optional arguments of `barrier_enqueue`; `Default` leaves each to the server's default.
#[derive(Debug, Clone, Default, PartialEq)]
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

/// The parameters of a call: each value with the type it is sent as.
type Params<'a> = [(&'a (dyn ToSql + Sync), Type)];

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

/// Registers barrier `id`, which completes after `expected` (>= 0) reports.
///
/// Retrying with the same arguments while the barrier is live changes nothing and answers
/// `Pending`; other arguments fail with [`Error::Conflict`] unless `options.replace`.
pub async fn enqueue<C: GenericClient>(
    client: &C,
    id: &str,
    expected: i32,
    options: &EnqueueOptions,
) -> Result<EnqueueStatus, Error> {
    const SQL: &str = "SELECT barrier_enqueue(id => $1::text, expected => $2::int4, \
        callback => $3::jsonb, ttl => $4::float8 * interval '1 second', channel => $5::text, \
        replace => $6::bool, stall_timeout => $7::float8 * interval '1 second') AS status";
    let ttl = seconds(options.ttl);
    let stall_timeout = seconds(options.stall_timeout);
    let params: [(&(dyn ToSql + Sync), Type); 7] = [
        (&id, Type::TEXT),
        (&expected, Type::INT4),
        (&options.callback, Type::JSONB),
        (&ttl, Type::FLOAT8),
        (&options.channel, Type::TEXT),
        (&options.replace, Type::BOOL),
        (&stall_timeout, Type::FLOAT8),
    ];
    let row = one_row(client, SQL, &params, Some(id)).await?;
    column::<&str>(&row, "status")?.parse()
}

/// Reports one task of barrier `id` done, with its `result` and, for a slotted barrier, its
/// `slot` (0 to expected - 1). With slots a redelivered task answers `Duplicate` instead of
/// counting twice.
pub async fn decr<C: GenericClient>(
    client: &C,
    id: &str,
    result: Option<&Value>,
    slot: Option<i32>,
) -> Result<Report, Error> {
    const SQL: &str = "SELECT status, remaining, results, callback \
        FROM barrier_decr(id => $1::text, result => $2::jsonb, slot => $3::int4)";
    let params: [(&(dyn ToSql + Sync), Type); 3] = [
        (&id, Type::TEXT),
        (&result, Type::JSONB),
        (&slot, Type::INT4),
    ];
    let row = one_row(client, SQL, &params, Some(id)).await?;
    Ok(Report {
        status: column::<&str>(&row, "status")?.parse()?,
        remaining: column(&row, "remaining")?,
        results: column(&row, "results")?,
        callback: column(&row, "callback")?,
    })
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
    const SQL: &str = "SELECT id, status, expected, remaining, created_at, expires_at, \
        finished_at, channel, callback, reason, round FROM barrier_status(id => $1::text)";
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

/// Takes a completed barrier's results and callback, handed out once: the first take that
/// commits gets them, every other (and a take of a barrier that is not complete) gets `None`.
/// The barrier stays locked until the caller's transaction ends.
pub async fn take<C: GenericClient>(client: &C, id: &str) -> Result<Option<Taken>, Error> {
    const SQL: &str = "SELECT results, callback FROM barrier_take(id => $1::text)";
    let params: [(&(dyn ToSql + Sync), Type); 1] = [(&id, Type::TEXT)];
    let row = optional_row(client, SQL, &params, id).await?;
    let Some(row) = row else {
        return Ok(None);
    };
    Ok(Some(Taken {
        results: column(&row, "results")?,
        callback: column(&row, "callback")?,
    }))
}

/// Claims up to `max_rows` completed, untaken barriers of the calling role, on `channel` or on
/// any channel when `None`, oldest first. Call it in the transaction that handles them: a
/// rollback lists them again, a commit hands each out for good. Consumers racing skip each
/// other's claims. [`Waiter::next_completion`](crate::Waiter::next_completion) wraps this.
pub async fn completions<C: GenericClient>(
    client: &C,
    channel: Option<&str>,
    max_rows: i32,
) -> Result<Vec<Completion>, Error> {
    const SQL: &str = "SELECT id, finished_at, results, callback \
        FROM barrier_completions(channel => $1::text, max_rows => $2::int4)";
    let params: [(&(dyn ToSql + Sync), Type); 2] =
        [(&channel, Type::TEXT), (&max_rows, Type::INT4)];
    let rows = client
        .query_typed(SQL, &params)
        .await
        .map_err(Error::from)?;
    rows.iter()
        .map(|row| {
            Ok(Completion {
                id: column(row, "id")?,
                finished_at: column(row, "finished_at")?,
                results: column(row, "results")?,
                callback: column(row, "callback")?,
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
