//! Repository hygiene checks that are cheap enough to run with the tests.

use std::fs;
use std::path::Path;

#[test]
fn every_source_file_starts_with_module_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut missing = Vec::new();
    for dir in ["src", "tests/it"] {
        for entry in fs::read_dir(root.join(dir)).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).unwrap();
                if !text.starts_with("//!") {
                    missing.push(path.display().to_string());
                }
            }
        }
    }
    assert!(missing.is_empty(), "files without `//!` docs: {missing:?}");
}
