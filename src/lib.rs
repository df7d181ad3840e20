//! A Juju machine charm for the `microsample` snap, as one static binary that is the
//! charm's `dispatch`.
//!
//! Juju runs the binary once per event with `JUJU_DISPATCH_PATH=hooks/<hook>` or
//! `actions/<action>` (docs/juju.md#dispatch). The charm installs microsample with the
//! `snap` CLI, keeps it on the configured channel and port, asks snapd over its socket what
//! is really installed, checks the service answers, and reports all of it through the hook
//! tools.
//!
//! Data flows one way: environment → event → observe → plan → act → observe → one report.
//! Modules, one concern each (all private; this page is the whole public surface):
//! - `juju`: the event, the hook tools, opened ports, the `juju-log` logger;
//! - `snap`: channel grammar, snapd REST client, `snap` CLI runner;
//! - `workload`: the service's port, health and metrics;
//! - `charm`: config, observe, plan, act, report;
//! - `cos`: what the `cos-agent` relation carries;
//! - `http`, `process`, `deadline`, `text`: bounded I/O and safe text;
//! - `metadata`: names, defaults and enums generated from `charmcraft.yaml` at build time.
//!
//! The public items are what the fuzz targets and the tests outside the crate use.
#![warn(missing_docs, unreachable_pub)]

mod charm;
mod claim;
mod cos;
mod deadline;
mod http;
mod juju;
mod metadata;
mod process;
mod snap;
mod text;
mod workload;

use std::ffi::OsString;

pub use charm::{Config, ConfigError};
pub use juju::tools::MAX_STATUS_MESSAGE;
pub use snap::snapd::{decode, decode_snap};
pub use snap::{channel::RISKS, Channel, ChannelError, PortSetting, Snap, SnapdClient, SnapdError};

/// Exit code for a `JUJU_DISPATCH_PATH` that is missing or not understood.
pub const EXIT_USAGE: u8 = 2;

/// Exit code of a hook that panicked (a bug): the one std's own start-up gives.
pub const EXIT_PANIC: u8 = 101;

/// The whole process, for a `main` that skips std's start-up (src/main.rs): std's runtime
/// set-up maps a signal stack and reads `/proc/self/maps` for a stack-overflow message,
/// about 0.1 ms of every hook's CPU here (bench/README.md). What of it a hook needs is
/// done here instead: stdin, stdout and stderr open (a file the charm opens must never
/// become one of them), `SIGPIPE` ignored (a closed pipe is an error to handle, not a
/// death), a panic turned into exit 101, stdout flushed at the end.
pub fn main_without_std_runtime() -> u8 {
    use std::io::Write;

    // SAFETY: poll(2) on three valid pollfd structures; open(2) of a constant path, whose
    // descriptor takes the lowest free number, i.e. the closed stdio descriptor, and is
    // kept for the life of the process; signal(2) with a valid disposition.
    unsafe {
        let mut fds = [0, 1, 2].map(|fd| libc::pollfd {
            fd,
            events: 0,
            revents: 0,
        });
        if libc::poll(fds.as_mut_ptr(), 3, 0) >= 0 {
            for fd in fds {
                if fd.revents & libc::POLLNVAL != 0 {
                    libc::open(c"/dev/null".as_ptr(), libc::O_RDWR);
                }
            }
        }
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let code = std::panic::catch_unwind(|| run(std::env::var_os("JUJU_DISPATCH_PATH")))
        .unwrap_or(EXIT_PANIC);
    let _ = std::io::stdout().flush();
    code
}

/// Makes a panic (a bug) surface as a hook error with an ERROR line in `juju debug-log`
/// naming it, rather than vanish: the hook then exits 101 and Juju retries it.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::error!("charm bug (please report it): {info}");
    }));
}

/// Sends `log` records where the process runs: `juju-log` in a hook, else syslog or stderr.
pub fn install_logger() {
    juju::logger::Logger::from_env().install();
}

/// `text` made safe to show: control characters folded to spaces, cut to `max` characters.
pub fn bounded(text: &str, max: usize) -> String {
    text::bounded(text, max)
}

/// Runs the charm for the event in `dispatch_path` (the value of `JUJU_DISPATCH_PATH`) and
/// returns the process exit code.
pub fn run(dispatch_path: Option<OsString>) -> u8 {
    install_panic_hook();
    install_logger();
    let dispatch = match juju::Dispatch::parse(dispatch_path.as_deref()) {
        Ok(dispatch) => dispatch,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let env = charm::Env {
        topology: cos::Topology::from_env(),
        unit: std::env::var("JUJU_UNIT_NAME").unwrap_or_default(),
        upgrading: dispatch == juju::Dispatch::Hook(juju::Hook::UpgradeCharm),
    };
    match charm::handle(&mut charm::Real::default(), &env, &dispatch) {
        charm::Exit::Done => 0,
        charm::Exit::Failed => 1,
    }
}
