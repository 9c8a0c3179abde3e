//! Flags, settings, exit statuses and `migrate`.

use crate::{example, maestro};

#[test]
fn bad_flags_exit_64_naming_the_flag() {
    let out = maestro(&["run", &example("failing.json"), "--inputs", "[1, 2]"]);
    assert_eq!(out.code, 64, "{out:?}");
    assert!(out.stderr.contains("--inputs"), "{out:?}");
    assert!(out.stderr.contains("JSON object"), "{out:?}");

    let out = maestro(&["validate", &example("failing.json"), "--frobnicate"]);
    assert_eq!(out.code, 64, "{out:?}");
    assert!(out.stderr.contains("--frobnicate"), "{out:?}");
}

#[test]
fn a_bad_environment_setting_exits_64_naming_it() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maestro-server"))
        .args(["validate", &example("failing.json")])
        .env("MAESTRO_LOG_FORMAT", "xml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--log-format"), "{stderr}");
    assert!(
        stderr.contains("environment variable MAESTRO_LOG_FORMAT"),
        "{stderr}"
    );
}

#[test]
fn migrate_applies_the_migrations_once() {
    let dir = std::env::temp_dir().join(format!("maestro-migrate-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite://{}", dir.join("m.db").display());
    let first = maestro(&["migrate", "--database-url", &url]);
    assert_eq!(first.code, 0, "{first:?}");
    assert!(first.stdout.contains("applied"), "{first:?}");
    let second = maestro(&["migrate", "--database-url", &url]);
    assert_eq!(second.code, 0, "{second:?}");
    assert!(second.stdout.contains("up to date"), "{second:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_server_settings_exit_64_naming_them() {
    let out = maestro(&["serve", "--database-url", "mysql://db/x"]);
    assert_eq!(out.code, 64, "{out:?}");
    assert!(out.stderr.contains("--database-url"), "{out:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maestro-server"))
        .arg("serve")
        .env("MAESTRO_LEASE_TTL_SECS", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(64), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("MAESTRO_LEASE_TTL_SECS"),
        "{out:?}"
    );
}

#[test]
fn help_exits_0() {
    let out = maestro(&["--help"]);
    assert_eq!(out.code, 0, "{out:?}");
    for sub in ["serve", "migrate", "validate", "run"] {
        assert!(out.stdout.contains(sub), "{sub}: {out:?}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maestro-server"))
        .args(["run", &example("failing.json")])
        .env("MAESTRO_LOG_FORMAT", "json")
        .env("RUST_LOG", "info")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(!lines.is_empty(), "expected logs at info");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(v.get("level").is_some(), "{line}");
    }
}
