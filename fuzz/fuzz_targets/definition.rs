//! Fuzzes the definition path (DESIGN §2): bytes → JSON and YAML parsing (native and the
//! original system's form) → validation → compilation to a `Workflow`.
//!
//! Asserts, besides "never panics":
//! - a parse error with a position points inside the input (line within the text, column
//!   within that line, lines counted as each parser counts them; YAML may also point just past
//!   the end), and has a line exactly when it has a column;
//! - a validation failure lists at least one problem, each with a message, a `node_id` that
//!   names a node of the definition, and a `cycle` error names the nodes on the cycle;
//! - a definition that validates compiles, and the compiled graph agrees with it: every node
//!   once in the topological order and in the levels, each after its dependencies;
//! - the canonical JSON of a valid definition parses back to the same definition and hash.

#![no_main]

#[path = "common.rs"]
mod common;

use std::collections::HashMap;

use libfuzzer_sys::fuzz_target;
use maestro_dag::{
    ParseError, ValidationCode, Workflow, WorkflowDefinition, validate, validate::ExecutorLookup,
};

/// The executors a definition may use; anything else is `unknown_executor`.
fn known_executor(key: &str) -> bool {
    matches!(key, "noop" | "fail" | "sleep" | "http" | "phase")
}

fuzz_target!(|data: &[u8]| {
    common::init();
    let text = String::from_utf8_lossy(data);
    match WorkflowDefinition::from_json_str(&text) {
        Ok(def) => check_definition(&def),
        Err(e) => check_position(&text, &e, "json"),
    }
    match WorkflowDefinition::from_yaml_str(&text) {
        Ok(def) => check_definition(&def),
        Err(e) => check_position(&text, &e, "yaml"),
    }
    // Through a `Value` (the path of a body the HTTP layer has already parsed): no positions.
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text)
        && let Ok(def) = WorkflowDefinition::from_value(value)
    {
        check_definition(&def);
    }
});

/// A reported position must be inside the text it was parsed from.
fn check_position(text: &str, e: &ParseError, format: &str) {
    assert!(!e.message.is_empty(), "{format}: empty parse error message");
    assert_eq!(
        e.line.is_some(),
        e.column.is_some(),
        "{format}: line without column or the reverse: {e:?}"
    );
    let Some(line) = e.line else { return };
    let lines = split_lines(text, format == "yaml");
    // libyaml reports a problem found at the end of the input on the line after the last one,
    // column 1, as if the text ended with a newline: that is still "at the end".
    if format == "yaml" && line == lines.len() + 1 && e.column <= Some(1) {
        return;
    }
    assert!(
        (1..=lines.len()).contains(&line),
        "{format}: line {line} outside the {} lines of the input: {e:?}",
        lines.len()
    );
    // serde_json reports column 0 at the very start of a line (e.g. end of input right after a
    // newline); columns are counted in bytes by serde_json and in characters by serde_yaml, so
    // the byte length bounds both.
    let column = e.column.unwrap_or(0);
    let width = lines[line - 1].len();
    assert!(
        column <= width + 1,
        "{format}: column {column} past the end of line {line} ({width} bytes): {e:?}"
    );
}

/// The lines of `text` as the parser counts them: serde_json breaks lines at `\n` only; YAML
/// also at `\r`, `\r\n`, NEL, LS and PS.
fn split_lines(text: &str, yaml: bool) -> Vec<&str> {
    let mut lines = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let breaks = c == '\n' || (yaml && matches!(c, '\r' | '\u{85}' | '\u{2028}' | '\u{2029}'));
        if breaks {
            lines.push(&text[start..i]);
            start = i + c.len_utf8();
            if c == '\r' && chars.peek().is_some_and(|&(_, n)| n == '\n') {
                chars.next();
                start += 1;
            }
        }
    }
    lines.push(&text[start..]);
    lines
}

fn check_definition(def: &WorkflowDefinition) {
    let lookup: &dyn ExecutorLookup = &known_executor;
    let ids: HashMap<&str, usize> = def
        .nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.id.as_str(), i))
        .collect();
    // Without an executor lookup, every key is accepted.
    let loose = validate(def, None);
    match validate(def, Some(lookup)) {
        Err(errors) => {
            assert!(!errors.0.is_empty(), "a validation failure with no problem");
            for e in &errors.0 {
                assert!(!e.message.is_empty(), "a problem without a message: {e:?}");
                if let Some(node) = &e.node_id {
                    assert!(ids.contains_key(node.as_str()), "unknown node_id: {e:?}");
                }
                if e.code == ValidationCode::Cycle {
                    assert!(!e.nodes.is_empty(), "a cycle without nodes: {e:?}");
                    for n in &e.nodes {
                        assert!(
                            ids.contains_key(n.as_str()),
                            "unknown node on a cycle: {e:?}"
                        );
                    }
                }
            }
            assert!(
                Workflow::compile_ref(def, Some(lookup)).is_err(),
                "an invalid definition compiled"
            );
            // The lookup only adds `unknown_executor` problems.
            let only_executors = errors
                .0
                .iter()
                .all(|e| e.code == ValidationCode::UnknownExecutor);
            assert_eq!(
                loose.is_ok(),
                only_executors,
                "validation with and without executors disagree: {loose:?} vs {errors:?}"
            );
        }
        Ok(()) => {
            assert!(
                loose.is_ok(),
                "valid with executors but not without: {loose:?}"
            );
            let workflow = match Workflow::compile_ref(def, Some(lookup)) {
                Ok(w) => w,
                Err(e) => panic!("a valid definition did not compile: {e:?}"),
            };
            check_workflow(def, &workflow);
            check_round_trip(def);
        }
    }
}

fn check_workflow(def: &WorkflowDefinition, wf: &Workflow) {
    assert_eq!(wf.len(), def.nodes.len());
    assert_eq!(wf.id(), def.id);
    let order = wf.topological_order();
    assert_eq!(
        order.len(),
        def.nodes.len(),
        "topological order misses nodes"
    );
    let position: HashMap<&str, usize> = order.iter().enumerate().map(|(i, n)| (*n, i)).collect();
    assert_eq!(
        position.len(),
        order.len(),
        "a node twice in the topological order"
    );
    for n in &def.nodes {
        for d in &n.depends_on {
            assert!(
                position[d.as_str()] < position[n.id.as_str()],
                "`{}` ordered before its dependency `{d}`",
                n.id
            );
        }
    }
    let levels = wf.levels();
    let level_of: HashMap<&str, usize> = levels
        .iter()
        .enumerate()
        .flat_map(|(l, nodes)| nodes.iter().map(move |n| (*n, l)))
        .collect();
    assert_eq!(
        level_of.len(),
        def.nodes.len(),
        "levels miss or repeat nodes"
    );
    for n in &def.nodes {
        for d in &n.depends_on {
            assert!(level_of[d.as_str()] < level_of[n.id.as_str()]);
        }
    }
    let roots = wf.roots();
    assert_eq!(
        roots.len(),
        def.nodes.iter().filter(|n| n.depends_on.is_empty()).count(),
        "roots disagree with the definition"
    );
    assert!(!roots.is_empty(), "an acyclic graph has a root");
}

fn check_round_trip(def: &WorkflowDefinition) {
    let canonical = def.canonical_json();
    let text = std::str::from_utf8(&canonical).expect("canonical JSON is UTF-8");
    let again = match WorkflowDefinition::from_json_str(text) {
        Ok(d) => d,
        Err(e) => panic!("canonical JSON does not parse back: {e}\n{text}"),
    };
    assert_eq!(
        &again, def,
        "canonical JSON parses to another definition: {text}"
    );
    assert_eq!(again.content_hash(), def.content_hash());
}
