//! What the tracer costs, and a cross-check of the own-CPU figures against `perf`.
//!
//! On fresh deployed units, each process below runs `--overhead-runs` times in four ways,
//! interleaved (the order rotates every run):
//! - *plain*: untraced, as the unit agent runs it: the wall time without the tracer;
//! - *traced*: as in the rounds: own CPU from schedstat, wall time;
//! - *traced with `SIGCHLD` stops*: the same without blocking `SIGCHLD`, to show what
//!   blocking it saves;
//! - *perf*: untraced under `perf stat --no-inherit -e task-clock`: the task clock of the
//!   process alone, counted from its `exec` (perf enables the counter on exec) to its exit.
//!
//! The processes: `/bin/true` run like a hook, the Rust charm on the unhandled hook and on
//! `update-status` (steady state: children, hence `SIGCHLD` stops), and the ops charm on
//! `update-status` (every third run: it takes 0.1 s).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::Serialize;

use crate::launch::Trace;
use crate::prepare::Prepared;
use crate::report::median_p95;

/// How a process was run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Plain,
    Traced,
    #[serde(rename = "traced-sigchld")]
    TracedSigchld,
    Perf,
}

/// One run.
#[derive(Debug, Clone, Serialize)]
pub struct Measurement {
    pub process: String,
    pub mode: Mode,
    pub wall_us: u64,
    /// Traced: schedstat; perf: task clock; plain: none.
    pub cpu_ns: Option<u64>,
    pub signal_stops: usize,
    pub exit: Option<i32>,
}

/// One process, all three ways (medians).
#[derive(Debug, Clone, Serialize)]
pub struct OverheadRow {
    pub process: String,
    pub runs: usize,
    pub wall_plain_ms: f64,
    pub wall_traced_ms: f64,
    pub cpu_traced_ms: f64,
    pub cpu_traced_p95_ms: f64,
    /// `None` without perf.
    pub cpu_perf_ms: Option<f64>,
    pub cpu_perf_p95_ms: Option<f64>,
    /// Traced without blocking `SIGCHLD`: own CPU and signal stops (medians).
    pub cpu_sigchld_ms: f64,
    pub signal_stops: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct OverheadReport {
    pub rows: Vec<OverheadRow>,
    /// `perf --version`, or why perf could not be used.
    pub perf: Result<String, String>,
    pub measurements: Vec<Measurement>,
}

/// The medians per process, in first-seen order.
pub fn summarize(measurements: Vec<Measurement>, perf: Result<String, String>) -> OverheadReport {
    let mut names: Vec<&str> = Vec::new();
    for m in &measurements {
        if !names.contains(&m.process.as_str()) {
            names.push(&m.process);
        }
    }
    let rows = names
        .iter()
        .map(|name| {
            let of = |mode: Mode| {
                measurements
                    .iter()
                    .filter(move |m| m.process == *name && m.mode == mode && m.exit == Some(0))
            };
            let ms = |v: Vec<f64>| median_p95(&v);
            let cpu = |mode: Mode| {
                ms(of(mode)
                    .filter_map(|m| m.cpu_ns)
                    .map(|n| n as f64 / 1e6)
                    .collect())
            };
            let wall = |mode: Mode| ms(of(mode).map(|m| m.wall_us as f64 / 1e3).collect());
            let (perf_median, perf_p95) = cpu(Mode::Perf);
            let (cpu_traced_ms, cpu_traced_p95_ms) = cpu(Mode::Traced);
            OverheadRow {
                process: name.to_string(),
                runs: of(Mode::Traced).count(),
                wall_plain_ms: wall(Mode::Plain).0,
                wall_traced_ms: wall(Mode::Traced).0,
                cpu_traced_ms,
                cpu_traced_p95_ms,
                cpu_perf_ms: (!perf_median.is_nan()).then_some(perf_median),
                cpu_perf_p95_ms: (!perf_p95.is_nan()).then_some(perf_p95),
                cpu_sigchld_ms: cpu(Mode::TracedSigchld).0,
                signal_stops: ms(of(Mode::TracedSigchld)
                    .map(|m| m.signal_stops as f64)
                    .collect())
                .0,
            }
        })
        .collect();
    OverheadReport {
        rows,
        perf,
        measurements,
    }
}

/// The report's section.
pub fn markdown(report: &OverheadReport) -> String {
    let mut md = String::from(
        "\n**The tracer's cost, and own CPU cross-checked with perf** (ms, medians, own CPU also p95. *plain*: untraced, as the agent runs it; *traced*: as in the rounds; *perf*: untraced under `perf stat --no-inherit -e task-clock`, which counts from inside the `exec` on; *SIGCHLD unblocked*: traced without blocking `SIGCHLD`, each child reaped is then a signal stop)\n\n",
    );
    md.push_str("| process | runs | wall plain | wall traced | tracer's wall cost | own CPU traced | task clock (perf) | traced − perf | own CPU, SIGCHLD unblocked (stops) |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in &report.rows {
        let perf = r.cpu_perf_ms.zip(r.cpu_perf_p95_ms);
        md.push_str(&format!(
            "| {} | {} | {:.3} | {:.3} | {:+.3} | {:.3} / {:.3} | {} | {} | {:.3} ({}) |\n",
            r.process,
            r.runs,
            r.wall_plain_ms,
            r.wall_traced_ms,
            r.wall_traced_ms - r.wall_plain_ms,
            r.cpu_traced_ms,
            r.cpu_traced_p95_ms,
            perf.map_or_else(|| "n/a".into(), |(m, p)| format!("{m:.3} / {p:.3}")),
            r.cpu_perf_ms
                .map_or_else(|| "n/a".into(), |p| format!("{:+.3}", r.cpu_traced_ms - p)),
            r.cpu_sigchld_ms,
            r.signal_stops,
        ));
    }
    match &report.perf {
        Ok(version) => md.push_str(&format!("\nperf: {version}.\n")),
        Err(why) => md.push_str(&format!("\nperf not used: {why}.\n")),
    }
    md
}

/// `perf` on PATH or in /usr/bin, and its version, if `perf stat` counts a task clock here.
fn find_perf(work: &Path) -> Result<(PathBuf, String), String> {
    let perf = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .chain([PathBuf::from("/usr/bin")])
        .map(|d| d.join("perf"))
        .find(|p| p.is_file())
        .ok_or("no perf on PATH or in /usr/bin")?;
    let out = work.join("perf-probe.csv");
    let probe = Command::new(&perf)
        .args(["stat", "--no-inherit", "-e", "task-clock", "-x", ",", "-o"])
        .arg(&out)
        .args(["--", "/bin/true"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", perf.display()))?;
    let csv = std::fs::read_to_string(&out).unwrap_or_default();
    if !probe.status.success() || crate::unit::perf_task_clock_ns(&csv).is_none() {
        return Err(format!(
            "`perf stat -e task-clock` does not count here ({}): {}",
            probe.status,
            String::from_utf8_lossy(&probe.stderr).trim()
        ));
    }
    let version = Command::new(&perf)
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    Ok((perf, version))
}

fn trace(mode: Mode) -> Trace {
    match mode {
        Mode::Traced => Trace::Yes,
        Mode::TracedSigchld => Trace::WithSigchldStops,
        Mode::Plain | Mode::Perf => Trace::No,
    }
}

/// Which process.
#[derive(Clone, Copy)]
enum Target {
    True,
    Rust(&'static str),
    Ops(&'static str),
}

impl Target {
    fn name(self) -> String {
        match self {
            Target::True => "`/bin/true` run like a hook".to_string(),
            Target::Rust(hook) => format!("Rust `{hook}`"),
            Target::Ops(hook) => format!("ops `{hook}`"),
        }
    }
}

/// Deploys a fresh unit of each charm and measures; `unhandled` is the unhandled hook.
pub fn run(
    prepared: &Prepared,
    work: &Path,
    runs: usize,
    unhandled: &'static str,
) -> Result<OverheadReport, String> {
    std::fs::create_dir_all(work).map_err(|e| format!("cannot create {}: {e}", work.display()))?;
    let perf = find_perf(work);
    let (mut rust, mut ops) = crate::unit::pair(prepared, work)?;
    for unit in [&mut rust, &mut ops] {
        unit.deploy().map_err(|e| format!("overhead check: {e}"))?;
    }
    let targets = [
        Target::True,
        Target::Rust(unhandled),
        Target::Rust("update-status"),
        Target::Ops("update-status"),
    ];
    let modes = [Mode::Plain, Mode::Traced, Mode::TracedSigchld, Mode::Perf];
    let true_bin = Path::new("/bin/true");
    let mut measurements = Vec::new();
    for i in 0..runs {
        for target in targets {
            if matches!(target, Target::Ops(_)) && i % 3 != 0 {
                continue;
            }
            for k in 0..modes.len() {
                let mode = modes[(i + k) % modes.len()];
                let (unit, hook) = match target {
                    Target::True => (&mut rust, unhandled),
                    Target::Rust(hook) => (&mut rust, hook),
                    Target::Ops(hook) => (&mut ops, hook),
                };
                let (launched, cpu_ns) = match (mode, target, &perf) {
                    (Mode::Perf, _, Err(_)) => continue,
                    (Mode::Perf, Target::True, Ok((perf, _))) => {
                        unit.run_hook_under_perf(perf, hook, Some(true_bin))?
                    }
                    (Mode::Perf, _, Ok((perf, _))) => unit.run_hook_under_perf(perf, hook, None)?,
                    (_, Target::True, _) => {
                        let l = unit.run_like_hook(true_bin, hook, trace(mode))?;
                        let cpu = l.own.map(|o| o.cpu_ns);
                        (l, cpu)
                    }
                    _ => {
                        let l = unit.run_hook(hook, &[], trace(mode))?.launched;
                        let cpu = l.own.map(|o| o.cpu_ns);
                        (l, cpu)
                    }
                };
                if launched.exit != Some(0) {
                    return Err(format!(
                        "overhead check: {} ({mode:?}) exited {:?}",
                        target.name(),
                        launched.exit
                    ));
                }
                measurements.push(Measurement {
                    process: target.name(),
                    mode,
                    wall_us: launched.wall.as_micros() as u64,
                    cpu_ns,
                    signal_stops: launched.signal_stops,
                    exit: launched.exit,
                });
            }
        }
    }
    Ok(summarize(measurements, perf.map(|(_, v)| v)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(process: &str, mode: Mode, wall_us: u64, cpu_us: Option<u64>) -> Measurement {
        Measurement {
            process: process.into(),
            mode,
            wall_us,
            cpu_ns: cpu_us.map(|u| u * 1000),
            signal_stops: if mode == Mode::TracedSigchld { 2 } else { 0 },
            exit: Some(0),
        }
    }

    #[test]
    fn rows_per_process_and_mode() {
        let mut v = Vec::new();
        for i in 0..3 {
            v.push(m("true", Mode::Plain, 800 + i, None));
            v.push(m("true", Mode::Traced, 900 + i, Some(300 + i)));
            v.push(m("true", Mode::Perf, 5_000, Some(250 + i)));
            v.push(m("true", Mode::TracedSigchld, 950, Some(340)));
            v.push(m("rust", Mode::Traced, 5_000, Some(700)));
        }
        let r = summarize(v, Ok("perf version 6".into()));
        assert_eq!(r.rows.len(), 2);
        let t = &r.rows[0];
        assert_eq!(t.process, "true");
        assert_eq!(t.runs, 3);
        assert_eq!(t.wall_plain_ms, 0.801);
        assert_eq!(t.wall_traced_ms, 0.901);
        assert_eq!(t.cpu_traced_ms, 0.301);
        assert_eq!(t.cpu_perf_ms, Some(0.251));
        assert_eq!(t.signal_stops, 2.0);
        assert_eq!(t.cpu_sigchld_ms, 0.34);
        let rust = &r.rows[1];
        assert_eq!(rust.cpu_perf_ms, None);
        assert!(rust.wall_plain_ms.is_nan());
        let md = markdown(&r);
        assert!(md.contains("| true | 3 | 0.801 | 0.901 | +0.100 | 0.301 / 0.302 | 0.251 / 0.252 | +0.050 | 0.340 (2) |"), "{md}");
        assert!(md.contains("perf: perf version 6."), "{md}");
        let r = summarize(vec![], Err("no perf".into()));
        assert!(r.rows.is_empty());
        assert!(markdown(&r).contains("perf not used: no perf."));
    }
}
