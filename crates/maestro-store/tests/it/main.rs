//! The store conformance suite: every property is one generic `async fn` over `Arc<dyn Store>`,
//! run against the in-memory reference store, SQLite (a temporary file) and PostgreSQL (a fresh
//! database per test, from `MAESTRO_TEST_DATABASE_URL`), each durable store with and without
//! group commit.

mod conformance;
mod crash;
mod engine;
mod support;

/// One test per property for one store.
macro_rules! tests {
    ($kind:expr; $($name:ident: $path:path),* $(,)?) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $name() {
            crate::support::run($kind, $path).await;
        }
    )*};
}

/// Every property, for one store.
macro_rules! suite {
    ($kind:expr) => {
        tests! {
            $kind;
            definitions_version_by_content: crate::conformance::definitions_version_by_content,
            definitions_list_and_delete: crate::conformance::definitions_list_and_delete,
            run_state_reads_back_exactly: crate::conformance::run_state_reads_back_exactly,
            idempotency_key_returns_the_first_run: crate::conformance::idempotency_key_returns_the_first_run,
            events_are_gap_free: crate::conformance::events_are_gap_free,
            events_page_by_sequence: crate::conformance::events_page_by_sequence,
            list_runs_filters_newest_first: crate::conformance::list_runs_filters_newest_first,
            stale_epoch_is_fenced: crate::conformance::stale_epoch_is_fenced,
            a_run_that_ends_lets_its_lease_go: crate::conformance::a_run_that_ends_lets_its_lease_go,
            concurrent_claimers_never_share_a_run: crate::conformance::concurrent_claimers_never_share_a_run,
            expired_lease_is_taken_over: crate::conformance::expired_lease_is_taken_over,
            renew_release_and_claim_run: crate::conformance::renew_release_and_claim_run,
            concurrent_writes_of_many_runs: crate::conformance::concurrent_writes_of_many_runs,
            engine_runs_a_workflow: crate::engine::engine_runs_a_workflow,
            engine_recovers_after_a_stop: crate::engine::engine_recovers_after_a_stop,
            engine_stale_replica_is_fenced: crate::engine::engine_stale_replica_is_fenced,
        }
    };
}

mod memory {
    suite!(crate::support::Kind::Memory);
}

mod sqlite {
    suite!(crate::support::Kind::Sqlite { group_commit: true });
}

mod sqlite_direct {
    suite!(crate::support::Kind::Sqlite {
        group_commit: false
    });
}

mod postgres {
    suite!(crate::support::Kind::Postgres { group_commit: true });
}

mod postgres_direct {
    suite!(crate::support::Kind::Postgres {
        group_commit: false
    });
}

mod durable;
