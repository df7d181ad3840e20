//! The charm directory as hooks find it on real machines: writable (the default), read-only
//! or immutable, and a snapshot of its contents so a test can assert that a hook wrote
//! nothing there.
//!
//! - [`CharmDirMode::ReadOnly`]: each `dispatch` run starts in its own mount namespace
//!   (`unshare -m`, private propagation) where the charm directory is a read-only bind mount
//!   of itself, and its working directory is re-entered on that mount: every write below the
//!   charm directory fails with `EROFS` (`Read-only file system`), while the test and every
//!   other process keep a writable directory. Needs `CAP_SYS_ADMIN` (root here).
//! - [`CharmDirMode::ImmutableDir`]: `chattr +i` on the charm directory itself while the
//!   hook runs: no entry can be created, removed or renamed (`EPERM`, `Operation not
//!   permitted`), but existing files can still be rewritten in place.
//! - [`CharmDirMode::Immutable`]: `chattr +i` on the charm directory and on every file and
//!   directory below it (symlinks cannot carry the flag): nothing can be created, removed,
//!   renamed or rewritten.
//!
//! The immutable flag is set just before `dispatch` starts and removed when it has ended,
//! by a guard whose `Drop` also runs when the harness panics (a hook past its deadline);
//! [`crate::Unit`]'s own `Drop` clears it once more before the unit's directory is removed.
//! A test process killed while a hook runs leaves an immutable directory behind in the
//! temp dir (`chattr -R -i` it by hand).

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// How the charm directory looks to `dispatch` (see the module documentation).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CharmDirMode {
    /// Writable, as Juju leaves it.
    #[default]
    Writable,
    /// A read-only bind mount in the hook's own mount namespace (`EROFS`).
    ReadOnly,
    /// `chattr +i` on the directory only (`EPERM` on create/remove/rename).
    ImmutableDir,
    /// `chattr +i` on the directory and everything in it but symlinks (`EPERM` on any
    /// write).
    Immutable,
}

/// One entry of a [`DirSnapshot`].
#[derive(Clone, PartialEq, Eq)]
pub enum EntryState {
    /// A regular file: permission bits and contents.
    File { mode: u32, contents: Vec<u8> },
    /// A directory: permission bits.
    Dir { mode: u32 },
    /// A symbolic link: its target (not followed).
    Symlink { target: PathBuf },
    /// A socket, FIFO or device.
    Other,
}

impl std::fmt::Debug for EntryState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntryState::File { mode, contents } => write!(
                f,
                "file {mode:o}, {} bytes: {:?}",
                contents.len(),
                String::from_utf8_lossy(&contents[..contents.len().min(200)])
            ),
            EntryState::Dir { mode } => write!(f, "dir {mode:o}"),
            EntryState::Symlink { target } => write!(f, "symlink -> {}", target.display()),
            EntryState::Other => write!(f, "special file"),
        }
    }
}

/// Every entry below a directory (paths relative to it), with what a write could change:
/// file contents and permission bits, directories, symlink targets. Timestamps are left out
/// (reading a file changes its atime).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DirSnapshot {
    pub entries: BTreeMap<PathBuf, EntryState>,
}

impl DirSnapshot {
    /// Reads `dir` recursively (symlinks are recorded, not followed). Panics when it
    /// cannot.
    pub fn of(dir: &Path) -> DirSnapshot {
        let mut snapshot = DirSnapshot::default();
        walk(dir, Path::new(""), &mut snapshot.entries);
        snapshot
    }

    /// What changed from `self` to `later`, one line per entry (`added .x: file 644, 3
    /// bytes: "abc"`, `removed ...`, `changed ...: <before> => <after>`); empty when
    /// nothing did.
    pub fn diff(&self, later: &DirSnapshot) -> Vec<String> {
        let mut out = Vec::new();
        for (path, before) in &self.entries {
            match later.entries.get(path) {
                None => out.push(format!("removed {}: {before:?}", path.display())),
                Some(after) if after != before => {
                    let mut line = format!("changed {}: {before:?} => {after:?}", path.display());
                    if let (
                        EntryState::File { contents: a, .. },
                        EntryState::File { contents: b, .. },
                    ) = (before, after)
                    {
                        let at = a.iter().zip(b).take_while(|(x, y)| x == y).count();
                        line.push_str(&format!(
                            " (first difference at byte {at}: {:?})",
                            String::from_utf8_lossy(&b[at..b.len().min(at + 80)])
                        ));
                    }
                    out.push(line);
                }
                Some(_) => {}
            }
        }
        for (path, after) in &later.entries {
            if !self.entries.contains_key(path) {
                out.push(format!("added {}: {after:?}", path.display()));
            }
        }
        out
    }
}

fn walk(root: &Path, rel: &Path, out: &mut BTreeMap<PathBuf, EntryState>) {
    let dir = root.join(rel);
    let entries =
        fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
    for entry in entries {
        let entry = entry.unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display()));
        let rel_path = rel.join(entry.file_name());
        let path = root.join(&rel_path);
        let meta = fs::symlink_metadata(&path)
            .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()));
        let mode = meta.permissions().mode() & 0o7777;
        let state = if meta.file_type().is_symlink() {
            EntryState::Symlink {
                target: fs::read_link(&path)
                    .unwrap_or_else(|e| panic!("cannot read link {}: {e}", path.display())),
            }
        } else if meta.is_dir() {
            walk(root, &rel_path, out);
            EntryState::Dir { mode }
        } else if meta.is_file() {
            EntryState::File {
                mode,
                contents: fs::read(&path)
                    .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display())),
            }
        } else {
            EntryState::Other
        };
        out.insert(rel_path, state);
    }
}

/// Finds a system program (`mount`, `chattr`, `unshare`) in the usual directories.
pub(crate) fn system_tool(name: &str) -> PathBuf {
    ["/usr/bin", "/bin", "/usr/sbin", "/sbin"]
        .iter()
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| panic!("{name} not found in /usr/bin, /bin, /usr/sbin or /sbin"))
}

/// The shell script `unshare -m` runs for [`CharmDirMode::ReadOnly`]: `$1` the charm
/// directory, `$2` the program. The `cd` matters: the working directory would otherwise
/// still be the writable directory under the new mount.
pub(crate) const READ_ONLY_SCRIPT: &str =
    "mount --bind \"$1\" \"$1\" && mount -o remount,bind,ro \"$1\" && cd \"$1\" && exec \"$2\"";

/// The program and arguments that run `program` with `charm_dir` mounted read-only.
pub(crate) fn read_only_command(charm_dir: &Path, program: &Path) -> (PathBuf, Vec<String>) {
    (
        system_tool("unshare"),
        vec![
            "--mount".to_string(),
            "--propagation".to_string(),
            "private".to_string(),
            "/bin/sh".to_string(),
            "-c".to_string(),
            READ_ONLY_SCRIPT.to_string(),
            "sh".to_string(),
            charm_dir.display().to_string(),
            program.display().to_string(),
        ],
    )
}

/// Checks that this process may create a mount namespace and bind-mount read-only:
/// panics, saying why, when it may not.
pub(crate) fn check_read_only_supported(dir: &Path) {
    let (program, args) = read_only_command(dir, Path::new("/bin/true"));
    let out = Command::new(&program)
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    assert!(
        out.status.success(),
        "CharmDirMode::ReadOnly needs `unshare -m` and bind mounts (root, CAP_SYS_ADMIN): \
         {} failed ({}): {}",
        program.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

fn chattr(flag: &str, paths: &[PathBuf]) -> Result<(), String> {
    if paths.is_empty() {
        return Ok(());
    }
    let program = system_tool("chattr");
    let out = Command::new(&program)
        .arg(flag)
        .args(paths)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", program.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "chattr {flag} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// The paths `chattr` can flag: the directory itself, and with `all` every directory and
/// regular file below it.
/// Never panics (it also runs from `Drop`): unreadable entries are skipped.
fn flaggable(dir: &Path, all: bool) -> Vec<PathBuf> {
    fn below(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            match fs::symlink_metadata(&path) {
                Ok(m) if m.is_dir() => {
                    out.push(path.clone());
                    below(&path, out);
                }
                Ok(m) if m.is_file() => out.push(path),
                _ => {}
            }
        }
    }
    let mut paths = vec![dir.to_path_buf()];
    if all {
        below(dir, &mut paths);
    }
    paths
}

/// Keeps a directory immutable (`chattr +i`) until dropped.
pub(crate) struct ImmutableGuard {
    paths: Vec<PathBuf>,
}

impl ImmutableGuard {
    /// Flags `dir` (and with `all` everything in it); panics, saying why, when `chattr`
    /// fails (e.g. a file system without the flag, like tmpfs).
    pub(crate) fn apply(dir: &Path, all: bool) -> ImmutableGuard {
        let paths = flaggable(dir, all);
        if let Err(e) = chattr("+i", &paths) {
            // Some may have been flagged before the failure.
            let _ = chattr("-i", &paths);
            panic!("cannot make {} immutable: {e}", dir.display());
        }
        ImmutableGuard { paths }
    }
}

impl Drop for ImmutableGuard {
    fn drop(&mut self) {
        // Parents first would not matter: the flag on a directory does not stop changing
        // the flags of what is in it.
        if let Err(e) = chattr("-i", &self.paths) {
            eprintln!("microsample-e2e: {e}");
        }
    }
}

/// Removes the immutable flag from `dir` and everything in it (best effort): the backstop
/// before a unit's directory is deleted.
pub(crate) fn clear_immutable(dir: &Path) {
    if dir.exists() {
        let _ = chattr("-i", &flaggable(dir, true));
    }
}
