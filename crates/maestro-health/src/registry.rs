//! The [`HealthRegistry`]: runs every registered [`HealthCheck`] in the background on an
//! interval, each run in its own task under the check's timeout, and caches the last outcome with
//! its time. Reading the cache is synchronous and takes no lock that a check run can hold for
//! long, so a probe never waits on a slow dependency. A cached outcome older than
//! `stale_after` intervals counts as down.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use crate::check::HealthCheck;

/// Names a check may not take: they are keys of the readiness report's `checks` object.
pub const RESERVED_CHECK_NAMES: [&str; 2] = ["workflows", "background_tasks"];

/// How often checks run and when a cached outcome goes stale.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegistryConfig {
    /// Time between the starts of two runs of the same check. Default: one second.
    pub interval: Duration,
    /// A cached outcome older than this many intervals counts as down (`stale`). Default: 3.
    pub stale_after: u32,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            stale_after: 3,
        }
    }
}

impl RegistryConfig {
    /// The age past which a cached outcome is stale: `interval × stale_after` (at least one
    /// interval).
    pub fn stale_threshold(&self) -> Duration {
        self.interval.saturating_mul(self.stale_after.max(1))
    }
}

/// The state of one check as the probes see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckState {
    /// The last run succeeded and is recent.
    Ok,
    /// The last run failed, panicked or timed out.
    Down,
    /// The last outcome is older than the stale threshold: the check is not completing.
    Stale,
    /// The check has not finished a run yet.
    Pending,
}

impl CheckState {
    /// Whether the dependency counts as usable (only [`CheckState::Ok`]).
    pub fn is_up(self) -> bool {
        self == Self::Ok
    }

    /// The wire name: `ok`, `down`, `stale` or `pending`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Down => "down",
            Self::Stale => "stale",
            Self::Pending => "pending",
        }
    }
}

/// What the cache holds for one check, read at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckSnapshot {
    /// The check's name.
    pub name: String,
    /// Whether readiness depends on it.
    pub critical: bool,
    /// Its state now (staleness applied).
    pub state: CheckState,
    /// The error text of the last run when it failed, or why the outcome is stale.
    pub error: Option<String>,
    /// When the last run finished (UTC), if one did.
    pub checked_at: Option<DateTime<Utc>>,
    /// How long the last run took, if one finished.
    pub latency: Option<Duration>,
}

/// Why a check could not be registered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RegistryError {
    /// The name is empty or has characters other than lowercase ASCII letters, digits and `_`.
    #[error("health check name {0:?} is invalid: use lowercase ASCII letters, digits and `_`")]
    InvalidName(String),
    /// The name is one of [`RESERVED_CHECK_NAMES`].
    #[error("health check name {0:?} is reserved")]
    ReservedName(String),
    /// A check with this name is already registered.
    #[error("a health check named {0:?} is already registered")]
    DuplicateName(String),
}

/// The last finished run of a check.
#[derive(Debug, Clone)]
struct Outcome {
    error: Option<String>,
    checked_at: DateTime<Utc>,
    finished: Instant,
    latency: Duration,
}

/// One registered check and its cache slot.
struct Entry {
    name: String,
    critical: bool,
    timeout: Duration,
    check: Arc<dyn HealthCheck>,
    last: RwLock<Option<Outcome>>,
}

impl Entry {
    fn snapshot(&self, now: Instant, stale_after: Duration) -> CheckSnapshot {
        let last = self
            .last
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let (state, error) = match &last {
            None => (CheckState::Pending, None),
            Some(o) => {
                let age = now.saturating_duration_since(o.finished);
                if age > stale_after {
                    let why = format!("no result for {} ms (stale)", age.as_millis());
                    (CheckState::Stale, Some(why))
                } else if let Some(e) = &o.error {
                    (CheckState::Down, Some(e.clone()))
                } else {
                    (CheckState::Ok, None)
                }
            }
        };
        CheckSnapshot {
            name: self.name.clone(),
            critical: self.critical,
            state,
            error,
            checked_at: last.as_ref().map(|o| o.checked_at),
            latency: last.as_ref().map(|o| o.latency),
        }
    }

    /// Runs the check once, in its own task under its timeout, and caches the outcome.
    async fn run_once(&self) {
        let started = Instant::now();
        let check = Arc::clone(&self.check);
        let mut task = AbortOnDrop(tokio::spawn(async move { check.check().await }));
        let error = match tokio::time::timeout(self.timeout, &mut task.0).await {
            Ok(Ok(Ok(()))) => None,
            Ok(Ok(Err(e))) => Some(e.to_string()),
            Ok(Err(join)) if join.is_panic() => Some("check panicked".to_owned()),
            Ok(Err(_)) => Some("check was cancelled".to_owned()),
            Err(_) => Some(format!("timed out after {} ms", self.timeout.as_millis())),
        };
        drop(task);
        let finished = Instant::now();
        let outcome = Outcome {
            error,
            checked_at: Utc::now(),
            finished,
            latency: finished.saturating_duration_since(started),
        };
        self.store(outcome);
    }

    fn store(&self, outcome: Outcome) {
        let mut slot = self.last.write().unwrap_or_else(PoisonError::into_inner);
        let was_up = slot.as_ref().map(|o| o.error.is_none());
        match (&outcome.error, was_up) {
            (Some(e), Some(true) | None) => {
                tracing::warn!(check = %self.name, critical = self.critical, error = %e, "health check down");
            }
            (None, Some(false)) => tracing::info!(check = %self.name, "health check recovered"),
            _ => {}
        }
        *slot = Some(outcome);
    }
}

/// Aborts the task when dropped, so a timed-out or abandoned check run does not linger.
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

struct Inner {
    config: RegistryConfig,
    entries: RwLock<Vec<Arc<Entry>>>,
    running: AtomicBool,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let tasks = self.tasks.get_mut().unwrap_or_else(PoisonError::into_inner);
        for task in tasks.drain(..) {
            task.abort();
        }
    }
}

/// The set of health checks, their background runs and their cached outcomes.
///
/// Cheap to clone (an `Arc`); the background tasks stop when [`stop`](Self::stop) is called or
/// the last clone is dropped.
#[derive(Clone)]
pub struct HealthRegistry {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry")
            .field("config", &self.inner.config)
            .field("checks", &self.names())
            .field("running", &self.inner.running.load(Ordering::Relaxed))
            .finish()
    }
}

impl Default for HealthRegistry {
    fn default() -> Self {
        Self::new(RegistryConfig::default())
    }
}

impl HealthRegistry {
    /// An empty registry; nothing runs until [`start`](Self::start).
    pub fn new(config: RegistryConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                entries: RwLock::new(Vec::new()),
                running: AtomicBool::new(false),
                tasks: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The interval and staleness settings.
    pub fn config(&self) -> RegistryConfig {
        self.inner.config
    }

    /// Adds a check. Its state is `pending` until its first run finishes. If the registry is
    /// already started, the check's background loop starts now.
    ///
    /// # Panics
    ///
    /// When the registry is started and this is called outside a Tokio runtime.
    pub fn register(&self, check: Arc<dyn HealthCheck>) -> Result<(), RegistryError> {
        let name = check.name().to_owned();
        let valid = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(RegistryError::InvalidName(name));
        }
        if RESERVED_CHECK_NAMES.contains(&name.as_str()) {
            return Err(RegistryError::ReservedName(name));
        }
        let entry = Arc::new(Entry {
            name,
            critical: check.critical(),
            timeout: check.timeout(),
            check,
            last: RwLock::new(None),
        });
        // `start`, `stop` and `register` hold the entries' write lock while they read or
        // change `running`, so a check registered during `start` gets exactly one loop.
        let mut entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if entries.iter().any(|e| e.name == entry.name) {
            return Err(RegistryError::DuplicateName(entry.name.clone()));
        }
        entries.push(Arc::clone(&entry));
        if self.inner.running.load(Ordering::Acquire) {
            self.spawn_loop(entry);
        }
        Ok(())
    }

    /// Starts one background loop per check: each runs its check at once, then every
    /// interval. Calling it again does nothing.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn start(&self) {
        let entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        if self.inner.running.swap(true, Ordering::AcqRel) {
            return;
        }
        for entry in entries.iter() {
            self.spawn_loop(Arc::clone(entry));
        }
    }

    /// Stops the background loops (the cached outcomes stay, and go stale). [`start`](Self::start)
    /// may be called again afterwards.
    pub fn stop(&self) {
        let _entries = self
            .inner
            .entries
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        self.inner.running.store(false, Ordering::Release);
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for task in tasks.drain(..) {
            task.abort();
        }
    }

    /// Runs every check once now, concurrently, and waits for all of them (each bounded by its
    /// timeout). Useful at startup, to have fresh outcomes before the first probe.
    pub async fn refresh(&self) {
        let runs: Vec<_> = self
            .entries()
            .into_iter()
            .map(|entry| AbortOnDrop(tokio::spawn(async move { entry.run_once().await })))
            .collect();
        for mut run in runs {
            // A run never panics (the check itself runs in a task of its own).
            let _ = (&mut run.0).await;
        }
    }

    /// The names of the registered checks, in registration order.
    pub fn names(&self) -> Vec<String> {
        self.entries().iter().map(|e| e.name.clone()).collect()
    }

    /// Every check's cached state, in registration order. Synchronous and cheap.
    pub fn snapshot(&self) -> Vec<CheckSnapshot> {
        let now = Instant::now();
        let stale_after = self.inner.config.stale_threshold();
        let entries = self
            .inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .map(|e| e.snapshot(now, stale_after))
            .collect()
    }

    /// One check's cached state, if a check of that name is registered.
    pub fn get(&self, name: &str) -> Option<CheckSnapshot> {
        let now = Instant::now();
        let stale_after = self.inner.config.stale_threshold();
        let entries = self
            .inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        entries
            .iter()
            .find(|e| e.name == name)
            .map(|e| e.snapshot(now, stale_after))
    }

    fn entries(&self) -> Vec<Arc<Entry>> {
        self.inner
            .entries
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn spawn_loop(&self, entry: Arc<Entry>) {
        let interval = self.inner.config.interval;
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(interval);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                ticker.tick().await;
                entry.run_once().await;
            }
        });
        let mut tasks = self
            .inner
            .tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        tasks.retain(|t| !t.is_finished());
        tasks.push(task);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::FnCheck;

    fn ok_check(name: &str) -> Arc<dyn HealthCheck> {
        FnCheck::new(name, || async { Ok(()) }).into_arc()
    }

    #[test]
    fn names_are_validated() {
        let registry = HealthRegistry::default();
        assert_eq!(registry.register(ok_check("database")), Ok(()));
        assert_eq!(
            registry.register(ok_check("database")),
            Err(RegistryError::DuplicateName("database".into()))
        );
        assert_eq!(
            registry.register(ok_check("Data-base")),
            Err(RegistryError::InvalidName("Data-base".into()))
        );
        assert_eq!(
            registry.register(ok_check("")),
            Err(RegistryError::InvalidName(String::new()))
        );
        assert_eq!(
            registry.register(ok_check("workflows")),
            Err(RegistryError::ReservedName("workflows".into()))
        );
        assert_eq!(registry.names(), ["database"]);
    }

    #[test]
    fn a_check_is_pending_until_it_runs() {
        let registry = HealthRegistry::default();
        registry.register(ok_check("database")).unwrap();
        let snap = registry.get("database").unwrap();
        assert_eq!(snap.state, CheckState::Pending);
        assert_eq!(snap.checked_at, None);
        assert!(registry.get("cache").is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_records_success_failure_panic_and_timeout() {
        let registry = HealthRegistry::default();
        registry.register(ok_check("good")).unwrap();
        registry
            .register(FnCheck::new("bad", || async { Err("connection refused".into()) }).into_arc())
            .unwrap();
        registry
            .register(
                FnCheck::new("boom", || async {
                    panic!("broken check");
                })
                .into_arc(),
            )
            .unwrap();
        registry
            .register(
                FnCheck::new("slow", || async {
                    tokio::time::sleep(Duration::from_secs(60)).await;
                    Ok(())
                })
                .timeout(Duration::from_millis(250))
                .into_arc(),
            )
            .unwrap();
        registry.refresh().await;
        let states: Vec<_> = registry
            .snapshot()
            .into_iter()
            .map(|s| (s.name, s.state, s.error))
            .collect();
        assert_eq!(
            states,
            [
                ("good".to_owned(), CheckState::Ok, None),
                (
                    "bad".to_owned(),
                    CheckState::Down,
                    Some("connection refused".to_owned())
                ),
                (
                    "boom".to_owned(),
                    CheckState::Down,
                    Some("check panicked".to_owned())
                ),
                (
                    "slow".to_owned(),
                    CheckState::Down,
                    Some("timed out after 250 ms".to_owned())
                ),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_old_outcome_goes_stale() {
        let registry = HealthRegistry::new(RegistryConfig {
            interval: Duration::from_secs(1),
            stale_after: 3,
        });
        registry.register(ok_check("database")).unwrap();
        registry.refresh().await;
        assert_eq!(registry.get("database").unwrap().state, CheckState::Ok);
        tokio::time::advance(Duration::from_millis(2_900)).await;
        assert_eq!(registry.get("database").unwrap().state, CheckState::Ok);
        tokio::time::advance(Duration::from_millis(200)).await;
        let snap = registry.get("database").unwrap();
        assert_eq!(snap.state, CheckState::Stale);
        assert_eq!(snap.error.as_deref(), Some("no result for 3100 ms (stale)"));
    }
}
