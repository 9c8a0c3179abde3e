//! Every `sh` example of `docs/api.md`, run in order in one bash session against a real server,
//! with `curl --fail-with-body`: the API guide cannot drift from the API.

use std::process::{Command, Stdio};

use crate::support::{free_port, root, server_binary};

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

    let port = free_port();
    let dir = std::env::temp_dir().join(format!("maestro-api-docs-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut server = Command::new(server_binary())
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
    // Examples that write files (`> hello.svg`) write them into the test's scratch folder.
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .current_dir(&dir)
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
