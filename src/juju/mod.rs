//! The Juju side of the charm: which event this process was started for ([`event`]),
//! every hook-tool call behind one trait ([`tools`]), and the `log` backend that writes to
//! `juju-log` ([`logger`]).

pub mod event;
pub mod logger;
pub mod reported;
pub mod tools;

pub use event::{Dispatch, DispatchError, Hook};
pub use reported::Reported;
pub use tools::{HookTools, ProcessTools, Status, StatusKind, ToolError};
