//! Plan and assess: pure functions from the config and a snapshot to what to do next, and
//! to the one status that tells the truth about the snapshot. No I/O here: every decision
//! is covered by table tests without any double.

use super::config::Config;
use super::observe::{MachineView, Observed};
use crate::juju::{PortRange, Status};
use crate::snap::{PortSetting, Snap, SnapCommand, SNAP_NAME};
use crate::text::quoted;
use crate::workload::Health;

/// One change to make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Step {
    /// A `snap` command on the machine.
    Snap(SnapCommand),
    /// `close-port <text>`: a port the service does not use.
    ClosePort(String),
    /// `open-port <port>/tcp`.
    OpenPort(PortRange),
}

/// What to do with a snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Change these, then look again.
    Steps(Vec<Step>),
    /// Nothing the charm may change would help: report this and change nothing.
    Hold(Status),
}

/// The `snap` commands this hook has run, so a later round never repeats a restart.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Done {
    pub(crate) commands: Vec<SnapCommand>,
}

impl Done {
    /// Whether this hook (re)started the service: installed, refreshed, started or
    /// restarted it. It then gets the startup grace, and no second restart.
    pub(crate) fn started(&self) -> bool {
        self.commands.iter().any(|c| {
            matches!(
                c,
                SnapCommand::Install(_)
                    | SnapCommand::Refresh(_)
                    | SnapCommand::Start
                    | SnapCommand::Restart
            )
        })
    }

    fn ran(&self, verb: &str) -> bool {
        self.commands.iter().any(|c| c.verb() == verb)
    }
}

/// A snap installed from a file: the charm leaves it alone (docs/snapd.md#snap-object).
pub(crate) fn sideloaded(snap: &Snap) -> Status {
    Status::blocked(format!(
        "{SNAP_NAME} was installed from a file (revision {}); the charm will not replace it: \
         run 'snap remove {SNAP_NAME}' to let the charm install it from the store",
        crate::text::bounded(&snap.revision, 16)
    ))
}

/// The next steps towards `config`, given what `seen` shows and what this hook has done.
pub(crate) fn plan(config: &Config, seen: &Observed, done: &Done) -> Plan {
    let mut steps = ports(config, seen);
    let machine = &seen.machine;
    let Some(snap) = &machine.snap else {
        steps.push(Step::Snap(SnapCommand::Install(config.channel.clone())));
        return Plan::Steps(steps);
    };
    if snap.installed_from_file() {
        return Plan::Hold(sideloaded(snap));
    }
    let tracked = snap.tracking_channel.as_deref().unwrap_or_default();
    if !config.channel.is_tracked_by(tracked) {
        if !done.ran("refresh") {
            steps.push(Step::Snap(SnapCommand::Refresh(config.channel.clone())));
        }
        return Plan::Steps(steps);
    }
    if machine.port_setting != PortSetting::Port(config.port.get()) {
        if !done.ran("set") {
            steps.push(Step::Snap(SnapCommand::SetPort(config.port)));
            steps.push(Step::Snap(SnapCommand::Restart));
        }
        return Plan::Steps(steps);
    }
    let running = snap.services_active();
    match &machine.health {
        Some(Health::Online) | None => {}
        // Someone else holds the port: starting microsample again cannot help.
        Some(Health::Silent | Health::Wrong(_)) if !running => {}
        Some(_) if done.started() => {}
        Some(_) => steps.push(Step::Snap(if running {
            SnapCommand::Restart
        } else {
            SnapCommand::Start
        })),
    }
    Plan::Steps(steps)
}

/// Exactly `<port>/tcp` open, so `juju expose` exposes the port microsample uses.
fn ports(config: &Config, seen: &Observed) -> Vec<Step> {
    let wanted = PortRange::tcp(config.port.get());
    let mut steps: Vec<Step> = seen
        .juju
        .opened
        .iter()
        .filter(|p| p.as_ref() != Ok(&wanted))
        .map(|p| match p {
            Ok(range) => Step::ClosePort(range.to_string()),
            Err(text) => Step::ClosePort(text.clone()),
        })
        .collect();
    if !seen.juju.opened.contains(&Ok(wanted)) {
        steps.push(Step::OpenPort(wanted));
    }
    steps
}

/// Why the final snapshot is not what the config asks for, when this hook did what it
/// could: a fault to retry.
pub(crate) fn unconverged(config: &Config, machine: &MachineView) -> Option<String> {
    let snap = machine.snap.as_ref()?;
    if snap.installed_from_file() {
        return None;
    }
    let tracked = snap.tracking_channel.as_deref().unwrap_or_default();
    if !config.channel.is_tracked_by(tracked) {
        return Some(format!(
            "{SNAP_NAME} tracks {} after snap refresh --channel={}",
            quoted(tracked, 64),
            config.channel.full()
        ));
    }
    match &machine.port_setting {
        PortSetting::Port(p) if *p == config.port.get() => None,
        other => Some(format!(
            "snapd has port {} for {SNAP_NAME} after snap set port={}",
            match other {
                PortSetting::Port(p) => p.to_string(),
                PortSetting::Unset => "unset".into(),
                PortSetting::Invalid(v) => crate::text::bounded(v, 20),
            },
            config.port
        )),
    }
}

/// The one status the snapshot deserves, once nothing is left to do.
pub(crate) fn assess(config: &Config, machine: &MachineView) -> Status {
    let Some(snap) = &machine.snap else {
        return Status::waiting(format!("{SNAP_NAME} is not installed yet"));
    };
    if snap.installed_from_file() {
        return sideloaded(snap);
    }
    let port = config.port;
    match &machine.health {
        Some(Health::Online) => Status::active(format!("Ready at '{}'", config.channel)),
        None => Status::waiting(format!("{SNAP_NAME} is not on port {port} yet")),
        Some(Health::Silent | Health::Wrong(_)) if !snap.services_active() => Status::blocked(
            format!("port {port} is held by another process: {SNAP_NAME} cannot listen on it"),
        ),
        Some(_) if snap.services_active() => {
            Status::waiting(format!("{SNAP_NAME} not responding on port {port}"))
        }
        Some(_) => Status::blocked(format!("{SNAP_NAME} not responding on port {port}")),
    }
}
