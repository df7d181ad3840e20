//! Running a child process with an argument vector, a deadline and captured output.
//!
//! Every external command the charm runs (hook tools, the `snap` CLI) goes through
//! [`run`], so none of them can hang a hook: at the deadline the child is killed. Each child
//! costs the hook CPU of its own (bench/README.md, "The cost of a child"), so the runner
//! does as little as it can per child, all from this one thread:
//!
//! - the child is started with `clone(CLONE_VM)` without `CLONE_VFORK`: until its `exec`
//!   it shares this process's memory and runs only raw system calls on a stack of its own,
//!   and the parent does not sleep until that `exec` (each sleep and wake-up costs a
//!   process about 20 µs of CPU on a VM). The parent keeps the child's stack and arguments
//!   until it has reaped it, and reaps it on every path;
//! - its stdin, stdout and stderr are memory files (`memfd_create`), kept in a pool per
//!   thread with a stack and emptied after each child, not pipes: the parent is not woken
//!   by each write, and no input or output is too large (nothing can fill up and deadlock).
//!   A child without input reads the thread's one `/dev/null`. The stacks lie outside the
//!   heap ([`Stack`]): the parent never touches them (a child faults in the one page it
//!   uses), and they do not push the parent's own data onto pages it must fault in;
//! - the parent sleeps once, in a blocking `waitpid`, until the child exits or the thread's
//!   deadline timer interrupts it ([`DeadlineTimer`]); at the deadline the child is killed
//!   (`SIGKILL`) and reaped. (Without a timer it checks with `waitpid(WNOHANG)` and growing
//!   pauses.) A pidfd per child would cost the parent more (a file to make and free).
//!
//! [`run_all`] starts several children before it reaps the first, each with files of its
//! own: the parent then sleeps only while the child it reaps next is still running. They
//! share one deadline, so the timer is armed once for the batch ([`BatchTimer`]).
//!
//! The files are given up after a child that was killed (something it started might still
//! hold them). The hook tools and `snap` start nothing that outlives them.

use std::cell::{Cell, RefCell, UnsafeCell};
use std::ffi::{CString, OsStr};
use std::io::{self, ErrorKind};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};
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

/// Runs `program` (looked up on `PATH` unless it holds a `/`) with `args`, this process's
/// environment and `stdin` fed to it (or /dev/null), until `deadline`.
pub(crate) fn run<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    stdin: Option<&[u8]>,
    deadline: Deadline,
) -> Result<Finished, RunError> {
    start(program, args, stdin)?.finish(deadline)
}

/// A child to run: program, arguments and what to feed its stdin (`None`: /dev/null).
pub(crate) type Command<'a, S> = (&'a str, &'a [S], Option<&'a [u8]>);

/// Runs every `(program, args, stdin)` at once, each as [`run`] does, until `deadline`,
/// and returns their results in the same order. The parent starts them all, then reaps
/// them in turn: it sleeps only while the one it reaps next still runs, not once per child
/// (bench/README.md, "The cost of a child"). They share one deadline, so the thread's
/// timer is armed once for all of them.
pub(crate) fn run_all<S: AsRef<OsStr>>(
    commands: &[Command<'_, S>],
    deadline: Deadline,
) -> Vec<Result<Finished, RunError>> {
    let started: Vec<_> = commands
        .iter()
        .map(|(program, args, stdin)| start(program, args, *stdin))
        .collect();
    let _armed = (started.len() > 1).then(|| BatchTimer::arm(deadline));
    started
        .into_iter()
        .map(|child| child.and_then(|child| child.finish(deadline)))
        .collect()
}

/// A child started with files of its own.
struct Started {
    running: Running,
    files: Files,
}

fn start<S: AsRef<OsStr>>(
    program: &str,
    args: &[S],
    stdin: Option<&[u8]>,
) -> Result<Started, RunError> {
    let exec = Exec::new(program, args).map_err(RunError::Spawn)?;
    // The files are taken out of the thread's pool for the run and put back only when
    // nothing but this process can hold them any more.
    let (files, null) = FILES
        .with(|pool| {
            let mut pool = pool.borrow_mut();
            let null = match &pool.null {
                Some(null) => null.as_raw_fd(),
                None => pool.null.insert(dev_null()?).as_raw_fd(),
            };
            Ok((pool.free.pop(), null))
        })
        .map_err(RunError::Spawn)?;
    let mut files = match files {
        Some(files) => files,
        None => Files::new().map_err(RunError::Spawn)?,
    };
    let input = match stdin {
        Some(data) => {
            let fd = files.input().map_err(RunError::Spawn)?;
            write_all_at(fd, data).map_err(RunError::Spawn)?;
            fd
        }
        None => null,
    };
    let fds = [input, files.out.as_raw_fd(), files.err.as_raw_fd()];
    let running = Running::start(exec, fds, files.stack.top()).map_err(RunError::Spawn)?;
    // Dropped in this order: the child is reaped before its stack can go.
    Ok(Started { running, files })
}

impl Started {
    fn finish(self, deadline: Deadline) -> Result<Finished, RunError> {
        let Started { running, files } = self;
        let status = running.wait(deadline)?;
        let output = (|| {
            if let Some(input) = &files.input {
                empty(input.as_raw_fd())?;
            }
            Ok((take(files.out.as_raw_fd())?, take(files.err.as_raw_fd())?))
        })();
        let (stdout, stderr) = output.map_err(RunError::Spawn)?;
        FILES.with(|pool| pool.borrow_mut().free.push(files));
        Ok(Finished {
            status: status.map_err(RunError::Spawn)?,
            stdout,
            stderr,
        })
    }
}

/// The child's stdin, stdout and stderr, and the stack it runs on until its `exec`, kept
/// for the next child.
struct Files {
    input: Option<OwnedFd>,
    out: OwnedFd,
    err: OwnedFd,
    stack: Stack,
}

/// Stacks for children, in this process's zero-initialised data rather than its heap.
/// Slots are shared by every thread, each held by one [`Stack`] at a time.
struct ChildStacks {
    slots: [UnsafeCell<AlignedStack>; STATIC_STACKS],
    /// Bit `i` set: slot `i` is held.
    held: AtomicU32,
}

const STATIC_STACKS: usize = 8;

#[repr(C, align(16))]
struct AlignedStack([u8; CHILD_STACK]);

// SAFETY: a slot is only used through the one Stack that holds its bit in `held`.
unsafe impl Sync for ChildStacks {}

static CHILD_STACKS: ChildStacks = ChildStacks {
    slots: [const { UnsafeCell::new(AlignedStack([0; CHILD_STACK])) }; STATIC_STACKS],
    held: AtomicU32::new(0),
};

/// A child's stack: a free slot of [`CHILD_STACKS`], else (more children at once than
/// slots) memory of the heap.
enum Stack {
    Static(usize),
    Heap(Vec<u8>),
}

impl Stack {
    fn new() -> Stack {
        let mut held = CHILD_STACKS.held.load(Ordering::Relaxed);
        loop {
            let free = (!held).trailing_zeros() as usize;
            if free >= STATIC_STACKS {
                // Not zeroed (only the child writes it): the memory, not its content.
                return Stack::Heap(Vec::with_capacity(CHILD_STACK));
            }
            match CHILD_STACKS.held.compare_exchange_weak(
                held,
                held | (1 << free),
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Stack::Static(free),
                Err(now) => held = now,
            }
        }
    }

    /// The top of the stack (it grows down), aligned to 16 bytes as the ABI wants.
    fn top(&mut self) -> *mut libc::c_void {
        let base = match self {
            Stack::Static(slot) => CHILD_STACKS.slots[*slot].get().cast::<u8>(),
            Stack::Heap(memory) => memory.as_mut_ptr(),
        };
        // SAFETY: one past the end of the CHILD_STACK bytes of this stack's memory.
        let top = unsafe { base.add(CHILD_STACK) };
        (top as usize & !15) as *mut libc::c_void
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if let Stack::Static(slot) = self {
            CHILD_STACKS
                .held
                .fetch_and(!(1 << *slot), Ordering::Release);
        }
    }
}

/// The thread's files: `/dev/null`, opened once, and the [`Files`] of no running child.
#[derive(Default)]
struct Pool {
    null: Option<OwnedFd>,
    free: Vec<Files>,
}

thread_local! {
    static FILES: RefCell<Pool> = RefCell::new(Pool::default());
}

fn dev_null() -> io::Result<OwnedFd> {
    // SAFETY: open(2) of a constant path; the descriptor is owned from here on.
    above_stdio(unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) })
}

impl Files {
    fn new() -> io::Result<Files> {
        Ok(Files {
            input: None,
            out: memfd()?,
            err: memfd()?,
            stack: Stack::new(),
        })
    }

    fn input(&mut self) -> io::Result<i32> {
        if self.input.is_none() {
            self.input = Some(memfd()?);
        }
        Ok(self.input.as_ref().map_or(-1, AsRawFd::as_raw_fd))
    }
}

fn memfd() -> io::Result<OwnedFd> {
    // SAFETY: memfd_create(2) with a constant name; the descriptor is owned from here on.
    above_stdio(unsafe { libc::memfd_create(c"child-stdio".as_ptr(), libc::MFD_CLOEXEC) })
}

/// Owns `fd`, moved to 3 or above if it is 0, 1 or 2 (possible when this process was
/// started with one of them closed), so that making it the child's stdin, stdout or stderr
/// never overwrites another of them.
fn above_stdio(fd: i32) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened by this process and is owned by nothing else.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    if fd > 2 {
        return Ok(owned);
    }
    // SAFETY: fcntl(2) on a descriptor this process owns.
    let moved = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    above_stdio(moved)
}

fn check(rc: libc::c_long) -> io::Result<libc::c_long> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn rewind(fd: i32) -> io::Result<()> {
    // SAFETY: lseek(2) on a descriptor this process owns.
    check(unsafe { libc::lseek(fd, 0, libc::SEEK_SET) as _ }).map(drop)
}

/// Writes `data` at the start of the (empty) file `fd` and rewinds it.
fn write_all_at(fd: i32, data: &[u8]) -> io::Result<()> {
    let mut done = 0;
    while done < data.len() {
        let rest = &data[done..];
        // SAFETY: rest is a valid buffer for the call's duration.
        match check(unsafe {
            libc::pwrite(fd, rest.as_ptr().cast(), rest.len(), done as libc::off_t) as _
        }) {
            Ok(n) => done += n as usize,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    rewind(fd)
}

/// Empties the file `fd` and rewinds it (its offset is shared with the child's copy).
fn empty(fd: i32) -> io::Result<()> {
    // SAFETY: ftruncate(2) on a descriptor this process owns.
    check(unsafe { libc::ftruncate(fd, 0) as _ })?;
    rewind(fd)
}

/// What the child wrote into the file `fd`: the bytes before the file offset, which the
/// child's descriptor shares (the file is rewound before each child). Nothing is truncated
/// (a truncation costs more than the read, and frees pages the next child writes again):
/// bytes past the offset, left by an earlier child that wrote more, are never read, and
/// the next child overwrites them. Rewinds the file.
fn take(fd: i32) -> io::Result<Vec<u8>> {
    // SAFETY: lseek(2) on a descriptor this process owns.
    let end = check(unsafe { libc::lseek(fd, 0, libc::SEEK_CUR) as _ })?;
    let mut data = vec![0u8; usize::try_from(end).unwrap_or(0)];
    let mut done = 0;
    while done < data.len() {
        let rest = &mut data[done..];
        // SAFETY: rest is a valid, writable buffer for the call's duration.
        match check(unsafe {
            libc::pread(
                fd,
                rest.as_mut_ptr().cast(),
                rest.len(),
                done as libc::off_t,
            ) as _
        }) {
            Ok(0) => break,
            Ok(n) => done += n as usize,
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    data.truncate(done);
    if end != 0 {
        rewind(fd)?;
    }
    Ok(data)
}

/// What the child needs until its `exec`, in memory it shares with the parent: the paths
/// to try (the `PATH` lookup is done here, not in the child), `argv`, `envp`, its stdin,
/// stdout and stderr, and where it leaves the `errno` of a failed `exec`.
struct Exec {
    _strings: Vec<CString>,
    paths: Vec<*const libc::c_char>,
    argv: Vec<*const libc::c_char>,
    envp: *const *const libc::c_char,
    fds: [i32; 3],
    errno: AtomicI32,
}

extern "C" {
    static environ: *const *const libc::c_char;
}

/// Where glibc's `execvp` looks when `PATH` is not set.
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

impl Exec {
    fn new<S: AsRef<OsStr>>(program: &str, args: &[S]) -> io::Result<Box<Exec>> {
        let c = |bytes: &[u8]| {
            CString::new(bytes).map_err(|_| io::Error::new(ErrorKind::InvalidInput, "NUL byte"))
        };
        let mut strings = Vec::with_capacity(args.len() + 4);
        let mut paths = Vec::new();
        if program.contains('/') {
            strings.push(c(program.as_bytes())?);
            paths.push(0);
        } else {
            let path = std::env::var_os("PATH");
            let path = path.as_ref().map_or(DEFAULT_PATH, |p| p.as_bytes());
            for dir in path.split(|b| *b == b':') {
                let dir = if dir.is_empty() { b".".as_slice() } else { dir };
                let mut full = Vec::with_capacity(dir.len() + 1 + program.len());
                full.extend_from_slice(dir);
                full.push(b'/');
                full.extend_from_slice(program.as_bytes());
                paths.push(strings.len());
                strings.push(c(&full)?);
            }
        }
        let first_arg = strings.len();
        strings.push(c(program.as_bytes())?);
        for arg in args {
            strings.push(c(arg.as_ref().as_bytes())?);
        }
        let mut exec = Box::new(Exec {
            paths: Vec::with_capacity(paths.len() + 1),
            argv: Vec::with_capacity(strings.len() - first_arg + 1),
            // SAFETY: environ is this process's environment, which nothing changes while
            // the charm runs children (it never sets variables).
            envp: unsafe { environ },
            fds: [-1; 3],
            errno: AtomicI32::new(0),
            _strings: Vec::new(),
        });
        // The CStrings' bytes are on the heap: moving the Vec keeps the pointers valid.
        exec.paths
            .extend(paths.iter().map(|&i| strings[i].as_ptr()));
        exec.paths.push(std::ptr::null());
        exec.argv
            .extend(strings[first_arg..].iter().map(|s| s.as_ptr()));
        exec.argv.push(std::ptr::null());
        exec._strings = strings;
        Ok(exec)
    }
}

/// The child's stack (only a few raw system calls run on it).
const CHILD_STACK: usize = 16 * 1024;

/// A started child; reaped at the latest when dropped (killed first if still running), so
/// its arguments, dropped after, outlive its use of them; so does its stack, which its
/// owner drops after this.
struct Running {
    pid: libc::pid_t,
    reaped: bool,
    exec: Box<Exec>,
}

impl Running {
    /// Starts the child on the stack whose top is `top`, which only the child uses and
    /// which its owner keeps until this Running is dropped.
    fn start(mut exec: Box<Exec>, fds: [i32; 3], top: *mut libc::c_void) -> io::Result<Running> {
        exec.fds = fds;
        let arg = std::ptr::from_ref::<Exec>(&exec).cast_mut().cast();
        // SAFETY: all signals are blocked around clone(2) so the child starts with none
        // delivered (it sets its own mask before exec); the child runs `child` on its own
        // stack with `exec`, which this process keeps alive and unchanged until the child
        // is reaped (Running's drop).
        let pid = unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            let pid = libc::clone(child, top, libc::CLONE_VM | libc::SIGCHLD, arg);
            let error = io::Error::last_os_error();
            libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
            if pid < 0 {
                return Err(error);
            }
            pid
        };
        Ok(Running {
            pid,
            reaped: false,
            exec,
        })
    }

    /// Waits for the exit until `deadline`, then kills. The outer error is the run's; the
    /// inner one, a failed `exec`, leaves the files reusable.
    fn wait(mut self, deadline: Deadline) -> Result<io::Result<ExitStatus>, RunError> {
        let status = self.wait_exit(deadline)?;
        Ok(match self.exec.errno.load(Ordering::Relaxed) {
            0 => Ok(status),
            errno => Err(io::Error::from_raw_os_error(errno)),
        })
    }

    /// A blocking `waitpid`, interrupted at the deadline by the thread's timer (armed
    /// here, unless a [`BatchTimer`] holds it armed for this deadline).
    fn wait_exit(&mut self, deadline: Deadline) -> Result<ExitStatus, RunError> {
        if ARMED_FOR.get() == Some(deadline) {
            return self.wait_blocking(deadline);
        }
        let Some(timer) = thread_timer() else {
            return self.wait_polling(deadline);
        };
        if !timer.arm(deadline.remaining()) {
            return self.wait_polling(deadline);
        }
        let result = self.wait_blocking(deadline);
        timer.disarm();
        result
    }

    /// `waitpid` until the child exits or, once `deadline` has passed, the timer's signal
    /// interrupts it.
    fn wait_blocking(&mut self, deadline: Deadline) -> Result<ExitStatus, RunError> {
        loop {
            let mut status = 0;
            // SAFETY: waitpid(2) of this process's own child into a valid int.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, 0) };
            if rc == self.pid {
                self.reaped = true;
                return Ok(ExitStatus::from_raw(status));
            }
            let e = io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(RunError::Spawn(e));
            }
            if deadline.passed() {
                return Err(RunError::TimedOut); // killed and reaped by drop
            }
        }
    }

    /// Without a timer: `waitpid(WNOHANG)` and growing pauses until the deadline.
    fn wait_polling(&mut self, deadline: Deadline) -> Result<ExitStatus, RunError> {
        let mut pause = Duration::from_micros(50);
        loop {
            if let Some(status) = self.reap(libc::WNOHANG)? {
                return Ok(status);
            }
            if deadline.passed() {
                return Err(RunError::TimedOut);
            }
            std::thread::sleep(pause.min(deadline.remaining()));
            pause = (pause * 2).min(Duration::from_millis(20));
        }
    }

    /// `waitpid` with `flags`; `None` when `WNOHANG` finds it still running.
    fn reap(&mut self, flags: i32) -> Result<Option<ExitStatus>, RunError> {
        let mut status = 0;
        loop {
            // SAFETY: waitpid(2) of this process's own child into a valid int.
            let rc = unsafe { libc::waitpid(self.pid, &mut status, flags) };
            if rc == self.pid {
                self.reaped = true;
                return Ok(Some(ExitStatus::from_raw(status)));
            }
            if rc == 0 {
                return Ok(None);
            }
            let e = io::Error::last_os_error();
            if e.kind() != ErrorKind::Interrupted {
                return Err(RunError::Spawn(e));
            }
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.reaped {
            // SAFETY: kill(2) of this process's own child, which is not reaped yet, so its
            // pid cannot have been reused.
            unsafe { libc::kill(self.pid, libc::SIGKILL) };
            // Blocking: a killed child exits at once. (Even unreaped, it runs no more code
            // of its own after SIGKILL, so its stack can go.)
            let _ = self.reap(0);
        }
    }
}

/// The signal the deadline timer sends: one of the real-time signals glibc leaves to
/// programs, with a handler that does nothing and no `SA_RESTART`, so that it only makes
/// the blocking `waitpid` return `EINTR`.
fn deadline_signal() -> i32 {
    libc::SIGRTMIN() + 4
}

extern "C" fn on_deadline_signal(_: libc::c_int) {}

/// A POSIX timer of this thread that sends [`deadline_signal`] to the thread itself: armed
/// at a child's deadline, then every 10 ms (a signal that lands just before the `waitpid`
/// starts is followed by another), disarmed once the child is reaped. Cheaper than a pidfd
/// per child (bench/README.md, "The cost of a child").
struct DeadlineTimer(libc::timer_t);

/// The thread's timer, for one wait.
#[derive(Clone, Copy)]
struct TimerRef(libc::timer_t);

thread_local! {
    static TIMER: RefCell<Option<DeadlineTimer>> = const { RefCell::new(None) };
    /// The deadline a [`BatchTimer`] holds the thread's timer armed for.
    static ARMED_FOR: Cell<Option<Deadline>> = const { Cell::new(None) };
}

/// The thread's timer, made on first use; `None` when it cannot be had.
fn thread_timer() -> Option<TimerRef> {
    TIMER.with(|slot| {
        let mut slot = slot.borrow_mut();
        if slot.is_none() {
            *slot = DeadlineTimer::new();
        }
        slot.as_ref().map(|t| TimerRef(t.0))
    })
}

/// Holds the thread's timer armed for one deadline while a batch of children is reaped,
/// and disarms it when dropped: one arming for the batch, not one per child.
struct BatchTimer(Option<TimerRef>);

impl BatchTimer {
    fn arm(deadline: Deadline) -> BatchTimer {
        let timer = thread_timer().filter(|t| t.arm(deadline.remaining()));
        if timer.is_some() {
            ARMED_FOR.set(Some(deadline));
        }
        BatchTimer(timer)
    }
}

impl Drop for BatchTimer {
    fn drop(&mut self) {
        if let Some(timer) = self.0 {
            ARMED_FOR.set(None);
            timer.disarm();
        }
    }
}

impl Drop for DeadlineTimer {
    fn drop(&mut self) {
        // SAFETY: timer_delete(2) of the thread's own timer, at the thread's end.
        unsafe { libc::timer_delete(self.0) };
    }
}

impl DeadlineTimer {
    fn new() -> Option<DeadlineTimer> {
        static HANDLER: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        let signal = deadline_signal();
        // SAFETY: sigaction(2), pthread_sigmask and timer_create(2) with zero-initialised
        // structures filled in as they require; the handler does nothing.
        unsafe {
            let handled = *HANDLER.get_or_init(|| {
                let mut action: libc::sigaction = std::mem::zeroed();
                action.sa_sigaction = on_deadline_signal as extern "C" fn(libc::c_int) as usize;
                libc::sigemptyset(&mut action.sa_mask);
                libc::sigaction(signal, &action, std::ptr::null_mut()) == 0
            });
            if !handled {
                // Unhandled, a real-time signal ends the process: no timer, then.
                return None;
            }
            // A mask inherited from whoever started this process must not hold it back.
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, signal);
            libc::pthread_sigmask(libc::SIG_UNBLOCK, &set, std::ptr::null_mut());
            let mut event: libc::sigevent = std::mem::zeroed();
            event.sigev_notify = libc::SIGEV_THREAD_ID;
            event.sigev_signo = signal;
            event.sigev_notify_thread_id = libc::gettid();
            let mut timer: libc::timer_t = std::mem::zeroed();
            (libc::timer_create(libc::CLOCK_MONOTONIC, &mut event, &mut timer) == 0)
                .then_some(DeadlineTimer(timer))
        }
    }
}

impl TimerRef {
    fn set(self, first: Duration, then: Duration) -> bool {
        let spec = |d: Duration| libc::timespec {
            tv_sec: d.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: d.subsec_nanos() as libc::c_long,
        };
        let value = libc::itimerspec {
            it_interval: spec(then),
            it_value: spec(first),
        };
        // SAFETY: timer_settime(2) on this thread's timer with a valid value.
        unsafe { libc::timer_settime(self.0, 0, &value, std::ptr::null_mut()) == 0 }
    }

    /// Fires at `left` from now (at once when nothing is left), then every 10 ms.
    fn arm(self, left: Duration) -> bool {
        self.set(left.max(Duration::from_nanos(1)), Duration::from_millis(10))
    }

    fn disarm(self) {
        self.set(Duration::ZERO, Duration::ZERO);
    }
}

/// The child, from `clone` to `exec`. It shares the parent's memory, so it only makes raw
/// system calls (no allocation, no lock, not even glibc's `errno`): stdin, stdout and
/// stderr; `SIGPIPE` (ignored by the Rust runtime) and the runtime's `SIGSEGV` and `SIGBUS`
/// handlers back to their defaults; an empty signal mask, as `std::process::Command` gives;
/// then `execve` of each path in turn, as `execvp` does.
extern "C" fn child(arg: *mut libc::c_void) -> libc::c_int {
    // SAFETY: arg is the parent's Exec, alive and unchanged until this child is reaped;
    // only system calls follow.
    unsafe {
        let exec = &*(arg as *const Exec);
        let mut failed = 0;
        for (to, &from) in exec.fds.iter().enumerate() {
            let rc = if from == to as i32 {
                raw_syscall(libc::SYS_fcntl, [from as usize, libc::F_SETFD as usize, 0])
            } else {
                raw_syscall(libc::SYS_dup3, [from as usize, to, 0])
            };
            if rc < 0 {
                failed = -rc as i32;
            }
        }
        let default = [0usize; 4]; // the kernel's sigaction: SIG_DFL, no flags, empty mask
        for signal in [libc::SIGPIPE, libc::SIGSEGV, libc::SIGBUS] {
            let args = [signal as usize, default.as_ptr() as usize, 0, 8];
            raw_syscall4(libc::SYS_rt_sigaction, args);
        }
        let empty = 0u64;
        let args = [
            libc::SIG_SETMASK as usize,
            &empty as *const u64 as usize,
            0,
            8,
        ];
        raw_syscall4(libc::SYS_rt_sigprocmask, args);
        if failed == 0 {
            failed = libc::ENOENT;
            let mut path = exec.paths.as_ptr();
            while !(*path).is_null() {
                let rc = raw_syscall(
                    libc::SYS_execve,
                    [
                        *path as usize,
                        exec.argv.as_ptr() as usize,
                        exec.envp as usize,
                    ],
                );
                match -rc as i32 {
                    libc::ENOENT | libc::ENOTDIR => {}
                    libc::EACCES => failed = libc::EACCES, // and go on, as execvp does
                    other => {
                        failed = other;
                        break;
                    }
                }
                path = path.add(1);
            }
        }
        exec.errno.store(failed, Ordering::Relaxed);
        raw_syscall(libc::SYS_exit, [127, 0, 0]);
        127
    }
}

unsafe fn raw_syscall(number: libc::c_long, args: [usize; 3]) -> isize {
    raw_syscall4(number, [args[0], args[1], args[2], 0])
}

#[cfg(target_arch = "x86_64")]
unsafe fn raw_syscall4(number: libc::c_long, args: [usize; 4]) -> isize {
    let ret: isize;
    std::arch::asm!(
        "syscall",
        inlateout("rax") number as isize => ret,
        in("rdi") args[0],
        in("rsi") args[1],
        in("rdx") args[2],
        in("r10") args[3],
        lateout("rcx") _,
        lateout("r11") _,
        options(nostack),
    );
    ret
}

#[cfg(target_arch = "aarch64")]
unsafe fn raw_syscall4(number: libc::c_long, args: [usize; 4]) -> isize {
    let ret: isize;
    std::arch::asm!(
        "svc 0",
        in("x8") number,
        inlateout("x0") args[0] as isize => ret,
        in("x1") args[1],
        in("x2") args[2],
        in("x3") args[3],
        options(nostack),
    );
    ret
}

#[cfg(not(any(target_arch = "x86_64", target_arch = "aarch64")))]
compile_error!("src/process.rs: raw system calls for the child are written for x86_64 and aarch64");

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    const NO_ARGS: &[&str] = &[];

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(10))
    }

    #[test]
    fn captures_output_and_status() {
        let out = run(
            "sh",
            &["-c", "cat; echo err >&2; exit 3"],
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
            "sh",
            &["-c", "cat; head -c 300000 /dev/zero >&2"],
            Some(&input),
            soon(),
        )
        .unwrap();
        assert_eq!(out.stdout.len(), 1 << 20);
        assert_eq!(out.stderr.len(), 300_000);
    }

    #[test]
    fn a_child_that_ignores_its_input_is_fine() {
        let out = run("true", NO_ARGS, Some(&vec![b'x'; 1 << 20]), soon()).unwrap();
        assert!(out.status.success());
    }

    #[test]
    fn children_run_together_each_with_its_own_files_and_answer_in_order() {
        let started = Instant::now();
        let args: [&[&str]; 4] = [
            &["-c", "sleep 0.3; cat; echo one >&2"],
            &["-c", "sleep 0.3; cat; exit 4"],
            &["-c", "sleep 0.3; head -c 200000 /dev/zero"],
            &["-c", "sleep 0.3; cat"],
        ];
        let input = vec![b'y'; 70_000];
        let commands: Vec<Command<&str>> = vec![
            ("sh", args[0], Some(b"first")),
            ("sh", args[1], Some(b"second")),
            ("sh", args[2], None),
            ("sh", args[3], Some(&input)),
        ];
        let done: Vec<Finished> = run_all(&commands, soon())
            .into_iter()
            .map(Result::unwrap)
            .collect();
        // Together: four sleeps of 0.3 s take about 0.3 s, not 1.2 s.
        assert!(started.elapsed() < Duration::from_millis(1100));
        assert_eq!(
            (done[0].stdout.as_slice(), done[0].stderr_text().as_str()),
            (b"first".as_slice(), "one")
        );
        assert_eq!(done[1].stdout, b"second");
        assert_eq!(done[1].status.code(), Some(4));
        assert_eq!(done[2].stdout.len(), 200_000);
        assert_eq!(done[3].stdout, input);
        // The files go back to the pool clean: the next children see only their own.
        let again = run_all(&[("cat", NO_ARGS, Some(b"z".as_slice()))], soon());
        assert_eq!(again[0].as_ref().unwrap().stdout, b"z");
    }

    #[test]
    fn more_children_at_once_than_static_stacks_run_on_stacks_of_the_heap() {
        let args: Vec<[String; 2]> = (0..STATIC_STACKS + 4)
            .map(|i| ["-c".to_string(), format!("echo {i}")])
            .collect();
        let commands: Vec<Command<String>> = args.iter().map(|a| ("sh", &a[..], None)).collect();
        let done = run_all(&commands, soon());
        for (i, result) in done.iter().enumerate() {
            assert_eq!(result.as_ref().unwrap().stdout, format!("{i}\n").as_bytes());
        }
        // A stack's slot is free again once its holder is gone.
        let stack = Stack::new();
        if let Stack::Static(slot) = stack {
            drop(stack);
            assert_eq!(CHILD_STACKS.held.load(Ordering::Relaxed) & (1 << slot), 0);
        }
    }

    #[test]
    fn in_a_batch_one_missing_or_late_child_spoils_only_its_own_result() {
        let started = Instant::now();
        let commands: Vec<Command<&str>> = vec![
            ("no-such-program-here", NO_ARGS, None),
            ("sleep", &["30"], None),
            ("echo", &["fine"], None),
            ("sleep", &["30"], None),
        ];
        let results = run_all(&commands, Deadline::after(Duration::from_millis(300)));
        assert!(matches!(&results[0], Err(RunError::Spawn(e)) if e.kind() == ErrorKind::NotFound));
        assert!(matches!(results[1], Err(RunError::TimedOut)));
        assert_eq!(results[2].as_ref().unwrap().stdout, b"fine\n");
        // Reaped after the shared deadline had passed: still killed, not waited for.
        assert!(matches!(results[3], Err(RunError::TimedOut)));
        assert!(started.elapsed() < Duration::from_secs(10));
        // The batch's timer is disarmed: nothing interrupts the thread later.
        assert_eq!(ARMED_FOR.get(), None);
        let timer = thread_timer().unwrap();
        // SAFETY: timer_gettime(2) of the thread's timer into a zeroed itimerspec.
        let mut left: libc::itimerspec = unsafe { std::mem::zeroed() };
        assert_eq!(unsafe { libc::timer_gettime(timer.0, &mut left) }, 0);
        assert_eq!((left.it_value.tv_sec, left.it_value.tv_nsec), (0, 0));
    }

    /// A child that would sleep 30 s is killed at a 200 ms deadline, well before.
    fn assert_a_sleeper_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = run(
            "sleep",
            &["30"],
            None,
            Deadline::after(Duration::from_millis(200)),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn kills_at_the_deadline() {
        assert_a_sleeper_is_killed_at_the_deadline();
    }

    #[test]
    fn a_child_that_closes_its_pipes_but_lives_on_is_killed_at_the_deadline() {
        let started = Instant::now();
        let err = run(
            "sh",
            &["-c", "exec >&- 2>&-; sleep 30"],
            None,
            Deadline::after(Duration::from_millis(300)),
        )
        .unwrap_err();
        assert!(matches!(err, RunError::TimedOut));
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn nothing_carries_over_from_one_child_to_the_next() {
        let long = vec![b'a'; 100_000];
        let first = run("cat", NO_ARGS, Some(&long), soon()).unwrap();
        assert_eq!(first.stdout, long);
        let second = run("cat", NO_ARGS, Some(b"xyz"), soon()).unwrap();
        assert_eq!(second.stdout, b"xyz");
        let third = run("sh", &["-c", "echo only >&2"], None, soon()).unwrap();
        assert!(third.stdout.is_empty());
        assert_eq!(third.stderr, b"only\n");
        let fourth = run("cat", NO_ARGS, None, soon()).unwrap();
        assert!(fourth.stdout.is_empty() && fourth.stderr.is_empty());
    }

    #[test]
    fn a_child_starts_with_no_signal_blocked_and_sigpipe_at_its_default() {
        let out = run("cat", &["/proc/self/status"], None, soon()).unwrap();
        let status = String::from_utf8(out.stdout).unwrap();
        let mask = |name: &str| {
            let line = status.lines().find(|l| l.starts_with(name)).unwrap();
            u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
        };
        assert_eq!(mask("SigBlk:"), 0);
        assert_eq!(mask("SigIgn:") & (1 << (libc::SIGPIPE - 1)), 0);
    }

    #[test]
    fn a_program_on_path_runs_as_named_and_one_not_executable_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let tool = dir.path().join("tool");
        std::fs::write(&tool, "#!/bin/sh\necho ran\n").unwrap();
        let refused = run(tool.to_str().unwrap(), NO_ARGS, None, soon()).unwrap_err();
        assert!(
            matches!(&refused, RunError::Spawn(e) if e.kind() == ErrorKind::PermissionDenied),
            "{refused:?}"
        );
        let out = run("sh", &["-c", "echo $0"], None, soon()).unwrap();
        assert_eq!(out.stdout, b"sh\n"); // argv[0] is the name as given
    }

    #[test]
    fn the_deadline_holds_when_the_timer_signal_came_blocked() {
        // A fresh thread (its own timer), with the signal blocked as a parent could leave it.
        std::thread::spawn(|| {
            // SAFETY: pthread_sigmask on this thread with a valid set.
            unsafe {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, deadline_signal());
                libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            }
            assert_a_sleeper_is_killed_at_the_deadline();
        })
        .join()
        .unwrap();
    }

    #[test]
    fn without_a_timer_the_deadline_is_kept_by_polling() {
        let exec = Exec::new("sleep", &["30"]).unwrap();
        let null = dev_null().unwrap();
        let fd = null.as_raw_fd();
        let mut files = Files::new().unwrap();
        let mut running = Running::start(exec, [fd, fd, fd], files.stack.top()).unwrap();
        let err = running
            .wait_polling(Deadline::after(Duration::from_millis(200)))
            .unwrap_err();
        assert!(matches!(err, RunError::TimedOut));
        drop(running); // kills and reaps
        let exec = Exec::new("true", NO_ARGS).unwrap();
        let mut running = Running::start(exec, [fd, fd, fd], files.stack.top()).unwrap();
        assert!(running.wait_polling(soon()).unwrap().success());
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let err = run("/nonexistent/tool", NO_ARGS, None, soon()).unwrap_err();
        assert!(matches!(err, RunError::Spawn(_)));
    }
}
