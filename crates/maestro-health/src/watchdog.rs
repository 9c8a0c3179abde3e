//! The liveness watchdog: components that must keep making progress (the Tokio runtime, the
//! scheduler loop) register a [`Heartbeat`] with the longest gap allowed between two beats, and
//! beat it as they work. Liveness fails when a registered heartbeat is older than its gap. The
//! runtime's own heartbeat comes from a task that ticks every [`RUNTIME_TICK`] and records how late
//! each tick fires ([`Watchdog::spawn_runtime_ticker`]).
//!
//! Beating is one atomic store; reading every heartbeat is one uncontended read lock.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, Weak};
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

/// The name of the heartbeat the runtime ticker beats.
pub const RUNTIME_HEARTBEAT: &str = "runtime";

/// How often the runtime ticker ticks.
pub const RUNTIME_TICK: Duration = Duration::from_millis(100);

/// One registered heartbeat.
#[derive(Debug)]
struct Beat {
    name: String,
    max_gap: Duration,
    epoch: Instant,
    /// Nanoseconds from `epoch` to the last beat.
    last: AtomicU64,
}

impl Beat {
    fn beat(&self) {
        let nanos = Instant::now()
            .saturating_duration_since(self.epoch)
            .as_nanos();
        self.last
            .store(u64::try_from(nanos).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    fn age(&self, now: Instant) -> Duration {
        let last = self.epoch + Duration::from_nanos(self.last.load(Ordering::Relaxed));
        now.saturating_duration_since(last)
    }
}

#[derive(Debug)]
struct Inner {
    epoch: Instant,
    beats: RwLock<Vec<Arc<Beat>>>,
    /// The runtime ticker's last lag in microseconds, `u64::MAX` before its first tick.
    runtime_lag_us: AtomicU64,
    runtime_task: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        let task = self
            .runtime_task
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.take() {
            task.abort();
        }
    }
}

/// The state of one heartbeat at one instant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatStatus {
    /// The component's name (`runtime`, `scheduler`, …).
    pub name: String,
    /// Time since its last beat.
    pub age: Duration,
    /// The longest gap allowed between two beats.
    pub max_gap: Duration,
    /// Whether `age` exceeds `max_gap`: the component has stopped making progress.
    pub stalled: bool,
}

/// The set of heartbeats liveness watches. Cheap to clone (an `Arc`).
#[derive(Debug, Clone)]
pub struct Watchdog {
    inner: Arc<Inner>,
}

impl Default for Watchdog {
    fn default() -> Self {
        Self::new()
    }
}

impl Watchdog {
    /// A watchdog with no heartbeat: liveness holds until something registers.
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                epoch: Instant::now(),
                beats: RwLock::new(Vec::new()),
                runtime_lag_us: AtomicU64::new(u64::MAX),
                runtime_task: Mutex::new(None),
            }),
        }
    }

    /// Registers (or re-registers, replacing) the heartbeat `name`, allowing at most `max_gap`
    /// between two beats, and beats it once. The component must beat at least that often, idle
    /// or not, for as long as it is registered: a heartbeat is watched until it is
    /// [retired](Heartbeat::retire), so a component that dies (even by panicking) makes liveness
    /// fail.
    pub fn register(&self, name: impl Into<String>, max_gap: Duration) -> Heartbeat {
        let beat = Arc::new(Beat {
            name: name.into(),
            max_gap,
            epoch: self.inner.epoch,
            last: AtomicU64::new(0),
        });
        beat.beat();
        {
            let mut beats = self
                .inner
                .beats
                .write()
                .unwrap_or_else(PoisonError::into_inner);
            beats.retain(|b| b.name != beat.name);
            beats.push(Arc::clone(&beat));
        }
        Heartbeat {
            beat,
            watchdog: Arc::downgrade(&self.inner),
        }
    }

    /// Beats the heartbeat `name`; `false` when no heartbeat of that name is registered. A
    /// [`Heartbeat`] handle avoids the lookup.
    pub fn heartbeat(&self, name: &str) -> bool {
        let beats = self
            .inner
            .beats
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        match beats.iter().find(|b| b.name == name) {
            Some(beat) => {
                beat.beat();
                true
            }
            None => false,
        }
    }

    /// Stops watching the heartbeat `name` (an orderly stop); `false` when none was registered.
    pub fn retire(&self, name: &str) -> bool {
        let mut beats = self
            .inner
            .beats
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let before = beats.len();
        beats.retain(|b| b.name != name);
        beats.len() != before
    }

    /// Every registered heartbeat, in registration order.
    pub fn status(&self) -> Vec<HeartbeatStatus> {
        let now = Instant::now();
        let beats = self
            .inner
            .beats
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        beats
            .iter()
            .map(|b| {
                let age = b.age(now);
                HeartbeatStatus {
                    name: b.name.clone(),
                    age,
                    max_gap: b.max_gap,
                    stalled: age > b.max_gap,
                }
            })
            .collect()
    }

    /// Whether no registered heartbeat is stalled.
    pub fn all_alive(&self) -> bool {
        let now = Instant::now();
        let beats = self
            .inner
            .beats
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        beats.iter().all(|b| b.age(now) <= b.max_gap)
    }

    /// Registers the [`RUNTIME_HEARTBEAT`] with `max_gap` and spawns a task that beats it every
    /// [`RUNTIME_TICK`], recording how late each tick fires ([`runtime_lag`](Self::runtime_lag)).
    /// If the runtime stops polling tasks (a blocked worker, a deadlock) for longer than
    /// `max_gap`, liveness fails. Calling it again replaces the previous ticker. The task stops
    /// when the last clone of the watchdog is dropped.
    ///
    /// # Panics
    ///
    /// Outside a Tokio runtime.
    pub fn spawn_runtime_ticker(&self, max_gap: Duration) {
        let heartbeat = self.register(RUNTIME_HEARTBEAT, max_gap);
        let watchdog = Arc::downgrade(&self.inner);
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(RUNTIME_TICK);
            ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
            loop {
                let scheduled = ticker.tick().await;
                let Some(inner) = watchdog.upgrade() else {
                    return;
                };
                let lag = Instant::now().saturating_duration_since(scheduled);
                inner.runtime_lag_us.store(
                    u64::try_from(lag.as_micros()).unwrap_or(u64::MAX - 1),
                    Ordering::Relaxed,
                );
                heartbeat.beat();
            }
        });
        let previous = self
            .inner
            .runtime_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(task);
        if let Some(previous) = previous {
            previous.abort();
        }
    }

    /// Stops the runtime ticker and retires the [`RUNTIME_HEARTBEAT`] (an orderly stop, so
    /// liveness does not report the runtime stalled). Does nothing if no ticker runs.
    pub fn stop_runtime_ticker(&self) {
        let task = self
            .inner
            .runtime_task
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
            self.retire(RUNTIME_HEARTBEAT);
            self.inner.runtime_lag_us.store(u64::MAX, Ordering::Relaxed);
        }
    }

    /// How late the runtime ticker's last tick fired, once it has ticked.
    pub fn runtime_lag(&self) -> Option<Duration> {
        match self.inner.runtime_lag_us.load(Ordering::Relaxed) {
            u64::MAX => None,
            us => Some(Duration::from_micros(us)),
        }
    }
}

/// A handle to one registered heartbeat; cloning it shares the heartbeat.
///
/// Dropping the handle does *not* stop the watching: a component that exits without calling
/// [`retire`](Self::retire) (for instance because it panicked) is reported as stalled.
#[derive(Debug, Clone)]
pub struct Heartbeat {
    beat: Arc<Beat>,
    watchdog: Weak<Inner>,
}

impl Heartbeat {
    /// Records progress now. One atomic store.
    pub fn beat(&self) {
        self.beat.beat();
    }

    /// The heartbeat's name.
    pub fn name(&self) -> &str {
        &self.beat.name
    }

    /// The longest gap allowed between two beats.
    pub fn max_gap(&self) -> Duration {
        self.beat.max_gap
    }

    /// Stops watching this heartbeat, for a component that stops on purpose (e.g. the scheduler
    /// loop after draining). Does nothing if it was already replaced by a newer registration.
    pub fn retire(self) {
        if let Some(inner) = self.watchdog.upgrade() {
            let mut beats = inner.beats.write().unwrap_or_else(PoisonError::into_inner);
            beats.retain(|b| !Arc::ptr_eq(b, &self.beat));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_heartbeat_stalls_after_its_gap_and_recovers_on_a_beat() {
        let watchdog = Watchdog::new();
        let hb = watchdog.register("scheduler", Duration::from_secs(5));
        assert!(watchdog.all_alive());
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(watchdog.all_alive(), "exactly the gap is still alive");
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(!watchdog.all_alive());
        let status = watchdog.status();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].name, "scheduler");
        assert!(status[0].stalled);
        assert_eq!(status[0].age, Duration::from_millis(5_001));
        hb.beat();
        assert!(watchdog.all_alive());
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(watchdog.heartbeat("scheduler"));
        assert!(watchdog.all_alive());
        assert!(!watchdog.heartbeat("nobody"));
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_a_handle_keeps_watching_but_retiring_stops() {
        let watchdog = Watchdog::new();
        drop(watchdog.register("scheduler", Duration::from_secs(1)));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(
            !watchdog.all_alive(),
            "a dropped handle is a dead component"
        );

        let hb = watchdog.register("scheduler", Duration::from_secs(1));
        let stale_clone = hb.clone();
        hb.retire();
        assert!(watchdog.status().is_empty());
        stale_clone.retire();
        assert!(!watchdog.retire("nobody"));
    }

    #[tokio::test(start_paused = true)]
    async fn retiring_an_old_handle_keeps_a_newer_registration() {
        let watchdog = Watchdog::new();
        let old = watchdog.register("scheduler", Duration::from_secs(1));
        let _new = watchdog.register("scheduler", Duration::from_secs(2));
        old.retire();
        let status = watchdog.status();
        assert_eq!(status.len(), 1);
        assert_eq!(status[0].max_gap, Duration::from_secs(2));
    }

    #[tokio::test(start_paused = true)]
    async fn the_runtime_ticker_keeps_beating_and_records_its_lag() {
        let watchdog = Watchdog::new();
        assert_eq!(watchdog.runtime_lag(), None);
        watchdog.spawn_runtime_ticker(Duration::from_secs(1));
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(watchdog.all_alive());
        assert_eq!(watchdog.runtime_lag(), Some(Duration::ZERO));
        assert_eq!(watchdog.status()[0].name, RUNTIME_HEARTBEAT);

        watchdog.stop_runtime_ticker();
        assert!(watchdog.status().is_empty());
        assert_eq!(watchdog.runtime_lag(), None);
        tokio::time::sleep(Duration::from_secs(30)).await;
        assert!(watchdog.all_alive());
    }
}
