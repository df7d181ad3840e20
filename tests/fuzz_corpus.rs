//! Replays the fuzz corpora (`fuzz/corpus/<target>/`, plus the hand-written seeds in
//! `fuzz/seeds/<target>/`) through the fuzz targets' property checks on stable Rust, so a
//! change in `src/` that breaks a property found by fuzzing fails `cargo test`.
//!
//! The checks live in `fuzz/properties.rs`, shared with the fuzz targets.

#[path = "../fuzz/properties.rs"]
mod properties;

use std::fs;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The files of `dir`, sorted; none if it does not exist.
fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target`'s checks on every file; the failures, one line each.
fn replay(target: &str, files: &[PathBuf]) -> Vec<String> {
    let mut failures = Vec::new();
    for file in files {
        let data = fs::read(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let outcome = panic::catch_unwind(AssertUnwindSafe(|| properties::check(target, &data)));
        match outcome {
            Ok(Ok(())) => {}
            Ok(Err(violation)) => failures.push(format!("{}: {violation}", file.display())),
            Err(_) => failures.push(format!("{}: panicked (see above)", file.display())),
        }
    }
    failures
}

fn replay_corpus(target: &str) {
    let corpus = files(&fuzz_dir().join("corpus").join(target));
    assert!(
        !corpus.is_empty(),
        "fuzz/corpus/{target} is empty or missing: the corpus must be committed"
    );
    let seeds = files(&fuzz_dir().join("seeds").join(target));
    let all: Vec<PathBuf> = corpus.into_iter().chain(seeds).collect();
    let failures = replay(target, &all);
    assert!(
        failures.is_empty(),
        "{} of {} {target} inputs break a property:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}

#[test]
fn channel_corpus() {
    replay_corpus("channel");
}

#[test]
fn snapd_response_corpus() {
    replay_corpus("snapd_response");
}

#[test]
fn config_corpus() {
    replay_corpus("config");
}

#[test]
fn every_target_is_replayed() {
    assert_eq!(properties::TARGETS, ["channel", "snapd_response", "config"]);
}

/// The reproducers of what fuzzing found (`fuzz/regressions/<target>/`, all fixed) stay
/// fixed.
#[test]
fn fixed_findings_stay_fixed() {
    let mut failures = Vec::new();
    let mut count = 0;
    for target in properties::TARGETS {
        let found = files(&fuzz_dir().join("regressions").join(target));
        count += found.len();
        failures.extend(replay(target, &found));
    }
    assert!(count > 0, "fuzz/regressions is empty or missing");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
