//! Test support shared by the packer's unit tests (`src/lib.rs`, through `#[path]`) and its
//! end-to-end tests (`tests/cli.rs`).

/// A minimal static ELF64 x86-64 executable header with one PT_LOAD, followed by `payload`.
pub fn fake_elf(payload: &[u8]) -> Vec<u8> {
    let mut b = vec![0u8; 0x40 + 0x38];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2;
    b[5] = 1;
    b[0x10] = 2;
    b[0x12] = 62;
    b[0x20] = 0x40;
    b[0x36] = 0x38;
    b[0x38] = 1;
    b[0x40] = 1;
    b.extend_from_slice(payload);
    b
}
