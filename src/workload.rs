//! Is microsample answering? `GET http://127.0.0.1:<port>/` must return 200 `Online`.
//!
//! The loopback address is used rather than `localhost` so no name lookup is needed (the
//! binary is static and has no NSS modules to load).

use std::fmt;
use std::io::Read;
use std::time::Duration;

/// How long one probe may take.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// The result of one probe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Health {
    Online,
    /// Not answering, or answering something else; says what was seen.
    Down(String),
}

impl Health {
    pub fn is_online(&self) -> bool {
        matches!(self, Health::Online)
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Health::Online => f.write_str("online"),
            Health::Down(why) => f.write_str(why),
        }
    }
}

/// Probes microsample on `port`.
pub fn probe(port: u16, timeout: Duration) -> Health {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        // ureq zero-fills 128 KiB buffers by default; the answer is "Online".
        .input_buffer_size(8 * 1024)
        .output_buffer_size(8 * 1024)
        .build()
        .into();
    let url = format!("http://127.0.0.1:{port}/");
    let mut response = match agent.get(&url).call() {
        Ok(response) => response,
        Err(e) => return Health::Down(format!("no answer on port {port}: {e}")),
    };
    let status = response.status().as_u16();
    let mut body = String::new();
    // Only the start of the body matters; a huge or binary answer is just "not Online".
    let read = response
        .body_mut()
        .as_reader()
        .take(64)
        .read_to_string(&mut body);
    match (status, read) {
        (200, Ok(_)) if body.trim() == "Online" => Health::Online,
        (200, _) => Health::Down(format!(
            "port {port} answered {:?} instead of \"Online\"",
            crate::text::bounded(&body, 40)
        )),
        (status, _) => Health::Down(format!("port {port} answered HTTP {status}")),
    }
}
