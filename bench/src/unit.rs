//! One simulated Juju unit for one charm, like the end-to-end harness
//! (`microsample_e2e::harness`): its own directory with the hook-tool symlinks to the
//! compiled `fake-juju`, the charm directory, the fake Juju state (`FAKE_JUJU_DIR`) and its
//! own fake snapd (`fake-juju serve-snapd`) with the microsample workload. The links, the
//! fake snapd and the hook environment come from `microsample_e2e::juju_unit`. Like a
//! single-unit deployment, the unit has the machine's agent directory under the claim root
//! (`MICROSAMPLE_STATE_ROOT`), and its `fleet` peer relation (no peers yet) from
//! `fleet-relation-created` on ([`Unit::create_peer_relation`]; docs/juju.md#hook-order).

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Map, Value};

use microsample_e2e::http;
use microsample_e2e::juju_state::{self, JujuState, Relation};
use microsample_e2e::juju_unit::{self, DispatchEnv, UNIT_NAME};

use crate::launch;
use crate::prepare::Prepared;

/// Watchdog for one hook.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(120);

/// The two charms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    Ops,
    Rust,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ops => "ops",
            Kind::Rust => "rust",
        }
    }
}

/// A charm directory to deploy: its entries are linked into each unit's charm dir.
#[derive(Debug, Clone)]
pub struct CharmSource {
    pub kind: Kind,
    /// (name in the charm dir, target).
    pub entries: Vec<(String, PathBuf)>,
}

/// The peer endpoint, the id Juju gives its relation at deploy, and the application at its
/// other end (the unit's own).
pub const PEER_ENDPOINT: &str = "fleet";
pub const PEER_RELATION: &str = "fleet:0";
pub const PEER_APP: &str = "microsample";
/// The peer that joins late in a round.
pub const PEER_UNIT: &str = "microsample/1";
/// The COS relation the bench adds.
pub const COS_ENDPOINT: &str = "cos-agent";
pub const COS_RELATION: &str = "cos-agent:4";
pub const COS_APP: &str = "grafana-agent";
pub const COS_UNIT: &str = "grafana-agent/0";

/// One child the hook ran, as the fakes recorded it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToolCall {
    pub tool: String,
    pub args: Vec<String>,
}

impl ToolCall {
    /// `tool arg arg`.
    pub fn line(&self) -> String {
        std::iter::once(self.tool.as_str())
            .chain(self.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// What one hook run cost.
#[derive(Debug, Clone)]
pub struct HookRun {
    pub launched: launch::Launched,
    /// Time inside the fake `snap` CLI (sum of its calls' `elapsed_us`).
    pub snap_time: Duration,
    /// Every hook-tool and `snap` call, in order.
    pub calls: Vec<ToolCall>,
    /// Requests to the fake snapd (from the charm and from `snap`).
    pub snapd_requests: usize,
    pub stderr: String,
}

pub struct Unit {
    pub kind: Kind,
    pub root: PathBuf,
    tools_dir: PathBuf,
    charm_dir: PathBuf,
    state_dir: PathBuf,
    socket: PathBuf,
    snapd: Child,
    /// The port microsample's install hook gives the workload.
    pub workload_port: u16,
    calls_seen: usize,
    counter: u64,
}

impl Drop for Unit {
    fn drop(&mut self) {
        let _ = self.snapd.kill();
        let _ = self.snapd.wait();
        let _ = fs::remove_dir_all(&self.root);
    }
}

/// A TCP port free right now.
fn free_port() -> Result<u16, String> {
    TcpListener::bind(("0.0.0.0", 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(|e| format!("cannot find a free TCP port: {e}"))
}

fn io_err(what: &str, path: &Path) -> impl FnOnce(std::io::Error) -> String {
    let what = format!("cannot {what} {}", path.display());
    move |e| format!("{what}: {e}")
}

impl Unit {
    /// A fresh leader unit of `charm` in `root` (created; removed on drop), with the fake
    /// snapd started and nothing installed. `config` is the unit's charm config.
    pub fn new(
        charm: &CharmSource,
        root: PathBuf,
        fake_juju: &Path,
        config: impl FnOnce(u16) -> Map<String, Value>,
    ) -> Result<Unit, String> {
        let _ = fs::remove_dir_all(&root);
        let tools_dir = root.join("tools");
        let charm_dir = root.join("charm");
        let state_dir = root.join("state");
        for d in [&tools_dir, &charm_dir, &state_dir] {
            fs::create_dir_all(d).map_err(io_err("create", d))?;
        }
        // What Juju keeps on the machine while the unit exists: the charm's claim looks
        // for it (as in the end-to-end harness).
        juju_unit::make_agent_dir(&juju_unit::state_root(&root), UNIT_NAME)
            .map_err(io_err("create the agent dir under", &root))?;
        juju_unit::link_tools(fake_juju, &tools_dir, true)?;
        for (name, target) in &charm.entries {
            let link = charm_dir.join(name);
            symlink(target, &link).map_err(io_err("link", &link))?;
        }
        let workload_port = free_port()?;
        let state = JujuState {
            config: config(workload_port),
            ..JujuState::default()
        };
        juju_state::save(&state_dir, &state)?;

        let socket = root.join("snapd.socket");
        let snapd = juju_unit::start_fake_snapd(fake_juju, &socket, &root)?;
        let unit = Unit {
            kind: charm.kind,
            root,
            tools_dir,
            charm_dir,
            state_dir,
            socket,
            snapd,
            workload_port,
            calls_seen: 0,
            counter: 0,
        };
        unit.snapd_request(
            "PUT",
            "/fake/state",
            Some(&json!({ "install_port": workload_port })),
        )?;
        Ok(unit)
    }

    /// A request to the fake snapd: the `result` of its answer.
    pub fn snapd_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, String> {
        let resp = juju_unit::snapd_request(&self.socket, method, path, body)
            .map_err(|e| format!("fake snapd {method} {path}: {e}"))?;
        if resp.status != 200 {
            return Err(format!("fake snapd {method} {path}: HTTP {}", resp.status));
        }
        let value: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| format!("fake snapd {method} {path}: {e}"))?;
        Ok(value["result"].clone())
    }

    /// Sets a charm config value (as `juju config` does, before `config-changed`).
    pub fn set_config(&self, key: &str, value: Value) -> Result<(), String> {
        juju_state::update(&self.state_dir, |s: &mut JujuState| -> Result<(), String> {
            s.config.insert(key.to_string(), value);
            Ok(())
        })
    }

    /// Juju creates the peer relation, before any peer exists: the unit sees it from
    /// `fleet-relation-created` on (`install` runs before and sees none).
    pub fn create_peer_relation(&self) -> Result<(), String> {
        juju_state::update(&self.state_dir, |s: &mut JujuState| -> Result<(), String> {
            s.relations.insert(
                PEER_ENDPOINT.to_string(),
                vec![Relation {
                    id: PEER_RELATION.to_string(),
                    remote_app: PEER_APP.to_string(),
                    ..Relation::default()
                }],
            );
            Ok(())
        })
    }

    /// Juju's deploy sequence (`microsample_e2e::DEPLOY_HOOKS`, docs/juju.md#hook-order),
    /// untraced, each hook committed: `install`; the peer relation appears
    /// ([`Unit::create_peer_relation`]) and `fleet-relation-created` runs with its
    /// variables; `leader-elected`, `config-changed`, `start`. Fails naming the first hook
    /// that does not exit 0.
    pub fn deploy(&mut self) -> Result<(), String> {
        for hook in microsample_e2e::DEPLOY_HOOKS {
            let extra = if hook == microsample_e2e::PEER_RELATION_CREATED {
                self.create_peer_relation()?;
                juju_unit::relation_vars(PEER_RELATION, PEER_APP, "")
            } else {
                Vec::new()
            };
            let run = self.run_hook(hook, &extra, launch::Trace::No)?;
            if run.launched.exit != Some(0) {
                return Err(format!(
                    "{} {hook} failed: {}",
                    self.kind.name(),
                    run.stderr.trim_end()
                ));
            }
        }
        Ok(())
    }

    /// Relates the unit to a COS agent (`juju integrate microsample grafana-agent`).
    pub fn relate_cos(&self) -> Result<(), String> {
        juju_state::update(&self.state_dir, |s: &mut JujuState| -> Result<(), String> {
            s.relations
                .entry(COS_ENDPOINT.to_string())
                .or_default()
                .push(Relation {
                    id: COS_RELATION.to_string(),
                    remote_app: COS_APP.to_string(),
                    remote_units: [(COS_UNIT.to_string(), Default::default())].into(),
                    ..Relation::default()
                });
            Ok(())
        })
    }

    /// A second unit joins the peer relation (`juju add-unit`); with `reported`, its unit
    /// databag says what this unit's says (a peer on the same channel and revision, as
    /// after a finished move), else it is empty (the peer has not run a hook yet).
    ///
    /// The application databag gets the record of a finished move to `channel` if it has
    /// none, as an application that had peers before would (the fake `snap` has no
    /// `create-cohort`, which the leader runs for a move to a new target; see
    /// bench/README.md). Its shape is the charm's `fleet::Move` (src/charm/fleet.rs).
    pub fn peer_joins(&self, reported: bool, channel: &str) -> Result<(), String> {
        juju_state::update(&self.state_dir, |s: &mut JujuState| -> Result<(), String> {
            let relation = s
                .relations
                .get_mut(PEER_ENDPOINT)
                .and_then(|r| r.iter_mut().find(|r| r.id == PEER_RELATION))
                .ok_or("no peer relation")?;
            if relation.app_data.is_empty() {
                let done = json!({
                    "v": 1, "target": channel, "from": null, "cohort": null,
                    "turn": null, "halt": null, "done": 1, "units": 1,
                });
                relation
                    .app_data
                    .insert("microsample".to_string(), done.to_string());
            }
            let bag = if reported {
                relation.unit_data.clone()
            } else {
                Default::default()
            };
            relation.remote_units.insert(PEER_UNIT.to_string(), bag);
            Ok(())
        })
    }

    /// The unit's workload status (status, message).
    pub fn status(&self) -> Result<(String, String), String> {
        let s = juju_state::load(&self.state_dir)?.unit_status;
        Ok((s.status, s.message))
    }

    /// snapd's `tracking-channel` of microsample, if installed.
    pub fn tracking_channel(&self) -> Result<Option<String>, String> {
        let state = self.snapd_request("GET", "/fake/state", None)?;
        Ok(state["snap"]["tracking_channel"].as_str().map(String::from))
    }

    /// Whether microsample answers `Online` on its port.
    pub fn workload_online(&self) -> bool {
        http::tcp_request(
            &format!("127.0.0.1:{}", self.workload_port),
            "GET",
            "/",
            Duration::from_secs(5),
        )
        .is_ok_and(|r| r.status == 200 && r.text().trim() == "Online")
    }

    /// The environment Juju gives `dispatch` (docs/juju.md#environment), as the harness builds
    /// it, plus the test seams (`SNAPD_SOCKET`, `FAKE_JUJU_DIR`).
    fn env(&mut self, hook: &str) -> Vec<(String, String)> {
        self.counter += 1;
        DispatchEnv {
            root: &self.root,
            charm_dir: &self.charm_dir,
            tools_dir: &self.tools_dir,
            snapd_socket: &self.socket,
            state_dir: &self.state_dir,
            unit_name: UNIT_NAME,
            state_root: &juju_unit::state_root(&self.root),
            model_name: "bench",
            context_id: &format!("{UNIT_NAME}-{hook}-{:032x}", self.counter),
            hook_name: hook,
            dispatch_path: &format!("hooks/{hook}"),
        }
        .vars()
    }

    /// Hook `hook`'s environment plus `extra`.
    pub fn hook_env(&mut self, hook: &str, extra: &[(String, String)]) -> Vec<(String, String)> {
        let mut env = self.env(hook);
        env.extend(extra.iter().cloned());
        env
    }

    /// The charm directory (the hooks' cwd).
    pub fn charm_dir(&self) -> &Path {
        &self.charm_dir
    }

    /// A command for `program` with hook `hook`'s environment (plus `extra`), the charm
    /// directory as cwd and its output to files in the unit's directory.
    fn command(
        &mut self,
        program: &Path,
        hook: &str,
        extra: &[(String, String)],
    ) -> Result<Command, String> {
        let env = self.hook_env(hook, extra);
        let out_path = self.root.join("dispatch.out");
        let err_path = self.root.join("dispatch.err");
        let out = File::create(&out_path).map_err(io_err("create", &out_path))?;
        let err = File::create(&err_path).map_err(io_err("create", &err_path))?;
        let mut command = Command::new(program);
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.charm_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        Ok(command)
    }

    /// Runs `program` (e.g. `/bin/true`) exactly as a hook's `dispatch` is run: same
    /// environment, cwd, output files, process group and tracer.
    pub fn run_like_hook(
        &mut self,
        program: &Path,
        hook: &str,
        trace: launch::Trace,
    ) -> Result<launch::Launched, String> {
        let mut command = self.command(program, hook, &[])?;
        launch::run(&mut command, HOOK_TIMEOUT, trace)
            .map_err(|e| format!("cannot run {}: {e}", program.display()))
    }

    /// `perf stat --no-inherit -e task-clock` around hook `hook`'s `dispatch` (untraced):
    /// the run and the task clock of the `dispatch` process alone, ns. The hook's effects
    /// are committed as by [`Unit::run_hook`].
    pub fn run_hook_under_perf(
        &mut self,
        perf: &Path,
        hook: &str,
        program: Option<&Path>,
    ) -> Result<(launch::Launched, Option<u64>), String> {
        let out = self.root.join("perf.csv");
        let _ = fs::remove_file(&out);
        let dispatch = self.charm_dir.join("dispatch");
        let program = program.unwrap_or(&dispatch).to_path_buf();
        let mut command = self.command(perf, hook, &[])?;
        command
            .args(["stat", "--no-inherit", "-e", "task-clock", "-x", ",", "-o"])
            .arg(&out)
            .arg("--")
            .arg(&program);
        let launched = launch::run(&mut command, HOOK_TIMEOUT, launch::Trace::No)
            .map_err(|e| format!("cannot run perf: {e}"))?;
        juju_state::commit_hook_changes(&self.state_dir, launched.exit == Some(0))?;
        self.calls_seen = read_call_records(&self.state_dir).len();
        let csv = fs::read_to_string(&out).unwrap_or_default();
        Ok((launched, perf_task_clock_ns(&csv)))
    }

    /// Runs hook `hook` like the unit agent (with `extra` environment, e.g. a relation
    /// hook's), then commits (exit 0) or discards its port and relation changes.
    pub fn run_hook(
        &mut self,
        hook: &str,
        extra: &[(String, String)],
        trace: launch::Trace,
    ) -> Result<HookRun, String> {
        // Outside the timed window: clear the request log, open the output files.
        self.snapd_request("DELETE", "/fake/requests", None)?;
        let err_path = self.root.join("dispatch.err");
        let dispatch = self.charm_dir.join("dispatch");
        let mut command = self.command(&dispatch, hook, extra)?;
        let launched = launch::run(&mut command, HOOK_TIMEOUT, trace)
            .map_err(|e| format!("cannot run the {} dispatch: {e}", self.kind.name()))?;

        let ok = launched.exit == Some(0);
        juju_state::commit_hook_changes(&self.state_dir, ok)?;
        let calls = read_call_records(&self.state_dir);
        let new = calls.get(self.calls_seen..).unwrap_or_default();
        self.calls_seen = calls.len();
        let snap_us: u64 = new
            .iter()
            .filter(|c| c["tool"] == "snap")
            .filter_map(|c| c["elapsed_us"].as_u64())
            .sum();
        let calls = new
            .iter()
            .map(|c| ToolCall {
                tool: c["tool"].as_str().unwrap_or("?").to_string(),
                args: c["args"]
                    .as_array()
                    .map(|a| {
                        a.iter()
                            .map(|v| v.as_str().unwrap_or_default().to_string())
                            .collect()
                    })
                    .unwrap_or_default(),
            })
            .collect();
        let requests = self.snapd_request("GET", "/fake/requests", None)?;
        Ok(HookRun {
            snap_time: Duration::from_micros(snap_us),
            calls,
            snapd_requests: requests.as_array().map_or(0, Vec::len),
            stderr: fs::read_to_string(&err_path).unwrap_or_default(),
            launched,
        })
    }
}

/// The raw `calls.jsonl` records (with the fakes' `elapsed_us`, which
/// `juju_state::read_calls` does not keep).
fn read_call_records(dir: &Path) -> Vec<Value> {
    fs::read_to_string(dir.join(juju_state::CALLS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The task clock of `perf stat -x , -e task-clock` output, ns: the counter's running
/// time (4th field, ns), which for this software event is the count itself at full
/// resolution (the 1st field is the same in ms with two decimals).
pub fn perf_task_clock_ns(csv: &str) -> Option<u64> {
    csv.lines()
        .map(|l| l.split(',').collect::<Vec<_>>())
        .find(|f| f.get(2).is_some_and(|e| e.starts_with("task-clock")))
        .and_then(|f| {
            let ms: f64 = f.first()?.parse().ok()?;
            let ns: u64 = f.get(3)?.parse().ok()?;
            // The two must agree (to the 10 µs the ms figure is rounded to).
            ((ms * 1e6 - ns as f64).abs() <= 10_000.0).then_some(ns)
        })
}

/// The Rust charm's config in the bench: `edge`, and the port microsample's install hook
/// makes the workload listen on, so the charm has no reason to move the service.
pub fn rust_config(port: u16) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("channel".into(), json!("edge"));
    c.insert("port".into(), json!(port));
    c
}

/// The ops charm's config: `edge` (it ignores ports).
pub fn ops_config(_port: u16) -> Map<String, Value> {
    let mut c = Map::new();
    c.insert("channel".into(), json!("edge"));
    c
}

/// A fresh unit of each charm under `work` (`rust/`, `ops/`), not deployed yet.
pub fn pair(prepared: &Prepared, work: &Path) -> Result<(Unit, Unit), String> {
    let rust = Unit::new(
        &prepared.rust,
        work.join("rust"),
        &prepared.fake_juju,
        rust_config,
    )?;
    let ops = Unit::new(
        &prepared.ops,
        work.join("ops"),
        &prepared.fake_juju,
        ops_config,
    )?;
    Ok((rust, ops))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn perf_csv() {
        let csv = "# started on Thu Jan  1 00:00:00 2026\n\n0.61,msec,task-clock,613140,100.00,0.196,CPUs utilized\n";
        assert_eq!(perf_task_clock_ns(csv), Some(613_140));
        let csv = "1.36,msec,task-clock:u,1356274,100.00,,\n";
        assert_eq!(perf_task_clock_ns(csv), Some(1_356_274));
        assert_eq!(
            perf_task_clock_ns("<not counted>,msec,task-clock,0,0.00,,\n"),
            None
        );
        // The two fields disagree: not trusted.
        assert_eq!(
            perf_task_clock_ns("5.00,msec,task-clock,613140,100.00,,\n"),
            None
        );
        assert_eq!(perf_task_clock_ns(""), None);
    }
}
