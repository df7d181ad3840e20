//! Statistics per event and charm, the budgets, and the Markdown report.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use crate::prepare::Artifacts;

/// Per-event wall time (excluding the fake `snap`): the Rust charm at least this many
/// times faster than the ops charm.
pub const SPEEDUP_BUDGET: f64 = 100.0;
/// Peak RSS: the Rust charm at least this many times smaller.
pub const RSS_BUDGET: f64 = 15.0;

/// One hook run of one charm.
#[derive(Debug, Clone, Serialize)]
pub struct Sample {
    pub round: usize,
    /// Run under ptrace for its own peak RSS: its timing is not used.
    pub traced: bool,
    /// Event label (`config-changed (channel=beta)`).
    pub event: String,
    pub hook: String,
    pub charm: &'static str,
    pub wall_us: u64,
    /// Time inside the fake `snap` CLI (its own `elapsed_us`).
    pub snap_us: u64,
    /// `wall_us - snap_us`.
    pub excl_snap_us: u64,
    pub tool_calls: usize,
    pub snap_calls: usize,
    pub snapd_requests: usize,
    /// `VmHWM` of the dispatch process at its exit (KiB).
    pub own_peak_kib: Option<u64>,
    /// `wait4` `ru_maxrss` (KiB): max of the process and every child it reaped.
    pub ru_maxrss_kib: u64,
    pub exit: Option<i32>,
}

/// Statistics of one charm on one event.
#[derive(Debug, Clone, Serialize)]
pub struct Stats {
    /// Timed runs (untraced).
    pub runs: usize,
    /// Runs under ptrace (RSS).
    pub traced_runs: usize,
    pub wall_median_ms: f64,
    pub wall_p95_ms: f64,
    pub excl_snap_median_ms: f64,
    pub excl_snap_p95_ms: f64,
    pub snap_median_ms: f64,
    /// Largest `VmHWM` over the runs (MiB); `None` without ptrace.
    pub own_peak_max_mib: Option<f64>,
    /// Largest `ru_maxrss` over the runs (MiB).
    pub ru_maxrss_max_mib: f64,
    pub tool_calls_min: usize,
    pub tool_calls_max: usize,
    pub snap_calls_median: f64,
    pub snapd_requests_min: usize,
    pub snapd_requests_max: usize,
}

/// One budget check.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub ok: bool,
    /// What was measured (a ratio, or the Rust charm's calls).
    pub value: f64,
    /// What it had to reach (at least, or for calls at most).
    pub limit: f64,
}

/// Both charms on one event, side by side.
#[derive(Debug, Clone, Serialize)]
pub struct EventReport {
    pub event: String,
    pub hook: String,
    pub ops: Stats,
    pub rust: Stats,
    /// ops / Rust, medians of wall time excluding the fake `snap`.
    pub speedup_excl_snap: f64,
    /// ops / Rust, medians of raw wall time.
    pub speedup_wall: f64,
    /// ops / Rust, largest own peak RSS (or `ru_maxrss` without ptrace).
    pub rss_ratio: f64,
    pub latency_budget: Check,
    pub rss_budget: Check,
    pub calls_budget: Check,
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

fn stats(samples: &[&Sample]) -> Stats {
    let timed: Vec<&Sample> = samples.iter().copied().filter(|s| !s.traced).collect();
    let traced: Vec<&Sample> = samples.iter().copied().filter(|s| s.traced).collect();
    let ms = |f: &dyn Fn(&Sample) -> u64| -> Vec<f64> {
        timed.iter().map(|s| f(s) as f64 / 1000.0).collect()
    };
    let mut wall = ms(&|s| s.wall_us);
    let mut excl = ms(&|s| s.excl_snap_us);
    let mut snap = ms(&|s| s.snap_us);
    let mut snap_calls: Vec<f64> = samples.iter().map(|s| s.snap_calls as f64).collect();
    let mib = |kib: u64| kib as f64 / 1024.0;
    let own: Vec<u64> = traced.iter().filter_map(|s| s.own_peak_kib).collect();
    Stats {
        runs: timed.len(),
        traced_runs: traced.len(),
        wall_median_ms: median(&mut wall),
        wall_p95_ms: percentile(&mut wall, 0.95),
        excl_snap_median_ms: median(&mut excl),
        excl_snap_p95_ms: percentile(&mut excl, 0.95),
        snap_median_ms: median(&mut snap),
        own_peak_max_mib: own.into_iter().max().map(mib),
        ru_maxrss_max_mib: mib(samples.iter().map(|s| s.ru_maxrss_kib).max().unwrap_or(0)),
        tool_calls_min: samples.iter().map(|s| s.tool_calls).min().unwrap_or(0),
        tool_calls_max: samples.iter().map(|s| s.tool_calls).max().unwrap_or(0),
        snap_calls_median: median(&mut snap_calls),
        snapd_requests_min: samples.iter().map(|s| s.snapd_requests).min().unwrap_or(0),
        snapd_requests_max: samples.iter().map(|s| s.snapd_requests).max().unwrap_or(0),
    }
}

/// Groups the samples by event (in `events` order) and checks the budgets.
pub fn summarize(events: &[(String, String)], samples: &[Sample]) -> Vec<EventReport> {
    let mut by_key: BTreeMap<(&str, &str), Vec<&Sample>> = BTreeMap::new();
    for s in samples {
        by_key.entry((&s.event, s.charm)).or_default().push(s);
    }
    let mut reports = Vec::new();
    for (event, hook) in events {
        let (Some(ops), Some(rust)) = (
            by_key.get(&(event.as_str(), "ops")),
            by_key.get(&(event.as_str(), "rust")),
        ) else {
            continue;
        };
        let (ops, rust) = (stats(ops), stats(rust));
        let speedup_excl_snap = ops.excl_snap_median_ms / rust.excl_snap_median_ms;
        let speedup_wall = ops.wall_median_ms / rust.wall_median_ms;
        let rss_ratio = match (ops.own_peak_max_mib, rust.own_peak_max_mib) {
            (Some(o), Some(r)) => o / r,
            _ => ops.ru_maxrss_max_mib / rust.ru_maxrss_max_mib,
        };
        reports.push(EventReport {
            event: event.clone(),
            hook: hook.clone(),
            latency_budget: Check {
                ok: speedup_excl_snap >= SPEEDUP_BUDGET,
                value: speedup_excl_snap,
                limit: SPEEDUP_BUDGET,
            },
            rss_budget: Check {
                ok: rss_ratio >= RSS_BUDGET,
                value: rss_ratio,
                limit: RSS_BUDGET,
            },
            calls_budget: Check {
                ok: rust.tool_calls_max <= ops.tool_calls_min,
                value: rust.tool_calls_max as f64,
                limit: ops.tool_calls_min as f64,
            },
            speedup_excl_snap,
            speedup_wall,
            rss_ratio,
            ops,
            rust,
        });
    }
    reports
}

/// Budget misses, one line each.
pub fn failures(reports: &[EventReport]) -> Vec<String> {
    let mut out = Vec::new();
    for r in reports {
        if !r.latency_budget.ok {
            out.push(format!(
                "{}: Rust only {:.1}x faster than ops excluding snap (budget {:.0}x)",
                r.event, r.speedup_excl_snap, SPEEDUP_BUDGET
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
                "{}: Rust makes {} hook-tool calls, ops {} (budget: no more than ops)",
                r.event, r.rust.tool_calls_max, r.ops.tool_calls_min
            ));
        }
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

fn mib(bytes: u64) -> String {
    format!("{:.2} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// Context printed above the tables.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    pub date_utc: String,
    pub machine: String,
    pub rounds: usize,
    pub update_status_per_round: usize,
    /// Every this many rounds ran under ptrace (0: none).
    pub rss_every: usize,
}

/// The Markdown report.
pub fn markdown(info: &RunInfo, artifacts: &Artifacts, reports: &[EventReport]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Run {} on {}; {} rounds (+1 warm-up; every {} under ptrace for RSS, not timed), update-status {}x per round; ops {} on Python {}.\n",
        info.date_utc,
        info.machine,
        info.rounds,
        if info.rss_every > 0 { format!("{}th", info.rss_every) } else { "none".to_string() },
        info.update_status_per_round,
        artifacts.ops_version,
        artifacts.python_version
    );
    md.push_str("**Wall time per hook, ms** (median / p95; *excl. snap*: minus the time inside the fake `snap` CLI)\n\n");
    md.push_str("| event | runs | ops | Rust | ops excl. snap | Rust excl. snap | speed-up excl. snap | ≥ 100x |\n");
    md.push_str("|---|---:|---:|---:|---:|---:|---:|:---:|\n");
    for r in reports {
        let _ = writeln!(
            md,
            "| {} | {} | {:.1} / {:.1} | {:.2} / {:.2} | {:.1} / {:.1} | {:.2} / {:.2} | {:.1}x | {} |",
            r.event,
            r.rust.runs,
            r.ops.wall_median_ms,
            r.ops.wall_p95_ms,
            r.rust.wall_median_ms,
            r.rust.wall_p95_ms,
            r.ops.excl_snap_median_ms,
            r.ops.excl_snap_p95_ms,
            r.rust.excl_snap_median_ms,
            r.rust.excl_snap_p95_ms,
            r.speedup_excl_snap,
            verdict(&r.latency_budget),
        );
    }
    let rss_label = if info.rss_every > 0 {
        "own peak RSS of the dispatch process (`VmHWM` at exit, from the rounds run under ptrace)"
    } else {
        "`wait4` `ru_maxrss`"
    };
    let _ = writeln!(
        md,
        "\n**Memory and calls per hook** (RSS: {rss_label}, max over runs; `wait4`: `ru_maxrss`, which also covers the hook tools it ran)\n"
    );
    md.push_str("| event | ops RSS MiB | Rust RSS MiB | ratio | ≥ 15x | wait4 ops / Rust MiB | hook-tool calls ops / Rust | ≤ ops | snapd requests ops / Rust |\n");
    md.push_str("|---|---:|---:|---:|:---:|---:|---:|:---:|---:|\n");
    for r in reports {
        let own = |s: &Stats| {
            s.own_peak_max_mib
                .map_or_else(|| "n/a".to_string(), |v| format!("{v:.1}"))
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {:.1}x | {} | {:.1} / {:.1} | {} / {} | {} | {} / {} |",
            r.event,
            own(&r.ops),
            own(&r.rust),
            r.rss_ratio,
            verdict(&r.rss_budget),
            r.ops.ru_maxrss_max_mib,
            r.rust.ru_maxrss_max_mib,
            range(r.ops.tool_calls_min, r.ops.tool_calls_max),
            range(r.rust.tool_calls_min, r.rust.tool_calls_max),
            verdict(&r.calls_budget),
            range(r.ops.snapd_requests_min, r.ops.snapd_requests_max),
            range(r.rust.snapd_requests_min, r.rust.snapd_requests_max),
        );
    }
    md.push_str("\n**Size**\n\n| | Rust | ops |\n|---|---:|---:|\n");
    let _ = writeln!(
        md,
        "| `dispatch` | {} (static, stripped) | 0.4 KiB shell script + the unit's Python |",
        mib(artifacts.rust_dispatch_bytes)
    );
    let _ = writeln!(
        md,
        "| `.charm` | {} | {} (charmcraft layout: src/ + venv/) |",
        mib(artifacts.rust_charm_bytes),
        mib(artifacts.ops_charm_bytes)
    );
    let _ = writeln!(
        md,
        "| unpacked | {} | {} |",
        mib(artifacts.rust_unpacked_bytes),
        mib(artifacts.ops_unpacked_bytes)
    );
    let fails = failures(reports);
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
mod tests {
    use super::*;

    #[test]
    fn median_and_nearest_rank_p95() {
        let mut v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(median(&mut v), 10.5);
        assert_eq!(percentile(&mut v, 0.95), 19.0);
        let mut one = vec![3.0];
        assert_eq!(percentile(&mut one, 0.95), 3.0);
        assert_eq!(median(&mut [5.0, 1.0, 3.0]), 3.0);
    }

    fn sample(charm: &'static str, wall_us: u64, calls: usize, kib: u64) -> Sample {
        Sample {
            round: 0,
            traced: false,
            event: "update-status".into(),
            hook: "update-status".into(),
            charm,
            wall_us,
            snap_us: 0,
            excl_snap_us: wall_us,
            tool_calls: calls,
            snap_calls: 0,
            snapd_requests: 2,
            own_peak_kib: Some(kib),
            ru_maxrss_kib: kib,
            exit: Some(0),
        }
    }

    #[test]
    fn budgets() {
        let events = [("update-status".to_string(), "update-status".to_string())];
        let traced = |mut s: Sample| {
            s.traced = true;
            s
        };
        let samples = [
            sample("ops", 200_000, 3, 30_000),
            sample("rust", 1_000, 3, 1_500),
            traced(sample("ops", 900_000, 3, 30_000)),
            traced(sample("rust", 900_000, 3, 1_500)),
        ];
        let r = &summarize(&events, &samples)[0];
        assert!(r.latency_budget.ok && r.rss_budget.ok && r.calls_budget.ok);
        assert!(failures(std::slice::from_ref(r)).is_empty());
        let samples = [
            sample("ops", 200_000, 3, 30_000),
            sample("rust", 4_000, 4, 2_500),
            traced(sample("ops", 200_000, 3, 30_000)),
            traced(sample("rust", 4_000, 4, 2_500)),
        ];
        let r = &summarize(&events, &samples)[0];
        assert!(!r.latency_budget.ok && !r.rss_budget.ok && !r.calls_budget.ok);
        assert_eq!(failures(std::slice::from_ref(r)).len(), 3);
        let md = markdown(
            &RunInfo {
                date_utc: "d".into(),
                machine: "m".into(),
                rounds: 1,
                update_status_per_round: 1,
                rss_every: 4,
            },
            &Artifacts {
                rust_dispatch_bytes: 1,
                rust_charm_bytes: 1,
                rust_unpacked_bytes: 1,
                ops_charm_bytes: 1,
                ops_unpacked_bytes: 1,
                python_version: "3".into(),
                ops_version: "2".into(),
            },
            std::slice::from_ref(r),
        );
        assert_eq!(md.matches("**FAIL**").count(), 3, "{md}");
    }
}
