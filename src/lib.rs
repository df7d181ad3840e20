//! A Juju machine charm for the `microsample` snap, as one static binary that is the
//! charm's `dispatch`.
//!
//! Juju runs the binary once per event with `JUJU_DISPATCH_PATH=hooks/<hook>` or
//! `actions/<action>`. The charm installs microsample with the `snap` CLI, keeps it on the
//! configured channel and port, asks snapd over its socket what is really installed, checks
//! the service answers, and reports all of it through the hook tools.
//!
//! Modules, one concern each:
//! - [`juju`]: the event, the hook tools (and what was last reported), the `juju-log`
//!   logger;
//! - [`snap`]: channel grammar, snapd REST client, `snap` CLI runner;
//! - [`charm`]: the reconcile and the actions, from config and observed state to one status;
//! - [`workload`]: is microsample answering on its port;
//! - [`cos`]: what the `cos-agent` relation carries (scrape job, alert rules, dashboard);
//! - [`metadata`]: names and defaults generated from `charmcraft.yaml` at build time.

pub mod charm;
mod claim;
pub mod cos;
pub mod juju;
pub mod process;
pub mod snap;
pub mod text;
pub mod workload;

/// Names and defaults read from `charmcraft.yaml` by `build.rs`.
pub mod metadata {
    include!(concat!(env!("OUT_DIR"), "/metadata.rs"));
}

use std::ffi::OsString;

use juju::{Dispatch, ProcessTools};

/// Exit code for a `JUJU_DISPATCH_PATH` that is missing or not understood.
pub const EXIT_USAGE: u8 = 2;

/// Makes a panic (a bug) surface as a hook error with an ERROR line in `juju debug-log`
/// naming it, rather than vanish: the hook then exits 101 and Juju retries it.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        log::error!("charm bug (please report it): {info}");
    }));
}

/// Runs the charm for the event in `dispatch_path` (the value of `JUJU_DISPATCH_PATH`) and
/// returns the process exit code.
pub fn run(dispatch_path: Option<OsString>) -> u8 {
    install_panic_hook();
    juju::logger::Logger::from_env().install();
    let dispatch = match Dispatch::parse(dispatch_path.as_deref()) {
        Ok(dispatch) => dispatch,
        Err(e) => {
            eprintln!("error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut tools = juju::Reported::new(ProcessTools::default(), juju::reported::FILE);
    if let Dispatch::Hook(juju::Hook::Stop | juju::Hook::Remove) = dispatch {
        // The agent has just set a status of its own.
        tools.forget();
    }
    let mut machine = charm::System::default();
    let topology = cos::Topology::from_env();
    match charm::handle(&mut tools, &mut machine, &topology, &dispatch) {
        charm::Exit::Done => 0,
        charm::Exit::Failed => 1,
    }
}
