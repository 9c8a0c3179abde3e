//! Text renderings of a workflow's DAG: Graphviz DOT and Mermaid flowcharts.

use std::fmt::Write;

use maestro_dag::{Workflow, WorkflowDefinition};

fn escape_dot(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn escape_mermaid(s: &str) -> String {
    s.replace('"', "#quot;").replace('\n', " ")
}

/// The DAG in Graphviz DOT (node ids are safe identifiers; names are quoted labels).
pub(crate) fn render_dot(def: &WorkflowDefinition, wf: &Workflow) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape_dot(&def.id));
    out.push_str("  rankdir=LR;\n  node [shape=box, style=rounded];\n");
    for n in &def.nodes {
        let _ = writeln!(
            out,
            "  \"{}\" [label=\"{}\\n({})\"];",
            n.id,
            escape_dot(n.display_name()),
            n.node_type.as_str()
        );
    }
    for (s, t) in wf.edges() {
        let _ = writeln!(out, "  \"{s}\" -> \"{t}\";");
    }
    out.push_str("}\n");
    out
}

/// The DAG as a Mermaid flowchart.
pub(crate) fn render_mermaid(def: &WorkflowDefinition, wf: &Workflow) -> String {
    let mut out = String::from("flowchart LR\n");
    for n in &def.nodes {
        let _ = writeln!(out, "  {}[\"{}\"]", n.id, escape_mermaid(n.display_name()));
    }
    for (s, t) in wf.edges() {
        let _ = writeln!(out, "  {s} --> {t}");
    }
    out
}
