//! Runs one `dispatch` the way the unit agent does and measures it: wall time, the exit
//! status, and, under `ptrace`, the process's own CPU time and peak RSS.
//!
//! Why `ptrace`: once a process is reaped its own figures are gone, and what `wait4` gives
//! is the process *plus every child it reaped* (`ru_utime`/`ru_stime` and `ru_maxrss`
//! include the hook tools and `snap`; `ru_maxrss` even the image it was forked from). So
//! the child is started under `ptrace` (`PTRACE_TRACEME`, then only `PTRACE_O_TRACEEXIT`
//! and `PTRACE_O_TRACEEXEC`: no syscall tracing) and stopped at its exit
//! (`PTRACE_EVENT_EXIT`), when its memory is still mapped and its task still exists. There
//! the bench reads, for this task alone:
//! - `/proc/<pid>/schedstat`, first field: nanoseconds this task ran on a CPU
//!   (`se.sum_exec_runtime`); children are other tasks, so they are excluded. With more
//!   than one thread, `/proc/<pid>/task/*/schedstat` are summed;
//! - `/proc/<pid>/stat` `utime` + `stime` (clock ticks): the same time, rounded down to
//!   ticks, for the whole thread group, as a cross-check;
//! - `/proc/<pid>/status` `VmHWM` (peak RSS of the image it `exec`ed) and `Threads`.
//!
//! The own CPU time reported runs from the stop that follows the first `exec` to the exit
//! stop: schedstat is read at both. Before that `exec` the task is the bench's forked copy,
//! whose setup and teardown (the bench's address space) cost what the bench weighs, not
//! what the charm does; the unit agent (Go) starts hooks with `CLONE_VFORK`, without that
//! copy. The time since `fork` is kept too. The kernel's teardown after the exit stop
//! (unmapping memory, closing files) is not counted.
//!
//! Only `exec` and exit stop the tracee: it starts with `SIGCHLD` blocked. Otherwise every
//! `SIGCHLD` (one per child it reaps) is a signal-delivery stop, which costs the tracee
//! CPU (about 20 µs each on the VM the README's figures come from). Neither charm handles
//! `SIGCHLD`; untraced, its default disposition discards it when it is sent, so blocking
//! it removes the stops and nothing else. (Rust's `Command` clears the mask of the charm's
//! children; Python's `subprocess` does not: the ops charm's hook tools inherit it, and
//! none of them waits for a child of its own.) Signal stops are still counted, in case a
//! process unblocks it. The time the bench spends handling stops is subtracted from the
//! wall time.

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
    /// Read at the exit stop (`None` without ptrace, or if the process was killed).
    pub own: Option<Own>,
    /// Signal-delivery stops (without ptrace: 0). `SIGCHLD` is blocked in the tracee, so
    /// these are signals sent to it, or a `SIGCHLD` it unblocked.
    pub signal_stops: usize,
    /// `ru_maxrss` from `wait4`, KiB.
    pub ru_maxrss_kib: u64,
    /// `ru_utime + ru_stime` from `wait4`, µs: the process and every child it reaped.
    pub ru_cpu_us: u64,
    /// The child ran past the deadline and was killed.
    pub timed_out: bool,
}

/// The process's own figures, read at its exit stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Own {
    /// On-CPU time from the stop after its first `exec` to its exit stop (`schedstat`;
    /// with several threads, those alive at the exit stop), ns.
    pub cpu_ns: u64,
    /// The same from `fork` (the bench's forked copy included), ns.
    pub since_fork_ns: u64,
    /// `utime` and `stime` of the thread group (`/proc/<pid>/stat`), clock ticks.
    pub utime_ticks: u64,
    pub stime_ticks: u64,
    /// `VmHWM`, KiB.
    pub peak_kib: u64,
    /// `Threads` at the exit stop.
    pub threads: u64,
}

/// Whether and how a child is traced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trace {
    /// As the unit agent runs it.
    No,
    /// Under ptrace, `SIGCHLD` blocked: own figures at the exit stop (see the module docs).
    Yes,
    /// Under ptrace with `SIGCHLD` left as it is: a stop per child reaped (to measure what
    /// blocking it saves).
    WithSigchldStops,
}

/// Starts `command` (stdio, env and cwd already set) in its own process group and waits
/// for it, killing the group at `timeout`.
pub fn run(command: &mut Command, timeout: Duration, trace: Trace) -> io::Result<Launched> {
    let block_sigchld = trace == Trace::Yes;
    if trace != Trace::No {
        // SAFETY: ptrace(PTRACE_TRACEME), sigemptyset, sigaddset and sigprocmask are
        // async-signal-safe and touch only the closure's locals.
        unsafe {
            command.pre_exec(move || {
                let null = std::ptr::null_mut::<libc::c_void>();
                if libc::ptrace(libc::PTRACE_TRACEME, 0, null, null) == -1 {
                    return Err(io::Error::last_os_error());
                }
                if !block_sigchld {
                    return Ok(());
                }
                // See the module docs: no signal-delivery stop per child reaped.
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGCHLD);
                if libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) == -1 {
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
    let mut own = None;
    let mut at_exec_ns = None;
    let mut signal_stops = 0;
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
            own = read_own(pid, at_exec_ns);
        } else if signal == libc::SIGTRAP && event == libc::PTRACE_EVENT_EXEC {
            // A later exec (the ops dispatch script `exec`s Python): nothing to do.
        } else if signal == libc::SIGTRAP && !options_set {
            // The stop after the first exec (PTRACE_TRACEME): the own CPU time starts here.
            at_exec_ns = std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
                .ok()
                .and_then(|s| schedstat_ns(&s));
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
            signal_stops += 1;
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
    let micros = |t: libc::timeval| {
        u64::try_from(t.tv_sec).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec).unwrap_or(0)
    };
    Ok(Launched {
        wall,
        exit: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        own,
        signal_stops,
        ru_maxrss_kib: u64::try_from(usage.ru_maxrss).unwrap_or(0),
        ru_cpu_us: micros(usage.ru_utime) + micros(usage.ru_stime),
        timed_out,
    })
}

/// The own figures of a live (stopped) process; `at_exec_ns`: its schedstat at the stop
/// after its first `exec`.
fn read_own(pid: libc::pid_t, at_exec_ns: Option<u64>) -> Option<Own> {
    let read = |p: String| std::fs::read_to_string(p).ok();
    let status = read(format!("/proc/{pid}/status"))?;
    let (utime_ticks, stime_ticks) = stat_times(&read(format!("/proc/{pid}/stat"))?)?;
    let threads = status_kib(&status, "Threads:")?;
    let since_fork_ns = if threads <= 1 {
        schedstat_ns(&read(format!("/proc/{pid}/schedstat"))?)?
    } else {
        // Every live thread's; the ones that ended earlier are only in utime/stime.
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .ok()?
            .filter_map(Result::ok)
            .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
            .filter_map(|s| schedstat_ns(&s))
            .sum()
    };
    Some(Own {
        cpu_ns: since_fork_ns.checked_sub(at_exec_ns?)?,
        since_fork_ns,
        utime_ticks,
        stime_ticks,
        peak_kib: status_kib(&status, "VmHWM:")?,
        threads,
    })
}

/// First field of `/proc/<pid>/schedstat` (`<ns on CPU> <ns waiting> <timeslices>`).
pub fn schedstat_ns(text: &str) -> Option<u64> {
    text.split_ascii_whitespace().next()?.parse().ok()
}

/// `utime` and `stime` (fields 14 and 15) of `/proc/<pid>/stat`. The command name (field
/// 2) is in parentheses and may hold spaces and parentheses: fields are counted after the
/// last `)`.
pub fn stat_times(text: &str) -> Option<(u64, u64)> {
    let rest = &text[text.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After `)`: field 3 (state) is the first; utime is field 14, the 12th.
    let utime = fields.nth(11)?.parse().ok()?;
    let stime = fields.next()?.parse().ok()?;
    Some((utime, stime))
}

/// A number from `/proc/<pid>/status` (`VmHWM:   1234 kB`, `Threads:  1`).
pub fn status_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Clock ticks per second (`USER_HZ`), for `utime` and `stime`.
pub fn ticks_per_second() -> u64 {
    // SAFETY: plain libc call.
    u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) })
        .ok()
        .filter(|t| *t > 0)
        .unwrap_or(100)
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
    fn exit_codes_and_own_figures() {
        let r = run(&mut sh("exit 3"), Duration::from_secs(10), Trace::Yes).unwrap();
        assert_eq!(r.exit, Some(3));
        assert!(!r.timed_out);
        let own = r.own.expect("read at the exit stop");
        assert!(own.peak_kib > 0 && own.peak_kib < 64 * 1024, "{own:?}");
        assert_eq!(own.threads, 1);
        // A shell that exits at once: more than nothing, far less than a second.
        assert!(own.cpu_ns > 1_000 && own.cpu_ns < 1_000_000_000, "{own:?}");
        // From the fork: the bench's forked copy before the exec too.
        assert!(own.since_fork_ns > own.cpu_ns, "{own:?}");
        assert_eq!(r.signal_stops, 0);
    }

    #[test]
    fn own_figures_exclude_children_but_wait4_does_not() {
        // A child that touches 64 MiB and burns CPU: wait4 sees both, the shell's own not.
        let script = "python3 -c 'b = bytearray(64 << 20); sum(range(3_000_000))' && exit 0";
        let r = run(&mut sh(script), Duration::from_secs(30), Trace::Yes).unwrap();
        assert_eq!(r.exit, Some(0));
        assert!(r.ru_maxrss_kib > 60 * 1024, "{}", r.ru_maxrss_kib);
        let own = r.own.unwrap();
        assert!(own.peak_kib < 16 * 1024, "{own:?}");
        assert!(r.ru_cpu_us > 20_000, "{}", r.ru_cpu_us);
        assert!(
            own.cpu_ns / 1000 < r.ru_cpu_us / 4,
            "own {own:?}, wait4 {} us",
            r.ru_cpu_us
        );
    }

    fn python(code: &str) -> Command {
        // The system's interpreter: a `python3` earlier on PATH may be a shell shim.
        let mut c = Command::new("/usr/bin/python3");
        c.args(["-c", code])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        c
    }

    // Python, not a shell, as the tracee: shells clear their signal mask (bash at start,
    // dash when it waits for a child), so a shell would see its SIGCHLD either way.
    #[test]
    fn sigchld_is_blocked_unless_asked_not_to_be() {
        // Python still waits for its children with SIGCHLD blocked; unblocked, each child
        // reaped is a signal stop.
        let code =
            "import subprocess\nfor _ in range(2): subprocess.run(['/bin/true'], check=True)";
        let r = run(&mut python(code), Duration::from_secs(30), Trace::Yes).unwrap();
        assert_eq!((r.exit, r.signal_stops), (Some(0), 0));
        let r = run(
            &mut python(code),
            Duration::from_secs(30),
            Trace::WithSigchldStops,
        )
        .unwrap();
        assert_eq!((r.exit, r.signal_stops), (Some(0), 2));
        assert!(r.own.is_some());
    }

    #[test]
    fn the_tracee_starts_with_sigchld_blocked() {
        // SigBlk is a hex mask: SIGCHLD (17) is bit 16.
        let code = "import sys\n\
                    mask = [l for l in open('/proc/self/status') if l.startswith('SigBlk:')]\n\
                    sys.exit(0 if int(mask[0].split()[1], 16) & (1 << 16) else 1)";
        let r = run(&mut python(code), Duration::from_secs(30), Trace::Yes).unwrap();
        assert_eq!(r.exit, Some(0));
        let r = run(&mut python(code), Duration::from_secs(30), Trace::No).unwrap();
        assert_eq!(r.exit, Some(1));
        let r = run(
            &mut python(code),
            Duration::from_secs(30),
            Trace::WithSigchldStops,
        )
        .unwrap();
        assert_eq!(r.exit, Some(1));
    }

    #[test]
    fn signals_reach_the_child_and_the_deadline_kills() {
        // The shell waits for its child: SIGCHLD must be delivered through the stops.
        let r = run(
            &mut sh("sleep 0.01; true; exit 0"),
            Duration::from_secs(10),
            Trace::Yes,
        )
        .unwrap();
        assert_eq!(r.exit, Some(0));
        let r = run(&mut sh("sleep 30"), Duration::from_millis(200), Trace::Yes).unwrap();
        assert!(r.timed_out);
        assert_eq!(r.signal, Some(libc::SIGKILL));
    }

    #[test]
    fn untraced_runs_have_no_own_figures() {
        let r = run(&mut sh("exit 0"), Duration::from_secs(10), Trace::No).unwrap();
        assert_eq!(r.exit, Some(0));
        assert_eq!(r.own, None);
    }

    #[test]
    fn proc_parsers() {
        assert_eq!(schedstat_ns("594437 12 3\n"), Some(594_437));
        assert_eq!(schedstat_ns(""), None);
        assert_eq!(schedstat_ns("x 1 2"), None);
        // Field 2 with spaces and a ')' inside: fields are counted from the last ')'.
        let stat = "4242 (a) b (c)) S 1 4242 4242 0 -1 4194560 107 0 0 0 17 5 0 0 20 0 1 0 \
                    123 4096 100 18446744073709551615";
        assert_eq!(stat_times(stat), Some((17, 5)));
        assert_eq!(stat_times("4242 (x) S 1 2"), None);
        assert_eq!(stat_times("no parenthesis"), None);
        let status = "Name:\tdispatch\nVmHWM:\t    2048 kB\nThreads:\t1\n";
        assert_eq!(status_kib(status, "VmHWM:"), Some(2048));
        assert_eq!(status_kib(status, "Threads:"), Some(1));
        assert_eq!(status_kib(status, "VmRSS:"), None);
        assert!(ticks_per_second() >= 100);
    }

    #[test]
    fn schedstat_of_this_process_matches_its_own_clock() {
        // A live check of the parser against the kernel's own accounting of this thread.
        let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
        let ns = schedstat_ns(&text).unwrap();
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid pointer to a local.
        unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
        let clock = ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64;
        assert!(ns <= clock && clock - ns < 50_000_000, "{ns} vs {clock}");
    }
}
