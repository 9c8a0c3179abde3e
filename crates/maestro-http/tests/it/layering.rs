//! The crate's place in the layers (DESIGN §1): it depends on `maestro-dag` (and
//! `maestro-health`), never on `maestro-store` or `maestro-phase`, except as dev-dependencies.

#[test]
fn maestro_http_depends_only_on_the_allowed_maestro_crates() {
    let manifest = include_str!("../../Cargo.toml");
    let deps = manifest
        .split("[dependencies]")
        .nth(1)
        .and_then(|rest| rest.split("\n[").next())
        .expect("a [dependencies] table");
    let maestro: Vec<&str> = deps
        .lines()
        .filter_map(|l| l.split(['.', ' ', '=']).next())
        .filter(|name| name.starts_with("maestro-"))
        .collect();
    for name in &maestro {
        assert!(
            ["maestro-dag", "maestro-health"].contains(name),
            "maestro-http must not depend on {name}"
        );
    }
    assert!(maestro.contains(&"maestro-dag"));
}
