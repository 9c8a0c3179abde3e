//! The [`HealthCheck`] port: one named, time-boxed probe of a dependency (the database, a team
//! engine, …), and [`FnCheck`], a check made from a closure for wiring in `main`.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;

/// The error a check reports; its `Display` text becomes the check's error in the reports.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What one run of a check returns: `Ok(())` when the dependency is usable.
pub type CheckResult = Result<(), BoxError>;

/// The timeout a check gets when it does not choose one.
pub const DEFAULT_CHECK_TIMEOUT: Duration = Duration::from_secs(1);

/// One health check of a dependency.
///
/// The [`HealthRegistry`](crate::HealthRegistry) runs every check in the background, each run in
/// its own task bounded by [`timeout`](Self::timeout), and caches the outcome; probes only read
/// that cache. A run that errors, panics or times out makes the check *down*.
///
/// `name`, `timeout` and `critical` are read once, when the check is registered.
#[async_trait]
pub trait HealthCheck: Send + Sync + 'static {
    /// The check's name: lowercase ASCII letters, digits and `_` (e.g. `database`). It is the key
    /// in the readiness report and the prefix of its readiness error code
    /// (`database_unavailable`).
    fn name(&self) -> &str;

    /// How long one run may take before it counts as failed. Default: one second.
    fn timeout(&self) -> Duration {
        DEFAULT_CHECK_TIMEOUT
    }

    /// Whether readiness fails while this check is down. Default: `true`. A check that is not
    /// critical only turns the overall report `degraded`.
    fn critical(&self) -> bool {
        true
    }

    /// Runs the check once.
    async fn check(&self) -> CheckResult;
}

/// A [`HealthCheck`] made from a name and a closure that returns a future, e.g.
/// `FnCheck::new("database", move || { let db = db.clone(); async move { db.ping().await } })`.
pub struct FnCheck<F> {
    name: String,
    timeout: Duration,
    critical: bool,
    run: F,
}

impl<F, Fut> FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    /// A critical check named `name` with the default timeout.
    pub fn new(name: impl Into<String>, run: F) -> Self {
        Self {
            name: name.into(),
            timeout: DEFAULT_CHECK_TIMEOUT,
            critical: true,
            run,
        }
    }

    /// Sets the per-run timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets whether readiness depends on this check.
    #[must_use]
    pub fn critical(mut self, critical: bool) -> Self {
        self.critical = critical;
        self
    }

    /// The check behind an `Arc`, ready for [`HealthRegistry::register`](crate::HealthRegistry::register).
    pub fn into_arc(self) -> Arc<dyn HealthCheck> {
        Arc::new(self)
    }
}

impl<F> fmt::Debug for FnCheck<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnCheck")
            .field("name", &self.name)
            .field("timeout", &self.timeout)
            .field("critical", &self.critical)
            .finish_non_exhaustive()
    }
}

#[async_trait]
impl<F, Fut> HealthCheck for FnCheck<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = CheckResult> + Send + 'static,
{
    fn name(&self) -> &str {
        &self.name
    }

    fn timeout(&self) -> Duration {
        self.timeout
    }

    fn critical(&self) -> bool {
        self.critical
    }

    async fn check(&self) -> CheckResult {
        (self.run)().await
    }
}
