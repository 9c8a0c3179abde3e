//! maestro-dag's integration tests, written to read as its specification: one test binary, one
//! module per area, each exercising the public API through a small `check`-style helper.

mod control;
mod definition;
mod engine;
mod events;
mod graph;
mod layout;
mod props;
mod recovery;
mod support;
mod trigger_rules;
mod validation;
mod worker;
