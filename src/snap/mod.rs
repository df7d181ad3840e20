//! Everything about snapd: the channel grammar ([`channel`]), the REST client that reads
//! what is installed over snapd's socket ([`snapd`]), and the `snap` CLI runner that changes
//! it ([`cli`]).

pub mod channel;
pub mod cli;
pub mod snapd;

pub use channel::{Channel, ChannelError};
pub use cli::{SnapCli, SnapCliError};
pub use snapd::{Snap, SnapdClient, SnapdError};

/// The snap this charm operates.
pub const SNAP_NAME: &str = "microsample";
