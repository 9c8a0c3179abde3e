//! The properties every store has, as the in-memory reference store defines them.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use maestro_dag::event::{Event, EventData, EventType};
use maestro_dag::status::{NodeStatus, RunStatus};
use maestro_dag::store::{
    Lease, NewRun, NodeRecord, RunFilter, RunPatch, Store, StoreError, WriteBatch,
};
use maestro_dag::{NodeDefinition, WorkflowDefinition};
use serde_json::json;

pub(crate) fn definition(id: &str, nodes: &[&str]) -> WorkflowDefinition {
    let mut prev: Option<String> = None;
    let nodes = nodes
        .iter()
        .map(|n| {
            let d = NodeDefinition::new(*n, "noop").after(prev.clone());
            prev = Some(n.to_string());
            d
        })
        .collect();
    WorkflowDefinition::new(id, nodes)
}

pub(crate) fn new_run(run_id: &str, workflow_id: &str, key: Option<&str>) -> NewRun {
    NewRun {
        run_id: Arc::from(run_id),
        workflow_id: Arc::from(workflow_id),
        version: 1,
        content_hash: "sha256:abc".into(),
        inputs: Arc::new(
            json!({"requirement": "build it", "n": 3, "nested": {"a": [1, 2.5, null]}}),
        ),
        idempotency_key: key.map(str::to_string),
    }
}

/// A fixed instant with microseconds, plus `ms` milliseconds.
pub(crate) fn at(ms: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 4, 20, 12, 0, 0).unwrap()
        + chrono::Duration::microseconds(123_457)
        + chrono::Duration::milliseconds(ms)
}

pub(crate) fn event(
    run_id: &str,
    seq: u64,
    kind: EventType,
    node: Option<&str>,
    data: EventData,
) -> Event {
    Event {
        seq,
        kind,
        workflow_id: Arc::from("wf"),
        run_id: Arc::from(run_id),
        node_id: node.map(Arc::from),
        data,
        timestamp: at(seq as i64),
    }
}

pub(crate) fn batch(
    run_id: &str,
    epoch: u64,
    nodes: Vec<NodeRecord>,
    events: Vec<Event>,
) -> WriteBatch {
    WriteBatch {
        run_id: Arc::from(run_id),
        epoch,
        run: None,
        nodes,
        events,
    }
}

fn running(node: &str, attempt: u32) -> NodeRecord {
    NodeRecord {
        status: NodeStatus::Running,
        attempt,
        started_at: Some(at(attempt as i64 * 10)),
        ..NodeRecord::pending(Arc::from(node))
    }
}

fn assert_close_to_now(t: DateTime<Utc>) {
    let d = (Utc::now() - t).num_seconds().abs();
    assert!(d < 60, "{t} is not about now");
}

pub(crate) async fn definitions_version_by_content(s: Arc<dyn Store>) {
    let v1 = definition("wf_a", &["a", "b"]);
    let put = s.put_definition(&v1).await.unwrap();
    assert!(put.created);
    assert_eq!(put.record.version, 1);
    assert_eq!(put.record.content_hash, v1.content_hash());
    assert_eq!(*put.record.definition, v1);
    assert_close_to_now(put.record.created_at);
    // Identical content: no new version, the stored one comes back.
    let again = s.put_definition(&v1).await.unwrap();
    assert!(!again.created);
    assert_eq!(again.record, put.record);
    // Changed content: version 2.
    let v2 = definition("wf_a", &["a", "b", "c"]);
    let put2 = s.put_definition(&v2).await.unwrap();
    assert!(put2.created);
    assert_eq!(put2.record.version, 2);
    assert_ne!(put2.record.content_hash, put.record.content_hash);
    // Read back by version and latest, exactly as returned on put.
    assert_eq!(
        s.get_definition("wf_a", Some(1)).await.unwrap(),
        Some(put.record.clone())
    );
    assert_eq!(
        s.get_definition("wf_a", Some(2)).await.unwrap(),
        Some(put2.record.clone())
    );
    assert_eq!(
        s.get_definition("wf_a", None).await.unwrap(),
        Some(put2.record.clone())
    );
    assert_eq!(s.get_definition("wf_a", Some(3)).await.unwrap(), None);
    assert_eq!(s.get_definition("nope", None).await.unwrap(), None);
    // Back to the first content: that is a change too (n+1), not a revert.
    let put3 = s.put_definition(&v1).await.unwrap();
    assert!(put3.created);
    assert_eq!(put3.record.version, 3);
    // A definition with every optional field survives the round trip.
    let mut rich = definition("wf_rich", &["x"]);
    rich.name = Some("Rich \u{e9}\u{1F680}".into());
    rich.description = Some("quotes \" and \\ backslashes".into());
    rich.max_concurrency = Some(4);
    rich.metadata
        .insert("owner".into(), json!({"team": "core", "tags": ["a", "b"]}));
    rich.nodes[0].config = json!({"duration_ms": 5, "big": 12345678901234567_u64, "f": 0.1});
    let put = s.put_definition(&rich).await.unwrap();
    assert_eq!(
        *s.get_definition("wf_rich", None)
            .await
            .unwrap()
            .unwrap()
            .definition,
        rich
    );
    assert_eq!(put.record.content_hash, rich.content_hash());
}

pub(crate) async fn definitions_list_and_delete(s: Arc<dyn Store>) {
    for id in ["wf_c", "wf_a", "wf_b", "WF_z"] {
        s.put_definition(&definition(id, &["a"])).await.unwrap();
    }
    s.put_definition(&definition("wf_b", &["a", "b"]))
        .await
        .unwrap();
    let list = s.list_definitions(0, 100).await.unwrap();
    let ids: Vec<(&str, u32)> = list
        .iter()
        .map(|r| (r.workflow_id.as_str(), r.version))
        .collect();
    // Latest version of each, ordered by id (byte order: upper case first).
    assert_eq!(ids, [("WF_z", 1), ("wf_a", 1), ("wf_b", 2), ("wf_c", 1)]);
    let page: Vec<String> = s
        .list_definitions(1, 2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.workflow_id)
        .collect();
    assert_eq!(page, ["wf_a", "wf_b"]);
    // A run pinned to wf_b survives the deletion of wf_b.
    let mut run = new_run("r_pinned", "wf_b", None);
    run.version = 2;
    s.create_run(run).await.unwrap();
    assert!(s.delete_definition("wf_b").await.unwrap());
    assert!(!s.delete_definition("wf_b").await.unwrap());
    assert_eq!(s.get_definition("wf_b", None).await.unwrap(), None);
    assert_eq!(s.get_definition("wf_b", Some(1)).await.unwrap(), None);
    let snap = s.load_run("r_pinned").await.unwrap().unwrap();
    assert_eq!(snap.run.version, 2);
    assert_eq!(&*snap.run.workflow_id, "wf_b");
    assert_eq!(s.list_definitions(0, 100).await.unwrap().len(), 3);
    // Storing it again starts over at version 1.
    let again = s.put_definition(&definition("wf_b", &["a"])).await.unwrap();
    assert!(again.created);
    assert_eq!(again.record.version, 1);
}

pub(crate) async fn run_state_reads_back_exactly(s: Arc<dyn Store>) {
    let created = s.create_run(new_run("r1", "wf", None)).await.unwrap();
    assert!(created.created);
    let run = created.run.clone();
    assert_eq!(run.status, RunStatus::Pending);
    assert_eq!(run.started_at, None);
    assert_close_to_now(run.created_at);
    let snap = s.load_run("r1").await.unwrap().unwrap();
    assert_eq!(snap.run, run);
    assert!(snap.nodes.is_empty());
    assert_eq!(snap.last_seq, 0);
    assert_eq!(s.load_run("nope").await.unwrap(), None);

    // Turn 1: the run starts, node a starts.
    let mut b1 = batch(
        "r1",
        0,
        vec![running("a", 1)],
        vec![
            event(
                "r1",
                1,
                EventType::WorkflowStarted,
                None,
                EventData::default(),
            ),
            event(
                "r1",
                2,
                EventType::NodeStarted,
                Some("a"),
                EventData {
                    attempt: Some(1),
                    max_attempts: Some(3),
                    ..EventData::default()
                },
            ),
        ],
    );
    b1.run = Some(RunPatch {
        status: RunStatus::Running,
        started_at: Some(at(1)),
        finished_at: None,
        error: None,
    });
    let events1 = b1.events.clone();
    s.write(&mut b1).await.unwrap();

    // Turn 2: a fails and waits for a retry; b completes with an output; c is skipped.
    let a_retry = NodeRecord {
        node_id: Arc::from("a"),
        status: NodeStatus::Running,
        attempt: 1,
        started_at: Some(at(10)),
        finished_at: None,
        output: None,
        error: Some(Arc::from("boom: \"quoted\" \u{1F4A5}")),
        reason: None,
        retry_at: Some(at(500)),
    };
    let output = json!({"artifacts": [{"name": "x.txt", "size": 3}], "n": 1.5, "big": u64::MAX, "s": "line\nbreak", "neg": -7});
    let b_done = NodeRecord {
        node_id: Arc::from("b"),
        status: NodeStatus::Completed,
        attempt: 1,
        started_at: Some(at(11)),
        finished_at: Some(at(12)),
        output: Some(Arc::new(output.clone())),
        error: None,
        reason: None,
        retry_at: None,
    };
    let c_skip = NodeRecord {
        status: NodeStatus::Skipped,
        reason: Some(Arc::from("condition false")),
        finished_at: Some(at(13)),
        ..NodeRecord::pending(Arc::from("c"))
    };
    let mut b2 = batch(
        "r1",
        0,
        vec![a_retry.clone(), b_done.clone(), c_skip.clone()],
        vec![
            event(
                "r1",
                3,
                EventType::NodeRetry,
                Some("a"),
                EventData {
                    attempt: Some(1),
                    error: Some(Arc::from("boom")),
                    delay_ms: Some(490),
                    ..EventData::default()
                },
            ),
            event(
                "r1",
                4,
                EventType::NodeCompleted,
                Some("b"),
                EventData {
                    output: Some(Arc::new(output.clone())),
                    ..EventData::default()
                }
                .with("custom", json!({"k": [true, false]})),
            ),
            event(
                "r1",
                5,
                EventType::NodeSkipped,
                Some("c"),
                EventData {
                    reason: Some(Arc::from("condition false")),
                    ..EventData::default()
                },
            ),
        ],
    );
    let events2 = b2.events.clone();
    s.write(&mut b2).await.unwrap();

    // Turn 3: a completes; the run fails with an error (a patch keeps started_at).
    let a_done = NodeRecord {
        node_id: Arc::from("a"),
        status: NodeStatus::Completed,
        attempt: 2,
        started_at: Some(at(20)),
        finished_at: Some(at(21)),
        output: Some(Arc::new(json!({}))),
        error: None,
        reason: None,
        retry_at: None,
    };
    let mut b3 = batch(
        "r1",
        0,
        vec![a_done.clone()],
        vec![event(
            "r1",
            6,
            EventType::WorkflowFailed,
            None,
            EventData::default(),
        )],
    );
    b3.run = Some(RunPatch {
        status: RunStatus::Failed,
        started_at: Some(at(99)),
        finished_at: Some(at(30)),
        error: Some("node c failed".into()),
    });
    let events3 = b3.events.clone();
    s.write(&mut b3).await.unwrap();

    let snap = s.load_run("r1").await.unwrap().unwrap();
    assert_eq!(snap.last_seq, 6);
    assert_eq!(snap.run.status, RunStatus::Failed);
    assert_eq!(
        snap.run.started_at,
        Some(at(1)),
        "started_at is kept once set"
    );
    assert_eq!(snap.run.finished_at, Some(at(30)));
    assert_eq!(snap.run.error.as_deref(), Some("node c failed"));
    assert_eq!(snap.run.created_at, run.created_at);
    assert_eq!(snap.run.inputs, run.inputs);
    assert_eq!(
        snap.nodes,
        vec![a_done, b_done, c_skip],
        "sorted by node id, latest rows"
    );

    let all: Vec<Event> = [events1, events2, events3].concat();
    assert_eq!(s.events("r1", 0, 100).await.unwrap(), all);

    // A patch without finished_at clears it (a retried run), and clears the error.
    let mut b4 = batch("r1", 0, vec![], vec![]);
    b4.run = Some(RunPatch {
        status: RunStatus::Running,
        started_at: None,
        finished_at: None,
        error: None,
    });
    s.write(&mut b4).await.unwrap();
    let snap = s.load_run("r1").await.unwrap().unwrap();
    assert_eq!(snap.run.finished_at, None);
    assert_eq!(snap.run.error, None);
    assert_eq!(snap.run.started_at, Some(at(1)));
    assert_eq!(snap.last_seq, 6);
}

pub(crate) async fn idempotency_key_returns_the_first_run(s: Arc<dyn Store>) {
    let first = s
        .create_run(new_run("r1", "wf", Some("key-1")))
        .await
        .unwrap();
    assert!(first.created);
    let second = s
        .create_run(new_run("r2", "wf", Some("key-1")))
        .await
        .unwrap();
    assert!(!second.created);
    assert_eq!(second.run, first.run);
    assert_eq!(s.load_run("r2").await.unwrap(), None);
    // The same key on another workflow is another run.
    let other = s
        .create_run(new_run("r3", "wf_other", Some("key-1")))
        .await
        .unwrap();
    assert!(other.created);
    // Runs without a key never collide.
    assert!(
        s.create_run(new_run("r4", "wf", None))
            .await
            .unwrap()
            .created
    );
    assert!(
        s.create_run(new_run("r5", "wf", None))
            .await
            .unwrap()
            .created
    );
    // A run id that exists is a conflict.
    let dup = s.create_run(new_run("r4", "wf", None)).await;
    assert!(matches!(dup, Err(StoreError::Conflict(_))), "{dup:?}");
    // Concurrent creates with one key: one run.
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.create_run(new_run(&format!("c{i}"), "wf", Some("key-2")))
                .await
                .unwrap()
        }));
    }
    let mut ids = HashSet::new();
    let mut created = 0;
    for t in tasks {
        let r = t.await.unwrap();
        created += usize::from(r.created);
        ids.insert(r.run.run_id.to_string());
    }
    assert_eq!(created, 1);
    assert_eq!(ids.len(), 1);
}

pub(crate) async fn events_are_gap_free(s: Arc<dyn Store>) {
    s.create_run(new_run("r1", "wf", None)).await.unwrap();
    let e = |seq| {
        event(
            "r1",
            seq,
            EventType::NodeStarted,
            Some("a"),
            EventData::default(),
        )
    };
    s.write(&mut batch("r1", 0, vec![], vec![e(1), e(2)]))
        .await
        .unwrap();
    // A gap, a duplicate, a batch that is not consecutive in itself: refused, nothing written,
    // the batch handed back untouched.
    for events in [vec![e(4)], vec![e(2), e(3)], vec![e(3), e(5)], vec![e(1)]] {
        let mut b = batch("r1", 0, vec![running("x", 1)], events);
        let before = b.clone();
        let r = s.write(&mut b).await;
        assert!(matches!(r, Err(StoreError::Conflict(_))), "{r:?}");
        assert_eq!(b, before, "a refused batch is left as it was");
    }
    let snap = s.load_run("r1").await.unwrap().unwrap();
    assert_eq!(snap.last_seq, 2);
    assert!(
        snap.nodes.is_empty(),
        "nothing of a refused batch is stored"
    );
    s.write(&mut batch("r1", 0, vec![], vec![e(3)]))
        .await
        .unwrap();
    let seqs: Vec<u64> = s
        .events("r1", 0, 100)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(seqs, [1, 2, 3]);
    // A batch for an unknown run.
    let r = s.write(&mut batch("nope", 0, vec![], vec![e(1)])).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

pub(crate) async fn events_page_by_sequence(s: Arc<dyn Store>) {
    s.create_run(new_run("r1", "wf", None)).await.unwrap();
    for chunk in 0..5u64 {
        let events = (1..=4)
            .map(|k| {
                event(
                    "r1",
                    chunk * 4 + k,
                    EventType::NodeCompleted,
                    Some("n"),
                    EventData::default(),
                )
            })
            .collect();
        s.write(&mut batch("r1", 0, vec![], events)).await.unwrap();
    }
    let seqs = |v: Vec<Event>| v.iter().map(|e| e.seq).collect::<Vec<_>>();
    assert_eq!(seqs(s.events("r1", 0, 3).await.unwrap()), [1, 2, 3]);
    assert_eq!(seqs(s.events("r1", 5, 4).await.unwrap()), [6, 7, 8, 9]);
    assert_eq!(seqs(s.events("r1", 18, 100).await.unwrap()), [19, 20]);
    assert!(s.events("r1", 20, 100).await.unwrap().is_empty());
    let r = s.events("nope", 0, 10).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

pub(crate) async fn list_runs_filters_newest_first(s: Arc<dyn Store>) {
    for (id, wf) in [("r1", "a"), ("r2", "b"), ("r3", "a"), ("r4", "a")] {
        s.create_run(new_run(id, wf, None)).await.unwrap();
    }
    let mut b = batch("r3", 0, vec![], vec![]);
    b.run = Some(RunPatch {
        status: RunStatus::Running,
        started_at: Some(at(0)),
        finished_at: None,
        error: None,
    });
    s.write(&mut b).await.unwrap();
    let ids =
        |v: Vec<maestro_dag::RunRecord>| v.iter().map(|r| r.run_id.to_string()).collect::<Vec<_>>();
    assert_eq!(
        ids(s.list_runs(&RunFilter::default()).await.unwrap()),
        ["r4", "r3", "r2", "r1"]
    );
    let by_wf = RunFilter {
        workflow_id: Some("a".into()),
        ..RunFilter::default()
    };
    assert_eq!(ids(s.list_runs(&by_wf).await.unwrap()), ["r4", "r3", "r1"]);
    let by_status = RunFilter {
        status: Some(RunStatus::Running),
        ..RunFilter::default()
    };
    assert_eq!(ids(s.list_runs(&by_status).await.unwrap()), ["r3"]);
    let page = RunFilter {
        offset: 1,
        limit: 2,
        ..RunFilter::default()
    };
    assert_eq!(ids(s.list_runs(&page).await.unwrap()), ["r3", "r2"]);
}

const TTL: Duration = Duration::from_secs(30);

pub(crate) async fn stale_epoch_is_fenced(s: Arc<dyn Store>) {
    s.create_run(new_run("r1", "wf", None)).await.unwrap();
    let e = |seq| {
        event(
            "r1",
            seq,
            EventType::NodeStarted,
            Some("a"),
            EventData::default(),
        )
    };
    let a = s.claim_run("r1", "replica-a", TTL).await.unwrap().unwrap();
    assert_eq!(a.epoch, 1);
    assert_eq!(a.owner, "replica-a");
    s.write(&mut batch("r1", a.epoch, vec![running("a", 1)], vec![e(1)]))
        .await
        .unwrap();
    // Without a lease (epoch 0) a write to a claimed run is stale.
    let r = s.write(&mut batch("r1", 0, vec![], vec![e(2)])).await;
    assert!(
        matches!(
            r,
            Err(StoreError::Fenced {
                attempted: 0,
                current: 1,
                ..
            })
        ),
        "{r:?}"
    );
    // Replica b takes the run over (a released it); a's next write is fenced and changes nothing.
    s.release(&a).await.unwrap();
    let b = s.claim_run("r1", "replica-b", TTL).await.unwrap().unwrap();
    assert_eq!(b.epoch, 2);
    let mut stale = batch("r1", a.epoch, vec![running("zombie", 9)], vec![e(2)]);
    stale.run = Some(RunPatch {
        status: RunStatus::Cancelled,
        started_at: None,
        finished_at: None,
        error: None,
    });
    let before = stale.clone();
    let r = s.write(&mut stale).await;
    match r {
        Err(StoreError::Fenced {
            run_id,
            attempted,
            current,
        }) => {
            assert_eq!((run_id.as_str(), attempted, current), ("r1", 1, 2));
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(stale, before);
    let snap = s.load_run("r1").await.unwrap().unwrap();
    assert_eq!(snap.run.status, RunStatus::Pending);
    assert_eq!(snap.nodes.len(), 1);
    assert_eq!(snap.last_seq, 1);
    // The new owner writes on.
    s.write(&mut batch("r1", b.epoch, vec![], vec![e(2)]))
        .await
        .unwrap();
    assert_eq!(s.load_run("r1").await.unwrap().unwrap().last_seq, 2);
}

pub(crate) async fn a_run_that_ends_lets_its_lease_go(s: Arc<dyn Store>) {
    s.create_run(new_run("r1", "wf", None)).await.unwrap();
    let a = s.claim_run("r1", "replica-a", TTL).await.unwrap().unwrap();
    let patch = |status| RunPatch {
        status,
        started_at: None,
        finished_at: None,
        error: None,
    };
    // A write that does not end the run keeps the lease.
    let mut b = batch("r1", a.epoch, vec![running("a", 1)], vec![]);
    b.run = Some(patch(RunStatus::Running));
    s.write(&mut b).await.unwrap();
    assert_eq!(
        s.lease("r1").await.unwrap().map(|l| l.owner),
        Some("replica-a".into())
    );
    // The write that ends it lets the lease go at once (a replica killed right after it leaves
    // no lease behind), and the epoch stays, so a later claim fences the old owner.
    let mut b = batch("r1", a.epoch, vec![], vec![]);
    b.run = Some(patch(RunStatus::Completed));
    s.write(&mut b).await.unwrap();
    assert_eq!(s.lease("r1").await.unwrap(), None);
    // An ended run is not claimed as an active one.
    assert_eq!(
        s.claim_active_run("r1", "replica-b", TTL).await.unwrap(),
        None
    );
    assert_eq!(s.lease("r1").await.unwrap(), None);
    // A retry claims it again with a newer epoch; the old owner's writes are refused.
    let again = s.claim_run("r1", "replica-b", TTL).await.unwrap().unwrap();
    assert_eq!(again.epoch, a.epoch + 1);
    let r = s.write(&mut batch("r1", a.epoch, vec![], vec![])).await;
    assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
    // Releasing the old lease changes nothing.
    s.release(&a).await.unwrap();
    assert_eq!(
        s.lease("r1").await.unwrap().map(|l| (l.owner, l.epoch)),
        Some(("replica-b".into(), again.epoch))
    );
}

pub(crate) async fn concurrent_claimers_never_share_a_run(s: Arc<dyn Store>) {
    const RUNS: usize = 40;
    for i in 0..RUNS {
        s.create_run(new_run(&format!("r{i:03}"), "wf", None))
            .await
            .unwrap();
    }
    // An ended run is never claimed.
    s.create_run(new_run("ended", "wf", None)).await.unwrap();
    let mut b = batch("ended", 0, vec![], vec![]);
    b.run = Some(RunPatch {
        status: RunStatus::Completed,
        started_at: Some(at(0)),
        finished_at: Some(at(1)),
        error: None,
    });
    s.write(&mut b).await.unwrap();

    let mut tasks = Vec::new();
    for c in 0..4 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let owner = format!("claimer-{c}");
            let mut mine: Vec<Lease> = Vec::new();
            loop {
                let got = s.claim_runs(&owner, TTL, 3).await.unwrap();
                if got.is_empty() {
                    break;
                }
                assert!(got.len() <= 3);
                assert!(got.iter().all(|l| l.owner == owner && l.epoch == 1));
                mine.extend(got);
                tokio::task::yield_now().await;
            }
            mine
        }));
    }
    let mut seen = HashSet::new();
    for t in tasks {
        for lease in t.await.unwrap() {
            assert!(
                seen.insert(lease.run_id.to_string()),
                "{} claimed twice",
                lease.run_id
            );
            let stored = s.lease(&lease.run_id).await.unwrap().unwrap();
            assert_eq!(stored, lease);
        }
    }
    assert_eq!(seen.len(), RUNS);
    assert!(!seen.contains("ended"));
    // Nothing is left to claim while the leases live.
    assert!(s.claim_runs("late", TTL, 100).await.unwrap().is_empty());
}

pub(crate) async fn expired_lease_is_taken_over(s: Arc<dyn Store>) {
    s.create_run(new_run("r1", "wf", None)).await.unwrap();
    s.create_run(new_run("r2", "wf", None)).await.unwrap();
    let a = s
        .claim_runs("a", Duration::from_millis(300), 10)
        .await
        .unwrap();
    assert_eq!(
        a.iter().map(|l| &*l.run_id).collect::<Vec<_>>(),
        ["r1", "r2"]
    );
    assert!(s.claim_runs("b", TTL, 10).await.unwrap().is_empty());
    assert_eq!(s.claim_run("r1", "b", TTL).await.unwrap(), None);
    tokio::time::sleep(Duration::from_millis(400)).await;
    let b = s.claim_runs("b", TTL, 1).await.unwrap();
    assert_eq!(b.len(), 1);
    assert_eq!(&*b[0].run_id, "r1");
    assert_eq!(b[0].owner, "b");
    assert_eq!(b[0].epoch, 2, "a takeover raises the epoch");
    assert!(b[0].expires_at > Utc::now() + chrono::Duration::seconds(20));
    let b2 = s.claim_run("r2", "b", TTL).await.unwrap().unwrap();
    assert_eq!(b2.epoch, 2);
    // a lost both: renewing returns nothing, writing is fenced.
    assert!(s.renew("a", &a, TTL).await.unwrap().is_empty());
    let r = s
        .write(&mut batch(
            "r1",
            a[0].epoch,
            vec![],
            vec![event(
                "r1",
                1,
                EventType::WorkflowStarted,
                None,
                EventData::default(),
            )],
        ))
        .await;
    assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
    // a's release of a lease it no longer holds changes nothing.
    s.release(&a[0]).await.unwrap();
    assert_eq!(s.lease("r1").await.unwrap(), Some(b[0].clone()));
}

pub(crate) async fn renew_release_and_claim_run(s: Arc<dyn Store>) {
    s.create_run(new_run("r1", "wf", None)).await.unwrap();
    s.create_run(new_run("r2", "wf", None)).await.unwrap();
    assert_eq!(s.lease("r1").await.unwrap(), None);
    assert_eq!(s.lease("nope").await.unwrap(), None);
    let r = s.claim_run("nope", "a", TTL).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");

    let l1 = s
        .claim_run("r1", "a", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    let l2 = s
        .claim_run("r2", "a", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(s.lease("r1").await.unwrap(), Some(l1.clone()));
    // Another owner cannot claim a live lease; the owner itself can (and the epoch rises).
    assert_eq!(s.claim_run("r1", "b", TTL).await.unwrap(), None);
    let l1b = s
        .claim_run("r1", "a", Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(l1b.epoch, l1.epoch + 1);
    // Renewing: only leases still held at their epoch, in the order asked.
    let renewed = s
        .renew("a", &[l2.clone(), l1.clone(), l1b.clone()], TTL)
        .await
        .unwrap();
    assert_eq!(
        renewed
            .iter()
            .map(|l| (&*l.run_id, l.epoch))
            .collect::<Vec<_>>(),
        [("r2", 1), ("r1", 2)]
    );
    assert!(
        renewed
            .iter()
            .all(|l| l.expires_at > Utc::now() + chrono::Duration::seconds(20))
    );
    assert!(renewed[0].expires_at >= l2.expires_at);
    assert_eq!(s.lease("r2").await.unwrap(), Some(renewed[0].clone()));
    assert!(
        s.renew("b", std::slice::from_ref(&l2), TTL)
            .await
            .unwrap()
            .is_empty(),
        "not b's"
    );
    // Releasing: the wrong owner or epoch is ignored; the holder frees the run.
    s.release(&Lease {
        owner: "b".into(),
        ..l2.clone()
    })
    .await
    .unwrap();
    s.release(&l1).await.unwrap();
    assert!(s.lease("r2").await.unwrap().is_some());
    assert!(s.lease("r1").await.unwrap().is_some());
    s.release(&l2).await.unwrap();
    assert_eq!(s.lease("r2").await.unwrap(), None);
    // A released run is claimable at once, with a higher epoch.
    let again = s.claim_runs("b", TTL, 10).await.unwrap();
    assert_eq!(
        again
            .iter()
            .map(|l| (&*l.run_id, l.epoch))
            .collect::<Vec<_>>(),
        [("r2", 2)]
    );
    // An ended run is not offered to claimers, but can be claimed by id (to retry it).
    let mut end = batch("r2", 2, vec![], vec![]);
    end.run = Some(RunPatch {
        status: RunStatus::Cancelled,
        started_at: None,
        finished_at: Some(at(5)),
        error: Some("cancelled by a user".into()),
    });
    s.write(&mut end).await.unwrap();
    s.release(&again[0]).await.unwrap();
    assert!(s.claim_runs("b", TTL, 10).await.unwrap().is_empty());
    let retry = s.claim_run("r2", "b", TTL).await.unwrap().unwrap();
    assert_eq!(retry.epoch, 3);
}

pub(crate) async fn concurrent_writes_of_many_runs(s: Arc<dyn Store>) {
    const RUNS: usize = 24;
    const TURNS: u64 = 5;
    for i in 0..RUNS {
        s.create_run(new_run(&format!("r{i}"), "wf", None))
            .await
            .unwrap();
    }
    // One run is claimed by someone else: its writes (epoch 0) are fenced; the others' are not.
    s.claim_run("r7", "other", TTL).await.unwrap().unwrap();
    let mut tasks = Vec::new();
    for i in 0..RUNS {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("r{i}");
            for t in 1..=TURNS {
                let mut b = batch(
                    &id,
                    0,
                    vec![running(&format!("n{t}"), t as u32)],
                    vec![
                        event(
                            &id,
                            2 * t - 1,
                            EventType::NodeStarted,
                            Some("n"),
                            EventData::default(),
                        ),
                        event(
                            &id,
                            2 * t,
                            EventType::NodeCompleted,
                            Some("n"),
                            EventData::default(),
                        ),
                    ],
                );
                let r = s.write(&mut b).await;
                if i == 7 {
                    assert!(matches!(r, Err(StoreError::Fenced { .. })), "{r:?}");
                    return;
                }
                r.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    for i in 0..RUNS {
        let snap = s.load_run(&format!("r{i}")).await.unwrap().unwrap();
        if i == 7 {
            assert_eq!(snap.last_seq, 0);
            continue;
        }
        assert_eq!(snap.last_seq, 2 * TURNS);
        assert_eq!(snap.nodes.len(), TURNS as usize);
        let seqs: Vec<u64> = s
            .events(&format!("r{i}"), 0, 100)
            .await
            .unwrap()
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(seqs, (1..=2 * TURNS).collect::<Vec<_>>());
    }
}
