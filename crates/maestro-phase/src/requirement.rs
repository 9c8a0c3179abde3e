//! The phase requirement text: the original requirement plus what earlier phases produced, as
//! markdown, in the original system's format, so team engines written for it read it unchanged.

use serde_json::Value;

use crate::context::UpstreamOutput;

/// Builds the markdown a team engine receives as a phase's requirement.
///
/// The sections, in order, each only when it has content (parts are joined with newlines):
/// - `## Original Requirement:` and the requirement;
/// - `## Previous Phase Outputs:` with a `### <node id>:` heading per upstream node followed by
///   its output as 2-space-indented JSON;
/// - `## Available Artifacts:` with a `### <node id>:` heading per upstream node that has
///   artifacts and a `- <artifact>` line per artifact;
/// - `## Previous Phase Contracts:` with each contract from [`gather_contracts`] as indented
///   JSON (a string contract as it is).
///
/// Headings name upstream **node ids** (`phase_design`), not phase names, as the original did.
/// Unlike the original, the artifacts heading is left out when no upstream node has artifacts.
///
/// ```
/// use maestro_phase::{UpstreamOutput, requirement_text};
/// use serde_json::json;
///
/// let upstream = [UpstreamOutput::new(
///     "phase_design",
///     json!({"artifacts": ["design.md"], "contracts": [{"name": "api"}]}),
/// )];
/// let text = requirement_text("Build a todo app", &upstream);
/// assert!(text.starts_with("## Original Requirement:\nBuild a todo app\n"));
/// assert!(text.contains("\n### phase_design:\n- design.md"));
/// ```
pub fn requirement_text(requirement: &str, upstream: &[UpstreamOutput]) -> String {
    let mut parts = vec![format!("## Original Requirement:\n{requirement}\n")];
    if !upstream.is_empty() {
        parts.push("\n## Previous Phase Outputs:".into());
        for up in upstream {
            parts.push(format!("\n### {}:", up.node_id));
            parts.push(pretty(&up.output));
        }
    }
    let artifacts: Vec<(&str, Vec<Value>)> = upstream
        .iter()
        .map(|up| (up.node_id.as_str(), up.artifacts()))
        .filter(|(_, a)| !a.is_empty())
        .collect();
    if !artifacts.is_empty() {
        parts.push("\n## Available Artifacts:".into());
        for (node_id, list) in artifacts {
            parts.push(format!("\n### {node_id}:"));
            parts.extend(list.iter().map(|a| format!("- {}", plain(a, false))));
        }
    }
    let contracts = gather_contracts(upstream);
    if !contracts.is_empty() {
        parts.push("\n## Previous Phase Contracts:".into());
        parts.extend(contracts.iter().map(|c| plain(c, true)));
    }
    parts.join("\n")
}

/// The contracts published upstream: the entries of every upstream output's `contracts` array,
/// in dependency order, each kept once (a contract passed on by two branches appears once).
pub fn gather_contracts(upstream: &[UpstreamOutput]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for c in upstream.iter().flat_map(UpstreamOutput::contracts) {
        if !out.contains(c) {
            out.push(c.clone());
        }
    }
    out
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
}

/// A string as it is; anything else as JSON (indented when `indent`).
fn plain(v: &Value, indent: bool) -> String {
    match v {
        Value::String(s) => s.clone(),
        other if indent => pretty(other),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn contracts_are_gathered_in_order_once() {
        let upstream = [
            UpstreamOutput::new("a", json!({"contracts": [{"n": 1}, {"n": 2}]})),
            UpstreamOutput::new("b", json!({"contracts": [{"n": 2}, {"n": 3}]})),
            UpstreamOutput::new("c", json!({"contracts": "not a list"})),
        ];
        assert_eq!(
            gather_contracts(&upstream),
            vec![json!({"n": 1}), json!({"n": 2}), json!({"n": 3})]
        );
    }

    #[test]
    fn non_string_artifacts_print_as_json() {
        let upstream = [UpstreamOutput::new(
            "a",
            json!({"artifacts": [{"path": "x.rs"}]}),
        )];
        assert!(requirement_text("r", &upstream).contains("\n- {\"path\":\"x.rs\"}"));
    }
}
