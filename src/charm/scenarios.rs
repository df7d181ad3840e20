//! Scenarios: a host state goes in, one event runs, the state that comes out is checked
//! (status, version, ports, snap, commands, hook-tool calls, virtual time spent).

use serde_json::{json, Map, Value};

use super::testing::{self, FakeHost, PortHolder, Service};
use super::*;
use crate::juju::tools::StatusKind;
use crate::metadata::Action;
use crate::snap::PortSetting;

fn env_of(unit: &str) -> Env {
    Env {
        topology: Topology {
            model: "lab".into(),
            model_uuid: "1234abcd-0000-4000-8000-000000000000".into(),
            application: "microsample".into(),
        },
        unit: unit.into(),
        upgrading: false,
    }
}

fn hook(host: &mut FakeHost, name: &str) -> Exit {
    host.calls.clear();
    let dispatch = Dispatch::parse(Some(std::ffi::OsStr::new(&format!("hooks/{name}")))).unwrap();
    let env = Env {
        upgrading: name == "upgrade-charm",
        ..env_of(&host.me.clone())
    };
    handle(host, &env, &dispatch)
}

fn action(host: &mut FakeHost, action: Action) -> Exit {
    host.in_action = true;
    handle(host, &env_of(&host.me.clone()), &Dispatch::Action(action))
}

fn status(host: &FakeHost) -> (StatusKind, &str) {
    let status = host.status();
    (status.kind, status.message.as_str())
}

const RECONCILING: [&str; 7] = [
    "install",
    "start",
    "config-changed",
    "upgrade-charm",
    "update-status",
    "leader-elected",
    "cos-agent-relation-changed",
];

#[test]
fn install_waits_for_the_peer_relation_then_installs() {
    // `install` runs before Juju shows the peer relation: nothing is installed yet.
    let mut host = FakeHost::default();
    host.fleet = None;
    assert_eq!(hook(&mut host, "install"), Exit::Done);
    assert!(host.commands.is_empty(), "{:?}", host.commands);
    assert_eq!(
        status(&host),
        (
            StatusKind::Waiting,
            "installing microsample once the peer relation is visible"
        )
    );
    host.fleet = FakeHost::default().fleet;
    assert_eq!(hook(&mut host, "fleet-relation-created"), Exit::Done);
    assert_eq!(host.commands, ["install microsample --channel=latest/edge"]);
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
}

#[test]
fn install_on_a_fresh_machine_installs_and_goes_active() {
    let mut host = FakeHost::default();
    assert_eq!(hook(&mut host, "install"), Exit::Done);
    assert_eq!(host.commands, ["install microsample --channel=latest/edge"]);
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
    assert_eq!(host.version.as_deref(), Some("0+git.57e56f2"));
    assert_eq!(host.opened, ["8080/tcp".to_string()].into());
    // One interim maintenance status before the install, one final status.
    assert_eq!(
        host.statuses[0],
        Status::maintenance("Installing microsample snap from 'edge'")
    );
    assert_eq!(host.calls_to("status-set"), 2);
}

#[test]
fn every_reconciling_hook_reports_from_observation_and_changes_nothing_when_converged() {
    for name in RECONCILING {
        let mut host = FakeHost::deployed("edge");
        host.cos_relations.insert("cos-agent:3".into(), Map::new());
        // Someone else changed the status and the version since (the agent, `juju exec`,
        // another charm): the hook tells the truth again.
        host.statuses
            .push(Status::blocked("channel 'candidate' not available"));
        host.version = Some("stale".into());
        assert_eq!(hook(&mut host, name), Exit::Done, "{name}");
        assert!(host.commands.is_empty(), "{name}: {:?}", host.commands);
        assert_eq!(
            status(&host),
            (StatusKind::Active, "Ready at 'edge'"),
            "{name}"
        );
        assert_eq!(host.version.as_deref(), Some("0+git.57e56f2"), "{name}");
        // One call per fact needed or reported, never a repeat.
        for tool in [
            "config-get",
            "opened-ports",
            "relation-set",
            "application-version-set",
            "status-set",
        ] {
            assert_eq!(host.calls_to(tool), 1, "{name}: {tool} in {:?}", host.calls);
        }
        // One per endpoint: cos-agent and the fleet; then the fleet's members and the move
        // (none: a unit alone).
        assert_eq!(host.calls_to("relation-ids"), 2, "{name}");
        assert_eq!(host.calls_to("relation-list"), 1, "{name}");
        assert_eq!(host.calls_to("relation-get"), 1, "{name}");
        assert_eq!(host.calls.len(), 9, "{name}: {:?}", host.calls);
    }
}

#[test]
fn a_status_set_that_applied_but_failed_fails_the_hook_and_the_next_hook_reports_again() {
    let mut host = FakeHost::deployed("edge");
    host.broken_tool = Some("status-set");
    host.applies = true;
    assert_eq!(hook(&mut host, "update-status"), Exit::Failed);
    host.broken_tool = None;
    host.statuses.push(Status::maintenance("set by the agent"));
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
}

#[test]
fn a_new_channel_refreshes_with_the_fully_qualified_form_and_never_reinstalls() {
    let mut host = FakeHost::deployed("edge");
    host.set("channel", json!("beta"));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    assert_eq!(host.commands, ["refresh microsample --channel=latest/beta"]);
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'beta'"));
    assert_eq!(host.version.as_deref(), Some("0+git.49ff7aa"));
    assert!(host
        .statuses
        .contains(&Status::maintenance("Refreshing microsample to 'beta'")));
}

#[test]
fn a_bare_risk_on_a_snap_tracking_another_track_moves_to_latest_once() {
    let mut host = FakeHost::deployed("1.0/stable");
    host.set("channel", json!("edge"));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    assert_eq!(host.commands, ["refresh microsample --channel=latest/edge"]);
    assert_eq!(
        host.snap.as_ref().unwrap().tracking_channel.as_deref(),
        Some("latest/edge")
    );
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
    host.commands.clear();
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert!(
        host.commands.is_empty(),
        "no refresh loop: {:?}",
        host.commands
    );
}

#[test]
fn equivalent_spellings_need_no_refresh() {
    for spelling in ["edge", "latest/edge"] {
        let mut host = FakeHost::deployed("edge");
        host.set("channel", json!(spelling));
        assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
        assert!(host.commands.is_empty(), "{spelling}");
        assert_eq!(host.status().message, format!("Ready at '{spelling}'"));
    }
}

#[test]
fn invalid_config_blocks_quoting_the_value_and_touches_nothing() {
    for (key, value, message) in [
        (
            "channel",
            json!(" edge"),
            "Invalid channel configured: ' edge': invalid character in channel name",
        ),
        (
            "channel",
            json!("edge\n"),
            "Invalid channel configured: 'edge\\n': invalid character in channel name",
        ),
        (
            "channel",
            json!("x/y/z/w"),
            "Invalid channel configured: 'x/y/z/w': channel name has too many components",
        ),
        (
            "port",
            json!(80),
            "Invalid port configured: '80' (must be 1024-65535)",
        ),
    ] {
        let mut host = FakeHost::deployed("edge");
        host.set(key, value);
        assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
        assert_eq!(status(&host), (StatusKind::Blocked, message));
        assert!(host.commands.is_empty());
        assert_eq!(host.version.as_deref(), Some("0+git.57e56f2"));
    }
}

#[test]
fn unavailable_channels_block_and_the_next_good_config_recovers() {
    for (channel, family) in [
        ("candidate", "is not available on latest/candidate"),
        (
            "edge/nonexistent",
            "requested a non-existing branch on latest/edge",
        ),
        (
            "beta/edge",
            "requested a non-existing branch on latest/beta",
        ),
    ] {
        let mut host = FakeHost::deployed("edge");
        host.set("channel", json!(channel));
        assert_eq!(hook(&mut host, "config-changed"), Exit::Done, "{channel}");
        let (kind, message) = status(&host);
        assert_eq!(kind, StatusKind::Blocked, "{channel}");
        assert_eq!(
            message,
            format!("channel '{channel}' not available for microsample")
        );
        let _ = family; // snap's own words are logged (end to end: e2e_charm.rs)
                        // Still serving the old channel, and saying which version.
        assert_eq!(host.version.as_deref(), Some("0+git.57e56f2"));
        host.set("channel", json!("beta"));
        assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
        assert_eq!(status(&host), (StatusKind::Active, "Ready at 'beta'"));
    }
    let mut fresh = FakeHost::default();
    fresh.set("channel", json!("edge/hotfix_1"));
    assert_eq!(hook(&mut fresh, "install"), Exit::Done, "no install loop");
    assert_eq!(fresh.status().kind, StatusKind::Blocked);
}

#[test]
fn a_store_outage_fails_the_hook_and_the_retry_recovers() {
    let mut host = FakeHost::default();
    host.store_down = true;
    assert_eq!(hook(&mut host, "install"), Exit::Failed);
    let (kind, message) = status(&host);
    assert_eq!(kind, StatusKind::Waiting);
    assert!(
        message.starts_with("snap install microsample failed, will retry: cannot install"),
        "{message}"
    );
    host.store_down = false;
    assert_eq!(hook(&mut host, "install"), Exit::Done);
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
}

#[test]
fn snapd_down_fails_the_hook_naming_it() {
    let mut host = FakeHost::deployed("edge");
    host.snapd_down = true;
    assert_eq!(hook(&mut host, "update-status"), Exit::Failed);
    let (kind, message) = status(&host);
    assert_eq!(kind, StatusKind::Waiting);
    assert!(
        message.starts_with("snapd unavailable, will retry: cannot reach snapd"),
        "{message}"
    );
}

#[test]
fn a_failing_hook_tool_fails_the_hook() {
    let mut host = FakeHost::deployed("edge");
    host.broken_tool = Some("opened-ports");
    assert_eq!(hook(&mut host, "update-status"), Exit::Failed);
    assert!(host
        .status()
        .message
        .starts_with("Juju hook tool failed, will retry: hook tool opened-ports failed"));
}

#[test]
fn a_snap_installed_from_a_file_is_left_alone_and_explained() {
    let mut host = FakeHost::sideloaded();
    host.set("channel", json!("beta"));
    host.set("port", json!(8081));
    for name in ["install", "config-changed", "update-status"] {
        assert_eq!(hook(&mut host, name), Exit::Done, "{name}");
        assert!(host.commands.is_empty(), "{name}: {:?}", host.commands);
        let (kind, message) = status(&host);
        assert_eq!(kind, StatusKind::Blocked);
        assert!(
            message.starts_with("microsample was installed from a file (revision x1)"),
            "{message}"
        );
        assert!(message.contains("snap remove microsample"), "{message}");
    }
    assert_eq!(
        host.opened,
        ["8080/tcp".to_string()].into(),
        "ports untouched"
    );
    assert_eq!(host.port_setting, PortSetting::Port(8080));
}

#[test]
fn a_port_held_by_another_process_is_named_within_the_health_budget() {
    for holder in [PortHolder::Silent, PortHolder::NotFound] {
        let mut host = FakeHost::deployed("edge");
        host.port_holder = Some((8080, holder));
        host.snap.as_mut().unwrap().apps[0].active = false; // it could not bind
        assert_eq!(hook(&mut host, "update-status"), Exit::Done);
        assert_eq!(
            status(&host),
            (
                StatusKind::Blocked,
                "port 8080 is held by another process: microsample cannot listen on it"
            )
        );
        assert!(
            host.commands.is_empty(),
            "no pointless start: {:?}",
            host.commands
        );
        assert!(
            host.elapsed() <= observe::HEALTH_BUDGET,
            "{:?}",
            host.elapsed()
        );
    }
}

#[test]
fn a_port_taken_while_moving_the_service_is_named_after_the_grace() {
    let mut host = FakeHost::deployed("edge");
    host.port_holder = Some((8081, PortHolder::Silent));
    host.set("port", json!(8081));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    assert_eq!(
        host.commands,
        ["set microsample port=8081", "restart microsample"]
    );
    assert_eq!(host.status().kind, StatusKind::Blocked);
    assert!(host.status().message.contains("held by another process"));
    assert!(host.elapsed() <= observe::HEALTH_BUDGET + std::time::Duration::from_secs(2));
}

#[test]
fn a_hung_service_is_restarted_once_and_reported_waiting_within_the_budget() {
    let mut host = FakeHost::deployed("edge");
    host.service = Service::Hung;
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert_eq!(host.commands, ["restart microsample"]);
    assert_eq!(
        status(&host),
        (
            StatusKind::Waiting,
            "microsample not responding on port 8080"
        )
    );
    assert!(host.elapsed() <= observe::HEALTH_BUDGET + std::time::Duration::from_secs(1));
}

#[test]
fn a_dead_service_is_started_once_and_reported_blocked() {
    let mut host = FakeHost::deployed("edge");
    host.service = Service::Crashes;
    host.snap.as_mut().unwrap().apps[0].active = false;
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert_eq!(host.commands, ["start --enable microsample"]);
    assert_eq!(
        status(&host),
        (
            StatusKind::Blocked,
            "microsample not responding on port 8080"
        )
    );
}

#[test]
fn a_slow_start_gets_the_grace_instead_of_a_restart() {
    let mut host = FakeHost::default();
    host.service = Service::Healthy { slow_probes: 8 };
    assert_eq!(hook(&mut host, "install"), Exit::Done);
    assert_eq!(host.commands, ["install microsample --channel=latest/edge"]);
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
}

#[test]
fn a_port_change_moves_the_service_and_the_opened_port() {
    let mut host = FakeHost::deployed("edge");
    host.set("port", json!(8081));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    assert_eq!(
        host.commands,
        ["set microsample port=8081", "restart microsample"]
    );
    assert_eq!(host.opened, ["8081/tcp".to_string()].into());
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
    assert!(host
        .statuses
        .contains(&Status::maintenance("Moving microsample to port 8081")));
}

#[test]
fn install_on_another_port_installs_then_moves() {
    let mut host = FakeHost::default();
    host.set("port", json!(9000));
    host.opened.insert("icmp".into());
    assert_eq!(hook(&mut host, "install"), Exit::Done);
    assert_eq!(
        host.commands,
        [
            "install microsample --channel=latest/edge",
            "set microsample port=9000",
            "restart microsample"
        ]
    );
    assert_eq!(host.opened, ["9000/tcp".to_string()].into());
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
}

#[test]
fn the_workload_version_is_bounded_like_every_other_text() {
    let mut host = FakeHost::deployed("edge");
    host.snap.as_mut().unwrap().version = format!("1.0\n{}", "x".repeat(500));
    hook(&mut host, "update-status");
    let version = host.version.unwrap();
    assert!(version.chars().count() <= 64, "{version}");
    assert!(!version.contains('\n'));
}

#[test]
fn remove_removes_the_snap_and_stop_does_nothing() {
    let mut host = FakeHost::deployed("edge");
    assert_eq!(hook(&mut host, "stop"), Exit::Done);
    assert!(host.calls.is_empty() && host.commands.is_empty());
    assert_eq!(hook(&mut host, "remove"), Exit::Done);
    assert_eq!(host.commands, ["remove microsample"]);
    assert!(host.snap.is_none());
    host.commands.clear();
    assert_eq!(
        hook(&mut host, "remove"),
        Exit::Done,
        "again: nothing to remove"
    );
    assert!(host.commands.is_empty());
}

#[test]
fn unhandled_hooks_touch_nothing() {
    for name in [
        "secret-changed",
        "collect-metrics",
        "cos-agent-relation-departed",
        "other-relation-joined",
    ] {
        let mut host = FakeHost::deployed("edge");
        assert_eq!(hook(&mut host, name), Exit::Done);
        assert!(host.calls.is_empty(), "{name}: {:?}", host.calls);
    }
}

#[test]
fn info_reports_what_snapd_and_the_service_say() {
    let mut host = FakeHost::deployed("edge");
    assert_eq!(action(&mut host, Action::Info), Exit::Done);
    let results: Map<String, Value> = host
        .action_results
        .iter()
        .map(|(k, v)| (k.clone(), Value::from(v.as_str())))
        .collect();
    assert_eq!(
        Value::Object(results),
        json!({"version": "0+git.57e56f2", "revision": "29", "tracking-channel": "latest/edge",
               "port": "8080", "service": "active", "health": "online"})
    );
    assert!(host.statuses.is_empty(), "actions leave the status alone");
}

#[test]
fn actions_fail_cleanly() {
    let mut host = FakeHost::default();
    assert_eq!(action(&mut host, Action::Restart), Exit::Done);
    assert_eq!(
        host.action_failed.as_deref(),
        Some("the microsample snap is not installed")
    );
    let mut hung = FakeHost::deployed("edge");
    hung.service = Service::Hung;
    assert_eq!(action(&mut hung, Action::Restart), Exit::Done);
    assert!(hung
        .action_failed
        .as_deref()
        .unwrap()
        .starts_with("microsample restarted but not responding on port 8080"));
    let mut ok = FakeHost::deployed("edge");
    assert_eq!(action(&mut ok, Action::Restart), Exit::Done);
    assert_eq!(
        ok.action_results,
        [
            ("port".into(), "8080".into()),
            ("health".into(), "online".into())
        ]
    );
}

fn published(host: &FakeHost) -> Value {
    let data = &host.cos_relations["cos-agent:3"]["config"];
    serde_json::from_str(data.as_str().unwrap()).unwrap()
}

#[test]
fn cos_data_has_a_scrape_job_only_while_the_revision_serves_metrics() {
    let mut host = FakeHost::deployed("edge");
    host.cos_relations.insert("cos-agent:3".into(), Map::new());
    assert_eq!(hook(&mut host, "cos-agent-relation-joined"), Exit::Done);
    let with = published(&host);
    assert_eq!(
        with["metrics_scrape_jobs"][0]["static_configs"][0]["targets"][0],
        "localhost:8080"
    );
    assert!(with["metrics_alert_rules"]["groups"].is_array());
    // beta's revision predates /metrics.
    host.set("channel", json!("beta"));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    let without = published(&host);
    assert_eq!(without["metrics_scrape_jobs"], json!([]));
    assert_eq!(without["metrics_alert_rules"], json!({}));
    assert_eq!(without["dashboards"], with["dashboards"]);
    // And back on a revision that serves it, on the next update-status.
    host.with_metrics.insert("latest/beta".into());
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert_eq!(
        published(&host)["metrics_scrape_jobs"],
        with["metrics_scrape_jobs"]
    );
}

#[test]
fn a_failing_relation_set_fails_the_hook() {
    let mut host = FakeHost::deployed("edge");
    host.cos_relations.insert("cos-agent:3".into(), Map::new());
    host.broken_tool = Some("relation-set");
    assert_eq!(hook(&mut host, "config-changed"), Exit::Failed);
}

#[test]
fn a_second_unit_on_the_machine_changes_nothing_and_names_the_owner() {
    let mut host = FakeHost::deployed("edge");
    host.claim = Some(("other-app/3".into(), true));
    host.alive.insert("other-app/3".into());
    host.set("channel", json!("beta"));
    host.set("port", json!(9000));
    let opened = host.opened.clone();
    for name in ["install", "config-changed", "update-status"] {
        assert_eq!(hook(&mut host, name), Exit::Done);
        assert!(host.commands.is_empty(), "{name}: {:?}", host.commands);
        assert_eq!(
            status(&host),
            (
                StatusKind::Blocked,
                "microsample is managed by other-app/3 on this machine"
            )
        );
        assert_eq!(host.opened, opened, "{name}: ports untouched");
    }
    assert_eq!(hook(&mut host, "remove"), Exit::Done);
    assert!(host.snap.is_some(), "never removed under another unit");
}

#[test]
fn a_stale_claim_is_taken_over() {
    let mut host = FakeHost::deployed("edge");
    host.claim = Some(("microsample/7".into(), true));
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert_eq!(host.claim, Some(("microsample/0".into(), true)));
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'edge'"));
}

#[test]
fn an_upgrade_from_a_claimless_revision_claims_the_snap_it_installed() {
    let mut host = FakeHost::deployed("edge");
    host.claim = None;
    assert_eq!(hook(&mut host, "upgrade-charm"), Exit::Done);
    assert_eq!(host.claim, Some(("microsample/0".into(), true)));
    assert_eq!(hook(&mut host, "remove"), Exit::Done);
    assert!(host.snap.is_none());
    assert_eq!(host.claim, None);
}

#[test]
fn a_hand_installed_snap_is_adopted_and_never_removed() {
    let mut host = FakeHost::deployed("edge");
    host.claim = None;
    assert_eq!(hook(&mut host, "install"), Exit::Done);
    assert_eq!(host.claim, Some(("microsample/0".into(), false)));
    assert!(host.commands.is_empty());
    assert_eq!(hook(&mut host, "remove"), Exit::Done);
    assert!(host.snap.is_some(), "left installed");
    assert_eq!(host.claim, None, "released");
    assert_eq!(host.status().message, "microsample left installed");
}

fn in_fleet(host: &mut FakeHost, peers: &[(&str, serde_json::Value)], app: Option<Value>) {
    let bag = |v: &Value| Map::from_iter([(fleet::KEY.to_string(), Value::from(v.to_string()))]);
    host.fleet = Some(testing::Peers {
        id: "fleet:1".into(),
        units: peers.iter().map(|(u, v)| (u.to_string(), bag(v))).collect(),
        app: app.as_ref().map(bag).unwrap_or_default(),
        mine: Map::new(),
    });
}

fn published_move(host: &FakeHost) -> Value {
    let bag = &host.fleet.as_ref().unwrap().app;
    serde_json::from_str(bag[fleet::KEY].as_str().unwrap()).unwrap()
}

#[test]
fn the_leader_starts_a_move_and_waits_for_its_own_turn() {
    let mut host = FakeHost::deployed("edge");
    let on_edge = json!({"v": 1, "tracking": "latest/edge", "revision": "29", "healthy": true, "failed": null});
    in_fleet(
        &mut host,
        &[
            ("microsample/1", on_edge.clone()),
            ("microsample/2", on_edge),
        ],
        None,
    );
    host.set("channel", json!("beta"));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    assert_eq!(
        host.commands,
        ["create-cohort microsample"],
        "no refresh: not its turn"
    );
    let mv = published_move(&host);
    assert_eq!(
        mv["order"],
        json!(["microsample/1", "microsample/2", "microsample/0"])
    );
    assert_eq!(mv["cohort"], "MSBcohort1");
    assert_eq!(
        host.app_statuses.last().unwrap(),
        &Status::maintenance("Moving to 'beta': 0 of 3 done, microsample/1 next")
    );
    assert_eq!(
        status(&host),
        (
            StatusKind::Active,
            "Ready at 'latest/edge' (moving to 'beta': 0 of 3 done)"
        )
    );
}

#[test]
fn a_unit_refreshes_in_the_cohort_on_its_turn_and_publishes_what_it_sees() {
    let mut host = FakeHost::deployed("edge");
    host.me = "microsample/1".into();
    host.claim = Some(("microsample/1".into(), true));
    host.leader = false;
    let mv = json!({"v": 2, "target": "beta", "from": "latest/edge", "cohort": "KEY",
                    "order": ["microsample/1", "microsample/2", "microsample/0"], "halt": null});
    in_fleet(&mut host, &[("microsample/0", json!({}))], Some(mv.clone()));
    host.set("channel", json!("beta"));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    assert_eq!(
        host.commands,
        ["refresh microsample --channel=latest/beta --cohort=KEY"]
    );
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'beta'"));
    let mine = &host.fleet.as_ref().unwrap().mine[fleet::KEY];
    let mine: Value = serde_json::from_str(mine.as_str().unwrap()).unwrap();
    assert_eq!(
        mine,
        json!({"v": 1, "tracking": "latest/beta", "revision": "27", "cohort": "KEY",
               "healthy": true, "failed": null, "failed_in": null})
    );
    // Not its turn (nothing seen of microsample/1 yet): it waits, serving.
    let mut other = FakeHost::deployed("edge");
    other.me = "microsample/2".into();
    other.claim = Some(("microsample/2".into(), true));
    other.leader = false;
    in_fleet(&mut other, &[("microsample/0", json!({}))], Some(mv));
    other.set("channel", json!("beta"));
    assert_eq!(hook(&mut other, "config-changed"), Exit::Done);
    assert!(other.commands.is_empty());
    assert_eq!(other.status().kind, StatusKind::Active);
}

#[test]
fn a_failed_turn_is_published_for_the_leader_to_halt_on() {
    let mut host = FakeHost::deployed("edge");
    host.me = "microsample/1".into();
    host.claim = Some(("microsample/1".into(), true));
    host.leader = false;
    host.store.remove("latest/beta");
    let mv = json!({"v": 2, "target": "beta", "from": "latest/edge", "cohort": null,
                    "order": ["microsample/1", "microsample/0"], "halt": null});
    in_fleet(&mut host, &[("microsample/0", json!({}))], Some(mv));
    host.set("channel", json!("beta"));
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    let mine = &host.fleet.as_ref().unwrap().mine[fleet::KEY];
    let mine: Value = serde_json::from_str(mine.as_str().unwrap()).unwrap();
    assert_eq!(
        mine["failed"],
        "channel 'beta' not available for microsample"
    );
    assert_eq!(
        mine["tracking"], "latest/edge",
        "still serving the old channel"
    );
}

#[test]
fn the_unit_a_move_halted_on_is_blocked_naming_the_cause_and_refreshes_no_more() {
    let mut host = FakeHost::deployed("edge");
    host.me = "microsample/1".into();
    host.claim = Some(("microsample/1".into(), true));
    host.leader = false;
    let mv = json!({"v": 2, "target": "beta", "from": "latest/edge", "cohort": null,
                    "order": ["microsample/1", "microsample/0"],
                    "halt": {"unit": "microsample/1", "cause": "channel 'beta' not available for microsample"}});
    in_fleet(&mut host, &[("microsample/0", json!({}))], Some(mv));
    host.set("channel", json!("beta"));
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert!(host.commands.is_empty(), "{:?}", host.commands);
    let (kind, message) = status(&host);
    assert_eq!(kind, StatusKind::Blocked);
    assert!(
        message.starts_with(
            "Move to 'beta' halted here: channel 'beta' not available for microsample"
        ),
        "{message}"
    );
}

#[test]
fn a_unit_reads_its_peers_only_while_it_has_somewhere_to_go() {
    let mv = json!({"v": 2, "target": "beta", "from": "latest/edge", "cohort": "KEY",
                    "order": ["microsample/1", "microsample/2", "microsample/0"], "halt": null});
    let peer = json!({"v": 1, "tracking": "latest/beta", "revision": "27", "cohort": "KEY",
                      "healthy": true, "failed": null});
    let mut host = FakeHost::deployed("edge");
    host.me = "microsample/2".into();
    host.claim = Some(("microsample/2".into(), true));
    host.leader = false;
    in_fleet(
        &mut host,
        &[("microsample/1", peer.clone()), ("microsample/0", peer)],
        Some(mv),
    );
    host.set("channel", json!("beta"));
    // Its turn: it reads both peers to know, then moves into the cohort.
    assert_eq!(hook(&mut host, "config-changed"), Exit::Done);
    assert_eq!(
        host.commands,
        ["refresh microsample --channel=latest/beta --cohort=KEY"]
    );
    assert_eq!(host.calls_to("relation-get"), 3, "{:?}", host.calls);
    // Done, in the cohort: the move alone tells it so; no peer is read.
    assert_eq!(hook(&mut host, "update-status"), Exit::Done);
    assert!(host.commands.len() == 1);
    assert_eq!(host.calls_to("relation-get"), 1, "{:?}", host.calls);
    assert_eq!(status(&host), (StatusKind::Active, "Ready at 'beta'"));
}

#[test]
fn a_snap_already_there_is_not_moved_before_the_peer_relation_is_visible() {
    let mut host = FakeHost::deployed("edge");
    host.fleet = None;
    host.set("channel", json!("beta"));
    assert_eq!(hook(&mut host, "install"), Exit::Done);
    assert!(host.commands.is_empty(), "{:?}", host.commands);
    assert_eq!(
        status(&host),
        (
            StatusKind::Active,
            "Ready at 'latest/edge' (waiting for the peer relation)"
        )
    );
}
