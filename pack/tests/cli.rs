//! End-to-end runs of the `charm-pack` binary (what `cargo pack` runs) with `--dispatch`, so
//! no release build is needed: exit codes, messages, budgets, and that a failed run writes
//! no `.charm`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::fake_elf;

const CHARMCRAFT_YAML: &str = include_str!("../../charmcraft.yaml");

/// `n` bytes that deflate cannot shrink (xorshift).
fn noise(n: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

struct Project {
    dir: tempfile::TempDir,
}

impl Project {
    fn new(charmcraft_yaml: &str) -> Project {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("charmcraft.yaml"), charmcraft_yaml).unwrap();
        fs::write(dir.path().join("README.md"), "# test\n").unwrap();
        fs::write(dir.path().join("LICENSE"), "license\n").unwrap();
        Project { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn dispatch(&self, bytes: &[u8]) -> PathBuf {
        let p = self.path("dispatch-bin");
        fs::write(&p, bytes).unwrap();
        p
    }

    fn pack(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_charm-pack"))
            .arg("--root")
            .arg(self.dir.path())
            .args(args)
            .env_remove("SOURCE_DATE_EPOCH")
            .output()
            .unwrap()
    }

    fn charms(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".charm"))
            .collect();
        v.sort();
        v
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn p(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[test]
fn packs_reproducibly_and_reports_entries() {
    let project = Project::new(CHARMCRAFT_YAML);
    let dispatch = project.dispatch(&fake_elf(&[0x90; 1000]));
    let first = project.pack(&["--dispatch", p(&dispatch)]);
    assert!(first.status.success(), "{}", stderr(&first));
    let out = stdout(&first);
    for needle in [
        "static ELF x86-64, stripped: 1120 bytes",
        "0755       1120",
        "0644",
        "metadata.yaml",
        "manifest.yaml",
        "config.yaml",
        "README.md",
        "LICENSE",
        "budget 1.50 MB",
        "wrote ",
    ] {
        assert!(out.contains(needle), "{needle:?} not in:\n{out}");
    }
    assert_eq!(project.charms(), ["microsample_amd64.charm"]);
    let a = fs::read(project.path("microsample_amd64.charm")).unwrap();
    let second = project.pack(&[
        "--dispatch",
        p(&dispatch),
        "--out",
        p(&project.path("b.charm")),
    ]);
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(a, fs::read(project.path("b.charm")).unwrap());
}

#[test]
fn bad_charmcraft_yaml_fails_naming_the_key_and_writes_nothing() {
    let yaml = CHARMCRAFT_YAML.replace("      type: int\n", "");
    let project = Project::new(&yaml);
    let dispatch = project.dispatch(&fake_elf(b""));
    for args in [vec!["--check"], vec!["--dispatch", p(&dispatch)]] {
        let o = project.pack(&args);
        assert_eq!(o.status.code(), Some(1));
        assert!(
            stderr(&o)
                .contains("charmcraft.yaml: config.options.port: missing required key \"type\""),
            "{}",
            stderr(&o)
        );
    }
    assert!(project.charms().is_empty());
}

#[test]
fn check_only_validates() {
    let project = Project::new(CHARMCRAFT_YAML);
    let o = project.pack(&["--check"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("charmcraft.yaml: OK"));
    assert!(project.charms().is_empty());
}

#[test]
fn dynamic_dispatch_is_refused() {
    let project = Project::new(CHARMCRAFT_YAML);
    let mut elf = fake_elf(b"/lib64/ld-linux-x86-64.so.2\0");
    elf[0x40] = 3; // PT_INTERP
    elf[0x48] = 0x78; // p_offset: the payload
    elf[0x60] = 28; // p_filesz
    let dispatch = project.dispatch(&elf);
    let o = project.pack(&["--dispatch", p(&dispatch)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("PT_INTERP"), "{}", stderr(&o));
    assert!(project.charms().is_empty());
}

#[test]
fn over_budget_fails_saying_which() {
    let project = Project::new(CHARMCRAFT_YAML);
    // Incompressible 2 MB: dispatch within its 2.5 MB budget, the .charm over its 1.5 MB.
    let dispatch = project.dispatch(&fake_elf(&noise(2_000_000)));
    let o = project.pack(&["--dispatch", p(&dispatch)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("the .charm is") && err.contains("over its budget of 1500000"),
        "{err}"
    );
    assert!(!err.contains("dispatch is"), "{err}");
    assert!(project.charms().is_empty());

    let dispatch = project.dispatch(&fake_elf(&vec![0; 2_600_000]));
    let o = project.pack(&["--dispatch", p(&dispatch)]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("dispatch is") && err.contains("over its budget of 2500000"),
        "{err}"
    );
    assert!(project.charms().is_empty());
}

#[test]
fn source_date_epoch_is_used() {
    let project = Project::new(CHARMCRAFT_YAML);
    let dispatch = project.dispatch(&fake_elf(b""));
    let o = Command::new(env!("CARGO_BIN_EXE_charm-pack"))
        .args(["--root", p(project.dir.path()), "--dispatch", p(&dispatch)])
        .env("SOURCE_DATE_EPOCH", "1700000000")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let bytes = fs::read(project.path("microsample_amd64.charm")).unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
    let mut manifest = String::new();
    std::io::Read::read_to_string(&mut zip.by_name("manifest.yaml").unwrap(), &mut manifest)
        .unwrap();
    assert!(
        manifest.starts_with("charmcraft-started-at: '2023-11-14T22:13:20Z'\n"),
        "{manifest}"
    );
    let dispatch_time = zip.by_name("dispatch").unwrap().last_modified().unwrap();
    assert_eq!(
        (
            dispatch_time.year(),
            dispatch_time.month(),
            dispatch_time.day()
        ),
        (2023, 11, 14)
    );
    let o = project.pack(&[
        "--dispatch",
        p(&dispatch),
        "--out",
        p(&project.path("d.charm")),
    ]);
    assert!(o.status.success());
    assert_ne!(bytes, fs::read(project.path("d.charm")).unwrap());
}

#[test]
fn usage_errors() {
    let project = Project::new(CHARMCRAFT_YAML);
    let o = project.pack(&["--bogus"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown argument \"--bogus\""));
    let o = project.pack(&["--out"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--out needs a path"));
    let o = project.pack(&["--help"]);
    assert!(o.status.success());
    assert!(stdout(&o).starts_with("usage: cargo pack"));
}
