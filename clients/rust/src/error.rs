//! One error type for every call, sorted by what a caller does about it.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use tokio_postgres::error::SqlState;

/// Everything a call of this crate can fail with.
///
/// Server errors are sorted by SQLSTATE into the conditions a caller handles differently (fix the
/// argument, pick another id, retry the transaction, give up). Each variant that came from the
/// server keeps the original [`tokio_postgres::Error`], reachable through
/// [`source`](StdError::source) and [`Error::postgres`], so the server's message, detail and hint
/// are never lost.
#[derive(Debug)]
pub enum Error {
    /// 22004, 22023 or 22001: a NULL, out-of-domain or too long argument (the message names it).
    /// Retrying the same call fails again.
    InvalidArgument(tokio_postgres::Error),
    /// 42710: a live barrier with this id was enqueued with other arguments (the detail says
    /// which; enqueue with `replace: true` to start over, or use another id), or the parent's
    /// slot asked for is taken: it has reported, or another barrier reports into it. The message
    /// says which.
    Conflict(tokio_postgres::Error),
    /// 42501: the barrier (or the parent asked for) belongs to another role.
    NotOwner(tokio_postgres::Error),
    /// No barrier has this id: 42704 from `barrier_add`, `barrier_seal` or
    /// `barrier_pending_slots`, or from `barrier_enqueue` for a parent that does not exist (`id`
    /// is then the parent's); or a barrier [`Waiter::wait`] was asked about and
    /// `barrier_status` does not know (`source` is `None` then).
    ///
    /// [`Waiter::wait`]: crate::Waiter::wait
    UnknownBarrier {
        id: String,
        source: Option<tokio_postgres::Error>,
    },
    /// 55000: `barrier_add` or `barrier_seal` on a barrier that is complete, aborted or expired,
    /// or an enqueue whose parent is. (The server also raises 55000 when the extension's SQL
    /// objects are older than its library; the message then says to run
    /// `ALTER EXTENSION pg_barrier UPDATE`.)
    Finished(tokio_postgres::Error),
    /// 54000: a result or callback over `pg_barrier.max_result_bytes`, a barrier's results over
    /// their total limit, or a full notification queue at commit. 54001: a JSON value nested too
    /// deeply, or a barrier nested more than 16 levels below its root.
    LimitExceeded(tokio_postgres::Error),
    /// 42P19: the parent asked for would make the barrier its own ancestor. (A tree too deep is
    /// [`Error::LimitExceeded`], 54001.)
    Nesting(tokio_postgres::Error),
    /// 25006: a call that changes barriers in a read-only transaction or on a hot standby.
    ReadOnly(tokio_postgres::Error),
    /// 40001: a serialization failure at REPEATABLE READ or SERIALIZABLE. Nothing was counted;
    /// retry the whole transaction.
    SerializationFailure(tokio_postgres::Error),
    /// Any other failure: a lost connection, an error this crate does not sort, a row that did not
    /// decode.
    Database(tokio_postgres::Error),
    /// A [`Waiter`](crate::Waiter) waited `waited` for barrier `id` and it did not finish.
    Timeout { id: String, waited: Duration },
    /// The server answered something this crate does not know, such as a status added by a newer
    /// pg_barrier. Carries the answer so that it can be reported.
    UnexpectedAnswer(String),
}

impl Error {
    /// Sorts an error of a call by its SQLSTATE. `id` is the barrier the call was about; only with
    /// one does 42704 mean an unknown barrier (without, it is some other missing object).
    pub(crate) fn from_call(error: tokio_postgres::Error, id: Option<&str>) -> Error {
        let code = match error.code() {
            Some(code) => code.code(),
            None => return Error::Database(error),
        };
        match code {
            // Class 22: pg_barrier's own argument checks (22004, 22023, 22001) and PostgreSQL's
            // conversions of an argument (a NUL byte, malformed JSON, an interval out of range).
            code if code.starts_with("22") => Error::InvalidArgument(error),
            "42710" => Error::Conflict(error),
            "42501" => Error::NotOwner(error),
            "42704" => match id {
                Some(id) => Error::UnknownBarrier {
                    id: id.to_owned(),
                    source: Some(error),
                },
                None => Error::Database(error),
            },
            "55000" => Error::Finished(error),
            // 54001: JSON nested too deeply for the server to parse, or a barrier nested more
            // than 16 levels deep (the same SQLSTATE: statement_too_complex).
            "54000" | "54001" => Error::LimitExceeded(error),
            "42P19" => Error::Nesting(error),
            "25006" => Error::ReadOnly(error),
            "40001" => Error::SerializationFailure(error),
            _ => Error::Database(error),
        }
    }

    /// The server's error, where this one came from the server or the driver.
    pub fn postgres(&self) -> Option<&tokio_postgres::Error> {
        match self {
            Error::InvalidArgument(error)
            | Error::Conflict(error)
            | Error::NotOwner(error)
            | Error::Finished(error)
            | Error::LimitExceeded(error)
            | Error::Nesting(error)
            | Error::ReadOnly(error)
            | Error::SerializationFailure(error)
            | Error::Database(error) => Some(error),
            Error::UnknownBarrier { source, .. } => source.as_ref(),
            Error::Timeout { .. } | Error::UnexpectedAnswer(_) => None,
        }
    }

    /// The SQLSTATE the server raised, if it raised one.
    pub fn sqlstate(&self) -> Option<&SqlState> {
        self.postgres().and_then(tokio_postgres::Error::code)
    }

    /// Whether the same transaction, run again, may succeed: only a serialization failure.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::SerializationFailure(_))
    }
}

impl From<tokio_postgres::Error> for Error {
    fn from(error: tokio_postgres::Error) -> Error {
        Error::from_call(error, None)
    }
}

/// The server's own message where there is one (tokio-postgres' Display only says "db error"),
/// otherwise the driver's description.
fn describe(error: &tokio_postgres::Error) -> String {
    match error.as_db_error() {
        Some(db_error) => db_error.message().to_owned(),
        None => error.to_string(),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidArgument(error) => {
                write!(formatter, "invalid argument: {}", describe(error))
            }
            Error::Conflict(error) => write!(formatter, "barrier conflict: {}", describe(error)),
            Error::NotOwner(error) => write!(formatter, "not the owner: {}", describe(error)),
            Error::UnknownBarrier { id, source: None } => {
                write!(formatter, "unknown barrier {id:?}")
            }
            Error::UnknownBarrier {
                id,
                source: Some(error),
            } => write!(formatter, "unknown barrier {id:?}: {}", describe(error)),
            Error::Finished(error) => {
                write!(formatter, "barrier is finished: {}", describe(error))
            }
            Error::LimitExceeded(error) => {
                write!(formatter, "limit exceeded: {}", describe(error))
            }
            Error::Nesting(error) => {
                write!(formatter, "invalid nesting: {}", describe(error))
            }
            Error::ReadOnly(error) => {
                write!(formatter, "read-only transaction: {}", describe(error))
            }
            Error::SerializationFailure(error) => write!(
                formatter,
                "serialization failure (retry the transaction): {}",
                describe(error)
            ),
            Error::Database(error) => write!(formatter, "database error: {}", describe(error)),
            Error::Timeout { id, waited } => write!(
                formatter,
                "barrier {id:?} did not finish within {:.3} s",
                waited.as_secs_f64()
            ),
            Error::UnexpectedAnswer(answer) => {
                write!(formatter, "unexpected answer from the server: {answer}")
            }
        }
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.postgres()
            .map(|error| error as &(dyn StdError + 'static))
    }
}
