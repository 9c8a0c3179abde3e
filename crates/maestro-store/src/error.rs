//! Errors: [`Error`] for setup (URL, migrations), and the mapping of database and pool errors
//! onto the port's [`StoreError`] (connection trouble is `Unavailable`, i.e. transient; data
//! that does not decode is `Corrupt`).

use diesel::result::{DatabaseErrorKind, Error as DieselError};
use maestro_dag::store::StoreError;

/// Why setting a store up failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The URL names no supported database.
    #[error(
        "unsupported database url `{0}`: expected postgres://…, sqlite://PATH or sqlite::memory:"
    )]
    InvalidUrl(String),
    /// A migration failed (or the migration table could not be read).
    #[error("migration failed: {0}")]
    Migration(String),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Error {
    /// A stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidUrl(_) => "invalid_database_url",
            Self::Migration(_) => "migration_failed",
            Self::Store(e) => e.code(),
        }
    }
}

/// Maps a diesel error. `what` names the operation, for the message.
pub(crate) fn from_diesel(what: &str, e: DieselError) -> StoreError {
    match e {
        DieselError::NotFound => StoreError::NotFound(what.to_string()),
        DieselError::DeserializationError(e) => StoreError::Corrupt(format!("{what}: {e}")),
        DieselError::DatabaseError(kind, info) => {
            let msg = info.message().to_string();
            match kind {
                DatabaseErrorKind::UnableToSendCommand
                | DatabaseErrorKind::ClosedConnection
                | DatabaseErrorKind::SerializationFailure
                | DatabaseErrorKind::ReadOnlyTransaction => {
                    StoreError::Unavailable(format!("{what}: {msg}"))
                }
                DatabaseErrorKind::UniqueViolation => {
                    StoreError::Conflict(format!("{what}: {msg}"))
                }
                _ if is_transient_message(&msg) => {
                    StoreError::Unavailable(format!("{what}: {msg}"))
                }
                _ if is_corruption_message(&msg) => StoreError::Corrupt(format!("{what}: {msg}")),
                _ => StoreError::Other(format!("{what}: {msg}")),
            }
        }
        DieselError::BrokenTransactionManager | DieselError::RollbackErrorOnCommit { .. } => {
            StoreError::Unavailable(format!("{what}: {e}"))
        }
        other => StoreError::Other(format!("{what}: {other}")),
    }
}

/// Messages of errors that go away by themselves: the server restarting, a connection cut,
/// a lock held by another process, a deadlock broken by the database.
fn is_transient_message(msg: &str) -> bool {
    const TRANSIENT: &[&str] = &[
        // PostgreSQL
        "terminating connection",
        "the database system is",
        "connection closed",
        "connection reset",
        "deadlock detected",
        "could not serialize",
        "canceling statement due to",
        "too many connections",
        "remaining connection slots",
        // SQLite
        "database is locked",
        "database table is locked",
        "disk I/O error",
        "unable to open database file",
    ];
    let lower = msg.to_ascii_lowercase();
    TRANSIENT
        .iter()
        .any(|t| lower.contains(&t.to_ascii_lowercase()))
}

fn is_corruption_message(msg: &str) -> bool {
    msg.contains("malformed") || msg.contains("file is not a database")
}

/// Maps a pool error (no connection could be had): always transient.
pub(crate) fn from_pool(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(format!("no database connection: {e}"))
}

/// An operation that did not finish in time.
pub(crate) fn timed_out(what: &str) -> StoreError {
    StoreError::Unavailable(format!("{what}: timed out"))
}
