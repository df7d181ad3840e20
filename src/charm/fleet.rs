//! Rolling channel moves across the units of the application, coordinated through the
//! `fleet` peer relation (docs/juju.md#relation-data).
//!
//! The shared state lives in the relation, never in one process:
//! - each unit publishes what it observed this hook in its unit databag ([`UnitState`]);
//! - the leader keeps the move in the application databag ([`Move`]): the target channel,
//!   the cohort every unit refreshes in, whose turn it is, and where it halted.
//!
//! The rule that keeps at most one unit in transition: a unit refreshes to a new channel
//! only while the application databag gives it the turn, and the leader gives the turn to
//! the next unit only once the holder's committed unit data shows it done (tracking the
//! target, on the fleet's revision, answering). Juju commits a hook's relation writes only
//! when it exits 0, so whatever a unit reads has been true since.
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
/// The shape of the data this revision writes and reads.
pub(crate) const SHAPE: u64 = 1;

/// What a unit publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnitState {
    pub(crate) v: u64,
    /// snapd's tracking channel, fully qualified; `None` when not installed.
    pub(crate) tracking: Option<String>,
    pub(crate) revision: Option<String>,
    /// Answering `Online` on its port.
    pub(crate) healthy: bool,
    /// Why its turn failed (a refresh retrying cannot fix, or no answer after the grace).
    pub(crate) failed: Option<String>,
}

/// The move the leader coordinates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Move {
    pub(crate) v: u64,
    /// The channel every unit converges on, as the operator typed it.
    pub(crate) target: String,
    /// The channel the fleet moves from (fully qualified), when known.
    pub(crate) from: Option<String>,
    /// The snapd cohort key every unit installs and refreshes in.
    pub(crate) cohort: Option<String>,
    /// The unit that may refresh now.
    pub(crate) turn: Option<String>,
    /// Where and why the move stopped.
    pub(crate) halt: Option<Halt>,
    /// Units done, and all units, when the leader last looked (for the units' statuses).
    #[serde(default)]
    pub(crate) done: u64,
    #[serde(default)]
    pub(crate) units: u64,
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

impl<T: for<'de> Deserialize<'de>> Read<T> {
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
        if value.get("v").and_then(Value::as_u64) != Some(SHAPE) {
            return Read::Unreadable(format!(
                "shape {} (this revision reads {SHAPE})",
                value.get("v").map_or("none".into(), Value::to_string)
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
    /// The other units and what they published (read by the leader only).
    pub(crate) peers: BTreeMap<String, Read<UnitState>>,
    /// How many other units there are.
    pub(crate) peer_count: usize,
}

/// Whether this unit may refresh to the configured channel now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Gate {
    /// Yes (single unit, or its turn), in this cohort if any.
    Open { cohort: Option<String> },
    /// Not yet: keep serving, and say why.
    Wait(String),
    /// The move halted on this unit: no refresh until it is resumed or rolled back.
    Halted(String),
}

/// Units in the order they get their turn: by unit number, the leader last (it keeps
/// coordinating while the others move).
fn order(units: impl Iterator<Item = String>, leader: &str) -> Vec<String> {
    let number = |u: &String| {
        u.rsplit_once('/')
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .unwrap_or(u64::MAX)
    };
    let mut units: Vec<String> = units.collect();
    units.sort_by_key(|u| (u == leader, number(u), u.clone()));
    units.dedup();
    units
}

/// Whether `state` is done with a move to `target`.
pub(crate) fn done(state: &UnitState, target: &Channel, revision: Option<&str>) -> bool {
    state.healthy
        && state
            .tracking
            .as_deref()
            .is_some_and(|t| target.is_tracked_by(t))
        && revision.is_none_or(|r| state.revision.as_deref() == Some(r))
}

/// What every unit published, this unit's own observation included, judged against one
/// target.
struct Census<'a> {
    states: BTreeMap<String, Read<UnitState>>,
    target: &'a Channel,
    /// The fleet's revision: the one the first unit done on the target runs.
    revision: Option<String>,
}

impl<'a> Census<'a> {
    fn new(fleet: &Fleet, mine: &UnitState, target: &'a Channel) -> Census<'a> {
        let mut states = fleet.peers.clone();
        states.insert(fleet.me.clone(), Read::Valid(mine.clone()));
        let revision = states.values().find_map(|s| match s {
            Read::Valid(s) if done(s, target, None) => s.revision.clone(),
            _ => None,
        });
        Census {
            states,
            target,
            revision,
        }
    }

    fn is_done(&self, unit: &str) -> bool {
        match self.states.get(unit) {
            Some(Read::Valid(s)) => done(s, self.target, self.revision.as_deref()),
            _ => false,
        }
    }

    /// The units nothing valid is known of, for the status.
    fn unknown(&self) -> Vec<String> {
        self.states
            .iter()
            .filter_map(|(u, s)| match s {
                Read::Unreadable(seen) => Some(format!("{u} ({seen})")),
                Read::Missing => Some(format!("{u} (nothing published yet)")),
                Read::Valid(_) => None,
            })
            .collect()
    }
}

/// The move towards `target`: the one in the application databag, or a new one (from where
/// this unit is, in `new_cohort`).
fn current_move(
    fleet: &Fleet,
    target: &Channel,
    mine: &UnitState,
    new_cohort: Option<&str>,
) -> Move {
    let previous = match &fleet.app {
        Read::Valid(m) => Some(m.clone()),
        Read::Missing => None,
        Read::Unreadable(seen) => {
            log::warn!("replacing application data this revision cannot read: {seen}");
            None
        }
    };
    match previous {
        Some(m) if Channel::parse(&m.target).is_ok_and(|c| c.full() == target.full()) => m,
        _ => Move {
            v: SHAPE,
            target: target.as_str().to_string(),
            from: mine.tracking.clone(),
            cohort: new_cohort.map(str::to_string),
            turn: None,
            halt: None,
            done: 0,
            units: 0,
        },
    }
}

/// Ends the turn of a holder that is gone or done, halts on one that failed, and lifts a
/// halt whose unit became done (or left).
fn settle_turn(mv: &mut Move, census: &Census) {
    if let Some(holder) = mv.turn.clone() {
        match census.states.get(&holder) {
            None => {
                log::info!("{holder} left during the move to '{}'", mv.target);
                mv.turn = None;
            }
            Some(_) if census.is_done(&holder) => mv.turn = None,
            Some(Read::Valid(UnitState {
                failed: Some(cause),
                ..
            })) => {
                mv.halt = Some(Halt {
                    unit: holder.clone(),
                    cause: cause.clone(),
                })
            }
            Some(_) => {}
        }
    }
    if let Some(halt) = &mv.halt {
        if census.is_done(&halt.unit) || !census.states.contains_key(&halt.unit) {
            log::info!(
                "{} is done or gone: the move to '{}' resumes",
                halt.unit,
                mv.target
            );
            mv.halt = None;
            mv.turn = None;
        }
    }
}

/// The leader's view of the move after this hook's observation of itself (`mine`): the
/// move to keep in the application databag, and the application status.
pub(crate) fn coordinate(
    fleet: &Fleet,
    target: &Channel,
    mine: &UnitState,
    new_cohort: Option<&str>,
) -> (Move, Status) {
    let mut mv = current_move(fleet, target, mine, new_cohort);
    let census = Census::new(fleet, mine, target);
    settle_turn(&mut mv, &census);
    let units = order(census.states.keys().cloned(), &fleet.me);
    let (finished, total) = (
        units.iter().filter(|u| census.is_done(u)).count(),
        units.len(),
    );
    (mv.done, mv.units) = (finished as u64, total as u64);
    if mv.halt.is_none() && mv.turn.is_none() {
        // Units whose data cannot be read get no turn: nothing is known of them.
        mv.turn = units
            .iter()
            .find(|u| !census.is_done(u) && matches!(census.states.get(*u), Some(Read::Valid(_))))
            .cloned();
    }
    let status = match (&mv.halt, &mv.turn) {
        (Some(halt), _) => Status::blocked(format!(
            "Move to '{}' halted on {}: {}",
            mv.target, halt.unit, halt.cause
        )),
        (None, Some(turn)) => Status::maintenance(format!(
            "Moving to '{}': {finished} of {total} done, {turn} next",
            mv.target
        )),
        (None, None) if finished == total => Status::active(format!(
            "Moved to '{}': {finished} of {total} units",
            mv.target
        )),
        (None, None) => Status::waiting(format!(
            "Moving to '{}': {finished} of {total} done; waiting for {}",
            mv.target,
            census.unknown().join(", ")
        )),
    };
    (mv, status)
}

/// Whether this unit may refresh to `target` now, given the move it read.
pub(crate) fn gate(fleet: &Fleet, target: &Channel) -> Gate {
    let mv = match &fleet.app {
        Read::Valid(mv) if Channel::parse(&mv.target).is_ok_and(|c| c.full() == target.full()) => {
            mv
        }
        Read::Valid(_) | Read::Missing => {
            return Gate::Wait(format!(
                "waiting for the leader to start the move to '{target}'"
            ))
        }
        Read::Unreadable(seen) => {
            return Gate::Wait(format!("cannot read the leader's move ({seen})"))
        }
    };
    match (&mv.halt, &mv.turn) {
        (Some(halt), _) if halt.unit != fleet.me => {
            Gate::Wait(format!("move to '{target}' halted on {}", halt.unit))
        }
        (Some(halt), _) => Gate::Halted(format!(
            "Move to '{target}' halted here: {}; fix it, then run resume-move on the leader, or set the old channel back",
            halt.cause
        )),
        (None, Some(turn)) if *turn == fleet.me => Gate::Open {
            cohort: mv.cohort.clone(),
        },
        _ => Gate::Wait(format!(
            "moving to '{target}': {} of {} done",
            mv.done, mv.units
        )),
    }
}

/// The `resume-move` action on the leader: clears the halt and gives the halted unit its
/// turn again.
pub(crate) fn resume(mv: &Move) -> Result<Move, String> {
    let halt = mv
        .halt
        .as_ref()
        .ok_or_else(|| format!("the move to '{}' is not halted", mv.target))?;
    Ok(Move {
        turn: Some(halt.unit.clone()),
        halt: None,
        ..mv.clone()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(tracking: &str, revision: &str, healthy: bool) -> UnitState {
        UnitState {
            v: SHAPE,
            tracking: Some(tracking.into()),
            revision: Some(revision.into()),
            healthy,
            failed: None,
        }
    }

    fn fleet(app: Read<Move>, peers: &[(&str, Read<UnitState>)]) -> Fleet {
        Fleet {
            relation: "fleet:1".into(),
            me: "microsample/0".into(),
            leader: true,
            app,
            peers: peers
                .iter()
                .map(|(u, s)| (u.to_string(), s.clone()))
                .collect(),
            peer_count: peers.len(),
        }
    }

    fn beta() -> Channel {
        Channel::parse("beta").unwrap()
    }

    #[test]
    fn a_new_move_gives_the_first_turn_to_the_lowest_unit_not_the_leader() {
        let on_edge = unit("latest/edge", "29", true);
        let f = fleet(
            Read::Missing,
            &[
                ("microsample/2", Read::Valid(on_edge.clone())),
                ("microsample/1", Read::Valid(on_edge.clone())),
            ],
        );
        let (mv, status) = coordinate(&f, &beta(), &on_edge, Some("KEY"));
        assert_eq!(mv.turn.as_deref(), Some("microsample/1"));
        assert_eq!(mv.cohort.as_deref(), Some("KEY"));
        assert_eq!(mv.from.as_deref(), Some("latest/edge"));
        assert_eq!(
            status.message,
            "Moving to 'beta': 0 of 3 done, microsample/1 next"
        );
    }

    #[test]
    fn the_turn_passes_only_when_the_holder_is_done() {
        let on_edge = unit("latest/edge", "29", true);
        let mv = Move {
            v: SHAPE,
            target: "beta".into(),
            from: Some("latest/edge".into()),
            cohort: Some("KEY".into()),
            turn: Some("microsample/1".into()),
            halt: None,
            done: 0,
            units: 3,
        };
        // Refreshed but not answering yet: still its turn.
        let starting = unit("latest/beta", "27", false);
        let f = fleet(
            Read::Valid(mv.clone()),
            &[
                ("microsample/1", Read::Valid(starting)),
                ("microsample/2", Read::Valid(on_edge.clone())),
            ],
        );
        assert_eq!(
            coordinate(&f, &beta(), &on_edge, None).0.turn.as_deref(),
            Some("microsample/1")
        );
        let f = fleet(
            Read::Valid(mv.clone()),
            &[
                (
                    "microsample/1",
                    Read::Valid(unit("latest/beta", "27", true)),
                ),
                ("microsample/2", Read::Valid(on_edge.clone())),
            ],
        );
        let (next, status) = coordinate(&f, &beta(), &on_edge, None);
        assert_eq!(next.turn.as_deref(), Some("microsample/2"));
        assert_eq!(
            status.message,
            "Moving to 'beta': 1 of 3 done, microsample/2 next"
        );
        // The leader's own turn comes last, then the move ends.
        let all = fleet(
            Read::Valid(Move {
                turn: Some("microsample/0".into()),
                ..mv
            }),
            &[
                (
                    "microsample/1",
                    Read::Valid(unit("latest/beta", "27", true)),
                ),
                (
                    "microsample/2",
                    Read::Valid(unit("latest/beta", "27", true)),
                ),
            ],
        );
        let (end, status) = coordinate(&all, &beta(), &unit("latest/beta", "27", true), None);
        assert_eq!(end.turn, None);
        assert_eq!(status, Status::active("Moved to 'beta': 3 of 3 units"));
    }

    #[test]
    fn a_failed_holder_halts_and_a_healthy_one_resumes() {
        let on_edge = unit("latest/edge", "29", true);
        let mv = Move {
            v: SHAPE,
            target: "beta".into(),
            from: Some("latest/edge".into()),
            cohort: None,
            turn: Some("microsample/1".into()),
            halt: None,
            done: 0,
            units: 3,
        };
        let failed = UnitState {
            failed: Some("microsample not responding on port 8080".into()),
            ..unit("latest/beta", "27", false)
        };
        let f = fleet(
            Read::Valid(mv.clone()),
            &[
                ("microsample/1", Read::Valid(failed)),
                ("microsample/2", Read::Valid(on_edge.clone())),
            ],
        );
        let (halted, status) = coordinate(&f, &beta(), &on_edge, None);
        assert_eq!(halted.halt.as_ref().unwrap().unit, "microsample/1");
        assert_eq!(
            status,
            Status::blocked(
                "Move to 'beta' halted on microsample/1: microsample not responding on port 8080"
            )
        );
        // Other units wait.
        let mut other = f.clone();
        other.me = "microsample/2".into();
        other.app = Read::Valid(halted.clone());
        assert!(matches!(
            gate(&other, &beta()),
            Gate::Wait(why) if why.contains("halted on microsample/1")
        ));
        // The halted unit answers again: the move goes on by itself.
        let healed = fleet(
            Read::Valid(halted.clone()),
            &[
                (
                    "microsample/1",
                    Read::Valid(unit("latest/beta", "27", true)),
                ),
                ("microsample/2", Read::Valid(on_edge.clone())),
            ],
        );
        let (resumed, _) = coordinate(&healed, &beta(), &on_edge, None);
        assert_eq!(resumed.halt, None);
        assert_eq!(resumed.turn.as_deref(), Some("microsample/2"));
        // Or the operator resumes it.
        assert_eq!(
            resume(&halted).unwrap().turn.as_deref(),
            Some("microsample/1")
        );
        assert!(resume(&mv).is_err());
    }

    #[test]
    fn departed_and_unreadable_units() {
        let mv = Move {
            v: SHAPE,
            target: "beta".into(),
            from: None,
            cohort: None,
            turn: Some("microsample/1".into()),
            halt: None,
            done: 0,
            units: 3,
        };
        let f = fleet(
            Read::Valid(mv),
            &[(
                "microsample/2",
                Read::Unreadable("shape 2 (this revision reads 1)".into()),
            )],
        );
        let (next, status) = coordinate(&f, &beta(), &unit("latest/beta", "27", true), None);
        assert_eq!(next.turn, None, "no turn for a unit nothing is known of");
        assert_eq!(
            status.message,
            "Moving to 'beta': 1 of 2 done; waiting for microsample/2 (shape 2 (this revision reads 1))"
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
        let state = unit("latest/edge", "29", true);
        assert_eq!(
            Read::<UnitState>::parse(&databag(&state)),
            Read::Valid(state)
        );
    }

    #[test]
    fn a_unit_that_sees_no_peer_yet_still_waits_for_its_turn() {
        let mut new = fleet(
            Read::Valid(Move {
                v: SHAPE,
                target: "beta".into(),
                from: Some("latest/edge".into()),
                cohort: None,
                turn: Some("microsample/1".into()),
                halt: None,
                done: 1,
                units: 4,
            }),
            &[],
        );
        new.me = "microsample/4".into();
        new.leader = false;
        assert_eq!(
            gate(&new, &beta()),
            Gate::Wait("moving to 'beta': 1 of 4 done".into())
        );
    }
}
