//! End-to-end: the built `dispatch` run the way the Juju agent runs it, against the strict
//! fake hook tools and the fake snapd + `snap` CLI + microsample (`microsample_e2e::fakes`).

use microsample_e2e::{
    call_groups, call_lines, deployed, free_port, ok, snap_calls, Unit, PEER_RELATION_ID,
};
use serde_json::{json, Value};

fn snap_field(unit: &Unit, field: &str) -> Value {
    unit.snapd_state()["snap"][field].clone()
}

#[test]
fn install_installs_nothing_until_the_peer_relation_is_visible() {
    // docs/juju.md#hook-order: `install` runs before `fleet-relation-created`, and sees no
    // peer relation; what a new unit installs is the fleet's to say.
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    assert_eq!(unit.peer_relation(), None);

    let install = unit.run_hook("install");
    ok(&install);
    assert_eq!(
        call_groups(&install, &[4]),
        [
            vec![
                "config-get --format=json",
                "opened-ports --format=json",
                "relation-ids --format=json -- cos-agent",
                "relation-ids --format=json -- fleet",
            ],
            vec!["status-set waiting -- installing microsample once the peer relation is visible"],
        ],
        "reads, then waits: no snap command, no port opened"
    );
    assert!(install.snapd_requests.iter().all(|r| r.method == "GET"));
    assert!(unit.snapd_state()["snap"].is_null());
    assert_eq!(
        unit.status(),
        (
            "waiting".into(),
            "installing microsample once the peer relation is visible".into()
        )
    );
    assert!(unit.opened_ports().is_empty());
    assert_eq!(unit.workload_version(), None);

    // Juju creates the peer relation and runs its `-created` hook: the unit installs.
    let created = unit.run_hook("fleet-relation-created");
    ok(&created);
    let relation = unit.peer_relation().expect("the peer relation");
    assert_eq!(relation.id, PEER_RELATION_ID);
    assert_eq!(relation.remote_app, "microsample");
    assert!(relation.remote_units.is_empty(), "a single unit: no peers");
    assert_eq!(
        snap_calls(&created)[0],
        "snap install microsample --channel=latest/edge"
    );
    // A relation hook: juju-log prefixes the charm's lines with JUJU_RELATION_ID.
    let logged: Vec<_> = unit
        .logs()
        .into_iter()
        .filter(|l| l.context == "hooks/fleet-relation-created")
        .collect();
    assert!(
        !logged.is_empty() && logged.iter().all(|l| l.message.starts_with("fleet:0: ")),
        "{logged:#?}"
    );
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
#[should_panic(expected = "Juju runs no `update-status` before `fleet-relation-created`")]
fn the_harness_refuses_a_hook_juju_would_not_run_before_the_peer_relation() {
    let unit = Unit::new();
    ok(&unit.run_hook("install"));
    unit.run_hook("update-status");
}

#[test]
fn deploy_installs_from_edge_and_goes_active() {
    let unit = Unit::new();
    let port = free_port();
    unit.set_config("port", json!(port));

    // The first hook that sees the peer relation installs.
    let install = unit.run_install_hooks().relation_created;
    ok(&install);
    let install_calls = call_lines(&install);
    // In a peer relation hook the relation id is JUJU_RELATION_ID: no `relation-ids fleet`.
    assert_eq!(
        call_groups(&install, &[3, 2])[..2],
        [
            vec![
                "config-get --format=json",
                "opened-ports --format=json",
                "relation-ids --format=json -- cos-agent",
            ],
            vec![
                "relation-get --format=json -r fleet:0 --app - microsample",
                "relation-list --format=json -r fleet:0",
            ],
        ],
        "observes first, the peer relation included"
    );
    let installing = install_calls
        .iter()
        .position(|c| c == "status-set maintenance -- Installing microsample snap from 'edge'")
        .expect("an interim status before the install");
    assert_eq!(
        install_calls[installing + 1],
        "snap install microsample --channel=latest/edge"
    );
    assert!(
        install_calls.contains(&format!("open-port {port}/tcp")),
        "{install_calls:#?}"
    );
    assert_eq!(
        install_calls
            .iter()
            .rfind(|c| c.starts_with("status-set"))
            .unwrap(),
        "status-set active -- Ready at 'edge'",
        "the last status the hook sets is the truth after the install"
    );
    assert_eq!(snap_field(&unit, "tracking_channel"), "latest/edge");
    assert_eq!(
        unit.workload_version().as_deref(),
        Some("0+git.57e56f2"),
        "version shown right after install"
    );

    for hook in ["leader-elected", "config-changed", "start"] {
        let run = unit.run_hook(hook);
        ok(&run);
        assert!(
            run.calls_to("snap").is_empty(),
            "{hook} re-ran snap: {:?}",
            call_lines(&run)
        );
    }
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
    assert_eq!(unit.opened_ports(), [format!("{port}/tcp")]);
    assert_eq!(
        unit.workload_get(port, "/")
            .map(|(code, body)| (code, body.trim().to_string())),
        Some((200, "Online".into()))
    );
}

#[test]
fn config_channel_beta_refreshes_and_reports_the_new_version() {
    let (unit, _) = deployed();
    unit.set_config("channel", json!("beta"));
    let run = unit.run_hook("config-changed");
    ok(&run);
    let snaps = snap_calls(&run);
    assert_eq!(
        snaps,
        ["snap refresh microsample --channel=latest/beta"],
        "refresh, never reinstall"
    );
    assert_eq!(snap_field(&unit, "tracking_channel"), "latest/beta");
    assert_eq!(unit.status(), ("active".into(), "Ready at 'beta'".into()));
    assert_eq!(unit.workload_version().as_deref(), Some("0+git.49ff7aa"));
    let history: Vec<_> = unit
        .status_history()
        .into_iter()
        .filter(|s| s.context == "hooks/config-changed" && s.source == "charm")
        .map(|s| (s.status, s.message))
        .collect();
    assert!(
        history.contains(&(
            "maintenance".into(),
            "Refreshing microsample to 'beta'".into()
        )),
        "{history:?}"
    );
}

#[test]
fn equivalent_spellings_of_the_tracked_channel_do_not_refresh() {
    let (unit, _) = deployed();
    unit.set_config("channel", json!("latest/edge"));
    let run = unit.run_hook("config-changed");
    ok(&run);
    assert!(run.calls_to("snap").is_empty());
    assert_eq!(
        unit.status(),
        ("active".into(), "Ready at 'latest/edge'".into())
    );
}

#[test]
fn invalid_channels_block_and_run_no_snap_command() {
    let (unit, _) = deployed();
    for (channel, shown) in [
        (json!("edge/x/y"), "edge/x/y".to_string()),
        (json!(""), String::new()),
        (json!(" edge"), " edge".to_string()),
        (
            json!("edge; snap remove microsample"),
            "edge; snap remove microsample".to_string(),
        ),
        (
            json!("$(touch /tmp/pwned)"),
            "$(touch /tmp/pwned)".to_string(),
        ),
        (json!("a/b/c/d"), "a/b/c/d".to_string()),
        (json!(7), "7".to_string()),
    ] {
        unit.set_config("channel", channel.clone());
        let run = unit.run_hook("config-changed");
        ok(&run);
        assert!(
            run.calls_to("snap").is_empty(),
            "{channel}: {:?}",
            call_lines(&run)
        );
        // snapd is only read, for the version `juju status` shows.
        assert!(
            run.snapd_requests.iter().all(|r| r.method == "GET"),
            "{channel}: changed snapd"
        );
        let (status, message) = unit.status();
        assert_eq!(status, "blocked", "{channel}");
        assert!(
            message.starts_with(&format!("Invalid channel configured: '{shown}': ")),
            "{channel}: {message}"
        );
    }
    assert!(!std::path::Path::new("/tmp/pwned").exists());
    let warned = unit
        .logs()
        .iter()
        .any(|l| l.level == "WARNING" && l.message.starts_with("Invalid channel configured"));
    assert!(warned, "the cause is logged: {:?}", unit.logs());
    // Fixing it recovers, still on the same snap.
    unit.set_config("channel", json!("edge"));
    ok(&unit.run_hook("config-changed"));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn a_channel_the_store_lacks_blocks_naming_it() {
    let (unit, _) = deployed();
    unit.set_config("channel", json!("candidate"));
    let run = unit.run_hook("config-changed");
    ok(&run);
    assert_eq!(
        unit.status(),
        (
            "blocked".into(),
            "channel 'candidate' not available for microsample".into()
        )
    );
    assert_eq!(
        snap_field(&unit, "tracking_channel"),
        "latest/edge",
        "still on the old channel"
    );
    assert_eq!(unit.workload_version().as_deref(), Some("0+git.57e56f2"));
    let logged = unit
        .logs()
        .into_iter()
        .any(|l| l.message.contains("is not available on") && l.message.contains("candidate"));
    assert!(logged, "snap's own error is logged");
}

#[test]
fn a_fresh_install_from_an_unavailable_channel_blocks() {
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    unit.set_config("channel", json!("stable"));
    let run = unit.run_install_hooks().relation_created;
    ok(&run);
    assert_eq!(
        unit.status(),
        (
            "blocked".into(),
            "channel 'stable' not available for microsample".into()
        )
    );
    assert!(unit.snapd_state()["snap"].is_null());
    assert_eq!(unit.workload_version(), None);
}

#[test]
fn store_down_fails_the_hook_then_the_retry_recovers() {
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    unit.set_store_down(true);
    let run = unit.run_install_hooks().relation_created;
    assert_eq!(
        run.exit,
        Some(1),
        "a transient fault fails the hook so Juju retries"
    );
    let (status, message) = unit.status();
    assert_eq!(status, "waiting");
    assert!(
        message.starts_with(
            "snap install microsample failed, will retry: cannot install \"microsample\""
        ),
        "{message}"
    );
    assert!(message.contains("no such host"), "{message}");
    assert_eq!(
        unit.agent_status(),
        (
            "error".into(),
            "hook failed: \"fleet-relation-created\"".into()
        )
    );
    let errors: Vec<_> = unit
        .logs()
        .into_iter()
        .filter(|l| l.level == "ERROR")
        .collect();
    assert!(
        errors.iter().any(|l| l
            .message
            .contains("snap install microsample --channel=latest/edge failed")
            && l.message.contains("lookup api.snapcraft.io")),
        "{errors:?}"
    );
    assert!(
        !unit.status_history().iter().any(|s| s.status == "active"),
        "never active"
    );

    // Juju retries the hook; the store is back.
    unit.set_store_down(false);
    ok(&unit.run_hook("fleet-relation-created"));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn upgrade_charm_then_config_changed_keep_the_snap_and_report_the_version() {
    let (unit, _) = deployed();
    for hook in ["upgrade-charm", "config-changed"] {
        let run = unit.run_hook(hook);
        ok(&run);
        assert!(
            run.calls_to("snap").is_empty(),
            "{hook}: {:?}",
            call_lines(&run)
        );
        assert_eq!(
            unit.workload_version().as_deref(),
            Some("0+git.57e56f2"),
            "{hook}: the version is shown"
        );
        assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
        // Reported from observation on every hook, once each.
        assert_eq!(run.calls_to("status-set").len(), 1, "{hook}");
        assert_eq!(run.calls_to("application-version-set").len(), 1, "{hook}");
    }
}

#[test]
fn a_snapd_auto_refresh_shows_up_in_the_version_on_update_status() {
    let (unit, _) = deployed();
    let mut snap = unit.snapd_state()["snap"].clone();
    snap["version"] = json!("0+git.6a1b2c3");
    unit.snapd_put(json!({ "snap": snap }));
    let run = unit.run_hook("update-status");
    ok(&run);
    assert_eq!(
        call_lines(&run)
            .into_iter()
            .filter(|c| c.starts_with("application-version-set"))
            .collect::<Vec<_>>(),
        ["application-version-set -- 0+git.6a1b2c3"]
    );
    assert_eq!(unit.workload_version().as_deref(), Some("0+git.6a1b2c3"));
}

#[test]
fn after_the_agent_sets_a_status_the_charm_reports_again() {
    // Before `stop` and `remove` the agent sets statuses of its own (maintenance); after a
    // machine reboot Juju runs `start`, which must put the truth back.
    let (unit, _) = deployed();
    ok(&unit.run_hook("stop"));
    assert_eq!(unit.status().0, "maintenance");
    let start = unit.run_hook("start");
    ok(&start);
    assert_eq!(start.calls_to("status-set").len(), 1);
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn a_snap_removed_behind_the_charms_back_is_reinstalled() {
    let (unit, port) = deployed();
    unit.snapd_put(json!({"snap": null}));
    let run = unit.run_hook("update-status");
    ok(&run);
    // A fresh install comes back on the snap's default port: the charm moves it again.
    assert_eq!(
        snap_calls(&run),
        [
            "snap install microsample --channel=latest/edge".to_string(),
            format!("snap set microsample port={port}"),
            "snap restart microsample".to_string(),
        ]
    );
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn steady_state_update_status_only_reads_and_reports() {
    let (unit, port) = deployed();
    let run = unit.run_hook("update-status");
    ok(&run);
    assert_eq!(
        call_groups(&run, &[4, 2]),
        [
            // Read together.
            vec![
                "config-get --format=json",
                "opened-ports --format=json",
                "relation-ids --format=json -- cos-agent",
                "relation-ids --format=json -- fleet",
            ],
            // The peer relation (no peer): its members, and the fleet's move, if any.
            vec![
                "relation-get --format=json -r fleet:0 --app - microsample",
                "relation-list --format=json -r fleet:0",
            ],
            // Reported together.
            vec![
                "application-version-set -- 0+git.57e56f2",
                "status-set active -- Ready at 'edge'",
            ],
        ],
        "one read per fact, one report per fact: nothing remembered"
    );
    let requests: Vec<_> = run
        .snapd_requests
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        requests,
        [
            "GET /v2/snaps/microsample",
            "GET /v2/snaps/microsample/conf"
        ]
    );
    assert_eq!(unit.opened_ports(), [format!("{port}/tcp")]);
}

#[test]
fn unhandled_hooks_exit_0_without_side_effects() {
    let (unit, _) = deployed();
    let before = unit.juju_state();
    for hook in [
        "leader-settings-changed",
        "db-relation-joined",
        "website-relation-changed",
        "cos-agent-relation-departed",
        "cos-agent-relation-broken",
        "secret-changed",
        "secret-rotate",
        "pre-series-upgrade",
        "post-series-upgrade",
        "collect-metrics",
        "data-storage-attached",
        "some-hook-juju-adds-in-2030",
    ] {
        let run = unit.run_hook(hook);
        ok(&run);
        assert!(run.calls.is_empty(), "{hook}: {:?}", run.calls);
        assert!(run.snapd_requests.is_empty(), "{hook} asked snapd");
        // One debug line, on stdout: the agent logs a hook's stdout at DEBUG.
        assert_eq!(run.stdout.lines().count(), 1, "{hook}: {:?}", run.stdout);
        assert!(
            run.stdout.starts_with("ignoring "),
            "{hook}: {:?}",
            run.stdout
        );
    }
    let after = unit.juju_state();
    assert_eq!(after.unit_status, before.unit_status);
    assert_eq!(after.workload_version, before.workload_version);
}

#[test]
fn stop_leaves_the_workload_and_remove_removes_the_snap() {
    let (unit, port) = deployed();
    let stop = unit.run_hook("stop");
    ok(&stop);
    assert!(call_lines(&stop).is_empty(), "{:?}", call_lines(&stop));
    assert_eq!(
        unit.workload_get(port, "/").map(|r| r.0),
        Some(200),
        "stop is not destructive"
    );

    let remove = unit.run_hook("remove");
    ok(&remove);
    assert_eq!(snap_calls(&remove), ["snap remove microsample"]);
    assert!(unit.snapd_state()["snap"].is_null());
    // Removing again (a retried hook) is fine: the snap is already gone.
    ok(&unit.run_hook("remove"));
}

#[test]
fn a_missing_or_malformed_dispatch_path_is_a_clear_usage_error() {
    let unit = Unit::new();
    let missing = std::process::Command::new(microsample_e2e::dispatch_bin())
        .env_clear()
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("JUJU_DISPATCH_PATH is not set"), "{stderr}");
    for bad in [
        "install",
        "hooks/",
        "jobs/install",
        "hooks/a/b",
        "hooks/$(reboot)",
    ] {
        let out = std::process::Command::new(microsample_e2e::dispatch_bin())
            .env_clear()
            .env("JUJU_DISPATCH_PATH", bad)
            .current_dir(&unit.charm_dir)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&out.stderr)
                .contains("is not of the form hooks/<hook> or actions/<action>"),
            "{bad}"
        );
    }
}

#[test]
fn hook_tools_get_the_inherited_environment_and_the_right_syntax() {
    // The fake tools fail without JUJU_CONTEXT_ID and the agent socket variables, and reject
    // unknown flags or a status message read as a flag: a clean run proves both.
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    unit.set_config("channel", json!("--edge"));
    let runs = unit.run_install_hooks();
    for run in [
        runs.install,
        runs.relation_created,
        unit.run_hook("config-changed"),
    ] {
        ok(&run);
        assert_eq!(
            unit.status(),
            (
                "blocked".into(),
                "Invalid channel configured: '--edge': invalid character in channel name".into()
            )
        );
        assert!(
            run.calls.iter().all(|c| c.exit == Some(0)),
            "{:#?}",
            run.calls
        );
    }
}
