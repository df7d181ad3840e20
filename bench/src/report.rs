//! Statistics per event and charm, the budgets, and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::overhead::OverheadReport;
use crate::prepare::Artifacts;

/// Own CPU time per event: the Rust charm at least this many times lower than ops (medians).
pub const CPU_RATIO_BUDGET: f64 = 120.0;
/// Own CPU time of a reconciling hook minus that of the unhandled hook (medians), ms.
pub const ABOVE_UNHANDLED_BUDGET_MS: f64 = 0.5;
/// Peak RSS: the Rust charm at least this many times smaller.
pub const RSS_BUDGET: f64 = 15.0;
/// The stripped static `dispatch`, bytes (`charm_pack::DISPATCH_BUDGET`, pack/src/lib.rs).
pub const DISPATCH_BUDGET_BYTES: u64 = 2_500_000;
/// The packed `.charm`, bytes (`charm_pack::CHARM_BUDGET`, pack/src/lib.rs).
pub const CHARM_BUDGET_BYTES: u64 = 1_500_000;

/// The process the bench runs like a hook as the floor: it does nothing.
pub const FLOOR: &str = "true";

/// What an event is to the Rust charm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// Observe, plan, act, report: held to the budget above the unhandled hook.
    Reconciling,
    /// A hook neither charm handles: the reference for the reconciling ones.
    Unhandled,
}

/// One event of the sequence, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct EventDef {
    /// `config-changed (channel=beta)`.
    pub label: String,
    pub hook: String,
    pub kind: EventKind,
}

/// One run of one process (a charm's `dispatch`, or the floor).
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub round: usize,
    /// Event label; for the floor, the event it ran after.
    pub event: String,
    pub hook: String,
    /// `rust`, `ops` or `true` (the floor).
    pub charm: &'static str,
    /// Own CPU time (schedstat at the exit stop minus at the first `exec` stop), ns.
    pub cpu_ns: Option<u64>,
    /// The same from `fork`, ns.
    pub since_fork_ns: Option<u64>,
    /// `utime` + `stime` at the exit stop (since `fork`), converted from ticks, ns.
    pub stat_cpu_ns: Option<u64>,
    /// Clock tick, ns (the resolution of `stat_cpu_ns`).
    pub tick_ns: u64,
    pub threads: Option<u64>,
    /// `VmHWM` at the exit stop, KiB.
    pub own_peak_kib: Option<u64>,
    pub wall_us: u64,
    /// Time inside the fake `snap` CLI (its own `elapsed_us`).
    pub snap_us: u64,
    /// `wait4`: the process and every child it reaped.
    pub ru_maxrss_kib: u64,
    pub ru_cpu_us: u64,
    /// Signal-delivery stops (`SIGCHLD` is blocked in the tracee: 0 expected).
    pub signal_stops: usize,
    /// Hook-tool calls (every fake-recorded call but `snap`).
    pub tool_calls: usize,
    pub snap_calls: usize,
    /// Every call, `tool args...`, in order.
    pub calls: Vec<String>,
    /// Calls made more than once with identical arguments in this run.
    pub duplicates: Vec<String>,
    pub snapd_requests: usize,
    pub exit: Option<i32>,
}

impl Sample {
    fn cpu_ms(&self) -> Option<f64> {
        self.cpu_ns.map(|ns| ns as f64 / 1e6)
    }

    /// `utime + stime` agrees with schedstat: the kernel scales the tick-sampled split so
    /// that the two add up to the task's runtime, then rounds each down to ticks.
    fn stat_agrees(&self) -> Option<bool> {
        let (cpu, stat) = (self.since_fork_ns?, self.stat_cpu_ns?);
        Some(stat <= cpu + self.tick_ns && stat + 2 * self.tick_ns >= cpu)
    }
}

/// Calls made more than once with the same tool and arguments, each listed once.
pub fn duplicate_calls<'a>(calls: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut order = Vec::new();
    for call in calls {
        let n = seen.entry(call).or_insert(0);
        *n += 1;
        if *n == 2 {
            order.push(call.to_string());
        }
    }
    order
}

/// `config-get, opened-ports, relation-ids ×2, status-set`: the tools of a run by name, in
/// first-call order, with their counts.
pub fn call_summary(calls: &[String]) -> String {
    let mut counts: Vec<(&str, usize)> = Vec::new();
    for call in calls {
        let tool = call.split(' ').next().unwrap_or_default();
        match counts.iter_mut().find(|(t, _)| *t == tool) {
            Some((_, n)) => *n += 1,
            None => counts.push((tool, 1)),
        }
    }
    if counts.is_empty() {
        return "none".to_string();
    }
    counts
        .iter()
        .map(|(t, n)| {
            if *n == 1 {
                t.to_string()
            } else {
                format!("{t} ×{n}")
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Statistics of one process on one event (or, for the floor, over all events).
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    pub runs: usize,
    /// Own CPU time, ms.
    pub cpu_median_ms: f64,
    pub cpu_p95_ms: f64,
    pub cpu_mean_ms: f64,
    /// Runs whose `utime + stime` agrees with schedstat (see [`Sample`]), of `runs`.
    pub stat_agreeing: usize,
    pub threads_max: u64,
    pub wall_median_ms: f64,
    pub wall_p95_ms: f64,
    /// Wall time minus the time inside the fake `snap` CLI.
    pub excl_snap_median_ms: f64,
    pub own_peak_max_mib: Option<f64>,
    pub ru_maxrss_max_mib: f64,
    pub tool_calls_min: usize,
    pub tool_calls_max: usize,
    pub snap_calls_min: usize,
    pub snap_calls_max: usize,
    /// Signal stops, most in one run.
    pub signal_stops_max: usize,
    /// The most frequent set of calls (by tool, see [`call_summary`]).
    pub calls_typical: String,
    /// Calls repeated with identical arguments in some run.
    pub duplicates: Vec<String>,
    pub snapd_requests_min: usize,
    pub snapd_requests_max: usize,
}

/// One budget check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    /// What was measured.
    pub value: f64,
    /// What it had to reach (at least for ratios, at most for costs).
    pub limit: f64,
}

impl Check {
    fn at_least(value: f64, limit: f64) -> Check {
        Check {
            ok: value >= limit,
            value,
            limit,
        }
    }

    fn at_most(value: f64, limit: f64) -> Check {
        Check {
            ok: value <= limit,
            value,
            limit,
        }
    }
}

/// Both charms on one event, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct EventReport {
    pub event: String,
    pub hook: String,
    pub kind: EventKind,
    pub ops: Stats,
    pub rust: Stats,
    /// ops / Rust, own CPU medians.
    pub cpu_ratio: f64,
    /// Rust's own CPU median minus the unhandled hook's, ms (reconciling events).
    pub above_unhandled_ms: Option<f64>,
    /// ops / Rust, wall-time medians (information).
    pub wall_ratio: f64,
    /// ops / Rust, largest own peak RSS.
    pub rss_ratio: f64,
    pub cpu_budget: Check,
    pub above_unhandled_budget: Option<Check>,
    pub rss_budget: Check,
    /// Rust calls repeated with identical arguments in one hook (at most 0).
    pub calls_budget: Check,
}

/// Everything the report says.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub events: Vec<EventReport>,
    /// The floor (`/bin/true` run like a hook), over all its runs.
    pub floor: Option<Stats>,
    /// The Rust charm on the unhandled hook, median own CPU, ms.
    pub unhandled_rust_ms: Option<f64>,
    pub dispatch_budget: Check,
    pub charm_budget: Check,
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Nearest-rank percentile (`p` in 0..=1).
fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = (p * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Median and nearest-rank p95 of `v`.
pub fn median_p95(v: &[f64]) -> (f64, f64) {
    let mut v = v.to_vec();
    (median(&mut v), percentile(&mut v, 0.95))
}

fn min_max(samples: &[&Sample], f: impl Fn(&Sample) -> usize) -> (usize, usize) {
    let v = samples.iter().map(|s| f(s));
    (v.clone().min().unwrap_or(0), v.max().unwrap_or(0))
}

pub fn stats(samples: &[&Sample]) -> Stats {
    let cpu: Vec<f64> = samples.iter().filter_map(|s| s.cpu_ms()).collect();
    let (cpu_median_ms, cpu_p95_ms) = median_p95(&cpu);
    let ms = |us: u64| us as f64 / 1000.0;
    let wall: Vec<f64> = samples.iter().map(|s| ms(s.wall_us)).collect();
    let (wall_median_ms, wall_p95_ms) = median_p95(&wall);
    let excl: Vec<f64> = samples
        .iter()
        .map(|s| ms(s.wall_us.saturating_sub(s.snap_us)))
        .collect();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let mut typical: BTreeMap<String, usize> = BTreeMap::new();
    for s in samples {
        *typical.entry(call_summary(&s.calls)).or_default() += 1;
    }
    let mut duplicates: Vec<String> = samples
        .iter()
        .flat_map(|s| s.duplicates.iter().cloned())
        .collect();
    duplicates.sort();
    duplicates.dedup();
    let (tool_calls_min, tool_calls_max) = min_max(samples, |s| s.tool_calls);
    let (snap_calls_min, snap_calls_max) = min_max(samples, |s| s.snap_calls);
    let signal_stops_max = min_max(samples, |s| s.signal_stops).1;
    let (snapd_requests_min, snapd_requests_max) = min_max(samples, |s| s.snapd_requests);
    Stats {
        runs: samples.len(),
        cpu_median_ms,
        cpu_p95_ms,
        cpu_mean_ms: cpu.iter().sum::<f64>() / cpu.len().max(1) as f64,
        stat_agreeing: samples
            .iter()
            .filter(|s| s.stat_agrees() == Some(true))
            .count(),
        threads_max: samples.iter().filter_map(|s| s.threads).max().unwrap_or(0),
        wall_median_ms,
        wall_p95_ms,
        excl_snap_median_ms: median_p95(&excl).0,
        own_peak_max_mib: samples.iter().filter_map(|s| s.own_peak_kib).max().map(mib),
        ru_maxrss_max_mib: mib(samples.iter().map(|s| s.ru_maxrss_kib).max().unwrap_or(0)),
        tool_calls_min,
        tool_calls_max,
        snap_calls_min,
        snap_calls_max,
        signal_stops_max,
        // Most frequent; ties to the alphabetically first.
        calls_typical: typical
            .iter()
            .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
            .map(|(k, _)| k.clone())
            .unwrap_or_default(),
        duplicates,
        snapd_requests_min,
        snapd_requests_max,
    }
}

/// Groups the samples by event (in `events` order), checks the budgets.
pub fn summarize(events: &[EventDef], samples: &[Sample], artifacts: &Artifacts) -> Summary {
    let mut by_key: BTreeMap<(&str, &str), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_key.entry((&s.event, s.charm)).or_default().push(s);
    }
    let get = |event: &str, charm: &str| by_key.get(&(event, charm)).map(|v| stats(v));
    // The reference: every run of the unhandled event(s).
    let unhandled: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.charm == "rust"
                && events
                    .iter()
                    .any(|e| e.label == s.event && e.kind == EventKind::Unhandled)
        })
        .collect();
    let unhandled_rust_ms = (!unhandled.is_empty()).then(|| stats(&unhandled).cpu_median_ms);
    let mut reports = Vec::new();
    for def in events {
        let (Some(ops), Some(rust)) = (get(&def.label, "ops"), get(&def.label, "rust")) else {
            continue;
        };
        let cpu_ratio = ops.cpu_median_ms / rust.cpu_median_ms;
        let wall_ratio = ops.wall_median_ms / rust.wall_median_ms;
        let rss_ratio = match (ops.own_peak_max_mib, rust.own_peak_max_mib) {
            (Some(o), Some(r)) => o / r,
            _ => f64::NAN,
        };
        let above_unhandled_ms = match def.kind {
            EventKind::Reconciling => unhandled_rust_ms.map(|u| rust.cpu_median_ms - u),
            EventKind::Unhandled => None,
        };
        reports.push(EventReport {
            event: def.label.clone(),
            hook: def.hook.clone(),
            kind: def.kind,
            cpu_budget: Check::at_least(cpu_ratio, CPU_RATIO_BUDGET),
            above_unhandled_budget: match def.kind {
                EventKind::Reconciling => Some(Check::at_most(
                    above_unhandled_ms.unwrap_or(f64::NAN),
                    ABOVE_UNHANDLED_BUDGET_MS,
                )),
                EventKind::Unhandled => None,
            },
            rss_budget: Check::at_least(rss_ratio, RSS_BUDGET),
            calls_budget: Check::at_most(rust.duplicates.len() as f64, 0.0),
            cpu_ratio,
            above_unhandled_ms,
            wall_ratio,
            rss_ratio,
            ops,
            rust,
        });
    }
    let floor: Vec<&Sample> = samples.iter().filter(|s| s.charm == FLOOR).collect();
    Summary {
        events: reports,
        floor: (!floor.is_empty()).then(|| stats(&floor)),
        unhandled_rust_ms,
        dispatch_budget: Check::at_most(
            artifacts.rust_dispatch_bytes as f64,
            DISPATCH_BUDGET_BYTES as f64,
        ),
        charm_budget: Check::at_most(artifacts.rust_charm_bytes as f64, CHARM_BUDGET_BYTES as f64),
    }
}

/// Budget misses, one line each.
pub fn failures(summary: &Summary) -> Vec<String> {
    let mut out = Vec::new();
    for r in &summary.events {
        if !r.cpu_budget.ok {
            out.push(format!(
                "{}: Rust own CPU only {:.1}x lower than ops (budget {:.0}x)",
                r.event, r.cpu_ratio, CPU_RATIO_BUDGET
            ));
        }
        if let Some(check) = r.above_unhandled_budget.as_ref().filter(|c| !c.ok) {
            out.push(format!(
                "{}: Rust own CPU {:.3} ms above the unhandled hook (budget {} ms)",
                r.event, check.value, ABOVE_UNHANDLED_BUDGET_MS
            ));
        }
        if !r.rss_budget.ok {
            out.push(format!(
                "{}: Rust peak RSS only {:.1}x lower than ops (budget {:.0}x)",
                r.event, r.rss_ratio, RSS_BUDGET
            ));
        }
        if !r.calls_budget.ok {
            out.push(format!(
                "{}: Rust repeats calls with identical arguments in one hook: {}",
                r.event,
                r.rust.duplicates.join("; ")
            ));
        }
    }
    if !summary.dispatch_budget.ok {
        out.push(format!(
            "dispatch is {:.0} bytes (budget {DISPATCH_BUDGET_BYTES})",
            summary.dispatch_budget.value
        ));
    }
    if !summary.charm_budget.ok {
        out.push(format!(
            ".charm is {:.0} bytes (budget {CHARM_BUDGET_BYTES})",
            summary.charm_budget.value
        ));
    }
    out
}

fn range(min: usize, max: usize) -> String {
    if min == max {
        min.to_string()
    } else {
        format!("{min}–{max}")
    }
}

fn verdict(check: &Check) -> &'static str {
    if check.ok {
        "ok"
    } else {
        "**FAIL**"
    }
}

fn mb(bytes: u64) -> String {
    format!("{:.2} MB", bytes as f64 / 1e6)
}

/// Context printed above the tables.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub date_utc: String,
    pub machine: String,
    pub rounds: usize,
    pub update_status_per_round: usize,
}

/// What each of the Rust charm's calls is for.
pub const CALL_LEGEND: &[(&str, &str)] = &[
    ("config-get", "the charm's config (channel, port), read once"),
    ("opened-ports", "the ports Juju has open for the unit, read once, so only a difference is opened or closed"),
    ("relation-ids", "one per endpoint (`cos-agent`, `fleet`): is the unit related; none for `fleet` in a `fleet-relation-*` hook, whose `JUJU_RELATION_ID` is the peer relation"),
    ("relation-list", "the peers on `fleet`, when the peer relation exists"),
    ("is-leader", "only with peers: the leader coordinates channel moves"),
    ("relation-get", "with the peer relation: the move (application databag, read even before any peer joins), and each peer's unit databag on the leader, or on a unit a move is not done with"),
    ("relation-set", "one per databag written: the `cos-agent` unit databag, the unit's `fleet` databag, the leader's `fleet` application databag"),
    ("application-version-set", "the workload version observed, once"),
    ("status-set", "the unit status observed, once (`--application`: the leader's fleet status, with peers)"),
    ("open-port / close-port", "only when the config's port differs from what is open"),
    ("juju-log", "INFO and above only (DEBUG goes to stdout)"),
    ("snap", "install, refresh, set port, restart: only when the machine differs from the plan"),
];

/// The Markdown report.
pub fn markdown(
    info: &RunInfo,
    artifacts: &Artifacts,
    summary: &Summary,
    overhead: Option<&OverheadReport>,
) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Run {} on {}; {} rounds (+1 warm-up), update-status {}x per round; ops {} on Python {}; every run under ptrace (exit and exec events only).\n",
        info.date_utc,
        info.machine,
        info.rounds,
        info.update_status_per_round,
        artifacts.ops_version,
        artifacts.python_version
    );

    md.push_str("**Own CPU time of the `dispatch` process per hook, ms** (median / p95; `/proc/<pid>/schedstat` at its ptrace exit stop: children excluded)\n\n");
    md.push_str(
        "| event | runs | ops | Rust | ops / Rust | ≥ 120x | Rust − unhandled | ≤ 0.5 ms |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|:---:|---:|:---:|\n");
    for r in &summary.events {
        let above = match (&r.above_unhandled_budget, r.above_unhandled_ms) {
            (Some(check), Some(ms)) => format!("{ms:+.3} | {}", verdict(check)),
            (Some(check), None) => format!("n/a | {}", verdict(check)),
            _ => "(reference) |".to_string(),
        };
        let _ = writeln!(
            md,
            "| {}{} | {} | {:.1} / {:.1} | {:.3} / {:.3} | {:.0}x | {} | {} |",
            r.event,
            if r.kind == EventKind::Unhandled {
                " (unhandled)"
            } else {
                ""
            },
            r.rust.runs,
            r.ops.cpu_median_ms,
            r.ops.cpu_p95_ms,
            r.rust.cpu_median_ms,
            r.rust.cpu_p95_ms,
            r.cpu_ratio,
            verdict(&r.cpu_budget),
            above,
        );
    }
    if let Some(floor) = &summary.floor {
        let _ = writeln!(
            md,
            "| `/bin/true` run like a hook (the floor) | {} | | {:.3} / {:.3} | | | true − unhandled: {} | |",
            floor.runs,
            floor.cpu_median_ms,
            floor.cpu_p95_ms,
            summary
                .unhandled_rust_ms
                .map_or_else(String::new, |u| format!("{:+.3}", floor.cpu_median_ms - u)),
        );
    }
    let threads = |f: fn(&EventReport) -> &Stats| {
        summary
            .events
            .iter()
            .map(|r| f(r).threads_max)
            .max()
            .unwrap_or(0)
    };
    let agreeing = |f: fn(&EventReport) -> &Stats| {
        summary
            .events
            .iter()
            .fold((0, 0), |(a, n), r| (a + f(r).stat_agreeing, n + f(r).runs))
    };
    let stops = summary
        .events
        .iter()
        .flat_map(|r| [r.rust.signal_stops_max, r.ops.signal_stops_max])
        .chain(summary.floor.iter().map(|f| f.signal_stops_max))
        .max()
        .unwrap_or(0);
    let (ra, rn) = agreeing(|r| &r.rust);
    let (oa, on) = agreeing(|r| &r.ops);
    let _ = writeln!(
        md,
        "\nCounted from the stop after the process's first `exec` to its exit stop. Threads at the exit stop: Rust at most {}, ops at most {}. Signal stops per run (`SIGCHLD` is blocked in the tracee): at most {stops}. Cross-check: `utime + stime` of `/proc/<pid>/stat` (whole thread group, {} ms ticks) agrees with schedstat (both since `fork`) within two ticks in {ra}/{rn} Rust runs and {oa}/{on} ops runs.",
        threads(|r| &r.rust),
        threads(|r| &r.ops),
        1000 / crate::launch::ticks_per_second(),
    );

    md.push_str("\n**Children per hook** (processes the hook started, as the fakes recorded them, min–max over runs: hook-tool calls / `snap` commands; the ops charm runs each `snap` through `os.system`, i.e. `/bin/sh -c`, one more process each)\n\n");
    md.push_str("| event | ops tools / snap | Rust tools / snap | Rust's calls (most frequent run) | no call repeated |\n");
    md.push_str("|---|---:|---:|---|:---:|\n");
    for r in &summary.events {
        let counts = |s: &Stats| {
            format!(
                "{} / {}",
                range(s.tool_calls_min, s.tool_calls_max),
                range(s.snap_calls_min, s.snap_calls_max),
            )
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} |",
            r.event,
            counts(&r.ops),
            counts(&r.rust),
            r.rust.calls_typical,
            verdict(&r.calls_budget),
        );
    }
    md.push_str("\nWhat each Rust call is for:\n\n");
    for (tool, why) in CALL_LEGEND {
        let _ = writeln!(md, "- `{tool}`: {why}");
    }

    md.push_str("\n**Memory per hook** (own peak RSS: `VmHWM` at the exit stop, max over runs; `wait4`: `ru_maxrss`, which also covers the children)\n\n");
    md.push_str("| event | ops MiB | Rust MiB | ratio | ≥ 15x | wait4 ops / Rust MiB |\n");
    md.push_str("|---|---:|---:|---:|:---:|---:|\n");
    for r in &summary.events {
        let own = |s: &Stats| {
            s.own_peak_max_mib
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1}x | {} | {:.1} / {:.1} |",
            r.event,
            own(&r.ops),
            own(&r.rust),
            r.rss_ratio,
            verdict(&r.rss_budget),
            r.ops.ru_maxrss_max_mib,
            r.rust.ru_maxrss_max_mib,
        );
    }

    md.push_str("\n**Wall time per hook, ms** (information, not a budget: median / p95 from `fork` to the reaping `wait4`, minus the tracer's own stop handling. It includes every hook-tool process the hook ran, the fake `snap` CLI and the fake snapd work it waits for, the Rust charm's health and metrics probes of the fake workload, which answers by polling every 10 ms, and the ptrace stops; *excl. snap*: minus the time the fake `snap` records for itself)\n\n");
    md.push_str(
        "| event | ops | Rust | Rust excl. snap | ops / Rust | snapd requests ops / Rust |\n",
    );
    md.push_str("|---|---:|---:|---:|---:|---:|\n");
    for r in &summary.events {
        let _ = writeln!(
            md,
            "| {} | {:.1} / {:.1} | {:.2} / {:.2} | {:.2} | {:.0}x | {} / {} |",
            r.event,
            r.ops.wall_median_ms,
            r.ops.wall_p95_ms,
            r.rust.wall_median_ms,
            r.rust.wall_p95_ms,
            r.rust.excl_snap_median_ms,
            r.wall_ratio,
            range(r.ops.snapd_requests_min, r.ops.snapd_requests_max),
            range(r.rust.snapd_requests_min, r.rust.snapd_requests_max),
        );
    }
    if let Some(floor) = &summary.floor {
        let _ = writeln!(
            md,
            "| `/bin/true` (the floor) | | {:.2} / {:.2} | | | |",
            floor.wall_median_ms, floor.wall_p95_ms
        );
    }

    if let Some(o) = overhead {
        md.push_str(&crate::overhead::markdown(o));
    }

    md.push_str("\n**Size**\n\n| | Rust | budget | ops |\n|---|---:|:---:|---:|\n");
    let _ = writeln!(
        md,
        "| `dispatch` | {} (static, stripped) | ≤ {}: {} | 0.4 KiB shell script + the unit's Python |",
        mb(artifacts.rust_dispatch_bytes),
        mb(DISPATCH_BUDGET_BYTES),
        verdict(&summary.dispatch_budget)
    );
    let _ = writeln!(
        md,
        "| `.charm` | {} | ≤ {}: {} | {} (charmcraft layout: src/ + venv/) |",
        mb(artifacts.rust_charm_bytes),
        mb(CHARM_BUDGET_BYTES),
        verdict(&summary.charm_budget),
        mb(artifacts.ops_charm_bytes)
    );
    let _ = writeln!(
        md,
        "| unpacked | {} | | {} |",
        mb(artifacts.rust_unpacked_bytes),
        mb(artifacts.ops_unpacked_bytes)
    );
    let fails = failures(summary);
    if fails.is_empty() {
        md.push_str("\nAll budgets met.\n");
    } else {
        let _ = writeln!(md, "\n{} budget(s) missed:\n", fails.len());
        for f in &fails {
            let _ = writeln!(md, "- FAIL {f}");
        }
    }
    md
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn median_and_nearest_rank_p95() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median_p95(&v), (10.5, 19.0));
        assert_eq!(median_p95(&[3.0]), (3.0, 3.0));
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), 3.0);
        assert!(median_p95(&[]).0.is_nan());
    }

    #[test]
    fn duplicates_and_call_summaries() {
        let calls = [
            "config-get --format=json",
            "relation-ids --format=json -- cos-agent",
            "relation-ids --format=json -- fleet",
            "status-set active -- Ready",
        ];
        assert!(duplicate_calls(calls).is_empty());
        let calls = ["a x", "b", "a x", "a x", "b", "a y"];
        assert_eq!(duplicate_calls(calls), ["a x", "b"]);
        let calls: Vec<String> = [
            "config-get --format=json",
            "relation-ids --format=json -- cos-agent",
            "relation-ids --format=json -- fleet",
            "status-set active -- Ready at 'beta'",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            call_summary(&calls),
            "config-get, relation-ids ×2, status-set"
        );
        assert_eq!(call_summary(&[]), "none");
    }

    pub(crate) fn sample(charm: &'static str, event: &str, cpu_us: u64, kib: u64) -> Sample {
        Sample {
            round: 1,
            event: event.into(),
            hook: event.into(),
            charm,
            cpu_ns: Some(cpu_us * 1000),
            since_fork_ns: Some(cpu_us * 1000 + 100_000),
            stat_cpu_ns: Some(cpu_us / 10_000 * 10_000_000),
            tick_ns: 10_000_000,
            threads: Some(1),
            own_peak_kib: Some(kib),
            wall_us: cpu_us * 2,
            snap_us: 0,
            ru_maxrss_kib: kib,
            ru_cpu_us: cpu_us * 2,
            signal_stops: 0,
            tool_calls: 3,
            snap_calls: 0,
            calls: vec!["config-get".into(), "status-set x".into()],
            duplicates: vec![],
            snapd_requests: 2,
            exit: Some(0),
        }
    }

    pub(crate) fn artifacts(dispatch: u64, charm: u64) -> Artifacts {
        Artifacts {
            rust_dispatch_bytes: dispatch,
            rust_charm_bytes: charm,
            rust_unpacked_bytes: 1,
            ops_charm_bytes: 1,
            ops_unpacked_bytes: 1,
            python_version: "3".into(),
            ops_version: "2".into(),
        }
    }

    pub(crate) fn defs() -> Vec<EventDef> {
        vec![
            EventDef {
                label: "update-status".into(),
                hook: "update-status".into(),
                kind: EventKind::Reconciling,
            },
            EventDef {
                label: "unhandled".into(),
                hook: "some-hook".into(),
                kind: EventKind::Unhandled,
            },
        ]
    }

    #[test]
    fn stat_cross_check() {
        let s = sample("ops", "x", 95_000, 1);
        // 95 ms of schedstat, 90 ms of ticks: within two ticks.
        assert_eq!(s.stat_agrees(), Some(true));
        let mut s = sample("ops", "x", 95_000, 1);
        s.stat_cpu_ns = Some(120_000_000);
        assert_eq!(s.stat_agrees(), Some(false));
        s.stat_cpu_ns = Some(60_000_000);
        assert_eq!(s.stat_agrees(), Some(false));
        s.since_fork_ns = None;
        assert_eq!(s.stat_agrees(), None);
    }

    #[test]
    fn budgets_met() {
        // ops 100 ms everywhere; Rust 0.3 ms unhandled, 0.7 ms update-status (+0.4).
        let mut samples = Vec::new();
        for _ in 0..5 {
            samples.push(sample("ops", "update-status", 100_000, 30_000));
            samples.push(sample("rust", "update-status", 700, 1_800));
            samples.push(sample("ops", "unhandled", 100_000, 30_000));
            samples.push(sample("rust", "unhandled", 300, 1_800));
            samples.push(sample(FLOOR, "unhandled", 200, 1_000));
        }
        let s = summarize(&defs(), &samples, &artifacts(2_000_000, 800_000));
        assert_eq!(s.events.len(), 2);
        let us = &s.events[0];
        assert!((us.cpu_ratio - 100.0 / 0.7).abs() < 1e-9);
        assert!((us.above_unhandled_ms.unwrap() - 0.4).abs() < 1e-9);
        assert!(us.cpu_budget.ok && us.rss_budget.ok && us.calls_budget.ok);
        assert!(us.above_unhandled_budget.as_ref().unwrap().ok);
        let un = &s.events[1];
        assert_eq!(un.above_unhandled_ms, None);
        assert!(un.above_unhandled_budget.is_none());
        assert!((un.cpu_ratio - 100.0 / 0.3).abs() < 1e-9);
        assert_eq!(s.unhandled_rust_ms, Some(0.3));
        assert_eq!(s.floor.as_ref().unwrap().runs, 5);
        assert!(failures(&s).is_empty(), "{:?}", failures(&s));
        let md = markdown(
            &RunInfo {
                date_utc: "d".into(),
                machine: "m".into(),
                rounds: 1,
                update_status_per_round: 1,
            },
            &artifacts(2_000_000, 800_000),
            &s,
            None,
        );
        assert!(!md.contains("FAIL"), "{md}");
        assert!(md.contains("All budgets met."), "{md}");
    }

    #[test]
    fn budgets_missed() {
        // Rust 1.0 ms on update-status: 100x (< 120x) and +0.7 ms (> 0.5 ms) above the
        // unhandled hook; RSS 10x; a repeated call; both sizes over.
        let mut samples = Vec::new();
        for _ in 0..5 {
            samples.push(sample("ops", "update-status", 100_000, 30_000));
            let mut rust = sample("rust", "update-status", 1_000, 3_000);
            rust.duplicates = vec!["status-set active -- Ready".into()];
            samples.push(rust);
            samples.push(sample("ops", "unhandled", 100_000, 30_000));
            samples.push(sample("rust", "unhandled", 300, 1_800));
        }
        let s = summarize(&defs(), &samples, &artifacts(2_600_000, 1_600_000));
        let us = &s.events[0];
        assert!(!us.cpu_budget.ok && !us.rss_budget.ok && !us.calls_budget.ok);
        assert!(!us.above_unhandled_budget.as_ref().unwrap().ok);
        assert!(s.floor.is_none());
        let fails = failures(&s);
        assert_eq!(fails.len(), 6, "{fails:?}");
        assert!(fails
            .iter()
            .any(|f| f.contains("status-set active -- Ready")));
        let md = markdown(
            &RunInfo {
                date_utc: "d".into(),
                machine: "m".into(),
                rounds: 1,
                update_status_per_round: 1,
            },
            &artifacts(2_600_000, 1_600_000),
            &s,
            None,
        );
        // Table cells: ratio, above-unhandled, duplicates, RSS, dispatch, .charm.
        assert_eq!(md.matches("**FAIL**").count(), 6, "{md}");
        assert!(md.contains("6 budget(s) missed"), "{md}");
    }

    #[test]
    fn exactly_at_the_limits_passes() {
        assert!(Check::at_least(120.0, CPU_RATIO_BUDGET).ok);
        assert!(!Check::at_least(119.99, CPU_RATIO_BUDGET).ok);
        assert!(Check::at_most(0.5, ABOVE_UNHANDLED_BUDGET_MS).ok);
        assert!(!Check::at_most(0.501, ABOVE_UNHANDLED_BUDGET_MS).ok);
        // A missing measurement is never a pass.
        assert!(!Check::at_most(f64::NAN, ABOVE_UNHANDLED_BUDGET_MS).ok);
        assert!(!Check::at_least(f64::NAN, RSS_BUDGET).ok);
    }

    #[test]
    fn size_budgets_match_the_packer() {
        // pack/src/lib.rs is the source of truth; the bench does not link the packer.
        let lib = include_str!("../../pack/src/lib.rs");
        let value = |name: &str| -> u64 {
            let line = lib
                .lines()
                .find(|l| l.contains(&format!("const {name}: u64 =")))
                .unwrap_or_else(|| panic!("{name} not in pack/src/lib.rs"));
            line.split('=')
                .nth(1)
                .unwrap()
                .trim()
                .trim_end_matches(';')
                .replace('_', "")
                .parse()
                .unwrap()
        };
        assert_eq!(value("DISPATCH_BUDGET"), DISPATCH_BUDGET_BYTES);
        assert_eq!(value("CHARM_BUDGET"), CHARM_BUDGET_BYTES);
    }
}
