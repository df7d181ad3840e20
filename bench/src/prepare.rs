//! Everything the runs need, built by the bench itself: the packed Rust charm
//! (`cargo pack`), the fakes (`fake-juju`, release), the ops baseline's venv (from PyPI),
//! and the two charm directories.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::unit::{CharmSource, Kind};

/// Repository paths.
#[derive(Debug, Clone)]
pub struct Paths {
    pub repo: PathBuf,
    pub target: PathBuf,
    /// `target/bench`: outputs and the venv.
    pub out: PathBuf,
    pub baseline: PathBuf,
}

impl Paths {
    pub fn discover() -> Paths {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("bench/ has a parent")
            .to_path_buf();
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .map(|t| if t.is_absolute() { t } else { repo.join(t) })
            .unwrap_or_else(|| repo.join("target"));
        Paths {
            out: target.join("bench"),
            baseline: repo.join("bench").join("baseline"),
            repo,
            target,
        }
    }
}

/// Sizes of what each charm ships.
#[derive(Debug, Clone, Serialize)]
pub struct Artifacts {
    /// The Rust `dispatch` as packed (static, stripped), bytes.
    pub rust_dispatch_bytes: u64,
    /// `microsample_amd64.charm`, bytes.
    pub rust_charm_bytes: u64,
    /// The Rust charm unpacked, bytes.
    pub rust_unpacked_bytes: u64,
    /// A `.charm` of the ops baseline as charmcraft lays it out (dispatch, metadata,
    /// config, src/, venv/ with the requirements' site-packages), deflated, bytes.
    pub ops_charm_bytes: u64,
    /// The same unpacked, bytes.
    pub ops_unpacked_bytes: u64,
    /// Python and ops versions of the baseline.
    pub python_version: String,
    pub ops_version: String,
}

/// What the runs use.
pub struct Prepared {
    pub fake_juju: PathBuf,
    pub rust: CharmSource,
    pub ops: CharmSource,
    pub artifacts: Artifacts,
}

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string())
}

/// Runs a command, showing its output only when it fails.
fn run_quiet(command: &mut Command, what: &str) -> Result<String, String> {
    let out = command
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{what} failed ({}):\n{stdout}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(stdout)
}

/// The interpreter for the baseline: `$BENCH_PYTHON`, else the system's `/usr/bin/python3`
/// (what an Ubuntu unit runs charms with), else `python3` on PATH.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BENCH_PYTHON") {
        return PathBuf::from(p);
    }
    let system = PathBuf::from("/usr/bin/python3");
    if system.exists() {
        system
    } else {
        PathBuf::from("python3")
    }
}

/// Builds everything and lays out both charms.
pub fn prepare(paths: &Paths) -> Result<Prepared, String> {
    fs::create_dir_all(&paths.out).map_err(|e| format!("cannot create target/bench: {e}"))?;

    eprintln!("bench: cargo pack (the static release dispatch and the .charm)");
    run_quiet(
        Command::new(cargo()).arg("pack").current_dir(&paths.repo),
        "cargo pack",
    )?;
    let charm_file = paths.repo.join("microsample_amd64.charm");

    eprintln!("bench: cargo build --release -p microsample-e2e --bin fake-juju (the test fakes)");
    run_quiet(
        Command::new(cargo())
            .args([
                "build",
                "--release",
                "--quiet",
                "--package",
                "microsample-e2e",
                "--bin",
                "fake-juju",
            ])
            .current_dir(&paths.repo),
        "cargo build fake-juju",
    )?;
    let fake_juju = paths.target.join("release").join("fake-juju");

    let venv = paths.out.join("venv");
    ensure_venv(paths, &venv)?;

    // The Rust charm directory: the packed .charm, unzipped as Juju does.
    let rust_dir = paths.out.join("rust-charm");
    let _ = fs::remove_dir_all(&rust_dir);
    run_quiet(
        Command::new(python())
            .args(["-c", UNZIP])
            .arg(&charm_file)
            .arg(&rust_dir),
        "unzip microsample_amd64.charm",
    )?;
    let rust = CharmSource {
        kind: Kind::Rust,
        entries: dir_entries(&rust_dir)?,
    };

    // The ops charm directory: bench/baseline plus the venv (linked as `.venv`, which the
    // baseline's dispatch runs).
    let mut ops_entries = dir_entries(&paths.baseline)?;
    ops_entries.retain(|(name, _)| name != "requirements.txt" && name != "README.md");
    ops_entries.push((".venv".to_string(), venv.clone()));
    let ops = CharmSource {
        kind: Kind::Ops,
        entries: ops_entries,
    };

    // The baseline as a .charm, for its size.
    let ops_charm = paths.out.join("microsample-vm_ops.charm");
    let site_packages = site_packages(&venv)?;
    let sizes = run_quiet(
        Command::new(python())
            .args(["-c", ZIP_OPS])
            .arg(&ops_charm)
            .arg(&paths.baseline)
            .arg(&site_packages),
        "zip the ops charm",
    )?;
    let ops_unpacked_bytes = sizes.trim().parse().unwrap_or(0);
    let versions = run_quiet(
        Command::new(venv.join("bin").join("python3")).args([
            "-c",
            "import sys, ops; print(sys.version.split()[0], ops.__version__)",
        ]),
        "python3 -c 'import ops'",
    )?;
    let mut versions = versions.split_whitespace().map(String::from);

    let size = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let artifacts = Artifacts {
        rust_dispatch_bytes: size(&rust_dir.join("dispatch")),
        rust_charm_bytes: size(&charm_file),
        rust_unpacked_bytes: tree_size(&rust_dir),
        ops_charm_bytes: size(&ops_charm),
        ops_unpacked_bytes,
        python_version: versions.next().unwrap_or_default(),
        ops_version: versions.next().unwrap_or_default(),
    };
    Ok(Prepared {
        fake_juju,
        rust,
        ops,
        artifacts,
    })
}

/// (name, absolute path) of each entry of a directory, sorted.
fn dir_entries(dir: &Path) -> Result<Vec<(String, PathBuf)>, String> {
    let mut entries: Vec<(String, PathBuf)> = fs::read_dir(dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(Result::ok)
        .map(|e| (e.file_name().to_string_lossy().into_owned(), e.path()))
        .collect();
    entries.sort();
    Ok(entries)
}

fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

fn site_packages(venv: &Path) -> Result<PathBuf, String> {
    let lib = venv.join("lib");
    dir_entries(&lib)?
        .into_iter()
        .map(|(_, p)| p.join("site-packages"))
        .find(|p| p.is_dir())
        .ok_or_else(|| format!("no site-packages under {}", lib.display()))
}

/// `target/bench/venv` with the baseline's requirements from PyPI; rebuilt when
/// requirements.txt or the interpreter change. pip and setuptools are removed afterwards:
/// charmcraft's `venv/` does not ship them, and setuptools' `.pth` hook would add an
/// import to every hook of the ops charm.
fn ensure_venv(paths: &Paths, venv: &Path) -> Result<(), String> {
    let requirements = paths.baseline.join("requirements.txt");
    let wanted = format!(
        "{}\n{}",
        python().display(),
        fs::read_to_string(&requirements)
            .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?
    );
    let stamp = venv.join(".bench-stamp");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(wanted.as_str()) {
        return Ok(());
    }
    eprintln!(
        "bench: {} -m venv {} and pip install -r bench/baseline/requirements.txt",
        python().display(),
        venv.display()
    );
    let _ = fs::remove_dir_all(venv);
    run_quiet(
        Command::new(python()).args(["-m", "venv"]).arg(venv),
        "python3 -m venv",
    )?;
    let py = venv.join("bin").join("python3");
    run_quiet(
        Command::new(&py)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "-r",
            ])
            .arg(&requirements),
        "pip install",
    )?;
    run_quiet(
        Command::new(&py).args([
            "-m",
            "pip",
            "uninstall",
            "--yes",
            "--quiet",
            "setuptools",
            "pip",
        ]),
        "pip uninstall",
    )?;
    fs::write(&stamp, wanted).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// Unzips a .charm, restoring the modes stored in it (as Juju does).
const UNZIP: &str = r#"
import os, sys, zipfile
charm, dest = sys.argv[1:]
with zipfile.ZipFile(charm) as z:
    for info in z.infolist():
        path = z.extract(info, dest)
        mode = (info.external_attr >> 16) & 0o7777
        if mode:
            os.chmod(path, mode)
"#;

/// Zips the ops baseline the way charmcraft lays it out; prints the unpacked size.
const ZIP_OPS: &str = r#"
import os, sys, zipfile
out, baseline, site = sys.argv[1:]
files = [(os.path.join(baseline, n), n) for n in ("dispatch", "metadata.yaml", "config.yaml")]
files.append((os.path.join(baseline, "src", "charm.py"), "src/charm.py"))
for root, dirs, names in os.walk(site):
    dirs[:] = sorted(d for d in dirs if d != "__pycache__")
    for n in sorted(names):
        full = os.path.join(root, n)
        files.append((full, os.path.join("venv", os.path.relpath(full, site))))
total = 0
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for full, name in files:
        z.write(full, name)
        total += os.path.getsize(full)
print(total)
"#;
