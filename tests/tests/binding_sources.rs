//! The Kotlin and Swift bindings checked in under `client-ffi/bindings/` (what the Android
//! and iOS apps compile) are exactly what the workspace's `uniffi-bindgen` generates from
//! the current library, so a change to the binding surface cannot ship with stale
//! bindings. No Kotlin or Swift compiler runs here; generation itself is what is checked.
//! Regenerate with the commands in docs/mobile.md ("Generating the bindings").

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fieldsync_tests::{client_ffi_artifacts, command_without_fieldsync_environment};

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root above tests/")
        .to_owned()
}

/// Every file under `folder`, by path relative to it, with its bytes.
fn files_under(folder: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, folder: &Path, files: &mut BTreeMap<PathBuf, Vec<u8>>) {
        let Ok(entries) = std::fs::read_dir(folder) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(root, &path, files);
            } else {
                let relative = path.strip_prefix(root).expect("under root").to_owned();
                files.insert(relative, std::fs::read(&path).expect("read generated file"));
            }
        }
    }
    let mut files = BTreeMap::new();
    walk(folder, folder, &mut files);
    files
}

fn generate(language: &str, out_dir: &Path) {
    let (library, bindgen) = client_ffi_artifacts();
    // --no-format: formatters (ktlint, swift-format) may or may not be installed, and their
    // output would make the comparison depend on the machine.
    let output = command_without_fieldsync_environment(&bindgen)
        .args(["generate", "--no-format", "--library"])
        .arg(&library)
        .args(["--language", language, "--out-dir"])
        .arg(out_dir)
        .current_dir(repository_root())
        .output()
        .expect("run uniffi-bindgen");
    assert!(
        output.status.success(),
        "uniffi-bindgen generate --language {language} failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn committed_kotlin_and_swift_bindings_match_the_library() {
    for language in ["kotlin", "swift"] {
        let generated_dir = tempfile::tempdir().expect("temp dir");
        generate(language, generated_dir.path());
        let generated = files_under(generated_dir.path());
        assert!(!generated.is_empty(), "{language}: nothing generated");
        let committed_dir = repository_root().join("client-ffi/bindings").join(language);
        let committed = files_under(&committed_dir);
        let names = |files: &BTreeMap<PathBuf, Vec<u8>>| files.keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            names(&committed),
            names(&generated),
            "client-ffi/bindings/{language} has other files than uniffi-bindgen generates; \
             regenerate it (docs/mobile.md)"
        );
        for (path, bytes) in &generated {
            assert!(
                committed.get(path) == Some(bytes),
                "client-ffi/bindings/{language}/{} is out of date; regenerate it (docs/mobile.md)",
                path.display()
            );
        }
    }
}
