//! Definitions (DESIGN §2): JSON and YAML parsing, strict errors with a position and a field
//! path, defaults, the canonical form and its hash, and import of the original system's form.

use maestro_dag::{
    FailurePolicy, NodeType, ParseError, RetryPolicy, TriggerRule, Workflow, WorkflowDefinition,
};
use serde_json::{Value, json};

/// The example of DESIGN §2, completed with the node it depends on.
const DESIGN_EXAMPLE: &str = r#"{
  "id": "sdlc_parallel",
  "name": "SDLC, backend and frontend in parallel",
  "description": "optional",
  "max_concurrency": 8,
  "failure_policy": "fail_fast",
  "nodes": [
    {"id": "phase_requirement_analysis", "type": "phase", "config": {"phase": "requirement_analysis"}},
    {
      "id": "phase_design",
      "name": "design",
      "type": "phase",
      "executor": "phase",
      "config": {"phase": "design"},
      "depends_on": ["phase_requirement_analysis"],
      "trigger_rule": "all_success",
      "condition": "outputs.phase_requirement_analysis.approved == true",
      "retry": {"max_attempts": 3, "initial_delay_ms": 200, "backoff": 2.0,
                "max_delay_ms": 30000, "jitter": 0.2},
      "timeout_ms": 600000,
      "metadata": {"owner": "team-a"}
    }
  ],
  "metadata": {"tier": 1}
}"#;

const DESIGN_EXAMPLE_YAML: &str = "
id: sdlc_parallel
name: SDLC, backend and frontend in parallel
description: optional
max_concurrency: 8
failure_policy: fail_fast
nodes:
  - id: phase_requirement_analysis
    type: phase
    config: {phase: requirement_analysis}
  - id: phase_design
    name: design
    type: phase
    executor: phase
    config:
      phase: design
    depends_on: [phase_requirement_analysis]
    trigger_rule: all_success
    condition: outputs.phase_requirement_analysis.approved == true
    retry:
      max_attempts: 3
      initial_delay_ms: 200
      backoff: 2.0
      max_delay_ms: 30000
      jitter: 0.2
    timeout_ms: 600000
    metadata: {owner: team-a}
metadata:
  tier: 1
";

fn parse(text: &str) -> WorkflowDefinition {
    WorkflowDefinition::from_json_str(text).unwrap_or_else(|e| panic!("{e}"))
}

/// Parsing `text` fails at `line`/`column` on the field `path`, with a message containing `msg`.
fn check_error(
    result: Result<WorkflowDefinition, ParseError>,
    line: Option<usize>,
    column: Option<usize>,
    path: &str,
    msg: &str,
) {
    let err = result.expect_err("the text must not parse");
    assert_eq!(err.path, path, "path of {err:?}");
    assert_eq!(err.line, line, "line of {err:?}");
    if column.is_some() {
        assert_eq!(err.column, column, "column of {err:?}");
    }
    assert!(err.message.contains(msg), "message of {err:?}");
    let shown = err.to_string();
    if let Some(line) = line {
        assert!(shown.starts_with(&format!("line {line}")), "{shown}");
    }
    if !path.is_empty() {
        assert!(shown.contains(&format!("field `{path}`")), "{shown}");
    }
}

#[test]
fn the_design_example_parses_field_by_field() {
    let def = parse(DESIGN_EXAMPLE);
    assert_eq!(def.id, "sdlc_parallel");
    assert_eq!(def.display_name(), "SDLC, backend and frontend in parallel");
    assert_eq!(def.description.as_deref(), Some("optional"));
    assert_eq!(def.max_concurrency, Some(8));
    assert_eq!(def.failure_policy, FailurePolicy::FailFast);
    assert_eq!(def.metadata["tier"], json!(1));
    let n = def.node("phase_design").expect("node");
    assert_eq!(n.display_name(), "design");
    assert_eq!(n.node_type, NodeType::Phase);
    assert_eq!(n.executor_key(), Some("phase"));
    assert_eq!(n.config, json!({"phase": "design"}));
    assert_eq!(n.depends_on, ["phase_requirement_analysis"]);
    assert_eq!(n.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(
        n.condition.as_deref(),
        Some("outputs.phase_requirement_analysis.approved == true")
    );
    assert_eq!(
        n.retry,
        RetryPolicy {
            max_attempts: 3,
            initial_delay_ms: 200,
            backoff: 2.0,
            max_delay_ms: 30_000,
            jitter: 0.2
        }
    );
    assert_eq!(n.timeout_ms, Some(600_000));
    assert_eq!(n.metadata["owner"], json!("team-a"));
    Workflow::compile(def, None).expect("the example is valid");
}

#[test]
fn yaml_reads_the_same_definition_as_json() {
    let from_yaml = WorkflowDefinition::from_yaml_str(DESIGN_EXAMPLE_YAML).expect("yaml");
    assert_eq!(from_yaml, parse(DESIGN_EXAMPLE));
    assert_eq!(
        from_yaml.content_hash(),
        parse(DESIGN_EXAMPLE).content_hash()
    );
    // A file's name picks the format.
    assert_eq!(
        WorkflowDefinition::from_file_text("flow.YML", DESIGN_EXAMPLE_YAML).unwrap(),
        from_yaml
    );
    assert_eq!(
        WorkflowDefinition::from_file_text("flow.yaml", DESIGN_EXAMPLE_YAML).unwrap(),
        from_yaml
    );
    assert_eq!(
        WorkflowDefinition::from_file_text("flow.json", DESIGN_EXAMPLE).unwrap(),
        from_yaml
    );
    assert!(WorkflowDefinition::from_file_text("flow.json", DESIGN_EXAMPLE_YAML).is_err());
}

#[test]
fn defaults_fill_in_what_is_left_out() {
    let def = parse(r#"{"id": "w", "nodes": [{"id": "a"}]}"#);
    assert_eq!(def.display_name(), "w");
    assert_eq!(def.name, None);
    assert_eq!(def.description, None);
    assert_eq!(def.max_concurrency, None);
    assert_eq!(def.failure_policy, FailurePolicy::FailFast);
    assert!(def.metadata.is_empty());
    let a = &def.nodes[0];
    assert_eq!(a.display_name(), "a");
    assert_eq!(a.node_type, NodeType::Custom);
    assert_eq!(a.executor, None);
    assert_eq!(a.executor_key(), Some("noop"));
    assert_eq!(a.config, json!({}));
    assert!(a.depends_on.is_empty());
    assert_eq!(a.trigger_rule, TriggerRule::AllSuccess);
    assert_eq!(a.condition, None);
    assert_eq!(a.timeout_ms, None);
    assert_eq!(
        a.retry,
        RetryPolicy {
            max_attempts: 1,
            initial_delay_ms: 1000,
            backoff: 2.0,
            max_delay_ms: 60_000,
            jitter: 0.0
        }
    );
    assert_eq!(RetryPolicy::default(), a.retry);
    // A partial retry policy keeps the defaults of the fields it leaves out.
    let def = parse(r#"{"id": "w", "nodes": [{"id": "a", "retry": {"max_attempts": 4}}]}"#);
    assert_eq!(
        def.nodes[0].retry,
        RetryPolicy {
            max_attempts: 4,
            ..RetryPolicy::default()
        }
    );
}

#[test]
fn the_executor_key_defaults_by_node_type() {
    for (ty, key) in [
        ("phase", Some("phase")),
        ("custom", Some("noop")),
        ("parallel_group", Some("noop")),
        ("conditional", Some("noop")),
        ("human_review", None),
    ] {
        let def = parse(&format!(
            r#"{{"id": "w", "nodes": [{{"id": "a", "type": "{ty}"}}]}}"#
        ));
        assert_eq!(def.nodes[0].node_type.as_str(), ty);
        assert_eq!(def.nodes[0].executor_key(), key, "{ty}");
    }
    let def = parse(r#"{"id": "w", "nodes": [{"id": "a", "type": "phase", "executor": "http"}]}"#);
    assert_eq!(def.nodes[0].executor_key(), Some("http"));
}

#[test]
fn unknown_fields_are_errors_with_line_column_and_path() {
    // At the top level.
    check_error(
        WorkflowDefinition::from_json_str("{\n  \"id\": \"w\",\n  \"nodez\": []\n}"),
        Some(3),
        None,
        "nodez",
        "unknown field `nodez`",
    );
    // In a node.
    check_error(
        WorkflowDefinition::from_json_str(
            "{\"id\": \"w\", \"nodes\": [\n  {\"id\": \"a\"},\n  {\"id\": \"b\", \"dependson\": [\"a\"]}\n]}",
        ),
        Some(3),
        None,
        "nodes[1].dependson",
        "unknown field `dependson`",
    );
    // In a retry policy.
    check_error(
        WorkflowDefinition::from_json_str(
            "{\"id\": \"w\", \"nodes\": [{\"id\": \"a\",\n \"retry\": {\"max_attempt\": 3}}]}",
        ),
        Some(2),
        None,
        "nodes[0].retry.max_attempt",
        "unknown field `max_attempt`",
    );
    // The same in YAML.
    check_error(
        WorkflowDefinition::from_yaml_str("id: w\nnodes:\n  - id: a\n    timeout: 5\n"),
        Some(4),
        None,
        "nodes[0].timeout",
        "unknown field `timeout`",
    );
}

#[test]
fn wrong_types_and_bad_syntax_are_errors_with_a_position() {
    check_error(
        WorkflowDefinition::from_json_str(
            "{\"id\": \"w\", \"nodes\": [{\"id\": \"a\",\n \"retry\": {\"max_attempts\": \"three\"}}]}",
        ),
        Some(2),
        None,
        "nodes[0].retry.max_attempts",
        "invalid type",
    );
    check_error(
        WorkflowDefinition::from_json_str(
            "{\"id\": \"w\", \"nodes\": [{\"id\": \"a\", \"type\": \"robot\"}]}",
        ),
        Some(1),
        None,
        "nodes[0].type",
        "unknown variant `robot`",
    );
    check_error(
        WorkflowDefinition::from_json_str("{\"id\": \"w\",\n \"nodes\": [}"),
        Some(2),
        Some(12),
        "",
        "expected value",
    );
    check_error(
        WorkflowDefinition::from_yaml_str("id: w\nnodes:\n  - id: a\n    depends_on: 7\n"),
        Some(4),
        None,
        "nodes[0].depends_on",
        "invalid type",
    );
}

#[test]
fn serialization_round_trips_through_json_and_yaml() {
    let def = parse(DESIGN_EXAMPLE);
    let json_text = serde_json::to_string_pretty(&def).unwrap();
    assert_eq!(parse(&json_text), def);
    let canonical = String::from_utf8(def.canonical_json()).unwrap();
    assert_eq!(parse(&canonical), def);
    let yaml_text = serde_yaml::to_string(&def).unwrap();
    assert_eq!(WorkflowDefinition::from_yaml_str(&yaml_text).unwrap(), def);
    assert_eq!(
        WorkflowDefinition::from_value(serde_json::to_value(&def).unwrap()).unwrap(),
        def
    );
}

#[test]
fn the_canonical_form_omits_defaults() {
    let def = parse(r#"{"id": "w", "nodes": [{"id": "a"}, {"id": "b", "depends_on": ["a"]}]}"#);
    assert_eq!(
        serde_json::from_slice::<Value>(&def.canonical_json()).unwrap(),
        json!({
            "id": "w",
            "failure_policy": "fail_fast",
            "nodes": [
                {"id": "a", "type": "custom"},
                {"id": "b", "type": "custom", "depends_on": ["a"]}
            ]
        })
    );
}

#[test]
fn the_content_hash_is_stable_and_follows_the_content() {
    let def = parse(DESIGN_EXAMPLE);
    let hash = def.content_hash();
    assert!(hash.starts_with("sha256:"), "{hash}");
    assert_eq!(hash.len(), 7 + 64);
    assert!(
        hash[7..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // Same content, different layout and key order: same hash.
    assert_eq!(parse(DESIGN_EXAMPLE).content_hash(), hash);
    let reordered =
        serde_json::to_string(&serde_json::from_str::<Value>(DESIGN_EXAMPLE).unwrap()).unwrap();
    assert_eq!(parse(&reordered).content_hash(), hash);
    // Writing a default explicitly is the same content.
    let a = parse(r#"{"id": "w", "nodes": [{"id": "a"}]}"#);
    let b = parse(
        r#"{"id": "w", "failure_policy": "fail_fast", "metadata": {},
            "nodes": [{"id": "a", "type": "custom", "trigger_rule": "all_success", "config": {}}]}"#,
    );
    assert_eq!(a.content_hash(), b.content_hash());
    // Any change of content changes it.
    let mutations: [fn(&mut WorkflowDefinition); 11] = [
        |d| d.id.push('2'),
        |d| d.name = Some("other".into()),
        |d| d.max_concurrency = Some(9),
        |d| d.failure_policy = FailurePolicy::Continue,
        |d| d.nodes[1].config = json!({"phase": "design", "x": 1}),
        |d| d.nodes[1].trigger_rule = TriggerRule::AllDone,
        |d| d.nodes[1].retry.max_attempts = 4,
        |d| d.nodes[1].timeout_ms = None,
        |d| d.nodes[1].condition = None,
        |d| d.nodes.swap(0, 1),
        |d| {
            d.metadata.insert("tier".into(), json!(2));
        },
    ];
    for (i, m) in mutations.iter().enumerate() {
        let mut changed = def.clone();
        m(&mut changed);
        assert_ne!(changed.content_hash(), hash, "mutation {i}");
    }
}

#[test]
fn trigger_rules_parse_by_wire_name_and_keep_unknown_names() {
    let names = [
        "all_success",
        "all_done",
        "all_failed",
        "one_success",
        "one_failed",
        "none_failed",
        "none_failed_min_one_success",
        "always",
    ];
    let wire: Vec<&str> = TriggerRule::ALL.iter().map(TriggerRule::as_str).collect();
    assert_eq!(wire, names);
    for rule in TriggerRule::ALL {
        assert_eq!(TriggerRule::parse(rule.as_str()), rule);
        assert_eq!(serde_json::to_value(&rule).unwrap(), json!(rule.as_str()));
    }
    // An unknown name parses (validation reports it) and is written back as it was.
    let def = parse(r#"{"id": "w", "nodes": [{"id": "a", "trigger_rule": "sometimes"}]}"#);
    assert_eq!(
        def.nodes[0].trigger_rule,
        TriggerRule::Invalid("sometimes".into())
    );
    assert!(
        String::from_utf8(def.canonical_json())
            .unwrap()
            .contains("\"sometimes\"")
    );
}

#[test]
fn retry_delays_grow_exponentially_up_to_the_cap() {
    let p = RetryPolicy {
        max_attempts: 6,
        initial_delay_ms: 100,
        backoff: 2.0,
        max_delay_ms: 1000,
        jitter: 0.0,
    };
    let delays: Vec<u64> = (1..=6).map(|k| p.base_delay_ms(k)).collect();
    assert_eq!(delays, [100, 200, 400, 800, 1000, 1000]);
    assert_eq!(p.delay_ms(3, 0.0), 400);
    assert_eq!(p.delay_ms(3, 0.999), 400);
    // Jitter scales by [1 - j, 1 + j] and never exceeds the cap.
    let j = RetryPolicy { jitter: 0.5, ..p };
    assert_eq!(j.delay_ms(1, 0.0), 50);
    assert_eq!(j.delay_ms(1, 0.5), 100);
    assert!((149..=150).contains(&j.delay_ms(1, 0.999_999)));
    assert_eq!(j.delay_ms(5, 0.999), 1000);
    // Huge exponents saturate at the cap.
    assert_eq!(p.base_delay_ms(u32::MAX), 1000);
    // A fixed policy.
    let f = RetryPolicy::fixed(3, 250);
    assert_eq!(f.max_attempts, 3);
    assert_eq!(
        (1..=3).map(|k| f.base_delay_ms(k)).collect::<Vec<_>>(),
        [250; 3]
    );
}

/// The original system's serialized form of its 6-node parallel SDLC workflow (`to_dict`).
fn original_sdlc(edges: Value) -> Value {
    let phases = [
        ("requirement_analysis", vec![]),
        ("design", vec!["phase_requirement_analysis"]),
        ("backend_development", vec!["phase_design"]),
        ("frontend_development", vec!["phase_design"]),
        (
            "testing",
            vec!["phase_backend_development", "phase_frontend_development"],
        ),
        ("review", vec!["phase_testing"]),
    ];
    let mut nodes = serde_json::Map::new();
    for (name, deps) in phases {
        let id = format!("phase_{name}");
        nodes.insert(
            id.clone(),
            json!({
                "node_id": id,
                "name": name,
                "node_type": "phase",
                "executor": null,
                "dependencies": deps,
                "execution_mode": if name.ends_with("development") { "parallel" } else { "sequential" },
                "retry_policy": {"max_attempts": 1, "retry_delay_seconds": 0,
                                 "retry_on_failure": false, "exponential_backoff": false},
                "condition": null,
                "config": {"phase": name},
                "metadata": {}
            }),
        );
    }
    json!({
        "workflow_id": "sdlc_parallel_abc",
        "name": "sdlc_parallel",
        "nodes": nodes,
        "edges": edges,
        "metadata": {"type": "parallel"},
        "created_at": "2024-05-01T12:00:00.000000"
    })
}

fn sdlc_edges() -> Vec<(&'static str, &'static str)> {
    vec![
        ("phase_requirement_analysis", "phase_design"),
        ("phase_design", "phase_backend_development"),
        ("phase_design", "phase_frontend_development"),
        ("phase_backend_development", "phase_testing"),
        ("phase_frontend_development", "phase_testing"),
        ("phase_testing", "phase_review"),
    ]
}

#[test]
fn the_original_serialized_form_is_imported() {
    let pairs: Vec<Value> = sdlc_edges().iter().map(|(a, b)| json!([a, b])).collect();
    let text = serde_json::to_string(&original_sdlc(Value::Array(pairs))).unwrap();
    let def = WorkflowDefinition::from_json_str(&text).expect("import");
    assert_eq!(def.id, "sdlc_parallel_abc");
    assert_eq!(def.display_name(), "sdlc_parallel");
    assert_eq!(def.failure_policy, FailurePolicy::FailFast);
    assert_eq!(def.metadata["type"], json!("parallel"));
    assert_eq!(def.metadata["imported_from"], json!("maestro_python"));
    assert_eq!(def.nodes.len(), 6);
    let testing = def.node("phase_testing").unwrap();
    assert_eq!(testing.node_type, NodeType::Phase);
    assert_eq!(testing.executor_key(), Some("phase"));
    assert_eq!(testing.display_name(), "testing");
    assert_eq!(testing.config, json!({"phase": "testing"}));
    let mut deps = testing.depends_on.clone();
    deps.sort();
    assert_eq!(
        deps,
        ["phase_backend_development", "phase_frontend_development"]
    );
    assert_eq!(testing.retry.max_attempts, 1);
    // It validates and has the original's shape: 6 edges, 5 levels.
    let wf = Workflow::compile(def.clone(), None).expect("valid");
    assert_eq!(wf.edges().len(), 6);
    let levels: Vec<Vec<&str>> = wf
        .levels()
        .into_iter()
        .map(|mut l| {
            l.sort_unstable();
            l
        })
        .collect();
    assert_eq!(
        levels,
        vec![
            vec!["phase_requirement_analysis"],
            vec!["phase_design"],
            vec!["phase_backend_development", "phase_frontend_development"],
            vec!["phase_testing"],
            vec!["phase_review"],
        ]
    );
    // The same through YAML and from a JSON value.
    assert_eq!(WorkflowDefinition::from_yaml_str(&text).unwrap(), def);
    assert_eq!(
        WorkflowDefinition::from_value(serde_json::from_str(&text).unwrap()).unwrap(),
        def
    );
}

#[test]
fn original_edges_are_read_in_both_forms_and_merged_with_dependencies() {
    let dependencies_of = |edges: Value, strip_dependencies: bool| {
        let mut v = original_sdlc(edges);
        if strip_dependencies {
            for n in v["nodes"].as_object_mut().unwrap().values_mut() {
                n["dependencies"] = json!([]);
            }
        }
        let def = WorkflowDefinition::from_value(v).expect("import");
        let mut edges: Vec<(String, String)> = def
            .nodes
            .iter()
            .flat_map(|n| n.depends_on.iter().map(|d| (d.clone(), n.id.clone())))
            .collect();
        edges.sort();
        edges
    };
    let mut want: Vec<(String, String)> = sdlc_edges()
        .into_iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    want.sort();
    let pairs = Value::Array(sdlc_edges().iter().map(|(a, b)| json!([a, b])).collect());
    let rows = Value::Array(
        sdlc_edges()
            .iter()
            .map(|(a, b)| json!({"source": a, "target": b}))
            .collect(),
    );
    // Edges alone, in either form, give the dependencies.
    assert_eq!(dependencies_of(pairs.clone(), true), want);
    assert_eq!(dependencies_of(rows.clone(), true), want);
    // Dependencies and edges that say the same thing are not duplicated.
    assert_eq!(dependencies_of(pairs, false), want);
    assert_eq!(dependencies_of(rows, false), want);
    // Dependencies alone are enough.
    assert_eq!(dependencies_of(json!([]), false), want);
}

#[test]
fn original_retry_policies_are_converted() {
    // (max_attempts, retry_delay_seconds, retry_on_failure, exponential_backoff) -> policy
    let check = |rp: Value, want: RetryPolicy| {
        let v = json!({
            "workflow_id": "w",
            "nodes": {"a": {"node_id": "a", "name": "a", "node_type": "custom", "retry_policy": rp}},
            "edges": []
        });
        let def = WorkflowDefinition::from_value(v.clone()).expect("import");
        assert_eq!(def.nodes[0].retry, want, "{rp}");
        Workflow::compile(def, None).expect("a converted policy is valid");
    };
    let base = RetryPolicy {
        max_attempts: 1,
        initial_delay_ms: 0,
        backoff: 1.0,
        max_delay_ms: 60_000,
        jitter: 0.0,
    };
    check(
        json!({"max_attempts": 3, "retry_delay_seconds": 2, "retry_on_failure": true, "exponential_backoff": true}),
        RetryPolicy {
            max_attempts: 3,
            initial_delay_ms: 2000,
            backoff: 2.0,
            ..base.clone()
        },
    );
    check(
        json!({"max_attempts": 4, "retry_delay_seconds": 0.25, "retry_on_failure": true, "exponential_backoff": false}),
        RetryPolicy {
            max_attempts: 4,
            initial_delay_ms: 250,
            ..base.clone()
        },
    );
    // Without retry_on_failure the original made one attempt, whatever max_attempts said.
    check(
        json!({"max_attempts": 5, "retry_delay_seconds": 1, "retry_on_failure": false, "exponential_backoff": true}),
        RetryPolicy {
            initial_delay_ms: 1000,
            backoff: 2.0,
            ..base.clone()
        },
    );
    // A delay longer than the default cap raises the cap.
    check(
        json!({"max_attempts": 2, "retry_delay_seconds": 120, "retry_on_failure": true, "exponential_backoff": false}),
        RetryPolicy {
            max_attempts: 2,
            initial_delay_ms: 120_000,
            max_delay_ms: 120_000,
            ..base.clone()
        },
    );
    // The original's defaults.
    check(json!({}), base);
}

#[test]
fn original_python_conditions_become_cel() {
    let v = json!({
        "workflow_id": "w",
        "nodes": {
            "a": {"node_id": "a", "name": "a", "node_type": "custom", "dependencies": []},
            "b": {"node_id": "b", "name": "b", "node_type": "conditional", "dependencies": ["a"],
                  "condition": "outputs['a']['flag'] == True and not global_context['skip']"}
        },
        "edges": [["a", "b"]]
    });
    let def = WorkflowDefinition::from_value(v).unwrap();
    assert_eq!(
        def.node("b").unwrap().condition.as_deref(),
        Some("outputs['a']['flag'] == true && !inputs['skip']")
    );
    assert_eq!(def.node("b").unwrap().node_type, NodeType::Conditional);
    Workflow::compile(def, None).expect("the translated condition compiles");
}

#[test]
fn original_form_errors_name_the_place() {
    let bad_edge =
        json!({"workflow_id": "w", "nodes": {"a": {"node_id": "a"}}, "edges": [["a", "ghost"]]});
    let err = WorkflowDefinition::from_value(bad_edge).unwrap_err();
    assert_eq!(err.path, "edges[0]");
    assert!(err.message.contains("ghost"), "{err}");

    let malformed = json!({"workflow_id": "w", "nodes": {"a": {"node_id": "a"}}, "edges": [["a"]]});
    assert_eq!(
        WorkflowDefinition::from_value(malformed).unwrap_err().path,
        "edges[0]"
    );

    let bad_type =
        json!({"workflow_id": "w", "nodes": {"a": {"node_id": "a", "node_type": "robot"}}});
    assert_eq!(
        WorkflowDefinition::from_value(bad_type).unwrap_err().path,
        "nodes.a.node_type"
    );

    let no_id = json!({"nodes": {"a": {"node_id": "a"}}});
    assert_eq!(
        WorkflowDefinition::from_value(no_id).unwrap_err().path,
        "workflow_id"
    );

    // A dependency on an unknown node is imported, so that validation reports it with its code.
    let unknown_dep =
        json!({"workflow_id": "w", "nodes": {"a": {"node_id": "a", "dependencies": ["ghost"]}}});
    let def = WorkflowDefinition::from_value(unknown_dep).unwrap();
    let errs = Workflow::compile(def, None).unwrap_err();
    assert!(errs.has(maestro_dag::ValidationCode::UnknownDependency));
}

#[test]
fn a_problem_at_the_top_level_has_an_empty_path() {
    // `ParseError::path` is documented as empty at the top level.
    check_error(
        WorkflowDefinition::from_json_str("{\"nodes\": []}"),
        Some(1),
        None,
        "",
        "missing field `id`",
    );
    check_error(
        WorkflowDefinition::from_yaml_str("nodes: []\n"),
        Some(1),
        None,
        "",
        "missing field `id`",
    );
}

#[test]
fn error_messages_do_not_repeat_the_position() {
    // Line, column and path are fields of the error; the message says only what is wrong, the
    // same way for JSON and YAML.
    let json = WorkflowDefinition::from_json_str(
        "{\"id\": \"w\", \"nodes\": [{\"id\": \"a\", \"timeout\": 5}]}",
    )
    .unwrap_err();
    let yaml = WorkflowDefinition::from_yaml_str("id: w\nnodes:\n  - id: a\n    timeout: 5\n")
        .unwrap_err();
    for err in [&json, &yaml] {
        assert_eq!(err.path, "nodes[0].timeout");
        assert!(
            err.message.starts_with("unknown field `timeout`"),
            "{err:?}"
        );
        assert!(!err.message.contains(" at line "), "{err:?}");
    }
    assert_eq!(json.message, yaml.message);
}

#[test]
fn parse_errors_read_like_compiler_diagnostics() {
    let check = |text: &str, want: &str| {
        let e = WorkflowDefinition::from_file_text("wf.json", text).unwrap_err();
        assert_eq!(e.diagnostic("wf.json"), want);
    };
    check(
        "{\n  \"id\": \"x\",\n  \"nodes\": [\n}",
        "wf.json:4:1: expected value",
    );
    check(
        "{\"id\": \"x\", \"nodes\": [{\"id\": \"a\", \"retry\": {\"max_attempts\": \"3\"}}]}",
        "wf.json:1:63: field `nodes[0].retry.max_attempts`: \
         invalid type: string \"3\", expected u32",
    );
}
