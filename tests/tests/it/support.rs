//! Shared end-to-end helpers: build and start the real `maestro-server` binary ([`Server`]),
//! talk raw HTTP/1.1 to it ([`Response`]), and give a test its own PostgreSQL database
//! ([`PgDatabase`]).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use serde_json::Value;

/// The workspace's root folder.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Builds the server binary once per test process (so these tests never run a stale binary) and
/// returns its path.
pub(crate) fn server_binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let root = root();
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

pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A running server; killed when dropped.
pub(crate) struct Server {
    child: Child,
    pub(crate) addr: SocketAddr,
    _dir: Option<TempDir>,
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Server {
    /// A server on a fresh SQLite database, once `/health/startup` says 200.
    pub(crate) fn sqlite(extra_env: &[(&str, &str)]) -> Self {
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

    /// A server on `database_url`, once `/health/startup` says 200.
    pub(crate) fn start(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
        let server = Self::spawn(database_url, extra_env);
        server.wait_for("/health/startup", 200, Duration::from_secs(30));
        server
    }

    /// Starts the process without waiting for anything.
    pub(crate) fn spawn(database_url: &str, extra_env: &[(&str, &str)]) -> Self {
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
        Self {
            child,
            addr,
            _dir: None,
        }
    }

    /// Polls `path` until it answers `status`; panics after `within`.
    pub(crate) fn wait_for(&self, path: &str, status: u16, within: Duration) -> Response {
        let deadline = Instant::now() + within;
        loop {
            let last = self.try_request("GET", path, None, &[]);
            if let Ok(r) = &last
                && r.status == status
            {
                return last.unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "GET {path} did not answer {status} within {within:?}; last: {}",
                match last {
                    Ok(r) => format!("{} {}", r.status, r.text()),
                    Err(e) => e.to_string(),
                }
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(crate) fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let mut all: Vec<(&str, &str)> = Vec::new();
        if !body.is_empty() {
            all.push(("Content-Type", "application/json"));
        }
        all.extend_from_slice(headers);
        self.try_raw(method, path, body.as_bytes(), &all)
    }

    /// Sends `body` as is, with exactly the given headers (plus `Host`, `Connection: close` and
    /// `Content-Length`).
    pub(crate) fn try_raw(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        headers: &[(&str, &str)],
    ) -> std::io::Result<Response> {
        http_raw(self.addr, method, path, body, headers)
    }

    pub(crate) fn request(&self, method: &str, path: &str, body: Option<&Value>) -> Response {
        self.try_request(method, path, body, &[])
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    /// Sends SIGTERM without waiting.
    pub(crate) fn sigterm(&self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status();
        assert!(status.is_ok_and(|s| s.success()), "kill -TERM {pid}");
    }

    /// Waits for the process to exit; panics after `within`.
    pub(crate) fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the server did not exit within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// SIGTERM, then the exit status (within 20 s).
    pub(crate) fn terminate(mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit(Duration::from_secs(20))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request to `addr`: `body` sent as is, with exactly the given headers (plus `Host`, `Connection: close` and
/// `Content-Length`).
pub(crate) fn http_raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    headers: &[(&str, &str)],
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
        addr,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut bytes = req.into_bytes();
    bytes.extend_from_slice(body);
    // The server may answer (e.g. 413) and close before it has read a large body.
    let written = stream.write_all(&bytes);
    let mut raw = Vec::new();
    let read = stream.read_to_end(&mut raw);
    if raw.is_empty() {
        written?;
        read?;
        return Err(std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "no response",
        ));
    }
    Ok(Response::parse(&raw))
}

pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) headers: Vec<(String, String)>,
    pub(crate) body: Vec<u8>,
}

impl Response {
    pub(crate) fn parse(raw: &[u8]) -> Self {
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

    pub(crate) fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }

    pub(crate) fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).to_string()
    }

    pub(crate) fn header(&self, name: &str) -> Option<&str> {
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

/// A fresh PostgreSQL database for one test, dropped (with its sessions) at the end.
pub(crate) struct PgDatabase {
    admin: String,
    pub(crate) name: String,
    pub(crate) url: String,
}

impl PgDatabase {
    /// A new database on the server at `MAESTRO_TEST_DATABASE_URL`; `None` (a skip, noted on
    /// stderr) when the variable is unset, a failure when `CI=true`.
    pub(crate) fn create() -> Option<Self> {
        let Some(admin) = std::env::var("MAESTRO_TEST_DATABASE_URL")
            .ok()
            .filter(|u| !u.is_empty())
        else {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true needs MAESTRO_TEST_DATABASE_URL"
            );
            eprintln!("note: MAESTRO_TEST_DATABASE_URL is not set; skipping");
            return None;
        };
        let name = format!("maestro_e2e_{}_{}", std::process::id(), free_port());
        let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
        let url = format!("{base}/{name}");
        let db = Self { admin, name, url };
        db.admin_sql(&format!("CREATE DATABASE {}", db.name));
        Some(db)
    }

    /// Runs SQL on the admin database; panics when it fails.
    pub(crate) fn admin_sql(&self, sql: &str) {
        let out = Command::new("psql")
            .args([
                self.admin.as_str(),
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Runs a query on the test database and returns its rows, fields separated by `|`.
    pub(crate) fn query(&self, sql: &str) -> Vec<String> {
        let out = Command::new("psql")
            .args([
                self.url.as_str(),
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "psql `{sql}`: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }

    /// Refuses new connections and ends the open ones: the database is gone for its clients.
    pub(crate) fn go_away(&self) {
        self.admin_sql(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS false",
            self.name
        ));
        self.admin_sql(&format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{}'",
            self.name
        ));
    }

    /// Accepts connections again.
    pub(crate) fn come_back(&self) {
        self.admin_sql(&format!(
            "ALTER DATABASE {} WITH ALLOW_CONNECTIONS true",
            self.name
        ));
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                self.admin.as_str(),
                "-q",
                "-c",
                &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
            ])
            .output();
    }
}

impl Server {
    /// The process id, for signals such as `kill -STOP` and `kill -CONT`.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL now (no drain, no lease release), then reaps the process.
    pub(crate) fn sigkill(&mut self) -> ExitStatus {
        self.child.kill().expect("SIGKILL");
        self.child.wait().expect("reap the killed server")
    }
}

/// Reads one HTTP/1.1 request from `stream`: the head, then as many body bytes as its
/// `Content-Length` declares. `None` when the peer goes away first.
pub(crate) fn read_request(stream: &mut TcpStream) -> Option<Vec<u8>> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = seen.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&seen[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap_or(0));
            if seen.len() >= end + 4 + len {
                return Some(seen);
            }
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return None,
            Ok(n) => seen.extend_from_slice(&buf[..n]),
        }
    }
}

/// A stand-in team engine (`MAESTRO_TEAM_ENGINE_URL`) on a free port: every phase it is asked
/// to run completes at once with `{"approved": true}`. Returns its base URL.
pub(crate) fn team_engine() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                if read_request(&mut stream).is_none() {
                    return;
                }
                let body = serde_json::json!({
                    "status": "completed",
                    "output": {"approved": true},
                    "artifacts": [],
                    "contracts": [],
                    "execution_time": 0.01,
                    "personas_executed": ["e2e"]
                })
                .to_string();
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    url
}
