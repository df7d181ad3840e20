//! One simulated Juju unit for one charm, like the end-to-end harness
//! (`tests/common/mod.rs`): its own directory with the hook-tool symlinks to the compiled
//! `fake-juju`, the charm directory, the fake Juju state (`FAKE_JUJU_DIR`) and its own fake
//! snapd (`fake-juju serve-snapd`) with the microsample workload.

use std::fs::{self, File};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::http;
use crate::juju_state::{self, JujuState};
use crate::launch;

/// Hook tools linked into the tools directory (the harness's list), plus `snap`.
pub const HOOK_TOOLS: [&str; 17] = [
    "status-set",
    "status-get",
    "config-get",
    "application-version-set",
    "juju-log",
    "is-leader",
    "open-port",
    "close-port",
    "opened-ports",
    "action-get",
    "action-set",
    "action-fail",
    "action-log",
    "relation-ids",
    "relation-set",
    "relation-get",
    "relation-list",
];

/// Juju version reported to the charms (the harness's).
pub const JUJU_VERSION: &str = "3.6.4";
pub const UNIT_NAME: &str = "microsample/0";
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
        for tool in HOOK_TOOLS.iter().chain(["snap"].iter()) {
            let link = tools_dir.join(tool);
            symlink(fake_juju, &link).map_err(io_err("link", &link))?;
        }
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
        let log_path = root.join("snapd.log");
        let log = File::create(&log_path).map_err(io_err("create", &log_path))?;
        let log2 = log.try_clone().map_err(io_err("open", &log_path))?;
        let snapd = Command::new(fake_juju)
            .arg("serve-snapd")
            .arg("--socket")
            .arg(&socket)
            .arg("--state")
            .arg(root.join("snapd-state.json"))
            .arg("--exit-with-pid")
            .arg(std::process::id().to_string())
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start the fake snapd: {e}"))?;
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
        let deadline = Instant::now() + Duration::from_secs(10);
        while http::unix_request(&unit.socket, "GET", "/fake/state", None, None).is_err() {
            if Instant::now() > deadline {
                return Err(format!(
                    "the fake snapd did not start; log:\n{}",
                    fs::read_to_string(&log_path).unwrap_or_default()
                ));
            }
            thread::sleep(Duration::from_millis(10));
        }
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
        let payload = body.map(Value::to_string);
        let resp = http::unix_request(
            &self.socket,
            method,
            path,
            payload.as_deref().map(str::as_bytes),
            Some(Duration::from_secs(30)),
        )
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

    /// The environment Juju gives `dispatch` (juju-contract.md §1.3), as the harness builds
    /// it, plus the test seams (`SNAPD_SOCKET`, `FAKE_JUJU_DIR`).
    fn env(&mut self, hook: &str) -> Vec<(String, String)> {
        self.counter += 1;
        let charm = self.charm_dir.display().to_string();
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.tools_dir.display());
        let context = format!("{UNIT_NAME}-{hook}-{:032x}", self.counter);
        let agent_socket = self.root.join("agent.socket").display().to_string();
        let vars: [(&str, &str); 25] = [
            ("CHARM_DIR", &charm),
            ("JUJU_CHARM_DIR", &charm),
            ("JUJU_CONTEXT_ID", &context),
            ("JUJU_HOOK_NAME", hook),
            ("JUJU_AGENT_SOCKET_ADDRESS", &agent_socket),
            ("JUJU_AGENT_SOCKET_NETWORK", "unix"),
            ("JUJU_UNIT_NAME", UNIT_NAME),
            ("JUJU_MODEL_UUID", "9d6a1f47-5b3e-4c0d-8e2a-1c7f3b9e4a21"),
            ("JUJU_MODEL_NAME", "bench"),
            ("JUJU_API_ADDRESSES", "10.0.0.2:17070"),
            ("JUJU_SLA", "unsupported"),
            ("JUJU_MACHINE_ID", "0"),
            ("JUJU_PRINCIPAL_UNIT", ""),
            ("JUJU_AVAILABILITY_ZONE", ""),
            ("CLOUD_API_VERSION", ""),
            ("JUJU_VERSION", JUJU_VERSION),
            ("JUJU_CHARM_HTTP_PROXY", ""),
            ("JUJU_CHARM_HTTPS_PROXY", ""),
            ("JUJU_CHARM_FTP_PROXY", ""),
            ("JUJU_CHARM_NO_PROXY", ""),
            ("PATH", &path),
            ("APT_LISTCHANGES_FRONTEND", "none"),
            ("DEBIAN_FRONTEND", "noninteractive"),
            ("LANG", "C.UTF-8"),
            ("TERM", "tmux-256color"),
        ];
        let mut env: Vec<(String, String)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        env.push(("SNAPD_SOCKET".into(), self.socket.display().to_string()));
        env.push(("FAKE_JUJU_DIR".into(), self.state_dir.display().to_string()));
        env.push(("JUJU_DISPATCH_PATH".into(), format!("hooks/{hook}")));
        env
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
