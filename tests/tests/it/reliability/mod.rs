//! The reliability suite (DESIGN §9, issue 7): real `maestro-server` processes on the local
//! PostgreSQL, driven through faults — a replica killed, a replica stopped past its lease, the
//! database's connections cut, a rolling restart under load, and (behind a flag) a soak and a
//! long series of kills. Execution counts come from a counting HTTP endpoint that the `http`
//! executor calls and from the database itself, never from the server's own reports.
//! docs/reliability.md says what each test proves and records the figures of the flagged ones.

mod adoption;
mod failover;
mod fencing;
mod harness;
mod outage;
mod rolling;
mod sigterm;
mod soak;
