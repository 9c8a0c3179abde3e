//! The wire shapes of the four probe reports, kept from the seed's Phase 2 report: `/health`
//! ([`HealthReport`]), `/health/ready` ([`ReadinessReport`]), `/health/live`
//! ([`LivenessReport`]) and `/health/startup` ([`StartupReport`]), and [`Probe`], a report with
//! its HTTP status code. Failure bodies are top-level objects (never nested under `detail`).
//! Timestamps are RFC 3339 in UTC with a `Z`.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::registry::CheckState;

/// `200 OK`.
pub const STATUS_OK: u16 = 200;
/// `503 Service Unavailable`.
pub const STATUS_UNAVAILABLE: u16 = 503;

/// The `message` of a failed readiness report.
pub const NOT_READY_MESSAGE: &str = "Service not ready to accept traffic";
/// The `message` of a failed startup report.
pub const NOT_STARTED_MESSAGE: &str = "Service still starting up";
/// The `message` of a failed liveness report.
pub const NOT_ALIVE_MESSAGE: &str = "Service is not making progress";

/// A report and the HTTP status code to send it with.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe<T> {
    /// `200` or `503`.
    pub status: u16,
    /// The JSON body.
    pub body: T,
}

impl<T: Serialize> Probe<T> {
    /// Whether the status is `200`.
    pub fn is_ok(&self) -> bool {
        self.status == STATUS_OK
    }

    /// The body as a JSON value.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(&self.body).expect("health reports always serialize")
    }

    /// The body serialized to JSON bytes, ready to send.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.body).expect("health reports always serialize")
    }

    /// The status and the body as a JSON value.
    pub fn into_parts(self) -> (u16, serde_json::Value) {
        let body = self.to_json();
        (self.status, body)
    }
}

/// `GET /health`: the overall report for monitoring, always sent with `200`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HealthReport {
    /// `healthy`, or `degraded` when any check or heartbeat is not up.
    pub status: HealthStatus,
    /// When the report was made.
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    /// The server's version.
    pub version: String,
    /// The database check.
    pub database: DatabaseReport,
    /// In-memory caches.
    pub cache: CacheReport,
    /// Background tasks.
    pub tasks: TasksReport,
}

/// The overall status in [`HealthReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HealthStatus {
    /// Every check is up and every heartbeat is on time.
    Healthy,
    /// Something is down, stale, pending or stalled; the server may still serve.
    Degraded,
}

/// `database` in [`HealthReport`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseReport {
    /// Whether the cached database check is up.
    pub connected: bool,
    /// The backend's name, e.g. `PostgreSQL` or `SQLite`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Why it is not connected (absent when connected), as in the original's `error?`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `cache` in [`HealthReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheReport {
    /// Workflow definitions held in memory.
    pub workflows: u64,
    /// Open WebSocket connections.
    pub websockets: u64,
}

/// `tasks` in [`HealthReport`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct TasksReport {
    /// Background tasks tracked.
    pub background: u64,
    /// Background tasks still running.
    pub active: u64,
}

/// `GET /health/ready`: whether to route traffic here.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ReadinessReport {
    /// `200 {ready: true, timestamp, checks}`.
    Ready(Ready),
    /// `503 {ready: false, errors, message}`.
    NotReady(NotReady),
}

/// The body of a successful readiness probe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ready {
    /// Always `true`.
    pub ready: bool,
    /// When the report was made.
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    /// The checks and counters behind the decision.
    pub checks: ReadinessChecks,
}

/// `checks` in [`Ready`]: `{database: "ok", …, workflows: N, background_tasks: N}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadinessChecks {
    /// Each registered check by name: `ok`, `down`, `stale` or `pending` (only non-critical
    /// checks can be other than `ok` in a successful report).
    #[serde(flatten)]
    pub dependencies: BTreeMap<String, CheckState>,
    /// Workflow definitions held in memory.
    pub workflows: u64,
    /// Background tasks still running.
    pub background_tasks: u64,
}

/// The body of a failed readiness probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotReady {
    /// Always `false`.
    pub ready: bool,
    /// Stable codes: `not_started`, `draining`, `<check>_unavailable` (e.g.
    /// `database_unavailable`).
    pub errors: Vec<String>,
    /// [`NOT_READY_MESSAGE`].
    pub message: String,
}

/// `GET /health/live`: whether the process makes progress (restart it if not).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LivenessReport {
    /// Whether every heartbeat is on time.
    pub alive: bool,
    /// When the report was made.
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    /// What was looked at.
    pub uptime_checks: UptimeChecks,
    /// On failure only: `<heartbeat>_stalled` codes (e.g. `scheduler_stalled`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<String>,
    /// On failure only: [`NOT_ALIVE_MESSAGE`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// `uptime_checks` in [`LivenessReport`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UptimeChecks {
    /// Always `true`: the server answered.
    pub api_responsive: bool,
    /// Background tasks tracked.
    pub background_tasks_total: u64,
    /// Open WebSocket connections.
    pub active_connections: u64,
    /// Whole seconds since the health state was created (about the process's uptime).
    pub uptime_seconds: u64,
    /// How late the runtime ticker's last tick fired, in milliseconds (`null` before it ticks
    /// or when it is not running).
    pub runtime_lag_ms: Option<f64>,
    /// Each watched heartbeat by name.
    pub heartbeats: BTreeMap<String, HeartbeatReport>,
}

/// One heartbeat in [`UptimeChecks`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeartbeatReport {
    /// Whether its last beat is within its allowed gap.
    pub alive: bool,
    /// Milliseconds since its last beat.
    pub age_ms: u64,
    /// The allowed gap in milliseconds.
    pub max_gap_ms: u64,
}

/// `GET /health/startup`: whether initialization is over.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum StartupReport {
    /// `200 {started: true, timestamp, initialization}`.
    Started(Started),
    /// `503 {started: false, errors, message}`.
    NotStarted(NotStarted),
}

/// The body of a successful startup probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Always `true`.
    pub started: bool,
    /// When the report was made.
    #[serde(with = "rfc3339")]
    pub timestamp: DateTime<Utc>,
    /// Each component's state.
    pub initialization: Initialization,
}

/// `initialization` in [`Started`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Initialization {
    /// `initialized` once migrations ran.
    pub database: String,
    /// `initialized` once the executor registry is loaded.
    pub engine: String,
    /// `ready` once the built-in workflows are registered.
    pub workflows: String,
}

/// The body of a failed startup probe.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotStarted {
    /// Always `false`.
    pub started: bool,
    /// The components still pending: `database_not_initialized`, `engine_not_initialized`,
    /// `workflows_not_ready`.
    pub errors: Vec<String>,
    /// [`NOT_STARTED_MESSAGE`].
    pub message: String,
}

/// RFC 3339 timestamps in UTC with a `Z` and microseconds, as in the engine's events.
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
