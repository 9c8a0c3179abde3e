//! Tidy: checks of the source tree that no compiler lint makes (after rust-analyzer's `tidy`
//! test). Each check lists every offender, not just the first.
//!
//! - Every `.rs` file under `crates/*/src` and `bins/*/src` opens with a `//!` comment saying
//!   what it is for (STYLE item 4); only blank lines may come before it.
//! - Library code under `crates/` prints nothing: no `println!`, `print!` or `dbg!` outside test
//!   modules (STYLE item 9; logs go through `tracing`).
//! - The crates keep their layers (DESIGN §1): `maestro-dag` depends on no database, HTTP or
//!   other Maestro crate, and each other crate only on the Maestro crates below it.

use std::fs;
use std::path::{Path, PathBuf};

/// The workspace root (this crate lives in `<root>/tests`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate sits inside the workspace")
        .to_path_buf()
}

/// The `src` directories of the packages in `<root>/<group>/*`, sorted.
fn source_dirs(root: &Path, group: &str) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = fs::read_dir(root.join(group))
        .unwrap_or_else(|e| panic!("cannot read {group}/: {e}"))
        .map(|entry| {
            entry
                .expect("a readable directory entry")
                .path()
                .join("src")
        })
        .filter(|src| src.is_dir())
        .collect();
    dirs.sort();
    dirs
}

/// Every `.rs` file below `dir`, sorted.
fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("cannot read {}: {e}", d.display()))
        {
            let path = entry.expect("a readable directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

fn relative(root: &Path, path: &Path) -> String {
    path.strip_prefix(root)
        .unwrap_or(path)
        .display()
        .to_string()
}

/// Whether the first line that is not blank is a `//!` comment.
fn has_module_doc(text: &str) -> bool {
    text.lines()
        .find(|line| !line.trim().is_empty())
        .is_some_and(|line| line.starts_with("//!"))
}

const PRINT_MACROS: [&str; 3] = ["println!", "print!", "dbg!"];

/// `(line number, macro)` for every print or `dbg!` macro before the first `#[cfg(test)]`, in
/// code (comment lines, doc examples included, are not code). `eprintln!` and `eprint!` are
/// not matched.
fn print_macros(text: &str) -> Vec<(usize, &'static str)> {
    let mut found = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let code = line.trim_start();
        if code.starts_with("#[cfg(test)]") {
            break;
        }
        if code.starts_with("//") {
            continue;
        }
        for name in PRINT_MACROS {
            let called = line.match_indices(name).any(|(at, _)| {
                !line[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_alphanumeric() || c == '_')
            });
            if called {
                found.push((i + 1, name));
            }
        }
    }
    found
}

/// The package names a manifest depends on in its `[dependencies]`, `[build-dependencies]` and
/// target-specific dependency tables (not `[dev-dependencies]`), renames resolved through
/// `package = "…"`. A textual reading, enough for the manifests of this workspace.
fn dependency_names(manifest: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut in_deps = false;
    for line in manifest.lines() {
        let line = strip_comment(line).trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.trim_end_matches(']').trim();
            in_deps = false;
            if let Some((before, after)) = header.rsplit_once("dependencies") {
                let kind_ok = before.is_empty()
                    || before == "build-"
                    || (before.starts_with("target.")
                        && (before.ends_with(".") || before.ends_with(".build-")));
                if kind_ok && after.is_empty() {
                    in_deps = true;
                } else if kind_ok && let Some(name) = after.strip_prefix('.') {
                    // `[dependencies.NAME]`: the rest of the table describes NAME.
                    names.push(unquote(name).to_string());
                }
            }
            continue;
        }
        if !in_deps {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = unquote(key.trim().split('.').next().unwrap_or_default().trim());
        if key.is_empty() {
            continue;
        }
        names.push(package_of(value).unwrap_or(key).to_string());
    }
    names
}

/// `x` in a `package = "x"` entry of an inline table.
fn package_of(value: &str) -> Option<&str> {
    let at = value.find("package")?;
    let rest = value[at + "package".len()..]
        .trim_start()
        .strip_prefix('=')?
        .trim_start();
    let rest = rest.strip_prefix('"')?;
    rest.split('"').next()
}

fn unquote(s: &str) -> &str {
    s.trim().trim_matches('"').trim_matches('\'')
}

/// The line without a `#` comment (a `#` inside a string is kept).
fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_string = !in_string,
            '#' if !in_string => return &line[..i],
            _ => {}
        }
    }
    line
}

/// Crate families no DAG core may depend on: databases, pools and HTTP.
const NOT_IN_THE_CORE: [&str; 10] = [
    "diesel",
    "deadpool",
    "hyper",
    "sqlx",
    "tokio-postgres",
    "postgres",
    "rusqlite",
    "libsqlite3-sys",
    "reqwest",
    "axum",
];

/// Whether `name` is `family` or one of its companions (`diesel-async`, `hyper-util`, …).
fn in_family(name: &str, family: &str) -> bool {
    name == family
        || name
            .strip_prefix(family)
            .is_some_and(|rest| rest.starts_with('-') || rest.starts_with('_'))
}

/// The Maestro crates each library crate may depend on (DESIGN §1). Crates not listed here are
/// not checked; the binaries and `tests/` wire everything together.
const LAYERS: [(&str, &[&str]); 6] = [
    ("maestro-dag", &[]),
    ("maestro-phase", &["maestro-dag"]),
    ("maestro-store", &["maestro-dag"]),
    ("maestro-health", &[]),
    ("maestro-http", &["maestro-dag", "maestro-health"]),
    // The `phase` executor (a team engine over HTTP) adapts maestro-phase's ports.
    ("maestro-executors", &["maestro-dag", "maestro-phase"]),
];

/// The dependencies of `krate` (by its manifest) that break the layering.
fn layering_violations(krate: &str, manifest: &str) -> Vec<String> {
    let Some((_, allowed)) = LAYERS.iter().find(|(name, _)| *name == krate) else {
        return Vec::new();
    };
    dependency_names(manifest)
        .into_iter()
        .filter(|dep| {
            let maestro = dep.starts_with("maestro-") || dep.starts_with("maestro_");
            let heavy = krate == "maestro-dag" && NOT_IN_THE_CORE.iter().any(|f| in_family(dep, f));
            (maestro && !allowed.contains(&dep.as_str())) || heavy
        })
        .collect()
}

#[track_caller]
fn fail_with(what: &str, offenders: &[String]) {
    assert!(
        offenders.is_empty(),
        "{what}:\n  {}",
        offenders.join("\n  ")
    );
}

#[test]
fn every_source_file_starts_with_a_module_doc_comment() {
    let root = workspace_root();
    let mut dirs = source_dirs(&root, "crates");
    dirs.extend(source_dirs(&root, "bins"));
    assert!(
        dirs.len() >= 2,
        "no source directories found under {}",
        root.display()
    );
    let offenders: Vec<String> = dirs
        .iter()
        .flat_map(|dir| rust_files(dir))
        .filter(|file| !has_module_doc(&read(file)))
        .map(|file| relative(&root, &file))
        .collect();
    fail_with(
        "these files must start with a `//!` comment saying what they are for",
        &offenders,
    );
}

#[test]
fn libraries_do_not_print() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    for file in source_dirs(&root, "crates")
        .iter()
        .flat_map(|dir| rust_files(dir))
    {
        // Helper binaries of a crate (`src/bin/`) talk to their caller through stdout.
        if file.components().any(|c| c.as_os_str() == "bin") {
            continue;
        }
        for (line, name) in print_macros(&read(&file)) {
            offenders.push(format!("{}:{line}: {name}", relative(&root, &file)));
        }
    }
    fail_with(
        "libraries log through `tracing` and never print (tests excepted)",
        &offenders,
    );
}

#[test]
fn crates_keep_their_layers() {
    let root = workspace_root();
    let mut offenders = Vec::new();
    for (krate, _) in LAYERS {
        let manifest = root.join("crates").join(krate).join("Cargo.toml");
        if !manifest.exists() {
            continue;
        }
        for dep in layering_violations(krate, &read(&manifest)) {
            offenders.push(format!("{krate} depends on {dep}"));
        }
    }
    assert!(
        root.join("crates/maestro-dag/Cargo.toml").exists(),
        "maestro-dag's manifest is missing"
    );
    fail_with(
        "dependencies that break the layering of DESIGN §1",
        &offenders,
    );
}

/// The checks themselves catch what they should, and only that.
mod checks {
    use super::*;

    #[test]
    fn a_module_doc_comes_first_after_blank_lines() {
        let check =
            |text: &str, expected: bool| assert_eq!(has_module_doc(text), expected, "{text:?}");
        check("//! A module.\nfn f() {}\n", true);
        check("\n\n//! A module.\n", true);
        check("#![allow(unused)]\n//! A module.\n", false);
        check("// A plain comment.\n//! A module.\n", false);
        check("/// An item doc.\nfn f() {}\n", false);
        check("use std::fs;\n", false);
        check("", false);
    }

    #[test]
    fn print_macros_are_found_in_code_before_the_tests() {
        let check = |text: &str, expected: &[(usize, &str)]| {
            assert_eq!(print_macros(text), expected, "{text:?}");
        };
        check("fn f() {\n    println!(\"x\");\n}\n", &[(2, "println!")]);
        check(
            "fn f() { print!(\"x\"); dbg!(1); }\n",
            &[(1, "print!"), (1, "dbg!")],
        );
        check("fn f() { std::println!(\"x\"); }\n", &[(1, "println!")]);
        check("fn f() { eprintln!(\"x\"); eprint!(\"y\"); }\n", &[]);
        check(
            "//! Never `println!` here.\n/// Or `dbg!`.\n// println!\n",
            &[],
        );
        check(
            "fn f() {}\n#[cfg(test)]\nmod tests {\n    fn t() { dbg!(1); }\n}\n",
            &[],
        );
    }

    #[test]
    fn dependencies_are_read_from_the_dependency_tables_only() {
        let manifest = r#"
[package]
name = "x"
hyper = "not a dependency"

[features]
cel = ["dep:cel"]

[dependencies]
async-trait.workspace = true
cel = { workspace = true, optional = true } # a comment
"serde_json" = "1"
http = { package = "hyper", version = "1" }

[target.'cfg(unix)'.dependencies]
libc = "0.2"

[dependencies.maestro-store]
path = "../maestro-store"

[dev-dependencies]
maestro-executors.workspace = true
"#;
        assert_eq!(
            dependency_names(manifest),
            [
                "async-trait",
                "cel",
                "serde_json",
                "hyper",
                "libc",
                "maestro-store"
            ]
        );
    }

    #[test]
    fn the_core_may_not_depend_on_storage_http_or_maestro_crates() {
        let manifest = "[dependencies]\ndiesel-async.workspace = true\nhyper-util = \"0.1\"\n\
                        maestro-phase.workspace = true\nserde.workspace = true\n\
                        hyperloglog = \"1\"\n";
        assert_eq!(
            layering_violations("maestro-dag", manifest),
            ["diesel-async", "hyper-util", "maestro-phase"]
        );
        let http = "[dependencies]\nmaestro-dag.workspace = true\nmaestro-health.workspace = true\n\
                    maestro-store.workspace = true\nhyper.workspace = true\n";
        assert_eq!(layering_violations("maestro-http", http), ["maestro-store"]);
        assert!(layering_violations("maestro-server", http).is_empty());
    }
}
