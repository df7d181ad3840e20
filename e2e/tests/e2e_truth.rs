//! The truth on every hook, end to end on the built `dispatch`: statuses changed by others
//! are put right, nothing is written in the charm directory, health checks end by their
//! deadline whatever holds the port, every family of "channel not available" blocks,
//! a snap installed from a file is left alone, and channels go to `snap` fully qualified.
//! The behaviour behind each is covered in memory (`src/charm/scenarios.rs`); these check
//! the wiring: argument vectors, texts, exit codes, files, deadlines.

use std::time::Duration;

use microsample_e2e::{
    call_lines, deployed, free_port, ok, snap_calls, store_with_track_1_0, CharmDirMode,
    PortHolder, Unit,
};
use serde_json::json;

const READY: (&str, &str) = ("active", "Ready at 'edge'");

fn status(unit: &Unit) -> (String, String) {
    unit.status()
}

fn is(unit: &Unit, expected: (&str, &str)) -> bool {
    let (s, m) = status(unit);
    (s.as_str(), m.as_str()) == expected
}

#[test]
fn statuses_set_by_others_are_put_right_by_the_next_hook() {
    let (unit, _) = deployed();
    unit.set_status_as_agent("maintenance", "stopping charm software");
    ok(&unit.run_hook("update-status"));
    assert!(is(&unit, READY), "{:?}", status(&unit));
    unit.set_status_via_juju_exec(
        "blocked",
        "channel 'candidate' not available for microsample",
    );
    ok(&unit.run_hook("update-status"));
    assert!(is(&unit, READY), "{:?}", status(&unit));
    // A status-set that takes effect and still exits 1: the hook fails (Juju retries), and
    // the next hook reports again whatever Juju shows.
    unit.set_config("channel", json!("candidate"));
    unit.status_set_applies_then_fails();
    let run = unit.run_hook("config-changed");
    assert_eq!(run.exit, Some(1), "{}", run.stderr);
    unit.clear_tool_fault("status-set");
    unit.set_config("channel", json!("edge"));
    ok(&unit.run_hook("config-changed"));
    assert!(is(&unit, READY), "{:?}", status(&unit));
}

#[test]
fn nothing_is_written_in_a_read_only_or_immutable_charm_dir() {
    for mode in [
        CharmDirMode::ReadOnly,
        CharmDirMode::ImmutableDir,
        CharmDirMode::Immutable,
    ] {
        let (unit, _) = deployed();
        let before = unit.charm_dir_snapshot();
        unit.set_charm_dir_mode(mode);
        for hook in ["update-status", "config-changed", "upgrade-charm", "start"] {
            let run = unit.run_hook(hook);
            ok(&run);
            assert!(is(&unit, READY), "{mode:?} {hook}: {:?}", status(&unit));
        }
        unit.set_charm_dir_mode(CharmDirMode::Writable);
        unit.assert_charm_dir_unchanged(&before);
    }
}

#[test]
fn upgrade_charm_deletes_the_status_memory_of_earlier_revisions() {
    let (unit, _) = deployed();
    let leftover = unit.charm_dir.join(".microsample-reported.json");
    std::fs::write(
        &leftover,
        br#"{"status":["blocked","stale"],"version":"0.1"}"#,
    )
    .unwrap();
    ok(&unit.run_hook("upgrade-charm"));
    assert!(!leftover.exists());
    assert!(is(&unit, READY));
}

/// Stops microsample and lets `holder` take its port: microsample cannot start again.
fn port_taken(make: fn(u16) -> PortHolder) -> (Unit, u16, PortHolder) {
    let (unit, port) = deployed();
    let mut snap = unit.snapd_state()["snap"].clone();
    snap["active"] = json!(false);
    unit.snapd_put(json!({ "snap": snap }));
    let holder = make(port);
    (unit, port, holder)
}

#[test]
fn a_port_held_by_another_process_is_named_and_the_hook_ends_by_its_deadline() {
    type Holder = fn(u16) -> PortHolder;
    let holders: [(&str, Holder); 4] = [
        ("silent", PortHolder::silent),
        ("never accepting", PortHolder::never_accepting),
        ("dripping", PortHolder::dripping),
        ("answering 404", |p| {
            PortHolder::answering(p, 404, "<h1>Not Found</h1>")
        }),
    ];
    for (what, make) in holders {
        let (unit, port, _holder) = port_taken(make);
        let run = unit.run_hook("update-status");
        ok(&run);
        // A deadline, not a speed claim: one probe is bounded by 3 s, the hook's health
        // work by 15 s.
        assert!(
            run.duration < Duration::from_secs(30),
            "{what}: {:?}",
            run.duration
        );
        assert_eq!(
            status(&unit),
            (
                "blocked".into(),
                format!("port {port} is held by another process: microsample cannot listen on it")
            ),
            "{what}"
        );
        assert!(
            snap_calls(&run).is_empty(),
            "{what}: {:?}",
            snap_calls(&run)
        );
    }
}

#[test]
fn moving_to_a_port_another_process_holds_ends_within_the_health_budget() {
    let (unit, _) = deployed();
    let taken = free_port();
    let _holder = PortHolder::silent(taken);
    unit.set_config("port", json!(taken));
    let run = unit.run_hook("config-changed");
    ok(&run);
    assert!(run.duration < Duration::from_secs(30), "{:?}", run.duration);
    assert_eq!(status(&unit).0, "blocked");
    assert!(
        status(&unit).1.contains("held by another process"),
        "{:?}",
        status(&unit)
    );
}

#[test]
fn every_unavailable_channel_family_blocks_at_deploy_and_on_config() {
    for channel in [
        "candidate",
        "edge/nonexistent",
        "beta/edge",
        "edge/hotfix_1",
        "9.9/stable",
    ] {
        // At deploy: the hook that installs blocks instead of failing in a loop.
        let unit = Unit::new();
        unit.set_config("port", json!(free_port()));
        unit.set_config("channel", json!(channel));
        let run = unit.run_install_hooks().relation_created;
        assert_eq!(run.exit, Some(0), "{channel}: {}", run.stderr);
        assert_eq!(
            status(&unit),
            (
                "blocked".into(),
                format!("channel '{channel}' not available for microsample")
            )
        );
        // On config, on a deployed unit: blocked too, still serving the old channel.
        let (deployed, _) = deployed();
        deployed.set_config("channel", json!(channel));
        ok(&deployed.run_hook("config-changed"));
        assert_eq!(status(&deployed).0, "blocked", "{channel}");
        // The next good config recovers.
        deployed.set_config("channel", json!("edge"));
        ok(&deployed.run_hook("config-changed"));
        assert!(is(&deployed, READY), "{channel}: {:?}", status(&deployed));
    }
}

#[test]
fn a_snap_installed_from_a_file_is_left_alone() {
    let unit = Unit::new();
    let port = free_port();
    unit.set_config("port", json!(port));
    unit.sideload_snap(port);
    unit.set_config("channel", json!("beta"));
    for hook in [
        "install",
        "fleet-relation-created",
        "config-changed",
        "update-status",
    ] {
        let run = unit.run_hook(hook);
        ok(&run);
        assert!(
            snap_calls(&run).is_empty(),
            "{hook}: {:?}",
            snap_calls(&run)
        );
        let (s, m) = status(&unit);
        assert_eq!(s, "blocked");
        assert!(
            m.starts_with("microsample was installed from a file (revision x1)"),
            "{m}"
        );
    }
}

#[test]
fn channels_go_to_snap_fully_qualified_so_bare_risks_do_not_drift() {
    let unit = Unit::new();
    let port = free_port();
    unit.set_config("port", json!(port));
    unit.preinstall_tracking_1_0_stable(port);
    assert_eq!(store_with_track_1_0()["latest/edge"]["revision"], 34);
    // Deployed with channel=1.0/stable: the snap is adopted as it is.
    unit.set_config("channel", json!("1.0/stable"));
    let runs = unit.run_install_hooks();
    for run in [&runs.install, &runs.relation_created] {
        ok(run);
        assert!(snap_calls(run).is_empty(), "{:?}", call_lines(run));
    }
    unit.set_config("channel", json!("edge"));
    let run = unit.run_hook("config-changed");
    ok(&run);
    assert_eq!(
        snap_calls(&run),
        ["snap refresh microsample --channel=latest/edge"]
    );
    assert_eq!(
        unit.snapd_state()["snap"]["tracking_channel"],
        "latest/edge"
    );
    assert!(is(&unit, READY));
    let again = unit.run_hook("update-status");
    ok(&again);
    assert!(snap_calls(&again).is_empty(), "{:?}", call_lines(&again));
}

#[test]
fn configured_values_are_quoted_escaped_with_the_parsers_reason() {
    let (unit, _) = deployed();
    for (value, message) in [
        (
            " edge",
            "Invalid channel configured: ' edge': invalid character in channel name",
        ),
        (
            "edge\n",
            "Invalid channel configured: 'edge\\n': invalid character in channel name",
        ),
        (
            "x/y/z/w",
            "Invalid channel configured: 'x/y/z/w': channel name has too many components",
        ),
    ] {
        unit.set_config("channel", json!(value));
        ok(&unit.run_hook("config-changed"));
        assert_eq!(status(&unit), ("blocked".into(), message.into()));
    }
}
