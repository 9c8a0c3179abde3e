//! maestro-health's integration tests, written to read as its specification: one test binary,
//! one module per probe, each driving the public API through the helpers in `support`.

mod latency;
mod liveness;
mod overall;
mod readiness;
mod shapes;
mod startup;
mod support;
