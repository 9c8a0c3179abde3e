//! [`Health`]: the server's health state (checks, watchdog, gauges, startup progress, draining)
//! and the four probe decisions built from it. Every probe is a synchronous read of cached
//! state: none runs a check, touches the database or waits.
//!
//! - Startup: 503 until every [`StartupComponent`] is marked (e.g. by
//!   [`Health::mark_started`] after migrations ran and the executor registry is loaded).
//! - Readiness: 503 while startup is not complete, while draining, or while a critical check is
//!   down, stale or pending.
//! - Liveness: 503 when a watched heartbeat (runtime, scheduler loop, …) is late; it never looks
//!   at the checks.
//! - Overall: always 200, `degraded` when any check or heartbeat is not up.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::time::Instant;

use crate::check::HealthCheck;
use crate::gauges::Gauges;
use crate::registry::{CheckState, HealthRegistry, RegistryConfig, RegistryError};
use crate::report::{
    CacheReport, DatabaseReport, HealthReport, HealthStatus, HeartbeatReport, Initialization,
    LivenessReport, NOT_ALIVE_MESSAGE, NOT_READY_MESSAGE, NOT_STARTED_MESSAGE, NotReady,
    NotStarted, Probe, ReadinessChecks, ReadinessReport, Ready, STATUS_OK, STATUS_UNAVAILABLE,
    Started, StartupReport, TasksReport, UptimeChecks,
};
use crate::watchdog::{Heartbeat, Watchdog};

/// The name of the check whose state `/health` reports as `database.connected`.
pub const DATABASE_CHECK: &str = "database";

/// Readiness error code while startup is not complete.
pub const NOT_STARTED: &str = "not_started";
/// Readiness error code while the server drains (after SIGTERM).
pub const DRAINING: &str = "draining";

/// Settings of a [`Health`].
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HealthConfig {
    /// The server's version, shown by `/health`.
    pub version: String,
    /// The database backend's name (`PostgreSQL`, `SQLite`), shown by `/health`.
    pub database_type: String,
    /// How often checks run and when their outcomes go stale.
    pub registry: RegistryConfig,
    /// The longest the runtime may go without ticking before liveness fails (used by
    /// [`Health::start`]). Default: five seconds.
    pub runtime_max_gap: Duration,
}

impl HealthConfig {
    /// Settings with the given version and database name and default timings.
    pub fn new(version: impl Into<String>, database_type: impl Into<String>) -> Self {
        Self {
            version: version.into(),
            database_type: database_type.into(),
            registry: RegistryConfig::default(),
            runtime_max_gap: Duration::from_secs(5),
        }
    }

    /// Sets the check interval and the staleness multiple.
    #[must_use]
    pub fn registry(mut self, registry: RegistryConfig) -> Self {
        self.registry = registry;
        self
    }

    /// Sets the runtime ticker's allowed gap.
    #[must_use]
    pub fn runtime_max_gap(mut self, gap: Duration) -> Self {
        self.runtime_max_gap = gap;
        self
    }
}

/// A part of startup that [`Health::startup`] waits for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum StartupComponent {
    /// Migrations ran (`initialization.database`).
    Database,
    /// The executor registry and the engine are built (`initialization.engine`).
    Engine,
    /// The built-in workflows are registered (`initialization.workflows`).
    Workflows,
}

impl StartupComponent {
    /// Every component, in report order.
    pub const ALL: [Self; 3] = [Self::Database, Self::Engine, Self::Workflows];

    fn bit(self) -> u8 {
        match self {
            Self::Database => 1,
            Self::Engine => 2,
            Self::Workflows => 4,
        }
    }

    /// The value shown once done (`initialized` or `ready`).
    fn done(self) -> &'static str {
        match self {
            Self::Database | Self::Engine => "initialized",
            Self::Workflows => "ready",
        }
    }

    /// The startup error code while pending.
    pub fn pending_code(self) -> &'static str {
        match self {
            Self::Database => "database_not_initialized",
            Self::Engine => "engine_not_initialized",
            Self::Workflows => "workflows_not_ready",
        }
    }
}

const ALL_STARTED: u8 = 1 | 2 | 4;

#[derive(Debug)]
struct Inner {
    version: String,
    database_type: String,
    runtime_max_gap: Duration,
    registry: HealthRegistry,
    watchdog: Watchdog,
    gauges: Gauges,
    startup: AtomicU8,
    draining: AtomicBool,
    created: Instant,
}

/// The server's health state and probes. Cheap to clone (an `Arc`); share one between the
/// server's routes, the engine's loops and the shutdown handler.
#[derive(Debug, Clone)]
pub struct Health {
    inner: Arc<Inner>,
}

impl Health {
    /// A health state with no check, no heartbeat, zero gauges, startup pending and not
    /// draining. Nothing runs until [`start`](Self::start).
    pub fn new(config: HealthConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                version: config.version,
                database_type: config.database_type,
                runtime_max_gap: config.runtime_max_gap,
                registry: HealthRegistry::new(config.registry),
                watchdog: Watchdog::new(),
                gauges: Gauges::default(),
                startup: AtomicU8::new(0),
                draining: AtomicBool::new(false),
                created: Instant::now(),
            }),
        }
    }

    /// Starts the checks' background loops and the runtime ticker (heartbeat `runtime`).
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(&self) {
        self.inner.registry.start();
        self.inner
            .watchdog
            .spawn_runtime_ticker(self.inner.runtime_max_gap);
    }

    /// Stops the checks' background loops and the runtime ticker (retiring its heartbeat). The
    /// cached check outcomes stay and go stale; [`start`](Self::start) may be called again.
    pub fn stop(&self) {
        self.inner.registry.stop();
        self.inner.watchdog.stop_runtime_ticker();
    }

    /// The checks.
    pub fn registry(&self) -> &HealthRegistry {
        &self.inner.registry
    }

    /// The heartbeats.
    pub fn watchdog(&self) -> &Watchdog {
        &self.inner.watchdog
    }

    /// The counters the server keeps up to date.
    pub fn gauges(&self) -> &Gauges {
        &self.inner.gauges
    }

    /// Registers a check (see [`HealthRegistry::register`]).
    pub fn register_check(&self, check: Arc<dyn HealthCheck>) -> Result<(), RegistryError> {
        self.inner.registry.register(check)
    }

    /// Registers a heartbeat (see [`Watchdog::register`]).
    pub fn register_heartbeat(&self, name: impl Into<String>, max_gap: Duration) -> Heartbeat {
        self.inner.watchdog.register(name, max_gap)
    }

    /// Beats the heartbeat `name`; `false` if none is registered (see [`Watchdog::heartbeat`]).
    pub fn heartbeat(&self, name: &str) -> bool {
        self.inner.watchdog.heartbeat(name)
    }

    /// Marks one part of startup as done.
    pub fn mark_initialized(&self, component: StartupComponent) {
        self.inner
            .startup
            .fetch_or(component.bit(), Ordering::AcqRel);
        tracing::debug!(?component, "startup component ready");
    }

    /// Marks startup complete (every [`StartupComponent`]): call it after migrations ran, the
    /// executor registry is loaded and the built-in workflows are registered.
    pub fn mark_started(&self) {
        let before = self.inner.startup.swap(ALL_STARTED, Ordering::AcqRel);
        if before != ALL_STARTED {
            tracing::info!("startup complete");
        }
    }

    /// Whether every startup component is done.
    pub fn is_started(&self) -> bool {
        self.inner.startup.load(Ordering::Acquire) == ALL_STARTED
    }

    /// Turns draining on (readiness 503 with `draining`, e.g. on SIGTERM) or off.
    pub fn set_draining(&self, draining: bool) {
        let before = self.inner.draining.swap(draining, Ordering::AcqRel);
        if before != draining {
            tracing::info!(draining, "readiness draining flag changed");
        }
    }

    /// Whether the server is draining.
    pub fn is_draining(&self) -> bool {
        self.inner.draining.load(Ordering::Acquire)
    }

    /// `/health/startup`: 200 once every startup component is done, 503 before.
    pub fn startup(&self) -> Probe<StartupReport> {
        let done = self.inner.startup.load(Ordering::Acquire);
        if done == ALL_STARTED {
            let value = |c: StartupComponent| c.done().to_owned();
            return Probe {
                status: STATUS_OK,
                body: StartupReport::Started(Started {
                    started: true,
                    timestamp: now(),
                    initialization: Initialization {
                        database: value(StartupComponent::Database),
                        engine: value(StartupComponent::Engine),
                        workflows: value(StartupComponent::Workflows),
                    },
                }),
            };
        }
        let errors = StartupComponent::ALL
            .iter()
            .filter(|c| done & c.bit() == 0)
            .map(|c| c.pending_code().to_owned())
            .collect();
        Probe {
            status: STATUS_UNAVAILABLE,
            body: StartupReport::NotStarted(NotStarted {
                started: false,
                errors,
                message: NOT_STARTED_MESSAGE.to_owned(),
            }),
        }
    }

    /// `/health/ready`: 200 when started, not draining and every critical check up; 503 with
    /// every reason otherwise (`not_started`, `draining`, `<check>_unavailable`).
    pub fn readiness(&self) -> Probe<ReadinessReport> {
        let mut errors = Vec::new();
        if !self.is_started() {
            errors.push(NOT_STARTED.to_owned());
        }
        if self.is_draining() {
            errors.push(DRAINING.to_owned());
        }
        let checks = self.inner.registry.snapshot();
        for check in &checks {
            if check.critical && !check.state.is_up() {
                errors.push(format!("{}_unavailable", check.name));
            }
        }
        if !errors.is_empty() {
            return Probe {
                status: STATUS_UNAVAILABLE,
                body: ReadinessReport::NotReady(NotReady {
                    ready: false,
                    errors,
                    message: NOT_READY_MESSAGE.to_owned(),
                }),
            };
        }
        let gauges = self.inner.gauges.snapshot();
        Probe {
            status: STATUS_OK,
            body: ReadinessReport::Ready(Ready {
                ready: true,
                timestamp: now(),
                checks: ReadinessChecks {
                    dependencies: checks.into_iter().map(|c| (c.name, c.state)).collect(),
                    workflows: gauges.workflows,
                    background_tasks: gauges.active_tasks,
                },
            }),
        }
    }

    /// `/health/live`: 200 while every heartbeat is on time, 503 with `<name>_stalled` codes
    /// otherwise. Reads only the watchdog and the gauges.
    pub fn liveness(&self) -> Probe<LivenessReport> {
        let heartbeats = self.inner.watchdog.status();
        let errors: Vec<String> = heartbeats
            .iter()
            .filter(|h| h.stalled)
            .map(|h| format!("{}_stalled", h.name))
            .collect();
        let alive = errors.is_empty();
        let gauges = self.inner.gauges.snapshot();
        let uptime_checks = UptimeChecks {
            api_responsive: true,
            background_tasks_total: gauges.background_tasks,
            active_connections: gauges.websockets,
            uptime_seconds: Instant::now()
                .saturating_duration_since(self.inner.created)
                .as_secs(),
            runtime_lag_ms: self
                .inner
                .watchdog
                .runtime_lag()
                .map(|lag| lag.as_secs_f64() * 1000.0),
            heartbeats: heartbeats
                .into_iter()
                .map(|h| {
                    let report = HeartbeatReport {
                        alive: !h.stalled,
                        age_ms: millis(h.age),
                        max_gap_ms: millis(h.max_gap),
                    };
                    (h.name, report)
                })
                .collect::<BTreeMap<_, _>>(),
        };
        Probe {
            status: if alive { STATUS_OK } else { STATUS_UNAVAILABLE },
            body: LivenessReport {
                alive,
                timestamp: now(),
                uptime_checks,
                message: (!alive).then(|| NOT_ALIVE_MESSAGE.to_owned()),
                errors,
            },
        }
    }

    /// `/health`: always 200; `healthy` when every check (including a [`DATABASE_CHECK`]) is up
    /// and every heartbeat on time, `degraded` otherwise. `database.connected` is the state of the [`DATABASE_CHECK`].
    pub fn report(&self) -> Probe<HealthReport> {
        let checks = self.inner.registry.snapshot();
        let all_up = checks.iter().all(|c| c.state.is_up()) && self.inner.watchdog.all_alive();
        let database = match checks.into_iter().find(|c| c.name == DATABASE_CHECK) {
            Some(c) => DatabaseReport {
                connected: c.state.is_up(),
                kind: self.inner.database_type.clone(),
                error: match c.state {
                    CheckState::Ok => None,
                    CheckState::Pending => Some("not checked yet".to_owned()),
                    CheckState::Down | CheckState::Stale => c.error,
                },
            },
            None => DatabaseReport {
                connected: false,
                kind: self.inner.database_type.clone(),
                error: Some("no database check registered".to_owned()),
            },
        };
        let healthy = all_up && database.connected;
        let gauges = self.inner.gauges.snapshot();
        Probe {
            status: STATUS_OK,
            body: HealthReport {
                status: if healthy {
                    HealthStatus::Healthy
                } else {
                    HealthStatus::Degraded
                },
                timestamp: now(),
                version: self.inner.version.clone(),
                database,
                cache: CacheReport {
                    workflows: gauges.workflows,
                    websockets: gauges.websockets,
                },
                tasks: TasksReport {
                    background: gauges.background_tasks,
                    active: gauges.active_tasks,
                },
            },
        }
    }
}

/// The time now, to the microsecond the reports show (so a report reads back unchanged).
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn health() -> Health {
        Health::new(HealthConfig::new("1.2.3", "SQLite"))
    }

    #[test]
    fn startup_lists_the_pending_components() {
        let h = health();
        h.mark_initialized(StartupComponent::Engine);
        let probe = h.startup();
        assert_eq!(probe.status, 503);
        let StartupReport::NotStarted(body) = probe.body else {
            panic!("expected a failed startup report");
        };
        assert_eq!(
            body.errors,
            ["database_not_initialized", "workflows_not_ready"]
        );
        h.mark_initialized(StartupComponent::Database);
        h.mark_initialized(StartupComponent::Workflows);
        assert!(h.is_started());
        assert_eq!(h.startup().status, 200);
    }

    #[test]
    fn readiness_gives_every_reason_at_once() {
        let h = health();
        h.set_draining(true);
        let probe = h.readiness();
        assert_eq!(probe.status, 503);
        let ReadinessReport::NotReady(body) = probe.body else {
            panic!("expected a failed readiness report");
        };
        assert_eq!(body.errors, [NOT_STARTED, DRAINING]);
    }

    #[test]
    fn without_a_database_check_the_report_says_so() {
        let h = health();
        let body = h.report().body;
        assert!(!body.database.connected);
        assert_eq!(body.database.kind, "SQLite");
        assert_eq!(body.status, HealthStatus::Degraded);
    }
}
