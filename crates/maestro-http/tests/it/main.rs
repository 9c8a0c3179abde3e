//! Integration tests: the server runs in process on 127.0.0.1:0 over a `MemoryStore` and an
//! engine with the built-in test executors; the tests talk HTTP to it.

mod compat;
mod dashboard;
mod graph;
mod layering;
mod malformed;
mod metrics;
mod openapi;
mod probes;
mod replicas;
mod resilience;
mod runs;
mod security;
mod sse;
mod support;
mod workflows;
mod ws;
