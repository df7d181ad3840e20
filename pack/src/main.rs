//! `cargo pack [--out <path>] [--dispatch <path>] [--check]`
//!
//! Builds the release `dispatch` fully static (glibc, `+crt-static`), checks it, and writes
//! `<name>_amd64.charm` at the repository root from `charmcraft.yaml`. See `--help`.

use std::env;
use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use charm_pack::{
    charm_entries, elf, list_zip, load_project, write_atomic, write_zip, Timestamp, CHARM_BUDGET,
    DISPATCH_BUDGET,
};

const TARGET: &str = "x86_64-unknown-linux-gnu";
const RUSTFLAGS_VAR: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS";
const RUSTFLAGS: &str = "-C target-feature=+crt-static";

const USAGE: &str = "\
usage: cargo pack [--out <path>] [--dispatch <path>] [--check] [--root <dir>]

Builds the charm's dispatch as a static release binary
(cargo build --release --locked --bin dispatch --target x86_64-unknown-linux-gnu,
with -C target-feature=+crt-static), checks it is a static ELF, and writes
<name>_amd64.charm at the repository root. metadata.yaml, config.yaml,
actions.yaml and manifest.yaml are generated from charmcraft.yaml.

options:
  --out <path>       write the charm here instead
  --dispatch <path>  pack this binary instead of building one
  --check            only validate charmcraft.yaml
  --root <dir>       the charm project (charmcraft.yaml, README.md, LICENSE) is
                     here, not in this workspace's root (for tests)
  -h, --help         show this help

Entries are stamped with SOURCE_DATE_EPOCH when set, else 1980-01-01T00:00:00Z;
identical inputs give byte-identical charms.";

#[derive(Debug, Default)]
struct Args {
    out: Option<PathBuf>,
    dispatch: Option<PathBuf>,
    root: Option<PathBuf>,
    check: bool,
}

enum Parsed {
    Run(Args),
    Help,
}

fn parse_args(mut argv: impl Iterator<Item = OsString>) -> Result<Parsed, String> {
    let mut args = Args::default();
    while let Some(arg) = argv.next() {
        let arg = arg
            .into_string()
            .map_err(|a| format!("argument {a:?} is not UTF-8"))?;
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f.to_string(), Some(v.to_string())),
            _ => (arg.clone(), None),
        };
        let mut value = |name: &str| -> Result<PathBuf, String> {
            match inline.clone().or_else(|| argv.next()?.into_string().ok()) {
                Some(v) if !v.is_empty() => Ok(PathBuf::from(v)),
                _ => Err(format!("{name} needs a path")),
            }
        };
        match flag.as_str() {
            "--out" => args.out = Some(value("--out")?),
            "--dispatch" => args.dispatch = Some(value("--dispatch")?),
            "--root" => args.root = Some(value("--root")?),
            "--check" if inline.is_none() => args.check = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            _ => return Err(format!("unknown argument {arg:?}\n\n{USAGE}")),
        }
    }
    Ok(Parsed::Run(args))
}

/// The repository root: the parent of this crate's directory.
fn repo_root() -> PathBuf {
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Runs the static release build and returns the path of the `dispatch` it produced.
fn build_dispatch(root: &Path) -> Result<PathBuf, String> {
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let args = [
        "build",
        "--release",
        "--locked",
        "--bin",
        "dispatch",
        "--target",
        TARGET,
    ];
    eprintln!(
        "cargo pack: {RUSTFLAGS_VAR}=\"{RUSTFLAGS}\" cargo {}",
        args.join(" ")
    );
    for var in ["RUSTFLAGS", "CARGO_ENCODED_RUSTFLAGS"] {
        if env::var_os(var).is_some() {
            eprintln!("cargo pack: note: ignoring {var} (it would replace {RUSTFLAGS_VAR})");
        }
    }
    let mut child = Command::new(&cargo)
        .current_dir(root)
        .args(args)
        .arg("--message-format=json-render-diagnostics")
        .env(RUSTFLAGS_VAR, RUSTFLAGS)
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("running {}: {e}", cargo.to_string_lossy()))?;
    let mut executable = None;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(|e| format!("reading cargo's output: {e}"))?;
            let Ok(msg) = serde_json::from_str::<serde_json::Value>(&line) else {
                continue;
            };
            if msg["reason"] == "compiler-artifact" && msg["target"]["name"] == "dispatch" {
                if let Some(exe) = msg["executable"].as_str() {
                    executable = Some(PathBuf::from(exe));
                }
            }
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for cargo: {e}"))?;
    if !status.success() {
        return Err(format!("the release build of dispatch failed ({status})"));
    }
    executable.ok_or_else(|| "cargo reported no `dispatch` executable".to_string())
}

fn run(args: Args) -> Result<(), String> {
    let root = args.root.unwrap_or_else(repo_root);
    let project = load_project(&root)?;
    if args.check {
        let bases: Vec<String> = project
            .bases
            .iter()
            .map(|b| format!("{}@{}:{}", b.name, b.channel, b.architectures.join(",")))
            .collect();
        println!(
            "charmcraft.yaml: OK (charm {}, bases {})",
            project.name,
            bases.join(" ")
        );
        return Ok(());
    }
    let time = Timestamp::from_env()?;
    let dispatch_path = match args.dispatch {
        Some(path) => path,
        None => build_dispatch(&root)?,
    };
    let dispatch =
        fs::read(&dispatch_path).map_err(|e| format!("{}: {e}", dispatch_path.display()))?;
    let elf = elf::check_static(&dispatch)
        .map_err(|e| format!("{}: not a static executable: {e}", dispatch_path.display()))?;
    let dispatch_size = dispatch.len() as u64;
    println!("dispatch: {}", dispatch_path.display());
    println!(
        "  {} ELF x86-64, {}: {dispatch_size} bytes ({}; budget {})",
        if elf.pie { "static-pie" } else { "static" },
        if elf.has_symtab {
            "NOT stripped"
        } else {
            "stripped"
        },
        mb(dispatch_size),
        mb(DISPATCH_BUDGET)
    );

    let out = args
        .out
        .unwrap_or_else(|| root.join(format!("{}_amd64.charm", project.name)));
    let entries = charm_entries(&project, &root, dispatch, &time)?;
    let zip = write_zip(&entries, &time)?;
    let listed = list_zip(&zip)?;
    println!("{}:", out.display());
    println!("  {:>6}  {:>9}  {:>10}  name", "mode", "size", "compressed");
    for e in &listed {
        let mode = e
            .mode
            .map(|m| format!("{:04o}", m & 0o7777))
            .unwrap_or_else(|| "?".into());
        println!(
            "  {mode:>6}  {:>9}  {:>10}  {}",
            e.size, e.compressed, e.name
        );
    }
    let charm_size = zip.len() as u64;
    let unpacked: u64 = listed.iter().map(|e| e.size).sum();
    println!(
        "  total: {} entries, {unpacked} bytes unpacked; charm {charm_size} bytes ({}; budget {})",
        listed.len(),
        mb(charm_size),
        mb(CHARM_BUDGET)
    );

    let mut over = Vec::new();
    if dispatch_size > DISPATCH_BUDGET {
        over.push(format!(
            "dispatch is {dispatch_size} bytes, over its budget of {DISPATCH_BUDGET} bytes"
        ));
    }
    if charm_size > CHARM_BUDGET {
        over.push(format!(
            "the .charm is {charm_size} bytes, over its budget of {CHARM_BUDGET} bytes"
        ));
    }
    if !over.is_empty() {
        return Err(format!(
            "over budget: {}; no charm written",
            over.join("; ")
        ));
    }
    write_atomic(&out, &zip)?;
    println!("wrote {} ({charm_size} bytes)", out.display());
    Ok(())
}

fn main() -> ExitCode {
    let result = match parse_args(env::args_os().skip(1)) {
        Ok(Parsed::Help) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Ok(Parsed::Run(args)) => run(args),
        Err(e) => Err(e),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cargo pack: error: {e}");
            ExitCode::FAILURE
        }
    }
}
