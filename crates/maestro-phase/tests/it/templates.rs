//! The SDLC workflow templates: shape, levels and what each node carries.

use maestro_dag::{NodeType, Workflow};
use maestro_phase::templates::{self, PHASE_EXECUTOR, phase_node_id};
use maestro_phase::{SDLC_PHASES, linear_workflow, parallel_workflow};
use serde_json::json;

fn compiled(def: maestro_dag::WorkflowDefinition) -> Workflow {
    Workflow::compile(def, None).expect("templates are valid workflows")
}

fn check(workflow: &Workflow, levels: &[&[&str]], edges: &[(&str, &str)]) {
    let want_levels: Vec<Vec<String>> = levels
        .iter()
        .map(|l| l.iter().map(|p| phase_node_id(p)).collect())
        .collect();
    assert_eq!(workflow.levels(), want_levels);
    let want_edges: Vec<(String, String)> = edges
        .iter()
        .map(|(a, b)| (phase_node_id(a), phase_node_id(b)))
        .collect();
    let got_edges: Vec<(String, String)> = workflow
        .edges()
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(got_edges, want_edges);
}

#[test]
fn linear_chains_the_sdlc_phases() {
    let def = templates::sdlc_linear();
    assert_eq!(def.id, "sdlc_linear");
    assert_eq!(def.nodes.len(), 6);
    let wf = compiled(def);
    check(
        &wf,
        &[
            &["requirement_analysis"],
            &["design"],
            &["backend_development"],
            &["frontend_development"],
            &["testing"],
            &["review"],
        ],
        &[
            ("requirement_analysis", "design"),
            ("design", "backend_development"),
            ("backend_development", "frontend_development"),
            ("frontend_development", "testing"),
            ("testing", "review"),
        ],
    );
}

#[test]
fn parallel_fans_design_out_and_joins_into_testing() {
    let def = templates::sdlc_parallel();
    assert_eq!(def.id, "sdlc_parallel");
    assert_eq!(def.nodes.len(), 6);
    let wf = compiled(def);
    assert_eq!(wf.edges().len(), 6);
    check(
        &wf,
        &[
            &["requirement_analysis"],
            &["design"],
            &["backend_development", "frontend_development"],
            &["testing"],
            &["review"],
        ],
        &[
            ("requirement_analysis", "design"),
            ("design", "backend_development"),
            ("design", "frontend_development"),
            ("backend_development", "testing"),
            ("frontend_development", "testing"),
            ("testing", "review"),
        ],
    );
}

#[test]
fn linear_takes_any_phase_list_and_id() {
    let def = linear_workflow("mini", ["design", "review"]);
    assert_eq!(def.id, "mini");
    assert_eq!(def.metadata["type"], "linear");
    assert_eq!(def.metadata["phases"], json!(["design", "review"]));
    check(
        &compiled(def),
        &[&["design"], &["review"]],
        &[("design", "review")],
    );
}

#[test]
fn a_bad_phase_list_is_caught_by_validation() {
    assert!(Workflow::compile(linear_workflow("empty", Vec::<String>::new()), None).is_err());
    assert!(Workflow::compile(linear_workflow("dup", ["design", "design"]), None).is_err());
}

#[test]
fn every_node_is_a_phase_node_configured_for_its_phase() {
    for def in [templates::sdlc_linear(), parallel_workflow("p")] {
        let ids: Vec<&str> = def.nodes.iter().map(|n| n.id.as_str()).collect();
        let expected: Vec<String> = SDLC_PHASES.iter().map(|p| phase_node_id(p)).collect();
        assert_eq!(ids, expected, "{}", def.id);
        for (node, phase) in def.nodes.iter().zip(SDLC_PHASES) {
            assert_eq!(node.id, format!("phase_{phase}"));
            assert_eq!(node.display_name(), phase);
            assert_eq!(node.node_type, NodeType::Phase);
            assert_eq!(node.executor.as_deref(), Some(PHASE_EXECUTOR));
            assert_eq!(node.config, json!({"phase": phase}));
            assert_eq!(node.metadata["phase_name"], phase);
            assert_eq!(node.retry.max_attempts, 1);
        }
    }
}

#[test]
fn workflow_metadata_names_the_kind_and_phases() {
    let linear = templates::sdlc_linear();
    let parallel = templates::sdlc_parallel();
    assert_eq!(linear.metadata["type"], "linear");
    assert_eq!(parallel.metadata["type"], "parallel");
    for def in [linear, parallel] {
        assert_eq!(def.metadata["phases"], json!(SDLC_PHASES));
    }
}

#[test]
fn templates_survive_a_json_round_trip() {
    let def = templates::sdlc_parallel();
    let text = String::from_utf8(def.canonical_json()).unwrap();
    assert_eq!(
        maestro_dag::WorkflowDefinition::from_json_str(&text).unwrap(),
        def
    );
}
