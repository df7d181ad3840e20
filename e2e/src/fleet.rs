//! A simulated fleet: the units of one `microsample` application, each on its own machine,
//! coordinating through the `fleet` peer relation the way the Juju unit agents and the
//! controller run them (docs/juju.md#relation-data, #relation-hooks, #leadership,
//! #hook-order), every hook a real run of the charm's `dispatch`.
//!
//! ```no_run
//! use microsample_e2e::fleet::Fleet;
//! use serde_json::json;
//!
//! let mut fleet = Fleet::deploy(4, 7);
//! fleet.run_until_quiescent();
//! fleet.config("channel", json!("beta"));
//! fleet.run_until_quiescent();
//! assert_eq!(fleet.app_status().1, "Moved to 'beta': 4 of 4 units");
//! ```
//!
//! # Machines
//!
//! Unit `microsample/<n>` is a [`Unit`] of the harness: its own temporary directory, fake
//! snapd, `snap` CLI, microsample workload, hook-tool state (`FAKE_JUJU_DIR`), `/var/lib`
//! (`MICROSAMPLE_STATE_ROOT`, with its agent directory) and `JUJU_UNIT_NAME`. The machines
//! are separate hosts, but here they share one network namespace: each machine gets its
//! own free port as the value of the `port` option (and as microsample's install port), the
//! stand-in for "the same port on every host". Nothing else differs between the units'
//! config.
//!
//! # One store
//!
//! Every machine's fake snapd is started with the same `--store <file>`: one channel map,
//! one set of cohorts, one store clock (see `fakes::store`, "One store for several
//! machines"). [`Fleet::publish`] releases a revision to a channel for every machine at
//! once, a revision may be broken ([`Fleet::publish_broken`]: its service runs and never
//! answers `Online`), and a cohort key the leader creates on its machine serves the other
//! machines the same revisions.
//!
//! # The model's relation data
//!
//! The fleet keeps what the controller keeps: the committed unit databag of every unit and
//! the committed application databag of the `fleet` relation, who leads, the model config
//! and the application status. Per unit it keeps what that unit's agent knows: whether it
//! ran `fleet-relation-created` (before, `relation-ids fleet` is empty), and its members:
//! the peers whose `fleet-relation-joined` began on it and whose `-departed` did not
//! (`relation-list`, as the uniter's relation state has them).
//!
//! Before a hook the fleet writes into that unit's fake hook-tool state what the hook may
//! see: `is-leader`, the config, and the committed databags (its own, the application's,
//! and its members'). The fake tools then behave as Juju's: `relation-set` changes only the
//! hook's copy, `relation-set --app` and `status-set --application` fail on a non-leader,
//! `relation-get` of the unit's own bag shows its own writes. After the hook:
//!
//! - exit 0: its writes are committed, as a delta against what it read (an unchanged write
//!   is no change); a committed change to a unit's bag queues `fleet-relation-changed` for
//!   that unit on every unit that has it as a member, a change to the application bag
//!   queues `fleet-relation-changed` (no remote unit) on every other unit. A hook that
//!   wrote the application bag of a unit that is no longer the leader at commit time fails
//!   (the controller checks the leadership token), all its writes discarded;
//! - any other exit: its writes are discarded and the hook is queued again at the head of
//!   the unit's queue (Juju retries a failed hook before anything else), at most
//!   [`MAX_ATTEMPTS`] times.
//!
//! Statuses are not transactional: each `status-set` is recorded as it happens (the unit's
//! history), and the application status is the last one a leader set.
//!
//! # Hooks, overlap and seeds
//!
//! Each unit has its own queue. `deploy` queues `install`, `fleet-relation-created`,
//! `leader-elected` (leader only), `config-changed`, `start`, then
//! `fleet-relation-joined` immediately followed by `fleet-relation-changed` for each peer.
//! A hook already queued and not yet started is not queued twice (Juju fires one
//! `-changed` for several changes of a settings version it has not seen; one
//! `config-changed` for several config changes). `leader-elected` for a unit that lost the
//! leadership meanwhile is skipped (`runhook.go` `Prepare`).
//!
//! The fleet runs in batches. A batch takes the head hook of a seeded random subset of the
//! units with work queued (1 to [`Fleet::max_batch`] of them), prepares all of them from
//! the same committed snapshot, runs them at the same time (one thread each; each touches
//! only its own machine), then commits their outcomes one by one in a seeded random order.
//! So hooks of different units overlap: each sees only what was committed before the batch
//! began, and a write committed by one is seen by the others' next hooks. The seed
//! (a `u64`, [`Rng`]: splitmix64) decides everything that is not decided by the charm:
//! batch sizes, which units, commit orders.
//!
//! # What the operator and Juju do
//!
//! [`Fleet::config`] (`config-changed` everywhere), [`Fleet::update_status`],
//! [`Fleet::set_leader`] (between hooks) and [`Fleet::set_leader_mid_batch`] (while a hook of
//! the old leader runs), [`Fleet::add_unit`] (a new machine, its deploy hooks, `-joined` and
//! `-changed` for it on the others), [`Fleet::remove_unit`] (its machine gone, `-departed` on
//! the units that had it as a member, a new leader if it led), [`Fleet::publish`] and
//! [`Fleet::publish_broken`] (the shared store), [`Fleet::run_action`] (e.g. `resume-move` on
//! the leader: prepared and committed like a hook, not retried).
//!
//! # The invariant
//!
//! While a channel move is on ([`Fleet::config`] of `channel` starts one: its target is the
//! new channel, fully qualified, and it remembers the channel the fleet was on), the fleet
//! checks at every batch (after the runs) and after every commit that at most one unit is
//! *in transition*: its snap tracks the target but does not answer `Online` on the fleet's
//! revision (the revision the move's cohort pins for the target, as the committed
//! application databag names it), or it ran `snap refresh`/`snap install` to the target in
//! the batch (its refresh started while others may have too). A violation panics, naming
//! the seed, the units' states and the last hooks.
//!
//! Set `FLEET_TRACE=1` to print every hook as it commits.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::fakes::channel;
use crate::fakes::http;
use crate::fakes::juju_state::{JujuState, Relation, StatusEntry};
use crate::fakes::snapd::FakeState;
use crate::fakes::store::{self, Release, SharedStore};
use crate::harness::{free_port, HookRun, Unit, UnitOptions};

/// The application.
pub const APP: &str = "microsample";
/// The peer endpoint.
pub const ENDPOINT: &str = "fleet";
/// The peer relation's id.
pub const RELATION_ID: &str = "fleet:1";
/// The key both fleet databags keep their JSON under (`src/charm/fleet.rs`).
pub const KEY: &str = "microsample";
/// How many times a failing hook is run before the fleet gives up on it.
pub const MAX_ATTEMPTS: u32 = 4;
/// Default bound on the hooks of one [`Fleet::run_until_quiescent`].
pub const DEFAULT_MAX_HOOKS: usize = 400;

/// A small seeded PRNG (splitmix64): the fleet's only source of randomness.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Fisher-Yates.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.below(i + 1));
        }
    }
}

/// A hook of the fleet's units.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hook {
    Install,
    RelationCreated,
    LeaderElected,
    ConfigChanged,
    Start,
    UpdateStatus,
    /// `fleet-relation-joined` for that peer.
    Joined(String),
    /// `fleet-relation-changed` for that peer's bag, or the application bag (`None`).
    Changed(Option<String>),
    /// `fleet-relation-departed` for that peer.
    Departed(String),
}

impl Hook {
    /// The hook's name (`JUJU_HOOK_NAME`).
    pub fn name(&self) -> &'static str {
        match self {
            Hook::Install => "install",
            Hook::RelationCreated => "fleet-relation-created",
            Hook::LeaderElected => "leader-elected",
            Hook::ConfigChanged => "config-changed",
            Hook::Start => "start",
            Hook::UpdateStatus => "update-status",
            Hook::Joined(_) => "fleet-relation-joined",
            Hook::Changed(_) => "fleet-relation-changed",
            Hook::Departed(_) => "fleet-relation-departed",
        }
    }

    /// The peer it is about, if any.
    pub fn remote(&self) -> Option<&str> {
        match self {
            Hook::Joined(u) | Hook::Departed(u) | Hook::Changed(Some(u)) => Some(u),
            _ => None,
        }
    }

    /// The relation hook environment (docs/juju.md#environment).
    fn env(&self) -> Vec<(String, String)> {
        let relation = |remote: &str| {
            vec![
                ("JUJU_RELATION".to_string(), ENDPOINT.to_string()),
                ("JUJU_RELATION_ID".to_string(), RELATION_ID.to_string()),
                ("JUJU_REMOTE_APP".to_string(), APP.to_string()),
                ("JUJU_REMOTE_UNIT".to_string(), remote.to_string()),
            ]
        };
        match self {
            Hook::RelationCreated => relation(""),
            Hook::Joined(u) | Hook::Changed(Some(u)) => relation(u),
            Hook::Changed(None) => relation(""),
            Hook::Departed(u) => {
                let mut env = relation(u);
                env.push(("JUJU_DEPARTING_UNIT".to_string(), u.clone()));
                env
            }
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hook::Changed(None) => write!(f, "{} (app)", self.name()),
            _ => match self.remote() {
                Some(u) => write!(f, "{} ({u})", self.name()),
                None => f.write_str(self.name()),
            },
        }
    }
}

/// One hook (or action) the fleet ran.
#[derive(Debug, Clone)]
pub struct TraceEntry {
    /// The batch it ran in (actions: the batch count when they ran).
    pub batch: usize,
    pub unit: String,
    /// `Hook`'s display, or `action <name>`.
    pub hook: String,
    /// Exit code (`None`: killed by a signal); `None` also for a skipped hook.
    pub exit: Option<i32>,
    /// Not run (`leader-elected` on a unit that is no longer the leader).
    pub skipped: bool,
    /// Its relation writes were committed (exit 0 and, for an application write, leader).
    pub committed: bool,
    /// Its unit bag / the application bag changed on commit.
    pub unit_bag_changed: bool,
    pub app_bag_changed: bool,
    /// Units a committed change queued `fleet-relation-changed` on.
    pub woke: Vec<String>,
    /// Its `snap` commands.
    pub snaps: Vec<String>,
    /// The unit's workload status after it.
    pub status: (String, String),
    pub duration: Duration,
    /// The hook's stderr, when it failed.
    pub stderr: String,
}

impl fmt::Display for TraceEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "#{:<3} {:<15} {:<45} exit={:<4} {}{}{} {:>6}ms  {} {:?}",
            self.batch,
            self.unit,
            self.hook,
            if self.skipped {
                "skip".to_string()
            } else {
                self.exit.map_or("sig".into(), |e| e.to_string())
            },
            if self.committed { "C" } else { "-" },
            if self.unit_bag_changed { "U" } else { "-" },
            if self.app_bag_changed { "A" } else { "-" },
            self.duration.as_millis(),
            self.status.0,
            self.status.1,
        )?;
        if !self.snaps.is_empty() {
            write!(f, " snaps={:?}", self.snaps)?;
        }
        if !self.woke.is_empty() {
            write!(f, " woke={:?}", self.woke)?;
        }
        Ok(())
    }
}

/// A status a unit or the application went through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusSeen {
    /// The unit that set it (for the application: the leader that set it).
    pub unit: String,
    /// The hook or action it was set in (`hooks/config-changed`), `""` for the agent's.
    pub context: String,
    pub status: String,
    pub message: String,
}

/// The move the invariant is checked against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveCheck {
    /// The configured channel, fully qualified.
    pub target: String,
    /// The channel the fleet was on when the move began (most units' tracking channel).
    pub from: Option<String>,
}

/// What one machine showed the invariant checker.
#[derive(Debug, Clone)]
struct Seen {
    tracking: Option<String>,
    revision: Option<String>,
    online: bool,
}

/// A hook queued on a unit, with the attempts already made.
#[derive(Debug, Clone)]
struct Queued {
    hook: Hook,
    attempts: u32,
}

/// A unit and its machine, and what its agent knows.
struct Member {
    unit: Unit,
    port: u16,
    queue: VecDeque<Queued>,
    /// Ran `fleet-relation-created`: the relation is visible to its hooks.
    created: bool,
    /// Its members of the relation (`relation-list`).
    view: BTreeSet<String>,
    /// Entries of its status history already recorded.
    history_seen: usize,
}

/// What a hook was prepared with: what it read.
#[derive(Debug, Clone, Default)]
struct Prepared {
    unit_bag: BTreeMap<String, String>,
    app_bag: BTreeMap<String, String>,
}

/// How many hooks a channel move cost ([`move_cost`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveCost {
    pub units: usize,
    /// Hooks run per unit from `juju config channel=...` to quiescence.
    pub per_unit: BTreeMap<String, usize>,
    pub total: usize,
    /// Wall time of the move.
    pub duration: Duration,
}

impl MoveCost {
    /// The most hooks one unit ran.
    pub fn max_per_unit(&self) -> usize {
        self.per_unit.values().copied().max().unwrap_or(0)
    }
}

/// The simulated fleet. See the module documentation.
pub struct Fleet {
    seed: u64,
    rng: Rng,
    /// Holds the shared store file.
    _dir: tempfile::TempDir,
    store: PathBuf,
    members: BTreeMap<String, Member>,
    next_unit: u32,
    // The controller's side.
    config: Map<String, Value>,
    leader: String,
    unit_bags: BTreeMap<String, BTreeMap<String, String>>,
    app_bag: BTreeMap<String, String>,
    app_status: (String, String),
    // Records.
    moving: Option<MoveCheck>,
    batches: usize,
    trace: Vec<TraceEntry>,
    unit_statuses: BTreeMap<String, Vec<StatusSeen>>,
    app_statuses: Vec<StatusSeen>,
    gave_up: Vec<TraceEntry>,
    max_in_transition: usize,
    /// A leadership change to make while the next batch runs.
    leader_mid_batch: Option<String>,
    /// Largest batch (overlapping hooks); 1 runs hooks one at a time.
    pub max_batch: usize,
    /// Check the invariant (default); a test that looks at something else after a
    /// known violation may turn it off.
    pub check_transitions: bool,
    print: bool,
}

fn unit_number(unit: &str) -> u32 {
    unit.rsplit_once('/')
        .and_then(|(_, n)| n.parse().ok())
        .unwrap_or(u32::MAX)
}

impl Fleet {
    /// A fleet of `units` machines (`microsample/0` the leader) with the charm's default
    /// config, nothing installed, one shared store with the fake store's default channels
    /// (`latest/edge` 34, `latest/beta` 33), and every unit's deploy hooks queued; `seed`
    /// drives the interleaving. Nothing runs until [`Fleet::run_until_quiescent`].
    pub fn deploy(units: usize, seed: u64) -> Fleet {
        let dir = tempfile::Builder::new()
            .prefix("msfleet-")
            .tempdir()
            .expect("cannot create the fleet's directory");
        let store = dir.path().join("store.json");
        let defaults = FakeState::default();
        store::update_shared(
            &store,
            || SharedStore {
                channels: defaults.channels.clone(),
                ..SharedStore::default()
            },
            |_| (),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let print = std::env::var_os("FLEET_TRACE").is_some_and(|v| !v.is_empty() && v != "0");
        let mut fleet = Fleet {
            seed,
            rng: Rng::new(seed),
            _dir: dir,
            store,
            members: BTreeMap::new(),
            next_unit: 0,
            config: Map::new(),
            leader: format!("{APP}/0"),
            unit_bags: BTreeMap::new(),
            app_bag: BTreeMap::new(),
            app_status: ("unknown".into(), String::new()),
            moving: None,
            batches: 0,
            trace: Vec::new(),
            unit_statuses: BTreeMap::new(),
            app_statuses: Vec::new(),
            gave_up: Vec::new(),
            max_in_transition: 0,
            leader_mid_batch: None,
            max_batch: 3,
            check_transitions: true,
            print,
        };
        let names: Vec<String> = (0..units).map(|_| fleet.new_machine()).collect();
        if let Some(first) = names.first() {
            let mut config = fleet.members[first].unit.juju_state().config;
            config.remove("port");
            fleet.config = config;
        }
        for name in &names {
            let peers: Vec<String> = names.iter().filter(|p| *p != name).cloned().collect();
            fleet.queue_deploy(name, &peers);
        }
        fleet
    }

    /// Starts a machine for the next unit number; returns the unit's name.
    fn new_machine(&mut self) -> String {
        let name = format!("{APP}/{}", self.next_unit);
        self.next_unit += 1;
        let port = free_port();
        let unit = Unit::with_options(UnitOptions {
            name: Some(&name),
            store: Some(&self.store),
            machine_of: None,
            install_port: Some(port),
        });
        self.members.insert(
            name.clone(),
            Member {
                unit,
                port,
                queue: VecDeque::new(),
                created: false,
                view: BTreeSet::new(),
                history_seen: 0,
            },
        );
        name
    }

    fn queue_deploy(&mut self, name: &str, peers: &[String]) {
        let mut hooks = vec![Hook::Install, Hook::RelationCreated];
        if self.leader == name {
            hooks.push(Hook::LeaderElected);
        }
        hooks.extend([Hook::ConfigChanged, Hook::Start]);
        for peer in peers {
            hooks.push(Hook::Joined(peer.clone()));
            hooks.push(Hook::Changed(Some(peer.clone())));
        }
        for hook in hooks {
            self.queue(name, hook);
        }
    }

    /// Queues `hook` on `unit` unless it is queued there already (not yet started).
    fn queue(&mut self, unit: &str, hook: Hook) -> bool {
        let Some(member) = self.members.get_mut(unit) else {
            return false;
        };
        if member.queue.iter().any(|q| q.hook == hook) {
            return false;
        }
        member.queue.push_back(Queued { hook, attempts: 0 });
        true
    }

    // -------------------------------------------------------------------------------
    // What the operator and Juju do

    /// `juju config microsample <key>=<value>`: `config-changed` on every unit. Setting
    /// `channel` to another channel starts the move the invariant is checked against.
    pub fn config(&mut self, key: &str, value: Value) {
        if key == "channel" {
            if let Some(target) = value.as_str().and_then(|c| channel::full(c).ok()) {
                let from = self.most_tracked();
                self.moving = Some(MoveCheck { target, from });
            }
        }
        self.config.insert(key.to_string(), value);
        let names: Vec<String> = self.members.keys().cloned().collect();
        for name in names {
            self.queue(&name, Hook::ConfigChanged);
        }
    }

    /// Queues `update-status` on every unit.
    pub fn update_status(&mut self) {
        let names: Vec<String> = self.members.keys().cloned().collect();
        for name in names {
            self.queue(&name, Hook::UpdateStatus);
        }
    }

    /// Makes `unit` the leader: `leader-elected` is queued on it.
    pub fn set_leader(&mut self, unit: &str) {
        assert!(self.members.contains_key(unit), "no unit {unit}");
        self.leader = unit.to_string();
        self.queue(unit, Hook::LeaderElected);
    }

    /// Moves the leadership to `unit` while a hook of the current leader runs (the next
    /// batch that has one; or, if the fleet goes quiet first, then): the batch was prepared
    /// with the old leader (its `is-leader` said true) and commits under the new one, so an
    /// application-bag write of the old leader's hook is refused at commit (the hook fails
    /// and is retried). `leader-elected` is queued on `unit`.
    pub fn set_leader_mid_batch(&mut self, unit: &str) {
        assert!(self.members.contains_key(unit), "no unit {unit}");
        self.leader_mid_batch = Some(unit.to_string());
    }

    /// `juju add-unit microsample`: a new machine with the next unit number, its deploy
    /// hooks, and `fleet-relation-joined`/`-changed` for it on every other unit. Returns its
    /// name.
    pub fn add_unit(&mut self) -> String {
        let name = self.new_machine();
        let peers: Vec<String> = self
            .members
            .keys()
            .filter(|u| **u != name)
            .cloned()
            .collect();
        self.queue_deploy(&name, &peers);
        for peer in &peers {
            self.queue(peer, Hook::Joined(name.clone()));
            self.queue(peer, Hook::Changed(Some(name.clone())));
        }
        name
    }

    /// `juju remove-unit <unit>` with its machine: the unit and its machine are gone;
    /// every unit that had it as a member gets `fleet-relation-departed`, hooks about it
    /// that had not started are dropped. Removing the leader elects the lowest unit left.
    pub fn remove_unit(&mut self, unit: &str) {
        let member = self
            .members
            .remove(unit)
            .unwrap_or_else(|| panic!("no unit {unit}"));
        drop(member);
        let names: Vec<String> = self.members.keys().cloned().collect();
        for name in &names {
            let member = self.members.get_mut(name).expect("member");
            member
                .queue
                .retain(|q| q.hook.remote() != Some(unit) || matches!(q.hook, Hook::Departed(_)));
            if member.view.contains(unit) {
                self.queue(name, Hook::Departed(unit.to_string()));
            }
        }
        if self.leader == unit {
            if let Some(next) = names.iter().min_by_key(|u| unit_number(u)) {
                self.set_leader(&next.clone());
            }
        }
    }

    /// Releases `revision` (`version`) to the fully qualified `channel` of the shared store.
    pub fn publish(&self, channel: &str, revision: u32, version: &str) {
        self.release(channel, Release::good(revision, version));
    }

    /// Releases a broken `revision` to `channel`: its service runs but never answers
    /// `Online` (HTTP 500 on every request).
    pub fn publish_broken(&self, channel: &str, revision: u32, version: &str) {
        self.release(
            channel,
            Release {
                fault: Some("http500".into()),
                ..Release::good(revision, version)
            },
        );
    }

    /// Releases `release` to the fully qualified `channel` of the shared store.
    pub fn release(&self, channel: &str, release: Release) {
        store::update_shared(&self.store, SharedStore::default, |s| {
            s.channels.insert(channel.to_string(), release);
        })
        .unwrap_or_else(|e| panic!("{e}"));
    }

    /// The shared store as it is now.
    pub fn store(&self) -> SharedStore {
        store::StoreLock::take(&self.store)
            .and_then(|l| l.load())
            .unwrap_or_else(|e| panic!("{e}"))
            .unwrap_or_default()
    }

    /// The shared store file (what every machine's snapd was started with).
    pub fn store_file(&self) -> &Path {
        &self.store
    }

    // -------------------------------------------------------------------------------
    // Running

    /// Runs batches until no hook is queued; panics after [`DEFAULT_MAX_HOOKS`] hooks.
    /// Returns the entries of this run.
    pub fn run_until_quiescent(&mut self) -> Vec<TraceEntry> {
        self.run_bounded(DEFAULT_MAX_HOOKS)
    }

    /// Runs batches until no hook is queued; panics after `max_hooks` hooks.
    pub fn run_bounded(&mut self, max_hooks: usize) -> Vec<TraceEntry> {
        let start = self.trace.len();
        while self.busy() {
            let ran = self.trace.len() - start;
            if ran >= max_hooks {
                self.fail(&format!(
                    "not quiescent after {ran} hooks; queues: {:?}",
                    self.queues()
                ));
            }
            self.batch();
        }
        self.trace[start..].to_vec()
    }

    /// Runs batches until `done` holds (checked before each batch) or nothing is queued;
    /// panics after `max_hooks` hooks. Returns whether `done` held.
    pub fn run_until(&mut self, max_hooks: usize, mut done: impl FnMut(&Fleet) -> bool) -> bool {
        let start = self.trace.len();
        loop {
            if done(self) {
                return true;
            }
            if !self.busy() {
                return false;
            }
            if self.trace.len() - start >= max_hooks {
                self.fail(&format!("condition not met after {max_hooks} hooks"));
            }
            self.batch();
        }
    }

    /// Whether any hook is queued (or a leadership change is pending: it is made now).
    pub fn busy(&mut self) -> bool {
        if !self.members.values().any(|m| !m.queue.is_empty()) {
            if let Some(leader) = self.leader_mid_batch.take() {
                self.set_leader(&leader);
            }
        }
        self.members.values().any(|m| !m.queue.is_empty())
    }

    /// The queued hooks, per unit.
    pub fn queues(&self) -> BTreeMap<String, Vec<String>> {
        self.members
            .iter()
            .map(|(u, m)| {
                (
                    u.clone(),
                    m.queue.iter().map(|q| q.hook.to_string()).collect(),
                )
            })
            .collect()
    }

    /// One batch: see the module documentation.
    fn batch(&mut self) {
        let mut ready: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !m.queue.is_empty())
            .map(|(u, _)| u.clone())
            .collect();
        if ready.is_empty() {
            return;
        }
        self.batches += 1;
        self.rng.shuffle(&mut ready);
        let size = 1 + self.rng.below(ready.len().min(self.max_batch.max(1)));
        ready.truncate(size);
        ready.sort_by_key(|u| unit_number(u));
        // Take the head hooks; skip what Juju would skip.
        let mut batch: Vec<(String, Queued, Prepared)> = Vec::new();
        for name in ready {
            let queued = self
                .members
                .get_mut(&name)
                .and_then(|m| m.queue.pop_front())
                .expect("a queued hook");
            if queued.hook == Hook::LeaderElected && self.leader != name {
                self.record(TraceEntry {
                    batch: self.batches,
                    unit: name.clone(),
                    hook: queued.hook.to_string(),
                    exit: None,
                    skipped: true,
                    committed: false,
                    unit_bag_changed: false,
                    app_bag_changed: false,
                    woke: Vec::new(),
                    snaps: Vec::new(),
                    status: self.members[&name].unit.status(),
                    duration: Duration::ZERO,
                    stderr: String::new(),
                });
                continue;
            }
            // What the agent learns as the hook starts.
            let member = self.members.get_mut(&name).expect("member");
            match &queued.hook {
                Hook::RelationCreated => member.created = true,
                Hook::Joined(peer) => {
                    member.view.insert(peer.clone());
                }
                Hook::Departed(peer) => {
                    member.view.remove(peer);
                }
                _ => {}
            }
            let prepared = self.prepare(&name);
            batch.push((name, queued, prepared));
        }
        if batch.iter().any(|(name, _, _)| *name == self.leader) {
            if let Some(leader) = self.leader_mid_batch.take() {
                self.set_leader(&leader);
            }
        }
        if batch.is_empty() {
            return;
        }
        // Run them at the same time.
        let runs: Vec<HookRun> = {
            let members = &self.members;
            std::thread::scope(|scope| {
                let handles: Vec<_> = batch
                    .iter()
                    .map(|(name, queued, _)| {
                        let unit = &members[name].unit;
                        let hook = queued.hook.clone();
                        scope.spawn(move || {
                            let env = hook.env();
                            let env: Vec<(&str, &str)> =
                                env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                            unit.run_hook_with_env(hook.name(), &env)
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| h.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
                    .collect()
            })
        };
        let started: BTreeSet<String> = batch
            .iter()
            .zip(&runs)
            .filter(|(_, run)| self.moved_to_target(run))
            .map(|((name, _, _), _)| name.clone())
            .collect();
        self.check(&started, "after the batch's hooks ran");
        // Commit in a seeded order.
        let mut outcomes: Vec<((String, Queued, Prepared), HookRun)> =
            batch.into_iter().zip(runs).collect();
        self.rng.shuffle(&mut outcomes);
        for ((name, queued, prepared), run) in outcomes {
            let label = queued.hook.to_string();
            self.commit(&name, Some(queued), &prepared, &run, &label);
            self.check(&started, &format!("after committing {name} {label}"));
        }
    }

    /// Whether a run refreshed or installed the snap to the move's target.
    fn moved_to_target(&self, run: &HookRun) -> bool {
        let Some(mv) = &self.moving else {
            return false;
        };
        run.calls_to("snap").iter().any(|c| {
            matches!(
                c.args.first().map(String::as_str),
                Some("refresh" | "install")
            ) && c.args.iter().any(|a| {
                a.strip_prefix("--channel=")
                    .and_then(|ch| channel::full(ch).ok())
                    .is_some_and(|ch| ch == mv.target)
            })
        })
    }

    /// Writes into `unit`'s hook-tool state what its next hook may see.
    fn prepare(&mut self, unit: &str) -> Prepared {
        let member = &self.members[unit];
        let own = self.unit_bags.get(unit).cloned().unwrap_or_default();
        let prepared = Prepared {
            unit_bag: own.clone(),
            app_bag: self.app_bag.clone(),
        };
        let mut config = self.config.clone();
        config.insert("port".into(), json!(member.port));
        let leader = self.leader == unit;
        let relation = member.created.then(|| Relation {
            id: RELATION_ID.to_string(),
            remote_app: APP.to_string(),
            unit_data: own,
            app_data: self.app_bag.clone(),
            remote_units: member
                .view
                .iter()
                .map(|p| {
                    (
                        p.clone(),
                        self.unit_bags.get(p).cloned().unwrap_or_default(),
                    )
                })
                .collect(),
            remote_app_data: self.app_bag.clone(),
            pending_unit_data: None,
            pending_app_data: None,
        });
        let app_status = self.app_status.clone();
        member.unit.update_juju_state(|s: &mut JujuState| {
            s.leader = leader;
            s.config = config;
            s.app_status.status = app_status.0;
            s.app_status.message = app_status.1;
            match relation {
                Some(r) => {
                    s.relations.insert(ENDPOINT.to_string(), vec![r]);
                }
                None => {
                    s.relations.remove(ENDPOINT);
                }
            }
        });
        prepared
    }

    /// Commits or discards one hook's outcome (`queued`: the hook, to queue again when it
    /// failed; `None` for an action); queues what a committed change wakes.
    fn commit(
        &mut self,
        unit: &str,
        queued: Option<Queued>,
        prepared: &Prepared,
        run: &HookRun,
        label: &str,
    ) {
        let state = self.members[unit].unit.juju_state();
        self.record_statuses(unit, &state);
        let (unit_bag, app_bag) = state
            .relations
            .get(ENDPOINT)
            .and_then(|rs| rs.first())
            .map(|r| (r.unit_data.clone(), r.app_data.clone()))
            .unwrap_or_else(|| (prepared.unit_bag.clone(), prepared.app_bag.clone()));
        let wrote_app = app_bag != prepared.app_bag;
        let mut exit = run.exit;
        let mut stderr = String::new();
        if run.success() && wrote_app && self.leader != unit {
            // The controller refuses the commit: the hook fails.
            exit = Some(1);
            stderr = "ERROR committing hook changes: not the leader".into();
        } else if !run.success() {
            stderr = run.stderr.clone();
        }
        let ok = exit == Some(0);
        let mut entry = TraceEntry {
            batch: self.batches,
            unit: unit.to_string(),
            hook: label.to_string(),
            exit,
            skipped: false,
            committed: ok,
            unit_bag_changed: false,
            app_bag_changed: false,
            woke: Vec::new(),
            snaps: crate::harness::snap_calls(run),
            status: (
                state.unit_status.status.clone(),
                state.unit_status.message.clone(),
            ),
            duration: run.duration,
            stderr,
        };
        if ok {
            let mut woke = BTreeSet::new();
            if unit_bag != prepared.unit_bag {
                let committed = self.unit_bags.entry(unit.to_string()).or_default();
                apply_delta(committed, &prepared.unit_bag, &unit_bag);
                entry.unit_bag_changed = true;
                let watchers: Vec<String> = self
                    .members
                    .iter()
                    .filter(|(u, m)| *u != unit && m.view.contains(unit))
                    .map(|(u, _)| u.clone())
                    .collect();
                for w in watchers {
                    if self.queue(&w, Hook::Changed(Some(unit.to_string()))) {
                        woke.insert(w);
                    }
                }
            }
            if wrote_app {
                let before = self.app_bag.clone();
                apply_delta(&mut self.app_bag, &prepared.app_bag, &app_bag);
                if self.app_bag != before {
                    entry.app_bag_changed = true;
                    let others: Vec<String> = self
                        .members
                        .iter()
                        .filter(|(u, m)| *u != unit && m.created)
                        .map(|(u, _)| u.clone())
                        .collect();
                    for w in others {
                        if self.queue(&w, Hook::Changed(None)) {
                            woke.insert(w);
                        }
                    }
                }
            }
            entry.woke = woke.into_iter().collect();
        } else if let Some(queued) = queued {
            if queued.attempts + 1 < MAX_ATTEMPTS {
                let member = self.members.get_mut(unit).expect("member");
                member.queue.push_front(Queued {
                    hook: queued.hook,
                    attempts: queued.attempts + 1,
                });
            } else {
                self.gave_up.push(entry.clone());
            }
        }
        self.record(entry);
    }

    /// Records the statuses set since the last look at `unit`'s history.
    fn record_statuses(&mut self, unit: &str, state: &JujuState) {
        let member = self.members.get_mut(unit).expect("member");
        let new: Vec<StatusEntry> = state.status_history[member.history_seen..].to_vec();
        member.history_seen = state.status_history.len();
        for e in new {
            let seen = StatusSeen {
                unit: unit.to_string(),
                context: e.context.clone(),
                status: e.status.clone(),
                message: e.message.clone(),
            };
            if e.application {
                self.app_status = (e.status, e.message);
                self.app_statuses.push(seen);
            } else {
                self.unit_statuses
                    .entry(unit.to_string())
                    .or_default()
                    .push(seen);
            }
        }
    }

    fn record(&mut self, entry: TraceEntry) {
        if self.print {
            eprintln!("[seed {}] {entry}", self.seed);
        }
        self.trace.push(entry);
    }

    /// Runs action `name` on `unit` (e.g. `resume-move` on the leader) with what the unit
    /// may see, and commits its relation writes like a hook's (an action's failure discards
    /// them; it is not retried).
    pub fn run_action(&mut self, unit: &str, name: &str, params: Value) -> HookRun {
        let prepared = self.prepare(unit);
        let run = self.members[unit].unit.run_action(name, params);
        let label = format!("action {name}");
        self.commit(unit, None, &prepared, &run, &label);
        run
    }

    // -------------------------------------------------------------------------------
    // The invariant

    /// The revision the move's cohort pins for the target, from the committed
    /// application databag and the shared store.
    pub fn fleet_revision(&self) -> Option<String> {
        let target = &self.moving.as_ref()?.target;
        let mv = self.app_data()?;
        let cohort = mv.get("cohort")?.as_str()?;
        let store = self.store();
        let pinned = store.cohorts.get(cohort)?;
        store::release_in(&pinned.channels, target).map(|(_, r)| r.revision.to_string())
    }

    fn look(&self, unit: &str) -> Seen {
        self.look_within(unit, Duration::from_secs(2))
    }

    /// What `unit`'s machine shows, the probe of `/` bounded by `probe`.
    fn look_within(&self, unit: &str, probe: Duration) -> Seen {
        let member = &self.members[unit];
        let snap = member.unit.snapd_state()["snap"].clone();
        let text = |k: &str| {
            snap[k]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let online = http::tcp_request(&format!("127.0.0.1:{}", member.port), "GET", "/", probe)
            .is_ok_and(|r| r.status == 200 && r.text().trim() == "Online");
        Seen {
            tracking: text("tracking_channel"),
            revision: text("revision"),
            online,
        }
    }

    /// The units in transition now (see the module documentation); `started`: units that
    /// refreshed or installed to the target in the current batch.
    pub fn in_transition(&self, started: &BTreeSet<String>) -> Vec<String> {
        self.in_transition_within(started, Duration::from_secs(2))
    }

    fn in_transition_within(&self, started: &BTreeSet<String>, probe: Duration) -> Vec<String> {
        let Some(mv) = &self.moving else {
            return Vec::new();
        };
        let revision = self.fleet_revision();
        self.members
            .keys()
            .filter(|u| {
                if started.contains(*u) {
                    return true;
                }
                let seen = self.look_within(u, probe);
                let on_target = seen.tracking.as_deref() == Some(mv.target.as_str());
                let settled = seen.online
                    && revision
                        .as_deref()
                        .is_none_or(|r| seen.revision.as_deref() == Some(r));
                on_target && !settled
            })
            .cloned()
            .collect()
    }

    fn check(&mut self, started: &BTreeSet<String>, when: &str) {
        if !self.check_transitions {
            return;
        }
        let mut moving = self.in_transition(started);
        if moving.len() > 1 {
            // Confirm with patient probes: a loaded machine may answer late.
            moving = self.in_transition_within(started, Duration::from_secs(10));
        }
        self.max_in_transition = self.max_in_transition.max(moving.len());
        if moving.len() > 1 {
            self.fail(&format!(
                "{} units in transition {when}: {moving:?} (refreshed in this batch: {started:?}, fleet revision {:?})",
                moving.len(),
                self.fleet_revision()
            ));
        }
    }

    /// Panics with `why`, the seed, every unit's state and the last hooks.
    pub fn fail(&self, why: &str) -> ! {
        let mut text = format!("fleet (seed {}): {why}\n", self.seed);
        text.push_str(&self.describe());
        panic!("{text}");
    }

    /// Every unit's snap, status and queue, the move, the databags and the last hooks.
    pub fn describe(&self) -> String {
        let mut text = String::new();
        text.push_str(&format!(
            "leader {}; move {:?}; app status {:?}\napp bag {:?}\n",
            self.leader, self.moving, self.app_status, self.app_bag
        ));
        for (name, member) in &self.members {
            let seen = self.look(name);
            text.push_str(&format!(
                "{name}: tracking {:?} rev {:?} online {}; status {:?}; view {:?}; queue {:?}\n  bag {:?}\n",
                seen.tracking,
                seen.revision,
                seen.online,
                member.unit.status(),
                member.view,
                member.queue.iter().map(|q| q.hook.to_string()).collect::<Vec<_>>(),
                self.unit_bags.get(name),
            ));
        }
        text.push_str("last hooks:\n");
        for e in self.trace.iter().rev().take(40).rev() {
            text.push_str(&format!("  {e}\n"));
        }
        text
    }

    // -------------------------------------------------------------------------------
    // What tests look at

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// The units, by unit number.
    pub fn units(&self) -> Vec<String> {
        let mut units: Vec<String> = self.members.keys().cloned().collect();
        units.sort_by_key(|u| unit_number(u));
        units
    }

    pub fn leader(&self) -> &str {
        &self.leader
    }

    /// A unit and its machine.
    pub fn unit(&self, unit: &str) -> &Unit {
        &self.members[unit].unit
    }

    /// A unit's `port` (its machine's stand-in for the configured port).
    pub fn port(&self, unit: &str) -> u16 {
        self.members[unit].port
    }

    /// A unit's workload status now.
    pub fn status(&self, unit: &str) -> (String, String) {
        self.members[unit].unit.status()
    }

    /// The application status (the last one a leader set).
    pub fn app_status(&self) -> (String, String) {
        self.app_status.clone()
    }

    /// Every workload status `unit` went through, oldest first (the charm's and the agent's).
    pub fn unit_statuses(&self, unit: &str) -> Vec<StatusSeen> {
        self.unit_statuses.get(unit).cloned().unwrap_or_default()
    }

    /// Every application status, oldest first.
    pub fn app_statuses(&self) -> &[StatusSeen] {
        &self.app_statuses
    }

    /// A unit's installed snap as its fake snapd has it (`snap` of `/fake/state`).
    pub fn snap(&self, unit: &str) -> Value {
        self.members[unit].unit.snapd_state()["snap"].clone()
    }

    /// Whether a unit answers `Online`.
    pub fn online(&self, unit: &str) -> bool {
        self.look(unit).online
    }

    /// The committed JSON of `unit`'s fleet databag.
    pub fn unit_data(&self, unit: &str) -> Option<Value> {
        parse_bag(self.unit_bags.get(unit)?)
    }

    /// The committed JSON of the application databag (the move).
    pub fn app_data(&self) -> Option<Value> {
        parse_bag(&self.app_bag)
    }

    /// Every hook run so far, in commit order.
    pub fn trace(&self) -> &[TraceEntry] {
        &self.trace
    }

    /// Hooks that failed [`MAX_ATTEMPTS`] times.
    pub fn gave_up(&self) -> &[TraceEntry] {
        &self.gave_up
    }

    /// The most units in transition seen at once.
    pub fn max_in_transition(&self) -> usize {
        self.max_in_transition
    }

    /// The move being checked.
    pub fn moving(&self) -> Option<&MoveCheck> {
        self.moving.as_ref()
    }

    /// Units whose snap tracks `channel` (fully qualified).
    pub fn tracking(&self, channel: &str) -> Vec<String> {
        self.units()
            .into_iter()
            .filter(|u| self.look(u).tracking.as_deref() == Some(channel))
            .collect()
    }

    /// The channel most units track (ties: the lowest).
    fn most_tracked(&self) -> Option<String> {
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        for u in self.members.keys() {
            if let Some(t) = self.look(u).tracking {
                *counts.entry(t).or_default() += 1;
            }
        }
        counts
            .into_iter()
            .max_by_key(|(c, n)| (*n, std::cmp::Reverse(c.clone())))
            .map(|(c, _)| c)
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        if std::thread::panicking() && !self.print {
            eprintln!(
                "fleet (seed {}) at the panic:\n{}",
                self.seed,
                self.trace
                    .iter()
                    .rev()
                    .take(60)
                    .rev()
                    .map(|e| format!("  {e}\n"))
                    .collect::<String>()
            );
        }
    }
}

/// Applies to `committed` what the hook changed between what it read and what it wrote.
fn apply_delta(
    committed: &mut BTreeMap<String, String>,
    read: &BTreeMap<String, String>,
    written: &BTreeMap<String, String>,
) {
    for (k, v) in written {
        if read.get(k) != Some(v) {
            committed.insert(k.clone(), v.clone());
        }
    }
    for k in read.keys() {
        if !written.contains_key(k) {
            committed.remove(k);
        }
    }
}

fn parse_bag(bag: &BTreeMap<String, String>) -> Option<Value> {
    serde_json::from_str(bag.get(KEY)?).ok()
}

/// The coordination cost of one channel move: a fleet of `units` is deployed (edge) and
/// settled, then `juju config channel=beta` runs to quiescence; returns the hooks run per
/// unit and in total from the config change on. A single unit's move is one hook
/// (`config-changed`). For the benchmark.
pub fn move_cost(units: usize, seed: u64) -> MoveCost {
    let mut fleet = Fleet::deploy(units, seed);
    fleet.run_until_quiescent();
    let start = Instant::now();
    fleet.config("channel", json!("beta"));
    let entries = fleet.run_until_quiescent();
    let mut per_unit: BTreeMap<String, usize> = fleet.units().into_iter().map(|u| (u, 0)).collect();
    for e in entries.iter().filter(|e| !e.skipped) {
        *per_unit.entry(e.unit.clone()).or_default() += 1;
    }
    let total = per_unit.values().sum();
    let target = "latest/beta";
    assert_eq!(
        fleet.tracking(target).len(),
        units,
        "seed {seed}: not every unit moved:\n{}",
        fleet.describe()
    );
    MoveCost {
        units,
        per_unit,
        total,
        duration: start.elapsed(),
    }
}
