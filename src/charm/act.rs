//! Act: carries out planned steps, one at a time, stopping at the first failure; and the
//! actions, which act at the operator's request and answer with what they then observe.

use super::fleet::{self, Read};
use super::host::Host;
use super::observe::{HealthBudget, JujuView};
use super::plan::{Done, Step};
use super::{Bag, Env, Outcome, Stop};
use crate::juju::Status;
use crate::metadata::Action;
use crate::snap::{PortSetting, SnapCommand, SNAP_NAME};
use crate::text::bounded;
use crate::workload::Port;

/// Runs `steps`; `done` records the `snap` commands that succeeded and `juju` the ports
/// now opened, so the next plan works from the truth.
pub(crate) fn steps(
    host: &mut impl Host,
    steps: &[Step],
    done: &mut Done,
    juju: &mut JujuView,
) -> Result<(), Stop> {
    for step in steps {
        match step {
            Step::Snap(command) => {
                if let Some(progress) = progress(command) {
                    // A long step shows in `juju status` while it runs.
                    host.status_set(&Status::maintenance(progress))?;
                }
                host.run(command).map_err(|e| Stop::snap(command, e))?;
                log::info!("ran {command}");
                done.commands.push(command.clone());
            }
            Step::ClosePort(port) => {
                host.close_port(port)?;
                juju.opened.retain(|p| match p {
                    Ok(range) => range.to_string() != *port,
                    Err(text) => text != port,
                });
            }
            Step::OpenPort(port) => {
                host.open_port(*port)?;
                juju.opened.push(Ok(*port));
            }
        }
    }
    Ok(())
}

/// Earlier revisions of this charm remembered the last status they set in this file in
/// the charm directory (the hook's working directory); statuses now come from observation
/// on every hook, and a leftover must not outlive the upgrade.
pub(crate) const LEGACY_MEMORY: &str = ".microsample-reported.json";

pub(crate) fn remove_legacy_files() {
    match std::fs::remove_file(LEGACY_MEMORY) {
        Ok(()) => log::info!("removed {LEGACY_MEMORY}, left by an earlier revision"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {LEGACY_MEMORY}: {e}"),
    }
}

fn progress(command: &SnapCommand) -> Option<String> {
    match command {
        SnapCommand::Install(channel, _) => {
            Some(format!("Installing {SNAP_NAME} snap from '{channel}'"))
        }
        SnapCommand::Refresh(channel, _) => Some(format!("Refreshing {SNAP_NAME} to '{channel}'")),
        SnapCommand::SetPort(port) => Some(format!("Moving {SNAP_NAME} to port {port}")),
        SnapCommand::Remove => Some(format!("Removing {SNAP_NAME} snap")),
        SnapCommand::Start | SnapCommand::Restart => None,
    }
}

/// Runs an action; its result comes from what snapd and the service say afterwards.
pub(crate) fn action(host: &mut impl Host, env: &Env, action: Action) -> Outcome {
    let mut outcome = Outcome::default();
    let result = match action {
        Action::Restart => restart(host),
        Action::Info => info(host),
        Action::ResumeMove => resume_move(host, env, &mut outcome),
    };
    outcome.action = Some(result);
    outcome
}

/// Clears a halted move on the leader and brings it a new cohort: the halted unit takes its
/// turn again, on what the store serves now.
fn resume_move(
    host: &mut impl Host,
    env: &Env,
    outcome: &mut Outcome,
) -> Result<Vec<(&'static str, String)>, String> {
    let stop_text = |stop: Stop| match stop {
        Stop::Blocked(status) | Stop::Fault { status, .. } => status.message,
    };
    let fleet = super::observe::fleet(host, &env.unit, &env.topology.application, |_| true)
        .map_err(stop_text)?
        .filter(|f| !f.members.is_empty())
        .ok_or("no move to resume: this unit has no peers")?;
    if !fleet.leader {
        return Err("run resume-move on the leader unit: it coordinates the move".into());
    }
    let mv = match &fleet.app {
        Read::Valid(mv) => mv,
        Read::Missing => return Err("no move to resume".into()),
        Read::Unreadable(seen) => return Err(format!("cannot read the move: {seen}")),
    };
    mv.halt
        .as_ref()
        .ok_or_else(|| format!("the move to '{}' is not halted", mv.target))?;
    // A new cohort: the old one pins the revision the move halted on.
    let key = host
        .create_cohort()
        .map_err(|e| format!("snap create-cohort {SNAP_NAME} failed: {e}"))?;
    let (resumed, unit) = fleet::resume(mv, key)?;
    outcome
        .relation_data
        .push((fleet.relation.clone(), Bag::App, fleet::databag(&resumed)));
    outcome.app_status = Some(Status::maintenance(format!(
        "Moving to '{}': resumed, {unit} next",
        resumed.target
    )));
    Ok(vec![("target", resumed.target.clone()), ("unit", unit)])
}

/// The installed snap's port setting, or why there is none.
fn installed_port(host: &mut impl Host) -> Result<(crate::snap::Snap, Port), String> {
    let snap = host
        .snap()
        .map_err(|e| format!("cannot read the {SNAP_NAME} snap from snapd: {e}"))?
        .ok_or_else(|| format!("the {SNAP_NAME} snap is not installed"))?;
    match host.port_setting() {
        Ok(PortSetting::Port(p)) => Port::new(p.into())
            .map(|port| (snap, port))
            .ok_or_else(|| format!("the {SNAP_NAME} snap is set to port {p}, outside 1024-65535")),
        Ok(other) => Err(format!(
            "the {SNAP_NAME} snap has no valid port setting ({other:?})"
        )),
        Err(e) => Err(format!("cannot read the {SNAP_NAME} port from snapd: {e}")),
    }
}

fn restart(host: &mut impl Host) -> Result<Vec<(&'static str, String)>, String> {
    let (_, port) = installed_port(host)?;
    host.run(&SnapCommand::Restart)
        .map_err(|e| format!("snap restart {SNAP_NAME} failed: {e}"))?;
    let machine = super::observe::machine(host, port, true, false, &mut HealthBudget::default())
        .map_err(|stop| match stop {
            Stop::Blocked(status) | Stop::Fault { status, .. } => status.message,
        })?;
    match machine.health {
        Some(health) if health.is_online() => Ok(vec![
            ("port", port.to_string()),
            ("health", "online".into()),
        ]),
        Some(health) => Err(format!(
            "{SNAP_NAME} restarted but not responding on port {port}: {health}"
        )),
        None => Err(format!(
            "{SNAP_NAME} restarted but is not set to port {port}"
        )),
    }
}

fn info(host: &mut impl Host) -> Result<Vec<(&'static str, String)>, String> {
    let (snap, port) = installed_port(host)?;
    let health = host.probe(port, crate::workload::PROBE_TIMEOUT);
    let service = if snap.services_active() {
        "active"
    } else {
        "inactive"
    };
    Ok(vec![
        ("version", bounded(&snap.version, 200)),
        ("revision", bounded(&snap.revision, 32)),
        (
            "tracking-channel",
            bounded(snap.tracking_channel.as_deref().unwrap_or_default(), 200),
        ),
        ("port", port.to_string()),
        ("service", service.into()),
        ("health", bounded(&health.to_string(), 200)),
    ])
}
