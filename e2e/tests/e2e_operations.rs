//! End-to-end: operating microsample — port, `juju expose` ports, health and self-healing,
//! and the `restart` / `info` actions.

use microsample_e2e::{deployed, free_port, ok, snap_calls, Unit};
use serde_json::{json, Value};

/// Stops microsample's service behind the charm's back (as a crash would).
fn stop_service(unit: &Unit) {
    let mut snap = unit.snapd_state()["snap"].clone();
    snap["active"] = json!(false);
    unit.snapd_put(json!({ "snap": snap }));
}

fn online(unit: &Unit, port: u16) -> bool {
    unit.workload_get(port, "/")
        .is_some_and(|(code, body)| code == 200 && body.trim() == "Online")
}

#[test]
fn a_port_change_moves_the_service_and_exactly_that_port_is_open() {
    let (unit, old) = deployed();
    let new = free_port();
    unit.set_config("port", json!(new));
    let run = unit.run_hook("config-changed");
    ok(&run);
    assert_eq!(
        snap_calls(&run),
        [
            format!("snap set microsample port={new}"),
            "snap restart microsample".to_string()
        ]
    );
    assert_eq!(unit.snapd_state()["snap"]["config"]["port"], json!(new));
    assert_eq!(unit.opened_ports(), [format!("{new}/tcp")]);
    let ports: Vec<String> = run
        .calls
        .iter()
        .filter(|c| c.tool.ends_with("-port"))
        .map(|c| format!("{} {}", c.tool, c.args.join(" ")))
        .collect();
    assert_eq!(
        ports,
        [
            format!("close-port {old}/tcp"),
            format!("open-port {new}/tcp")
        ]
    );
    assert!(online(&unit, new));
    assert!(!online(&unit, old));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));

    // Unchanged port: no restart, no port churn.
    let again = unit.run_hook("config-changed");
    ok(&again);
    assert!(snap_calls(&again).is_empty());
    assert!(again.calls_to("open-port").is_empty() && again.calls_to("close-port").is_empty());
}

#[test]
fn ports_opened_in_a_failed_hook_are_rolled_back_by_juju() {
    let (unit, old) = deployed();
    let new = free_port();
    unit.set_config("port", json!(new));
    unit.fail_tool("status-set", 1, "ERROR connection is shut down\n");
    let run = unit.run_hook("config-changed");
    assert_eq!(run.exit, Some(1));
    assert_eq!(
        unit.opened_ports(),
        [format!("{old}/tcp")],
        "Juju discards port changes of a failed hook"
    );
    unit.update_juju_state(|s| {
        s.tool_faults.clear();
    });
    ok(&unit.run_hook("config-changed"));
    assert_eq!(unit.opened_ports(), [format!("{new}/tcp")]);
}

#[test]
fn invalid_ports_block_naming_the_value() {
    let (unit, port) = deployed();
    for (value, shown) in [
        (json!(80), "80"),
        (json!(65536), "65536"),
        (json!(0), "0"),
        (json!("abc"), "abc"),
        (json!(-8080), "-8080"),
    ] {
        unit.set_config("port", value.clone());
        let run = unit.run_hook("config-changed");
        ok(&run);
        assert!(snap_calls(&run).is_empty(), "{value}");
        assert_eq!(
            unit.status(),
            (
                "blocked".into(),
                format!("Invalid port configured: '{shown}' (must be 1024-65535)")
            )
        );
        assert_eq!(
            unit.opened_ports(),
            [format!("{port}/tcp")],
            "ports untouched"
        );
    }
}

#[test]
fn a_stopped_service_is_started_on_update_status() {
    let (unit, port) = deployed();
    stop_service(&unit);
    assert!(!online(&unit, port));
    let run = unit.run_hook("update-status");
    ok(&run);
    assert_eq!(snap_calls(&run), ["snap start --enable microsample"]);
    assert!(online(&unit, port));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
    assert!(unit
        .logs()
        .iter()
        .any(|l| l.level == "WARNING" && l.message.contains("not responding")));
}

#[test]
fn a_service_that_stays_down_is_blocked_then_recovers() {
    let (unit, port) = deployed();
    unit.set_workload_fault(Some("dead"));
    let run = unit.run_hook("update-status");
    ok(&run);
    assert_eq!(
        snap_calls(&run),
        ["snap start --enable microsample"],
        "one attempt per hook"
    );
    assert_eq!(
        unit.status(),
        (
            "blocked".into(),
            format!("microsample not responding on port {port}")
        )
    );
    assert!(!unit
        .status_history()
        .iter()
        .rev()
        .take(1)
        .any(|s| s.status == "active"));
    assert!(unit.logs().iter().any(|l| l.level == "ERROR"
        && l.message
            .contains(&format!("not responding on port {port}"))));

    unit.set_workload_fault(None);
    ok(&unit.run_hook("update-status"));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn a_service_answering_errors_is_restarted_and_not_reported_active() {
    let (unit, port) = deployed();
    unit.set_workload_fault(Some("http500"));
    let run = unit.run_hook("update-status");
    ok(&run);
    assert_eq!(
        snap_calls(&run),
        ["snap restart microsample"],
        "it runs, so restart"
    );
    // Its process runs (snapd says active) but it does not answer: waiting, rechecked on
    // the next update-status; never active.
    assert_eq!(
        unit.status(),
        (
            "waiting".into(),
            format!("microsample not responding on port {port}")
        )
    );
}

#[test]
fn info_reports_what_snapd_and_the_service_say() {
    let (unit, port) = deployed();
    let run = unit.run_action("info", json!({}));
    ok(&run);
    let action = run.action.clone().expect("action state");
    assert!(!action.failed, "{}", action.message);
    let results = &action.results;
    assert_eq!(results["version"], "0+git.57e56f2");
    assert_eq!(results["revision"], unit.snapd_state()["snap"]["revision"]);
    assert_eq!(results["tracking-channel"], "latest/edge");
    assert_eq!(results["port"], Value::from(port.to_string()));
    assert_eq!(results["service"], "active");
    assert_eq!(results["health"], "online");
    assert!(snap_calls(&run).is_empty());
    assert!(
        run.calls_to("status-set").is_empty(),
        "actions leave the unit status alone"
    );
}

#[test]
fn info_reports_a_dead_service_as_such() {
    let (unit, port) = deployed();
    unit.set_workload_fault(Some("dead"));
    stop_service(&unit);
    let run = unit.run_action("info", json!({}));
    ok(&run);
    let action = run.action.clone().unwrap();
    assert!(!action.failed);
    assert_eq!(action.results["service"], "inactive");
    let health = action.results["health"].as_str().unwrap();
    assert_eq!(health, "nothing listens on the port", "port {port}");
}

#[test]
fn restart_restarts_and_reports_health() {
    let (unit, port) = deployed();
    let run = unit.run_action("restart", json!({}));
    ok(&run);
    assert_eq!(snap_calls(&run), ["snap restart microsample"]);
    let action = run.action.clone().unwrap();
    assert!(!action.failed, "{}", action.message);
    assert_eq!(action.results["health"], "online");
    assert_eq!(action.results["port"], Value::from(port.to_string()));
}

#[test]
fn restart_fails_cleanly_when_the_service_stays_down() {
    let (unit, port) = deployed();
    unit.set_workload_fault(Some("dead"));
    let run = unit.run_action("restart", json!({}));
    ok(&run);
    let action = run.action.clone().unwrap();
    assert!(action.failed);
    assert!(
        action.message.starts_with(&format!(
            "microsample restarted but not responding on port {port}"
        )),
        "{}",
        action.message
    );
}

#[test]
fn actions_fail_cleanly_without_the_snap() {
    let unit = Unit::new();
    for name in ["info", "restart"] {
        let run = unit.run_action(name, json!({}));
        ok(&run);
        let action = run.action.clone().unwrap();
        assert!(action.failed, "{name}");
        assert_eq!(action.message, "the microsample snap is not installed");
        assert!(
            snap_calls(&run).is_empty(),
            "{name} must not install anything"
        );
    }
}

#[test]
fn action_tools_are_never_called_in_hooks() {
    let (unit, _) = deployed();
    stop_service(&unit);
    ok(&unit.run_hook("update-status"));
    ok(&unit.run_hook("upgrade-charm"));
    let action_calls: Vec<_> = unit
        .all_calls()
        .into_iter()
        .filter(|c| c.tool.starts_with("action-"))
        .collect();
    assert!(action_calls.is_empty(), "{action_calls:?}");
}
