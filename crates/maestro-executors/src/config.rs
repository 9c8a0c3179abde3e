//! Reading an executor's `config` object, with errors that name the offending field.

use std::time::Duration;

use maestro_dag::NodeError;
use serde_json::{Map, Value};

/// A node's `config`, checked to be an object, with typed field readers.
pub(crate) struct Config<'a> {
    executor: &'static str,
    fields: Option<&'a Map<String, Value>>,
}

impl<'a> Config<'a> {
    /// Wraps `config` for the executor named `executor`; `null` reads as `{}`.
    pub(crate) fn new(executor: &'static str, config: &'a Value) -> Result<Self, NodeError> {
        match config {
            Value::Object(fields) => Ok(Self {
                executor,
                fields: Some(fields),
            }),
            Value::Null => Ok(Self {
                executor,
                fields: None,
            }),
            other => Err(NodeError::permanent(format!(
                "{executor}: `config` must be an object, got {}",
                kind(other)
            ))),
        }
    }

    fn get(&self, field: &str) -> Option<&'a Value> {
        self.fields
            .and_then(|f| f.get(field))
            .filter(|v| !v.is_null())
    }

    fn wrong_type(&self, field: &str, expected: &str, got: &Value) -> NodeError {
        NodeError::permanent(format!(
            "{}: `config.{field}` must be {expected}, got {}",
            self.executor,
            kind(got)
        ))
    }

    /// An optional non-negative integer field.
    pub(crate) fn u64(&self, field: &str) -> Result<Option<u64>, NodeError> {
        match self.get(field) {
            None => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| self.wrong_type(field, "a non-negative integer", v)),
        }
    }

    /// A required non-negative integer field.
    pub(crate) fn required_u64(&self, field: &str) -> Result<u64, NodeError> {
        self.u64(field)?.ok_or_else(|| {
            NodeError::permanent(format!(
                "{}: `config.{field}` is required (a non-negative integer)",
                self.executor
            ))
        })
    }

    /// An optional string field.
    pub(crate) fn str(&self, field: &str) -> Result<Option<&'a str>, NodeError> {
        match self.get(field) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(self.wrong_type(field, "a string", v)),
        }
    }

    /// A required, non-empty string field.
    pub(crate) fn required_str(&self, field: &str) -> Result<&'a str, NodeError> {
        match self.str(field)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(NodeError::permanent(format!(
                "{}: `config.{field}` is required (a non-empty string)",
                self.executor
            ))),
        }
    }

    /// An optional timeout in milliseconds: a positive integer (`0` is refused rather than
    /// read as "no time at all" or "no limit").
    pub(crate) fn timeout_ms(&self, field: &str) -> Result<Option<Duration>, NodeError> {
        match self.u64(field)? {
            Some(0) => Err(NodeError::permanent(format!(
                "{}: `config.{field}` must be a positive integer, got 0",
                self.executor
            ))),
            ms => Ok(ms.map(Duration::from_millis)),
        }
    }

    /// An optional array of strings (absent reads as empty).
    pub(crate) fn strings(&self, field: &str) -> Result<Vec<&'a str>, NodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str()
                        .ok_or_else(|| self.wrong_type(&format!("{field}[{i}]"), "a string", item))
                })
                .collect(),
            Some(v) => Err(self.wrong_type(field, "an array of strings", v)),
        }
    }

    /// An optional object whose values are strings (absent reads as empty), in key order.
    pub(crate) fn string_map(&self, field: &str) -> Result<Vec<(&'a str, &'a str)>, NodeError> {
        match self.get(field) {
            None => Ok(Vec::new()),
            Some(Value::Object(entries)) => entries
                .iter()
                .map(|(key, value)| match value {
                    Value::String(s) => Ok((key.as_str(), s.as_str())),
                    other => Err(self.wrong_type(&format!("{field}.{key}"), "a string", other)),
                })
                .collect(),
            Some(v) => Err(self.wrong_type(field, "an object of strings", v)),
        }
    }
}

/// A JSON value's kind, for messages: `a string`, `a negative number`, …
fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_u64() => "an integer",
        Value::Number(n) if n.is_i64() => "a negative integer",
        Value::Number(_) => "a fractional number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn check_u64(config: Value, want: Result<Option<u64>, &str>) {
        let got = Config::new("x", &config)
            .and_then(|c| c.u64("n"))
            .map_err(|e| {
                assert!(!e.retryable, "config errors are permanent");
                e.message
            });
        assert_eq!(got, want.map_err(str::to_string), "config {config}");
    }

    #[test]
    fn integer_fields_are_checked() {
        check_u64(json!({"n": 5}), Ok(Some(5)));
        check_u64(json!({}), Ok(None));
        check_u64(json!({"n": null}), Ok(None));
        check_u64(json!(null), Ok(None));
        check_u64(
            json!({"n": "5"}),
            Err("x: `config.n` must be a non-negative integer, got a string"),
        );
        check_u64(
            json!({"n": -1}),
            Err("x: `config.n` must be a non-negative integer, got a negative integer"),
        );
        check_u64(
            json!({"n": 1.5}),
            Err("x: `config.n` must be a non-negative integer, got a fractional number"),
        );
        check_u64(
            json!([1]),
            Err("x: `config` must be an object, got an array"),
        );
    }

    #[test]
    fn lists_maps_and_timeouts_are_checked() {
        let config = json!({
            "args": ["-c", "echo"],
            "env": {"A": "1", "B": "2"},
            "bad_args": ["x", 1],
            "bad_env": {"A": true},
            "t": 250,
            "zero": 0,
        });
        let c = Config::new("x", &config).unwrap();
        assert_eq!(c.strings("args").unwrap(), ["-c", "echo"]);
        assert!(c.strings("missing").unwrap().is_empty());
        assert_eq!(c.string_map("env").unwrap(), [("A", "1"), ("B", "2")]);
        assert!(c.string_map("missing").unwrap().is_empty());
        assert_eq!(
            c.strings("bad_args").unwrap_err().message,
            "x: `config.bad_args[1]` must be a string, got an integer"
        );
        assert_eq!(
            c.strings("env").unwrap_err().message,
            "x: `config.env` must be an array of strings, got an object"
        );
        assert_eq!(
            c.string_map("bad_env").unwrap_err().message,
            "x: `config.bad_env.A` must be a string, got a boolean"
        );
        assert_eq!(c.timeout_ms("t").unwrap(), Some(Duration::from_millis(250)));
        assert_eq!(c.timeout_ms("missing").unwrap(), None);
        assert_eq!(
            c.timeout_ms("zero").unwrap_err().message,
            "x: `config.zero` must be a positive integer, got 0"
        );
        assert_eq!(
            c.required_str("missing").unwrap_err().message,
            "x: `config.missing` is required (a non-empty string)"
        );
    }

    #[test]
    fn required_and_string_fields_are_checked() {
        let empty = json!({});
        let c = Config::new("x", &empty).unwrap();
        assert_eq!(
            c.required_u64("n").unwrap_err().message,
            "x: `config.n` is required (a non-negative integer)"
        );
        let wrong = json!({"s": 1});
        let c = Config::new("x", &wrong).unwrap();
        assert_eq!(
            c.str("s").unwrap_err().message,
            "x: `config.s` must be a string, got an integer"
        );
    }
}
