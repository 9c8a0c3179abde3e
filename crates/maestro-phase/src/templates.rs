//! SDLC workflow templates: the phases in sequence ([`linear_workflow`]) or with backend and
//! frontend development in parallel ([`parallel_workflow`]).
//!
//! Every node is a `phase` node run by the executor registered as [`PHASE_EXECUTOR`], with node
//! id `phase_<name>`, name `<name>`, `config {phase: <name>}` and `metadata {phase_name: <name>}`.
//! Nodes keep the default retry policy (one attempt); adjust the returned definition to change
//! that.

use maestro_dag::{NodeDefinition, NodeType, WorkflowDefinition};
use serde_json::{Map, Value, json};

/// The SDLC phases, in order.
pub const SDLC_PHASES: [&str; 6] = [
    "requirement_analysis",
    "design",
    "backend_development",
    "frontend_development",
    "testing",
    "review",
];

/// The executor key phase nodes use.
pub const PHASE_EXECUTOR: &str = "phase";

/// The id of the default linear workflow.
pub const LINEAR_WORKFLOW_ID: &str = "sdlc_linear";

/// The id of the default parallel workflow.
pub const PARALLEL_WORKFLOW_ID: &str = "sdlc_parallel";

/// The node id of a phase: `phase_<name>`.
pub fn phase_node_id(phase: &str) -> String {
    format!("phase_{phase}")
}

/// A `phase` node for `phase` with no dependencies.
pub fn phase_node(phase: &str) -> NodeDefinition {
    let mut node = NodeDefinition::new(phase_node_id(phase), PHASE_EXECUTOR);
    node.name = Some(phase.to_string());
    node.node_type = NodeType::Phase;
    node.config = json!({ "phase": phase });
    node.metadata.insert("phase_name".into(), phase.into());
    node
}

/// The phases in the given order, each depending on the one before.
///
/// The definition is not validated here: an empty list or a repeated phase shows up as an
/// `empty_workflow` or `duplicate_node` error when it is compiled or submitted.
pub fn linear_workflow<I, S>(id: impl Into<String>, phases: I) -> WorkflowDefinition
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let phases: Vec<String> = phases.into_iter().map(|p| p.as_ref().to_string()).collect();
    let mut nodes: Vec<NodeDefinition> = Vec::with_capacity(phases.len());
    for phase in &phases {
        let mut node = phase_node(phase);
        if let Some(previous) = nodes.last() {
            node.depends_on.push(previous.id.clone());
        }
        nodes.push(node);
    }
    let mut def = WorkflowDefinition::new(id, nodes);
    def.name = Some("SDLC, phases in sequence".into());
    def.metadata = metadata("linear", phases.iter().map(String::as_str));
    def
}

/// The six SDLC phases with design fanning out to backend and frontend development, which both
/// join into testing: levels `[requirement_analysis] [design] [backend_development,
/// frontend_development] [testing] [review]`, 6 nodes and 6 edges.
pub fn parallel_workflow(id: impl Into<String>) -> WorkflowDefinition {
    let [requirements, design, backend, frontend, testing, review] = SDLC_PHASES;
    let node =
        |phase: &str, deps: &[&str]| phase_node(phase).after(deps.iter().map(|d| phase_node_id(d)));
    let nodes = vec![
        node(requirements, &[]),
        node(design, &[requirements]),
        node(backend, &[design]),
        node(frontend, &[design]),
        node(testing, &[backend, frontend]),
        node(review, &[testing]),
    ];
    let mut def = WorkflowDefinition::new(id, nodes);
    def.name = Some("SDLC, backend and frontend in parallel".into());
    def.metadata = metadata("parallel", SDLC_PHASES);
    def
}

/// [`linear_workflow`] of [`SDLC_PHASES`] with id [`LINEAR_WORKFLOW_ID`].
pub fn sdlc_linear() -> WorkflowDefinition {
    linear_workflow(LINEAR_WORKFLOW_ID, SDLC_PHASES)
}

/// [`parallel_workflow`] with id [`PARALLEL_WORKFLOW_ID`].
pub fn sdlc_parallel() -> WorkflowDefinition {
    parallel_workflow(PARALLEL_WORKFLOW_ID)
}

fn metadata<'a>(kind: &str, phases: impl IntoIterator<Item = &'a str>) -> Map<String, Value> {
    let mut m = Map::new();
    m.insert("type".into(), kind.into());
    m.insert(
        "phases".into(),
        phases.into_iter().map(Value::from).collect(),
    );
    m
}
