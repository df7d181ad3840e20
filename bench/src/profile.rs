//! `cargo bench-charm --profile <hook>`: where the Rust charm's own CPU goes.
//!
//! Builds `dispatch` as `cargo pack` does (static, release profile: same optimisation and
//! LTO) but with symbols, line tables and frame pointers, in `target/bench/profile-build`;
//! deploys a unit with it (deploy, then the `cos-agent` relation, as the rounds do); runs
//! `perf record -F <freq> -g` around a shell loop that runs the hook `--profile-runs`
//! times with the hook's environment; and reads `perf script` back: samples of the charm
//! processes only (not the children they spawn, which carry the name `dispatch` until
//! their own `exec`, nor perf's own work of cloning its counters into each child), as self
//! time by symbol, inclusive time by charm function, and kernel time by system call.
//! `perf.data` stays in `target/bench/` for `perf report -i`.
//!
//! Sampling distorts what it measures here: every context switch of a sampled task costs
//! more (on the VM of the README, `finish_task_switch` collects the samples delayed while
//! switching), so the absolute figures run about twice the schedstat ones; the shares
//! point at the costs. (A `perf record --no-inherit` around each run avoids the cloned
//! counters but takes a second per run here, and shows the same shares.)

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use crate::launch::Trace;
use crate::prepare::{Paths, Prepared};
use crate::unit::{CharmSource, Unit, COS_APP, COS_RELATION, COS_UNIT};
use microsample_e2e::juju_unit;

/// The static target and flags of `cargo pack` (pack/src/main.rs), plus frame pointers.
const TARGET: &str = "x86_64-unknown-linux-gnu";
const RUSTFLAGS_VAR: &str = "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS";
const RUSTFLAGS: &str = "-C target-feature=+crt-static -C force-frame-pointers=yes";

/// `'text'` for sh.
fn sh_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// The profiled `dispatch`: like the packed one, with symbols.
fn build(paths: &Paths) -> Result<PathBuf, String> {
    let target_dir = paths.out.join("profile-build");
    eprintln!(
        "bench: building dispatch with symbols and frame pointers in {}",
        target_dir.display()
    );
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let status = Command::new(cargo)
        .current_dir(&paths.repo)
        .args([
            "build",
            "--release",
            "--quiet",
            "--locked",
            "--bin",
            "dispatch",
        ])
        .args(["--target", TARGET, "--target-dir"])
        .arg(&target_dir)
        .env(RUSTFLAGS_VAR, RUSTFLAGS)
        .env("CARGO_PROFILE_RELEASE_STRIP", "false")
        .env("CARGO_PROFILE_RELEASE_DEBUG", "line-tables-only")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .stdin(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("the profiling build of dispatch failed ({status})"));
    }
    Ok(target_dir.join(TARGET).join("release").join("dispatch"))
}

pub fn run(
    paths: &Paths,
    prepared: &Prepared,
    hook: &str,
    runs: usize,
    frequency: u32,
) -> Result<(), String> {
    let dispatch = build(paths)?;
    let mut charm: CharmSource = prepared.rust.clone();
    for entry in &mut charm.entries {
        if entry.0 == "dispatch" {
            entry.1 = dispatch.clone();
        }
    }
    let work = std::env::temp_dir().join(format!("charm-bench-profile-{}", std::process::id()));
    let mut unit = Unit::new(
        &charm,
        work.join("rust"),
        &prepared.fake_juju,
        crate::unit::rust_config,
    )?;
    unit.deploy().map_err(|e| format!("profile: {e}"))?;
    let cos = juju_unit::relation_vars(COS_RELATION, COS_APP, COS_UNIT);
    unit.relate_cos()?;
    let run = unit.run_hook("cos-agent-relation-joined", &cos, Trace::No)?;
    if run.launched.exit != Some(0) {
        return Err(format!(
            "profile: cos-agent-relation-joined failed: {}",
            run.stderr.trim_end()
        ));
    }
    let extra = if hook.starts_with("cos-agent-relation-") {
        cos
    } else {
        Vec::new()
    };
    // One shell loop under one `perf record`: perf forks, so its counters are cloned into
    // every child the charm spawns (`perf_event_init_task`, counted apart below).
    let env = unit.hook_env(hook, &extra);
    let mut script = String::new();
    for (k, v) in &env {
        script.push_str(&format!("export {k}={}\n", sh_quote(v)));
    }
    script.push_str(&format!(
        "i=0\nwhile [ $i -lt {runs} ]; do\n  ./dispatch >/dev/null 2>&1 || exit 1\n  i=$((i + 1))\ndone\n"
    ));
    let data = paths.out.join("perf.data");
    eprintln!("bench: perf record -F {frequency} -g around {runs} runs of {hook}");
    let status = Command::new("perf")
        .args(["record", "-q", "-F", &frequency.to_string(), "-g", "-o"])
        .arg(&data)
        .args(["--", "/bin/sh", "-c", &script])
        .env_clear()
        .current_dir(unit.charm_dir())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run perf: {e}"))?;
    drop(unit);
    let _ = std::fs::remove_dir_all(&work);
    if !status.success() {
        return Err(format!("perf record failed ({status})"));
    }
    let out = Command::new("perf")
        .args(["script", "-i"])
        .arg(&data)
        .args(["--comm", "dispatch", "-F", "comm,pid,tid,period,ip,sym"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run perf script: {e}"))?;
    let script = String::from_utf8_lossy(&out.stdout);
    let profile = analyze(&script);
    println!("{}", markdown(&profile, hook, runs, frequency));
    eprintln!("bench: perf data in {}", data.display());
    Ok(())
}

/// One sample of `perf script`: pid, period (ns of CPU for `cpu-clock`), frames leaf first.
#[derive(Debug, Clone, PartialEq)]
struct Sample {
    pid: u32,
    period: u64,
    frames: Vec<String>,
}

/// The samples of `perf script -F comm,pid,tid,period,ip,sym` output (with call chains).
fn samples(script: &str) -> Vec<Sample> {
    let mut out: Vec<Sample> = Vec::new();
    for line in script.lines() {
        if line.trim().is_empty() {
            continue;
        }
        if line.starts_with(|c: char| c.is_whitespace()) {
            if let Some(sample) = out.last_mut() {
                // `\t<address> <symbol>`: the symbol may hold spaces.
                let frame = line.trim_start();
                let symbol = frame.split_once(' ').map_or("[unknown]", |(_, s)| s.trim());
                sample.frames.push(symbol.to_string());
            }
            continue;
        }
        // `<comm> <pid>/<tid> <period>`: the comm may hold spaces, so from the right.
        let mut fields = line.split_whitespace().rev();
        let period = fields.next().and_then(|p| p.parse().ok());
        let pid = fields
            .next()
            .and_then(|t| t.split('/').next())
            .and_then(|p| p.parse().ok());
        if let (Some(period), Some(pid)) = (period, pid) {
            out.push(Sample {
                pid,
                period,
                frames: Vec::new(),
            });
        }
    }
    out
}

/// Where the charm processes' CPU went.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    /// CPU of the charm processes, ns.
    pub charm_ns: u64,
    /// CPU of the children while still named `dispatch` (spawned, not yet `exec`ed), ns.
    pub spawned_ns: u64,
    /// perf's own work in the charm processes (cloning its counters into each child), ns.
    pub perf_ns: u64,
    /// Self time by symbol (leaf frame), ns, largest first.
    pub by_symbol: Vec<(String, u64)>,
    /// Inclusive time by charm function (`microsample_charm` in the name), ns.
    pub by_function: Vec<(String, u64)>,
    /// Inclusive kernel time by system call and page faults, ns.
    pub by_syscall: Vec<(String, u64)>,
    /// Charm processes seen.
    pub processes: usize,
}

fn sorted(map: BTreeMap<String, u64>) -> Vec<(String, u64)> {
    let mut v: Vec<(String, u64)> = map.into_iter().collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    v
}

/// A frame's symbol without its offset (`+0x17`).
fn bare(symbol: &str) -> &str {
    match symbol.rfind("+0x") {
        Some(i) => &symbol[..i],
        None => symbol,
    }
}

/// The system call a kernel frame is the entry of (`__x64_sys_connect`, `__do_sys_clone3`,
/// `__se_sys_wait4`: `connect`, `clone3`, `wait4`), or `page fault`.
fn syscall(frame: &str) -> Option<&str> {
    if frame == "asm_exc_page_fault" {
        return Some("page fault");
    }
    ["__x64_sys_", "__do_sys_", "__se_sys_"]
        .iter()
        .find_map(|p| frame.strip_prefix(p))
}

/// The function a child of the charm's runner runs between its `clone` and its `exec`.
const CHILD_FN: &str = "microsample_charm::process::child";

/// Splits the samples: processes that ran the charm's code (or libc's start) are the
/// charm's; the others are children before their `exec`. perf's own work is set apart.
pub fn analyze(script: &str) -> Profile {
    let samples = samples(script);
    // A charm process runs the charm's code; a spawned child, before its exec, does not,
    // except the one function the child runner starts it in (src/process.rs: it shares
    // the charm's memory until its exec, without vfork).
    let spawned: BTreeSet<u32> = samples
        .iter()
        .filter(|s| s.frames.iter().any(|f| bare(f) == CHILD_FN))
        .map(|s| s.pid)
        .collect();
    let charm: BTreeSet<u32> = samples
        .iter()
        .filter(|s| {
            s.frames.iter().any(|f| {
                let f = bare(f);
                f.contains("microsample_charm") || f == "__libc_start_main_impl"
            })
        })
        .map(|s| s.pid)
        .filter(|pid| !spawned.contains(pid))
        .collect();
    let mut profile = Profile::default();
    let (mut by_symbol, mut by_function, mut by_syscall) =
        (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
    let mut charm_pids = BTreeSet::new();
    for s in &samples {
        if !charm.contains(&s.pid) {
            profile.spawned_ns += s.period;
            continue;
        }
        if s.frames.iter().any(|f| bare(f) == "perf_event_init_task") {
            profile.perf_ns += s.period;
            continue;
        }
        charm_pids.insert(s.pid);
        profile.charm_ns += s.period;
        let leaf = s.frames.first().map_or("[unknown]", |f| bare(f));
        *by_symbol.entry(leaf.to_string()).or_insert(0) += s.period;
        let mut seen = BTreeSet::new();
        let mut seen_calls = BTreeSet::new();
        for frame in &s.frames {
            let name = bare(frame);
            if !seen.insert(name) {
                continue; // recursion: once per sample
            }
            if name.contains("microsample_charm") {
                *by_function.entry(name.to_string()).or_insert(0) += s.period;
            }
            if let Some(call) = syscall(name) {
                if seen_calls.insert(call) {
                    *by_syscall.entry(call.to_string()).or_insert(0) += s.period;
                }
            }
        }
    }
    profile.processes = charm_pids.len();
    profile.by_symbol = sorted(by_symbol);
    profile.by_function = sorted(by_function);
    profile.by_syscall = sorted(by_syscall);
    profile
}

/// The profile as Markdown: µs per run and share of the charm processes' CPU.
pub fn markdown(p: &Profile, hook: &str, runs: usize, frequency: u32) -> String {
    let mut md = String::new();
    let runs = runs.max(1) as f64;
    let us = |ns: u64| ns as f64 / 1e3 / runs;
    let share = |ns: u64| 100.0 * ns as f64 / p.charm_ns.max(1) as f64;
    let _ = writeln!(
        md,
        "Profile of `{hook}`: {runs} runs under `perf record -F {frequency} -g`; {} charm processes, {:.0} µs of CPU per run (kernel and user, the `dispatch` process alone, from its `exec` to the end of its exit; sampling inflates it, see bench/src/profile.rs), not counting {:.0} µs per run of perf cloning its counters into children, nor {:.0} µs per run in the children before their `exec`.\n",
        p.processes,
        us(p.charm_ns),
        us(p.perf_ns),
        us(p.spawned_ns)
    );
    let mut table = |title: &str, rows: &[(String, u64)], n: usize| {
        let _ = writeln!(
            md,
            "**{title}**\n\n| µs per run | share | symbol |\n|---:|---:|---|"
        );
        for (name, ns) in rows.iter().take(n) {
            let _ = writeln!(md, "| {:.1} | {:.1}% | `{}` |", us(*ns), share(*ns), name);
        }
        md.push('\n');
    };
    table("Self time by symbol (leaf frame)", &p.by_symbol, 30);
    table("Inclusive time by charm function", &p.by_function, 30);
    table("Inclusive kernel time by system call", &p.by_syscall, 20);
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    const SCRIPT: &str = "\
dispatch 100/100      50000 
\tffffffff81 load_elf_binary
\t     d4ad7 __GI___execve

dispatch 100/100      50000 
\tffffffff82 _raw_spin_unlock_irq+0x17
\tffffffff83 __do_sys_clone3
\tffffffff83 __x64_sys_clone3
\t     1234 __clone3
\t     1235 microsample_charm::process::run
\t     1236 microsample_charm::run

dispatch 101/101      50000 
\tffffffff84 copy_strings.isra.0
\tffffffff85 __x64_sys_execve
\t     1237 __spawni_child
\t     1238 __clone3

dispatch 100/100      10000 
\tffffffff86 perf_event_init_task
\tffffffff87 copy_process
\t     1240 __clone3
\t     1241 microsample_charm::process::run

my dispatch 100/100      25000 
\t     1239 handle_amd
\t     123a init_cacheinfo
\t     123b __libc_start_main_impl

dispatch 102/102      30000 
\tffffffff84 copy_strings.isra.0
\tffffffff85 __x64_sys_execve
\t     1242 microsample_charm::process::child
\t     1243 clone
";

    #[test]
    fn charm_and_spawned_samples_apart() {
        let s = samples(SCRIPT);
        assert_eq!(s.len(), 6);
        assert_eq!(s[1].frames[0], "_raw_spin_unlock_irq+0x17");
        assert_eq!(s[4].pid, 100);
        let p = analyze(SCRIPT);
        assert_eq!(p.processes, 1);
        assert_eq!(p.charm_ns, 125_000);
        assert_eq!(p.spawned_ns, 80_000);
        assert_eq!(p.perf_ns, 10_000);
        assert_eq!(
            p.by_symbol,
            [
                ("_raw_spin_unlock_irq".to_string(), 50_000),
                ("load_elf_binary".to_string(), 50_000),
                ("handle_amd".to_string(), 25_000),
            ]
        );
        assert_eq!(
            p.by_function,
            [
                ("microsample_charm::process::run".to_string(), 50_000),
                ("microsample_charm::run".to_string(), 50_000),
            ]
        );
        assert_eq!(p.by_syscall, [("clone3".to_string(), 50_000)]);
        assert_eq!(syscall("__se_sys_wait4"), Some("wait4"));
        assert_eq!(syscall("asm_exc_page_fault"), Some("page fault"));
        assert_eq!(syscall("do_wait"), None);
        let md = markdown(&p, "update-status", 2, 20_000);
        assert!(md.contains("62 µs of CPU per run"), "{md}");
        assert!(
            md.contains("| 25.0 | 40.0% | `_raw_spin_unlock_irq` |"),
            "{md}"
        );
    }
}
