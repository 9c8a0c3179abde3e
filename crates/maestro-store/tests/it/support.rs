//! Stores for the suite: how each is made and torn down.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt;
use maestro_dag::MemoryStore;
use maestro_dag::store::Store;
use maestro_store::{DurableStore, PgStore, SqliteStore, StoreOptions};

/// Which store a test runs against.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Kind {
    Memory,
    Sqlite { group_commit: bool },
    Postgres { group_commit: bool },
}

/// Runs `test` against a fresh store of `kind`, then removes the store's database.
pub(crate) async fn run<F, Fut>(kind: Kind, test: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: Future<Output = ()>,
{
    match kind {
        Kind::Memory => test(Arc::new(MemoryStore::new())).await,
        Kind::Sqlite { group_commit } => {
            let path = temp_path("db");
            let store = sqlite(&path, group_commit).await;
            let outcome = AssertUnwindSafe(test(store)).catch_unwind().await;
            for suffix in ["", "-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{suffix}"));
            }
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
        Kind::Postgres { group_commit } => {
            let Some(db) = TestDatabase::create().await else {
                return;
            };
            let store = PgStore::new(&db.url, options(group_commit)).unwrap();
            store.migrate().await.expect("migrations apply");
            let outcome = AssertUnwindSafe(test(Arc::new(store))).catch_unwind().await;
            db.drop_it().await;
            if let Err(panic) = outcome {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

pub(crate) fn options(group_commit: bool) -> StoreOptions {
    StoreOptions::default()
        .with_pool_size(4)
        .with_group_commit(group_commit)
}

/// A migrated SQLite store in a new file.
pub(crate) async fn sqlite(path: &str, group_commit: bool) -> Arc<dyn Store> {
    let store = SqliteStore::new(path, options(group_commit)).unwrap();
    store.migrate().await.expect("migrations apply");
    Arc::new(store)
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A unique name for this process and test.
pub(crate) fn unique(prefix: &str) -> String {
    format!(
        "{prefix}_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        fastrand::u32(..)
    )
}

pub(crate) fn temp_path(ext: &str) -> String {
    std::env::temp_dir()
        .join(format!("{}.{ext}", unique("maestro_store_test")))
        .to_string_lossy()
        .into_owned()
}

/// The PostgreSQL server for tests, or `None` (with a notice) when none is configured. With
/// `CI=true` a missing or unreachable server fails the test instead.
pub(crate) fn admin_url() -> Option<String> {
    match std::env::var("MAESTRO_TEST_DATABASE_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!(
                    "CI=true but MAESTRO_TEST_DATABASE_URL is not set: PostgreSQL tests cannot be skipped in CI"
                );
            }
            eprintln!("note: MAESTRO_TEST_DATABASE_URL is not set; skipping a PostgreSQL test");
            None
        }
    }
}

/// A database created for one test.
pub(crate) struct TestDatabase {
    admin: String,
    name: String,
    pub(crate) url: String,
}

impl TestDatabase {
    pub(crate) async fn create() -> Option<Self> {
        let admin = admin_url()?;
        let name = unique("maestro_test");
        let url = maestro_store::admin::create_database(&admin, &name)
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database at {admin}: {e}"));
        Some(Self { admin, name, url })
    }

    pub(crate) async fn drop_it(self) {
        let _ = maestro_store::admin::drop_database(&self.admin, &self.name).await;
    }
}
