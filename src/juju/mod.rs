//! The Juju side of the charm: which event this process was started for ([`event`]),
//! every hook-tool call behind one trait ([`tools`]), opened ports as Juju spells them
//! ([`ports`]), and the `log` backend that writes to `juju-log` ([`logger`]).

pub(crate) mod event;
pub(crate) mod logger;
pub(crate) mod ports;
pub(crate) mod tools;

pub(crate) use event::{Dispatch, Hook, RelationKind};
pub(crate) use ports::PortRange;
pub(crate) use tools::{HookTools, ProcessTools, Query, Status, ToolError, Write};
