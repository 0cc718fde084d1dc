//! The repository itself: no merge-conflict markers left in any tracked text file (a
//! conflict block once landed in ARCHITECTURE.md unnoticed, twice).

use std::path::{Path, PathBuf};

/// Every file under `folder`, skipping build output and version-control folders.
fn files_under(folder: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            if !matches!(
                name.to_str(),
                Some("target" | ".git" | "node_modules" | "__pycache__")
            ) {
                files_under(&path, found);
            }
        } else {
            found.push(path);
        }
    }
}

#[test]
fn no_merge_conflict_markers_are_left_in_the_sources_or_docs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut files = Vec::new();
    files_under(&root, &mut files);
    let text_kinds = [
        "rs", "md", "toml", "sql", "proto", "py", "kt", "swift", "css", "js", "sh",
    ];
    let mut offenders = Vec::new();
    for path in files {
        let is_text = path
            .extension()
            .and_then(|extension| extension.to_str())
            .is_some_and(|extension| text_kinds.contains(&extension))
            || path.file_name().is_some_and(|name| name == "run");
        if !is_text {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        for (number, line) in text.lines().enumerate() {
            if line.starts_with("<<<<<<< ") || line.starts_with(">>>>>>> ") {
                offenders.push(format!("{}:{}", path.display(), number + 1));
            }
        }
    }
    assert!(offenders.is_empty(), "conflict markers at {offenders:?}");
}
