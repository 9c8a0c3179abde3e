//! Reading a definition file and reporting its problems the way compilers do:
//! `FILE:LINE:COLUMN: field `path`: message` for parse errors, `FILE: code: message` for each
//! validation problem. Also the `validate` subcommand.

use std::io::Write;
use std::path::Path;

use maestro_dag::{ExecutorRegistry, ParseError, ValidationErrors, Workflow, WorkflowDefinition};

use crate::cli::ValidateArgs;
use crate::exit;

/// Why a definition file cannot be run: one line per problem, ready to print.
#[derive(Debug)]
pub(crate) struct Diagnostics(pub(crate) Vec<String>);

impl Diagnostics {
    /// Prints every line to stderr.
    pub(crate) fn print(&self) {
        for line in &self.0 {
            eprintln!("{line}");
        }
    }
}

/// Reads, parses, validates (against `registry`) and compiles a definition file.
pub(crate) fn load(path: &Path, registry: &ExecutorRegistry) -> Result<Workflow, Diagnostics> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| Diagnostics(vec![format!("{file}: cannot read the file: {e}")]))?;
    let definition = WorkflowDefinition::from_file_text(&file, &text)
        .map_err(|e| Diagnostics(vec![parse_diagnostic(&file, &e)]))?;
    Workflow::compile(definition, Some(registry)).map_err(|e| validation_diagnostics(&file, &e))
}

/// `FILE:LINE:COLUMN: field `path`: message` (the parts that are known).
pub(crate) fn parse_diagnostic(file: &str, e: &ParseError) -> String {
    let mut out = file.to_string();
    if let Some(line) = e.line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = e.column {
            out.push_str(&format!(":{column}"));
        }
    }
    out.push_str(": ");
    if !e.path.is_empty() && e.path != "." {
        out.push_str(&format!("field `{}`: ", e.path));
    }
    out.push_str(strip_position(&e.message));
    out
}

/// Drops a trailing ` at line L column C` (the position is already in front).
fn strip_position(message: &str) -> &str {
    let Some(i) = message.rfind(" at line ") else {
        return message;
    };
    let tail = &message[i + " at line ".len()..];
    let mut words = tail.split(' ');
    let is_position = matches!(
        (words.next(), words.next(), words.next(), words.next()),
        (Some(l), Some("column"), Some(c), None)
            if l.bytes().all(|b| b.is_ascii_digit()) && c.bytes().all(|b| b.is_ascii_digit())
    );
    if is_position { &message[..i] } else { message }
}

/// One `FILE: code: message` line per problem, then a count.
pub(crate) fn validation_diagnostics(file: &str, errors: &ValidationErrors) -> Diagnostics {
    let mut lines: Vec<String> = errors
        .0
        .iter()
        .map(|e| format!("{file}: {}: {}", e.code, e.message))
        .collect();
    let n = errors.0.len();
    lines.push(format!(
        "{file}: invalid workflow ({n} problem{})",
        if n == 1 { "" } else { "s" }
    ));
    Diagnostics(lines)
}

/// `validate FILE`: prints the levels of a valid definition (exit 0) or every problem (exit 1).
pub(crate) fn validate_command(args: &ValidateArgs, out: &mut dyn Write) -> anyhow::Result<u8> {
    let registry = maestro_executors::builtin_registry();
    let workflow = match load(&args.file, &registry) {
        Ok(w) => w,
        Err(d) => {
            d.print();
            return Ok(exit::FAILURE);
        }
    };
    let levels = workflow.levels();
    writeln!(
        out,
        "{}: valid workflow `{}` ({} nodes, {} levels)",
        args.file.display(),
        workflow.id(),
        workflow.len(),
        levels.len()
    )?;
    for (i, level) in levels.iter().enumerate() {
        writeln!(out, "level {i}: {}", level.join(", "))?;
    }
    Ok(exit::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(file: &str, text: &str, want: &str) {
        let e = WorkflowDefinition::from_file_text(file, text).unwrap_err();
        assert_eq!(parse_diagnostic(file, &e), want);
    }

    #[test]
    fn parse_errors_read_like_compiler_diagnostics() {
        check_parse(
            "wf.json",
            "{\n  \"id\": \"x\",\n  \"nodes\": [\n}",
            "wf.json:4:1: expected value",
        );
        check_parse(
            "wf.json",
            "{\"id\": \"x\", \"nodes\": [{\"id\": \"a\", \"retry\": {\"max_attempts\": \"3\"}}]}",
            "wf.json:1:63: field `nodes[0].retry.max_attempts`: \
             invalid type: string \"3\", expected u32",
        );
    }

    #[test]
    fn positions_are_stripped_only_at_the_end() {
        assert_eq!(strip_position("bad at line 3 column 4"), "bad");
        assert_eq!(strip_position("bad at line three"), "bad at line three");
        assert_eq!(strip_position("plain"), "plain");
    }
}
