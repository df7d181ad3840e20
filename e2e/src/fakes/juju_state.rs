//! State shared by the fake hook tools, the test harness and the benchmark: the
//! `fake-juju` binary, the harness ([`crate::harness`]) and `bench/` all use this module of
//! the `microsample-e2e` library.
//!
//! Layout of `$FAKE_JUJU_DIR`:
//! - `state.json`: [`JujuState`], read and written by every hook tool under a lock;
//! - `calls.jsonl`: one [`Call`] per tool invocation (hook tools and the `snap` CLI);
//! - `state.lock/`: the lock directory (transient);
//! - `snap-hang`: if this file exists the fake `snap` CLI sleeps forever.
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The hook tools `fake-juju` plays (each records its calls in [`CALLS_FILE`]): the harness
/// and the benchmark link each of these names, and `snap`, to the `fake-juju` binary.
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

/// File name of the hook-tool state inside `$FAKE_JUJU_DIR`.
pub const STATE_FILE: &str = "state.json";
/// File name of the invocation log inside `$FAKE_JUJU_DIR`.
pub const CALLS_FILE: &str = "calls.jsonl";
/// Lock directory guarding read-modify-write cycles of [`STATE_FILE`].
pub const LOCK_DIR: &str = "state.lock";
/// If this file exists in `$FAKE_JUJU_DIR`, the fake `snap` CLI never returns.
pub const SNAP_HANG_FILE: &str = "snap-hang";

/// A workload or application status as `status-set` records it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub status: String,
    pub message: String,
    /// `status-data` (always empty for statuses set through `status-set`).
    pub data: Map<String, Value>,
}

/// One entry of the status history (`juju show-status-log`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct StatusEntry {
    /// True for `status-set --application`.
    pub application: bool,
    pub status: String,
    pub message: String,
    /// `"charm"` (set by `status-set`, in a hook or through `juju exec`) or `"agent"` (set by
    /// the harness playing the unit agent around hooks, docs/juju.md#agent-statuses, or between
    /// hooks).
    pub source: String,
    /// `JUJU_DISPATCH_PATH` of the hook that made the change (`hooks/install`, ...); `""`
    /// outside any hook or action of the charm (`juju exec`, the agent between hooks).
    pub context: String,
}

/// A `juju-log` record.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct LogRecord {
    /// Canonical loggo level name: TRACE, DEBUG, INFO, WARNING, ERROR, CRITICAL.
    pub level: String,
    pub message: String,
    /// `JUJU_DISPATCH_PATH` of the hook that logged it.
    pub context: String,
}

/// Whether a pending port change opens or closes a range.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortOp {
    Open,
    Close,
}

/// A port change recorded by `open-port`/`close-port`, applied when the hook succeeds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortChange {
    pub op: PortOp,
    /// Canonical range: `8080/tcp`, `8000-8010/udp`, `icmp`.
    pub range: String,
    /// Endpoint name, `""` for all endpoints.
    #[serde(default)]
    pub endpoint: String,
}

/// Opened ports of the unit.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Ports {
    /// Committed ranges grouped by endpoint (`""` = all endpoints), like Juju's
    /// `GroupedPortRanges`.
    pub committed: BTreeMap<String, Vec<String>>,
    /// Changes made during the running hook, in call order.
    pub pending: Vec<PortChange>,
}

/// The action context. Present while (or after) an action runs.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ActionState {
    pub name: String,
    pub id: String,
    /// Parameters as `action-get` returns them.
    pub params: Map<String, Value>,
    /// Results set with `action-set` (nested maps for dotted keys; values are strings).
    pub results: Map<String, Value>,
    /// Set by `action-fail`.
    pub failed: bool,
    /// Message set by `action-fail`.
    pub message: String,
    /// Messages sent with `action-log`.
    pub logs: Vec<String>,
}

/// One relation of an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Relation {
    /// `"<endpoint>:<n>"`, e.g. `"cos-agent:3"`.
    pub id: String,
    /// Name of the application at the other end.
    pub remote_app: String,
    /// This unit's databag (committed).
    pub unit_data: BTreeMap<String, String>,
    /// This application's databag (committed; writable by the leader).
    pub app_data: BTreeMap<String, String>,
    /// Remote units and their databags.
    pub remote_units: BTreeMap<String, BTreeMap<String, String>>,
    /// The remote application's databag.
    pub remote_app_data: BTreeMap<String, String>,
    /// This unit's databag as modified by `relation-set` in the running hook.
    pub pending_unit_data: Option<BTreeMap<String, String>>,
    /// This application's databag as modified by `relation-set --app` in the running hook.
    pub pending_app_data: Option<BTreeMap<String, String>>,
}

impl Relation {
    /// The numeric part of the id (`3` for `cos-agent:3`).
    pub fn number(&self) -> Option<i64> {
        self.id.rsplit(':').next().and_then(|n| n.parse().ok())
    }

    /// The endpoint part of the id (`cos-agent` for `cos-agent:3`).
    pub fn endpoint(&self) -> &str {
        self.id.rsplit_once(':').map_or("", |(e, _)| e)
    }

    /// This unit's databag as the running hook sees it (pending changes included).
    pub fn effective_unit_data(&self) -> &BTreeMap<String, String> {
        self.pending_unit_data.as_ref().unwrap_or(&self.unit_data)
    }

    /// This application's databag as the running hook sees it.
    pub fn effective_app_data(&self) -> &BTreeMap<String, String> {
        self.pending_app_data.as_ref().unwrap_or(&self.app_data)
    }
}

/// Make a hook tool fail: it prints `stdout`/`stderr` verbatim and exits with `exit`.
///
/// By default the tool fails without running (the agent never got the request). With
/// `after_run`, the tool runs first and its effect is applied (a `status-set` changes the
/// status), then it fails anyway, like a jujuc whose connection to the agent broke after
/// the agent acted (`ERROR connection is shut down`, exit 1); a call that the tool itself
/// rejects (bad arguments) still fails with the tool's own error.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ToolFault {
    pub exit: i32,
    pub stdout: String,
    pub stderr: String,
    /// Apply the call, then fail.
    pub after_run: bool,
}

/// What jujuc prints when its RPC connection to the unit agent is lost mid-call (Go's
/// `net/rpc` `ErrShutdown`, reported by jujuc as `ERROR <error>` with exit 1).
pub const CONNECTION_SHUT_DOWN: &str = "ERROR connection is shut down\n";

/// Everything the fake hook tools know about the unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JujuState {
    pub unit_name: String,
    pub leader: bool,
    pub unit_status: Status,
    pub app_status: Status,
    /// Unit agent status as the harness reports it (`idle`, `executing`, `error`).
    pub agent_status: Status,
    pub status_history: Vec<StatusEntry>,
    /// Whether `status-set` (unit) ever ran (drives the agent statuses of §1.6).
    pub status_set_ever: bool,
    /// Set by `application-version-set`; `None` until then.
    pub workload_version: Option<String>,
    /// Full settings map (defaults merged with user values). A `null` value means
    /// "no default and not set" (dropped by `config-get` unless `--all`).
    pub config: Map<String, Value>,
    pub ports: Ports,
    pub action: Option<ActionState>,
    /// endpoint -> relations.
    pub relations: BTreeMap<String, Vec<Relation>>,
    pub logs: Vec<LogRecord>,
    /// tool name -> injected failure.
    pub tool_faults: BTreeMap<String, ToolFault>,
}

impl Default for JujuState {
    fn default() -> Self {
        JujuState {
            unit_name: "microsample/0".to_string(),
            leader: true,
            unit_status: Status {
                status: "unknown".to_string(),
                ..Status::default()
            },
            app_status: Status {
                status: "unknown".to_string(),
                ..Status::default()
            },
            agent_status: Status {
                status: "idle".to_string(),
                ..Status::default()
            },
            status_history: Vec::new(),
            status_set_ever: false,
            workload_version: None,
            config: Map::new(),
            ports: Ports::default(),
            action: None,
            relations: BTreeMap::new(),
            logs: Vec::new(),
            tool_faults: BTreeMap::new(),
        }
    }
}

impl JujuState {
    /// The application name (`microsample` for `microsample/0`).
    pub fn app_name(&self) -> &str {
        self.unit_name
            .split_once('/')
            .map_or(self.unit_name.as_str(), |(a, _)| a)
    }

    /// Finds a relation by its numeric id.
    pub fn relation_by_number(&self, number: i64) -> Option<&Relation> {
        self.relations
            .values()
            .flatten()
            .find(|r| r.number() == Some(number))
    }

    /// Finds a relation by its numeric id, mutably.
    pub fn relation_by_number_mut(&mut self, number: i64) -> Option<&mut Relation> {
        self.relations
            .values_mut()
            .flatten()
            .find(|r| r.number() == Some(number))
    }

    /// Opened port ranges as `opened-ports` shows them: committed ranges merged with the
    /// pending changes of the running hook, unique, sorted by protocol then port.
    pub fn opened_ports_view(&self) -> BTreeMap<String, Vec<String>> {
        let mut grouped = self.ports.committed.clone();
        apply_port_changes(&mut grouped, &self.ports.pending);
        grouped
    }

    /// Committed opened ports (what `juju status` shows), unique and sorted.
    pub fn committed_ports(&self) -> Vec<String> {
        unique_sorted_ranges(&self.ports.committed)
    }
}

/// Applies open/close changes to grouped port ranges, like Juju's
/// `MergePendingOpenPortRanges`/`MergePendingClosePortRanges`.
pub fn apply_port_changes(grouped: &mut BTreeMap<String, Vec<String>>, changes: &[PortChange]) {
    for change in changes {
        match change.op {
            PortOp::Open => {
                let ranges = grouped.entry(change.endpoint.clone()).or_default();
                if !ranges.contains(&change.range) {
                    ranges.push(change.range.clone());
                }
            }
            PortOp::Close => {
                if let Some(ranges) = grouped.get_mut(&change.endpoint) {
                    ranges.retain(|r| r != &change.range);
                    if ranges.is_empty() {
                        grouped.remove(&change.endpoint);
                    }
                }
            }
        }
    }
}

/// All ranges of a grouping, de-duplicated and sorted by protocol, then from, then to.
pub fn unique_sorted_ranges(grouped: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut all: Vec<String> = Vec::new();
    for range in grouped.values().flatten() {
        if !all.contains(range) {
            all.push(range.clone());
        }
    }
    all.sort_by_key(|r| port_sort_key(r));
    all
}

/// Sort key of a canonical port range string: (protocol, from, to).
pub fn port_sort_key(range: &str) -> (String, i64, i64) {
    if range == "icmp" {
        return ("icmp".to_string(), -1, -1);
    }
    let (ports, proto) = range.split_once('/').unwrap_or((range, "tcp"));
    let (from, to) = ports.split_once('-').unwrap_or((ports, ports));
    (
        proto.to_string(),
        from.parse().unwrap_or(0),
        to.parse().unwrap_or(0),
    )
}

/// One invocation of a fake tool, as recorded in `calls.jsonl`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub tool: String,
    pub args: Vec<String>,
    /// Standard input, only if the tool read it (e.g. `relation-set --file -`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Exit code; `None` if the tool never returned (the `snap-hang` knob).
    #[serde(default)]
    pub exit: Option<i32>,
}

/// Path of the state file in `dir`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Reads the state; a missing file yields the default state.
pub fn load(dir: &Path) -> Result<JujuState, String> {
    let path = state_path(dir);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| format!("cannot parse {}: {e}", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JujuState::default()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Writes the state atomically (temporary file + rename).
pub fn save(dir: &Path, state: &JujuState) -> Result<(), String> {
    let path = state_path(dir);
    let data = serde_json::to_vec_pretty(state).map_err(|e| format!("cannot encode state: {e}"))?;
    let tmp = dir.join(format!(".{STATE_FILE}.{}.tmp", std::process::id()));
    fs::write(&tmp, data).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    fs::rename(&tmp, &path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A held lock on the state directory; released on drop.
pub struct StateLock {
    path: PathBuf,
}

impl Drop for StateLock {
    fn drop(&mut self) {
        let _ = fs::remove_dir(&self.path);
    }
}

/// Takes the state lock (a directory created atomically). A lock older than 10 s is
/// considered stale (its holder was killed) and broken.
pub fn lock(dir: &Path) -> Result<StateLock, String> {
    let path = dir.join(LOCK_DIR);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match fs::create_dir(&path) {
            Ok(()) => return Ok(StateLock { path }),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let stale = fs::metadata(&path)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok())
                    .is_some_and(|age| age > Duration::from_secs(10));
                if stale {
                    let _ = fs::remove_dir(&path);
                    continue;
                }
                if Instant::now() > deadline {
                    return Err(format!("timed out waiting for lock {}", path.display()));
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(e) => return Err(format!("cannot create lock {}: {e}", path.display())),
        }
    }
}

/// Read-modify-write of the state under the lock. The state is saved only if `f`
/// returns `Ok`.
pub fn update<R, E: From<String>>(
    dir: &Path,
    f: impl FnOnce(&mut JujuState) -> Result<R, E>,
) -> Result<R, E> {
    let _lock = lock(dir)?;
    let mut state = load(dir)?;
    let result = f(&mut state)?;
    save(dir, &state)?;
    Ok(result)
}

/// When this process started: set before `main` by the `.init_array` entry below, so
/// [`append_call`] can record how long the tool ran (the benchmark subtracts the time spent
/// inside the fake `snap` from a hook's wall time).
static PROCESS_START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();

#[used]
#[link_section = ".init_array"]
static RECORD_PROCESS_START: extern "C" fn() = {
    extern "C" fn record() {
        let _ = PROCESS_START.set(Instant::now());
    }
    record
};

/// Appends one invocation record to `calls.jsonl` (one `write` call per line, so
/// concurrent writers do not interleave), with `elapsed_us`: microseconds from process
/// start to now (the tool's own wall time, exec of the binary excluded).
pub fn append_call(dir: &Path, call: &Call) -> Result<(), String> {
    let mut record = serde_json::to_value(call).map_err(|e| format!("cannot encode call: {e}"))?;
    if let (Some(start), Value::Object(fields)) = (PROCESS_START.get(), &mut record) {
        let elapsed = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        fields.insert("elapsed_us".to_string(), Value::from(elapsed));
    }
    let mut line = serde_json::to_vec(&record).map_err(|e| format!("cannot encode call: {e}"))?;
    line.push(b'\n');
    let path = dir.join(CALLS_FILE);
    let mut file = fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    file.write_all(&line)
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Reads all invocation records (malformed lines are skipped).
pub fn read_calls(dir: &Path) -> Vec<Call> {
    fs::read_to_string(dir.join(CALLS_FILE))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// What the unit agent does with a hook's transactional changes once the hook process
/// has ended (docs/juju.md#exit-status): if `success` (dispatch exited 0) the pending port
/// changes and relation settings are committed, otherwise they are discarded. Either way
/// nothing stays pending. `status-set`, `application-version-set`, `juju-log` and
/// `action-log` are not transactional and are not affected.
pub fn commit_hook_changes(dir: &Path, success: bool) -> Result<(), String> {
    update(dir, |state: &mut JujuState| -> Result<(), String> {
        apply_hook_outcome(state, success);
        Ok(())
    })
}

/// In-memory form of [`commit_hook_changes`].
pub fn apply_hook_outcome(state: &mut JujuState, success: bool) {
    let pending = std::mem::take(&mut state.ports.pending);
    if success {
        apply_port_changes(&mut state.ports.committed, &pending);
    }
    for relation in state.relations.values_mut().flatten() {
        let unit = relation.pending_unit_data.take();
        let app = relation.pending_app_data.take();
        if success {
            if let Some(unit) = unit {
                relation.unit_data = unit;
            }
            if let Some(app) = app {
                relation.app_data = app;
            }
        }
    }
}
