//! `maestro-server run FILE`: embedded runs with the built-in executors.

use crate::{example, maestro, row};

#[test]
fn the_parallel_sdlc_example_completes() {
    let out = maestro(&["run", &example("sdlc_parallel.json")]);
    assert_eq!(out.code, 0, "{out:?}");
    for phase in [
        "requirement_analysis",
        "design",
        "backend_development",
        "frontend_development",
        "testing",
        "review",
    ] {
        let cols = row(&out.stdout, &format!("phase_{phase}"));
        assert_eq!(cols[1..3], ["completed", "1"], "{phase}: {out:?}");
    }
    assert!(
        out.stdout.contains("completed in ") && out.stdout.contains(": 6 completed, 0 failed"),
        "{out:?}"
    );
    // Not a terminal: no progress bar on stderr.
    assert!(!out.stderr.contains("nodes  "), "{out:?}");
}

#[test]
fn the_data_pipeline_retries_skips_and_cleans_up() {
    let out = maestro(&["run", &example("data_pipeline.yaml")]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        row(&out.stdout, "load")[1..3],
        ["completed", "3"],
        "{out:?}"
    );
    let skipped = row(&out.stdout, "rebuild_indexes");
    assert_eq!(skipped[1], "skipped", "{out:?}");
    assert!(out.stdout.contains("condition `"), "{out:?}");
    assert_eq!(row(&out.stdout, "cleanup")[1], "completed", "{out:?}");
    assert_eq!(row(&out.stdout, "transform")[1], "completed", "{out:?}");
}

#[test]
fn inputs_reach_conditions() {
    let out = maestro(&[
        "run",
        &example("data_pipeline.yaml"),
        "--inputs",
        r#"{"full_refresh": true}"#,
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        row(&out.stdout, "rebuild_indexes")[1],
        "completed",
        "{out:?}"
    );
}

#[test]
fn a_failing_workflow_exits_1_and_says_why() {
    let out = maestro(&["run", &example("failing.json")]);
    assert_eq!(out.code, 1, "{out:?}");
    let broken = row(&out.stdout, "break");
    assert_eq!(broken[1..3], ["failed", "1"], "{out:?}");
    assert!(out.stdout.contains("this step always fails"), "{out:?}");
    assert_eq!(row(&out.stdout, "publish")[1], "skipped", "{out:?}");
    assert!(out.stdout.contains(" failed in "), "{out:?}");
}

#[test]
fn human_review_is_approved_with_approve_all() {
    let out = maestro(&["run", &example("human_review.json"), "--approve-all"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(
        row(&out.stdout, "approve_release")[1],
        "completed",
        "{out:?}"
    );
    assert_eq!(row(&out.stdout, "deploy")[1], "completed", "{out:?}");
}

#[test]
fn human_review_without_a_reviewer_is_rejected() {
    let out = maestro(&["run", &example("human_review.json")]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(row(&out.stdout, "approve_release")[1], "failed", "{out:?}");
    assert!(out.stdout.contains("--approve-all"), "{out:?}");
    assert_eq!(row(&out.stdout, "deploy")[1], "skipped", "{out:?}");
}
