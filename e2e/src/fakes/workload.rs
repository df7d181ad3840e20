//! The fake microsample workload: a tiny HTTP server on `0.0.0.0:<snap config port>`
//! answering like microsample's Flask app (docs/snapd-api.md#microsample).
//!
//! Service start, as systemd runs microsample (`daemon: simple`, `restart-condition:
//! always`): starting always "succeeds" (a simple service is started once its process is
//! spawned), then the process binds `0.0.0.0:<port>`. When it cannot (the port is taken,
//! even on `127.0.0.1` only: Linux refuses a wildcard bind over a listening specific
//! address), Flask prints Werkzeug's `Address already in use` / `Port <n> is in use by
//! another program. ...` and exits 1; systemd restarts it every 100 ms until its start
//! limit (5 in 10 s) and then leaves it failed. The fake keeps the end state: not running,
//! [`Workload::last_error`] set, so snapd omits `active` for the app; freeing the port
//! changes nothing until the service is started or restarted again.
//!
//! What it serves depends on the running revision (`store::Release`): `/` (`Online`) and
//! `/api/info` always, `/metrics` (Prometheus text) only for revisions that have it
//! (microsample's built before May 2023 do not: 404 there), and a revision's `fault`
//! makes it misbehave like an injected one ([`FAULTS`]).

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime};

use crate::fakes::http;

/// Fault modes of a running workload.
pub const FAULTS: [&str; 4] = ["http500", "hang", "close", "dead"];

/// Settings shared with the connection threads.
#[derive(Clone, Default)]
pub struct Shared {
    /// Current fault (`None`: healthy).
    pub fault: Arc<Mutex<Option<String>>>,
    /// `microsample_calls_total`.
    pub calls: Arc<AtomicU64>,
    /// The running revision predates `/metrics` (it answers 404 there).
    pub no_metrics: Arc<AtomicBool>,
}

struct Running {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// The service process, as systemd would run it.
#[derive(Default)]
pub struct Workload {
    running: Option<Running>,
    /// Why the last start failed (port taken, bad port...).
    pub last_error: Option<String>,
    pub shared: Shared,
}

impl Workload {
    /// Port the service listens on, if it runs.
    pub fn port(&self) -> Option<u16> {
        self.running.as_ref().map(|r| r.port)
    }

    /// Starts the service on `port` (stopping it first if it runs). A port that cannot be
    /// bound makes the service fail, like a crash-looping unit.
    pub fn start(&mut self, port: Result<u16, String>) {
        self.stop();
        let port = match port {
            Ok(p) => p,
            Err(e) => {
                self.last_error = Some(e);
                return;
            }
        };
        let listener = match TcpListener::bind(("0.0.0.0", port)) {
            Ok(l) => l,
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => {
                // Werkzeug's words (werkzeug/serving.py `prepare_socket`), on stderr.
                self.last_error = Some(format!(
                    "Address already in use\nPort {port} is in use by another program. \
                     Either identify and stop that program, or start the server with a \
                     different port."
                ));
                return;
            }
            Err(e) => {
                self.last_error = Some(format!(
                    "cannot bind 0.0.0.0:{port}: {}",
                    http::errno_text(&e)
                ));
                return;
            }
        };
        self.last_error = None;
        let stop = Arc::new(AtomicBool::new(false));
        let shared = self.shared.clone();
        let stop_flag = stop.clone();
        let thread = thread::spawn(move || accept_loop(listener, stop_flag, shared));
        self.running = Some(Running {
            port,
            stop,
            thread: Some(thread),
        });
    }

    /// Stops the service and frees its port.
    pub fn stop(&mut self) {
        if let Some(mut r) = self.running.take() {
            r.stop.store(true, Ordering::SeqCst);
            // The accept loop blocks (no polling delay on a probe); a connection wakes it
            // to see the stop flag.
            let _ = TcpStream::connect(("127.0.0.1", r.port));
            if let Some(t) = r.thread.take() {
                let _ = t.join();
            }
        }
    }
}

impl Drop for Workload {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, stop: Arc<AtomicBool>, shared: Shared) {
    loop {
        let accepted = listener.accept();
        if stop.load(Ordering::SeqCst) {
            return;
        }
        match accepted {
            Ok((stream, _)) => {
                let shared = shared.clone();
                thread::spawn(move || serve_connection(stream, shared));
            }
            Err(_) => thread::sleep(Duration::from_millis(10)),
        }
    }
}

fn serve_connection(stream: TcpStream, shared: Shared) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let fault = shared.fault.lock().map(|f| f.clone()).unwrap_or(None);
    match fault.as_deref() {
        Some("close") => return,
        Some("hang") => {
            hold_open(stream);
            return;
        }
        _ => {}
    }
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut stream = stream;
    // Werkzeug's server (2.1.2 and later; microsample pins Flask 2.3.2) answers
    // HTTP/1.1 but closes every connection after one answer, saying so: `Connection:
    // close` (docs/snapd-api.md#microsample). Its head and its body leave in two writes.
    let Ok(req) = http::read_request(&mut reader) else {
        return;
    };
    let fault = shared.fault.lock().map(|f| f.clone()).unwrap_or(None);
    let (status, content_type, body) = if fault.as_deref() == Some("http500") {
        (
            500,
            "text/html; charset=utf-8",
            INTERNAL_ERROR_PAGE.to_string(),
        )
    } else {
        route(&req, &shared)
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nServer: Werkzeug/2.3.4 Python/3.10.12\r\nDate: {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        http::http_date(SystemTime::now()),
        body.len(),
    );
    if stream.write_all(head.as_bytes()).is_err() {
        return;
    }
    if req.method != "HEAD" {
        let _ = stream.write_all(body.as_bytes());
    }
    let _ = stream.flush();
    // Then, before closing, Werkzeug reads and discards whatever else came, until 10 ms
    // pass without any: a client that sent more sees the answer and the end of the
    // stream, not a reset.
    let _ = reader
        .get_ref()
        .set_read_timeout(Some(Duration::from_millis(10)));
    let mut discard = [0u8; 4096];
    while matches!(reader.read(&mut discard), Ok(n) if n > 0) {}
}

/// Keeps a connection open without answering until the peer goes away.
pub fn hold_open<S: Read>(mut stream: S) {
    let mut buf = [0u8; 1024];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => return,
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        404 => "NOT FOUND",
        405 => "METHOD NOT ALLOWED",
        _ => "INTERNAL SERVER ERROR",
    }
}

const INTERNAL_ERROR_PAGE: &str = "<!doctype html>\n<html lang=en>\n<title>500 Internal Server Error</title>\n<h1>Internal Server Error</h1>\n<p>The server encountered an internal error and was unable to complete your request. Either the server is overloaded or there is an error in the application.</p>\n";

const NOT_FOUND_PAGE: &str = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested URL was not found on the server. If you entered the URL manually please check your spelling and try again.</p>\n";

const METHOD_NOT_ALLOWED_PAGE: &str = "<!doctype html>\n<html lang=en>\n<title>405 Method Not Allowed</title>\n<h1>Method Not Allowed</h1>\n<p>The method is not allowed for the requested URL.</p>\n";

fn route(req: &http::Request, shared: &Shared) -> (u16, &'static str, String) {
    let get = req.method == "GET" || req.method == "HEAD";
    match req.path.as_str() {
        "/" | "/api/info" | "/metrics" if !get => (
            405,
            "text/html; charset=utf-8",
            METHOD_NOT_ALLOWED_PAGE.to_string(),
        ),
        "/" => {
            shared.calls.fetch_add(1, Ordering::SeqCst);
            (200, "text/html; charset=utf-8", "Online".to_string())
        }
        "/api/info" => {
            shared.calls.fetch_add(1, Ordering::SeqCst);
            (
                200,
                "application/json",
                "{\"name\":\"Erik Lonroth\",\"skill\":100,\"title\":\"wizard\"}\n".to_string(),
            )
        }
        "/metrics" if shared.no_metrics.load(Ordering::SeqCst) => {
            (404, "text/html; charset=utf-8", NOT_FOUND_PAGE.to_string())
        }
        "/metrics" => (
            200,
            "text/plain; version=0.0.4; charset=utf-8",
            metrics(shared.calls.load(Ordering::SeqCst)),
        ),
        _ => (404, "text/html; charset=utf-8", NOT_FOUND_PAGE.to_string()),
    }
}

fn metrics(calls: u64) -> String {
    format!(
        "# HELP python_info Python platform information\n\
         # TYPE python_info gauge\n\
         python_info{{implementation=\"CPython\",major=\"3\",minor=\"10\",patchlevel=\"12\",version=\"3.10.12\"}} 1.0\n\
         # HELP microsample_calls_total Total calls to microsampl api (counter)\n\
         # TYPE microsample_calls_total counter\n\
         microsample_calls_total {calls}.0\n\
         # HELP microsample_calls_created Total calls to microsampl api (counter)\n\
         # TYPE microsample_calls_created gauge\n\
         microsample_calls_created 1.7e+09\n"
    )
}
