//! The charm: one idempotent reconcile for every hook that can change the goal state, plus
//! dedicated handlers for `remove` and the actions.
//!
//! The reconcile reads config and what snapd reports, acts (install, refresh, port,
//! restart), and ends with exactly one final status computed from what it observed. Three
//! outcomes: done (exit 0), blocked on an operator mistake (exit 0, `blocked`), or a fault
//! Juju should retry (exit 1, ERROR in `juju debug-log`, a status naming the cause).

pub mod config;
pub mod machine;
#[cfg(test)]
mod tests;

use std::time::Duration;

use serde_json::Value;

pub use config::{Config, InvalidConfig};
pub use machine::{Machine, System};

use crate::cos::{self, Topology};
use crate::juju::{Dispatch, Hook, HookTools, Status, ToolError};
use crate::snap::{Channel, Snap, SnapCliError, SnapdError, SNAP_NAME};
use crate::text::bounded;
use crate::workload::Health;

/// How long a (re)started microsample gets to answer before it is reported down.
pub const STARTUP_GRACE: Duration = Duration::from_secs(10);
/// Pause between probes while waiting for it.
pub const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// What the process should exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// The hook did what it could (including reporting `blocked`).
    Done,
    /// A fault Juju should retry: exit non-zero.
    Failed,
}

/// Why a reconcile stopped before the end.
#[derive(Debug)]
enum Stop {
    /// An operator-fixable problem: report it, exit 0.
    Blocked(Status),
    /// A transient fault: log `cause` at ERROR, report `status`, exit non-zero.
    Fault { status: Status, cause: String },
}

type Step<T> = Result<T, Stop>;

impl From<ToolError> for Stop {
    fn from(e: ToolError) -> Stop {
        Stop::Fault {
            status: Status::waiting(format!("Juju hook tool failed, will retry: {e}")),
            cause: e.to_string(),
        }
    }
}

fn snapd_fault(e: SnapdError) -> Stop {
    Stop::Fault {
        status: Status::waiting(format!("snapd unavailable, will retry: {e}")),
        cause: format!("cannot read the {SNAP_NAME} snap from snapd: {e}"),
    }
}

/// A failed `snap <verb>`: the operator's problem when the store lacks the channel,
/// otherwise a fault to retry.
fn snap_command_stop(verb: &str, e: SnapCliError) -> Stop {
    match &e {
        SnapCliError::ChannelNotAvailable { channel, .. } => {
            log::warn!("snap {verb} {SNAP_NAME}: {e}");
            Stop::Blocked(Status::blocked(format!(
                "channel '{}' not available for {SNAP_NAME}",
                bounded(channel, 64)
            )))
        }
        // Only install asks the store; `snap set/start/restart` say "not found" for a snap
        // that is not installed, which is a fault to retry, not an operator problem.
        SnapCliError::SnapNotFound(_) if verb == "install" => {
            log::warn!("snap {verb} {SNAP_NAME}: {e}");
            Stop::Blocked(Status::blocked(format!(
                "{SNAP_NAME} not found in the snap store: {e}"
            )))
        }
        _ => Stop::Fault {
            status: Status::waiting(format!("snap {verb} {SNAP_NAME} failed, will retry: {e}")),
            cause: format!("snap {verb} {SNAP_NAME} failed: {e}"),
        },
    }
}

/// A charm run: the hook tools and the machine for one event.
pub struct Charm<'a, T: HookTools, M: Machine> {
    tools: &'a mut T,
    machine: &'a mut M,
    topology: &'a Topology,
    /// The workload version once snapd has told it; set once, at the end of the hook.
    version: Option<String>,
}

/// Handles one event.
pub fn handle<T: HookTools, M: Machine>(
    tools: &mut T,
    machine: &mut M,
    topology: &Topology,
    dispatch: &Dispatch,
) -> Exit {
    let mut charm = Charm {
        tools,
        machine,
        topology,
        version: None,
    };
    match dispatch {
        Dispatch::Hook(Hook::Install | Hook::Start | Hook::UpdateStatus) => {
            let result = charm.reconcile(false);
            charm.finish(result)
        }
        // What cos-agent carries follows config and the charm's own files: republish.
        Dispatch::Hook(Hook::ConfigChanged | Hook::UpgradeCharm) => {
            let result = charm.reconcile(true);
            charm.finish(result)
        }
        Dispatch::Hook(Hook::Relation { endpoint, kind })
            if endpoint == cos::ENDPOINT && (kind == "joined" || kind == "changed") =>
        {
            charm.publish_only()
        }
        Dispatch::Hook(Hook::Remove) => {
            let result = charm.remove();
            charm.finish(result)
        }
        // Stopping the unit's agent must not stop the workload; remove cleans up.
        Dispatch::Hook(Hook::Stop) => Exit::Done,
        Dispatch::Hook(Hook::Relation { endpoint, kind }) => {
            log::debug!("ignoring {endpoint}-relation-{kind}: nothing to do on this relation");
            Exit::Done
        }
        Dispatch::Hook(Hook::Other(name)) => {
            log::debug!("ignoring hook {name}: nothing to do");
            Exit::Done
        }
        Dispatch::Action(name) => charm.action(name),
    }
}

impl<T: HookTools, M: Machine> Charm<'_, T, M> {
    /// Reports the outcome: the workload version if known, then one final status.
    fn finish(&mut self, result: Step<Status>) -> Exit {
        let mut exit = Exit::Done;
        if let Some(version) = self.version.take() {
            if let Err(e) = self.tools.application_version_set(&version) {
                log::error!("cannot set the workload version: {e}");
                exit = Exit::Failed;
            }
        }
        let status = match result {
            Ok(status) | Err(Stop::Blocked(status)) => status,
            Err(Stop::Fault { status, cause }) => {
                log::error!("{cause}");
                exit = Exit::Failed;
                status
            }
        };
        if let Err(e) = self.tools.status_set(&status) {
            log::error!("cannot set status {status}: {e}");
            exit = Exit::Failed;
        }
        exit
    }

    /// Shows progress at once: a step that takes a while says so in `juju status`.
    fn progress(&mut self, message: String) -> Step<()> {
        self.tools.status_set(&Status::maintenance(message))?;
        Ok(())
    }

    fn config(&mut self) -> Step<Config> {
        let settings = self.tools.config_get()?;
        Config::from_settings(&settings).map_err(|InvalidConfig(message)| {
            log::warn!("{message}");
            Stop::Blocked(Status::blocked(message))
        })
    }

    fn observe(&mut self) -> Step<Option<Snap>> {
        let snap = self.machine.snap().map_err(snapd_fault)?;
        if let Some(snap) = &snap {
            self.version = Some(snap.version.clone());
        }
        Ok(snap)
    }

    /// What snapd reports right after a `snap <verb>` that succeeded: it must list the snap.
    fn observe_after(&mut self, verb: &str) -> Step<Snap> {
        self.observe()?.ok_or_else(|| Stop::Fault {
            status: Status::waiting(format!("{SNAP_NAME} missing after {verb}, will retry")),
            cause: format!("snap {verb} {SNAP_NAME} succeeded but snapd does not list it"),
        })
    }

    /// The snap, installed if missing and moved to `channel` if it tracks another one; true
    /// when it was just installed or refreshed (its service is starting).
    fn ensure_snap(&mut self, channel: &Channel) -> Step<(Snap, bool)> {
        let (snap, installed) = match self.observe()? {
            Some(snap) => (snap, false),
            None => {
                self.progress(format!("Installing {SNAP_NAME} snap"))?;
                self.machine
                    .install(channel)
                    .map_err(|e| snap_command_stop("install", e))?;
                log::info!("installed {SNAP_NAME} from channel '{channel}'");
                (self.observe_after("install")?, true)
            }
        };
        if snap
            .tracking_channel
            .as_deref()
            .is_some_and(|t| channel.is_tracked_by(t))
        {
            return Ok((snap, installed));
        }
        let was = snap.tracking_channel.unwrap_or_default();
        self.progress(format!("Refreshing {SNAP_NAME} to '{channel}'"))?;
        self.machine
            .refresh(channel)
            .map_err(|e| snap_command_stop("refresh", e))?;
        let snap = self.observe_after("refresh")?;
        let now = snap.tracking_channel.clone().unwrap_or_default();
        if !channel.is_tracked_by(&now) {
            return Err(Stop::Fault {
                status: Status::waiting(format!("{SNAP_NAME} still tracks '{now}', will retry")),
                cause: format!(
                    "after snap refresh --channel={channel}, snapd tracks '{now}', not '{}'",
                    channel.full()
                ),
            });
        }
        log::info!("refreshed {SNAP_NAME} from '{was}' to '{now}'");
        Ok((snap, true))
    }

    /// Points microsample at `port`; true when its service was restarted for it.
    fn ensure_port(&mut self, port: u16) -> Step<bool> {
        let current = self.machine.snap_port().map_err(snapd_fault)?;
        if current.as_ref().and_then(port_value) == Some(port) {
            return Ok(false);
        }
        self.progress(format!("Moving {SNAP_NAME} to port {port}"))?;
        self.machine
            .set_port(port)
            .map_err(|e| snap_command_stop("set", e))?;
        self.machine
            .restart()
            .map_err(|e| snap_command_stop("restart", e))?;
        log::info!("moved {SNAP_NAME} to port {port}");
        Ok(true)
    }

    /// Exactly `<port>/tcp` open, so `juju expose` exposes the port microsample uses.
    fn ensure_opened(&mut self, port: u16) -> Step<()> {
        let wanted = format!("{port}/tcp");
        let opened = self.tools.opened_ports()?;
        for stale in opened.iter().filter(|p| **p != wanted) {
            self.tools.close_port(stale)?;
        }
        if !opened.contains(&wanted) {
            self.tools.open_port(&wanted)?;
        }
        Ok(())
    }

    /// Probes until microsample answers or the startup grace runs out.
    fn wait_online(&mut self, port: u16) -> Health {
        let mut waited = Duration::ZERO;
        loop {
            let health = self.machine.probe(port);
            if health.is_online() || waited >= STARTUP_GRACE {
                return health;
            }
            self.machine.pause(PROBE_INTERVAL);
            waited += PROBE_INTERVAL;
        }
    }

    /// Checks microsample answers; if not, starts or restarts it once and checks again. A
    /// service this hook just (re)started gets the startup grace instead of a restart.
    fn ensure_healthy(&mut self, snap: &Snap, port: u16, just_started: bool) -> Step<Health> {
        let health = if just_started {
            self.wait_online(port)
        } else {
            self.machine.probe(port)
        };
        if health.is_online() || just_started {
            return Ok(health);
        }
        // A running service that does not answer is restarted; a stopped one is started.
        let running = snap.services_active();
        let verb = if running { "restart" } else { "start" };
        log::warn!("{SNAP_NAME} not responding on port {port} ({health}); {verb}ing it");
        let result = if running {
            self.machine.restart()
        } else {
            self.machine.start()
        };
        result.map_err(|e| snap_command_stop(verb, e))?;
        Ok(self.wait_online(port))
    }

    /// Converges the machine on the config; `publish` also refreshes the cos-agent data.
    fn reconcile(&mut self, publish: bool) -> Step<Status> {
        let config = self.config()?;
        if publish {
            self.publish(config.port)?;
        }
        let (snap, changed) = self.ensure_snap(&config.channel)?;
        let restarted = self.ensure_port(config.port)?;
        self.ensure_opened(config.port)?;
        let why = match self.ensure_healthy(&snap, config.port, changed || restarted)? {
            Health::Online => return Ok(Status::active(format!("Ready at '{}'", config.channel))),
            Health::Down(why) => why,
        };
        let message = format!("{SNAP_NAME} not responding on port {}", config.port);
        // Its process runs but does not answer yet (slow start, or hung): the next
        // update-status checks again. Not running at all after a start: the operator's turn.
        let running = self
            .machine
            .snap()
            .ok()
            .flatten()
            .is_some_and(|s| s.services_active());
        if running {
            log::warn!("{message} though its service runs: {why}");
            Ok(Status::waiting(message))
        } else {
            log::error!("{message}: its service does not run: {why}");
            Ok(Status::blocked(message))
        }
    }

    /// Writes the cos-agent unit databag on every cos-agent relation (none: no calls).
    fn publish(&mut self, port: u16) -> Step<()> {
        let relations = self.tools.relation_ids(cos::ENDPOINT)?;
        if relations.is_empty() {
            return Ok(());
        }
        let databag = cos::unit_databag(self.topology, port);
        for id in &relations {
            self.tools.relation_set(id, &databag)?;
        }
        log::info!(
            "published metrics, alert rules and dashboard on {}",
            relations.join(", ")
        );
        Ok(())
    }

    /// A cos-agent relation hook: publish, and leave the unit status as the last reconcile
    /// set it.
    fn publish_only(&mut self) -> Exit {
        let published = self.config().and_then(|config| self.publish(config.port));
        match published {
            Ok(()) => Exit::Done,
            // Invalid config is already reported as blocked; there is nothing to publish.
            Err(Stop::Blocked(_)) => Exit::Done,
            Err(Stop::Fault { cause, .. }) => {
                log::error!("cannot publish on {}: {cause}", cos::ENDPOINT);
                Exit::Failed
            }
        }
    }

    fn remove(&mut self) -> Step<Status> {
        let removed = Status::maintenance(format!("{SNAP_NAME} snap removed"));
        // A snap that is already gone needs nothing. If snapd cannot say, `snap remove`
        // will tell.
        if let Ok(None) = self.machine.snap() {
            log::info!("the {SNAP_NAME} snap is not installed: nothing to remove");
            return Ok(removed);
        }
        self.progress(format!("Removing {SNAP_NAME} snap"))?;
        self.machine
            .remove()
            .map_err(|e| snap_command_stop("remove", e))?;
        log::info!("removed the {SNAP_NAME} snap");
        Ok(removed)
    }

    fn action(&mut self, name: &str) -> Exit {
        let result = match name {
            "restart" => self.restart_action(),
            "info" => self.info_action(),
            other => Err(format!("unknown action {other:?}")),
        };
        let reported = match result {
            Ok(results) => self.tools.action_set(&results),
            Err(message) => {
                log::error!("action {name} failed: {message}");
                self.tools.action_fail(&bounded(&message, 1000))
            }
        };
        match reported {
            Ok(()) => Exit::Done,
            Err(e) => {
                log::error!("cannot report the result of action {name}: {e}");
                Exit::Failed
            }
        }
    }

    /// The installed snap and the port it is configured with, or why not.
    fn installed(&mut self) -> Result<(Snap, u16), String> {
        let snap = self
            .machine
            .snap()
            .map_err(|e| format!("cannot read the {SNAP_NAME} snap from snapd: {e}"))?
            .ok_or_else(|| format!("the {SNAP_NAME} snap is not installed"))?;
        let port = self
            .machine
            .snap_port()
            .map_err(|e| format!("cannot read the {SNAP_NAME} port from snapd: {e}"))?
            .as_ref()
            .and_then(port_value)
            .ok_or_else(|| format!("the {SNAP_NAME} snap has no valid port setting"))?;
        Ok((snap, port))
    }

    fn restart_action(&mut self) -> Result<Vec<(String, String)>, String> {
        let (_, port) = self.installed()?;
        self.machine
            .restart()
            .map_err(|e| format!("snap restart {SNAP_NAME} failed: {e}"))?;
        match self.wait_online(port) {
            Health::Online => Ok(vec![
                ("port".into(), port.to_string()),
                ("health".into(), "online".into()),
            ]),
            Health::Down(why) => Err(format!(
                "{SNAP_NAME} restarted but not responding on port {port}: {why}"
            )),
        }
    }

    fn info_action(&mut self) -> Result<Vec<(String, String)>, String> {
        let (snap, port) = self.installed()?;
        let health = self.machine.probe(port);
        let service = if snap.services_active() {
            "active"
        } else {
            "inactive"
        };
        Ok(vec![
            ("version".into(), snap.version),
            ("revision".into(), snap.revision),
            (
                "tracking-channel".into(),
                snap.tracking_channel.unwrap_or_default(),
            ),
            ("port".into(), port.to_string()),
            ("service".into(), service.into()),
            ("health".into(), bounded(&health.to_string(), 200)),
        ])
    }
}

/// A snap `port` setting: `snap set` stores `8080` as a number, but a string is accepted.
fn port_value(value: &Value) -> Option<u16> {
    match value {
        Value::Number(n) => n.as_u64().and_then(|p| u16::try_from(p).ok()),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}
