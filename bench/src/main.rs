//! `cargo bench-charm [--rounds N] [--update-status N] [--rss-every N]`
//!
//! Runs the Rust charm's packed `dispatch` and the ops tutorial charm (bench/baseline) through
//! the same hook sequences, interleaved hook by hook, each on its own simulated unit with
//! the test fakes (compiled `fake-juju` hook tools and `snap`, fake snapd + microsample),
//! and reports per-hook latency, memory, hook-tool calls, snapd requests and sizes against
//! the budgets. See bench/README.md.

mod chart;
mod launch;
mod prepare;
mod report;
mod unit;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use report::{RunInfo, Sample};
use unit::{Kind, Unit};

const USAGE: &str = "\
usage: cargo bench-charm [--rounds N] [--update-status N] [--rss-every N]

Builds the Rust charm (cargo pack), the test fakes and the ops baseline's venv, then
runs both charms through: install, leader-elected, config-changed, start;
channel=beta + config-changed; update-status x N; upgrade-charm + config-changed,
interleaved hook by hook, for N rounds (+1 warm-up). Prints a Markdown table and
writes target/bench/results.json, results.md and latency.png. Exits 1 if a budget
is missed (FAIL) or a hook misbehaves.

options:
  --rounds N          measured rounds (default 40)
  --update-status N   update-status hooks per round (default 5)
  --rss-every N       every Nth round runs the dispatch processes under ptrace to read
                      their own peak RSS; those rounds give the RSS figures and are left
                      out of the timings (default 4; 0: never, RSS from wait4 only)
  -h, --help          this help";

struct Args {
    rounds: usize,
    update_status: usize,
    /// 0: never trace.
    rss_every: usize,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        rounds: 40,
        update_status: 5,
        rss_every: 4,
    };
    let mut argv = std::env::args().skip(1);
    while let Some(arg) = argv.next() {
        let mut number = |name: &str, min: usize| -> Result<usize, String> {
            argv.next()
                .and_then(|v| v.parse().ok())
                .filter(|n| *n >= min)
                .ok_or_else(|| format!("{name} needs a number >= {min}"))
        };
        match arg.as_str() {
            "--rounds" => args.rounds = number("--rounds", 1)?,
            "--update-status" => args.update_status = number("--update-status", 1)?,
            "--rss-every" => args.rss_every = number("--rss-every", 0)?,
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

/// One step of a round.
enum Step {
    /// Runs `hook` on both units; reported as `label`.
    Hook { hook: &'static str, label: String },
    /// `juju config` on both units.
    Config(&'static str, Value),
}

fn hook(hook: &'static str, label: &str) -> Step {
    Step::Hook {
        hook,
        label: label.to_string(),
    }
}

/// Deploy; `juju config channel=beta`; update-status x n; `juju refresh`.
fn sequence(update_status: usize) -> Vec<Step> {
    let mut steps = vec![
        hook("install", "install"),
        hook("leader-elected", "leader-elected"),
        hook("config-changed", "config-changed (deploy)"),
        hook("start", "start"),
        Step::Config("channel", json!("beta")),
        hook("config-changed", "config-changed (channel=beta)"),
    ];
    steps.extend((0..update_status).map(|_| hook("update-status", "update-status")));
    steps.push(hook("upgrade-charm", "upgrade-charm"));
    steps.push(hook("config-changed", "config-changed (after upgrade)"));
    steps
}

/// `2026-11-26 10:40 UTC`.
fn date_utc() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (year, month, day) = microsample_e2e::http::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rem / 3600,
        rem % 3600 / 60
    )
}

/// `Intel(R) Xeon(R) Processor, 2 CPUs, 23.4 GiB, Linux 6.18, Debian GNU/Linux 12`.
fn machine() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|v| v.trim_start_matches([' ', '\t', ':']).trim().to_string())
        .unwrap_or_else(|| "unknown CPU".into());
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_kib: f64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_string();
    let os = read("/etc/os-release")
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim_matches('"').to_string())
        .unwrap_or_default();
    format!(
        "{cpu}, {cpus} CPUs, {:.1} GiB RAM, Linux {kernel}, {os}",
        mem_kib / 1024.0 / 1024.0
    )
}

/// Checks what a round left behind: both charms report `Ready at 'beta'`, snapd tracks
/// `latest/beta`, and microsample answers on the unit's port.
fn check_round(unit: &Unit) -> Result<(), String> {
    let name = unit.kind.name();
    let status = unit.status()?;
    if status != ("active".to_string(), "Ready at 'beta'".to_string()) {
        return Err(format!("{name}: final status {status:?}"));
    }
    let tracking = unit.tracking_channel()?;
    if tracking.as_deref() != Some("latest/beta") {
        return Err(format!("{name}: snapd tracks {tracking:?}"));
    }
    if !unit.workload_online() {
        return Err(format!(
            "{name}: microsample not Online on port {}",
            unit.workload_port
        ));
    }
    Ok(())
}

fn bench(args: &Args) -> Result<bool, String> {
    let paths = prepare::Paths::discover();
    let prepared = prepare::prepare(&paths)?;
    let steps = sequence(args.update_status);
    let events: Vec<(String, String)> = {
        let mut seen: Vec<(String, String)> = Vec::new();
        for step in &steps {
            if let Step::Hook { hook, label } = step {
                if !seen.iter().any(|(l, _)| l == label) {
                    seen.push((label.clone(), hook.to_string()));
                }
            }
        }
        seen
    };
    let work = std::env::temp_dir().join(format!("charm-bench-{}", std::process::id()));
    let mut samples: Vec<Sample> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let started = Instant::now();
    for round in 0..=args.rounds {
        let measured = round > 0;
        let traced = args.rss_every > 0 && round > 0 && round % args.rss_every == 0;
        let round_start = Instant::now();
        let mut rust = Unit::new(
            &prepared.rust,
            work.join("rust"),
            &prepared.fake_juju,
            |port| {
                // The workload listens where microsample's install hook puts it; the Rust
                // charm is deployed with that port (`--config port=<p>`) so it has no
                // reason to move the service. The ops charm ignores ports.
                let mut c = Map::new();
                c.insert("channel".into(), json!("edge"));
                c.insert("port".into(), json!(port));
                c
            },
        )?;
        let mut ops = Unit::new(&prepared.ops, work.join("ops"), &prepared.fake_juju, |_| {
            let mut c = Map::new();
            c.insert("channel".into(), json!("edge"));
            c
        })?;
        for step in &steps {
            match step {
                Step::Config(key, value) => {
                    rust.set_config(key, value.clone())?;
                    ops.set_config(key, value.clone())?;
                }
                Step::Hook { hook, label } => {
                    // Alternate which charm goes first, so neither always runs on a cache
                    // the other warmed.
                    let order: [&mut Unit; 2] = if round % 2 == 0 {
                        [&mut rust, &mut ops]
                    } else {
                        [&mut ops, &mut rust]
                    };
                    for unit in order {
                        let run = unit.run_hook(hook, traced)?;
                        let l = &run.launched;
                        if l.exit != Some(0) || l.timed_out {
                            problems.push(format!(
                                "round {round}: {} {label} exited {:?} (signal {:?}, timed out: {}); stderr:\n{}",
                                unit.kind.name(),
                                l.exit,
                                l.signal,
                                l.timed_out,
                                run.stderr.trim_end()
                            ));
                        }
                        if !measured {
                            continue;
                        }
                        let wall_us = l.wall.as_micros() as u64;
                        let snap_us = run.snap_time.as_micros() as u64;
                        samples.push(Sample {
                            round,
                            traced,
                            event: label.clone(),
                            hook: hook.to_string(),
                            charm: unit.kind.name(),
                            wall_us,
                            snap_us,
                            excl_snap_us: wall_us.saturating_sub(snap_us),
                            tool_calls: run.tool_calls,
                            snap_calls: run.snap_calls,
                            snapd_requests: run.snapd_requests,
                            own_peak_kib: l.own_peak_kib,
                            ru_maxrss_kib: l.ru_maxrss_kib,
                            exit: l.exit,
                        });
                    }
                }
            }
        }
        for unit in [&rust, &ops] {
            if let Err(e) = check_round(unit) {
                problems.push(format!("round {round}: {e}"));
            }
        }
        let total = |kind: Kind| -> f64 {
            samples
                .iter()
                .filter(|s| s.round == round && s.charm == kind.name())
                .map(|s| s.wall_us as f64 / 1e6)
                .sum()
        };
        eprintln!(
            "bench: round {round}/{}{} in {:.1} s (hooks: ops {:.2} s, Rust {:.3} s)",
            args.rounds,
            if !measured {
                " (warm-up)"
            } else if traced {
                " (ptrace: RSS)"
            } else {
                ""
            },
            round_start.elapsed().as_secs_f64(),
            total(Kind::Ops),
            total(Kind::Rust),
        );
        if problems.len() > 20 {
            break;
        }
    }
    let _ = std::fs::remove_dir_all(&work);
    eprintln!(
        "bench: {} hook runs in {:.0} s",
        samples.len(),
        started.elapsed().as_secs_f64()
    );

    let reports = report::summarize(&events, &samples);
    let info = RunInfo {
        date_utc: date_utc(),
        machine: machine(),
        rounds: args.rounds,
        update_status_per_round: args.update_status,
        rss_every: args.rss_every,
    };
    let mut md = report::markdown(&info, &prepared.artifacts, &reports);
    if !problems.is_empty() {
        md.push_str(&format!(
            "\nFAIL: {} hook run(s) or round check(s) went wrong:\n\n",
            problems.len()
        ));
        for p in &problems {
            md.push_str(&format!("- {}\n", p.replace('\n', "\n  ")));
        }
    }
    println!("{md}");

    let out = &paths.out;
    let results = json!({
        "info": info,
        "setup": {
            "rust_charm": "microsample_amd64.charm as packed by `cargo pack`, unzipped; config channel=edge, port=<the workload's port>",
            "ops_charm": "bench/baseline (the ops tutorial's final charm) with target/bench/venv; config channel=edge",
            "fakes": "target/release/fake-juju: hook tools, snap CLI, fake snapd + microsample workload; one snapd per unit per round",
            "excl_snap": "wall time minus the elapsed_us the fake snap CLI records for itself",
            "own_peak": "VmHWM of the dispatch process read at its ptrace exit stop (traced rounds only; their timings are not used)",
            "ru_maxrss": "wait4 ru_maxrss: max of the process and the children it reaped",
        },
        "budgets": {
            "speedup_excl_snap_at_least": report::SPEEDUP_BUDGET,
            "rss_ratio_at_least": report::RSS_BUDGET,
            "rust_tool_calls_at_most": "ops's",
        },
        "artifacts": prepared.artifacts,
        "events": reports,
        "failures": report::failures(&reports),
        "problems": problems,
        "samples": samples,
    });
    let write = |name: &str, data: &[u8]| -> Result<PathBuf, String> {
        let path = out.join(name);
        std::fs::write(&path, data).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let json_path = write(
        "results.json",
        &serde_json::to_vec_pretty(&results).map_err(|e| e.to_string())?,
    )?;
    write("results.md", md.as_bytes())?;
    let png = out.join("latency.png");
    let subtitle = format!(
        "{}; {}; {} rounds; ops {} / Python {} vs the packed Rust dispatch",
        info.date_utc,
        info.machine,
        info.rounds,
        prepared.artifacts.ops_version,
        prepared.artifacts.python_version
    );
    let chart = chart::draw(&png, &reports, &subtitle);
    eprintln!("bench: wrote {}", json_path.display());
    match &chart {
        Ok(()) => eprintln!("bench: wrote {}", png.display()),
        Err(e) => eprintln!("bench: FAIL: {e}"),
    }
    Ok(report::failures(&reports).is_empty() && problems.is_empty() && chart.is_ok())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(Some(args)) => args,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match bench(&args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: FAIL: {e}");
            ExitCode::FAILURE
        }
    }
}
