//! Running a child process with an argument vector, a deadline and captured output.
//!
//! Every external command the charm runs (hook tools, the `snap` CLI) goes through
//! [`run`], so none of them can hang a hook: at the deadline the child is killed.

use std::io::{Read, Write};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What a finished child left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
}

impl Finished {
    /// The stderr text, lossily decoded and trimmed.
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Why a child could not be run to completion.
#[derive(Debug)]
pub enum RunError {
    /// It could not be started (not on PATH, not executable, ...).
    Spawn(std::io::Error),
    /// It was still running at the deadline and was killed.
    TimedOut(Duration),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) if e.kind() == std::io::ErrorKind::NotFound => {
                f.write_str("not found on PATH")
            }
            RunError::Spawn(e) => write!(f, "cannot run: {e}"),
            RunError::TimedOut(t) => write!(f, "killed after {}s without finishing", t.as_secs()),
        }
    }
}

/// Runs `command` (which inherits this process's environment) with `stdin` fed to it, or
/// /dev/null, and waits at most `timeout`.
pub fn run(
    command: &mut Command,
    stdin: Option<&[u8]>,
    timeout: Duration,
) -> Result<Finished, RunError> {
    let deadline = Instant::now() + timeout;
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(RunError::Spawn)?;

    // Pipes are drained on threads so a chatty child never blocks on a full pipe; each
    // thread reports when its pipe closes, which is normally the moment the child exits.
    let (done_tx, done_rx) = mpsc::channel();
    let mut readers = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let tx = done_tx.clone();
        readers.push(thread::spawn(move || {
            let mut pipe = pipe;
            let mut buf = Vec::new();
            let _ = pipe.read_to_end(&mut buf);
            let _ = tx.send(());
            buf
        }));
    }
    drop(done_tx);
    if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
        // A child that exits without reading its stdin is not an error here.
        let _ = pipe.write_all(input);
    }

    let mut closed = 0;
    while closed < readers.len() {
        let left = deadline.saturating_duration_since(Instant::now());
        match done_rx.recv_timeout(left) {
            Ok(()) => closed += 1,
            Err(_) => return Err(kill(child, timeout)),
        }
    }
    // Both pipes are closed; the child has exited or is about to.
    let mut pause = Duration::from_micros(50);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            Ok(None) => return Err(kill(child, timeout)),
            Err(e) => return Err(RunError::Spawn(e)),
        }
    };
    let mut outputs = readers.into_iter().map(|r| r.join().unwrap_or_default());
    Ok(Finished {
        status,
        stdout: outputs.next().unwrap_or_default(),
        stderr: outputs.next().unwrap_or_default(),
    })
}

fn kill(mut child: std::process::Child, timeout: Duration) -> RunError {
    let _ = child.kill();
    let _ = child.wait();
    RunError::TimedOut(timeout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"hello"),
            Duration::from_secs(10),
        )
        .unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr_text(), "err");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn kills_at_the_deadline() {
        let started = Instant::now();
        let err = run(
            Command::new("sleep").arg("30"),
            None,
            Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut(_)));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(
            &mut Command::new("/nonexistent/tool"),
            None,
            Duration::from_secs(1),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::Spawn(_)));
    }
}
