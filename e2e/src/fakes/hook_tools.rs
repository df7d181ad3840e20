//! The fake Juju hook tools (docs/juju.md#hook-tools): same flags, positional checks, exit
//! codes, error texts and output formats as jujuc, backed by `$FAKE_JUJU_DIR/state.json`.

use std::collections::BTreeMap;
use std::env;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::fakes::gnuflag::{self, check_empty, go_quote, Flag, ParseError, Parsed};
use crate::fakes::juju_state::{
    self, Call, JujuState, LogRecord, PortChange, PortOp, StatusEntry, HOOK_TOOLS,
};
use crate::fakes::output::{self, Output};

/// Whether `name` is one of the hook tools.
pub fn is_tool(name: &str) -> bool {
    HOOK_TOOLS.contains(&name)
}

/// How a tool invocation failed.
#[derive(Debug)]
enum Fail {
    /// `--help`: usage on stdout, exit 0.
    Help(String),
    /// Flag or `Init` error: exit 2.
    Init(String),
    /// `Run` error: exit 1.
    Run(String),
}

impl From<String> for Fail {
    fn from(msg: String) -> Self {
        Fail::Run(msg)
    }
}

type Res<T = ()> = Result<T, Fail>;

/// Hook context information taken from the environment.
#[derive(Default)]
struct HookEnv {
    dispatch_path: String,
    action: bool,
    relation_id: Option<String>,
    remote_unit: Option<String>,
    remote_app: Option<String>,
}

impl HookEnv {
    fn from_env() -> Self {
        let non_empty = |k: &str| env::var(k).ok().filter(|v| !v.is_empty());
        HookEnv {
            dispatch_path: env::var("JUJU_DISPATCH_PATH").unwrap_or_default(),
            action: non_empty("JUJU_ACTION_NAME").is_some(),
            relation_id: non_empty("JUJU_RELATION_ID"),
            remote_unit: non_empty("JUJU_REMOTE_UNIT"),
            remote_app: non_empty("JUJU_REMOTE_APP"),
        }
    }
}

struct Ctx {
    tool: String,
    dir: PathBuf,
    snapshot: JujuState,
    env: HookEnv,
    stdin: Option<String>,
    stdout: String,
    stderr: String,
}

impl Ctx {
    /// Read-modify-write of the state under the lock.
    fn mutate<T>(&self, f: impl FnOnce(&mut JujuState) -> Res<T>) -> Res<T> {
        juju_state::update(&self.dir, f)
    }

    /// Writes a value with the `--format`/`--output` flags (juju/cmd `Output.Write`).
    fn write_output(&mut self, parsed: &Parsed, value: &Output) -> Res {
        let format = parsed.get("format").unwrap_or("smart");
        let text = output::render(format, value);
        match parsed.get("output").filter(|p| !p.is_empty()) {
            None => self.stdout.push_str(&text),
            Some(path) => {
                let path = absolute(path);
                std::fs::write(&path, text)
                    .map_err(|e| Fail::Run(format!("open {}: {}", path.display(), io_text(&e))))?;
            }
        }
        Ok(())
    }

    fn require_action(&self) -> Res {
        if self.env.action {
            Ok(())
        } else {
            Err(Fail::Run("not running an action".to_string()))
        }
    }

    /// The relation id to use by default (`JUJU_RELATION_ID` of a relation hook).
    fn default_relation(&self) -> Option<i64> {
        let id = self.env.relation_id.as_deref()?;
        let n = relation_number(id).ok()?;
        self.snapshot.relation_by_number(n).map(|_| n)
    }
}

fn absolute(path: &str) -> PathBuf {
    let p = Path::new(path);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        env::current_dir().unwrap_or_default().join(p)
    }
}

fn io_text(e: &std::io::Error) -> String {
    crate::fakes::http::errno_text(e)
}

/// Runs a hook tool as jujuc would and returns its exit code.
pub fn main(tool: &str, args: &[String]) -> i32 {
    let dir = env::var_os("FAKE_JUJU_DIR").map(PathBuf::from);
    let (code, stdout, stderr, stdin) = invoke(tool, args, dir.as_deref());
    print_streams(&stdout, &stderr);
    if let Some(dir) = dir {
        let call = Call {
            tool: tool.to_string(),
            args: args.to_vec(),
            stdin,
            exit: Some(code),
        };
        if let Err(e) = juju_state::append_call(&dir, &call) {
            eprintln!("fake-juju: {e}");
        }
    }
    code
}

fn print_streams(stdout: &str, stderr: &str) {
    use std::io::Write;
    let _ = std::io::stdout().write_all(stdout.as_bytes());
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().write_all(stderr.as_bytes());
    let _ = std::io::stderr().flush();
}

/// Returns (exit code, stdout, stderr, stdin if read).
fn invoke(
    tool: &str,
    args: &[String],
    dir: Option<&Path>,
) -> (i32, String, String, Option<String>) {
    // jujuc's own checks, before the agent is contacted (cmd/jujuc/main.go).
    for var in [
        "JUJU_CONTEXT_ID",
        "JUJU_AGENT_SOCKET_ADDRESS",
        "JUJU_AGENT_SOCKET_NETWORK",
    ] {
        if env::var(var).unwrap_or_default().is_empty() {
            return (1, String::new(), format!("ERROR {var} not set\n"), None);
        }
    }
    let Some(dir) = dir else {
        return (
            1,
            String::new(),
            "ERROR FAKE_JUJU_DIR not set (fake-juju test harness misconfigured)\n".to_string(),
            None,
        );
    };
    let snapshot = match juju_state::load(dir) {
        Ok(s) => s,
        Err(e) => return (1, String::new(), format!("ERROR {e}\n"), None),
    };
    let fault = snapshot.tool_faults.get(tool).cloned();
    if let Some(fault) = fault.as_ref().filter(|f| !f.after_run) {
        return (fault.exit, fault.stdout.clone(), fault.stderr.clone(), None);
    }
    let mut ctx = Ctx {
        tool: tool.to_string(),
        dir: dir.to_path_buf(),
        snapshot,
        env: HookEnv::from_env(),
        stdin: None,
        stdout: String::new(),
        stderr: String::new(),
    };
    let result = run_tool(&mut ctx, args);
    let code = match result {
        Ok(()) => 0,
        Err(Fail::Help(usage)) => {
            ctx.stdout = usage;
            ctx.stderr.clear();
            0
        }
        Err(Fail::Init(msg)) => {
            ctx.stdout.clear();
            ctx.stderr = format!("ERROR {msg}\n");
            2
        }
        Err(Fail::Run(msg)) => {
            ctx.stdout.clear();
            ctx.stderr.push_str(&format!("ERROR {msg}\n"));
            1
        }
    };
    match fault {
        // Applied, then the answer was lost.
        Some(fault) if code == 0 => (fault.exit, fault.stdout, fault.stderr, ctx.stdin),
        _ => (code, ctx.stdout, ctx.stderr, ctx.stdin),
    }
}

fn usage(tool: &str) -> String {
    let args = match tool {
        "status-set" => "[options] <maintenance | blocked | waiting | active> [message]",
        "status-get" => "[options] [--include-data] [--application]",
        "config-get" => "[options] [<key>]",
        "application-version-set" => "<new-version>",
        "juju-log" => "[options] <message>",
        "open-port" | "close-port" => {
            "[options] <port>[/<protocol>] or <from>-<to>[/<protocol>] or icmp"
        }
        "action-get" => "[options] [<key>[.<key>.<key>...]]",
        "action-set" => "<key>=<value> [<key>=<value> ...]",
        "action-fail" => "[\"<failure message>\"]",
        "action-log" => "<message>",
        "relation-ids" => "[options] <name>",
        "relation-set" => "[options] key=value [key=value ...]",
        "relation-get" => "[options] <key> <unit id>",
        _ => "[options]",
    };
    format!("Usage: {tool} {args}\n")
}

fn parse(ctx: &Ctx, flags: &[Flag<'_>], args: &[String]) -> Res<Parsed> {
    gnuflag::parse(flags, args).map_err(|e| match e {
        ParseError::Help => Fail::Help(usage(&ctx.tool)),
        ParseError::Invalid(m) => Fail::Init(m),
    })
}

fn format_flags<'a>(validate: gnuflag::Validator<'a>) -> Vec<Flag<'a>> {
    vec![
        Flag::checked("format", "format", validate),
        Flag::string("o", "output"),
        Flag::string("output", "output"),
    ]
}

fn run_tool(ctx: &mut Ctx, args: &[String]) -> Res {
    match ctx.tool.as_str() {
        "status-set" => status_set(ctx, args),
        "status-get" => status_get(ctx, args),
        "config-get" => config_get(ctx, args),
        "application-version-set" => application_version_set(ctx, args),
        "juju-log" => juju_log(ctx, args),
        "is-leader" => is_leader(ctx, args),
        "open-port" => port_command(ctx, args, PortOp::Open),
        "close-port" => port_command(ctx, args, PortOp::Close),
        "opened-ports" => opened_ports(ctx, args),
        "action-get" => action_get(ctx, args),
        "action-set" => action_set(ctx, args),
        "action-fail" => action_fail(ctx, args),
        "action-log" => action_log(ctx, args),
        "relation-ids" => relation_ids(ctx, args),
        "relation-list" => relation_list(ctx, args),
        "relation-get" => relation_get(ctx, args),
        "relation-set" => relation_set(ctx, args),
        other => Err(Fail::Run(format!("unknown command {}", go_quote(other)))),
    }
}

// ---------------------------------------------------------------------------------------
// status

const VALID_STATUSES: [&str; 4] = ["maintenance", "blocked", "waiting", "active"];

fn status_set(ctx: &mut Ctx, args: &[String]) -> Res {
    let p = parse(ctx, &[Flag::boolean("application", "application")], args)?;
    let a = &p.args;
    if a.is_empty() {
        return Err(Fail::Init(
            "invalid args, require <status> [message]".to_string(),
        ));
    }
    if !VALID_STATUSES.contains(&a[0].as_str()) {
        return Err(Fail::Init(format!(
            "invalid status {}, expected one of [{}]",
            go_quote(&a[0]),
            VALID_STATUSES.join(" ")
        )));
    }
    let status = a[0].clone();
    let message = a.get(1).cloned().unwrap_or_default();
    if a.len() > 2 {
        check_empty(&a[2..]).map_err(Fail::Init)?;
    }
    let application = p.flag("application");
    let context = ctx.env.dispatch_path.clone();
    ctx.mutate(|s| {
        if application && !s.leader {
            return Err(Fail::Run("this unit is not the leader".to_string()));
        }
        let new = juju_state::Status {
            status: status.clone(),
            message: message.clone(),
            data: Map::new(),
        };
        if application {
            s.app_status = new;
        } else {
            s.unit_status = new;
            s.status_set_ever = true;
        }
        s.status_history.push(StatusEntry {
            application,
            status,
            message,
            source: "charm".to_string(),
            context,
        });
        Ok(())
    })
}

fn status_details(status: &juju_state::Status, include_data: bool) -> Value {
    let mut m = Map::new();
    m.insert("status".to_string(), Value::String(status.status.clone()));
    if include_data {
        m.insert(
            "status-data".to_string(),
            Value::Object(status.data.clone()),
        );
        m.insert("message".to_string(), Value::String(status.message.clone()));
    }
    Value::Object(m)
}

fn status_get(ctx: &mut Ctx, args: &[String]) -> Res {
    let v = output::validate_format;
    let mut flags = format_flags(&v);
    flags.push(Flag::boolean("include-data", "include-data"));
    flags.push(Flag::boolean("application", "application"));
    let p = parse(ctx, &flags, args)?;
    check_empty(&p.args).map_err(Fail::Init)?;
    let include = p.flag("include-data");
    let smart = p.get("format").unwrap_or("smart") == "smart";
    let s = &ctx.snapshot;
    let value = if p.flag("application") {
        if !s.leader {
            return Err(Fail::Run(
                "finding application status: this unit is not the leader".to_string(),
            ));
        }
        if !include && smart {
            Output::Str(s.app_status.status.clone())
        } else {
            let mut details = status_details(&s.app_status, include);
            let mut units = Map::new();
            units.insert(s.unit_name.clone(), status_details(&s.unit_status, include));
            if let Value::Object(d) = &mut details {
                d.insert("units".to_string(), Value::Object(units));
            }
            let mut top = Map::new();
            top.insert("application-status".to_string(), details);
            Output::Value(Value::Object(top))
        }
    } else if !include && smart {
        Output::Str(s.unit_status.status.clone())
    } else {
        Output::Value(status_details(&s.unit_status, include))
    };
    ctx.write_output(&p, &value)
}

fn application_version_set(ctx: &mut Ctx, args: &[String]) -> Res {
    let p = parse(ctx, &[], args)?;
    let Some(version) = p.args.first().cloned() else {
        return Err(Fail::Init("no version specified".to_string()));
    };
    check_empty(&p.args[1..]).map_err(Fail::Init)?;
    ctx.mutate(|s| {
        s.workload_version = Some(version);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// config, leadership, logging

fn config_get(ctx: &mut Ctx, args: &[String]) -> Res {
    let v = output::validate_format;
    let mut flags = format_flags(&v);
    flags.push(Flag::boolean("a", "all"));
    flags.push(Flag::boolean("all", "all"));
    let p = parse(ctx, &flags, args)?;
    let all = p.flag("all");
    let key = p.args.first().cloned().unwrap_or_default();
    if !p.args.is_empty() {
        if !key.is_empty() && all {
            return Err(Fail::Init(format!(
                "cannot use argument --all together with key {}",
                go_quote(&key)
            )));
        }
        check_empty(&p.args[1..]).map_err(Fail::Init)?;
    }
    let config = &ctx.snapshot.config;
    let value = if key.is_empty() {
        let map: Map<String, Value> = config
            .iter()
            .filter(|(_, v)| all || !v.is_null())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Output::Value(Value::Object(map))
    } else {
        match config.get(&key) {
            Some(v) => Output::Value(v.clone()),
            None => Output::Nil,
        }
    };
    ctx.write_output(&p, &value)
}

fn is_leader(ctx: &mut Ctx, args: &[String]) -> Res {
    let v = output::validate_format;
    let p = parse(ctx, &format_flags(&v), args)?;
    check_empty(&p.args).map_err(Fail::Init)?;
    let leader = ctx.snapshot.leader;
    ctx.write_output(&p, &Output::Bool(leader))
}

/// loggo's `ParseLevel`, returning the canonical level name.
fn parse_log_level(level: &str) -> Option<&'static str> {
    Some(match level.to_ascii_uppercase().as_str() {
        "UNSPECIFIED" => "UNSPECIFIED",
        "TRACE" => "TRACE",
        "DEBUG" => "DEBUG",
        "INFO" => "INFO",
        "WARN" | "WARNING" => "WARNING",
        "ERROR" => "ERROR",
        "CRITICAL" => "CRITICAL",
        _ => return None,
    })
}

fn juju_log(ctx: &mut Ctx, args: &[String]) -> Res {
    let flags = [
        Flag::boolean("debug", "debug"),
        Flag::string("l", "level"),
        Flag::string("log-level", "level"),
        Flag::string("format", "format"),
    ];
    let p = parse(ctx, &flags, args)?;
    if p.args.is_empty() {
        return Err(Fail::Init("no message specified".to_string()));
    }
    let message = p.args.join(" ");
    if p.get("format").is_some_and(|f| !f.is_empty()) {
        ctx.stderr
            .push_str("--format flag deprecated for command \"juju-log\"");
    }
    let requested = p.get("level").unwrap_or("INFO").to_string();
    let mut records = Vec::new();
    let context = ctx.env.dispatch_path.clone();
    let level = if p.flag("debug") {
        "DEBUG"
    } else if requested.is_empty() {
        "INFO"
    } else {
        match parse_log_level(&requested) {
            Some(l) => l,
            None => {
                records.push(LogRecord {
                    level: "WARNING".to_string(),
                    message: format!(
                        "Specified log level of {} is not valid",
                        go_quote(&requested)
                    ),
                    context: context.clone(),
                });
                "INFO"
            }
        }
    };
    let prefix = ctx
        .env
        .relation_id
        .as_deref()
        .filter(|_| ctx.default_relation().is_some())
        .map(|id| format!("{id}: "))
        .unwrap_or_default();
    records.push(LogRecord {
        level: level.to_string(),
        message: format!("{prefix}{message}"),
        context,
    });
    ctx.mutate(|s| {
        s.logs.extend(records);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// ports

/// Parses a port range like Juju's `network.ParsePortRange` and returns its canonical
/// string form.
pub fn parse_port_range(input: &str) -> Result<String, String> {
    let (ports, protocol) = match input.split_once('/') {
        Some((p, proto)) => (p, proto.to_string()),
        None => (input, "tcp".to_string()),
    };
    let parts: Vec<&str> = ports.split('-').collect();
    let (from, to) = match parts.as_slice() {
        ["icmp"] => (-1, -1),
        [one] => {
            let n = go_atoi(one).map_err(|e| format!("invalid port {}: {e}", go_quote(ports)))?;
            (n, n)
        }
        [a, b] => (
            go_atoi(a).map_err(|e| format!("invalid port {}: {e}", go_quote(a)))?,
            go_atoi(b).map_err(|e| format!("invalid port {}: {e}", go_quote(b)))?,
        ),
        _ => return Err(format!("invalid port range {}", go_quote(ports))),
    };
    let protocol = if from == -1 {
        "icmp".to_string()
    } else {
        protocol.to_ascii_lowercase()
    };
    let render = |from: i64, to: i64, proto: &str| {
        if from == to {
            format!("{from}/{proto}")
        } else {
            format!("{from}-{to}/{proto}")
        }
    };
    if !["tcp", "udp", "icmp"].contains(&protocol.as_str()) {
        return Err(format!(
            "invalid protocol {}, expected \"tcp\", \"udp\", or \"icmp\"",
            go_quote(&protocol)
        ));
    }
    if protocol == "icmp" {
        if from == -1 && to == -1 {
            return Ok("icmp".to_string());
        }
        return Err(format!(
            "protocol \"icmp\" doesn't support any ports; got \"{from}\""
        ));
    }
    if from > to {
        return Err(format!(
            "invalid port range {}",
            render(from, to, &protocol)
        ));
    }
    if !(0..=65535).contains(&from) || !(0..=65535).contains(&to) {
        return Err(format!(
            "port range bounds must be between 0 and 65535, got {from}-{to}"
        ));
    }
    Ok(render(from, to, &protocol))
}

/// Go's `strconv.Atoi` with its error texts.
fn go_atoi(s: &str) -> Result<i64, String> {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit()) {
        return Err(format!(
            "strconv.Atoi: parsing {}: invalid syntax",
            go_quote(s)
        ));
    }
    s.parse::<i64>()
        .map_err(|_| format!("strconv.Atoi: parsing {}: value out of range", go_quote(s)))
}

fn port_command(ctx: &mut Ctx, args: &[String], op: PortOp) -> Res {
    let flags = [
        Flag::string("format", "format"),
        Flag::string("endpoints", "endpoints"),
    ];
    let p = parse(ctx, &flags, args)?;
    let Some(spec) = p.args.first() else {
        return Err(Fail::Init("no port or range specified".to_string()));
    };
    let range = parse_port_range(&spec.to_lowercase()).map_err(Fail::Init)?;
    check_empty(&p.args[1..]).map_err(Fail::Init)?;
    if p.get("format").is_some_and(|f| !f.is_empty()) {
        ctx.stderr.push_str(&format!(
            "--format flag deprecated for command {}",
            go_quote(&ctx.tool)
        ));
    }
    let endpoints: Vec<String> = match p.get("endpoints").unwrap_or("") {
        "" => vec![String::new()],
        list => list.split(',').map(|e| e.trim().to_string()).collect(),
    };
    ctx.mutate(|s| {
        for endpoint in endpoints {
            s.ports.pending.push(PortChange {
                op,
                range: range.clone(),
                endpoint,
            });
        }
        Ok(())
    })
}

fn opened_ports(ctx: &mut Ctx, args: &[String]) -> Res {
    let v = output::validate_format;
    let mut flags = format_flags(&v);
    flags.push(Flag::boolean("endpoints", "endpoints"));
    let p = parse(ctx, &flags, args)?;
    check_empty(&p.args).map_err(Fail::Init)?;
    let grouped = ctx.snapshot.opened_ports_view();
    let list = if p.flag("endpoints") {
        let mut by_range: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for (endpoint, ranges) in &grouped {
            for r in ranges {
                by_range
                    .entry(r.clone())
                    .or_default()
                    .push(endpoint.clone());
            }
        }
        let mut ranges: Vec<String> = by_range.keys().cloned().collect();
        ranges.sort_by_key(|r| juju_state::port_sort_key(r));
        ranges
            .into_iter()
            .map(|r| {
                let mut eps = by_range.remove(&r).unwrap_or_default();
                let descr = if eps.iter().any(String::is_empty) {
                    "*".to_string()
                } else {
                    eps.sort();
                    eps.dedup();
                    eps.join(", ")
                };
                format!("{r} ({descr})")
            })
            .collect()
    } else {
        juju_state::unique_sorted_ranges(&grouped)
    };
    ctx.write_output(&p, &Output::StrList(list))
}

// ---------------------------------------------------------------------------------------
// actions

fn action_get(ctx: &mut Ctx, args: &[String]) -> Res {
    let v = output::validate_format;
    let p = parse(ctx, &format_flags(&v), args)?;
    let keys: Vec<String> = match p.args.first() {
        Some(k) => {
            check_empty(&p.args[1..]).map_err(Fail::Init)?;
            k.split('.').map(str::to_string).collect()
        }
        None => Vec::new(),
    };
    ctx.require_action()?;
    let params = ctx
        .snapshot
        .action
        .as_ref()
        .map(|a| a.params.clone())
        .unwrap_or_default();
    let value = if keys.is_empty() {
        Output::Value(Value::Object(params))
    } else {
        let mut current = Value::Object(params);
        let mut found = true;
        for key in &keys {
            match current.get(key) {
                Some(v) => current = v.clone(),
                None => {
                    found = false;
                    break;
                }
            }
        }
        if found {
            Output::Value(current)
        } else {
            Output::Nil
        }
    };
    ctx.write_output(&p, &value)
}

/// `^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$` (juju/charm actionNameRule).
fn valid_action_key(key: &str) -> bool {
    let b = key.as_bytes();
    let ok = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    match b {
        [] => false,
        [one] => ok(one),
        [first, middle @ .., last] => {
            ok(first) && ok(last) && middle.iter().all(|c| ok(c) || *c == b'-')
        }
    }
}

const RESERVED_ACTION_KEYS: [&str; 4] = ["stdout", "stdout-encoding", "stderr", "stderr-encoding"];

fn action_set(ctx: &mut Ctx, args: &[String]) -> Res {
    let p = parse(ctx, &[], args)?;
    let mut sets: Vec<(Vec<String>, String)> = Vec::new();
    for arg in &p.args {
        let Some((keys, value)) = arg.split_once('=') else {
            return Err(Fail::Init(format!(
                "argument {} must be of the form key...=value",
                go_quote(arg)
            )));
        };
        let keys: Vec<String> = keys.split('.').map(str::to_string).collect();
        for key in &keys {
            if !valid_action_key(key) {
                return Err(Fail::Init(format!(
                    "key {} must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods",
                    go_quote(key)
                )));
            }
            if RESERVED_ACTION_KEYS.contains(&key.as_str()) {
                return Err(Fail::Init(format!(
                    "cannot set reserved action key \"{key}\""
                )));
            }
        }
        sets.push((keys, value.to_string()));
    }
    ctx.require_action()?;
    ctx.mutate(|s| {
        let action = s.action.get_or_insert_with(Default::default);
        for (keys, value) in sets {
            set_nested(&mut action.results, &keys, value);
        }
        Ok(())
    })
}

fn set_nested(map: &mut Map<String, Value>, keys: &[String], value: String) {
    match keys {
        [] => {}
        [last] => {
            map.insert(last.clone(), Value::String(value));
        }
        [first, rest @ ..] => {
            let entry = map
                .entry(first.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            if !entry.is_object() {
                *entry = Value::Object(Map::new());
            }
            if let Value::Object(inner) = entry {
                set_nested(inner, rest, value);
            }
        }
    }
}

fn action_fail(ctx: &mut Ctx, args: &[String]) -> Res {
    let p = parse(ctx, &[], args)?;
    let message = match p.args.first() {
        None => "action failed without reason given, check action for errors".to_string(),
        Some(m) => {
            check_empty(&p.args[1..]).map_err(Fail::Init)?;
            m.clone()
        }
    };
    ctx.require_action()?;
    ctx.mutate(|s| {
        let action = s.action.get_or_insert_with(Default::default);
        action.failed = true;
        action.message = message;
        Ok(())
    })
}

fn action_log(ctx: &mut Ctx, args: &[String]) -> Res {
    let p = parse(ctx, &[], args)?;
    if p.args.is_empty() {
        return Err(Fail::Init("no message specified".to_string()));
    }
    let message = p.args.join(" ");
    ctx.require_action()?;
    ctx.mutate(|s| {
        s.action
            .get_or_insert_with(Default::default)
            .logs
            .push(message);
        Ok(())
    })
}

// ---------------------------------------------------------------------------------------
// relations

/// The number of a relation id given as `-r` (`cos-agent:3` or `3`).
fn relation_number(value: &str) -> Result<i64, String> {
    let trimmed = value.rsplit(':').next().unwrap_or(value);
    go_atoi(trimmed).map_err(|_| "invalid relation id".to_string())
}

/// `names.IsValidApplication`.
fn valid_app_name(name: &str) -> bool {
    let mut segments = name.split('-');
    let Some(first) = segments.next() else {
        return false;
    };
    let first_ok = first.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && first
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && segments.all(|s| {
            s.chars().any(|c| c.is_ascii_lowercase())
                && s.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        })
}

/// `names.IsValidUnit`.
fn valid_unit_name(name: &str) -> bool {
    let Some((app, n)) = name.split_once('/') else {
        return false;
    };
    valid_app_name(app)
        && !n.is_empty()
        && n.chars().all(|c| c.is_ascii_digit())
        && (n == "0" || !n.starts_with('0'))
}

fn relation_flags<'a>(validate: gnuflag::Validator<'a>) -> Vec<Flag<'a>> {
    vec![
        Flag::checked("r", "relation", validate),
        Flag::checked("relation", "relation", validate),
    ]
}

/// Validator of `-r`: Juju's `relationIdValue.Set`.
fn relation_validator(state: &JujuState) -> impl Fn(&str) -> Result<String, String> + '_ {
    move |value: &str| {
        let n = relation_number(value)?;
        if state.relation_by_number(n).is_none() {
            return Err("relation not found".to_string());
        }
        Ok(n.to_string())
    }
}

/// The relation selected by `-r` or by the hook context.
fn selected_relation(ctx: &Ctx, p: &Parsed) -> Option<i64> {
    match p.get("relation") {
        Some(n) => n.parse().ok(),
        None => ctx.default_relation(),
    }
}

fn relation_ids(ctx: &mut Ctx, args: &[String]) -> Res {
    let v = output::validate_format;
    let p = parse(ctx, &format_flags(&v), args)?;
    let name = match p.args.first() {
        Some(n) => {
            check_empty(&p.args[1..]).map_err(Fail::Init)?;
            n.clone()
        }
        None => match ctx
            .default_relation()
            .and_then(|n| ctx.snapshot.relation_by_number(n))
        {
            Some(r) => r.endpoint().to_string(),
            None => return Err(Fail::Init("no endpoint name specified".to_string())),
        },
    };
    let mut ids: Vec<String> = ctx
        .snapshot
        .relations
        .get(&name)
        .map(|rs| rs.iter().map(|r| r.id.clone()).collect())
        .unwrap_or_default();
    ids.sort();
    ctx.write_output(&p, &Output::StrList(ids))
}

/// The command line of `relation-list` and `relation-get` (`--format`, `-r`, `--app`):
/// the parsed flags and the number of the relation they are about.
fn parse_relation_query(ctx: &Ctx, args: &[String]) -> Res<(Parsed, i64)> {
    let validate = relation_validator(&ctx.snapshot);
    let fv = output::validate_format;
    let mut flags = format_flags(&fv);
    flags.extend(relation_flags(&validate));
    flags.push(Flag::boolean("app", "app"));
    let p = parse(ctx, &flags, args)?;
    let Some(n) = selected_relation(ctx, &p) else {
        return Err(Fail::Init("no relation id specified".to_string()));
    };
    Ok((p, n))
}

fn relation_list(ctx: &mut Ctx, args: &[String]) -> Res {
    let snapshot = ctx.snapshot.clone();
    let (p, n) = parse_relation_query(ctx, args)?;
    check_empty(&p.args).map_err(Fail::Init)?;
    let Some(rel) = snapshot.relation_by_number(n) else {
        return Err(Fail::Run("relation not found".to_string()));
    };
    let value = if p.flag("app") {
        Output::Str(rel.remote_app.clone())
    } else {
        Output::StrList(rel.remote_units.keys().cloned().collect())
    };
    ctx.write_output(&p, &value)
}

fn string_map_value(m: &BTreeMap<String, String>) -> Value {
    Value::Object(
        m.iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect(),
    )
}

fn relation_get(ctx: &mut Ctx, args: &[String]) -> Res {
    let snapshot = ctx.snapshot.clone();
    let (p, n) = parse_relation_query(ctx, args)?;
    let mut rest: &[String] = &p.args;
    let mut key = String::new();
    if let Some(k) = rest.first() {
        key = if k == "-" { String::new() } else { k.clone() };
        rest = &rest[1..];
    }
    let mut application = p.flag("app");
    let target = if let Some(user) = rest.first() {
        rest = &rest[1..];
        if application {
            if valid_app_name(user) {
                user.clone()
            } else if valid_unit_name(user) {
                user.split('/').next().unwrap_or_default().to_string()
            } else {
                String::new()
            }
        } else if !valid_unit_name(user) {
            if valid_app_name(user) {
                return Err(Fail::Init(format!(
                    "expected unit name, got application name {}",
                    go_quote(user)
                )));
            }
            return Err(Fail::Init(format!("invalid unit name {}", go_quote(user))));
        } else {
            user.clone()
        }
    } else if application {
        match &ctx.env.remote_app {
            Some(app) => app.clone(),
            None => return Err(Fail::Init("no unit or application specified".to_string())),
        }
    } else if let Some(unit) = &ctx.env.remote_unit {
        unit.clone()
    } else if let Some(app) = &ctx.env.remote_app {
        application = true;
        app.clone()
    } else {
        return Err(Fail::Init("no unit or application specified".to_string()));
    };
    check_empty(rest).map_err(Fail::Init)?;

    let Some(rel) = snapshot.relation_by_number(n) else {
        return Err(Fail::Run("relation not found".to_string()));
    };
    let local_app = snapshot.app_name().to_string();
    let local = target == snapshot.unit_name || (target == local_app && snapshot.leader);
    let settings = if local {
        if application {
            rel.effective_app_data().clone()
        } else {
            rel.effective_unit_data().clone()
        }
    } else if application {
        if target == rel.remote_app {
            rel.remote_app_data.clone()
        } else {
            return Err(Fail::Run(format!(
                "cannot read application settings for {} in relation {}: permission denied",
                go_quote(&target),
                go_quote(&rel.id)
            )));
        }
    } else {
        match rel.remote_units.get(&target) {
            Some(data) => data.clone(),
            None => {
                return Err(Fail::Run(format!(
                    "cannot read settings for unit {} in relation {}: permission denied",
                    go_quote(&target),
                    go_quote(&rel.id)
                )))
            }
        }
    };
    let value = if key.is_empty() {
        Output::Value(string_map_value(&settings))
    } else {
        match settings.get(&key) {
            Some(v) => Output::Str(v.clone()),
            None => Output::Nil,
        }
    };
    ctx.write_output(&p, &value)
}

/// juju/utils `keyvalues.Parse(args, true)`.
fn parse_key_values(args: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for kv in args {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(format!("expected \"key=value\", got {}", go_quote(kv)));
        };
        let (k, v) = (k.trim(), v.trim());
        if k.is_empty() {
            return Err(format!("expected \"key=value\", got \"{k}={v}\""));
        }
        if out.contains_key(k) {
            return Err(format!("key {} specified more than once", go_quote(k)));
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

/// Reads the `--file` settings: a YAML map of strings (JSON objects and simple
/// `key: value` YAML are accepted).
fn parse_settings_file(text: &str) -> Result<BTreeMap<String, String>, String> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed == "{}" {
        return Ok(BTreeMap::new());
    }
    if trimmed.starts_with('{') {
        let map: Map<String, Value> =
            serde_json::from_str(trimmed).map_err(|e| format!("yaml: {e}"))?;
        return map
            .into_iter()
            .map(|(k, v)| {
                let s =
                    match v {
                        Value::String(s) => s,
                        Value::Null => String::new(),
                        Value::Bool(b) => b.to_string(),
                        Value::Number(n) => n.to_string(),
                        Value::Array(_) => return Err(
                            "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!seq into string"
                                .to_string(),
                        ),
                        Value::Object(_) => return Err(
                            "yaml: unmarshal errors:\n  line 1: cannot unmarshal !!map into string"
                                .to_string(),
                        ),
                    };
                Ok((k, s))
            })
            .collect();
    }
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let l = line.trim_end();
        if l.trim().is_empty() || l.trim_start().starts_with('#') || l == "---" {
            continue;
        }
        let Some((k, v)) = l.split_once(':') else {
            return Err(format!("yaml: line {}: could not find expected ':'", i + 1));
        };
        let unquote = |s: &str| {
            let s = s.trim();
            if s.len() >= 2
                && ((s.starts_with('"') && s.ends_with('"'))
                    || (s.starts_with('\'') && s.ends_with('\'')))
            {
                s[1..s.len() - 1].to_string()
            } else if s == "~" || s == "null" {
                String::new()
            } else {
                s.to_string()
            }
        };
        out.insert(unquote(k), unquote(v));
    }
    Ok(out)
}

fn relation_set(ctx: &mut Ctx, args: &[String]) -> Res {
    let snapshot = ctx.snapshot.clone();
    let validate = relation_validator(&snapshot);
    let mut flags = relation_flags(&validate);
    flags.push(Flag::string("file", "file"));
    flags.push(Flag::boolean("app", "app"));
    flags.push(Flag::string("format", "format"));
    let p = parse(ctx, &flags, args)?;
    let Some(n) = selected_relation(ctx, &p) else {
        return Err(Fail::Init("no relation id specified".to_string()));
    };
    let overrides = parse_key_values(&p.args).map_err(Fail::Init)?;
    if p.get("format").is_some_and(|f| !f.is_empty()) {
        ctx.stderr
            .push_str("--format flag deprecated for command \"relation-set\"");
    }
    let mut settings = BTreeMap::new();
    if let Some(file) = p.get("file").filter(|f| !f.is_empty()) {
        let text = if file == "-" {
            let mut buf = String::new();
            std::io::stdin()
                .read_to_string(&mut buf)
                .map_err(|e| Fail::Run(io_text(&e)))?;
            ctx.stdin = Some(buf.clone());
            buf
        } else {
            let path = absolute(file);
            std::fs::read_to_string(&path)
                .map_err(|e| Fail::Run(format!("open {}: {}", path.display(), io_text(&e))))?
        };
        settings = parse_settings_file(&text).map_err(Fail::Run)?;
    }
    settings.extend(overrides);
    let application = p.flag("app");
    ctx.mutate(|s| {
        if application && !s.leader {
            return Err(Fail::Run("cannot write relation settings".to_string()));
        }
        let Some(rel) = s.relation_by_number_mut(n) else {
            return Err(Fail::Run("relation not found".to_string()));
        };
        let mut data = if application {
            rel.effective_app_data().clone()
        } else {
            rel.effective_unit_data().clone()
        };
        for (k, v) in settings {
            if v.is_empty() {
                data.remove(&k);
            } else {
                data.insert(k, v);
            }
        }
        if application {
            rel.pending_app_data = Some(data);
        } else {
            rel.pending_unit_data = Some(data);
        }
        Ok(())
    })
}
