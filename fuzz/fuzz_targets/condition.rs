//! Fuzzes node conditions (DESIGN §2, `condition`): CEL text → `Condition::compile` →
//! `Condition::evaluate` over run inputs and dependency outputs.
//!
//! Input: the expression, then optionally a line `---` and a JSON object
//! `{"inputs": …, "outputs": …}` as the context (a fixed context otherwise). Asserts, besides
//! "never panics" and "never hangs" (libFuzzer's `-timeout`): compiling is deterministic, an
//! error has a message, and the compiled condition keeps its source. Every condition that
//! compiles is evaluated (`Condition::compile` refuses more than one comprehension macro, which
//! is what once let a 253-byte condition run for hours: `seeds/condition/nested_comprehensions.cel`).

#![no_main]

#[path = "common.rs"]
mod common;

use libfuzzer_sys::fuzz_target;
use maestro_dag::Condition;
use serde_json::{Value, json};

fuzz_target!(|data: &[u8]| {
    common::init();
    let text = String::from_utf8_lossy(data);
    let (source, context) = match text.split_once("\n---\n") {
        Some((s, c)) => (s, serde_json::from_str::<Value>(c).ok()),
        None => (text.as_ref(), None),
    };
    let context = context.unwrap_or_else(default_context);
    let (inputs, outputs) = (&context["inputs"], &context["outputs"]);

    let condition = match Condition::compile(source) {
        Ok(c) => c,
        Err(message) => {
            assert!(!message.is_empty(), "a compile error without a message");
            assert!(
                Condition::compile(source).is_err(),
                "compiling is not deterministic"
            );
            return;
        }
    };
    assert_eq!(condition.source(), source);
    // Evaluating twice need not agree: CEL leaves the iteration order of maps unspecified, so
    // `outputs.map(k, k)[0]` may differ between two contexts.
    if let Err(message) = condition.evaluate(inputs, outputs) {
        assert!(!message.is_empty(), "an evaluation error without a message");
    }
});

/// The context used when the input has none: the shapes a real run passes.
fn default_context() -> Value {
    json!({
        "inputs": {
            "env": "prod",
            "count": 3,
            "ratio": 0.5,
            "tags": ["a", "b"],
            "flags": {"fast": true, "dry_run": false},
            "nothing": null
        },
        "outputs": {
            "phase_design": {"approved": true, "score": 0.9, "artifacts": [{"name": "spec.md"}]},
            "phase_review": {"approved": false, "comments": [], "count": -7},
            "empty": {}
        }
    })
}
