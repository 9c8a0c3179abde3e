//! `/health…`: the injected `maestro-health` reports, open even when the API needs a token.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use maestro_dag::{Engine, MemoryStore, Store};
use maestro_health::{FnCheck, Health, HealthConfig};
use maestro_http::{ApiContext, HttpConfig};

use crate::support::{TestServer, chain};

#[tokio::test]
async fn probes_follow_startup_the_database_and_draining() {
    let up = Arc::new(AtomicBool::new(true));
    let health = Health::new(HealthConfig::new("test", "memory"));
    let flag = up.clone();
    health
        .register_check(
            FnCheck::new("database", move || {
                let ok = flag.load(Ordering::SeqCst);
                async move {
                    if ok {
                        Ok(())
                    } else {
                        Err("connection refused".into())
                    }
                }
            })
            .into_arc(),
        )
        .unwrap();
    health.start();
    health.registry().refresh().await;

    let store = Arc::new(MemoryStore::new());
    let ctx = ApiContext::new(
        Engine::new(store.clone(), maestro_executors::builtin_registry()),
        store as Arc<dyn Store>,
        HttpConfig::default().with_api_tokens(["tok"]),
    )
    .with_health(health.clone());
    let s = TestServer::start_on(ctx).await;

    let startup = s.get("/health/startup").await;
    assert_eq!(startup.status, 503, "{}", startup.text);
    assert_eq!(startup.body["started"], false);
    assert_eq!(s.get("/health/ready").await.status, 503);
    assert_eq!(s.get("/health/live").await.status, 200);

    health.mark_started();
    assert_eq!(s.get("/health/startup").await.status, 200);
    let ready = s.get("/health/ready").await;
    assert_eq!(ready.status, 200, "{}", ready.text);
    assert_eq!(ready.body["ready"], true);

    let s = s.with_token("tok");
    s.create(&chain("cached")).await;
    let overall = s.get("/health").await;
    assert_eq!(overall.status, 200, "{}", overall.text);
    assert_eq!(overall.body["status"], "healthy");
    assert_eq!(overall.body["cache"]["workflows"], 1, "{}", overall.text);

    up.store(false, Ordering::SeqCst);
    health.registry().refresh().await;
    let down = s.get("/health/ready").await;
    assert_eq!(down.status, 503, "{}", down.text);
    assert_eq!(down.body["ready"], false);
    assert_eq!(
        s.get("/health/live").await.status,
        200,
        "liveness ignores the database"
    );
    assert_eq!(s.get("/health").await.body["status"], "degraded");

    up.store(true, Ordering::SeqCst);
    health.registry().refresh().await;
    health.set_draining(true);
    let draining = s.get("/health/ready").await;
    assert_eq!(draining.status, 503);
    assert!(draining.text.contains("draining"), "{}", draining.text);
    health.stop();
}

#[tokio::test]
async fn without_health_the_probe_routes_are_404() {
    let s = TestServer::start().await;
    s.get("/health/live").await.problem(404, "route_not_found");
}
