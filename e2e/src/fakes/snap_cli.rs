//! The fake `snap` CLI: a real client of the (fake) snapd REST API on `$SNAPD_SOCKET`
//! (default `/run/snapd.socket`) reproducing the messages and exit codes of the real
//! `snap` (docs/snapd-api.md#cli-exit-codes): 0 success, 1 error, 10 retryable (change conflict), 64 usage
//! (go-flags) errors.
//!
//! Where snapd 2.77's source (docs/snapd-api.md, `cmd/snapd/cli`) and the real `snap` 2.57.6 seen
//! on Debian 12 (`cmd/snap` at tag 2.57.6, see docs/snapd-api.md#versions) differ, this
//! follows 2.57.6: `Please specify a single channel`, a warning (not an error) for a
//! channel that only `channel.Full` accepts, every command error passed through
//! `errorToCmdMessage`, GET requests retried for 120 s while snapd is unreachable.
//! `tests/real_snapd.rs` checks the texts against the real CLI. The real CLI ignores
//! `SNAPD_SOCKET` (only `SNAPPY_GLOBAL_ROOT` moves its socket); the fake needs it to find
//! its own snapd.

use std::env;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::fakes::channel::{self, Channel};
use crate::fakes::http;
use crate::fakes::juju_state::{self, Call};
use crate::fakes::output::{go_json, string_list};

const DEFAULT_SOCKET: &str = "/run/snapd.socket";
/// The real client's request timeout and GET retry interval (`client/client.go`).
const DO_TIMEOUT: Duration = Duration::from_secs(120);
const DO_RETRY: Duration = Duration::from_millis(250);

/// A string field of a JSON object; `""` when it is missing or not a string (as Go
/// decodes it into a `string`).
fn str_field(v: &Value, key: &str) -> String {
    v.get(key).and_then(Value::as_str).unwrap_or("").to_string()
}

/// A failed command.
#[derive(Debug)]
enum Failure {
    /// An error response of the API.
    Api(ApiError),
    /// Any other error (exit 1).
    Plain(String),
    /// go-flags usage error (exit 64).
    Usage(String),
}

impl Failure {
    fn code(&self) -> i32 {
        match self {
            Failure::Api(e) if e.kind == "snap-change-conflict" => 10,
            Failure::Usage(_) => 64,
            _ => 1,
        }
    }

    fn message(&self) -> String {
        match self {
            Failure::Api(e) => e.message.clone(),
            Failure::Plain(m) | Failure::Usage(m) => m.clone(),
        }
    }
}

/// `client.Error`.
#[derive(Debug, Clone)]
struct ApiError {
    message: String,
    kind: String,
    value: Value,
}

type Res<T = ()> = Result<T, Failure>;

/// Output collected while running.
#[derive(Default)]
struct Io {
    stdout: String,
    stderr: String,
}

/// Runs the fake `snap` CLI and returns its exit code.
pub fn main(args: &[String]) -> i32 {
    let dir = env::var_os("FAKE_JUJU_DIR").map(PathBuf::from);
    if let Some(dir) = &dir {
        if dir.join(juju_state::SNAP_HANG_FILE).exists() {
            let _ = juju_state::append_call(
                dir,
                &Call {
                    tool: "snap".to_string(),
                    args: args.to_vec(),
                    stdin: None,
                    exit: None,
                },
            );
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        }
    }
    let mut io = Io::default();
    let code = match run(args, &mut io) {
        Ok(()) => 0,
        Err(f) => {
            io.stderr.push_str(&format!("error: {}\n", f.message()));
            f.code()
        }
    };
    {
        use std::io::Write;
        let _ = std::io::stdout().write_all(io.stdout.as_bytes());
        let _ = std::io::stdout().flush();
        let _ = std::io::stderr().write_all(io.stderr.as_bytes());
        let _ = std::io::stderr().flush();
    }
    if let Some(dir) = &dir {
        let call = Call {
            tool: "snap".to_string(),
            args: args.to_vec(),
            stdin: None,
            exit: Some(code),
        };
        if let Err(e) = juju_state::append_call(dir, &call) {
            eprintln!("fake-juju: {e}");
        }
    }
    code
}

// ---------------------------------------------------------------------------------------
// go-flags style parsing

#[derive(Clone)]
struct Opt {
    long: &'static str,
    short: Option<char>,
    takes_arg: bool,
}

const fn flag(long: &'static str) -> Opt {
    Opt {
        long,
        short: None,
        takes_arg: false,
    }
}

const fn arg(long: &'static str) -> Opt {
    Opt {
        long,
        short: None,
        takes_arg: true,
    }
}

const fn short(long: &'static str, c: char) -> Opt {
    Opt {
        long,
        short: Some(c),
        takes_arg: false,
    }
}

#[derive(Default)]
struct Opts {
    values: Vec<(String, String)>,
    positional: Vec<String>,
}

impl Opts {
    fn get(&self, long: &str) -> Option<&str> {
        self.values
            .iter()
            .rev()
            .find(|(k, _)| k == long)
            .map(|(_, v)| v.as_str())
    }

    fn has(&self, long: &str) -> bool {
        self.get(long).is_some()
    }
}

fn parse_opts(spec: &[Opt], args: &[String]) -> Res<Opts> {
    let mut opts = Opts::default();
    let mut i = 0;
    let looks_like_option = |s: &str| s.starts_with('-') && s.len() > 1;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            opts.positional.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(rest) = a.strip_prefix("--") {
            let (name, inline) = match rest.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (rest, None),
            };
            if name == "help" {
                return Err(Failure::Usage("help".to_string()));
            }
            let Some(opt) = spec.iter().find(|o| o.long == name) else {
                return Err(Failure::Usage(format!("unknown flag `{name}'")));
            };
            if opt.takes_arg {
                let value = match inline {
                    Some(v) => v,
                    None => match args.get(i) {
                        Some(v) if !looks_like_option(v) => {
                            i += 1;
                            v.clone()
                        }
                        _ => {
                            return Err(Failure::Usage(format!(
                                "expected argument for flag `--{name}'"
                            )))
                        }
                    },
                };
                opts.values.push((opt.long.to_string(), value));
            } else {
                if inline.is_some() {
                    return Err(Failure::Usage(format!(
                        "bool flag `--{name}' cannot have an argument"
                    )));
                }
                opts.values.push((opt.long.to_string(), "true".to_string()));
            }
        } else if a.len() > 1 && a.starts_with('-') {
            let chars: Vec<char> = a[1..].chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                if c == 'h' {
                    return Err(Failure::Usage("help".to_string()));
                }
                let Some(opt) = spec.iter().find(|o| o.short == Some(c)) else {
                    return Err(Failure::Usage(format!("unknown flag `{c}'")));
                };
                if opt.takes_arg {
                    let rest: String = chars[j..].iter().collect();
                    let value = if !rest.is_empty() {
                        rest
                    } else if let Some(v) = args.get(i).filter(|v| !looks_like_option(v)) {
                        i += 1;
                        v.clone()
                    } else {
                        return Err(Failure::Usage(format!("expected argument for flag `-{c}'")));
                    };
                    opts.values.push((opt.long.to_string(), value));
                    break;
                }
                opts.values.push((opt.long.to_string(), "true".to_string()));
            }
        } else {
            opts.positional.push(a.clone());
        }
    }
    Ok(opts)
}

const CHANNEL_OPTS: [Opt; 5] = [
    arg("channel"),
    flag("edge"),
    flag("beta"),
    flag("candidate"),
    flag("stable"),
];

/// `channelMixin.setChannelFromCommandline` of snap 2.57.6: a channel `channel.Parse`
/// rejects but `channel.Full` accepts (`1.0/cand`) only gets a warning and is sent to
/// snapd, which rejects it; one that `Full` rejects too is an error (no prefix). (snap
/// 2.77 says `please specify a single channel` and `cannot parse channel: <error>`.)
fn channel_from_opts(opts: &Opts, io: &mut Io) -> Res<String> {
    let mut ch = opts.get("channel").unwrap_or("").to_string();
    for risk in ["stable", "candidate", "beta", "edge"] {
        if !opts.has(risk) {
            continue;
        }
        if !ch.is_empty() {
            return Err(Failure::Plain(
                "Please specify a single channel".to_string(),
            ));
        }
        ch = risk.to_string();
    }
    if !ch.is_empty() {
        if let Err(parse_error) = Channel::parse(&ch) {
            let full = channel::full(&ch).map_err(|_| Failure::Plain(parse_error))?;
            let head = "Warning:";
            let warn = fill(
                &format!(
                    "Specifying a channel {} is relying on undefined behaviour. Interpreting it as {} for now, but this will be an error later.\n",
                    quote(&ch),
                    quote(&full)
                ),
                head.len() + 1,
            );
            io.stderr.push_str(&format!("{head} {warn}\n\n"));
            ch = full;
        }
    }
    Ok(ch)
}

fn usage(command: &str) -> String {
    let args = match command {
        "install" | "refresh" | "remove" => " [<snap>...]",
        "set" => " <snap> <conf value>...",
        "get" => " <snap> [<key>...]",
        "start" | "stop" | "restart" => " <service>...",
        "list" => " [<snap>...]",
        "create-cohort" => " <snap>...",
        _ => "",
    };
    format!("Usage:\n  snap {command} [{command}-OPTIONS]{args}\n")
}

fn run(args: &[String], io: &mut Io) -> Res {
    let Some(command) = args.first() else {
        io.stdout
            .push_str("The snap command lets you install, configure, refresh and remove snaps.\n");
        return Ok(());
    };
    let rest = &args[1..];
    let client = Client::from_env();
    let result = match command.as_str() {
        "install" => cmd_install(&client, rest, io),
        "refresh" => cmd_refresh(&client, rest, io),
        "remove" => cmd_remove(&client, rest, io),
        "set" => cmd_set(&client, rest, io),
        "get" => cmd_get(&client, rest, io),
        "start" | "stop" | "restart" => cmd_service(&client, command, rest, io),
        "list" => cmd_list(&client, rest, io),
        "create-cohort" => cmd_create_cohort(&client, rest, io),
        "--help" | "-h" | "help" => {
            io.stdout.push_str("Usage:\n  snap [OPTIONS] <command>\n");
            return Ok(());
        }
        other if other.starts_with('-') => {
            return Err(Failure::Usage(format!(
                "unknown flag `{}'",
                other.trim_start_matches('-')
            )))
        }
        other => {
            return Err(Failure::Usage(format!(
                "unknown command \"{other}\", see 'snap help'."
            )))
        }
    };
    match result {
        Err(Failure::Usage(m)) if m == "help" => {
            io.stdout.push_str(&usage(command));
            Ok(())
        }
        // `run()` of cmd/snap/main.go: every error of a command goes through
        // `errorToCmdMessage("", <command>, err, nil)` (so `snap set` of a missing snap says
        // `snap "x" not found`, and messages are filled to the terminal width).
        Err(failure @ Failure::Api(_)) => {
            let msg = error_to_cmd_message("", command, failure, "", "")?;
            io.stderr.push_str(&msg);
            io.stderr.push('\n');
            Ok(())
        }
        other => other,
    }
}

fn required(opts: &Opts, what: &str) -> Res {
    if opts.positional.is_empty() {
        return Err(Failure::Usage(format!(
            "the required argument `{what} (at least 1 argument)` was not provided"
        )));
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// REST client

struct Client {
    socket: PathBuf,
}

/// A decoded response envelope.
struct Envelope {
    result: Value,
    change: Option<String>,
}

impl Client {
    fn from_env() -> Self {
        let socket = env::var("SNAPD_SOCKET")
            .ok()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| DEFAULT_SOCKET.to_string());
        Client {
            socket: PathBuf::from(socket),
        }
    }

    /// One request. Like the real client's `do()`, a GET that fails (snapd not there
    /// yet, or restarting) is retried every 250 ms for up to 120 s; other methods fail at
    /// once.
    fn raw(&self, method: &str, path: &str, payload: Option<&str>) -> Res<http::ClientResponse> {
        let deadline = Instant::now() + DO_TIMEOUT;
        let mut result;
        loop {
            result = http::unix_request(
                &self.socket,
                method,
                path,
                payload.map(str::as_bytes),
                Some(DO_TIMEOUT),
            );
            if result.is_ok() || method != "GET" || Instant::now() + DO_RETRY > deadline {
                break;
            }
            std::thread::sleep(DO_RETRY);
        }
        result.map_err(|e| {
            let op = match method {
                "GET" => "Get",
                "POST" => "Post",
                "PUT" => "Put",
                "DELETE" => "Delete",
                other => other,
            };
            let url = format!("http://localhost{path}");
            let detail = match &e {
                http::ClientError::Connect(_) => {
                    format!("dial unix {}: {e}", self.socket.display())
                }
                other => other.to_string(),
            };
            Failure::Plain(format!(
                "cannot communicate with server: {op} \"{url}\": {detail}"
            ))
        })
    }

    /// Performs a request and decodes the snapd envelope; error envelopes become
    /// `Failure::Api`.
    /// `payload`: the JSON request body, already encoded.
    fn call(&self, method: &str, path: &str, payload: Option<&str>) -> Res<Envelope> {
        let resp = self.raw(method, path, payload)?;
        let value: Value = serde_json::from_slice(&resp.body).map_err(|e| {
            Failure::Plain(format!(
                "cannot decode {}: {e}",
                crate::fakes::gnuflag::go_quote(&resp.text())
            ))
        })?;
        let result = value.get("result").cloned().unwrap_or(Value::Null);
        if value.get("type").and_then(Value::as_str) == Some("error") {
            return Err(Failure::Api(ApiError {
                message: str_field(&result, "message"),
                kind: str_field(&result, "kind"),
                value: result.get("value").cloned().unwrap_or(Value::Null),
            }));
        }
        Ok(Envelope {
            result,
            change: value
                .get("change")
                .and_then(Value::as_str)
                .map(str::to_string),
        })
    }

    /// Sends an async request and returns its change id.
    fn do_async(&self, method: &str, path: &str, body: &Value) -> Res<String> {
        self.do_async_json(method, path, &go_json(body))
    }

    /// [`Client::do_async`] with the body already encoded (a Go struct's field order).
    fn do_async_json(&self, method: &str, path: &str, body: &str) -> Res<String> {
        let env = self.call(method, path, Some(body))?;
        env.change
            .ok_or_else(|| Failure::Plain("async response without change reference".to_string()))
    }

    /// `waitMixin.wait`: polls the change every 100 ms until ready.
    fn wait(&self, id: &str) -> Res<Value> {
        let mut gone_since: Option<Instant> = None;
        loop {
            match self.call("GET", &format!("/v2/changes/{id}"), None) {
                Ok(env) => {
                    gone_since = None;
                    let chg = env.result;
                    let status = chg.get("status").and_then(Value::as_str).unwrap_or("");
                    if status == "Wait" {
                        return Ok(chg);
                    }
                    if chg.get("ready").and_then(Value::as_bool).unwrap_or(false) {
                        if status == "Done" {
                            return Ok(chg);
                        }
                        let err = chg.get("err").and_then(Value::as_str).unwrap_or("");
                        if !err.is_empty() {
                            return Err(Failure::Plain(err.to_string()));
                        }
                        return Err(Failure::Plain(format!(
                            "change finished in status {} with no error message",
                            crate::fakes::gnuflag::go_quote(status)
                        )));
                    }
                }
                Err(Failure::Plain(m)) if m.starts_with("cannot communicate with server") => {
                    let since = *gone_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > Duration::from_secs(5) {
                        return Err(Failure::Plain(m));
                    }
                }
                Err(e) => return Err(e),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn list(&self, names: &[&str]) -> Res<Vec<Value>> {
        let path = if names.is_empty() {
            "/v2/snaps".to_string()
        } else {
            format!("/v2/snaps?snaps={}", names.join(","))
        };
        let env = self.call("GET", &path, None)?;
        Ok(env.result.as_array().cloned().unwrap_or_default())
    }
}

// ---------------------------------------------------------------------------------------
// Messages

fn term_width() -> usize {
    let cols = env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let width = if cols < 40 { 80 } else { cols };
    width.min(100)
}

/// The snap CLI's `fill`: go/doc text formatting at the terminal width.
fn fill(para: &str, indent: usize) -> String {
    let width = term_width() - 1;
    let prefix = " ".repeat(indent);
    to_text(para, &prefix, width.saturating_sub(indent))
        .trim()
        .to_string()
}

/// go/doc/comment's text printer for paragraphs and code blocks.
fn to_text(text: &str, prefix: &str, width: usize) -> String {
    enum Block {
        Para(Vec<String>),
        Code(Vec<String>),
    }
    let lines: Vec<&str> = text.split('\n').collect();
    let indented = |l: &str| l.starts_with(' ') || l.starts_with('\t');
    let mut blocks = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim().is_empty() {
            i += 1;
            continue;
        }
        if indented(lines[i]) {
            let mut code: Vec<&str> = Vec::new();
            while i < lines.len() && (indented(lines[i]) || lines[i].trim().is_empty()) {
                code.push(lines[i]);
                i += 1;
            }
            while code.last().is_some_and(|l| l.trim().is_empty()) {
                code.pop();
            }
            let common = code
                .iter()
                .filter(|l| !l.trim().is_empty())
                .map(|l| l.len() - l.trim_start().len())
                .min()
                .unwrap_or(0);
            blocks.push(Block::Code(
                code.iter()
                    .map(|l| l.get(common..).unwrap_or("").to_string())
                    .collect(),
            ));
        } else {
            let mut words = Vec::new();
            while i < lines.len() && !lines[i].trim().is_empty() && !indented(lines[i]) {
                words.extend(lines[i].split_whitespace().map(str::to_string));
                i += 1;
            }
            blocks.push(Block::Para(words));
        }
    }
    let mut out = String::new();
    for (n, block) in blocks.iter().enumerate() {
        if n > 0 {
            out.push('\n');
        }
        match block {
            Block::Para(words) => {
                let seq = wrap(words, width);
                for pair in seq.windows(2) {
                    out.push_str(prefix);
                    out.push_str(&words[pair[0]..pair[1]].join(" "));
                    out.push('\n');
                }
            }
            Block::Code(lines) => {
                for l in lines {
                    if !l.is_empty() {
                        out.push_str(prefix);
                        out.push_str(l);
                    }
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// go/doc/comment's `wrap`: minimise the squares of the leftover space of every line
/// but the last, with a penalty of 64 for not ending a line at punctuation.
fn wrap(words: &[String], max: usize) -> Vec<usize> {
    let n = words.len();
    if n == 0 {
        return vec![0, 0];
    }
    let mut total = vec![0usize; n + 1];
    for (i, w) in words.iter().enumerate() {
        total[i + 1] = total[i] + w.chars().count() + 1;
    }
    let max = max as i64;
    let weight = |i: usize, j: usize| -> (i64, i64) {
        let len = (total[j] - 1 - total[i]) as i64;
        if j == n && len <= max {
            return (0, 0);
        }
        let penalty = match words[j - 1].chars().last() {
            Some('.' | ',' | ':' | ';') => 0,
            _ => 64,
        };
        let v = (max - len) * (max - len);
        if len > max {
            (v, penalty)
        } else {
            (0, v + penalty)
        }
    };
    let mut best: Vec<(i64, i64)> = vec![(0, 0); n + 1];
    let mut from = vec![0usize; n + 1];
    for j in 1..=n {
        let mut choice: Option<((i64, i64), usize)> = None;
        for (i, prev) in best.iter().enumerate().take(j) {
            let w = weight(i, j);
            let score = (prev.0 + w.0, prev.1 + w.1);
            if choice.is_none_or(|(s, _)| score < s) {
                choice = Some((score, i));
            }
        }
        if let Some((score, i)) = choice {
            best[j] = score;
            from[j] = i;
        }
    }
    let mut seq = vec![n];
    let mut m = n;
    while m > 0 {
        m = from[m];
        seq.push(m);
    }
    seq.reverse();
    seq
}

/// `errorToCmdMessage`: Ok(message for stderr, exit 0) or Err(error).
fn error_to_cmd_message(
    snap: &str,
    op: &str,
    failure: Failure,
    channel_opt: &str,
    revision: &str,
) -> Res<String> {
    let Failure::Api(err) = failure else {
        return Err(failure);
    };
    if err.kind == "snap-change-conflict" {
        return Err(Failure::Api(err));
    }
    let mut is_error = true;
    let mut snap_name = snap.to_string();
    let value_str = err.value.as_str().unwrap_or("").to_string();
    let msg = match err.kind.as_str() {
        "snap-not-found" => {
            if snap_name.is_empty() {
                snap_name = value_str;
            }
            format!("snap {} not found", quote(&snap_name))
        }
        "snap-channel-not-available" | "snap-architecture-not-available"
            if channel_not_available_detail(&err).is_some() =>
        {
            channel_not_available_detail(&err).unwrap_or_default()
        }
        "snap-channel-not-available"
        | "snap-architecture-not-available"
        | "snap-revision-not-available" => {
            if snap_name.is_empty() {
                snap_name = value_str;
            }
            if !revision.is_empty() {
                format!(
                    "snap {} revision {revision} not available (see 'snap info {snap_name}')",
                    quote(&snap_name)
                )
            } else if !channel_opt.is_empty() {
                format!(
                    "snap {} not available on channel {} (see 'snap info {snap_name}')",
                    quote(&snap_name),
                    quote(channel_opt)
                )
            } else {
                format!(
                    "snap {} not available as specified (see 'snap info {snap_name}')",
                    quote(&snap_name)
                )
            }
        }
        "snap-already-installed" => {
            // snapd 2.77 sends {"snaps": [...]}; 2.57 sends the name as a string and its
            // CLI uses the snap name it asked for.
            let mut snaps = string_list(err.value.get("snaps"));
            if snaps.is_empty() && !snap_name.is_empty() {
                snaps.push(snap_name.clone());
            }
            if snaps.is_empty() {
                return Err(Failure::Api(err));
            }
            let msgs: Vec<String> = snaps
                .iter()
                .map(|s| {
                    format!(
                        "snap {} is already installed, see 'snap help refresh'",
                        quote(s)
                    )
                })
                .collect();
            return Ok(msgs.join("\n"));
        }
        "login-required" => {
            if is_root() {
                format!("{} (see 'snap help login')", err.message)
            } else {
                format!("{} (try with sudo)", err.message)
            }
        }
        "snap-no-update-available" => {
            is_error = false;
            format!("snap {} has no updates available", quote(&snap_name))
        }
        "snap-not-installed" => {
            is_error = op != "remove";
            err.message.clone()
        }
        "network-timeout" => "unable to contact snap store".to_string(),
        "snap-local" => format!(
            "local snap {} is unknown to the store, use --amend to proceed anyway",
            quote(&snap_name)
        ),
        _ => err.message.clone(),
    };
    let msg = fill(&msg, "error: ".len());
    if is_error {
        Err(Failure::Plain(msg))
    } else {
        Ok(msg)
    }
}

fn quote(s: &str) -> String {
    crate::fakes::gnuflag::go_quote(s)
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(1).map(|u| u == "0"))
        })
        .unwrap_or(false)
}

/// `snapRevisionNotAvailableMessage` when the error carries enough detail.
fn channel_not_available_detail(err: &ApiError) -> Option<String> {
    let v = &err.value;
    let s = |k: &str| str_field(v, k);
    let (snap, action, arch, ch) = (s("snap-name"), s("action"), s("architecture"), s("channel"));
    let releases = v.get("releases").and_then(Value::as_array)?;
    if snap.is_empty()
        || action.is_empty()
        || arch.is_empty()
        || ch.is_empty()
        || releases.is_empty()
    {
        return None;
    }
    Some(revision_not_available_message(
        &err.kind, &snap, &action, &arch, &ch, releases,
    ))
}

fn revision_not_available_message(
    kind: &str,
    snap: &str,
    action: &str,
    arch: &str,
    requested: &str,
    releases: &[Value],
) -> String {
    let Ok(req) = Channel::parse(requested) else {
        return format!(
            "requested channel {} is not valid (see 'snap info {snap}' for valid ones)",
            quote(requested)
        );
    };
    let avail: Vec<(Channel, String)> = releases
        .iter()
        .filter_map(|r| {
            let a = r.get("architecture").and_then(Value::as_str)?;
            let c = r.get("channel").and_then(Value::as_str)?;
            if a.is_empty() {
                return None;
            }
            Channel::parse(c).ok().map(|c| (c, a.to_string()))
        })
        .collect();
    let matches = |key: &str| -> Vec<&(Channel, String)> {
        avail
            .iter()
            .filter(|(c, a)| {
                let mut parts = Vec::new();
                if a == arch {
                    parts.push("architecture");
                }
                if c.track == req.track {
                    parts.push("track");
                }
                // `Channel.Match`: the requested risk accepts equal or more stable ones.
                if risk_level(&req.risk) >= risk_level(&c.risk) {
                    parts.push("risk");
                }
                parts.join(":") == key
            })
            .collect()
    };
    if kind == "snap-architecture-not-available" {
        let archs = |list: &[&(Channel, String)]| {
            let mut v: Vec<String> = Vec::new();
            for (_, a) in list {
                if !v.contains(a) {
                    v.push(a.clone());
                }
            }
            v.join(", ")
        };
        let hits = matches("track:risk");
        if !hits.is_empty() {
            return format!(
                "snap {} is not available on {} for this architecture ({arch}) but exists on other architectures ({}).",
                quote(snap),
                req.name(),
                archs(&hits)
            );
        }
        let all: Vec<&(Channel, String)> = avail.iter().collect();
        return format!(
            "snap {} is not available on this architecture ({arch}) but exists on other architectures ({}).",
            quote(snap),
            archs(&all)
        );
    }
    if !req.branch.is_empty() {
        if !matches("architecture:track:risk").is_empty() {
            let tr = Channel {
                track: req.track.clone(),
                risk: req.risk.clone(),
                branch: String::new(),
            };
            return format!(
                "requested a non-existing branch on {} for snap {}: {}",
                tr.full(),
                quote(snap),
                req.branch
            );
        }
        return format!(
            "requested a non-existing branch for snap {}: {}",
            quote(snap),
            req.full()
        );
    }
    let pre_rel_warn =
        "Please be mindful pre-release channels may include features not completely tested or implemented.";
    let track_warn = "Please be mindful that different tracks may include different features.";
    let more_info = format!("Get more information with 'snap info {snap}'.");
    let hits = matches("architecture:track");
    if !hits.is_empty() {
        let mut msg = format!(
            "snap {} is not available on {} but is available to install on the following channels:\n",
            quote(snap),
            req.name()
        );
        msg.push_str(&install_table(snap, action, &hits, false));
        msg.push('\n');
        if req.risk == "stable" {
            msg.push('\n');
            msg.push_str(pre_rel_warn);
        }
        msg.push('\n');
        msg.push_str(&more_info);
        return msg;
    }
    let hits = matches("architecture:risk");
    if !hits.is_empty() {
        let mut msg = format!(
            "snap {} is not available on {} but is available to install on the following tracks:\n",
            quote(snap),
            req.full()
        );
        msg.push_str(&install_table(snap, action, &hits, true));
        msg.push_str("\n\n");
        msg.push_str(track_warn);
        msg.push('\n');
        msg.push_str(&more_info);
        return msg;
    }
    format!(
        "snap {} is not available on {} but other tracks exist.\n\n\n{track_warn}\n{more_info}",
        quote(snap),
        req.full()
    )
}

/// `riskLevel`: index of a risk in stable < candidate < beta < edge, -1 if unknown.
fn risk_level(risk: &str) -> isize {
    channel::RISKS
        .iter()
        .position(|r| *r == risk)
        .map_or(-1, |i| i as isize)
}

fn install_table(snap: &str, action: &str, avail: &[&(Channel, String)], full: bool) -> String {
    let rows: Vec<(String, String)> = avail
        .iter()
        .map(|(c, _)| {
            let name = if full { c.full() } else { c.name() };
            let option = if c.branch.is_empty() && c.track.is_empty() {
                format!("--{}", c.risk)
            } else if c.branch.is_empty() && c.risk == "stable" {
                format!("--channel={}", c.track)
            } else {
                format!("--channel={}", c.name())
            };
            (name, format!("snap {action} {option} {snap}"))
        })
        .collect();
    // text/tabwriter with minwidth len("candidate")+2, padding 2.
    let width = rows
        .iter()
        .map(|(n, _)| n.chars().count() + 2)
        .max()
        .unwrap_or(0)
        .max("candidate".len() + 2);
    rows.iter()
        .map(|(n, rest)| format!("  {n:<width$}{rest}"))
        .collect::<Vec<_>>()
        .join("\n")
}

// ---------------------------------------------------------------------------------------
// Commands

fn is_local_path(name: &str) -> bool {
    name.contains('/') || name.ends_with(".snap")
}

fn snap_options_body(
    action: &str,
    channel: &str,
    opts: &Opts,
    bools: &[&str],
    with_transaction: bool,
) -> Value {
    let mut body = Map::new();
    body.insert("action".to_string(), json!(action));
    if !channel.is_empty() {
        body.insert("channel".to_string(), json!(channel));
    }
    if let Some(rev) = opts.get("revision").filter(|r| !r.is_empty()) {
        body.insert("revision".to_string(), json!(rev));
    }
    if let Some(c) = opts.get("cohort").filter(|r| !r.is_empty()) {
        body.insert("cohort-key".to_string(), json!(c));
    }
    for b in bools {
        if opts.has(b) {
            body.insert((*b).to_string(), json!(true));
        }
    }
    if with_transaction {
        let t = opts.get("transaction").unwrap_or("per-snap");
        body.insert("transaction".to_string(), json!(t));
    }
    Value::Object(body)
}

fn cmd_install(client: &Client, args: &[String], io: &mut Io) -> Res {
    let mut spec = CHANNEL_OPTS.to_vec();
    spec.extend([
        flag("classic"),
        flag("devmode"),
        flag("jailmode"),
        flag("dangerous"),
        flag("unaliased"),
        flag("prefer"),
        flag("ignore-validation"),
        flag("no-wait"),
        arg("revision"),
        arg("name"),
        arg("cohort"),
        arg("transaction"),
    ]);
    let opts = parse_opts(&spec, args)?;
    required(&opts, "<snap>")?;
    let channel = channel_from_opts(&opts, io)?;
    if opts.positional.len() > 1 {
        return Err(Failure::Plain(
            "fake snap: installing several snaps at once is not supported".to_string(),
        ));
    }
    let name = opts.positional[0].clone();
    if is_local_path(&name) {
        return Err(Failure::Plain(
            "fake snap: installing local snap files is not supported".to_string(),
        ));
    }
    let body = snap_options_body(
        "install",
        &channel,
        &opts,
        &[
            "devmode",
            "jailmode",
            "classic",
            "dangerous",
            "ignore-validation",
            "unaliased",
            "prefer",
        ],
        true,
    );
    let revision = opts.get("revision").unwrap_or("");
    let Some(chg) = post_change(client, &name, &body, &opts, io, |f| {
        error_to_cmd_message(&name, "install", f, &channel, revision)
    })?
    else {
        return Ok(());
    };
    show_done(client, &chg, "install", opts.has("classic"), io)
}

fn cmd_refresh(client: &Client, args: &[String], io: &mut Io) -> Res {
    let mut spec = CHANNEL_OPTS.to_vec();
    spec.extend([
        flag("classic"),
        flag("devmode"),
        flag("jailmode"),
        flag("amend"),
        flag("ignore-validation"),
        flag("leave-cohort"),
        flag("no-wait"),
        arg("revision"),
        arg("cohort"),
        arg("transaction"),
    ]);
    let opts = parse_opts(&spec, args)?;
    let channel = channel_from_opts(&opts, io)?;
    if opts.positional.len() != 1 {
        return Err(Failure::Plain(
            "fake snap: refreshing all or several snaps at once is not supported".to_string(),
        ));
    }
    let name = opts.positional[0].clone();
    let body = snap_options_body(
        "refresh",
        &channel,
        &opts,
        &[
            "leave-cohort",
            "devmode",
            "jailmode",
            "classic",
            "ignore-validation",
            "amend",
        ],
        true,
    );
    let revision = opts.get("revision").unwrap_or("");
    let Some(chg) = post_change(client, &name, &body, &opts, io, |f| {
        error_to_cmd_message(&name, "refresh", f, &channel, revision)
    })?
    else {
        return Ok(());
    };
    show_done(client, &chg, "refresh", false, io)
}

/// `POST /v2/snaps/<name>` with `body` (`snap install/refresh/remove`), then waits for the
/// change unless `--no-wait`. `None` when there is nothing more to show: snapd refused (the
/// CLI's words for it, from `message`, are on stderr) or `--no-wait` (the change id is on
/// stdout).
fn post_change(
    client: &Client,
    name: &str,
    body: &Value,
    opts: &Opts,
    io: &mut Io,
    message: impl FnOnce(Failure) -> Res<String>,
) -> Res<Option<Value>> {
    let change = match client.do_async("POST", &format!("/v2/snaps/{name}"), body) {
        Ok(id) => id,
        Err(f) => {
            io.stderr.push_str(&message(f)?);
            io.stderr.push('\n');
            return Ok(None);
        }
    };
    if opts.has("no-wait") {
        io.stdout.push_str(&format!("{change}\n"));
        return Ok(None);
    }
    client.wait(&change).map(Some)
}

fn path_warning(io: &mut Io) {
    let in_path = env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|p| Path::new(p) == Path::new("/snap/bin"));
    if !in_path {
        let head = "Warning:";
        let warn = fill(
            "/snap/bin was not found in your $PATH. If you've not restarted your session since you installed snapd, try doing that. Please see https://forum.snapcraft.io/t/9469 for more details.",
            head.len() + 1,
        );
        io.stderr.push_str(&format!("{head} {warn}\n\n"));
    }
}

/// `showDone` for install/refresh.
fn show_done(client: &Client, chg: &Value, op: &str, classic: bool, io: &mut Io) -> Res {
    if chg.get("status").and_then(Value::as_str) == Some("Wait") {
        let id = chg.get("id").and_then(Value::as_str).unwrap_or("");
        io.stdout.push_str(&format!(
            "Change {id} waiting on external action to be completed\n"
        ));
        return Ok(());
    }
    let names = string_list(chg.pointer("/data/snap-names"));
    if names.is_empty() {
        return Ok(());
    }
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let snaps = client.list(&refs)?;
    let mut warned = false;
    for snap in &snaps {
        let s = |k: &str| str_field(snap, k);
        let (name, version, ch, tracking) =
            (s("name"), s("version"), s("channel"), s("tracking-channel"));
        let mut channel_str = String::new();
        if !ch.is_empty() {
            let parsed = Channel::parse(&ch).map_err(Failure::Plain)?;
            if parsed.name() != "stable" {
                channel_str = format!(" ({})", parsed.name());
            }
        }
        let publisher = snap.get("publisher").map(|p| {
            let g = |k: &str| str_field(p, k);
            let (user, display) = (g("username"), g("display-name"));
            if user.replace('-', " ").eq_ignore_ascii_case(&display) {
                display
            } else {
                format!("{display} ({user})")
            }
        });
        let action = if op == "install" {
            "installed"
        } else {
            "refreshed"
        };
        if op == "install" {
            if !warned {
                path_warning(io);
                warned = true;
            }
            if classic && s("confinement") != "classic" {
                let head = "Warning:";
                let warn = fill(
                    &format!("flag --classic ignored for strictly confined snap {name}"),
                    head.len() + 1,
                );
                io.stderr.push_str(&format!("{head} {warn}\n\n"));
            }
        }
        match publisher {
            Some(p) => io.stdout.push_str(&format!(
                "{name}{channel_str} {version} from {p} {action}\n"
            )),
            None => io
                .stdout
                .push_str(&format!("{name}{channel_str} {version} {action}\n")),
        }
        if !tracking.is_empty() && tracking != ch && !ch.is_empty() {
            if let Ok(false) = channel::same_risk(&tracking, &ch) {
                io.stdout.push_str(&format!(
                    "Channel {tracking} for {name} is closed; temporarily forwarding to {ch}.\n"
                ));
            }
        }
    }
    Ok(())
}

fn cmd_remove(client: &Client, args: &[String], io: &mut Io) -> Res {
    let spec = vec![
        flag("purge"),
        flag("terminate"),
        flag("no-wait"),
        arg("revision"),
    ];
    let opts = parse_opts(&spec, args)?;
    required(&opts, "<snap>")?;
    if opts.positional.len() > 1 {
        return Err(Failure::Plain(
            "fake snap: removing several snaps at once is not supported".to_string(),
        ));
    }
    let name = opts.positional[0].clone();
    let body = snap_options_body("remove", "", &opts, &["purge", "terminate"], false);
    let Some(chg) = post_change(client, &name, &body, &opts, io, |f| {
        error_to_cmd_message(&name, "remove", f, "", "")
    })?
    else {
        return Ok(());
    };
    let removed = string_list(chg.pointer("/data/snap-names"));
    let revision = opts.get("revision").unwrap_or("");
    for r in &removed {
        if revision.is_empty() {
            io.stdout.push_str(&format!("{r} removed\n"));
        } else {
            io.stdout
                .push_str(&format!("{r} (revision {revision}) removed\n"));
        }
    }
    if !removed.contains(&name) {
        io.stdout.push_str(&format!("{name} not installed\n"));
    }
    Ok(())
}

fn cmd_set(client: &Client, args: &[String], io: &mut Io) -> Res {
    let spec = vec![short("typed", 't'), short("string", 's'), flag("no-wait")];
    let opts = parse_opts(&spec, args)?;
    if opts.positional.len() < 2 {
        return Err(Failure::Usage(
            "the required argument `<conf value> (at least 1 argument)` was not provided"
                .to_string(),
        ));
    }
    if opts.has("typed") && opts.has("string") {
        return Err(Failure::Plain("cannot use -t and -s together".to_string()));
    }
    let name = opts.positional[0].clone();
    let mut patch = Map::new();
    for kv in &opts.positional[1..] {
        match kv.split_once('=') {
            None if kv.ends_with('!') => {
                let key = kv.trim_end_matches('!');
                if key.is_empty() {
                    return Err(Failure::Plain(
                        "configuration keys cannot be empty (use key! to unset a key)".to_string(),
                    ));
                }
                patch.insert(key.to_string(), Value::Null);
            }
            None => {
                return Err(Failure::Plain(format!(
                    "invalid configuration: {} (want key=value)",
                    quote(kv)
                )))
            }
            Some(("", _)) => {
                return Err(Failure::Plain(
                    "configuration keys cannot be empty".to_string(),
                ))
            }
            Some((k, v)) => {
                let value = if opts.has("string") {
                    json!(v)
                } else {
                    match serde_json::from_str::<Value>(v) {
                        Ok(parsed) => parsed,
                        Err(e) if opts.has("typed") => {
                            return Err(Failure::Plain(format!("failed to parse JSON: {e}")))
                        }
                        Err(_) => json!(v),
                    }
                };
                patch.insert(k.to_string(), value);
            }
        }
    }
    let change = client.do_async(
        "PUT",
        &format!("/v2/snaps/{name}/conf"),
        &Value::Object(patch),
    )?;
    if opts.has("no-wait") {
        io.stdout.push_str(&format!("{change}\n"));
        return Ok(());
    }
    client.wait(&change)?;
    Ok(())
}

fn cmd_get(client: &Client, args: &[String], io: &mut Io) -> Res {
    let spec = vec![
        short("document", 'd'),
        short("typed", 't'),
        short("list", 'l'),
    ];
    let opts = parse_opts(&spec, args)?;
    let Some(name) = opts.positional.first().cloned() else {
        return Err(Failure::Usage(
            "the required argument `<snap>` was not provided".to_string(),
        ));
    };
    if opts.has("document") && opts.has("typed") {
        return Err(Failure::Plain("cannot use -d and -t together".to_string()));
    }
    let keys = &opts.positional[1..];
    let path = if keys.is_empty() {
        format!("/v2/snaps/{name}/conf")
    } else {
        format!("/v2/snaps/{name}/conf?keys={}", keys.join(","))
    };
    let conf = client.call("GET", &path, None)?.result;
    let conf_map = conf.as_object().cloned().unwrap_or_default();
    let pretty = |v: &Value| serde_json::to_string_pretty(v).unwrap_or_default();
    if opts.has("document") {
        io.stdout.push_str(&pretty(&conf));
        io.stdout.push('\n');
        return Ok(());
    }
    if keys.is_empty() && conf_map.is_empty() {
        return Err(Failure::Plain(format!(
            "snap {} has no configuration",
            quote(&name)
        )));
    }
    let to_print = if keys.len() == 1 {
        match conf_map.get(&keys[0]) {
            Some(Value::Object(_)) => conf.clone(),
            Some(v) => v.clone(),
            None => Value::Null,
        }
    } else {
        conf.clone()
    };
    if to_print.is_object() || opts.has("list") {
        if opts.has("list") {
            io.stdout.push_str("Key   Value\n");
            for (k, v) in &conf_map {
                let text = match v {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                io.stdout.push_str(&format!("{k}  {text}\n"));
            }
            return Ok(());
        }
        // The Go source uses a raw string here, so the "\\n" is printed literally.
        io.stderr.push_str("WARNING: The output of 'snap get' will become a list with columns - use -d or -l to force the output format.\\n");
        io.stdout.push_str(&pretty(&to_print));
        io.stdout.push('\n');
        return Ok(());
    }
    match (&to_print, opts.has("typed")) {
        (Value::String(s), false) => io.stdout.push_str(&format!("{s}\n")),
        (Value::Null, false) => io.stdout.push('\n'),
        (v, _) => {
            io.stdout.push_str(&pretty(v));
            io.stdout.push('\n');
        }
    }
    Ok(())
}

fn cmd_service(client: &Client, action: &str, args: &[String], io: &mut Io) -> Res {
    let extra = match action {
        "start" => "enable",
        "stop" => "disable",
        _ => "reload",
    };
    let spec = vec![
        flag(extra),
        flag("no-wait"),
        flag("user"),
        flag("system"),
        flag("users"),
    ];
    let opts = parse_opts(&spec, args)?;
    required(&opts, "<service>")?;
    // `client.appInstruction`: action, names, then enable/disable/reload (omitempty), in
    // the struct's field order.
    let mut body = format!(
        "{{\"action\":{},\"names\":{}",
        go_json(&json!(action)),
        go_json(&json!(opts.positional))
    );
    if opts.has(extra) {
        body.push_str(&format!(",\"{extra}\":true"));
    }
    body.push('}');
    let change = client.do_async_json("POST", "/v2/apps", &body)?;
    if opts.has("no-wait") {
        io.stdout.push_str(&format!("{change}\n"));
        return Ok(());
    }
    client.wait(&change)?;
    io.stdout.push_str(match action {
        "start" => "Started.\n",
        "stop" => "Stopped.\n",
        _ => "Restarted.\n",
    });
    Ok(())
}

/// `snap create-cohort <snap>...` (`cmd/snap/cmd_create_cohort.go`): `POST /v2/cohorts`,
/// then the keys as YAML (`gopkg.in/yaml.v2`: map keys sorted, plain scalars).
fn cmd_create_cohort(client: &Client, args: &[String], io: &mut Io) -> Res {
    let opts = parse_opts(&[], args)?;
    if opts.positional.is_empty() {
        return Err(Failure::Usage(
            "the required argument `<snap> (at least 1 argument)` was not provided".to_string(),
        ));
    }
    let body = go_json(&json!({"action": "create", "snaps": opts.positional}));
    // `client.CreateCohorts` wraps every error ("cannot create cohorts: %w"), so it is not a
    // `*client.Error` for `errorToCmdMessage` and is printed as it is.
    let cohorts = match client.call("POST", "/v2/cohorts", Some(&body)) {
        Ok(env) => env.result,
        Err(f) => {
            return Err(Failure::Plain(format!(
                "cannot create cohorts: {}",
                f.message()
            )))
        }
    };
    let Some(map) = cohorts.as_object().filter(|m| !m.is_empty()) else {
        return Ok(());
    };
    let mut names: Vec<&String> = map.keys().collect();
    names.sort();
    io.stdout.push_str("cohorts:\n");
    for name in names {
        let key = map[name].as_str().unwrap_or("");
        io.stdout
            .push_str(&format!("  {name}:\n    cohort-key: {key}\n"));
    }
    Ok(())
}

fn cmd_list(client: &Client, args: &[String], io: &mut Io) -> Res {
    let spec = vec![flag("all"), flag("unicode"), flag("color")];
    let opts = parse_opts(&spec, args)?;
    let names: Vec<&str> = opts.positional.iter().map(String::as_str).collect();
    let snaps = client.list(&names)?;
    if snaps.is_empty() {
        if names.is_empty() {
            io.stderr
                .push_str("No snaps are installed yet. Try 'snap install hello-world'.\n");
            return Ok(());
        }
        return Err(Failure::Plain("no matching snaps installed".to_string()));
    }
    let mut rows = vec![vec![
        "Name".to_string(),
        "Version".to_string(),
        "Rev".to_string(),
        "Tracking".to_string(),
        "Publisher".to_string(),
        "Notes".to_string(),
    ]];
    for snap in &snaps {
        let s = |k: &str| str_field(snap, k);
        let tracking = s("tracking-channel");
        let publisher = snap
            .pointer("/publisher/username")
            .and_then(Value::as_str)
            .unwrap_or("-")
            .to_string();
        rows.push(vec![
            s("name"),
            s("version"),
            s("revision"),
            if tracking.is_empty() {
                "-".to_string()
            } else {
                tracking
            },
            publisher,
            // `NotesFromLocal` (`cmd/snap/notes.go`): of its notes only `in-cohort` can
            // apply to microsample here.
            if s("cohort-key").is_empty() {
                "-".to_string()
            } else {
                "in-cohort".to_string()
            },
        ]);
    }
    // text/tabwriter(minwidth 5, tabwidth 3, padding 2).
    let cols = rows[0].len();
    let widths: Vec<usize> = (0..cols)
        .map(|c| {
            rows.iter()
                .map(|r| r[c].chars().count() + 2)
                .max()
                .unwrap_or(0)
                .max(5)
        })
        .collect();
    for row in rows {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            if c + 1 == cols {
                line.push_str(cell);
            } else {
                line.push_str(&format!("{cell:<w$}", w = widths[c]));
            }
        }
        io.stdout.push_str(line.trim_end());
        io.stdout.push('\n');
    }
    Ok(())
}
