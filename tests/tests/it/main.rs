//! The workspace's integration tests: one test binary with a module per area.

mod api_docs;
mod assets;
mod cli;
mod dashboard;
mod drain;
mod probes;
mod reliability;
mod security;
mod server;
mod streams;
mod support;
mod tidy;
