//! Crash tests (DESIGN §9): a child process (`maestro-store-crash`) drives 20 runs against a
//! durable store and is SIGKILLed at random moments, at least 20 times per backend; then a fresh
//! process resumes every run to completion. Side effects counted outside the store show that
//! no node the store had as completed ran again, that a node ran at most once per process (so
//! a node in flight at a kill ran at most twice around it), and the event logs are gap-free.

use std::collections::{HashMap, HashSet};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use maestro_dag::store::{RunFilter, Store};
use maestro_dag::{EventType, RunStatus};
use maestro_store::{DurableStore, StoreOptions};

use crate::support::{TestDatabase, temp_path};

const RUNS: usize = 20;
const KILLS: usize = 22;
const NODES: usize = 24;

fn child(url: &str, effects: &str, incarnation: usize) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_maestro-store-crash"));
    c.args([url, effects, &RUNS.to_string(), &incarnation.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit());
    c
}

fn size(path: &str) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

/// Kills children KILLS times at random moments while they work (once a child has executed
/// something, after a random further delay), then lets a last one finish.
async fn crash_and_resume(url: &str, effects: &str) {
    let mut kills = 0;
    for k in 0..3 * KILLS {
        let before = size(effects);
        let mut c = child(url, effects, k).spawn().expect("start the child");
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut exited = false;
        // Wait for work (or the end of all work).
        while size(effects) == before && Instant::now() < deadline {
            if c.try_wait().unwrap().is_some() {
                exited = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if !exited {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..60))).await;
            exited = c.try_wait().unwrap().is_some();
        }
        let _ = c.kill(); // SIGKILL
        let status = c.wait().unwrap();
        if exited {
            // Nothing left to do: every run is complete.
            assert!(status.success(), "child {k} failed: {status}");
            break;
        }
        kills += 1;
        if kills == KILLS {
            break;
        }
    }
    assert_eq!(kills, KILLS, "the work ran out before {KILLS} kills");
    let started = Instant::now();
    let out = tokio::task::spawn_blocking({
        let mut c = child(url, effects, 3 * KILLS);
        move || c.output().expect("run the final child")
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "the final process failed after {:?}: {}",
        started.elapsed(),
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn verify(store: Arc<dyn Store>, effects: &str) {
    let text = std::fs::read_to_string(effects).unwrap();
    // executions[(run, node)] = incarnations that executed it, in order.
    let mut executions: HashMap<(String, String), Vec<usize>> = HashMap::new();
    // completed_seen[incarnation] = (run, node) loaded as completed before resuming.
    let mut completed_seen: HashMap<usize, HashSet<(String, String)>> = HashMap::new();
    for line in text.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let [kind, inc, run, node] = parts[..] else {
            // A line cut by a kill mid-write: only possible for the last line of a process.
            continue;
        };
        let Ok(inc) = inc.parse::<usize>() else {
            continue;
        };
        let key = (run.to_string(), node.to_string());
        match kind {
            "X" => executions.entry(key).or_default().push(inc),
            "C" => {
                completed_seen.entry(inc).or_default().insert(key);
            }
            _ => {}
        }
    }
    let runs = store
        .list_runs(&RunFilter {
            limit: 1000,
            ..RunFilter::default()
        })
        .await
        .unwrap();
    assert_eq!(runs.len(), RUNS);
    let mut twice = 0;
    for run in &runs {
        assert_eq!(run.status, RunStatus::Completed, "run {}", run.run_id);
        let snap = store.load_run(&run.run_id).await.unwrap().unwrap();
        assert_eq!(snap.nodes.len(), NODES);
        for n in &snap.nodes {
            let key = (run.run_id.to_string(), n.node_id.to_string());
            let incs = executions.get(&key).cloned().unwrap_or_default();
            assert!(!incs.is_empty(), "{key:?} completed without executing");
            // At most once per process: a node runs again only after a crash.
            let distinct: HashSet<_> = incs.iter().collect();
            assert_eq!(
                distinct.len(),
                incs.len(),
                "{key:?} ran twice in one process: {incs:?}"
            );
            // Never again once the store had it completed.
            for inc in &incs {
                let done_before = completed_seen.get(inc).is_some_and(|s| s.contains(&key));
                assert!(
                    !done_before,
                    "{key:?} was completed in the store, yet ran again in process {inc}"
                );
            }
            if incs.len() > 1 {
                twice += 1;
            }
        }
        let events = store.events(&run.run_id, 0, 100_000).await.unwrap();
        let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=events.len() as u64).collect::<Vec<_>>(),
            "gap-free, no duplicates"
        );
        assert_eq!(snap.last_seq, events.len() as u64);
        let completions = events
            .iter()
            .filter(|e| e.kind == EventType::NodeCompleted)
            .count();
        assert_eq!(
            completions, NODES,
            "one node_completed per node in run {}",
            run.run_id
        );
        assert_eq!(events.last().unwrap().kind, EventType::WorkflowCompleted);
    }
    let working: HashSet<usize> = executions.values().flatten().copied().collect();
    eprintln!(
        "crash test: {} node executions in {} processes, {twice} nodes re-executed after a kill",
        executions.values().map(Vec::len).sum::<usize>(),
        working.len()
    );
    assert!(
        working.len() > KILLS / 2,
        "the kills did not interrupt work"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_survives_sigkill() {
    let path = temp_path("db");
    let effects = temp_path("effects");
    let url = format!("sqlite://{path}");
    crash_and_resume(&url, &effects).await;
    let store = maestro_store::SqliteStore::new(&path, StoreOptions::default()).unwrap();
    verify(Arc::new(store), &effects).await;
    for f in [
        path.clone(),
        format!("{path}-wal"),
        format!("{path}-shm"),
        effects,
    ] {
        let _ = std::fs::remove_file(f);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_survives_sigkill() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let effects = temp_path("effects");
    crash_and_resume(&db.url, &effects).await;
    let store = maestro_store::PgStore::new(&db.url, StoreOptions::default()).unwrap();
    store.ping().await.unwrap();
    verify(Arc::new(store), &effects).await;
    let _ = std::fs::remove_file(effects);
    db.drop_it().await;
}
