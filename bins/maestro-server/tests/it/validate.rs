//! `maestro-server validate FILE`.

use crate::{example, maestro, scratch_file};

#[test]
fn every_example_validates() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
        if !matches!(ext, "json" | "yaml" | "yml") {
            continue;
        }
        let file = path.to_string_lossy().into_owned();
        let out = maestro(&["validate", &file]);
        assert_eq!(out.code, 0, "{file}: {out:?}");
        assert!(out.stdout.contains(": valid workflow `"), "{out:?}");
        seen += 1;
    }
    assert!(seen >= 4, "expected the four examples, found {seen}");
}

#[test]
fn a_valid_definition_prints_its_levels() {
    let out = maestro(&["validate", &example("sdlc_parallel.json")]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout
            .contains("valid workflow `sdlc_parallel` (6 nodes, 5 levels)"),
        "{out:?}"
    );
    assert!(
        out.stdout
            .contains("level 2: phase_backend_development, phase_frontend_development"),
        "{out:?}"
    );
}

#[test]
fn yaml_is_read_by_extension() {
    let out = maestro(&["validate", &example("data_pipeline.yaml")]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stdout.contains("valid workflow `data_pipeline`"),
        "{out:?}"
    );
}

#[test]
fn a_cycle_is_reported_with_its_nodes_in_order() {
    let file = scratch_file(
        "validate_cycle",
        "cycle.json",
        r#"{"id": "loop", "nodes": [
            {"id": "a", "executor": "noop", "depends_on": ["c"]},
            {"id": "b", "executor": "noop", "depends_on": ["a"]},
            {"id": "c", "executor": "noop", "depends_on": ["b"]}
        ]}"#,
    );
    let out = maestro(&["validate", &file]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("{file}: cycle: the dependencies form a cycle: ")),
        "{out:?}"
    );
    assert!(out.stderr.contains("a -> b -> c"), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");
}

#[test]
fn every_problem_is_reported_with_its_code() {
    let file = scratch_file(
        "validate_many",
        "many.json",
        r#"{"id": "many", "nodes": [
            {"id": "a", "executor": "teleport"},
            {"id": "b", "executor": "noop", "depends_on": ["ghost"]},
            {"id": "c", "executor": "noop", "trigger_rule": "sometimes"}
        ]}"#,
    );
    let out = maestro(&["validate", &file]);
    assert_eq!(out.code, 1, "{out:?}");
    for expected in [
        "unknown_executor: node `a` uses unknown executor `teleport`",
        "unknown_dependency: node `b` depends on unknown node `ghost`",
        "invalid_trigger_rule: node `c` has unknown trigger rule `sometimes`",
        "invalid workflow (3 problems)",
    ] {
        assert!(out.stderr.contains(expected), "{expected}: {out:?}");
    }
}

#[test]
fn malformed_json_points_at_the_line_and_column() {
    let file = scratch_file(
        "validate_malformed",
        "broken.json",
        "{\n  \"id\": \"broken\",\n  \"nodes\": [\n    {\"id\": \"a\" \"executor\": \"noop\"}\n  ]\n}\n",
    );
    let out = maestro(&["validate", &file]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(out.stderr.starts_with(&format!("{file}:4:16: ")), "{out:?}");
}

#[test]
fn a_wrong_field_type_names_the_field() {
    let file = scratch_file(
        "validate_field",
        "field.yaml",
        "id: typed\nnodes:\n  - id: a\n    executor: noop\n    retry:\n      max_attempts: lots\n",
    );
    let out = maestro(&["validate", &file]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains(": field `nodes[0].retry.max_attempts`: "),
        "{out:?}"
    );
    assert!(out.stderr.starts_with(&format!("{file}:6:")), "{out:?}");
}

#[test]
fn a_missing_file_is_a_failure() {
    let out = maestro(&["validate", "/nonexistent/workflow.json"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert!(
        out.stderr
            .contains("/nonexistent/workflow.json: cannot read the file"),
        "{out:?}"
    );
}
