//! Rolling channel moves across the units of the application, coordinated through the
//! `fleet` peer relation (docs/juju.md#relation-data).
//!
//! The shared state lives in the relation, never in one process:
//! - each unit publishes what it observed this hook in its unit databag ([`UnitState`]);
//! - the leader keeps the move in the application databag ([`Move`]): the target channel,
//!   the cohort every unit refreshes in, the order the units move in, and where it halted.
//!
//! The rule that keeps at most one unit in transition: a unit refreshes to the target only
//! when every unit before it in the move's order has *committed* data showing it done
//! (tracking the target, on the fleet's revision, answering). Juju commits a hook's
//! relation writes only when it exits 0, so what a unit reads has been true since; and
//! the next unit in the order waits for this one the same way.
//!
//! The leader writes the application databag only when the move starts, when units join or
//! leave it, and when it halts or resumes: every write wakes every unit, and every unit's
//! own change wakes all the others anyway (docs/juju.md#relation-data). The units pass the
//! turn among themselves through their own data.
//!
//! Both databags carry a shape version (`v`): during `juju refresh` units run different
//! charm revisions. What cannot be read is never acted on; it is said in the status.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::juju::Status;
use crate::snap::Channel;
use crate::text::bounded;

/// The key both databags keep their JSON under.
pub(crate) const KEY: &str = "microsample";

/// A databag's JSON shape and its version.
pub(crate) trait Shape: Serialize + for<'de> Deserialize<'de> {
    /// The shape this revision writes and reads.
    const SHAPE: u64;
}

/// What a unit publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnitState {
    pub(crate) v: u64,
    /// snapd's tracking channel, fully qualified; `None` when not installed.
    pub(crate) tracking: Option<String>,
    pub(crate) revision: Option<String>,
    /// The snapd cohort the snap is in (added within shape 1: older readers ignore it).
    #[serde(default)]
    pub(crate) cohort: Option<String>,
    /// Answering `Online` on its port.
    pub(crate) healthy: bool,
    /// Why its turn failed (a refresh retrying cannot fix, or no answer after the grace).
    pub(crate) failed: Option<String>,
    /// The cohort of the move it failed in: after `resume-move` (a new cohort) an old
    /// failure halts nothing.
    #[serde(default)]
    pub(crate) failed_in: Option<String>,
}

impl Shape for UnitState {
    const SHAPE: u64 = 1;
}

/// The move the leader coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Move {
    pub(crate) v: u64,
    /// The channel every unit converges on, as the operator typed it.
    pub(crate) target: String,
    /// The channel the fleet moves from (fully qualified), when known.
    pub(crate) from: Option<String>,
    /// The snapd cohort key every unit installs and refreshes in; `None` when no unit had
    /// to move when the move began.
    pub(crate) cohort: Option<String>,
    /// The units in the order they move: by unit number with the leader that started the
    /// move last, then units that joined since.
    pub(crate) order: Vec<String>,
    /// Where and why the move stopped.
    pub(crate) halt: Option<Halt>,
}

impl Shape for Move {
    // 1 had the turn in the application databag.
    const SHAPE: u64 = 2;
}

impl Move {
    /// Whether this move goes to `target` (however it is spelt).
    pub(crate) fn targets(&self, target: &Channel) -> bool {
        Channel::parse(&self.target).is_ok_and(|c| c.full() == target.full())
    }
}

/// A halted move.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Halt {
    pub(crate) unit: String,
    pub(crate) cause: String,
}

/// A databag entry as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Read<T> {
    /// Nothing published yet.
    Missing,
    Valid(T),
    /// Published in a shape this revision cannot read: what was seen, for the operator.
    Unreadable(String),
}

impl<T: Shape> Read<T> {
    /// Parses the [`KEY`] entry of a databag, checking the shape version.
    pub(crate) fn parse(databag: &Map<String, Value>) -> Read<T> {
        let Some(raw) = databag.get(KEY) else {
            return Read::Missing;
        };
        let seen = || bounded(&raw.to_string(), 80);
        let Some(text) = raw.as_str() else {
            return Read::Unreadable(seen());
        };
        let value: Value = match serde_json::from_str(text) {
            Ok(value) => value,
            Err(_) => return Read::Unreadable(seen()),
        };
        if value.get("v").and_then(Value::as_u64) != Some(T::SHAPE) {
            return Read::Unreadable(format!(
                "shape {} (this revision reads {})",
                value.get("v").map_or("none".into(), Value::to_string),
                T::SHAPE
            ));
        }
        serde_json::from_value(value).map_or_else(|_| Read::Unreadable(seen()), Read::Valid)
    }
}

/// Serialises `value` as the one-key databag this module writes.
pub(crate) fn databag<T: Serialize>(value: &T) -> Map<String, Value> {
    let text = serde_json::to_string(value).unwrap_or_default();
    Map::from_iter([(KEY.to_string(), Value::String(text))])
}

/// The fleet as this unit sees it this hook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Fleet {
    pub(crate) relation: String,
    pub(crate) me: String,
    pub(crate) leader: bool,
    pub(crate) app: Read<Move>,
    /// The other units, as this unit's agent knows them (`relation-list`).
    pub(crate) members: Vec<String>,
    /// What they published, when this hook needed to know (always on the leader).
    pub(crate) peers: BTreeMap<String, Read<UnitState>>,
}

/// Whether this unit may refresh to the configured channel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Yes (single unit, or its turn), in this cohort if any.
    Open { cohort: Option<String> },
    /// Not yet: keep serving, and say why.
    Wait(String),
    /// The move halted on this unit for `cause`: no refresh until it is resumed or rolled
    /// back. The text is the unit's status.
    Halted { status: String, cause: String },
}

/// Where this unit may go, given the fleet: what a machine without the snap installs now
/// (channel, cohort), or why it waits; and whether it may move to the configured channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Course {
    pub(crate) install: Result<(Channel, Option<String>), String>,
    pub(crate) gate: Gate,
}

impl Course {
    /// A unit on its own: straight to `channel`.
    pub(crate) fn alone(channel: &Channel) -> Course {
        Course {
            install: Ok((channel.clone(), None)),
            gate: Gate::Open { cohort: None },
        }
    }

    /// The cohort of a move this unit is in, if any.
    pub(crate) fn cohort(&self) -> Option<&str> {
        match (&self.gate, &self.install) {
            (Gate::Open { cohort }, _) => cohort.as_deref(),
            (_, Ok((_, cohort))) => cohort.as_deref(),
            _ => None,
        }
    }
}

fn unit_number(unit: &str) -> u64 {
    unit.rsplit_once('/')
        .and_then(|(_, n)| n.parse::<u64>().ok())
        .unwrap_or(u64::MAX)
}

/// Units in the order they get their turn: by unit number, `last` last (the leader keeps
/// coordinating while the others move).
fn order(units: impl Iterator<Item = String>, last: &str) -> Vec<String> {
    let mut units: Vec<String> = units.collect();
    units.sort_by_key(|u| (u == last, unit_number(u), u.clone()));
    units.dedup();
    units
}

/// Whether `state` tracks `target` and answers.
fn serving_on(state: &UnitState, target: &Channel) -> bool {
    state.healthy
        && state
            .tracking
            .as_deref()
            .is_some_and(|t| target.is_tracked_by(t))
}

/// What every unit published, this unit's own observation included, judged against a move.
struct Census<'a> {
    states: BTreeMap<String, Read<UnitState>>,
    mv: &'a Move,
    target: &'a Channel,
    /// The fleet's revision: the one the first unit in the order that is in the move's
    /// cohort runs (the cohort pins one revision per channel).
    pinned: Option<String>,
}

impl<'a> Census<'a> {
    fn new(fleet: &Fleet, mine: &UnitState, mv: &'a Move, target: &'a Channel) -> Census<'a> {
        let mut states = fleet.peers.clone();
        states.insert(fleet.me.clone(), Read::Valid(mine.clone()));
        let pinned = mv.cohort.as_ref().and_then(|cohort| {
            mv.order.iter().find_map(|u| match states.get(u) {
                Some(Read::Valid(s))
                    if s.cohort.as_ref() == Some(cohort)
                        && s.tracking
                            .as_deref()
                            .is_some_and(|t| target.is_tracked_by(t)) =>
                {
                    s.revision.clone()
                }
                _ => None,
            })
        });
        Census {
            states,
            mv,
            target,
            pinned,
        }
    }

    fn is_done(&self, unit: &str) -> bool {
        match self.states.get(unit) {
            Some(Read::Valid(s)) => {
                serving_on(s, self.target)
                    && self
                        .pinned
                        .as_ref()
                        .is_none_or(|r| s.revision.as_ref() == Some(r))
            }
            _ => false,
        }
    }

    /// Units seen (this one and its members) and how many of them are done.
    fn progress(&self) -> (usize, usize) {
        let done = self.states.keys().filter(|u| self.is_done(u)).count();
        (done, self.states.len())
    }

    /// The first unit in the order that is not done, if any.
    fn next(&self) -> Option<&'a String> {
        self.mv.order.iter().find(|u| !self.is_done(u))
    }

    /// What is known of a unit that holds the move up, for the status.
    fn describe(&self, unit: &str) -> String {
        match self.states.get(unit) {
            Some(Read::Unreadable(seen)) => format!("{unit} ({seen})"),
            Some(Read::Missing) => format!("{unit} (nothing published yet)"),
            None => format!("{unit} (not seen yet)"),
            Some(Read::Valid(_)) => unit.to_string(),
        }
    }
}

/// Whether the leader has a move to coordinate. With none yet, units being deployed
/// install what is configured by themselves (see [`course`]): a move starts only when some
/// unit tracks another channel.
pub(crate) fn moving(fleet: &Fleet, mine: &UnitState, target: &Channel) -> bool {
    let elsewhere = |s: &UnitState| {
        s.tracking
            .as_deref()
            .is_some_and(|t| !target.is_tracked_by(t))
    };
    fleet.app != Read::Missing
        || elsewhere(mine)
        || fleet
            .peers
            .values()
            .any(|s| matches!(s, Read::Valid(s) if elsewhere(s)))
}

/// Whether every unit (this one's `mine` included) already serves on `target`: a move
/// then needs no cohort.
pub(crate) fn all_on(fleet: &Fleet, mine: &UnitState, target: &Channel) -> bool {
    serving_on(mine, target)
        && fleet
            .members
            .iter()
            .all(|u| matches!(fleet.peers.get(u), Some(Read::Valid(s)) if serving_on(s, target)))
}

/// The leader's view of the move after this hook's observation of itself (`mine`): the
/// move to keep in the application databag (a new one towards `target`, in `new_cohort`,
/// when the databag holds another), and the application status.
pub(crate) fn coordinate(
    fleet: &Fleet,
    target: &Channel,
    mine: &UnitState,
    new_cohort: Option<&str>,
) -> (Move, Status) {
    let mut mv = match &fleet.app {
        Read::Valid(m) if m.targets(target) => m.clone(),
        other => {
            if let Read::Unreadable(seen) = other {
                log::warn!("replacing application data this revision cannot read: {seen}");
            }
            Move {
                v: Move::SHAPE,
                target: target.as_str().to_string(),
                from: mine.tracking.clone(),
                cohort: new_cohort.map(str::to_string),
                order: order(fleet.members.iter().cloned(), &fleet.me),
                halt: None,
            }
        }
    };
    // The order follows the relation: units gone are dropped, units new are appended.
    let present = |u: &String| *u == fleet.me || fleet.members.contains(u);
    mv.order.retain(present);
    let mut joined: Vec<String> = fleet
        .members
        .iter()
        .chain([&fleet.me])
        .filter(|u| !mv.order.contains(u))
        .cloned()
        .collect();
    joined.sort_by_key(|u| unit_number(u));
    mv.order.extend(joined);
    let snapshot = mv.clone();
    let census = Census::new(fleet, mine, &snapshot, target);
    if let Some(halt) = &mv.halt {
        if census.is_done(&halt.unit) || !present(&halt.unit) {
            log::info!(
                "{} is done or gone: the move to '{}' goes on",
                halt.unit,
                mv.target
            );
            mv.halt = None;
        }
    }
    if mv.halt.is_none() {
        // A unit that failed its turn in this move: only the first not done can have had it.
        mv.halt = census.next().and_then(|u| match census.states.get(u) {
            Some(Read::Valid(UnitState {
                failed: Some(cause),
                failed_in,
                ..
            })) if *failed_in == mv.cohort => Some(Halt {
                unit: u.clone(),
                cause: cause.clone(),
            }),
            _ => None,
        });
    }
    let (finished, total) = census.progress();
    let status = match (&mv.halt, census.next()) {
        (Some(halt), _) => Status::blocked(format!(
            "Move to '{}' halted on {}: {}",
            mv.target, halt.unit, halt.cause
        )),
        (None, None) => Status::active(format!(
            "Moved to '{}': {finished} of {total} units",
            mv.target
        )),
        (None, Some(next)) if matches!(census.states.get(next), Some(Read::Valid(_))) => {
            Status::maintenance(format!(
                "Moving to '{}': {finished} of {total} done, {next} next",
                mv.target
            ))
        }
        (None, Some(next)) => Status::waiting(format!(
            "Moving to '{}': {finished} of {total} done; waiting for {}",
            mv.target,
            census.describe(next)
        )),
    };
    (mv, status)
}

/// Where this unit may go, given the move it read (after the leader's [`coordinate`], on
/// the leader) and what it observed of itself (`mine`).
pub(crate) fn course(fleet: &Fleet, target: &Channel, mine: &UnitState) -> Course {
    let waiting = |why: String| Course {
        install: Err(why.clone()),
        gate: Gate::Wait(why),
    };
    let mv = match &fleet.app {
        Read::Valid(mv) if mv.targets(target) => mv,
        Read::Valid(_) => {
            return waiting(format!(
                "waiting for the leader to start the move to '{target}'"
            ))
        }
        // No move yet: units being deployed install what is configured.
        Read::Missing => {
            return Course {
                install: Ok((target.clone(), None)),
                gate: Gate::Wait(format!(
                    "waiting for the leader to start the move to '{target}'"
                )),
            }
        }
        Read::Unreadable(seen) => {
            return waiting(format!("cannot read the leader's move ({seen})"))
        }
    };
    let census = Census::new(fleet, mine, mv, target);
    let Some(place) = mv.order.iter().position(|u| *u == fleet.me) else {
        return waiting(format!(
            "waiting for the leader to add {} to the move to '{target}'",
            fleet.me
        ));
    };
    let serving = mv
        .from
        .as_deref()
        .and_then(|c| Channel::parse(c).ok())
        .unwrap_or_else(|| target.clone());
    if census.is_done(&fleet.me) {
        return Course {
            install: Ok((target.clone(), mv.cohort.clone())),
            gate: Gate::Wait(String::new()),
        };
    }
    let ahead = mv.order[..place].iter().find(|u| !census.is_done(u));
    match (&mv.halt, ahead) {
        (Some(halt), _) if halt.unit == fleet.me => Course {
            install: Ok((serving, mv.cohort.clone())),
            gate: Gate::Halted {
                status: format!(
                    "Move to '{target}' halted here: {}; fix it, then run resume-move on the leader, or set the old channel back",
                    halt.cause
                ),
                cause: halt.cause.clone(),
            },
        },
        // Everyone before it is done: its turn (a fresh machine installs the target).
        (_, None) => Course {
            install: Ok((target.clone(), mv.cohort.clone())),
            gate: Gate::Open {
                cohort: mv.cohort.clone(),
            },
        },
        (halt, Some(first)) => {
            let (finished, total) = census.progress();
            let why = match halt {
                Some(halt) => format!("move to '{target}' halted on {}", halt.unit),
                None => format!("moving to '{target}': {finished} of {total} done"),
            };
            // A fresh machine serves the old channel while a unit it can see holds the
            // move up; when all it holds back for is units it has not seen yet (its
            // -joined hooks are to come), the move may be over: it waits to know.
            let held = halt.is_some()
                || mv.order[..place]
                    .iter()
                    .any(|u| census.states.contains_key(u) && !census.is_done(u));
            let install = if held {
                Ok((serving, mv.cohort.clone()))
            } else {
                Err(format!("waiting to see {first} before installing"))
            };
            Course {
                install,
                gate: Gate::Wait(why),
            }
        }
    }
}

/// Whether this unit, as `mine` shows it, is done with `mv` whatever its peers say: on the
/// target, answering, in the move's cohort. Otherwise it reads its peers to know.
pub(crate) fn settled_in(mv: &Move, target: &Channel, mine: &UnitState) -> bool {
    mv.targets(target)
        && serving_on(mine, target)
        && (mv.cohort.is_none() || mine.cohort == mv.cohort)
}

/// The `resume-move` action on the leader: clears the halt and brings the move a new
/// cohort, so the halted unit refreshes again, to a revision published since.
pub(crate) fn resume(mv: &Move, cohort: String) -> Result<(Move, String), String> {
    let halt = mv
        .halt
        .as_ref()
        .ok_or_else(|| format!("the move to '{}' is not halted", mv.target))?;
    Ok((
        Move {
            halt: None,
            cohort: Some(cohort),
            ..mv.clone()
        },
        halt.unit.clone(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::juju::tools::StatusKind;

    const KEY_A: &str = "COHORT-A";

    fn unit(tracking: &str, revision: &str, healthy: bool) -> UnitState {
        UnitState {
            v: UnitState::SHAPE,
            tracking: Some(tracking.into()),
            revision: Some(revision.into()),
            cohort: None,
            healthy,
            failed: None,
            failed_in: None,
        }
    }

    fn in_cohort(state: UnitState, cohort: &str) -> UnitState {
        UnitState {
            cohort: Some(cohort.into()),
            ..state
        }
    }

    fn on_edge() -> UnitState {
        unit("latest/edge", "29", true)
    }

    fn on_beta() -> UnitState {
        in_cohort(unit("latest/beta", "27", true), KEY_A)
    }

    /// The fleet as `me` sees it: the others and what they published.
    fn fleet(me: &str, leader: bool, app: Read<Move>, peers: &[(&str, UnitState)]) -> Fleet {
        Fleet {
            relation: "fleet:1".into(),
            me: me.into(),
            leader,
            app,
            members: peers.iter().map(|(u, _)| u.to_string()).collect(),
            peers: peers
                .iter()
                .map(|(u, s)| (u.to_string(), Read::Valid(s.clone())))
                .collect(),
        }
    }

    fn beta() -> Channel {
        Channel::parse("beta").unwrap()
    }

    fn started() -> Move {
        Move {
            v: Move::SHAPE,
            target: "beta".into(),
            from: Some("latest/edge".into()),
            cohort: Some(KEY_A.into()),
            order: vec![
                "microsample/1".into(),
                "microsample/2".into(),
                "microsample/0".into(),
            ],
            halt: None,
        }
    }

    #[test]
    fn a_new_move_orders_the_units_by_number_with_the_leader_last() {
        let f = fleet(
            "microsample/0",
            true,
            Read::Missing,
            &[("microsample/2", on_edge()), ("microsample/1", on_edge())],
        );
        assert!(!all_on(&f, &on_edge(), &beta()));
        let (mv, status) = coordinate(&f, &beta(), &on_edge(), Some(KEY_A));
        assert_eq!(mv, started());
        assert_eq!(
            status,
            Status::maintenance("Moving to 'beta': 0 of 3 done, microsample/1 next")
        );
        // The leader itself waits for its turn, serving.
        let leader = fleet("microsample/0", true, Read::Valid(mv), &f_peers(&f));
        assert_eq!(
            course(&leader, &beta(), &on_edge()).gate,
            Gate::Wait("moving to 'beta': 0 of 3 done".into())
        );
    }

    fn f_peers(f: &Fleet) -> Vec<(&str, UnitState)> {
        f.peers
            .iter()
            .map(|(u, s)| match s {
                Read::Valid(s) => (u.as_str(), s.clone()),
                _ => unreachable!(),
            })
            .collect()
    }

    #[test]
    fn the_turn_passes_through_the_units_own_data_and_the_leader_goes_last() {
        let open = Gate::Open {
            cohort: Some(KEY_A.into()),
        };
        // The first unit needs nobody's data.
        let first = fleet("microsample/1", false, Read::Valid(started()), &[]);
        assert_eq!(course(&first, &beta(), &on_edge()).gate, open);
        // The second waits until the first's committed data shows it done.
        let refreshing = in_cohort(unit("latest/beta", "27", false), KEY_A);
        for (first_state, gate) in [
            (
                on_edge(),
                Gate::Wait("moving to 'beta': 0 of 3 done".into()),
            ),
            (
                refreshing,
                Gate::Wait("moving to 'beta': 0 of 3 done".into()),
            ),
            (on_beta(), open.clone()),
        ] {
            let second = fleet(
                "microsample/2",
                false,
                Read::Valid(started()),
                &[("microsample/1", first_state), ("microsample/0", on_edge())],
            );
            assert_eq!(course(&second, &beta(), &on_edge()).gate, gate);
        }
        // A unit it cannot see yet holds it back too.
        let blind = fleet(
            "microsample/2",
            false,
            Read::Valid(started()),
            &[("microsample/0", on_edge())],
        );
        assert!(matches!(
            course(&blind, &beta(), &on_edge()).gate,
            Gate::Wait(_)
        ));
        // The leader last; then the move ends, with nothing to write.
        let leader = fleet(
            "microsample/0",
            true,
            Read::Valid(started()),
            &[("microsample/1", on_beta()), ("microsample/2", on_beta())],
        );
        assert_eq!(course(&leader, &beta(), &on_edge()).gate, open);
        let (mv, status) = coordinate(&leader, &beta(), &on_beta(), None);
        assert_eq!(mv, started(), "no write while the move goes on");
        assert_eq!(status, Status::active("Moved to 'beta': 3 of 3 units"));
        // Done units have nothing left to do.
        assert_eq!(
            course(&leader, &beta(), &on_beta()).gate,
            Gate::Wait(String::new())
        );
    }

    #[test]
    fn done_means_on_the_revision_the_cohort_pins() {
        // microsample/2 tracks beta, but a newer revision than the cohort's first unit runs.
        let newer = unit("latest/beta", "50", true);
        let leader = fleet(
            "microsample/0",
            true,
            Read::Valid(started()),
            &[
                ("microsample/1", on_beta()),
                ("microsample/2", newer.clone()),
            ],
        );
        let (_, status) = coordinate(&leader, &beta(), &on_edge(), None);
        assert_eq!(
            status,
            Status::maintenance("Moving to 'beta': 1 of 3 done, microsample/2 next")
        );
        // So it refreshes into the cohort on its turn.
        let second = fleet(
            "microsample/2",
            false,
            Read::Valid(started()),
            &[("microsample/1", on_beta()), ("microsample/0", on_edge())],
        );
        assert!(!settled_in(&started(), &beta(), &newer));
        assert!(settled_in(&started(), &beta(), &on_beta()));
        assert_eq!(
            course(&second, &beta(), &newer).gate,
            Gate::Open {
                cohort: Some(KEY_A.into())
            }
        );
    }

    #[test]
    fn a_failed_turn_halts_and_a_healthy_unit_or_resume_move_lifts_it() {
        let failed = UnitState {
            failed: Some("microsample not responding on port 8080".into()),
            failed_in: Some(KEY_A.into()),
            ..in_cohort(unit("latest/beta", "40", false), KEY_A)
        };
        let leader = fleet(
            "microsample/0",
            true,
            Read::Valid(started()),
            &[
                ("microsample/1", failed.clone()),
                ("microsample/2", on_edge()),
            ],
        );
        let (halted, status) = coordinate(&leader, &beta(), &on_edge(), None);
        let halt = halted.halt.clone().expect("halted");
        assert_eq!(halt.unit, "microsample/1");
        assert_eq!(
            status,
            Status::blocked(
                "Move to 'beta' halted on microsample/1: microsample not responding on port 8080"
            )
        );
        // The unit it halted on refreshes no more; the others wait, saying where.
        let one = fleet("microsample/1", false, Read::Valid(halted.clone()), &[]);
        assert!(matches!(
            course(&one, &beta(), &failed).gate,
            Gate::Halted { cause, status } if cause == halt.cause && status.starts_with("Move to 'beta' halted here: microsample not responding")
        ));
        let two = fleet(
            "microsample/2",
            false,
            Read::Valid(halted.clone()),
            &[
                ("microsample/1", failed.clone()),
                ("microsample/0", on_edge()),
            ],
        );
        let waiting = course(&two, &beta(), &on_edge());
        assert_eq!(
            waiting.gate,
            Gate::Wait("move to 'beta' halted on microsample/1".into())
        );
        // A fresh unit would install what the fleet serves, in the cohort.
        assert_eq!(
            waiting.install,
            Ok((Channel::parse("latest/edge").unwrap(), Some(KEY_A.into())))
        );
        // Healthy after all: the move goes on by itself.
        let healed = fleet(
            "microsample/0",
            true,
            Read::Valid(halted.clone()),
            &[
                (
                    "microsample/1",
                    in_cohort(unit("latest/beta", "40", true), KEY_A),
                ),
                ("microsample/2", on_edge()),
            ],
        );
        let (on, status) = coordinate(&healed, &beta(), &on_edge(), None);
        assert_eq!(on.halt, None);
        assert_eq!(status.kind, StatusKind::Maintenance);
        // Or the operator resumes it: a new cohort, and the old failure halts nothing.
        let (resumed, unit_next) = resume(&halted, "COHORT-B".into()).unwrap();
        assert_eq!(unit_next, "microsample/1");
        assert_eq!(resumed.cohort.as_deref(), Some("COHORT-B"));
        let after = fleet(
            "microsample/0",
            true,
            Read::Valid(resumed.clone()),
            &[("microsample/1", failed), ("microsample/2", on_edge())],
        );
        let (still, status) = coordinate(&after, &beta(), &on_edge(), None);
        assert_eq!(still, resumed);
        assert_eq!(
            status,
            Status::maintenance("Moving to 'beta': 0 of 3 done, microsample/1 next")
        );
        assert!(resume(&started(), "C".into()).is_err());
    }

    #[test]
    fn units_that_leave_are_dropped_and_units_that_join_go_last() {
        let leader = fleet(
            "microsample/0",
            true,
            Read::Valid(started()),
            &[("microsample/1", on_beta()), ("microsample/5", on_edge())],
        );
        let (mv, status) = coordinate(&leader, &beta(), &on_edge(), None);
        assert_eq!(
            mv.order,
            ["microsample/1", "microsample/0", "microsample/5"],
            "microsample/2 left, microsample/5 joined"
        );
        assert_eq!(
            status,
            Status::maintenance("Moving to 'beta': 1 of 3 done, microsample/0 next")
        );
        // A unit the leader has not placed yet waits, and installs nothing.
        let new = fleet("microsample/6", false, Read::Valid(mv.clone()), &[]);
        let waiting = course(&new, &beta(), &on_edge());
        assert_eq!(
            waiting.install,
            Err("waiting for the leader to add microsample/6 to the move to 'beta'".into())
        );
        // Placed after a finished move, it waits until it has seen every unit before it...
        let finished = Move {
            order: vec!["microsample/1".into(), "microsample/6".into()],
            ..started()
        };
        let blind = fleet("microsample/6", false, Read::Valid(finished), &[]);
        assert_eq!(
            course(&blind, &beta(), &unit("", "", false)).install,
            Err("waiting to see microsample/1 before installing".into())
        );
        // ...then installs the target in the cohort.
        let finished = Move {
            order: vec!["microsample/1".into(), "microsample/6".into()],
            ..started()
        };
        let placed = fleet(
            "microsample/6",
            false,
            Read::Valid(finished),
            &[("microsample/1", on_beta())],
        );
        assert_eq!(
            course(&placed, &beta(), &unit("", "", false)).install,
            Ok((beta(), Some(KEY_A.into())))
        );
    }

    #[test]
    fn what_cannot_be_read_gets_no_turn_and_is_named() {
        let mut leader = fleet(
            "microsample/0",
            true,
            Read::Valid(started()),
            &[("microsample/1", on_beta())],
        );
        leader.members.push("microsample/2".into());
        leader.peers.insert(
            "microsample/2".into(),
            Read::Unreadable("shape 2 (this revision reads 1)".into()),
        );
        let (mv, status) = coordinate(&leader, &beta(), &on_edge(), None);
        assert_eq!(mv.halt, None);
        assert_eq!(
            status.message,
            "Moving to 'beta': 1 of 3 done; waiting for microsample/2 (shape 2 (this revision reads 1))"
        );
        // A move in an older shape is not acted on: the leader replaces it.
        let old = Map::from_iter([(
            KEY.to_string(),
            Value::from(r#"{"v":1,"target":"beta","turn":"microsample/1"}"#),
        )]);
        let read = Read::<Move>::parse(&old);
        assert_eq!(
            read,
            Read::Unreadable("shape 1 (this revision reads 2)".into())
        );
        let unit1 = fleet("microsample/1", false, read, &[]);
        assert_eq!(
            course(&unit1, &beta(), &on_edge()).gate,
            Gate::Wait("cannot read the leader's move (shape 1 (this revision reads 2))".into())
        );
    }

    #[test]
    fn reading_databags_never_panics_and_says_what_it_saw() {
        let bag = |v: Value| Map::from_iter([(KEY.to_string(), v)]);
        assert_eq!(Read::<UnitState>::parse(&Map::new()), Read::Missing);
        for bad in [
            Value::from(5),
            Value::from("{not json"),
            Value::from(r#"{"v":2,"tracking":"x"}"#),
            Value::from(r#"{"v":1,"tracking":5}"#),
        ] {
            assert!(
                matches!(
                    Read::<UnitState>::parse(&bag(bad.clone())),
                    Read::Unreadable(_)
                ),
                "{bad}"
            );
        }
        let state = on_beta();
        assert_eq!(
            Read::<UnitState>::parse(&databag(&state)),
            Read::Valid(state)
        );
        // Shape 1 as the previous revision wrote it, without the cohort fields.
        let older = bag(Value::from(
            r#"{"v":1,"tracking":"latest/edge","revision":"29","healthy":true,"failed":null}"#,
        ));
        assert_eq!(Read::<UnitState>::parse(&older), Read::Valid(on_edge()));
    }
}
