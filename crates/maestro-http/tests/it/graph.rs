//! `GET /api/v1/workflows/{id}/graph?format=svg|layout`: the laid-out DAG as an SVG picture
//! (whose structure the dashboard and the CLI rely on) and as coordinates.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use crate::support::TestServer;

/// A hostile name: markup, an entity, both quotes and a control character.
const HOSTILE: &str = "<script>alert(\"x\")</script> & 'y' \u{1}";

/// The SDLC parallel shape plus a human review with a hostile name and a very long name.
fn shape() -> Value {
    json!({
        "id": "shape",
        "nodes": [
            {"id": "req", "name": "requirements", "type": "phase", "executor": "noop"},
            {"id": "design", "type": "phase", "executor": "noop", "depends_on": ["req"]},
            {"id": "backend", "type": "phase", "executor": "noop", "depends_on": ["design"]},
            {"id": "frontend", "name": "x".repeat(120), "type": "phase", "executor": "noop",
             "depends_on": ["design"]},
            {"id": "testing", "type": "phase", "executor": "noop",
             "depends_on": ["backend", "frontend"]},
            {"id": "ok", "name": HOSTILE, "type": "human_review", "depends_on": ["testing"]},
            {"id": "ship", "executor": "noop", "depends_on": ["ok", "req"]},
        ]
    })
}

const EDGES: [(&str, &str); 8] = [
    ("req", "design"),
    ("design", "backend"),
    ("design", "frontend"),
    ("backend", "testing"),
    ("frontend", "testing"),
    ("testing", "ok"),
    ("ok", "ship"),
    ("req", "ship"),
];

/// An element: its name, its attributes, and the text directly inside it.
type Element = (String, Vec<(String, String)>, String);

/// A minimal well-formedness check of an XML document: tags balance, attributes are quoted
/// once each, and `&` only starts one of the five predefined entities or a numeric reference.
/// Returns the elements as (name, attributes, text directly inside).
fn parse_xml(doc: &str) -> Vec<Element> {
    fn check_entities(s: &str) {
        let mut rest = s;
        while let Some(i) = rest.find('&') {
            rest = &rest[i + 1..];
            let end = rest.find(';').unwrap_or_else(|| panic!("bare & in {s:?}"));
            let name = &rest[..end];
            assert!(
                matches!(name, "amp" | "lt" | "gt" | "quot" | "apos")
                    || name
                        .strip_prefix('#')
                        .is_some_and(|n| n.parse::<u32>().is_ok()),
                "unknown entity &{name}; in {s:?}"
            );
        }
    }
    let mut stack: Vec<usize> = Vec::new();
    let mut elements: Vec<Element> = Vec::new();
    let mut rest = doc.trim();
    assert!(rest.starts_with("<svg "), "{doc}");
    while !rest.is_empty() {
        let lt = rest.find('<').unwrap_or(rest.len());
        let text = &rest[..lt];
        check_entities(text);
        assert!(!text.contains('>'), "stray > in {text:?}");
        if let Some(&open) = stack.last() {
            let inner: &mut String = &mut elements[open].2;
            inner.push_str(text);
        } else {
            assert!(text.trim().is_empty(), "text outside the root: {text:?}");
        }
        rest = &rest[lt..];
        if rest.is_empty() {
            break;
        }
        let gt = rest.find('>').expect("every tag closes");
        let tag = &rest[1..gt];
        rest = &rest[gt + 1..];
        if let Some(name) = tag.strip_prefix('/') {
            let open = stack
                .pop()
                .unwrap_or_else(|| panic!("</{name}> closes nothing"));
            assert_eq!(elements[open].0, name, "mismatched </{name}>");
            continue;
        }
        let self_closing = tag.ends_with('/');
        let tag = tag.trim_end_matches('/');
        let (name, mut attrs) = tag.split_once(char::is_whitespace).unwrap_or((tag, ""));
        assert!(!name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        let mut parsed: Vec<(String, String)> = Vec::new();
        loop {
            attrs = attrs.trim_start();
            if attrs.is_empty() {
                break;
            }
            let (key, after) = attrs.split_once("=\"").unwrap_or_else(|| panic!("{tag}"));
            let end = after.find('"').expect("attribute values close");
            let value = &after[..end];
            assert!(!value.contains('<'), "< in attribute {key}={value:?}");
            check_entities(value);
            assert!(
                parsed.iter().all(|(k, _)| k != key),
                "attribute {key} twice in {tag}"
            );
            parsed.push((key.to_string(), value.to_string()));
            attrs = &after[end + 1..];
        }
        elements.push((name.to_string(), parsed, String::new()));
        if !self_closing {
            stack.push(elements.len() - 1);
        }
    }
    assert!(stack.is_empty(), "unclosed elements");
    elements
}

fn attr<'a>(element: &'a Element, key: &str) -> Option<&'a str> {
    element
        .1
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

#[tokio::test]
async fn svg_draws_every_node_and_edge_in_the_agreed_structure() {
    let s = TestServer::start().await;
    s.create(&shape()).await;
    let res = s.get("/api/v1/workflows/shape/graph?format=svg").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.headers["content-type"], "image/svg+xml");
    let svg = &res.text;
    assert!(
        svg.starts_with(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"maestro-dag\" viewBox=\"0 0 "
        ),
        "{svg}"
    );
    let elements = parse_xml(svg);
    let root = &elements[0];
    assert_eq!(attr(root, "role"), Some("img"));
    assert_eq!(attr(root, "aria-label"), Some("Workflow shape"));
    let viewbox = attr(root, "viewBox").unwrap();
    let w = attr(root, "width").unwrap();
    let h = attr(root, "height").unwrap();
    assert_eq!(viewbox, format!("0 0 {w} {h}"));
    assert!(elements.iter().any(|e| e.0 == "style"));
    assert!(
        elements
            .iter()
            .any(|e| e.0 == "marker" && attr(e, "id") == Some("maestro-arrow"))
    );

    // One path.edge per edge, each with its ends and the arrow.
    let edges: BTreeSet<(&str, &str)> = elements
        .iter()
        .filter(|e| e.0 == "path" && attr(e, "class") == Some("edge"))
        .map(|e| {
            assert_eq!(attr(e, "marker-end"), Some("url(#maestro-arrow)"));
            let d = attr(e, "d").unwrap();
            assert!(d.starts_with('M') && d.contains(" C"), "{d}");
            (attr(e, "data-from").unwrap(), attr(e, "data-to").unwrap())
        })
        .collect();
    assert_eq!(edges, EDGES.into_iter().collect());
    assert_eq!(svg.matches("<path class=\"edge\"").count(), EDGES.len());

    // One g.node per node, with its data attributes, title, box and two lines of text.
    let nodes: Vec<_> = elements
        .iter()
        .enumerate()
        .filter(|(_, e)| e.0 == "g" && attr(e, "class").is_some_and(|c| c.starts_with("node ")))
        .collect();
    let ids: Vec<&str> = nodes
        .iter()
        .map(|(_, e)| attr(e, "data-node-id").unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "req", "design", "backend", "frontend", "testing", "ok", "ship"
        ]
    );
    for (i, node) in &nodes {
        let id = attr(node, "data-node-id").unwrap();
        assert_eq!(attr(node, "id"), Some(format!("node-{id}").as_str()));
        let node_type = attr(node, "data-node-type").unwrap();
        assert_eq!(
            attr(node, "class"),
            Some(format!("node type-{node_type}").as_str())
        );
        assert_eq!(attr(node, "tabindex"), Some("0"));
        assert!(attr(node, "transform").unwrap().starts_with("translate("));
        let children: Vec<_> = elements[i + 1..i + 5].iter().collect();
        assert_eq!(
            children.iter().map(|e| e.0.as_str()).collect::<Vec<_>>(),
            ["title", "rect", "text", "text"]
        );
        assert_eq!(attr(children[1], "class"), Some("box"));
        assert_eq!(attr(children[1], "rx"), Some("6"));
        assert_eq!(attr(children[2], "class"), Some("name"));
        assert_eq!(attr(children[3], "class"), Some("meta"));
        assert_eq!(svg.matches(&format!("data-node-id=\"{id}\"")).count(), 1);
    }
    let node = |id: &str| {
        let (i, e) = nodes
            .iter()
            .find(|(_, e)| attr(e, "data-node-id") == Some(id))
            .unwrap();
        (e, &elements[i + 1..i + 5])
    };
    let (design, inside) = node("design");
    assert_eq!(attr(design, "data-node-type"), Some("phase"));
    assert_eq!(attr(design, "data-executor"), Some("noop"));
    assert_eq!(inside[0].2, "design (design) — phase / noop");
    assert_eq!(inside[2].2, "design");
    assert_eq!(inside[3].2, "phase · noop");
    // A human review has no executor.
    let (review, inside) = node("ok");
    assert_eq!(attr(review, "data-executor"), Some(""));
    assert_eq!(inside[3].2, "human_review");
    // A long name is cut short in the box and whole in the title.
    let (_, inside) = node("frontend");
    assert!(inside[0].2.starts_with(&"x".repeat(120)));
    assert!(inside[2].2.ends_with('…') && inside[2].2.chars().count() < 60);
    s.stop().await;
}

#[tokio::test]
async fn hostile_names_are_escaped_in_the_svg() {
    let s = TestServer::start().await;
    s.create(&shape()).await;
    let svg = s.get("/api/v1/workflows/shape/graph?format=svg").await.text;
    assert!(!svg.contains("<script"), "{svg}");
    assert!(!svg.contains('\u{1}'));
    // In the box, cut short (before escaping, so no entity is split); whole in the title.
    assert!(svg.contains(
        "text-anchor=\"middle\">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; \
         &#39;…</text>"
    ));
    assert!(svg.contains(
        "<title>&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; &#39;y&#39; \u{FFFD} (ok) \
         — human_review</title>"
    ));
    parse_xml(&svg);
    s.stop().await;
}

#[tokio::test]
async fn layout_json_places_every_node_and_routes_every_edge() {
    let s = TestServer::start().await;
    s.create(&shape()).await;
    let res = s.get("/api/v1/workflows/shape/graph?format=layout").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.headers["content-type"], "application/json");
    let body = &res.body;
    assert_eq!(body["workflow_id"], "shape");
    assert_eq!(body["version"], 1);
    assert_eq!(body["crossings"], 0);
    let (width, height) = (
        body["width"].as_f64().unwrap(),
        body["height"].as_f64().unwrap(),
    );
    let nodes = body["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 7);
    let node = |id: &str| nodes.iter().find(|n| n["id"] == id).unwrap();
    assert_eq!(node("ok")["name"], HOSTILE);
    assert_eq!(node("ok")["type"], "human_review");
    assert_eq!(node("ok")["executor"], Value::Null);
    assert_eq!(node("design")["executor"], "noop");
    assert_eq!(node("backend")["layer"], node("frontend")["layer"]);
    for n in nodes {
        let (x, y) = (n["x"].as_f64().unwrap(), n["y"].as_f64().unwrap());
        let (w, h) = (n["width"].as_f64().unwrap(), n["height"].as_f64().unwrap());
        assert!(
            x >= 0.0 && y >= 0.0 && x + w <= width && y + h <= height,
            "{n}"
        );
        assert!(n["layer"].is_u64() && n["order"].is_u64(), "{n}");
    }
    let edges = body["edges"].as_array().unwrap();
    let pairs: BTreeSet<(&str, &str)> = edges
        .iter()
        .map(|e| (e["from"].as_str().unwrap(), e["to"].as_str().unwrap()))
        .collect();
    assert_eq!(pairs, EDGES.into_iter().collect());
    for e in edges {
        let points = e["points"].as_array().unwrap();
        let (from, to) = (
            node(e["from"].as_str().unwrap()),
            node(e["to"].as_str().unwrap()),
        );
        let first = &points[0];
        let last = &points[points.len() - 1];
        let right = from["x"].as_f64().unwrap() + from["width"].as_f64().unwrap();
        assert!((first[0].as_f64().unwrap() - right).abs() < 1e-6, "{e}");
        assert!(
            (last[0].as_f64().unwrap() - to["x"].as_f64().unwrap()).abs() < 1e-6,
            "{e}"
        );
    }
    // The long edge req → ship goes through dummies: more than two points.
    let long = edges
        .iter()
        .find(|e| e["from"] == "req" && e["to"] == "ship")
        .unwrap();
    assert!(long["points"].as_array().unwrap().len() > 2, "{long}");
    s.stop().await;
}

#[tokio::test]
async fn graph_formats_keep_their_errors_and_versions() {
    let s = TestServer::start().await;
    s.create(&shape()).await;
    let bad = s.get("/api/v1/workflows/shape/graph?format=png").await;
    bad.problem(400, "invalid_query");
    assert!(bad.body["detail"].as_str().unwrap().contains("svg"));
    s.get("/api/v1/workflows/nope/graph?format=svg")
        .await
        .problem(404, "workflow_not_found");
    s.get("/api/v1/workflows/shape/graph?format=layout&version=2")
        .await
        .problem(404, "workflow_not_found");
    let v1 = s
        .get("/api/v1/workflows/shape/graph?format=svg&version=1")
        .await;
    assert_eq!(v1.status, 200);
    // Same definition, same picture.
    assert_eq!(
        v1.text,
        s.get("/api/v1/workflows/shape/graph?format=svg").await.text
    );
    s.stop().await;
}

#[tokio::test]
async fn a_big_workflow_is_drawn_whole() {
    let s = TestServer::start().await;
    // 1,000 nodes in 50 layers of 20, each depending on two nodes of the layer before.
    let nodes: Vec<Value> = (0..1_000)
        .map(|i| {
            let deps: Vec<String> = if i < 20 {
                Vec::new()
            } else {
                let before = (i / 20 - 1) * 20;
                let other = (i % 20 + 1 + (i * 7) % 19) % 20;
                vec![
                    format!("n{}", before + i % 20),
                    format!("n{}", before + other),
                ]
            };
            json!({"id": format!("n{i}"), "executor": "noop", "depends_on": deps})
        })
        .collect();
    s.create(&json!({"id": "big", "nodes": nodes})).await;
    let res = s.get("/api/v1/workflows/big/graph?format=svg").await;
    assert_eq!(res.status, 200, "{}", res.text);
    let elements = parse_xml(&res.text);
    let drawn = elements
        .iter()
        .filter(|e| e.0 == "g" && attr(e, "data-node-id").is_some())
        .count();
    assert_eq!(drawn, 1_000);
    let layout = s.get("/api/v1/workflows/big/graph?format=layout").await;
    assert_eq!(layout.body["layers"], 50);
    s.stop().await;
}

#[tokio::test]
async fn a_stored_definition_with_executors_this_server_lacks_is_still_drawn() {
    use std::sync::Arc;

    use maestro_dag::{DefinitionStore, MemoryStore, WorkflowDefinition};
    use maestro_http::HttpConfig;

    // Stored behind the API's back (as the SDLC templates are at startup), with an executor
    // the server has no registration for.
    let store = Arc::new(MemoryStore::new());
    let def: WorkflowDefinition = serde_json::from_value(json!({
        "id": "elsewhere",
        "nodes": [
            {"id": "a", "executor": "team_engine_only"},
            {"id": "b", "executor": "noop", "depends_on": ["a"]},
        ]
    }))
    .unwrap();
    store.put_definition(&def).await.unwrap();
    let s = TestServer::start_with_store(HttpConfig::default(), store).await;

    for format in ["svg", "layout", "dot", "mermaid", "json"] {
        let res = s
            .get(&format!(
                "/api/v1/workflows/elsewhere/graph?format={format}"
            ))
            .await;
        assert_eq!(res.status, 200, "{format}: {}", res.text);
    }
    let svg = s.get("/api/v1/workflows/elsewhere/graph?format=svg").await;
    assert!(svg.text.contains(r#"data-executor="team_engine_only""#));
    // Starting a run still needs the executor.
    let res = s.post("/api/v1/workflows/elsewhere/runs", &json!({})).await;
    assert!(res.status.is_client_error(), "{}", res.text);
}
