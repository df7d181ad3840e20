//! A small blocking HTTP/1.1 client for the two servers the charm reads: snapd on its Unix
//! socket and microsample on loopback TCP.
//!
//! A `Host` header (Go's server rejects HTTP/1.1 requests without one), both body framings
//! Go uses (`Content-Length` and `chunked`, docs/snapd-api.md#http), a bound on the body, and
//! one [`Deadline`] for each request: connect, write and every read. A peer that accepts and
//! never answers, or drips a byte at a time, costs at most the deadline.
//!
//! [`UnixClient`] and [`TcpClient`] keep their connection open for the next `GET` when the
//! answer allows it (HTTP/1.1 keep-alive, which snapd's Go server allows,
//! docs/snapd-api.md#http; microsample's Werkzeug closes every connection,
//! docs/snapd-api.md#microsample): a hook's reads of snapd share one connection, and are
//! sent together, in one round trip (HTTP/1.1 pipelining, which Go's server answers in
//! order). A kept connection the server closed meanwhile is replaced once, as Go's own
//! client does for a `GET`; requests a server leaves unanswered go again on a new one.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::deadline::Deadline;

/// Longest response head accepted (status line and headers).
const MAX_HEAD: usize = 16 * 1024;

/// An answer: status, content type and (bounded) body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) content_type: Option<String>,
    pub(crate) body: Vec<u8>,
}

/// Why there is no answer.
#[derive(Debug)]
pub(crate) enum HttpError {
    /// Nothing accepted the connection (no socket, refused).
    Connect(io::Error),
    /// The deadline passed before a whole answer arrived.
    Timeout,
    /// The connection broke after it was made.
    Io(io::Error),
    /// Something answered, but not HTTP this client can read, or too much of it.
    Malformed(String),
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HttpError::Connect(e) => write!(f, "cannot connect: {e}"),
            HttpError::Timeout => f.write_str("no answer before the deadline"),
            HttpError::Io(e) => write!(f, "connection failed: {e}"),
            HttpError::Malformed(why) => write!(f, "not a readable HTTP answer: {why}"),
        }
    }
}

fn io_error(e: io::Error) -> HttpError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => HttpError::Timeout,
        _ => HttpError::Io(e),
    }
}

/// A connected stream whose reads and writes can be bounded.
trait Stream: Read + Write {
    fn bound(&self, timeout: Duration) -> io::Result<()>;
}

impl Stream for TcpStream {
    fn bound(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

impl Stream for UnixStream {
    fn bound(&self, timeout: Duration) -> io::Result<()> {
        self.set_read_timeout(Some(timeout))?;
        self.set_write_timeout(Some(timeout))
    }
}

/// `GET path` on `127.0.0.1:port`, on a connection of its own.
#[cfg(test)]
pub(crate) fn get_tcp(
    port: u16,
    path: &str,
    max_body: usize,
    deadline: Deadline,
) -> Result<Response, HttpError> {
    TcpClient::default().get(port, path, max_body, deadline)
}

fn connect_tcp(port: u16, deadline: Deadline) -> Result<TcpStream, HttpError> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let left = deadline.remaining();
    if left.is_zero() {
        return Err(HttpError::Timeout);
    }
    TcpStream::connect_timeout(&addr, left).map_err(|e| match e.kind() {
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => HttpError::Timeout,
        _ => HttpError::Connect(e),
    })
}

/// A `GET` of a series: the path and the largest body accepted.
pub(crate) type Get<'a> = (&'a str, usize);

/// The answers of a series of `GET`s, in order, up to the first failure.
#[derive(Debug)]
pub(crate) struct Answers {
    pub(crate) responses: Vec<Response>,
    /// Why the answers stop short, when they do.
    pub(crate) error: Option<HttpError>,
}

impl Answers {
    /// The one answer of a series of one.
    fn single(mut self) -> Result<Response, HttpError> {
        match self.error {
            Some(error) => Err(error),
            None => Ok(self.responses.remove(0)),
        }
    }
}

/// `GET`s on loopback TCP ports, over one kept connection when the server allows.
#[derive(Debug, Default)]
pub(crate) struct TcpClient {
    idle: Option<(u16, TcpStream)>,
}

impl TcpClient {
    /// `GET path` on `127.0.0.1:port`, by `deadline`. (One request per connection is
    /// all microsample answers, so the probes send no series.)
    pub(crate) fn get(
        &mut self,
        port: u16,
        path: &str,
        max_body: usize,
        deadline: Deadline,
    ) -> Result<Response, HttpError> {
        let idle = self.idle.take().filter(|(p, _)| *p == port).map(|(_, s)| s);
        let connect = |deadline| connect_tcp(port, deadline);
        let gets = [(path, max_body)];
        let (answers, kept) = get_kept(idle, connect, "127.0.0.1", &gets, deadline, Duration::ZERO);
        self.idle = kept.map(|stream| (port, stream));
        answers.single()
    }
}

/// `gets` on the `idle` connection, else (none, or the server had closed it) on a new one
/// from `connect`, all sent at once (HTTP/1.1 pipelining: the server answers in order,
/// docs/snapd-api.md#http): one round trip, not one per `GET`. The first answer is due by
/// `first`, each later one within `then` of the one before, as if each were sent after
/// the one before it was in. Those a server leaves unanswered when it ends the connection
/// (it may, after any answer) are sent again on a new one. Returns the connection when it
/// may serve another request.
fn get_kept<S: Stream>(
    mut idle: Option<S>,
    connect: impl Fn(Deadline) -> Result<S, HttpError>,
    host: &str,
    gets: &[Get<'_>],
    first: Deadline,
    then: Duration,
) -> (Answers, Option<S>) {
    let mut responses = Vec::with_capacity(gets.len());
    let mut deadline = first;
    let stop = |responses, error| {
        (
            Answers {
                responses,
                error: Some(error),
            },
            None,
        )
    };
    loop {
        let (stream, reused) = match idle.take() {
            Some(stream) => (stream, true),
            None => match connect(deadline) {
                Ok(stream) => (stream, false),
                Err(error) => return stop(responses, error),
            },
        };
        let (got, end) = exchange(stream, host, &gets[responses.len()..], deadline, then);
        let progressed = !got.is_empty();
        responses.extend(got);
        match end {
            Ok(kept) if responses.len() == gets.len() => {
                let answers = Answers {
                    responses,
                    error: None,
                };
                return (answers, kept);
            }
            // Ended by the server after some answers: the rest on a new connection.
            Ok(_) => deadline = Deadline::after(then),
            // Closed by the server while idle: nothing of an answer came. Once more on a
            // new connection.
            Err(Failure { error, answered }) if reused && !progressed && !answered => {
                if !is_closed(&error) {
                    return stop(responses, error);
                }
            }
            Err(Failure { error, .. }) => return stop(responses, error),
        }
    }
}

/// `GET path` on the Unix socket at `socket`, on a connection of its own.
#[cfg(test)]
pub(crate) fn get_unix(
    socket: &Path,
    path: &str,
    max_body: usize,
    deadline: Deadline,
) -> Result<Response, HttpError> {
    UnixClient::new(socket).get(path, max_body, deadline)
}

/// `GET`s on the Unix socket at one path, over one kept connection when the server allows.
#[derive(Debug)]
pub(crate) struct UnixClient {
    socket: PathBuf,
    idle: Option<UnixStream>,
}

impl UnixClient {
    pub(crate) fn new(socket: impl Into<PathBuf>) -> UnixClient {
        UnixClient {
            socket: socket.into(),
            idle: None,
        }
    }

    /// `GET path`, by `deadline`.
    pub(crate) fn get(
        &mut self,
        path: &str,
        max_body: usize,
        deadline: Deadline,
    ) -> Result<Response, HttpError> {
        self.get_all(&[(path, max_body)], deadline, Duration::ZERO)
            .single()
    }

    /// Each of `gets`, sent together (see [`get_kept`]): the first answer by `deadline`,
    /// each later one within `then` of the one before.
    pub(crate) fn get_all(
        &mut self,
        gets: &[Get<'_>],
        deadline: Deadline,
        then: Duration,
    ) -> Answers {
        let connect = |deadline| connect_unix(&self.socket, deadline);
        let (answers, kept) =
            get_kept(self.idle.take(), connect, "localhost", gets, deadline, then);
        self.idle = kept;
        answers
    }
}

/// Whether an error says the peer had closed the connection.
fn is_closed(error: &HttpError) -> bool {
    match error {
        HttpError::Io(e) => matches!(
            e.kind(),
            io::ErrorKind::BrokenPipe
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::UnexpectedEof
        ),
        HttpError::Malformed(why) => why == NO_ANSWER,
        _ => false,
    }
}

/// Why an exchange failed, and whether any byte of an answer had come.
struct Failure {
    error: HttpError,
    answered: bool,
}

impl From<HttpError> for Failure {
    fn from(error: HttpError) -> Failure {
        Failure {
            error,
            answered: true,
        }
    }
}

/// What [`HttpError::Malformed`] says of a connection closed before any answer.
const NO_ANSWER: &str = "connection closed before an answer";

/// Connects without blocking past the deadline: a Unix `connect` blocks while the
/// listener's backlog is full (a wedged daemon), so it is made non-blocking and retried.
fn connect_unix(socket: &Path, deadline: Deadline) -> Result<UnixStream, HttpError> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::io::FromRawFd;

    let bytes = socket.as_os_str().as_bytes();
    // SAFETY: sockaddr_un is plain old data; zeroed is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    if bytes.len() >= addr.sun_path.len() || bytes.contains(&0) {
        return Err(HttpError::Connect(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: not a usable socket path", socket.display()),
        )));
    }
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    for (dst, src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = *src as libc::c_char;
    }
    // SAFETY: a plain socket(2) call; the descriptor is owned by the UnixStream below.
    let fd = unsafe {
        libc::socket(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK,
            0,
        )
    };
    if fd < 0 {
        return Err(HttpError::Connect(io::Error::last_os_error()));
    }
    // SAFETY: fd is a fresh socket this function owns from here on.
    let stream = unsafe { UnixStream::from_raw_fd(fd) };
    let len = std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t;
    loop {
        // SAFETY: addr is a valid sockaddr_un of `len` bytes; fd is open.
        let rc = unsafe { libc::connect(fd, (&raw const addr).cast(), len) };
        if rc == 0 {
            break;
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EAGAIN) if !deadline.passed() => {
                std::thread::sleep(deadline.remaining().min(Duration::from_millis(5)));
            }
            Some(libc::EAGAIN) => return Err(HttpError::Timeout),
            _ => {
                return Err(HttpError::Connect(io::Error::new(
                    e.kind(),
                    format!("{}: {e}", socket.display()),
                )))
            }
        }
    }
    stream.set_nonblocking(false).map_err(HttpError::Io)?;
    Ok(stream)
}

/// Sends a `GET` of each of `gets` at once, then reads their answers in order: the first
/// by `first`, each later one within `then` of the one before. Returns the answers read,
/// then the connection when it may serve another request (HTTP/1.1, framed bodies read to
/// their end, no `Connection: close`, nothing more sent), `None` when the server ended it
/// after the answers read, or why the next answer failed.
fn exchange<S: Stream>(
    mut stream: S,
    host: &str,
    gets: &[Get<'_>],
    first: Deadline,
    then: Duration,
) -> (Vec<Response>, Result<Option<S>, Failure>) {
    let mut request = String::new();
    for (path, _) in gets {
        request.push_str(&format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: microsample-charm\r\nAccept: */*\r\n\r\n"
        ));
    }
    let unanswered = |error| Failure {
        error,
        answered: false,
    };
    let sent =
        bound(&stream, first).and_then(|()| stream.write_all(request.as_bytes()).map_err(io_error));
    if let Err(error) = sent {
        return (Vec::new(), Err(unanswered(error)));
    }
    let mut reader = Reader {
        stream,
        buf: Vec::with_capacity(4096),
        pos: 0,
        eof: false,
        deadline: first,
    };
    let mut responses = Vec::with_capacity(gets.len());
    for &(_, max_body) in gets {
        if !responses.is_empty() {
            reader.deadline = Deadline::after(then);
        }
        match answer(&mut reader, max_body) {
            Ok((response, reusable)) => {
                responses.push(response);
                if !reusable {
                    return (responses, Ok(None));
                }
            }
            // A server may end a kept connection after any answer without saying so.
            Err(Failure { error, answered })
                if !responses.is_empty() && !answered && is_closed(&error) =>
            {
                return (responses, Ok(None));
            }
            Err(failure) => return (responses, Err(failure)),
        }
    }
    let kept = (reader.pos == reader.buf.len()).then_some(reader.stream);
    (responses, Ok(kept))
}

/// Reads one answer from `reader`'s unconsumed bytes on; returns it and whether the
/// connection may carry another (HTTP/1.1, a framed body, no `Connection: close`).
fn answer<S: Stream>(reader: &mut Reader<S>, max_body: usize) -> Result<(Response, bool), Failure> {
    let unanswered = |error| Failure {
        error,
        answered: false,
    };
    if reader.pos == reader.buf.len() && !reader.more().map_err(unanswered)? {
        return Err(unanswered(HttpError::Malformed(NO_ANSWER.into())));
    }
    let start = reader.pos;
    let head_end = reader.fill_until(|buf| find(buf, b"\r\n\r\n"), MAX_HEAD)?;
    let head = String::from_utf8_lossy(&reader.buf[start..head_end]).into_owned();
    reader.pos = head_end + 4;
    let (status, headers) = parse_head(&head)?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let content_type = header("content-type").map(str::to_string);
    let chunked =
        header("transfer-encoding").is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let mut framed = true;
    let body = if chunked {
        reader.chunked(max_body)?
    } else if let Some(length) = header("content-length") {
        let length: usize = length
            .trim()
            .parse()
            .map_err(|_| HttpError::Malformed(format!("Content-Length {length:?}")))?;
        if length > max_body {
            return Err(too_large(max_body).into());
        }
        reader.exactly(length)?
    } else {
        framed = false;
        reader.until_closed(max_body)?
    };
    let closing = header("connection").is_some_and(|v| {
        v.split(',')
            .any(|token| token.trim().eq_ignore_ascii_case("close"))
    });
    let http11 = head.starts_with("HTTP/1.1 ");
    let response = Response {
        status,
        content_type,
        body,
    };
    Ok((response, framed && http11 && !closing))
}

fn bound<S: Stream>(stream: &S, deadline: Deadline) -> Result<(), HttpError> {
    let left = deadline.remaining();
    if left.is_zero() {
        return Err(HttpError::Timeout);
    }
    stream.bound(left).map_err(HttpError::Io)
}

fn too_large(max: usize) -> HttpError {
    HttpError::Malformed(format!("body larger than {max} bytes"))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

type Headers = Vec<(String, String)>;

fn parse_head(head: &str) -> Result<(u16, Headers), HttpError> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let status = match (parts.next(), parts.next()) {
        (Some(version), Some(code)) if version.starts_with("HTTP/1.") => code.parse().ok(),
        _ => None,
    }
    .filter(|code| (100..1000).contains(code))
    .ok_or_else(|| {
        HttpError::Malformed(format!(
            "status line {:?}",
            crate::text::bounded(status_line, 60)
        ))
    })?;
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_string(), value.trim().to_string()))
        .collect();
    Ok((status, headers))
}

/// Reads from the stream into one buffer, each read bounded by what is left of the deadline.
struct Reader<S: Stream> {
    stream: S,
    buf: Vec<u8>,
    /// Start of the bytes not consumed yet.
    pos: usize,
    eof: bool,
    deadline: Deadline,
}

impl<S: Stream> Reader<S> {
    /// Reads more; false at end of stream.
    fn more(&mut self) -> Result<bool, HttpError> {
        if self.eof {
            return Ok(false);
        }
        bound(&self.stream, self.deadline)?;
        let mut chunk = [0u8; 4096];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(false);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            }
        }
    }

    /// Reads until `found` finds its mark in the unconsumed bytes (searched from `pos`);
    /// returns the mark's absolute offset.
    fn fill_until(
        &mut self,
        found: impl Fn(&[u8]) -> Option<usize>,
        max: usize,
    ) -> Result<usize, HttpError> {
        loop {
            if let Some(at) = found(&self.buf[self.pos..]) {
                return Ok(self.pos + at);
            }
            if self.buf.len() - self.pos > max {
                return Err(HttpError::Malformed(format!(
                    "no end of line in {max} bytes"
                )));
            }
            if !self.more()? {
                return Err(HttpError::Malformed("connection closed mid-answer".into()));
            }
        }
    }

    fn exactly(&mut self, length: usize) -> Result<Vec<u8>, HttpError> {
        while self.buf.len() - self.pos < length {
            if !self.more()? {
                return Err(HttpError::Malformed(format!(
                    "body ended after {} of {length} bytes",
                    self.buf.len() - self.pos
                )));
            }
        }
        let body = self.buf[self.pos..self.pos + length].to_vec();
        self.pos += length;
        Ok(body)
    }

    fn until_closed(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        loop {
            if self.buf.len() - self.pos > max {
                return Err(too_large(max));
            }
            if !self.more()? {
                return Ok(self.buf[self.pos..].to_vec());
            }
        }
    }

    fn line(&mut self) -> Result<String, HttpError> {
        let end = self.fill_until(|b| find(b, b"\r\n"), 1024)?;
        let line = String::from_utf8_lossy(&self.buf[self.pos..end]).into_owned();
        self.pos = end + 2;
        Ok(line)
    }

    fn chunked(&mut self, max: usize) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line = self.line()?;
            let size = line.split(';').next().unwrap_or_default().trim();
            let size = usize::from_str_radix(size, 16)
                .map_err(|_| HttpError::Malformed(format!("chunk size {size:?}")))?;
            if size == 0 {
                // Trailer fields, if any, up to the empty line that ends the message.
                while !self.line()?.is_empty() {}
                return Ok(body);
            }
            if body.len() + size > max {
                return Err(too_large(max));
            }
            body.extend(self.exactly(size)?);
            if !self.line()?.is_empty() {
                return Err(HttpError::Malformed("chunk not followed by CRLF".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::net::TcpListener;
    use std::time::Instant;

    /// Serves `response` once on a loopback port; returns the port and the request head.
    fn serve(response: Vec<u8>) -> (u16, std::thread::JoinHandle<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let mut stream = stream;
            let _ = stream.write_all(&response);
            head
        });
        (port, server)
    }

    /// A socket path in a directory of its own, removed with the returned guard.
    fn socket_path() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("snapd.socket");
        (dir, path)
    }

    fn bodies(answers: &Answers) -> Vec<&[u8]> {
        answers
            .responses
            .iter()
            .map(|r| r.body.as_slice())
            .collect()
    }

    fn soon() -> Deadline {
        Deadline::after(Duration::from_secs(5))
    }

    #[test]
    fn content_length_body_and_request_head() {
        let (port, server) = serve(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: 6\r\n\r\nOnline"
                .to_vec(),
        );
        let response = get_tcp(port, "/", 64, soon()).unwrap();
        assert_eq!(response.status, 200);
        assert_eq!(response.body, b"Online");
        assert_eq!(
            response.content_type.as_deref(),
            Some("text/html; charset=utf-8")
        );
        let head = server.join().unwrap();
        assert!(head.starts_with("GET / HTTP/1.1\r\n"), "{head}");
        assert!(head.contains("\r\nHost: 127.0.0.1\r\n"), "{head}");
        // The connection may serve the next probe.
        assert!(!head.contains("Connection:"), "{head}");
    }

    #[test]
    fn chunked_and_close_delimited_bodies() {
        let (port, _server) = serve(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nOnl\r\n3;x=y\r\nine\r\n0\r\n\r\n"
                .to_vec(),
        );
        assert_eq!(get_tcp(port, "/", 64, soon()).unwrap().body, b"Online");
        let (port, _server) = serve(b"HTTP/1.0 404 NOT FOUND\r\n\r\nnope".to_vec());
        let response = get_tcp(port, "/metrics", 64, soon()).unwrap();
        assert_eq!((response.status, response.body), (404, b"nope".to_vec()));
    }

    #[test]
    fn bodies_over_the_bound_are_refused() {
        for response in [
            b"HTTP/1.1 200 OK\r\nContent-Length: 999999999\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nffff\r\n".to_vec(),
            [b"HTTP/1.1 200 OK\r\n\r\n".to_vec(), vec![b'x'; 200]].concat(),
        ] {
            let (port, _server) = serve(response);
            let err = get_tcp(port, "/", 100, soon()).unwrap_err();
            assert!(matches!(err, HttpError::Malformed(_)), "{err}");
        }
    }

    #[test]
    fn garbage_and_truncation_are_malformed() {
        for response in [
            b"SSH-2.0-OpenSSH\r\n\r\n".to_vec(),
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nOnl".to_vec(),
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n".to_vec(),
            b"HTTP/1.1 200".to_vec(),
        ] {
            let (port, _server) = serve(response);
            let err = get_tcp(port, "/", 100, soon()).unwrap_err();
            assert!(matches!(err, HttpError::Malformed(_)), "{err}");
        }
    }

    #[test]
    fn a_silent_peer_costs_the_deadline_and_no_more() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let hold = std::thread::spawn(move || {
            let (stream, _) = listener.accept().unwrap();
            std::thread::sleep(Duration::from_secs(3));
            drop(stream);
        });
        let started = Instant::now();
        let err = get_tcp(port, "/", 64, Deadline::after(Duration::from_millis(300))).unwrap_err();
        assert!(matches!(err, HttpError::Timeout), "{err}");
        assert!(started.elapsed() < Duration::from_secs(2));
        hold.join().unwrap();
    }

    #[test]
    fn a_dripping_peer_is_cut_at_the_deadline() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            for _ in 0..40 {
                if stream.write_all(b"H").is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        });
        let started = Instant::now();
        let err = get_tcp(port, "/", 64, Deadline::after(Duration::from_millis(400))).unwrap_err();
        assert!(matches!(err, HttpError::Timeout), "{err}");
        assert!(started.elapsed() < Duration::from_millis(1500));
    }

    #[test]
    fn nothing_listening_is_a_connect_error() {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        assert!(matches!(
            get_tcp(port, "/", 64, soon()),
            Err(HttpError::Connect(_))
        ));
        assert!(matches!(
            get_unix(Path::new("/nonexistent/snapd.socket"), "/", 64, soon()),
            Err(HttpError::Connect(_))
        ));
    }

    #[test]
    fn unix_socket_exchange() {
        let (_dir, path) = socket_path();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = stream.read(&mut buf);
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}");
        });
        let response = get_unix(&path, "/v2/snaps/microsample", 64, soon()).unwrap();
        assert_eq!(response.body, b"{}");
    }

    /// Reads one request head from `stream` (the client sends no body).
    fn request_head(stream: &mut impl Read) -> String {
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if stream.read(&mut byte).unwrap() == 0 {
                break;
            }
            head.push(byte[0]);
        }
        String::from_utf8(head).unwrap()
    }

    /// A Unix server answering `answers[c][r]` to request `r` on connection `c`, closing
    /// each connection after its answers; returns the request heads it read, by connection.
    fn serve_unix(
        path: &Path,
        answers: Vec<Vec<&'static str>>,
    ) -> std::thread::JoinHandle<Vec<Vec<String>>> {
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        std::thread::spawn(move || {
            let mut seen = Vec::new();
            for connection in answers {
                let (mut stream, _) = listener.accept().unwrap();
                let mut heads = Vec::new();
                for answer in connection {
                    heads.push(request_head(&mut stream));
                    stream.write_all(answer.as_bytes()).unwrap();
                }
                seen.push(heads);
            }
            seen
        })
    }

    #[test]
    fn probes_of_one_port_share_a_connection_until_the_server_closes_it() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let mut seen = Vec::new();
            // A server that keeps the connection after an answer with a length (HTTP/1.1
            // keep-alive); here it closes after two requests.
            for _ in 0..2 {
                let (mut stream, _) = listener.accept().unwrap();
                let mut heads = Vec::new();
                for _ in 0..2 {
                    let head = request_head(&mut stream);
                    if head.is_empty() {
                        break;
                    }
                    heads.push(head);
                    stream
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\nOnline")
                        .unwrap();
                }
                seen.push(heads);
            }
            seen
        });
        let mut client = TcpClient::default();
        for path in ["/", "/metrics", "/"] {
            assert_eq!(client.get(port, path, 64, soon()).unwrap().body, b"Online");
        }
        drop(client);
        let seen = server.join().unwrap();
        assert_eq!(
            seen[0].len(),
            2,
            "two requests on the first connection: {seen:?}"
        );
        assert!(
            seen[0][1].starts_with("GET /metrics HTTP/1.1\r\n"),
            "{seen:?}"
        );
        assert!(!seen[0][0].contains("Connection: close"), "{seen:?}");
        assert_eq!(seen[1].len(), 1, "the third on a new one: {seen:?}");
    }

    #[test]
    fn one_unix_connection_serves_several_requests() {
        let (_dir, path) = socket_path();
        let server = serve_unix(
            &path,
            vec![vec![
                "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX-Trailer: 1\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nz",
            ]],
        );
        let mut client = UnixClient::new(&path);
        assert_eq!(client.get("/one", 64, soon()).unwrap().body, b"{}");
        assert_eq!(client.get("/two", 64, soon()).unwrap().body, b"abc");
        assert_eq!(client.get("/three", 64, soon()).unwrap().body, b"z");
        drop(client);
        let seen = server.join().unwrap();
        assert_eq!(seen.len(), 1, "one connection: {seen:?}");
        assert!(seen[0][1].starts_with("GET /two HTTP/1.1\r\n"), "{seen:?}");
        assert!(!seen[0][0].contains("Connection: close"), "{seen:?}");
    }

    #[test]
    fn a_connection_closed_by_the_server_is_replaced_and_one_it_will_close_is_not_kept() {
        let (_dir, path) = socket_path();
        let server = serve_unix(
            &path,
            vec![
                // Kept by the client, then closed by the server while idle.
                vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na"],
                // Says it closes: the client does not send on it again.
                vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\nb"],
                // Close-delimited: nothing to reuse either.
                vec!["HTTP/1.1 200 OK\r\n\r\nc"],
                vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nd"],
            ],
        );
        let mut client = UnixClient::new(&path);
        assert_eq!(client.get("/a", 64, soon()).unwrap().body, b"a");
        // The server closes the first connection after its answer; whether the next request
        // finds it closed or is cut by the close, it goes on a new connection.
        std::thread::sleep(Duration::from_millis(50));
        for expected in [b"b", b"c", b"d"] {
            assert_eq!(client.get("/x", 64, soon()).unwrap().body, expected);
        }
        let seen = server.join().unwrap();
        assert_eq!(seen.iter().map(Vec::len).collect::<Vec<_>>(), [1, 1, 1, 1]);
    }

    #[test]
    fn a_series_goes_out_at_once_and_its_answers_come_back_in_order() {
        let (_dir, path) = socket_path();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            // Both requests are there before the first answer is written.
            std::thread::sleep(Duration::from_millis(100));
            let mut waiting = 0;
            stream.set_nonblocking(true).unwrap();
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stream.read(&mut buf) {
                waiting += n;
            }
            stream.set_nonblocking(false).unwrap();
            // Both answers in one write, as a Go server may coalesce them.
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n")
                .unwrap();
            waiting
        });
        let mut client = UnixClient::new(&path);
        let answers = client.get_all(
            &[("/one", 64), ("/two", 64)],
            soon(),
            Duration::from_secs(5),
        );
        assert!(answers.error.is_none(), "{answers:?}");
        let bodies = bodies(&answers);
        assert_eq!(bodies, [b"{}".as_slice(), b"abc".as_slice()]);
        let sent = server.join().unwrap();
        let one = "GET /one HTTP/1.1\r\nHost: localhost\r\nUser-Agent: microsample-charm\r\nAccept: */*\r\n\r\n";
        assert_eq!(sent, 2 * one.len(), "both requests before any answer");
        assert!(client.idle.is_some(), "kept for the next request");
    }

    #[test]
    fn what_a_server_leaves_unanswered_goes_again_on_a_new_connection() {
        let (_dir, path) = socket_path();
        let server = serve_unix(
            &path,
            vec![
                // Answers the first and ends the connection (saying so).
                vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\nConnection: close\r\n\r\na"],
                // Answers the first and ends the connection without saying so.
                vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb"],
                vec!["HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nc"],
            ],
        );
        let mut client = UnixClient::new(&path);
        let gets = [("/a", 64), ("/b", 64), ("/c", 64)];
        let answers = client.get_all(&gets, soon(), Duration::from_secs(5));
        assert!(answers.error.is_none(), "{answers:?}");
        let bodies = bodies(&answers);
        assert_eq!(bodies, [b"a", b"b", b"c"]);
        let seen = server.join().unwrap();
        let firsts: Vec<&str> = seen.iter().map(|c| c[0].lines().next().unwrap()).collect();
        assert_eq!(
            firsts,
            ["GET /a HTTP/1.1", "GET /b HTTP/1.1", "GET /c HTTP/1.1"],
            "{seen:?}"
        );
    }

    #[test]
    fn each_answer_of_a_series_has_its_own_deadline() {
        let (_dir, path) = socket_path();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            request_head(&mut stream);
            // The first answer takes longer than the later ones' allowance...
            std::thread::sleep(Duration::from_millis(400));
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
                .unwrap();
            // ...and the second never comes.
            std::thread::sleep(Duration::from_secs(2));
        });
        let mut client = UnixClient::new(&path);
        let started = Instant::now();
        let answers = client.get_all(
            &[("/a", 64), ("/b", 64)],
            soon(),
            Duration::from_millis(200),
        );
        assert_eq!(answers.responses.len(), 1, "{answers:?}");
        assert!(
            matches!(answers.error, Some(HttpError::Timeout)),
            "{answers:?}"
        );
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(550) && took < Duration::from_millis(1500),
            "{took:?}"
        );
        assert!(client.idle.is_none());
        server.join().unwrap();
    }

    #[test]
    fn a_kept_connection_still_has_the_deadline_of_each_request() {
        let (_dir, path) = socket_path();
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            request_head(&mut stream);
            stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na")
                .unwrap();
            request_head(&mut stream);
            std::thread::sleep(Duration::from_secs(2)); // silent on the second request
        });
        let mut client = UnixClient::new(&path);
        assert_eq!(client.get("/a", 64, soon()).unwrap().body, b"a");
        // The server stays silent for 2 s and then closes: a timeout, not an end of stream.
        let error = client
            .get("/b", 64, Deadline::after(Duration::from_millis(200)))
            .unwrap_err();
        assert!(matches!(error, HttpError::Timeout), "{error:?}");
        server.join().unwrap();
    }
}
