//! Run events (DESIGN §3): one per transition, numbered 1..n per run without gaps, the same on
//! the in-process broadcast as in the store, and the wire shape clients depend on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use maestro_dag::{
    Event, EventType, FailurePolicy, NodeStatus as N, RetryPolicy, RunStatus, RunStore,
};
use serde_json::{Value, json};

use crate::support::{Harness, NodeExt, check, no_inputs, node, wait, workflow};

/// A sequential workflow that goes through most kinds of transition, in a fixed order.
fn eventful() -> maestro_dag::WorkflowDefinition {
    let mut def = workflow(
        "eventful",
        vec![
            node("a")
                .cfg(json!({"fail_attempts": 1}))
                .retries(RetryPolicy::fixed(2, 5)),
            node("b").after(["a"]).when("inputs.with_b == true"),
            node("c").after(["b"]).rule("none_failed"),
            node("d").after(["c"]).cfg(json!({"permanent": true})),
        ],
    );
    def.failure_policy = FailurePolicy::Continue;
    def
}

#[tokio::test]
async fn every_transition_emits_exactly_one_event() {
    let (_, report) = check(
        eventful(),
        json!({"with_b": false}),
        RunStatus::Failed,
        &[
            ("a", N::Completed),
            ("b", N::Skipped),
            ("c", N::Completed),
            ("d", N::Failed),
        ],
    )
    .await;
    assert_eq!(
        report.trace(),
        [
            "workflow_started",
            "node_started:a",
            "node_retry:a",
            "node_started:a",
            "node_completed:a",
            "node_skipped:b",
            "node_started:c",
            "node_completed:c",
            "node_started:d",
            "node_failed:d",
            "workflow_failed",
        ]
    );
}

#[tokio::test]
async fn sequence_numbers_start_at_one_in_every_run() {
    let h = Harness::new();
    let (_, r1) = h.start(eventful(), json!({"with_b": true})).await;
    let (_, r2) = h.start(eventful(), json!({"with_b": false})).await;
    let (id1, id2) = (r1.run_id().to_string(), r2.run_id().to_string());
    wait(r1).await;
    wait(r2).await;
    for id in [&id1, &id2] {
        let events = h.store.events(id, 0, usize::MAX).await.unwrap();
        crate::support::assert_gap_free(&events);
        assert!(events.iter().all(|e| &*e.run_id == id.as_str()));
        // Timestamps follow the sequence.
        for w in events.windows(2) {
            assert!(w[0].timestamp <= w[1].timestamp);
        }
    }
    // `after = N` means seq > N; a limit cuts the page.
    let all = h.store.events(&id1, 0, usize::MAX).await.unwrap();
    let tail = h.store.events(&id1, 3, usize::MAX).await.unwrap();
    assert_eq!(tail, all[3..]);
    let page = h.store.events(&id1, 2, 2).await.unwrap();
    assert_eq!(page.iter().map(|e| e.seq).collect::<Vec<_>>(), [3, 4]);
    assert!(
        h.store
            .events(&id1, all.len() as u64, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(h.store.events(&id1, 1000, 10).await.unwrap().is_empty());
    let snap = h.store.load_run(&id1).await.unwrap().unwrap();
    assert_eq!(snap.last_seq, all.len() as u64);
}

#[tokio::test]
async fn subscribers_see_exactly_what_the_store_holds() {
    let h = Harness::new();
    let mut rx = h.engine.subscribe();
    let mut runs = BTreeSet::new();
    for with_b in [true, false] {
        let (_, handle) = h.start(eventful(), json!({"with_b": with_b})).await;
        runs.insert(handle.run_id().to_string());
    }
    let mut seen: BTreeMap<String, Vec<Arc<Event>>> = BTreeMap::new();
    let mut ended = 0;
    while ended < runs.len() {
        let e = tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
            .await
            .expect("events keep coming")
            .expect("no lag");
        if e.kind.is_terminal() {
            ended += 1;
        }
        seen.entry(e.run_id.to_string()).or_default().push(e);
    }
    assert_eq!(seen.keys().cloned().collect::<BTreeSet<_>>(), runs);
    for (run_id, broadcast) in seen {
        let stored = h.store.events(&run_id, 0, usize::MAX).await.unwrap();
        let broadcast: Vec<Event> = broadcast.iter().map(|e| (**e).clone()).collect();
        assert_eq!(broadcast, stored, "run {run_id}");
    }
}

#[tokio::test]
async fn the_wire_shape_is_stable() {
    let (_, report) = check(
        eventful(),
        json!({"with_b": false}),
        RunStatus::Failed,
        &[
            ("a", N::Completed),
            ("b", N::Skipped),
            ("c", N::Completed),
            ("d", N::Failed),
        ],
    )
    .await;
    let run_id = report.run.run_id.to_string();
    let wire: Vec<Value> = report
        .events
        .iter()
        .map(|e| serde_json::to_value(e).unwrap())
        .collect();
    let keys: BTreeSet<&str> = [
        "seq",
        "type",
        "workflow_id",
        "run_id",
        "node_id",
        "data",
        "timestamp",
    ]
    .into();
    for (w, e) in wire.iter().zip(&report.events) {
        let obj = w.as_object().expect("an object");
        assert_eq!(
            obj.keys().map(String::as_str).collect::<BTreeSet<_>>(),
            keys
        );
        assert_eq!(w["seq"], json!(e.seq));
        assert_eq!(w["type"], json!(e.kind.as_str()));
        assert_eq!(w["workflow_id"], json!("eventful"));
        assert_eq!(w["run_id"], json!(run_id));
        assert!(w["data"].is_object());
        // RFC 3339 in UTC.
        let ts = w["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z'), "{ts}");
        let parsed = DateTime::parse_from_rfc3339(ts).expect("rfc 3339");
        assert_eq!(parsed.with_timezone(&Utc), e.timestamp.trunc_subsecs(6));
    }
    // Workflow events have a null node id; node events name theirs.
    assert_eq!(wire[0]["node_id"], Value::Null);
    assert_eq!(wire[1]["node_id"], json!("a"));
    // The data of each type.
    let data = |i: usize| wire[i]["data"].clone();
    assert_eq!(data(0), json!({"inputs": {"with_b": false}, "version": 1}));
    assert_eq!(data(1), json!({"attempt": 1, "max_attempts": 2}));
    assert_eq!(
        data(2),
        json!({"attempt": 1, "delay_ms": 5, "error": "attempt 1 of a failed"})
    );
    assert_eq!(
        data(4),
        json!({"attempt": 2, "output": {"node": "a", "attempt": 2, "value": 1}})
    );
    assert_eq!(
        data(5),
        json!({"reason": "condition `inputs.with_b == true` is false"})
    );
    assert_eq!(
        data(9),
        json!({"error": "d failed for good", "attempts": 1})
    );
    let end = data(10);
    assert_eq!(end["failed_node"], json!("d"));
    assert_eq!(end["failed_nodes"], json!(["d"]));
    assert_eq!(end["error"], json!("d failed for good"));
    assert_eq!(
        end["nodes"],
        json!({"completed": 2, "failed": 1, "skipped": 1})
    );
}

#[tokio::test]
async fn an_event_survives_its_wire_form() {
    // What a client (or a store that keeps the wire form) reads back is the event emitted.
    let (_, report) = check(
        eventful(),
        json!({"with_b": true}),
        RunStatus::Failed,
        &[
            ("a", N::Completed),
            ("b", N::Completed),
            ("c", N::Completed),
            ("d", N::Failed),
        ],
    )
    .await;
    for e in &report.events {
        let back: Event = serde_json::from_str(&serde_json::to_string(e).unwrap()).unwrap();
        assert_eq!(&back, e);
    }
}

#[tokio::test]
async fn a_completed_run_summarises_its_nodes() {
    let (_, report) = check(
        workflow("small", vec![node("a"), node("b").when("false")]),
        no_inputs(),
        RunStatus::Completed,
        &[("a", N::Completed), ("b", N::Skipped)],
    )
    .await;
    let end = serde_json::to_value(report.events.last().unwrap()).unwrap();
    assert_eq!(end["type"], json!("workflow_completed"));
    assert_eq!(
        end["data"],
        json!({"completed_nodes": 1, "nodes": {"completed": 1, "failed": 0, "skipped": 1}})
    );
}

#[test]
fn event_types_keep_the_original_names() {
    let names: Vec<&str> = EventType::ALL.iter().map(|t| t.as_str()).collect();
    assert_eq!(
        names,
        [
            "workflow_started",
            "workflow_paused",
            "workflow_resumed",
            "workflow_completed",
            "workflow_failed",
            "workflow_cancelled",
            "node_started",
            "node_completed",
            "node_failed",
            "node_retry",
            "node_skipped",
            "node_waiting_approval",
        ]
    );
    for t in EventType::ALL {
        assert_eq!(EventType::parse(t.as_str()), Some(t));
        assert_eq!(serde_json::to_value(t).unwrap(), json!(t.as_str()));
        assert_eq!(
            t.is_terminal(),
            matches!(
                t,
                EventType::WorkflowCompleted
                    | EventType::WorkflowFailed
                    | EventType::WorkflowCancelled
            )
        );
    }
    assert_eq!(EventType::parse("node_blocked"), None);
}

#[test]
fn statuses_have_their_wire_names() {
    let runs: Vec<&str> = RunStatus::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        runs,
        [
            "pending",
            "running",
            "paused",
            "completed",
            "failed",
            "cancelled"
        ]
    );
    let nodes: Vec<&str> = N::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        nodes,
        [
            "pending",
            "ready",
            "running",
            "completed",
            "failed",
            "skipped",
            "cancelled",
            "waiting_approval"
        ]
    );
    for s in N::ALL {
        assert_eq!(N::parse(s.as_str()), Some(*s));
        assert_eq!(serde_json::to_value(s).unwrap(), json!(s.as_str()));
    }
    let terminal: Vec<&str> = N::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    assert_eq!(terminal, ["completed", "failed", "skipped", "cancelled"]);
    let terminal: Vec<&str> = RunStatus::ALL
        .iter()
        .filter(|s| s.is_terminal())
        .map(|s| s.as_str())
        .collect();
    assert_eq!(terminal, ["completed", "failed", "cancelled"]);
}
