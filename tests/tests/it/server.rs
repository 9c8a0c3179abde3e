//! End-to-end: the real `maestro-server` binary, started as a child process on SQLite (and on
//! PostgreSQL when `MAESTRO_TEST_DATABASE_URL` is set), driven over HTTP like a client would.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// Builds the server binary once per test process (so these tests never run a stale binary) and
/// returns its path.
fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .to_path_buf();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "--quiet",
                "-p",
                "maestro-server",
                "--bin",
                "maestro-server",
            ])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building maestro-server failed");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        target.join("debug").join("maestro-server")
    })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    _dir: Option<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    fn sqlite(extra_env: &[(&str, &str)]) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "maestro-e2e-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let url = format!("sqlite://{}", dir.join("maestro.db").display());
        let mut s = Self::start(&url, extra_env);
        s._dir = Some(TempDir(dir));
        s
    }

    fn start(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
        let port = free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let mut cmd = Command::new(server_binary());
        cmd.arg("serve")
            .env("MAESTRO_BIND", addr.to_string())
            .env("DATABASE_URL", database_url)
            .env("MAESTRO_SHUTDOWN_GRACE_SECS", "5")
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit());
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("the server starts");
        let server = Self {
            child,
            addr,
            _dir: None,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = server.try_request("GET", "/health/startup", None, &[])
                && r.status == 200
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not start within 30 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        server
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let mut stream = TcpStream::connect_timeout(&self.addr, Duration::from_secs(2))?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            self.addr,
            body.len()
        );
        if !body.is_empty() {
            req.push_str("Content-Type: application/json\r\n");
        }
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        req.push_str("\r\n");
        req.push_str(&body);
        stream.write_all(req.as_bytes())?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw)?;
        Ok(Response::parse(&raw))
    }

    fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        self.try_request(method, path, body, &[])
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within 20 s of SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn parse(raw: &[u8]) -> Self {
        let split = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a complete response");
        let head = String::from_utf8_lossy(&raw[..split]).to_string();
        let mut lines = head.lines();
        let status = lines
            .next()
            .unwrap()
            .split_whitespace()
            .nth(1)
            .unwrap()
            .parse()
            .unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let mut body = raw[split + 4..].to_vec();
        if headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
        {
            body = dechunk(&body);
        }
        Self {
            status,
            headers,
            body,
        }
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size =
            usize::from_str_radix(String::from_utf8_lossy(&data[..end]).trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        out.extend_from_slice(&data[end + 2..end + 2 + size]);
        data = &data[end + 2 + size + 2..];
    }
    out
}

/// A stand-in team engine: answers every phase with a completed result. Returns its base URL.
fn fake_team_engine() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            std::thread::spawn(move || {
                // Read the head and the declared body, then answer.
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                let mut expected = None;
                loop {
                    let Ok(n) = stream.read(&mut chunk) else {
                        return;
                    };
                    if n == 0 {
                        break;
                    }
                    buf.extend_from_slice(&chunk[..n]);
                    if expected.is_none()
                        && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
                    {
                        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                        let len = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        expected = Some(end + 4 + len);
                    }
                    if expected.is_some_and(|e| buf.len() >= e) {
                        break;
                    }
                }
                let body = json!({
                    "status": "completed",
                    "output": {"approved": true},
                    "artifacts": [],
                    "contracts": [],
                    "execution_time": 0.01,
                    "personas_executed": ["e2e"]
                })
                .to_string();
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            });
        }
    });
    format!("http://{addr}")
}

fn definition(id: &str, sleep_ms: u64) -> Value {
    json!({
        "id": id,
        "nodes": [
            {"id": "extract", "executor": "noop"},
            {"id": "transform", "executor": "sleep", "config": {"duration_ms": sleep_ms}, "depends_on": ["extract"]},
            {"id": "load", "executor": "noop", "depends_on": ["transform"]}
        ]
    })
}

fn wait_for_run(server: &Server, run_id: &str, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let run = server
            .request("GET", &format!("/api/v1/runs/{run_id}"), None)
            .json();
        if run["status"] == status {
            return run;
        }
        assert!(
            Instant::now() < deadline,
            "run {run_id} did not become {status}: {run}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn exercise(server: &Server) {
    // Definitions: created, unchanged, new version.
    let created = server.request("POST", "/api/v1/workflows", Some(&definition("etl", 50)));
    assert_eq!(
        created.status,
        201,
        "{}",
        String::from_utf8_lossy(&created.body)
    );
    assert_eq!(created.json()["version"], 1);
    let same = server.request("POST", "/api/v1/workflows", Some(&definition("etl", 50)));
    assert_eq!(same.status, 200);
    let changed = server.request("POST", "/api/v1/workflows", Some(&definition("etl", 60)));
    assert_eq!(changed.status, 201);
    assert_eq!(changed.json()["version"], 2);

    // A cycle is a 422 with its code and nodes.
    let cycle = json!({"id": "loop", "nodes": [
        {"id": "a", "executor": "noop", "depends_on": ["b"]},
        {"id": "b", "executor": "noop", "depends_on": ["a"]}
    ]});
    let bad = server.request("POST", "/api/v1/workflows", Some(&cycle));
    assert_eq!(bad.status, 422);
    assert_eq!(bad.header("content-type"), Some("application/problem+json"));
    let problem = bad.json();
    let errors = problem["errors"].as_array().unwrap();
    let cyc = errors
        .iter()
        .find(|e| e["code"] == "cycle")
        .expect("a cycle error");
    assert_eq!(cyc["nodes"], json!(["a", "b"]));

    // Runs: the same idempotency key gives one run.
    let start = |key: &str| {
        server
            .try_request(
                "POST",
                "/api/v1/workflows/etl/runs",
                Some(&json!({"inputs": {"n": 1}})),
                &[("Idempotency-Key", key)],
            )
            .unwrap()
    };
    let first = start("k-1");
    assert_eq!(
        first.status,
        202,
        "{}",
        String::from_utf8_lossy(&first.body)
    );
    let run_id = first.json()["run_id"].as_str().unwrap().to_string();
    let again = start("k-1");
    assert_eq!(again.json()["run_id"], run_id.as_str());
    let run = wait_for_run(server, &run_id, "completed");
    for node in ["extract", "transform", "load"] {
        assert_eq!(run["nodes"][node]["status"], "completed", "{run}");
    }
    assert_eq!(run["version"], 2);

    // The event log: gap-free from 1 to workflow_completed.
    let events = server
        .request(
            "GET",
            &format!("/api/v1/runs/{run_id}/events?after=0"),
            None,
        )
        .json();
    let events = events["events"].as_array().unwrap().clone();
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["seq"], json!(i + 1));
    }
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");

    // Control on a finished run is a conflict.
    let cancel = server.request("POST", &format!("/api/v1/runs/{run_id}/cancel"), None);
    assert_eq!(cancel.status, 409);

    // The compatibility routes: the SDLC template exists and its execution lists all six nodes.
    let exec = server.request(
        "POST",
        "/api/workflows/sdlc_parallel/execute",
        Some(&json!({"requirement": "build a todo app"})),
    );
    assert!(
        exec.status == 200 || exec.status == 202,
        "{}",
        String::from_utf8_lossy(&exec.body)
    );
    let exec_id = exec.json()["execution_id"].as_str().unwrap().to_string();
    let deadline = Instant::now() + Duration::from_secs(30);
    let state = loop {
        let state = server
            .request("GET", &format!("/api/executions/{exec_id}"), None)
            .json();
        if state["status"] == "completed" || Instant::now() > deadline {
            break state;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(state["status"], "completed", "{state}");
    let nodes = state["node_states"].as_array().unwrap();
    assert_eq!(nodes.len(), 6, "{state}");
    assert!(nodes.iter().all(|n| n["status"] == "completed"), "{state}");

    // Malformed input gets a 4xx problem, never a 5xx.
    for (method, path, body) in [
        ("POST", "/api/v1/workflows", "{not json"),
        ("POST", "/api/v1/workflows", "[1, 2]"),
        ("GET", "/api/v1/workflows/bad%20id", ""),
        ("POST", "/api/v1/workflows/etl/runs", "{\"inputs\": 5}"),
    ] {
        let mut stream = TcpStream::connect(server.addr).unwrap();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        stream.write_all(req.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        let r = Response::parse(&raw);
        assert!(
            (400..500).contains(&r.status),
            "{method} {path} {body}: {}",
            r.status
        );
    }
}

#[test]
fn the_server_on_sqlite_serves_the_api_and_drains_on_sigterm() {
    let team = fake_team_engine();
    let server = Server::sqlite(&[("MAESTRO_TEAM_ENGINE_URL", &team)]);
    exercise(&server);
    let live = server.request("GET", "/health/live", None);
    assert_eq!(live.status, 200);
    assert_eq!(live.json()["alive"], true);
    assert_eq!(server.request("GET", "/health/ready", None).status, 200);
    let metrics = server.request("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    let text = String::from_utf8_lossy(&metrics.body);
    for name in [
        "dag_workflow_executions_total",
        "dag_node_executions_total",
        "dag_api_requests_total",
    ] {
        assert!(text.contains(name), "{name} missing from /metrics");
    }
    let status = server.terminate();
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

#[test]
fn the_server_on_postgres_serves_the_api() {
    let Some(admin) = std::env::var("MAESTRO_TEST_DATABASE_URL")
        .ok()
        .filter(|u| !u.is_empty())
    else {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true needs MAESTRO_TEST_DATABASE_URL"
        );
        eprintln!("note: MAESTRO_TEST_DATABASE_URL is not set; skipping");
        return;
    };
    let name = format!("maestro_e2e_{}_{}", std::process::id(), free_port());
    let psql = |sql: &str| {
        Command::new("psql")
            .args([admin.as_str(), "-q", "-c", sql])
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    assert!(
        psql(&format!("CREATE DATABASE {name}")),
        "cannot create a test database"
    );
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    let team = fake_team_engine();
    let server = Server::start(
        &format!("{base}/{name}"),
        &[("MAESTRO_TEAM_ENGINE_URL", &team)],
    );
    exercise(&server);
    assert!(server.terminate().success());
    psql(&format!("DROP DATABASE {name} WITH (FORCE)"));
}
