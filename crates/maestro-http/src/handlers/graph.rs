//! Renderings of a workflow's DAG: Graphviz DOT, Mermaid flowcharts, and from
//! [`maestro_dag::layout`] an SVG picture and the layout's coordinates as JSON.

use std::borrow::Cow;
use std::fmt::Write;

use maestro_dag::layout::node_meta;
use maestro_dag::{Layout, LayoutConfig, Workflow, WorkflowDefinition};
use serde_json::{Value, json};

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

/// The default look of the SVG, so that it reads well as a standalone file. Every selector sits
/// in `:where()` (no specificity), so any stylesheet of the page it is inlined in (the dashboard's
/// `status-*` colours) wins.
const SVG_STYLE: &str = "<style>
:where(.maestro-dag){font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif}
:where(.maestro-dag .edge){fill:none;stroke:#94a3b8;stroke-width:1.5}
:where(.maestro-dag .arrow){fill:#94a3b8}
:where(.maestro-dag .box){fill:#f8fafc;stroke:#64748b;stroke-width:1.25}
:where(.maestro-dag .name){font-size:13px;font-weight:600;fill:#0f172a}
:where(.maestro-dag .meta){font-size:11px;fill:#475569}
:where(.maestro-dag .node:focus){outline:none}
:where(.maestro-dag .node:focus-visible .box){stroke-width:3}
:where(.maestro-dag .type-phase .box){fill:#eff6ff;stroke:#3b82f6}
:where(.maestro-dag .type-human_review .box){fill:#fffbeb;stroke:#d97706}
:where(.maestro-dag .type-conditional .box){fill:#f5f3ff;stroke:#8b5cf6}
:where(.maestro-dag .type-parallel_group .box){fill:#f0fdfa;stroke:#0d9488}
</style>
";

const SVG_DEFS: &str = "<defs><marker id=\"maestro-arrow\" viewBox=\"0 0 10 10\" refX=\"10\" \
refY=\"5\" markerWidth=\"9\" markerHeight=\"9\" markerUnits=\"userSpaceOnUse\" orient=\"auto\">\
<path class=\"arrow\" d=\"M0,0 L10,5 L0,10 z\"/></marker></defs>\n";

/// `s` escaped for XML text and attribute values; characters XML 1.0 forbids become U+FFFD.
fn escape_xml(s: &str) -> Cow<'_, str> {
    let plain = |c: char| {
        !matches!(c, '&' | '<' | '>' | '"' | '\'') && (c >= ' ' || matches!(c, '\t' | '\n' | '\r'))
    };
    if s.chars().all(plain) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if plain(c) => out.push(c),
            _ => out.push('\u{FFFD}'),
        }
    }
    Cow::Owned(out)
}

/// A coordinate to two decimals at most (`12`, `12.5`, `12.25`).
struct Num(f64);

impl std::fmt::Display for Num {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let v = (self.0 * 100.0).round() / 100.0;
        // No `-0`.
        write!(f, "{}", if v == 0.0 { 0.0 } else { v })
    }
}

/// The SVG path of an edge: a cubic Bézier between each pair of points, leaving and entering
/// every point horizontally.
fn edge_path(points: &[(f64, f64)]) -> String {
    let mut d = String::new();
    if let Some(&(x, y)) = points.first() {
        let _ = write!(d, "M{},{}", Num(x), Num(y));
    }
    for pair in points.windows(2) {
        let ((x0, y0), (x1, y1)) = (pair[0], pair[1]);
        let bend = (x1 - x0) / 2.0;
        let _ = write!(
            d,
            " C{},{} {},{} {},{}",
            Num(x0 + bend),
            Num(y0),
            Num(x1 - bend),
            Num(y1),
            Num(x1),
            Num(y1)
        );
    }
    d
}

/// The DAG as a standalone SVG picture, laid out by [`Layout::of_workflow`]. Its structure is a
/// contract the dashboard and `maestro graph --format svg` rely on (docs/api.md): one
/// `g.node` per node with `data-node-id`, one `path.edge` per edge with `data-from`/`data-to`.
pub(crate) fn render_svg(def: &WorkflowDefinition, wf: &Workflow) -> String {
    let config = LayoutConfig::default();
    let layout = Layout::of_workflow(wf, &config);
    let mut out = String::with_capacity(1024 + 600 * layout.nodes.len());
    let (w, h) = (Num(layout.width), Num(layout.height));
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"maestro-dag\" viewBox=\"0 0 {w} {h}\" \
         width=\"{w}\" height=\"{h}\" role=\"img\" aria-label=\"Workflow {}\">",
        escape_xml(&def.id)
    );
    out.push_str(SVG_STYLE);
    out.push_str(SVG_DEFS);
    out.push_str("<g class=\"edges\">\n");
    for e in &layout.edges {
        let _ = writeln!(
            out,
            "<path class=\"edge\" data-from=\"{}\" data-to=\"{}\" d=\"{}\" \
             marker-end=\"url(#maestro-arrow)\"/>",
            escape_xml(&e.from),
            escape_xml(&e.to),
            edge_path(&e.points)
        );
    }
    out.push_str("</g>\n<g class=\"nodes\">\n");
    for (laid, n) in layout.nodes.iter().zip(&def.nodes) {
        let id = escape_xml(&n.id);
        let name = n.display_name();
        let node_type = n.node_type.as_str();
        let executor = n.executor_key();
        let title = match executor {
            Some(e) => format!("{name} ({}) — {node_type} / {e}", n.id),
            None => format!("{name} ({}) — {node_type}", n.id),
        };
        let meta = node_meta(n.node_type, executor);
        let _ = writeln!(
            out,
            "<g class=\"node type-{node_type}\" id=\"node-{id}\" data-node-id=\"{id}\" \
             data-node-type=\"{node_type}\" data-executor=\"{}\" transform=\"translate({},{})\" \
             tabindex=\"0\">\n<title>{}</title>\n\
             <rect class=\"box\" width=\"{}\" height=\"{}\" rx=\"6\"/>\n\
             <text class=\"name\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n\
             <text class=\"meta\" x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n</g>",
            escape_xml(executor.unwrap_or("")),
            Num(laid.x),
            Num(laid.y),
            escape_xml(&title),
            Num(laid.width),
            Num(laid.height),
            Num(laid.width / 2.0),
            Num(laid.height / 2.0 - 3.0),
            escape_xml(&config.fit_label(name)),
            Num(laid.width / 2.0),
            Num(laid.height / 2.0 + 13.0),
            escape_xml(&config.fit_label(&meta)),
        );
    }
    out.push_str("</g>\n</svg>\n");
    out
}

/// The layout as JSON: [`Layout`]'s fields, each node with its `name`, `type` and `executor`
/// too, each edge's points as `[x, y]` pairs.
pub(crate) fn layout_json(def: &WorkflowDefinition, wf: &Workflow) -> Value {
    let layout = Layout::of_workflow(wf, &LayoutConfig::default());
    let nodes: Vec<Value> = layout
        .nodes
        .iter()
        .zip(&def.nodes)
        .map(|(laid, n)| {
            json!({
                "id": laid.id,
                "name": n.display_name(),
                "type": n.node_type.as_str(),
                "executor": n.executor_key(),
                "layer": laid.layer,
                "order": laid.order,
                "x": laid.x,
                "y": laid.y,
                "width": laid.width,
                "height": laid.height,
            })
        })
        .collect();
    json!({
        "width": layout.width,
        "height": layout.height,
        "layers": layout.layers,
        "crossings": layout.crossings,
        "nodes": nodes,
        "edges": layout.edges,
    })
}
