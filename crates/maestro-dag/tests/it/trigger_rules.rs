//! Trigger rules end to end (DESIGN §2, Airflow's meanings): each rule against upstream nodes
//! that succeed, fail or are skipped; skip propagation; rules that need not wait for everyone.

use maestro_dag::{EventType, FailurePolicy, NodeStatus as N, RunStatus};
use serde_json::json;

use crate::support::{NodeExt, check, no_inputs, node, workflow};

/// Upstream outcomes: `Done` completes, `Fail` fails, `Skip` is skipped by its condition.
#[derive(Clone, Copy, Debug)]
enum Up {
    Done,
    Fail,
    Skip,
}

/// A `target` with `rule` after upstream nodes with the given outcomes (policy `continue`, so a
/// failure stops nothing) ends `want`; so do the upstream nodes, and the run fails exactly when
/// some node failed. The upstream nodes hang off a common `src`, so that they settle while the
/// run is under way rather than while it starts, and settle one at a time, in order.
async fn check_rule(rule: &str, upstream: &[Up], want: N) {
    let mut nodes = vec![node("src")];
    let mut ids = Vec::new();
    let mut expected = vec![("src".to_string(), N::Completed)];
    for (k, up) in upstream.iter().enumerate() {
        let id = format!("up{k}");
        let (n, status) = match up {
            Up::Done => (node(&id), N::Completed),
            Up::Fail => (node(&id).cfg(json!({"permanent": true})), N::Failed),
            Up::Skip => (node(&id).when("false"), N::Skipped),
        };
        let n = match up {
            Up::Skip => n,
            _ => n.cfg(json!({"sleep_ms": 10 * (k + 1)})),
        };
        nodes.push(n.after(["src"]));
        expected.push((id.clone(), status));
        ids.push(id);
    }
    nodes.push(node("target").after(ids.clone()).rule(rule));
    expected.push(("target".to_string(), want));
    let mut def = workflow("rules", nodes);
    def.failure_policy = FailurePolicy::Continue;
    let failed = expected.iter().any(|(_, s)| *s == N::Failed);
    let run = if failed {
        RunStatus::Failed
    } else {
        RunStatus::Completed
    };
    let expected: Vec<(&str, N)> = expected.iter().map(|(id, s)| (id.as_str(), *s)).collect();
    let (h, report) = check(def, no_inputs(), run, &expected).await;
    let runs = u32::from(want == N::Completed);
    assert_eq!(
        h.probe.executions("target"),
        runs,
        "{rule} after {upstream:?}: {:?}",
        report.trace()
    );
    if want == N::Skipped {
        assert!(report.node("target").reason.is_some(), "a skip says why");
    }
}

use Up::{Done, Fail, Skip};

#[tokio::test(start_paused = true)]
async fn all_success_needs_every_dependency_completed() {
    check_rule("all_success", &[Done, Done], N::Completed).await;
    check_rule("all_success", &[Done, Fail], N::Skipped).await;
    check_rule("all_success", &[Done, Skip], N::Skipped).await;
}

#[tokio::test(start_paused = true)]
async fn all_done_runs_whatever_the_outcomes() {
    check_rule("all_done", &[Done, Fail, Skip], N::Completed).await;
    check_rule("all_done", &[Fail, Fail], N::Completed).await;
    check_rule("all_done", &[Skip], N::Completed).await;
}

#[tokio::test(start_paused = true)]
async fn all_failed_needs_every_dependency_failed() {
    check_rule("all_failed", &[Fail, Fail], N::Completed).await;
    check_rule("all_failed", &[Fail, Done], N::Skipped).await;
    check_rule("all_failed", &[Fail, Skip], N::Skipped).await;
}

#[tokio::test(start_paused = true)]
async fn one_success_needs_one_completed_dependency() {
    check_rule("one_success", &[Fail, Done], N::Completed).await;
    check_rule("one_success", &[Skip, Done, Fail], N::Completed).await;
    check_rule("one_success", &[Fail, Skip], N::Skipped).await;
    check_rule("one_success", &[Fail, Fail], N::Skipped).await;
}

#[tokio::test(start_paused = true)]
async fn one_failed_needs_one_failed_dependency() {
    check_rule("one_failed", &[Done, Fail], N::Completed).await;
    check_rule("one_failed", &[Done, Skip], N::Skipped).await;
    check_rule("one_failed", &[Done, Done], N::Skipped).await;
}

#[tokio::test(start_paused = true)]
async fn none_failed_allows_skips_but_no_failure() {
    check_rule("none_failed", &[Done, Skip], N::Completed).await;
    check_rule("none_failed", &[Skip, Skip], N::Completed).await;
    check_rule("none_failed", &[Done, Fail], N::Skipped).await;
}

#[tokio::test(start_paused = true)]
async fn none_failed_min_one_success_also_needs_a_success() {
    check_rule("none_failed_min_one_success", &[Done, Skip], N::Completed).await;
    check_rule("none_failed_min_one_success", &[Skip, Skip], N::Skipped).await;
    check_rule("none_failed_min_one_success", &[Done, Fail], N::Skipped).await;
}

#[tokio::test(start_paused = true)]
async fn always_runs_whatever_happens_upstream() {
    check_rule("always", &[Fail], N::Completed).await;
    check_rule("always", &[Fail, Skip], N::Completed).await;
    check_rule("always", &[Done], N::Completed).await;
}

#[tokio::test]
async fn skips_propagate_through_all_success_chains() {
    let (h, report) = check(
        workflow(
            "cascade",
            vec![
                node("root").when("inputs.enabled == true"),
                node("b").after(["root"]),
                node("c").after(["b"]),
                node("d").after(["c"]),
                node("tolerant").after(["c"]).rule("none_failed"),
                node("side"),
            ],
        ),
        json!({"enabled": false}),
        // Skips are not failures.
        RunStatus::Completed,
        &[
            ("root", N::Skipped),
            ("b", N::Skipped),
            ("c", N::Skipped),
            ("d", N::Skipped),
            ("tolerant", N::Completed),
            ("side", N::Completed),
        ],
    )
    .await;
    for id in ["b", "c", "d"] {
        assert_eq!(
            report.node(id).reason.as_deref(),
            Some("an upstream node was skipped"),
            "{id}"
        );
        assert_eq!(h.probe.executions(id), 0);
    }
    // Each skip is its own event, in cascade order.
    assert!(
        report.seq(EventType::NodeSkipped, Some("b"))
            < report.seq(EventType::NodeSkipped, Some("c"))
    );
    assert!(
        report.seq(EventType::NodeSkipped, Some("c"))
            < report.seq(EventType::NodeSkipped, Some("d"))
    );
}

#[tokio::test]
async fn failures_propagate_as_skips_through_all_success_chains() {
    let mut def = workflow(
        "failure_cascade",
        vec![
            node("root").cfg(json!({"permanent": true})),
            node("b").after(["root"]),
            node("c").after(["b"]),
        ],
    );
    def.failure_policy = FailurePolicy::Continue;
    let (_, report) = check(
        def,
        no_inputs(),
        RunStatus::Failed,
        &[("root", N::Failed), ("b", N::Skipped), ("c", N::Skipped)],
    )
    .await;
    assert_eq!(
        report.node("b").reason.as_deref(),
        Some("an upstream node failed")
    );
    assert_eq!(
        report.node("c").reason.as_deref(),
        Some("an upstream node was skipped")
    );
}

#[tokio::test(start_paused = true)]
async fn one_success_and_one_failed_do_not_wait_for_the_others() {
    let (h, report) = check(
        {
            let mut def = workflow(
                "eager",
                vec![
                    node("fast_ok").cfg(json!({"sleep_ms": 10})),
                    node("fast_bad").cfg(json!({"sleep_ms": 10, "permanent": true})),
                    node("slow").cfg(json!({"sleep_ms": 1000})),
                    node("first_success")
                        .after(["fast_ok", "slow"])
                        .rule("one_success"),
                    node("first_failure")
                        .after(["fast_bad", "slow"])
                        .rule("one_failed"),
                    node("everyone").after(["fast_ok", "slow"]).rule("all_done"),
                ],
            );
            def.failure_policy = FailurePolicy::Continue;
            def
        },
        no_inputs(),
        RunStatus::Failed,
        &[
            ("fast_ok", N::Completed),
            ("fast_bad", N::Failed),
            ("slow", N::Completed),
            ("first_success", N::Completed),
            ("first_failure", N::Completed),
            ("everyone", N::Completed),
        ],
    )
    .await;
    let slow_done = h.probe.ended_at("slow");
    assert!(h.probe.started_at("first_success") < slow_done);
    assert!(h.probe.started_at("first_failure") < slow_done);
    assert!(h.probe.started_at("everyone") >= slow_done);
    // `first_success` only sees the dependency that had completed when it started.
    let deps: Vec<String> = h.probe.contexts("first_success")[0]
        .dependency_outputs
        .iter()
        .map(|(id, _)| id.to_string())
        .collect();
    assert_eq!(deps, ["fast_ok"], "{:?}", report.trace());
}

#[tokio::test]
async fn always_starts_without_waiting_for_its_dependencies() {
    let (h, report) = check(
        workflow(
            "always",
            vec![
                node("slow").cfg(json!({"sleep_ms": 200})),
                node("watcher").after(["slow"]).rule("always"),
            ],
        ),
        no_inputs(),
        RunStatus::Completed,
        &[("slow", N::Completed), ("watcher", N::Completed)],
    )
    .await;
    assert!(
        report.seq(EventType::NodeStarted, Some("watcher"))
            < report.seq(EventType::NodeCompleted, Some("slow"))
    );
    assert_eq!(h.probe.executions("watcher"), 1);
}
