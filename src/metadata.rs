//! Names, defaults and enums read from `charmcraft.yaml` by `build.rs`: the option names and
//! defaults, the charm's name, and `Action` and `Endpoint` with a variant per declared
//! action and relation endpoint.

include!(concat!(env!("OUT_DIR"), "/metadata.rs"));
