//! Validation (DESIGN §2): every problem at once, each with its stable code and the node(s) it
//! concerns; what is valid stays valid (disconnected graphs, very long chains).

use maestro_dag::{
    ExecutorLookup, NodeDefinition, RetryPolicy, ValidationCode as C, ValidationError, Workflow,
    WorkflowDefinition, validate,
};
use serde_json::json;

use crate::support::{NodeExt, node, workflow};

/// The executors the tests pretend to have.
fn registry(key: &str) -> bool {
    matches!(key, "script" | "noop" | "phase")
}

/// Validates `def` against the test registry and returns its problems as `(code, node)`.
fn problems(def: &WorkflowDefinition) -> Vec<ValidationError> {
    let lookup: &dyn ExecutorLookup = &registry;
    match validate(def, Some(lookup)) {
        Ok(()) => Vec::new(),
        Err(errs) => errs.0,
    }
}

/// `def` has exactly the problems `want` (as `(code, node)`, in any order), and each message
/// follows the house style (lowercase start, no final period).
fn check(def: WorkflowDefinition, want: &[(C, Option<&str>)]) -> Vec<ValidationError> {
    let got = problems(&def);
    let mut got_pairs: Vec<(C, Option<String>)> =
        got.iter().map(|e| (e.code, e.node_id.clone())).collect();
    let mut want_pairs: Vec<(C, Option<String>)> = want
        .iter()
        .map(|(c, n)| (*c, n.map(str::to_string)))
        .collect();
    let key = |p: &(C, Option<String>)| (p.0.as_str(), p.1.clone());
    got_pairs.sort_by_key(key);
    want_pairs.sort_by_key(key);
    assert_eq!(got_pairs, want_pairs, "problems: {got:#?}");
    for e in &got {
        let first = e.message.chars().next().expect("a message");
        assert!(
            !first.is_uppercase(),
            "message starts lowercase: {}",
            e.message
        );
        assert!(!e.message.ends_with('.'), "no final period: {}", e.message);
        assert!(e.to_string().starts_with(e.code.as_str()));
    }
    // Stable: the same definition gives the same report.
    assert_eq!(problems(&def), got);
    // A workflow compiles exactly when it validates.
    assert_eq!(
        Workflow::compile(def, Some(&registry as &dyn ExecutorLookup)).is_ok(),
        want.is_empty()
    );
    got
}

fn chain(ids: &[&str]) -> Vec<NodeDefinition> {
    ids.iter()
        .enumerate()
        .map(|(i, id)| {
            let n = node(id);
            if i == 0 { n } else { n.after([ids[i - 1]]) }
        })
        .collect()
}

#[test]
fn a_well_formed_workflow_is_valid() {
    check(workflow("w", chain(&["a", "b", "c"])), &[]);
}

#[test]
fn an_empty_workflow_is_reported() {
    check(workflow("w", vec![]), &[(C::EmptyWorkflow, None)]);
}

#[test]
fn duplicate_node_ids_are_reported() {
    check(
        workflow("w", vec![node("a"), node("b"), node("a")]),
        &[(C::DuplicateNode, Some("a"))],
    );
}

#[test]
fn unknown_dependencies_are_reported() {
    check(
        workflow("w", vec![node("a"), node("b").after(["a", "ghost"])]),
        &[(C::UnknownDependency, Some("b"))],
    );
}

#[test]
fn self_dependencies_are_reported_on_their_own() {
    // Not also as a cycle.
    check(
        workflow("w", vec![node("a").after(["a"])]),
        &[(C::SelfDependency, Some("a"))],
    );
}

#[test]
fn a_cycle_is_reported_with_its_nodes_in_order() {
    // a -> b -> c -> a (each node depends on the one before it, `a` on `c`).
    let got = check(
        workflow(
            "w",
            vec![
                node("a").after(["c"]),
                node("b").after(["a"]),
                node("c").after(["b"]),
            ],
        ),
        &[(C::Cycle, None)],
    );
    assert_eq!(got[0].nodes, ["a", "b", "c"]);
    assert!(got[0].message.contains("a -> b -> c"), "{}", got[0].message);
}

#[test]
fn a_cycle_behind_a_tail_lists_only_the_cycle() {
    // root -> x -> y -> z -> x, plus an unrelated branch; the cycle is x, y, z in some rotation.
    let def = workflow(
        "w",
        vec![
            node("root"),
            node("z").after(["y"]),
            node("x").after(["root", "z"]),
            node("y").after(["x"]),
            node("other").after(["root"]),
        ],
    );
    let got = check(def.clone(), &[(C::Cycle, None)]);
    let cycle = &got[0].nodes;
    assert_eq!(cycle.len(), 3, "{cycle:?}");
    // Each node depends on the one before it, and the first on the last.
    for (k, id) in cycle.iter().enumerate() {
        let before = &cycle[(k + cycle.len() - 1) % cycle.len()];
        assert!(
            def.node(id).unwrap().depends_on.contains(before),
            "{id} depends on {before} in {cycle:?}"
        );
    }
}

#[test]
fn unknown_executors_are_reported_when_a_registry_is_given() {
    let def = workflow(
        "w",
        vec![
            node("a"),
            NodeDefinition::new("b", "http"),
            // Without `executor`, a phase node uses `phase` and a custom node `noop`.
            {
                let mut n = node("c");
                n.executor = None;
                n
            },
        ],
    );
    check(def.clone(), &[(C::UnknownExecutor, Some("b"))]);
    // Without a registry, executor keys are not checked.
    assert!(validate(&def, None).is_ok());
}

#[test]
fn invalid_ids_are_reported() {
    let long = "x".repeat(256);
    check(
        workflow(
            "bad id!",
            vec![
                node("ok-_9"),
                node(""),
                node(&long),
                node("dots.not.allowed"),
            ],
        ),
        &[
            (C::InvalidId, None),
            (C::InvalidId, Some("")),
            (C::InvalidId, Some(long.as_str())),
            (C::InvalidId, Some("dots.not.allowed")),
        ],
    );
    check(
        workflow(&"w".repeat(255), vec![node(&"n".repeat(255))]),
        &[],
    );
}

#[test]
fn invalid_conditions_are_reported() {
    check(
        workflow(
            "w",
            vec![
                node("a"),
                node("b").after(["a"]).when("outputs.a.ok =="),
                node("c").after(["a"]).when("   "),
                node("d").after(["a"]).when("outputs.a.ok == true"),
                // Nested comprehensions multiply (this one would run for hours): one per
                // condition at most. Inside a string, a macro name is only text.
                node("e").after(["a"]).when(
                    "size([0,1,2,3,4,5,6,7,8,9].map(h, [0,1,2,3,4,5,6,7,8,9].map(g, 0))) == 10",
                ),
                node("f")
                    .after(["a"])
                    .when("inputs.xs.all(x, x > 0) && inputs.ys . exists (y, y == 1)"),
                node("g")
                    .after(["a"])
                    .when("inputs.xs.all(x, x != '.map(') && inputs.s == \".filter(\""),
            ],
        ),
        &[
            (C::InvalidCondition, Some("b")),
            (C::InvalidCondition, Some("c")),
            (C::InvalidCondition, Some("e")),
            (C::InvalidCondition, Some("f")),
        ],
    );
}

#[test]
fn invalid_retry_policies_and_timeouts_are_reported() {
    let bad = |id: &str, f: fn(&mut RetryPolicy)| {
        let mut p = RetryPolicy::default();
        f(&mut p);
        node(id).retries(p)
    };
    let mut def = workflow(
        "w",
        vec![
            bad("zero_attempts", |p| p.max_attempts = 0),
            bad("too_many_attempts", |p| {
                p.max_attempts = RetryPolicy::MAX_ATTEMPTS + 1
            }),
            bad("shrinking", |p| p.backoff = 0.5),
            bad("nan", |p| p.backoff = f64::NAN),
            bad("jittery", |p| p.jitter = 1.5),
            bad("capped_below_start", |p| {
                p.initial_delay_ms = 5000;
                p.max_delay_ms = 100;
            }),
            bad("fine", |p| p.max_attempts = RetryPolicy::MAX_ATTEMPTS),
            node("no_time").timeout(0),
        ],
    );
    def.max_concurrency = Some(0);
    check(
        def,
        &[
            (C::InvalidRetry, Some("zero_attempts")),
            (C::InvalidRetry, Some("too_many_attempts")),
            (C::InvalidRetry, Some("shrinking")),
            (C::InvalidRetry, Some("nan")),
            (C::InvalidRetry, Some("jittery")),
            (C::InvalidRetry, Some("capped_below_start")),
            (C::InvalidRetry, Some("no_time")),
            (C::InvalidRetry, None),
        ],
    );
}

#[test]
fn unknown_trigger_rules_are_reported() {
    check(
        workflow(
            "w",
            vec![node("a"), node("b").after(["a"]).rule("sometimes")],
        ),
        &[(C::InvalidTriggerRule, Some("b"))],
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let got = check(
        workflow(
            "no spaces",
            vec![
                node("a").after(["c"]),
                node("b").after(["a"]),
                node("c").after(["b"]),
                node("twin"),
                node("twin"),
                node("d").after(["ghost", "d"]).rule("whenever"),
                NodeDefinition::new("e", "nope").when("(("),
                node("f!").retries(RetryPolicy::fixed(0, 10)),
            ],
        ),
        &[
            (C::InvalidId, None),
            (C::DuplicateNode, Some("twin")),
            (C::UnknownDependency, Some("d")),
            (C::SelfDependency, Some("d")),
            (C::InvalidTriggerRule, Some("d")),
            (C::UnknownExecutor, Some("e")),
            (C::InvalidCondition, Some("e")),
            (C::InvalidId, Some("f!")),
            (C::InvalidRetry, Some("f!")),
            (C::Cycle, None),
        ],
    );
    let shown = maestro_dag::ValidationErrors(got).to_string();
    assert!(shown.starts_with("invalid workflow: "), "{shown}");
    assert_eq!(shown.matches("; ").count(), 9, "{shown}");
}

#[test]
fn problems_have_a_stable_wire_form() {
    let codes = [
        (C::EmptyWorkflow, "empty_workflow"),
        (C::DuplicateNode, "duplicate_node"),
        (C::UnknownDependency, "unknown_dependency"),
        (C::SelfDependency, "self_dependency"),
        (C::Cycle, "cycle"),
        (C::UnknownExecutor, "unknown_executor"),
        (C::InvalidId, "invalid_id"),
        (C::InvalidCondition, "invalid_condition"),
        (C::InvalidRetry, "invalid_retry"),
        (C::InvalidTriggerRule, "invalid_trigger_rule"),
    ];
    for (code, wire) in codes {
        assert_eq!(code.as_str(), wire);
        assert_eq!(code.to_string(), wire);
        assert_eq!(serde_json::to_value(code).unwrap(), json!(wire));
    }
    let got = problems(&workflow(
        "w",
        vec![node("a").after(["b"]), node("b").after(["a"])],
    ));
    let wire = serde_json::to_value(&got[0]).unwrap();
    assert_eq!(wire["code"], json!("cycle"));
    assert_eq!(wire["nodes"], json!(["a", "b"]));
    assert!(wire.get("node_id").is_none(), "{wire}");
    let got = problems(&workflow("w", vec![node("a").after(["ghost"])]));
    let wire = serde_json::to_value(&got[0]).unwrap();
    assert_eq!(wire["code"], json!("unknown_dependency"));
    assert_eq!(wire["node_id"], json!("a"));
    assert!(wire.get("nodes").is_none(), "{wire}");
}

#[test]
fn disconnected_graphs_are_valid() {
    // The original rejected any workflow with two independent sub-graphs.
    let mut nodes = chain(&["a1", "a2", "a3"]);
    nodes.extend(chain(&["b1", "b2"]));
    nodes.push(node("alone"));
    check(workflow("w", nodes), &[]);
}

/// A chain `n0 <- n1 <- … <- n{len-1}` (each node depends on the one before it).
fn long_chain(len: usize) -> Vec<NodeDefinition> {
    (0..len)
        .map(|i| {
            let mut d = node(&format!("n{i}"));
            if i > 0 {
                d.depends_on.push(format!("n{}", i - 1));
            }
            d
        })
        .collect()
}

#[test]
fn a_chain_of_100_000_nodes_validates() {
    // Correctness only: nothing here is timed. Run in a child process, so that a stack overflow
    // in a recursive graph algorithm fails this test instead of aborting the whole suite.
    in_child_process("validation::a_chain_of_100_000_nodes_validates", || {
        let n = 100_000;
        let def = workflow("long", long_chain(n));
        assert_eq!(validate(&def, None), Ok(()));
        let wf = Workflow::compile(def, None).expect("compiles");
        assert_eq!(wf.len(), n);
        assert_eq!(wf.levels().len(), n);
        assert_eq!(wf.roots(), ["n0"]);
        assert_eq!(wf.leaves(), [format!("n{}", n - 1)]);
        assert_eq!(wf.descendants("n0").len(), n - 1);
    });
}

#[test]
fn a_cycle_of_100_000_nodes_is_reported() {
    in_child_process("validation::a_cycle_of_100_000_nodes_is_reported", || {
        let n = 100_000;
        let mut nodes = long_chain(n);
        nodes[0].depends_on.push(format!("n{}", n - 1));
        let errs = validate(&workflow("ring", nodes), None).unwrap_err();
        assert_eq!(errs.0.len(), 1);
        assert_eq!(errs.0[0].code, C::Cycle);
        assert_eq!(errs.0[0].nodes.len(), n);
        assert_eq!(errs.0[0].nodes[0], "n0");
        assert_eq!(errs.0[0].nodes[n - 1], format!("n{}", n - 1));
    });
}

const CHILD: &str = "MAESTRO_DAG_IT_CHILD";

/// Runs `body` in a child process (this test binary, filtered to `test`), so that a crash
/// (a stack overflow aborts the process) fails that one test with its stderr.
pub(crate) fn in_child_process(test: &str, body: impl FnOnce()) {
    if std::env::var_os(CHILD).is_some() {
        body();
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .output()
        .expect("run the test binary");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{test} failed in its child process ({}):\n{stderr}",
        out.status
    );
    assert!(stdout.contains("1 passed"), "{test} did not run: {stdout}");
}
