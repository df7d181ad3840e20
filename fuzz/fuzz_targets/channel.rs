//! Fuzz target: `Channel::parse`, `full` and `is_tracked_by` on any UTF-8 text.
//! Properties: fuzz/properties.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../properties.rs"]
mod properties;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = properties::channel(data) {
        panic!("property violated: {violation}");
    }
});
