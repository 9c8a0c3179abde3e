//! Graph queries on a compiled workflow: levels, topological order, ready nodes, dependencies,
//! dependents, descendants, roots, leaves and edges.

use std::collections::{BTreeSet, HashSet};

use maestro_dag::{NodeType, Workflow, WorkflowDefinition};

use crate::support::{NodeExt, node, workflow};

const REQ: &str = "phase_requirement_analysis";
const DESIGN: &str = "phase_design";
const BACKEND: &str = "phase_backend_development";
const FRONTEND: &str = "phase_frontend_development";
const TESTING: &str = "phase_testing";
const REVIEW: &str = "phase_review";

/// The original system's parallel SDLC shape: req → design → {backend, frontend} → testing →
/// review (6 nodes, 6 edges, 5 levels).
pub(crate) fn sdlc_parallel() -> WorkflowDefinition {
    let phase = |id: &str| {
        let mut n = node(id).cfg(serde_json::json!({"phase": id.trim_start_matches("phase_")}));
        n.node_type = NodeType::Phase;
        n
    };
    workflow(
        "sdlc_parallel",
        vec![
            phase(REQ),
            phase(DESIGN).after([REQ]),
            phase(BACKEND).after([DESIGN]),
            phase(FRONTEND).after([DESIGN]),
            phase(TESTING).after([BACKEND, FRONTEND]),
            phase(REVIEW).after([TESTING]),
        ],
    )
}

fn compile(def: WorkflowDefinition) -> Workflow {
    Workflow::compile(def, None).unwrap_or_else(|e| panic!("{e}"))
}

fn set<'a>(ids: impl IntoIterator<Item = &'a str>) -> BTreeSet<&'a str> {
    ids.into_iter().collect()
}

#[test]
fn levels_of_the_sdlc_parallel_shape() {
    let wf = compile(sdlc_parallel());
    assert_eq!(
        wf.levels(),
        vec![
            vec![REQ],
            vec![DESIGN],
            vec![BACKEND, FRONTEND],
            vec![TESTING],
            vec![REVIEW]
        ]
    );
    assert_eq!(
        wf.topological_order(),
        [REQ, DESIGN, BACKEND, FRONTEND, TESTING, REVIEW]
    );
    assert_eq!(wf.len(), 6);
    assert!(!wf.is_empty());
    assert_eq!(wf.edges().len(), 6);
}

#[test]
fn a_node_sits_one_level_below_its_deepest_dependency() {
    // Defined out of order on purpose: levels do not depend on definition order.
    let wf = compile(workflow(
        "w",
        vec![
            node("late").after(["deep", "root"]),
            node("deep").after(["mid"]),
            node("mid").after(["root"]),
            node("root"),
            node("other_root"),
        ],
    ));
    assert_eq!(
        wf.levels(),
        vec![
            vec!["root", "other_root"],
            vec!["mid"],
            vec!["deep"],
            vec!["late"]
        ]
    );
    let order = wf.topological_order();
    let pos = |id: &str| order.iter().position(|n| *n == id).unwrap();
    for (from, to) in wf.edges() {
        assert!(pos(from) < pos(to), "{from} before {to} in {order:?}");
    }
}

#[test]
fn ready_nodes_are_those_whose_dependencies_all_completed() {
    let wf = compile(sdlc_parallel());
    let check = |completed: &[&str], want: &[&str]| {
        let done: HashSet<&str> = completed.iter().copied().collect();
        assert_eq!(wf.ready_nodes(&done), want, "after {completed:?}");
    };
    check(&[], &[REQ]);
    check(&[REQ], &[DESIGN]);
    check(&[REQ, DESIGN], &[BACKEND, FRONTEND]);
    check(&[REQ, DESIGN, BACKEND], &[FRONTEND]);
    check(&[REQ, DESIGN, BACKEND, FRONTEND], &[TESTING]);
    check(&[REQ, DESIGN, BACKEND, FRONTEND, TESTING], &[REVIEW]);
    check(&[REQ, DESIGN, BACKEND, FRONTEND, TESTING, REVIEW], &[]);
}

#[test]
fn dependencies_dependents_and_descendants() {
    let wf = compile(sdlc_parallel());
    assert_eq!(wf.dependencies(TESTING), [BACKEND, FRONTEND]);
    assert_eq!(wf.dependencies(REQ), Vec::<&str>::new());
    assert_eq!(wf.dependents(DESIGN), [BACKEND, FRONTEND]);
    assert_eq!(wf.dependents(REVIEW), Vec::<&str>::new());
    assert_eq!(
        set(wf.descendants(DESIGN)),
        set([BACKEND, FRONTEND, TESTING, REVIEW])
    );
    assert_eq!(set(wf.descendants(BACKEND)), set([TESTING, REVIEW]));
    assert!(wf.descendants(REVIEW).is_empty());
    // The diamond below design is counted once.
    assert_eq!(wf.descendants(REQ).len(), 5);
    // Unknown ids have none of these.
    assert!(wf.dependencies("ghost").is_empty());
    assert!(wf.dependents("ghost").is_empty());
    assert!(wf.descendants("ghost").is_empty());
}

#[test]
fn roots_leaves_and_edges() {
    let wf = compile(sdlc_parallel());
    assert_eq!(wf.roots(), [REQ]);
    assert_eq!(wf.leaves(), [REVIEW]);
    assert_eq!(
        wf.edges(),
        [
            (REQ, DESIGN),
            (DESIGN, BACKEND),
            (DESIGN, FRONTEND),
            (BACKEND, TESTING),
            (FRONTEND, TESTING),
            (TESTING, REVIEW),
        ]
    );
    // Disconnected components each have their roots and leaves.
    let wf = compile(workflow(
        "w",
        vec![
            node("a"),
            node("b").after(["a"]),
            node("x"),
            node("y").after(["x"]),
            node("z"),
        ],
    ));
    assert_eq!(wf.roots(), ["a", "x", "z"]);
    assert_eq!(wf.leaves(), ["b", "y", "z"]);
    assert_eq!(wf.levels(), vec![vec!["a", "x", "z"], vec!["b", "y"]]);
}

#[test]
fn a_dependency_listed_twice_is_one_edge() {
    let wf = compile(workflow("w", vec![node("a"), node("b").after(["a", "a"])]));
    assert_eq!(wf.dependencies("b"), ["a"]);
    assert_eq!(wf.dependents("a"), ["b"]);
    assert_eq!(wf.edges(), [("a", "b")]);
}

#[test]
fn a_compiled_workflow_keeps_its_identity_and_settings() {
    let def = sdlc_parallel();
    let hash = def.content_hash();
    let wf = compile(def.clone());
    assert_eq!(wf.id(), "sdlc_parallel");
    assert_eq!(wf.version(), 1);
    assert_eq!(wf.content_hash(), hash);
    assert_eq!(wf.name(), def.display_name());
    assert_eq!(wf.max_concurrency(), def.max_concurrency);
    assert_eq!(wf.failure_policy(), def.failure_policy);
    for n in &def.nodes {
        assert_eq!(wf.trigger_rule(&n.id), Some(&n.trigger_rule));
        assert_eq!(wf.retry_policy(&n.id), Some(&n.retry));
    }
    assert_eq!(
        wf.node_ids().collect::<Vec<_>>(),
        [REQ, DESIGN, BACKEND, FRONTEND, TESTING, REVIEW]
    );
    assert_eq!(wf.index_of(TESTING), Some(4));
    assert_eq!(wf.index_of("ghost"), None);
    assert_eq!(compile(def).with_version(7).version(), 7);
}
