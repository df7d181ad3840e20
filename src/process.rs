//! Running a child process with an argument vector, a deadline and captured output.
//!
//! Every external command the charm runs (hook tools, the `snap` CLI) goes through
//! [`run`], so none of them can hang a hook: at the deadline the child is killed. The
//! child's pipes are served from this one thread with `poll(2)` (no helper threads), so a
//! chatty child never blocks on a full pipe and a large stdin never deadlocks.

use std::io::{self, ErrorKind, Read, Write};
use std::os::unix::io::AsRawFd;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use crate::deadline::Deadline;

/// What a finished child left behind.
#[derive(Debug)]
pub(crate) struct Finished {
    pub(crate) status: ExitStatus,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

impl Finished {
    /// The stderr text, lossily decoded and trimmed.
    pub(crate) fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).trim().to_string()
    }
}

/// Why a child could not be run to completion.
#[derive(Debug)]
pub(crate) enum RunError {
    /// It could not be started (not on PATH, not executable, ...).
    Spawn(io::Error),
    /// It was still running at the deadline and was killed.
    TimedOut,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Spawn(e) if e.kind() == ErrorKind::NotFound => {
                f.write_str("not found on PATH")
            }
            RunError::Spawn(e) => write!(f, "cannot run: {e}"),
            RunError::TimedOut => f.write_str("was killed at its deadline without finishing"),
        }
    }
}

/// Runs `command` (which inherits this process's environment) with `stdin` fed to it, or
/// /dev/null, until `deadline`.
pub(crate) fn run(
    command: &mut Command,
    stdin: Option<&[u8]>,
    deadline: Deadline,
) -> Result<Finished, RunError> {
    command
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = command.spawn().map_err(RunError::Spawn)?;
    match exchange(&mut child, stdin.unwrap_or_default(), deadline) {
        Ok((stdout, stderr)) => match wait(&mut child, deadline) {
            Ok(status) => Ok(Finished {
                status,
                stdout,
                stderr,
            }),
            Err(e) => Err(kill(child, e)),
        },
        Err(e) => Err(kill(child, e)),
    }
}

/// Feeds stdin and drains stdout and stderr until both close.
fn exchange(
    child: &mut Child,
    input: &[u8],
    deadline: Deadline,
) -> Result<(Vec<u8>, Vec<u8>), RunError> {
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let mut stderr = child.stderr.take();
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let mut written = 0;
    for fd in [
        stdin.as_ref().map(AsRawFd::as_raw_fd),
        stdout.as_ref().map(AsRawFd::as_raw_fd),
        stderr.as_ref().map(AsRawFd::as_raw_fd),
    ]
    .into_iter()
    .flatten()
    {
        set_nonblocking(fd).map_err(RunError::Spawn)?;
    }
    let mut chunk = [0u8; 8192];
    while stdin.is_some() || stdout.is_some() || stderr.is_some() {
        let fds = [
            stdin.as_ref().map(|p| (p.as_raw_fd(), libc::POLLOUT)),
            stdout.as_ref().map(|p| (p.as_raw_fd(), libc::POLLIN)),
            stderr.as_ref().map(|p| (p.as_raw_fd(), libc::POLLIN)),
        ];
        if !ready(fds.into_iter().flatten(), deadline)? {
            continue;
        }
        if let Some(pipe) = &mut stdin {
            match pipe.write(&input[written..]) {
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                // A child that exits without reading its stdin is not an error here.
                Err(_) => written = input.len(),
            }
            if written >= input.len() {
                stdin = None; // closes the pipe: the child sees end of input
            }
        }
        drain(&mut stdout, &mut out, &mut chunk)?;
        drain(&mut stderr, &mut err, &mut chunk)?;
    }
    Ok((out, err))
}

/// Reads what is there; drops the pipe at end of file.
fn drain<R: Read>(
    pipe: &mut Option<R>,
    into: &mut Vec<u8>,
    chunk: &mut [u8],
) -> Result<(), RunError> {
    let Some(reader) = pipe else {
        return Ok(());
    };
    loop {
        match reader.read(chunk) {
            Ok(0) => {
                *pipe = None;
                return Ok(());
            }
            Ok(n) => into.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(RunError::Spawn(e)),
        }
    }
}

/// Waits until one of `fds` is ready or the deadline passes; false when interrupted.
fn ready(
    fds: impl Iterator<Item = (i32, libc::c_short)>,
    deadline: Deadline,
) -> Result<bool, RunError> {
    let mut fds: Vec<libc::pollfd> = fds
        .map(|(fd, events)| libc::pollfd {
            fd,
            events,
            revents: 0,
        })
        .collect();
    let left = deadline.remaining();
    if left.is_zero() {
        return Err(RunError::TimedOut);
    }
    let timeout_ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
    // SAFETY: fds is a valid array of pollfd for the call's duration.
    let rc = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
    if rc >= 0 {
        return Ok(true);
    }
    let e = io::Error::last_os_error();
    if e.kind() == ErrorKind::Interrupted {
        return Ok(false);
    }
    Err(RunError::Spawn(e))
}

fn set_nonblocking(fd: i32) -> io::Result<()> {
    // SAFETY: fcntl on a descriptor this process owns.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Both pipes are closed: the child has exited or is about to.
fn wait(child: &mut Child, deadline: Deadline) -> Result<ExitStatus, RunError> {
    let mut pause = Duration::from_micros(20);
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(status),
            Ok(None) if !deadline.passed() => {
                std::thread::sleep(pause.min(deadline.remaining()));
                pause = (pause * 2).min(Duration::from_millis(20));
            }
            Ok(None) => return Err(RunError::TimedOut),
            Err(e) => return Err(RunError::Spawn(e)),
        }
    }
}

fn kill(mut child: Child, error: RunError) -> RunError {
    let _ = child.kill();
    let _ = child.wait();
    error
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(10))
    }

    #[test]
    fn captures_output_and_status() {
        let out = run(
            Command::new("sh").args(["-c", "cat; echo err >&2; exit 3"]),
            Some(b"hello"),
            soon(),
        )
        .unwrap();
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr_text(), "err");
        assert_eq!(out.status.code(), Some(3));
    }

    #[test]
    fn large_input_and_output_do_not_deadlock() {
        let input = vec![b'x'; 1 << 20];
        let out = run(
            Command::new("sh").args(["-c", "cat; head -c 300000 /dev/zero >&2"]),
            Some(&input),
            soon(),
        )
        .unwrap();
        assert_eq!(out.stdout.len(), 1 << 20);
        assert_eq!(out.stderr.len(), 300_000);
    }

    #[test]
    fn a_child_that_ignores_its_input_is_fine() {
        let out = run(
            &mut Command::new("true"),
            Some(&vec![b'x'; 1 << 20]),
            soon(),
        )
        .unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn kills_at_the_deadline() {
        let started = Instant::now();
        let err = run(
            Command::new("sleep").arg("30"),
            None,
            Deadline::after(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_child_that_closes_its_pipes_but_lives_on_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = run(
            Command::new("sh").args(["-c", "exec >&- 2>&-; sleep 30"]),
            None,
            Deadline::after(Duration::from_millis(300)),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run(&mut Command::new("/nonexistent/tool"), None, soon()).unwrap_err();
        assert!(matches!(err, RunError::Spawn(_)));
    }
}
