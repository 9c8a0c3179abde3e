//! Scheduler invariants on random DAGs (edges only from lower to higher index, so every graph
//! is acyclic), random trigger rules, random outcomes, random failure policies and limits:
//! - every node reaches exactly one terminal state, and it is the stored one;
//! - no node starts before its trigger rule holds (judged from the event log alone);
//! - a node is skipped only when its rule can no longer hold, or the run is failing fast;
//! - under `continue`, every node ends as the rules say it must; under `fail_fast` nothing
//!   starts after the first failure;
//! - with all successes and `all_success`, every node completes exactly once, after all of its
//!   dependencies, with the data they produced;
//! - event sequence numbers have no gaps, and the run fails exactly when a node failed.

use std::collections::BTreeMap;
use std::sync::Arc;

use maestro_dag::{
    Engine, EventType, FailurePolicy, NodeStatus as N, RunStatus, StartOptions, TriggerRule,
    Workflow, WorkflowDefinition,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use serde_json::json;

use crate::support::{INLINE, NOW, NodeExt, Probe, Report, SCRIPT, node, registry, wait, workflow};

#[derive(Debug, Clone)]
struct NodeSpec {
    rule: TriggerRule,
    fails: bool,
    inline: bool,
    /// Run by the synchronous form of the script (`execute_now`) when it does not yield.
    now: bool,
    /// Times the executor yields before it finishes, so that attempts overlap.
    yields: u64,
    deps: Vec<usize>,
}

#[derive(Debug, Clone)]
struct Spec {
    nodes: Vec<NodeSpec>,
    policy: FailurePolicy,
    max_concurrency: Option<u32>,
}

const MAX_NODES: usize = 10;

fn spec(rules: bool, failures: bool) -> impl Strategy<Value = Spec> {
    let node = (
        0..TriggerRule::ALL.len(),
        prop::bool::weighted(if failures { 0.3 } else { 0.0 }),
        any::<bool>(),
        any::<bool>(),
        0u64..3,
        prop::collection::vec(prop::bool::weighted(0.35), MAX_NODES),
    );
    (
        prop::collection::vec(node, 1..=MAX_NODES),
        any::<bool>(),
        prop::option::of(1u32..=3),
    )
        .prop_map(move |(raw, fail_fast, max_concurrency)| Spec {
            nodes: raw
                .into_iter()
                .enumerate()
                .map(|(i, (rule, fails, inline, now, yields, mask))| NodeSpec {
                    rule: if rules {
                        TriggerRule::ALL[rule].clone()
                    } else {
                        TriggerRule::AllSuccess
                    },
                    fails,
                    inline,
                    // A synchronous node does not yield (otherwise it would go asynchronous).
                    now,
                    yields: if now { 0 } else { yields },
                    deps: (0..i).filter(|&j| mask[j]).collect(),
                })
                .collect(),
            policy: if fail_fast {
                FailurePolicy::FailFast
            } else {
                FailurePolicy::Continue
            },
            max_concurrency,
        })
}

fn id(i: usize) -> String {
    format!("n{i}")
}

fn definition(spec: &Spec) -> WorkflowDefinition {
    let nodes = spec
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| {
            let mut d = node(&id(i))
                .after(n.deps.iter().map(|&j| id(j)))
                .cfg(json!({"permanent": n.fails, "yields": n.yields}));
            d.trigger_rule = n.rule.clone();
            d.executor = Some(
                if n.now {
                    NOW
                } else if n.inline {
                    INLINE
                } else {
                    SCRIPT
                }
                .into(),
            );
            d
        })
        .collect();
    let mut def = workflow("random", nodes);
    def.failure_policy = spec.policy;
    def.max_concurrency = spec.max_concurrency;
    def
}

/// Runs the spec on a fresh engine and runtime; returns the report and the probe.
fn run(spec: &Spec) -> (Report, Arc<Probe>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let store = maestro_dag::MemoryStore::new();
        let probe = Arc::new(Probe::default());
        let engine = Engine::new(Arc::new(store.clone()), registry(&probe));
        let wf = Arc::new(Workflow::compile(definition(spec), Some(engine.executors())).unwrap());
        let handle = engine
            .start(wf.clone(), json!({}), StartOptions::default())
            .await
            .unwrap();
        let run_id = handle.run_id().to_string();
        wait(handle).await;
        (Report::load(&store, &wf, &run_id).await, probe)
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Wait,
    Run,
    Skip,
}

/// Airflow's trigger rules, written out independently of the engine, over the numbers of
/// dependencies that succeeded, failed and were skipped so far.
fn decide(rule: &TriggerRule, total: usize, succ: usize, fail: usize, skip: usize) -> Decision {
    use Decision::*;
    let done = succ + fail + skip == total;
    if total == 0 {
        return Run;
    }
    match rule {
        TriggerRule::AllSuccess if succ == total => Run,
        TriggerRule::AllSuccess if fail + skip > 0 => Skip,
        TriggerRule::AllDone if done => Run,
        TriggerRule::AllFailed if fail == total => Run,
        TriggerRule::AllFailed if succ + skip > 0 => Skip,
        TriggerRule::OneSuccess if succ > 0 => Run,
        TriggerRule::OneSuccess if done => Skip,
        TriggerRule::OneFailed if fail > 0 => Run,
        TriggerRule::OneFailed if done => Skip,
        TriggerRule::NoneFailed if fail > 0 => Skip,
        TriggerRule::NoneFailed if done => Run,
        TriggerRule::NoneFailedMinOneSuccess if fail > 0 => Skip,
        TriggerRule::NoneFailedMinOneSuccess if done && succ > 0 => Run,
        TriggerRule::NoneFailedMinOneSuccess if done => Skip,
        TriggerRule::Always => Run,
        _ => Wait,
    }
}

/// Outcomes of `node`'s dependencies settled before sequence number `seq`.
fn upstream(spec: &Spec, report: &Report, node: usize, seq: u64) -> (usize, usize, usize) {
    let (mut s, mut f, mut k) = (0, 0, 0);
    for &j in &spec.nodes[node].deps {
        let dep = id(j);
        for e in &report.events {
            if e.seq >= seq || e.node_id.as_deref() != Some(dep.as_str()) {
                continue;
            }
            match e.kind {
                EventType::NodeCompleted => s += 1,
                EventType::NodeFailed => f += 1,
                EventType::NodeSkipped => k += 1,
                _ => {}
            }
        }
    }
    (s, f, k)
}

/// What every node must end as under `continue`, computed in index (= topological) order.
fn expected_statuses(spec: &Spec) -> Vec<N> {
    let mut out: Vec<N> = Vec::with_capacity(spec.nodes.len());
    for n in &spec.nodes {
        let count = |s: N| n.deps.iter().filter(|&&j| out[j] == s).count();
        let (s, f, k) = (count(N::Completed), count(N::Failed), count(N::Skipped));
        out.push(match decide(&n.rule, n.deps.len(), s, f, k) {
            Decision::Run if n.fails => N::Failed,
            Decision::Run => N::Completed,
            Decision::Skip => N::Skipped,
            Decision::Wait => unreachable!("every dependency has settled"),
        });
    }
    out
}

fn check_run(spec: &Spec, report: &Report, probe: &Probe) -> Result<(), TestCaseError> {
    let trace = report.trace();
    // Gap-free.
    let seqs: Vec<u64> = report.events.iter().map(|e| e.seq).collect();
    prop_assert_eq!(seqs, (1..=report.events.len() as u64).collect::<Vec<_>>());
    prop_assert!(
        report.run.status.is_terminal(),
        "run is {}",
        report.run.status
    );
    let first_failure = report
        .events
        .iter()
        .find(|e| e.kind == EventType::NodeFailed)
        .map(|e| e.seq);

    for (i, n) in spec.nodes.iter().enumerate() {
        let nid = id(i);
        let mine: Vec<_> = report
            .events
            .iter()
            .filter(|e| e.node_id.as_deref() == Some(nid.as_str()))
            .collect();
        let terminal: Vec<_> = mine
            .iter()
            .filter(|e| {
                matches!(
                    e.kind,
                    EventType::NodeCompleted | EventType::NodeFailed | EventType::NodeSkipped
                )
            })
            .collect();
        prop_assert_eq!(
            terminal.len(),
            1,
            "{} settled {} times: {:?}",
            nid,
            terminal.len(),
            trace
        );
        let status = report.status(&nid);
        let by_event = match terminal[0].kind {
            EventType::NodeCompleted => N::Completed,
            EventType::NodeFailed => N::Failed,
            _ => N::Skipped,
        };
        prop_assert_eq!(status, by_event, "{}: {:?}", nid, trace);

        // A node that ran started exactly once (no retries here); a skipped node never did.
        let starts: Vec<_> = mine
            .iter()
            .filter(|e| e.kind == EventType::NodeStarted)
            .collect();
        let want_starts = usize::from(status != N::Skipped);
        prop_assert_eq!(
            starts.len(),
            want_starts,
            "{} started {} times: {:?}",
            nid,
            starts.len(),
            trace
        );
        prop_assert_eq!(
            probe.executions(&nid) as usize,
            want_starts,
            "{} executions",
            nid
        );
        prop_assert_eq!(status == N::Failed, n.fails && status != N::Skipped);

        // It started only once its rule held.
        for e in &starts {
            let (s, f, k) = upstream(spec, report, i, e.seq);
            prop_assert_eq!(
                decide(&n.rule, n.deps.len(), s, f, k),
                Decision::Run,
                "{} ({}) started at seq {} with upstream s={} f={} k={}: {:?}",
                nid,
                n.rule,
                e.seq,
                s,
                f,
                k,
                trace
            );
            if spec.policy == FailurePolicy::FailFast
                && let Some(failed_at) = first_failure
            {
                prop_assert!(
                    e.seq < failed_at,
                    "{} started after a failure: {:?}",
                    nid,
                    trace
                );
            }
        }
        // It was skipped only when its rule could no longer hold, or failing fast.
        if terminal[0].kind == EventType::NodeSkipped {
            let reason = terminal[0].data.reason.as_deref().unwrap_or_default();
            if reason == "the run failed fast" {
                prop_assert_eq!(spec.policy, FailurePolicy::FailFast);
                prop_assert!(first_failure.is_some_and(|f| f < terminal[0].seq));
            } else {
                let (s, f, k) = upstream(spec, report, i, terminal[0].seq);
                prop_assert_eq!(
                    decide(&n.rule, n.deps.len(), s, f, k),
                    Decision::Skip,
                    "{} ({}) skipped ({}) with upstream s={} f={} k={}: {:?}",
                    nid,
                    n.rule,
                    reason,
                    s,
                    f,
                    k,
                    trace
                );
            }
        }
    }

    let any_failed = spec
        .nodes
        .iter()
        .enumerate()
        .any(|(i, _)| report.status(&id(i)) == N::Failed);
    let want_run = if any_failed {
        RunStatus::Failed
    } else {
        RunStatus::Completed
    };
    prop_assert_eq!(report.run.status, want_run);
    if spec.policy == FailurePolicy::Continue {
        let got: Vec<N> = (0..spec.nodes.len())
            .map(|i| report.status(&id(i)))
            .collect();
        prop_assert_eq!(got, expected_statuses(spec), "{:?}", trace);
    }
    Ok(())
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn random_dags_settle_every_node_once_and_respect_its_rule(spec in spec(true, true)) {
        let (report, probe) = run(&spec);
        check_run(&spec, &report, &probe)?;
    }

    #[test]
    fn with_all_successes_every_node_completes_once_after_its_dependencies(
        spec in spec(false, false)
    ) {
        let (report, probe) = run(&spec);
        check_run(&spec, &report, &probe)?;
        prop_assert_eq!(report.run.status, RunStatus::Completed);
        // Each node's output is 1 + the sum of its dependencies' outputs.
        let mut values: BTreeMap<usize, u64> = BTreeMap::new();
        for (i, n) in spec.nodes.iter().enumerate() {
            let nid = id(i);
            prop_assert_eq!(report.status(&nid), N::Completed);
            prop_assert_eq!(probe.executions(&nid), 1);
            let want = 1 + n.deps.iter().map(|j| values[j]).sum::<u64>();
            values.insert(i, want);
            prop_assert_eq!(&report.output(&nid)["value"], &json!(want), "{}", nid);
            let started = report.seq(EventType::NodeStarted, Some(&nid));
            for &j in &n.deps {
                prop_assert!(report.seq(EventType::NodeCompleted, Some(&id(j))) < started);
            }
        }
        prop_assert_eq!(
            report.events.iter().filter(|e| e.kind == EventType::NodeCompleted).count(),
            spec.nodes.len()
        );
    }

    #[test]
    fn random_dags_never_run_more_nodes_at_once_than_allowed(
        spec in spec(true, true),
        limit in 1u32..=3,
    ) {
        let spec = Spec { max_concurrency: Some(limit), ..spec };
        let (report, probe) = run(&spec);
        prop_assert!(report.run.status.is_terminal());
        prop_assert!(
            probe.peak() <= limit as usize,
            "{} attempts at once with max_concurrency {}: {:?}",
            probe.peak(),
            limit,
            report.trace()
        );
    }
}
