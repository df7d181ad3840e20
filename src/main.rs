//! The charm's `dispatch`: see the library docs.
//!
//! `main` is the C entry point, so std's start-up is skipped: it costs every hook about
//! 0.1 ms, and `main_without_std_runtime` does what of it a hook needs.
// The test harness brings its own `main` to the unit tests of this target (there are none).
#![cfg_attr(not(test), no_main)]

/// Called by the C runtime with the process's arguments, which the charm does not read
/// (Juju passes the event in `JUJU_DISPATCH_PATH`, docs/juju.md#dispatch).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    libc::c_int::from(microsample_charm::main_without_std_runtime())
}
