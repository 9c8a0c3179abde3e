//! Run events (DESIGN §3): one per transition, numbered per run from 1 with no gaps.
//!
//! The wire shape is `{seq, type, workflow_id, run_id, node_id, data, timestamp}`; the type names
//! are the original system's so that existing clients keep working.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum EventType {
    /// A run started (or was restarted from its failed nodes).
    WorkflowStarted,
    /// A run was paused.
    WorkflowPaused,
    /// A paused run was resumed.
    WorkflowResumed,
    /// Every node finished and none failed.
    WorkflowCompleted,
    /// Every node finished and at least one failed.
    WorkflowFailed,
    /// The run was cancelled.
    WorkflowCancelled,
    /// An attempt of a node started.
    NodeStarted,
    /// A node completed.
    NodeCompleted,
    /// A node failed for good.
    NodeFailed,
    /// An attempt failed and another will follow after a delay.
    NodeRetry,
    /// A node was skipped.
    NodeSkipped,
    /// A `human_review` node waits for approval.
    NodeWaitingApproval,
}

impl EventType {
    /// Every type.
    pub const ALL: [EventType; 12] = [
        Self::WorkflowStarted,
        Self::WorkflowPaused,
        Self::WorkflowResumed,
        Self::WorkflowCompleted,
        Self::WorkflowFailed,
        Self::WorkflowCancelled,
        Self::NodeStarted,
        Self::NodeCompleted,
        Self::NodeFailed,
        Self::NodeRetry,
        Self::NodeSkipped,
        Self::NodeWaitingApproval,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WorkflowStarted => "workflow_started",
            Self::WorkflowPaused => "workflow_paused",
            Self::WorkflowResumed => "workflow_resumed",
            Self::WorkflowCompleted => "workflow_completed",
            Self::WorkflowFailed => "workflow_failed",
            Self::WorkflowCancelled => "workflow_cancelled",
            Self::NodeStarted => "node_started",
            Self::NodeCompleted => "node_completed",
            Self::NodeFailed => "node_failed",
            Self::NodeRetry => "node_retry",
            Self::NodeSkipped => "node_skipped",
            Self::NodeWaitingApproval => "node_waiting_approval",
        }
    }

    /// Parses a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Whether this type ends a run (until it is retried).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            Self::WorkflowCompleted | Self::WorkflowFailed | Self::WorkflowCancelled
        )
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The `data` of an event: the common fields typed (cheap to build on the hot path), anything
/// else in `extra`. It serializes to one flat JSON object.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EventData {
    /// Attempt number (1-based).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempt: Option<u32>,
    /// Attempts allowed by the node's retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// A node's output (`node_completed`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Arc<Value>>,
    /// An error message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<Arc<str>>,
    /// Delay before the next attempt (`node_retry`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    /// Why (a skip, a failure of the run).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Arc<str>>,
    /// Anything else.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl EventData {
    /// Adds a field to `extra` (builder style).
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.extra.insert(key.to_string(), value.into());
        self
    }

    /// The data as a JSON value.
    pub fn to_value(&self) -> Value {
        serde_json::to_value(self).expect("event data always serializes")
    }
}

/// One event of a run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Sequence number within the run: 1, 2, 3… with no gaps.
    pub seq: u64,
    /// What happened.
    #[serde(rename = "type")]
    pub kind: EventType,
    /// The workflow definition's id.
    pub workflow_id: Arc<str>,
    /// The run.
    pub run_id: Arc<str>,
    /// The node, for node events.
    pub node_id: Option<Arc<str>>,
    /// Details, by type.
    pub data: EventData,
    /// When, in UTC.
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
}

mod rfc3339 {
    use chrono::{DateTime, SecondsFormat, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}
