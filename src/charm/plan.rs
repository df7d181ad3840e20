//! Plan and assess: pure functions from the config and a snapshot to what to do next, and
//! to the one status that tells the truth about the snapshot. No I/O here: every decision
//! is covered by table tests without any double.

use super::config::Config;
use super::fleet::{Course, Gate};
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
                SnapCommand::Install(..)
                    | SnapCommand::Refresh(..)
                    | SnapCommand::Start
                    | SnapCommand::Restart
            )
        })
    }

    fn ran(&self, verb: &str) -> bool {
        self.commands.iter().any(|c| c.verb() == verb)
    }
}

/// A snap installed from a file: the charm leaves it alone (docs/snapd-api.md#snap-object).
pub(crate) fn sideloaded(snap: &Snap) -> Status {
    Status::blocked(format!(
        "{SNAP_NAME} was installed from a file (revision {}); the charm will not replace it: \
         run 'snap remove {SNAP_NAME}' to let the charm install it from the store",
        crate::text::bounded(&snap.revision, 16)
    ))
}

/// The next steps towards `config`, given what `seen` shows and what this hook has done.
pub(crate) fn plan(config: &Config, seen: &Observed, done: &Done, course: &Course) -> Plan {
    let mut steps = ports(config, seen);
    let machine = &seen.machine;
    let Some(snap) = &machine.snap else {
        match &course.install {
            Ok((channel, cohort)) if !done.ran("install") => {
                let install = SnapCommand::Install(channel.clone(), cohort.clone());
                steps.push(Step::Snap(install));
            }
            Ok(_) => {}
            Err(why) => return Plan::Hold(Status::waiting(why)),
        }
        return Plan::Steps(steps);
    };
    if snap.installed_from_file() {
        return Plan::Hold(sideloaded(snap));
    }
    let tracked = snap.tracking_channel.as_deref().unwrap_or_default();
    match &course.gate {
        // On its turn: to the channel, and into the move's cohort (a resumed move brings a
        // new one, so a revision published since is picked up).
        Gate::Open { cohort }
            if !config.channel.is_tracked_by(tracked)
                || cohort
                    .as_ref()
                    .is_some_and(|k| snap.cohort_key.as_ref() != Some(k)) =>
        {
            if !done.ran("refresh") {
                let refresh = SnapCommand::Refresh(config.channel.clone(), cohort.clone());
                steps.push(Step::Snap(refresh));
            }
            return Plan::Steps(steps);
        }
        // Waiting for its turn: keep serving where it is.
        _ => {}
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
pub(crate) fn unconverged(config: &Config, machine: &MachineView, gate: &Gate) -> Option<String> {
    let snap = machine.snap.as_ref()?;
    if snap.installed_from_file() {
        return None;
    }
    let tracked = snap.tracking_channel.as_deref().unwrap_or_default();
    if !config.channel.is_tracked_by(tracked) && matches!(gate, Gate::Open { .. }) {
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
pub(crate) fn assess(config: &Config, machine: &MachineView, gate: &Gate) -> Status {
    let Some(snap) = &machine.snap else {
        return Status::waiting(format!("{SNAP_NAME} is not installed yet"));
    };
    if snap.installed_from_file() {
        return sideloaded(snap);
    }
    let port = config.port;
    let tracked = snap.tracking_channel.as_deref().unwrap_or_default();
    match (&machine.health, gate) {
        // Healthy on the target after all: the leader resumes the move on seeing it.
        (Some(Health::Online), Gate::Halted { .. }) if config.channel.is_tracked_by(tracked) => {}
        (_, Gate::Halted { status, .. }) => return Status::blocked(status),
        (Some(Health::Online), Gate::Wait(why)) if !config.channel.is_tracked_by(tracked) => {
            return Status::active(format!("Ready at {} ({why})", quoted(tracked, 64)));
        }
        _ => {}
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::charm::observe::JujuView;
    use crate::snap::snapd::App;
    use serde_json::json;

    fn config(channel: &str, port: i64) -> Config {
        Config::from_settings(
            json!({"channel": channel, "port": port})
                .as_object()
                .unwrap(),
        )
        .unwrap()
    }

    fn snap(tracking: Option<&str>, revision: &str, active: bool) -> Snap {
        Snap {
            name: SNAP_NAME.into(),
            version: "1".into(),
            revision: revision.into(),
            tracking_channel: tracking.map(str::to_string),
            cohort_key: None,
            apps: vec![App {
                name: SNAP_NAME.into(),
                daemon: Some("simple".into()),
                enabled: true,
                active,
            }],
        }
    }

    fn seen(
        snap: Option<Snap>,
        port: Option<u16>,
        health: Option<Health>,
        opened: &[&str],
    ) -> Observed {
        Observed {
            machine: MachineView {
                snap,
                port_setting: port.map_or(PortSetting::Unset, PortSetting::Port),
                health,
                metrics: false,
            },
            juju: JujuView {
                opened: opened
                    .iter()
                    .map(|p| PortRange::parse(p).ok_or(p.to_string()))
                    .collect(),
                cos_relations: Vec::new(),
            },
        }
    }

    fn snap_steps(commands: &[SnapCommand]) -> Vec<Step> {
        commands.iter().cloned().map(Step::Snap).collect()
    }

    #[test]
    fn plans() {
        let edge = config("edge", 8080);
        let open = Step::OpenPort(PortRange::tcp(8080));
        let online = Some(Health::Online);
        let ready = Some(snap(Some("latest/edge"), "29", true));
        let restarted = Done {
            commands: vec![SnapCommand::Restart],
        };
        let none = Done::default();
        let install = SnapCommand::Install(edge.channel.clone(), None);
        let refresh = SnapCommand::Refresh(edge.channel.clone(), None);
        for (why, seen, done, plan) in [
            (
                "fresh machine",
                seen(None, None, None, &[]),
                &none,
                Plan::Steps(vec![open.clone(), Step::Snap(install)]),
            ),
            (
                "converged",
                seen(ready.clone(), Some(8080), online.clone(), &["8080/tcp"]),
                &none,
                Plan::Steps(vec![]),
            ),
            (
                "stale ports first, then the wanted one",
                seen(
                    ready.clone(),
                    Some(8080),
                    online.clone(),
                    &["9000/tcp", "icmp", "weird"],
                ),
                &none,
                Plan::Steps(vec![
                    Step::ClosePort("9000/tcp".into()),
                    Step::ClosePort("icmp".into()),
                    Step::ClosePort("weird".into()),
                    open.clone(),
                ]),
            ),
            (
                "other track",
                seen(
                    Some(snap(Some("1.0/stable"), "12", true)),
                    Some(8080),
                    online.clone(),
                    &["8080/tcp"],
                ),
                &none,
                Plan::Steps(snap_steps(std::slice::from_ref(&refresh))),
            ),
            (
                "refresh never repeated",
                seen(
                    Some(snap(Some("1.0/stable"), "12", true)),
                    Some(8080),
                    online.clone(),
                    &["8080/tcp"],
                ),
                &Done {
                    commands: vec![refresh],
                },
                Plan::Steps(vec![]),
            ),
            (
                "port setting differs",
                seen(ready.clone(), Some(8081), None, &["8080/tcp"]),
                &none,
                Plan::Steps(snap_steps(&[
                    SnapCommand::SetPort(edge.port),
                    SnapCommand::Restart,
                ])),
            ),
            (
                "hung: restart",
                seen(
                    ready.clone(),
                    Some(8080),
                    Some(Health::Silent),
                    &["8080/tcp"],
                ),
                &none,
                Plan::Steps(snap_steps(&[SnapCommand::Restart])),
            ),
            (
                "hung after a restart: no second one",
                seen(
                    ready.clone(),
                    Some(8080),
                    Some(Health::Silent),
                    &["8080/tcp"],
                ),
                &restarted,
                Plan::Steps(vec![]),
            ),
            (
                "dead: start",
                seen(
                    Some(snap(Some("latest/edge"), "29", false)),
                    Some(8080),
                    Some(Health::NotListening),
                    &["8080/tcp"],
                ),
                &none,
                Plan::Steps(snap_steps(&[SnapCommand::Start])),
            ),
            (
                "port held by another process: nothing to start",
                seen(
                    Some(snap(Some("latest/edge"), "29", false)),
                    Some(8080),
                    Some(Health::Silent),
                    &["8080/tcp"],
                ),
                &none,
                Plan::Steps(vec![]),
            ),
        ] {
            assert_eq!(
                super::plan(&edge, &seen, done, &Course::alone(&edge.channel)),
                plan,
                "{why}"
            );
        }
        let local = snap(None, "x1", true);
        assert_eq!(
            super::plan(
                &edge,
                &seen(Some(local.clone()), None, None, &[]),
                &none,
                &Course::alone(&edge.channel)
            ),
            Plan::Hold(sideloaded(&local)),
            "installed from a file"
        );
    }

    #[test]
    fn assessments() {
        let edge = config("edge", 8080);
        let view = |snap: Option<Snap>, health: Option<Health>| MachineView {
            snap,
            port_setting: PortSetting::Port(8080),
            health,
            metrics: false,
        };
        let running = Some(snap(Some("latest/edge"), "29", true));
        let stopped = Some(snap(Some("latest/edge"), "29", false));
        for (machine, kind, message) in [
            (
                view(running.clone(), Some(Health::Online)),
                "active",
                "Ready at 'edge'",
            ),
            (
                view(running.clone(), Some(Health::Silent)),
                "waiting",
                "microsample not responding on port 8080",
            ),
            (
                view(stopped.clone(), Some(Health::NotListening)),
                "blocked",
                "microsample not responding on port 8080",
            ),
            (
                view(stopped.clone(), Some(Health::Silent)),
                "blocked",
                "port 8080 is held by another process: microsample cannot listen on it",
            ),
            (
                view(
                    stopped,
                    Some(Health::Wrong("port 8080 answered HTTP 404".into())),
                ),
                "blocked",
                "port 8080 is held by another process: microsample cannot listen on it",
            ),
        ] {
            let status = assess(&edge, &machine, &Gate::Open { cohort: None });
            assert_eq!(
                (status.kind.as_str(), status.message.as_str()),
                (kind, message)
            );
        }
        let moved = MachineView {
            port_setting: PortSetting::Port(9000),
            ..view(running, None)
        };
        assert_eq!(
            unconverged(&edge, &moved, &Gate::Open { cohort: None }).as_deref(),
            Some("snapd has port 9000 for microsample after snap set port=8080")
        );
    }
}
