//! The microsample service itself: the port it listens on ([`Port`]), whether it answers
//! (`GET http://127.0.0.1:<port>/` must return 200 `Online`, docs/snapd-api.md#microsample), and
//! whether the running revision serves Prometheus text on `/metrics`.
//!
//! The loopback address is used rather than `localhost` so no name lookup is needed (the
//! binary is static and has no NSS modules to load). Every probe ends by its deadline.

use std::fmt;
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
pub(crate) fn serves_metrics(client: &mut http::TcpClient, port: Port, deadline: Deadline) -> bool {
    match client.get(port.get(), "/metrics", MAX_METRICS_BODY, deadline) {
        Ok(response) if response.status == 200 => crate::cos::is_prometheus_text(
            response.content_type.as_deref(),
            &String::from_utf8_lossy(&response.body),
        ),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;

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
}
