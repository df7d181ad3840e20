//! `cargo bench-charm [--rounds N] [--update-status N] [--overhead-runs N]`
//!
//! Runs the Rust charm's packed `dispatch` and the ops tutorial charm (bench/baseline) through
//! the same hook sequences, interleaved hook by hook with a process that does nothing
//! (`/bin/true`, the floor), each charm on its own simulated unit with the test fakes
//! (compiled `fake-juju` hook tools and `snap`, fake snapd + microsample), and reports per
//! hook the own CPU time of the `dispatch` process, its children, memory, wall time and
//! sizes against the budgets. See bench/README.md.

mod chart;
mod coordination;
mod launch;
mod measure;
mod overhead;
mod prepare;
mod profile;
mod report;
mod unit;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use launch::Trace;
use microsample_e2e::juju_unit;
use report::{EventDef, EventKind, RunInfo, Sample, FLOOR};
use unit::{HookRun, Kind, Unit};

const USAGE: &str = "\
usage: cargo bench-charm [--rounds N] [--update-status N] [--overhead-runs N]
       cargo bench-charm --profile HOOK [--profile-runs N] [--profile-freq HZ]

Builds the Rust charm (cargo pack), the test fakes and the ops baseline's venv, then
runs both charms through: install, fleet-relation-created (the peer relation appears),
leader-elected, config-changed, start, an unhandled hook; cos-agent relation joined and changed; channel=beta + config-changed;
update-status x N; the unhandled hook again; upgrade-charm + config-changed; a peer
joins: fleet relation joined and changed. Hook by hook, interleaved with /bin/true run
the same way, every process under ptrace, for N rounds (+1 warm-up). Then measures
the tracer's cost and cross-checks own CPU with perf. Prints a Markdown report and
writes target/bench/results.json, results.md and cpu.png. Exits 1 if a budget is
missed (FAIL) or a hook misbehaves.

options:
  --rounds N          measured rounds (default 40)
  --update-status N   update-status hooks per round (default 5)
  --overhead-runs N   runs of each process for the tracer-cost and perf check
                      (default 30; 0 skips it)
  --profile HOOK      instead of the benchmark: perf record -g over runs of HOOK
                      (e.g. update-status) by a dispatch built with symbols, on a
                      deployed unit related to cos-agent; prints perf report
  --profile-runs N    runs of the hook (default 500)
  --profile-freq HZ   sampling frequency (default 20000)
  --measure HOOK      instead of the benchmark: own CPU of HOOK, --rounds runs, for each
  --dispatch PATH     dispatch build given (repeatable; default the packed one)
  -h, --help          this help";

/// The hook neither charm handles.
const UNHANDLED: &str = "some-hook-juju-adds-in-2030";

struct Args {
    rounds: usize,
    update_status: usize,
    overhead_runs: usize,
    profile: Option<String>,
    profile_runs: usize,
    profile_freq: usize,
    measure: Option<String>,
    builds: Vec<std::path::PathBuf>,
}

fn parse_args() -> Result<Option<Args>, String> {
    let mut args = Args {
        rounds: 40,
        update_status: 5,
        overhead_runs: 30,
        profile: None,
        profile_runs: 500,
        profile_freq: 20_000,
        measure: None,
        builds: Vec::new(),
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
            "--overhead-runs" => args.overhead_runs = number("--overhead-runs", 0)?,
            "--profile-runs" => args.profile_runs = number("--profile-runs", 1)?,
            "--profile-freq" => args.profile_freq = number("--profile-freq", 1)?,
            "--profile" => {
                args.profile = Some(
                    argv.next()
                        .filter(|h| !h.starts_with('-'))
                        .ok_or("--profile needs a hook name")?,
                )
            }
            "--measure" => {
                args.measure = Some(
                    argv.next()
                        .filter(|h| !h.starts_with('-'))
                        .ok_or("--measure needs a hook name")?,
                )
            }
            "--dispatch" => args
                .builds
                .push(argv.next().ok_or("--dispatch needs a path")?.into()),
            "-h" | "--help" => return Ok(None),
            other => return Err(format!("unknown argument {other:?}\n\n{USAGE}")),
        }
    }
    Ok(Some(args))
}

/// One step of a round.
enum Step {
    /// Runs `hook` on both units (and the floor); reported as `label`. `relation`: the
    /// relation id, remote application and remote unit (`""` for none) of a relation hook.
    Hook {
        hook: &'static str,
        label: String,
        kind: EventKind,
        relation: Option<(&'static str, &'static str, &'static str)>,
    },
    /// `juju config` on both units.
    Config(&'static str, Value),
    /// Juju creates the `fleet` peer relation (after `install`, before its `-created`).
    CreatePeerRelation,
    /// `juju integrate microsample grafana-agent`.
    RelateCos,
    /// `juju add-unit`: a peer joins the `fleet` relation; `reported`: it has published
    /// its state (the same as this unit's).
    PeerJoins { reported: bool },
}

fn hook(hook: &'static str, label: &str) -> Step {
    let kind = if hook == UNHANDLED {
        EventKind::Unhandled
    } else {
        EventKind::Reconciling
    };
    Step::Hook {
        hook,
        label: label.to_string(),
        kind,
        relation: None,
    }
}

fn relation_hook(
    hook: &'static str,
    relation: &'static str,
    remote_app: &'static str,
    remote_unit: &'static str,
) -> Step {
    Step::Hook {
        hook,
        label: hook.to_string(),
        kind: EventKind::Reconciling,
        relation: Some((relation, remote_app, remote_unit)),
    }
}

/// Deploy (the peer relation appears after `install`, docs/juju.md#hook-order); the
/// unhandled hook; relate to COS; `juju config channel=beta`; update-status
/// x n; the unhandled hook; `juju refresh`; a peer joins.
fn sequence(update_status: usize) -> Vec<Step> {
    let mut steps = vec![
        hook("install", "install"),
        Step::CreatePeerRelation,
        relation_hook(
            "fleet-relation-created",
            unit::PEER_RELATION,
            unit::PEER_APP,
            "",
        ),
        hook("leader-elected", "leader-elected"),
        hook("config-changed", "config-changed (deploy)"),
        hook("start", "start"),
        hook(UNHANDLED, UNHANDLED),
        Step::RelateCos,
        relation_hook(
            "cos-agent-relation-joined",
            unit::COS_RELATION,
            unit::COS_APP,
            unit::COS_UNIT,
        ),
        relation_hook(
            "cos-agent-relation-changed",
            unit::COS_RELATION,
            unit::COS_APP,
            unit::COS_UNIT,
        ),
        Step::Config("channel", json!("beta")),
        hook("config-changed", "config-changed (channel=beta)"),
    ];
    steps.extend((0..update_status).map(|_| hook("update-status", "update-status")));
    steps.push(hook(UNHANDLED, UNHANDLED));
    steps.push(hook("upgrade-charm", "upgrade-charm"));
    steps.push(hook("config-changed", "config-changed (after upgrade)"));
    steps.push(Step::PeerJoins { reported: false });
    steps.push(relation_hook(
        "fleet-relation-joined",
        unit::PEER_RELATION,
        unit::PEER_APP,
        unit::PEER_UNIT,
    ));
    steps.push(Step::PeerJoins { reported: true });
    steps.push(relation_hook(
        "fleet-relation-changed",
        unit::PEER_RELATION,
        unit::PEER_APP,
        unit::PEER_UNIT,
    ));
    steps
}

/// The events of `steps`, each once, in order.
fn events(steps: &[Step]) -> Vec<EventDef> {
    let mut seen: Vec<EventDef> = Vec::new();
    for step in steps {
        if let Step::Hook {
            hook, label, kind, ..
        } = step
        {
            if !seen.iter().any(|e| &e.label == label) {
                seen.push(EventDef {
                    label: label.clone(),
                    hook: hook.to_string(),
                    kind: *kind,
                });
            }
        }
    }
    seen
}

/// The sample of one traced run.
fn sample(
    round: usize,
    event: &str,
    hook: &str,
    charm: &'static str,
    launched: &launch::Launched,
    run: Option<&HookRun>,
) -> Sample {
    let tick_ns = 1_000_000_000 / launch::ticks_per_second();
    let own = launched.own;
    let calls: Vec<String> =
        run.map_or_else(Vec::new, |r| r.calls.iter().map(|c| c.line()).collect());
    let snap_calls = run.map_or(0, |r| r.calls.iter().filter(|c| c.tool == "snap").count());
    Sample {
        round,
        event: event.to_string(),
        hook: hook.to_string(),
        charm,
        cpu_ns: own.map(|o| o.cpu_ns),
        since_fork_ns: own.map(|o| o.since_fork_ns),
        stat_cpu_ns: own.map(|o| (o.utime_ticks + o.stime_ticks) * tick_ns),
        tick_ns,
        threads: own.map(|o| o.threads),
        own_peak_kib: own.map(|o| o.peak_kib),
        wall_us: launched.wall.as_micros() as u64,
        snap_us: run.map_or(0, |r| r.snap_time.as_micros() as u64),
        ru_maxrss_kib: launched.ru_maxrss_kib,
        ru_cpu_us: launched.ru_cpu_us,
        signal_stops: launched.signal_stops,
        tool_calls: calls.len() - snap_calls,
        snap_calls,
        duplicates: report::duplicate_calls(calls.iter().map(String::as_str)),
        calls,
        snapd_requests: run.map_or(0, |r| r.snapd_requests),
        exit: launched.exit,
    }
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
    if let Some(hook) = &args.profile {
        let freq = u32::try_from(args.profile_freq).map_err(|e| e.to_string())?;
        profile::run(&paths, &prepared, hook, args.profile_runs, freq)?;
        return Ok(true);
    }
    if let Some(hook) = &args.measure {
        let mut builds = args.builds.clone();
        if builds.is_empty() {
            let packed = prepared.rust.entries.iter().find(|e| e.0 == "dispatch");
            builds.extend(packed.map(|e| e.1.clone()));
        }
        measure::run(&prepared, hook, UNHANDLED, &builds, args.rounds)?;
        return Ok(true);
    }
    let steps = sequence(args.update_status);
    let events = events(&steps);
    let work = std::env::temp_dir().join(format!("charm-bench-{}", std::process::id()));
    let true_bin = Path::new("/bin/true");
    let mut samples: Vec<Sample> = Vec::new();
    let mut problems: Vec<String> = Vec::new();
    let started = Instant::now();
    for round in 0..=args.rounds {
        let measured = round > 0;
        let round_start = Instant::now();
        let (mut rust, mut ops) = unit::pair(&prepared, &work)?;
        for step in &steps {
            let (hook, label, relation) = match step {
                Step::Config(key, value) => {
                    rust.set_config(key, value.clone())?;
                    ops.set_config(key, value.clone())?;
                    continue;
                }
                Step::CreatePeerRelation => {
                    rust.create_peer_relation()?;
                    ops.create_peer_relation()?;
                    continue;
                }
                Step::RelateCos => {
                    rust.relate_cos()?;
                    ops.relate_cos()?;
                    continue;
                }
                Step::PeerJoins { reported } => {
                    rust.peer_joins(*reported, "beta")?;
                    ops.peer_joins(*reported, "beta")?;
                    continue;
                }
                Step::Hook {
                    hook,
                    label,
                    relation,
                    ..
                } => (*hook, label, relation),
            };
            let extra = relation.map_or_else(Vec::new, |(id, app, unit)| {
                juju_unit::relation_vars(id, app, unit)
            });
            // Rotate which process goes first, so none always runs on a cache another
            // warmed.
            for k in 0..3 {
                let (charm, launched, run) = match (round + k) % 3 {
                    0 => {
                        let run = rust.run_hook(hook, &extra, Trace::Yes)?;
                        ("rust", run.launched.clone(), Some(run))
                    }
                    1 => {
                        let run = ops.run_hook(hook, &extra, Trace::Yes)?;
                        ("ops", run.launched.clone(), Some(run))
                    }
                    _ => (FLOOR, rust.run_like_hook(true_bin, hook, Trace::Yes)?, None),
                };
                if launched.exit != Some(0) || launched.timed_out || launched.own.is_none() {
                    problems.push(format!(
                        "round {round}: {charm} {label} exited {:?} (signal {:?}, timed out: {}, own figures read: {}); stderr:\n{}",
                        launched.exit,
                        launched.signal,
                        launched.timed_out,
                        launched.own.is_some(),
                        run.as_ref().map_or("", |r| r.stderr.trim_end())
                    ));
                }
                if measured {
                    samples.push(sample(round, label, hook, charm, &launched, run.as_ref()));
                }
            }
        }
        for unit in [&rust, &ops] {
            if let Err(e) = check_round(unit) {
                problems.push(format!("round {round}: {e}"));
            }
        }
        let total = |charm: &str| -> f64 {
            samples
                .iter()
                .filter(|s| s.round == round && s.charm == charm)
                .filter_map(|s| s.cpu_ns)
                .sum::<u64>() as f64
                / 1e6
        };
        eprintln!(
            "bench: round {round}/{}{} in {:.1} s (own CPU of the hooks: ops {:.0} ms, Rust {:.2} ms, /bin/true {:.2} ms)",
            args.rounds,
            if measured { "" } else { " (warm-up)" },
            round_start.elapsed().as_secs_f64(),
            total(Kind::Ops.name()),
            total(Kind::Rust.name()),
            total(FLOOR),
        );
        if problems.len() > 20 {
            break;
        }
    }
    eprintln!(
        "bench: {} runs in {:.0} s",
        samples.len(),
        started.elapsed().as_secs_f64()
    );
    let overhead = if args.overhead_runs > 0 && problems.is_empty() {
        eprintln!(
            "bench: the tracer's cost and the perf cross-check ({} runs of each process, four ways)",
            args.overhead_runs
        );
        match overhead::run(
            &prepared,
            &work.join("overhead"),
            args.overhead_runs,
            UNHANDLED,
        ) {
            Ok(o) => Some(o),
            Err(e) => {
                problems.push(e);
                None
            }
        }
    } else {
        None
    };
    let _ = std::fs::remove_dir_all(&work);
    let dispatch = prepared
        .rust
        .entries
        .iter()
        .find(|(name, _)| name == "dispatch")
        .map(|(_, path)| path.clone())
        .ok_or("the packed charm has no dispatch")?;
    let moves = coordination::measure(&dispatch, &prepared.fake_juju);

    let summary = report::summarize(&events, &samples, &prepared.artifacts);
    let info = RunInfo {
        date_utc: date_utc(),
        machine: machine(),
        rounds: args.rounds,
        update_status_per_round: args.update_status,
    };
    let mut md = report::markdown(&info, &prepared.artifacts, &summary, overhead.as_ref());
    md.push_str(&coordination::markdown(&moves));
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
            "floor": "/bin/true run like a hook (same environment, cwd, output files, process group, tracer) after every hook",
            "fakes": "target/release/fake-juju: hook tools, snap CLI, fake snapd + microsample workload; one snapd per unit per round",
            "cpu": "own CPU of the process: first field of /proc/<pid>/schedstat (ns) at its ptrace exit stop minus the same at the stop after its first exec; children excluded; SIGCHLD blocked in the tracee",
            "since_fork": "the same from fork (the bench's forked copy included)",
            "stat_cpu": "utime + stime of /proc/<pid>/stat at the exit stop (clock ticks, since fork), the cross-check of since_fork",
            "own_peak": "VmHWM of the process at its ptrace exit stop",
            "wall": "fork to reaping wait4 minus the tracer's stop handling: includes the children, the fake snap, the probes",
            "ru": "wait4 ru_maxrss and ru_utime+ru_stime: the process and the children it reaped",
            "signal_stops": "signal-delivery stops seen by the tracer (SIGCHLD is blocked in the tracee: 0 expected)",
        },
        "budgets": {
            "cpu_ratio_at_least": report::CPU_RATIO_BUDGET,
            "reconciling_minus_unhandled_ms_at_most": report::ABOVE_UNHANDLED_BUDGET_MS,
            "rss_ratio_at_least": report::RSS_BUDGET,
            "dispatch_bytes_at_most": report::DISPATCH_BUDGET_BYTES,
            "charm_bytes_at_most": report::CHARM_BUDGET_BYTES,
            "identical_calls_per_hook_at_most": 1,
            "move_hooks_per_unit_at_most": "floor (N) + 4",
        },
        "artifacts": prepared.artifacts,
        "events": events,
        "summary": summary,
        "overhead": overhead,
        "coordination": moves,
        "failures": report::failures(&summary).into_iter().chain(coordination::failures(&moves)).collect::<Vec<_>>(),
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
    let png = out.join("cpu.png");
    let subtitle = format!(
        "{}; {}; {} rounds; ops {} / Python {} vs the packed Rust dispatch",
        info.date_utc,
        info.machine,
        info.rounds,
        prepared.artifacts.ops_version,
        prepared.artifacts.python_version
    );
    let chart = chart::draw(&png, &summary, &subtitle);
    eprintln!("bench: wrote {}", json_path.display());
    match &chart {
        Ok(()) => eprintln!("bench: wrote {}", png.display()),
        Err(e) => eprintln!("bench: FAIL: {e}"),
    }
    Ok(report::failures(&summary).is_empty()
        && coordination::failures(&moves).is_empty()
        && problems.is_empty()
        && chart.is_ok())
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
