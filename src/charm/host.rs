//! Everything the charm reads and changes, behind two traits: [`HookTools`] (Juju) and
//! [`Machine`] (snapd, the `snap` CLI, the service's port, the clock). [`System`] is the
//! real machine; the tests have one in-memory double of both (`charm::testing`).

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use crate::claim::{ClaimDir, ClaimError, ClaimState, Taken, UnitName};
use crate::deadline::Deadline;
use crate::juju::{HookTools, PortRange, ProcessTools, Query, Status, ToolError, Write};
use crate::metadata::Endpoint;
use crate::snap::{PortSetting, Snap, SnapCli, SnapCliError, SnapCommand, SnapdClient, SnapdError};
use crate::workload::{self, Health, Port};

/// The machine as the charm sees it.
pub(crate) trait Machine {
    /// The installed snap, `None` when it is not installed.
    fn snap(&mut self) -> Result<Option<Snap>, SnapdError>;
    /// The snap's `port` setting.
    fn port_setting(&mut self) -> Result<PortSetting, SnapdError>;
    /// The installed snap and, when it is one the charm can manage (installed, not from a
    /// file), its `port` setting (`Unset` otherwise), read together: the real machine asks
    /// snapd both in one round trip.
    fn snap_and_port_setting(&mut self) -> Result<(Option<Snap>, PortSetting), SnapdError> {
        let snap = self.snap()?;
        let port = managed_port(&snap, || self.port_setting())?;
        Ok((snap, port))
    }
    /// Runs one `snap` command to completion.
    fn run(&mut self, command: &SnapCommand) -> Result<(), SnapCliError>;
    /// `snap create-cohort microsample`: a new cohort key.
    fn create_cohort(&mut self) -> Result<String, SnapCliError>;
    /// Who manages microsample on this machine, from this unit's point of view.
    fn claim(&mut self) -> Result<ClaimState, ClaimError>;
    /// Takes the machine-wide claim if it is free or stale.
    fn take_claim(&mut self, installed_by_charm: bool) -> Result<Taken, ClaimError>;
    /// Records that the charm (re)installed the snap under this unit's claim.
    fn mark_installed_by_charm(&mut self) -> Result<(), ClaimError>;
    /// Gives this unit's claim up.
    fn release_claim(&mut self) -> Result<(), ClaimError>;
    /// Asks microsample itself whether it is up, waiting at most `timeout`.
    fn probe(&mut self, port: Port, timeout: Duration) -> Health;
    /// Whether microsample's running `revision` serves Prometheus text on `/metrics`,
    /// waiting at most `timeout`. The real machine asks each store revision until it has
    /// once answered (`workload::MetricsRevisions`).
    fn serves_metrics(&mut self, port: Port, revision: &str, timeout: Duration) -> bool;
    /// The monotonic clock every wait of the charm is measured on.
    fn now(&self) -> Instant;
    /// Waits; lets a (re)started service come up between probes.
    fn pause(&mut self, duration: Duration);
}

/// The `port` setting of a snap the charm can manage (installed, not from a file), from
/// `read`; `Unset` for any other (or none).
fn managed_port(
    snap: &Option<Snap>,
    read: impl FnOnce() -> Result<PortSetting, SnapdError>,
) -> Result<PortSetting, SnapdError> {
    if snap.as_ref().is_none_or(Snap::installed_from_file) {
        Ok(PortSetting::Unset)
    } else {
        read()
    }
}

/// Juju and the machine: what one hook works with.
pub(crate) trait Host: HookTools + Machine {}

impl<T: HookTools + Machine> Host for T {}

/// The real machine.
pub(crate) struct System {
    snapd: SnapdClient,
    /// microsample's port: a hook's probes share a connection if the service keeps it
    /// (microsample's Werkzeug does not, docs/snapd-api.md#microsample).
    workload: crate::http::TcpClient,
    cli: SnapCli,
    claims: ClaimDir,
    me: Result<UnitName, String>,
}

impl Default for System {
    fn default() -> Self {
        System {
            snapd: SnapdClient::from_env(),
            workload: crate::http::TcpClient::default(),
            cli: SnapCli::default(),
            claims: ClaimDir::from_env(ClaimDir::DEFAULT_LOCK_WAIT),
            me: UnitName::from_env().map_err(|e| e.to_string()),
        }
    }
}

impl System {
    fn me(&self) -> Result<&UnitName, ClaimError> {
        self.me.as_ref().map_err(|_| ClaimError::InvalidUnit {
            name: std::env::var("JUJU_UNIT_NAME").unwrap_or_default(),
        })
    }
}

impl Machine for System {
    fn snap(&mut self) -> Result<Option<Snap>, SnapdError> {
        self.snapd.snap(crate::snap::SNAP_NAME)
    }
    fn port_setting(&mut self) -> Result<PortSetting, SnapdError> {
        self.snapd.port_setting(crate::snap::SNAP_NAME)
    }
    fn snap_and_port_setting(&mut self) -> Result<(Option<Snap>, PortSetting), SnapdError> {
        // Both asked at once; the setting's answer goes unused when there is no snap to
        // manage (snapd answers it with an error then).
        let (snap, port) = self.snapd.snap_and_port_setting(crate::snap::SNAP_NAME)?;
        let port = managed_port(&snap, || port)?;
        Ok((snap, port))
    }
    fn run(&mut self, command: &SnapCommand) -> Result<(), SnapCliError> {
        self.cli.run(command)
    }
    fn create_cohort(&mut self) -> Result<String, SnapCliError> {
        self.cli.create_cohort()
    }
    fn claim(&mut self) -> Result<ClaimState, ClaimError> {
        self.claims.observe(self.me()?)
    }
    fn take_claim(&mut self, installed_by_charm: bool) -> Result<Taken, ClaimError> {
        self.claims.take(self.me()?, installed_by_charm)
    }
    fn mark_installed_by_charm(&mut self) -> Result<(), ClaimError> {
        self.claims.mark_installed_by_charm(self.me()?).map(drop)
    }
    fn release_claim(&mut self) -> Result<(), ClaimError> {
        self.claims.release(self.me()?).map(drop)
    }
    fn probe(&mut self, port: Port, timeout: Duration) -> Health {
        workload::probe(&mut self.workload, port, Deadline::after(timeout))
    }
    fn serves_metrics(&mut self, port: Port, revision: &str, timeout: Duration) -> bool {
        workload::MetricsRevisions::in_dir(&self.claims.dir()).serves_metrics(
            &mut self.workload,
            port,
            revision,
            Deadline::after(timeout),
        )
    }
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn pause(&mut self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// The real hook tools and the real machine, for one process.
#[derive(Default)]
pub(crate) struct Real {
    tools: ProcessTools,
    machine: System,
}

impl HookTools for Real {
    fn read_ahead(&mut self, reads: &[Query<'_>]) {
        self.tools.read_ahead(reads)
    }
    fn write_all(&mut self, writes: &[Write<'_>]) -> Vec<Result<(), ToolError>> {
        self.tools.write_all(writes)
    }
    fn config_get(&mut self) -> Result<Map<String, Value>, ToolError> {
        self.tools.config_get()
    }
    fn status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        self.tools.status_set(status)
    }
    fn application_version_set(&mut self, version: &str) -> Result<(), ToolError> {
        self.tools.application_version_set(version)
    }
    fn opened_ports(&mut self) -> Result<Vec<Result<PortRange, String>>, ToolError> {
        self.tools.opened_ports()
    }
    fn open_port(&mut self, port: PortRange) -> Result<(), ToolError> {
        self.tools.open_port(port)
    }
    fn close_port(&mut self, port: &str) -> Result<(), ToolError> {
        self.tools.close_port(port)
    }
    fn action_set(&mut self, results: &[(&str, String)]) -> Result<(), ToolError> {
        self.tools.action_set(results)
    }
    fn action_fail(&mut self, message: &str) -> Result<(), ToolError> {
        self.tools.action_fail(message)
    }
    fn relation_ids(&mut self, endpoint: Endpoint) -> Result<Vec<String>, ToolError> {
        self.tools.relation_ids(endpoint)
    }
    fn relation_set(
        &mut self,
        relation_id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError> {
        self.tools.relation_set(relation_id, settings)
    }
    fn relation_set_app(
        &mut self,
        relation_id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError> {
        self.tools.relation_set_app(relation_id, settings)
    }
    fn relation_list(&mut self, relation_id: &str) -> Result<Vec<String>, ToolError> {
        self.tools.relation_list(relation_id)
    }
    fn relation_get(
        &mut self,
        relation_id: &str,
        owner: &str,
        app: bool,
    ) -> Result<Map<String, Value>, ToolError> {
        self.tools.relation_get(relation_id, owner, app)
    }
    fn is_leader(&mut self) -> Result<bool, ToolError> {
        self.tools.is_leader()
    }
    fn app_status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        self.tools.app_status_set(status)
    }
}

impl Machine for Real {
    fn snap(&mut self) -> Result<Option<Snap>, SnapdError> {
        self.machine.snap()
    }
    fn port_setting(&mut self) -> Result<PortSetting, SnapdError> {
        self.machine.port_setting()
    }
    fn snap_and_port_setting(&mut self) -> Result<(Option<Snap>, PortSetting), SnapdError> {
        self.machine.snap_and_port_setting()
    }
    fn run(&mut self, command: &SnapCommand) -> Result<(), SnapCliError> {
        self.machine.run(command)
    }
    fn create_cohort(&mut self) -> Result<String, SnapCliError> {
        self.machine.create_cohort()
    }
    fn claim(&mut self) -> Result<ClaimState, ClaimError> {
        self.machine.claim()
    }
    fn take_claim(&mut self, installed_by_charm: bool) -> Result<Taken, ClaimError> {
        self.machine.take_claim(installed_by_charm)
    }
    fn mark_installed_by_charm(&mut self) -> Result<(), ClaimError> {
        self.machine.mark_installed_by_charm()
    }
    fn release_claim(&mut self) -> Result<(), ClaimError> {
        self.machine.release_claim()
    }
    fn probe(&mut self, port: Port, timeout: Duration) -> Health {
        self.machine.probe(port, timeout)
    }
    fn serves_metrics(&mut self, port: Port, revision: &str, timeout: Duration) -> bool {
        self.machine.serves_metrics(port, revision, timeout)
    }
    fn now(&self) -> Instant {
        self.machine.now()
    }
    fn pause(&mut self, duration: Duration) {
        self.machine.pause(duration)
    }
}
