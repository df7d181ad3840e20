//! Observe: one snapshot of what snapd, Juju and the service say now. Nothing here decides
//! or changes anything; every later step works from a snapshot, never from memory.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::fleet::{Fleet, Move, Read};
use super::host::{Host, Machine};
use super::Stop;
use crate::juju::{PortRange, Query};
use crate::metadata::Endpoint;
use crate::snap::{PortSetting, Snap};
use crate::workload::{Health, Port, PROBE_TIMEOUT};

/// All the health work one hook may do, startup grace included, whatever the port's peer
/// does: the machine's hook lock is held meanwhile.
pub(crate) const HEALTH_BUDGET: Duration = Duration::from_secs(15);
/// How long a service this hook just (re)started gets to answer.
pub(crate) const STARTUP_GRACE: Duration = Duration::from_secs(10);
/// Pause between probes while waiting for it.
pub(crate) const PROBE_INTERVAL: Duration = Duration::from_millis(250);

/// What the machine says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MachineView {
    /// The installed snap.
    pub(crate) snap: Option<Snap>,
    /// snapd's `port` setting for it (`Unset` when not installed).
    pub(crate) port_setting: PortSetting,
    /// The service's answer on the configured port; `None` when not asked (no snap, a snap
    /// the charm does not manage, or one set to another port).
    pub(crate) health: Option<Health>,
    /// Whether the running revision serves Prometheus text on `/metrics`; only asked when
    /// a `cos-agent` relation exists (its only use is the `cos-agent` databag).
    pub(crate) metrics: bool,
}

/// What Juju says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JujuView {
    /// `opened-ports`, parsed; unknown syntax kept as text.
    pub(crate) opened: Vec<Result<PortRange, String>>,
    /// The `cos-agent` relations.
    pub(crate) cos_relations: Vec<String>,
}

/// One snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Observed {
    pub(crate) machine: MachineView,
    pub(crate) juju: JujuView,
}

/// The hook's health budget on the host's monotonic clock, started at the first probe.
#[derive(Debug, Default)]
pub(crate) struct HealthBudget {
    end: Option<Instant>,
}

impl HealthBudget {
    fn end(&mut self, now: Instant) -> Instant {
        *self.end.get_or_insert(now + HEALTH_BUDGET)
    }
}

/// Starts the reads of Juju that every reconciling hook makes, together: the config, the
/// open ports and the relations of both endpoints (none for the peer endpoint in its own
/// hooks, whose environment names the relation). A hook that stops at its config or its
/// claim leaves the other answers unused; every other hook uses them all.
pub(crate) fn read_ahead(host: &mut impl Host) {
    host.read_ahead(&[
        Query::ConfigGet,
        Query::OpenedPorts,
        Query::RelationIds(Endpoint::CosAgent),
        Query::RelationIds(Endpoint::Fleet),
    ]);
}

pub(crate) fn juju(host: &mut impl Host) -> Result<JujuView, Stop> {
    Ok(JujuView {
        opened: host.opened_ports()?,
        cos_relations: host.relation_ids(Endpoint::CosAgent)?,
    })
}

/// The fleet: the peer relation, its members, the move in the application databag, who
/// leads, and what the other units published, when this hook needs it: always on the
/// leader (it coordinates), on another unit only while it is not `settled` in the move (it
/// then needs to know whether the units before it are done). `None` before Juju has made
/// the peer relation.
pub(crate) fn fleet(
    host: &mut impl Host,
    me: &str,
    app: &str,
    settled: impl Fn(&Move) -> bool,
) -> Result<Option<Fleet>, Stop> {
    let Some(relation) = host.relation_ids(Endpoint::Fleet)?.into_iter().next() else {
        return Ok(None);
    };
    host.read_ahead(&[
        Query::RelationList(&relation),
        Query::RelationGet {
            relation_id: &relation,
            owner: app,
            app: true,
        },
    ]);
    let members = host.relation_list(&relation)?;
    // A unit that sees no peer yet (a new one, before its -joined hooks) still reads the
    // move, so it installs what the fleet converges on.
    let app = Read::parse(&host.relation_get(&relation, app, true)?);
    let leader = if members.is_empty() && app == Read::Missing {
        false
    } else {
        host.is_leader()?
    };
    let census = match &app {
        _ if members.is_empty() => false,
        _ if leader => true,
        Read::Valid(mv) => !settled(mv),
        _ => false,
    };
    let mut peers = BTreeMap::new();
    if census {
        let bags: Vec<Query> = members
            .iter()
            .map(|unit| Query::RelationGet {
                relation_id: &relation,
                owner: unit,
                app: false,
            })
            .collect();
        host.read_ahead(&bags);
        for unit in &members {
            let bag = host.relation_get(&relation, unit, false)?;
            peers.insert(unit.clone(), Read::parse(&bag));
        }
    }
    Ok(Some(Fleet {
        relation,
        me: me.to_string(),
        leader,
        app,
        members,
        peers,
    }))
}

/// Reads snapd, then probes the service when it runs on `port` under the charm, and
/// `/metrics` too when `cos_related` (unless the machine knows the running store revision
/// serves it). `settle` when this hook just (re)started it: it gets the startup grace to
/// answer.
pub(crate) fn machine(
    host: &mut impl Host,
    port: Port,
    settle: bool,
    cos_related: bool,
    budget: &mut HealthBudget,
) -> Result<MachineView, Stop> {
    // `Unset` unless the snap is one the charm manages.
    let (snap, port_setting) = host.snap_and_port_setting().map_err(Stop::snapd)?;
    if port_setting != PortSetting::Port(port.get()) {
        return Ok(MachineView {
            snap,
            port_setting,
            health: None,
            metrics: false,
        });
    }
    let health = wait_online(host, port, settle, budget);
    let revision = snap.as_ref().map_or("", |s| s.revision.as_str());
    let metrics = cos_related && health.is_online() && {
        let left = budget.end(host.now()).saturating_duration_since(host.now());
        host.serves_metrics(port, revision, left.min(PROBE_TIMEOUT))
    };
    Ok(MachineView {
        snap,
        port_setting,
        health: Some(health),
        metrics,
    })
}

/// Probes until the service answers, the grace (when `settle`) runs out, or the hook's
/// health budget is spent; every probe's own time counts.
fn wait_online(
    host: &mut impl Machine,
    port: Port,
    settle: bool,
    budget: &mut HealthBudget,
) -> Health {
    let start = host.now();
    let end = budget.end(start);
    let grace_end = if settle {
        (start + STARTUP_GRACE).min(end)
    } else {
        start
    };
    loop {
        let left = end.saturating_duration_since(host.now());
        if left.is_zero() {
            return Health::Wrong("not checked: this hook spent its health-check time".into());
        }
        let health = host.probe(port, left.min(PROBE_TIMEOUT));
        if health.is_online() || host.now() + PROBE_INTERVAL >= grace_end {
            return health;
        }
        host.pause(PROBE_INTERVAL);
    }
}
