//! Import of the original Python system's serialized workflows.
//!
//! That form keeps `nodes` as a map of `{node_id, name, node_type, dependencies, retry_policy
//! {max_attempts, retry_delay_seconds, retry_on_failure, exponential_backoff}, condition, config,
//! metadata}` plus an `edges` list (`[[from, to]]` from the DAG model, or `[{source, target}]` from
//! its database rows). Dependencies are the union of both. Python conditions are translated to CEL
//! for the simple forms the original used (`and`/`or`/`not`, `True`/`False`/`None`,
//! `global_context` → `inputs`).

use serde_json::{Map, Value};

use crate::definition::{
    FailurePolicy, NodeDefinition, NodeType, ParseError, RetryPolicy, TriggerRule,
    WorkflowDefinition,
};

fn err(path: impl Into<String>, message: impl Into<String>) -> ParseError {
    ParseError {
        line: None,
        column: None,
        path: path.into(),
        message: message.into(),
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    obj.get(key).and_then(Value::as_str)
}

/// Converts the original form into a native definition.
pub(crate) fn from_original(value: Value) -> Result<WorkflowDefinition, ParseError> {
    let Value::Object(top) = value else {
        return Err(err("", "expected an object"));
    };
    let id = str_field(&top, "workflow_id")
        .or_else(|| str_field(&top, "id"))
        .ok_or_else(|| err("workflow_id", "missing workflow id"))?
        .to_string();
    let Some(Value::Object(nodes)) = top.get("nodes") else {
        return Err(err("nodes", "expected a map of nodes"));
    };

    let mut out = Vec::with_capacity(nodes.len());
    for (key, raw) in nodes {
        let path = format!("nodes.{key}");
        let Value::Object(n) = raw else {
            return Err(err(path, "expected an object"));
        };
        let node_id = str_field(n, "node_id").unwrap_or(key).to_string();
        let node_type = match str_field(n, "node_type").or_else(|| str_field(n, "type")) {
            None => NodeType::Phase,
            Some(t) => serde_json::from_value(Value::String(t.to_string())).map_err(|_| {
                err(
                    format!("{path}.node_type"),
                    format!("unknown node type `{t}`"),
                )
            })?,
        };
        let mut depends_on = Vec::new();
        if let Some(deps) = n.get("dependencies") {
            let Value::Array(deps) = deps else {
                return Err(err(
                    format!("{path}.dependencies"),
                    "expected a list of node ids",
                ));
            };
            for d in deps {
                let d = d.as_str().ok_or_else(|| {
                    err(format!("{path}.dependencies"), "expected node id strings")
                })?;
                depends_on.push(d.to_string());
            }
        }
        let retry = match n.get("retry_policy") {
            Some(Value::Object(rp)) => convert_retry(rp),
            Some(Value::Null) | None => RetryPolicy::default(),
            Some(_) => return Err(err(format!("{path}.retry_policy"), "expected an object")),
        };
        let config = match n.get("config") {
            Some(v @ Value::Object(_)) => v.clone(),
            _ => Value::Object(Map::new()),
        };
        let metadata = match n.get("metadata") {
            Some(Value::Object(m)) => m.clone(),
            _ => Map::new(),
        };
        let mut node = NodeDefinition {
            id: node_id,
            name: str_field(n, "name").map(str::to_string),
            node_type,
            executor: None,
            config,
            depends_on,
            trigger_rule: TriggerRule::AllSuccess,
            condition: str_field(n, "condition").map(translate_condition),
            retry,
            timeout_ms: None,
            metadata,
        };
        if node.node_type == NodeType::Phase && node.config.get("phase").is_none() {
            let phase = node.display_name().trim_start_matches("phase_").to_string();
            if let Value::Object(c) = &mut node.config {
                c.insert("phase".into(), Value::String(phase));
            }
        }
        out.push(node);
    }

    if let Some(edges) = top.get("edges") {
        let Value::Array(edges) = edges else {
            return Err(err("edges", "expected a list of edges"));
        };
        for (i, e) in edges.iter().enumerate() {
            let (from, to) = match e {
                Value::Array(pair) if pair.len() == 2 => (pair[0].as_str(), pair[1].as_str()),
                Value::Object(o) => (str_field(o, "source"), str_field(o, "target")),
                _ => (None, None),
            };
            let (Some(from), Some(to)) = (from, to) else {
                return Err(err(
                    format!("edges[{i}]"),
                    "expected [from, to] or {source, target}",
                ));
            };
            // An edge to an unknown node is kept as a dependency so validation reports it.
            match out.iter_mut().find(|n| n.id == to) {
                Some(node) => {
                    if !node.depends_on.iter().any(|d| d == from) {
                        node.depends_on.push(from.to_string());
                    }
                }
                None => {
                    return Err(err(
                        format!("edges[{i}]"),
                        format!("edge to unknown node `{to}`"),
                    ));
                }
            }
        }
    }

    let mut metadata = match top.get("metadata").or_else(|| top.get("workflow_metadata")) {
        Some(Value::Object(m)) => m.clone(),
        _ => Map::new(),
    };
    metadata.insert(
        "imported_from".into(),
        Value::String("maestro_python".into()),
    );

    Ok(WorkflowDefinition {
        id,
        name: str_field(&top, "name").map(str::to_string),
        description: str_field(&top, "description").map(str::to_string),
        max_concurrency: None,
        failure_policy: FailurePolicy::FailFast,
        nodes: out,
        metadata,
    })
}

fn convert_retry(rp: &Map<String, Value>) -> RetryPolicy {
    let retry_on_failure = rp
        .get("retry_on_failure")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let max_attempts = rp.get("max_attempts").and_then(Value::as_u64).unwrap_or(1) as u32;
    let delay_s = rp
        .get("retry_delay_seconds")
        .and_then(Value::as_f64)
        .unwrap_or(0.0);
    let exponential = rp
        .get("exponential_backoff")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let delay_ms = (delay_s.max(0.0) * 1000.0) as u64;
    RetryPolicy {
        // The original made exactly one attempt unless `retry_on_failure` was set.
        max_attempts: if retry_on_failure {
            max_attempts.max(1)
        } else {
            1
        },
        initial_delay_ms: delay_ms,
        backoff: if exponential { 2.0 } else { 1.0 },
        max_delay_ms: RetryPolicy::default().max_delay_ms.max(delay_ms),
        jitter: 0.0,
    }
}

/// Rewrites the simple Python boolean expressions the original accepted into CEL.
pub(crate) fn translate_condition(python: &str) -> String {
    let mut out = String::with_capacity(python.len());
    let mut word = String::new();
    let mut in_str: Option<char> = None;
    let flush = |word: &mut String, out: &mut String| {
        match word.as_str() {
            "and" => out.push_str("&&"),
            "or" => out.push_str("||"),
            "not" => out.push('!'),
            "True" => out.push_str("true"),
            "False" => out.push_str("false"),
            "None" => out.push_str("null"),
            "global_context" => out.push_str("inputs"),
            w => out.push_str(w),
        }
        word.clear();
    };
    for c in python.chars() {
        if let Some(q) = in_str {
            out.push(c);
            if c == q {
                in_str = None;
            }
            continue;
        }
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        flush(&mut word, &mut out);
        if c == '\'' || c == '"' {
            in_str = Some(c);
        }
        out.push(c);
    }
    flush(&mut word, &mut out);
    out.replace("! ", "!")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_conditions_become_cel() {
        assert_eq!(
            translate_condition("outputs['a']['ok'] == True and not global_context['x']"),
            "outputs['a']['ok'] == true && !inputs['x']"
        );
        assert_eq!(translate_condition("'and' in outputs"), "'and' in outputs");
    }
}
