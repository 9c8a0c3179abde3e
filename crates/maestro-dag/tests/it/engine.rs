//! The run engine (DESIGN §3): dependency-driven scheduling, data flow, concurrency limits,
//! retries, timeouts, failures of every kind, conditions and failure policies.

use std::sync::Arc;
use std::time::Duration;

use maestro_dag::{
    Engine, EngineConfig, EventType, ExecutorRegistry, FailurePolicy, FnExecutor, MemoryStore,
    NodeDefinition, NodeError, NodeStatus as N, RetryPolicy, RunStatus, RunStore, StartOptions,
    Workflow,
};
use serde_json::{Value, json};

use crate::support::{
    Harness, INLINE, NOW, NodeExt, Report, SCRIPT, check, no_inputs, node, wait, workflow,
};

fn with_policy(
    mut def: maestro_dag::WorkflowDefinition,
    policy: FailurePolicy,
) -> maestro_dag::WorkflowDefinition {
    def.failure_policy = policy;
    def
}

#[tokio::test]
async fn a_chain_runs_in_order_and_completes() {
    let (h, report) = check(
        workflow(
            "chain",
            vec![node("a"), node("b").after(["a"]), node("c").after(["b"])],
        ),
        no_inputs(),
        RunStatus::Completed,
        &[
            ("a", N::Completed),
            ("b", N::Completed),
            ("c", N::Completed),
        ],
    )
    .await;
    assert_eq!(
        report.trace(),
        [
            "workflow_started",
            "node_started:a",
            "node_completed:a",
            "node_started:b",
            "node_completed:b",
            "node_started:c",
            "node_completed:c",
            "workflow_completed",
        ]
    );
    assert_eq!(report.output("c")["value"], json!(3));
    for id in ["a", "b", "c"] {
        assert_eq!(h.probe.executions(id), 1);
        let rec = report.node(id);
        assert_eq!(rec.attempt, 1);
        assert!(rec.started_at.is_some() && rec.finished_at.is_some());
        assert!(rec.started_at <= rec.finished_at);
        assert_eq!(rec.error, None);
    }
    let outcome = report.outcome.unwrap();
    assert_eq!(
        (
            outcome.completed,
            outcome.failed,
            outcome.skipped,
            outcome.cancelled
        ),
        (3, 0, 0, 0)
    );
    assert!(report.run.started_at.is_some() && report.run.finished_at.is_some());
    assert_eq!(report.run.error, None);
}

#[tokio::test]
async fn a_single_node_with_no_dependencies_runs() {
    check(
        workflow("one", vec![node("only")]),
        no_inputs(),
        RunStatus::Completed,
        &[("only", N::Completed)],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn independent_nodes_execute_at_the_same_time() {
    // Three nodes meet at a barrier: none can finish unless all three run at once.
    let barrier = Arc::new(tokio::sync::Barrier::new(3));
    let b = barrier.clone();
    let exec = FnExecutor::new(move |_ctx| {
        let b = b.clone();
        async move {
            tokio::time::timeout(Duration::from_secs(5), b.wait())
                .await
                .map_err(|_| NodeError::new("alone at the barrier"))?;
            Ok(json!({}))
        }
    });
    let store = MemoryStore::new();
    let engine = Engine::new(
        Arc::new(store.clone()),
        ExecutorRegistry::new().with("barrier", exec),
    );
    let def = workflow(
        "parallel",
        vec![
            NodeDefinition::new("x", "barrier"),
            NodeDefinition::new("y", "barrier"),
            NodeDefinition::new("z", "barrier"),
        ],
    );
    let wf = Arc::new(Workflow::compile(def, Some(engine.executors())).unwrap());
    let handle = engine
        .start(wf.clone(), no_inputs(), StartOptions::default())
        .await
        .unwrap();
    let run_id = handle.run_id().to_string();
    let outcome = wait(handle).await;
    let report = Report::load(&store, &wf, &run_id).await;
    assert_eq!(outcome.status, RunStatus::Completed, "{:?}", report.trace());
    report.assert_invariants();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallel_branches_take_about_as_long_as_the_slowest() {
    // Loose wall-clock check: four 250 ms nodes in parallel take well under the 1 s they would
    // take one after the other.
    let sleepy = |id: &str| node(id).cfg(json!({"sleep_ms": 250}));
    let started = std::time::Instant::now();
    let (h, _) = check(
        workflow(
            "fan",
            vec![
                node("root"),
                sleepy("p1").after(["root"]),
                sleepy("p2").after(["root"]),
                sleepy("p3").after(["root"]),
                sleepy("p4").after(["root"]),
                node("join").after(["p1", "p2", "p3", "p4"]),
            ],
        ),
        no_inputs(),
        RunStatus::Completed,
        &[
            ("root", N::Completed),
            ("p1", N::Completed),
            ("p2", N::Completed),
            ("p3", N::Completed),
            ("p4", N::Completed),
            ("join", N::Completed),
        ],
    )
    .await;
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_millis(800), "took {elapsed:?}");
    assert_eq!(h.probe.peak(), 4, "most attempts executing at once");
}

#[tokio::test(start_paused = true)]
async fn scheduling_follows_dependencies_not_levels() {
    // a -> {b (slow), c}, c -> d: d must not wait for b, which sits on c's level.
    let (h, report) = check(
        workflow(
            "no_barrier",
            vec![
                node("a"),
                node("b").after(["a"]).cfg(json!({"sleep_ms": 1000})),
                node("c").after(["a"]).cfg(json!({"sleep_ms": 10})),
                node("d").after(["c"]).cfg(json!({"sleep_ms": 10})),
            ],
        ),
        no_inputs(),
        RunStatus::Completed,
        &[
            ("a", N::Completed),
            ("b", N::Completed),
            ("c", N::Completed),
            ("d", N::Completed),
        ],
    )
    .await;
    assert!(
        report.seq(EventType::NodeCompleted, Some("d"))
            < report.seq(EventType::NodeCompleted, Some("b")),
        "{:?}",
        report.trace()
    );
    assert!(h.probe.started_at("d") < h.probe.ended_at("b"));
    assert!(h.probe.ended_at("d") < h.probe.ended_at("b"));
}

#[tokio::test]
async fn outputs_and_artifacts_flow_downstream() {
    let (h, report) = check(
        workflow(
            "data",
            vec![
                node("a").cfg(json!({"output": {"value": 1, "artifacts": ["s3://bucket/a.txt"]}})),
                node("b")
                    .cfg(json!({"output": {"value": 10, "artifacts": ["b1", "b2"], "note": "hi"}})),
                node("quiet").when("false"),
                node("c")
                    .after(["a", "b", "quiet"])
                    .rule("none_failed")
                    .cfg(json!({"k": "v"})),
            ],
        ),
        json!({"env": "prod"}),
        RunStatus::Completed,
        &[
            ("a", N::Completed),
            ("b", N::Completed),
            ("quiet", N::Skipped),
            ("c", N::Completed),
        ],
    )
    .await;
    let ctx = &h.probe.contexts("c")[0];
    let run_id = report.run.run_id.to_string();
    // Completed dependencies, in declaration order; the skipped one is absent.
    let deps: Vec<&str> = ctx.dependency_outputs.iter().map(|(id, _)| &**id).collect();
    assert_eq!(deps, ["a", "b"]);
    assert_eq!(ctx.dependency_output("b").unwrap()["note"], json!("hi"));
    assert_eq!(ctx.dependency_output("quiet"), None);
    assert_eq!(
        ctx.input_json(),
        json!({
            "node_id": "c",
            "node_name": "c",
            "node_config": {"k": "v"},
            "run_id": run_id,
            "workflow_id": "data",
            "attempt": 1,
            "idempotency_key": format!("{run_id}:c"),
            "inputs": {"env": "prod"},
            "dependency_outputs": {
                "a": {"value": 1, "artifacts": ["s3://bucket/a.txt"]},
                "b": {"value": 10, "artifacts": ["b1", "b2"], "note": "hi"}
            },
            "dependency_artifacts": {"a": ["s3://bucket/a.txt"], "b": ["b1", "b2"]}
        })
    );
    assert_eq!(report.output("c")["value"], json!(12));
    // The output is stored on the node and carried by its event.
    let completed = report.events_of(EventType::NodeCompleted, Some("a"));
    assert_eq!(
        completed[0].data.output.as_deref(),
        Some(&json!({"value": 1, "artifacts": ["s3://bucket/a.txt"]}))
    );
    assert_eq!(completed[0].data.attempt, Some(1));
    assert_eq!(
        report.output("a"),
        json!({"value": 1, "artifacts": ["s3://bucket/a.txt"]})
    );
    // The run keeps its inputs.
    assert_eq!(*report.run.inputs, json!({"env": "prod"}));
    let started = &report.events_of(EventType::WorkflowStarted, None)[0].data;
    assert_eq!(started.extra["inputs"], json!({"env": "prod"}));
}

#[tokio::test(start_paused = true)]
async fn a_runs_max_concurrency_is_respected() {
    let h = Harness::new();
    let mut def = workflow(
        "limited",
        (0..8)
            .map(|i| node(&format!("n{i}")).cfg(json!({"gate": "go"})))
            .collect(),
    );
    def.max_concurrency = Some(3);
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("n2", 1).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        h.probe.total_executions(),
        3,
        "attempts begun under max_concurrency 3"
    );
    assert_eq!(h.probe.running_now(), 3);
    // The nodes waiting for a slot are recorded as ready.
    let snap = h.store.load_run(&run_id).await.unwrap().unwrap();
    let count = |s: N| snap.nodes.iter().filter(|n| n.status == s).count();
    assert_eq!((count(N::Running), count(N::Ready)), (3, 5));
    h.probe.open("go");
    let outcome = wait(handle).await;
    assert_eq!(outcome.status, RunStatus::Completed);
    assert_eq!(h.probe.peak(), 3, "most attempts executing at once");
    assert_eq!(h.probe.total_executions(), 8);
    Report::load(&h.store, &wf, &run_id)
        .await
        .assert_invariants();
}

#[tokio::test(start_paused = true)]
async fn a_max_concurrency_of_one_runs_nodes_one_at_a_time() {
    let mut def = workflow(
        "serial",
        (0..5)
            .map(|i| node(&format!("n{i}")).cfg(json!({"sleep_ms": 10})))
            .collect(),
    );
    def.max_concurrency = Some(1);
    let (h, _) = check(
        def,
        no_inputs(),
        RunStatus::Completed,
        &[
            ("n0", N::Completed),
            ("n1", N::Completed),
            ("n2", N::Completed),
            ("n3", N::Completed),
            ("n4", N::Completed),
        ],
    )
    .await;
    assert_eq!(h.probe.peak(), 1, "most attempts executing at once");
}

#[tokio::test(start_paused = true)]
async fn the_engines_global_limit_holds_across_runs() {
    let h = Harness::with_config(EngineConfig {
        max_concurrent_nodes: 2,
        ..EngineConfig::default()
    });
    assert_eq!(h.engine.available_slots(), Some(2));
    let def = |id: &str| {
        workflow(
            id,
            (0..4)
                .map(|i| node(&format!("n{i}")).cfg(json!({"gate": "go"})))
                .collect(),
        )
    };
    let (_, first) = h.start(def("first"), no_inputs()).await;
    let (_, second) = h.start(def("second"), no_inputs()).await;
    crate::support::eventually("two attempts to run", || {
        let p = h.probe.clone();
        async move { p.running_now() == 2 }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(h.probe.total_executions(), 2);
    assert_eq!(h.engine.available_slots(), Some(0));
    h.probe.open("go");
    assert_eq!(wait(first).await.status, RunStatus::Completed);
    assert_eq!(wait(second).await.status, RunStatus::Completed);
    assert_eq!(h.probe.peak(), 2, "most attempts executing at once");
    assert_eq!(h.probe.total_executions(), 8);
    assert_eq!(h.engine.available_slots(), Some(2));
}

#[tokio::test(start_paused = true)]
async fn failed_attempts_are_retried_with_exponential_backoff() {
    let policy = RetryPolicy {
        max_attempts: 4,
        initial_delay_ms: 100,
        backoff: 2.0,
        max_delay_ms: 10_000,
        jitter: 0.0,
    };
    let (h, report) = check(
        workflow(
            "retry",
            vec![
                node("flaky")
                    .cfg(json!({"fail_attempts": 3}))
                    .retries(policy),
            ],
        ),
        no_inputs(),
        RunStatus::Completed,
        &[("flaky", N::Completed)],
    )
    .await;
    assert_eq!(
        report.trace(),
        [
            "workflow_started",
            "node_started:flaky",
            "node_retry:flaky",
            "node_started:flaky",
            "node_retry:flaky",
            "node_started:flaky",
            "node_retry:flaky",
            "node_started:flaky",
            "node_completed:flaky",
            "workflow_completed",
        ]
    );
    let started: Vec<(Option<u32>, Option<u32>)> = report
        .events_of(EventType::NodeStarted, Some("flaky"))
        .iter()
        .map(|e| (e.data.attempt, e.data.max_attempts))
        .collect();
    assert_eq!(
        started,
        [
            (Some(1), Some(4)),
            (Some(2), Some(4)),
            (Some(3), Some(4)),
            (Some(4), Some(4))
        ]
    );
    let retries: Vec<(Option<u32>, Option<u64>, String)> = report
        .events_of(EventType::NodeRetry, Some("flaky"))
        .iter()
        .map(|e| {
            (
                e.data.attempt,
                e.data.delay_ms,
                e.data.error.as_deref().unwrap_or_default().to_string(),
            )
        })
        .collect();
    assert_eq!(
        retries,
        [
            (Some(1), Some(100), "attempt 1 of flaky failed".to_string()),
            (Some(2), Some(200), "attempt 2 of flaky failed".to_string()),
            (Some(3), Some(400), "attempt 3 of flaky failed".to_string()),
        ]
    );
    // The engine really waits that long between attempts.
    let times = h.probe.start_times("flaky");
    for (k, want) in [100u64, 200, 400].into_iter().enumerate() {
        let gap = times[k + 1] - times[k];
        assert!(
            gap >= Duration::from_millis(want) && gap < Duration::from_millis(want + 20),
            "gap {k}: {gap:?}"
        );
    }
    let rec = report.node("flaky");
    assert_eq!((rec.attempt, rec.error), (4, None));
    assert_eq!(h.probe.executions("flaky"), 4);
    assert_eq!(
        report.events_of(EventType::NodeCompleted, Some("flaky"))[0]
            .data
            .attempt,
        Some(4)
    );
    // Every attempt carries the same idempotency key.
    let keys: Vec<String> = h
        .probe
        .contexts("flaky")
        .iter()
        .map(|c| c.idempotency_key())
        .collect();
    assert_eq!(keys, vec![format!("{}:flaky", report.run.run_id); 4]);
    let attempts: Vec<u32> = h
        .probe
        .contexts("flaky")
        .iter()
        .map(|c| c.attempt)
        .collect();
    assert_eq!(attempts, [1, 2, 3, 4]);
}

#[tokio::test(start_paused = true)]
async fn retry_delays_are_capped_and_jittered_within_bounds() {
    let policy = RetryPolicy {
        max_attempts: 5,
        initial_delay_ms: 100,
        backoff: 3.0,
        max_delay_ms: 500,
        jitter: 0.5,
    };
    let (_, report) = check(
        workflow(
            "jitter",
            vec![node("flaky").cfg(json!({"fail": true})).retries(policy)],
        ),
        no_inputs(),
        RunStatus::Failed,
        &[("flaky", N::Failed)],
    )
    .await;
    let delays: Vec<u64> = report
        .events_of(EventType::NodeRetry, Some("flaky"))
        .iter()
        .map(|e| e.data.delay_ms.unwrap())
        .collect();
    assert_eq!(delays.len(), 4);
    // Base delays 100, 300, 500 (capped), 500; jitter scales them by [0.5, 1.5], capped at 500.
    for (d, base) in delays.iter().zip([100u64, 300, 500, 500]) {
        assert!(
            *d >= base / 2 && *d <= (base * 3 / 2).min(500),
            "{d} for base {base}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_node_fails_once_its_attempts_are_exhausted() {
    let (h, report) = check(
        workflow(
            "exhausted",
            vec![
                node("bad")
                    .cfg(json!({"fail": true}))
                    .retries(RetryPolicy::fixed(3, 10)),
                node("after").after(["bad"]),
            ],
        ),
        no_inputs(),
        RunStatus::Failed,
        &[("bad", N::Failed), ("after", N::Skipped)],
    )
    .await;
    assert_eq!(h.probe.executions("bad"), 3);
    assert_eq!(h.probe.executions("after"), 0);
    assert_eq!(report.count(EventType::NodeRetry, Some("bad")), 2);
    let failed = report.events_of(EventType::NodeFailed, Some("bad"))[0];
    assert_eq!(failed.data.error.as_deref(), Some("bad failed"));
    assert_eq!(failed.data.extra["attempts"], json!(3));
    let rec = report.node("bad");
    assert_eq!((rec.attempt, rec.error.as_deref()), (3, Some("bad failed")));
    let run_failed = report.events_of(EventType::WorkflowFailed, None)[0];
    assert_eq!(run_failed.data.extra["failed_node"], json!("bad"));
    assert_eq!(run_failed.data.extra["failed_nodes"], json!(["bad"]));
    assert_eq!(run_failed.data.error.as_deref(), Some("bad failed"));
    assert!(report.run.error.is_some());
}

#[tokio::test(start_paused = true)]
async fn a_non_retryable_error_is_not_retried() {
    let (h, report) = check(
        workflow(
            "permanent",
            vec![
                node("bad")
                    .cfg(json!({"permanent": true}))
                    .retries(RetryPolicy::fixed(5, 10)),
            ],
        ),
        no_inputs(),
        RunStatus::Failed,
        &[("bad", N::Failed)],
    )
    .await;
    assert_eq!(h.probe.executions("bad"), 1);
    assert_eq!(report.count(EventType::NodeRetry, None), 0);
    assert_eq!(report.count(EventType::NodeRetry, Some("bad")), 0);
    assert_eq!(
        report.node("bad").error.as_deref(),
        Some("bad failed for good")
    );
}

#[tokio::test(start_paused = true)]
async fn a_timeout_fails_the_attempt_and_cancels_its_token() {
    let (h, report) = check(
        with_policy(
            workflow(
                "timeouts",
                vec![
                    node("slow")
                        .cfg(json!({"sleep_ms": 10_000}))
                        .timeout(50)
                        .retries(RetryPolicy::fixed(2, 10)),
                    node("calm").cfg(json!({"sleep_ms": 300})),
                    node("quick").cfg(json!({"sleep_ms": 10})).timeout(1000),
                ],
            ),
            FailurePolicy::Continue,
        ),
        no_inputs(),
        RunStatus::Failed,
        &[
            ("slow", N::Failed),
            ("calm", N::Completed),
            ("quick", N::Completed),
        ],
    )
    .await;
    assert_eq!(h.probe.executions("slow"), 2);
    assert_eq!(
        report.node("slow").error.as_deref(),
        Some("timed out after 50 ms")
    );
    assert_eq!(report.count(EventType::NodeRetry, Some("slow")), 1);
    // Each timed-out attempt's token was cancelled; nobody else's was.
    for ctx in h.probe.contexts("slow") {
        assert!(ctx.cancellation.is_cancelled(), "attempt {}", ctx.attempt);
    }
    assert!(!h.probe.contexts("calm")[0].cancellation.is_cancelled());
    assert!(!h.probe.contexts("quick")[0].cancellation.is_cancelled());
    // The attempt ends at its deadline, not when the executor would have.
    let times = h.probe.start_times("slow");
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_millis(60) && gap < Duration::from_millis(80),
        "{gap:?}"
    );
}

#[tokio::test]
async fn a_panicking_executor_fails_its_node() {
    let (h, report) = check(
        with_policy(
            workflow(
                "panic",
                vec![
                    node("p").cfg(json!({"panic": true})),
                    node("after").after(["p"]),
                    node("other"),
                ],
            ),
            FailurePolicy::Continue,
        ),
        no_inputs(),
        RunStatus::Failed,
        &[
            ("p", N::Failed),
            ("after", N::Skipped),
            ("other", N::Completed),
        ],
    )
    .await;
    let error = report.node("p").error.unwrap();
    assert!(
        error.contains("panicked") && error.contains("kaboom in p"),
        "{error}"
    );
    assert_eq!(h.probe.executions("p"), 1);
}

#[tokio::test]
async fn a_panicking_inline_executor_fails_its_node() {
    let mut p = node("p").cfg(json!({"panic": true}));
    p.executor = Some(INLINE.into());
    let (_, report) = check(
        workflow("panic_inline", vec![p]),
        no_inputs(),
        RunStatus::Failed,
        &[("p", N::Failed)],
    )
    .await;
    assert!(report.node("p").error.unwrap().contains("kaboom in p"));
}

#[tokio::test]
async fn an_output_that_is_not_an_object_fails_the_node() {
    for (output, kind) in [
        (json!(42), "a number"),
        (json!("done"), "a string"),
        (json!([1, 2]), "an array"),
        (Value::Null, "null"),
        (json!(true), "a boolean"),
    ] {
        let (h, report) = check(
            workflow(
                "not_an_object",
                vec![
                    node("odd")
                        .cfg(json!({"output": output}))
                        .retries(RetryPolicy::fixed(3, 1)),
                ],
            ),
            no_inputs(),
            RunStatus::Failed,
            &[("odd", N::Failed)],
        )
        .await;
        let error = report.node("odd").error.unwrap();
        assert!(
            error.contains(kind) && error.contains("JSON object"),
            "{error}"
        );
        // Retrying cannot change what the executor returns.
        assert_eq!(h.probe.executions("odd"), 1, "{kind}");
        assert_eq!(report.node("odd").output, None);
    }
}

#[tokio::test]
async fn an_unregistered_executor_fails_the_node_without_retries() {
    let def = workflow(
        "ghostly",
        vec![NodeDefinition::new("g", "ghost").retries(RetryPolicy::fixed(3, 1))],
    );
    let h = Harness::new();
    // Compiled without a registry, so validation does not catch it.
    let wf = Arc::new(Workflow::compile(def, None).unwrap());
    let handle = h
        .engine
        .start(wf.clone(), no_inputs(), StartOptions::default())
        .await
        .unwrap();
    let run_id = handle.run_id().to_string();
    assert_eq!(wait(handle).await.status, RunStatus::Failed);
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(
        report.node("g").error.as_deref(),
        Some("no executor registered as `ghost`")
    );
    assert_eq!(report.count(EventType::NodeStarted, Some("g")), 1);
}

#[tokio::test]
async fn conditions_run_skip_or_fail_a_node() {
    let (h, report) = check(
        with_policy(
            workflow(
                "conditions",
                vec![
                    node("a").cfg(json!({"output": {"approved": true, "score": 0.9}})),
                    node("yes")
                        .after(["a"])
                        .when("outputs.a.approved == true && inputs.env == 'prod'"),
                    node("no").after(["a"]).when("outputs.a.score < 0.5"),
                    node("after_no").after(["no"]),
                    node("broken")
                        .after(["a"])
                        .when("outputs.ghost.flag == true"),
                    node("not_bool").after(["a"]).when("outputs.a.score"),
                    node("inputs_only").when("inputs.env == 'prod'"),
                ],
            ),
            FailurePolicy::Continue,
        ),
        json!({"env": "prod"}),
        RunStatus::Failed,
        &[
            ("a", N::Completed),
            ("yes", N::Completed),
            ("no", N::Skipped),
            ("after_no", N::Skipped),
            ("broken", N::Failed),
            ("not_bool", N::Failed),
            ("inputs_only", N::Completed),
        ],
    )
    .await;
    // A false condition skips with a reason naming it.
    let reason = report.node("no").reason.unwrap();
    assert!(reason.contains("outputs.a.score < 0.5"), "{reason}");
    let skipped = report.events_of(EventType::NodeSkipped, Some("no"))[0];
    assert_eq!(skipped.data.reason.as_deref(), Some(&*reason));
    // An error fails the node with the message; the node never runs.
    for id in ["no", "after_no", "broken", "not_bool"] {
        assert_eq!(h.probe.executions(id), 0, "{id}");
        assert_eq!(report.count(EventType::NodeStarted, Some(id)), 0, "{id}");
    }
    let error = report.node("broken").error.unwrap();
    assert!(error.contains("outputs.ghost.flag == true"), "{error}");
    assert!(
        report
            .node("not_bool")
            .error
            .unwrap()
            .contains("not a boolean")
    );
    assert_eq!(h.probe.executions("yes"), 1);
}

#[tokio::test(start_paused = true)]
async fn fail_fast_lets_running_nodes_finish_and_starts_nothing_new() {
    let (h, report) = check(
        workflow(
            "fail_fast",
            vec![
                node("bad").cfg(json!({"sleep_ms": 10, "permanent": true})),
                node("slow").cfg(json!({"sleep_ms": 100})),
                node("after_slow").after(["slow"]),
                node("after_bad").after(["bad"]),
                node("cleanup").after(["bad"]).rule("all_done"),
            ],
        ),
        no_inputs(),
        RunStatus::Failed,
        &[
            ("bad", N::Failed),
            ("slow", N::Completed),
            ("after_slow", N::Skipped),
            ("after_bad", N::Skipped),
            ("cleanup", N::Skipped),
        ],
    )
    .await;
    assert_eq!(h.probe.executions("after_slow"), 0);
    assert_eq!(h.probe.executions("cleanup"), 0);
    assert_eq!(
        report.node("after_slow").reason.as_deref(),
        Some("the run failed fast")
    );
    assert_eq!(
        report.node("after_bad").reason.as_deref(),
        Some("an upstream node failed")
    );
    // Nothing starts after the failure.
    let failed_at = report.seq(EventType::NodeFailed, Some("bad"));
    assert!(
        report
            .events_of(EventType::NodeStarted, Some("after_slow"))
            .is_empty()
    );
    for e in &report.events {
        if e.kind == EventType::NodeStarted {
            assert!(e.seq < failed_at, "{:?}", report.trace());
        }
    }
    // The running node finished after the failure and kept its result.
    assert!(report.seq(EventType::NodeCompleted, Some("slow")) > failed_at);
    assert_eq!(report.output("slow")["value"], json!(1));
}

#[tokio::test(start_paused = true)]
async fn failing_fast_does_not_wait_out_a_retry_backoff() {
    // `flaky` failed its first attempt and waits 5 s to retry when `bad` fails for good. The
    // retry will never start (the run is failing fast), so the run ends now, not 5 s later.
    let h = Harness::new();
    let began = tokio::time::Instant::now();
    let report = h
        .run(
            workflow(
                "impatient",
                vec![
                    node("bad").cfg(json!({"sleep_ms": 10, "permanent": true})),
                    node("flaky")
                        .cfg(json!({"fail": true}))
                        .retries(RetryPolicy::fixed(3, 5_000)),
                ],
            ),
            no_inputs(),
        )
        .await;
    let took = began.elapsed();
    report.assert_invariants();
    assert_eq!(report.run.status, RunStatus::Failed);
    assert_eq!(h.probe.executions("flaky"), 1);
    assert!(report.status("flaky").is_terminal());
    assert!(
        took < Duration::from_secs(1),
        "the failed run ended only after {took:?}: {:?}",
        report.trace()
    );
}

#[tokio::test(start_paused = true)]
async fn continue_runs_every_branch_still_reachable() {
    let (h, _) = check(
        with_policy(
            workflow(
                "continue",
                vec![
                    node("bad").cfg(json!({"sleep_ms": 10, "permanent": true})),
                    node("slow").cfg(json!({"sleep_ms": 100})),
                    node("after_slow").after(["slow"]),
                    node("after_bad").after(["bad"]),
                    node("cleanup").after(["bad"]).rule("all_done"),
                ],
            ),
            FailurePolicy::Continue,
        ),
        no_inputs(),
        RunStatus::Failed,
        &[
            ("bad", N::Failed),
            ("slow", N::Completed),
            ("after_slow", N::Completed),
            ("after_bad", N::Skipped),
            ("cleanup", N::Completed),
        ],
    )
    .await;
    assert_eq!(h.probe.executions("after_slow"), 1);
    assert_eq!(h.probe.executions("after_bad"), 0);
}

#[tokio::test]
async fn a_failed_node_fails_the_run_even_when_its_failure_is_handled() {
    // The original reported failed phases as completed; here a failure always fails the run.
    check(
        with_policy(
            workflow(
                "handled",
                vec![
                    node("bad").cfg(json!({"permanent": true})),
                    node("on_failure").after(["bad"]).rule("one_failed"),
                    node("finally")
                        .after(["bad", "on_failure"])
                        .rule("all_done"),
                ],
            ),
            FailurePolicy::Continue,
        ),
        no_inputs(),
        RunStatus::Failed,
        &[
            ("bad", N::Failed),
            ("on_failure", N::Completed),
            ("finally", N::Completed),
        ],
    )
    .await;
}

#[tokio::test]
async fn a_node_whose_rule_is_met_twice_in_one_turn_runs_once() {
    // Two inline dependencies finish in the same turn of the run's driver; `join` may run as
    // soon as one of them succeeds, and must run exactly once.
    let inline = |id: &str| {
        let mut n = node(id);
        n.executor = Some(INLINE.into());
        n
    };
    for rule in ["one_success", "always"] {
        let (h, report) = check(
            workflow(
                "twice",
                vec![
                    inline("a"),
                    inline("b"),
                    node("join").after(["a", "b"]).rule(rule),
                ],
            ),
            no_inputs(),
            RunStatus::Completed,
            &[
                ("a", N::Completed),
                ("b", N::Completed),
                ("join", N::Completed),
            ],
        )
        .await;
        assert_eq!(
            report.count(EventType::NodeStarted, Some("join")),
            1,
            "{rule}: {:?}",
            report.trace()
        );
        assert_eq!(h.probe.executions("join"), 1, "{rule}");
    }
}

#[tokio::test]
async fn a_node_released_by_a_skip_at_the_start_runs_once() {
    // `gate` is skipped while the run starts; that releases `next` during the same first pass
    // over the nodes, which must not start it twice.
    for rule in ["none_failed", "all_done", "always"] {
        let (h, report) = check(
            workflow(
                "released",
                vec![
                    node("gate").when("inputs.go == true"),
                    node("next").after(["gate"]).rule(rule),
                ],
            ),
            json!({"go": false}),
            RunStatus::Completed,
            &[("gate", N::Skipped), ("next", N::Completed)],
        )
        .await;
        assert_eq!(
            report.count(EventType::NodeStarted, Some("next")),
            1,
            "{rule}: {:?}",
            report.trace()
        );
        assert_eq!(h.probe.executions("next"), 1, "{rule}");
        assert_eq!(report.node("next").attempt, 1, "{rule}");
    }
}

/// A memory store that counts the batches written through it.
struct CountingStore {
    inner: maestro_dag::MemoryStore,
    writes: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl maestro_dag::RunStore for CountingStore {
    async fn create_run(
        &self,
        run: maestro_dag::store::NewRun,
    ) -> Result<maestro_dag::store::CreateRun, maestro_dag::StoreError> {
        self.inner.create_run(run).await
    }
    async fn write(
        &self,
        batch: &mut maestro_dag::store::WriteBatch,
    ) -> Result<(), maestro_dag::StoreError> {
        self.writes
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.inner.write(batch).await
    }
    async fn load_run(
        &self,
        run_id: &str,
    ) -> Result<Option<maestro_dag::store::RunSnapshot>, maestro_dag::StoreError> {
        self.inner.load_run(run_id).await
    }
    async fn list_runs(
        &self,
        filter: &maestro_dag::store::RunFilter,
    ) -> Result<Vec<maestro_dag::RunRecord>, maestro_dag::StoreError> {
        self.inner.list_runs(filter).await
    }
    async fn events(
        &self,
        run_id: &str,
        after: u64,
        limit: usize,
    ) -> Result<Vec<maestro_dag::Event>, maestro_dag::StoreError> {
        self.inner.events(run_id, after, limit).await
    }
}

#[tokio::test]
async fn synchronous_nodes_chain_within_a_turn_and_keep_every_invariant() {
    // A long chain of nodes that finish synchronously, with asynchronous nodes and a retried
    // failure in the middle: the driver settles runs of synchronous attempts before its write
    // (so the whole chain takes a few dozen writes, not one per node), and hands the others to
    // tasks after it.
    let probe = std::sync::Arc::new(crate::support::Probe::default());
    let store = std::sync::Arc::new(CountingStore {
        inner: maestro_dag::MemoryStore::new(),
        writes: std::sync::atomic::AtomicUsize::new(0),
    });
    let engine = maestro_dag::Engine::new(store.clone(), crate::support::registry(&probe));
    let n = 3000;
    let nodes = (0..n)
        .map(|i| {
            let mut d = node(&format!("n{i}"));
            if i > 0 {
                d = d.after([format!("n{}", i - 1)]);
            }
            d.executor = Some(
                match i % 500 {
                    250 => SCRIPT,
                    _ => NOW,
                }
                .into(),
            );
            if i == 1234 {
                d = d
                    .cfg(json!({"fail_attempts": 1}))
                    .retries(maestro_dag::RetryPolicy {
                        max_attempts: 2,
                        initial_delay_ms: 1,
                        ..maestro_dag::RetryPolicy::default()
                    });
            }
            d
        })
        .collect();
    let wf = std::sync::Arc::new(
        maestro_dag::Workflow::compile(workflow("sync_chain", nodes), Some(engine.executors()))
            .unwrap(),
    );
    let handle = engine
        .start(
            wf.clone(),
            no_inputs(),
            maestro_dag::StartOptions::default(),
        )
        .await
        .unwrap();
    let run_id = handle.run_id().to_string();
    wait(handle).await;
    let report = Report::load(store.as_ref(), &wf, &run_id).await;
    assert_eq!(report.run.status, RunStatus::Completed);
    report.assert_invariants();
    assert_eq!(probe.total_executions(), n + 1, "one retry");
    assert_eq!(probe.executions("n1234"), 2);
    // One write per node would be 6,000 and more; the synchronous stretches are batched (about
    // 500 nodes a write), broken by the 6 asynchronous nodes and the retry's wait.
    let writes = store.writes.load(std::sync::atomic::Ordering::SeqCst);
    assert!(writes < 100, "{writes} writes for {n} nodes");
    // Each node's output carries the whole chain's sum: every dependency output was seen.
    let last = report.node(&format!("n{}", n - 1));
    assert_eq!(last.output.as_deref().unwrap()["value"], json!(n));
}
