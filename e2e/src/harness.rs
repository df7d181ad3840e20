//! End-to-end test harness: one simulated Juju unit running the charm's `dispatch` against
//! the fake hook tools, the fake `snap` CLI and a fake snapd (see [`crate::fakes`]).
//!
//! ```no_run
//! use microsample_e2e::Unit;
//!
//! let unit = Unit::new();
//! unit.set_config("port", serde_json::json!(microsample_e2e::free_port()));
//! // No peer relation is visible during `install`: the charm installs nothing and waits.
//! let install = unit.run_hook("install");
//! assert_eq!(install.exit, Some(0), "{}", install.stderr);
//! assert_eq!(unit.status().0, "waiting");
//! // `fleet-relation-created` makes `fleet:0` visible; the charm installs the snap.
//! let created = unit.run_hook("fleet-relation-created");
//! assert_eq!(created.exit, Some(0), "{}", created.stderr);
//! assert_eq!(unit.status().0, "active");
//! ```
//!
//! The peer relation follows Juju's hook order (docs/juju.md#hook-order,
//! docs/juju.md#relation-hooks): a new unit sees no `fleet` relation (`relation-ids fleet`
//! prints `[]`) until its `fleet-relation-created` runs, which first creates
//! [`PEER_RELATION_ID`] (no remote units, the remote application its own) and runs with the
//! relation hook variables. Juju runs nothing but `install` before that, so any other hook
//! on a unit without the relation panics: run [`Unit::run_install_hooks`] or [`deployed`]
//! first, or [`Unit::create_peer_relation`] for a unit deployed earlier.
//!
//! Every `Unit` lives in its own temporary directory with its own snapd socket, so tests
//! can run in parallel. The fake workload listens on the port from the snap config; the
//! harness makes microsample's install hook pick a free port (`install_port`) instead of
//! 8080, and tests should configure the charm's `port` with [`free_port`].
//!
//! [`Unit::with_real_snapd`] builds the same unit against the machine's real snapd
//! (`/run/snapd.socket`) and the real `/usr/bin/snap`: only the hook tools are fakes. Such a
//! unit has no fake snapd, so the `/fake/` control API (`snapd_put`, `set_store`, ...) is
//! not available and [`HookRun::snapd_requests`] stays empty; [`Unit::snapd_request`]
//! talks to the real daemon. [`Unit::with_real_snap_cli`] keeps the fake snapd but puts the
//! real `/usr/bin/snap` on the hook `PATH`, pointed at the fake snapd with
//! `SNAPPY_GLOBAL_ROOT`: the paths a real snapd cannot take here (a successful install).
//! See `tests/real_snapd.rs` and `.ci/real-snapd.sh`.
//!
//! [`Unit::with_options`] names the unit (`JUJU_UNIT_NAME`, default `microsample/0`), lets
//! its fake snapd share one store with other units' ([`UnitOptions::store`]: a fleet of
//! machines, see [`crate::fleet`]), or puts it on another unit's machine
//! ([`UnitOptions::machine_of`]: the same snapd, `snap` and `/var/lib`, so the same claim,
//! with both units' agent directories; see `tests/e2e_shared.rs`).

pub use crate::fakes::{http, juju_state};
pub use crate::juju_unit;

use std::collections::HashSet;
use std::fs;
use std::io::{Read, Write};
use std::net::TcpListener;
use std::os::unix::fs::symlink;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Deserialize;
use serde_json::{json, Map, Value};

pub use juju_state::{ActionState, Call, JujuState, LogRecord, Relation, StatusEntry, ToolFault};

use crate::charm_dir::{self, CharmDirMode, DirSnapshot, ImmutableGuard};
use juju_unit::UNIT_NAME;

/// How [`Unit::with_options`] builds a unit; `UnitOptions::default()` is [`Unit::new`].
#[derive(Default, Clone, Copy)]
pub struct UnitOptions<'a> {
    /// `JUJU_UNIT_NAME`; [`UNIT_NAME`] when `None`.
    pub name: Option<&'a str>,
    /// The store file this unit's fake snapd shares with other fake snapds (channels,
    /// revisions, cohorts: see `fakes::store`); its own store when `None`.
    pub store: Option<&'a Path>,
    /// Deploy the unit on that unit's machine: it uses that unit's fake snapd (and so its
    /// snap, workload and store) and its `/var/lib` ([`Unit::state_root`], where the claim
    /// and both agent directories live), and starts no snapd of its own. Its charm
    /// directory, hook tools and Juju state are its own.
    pub machine_of: Option<&'a Unit>,
    /// The port microsample's install hook gives the service (`install_port`); a free port
    /// when `None`. Ignored with `machine_of`.
    pub install_port: Option<u16>,
}

/// The charm's peer endpoint (`peers:` in charmcraft.yaml).
pub const PEER_ENDPOINT: &str = "fleet";

/// The id of a unit's peer relation in the single-unit harness: `fleet:0`.
pub const PEER_RELATION_ID: &str = "fleet:0";
const PEER_RELATION_NUMBER: u32 = 0;

/// The hook that makes the peer relation visible to a new unit.
pub const PEER_RELATION_CREATED: &str = "fleet-relation-created";

/// Juju's deploy sequence for a single leader unit (docs/juju.md#hook-order): `install`,
/// the peer relation's `-created`, `leader-elected`, `config-changed`, `start`.
pub const DEPLOY_HOOKS: [&str; 5] = [
    "install",
    PEER_RELATION_CREATED,
    "leader-elected",
    "config-changed",
    "start",
];

/// Default watchdog for one hook or action run.
pub const DEFAULT_HOOK_TIMEOUT: Duration = Duration::from_secs(60);

/// The real snapd's socket (Debian's `snapd` started by `.ci/real-snapd.sh`).
pub const REAL_SNAPD_SOCKET: &str = "/run/snapd.socket";

/// The real `snap` CLI.
pub const REAL_SNAP: &str = "/usr/bin/snap";

/// Whether the real snapd answers on [`REAL_SNAPD_SOCKET`]: its version, or why not.
pub fn real_snapd_version() -> Result<String, String> {
    let resp = http::unix_request(
        Path::new(REAL_SNAPD_SOCKET),
        "GET",
        "/v2/system-info",
        None,
        Some(Duration::from_secs(10)),
    )
    .map_err(|e| format!("GET /v2/system-info on {REAL_SNAPD_SOCKET}: {e}"))?;
    let body: Value = serde_json::from_slice(&resp.body).map_err(|e| {
        format!(
            "GET /v2/system-info on {REAL_SNAPD_SOCKET}: HTTP {} with a body that is not JSON ({e}): {}",
            resp.status,
            resp.text()
        )
    })?;
    match body["result"]["version"].as_str() {
        Some(version) if resp.status == 200 => Ok(version.to_string()),
        _ => Err(format!(
            "GET /v2/system-info on {REAL_SNAPD_SOCKET}: HTTP {}: {body}",
            resp.status
        )),
    }
}

/// The workspace root: the charm's repository (`charmcraft.yaml`, `src/`).
pub fn workspace_root() -> &'static Path {
    let e2e = Path::new(env!("CARGO_MANIFEST_DIR"));
    e2e.parent().unwrap_or(e2e)
}

/// Path of the fake-juju multi-call binary: `$MICROSAMPLE_FAKE_JUJU` when set and not
/// empty, else the one cargo built for this package's tests, next to the test executable's
/// `deps/` directory (`<target>/debug/deps/<test>` -> `<target>/debug/fake-juju`: what
/// `env!("CARGO_BIN_EXE_fake-juju")` names in an integration test, which a library cannot
/// use).
pub fn fake_juju_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("MICROSAMPLE_FAKE_JUJU").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("cannot find the test executable");
    let profile_dir = exe
        .ancestors()
        .find(|a| a.file_name().is_some_and(|n| n == "deps"))
        .and_then(Path::parent)
        .or_else(|| exe.parent())
        .expect("the test executable has no directory");
    let bin = profile_dir.join("fake-juju");
    assert!(
        bin.is_file(),
        "{} is missing: run the tests of the microsample-e2e package with cargo (cargo test \
         -p microsample-e2e builds fake-juju), or set MICROSAMPLE_FAKE_JUJU",
        bin.display()
    );
    bin
}

/// The charm binary under test: `$MICROSAMPLE_DISPATCH` when set and not empty (CI: the
/// dispatch extracted from the packed .charm), else the workspace's debug `dispatch`,
/// built once per test process ([`build_dispatch`]).
pub fn dispatch_bin() -> PathBuf {
    match std::env::var_os("MICROSAMPLE_DISPATCH") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            static BUILT: OnceLock<PathBuf> = OnceLock::new();
            BUILT
                .get_or_init(|| build_dispatch().unwrap_or_else(|e| panic!("{e}")))
                .clone()
        }
    }
}

/// Builds the charm's `dispatch` (`cargo build -p microsample-charm --bin dispatch`, debug,
/// from the workspace root, in the same target directory) and returns its path: the one
/// cargo reports, else `<target dir>/debug/dispatch`. This package cannot ask cargo for
/// another package's binary (`CARGO_BIN_EXE_*` is per package), hence the nested build; it
/// is a no-op when `dispatch` is fresh.
pub fn build_dispatch() -> Result<PathBuf, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let out = Command::new(&cargo)
        .args([
            "build",
            "--quiet",
            "--message-format=json-render-diagnostics",
            "-p",
            "microsample-charm",
            "--bin",
            "dispatch",
        ])
        .current_dir(workspace_root())
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", Path::new(&cargo).display()))?;
    if !out.status.success() {
        return Err(format!(
            "cargo build -p microsample-charm --bin dispatch failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    // cargo's JSON messages name the executable it produced (whatever the target dir).
    let reported = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "dispatch")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from));
    let path = reported.unwrap_or_else(|| target_dir().join("debug").join("dispatch"));
    if !path.is_file() {
        return Err(format!(
            "cargo built dispatch, but {} does not exist",
            path.display()
        ));
    }
    Ok(path)
}

/// The cargo target directory: `$CARGO_TARGET_DIR`, else the one this test executable
/// was built in (`<target>/debug/deps/<test>` -> `<target>`).
pub fn target_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            workspace_root().join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| {
            exe.ancestors()
                .find(|a| a.file_name().is_some_and(|n| n == "deps"))
                .and_then(|deps| deps.parent()?.parent())
                .map(Path::to_path_buf)
        })
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// A TCP port that is free on all interfaces right now and was not handed out before
/// in this test process.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<Option<HashSet<u16>>> = Mutex::new(None);
    loop {
        let port = TcpListener::bind(("0.0.0.0", 0))
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("cannot find a free TCP port");
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if given.get_or_insert_with(HashSet::new).insert(port) {
            return port;
        }
    }
}

/// Result of one hook or action run.
#[derive(Debug, Clone)]
pub struct HookRun {
    /// Exit code, `None` if killed by a signal.
    pub exit: Option<i32>,
    /// Terminating signal, if any.
    pub signal: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    /// Tool invocations (hook tools and `snap`) made during this run only.
    pub calls: Vec<Call>,
    /// snapd API requests received during this run only (from the charm or `snap`).
    pub snapd_requests: Vec<SnapdRequest>,
    pub duration: Duration,
    /// For actions: the action state after the run (params, results, failed, logs).
    pub action: Option<ActionState>,
}

impl HookRun {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit == Some(0)
    }

    /// Invocations of one tool during the run.
    pub fn calls_to(&self, tool: &str) -> Vec<&Call> {
        self.calls.iter().filter(|c| c.tool == tool).collect()
    }
}

/// The two hooks Juju runs first on a new unit ([`Unit::run_install_hooks`]).
#[derive(Debug, Clone)]
pub struct InstallRuns {
    /// `install`: no peer relation visible yet.
    pub install: HookRun,
    /// `fleet-relation-created`: the first hook that sees the peer relation.
    pub relation_created: HookRun,
}

/// One request received by the fake snapd.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct SnapdRequest {
    pub method: String,
    pub path: String,
    #[serde(default)]
    pub query: String,
    /// Request body (first 4096 bytes).
    #[serde(default)]
    pub body: String,
}

/// Result of one `snap` command run by [`Unit::run_snap`].
#[derive(Debug, Clone)]
pub struct SnapRun {
    /// Exit code, `None` if killed by a signal (or by the watchdog).
    pub exit: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub duration: Duration,
}

/// A simulated unit: temp dir, tools, charm dir, fake state and a fake snapd process (or
/// the machine's real snapd, see [`Unit::with_real_snapd`]).
pub struct Unit {
    /// Removes the unit's directory when the unit is dropped.
    _dir: tempfile::TempDir,
    pub root: PathBuf,
    pub tools_dir: PathBuf,
    pub charm_dir: PathBuf,
    /// `FAKE_JUJU_DIR`.
    pub state_dir: PathBuf,
    /// snapd socket (`SNAPD_SOCKET`): the fake snapd's, or [`REAL_SNAPD_SOCKET`].
    pub socket: PathBuf,
    /// The fake snapd this unit started; `None` for a unit on the real snapd or on another
    /// unit's machine.
    snapd: Option<Child>,
    /// The unit runs on the real snapd and `snap`.
    real_snapd: bool,
    /// `JUJU_UNIT_NAME`.
    unit_name: String,
    /// The machine's `/var/lib` (`MICROSAMPLE_STATE_ROOT`).
    state_root: PathBuf,
    /// `SNAPPY_GLOBAL_ROOT` given to hooks, for the real `snap` on the fake snapd.
    snap_root: Option<PathBuf>,
    hook_timeout: Mutex<Duration>,
    charm_dir_mode: Mutex<CharmDirMode>,
    counter: AtomicU64,
}

impl Drop for Unit {
    fn drop(&mut self) {
        if let Some(snapd) = self.snapd.as_mut() {
            let _ = snapd.kill();
            let _ = snapd.wait();
        }
        if *self
            .charm_dir_mode
            .get_mut()
            .unwrap_or_else(|e| e.into_inner())
            != CharmDirMode::Writable
        {
            // The per-run guard already did; a directory left immutable cannot be removed.
            charm_dir::clear_immutable(&self.charm_dir);
        }
    }
}

fn yaml_to_json(v: &serde_yaml::Value) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

fn write_yaml(path: &Path, value: &serde_yaml::Value) {
    let text = serde_yaml::to_string(value).expect("cannot render YAML");
    fs::write(path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
}

/// Generates metadata.yaml, config.yaml, actions.yaml and manifest.yaml from
/// charmcraft.yaml (like charmcraft/`cargo pack`) and returns the config defaults.
fn write_charm_files(charm_dir: &Path) -> Map<String, Value> {
    let source = workspace_root().join("charmcraft.yaml");
    let text = fs::read_to_string(&source)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", source.display()));
    let doc: serde_yaml::Value = serde_yaml::from_str(&text).expect("invalid charmcraft.yaml");
    let get = |k: &str| doc.get(k).cloned();

    let mut meta = serde_yaml::Mapping::new();
    for key in [
        "name",
        "title",
        "summary",
        "description",
        "assumes",
        "provides",
        "requires",
        "peers",
        "subordinate",
        "extra-bindings",
        "storage",
        "resources",
    ] {
        if let Some(v) = get(key) {
            meta.insert(key.into(), v);
        }
    }
    write_yaml(
        &charm_dir.join("metadata.yaml"),
        &serde_yaml::Value::Mapping(meta),
    );

    let mut defaults = Map::new();
    if let Some(config) = get("config") {
        write_yaml(&charm_dir.join("config.yaml"), &config);
        if let Some(serde_yaml::Value::Mapping(options)) = config.get("options") {
            for (name, option) in options {
                let Some(name) = name.as_str() else { continue };
                if let Some(default) = option.get("default") {
                    defaults.insert(name.to_string(), yaml_to_json(default));
                }
            }
        }
    }
    if let Some(actions) = get("actions") {
        write_yaml(&charm_dir.join("actions.yaml"), &actions);
    }
    fs::write(
        charm_dir.join("manifest.yaml"),
        "bases:\n- name: ubuntu\n  channel: '24.04'\n  architectures:\n  - amd64\n",
    )
    .expect("cannot write manifest.yaml");
    defaults
}

impl Unit {
    /// A fresh leader unit with the charm's config defaults, no snap installed and a
    /// running fake snapd.
    pub fn new() -> Unit {
        Unit::with_options(UnitOptions::default())
    }

    /// A fresh unit with the charm's config defaults and no snap installed, named, on a
    /// machine and with a store as `options` say (see [`UnitOptions`]). It is the leader
    /// of its application in its own hook-tool state (`is-leader`), like [`Unit::new`].
    pub fn with_options(options: UnitOptions<'_>) -> Unit {
        let unit = Unit::create(false, &options);
        if options.machine_of.is_none() {
            let port = options.install_port.unwrap_or_else(free_port);
            unit.snapd_put(json!({ "install_port": port }));
        }
        unit
    }

    /// A fresh leader unit with the charm's config defaults on this machine's real snapd:
    /// no fake snapd, `SNAPD_SOCKET=/run/snapd.socket`, and a `PATH` with the fake hook
    /// tools but the real `/usr/bin/snap` (no fake `snap`). Panics, saying why, when the
    /// real snapd does not answer or `/usr/bin/snap` is missing.
    pub fn with_real_snapd() -> Unit {
        if let Err(e) = real_snapd_version() {
            panic!(
                "the real snapd is not answering on {REAL_SNAPD_SOCKET}: {e}\n\
                 Run these tests through .ci/real-snapd.sh (as root), which installs snapd and \
                 starts /usr/lib/snapd/snapd with SNAPD_STANDBY_WAIT set."
            );
        }
        assert!(
            Path::new(REAL_SNAP).is_file(),
            "{REAL_SNAP} is missing: install Debian's snapd package (.ci/real-snapd.sh does)"
        );
        Unit::create(true, &UnitOptions::default())
    }

    /// A fresh unit like [`Unit::new`] (fake snapd, fake store, fake workload) whose hooks
    /// find the real `/usr/bin/snap` instead of the fake one. The real CLI has no socket
    /// variable, so hooks get `SNAPPY_GLOBAL_ROOT=<root>/snap-root`, whose `run/snapd.socket`
    /// leads to the fake snapd (the CLI's other paths move there too: it says
    /// `<root>/snap-root/snap/bin` in its PATH warning). Needs no real snapd, and no root.
    pub fn with_real_snap_cli() -> Unit {
        assert!(
            Path::new(REAL_SNAP).is_file(),
            "{REAL_SNAP} is missing: install Debian's snapd package (.ci/real-snapd.sh does)"
        );
        let mut unit = Unit::new();
        fs::remove_file(unit.tools_dir.join("snap")).expect("cannot remove the fake snap");
        let snap_root = unit.root.join("snap-root");
        fs::create_dir_all(snap_root.join("run")).expect("cannot create the snap root");
        symlink(&unit.socket, snap_root.join("run/snapd.socket"))
            .expect("cannot link the snapd socket");
        unit.snap_root = Some(snap_root);
        unit
    }

    /// Whether this unit runs against the real snapd and `snap`.
    pub fn uses_real_snapd(&self) -> bool {
        self.real_snapd
    }

    /// `JUJU_UNIT_NAME` of this unit.
    pub fn unit_name(&self) -> &str {
        &self.unit_name
    }

    /// The machine's `/var/lib` (`MICROSAMPLE_STATE_ROOT`): the claim lives in its
    /// `microsample-charm/`, the agent directories in its `juju/agents/`.
    pub fn state_root(&self) -> &Path {
        &self.state_root
    }

    /// The unit's agent directory, `<state root>/juju/agents/unit-<app>-<n>`, which Juju
    /// keeps while the unit is deployed (docs/juju.md#unit-agent-directory).
    pub fn agent_dir(&self) -> PathBuf {
        self.state_root
            .join("juju/agents")
            .join(format!("unit-{}", self.unit_name.replace('/', "-")))
    }

    /// Removes the unit's agent directory, as Juju does when the unit is gone from the
    /// machine (or leaves it, e.g. `juju remove-unit --force` without the charm's `remove`).
    pub fn remove_agent_dir(&self) {
        fs::remove_dir_all(self.agent_dir()).expect("cannot remove the agent dir");
    }

    /// The machine-wide claim (`<state root>/microsample-charm/claim.json`), parsed; `None`
    /// when there is none.
    pub fn claim(&self) -> Option<Value> {
        let path = self.state_root.join("microsample-charm/claim.json");
        let text = fs::read_to_string(&path).ok()?;
        Some(
            serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not JSON ({e}): {text}", path.display())),
        )
    }

    fn create(real_snapd: bool, options: &UnitOptions<'_>) -> Unit {
        let unit_name = options.name.unwrap_or(UNIT_NAME).to_string();
        let dir = tempfile::Builder::new()
            .prefix("msunit-")
            .tempdir()
            .expect("cannot create temp dir");
        let root = dir.path().to_path_buf();
        let tools_dir = root.join("tools");
        let charm_dir = root.join("charm");
        let state_dir = root.join("state");
        for d in [&tools_dir, &charm_dir, &state_dir] {
            fs::create_dir_all(d).expect("cannot create unit dirs");
        }
        let state_root = match options.machine_of {
            Some(host) => host.state_root.clone(),
            None => juju_unit::state_root(&root),
        };
        juju_unit::make_agent_dir(&state_root, &unit_name)
            .expect("cannot create the unit's agent dir");
        let bin = fake_juju_bin();
        juju_unit::link_tools(&bin, &tools_dir, !real_snapd).unwrap_or_else(|e| panic!("{e}"));
        symlink(dispatch_bin(), charm_dir.join("dispatch")).expect("cannot link dispatch");
        let defaults = write_charm_files(&charm_dir);
        let state = JujuState {
            unit_name: unit_name.clone(),
            config: defaults,
            ..JujuState::default()
        };
        juju_state::save(&state_dir, &state).expect("cannot write state");

        let (socket, snapd) = if real_snapd {
            (PathBuf::from(REAL_SNAPD_SOCKET), None)
        } else if let Some(host) = options.machine_of {
            assert!(
                !host.real_snapd,
                "units sharing a machine share its fake snapd"
            );
            (host.socket.clone(), None)
        } else {
            let mut socket = root.join("snapd.socket");
            if socket.as_os_str().len() > 100 {
                socket = std::env::temp_dir().join(format!(
                    "msunit-{}-{}.sock",
                    std::process::id(),
                    unique_suffix()
                ));
            }
            let snapd = juju_unit::start_fake_snapd_with_store(&bin, &socket, &root, options.store)
                .unwrap_or_else(|e| panic!("{e}"));
            (socket, Some(snapd))
        };
        Unit {
            _dir: dir,
            root,
            tools_dir,
            charm_dir,
            state_dir,
            socket,
            snapd,
            real_snapd,
            unit_name,
            state_root,
            snap_root: None,
            hook_timeout: Mutex::new(DEFAULT_HOOK_TIMEOUT),
            charm_dir_mode: Mutex::new(CharmDirMode::Writable),
            counter: AtomicU64::new(0),
        }
    }

    /// Changes the watchdog of later runs.
    pub fn set_hook_timeout(&self, timeout: Duration) {
        *self.hook_timeout.lock().unwrap_or_else(|e| e.into_inner()) = timeout;
    }

    /// How later hook and action runs find the charm directory: writable, read-only (a
    /// read-only bind mount in the hook's own mount namespace) or immutable (`chattr +i`
    /// while `dispatch` runs); see [`crate::charm_dir`]. Panics, saying why, when this
    /// machine cannot do it (read-only needs `unshare -m` as root; immutable is checked
    /// at the next run).
    pub fn set_charm_dir_mode(&self, mode: CharmDirMode) {
        if mode == CharmDirMode::ReadOnly {
            charm_dir::check_read_only_supported(&self.charm_dir);
        }
        *self
            .charm_dir_mode
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = mode;
    }

    /// The current [`CharmDirMode`].
    pub fn charm_dir_mode(&self) -> CharmDirMode {
        *self
            .charm_dir_mode
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// Every file, directory and symlink below the charm directory, with contents and
    /// permission bits: compare two with `==` or [`DirSnapshot::diff`].
    pub fn charm_dir_snapshot(&self) -> DirSnapshot {
        DirSnapshot::of(&self.charm_dir)
    }

    /// Panics, listing what changed, unless the charm directory is as in `before`.
    pub fn assert_charm_dir_unchanged(&self, before: &DirSnapshot) {
        let changes = before.diff(&self.charm_dir_snapshot());
        assert!(
            changes.is_empty(),
            "the charm directory {} changed:\n{}",
            self.charm_dir.display(),
            changes.join("\n")
        );
    }

    // -----------------------------------------------------------------------------------
    // Juju side

    /// The hook-tool state.
    pub fn juju_state(&self) -> JujuState {
        juju_state::load(&self.state_dir).expect("cannot read fake Juju state")
    }

    /// Modifies the hook-tool state (under its lock).
    pub fn update_juju_state(&self, f: impl FnOnce(&mut JujuState)) {
        juju_state::update(&self.state_dir, |s: &mut JujuState| -> Result<(), String> {
            f(s);
            Ok(())
        })
        .expect("cannot update fake Juju state");
    }

    /// Sets a charm config value (`juju config microsample key=value`); `Value::Null`
    /// resets it to "unset".
    pub fn set_config(&self, key: &str, value: Value) {
        self.update_juju_state(|s| {
            s.config.insert(key.to_string(), value);
        });
    }

    /// Makes the unit leader or not.
    pub fn set_leader(&self, leader: bool) {
        self.update_juju_state(|s| s.leader = leader);
    }

    /// Makes a hook tool fail without acting: it prints `stderr` and exits with `exit`.
    pub fn fail_tool(&self, tool: &str, exit: i32, stderr: &str) {
        self.update_juju_state(|s| {
            s.tool_faults.insert(
                tool.to_string(),
                ToolFault {
                    exit,
                    stdout: String::new(),
                    stderr: stderr.to_string(),
                    after_run: false,
                },
            );
        });
    }

    /// Makes a hook tool act, then fail: its effect is applied (a `status-set` changes the
    /// status and the history), then it prints `stderr` and exits with `exit` (see
    /// [`ToolFault::after_run`]). Calls the tool rejects by itself still fail its own way.
    pub fn fail_tool_after_applying(&self, tool: &str, exit: i32, stderr: &str) {
        self.update_juju_state(|s| {
            s.tool_faults.insert(
                tool.to_string(),
                ToolFault {
                    exit,
                    stdout: String::new(),
                    stderr: stderr.to_string(),
                    after_run: true,
                },
            );
        });
    }

    /// `status-set` applies the status, then fails as when jujuc loses its connection to
    /// the agent: stderr `ERROR connection is shut down`, exit 1. Until
    /// [`Unit::clear_tool_fault`].
    pub fn status_set_applies_then_fails(&self) {
        self.fail_tool_after_applying("status-set", 1, juju_state::CONNECTION_SHUT_DOWN);
    }

    /// Removes an injected fault of one hook tool.
    pub fn clear_tool_fault(&self, tool: &str) {
        self.update_juju_state(|s| {
            s.tool_faults.remove(tool);
        });
    }

    /// Sets the unit's workload status the way the unit agent does on its own (between
    /// hooks, or around them: `maintenance`, `unknown`, `error`, `terminated`...): history
    /// source `agent`, no hook context. Does not count as the charm having set a status.
    pub fn set_status_as_agent(&self, status: &str, message: &str) {
        self.record_status("agent", status, message);
    }

    /// Sets the unit's workload status the way `juju exec --unit microsample/0 --
    /// status-set <status> <message>` does: through the hook-tool API (source `charm`), but
    /// outside any hook of the charm (no `JUJU_DISPATCH_PATH`, context `""`). Like a
    /// `juju exec` context, it does not change the agent's "the charm set a status" flag
    /// that drives docs/juju.md#agent-statuses (only hooks persist it). Panics on a status
    /// `status-set` would refuse.
    pub fn set_status_via_juju_exec(&self, status: &str, message: &str) {
        assert!(
            ["maintenance", "blocked", "waiting", "active"].contains(&status),
            "status-set refuses {status:?}: expected one of [maintenance blocked waiting active]"
        );
        self.record_status("charm", status, message);
    }

    fn record_status(&self, source: &str, status: &str, message: &str) {
        self.update_juju_state(|s| set_unit_status(s, source, "", status, message));
    }

    /// Adds a relation `<endpoint>:<number>` with the given remote units.
    pub fn add_relation(
        &self,
        endpoint: &str,
        number: u32,
        remote_app: &str,
        remote_units: &[&str],
    ) {
        self.update_juju_state(|s| {
            s.relations
                .entry(endpoint.to_string())
                .or_default()
                .push(Relation {
                    id: format!("{endpoint}:{number}"),
                    remote_app: remote_app.to_string(),
                    remote_units: remote_units
                        .iter()
                        .map(|u| (u.to_string(), Default::default()))
                        .collect(),
                    ..Relation::default()
                });
        });
    }

    /// The peer relation as the unit's hooks see it; `None` before `fleet-relation-created`.
    pub fn peer_relation(&self) -> Option<Relation> {
        let state = self.juju_state();
        state.relations.get(PEER_ENDPOINT)?.first().cloned()
    }

    /// Creates the peer relation [`PEER_RELATION_ID`] as Juju does for every unit of an
    /// application with a peer endpoint: no remote units, the remote application the unit's
    /// own. Does nothing when the unit already has a peer relation. Running
    /// `fleet-relation-created` does this first; call it directly only for a unit deployed
    /// earlier (e.g. by a previous charm revision), whose `fleet-relation-created` has run.
    pub fn create_peer_relation(&self) {
        if self.peer_relation().is_none() {
            let app = self.juju_state().app_name().to_string();
            self.add_relation(PEER_ENDPOINT, PEER_RELATION_NUMBER, &app, &[]);
        }
    }

    /// What the unit agent knows of the peer relation as hook `name` starts: for
    /// `fleet-relation-created` it creates the relation ([`Unit::create_peer_relation`]) and
    /// returns the relation hook variables; any other hook but `install` must find the
    /// relation there already (docs/juju.md#hook-order), else this panics.
    fn peer_relation_before(&self, name: &str) -> Vec<(String, String)> {
        if name == PEER_RELATION_CREATED {
            self.create_peer_relation();
        }
        let Some(relation) = self.peer_relation() else {
            assert!(
                name == "install",
                "{}: Juju runs no `{name}` before `{PEER_RELATION_CREATED}` (only `install`, \
                 docs/juju.md#hook-order), and every later hook sees the peer relation: run \
                 Unit::run_install_hooks() or deployed() first, or Unit::create_peer_relation() \
                 for a unit deployed earlier",
                self.unit_name
            );
            return Vec::new();
        };
        if name == PEER_RELATION_CREATED {
            juju_unit::relation_vars(&relation.id, &relation.remote_app, "")
        } else {
            Vec::new()
        }
    }

    /// Workload status (status, message).
    pub fn status(&self) -> (String, String) {
        let s = self.juju_state().unit_status;
        (s.status, s.message)
    }

    /// Application status (status, message).
    pub fn app_status(&self) -> (String, String) {
        let s = self.juju_state().app_status;
        (s.status, s.message)
    }

    /// Unit agent status (`idle`, `executing`, `error` with `hook failed: "x"`).
    pub fn agent_status(&self) -> (String, String) {
        let s = self.juju_state().agent_status;
        (s.status, s.message)
    }

    /// Every status change, oldest first (charm's `status-set` and the agent's own).
    pub fn status_history(&self) -> Vec<StatusEntry> {
        self.juju_state().status_history
    }

    /// The workload version set with `application-version-set`.
    pub fn workload_version(&self) -> Option<String> {
        self.juju_state().workload_version
    }

    /// Committed opened ports (`8080/tcp`), sorted.
    pub fn opened_ports(&self) -> Vec<String> {
        self.juju_state().committed_ports()
    }

    /// `juju-log` records.
    pub fn logs(&self) -> Vec<LogRecord> {
        self.juju_state().logs
    }

    /// All tool invocations since the unit was created.
    pub fn all_calls(&self) -> Vec<Call> {
        juju_state::read_calls(&self.state_dir)
    }

    /// Makes the fake `snap` CLI hang forever (or not).
    pub fn set_snap_hang(&self, hang: bool) {
        let path = self.state_dir.join(juju_state::SNAP_HANG_FILE);
        if hang {
            fs::write(path, "").expect("cannot create snap-hang");
        } else {
            let _ = fs::remove_file(path);
        }
    }

    fn context_id(&self, name: &str) -> String {
        format!(
            "{}-{name}-{:016x}{:016x}",
            self.unit_name,
            unique_suffix(),
            self.counter.fetch_add(1, Ordering::SeqCst)
        )
    }

    /// The environment Juju gives `dispatch` (docs/juju.md#environment) plus the test seams
    /// (and `SNAPPY_GLOBAL_ROOT` for the real `snap` on the fake snapd).
    fn base_env(
        &self,
        context_name: &str,
        dispatch_path: &str,
        hook_name: &str,
    ) -> Vec<(String, String)> {
        let mut env = juju_unit::DispatchEnv {
            root: &self.root,
            charm_dir: &self.charm_dir,
            tools_dir: &self.tools_dir,
            snapd_socket: &self.socket,
            state_dir: &self.state_dir,
            unit_name: &self.unit_name,
            state_root: &self.state_root,
            model_name: "test",
            context_id: &self.context_id(context_name),
            hook_name,
            dispatch_path,
        }
        .vars();
        if let Some(root) = &self.snap_root {
            env.push(("SNAPPY_GLOBAL_ROOT".into(), root.display().to_string()));
        }
        env
    }

    /// Runs hook `name` (e.g. `install`, `config-changed`) the way the unit agent does,
    /// then commits (exit 0) or discards (else) its port and relation changes.
    pub fn run_hook(&self, name: &str) -> HookRun {
        self.run_hook_with_env(name, &[])
    }

    /// The two hooks Juju runs first on a new unit: `install` (no peer relation visible),
    /// then `fleet-relation-created` (the relation appears, see [`Unit::run_hook`]). Panics
    /// unless `install` exits 0: Juju retries a failed `install` before anything else.
    pub fn run_install_hooks(&self) -> InstallRuns {
        let install = self.run_hook("install");
        ok(&install);
        let relation_created = self.run_hook(PEER_RELATION_CREATED);
        InstallRuns {
            install,
            relation_created,
        }
    }

    /// Like [`Unit::run_hook`] with extra environment (e.g. `JUJU_RELATION_ID`,
    /// `JUJU_REMOTE_UNIT` for relation hooks), which overrides the harness's own.
    ///
    /// `fleet-relation-created` first creates the peer relation (when the unit has none)
    /// and runs with its relation variables; any other hook but `install` panics on a unit
    /// without the peer relation (see the module documentation).
    pub fn run_hook_with_env(&self, name: &str, extra: &[(&str, &str)]) -> HookRun {
        let dispatch_path = format!("hooks/{name}");
        let relation_vars = self.peer_relation_before(name);
        self.update_juju_state(|s| {
            s.action = None;
            let agent = |s: &mut JujuState, status: &str, message: &str| {
                set_unit_status(s, "agent", &dispatch_path, status, message)
            };
            match name {
                "install" if !s.status_set_ever => {
                    agent(s, "maintenance", "installing charm software")
                }
                "stop" => agent(s, "maintenance", "stopping charm software"),
                "remove" => agent(s, "maintenance", "cleaning up prior to charm deletion"),
                _ => {}
            }
            if name != "update-status" {
                s.agent_status = juju_state::Status {
                    status: "executing".to_string(),
                    message: format!("running {name} hook"),
                    data: Map::new(),
                };
            }
        });
        let mut env = self.base_env(name, &dispatch_path, name);
        env.extend(relation_vars);
        env.retain(|(k, _)| !extra.iter().any(|(x, _)| x == k));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let run = self.execute(&env, name);
        let ok = run.success();
        self.update_juju_state(|s| {
            juju_state::apply_hook_outcome(s, ok);
            let set_unit = |s: &mut JujuState, status: &str| {
                s.unit_status = juju_state::Status {
                    status: status.to_string(),
                    ..Default::default()
                };
                s.status_history.push(StatusEntry {
                    application: false,
                    status: status.to_string(),
                    message: String::new(),
                    source: "agent".to_string(),
                    context: format!("hooks/{name}"),
                });
            };
            if ok {
                s.agent_status = juju_state::Status {
                    status: "idle".to_string(),
                    ..Default::default()
                };
                match name {
                    "start" if !s.status_set_ever => set_unit(s, "unknown"),
                    "stop" => set_unit(s, "maintenance"),
                    "remove" => set_unit(s, "terminated"),
                    _ => {}
                }
            } else {
                s.agent_status = juju_state::Status {
                    status: "error".to_string(),
                    message: format!("hook failed: \"{name}\""),
                    data: Map::new(),
                };
            }
        });
        run
    }

    /// Runs action `name` with `params` (a JSON object).
    pub fn run_action(&self, name: &str, params: Value) -> HookRun {
        let id = (self.counter.fetch_add(1, Ordering::SeqCst) + 1).to_string();
        let params = match params {
            Value::Object(m) => m,
            Value::Null => Map::new(),
            other => panic!("action params must be a JSON object, got {other}"),
        };
        self.update_juju_state(|s| {
            s.action = Some(ActionState {
                name: name.to_string(),
                id: id.clone(),
                params,
                ..ActionState::default()
            });
        });
        let mut env = self.base_env(name, &format!("actions/{name}"), "");
        env.push(("JUJU_ACTION_NAME".into(), name.to_string()));
        env.push(("JUJU_ACTION_UUID".into(), id.clone()));
        env.push(("JUJU_ACTION_TAG".into(), format!("action-{id}")));
        let mut run = self.execute(&env, &format!("action {name}"));
        let ok = run.success();
        self.update_juju_state(|s| juju_state::apply_hook_outcome(s, ok));
        run.action = self.juju_state().action;
        run
    }

    /// Runs `snap <args>` as the charm would during a hook: the `snap` found on the hook's
    /// `PATH` (the fake one, or `/usr/bin/snap` on the real snapd), the hook environment
    /// (no terminal, no `COLUMNS`), stdin from /dev/null. Killed after 150 s (the real CLI
    /// retries a GET for 120 s while snapd is unreachable).
    pub fn run_snap(&self, args: &[&str]) -> SnapRun {
        self.run_snap_with_env(args, &[])
    }

    /// Like [`Unit::run_snap`] with extra environment (e.g. `SNAPPY_GLOBAL_ROOT` for the
    /// real CLI, `SNAPD_SOCKET` for the fake one).
    pub fn run_snap_with_env(&self, args: &[&str], extra: &[(&str, &str)]) -> SnapRun {
        let mut env = self.base_env("snap", "hooks/update-status", "update-status");
        env.retain(|(k, _)| !extra.iter().any(|(x, _)| x == k));
        env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let path = env
            .iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let program = path
            .split(':')
            .map(|dir| Path::new(dir).join("snap"))
            .find(|p| p.exists())
            .unwrap_or_else(|| panic!("no `snap` on the hook PATH {path}"));
        let mut snap = self
            .start(&program, args, &env)
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let status = snap.wait(Duration::from_secs(150));
        SnapRun {
            exit: status.and_then(|s| s.code()),
            stdout: snap.stdout.join().unwrap_or_default(),
            stderr: snap.stderr.join().unwrap_or_default(),
            duration: snap.start.elapsed(),
        }
    }

    /// Starts `program` the way the unit agent starts a hook: with `env` only, in the charm
    /// directory, stdin from /dev/null, in its own process group; its output is collected.
    fn start(
        &self,
        program: &Path,
        args: &[&str],
        env: &[(String, String)],
    ) -> std::io::Result<Started> {
        let start = Instant::now();
        let mut child = Command::new(program)
            .args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .current_dir(&self.charm_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()?;
        Ok(Started {
            stdout: reader(child.stdout.take()),
            stderr: reader(child.stderr.take()),
            child,
            start,
        })
    }

    fn execute(&self, env: &[(String, String)], what: &str) -> HookRun {
        let calls_before = juju_state::read_calls(&self.state_dir).len();
        let requests_before = self.snapd_requests().len();
        let timeout = *self.hook_timeout.lock().unwrap_or_else(|e| e.into_inner());
        let program = self.charm_dir.join("dispatch");
        // Dropped (the flag removed) when the run ends, panics included.
        let _immutable = match self.charm_dir_mode() {
            CharmDirMode::ImmutableDir => Some(ImmutableGuard::apply(&self.charm_dir, false)),
            CharmDirMode::Immutable => Some(ImmutableGuard::apply(&self.charm_dir, true)),
            _ => None,
        };
        let started = if self.charm_dir_mode() == CharmDirMode::ReadOnly {
            let (unshare, args) = charm_dir::read_only_command(&self.charm_dir, &program);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            self.start(&unshare, &args, env)
        } else {
            self.start(&program, &[], env)
        };
        let mut dispatch =
            started.unwrap_or_else(|e| panic!("cannot run dispatch for {what}: {e}"));
        let Some(status) = dispatch.wait(timeout) else {
            let stderr = dispatch.stderr.join().unwrap_or_default();
            panic!(
                "dispatch for {what} did not finish within {timeout:?} (killed); stderr:\n{stderr}"
            );
        };
        let duration = dispatch.start.elapsed();
        // Like the unit agent, do not let stray children outlive the hook.
        kill_group(dispatch.child.id());
        let stdout = dispatch.stdout.join().unwrap_or_default();
        let stderr = dispatch.stderr.join().unwrap_or_default();
        let calls = juju_state::read_calls(&self.state_dir)
            .into_iter()
            .skip(calls_before)
            .collect();
        let snapd_requests = self
            .snapd_requests()
            .into_iter()
            .skip(requests_before)
            .collect();
        HookRun {
            exit: status.code(),
            signal: status.signal(),
            stdout,
            stderr,
            calls,
            snapd_requests,
            duration,
            action: None,
        }
    }

    // -----------------------------------------------------------------------------------
    // snapd side

    /// A request to this unit's snapd (fake or real); returns (HTTP status, parsed body).
    pub fn snapd_request(&self, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
        let resp = juju_unit::snapd_request(&self.socket, method, path, body)
            .unwrap_or_else(|e| panic!("snapd request {method} {path} failed: {e}"));
        let value = serde_json::from_slice(&resp.body).unwrap_or(Value::Null);
        (resp.status, value)
    }

    /// Panics when this unit has no fake snapd to control.
    fn fake_only(&self, what: &str) {
        assert!(
            !self.uses_real_snapd(),
            "{what} needs the fake snapd; this unit runs on the real snapd"
        );
    }

    /// Merges fields into the fake snapd state (`PUT /fake/state`).
    pub fn snapd_put(&self, patch: Value) -> Value {
        self.fake_only("snapd_put");
        let (status, body) = self.snapd_request("PUT", "/fake/state", Some(&patch));
        assert_eq!(status, 200, "PUT /fake/state {patch} failed: {body}");
        body["result"].clone()
    }

    /// The whole fake snapd state (`GET /fake/state`): `snap`, `channels`, faults,
    /// `changes`, `requests`, and `workload` {port, running, error, calls}.
    pub fn snapd_state(&self) -> Value {
        self.fake_only("snapd_state");
        let (_, body) = self.snapd_request("GET", "/fake/state", None);
        body["result"].clone()
    }

    /// Replaces the fake store's channel map, e.g.
    /// `json!({"latest/edge": {"revision": 40, "version": "1.1"}})`.
    pub fn set_store(&self, channels: Value) {
        self.snapd_put(json!({ "channels": channels }));
    }

    /// Store unreachable: install/refresh fail with snapd's error for it (by default the
    /// one the real snapd 2.57.6 gives when `api.snapcraft.io` does not resolve:
    /// `cannot install "microsample": Post "https://api.snapcraft.io/v2/snaps/refresh":
    /// dial tcp: lookup api.snapcraft.io on 10.255.255.53:53: no such host`).
    pub fn set_store_down(&self, down: bool) {
        self.snapd_put(json!({ "store_down": down }));
    }

    /// What the unreachable store fails with (the text after `cannot install
    /// "microsample": `), e.g. `persistent network error: Post "...": dial tcp: lookup
    /// api.snapcraft.io on 10.6.49.1:53: dial udp 10.6.49.1:53: connect: network is
    /// unreachable`; `None` restores the default. Applies while the store is down.
    pub fn set_store_error(&self, detail: Option<&str>) {
        self.snapd_put(json!({ "store_error": detail }));
    }

    /// Device not seeded yet (409 on install/refresh/remove).
    pub fn set_seeding(&self, seeding: bool) {
        self.snapd_put(json!({ "seeding": seeding }));
    }

    /// A conflicting change of this kind is in progress (409 on writes).
    pub fn set_conflict(&self, change_kind: Option<&str>) {
        self.snapd_put(json!({ "conflict": change_kind }));
    }

    /// Every new change ends in Error with this reason.
    pub fn set_change_fails(&self, reason: Option<&str>) {
        self.snapd_put(json!({ "change_fails": reason }));
    }

    /// Fault of `GET /v2/snaps/microsample` (http500, invalid_json, truncated_body,
    /// huge_body, hang, close), for `count` requests or forever.
    pub fn set_get_snap_fault(&self, fault: Option<&str>, count: Option<u32>) {
        self.snapd_put(json!({ "get_snap_fault": fault, "get_snap_fault_count": count }));
    }

    /// Workload fault (http500, hang, close, dead).
    pub fn set_workload_fault(&self, fault: Option<&str>) {
        self.snapd_put(json!({ "workload_fault": fault }));
    }

    /// Installs microsample directly (as if done earlier), tracking `channel` and
    /// listening on `port`.
    pub fn preinstall_snap(&self, channel: &str, port: u16) {
        let state = self.snapd_state();
        let release = &state["channels"][channel];
        let revision = release["revision"].as_u64().unwrap_or(1).to_string();
        let version = release["version"]
            .as_str()
            .unwrap_or("0+git.49ff7aa")
            .to_string();
        self.snapd_put(json!({"snap": {
            "revision": revision,
            "version": version,
            "channel": channel,
            "tracking_channel": channel,
            "config": {"port": port},
            "enabled": true,
            "active": true,
        }}));
    }

    /// Installs microsample from a file, as `snap install --dangerous
    /// ./microsample_x1.snap` would have (as if done earlier): revision `x1`, no snap id,
    /// no publisher, `channel` empty, no `tracking-channel`, listening on `port`. A
    /// refresh of it fails with `snap-local` (`snap refresh`: `local snap "microsample" is
    /// unknown to the store, use --amend to proceed anyway`, exit 1) unless `--amend`.
    pub fn sideload_snap(&self, port: u16) {
        self.snapd_put(json!({"snap": {
            "revision": "x1",
            "version": "0+git.57e56f2",
            "channel": "",
            "tracking_channel": "",
            "sideloaded": true,
            "cohort_key": "",
            "config": {"port": port},
            "enabled": true,
            "active": true,
        }}));
    }

    /// Replaces the fake store's channel map with [`store_with_track_1_0`] and installs
    /// microsample (as if done earlier) tracking `1.0/stable`, listening on `port`: a
    /// refresh with a bare risk (`--channel=edge`) then stays on track `1.0`.
    pub fn preinstall_tracking_1_0_stable(&self, port: u16) {
        self.set_store(store_with_track_1_0());
        self.preinstall_snap("1.0/stable", port);
    }

    /// Makes this machine another architecture (`arm64`...): the fake store's releases
    /// are all amd64, so installs and refreshes get `snap-architecture-not-available`
    /// (`snap "microsample" is not available on stable for this architecture (arm64) but
    /// exists on other architectures (amd64).`).
    pub fn set_architecture(&self, arch: &str) {
        self.snapd_put(json!({ "architecture": arch }));
    }

    /// Creates a cohort key for microsample as `snap create-cohort microsample` does
    /// (`POST /v2/cohorts`): installs and refreshes with `--cohort=<key>` get the revisions
    /// the channels have now, until [`Unit::advance_store_clock`] moves 90 days on.
    pub fn create_cohort(&self) -> String {
        self.fake_only("create_cohort");
        let (status, body) = self.snapd_request(
            "POST",
            "/v2/cohorts",
            Some(&json!({"action": "create", "snaps": ["microsample"]})),
        );
        assert_eq!(status, 200, "POST /v2/cohorts failed: {body}");
        body["result"]["microsample"]
            .as_str()
            .unwrap_or_else(|| panic!("no cohort key in {body}"))
            .to_string()
    }

    /// Moves the fake store's clock forward (cohort keys re-pin after 90 days).
    pub fn advance_store_clock(&self, by: Duration) {
        let offset = self.snapd_state()["store_clock_offset"]
            .as_u64()
            .unwrap_or(0);
        self.snapd_put(json!({ "store_clock_offset": offset + by.as_secs() }));
    }

    /// Every snapd request received so far (excluding `/fake/...`); always empty on the
    /// real snapd, which does not record them.
    pub fn snapd_requests(&self) -> Vec<SnapdRequest> {
        if self.uses_real_snapd() {
            return Vec::new();
        }
        let (_, body) = self.snapd_request("GET", "/fake/requests", None);
        serde_json::from_value(body["result"].clone()).unwrap_or_default()
    }

    /// Forgets the recorded snapd requests.
    pub fn clear_snapd_requests(&self) {
        if self.uses_real_snapd() {
            return;
        }
        self.snapd_request("DELETE", "/fake/requests", None);
    }

    /// GET on the workload at 127.0.0.1:`port`: Some((status, body)) or None if nothing
    /// answers.
    pub fn workload_get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        http::tcp_request(
            &format!("127.0.0.1:{port}"),
            "GET",
            path,
            Duration::from_secs(5),
        )
        .ok()
        .map(|r| (r.status, r.text()))
    }
}

impl Default for Unit {
    fn default() -> Self {
        Self::new()
    }
}

/// A fake store channel map with a `1.0` track next to `latest` (microsample has no such
/// track; the revisions and versions of `1.0/*` are made up):
/// `latest/edge` 34 `0+git.57e56f2`, `latest/beta` 33 `0+git.49ff7aa`, `1.0/stable` 20
/// `1.0.0`, `1.0/beta` 22 `1.0.1`, `1.0/edge` 25 `1.0.2` (`1.0/candidate` is closed and
/// follows `1.0/stable`).
pub fn store_with_track_1_0() -> Value {
    json!({
        "latest/edge": {"revision": 34, "version": "0+git.57e56f2"},
        "latest/beta": {"revision": 33, "version": "0+git.49ff7aa"},
        "1.0/stable": {"revision": 20, "version": "1.0.0"},
        "1.0/beta": {"revision": 22, "version": "1.0.1"},
        "1.0/edge": {"revision": 25, "version": "1.0.2"},
    })
}

/// A process started by [`Unit::start`].
struct Started {
    child: Child,
    /// Just before the spawn.
    start: Instant,
    stdout: thread::JoinHandle<String>,
    stderr: thread::JoinHandle<String>,
}

impl Started {
    /// Its exit status, or `None` when it was still running `timeout` after the start: then
    /// its whole process group is killed.
    fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if self.start.elapsed() > timeout => {
                    kill_group(self.child.id());
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    return None;
                }
                Ok(None) => thread::sleep(Duration::from_millis(5)),
                Err(e) => panic!("cannot wait for process {}: {e}", self.child.id()),
            }
        }
    }
}

fn unique_suffix() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32) ^ N.fetch_add(1, Ordering::SeqCst)
}

fn reader<R: Read + Send + 'static>(stream: Option<R>) -> thread::JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut s) = stream {
            let _ = s.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

/// SIGKILLs a whole process group.
fn kill_group(pgid: u32) {
    let _ = Command::new("kill")
        .args(["-KILL", "--", &format!("-{pgid}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}

/// Writes `request` to the Unix socket `socket` and returns every byte read until EOF (or
/// until nothing came for `timeout`): an HTTP exchange exactly as sent.
pub fn raw_exchange(socket: &Path, request: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = UnixStream::connect(socket)
        .unwrap_or_else(|e| panic!("cannot connect to {}: {e}", socket.display()));
    s.set_read_timeout(Some(timeout)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

/// A raw HTTP answer split at the blank line: (status line and headers, body as sent).
pub fn split_head(bytes: &[u8]) -> (String, Vec<u8>) {
    let pos = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no end of headers in {:?}", String::from_utf8_lossy(bytes)));
    (
        String::from_utf8_lossy(&bytes[..pos]).into_owned(),
        bytes[pos + 4..].to_vec(),
    )
}

/// Fails the test, showing stderr and the tool calls, unless the run exited 0.
pub fn ok(run: &HookRun) {
    assert_eq!(
        run.exit,
        Some(0),
        "hook failed\nstderr: {}\ncalls: {:#?}",
        run.stderr,
        run.calls
    );
}

/// Sets the unit's workload status in `state` and records it in the history, with the
/// history's `source` and hook `context`.
fn set_unit_status(
    state: &mut JujuState,
    source: &str,
    context: &str,
    status: &str,
    message: &str,
) {
    state.unit_status = juju_state::Status {
        status: status.to_string(),
        message: message.to_string(),
        data: Map::new(),
    };
    state.status_history.push(StatusEntry {
        application: false,
        status: status.to_string(),
        message: message.to_string(),
        source: source.to_string(),
        context: context.to_string(),
    });
}

/// A unit with `port` set to a free port, taken through Juju's deploy sequence
/// ([`DEPLOY_HOOKS`]: install, fleet-relation-created, leader-elected, config-changed,
/// start); returns it and the port.
pub fn deployed() -> (Unit, u16) {
    let unit = Unit::new();
    let port = free_port();
    unit.set_config("port", json!(port));
    for hook in DEPLOY_HOOKS {
        ok(&unit.run_hook(hook));
    }
    (unit, port)
}

/// [`call_lines`] cut into consecutive groups of `sizes` (the rest is the last group), each
/// sorted: the charm starts the reads it needs together and makes its reports together, so
/// within a group the fakes record them in whichever order the children ran.
pub fn call_groups(run: &HookRun, sizes: &[usize]) -> Vec<Vec<String>> {
    let mut lines = call_lines(run).into_iter();
    let mut groups: Vec<Vec<String>> = sizes
        .iter()
        .map(|&n| lines.by_ref().take(n).collect())
        .collect();
    groups.push(lines.collect());
    for group in &mut groups {
        group.sort();
    }
    groups
}

/// The tool invocations of a run as `tool arg arg ...` lines, without `juju-log`.
pub fn call_lines(run: &HookRun) -> Vec<String> {
    run.calls
        .iter()
        .filter(|c| c.tool != "juju-log")
        .map(|c| {
            std::iter::once(c.tool.as_str())
                .chain(c.args.iter().map(String::as_str))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// The `snap` commands of a run, as `snap arg arg ...` lines.
pub fn snap_calls(run: &HookRun) -> Vec<String> {
    call_lines(run)
        .into_iter()
        .filter(|c| c.starts_with("snap "))
        .collect()
}
