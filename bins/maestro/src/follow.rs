//! Following a run's events live over Server-Sent Events (`GET /api/v1/runs/{id}/events` with
//! `Accept: text/event-stream`): an incremental SSE parser, and [`follow`], which reconnects
//! with `Last-Event-ID` after a dropped connection and stops after the run's terminal event.

use std::time::Duration;

use http_body_util::BodyExt;
use maestro_dag::{EventType, RunStatus};
use serde_json::Value;

use crate::client::{Client, segment};
use crate::exit::{self, Failure};

/// Longest silence on an open stream before it is considered dead (the server sends a
/// keep-alive comment every 15 s).
const IDLE: Duration = Duration::from_secs(45);
/// How often the sink's display is refreshed while waiting.
const TICK: Duration = Duration::from_millis(200);
/// Consecutive failed connection attempts before giving up.
const MAX_FAILURES: u32 = 15;

/// What receives the events of a followed run.
pub(crate) trait Sink {
    /// One event (the wire shape `{seq, type, workflow_id, run_id, node_id, data, timestamp}`),
    /// in sequence order, each once.
    fn event(&mut self, event: &Value) -> Result<(), Failure>;
    /// Called a few times a second while the stream is open, to refresh a display.
    fn tick(&mut self) {}
    /// The connection dropped and will be resumed (a note for the user).
    fn reconnecting(&mut self, _why: &str) {}
}

/// The run status a terminal event type (`workflow_completed`, …) ends the run with; `None` for
/// every other type.
fn terminal_status(kind: &str) -> Option<RunStatus> {
    let kind = EventType::parse(kind).filter(|k| k.is_terminal())?;
    RunStatus::parse(kind.as_str().trim_start_matches("workflow_"))
}

/// A run status of the wire, when it is final.
fn final_status(status: Option<&str>) -> Option<RunStatus> {
    status
        .and_then(RunStatus::parse)
        .filter(|s| s.is_terminal())
}

/// An incremental parser of `text/event-stream`: feed it bytes, take the `data` of each
/// complete event with its `id`.
#[derive(Default)]
pub(crate) struct SseParser {
    buffer: Vec<u8>,
    data: String,
    id: Option<String>,
}

/// One dispatched SSE event.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SseEvent {
    /// The `id:` field, if any.
    pub(crate) id: Option<String>,
    /// The `data:` lines, joined by `\n`.
    pub(crate) data: String,
}

impl SseParser {
    /// Adds bytes; returns the events they complete.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Vec<SseEvent> {
        self.buffer.extend_from_slice(bytes);
        let mut out = Vec::new();
        while let Some(end) = self.buffer.iter().position(|&b| b == b'\n') {
            let raw: Vec<u8> = self.buffer.drain(..=end).collect();
            let line = String::from_utf8_lossy(&raw[..raw.len() - 1]);
            let line = line.strip_suffix('\r').unwrap_or(&line);
            if line.is_empty() {
                if !self.data.is_empty() {
                    out.push(SseEvent {
                        id: self.id.take(),
                        data: std::mem::take(&mut self.data),
                    });
                }
                self.id = None;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = line.split_once(':').unwrap_or((line, ""));
            let value = value.strip_prefix(' ').unwrap_or(value);
            match field {
                "data" => {
                    if !self.data.is_empty() {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                }
                "id" => self.id = Some(value.to_string()),
                _ => {}
            }
        }
        out
    }
}

/// How following ended.
pub(crate) struct Followed {
    /// The run's final status (`completed`, `failed` or `cancelled`), as the stream ended it:
    /// the run may since have been retried.
    pub(crate) status: RunStatus,
}

/// Follows the events of `run_id` after `after` until the run ends, resuming after dropped
/// connections; every event reaches `sink` once, in order.
pub(crate) async fn follow(
    client: &Client,
    run_id: &str,
    after: u64,
    sink: &mut dyn Sink,
) -> Result<Followed, Failure> {
    let events_path = format!("/api/v1/runs/{}/events", segment(run_id));
    let run_path = format!("/api/v1/runs/{}", segment(run_id));
    let mut last = after;

    // A finished run whose events were all seen already: the stream would only idle.
    let run = client.get(&run_path).await?;
    if let Some(status) = final_status(run["status"].as_str())
        && run["last_seq"].as_u64().is_some_and(|s| s <= last)
    {
        return Ok(Followed { status });
    }

    let mut failures = 0u32;
    loop {
        let why = match client.open_stream(&events_path, last).await {
            Ok(mut body) => {
                failures = 0;
                let mut parser = SseParser::default();
                let mut ticker = tokio::time::interval(TICK);
                let mut idle = Box::pin(tokio::time::sleep(IDLE));
                loop {
                    tokio::select! {
                        frame = body.frame() => {
                            let bytes = match frame {
                                None => break "the server closed the stream".to_string(),
                                Some(Err(e)) => break format!("the stream broke off: {e}"),
                                Some(Ok(frame)) => match frame.into_data() {
                                    Ok(b) => b,
                                    Err(_) => continue,
                                },
                            };
                            idle.as_mut().reset(tokio::time::Instant::now() + IDLE);
                            for sse in parser.feed(&bytes) {
                                let event: Value = serde_json::from_str(&sse.data).map_err(|e| {
                                    Failure::new(exit::PROTOCOL, format!("an event is not JSON: {e}"))
                                })?;
                                let Some(seq) = event["seq"].as_u64() else {
                                    return Err(Failure::new(exit::PROTOCOL, "an event has no `seq`"));
                                };
                                if seq <= last {
                                    continue;
                                }
                                sink.event(&event)?;
                                last = seq;
                                if let Some(status) =
                                    terminal_status(event["type"].as_str().unwrap_or_default())
                                {
                                    return Ok(Followed { status });
                                }
                            }
                        }
                        _ = ticker.tick() => sink.tick(),
                        () = &mut idle => break format!("no data for {}s", IDLE.as_secs()),
                    }
                }
            }
            Err(f) if f.code == exit::UNAVAILABLE => f.lines.join("; "),
            Err(f) => return Err(f),
        };
        failures += 1;
        if failures > MAX_FAILURES {
            return Err(Failure::new(
                exit::UNAVAILABLE,
                format!("gave up following run {run_id} after {MAX_FAILURES} attempts: {why}"),
            ));
        }
        // Ended meanwhile with nothing left to see (e.g. the stream broke after the last event)?
        if let Ok(run) = client.get(&run_path).await
            && let Some(status) = final_status(run["status"].as_str())
            && run["last_seq"].as_u64().is_some_and(|s| s <= last)
        {
            return Ok(Followed { status });
        }
        sink.reconnecting(&why);
        let delay = Duration::from_millis(250 * u64::from(failures.min(8)));
        tokio::time::sleep(delay).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_frames_are_parsed_across_chunks() {
        let mut p = SseParser::default();
        assert!(
            p.feed(b"retry: 2000\n\n: keep-alive\n\nid: 7\nda")
                .is_empty()
        );
        let events = p.feed(b"ta: {\"seq\":7}\r\n\r\nid: 8\ndata: a\ndata: b\n\n");
        assert_eq!(
            events,
            [
                SseEvent {
                    id: Some("7".into()),
                    data: "{\"seq\":7}".into()
                },
                SseEvent {
                    id: Some("8".into()),
                    data: "a\nb".into()
                },
            ]
        );
    }

    #[test]
    fn terminal_types_and_statuses() {
        assert_eq!(terminal_status("workflow_failed"), Some(RunStatus::Failed));
        assert_eq!(
            terminal_status("workflow_completed"),
            Some(RunStatus::Completed)
        );
        assert_eq!(
            terminal_status("workflow_cancelled"),
            Some(RunStatus::Cancelled)
        );
        assert_eq!(terminal_status("workflow_paused"), None);
        assert_eq!(terminal_status("node_failed"), None);
        assert_eq!(terminal_status("bogus"), None);
        assert_eq!(final_status(Some("cancelled")), Some(RunStatus::Cancelled));
        assert_eq!(final_status(Some("paused")), None);
        assert_eq!(final_status(None), None);
    }
}
