//! A bug must surface as a hook error with an ERROR line in `juju debug-log`: this test
//! re-runs itself as a child that installs the charm's panic hook and logger, with a
//! recording `juju-log` on PATH, and panics.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const CHILD: &str = "MICROSAMPLE_PANIC_CHILD";

#[test]
fn a_panic_is_logged_at_error_through_juju_log_and_fails_the_hook() {
    if std::env::var_os(CHILD).is_some() {
        microsample_charm::install_panic_hook();
        microsample_charm::install_logger();
        let empty: Vec<u8> = Vec::new();
        let _ = empty[3]; // an out-of-bounds index: a bug.
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let record = dir.path().join("juju-log.args");
    let tool = dir.path().join("juju-log");
    std::fs::write(
        &tool,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '{}'\n",
            record.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();

    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "a_panic_is_logged_at_error_through_juju_log_and_fails_the_hook",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .env("JUJU_CONTEXT_ID", "microsample/0-install-1")
        .env("PATH", format!("{}:/usr/bin:/bin", dir.path().display()))
        .output()
        .unwrap();
    assert!(!out.status.success(), "the panic fails the process");
    let args = std::fs::read_to_string(&record).expect("juju-log was called");
    let lines: Vec<&str> = args.lines().collect();
    assert_eq!(lines[..3], ["--log-level", "ERROR", "--"], "{args}");
    assert!(
        lines[3].starts_with("charm bug (please report it): panicked at tests/panic_hook.rs"),
        "{args}"
    );
    assert!(args.contains("index out of bounds"), "{args}");
}
