//! Reading definition files and `maestro validate`: parse and validate offline with
//! `maestro-dag`, reporting problems as `FILE:LINE:COLUMN: …` diagnostics (field path for parse
//! errors; validation code and node ids for validation problems).

use std::path::Path;

use maestro_dag::{ValidationError, Workflow, WorkflowDefinition};
use serde_json::{Value, json};

use crate::cli::{Output, ValidateArgs};
use crate::exit::{self, Failure};
use crate::output;

/// A definition file's text, or a [`exit::NO_INPUT`] failure.
pub(crate) fn read(path: &Path) -> Result<String, Failure> {
    std::fs::read_to_string(path).map_err(|e| {
        Failure::new(
            exit::NO_INPUT,
            format!("{}: cannot read the file: {e}", path.display()),
        )
    })
}

/// Reads and parses a definition file (JSON, or YAML by extension; the original system's form
/// too); a parse error is an [`exit::DATA`] failure naming the file, line, column and field.
pub(crate) fn load(path: &Path) -> Result<(WorkflowDefinition, String), Failure> {
    let text = read(path)?;
    let file = path.display().to_string();
    let definition = WorkflowDefinition::from_file_text(&file, &text)
        .map_err(|e| Failure::new(exit::DATA, e.diagnostic(&file)))?;
    Ok((definition, text))
}

/// Where a node is defined in the file's text: the line and column of its `id`, found by
/// looking for `"id": "NODE"` (JSON) or `id: NODE` (YAML). Validation works on the parsed
/// definition, so this is a best effort that points an editor at the right node.
pub(crate) fn locate_node(text: &str, node: &str) -> Option<(usize, usize)> {
    let needles = [
        format!("\"id\": \"{node}\""),
        format!("\"id\":\"{node}\""),
        format!("\"node_id\": \"{node}\""),
        format!("\"node_id\":\"{node}\""),
        format!("id: {node}"),
        format!("id: \"{node}\""),
        format!("id: '{node}'"),
    ];
    for (i, line) in text.lines().enumerate() {
        for needle in &needles {
            if let Some(col) = line.find(needle.as_str()) {
                // YAML: `id: a` must not match `id: ab`.
                let end = col + needle.len();
                let rest = &line[end..];
                let whole = rest
                    .chars()
                    .next()
                    .is_none_or(|c| !(c.is_ascii_alphanumeric() || c == '_' || c == '-'));
                let key_start = col == 0
                    || !line[..col]
                        .chars()
                        .next_back()
                        .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
                if whole && key_start {
                    return Some((i + 1, line[..col].chars().count() + 1));
                }
            }
        }
    }
    None
}

/// One diagnostic per validation problem: `FILE[:LINE:COLUMN]: code: message (node …)`.
pub(crate) fn problem_lines(file: &str, text: &str, problems: &[Value]) -> Vec<String> {
    problems
        .iter()
        .map(|p| {
            let node = p["node_id"]
                .as_str()
                .or_else(|| p["nodes"].get(0).and_then(Value::as_str));
            let mut out = file.to_string();
            if let Some((line, column)) = node.and_then(|n| locate_node(text, n)) {
                out.push_str(&format!(":{line}:{column}"));
            }
            out.push_str(": ");
            out.push_str(&crate::exit::problem_items(&json!({"errors": [p]}), "").concat());
            out
        })
        .collect()
}

fn validation_json(e: &ValidationError) -> Value {
    serde_json::to_value(e).expect("validation errors serialize")
}

/// `maestro validate FILE`: exit 0 and the levels, or every problem with exit 65.
pub(crate) fn command(args: &ValidateArgs, format: Output) -> Result<u8, Failure> {
    let file = args.file.display().to_string();
    let (definition, text) = match load(&args.file) {
        Ok(loaded) => loaded,
        Err(f) if f.code == exit::DATA && format == Output::Json => {
            // The parse error, as JSON too.
            output::json(&json!({"file": file, "valid": false, "errors": [
                {"code": "parse_error", "message": f.lines.join("; ")}
            ]}))?;
            return Err(f);
        }
        Err(f) => return Err(f),
    };
    let known = |key: &str| {
        maestro_executors::BUILTIN_KEYS.contains(&key)
            || key == maestro_executors::PHASE_KEY
            || args.executors.iter().any(|k| k == key)
    };
    match Workflow::compile(definition, Some(&known)) {
        Ok(workflow) => {
            let levels = workflow.levels();
            if format == Output::Json {
                output::json(&json!({
                    "file": file,
                    "valid": true,
                    "workflow_id": workflow.id(),
                    "nodes": workflow.len(),
                    "content_hash": workflow.content_hash(),
                    "levels": levels,
                }))?;
            } else {
                output::line(&format!(
                    "{file}: valid workflow `{}` ({} nodes, {} levels)",
                    workflow.id(),
                    workflow.len(),
                    levels.len()
                ))?;
                for (i, level) in levels.iter().enumerate() {
                    output::line(&format!("level {i}: {}", level.join(", ")))?;
                }
            }
            Ok(exit::SUCCESS)
        }
        Err(errors) => {
            let problems: Vec<Value> = errors.0.iter().map(validation_json).collect();
            if format == Output::Json {
                let located: Vec<Value> = problems
                    .iter()
                    .map(|p| {
                        let mut p = p.clone();
                        let node = p["node_id"]
                            .as_str()
                            .or_else(|| p["nodes"].get(0).and_then(Value::as_str))
                            .map(str::to_string);
                        if let Some((line, column)) = node.and_then(|n| locate_node(&text, &n)) {
                            p["line"] = json!(line);
                            p["column"] = json!(column);
                        }
                        p
                    })
                    .collect();
                output::json(&json!({"file": file, "valid": false, "errors": located}))?;
            }
            let mut lines = problem_lines(&file, &text, &problems);
            let n = lines.len();
            lines.push(format!(
                "{file}: invalid workflow ({n} problem{})",
                if n == 1 { "" } else { "s" }
            ));
            Err(Failure::lines(exit::DATA, lines))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_file_line_column_and_field() {
        let text =
            "{\"id\": \"x\", \"nodes\": [{\"id\": \"a\", \"retry\": {\"max_attempts\": \"3\"}}]}";
        let e = WorkflowDefinition::from_file_text("wf.json", text).unwrap_err();
        let d = e.diagnostic("wf.json");
        assert!(
            d.starts_with("wf.json:1:") && d.contains("field `nodes[0].retry.max_attempts`"),
            "{d}"
        );
    }

    #[test]
    fn nodes_are_located_in_json_and_yaml() {
        let json = "{\n  \"nodes\": [\n    {\"id\": \"ab\"},\n    {\"id\": \"a\"}\n  ]\n}";
        assert_eq!(locate_node(json, "a"), Some((4, 6)));
        let yaml = "id: wf\nnodes:\n  - id: ab\n  - id: a\n    node_id: x\n";
        assert_eq!(locate_node(yaml, "a"), Some((4, 5)));
        assert_eq!(locate_node(yaml, "zz"), None);
    }

    #[test]
    fn validation_problems_read_like_diagnostics() {
        let text = "id: wf\nnodes:\n  - id: a\n    depends_on: [b]\n";
        let problems = vec![
            json!({"code": "unknown_dependency", "message": "node `a` depends on unknown node `b`", "node_id": "a"}),
        ];
        assert_eq!(
            problem_lines("wf.yaml", text, &problems),
            ["wf.yaml:3:5: unknown_dependency: node `a` depends on unknown node `b` (node `a`)"]
        );
    }
}
