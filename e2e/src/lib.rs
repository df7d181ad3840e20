//! End-to-end test kit of the microsample charm (`microsample-e2e`, never shipped):
//!
//! - [`fakes`]: the fake Juju hook tools, `snap` CLI, snapd + store and microsample
//!   workload, all played by the `fake-juju` multi-call binary of this package;
//! - [`harness`] (re-exported at the crate root): a simulated Juju unit ([`Unit`]) that runs
//!   the charm's `dispatch` the way the unit agent does, against those fakes (or the real
//!   snapd), and its helpers;
//! - [`juju_unit`]: the pieces of a unit the harness and the benchmark (`bench/`) share;
//! - [`charm_dir`]: a read-only or immutable charm directory, and snapshots of it;
//! - [`ports`]: something else holding the workload's port ([`PortHolder`]);
//! - [`fleet`]: a simulated fleet of units, each on its own machine, sharing one store and
//!   the `fleet` peer relation the way Juju runs them ([`fleet::Fleet`]).
//!
//! The end-to-end and fake-contract tests live in this package's `tests/`. The charm under
//! test is `$MICROSAMPLE_DISPATCH` (CI: the dispatch taken out of the packed `.charm`) or
//! the workspace's `dispatch`, built once per test process ([`dispatch_bin`]).

pub mod charm_dir;
pub mod fakes;
pub mod fleet;
pub mod harness;
pub mod juju_unit;
pub mod ports;

pub use charm_dir::{CharmDirMode, DirSnapshot, EntryState};
pub use fakes::{http, juju_state};
pub use harness::*;
pub use ports::PortHolder;
