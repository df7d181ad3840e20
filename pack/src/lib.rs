//! The library behind `cargo pack`: validates `charmcraft.yaml`, generates the YAML files Juju
//! reads, checks that `dispatch` is a static ELF, and writes a reproducible `.charm` zip.
//!
//! The binary (`src/main.rs`) adds the release build, the budgets and the printing.

pub mod elf;
pub mod project;

use std::fs;
use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

pub use project::Project;

/// Budget for the stripped static `dispatch` binary, in bytes.
pub const DISPATCH_BUDGET: u64 = 2_500_000;
/// Budget for the packed `.charm`, in bytes.
pub const CHARM_BUDGET: u64 = 1_500_000;
/// The timestamp of every zip entry unless `SOURCE_DATE_EPOCH` says otherwise:
/// 1980-01-01T00:00:00Z, the earliest time a zip can hold.
pub const DEFAULT_EPOCH: i64 = 315_532_800;

/// Files copied from the repository root into the charm.
pub const DOC_FILES: [&str; 2] = ["README.md", "LICENSE"];

const MODE_EXEC: u32 = 0o755;
const MODE_FILE: u32 = 0o644;

/// One file of the charm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub name: String,
    pub mode: u32,
    pub data: Vec<u8>,
}

/// What a written zip holds, read back from its central directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub name: String,
    pub mode: Option<u32>,
    pub size: u64,
    pub compressed: u64,
}

/// A UTC calendar time, used for the zip entries and `manifest.yaml`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub year: u16,
    pub month: u8,
    pub day: u8,
    pub hour: u8,
    pub minute: u8,
    pub second: u8,
}

impl Timestamp {
    /// From seconds since the Unix epoch, clamped to the range a zip can hold (1980–2107).
    pub fn from_epoch(secs: i64) -> Timestamp {
        // 2107-12-31T23:59:58Z
        let secs = secs.clamp(DEFAULT_EPOCH, 4_354_819_198);
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        // Howard Hinnant's civil_from_days.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = doy - (153 * mp + 2) / 5 + 1;
        let month = if mp < 10 { mp + 3 } else { mp - 9 };
        let year = yoe + era * 400 + i64::from(month <= 2);
        // Every field is in range by construction; a zip stores even seconds only.
        Timestamp {
            year: year as u16,
            month: month as u8,
            day: day as u8,
            hour: (rem / 3600) as u8,
            minute: (rem % 3600 / 60) as u8,
            second: (rem % 60 / 2 * 2) as u8,
        }
    }

    /// `SOURCE_DATE_EPOCH` when set (reproducible-builds.org), else [`DEFAULT_EPOCH`].
    pub fn from_env() -> Result<Timestamp, String> {
        match std::env::var("SOURCE_DATE_EPOCH") {
            Ok(v) if !v.trim().is_empty() => v
                .trim()
                .parse::<i64>()
                .map(Timestamp::from_epoch)
                .map_err(|_| format!("SOURCE_DATE_EPOCH={v:?} is not an integer")),
            _ => Ok(Timestamp::from_epoch(DEFAULT_EPOCH)),
        }
    }

    /// RFC 3339, e.g. `1980-01-01T00:00:00Z`.
    pub fn rfc3339(&self) -> String {
        format!(
            "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
            self.year, self.month, self.day, self.hour, self.minute, self.second
        )
    }

    fn zip_datetime(&self) -> DateTime {
        DateTime::from_date_and_time(
            self.year,
            self.month,
            self.day,
            self.hour,
            self.minute,
            self.second,
        )
        .expect("Timestamp::from_epoch clamps to the zip range")
    }
}

/// The charm's files, sorted by name: the generated YAML files, `dispatch` (0755), and
/// README.md and LICENSE from `root` (0644).
pub fn charm_entries(
    project: &Project,
    root: &Path,
    dispatch: Vec<u8>,
    time: &Timestamp,
) -> Result<Vec<Entry>, String> {
    let file = |name: &str, text: String| Entry {
        name: name.to_string(),
        mode: MODE_FILE,
        data: text.into_bytes(),
    };
    let mut entries = vec![
        Entry {
            name: "dispatch".into(),
            mode: MODE_EXEC,
            data: dispatch,
        },
        file("metadata.yaml", project.metadata_yaml()),
        file("manifest.yaml", project.manifest_yaml(&time.rfc3339())),
    ];
    if let Some(config) = project.config_yaml() {
        entries.push(file("config.yaml", config));
    }
    if let Some(actions) = project.actions_yaml() {
        entries.push(file("actions.yaml", actions));
    }
    for name in DOC_FILES {
        let path = root.join(name);
        let data =
            fs::read(&path).map_err(|e| format!("{}: {e} (the charm ships it)", path.display()))?;
        entries.push(Entry {
            name: name.into(),
            mode: MODE_FILE,
            data,
        });
    }
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(entries)
}

/// Writes `entries` (in the given order) as a deflated zip with Unix modes and one fixed
/// timestamp. The same entries always give the same bytes.
pub fn write_zip(entries: &[Entry], time: &Timestamp) -> Result<Vec<u8>, String> {
    let mut zip = ZipWriter::new(Cursor::new(Vec::new()));
    for entry in entries {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .compression_level(Some(9))
            .last_modified_time(time.zip_datetime())
            .unix_permissions(entry.mode);
        zip.start_file(entry.name.as_str(), options)
            .and_then(|()| zip.write_all(&entry.data).map_err(Into::into))
            .map_err(|e| format!("zip entry {}: {e}", entry.name))?;
    }
    let cursor = zip
        .finish()
        .map_err(|e| format!("finishing the zip: {e}"))?;
    Ok(cursor.into_inner())
}

/// Reads a zip's entries back (name, Unix mode, sizes), checking it is readable.
pub fn list_zip(bytes: &[u8]) -> Result<Vec<EntryInfo>, String> {
    let mut archive =
        ZipArchive::new(Cursor::new(bytes)).map_err(|e| format!("reading the zip: {e}"))?;
    (0..archive.len())
        .map(|i| {
            let file = archive
                .by_index(i)
                .map_err(|e| format!("zip entry {i}: {e}"))?;
            Ok(EntryInfo {
                name: file
                    .name()
                    .map_err(|e| format!("zip entry {i}: {e}"))?
                    .into_owned(),
                mode: file.unix_mode(),
                size: file.size(),
                compressed: file.compressed_size(),
            })
        })
        .collect()
}

/// Writes `bytes` to `path` through a temporary file in the same directory and a rename, so
/// `path` is either the old file or the complete new one, never a partial write.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| format!("{}: not a file path", path.display()))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut f = fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    result.map_err(|e| {
        let _ = fs::remove_file(&tmp);
        format!("writing {}: {e}", path.display())
    })
}

/// Everything `cargo pack` does after it has a dispatch binary: validate `charmcraft.yaml`
/// in `root`, check `dispatch` is a static ELF, and build the zip (in memory).
pub fn pack_bytes(root: &Path, dispatch: Vec<u8>, time: &Timestamp) -> Result<Vec<u8>, String> {
    let project = load_project(root)?;
    elf::check_static(&dispatch).map_err(|e| format!("dispatch: {e}"))?;
    let entries = charm_entries(&project, root, dispatch, time)?;
    write_zip(&entries, time)
}

/// Reads and validates `root/charmcraft.yaml`.
pub fn load_project(root: &Path) -> Result<Project, String> {
    let path = root.join("charmcraft.yaml");
    let text = fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    Project::parse(&text).map_err(|e| e.to_string())
}

#[cfg(test)]
#[path = "../tests/support/mod.rs"]
mod test_support;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::fake_elf;

    /// A minimal static-looking ELF64 x86-64 executable with 4 KiB of code.
    fn fake_dispatch() -> Vec<u8> {
        fake_elf(&[0x90; 4096])
    }

    const CHARMCRAFT_YAML: &str = "\
name: microsample
type: charm
summary: s
description: d
platforms:
  ubuntu@24.04:amd64:
config:
  options:
    port: {type: int, default: 8080}
actions:
  restart: {description: Restart it.}
";

    fn repo() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("charmcraft.yaml"), CHARMCRAFT_YAML).unwrap();
        fs::write(dir.path().join("README.md"), "# microsample\n").unwrap();
        fs::write(dir.path().join("LICENSE"), "Apache-2.0\n").unwrap();
        dir
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            Timestamp::from_epoch(DEFAULT_EPOCH).rfc3339(),
            "1980-01-01T00:00:00Z"
        );
        assert_eq!(Timestamp::from_epoch(0).rfc3339(), "1980-01-01T00:00:00Z");
        assert_eq!(
            Timestamp::from_epoch(1_709_251_199).rfc3339(),
            "2024-02-29T23:59:58Z"
        );
        assert_eq!(
            Timestamp::from_epoch(i64::MAX).rfc3339(),
            "2107-12-31T23:59:58Z"
        );
    }

    #[test]
    fn packing_twice_gives_identical_bytes() {
        let dir = repo();
        let time = Timestamp::from_epoch(DEFAULT_EPOCH);
        let a = pack_bytes(dir.path(), fake_dispatch(), &time).unwrap();
        let b = pack_bytes(dir.path(), fake_dispatch(), &time).unwrap();
        assert_eq!(a, b);
        // Through the file system too.
        let out = dir.path().join("x.charm");
        write_atomic(&out, &a).unwrap();
        write_atomic(&out, &b).unwrap();
        assert_eq!(fs::read(&out).unwrap(), a);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }

    #[test]
    fn the_charm_has_the_right_entries_and_modes() {
        let dir = repo();
        let time = Timestamp::from_epoch(DEFAULT_EPOCH);
        let bytes = pack_bytes(dir.path(), fake_dispatch(), &time).unwrap();
        let listed: Vec<(String, Option<u32>)> = list_zip(&bytes)
            .unwrap()
            .into_iter()
            .map(|e| (e.name, e.mode))
            .collect();
        let file = Some(0o100644);
        assert_eq!(
            listed,
            vec![
                ("LICENSE".into(), file),
                ("README.md".into(), file),
                ("actions.yaml".into(), file),
                ("config.yaml".into(), file),
                ("dispatch".into(), Some(0o100755)),
                ("manifest.yaml".into(), file),
                ("metadata.yaml".into(), file),
            ]
        );
        let mut archive = ZipArchive::new(Cursor::new(&bytes)).unwrap();
        let mut dispatch = Vec::new();
        std::io::copy(&mut archive.by_name("dispatch").unwrap(), &mut dispatch).unwrap();
        assert_eq!(dispatch, fake_dispatch());
    }

    #[test]
    fn bad_inputs_give_no_charm() {
        let dir = repo();
        let time = Timestamp::from_epoch(DEFAULT_EPOCH);
        let e = pack_bytes(dir.path(), b"#!/bin/sh\n".to_vec(), &time).unwrap_err();
        assert!(e.starts_with("dispatch: not an ELF"), "{e}");
        fs::remove_file(dir.path().join("README.md")).unwrap();
        let e = pack_bytes(dir.path(), fake_dispatch(), &time).unwrap_err();
        assert!(e.contains("README.md"), "{e}");
        fs::write(dir.path().join("charmcraft.yaml"), "name: x\n").unwrap();
        let e = pack_bytes(dir.path(), fake_dispatch(), &time).unwrap_err();
        assert_eq!(e, "charmcraft.yaml: missing required key \"type\"");
    }

    #[test]
    fn atomic_write_failure_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("missing-dir").join("x.charm");
        assert!(write_atomic(&out, b"data").is_err());
        assert!(!out.exists());
    }
}
