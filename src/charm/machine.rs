//! What the charm does to the machine, behind one trait ([`Machine`]) so the reconcile can
//! be tested state-in, state-out; [`System`] is the real one (snapd, `snap`, HTTP).

use std::time::Duration;

use serde_json::Value;

use crate::snap::{Channel, Snap, SnapCli, SnapCliError, SnapdClient, SnapdError, SNAP_NAME};
use crate::workload::{self, Health};

/// The machine as the charm sees it.
pub trait Machine {
    /// The installed snap, `None` when it is not installed.
    fn snap(&mut self) -> Result<Option<Snap>, SnapdError>;
    /// The snap's `port` setting.
    fn snap_port(&mut self) -> Result<Option<Value>, SnapdError>;
    fn install(&mut self, channel: &Channel) -> Result<(), SnapCliError>;
    fn refresh(&mut self, channel: &Channel) -> Result<(), SnapCliError>;
    fn remove(&mut self) -> Result<(), SnapCliError>;
    fn set_port(&mut self, port: u16) -> Result<(), SnapCliError>;
    fn start(&mut self) -> Result<(), SnapCliError>;
    fn restart(&mut self) -> Result<(), SnapCliError>;
    /// Asks microsample itself whether it is up.
    fn probe(&mut self, port: u16) -> Health;
    /// Waits; lets a (re)started service come up between probes.
    fn pause(&mut self, duration: Duration);
}

/// The real machine. The snapd client (and its runtime) is made on first use, so hooks
/// that never ask snapd do not pay for it.
#[derive(Default)]
pub struct System {
    snapd: Option<SnapdClient>,
    cli: SnapCli,
}

impl System {
    fn snapd(&mut self) -> Result<&SnapdClient, SnapdError> {
        if self.snapd.is_none() {
            let client = SnapdClient::from_env().map_err(|e| {
                SnapdError::Unreachable(format!("cannot start the snapd client: {e}"))
            })?;
            self.snapd = Some(client);
        }
        Ok(self.snapd.as_ref().expect("set above"))
    }
}

impl Machine for System {
    fn snap(&mut self) -> Result<Option<Snap>, SnapdError> {
        self.snapd()?.snap(SNAP_NAME)
    }
    fn snap_port(&mut self) -> Result<Option<Value>, SnapdError> {
        self.snapd()?.config(SNAP_NAME, "port")
    }
    fn install(&mut self, channel: &Channel) -> Result<(), SnapCliError> {
        self.cli.install(channel)
    }
    fn refresh(&mut self, channel: &Channel) -> Result<(), SnapCliError> {
        self.cli.refresh(channel)
    }
    fn remove(&mut self) -> Result<(), SnapCliError> {
        self.cli.remove()
    }
    fn set_port(&mut self, port: u16) -> Result<(), SnapCliError> {
        self.cli.set("port", &port.to_string())
    }
    fn start(&mut self) -> Result<(), SnapCliError> {
        self.cli.start()
    }
    fn restart(&mut self) -> Result<(), SnapCliError> {
        self.cli.restart()
    }
    fn probe(&mut self, port: u16) -> Health {
        workload::probe(port, workload::PROBE_TIMEOUT)
    }
    fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}
