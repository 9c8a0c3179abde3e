//! Exit codes a script can rely on, and [`Failure`]: an error ready to be reported on stderr
//! with the code the process exits with.

use std::fmt::Write as _;

use serde_json::Value;

/// Success.
pub(crate) const SUCCESS: u8 = 0;
/// The run (or the watched or followed run) ended `failed` or `cancelled`.
pub(crate) const RUN_FAILED: u8 = 1;
/// A usage error: bad flags or arguments (clap exits with it too).
pub(crate) const USAGE: u8 = 2;
/// The workflow, run or node does not exist (HTTP 404).
pub(crate) const NOT_FOUND: u8 = 3;
/// The request conflicts with the current state, e.g. cancelling a finished run (HTTP 409).
pub(crate) const CONFLICT: u8 = 4;
/// The definition (or other data sent) is invalid: validation problems, HTTP 422 and other 4xx
/// (sysexits `EX_DATAERR`).
pub(crate) const DATA: u8 = 65;
/// An input file cannot be read (sysexits `EX_NOINPUT`).
pub(crate) const NO_INPUT: u8 = 66;
/// The server is unreachable, timed out, or answered 5xx (sysexits `EX_UNAVAILABLE`).
pub(crate) const UNAVAILABLE: u8 = 69;
/// The server's answer is not what this client understands (sysexits `EX_SOFTWARE`).
pub(crate) const PROTOCOL: u8 = 70;
/// Writing the output failed (sysexits `EX_IOERR`).
pub(crate) const IO: u8 = 74;
/// The server refused the token, or no token was given (HTTP 401/403; sysexits `EX_NOPERM`).
pub(crate) const NO_PERMISSION: u8 = 77;

/// The exit codes, for `--help`.
pub(crate) const HELP: &str = "\
Exit codes:
  0   success
  1   the run ended failed or cancelled (run --watch, events --follow)
  2   usage error (bad flags or arguments)
  3   not found (HTTP 404: workflow, run or node)
  4   conflict (HTTP 409: e.g. the run's status does not allow the action)
  65  invalid definition or data (validation problems, HTTP 422 and other 4xx)
  66  an input file cannot be read
  69  server unreachable, timed out, or HTTP 5xx
  70  unexpected answer from the server
  74  writing the output failed
  77  unauthorized (HTTP 401/403: missing or wrong --token)";

/// An error to report: the exit code and the lines to print on stderr.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The process exit code.
    pub(crate) code: u8,
    /// What went wrong, one problem per line.
    pub(crate) lines: Vec<String>,
    /// The server's problem+json document, when the failure is an HTTP error answer.
    pub(crate) problem: Option<Value>,
}

impl Failure {
    /// A failure with one message.
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Self {
            code,
            lines: vec![message.into()],
            problem: None,
        }
    }

    /// A failure with several lines.
    pub(crate) fn lines(code: u8, lines: Vec<String>) -> Self {
        Self {
            code,
            lines,
            problem: None,
        }
    }

    /// The exit code for an HTTP error status.
    pub(crate) fn code_for_status(status: u16) -> u8 {
        match status {
            401 | 403 => NO_PERMISSION,
            404 => NOT_FOUND,
            409 => CONFLICT,
            408 | 429 | 500..=599 => UNAVAILABLE,
            400..=499 => DATA,
            _ => PROTOCOL,
        }
    }

    /// A failure from an HTTP error answer, naming the problem's `code`, `title`, `detail`
    /// and each item of `errors` (`body` is the problem+json document, when it is one).
    pub(crate) fn from_problem(status: u16, body: &[u8]) -> Self {
        let code = Self::code_for_status(status);
        let Ok(problem) = serde_json::from_slice::<Value>(body) else {
            let text = String::from_utf8_lossy(body);
            let text = text.trim();
            let message = if text.is_empty() {
                format!("the server answered {status}")
            } else {
                format!("the server answered {status}: {}", truncate(text, 300))
            };
            return Self::new(code, message);
        };
        let mut first = format!("{status}");
        if let Some(c) = problem["code"].as_str() {
            let _ = write!(first, " {c}");
        }
        let title = problem["title"].as_str().unwrap_or_default();
        let detail = problem["detail"].as_str().unwrap_or_default();
        match (title.is_empty(), detail.is_empty()) {
            (false, false) if !detail.eq_ignore_ascii_case(title) => {
                let _ = write!(first, ": {title}: {detail}");
            }
            (false, _) => {
                let _ = write!(first, ": {title}");
            }
            (true, false) => {
                let _ = write!(first, ": {detail}");
            }
            (true, true) => {}
        }
        let mut lines = vec![first];
        lines.extend(problem_items(&problem, "  "));
        if let Some(id) = problem["request_id"].as_str() {
            lines.push(format!("  (request id {id})"));
        }
        Self {
            code,
            lines,
            problem: Some(problem),
        }
    }

    /// Prints the failure on stderr, `error: ` before the first line; each line
    /// [`clean`](crate::output::clean)ed, since most quote the server.
    pub(crate) fn report(&self) {
        for (i, line) in self.lines.iter().enumerate() {
            let line = crate::output::clean(line);
            if i == 0 {
                eprintln!("error: {line}");
            } else {
                eprintln!("{line}");
            }
        }
    }
}

/// One line per item of a problem's `errors`: `code: message (node `x`; nodes a → b; field
/// `path`)`, each after `prefix`.
pub(crate) fn problem_items(problem: &Value, prefix: &str) -> Vec<String> {
    let Some(items) = problem["errors"].as_array() else {
        return Vec::new();
    };
    items
        .iter()
        .map(|item| {
            let mut line = prefix.to_string();
            if let Some(c) = item["code"].as_str() {
                let _ = write!(line, "{c}: ");
            }
            line.push_str(item["message"].as_str().unwrap_or("(no message)"));
            let mut notes = Vec::new();
            if let Some(node) = item["node_id"].as_str() {
                notes.push(format!("node `{node}`"));
            }
            if let Some(nodes) = item["nodes"].as_array() {
                let names: Vec<&str> = nodes.iter().filter_map(Value::as_str).collect();
                if !names.is_empty() {
                    notes.push(format!("nodes {}", names.join(" → ")));
                }
            }
            if let Some(path) = item["path"].as_str() {
                notes.push(format!("field `{path}`"));
            }
            if !notes.is_empty() {
                let _ = write!(line, " ({})", notes.join("; "));
            }
            line
        })
        .collect()
}

/// At most `max` characters of `s`, with `…` when cut.
pub(crate) fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_documented_codes() {
        for (status, code) in [
            (401, NO_PERMISSION),
            (403, NO_PERMISSION),
            (404, NOT_FOUND),
            (409, CONFLICT),
            (422, DATA),
            (400, DATA),
            (413, DATA),
            (500, UNAVAILABLE),
            (503, UNAVAILABLE),
        ] {
            assert_eq!(Failure::code_for_status(status), code, "{status}");
        }
    }

    #[test]
    fn problems_name_code_title_detail_and_items() {
        let body = br#"{"status": 422, "code": "validation_failed", "title": "Invalid workflow",
            "detail": "2 problems", "errors": [{"code": "cycle", "message": "a cycle", "nodes": ["a", "b", "a"]},
            {"code": "invalid_body", "message": "wrong type", "path": "inputs"}], "request_id": "r1"}"#;
        let f = Failure::from_problem(422, body);
        assert_eq!(f.code, DATA);
        assert_eq!(
            f.lines,
            [
                "422 validation_failed: Invalid workflow: 2 problems",
                "  cycle: a cycle (nodes a → b → a)",
                "  invalid_body: wrong type (field `inputs`)",
                "  (request id r1)",
            ]
        );
        let plain = Failure::from_problem(502, b"bad gateway");
        assert_eq!(plain.code, UNAVAILABLE);
        assert_eq!(plain.lines, ["the server answered 502: bad gateway"]);
    }
}
