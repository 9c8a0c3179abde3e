//! Writing results on stdout: one JSON document, plain lines, or aligned tables; plus the small
//! formatting helpers (durations, timestamps) the tables share.

use std::io::{ErrorKind, Write};

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::exit::{self, Failure};

/// Writes `text` on stdout. A closed pipe (`maestro … | head`) is not an error.
pub(crate) fn write_stdout(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(Failure::new(
            exit::IO,
            format!("cannot write the output: {e}"),
        )),
    }
}

/// Writes one JSON document (pretty) on stdout.
pub(crate) fn json(value: &Value) -> Result<(), Failure> {
    let mut text = serde_json::to_string_pretty(value).expect("JSON values serialize");
    text.push('\n');
    write_stdout(&text)
}

/// Writes one JSON document on one line on stdout.
pub(crate) fn json_line(value: &Value) -> Result<(), Failure> {
    let mut text = value.to_string();
    text.push('\n');
    write_stdout(&text)
}

/// Writes one line on stdout.
pub(crate) fn line(text: &str) -> Result<(), Failure> {
    write_stdout(&format!("{text}\n"))
}

/// A table with a header row, columns padded to their widest cell.
pub(crate) struct Table {
    rows: Vec<Vec<String>>,
}

impl Table {
    /// A table with these column titles.
    pub(crate) fn new(headers: &[&str]) -> Self {
        Self {
            rows: vec![headers.iter().map(|h| h.to_string()).collect()],
        }
    }

    /// Adds a row.
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// The table as text, one line per row, the last column unpadded.
    pub(crate) fn render(&self) -> String {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let mut widths = vec![0; columns];
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        let mut out = String::new();
        for row in &self.rows {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i + 1 == row.len() {
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    let pad = widths[i] - cell.chars().count() + 2;
                    line.extend(std::iter::repeat_n(' ', pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Writes the table on stdout.
    pub(crate) fn print(&self) -> Result<(), Failure> {
        write_stdout(&self.render())
    }
}

/// A string field, or `-`.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) if s.is_empty() => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An RFC 3339 timestamp field.
pub(crate) fn timestamp(v: &Value) -> Option<DateTime<Utc>> {
    v.as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&Utc))
}

/// A timestamp shown to the second, `YYYY-MM-DD HH:MM:SS`, or `-`.
pub(crate) fn short_time(v: &Value) -> String {
    timestamp(v).map_or_else(|| "-".into(), |t| t.format("%Y-%m-%d %H:%M:%S").to_string())
}

/// The time between two timestamp fields (`end` absent: until now), or `-`.
pub(crate) fn duration_between(start: &Value, end: &Value) -> String {
    let Some(start) = timestamp(start) else {
        return "-".into();
    };
    let end = timestamp(end).unwrap_or_else(Utc::now);
    human_duration((end - start).num_milliseconds())
}

/// Milliseconds as `850ms`, `1.25s`, `3m05s` or `2h03m`.
pub(crate) fn human_duration(ms: i64) -> String {
    let ms = ms.max(0);
    if ms < 1000 {
        format!("{ms}ms")
    } else if ms < 60_000 {
        format!("{:.2}s", ms as f64 / 1000.0)
    } else if ms < 3_600_000 {
        format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60)
    } else {
        format!("{}h{:02}m", ms / 3_600_000, (ms / 60_000) % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_align_columns() {
        let mut t = Table::new(&["NODE", "STATUS", "ERROR"]);
        t.row(vec!["a".into(), "completed".into(), "-".into()]);
        t.row(vec!["long_name".into(), "failed".into(), "boom".into()]);
        assert_eq!(
            t.render(),
            "NODE       STATUS     ERROR\n\
             a          completed  -\n\
             long_name  failed     boom\n"
        );
    }

    #[test]
    fn durations_read_naturally() {
        assert_eq!(human_duration(-5), "0ms");
        assert_eq!(human_duration(850), "850ms");
        assert_eq!(human_duration(1250), "1.25s");
        assert_eq!(human_duration(185_000), "3m05s");
        assert_eq!(human_duration(7_380_000), "2h03m");
        assert_eq!(
            duration_between(
                &"2026-11-26T19:24:00.500Z".into(),
                &"2026-11-26T19:24:01.750Z".into()
            ),
            "1.25s"
        );
    }
}
