//! The `dispatch` binary's own entry (src/main.rs skips std's start-up): what std would
//! have made safe still is, checked on the real binary.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, Stdio};

fn dispatch(hook: &str, tools: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_dispatch"));
    command
        .env_clear()
        .env("JUJU_DISPATCH_PATH", format!("hooks/{hook}"))
        .env("JUJU_CONTEXT_ID", "microsample/0-install-1")
        .env("JUJU_UNIT_NAME", "microsample/0")
        .env("PATH", tools)
        .current_dir(tools);
    command
}

/// A hook-tool directory where every tool fails the way an unreachable agent does.
fn failing_tools() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for tool in ["config-get", "juju-log", "status-set"] {
        let path = dir.path().join(tool);
        std::fs::write(
            &path,
            "#!/bin/sh\necho 'ERROR cannot reach the agent' >&2\nexit 1\n",
        )
        .unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    dir
}

#[test]
fn a_hook_started_with_stdin_stdout_and_stderr_closed_ends_with_its_own_exit_code() {
    let tools = failing_tools();
    for (hook, code) in [("some-hook-juju-adds-in-2030", 0), ("install", 1)] {
        let mut command = dispatch(hook, tools.path());
        // SAFETY: close(2) only, between fork and exec.
        unsafe {
            command.pre_exec(|| {
                for fd in 0..3 {
                    libc::close(fd);
                }
                Ok(())
            });
        }
        let status = command.status().unwrap();
        assert_eq!(
            (status.code(), status.signal()),
            (Some(code), None),
            "{hook}"
        );
    }
}

#[test]
fn a_closed_output_pipe_is_an_error_to_write_to_not_a_death_by_sigpipe() {
    // With `juju-log` failing, the charm writes its ERROR lines to stderr.
    let tools = failing_tools();
    let mut child = dispatch("install", tools.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader is gone before the charm writes anything.
    drop(child.stdout.take());
    drop(child.stderr.take());
    let status = child.wait().unwrap();
    assert_eq!((status.code(), status.signal()), (Some(1), None));
}
