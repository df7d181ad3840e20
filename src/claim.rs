//! A machine-wide claim on the `microsample` snap: which unit on this machine manages it.
//!
//! # Why
//!
//! A snap is installed once per machine. Two units deployed on one machine (`juju deploy
//! --to`, `juju add-unit --to`, of this application or of two applications of this charm)
//! share one `microsample` snap: without a rule each would move the snap to its own channel
//! and port on every hook, and removing either would remove the snap under the other. The
//! rule: **a unit manages microsample only if no other unit on its machine does.** The unit
//! that holds the claim installs, refreshes, configures and (if it installed it) removes
//! the snap; any other unit leaves it alone and says so in its status.
//!
//! # Layout
//!
//! `<root>/microsample-charm/` (created mode 0755 on the first [`ClaimDir::take`]), where
//! `<root>` is `$MICROSAMPLE_STATE_ROOT` if set and non-empty, else `/var/lib`:
//!
//! - `claim.json`: the claim, for example
//!   `{"v":1,"unit":"microsample/0","application":"microsample","installed_by_charm":true}`.
//!   `installed_by_charm` is false when the unit adopted a snap that was already there (by
//!   hand, or by another charm): such a snap is managed but never removed by the charm.
//! - `claim.lock`: an empty file, only ever locked (`flock`), never removed (removing a lock
//!   file lets two processes lock two different files).
//! - `claim.json.tmp`: the next claim while it is being written, under the lock.
//!
//! # Atomicity
//!
//! Every change ([`ClaimDir::take`], [`ClaimDir::mark_installed_by_charm`],
//! [`ClaimDir::release`]) holds an exclusive lock on `claim.lock` and re-reads the claim
//! under it, so two units' hooks running at the same moment are serialized and the second
//! one sees what the first one wrote. (Juju's machine lock normally serializes hooks on a
//! machine already; actions and `juju exec` need not take it, and the claim does not rely on
//! it.) Waiting for the lock has a deadline ([`ClaimDir::new`]'s `lock_wait`).
//!
//! A claim is never visible half-written: it is written to `claim.json.tmp`, fsynced, then
//! published with `link(2)` for a new claim (which fails rather than overwrite a claim that
//! exists) or `rename(2)` to replace this unit's own or a stale claim (which atomically
//! replaces the name), and the directory is fsynced. A reader without the lock
//! ([`ClaimDir::observe`]) therefore sees no file, the old file or the new file, each
//! complete.
//!
//! # Stale claims
//!
//! Juju keeps each unit's agent directory at `<root>/juju/agents/unit-<app>-<n>/` for as long
//! as the unit exists on the machine (see `docs/juju.md#unit-agent-directory`). A claim whose
//! owner's agent directory is gone is **stale** (the owner was removed without releasing
//! it, e.g. `juju remove-unit --force`): [`ClaimDir::take`] takes it over, and the new owner
//! inherits `installed_by_charm` (the snap came from a charm that is gone, so the new owner
//! removes it when it goes). A claim whose owner's directory exists, or cannot be checked, is
//! **held**.
//!
//! # Unreadable claims
//!
//! A `claim.json` that is not a version-1 claim (garbage, truncated by hand, a newer format)
//! is reported as [`ClaimError::Corrupt`] by every operation and is never overwritten or
//! removed by the charm: it is treated as held by an unknown owner, because destroying
//! another unit's snap is worse than waiting for an operator. The error's message names the
//! file and says to remove it if no unit on the machine manages microsample.
//!
//! # Order of removal
//!
//! A unit that goes removes the snap (if [`Claim::installed_by_charm`]) *before*
//! [`ClaimDir::release`]: released first, another unit could take the claim and adopt the
//! snap that is about to disappear.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// The environment variable that moves `<root>` (tests).
pub(crate) const ROOT_ENV: &str = "MICROSAMPLE_STATE_ROOT";
/// `<root>` when [`ROOT_ENV`] is unset or empty.
pub(crate) const DEFAULT_ROOT: &str = "/var/lib";
/// The claim directory, under `<root>`.
const DIR: &str = "microsample-charm";
const CLAIM_FILE: &str = "claim.json";
const TEMP_FILE: &str = "claim.json.tmp";
const LOCK_FILE: &str = "claim.lock";
/// The format version this charm writes and reads.
const FORMAT_VERSION: u64 = 1;
/// A claim is about 100 bytes; anything much larger is not one.
const MAX_CLAIM_BYTES: u64 = 4096;
/// Pause between two attempts at the lock.
const LOCK_POLL: Duration = Duration::from_millis(5);

/// A Juju unit name, `<application>/<number>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct UnitName {
    application: String,
    number: u32,
}

impl UnitName {
    /// Parses `app/n`: the application a lowercase letter then lowercase letters, digits and
    /// hyphens (Juju's names are a subset), `n` decimal digits.
    pub(crate) fn parse(name: &str) -> Result<UnitName, ClaimError> {
        let invalid = || ClaimError::InvalidUnit {
            name: name.to_string(),
        };
        let (application, number) = name.split_once('/').ok_or_else(invalid)?;
        let mut chars = application.chars();
        let app_ok = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        let number_ok = !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit());
        if !app_ok || !number_ok {
            return Err(invalid());
        }
        Ok(UnitName {
            application: application.to_string(),
            number: number.parse().map_err(|_| invalid())?,
        })
    }

    /// From `JUJU_UNIT_NAME`.
    pub(crate) fn from_env() -> Result<UnitName, ClaimError> {
        UnitName::parse(&std::env::var("JUJU_UNIT_NAME").unwrap_or_default())
    }

    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn application(&self) -> &str {
        &self.application
    }

    /// The unit's agent directory name, `unit-<app>-<n>`.
    fn agent_dir_name(&self) -> String {
        format!("unit-{}-{}", self.application, self.number)
    }
}

impl fmt::Display for UnitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.application, self.number)
    }
}

/// Who manages the snap on this machine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claim {
    /// The owning unit (its application is [`UnitName::application`]).
    pub(crate) unit: UnitName,
    /// The charm installed the snap (and removes it when the owner goes); false: the owner
    /// adopted a snap that was already there and never removes it.
    pub(crate) installed_by_charm: bool,
}

impl fmt::Display for Claim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.unit)
    }
}

/// `claim.json`, as written.
#[derive(Serialize, Deserialize)]
struct ClaimFile {
    v: u64,
    unit: String,
    application: String,
    installed_by_charm: bool,
}

impl Claim {
    fn to_json(&self) -> String {
        let file = ClaimFile {
            v: FORMAT_VERSION,
            unit: self.unit.to_string(),
            application: self.unit.application.clone(),
            installed_by_charm: self.installed_by_charm,
        };
        serde_json::to_string(&file).expect("a claim serializes") + "\n"
    }

    /// Validates `claim.json`'s content; the error is the cause, for [`ClaimError::Corrupt`].
    fn from_json(text: &[u8]) -> Result<Claim, String> {
        let value: serde_json::Value =
            serde_json::from_slice(text).map_err(|e| format!("not JSON: {e}"))?;
        match value.get("v").and_then(serde_json::Value::as_u64) {
            Some(FORMAT_VERSION) => {}
            Some(v) => return Err(format!("format version {v}, this charm reads version 1")),
            None => return Err("no format version".into()),
        }
        let file: ClaimFile = serde_json::from_value(value).map_err(|e| e.to_string())?;
        let unit = UnitName::parse(&file.unit).map_err(|e| e.to_string())?;
        if unit.application != file.application {
            return Err(format!(
                "unit {unit} is not of application {:?}",
                file.application
            ));
        }
        Ok(Claim {
            unit,
            installed_by_charm: file.installed_by_charm,
        })
    }
}

/// What [`ClaimDir::observe`] sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ClaimState {
    /// This unit manages the snap.
    Mine(Claim),
    /// No unit does.
    Free,
    /// Another unit, whose agent directory exists, does.
    Held { by: Claim },
    /// Another unit did, and its agent directory is gone.
    Stale { by: Claim },
}

/// What [`ClaimDir::take`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Taken {
    /// The claim was free; it is this unit's now.
    Took(Claim),
    /// The claim was stale; it is this unit's now (log it at WARNING).
    TookOver { from: Claim, claim: Claim },
    /// The claim was already this unit's (unchanged).
    AlreadyMine(Claim),
    /// Another live unit holds it (maybe it took it a moment ago): this unit must leave the
    /// snap alone.
    Held { by: Claim },
}

/// Why a claim operation failed. The message names the path and the cause, and fits in a
/// status message.
#[derive(Debug)]
pub(crate) enum ClaimError {
    /// A file-system call failed.
    Io {
        op: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    /// `claim.json` is not a claim this charm can read; it is left alone (see the module
    /// documentation).
    Corrupt { path: PathBuf, cause: String },
    /// Another process held the lock for longer than the deadline.
    LockTimeout { path: PathBuf, waited: Duration },
    /// The unit name is not `app/n`.
    InvalidUnit { name: String },
    /// [`ClaimDir::mark_installed_by_charm`] on a claim that is not this unit's.
    NotMine { path: PathBuf, owner: Option<Claim> },
}

impl fmt::Display for ClaimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClaimError::Io { op, path, source } => {
                write!(f, "cannot {op} {}: {source}", path.display())
            }
            ClaimError::Corrupt { path, cause } => write!(
                f,
                "unreadable claim {} ({cause}); remove it if no unit here manages microsample",
                path.display()
            ),
            ClaimError::LockTimeout { path, waited } => write!(
                f,
                "{} stayed locked for {}s by another process",
                path.display(),
                waited.as_secs_f32()
            ),
            ClaimError::InvalidUnit { name } => write!(f, "invalid unit name {name:?}"),
            ClaimError::NotMine { path, owner: None } => {
                write!(f, "{} holds no claim", path.display())
            }
            ClaimError::NotMine {
                path,
                owner: Some(owner),
            } => write!(f, "{} is held by {owner}", path.display()),
        }
    }
}

impl std::error::Error for ClaimError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ClaimError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

fn io_error<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ClaimError + 'a {
    move |source| ClaimError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The claim directory of one machine (one `<root>`).
#[derive(Debug, Clone)]
pub(crate) struct ClaimDir {
    root: PathBuf,
    lock_wait: Duration,
}

/// Holds `claim.lock` until dropped (closing the file releases the `flock`).
struct LockGuard(#[allow(dead_code, reason = "held for its Drop")] File);

impl ClaimDir {
    /// A reasonable `lock_wait`: the lock is held for a few file operations.
    pub(crate) const DEFAULT_LOCK_WAIT: Duration = Duration::from_secs(10);

    /// The claim directory under `root`; changes wait at most `lock_wait` for the lock.
    pub(crate) fn new(root: impl Into<PathBuf>, lock_wait: Duration) -> ClaimDir {
        ClaimDir {
            root: root.into(),
            lock_wait,
        }
    }

    /// Under `$MICROSAMPLE_STATE_ROOT` if set and non-empty, else `/var/lib`.
    pub(crate) fn from_env(lock_wait: Duration) -> ClaimDir {
        ClaimDir::new(root_from(std::env::var_os(ROOT_ENV)), lock_wait)
    }

    /// `<root>/microsample-charm`.
    pub(crate) fn dir(&self) -> PathBuf {
        self.root.join(DIR)
    }

    /// `<root>/microsample-charm/claim.json`.
    pub(crate) fn claim_path(&self) -> PathBuf {
        self.dir().join(CLAIM_FILE)
    }

    /// What the claim is, from `me`'s point of view. Takes no lock and writes nothing: the
    /// answer may be out of date by the time it is used, so decisions that change the claim
    /// go through [`ClaimDir::take`] or [`ClaimDir::release`], which check again.
    pub(crate) fn observe(&self, me: &UnitName) -> Result<ClaimState, ClaimError> {
        let Some(claim) = self.read()? else {
            return Ok(ClaimState::Free);
        };
        if claim.unit == *me {
            Ok(ClaimState::Mine(claim))
        } else if self.owner_alive(&claim.unit)? {
            Ok(ClaimState::Held { by: claim })
        } else {
            Ok(ClaimState::Stale { by: claim })
        }
    }

    /// Takes the claim for `me` if it is free or stale, atomically (see the module
    /// documentation). `installed_by_charm` is what a new claim records: true when `me` is
    /// about to install the snap (it is not there), false when it adopts one that is.
    pub(crate) fn take(
        &self,
        me: &UnitName,
        installed_by_charm: bool,
    ) -> Result<Taken, ClaimError> {
        let _lock = self.lock()?;
        match self.observe(me)? {
            ClaimState::Mine(claim) => Ok(Taken::AlreadyMine(claim)),
            ClaimState::Held { by } => Ok(Taken::Held { by }),
            ClaimState::Free => {
                let claim = Claim {
                    unit: me.clone(),
                    installed_by_charm,
                };
                if self.publish(&claim, Publish::New)? {
                    return Ok(Taken::Took(claim));
                }
                match self.read()? {
                    Some(claim) if claim.unit == *me => Ok(Taken::AlreadyMine(claim)),
                    Some(by) => Ok(Taken::Held { by }),
                    None => Err(ClaimError::Corrupt {
                        path: self.claim_path(),
                        cause: "it appeared and vanished while locked".into(),
                    }),
                }
            }
            ClaimState::Stale { by } => {
                let claim = Claim {
                    unit: me.clone(),
                    installed_by_charm: installed_by_charm || by.installed_by_charm,
                };
                self.publish(&claim, Publish::Replace)?;
                Ok(Taken::TookOver { from: by, claim })
            }
        }
    }

    /// Records that the charm installed the snap, for a claim `me` holds (a unit that adopted
    /// the snap and later reinstalled it after it disappeared).
    pub(crate) fn mark_installed_by_charm(&self, me: &UnitName) -> Result<Claim, ClaimError> {
        let _lock = self.lock()?;
        match self.read()? {
            Some(claim) if claim.unit == *me => {
                if claim.installed_by_charm {
                    return Ok(claim);
                }
                let claim = Claim {
                    installed_by_charm: true,
                    ..claim
                };
                self.publish(&claim, Publish::Replace)?;
                Ok(claim)
            }
            owner => Err(ClaimError::NotMine {
                path: self.claim_path(),
                owner,
            }),
        }
    }

    /// Removes the claim if it is `me`'s and returns it; `None` (and nothing removed) if it
    /// is free or another unit's.
    pub(crate) fn release(&self, me: &UnitName) -> Result<Option<Claim>, ClaimError> {
        if !self.dir().exists() {
            return Ok(None);
        }
        let _lock = self.lock()?;
        match self.read()? {
            Some(claim) if claim.unit == *me => {
                let path = self.claim_path();
                fs::remove_file(&path).map_err(io_error("remove", &path))?;
                self.sync_dir()?;
                Ok(Some(claim))
            }
            _ => Ok(None),
        }
    }

    /// The claim in `claim.json`, `None` if there is none.
    fn read(&self) -> Result<Option<Claim>, ClaimError> {
        let path = self.claim_path();
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error("open", &path)(e)),
        };
        let mut text = Vec::new();
        file.take(MAX_CLAIM_BYTES + 1)
            .read_to_end(&mut text)
            .map_err(io_error("read", &path))?;
        if text.len() as u64 > MAX_CLAIM_BYTES {
            return Err(ClaimError::Corrupt {
                path,
                cause: format!("larger than {MAX_CLAIM_BYTES} bytes"),
            });
        }
        Claim::from_json(&text)
            .map(Some)
            .map_err(|cause| ClaimError::Corrupt { path, cause })
    }

    /// Whether `unit`'s agent directory exists. Anything but "not found" counts as alive or
    /// as an error: a claim is stale only when the directory is known to be gone.
    fn owner_alive(&self, unit: &UnitName) -> Result<bool, ClaimError> {
        let path = self.root.join("juju/agents").join(unit.agent_dir_name());
        match fs::metadata(&path) {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_error("check", &path)(e)),
        }
    }

    /// Creates the directory (0755) if missing and takes the lock, waiting at most
    /// `lock_wait`.
    fn lock(&self) -> Result<LockGuard, ClaimError> {
        let dir = self.dir();
        match fs::create_dir(&dir) {
            Ok(()) => fs::set_permissions(&dir, fs::Permissions::from_mode(0o755))
                .map_err(io_error("set the mode of", &dir))?,
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_error("create", &dir)(e)),
        }
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io_error("open", &path))?;
        let deadline = Instant::now() + self.lock_wait;
        loop {
            match file.try_lock() {
                Ok(()) => return Ok(LockGuard(file)),
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(io_error("lock", &path)(e)),
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(ClaimError::LockTimeout {
                    path,
                    waited: self.lock_wait,
                });
            }
            std::thread::sleep(LOCK_POLL.min(deadline - now));
        }
    }

    /// Writes `claim` to the temporary file, fsyncs it and publishes it as `claim.json`.
    /// Called with the lock held. False: [`Publish::New`] found a claim in place (written by
    /// a process that did not take the lock) and left it.
    fn publish(&self, claim: &Claim, how: Publish) -> Result<bool, ClaimError> {
        let temp = self.dir().join(TEMP_FILE);
        // A leftover from a writer that died: only writers holding the lock touch it.
        match fs::remove_file(&temp) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_error("remove", &temp)(e)),
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&temp)
            .map_err(io_error("create", &temp))?;
        file.set_permissions(fs::Permissions::from_mode(0o644))
            .map_err(io_error("set the mode of", &temp))?;
        file.write_all(claim.to_json().as_bytes())
            .map_err(io_error("write", &temp))?;
        file.sync_all().map_err(io_error("fsync", &temp))?;
        drop(file);
        let path = self.claim_path();
        let published = match how {
            // Fails with AlreadyExists rather than replace a claim.
            Publish::New => {
                let linked = match fs::hard_link(&temp, &path) {
                    Ok(()) => true,
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => false,
                    Err(e) => return Err(io_error("link", &path)(e)),
                };
                fs::remove_file(&temp).map_err(io_error("remove", &temp))?;
                linked
            }
            Publish::Replace => {
                fs::rename(&temp, &path).map_err(io_error("rename", &path))?;
                true
            }
        };
        self.sync_dir()?;
        Ok(published)
    }

    /// Makes the directory's entries (link, rename, unlink) durable.
    fn sync_dir(&self) -> Result<(), ClaimError> {
        let dir = self.dir();
        File::open(&dir)
            .and_then(|d| d.sync_all())
            .map_err(io_error("fsync", &dir))
    }
}

/// `<root>` from the value of [`ROOT_ENV`].
fn root_from(var: Option<std::ffi::OsString>) -> PathBuf {
    var.filter(|root| !root.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_ROOT))
}

/// How [`ClaimDir::publish`] puts the new file in place.
#[derive(Clone, Copy)]
enum Publish {
    /// `link(2)`: there was no claim, and another writer's claim is never overwritten.
    New,
    /// `rename(2)`: replace the claim read under the lock (this unit's, or a stale one).
    Replace,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::{Command, Stdio};
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{Arc, Barrier};

    fn unit(name: &str) -> UnitName {
        UnitName::parse(name).unwrap()
    }

    fn claim_dir(root: &Path) -> ClaimDir {
        ClaimDir::new(root, Duration::from_secs(10))
    }

    /// Makes `name` alive on the machine: its agent directory exists.
    fn alive(root: &Path, name: &str) {
        let dir = root.join("juju/agents").join(unit(name).agent_dir_name());
        fs::create_dir_all(dir).unwrap();
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn unit_names() {
        let u = unit("microsample-b/12");
        assert_eq!(u.application(), "microsample-b");
        assert_eq!(u.to_string(), "microsample-b/12");
        assert_eq!(u.agent_dir_name(), "unit-microsample-b-12");
        for bad in [
            "",
            "microsample",
            "/0",
            "a/",
            "a/-1",
            "a/+1",
            "a/0/1",
            "../x/0",
            "A/0",
            "a b/0",
            "1a/0",
            "a/99999999999",
        ] {
            let error = UnitName::parse(bad).unwrap_err();
            assert!(matches!(error, ClaimError::InvalidUnit { .. }), "{bad:?}");
            assert!(error.to_string().contains(&format!("{bad:?}")));
        }
    }

    #[test]
    fn the_root_is_the_variable_if_set_and_not_empty() {
        assert_eq!(root_from(None), Path::new("/var/lib"));
        assert_eq!(root_from(Some("".into())), Path::new("/var/lib"));
        assert_eq!(root_from(Some("/tmp/x".into())), Path::new("/tmp/x"));
        assert_eq!(
            ClaimDir::new("/r", Duration::ZERO).claim_path(),
            Path::new("/r/microsample-charm/claim.json")
        );
    }

    #[test]
    fn nothing_is_free_and_observing_creates_nothing() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        assert_eq!(claims.observe(&unit("a/0")).unwrap(), ClaimState::Free);
        assert_eq!(claims.release(&unit("a/0")).unwrap(), None);
        assert!(!claims.dir().exists());
    }

    #[test]
    fn take_creates_the_directory_and_a_claim_that_reads_back() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        let me = unit("microsample/0");
        let mine = Claim {
            unit: me.clone(),
            installed_by_charm: true,
        };
        assert_eq!(claims.take(&me, true).unwrap(), Taken::Took(mine.clone()));
        assert_eq!(mode(&claims.dir()), 0o755);
        assert_eq!(mode(&claims.claim_path()), 0o644);
        assert_eq!(
            fs::read_to_string(claims.claim_path()).unwrap(),
            "{\"v\":1,\"unit\":\"microsample/0\",\"application\":\"microsample\",\"installed_by_charm\":true}\n"
        );
        assert_eq!(claims.observe(&me).unwrap(), ClaimState::Mine(mine.clone()));
        // Again: unchanged, whatever the flag says.
        assert_eq!(claims.take(&me, false).unwrap(), Taken::AlreadyMine(mine));
        let mut names: Vec<_> = fs::read_dir(claims.dir())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            ["claim.json", "claim.lock"],
            "no temporary file left"
        );
    }

    #[test]
    fn a_live_owner_holds_the_claim() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        alive(root.path(), "one/0");
        claims.take(&unit("one/0"), false).unwrap();
        let before = fs::read(claims.claim_path()).unwrap();
        let owner = Claim {
            unit: unit("one/0"),
            installed_by_charm: false,
        };
        let other = unit("two/3");
        assert_eq!(
            claims.observe(&other).unwrap(),
            ClaimState::Held { by: owner.clone() }
        );
        assert_eq!(
            claims.take(&other, true).unwrap(),
            Taken::Held { by: owner }
        );
        assert_eq!(fs::read(claims.claim_path()).unwrap(), before);
    }

    #[test]
    fn an_owner_whose_agent_directory_is_gone_is_stale_and_taken_over() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        alive(root.path(), "one/0");
        claims.take(&unit("one/0"), true).unwrap();
        fs::remove_dir(root.path().join("juju/agents/unit-one-0")).unwrap();
        let old = Claim {
            unit: unit("one/0"),
            installed_by_charm: true,
        };
        let me = unit("two/1");
        assert_eq!(
            claims.observe(&me).unwrap(),
            ClaimState::Stale { by: old.clone() }
        );
        // The snap came from a charm: the new owner inherits removing it.
        let new = Claim {
            unit: me.clone(),
            installed_by_charm: true,
        };
        assert_eq!(
            claims.take(&me, false).unwrap(),
            Taken::TookOver {
                from: old,
                claim: new.clone()
            }
        );
        assert_eq!(claims.observe(&me).unwrap(), ClaimState::Mine(new));
        // A stale adopted claim stays adopted.
        fs::write(
            claims.claim_path(),
            r#"{"v":1,"unit":"gone/0","application":"gone","installed_by_charm":false}"#,
        )
        .unwrap();
        let Taken::TookOver { claim, .. } = claims.take(&me, false).unwrap() else {
            panic!("not taken over")
        };
        assert!(!claim.installed_by_charm);
    }

    #[test]
    fn only_the_owner_releases() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        alive(root.path(), "one/0");
        claims.take(&unit("one/0"), true).unwrap();
        assert_eq!(claims.release(&unit("two/0")).unwrap(), None);
        assert!(claims.claim_path().exists());
        assert_eq!(
            claims.release(&unit("one/0")).unwrap(),
            Some(Claim {
                unit: unit("one/0"),
                installed_by_charm: true
            })
        );
        assert!(!claims.claim_path().exists());
        assert_eq!(claims.release(&unit("one/0")).unwrap(), None);
        assert_eq!(claims.observe(&unit("two/0")).unwrap(), ClaimState::Free);
    }

    #[test]
    fn mark_installed_by_charm_only_on_my_claim() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        let me = unit("one/0");
        let error = claims.mark_installed_by_charm(&me).unwrap_err();
        assert!(matches!(error, ClaimError::NotMine { owner: None, .. }));
        claims.take(&me, false).unwrap();
        let marked = claims.mark_installed_by_charm(&me).unwrap();
        assert!(marked.installed_by_charm);
        assert_eq!(claims.observe(&me).unwrap(), ClaimState::Mine(marked));
        let error = claims.mark_installed_by_charm(&unit("two/0")).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{} is held by one/0", claims.claim_path().display())
        );
    }

    #[test]
    fn a_corrupt_claim_is_an_error_and_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        fs::create_dir(claims.dir()).unwrap();
        let valid = r#"{"v":1,"unit":"a/0","application":"a","installed_by_charm":true}"#;
        let big = format!("{valid}{}", " ".repeat(5000));
        let cases: &[(&str, &str)] = &[
            ("", "not JSON"),
            ("Online", "not JSON"),
            (&valid[..30], "not JSON"),
            ("null", "no format version"),
            ("[]", "no format version"),
            (r#"{"unit":"a/0"}"#, "no format version"),
            (r#"{"v":"1"}"#, "no format version"),
            (
                r#"{"v":2,"owner":"x"}"#,
                "format version 2, this charm reads version 1",
            ),
            (r#"{"v":1,"unit":"a/0"}"#, "missing field"),
            (
                r#"{"v":1,"unit":"a/0","application":"a","installed_by_charm":"yes"}"#,
                "invalid type",
            ),
            (
                r#"{"v":1,"unit":"../a/0","application":"..","installed_by_charm":true}"#,
                "invalid unit name",
            ),
            (
                r#"{"v":1,"unit":"a/0","application":"b","installed_by_charm":true}"#,
                "is not of application",
            ),
            (&big, "larger than 4096 bytes"),
        ];
        for (content, cause) in cases {
            fs::write(claims.claim_path(), content).unwrap();
            let me = unit("me/0");
            for result in [
                claims.observe(&me).map(|_| ()),
                claims.take(&me, true).map(|_| ()),
                claims.release(&me).map(|_| ()),
                claims.mark_installed_by_charm(&me).map(|_| ()),
            ] {
                let error = result.unwrap_err();
                let message = error.to_string();
                assert!(matches!(error, ClaimError::Corrupt { .. }), "{content:?}");
                assert!(message.contains(cause), "{content:?}: {message}");
                assert!(message.starts_with(&format!(
                    "unreadable claim {} (",
                    claims.claim_path().display()
                )));
                assert!(message.ends_with("remove it if no unit here manages microsample"));
            }
            assert_eq!(fs::read_to_string(claims.claim_path()).unwrap(), *content);
        }
        // Unknown fields are ignored: the version is the gate.
        fs::write(
            claims.claim_path(),
            r#"{"v":1,"unit":"a/0","application":"a","installed_by_charm":true,"note":"x"}"#,
        )
        .unwrap();
        assert!(matches!(
            claims.observe(&unit("a/0")).unwrap(),
            ClaimState::Mine(_)
        ));
    }

    #[test]
    fn file_system_errors_are_errors_naming_the_path() {
        // As root, permissions do not fail; the wrong kinds of file do.
        let root = tempfile::tempdir().unwrap();
        let me = unit("me/0");

        // <root> missing.
        let claims = claim_dir(&root.path().join("missing"));
        let error = claims.take(&me, true).unwrap_err();
        assert!(
            matches!(error, ClaimError::Io { op: "create", .. }),
            "{error}"
        );
        assert!(error
            .to_string()
            .starts_with(&format!("cannot create {}: ", claims.dir().display())));

        // The claim directory is a file.
        let claims = claim_dir(root.path());
        fs::write(claims.dir(), "").unwrap();
        let error = claims.take(&me, true).unwrap_err();
        let lock = claims.dir().join("claim.lock");
        assert!(
            error
                .to_string()
                .starts_with(&format!("cannot open {}: ", lock.display())),
            "{error}"
        );
        let error = claims.observe(&me).unwrap_err();
        assert!(
            matches!(error, ClaimError::Io { op: "open", .. }),
            "{error}"
        );
        fs::remove_file(claims.dir()).unwrap();

        // The claim is a directory.
        fs::create_dir_all(claims.claim_path()).unwrap();
        let error = claims.observe(&me).unwrap_err();
        assert!(
            matches!(error, ClaimError::Io { op: "read", .. }),
            "{error}"
        );
        assert!(error
            .to_string()
            .contains(&*claims.claim_path().to_string_lossy()));
        assert!(claims.take(&me, true).is_err());
        fs::remove_dir(claims.claim_path()).unwrap();

        // The owner's liveness cannot be checked: neither held nor stale, an error.
        alive(root.path(), "one/0");
        claims.take(&unit("one/0"), true).unwrap();
        fs::remove_dir_all(root.path().join("juju")).unwrap();
        fs::write(root.path().join("juju"), "").unwrap();
        let error = claims.take(&me, true).unwrap_err();
        assert!(
            matches!(error, ClaimError::Io { op: "check", .. }),
            "{error}"
        );
        assert!(error.to_string().contains("juju/agents/unit-one-0"));
        assert!(std::error::Error::source(&error).is_some());
    }

    #[test]
    fn permission_errors_are_errors() {
        use std::os::unix::fs::MetadataExt;
        // /proc/self belongs to this process's user: root reads and writes anything.
        if fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0) {
            eprintln!("NOTE: running as root, permissions cannot fail; see the test above");
            return;
        }
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        claims.take(&unit("one/0"), true).unwrap();
        fs::remove_file(claims.dir().join(LOCK_FILE)).unwrap();
        fs::set_permissions(claims.dir(), fs::Permissions::from_mode(0o555)).unwrap();
        let error = claims.take(&unit("two/0"), true).unwrap_err();
        assert!(
            matches!(error, ClaimError::Io { op: "open", .. }),
            "{error}"
        );
        assert!(
            error.to_string().contains("claim.lock: Permission denied"),
            "{error}"
        );
        fs::set_permissions(claims.dir(), fs::Permissions::from_mode(0o000)).unwrap();
        let error = claims.observe(&unit("two/0")).unwrap_err();
        assert!(error.to_string().contains("Permission denied"), "{error}");
        fs::set_permissions(claims.dir(), fs::Permissions::from_mode(0o755)).unwrap();
    }

    #[test]
    fn waiting_for_the_lock_has_a_deadline() {
        let root = tempfile::tempdir().unwrap();
        let claims = ClaimDir::new(root.path(), Duration::from_millis(100));
        claims.take(&unit("one/0"), true).unwrap();
        let holder = File::open(claims.dir().join("claim.lock")).unwrap();
        holder.lock().unwrap();
        let start = Instant::now();
        let error = claims.release(&unit("one/0")).unwrap_err();
        let waited = start.elapsed();
        assert!(matches!(error, ClaimError::LockTimeout { .. }), "{error}");
        assert!(waited >= Duration::from_millis(100), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        assert!(error
            .to_string()
            .ends_with("claim.lock stayed locked for 0.1s by another process"));
        holder.unlock().unwrap();
        assert!(claims.release(&unit("one/0")).unwrap().is_some());
    }

    #[test]
    fn publishing_a_new_claim_never_replaces_one() {
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        fs::create_dir(claims.dir()).unwrap();
        // Written by a process that did not take the lock.
        let theirs = r#"{"v":1,"unit":"one/0","application":"one","installed_by_charm":true}"#;
        fs::write(claims.claim_path(), theirs).unwrap();
        let mine = Claim {
            unit: unit("two/0"),
            installed_by_charm: true,
        };
        assert!(!claims.publish(&mine, Publish::New).unwrap());
        assert_eq!(fs::read_to_string(claims.claim_path()).unwrap(), theirs);
        assert!(!claims.dir().join(TEMP_FILE).exists());
    }

    /// Reads `claim.json` without the lock until `stop`, failing on a partial or invalid
    /// file; returns how many complete claims it read.
    fn reader(path: PathBuf, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
        std::thread::spawn(move || {
            let mut complete = 0;
            while !stop.load(Ordering::Relaxed) {
                match fs::read(&path) {
                    Ok(text) => {
                        if let Err(e) = Claim::from_json(&text) {
                            panic!("a reader saw {:?}: {e}", String::from_utf8_lossy(&text));
                        }
                        complete += 1;
                    }
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => panic!("{e}"),
                }
            }
            complete
        })
    }

    /// One winner, and every loser sees it as the holder.
    fn check_race(results: &[(String, Taken)]) -> String {
        let winners: Vec<&String> = results
            .iter()
            .filter(|(_, taken)| matches!(taken, Taken::Took(_)))
            .map(|(name, _)| name)
            .collect();
        assert_eq!(winners.len(), 1, "{results:?}");
        let winner = winners[0].clone();
        for (name, taken) in results {
            if *name != winner {
                match taken {
                    Taken::Held { by } => assert_eq!(by.unit.to_string(), winner),
                    other => panic!("{name}: {other:?}"),
                }
            }
        }
        winner
    }

    #[test]
    fn racing_threads_one_wins_and_no_reader_sees_a_partial_claim() {
        for _round in 0..5 {
            let root = tempfile::tempdir().unwrap();
            let names: Vec<String> = (0..12).map(|i| format!("app{}/{i}", i % 3)).collect();
            for name in &names {
                alive(root.path(), name);
            }
            let claims = claim_dir(root.path());
            let stop = Arc::new(AtomicBool::new(false));
            let reading = reader(claims.claim_path(), stop.clone());
            let barrier = Arc::new(Barrier::new(names.len()));
            let racers: Vec<_> = names
                .iter()
                .map(|name| {
                    let (claims, barrier, name) = (claims.clone(), barrier.clone(), name.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        let taken = claims.take(&unit(&name), true).unwrap();
                        (name, taken)
                    })
                })
                .collect();
            let results: Vec<_> = racers.into_iter().map(|r| r.join().unwrap()).collect();
            stop.store(true, Ordering::Relaxed);
            reading.join().expect("the reader saw a partial claim");
            let winner = check_race(&results);
            let ClaimState::Mine(claim) = claims.observe(&unit(&winner)).unwrap() else {
                panic!("not the winner's")
            };
            assert!(claim.installed_by_charm);
        }
    }

    const CHILD_ENV: &str = "MICROSAMPLE_CLAIM_RACE_CHILD";

    /// Not a test on its own: the body of each racing process of
    /// `racing_processes_one_wins`, which runs this test binary again with [`CHILD_ENV`] set
    /// to a file to wait for, [`ROOT_ENV`] and `JUJU_UNIT_NAME`.
    #[test]
    fn race_child() {
        let Some(go) = std::env::var_os(CHILD_ENV) else {
            return;
        };
        let claims = ClaimDir::from_env(Duration::from_secs(20));
        let me = UnitName::from_env().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while !Path::new(&go).exists() {
            assert!(Instant::now() < deadline, "never started");
            std::hint::spin_loop();
        }
        let line = match claims.take(&me, true).unwrap() {
            Taken::Took(_) => "took".to_string(),
            Taken::Held { by } => format!("held {}", by.unit),
            other => format!("unexpected {other:?}"),
        };
        // On a line of its own: the harness has printed "test ... " without a newline.
        println!("\nCLAIM-RESULT {me} {line}");
    }

    #[test]
    fn racing_processes_one_wins_and_no_reader_sees_a_partial_claim() {
        let exe = std::env::current_exe().unwrap();
        for _round in 0..3 {
            let root = tempfile::tempdir().unwrap();
            let go = root.path().join("go");
            let names: Vec<String> = (0..6).map(|i| format!("proc{}/{i}", i % 2)).collect();
            for name in &names {
                alive(root.path(), name);
            }
            let children: Vec<_> = names
                .iter()
                .map(|name| {
                    Command::new(&exe)
                        .args(["--exact", "claim::tests::race_child", "--nocapture"])
                        .args(["--test-threads", "1"])
                        .env(CHILD_ENV, &go)
                        .env(ROOT_ENV, root.path())
                        .env("JUJU_UNIT_NAME", name)
                        .stdout(Stdio::piped())
                        .stderr(Stdio::inherit())
                        .spawn()
                        .unwrap()
                })
                .collect();
            let claims = claim_dir(root.path());
            let stop = Arc::new(AtomicBool::new(false));
            let reading = reader(claims.claim_path(), stop.clone());
            // Let every child start and spin on the go file.
            std::thread::sleep(Duration::from_millis(200));
            fs::write(&go, "").unwrap();
            let deadline = Instant::now() + Duration::from_secs(60);
            let mut results = Vec::new();
            for mut child in children {
                while child.try_wait().unwrap().is_none() {
                    if Instant::now() > deadline {
                        child.kill().unwrap();
                        panic!("a racing process did not finish within 60s");
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
                let mut out = String::new();
                child
                    .stdout
                    .take()
                    .unwrap()
                    .read_to_string(&mut out)
                    .unwrap();
                assert!(child.wait().unwrap().success(), "{out}");
                let line = out
                    .lines()
                    .find_map(|l| l.split_once("CLAIM-RESULT ").map(|(_, result)| result))
                    .unwrap_or_else(|| panic!("no result in {out:?}"));
                let (name, what) = line.split_once(' ').unwrap();
                let taken = match what.split_once(' ') {
                    None if what == "took" => Taken::Took(Claim {
                        unit: unit(name),
                        installed_by_charm: true,
                    }),
                    Some(("held", by)) => Taken::Held {
                        by: Claim {
                            unit: unit(by),
                            installed_by_charm: true,
                        },
                    },
                    _ => panic!("{line}"),
                };
                results.push((name.to_string(), taken));
            }
            stop.store(true, Ordering::Relaxed);
            let complete = reading.join().expect("the reader saw a partial claim");
            assert!(complete > 0, "the reader never saw the claim");
            assert_eq!(results.len(), names.len());
            let winner = check_race(&results);
            assert!(matches!(
                claims.observe(&unit(&winner)).unwrap(),
                ClaimState::Mine(_)
            ));
        }
    }

    #[test]
    fn takeover_races_leave_one_owner() {
        // Several units find the same stale claim; exactly one takes it over.
        let root = tempfile::tempdir().unwrap();
        let claims = claim_dir(root.path());
        claims.take(&unit("gone/0"), true).unwrap();
        let names: Vec<String> = (0..8).map(|i| format!("new/{i}")).collect();
        for name in &names {
            alive(root.path(), name);
        }
        let barrier = Arc::new(Barrier::new(names.len()));
        let took_over = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = names
            .iter()
            .map(|name| {
                let (claims, barrier, name) = (claims.clone(), barrier.clone(), name.clone());
                let took_over = took_over.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    match claims.take(&unit(&name), false).unwrap() {
                        Taken::TookOver { from, claim } => {
                            assert_eq!(from.unit, unit("gone/0"));
                            assert!(claim.installed_by_charm);
                            took_over.fetch_add(1, Ordering::Relaxed);
                        }
                        Taken::Held { by } => assert!(by.unit.application() == "new"),
                        other => panic!("{other:?}"),
                    }
                })
            })
            .collect();
        for racer in racers {
            racer.join().unwrap();
        }
        assert_eq!(took_over.load(Ordering::Relaxed), 1);
    }
}
