//! Observe: one snapshot of what snapd, Juju and the service say now. Nothing here decides
//! or changes anything; every later step works from a snapshot, never from memory.

use std::time::{Duration, Instant};

use super::fleet::{Fleet, Read};
use super::host::{Host, Machine};
use super::Stop;
use crate::juju::PortRange;
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

pub(crate) fn juju(host: &mut impl Host) -> Result<JujuView, Stop> {
    Ok(JujuView {
        opened: host.opened_ports()?,
        cos_relations: host.relation_ids(Endpoint::CosAgent)?,
    })
}

/// The fleet: the peer relation, who leads, the move in the application databag, and (on
/// the leader, which coordinates) what every other unit published. `None` before Juju has
/// made the peer relation; a unit alone reads nothing more.
pub(crate) fn fleet(host: &mut impl Host, me: &str, app: &str) -> Result<Option<Fleet>, Stop> {
    let Some(relation) = host.relation_ids(Endpoint::Fleet)?.into_iter().next() else {
        return Ok(None);
    };
    let units = host.relation_list(&relation)?;
    let mut fleet = Fleet {
        relation,
        me: me.to_string(),
        leader: false,
        app: Read::Missing,
        peers: Default::default(),
        peer_count: units.len(),
    };
    // A unit that sees no peer yet (a new one, before its -joined hooks) still reads the
    // move, so it installs what the fleet converges on.
    fleet.app = Read::parse(&host.relation_get(&fleet.relation, app, true)?);
    if units.is_empty() && fleet.app == Read::Missing {
        return Ok(Some(fleet));
    }
    fleet.leader = host.is_leader()?;
    if fleet.leader {
        for unit in units {
            let bag = host.relation_get(&fleet.relation, &unit, false)?;
            fleet.peers.insert(unit, Read::parse(&bag));
        }
    }
    Ok(Some(fleet))
}

/// Reads snapd, then probes the service when it runs on `port` under the charm, and
/// `/metrics` too when `cos_related`. `settle` when this hook just (re)started it: it gets
/// the startup grace to answer.
pub(crate) fn machine(
    host: &mut impl Host,
    port: Port,
    settle: bool,
    cos_related: bool,
    budget: &mut HealthBudget,
) -> Result<MachineView, Stop> {
    let snap = host.snap().map_err(Stop::snapd)?;
    if snap.as_ref().is_none_or(Snap::installed_from_file) {
        return Ok(MachineView {
            snap,
            port_setting: PortSetting::Unset,
            health: None,
            metrics: false,
        });
    }
    let port_setting = host.port_setting().map_err(Stop::snapd)?;
    if port_setting != PortSetting::Port(port.get()) {
        return Ok(MachineView {
            snap,
            port_setting,
            health: None,
            metrics: false,
        });
    }
    let health = wait_online(host, port, settle, budget);
    let metrics = cos_related && health.is_online() && {
        let left = budget.end(host.now()).saturating_duration_since(host.now());
        host.serves_metrics(port, left.min(PROBE_TIMEOUT))
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
