//! Conversions between stored columns and the port's records. Anything that does not decode is
//! [`StoreError::Corrupt`], never a panic.

use std::sync::Arc;

use chrono::{DateTime, NaiveDateTime, Utc};
use maestro_dag::event::EventType;
use maestro_dag::status::{NodeStatus, RunStatus};
use maestro_dag::store::{StoreError, WriteBatch};
use serde::de::DeserializeOwned;

pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {detail}"))
}

pub(crate) fn run_status(s: &str) -> Result<RunStatus, StoreError> {
    RunStatus::parse(s).ok_or_else(|| corrupt("run status", format!("unknown `{s}`")))
}

pub(crate) fn node_status(s: &str) -> Result<NodeStatus, StoreError> {
    NodeStatus::parse(s).ok_or_else(|| corrupt("node status", format!("unknown `{s}`")))
}

pub(crate) fn event_type(s: &str) -> Result<EventType, StoreError> {
    EventType::parse(s).ok_or_else(|| corrupt("event type", format!("unknown `{s}`")))
}

pub(crate) fn json<T: DeserializeOwned>(what: &str, text: &str) -> Result<T, StoreError> {
    serde_json::from_str(text).map_err(|e| corrupt(what, e))
}

pub(crate) fn to_json<T: serde::Serialize + ?Sized>(
    what: &str,
    v: &T,
) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Other(format!("{what}: {e}")))
}

pub(crate) fn u64_of(what: &str, v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| corrupt(what, format!("negative value {v}")))
}

pub(crate) fn u32_of(what: &str, v: i32) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| corrupt(what, format!("negative value {v}")))
}

pub(crate) fn i64_of(what: &str, v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Other(format!("{what} {v} is out of range")))
}

pub(crate) fn i32_of(what: &str, v: u32) -> Result<i32, StoreError> {
    i32::try_from(v).map_err(|_| StoreError::Other(format!("{what} {v} is out of range")))
}

pub(crate) fn arc_str(s: Option<String>) -> Option<Arc<str>> {
    s.map(Arc::from)
}

/// A lease TTL in microseconds, capped at 100 years so no timestamp overflows.
pub(crate) fn ttl_micros(ttl: std::time::Duration) -> i64 {
    const CAP: u128 = 100 * 365 * 24 * 3600 * 1_000_000;
    ttl.as_micros().min(CAP) as i64
}

/// SQLite timestamps: UTC text with exactly six fractional digits, so that text order is time
/// order (`2026-04-20T12:00:00.000000Z`).
pub(crate) fn ts_text(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}

pub(crate) fn ts_parse(what: &str, s: &str) -> Result<DateTime<Utc>, StoreError> {
    NaiveDateTime::parse_from_str(s, "%Y-%m-%dT%H:%M:%S%.fZ")
        .map(|t| t.and_utc())
        .map_err(|e| corrupt(what, format!("`{s}`: {e}")))
}

pub(crate) fn ts_parse_opt(
    what: &str,
    s: Option<&str>,
) -> Result<Option<DateTime<Utc>>, StoreError> {
    s.map(|s| ts_parse(what, s)).transpose()
}

/// Checks that the batch's events are numbered consecutively; returns the first `seq` (if any).
pub(crate) fn first_seq(batch: &WriteBatch) -> Result<Option<u64>, StoreError> {
    let Some(first) = batch.events.first() else {
        return Ok(None);
    };
    for (k, e) in batch.events.iter().enumerate() {
        if e.seq != first.seq + k as u64 {
            return Err(StoreError::Conflict(format!(
                "event seq {} for run {} does not follow {}",
                e.seq,
                batch.run_id,
                first.seq + k as u64 - 1
            )));
        }
    }
    Ok(Some(first.seq))
}

/// The error for a batch the store refused: fenced by a newer epoch, or an event log that does
/// not continue where the batch expects.
pub(crate) fn refusal(batch: &WriteBatch, epoch: u64, last_seq: u64) -> StoreError {
    if batch.epoch < epoch {
        return StoreError::Fenced {
            run_id: batch.run_id.to_string(),
            attempted: batch.epoch,
            current: epoch,
        };
    }
    let seq = batch.events.first().map_or(0, |e| e.seq);
    StoreError::Conflict(format!(
        "event seq {seq} for run {} but the log expects {}",
        batch.run_id,
        last_seq + 1
    ))
}

/// Indexes of the batch's node rows to write: the last row of each node (a store that upserts
/// row by row would keep the last one too).
pub(crate) fn last_rows(batch: &WriteBatch) -> Vec<usize> {
    let mut seen = std::collections::HashSet::with_capacity(batch.nodes.len());
    let mut keep: Vec<usize> = (0..batch.nodes.len())
        .rev()
        .filter(|&i| seen.insert(batch.nodes[i].node_id.clone()))
        .collect();
    keep.reverse();
    keep
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn sqlite_timestamps_round_trip_at_microseconds_and_sort_as_text() {
        let a = Utc.with_ymd_and_hms(2026, 4, 20, 12, 0, 0).unwrap()
            + chrono::Duration::microseconds(7);
        let b = a + chrono::Duration::microseconds(1_000_000 - 8);
        assert_eq!(ts_text(a), "2026-04-20T12:00:00.000007Z");
        assert_eq!(ts_parse("t", &ts_text(a)).unwrap(), a);
        assert_eq!(ts_parse("t", &ts_text(b)).unwrap(), b);
        assert!(ts_text(a) < ts_text(b));
        assert!(matches!(
            ts_parse("t", "yesterday"),
            Err(StoreError::Corrupt(_))
        ));
    }

    #[test]
    fn bad_values_are_corrupt_not_panics() {
        assert!(matches!(
            run_status("sleeping"),
            Err(StoreError::Corrupt(_))
        ));
        assert!(matches!(u64_of("seq", -1), Err(StoreError::Corrupt(_))));
        assert!(matches!(
            json::<serde_json::Value>("x", "{"),
            Err(StoreError::Corrupt(_))
        ));
    }
}
