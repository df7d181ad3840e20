//! `cargo bench-charm --measure HOOK --dispatch A [--dispatch B ...]`: a quick A/B check of
//! `dispatch` builds on one hook, for finding cuts before a full run (whose table is the
//! one that counts).
//!
//! One unit per build (deployed, then related to COS, as the profile's), plus the packed
//! `dispatch`'s unhandled hook and `/bin/true` as references; every round runs each once,
//! the order rotating, traced like the rounds (own CPU from schedstat at the exit stop).
//! Prints the median and p90 of each.

use std::path::PathBuf;

use crate::launch::Trace;
use crate::prepare::Prepared;
use crate::unit::{CharmSource, Unit, COS_APP, COS_RELATION, COS_UNIT};
use microsample_e2e::juju_unit;

fn quantile(sorted: &[u64], q: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * q).round() as usize;
    sorted[i] as f64 / 1e6
}

pub fn run(
    prepared: &Prepared,
    hook: &str,
    unhandled: &str,
    builds: &[PathBuf],
    runs: usize,
) -> Result<(), String> {
    let work = std::env::temp_dir().join(format!("charm-bench-measure-{}", std::process::id()));
    let cos = juju_unit::relation_vars(COS_RELATION, COS_APP, COS_UNIT);
    let extra = if hook.starts_with("cos-agent-relation-") {
        cos.clone()
    } else {
        Vec::new()
    };
    let mut units = Vec::new();
    for (i, build) in builds.iter().enumerate() {
        let mut charm: CharmSource = prepared.rust.clone();
        for entry in &mut charm.entries {
            if entry.0 == "dispatch" {
                entry.1 = build.clone();
            }
        }
        let mut unit = Unit::new(
            &charm,
            work.join(format!("u{i}")),
            &prepared.fake_juju,
            crate::unit::rust_config,
        )?;
        unit.deploy()?;
        unit.relate_cos()?;
        unit.run_hook("cos-agent-relation-joined", &cos, Trace::No)?;
        units.push(unit);
    }
    // For perf stat and friends by hand: the hook's environment, as a shell script that
    // leaves the first unit standing until it is killed.
    if let Ok(path) = std::env::var("BENCH_MEASURE_ENV") {
        let mut script = format!("cd '{}'\n", units[0].charm_dir().display());
        for (k, v) in units[0].hook_env(hook, &extra) {
            script.push_str(&format!("export {k}='{}'\n", v.replace('\'', r"'\''")));
        }
        std::fs::write(&path, script).map_err(|e| format!("{path}: {e}"))?;
        eprintln!("bench: the hook's environment is in {path}; Ctrl-C to end");
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
    // Rows: each build's hook, the first build's unhandled hook, /bin/true.
    let rows = builds.len() + 2;
    let mut cpu: Vec<Vec<u64>> = vec![Vec::new(); rows];
    for round in 0..runs {
        for k in 0..rows {
            let row = (k + round) % rows;
            let launched = if row < builds.len() {
                let run = units[row].run_hook(hook, &extra, Trace::Yes)?;
                if run.launched.exit != Some(0) {
                    return Err(format!("{hook} failed: {}", run.stderr.trim_end()));
                }
                run.launched
            } else if row == builds.len() {
                units[0].run_hook(unhandled, &[], Trace::Yes)?.launched
            } else {
                units[0].run_like_hook(std::path::Path::new("/bin/true"), hook, Trace::Yes)?
            };
            if let Some(own) = launched.own {
                cpu[row].push(own.cpu_ns);
            }
        }
    }
    println!("| own CPU, ms | median | p90 |\n|---|---:|---:|");
    for (row, samples) in cpu.iter_mut().enumerate() {
        samples.sort_unstable();
        let name = if row < builds.len() {
            format!("{hook}: {}", builds[row].display())
        } else if row == builds.len() {
            format!("{unhandled} (first build)")
        } else {
            "/bin/true".to_string()
        };
        if samples.is_empty() {
            println!("| {name} | - | - |");
        } else {
            println!(
                "| {name} | {:.3} | {:.3} |",
                quantile(samples, 0.5),
                quantile(samples, 0.9)
            );
        }
    }
    drop(units);
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}
