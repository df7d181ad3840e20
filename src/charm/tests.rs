//! State-transition tests of the reconcile: an in-memory Juju and machine go in, an event
//! runs, and the resulting state (status, version, ports, snap, commands run) is checked.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::{json, Map, Value};

use super::*;
use crate::juju::StatusKind;
use crate::snap::snapd::App;

/// The Juju side, in memory, with the same rules as the real tools where it matters.
#[derive(Default)]
struct Juju {
    config: Map<String, Value>,
    statuses: Vec<Status>,
    version: Option<String>,
    opened: BTreeSet<String>,
    in_action: bool,
    action_results: Vec<(String, String)>,
    action_failed: Option<String>,
    broken_tool: Option<&'static str>,
    calls: Vec<&'static str>,
    /// cos-agent relation id -> this unit's databag there.
    cos_relations: BTreeMap<String, Map<String, Value>>,
}

impl Juju {
    fn call(&mut self, tool: &'static str) -> Result<(), ToolError> {
        self.calls.push(tool);
        if self.broken_tool == Some(tool) {
            return Err(ToolError {
                tool: tool.into(),
                detail: "ERROR connection refused".into(),
            });
        }
        if tool.starts_with("action-") && !self.in_action {
            return Err(ToolError {
                tool: tool.into(),
                detail: "ERROR not running an action".into(),
            });
        }
        Ok(())
    }
    fn status(&self) -> &Status {
        self.statuses.last().expect("a status was set")
    }
}

impl HookTools for Juju {
    fn config_get(&mut self) -> Result<Map<String, Value>, ToolError> {
        self.call("config-get")?;
        Ok(self.config.clone())
    }
    fn status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        self.call("status-set")?;
        self.statuses.push(status.clone());
        Ok(())
    }
    fn application_version_set(&mut self, version: &str) -> Result<(), ToolError> {
        self.call("application-version-set")?;
        self.version = Some(version.into());
        Ok(())
    }
    fn opened_ports(&mut self) -> Result<Vec<String>, ToolError> {
        self.call("opened-ports")?;
        Ok(self.opened.iter().cloned().collect())
    }
    fn open_port(&mut self, port: &str) -> Result<(), ToolError> {
        self.call("open-port")?;
        self.opened.insert(port.into());
        Ok(())
    }
    fn close_port(&mut self, port: &str) -> Result<(), ToolError> {
        self.call("close-port")?;
        self.opened.remove(port);
        Ok(())
    }
    fn action_set(&mut self, results: &[(String, String)]) -> Result<(), ToolError> {
        self.call("action-set")?;
        self.action_results.extend_from_slice(results);
        Ok(())
    }
    fn action_fail(&mut self, message: &str) -> Result<(), ToolError> {
        self.call("action-fail")?;
        self.action_failed = Some(message.into());
        Ok(())
    }
    fn relation_ids(&mut self, endpoint: &str) -> Result<Vec<String>, ToolError> {
        self.call("relation-ids")?;
        assert_eq!(endpoint, "cos-agent", "the only endpoint this charm has");
        Ok(self.cos_relations.keys().cloned().collect())
    }
    fn relation_set(&mut self, id: &str, settings: &Map<String, Value>) -> Result<(), ToolError> {
        self.call("relation-set")?;
        let databag = self.cos_relations.get_mut(id).ok_or_else(|| ToolError {
            tool: "relation-set".into(),
            detail: format!("ERROR invalid value \"{id}\" for option -r: relation not found"),
        })?;
        databag.extend(settings.clone());
        Ok(())
    }
}

/// The machine, in memory: a snap store, snapd's view of the snap, and the service.
struct Host {
    /// Fully qualified channel -> (revision, version) the store carries.
    store: BTreeMap<&'static str, (&'static str, &'static str)>,
    snap: Option<Snap>,
    port: Option<Value>,
    store_down: bool,
    snapd_down: bool,
    /// The service crashes on start (e.g. its port is taken by something else).
    service_broken: bool,
    /// The service runs but never answers (hung).
    service_hung: bool,
    /// Probes that fail before a started service answers (a slow start).
    slow_probes: u32,
    commands: Vec<String>,
    paused: Duration,
}

impl Default for Host {
    fn default() -> Self {
        Host {
            store: BTreeMap::from([
                ("latest/edge", ("29", "0+git.57e56f2")),
                ("latest/beta", ("27", "0+git.49ff7aa")),
            ]),
            snap: None,
            port: None,
            store_down: false,
            snapd_down: false,
            service_broken: false,
            service_hung: false,
            slow_probes: 0,
            commands: Vec::new(),
            paused: Duration::ZERO,
        }
    }
}

impl Host {
    fn installed_at(channel: &str) -> Host {
        let mut host = Host::default();
        host.install(&Channel::parse(channel).unwrap()).unwrap();
        host.commands.clear();
        host
    }
    fn take_snap(&mut self, channel: &Channel) -> Result<Snap, SnapCliError> {
        if self.store_down {
            return Err(SnapCliError::Failed {
                code: Some(1),
                detail: "cannot install \"microsample\": persistent network error".into(),
            });
        }
        let (revision, version) = *self.store.get(channel.full().as_str()).ok_or_else(|| {
            SnapCliError::ChannelNotAvailable {
                channel: channel.to_string(),
                detail: format!("snap \"microsample\" is not available on {channel}"),
            }
        })?;
        Ok(Snap {
            name: "microsample".into(),
            version: version.into(),
            revision: revision.into(),
            tracking_channel: Some(channel.full()),
            apps: vec![App {
                name: "microsample".into(),
                daemon: Some("simple".into()),
                enabled: true,
                active: !self.service_broken,
            }],
        })
    }
    fn set_active(&mut self, active: bool) {
        if let Some(snap) = &mut self.snap {
            snap.apps[0].active = active;
        }
    }
}

impl Machine for Host {
    fn snap(&mut self) -> Result<Option<Snap>, SnapdError> {
        if self.snapd_down {
            return Err(SnapdError::Unreachable(
                "/run/snapd.socket: connection refused".into(),
            ));
        }
        Ok(self.snap.clone())
    }
    fn snap_port(&mut self) -> Result<Option<Value>, SnapdError> {
        self.snap()?;
        Ok(self.port.clone())
    }
    fn install(&mut self, channel: &Channel) -> Result<(), SnapCliError> {
        self.commands.push(format!("install --channel={channel}"));
        if self.snap.is_none() {
            self.snap = Some(self.take_snap(channel)?);
            self.port = Some(json!(8080));
        }
        Ok(())
    }
    fn refresh(&mut self, channel: &Channel) -> Result<(), SnapCliError> {
        self.commands.push(format!("refresh --channel={channel}"));
        let fresh = self.take_snap(channel)?;
        self.snap = Some(fresh);
        Ok(())
    }
    fn remove(&mut self) -> Result<(), SnapCliError> {
        self.commands.push("remove".into());
        self.snap = None;
        Ok(())
    }
    fn set_port(&mut self, port: u16) -> Result<(), SnapCliError> {
        self.commands.push(format!("set port={port}"));
        self.port = Some(json!(port));
        Ok(())
    }
    fn start(&mut self) -> Result<(), SnapCliError> {
        self.commands.push("start --enable".into());
        let up = !self.service_broken;
        self.set_active(up);
        Ok(())
    }
    fn restart(&mut self) -> Result<(), SnapCliError> {
        self.commands.push("restart".into());
        let up = !self.service_broken;
        self.set_active(up);
        Ok(())
    }
    fn probe(&mut self, port: u16) -> Health {
        if self.slow_probes > 0 {
            self.slow_probes -= 1;
            return Health::Down(format!("no answer on port {port}: connection refused"));
        }
        let serving = !self.service_hung
            && self.snap.as_ref().is_some_and(Snap::services_active)
            && self.port.as_ref().and_then(port_value) == Some(port);
        if serving {
            Health::Online
        } else {
            Health::Down(format!("no answer on port {port}: connection refused"))
        }
    }
    fn pause(&mut self, duration: Duration) {
        self.paused += duration;
    }
}

fn topology() -> Topology {
    Topology {
        model: "lab".into(),
        model_uuid: "1234".into(),
        application: "microsample".into(),
    }
}

fn hook(name: &str) -> Dispatch {
    Dispatch::parse(Some(std::ffi::OsStr::new(&format!("hooks/{name}")))).unwrap()
}

fn run(juju: &mut Juju, host: &mut Host, event: &str) -> Exit {
    handle(juju, host, &topology(), &hook(event))
}

fn config(pairs: Value) -> Map<String, Value> {
    pairs.as_object().unwrap().clone()
}

#[test]
fn install_on_a_fresh_machine_installs_and_goes_active() {
    let (mut juju, mut host) = (Juju::default(), Host::default());
    assert_eq!(run(&mut juju, &mut host, "install"), Exit::Done);
    assert_eq!(host.commands, ["install --channel=edge"]);
    assert_eq!(
        juju.statuses,
        [
            Status::maintenance("Installing microsample snap"),
            Status::active("Ready at 'edge'")
        ]
    );
    assert_eq!(juju.version.as_deref(), Some("0+git.57e56f2"));
    assert_eq!(juju.opened, BTreeSet::from(["8080/tcp".to_string()]));
}

#[test]
fn a_new_channel_refreshes_and_never_reinstalls() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.config = config(json!({"channel": "beta"}));
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
    assert_eq!(host.commands, ["refresh --channel=beta"]);
    assert_eq!(
        juju.statuses,
        [
            Status::maintenance("Refreshing microsample to 'beta'"),
            Status::active("Ready at 'beta'")
        ]
    );
    assert_eq!(juju.version.as_deref(), Some("0+git.49ff7aa"));
}

#[test]
fn equivalent_channel_spellings_need_no_refresh() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.config = config(json!({"channel": "latest/edge"}));
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
    assert!(host.commands.is_empty(), "{:?}", host.commands);
    assert_eq!(juju.status(), &Status::active("Ready at 'latest/edge'"));
}

#[test]
fn every_reconciling_hook_is_idempotent() {
    for event in [
        "install",
        "config-changed",
        "start",
        "upgrade-charm",
        "update-status",
    ] {
        let (mut juju, mut host) = (Juju::default(), Host::default());
        run(&mut juju, &mut host, event);
        let commands = host.commands.clone();
        let opened = juju.opened.clone();
        assert_eq!(run(&mut juju, &mut host, event), Exit::Done);
        assert_eq!(host.commands, commands, "{event} ran snap commands again");
        assert_eq!(juju.opened, opened);
        assert_eq!(juju.status(), &Status::active("Ready at 'edge'"), "{event}");
        // The second run only reads and reports (and looks for cos-agent relations on
        // the hooks that republish).
        let reads: &[&str] = match event {
            "config-changed" | "upgrade-charm" => &[
                "config-get",
                "relation-ids",
                "opened-ports",
                "application-version-set",
                "status-set",
            ],
            _ => &[
                "config-get",
                "opened-ports",
                "application-version-set",
                "status-set",
            ],
        };
        assert_eq!(
            &juju.calls[juju.calls.len() - reads.len()..],
            reads,
            "{event}"
        );
    }
}

#[test]
fn an_invalid_channel_blocks_without_touching_the_snap() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.config = config(json!({"channel": "edge; rm -rf /"}));
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
    assert_eq!(
        juju.statuses,
        [Status::blocked(
            "Invalid channel configured: 'edge; rm -rf /'"
        )]
    );
    assert!(host.commands.is_empty());
    assert_eq!(juju.calls, ["config-get", "status-set"]);
}

#[test]
fn an_unavailable_channel_blocks_and_keeps_reporting_the_version() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.config = config(json!({"channel": "candidate"}));
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
    assert_eq!(
        juju.status(),
        &Status::blocked("channel 'candidate' not available for microsample")
    );
    assert_eq!(juju.version.as_deref(), Some("0+git.57e56f2"));
    // Fixing the config recovers.
    juju.config = config(json!({"channel": "edge"}));
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
    assert_eq!(juju.status(), &Status::active("Ready at 'edge'"));
}

#[test]
fn a_store_outage_fails_the_hook_and_recovers_on_retry() {
    let (mut juju, mut host) = (Juju::default(), Host::default());
    host.store_down = true;
    assert_eq!(run(&mut juju, &mut host, "install"), Exit::Failed);
    let status = juju.status().clone();
    assert_eq!(status.kind, StatusKind::Waiting);
    assert!(
        status.message.contains("persistent network error"),
        "{status}"
    );
    assert_eq!(juju.version, None);
    host.store_down = false;
    assert_eq!(run(&mut juju, &mut host, "install"), Exit::Done);
    assert_eq!(juju.status(), &Status::active("Ready at 'edge'"));
}

#[test]
fn snapd_down_fails_the_hook_with_a_status_naming_it() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    host.snapd_down = true;
    assert_eq!(run(&mut juju, &mut host, "update-status"), Exit::Failed);
    assert!(
        juju.status()
            .message
            .starts_with("snapd unavailable, will retry: cannot reach snapd"),
        "{}",
        juju.status()
    );
    assert!(host.commands.is_empty());
}

#[test]
fn a_failing_hook_tool_fails_the_hook() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.broken_tool = Some("opened-ports");
    assert_eq!(run(&mut juju, &mut host, "update-status"), Exit::Failed);
    assert!(
        juju.status().message.contains("ERROR connection refused"),
        "{}",
        juju.status()
    );
}

#[test]
fn a_port_change_moves_the_service_and_the_opened_port() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.opened.insert("8080/tcp".into());
    juju.config = config(json!({"port": 8081}));
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
    assert_eq!(host.commands, ["set port=8081", "restart"]);
    assert_eq!(juju.opened, BTreeSet::from(["8081/tcp".to_string()]));
    assert_eq!(juju.status(), &Status::active("Ready at 'edge'"));
}

#[test]
fn invalid_ports_block() {
    for port in [json!(80), json!(70000), json!("abc")] {
        let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
        juju.config = config(json!({ "port": port }));
        assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
        assert_eq!(juju.status().kind, StatusKind::Blocked, "{port}");
        assert!(
            juju.status().message.starts_with("Invalid port configured"),
            "{}",
            juju.status()
        );
        assert!(host.commands.is_empty());
    }
}

#[test]
fn a_dead_service_is_restarted_and_reported_honestly() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    host.set_active(false);
    assert_eq!(run(&mut juju, &mut host, "update-status"), Exit::Done);
    assert_eq!(host.commands, ["start --enable"]);
    assert_eq!(juju.status(), &Status::active("Ready at 'edge'"));

    host.service_broken = true;
    host.set_active(false);
    host.commands.clear();
    assert_eq!(run(&mut juju, &mut host, "update-status"), Exit::Done);
    assert_eq!(
        host.commands,
        ["start --enable"],
        "one remediation per hook"
    );
    assert_eq!(
        juju.status(),
        &Status::blocked("microsample not responding on port 8080")
    );
    assert!(
        host.paused >= STARTUP_GRACE,
        "it gave the service time to start"
    );
}

#[test]
fn remove_removes_the_snap_and_stop_does_nothing() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    assert_eq!(run(&mut juju, &mut host, "stop"), Exit::Done);
    assert!(juju.calls.is_empty() && host.commands.is_empty());
    assert_eq!(run(&mut juju, &mut host, "remove"), Exit::Done);
    assert_eq!(host.commands, ["remove"]);
    assert!(host.snap.is_none());
    // A retried remove finds nothing to do.
    host.commands.clear();
    assert_eq!(run(&mut juju, &mut host, "remove"), Exit::Done);
    assert!(host.commands.is_empty());
    assert_eq!(
        juju.status(),
        &Status::maintenance("microsample snap removed")
    );
}

#[test]
fn unhandled_hooks_touch_nothing() {
    for event in [
        "leader-elected",
        "leader-settings-changed",
        "secret-changed",
        "db-relation-joined",
        "collect-metrics",
    ] {
        let (mut juju, mut host) = (Juju::default(), Host::default());
        assert_eq!(run(&mut juju, &mut host, event), Exit::Done);
        assert!(juju.calls.is_empty() && host.commands.is_empty(), "{event}");
    }
}

fn action(name: &str) -> Dispatch {
    Dispatch::parse(Some(std::ffi::OsStr::new(&format!("actions/{name}")))).unwrap()
}

#[test]
fn info_reports_what_snapd_and_the_probe_say() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("beta"));
    juju.in_action = true;
    juju.config = config(json!({"port": 9999}));
    assert_eq!(
        handle(&mut juju, &mut host, &topology(), &action("info")),
        Exit::Done
    );
    let results: BTreeMap<_, _> = juju.action_results.iter().cloned().collect();
    assert_eq!(results["version"], "0+git.49ff7aa");
    assert_eq!(results["revision"], "27");
    assert_eq!(results["tracking-channel"], "latest/beta");
    assert_eq!(
        results["port"], "8080",
        "the port snapd has, not the config"
    );
    assert_eq!(results["health"], "online");
    assert_eq!(juju.action_failed, None);
}

#[test]
fn actions_fail_cleanly() {
    let (mut juju, mut host) = (Juju::default(), Host::default());
    juju.in_action = true;
    assert_eq!(
        handle(&mut juju, &mut host, &topology(), &action("restart")),
        Exit::Done
    );
    assert_eq!(
        juju.action_failed.as_deref(),
        Some("the microsample snap is not installed")
    );

    let mut host = Host::installed_at("edge");
    host.service_broken = true;
    juju.action_failed = None;
    assert_eq!(
        handle(&mut juju, &mut host, &topology(), &action("restart")),
        Exit::Done
    );
    assert!(juju
        .action_failed
        .as_deref()
        .unwrap()
        .starts_with("microsample restarted but not responding on port 8080"));

    juju.action_failed = None;
    assert_eq!(
        handle(&mut juju, &mut host, &topology(), &action("explode")),
        Exit::Done
    );
    assert_eq!(
        juju.action_failed.as_deref(),
        Some("unknown action \"explode\"")
    );
}

#[test]
fn restart_action_reports_health() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.in_action = true;
    assert_eq!(
        handle(&mut juju, &mut host, &topology(), &action("restart")),
        Exit::Done
    );
    assert_eq!(host.commands, ["restart"]);
    assert_eq!(
        juju.action_results,
        [
            ("port".to_string(), "8080".to_string()),
            ("health".to_string(), "online".to_string())
        ]
    );
}

fn published_port(juju: &Juju, id: &str) -> Value {
    let raw = juju.cos_relations[id]["config"]
        .as_str()
        .expect("config is a JSON string");
    let config: Value = serde_json::from_str(raw).unwrap();
    config["metrics_scrape_jobs"][0]["static_configs"][0]["targets"][0].clone()
}

#[test]
fn cos_agent_relation_hooks_publish_without_touching_status() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.cos_relations.insert("cos-agent:7".into(), Map::new());
    for kind in ["joined", "changed"] {
        juju.calls.clear();
        assert_eq!(
            run(&mut juju, &mut host, &format!("cos-agent-relation-{kind}")),
            Exit::Done
        );
        assert_eq!(juju.calls, ["config-get", "relation-ids", "relation-set"]);
        assert_eq!(published_port(&juju, "cos-agent:7"), "localhost:8080");
        assert!(juju.statuses.is_empty() && host.commands.is_empty());
    }
    juju.calls.clear();
    assert_eq!(
        run(&mut juju, &mut host, "cos-agent-relation-departed"),
        Exit::Done
    );
    assert!(juju.calls.is_empty());
}

#[test]
fn config_changed_republishes_the_new_port() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.cos_relations.insert("cos-agent:7".into(), Map::new());
    juju.config = config(json!({"port": 8081}));
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Done);
    assert_eq!(published_port(&juju, "cos-agent:7"), "localhost:8081");
    assert_eq!(juju.status(), &Status::active("Ready at 'edge'"));
}

#[test]
fn nothing_is_published_without_a_relation_or_with_invalid_config() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    run(&mut juju, &mut host, "upgrade-charm");
    assert!(!juju.calls.contains(&"relation-set"));
    juju.cos_relations.insert("cos-agent:7".into(), Map::new());
    juju.config = config(json!({"port": 1}));
    assert_eq!(
        run(&mut juju, &mut host, "cos-agent-relation-joined"),
        Exit::Done
    );
    assert!(!juju.calls.contains(&"relation-set"));
    assert!(juju.cos_relations["cos-agent:7"].is_empty());
}

#[test]
fn a_failing_relation_set_fails_the_hook() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    juju.cos_relations.insert("cos-agent:7".into(), Map::new());
    juju.broken_tool = Some("relation-set");
    assert_eq!(
        run(&mut juju, &mut host, "cos-agent-relation-changed"),
        Exit::Failed
    );
    assert_eq!(run(&mut juju, &mut host, "config-changed"), Exit::Failed);
    assert!(
        juju.status().message.contains("relation-set"),
        "{}",
        juju.status()
    );
}

#[test]
fn a_just_installed_service_gets_time_to_start_instead_of_a_restart() {
    let (mut juju, mut host) = (Juju::default(), Host::default());
    host.slow_probes = 3;
    assert_eq!(run(&mut juju, &mut host, "install"), Exit::Done);
    assert_eq!(host.commands, ["install --channel=edge"], "no restart");
    assert_eq!(host.paused, PROBE_INTERVAL * 3);
    assert_eq!(juju.status(), &Status::active("Ready at 'edge'"));
}

#[test]
fn a_running_service_that_never_answers_is_waiting_not_blocked() {
    let (mut juju, mut host) = (Juju::default(), Host::installed_at("edge"));
    host.service_hung = true;
    assert_eq!(run(&mut juju, &mut host, "update-status"), Exit::Done);
    assert_eq!(host.commands, ["restart"]);
    assert_eq!(
        juju.status(),
        &Status::waiting("microsample not responding on port 8080")
    );
}
