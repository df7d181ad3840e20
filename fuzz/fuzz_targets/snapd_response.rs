//! Fuzz target: `decode` and `decode_snap` on any HTTP status (first two bytes, big-endian) and body (the rest).
//! Properties: fuzz/properties.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../properties.rs"]
mod properties;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = properties::snapd_response(data) {
        panic!("property violated: {violation}");
    }
});
