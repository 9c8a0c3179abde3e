//! Test support: a check whose behaviour a test switches at will, a ready-made [`Health`], and
//! helpers that wait on a probe and unwrap report variants.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use maestro_health::{
    CheckResult, Health, HealthCheck, HealthConfig, NotReady, ReadinessReport, Ready,
    RegistryConfig,
};
use tokio::time::Instant;

/// The check interval the tests use.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// How often [`wait_until`] looks: the granularity of the times it measures.
pub(crate) const POLL: Duration = Duration::from_millis(10);

const UP: u8 = 0;
const DOWN: u8 = 1;
const HANG: u8 = 2;

/// A check that succeeds, fails or hangs as the test says.
#[derive(Clone)]
pub(crate) struct Switch {
    name: &'static str,
    critical: bool,
    timeout: Duration,
    mode: Arc<AtomicU8>,
    entered: Arc<AtomicBool>,
}

impl Switch {
    /// A critical check, up, with a 500 ms timeout.
    pub(crate) fn new(name: &'static str) -> Self {
        Self {
            name,
            critical: true,
            timeout: Duration::from_millis(500),
            mode: Arc::new(AtomicU8::new(UP)),
            entered: Arc::new(AtomicBool::new(false)),
        }
    }

    pub(crate) fn non_critical(mut self) -> Self {
        self.critical = false;
        self
    }

    pub(crate) fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub(crate) fn up(&self) {
        self.mode.store(UP, Ordering::SeqCst);
    }

    pub(crate) fn down(&self) {
        self.mode.store(DOWN, Ordering::SeqCst);
    }

    /// Every later run sleeps for an hour.
    pub(crate) fn hang(&self) {
        self.mode.store(HANG, Ordering::SeqCst);
    }

    /// Whether a run has started since the last call.
    pub(crate) fn take_entered(&self) -> bool {
        self.entered.swap(false, Ordering::SeqCst)
    }

    pub(crate) fn arc(&self) -> Arc<dyn HealthCheck> {
        Arc::new(self.clone())
    }
}

#[async_trait]
impl HealthCheck for Switch {
    fn name(&self) -> &str {
        self.name
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn critical(&self) -> bool {
        self.critical
    }

    async fn check(&self) -> CheckResult {
        self.entered.store(true, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            UP => Ok(()),
            DOWN => Err("connection refused".into()),
            _ => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
                Ok(())
            }
        }
    }
}

/// A health state with a one-second interval, stale after three, version `1.2.3`, `SQLite`.
pub(crate) fn health() -> Health {
    Health::new(
        HealthConfig::new("1.2.3", "SQLite").registry(RegistryConfig {
            interval: INTERVAL,
            stale_after: 3,
        }),
    )
}

/// A started health state with a `database` check (the returned switch), checks running and
/// every check's first outcome in.
pub(crate) async fn started_with_database() -> (Health, Switch) {
    let h = health();
    let db = Switch::new("database");
    h.register_check(db.arc()).unwrap();
    h.start();
    h.registry().refresh().await;
    h.mark_started();
    (h, db)
}

/// Waits (polling every [`POLL`]) until `cond` holds and returns how long that took, or panics
/// after `limit`.
#[track_caller]
pub(crate) fn wait_until(
    limit: Duration,
    mut cond: impl FnMut() -> bool,
) -> impl Future<Output = Duration> {
    let caller = std::panic::Location::caller();
    async move {
        let start = Instant::now();
        loop {
            if cond() {
                return start.elapsed();
            }
            assert!(
                start.elapsed() <= limit,
                "condition not met within {limit:?} (waited from {caller})"
            );
            tokio::time::sleep(POLL).await;
        }
    }
}

/// The body of a successful readiness report.
#[track_caller]
pub(crate) fn ready(report: ReadinessReport) -> Ready {
    match report {
        ReadinessReport::Ready(r) => r,
        ReadinessReport::NotReady(n) => panic!("expected ready, got {n:?}"),
    }
}

/// The body of a failed readiness report.
#[track_caller]
pub(crate) fn not_ready(report: ReadinessReport) -> NotReady {
    match report {
        ReadinessReport::NotReady(n) => n,
        ReadinessReport::Ready(r) => panic!("expected not ready, got {r:?}"),
    }
}
