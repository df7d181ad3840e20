//! `fake-juju`: one multi-call test binary playing the Juju hook tools, the `snap` CLI,
//! snapd and the microsample workload. Like jujuc it dispatches on `basename(argv[0])`,
//! so tests put symlinks named after each tool on `PATH`:
//!
//! - `status-set`, `config-get`, ... (see [`juju_state::HOOK_TOOLS`]): fake hook tools
//!   backed by `$FAKE_JUJU_DIR/state.json`;
//! - `snap`: fake snap CLI talking to the snapd API on `$SNAPD_SOCKET`;
//! - `fake-juju serve-snapd --socket <path> [--state <file>] [--exit-with-pid <pid>]`:
//!   the fake snapd (and the workload it supervises);
//! - `fake-juju <tool> [args...]`: run a tool without a symlink.
//!
//! Never shipped in the charm.

use std::path::Path;

use microsample_e2e::fakes::{hook_tools, juju_state, snap_cli, snapd};

/// Exit code of jujuc when it panics.
const PANIC_EXIT: i32 = 3;

fn dispatch(name: &str, args: &[String]) -> i32 {
    match name {
        "fake-juju" => match args.split_first() {
            Some((cmd, rest)) if cmd == "serve-snapd" => snapd::serve(rest),
            Some((cmd, rest)) if cmd != "fake-juju" => dispatch(cmd, rest),
            _ => {
                eprintln!(
                    "usage: fake-juju serve-snapd --socket <path> [--state <file>] | fake-juju <tool> [args...]\n\
                     tools: snap, {}",
                    juju_state::HOOK_TOOLS.join(", ")
                );
                2
            }
        },
        "snap" => snap_cli::main(args),
        tool if hook_tools::is_tool(tool) => hook_tools::main(tool, args),
        other => {
            eprintln!("fake-juju: unknown tool name {other:?}");
            127
        }
    }
}

fn main() {
    let argv: Vec<String> = std::env::args_os()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let name = argv
        .first()
        .map(|a| {
            Path::new(a)
                .file_name()
                .map(|f| f.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let args = argv.get(1..).unwrap_or(&[]).to_vec();
    std::panic::set_hook(Box::new(|info| {
        eprintln!("ERROR Unhandled panic: \n{info}");
    }));
    let code = std::panic::catch_unwind(|| dispatch(&name, &args)).unwrap_or(PANIC_EXIT);
    std::process::exit(code);
}
