//! Control of a run (DESIGN §3): cancel, pause and resume, human review, retry from the failed
//! nodes, idempotent starts, and the 409-style refusals of impossible transitions.

use std::collections::BTreeSet;

use maestro_dag::{
    EngineError, EventType, FailurePolicy, NodeStatus as N, RunStatus, RunStore, StartOptions,
};
use serde_json::{Value, json};

use crate::support::{Harness, NodeExt, Report, no_inputs, node, review, wait, workflow};

fn is_invalid_transition(r: Result<(), EngineError>) -> bool {
    matches!(&r, Err(e @ EngineError::InvalidTransition(_)) if e.code() == "invalid_transition")
}

#[tokio::test]
async fn cancel_stops_a_run_mid_way() {
    let h = Harness::new();
    let def = workflow(
        "cancel",
        vec![
            node("quick"),
            node("a").cfg(json!({"gate": "hold"})),
            node("b").cfg(json!({"gate": "hold"})),
            node("c").after(["a"]),
            node("d").after(["c", "quick"]),
        ],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("a", 1).await;
    h.until_executed("b", 1).await;
    h.until_node(&run_id, "quick", N::Completed).await;

    h.engine.cancel(&run_id).await.expect("cancel");
    let outcome = wait(handle).await;
    assert_eq!(outcome.status, RunStatus::Cancelled);
    assert_eq!((outcome.completed, outcome.cancelled), (1, 4));

    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(report.run.status, RunStatus::Cancelled);
    assert!(report.run.error.is_some());
    assert_eq!(report.status("quick"), N::Completed);
    for id in ["a", "b", "c", "d"] {
        assert_eq!(report.status(id), N::Cancelled, "{id}");
        assert_eq!(report.node(id).reason.as_deref(), Some("run cancelled"));
    }
    // Running attempts were told through their token, and nothing new started.
    for id in ["a", "b"] {
        assert!(h.probe.contexts(id)[0].cancellation.is_cancelled(), "{id}");
    }
    assert_eq!(h.probe.executions("c"), 0);
    assert_eq!(h.probe.executions("d"), 0);
    // One event, last.
    assert_eq!(report.count(EventType::WorkflowCancelled, None), 1);
    let last = report.events.last().unwrap();
    assert_eq!(last.kind, EventType::WorkflowCancelled);
    let cancelled: BTreeSet<&str> = last.data.extra["cancelled_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(cancelled, BTreeSet::from(["a", "b", "c", "d"]));
    // The executors' futures are gone.
    crate::support::eventually("the cancelled attempts to stop", || {
        let p = h.probe.clone();
        async move { p.running_now() == 0 }
    })
    .await;
    // A cancelled run cannot be cancelled again.
    assert!(h.engine.cancel(&run_id).await.is_err());
}

#[tokio::test(start_paused = true)]
async fn cancel_during_a_retry_backoff_cancels_the_node() {
    let h = Harness::new();
    let def = workflow(
        "cancel_backoff",
        vec![
            node("flaky")
                .cfg(json!({"fail": true}))
                .retries(maestro_dag::RetryPolicy::fixed(3, 60_000)),
        ],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("flaky", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    h.engine.cancel(&run_id).await.unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Cancelled);
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(report.status("flaky"), N::Cancelled);
    assert_eq!(h.probe.executions("flaky"), 1);
}

#[tokio::test(start_paused = true)]
async fn pause_holds_new_nodes_until_resumed() {
    let h = Harness::new();
    let def = workflow(
        "pause",
        vec![
            node("a").cfg(json!({"gate": "a"})),
            node("b").after(["a"]),
            node("c").after(["b"]),
        ],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("a", 1).await;

    h.engine.pause(&run_id).await.expect("pause");
    h.until_run(&run_id, RunStatus::Paused).await;
    // The running node finishes while paused; nothing new starts.
    h.probe.open("a");
    h.until_node(&run_id, "a", N::Completed).await;
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    assert_eq!(h.probe.executions("b"), 0);
    let snap = h.store.load_run(&run_id).await.unwrap().unwrap();
    assert_eq!(snap.run.status, RunStatus::Paused);
    let b = snap.nodes.iter().find(|n| &*n.node_id == "b").unwrap();
    assert_eq!(b.status, N::Ready);
    assert!(handle.outcome().is_none(), "a paused run has not ended");

    h.engine.resume(&run_id).await.expect("resume");
    let outcome = wait(handle).await;
    assert_eq!(outcome.status, RunStatus::Completed);
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(
        report.trace(),
        [
            "workflow_started",
            "node_started:a",
            "workflow_paused",
            "node_completed:a",
            "workflow_resumed",
            "node_started:b",
            "node_completed:b",
            "node_started:c",
            "node_completed:c",
            "workflow_completed",
        ]
    );
}

#[tokio::test]
async fn a_paused_run_can_be_cancelled() {
    let h = Harness::new();
    let def = workflow(
        "pause_cancel",
        vec![node("a").cfg(json!({"gate": "a"})), node("b").after(["a"])],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("a", 1).await;
    h.engine.pause(&run_id).await.unwrap();
    h.engine.cancel(&run_id).await.unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Cancelled);
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(report.status("a"), N::Cancelled);
    assert_eq!(report.status("b"), N::Cancelled);
    assert_eq!(h.probe.executions("b"), 0);
}

#[tokio::test]
async fn impossible_transitions_are_refused() {
    let h = Harness::new();
    let def = workflow(
        "transitions",
        vec![
            node("a").cfg(json!({"gate": "a"})),
            review("approve_me").after(["a"]),
            node("c").after(["approve_me"]).cfg(json!({"gate": "c"})),
        ],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("a", 1).await;
    let before = h.store.events(&run_id, 0, usize::MAX).await.unwrap().len();

    // A running run cannot be resumed; a node that does not wait cannot be approved.
    assert!(is_invalid_transition(h.engine.resume(&run_id).await));
    assert!(is_invalid_transition(
        h.engine.approve(&run_id, "approve_me", None).await
    ));
    assert!(is_invalid_transition(
        h.engine.reject(&run_id, "a", None).await
    ));
    // An active run cannot be retried.
    assert!(matches!(
        h.engine.retry(wf.clone(), &run_id, 0).await,
        Err(EngineError::InvalidTransition(_))
    ));
    // A paused run cannot be paused again.
    h.engine.pause(&run_id).await.unwrap();
    assert!(is_invalid_transition(h.engine.pause(&run_id).await));
    h.engine.resume(&run_id).await.unwrap();
    // Unknown things are not found.
    assert!(matches!(
        h.engine.approve(&run_id, "ghost", None).await,
        Err(EngineError::NodeNotFound { .. })
    ));
    assert!(matches!(
        h.engine.cancel("no-such-run").await,
        Err(EngineError::RunNotFound(_))
    ));
    assert_eq!(
        h.engine.pause("no-such-run").await.unwrap_err().code(),
        "run_not_found"
    );
    // Refusals leave no trace in the log (paused + resumed are the only new events).
    let after = h.store.events(&run_id, 0, usize::MAX).await.unwrap();
    assert_eq!(after.len(), before + 2);

    // Approving twice: the second is refused.
    h.probe.open("a");
    h.until_node(&run_id, "approve_me", N::WaitingApproval)
        .await;
    h.engine.approve(&run_id, "approve_me", None).await.unwrap();
    assert!(is_invalid_transition(
        h.engine.approve(&run_id, "approve_me", None).await
    ));
    assert!(is_invalid_transition(
        h.engine.reject(&run_id, "approve_me", None).await
    ));
    h.probe.open("c");
    assert_eq!(wait(handle).await.status, RunStatus::Completed);

    // A completed run cannot be retried.
    assert!(matches!(
        h.engine.retry(wf, &run_id, 0).await,
        Err(EngineError::InvalidTransition(_))
    ));
}

#[tokio::test]
async fn human_review_waits_for_approval_and_merges_the_output() {
    let h = Harness::new();
    let def = workflow(
        "review",
        vec![
            node("draft"),
            review("sign_off").after(["draft"]),
            node("publish").after(["sign_off"]),
        ],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_node(&run_id, "sign_off", N::WaitingApproval).await;
    // Waiting for a person is not the end of the run.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    assert!(handle.outcome().is_none());
    assert_eq!(
        h.store.load_run(&run_id).await.unwrap().unwrap().run.status,
        RunStatus::Running
    );
    h.engine
        .approve(
            &run_id,
            "sign_off",
            Some(json!({"comment": "lgtm", "by": "ana"})),
        )
        .await
        .expect("approve");
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    let approved = json!({"approved": true, "comment": "lgtm", "by": "ana"});
    assert_eq!(report.output("sign_off"), approved);
    assert_eq!(
        h.probe.contexts("publish")[0].dependency_output("sign_off"),
        Some(&approved)
    );
    assert_eq!(
        h.probe.executions("sign_off"),
        0,
        "nothing executes a review"
    );
    assert_eq!(
        report.count(EventType::NodeWaitingApproval, Some("sign_off")),
        1
    );
    assert_eq!(
        report.trace(),
        [
            "workflow_started",
            "node_started:draft",
            "node_completed:draft",
            "node_waiting_approval:sign_off",
            "node_completed:sign_off",
            "node_started:publish",
            "node_completed:publish",
            "workflow_completed",
        ]
    );
}

#[tokio::test]
async fn approving_without_data_gives_approved_true() {
    let h = Harness::new();
    let (wf, handle) = h
        .start(workflow("review", vec![review("ok")]), no_inputs())
        .await;
    let run_id = handle.run_id().to_string();
    h.until_node(&run_id, "ok", N::WaitingApproval).await;
    h.engine.approve(&run_id, "ok", None).await.unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    let report = Report::load(&h.store, &wf, &run_id).await;
    assert_eq!(report.output("ok"), json!({"approved": true}));
}

#[tokio::test]
async fn human_review_rejection_fails_the_node_and_the_run() {
    let h = Harness::new();
    let def = workflow(
        "review",
        vec![review("sign_off"), node("publish").after(["sign_off"])],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_node(&run_id, "sign_off", N::WaitingApproval).await;
    h.engine
        .reject(&run_id, "sign_off", Some("not ready".into()))
        .await
        .expect("reject");
    assert_eq!(wait(handle).await.status, RunStatus::Failed);
    let report = Report::load(&h.store, &wf, &run_id).await;
    report.assert_invariants();
    assert_eq!(report.status("sign_off"), N::Failed);
    assert_eq!(
        report.node("sign_off").error.as_deref(),
        Some("rejected: not ready")
    );
    assert_eq!(report.status("publish"), N::Skipped);
    assert_eq!(h.probe.executions("publish"), 0);
}

/// a → b (fails while the flag `broken` is set) → c; d alone; e after a.
fn half_broken(policy: FailurePolicy) -> maestro_dag::WorkflowDefinition {
    let mut def = workflow(
        "half_broken",
        vec![
            node("a"),
            node("b").after(["a"]).cfg(json!({"fail_if": "broken"})),
            node("c").after(["b"]),
            node("d").cfg(json!({"sleep_ms": 20})),
            node("e").after(["d"]),
        ],
    );
    def.failure_policy = policy;
    def
}

#[tokio::test]
async fn retry_reruns_failed_nodes_and_keeps_completed_work() {
    let h = Harness::new();
    h.probe.set_flag("broken", true);
    let (wf, handle) = h
        .start(half_broken(FailurePolicy::Continue), no_inputs())
        .await;
    let run_id = handle.run_id().to_string();
    assert_eq!(wait(handle).await.status, RunStatus::Failed);
    let first = Report::load(&h.store, &wf, &run_id).await;
    first.assert_invariants();
    assert_eq!(first.status("b"), N::Failed);
    assert_eq!(first.status("c"), N::Skipped);
    let a_output = first.output("a");

    h.probe.set_flag("broken", false);
    let handle = h.engine.retry(wf.clone(), &run_id, 0).await.expect("retry");
    assert_eq!(handle.run_id(), run_id);
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    let second = Report::load(&h.store, &wf, &run_id).await;
    crate::support::assert_gap_free(&second.events);
    for id in ["a", "b", "c", "d", "e"] {
        assert_eq!(second.status(id), N::Completed, "{id}");
    }
    // Completed nodes are not executed again and keep their outputs; the failed node and what
    // is downstream of it run again.
    let runs: Vec<(String, u32)> = h.probe.all_executions().into_iter().collect();
    assert_eq!(
        runs,
        [
            ("a".to_string(), 1),
            ("b".to_string(), 2),
            ("c".to_string(), 1),
            ("d".to_string(), 1),
            ("e".to_string(), 1)
        ]
    );
    assert_eq!(second.output("a"), a_output);
    assert_eq!(second.node("a"), first.node("a"));
    assert_eq!(second.node("d"), first.node("d"));
    assert_eq!(second.output("c")["value"], json!(3));
    assert_eq!(
        second.node("b").attempt,
        1,
        "a retried run counts attempts afresh"
    );
    // The log goes on: a second start marked as a retry, then the run's new end.
    let restarts = second.events_of(EventType::WorkflowStarted, None);
    assert_eq!(restarts.len(), 2);
    assert_eq!(restarts[1].data.extra["retry"], json!(true));
    let reset: BTreeSet<&str> = restarts[1].data.extra["reset_nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(reset, BTreeSet::from(["b", "c"]));
    assert_eq!(
        second.events.last().unwrap().kind,
        EventType::WorkflowCompleted
    );
    assert_eq!(second.count(EventType::WorkflowFailed, None), 1);
    assert_eq!(second.run.status, RunStatus::Completed);
    assert_eq!(second.run.error, None);
}

#[tokio::test(start_paused = true)]
async fn retry_after_failing_fast_also_runs_the_nodes_it_skipped() {
    let h = Harness::new();
    h.probe.set_flag("broken", true);
    let (wf, handle) = h
        .start(half_broken(FailurePolicy::FailFast), no_inputs())
        .await;
    let run_id = handle.run_id().to_string();
    assert_eq!(wait(handle).await.status, RunStatus::Failed);
    let first = Report::load(&h.store, &wf, &run_id).await;
    first.assert_invariants();
    // d was running when b failed and finished; e was never started.
    assert_eq!(first.status("d"), N::Completed);
    assert_eq!(first.status("e"), N::Skipped);

    h.probe.set_flag("broken", false);
    let handle = h.engine.retry(wf.clone(), &run_id, 0).await.unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    let runs: Vec<u32> = ["a", "b", "c", "d", "e"]
        .iter()
        .map(|id| h.probe.executions(id))
        .collect();
    assert_eq!(runs, [1, 2, 1, 1, 1]);
}

#[tokio::test]
async fn a_cancelled_run_can_be_retried() {
    let h = Harness::new();
    let def = workflow(
        "cancel_then_retry",
        vec![
            node("a"),
            node("b").after(["a"]).cfg(json!({"gate": "b"})),
            node("c").after(["b"]),
        ],
    );
    let (wf, handle) = h.start(def, no_inputs()).await;
    let run_id = handle.run_id().to_string();
    h.until_executed("b", 1).await;
    h.engine.cancel(&run_id).await.unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Cancelled);
    h.probe.open("b");
    let handle = h.engine.retry(wf.clone(), &run_id, 0).await.unwrap();
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    assert_eq!(
        (
            h.probe.executions("a"),
            h.probe.executions("b"),
            h.probe.executions("c")
        ),
        (1, 2, 1)
    );
}

#[tokio::test]
async fn an_idempotency_key_starts_at_most_one_run() {
    let h = Harness::new();
    let def = || workflow("idem", vec![node("only").cfg(json!({"gate": "go"}))]);
    let wf = h.compile(def());
    let opts = |key: &str| StartOptions {
        idempotency_key: Some(key.into()),
        ..StartOptions::default()
    };
    let first = h
        .engine
        .start(wf.clone(), json!({"n": 1}), opts("k1"))
        .await
        .unwrap();
    assert!(first.created());
    let again = h
        .engine
        .start(wf.clone(), json!({"n": 2}), opts("k1"))
        .await
        .unwrap();
    assert!(!again.created());
    assert_eq!(again.run_id(), first.run_id());
    h.until_executed("only", 1).await;
    h.probe.open("go");
    let (a, b) = (wait(first.clone()).await, wait(again).await);
    assert_eq!(a, b);
    assert_eq!(a.status, RunStatus::Completed);
    assert_eq!(h.probe.executions("only"), 1);
    // After the run ended, the key still names it.
    let late = h
        .engine
        .start(wf.clone(), json!({}), opts("k1"))
        .await
        .unwrap();
    assert!(!late.created());
    assert_eq!(late.run_id(), first.run_id());
    assert_eq!(late.outcome().map(|o| o.status), Some(RunStatus::Completed));
    // The first run's inputs stand.
    let snap = h.store.load_run(first.run_id()).await.unwrap().unwrap();
    assert_eq!(*snap.run.inputs, json!({"n": 1}));
    assert_eq!(snap.run.idempotency_key.as_deref(), Some("k1"));
    // Another key is another run.
    let other = h.engine.start(wf, Value::Null, opts("k2")).await.unwrap();
    assert!(other.created());
    assert_ne!(other.run_id(), first.run_id());
    assert_eq!(wait(other).await.status, RunStatus::Completed);
}

#[tokio::test]
async fn a_run_id_can_be_chosen_but_not_reused() {
    let h = Harness::new();
    let wf = h.compile(workflow("named", vec![node("only")]));
    let opts = StartOptions {
        run_id: Some("my-run".into()),
        ..StartOptions::default()
    };
    let handle = h
        .engine
        .start(wf.clone(), no_inputs(), opts.clone())
        .await
        .unwrap();
    assert_eq!(handle.run_id(), "my-run");
    assert_eq!(wait(handle).await.status, RunStatus::Completed);
    let again = h.engine.start(wf, no_inputs(), opts).await;
    assert_eq!(again.unwrap_err().code(), "conflict");
}
