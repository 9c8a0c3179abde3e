//! End-to-end tests of the `maestro-server` binary: each runs the built executable on a file and
//! checks its exit status and output, as a user or a script would see them.

mod cli;
mod run;
mod validate;

use std::path::{Path, PathBuf};
use std::process::Command;

/// What one invocation of the binary produced.
#[derive(Debug)]
struct Output {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `maestro-server` with `args` (with logs at their default level and no colours).
fn maestro(args: &[&str]) -> Output {
    let out = Command::new(env!("CARGO_BIN_EXE_maestro-server"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("MAESTRO_LOG_FORMAT")
        .env_remove("MAESTRO_BIND")
        .env_remove("DATABASE_URL")
        .env("NO_COLOR", "1")
        .output()
        .expect("the maestro-server binary runs");
    Output {
        code: out.status.code().expect("the binary exits normally"),
        stdout: String::from_utf8(out.stdout).expect("stdout is UTF-8"),
        stderr: String::from_utf8(out.stderr).expect("stderr is UTF-8"),
    }
}

/// The path of a file in `examples/`.
fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// Writes `text` to a fresh file named `name` for one test, and returns its path.
fn scratch_file(test: &str, name: &str, text: &str) -> String {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(test);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

/// The table row of `node` in a `run` output, split into its columns.
fn row<'a>(stdout: &'a str, node: &str) -> Vec<&'a str> {
    let line = stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(node))
        .unwrap_or_else(|| panic!("no row for {node} in:\n{stdout}"));
    line.split_whitespace().collect()
}
