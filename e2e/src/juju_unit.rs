//! The parts of a simulated Juju unit that the end-to-end harness ([`crate::harness`])
//! and the benchmark (`bench/src/unit.rs`) share: the hook-tool links to `fake-juju`, the
//! fake snapd process, requests to a snapd, and the environment Juju gives `dispatch`.
//!
//! Errors are returned as text: the harness panics with it, the bench reports it.

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::fakes::http::{self, ClientError, ClientResponse};
use crate::fakes::juju_state::HOOK_TOOLS;

/// Juju version reported to the charm.
pub const JUJU_VERSION: &str = "3.6.4";

/// Unit name of the simulated unit, unless it is given another ([`DispatchEnv::unit_name`]).
pub const UNIT_NAME: &str = "microsample/0";

/// Links every hook tool in `tools_dir` to the `fake-juju` binary, and `snap` too when
/// `fake_snap` (a unit on the real snapd uses the real `/usr/bin/snap` instead).
pub fn link_tools(fake_juju: &Path, tools_dir: &Path, fake_snap: bool) -> Result<(), String> {
    let snap: &[&str] = if fake_snap { &["snap"] } else { &[] };
    for tool in HOOK_TOOLS.iter().chain(snap) {
        let link = tools_dir.join(tool);
        symlink(fake_juju, &link).map_err(|e| format!("cannot link {}: {e}", link.display()))?;
    }
    Ok(())
}

/// Starts the fake snapd (`fake-juju serve-snapd`) on `socket`, with its state file
/// (`snapd-state.json`) and its log (`snapd.log`: stdout and stderr) in `dir`, exiting when
/// this process does; waits until it answers (10 s at most, else kills it and says why).
pub fn start_fake_snapd(fake_juju: &Path, socket: &Path, dir: &Path) -> Result<Child, String> {
    start_fake_snapd_with_store(fake_juju, socket, dir, None)
}

/// Like [`start_fake_snapd`], with the store kept in the file `store` shared with other
/// fake snapds (`serve-snapd --store`, see `fakes::store`) when given.
pub fn start_fake_snapd_with_store(
    fake_juju: &Path,
    socket: &Path,
    dir: &Path,
    store: Option<&Path>,
) -> Result<Child, String> {
    let log_path = dir.join("snapd.log");
    let log_err = |e: std::io::Error| format!("cannot open {}: {e}", log_path.display());
    let log = File::create(&log_path).map_err(log_err)?;
    let log2 = log.try_clone().map_err(log_err)?;
    let mut command = Command::new(fake_juju);
    command
        .arg("serve-snapd")
        .arg("--socket")
        .arg(socket)
        .arg("--state")
        .arg(dir.join("snapd-state.json"));
    if let Some(store) = store {
        command.arg("--store").arg(store);
    }
    let mut snapd = command
        .arg("--exit-with-pid")
        .arg(std::process::id().to_string())
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .spawn()
        .map_err(|e| format!("cannot start the fake snapd: {e}"))?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while http::unix_request(socket, "GET", "/fake/state", None, None).is_err() {
        if Instant::now() > deadline {
            let _ = snapd.kill();
            let _ = snapd.wait();
            return Err(format!(
                "the fake snapd did not start; log:\n{}",
                fs::read_to_string(&log_path).unwrap_or_default()
            ));
        }
        thread::sleep(Duration::from_millis(10));
    }
    Ok(snapd)
}

/// One request with an optional JSON body to the snapd on `socket` (fake or real), with a
/// 30 s timeout.
pub fn snapd_request(
    socket: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<ClientResponse, ClientError> {
    let payload = body.map(Value::to_string);
    http::unix_request(
        socket,
        method,
        path,
        payload.as_deref().map(str::as_bytes),
        Some(Duration::from_secs(30)),
    )
}

/// The variables Juju adds to a relation hook's environment (docs/juju.md#environment):
/// `JUJU_RELATION` (the endpoint, `relation_id` up to its `:`), `JUJU_RELATION_ID`,
/// `JUJU_REMOTE_APP` and `JUJU_REMOTE_UNIT` (empty for `-created`, `-broken` and a change of
/// the remote application's databag).
pub fn relation_vars(
    relation_id: &str,
    remote_app: &str,
    remote_unit: &str,
) -> Vec<(String, String)> {
    let endpoint = relation_id.split(':').next().unwrap_or(relation_id);
    [
        ("JUJU_RELATION", endpoint),
        ("JUJU_RELATION_ID", relation_id),
        ("JUJU_REMOTE_APP", remote_app),
        ("JUJU_REMOTE_UNIT", remote_unit),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// What the environment of one `dispatch` run is made of: see [`DispatchEnv::vars`].
pub struct DispatchEnv<'a> {
    /// The unit's directory (`JUJU_AGENT_SOCKET_ADDRESS` is its `agent.socket`).
    pub root: &'a Path,
    /// `CHARM_DIR` and `JUJU_CHARM_DIR`.
    pub charm_dir: &'a Path,
    /// The hook tools: first on `PATH`.
    pub tools_dir: &'a Path,
    /// `SNAPD_SOCKET`.
    pub snapd_socket: &'a Path,
    /// `FAKE_JUJU_DIR`: the fake hook tools' state.
    pub state_dir: &'a Path,
    /// `JUJU_UNIT_NAME` (e.g. [`UNIT_NAME`]).
    pub unit_name: &'a str,
    /// `MICROSAMPLE_STATE_ROOT`: the machine's `/var/lib` (see [`state_root`]), shared by
    /// the units on one machine.
    pub state_root: &'a Path,
    /// `JUJU_MODEL_NAME`.
    pub model_name: &'a str,
    /// `JUJU_CONTEXT_ID`.
    pub context_id: &'a str,
    /// `JUJU_HOOK_NAME` (empty for an action).
    pub hook_name: &'a str,
    /// `JUJU_DISPATCH_PATH`: `hooks/<hook>` or `actions/<action>`.
    pub dispatch_path: &'a str,
}

/// The machine's `/var/lib` for a unit rooted at `root` (the charm's claim lives under it,
/// and Juju keeps the unit's agent directory there while the unit exists).
pub fn state_root(root: &Path) -> std::path::PathBuf {
    root.join("var-lib")
}

/// Lays out what Juju keeps for `unit` on its machine: `<state root>/juju/agents/unit-<app>-<n>`.
pub fn make_agent_dir(state_root: &Path, unit: &str) -> std::io::Result<()> {
    let dir = format!("unit-{}", unit.replace('/', "-"));
    std::fs::create_dir_all(state_root.join("juju/agents").join(dir))
}

impl DispatchEnv<'_> {
    /// The environment Juju gives `dispatch` (docs/juju.md#environment), plus the test seams
    /// `SNAPD_SOCKET` and `FAKE_JUJU_DIR`.
    pub fn vars(&self) -> Vec<(String, String)> {
        let charm = self.charm_dir.display().to_string();
        let path = format!("{}:/usr/sbin:/usr/bin:/sbin:/bin", self.tools_dir.display());
        let agent_socket = self.root.join("agent.socket").display().to_string();
        let snapd_socket = self.snapd_socket.display().to_string();
        let state_dir = self.state_dir.display().to_string();
        let state_root = self.state_root.display().to_string();
        [
            ("CHARM_DIR", charm.as_str()),
            ("JUJU_CHARM_DIR", charm.as_str()),
            ("JUJU_CONTEXT_ID", self.context_id),
            ("JUJU_HOOK_NAME", self.hook_name),
            ("JUJU_AGENT_SOCKET_ADDRESS", agent_socket.as_str()),
            ("JUJU_AGENT_SOCKET_NETWORK", "unix"),
            ("JUJU_UNIT_NAME", self.unit_name),
            ("JUJU_MODEL_UUID", "9d6a1f47-5b3e-4c0d-8e2a-1c7f3b9e4a21"),
            ("JUJU_MODEL_NAME", self.model_name),
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
            ("PATH", path.as_str()),
            ("APT_LISTCHANGES_FRONTEND", "none"),
            ("DEBIAN_FRONTEND", "noninteractive"),
            ("LANG", "C.UTF-8"),
            ("TERM", "tmux-256color"),
            ("SNAPD_SOCKET", snapd_socket.as_str()),
            ("FAKE_JUJU_DIR", state_dir.as_str()),
            ("MICROSAMPLE_STATE_ROOT", state_root.as_str()),
            ("JUJU_DISPATCH_PATH", self.dispatch_path),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relation_hook_variables() {
        let get = |env: &[(String, String)], k: &str| {
            env.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
        };
        let env = relation_vars("cos-agent:4", "grafana-agent", "grafana-agent/0");
        assert_eq!(get(&env, "JUJU_RELATION").as_deref(), Some("cos-agent"));
        assert_eq!(
            get(&env, "JUJU_RELATION_ID").as_deref(),
            Some("cos-agent:4")
        );
        assert_eq!(
            get(&env, "JUJU_REMOTE_APP").as_deref(),
            Some("grafana-agent")
        );
        assert_eq!(
            get(&env, "JUJU_REMOTE_UNIT").as_deref(),
            Some("grafana-agent/0")
        );
        // `-created`: no remote unit, still set (empty), the remote application named.
        let env = relation_vars("fleet:0", "microsample", "");
        assert_eq!(env.len(), 4);
        assert_eq!(get(&env, "JUJU_RELATION").as_deref(), Some("fleet"));
        assert_eq!(get(&env, "JUJU_REMOTE_APP").as_deref(), Some("microsample"));
        assert_eq!(get(&env, "JUJU_REMOTE_UNIT").as_deref(), Some(""));
    }
}
