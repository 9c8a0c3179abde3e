//! Writing results on stdout: one JSON document, plain lines, or aligned tables; plus the small
//! formatting helpers (durations, timestamps) the tables share, and [`clean`], which makes the
//! server's strings safe to print on a terminal.

use std::borrow::Cow;
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

/// Writes one line on stdout, [`clean`]ed.
pub(crate) fn line(text: &str) -> Result<(), Failure> {
    write_stdout(&format!("{}\n", clean(text)))
}

/// Whether a character must not reach a terminal as is: control characters (C0, DEL, C1: `ESC`
/// starts the escape sequences that recolour, move the cursor, retitle the window…) and the
/// bidirectional formatting characters that reorder what is displayed.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Writes `c` visibly: `\u{1b}`.
fn escape(out: &mut String, c: char) {
    out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
}

/// `s` on one line and safe to print on a terminal (text of the server: names, errors,
/// outputs): tabs, newlines and other line breaks become spaces, other control and
/// bidirectional formatting characters are shown escaped (`\u{1b}`), so that none is
/// interpreted.
pub(crate) fn clean(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\t' | '\n' | '\r' | '\u{b}' | '\u{c}' | '\u{85}' => out.push(' '),
            c if is_unsafe(c) => escape(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// A multi-line text (a graph rendering) safe to print on a terminal: newlines and tabs are
/// kept, carriage returns dropped, other unsafe characters escaped as by [`clean`].
pub(crate) fn clean_block(s: &str) -> Cow<'_, str> {
    if !s.chars().any(|c| c != '\n' && c != '\t' && is_unsafe(c)) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' | '\t' => out.push(c),
            '\r' => {}
            c if is_unsafe(c) => escape(&mut out, c),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
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

    /// Adds a row; each cell is [`clean`]ed (the server's strings may hold control characters).
    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows
            .push(cells.into_iter().map(|c| clean(&c).into_owned()).collect());
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
    fn server_strings_cannot_reach_the_terminal_raw() {
        assert!(matches!(
            clean("plain · text"),
            Cow::Borrowed("plain · text")
        ));
        assert_eq!(clean("\u{1b}[31mred\u{1b}[0m"), "\\u{1b}[31mred\\u{1b}[0m");
        assert_eq!(clean("a\tb\r\nc"), "a b  c");
        assert_eq!(clean("x\u{7}\u{9b}y\u{202e}z"), "x\\u{7}\\u{9b}y\\u{202e}z");
        assert_eq!(
            clean_block("a\r\n\tb\u{1b}]0;t\u{7}\n"),
            "a\n\tb\\u{1b}]0;t\\u{7}\n"
        );
        let mut t = Table::new(&["NODE", "ERROR"]);
        t.row(vec!["\u{1b}[2Jn".into(), "line 1\nline 2".into()]);
        assert_eq!(
            t.render(),
            "NODE        ERROR\n\\u{1b}[2Jn  line 1 line 2\n"
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
