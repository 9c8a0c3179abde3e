//! End-to-end: the `maestro` command-line client against the real server binary. Every
//! subcommand, each documented exit code, `--token`, and `--output json` that parses.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Server, free_port, read_request, root, team_engine};

/// Builds the `maestro` binary once per test process (never a stale one) and returns its path.
fn cli_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = root();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", "maestro-cli", "--bin", "maestro"])
            .current_dir(&root)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building maestro failed");
        let target =
            std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
        target.join("debug").join("maestro")
    })
}

/// What one `maestro` invocation did.
struct Outcome {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Outcome {
    /// Stdout as one JSON document (it must parse).
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the exit code, showing the output when it differs.
    #[track_caller]
    fn expect(self, code: i32) -> Self {
        assert_eq!(
            self.code, code,
            "exit code\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Runs `maestro` with `args` against `server` (`None`: no `MAESTRO_SERVER`), with extra
/// environment variables; killed after 30 s.
fn maestro_env(server: Option<&Server>, env: &[(&str, &str)], args: &[&str]) -> Outcome {
    let mut cmd = Command::new(cli_binary());
    cmd.args(args)
        .current_dir(root())
        .env_remove("MAESTRO_TOKEN")
        .env_remove("MAESTRO_SERVER")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(server) = server {
        cmd.env("MAESTRO_SERVER", format!("http://{}", server.addr));
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("maestro starts");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("maestro {args:?} did not finish within 30 s");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Outcome {
        code: status
            .code()
            .expect("maestro exits, not killed by a signal"),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

fn maestro(server: &Server, args: &[&str]) -> Outcome {
    maestro_env(Some(server), &[], args)
}

/// A scratch folder for definition files, removed at the end.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!(
            "maestro-cli-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn file(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).unwrap();
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Polls `runs get` until the run (or `node`) has `status`.
fn wait_status(server: &Server, run: &str, node: Option<&str>, status: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let doc = maestro(server, &["runs", "get", run, "--output", "json"])
            .expect(0)
            .json();
        let now = match node {
            Some(n) => &doc["nodes"][n]["status"],
            None => &doc["status"],
        };
        if now == status {
            return doc;
        }
        assert!(Instant::now() < deadline, "never {status}: {doc}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn cli_validate_works_offline_and_names_file_line_field_and_code() {
    let scratch = Scratch::new();
    // A valid example, as text and as JSON (no server anywhere).
    let ok = maestro_env(None, &[], &["validate", "examples/data_pipeline.yaml"]).expect(0);
    assert!(
        ok.stdout.contains("valid workflow `data_pipeline`"),
        "{}",
        ok.stdout
    );
    let doc = maestro_env(
        None,
        &[],
        &[
            "validate",
            "examples/sdlc_parallel.json",
            "--output",
            "json",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["nodes"], 6);

    // Validation problems: every one, with the file, the node's line, the code and node ids.
    let bad = scratch.file(
        "bad.yaml",
        "id: bad\nnodes:\n  - id: a\n    executor: nope\n  - id: b\n    executor: noop\n    depends_on: [ghost]\n  - id: x\n    executor: noop\n    depends_on: [y]\n  - id: y\n    executor: noop\n    depends_on: [x]\n",
    );
    let out = maestro_env(None, &[], &["validate", &bad]).expect(65);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    for want in [
        format!("{bad}:3:5: unknown_executor"),
        "node `a`".into(),
        format!("{bad}:5:5: unknown_dependency"),
        "cycle".into(),
        "nodes x → y".into(),
        "3 problems".into(),
    ] {
        assert!(
            out.stderr.contains(&want),
            "{want} missing from:\n{}",
            out.stderr
        );
    }
    let doc = maestro_env(None, &[], &["validate", &bad, "--output", "json"])
        .expect(65)
        .json();
    assert_eq!(doc["valid"], false);
    let codes: Vec<&str> = doc["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["code"].as_str().unwrap())
        .collect();
    assert_eq!(codes, ["unknown_executor", "unknown_dependency", "cycle"]);
    assert_eq!(doc["errors"][0]["line"], 3);
    // `--executor` declares a custom executor of the target server.
    let custom = scratch.file(
        "custom.json",
        r#"{"id": "c", "nodes": [{"id": "a", "executor": "mine"}]}"#,
    );
    maestro_env(None, &[], &["validate", &custom]).expect(65);
    maestro_env(None, &[], &["validate", &custom, "--executor", "mine"]).expect(0);

    // Parse errors: file, line, column and the field's path, in JSON and in YAML.
    let json_file = scratch.file(
        "typo.json",
        "{\"id\": \"x\",\n \"nodes\": [{\"id\": \"a\", \"retry\": {\"max_attempts\": \"3\"}}]}",
    );
    let out = maestro_env(None, &[], &["validate", &json_file]).expect(65);
    assert!(
        out.stderr.contains(&format!("{json_file}:2:"))
            && out.stderr.contains("field `nodes[0].retry.max_attempts`"),
        "{}",
        out.stderr
    );
    let yaml_file = scratch.file(
        "typo.yml",
        "id: x\nnodes:\n  - id: a\n    retry:\n      max_attempts: three\n",
    );
    let out = maestro_env(None, &[], &["validate", &yaml_file]).expect(65);
    assert!(
        out.stderr.contains(&format!("{yaml_file}:5:"))
            && out.stderr.contains("field `nodes[0].retry.max_attempts`"),
        "{}",
        out.stderr
    );
    // A file that is not there; a usage error.
    maestro_env(None, &[], &["validate", "no/such/file.json"]).expect(66);
    maestro_env(None, &[], &["validate"]).expect(2);
    maestro_env(None, &[], &["runs", "list", "--output", "xml"]).expect(2);
    maestro_env(None, &[], &["run", "x", "--inputs", "[1]"]).expect(2);
    let help = maestro_env(None, &[], &["--help"]).expect(0);
    assert!(
        help.stdout.contains("Exit codes") && help.stdout.contains("77"),
        "{}",
        help.stdout
    );
    // Nothing listens there: unavailable; https is refused as a usage error.
    let port = free_port().to_string();
    let out = maestro_env(
        None,
        &[("MAESTRO_SERVER", &format!("http://127.0.0.1:{port}"))],
        &["workflows", "list"],
    )
    .expect(69);
    assert!(out.stderr.contains("cannot connect"), "{}", out.stderr);
    maestro_env(
        None,
        &[],
        &["--server", "https://example.com", "workflows", "list"],
    )
    .expect(2);
}

#[test]
fn cli_manages_workflows_and_renders_graphs() {
    let server = Server::sqlite(&[]);
    let scratch = Scratch::new();

    // apply: created, unchanged, new version; JSON and YAML files.
    let out = maestro(&server, &["workflows", "apply", "examples/failing.json"]).expect(0);
    assert_eq!(out.stdout.trim(), "workflow failing: created (version 1)");
    let doc = maestro(
        &server,
        &[
            "workflows",
            "apply",
            "examples/failing.json",
            "--output",
            "json",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(
        (doc["created"].clone(), doc["version"].clone()),
        (json!(false), json!(1))
    );
    let out = maestro(
        &server,
        &["workflows", "apply", "examples/data_pipeline.yaml"],
    )
    .expect(0);
    assert!(out.stdout.contains("created"), "{}", out.stdout);
    let changed = scratch.file(
        "failing.json",
        &std::fs::read_to_string(root().join("examples/failing.json"))
            .unwrap()
            .replace("this step always fails", "this step fails differently"),
    );
    let out = maestro(&server, &["workflows", "apply", &changed]).expect(0);
    assert_eq!(out.stdout.trim(), "workflow failing: new version 2");

    // An invalid definition: the server's 422, as diagnostics of the file.
    let bad = scratch.file(
        "bad.json",
        "{\"id\": \"bad\", \"nodes\": [\n  {\"id\": \"a\", \"executor\": \"phase\", \"depends_on\": [\"zz\"]}\n]}",
    );
    let out = maestro(&server, &["workflows", "apply", &bad]).expect(65);
    assert!(
        out.stderr.contains("validation_failed")
            && out
                .stderr
                .contains(&format!("{bad}:2:4: unknown_dependency")),
        "{}",
        out.stderr
    );
    // A parse error never reaches the server.
    let typo = scratch.file("typo.yaml", "id: t\nnodes: 5\n");
    let out = maestro(&server, &["workflows", "apply", &typo]).expect(65);
    assert!(out.stderr.contains(&format!("{typo}:2:")), "{}", out.stderr);

    // list and get, as tables and as JSON.
    let out = maestro(&server, &["workflows", "list"]).expect(0);
    for id in ["failing", "data_pipeline", "sdlc_parallel", "sdlc_linear"] {
        assert!(out.stdout.contains(id), "{id}: {}", out.stdout);
    }
    let doc = maestro(
        &server,
        &["workflows", "list", "--output", "json", "--limit", "2"],
    )
    .expect(0)
    .json();
    assert_eq!(doc["workflows"].as_array().unwrap().len(), 2);
    let out = maestro(&server, &["workflows", "get", "failing"]).expect(0);
    assert!(
        out.stdout.contains("version 2") && out.stdout.contains("break"),
        "{}",
        out.stdout
    );
    let doc = maestro(
        &server,
        &[
            "workflows",
            "get",
            "failing",
            "--version",
            "1",
            "--output",
            "json",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(doc["version"], 1);
    assert_eq!(
        doc["definition"]["nodes"][1]["config"]["message"],
        "this step always fails"
    );

    // graph: DOT and Mermaid, a given version.
    let out = maestro(&server, &["graph", "failing", "--format", "dot"]).expect(0);
    assert!(
        out.stdout.starts_with("digraph") && out.stdout.contains("\"prepare\" -> \"break\""),
        "{}",
        out.stdout
    );
    let out = maestro(
        &server,
        &["graph", "failing", "--format", "mermaid", "--version", "1"],
    )
    .expect(0);
    assert!(
        out.stdout.starts_with("flowchart") && out.stdout.contains("break --> publish"),
        "{}",
        out.stdout
    );
    let doc = maestro(&server, &["graph", "failing", "--format", "json"])
        .expect(0)
        .json();
    assert!(doc.is_object(), "{doc}");

    // delete, then it is gone (404 → 3).
    let doc = maestro(
        &server,
        &["workflows", "delete", "data_pipeline", "--output", "json"],
    )
    .expect(0)
    .json();
    assert_eq!(doc["deleted"], true);
    let out = maestro(&server, &["workflows", "get", "data_pipeline"]).expect(3);
    assert!(out.stderr.contains("workflow_not_found"), "{}", out.stderr);
    maestro(&server, &["workflows", "delete", "data_pipeline"]).expect(3);
    maestro(&server, &["graph", "data_pipeline"]).expect(3);
}

/// `graph --format svg` prints the server's drawing of its layered layout.
#[test]
fn cli_graph_renders_svg() {
    let server = Server::sqlite(&[]);
    maestro(
        &server,
        &["workflows", "apply", "examples/sdlc_parallel.json"],
    )
    .expect(0);
    let out = maestro(&server, &["graph", "sdlc_parallel", "--format", "svg"]).expect(0);
    assert!(
        out.stdout.trim_start().starts_with("<svg") || out.stdout.trim_start().starts_with("<?xml"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("phase_design") && out.stdout.contains("</svg>"),
        "{}",
        out.stdout
    );
}

/// Asserts that no terminal control character (ESC, BEL, CSI…) is in `text`; newlines and the
/// table's spaces are all it may hold besides printable text.
#[track_caller]
fn assert_no_controls(what: &str, text: &str) {
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{what} holds a control character:\n{text:?}"
    );
}

#[test]
fn cli_prints_no_control_characters_of_the_server() {
    let server = Server::sqlite(&[]);
    let scratch = Scratch::new();
    let definition = json!({
        "id": "esc",
        "name": "\u{1b}[31mred",
        "nodes": [{"id": "boom", "executor": "fail",
                   "config": {"message": "\u{1b}[2J\u{1b}]0;pwned\u{7}gone\nsecond line"}}]
    });
    let file = scratch.file("esc.json", &definition.to_string());
    maestro(&server, &["workflows", "apply", &file]).expect(0);

    // Tables and text lines: escaped, on one line.
    let out = maestro(&server, &["workflows", "list"]).expect(0);
    assert_no_controls("workflows list", &out.stdout);
    assert!(out.stdout.contains("\\u{1b}[31mred"), "{}", out.stdout);
    let out = maestro(&server, &["workflows", "get", "esc"]).expect(0);
    assert_no_controls("workflows get", &out.stdout);
    assert!(
        out.stdout.contains("name: \\u{1b}[31mred"),
        "{}",
        out.stdout
    );
    let out = maestro(&server, &["run", "esc", "--watch"]).expect(1);
    assert_no_controls("the summary", &out.stdout);
    assert_no_controls("the progress lines", &out.stderr);
    let row = out.stdout.lines().find(|l| l.starts_with("boom")).unwrap();
    assert!(
        row.contains("\\u{1b}[2J\\u{1b}]0;pwned\\u{7}gone second line"),
        "{row}"
    );
    let out = maestro(&server, &["runs", "list"]).expect(0);
    assert_no_controls("runs list", &out.stdout);

    // JSON stays exact.
    let doc = maestro(&server, &["workflows", "get", "esc", "--output", "json"])
        .expect(0)
        .json();
    assert_eq!(doc["definition"]["name"], "\u{1b}[31mred");
}

/// A stand-in server answering each request with `answer(method, path)`: status, content type
/// and body, one request per connection. Its base URL.
fn fake_server(
    answer: impl Fn(&str, &str) -> (u16, &'static str, String) + Send + Sync + 'static,
) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let answer = Arc::new(answer);
    std::thread::spawn(move || {
        for mut conn in listener.incoming().flatten() {
            let answer = answer.clone();
            std::thread::spawn(move || {
                let Some(raw) = read_request(&mut conn) else {
                    return;
                };
                let head = String::from_utf8_lossy(&raw).into_owned();
                let mut words = head.split_whitespace();
                let (method, path) = (words.next().unwrap(), words.next().unwrap());
                let (status, content_type, body) = answer(method, path);
                let _ = write!(
                    conn,
                    "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}

/// A run whose node has an escape sequence in its id, and that ends with `terminal` but is
/// retried at once: the run document says `running` by the time the watch fetches it.
fn retried_run_server(terminal: &'static str) -> String {
    const NODE: &str = "\u{1b}[31mred";
    fake_server(move |method, path| {
        let event = |seq: u64, kind: &str, node: Option<&str>| {
            let e = json!({"seq": seq, "type": kind, "workflow_id": "w", "run_id": "r1",
                "node_id": node, "data": {"attempt": 1},
                "timestamp": format!("2026-11-26T19:24:0{seq}.000Z")});
            format!("id: {seq}\ndata: {e}\n\n")
        };
        match (method, path) {
            ("POST", "/api/v1/workflows/w/runs") => (
                201,
                "application/json",
                json!({"run_id": "r1", "workflow_id": "w", "version": 1, "status": "pending", "created": true}).to_string(),
            ),
            ("GET", "/api/v1/runs/r1") => (
                200,
                "application/json",
                json!({"run_id": "r1", "workflow_id": "w", "version": 1, "status": "running",
                    "last_seq": 5, "error": null,
                    "nodes": {NODE: {"status": "running", "attempts": 2,
                        "started_at": "2026-11-26T19:24:06Z", "finished_at": null,
                        "error": "\u{1b}]0;pwned\u{7}"}}})
                .to_string(),
            ),
            ("GET", "/api/v1/runs/r1/events") => (
                200,
                "text/event-stream",
                [
                    event(1, "workflow_started", None),
                    event(2, "node_started", Some(NODE)),
                    event(3, "node_completed", Some(NODE)),
                    event(4, terminal, None),
                ]
                .concat(),
            ),
            _ => (
                404,
                "application/problem+json",
                json!({"status": 404, "code": "not_found", "title": "Not Found"}).to_string(),
            ),
        }
    })
}

#[test]
fn cli_watch_exits_with_the_outcome_the_stream_ended_with() {
    // Completed, then retried before the summary: still exit 0, and no escape sequence of the
    // node's id reaches the terminal (the summary, the progress lines).
    let url = retried_run_server("workflow_completed");
    let out = maestro_env(None, &[("MAESTRO_SERVER", &url)], &["run", "w", "--watch"]).expect(0);
    assert_no_controls("the summary", &out.stdout);
    assert_no_controls("the progress lines", &out.stderr);
    assert!(
        out.stdout.contains("\\u{1b}[31mred  running"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("run r1: completed · now running"),
        "{}",
        out.stdout
    );
    assert!(out.stderr.contains("\\u{1b}[31mred"), "{}", out.stderr);
    // Failed, then retried: exit 1.
    let url = retried_run_server("workflow_failed");
    maestro_env(None, &[("MAESTRO_SERVER", &url)], &["run", "w", "--watch"]).expect(1);
    maestro_env(
        None,
        &[("MAESTRO_SERVER", &url)],
        &["events", "r1", "--follow"],
    )
    .expect(1);
}

#[test]
fn cli_starts_controls_and_reviews_runs() {
    let server = Server::sqlite(&[]);
    let scratch = Scratch::new();
    let slow = scratch.file(
        "slow.json",
        r#"{"id": "slow", "nodes": [{"id": "wait", "executor": "sleep", "config": {"duration_ms": 1500}}, {"id": "after", "executor": "noop", "depends_on": ["wait"]}]}"#,
    );
    maestro(&server, &["workflows", "apply", &slow]).expect(0);

    // run without --watch: the server's answer; the idempotency key returns the same run.
    let inputs = scratch.file("inputs.json", r#"{"ticket": "T-1"}"#);
    let started = maestro(
        &server,
        &[
            "run",
            "slow",
            "--inputs-file",
            &inputs,
            "--idempotency-key",
            "k-1",
            "--output",
            "json",
        ],
    )
    .expect(0)
    .json();
    let run = started["run_id"].as_str().unwrap().to_string();
    let again = maestro(&server, &["run", "slow", "--idempotency-key", "k-1"]).expect(0);
    assert!(
        again.stdout.contains(&run) && again.stdout.contains("existing run"),
        "{}",
        again.stdout
    );
    let bad_inputs = scratch.file("bad-inputs.json", "{\"a\": ");
    maestro(&server, &["run", "slow", "--inputs-file", &bad_inputs]).expect(65);
    maestro(&server, &["run", "slow", "--inputs-file", "no/such.json"]).expect(66);
    maestro(&server, &["run", "nope"]).expect(3);

    // pause, resume, cancel; a second cancel conflicts (409 → 4); retry restarts it.
    let doc = maestro(&server, &["runs", "pause", &run, "--output", "json"])
        .expect(0)
        .json();
    assert_eq!(doc["status"], "paused");
    let out = maestro(&server, &["runs", "resume", &run]).expect(0);
    assert_eq!(out.stdout.trim(), format!("run {run}: running"));
    maestro(&server, &["runs", "cancel", &run]).expect(0);
    let out = maestro(&server, &["runs", "cancel", &run]).expect(4);
    assert!(out.stderr.contains("invalid_transition"), "{}", out.stderr);
    let doc = maestro(&server, &["runs", "retry", &run, "--output", "json"])
        .expect(0)
        .json();
    assert_eq!(doc["run_id"], run.as_str());
    maestro(
        &server,
        &["runs", "get", "00000000-0000-0000-0000-000000000000"],
    )
    .expect(3);

    // get and list, as tables and JSON.
    let doc = wait_status(&server, &run, None, "completed");
    assert_eq!(doc["inputs"]["ticket"], "T-1");
    let out = maestro(&server, &["runs", "get", &run]).expect(0);
    assert!(
        out.stdout.contains("completed") && out.stdout.contains("wait"),
        "{}",
        out.stdout
    );
    let doc = maestro(
        &server,
        &[
            "runs",
            "list",
            "--workflow",
            "slow",
            "--status",
            "completed",
            "--output",
            "json",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(doc["runs"][0]["run_id"], run.as_str());
    let out = maestro(&server, &["runs", "list", "--status", "failed"]).expect(0);
    assert!(!out.stdout.contains(&run), "{}", out.stdout);

    // events: readable lines, JSON lines that each parse, `--after`, and `--follow` on a finished
    // run ends at once with its outcome.
    let out = maestro(&server, &["events", &run]).expect(0);
    assert!(
        out.stdout.contains("workflow_started") && out.stdout.contains("node_completed"),
        "{}",
        out.stdout
    );
    let out = maestro(
        &server,
        &["events", &run, "--after", "2", "--output", "json"],
    )
    .expect(0);
    let events: Vec<Value> = out
        .stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    assert_eq!(events[0]["seq"], 3);
    assert_eq!(events.last().unwrap()["type"], "workflow_completed");
    maestro(&server, &["events", &run, "--follow", "--after", "1000"]).expect(0);

    // events --follow on a live run streams to its end.
    let live = maestro(&server, &["run", "slow", "--output", "json"])
        .expect(0)
        .json();
    let live = live["run_id"].as_str().unwrap().to_string();
    let out = maestro(&server, &["events", &live, "--follow", "--output", "json"]).expect(0);
    let types: Vec<String> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["type"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    assert_eq!(types.first().map(String::as_str), Some("workflow_started"));
    assert_eq!(types.last().map(String::as_str), Some("workflow_completed"));

    // Human review: approve with an output, reject with a reason.
    maestro(
        &server,
        &["workflows", "apply", "examples/human_review.json"],
    )
    .expect(0);
    let review = maestro(&server, &["run", "human_review", "--output", "json"])
        .expect(0)
        .json();
    let review = review["run_id"].as_str().unwrap().to_string();
    maestro(&server, &["runs", "approve", &review, "deploy"]).expect(4);
    wait_status(
        &server,
        &review,
        Some("approve_release"),
        "waiting_approval",
    );
    let doc = maestro(
        &server,
        &[
            "runs",
            "approve",
            &review,
            "approve_release",
            "--node-output",
            r#"{"by": "alice"}"#,
            "--output",
            "json",
        ],
    )
    .expect(0)
    .json();
    assert_eq!(doc["node_status"], "completed");
    let doc = wait_status(&server, &review, None, "completed");
    assert_eq!(doc["nodes"]["approve_release"]["output"]["by"], "alice");

    let rejected = maestro(&server, &["run", "human_review", "--output", "json"])
        .expect(0)
        .json();
    let rejected = rejected["run_id"].as_str().unwrap().to_string();
    wait_status(
        &server,
        &rejected,
        Some("approve_release"),
        "waiting_approval",
    );
    let out = maestro(
        &server,
        &[
            "runs",
            "reject",
            &rejected,
            "approve_release",
            "--reason",
            "no changelog",
        ],
    )
    .expect(0);
    assert!(out.stdout.contains("failed"), "{}", out.stdout);
    let doc = wait_status(&server, &rejected, None, "failed");
    assert!(
        doc["nodes"]["approve_release"]["error"]
            .as_str()
            .unwrap_or_default()
            .contains("no changelog"),
        "{doc}"
    );
    maestro(&server, &["events", &rejected, "--follow"]).expect(1);
}

#[test]
fn cli_watches_runs_to_their_outcome() {
    let team = team_engine();
    let server = Server::sqlite(&[("MAESTRO_TEAM_ENGINE_URL", &team)]);
    let phases = [
        "phase_requirement_analysis",
        "phase_design",
        "phase_backend_development",
        "phase_frontend_development",
        "phase_testing",
        "phase_review",
    ];

    // The SDLC template on the stand-in team engine: plain progress lines on stderr (not a
    // terminal), a summary naming all six nodes, exit 0.
    let out = maestro(
        &server,
        &[
            "run",
            "sdlc_parallel",
            "--watch",
            "--inputs",
            r#"{"requirement": "a todo app"}"#,
        ],
    )
    .expect(0);
    for node in phases {
        let row = out
            .stdout
            .lines()
            .find(|l| l.starts_with(node))
            .unwrap_or_else(|| panic!("{node} missing from the summary:\n{}", out.stdout));
        assert!(row.contains("completed"), "{row}");
        assert!(
            out.stderr.contains(node) && out.stderr.contains("running"),
            "{}",
            out.stderr
        );
    }
    assert!(
        out.stdout.contains("NODE") && out.stdout.contains("ATTEMPTS"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.trim_end().ends_with("completed"),
        "{}",
        out.stdout
    );

    // --output json: exactly the final run document on stdout.
    let doc = maestro(
        &server,
        &["run", "sdlc_linear", "--watch", "--output", "json"],
    )
    .expect(0)
    .json();
    assert_eq!(doc["status"], "completed");
    assert_eq!(doc["nodes"].as_object().unwrap().len(), 6);

    // A failing node: exit 1, the error in the summary.
    maestro(&server, &["workflows", "apply", "examples/failing.json"]).expect(0);
    let out = maestro(&server, &["run", "failing", "--watch"]).expect(1);
    let row = out.stdout.lines().find(|l| l.starts_with("break")).unwrap();
    assert!(
        row.contains("failed") && row.contains("this step always fails"),
        "{row}"
    );
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("publish") && l.contains("skipped")),
        "{}",
        out.stdout
    );
    assert!(
        out.stderr.contains("break") && out.stderr.contains("failed"),
        "{}",
        out.stderr
    );
    let doc = maestro(&server, &["run", "failing", "--watch", "--output", "json"])
        .expect(1)
        .json();
    assert_eq!(doc["status"], "failed");

    // The examples: retries and skips (data_pipeline), the SDLC example with sleeps.
    maestro(
        &server,
        &["workflows", "apply", "examples/data_pipeline.yaml"],
    )
    .expect(0);
    let out = maestro(&server, &["run", "data_pipeline", "--watch"]).expect(0);
    let load = out.stdout.lines().find(|l| l.starts_with("load ")).unwrap();
    assert!(load.contains("completed") && load.contains(" 3 "), "{load}");
    assert!(out.stderr.contains("retrying"), "{}", out.stderr);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("rebuild_indexes") && l.contains("skipped")),
        "{}",
        out.stdout
    );
    // The SDLC example (sleeps standing in for the team engine) as a new version of the template.
    let out = maestro(
        &server,
        &["workflows", "apply", "examples/sdlc_parallel.json"],
    )
    .expect(0);
    assert!(out.stdout.contains("new version 2"), "{}", out.stdout);
    let out = maestro(&server, &["run", "sdlc_parallel", "--watch"]).expect(0);
    assert_eq!(
        out.stdout
            .lines()
            .filter(|l| l.starts_with("phase_"))
            .count(),
        6,
        "{}",
        out.stdout
    );

    // A watched run that is cancelled meanwhile ends with exit 1.
    let scratch = Scratch::new();
    let slow = scratch.file(
        "slow.json",
        r#"{"id": "slow", "nodes": [{"id": "wait", "executor": "sleep", "config": {"duration_ms": 5000}}]}"#,
    );
    maestro(&server, &["workflows", "apply", &slow]).expect(0);
    let mut watcher = Command::new(cli_binary())
        .args([
            "run",
            "slow",
            "--watch",
            "--idempotency-key",
            "cancel-me",
            "--output",
            "json",
        ])
        .env("MAESTRO_SERVER", format!("http://{}", server.addr))
        .env_remove("MAESTRO_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let same = maestro(
        &server,
        &[
            "run",
            "slow",
            "--idempotency-key",
            "cancel-me",
            "--output",
            "json",
        ],
    );
    let run = same.expect(0).json()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    wait_status(&server, &run, Some("wait"), "running");
    maestro(&server, &["runs", "cancel", &run]).expect(0);
    let status = watcher.wait().unwrap();
    let mut stdout = String::new();
    watcher
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert_eq!(status.code(), Some(1), "{stdout}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["status"], "cancelled");
}

#[test]
fn cli_sends_the_token() {
    let server = Server::sqlite(&[("MAESTRO_API_TOKENS", "s3cret,other")]);
    let out = maestro(&server, &["workflows", "list"]).expect(77);
    assert!(
        out.stderr.contains("401") && out.stderr.contains("unauthorized"),
        "{}",
        out.stderr
    );
    maestro(&server, &["workflows", "list", "--token", "wrong"]).expect(77);
    let doc = maestro(
        &server,
        &["workflows", "list", "--token", "s3cret", "--output", "json"],
    )
    .expect(0)
    .json();
    assert!(doc["workflows"].as_array().unwrap().len() >= 2, "{doc}");
    let token = [("MAESTRO_TOKEN", "other")];
    maestro_env(
        Some(&server),
        &token,
        &["workflows", "apply", "examples/failing.json"],
    )
    .expect(0);
    // The event stream and the summary work with a token too.
    let doc = maestro_env(
        Some(&server),
        &token,
        &["run", "failing", "--watch", "--output", "json"],
    )
    .expect(1)
    .json();
    let run = doc["run_id"].as_str().unwrap();
    maestro_env(Some(&server), &token, &["events", run, "--follow"]).expect(1);
    maestro(&server, &["events", run]).expect(77);
}

/// A TCP proxy to `target` that cuts the first event-stream answer in the middle of the event
/// with `seq` 2, the way a load balancer drops a long-lived connection. Its base URL, and the
/// `Last-Event-ID` of each event-stream request (0 when absent).
fn cutting_proxy(target: SocketAddr) -> (String, Arc<Mutex<Vec<u64>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let resumes = Arc::new(Mutex::new(Vec::new()));
    let seen = resumes.clone();
    let used = Arc::new(AtomicBool::new(false));
    std::thread::spawn(move || {
        for client in listener.incoming().flatten() {
            let Ok(upstream) = TcpStream::connect(target) else {
                continue;
            };
            // Whether this connection carries the stream to cut.
            let armed = Arc::new(AtomicBool::new(false));
            let mut from_client = client.try_clone().unwrap();
            let mut to_upstream = upstream.try_clone().unwrap();
            let (used, armed_a, seen) = (used.clone(), armed.clone(), seen.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = from_client.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let request = String::from_utf8_lossy(&buf[..n]).to_ascii_lowercase();
                    if request.contains("accept: text/event-stream") {
                        let last = request
                            .lines()
                            .find_map(|l| l.strip_prefix("last-event-id:"))
                            .map_or(0, |v| v.trim().parse().unwrap());
                        seen.lock().unwrap().push(last);
                        if !used.swap(true, Ordering::SeqCst) {
                            armed_a.store(true, Ordering::SeqCst);
                        }
                    }
                    if to_upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                let _ = to_upstream.shutdown(Shutdown::Write);
            });
            let (mut from_upstream, mut to_client) = (upstream, client);
            std::thread::spawn(move || {
                let mut buf = [0u8; 8192];
                while let Ok(n) = from_upstream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let chunk = &buf[..n];
                    let cut = armed
                        .load(Ordering::SeqCst)
                        .then(|| chunk.windows(9).position(|w| w == b"\"seq\":2,\""))
                        .flatten();
                    let keep = cut.map_or(n, |i| i + 10);
                    if to_client.write_all(&chunk[..keep]).is_err() || cut.is_some() {
                        break;
                    }
                }
                let _ = to_client.shutdown(Shutdown::Both);
                let _ = from_upstream.shutdown(Shutdown::Both);
            });
        }
    });
    (url, resumes)
}

#[test]
fn cli_resumes_a_dropped_event_stream_without_gaps_or_repeats() {
    let server = Server::sqlite(&[]);
    let scratch = Scratch::new();
    let steps = scratch.file(
        "steps.json",
        r#"{"id": "steps", "nodes": [
            {"id": "one", "executor": "sleep", "config": {"duration_ms": 150}},
            {"id": "two", "executor": "sleep", "config": {"duration_ms": 150}, "depends_on": ["one"]},
            {"id": "three", "executor": "sleep", "config": {"duration_ms": 150}, "depends_on": ["two"]}
        ]}"#,
    );
    maestro(&server, &["workflows", "apply", &steps]).expect(0);

    // Cut in the middle of the second event: the client resumes with `Last-Event-ID: 1`.
    let (proxy, resumes) = cutting_proxy(server.addr);
    let env = [("MAESTRO_SERVER", proxy.as_str())];
    let started = maestro_env(None, &env, &["run", "steps", "--output", "json"])
        .expect(0)
        .json();
    let run = started["run_id"].as_str().unwrap();
    let out = maestro_env(None, &env, &["events", run, "--follow", "--output", "json"]).expect(0);
    assert!(out.stderr.contains("connection lost"), "{}", out.stderr);
    let seqs: Vec<u64> = out
        .stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<Value>(l).unwrap()["seq"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "{}",
        out.stdout
    );
    // workflow_started, three nodes started and completed, workflow_completed.
    assert_eq!(seqs.len(), 8, "{}", out.stdout);
    assert_eq!(*resumes.lock().unwrap(), [0, 1]);

    // The same through `run --watch`.
    let (proxy, resumes) = cutting_proxy(server.addr);
    let env = [("MAESTRO_SERVER", proxy.as_str())];
    let out = maestro_env(None, &env, &["run", "steps", "--watch"]).expect(0);
    assert!(out.stderr.contains("connection lost"), "{}", out.stderr);
    assert_eq!(*resumes.lock().unwrap(), [0, 1]);
    for node in ["one", "two", "three"] {
        let transitions: Vec<&str> = out
            .stderr
            .lines()
            .filter_map(|l| l.split_once("] ").map(|(_, rest)| rest))
            .filter(|rest| rest.split_whitespace().next() == Some(node))
            .collect();
        assert_eq!(transitions.len(), 2, "{}", out.stderr);
        assert!(transitions[1].contains("completed"), "{}", out.stderr);
    }
}
