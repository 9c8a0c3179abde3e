//! `/api/v1/workflows…`: create and version, validate, list, read, delete, graph.

use serde_json::json;

use crate::support::{TestServer, chain};

#[tokio::test]
async fn create_identical_and_changed_definitions_version_correctly() {
    let s = TestServer::start().await;
    let first = s.create(&chain("wf")).await;
    assert_eq!(first.body["workflow_id"], "wf");
    assert_eq!(first.body["version"], 1);
    assert!(
        first.body["content_hash"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(first.body["created_at"].is_string());
    assert_eq!(first.headers["location"], "/api/v1/workflows/wf");

    let same = s.post("/api/v1/workflows", &chain("wf")).await;
    assert_eq!(same.status, 200, "{}", same.text);
    assert_eq!(same.body["version"], 1);
    assert_eq!(same.body["content_hash"], first.body["content_hash"]);

    let mut changed = chain("wf");
    changed["nodes"][2]["depends_on"] = json!(["a"]);
    let second = s.create(&changed).await;
    assert_eq!(second.body["version"], 2);
    assert_ne!(second.body["content_hash"], first.body["content_hash"]);

    let latest = s.get("/api/v1/workflows/wf").await;
    assert_eq!(latest.body["version"], 2);
    assert_eq!(
        latest.body["definition"]["nodes"][2]["depends_on"],
        json!(["a"])
    );
    let v1 = s.get("/api/v1/workflows/wf?version=1").await;
    assert_eq!(v1.body["version"], 1);
    assert_eq!(
        v1.body["definition"]["nodes"][2]["depends_on"],
        json!(["b"])
    );
    s.get("/api/v1/workflows/wf?version=3")
        .await
        .problem(404, "workflow_not_found");
    s.get("/api/v1/workflows/wf?version=0")
        .await
        .problem(400, "invalid_query");
    s.get("/api/v1/workflows/wf?version=x")
        .await
        .problem(400, "invalid_query");
}

#[tokio::test]
async fn a_cycle_is_422_with_its_nodes_and_every_other_problem() {
    let s = TestServer::start().await;
    let def = json!({
        "id": "cyclic",
        "nodes": [
            {"id": "a", "executor": "noop", "depends_on": ["c"]},
            {"id": "b", "executor": "noop", "depends_on": ["a"]},
            {"id": "c", "executor": "noop", "depends_on": ["b"]},
            {"id": "d", "executor": "teleport"},
            {"id": "e", "executor": "noop", "depends_on": ["ghost"]},
        ]
    });
    for path in ["/api/v1/workflows", "/api/v1/workflows/validate"] {
        let res = s.post(path, &def).await;
        let body = res.problem(422, "validation_failed");
        let errors = body["errors"].as_array().unwrap();
        let cycle = errors
            .iter()
            .find(|e| e["code"] == "cycle")
            .expect("a cycle error");
        let nodes: Vec<&str> = cycle["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        for n in ["a", "b", "c"] {
            assert!(nodes.contains(&n), "{nodes:?}");
        }
        let unknown = errors
            .iter()
            .find(|e| e["code"] == "unknown_executor")
            .unwrap();
        assert_eq!(unknown["node_id"], "d");
        assert!(errors.iter().any(|e| e["code"] == "unknown_dependency"));
    }
    // Nothing was stored.
    s.get("/api/v1/workflows/cyclic")
        .await
        .problem(404, "workflow_not_found");
}

#[tokio::test]
async fn validate_answers_levels_without_storing() {
    let s = TestServer::start().await;
    let res = s.post("/api/v1/workflows/validate", &chain("v")).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["valid"], true);
    assert_eq!(res.body["levels"], json!([["a"], ["b"], ["c"]]));
    s.get("/api/v1/workflows/v")
        .await
        .problem(404, "workflow_not_found");
    let empty = s
        .post(
            "/api/v1/workflows/validate",
            &json!({"id": "e", "nodes": []}),
        )
        .await;
    assert_eq!(
        empty.problem(422, "validation_failed")["errors"][0]["code"],
        "empty_workflow"
    );
}

#[tokio::test]
async fn list_is_paginated_and_delete_removes_every_version() {
    let s = TestServer::start().await;
    for i in 0..5 {
        s.create(&chain(&format!("wf{i}"))).await;
    }
    let page = s.get("/api/v1/workflows?limit=2&offset=1").await;
    assert_eq!(page.status, 200);
    let ids: Vec<&str> = page.body["workflows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["workflow_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["wf1", "wf2"]);
    assert_eq!(page.body["next_offset"], 3);
    let last = s.get("/api/v1/workflows?limit=2&offset=4").await;
    assert_eq!(last.body["workflows"].as_array().unwrap().len(), 1);
    assert!(last.body["next_offset"].is_null());
    s.get("/api/v1/workflows?limit=0")
        .await
        .problem(400, "invalid_query");
    s.get("/api/v1/workflows?limit=100000")
        .await
        .problem(400, "invalid_query");
    s.get("/api/v1/workflows?offset=-1")
        .await
        .problem(400, "invalid_query");

    let del = s
        .send(http::Method::DELETE, "/api/v1/workflows/wf0", &[], "")
        .await;
    assert_eq!(del.status, 204);
    s.get("/api/v1/workflows/wf0")
        .await
        .problem(404, "workflow_not_found");
    s.send(http::Method::DELETE, "/api/v1/workflows/wf0", &[], "")
        .await
        .problem(404, "workflow_not_found");
}

#[tokio::test]
async fn graph_renders_json_dot_and_mermaid() {
    let s = TestServer::start().await;
    s.create(&chain("g")).await;
    let j = s.get("/api/v1/workflows/g/graph").await;
    assert_eq!(j.status, 200);
    assert_eq!(
        j.body["edges"],
        json!([{"source": "a", "target": "b"}, {"source": "b", "target": "c"}])
    );
    assert_eq!(j.body["nodes"].as_array().unwrap().len(), 3);
    let dot = s.get("/api/v1/workflows/g/graph?format=dot").await;
    assert!(
        dot.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/vnd.graphviz")
    );
    assert!(dot.text.starts_with("digraph \"g\" {"), "{}", dot.text);
    assert!(dot.text.contains("\"a\" -> \"b\";"));
    let mermaid = s.get("/api/v1/workflows/g/graph?format=mermaid").await;
    assert!(mermaid.text.starts_with("flowchart LR\n"));
    assert!(mermaid.text.contains("  b --> c\n"));
    s.get("/api/v1/workflows/g/graph?format=png")
        .await
        .problem(400, "invalid_query");
    s.get("/api/v1/workflows/nope/graph")
        .await
        .problem(404, "workflow_not_found");
}

#[tokio::test]
async fn the_original_serialized_form_is_accepted() {
    let s = TestServer::start().await;
    let original = json!({
        "workflow_id": "legacy",
        "name": "legacy",
        "nodes": {
            "n1": {"node_id": "n1", "name": "one", "node_type": "custom", "executor": "noop",
                   "dependencies": []},
            "n2": {"node_id": "n2", "name": "two", "node_type": "custom", "executor": "noop",
                   "dependencies": ["n1"]}
        },
        "edges": [["n1", "n2"]]
    });
    let res = s.post("/api/v1/workflows/validate", &original).await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.body["levels"], json!([["n1"], ["n2"]]));
    let created = s.create(&original).await;
    assert_eq!(created.body["workflow_id"], "legacy");
}
