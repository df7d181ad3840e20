//! Code comments cite `docs/<file>.md#<section>` for the Juju and snapd facts they rely
//! on, never a file outside the repository: every such citation must name a file in
//! `docs/` and one of its `##` sections, and no comment may cite the research notes the
//! docs were written from.

use std::fs;
use std::path::{Path, PathBuf};

fn sources(dir: &Path, into: &mut Vec<PathBuf>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        if path.is_dir() && !matches!(name.as_ref(), "target" | "corpus" | "artifacts") {
            sources(&path, into);
        } else if name.ends_with(".rs") || name == "run" || name.ends_with(".sh") {
            into.push(path);
        }
    }
}

#[test]
fn every_docs_citation_names_a_section_that_exists() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in ["src", "e2e", "bench", "pack", "fuzz", "tests", ".ci"] {
        sources(&root.join(dir), &mut files);
    }
    files.push(root.join("build.rs"));
    let mut checked = 0;
    let mut problems = Vec::new();
    for file in &files {
        let text = fs::read_to_string(file).unwrap_or_default();
        for (n, line) in text.lines().enumerate() {
            let at = format!("{}:{}", file.strip_prefix(root).unwrap().display(), n + 1);
            // Spelled in pieces so this file does not cite them itself.
            for banned in [
                concat!("juju-", "contract.md"),
                concat!("snapd", ".md §"),
                concat!("shared/", "reference"),
                concat!("notes/", "snapd-real"),
            ] {
                if line.contains(banned) {
                    problems.push(format!("{at}: cites {banned:?}, outside the repository"));
                }
            }
            let mut rest = line;
            while let Some(i) = rest.find("docs/") {
                rest = &rest[i + 5..];
                let cite: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || "-_.#".contains(*c))
                    .collect();
                let Some((doc, section)) = cite.split_once(".md") else {
                    continue;
                };
                let path = root.join("docs").join(format!("{doc}.md"));
                let Ok(doc_text) = fs::read_to_string(&path) else {
                    problems.push(format!("{at}: docs/{doc}.md does not exist"));
                    continue;
                };
                checked += 1;
                if let Some(slug) = section.strip_prefix('#') {
                    let slug = slug.trim_end_matches('.');
                    if !doc_text.lines().any(|l| l == format!("## {slug}")) {
                        problems.push(format!("{at}: docs/{doc}.md has no section {slug:?}"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(checked > 10, "only {checked} citations found");
}
