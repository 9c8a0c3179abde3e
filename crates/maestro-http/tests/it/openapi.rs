//! `GET /api/v1/openapi.json` and its committed copy `docs/openapi.json`: they must not drift
//! (`UPDATE_OPENAPI=1 cargo test -p maestro-http --test it openapi` rewrites the file).

use maestro_http::{Route, Router};
use serde_json::Value;

use crate::support::TestServer;

const COMMITTED: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");

#[tokio::test]
async fn the_served_document_is_the_committed_one() {
    let s = TestServer::start().await;
    let res = s.get("/api/v1/openapi.json").await;
    assert_eq!(res.status, 200, "{}", res.text);
    assert_eq!(res.headers["content-type"], "application/json");
    assert_eq!(res.text, maestro_http::openapi::render());
    if std::env::var_os("UPDATE_OPENAPI").is_some() {
        std::fs::write(COMMITTED, &res.text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(COMMITTED).unwrap_or_default();
    assert!(
        committed == res.text,
        "docs/openapi.json is out of date with the routes; regenerate it with \
         `UPDATE_OPENAPI=1 cargo test -p maestro-http --test it openapi` and commit the result"
    );
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_document() {
    let doc: Value = serde_json::from_str(&maestro_http::openapi::render()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let router = Router::new();
    let paths = doc["paths"].as_object().unwrap();
    for (pattern, route) in Route::ALL {
        // The pattern routes to itself, and the document lists it with each method.
        assert_eq!(router.at(pattern).map(|m| m.route), Some(*route));
        for method in route.methods().iter().filter(|m| **m != http::Method::HEAD) {
            let op = &paths[*pattern][method.as_str().to_ascii_lowercase()];
            assert!(
                op["operationId"].is_string() && op["responses"].is_object(),
                "{method} {pattern} is missing from the OpenAPI document"
            );
            let open = op["security"] == serde_json::json!([]);
            assert_eq!(open, !route.needs_auth(), "{method} {pattern} security");
        }
    }
    assert_eq!(paths.len(), Route::ALL.len(), "no path without a route");
    for schema in [
        "Problem",
        "Event",
        "Run",
        "WorkflowDefinition",
        "RunCreated",
    ] {
        assert!(doc["components"]["schemas"][schema].is_object(), "{schema}");
    }
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"],
        "bearer"
    );
}
