//! The charm: for each event, observe → plan → act → observe → one [`Outcome`], reported in
//! one place ([`report`]).
//!
//! Reconciling hooks read config, take a snapshot ([`observe`]), ask the pure [`plan`] what
//! to change, change it ([`act`]), and look again, until nothing is left to do (at most
//! [`MAX_ROUNDS`] rounds). The status then comes from the last snapshot ([`plan::assess`]):
//! never from memory. Three kinds of ending: done (exit 0), blocked on something only the
//! operator can fix (exit 0, `blocked`), or a fault Juju should retry (exit 1, ERROR in
//! `juju debug-log`, a status naming the cause).

mod act;
mod config;
mod fleet;
mod host;
mod observe;
mod plan;
#[cfg(test)]
mod scenarios;
#[cfg(test)]
mod testing;

use serde_json::{Map, Value};

pub use config::{Config, ConfigError};
pub(crate) use host::Real;

use crate::claim::{Claim, ClaimError, ClaimState, Taken};
use crate::cos::{self, Topology};
use crate::juju::tools::StatusKind;
use crate::juju::{Dispatch, Hook, HookTools, RelationKind, Status, ToolError, Write};
use crate::metadata::Endpoint;
use crate::snap::{SnapCliError, SnapCommand, SnapdError, SNAP_NAME};
use crate::text::bounded;
use fleet::{Course, Fleet, Gate, Read, UnitState};
use host::Host;
use observe::{HealthBudget, Observed};
use plan::{Done, Plan};

/// Rounds of plan and act one hook may take: install, then move the port, then check.
pub(crate) const MAX_ROUNDS: usize = 3;
/// Longest workload version shown in `juju status`.
const MAX_VERSION: usize = 64;

/// What the process should exit with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// The hook did what it could (including reporting `blocked`).
    Done,
    /// A fault Juju should retry: exit non-zero.
    Failed,
}

/// Why a hook stopped before the end.
#[derive(Debug)]
pub(crate) enum Stop {
    /// Only the operator can fix it: report it, exit 0.
    Blocked(Status),
    /// A transient fault: log `cause` at ERROR, report `status`, exit non-zero.
    Fault { status: Status, cause: String },
}

impl From<ToolError> for Stop {
    fn from(e: ToolError) -> Stop {
        Stop::Fault {
            status: Status::waiting(format!("Juju hook tool failed, will retry: {e}")),
            cause: e.to_string(),
        }
    }
}

impl From<ClaimError> for Stop {
    fn from(e: ClaimError) -> Stop {
        match e {
            // Someone must look at the file: retrying cannot help.
            ClaimError::Corrupt { .. } | ClaimError::InvalidUnit { .. } => {
                log::error!("{e}");
                Stop::Blocked(Status::blocked(e.to_string()))
            }
            _ => Stop::Fault {
                status: Status::waiting(format!("machine claim unavailable, will retry: {e}")),
                cause: format!("cannot use the machine-wide claim on {SNAP_NAME}: {e}"),
            },
        }
    }
}

impl Stop {
    fn snapd(e: SnapdError) -> Stop {
        Stop::Fault {
            status: Status::waiting(format!("snapd unavailable, will retry: {e}")),
            cause: format!("cannot read the {SNAP_NAME} snap from snapd: {e}"),
        }
    }

    /// A failed `snap` command: the operator's problem when retrying cannot help (no such
    /// channel, branch or track), otherwise a fault to retry.
    fn snap(command: &SnapCommand, e: SnapCliError) -> Stop {
        match (command, &e) {
            (
                SnapCommand::Install(c, _) | SnapCommand::Refresh(c, _),
                SnapCliError::ChannelNotAvailable(_),
            ) => {
                log::warn!("{command}: {e}");
                Stop::Blocked(Status::blocked(format!(
                    "channel '{c}' not available for {SNAP_NAME}"
                )))
            }
            (_, SnapCliError::LocalSnap(_)) => {
                log::warn!("{command}: {e}");
                Stop::Blocked(Status::blocked(format!(
                    "{SNAP_NAME} was installed from a file: {e}"
                )))
            }
            (SnapCommand::Install(..), SnapCliError::SnapNotFound(_)) => {
                log::warn!("{command}: {e}");
                Stop::Blocked(Status::blocked(format!(
                    "{SNAP_NAME} not found in the snap store: {e}"
                )))
            }
            _ => Stop::Fault {
                status: Status::waiting(format!(
                    "snap {} {SNAP_NAME} failed, will retry: {e}",
                    command.verb()
                )),
                cause: format!("{command} failed: {e}"),
            },
        }
    }
}

/// Which databag of a relation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Bag {
    Unit,
    /// The application's (leader only).
    App,
}

/// Who this process runs for.
#[derive(Debug, Clone)]
pub(crate) struct Env {
    pub(crate) topology: Topology,
    /// `JUJU_UNIT_NAME`.
    pub(crate) unit: String,
    /// This hook is `upgrade-charm`.
    pub(crate) upgrading: bool,
}

/// What a hook or action ends with, reported in one place.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    /// The unit's workload status, when the hook owns it.
    pub(crate) status: Option<Status>,
    /// The workload version observed.
    pub(crate) version: Option<String>,
    /// The application's status (leader only).
    pub(crate) app_status: Option<Status>,
    /// Databags to write: `(relation id, which bag, settings)`.
    pub(crate) relation_data: Vec<(String, Bag, Map<String, Value>)>,
    /// An action's results, or why it failed.
    pub(crate) action: Option<Result<Vec<(&'static str, String)>, String>>,
    /// A fault to retry: logged at ERROR, exit non-zero.
    pub(crate) fault: Option<String>,
}

impl Outcome {
    fn stopped(stop: Stop, version: Option<String>) -> Outcome {
        match stop {
            Stop::Blocked(status) => Outcome {
                status: Some(status),
                version,
                ..Outcome::default()
            },
            Stop::Fault { status, cause } => Outcome {
                status: Some(status),
                version,
                fault: Some(cause),
                ..Outcome::default()
            },
        }
    }
}

/// Handles one event and reports its outcome; returns how the process should exit.
pub(crate) fn handle(host: &mut impl Host, env: &Env, dispatch: &Dispatch) -> Exit {
    if let Dispatch::Hook(Hook::UpgradeCharm) = dispatch {
        act::remove_legacy_files();
    }
    let outcome = match dispatch {
        Dispatch::Hook(
            Hook::Install
            | Hook::Start
            | Hook::ConfigChanged
            | Hook::UpgradeCharm
            | Hook::UpdateStatus
            | Hook::LeaderElected,
        )
        | Dispatch::Hook(Hook::Relation {
            endpoint: Endpoint::CosAgent,
            kind: RelationKind::Joined | RelationKind::Changed,
        })
        | Dispatch::Hook(Hook::Relation {
            endpoint: Endpoint::Fleet,
            kind:
                RelationKind::Created
                | RelationKind::Joined
                | RelationKind::Changed
                | RelationKind::Departed,
        }) => reconcile(host, env),
        Dispatch::Hook(Hook::Remove) => remove(host),
        // Stopping the unit's agent must not stop the workload; remove cleans up.
        Dispatch::Hook(Hook::Stop) => return Exit::Done,
        Dispatch::Hook(Hook::Relation { endpoint, kind }) => {
            log::debug!(
                "ignoring {}-relation-{kind:?}: nothing to do",
                endpoint.name()
            );
            return Exit::Done;
        }
        Dispatch::Hook(Hook::Other(name)) => {
            log::debug!("ignoring hook {name}: nothing to do");
            return Exit::Done;
        }
        Dispatch::Action(action) => act::action(host, env, *action),
        Dispatch::UnknownAction(name) => Outcome {
            action: Some(Err(format!("unknown action {name:?}"))),
            ..Outcome::default()
        },
    };
    report(host, outcome)
}

/// Converges the machine on the config and reports what it then observes.
fn reconcile(host: &mut impl Host, env: &Env) -> Outcome {
    observe::read_ahead(host);
    let settings = match host.config_get() {
        Ok(settings) => settings,
        Err(e) => return Outcome::stopped(e.into(), None),
    };
    let config = match Config::from_settings(&settings) {
        Ok(config) => config,
        Err(e) => {
            log::warn!("{e}");
            // Still the truth about the workload version.
            let version = host
                .snap()
                .ok()
                .flatten()
                .map(|s| bounded(&s.version, MAX_VERSION));
            return Outcome::stopped(Stop::Blocked(Status::blocked(e.to_string())), version);
        }
    };
    // Another unit on this machine manages microsample: change nothing at all.
    let claimed = match host.claim() {
        Ok(ClaimState::Held { by }) => return Outcome::stopped(held_by(&by), None),
        Ok(state) => state,
        Err(e) => return Outcome::stopped(e.into(), None),
    };
    let mut budget = HealthBudget::default();
    let looked = look(host, env, &config, &mut budget);
    let (mut seen, mut fleet) = match looked {
        Ok(looked) => looked,
        Err(stop) => return Outcome::stopped(stop, None),
    };
    // Without the claim, the snap is not this unit's to report on.
    if let Err(stop) = claim(host, env, &claimed, seen.machine.snap.is_some()) {
        return Outcome::stopped(stop, None);
    }
    let read = fleet.as_ref().map(|f| f.app.clone());
    let course = match steer(host, &config, &seen, fleet.as_mut()) {
        Ok(course) => course,
        Err(stop) => return Outcome::stopped(stop, version(&seen)),
    };
    let status = match converge(host, &config, &mut seen, &course, &mut budget) {
        Ok(status) | Err(Stop::Blocked(status)) => status,
        Err(fault) => return Outcome::stopped(fault, version(&seen)),
    };
    let fleet = fleet.as_ref().zip(read.as_ref());
    finish(status, &config, &seen, env, fleet, &course)
}

/// Takes the machine-wide claim before anything changes. A snap that is there already was
/// installed by someone else, unless this charm's earlier revision (which had no claims)
/// did: then `upgrade-charm` takes it as its own.
fn claim(
    host: &mut impl Host,
    env: &Env,
    claimed: &ClaimState,
    installed: bool,
) -> Result<(), Stop> {
    let upgraded_from_claimless = env.upgrading && *claimed == ClaimState::Free;
    // A claim naming this unit stays its own while the unit lives: only a unit whose agent
    // directory is gone loses it (src/claim.rs), so there is nothing to take again.
    let taken = match claimed {
        ClaimState::Mine(claim) => Taken::AlreadyMine(claim.clone()),
        _ => host.take_claim(!installed || upgraded_from_claimless)?,
    };
    match taken {
        Taken::Held { by } => return Err(held_by(&by)),
        Taken::TookOver { from, .. } => log::warn!(
            "took over the claim on {SNAP_NAME} from {from}, which is gone from this machine"
        ),
        Taken::Took(claim) if !claim.installed_by_charm => log::info!(
            "adopted the {SNAP_NAME} snap already on this machine: it will never be removed by the charm"
        ),
        // An adopted snap that is gone: what the charm installs now is its own.
        Taken::AlreadyMine(claim) if !claim.installed_by_charm && !installed => {
            host.mark_installed_by_charm()?
        }
        Taken::Took(_) | Taken::AlreadyMine(_) => {}
    }
    Ok(())
}

/// Another unit manages microsample here: say so, change nothing.
fn held_by(owner: &Claim) -> Stop {
    let status = Status::blocked(format!("{SNAP_NAME} is managed by {owner} on this machine"));
    log::warn!("{}: this unit leaves it alone", status.message);
    Stop::Blocked(status)
}

/// The first snapshot: Juju's view, the machine's, then the fleet's (how much of it this
/// unit reads depends on where it stands).
fn look(
    host: &mut impl Host,
    env: &Env,
    config: &Config,
    budget: &mut HealthBudget,
) -> Result<(Observed, Option<Fleet>), Stop> {
    let juju = observe::juju(host)?;
    let cos_related = !juju.cos_relations.is_empty();
    let machine = observe::machine(host, config.port, false, cos_related, budget)?;
    let mine = unit_state(&machine, None);
    let settled = |mv: &fleet::Move| fleet::settled_in(mv, &config.channel, &mine);
    let fleet = observe::fleet(host, &env.unit, &env.topology.application, settled)?;
    Ok((Observed { machine, juju }, fleet))
}

/// Where this unit may go. On the leader of several units this first brings the move up to
/// date (a new target gets a new cohort when some unit has to move), so the leader acts on
/// the move it is about to publish.
fn steer(
    host: &mut impl Host,
    config: &Config,
    seen: &Observed,
    fleet: Option<&mut Fleet>,
) -> Result<Course, Stop> {
    let Some(fleet) = fleet else {
        // Only `install` runs before Juju shows the peer relation (docs/juju.md#hook-order):
        // what a unit installs, and whether it may move, is the fleet's to say, so it waits
        // for `fleet-relation-created`.
        let why = format!("installing {SNAP_NAME} once the peer relation is visible");
        return Ok(Course {
            install: Err(why),
            gate: Gate::Wait("waiting for the peer relation".into()),
        });
    };
    // Alone: the leader without peers, or a unit that has seen neither a peer nor a move.
    if fleet.members.is_empty() && (fleet.leader || fleet.app == Read::Missing) {
        return Ok(Course::alone(&config.channel));
    }
    let mine = unit_state(&seen.machine, None);
    if fleet.leader && fleet::moving(fleet, &mine, &config.channel) {
        let starting = !matches!(&fleet.app, Read::Valid(m) if m.targets(&config.channel));
        let cohort = if starting && !fleet::all_on(fleet, &mine, &config.channel) {
            let key = host.create_cohort().map_err(|e| Stop::Fault {
                status: Status::waiting(format!(
                    "snap create-cohort {SNAP_NAME} failed, will retry: {e}"
                )),
                cause: format!("snap create-cohort {SNAP_NAME} failed: {e}"),
            })?;
            log::info!("created a cohort for the move to '{}'", config.channel);
            Some(key)
        } else {
            None
        };
        let (mv, _) = fleet::coordinate(fleet, &config.channel, &mine, cohort.as_deref());
        fleet.app = Read::Valid(mv);
    }
    Ok(fleet::course(fleet, &config.channel, &mine))
}

/// Plan, act and look again until nothing is left to do; the status the last snapshot
/// deserves.
fn converge(
    host: &mut impl Host,
    config: &Config,
    seen: &mut Observed,
    course: &Course,
    budget: &mut HealthBudget,
) -> Result<Status, Stop> {
    let mut done = Done::default();
    for _ in 0..MAX_ROUNDS {
        let steps = match plan::plan(config, seen, &done, course) {
            Plan::Hold(status) => return Ok(status),
            Plan::Steps(steps) if steps.is_empty() => break,
            Plan::Steps(steps) => steps,
        };
        let revives = |s: &plan::Step| {
            matches!(
                s,
                plan::Step::Snap(SnapCommand::Start | SnapCommand::Restart)
            )
        };
        if let Some(health) = seen
            .machine
            .health
            .as_ref()
            .filter(|_| steps.iter().any(revives))
        {
            log::warn!(
                "{SNAP_NAME} not responding on port {}: {health}",
                config.port
            );
        }
        act::steps(host, &steps, &mut done, &mut seen.juju)?;
        let cos_related = !seen.juju.cos_relations.is_empty();
        seen.machine = observe::machine(host, config.port, done.started(), cos_related, budget)?;
        if seen.machine.snap.is_none() && done.commands.iter().any(|c| c.verb() == "install") {
            return Err(Stop::Fault {
                status: Status::waiting(format!("{SNAP_NAME} missing after install, will retry")),
                cause: format!("snap install {SNAP_NAME} succeeded but snapd does not list it"),
            });
        }
    }
    if let Some(cause) = plan::unconverged(config, &seen.machine, &course.gate) {
        let status = Status::waiting(format!("{}, will retry", bounded(&cause, 150)));
        return Err(Stop::Fault { status, cause });
    }
    let status = plan::assess(config, &seen.machine, &course.gate);
    if let Some(health) = seen.machine.health.as_ref().filter(|h| !h.is_online()) {
        let level = match status.kind {
            StatusKind::Blocked => log::Level::Error,
            _ => log::Level::Warn,
        };
        log::log!(level, "{}: {health}", status.message);
    }
    Ok(status)
}

fn version(seen: &Observed) -> Option<String> {
    seen.machine
        .snap
        .as_ref()
        .map(|s| bounded(&s.version, MAX_VERSION))
}

/// What this unit publishes to its peers: what it observed, and why its turn in the move
/// of which cohort failed.
fn unit_state(
    machine: &observe::MachineView,
    failed: Option<(String, Option<String>)>,
) -> UnitState {
    let snap = machine.snap.as_ref();
    let (failed, failed_in) = failed.unzip();
    UnitState {
        v: <UnitState as fleet::Shape>::SHAPE,
        tracking: snap.and_then(|s| s.tracking_channel.clone()),
        revision: snap.map(|s| s.revision.clone()),
        cohort: snap.and_then(|s| s.cohort_key.clone()),
        healthy: machine.health.as_ref().is_some_and(|h| h.is_online()),
        failed,
        failed_in: failed_in.flatten(),
    }
}

/// The outcome of a reconcile: the status, the version, the cos-agent data for what the
/// running revision serves, and this unit's (and, on the leader, the move's) fleet data.
fn finish(
    status: Status,
    config: &Config,
    seen: &Observed,
    env: &Env,
    fleet: Option<(&Fleet, &Read<fleet::Move>)>,
    course: &Course,
) -> Outcome {
    let metrics = seen.machine.metrics;
    let mut relation_data: Vec<(String, Bag, Map<String, Value>)> = seen
        .juju
        .cos_relations
        .iter()
        .map(|id| {
            let data = cos::unit_databag(&env.topology, config.port.get(), metrics);
            (id.clone(), Bag::Unit, data)
        })
        .collect();
    if !seen.juju.cos_relations.is_empty() && !metrics {
        log::info!(
            "publishing no scrape job or metrics alert rules: the running {SNAP_NAME} serves no Prometheus metrics on /metrics"
        );
    }
    let mut app_status = None;
    if let Some((fleet, read)) = fleet.filter(|(f, _)| !f.members.is_empty()) {
        // A turn that ends anywhere but active failed: the leader halts the move on it.
        let failed = match &course.gate {
            _ if status.kind == StatusKind::Active => None,
            Gate::Open { .. } => Some(status.message.clone()),
            Gate::Halted { cause, .. } => Some(cause.clone()),
            Gate::Wait(_) => None,
        };
        let failed = failed.map(|cause| (cause, course.cohort().map(str::to_string)));
        let mine = unit_state(&seen.machine, failed);
        relation_data.push((fleet.relation.clone(), Bag::Unit, fleet::databag(&mine)));
        if fleet.leader && fleet::moving(fleet, &mine, &config.channel) {
            let (mv, status) = fleet::coordinate(fleet, &config.channel, &mine, None);
            // Written only when it changes: every write wakes every unit.
            if *read != Read::Valid(mv.clone()) {
                relation_data.push((fleet.relation.clone(), Bag::App, fleet::databag(&mv)));
            }
            app_status = Some(status);
        }
    }
    Outcome {
        status: Some(status),
        app_status,
        version: version(seen),
        relation_data,
        ..Outcome::default()
    }
}

/// `remove`: takes the snap away if this unit's claim says the charm installed it, then
/// gives the claim up (the agent reports the unit's end itself).
fn remove(host: &mut impl Host) -> Outcome {
    let removed = |message: String| Outcome {
        status: Some(Status::maintenance(message)),
        ..Outcome::default()
    };
    let claim = match host.claim() {
        Ok(ClaimState::Mine(claim)) => claim,
        Ok(ClaimState::Held { by } | ClaimState::Stale { by }) => {
            log::info!("{SNAP_NAME} is managed by {by} on this machine: left as is");
            return removed(format!("{SNAP_NAME} left to {by}"));
        }
        Ok(ClaimState::Free) => {
            log::info!("this unit holds no claim on {SNAP_NAME}: left as is");
            return removed(format!("{SNAP_NAME} left as is"));
        }
        Err(e) => return Outcome::stopped(e.into(), None),
    };
    let result = if claim.installed_by_charm {
        remove_snap(host)
    } else {
        log::info!("{SNAP_NAME} was on this machine before the charm: left installed");
        Ok(format!("{SNAP_NAME} left installed"))
    };
    match result.and_then(|message| {
        host.release_claim()?;
        Ok(message)
    }) {
        Ok(message) => removed(message),
        Err(stop) => Outcome::stopped(stop, None),
    }
}

fn remove_snap(host: &mut impl Host) -> Result<String, Stop> {
    // If snapd cannot say, `snap remove` will tell.
    if let Ok(None) = host.snap() {
        log::info!("the {SNAP_NAME} snap is not installed: nothing to remove");
        return Ok(format!("{SNAP_NAME} snap removed"));
    }
    let steps = [plan::Step::Snap(SnapCommand::Remove)];
    let mut juju = observe::JujuView {
        opened: Vec::new(),
        cos_relations: Vec::new(),
    };
    act::steps(host, &steps, &mut Done::default(), &mut juju)?;
    log::info!("removed the {SNAP_NAME} snap");
    Ok(format!("{SNAP_NAME} snap removed"))
}

/// Reports an outcome through the hook tools: the version, the relation data, one status
/// (or the action's result), then the logs of a fault. Returns how the process exits.
fn report(tools: &mut impl HookTools, outcome: Outcome) -> Exit {
    let mut exit = Exit::Done;
    if let Some(cause) = &outcome.fault {
        log::error!("{cause}");
        exit = Exit::Failed;
    }
    let mut failed = |what: String, e: ToolError| {
        log::error!("cannot {what}: {e}");
        exit = Exit::Failed;
    };
    // The reports are independent of one another: made together.
    let mut writes = Vec::new();
    writes.extend(outcome.version.as_deref().map(Write::Version));
    writes.extend(
        outcome
            .relation_data
            .iter()
            .map(|(id, bag, data)| Write::Databag {
                relation_id: id,
                app: *bag == Bag::App,
                settings: data,
            }),
    );
    writes.extend(outcome.app_status.as_ref().map(Write::AppStatus));
    writes.extend(outcome.status.as_ref().map(Write::Status));
    for (write, result) in writes.iter().zip(tools.write_all(&writes)) {
        match (write, result) {
            (
                Write::Databag {
                    relation_id, app, ..
                },
                Ok(()),
            ) => {
                let bag = if *app { Bag::App } else { Bag::Unit };
                log::debug!("published {bag:?} data on {relation_id}");
            }
            (_, Ok(())) => {}
            (Write::Version(_), Err(e)) => failed("set the workload version".into(), e),
            (Write::Databag { relation_id, .. }, Err(e)) => {
                failed(format!("publish on {relation_id}"), e)
            }
            (Write::AppStatus(status), Err(e)) => {
                failed(format!("set the application status {status}"), e)
            }
            (Write::Status(status), Err(e)) => failed(format!("set status {status}"), e),
        }
    }
    match outcome.action {
        Some(Ok(results)) => {
            if let Err(e) = tools.action_set(&results) {
                failed("report the action's results".into(), e);
            }
        }
        Some(Err(message)) => {
            log::error!("action failed: {message}");
            if let Err(e) = tools.action_fail(&bounded(&message, 1000)) {
                failed("report the action's failure".into(), e);
            }
        }
        None => {}
    }
    exit
}
