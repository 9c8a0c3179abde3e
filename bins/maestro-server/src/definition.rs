//! Reading a definition file and reporting its problems the way compilers do:
//! `FILE:LINE:COLUMN: field `path`: message` for parse errors, `FILE: code: message (node …)`
//! for each validation problem (both rendered by `maestro-dag`, as the `maestro` CLI does).
//! Also the `validate` subcommand.

use std::io::Write;
use std::path::Path;

use maestro_dag::{ExecutorRegistry, ValidationErrors, Workflow, WorkflowDefinition};

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
        .map_err(|e| Diagnostics(vec![e.diagnostic(&file)]))?;
    Workflow::compile(definition, Some(registry)).map_err(|e| validation_diagnostics(&file, &e))
}

/// One `FILE: code: message (node …)` line per problem, then a count. Unlike `maestro
/// validate`, without the node's line and column: these lines keep the `FILE: code:` form
/// scripts match.
pub(crate) fn validation_diagnostics(file: &str, errors: &ValidationErrors) -> Diagnostics {
    let mut lines: Vec<String> = errors.0.iter().map(|e| e.diagnostic(file, None)).collect();
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
