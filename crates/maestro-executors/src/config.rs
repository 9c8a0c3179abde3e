//! Reading an executor's `config` object, with errors that name the offending field.

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
