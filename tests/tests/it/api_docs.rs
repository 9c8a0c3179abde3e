//! Every `sh` example of `docs/api.md`, run in order in one bash session against a real server,
//! with `curl --fail-with-body`: the API guide cannot drift from the API.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// The `sh` blocks of a Markdown text, in order, with their indentation removed.
fn sh_blocks(markdown: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut current: Option<(usize, Vec<String>)> = None;
    for line in markdown.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        match &mut current {
            None if trimmed == "```sh" => current = Some((indent, Vec::new())),
            Some(_) if trimmed == "```" => {
                let (_, lines) = current.take().unwrap();
                blocks.push(lines.join("\n"));
            }
            Some((indent, lines)) => {
                lines.push(line.get(*indent..).unwrap_or(line.trim_start()).to_string());
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_example_of_the_api_guide_runs_against_a_server() {
    let text = std::fs::read_to_string(root().join("docs/api.md")).unwrap();
    let blocks = sh_blocks(&text);
    assert!(
        blocks.len() > 10,
        "docs/api.md has {} sh blocks",
        blocks.len()
    );

    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "build",
            "--quiet",
            "-p",
            "maestro-server",
            "--bin",
            "maestro-server",
        ])
        .current_dir(root())
        .status()
        .unwrap();
    assert!(status.success());
    let target =
        std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from);
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = std::env::temp_dir().join(format!("maestro-api-docs-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Command::new(target.join("debug/maestro-server"))
        .arg("serve")
        .env("MAESTRO_BIND", format!("127.0.0.1:{port}"))
        .env(
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("api.db").display()),
        )
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();

    // The first block starts a server (done above); the second sets the base URL: point it here.
    let api = format!("http://127.0.0.1:{port}");
    let mut script = String::from(
        "set -euo pipefail\n\
         curl() { command curl --fail-with-body --max-time 30 \"$@\"; }\n",
    );
    script.push_str(&format!(
        "for i in $(seq 1 300); do command curl -sf {api}/health/startup >/dev/null && break; sleep 0.1; done\n"
    ));
    for (k, block) in blocks.iter().enumerate().skip(1) {
        let block = block.replace("http://localhost:8003", &api);
        script.push_str(&format!("echo '--- example {k}' >&2\n{block}\n"));
    }
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.status.success(),
        "an example of docs/api.md failed ({}):\n--- stderr\n{}\n--- stdout (tail)\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
            .chars()
            .rev()
            .take(2000)
            .collect::<String>()
            .chars()
            .rev()
            .collect::<String>()
    );
}

#[test]
fn sh_blocks_are_read_with_their_indentation_removed() {
    let md = "text\n\n  ```sh\n  a=1\n    b\n  ```\n```sh\nc\n```\n```rust\nno\n```\n";
    assert_eq!(sh_blocks(md), ["a=1\n  b", "c"]);
}
