//! A fake snapd on a Unix socket (docs/snapd-api.md#envelope, docs/snapd-api.md#snap-object) that knows one snap,
//! `microsample`, plus a test-control API under `/fake/`.
//!
//! Where snapd 2.77's source (snapd-api.md) and the real snapd 2.57.6 seen on Debian 12
//! (recorded by e2e/tests/real_snapd.rs) differ, the fake answers like the real daemon; the error
//! texts and statuses it shares with the real one are checked against it by
//! `tests/real_snapd.rs`.
//!
//! Control API (not part of snapd):
//! - `GET /fake/state`: the whole [`FakeState`] plus a `workload` object;
//! - `PUT /fake/state`: merge a JSON object of [`FakeState`] fields (top-level keys
//!   replace the current value; `null` clears an optional field);
//! - `GET /fake/requests`: every snapd request received (method, path, query);
//! - `DELETE /fake/requests`: forget them.
//!
//! snapd endpoints: `GET/POST /v2/snaps/<name>` (install, refresh with channel
//! resolution, cohort-key, leave-cohort and amend, remove), `GET /v2/snaps`,
//! `GET/PUT /v2/snaps/<name>/conf`, `GET/POST /v2/apps`, `GET /v2/changes/<id>`,
//! `GET /v2/system-info`, `POST /v2/cohorts`. The store behind them, its channel map and
//! its cohorts are described in [`crate::fakes::store`].
//!
//! Started with `--store <file>`, the fake snapd shares its store (channel map, cohorts,
//! store clock) with every other fake snapd started with the same file: see
//! [`crate::fakes::store`] ("One store for several machines").
//!
//! Knobs of the real-world cases (fields of [`FakeState`]): `snap.sideloaded` (installed
//! from a file: refresh refused with `snap-local` unless amend), `snap.cohort_key`,
//! `architecture` (not amd64: `snap-architecture-not-available`), `cohorts` and
//! `store_clock_offset` (cohort keys and the store's clock), besides `channels`,
//! `store_down`/`store_error`, `seeding`, `conflict`, `change_fails`, `get_snap_fault`,
//! `workload_fault`.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use crate::fakes::channel::{self, Channel};
use crate::fakes::http::{self, Request, Response};
use crate::fakes::output::{go_json, go_json_string, string_list};
use crate::fakes::store::{self, ChannelMap, Cohort, SharedStore, StoreLock};
pub use crate::fakes::store::{Release, ARCH};
use crate::fakes::workload::{self, Workload};

/// The only snap the fake store knows.
pub const SNAP: &str = "microsample";
pub const SNAP_ID: &str = "fVvFs0vN8zSMmdBU0Yd4JTCGyeLawQkX";
const PUBLISHER_ID: &str = "Ae0dtxJTZeH7ATwFMvOdJdw16Svbq1rF";
/// Faults of `GET /v2/snaps/microsample`.
pub const GET_SNAP_FAULTS: [&str; 6] = [
    "http500",
    "invalid_json",
    "truncated_body",
    "huge_body",
    "hang",
    "close",
];

/// The installed snap.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct InstalledSnap {
    pub revision: String,
    pub version: String,
    /// Channel of the current revision: the store's effective channel when it was
    /// installed or refreshed (`latest/edge`), the requested one after a refresh that only
    /// switched channel (snapd's `switch-snap-channel` rewrites it), `""` for a sideloaded
    /// snap.
    pub channel: String,
    /// Fully qualified tracked channel; `""` (the key is omitted) for a sideloaded snap.
    pub tracking_channel: String,
    /// Installed from a file (`snap install --dangerous ./microsample_x1.snap`): no snap
    /// id, no publisher, revision `x<N>`, nothing tracked; the store does not know it, so
    /// a refresh is refused (`snap-local`) unless `--amend`.
    pub sideloaded: bool,
    /// The cohort the snap is in (`cohort-key`), `""` for none.
    pub cohort_key: String,
    /// The installed revision's service misbehaves ([`Release::fault`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The installed revision serves `/metrics` ([`Release::metrics`]).
    #[serde(skip_serializing_if = "is_true")]
    pub metrics: bool,
    /// Snap configuration (`snap get`).
    pub config: Map<String, Value>,
    /// Service enabled (starts at boot).
    pub enabled: bool,
    /// Service started (desired state; it may still have failed, see `workload`).
    pub active: bool,
    pub install_date: String,
}

impl Default for InstalledSnap {
    fn default() -> Self {
        let mut config = Map::new();
        config.insert("port".to_string(), json!(8080));
        InstalledSnap {
            revision: "34".to_string(),
            version: "0+git.57e56f2".to_string(),
            channel: "latest/edge".to_string(),
            tracking_channel: "latest/edge".to_string(),
            sideloaded: false,
            cohort_key: String::new(),
            fault: None,
            metrics: true,
            config,
            enabled: true,
            active: true,
            install_date: http::rfc3339_nano(SystemTime::now()),
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_true(b: &bool) -> bool {
    *b
}

/// A change (async operation).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChangeRecord {
    pub id: String,
    pub kind: String,
    pub summary: String,
    pub task_kind: String,
    pub task_summary: String,
    /// `None`: ends `Done`; `Some(reason)`: ends `Error`.
    pub error: Option<String>,
    /// How many times it was polled.
    pub polls: u32,
    pub spawn_time: String,
    pub ready_time: String,
    pub snap_names: Vec<String>,
}

/// One request received on the snapd API (not `/fake/...`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RequestRecord {
    pub method: String,
    pub path: String,
    pub query: String,
    /// Request body (first 4096 bytes, lossy UTF-8).
    #[serde(default)]
    pub body: String,
}

impl RequestRecord {
    fn of(req: &Request) -> Self {
        let body = &req.body[..req.body.len().min(4096)];
        RequestRecord {
            method: req.method.clone(),
            path: req.path.clone(),
            query: req.query.clone(),
            body: String::from_utf8_lossy(body).into_owned(),
        }
    }
}

/// All state of the fake snapd. Every field can be set with `PUT /fake/state`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FakeState {
    /// The installed microsample, if any.
    pub snap: Option<InstalledSnap>,
    /// Fake store: fully qualified channel (`latest/edge`) -> release. Channels not
    /// listed are empty and follow the next more stable risk, like the real store (see
    /// [`store`]).
    pub channels: ChannelMap,
    /// Cohort keys the fake store issued -> the channel map they pin (see [`store`]).
    pub cohorts: BTreeMap<String, Cohort>,
    /// Seconds the fake store's clock is ahead of the real one (ages cohorts).
    pub store_clock_offset: u64,
    /// Store unreachable: install/refresh fail at once with HTTP 400 (no kind), like
    /// snapd 2.57.6 when `api.snapcraft.io` does not resolve:
    /// `cannot install "microsample": <store_error or STORE_DNS_ERROR>`.
    pub store_down: bool,
    /// What the store connection failed with, when `store_down` (the text after
    /// `cannot <action> "microsample": `). `None`: [`STORE_DNS_ERROR`], the text seen
    /// here. Other real texts: `persistent network error: Post "...": dial tcp: lookup
    /// api.snapcraft.io on 10.6.49.1:53: dial udp 10.6.49.1:53: connect: network is
    /// unreachable` (DNS server unreachable, snapd wraps it after retries).
    pub store_error: Option<String>,
    /// Device not yet seeded: install/refresh/remove get 409 (change-kind "seed").
    pub seeding: bool,
    /// Kind of a conflicting change in progress (e.g. `auto-refresh`): writes get 409.
    pub conflict: Option<String>,
    /// If set, every new change ends in `Error` with this reason.
    pub change_fails: Option<String>,
    /// Fault of `GET /v2/snaps/microsample`, one of [`GET_SNAP_FAULTS`].
    pub get_snap_fault: Option<String>,
    /// Apply `get_snap_fault` this many more times, then clear it (`None`: forever).
    pub get_snap_fault_count: Option<u32>,
    /// Fault of the workload, one of [`workload::FAULTS`].
    pub workload_fault: Option<String>,
    /// How many polls of a change answer `Doing` before its final status.
    pub doing_polls: u32,
    /// Port microsample's install hook sets (`snapctl set port=8080`).
    pub install_port: u16,
    /// The machine's architecture (`dpkg --print-architecture`; `GET /v2/system-info`).
    /// Every store release is for [`ARCH`], so on another one nothing installs:
    /// `snap-architecture-not-available`.
    pub architecture: String,
    pub changes: BTreeMap<String, ChangeRecord>,
    pub next_change: u64,
    pub requests: Vec<RequestRecord>,
}

impl Default for FakeState {
    fn default() -> Self {
        let mut channels = BTreeMap::new();
        channels.insert(
            "latest/edge".to_string(),
            Release::good(34, "0+git.57e56f2"),
        );
        channels.insert(
            "latest/beta".to_string(),
            Release::good(33, "0+git.49ff7aa"),
        );
        FakeState {
            snap: None,
            channels,
            cohorts: BTreeMap::new(),
            store_clock_offset: 0,
            store_down: false,
            store_error: None,
            seeding: false,
            conflict: None,
            change_fails: None,
            get_snap_fault: None,
            get_snap_fault_count: None,
            workload_fault: None,
            doing_polls: 1,
            install_port: 8080,
            architecture: ARCH.to_string(),
            changes: BTreeMap::new(),
            next_change: 1,
            requests: Vec::new(),
        }
    }
}

struct Snapd {
    state: FakeState,
    workload: Workload,
    state_file: Option<PathBuf>,
    /// The store file shared with other fake snapds (`--store`), if any.
    store_file: Option<PathBuf>,
}

type Shared = Arc<Mutex<Snapd>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Snapd> {
    match shared.lock() {
        Ok(g) => g,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// What to send back.
enum Reply {
    Resp(Response),
    /// Raw bytes, then close.
    Raw(Vec<u8>),
    /// Never answer.
    Hang,
    /// Close without answering.
    Close,
}

// ---------------------------------------------------------------------------------------
// Envelopes (field order of daemon/response.go's respJSON)

fn sync_body(result_json: &str) -> String {
    format!("{{\"type\":\"sync\",\"status-code\":200,\"status\":\"OK\",\"result\":{result_json}}}")
}

fn sync(result_json: &str) -> Reply {
    Reply::Resp(Response::json(200, sync_body(result_json)))
}

fn accepted(change: &str) -> Reply {
    Reply::Resp(Response::json(
        202,
        format!(
            "{{\"type\":\"async\",\"status-code\":202,\"status\":\"Accepted\",\"result\":null,\"change\":{}}}",
            go_json_string(change)
        ),
    ))
}

fn error_body(status: u16, message: &str, kind: Option<&str>, value: Option<&Value>) -> String {
    error_body_raw(status, message, kind, value.map(go_json).as_deref())
}

/// Like [`error_body`] with `value` already encoded (Go structs keep their field order,
/// which `go_json` of a map would sort).
fn error_body_raw(status: u16, message: &str, kind: Option<&str>, value: Option<&str>) -> String {
    let mut result = format!("{{\"message\":{}", go_json_string(message));
    if let Some(kind) = kind {
        result.push_str(&format!(",\"kind\":{}", go_json_string(kind)));
    }
    if let Some(value) = value {
        result.push_str(&format!(",\"value\":{value}"));
    }
    result.push('}');
    format!(
        "{{\"type\":\"error\",\"status-code\":{status},\"status\":{},\"result\":{result}}}",
        go_json_string(http::status_text(status))
    )
}

fn error(status: u16, message: &str, kind: Option<&str>, value: Option<&Value>) -> Reply {
    Reply::Resp(Response::json(
        status,
        error_body(status, message, kind, value),
    ))
}

fn quoted(s: &str) -> String {
    crate::fakes::gnuflag::go_quote(s)
}

// ---------------------------------------------------------------------------------------
// Snap object (docs/snapd-api.md#snap-object, key order of client.Snap)

/// microsample's one app, a service (`client.AppInfo`, key order of the struct;
/// `enabled` and `active` omitted when false).
fn app_json(snap: &InstalledSnap, active: bool) -> String {
    let mut app = vec![
        ("snap", json!(SNAP)),
        ("name", json!(SNAP)),
        ("daemon", json!("simple")),
        ("daemon-scope", json!("system")),
    ];
    if snap.enabled {
        app.push(("enabled", json!(true)));
    }
    if active {
        app.push(("active", json!(true)));
    }
    ordered(&app)
}

/// A sideloaded snap (`snap install --dangerous <file>`) has no snap id, no store title,
/// no publisher (`publisher` omitted, `developer` empty), no `tracking-channel` and an
/// empty `channel` (`client/clientutil/snapinfo.go` `ClientSnapFromSnapInfo`,
/// `daemon/snap.go` `mapLocal`).
fn snap_json(snap: &InstalledSnap, active: bool, description: &str) -> String {
    let app_json = app_json(snap, active);
    let store_snap = !snap.sideloaded;
    let mut fields: Vec<(&str, Value)> = vec![("id", json!(if store_snap { SNAP_ID } else { "" }))];
    if store_snap {
        fields.push(("title", json!(SNAP)));
    }
    fields.extend([
        (
            "summary",
            json!("A simple flask microservice on 0.0.0.0:8080"),
        ),
        ("description", json!(description)),
        ("installed-size", json!(33_882_112)),
        ("install-date", json!(snap.install_date)),
        ("name", json!(SNAP)),
    ]);
    let publisher = ordered(&[
        ("id", json!(PUBLISHER_ID)),
        ("username", json!("erik78se")),
        ("display-name", json!("Erik Lonroth")),
        ("validation", json!("unproven")),
    ]);
    let mut out = ordered(&fields);
    if store_snap {
        out.pop();
        out.push_str(&format!(",\"publisher\":{publisher}}}"));
    }
    out.pop();
    fields = vec![
        ("developer", json!(if store_snap { "erik78se" } else { "" })),
        ("status", json!("active")),
        ("type", json!("app")),
        ("base", json!("core22")),
        ("version", json!(snap.version)),
        ("channel", json!(snap.channel)),
    ];
    if !snap.tracking_channel.is_empty() {
        fields.push(("tracking-channel", json!(snap.tracking_channel)));
    }
    fields.extend([
        ("ignore-validation", json!(false)),
        ("revision", json!(snap.revision)),
        ("confinement", json!("strict")),
        ("grade", json!("devel")),
        ("private", json!(false)),
        ("devmode", json!(false)),
        ("jailmode", json!(false)),
    ]);
    for (k, v) in &fields {
        out.push_str(&format!(",{}:{}", go_json_string(k), go_json(v)));
    }
    out.push_str(&format!(",\"apps\":[{app_json}]"));
    out.push_str(&format!(
        ",\"mounted-from\":{}",
        go_json_string(&format!(
            "/var/lib/snapd/snaps/{SNAP}_{}.snap",
            snap.revision
        ))
    ));
    if !snap.cohort_key.is_empty() {
        out.push_str(&format!(
            ",\"cohort-key\":{}",
            go_json_string(&snap.cohort_key)
        ));
    }
    out.push_str(",\"contact\":\"\"}");
    out
}

/// A JSON object with keys in the given order.
fn ordered(fields: &[(&str, Value)]) -> String {
    let parts: Vec<String> = fields
        .iter()
        .map(|(k, v)| format!("{}:{}", go_json_string(k), go_json(v)))
        .collect();
    format!("{{{}}}", parts.join(","))
}

const DESCRIPTION: &str =
    "Get service status with: curl http://hostip:8080/  (Will return \"Online\" if OK)\n";

// ---------------------------------------------------------------------------------------
// Store logic

impl Snapd {
    fn save(&self) {
        if let Some(path) = &self.state_file {
            if let Ok(data) = serde_json::to_vec_pretty(&self.state) {
                let tmp = path.with_extension("tmp");
                if std::fs::write(&tmp, data).is_ok() {
                    let _ = std::fs::rename(&tmp, path);
                }
            }
        }
    }

    /// The store part of the state.
    fn store(&self) -> SharedStore {
        SharedStore {
            channels: self.state.channels.clone(),
            cohorts: self.state.cohorts.clone(),
            store_clock_offset: self.state.store_clock_offset,
        }
    }

    fn set_store(&mut self, store: SharedStore) {
        self.state.channels = store.channels;
        self.state.cohorts = store.cohorts;
        self.state.store_clock_offset = store.store_clock_offset;
    }

    /// Whether the service is really up (started, bound, not dead).
    fn service_active(&self) -> bool {
        self.state.snap.as_ref().is_some_and(|s| s.active) && self.workload.port().is_some()
    }

    fn snap_port(&self) -> Result<u16, String> {
        let value = self
            .state
            .snap
            .as_ref()
            .and_then(|s| s.config.get("port").cloned())
            .unwrap_or(Value::Null);
        let text = snapctl_text(&value);
        text.parse::<u16>().ok().filter(|p| *p != 0).ok_or_else(|| {
            format!("Error: Invalid value for '--port' / '-p': '{text}' is not a valid integer.")
        })
    }

    /// (Re)starts or stops the workload to match the snap state. `restart` forces a
    /// restart of a running service (systemctl restart).
    fn reconcile(&mut self, restart: bool) {
        // An injected fault, else the installed revision's own.
        let fault = self.state.workload_fault.clone().or_else(|| {
            self.state
                .snap
                .as_ref()
                .and_then(|s| s.fault.clone())
                .filter(|f| workload::FAULTS.contains(&f.as_str()))
        });
        let dead = fault.as_deref() == Some("dead");
        let no_metrics = self.state.snap.as_ref().is_some_and(|s| !s.metrics);
        self.workload
            .shared
            .no_metrics
            .store(no_metrics, std::sync::atomic::Ordering::SeqCst);
        if let Ok(mut f) = self.workload.shared.fault.lock() {
            *f = fault;
        }
        let wanted = self.state.snap.as_ref().is_some_and(|s| s.active) && !dead;
        if !wanted {
            self.workload.stop();
            if dead {
                self.workload.last_error = Some("service crashed (fault=dead)".into());
            } else {
                self.workload.last_error = None;
            }
            return;
        }
        if restart || self.workload.port().is_none() {
            let port = self.snap_port();
            self.workload.start(port);
        }
    }

    /// The channel map a request sees: the store's, or the one `cohort` pins (re-pinned to
    /// the current map when its 90-day window is over, see [`store`]); `Err` (snapd's
    /// answer) for a key the fake store never issued.
    fn channel_map(&mut self, cohort: &str, action: &str) -> Result<ChannelMap, Reply> {
        if cohort.is_empty() {
            return Ok(self.state.channels.clone());
        }
        let now = store::store_now(self.state.store_clock_offset);
        let current = self.state.channels.clone();
        let Some(pinned) = self.state.cohorts.get_mut(cohort) else {
            return Err(error(
                400,
                &format!(
                    "cannot {action} {}: fake store: unknown cohort key {}",
                    quoted(SNAP),
                    quoted(&store::ellipt_left(cohort, 10))
                ),
                None,
                None,
            ));
        };
        if now.saturating_sub(pinned.window_start) >= store::COHORT_WINDOW_SECS {
            pinned.window_start = now;
            pinned.channels = current;
        }
        Ok(pinned.channels.clone())
    }

    /// The release serving the fully qualified `tracking` in `map` on this machine (none
    /// when the machine is not [`ARCH`]).
    fn release_in(&self, map: &ChannelMap, tracking: &str) -> Option<(String, Release)> {
        if self.state.architecture != ARCH {
            return None;
        }
        store::release_in(map, tracking)
    }

    fn new_change(
        &mut self,
        kind: &str,
        summary: String,
        task_kind: &str,
        task_summary: String,
        error: Option<String>,
    ) -> String {
        let id = self.state.next_change.to_string();
        self.state.next_change += 1;
        let now = http::rfc3339_nano(SystemTime::now());
        self.state.changes.insert(
            id.clone(),
            ChangeRecord {
                id: id.clone(),
                kind: kind.to_string(),
                summary,
                task_kind: task_kind.to_string(),
                task_summary,
                error,
                polls: 0,
                spawn_time: now.clone(),
                ready_time: now,
                snap_names: vec![SNAP.to_string()],
            },
        );
        id
    }

    /// The injected change failure, if any.
    fn failure(&self) -> Option<String> {
        self.state.change_fails.clone()
    }

    /// snapd's answer to a store operation before the device is seeded.
    fn seeding_error(&self) -> Option<Reply> {
        self.state.seeding.then(|| {
            error(
                409,
                "too early for operation, device not yet seeded or device model not acknowledged",
                Some("snap-change-conflict"),
                Some(&json!({"change-kind": "seed"})),
            )
        })
    }

    fn conflict_error(&self, check_seeding: bool, with_kind: bool) -> Option<Reply> {
        if check_seeding {
            if let Some(reply) = self.seeding_error() {
                return Some(reply);
            }
        }
        let kind = self.state.conflict.as_deref()?;
        let message = format!(
            "snap {} has {} change in progress",
            quoted(SNAP),
            quoted(kind)
        );
        Some(if with_kind {
            error(
                409,
                &message,
                Some("snap-change-conflict"),
                Some(&json!({"change-kind": kind, "snap-name": SNAP})),
            )
        } else {
            error(409, &message, None, None)
        })
    }
}

/// The text `snapctl get <key>` prints for a config value.
fn snapctl_text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// How the store connection fails on a machine whose resolver says `api.snapcraft.io`
/// does not exist (verbatim from snapd 2.57.6 on Debian 12, resolver 10.255.255.53).
pub const STORE_DNS_ERROR: &str = "Post \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp: lookup api.snapcraft.io on 10.255.255.53:53: no such host";

/// `POST /v2/cohorts` (`daemon/api_cohort.go` `postCohorts`, the store's
/// `CreateCohorts`): `{"action": "create", "snaps": [...]}` -> `{"<snap>": "<key>"}`. The
/// fake store knows microsample only: any other name is `snap not found`, which snapd
/// passes on as HTTP 500, as any store failure here.
fn post_cohorts(d: &mut Snapd, body: &[u8]) -> Reply {
    let bad = |msg: String| error(400, &msg, None, None);
    let mut stream = serde_json::Deserializer::from_slice(body).into_iter::<Value>();
    let value = match stream.next() {
        Some(Ok(v)) => v,
        Some(Err(e)) => {
            return bad(format!(
                "cannot decode request body into cohort instruction: {e}"
            ))
        }
        None => return bad("cannot decode request body into cohort instruction: EOF".into()),
    };
    if stream.next().is_some() {
        return bad("spurious content after cohort instruction".into());
    }
    let action = value.get("action").and_then(Value::as_str).unwrap_or("");
    if action != "create" {
        return bad(format!("unknown cohort action {}", quoted(action)));
    }
    let snaps = string_list(value.get("snaps"));
    if snaps.is_empty() {
        return sync("{}");
    }
    if d.state.store_down {
        let detail = d
            .state
            .store_error
            .clone()
            .unwrap_or_else(|| STORE_DNS_ERROR.replace("/v2/snaps/refresh", "/v2/cohorts"));
        return error(500, &detail, None, None);
    }
    if snaps.iter().any(|s| s != SNAP) {
        return error(500, "snap not found", None, None);
    }
    let now = store::store_now(d.state.store_clock_offset);
    let mut serial = d.state.cohorts.len() as u64;
    let key = loop {
        serial += 1;
        let key = store::cohort_key(SNAP_ID, now, serial);
        if !d.state.cohorts.contains_key(&key) {
            break key;
        }
    };
    d.state.cohorts.insert(
        key.clone(),
        Cohort {
            window_start: now,
            channels: d.state.channels.clone(),
        },
    );
    d.save();
    sync(&go_json(&json!({ SNAP: key })))
}

/// snapd's answer to an install or refresh while the store is unreachable: it fails
/// synchronously (no change), HTTP 400 without a kind (`errToResponse`'s default case).
fn network_error(d: &Snapd, action: &str) -> Reply {
    let detail = d.state.store_error.as_deref().unwrap_or(STORE_DNS_ERROR);
    error(
        400,
        &format!("cannot {action} {}: {detail}", quoted(SNAP)),
        None,
        None,
    )
}

/// snapd 2.57.6's answer to a refresh or remove of a snap that is not installed
/// (`POST /v2/snaps/<name>`). snapd 2.77's refresh says
/// `cannot refresh "<name>": snap "<name>" is not installed` without a kind instead; the
/// charm treats both as a failed `snap refresh`.
fn not_installed(name: &str) -> Reply {
    error(
        400,
        &format!("snap {} is not installed", quoted(name)),
        Some("snap-not-installed"),
        Some(&json!(name)),
    )
}

fn install_refresh_summary(verb: &str, requested: &str) -> String {
    let mut s = format!("{verb} {} snap", quoted(SNAP));
    if !requested.is_empty() && requested != "stable" {
        s.push_str(&format!(" from {} channel", quoted(requested)));
    }
    s
}

fn download_summary(revision: u32, channel: &str) -> String {
    format!(
        "Download snap {} ({revision}) from channel {}",
        quoted(SNAP),
        quoted(channel)
    )
}

#[derive(Default)]
struct SnapInstruction {
    action: String,
    channel: String,
    transaction: String,
    cohort_key: String,
    leave_cohort: bool,
    amend: bool,
}

/// Decodes the body like Go's `json.Decoder.Decode` into `snapInstruction` (unknown keys
/// ignored, wrong types rejected).
fn decode_instruction(body: &[u8]) -> Result<SnapInstruction, String> {
    let text = std::str::from_utf8(body).map_err(|_| "invalid UTF-8 in body".to_string())?;
    if text.trim().is_empty() {
        return Err("EOF".to_string());
    }
    let value: Value = serde_json::from_str(text.trim_start())
        .or_else(|_| {
            // Decode reads one value; trailing data is not an error for Decode.
            let mut de = serde_json::Deserializer::from_str(text).into_iter::<Value>();
            de.next().unwrap_or(Ok(Value::Null))
        })
        .map_err(|e| format!("invalid JSON: {e}"))?;
    let mut inst = SnapInstruction::default();
    let obj = match value {
        Value::Null => return Ok(inst),
        Value::Object(o) => o,
        other => {
            return Err(format!(
                "json: cannot unmarshal {} into Go value of type daemon.snapInstruction",
                json_kind(&other)
            ))
        }
    };
    for (key, field) in [
        ("action", &mut inst.action),
        ("channel", &mut inst.channel),
        ("transaction", &mut inst.transaction),
        ("cohort-key", &mut inst.cohort_key),
    ] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => *field = s.clone(),
            Some(other) => {
                return Err(format!(
                    "json: cannot unmarshal {} into Go struct field snapInstruction.{key} of type string",
                    json_kind(other)
                ))
            }
        }
    }
    for (key, field) in [
        ("leave-cohort", &mut inst.leave_cohort),
        ("amend", &mut inst.amend),
    ] {
        match obj.get(key) {
            None | Some(Value::Null) => {}
            Some(Value::Bool(b)) => *field = *b,
            Some(other) => {
                return Err(format!(
                "json: cannot unmarshal {} into Go struct field snapInstruction.{key} of type bool",
                json_kind(other)
            ))
            }
        }
    }
    Ok(inst)
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `snapInstruction.validate` (`daemon/api_snaps.go`), in its order.
fn validate_instruction(inst: &SnapInstruction) -> Result<(), String> {
    if !inst.cohort_key.is_empty() && !matches!(inst.action.as_str(), "install" | "refresh") {
        return Err("cohort-key can only be specified for install, refresh, or switch".into());
    }
    if inst.leave_cohort && inst.action != "refresh" {
        return Err("leave-cohort can only be specified for refresh or switch".into());
    }
    match inst.transaction.as_str() {
        "" => {}
        "per-snap" | "all-snaps" => {
            if inst.action != "install" && inst.action != "refresh" {
                return Err(format!(
                    "transaction type is unsupported for {} actions",
                    quoted(&inst.action)
                ));
            }
        }
        other => return Err(format!("invalid value for transaction type: {other}")),
    }
    if !inst.cohort_key.is_empty() && inst.leave_cohort {
        return Err("cannot specify both cohort-key and leave-cohort".into());
    }
    if !inst.channel.is_empty() {
        Channel::parse(&inst.channel)?;
    }
    Ok(())
}

fn post_snap(d: &mut Snapd, name: &str, body: &[u8]) -> Reply {
    let inst = match decode_instruction(body) {
        Ok(i) => i,
        Err(e) => {
            return error(
                400,
                &format!("cannot decode request body into snap instruction: {e}"),
                None,
                None,
            )
        }
    };
    if let Err(e) = validate_instruction(&inst) {
        return error(400, &e, None, None);
    }
    if !matches!(inst.action.as_str(), "install" | "refresh" | "remove") {
        return error(400, &format!("unknown action {}", inst.action), None, None);
    }
    if name != SNAP {
        return match inst.action.as_str() {
            "install" => error(
                404,
                "snap not found",
                Some("snap-not-found"),
                Some(&json!(name)),
            ),
            _ => not_installed(name),
        };
    }
    let reply = match inst.action.as_str() {
        "install" => install(d, &inst),
        "refresh" => refresh(d, &inst),
        _ => remove(d),
    };
    d.save();
    reply
}

/// `POST /v2/snaps/microsample` `install` (`snapstate.InstallWithDeviceContext`): the
/// channel defaults to `stable`; with a cohort key the store serves the revision the key
/// pins.
fn install(d: &mut Snapd, inst: &SnapInstruction) -> Reply {
    if d.state.snap.is_some() {
        return error(
            400,
            &format!("snap {} is already installed", quoted(SNAP)),
            Some("snap-already-installed"),
            Some(&json!({"snaps": [SNAP]})),
        );
    }
    if let Some(reply) = d.conflict_error(true, true) {
        return reply;
    }
    if d.state.store_down {
        return network_error(d, "install");
    }
    let requested = inst.channel.as_str();
    let wanted = if requested.is_empty() {
        "stable"
    } else {
        requested
    };
    let map = match d.channel_map(&inst.cohort_key, "install") {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let tracking = channel::full(wanted).unwrap_or_default();
    let Some((effective, release)) = d.release_in(&map, &tracking) else {
        return channel_not_available(d, &map, "install", wanted);
    };
    let failure = d.failure();
    let mut summary = install_refresh_summary("Install", requested);
    if !inst.cohort_key.is_empty() {
        summary.push_str(&format!(
            " from {} cohort",
            quoted(&store::ellipt_left(&inst.cohort_key, 10))
        ));
    }
    let id = d.new_change(
        "install-snap",
        summary,
        "download-snap",
        download_summary(release.revision, &effective),
        failure.clone(),
    );
    if failure.is_none() {
        let mut config = Map::new();
        config.insert("port".to_string(), json!(d.state.install_port));
        d.state.snap = Some(InstalledSnap {
            revision: release.revision.to_string(),
            version: release.version,
            channel: effective,
            tracking_channel: tracking,
            sideloaded: false,
            cohort_key: inst.cohort_key.clone(),
            fault: release.fault.clone(),
            metrics: release.metrics,
            config,
            enabled: true,
            active: true,
            install_date: http::rfc3339_nano(SystemTime::now()),
        });
        d.reconcile(true);
    }
    accepted(&id)
}

/// snapd's answer when the store has no revision for the request
/// (`daemon/errors.go` `SnapRevisionNotAvailable` of the store's `revision-not-found` with
/// its `releases`): `snap-channel-not-available` when some release is for this machine's
/// architecture, `snap-architecture-not-available` when none is, and
/// `snap-revision-not-available` (value: the name) when the store listed no release or no
/// channel was asked for. The same answer covers a risk with no revision, a branch that
/// does not exist and a track that does not exist: the `snap` CLI tells them apart from
/// `channel` and `releases`.
fn channel_not_available(d: &Snapd, map: &ChannelMap, action: &str, requested: &str) -> Reply {
    let releases = store::releases_value(map);
    let empty = releases.as_array().is_none_or(|a| a.is_empty());
    if empty || requested.is_empty() {
        return error(
            404,
            "no snap revision available as specified",
            Some("snap-revision-not-available"),
            Some(&json!(SNAP)),
        );
    }
    let (kind, message) = if d.state.architecture == ARCH {
        (
            "snap-channel-not-available",
            "no snap revision on specified channel",
        )
    } else {
        (
            "snap-architecture-not-available",
            "no snap revision on specified architecture",
        )
    };
    error(
        404,
        message,
        Some(kind),
        Some(&json!({
            "snap-name": SNAP,
            "action": action,
            "channel": requested,
            "architecture": d.state.architecture,
            "releases": releases,
        })),
    )
}

/// snapd's refusal to refresh a snap the store does not know (`store.ErrLocalSnap` through
/// `errToResponse`: HTTP 400, kind `snap-local`, value `""`).
fn local_snap() -> Reply {
    error(
        400,
        "cannot perform operation on local snap",
        Some("snap-local"),
        Some(&json!("")),
    )
}

/// `POST /v2/snaps/microsample` `refresh` (`snapstate.UpdateWithDeviceContext`):
///
/// - the requested channel is resolved against the tracked one like `channel.Resolve`
///   (a bare risk or risk/branch keeps the tracked track: `1.0/stable` + `edge` is
///   `1.0/edge`; anything else is taken as is); no channel means the tracked one;
/// - the cohort is the requested one, else none with `leave-cohort`, else the snap's;
/// - a sideloaded snap is refused (`snap-local`) unless `amend`, which asks the store to
///   install it from the channel instead;
/// - the store serves the revision of that channel (from the cohort's pinned map in a
///   cohort); a new revision is downloaded (`download-snap`); the same revision with
///   another channel or cohort is a `switch-snap-channel` (which also rewrites the snap's
///   `channel` to the requested one); the same revision, channel and cohort is "no
///   updates available".
fn refresh(d: &mut Snapd, inst: &SnapInstruction) -> Reply {
    let Some(snap) = d.state.snap.clone() else {
        return not_installed(SNAP);
    };
    if let Some(reply) = d.seeding_error() {
        return reply;
    }
    let requested = inst.channel.as_str();
    let resolved = match channel::resolve(&snap.tracking_channel, requested) {
        Ok(r) => r,
        Err(e) => return error(400, &e, None, None),
    };
    let cohort = if !inst.cohort_key.is_empty() {
        inst.cohort_key.clone()
    } else if inst.leave_cohort {
        String::new()
    } else {
        snap.cohort_key.clone()
    };
    if snap.sideloaded && !inst.amend {
        return local_snap();
    }
    if let Some(reply) = d.conflict_error(false, true) {
        return reply;
    }
    if d.state.store_down {
        return network_error(d, "refresh");
    }
    // A sideloaded snap with --amend: the store is asked to install it ("install" action).
    let store_action = if snap.sideloaded {
        "install"
    } else {
        "refresh"
    };
    let map = match d.channel_map(&cohort, "refresh") {
        Ok(m) => m,
        Err(reply) => return reply,
    };
    let lookup = if resolved.is_empty() {
        "stable"
    } else {
        resolved.as_str()
    };
    let tracking = channel::full(&resolved).unwrap_or_default();
    let Some((effective, release)) = d.release_in(&map, &channel::full(lookup).unwrap_or_default())
    else {
        return channel_not_available(d, &map, store_action, &resolved);
    };
    let same_revision = !snap.sideloaded && release.revision.to_string() == snap.revision;
    let switch_channel = resolved != snap.tracking_channel;
    let switch_cohort = cohort != snap.cohort_key;
    if same_revision && !switch_channel && !switch_cohort {
        return error(
            400,
            "snap has no updates available",
            Some("snap-no-update-available"),
            Some(&json!("")),
        );
    }
    let failure = d.failure();
    let (task_kind, task_summary) = if same_revision {
        (
            "switch-snap-channel",
            store::switch_summary(
                SNAP,
                &snap.tracking_channel,
                &resolved,
                &snap.cohort_key,
                &cohort,
            ),
        )
    } else {
        (
            "download-snap",
            download_summary(release.revision, &effective),
        )
    };
    let id = d.new_change(
        "refresh-snap",
        install_refresh_summary("Refresh", requested),
        task_kind,
        task_summary,
        failure.clone(),
    );
    if failure.is_none() {
        if let Some(s) = d.state.snap.as_mut() {
            s.tracking_channel = tracking;
            s.cohort_key = cohort;
            if same_revision {
                // switch-snap-channel: the current revision's channel becomes the one asked
                // for (`genericDoSwitchSnap` with `switchCurrentChannel`).
                s.channel = resolved;
            } else {
                s.channel = effective;
                s.revision = release.revision.to_string();
                s.version = release.version;
                s.fault = release.fault;
                s.metrics = release.metrics;
                s.sideloaded = false;
                // Refresh stops the services and starts the enabled ones again.
                s.active = s.enabled;
            }
        }
        if !same_revision {
            d.reconcile(true);
        }
    }
    accepted(&id)
}

fn remove(d: &mut Snapd) -> Reply {
    let Some(snap) = d.state.snap.clone() else {
        return not_installed(SNAP);
    };
    if let Some(reply) = d.conflict_error(true, true) {
        return reply;
    }
    let failure = d.failure();
    let id = d.new_change(
        "remove-snap",
        format!("Remove {} snap", quoted(SNAP)),
        "remove-snap-data",
        format!("Remove data for snap {} ({})", quoted(SNAP), snap.revision),
        failure.clone(),
    );
    if failure.is_none() {
        d.state.snap = None;
        d.reconcile(false);
    }
    accepted(&id)
}

fn get_conf(d: &Snapd, name: &str, req: &Request) -> Reply {
    let config = if name == SNAP {
        d.state
            .snap
            .as_ref()
            .map(|s| s.config.clone())
            .unwrap_or_default()
    } else {
        Map::new()
    };
    let keys: Vec<String> = req
        .query_param("keys")
        .unwrap_or_default()
        .split(',')
        .map(|k| k.trim().to_string())
        .filter(|k| !k.is_empty())
        .collect();
    if keys.is_empty() {
        return sync(&go_json(&Value::Object(config)));
    }
    let mut out = Map::new();
    for key in keys {
        let mut current = Some(Value::Object(config.clone()));
        for part in key.split('.') {
            current = current.and_then(|c| c.get(part).cloned());
        }
        match current {
            Some(v) => {
                out.insert(key, v);
            }
            None => {
                // value is Go's `config.NoOptionError` struct: field order, not sorted.
                let value = ordered(&[("SnapName", json!(name)), ("Key", json!(key))]);
                return Reply::Resp(Response::json(
                    400,
                    error_body_raw(
                        400,
                        &format!(
                            "snap {} has no {} configuration option",
                            quoted(name),
                            quoted(&key)
                        ),
                        Some("option-not-found"),
                        Some(&value),
                    ),
                ));
            }
        }
    }
    sync(&go_json(&Value::Object(out)))
}

fn put_conf(d: &mut Snapd, name: &str, body: &[u8]) -> Reply {
    let patch: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => {
            return error(
                400,
                &format!("cannot decode request body into patch values: {e}"),
                None,
                None,
            )
        }
    };
    if name != SNAP || d.state.snap.is_none() {
        return error(
            404,
            &format!("snap {} is not installed", quoted(name)),
            Some("snap-not-found"),
            Some(&json!(name)),
        );
    }
    if let Some(reply) = d.conflict_error(false, true) {
        return reply;
    }
    let Some(snap) = d.state.snap.as_ref() else {
        return error(500, "internal error", None, None);
    };
    let mut config = snap.config.clone();
    for (k, v) in patch {
        if v.is_null() {
            config.remove(&k);
        } else {
            config.insert(k, v);
        }
    }
    // microsample's configure hook: the port must match ^[0-9]*$.
    let port = snapctl_text(config.get("port").unwrap_or(&Value::Null));
    let hook_error = (!port.chars().all(|c| c.is_ascii_digit()))
        .then(|| format!("run hook \"configure\": \"{port}\" is not a valid port"));
    let failure = hook_error.or_else(|| d.failure());
    let id = d.new_change(
        "configure-snap",
        format!("Change configuration of {} snap", quoted(SNAP)),
        "run-hook",
        format!("Run configure hook of {} snap", quoted(SNAP)),
        failure.clone(),
    );
    if failure.is_none() {
        if let Some(s) = d.state.snap.as_mut() {
            s.config = config;
        }
    }
    d.save();
    accepted(&id)
}

fn post_apps(d: &mut Snapd, body: &[u8]) -> Reply {
    let inst: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return error(
                400,
                &format!("cannot decode request body into service operation: {e}"),
                None,
                None,
            )
        }
    };
    let action = inst.get("action").and_then(Value::as_str).unwrap_or("");
    let names = string_list(inst.get("names"));
    let flag = |k: &str| inst.get(k).and_then(Value::as_bool).unwrap_or(false);
    if names.is_empty() {
        return error(
            400,
            "cannot perform operation on services without a list of services to operate on",
            None,
            None,
        );
    }
    for n in &names {
        let (snap, app) = n.split_once('.').unwrap_or((n.as_str(), ""));
        if snap != SNAP || d.state.snap.is_none() {
            return error(
                404,
                &format!("snap {} not found", quoted(snap)),
                Some("snap-not-found"),
                Some(&json!(snap)),
            );
        }
        if !app.is_empty() && app != SNAP {
            return error(
                404,
                &format!("snap {} has no service {}", quoted(snap), quoted(app)),
                Some("app-not-found"),
                None,
            );
        }
    }
    if !matches!(action, "start" | "stop" | "restart") {
        return error(
            400,
            &format!(
                "cannot perform operation on services: unknown action {}",
                quoted(action)
            ),
            None,
            None,
        );
    }
    if let Some(reply) = d.conflict_error(false, false) {
        return reply;
    }
    let failure = d.failure();
    let id = d.new_change(
        "service-control",
        "Running service command".to_string(),
        "service-control",
        format!(
            "Run service command {} for services [{}] of snap {}",
            quoted(action),
            quoted(SNAP),
            quoted(SNAP)
        ),
        failure.clone(),
    );
    if failure.is_none() {
        if let Some(s) = d.state.snap.as_mut() {
            match action {
                "start" => {
                    s.active = true;
                    if flag("enable") {
                        s.enabled = true;
                    }
                }
                "stop" => {
                    s.active = false;
                    if flag("disable") {
                        s.enabled = false;
                    }
                }
                _ => s.active = true,
            }
        }
        // start of a running service is a no-op; restart always restarts.
        d.reconcile(action == "restart");
    }
    d.save();
    accepted(&id)
}

fn get_change(d: &mut Snapd, id: &str) -> Reply {
    let doing_polls = d.state.doing_polls;
    let Some(chg) = d.state.changes.get_mut(id) else {
        return error(
            404,
            &format!("cannot find change with id {}", quoted(id)),
            None,
            None,
        );
    };
    chg.polls += 1;
    let ready = chg.polls > doing_polls;
    let status = match (ready, &chg.error) {
        (false, _) => "Doing",
        (true, None) => "Done",
        (true, Some(_)) => "Error",
    };
    let mut task = vec![
        ("id", json!(format!("{id}0"))),
        ("kind", json!(chg.task_kind)),
        ("summary", json!(chg.task_summary)),
        ("status", json!(status)),
    ];
    if let (true, Some(reason)) = (ready, &chg.error) {
        task.push(("log", json!([format!("{} ERROR {reason}", chg.ready_time)])));
    }
    task.push((
        "progress",
        json!({"label": "", "done": u32::from(ready), "total": 1}),
    ));
    task.push(("spawn-time", json!(chg.spawn_time)));
    if ready {
        task.push(("ready-time", json!(chg.ready_time)));
    }
    let mut fields = vec![
        ("id", json!(chg.id)),
        ("kind", json!(chg.kind)),
        ("summary", json!(chg.summary)),
        ("status", json!(status)),
    ];
    let tasks = format!("[{}]", ordered(&task));
    let mut out = ordered(&fields);
    out.pop();
    out.push_str(&format!(",\"tasks\":{tasks},\"ready\":{ready}"));
    fields = Vec::new();
    if let (true, Some(reason)) = (ready, &chg.error) {
        fields.push((
            "err",
            json!(format!(
                "cannot perform the following tasks:\n- {} ({reason})",
                chg.task_summary
            )),
        ));
    }
    fields.push(("spawn-time", json!(chg.spawn_time)));
    if ready {
        fields.push(("ready-time", json!(chg.ready_time)));
    }
    fields.push(("data", json!({"snap-names": chg.snap_names})));
    for (k, v) in &fields {
        out.push_str(&format!(",{}:{}", go_json_string(k), go_json(v)));
    }
    out.push('}');
    d.save();
    sync(&out)
}

fn get_snap(d: &mut Snapd, name: &str) -> Reply {
    if let (true, Some(fault)) = (name == SNAP, d.state.get_snap_fault.clone()) {
        let apply = match d.state.get_snap_fault_count {
            None => true,
            Some(n) => {
                if n <= 1 {
                    d.state.get_snap_fault = None;
                    d.state.get_snap_fault_count = None;
                } else {
                    d.state.get_snap_fault_count = Some(n - 1);
                }
                d.save();
                n > 0
            }
        };
        if apply {
            return snap_fault(d, &fault);
        }
    }
    match (&d.state.snap, name == SNAP) {
        (Some(snap), true) => sync(&snap_json(snap, d.service_active(), DESCRIPTION)),
        _ => error(
            404,
            "snap not installed",
            Some("snap-not-found"),
            Some(&json!(name)),
        ),
    }
}

fn snap_fault(d: &Snapd, fault: &str) -> Reply {
    match fault {
        "http500" => error(500, "internal error: fake snapd fault", None, None),
        "invalid_json" => {
            let body = "{\"type\":\"sync\",\"status-code\":200,\"status\":\"OK\",\"result\":{\"name\":\"microsample\",<<not json>>";
            Reply::Resp(Response::json(200, body))
        }
        "truncated_body" => {
            let body = match &d.state.snap {
                Some(snap) => sync_body(&snap_json(snap, d.service_active(), DESCRIPTION)),
                None => error_body(
                    404,
                    "snap not installed",
                    Some("snap-not-found"),
                    Some(&json!(SNAP)),
                ),
            };
            let cut = body.len() / 2;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nDate: {}\r\nContent-Length: {}\r\n\r\n",
                http::http_date(SystemTime::now()),
                body.len()
            );
            let mut raw = head.into_bytes();
            raw.extend_from_slice(&body.as_bytes()[..cut]);
            Reply::Raw(raw)
        }
        "huge_body" => {
            let snap = d.state.snap.clone().unwrap_or_default();
            let description = "x".repeat(50 * 1024 * 1024);
            sync(&snap_json(&snap, d.service_active(), &description))
        }
        "hang" => Reply::Hang,
        _ => Reply::Close,
    }
}

fn list_snaps(d: &Snapd, req: &Request) -> Reply {
    let wanted: Vec<String> = req
        .query_param("snaps")
        .unwrap_or_default()
        .split(',')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let mut items = Vec::new();
    if let Some(snap) = &d.state.snap {
        if wanted.is_empty() || wanted.iter().any(|w| w == SNAP) {
            items.push(snap_json(snap, d.service_active(), DESCRIPTION));
        }
    }
    Reply::Resp(Response::json(
        200,
        format!(
            "{{\"type\":\"sync\",\"status-code\":200,\"status\":\"OK\",\"result\":[{}],\"sources\":[\"local\"]}}",
            items.join(",")
        ),
    ))
}

/// `GET /v2/apps[?names=a,b][&select=service]` (`daemon/api_apps.go` `appInfosFor`).
fn get_apps(d: &Snapd, req: &Request) -> Reply {
    let what = match req.query_param("select").unwrap_or_default().as_str() {
        "" => "app",
        "service" => "service",
        other => {
            return error(
                400,
                &format!("invalid select parameter: {}", quoted(other)),
                None,
                None,
            )
        }
    };
    let requested: Vec<String> = req
        .query_param("names")
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect();
    let app_name = format!("{SNAP}.{SNAP}");
    let mut found: Vec<&str> = Vec::new();
    let mut apps = Vec::new();
    if let Some(snap) = &d.state.snap {
        let include_all = requested.is_empty() || requested.iter().any(|r| r == SNAP);
        if include_all {
            found.push(SNAP);
        }
        if include_all || requested.contains(&app_name) {
            apps.push(app_json(snap, d.service_active()));
            found.push(&app_name);
        }
    }
    for name in &requested {
        if found.contains(&name.as_str()) {
            continue;
        }
        return match name.split_once('.') {
            None => error(
                404,
                &format!("snap {} not found", quoted(name)),
                Some("snap-not-found"),
                Some(&json!(name)),
            ),
            Some((snap, app)) => error(
                404,
                &format!("snap {} has no {what} {}", quoted(snap), quoted(app)),
                Some("app-not-found"),
                None,
            ),
        };
    }
    sync(&format!("[{}]", apps.join(",")))
}

/// `GET /v2/system-info`: a Go map, so keys are sorted; values as seen from the real
/// snapd 2.57.6 on Debian 12 (`build-id`, `kernel-version`, `refresh.hold` vary).
fn system_info(d: &Snapd) -> Reply {
    let sandbox = json!({
        "confinement-options": ["classic", "devmode"],
        "dbus": ["mediated-bus-access"],
        "kmod": ["mediated-modprobe"],
        "mount": ["freezer-cgroup-v1", "layouts", "mount-namespace", "per-snap-persistency",
                  "per-snap-profiles", "per-snap-updates", "per-snap-user-profiles",
                  "stale-base-invalidation"],
        "seccomp": ["bpf-actlog", "bpf-argument-filtering", "kernel:allow", "kernel:errno",
                    "kernel:kill_process", "kernel:kill_thread", "kernel:log", "kernel:trace",
                    "kernel:trap", "kernel:user_notif"],
        "udev": ["device-cgroup-v1", "device-filtering", "tagging"],
    });
    sync(&go_json(&json!({
        "architecture": d.state.architecture,
        "build-id": "0000000000000000000000000000000000000000",
        "confinement": "partial",
        "kernel-version": "6.1.0-fake",
        "locations": {"snap-bin-dir": "/snap/bin", "snap-mount-dir": "/snap"},
        "managed": false,
        "on-classic": true,
        "os-release": {"id": "debian", "version-id": "12"},
        "refresh": {"timer": "00:00~24:00/4"},
        "sandbox-features": sandbox,
        "series": "16",
        "system-mode": "run",
        "version": "2.57.6-1+deb12u1+b2",
        "virtualization": "docker",
    })))
}

// ---------------------------------------------------------------------------------------
// Control API

fn state_json(d: &Snapd) -> Value {
    let mut v = serde_json::to_value(&d.state).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut v {
        m.insert(
            "workload".to_string(),
            json!({
                "port": d.workload.port(),
                "running": d.workload.port().is_some(),
                "error": d.workload.last_error,
                "calls": d.workload.shared.calls.load(std::sync::atomic::Ordering::SeqCst),
            }),
        );
    }
    v
}

fn put_state(d: &mut Snapd, body: &[u8]) -> Reply {
    let patch: Map<String, Value> = match serde_json::from_slice(body) {
        Ok(p) => p,
        Err(e) => return error(400, &format!("invalid JSON object: {e}"), None, None),
    };
    let mut current = match serde_json::to_value(&d.state) {
        Ok(Value::Object(m)) => m,
        _ => return error(500, "cannot encode state", None, None),
    };
    for (k, mut v) in patch {
        if k == "workload" {
            continue;
        }
        if k == "change_fails" {
            v = match v {
                Value::Bool(true) => json!("fake snapd: injected failure"),
                Value::Bool(false) => Value::Null,
                other => other,
            };
        }
        if k == "snap" {
            if let Value::Object(s) = &v {
                // Missing fields take the defaults of a fresh edge install.
                let mut full = serde_json::to_value(InstalledSnap::default())
                    .ok()
                    .and_then(|v| v.as_object().cloned())
                    .unwrap_or_default();
                full.extend(s.clone());
                v = Value::Object(full);
            }
        }
        if !current.contains_key(&k) {
            return error(
                400,
                &format!("unknown fake state field {}", quoted(&k)),
                None,
                None,
            );
        }
        current.insert(k, v);
    }
    let new: FakeState = match serde_json::from_value(Value::Object(current)) {
        Ok(s) => s,
        Err(e) => return error(400, &format!("invalid fake state: {e}"), None, None),
    };
    if let Some(f) = &new.get_snap_fault {
        if !GET_SNAP_FAULTS.contains(&f.as_str()) {
            return error(
                400,
                &format!("unknown get_snap_fault {}", quoted(f)),
                None,
                None,
            );
        }
    }
    if let Some(f) = &new.workload_fault {
        if !workload::FAULTS.contains(&f.as_str()) {
            return error(
                400,
                &format!("unknown workload_fault {}", quoted(f)),
                None,
                None,
            );
        }
    }
    let releases = new
        .channels
        .values()
        .chain(new.cohorts.values().flat_map(|c| c.channels.values()));
    for release in releases {
        if let Some(f) = release.fault.as_deref() {
            if !workload::FAULTS.contains(&f) {
                return error(
                    400,
                    &format!("unknown release fault {}", quoted(f)),
                    None,
                    None,
                );
            }
        }
    }
    let cohort_channels = new.cohorts.values().flat_map(|c| c.channels.keys());
    for name in new.channels.keys().chain(cohort_channels) {
        match Channel::parse(name) {
            Ok(c) if c.full() == *name => {}
            _ => {
                return error(
                    400,
                    &format!(
                        "store channel {} must be fully qualified (track/risk[/branch])",
                        quoted(name)
                    ),
                    None,
                    None,
                )
            }
        }
    }
    let restart = new.snap != d.state.snap || new.workload_fault != d.state.workload_fault;
    d.state = new;
    d.reconcile(restart);
    d.save();
    sync(&go_json(&state_json(d)))
}

// ---------------------------------------------------------------------------------------
// Routing

fn method_not_allowed(method: &str) -> Reply {
    error(
        405,
        &format!("method {} not allowed", quoted(method)),
        None,
        None,
    )
}

/// Routes one request; with a shared store, under the store's lock, with the store loaded
/// before and written back after when the request changed it.
fn route(shared: &Shared, req: &Request) -> Reply {
    let mut d = lock(shared);
    let Some(path) = d.store_file.clone() else {
        return route_locked(&mut d, req);
    };
    let shared_store = match StoreLock::take(&path) {
        Ok(lock) => lock,
        Err(e) => return error(500, &format!("fake snapd: shared store: {e}"), None, None),
    };
    match shared_store.load() {
        Ok(Some(store)) => d.set_store(store),
        Ok(None) => {}
        Err(e) => return error(500, &format!("fake snapd: shared store: {e}"), None, None),
    }
    let before = d.store();
    let reply = route_locked(&mut d, req);
    let after = d.store();
    if after != before {
        if let Err(e) = shared_store.save(&after) {
            eprintln!("fake-juju serve-snapd: shared store: {e}");
        }
    }
    reply
}

fn route_locked(d: &mut Snapd, req: &Request) -> Reply {
    let path = req.path.as_str();
    let m = req.method.as_str();
    if let Some(rest) = path.strip_prefix("/fake/") {
        return match (m, rest) {
            ("GET", "state") => sync(&go_json(&state_json(d))),
            ("PUT", "state") => put_state(d, &req.body),
            ("GET", "requests") => sync(&go_json(&json!(d.state.requests))),
            ("DELETE", "requests") => {
                d.state.requests.clear();
                d.save();
                sync("null")
            }
            _ => error(404, "not found", None, None),
        };
    }
    d.state.requests.push(RequestRecord::of(req));
    d.save();
    let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match segments.as_slice() {
        ["v2", "snaps"] => match m {
            "GET" => list_snaps(d, req),
            "POST" => error(
                501,
                "fake snapd: multi-snap operations are not implemented",
                None,
                None,
            ),
            _ => method_not_allowed(m),
        },
        ["v2", "snaps", name] if !name.is_empty() => match m {
            "GET" => get_snap(d, name),
            "POST" => post_snap(d, name, &req.body),
            _ => method_not_allowed(m),
        },
        ["v2", "snaps", name, "conf"] if !name.is_empty() => match m {
            "GET" => get_conf(d, name, req),
            "PUT" => put_conf(d, name, &req.body),
            _ => method_not_allowed(m),
        },
        ["v2", "apps"] => match m {
            "POST" => post_apps(d, &req.body),
            "GET" => get_apps(d, req),
            _ => method_not_allowed(m),
        },
        ["v2", "changes", id] if !id.is_empty() => match m {
            "GET" => get_change(d, id),
            "POST" => error(
                501,
                "fake snapd: aborting changes is not implemented",
                None,
                None,
            ),
            _ => method_not_allowed(m),
        },
        ["v2", "system-info"] => match m {
            "GET" => system_info(d),
            _ => method_not_allowed(m),
        },
        ["v2", "cohorts"] => match m {
            "POST" => post_cohorts(d, &req.body),
            _ => method_not_allowed(m),
        },
        _ => error(404, "not found", None, None),
    }
}

fn handle_connection(shared: Shared, stream: UnixStream) {
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    loop {
        let req = match http::read_request(&mut reader) {
            Ok(r) => r,
            Err(http::ReadError::Bad(reason)) => {
                let _ = writer.write_all(http::bad_request_reply(&reason).as_bytes());
                return;
            }
            Err(_) => return,
        };
        if req.version == http::Version::Http11 && req.header("Host").is_none() {
            lock(&shared).state.requests.push(RequestRecord::of(&req));
            let _ = writer.write_all(http::MISSING_HOST_REPLY.as_bytes());
            return;
        }
        let reply = route(&shared, &req);
        match reply {
            Reply::Resp(resp) => match http::write_response(&mut writer, &req, &resp) {
                Ok(true) => continue,
                _ => return,
            },
            Reply::Raw(bytes) => {
                let _ = writer.write_all(&bytes);
                return;
            }
            Reply::Hang => {
                workload::hold_open(reader.get_mut());
                return;
            }
            Reply::Close => return,
        }
    }
}

/// `fake-juju serve-snapd --socket <path> [--state <file>] [--store <file>]
/// [--exit-with-pid <pid>]`: `--store` names the store file shared with other fake snapds
/// (created from this one's store when missing).
pub fn serve(args: &[String]) -> i32 {
    let mut socket: Option<PathBuf> = None;
    let mut state_file: Option<PathBuf> = None;
    let mut store_file: Option<PathBuf> = None;
    let mut parent: Option<u32> = None;
    let mut i = 0;
    while i < args.len() {
        let (flag, inline) = match args[i].split_once('=') {
            Some((f, v)) => (f.to_string(), Some(v.to_string())),
            None => (args[i].clone(), None),
        };
        let value = match inline {
            Some(v) => Some(v),
            None => {
                i += 1;
                args.get(i).cloned()
            }
        };
        let Some(value) = value else {
            eprintln!("fake-juju serve-snapd: {flag} needs a value");
            return 2;
        };
        match flag.as_str() {
            "--socket" => socket = Some(PathBuf::from(value)),
            "--state" => state_file = Some(PathBuf::from(value)),
            "--store" => store_file = Some(PathBuf::from(value)),
            "--exit-with-pid" => match value.parse() {
                Ok(p) => parent = Some(p),
                Err(_) => {
                    eprintln!("fake-juju serve-snapd: bad pid {value:?}");
                    return 2;
                }
            },
            other => {
                eprintln!("fake-juju serve-snapd: unknown flag {other}");
                return 2;
            }
        }
        i += 1;
    }
    let Some(socket) = socket else {
        eprintln!(
            "usage: fake-juju serve-snapd --socket <path> [--state <file>] [--store <file>] [--exit-with-pid <pid>]"
        );
        return 2;
    };
    let state = state_file
        .as_deref()
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| serde_json::from_slice::<FakeState>(&b).ok())
        .unwrap_or_default();
    let _ = std::fs::remove_file(&socket);
    let listener = match UnixListener::bind(&socket) {
        Ok(l) => l,
        Err(e) => {
            eprintln!(
                "fake-juju serve-snapd: cannot listen on {}: {e}",
                socket.display()
            );
            return 1;
        }
    };
    let mut snapd = Snapd {
        state,
        workload: Workload::default(),
        state_file,
        store_file,
    };
    if let Some(path) = snapd.store_file.clone() {
        let mine = snapd.store();
        match store::update_shared(&path, || mine, |s| s.clone()) {
            Ok(store) => snapd.set_store(store),
            Err(e) => {
                eprintln!("fake-juju serve-snapd: shared store: {e}");
                return 1;
            }
        }
    }
    snapd.reconcile(true);
    snapd.save();
    let shared: Shared = Arc::new(Mutex::new(snapd));
    spawn_watchdog(socket.clone(), parent);
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                let shared = shared.clone();
                thread::spawn(move || handle_connection(shared, stream));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
    0
}

/// Exits the process when the socket file disappears or the given process ends.
fn spawn_watchdog(socket: PathBuf, parent: Option<u32>) {
    thread::spawn(move || loop {
        thread::sleep(Duration::from_millis(300));
        let parent_gone = parent.is_some_and(|p| !Path::new(&format!("/proc/{p}")).exists());
        if parent_gone || !socket.exists() {
            std::process::exit(0);
        }
    });
}
