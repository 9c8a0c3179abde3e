//! What only the durable stores have: migrations, health, URLs, and typed errors for bad rows or
//! an unreachable database.

use std::sync::Arc;
use std::time::Duration;

use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use maestro_dag::store::{RunStore, StoreError};
use maestro_store::{Backend, DurableStore, Error, PgStore, SqliteStore, StoreOptions, connect};

use crate::conformance::{batch, new_run};
use crate::support::{TestDatabase, temp_path};

async fn checks(store: Arc<dyn DurableStore>) {
    let pending = store.pending_migrations().await.unwrap();
    assert!(!pending.is_empty(), "a new database has migrations pending");
    let applied = store.migrate().await.unwrap();
    assert_eq!(applied.len(), pending.len());
    assert!(store.pending_migrations().await.unwrap().is_empty());
    assert!(
        store.migrate().await.unwrap().is_empty(),
        "migrating again does nothing"
    );
    store.ping().await.unwrap();
    assert!(store.pool_state().max_size >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_migrates_once_and_pings() {
    let path = temp_path("db");
    let store = connect(&format!("sqlite://{path}")).unwrap();
    assert_eq!(store.backend(), Backend::Sqlite);
    checks(store).await;
    let memory = connect("sqlite::memory:").unwrap();
    checks(memory.clone()).await;
    memory.create_run(new_run("r", "wf", None)).await.unwrap();
    assert!(
        memory.load_run("r").await.unwrap().is_some(),
        "one in-memory database, not one per connection"
    );
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{s}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_migrates_once_under_concurrency_and_pings() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = connect(&db.url).unwrap();
    assert_eq!(store.backend(), Backend::Postgres);
    // Three replicas migrating at once: the advisory lock lets exactly one apply them.
    let replicas: Vec<_> = (0..3).map(|_| connect(&db.url).unwrap()).collect();
    let mut tasks = Vec::new();
    for r in replicas {
        tasks.push(tokio::spawn(
            async move { r.migrate().await.unwrap().len() },
        ));
    }
    let mut applied = Vec::new();
    for t in tasks {
        applied.push(t.await.unwrap());
    }
    applied.sort_unstable();
    assert_eq!(applied[..2], [0, 0]);
    assert!(applied[2] > 0);
    assert!(store.pending_migrations().await.unwrap().is_empty());
    store.ping().await.unwrap();
    db.drop_it().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_urls_are_typed_errors() {
    let e = connect("mysql://x/y").unwrap_err();
    assert!(matches!(e, Error::InvalidUrl(_)));
    assert_eq!(e.code(), "invalid_database_url");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_postgres_is_unavailable_not_a_panic() {
    // Nothing listens on port 1.
    let opts = StoreOptions::default().with_operation_timeout(Duration::from_secs(3));
    let store = PgStore::new("postgres://postgres@127.0.0.1:1/none", opts).unwrap();
    let e = store.ping().await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    let e = store.load_run("r").await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    let mut b = batch("r", 0, vec![], vec![]);
    let e = store.write(&mut b).await.unwrap_err();
    assert!(e.is_transient(), "{e:?}");
    assert!(matches!(
        store.migrate().await,
        Err(Error::Store(StoreError::Unavailable(_)))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_sqlite_rows_are_typed_errors() {
    let path = temp_path("db");
    let store = SqliteStore::new(&path, StoreOptions::default()).unwrap();
    store.migrate().await.unwrap();
    store.create_run(new_run("r", "wf", None)).await.unwrap();
    store.create_run(new_run("r2", "wf", None)).await.unwrap();
    // Damage rows behind the store's back (CHECK constraints stop the obvious damage, so break
    // the JSON and a timestamp).
    {
        use diesel::Connection;
        let mut c = diesel::SqliteConnection::establish(&path).unwrap();
        for sql in [
            "UPDATE runs SET inputs = '{not json' WHERE run_id = 'r'",
            "UPDATE runs SET created_at = 'yesterday' WHERE run_id = 'r2'",
        ] {
            diesel::RunQueryDsl::execute(diesel::sql_query(sql), &mut c).unwrap();
        }
    }
    let e = store.load_run("r").await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    let e = store.load_run("r2").await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    let e = store.list_runs(&Default::default()).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    for s in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{path}{s}"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_postgres_rows_are_typed_errors() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgStore::new(&db.url, StoreOptions::default()).unwrap();
    store.migrate().await.unwrap();
    store.create_run(new_run("r", "wf", None)).await.unwrap();
    {
        let mut c = AsyncPgConnection::establish(&db.url).await.unwrap();
        // Valid JSON, wrong shape for an event; a negative sequence number.
        diesel::sql_query("INSERT INTO run_events (run_pk, seq, type, node_id, data, ts) SELECT id, 1, 'node_exploded', NULL, '[]', now() FROM runs WHERE run_id = 'r'")
            .execute(&mut c)
            .await
            .unwrap();
        diesel::sql_query("UPDATE runs SET last_seq = 1 WHERE run_id = 'r'")
            .execute(&mut c)
            .await
            .unwrap();
    }
    let e = store.events("r", 0, 10).await.unwrap_err();
    assert!(matches!(e, StoreError::Corrupt(_)), "{e:?}");
    // The log still refuses a write that does not continue it, and one that does is fine.
    let e = store
        .write(&mut batch(
            "r",
            0,
            vec![],
            vec![crate::conformance::event(
                "r",
                1,
                maestro_dag::EventType::WorkflowStarted,
                None,
                Default::default(),
            )],
        ))
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Conflict(_)), "{e:?}");
    drop(store);
    db.drop_it().await;
}
