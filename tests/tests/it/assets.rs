//! The deployment assets against the real server: every metric that the alert rules and the
//! Grafana dashboard (`k8s/monitoring/`) use is exported at `/metrics`, and the environment the
//! production overlay gives the pods (`k8s/rendered/production.json`, which
//! `scripts/check-k8s.sh` keeps equal to `kubectl kustomize k8s/overlays/production`) is one the
//! server accepts: the migration Job's command succeeds and the probes answer on the manifest's
//! paths and port.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Response, free_port, http_raw, root, server_binary};

fn read_json(relative: &str) -> Value {
    let path = root().join(relative);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{relative} is not JSON: {e}"))
}

/// A scratch directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!(
            "maestro-assets-{tag}-{}-{}",
            std::process::id(),
            free_port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A server child process; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    /// Starts `maestro-server ARGS` with exactly `env` (nothing inherited) and waits up to 30 s
    /// for `startup_path` to answer 200.
    fn start(args: &[String], env: &BTreeMap<String, String>, startup_path: &str) -> Self {
        Self::start_within(args, env, startup_path, Duration::from_secs(30))
    }

    /// [`Server::start`], waiting up to `startup`.
    fn start_within(
        args: &[String],
        env: &BTreeMap<String, String>,
        startup_path: &str,
        startup: Duration,
    ) -> Self {
        let bind: SocketAddr = env["MAESTRO_BIND"].parse().expect("MAESTRO_BIND");
        let addr = SocketAddr::from(([127, 0, 0, 1], bind.port()));
        let child = Command::new(server_binary())
            .args(args)
            .env_clear()
            .envs(env)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("the server starts");
        let mut server = Self { child, addr };
        let deadline = Instant::now() + startup;
        loop {
            if let Ok(r) = server.try_request("GET", startup_path, None, &[])
                && r.status == 200
            {
                return server;
            }
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!("the server exited during startup: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "{startup_path} did not answer 200 within {startup:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let body = body.map(Value::to_string).unwrap_or_default();
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !body.is_empty() {
            all.push(("Content-Type", "application/json"));
        }
        all.extend_from_slice(headers);
        http_raw(self.addr, method, path, body.as_bytes(), &all)
    }

    fn get(&self, path: &str, headers: &[(&str, &str)]) -> Response {
        self.try_request("GET", path, None, headers)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn post(&self, path: &str, body: &Value, headers: &[(&str, &str)]) -> Response {
        self.try_request("POST", path, Some(body), headers)
            .unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// SIGTERM, then the exit status, which must come within `within`.
    fn terminate(mut self, within: Duration) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {within:?} of SIGTERM"
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

// ---------------------------------------------------------------------------------------------
// Metrics used by the alert rules and the dashboard.

/// The `dag_*` names in a PromQL expression.
fn metric_names(expr: &str, into: &mut BTreeSet<String>) {
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(at) = expr[i..].find("dag_") {
        let start = i + at;
        let boundary = start == 0 || {
            let c = bytes[start - 1];
            !(c.is_ascii_alphanumeric() || c == b'_' || c == b':')
        };
        let len = expr[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(expr.len() - start);
        if boundary {
            into.insert(expr[start..start + len].to_string());
        }
        i = start + len;
    }
}

/// Every `dag_*` metric of the alert rules, read from the rendered production overlay (which
/// includes `k8s/monitoring`), by alert name.
fn alert_metrics() -> BTreeMap<String, BTreeSet<String>> {
    let docs = read_json("k8s/rendered/production.json");
    let rules: Vec<&Value> = docs
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["kind"] == "PrometheusRule")
        .flat_map(|d| d["spec"]["groups"].as_array().unwrap())
        .flat_map(|g| g["rules"].as_array().unwrap())
        .collect();
    assert!(
        !rules.is_empty(),
        "the production overlay has no alert rules"
    );
    rules
        .into_iter()
        .map(|r| {
            let mut names = BTreeSet::new();
            metric_names(r["expr"].as_str().expect("an expr"), &mut names);
            (r["alert"].as_str().unwrap().to_string(), names)
        })
        .collect()
}

/// Every `dag_*` metric of the Grafana dashboard: panel targets and template queries.
fn dashboard_metrics() -> BTreeSet<String> {
    fn walk(v: &Value, into: &mut BTreeSet<String>) {
        match v {
            Value::Object(map) => {
                for (k, v) in map {
                    match (k.as_str(), v) {
                        ("expr" | "query" | "definition", Value::String(s)) => {
                            metric_names(s, into);
                        }
                        _ => walk(v, into),
                    }
                }
            }
            Value::Array(items) => items.iter().for_each(|v| walk(v, into)),
            _ => {}
        }
    }
    let dashboard = read_json("k8s/monitoring/grafana-dashboard.json");
    let mut names = BTreeSet::new();
    walk(&dashboard, &mut names);
    names
}

/// The sample names of a Prometheus text exposition (`dag_api_requests_total`,
/// `dag_api_request_duration_seconds_bucket`, …).
fn sample_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_metric_name_scanner_finds_whole_names_only() {
    let mut names = BTreeSet::new();
    metric_names(
        r#"histogram_quantile(0.9, sum by (le) (rate(dag_api_request_duration_seconds_bucket{endpoint=~"/api/.*"}[5m]))) / my_dag_x + dag_active_nodes"#,
        &mut names,
    );
    assert_eq!(
        names.into_iter().collect::<Vec<_>>(),
        [
            "dag_active_nodes",
            "dag_api_request_duration_seconds_bucket"
        ]
    );
}

#[test]
fn every_metric_of_the_alerts_and_the_dashboard_is_exported() {
    let alerts = alert_metrics();
    for (alert, names) in &alerts {
        assert!(!names.is_empty(), "alert {alert} uses no dag_* metric");
    }
    let dashboard = dashboard_metrics();
    let used: BTreeSet<String> = alerts
        .values()
        .flatten()
        .chain(&dashboard)
        .cloned()
        .collect();
    // The assets cover the metrics that matter most, so this test is not vacuous.
    for name in [
        "dag_health_check_status",
        "dag_workflow_executions_total",
        "dag_api_request_duration_seconds_bucket",
        "dag_active_workflows",
    ] {
        assert!(used.contains(name), "no alert or panel uses {name}");
    }

    // A server whose metrics all have samples: runs that complete, retry and fail, and API
    // requests (counters and histograms only show a series once something was counted).
    let dir = TempDir::new("metrics");
    let env = BTreeMap::from([
        (
            "MAESTRO_BIND".to_string(),
            format!("127.0.0.1:{}", free_port()),
        ),
        (
            "DATABASE_URL".to_string(),
            format!("sqlite://{}", dir.0.join("maestro.db").display()),
        ),
        ("MAESTRO_SHUTDOWN_GRACE_SECS".to_string(), "5".to_string()),
    ]);
    let server = Server::start(&["serve".to_string()], &env, "/health/startup");
    let flaky = json!({"id": "assets_flaky", "nodes": [
        {"id": "prepare", "executor": "noop"},
        {"id": "flaky", "executor": "fail", "config": {"message": "once", "times": 1},
         "retry": {"max_attempts": 2, "initial_delay_ms": 10}, "depends_on": ["prepare"]},
        {"id": "settle", "executor": "sleep", "config": {"duration_ms": 20}, "depends_on": ["flaky"]}
    ]});
    let failing = json!({"id": "assets_failing", "nodes": [
        {"id": "boom", "executor": "fail", "config": {"message": "always"}}
    ]});
    for def in [&flaky, &failing] {
        let created = server.post("/api/v1/workflows", def, &[]);
        assert_eq!(created.status, 201, "{}", created.text());
        let id = def["id"].as_str().unwrap();
        let started = server.post(
            &format!("/api/v1/workflows/{id}/runs"),
            &json!({"inputs": {}}),
            &[],
        );
        assert_eq!(started.status, 202, "{}", started.text());
    }

    let deadline = Instant::now() + Duration::from_secs(30);
    let missing = loop {
        let scrape = server.get("/metrics", &[]);
        assert_eq!(scrape.status, 200);
        let exported = sample_names(&scrape.text());
        let missing: Vec<&String> = used.iter().filter(|n| !exported.contains(*n)).collect();
        if missing.is_empty() || Instant::now() > deadline {
            break missing
                .into_iter()
                .map(|n| {
                    let users: Vec<&str> = alerts
                        .iter()
                        .filter(|(_, names)| names.contains(n))
                        .map(|(a, _)| a.as_str())
                        .chain(dashboard.contains(n).then_some("the dashboard"))
                        .collect();
                    format!("{n} (used by {})", users.join(", "))
                })
                .collect::<Vec<_>>();
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(
        missing.is_empty(),
        "not exported at /metrics: {}",
        missing.join("; ")
    );
    assert!(server.terminate(Duration::from_secs(20)).success());
}

// ---------------------------------------------------------------------------------------------
// The production overlay's environment.

/// What the rendered production overlay says about the server container and the migration Job.
struct Manifest {
    docs: Vec<Value>,
}

impl Manifest {
    /// `k8s/rendered/OVERLAY.json`.
    fn overlay(overlay: &str) -> Self {
        let docs = read_json(&format!("k8s/rendered/{overlay}.json"));
        Self {
            docs: docs.as_array().expect("a list of objects").clone(),
        }
    }

    fn object(&self, kind: &str, name: &str) -> &Value {
        self.docs
            .iter()
            .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name} in the production overlay"))
    }

    /// The container's arguments and its environment: `envFrom` ConfigMaps, then `env`, with
    /// each Secret key replaced by `secrets[key]` (an optional key absent there is left unset,
    /// as Kubernetes does).
    fn container(
        &self,
        pod: &Value,
        name: &str,
        secrets: &BTreeMap<&str, String>,
    ) -> (Value, Vec<String>, BTreeMap<String, String>) {
        let container = pod["spec"]["containers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap_or_else(|| panic!("no container {name}"))
            .clone();
        let args: Vec<String> = container["args"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_str().unwrap().to_string()).collect())
            .unwrap_or_default();
        let mut env = BTreeMap::new();
        for from in container["envFrom"].as_array().into_iter().flatten() {
            let cm = from["configMapRef"]["name"]
                .as_str()
                .expect("only ConfigMaps in envFrom");
            for (k, v) in self.object("ConfigMap", cm)["data"].as_object().unwrap() {
                env.insert(k.clone(), v.as_str().unwrap().to_string());
            }
        }
        for var in container["env"].as_array().into_iter().flatten() {
            let key = var["name"].as_str().unwrap().to_string();
            if let Some(value) = var["value"].as_str() {
                env.insert(key, value.to_string());
                continue;
            }
            let secret = &var["valueFrom"]["secretKeyRef"];
            let secret_key = secret["key"]
                .as_str()
                .unwrap_or_else(|| panic!("{key}: only values and Secret keys are expected"));
            match secrets.get(secret_key) {
                Some(value) => {
                    env.insert(key, value.clone());
                }
                None => assert_eq!(
                    secret["optional"], true,
                    "{key}: the Secret key {secret_key} is required"
                ),
            }
        }
        (container, args, env)
    }
}

/// The database for the production environment: a fresh PostgreSQL database when
/// `MAESTRO_TEST_DATABASE_URL` is set (required under CI), else a SQLite file.
enum Database {
    Postgres { admin: String, name: String },
    Sqlite(TempDir),
}

impl Database {
    fn new() -> Self {
        match std::env::var("MAESTRO_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        {
            Some(admin) => {
                let name = format!("maestro_assets_{}_{}", std::process::id(), free_port());
                assert!(
                    psql(&admin, &format!("CREATE DATABASE {name}")),
                    "cannot create a test database"
                );
                Self::Postgres { admin, name }
            }
            None => {
                assert!(
                    std::env::var("CI").map_or(true, |v| v != "true"),
                    "CI=true needs MAESTRO_TEST_DATABASE_URL"
                );
                eprintln!("note: MAESTRO_TEST_DATABASE_URL is not set; using SQLite");
                Self::Sqlite(TempDir::new("prod"))
            }
        }
    }

    fn url(&self) -> String {
        match self {
            Self::Postgres { admin, name } => {
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
                format!("{base}/{name}")
            }
            Self::Sqlite(dir) => format!("sqlite://{}", dir.0.join("maestro.db").display()),
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Self::Postgres { .. } => "PostgreSQL",
            Self::Sqlite(_) => "SQLite",
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Self::Postgres { admin, name } = self {
            psql(
                admin,
                &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            );
        }
    }
}

fn psql(url: &str, sql: &str) -> bool {
    Command::new("psql")
        .args([url, "-q", "-c", sql])
        .status()
        .is_ok_and(|s| s.success())
}

fn seconds(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("not a number of seconds: {v}"))
}

#[test]
fn the_production_overlay_environment_is_accepted_and_answers_the_probes() {
    let manifest = Manifest::overlay("production");
    let deployment = manifest.object("Deployment", "maestro");
    let pod = &deployment["spec"]["template"];
    let db = Database::new();
    let token = "assets-token";
    let secrets = BTreeMap::from([
        ("database-url", db.url()),
        ("api-tokens", token.to_string()),
    ]);
    let (container, args, mut env) = manifest.container(pod, "maestro", &secrets);
    assert_eq!(args, ["serve"]);

    // The port: containerPort = MAESTRO_BIND's port = every probe's port = the scrape port.
    let port = container["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "http")
        .and_then(|p| p["containerPort"].as_u64())
        .expect("a port named http");
    assert_eq!(port, 8003);
    let bind: SocketAddr = env["MAESTRO_BIND"].parse().expect("MAESTRO_BIND parses");
    assert_eq!(u64::from(bind.port()), port, "MAESTRO_BIND");
    assert!(
        bind.ip().is_unspecified(),
        "the pod must listen on every address: {bind}"
    );
    assert_eq!(
        pod["metadata"]["annotations"]["prometheus.io/port"],
        port.to_string()
    );
    let probe = |kind: &str| -> (String, Value) {
        let get = &container[kind]["httpGet"];
        assert_eq!(get["port"].as_u64(), Some(port), "{kind} port");
        (
            get["path"].as_str().unwrap().to_string(),
            container[kind].clone(),
        )
    };
    let (startup_path, startup) = probe("startupProbe");
    let (ready_path, _) = probe("readinessProbe");
    let (live_path, _) = probe("livenessProbe");
    let metrics_path = pod["metadata"]["annotations"]["prometheus.io/path"]
        .as_str()
        .unwrap()
        .to_string();

    // The drain fits in the termination grace period, after the preStop pause.
    let grace = env["MAESTRO_SHUTDOWN_GRACE_SECS"].parse::<u64>().unwrap();
    let pre_stop = seconds(&container["lifecycle"]["preStop"]["sleep"]["seconds"]);
    let termination = seconds(&pod["spec"]["terminationGracePeriodSeconds"]);
    assert!(
        termination > pre_stop + grace,
        "terminationGracePeriodSeconds {termination} must exceed preStop {pre_stop} + grace {grace}"
    );

    // The migration Job, with its own environment, prepares the database.
    let job = manifest.object("Job", "maestro-migrate");
    let (_, job_args, job_env) = manifest.container(&job["spec"]["template"], "migrate", &secrets);
    assert_eq!(job_args, ["migrate"]);
    let migrate = Command::new(server_binary())
        .args(&job_args)
        .env_clear()
        .envs(&job_env)
        .stdin(Stdio::null())
        .output()
        .expect("migrate runs");
    assert!(
        migrate.status.success(),
        "the migration Job fails: {}",
        String::from_utf8_lossy(&migrate.stderr)
    );
    assert!(
        String::from_utf8_lossy(&migrate.stdout).contains("applied"),
        "a fresh database gets its migrations: {}",
        String::from_utf8_lossy(&migrate.stdout)
    );

    // The server, with exactly the pod's environment (plus the HOSTNAME Kubernetes sets), on a
    // free port instead of 8003 so the test never collides with anything on this machine.
    env.insert(
        "MAESTRO_BIND".to_string(),
        SocketAddr::new(bind.ip(), free_port()).to_string(),
    );
    env.insert("HOSTNAME".to_string(), "maestro-7d9f-assets".to_string());
    // The startup probe's whole budget: initial delay + period × failure threshold.
    let budget = seconds(&startup["initialDelaySeconds"])
        + seconds(&startup["periodSeconds"]) * seconds(&startup["failureThreshold"]);
    let server = Server::start_within(&args, &env, &startup_path, Duration::from_secs(budget));

    let ready = server.get(&ready_path, &[]);
    assert_eq!(ready.status, 200, "{ready_path}: {}", ready.text());
    assert_eq!(ready.json()["ready"], true);
    let live = server.get(&live_path, &[]);
    assert_eq!(live.status, 200, "{live_path}: {}", live.text());
    assert_eq!(live.json()["alive"], true);
    let health = server.get("/health", &[]).json();
    assert_eq!(health["database"]["type"], db.type_name(), "{health}");
    assert_eq!(health["database"]["connected"], true, "{health}");
    let metrics = server.get(&metrics_path, &[]);
    assert_eq!(metrics.status, 200);
    assert!(metrics.text().contains("dag_health_check_status"));

    // The Secret's optional api-tokens key turns authentication on.
    assert_eq!(server.get("/api/v1/workflows", &[]).status, 401);
    let bearer = format!("Bearer {token}");
    let listed = server.get("/api/v1/workflows", &[("Authorization", &bearer)]);
    assert_eq!(listed.status, 200, "{}", listed.text());

    let status = server.terminate(Duration::from_secs(termination - pre_stop));
    assert!(status.success(), "SIGTERM exits 0: {status:?}");
}

/// Decodes standard base64 (a Secret's `data`).
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64") as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

#[test]
fn the_dev_overlay_environment_runs_on_its_sqlite_volume() {
    let manifest = Manifest::overlay("dev");
    let deployment = manifest.object("Deployment", "maestro");
    let pod = &deployment["spec"]["template"];
    assert_eq!(deployment["spec"]["replicas"], 1, "SQLite takes one writer");

    // The Secret the overlay generates, with the file on the volume mounted at /data.
    let container = &pod["spec"]["containers"][0];
    let secret_ref = container["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == "DATABASE_URL")
        .map(|e| &e["valueFrom"]["secretKeyRef"])
        .expect("DATABASE_URL from a Secret");
    let secret = manifest.object("Secret", secret_ref["name"].as_str().unwrap());
    let url = String::from_utf8(base64_decode(
        secret["data"][secret_ref["key"].as_str().unwrap()]
            .as_str()
            .unwrap(),
    ))
    .unwrap();
    assert_eq!(url, "sqlite:///data/maestro.db");
    let mounts = container["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.iter().any(|m| m["mountPath"] == "/data"),
        "the SQLite file needs its volume: {mounts:?}"
    );

    // The same environment, with /data in a scratch directory and a free port.
    let data = TempDir::new("dev");
    let local_url = url.replace("/data/", &format!("{}/", data.0.display()));
    let secrets = BTreeMap::from([("database-url", local_url)]);
    let (_, args, mut env) = manifest.container(pod, "maestro", &secrets);
    env.insert(
        "MAESTRO_BIND".to_string(),
        format!("127.0.0.1:{}", free_port()),
    );
    let server = Server::start(&args, &env, "/health/startup");
    assert_eq!(server.get("/health/ready", &[]).status, 200);
    let health = server.get("/health", &[]).json();
    assert_eq!(health["database"]["type"], "SQLite", "{health}");
    assert!(
        data.0.join("maestro.db").exists(),
        "the database lives on the volume"
    );
    assert!(server.terminate(Duration::from_secs(40)).success());
}

// ---------------------------------------------------------------------------------------------
// docs/api.md against the OpenAPI document.

/// The `(method, path)` of every `curl` call in the `sh` blocks of `docs/api.md`, with
/// `$API` and the query string removed (`("POST", "/api/v1/runs/$RUN_ID/cancel")`).
fn documented_calls() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(root().join("docs/api.md")).unwrap();
    let mut calls = Vec::new();
    let mut in_sh = false;
    let mut command = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with("```") {
            in_sh = trimmed == "```sh";
            continue;
        }
        if !in_sh {
            continue;
        }
        command.push_str(trimmed.trim_end_matches('\\'));
        command.push(' ');
        if trimmed.ends_with('\\') {
            continue;
        }
        let words: Vec<&str> = command.split_whitespace().collect();
        if let Some(start) = words.iter().position(|w| w.ends_with("curl")) {
            let words = &words[start..];
            let method = words
                .windows(2)
                .find(|w| w[0] == "-X")
                .map_or("GET", |w| w[1]);
            if let Some(url) = words.iter().find(|w| w.contains("$API")) {
                let url = url.trim_matches(|c| c == '"' || c == '\'');
                let path = url.split("$API").nth(1).unwrap_or("");
                let path = path.split('?').next().unwrap();
                calls.push((method.to_string(), path.to_string()));
            }
        }
        command.clear();
    }
    calls
}

/// Whether a documented path (`/api/v1/runs/$RUN_ID`) fits an OpenAPI path template
/// (`/api/v1/runs/{run_id}`).
fn fits(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter()
            .zip(&p)
            .all(|(t, p)| t == p || (t.starts_with('{') && !p.is_empty()))
}

#[test]
fn every_route_of_the_openapi_document_has_a_curl_example_in_api_md() {
    let calls = documented_calls();
    assert!(calls.len() > 20, "too few curl calls found: {calls:?}");
    let openapi = read_json("docs/openapi.json");
    let mut missing = Vec::new();
    for (template, operations) in openapi["paths"].as_object().unwrap() {
        for method in operations.as_object().unwrap().keys() {
            let method = method.to_ascii_uppercase();
            if !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&method.as_str()) {
                continue;
            }
            if !calls.iter().any(|(m, p)| *m == method && fits(template, p)) {
                missing.push(format!("{method} {template}"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "routes without a curl example in docs/api.md: {missing:?}"
    );
    // And no example calls a route the document does not have.
    let paths: Vec<&String> = openapi["paths"].as_object().unwrap().keys().collect();
    for (method, path) in &calls {
        assert!(
            paths.iter().any(|t| fits(t, path)),
            "docs/api.md calls {method} {path}, which is not in docs/openapi.json"
        );
    }
}
