//! The workflow definition model (DESIGN §2): what a user writes, in JSON or YAML.
//!
//! Parsing is strict (unknown fields are errors, so a typo never silently changes meaning) and
//! reports the line, column and field path of the first problem. The original Python system's
//! serialized form is recognised and converted, so existing definitions migrate.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// A workflow definition: a named DAG of nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkflowDefinition {
    /// Identifier, `[A-Za-z0-9_-]{1,255}`.
    pub id: String,
    /// Human-readable name; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Optional free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Maximum number of nodes of one run executing at once (unlimited when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// What a node failure does to the rest of the run.
    #[serde(default)]
    pub failure_policy: FailurePolicy,
    /// The nodes, in any order.
    pub nodes: Vec<NodeDefinition>,
    /// Free-form metadata, kept as written.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

/// One node of a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDefinition {
    /// Identifier, `[A-Za-z0-9_-]{1,255}`, unique within the workflow.
    pub id: String,
    /// Human-readable name; defaults to the id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What kind of node this is.
    #[serde(rename = "type", default)]
    pub node_type: NodeType,
    /// Key in the executor registry; defaults by type (see [`NodeDefinition::executor_key`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub executor: Option<String>,
    /// Executor configuration, handed to the executor as `node_config`.
    #[serde(default = "empty_object", skip_serializing_if = "is_empty_object")]
    pub config: Value,
    /// Ids of the nodes this one depends on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
    /// When the node may run, given the outcomes of its dependencies.
    #[serde(default, skip_serializing_if = "TriggerRule::is_default")]
    pub trigger_rule: TriggerRule,
    /// A CEL expression over `inputs` and `outputs`; false skips the node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Retry policy for failed attempts.
    #[serde(default, skip_serializing_if = "RetryPolicy::is_default")]
    pub retry: RetryPolicy,
    /// Per-attempt timeout in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Free-form metadata, kept as written.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub metadata: Map<String, Value>,
}

fn empty_object() -> Value {
    Value::Object(Map::new())
}

fn is_empty_object(v: &Value) -> bool {
    matches!(v, Value::Object(m) if m.is_empty())
}

impl NodeDefinition {
    /// A node with the given id and executor and every other field at its default.
    pub fn new(id: impl Into<String>, executor: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            name: None,
            node_type: NodeType::Custom,
            executor: Some(executor.into()),
            config: empty_object(),
            depends_on: Vec::new(),
            trigger_rule: TriggerRule::AllSuccess,
            condition: None,
            retry: RetryPolicy::default(),
            timeout_ms: None,
            metadata: Map::new(),
        }
    }

    /// Builder-style: add dependencies.
    pub fn after<I, S>(mut self, deps: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let deps = deps.into_iter();
        self.depends_on.reserve_exact(deps.size_hint().0);
        self.depends_on.extend(deps.map(Into::into));
        self
    }

    /// The display name: `name`, or the id when absent.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// The executor key this node runs with: `executor` when given, else `phase` for phase nodes,
    /// none for `human_review` nodes (they wait for a person), and `noop` for the other types.
    pub fn executor_key(&self) -> Option<&str> {
        match (&self.executor, self.node_type) {
            (Some(e), _) => Some(e.as_str()),
            (None, NodeType::HumanReview) => None,
            (None, NodeType::Phase) => Some("phase"),
            (None, _) => Some("noop"),
        }
    }
}

impl WorkflowDefinition {
    /// A definition with the given id and nodes, every other field at its default.
    pub fn new(id: impl Into<String>, nodes: Vec<NodeDefinition>) -> Self {
        Self {
            id: id.into(),
            name: None,
            description: None,
            max_concurrency: None,
            failure_policy: FailurePolicy::FailFast,
            nodes,
            metadata: Map::new(),
        }
    }

    /// The display name: `name`, or the id when absent.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }

    /// Parses a definition from JSON text, native or the original system's serialized form.
    pub fn from_json_str(text: &str) -> Result<Self, ParseError> {
        let value: Value = serde_json::from_str(text).map_err(|e| ParseError {
            line: Some(e.line()),
            column: Some(e.column()),
            path: String::new(),
            message: strip_position(&e.to_string()),
        })?;
        if is_original_form(&value) {
            return crate::legacy::from_original(value);
        }
        let mut de = serde_json::Deserializer::from_str(text);
        serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = clean_path(e.path().to_string());
            let inner = e.into_inner();
            ParseError {
                line: Some(inner.line()),
                column: Some(inner.column()),
                path,
                message: strip_position(&inner.to_string()),
            }
        })
    }

    /// Parses a definition from YAML text (native or original form).
    #[cfg(feature = "yaml")]
    pub fn from_yaml_str(text: &str) -> Result<Self, ParseError> {
        let yaml_err = |e: serde_yaml::Error, path: String| {
            // serde_yaml's message repeats the path and the position; both are fields here.
            let full = e.to_string();
            let msg = match full.split_once(": ") {
                Some((prefix, rest)) if !prefix.contains(' ') && path.starts_with(prefix) => rest,
                _ => full.as_str(),
            };
            ParseError {
                line: e.location().map(|l| l.line()),
                column: e.location().map(|l| l.column()),
                path: clean_path(path),
                message: strip_position(msg),
            }
        };
        let value: Value = serde_yaml::from_str(text).map_err(|e| yaml_err(e, String::new()))?;
        if is_original_form(&value) {
            return crate::legacy::from_original(value);
        }
        let de = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            yaml_err(e.into_inner(), path)
        })
    }

    /// Parses a definition from a JSON value (native or original form). No line numbers.
    pub fn from_value(value: Value) -> Result<Self, ParseError> {
        if is_original_form(&value) {
            return crate::legacy::from_original(value);
        }
        serde_path_to_error::deserialize(value).map_err(|e| ParseError {
            line: None,
            column: None,
            path: clean_path(e.path().to_string()),
            message: e.into_inner().to_string(),
        })
    }

    /// Parses a file's text, choosing YAML for `.yaml`/`.yml` names and JSON otherwise.
    pub fn from_file_text(file_name: &str, text: &str) -> Result<Self, ParseError> {
        let lower = file_name.to_ascii_lowercase();
        if lower.ends_with(".yaml") || lower.ends_with(".yml") {
            #[cfg(feature = "yaml")]
            return Self::from_yaml_str(text);
            #[cfg(not(feature = "yaml"))]
            return Err(ParseError {
                line: None,
                column: None,
                path: String::new(),
                message: "YAML support is not compiled in (feature `yaml`)".into(),
            });
        }
        Self::from_json_str(text)
    }

    /// The canonical JSON form: fields in declaration order, maps sorted, defaults omitted.
    pub fn canonical_json(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a definition always serializes")
    }

    /// `sha256:<hex>` of the canonical JSON form. Identical content gives an identical hash.
    pub fn content_hash(&self) -> String {
        // Stream the canonical form into the hasher: no buffer the size of the definition.
        struct HashWriter(Sha256);
        impl std::io::Write for HashWriter {
            fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
                self.0.update(buf);
                Ok(buf.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut w = std::io::BufWriter::with_capacity(8192, HashWriter(Sha256::new()));
        serde_json::to_writer(&mut w, self).expect("a definition always serializes");
        let digest = w
            .into_inner()
            .map_err(|_| ())
            .expect("hashing cannot fail")
            .0
            .finalize();
        let mut out = String::with_capacity(7 + 64);
        out.push_str("sha256:");
        for b in digest {
            out.push_str(&format!("{b:02x}"));
        }
        out
    }

    /// Looks a node up by id (linear scan; compile the workflow for repeated look-ups).
    pub fn node(&self, id: &str) -> Option<&NodeDefinition> {
        self.nodes.iter().find(|n| n.id == id)
    }
}

fn is_original_form(value: &Value) -> bool {
    value.get("nodes").is_some_and(Value::is_object)
}

/// serde_path_to_error writes the top level as `.`; an empty path says it better.
fn clean_path(path: String) -> String {
    if path == "." { String::new() } else { path }
}

/// Drops a trailing ` at line L column C` from a parser's message (the position is kept in
/// the error's fields); other text with "at line" in it stays.
fn strip_position(message: &str) -> String {
    let Some(i) = message.rfind(" at line ") else {
        return message.to_string();
    };
    let mut words = message[i + " at line ".len()..].split(' ');
    let is_position = matches!(
        (words.next(), words.next(), words.next(), words.next()),
        (Some(l), Some("column"), Some(c), None)
            if l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit())
    );
    if is_position {
        message[..i].to_string()
    } else {
        message.to_string()
    }
}

/// A definition that could not be read, with where the problem is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ParseError {
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// Field path such as `nodes[2].retry.max_attempts`; empty at the top level.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ParseError {
    /// The error as a compiler-style diagnostic for `file`: `FILE:LINE:COLUMN: field `path`:
    /// message`, with the parts that are known (what the CLIs print).
    pub fn diagnostic(&self, file: &str) -> String {
        let mut out = file.to_string();
        if let Some(line) = self.line {
            out.push_str(&format!(":{line}"));
            if let Some(column) = self.column {
                out.push_str(&format!(":{column}"));
            }
        }
        out.push_str(": ");
        if !self.path.is_empty() && self.path != "." {
            out.push_str(&format!("field `{}`: ", self.path));
        }
        out.push_str(&self.message);
        out
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}")?;
            if let Some(col) = self.column {
                write!(f, ", column {col}")?;
            }
            f.write_str(": ")?;
        }
        if !self.path.is_empty() && self.path != "." {
            write!(f, "field `{}`: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// The kind of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeType {
    /// An SDLC phase carried out by a team engine.
    Phase,
    /// Any other unit of work (the default).
    #[default]
    Custom,
    /// A grouping node; runs its executor (default `noop`) like any other.
    ParallelGroup,
    /// A branching node; usually carries a `condition`.
    Conditional,
    /// Pauses the run at this node until it is approved or rejected.
    HumanReview,
}

impl NodeType {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Phase => "phase",
            Self::Custom => "custom",
            Self::ParallelGroup => "parallel_group",
            Self::Conditional => "conditional",
            Self::HumanReview => "human_review",
        }
    }
}

/// What a node failure does to the rest of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailurePolicy {
    /// Stop starting new nodes; running ones finish; the rest are skipped.
    #[default]
    FailFast,
    /// Run everything still reachable.
    Continue,
}

/// When a node may run, given its dependencies' outcomes (Airflow's names and meanings).
///
/// Unknown names are kept as [`TriggerRule::Invalid`] so that validation can report them with the
/// `invalid_trigger_rule` code alongside every other problem.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum TriggerRule {
    /// Every dependency completed (the default).
    #[default]
    AllSuccess,
    /// Every dependency finished, whatever the outcome.
    AllDone,
    /// Every dependency failed.
    AllFailed,
    /// At least one dependency completed; runs as soon as one does.
    OneSuccess,
    /// At least one dependency failed; runs as soon as one does.
    OneFailed,
    /// Every dependency finished and none failed (skips allowed).
    NoneFailed,
    /// Every dependency finished, none failed and at least one completed.
    NoneFailedMinOneSuccess,
    /// Runs at once, whatever its dependencies do.
    Always,
    /// A name that is not a trigger rule.
    Invalid(String),
}

impl TriggerRule {
    /// Every valid rule, in documentation order.
    pub const ALL: [TriggerRule; 8] = [
        Self::AllSuccess,
        Self::AllDone,
        Self::AllFailed,
        Self::OneSuccess,
        Self::OneFailed,
        Self::NoneFailed,
        Self::NoneFailedMinOneSuccess,
        Self::Always,
    ];

    /// The wire name.
    pub fn as_str(&self) -> &str {
        match self {
            Self::AllSuccess => "all_success",
            Self::AllDone => "all_done",
            Self::AllFailed => "all_failed",
            Self::OneSuccess => "one_success",
            Self::OneFailed => "one_failed",
            Self::NoneFailed => "none_failed",
            Self::NoneFailedMinOneSuccess => "none_failed_min_one_success",
            Self::Always => "always",
            Self::Invalid(s) => s,
        }
    }

    /// Parses a wire name; unknown names give [`TriggerRule::Invalid`].
    pub fn parse(s: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .unwrap_or_else(|| Self::Invalid(s.to_string()))
    }

    fn is_default(&self) -> bool {
        *self == Self::AllSuccess
    }
}

impl Serialize for TriggerRule {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TriggerRule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Ok(Self::parse(&s))
    }
}

impl fmt::Display for TriggerRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Retries with exponential backoff, a cap and proportional jitter.
///
/// The delay before attempt `k + 1` is `min(initial_delay_ms * backoff^(k-1), max_delay_ms)`,
/// scaled by a random factor in `[1 - jitter, 1 + jitter]` and capped again.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts in all, including the first (1 = no retry).
    pub max_attempts: u32,
    /// Delay before the first retry.
    pub initial_delay_ms: u64,
    /// Multiplier per retry (1.0 = constant delay).
    pub backoff: f64,
    /// Upper bound of any delay.
    pub max_delay_ms: u64,
    /// Proportional jitter in `[0, 1]`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            initial_delay_ms: 1000,
            backoff: 2.0,
            max_delay_ms: 60_000,
            jitter: 0.0,
        }
    }
}

impl RetryPolicy {
    /// Upper bound accepted for `max_attempts`.
    pub const MAX_ATTEMPTS: u32 = 1000;

    fn is_default(&self) -> bool {
        *self == Self::default()
    }

    /// A policy of `max_attempts` attempts with a constant delay and no jitter.
    pub fn fixed(max_attempts: u32, delay_ms: u64) -> Self {
        Self {
            max_attempts,
            initial_delay_ms: delay_ms,
            backoff: 1.0,
            max_delay_ms: delay_ms,
            jitter: 0.0,
        }
    }

    /// The delay after the failed attempt number `attempt` (1-based), before jitter.
    pub fn base_delay_ms(&self, attempt: u32) -> u64 {
        let exp = attempt.saturating_sub(1).min(1024) as i32;
        let raw = self.initial_delay_ms as f64 * self.backoff.powi(exp);
        if !raw.is_finite() || raw >= self.max_delay_ms as f64 {
            self.max_delay_ms
        } else {
            raw as u64
        }
    }

    /// The delay after the failed attempt number `attempt`, with jitter drawn from `unit`
    /// (a number in `[0, 1)`), never above `max_delay_ms`.
    pub fn delay_ms(&self, attempt: u32, unit: f64) -> u64 {
        let base = self.base_delay_ms(attempt) as f64;
        let factor = 1.0 + self.jitter * (2.0 * unit - 1.0);
        (base * factor).clamp(0.0, self.max_delay_ms as f64) as u64
    }
}
