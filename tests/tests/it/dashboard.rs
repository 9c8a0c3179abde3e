//! The web dashboard in a real browser: starts the server binary with an API token and runs
//! `tests/browser/dashboard.mjs` (playwright-core driving Debian's headless Chromium), which
//! enters the token, creates a workflow through the form, watches runs complete, fail, wait for
//! and get an approval, and be cancelled, and saves screenshots into
//! `target/dashboard-screenshots/` (CI artifacts, referenced from docs/dashboard.md).
//!
//! Without `/usr/bin/chromium` or `tests/browser/node_modules` (`bash scripts/browser-setup.sh`
//! installs both) the test is skipped with a message, unless `CI=true`, where that fails.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{Server, root};

const CHROMIUM: &str = "/usr/bin/chromium";
const TOKEN: &str = "dashboard-e2e-token";

/// The screenshots the script must leave, one per page or state worth seeing.
const SCREENSHOTS: &[&str] = &[
    "token-dialog.png",
    "new-workflow-errors.png",
    "workflow-dag.png",
    "run-live.png",
    "run-completed.png",
    "run-failed.png",
    "run-approval.png",
    "run-cancelled.png",
    "workflows.png",
];

/// Whether the browser test can run here; `false` (with a message) when it is skipped.
fn browser_available(root: &Path) -> bool {
    let missing: Vec<String> = [
        (Path::new(CHROMIUM).to_path_buf(), "Debian's chromium"),
        (
            root.join("tests/browser/node_modules/playwright-core"),
            "playwright-core (npm ci --prefix tests/browser)",
        ),
    ]
    .into_iter()
    .filter(|(path, _)| !path.exists())
    .map(|(path, what)| format!("{what} at {}", path.display()))
    .collect();
    let has_node = Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let missing: Vec<String> = missing
        .into_iter()
        .chain((!has_node).then(|| "node".to_string()))
        .collect();
    if missing.is_empty() {
        return true;
    }
    let message = format!(
        "the dashboard browser test needs {}; run `bash scripts/browser-setup.sh`",
        missing.join(", ")
    );
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{message} (CI=true: not skipping)"
    );
    eprintln!("skipping: {message}");
    false
}

#[test]
fn the_dashboard_drives_runs_in_headless_chromium() {
    let root = root();
    if !browser_available(&root) {
        return;
    }
    let shots = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("dashboard-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();

    let server = Server::sqlite(&[("MAESTRO_API_TOKENS", TOKEN)]);
    let started = Instant::now();
    let out = Command::new("node")
        .arg(root.join("tests/browser/dashboard.mjs"))
        .env("MAESTRO_URL", format!("http://{}", server.addr))
        .env("MAESTRO_TOKEN", TOKEN)
        .env("MAESTRO_SCREENSHOTS", &shots)
        .current_dir(&root)
        .output()
        .expect("node runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "tests/browser/dashboard.mjs failed ({}) after {:?}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status,
        started.elapsed()
    );
    assert!(
        started.elapsed() < Duration::from_secs(240),
        "the browser run took {:?}",
        started.elapsed()
    );
    for name in SCREENSHOTS {
        let path = shots.join(name);
        let bytes = std::fs::read(&path)
            .unwrap_or_else(|e| panic!("screenshot {} is missing: {e}", path.display()));
        assert!(
            bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
            "{} is not a real PNG ({} bytes)",
            path.display(),
            bytes.len()
        );
    }
    drop(server);
}
