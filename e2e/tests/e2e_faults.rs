//! End-to-end fault matrix: a sick snapd, a failing `snap`, failing hook tools, wrong config
//! types and hostile input. The unit never lies (`active` only when it is), never hangs,
//! never dies of a signal, and the next hook repairs whatever a fault interrupted.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use microsample_e2e::{deployed, free_port, ok, HookRun, Unit};
use serde_json::json;

/// A transient fault: the hook fails (so Juju retries), no signal, the status names the
/// cause, an ERROR line says it, and `active` was not set during that hook.
fn assert_transient(unit: &Unit, run: &HookRun, hook: &str, status_prefix: &str) {
    assert_eq!(run.signal, None, "killed by a signal");
    assert_eq!(run.exit, Some(1), "{hook}: stderr {}", run.stderr);
    let (status, message) = unit.status();
    assert_eq!(status, "waiting", "{message}");
    assert!(
        message.starts_with(status_prefix),
        "{message:?} does not start with {status_prefix:?}"
    );
    assert!(
        message.chars().count() <= 200 && !message.contains('\n'),
        "{message:?}"
    );
    let context = format!("hooks/{hook}");
    assert!(
        unit.logs()
            .iter()
            .any(|l| l.level == "ERROR" && l.context == context),
        "no ERROR line for {hook}: {:?}",
        unit.logs()
    );
    assert!(
        !run.calls_to("status-set")
            .iter()
            .any(|c| c.args.first().map(String::as_str) == Some("active")),
        "{hook} said active"
    );
}

/// After a fault is gone, the next hook converges again.
fn assert_repaired(unit: &Unit) {
    let run = unit.run_hook("update-status");
    ok(&run);
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn snapd_answer_faults_fail_the_hook_and_name_the_cause() {
    for (fault, cause) in [
        ("http500", "snapd unavailable, will retry: snapd error 500"),
        (
            "invalid_json",
            "snapd unavailable, will retry: unexpected answer from snapd",
        ),
        (
            "truncated_body",
            "snapd unavailable, will retry: unexpected answer from snapd",
        ),
        (
            "huge_body",
            "snapd unavailable, will retry: unexpected answer from snapd",
        ),
        (
            "close",
            "snapd unavailable, will retry: unexpected answer from snapd",
        ),
    ] {
        let (unit, _) = deployed();
        unit.set_get_snap_fault(Some(fault), None);
        let run = unit.run_hook("update-status");
        assert_transient(&unit, &run, "update-status", cause);
        assert!(
            run.calls_to("snap").is_empty(),
            "{fault}: acted on an answer it could not read"
        );
        unit.set_get_snap_fault(None, None);
        assert_repaired(&unit);
    }
}

#[test]
fn a_snapd_that_never_answers_times_out() {
    let (unit, _) = deployed();
    unit.set_get_snap_fault(Some("hang"), None);
    let run = unit.run_hook("update-status");
    assert_transient(
        &unit,
        &run,
        "update-status",
        "snapd unavailable, will retry: snapd did not answer within 10s",
    );
    assert!(run.duration < Duration::from_secs(30), "{:?}", run.duration);
    unit.set_get_snap_fault(None, None);
    assert_repaired(&unit);
}

#[test]
fn a_missing_or_refusing_socket_is_unreachable() {
    let (unit, _) = deployed();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.socket");
    let refusing = dir.path().join("refusing.socket");
    drop(std::os::unix::net::UnixListener::bind(&refusing).unwrap()); // file stays, nobody listens
    for socket in [&missing, &refusing] {
        let run = unit.run_hook_with_env(
            "update-status",
            &[("SNAPD_SOCKET", socket.to_str().unwrap())],
        );
        assert_transient(
            &unit,
            &run,
            "update-status",
            "snapd unavailable, will retry: cannot reach snapd",
        );
        let (_, message) = unit.status();
        assert!(
            message.contains(&socket.display().to_string()),
            "names the socket: {message}"
        );
    }
    assert_repaired(&unit);
}

#[test]
fn snapd_busy_is_retried_inside_the_hook_then_fails() {
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    unit.set_seeding(true);
    let run = unit.run_install_hooks().relation_created;
    assert_transient(
        &unit,
        &run,
        "fleet-relation-created",
        "snap install microsample failed, will retry: snapd busy: too early for operation",
    );
    let tries: Vec<_> = run
        .calls_to("snap")
        .into_iter()
        .filter(|c| c.args[0] == "install")
        .collect();
    assert_eq!(tries.len(), 3, "three tries with backoff");
    assert!(tries.iter().all(|c| c.exit == Some(10)));
    assert!(
        run.duration >= Duration::from_secs(4),
        "backoff 1 s then 3 s: {:?}",
        run.duration
    );
    assert!(unit
        .logs()
        .iter()
        .any(|l| l.level == "WARNING" && l.message.contains("retrying in 1s")));
    unit.set_seeding(false);
    ok(&unit.run_hook("fleet-relation-created"));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn a_failed_snapd_change_fails_the_hook() {
    let (unit, _) = deployed();
    unit.set_change_fails(Some("cannot download snap: connection reset by peer"));
    unit.set_config("channel", json!("beta"));
    let run = unit.run_hook("config-changed");
    assert_transient(
        &unit,
        &run,
        "config-changed",
        "snap refresh microsample failed, will retry: cannot perform the following tasks",
    );
    unit.set_change_fails(None);
    ok(&unit.run_hook("config-changed"));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'beta'".into()));
}

/// A `snap` stand-in on PATH ahead of the fake one.
fn snap_stand_in(script: &str) -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let snap = dir.path().join("snap");
    std::fs::write(&snap, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&snap, std::fs::Permissions::from_mode(0o755)).unwrap();
    let path = dir.path().display().to_string();
    (dir, path)
}

#[test]
fn a_snap_usage_error_is_a_loud_failure() {
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    let (_dir, extra) = snap_stand_in("echo \"error: unknown flag \\`channel'\" >&2; exit 64");
    let path = format!("{extra}:{}:/usr/bin:/bin", unit.tools_dir.display());
    ok(&unit.run_hook("install"));
    let run = unit.run_hook_with_env("fleet-relation-created", &[("PATH", &path)]);
    assert_transient(
        &unit,
        &run,
        "fleet-relation-created",
        "snap install microsample failed, will retry: unknown flag `channel'",
    );
}

#[test]
fn a_hanging_snap_is_killed_at_the_bound() {
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    unit.set_snap_hang(true);
    ok(&unit.run_hook("install"));
    let run = unit.run_hook_with_env(
        "fleet-relation-created",
        &[("MICROSAMPLE_SNAP_TIMEOUT", "2")],
    );
    assert_transient(&unit, &run, "fleet-relation-created", "snap install microsample failed, will retry: snap: `snap install microsample --channel=latest/edge` killed after 2s");
    assert!(run.duration < Duration::from_secs(20), "{:?}", run.duration);
    unit.set_snap_hang(false);
    ok(&unit.run_hook("fleet-relation-created"));
    assert_eq!(unit.status(), ("active".into(), "Ready at 'edge'".into()));
}

#[test]
fn failing_hook_tools_fail_the_hook_with_their_error() {
    for (tool, exit) in [
        ("config-get", 1),
        ("config-get", 2),
        ("opened-ports", 1),
        ("application-version-set", 1),
    ] {
        let (unit, _) = deployed();
        // A new version (a snapd auto-refresh) so there is a version to report.
        let mut snap = unit.snapd_state()["snap"].clone();
        snap["version"] = json!("0+git.6a1b2c3");
        unit.snapd_put(json!({ "snap": snap }));
        unit.fail_tool(tool, exit, "ERROR connection is shut down\n");
        let run = unit.run_hook("update-status");
        assert_eq!(run.exit, Some(1), "{tool}");
        assert_eq!(run.signal, None);
        let error = unit
            .logs()
            .into_iter()
            .find(|l| l.level == "ERROR")
            .unwrap_or_else(|| panic!("{tool}: no ERROR line"));
        assert!(
            error.message.contains(tool) && error.message.contains("ERROR connection is shut down"),
            "{tool}: {}",
            error.message
        );
        unit.update_juju_state(|s| s.tool_faults.clear());
        assert_repaired(&unit);
    }
}

#[test]
fn a_failing_status_set_still_fails_the_hook_loudly() {
    let (unit, _) = deployed();
    unit.fail_tool("status-set", 1, "ERROR connection is shut down\n");
    unit.set_config("channel", json!("no/such/channel/here"));
    let run = unit.run_hook("config-changed");
    assert_eq!(run.exit, Some(1));
    assert!(unit
        .logs()
        .iter()
        .any(|l| l.level == "ERROR" && l.message.contains("cannot set status blocked")));
    // Once status-set works again, the status the failed hook could not set is set.
    unit.update_juju_state(|s| s.tool_faults.clear());
    ok(&unit.run_hook("config-changed"));
    assert_eq!(unit.status().0, "blocked");
}

#[test]
fn juju_log_failing_never_fails_a_hook() {
    let (unit, _) = deployed();
    unit.fail_tool("juju-log", 1, "ERROR connection is shut down\n");
    unit.snapd_put(json!({"snap": null}));
    let run = unit.run_hook("update-status"); // reinstalls, which logs
    ok(&run);
    assert!(
        run.stderr
            .contains("ran snap install microsample --channel=latest/edge"),
        "the line goes to stderr instead: {}",
        run.stderr
    );
}

#[test]
fn wrong_config_types_and_unknown_keys() {
    let (unit, port) = deployed();
    unit.set_config("mystery", json!({"nested": [1, 2]}));
    ok(&unit.run_hook("config-changed"));
    assert_eq!(
        unit.status(),
        ("active".into(), "Ready at 'edge'".into()),
        "unknown keys are ignored"
    );
    for (key, value, message) in [
        (
            "port",
            json!("abc"),
            "Invalid port configured: 'abc' (must be 1024-65535)",
        ),
        (
            "port",
            json!(8080.5),
            "Invalid port configured: '8080.5' (must be 1024-65535)",
        ),
        ("port", json!(null), "Invalid port configured"),
        ("channel", json!(5), "Invalid channel configured: '5'"),
        (
            "channel",
            json!(["edge"]),
            "Invalid channel configured: '[\"edge\"]'",
        ),
        ("channel", json!(true), "Invalid channel configured: 'true'"),
    ] {
        unit.set_config(key, value.clone());
        let run = unit.run_hook("config-changed");
        ok(&run);
        if value.is_null() {
            // No value means the default (8080): Juju prunes unset options.
            assert_ne!(unit.status().0, "blocked", "{key}={value}");
        } else {
            let (status, shown) = unit.status();
            assert_eq!(status, "blocked", "{key}={value}");
            // The value as typed, then (for a channel) the parser's reason.
            assert!(shown.starts_with(message), "{key}={value}: {shown}");
        }
        unit.set_config("port", json!(port));
        unit.set_config("channel", json!("edge"));
    }
}

#[test]
fn hostile_values_never_reach_a_shell_and_messages_stay_bounded() {
    let (unit, _) = deployed();
    let marker = unit.root.join("pwned");
    let huge = "e".repeat(100_000);
    for channel in [
        format!("edge; touch {}", marker.display()),
        format!("$(touch {})", marker.display()),
        format!("`touch {}`", marker.display()),
        "edge\nstatus-set active pwned".to_string(),
        "edge\u{1b}[31mred\u{7}".to_string(),
        huge.clone(),
        "é/beta".to_string(),
    ] {
        unit.set_config("channel", json!(channel));
        let run = unit.run_hook("config-changed");
        ok(&run);
        let (status, message) = unit.status();
        assert_eq!(status, "blocked");
        assert!(
            message.starts_with("Invalid channel configured: '"),
            "{message}"
        );
        assert!(
            message.chars().count() <= 200,
            "{} chars",
            message.chars().count()
        );
        assert!(!message.chars().any(char::is_control), "{message:?}");
        assert!(run.calls_to("snap").is_empty());
    }
    unit.set_config("channel", json!("edge"));
    unit.set_config("port", json!(format!("8080; touch {}", marker.display())));
    ok(&unit.run_hook("config-changed"));
    assert_eq!(unit.status().0, "blocked");
    assert!(!marker.exists(), "a config value reached a shell");
}

#[test]
fn non_utf8_environment_is_handled_without_a_panic() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let unit = Unit::new();
    let out = std::process::Command::new(microsample_e2e::dispatch_bin())
        .env_clear()
        .env(
            "JUJU_DISPATCH_PATH",
            OsStr::from_bytes(b"hooks/inst\xffall"),
        )
        .current_dir(&unit.charm_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not of the form"));
    // Non-UTF-8 in other variables (model name) on an unhandled hook: still a clean exit.
    let out = std::process::Command::new(microsample_e2e::dispatch_bin())
        .env_clear()
        .env("JUJU_DISPATCH_PATH", "hooks/secret-changed")
        .env("JUJU_MODEL_NAME", OsStr::from_bytes(b"\xff\xfe"))
        .current_dir(&unit.charm_dir)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
}

#[test]
fn every_handled_hook_is_idempotent() {
    let (unit, port) = deployed();
    for hook in [
        "install",
        "fleet-relation-created",
        "config-changed",
        "start",
        "upgrade-charm",
        "update-status",
    ] {
        let first = unit.run_hook(hook);
        ok(&first);
        let state = unit.juju_state();
        let snapd = unit.snapd_state()["snap"].clone();
        let second = unit.run_hook(hook);
        ok(&second);
        assert!(second.calls_to("snap").is_empty(), "{hook} ran snap again");
        assert!(
            second.calls_to("open-port").is_empty() && second.calls_to("close-port").is_empty(),
            "{hook}"
        );
        let again = unit.juju_state();
        assert_eq!(again.unit_status, state.unit_status, "{hook}");
        assert_eq!(again.workload_version, state.workload_version, "{hook}");
        assert_eq!(again.committed_ports(), [format!("{port}/tcp")], "{hook}");
        assert_eq!(unit.snapd_state()["snap"], snapd, "{hook} changed the snap");
    }
}
