//! The fakes `fake-juju` plays (`src/bin/fake-juju.rs` dispatches on its name): the Juju
//! hook tools ([`hook_tools`], state in [`juju_state`]), the `snap` CLI ([`snap_cli`]), snapd
//! with its fake store ([`snapd`], [`store`]) and the microsample service it supervises
//! ([`workload`]). They reproduce the real texts, JSON and exit codes
//! (docs/juju.md, docs/snapd-api.md); `tests/fakes_contract.rs` pins them.

pub mod channel;
pub mod gnuflag;
pub mod hook_tools;
pub mod http;
pub mod juju_state;
pub mod output;
pub mod snap_cli;
pub mod snapd;
pub mod store;
pub mod workload;
