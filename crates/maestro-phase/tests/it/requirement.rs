//! The phase requirement text, section by section, in the original system's format.

use maestro_phase::{UpstreamOutput, requirement_text};
use serde_json::{Value, json};

fn check(requirement: &str, upstream: &[(&str, Value)], expected: &str) {
    let upstream: Vec<UpstreamOutput> = upstream
        .iter()
        .map(|(id, out)| UpstreamOutput::new(*id, out.clone()))
        .collect();
    assert_eq!(requirement_text(requirement, &upstream), expected);
}

#[test]
fn a_first_phase_gets_only_the_requirement() {
    check(
        "Build a todo app",
        &[],
        "## Original Requirement:\nBuild a todo app\n",
    );
    check("", &[], "## Original Requirement:\n\n");
}

#[test]
fn upstream_outputs_are_indented_json_under_their_node_ids() {
    check(
        "Build a todo app",
        &[
            ("phase_backend_development", json!({"api": {"routes": 3}})),
            ("phase_frontend_development", json!({})),
        ],
        "## Original Requirement:\nBuild a todo app\n\
         \n\
         \n## Previous Phase Outputs:\n\
         \n### phase_backend_development:\n\
         {\n  \"api\": {\n    \"routes\": 3\n  }\n}\n\
         \n### phase_frontend_development:\n\
         {}",
    );
}

#[test]
fn artifacts_are_listed_per_node_that_has_some() {
    check(
        "R",
        &[
            ("phase_a", json!({"artifacts": ["a.md", "b.md"]})),
            ("phase_b", json!({"artifacts": []})),
        ],
        "## Original Requirement:\nR\n\
         \n\
         \n## Previous Phase Outputs:\n\
         \n### phase_a:\n\
         {\n  \"artifacts\": [\n    \"a.md\",\n    \"b.md\"\n  ]\n}\n\
         \n### phase_b:\n\
         {\n  \"artifacts\": []\n}\n\
         \n## Available Artifacts:\n\
         \n### phase_a:\n\
         - a.md\n\
         - b.md",
    );
}

#[test]
fn contracts_follow_as_indented_json() {
    check(
        "R",
        &[(
            "phase_design",
            json!({"contracts": [{"name": "api"}, "plain text contract"]}),
        )],
        "## Original Requirement:\nR\n\
         \n\
         \n## Previous Phase Outputs:\n\
         \n### phase_design:\n\
         {\n  \"contracts\": [\n    {\n      \"name\": \"api\"\
         \n    },\n    \"plain text contract\"\n  ]\n}\n\
         \n## Previous Phase Contracts:\n\
         {\n  \"name\": \"api\"\n}\n\
         plain text contract",
    );
}

#[test]
fn sections_come_in_order_outputs_artifacts_contracts() {
    let upstream = [UpstreamOutput::new(
        "phase_design",
        json!({"artifacts": ["design.md"], "contracts": [{"name": "api"}]}),
    )];
    let text = requirement_text("R", &upstream);
    let at = |s: &str| {
        text.find(s)
            .unwrap_or_else(|| panic!("{s:?} missing in {text}"))
    };
    assert!(at("## Original Requirement:") < at("## Previous Phase Outputs:"));
    assert!(at("## Previous Phase Outputs:") < at("## Available Artifacts:"));
    assert!(at("## Available Artifacts:") < at("## Previous Phase Contracts:"));
}
