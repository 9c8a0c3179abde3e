//! The web dashboard: `GET /` and `GET /assets/{file}` served without a token, with their
//! content types, `ETag`/`If-None-Match` revalidation and security headers; and the browser's
//! way to authenticate a WebSocket, the `maestro.bearer.<base64url(token)>` subprotocol offered
//! with `maestro`, which the server then selects.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use http::{Method, StatusCode};
use maestro_http::HttpConfig;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::support::{Res, TestServer, Ws, chain, ws_read};

const TOKEN: &str = "s3cret-token";
const CSP: &str = "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; \
                   connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

async fn server() -> TestServer {
    TestServer::start_with(HttpConfig::default().with_api_tokens([TOKEN])).await
}

/// Asserts a dashboard answer's status, type and headers, and returns its ETag.
#[track_caller]
fn check(res: &Res, content_type: &str) -> String {
    assert_eq!(res.status, StatusCode::OK, "{}", res.text);
    let h = &res.headers;
    assert_eq!(h["content-type"], content_type);
    assert_eq!(h["content-security-policy"], CSP);
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["x-frame-options"], "DENY");
    assert_eq!(h["cache-control"], "no-cache");
    let etag = h["etag"].to_str().unwrap().to_string();
    assert!(
        etag.len() > 2 && etag.starts_with('"') && etag.ends_with('"'),
        "{etag}"
    );
    etag
}

#[tokio::test]
async fn the_page_and_its_assets_are_served_without_a_token() {
    let s = server().await;
    let page = s.get("/").await;
    check(&page, "text/html; charset=utf-8");
    assert!(page.text.starts_with("<!doctype html>"), "{}", page.text);
    for needle in [
        "<script src=\"/assets/app.js\" defer></script>",
        "href=\"/assets/app.css\"",
        "id=\"token-dialog\"",
    ] {
        assert!(page.text.contains(needle), "{needle} missing");
    }
    // Nothing inline: the policy would block it.
    assert!(!page.text.contains("<style") && !page.text.contains("style="));
    assert!(!page.text.contains("<script>"));

    let js = s.get("/assets/app.js").await;
    check(&js, "text/javascript; charset=utf-8");
    assert!(js.text.contains("maestro.bearer."));
    let css = s.get("/assets/app.css").await;
    check(&css, "text/css; charset=utf-8");
    assert!(css.text.contains(".maestro-dag"));

    // Nothing the page fetches comes from another origin (the SVG namespace is a name, not a
    // fetch).
    for text in [&page.text, &js.text, &css.text] {
        let text = text.replace("http://www.w3.org/2000/svg", "");
        assert!(!text.contains("http://") && !text.contains("https://"));
        assert!(!text.contains("@import") && !text.contains(" url("));
    }

    let head = s.send(Method::HEAD, "/", &[], Bytes::new()).await;
    assert_eq!(head.status, StatusCode::OK);
    assert!(head.text.is_empty());

    // The API itself still needs the token.
    let api = s.get("/api/v1/workflows").await;
    api.problem(401, "unauthorized");
}

#[tokio::test]
async fn a_matching_etag_is_answered_304_and_another_gets_the_content() {
    let s = server().await;
    for (path, ty) in [
        ("/", "text/html; charset=utf-8"),
        ("/assets/app.js", "text/javascript; charset=utf-8"),
        ("/assets/app.css", "text/css; charset=utf-8"),
    ] {
        let first = s.get(path).await;
        let etag = check(&first, ty);
        for matching in [etag.clone(), format!("W/{etag}"), format!("\"x\", {etag}")] {
            let res = s
                .send(
                    Method::GET,
                    path,
                    &[("if-none-match", &matching)],
                    Bytes::new(),
                )
                .await;
            assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{path} {matching}");
            assert!(res.text.is_empty());
            assert_eq!(res.headers["etag"], etag.as_str());
            assert_eq!(res.headers["cache-control"], "no-cache");
        }
        let res = s
            .send(
                Method::GET,
                path,
                &[("if-none-match", "\"stale\"")],
                Bytes::new(),
            )
            .await;
        assert_eq!(check(&res, ty), etag);
        assert_eq!(res.text, first.text);
    }
    let js = s.get("/assets/app.js").await;
    let css = s.get("/assets/app.css").await;
    assert_ne!(js.headers["etag"], css.headers["etag"]);
}

#[tokio::test]
async fn unknown_assets_and_other_methods_are_refused() {
    let s = server().await;
    for path in [
        "/assets/nope.js",
        "/assets/index.html",
        "/assets/..%2FCargo.toml",
    ] {
        s.get(path).await.problem(404, "route_not_found");
    }
    s.get("/assets/app.js/x")
        .await
        .problem(404, "route_not_found");
    let res = s.post("/", &json!({})).await;
    res.problem(405, "method_not_allowed");
    assert_eq!(res.headers["allow"], "GET, HEAD, OPTIONS");
}

/// Opens a run's WebSocket offering `protocols` (and no `Authorization`), returning the
/// socket and the protocol the server selected, or the refused status and problem.
async fn ws_with_protocols(
    s: &TestServer,
    path: &str,
    protocols: &[String],
) -> Result<(Ws, Option<String>), (StatusCode, Value)> {
    let mut req = format!("ws://{}{}", s.addr, path)
        .into_client_request()
        .unwrap();
    if !protocols.is_empty() {
        req.headers_mut().insert(
            "sec-websocket-protocol",
            protocols.join(", ").parse().unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok((ws, res)) => {
            assert_eq!(res.status(), StatusCode::SWITCHING_PROTOCOLS);
            let selected = res
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap().to_string());
            Ok((ws, selected))
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => {
            let body = res
                .body()
                .as_deref()
                .and_then(|b| serde_json::from_slice(b).ok())
                .unwrap_or(Value::Null);
            Err((res.status(), body))
        }
        Err(e) => panic!("websocket handshake failed: {e}"),
    }
}

fn bearer(token: &str) -> String {
    format!("maestro.bearer.{}", URL_SAFE_NO_PAD.encode(token))
}

#[tokio::test]
async fn a_browser_authenticates_its_websocket_with_the_bearer_subprotocol() {
    let s = server().await.with_token(TOKEN);
    s.create(&chain("browser")).await;
    let run_id = s.start_run("browser", json!({})).await;
    s.wait_status(&run_id, &["completed"]).await;
    let path = format!("/api/v1/runs/{run_id}/ws");

    // The token as a subprotocol, offered with `maestro`: accepted, `maestro` selected.
    let (mut ws, selected) = ws_with_protocols(&s, &path, &["maestro".into(), bearer(TOKEN)])
        .await
        .unwrap();
    assert_eq!(selected.as_deref(), Some("maestro"));
    let log = ws_read(&mut ws, usize::MAX).await;
    assert_eq!(log.messages.first().unwrap()["seq"], 1);
    assert_eq!(log.messages.last().unwrap()["type"], "workflow_completed");
    assert_eq!(log.close, Some(1000));

    // `after` resumes there, as the page does after a drop.
    let (mut ws, _) = ws_with_protocols(
        &s,
        &format!("{path}?after=2"),
        &[bearer(TOKEN), "maestro".into()],
    )
    .await
    .unwrap();
    let log = ws_read(&mut ws, usize::MAX).await;
    assert_eq!(log.messages.first().unwrap()["seq"], 3);

    // A wrong token, a token that is not base64url, and no token at all: 401 before the upgrade.
    for protocols in [
        vec!["maestro".to_string(), bearer("wrong")],
        vec![
            "maestro".to_string(),
            "maestro.bearer.!!not-base64!!".into(),
        ],
        vec!["maestro".to_string(), "maestro.bearer.".into()],
        vec!["maestro".to_string()],
        vec![],
    ] {
        let (status, body) = ws_with_protocols(&s, &path, &protocols)
            .await
            .map(|_| ())
            .unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{protocols:?}");
        assert_eq!(body["code"], "unauthorized", "{protocols:?}");
    }

    // Never from the query string.
    for query in ["access_token", "token", "bearer"] {
        let (status, _) =
            ws_with_protocols(&s, &format!("{path}?{query}={TOKEN}"), &["maestro".into()])
                .await
                .map(|_| ())
                .unwrap_err();
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{query}");
    }

    // The workflow socket takes it too.
    let (ws, selected) = ws_with_protocols(
        &s,
        "/api/v1/workflows/browser/ws",
        &["maestro".into(), bearer(TOKEN)],
    )
    .await
    .unwrap();
    assert_eq!(selected.as_deref(), Some("maestro"));
    drop(ws);

    // `Authorization` still works, and without an offered protocol none is selected.
    let mut ws = s.ws(&path).await.unwrap();
    assert_eq!(
        ws_read(&mut ws, usize::MAX).await.messages.last().unwrap()["type"],
        "workflow_completed"
    );
}

#[tokio::test]
async fn the_bearer_subprotocol_is_no_token_for_plain_requests() {
    let s = server().await;
    let res = s
        .send(
            Method::GET,
            "/api/v1/workflows",
            &[(
                "sec-websocket-protocol",
                &format!("maestro, {}", bearer(TOKEN)),
            )],
            Bytes::new(),
        )
        .await;
    res.problem(401, "unauthorized");
}

#[tokio::test]
async fn without_tokens_a_browser_socket_still_gets_its_protocol() {
    let s = TestServer::start().await;
    s.create(&chain("open")).await;
    let run_id = s.start_run("open", json!({})).await;
    s.wait_status(&run_id, &["completed"]).await;
    let (mut ws, selected) = ws_with_protocols(
        &s,
        &format!("/api/v1/runs/{run_id}/ws"),
        &["maestro".into()],
    )
    .await
    .unwrap();
    assert_eq!(selected.as_deref(), Some("maestro"));
    assert_eq!(ws_read(&mut ws, usize::MAX).await.close, Some(1000));
}
