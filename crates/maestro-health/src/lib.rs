//! Maestro health: the registry of background health checks and the startup, readiness,
//! liveness and overall probe decisions, with the seed report's JSON shapes (DESIGN §6).
//!
//! Checks ([`HealthCheck`]) run in background tasks under a timeout and their outcomes are
//! cached ([`HealthRegistry`]), so a probe is a synchronous read that never waits on a
//! dependency. Liveness is a watchdog ([`Watchdog`]) on heartbeats from the runtime and the
//! scheduler loop and never looks at the database. [`Health`] ties these together with the
//! startup progress, the draining flag and the server's [`Gauges`], and returns each report as a
//! [`Probe`]: an HTTP status code and a serde body.
//!
//! This crate depends on no other Maestro crate and on no HTTP crate.
//!
//! ```no_run
//! # async fn wiring() {
//! use std::time::Duration;
//! use maestro_health::{FnCheck, Health, HealthConfig};
//!
//! let health = Health::new(HealthConfig::new(env!("CARGO_PKG_VERSION"), "SQLite"));
//! health
//!     .register_check(FnCheck::new("database", || async { Ok(()) }).into_arc())
//!     .expect("a valid, unique check name");
//! health.start(); // check loops + the runtime ticker
//! let scheduler = health.register_heartbeat("scheduler", Duration::from_secs(10));
//! // … run migrations, load executors, register templates …
//! health.registry().refresh().await; // first outcomes in before the first probe
//! health.mark_started();
//! scheduler.beat();
//! let probe = health.readiness();
//! let (status, body) = (probe.status, probe.to_json_bytes());
//! # let _ = (status, body);
//! # }
//! ```

mod check;
mod gauges;
mod probes;
mod registry;
mod report;
mod watchdog;

pub use check::{BoxError, CheckResult, DEFAULT_CHECK_TIMEOUT, FnCheck, HealthCheck};
pub use gauges::{Gauge, GaugeSnapshot, Gauges};
pub use probes::{DATABASE_CHECK, DRAINING, Health, HealthConfig, NOT_STARTED, StartupComponent};
pub use registry::{
    CheckSnapshot, CheckState, HealthRegistry, RESERVED_CHECK_NAMES, RegistryConfig, RegistryError,
};
pub use report::{
    CacheReport, DatabaseReport, HealthReport, HealthStatus, HeartbeatReport, Initialization,
    LivenessReport, NOT_ALIVE_MESSAGE, NOT_READY_MESSAGE, NOT_STARTED_MESSAGE, NotReady,
    NotStarted, Probe, ReadinessChecks, ReadinessReport, Ready, STATUS_OK, STATUS_UNAVAILABLE,
    Started, StartupReport, TasksReport, UptimeChecks,
};
pub use watchdog::{Heartbeat, HeartbeatStatus, RUNTIME_HEARTBEAT, RUNTIME_TICK, Watchdog};
