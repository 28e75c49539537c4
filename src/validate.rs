//! Argument checks. Every SQL argument is untrusted; each check names the argument it rejects.

use pgrx::datum::Interval;

use crate::error::{BarrierError, Result};
use crate::gucs;
use crate::jsonb::RawJsonb;

/// Longest barrier id, in bytes. Bounded so the id fits a btree entry and any NOTIFY payload
/// (JSON escaping at most sextuples a byte: 6 * 512 plus the envelope stays under 8000).
pub const MAX_ID_BYTES: usize = 512;
/// Longest abort reason, in bytes; it is kept in the tombstone.
pub const MAX_REASON_BYTES: usize = 1024;
/// PostgreSQL truncates channel names to NAMEDATALEN - 1 bytes.
pub const MAX_CHANNEL_BYTES: usize = 63;
/// Longest ttl or stall_timeout: a century, far beyond any job, well inside the timestamp range.
const MAX_TTL_MICROS: i128 = 100 * 12 * 30 * 86_400 * 1_000_000;

pub fn required<T>(argument: &'static str, value: Option<T>) -> Result<T> {
    value.ok_or(BarrierError::NullArgument { argument })
}

pub fn id(id: Option<&str>) -> Result<&str> {
    id_named("id", required("id", id)?)
}

/// A barrier id given as `argument`.
fn id_named<'a>(argument: &'static str, id: &'a str) -> Result<&'a str> {
    if id.is_empty() {
        return Err(BarrierError::invalid(argument, "must not be empty"));
    }
    if id.len() > MAX_ID_BYTES {
        return Err(BarrierError::TooLong {
            argument,
            limit: MAX_ID_BYTES,
            actual: id.len(),
        });
    }
    Ok(id)
}

pub fn expected(expected: Option<i32>) -> Result<i32> {
    let expected = required("expected", expected)?;
    if expected < 0 {
        return Err(BarrierError::invalid(
            "expected",
            format!("must be >= 0, got {expected}"),
        ));
    }
    Ok(expected)
}

/// The slot's lower bound; its upper bound depends on the barrier and is checked under the lock.
pub fn slot(slot: Option<i32>) -> Result<Option<i32>> {
    match slot {
        Some(slot) if slot < 0 => Err(BarrierError::invalid(
            "slot",
            format!("must be >= 0, got {slot}"),
        )),
        other => Ok(other),
    }
}

/// A parent's slot, in range of the parent's tasks.
pub fn slot_in_range_of(
    argument: &'static str,
    parent: &str,
    slot: i32,
    expected: i32,
) -> Result<()> {
    if slot >= expected {
        return Err(BarrierError::invalid(
            argument,
            format!(
                "{slot} is out of range: barrier \"{}\" expects {expected} tasks, slots 0 to {}",
                crate::error::display_id(parent),
                expected - 1
            ),
        ));
    }
    Ok(())
}

/// The shape arguments of `barrier_enqueue` (docs/shapes.md), checked in this order.
pub struct ShapeArguments<'a> {
    pub max_failures: Option<i32>,
    pub need: Option<i32>,
    pub sealed: bool,
    pub deliver: bool,
    pub parent: Option<(&'a str, i32)>,
}

pub fn shape<'a>(
    expected: i32,
    max_failures: Option<i32>,
    need: Option<i32>,
    sealed: Option<bool>,
    on_expiry: Option<&str>,
    parent: Option<&'a str>,
    parent_slot: Option<i32>,
) -> Result<ShapeArguments<'a>> {
    if let Some(limit) = max_failures {
        if limit < 0 {
            return Err(BarrierError::invalid(
                "max_failures",
                format!("must be >= 0, got {limit}"),
            ));
        }
    }
    if let Some(need) = need {
        if need < 1 {
            return Err(BarrierError::invalid(
                "need",
                format!("must be >= 1, got {need}"),
            ));
        }
    }
    let sealed = required("sealed", sealed)?;
    if let Some(need) = need {
        if sealed && need > expected {
            return Err(BarrierError::invalid(
                "need",
                format!("{need} is more than the {expected} tasks expected"),
            ));
        }
    }
    let deliver = match required("on_expiry", on_expiry)? {
        "discard" => false,
        "deliver" => true,
        _ => {
            return Err(BarrierError::invalid(
                "on_expiry",
                "must be 'discard' or 'deliver'",
            ))
        }
    };
    padded_slots("expected", expected, need.is_some() || deliver)?;
    let parent = parent
        .map(|parent| id_named("parent", parent))
        .transpose()?;
    if let Some(slot) = parent_slot {
        if slot < 0 {
            return Err(BarrierError::invalid(
                "parent_slot",
                format!("must be >= 0, got {slot}"),
            ));
        }
    }
    let parent = match (parent, parent_slot) {
        (Some(parent), Some(slot)) => Some((parent, slot)),
        (None, None) => None,
        _ => {
            return Err(BarrierError::invalid(
                "parent_slot",
                "parent and parent_slot go together",
            ))
        }
    };
    Ok(ShapeArguments {
        max_failures,
        need,
        sealed,
        deliver,
        parent,
    })
}

pub fn slot_in_range(slot: i32, expected: i32) -> Result<()> {
    if slot >= expected {
        return Err(BarrierError::invalid(
            "slot",
            format!(
                "{slot} is out of range: the barrier expects {expected} tasks, slots 0 to {}",
                expected - 1
            ),
        ));
    }
    Ok(())
}

/// The channel to notify: the argument, or the `pg_barrier.channel` setting.
///
/// Channels are lower-case identifiers so that `LISTEN name`, unquoted, hears them.
pub fn channel(channel: Option<&str>) -> Result<String> {
    let (argument, value) = match channel {
        Some(channel) => ("channel", channel.to_string()),
        None => (
            "pg_barrier.channel",
            gucs::channel().ok_or(BarrierError::invalid(
                "pg_barrier.channel",
                "setting is empty",
            ))?,
        ),
    };
    if value.len() > MAX_CHANNEL_BYTES {
        return Err(BarrierError::TooLong {
            argument,
            limit: MAX_CHANNEL_BYTES,
            actual: value.len(),
        });
    }
    if !is_lowercase_identifier(&value) {
        return Err(BarrierError::invalid_with_hint(
            argument,
            format!("\"{value}\" is not a valid channel name"),
            "Use a lower-case identifier: a-z or _ first, then a-z, 0-9 or _.",
        ));
    }
    Ok(value)
}

fn is_lowercase_identifier(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'_'))
        && bytes.all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
}

/// The barrier's lifetime: the argument, or `pg_barrier.default_ttl`.
pub fn ttl(ttl: Option<Interval>) -> Result<Interval> {
    match ttl {
        Some(ttl) => positive_interval("ttl", ttl),
        None => Ok(Interval::from_seconds(f64::from(gucs::DEFAULT_TTL.get()))),
    }
}

/// The no-progress window: the argument, or `pg_barrier.stall_timeout` (0 there: none).
pub fn stall_timeout(stall_timeout: Option<Interval>) -> Result<Option<Interval>> {
    match stall_timeout {
        Some(window) => positive_interval("stall_timeout", window).map(Some),
        None => Ok(match gucs::STALL_TIMEOUT.get() {
            0 => None,
            seconds => Some(Interval::from_seconds(f64::from(seconds))),
        }),
    }
}

fn positive_interval(argument: &'static str, value: Interval) -> Result<Interval> {
    // Parts of mixed signs ('1 mon -30 days') can land before the start once months are
    // calendar months: every part must be >= 0.
    if value.months() < 0 || value.days() < 0 || value.micros() < 0 {
        return Err(BarrierError::invalid(
            argument,
            "must be a positive interval with no negative part",
        ));
    }
    // PostgreSQL orders intervals by this same span: a month is 30 days, a day 24 hours.
    let span = i128::from(value.months()) * 30 * 86_400_000_000
        + i128::from(value.days()) * 86_400_000_000
        + i128::from(value.micros());
    if span == 0 {
        return Err(BarrierError::invalid(
            argument,
            "must be a positive interval",
        ));
    }
    if span > MAX_TTL_MICROS {
        return Err(BarrierError::invalid(argument, "must be at most 100 years"));
    }
    Ok(value)
}

/// A result or callback within `pg_barrier.max_result_bytes` (its uncompressed size).
pub fn jsonb_size(argument: &'static str, value: Option<RawJsonb>) -> Result<Option<RawJsonb>> {
    if let Some(value) = value {
        let limit = usize::try_from(gucs::MAX_RESULT_BYTES.get()).unwrap_or(usize::MAX);
        let size = value.size();
        if size > limit {
            return Err(BarrierError::TooLarge {
                argument,
                limit,
                actual: size,
            });
        }
    }
    Ok(value)
}

/// Most a barrier's results may weigh together: one jsonb value holds at most 256 MB.
pub const MAX_BARRIER_RESULT_BYTES: i64 = 255 * 1024 * 1024;
/// What one element adds to a jsonb array beyond its value (entry header, alignment).
const ARRAY_ELEMENT_OVERHEAD: i64 = 8;

/// The weight of a barrier's results once `result` is added, if still within
/// `MAX_BARRIER_RESULT_BYTES`.
pub fn results_weight(id: &str, recorded: i64, result: Option<RawJsonb>) -> Result<i64> {
    let total = recorded + result_weight(result);
    if total > MAX_BARRIER_RESULT_BYTES {
        return Err(BarrierError::ResultsTooLarge {
            id: id.to_string(),
            limit: MAX_BARRIER_RESULT_BYTES,
        });
    }
    Ok(total)
}

/// Whether `weight` more fits beside `recorded` bytes of results.
pub fn fits(recorded: i64, weight: i64) -> bool {
    recorded.saturating_add(weight) <= MAX_BARRIER_RESULT_BYTES
}

/// The room a completion that may leave slots out keeps for them: a `null` element (4 bytes)
/// per slot, so that it can always be built.
pub fn padding(expected: i32, padded: bool) -> i64 {
    if padded {
        4 * i64::from(expected)
    } else {
        0
    }
}

/// What one result adds to its barrier's results as one jsonb array.
pub fn result_weight(result: Option<RawJsonb>) -> i64 {
    result.map_or(0, |value| value.size() as i64) + ARRAY_ELEMENT_OVERHEAD
}

/// An optional count that must not be negative (`after`).
pub fn non_negative(argument: &'static str, value: Option<i32>) -> Result<Option<i32>> {
    match value {
        Some(value) if value < 0 => Err(BarrierError::invalid(
            argument,
            format!("must be >= 0, got {value}"),
        )),
        other => Ok(other),
    }
}

/// Most slots of a barrier whose completion may leave slots out (a quorum, an expiry that
/// delivers): its completion holds a `null` and a `missing_slots` entry for each, which must fit
/// in one jsonb value and one array beside the results.
pub const MAX_PADDED_SLOTS: i32 = 10_000_000;

/// Refuses `expected` slots for a barrier whose completion may leave slots out.
pub fn padded_slots(argument: &'static str, expected: i32, padded: bool) -> Result<()> {
    if padded && expected > MAX_PADDED_SLOTS {
        return Err(BarrierError::TooManySlots {
            argument,
            limit: MAX_PADDED_SLOTS,
        });
    }
    Ok(())
}

/// A count that must be at least 1 (`max_rows`, `extra`).
pub fn positive_count(argument: &'static str, value: Option<i32>) -> Result<i32> {
    let value = required(argument, value)?;
    if value < 1 {
        return Err(BarrierError::invalid(
            argument,
            format!("must be >= 1, got {value}"),
        ));
    }
    Ok(value)
}

pub fn reason(reason: Option<&str>) -> Result<Option<&str>> {
    match reason {
        Some(reason) if reason.len() > MAX_REASON_BYTES => Err(BarrierError::TooLong {
            argument: "reason",
            limit: MAX_REASON_BYTES,
            actual: reason.len(),
        }),
        other => Ok(other),
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn channel_names_are_lowercase_identifiers() {
        for good in ["pg_barrier", "_x", "a1_b2", "jobs"] {
            assert!(is_lowercase_identifier(good), "{good}");
        }
        for bad in [
            "", "1abc", "Jobs", "a-b", "a b", "a.b", "é", "a\"b", "x;drop",
        ] {
            assert!(!is_lowercase_identifier(bad), "{bad}");
        }
    }

    #[test]
    fn ids_are_checked_for_null_empty_and_length() {
        assert!(matches!(
            id(None),
            Err(BarrierError::NullArgument { argument: "id" })
        ));
        assert!(matches!(
            id(Some("")),
            Err(BarrierError::InvalidArgument { argument: "id", .. })
        ));
        let long = "x".repeat(MAX_ID_BYTES + 1);
        assert!(matches!(
            id(Some(&long)),
            Err(BarrierError::TooLong { argument: "id", .. })
        ));
        let longest = "x".repeat(MAX_ID_BYTES);
        assert_eq!(id(Some(&longest)).ok(), Some(longest.as_str()));
        assert_eq!(
            id(Some("job 'quoted' \u{1F600}")).ok(),
            Some("job 'quoted' \u{1F600}")
        );
    }

    #[test]
    fn slots_and_counts_reject_negatives() {
        assert!(expected(Some(-1)).is_err());
        assert_eq!(expected(Some(0)).ok(), Some(0));
        assert!(slot(Some(-1)).is_err());
        assert_eq!(slot(None).ok(), Some(None));
        assert!(slot_in_range(3, 3).is_err());
        assert!(slot_in_range(2, 3).is_ok());
    }
}
