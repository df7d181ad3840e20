//! The parent's own CPU per child on this machine, by mechanism: how much a charm pays to
//! start a child, collect its output and reap it (the child's own CPU is not counted).
//!
//! `cargo run --release -p charm-bench --example spawn_floor [-- RUNS [PROGRAM ARGS...]]`
//! (build it static like `dispatch` with
//! `CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="-C target-feature=+crt-static"
//! --target x86_64-unknown-linux-gnu`). Own CPU is the first field of
//! `/proc/thread-self/schedstat` (the task's `sum_exec_runtime`, ns) before and after
//! `RUNS` children; the mechanisms are interleaved in rounds and the median round is
//! printed. See bench/README.md, "The cost of a child".

use std::ffi::CString;
use std::io::Read;
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::Duration;

fn own_ns() -> u64 {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").expect("schedstat");
    text.split_whitespace()
        .next()
        .and_then(|f| f.parse().ok())
        .expect("schedstat field")
}

fn cstrings(argv: &[String]) -> (Vec<CString>, Vec<*mut libc::c_char>) {
    let owned: Vec<CString> = argv
        .iter()
        .map(|a| CString::new(a.as_str()).expect("no NUL"))
        .collect();
    let mut ptrs: Vec<*mut libc::c_char> = owned.iter().map(|c| c.as_ptr() as *mut _).collect();
    ptrs.push(std::ptr::null_mut());
    (owned, ptrs)
}

extern "C" {
    static environ: *const *mut libc::c_char;
}

/// std's `Command::output()` (stdin null, two pipes, std's own poll loop).
fn std_output(argv: &[String]) {
    let out = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::null())
        .output()
        .expect("spawn");
    assert!(out.status.success());
}

/// The charm's runner before this change: three pipes (stdin piped), non-blocking reads
/// under poll, then `try_wait` with a sleeping back-off.
fn std_three_pipes_try_wait(argv: &[String]) {
    let mut child = Command::new(&argv[0])
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    drop(child.stdin.take());
    let (mut out, mut err) = (Vec::new(), Vec::new());
    child.stdout.take().unwrap().read_to_end(&mut out).unwrap();
    child.stderr.take().unwrap().read_to_end(&mut err).unwrap();
    let mut pause = Duration::from_micros(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success());
            return;
        }
        std::thread::sleep(pause);
        pause *= 2;
    }
}

fn memfd() -> i32 {
    // SAFETY: a plain syscall with a static name.
    let fd = unsafe { libc::memfd_create(c"out".as_ptr(), libc::MFD_CLOEXEC) };
    assert!(fd >= 0);
    fd
}

struct Actions(libc::posix_spawn_file_actions_t);

impl Actions {
    fn new() -> Actions {
        // SAFETY: initialised before use, destroyed in drop.
        unsafe {
            let mut a = std::mem::zeroed();
            libc::posix_spawn_file_actions_init(&mut a);
            Actions(a)
        }
    }
    fn dup2(&mut self, from: i32, to: i32) {
        // SAFETY: valid actions object.
        unsafe { libc::posix_spawn_file_actions_adddup2(&mut self.0, from, to) };
    }
}

impl Drop for Actions {
    fn drop(&mut self) {
        // SAFETY: initialised in new.
        unsafe { libc::posix_spawn_file_actions_destroy(&mut self.0) };
    }
}

fn spawn(argv: &[String], actions: &Actions) -> libc::pid_t {
    let (_owned, ptrs) = cstrings(argv);
    let mut pid = 0;
    // SAFETY: argv and environ are NUL-terminated arrays of C strings.
    let rc = unsafe {
        libc::posix_spawn(
            &mut pid,
            ptrs[0],
            &actions.0,
            std::ptr::null(),
            ptrs.as_ptr(),
            environ,
        )
    };
    assert_eq!(rc, 0, "posix_spawn");
    pid
}

fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: our child.
    let rc = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(rc, pid);
    assert!(std::process::ExitStatus::from_raw(status).success());
}

fn dev_null() -> i32 {
    // SAFETY: plain open.
    unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) }
}

/// `posix_spawn` with no pipe at all (output to /dev/null), blocking `waitpid`: the floor of
/// starting and reaping.
fn spawn_no_pipes(argv: &[String]) {
    let null = dev_null();
    let mut a = Actions::new();
    for fd in 0..3 {
        a.dup2(null, fd);
    }
    let pid = spawn(argv, &a);
    // SAFETY: ours.
    unsafe { libc::close(null) };
    reap(pid);
}

/// `posix_spawn`, stdout and stderr on pipes read under `poll` until EOF, blocking
/// `waitpid`.
fn spawn_two_pipes(argv: &[String]) {
    let null = dev_null();
    let mut out = [0; 2];
    let mut err = [0; 2];
    // SAFETY: plain syscalls.
    unsafe {
        libc::pipe2(out.as_mut_ptr(), libc::O_CLOEXEC);
        libc::pipe2(err.as_mut_ptr(), libc::O_CLOEXEC);
    }
    let mut a = Actions::new();
    a.dup2(null, 0);
    a.dup2(out[1], 1);
    a.dup2(err[1], 2);
    let pid = spawn(argv, &a);
    // SAFETY: ours.
    unsafe {
        libc::close(null);
        libc::close(out[1]);
        libc::close(err[1]);
    }
    let mut open = [out[0], err[0]];
    let mut buf = [0u8; 4096];
    while open.iter().any(|&fd| fd >= 0) {
        let mut fds: Vec<libc::pollfd> = open
            .iter()
            .filter(|&&fd| fd >= 0)
            .map(|&fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        // SAFETY: valid array.
        unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as _, 10_000) };
        for p in fds.iter().filter(|p| p.revents != 0) {
            // SAFETY: valid buffer.
            let n = unsafe { libc::read(p.fd, buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                // SAFETY: ours.
                unsafe { libc::close(p.fd) };
                for slot in &mut open {
                    if *slot == p.fd {
                        *slot = -1;
                    }
                }
            }
        }
    }
    reap(pid);
}

/// `posix_spawn`, stdout and stderr into two memfds, one `poll` on a pidfd (the deadline)
/// until the child exits, `waitpid`, then read the files.
fn spawn_memfd_pidfd(argv: &[String]) {
    let null = dev_null();
    let (out, err) = (memfd(), memfd());
    let mut a = Actions::new();
    a.dup2(null, 0);
    a.dup2(out, 1);
    a.dup2(err, 2);
    let pid = spawn(argv, &a);
    // SAFETY: plain syscalls on our own descriptors and child.
    unsafe {
        libc::close(null);
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        assert!(pidfd >= 0);
        let mut p = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut p, 1, 10_000);
        libc::close(pidfd);
    }
    reap(pid);
    let mut buf = [0u8; 4096];
    for fd in [out, err] {
        // SAFETY: valid buffer, our descriptors.
        unsafe {
            libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            libc::close(fd);
        }
    }
}

/// Same, with stdout and stderr into one pair of memfds made once and emptied for each
/// child (`ftruncate`), instead of two new ones per child.
fn spawn_reused_memfd_pidfd(argv: &[String], files: &mut Option<(i32, i32)>) {
    let (out, err) = *files.get_or_insert_with(|| (memfd(), memfd()));
    let null = dev_null();
    let mut a = Actions::new();
    a.dup2(null, 0);
    a.dup2(out, 1);
    a.dup2(err, 2);
    let pid = spawn(argv, &a);
    // SAFETY: plain syscalls on our own descriptors and child.
    unsafe {
        libc::close(null);
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
        let mut p = libc::pollfd {
            fd: pidfd,
            events: libc::POLLIN,
            revents: 0,
        };
        libc::poll(&mut p, 1, 10_000);
        libc::close(pidfd);
    }
    reap(pid);
    let mut buf = [0u8; 4096];
    for fd in [out, err] {
        // SAFETY: valid buffer, our descriptors.
        unsafe {
            libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            libc::ftruncate(fd, 0);
            libc::lseek(fd, 0, libc::SEEK_SET);
        }
    }
}

/// A raw system call, for the child of [`clone_vm_exec`]: it shares the parent's memory, so
/// it must not touch the parent's `errno` (glibc's `syscall()` would).
#[cfg(target_arch = "x86_64")]
unsafe fn raw6(n: i64, a: [usize; 4]) -> isize {
    let ret: isize;
    std::arch::asm!("syscall", inlateout("rax") n as isize => ret, in("rdi") a[0], in("rsi") a[1],
        in("rdx") a[2], in("r10") a[3], lateout("rcx") _, lateout("r11") _, options(nostack));
    ret
}

struct CloneArgs {
    path: *const libc::c_char,
    argv: *const *mut libc::c_char,
    envp: *const *mut libc::c_char,
    fds: [i32; 3],
}

extern "C" fn clone_child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg points at the parent's CloneArgs, alive until the parent reaps this child.
    unsafe {
        let a = &*(arg as *const CloneArgs);
        for (to, from) in a.fds.iter().enumerate() {
            raw6(libc::SYS_dup2, [*from as usize, to, 0, 0]);
        }
        let empty: u64 = 0;
        raw6(
            libc::SYS_rt_sigprocmask,
            [
                libc::SIG_SETMASK as usize,
                &empty as *const u64 as usize,
                0,
                8,
            ],
        );
        raw6(
            libc::SYS_execve,
            [a.path as usize, a.argv as usize, a.envp as usize, 0],
        );
        raw6(libc::SYS_exit, [127, 0, 0, 0]);
        127
    }
}

/// Starts [`clone_child`] with `args` on `stack` (`clone(CLONE_VM)`, all signals blocked
/// around it); the caller keeps both until it has reaped the child.
fn clone_vm(args: &CloneArgs, stack: &mut [u8]) -> libc::pid_t {
    // SAFETY: the child runs clone_child on its own stack and only makes raw system calls.
    unsafe {
        let top = stack.as_mut_ptr().add(stack.len()) as *mut libc::c_void;
        let mut all: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
        let pid = libc::clone(
            clone_child,
            top,
            libc::CLONE_VM | libc::SIGCHLD,
            args as *const CloneArgs as *mut _,
        );
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
        pid
    }
}

/// `clone(CLONE_VM)` without `CLONE_VFORK`: the parent does not sleep until the child's
/// `exec`; it keeps the child's stack and arguments until it has reaped it.
fn clone_vm_exec(argv: &[String]) {
    let null = dev_null();
    clone_vm_exec_fds(argv, [null, null, null], false);
    // SAFETY: ours.
    unsafe { libc::close(null) };
}

fn clone_vm_exec_fds(argv: &[String], fds: [i32; 3], pidfd: bool) {
    let (_owned, ptrs) = cstrings(argv);
    let args = CloneArgs {
        path: ptrs[0],
        argv: ptrs.as_ptr(),
        envp: unsafe { environ },
        fds,
    };
    let mut stack = vec![0u8; 16 * 1024];
    let pid = clone_vm(&args, &mut stack);
    assert!(pid > 0);
    if pidfd {
        // SAFETY: plain syscalls on our own child.
        unsafe {
            let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as i32;
            let mut p = libc::pollfd {
                fd: pidfd,
                events: libc::POLLIN,
                revents: 0,
            };
            libc::poll(&mut p, 1, 10_000);
            libc::close(pidfd);
        }
    }
    reap(pid);
    drop(stack);
}

/// [`clone_vm_exec`] with the reused memfds and a pidfd (or a blocking `waitpid` alone).
fn clone_vm_memfd_pidfd(argv: &[String], files: &mut Option<(i32, i32)>, pidfd: bool) {
    let (out, err) = *files.get_or_insert_with(|| (memfd(), memfd()));
    let null = dev_null();
    clone_vm_exec_fds(argv, [null, out, err], pidfd);
    let mut buf = [0u8; 4096];
    // SAFETY: valid buffer, our descriptors.
    unsafe {
        libc::close(null);
        for fd in [out, err] {
            libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
            libc::ftruncate(fd, 0);
            libc::lseek(fd, 0, libc::SEEK_SET);
        }
    }
}

extern "C" fn no_op(_: libc::c_int) {}

/// A per-thread timer that sends `SIGRTMIN+4` to this thread (no `SA_RESTART`), so a blocking
/// `waitpid` returns `EINTR` at the deadline.
fn deadline_timer() -> libc::timer_t {
    // SAFETY: plain system calls with valid, zero-initialised structures.
    unsafe {
        let signal = libc::SIGRTMIN() + 4;
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = no_op as extern "C" fn(libc::c_int) as usize;
        libc::sigaction(signal, &action, std::ptr::null_mut());
        let mut event: libc::sigevent = std::mem::zeroed();
        event.sigev_notify = libc::SIGEV_THREAD_ID;
        event.sigev_signo = signal;
        event.sigev_notify_thread_id = libc::gettid();
        let mut timer: libc::timer_t = std::mem::zeroed();
        assert_eq!(
            libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer),
            0
        );
        timer
    }
}

/// [`clone_vm_exec`] with the reused memfds, a blocking `waitpid` and the deadline as a
/// per-thread timer armed and disarmed around it.
fn clone_vm_memfd_timer(
    argv: &[String],
    files: &mut Option<(i32, i32)>,
    timer: &mut Option<libc::timer_t>,
) {
    let timer = *timer.get_or_insert_with(deadline_timer);
    let arm = |secs| {
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: if secs > 0 { 10_000_000 } else { 0 },
            },
            it_value: libc::timespec {
                tv_sec: secs,
                tv_nsec: 0,
            },
        };
        // SAFETY: our timer, a valid spec.
        unsafe { libc::timer_settime(timer, 0, &spec, std::ptr::null_mut()) };
    };
    arm(10);
    clone_vm_memfd_pidfd(argv, files, false);
    arm(0);
}

/// Four children started at once (each its own stack and memfds), then all four reaped:
/// the parent sleeps while any is still running, not once per child.
fn clone_vm_batch4(argv: &[String], files: &mut Vec<(i32, i32)>) {
    while files.len() < 4 {
        files.push((memfd(), memfd()));
    }
    let (_owned, ptrs) = cstrings(argv);
    let null = dev_null();
    let mut stacks = Vec::new();
    let mut args = Vec::new();
    for f in files.iter() {
        args.push(CloneArgs {
            path: ptrs[0],
            argv: ptrs.as_ptr(),
            envp: unsafe { environ },
            fds: [null, f.0, f.1],
        });
    }
    let mut pids = Vec::new();
    for a in &args {
        let mut stack = vec![0u8; 16 * 1024];
        let pid = clone_vm(a, &mut stack);
        assert!(pid > 0);
        pids.push(pid);
        stacks.push(stack);
    }
    for pid in pids {
        reap(pid);
    }
    let mut buf = [0u8; 4096];
    unsafe {
        libc::close(null);
        for (out, err) in files.iter() {
            for fd in [*out, *err] {
                libc::pread(fd, buf.as_mut_ptr().cast(), buf.len(), 0);
                libc::ftruncate(fd, 0);
            }
        }
    }
}

/// `fork` + `execve` (no vfork): the page tables are copied.
fn fork_exec(argv: &[String]) {
    let (_owned, ptrs) = cstrings(argv);
    let null = dev_null();
    // SAFETY: the child only calls async-signal-safe functions before execve or _exit.
    let pid = unsafe { libc::fork() };
    if pid == 0 {
        unsafe {
            libc::dup2(null, 0);
            libc::dup2(null, 1);
            libc::dup2(null, 2);
            libc::execve(ptrs[0], ptrs.as_ptr() as _, environ as _);
            libc::_exit(127);
        }
    }
    // SAFETY: ours.
    unsafe { libc::close(null) };
    reap(pid);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let runs: usize = args.first().and_then(|a| a.parse().ok()).unwrap_or(200);
    let mut argv: Vec<String> = args.iter().skip(1).cloned().collect();
    if argv.is_empty() {
        argv = vec!["/bin/true".to_string()];
    }
    let mut reused = None;
    let mut reused2 = None;
    type Mechanism<'a> = (&'a str, Box<dyn FnMut(&[String]) + 'a>);
    let mut mechanisms: Vec<Mechanism> = vec![
        ("nothing (loop overhead)", Box::new(|_: &[String]| {})),
        ("std Command::output (2 pipes)", Box::new(std_output)),
        (
            "std spawn, 3 pipes, try_wait+sleep (old runner)",
            Box::new(std_three_pipes_try_wait),
        ),
        ("fork+execve, no pipes, waitpid", Box::new(fork_exec)),
        ("posix_spawn, no pipes, waitpid", Box::new(spawn_no_pipes)),
        (
            "clone(CLONE_VM) no vfork, no pipes, waitpid",
            Box::new(clone_vm_exec),
        ),
        (
            "posix_spawn, 2 pipes + poll, waitpid",
            Box::new(spawn_two_pipes),
        ),
        (
            "posix_spawn, 2 new memfds, poll(pidfd), waitpid",
            Box::new(spawn_memfd_pidfd),
        ),
        (
            "posix_spawn, 2 reused memfds, poll(pidfd), waitpid",
            Box::new(move |a: &[String]| spawn_reused_memfd_pidfd(a, &mut reused)),
        ),
    ];
    mechanisms.push((
        "clone(CLONE_VM) no vfork, 2 reused memfds, poll(pidfd), waitpid",
        Box::new(move |a: &[String]| clone_vm_memfd_pidfd(a, &mut reused2, true)),
    ));
    let mut reused3 = None;
    mechanisms.push((
        "clone(CLONE_VM) no vfork, 2 reused memfds, waitpid (no deadline)",
        Box::new(move |a: &[String]| clone_vm_memfd_pidfd(a, &mut reused3, false)),
    ));
    let (mut reused4, mut timer) = (None, None);
    mechanisms.push((
        "clone(CLONE_VM) no vfork, 2 reused memfds, waitpid under a per-thread timer",
        Box::new(move |a: &[String]| clone_vm_memfd_timer(a, &mut reused4, &mut timer)),
    ));
    let mut batch = Vec::new();
    mechanisms.push((
        "clone(CLONE_VM) batch of 4 (figure is per 4 children), reused memfds, waitpid",
        Box::new(move |a: &[String]| clone_vm_batch4(a, &mut batch)),
    ));
    mechanisms.push((
        "reference: nanosleep(50 µs), no child",
        Box::new(|_: &[String]| std::thread::sleep(Duration::from_micros(50))),
    ));
    // SPAWN_FLOOR_ONLY=<name prefix>: run that mechanism alone (for perf record).
    if let Ok(only) = std::env::var("SPAWN_FLOOR_ONLY") {
        mechanisms.retain(|(name, _)| name.starts_with(&only));
    }
    let rounds = 9;
    let mut per_child: Vec<Vec<f64>> = vec![Vec::new(); mechanisms.len()];
    for round in 0..rounds {
        for k in 0..mechanisms.len() {
            let i = (k + round) % mechanisms.len();
            let (_, run) = &mut mechanisms[i];
            let before = own_ns();
            for _ in 0..runs {
                run(&argv);
            }
            let after = own_ns();
            per_child[i].push((after - before) as f64 / runs as f64 / 1000.0);
        }
    }
    println!(
        "parent's own CPU per child, µs (median of {rounds} rounds of {runs} children of {:?}; min–max)",
        argv
    );
    for (i, (name, _)) in mechanisms.iter().enumerate() {
        let v = &mut per_child[i];
        v.sort_by(|a, b| a.total_cmp(b));
        println!(
            "| {name} | {:.1} | {:.1}–{:.1} |",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    }
}
