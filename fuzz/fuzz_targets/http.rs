//! Fuzzes the HTTP request path in process (DESIGN §5): `maestro_http::handle` over an
//! `ApiContext` with a `MemoryStore`, an `Engine` and a few executors, as the server runs it
//! minus the socket.
//!
//! The input is a request written as text, so seeds are readable and mutations stay close to
//! real requests:
//!
//! ```text
//! POST /api/v1/workflows/fz_review/runs?x=1
//! content-type: application/json
//!
//! {"inputs": {"go": true}}
//! ```
//!
//! A first line `METHOD TARGET`, header lines `name: value` up to an empty line, then the body.
//! In the target, `$RUN_DONE`, `$RUN_WAIT` and `$RUN_FAIL` become the ids of runs made at start-up
//! (completed, waiting for approval, failed), so control routes get past "not found". The
//! server requires a bearer token; a request with no `authorization` line gets the right one.
//!
//! Asserts, besides "never panics": no 5xx but 503, every error (4xx/5xx) is
//! `application/problem+json` with its status and a `code`, and a response comes back within
//! five seconds.

#![no_main]

#[path = "common.rs"]
mod common;

use std::cell::RefCell;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use libfuzzer_sys::fuzz_target;
use maestro_dag::{
    Engine, ExecutorRegistry, FnExecutor, MemoryStore, NodeContext, NodeError, Store,
};
use maestro_health::{Health, HealthConfig};
use maestro_http::{ApiContext, HttpConfig, Metrics, Router};
use serde_json::{Value, json};

const TOKEN: &str = "fuzz-token";

/// A fresh context after this many requests, so the in-memory store (every workflow and run
/// the fuzzer creates) stays bounded and state-dependent behaviour stays reproducible.
const REQUESTS_PER_CONTEXT: u32 = 1_000;

/// How long one request may take before it counts as a hang.
const DEADLINE: Duration = Duration::from_secs(5);

struct Fixture {
    runtime: tokio::runtime::Runtime,
    ctx: ApiContext,
    router: Router,
    /// (placeholder, run id) pairs.
    runs: Vec<(&'static str, String)>,
    requests: u32,
}

thread_local! {
    static FIXTURE: RefCell<Option<Fixture>> = const { RefCell::new(None) };
}

fuzz_target!(|data: &[u8]| {
    common::init();
    FIXTURE.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot
            .as_ref()
            .is_none_or(|f| f.requests >= REQUESTS_PER_CONTEXT)
        {
            // Dropping the old runtime first ends the runs it was still driving.
            *slot = None;
            *slot = Some(Fixture::new());
        }
        let fixture = slot.as_mut().expect("just built");
        fixture.requests += 1;
        if let Some(request) = parse(data, &fixture.runs) {
            fixture.check(request);
        }
    });
});

impl Fixture {
    fn new() -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a tokio runtime");
        let ctx = runtime.block_on(async {
            let store = Arc::new(MemoryStore::new());
            let mut registry = ExecutorRegistry::new();
            registry.register(
                "noop",
                FnExecutor::new(|_ctx: NodeContext| async { Ok::<_, NodeError>(json!({})) }),
            );
            registry.register(
                "fail",
                FnExecutor::new(|_ctx: NodeContext| async {
                    Err::<Value, _>(NodeError::permanent("failed on purpose"))
                }),
            );
            let engine = Engine::new(store.clone(), registry);
            let config = HttpConfig::default()
                .with_api_tokens([TOKEN])
                .with_cors_origins(["https://dashboard.example"])
                .with_max_body_bytes(64 * 1024);
            let health = Health::new(HealthConfig::new("fuzz", "memory"));
            health.mark_started();
            ApiContext::new(engine, store as Arc<dyn Store>, config)
                .with_metrics(Arc::new(Metrics::new()))
                .with_health(health)
        });
        let mut fixture = Self {
            runtime,
            ctx,
            router: Router::new(),
            runs: Vec::new(),
            requests: 0,
        };
        fixture.seed_state();
        fixture
    }

    /// Three workflows and one run of each, through the API itself.
    fn seed_state(&mut self) {
        let workflows = [
            (
                "$RUN_DONE",
                json!({"id": "fz_chain", "nodes": [
                    {"id": "a", "executor": "noop"},
                    {"id": "b", "executor": "noop", "depends_on": ["a"],
                     "condition": "inputs.go == true"}
                ]}),
            ),
            (
                "$RUN_WAIT",
                json!({"id": "fz_review", "nodes": [
                    {"id": "gate", "type": "human_review"},
                    {"id": "after", "executor": "noop", "depends_on": ["gate"]}
                ]}),
            ),
            (
                "$RUN_FAIL",
                json!({"id": "fz_fail", "failure_policy": "continue", "nodes": [
                    {"id": "boom", "executor": "fail"},
                    {"id": "after", "executor": "noop", "depends_on": ["boom"],
                     "trigger_rule": "all_done"}
                ]}),
            ),
        ];
        for (placeholder, definition) in workflows {
            let id = definition["id"].as_str().expect("an id").to_string();
            let (status, _) = self.send_json(Method::POST, "/api/v1/workflows", &definition);
            assert_eq!(status, StatusCode::CREATED, "seeding workflow {id}");
            let (status, body) = self.send_json(
                Method::POST,
                &format!("/api/v1/workflows/{id}/runs"),
                &json!({"inputs": {"go": true}}),
            );
            assert_eq!(
                status,
                StatusCode::ACCEPTED,
                "starting a run of {id}: {body}"
            );
            let run_id = body["run_id"].as_str().expect("a run id").to_string();
            self.runs.push((placeholder, run_id));
        }
        // Let the runs reach where they stop.
        self.runtime
            .block_on(async { tokio::time::sleep(Duration::from_millis(20)).await });
    }

    fn send_json(&self, method: Method, path: &str, body: &Value) -> (StatusCode, Value) {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header(AUTHORIZATION, format!("Bearer {TOKEN}"))
            .header(CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body.to_string())))
            .expect("a valid request");
        self.runtime.block_on(async {
            let res = maestro_http::handle(&self.ctx, &self.router, request).await;
            let status = res.status();
            let bytes = res
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            (
                status,
                serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            )
        })
    }

    fn check(&self, request: Request<Full<Bytes>>) {
        let described = format!("{} {}", request.method(), request.uri());
        self.runtime.block_on(async {
            let res = tokio::time::timeout(
                DEADLINE,
                maestro_http::handle(&self.ctx, &self.router, request),
            )
            .await
            .unwrap_or_else(|_| panic!("{described}: no response within {DEADLINE:?}"));
            let status = res.status();
            if verbose() {
                eprintln!("maestro-fuzz: {described} -> {status}");
            }
            let problem = res
                .headers()
                .get(CONTENT_TYPE)
                .is_some_and(|v| v == "application/problem+json");
            if status.is_client_error() || status.is_server_error() {
                // Error bodies are small and complete; read them to check their shape.
                let bytes = tokio::time::timeout(DEADLINE, res.into_body().collect())
                    .await
                    .unwrap_or_else(|_| panic!("{described}: error body never ends"))
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                assert!(
                    status.as_u16() < 500 || status == StatusCode::SERVICE_UNAVAILABLE,
                    "{described}: {status} {body}"
                );
                assert!(
                    problem,
                    "{described}: {status} without problem+json: {body}"
                );
                assert_eq!(body["status"], status.as_u16(), "{described}: {body}");
                assert!(body["code"].is_string(), "{described}: no code: {body}");
            }
            // Give the runs the request started a chance to move (they run on this thread).
            for _ in 0..4 {
                tokio::task::yield_now().await;
            }
        });
    }
}

/// Whether to print each request and its status (`MAESTRO_FUZZ_VERBOSE=1`, for checking seeds).
fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("MAESTRO_FUZZ_VERBOSE").is_some())
}

/// Turns the fuzz input into a request; `None` when it cannot be one (hyper would have refused
/// it before any handler saw it).
fn parse(data: &[u8], runs: &[(&'static str, String)]) -> Option<Request<Full<Bytes>>> {
    let (head, body) = split_once(data, b"\n\n").unwrap_or((data, &[]));
    let mut lines = head.split(|&b| b == b'\n');
    let first = lines.next()?;
    let (method, target) = split_once(first, b" ").unwrap_or((b"GET", first));
    let method = Method::from_bytes(method).ok()?;
    let mut target = String::from_utf8_lossy(target).into_owned();
    for (placeholder, id) in runs {
        target = target.replace(placeholder, id);
    }
    let uri = target
        .parse::<Uri>()
        .or_else(|_| percent_encode(&target).parse::<Uri>())
        .ok()?;
    let mut builder = Request::builder().method(method).uri(uri);
    let mut has_auth = false;
    for line in lines {
        let Some((name, value)) = split_once(line, b":") else {
            continue;
        };
        let value = value.strip_prefix(b" ").unwrap_or(value);
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        has_auth |= name == AUTHORIZATION;
        builder = builder.header(name, value);
    }
    if !has_auth {
        builder = builder.header(AUTHORIZATION, format!("Bearer {TOKEN}"));
    }
    builder.body(Full::new(Bytes::copy_from_slice(body))).ok()
}

fn split_once<'a>(data: &'a [u8], sep: &[u8]) -> Option<(&'a [u8], &'a [u8])> {
    let at = data.windows(sep.len()).position(|w| w == sep)?;
    Some((&data[..at], &data[at + sep.len()..]))
}

/// Escapes what a URI may not contain, keeping `%` so broken escapes still reach the router.
fn percent_encode(target: &str) -> String {
    let mut out = String::with_capacity(target.len() * 3);
    for b in target.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~/?&=%:@!$'()*+,;".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
