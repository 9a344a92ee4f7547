//! Replays every committed fuzz input through the same functions the fuzz targets call
//! (`tests/fuzz_targets/`), on the stable toolchain, in every CI run: the seed corpora in
//! `fuzz/corpus/<target>/` and minimized crashes in `tests/fuzz_regressions/<target>/`.
//!
//! A missing or empty corpus directory fails, so a broken layout cannot pass silently.
//! `cargo test --all-features --test fuzz_replay -- --nocapture` shows the counts.
// The leak_report target reads partner reports (feature `leak`).
#![cfg(all(feature = "serde", feature = "leak"))]

#[path = "fuzz_targets/mod.rs"]
mod fuzz_targets;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The regular files of `dir`, sorted; dotfiles (such as `.gitkeep`) are not inputs.
fn files_in(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .filter(|path| {
            !path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'))
        })
        .collect();
    files.sort();
    files
}

/// Runs every input of `name` through its target; panics naming each failing file.
#[allow(clippy::print_stderr)] // the count is the point of `--nocapture`
fn replay(name: &str) {
    let (_, target) = fuzz_targets::TARGETS
        .into_iter()
        .find(|(n, _)| *n == name)
        .expect("a known target");
    let corpus_dir = root().join("fuzz/corpus").join(name);
    let corpus = files_in(&corpus_dir);
    assert!(
        !corpus.is_empty(),
        "{} is missing or empty: every fuzz target needs a committed seed corpus",
        corpus_dir.display()
    );
    let regressions = files_in(&root().join("tests/fuzz_regressions").join(name));

    let mut failed = Vec::new();
    let inputs = corpus.iter().chain(&regressions);
    for path in inputs.clone() {
        let data = std::fs::read(path).expect("a readable input");
        if std::panic::catch_unwind(|| target(&data)).is_err() {
            failed.push(
                path.strip_prefix(root())
                    .unwrap_or(path)
                    .display()
                    .to_string(),
            );
        }
    }
    eprintln!(
        "fuzz replay {name}: {} inputs ({} corpus, {} regressions), {} failed",
        inputs.count(),
        corpus.len(),
        regressions.len(),
        failed.len()
    );
    assert!(
        failed.is_empty(),
        "fuzz target {name} fails on: {failed:#?}"
    );
}

#[test]
fn replay_parse_token() {
    replay("parse_token");
}

#[test]
fn replay_note_scope() {
    replay("note_scope");
}

#[test]
fn replay_json() {
    replay("json");
}

#[test]
fn replay_scan_redact() {
    replay("scan_redact");
}

#[test]
fn replay_issuer_state() {
    replay("issuer_state");
}

#[test]
fn replay_leak_report() {
    replay("leak_report");
}

/// The targets here, the fuzz binaries and the corpus directories name the same set, so
/// a target added in one place and forgotten in another fails.
#[test]
fn targets_binaries_and_corpora_match() {
    let names: BTreeSet<String> = fuzz_targets::TARGETS
        .iter()
        .map(|(n, _)| (*n).to_owned())
        .collect();
    let stems = |dir: &str, ext: Option<&str>| -> BTreeSet<String> {
        std::fs::read_dir(root().join(dir))
            .unwrap_or_else(|e| panic!("{dir}: {e}"))
            .map(|entry| entry.expect("a readable directory entry").path())
            .filter(|p| ext.is_none_or(|ext| p.extension().is_some_and(|e| e == ext)))
            .filter_map(|p| Some(p.file_stem()?.to_str()?.to_owned()))
            .collect()
    };
    assert_eq!(stems("fuzz/fuzz_targets", Some("rs")), names);
    assert_eq!(stems("fuzz/corpus", None), names);
    let manifest =
        std::fs::read_to_string(root().join("fuzz/Cargo.toml")).expect("fuzz/Cargo.toml");
    for name in &names {
        assert!(
            manifest.contains(&format!("name = \"{name}\"")),
            "fuzz/Cargo.toml has no [[bin]] {name}"
        );
    }
}
