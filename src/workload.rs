//! The microsample service itself: the port it listens on ([`Port`]), whether it answers
//! (`GET http://127.0.0.1:<port>/` must return 200 `Online`, docs/snapd-api.md#microsample), and
//! whether the running revision serves Prometheus text on `/metrics`.
//!
//! The loopback address is used rather than `localhost` so no name lookup is needed (the
//! binary is static and has no NSS modules to load). Every probe ends by its deadline.
//!
//! Whether a revision serves `/metrics` is a fact about its files, and a store revision's
//! files never change (snapd installs a store snap only when its digest matches the
//! store's signed `snap-revision` assertion, docs/snapd-api.md#revisions). So
//! [`MetricsRevisions`] keeps, machine-wide, the store revisions once seen serving
//! Prometheus text, and `/metrics` is asked again only for a revision not among them. A
//! revision that did not answer is never kept: the next hook asks again. Nothing Juju or
//! snapd shows is kept: the running revision comes from snapd in the same hook.

use std::fmt;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deadline::Deadline;
use crate::http::{self, HttpError};

/// How long one probe may take.
pub(crate) const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// Only the start of `/` matters; `/metrics` of microsample is a few hundred bytes.
const MAX_ROOT_BODY: usize = 4096;
const MAX_METRICS_BODY: usize = 256 * 1024;

/// A port microsample may listen on: unprivileged, so never one a system service owns.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Port(u16);

impl Port {
    /// The lowest and highest port the charm accepts.
    pub(crate) const MIN: u16 = 1024;
    pub(crate) const MAX: u16 = 65535;

    pub(crate) fn new(port: i64) -> Option<Port> {
        u16::try_from(port)
            .ok()
            .filter(|p| *p >= Port::MIN)
            .map(Port)
    }

    pub(crate) fn get(self) -> u16 {
        self.0
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// What one probe of `/` saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Health {
    /// 200 `Online`.
    Online,
    /// Nothing listens on the port (connection refused).
    NotListening,
    /// Something holds the port but gave no whole answer before the deadline.
    Silent,
    /// An answer other than 200 `Online`, described.
    Wrong(String),
}

impl Health {
    pub(crate) fn is_online(&self) -> bool {
        matches!(self, Health::Online)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Online => f.write_str("online"),
            Health::NotListening => f.write_str("nothing listens on the port"),
            Health::Silent => f.write_str("the port accepts connections but does not answer"),
            Health::Wrong(what) => f.write_str(what),
        }
    }
}

/// Probes microsample on `port` (over `client`'s kept connection, when it has one: not
/// with microsample's Werkzeug, which closes each, docs/snapd-api.md#microsample).
pub(crate) fn probe(client: &mut http::TcpClient, port: Port, deadline: Deadline) -> Health {
    let response = match client.get(port.get(), "/", MAX_ROOT_BODY, deadline) {
        Ok(response) => response,
        Err(HttpError::Connect(_)) => return Health::NotListening,
        Err(HttpError::Timeout) => return Health::Silent,
        Err(e) => return Health::Wrong(format!("port {port} answered {e}")),
    };
    let body = String::from_utf8_lossy(&response.body);
    match response.status {
        200 if body.trim() == "Online" => Health::Online,
        200 => Health::Wrong(format!(
            "port {port} answered {} instead of 'Online'",
            crate::text::quoted(body.trim(), 40)
        )),
        status => Health::Wrong(format!("port {port} answered HTTP {status}")),
    }
}

/// Whether `GET /metrics` answers Prometheus exposition text (revisions of microsample
/// built before May 2023 serve no `/metrics`, docs/snapd-api.md#microsample).
fn serves_metrics(client: &mut http::TcpClient, port: Port, deadline: Deadline) -> bool {
    match client.get(port.get(), "/metrics", MAX_METRICS_BODY, deadline) {
        Ok(response) if response.status == 200 => crate::cos::is_prometheus_text(
            response.content_type.as_deref(),
            &String::from_utf8_lossy(&response.body),
        ),
        _ => false,
    }
}

/// The store revisions of microsample seen serving Prometheus text on `/metrics`, in
/// `metrics-revisions.json` of the charm's machine-wide state directory (next to the
/// claim, `crate::claim`): `{"v":1,"revisions":["34","57"]}`, oldest first, at most
/// [`MetricsRevisions::KEPT`]. Any unreadable file counts as empty, and any failure to
/// write it costs only a later probe: it is never a reason to fail a hook.
#[derive(Debug, Clone)]
pub(crate) struct MetricsRevisions {
    path: PathBuf,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct RevisionsFile {
    v: u32,
    revisions: Vec<String>,
}

impl MetricsRevisions {
    /// How many revisions are kept: a machine goes back and forth between a few channels.
    pub(crate) const KEPT: usize = 8;
    /// The file is a few hundred bytes; anything larger is not ours.
    const MAX_BYTES: u64 = 4096;

    /// The file in `dir` (the claim directory, which exists once this unit manages
    /// microsample: only then does it probe).
    pub(crate) fn in_dir(dir: &Path) -> MetricsRevisions {
        MetricsRevisions {
            path: dir.join("metrics-revisions.json"),
        }
    }

    /// Whether `revision` of microsample serves `/metrics`: known, or asked on `port` now
    /// (and kept when it does). Only store revisions (digits) are kept or looked up.
    pub(crate) fn serves_metrics(
        &self,
        client: &mut http::TcpClient,
        port: Port,
        revision: &str,
        deadline: Deadline,
    ) -> bool {
        let store = !revision.is_empty() && revision.bytes().all(|b| b.is_ascii_digit());
        let mut known = if store { self.read() } else { Vec::new() };
        if known.iter().any(|r| r == revision) {
            return true;
        }
        let serves = serves_metrics(client, port, deadline);
        if serves && store {
            known.push(revision.to_string());
            let excess = known.len().saturating_sub(Self::KEPT);
            known.drain(..excess);
            if let Err(e) = self.write(known) {
                log::debug!("cannot keep {}: {e}", self.path.display());
            }
        }
        serves
    }

    fn read(&self) -> Vec<String> {
        let mut text = Vec::new();
        let read = fs::File::open(&self.path)
            .and_then(|f| f.take(Self::MAX_BYTES + 1).read_to_end(&mut text));
        if read.is_err() || text.len() as u64 > Self::MAX_BYTES {
            return Vec::new();
        }
        match serde_json::from_slice::<RevisionsFile>(&text) {
            Ok(file) if file.v == 1 => file.revisions,
            _ => Vec::new(),
        }
    }

    /// Replaces the file whole (a new name, then `rename`), so a reader sees the old list
    /// or the new one; two hooks writing at once lose at most one entry.
    fn write(&self, revisions: Vec<String>) -> io::Result<()> {
        let text = serde_json::to_vec(&RevisionsFile { v: 1, revisions })?;
        let tmp = self
            .path
            .with_extension(format!("json.{}.tmp", std::process::id()));
        let written = fs::File::create(&tmp).and_then(|mut f| f.write_all(&text));
        match written.and_then(|()| fs::rename(&tmp, &self.path)) {
            Ok(()) => Ok(()),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};
    use std::net::TcpListener;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn answer(response: &'static [u8]) -> Port {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(response);
        });
        Port(port)
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    #[test]
    fn ports_below_1024_and_out_of_range_are_refused() {
        assert_eq!(Port::new(8080).map(Port::get), Some(8080));
        assert_eq!(Port::new(1024).map(Port::get), Some(1024));
        assert_eq!(Port::new(65535).map(Port::get), Some(65535));
        for bad in [-1, 0, 80, 1023, 65536, i64::MAX] {
            assert_eq!(Port::new(bad), None, "{bad}");
        }
    }

    #[test]
    fn online_and_other_answers() {
        let port = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nOnline");
        assert_eq!(
            probe(&mut http::TcpClient::default(), port, soon()),
            Health::Online
        );
        let port = answer(b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n");
        assert_eq!(
            probe(&mut http::TcpClient::default(), port, soon()),
            Health::Wrong(format!("port {port} answered HTTP 500"))
        );
        let port = answer(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello");
        assert_eq!(
            probe(&mut http::TcpClient::default(), port, soon()),
            Health::Wrong(format!("port {port} answered 'hello' instead of 'Online'"))
        );
    }

    #[test]
    fn nothing_listening_and_silence() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert_eq!(
            probe(&mut http::TcpClient::default(), Port(port), soon()),
            Health::NotListening
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = Port(listener.local_addr().unwrap().port());
        let deadline = Deadline::after(Duration::from_millis(200));
        assert_eq!(
            probe(&mut http::TcpClient::default(), port, deadline),
            Health::Silent
        );
        drop(listener);
    }

    /// Answers every connection with `response`, counting them.
    fn counting(response: &'static [u8]) -> (Port, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = Port(listener.local_addr().unwrap().port());
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                seen.fetch_add(1, Ordering::SeqCst);
                let mut buf = [0u8; 1024];
                let _ = stream.read(&mut buf);
                let _ = stream.write_all(response);
            }
        });
        (port, count)
    }

    const PROMETHEUS: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: 67\r\nConnection: close\r\n\r\n# TYPE microsample_calls_total counter\nmicrosample_calls_total 3.0\n";
    const NOT_FOUND: &[u8] =
        b"HTTP/1.1 404 NOT FOUND\r\nContent-Type: text/html\r\nContent-Length: 9\r\n\r\nnot found";

    fn kept(dir: &Path) -> Value {
        serde_json::from_slice(&fs::read(dir.join("metrics-revisions.json")).unwrap()).unwrap()
    }

    #[test]
    fn a_store_revision_that_served_metrics_is_not_asked_again() {
        let dir = tempfile::tempdir().unwrap();
        let memo = MetricsRevisions::in_dir(dir.path());
        let (port, asked) = counting(PROMETHEUS);
        let mut client = http::TcpClient::default();
        for _ in 0..3 {
            assert!(memo.serves_metrics(&mut client, port, "34", soon()));
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(memo.serves_metrics(&mut client, port, "35", soon()));
        assert!(memo.serves_metrics(&mut client, port, "34", soon()));
        assert_eq!(asked.load(Ordering::SeqCst), 2, "35 is asked once");
        assert_eq!(kept(dir.path()), json!({"v": 1, "revisions": ["34", "35"]}));
    }

    #[test]
    fn a_revision_without_metrics_and_a_local_revision_are_asked_every_time() {
        let dir = tempfile::tempdir().unwrap();
        let memo = MetricsRevisions::in_dir(dir.path());
        let (port, asked) = counting(NOT_FOUND);
        let mut client = http::TcpClient::default();
        assert!(!memo.serves_metrics(&mut client, port, "12", soon()));
        assert!(!memo.serves_metrics(&mut client, port, "12", soon()));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        // Installed from a file: its files are whatever was side-loaded.
        let (port, asked) = counting(PROMETHEUS);
        assert!(memo.serves_metrics(&mut client, port, "x1", soon()));
        assert!(memo.serves_metrics(&mut client, port, "x1", soon()));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
        assert!(!dir.path().join("metrics-revisions.json").exists());
    }

    #[test]
    fn an_unreadable_file_counts_as_empty_and_only_the_newest_revisions_are_kept() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("metrics-revisions.json");
        let memo = MetricsRevisions::in_dir(dir.path());
        let (port, asked) = counting(PROMETHEUS);
        let mut client = http::TcpClient::default();
        for garbage in [
            &b"{\"v\":2,\"revisions\":[\"34\"]}"[..],
            b"\x00garbage",
            &[b' '; 5000],
        ] {
            fs::write(&file, garbage).unwrap();
            let before = asked.load(Ordering::SeqCst);
            assert!(memo.serves_metrics(&mut client, port, "34", soon()));
            assert_eq!(asked.load(Ordering::SeqCst), before + 1);
            assert_eq!(kept(dir.path()), json!({"v": 1, "revisions": ["34"]}));
        }
        let eight: Vec<String> = (1..=8).map(|r| r.to_string()).collect();
        fs::write(&file, json!({"v": 1, "revisions": eight}).to_string()).unwrap();
        assert!(memo.serves_metrics(&mut client, port, "9", soon()));
        let kept = kept(dir.path());
        assert_eq!(
            kept["revisions"].as_array().unwrap().len(),
            MetricsRevisions::KEPT
        );
        assert_eq!(kept["revisions"][0], "2", "the oldest goes: {kept}");
        assert_eq!(kept["revisions"][7], "9");
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(
            leftovers,
            ["metrics-revisions.json"],
            "no temporary file stays"
        );
    }

    #[test]
    fn a_memory_that_cannot_be_written_costs_a_probe_not_the_answer() {
        let dir = tempfile::tempdir().unwrap();
        let memo = MetricsRevisions::in_dir(&dir.path().join("missing"));
        let (port, asked) = counting(PROMETHEUS);
        let mut client = http::TcpClient::default();
        assert!(memo.serves_metrics(&mut client, port, "34", soon()));
        assert!(memo.serves_metrics(&mut client, port, "34", soon()));
        assert_eq!(asked.load(Ordering::SeqCst), 2);
    }
}
