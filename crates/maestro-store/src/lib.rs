//! Maestro persistence adapters: PostgreSQL and SQLite implementations of the `maestro-dag` store ports (filled in by the persistence issue).
