//! One simulated Juju unit for one charm, like the end-to-end harness
//! (`microsample_e2e::harness`): its own directory with the hook-tool symlinks to the
//! compiled `fake-juju`, the charm directory, the fake Juju state (`FAKE_JUJU_DIR`) and its
//! own fake snapd (`fake-juju serve-snapd`) with the microsample workload. The links, the
//! fake snapd and the hook environment come from `microsample_e2e::juju_unit`.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{json, Map, Value};

use microsample_e2e::http;
use microsample_e2e::juju_state::{self, JujuState};
use microsample_e2e::juju_unit::{self, DispatchEnv, UNIT_NAME};

use crate::launch;

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

/// What one hook run cost.
#[derive(Debug, Clone)]
pub struct HookRun {
    pub launched: launch::Launched,
    /// Time inside the fake `snap` CLI (sum of its calls' `elapsed_us`).
    pub snap_time: Duration,
    /// Hook-tool calls (every tool but `snap`).
    pub tool_calls: usize,
    pub snap_calls: usize,
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

    /// Runs hook `hook` like the unit agent, then commits (exit 0) or discards its port
    /// and relation changes.
    pub fn run_hook(&mut self, hook: &str, trace: bool) -> Result<HookRun, String> {
        let env = self.env(hook);
        // Outside the timed window: clear the request log, open the output files.
        self.snapd_request("DELETE", "/fake/requests", None)?;
        let out_path = self.root.join("dispatch.out");
        let err_path = self.root.join("dispatch.err");
        let out = File::create(&out_path).map_err(io_err("create", &out_path))?;
        let err = File::create(&err_path).map_err(io_err("create", &err_path))?;
        let mut command = Command::new(self.charm_dir.join("dispatch"));
        command
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.charm_dir)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err);
        let launched = launch::run(&mut command, HOOK_TIMEOUT, trace)
            .map_err(|e| format!("cannot run the {} dispatch: {e}", self.kind.name()))?;

        let ok = launched.exit == Some(0);
        juju_state::commit_hook_changes(&self.state_dir, ok)?;
        let calls = read_call_records(&self.state_dir);
        let new = calls.get(self.calls_seen..).unwrap_or_default();
        self.calls_seen = calls.len();
        let snap: Vec<&Value> = new.iter().filter(|c| c["tool"] == "snap").collect();
        let snap_us: u64 = snap.iter().filter_map(|c| c["elapsed_us"].as_u64()).sum();
        let requests = self.snapd_request("GET", "/fake/requests", None)?;
        Ok(HookRun {
            snap_time: Duration::from_micros(snap_us),
            tool_calls: new.len() - snap.len(),
            snap_calls: snap.len(),
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
