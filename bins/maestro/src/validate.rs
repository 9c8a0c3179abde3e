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

/// One diagnostic per problem of a server's answer (the `errors` of a 422 from `apply`):
/// `FILE[:LINE:COLUMN]: code: message (node …)`, as for problems found offline. An item that is
/// not a validation problem is named after the file alone.
pub(crate) fn problem_lines(file: &str, text: &str, problems: &[Value]) -> Vec<String> {
    problems
        .iter()
        .map(|p| {
            // A validation problem (never with a field `path`, which the dag type would drop).
            let problem = p
                .get("path")
                .is_none()
                .then(|| serde_json::from_value::<ValidationError>(p.clone()).ok());
            match problem.flatten() {
                Some(e) => e.diagnostic(file, Some(text)),
                None => format!(
                    "{file}: {}",
                    crate::exit::problem_items(&json!({"errors": [p]}), "").concat()
                ),
            }
        })
        .collect()
}

/// The line and column of the node a problem concerns, as its diagnostic names them.
fn position(e: &ValidationError, text: &str) -> Option<(usize, usize)> {
    // With no file name, a located diagnostic starts `:LINE:COLUMN: `; else `: code`.
    let d = e.diagnostic("", Some(text));
    let (line, rest) = d.strip_prefix(':')?.split_once(':')?;
    let (column, _) = rest.split_once(':')?;
    Some((line.parse().ok()?, column.parse().ok()?))
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
            if format == Output::Json {
                let located: Vec<Value> = errors
                    .0
                    .iter()
                    .map(|e| {
                        let mut p = serde_json::to_value(e).expect("validation errors serialize");
                        if let Some((line, column)) = position(e, &text) {
                            p["line"] = json!(line);
                            p["column"] = json!(column);
                        }
                        p
                    })
                    .collect();
                output::json(&json!({"file": file, "valid": false, "errors": located}))?;
            }
            let mut lines: Vec<String> = errors
                .0
                .iter()
                .map(|e| e.diagnostic(&file, Some(&text)))
                .collect();
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
    fn validation_problems_read_like_diagnostics() {
        let text = "id: wf\nnodes:\n  - id: a\n    depends_on: [b]\n";
        let problems = vec![
            json!({"code": "unknown_dependency", "message": "node `a` depends on unknown node `b`", "node_id": "a"}),
        ];
        assert_eq!(
            problem_lines("wf.yaml", text, &problems),
            ["wf.yaml:3:5: unknown_dependency: node `a` depends on unknown node `b` (node `a`)"]
        );
        // A problem of the request rather than of the definition: the file and the item.
        let other =
            vec![json!({"code": "invalid_body", "message": "wrong type", "path": "inputs"})];
        assert_eq!(
            problem_lines("wf.yaml", text, &other),
            ["wf.yaml: invalid_body: wrong type (field `inputs`)"]
        );
    }

    #[test]
    fn problems_are_located_for_json_output() {
        let text = "{\"id\": \"wf\", \"nodes\": [\n  {\"id\": \"a\", \"depends_on\": [\"b\"]}\n]}";
        let definition = WorkflowDefinition::from_file_text("wf.json", text).unwrap();
        let errors = Workflow::compile(definition, None).unwrap_err();
        assert_eq!(position(&errors.0[0], text), Some((2, 4)));
        let errors =
            Workflow::compile(WorkflowDefinition::new("wf", Vec::new()), None).unwrap_err();
        assert_eq!(position(&errors.0[0], text), None);
    }
}
