//! Integration tests of maestro-phase: templates, the requirement text, and phase workflows run
//! on the real engine with the crate's own test doubles.

mod requirement;
mod runs;
mod templates;
mod tidy;
