//! `maestro run --watch`: the live view of a run. On a terminal, an indicatif display (an
//! overall bar and one line per node with its status, attempt and duration; past
//! [`MAX_NODE_LINES`] nodes, the busiest ones and a summary line); otherwise one plain line per
//! node transition on stderr. Then a summary table of the final run.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::time::Duration;

use chrono::{DateTime, Utc};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;

use crate::exit::{Failure, truncate};
use crate::follow::Sink;
use crate::output::{self, Table, clean, human_duration, timestamp};

/// Per-node lines shown at most; larger workflows show the most relevant nodes and a summary.
pub(crate) const MAX_NODE_LINES: usize = 20;

/// What the view knows of one node.
#[derive(Debug, Clone, Default)]
struct NodeView {
    status: String,
    attempt: u64,
    max_attempts: u64,
    started: Option<DateTime<Utc>>,
    finished: Option<DateTime<Utc>>,
    note: Option<String>,
    /// Sequence number of the last change, to show recent nodes first in a capped view.
    changed: u64,
}

impl NodeView {
    fn duration(&self) -> Option<i64> {
        let start = self.started?;
        let end = self.finished.unwrap_or_else(Utc::now);
        Some((end - start).num_milliseconds())
    }

    fn is_active(&self) -> bool {
        matches!(
            self.status.as_str(),
            "running" | "retrying" | "waiting_approval"
        )
    }

    fn is_done(&self) -> bool {
        matches!(
            self.status.as_str(),
            "completed" | "failed" | "skipped" | "cancelled"
        )
    }

    /// `running · attempt 2/3 · 1.25s`, or the like; `live` shows the time so far of an
    /// unfinished node (not in plain lines, which are written once).
    fn describe(&self, live: bool) -> String {
        let mut parts = vec![self.status.clone()];
        if self.attempt > 0 {
            if self.max_attempts > 1 {
                parts.push(format!("attempt {}/{}", self.attempt, self.max_attempts));
            } else {
                parts.push(format!("attempt {}", self.attempt));
            }
        }
        if (live || self.finished.is_some())
            && let Some(ms) = self.duration()
        {
            parts.push(human_duration(ms));
        }
        if let Some(note) = &self.note {
            parts.push(truncate(note, 80));
        }
        parts.join(" · ")
    }
}

fn symbol(status: &str) -> &'static str {
    match status {
        "completed" => "✔",
        "failed" => "✘",
        "skipped" => "↷",
        "cancelled" => "■",
        "running" => "▶",
        "retrying" => "↻",
        "waiting_approval" => "⏸",
        _ => "·",
    }
}

/// How the progress is shown. Every string of the server (node ids, errors, the workflow id)
/// is [`clean`]ed on its way to the terminal.
enum Display {
    /// indicatif on the terminal (stderr).
    Bars {
        multi: MultiProgress,
        overall: ProgressBar,
        lines: Vec<ProgressBar>,
        summary: Option<ProgressBar>,
    },
    /// One line per transition on stderr.
    Plain,
}

/// The live view of one run.
pub(crate) struct RunWatch {
    run_id: String,
    order: Vec<String>,
    nodes: HashMap<String, NodeView>,
    run_status: String,
    run_started: Option<DateTime<Utc>>,
    width: usize,
    display: Display,
}

impl RunWatch {
    /// A view of `run` (the `GET /api/v1/runs/{id}` document), its nodes in `order`.
    pub(crate) fn new(run: &Value, order: Vec<String>) -> Self {
        let run_id = run["run_id"].as_str().unwrap_or_default().to_string();
        let mut nodes: HashMap<String, NodeView> = order
            .iter()
            .map(|id| {
                (
                    id.clone(),
                    NodeView {
                        status: "pending".into(),
                        ..NodeView::default()
                    },
                )
            })
            .collect();
        // The stream replays every event from the start; the document only seeds the list.
        for id in &order {
            nodes.entry(id.clone()).or_default();
        }
        let width = order
            .iter()
            .map(|id| clean(id).chars().count())
            .max()
            .unwrap_or(4);
        let interactive = std::io::stderr().is_terminal();
        let display = if interactive {
            Self::bars(&run_id, run, &order)
        } else {
            Display::Plain
        };
        let watch = Self {
            run_id,
            order,
            nodes,
            run_status: run["status"].as_str().unwrap_or("pending").to_string(),
            run_started: None,
            width,
            display,
        };
        watch.redraw();
        watch
    }

    fn bars(run_id: &str, run: &Value, order: &[String]) -> Display {
        let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
        let overall = multi.add(ProgressBar::new(order.len() as u64));
        overall.set_style(
            ProgressStyle::with_template(
                "{spinner:.cyan} {prefix:.bold} [{wide_bar:.cyan/blue}] {pos}/{len} nodes · {msg}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        overall.set_prefix(
            clean(&format!(
                "{} {}",
                run["workflow_id"].as_str().unwrap_or("run"),
                short_id(run_id)
            ))
            .into_owned(),
        );
        overall.enable_steady_tick(Duration::from_millis(120));
        let line_style = ProgressStyle::with_template("  {msg}").expect("a valid template");
        let shown = order.len().min(MAX_NODE_LINES);
        let lines = (0..shown)
            .map(|_| {
                let bar = multi.add(ProgressBar::new(1));
                bar.set_style(line_style.clone());
                bar
            })
            .collect();
        let summary = (order.len() > MAX_NODE_LINES).then(|| {
            let bar = multi.add(ProgressBar::new(1));
            bar.set_style(line_style);
            bar
        });
        Display::Bars {
            multi,
            overall,
            lines,
            summary,
        }
    }

    /// Counts of nodes by status, in a stable order, `completed 3 · running 1 · …`.
    fn counts(&self) -> String {
        let mut counts: Vec<(&str, usize)> = Vec::new();
        for status in [
            "completed",
            "running",
            "retrying",
            "waiting_approval",
            "failed",
            "skipped",
            "cancelled",
            "pending",
        ] {
            let n = self.nodes.values().filter(|n| n.status == status).count();
            if n > 0 {
                counts.push((status, n));
            }
        }
        counts
            .iter()
            .map(|(s, n)| format!("{s} {n}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }

    /// The nodes to show in a capped view: active first, then the most recently changed, then
    /// the rest in definition order.
    fn shown(&self, slots: usize) -> Vec<&str> {
        if self.order.len() <= slots {
            return self.order.iter().map(String::as_str).collect();
        }
        let mut ids: Vec<(usize, &str)> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, id)| (i, id.as_str()))
            .collect();
        ids.sort_by_key(|(i, id)| {
            let n = &self.nodes[*id];
            let rank = if n.is_active() {
                0
            } else if n.status == "failed" {
                1
            } else if n.changed > 0 {
                2
            } else {
                3
            };
            (rank, std::cmp::Reverse(n.changed), *i)
        });
        ids.into_iter().take(slots).map(|(_, id)| id).collect()
    }

    fn redraw(&self) {
        let Display::Bars {
            overall,
            lines,
            summary,
            ..
        } = &self.display
        else {
            return;
        };
        let done = self.nodes.values().filter(|n| n.is_done()).count();
        overall.set_position(done as u64);
        let elapsed = self
            .run_started
            .map(|t| format!(" · {}", human_duration((Utc::now() - t).num_milliseconds())))
            .unwrap_or_default();
        overall.set_message(format!("{}{elapsed}", clean(&self.run_status)));
        for (bar, id) in lines.iter().zip(self.shown(lines.len())) {
            let n = &self.nodes[id];
            bar.set_message(format!(
                "{} {:<w$}  {}",
                symbol(&n.status),
                clean(id),
                clean(&n.describe(true)),
                w = self.width
            ));
        }
        if let Some(summary) = summary {
            summary.set_message(format!(
                "… {} nodes in all: {}",
                self.order.len(),
                self.counts()
            ));
        }
    }

    /// A plain line for a transition, `[+1.25s] node status · details`.
    fn plain(&self, at: Option<DateTime<Utc>>, subject: &str, what: &str) {
        let offset = match (self.run_started, at) {
            (Some(start), Some(at)) => {
                format!("+{}", human_duration((at - start).num_milliseconds()))
            }
            _ => "+0ms".into(),
        };
        eprintln!(
            "[{offset:>8}] {:<w$}  {}",
            clean(subject),
            clean(what),
            w = self.width.max(3)
        );
    }

    /// Clears the live display (before the summary is printed).
    pub(crate) fn finish(&self) {
        if let Display::Bars {
            multi,
            overall,
            lines,
            summary,
        } = &self.display
        {
            self.redraw();
            overall.finish();
            for bar in lines.iter().chain(summary) {
                bar.finish();
            }
            let _ = multi.clear();
        }
    }
}

impl Sink for RunWatch {
    fn event(&mut self, event: &Value) -> Result<(), Failure> {
        let kind = event["type"].as_str().unwrap_or_default();
        let at = timestamp(&event["timestamp"]);
        let seq = event["seq"].as_u64().unwrap_or(0);
        let data = &event["data"];
        if let Some(node_id) = event["node_id"].as_str() {
            if !self.nodes.contains_key(node_id) {
                self.order.push(node_id.to_string());
                self.width = self.width.max(clean(node_id).chars().count());
            }
            let n = self.nodes.entry(node_id.to_string()).or_default();
            n.changed = seq;
            let attempt = data["attempt"].as_u64();
            match kind {
                "node_started" => {
                    n.status = "running".into();
                    n.attempt = attempt.unwrap_or(n.attempt + 1);
                    n.max_attempts = data["max_attempts"].as_u64().unwrap_or(n.max_attempts);
                    // Like the run document: the duration of the latest attempt.
                    n.started = at;
                    n.finished = None;
                    n.note = None;
                }
                "node_retry" => {
                    n.status = "retrying".into();
                    n.note = data["error"].as_str().map(str::to_string);
                }
                "node_completed" => {
                    n.status = "completed".into();
                    n.finished = at;
                    n.note = None;
                }
                "node_failed" => {
                    n.status = "failed".into();
                    n.finished = at;
                    n.note = data["error"]
                        .as_str()
                        .or(data["reason"].as_str())
                        .map(str::to_string);
                }
                "node_skipped" => {
                    n.status = "skipped".into();
                    n.finished = at;
                    n.note = data["reason"].as_str().map(str::to_string);
                }
                "node_waiting_approval" => {
                    n.status = "waiting_approval".into();
                    n.note = Some(format!("maestro runs approve {} {node_id}", self.run_id));
                }
                other => n.status = other.trim_start_matches("node_").to_string(),
            }
            if let Some(attempt) = attempt {
                n.attempt = n.attempt.max(attempt);
            }
            if matches!(self.display, Display::Plain) {
                let what = n.describe(false);
                let n_id = node_id.to_string();
                self.plain(at, &n_id, &what);
            }
        } else {
            let status = kind.trim_start_matches("workflow_");
            self.run_status = match status {
                "started" | "resumed" => "running".into(),
                other => other.to_string(),
            };
            if kind == "workflow_started" && self.run_started.is_none() {
                self.run_started = at;
            }
            if kind == "workflow_cancelled" {
                for n in self.nodes.values_mut() {
                    if !n.is_done() {
                        n.status = "cancelled".into();
                    }
                }
            }
            if matches!(self.display, Display::Plain) {
                self.plain(at, "run", status);
            }
        }
        self.redraw();
        Ok(())
    }

    fn tick(&mut self) {
        self.redraw();
    }

    fn reconnecting(&mut self, why: &str) {
        match &self.display {
            Display::Bars { multi, .. } => {
                let _ = multi.println(format!("connection lost ({}); resuming", clean(why)));
            }
            Display::Plain => eprintln!("connection lost ({}); resuming", clean(why)),
        }
    }
}

/// The first block of a UUID, enough to tell runs apart on screen.
fn short_id(id: &str) -> &str {
    id.split('-').next().unwrap_or(id)
}

/// Node ids of a run document in `order` (the definition's), then any others sorted.
pub(crate) fn node_order(run: &Value, definition_order: Option<Vec<String>>) -> Vec<String> {
    let mut order = definition_order.unwrap_or_default();
    if let Some(nodes) = run["nodes"].as_object() {
        let mut rest: Vec<&String> = nodes.keys().filter(|k| !order.contains(k)).collect();
        rest.sort_by_key(|k| {
            (
                nodes[*k]["started_at"].as_str().unwrap_or("~").to_string(),
                (*k).clone(),
            )
        });
        order.extend(rest.into_iter().cloned());
    }
    order
}

/// The summary table of a run document: node, status, attempts, duration, error.
pub(crate) fn summary_table(run: &Value, order: &[String]) -> Table {
    let mut table = Table::new(&["NODE", "STATUS", "ATTEMPTS", "DURATION", "ERROR"]);
    for id in order {
        let n = &run["nodes"][id];
        if n.is_null() {
            continue;
        }
        let problem = n["error"]
            .as_str()
            .or(n["reason"].as_str())
            .map_or_else(|| "-".into(), |e| truncate(e, 100));
        table.row(vec![
            id.clone(),
            output::text(&n["status"]),
            n["attempts"].as_u64().unwrap_or(0).to_string(),
            if n["started_at"].is_null() {
                "-".into()
            } else {
                output::duration_between(&n["started_at"], &n["finished_at"])
            },
            problem,
        ]);
    }
    table
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn nodes_follow_their_events() {
        let run = json!({"run_id": "r-1", "workflow_id": "w", "status": "running",
            "nodes": {"a": {"status": "pending"}, "b": {"status": "pending"}}});
        let mut w = RunWatch::new(&run, node_order(&run, Some(vec!["b".into(), "a".into()])));
        assert_eq!(w.order, ["b", "a"]);
        let ev = |seq: u64, kind: &str, node: Option<&str>, data: Value| {
            json!({"seq": seq, "type": kind, "node_id": node, "data": data,
                   "timestamp": format!("2026-11-26T19:24:0{seq}.000Z")})
        };
        w.event(&ev(1, "workflow_started", None, json!({})))
            .unwrap();
        w.event(&ev(
            2,
            "node_started",
            Some("b"),
            json!({"attempt": 1, "max_attempts": 3}),
        ))
        .unwrap();
        w.event(&ev(
            3,
            "node_retry",
            Some("b"),
            json!({"attempt": 1, "error": "boom"}),
        ))
        .unwrap();
        w.event(&ev(4, "node_started", Some("b"), json!({"attempt": 2})))
            .unwrap();
        w.event(&ev(5, "node_completed", Some("b"), json!({"attempt": 2})))
            .unwrap();
        let b = &w.nodes["b"];
        assert_eq!(
            (b.status.as_str(), b.attempt, b.max_attempts),
            ("completed", 2, 3)
        );
        assert_eq!(b.describe(true), "completed · attempt 2/3 · 1.00s");
        w.event(&ev(6, "workflow_cancelled", None, json!({})))
            .unwrap();
        assert_eq!(w.nodes["a"].status, "cancelled");
        assert_eq!(w.run_status, "cancelled");
    }

    #[test]
    fn capped_views_show_active_nodes_first() {
        let order: Vec<String> = (0..30).map(|i| format!("n{i}")).collect();
        let run = json!({"run_id": "r", "status": "running"});
        let mut w = RunWatch::new(&run, order);
        w.event(&json!({"seq": 1, "type": "node_started", "node_id": "n25", "data": {"attempt": 1}, "timestamp": "2026-11-26T19:24:00Z"})).unwrap();
        w.event(&json!({"seq": 2, "type": "node_completed", "node_id": "n3", "data": {}, "timestamp": "2026-11-26T19:24:00Z"})).unwrap();
        let shown = w.shown(MAX_NODE_LINES);
        assert_eq!(shown.len(), MAX_NODE_LINES);
        assert_eq!(&shown[..3], ["n25", "n3", "n0"]);
        assert_eq!(w.counts(), "completed 1 · running 1 · pending 28");
    }

    #[test]
    fn summaries_list_every_node() {
        let run = json!({"nodes": {
            "a": {"status": "completed", "attempts": 1, "started_at": "2026-11-26T19:24:00Z", "finished_at": "2026-11-26T19:24:00.250Z", "error": null},
            "b": {"status": "failed", "attempts": 2, "started_at": "2026-11-26T19:24:01Z", "finished_at": "2026-11-26T19:24:02Z", "error": "boom"},
            "c": {"status": "skipped", "attempts": 0, "started_at": null, "finished_at": null, "error": null, "reason": "upstream failed"}
        }});
        let text = summary_table(&run, &node_order(&run, None)).render();
        assert_eq!(
            text,
            "NODE  STATUS     ATTEMPTS  DURATION  ERROR\n\
             a     completed  1         250ms     -\n\
             b     failed     2         1.00s     boom\n\
             c     skipped    0         -         upstream failed\n"
        );
    }
}
