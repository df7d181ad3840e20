//! Everything about snapd: the channel grammar ([`channel`]), the REST client that reads
//! what is installed over snapd's socket ([`snapd`]), and the `snap` CLI runner that changes
//! it ([`cli`]).

pub(crate) mod channel;
pub(crate) mod cli;
pub(crate) mod snapd;

pub use channel::{Channel, ChannelError};
pub(crate) use cli::{SnapCli, SnapCliError, SnapCommand};
pub use snapd::{PortSetting, Snap, SnapdClient, SnapdError};

/// The snap this charm operates.
pub(crate) const SNAP_NAME: &str = "microsample";
