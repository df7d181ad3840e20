//! Just enough ELF parsing to prove `dispatch` is a static x86-64 executable: no `PT_INTERP`
//! (no dynamic loader) and no `DT_NEEDED` (no shared libraries). A static-pie binary (what
//! rustc makes with `+crt-static` on `x86_64-unknown-linux-gnu`) has a `PT_DYNAMIC` for its
//! self-relocation, but nothing in it is needed from outside.

const PT_DYNAMIC: u32 = 2;
const PT_INTERP: u32 = 3;
const SHT_SYMTAB: u32 = 2;
const DT_NULL: u64 = 0;
const DT_NEEDED: u64 = 1;
const EM_X86_64: u16 = 62;

/// What the check found about a static executable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaticElf {
    /// `ET_DYN` (static-pie) rather than `ET_EXEC`.
    pub pie: bool,
    /// A `.symtab` section is present (the binary was not stripped).
    pub has_symtab: bool,
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

fn usize_at(b: &[u8], off: usize) -> Option<usize> {
    usize::try_from(u64_at(b, off)?).ok()
}

/// Checks that `bytes` is a 64-bit little-endian x86-64 executable with no program
/// interpreter and no needed shared libraries.
pub fn check_static(bytes: &[u8]) -> Result<StaticElf, String> {
    let truncated = || "truncated ELF file".to_string();
    if bytes.get(..4) != Some(b"\x7fELF".as_slice()) {
        return Err("not an ELF file (bad magic)".into());
    }
    if bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let e_type = u16_at(bytes, 0x10).ok_or_else(truncated)?;
    let pie = match e_type {
        2 => false,
        3 => true,
        other => return Err(format!("not an executable (e_type {other})")),
    };
    let machine = u16_at(bytes, 0x12).ok_or_else(truncated)?;
    if machine != EM_X86_64 {
        return Err(format!("not an x86-64 binary (e_machine {machine})"));
    }
    let phoff = usize_at(bytes, 0x20).ok_or_else(truncated)?;
    let shoff = usize_at(bytes, 0x28).ok_or_else(truncated)?;
    let phentsize = usize::from(u16_at(bytes, 0x36).ok_or_else(truncated)?);
    let phnum = usize::from(u16_at(bytes, 0x38).ok_or_else(truncated)?);
    let shentsize = usize::from(u16_at(bytes, 0x3a).ok_or_else(truncated)?);
    let shnum = usize::from(u16_at(bytes, 0x3c).ok_or_else(truncated)?);
    if phnum == 0 || phentsize < 0x38 {
        return Err("no program headers".into());
    }
    for i in 0..phnum {
        let ph = phoff + i * phentsize;
        let p_type = u32_at(bytes, ph).ok_or_else(truncated)?;
        if p_type == PT_INTERP {
            let off = usize_at(bytes, ph + 0x08).ok_or_else(truncated)?;
            let len = usize_at(bytes, ph + 0x20).ok_or_else(truncated)?;
            let interp = bytes.get(off..off.saturating_add(len)).unwrap_or_default();
            let interp = String::from_utf8_lossy(interp);
            return Err(format!(
                "dynamically linked: it has a PT_INTERP program header ({})",
                interp.trim_end_matches('\0')
            ));
        }
        if p_type == PT_DYNAMIC {
            let off = usize_at(bytes, ph + 0x08).ok_or_else(truncated)?;
            let len = usize_at(bytes, ph + 0x20).ok_or_else(truncated)?;
            let dynamic = bytes
                .get(off..off.saturating_add(len))
                .ok_or_else(truncated)?;
            for entry in dynamic.chunks_exact(16) {
                match u64_at(entry, 0) {
                    Some(DT_NULL) => break,
                    Some(DT_NEEDED) => {
                        return Err("dynamically linked: it has DT_NEEDED shared libraries".into())
                    }
                    _ => {}
                }
            }
        }
    }
    // The section headers are optional for running, so a missing or odd table only means
    // "no .symtab found".
    let has_symtab = shentsize >= 0x40
        && (0..shnum).any(|i| u32_at(bytes, shoff + i * shentsize + 4) == Some(SHT_SYMTAB));
    Ok(StaticElf { pie, has_symtab })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header plus `phdrs` program headers of the given types.
    fn elf(e_type: u16, phdrs: &[(u32, &[u8])]) -> Vec<u8> {
        let mut b = vec![0u8; 0x40];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[0x10..0x12].copy_from_slice(&e_type.to_le_bytes());
        b[0x12..0x14].copy_from_slice(&EM_X86_64.to_le_bytes());
        b[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        b[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        b[0x38..0x3a].copy_from_slice(&(phdrs.len() as u16).to_le_bytes());
        let data_start = 0x40 + 0x38 * phdrs.len();
        let mut data = Vec::new();
        for (p_type, payload) in phdrs {
            let mut ph = vec![0u8; 0x38];
            ph[..4].copy_from_slice(&p_type.to_le_bytes());
            ph[0x08..0x10].copy_from_slice(&((data_start + data.len()) as u64).to_le_bytes());
            ph[0x20..0x28].copy_from_slice(&(payload.len() as u64).to_le_bytes());
            b.extend_from_slice(&ph);
            data.extend_from_slice(payload);
        }
        b.extend_from_slice(&data);
        b
    }

    fn dyn_entries(tags: &[u64]) -> Vec<u8> {
        tags.iter()
            .flat_map(|t| [t.to_le_bytes(), 0u64.to_le_bytes()].concat())
            .collect()
    }

    #[test]
    fn static_exec_and_static_pie_pass() {
        assert_eq!(
            check_static(&elf(2, &[(1, b"")])),
            Ok(StaticElf {
                pie: false,
                has_symtab: false
            })
        );
        let relocs = dyn_entries(&[7, 8, DT_NULL, DT_NEEDED]);
        assert!(
            check_static(&elf(3, &[(1, b""), (PT_DYNAMIC, &relocs)]))
                .unwrap()
                .pie
        );
    }

    #[test]
    fn interpreter_or_needed_libraries_fail() {
        let e =
            check_static(&elf(3, &[(PT_INTERP, b"/lib64/ld-linux-x86-64.so.2\0")])).unwrap_err();
        assert!(e.contains("PT_INTERP") && e.contains("ld-linux"), "{e}");
        let needed = dyn_entries(&[DT_NEEDED, DT_NULL]);
        assert!(check_static(&elf(3, &[(PT_DYNAMIC, &needed)]))
            .unwrap_err()
            .contains("DT_NEEDED"));
    }

    #[test]
    fn garbage_fails() {
        assert!(check_static(b"#!/bin/sh\n")
            .unwrap_err()
            .contains("not an ELF"));
        assert!(check_static(&elf(1, &[(1, b"")]))
            .unwrap_err()
            .contains("not an executable"));
        let mut b = elf(2, &[(1, b"")]);
        b.truncate(0x42);
        assert!(check_static(&b).is_err());
    }

    #[test]
    fn the_test_binary_itself_is_understood() {
        // Whatever this test binary is (static or not), parsing it must not panic.
        let me = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        let _ = check_static(&me);
    }
}
