//! The answers of pg_barrier's functions, typed.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Error;

/// Declares an enum for one of the server's status words: the variants, their exact text (used by
/// serde too, so JSON carries the server's own words) and parsing that turns an unknown word into
/// [`Error::UnexpectedAnswer`] rather than a panic.
macro_rules! status_words {
    (
        $(#[$enum_meta:meta])*
        $name:ident {
            $( $(#[$variant_meta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$enum_meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $( $(#[$variant_meta])* #[serde(rename = $text)] $variant, )+
        }

        impl $name {
            /// The word the server uses for this status.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl FromStr for $name {
            type Err = Error;

            fn from_str(text: &str) -> Result<Self, Error> {
                match text {
                    $( $text => Ok($name::$variant), )+
                    other => Err(Error::UnexpectedAnswer(format!(
                        concat!("{:?} is not a ", stringify!($name)),
                        other
                    ))),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str(self.as_str())
            }
        }
    };
}

status_words! {
    /// What `barrier_enqueue` did.
    EnqueueStatus {
        /// The barrier waits for its reports (also a retried enqueue with the same arguments).
        Pending => "pending",
        /// `expected` was 0: the empty fan-in completed, and notified, at once.
        Complete => "complete",
    }
}

status_words! {
    /// What one `barrier_decr` report (or a `barrier_seal`) did.
    ReportStatus {
        /// Counted; more reports are needed (or the barrier is open: not sealed yet).
        Pending => "pending",
        /// Counted, and this report completed the barrier: the [`Report`] carries results and
        /// callback. Every counted report succeeded. Exactly one report (or seal) per barrier
        /// round answers this or [`CompleteWithFailures`](ReportStatus::CompleteWithFailures).
        Complete => "complete",
        /// Counted, and this report completed the barrier, and at least one counted report
        /// failed: the [`Report`] carries the completion, with `failed_slots` and `errors`.
        CompleteWithFailures => "complete_with_failures",
        /// This slot had already reported; nothing changed.
        Duplicate => "duplicate",
        /// The barrier had already completed; nothing changed.
        AlreadyComplete => "already_complete",
        /// The barrier was aborted: before this report (nothing changed), or by it (a failure
        /// one too many under `max_failures`, or a quorum out of reach).
        Aborted => "aborted",
        /// The barrier's ttl (or stall window) ran out; nothing counted.
        Expired => "expired",
        /// No barrier has this id.
        Unknown => "unknown",
    }
}

status_words! {
    /// What `barrier_abort` did.
    AbortStatus {
        /// This call aborted the barrier.
        Aborted => "aborted",
        AlreadyAborted => "already_aborted",
        /// A completed barrier cannot be aborted.
        AlreadyComplete => "already_complete",
        Expired => "expired",
        Unknown => "unknown",
    }
}

status_words! {
    /// Where a barrier stands, as `barrier_status` and notifications say.
    BarrierState {
        Pending => "pending",
        Complete => "complete",
        /// Complete, and at least one counted report failed.
        CompleteWithFailures => "complete_with_failures",
        Aborted => "aborted",
        /// Past its ttl or stall window (a pending barrier past `expires_at` already reads so).
        Expired => "expired",
    }
}

impl ReportStatus {
    /// Whether the answer is a completion: [`Complete`](ReportStatus::Complete) or
    /// [`CompleteWithFailures`](ReportStatus::CompleteWithFailures).
    pub fn is_complete(self) -> bool {
        matches!(
            self,
            ReportStatus::Complete | ReportStatus::CompleteWithFailures
        )
    }
}

impl BarrierState {
    /// Whether the round has ended: nothing will change until the barrier is enqueued again.
    pub fn is_finished(self) -> bool {
        self != BarrierState::Pending
    }
}

status_words! {
    /// What a completion handed out by `barrier_take` or `barrier_completions` is.
    ///
    /// The default, `Complete`, is what a 0.3 server's completions (which have no status) are.
    #[derive(Default)]
    CompletionStatus {
        /// Every counted report succeeded.
        #[default]
        Complete => "complete",
        /// At least one counted report failed: see `failed_slots` and `errors`.
        CompleteWithFailures => "complete_with_failures",
        /// A barrier enqueued with [`OnExpiry::Deliver`] ran out of time: what was reported by
        /// then.
        Expired => "expired",
    }
}

status_words! {
    /// What a barrier enqueued with a ttl or a stall timeout does when it runs out of time.
    #[derive(Default)]
    OnExpiry {
        /// Expire and free the results (the default, as in 0.3).
        #[default]
        Discard => "discard",
        /// Expire, and hand out what was reported by then once, with `barrier_take` or
        /// `barrier_completions` (status [`CompletionStatus::Expired`]).
        Deliver => "deliver",
    }
}

/// `[]`, for fields a 0.3 server does not send.
fn empty_array() -> Value {
    Value::Array(Vec::new())
}

fn sealed_by_default() -> bool {
    true
}

/// The answer to one `barrier_decr` report, or to a `barrier_seal`.
///
/// Only a completing answer ([`ReportStatus::is_complete`]) carries `results`, `callback`,
/// `failed_slots`, `errors` and `missing_slots`; the others have `None` there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub status: ReportStatus,
    /// Reports still needed (for a quorum's completion: those that had not reported); `None`
    /// only for [`ReportStatus::Unknown`].
    pub remaining: Option<i32>,
    /// Every task's result, as a JSON array with one element per slot in slot order (arrival
    /// order without slots), JSON `null` where a task gave none, failed or never reported.
    pub results: Option<Value>,
    /// The callback the barrier was enqueued with.
    pub callback: Option<Value>,
    /// The slots whose report failed, ascending.
    #[serde(default)]
    pub failed_slots: Option<Vec<i32>>,
    /// The failed reports' results, a JSON array in the order of `failed_slots`.
    #[serde(default)]
    pub errors: Option<Value>,
    /// The slots that never reported (a quorum's completion), ascending.
    #[serde(default)]
    pub missing_slots: Option<Vec<i32>>,
}

impl Report {
    /// Whether this answer completed the barrier (exactly one per round does).
    pub fn is_complete(&self) -> bool {
        self.status.is_complete()
    }
}

/// One row of `barrier_status`: the truth about a barrier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BarrierStatus {
    pub id: String,
    pub status: BarrierState,
    pub expected: i32,
    pub remaining: i32,
    pub created_at: SystemTime,
    pub expires_at: SystemTime,
    /// When the round ended; `None` while pending.
    pub finished_at: Option<SystemTime>,
    /// The NOTIFY channel the barrier's end is announced on.
    pub channel: String,
    pub callback: Option<Value>,
    /// Why it was aborted or expired.
    pub reason: Option<String>,
    /// The round number, which also appears in notifications.
    pub round: i64,
    /// Failed reports held now (a re-armed slot no longer counts); 0 from a 0.3 server.
    #[serde(default)]
    pub failed: i32,
    /// `false` for an open barrier until it is sealed.
    #[serde(default = "sealed_by_default")]
    pub sealed: bool,
    /// The quorum, or `None`: every task.
    #[serde(default)]
    pub need: Option<i32>,
}

/// A completed barrier claimed by `barrier_completions`: the fields of [`Taken`], with the
/// barrier's id and when it finished.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    pub id: String,
    pub finished_at: SystemTime,
    /// The JSON array of the results, one element per slot (see [`Taken::results`]).
    pub results: Value,
    pub callback: Option<Value>,
    #[serde(default)]
    pub status: CompletionStatus,
    #[serde(default)]
    pub failed_slots: Vec<i32>,
    #[serde(default = "empty_array")]
    pub errors: Value,
    #[serde(default)]
    pub missing_slots: Vec<i32>,
}

/// What `barrier_take` hands out, once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Taken {
    /// The JSON array of the results, one element per slot in slot order (arrival order without
    /// slots); JSON `null` where a slot failed (`failed_slots`) or never reported
    /// (`missing_slots`). For a plain barrier: every task's result, and the lists are empty.
    pub results: Value,
    pub callback: Option<Value>,
    /// `Complete`, `CompleteWithFailures`, or `Expired` (a delivered expiry).
    #[serde(default)]
    pub status: CompletionStatus,
    /// The slots whose report failed, ascending.
    #[serde(default)]
    pub failed_slots: Vec<i32>,
    /// The failed reports' results, a JSON array in the order of `failed_slots`.
    #[serde(default = "empty_array")]
    pub errors: Value,
    /// The slots that never reported (a quorum, a delivered expiry), ascending.
    #[serde(default)]
    pub missing_slots: Vec<i32>,
}

/// The counts of one `barrier_sweep` round. Repeat the sweep while either equals `max_rows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sweep {
    /// Pending barriers expired by this round.
    pub expired: i64,
    /// Finished barriers deleted by this round.
    pub deleted: i64,
}

/// `barrier_stats`: counts over the barriers the calling role may act for.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    pub pending: i64,
    pub complete: i64,
    pub aborted: i64,
    pub expired: i64,
    /// Completed barriers nobody has taken or claimed yet.
    pub untaken: i64,
    /// The age of the oldest pending barrier; `None` when none is pending. Read as seconds
    /// (`extract(epoch ...)`) because an interval has no exact `Duration` of its own (months and
    /// days are calendar units); an age is made of seconds, so nothing is lost. A negative age
    /// (a clock stepped back) reads as zero.
    pub oldest_pending_age: Option<Duration>,
    /// The result rows held.
    pub result_rows: i64,
    /// The results held, in bytes.
    pub result_bytes: i64,
}

/// The payload of the NOTIFY that ends a barrier round:
/// `{"id": "...", "status": "complete", "round": 1}`.
///
/// Only a wake-up hint: a listener can miss one (while disconnected), so read
/// [`status`](crate::status) for the truth.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub id: String,
    /// `complete`, `complete_with_failures`, `aborted` or `expired`.
    pub status: BarrierState,
    pub round: i64,
}

impl Notification {
    /// Parses a notification's payload.
    pub fn from_payload(payload: &str) -> Result<Notification, serde_json::Error> {
        serde_json::from_str(payload)
    }
}
