//! A small client for snapd's REST API over its Unix socket. It only reads: what is
//! installed (`GET /v2/snaps/<name>`) and the snap's `port` setting
//! (`GET /v2/snaps/<name>/conf?keys=port`), parsed here into types (docs/snapd-api.md#envelope,
//! docs/snapd-api.md#snap-object).
//!
//! Every request has a deadline and a bounded body, so a sick snapd can make a hook fail
//! but never hang it or exhaust memory.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::deadline::Deadline;
use std::cell::RefCell;

use crate::http::{self, HttpError};

/// Where snapd listens; tests point `SNAPD_SOCKET` elsewhere.
pub(crate) const DEFAULT_SOCKET: &str = "/run/snapd.socket";
/// snapd answers reads in milliseconds; seconds mean it is wedged.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A snap object is a few KiB; anything near this is not snapd talking.
pub(crate) const MAX_BODY: usize = 1 << 20;

/// What the charm needs to know about an installed snap (`GET /v2/snaps/<name>`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Snap {
    /// The snap's name.
    pub name: String,
    /// The version its publisher gave the installed revision.
    pub version: String,
    /// `"29"`, or `"x1"` for a revision installed from a file.
    #[serde(deserialize_with = "revision")]
    pub revision: String,
    /// Fully qualified (`latest/edge`); absent for snaps installed from a file.
    #[serde(default)]
    pub tracking_channel: Option<String>,
    /// The cohort the snap was installed or refreshed in, if any.
    #[serde(default)]
    pub cohort_key: Option<String>,
    /// The snap's apps, services among them.
    #[serde(default)]
    pub apps: Vec<App>,
}

/// One of a snap's apps; `enabled` and `active` are omitted by snapd when false.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct App {
    /// The app's name.
    pub name: String,
    /// Set for services (`simple`, `forking`, ...).
    #[serde(default)]
    pub daemon: Option<String>,
    /// Started at boot.
    #[serde(default)]
    pub enabled: bool,
    /// Running now.
    #[serde(default)]
    pub active: bool,
}

impl Snap {
    /// Whether the snap's services are running (a snap without services has none to run).
    pub fn services_active(&self) -> bool {
        self.apps
            .iter()
            .filter(|a| a.daemon.is_some())
            .all(|a| a.active)
    }

    /// A snap installed from a file (`snap install ./x.snap --dangerous`): snapd gives it a
    /// local `x<N>` revision and no tracking channel (docs/snapd-api.md#snap-object). The store
    /// cannot refresh it.
    pub(crate) fn installed_from_file(&self) -> bool {
        self.revision.starts_with('x') || self.tracking_channel.is_none()
    }
}

/// snapd emits revisions as strings (`"42"`, `"x1"`); old clients' fixtures use numbers.
fn revision<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    match Value::deserialize(d)? {
        Value::String(s) => Ok(s),
        Value::Number(n) => Ok(n.to_string()),
        other => Err(serde::de::Error::custom(format!(
            "revision {other} is not a string"
        ))),
    }
}

/// The snap's `port` setting as snapd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSetting {
    /// Never set.
    Unset,
    /// A port number (`snap set` stores `8080` as a number; a numeric string counts too).
    Port(u16),
    /// Anything else, as JSON text.
    Invalid(String),
}

impl PortSetting {
    fn from_value(value: Option<Value>) -> PortSetting {
        match value {
            None | Some(Value::Null) => PortSetting::Unset,
            Some(Value::Number(n)) => match n.as_u64().and_then(|p| u16::try_from(p).ok()) {
                Some(port) => PortSetting::Port(port),
                None => PortSetting::Invalid(n.to_string()),
            },
            Some(Value::String(s)) => match s.parse() {
                Ok(port) => PortSetting::Port(port),
                Err(_) => PortSetting::Invalid(format!("{s:?}")),
            },
            Some(other) => PortSetting::Invalid(other.to_string()),
        }
    }
}

/// Why a snapd request did not give an answer the charm can use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapdError {
    /// No connection: socket missing, refused, or snapd not running.
    Unreachable(String),
    /// No complete answer before the deadline.
    Timeout(Duration),
    /// An answer that is not snapd's JSON envelope (truncated, too large, not JSON).
    Protocol(String),
    /// snapd's own error response.
    Api {
        /// The HTTP status.
        status: u16,
        /// snapd's error kind, when it gave one.
        kind: Option<String>,
        /// snapd's message.
        message: String,
    },
}

impl fmt::Display for SnapdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapdError::Unreachable(e) => write!(f, "cannot reach snapd: {e}"),
            SnapdError::Timeout(t) => write!(f, "snapd did not answer within {}s", t.as_secs()),
            SnapdError::Protocol(e) => write!(f, "unexpected answer from snapd: {e}"),
            SnapdError::Api {
                status,
                kind,
                message,
            } => match kind {
                Some(kind) => write!(f, "snapd error {status} ({kind}): {message}"),
                None => write!(f, "snapd error {status}: {message}"),
            },
        }
    }
}

impl std::error::Error for SnapdError {}

#[derive(Deserialize)]
struct ErrorResult {
    #[serde(default)]
    message: String,
    #[serde(default)]
    kind: Option<String>,
}

/// Decodes a snapd response body (the envelope of `daemon/response.go`): the `result` of a
/// sync response, or the error it carries. Only a JSON object is an envelope.
pub fn decode(status: u16, body: &[u8]) -> Result<Value, SnapdError> {
    let not_snapd = |why: String| SnapdError::Protocol(format!("HTTP {status}, {why}"));
    let envelope: Value = serde_json::from_slice(body)
        .map_err(|e| not_snapd(format!("body is not snapd JSON ({e})")))?;
    let Value::Object(mut envelope) = envelope else {
        return Err(not_snapd("body is not a JSON object".into()));
    };
    let result = envelope.remove("result").unwrap_or_default();
    match envelope.get("type").and_then(Value::as_str) {
        Some("sync") if (200..300).contains(&status) => Ok(result),
        Some("error") if result.is_object() => {
            let error: ErrorResult = serde_json::from_value(result)
                .map_err(|e| not_snapd(format!("malformed error result ({e})")))?;
            Err(SnapdError::Api {
                status,
                kind: error.kind.filter(|k| !k.is_empty()),
                message: error.message,
            })
        }
        other => Err(not_snapd(format!(
            "response type {other:?} with a {} result",
            kind_of(&result)
        ))),
    }
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Decodes `GET /v2/snaps/<name>`: `None` when snapd says the snap is not installed.
pub fn decode_snap(status: u16, body: &[u8]) -> Result<Option<Snap>, SnapdError> {
    match decode(status, body) {
        Ok(result @ Value::Object(_)) => serde_json::from_value(result)
            .map(Some)
            .map_err(|e| SnapdError::Protocol(format!("snap object: {e}"))),
        Ok(other) => Err(SnapdError::Protocol(format!(
            "snap result is a {}",
            kind_of(&other)
        ))),
        Err(SnapdError::Api {
            kind: Some(kind), ..
        }) if kind == "snap-not-found" => Ok(None),
        Err(e) => Err(e),
    }
}

/// The client: the socket and the time each request may take.
pub struct SnapdClient {
    timeout: Duration,
    /// One connection for the client's requests (a hook makes two: the snap, its port).
    connection: RefCell<http::UnixClient>,
}

impl SnapdClient {
    /// A client for the socket at `socket`, each request bounded by `timeout`.
    pub fn new(socket: impl Into<PathBuf>, timeout: Duration) -> SnapdClient {
        SnapdClient {
            connection: RefCell::new(http::UnixClient::new(socket)),
            timeout,
        }
    }

    /// The client for the socket named by `SNAPD_SOCKET`, or snapd's default socket.
    pub(crate) fn from_env() -> SnapdClient {
        let socket = std::env::var_os("SNAPD_SOCKET").unwrap_or_else(|| DEFAULT_SOCKET.into());
        SnapdClient::new(PathBuf::from(socket), REQUEST_TIMEOUT)
    }

    /// `GET <path>`: the HTTP status and the body.
    pub fn get(&self, path: &str) -> Result<(u16, Vec<u8>), SnapdError> {
        let deadline = Deadline::after(self.timeout);
        let answer = self.connection.borrow_mut().get(path, MAX_BODY, deadline);
        answer
            .map(|response| (response.status, response.body))
            .map_err(|e| self.failed(e))
    }

    fn failed(&self, error: HttpError) -> SnapdError {
        match error {
            HttpError::Connect(e) => SnapdError::Unreachable(e.to_string()),
            HttpError::Timeout => SnapdError::Timeout(self.timeout),
            e => SnapdError::Protocol(e.to_string()),
        }
    }

    /// The installed snap, or `None` when it is not installed.
    pub fn snap(&self, name: &str) -> Result<Option<Snap>, SnapdError> {
        let (status, body) = self.get(&snap_path(name))?;
        decode_snap(status, &body)
    }

    /// The installed snap, and its `port` setting asked in the same round trip (both
    /// requests sent at once, docs/snapd-api.md#http), each request with the client's
    /// timeout. The outer error is the snap's; the setting's is its own.
    pub fn snap_and_port_setting(&self, name: &str) -> Result<SnapAndPort, SnapdError> {
        let (snap, conf) = (snap_path(name), conf_path(name));
        let deadline = Deadline::after(self.timeout);
        let gets = [(snap.as_str(), MAX_BODY), (conf.as_str(), MAX_BODY)];
        let answers = self
            .connection
            .borrow_mut()
            .get_all(&gets, deadline, self.timeout);
        let error = answers.error.map(|e| self.failed(e));
        let missing = || {
            error
                .clone()
                .unwrap_or_else(|| SnapdError::Protocol("no answer".into()))
        };
        let mut responses = answers.responses.into_iter();
        let snap = match responses.next() {
            Some(r) => decode_snap(r.status, &r.body)?,
            None => return Err(missing()),
        };
        let port = match responses.next() {
            Some(r) => port_from(r.status, &r.body),
            None => Err(missing()),
        };
        Ok((snap, port))
    }

    /// The snap's `port` setting.
    pub fn port_setting(&self, name: &str) -> Result<PortSetting, SnapdError> {
        let (status, body) = self.get(&conf_path(name))?;
        port_from(status, &body)
    }
}

/// The installed snap and the answer about its `port` setting.
pub(crate) type SnapAndPort = (Option<Snap>, Result<PortSetting, SnapdError>);

fn snap_path(name: &str) -> String {
    format!("/v2/snaps/{name}")
}

fn conf_path(name: &str) -> String {
    format!("/v2/snaps/{name}/conf?keys=port")
}

/// The `port` setting in snapd's answer to [`conf_path`].
fn port_from(status: u16, body: &[u8]) -> Result<PortSetting, SnapdError> {
    match decode(status, body) {
        Ok(mut result) => Ok(PortSetting::from_value(
            result.get_mut("port").map(Value::take),
        )),
        // snapd answers 400 option-not-found for a key that was never set.
        Err(SnapdError::Api {
            kind: Some(kind), ..
        }) if kind == "option-not-found" => Ok(PortSetting::Unset),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A microsample snap object shaped like snapd's (docs/snapd-api.md#snap-object).
    const INSTALLED: &str = r#"{"type":"sync","status-code":200,"status":"OK","result":{"id":"abc","title":"microsample","summary":"A simple flask microservice on 0.0.0.0:8080","description":"Get service status with: curl http://hostip:8080/  (Will return \"Online\" if OK)\n","installed-size":65536,"install-date":"2024-04-11T12:15:56.850202878+00:00","name":"microsample","publisher":{"id":"pub","username":"erik78se","display-name":"Erik","validation":"unproven"},"developer":"erik78se","status":"active","type":"app","base":"core22","version":"0+git.49ff7aa","channel":"latest/edge","tracking-channel":"latest/edge","ignore-validation":false,"revision":"29","confinement":"strict","grade":"devel","private":false,"devmode":false,"jailmode":false,"apps":[{"snap":"microsample","name":"microsample","daemon":"simple","daemon-scope":"system","enabled":true,"active":true}],"mounted-from":"/var/lib/snapd/snaps/microsample_29.snap","contact":""}}"#;

    #[test]
    fn decodes_an_installed_snap() {
        let snap = decode_snap(200, INSTALLED.as_bytes()).unwrap().unwrap();
        assert_eq!(snap.version, "0+git.49ff7aa");
        assert_eq!(snap.revision, "29");
        assert_eq!(snap.tracking_channel.as_deref(), Some("latest/edge"));
        assert!(snap.services_active());
    }

    #[test]
    fn a_stopped_service_has_no_active_key() {
        let stopped = INSTALLED.replace(r#""enabled":true,"active":true"#, r#""enabled":true"#);
        let snap = decode_snap(200, stopped.as_bytes()).unwrap().unwrap();
        assert!(!snap.apps[0].active);
        assert!(!snap.services_active());
    }

    #[test]
    fn numeric_revisions_and_missing_tracking_channel() {
        let body = r#"{"type":"sync","result":{"name":"bw","version":"2024.3.1","revision":60,"channel":"","links":null}}"#;
        let snap = decode_snap(200, body.as_bytes()).unwrap().unwrap();
        assert_eq!(snap.revision, "60");
        assert_eq!(snap.tracking_channel, None);
        assert!(snap.apps.is_empty());
    }

    #[test]
    fn not_installed_is_none() {
        let body = r#"{"type":"error","status-code":404,"status":"Not Found","result":{"message":"snap not installed","kind":"snap-not-found","value":"microsample"}}"#;
        assert_eq!(decode_snap(404, body.as_bytes()), Ok(None));
    }

    #[test]
    fn an_unknown_url_is_an_error_not_absence() {
        let body = r#"{"type":"error","status-code":404,"status":"Not Found","result":{"message":"not found"}}"#;
        assert_eq!(
            decode_snap(404, body.as_bytes()),
            Err(SnapdError::Api {
                status: 404,
                kind: None,
                message: "not found".into()
            })
        );
    }

    #[test]
    fn error_kinds_are_kept() {
        let body = r#"{"type":"error","status-code":500,"status":"Internal Server Error","result":{"message":"system does not fully support snapd: cannot mount squashfs"}}"#;
        let err = decode_snap(500, body.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("cannot mount squashfs"), "{err}");
        let conflict = r#"{"type":"error","status-code":409,"status":"Conflict","result":{"message":"too early for operation, device not yet seeded or device model not acknowledged","kind":"snap-change-conflict","value":{"change-kind":"seed"}}}"#;
        assert!(matches!(
            decode(409, conflict.as_bytes()),
            Err(SnapdError::Api { status: 409, kind: Some(k), .. }) if k == "snap-change-conflict"
        ));
    }

    #[test]
    fn async_responses_are_not_results() {
        let body =
            r#"{"type":"async","status-code":202,"status":"Accepted","result":null,"change":"42"}"#;
        assert!(matches!(
            decode(202, body.as_bytes()),
            Err(SnapdError::Protocol(_))
        ));
    }

    #[test]
    fn garbage_is_a_protocol_error() {
        for body in [
            "",
            "{",
            "<html>",
            "{\"type\":\"sync\",\"result\":{\"name\":1}}",
            "null",
        ] {
            assert!(
                matches!(
                    decode_snap(200, body.as_bytes()),
                    Err(SnapdError::Protocol(_))
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn a_missing_socket_is_unreachable() {
        let client = SnapdClient::new("/nonexistent/snapd.socket", Duration::from_secs(2));
        assert!(matches!(
            client.snap("microsample"),
            Err(SnapdError::Unreachable(_))
        ));
    }

    /// Serves one raw HTTP response on a fresh socket and returns the request it received.
    fn serve_once(response: Vec<u8>) -> (tempdir_path::Dir, std::thread::JoinHandle<String>) {
        use std::io::{BufRead, BufReader, Write};
        let dir = tempdir_path::Dir::new();
        let listener = std::os::unix::net::UnixListener::bind(dir.socket()).unwrap();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                request.push_str(&line);
            }
            let mut stream = stream;
            let _ = stream.write_all(&response);
            request
        });
        (dir, server)
    }

    /// A unique socket path in the system temp dir, removed on drop.
    mod tempdir_path {
        pub(super) struct Dir(std::path::PathBuf);
        impl Dir {
            pub(super) fn new() -> Dir {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let n = N.fetch_add(1, Ordering::SeqCst);
                let path =
                    std::env::temp_dir().join(format!("snapd-client-{}-{n}", std::process::id()));
                std::fs::create_dir_all(&path).unwrap();
                Dir(path)
            }
            pub(super) fn socket(&self) -> std::path::PathBuf {
                self.0.join("snapd.socket")
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    fn client(dir: &tempdir_path::Dir) -> SnapdClient {
        SnapdClient::new(dir.socket(), Duration::from_secs(5))
    }

    #[test]
    fn reads_chunked_bodies_and_sends_a_host_header() {
        let (head, tail) = INSTALLED.split_at(700);
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{head}\r\n{:x}\r\n{tail}\r\n0\r\n\r\n",
            head.len(),
            tail.len()
        );
        let (dir, server) = serve_once(response.into_bytes());
        let snap = client(&dir).snap("microsample").unwrap().unwrap();
        assert_eq!(snap.version, "0+git.49ff7aa");
        let request = server.join().unwrap();
        assert!(
            request.starts_with("GET /v2/snaps/microsample HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request.to_ascii_lowercase().contains("\r\nhost: "),
            "{request}"
        );
    }

    #[test]
    fn reads_content_length_bodies() {
        let body = r#"{"type":"error","status-code":404,"status":"Not Found","result":{"message":"snap not installed","kind":"snap-not-found","value":"microsample"}}"#;
        let response = format!("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        let (dir, _server) = serve_once(response.into_bytes());
        assert_eq!(client(&dir).snap("microsample"), Ok(None));
    }

    #[test]
    fn an_oversized_body_is_refused_not_buffered() {
        let response =
            format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", 50 << 20).into_bytes();
        let (dir, _server) = serve_once(response);
        let err = client(&dir).snap("microsample").unwrap_err();
        assert!(matches!(err, SnapdError::Protocol(_)), "{err}");
    }

    #[test]
    fn port_settings_are_typed() {
        use serde_json::json;
        for (value, setting) in [
            (None, PortSetting::Unset),
            (Some(Value::Null), PortSetting::Unset),
            (Some(json!(8081)), PortSetting::Port(8081)),
            (Some(json!("8081")), PortSetting::Port(8081)),
            (Some(json!(70000)), PortSetting::Invalid("70000".into())),
            (Some(json!("abc")), PortSetting::Invalid("\"abc\"".into())),
            (Some(json!([1])), PortSetting::Invalid("[1]".into())),
        ] {
            assert_eq!(PortSetting::from_value(value.clone()), setting, "{value:?}");
        }
    }

    #[test]
    fn the_snap_and_its_port_come_in_one_round_trip_each_with_its_own_error() {
        let answer = |body: &str| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        };
        let port = r#"{"type":"sync","status-code":200,"status":"OK","result":{"port":8081}}"#;
        // The server reads one request head and writes both answers: the second request
        // was sent on the same connection without waiting for the first answer.
        let both = answer(INSTALLED) + &answer(port);
        let (dir, server) = serve_once(both.into_bytes());
        let (snap, setting) = client(&dir).snap_and_port_setting("microsample").unwrap();
        assert_eq!(snap.unwrap().version, "0+git.49ff7aa");
        assert_eq!(setting, Ok(PortSetting::Port(8081)));
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /v2/snaps/microsample HTTP/1.1\r\n"));
        // Only the snap is answered before snapd goes away: the snap stands, the setting
        // fails on its own.
        let closing = answer(INSTALLED).replacen("\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1);
        let failing = r#"{"type":"error","status-code":500,"status":"Internal Server Error","result":{"message":"boom"}}"#;
        let failing = format!(
            "HTTP/1.1 500 Internal Server Error\r\nContent-Length: {}\r\n\r\n{failing}",
            failing.len()
        );
        let dir = tempdir_path::Dir::new();
        let listener = std::os::unix::net::UnixListener::bind(dir.socket()).unwrap();
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let mut heads = Vec::new();
            for answer in [closing, failing] {
                let (mut stream, _) = listener.accept().unwrap();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                    head.push(byte[0]);
                }
                heads.push(String::from_utf8(head).unwrap());
                stream.write_all(answer.as_bytes()).unwrap();
            }
            heads
        });
        let (snap, setting) = client(&dir).snap_and_port_setting("microsample").unwrap();
        assert!(snap.is_some());
        assert!(
            matches!(setting, Err(SnapdError::Api { status: 500, .. })),
            "{setting:?}"
        );
        let heads = server.join().unwrap();
        assert!(
            heads[1].starts_with("GET /v2/snaps/microsample/conf?keys=port "),
            "{heads:?}"
        );
        // Nothing answers at all: the snap's error.
        assert!(matches!(
            client(&dir).snap_and_port_setting("microsample"),
            Err(SnapdError::Unreachable(_))
        ));
    }

    #[test]
    fn reads_the_port_setting_and_an_unset_one() {
        let body = r#"{"type":"sync","status-code":200,"status":"OK","result":{"port":8081}}"#;
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (dir, server) = serve_once(response.into_bytes());
        assert_eq!(
            client(&dir).port_setting("microsample"),
            Ok(PortSetting::Port(8081))
        );
        assert!(server
            .join()
            .unwrap()
            .starts_with("GET /v2/snaps/microsample/conf?keys=port HTTP/1.1\r\n"));
        let body = r#"{"type":"error","status-code":400,"status":"Bad Request","result":{"message":"snap \"microsample\" has no \"port\" configuration option","kind":"option-not-found","value":{"SnapName":"microsample","Key":"port"}}}"#;
        let response = format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let (dir, _server) = serve_once(response.into_bytes());
        assert_eq!(
            client(&dir).port_setting("microsample"),
            Ok(PortSetting::Unset)
        );
    }

    #[test]
    fn installed_from_file() {
        let snap = decode_snap(200, INSTALLED.as_bytes()).unwrap().unwrap();
        assert!(!snap.installed_from_file());
        let local = INSTALLED
            .replace(r#""tracking-channel":"latest/edge","#, "")
            .replace(r#""revision":"29""#, r#""revision":"x1""#);
        let snap = decode_snap(200, local.as_bytes()).unwrap().unwrap();
        assert!(snap.installed_from_file());
    }
}
