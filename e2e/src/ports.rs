//! Something else on the workload's port: TCP listeners on `127.0.0.1:<port>` that hold it
//! the ways real squatters do, each stopped (its port and connections closed) on `Drop`.
//!
//! - [`PortHolder::silent`]: accepts every connection and never answers (the request is
//!   left unread in the socket buffer);
//! - [`PortHolder::never_accepting`]: listens with a backlog of 0 and never accepts; the
//!   holder fills the accept queue itself, so later connection attempts get no SYN-ACK
//!   (Linux drops a SYN to a listener whose accept queue is full) and `connect` hangs
//!   until the client's own deadline;
//! - [`PortHolder::dripping`]: accepts and sends one byte per second forever, the start
//!   of an HTTP answer whose header never ends (`HTTP/1.1 200 OK\r\nX-Drip: aaaa...`), so
//!   a client that only bounds each read never finishes;
//! - [`PortHolder::answering`]: a plain HTTP/1.1 server answering every request with the
//!   given status and body (`404`, `500`, `200` with another service's page...).
//!
//! A holder on `127.0.0.1:<port>` makes the fake microsample's `0.0.0.0:<port>` bind fail
//! with `EADDRINUSE`, as it makes the real Flask service fail (see
//! [`crate::fakes::workload`]); a holder cannot take a port something already listens on
//! (its constructor panics, saying so).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::fakes::http;

/// What a [`PortHolder`] does with a connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HolderKind {
    Silent,
    NeverAccepting,
    Dripping,
    Answering { status: u16, body: String },
}

/// Where the dripping holder's bytes come from: this prefix, then `a` forever.
pub const DRIP_PREFIX: &[u8] = b"HTTP/1.1 200 OK\r\nX-Drip: ";

/// Seconds between two bytes of [`PortHolder::dripping`].
pub const DRIP_INTERVAL: Duration = Duration::from_secs(1);

struct Shared {
    stop: AtomicBool,
    accepted: AtomicU64,
    /// Accepted connections, shut down on drop.
    conns: Mutex<Vec<TcpStream>>,
}

/// A TCP port on 127.0.0.1 held by something that is not microsample (see the module
/// documentation). Stops on drop.
pub struct PortHolder {
    port: u16,
    kind: HolderKind,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
    /// [`PortHolder::never_accepting`]: the listener and the connections filling its
    /// queue.
    idle_listener: Option<TcpListener>,
    fillers: Vec<TcpStream>,
}

fn bind(port: u16) -> TcpListener {
    TcpListener::bind(("127.0.0.1", port)).unwrap_or_else(|e| {
        panic!(
            "cannot hold 127.0.0.1:{port}: {} (is something already listening there?)",
            http::errno_text(&e)
        )
    })
}

impl PortHolder {
    /// Accepts every connection and never answers.
    pub fn silent(port: u16) -> PortHolder {
        Self::serving(port, HolderKind::Silent)
    }

    /// Sends [`DRIP_PREFIX`] then `a`, one byte per [`DRIP_INTERVAL`], forever, on every
    /// connection.
    pub fn dripping(port: u16) -> PortHolder {
        Self::serving(port, HolderKind::Dripping)
    }

    /// Answers every request with `status` and `body` (`text/html; charset=utf-8`,
    /// `Content-Length`, `Connection: close`).
    pub fn answering(port: u16, status: u16, body: &str) -> PortHolder {
        Self::serving(
            port,
            HolderKind::Answering {
                status,
                body: body.to_string(),
            },
        )
    }

    /// Listens (backlog 0) and never accepts; its accept queue is full, so connecting
    /// hangs (the SYN is dropped and retried by the client's kernel).
    pub fn never_accepting(port: u16) -> PortHolder {
        let listener = bind(port);
        // std listens with a backlog of 128; listen() again changes it (Linux).
        // SAFETY: plain syscall on a socket this function owns.
        let r = unsafe { libc::listen(listener.as_raw_fd(), 0) };
        assert_eq!(
            r,
            0,
            "listen(backlog 0) on 127.0.0.1:{port}: {}",
            std::io::Error::last_os_error()
        );
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut fillers = Vec::new();
        // Fill the accept queue (backlog 0 still queues one connection) until a
        // connection attempt gets no answer.
        loop {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(s) => fillers.push(s),
                Err(_) => break,
            }
            assert!(
                fillers.len() < 64,
                "127.0.0.1:{port} keeps accepting connections with a backlog of 0"
            );
        }
        PortHolder {
            port,
            kind: HolderKind::NeverAccepting,
            shared: Arc::new(Shared {
                stop: AtomicBool::new(false),
                accepted: AtomicU64::new(0),
                conns: Mutex::new(Vec::new()),
            }),
            accept_thread: None,
            idle_listener: Some(listener),
            fillers,
        }
    }

    fn serving(port: u16, kind: HolderKind) -> PortHolder {
        let listener = bind(port);
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            accepted: AtomicU64::new(0),
            conns: Mutex::new(Vec::new()),
        });
        let thread_shared = shared.clone();
        let thread_kind = kind.clone();
        let accept_thread =
            thread::spawn(move || accept_loop(listener, thread_kind, thread_shared));
        PortHolder {
            port,
            kind,
            shared,
            accept_thread: Some(accept_thread),
            idle_listener: None,
            fillers: Vec::new(),
        }
    }

    /// The held port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What it does.
    pub fn kind(&self) -> &HolderKind {
        &self.kind
    }

    /// Connections accepted so far (always 0 for [`PortHolder::never_accepting`]).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for PortHolder {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.accept_thread.take() {
            // Wake the blocking accept.
            let _ = TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], self.port)),
                Duration::from_secs(1),
            );
            let _ = thread.join();
        }
        for conn in self
            .shared
            .conns
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .drain(..)
        {
            let _ = conn.shutdown(std::net::Shutdown::Both);
        }
        self.fillers.clear();
        self.idle_listener = None;
    }
}

fn accept_loop(listener: TcpListener, kind: HolderKind, shared: Arc<Shared>) {
    for conn in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = conn else {
            thread::sleep(Duration::from_millis(10));
            continue;
        };
        shared.accepted.fetch_add(1, Ordering::SeqCst);
        if let Ok(clone) = stream.try_clone() {
            shared
                .conns
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(clone);
        }
        match &kind {
            HolderKind::Silent | HolderKind::NeverAccepting => {}
            HolderKind::Dripping => {
                let shared = shared.clone();
                thread::spawn(move || drip(stream, &shared));
            }
            HolderKind::Answering { status, body } => {
                let (status, body) = (*status, body.clone());
                thread::spawn(move || answer(stream, status, &body));
            }
        }
    }
}

fn drip(mut stream: TcpStream, shared: &Shared) {
    let bytes = DRIP_PREFIX.iter().copied().chain(std::iter::repeat(b'a'));
    for byte in bytes {
        if stream.write_all(&[byte]).is_err() {
            return;
        }
        let next = Instant::now() + DRIP_INTERVAL;
        while Instant::now() < next {
            if shared.stop.load(Ordering::SeqCst) {
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

fn answer(mut stream: TcpStream, status: u16, body: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    // Read the request head (a probe sends no body).
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let reply = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        http::status_text(status),
        body.len()
    );
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Write);
}
