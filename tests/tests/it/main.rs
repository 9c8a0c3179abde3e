//! The workspace's integration tests: one test binary with a module per area.

mod server;
mod tidy;
