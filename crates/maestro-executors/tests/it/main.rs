//! Integration tests of the built-in executors against real local servers and processes: one
//! test binary, a module per executor, the test server in [`support`].

mod command;
mod http;
mod phase;
mod support;
