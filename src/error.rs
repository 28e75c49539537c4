//! Every failure a caller can cause, each mapped to one built-in SQLSTATE.
//!
//! Messages name the argument at fault. Errors raised by PostgreSQL itself while we run SQL
//! (serialization failures, lock timeouts, cancels, read-only transactions) are not wrapped: they
//! reach the caller with their own SQLSTATE.

use pgrx::pg_sys::panic::ErrorReport;
use pgrx::{PgLogLevel, PgSqlErrorCode};

#[derive(Debug)]
pub enum BarrierError {
    /// A required argument was NULL.
    NullArgument { argument: &'static str },
    /// An argument's value is not acceptable.
    InvalidArgument {
        argument: &'static str,
        message: String,
        hint: Option<&'static str>,
    },
    /// A text argument is longer than its limit.
    TooLong {
        argument: &'static str,
        limit: usize,
        actual: usize,
    },
    /// A jsonb argument is larger than `pg_barrier.max_result_bytes`.
    TooLarge {
        argument: &'static str,
        limit: usize,
        actual: usize,
    },
    /// Together the barrier's results would be too large to hand out as one jsonb array.
    ResultsTooLarge { id: String, limit: i64 },
    /// No barrier has this id (for calls that need one).
    Unknown { id: String },
    /// The barrier is not in a state that allows the call.
    WrongState {
        id: String,
        status: &'static str,
        detail: &'static str,
    },
    /// A quorum or a delivering expiry over `validate::MAX_PADDED_SLOTS` slots.
    TooManySlots { argument: &'static str, limit: i32 },
    /// A nested barrier would be its own ancestor.
    Cycle { id: String },
    /// A nested barrier would be more than `nesting::MAX_DEPTH` levels deep.
    TooDeep { id: String },
    /// The parent's slot has reported, or another barrier reports into it.
    SlotTaken { parent: String, slot: i32 },
    /// A live barrier with this id was registered with other arguments.
    Conflict { id: String, detail: String },
    /// The calling role may not act on this barrier.
    NotOwner { id: String },
    /// A role without the tables' owner's privileges, where the tables are distributed by Citus
    /// (role oids differ from node to node, so a barrier's owner means nothing there).
    NotOwnerOnCitus,
    /// Something Citus cannot keep (nesting).
    NotOnCitus { what: &'static str },
    /// A call that changes barriers, in a read-only transaction (also every transaction on a
    /// hot standby).
    ReadOnly,
    /// The installed SQL objects are of another version than this library.
    OutdatedSchema { installed: Option<String> },
    /// The database runs the SQL edition (PL/pgSQL functions over the same tables), which does
    /// not use this library; reached only by the background sweeper or a hand-made C function.
    SqlEdition { installed: String },
    /// A failure of our own SQL that no argument explains.
    Internal(String),
}

impl BarrierError {
    pub fn invalid(argument: &'static str, message: impl Into<String>) -> Self {
        BarrierError::InvalidArgument {
            argument,
            message: message.into(),
            hint: None,
        }
    }

    pub fn invalid_with_hint(
        argument: &'static str,
        message: impl Into<String>,
        hint: &'static str,
    ) -> Self {
        BarrierError::InvalidArgument {
            argument,
            message: message.into(),
            hint: Some(hint),
        }
    }

    pub fn sqlstate(&self) -> PgSqlErrorCode {
        match self {
            BarrierError::NullArgument { .. } => PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            BarrierError::InvalidArgument { .. } => PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            BarrierError::TooLong { .. } => PgSqlErrorCode::ERRCODE_STRING_DATA_RIGHT_TRUNCATION,
            BarrierError::TooLarge { .. } => PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED,
            BarrierError::ResultsTooLarge { .. } | BarrierError::TooManySlots { .. } => {
                PgSqlErrorCode::ERRCODE_PROGRAM_LIMIT_EXCEEDED
            }
            BarrierError::Unknown { .. } => PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            BarrierError::WrongState { .. } => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            BarrierError::Conflict { .. } | BarrierError::SlotTaken { .. } => {
                PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT
            }
            BarrierError::Cycle { .. } => PgSqlErrorCode::ERRCODE_INVALID_RECURSION,
            BarrierError::TooDeep { .. } => PgSqlErrorCode::ERRCODE_STATEMENT_TOO_COMPLEX,
            BarrierError::NotOwner { .. } | BarrierError::NotOwnerOnCitus => {
                PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE
            }
            BarrierError::NotOnCitus { .. } => PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            BarrierError::ReadOnly => PgSqlErrorCode::ERRCODE_READ_ONLY_SQL_TRANSACTION,
            BarrierError::OutdatedSchema { .. } | BarrierError::SqlEdition { .. } => {
                PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE
            }
            BarrierError::Internal(_) => PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
        }
    }

    /// The report PostgreSQL raises; `function` is the SQL function the caller called.
    pub fn into_report(self, function: &'static str) -> ErrorReport {
        let code = self.sqlstate();
        match self {
            BarrierError::NullArgument { argument } => {
                ErrorReport::new(code, format!("{function}: argument \"{argument}\" must not be NULL"), function)
            }
            BarrierError::InvalidArgument { argument, message, hint } => {
                let report = ErrorReport::new(
                    code,
                    format!("{function}: invalid argument \"{argument}\": {message}"),
                    function,
                );
                match hint {
                    Some(hint) => report.set_hint(hint),
                    None => report,
                }
            }
            BarrierError::TooLong { argument, limit, actual } => ErrorReport::new(
                code,
                format!("{function}: argument \"{argument}\" is too long ({actual} bytes, the limit is {limit})"),
                function,
            ),
            BarrierError::TooLarge { argument, limit, actual } => ErrorReport::new(
                code,
                format!("{function}: argument \"{argument}\" is {actual} bytes, over pg_barrier.max_result_bytes ({limit})"),
                function,
            )
            .set_hint("Store large results elsewhere and report a reference, or raise pg_barrier.max_result_bytes."),
            BarrierError::ResultsTooLarge { id, limit } => ErrorReport::new(
                code,
                format!(
                    "{function}: argument \"result\" would take the results of barrier \"{}\" over {limit} bytes",
                    display_id(&id)
                ),
                function,
            )
            .set_detail("A completion hands out every result as one jsonb array, which has a size limit.")
            .set_hint("Report smaller results, such as references to where the data is."),
            BarrierError::Unknown { id } => ErrorReport::new(
                code,
                format!("{function}: barrier \"{}\" does not exist", display_id(&id)),
                function,
            ),
            BarrierError::WrongState { id, status, detail } => ErrorReport::new(
                code,
                format!("{function}: barrier \"{}\" is {status}", display_id(&id)),
                function,
            )
            .set_detail(detail),
            BarrierError::TooManySlots { argument, limit } => ErrorReport::new(
                code,
                format!("{function}: argument \"{argument}\" would give the barrier more than {limit} slots"),
                function,
            )
            .set_detail("A barrier with need or on_expiry => 'deliver' hands out a null and a missing slot for each slot that did not report, in one completion."),
            BarrierError::Cycle { id } => ErrorReport::new(
                code,
                format!("{function}: barrier \"{}\" cannot be its own ancestor", display_id(&id)),
                function,
            ),
            BarrierError::TooDeep { id } => ErrorReport::new(
                code,
                format!(
                    "{function}: barrier \"{}\" would be nested more than {} levels deep",
                    display_id(&id),
                    crate::nesting::MAX_DEPTH
                ),
                function,
            ),
            BarrierError::SlotTaken { parent, slot } => ErrorReport::new(
                code,
                format!("{function}: slot {slot} of barrier \"{}\" is taken", display_id(&parent)),
                function,
            )
            .set_detail("It has reported, or another barrier reports into it."),
            BarrierError::Conflict { id, detail } => ErrorReport::new(
                code,
                format!("{function}: a live barrier \"{}\" exists with different arguments", display_id(&id)),
                function,
            )
            .set_detail(detail)
            .set_hint("Pass replace => true to discard its progress and start it over."),
            BarrierError::NotOwner { id } => ErrorReport::new(
                code,
                format!("{function}: permission denied for barrier \"{}\"", display_id(&id)),
                function,
            )
            .set_detail("A barrier belongs to the role that enqueued it.")
            .set_hint("Call as that role, as a member of it, or as a superuser."),
            BarrierError::NotOwnerOnCitus => ErrorReport::new(
                code,
                format!("{function}: where Citus distributes pg_barrier's tables, only roles with the privileges of their owner may call it"),
                function,
            )
            .set_hint("Call as the owner of the barrier_internal tables, as a member of it, or as a superuser (docs/scale-out.md)."),
            BarrierError::NotOnCitus { what } => ErrorReport::new(
                code,
                format!("{function}: {what} are not supported where Citus distributes pg_barrier's tables"),
                function,
            ),
            BarrierError::ReadOnly => ErrorReport::new(
                code,
                format!("{function}: cannot change barriers in a read-only transaction"),
                function,
            )
            .set_hint("On a hot standby, call it on the primary; reading functions work anywhere."),
            BarrierError::OutdatedSchema { installed: Some(installed) } => ErrorReport::new(
                code,
                format!(
                    "{function}: the pg_barrier library is version {}, its SQL objects in this database are version {installed}",
                    env!("CARGO_PKG_VERSION")
                ),
                function,
            )
            .set_hint("Run ALTER EXTENSION pg_barrier UPDATE."),
            BarrierError::SqlEdition { installed } => ErrorReport::new(
                code,
                format!("{function}: this database runs the SQL edition of pg_barrier ({installed}), which does not use this library"),
                function,
            )
            .set_hint(concat!(
                "Schedule barrier_sweep() there (with pg_cron), or switch the database to the library with ALTER EXTENSION pg_barrier UPDATE TO '",
                env!("CARGO_PKG_VERSION"),
                "'."
            )),
            BarrierError::OutdatedSchema { installed: None } => ErrorReport::new(
                code,
                format!("{function}: pg_barrier is not installed in this database"),
                function,
            )
            .set_hint("Run CREATE EXTENSION pg_barrier."),
            BarrierError::Internal(message) => {
                ErrorReport::new(code, format!("{function}: {message}"), function)
            }
        }
    }
}

impl From<pgrx::spi::SpiError> for BarrierError {
    fn from(error: pgrx::spi::SpiError) -> Self {
        BarrierError::Internal(format!("SPI failed: {error}"))
    }
}

/// Ids are caller-supplied and may be long: messages quote at most the first 64 characters.
pub fn display_id(id: &str) -> String {
    const SHOWN: usize = 64;
    match id.char_indices().nth(SHOWN) {
        Some((cut, _)) => format!("{}...", &id[..cut]),
        None => id.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, BarrierError>;

/// Runs one API function body; its error becomes the ERROR PostgreSQL raises.
///
/// Raised after `body` returns, so every guard in it (such as the role switch) is already undone.
pub fn report<T>(function: &'static str, body: impl FnOnce() -> Result<T>) -> T {
    match body() {
        Ok(value) => value,
        Err(error) => {
            error.into_report(function).report(PgLogLevel::ERROR);
            unreachable!("an ERROR report does not return")
        }
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn long_ids_are_shortened_in_messages() {
        assert_eq!(display_id("abc"), "abc");
        let long = "é".repeat(100);
        let shown = display_id(&long);
        assert_eq!(shown.chars().count(), 67);
        assert!(shown.ends_with("..."));
    }
}
