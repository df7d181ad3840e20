//! The fake snap store behind the fake snapd: one snap, microsample, its channel map and
//! its cohorts.
//!
//! **Channel map.** Fully qualified channel (`latest/edge`, `1.0/stable`,
//! `latest/edge/hotfix`) -> the revision released there, all for [`ARCH`]. A tracked
//! channel without a branch that has no release of its own is served by the next more
//! stable risk of the same track (a closed channel follows, as in the store: the effective
//! channel then differs from the tracked one); a branch is served only by itself. Nothing at
//! all is served when the machine is not [`ARCH`]. When nothing serves a request the store
//! answers `revision-not-found` with every release (architecture x channel), which snapd
//! turns into `snap-channel-not-available` or `snap-architecture-not-available` (see
//! `snapd.rs`); that one answer covers a risk with no revision, a branch that does not
//! exist and a track that does not exist, and the `snap` CLI words each from `releases`
//! (`cmd/snap/error.go` `snapRevisionNotAvailableMessage`).
//!
//! **Cohorts** (`snap create-cohort`, `POST /v2/cohorts`; `--cohort=<key>` of
//! install/refresh; `cohort-key` of the snap). The real store's key is an opaque token,
//! `base64("1 <snap-id> <unix time of creation> <64 hex digits>")` (the one in snapd's
//! `store/tooling/tooling_test.go` decodes to `1 Hswp9oOzj3b4mw8gcC00XtxWnKH9QiCQ
//! 1555411415 0cc2...7e09`); installs and refreshes with it get "a fixed revision for up to
//! 90 days, after which a new set of revisions would be fixed under that same cohort key
//! and a new 90 days window started" (`snap help create-cohort`,
//! `cmd/snap/cmd_create_cohort.go`). The fake models exactly that: creating a key copies
//! the channel map as it is then; a request with the key is served from that copy
//! (channel resolution and following as above), whatever was released since; the first
//! request 90 days or more after the window started re-pins the key to the channel map of
//! that moment and starts a new window. Time is the store's clock: the real clock plus
//! `store_clock_offset` seconds (`Unit::advance_store_clock`). A snap installed or
//! refreshed with a key keeps it (`cohort-key` in `GET /v2/snaps/<name>`) and later
//! refreshes use it, until `--leave-cohort` or another `--cohort`. A key the store never
//! issued is refused with a text of the fake's own (`fake store: unknown cohort key`): the
//! real store's words for it are not known.
//!
//! **Revisions that misbehave** (a fake-only knob of a [`Release`]): `fault` makes the
//! revision's service misbehave once it runs (one of the workload faults: `http500` runs but
//! never answers `Online`, `hang` accepts and never answers, `dead` does not start), and
//! `metrics: false` makes it serve only `/` and `/api/info`, like microsample revisions
//! built before May 2023 (no `/metrics`). Both travel with the revision: a machine that
//! installs or refreshes to it gets them, whatever channel or cohort served it.
//!
//! **One store for several machines** ([`SharedStore`]). Each fake snapd normally keeps its
//! store (channel map, cohorts, store clock) in its own state. Started with `--store
//! <file>`, it keeps them in that file instead, shared with every other fake snapd started
//! with the same file: before each request it loads them under an exclusive `flock(2)` on
//! `<file>.lock`, and writes them back (atomically, temp file then rename) before releasing
//! the lock if the request changed them. So a revision published through one machine's
//! `PUT /fake/state` (`channels`) is what every machine's next install or refresh sees, and a
//! cohort key created on one machine (`POST /v2/cohorts`) works on the others, as with the
//! real store. What stays per machine: the installed snap, the machine's architecture, its
//! network (`store_down`, `store_error`), faults, changes and requests.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::fakes::channel::{self, Channel};

/// The architecture every release is built for (microsample: `build-on: amd64` only).
pub const ARCH: &str = "amd64";

/// How long a cohort key keeps its revisions (the store's 90 days).
pub const COHORT_WINDOW_SECS: u64 = 90 * 24 * 3600;

/// A revision released to a channel of the fake store.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Release {
    pub revision: u32,
    pub version: String,
    /// The revision's service misbehaves (a workload fault: `http500`, `hang`, `dead`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<String>,
    /// The revision serves Prometheus text on `/metrics` (false: built before May 2023).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub metrics: bool,
}

impl Release {
    /// A revision that behaves: answers `Online`, serves `/metrics`.
    pub fn good(revision: u32, version: &str) -> Release {
        Release {
            revision,
            version: version.to_string(),
            fault: None,
            metrics: true,
        }
    }
}

fn yes() -> bool {
    true
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_true(b: &bool) -> bool {
    *b
}

/// A channel map: fully qualified channel -> release.
pub type ChannelMap = BTreeMap<String, Release>;

/// What the store keeps for one cohort key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Cohort {
    /// Store time (unix seconds) the current 90-day window started.
    pub window_start: u64,
    /// The channel map as it was when the window started.
    pub channels: ChannelMap,
}

/// The store part of a fake snapd's state, when several fake snapds share one store (see
/// the module doc): the channel map, the cohorts and the store's clock.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SharedStore {
    pub channels: ChannelMap,
    pub cohorts: BTreeMap<String, Cohort>,
    pub store_clock_offset: u64,
}

/// The shared store file `path`, locked: released on drop.
pub struct StoreLock {
    _file: File,
    path: PathBuf,
}

impl StoreLock {
    /// Takes an exclusive `flock(2)` on `<path>.lock` (created if missing), waiting for it.
    pub fn take(path: &Path) -> Result<StoreLock, String> {
        let lock_path = lock_path(path);
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| format!("cannot open {}: {e}", lock_path.display()))?;
        // SAFETY: flock on a file descriptor this function owns.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(format!(
                "cannot lock {}: {}",
                lock_path.display(),
                std::io::Error::last_os_error()
            ));
        }
        Ok(StoreLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    /// The store as the file has it; `None` when the file does not exist yet.
    pub fn load(&self) -> Result<Option<SharedStore>, String> {
        match fs::read(&self.path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| format!("cannot parse {}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(format!("cannot read {}: {e}", self.path.display())),
        }
    }

    /// Replaces the file's content (temp file, then rename).
    pub fn save(&self, store: &SharedStore) -> Result<(), String> {
        let data = serde_json::to_vec_pretty(store).map_err(|e| e.to_string())?;
        let tmp = self
            .path
            .with_extension(format!("{}.tmp", std::process::id()));
        fs::write(&tmp, data).map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
        fs::rename(&tmp, &self.path)
            .map_err(|e| format!("cannot write {}: {e}", self.path.display()))
    }
}

fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

/// Reads, changes and writes back the shared store `path` under its lock (a missing file
/// starts from `initial`).
pub fn update_shared<R>(
    path: &Path,
    initial: impl FnOnce() -> SharedStore,
    f: impl FnOnce(&mut SharedStore) -> R,
) -> Result<R, String> {
    let lock = StoreLock::take(path)?;
    let mut store = lock.load()?.unwrap_or_else(initial);
    let result = f(&mut store);
    lock.save(&store)?;
    Ok(result)
}

/// The release serving `tracking` (fully qualified) in `map`, and the channel it comes
/// from: the channel itself, else for a channel without a branch the next more stable risk
/// of the same track.
pub fn release_in(map: &ChannelMap, tracking: &str) -> Option<(String, Release)> {
    let ch = Channel::parse(tracking).ok()?;
    if !ch.branch.is_empty() {
        let full = ch.full();
        return map.get(&full).map(|r| (full, r.clone()));
    }
    let track = if ch.track.is_empty() {
        "latest".to_string()
    } else {
        ch.track.clone()
    };
    let idx = channel::RISKS.iter().position(|r| *r == ch.risk)?;
    (0..=idx).rev().find_map(|i| {
        let name = format!("{track}/{}", channel::RISKS[i]);
        map.get(&name).map(|r| (name, r.clone()))
    })
}

/// The store's `releases` of a `revision-not-found` error: every channel with a release,
/// as `{"architecture", "channel"}` with the channel's short name (`edge`, `1.0/beta`),
/// ordered by track, risk, branch.
pub fn releases_value(map: &ChannelMap) -> Value {
    let mut names: Vec<&String> = map.keys().collect();
    names.sort_by_key(|n| {
        let c = Channel::parse(n).unwrap_or_default();
        (
            c.track.clone(),
            channel::RISKS
                .iter()
                .position(|r| *r == c.risk)
                .unwrap_or(9),
            c.branch,
        )
    });
    Value::Array(
        names
            .into_iter()
            .map(|n| {
                let c = Channel::parse(n).unwrap_or_default();
                json!({"architecture": ARCH, "channel": c.name()})
            })
            .collect(),
    )
}

/// The store's clock: now plus `offset` seconds.
pub fn store_now(offset: u64) -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
        .saturating_add(offset)
}

/// A cohort key shaped like the store's: `base64("1 <snap-id> <created> <64 hex>")`, the
/// hex digits derived from `created` and `serial` (unique per fake store).
pub fn cohort_key(snap_id: &str, created: u64, serial: u64) -> String {
    let mut hex = String::new();
    let mut x = created ^ serial.rotate_left(32) ^ 0x9e37_79b9_7f4a_7c15;
    for _ in 0..4 {
        // splitmix64
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        hex.push_str(&format!("{z:016x}"));
    }
    base64(format!("1 {snap_id} {created} {hex}").as_bytes())
}

/// Standard base64 with padding.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `strutil.ElliptLeft`: at most `n` characters, the first replaced by `…` when cut.
pub fn ellipt_left(s: &str, n: usize) -> String {
    let n = n.max(1);
    let chars: Vec<char> = s.chars().collect();
    if chars.len() <= n {
        return s.to_string();
    }
    format!(
        "…{}",
        chars[chars.len() - n + 1..].iter().collect::<String>()
    )
}

/// `switchSummary` of `overlord/snapstate/snapstate.go`: the summary of the
/// `switch-snap-channel` task of a refresh that only changes the tracked channel and/or
/// the cohort.
pub fn switch_summary(
    snap: &str,
    chan_from: &str,
    chan_to: &str,
    coh_from: &str,
    coh_to: &str,
) -> String {
    let q = crate::fakes::gnuflag::go_quote;
    let (cf, ct) = (q(&ellipt_left(coh_from, 10)), q(&ellipt_left(coh_to, 10)));
    let (snap, from, to) = (q(snap), q(chan_from), q(chan_to));
    if coh_from != coh_to {
        if coh_to.is_empty() {
            if chan_from == chan_to {
                return format!("Switch snap {snap} away from cohort {cf}");
            }
            if chan_from.is_empty() {
                return format!("Switch snap {snap} to channel {to} and away from cohort {cf}");
            }
            return format!(
                "Switch snap {snap} from channel {from} to {to} and away from cohort {cf}"
            );
        }
        if coh_from.is_empty() {
            if chan_from == chan_to {
                return format!("Switch snap {snap} from no cohort to {ct}");
            }
            if chan_from.is_empty() {
                return format!("Switch snap {snap} to channel {to} and from no cohort to {ct}");
            }
            return format!(
                "Switch snap {snap} from channel {from} to {to} and from no cohort to {ct}"
            );
        }
        if chan_from == chan_to {
            return format!("Switch snap {snap} from cohort {cf} to {ct}");
        }
        if chan_from.is_empty() {
            return format!("Switch snap {snap} to channel {to} and from cohort {cf} to {ct}");
        }
        return format!(
            "Switch snap {snap} from channel {from} to {to} and from cohort {cf} to {ct}"
        );
    }
    if chan_from.is_empty() {
        return format!("Switch snap {snap} to channel {to}");
    }
    if chan_from != chan_to {
        return format!("Switch snap {snap} from channel {from} to {to}");
    }
    "No change switch (no-op)".to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_and_keys() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        // The real key of snapd's store/tooling/tooling_test.go.
        assert_eq!(
            base64(b"1 Hswp9oOzj3b4mw8gcC00XtxWnKH9QiCQ 1555411415 0cc2a575f3c947d101a553cead6afd17ebaa62638ed7dc3629be8b4770027e09"),
            "MSBIc3dwOW9PemozYjRtdzhnY0MwMFh0eFduS0g5UWlDUSAxNTU1NDExNDE1IDBjYzJhNTc1ZjNjOTQ3ZDEwMWE1NTNjZWFkNmFmZDE3ZWJhYTYyNjM4ZWQ3ZGMzNjI5YmU4YjQ3NzAwMjdlMDk="
        );
        let a = cohort_key("id", 1_555_411_415, 1);
        let b = cohort_key("id", 1_555_411_415, 2);
        assert_ne!(a, b);
        assert_eq!(a.len(), b.len());
        assert!(a.starts_with("MSBpZCAxNTU1NDExNDE1I"), "{a}");
        assert!(a.ends_with('='), "{a}");
    }

    #[test]
    fn ellipsis_and_switch_summaries() {
        assert_eq!(ellipt_left("AbCdEfGhIjKlMnOpQrStUvWxYz", 10), "…rStUvWxYz");
        assert_eq!(ellipt_left("short", 10), "short");
        let key = "MSBIc3dwOW9PemozYjRtdzhnY0MwMFh0eFduS0g5UWlDUSAxNTU1NDExNDE1IDBjYzJhNTc1ZjNjOTQ3ZDEwMWE1NTNjZWFkNmFmZDE3ZWJhYTYyNjM4ZWQ3ZGMzNjI5YmU4YjQ3NzAwMjdlMDk=";
        assert_eq!(
            switch_summary("m", "latest/edge", "latest/edge", "", key),
            "Switch snap \"m\" from no cohort to \"…wMjdlMDk=\""
        );
        assert_eq!(
            switch_summary("m", "latest/edge", "latest/beta", key, ""),
            "Switch snap \"m\" from channel \"latest/edge\" to \"latest/beta\" and away from cohort \"…wMjdlMDk=\""
        );
        assert_eq!(
            switch_summary("m", "latest/edge", "latest/beta", "", ""),
            "Switch snap \"m\" from channel \"latest/edge\" to \"latest/beta\""
        );
        assert_eq!(
            switch_summary("m", "", "edge", "", ""),
            "Switch snap \"m\" to channel \"edge\""
        );
    }

    #[test]
    fn releases_follow_and_branches_do_not() {
        let mut map = ChannelMap::new();
        map.insert("1.0/stable".into(), Release::good(20, "1.0.0"));
        map.insert("latest/edge/fix".into(), Release::good(40, "x"));
        assert_eq!(release_in(&map, "1.0/edge").unwrap().0, "1.0/stable");
        assert_eq!(release_in(&map, "latest/edge/fix").unwrap().1.revision, 40);
        assert!(release_in(&map, "latest/edge").is_none());
        assert!(release_in(&map, "1.0/stable/fix").is_none());
        assert_eq!(
            releases_value(&map),
            json!([{"architecture": "amd64", "channel": "edge/fix"},
                   {"architecture": "amd64", "channel": "1.0/stable"}])
        );
    }
}
