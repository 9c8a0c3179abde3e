//! `GET /metrics`: the `dag_*` metrics in the Prometheus text format, open without a token.

use std::sync::Arc;
use std::time::Duration;

use maestro_dag::{Engine, MemoryStore, Store};
use maestro_health::{FnCheck, Health, HealthConfig};
use maestro_http::{ApiContext, HttpConfig, Metrics};
use serde_json::json;

use crate::support::{TestServer, registry};

/// The value of the sample `line_prefix` (a metric name with its labels), if present.
fn sample(text: &str, line_prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(line_prefix) && l[line_prefix.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_cover_runs_nodes_requests_sockets_and_health() {
    let health = Health::new(HealthConfig::new("test", "memory"));
    health
        .register_check(FnCheck::new("database", || async { Ok(()) }).into_arc())
        .unwrap();
    health.registry().refresh().await;
    let metrics = Arc::new(Metrics::new());
    metrics.set_database_pool_size(7);
    let store = Arc::new(MemoryStore::new());
    let ctx = ApiContext::new(
        Engine::new(store.clone(), registry()),
        store as Arc<dyn Store>,
        HttpConfig::default().with_api_tokens(["tok"]),
    )
    .with_health(health)
    .with_metrics(metrics);
    let s = TestServer::start_on(ctx).await.with_token("tok");
    let anon = s.anonymous();

    s.create(&json!({
        "id": "measured",
        "nodes": [
            {"id": "a", "executor": "noop"},
            {"id": "flaky", "executor": "fail_once", "depends_on": ["a"],
             "retry": {"max_attempts": 2, "initial_delay_ms": 1}},
        ]
    }))
    .await;
    let run_id = s.start_run("measured", json!({})).await;
    s.wait_status(&run_id, &["completed"]).await;
    let _ws = s.ws("/ws/workflow/measured").await.unwrap();
    assert_eq!(s.get("/api/v1/runs/nobody").await.status, 404);

    // Open without a token; engine events are counted by a background task.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let text = loop {
        let res = anon.get("/metrics").await;
        assert_eq!(res.status, 200, "{}", res.text);
        assert!(
            res.headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain; version=0.0.4")
        );
        let done = sample(
            &res.text,
            "dag_workflow_executions_total{workflow_name=\"measured\",status=\"completed\"}",
        );
        if done == Some(1.0) {
            break res.text;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the run was never counted:\n{}",
            res.text
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    for name in [
        "dag_workflow_executions_total",
        "dag_workflow_execution_duration_seconds",
        "dag_node_executions_total",
        "dag_node_execution_duration_seconds",
        "dag_node_retries_total",
        "dag_active_workflows",
        "dag_active_nodes",
        "dag_api_requests_total",
        "dag_api_request_duration_seconds",
        "dag_websocket_connections",
        "dag_health_check_status",
        "dag_database_pool_size",
    ] {
        assert!(
            text.contains(&format!("# TYPE {name} ")),
            "{name} missing:\n{text}"
        );
    }
    let expect = |prefix: &str, value: f64| {
        assert_eq!(sample(&text, prefix), Some(value), "{prefix}:\n{text}");
    };
    expect(
        "dag_workflow_execution_duration_seconds_count{workflow_name=\"measured\"}",
        1.0,
    );
    expect(
        "dag_node_executions_total{node_type=\"noop\",status=\"completed\"}",
        1.0,
    );
    expect(
        "dag_node_executions_total{node_type=\"fail_once\",status=\"completed\"}",
        1.0,
    );
    expect("dag_node_retries_total{node_type=\"fail_once\"}", 1.0);
    expect(
        "dag_node_execution_duration_seconds_count{node_type=\"fail_once\"}",
        2.0,
    );
    expect("dag_active_workflows", 0.0);
    expect("dag_active_nodes", 0.0);
    expect(
        "dag_api_requests_total{method=\"POST\",endpoint=\"/api/v1/workflows/{id}/runs\",status_code=\"202\"}",
        1.0,
    );
    expect(
        "dag_api_requests_total{method=\"GET\",endpoint=\"/api/v1/runs/{run_id}\",status_code=\"404\"}",
        1.0,
    );
    expect(
        "dag_api_request_duration_seconds_count{method=\"POST\",endpoint=\"/api/v1/workflows\"}",
        1.0,
    );
    assert!(
        !text.contains("endpoint=\"/api/v1/runs/nobody\""),
        "raw paths never become labels"
    );
    expect("dag_websocket_connections", 1.0);
    expect("dag_health_check_status{check_type=\"database\"}", 1.0);
    expect("dag_database_pool_size", 7.0);
}

#[tokio::test]
async fn without_metrics_the_route_is_404() {
    let s = TestServer::start().await;
    s.get("/metrics").await.problem(404, "route_not_found");
}
