//! The one in-memory double of the host (Juju and the machine) for the crate's tests:
//! state in, an event, state out, in the style of ops.testing.
//!
//! It keeps the rules of the real things where the charm depends on them: `snap install`
//! of an installed snap changes nothing; `snap refresh --channel=X` resolves a bare risk
//! against the tracked track (docs/snapd-api.md#channel-resolve); a snap from a file has no
//! tracking channel and a local `x1` revision; a service whose port another process holds
//! cannot start; probes take time on a virtual monotonic clock (a silent peer costs the
//! whole probe timeout), and pauses advance it.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::host::Machine;
use crate::claim::{Claim, ClaimError, ClaimState, Taken, UnitName};
use crate::juju::{HookTools, PortRange, Status, ToolError};
use crate::metadata::Endpoint;
use crate::snap::snapd::App;
use crate::snap::{Channel, PortSetting, Snap, SnapCliError, SnapCommand, SnapdError};
use crate::workload::{Health, Port};

/// What another process does with microsample's port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortHolder {
    /// Accepts and never answers.
    Silent,
    /// Answers HTTP 404.
    NotFound,
}

/// How the service behaves once started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Service {
    /// Answers `Online` after `slow_probes` failed probes.
    Healthy { slow_probes: u32 },
    /// Runs, never answers.
    Hung,
    /// Exits at once.
    Crashes,
}

/// The `fleet` peer relation as one unit sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct Peers {
    pub(crate) id: String,
    /// Other unit → its databag.
    pub(crate) units: BTreeMap<String, Map<String, Value>>,
    pub(crate) app: Map<String, Value>,
    /// This unit's own databag.
    pub(crate) mine: Map<String, Value>,
}

/// Juju and the machine, in memory.
pub(crate) struct FakeHost {
    // Juju
    pub(crate) config: Map<String, Value>,
    pub(crate) statuses: Vec<Status>,
    pub(crate) version: Option<String>,
    pub(crate) opened: BTreeSet<String>,
    pub(crate) in_action: bool,
    pub(crate) action_results: Vec<(String, String)>,
    pub(crate) action_failed: Option<String>,
    /// A tool that fails; `status-set` with `applies` set takes effect, then fails.
    pub(crate) broken_tool: Option<&'static str>,
    pub(crate) applies: bool,
    /// Every hook-tool call, in order.
    pub(crate) calls: Vec<&'static str>,
    /// cos-agent relation id → this unit's databag there.
    pub(crate) cos_relations: BTreeMap<String, Map<String, Value>>,
    /// The fleet peer relation, once Juju made it.
    pub(crate) fleet: Option<Peers>,
    pub(crate) leader: bool,
    pub(crate) app_statuses: Vec<Status>,
    // The machine
    /// Fully qualified channel → (revision, version) the store serves.
    pub(crate) store: BTreeMap<String, (String, String)>,
    pub(crate) store_down: bool,
    pub(crate) snapd_down: bool,
    pub(crate) snap: Option<Snap>,
    pub(crate) port_setting: PortSetting,
    pub(crate) service: Service,
    pub(crate) port_holder: Option<(u16, PortHolder)>,
    /// Fully qualified channels whose revision serves `/metrics`.
    pub(crate) with_metrics: BTreeSet<String>,
    /// Every `snap` command run, as its argument vector.
    pub(crate) commands: Vec<String>,
    /// Cohort keys created so far.
    pub(crate) cohorts: u32,
    /// The machine-wide claim: owner and whether the charm installed the snap.
    pub(crate) claim: Option<(String, bool)>,
    /// Units whose agent directory exists on this machine (this one always does).
    pub(crate) alive: BTreeSet<String>,
    /// This unit.
    pub(crate) me: String,
    probes_since_start: u32,
    pub(crate) clock: Instant,
    pub(crate) started_at: Instant,
}

impl Default for FakeHost {
    fn default() -> Self {
        let now = Instant::now();
        FakeHost {
            config: Map::new(),
            statuses: Vec::new(),
            version: None,
            opened: BTreeSet::new(),
            in_action: false,
            action_results: Vec::new(),
            action_failed: None,
            broken_tool: None,
            applies: false,
            calls: Vec::new(),
            cos_relations: BTreeMap::new(),
            // As every hook after `install` sees it: created, no peer yet.
            fleet: Some(Peers {
                id: "fleet:0".into(),
                ..Peers::default()
            }),
            leader: true,
            app_statuses: Vec::new(),
            cohorts: 0,
            claim: None,
            alive: BTreeSet::new(),
            me: "microsample/0".into(),
            store: [
                ("latest/edge", "29", "0+git.57e56f2"),
                ("latest/beta", "27", "0+git.49ff7aa"),
                ("1.0/stable", "12", "1.0"),
                ("1.0/edge", "14", "1.0+git"),
            ]
            .into_iter()
            .map(|(c, r, v)| (c.to_string(), (r.to_string(), v.to_string())))
            .collect(),
            store_down: false,
            snapd_down: false,
            snap: None,
            port_setting: PortSetting::Unset,
            service: Service::Healthy { slow_probes: 0 },
            port_holder: None,
            with_metrics: BTreeSet::from(["latest/edge".to_string()]),
            commands: Vec::new(),
            probes_since_start: 0,
            clock: now,
            started_at: now,
        }
    }
}

impl FakeHost {
    /// A machine where the charm installed microsample from `channel` on port 8080, opened
    /// it, and it answers.
    pub(crate) fn deployed(channel: &str) -> FakeHost {
        let mut host = FakeHost::default();
        host.run(&SnapCommand::Install(
            Channel::parse(channel).unwrap(),
            None,
        ))
        .unwrap();
        host.port_setting = PortSetting::Port(8080);
        host.opened.insert("8080/tcp".into());
        host.claim = Some((host.me.clone(), true));
        host.commands.clear();
        host
    }

    /// A snap installed from a file.
    pub(crate) fn sideloaded() -> FakeHost {
        let mut host = FakeHost::deployed("edge");
        let snap = host.snap.as_mut().unwrap();
        snap.tracking_channel = None;
        snap.revision = "x1".into();
        host
    }

    pub(crate) fn set(&mut self, key: &str, value: Value) {
        self.config.insert(key.into(), value);
    }

    /// The last status set.
    pub(crate) fn status(&self) -> &Status {
        self.statuses.last().expect("a status was set")
    }

    pub(crate) fn calls_to(&self, tool: &str) -> usize {
        self.calls.iter().filter(|c| **c == tool).count()
    }

    /// Virtual time spent so far.
    pub(crate) fn elapsed(&self) -> Duration {
        self.clock - self.started_at
    }

    fn call(&mut self, tool: &'static str) -> Result<(), ToolError> {
        self.calls.push(tool);
        if self.broken_tool == Some(tool) {
            return Err(ToolError {
                tool: tool.into(),
                detail: "ERROR connection is shut down".into(),
            });
        }
        if tool.starts_with("action-") && !self.in_action {
            return Err(ToolError {
                tool: tool.into(),
                detail: "ERROR not running an action".into(),
            });
        }
        Ok(())
    }

    fn store_fault(&self, verb: &str) -> Result<(), SnapCliError> {
        if self.store_down {
            return Err(SnapCliError::Failed {
                code: Some(1),
                detail: format!(
                    "cannot {verb} \"microsample\": persistent network error: dial tcp: lookup api.snapcraft.io: no such host"
                ),
            });
        }
        Ok(())
    }

    /// What the store serves on `full`, as snapd's CLI words it when nothing.
    fn release(&self, full: &str) -> Result<(String, String), SnapCliError> {
        self.store.get(full).cloned().ok_or_else(|| {
            let channel = Channel::parse(full).unwrap();
            SnapCliError::ChannelNotAvailable(match full.split('/').nth(2) {
                Some(branch) => format!(
                    "requested a non-existing branch on {} for snap \"microsample\": {branch}",
                    full.rsplit_once('/').unwrap().0
                ),
                None => format!(
                    "snap \"microsample\" is not available on {channel} but is available to install on the following channels: edge snap install --edge microsample"
                ),
            })
        })
    }

    fn start_service(&mut self) {
        let holder = self.port_holder.map(|(port, _)| port);
        let crashes = self.service == Service::Crashes
            || holder.is_some() && PortSetting::Port(holder.unwrap()) == self.port_setting;
        if let Some(snap) = &mut self.snap {
            snap.apps[0].active = !crashes;
        }
        self.probes_since_start = 0;
    }

    fn listening_here(&self, port: u16) -> bool {
        self.snap.as_ref().is_some_and(Snap::services_active)
            && self.port_setting == PortSetting::Port(port)
    }
}

impl HookTools for FakeHost {
    fn config_get(&mut self) -> Result<Map<String, Value>, ToolError> {
        self.call("config-get")?;
        Ok(self.config.clone())
    }
    fn status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        if self.broken_tool == Some("status-set") && self.applies {
            self.statuses.push(status.clone());
        }
        self.call("status-set")?;
        self.statuses.push(status.clone());
        Ok(())
    }
    fn application_version_set(&mut self, version: &str) -> Result<(), ToolError> {
        self.call("application-version-set")?;
        self.version = Some(version.into());
        Ok(())
    }
    fn opened_ports(&mut self) -> Result<Vec<Result<PortRange, String>>, ToolError> {
        self.call("opened-ports")?;
        Ok(self
            .opened
            .iter()
            .map(|p| PortRange::parse(p).ok_or(p.clone()))
            .collect())
    }
    fn open_port(&mut self, port: PortRange) -> Result<(), ToolError> {
        self.call("open-port")?;
        self.opened.insert(port.to_string());
        Ok(())
    }
    fn close_port(&mut self, port: &str) -> Result<(), ToolError> {
        self.call("close-port")?;
        self.opened.remove(port);
        Ok(())
    }
    fn action_set(&mut self, results: &[(&str, String)]) -> Result<(), ToolError> {
        self.call("action-set")?;
        self.action_results
            .extend(results.iter().map(|(k, v)| (k.to_string(), v.clone())));
        Ok(())
    }
    fn action_fail(&mut self, message: &str) -> Result<(), ToolError> {
        self.call("action-fail")?;
        self.action_failed = Some(message.into());
        Ok(())
    }
    fn relation_ids(&mut self, endpoint: Endpoint) -> Result<Vec<String>, ToolError> {
        self.call("relation-ids")?;
        Ok(match endpoint {
            Endpoint::CosAgent => self.cos_relations.keys().cloned().collect(),
            Endpoint::Fleet => self.fleet.iter().map(|f| f.id.clone()).collect(),
        })
    }
    fn relation_set(&mut self, id: &str, settings: &Map<String, Value>) -> Result<(), ToolError> {
        self.call("relation-set")?;
        let databag = match &mut self.fleet {
            Some(fleet) if fleet.id == id => &mut fleet.mine,
            _ => self.cos_relations.get_mut(id).ok_or_else(|| ToolError {
                tool: "relation-set".into(),
                detail: format!("ERROR invalid value \"{id}\" for option -r: relation not found"),
            })?,
        };
        databag.extend(settings.clone());
        Ok(())
    }
    fn relation_set_app(
        &mut self,
        id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError> {
        self.call("relation-set")?;
        if !self.leader {
            return Err(ToolError {
                tool: "relation-set".into(),
                detail: "ERROR cannot write relation settings: this unit is not the leader".into(),
            });
        }
        let fleet = self
            .fleet
            .as_mut()
            .filter(|f| f.id == id)
            .expect("the fleet relation");
        fleet.app.extend(settings.clone());
        Ok(())
    }
    fn relation_list(&mut self, id: &str) -> Result<Vec<String>, ToolError> {
        self.call("relation-list")?;
        let fleet = self
            .fleet
            .as_ref()
            .filter(|f| f.id == id)
            .expect("the fleet relation");
        Ok(fleet.units.keys().cloned().collect())
    }
    fn relation_get(
        &mut self,
        id: &str,
        owner: &str,
        app: bool,
    ) -> Result<Map<String, Value>, ToolError> {
        self.call("relation-get")?;
        let fleet = self
            .fleet
            .as_ref()
            .filter(|f| f.id == id)
            .expect("the fleet relation");
        Ok(if app {
            fleet.app.clone()
        } else {
            fleet.units.get(owner).cloned().unwrap_or_default()
        })
    }
    fn is_leader(&mut self) -> Result<bool, ToolError> {
        self.call("is-leader")?;
        Ok(self.leader)
    }
    fn app_status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        self.call("status-set")?;
        if !self.leader {
            return Err(ToolError {
                tool: "status-set".into(),
                detail: "ERROR setting application status: this unit is not the leader".into(),
            });
        }
        self.app_statuses.push(status.clone());
        Ok(())
    }
}

impl Machine for FakeHost {
    fn snap(&mut self) -> Result<Option<Snap>, SnapdError> {
        if self.snapd_down {
            return Err(SnapdError::Unreachable(
                "/run/snapd.socket: Connection refused (os error 111)".into(),
            ));
        }
        Ok(self.snap.clone())
    }
    fn port_setting(&mut self) -> Result<PortSetting, SnapdError> {
        self.snap()?;
        Ok(self.port_setting.clone())
    }
    fn run(&mut self, command: &SnapCommand) -> Result<(), SnapCliError> {
        self.commands.push(command.args().join(" "));
        self.clock += Duration::from_millis(500);
        match command {
            SnapCommand::Install(channel, cohort) => {
                if self.snap.is_some() {
                    return Ok(()); // already installed: exit 0, nothing changes
                }
                self.store_fault("install")?;
                let (revision, version) = self.release(&channel.full())?;
                self.snap = Some(Snap {
                    name: "microsample".into(),
                    version,
                    revision,
                    tracking_channel: Some(channel.full()),
                    cohort_key: cohort.clone(),
                    apps: vec![App {
                        name: "microsample".into(),
                        daemon: Some("simple".into()),
                        enabled: true,
                        active: true,
                    }],
                });
                if self.port_setting == PortSetting::Unset {
                    self.port_setting = PortSetting::Port(8080);
                }
                self.start_service();
            }
            SnapCommand::Refresh(channel, cohort) => {
                let Some(snap) = &self.snap else {
                    return Err(SnapCliError::Failed {
                        code: Some(1),
                        detail: "snap \"microsample\" is not installed".into(),
                    });
                };
                if snap.tracking_channel.is_none() {
                    return Err(SnapCliError::LocalSnap(
                        "local snap \"microsample\" is unknown to the store, use --amend to proceed anyway".into(),
                    ));
                }
                self.store_fault("refresh")?;
                // A bare risk keeps the tracked track (docs/snapd-api.md#channel-resolve).
                let tracked = snap.tracking_channel.clone().unwrap_or_default();
                // What `--channel=` carries in the argument vector.
                let requested = command.args()[2]
                    .trim_start_matches("--channel=")
                    .to_string();
                let requested = requested.as_str();
                let resolved = if !requested.contains('/')
                    && crate::snap::channel::RISKS.contains(&requested)
                {
                    format!(
                        "{}/{requested}",
                        tracked.split('/').next().unwrap_or("latest")
                    )
                } else {
                    channel.full()
                };
                let (revision, version) = self.release(&resolved)?;
                let snap = self.snap.as_mut().unwrap();
                snap.tracking_channel = Some(resolved);
                // Without --cohort the snap stays in its cohort (docs/snapd-api.md#cohorts).
                if cohort.is_some() {
                    snap.cohort_key = cohort.clone();
                }
                snap.revision = revision;
                snap.version = version;
                self.start_service();
            }
            SnapCommand::Remove => {
                self.snap = None;
                self.port_setting = PortSetting::Unset;
            }
            SnapCommand::SetPort(port) => {
                self.port_setting = PortSetting::Port(port.get());
            }
            SnapCommand::Start | SnapCommand::Restart => self.start_service(),
        }
        Ok(())
    }
    fn claim(&mut self) -> Result<ClaimState, ClaimError> {
        let unit = |name: &str| UnitName::parse(name).unwrap();
        Ok(match &self.claim {
            None => ClaimState::Free,
            Some((owner, by_charm)) => {
                let claim = Claim {
                    unit: unit(owner),
                    installed_by_charm: *by_charm,
                };
                if *owner == self.me {
                    ClaimState::Mine(claim)
                } else if self.alive.contains(owner) {
                    ClaimState::Held { by: claim }
                } else {
                    ClaimState::Stale { by: claim }
                }
            }
        })
    }
    fn take_claim(&mut self, installed_by_charm: bool) -> Result<Taken, ClaimError> {
        let me = self.me.clone();
        let mine = |by_charm| Claim {
            unit: UnitName::parse(&me).unwrap(),
            installed_by_charm: by_charm,
        };
        Ok(match self.claim()? {
            ClaimState::Mine(claim) => Taken::AlreadyMine(claim),
            ClaimState::Held { by } => Taken::Held { by },
            ClaimState::Free => {
                self.claim = Some((self.me.clone(), installed_by_charm));
                Taken::Took(mine(installed_by_charm))
            }
            ClaimState::Stale { by } => {
                let by_charm = installed_by_charm || by.installed_by_charm;
                self.claim = Some((self.me.clone(), by_charm));
                Taken::TookOver {
                    from: by,
                    claim: mine(by_charm),
                }
            }
        })
    }
    fn mark_installed_by_charm(&mut self) -> Result<(), ClaimError> {
        if let Some((owner, by_charm)) = &mut self.claim {
            assert_eq!(*owner, self.me, "only the owner marks its claim");
            *by_charm = true;
        }
        Ok(())
    }
    fn release_claim(&mut self) -> Result<(), ClaimError> {
        if self
            .claim
            .as_ref()
            .is_some_and(|(owner, _)| *owner == self.me)
        {
            self.claim = None;
        }
        Ok(())
    }
    fn create_cohort(&mut self) -> Result<String, SnapCliError> {
        self.commands.push("create-cohort microsample".into());
        self.store_fault("create-cohort")?;
        self.cohorts += 1;
        Ok(format!("MSBcohort{}", self.cohorts))
    }
    fn probe(&mut self, port: Port, timeout: Duration) -> Health {
        let held = self.port_holder.filter(|(p, _)| *p == port.get());
        if let Some((_, holder)) = held.filter(|_| !self.listening_here(port.get())) {
            return match holder {
                PortHolder::Silent => {
                    self.clock += timeout;
                    Health::Silent
                }
                PortHolder::NotFound => {
                    self.clock += Duration::from_millis(1);
                    Health::Wrong(format!("port {port} answered HTTP 404"))
                }
            };
        }
        if !self.listening_here(port.get()) {
            self.clock += Duration::from_millis(1);
            return Health::NotListening;
        }
        self.probes_since_start += 1;
        match self.service {
            Service::Healthy { slow_probes } if self.probes_since_start > slow_probes => {
                self.clock += Duration::from_millis(2);
                Health::Online
            }
            Service::Healthy { .. } => {
                self.clock += Duration::from_millis(1);
                Health::NotListening
            }
            Service::Hung => {
                self.clock += timeout;
                Health::Silent
            }
            Service::Crashes => Health::NotListening,
        }
    }
    fn serves_metrics(&mut self, port: Port, _revision: &str, _timeout: Duration) -> bool {
        let tracked = self.snap.as_ref().and_then(|s| s.tracking_channel.clone());
        self.listening_here(port.get()) && tracked.is_some_and(|t| self.with_metrics.contains(&t))
    }
    fn now(&self) -> Instant {
        self.clock
    }
    fn pause(&mut self, duration: Duration) {
        self.clock += duration;
    }
}
