//! Runs one `dispatch` the way the unit agent does and measures it: wall time, the exit
//! status, the process's own peak RSS and `wait4`'s `ru_maxrss`.
//!
//! Why not `wait4` alone: on Linux `wait4` reports `RUSAGE_BOTH`, the larger of the
//! process's own peak and the peak of every child it reaped (the fake hook tools and the
//! fake `snap` are 2.5 MB each, more than the Rust charm itself), and the pre-`exec` image
//! counts too (a child forked from a 10 MB parent starts at 10 MB). So the child is
//! started under `ptrace` (`PTRACE_TRACEME`, then only `PTRACE_O_TRACEEXIT` and
//! `PTRACE_O_TRACEEXEC`: no syscall tracing), and at the exit stop, with its memory still
//! mapped, its `VmHWM` (the peak RSS of the image it `exec`ed) is read from
//! `/proc/<pid>/status`. The time the bench spends handling stops is subtracted from the
//! wall time, but a few context switches per stop remain (one per `exec`, one at exit, one
//! per signal, i.e. per `SIGCHLD` from a hook tool): the bench takes its timings from
//! untraced runs and its RSS figures from traced ones (`--rss-every`).

use std::io;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// What one run of a child left behind.
#[derive(Debug, Clone)]
pub struct Launched {
    /// From just before `fork` to the reaping `wait4`, minus the time the bench spent
    /// handling ptrace stops.
    pub wall: Duration,
    /// Exit code, `None` if killed by a signal.
    pub exit: Option<i32>,
    pub signal: Option<i32>,
    /// `VmHWM` at the exit stop, KiB (`None` without ptrace).
    pub own_peak_kib: Option<u64>,
    /// `ru_maxrss` from `wait4`, KiB.
    pub ru_maxrss_kib: u64,
    /// The child ran past the deadline and was killed.
    pub timed_out: bool,
}

/// Starts `command` (stdio, env and cwd already set) in its own process group and waits
/// for it, killing the group at `timeout`.
pub fn run(command: &mut Command, timeout: Duration, trace: bool) -> io::Result<Launched> {
    if trace {
        // SAFETY: ptrace(PTRACE_TRACEME) is async-signal-safe and touches no memory of
        // this process.
        unsafe {
            command.pre_exec(|| {
                let null = std::ptr::null_mut::<libc::c_void>();
                if libc::ptrace(libc::PTRACE_TRACEME, 0, null, null) == -1 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    command.process_group(0);

    // The watchdog: kills the process group unless told the child ended first.
    let (done_tx, done_rx) = mpsc::channel::<()>();
    let (pid_tx, pid_rx) = mpsc::channel::<libc::pid_t>();
    let watchdog = thread::spawn(move || {
        let Ok(pid) = pid_rx.recv() else { return false };
        match done_rx.recv_timeout(timeout) {
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // SAFETY: plain syscall; the group leader is not reaped yet, so the id
                // cannot have been reused.
                unsafe { libc::kill(-pid, libc::SIGKILL) };
                true
            }
            _ => false,
        }
    });

    let start = Instant::now();
    let child = match command.spawn() {
        Ok(child) => child,
        Err(e) => {
            drop(pid_tx);
            let _ = watchdog.join();
            return Err(e);
        }
    };
    let pid = child.id() as libc::pid_t;
    let _ = pid_tx.send(pid);
    let mut in_stops = Duration::ZERO;
    let mut own_peak_kib = None;
    let mut options_set = false;
    let (status, usage) = loop {
        let mut status: libc::c_int = 0;
        // SAFETY: an all-zero rusage is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals.
        let r = unsafe { libc::wait4(pid, &mut status, libc::__WALL, &mut usage) };
        if r == -1 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            let _ = done_tx.send(());
            let _ = watchdog.join();
            return Err(e);
        }
        if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
            break (status, usage);
        }
        if !libc::WIFSTOPPED(status) {
            continue;
        }
        let stopped = Instant::now();
        let signal = libc::WSTOPSIG(status);
        let event = (status >> 16) & 0xff;
        let mut inject = 0;
        if signal == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXIT {
            own_peak_kib = vm_hwm_kib(pid);
        } else if signal == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXEC {
            // A later exec (the ops dispatch script `exec`s Python): nothing to do.
        } else if signal == libc::SIGTRAP && !options_set {
            // The stop after the first exec (PTRACE_TRACEME).
            let options =
                libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_TRACEEXEC | libc::PTRACE_O_EXITKILL;
            // SAFETY: plain syscall on our stopped tracee.
            unsafe {
                libc::ptrace(
                    libc::PTRACE_SETOPTIONS,
                    pid,
                    std::ptr::null_mut::<libc::c_void>(),
                    options as usize as *mut libc::c_void,
                )
            };
            options_set = true;
        } else {
            // A signal for the child (SIGCHLD from its hook tools...): deliver it.
            inject = signal;
        }
        // SAFETY: plain syscall on our stopped tracee.
        unsafe {
            libc::ptrace(
                libc::PTRACE_CONT,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                inject as usize as *mut libc::c_void,
            )
        };
        in_stops += stopped.elapsed();
    };
    let wall = start.elapsed().saturating_sub(in_stops);
    let _ = done_tx.send(());
    let timed_out = watchdog.join().unwrap_or(false);
    // Like the unit agent, let nothing the hook left running outlive it.
    // SAFETY: plain syscall; ESRCH when the group is empty.
    unsafe { libc::kill(-pid, libc::SIGKILL) };
    Ok(Launched {
        wall,
        exit: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        own_peak_kib,
        ru_maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        timed_out,
    })
}

/// `VmHWM` of a live (stopped) process, KiB.
fn vm_hwm_kib(pid: libc::pid_t) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Stdio;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("/bin/sh");
        c.args(["-c", script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    #[test]
    fn exit_codes_and_own_peak() {
        let r = run(&mut sh("exit 3"), Duration::from_secs(10), true).unwrap();
        assert_eq!(r.exit, Some(3));
        assert!(!r.timed_out);
        let own = r.own_peak_kib.expect("VmHWM read at the exit stop");
        assert!(own > 0 && own < 64 * 1024, "{own}");
    }

    #[test]
    fn own_peak_excludes_children_but_wait4_does_not() {
        // A child that touches 64 MiB: wait4's ru_maxrss sees it, the shell's VmHWM not.
        let script = "python3 -c 'b = bytearray(64 << 20)' && exit 0";
        let r = run(&mut sh(script), Duration::from_secs(30), true).unwrap();
        assert_eq!(r.exit, Some(0));
        assert!(r.ru_maxrss_kib > 60 * 1024, "{}", r.ru_maxrss_kib);
        assert!(r.own_peak_kib.unwrap() < 16 * 1024, "{:?}", r.own_peak_kib);
    }

    #[test]
    fn signals_reach_the_child_and_the_deadline_kills() {
        // The shell waits for its child: SIGCHLD must be delivered through the stops.
        let r = run(
            &mut sh("sleep 0.01; true; exit 0"),
            Duration::from_secs(10),
            true,
        )
        .unwrap();
        assert_eq!(r.exit, Some(0));
        let r = run(&mut sh("sleep 30"), Duration::from_millis(200), true).unwrap();
        assert!(r.timed_out);
        assert_eq!(r.signal, Some(libc::SIGKILL));
    }

    #[test]
    fn untraced_runs_have_no_own_peak() {
        let r = run(&mut sh("exit 0"), Duration::from_secs(10), false).unwrap();
        assert_eq!(r.exit, Some(0));
        assert_eq!(r.own_peak_kib, None);
    }
}
