//! [`Gauges`]: the counters the server keeps up to date for the reports (cached workflows, open
//! WebSockets, background tasks). Plain atomics: updating or reading one never blocks.

use std::sync::atomic::{AtomicU64, Ordering};

/// One counter: an atomic `u64` that never wraps below zero.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes one, stopping at zero (an unbalanced decrement never wraps around).
    pub fn dec(&self) {
        let _ = self
            .0
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |v| {
                Some(v.saturating_sub(1))
            });
    }

    /// Sets the value.
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The current value.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters the server updates and the reports read.
///
/// `/health` shows `cache {workflows, websockets}` and `tasks {background, active}`;
/// `/health/ready` shows `workflows` and `background_tasks` (= `active_tasks`); `/health/live`
/// shows `background_tasks_total` (= `background_tasks`) and `active_connections`
/// (= `websockets`).
#[derive(Debug, Default)]
pub struct Gauges {
    /// Workflow definitions held in memory (compiled and cached).
    pub workflows: Gauge,
    /// Open WebSocket connections (and SSE streams, if the server counts them together).
    pub websockets: Gauge,
    /// Background tasks the server tracks (running or finished but not yet reaped).
    pub background_tasks: Gauge,
    /// Background tasks still running.
    pub active_tasks: Gauge,
}

/// The [`Gauges`] read at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GaugeSnapshot {
    /// See [`Gauges::workflows`].
    pub workflows: u64,
    /// See [`Gauges::websockets`].
    pub websockets: u64,
    /// See [`Gauges::background_tasks`].
    pub background_tasks: u64,
    /// See [`Gauges::active_tasks`].
    pub active_tasks: u64,
}

impl Gauges {
    /// Reads every counter (each atomically; not one atomic snapshot of all four).
    pub fn snapshot(&self) -> GaugeSnapshot {
        GaugeSnapshot {
            workflows: self.workflows.get(),
            websockets: self.websockets.get(),
            background_tasks: self.background_tasks.get(),
            active_tasks: self.active_tasks.get(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_move_and_never_wrap() {
        let g = Gauges::default();
        g.websockets.inc();
        g.websockets.inc();
        g.websockets.dec();
        g.active_tasks.dec();
        g.workflows.set(7);
        assert_eq!(
            g.snapshot(),
            GaugeSnapshot {
                workflows: 7,
                websockets: 1,
                background_tasks: 0,
                active_tasks: 0
            }
        );
    }
}
