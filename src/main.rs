//! The charm's `dispatch`: see the library docs.

use std::process::ExitCode;

fn main() -> ExitCode {
    ExitCode::from(microsample_charm::run(std::env::var_os(
        "JUJU_DISPATCH_PATH",
    )))
}
