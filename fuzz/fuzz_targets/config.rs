//! Fuzz target: `Config::from_settings` on any JSON object, and `text::bounded` on its strings.
//! Properties: fuzz/properties.rs.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../properties.rs"]
mod properties;

fuzz_target!(|data: &[u8]| {
    if let Err(violation) = properties::config(data) {
        panic!("property violated: {violation}");
    }
});
