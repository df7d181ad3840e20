//! Minimal HTTP/1.x for the fakes, std only: request parsing and Go-`net/http`-like
//! response framing for the fake servers, and a small client (Unix socket or TCP).
//!
//! Used by the fake servers, the harness ([`crate::harness`]) and `bench/`.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest header section accepted.
const MAX_HEADER_BYTES: usize = 1 << 20;
/// Largest request body accepted by the fake servers.
const MAX_REQUEST_BODY: usize = 64 << 20;
/// Go's `bufferBeforeChunkingSize`: bodies up to this size get a Content-Length.
pub const CHUNKING_THRESHOLD: usize = 2048;

/// HTTP protocol version of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

/// A parsed request.
#[derive(Clone, Debug)]
pub struct Request {
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// Raw query string (without `?`), possibly empty.
    pub query: String,
    pub version: Version,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    /// A decoded query parameter.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
    }

    /// Whether the connection stays open after the response (Go's rules).
    pub fn keep_alive(&self) -> bool {
        let conn = self.header("Connection").unwrap_or("").to_ascii_lowercase();
        match self.version {
            Version::Http11 => !conn.split(',').any(|t| t.trim() == "close"),
            Version::Http10 => conn.split(',').any(|t| t.trim() == "keep-alive"),
        }
    }
}

fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// `%XX` and `+` decoding.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 3;
                    }
                    Err(_) => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Why a request could not be read.
#[derive(Debug)]
pub enum ReadError {
    /// The peer closed the connection before sending a request.
    Eof,
    /// Malformed request; answer 400 and close.
    Bad(String),
    /// I/O error; just close.
    Io(io::Error),
}

impl From<io::Error> for ReadError {
    fn from(e: io::Error) -> Self {
        ReadError::Io(e)
    }
}

fn read_line<R: BufRead>(r: &mut R, budget: &mut usize) -> Result<Option<String>, ReadError> {
    let mut buf = Vec::new();
    let n = r
        .by_ref()
        .take((*budget as u64) + 1)
        .read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if n > *budget {
        return Err(ReadError::Bad("header too large".to_string()));
    }
    *budget -= n;
    if buf.ends_with(b"\n") {
        buf.pop();
        if buf.ends_with(b"\r") {
            buf.pop();
        }
    }
    Ok(Some(String::from_utf8_lossy(&buf).into_owned()))
}

/// Reads one request (head and body) from a connection.
pub fn read_request<R: BufRead>(r: &mut R) -> Result<Request, ReadError> {
    let mut budget = MAX_HEADER_BYTES;
    let mut line = match read_line(r, &mut budget)? {
        None => return Err(ReadError::Eof),
        Some(l) => l,
    };
    // Go tolerates leading blank lines between requests.
    while line.is_empty() {
        line = match read_line(r, &mut budget)? {
            None => return Err(ReadError::Eof),
            Some(l) => l,
        };
    }
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(proto), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Bad(format!("malformed HTTP request {line:?}")));
    };
    let version = match proto {
        "HTTP/1.1" => Version::Http11,
        "HTTP/1.0" => Version::Http10,
        _ => return Err(ReadError::Bad(format!("malformed HTTP version {proto:?}"))),
    };
    let mut headers = Vec::new();
    loop {
        let Some(h) = read_line(r, &mut budget)? else {
            return Err(ReadError::Bad("unexpected EOF in headers".to_string()));
        };
        if h.is_empty() {
            break;
        }
        let Some((k, v)) = h.split_once(':') else {
            return Err(ReadError::Bad(format!("malformed MIME header line: {h}")));
        };
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p.to_string(), q.to_string()),
        None => (target.to_string(), String::new()),
    };
    let chunked = find_header(&headers, "Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        read_chunked(r, MAX_REQUEST_BODY).map_err(|e| ReadError::Bad(e.to_string()))?
    } else if let Some(len) = find_header(&headers, "Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| ReadError::Bad(format!("bad Content-Length {len:?}")))?;
        if len > MAX_REQUEST_BODY {
            return Err(ReadError::Bad("request body too large".to_string()));
        }
        let mut body = vec![0; len];
        r.read_exact(&mut body)?;
        body
    } else {
        Vec::new()
    };
    Ok(Request {
        method: method.to_string(),
        path: percent_decode_path(&path),
        query,
        version,
        headers,
        body,
    })
}

fn percent_decode_path(p: &str) -> String {
    if p.contains('%') {
        percent_decode(&p.replace('+', "%2B"))
    } else {
        p.to_string()
    }
}

/// Reads a chunked body (trailers ignored).
pub fn read_chunked<R: BufRead>(r: &mut R, limit: usize) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected EOF in chunked body",
            ));
        }
        let size_str = line.trim().split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_str, 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "malformed chunk size"))?;
        if size == 0 {
            // Trailers until an empty line.
            loop {
                let mut t = String::new();
                if r.read_line(&mut t)? == 0 || t.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        if body.len() + size > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "body too large"));
        }
        let start = body.len();
        body.resize(start + size, 0);
        r.read_exact(&mut body[start..])?;
        let mut crlf = [0u8; 2];
        r.read_exact(&mut crlf)?;
    }
}

/// Reason phrase of a status code (Go's `http.StatusText`).
pub fn status_text(code: u16) -> &'static str {
    match code {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        507 => "Insufficient Storage",
        _ => "",
    }
}

/// A response to write.
#[derive(Clone, Debug)]
pub struct Response {
    pub status: u16,
    /// Headers set by the handler (Content-Type, ...). Framing headers are added.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".to_string(), content_type.to_string())],
            body: body.into(),
        }
    }

    pub fn json(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self::new(status, "application/json", body)
    }
}

/// Go's buffer between a connection's responses and its socket (`conn.bufw`, 4 KiB).
pub const CONN_BUFFER: usize = 4 << 10;

/// Go's `bufio.Writer` of [`CONN_BUFFER`] bytes over the socket: what a response writes
/// reaches the socket when the buffer is full (a large write into an empty buffer goes
/// straight through) and when the request is finished (`finishRequest` flushes it). So a
/// response of up to 4 KiB leaves in one write, as one segment (docs/snapd-api.md#http).
struct ConnBuffer<'a, W: Write> {
    socket: &'a mut W,
    buf: Vec<u8>,
}

impl<W: Write> ConnBuffer<'_, W> {
    fn write(&mut self, mut p: &[u8]) -> io::Result<()> {
        while p.len() > CONN_BUFFER - self.buf.len() {
            if self.buf.is_empty() {
                return self.socket.write_all(p);
            }
            let n = CONN_BUFFER - self.buf.len();
            self.buf.extend_from_slice(&p[..n]);
            self.flush()?;
            p = &p[n..];
        }
        self.buf.extend_from_slice(p);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.buf.is_empty() {
            self.socket.write_all(&self.buf)?;
            self.buf.clear();
        }
        self.socket.flush()
    }
}

/// Writes a response like Go's `net/http` server does for a handler that writes its
/// whole body at once without setting Content-Length: `Content-Length` if the body fits
/// in 2048 bytes, else `Transfer-Encoding: chunked` (HTTP/1.1) or a close-delimited body
/// (HTTP/1.0), through the connection's 4 KiB buffer. Returns whether the connection may
/// be kept open.
pub fn write_response<W: Write>(
    socket: &mut W,
    req: &Request,
    resp: &Response,
) -> io::Result<bool> {
    let mut w = ConnBuffer {
        socket,
        buf: Vec::with_capacity(CONN_BUFFER),
    };
    let keep_alive = req.keep_alive();
    let proto = match req.version {
        Version::Http11 => "HTTP/1.1",
        Version::Http10 => "HTTP/1.0",
    };
    let mut head = format!("{proto} {} {}\r\n", resp.status, status_text(resp.status));
    for (k, v) in &resp.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Date: {}\r\n", http_date(SystemTime::now())));
    let small = resp.body.len() <= CHUNKING_THRESHOLD;
    let mut keep = keep_alive;
    let chunked = !small && req.version == Version::Http11;
    if small {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    } else if !chunked {
        keep = false;
    }
    if !keep && req.version == Version::Http11 {
        head.push_str("Connection: close\r\n");
    }
    if chunked {
        head.push_str("Transfer-Encoding: chunked\r\n");
    }
    head.push_str("\r\n");
    w.write(head.as_bytes())?;
    if chunked {
        // snapd writes the marshalled body with one Write, which Go's chunkWriter sends
        // as one chunk (snapd 2.57.6: `398f\r\n` + 14735 bytes for /v2/interfaces).
        w.write(format!("{:x}\r\n", resp.body.len()).as_bytes())?;
        w.write(&resp.body)?;
        w.write(b"\r\n")?;
        w.write(b"0\r\n\r\n")?;
    } else if req.method != "HEAD" {
        w.write(&resp.body)?;
    }
    w.flush()?;
    Ok(keep)
}

/// Go's reply to an HTTP/1.1 request without a Host header (plain text, then close). Go
/// writes `"HTTP/1.1 " + publicErr + headers + publicErr`, so the reason is part of the
/// status line too (seen verbatim from snapd 2.57.6, FINDINGS §3.2).
pub const MISSING_HOST_REPLY: &str = "HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host header";

/// Go's reply to an unparseable request (same shape as [`MISSING_HOST_REPLY`]).
pub fn bad_request_reply(reason: &str) -> String {
    format!("HTTP/1.1 400 Bad Request: {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: {reason}")
}

// ---------------------------------------------------------------------------------------
// Client

/// A response received by the client.
#[derive(Clone, Debug)]
pub struct ClientResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ClientResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// Client-side failure.
#[derive(Debug)]
pub enum ClientError {
    /// Could not connect (the socket is missing, refused...).
    Connect(io::Error),
    /// The exchange failed after connecting.
    Io(io::Error),
    /// The response was not valid HTTP.
    Protocol(String),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Connect(e) => write!(f, "connect: {}", errno_text(e)),
            ClientError::Io(e) => write!(f, "{}", errno_text(e)),
            ClientError::Protocol(m) => write!(f, "{m}"),
        }
    }
}

/// Go-style (lower-case strerror) text of an I/O error.
pub fn errno_text(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(2) => "no such file or directory".to_string(),
        Some(13) => "permission denied".to_string(),
        Some(111) => "connection refused".to_string(),
        Some(104) => "connection reset by peer".to_string(),
        Some(32) => "broken pipe".to_string(),
        Some(20) => "not a directory".to_string(),
        Some(91) => "protocol wrong type for socket".to_string(),
        _ => match e.kind() {
            io::ErrorKind::UnexpectedEof => "EOF".to_string(),
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "i/o timeout".to_string(),
            _ => e.to_string(),
        },
    }
}

/// Sends one request over an established stream and reads the response.
pub fn exchange<S: Read + Write>(
    stream: S,
    method: &str,
    target: &str,
    host: &str,
    body: Option<&[u8]>,
) -> Result<ClientResponse, ClientError> {
    let mut stream = stream;
    let mut head = format!(
        "{method} {target} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: fake-juju\r\nConnection: close\r\n"
    );
    if let Some(b) = body {
        head.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            b.len()
        ));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).map_err(ClientError::Io)?;
    if let Some(b) = body {
        stream.write_all(b).map_err(ClientError::Io)?;
    }
    stream.flush().map_err(ClientError::Io)?;
    read_response(&mut BufReader::new(stream), method)
}

/// Reads a response (Content-Length, chunked or close-delimited body).
pub fn read_response<R: BufRead>(r: &mut R, method: &str) -> Result<ClientResponse, ClientError> {
    let mut status_line = String::new();
    if r.read_line(&mut status_line).map_err(ClientError::Io)? == 0 {
        return Err(ClientError::Io(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "EOF",
        )));
    }
    let mut parts = status_line.trim_end().splitn(3, ' ');
    let _proto = parts.next();
    let status: u16 = parts
        .next()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| ClientError::Protocol(format!("malformed status line {status_line:?}")))?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).map_err(ClientError::Io)? == 0 {
            return Err(ClientError::Io(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "unexpected EOF",
            )));
        }
        let line = line.trim_end_matches(['\r', '\n']);
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_string(), v.trim().to_string()));
        }
    }
    let no_body =
        method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let body = if no_body {
        Vec::new()
    } else if find_header(&headers, "Transfer-Encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked(r, usize::MAX).map_err(ClientError::Io)?
    } else if let Some(len) = find_header(&headers, "Content-Length") {
        let len: usize = len
            .parse()
            .map_err(|_| ClientError::Protocol(format!("bad Content-Length {len:?}")))?;
        let mut body = vec![0; len];
        r.read_exact(&mut body).map_err(ClientError::Io)?;
        body
    } else {
        let mut body = Vec::new();
        r.read_to_end(&mut body).map_err(ClientError::Io)?;
        body
    };
    Ok(ClientResponse {
        status,
        headers,
        body,
    })
}

/// One request to an HTTP server on a Unix socket (`Host: localhost`, like snapd's Go
/// client).
pub fn unix_request(
    socket: &Path,
    method: &str,
    target: &str,
    body: Option<&[u8]>,
    timeout: Option<Duration>,
) -> Result<ClientResponse, ClientError> {
    let stream = UnixStream::connect(socket).map_err(ClientError::Connect)?;
    stream.set_read_timeout(timeout).map_err(ClientError::Io)?;
    stream.set_write_timeout(timeout).map_err(ClientError::Io)?;
    exchange(stream, method, target, "localhost", body)
}

/// One request to a TCP server.
pub fn tcp_request(
    addr: &str,
    method: &str,
    target: &str,
    timeout: Duration,
) -> Result<ClientResponse, ClientError> {
    let sock = addr
        .parse::<std::net::SocketAddr>()
        .map_err(|e| ClientError::Protocol(format!("bad address {addr:?}: {e}")))?;
    let stream = TcpStream::connect_timeout(&sock, timeout).map_err(ClientError::Connect)?;
    stream
        .set_read_timeout(Some(timeout))
        .map_err(ClientError::Io)?;
    stream
        .set_write_timeout(Some(timeout))
        .map_err(ClientError::Io)?;
    exchange(stream, method, target, addr, None)
}

// ---------------------------------------------------------------------------------------
// Time formatting

/// (year, month, day) of a day counted from 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

struct Civil {
    year: i64,
    month: u32,
    day: u32,
    hour: u64,
    minute: u64,
    second: u64,
    nanos: u32,
    weekday: usize,
}

fn civil(t: SystemTime) -> Civil {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    Civil {
        year,
        month,
        day,
        hour: rem / 3600,
        minute: rem % 3600 / 60,
        second: rem % 60,
        nanos: d.subsec_nanos(),
        // 1970-01-01 was a Thursday.
        weekday: ((days + 4) % 7) as usize,
    }
}

/// RFC 3339 with nanoseconds, trailing zeros trimmed, UTC (Go's `time.RFC3339Nano`).
pub fn rfc3339_nano(t: SystemTime) -> String {
    let c = civil(t);
    let mut s = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        c.year, c.month, c.day, c.hour, c.minute, c.second
    );
    if c.nanos > 0 {
        let frac = format!("{:09}", c.nanos);
        s.push('.');
        s.push_str(frac.trim_end_matches('0'));
    }
    s.push('Z');
    s
}

/// IMF-fixdate as in the HTTP `Date` header.
pub fn http_date(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let c = civil(t);
    format!(
        "{}, {:02} {} {:04} {:02}:{:02}:{:02} GMT",
        DAYS[c.weekday],
        c.day,
        MONTHS[(c.month as usize).saturating_sub(1) % 12],
        c.year,
        c.hour,
        c.minute,
        c.second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bytes of each `write` the socket saw.
    #[derive(Default)]
    struct Socket(Vec<Vec<u8>>);

    impl Write for Socket {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn writes_of(body_len: usize) -> Vec<Vec<u8>> {
        let mut request = &b"GET /v2/snaps/microsample HTTP/1.1\r\nHost: localhost\r\n\r\n"[..];
        let req = read_request(&mut request).unwrap();
        let mut socket = Socket::default();
        let body = "x".repeat(body_len);
        assert!(write_response(&mut socket, &req, &Response::json(200, body)).unwrap());
        socket.0
    }

    #[test]
    fn a_response_reaches_the_socket_as_gos_connection_buffer_sends_it() {
        // Content-Length, head and body in one write.
        let small = writes_of(CHUNKING_THRESHOLD);
        assert_eq!(small.len(), 1);
        let text = String::from_utf8(small[0].clone()).unwrap();
        assert!(text.contains("Content-Length: 2048\r\n") && text.ends_with(&"x".repeat(2048)));
        // Chunked, still within 4 KiB: one write, the last chunk included.
        let chunked = writes_of(3000);
        assert_eq!(chunked.len(), 1);
        assert!(chunked[0].ends_with(b"\r\n0\r\n\r\n"));
        // Larger: the buffer is filled and sent, the rest of the body goes straight
        // through, the end of the message goes at the flush.
        let large = writes_of(10_000);
        let sizes: Vec<usize> = large.iter().map(Vec::len).collect();
        assert_eq!(sizes.len(), 3, "{sizes:?}");
        assert_eq!(sizes[0], CONN_BUFFER);
        assert_eq!(large[2], b"\r\n0\r\n\r\n");
        let all: Vec<u8> = large.concat();
        let text = String::from_utf8(all).unwrap();
        assert!(text.contains("Transfer-Encoding: chunked\r\n\r\n2710\r\n"));
    }
}
