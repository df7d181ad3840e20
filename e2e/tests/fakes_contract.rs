//! Contract tests of the fakes themselves: the fake hook tools, the fake `snap` CLI, the
//! fake snapd and the fake workload must be as strict and as exact as the real ones
//! (docs/juju.md#hook-tools, docs/snapd-api.md).

use std::io::Write;
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use microsample_e2e::{free_port, juju_state, split_head, Unit};
use serde_json::{json, Value};

/// Result of running a fake tool.
#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs a fake tool of `unit` directly, with the environment a hook would give it.
struct Tool<'a> {
    unit: &'a Unit,
    name: String,
    args: Vec<String>,
    env: Vec<(String, String)>,
    unset: Vec<String>,
    stdin: Option<String>,
}

impl<'a> Tool<'a> {
    fn new(unit: &'a Unit, name: &str, args: &[&str]) -> Self {
        Tool {
            unit,
            name: name.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            env: Vec::new(),
            unset: Vec::new(),
            stdin: None,
        }
    }

    fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.to_string(), v.to_string()));
        self
    }

    fn unset(mut self, k: &str) -> Self {
        self.unset.push(k.to_string());
        self
    }

    fn stdin(mut self, s: &str) -> Self {
        self.stdin = Some(s.to_string());
        self
    }

    fn run(self) -> Out {
        let mut base: Vec<(String, String)> = vec![
            (
                "JUJU_CONTEXT_ID".into(),
                "microsample/0-test-0123456789abcdef".into(),
            ),
            (
                "JUJU_AGENT_SOCKET_ADDRESS".into(),
                "/var/lib/juju/agents/unit-microsample-0/agent.socket".into(),
            ),
            ("JUJU_AGENT_SOCKET_NETWORK".into(), "unix".into()),
            ("JUJU_UNIT_NAME".into(), "microsample/0".into()),
            ("JUJU_DISPATCH_PATH".into(), "hooks/test".into()),
            (
                "FAKE_JUJU_DIR".into(),
                self.unit.state_dir.display().to_string(),
            ),
            (
                "SNAPD_SOCKET".into(),
                self.unit.socket.display().to_string(),
            ),
            (
                "PATH".into(),
                format!(
                    "{}:/usr/sbin:/usr/bin:/sbin:/bin",
                    self.unit.tools_dir.display()
                ),
            ),
        ];
        base.retain(|(k, _)| !self.unset.contains(k));
        base.extend(self.env);
        let mut child = Command::new(self.unit.tools_dir.join(&self.name))
            .args(&self.args)
            .env_clear()
            .envs(base)
            .current_dir(&self.unit.charm_dir)
            .stdin(if self.stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot run fake tool");
        if let (Some(input), Some(mut pipe)) = (self.stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .expect("cannot write stdin");
        }
        let out = child.wait_with_output().expect("cannot wait for fake tool");
        Out {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

fn tool(unit: &Unit, name: &str, args: &[&str]) -> Out {
    Tool::new(unit, name, args).run()
}

fn in_action<'a>(unit: &'a Unit, name: &str, args: &[&str]) -> Tool<'a> {
    Tool::new(unit, name, args)
        .env("JUJU_ACTION_NAME", "refresh-snap")
        .env("JUJU_ACTION_UUID", "7")
}

/// Asserts an Init/parse failure: exit 2, exact stderr, empty stdout.
fn assert_init_error(out: &Out, msg: &str) {
    assert_eq!(out.code, 2, "{out:?}");
    assert_eq!(out.stderr, format!("ERROR {msg}\n"));
    assert_eq!(out.stdout, "");
}

/// Asserts a Run failure: exit 1, exact stderr, empty stdout.
fn assert_run_error(out: &Out, msg: &str) {
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr, format!("ERROR {msg}\n"));
    assert_eq!(out.stdout, "");
}

fn assert_ok(out: &Out) {
    assert_eq!(out.code, 0, "{out:?}");
}

// =======================================================================================
// Hook tools

#[test]
fn status_set_rejects_unknown_status_with_exit_2() {
    let unit = Unit::new();
    let out = tool(&unit, "status-set", &["foo"]);
    assert_init_error(
        &out,
        "invalid status \"foo\", expected one of [maintenance blocked waiting active]",
    );
    for bad in ["error", "unknown", "idle", "terminated"] {
        assert_eq!(tool(&unit, "status-set", &[bad]).code, 2, "{bad}");
    }
    assert_init_error(
        &tool(&unit, "status-set", &[]),
        "invalid args, require <status> [message]",
    );
    assert_init_error(
        &tool(&unit, "status-set", &["active", "a", "b"]),
        "unrecognized args: [\"b\"]",
    );
    assert_eq!(unit.status(), ("unknown".to_string(), String::new()));
}

#[test]
fn status_set_accepts_the_ops_argv() {
    let unit = Unit::new();
    let out = tool(
        &unit,
        "status-set",
        &["--application=False", "active", "--", "-msg"],
    );
    assert_ok(&out);
    assert_eq!(out.stdout, "");
    assert_eq!(unit.status(), ("active".to_string(), "-msg".to_string()));
    // Interspersed flags and the ops 2.x form.
    assert_ok(&tool(
        &unit,
        "status-set",
        &["maintenance", "--application=false", "busy"],
    ));
    assert_eq!(
        unit.status(),
        ("maintenance".to_string(), "busy".to_string())
    );
    // A bool flag never takes the next argument as its value.
    assert_init_error(
        &tool(&unit, "status-set", &["--application", "False"]),
        "invalid status \"False\", expected one of [maintenance blocked waiting active]",
    );
    assert_init_error(
        &tool(&unit, "status-set", &["--application=nope", "active"]),
        "invalid value \"nope\" for option --application: strconv.ParseBool: parsing \"nope\": invalid syntax",
    );
    let history = unit.status_history();
    assert_eq!(history.len(), 2);
    assert_eq!(history[0].source, "charm");
}

#[test]
fn status_set_application_requires_leadership() {
    let unit = Unit::new();
    assert_ok(&tool(
        &unit,
        "status-set",
        &["--application", "active", "all good"],
    ));
    assert_eq!(
        unit.app_status(),
        ("active".to_string(), "all good".to_string())
    );
    unit.set_leader(false);
    assert_run_error(
        &tool(&unit, "status-set", &["--application=True", "blocked", "x"]),
        "this unit is not the leader",
    );
    assert_run_error(
        &tool(&unit, "status-get", &["--application"]),
        "finding application status: this unit is not the leader",
    );
    assert_eq!(unit.app_status().0, "active");
}

#[test]
fn status_get_formats() {
    let unit = Unit::new();
    assert_ok(&tool(&unit, "status-set", &["waiting", "for <snap> & co"]));
    assert_eq!(tool(&unit, "status-get", &[]).stdout, "waiting\n");
    let out = tool(
        &unit,
        "status-get",
        &["--include-data", "--format=json", "--application=false"],
    );
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "{\"message\":\"for \\u003csnap\\u003e \\u0026 co\",\"status\":\"waiting\",\"status-data\":{}}\n"
    );
    assert_init_error(
        &tool(&unit, "status-get", &["x"]),
        "unrecognized args: [\"x\"]",
    );
    assert_init_error(
        &tool(&unit, "status-get", &["--format", "xml"]),
        "invalid value \"xml\" for option --format: unknown format \"xml\"",
    );
    assert_init_error(
        &tool(&unit, "status-get", &["--format"]),
        "option needs an argument: --format",
    );
}

#[test]
fn unknown_flags_exit_2_and_help_exits_0() {
    let unit = Unit::new();
    assert_init_error(
        &tool(&unit, "is-leader", &["--foo"]),
        "option provided but not defined: --foo",
    );
    assert_init_error(
        &tool(&unit, "config-get", &["-x"]),
        "option provided but not defined: -x",
    );
    assert_init_error(
        &tool(&unit, "juju-log", &["--=x", "m"]),
        "empty option in argument \"--=x\"",
    );
    let help = tool(&unit, "status-set", &["--help"]);
    assert_ok(&help);
    assert!(help.stdout.contains("status-set"), "{help:?}");
    assert_eq!(help.stderr, "");
}

#[test]
fn tools_require_the_hook_environment() {
    let unit = Unit::new();
    let out = Tool::new(&unit, "status-set", &["active"])
        .unset("JUJU_CONTEXT_ID")
        .run();
    assert_run_error(&out, "JUJU_CONTEXT_ID not set");
    let out = Tool::new(&unit, "config-get", &[])
        .unset("JUJU_AGENT_SOCKET_ADDRESS")
        .run();
    assert_run_error(&out, "JUJU_AGENT_SOCKET_ADDRESS not set");
    assert_eq!(unit.status().0, "unknown");
}

#[test]
fn config_get_outputs() {
    let unit = Unit::new();
    // Defaults come from charmcraft.yaml.
    let defaults = unit.juju_state().config;
    assert_eq!(defaults.get("channel"), Some(&json!("edge")));
    assert_eq!(defaults.get("port"), Some(&json!(8080)));
    unit.set_config("channel", json!("beta"));
    unit.set_config("unset-option", Value::Null);
    let out = tool(&unit, "config-get", &["--format=json"]);
    assert_ok(&out);
    assert_eq!(out.stdout, "{\"channel\":\"beta\",\"port\":8080}\n");
    assert_eq!(
        tool(&unit, "config-get", &["--format", "json", "--all"]).stdout,
        "{\"channel\":\"beta\",\"port\":8080,\"unset-option\":null}\n"
    );
    assert_eq!(tool(&unit, "config-get", &["channel"]).stdout, "beta\n");
    assert_eq!(tool(&unit, "config-get", &["port"]).stdout, "8080\n");
    assert_eq!(
        tool(&unit, "config-get", &["channel", "--format=json"]).stdout,
        "\"beta\"\n"
    );
    let missing = tool(&unit, "config-get", &["nope"]);
    assert_ok(&missing);
    assert_eq!(missing.stdout, "");
    assert_eq!(
        tool(&unit, "config-get", &["nope", "--format=json"]).stdout,
        "null\n"
    );
    assert_eq!(
        tool(&unit, "config-get", &[]).stdout,
        "channel: beta\nport: 8080\n"
    );
    assert_init_error(
        &tool(&unit, "config-get", &["-a", "channel"]),
        "cannot use argument --all together with key \"channel\"",
    );
    assert_init_error(
        &tool(&unit, "config-get", &["a", "b"]),
        "unrecognized args: [\"b\"]",
    );
}

#[test]
fn juju_log_levels_and_errors() {
    let unit = Unit::new();
    assert_ok(&tool(
        &unit,
        "juju-log",
        &["--log-level", "WARNING", "--", "x"],
    ));
    assert_ok(&tool(&unit, "juju-log", &["-l", "debug", "two", "words"]));
    assert_ok(&tool(&unit, "juju-log", &["--debug", "dbg"]));
    let bogus = tool(&unit, "juju-log", &["-l", "bogus", "hi"]);
    assert_ok(&bogus);
    assert_eq!(bogus.stdout, "");
    assert_init_error(&tool(&unit, "juju-log", &[]), "no message specified");
    assert_init_error(&tool(&unit, "juju-log", &["--"]), "no message specified");
    assert_ok(&tool(&unit, "juju-log", &[""]));
    let deprecated = tool(&unit, "juju-log", &["--format", "json", "m"]);
    assert_ok(&deprecated);
    assert_eq!(
        deprecated.stderr,
        "--format flag deprecated for command \"juju-log\""
    );
    let logs: Vec<(String, String)> = unit
        .logs()
        .into_iter()
        .map(|l| (l.level, l.message))
        .collect();
    let expect = |l: &str, m: &str| (l.to_string(), m.to_string());
    assert_eq!(
        logs,
        vec![
            expect("WARNING", "x"),
            expect("DEBUG", "two words"),
            expect("DEBUG", "dbg"),
            expect("WARNING", "Specified log level of \"bogus\" is not valid"),
            expect("INFO", "hi"),
            expect("INFO", ""),
            expect("INFO", "m"),
        ]
    );
}

#[test]
fn is_leader_and_version() {
    let unit = Unit::new();
    assert_eq!(tool(&unit, "is-leader", &[]).stdout, "True\n");
    assert_eq!(
        tool(&unit, "is-leader", &["--format=json"]).stdout,
        "true\n"
    );
    unit.set_leader(false);
    assert_eq!(tool(&unit, "is-leader", &[]).stdout, "False\n");
    assert_init_error(
        &tool(&unit, "is-leader", &["x"]),
        "unrecognized args: [\"x\"]",
    );
    assert_ok(&tool(&unit, "application-version-set", &["--", "-1.0"]));
    assert_eq!(unit.workload_version().as_deref(), Some("-1.0"));
    assert_init_error(
        &tool(&unit, "application-version-set", &[]),
        "no version specified",
    );
    assert_init_error(
        &tool(&unit, "application-version-set", &["a", "b"]),
        "unrecognized args: [\"b\"]",
    );
}

#[test]
fn ports_are_validated_pending_and_committed_like_the_agent() {
    let unit = Unit::new();
    assert_ok(&tool(&unit, "open-port", &["8080/TCP"]));
    assert_ok(&tool(&unit, "open-port", &["8000-8010/udp"]));
    assert_ok(&tool(&unit, "open-port", &["icmp"]));
    assert_ok(&tool(&unit, "close-port", &["icmp"]));
    // opened-ports merges pending changes, sorted by protocol then port.
    assert_eq!(
        tool(&unit, "opened-ports", &["--format=json"]).stdout,
        "[\"8080/tcp\",\"8000-8010/udp\"]\n"
    );
    assert_eq!(
        tool(&unit, "opened-ports", &["--endpoints"]).stdout,
        "8080/tcp (*)\n8000-8010/udp (*)\n"
    );
    assert!(unit.opened_ports().is_empty(), "nothing committed yet");
    juju_state::commit_hook_changes(&unit.state_dir, false).unwrap();
    assert!(unit.opened_ports().is_empty(), "failed hook discards");
    assert_eq!(
        tool(&unit, "opened-ports", &["--format=json"]).stdout,
        "[]\n"
    );
    assert_eq!(tool(&unit, "opened-ports", &[]).stdout, "");

    assert_ok(&tool(&unit, "open-port", &["8080"]));
    juju_state::commit_hook_changes(&unit.state_dir, true).unwrap();
    assert_eq!(unit.opened_ports(), vec!["8080/tcp".to_string()]);
    assert_eq!(tool(&unit, "opened-ports", &[]).stdout, "8080/tcp\n");

    for (spec, msg) in [
        (
            "80/sctp",
            "invalid protocol \"sctp\", expected \"tcp\", \"udp\", or \"icmp\"",
        ),
        (
            "x",
            "invalid port \"x\": strconv.Atoi: parsing \"x\": invalid syntax",
        ),
        ("1-2-3", "invalid port range \"1-2-3\""),
        ("90-80", "invalid port range 90-80/tcp"),
        (
            "70000",
            "port range bounds must be between 0 and 65535, got 70000-70000",
        ),
        (
            "80/icmp",
            "protocol \"icmp\" doesn't support any ports; got \"80\"",
        ),
    ] {
        assert_init_error(&tool(&unit, "open-port", &[spec]), msg);
    }
    assert_init_error(
        &tool(&unit, "close-port", &[]),
        "no port or range specified",
    );
    assert_init_error(
        &tool(&unit, "open-port", &["80", "81"]),
        "unrecognized args: [\"81\"]",
    );
}

#[test]
fn action_tools_need_an_action_context() {
    let unit = Unit::new();
    for (name, args) in [
        ("action-get", vec![]),
        ("action-set", vec!["a=b"]),
        ("action-fail", vec!["x"]),
        ("action-log", vec!["x"]),
    ] {
        assert_run_error(&tool(&unit, name, &args), "not running an action");
    }
    // Init errors come before the context check.
    assert_init_error(
        &tool(&unit, "action-set", &["Foo=1"]),
        "key \"Foo\" must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods",
    );
}

#[test]
fn action_tools_in_an_action() {
    let unit = Unit::new();
    unit.update_juju_state(|s| {
        s.action = Some(juju_state::ActionState {
            name: "refresh-snap".into(),
            params: json!({"channel": "beta", "opts": {"force": true}})
                .as_object()
                .cloned()
                .unwrap(),
            ..Default::default()
        })
    });
    assert_eq!(
        in_action(&unit, "action-get", &["--format=json"])
            .run()
            .stdout,
        "{\"channel\":\"beta\",\"opts\":{\"force\":true}}\n"
    );
    assert_eq!(
        in_action(&unit, "action-get", &["channel"]).run().stdout,
        "beta\n"
    );
    assert_eq!(
        in_action(&unit, "action-get", &["opts.force"]).run().stdout,
        "True\n"
    );
    assert_eq!(
        in_action(&unit, "action-get", &["missing", "--format=json"])
            .run()
            .stdout,
        "null\n"
    );
    assert_ok(&in_action(&unit, "action-set", &["result.version=1.2", "ok=yes"]).run());
    assert_ok(&in_action(&unit, "action-log", &["working", "hard"]).run());
    assert_ok(&in_action(&unit, "action-fail", &[]).run());
    for (arg, msg) in [
        ("novalue", "argument \"novalue\" must be of the form key...=value"),
        ("a-=1", "key \"a-\" must start and end with lowercase alphanumeric, and contain only lowercase alphanumeric, hyphens and periods"),
        ("stdout=1", "cannot set reserved action key \"stdout\""),
    ] {
        assert_init_error(&in_action(&unit, "action-set", &[arg]).run(), msg);
    }
    assert_init_error(
        &in_action(&unit, "action-fail", &["a", "b"]).run(),
        "unrecognized args: [\"b\"]",
    );
    assert_init_error(
        &in_action(&unit, "action-log", &[]).run(),
        "no message specified",
    );
    let action = unit.juju_state().action.unwrap();
    assert_eq!(
        Value::Object(action.results),
        json!({"result": {"version": "1.2"}, "ok": "yes"})
    );
    assert!(action.failed);
    assert_eq!(
        action.message,
        "action failed without reason given, check action for errors"
    );
    assert_eq!(action.logs, vec!["working hard".to_string()]);
}

#[test]
fn relation_tools() {
    let unit = Unit::new();
    unit.add_relation("cos-agent", 3, "grafana-agent", &["grafana-agent/0"]);
    assert_eq!(
        tool(&unit, "relation-ids", &["cos-agent", "--format=json"]).stdout,
        "[\"cos-agent:3\"]\n"
    );
    assert_eq!(
        tool(&unit, "relation-ids", &["other", "--format=json"]).stdout,
        "[]\n"
    );
    assert_init_error(
        &tool(&unit, "relation-ids", &[]),
        "no endpoint name specified",
    );
    assert_eq!(
        tool(
            &unit,
            "relation-list",
            &["-r", "cos-agent:3", "--format=json"]
        )
        .stdout,
        "[\"grafana-agent/0\"]\n"
    );
    let set = Tool::new(
        &unit,
        "relation-set",
        &["-r", "cos-agent:3", "--file", "-", "b=2"],
    )
    .stdin("{\"config\": \"{\\\"a\\\": 1}\", \"b\": \"1\"}")
    .run();
    assert_ok(&set);
    assert_ok(&tool(&unit, "relation-set", &["--relation=3", "c=3"]));
    assert_eq!(
        tool(
            &unit,
            "relation-get",
            &["-r", "3", "--format=json", "-", "microsample/0"]
        )
        .stdout,
        "{\"b\":\"2\",\"c\":\"3\",\"config\":\"{\\\"a\\\": 1}\"}\n"
    );
    // Relation settings are transactional, like ports.
    assert!(unit.juju_state().relations["cos-agent"][0]
        .unit_data
        .is_empty());
    juju_state::commit_hook_changes(&unit.state_dir, true).unwrap();
    assert_eq!(
        unit.juju_state().relations["cos-agent"][0].unit_data["b"],
        "2"
    );
    assert_init_error(
        &tool(&unit, "relation-set", &["-r", "x", "a=b"]),
        "invalid value \"x\" for option -r: invalid relation id",
    );
    assert_init_error(
        &tool(&unit, "relation-set", &["-r", "cos-agent:9", "a=b"]),
        "invalid value \"cos-agent:9\" for option -r: relation not found",
    );
    assert_init_error(
        &tool(&unit, "relation-set", &["a=b"]),
        "no relation id specified",
    );
    assert_init_error(
        &tool(&unit, "relation-set", &["-r", "3", "a"]),
        "expected \"key=value\", got \"a\"",
    );
    unit.set_leader(false);
    assert_run_error(
        &tool(&unit, "relation-set", &["-r", "3", "--app", "a=b"]),
        "cannot write relation settings",
    );
    // The stdin that was read is recorded.
    let calls = unit.all_calls();
    let with_stdin: Vec<_> = calls.iter().filter(|c| c.stdin.is_some()).collect();
    assert_eq!(with_stdin.len(), 1);
    assert_eq!(with_stdin[0].tool, "relation-set");
}

#[test]
fn every_invocation_is_recorded() {
    let unit = Unit::new();
    tool(&unit, "status-set", &["active", "x"]);
    tool(&unit, "status-set", &["bogus"]);
    let calls = unit.all_calls();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].tool, "status-set");
    assert_eq!(calls[0].args, vec!["active".to_string(), "x".to_string()]);
    assert_eq!(calls[0].exit, Some(0));
    assert_eq!(calls[1].exit, Some(2));
    assert_eq!(calls[1].stdin, None);
}

#[test]
fn injected_tool_faults() {
    let unit = Unit::new();
    unit.fail_tool("status-set", 1, "ERROR connection is shut down\n");
    let out = tool(&unit, "status-set", &["active"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "ERROR connection is shut down\n");
    assert_eq!(unit.status().0, "unknown");
}

// =======================================================================================
// snap CLI against the fake snapd (docs/snapd-api.md#cli-exit-codes)

fn snap(unit: &Unit, args: &[&str]) -> Out {
    tool(unit, "snap", args)
}

fn snap_field(unit: &Unit, field: &str) -> Value {
    unit.snapd_state()["snap"][field].clone()
}

/// Collapses the line wrapping of the snap CLI's `fill`.
fn unwrap_lines(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn snap_install_fresh_then_again() {
    let unit = Unit::new();
    let out = snap(&unit, &["install", "microsample", "--channel=edge"]);
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "microsample (edge) 0+git.57e56f2 from Erik Lonroth (erik78se) installed\n"
    );
    // /snap/bin is not on the hook PATH, so the real CLI warns.
    assert!(
        out.stderr
            .starts_with("Warning: /snap/bin was not found in your $PATH."),
        "{out:?}"
    );
    let post = unit
        .snapd_requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert_eq!(post.path, "/v2/snaps/microsample");
    assert_eq!(
        post.body,
        "{\"action\":\"install\",\"channel\":\"edge\",\"transaction\":\"per-snap\"}"
    );
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/edge"));

    // Installing again does not switch channel and exits 0.
    let again = snap(&unit, &["install", "--beta", "microsample"]);
    assert_ok(&again);
    assert_eq!(again.stdout, "");
    assert_eq!(
        again.stderr,
        "snap \"microsample\" is already installed, see 'snap help refresh'\n"
    );
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/edge"));
}

#[test]
fn snap_refresh_paths() {
    let unit = Unit::new();
    // The real snap 2.57.6 (snapd 2.77 says `cannot refresh "microsample": snap ...`).
    let not_installed = snap(&unit, &["refresh", "microsample", "--channel=edge"]);
    assert_eq!(not_installed.code, 1);
    assert_eq!(
        not_installed.stderr,
        "error: snap \"microsample\" is not installed\n"
    );
    let (status, v) = unit.snapd_request(
        "POST",
        "/v2/snaps/microsample",
        Some(&json!({"action": "refresh", "channel": "edge"})),
    );
    assert_eq!(status, 400);
    assert_eq!(
        v["result"],
        json!({"message": "snap \"microsample\" is not installed", "kind": "snap-not-installed", "value": "microsample"})
    );
    assert_ok(&snap(&unit, &["install", "microsample", "--edge"]));
    let same = snap(
        &unit,
        &["refresh", "microsample", "--channel", "latest/edge"],
    );
    assert_ok(&same);
    assert_eq!(
        same.stderr,
        "snap \"microsample\" has no updates available\n"
    );
    let beta = snap(&unit, &["refresh", "microsample", "--channel=beta"]);
    assert_ok(&beta);
    assert_eq!(
        beta.stdout,
        "microsample (beta) 0+git.49ff7aa from Erik Lonroth (erik78se) refreshed\n"
    );
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/beta"));
    assert_eq!(snap_field(&unit, "revision"), json!("33"));
    // Same revision on another channel: a switch, not "no updates".
    unit.set_store(json!({
        "latest/edge": {"revision": 33, "version": "0+git.49ff7aa"},
        "latest/beta": {"revision": 33, "version": "0+git.49ff7aa"},
    }));
    let switch = snap(&unit, &["refresh", "--edge", "microsample"]);
    assert_ok(&switch);
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/edge"));
}

#[test]
fn snap_channel_not_available() {
    let unit = Unit::new();
    let out = snap(&unit, &["install", "microsample", "--stable"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: snap \"microsample\" is not available on stable but is available to\n       \
         install on the following channels:\n\n       \
         beta       snap install --beta microsample\n       \
         edge       snap install --edge microsample\n\n       \
         Please be mindful pre-release channels may include features not\n       \
         completely tested or implemented. Get more information with 'snap info\n       \
         microsample'.\n"
    );
    let candidate = snap(&unit, &["install", "microsample", "--channel=candidate"]);
    assert_eq!(candidate.code, 1);
    assert!(unwrap_lines(&candidate.stderr).starts_with(
        "error: snap \"microsample\" is not available on candidate but is available to install"
    ));
    assert!(unit.snapd_state()["snap"].is_null());
    // An empty channel follows the next more stable risk, like the store.
    unit.set_store(json!({"latest/stable": {"revision": 7, "version": "1.0"}}));
    let follow = snap(&unit, &["install", "microsample", "--edge"]);
    assert_ok(&follow);
    assert_eq!(
        follow.stdout,
        "microsample 1.0 from Erik Lonroth (erik78se) installed\n\
         Channel latest/edge for microsample is closed; temporarily forwarding to latest/stable.\n"
    );
}

#[test]
fn snap_store_down_conflicts_and_usage_errors() {
    let unit = Unit::new();
    unit.set_store_down(true);
    let down = snap(&unit, &["install", "microsample"]);
    assert_eq!(down.code, 1);
    // Verbatim from the real snap 2.57.6 on a machine whose resolver (10.255.255.53) says
    // api.snapcraft.io does not exist: filled to 79 columns.
    assert_eq!(
        down.stderr,
        "error: cannot install \"microsample\": Post\n       \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp: lookup\n       api.snapcraft.io on 10.255.255.53:53: no such host\n"
    );
    // The other real shape: the DNS server itself unreachable, wrapped after retries.
    let unreachable = "persistent network error: Post \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp: lookup api.snapcraft.io on 10.6.49.1:53: dial udp 10.6.49.1:53: connect: network is unreachable";
    unit.set_store_error(Some(unreachable));
    let down = snap(&unit, &["install", "microsample", "--beta"]);
    assert_eq!(down.code, 1);
    assert_eq!(
        unwrap_lines(&down.stderr),
        format!("error: cannot install \"microsample\": {unreachable}")
    );
    unit.set_store_error(None);
    unit.set_store_down(false);

    unit.set_seeding(true);
    let seeding = snap(&unit, &["install", "microsample", "--edge"]);
    assert_eq!(seeding.code, 10);
    assert_eq!(
        seeding.stderr,
        "error: too early for operation, device not yet seeded or device model not acknowledged\n"
    );
    unit.set_seeding(false);
    assert_ok(&snap(&unit, &["install", "microsample", "--edge"]));
    unit.set_conflict(Some("auto-refresh"));
    let conflict = snap(&unit, &["refresh", "microsample", "--beta"]);
    assert_eq!(conflict.code, 10);
    assert_eq!(
        conflict.stderr,
        "error: snap \"microsample\" has \"auto-refresh\" change in progress\n"
    );
    unit.set_conflict(None);

    let flag = snap(&unit, &["install", "microsample", "--latest/edge"]);
    assert_eq!(flag.code, 64);
    assert_eq!(flag.stderr, "error: unknown flag `latest/edge'\n");
    // The real snap 2.57.6's texts (snap 2.77: `please specify a single channel`,
    // `cannot parse channel: ...` before asking snapd).
    let two = snap(&unit, &["refresh", "microsample", "--edge", "--beta"]);
    assert_eq!(two.code, 1);
    assert_eq!(two.stderr, "error: Please specify a single channel\n");
    let bad = snap(&unit, &["refresh", "microsample", "--channel=1.0/cand"]);
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr,
        "Warning: Specifying a channel \"1.0/cand\" is relying on undefined behaviour.\n         Interpreting it as \"1.0/cand\" for now, but this will be an error\n         later.\n\nerror: invalid risk in channel name: 1.0/cand\n"
    );
    let too_many = snap(
        &unit,
        &["install", "--channel", "foo/bar/baz/qux", "microsample"],
    );
    assert_eq!(
        too_many.stderr,
        "error: channel name has too many components: foo/bar/baz/qux\n"
    );
    let cmd = snap(&unit, &["frobnicate"]);
    assert_eq!(cmd.code, 64);
}

#[test]
fn snap_socket_missing() {
    let unit = Unit::new();
    let out = Tool::new(&unit, "snap", &["install", "microsample", "--channel=edge"])
        .env("SNAPD_SOCKET", "/nonexistent/snapd.socket")
        .run();
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: cannot communicate with server: Post \"http://localhost/v2/snaps/microsample\": dial unix /nonexistent/snapd.socket: connect: no such file or directory\n"
    );
}

#[test]
fn snap_remove_and_change_failures() {
    let unit = Unit::new();
    let missing = snap(&unit, &["remove", "microsample"]);
    assert_ok(&missing);
    assert_eq!(missing.stderr, "snap \"microsample\" is not installed\n");
    assert_ok(&snap(&unit, &["install", "microsample", "--edge"]));
    unit.set_change_fails(Some("unexpected EOF"));
    let failed = snap(&unit, &["refresh", "microsample", "--beta"]);
    assert_eq!(failed.code, 1);
    assert_eq!(
        failed.stderr,
        "error: cannot perform the following tasks:\n- Download snap \"microsample\" (33) from channel \"latest/beta\" (unexpected EOF)\n"
    );
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/edge"));
    unit.set_change_fails(None);
    let removed = snap(&unit, &["remove", "microsample"]);
    assert_ok(&removed);
    assert_eq!(removed.stdout, "microsample removed\n");
    assert!(unit.snapd_state()["snap"].is_null());
}

#[test]
fn snap_config_and_services() {
    let unit = Unit::new();
    assert_ok(&snap(&unit, &["install", "microsample", "--edge"]));
    let install_port = unit.snapd_state()["install_port"].as_u64().unwrap();
    assert_eq!(
        snap(&unit, &["get", "microsample", "port"]).stdout,
        format!("{install_port}\n")
    );
    let bad = snap(&unit, &["set", "microsample", "port=abc"]);
    assert_eq!(bad.code, 1);
    assert_eq!(
        bad.stderr,
        "error: cannot perform the following tasks:\n- Run configure hook of \"microsample\" snap (run hook \"configure\": \"abc\" is not a valid port)\n"
    );
    assert_eq!(snap_field(&unit, "config")["port"], json!(install_port));
    let missing_key = snap(&unit, &["get", "microsample", "nope"]);
    assert_eq!(missing_key.code, 1);
    assert_eq!(
        missing_key.stderr,
        "error: snap \"microsample\" has no \"nope\" configuration option\n"
    );
    let stop = snap(&unit, &["stop", "--disable", "microsample"]);
    assert_ok(&stop);
    assert_eq!(stop.stdout, "Stopped.\n");
    assert_eq!(snap_field(&unit, "enabled"), json!(false));
    let start = snap(&unit, &["start", "--enable", "microsample.microsample"]);
    assert_ok(&start);
    assert_eq!(start.stdout, "Started.\n");
    let post = unit
        .snapd_requests()
        .into_iter()
        .rev()
        .find(|r| r.path == "/v2/apps")
        .unwrap();
    assert_eq!(
        post.body,
        "{\"action\":\"start\",\"names\":[\"microsample.microsample\"],\"enable\":true}"
    );
    assert_eq!(
        snap(&unit, &["restart", "microsample"]).stdout,
        "Restarted.\n"
    );
    let list = snap(&unit, &["list", "microsample"]);
    assert_ok(&list);
    assert!(
        list.stdout
            .starts_with("Name         Version        Rev  Tracking     Publisher  Notes\n"),
        "{list:?}"
    );
}

#[test]
fn snap_hang_knob() {
    let unit = Unit::new();
    unit.set_snap_hang(true);
    let mut child = Command::new(unit.tools_dir.join("snap"))
        .args(["install", "microsample"])
        .env_clear()
        .env("FAKE_JUJU_DIR", &unit.state_dir)
        .env("SNAPD_SOCKET", &unit.socket)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(700));
    assert!(child.try_wait().unwrap().is_none(), "snap should hang");
    child.kill().unwrap();
    child.wait().unwrap();
    let calls = unit.all_calls();
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].tool, "snap");
    assert_eq!(calls[0].exit, None);
    assert!(unit.snapd_requests().is_empty());
}

// =======================================================================================
// Raw HTTP against the fake snapd (docs/snapd-api.md#http)

/// Sends raw bytes, returns everything read until EOF or `timeout`.
fn raw(unit: &Unit, request: &str, timeout: Duration) -> Vec<u8> {
    microsample_e2e::raw_exchange(&unit.socket, request.as_bytes(), timeout)
}

#[test]
fn http11_without_host_is_rejected_in_plain_text() {
    let unit = Unit::new();
    let out = raw(
        &unit,
        "GET /v2/snaps/microsample HTTP/1.1\r\n\r\n",
        Duration::from_secs(5),
    );
    // Verbatim from the real snapd 2.57.6: Go puts the reason in the status line too.
    assert_eq!(
        String::from_utf8_lossy(&out),
        "HTTP/1.1 400 Bad Request: missing required Host header\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request: missing required Host header"
    );
    // HTTP/1.0 needs no Host.
    let ok = raw(
        &unit,
        "GET /v2/snaps/microsample HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(String::from_utf8_lossy(&ok).starts_with("HTTP/1.0 404 Not Found\r\n"));
}

#[test]
fn snap_not_found_envelope_is_byte_exact() {
    let unit = Unit::new();
    let out = raw(
        &unit,
        "GET /v2/snaps/microsample HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let (head, body) = split_head(&out);
    let expected = "{\"type\":\"error\",\"status-code\":404,\"status\":\"Not Found\",\"result\":{\"message\":\"snap not installed\",\"kind\":\"snap-not-found\",\"value\":\"microsample\"}}";
    assert!(head.starts_with("HTTP/1.1 404 Not Found\r\n"), "{head}");
    assert!(
        head.contains("\r\nContent-Type: application/json\r\n"),
        "{head}"
    );
    assert!(
        head.contains(&format!("\r\nContent-Length: {}", expected.len())),
        "{head}"
    );
    assert!(!head.contains("Transfer-Encoding"));
    assert_eq!(String::from_utf8_lossy(&body), expected);

    let (status, v) = unit.snapd_request("GET", "/v2/nope", None);
    assert_eq!(status, 404);
    assert_eq!(
        v,
        json!({"type":"error","status-code":404,"status":"Not Found","result":{"message":"not found"}})
    );
    let out = raw(
        &unit,
        "PUT /v2/snaps/microsample HTTP/1.1\r\nHost: localhost\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
        Duration::from_secs(5),
    );
    let (head, body) = split_head(&out);
    assert!(head.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
    assert_eq!(
        String::from_utf8_lossy(&body),
        "{\"type\":\"error\",\"status-code\":405,\"status\":\"Method Not Allowed\",\"result\":{\"message\":\"method \\\"PUT\\\" not allowed\"}}"
    );
}

#[test]
fn large_bodies_are_chunked_and_http10_gets_close_delimited() {
    let unit = Unit::new();
    unit.preinstall_snap("latest/edge", free_port());
    // A normal snap object fits in 2048 bytes: Content-Length.
    let small = raw(
        &unit,
        "GET /v2/snaps/microsample HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let (head, body) = split_head(&small);
    assert!(body.len() <= 2048);
    assert!(
        head.contains(&format!("Content-Length: {}", body.len())),
        "{head}"
    );
    assert!(String::from_utf8_lossy(&body).starts_with(
        "{\"type\":\"sync\",\"status-code\":200,\"status\":\"OK\",\"result\":{\"id\":"
    ));

    unit.set_get_snap_fault(Some("huge_body"), None);
    let big = raw(
        &unit,
        "GET /v2/snaps/microsample HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(30),
    );
    let (head, chunked) = split_head(&big);
    assert!(head.contains("Transfer-Encoding: chunked"), "{head}");
    assert!(!head.contains("Content-Length"));
    let decoded = microsample_e2e::http::read_chunked(&mut &chunked[..], usize::MAX).unwrap();
    assert!(decoded.len() > 50 * 1024 * 1024);
    let v: Value = serde_json::from_slice(&decoded).unwrap();
    assert_eq!(v["result"]["name"], "microsample");

    let old = raw(
        &unit,
        "GET /v2/snaps/microsample HTTP/1.0\r\n\r\n",
        Duration::from_secs(30),
    );
    let (head, body) = split_head(&old);
    assert!(head.starts_with("HTTP/1.0 200 OK"));
    assert!(!head.contains("Content-Length") && !head.contains("Transfer-Encoding"));
    assert_eq!(body.len(), decoded.len());
}

#[test]
fn async_changes_are_polled_doing_then_done() {
    let unit = Unit::new();
    let body = json!({"action": "install", "channel": "beta"});
    let (status, v) = unit.snapd_request("POST", "/v2/snaps/microsample", Some(&body));
    assert_eq!(status, 202);
    assert_eq!(
        microsample_e2e::http::unix_request(&unit.socket, "GET", "/v2/changes/999", None, None)
            .unwrap()
            .status,
        404
    );
    let id = v["change"].as_str().unwrap().to_string();
    assert_eq!(
        v,
        json!({"type":"async","status-code":202,"status":"Accepted","result":null,"change": id})
    );
    let (_, first) = unit.snapd_request("GET", &format!("/v2/changes/{id}"), None);
    assert_eq!(first["result"]["status"], "Doing");
    assert_eq!(first["result"]["ready"], false);
    let (_, second) = unit.snapd_request("GET", &format!("/v2/changes/{id}"), None);
    assert_eq!(second["result"]["status"], "Done");
    assert_eq!(second["result"]["ready"], true);
    assert_eq!(
        second["result"]["data"],
        json!({"snap-names": ["microsample"]})
    );
    assert_eq!(second["result"]["kind"], "install-snap");
    assert_eq!(
        second["result"]["summary"],
        "Install \"microsample\" snap from \"beta\" channel"
    );

    let (_, snap) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    let r = &snap["result"];
    assert_eq!(r["tracking-channel"], "latest/beta");
    assert_eq!(r["channel"], "latest/beta");
    assert_eq!(r["revision"], "33");
    assert_eq!(r["version"], "0+git.49ff7aa");
    assert_eq!(r["apps"][0]["active"], true);
    assert_eq!(r["apps"][0]["enabled"], true);

    // Error responses of POST.
    let (status, v) = unit.snapd_request(
        "POST",
        "/v2/snaps/microsample",
        Some(&json!({"action": "install"})),
    );
    assert_eq!(status, 400);
    assert_eq!(
        v["result"],
        json!({"message": "snap \"microsample\" is already installed", "kind": "snap-already-installed", "value": {"snaps": ["microsample"]}})
    );
    let (status, v) = unit.snapd_request(
        "POST",
        "/v2/snaps/microsample",
        Some(&json!({"action": "refresh"})),
    );
    assert_eq!(status, 400);
    assert_eq!(
        v["result"],
        json!({"message": "snap has no updates available", "kind": "snap-no-update-available", "value": ""})
    );
    let (status, v) = unit.snapd_request(
        "POST",
        "/v2/snaps/microsample",
        Some(&json!({"action": "refresh", "channel": "candidate"})),
    );
    assert_eq!(status, 404);
    assert_eq!(v["result"]["kind"], "snap-channel-not-available");
    assert_eq!(
        v["result"]["value"]["releases"],
        json!([{"architecture":"amd64","channel":"beta"},{"architecture":"amd64","channel":"edge"}])
    );
    let (status, v) = unit.snapd_request(
        "POST",
        "/v2/snaps/microsample",
        Some(&json!({"action": "refresh", "channel": "1.0/cand"})),
    );
    assert_eq!(status, 400);
    assert_eq!(
        v["result"],
        json!({"message": "invalid risk in channel name: 1.0/cand"})
    );
    let (status, v) = unit.snapd_request(
        "POST",
        "/v2/snaps/microsample",
        Some(&json!({"action": "frob"})),
    );
    assert_eq!(status, 400);
    assert_eq!(v["result"], json!({"message": "unknown action frob"}));
}

#[test]
fn get_snap_faults() {
    let unit = Unit::new();
    unit.preinstall_snap("latest/edge", free_port());
    let get = |timeout: Duration| {
        raw(
            &unit,
            "GET /v2/snaps/microsample HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
            timeout,
        )
    };
    unit.set_get_snap_fault(Some("http500"), Some(1));
    assert!(String::from_utf8_lossy(&get(Duration::from_secs(5)))
        .starts_with("HTTP/1.1 500 Internal Server Error"));
    assert!(
        String::from_utf8_lossy(&get(Duration::from_secs(5))).starts_with("HTTP/1.1 200 OK"),
        "count exhausted"
    );

    unit.set_get_snap_fault(Some("close"), None);
    assert!(get(Duration::from_secs(5)).is_empty());

    unit.set_get_snap_fault(Some("truncated_body"), None);
    let (head, body) = split_head(&get(Duration::from_secs(5)));
    let declared: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(body.len() < declared);

    unit.set_get_snap_fault(Some("invalid_json"), None);
    let (_, body) = split_head(&get(Duration::from_secs(5)));
    assert!(serde_json::from_slice::<Value>(&body).is_err());

    unit.set_get_snap_fault(Some("hang"), None);
    let start = Instant::now();
    assert!(get(Duration::from_millis(500)).is_empty());
    assert!(start.elapsed() >= Duration::from_millis(450));
    unit.set_get_snap_fault(None, None);

    let (status, _) = unit.snapd_request(
        "PUT",
        "/fake/state",
        Some(&json!({"get_snap_fault": "nope"})),
    );
    assert_eq!(status, 400);
}

#[test]
fn request_counter_excludes_control_api() {
    let unit = Unit::new();
    unit.snapd_request("GET", "/v2/snaps/microsample", None);
    unit.snapd_request("GET", "/v2/snaps/microsample/conf", None);
    unit.snapd_state();
    let reqs = unit.snapd_requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].method, "GET");
    assert_eq!(reqs[0].path, "/v2/snaps/microsample");
    unit.clear_snapd_requests();
    assert!(unit.snapd_requests().is_empty());
}

// =======================================================================================
// Workload

fn wait_for<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn workload_serves_on_the_configured_port_and_moves() {
    let unit = Unit::new();
    assert_ok(&snap(&unit, &["install", "microsample", "--edge"]));
    let port = unit.snapd_state()["install_port"].as_u64().unwrap() as u16;
    assert_eq!(
        wait_for(|| unit.workload_get(port, "/")),
        Some((200, "Online".to_string()))
    );
    let metrics = unit.workload_get(port, "/metrics").unwrap();
    assert_eq!(metrics.0, 200);
    assert!(
        metrics.1.contains("microsample_calls_total 1.0"),
        "{}",
        metrics.1
    );

    let new_port = free_port();
    assert_ok(&snap(
        &unit,
        &["set", "microsample", &format!("port={new_port}")],
    ));
    // The configure hook does not restart the service.
    assert!(unit.workload_get(port, "/").is_some());
    assert!(unit.workload_get(new_port, "/").is_none());
    assert_ok(&snap(&unit, &["restart", "microsample"]));
    assert_eq!(
        wait_for(|| unit.workload_get(new_port, "/")),
        Some((200, "Online".to_string()))
    );
    assert!(unit.workload_get(port, "/").is_none());

    assert_ok(&snap(&unit, &["stop", "microsample"]));
    assert!(unit.workload_get(new_port, "/").is_none());
    let (_, v) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    assert!(v["result"]["apps"][0].get("active").is_none());
    assert_eq!(v["result"]["apps"][0]["enabled"], true);
}

#[test]
fn workload_closes_each_connection_after_one_answer_like_werkzeug() {
    // docs/snapd-api.md#microsample: Werkzeug 2.1.2 and later answer HTTP/1.1 with
    // `Connection: close` and close, whatever the client asks.
    use std::io::{BufReader, Read, Write};
    let unit = Unit::new();
    assert_ok(&snap(&unit, &["install", "microsample", "--edge"]));
    let port = unit.snapd_state()["install_port"].as_u64().unwrap() as u16;
    assert!(wait_for(|| unit.workload_get(port, "/")).is_some());
    for path in ["/", "/metrics"] {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        // Two requests at once: only the first is answered.
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        )
        .unwrap();
        let mut reader = BufReader::new(stream);
        let answer = microsample_e2e::http::read_response(&mut reader, "GET").unwrap();
        assert_eq!(answer.status, 200);
        assert_eq!(
            answer.header("Connection"),
            Some("close"),
            "{:?}",
            answer.headers
        );
        let body = answer.text();
        if path == "/" {
            assert_eq!(body, "Online");
        } else {
            assert!(body.contains("microsample_calls_total"), "{body}");
        }
        let mut rest = Vec::new();
        assert_eq!(
            reader.read_to_end(&mut rest).unwrap(),
            0,
            "closed after one answer"
        );
    }
}

#[test]
fn workload_fails_when_its_port_is_taken() {
    let unit = Unit::new();
    let taken = free_port();
    let blocker = TcpListener::bind(("0.0.0.0", taken)).unwrap();
    unit.preinstall_snap("latest/edge", taken);
    let (_, v) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    assert!(v["result"]["apps"][0].get("active").is_none(), "{v}");
    assert!(unit.snapd_state()["workload"]["error"].is_string());
    drop(blocker);
    assert_ok(&snap(&unit, &["restart", "microsample"]));
    let (_, v) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    assert_eq!(v["result"]["apps"][0]["active"], true);
}

#[test]
fn workload_faults() {
    let unit = Unit::new();
    let port = free_port();
    unit.preinstall_snap("latest/edge", port);
    assert_eq!(
        wait_for(|| unit.workload_get(port, "/")).map(|r| r.0),
        Some(200)
    );
    unit.set_workload_fault(Some("http500"));
    assert_eq!(unit.workload_get(port, "/").map(|r| r.0), Some(500));
    unit.set_workload_fault(Some("dead"));
    assert!(unit.workload_get(port, "/").is_none());
    let (_, v) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    assert!(v["result"]["apps"][0].get("active").is_none());
    unit.set_workload_fault(None);
    assert_eq!(
        wait_for(|| unit.workload_get(port, "/")).map(|r| r.0),
        Some(200)
    );
}

// =======================================================================================
// Harness smoke test

#[test]
fn dispatch_runs_through_the_harness() {
    let unit = Unit::new();
    unit.set_config("port", json!(free_port()));
    let runs = unit.run_install_hooks();
    let run = unit.run_hook("leader-elected");
    for run in [runs.install, runs.relation_created, run] {
        assert!(run.exit.is_some() || run.signal.is_some(), "{run:?}");
    }
    assert!(unit.charm_dir.join("metadata.yaml").exists());
}

#[test]
fn snap_errors_of_a_missing_snap_and_the_apps_listing() {
    // Texts and answers of the real snapd 2.57.6 (checked live by tests/real_snapd.rs).
    let unit = Unit::new();
    // Every command error goes through errorToCmdMessage: snap-not-found -> "not found".
    let set = snap(&unit, &["set", "microsample", "port=8081"]);
    assert_eq!(
        (set.code, set.stderr.as_str()),
        (1, "error: snap \"microsample\" not found\n")
    );
    let (status, v) = unit.snapd_request("GET", "/v2/apps?names=microsample", None);
    assert_eq!(status, 404);
    assert_eq!(
        v["result"],
        json!({"message": "snap \"microsample\" not found", "kind": "snap-not-found", "value": "microsample"})
    );
    // option-not-found carries a Go struct: SnapName before Key.
    let out = raw(
        &unit,
        "GET /v2/snaps/microsample/conf?keys=port HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
        Duration::from_secs(5),
    );
    let (_, body) = split_head(&out);
    assert_eq!(
        String::from_utf8_lossy(&body),
        r#"{"type":"error","status-code":400,"status":"Bad Request","result":{"message":"snap \"microsample\" has no \"port\" configuration option","kind":"option-not-found","value":{"SnapName":"microsample","Key":"port"}}}"#
    );

    unit.preinstall_snap("latest/edge", free_port());
    let (status, v) = unit.snapd_request("GET", "/v2/apps", None);
    assert_eq!(status, 200);
    assert_eq!(
        v["result"],
        json!([{"snap": "microsample", "name": "microsample", "daemon": "simple", "daemon-scope": "system", "enabled": true, "active": true}])
    );
    let (status, v) = unit.snapd_request("GET", "/v2/apps?names=microsample.nope", None);
    assert_eq!(status, 404);
    assert_eq!(
        v["result"]["message"],
        json!("snap \"microsample\" has no app \"nope\"")
    );
}

// ---------------------------------------------------------------------------------------
// The harness finds its binaries

#[test]
fn the_harness_finds_fake_juju_and_dispatch() {
    // What cargo names for this package's binary is what the library derives at run time.
    assert_eq!(
        microsample_e2e::fake_juju_bin(),
        std::path::PathBuf::from(env!("CARGO_BIN_EXE_fake-juju"))
    );
    let dispatch = microsample_e2e::dispatch_bin();
    assert!(dispatch.is_file(), "{}", dispatch.display());
    // Built once per process: a second call is the same file, without a second build.
    assert_eq!(microsample_e2e::dispatch_bin(), dispatch);
    let out = Command::new(&dispatch)
        .env_clear()
        .output()
        .expect("dispatch runs");
    assert_eq!(
        out.status.code(),
        Some(2),
        "no JUJU_DISPATCH_PATH: usage error"
    );
}

// =======================================================================================
// Real-world cases the harness can stage (issue "truth")

// --- statuses changed by others ---------------------------------------------------------

#[test]
fn statuses_set_by_the_agent_and_by_juju_exec() {
    let unit = Unit::new();
    unit.set_status_as_agent("error", "hook failed: \"config-changed\"");
    assert_eq!(
        unit.status(),
        (
            "error".to_string(),
            "hook failed: \"config-changed\"".to_string()
        )
    );
    let last = unit.status_history().pop().unwrap();
    assert_eq!((last.source.as_str(), last.context.as_str()), ("agent", ""));
    // The charm sees it through status-get.
    let out = tool(&unit, "status-get", &["--include-data", "--format=json"]);
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "{\"message\":\"hook failed: \\\"config-changed\\\"\",\"status\":\"error\",\"status-data\":{}}\n"
    );

    unit.set_status_via_juju_exec("blocked", "operator says no");
    assert_eq!(
        unit.status(),
        ("blocked".to_string(), "operator says no".to_string())
    );
    let last = unit.status_history().pop().unwrap();
    assert_eq!((last.source.as_str(), last.context.as_str()), ("charm", ""));
    // Neither counts as a status-set of a hook: `start` still gets the agent's `unknown`
    // if the charm never set one (docs/juju.md#agent-statuses).
    assert!(!unit.juju_state().status_set_ever);
    // Neither is a hook-tool call of the charm.
    assert!(unit.all_calls().iter().all(|c| c.tool == "status-get"));
}

#[test]
fn status_set_that_applies_then_fails() {
    let unit = Unit::new();
    unit.status_set_applies_then_fails();
    let out = tool(&unit, "status-set", &["active", "Ready"]);
    assert_eq!(out.code, 1, "{out:?}");
    assert_eq!(out.stderr, "ERROR connection is shut down\n");
    assert_eq!(out.stdout, "");
    // ... but the agent did set it.
    assert_eq!(unit.status(), ("active".to_string(), "Ready".to_string()));
    let last = unit.status_history().pop().unwrap();
    assert_eq!(
        (last.source.as_str(), last.context.as_str()),
        ("charm", "hooks/test")
    );
    assert!(unit.juju_state().status_set_ever);
    assert_eq!(unit.all_calls().last().unwrap().exit, Some(1));
    // A call status-set itself refuses fails its own way, and changes nothing.
    assert_init_error(
        &tool(&unit, "status-set", &["bogus"]),
        "invalid status \"bogus\", expected one of [maintenance blocked waiting active]",
    );
    assert_eq!(unit.status().0, "active");
    // --application of a non-leader is refused by the agent: not applied, its own error.
    unit.set_leader(false);
    assert_run_error(
        &tool(&unit, "status-set", &["--application", "blocked"]),
        "this unit is not the leader",
    );
    unit.clear_tool_fault("status-set");
    assert_ok(&tool(&unit, "status-set", &["waiting", "again"]));
    assert_eq!(unit.status(), ("waiting".to_string(), "again".to_string()));
}

// --- read-only and immutable charm directory --------------------------------------------

/// Replaces the charm's dispatch with a probe that tries to write in the charm directory
/// (relative to its working directory and through `$CHARM_DIR`) and says what failed.
fn probe_dispatch(unit: &Unit) {
    use std::os::unix::fs::PermissionsExt;
    let dispatch = unit.charm_dir.join("dispatch");
    std::fs::remove_file(&dispatch).unwrap();
    std::fs::write(
        &dispatch,
        "#!/bin/sh\n\
         touch created || echo 'create failed'\n\
         (echo x >> metadata.yaml) || echo 'append failed'\n\
         rm -f manifest.yaml || echo 'remove failed'\n\
         touch \"$CHARM_DIR/abs\" || echo 'create through CHARM_DIR failed'\n\
         exit 0\n",
    )
    .unwrap();
    std::fs::set_permissions(&dispatch, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn immutable_flag(path: &std::path::Path) -> bool {
    let out = Command::new("lsattr").arg("-d").arg(path).output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    text.split_whitespace().next().unwrap().contains('i')
}

#[test]
fn a_writable_charm_dir_and_its_snapshot_diff() {
    let unit = Unit::new();
    unit.create_peer_relation(); // deployed: update-status sees its peer relation
    probe_dispatch(&unit);
    let before = unit.charm_dir_snapshot();
    assert!(before
        .entries
        .contains_key(std::path::Path::new("metadata.yaml")));
    let run = unit.run_hook("update-status");
    assert_eq!(run.exit, Some(0), "{run:?}");
    assert_eq!(run.stdout, "");
    let diff = before.diff(&unit.charm_dir_snapshot());
    assert_eq!(diff.len(), 4, "{diff:#?}");
    assert!(
        diff[0].starts_with("removed manifest.yaml: file 644"),
        "{diff:#?}"
    );
    assert!(
        diff[1].starts_with("changed metadata.yaml: file 644"),
        "{diff:#?}"
    );
    assert!(diff[1].ends_with(": \"x\\n\")"), "{diff:#?}");
    assert_eq!(diff[2], "added abs: file 644, 0 bytes: \"\"");
    assert_eq!(diff[3], "added created: file 644, 0 bytes: \"\"");
    let panicked = std::panic::catch_unwind(|| unit.assert_charm_dir_unchanged(&before));
    assert!(panicked.is_err());
}

#[test]
fn a_read_only_charm_dir_refuses_every_write_of_the_hook_only() {
    let unit = Unit::new();
    unit.create_peer_relation(); // deployed: update-status sees its peer relation
    probe_dispatch(&unit);
    unit.set_charm_dir_mode(microsample_e2e::CharmDirMode::ReadOnly);
    let before = unit.charm_dir_snapshot();
    let run = unit.run_hook("update-status");
    assert_eq!(run.exit, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "create failed\nappend failed\nremove failed\ncreate through CHARM_DIR failed\n"
    );
    assert_eq!(
        run.stderr.matches("Read-only file system").count(),
        4,
        "{run:?}"
    );
    unit.assert_charm_dir_unchanged(&before);
    // The test (and everything outside the hook) still has a writable directory.
    std::fs::write(unit.charm_dir.join("by-the-test"), "x").unwrap();
    // Hook tools still work (their state is outside the charm directory).
    std::fs::write(
        unit.charm_dir.join("dispatch"),
        "#!/bin/sh\nexec status-set active 'from a read-only dir'\n",
    )
    .unwrap();
    assert_eq!(unit.run_hook("update-status").exit, Some(0));
    assert_eq!(unit.status().1, "from a read-only dir");
}

#[test]
fn an_immutable_charm_dir_refuses_writes_while_the_hook_runs() {
    let unit = Unit::new();
    unit.create_peer_relation(); // deployed: update-status sees its peer relation
    probe_dispatch(&unit);
    unit.set_charm_dir_mode(microsample_e2e::CharmDirMode::Immutable);
    let before = unit.charm_dir_snapshot();
    let run = unit.run_hook("update-status");
    assert_eq!(run.exit, Some(0), "{run:?}");
    assert_eq!(
        run.stdout,
        "create failed\nappend failed\nremove failed\ncreate through CHARM_DIR failed\n"
    );
    assert_eq!(
        run.stderr.matches("Operation not permitted").count(),
        4,
        "{run:?}"
    );
    unit.assert_charm_dir_unchanged(&before);
    // The flag is gone once the hook has ended.
    assert!(!immutable_flag(&unit.charm_dir));
    assert!(!immutable_flag(&unit.charm_dir.join("metadata.yaml")));

    // Only the directory: no new, removed or renamed entry, but files can be rewritten.
    unit.set_charm_dir_mode(microsample_e2e::CharmDirMode::ImmutableDir);
    let run = unit.run_hook("update-status");
    assert_eq!(
        run.stdout,
        "create failed\nremove failed\ncreate through CHARM_DIR failed\n"
    );
    assert_eq!(
        before.diff(&unit.charm_dir_snapshot()).len(),
        1,
        "only metadata.yaml was appended to"
    );
}

#[test]
fn the_immutable_flag_is_removed_when_the_harness_panics() {
    let root;
    {
        let unit = Unit::new();
        // Deployed, so that the run panics at its deadline, not for a missing relation.
        unit.create_peer_relation();
        root = unit.root.clone();
        std::fs::remove_file(unit.charm_dir.join("dispatch")).unwrap();
        std::fs::write(unit.charm_dir.join("dispatch"), "#!/bin/sh\nsleep 30\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(
            unit.charm_dir.join("dispatch"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        unit.set_charm_dir_mode(microsample_e2e::CharmDirMode::Immutable);
        unit.set_hook_timeout(Duration::from_millis(500));
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            unit.run_hook("update-status")
        }));
        let message = result.expect_err("the run past its deadline panics");
        let message = message
            .downcast_ref::<String>()
            .map(String::as_str)
            .unwrap_or_default();
        assert!(message.contains("did not finish within"), "{message}");
        assert!(!immutable_flag(&unit.charm_dir));
        std::fs::write(unit.charm_dir.join("after"), "x").unwrap();
    }
    assert!(!root.exists(), "the unit's directory was removed");
}

// --- something else on the workload's port ----------------------------------------------

fn local(port: u16) -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], port))
}

#[test]
fn port_holder_silent_accepts_and_never_answers() {
    use std::io::Read;
    let port = free_port();
    let holder = microsample_e2e::PortHolder::silent(port);
    let mut client = std::net::TcpStream::connect(local(port)).unwrap();
    client
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    client
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let mut buf = [0u8; 16];
    let err = client.read(&mut buf).unwrap_err();
    assert!(
        matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
        "{err:?}"
    );
    assert_eq!(holder.accepted(), 1);
    drop(holder);
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    assert_eq!(client.read(&mut buf).unwrap_or(0), 0, "closed on drop");
    assert_port_freed(port);
}

/// The port can be listened on again. (A refused connect would not show it reliably: a
/// connect to a free port in the ephemeral range may be given that very port as its
/// source and connect to itself. For the same reason another test's connection may hold
/// it as its source for a moment: a port still held stays held for the whole wait.)
fn assert_port_freed(port: u16) {
    let until = Instant::now() + Duration::from_secs(2);
    while std::net::TcpListener::bind(local(port)).is_err() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        std::net::TcpListener::bind(local(port)).is_ok(),
        "port freed"
    );
}

#[test]
fn port_holder_never_accepting_makes_connect_hang() {
    let port = free_port();
    let holder = microsample_e2e::PortHolder::never_accepting(port);
    let start = Instant::now();
    let err = std::net::TcpStream::connect_timeout(&local(port), Duration::from_millis(1500))
        .unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err:?}");
    assert!(start.elapsed() >= Duration::from_millis(1400));
    assert_eq!(holder.accepted(), 0);
    drop(holder);
    assert_port_freed(port);
}

#[test]
fn port_holder_dripping_sends_a_byte_a_second() {
    use std::io::Read;
    let port = free_port();
    let _holder = microsample_e2e::PortHolder::dripping(port);
    let mut client = std::net::TcpStream::connect(local(port)).unwrap();
    client
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let start = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 16];
    while got.len() < 3 {
        let n = client.read(&mut buf).unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(got, b"HTT");
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(4),
        "{elapsed:?}"
    );
}

#[test]
fn port_holder_answering_with_any_status_and_body() {
    let port = free_port();
    let holder = microsample_e2e::PortHolder::answering(port, 404, "not microsample");
    let unit = Unit::new();
    assert_eq!(
        unit.workload_get(port, "/"),
        Some((404, "not microsample".to_string()))
    );
    drop(holder);
    let _holder = microsample_e2e::PortHolder::answering(port, 500, "<h1>boom</h1>");
    let resp = microsample_e2e::http::tcp_request(
        &format!("127.0.0.1:{port}"),
        "GET",
        "/",
        Duration::from_secs(5),
    )
    .unwrap();
    assert_eq!(resp.status, 500);
    assert_eq!(resp.text(), "<h1>boom</h1>");
    assert_eq!(
        resp.header("Content-Type"),
        Some("text/html; charset=utf-8")
    );
}

#[test]
fn microsample_cannot_start_on_a_taken_port_and_snapd_says_inactive() {
    let unit = Unit::new();
    let port = free_port();
    let holder = microsample_e2e::PortHolder::answering(port, 404, "someone else");
    // Installed earlier, configured on the taken port: Flask cannot bind 0.0.0.0:<port>.
    unit.preinstall_snap("latest/edge", port);
    let app_of = |unit: &Unit| {
        let (status, body) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
        assert_eq!(status, 200);
        body["result"]["apps"][0].clone()
    };
    assert_eq!(
        app_of(&unit),
        json!({"snap": "microsample", "name": "microsample", "daemon": "simple",
               "daemon-scope": "system", "enabled": true}),
        "`active` is omitted for a service that is not running"
    );
    let workload = unit.snapd_state()["workload"].clone();
    assert_eq!(workload["running"], json!(false));
    assert_eq!(
        workload["error"],
        json!(format!(
            "Address already in use\nPort {port} is in use by another program. Either \
             identify and stop that program, or start the server with a different port."
        ))
    );
    // `snap start` of a simple service succeeds (systemd started the process), yet the
    // service is not active: it died at once.
    let out = snap(&unit, &["start", "microsample"]);
    assert_ok(&out);
    assert_eq!(out.stdout, "Started.\n");
    assert!(app_of(&unit).get("active").is_none());
    let (_, apps) = unit.snapd_request("GET", "/v2/apps?select=service", None);
    assert!(apps["result"][0].get("active").is_none(), "{apps}");
    // The port answers, but not as microsample.
    assert_eq!(
        unit.workload_get(port, "/"),
        Some((404, "someone else".to_string()))
    );
    // Once the port is free, nothing restarts it by itself (systemd gave up: start limit);
    // a restart does.
    drop(holder);
    assert!(app_of(&unit).get("active").is_none());
    assert_ok(&snap(&unit, &["restart", "microsample"]));
    assert_eq!(app_of(&unit)["active"], json!(true));
    assert_eq!(
        unit.workload_get(port, "/"),
        Some((200, "Online".to_string()))
    );
}

// --- channels the store cannot serve: risk, branch, track, architecture ------------------

/// `POST /v2/snaps/microsample` with `body`: (HTTP status, `result`).
fn post_snap(unit: &Unit, body: Value) -> (u16, Value) {
    let (status, v) = unit.snapd_request("POST", "/v2/snaps/microsample", Some(&body));
    (status, v["result"].clone())
}

/// The `value` of snapd's `snap-channel-not-available` for microsample.
fn not_available_value(action: &str, channel: &str, releases: &[&str]) -> Value {
    json!({
        "snap-name": "microsample",
        "action": action,
        "channel": channel,
        "architecture": "amd64",
        "releases": releases
            .iter()
            .map(|c| json!({"architecture": "amd64", "channel": c}))
            .collect::<Vec<_>>(),
    })
}

const TRACK_1_0_RELEASES: [&str; 5] = ["beta", "edge", "1.0/stable", "1.0/beta", "1.0/edge"];

#[test]
fn install_from_channels_the_store_cannot_serve() {
    let unit = Unit::new();
    unit.set_store(microsample_e2e::store_with_track_1_0());
    let cases: [(&str, &str); 5] = [
        // (a) a risk with no revision (latest has only beta and edge)
        (
            "latest/stable",
            "error: snap \"microsample\" is not available on stable but is available to\n       \
             install on the following channels:\n\n       \
             beta       snap install --beta microsample\n       \
             edge       snap install --edge microsample\n\n       \
             Please be mindful pre-release channels may include features not\n       \
             completely tested or implemented. Get more information with 'snap info\n       \
             microsample'.\n",
        ),
        // (b) a branch that does not exist, on a track/risk that has a revision
        (
            "edge/hotfix",
            "error: requested a non-existing branch on latest/edge for snap \"microsample\":\n       \
             hotfix\n",
        ),
        // (b) ... and on a track/risk that has none
        (
            "2.0/edge/hotfix",
            "error: requested a non-existing branch for snap \"microsample\": 2.0/edge/hotfix\n",
        ),
        // (c) a track that does not exist, the risk available on others
        (
            "2.0/edge",
            "error: snap \"microsample\" is not available on 2.0/edge but is available to\n       \
             install on the following tracks:\n\n       \
             latest/beta  snap install --beta microsample\n       \
             latest/edge  snap install --edge microsample\n       \
             1.0/stable   snap install --channel=1.0 microsample\n       \
             1.0/beta     snap install --channel=1.0/beta microsample\n       \
             1.0/edge     snap install --channel=1.0/edge microsample\n\n       \
             Please be mindful that different tracks may include different features.\n       \
             Get more information with 'snap info microsample'.\n",
        ),
        // (c) a track given alone is its stable risk
        (
            "3.0",
            "error: snap \"microsample\" is not available on 3.0/stable but is available to\n       \
             install on the following tracks:\n\n       \
             1.0/stable  snap install --channel=1.0 microsample\n\n       \
             Please be mindful that different tracks may include different features.\n       \
             Get more information with 'snap info microsample'.\n",
        ),
    ];
    for (channel, stderr) in cases {
        let out = snap(
            &unit,
            &["install", "microsample", &format!("--channel={channel}")],
        );
        assert_eq!(out.code, 1, "{channel}: {out:?}");
        assert_eq!(out.stdout, "", "{channel}");
        assert_eq!(out.stderr, stderr, "{channel}");
        let (status, result) = post_snap(&unit, json!({"action": "install", "channel": channel}));
        assert_eq!(status, 404, "{channel}");
        assert_eq!(
            result,
            json!({"message": "no snap revision on specified channel",
                   "kind": "snap-channel-not-available",
                   "value": not_available_value("install", channel, &TRACK_1_0_RELEASES)}),
            "{channel}"
        );
    }
    assert!(unit.snapd_state()["snap"].is_null());
    assert!(unit.snapd_state()["changes"]
        .as_object()
        .is_none_or(|c| c.is_empty()));

    // (c) a track that does not exist, and no release of the risk anywhere.
    unit.set_store(json!({"latest/edge": {"revision": 34, "version": "0+git.57e56f2"}}));
    let out = snap(&unit, &["install", "microsample", "--channel=2.0/stable"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: snap \"microsample\" is not available on 2.0/stable but other tracks\n       \
         exist.\n\n       \
         Please be mindful that different tracks may include different features.\n       \
         Get more information with 'snap info microsample'.\n"
    );
}

#[test]
fn refresh_to_channels_the_store_cannot_serve() {
    let unit = Unit::new();
    unit.preinstall_tracking_1_0_stable(free_port());
    // The requested channel is resolved against the tracked one first (`1.0/...`).
    let cases: [(&str, &str, &str); 3] = [
        (
            "edge/hotfix",
            "1.0/edge/hotfix",
            "error: requested a non-existing branch on 1.0/edge for snap \"microsample\":\n       \
             hotfix\n",
        ),
        (
            "latest/stable",
            "latest/stable",
            "error: snap \"microsample\" is not available on stable but is available to\n       \
             install on the following channels:\n\n       \
             beta       snap refresh --beta microsample\n       \
             edge       snap refresh --edge microsample\n\n       \
             Please be mindful pre-release channels may include features not\n       \
             completely tested or implemented. Get more information with 'snap info\n       \
             microsample'.\n",
        ),
        (
            "2.0/candidate",
            "2.0/candidate",
            "error: snap \"microsample\" is not available on 2.0/candidate but is available to\n       \
             install on the following tracks:\n\n       \
             1.0/stable  snap refresh --channel=1.0 microsample\n\n       \
             Please be mindful that different tracks may include different features.\n       \
             Get more information with 'snap info microsample'.\n",
        ),
    ];
    for (requested, resolved, stderr) in cases {
        let out = snap(
            &unit,
            &["refresh", "microsample", &format!("--channel={requested}")],
        );
        assert_eq!(out.code, 1, "{requested}: {out:?}");
        assert_eq!(out.stderr, stderr, "{requested}");
        let (status, result) = post_snap(&unit, json!({"action": "refresh", "channel": requested}));
        assert_eq!(status, 404);
        assert_eq!(result["kind"], "snap-channel-not-available", "{requested}");
        assert_eq!(
            result["value"],
            not_available_value("refresh", resolved, &TRACK_1_0_RELEASES),
            "{requested}"
        );
    }
    // Nothing moved.
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("1.0/stable"));
    assert_eq!(snap_field(&unit, "revision"), json!("20"));
}

#[test]
fn another_architecture_gets_architecture_not_available() {
    let unit = Unit::new();
    unit.set_architecture("arm64");
    let (_, info) = unit.snapd_request("GET", "/v2/system-info", None);
    assert_eq!(info["result"]["architecture"], "arm64");
    let out = snap(&unit, &["install", "microsample", "--edge"]);
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: snap \"microsample\" is not available on edge for this architecture\n       \
         (arm64) but exists on other architectures (amd64).\n"
    );
    let out = snap(&unit, &["install", "microsample"]);
    assert_eq!(
        out.stderr,
        "error: snap \"microsample\" is not available on this architecture (arm64) but\n       \
         exists on other architectures (amd64).\n"
    );
    let (status, result) = post_snap(&unit, json!({"action": "install", "channel": "edge"}));
    assert_eq!(status, 404);
    assert_eq!(
        result,
        json!({"message": "no snap revision on specified architecture",
               "kind": "snap-architecture-not-available",
               "value": {"snap-name": "microsample", "action": "install", "channel": "edge",
                         "architecture": "arm64",
                         "releases": [{"architecture": "amd64", "channel": "beta"},
                                      {"architecture": "amd64", "channel": "edge"}]}})
    );
}

// --- a sideloaded snap ------------------------------------------------------------------

#[test]
fn a_sideloaded_snap_is_unknown_to_the_store() {
    let unit = Unit::new();
    let port = free_port();
    unit.sideload_snap(port);
    let (status, v) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    assert_eq!(status, 200);
    let snap_obj = v["result"].as_object().unwrap().clone();
    assert_eq!(snap_obj["id"], "");
    assert_eq!(snap_obj["revision"], "x1");
    assert_eq!(snap_obj["channel"], "");
    assert_eq!(snap_obj["developer"], "");
    for absent in ["tracking-channel", "publisher", "title", "cohort-key"] {
        assert!(!snap_obj.contains_key(absent), "{absent}: {v}");
    }
    assert_eq!(
        snap_obj["mounted-from"],
        "/var/lib/snapd/snaps/microsample_x1.snap"
    );
    assert_eq!(snap_obj["apps"][0]["active"], true);
    assert_eq!(
        wait_for(|| unit.workload_get(port, "/")),
        Some((200, "Online".to_string()))
    );

    // A refresh, with or without a channel, is refused: exit 1.
    for args in [
        &["refresh", "microsample", "--channel=edge"][..],
        &["refresh", "microsample"][..],
    ] {
        let out = snap(&unit, args);
        assert_eq!(out.code, 1, "{args:?}: {out:?}");
        assert_eq!(
            out.stderr,
            "error: local snap \"microsample\" is unknown to the store, use --amend to proceed\n       \
             anyway\n"
        );
    }
    let (status, result) = post_snap(&unit, json!({"action": "refresh", "channel": "edge"}));
    assert_eq!(status, 400);
    assert_eq!(
        result,
        json!({"message": "cannot perform operation on local snap", "kind": "snap-local", "value": ""})
    );
    // `snap list`: nothing tracked, no publisher.
    let out = snap(&unit, &["list"]);
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "Name         Version        Rev  Tracking  Publisher  Notes\n\
         microsample  0+git.57e56f2  x1   -         -          -\n"
    );
    // Installing from the store does not replace it.
    let out = snap(&unit, &["install", "microsample", "--channel=edge"]);
    assert_ok(&out);
    assert_eq!(
        out.stderr,
        "snap \"microsample\" is already installed, see 'snap help refresh'\n"
    );
    assert_eq!(snap_field(&unit, "revision"), json!("x1"));

    // --amend asks the store to install it from the channel ("install" action).
    let (status, result) = post_snap(
        &unit,
        json!({"action": "refresh", "channel": "candidate", "amend": true}),
    );
    assert_eq!(status, 404);
    assert_eq!(
        result["value"],
        not_available_value("install", "candidate", &["beta", "edge"])
    );
    let out = snap(&unit, &["refresh", "microsample", "--amend"]);
    assert_eq!(out.code, 1, "no channel: the store's stable, empty here");
    assert_eq!(
        out.stderr,
        "error: snap \"microsample\" not available as specified (see 'snap info\n       \
         microsample')\n"
    );
    let out = snap(
        &unit,
        &["refresh", "microsample", "--channel=edge", "--amend"],
    );
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "microsample (edge) 0+git.57e56f2 from Erik Lonroth (erik78se) refreshed\n"
    );
    let (_, v) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    assert_eq!(v["result"]["id"], "fVvFs0vN8zSMmdBU0Yd4JTCGyeLawQkX");
    assert_eq!(v["result"]["tracking-channel"], "latest/edge");
    assert_eq!(v["result"]["revision"], "34");
    assert_eq!(v["result"]["publisher"]["username"], "erik78se");
}

// --- a bare risk keeps the tracked track -------------------------------------------------

#[test]
fn a_bare_risk_keeps_the_tracked_track() {
    let unit = Unit::new();
    // Nothing tracked yet: a bare risk is on latest.
    let (status, _) = post_snap(&unit, json!({"action": "install", "channel": "beta"}));
    assert_eq!(status, 202);
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/beta"));

    let unit = Unit::new();
    unit.preinstall_tracking_1_0_stable(free_port());
    let change_of = |unit: &Unit| {
        let state = unit.snapd_state();
        let changes = state["changes"].as_object().unwrap();
        let last = changes
            .values()
            .max_by_key(|c| c["id"].as_str().unwrap().parse::<u32>().unwrap())
            .unwrap();
        (
            last["summary"].as_str().unwrap().to_string(),
            last["task_summary"].as_str().unwrap().to_string(),
        )
    };

    let out = snap(&unit, &["refresh", "microsample", "--channel=edge"]);
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "microsample (1.0/edge) 1.0.2 from Erik Lonroth (erik78se) refreshed\n"
    );
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("1.0/edge"));
    assert_eq!(snap_field(&unit, "revision"), json!("25"));
    assert_eq!(
        change_of(&unit),
        (
            "Refresh \"microsample\" snap from \"edge\" channel".to_string(),
            "Download snap \"microsample\" (25) from channel \"1.0/edge\"".to_string()
        )
    );

    // The risk flags are bare risks too; a closed risk follows the track's more stable one.
    let out = snap(&unit, &["refresh", "microsample", "--candidate"]);
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "microsample (1.0/stable) 1.0.0 from Erik Lonroth (erik78se) refreshed\n\
         Channel 1.0/candidate for microsample is closed; temporarily forwarding to 1.0/stable.\n"
    );
    assert_eq!(
        snap_field(&unit, "tracking_channel"),
        json!("1.0/candidate")
    );

    // Same revision, other channel: a switch, which also rewrites `channel`.
    let out = snap(&unit, &["refresh", "microsample", "--channel=stable"]);
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "microsample (1.0/stable) 1.0.0 from Erik Lonroth (erik78se) refreshed\n"
    );
    assert_eq!(
        change_of(&unit).1,
        "Switch snap \"microsample\" from channel \"1.0/candidate\" to \"1.0/stable\""
    );
    assert_eq!(snap_field(&unit, "channel"), json!("1.0/stable"));

    // A fully qualified channel is taken as it is.
    let out = snap(&unit, &["refresh", "microsample", "--channel=latest/edge"]);
    assert_ok(&out);
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/edge"));
    assert_eq!(snap_field(&unit, "revision"), json!("34"));
    // ... and now a bare risk stays on latest.
    let out = snap(&unit, &["refresh", "microsample", "--channel=edge"]);
    assert_ok(&out);
    assert_eq!(
        out.stderr,
        "snap \"microsample\" has no updates available\n"
    );
    let (status, _) = post_snap(&unit, json!({"action": "refresh", "channel": "beta"}));
    assert_eq!(status, 202);
    assert_eq!(snap_field(&unit, "tracking_channel"), json!("latest/beta"));
}

// --- cohorts ----------------------------------------------------------------------------

fn decode_base64(s: &str) -> String {
    use base64::Engine as _;
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(s)
            .expect("base64"),
    )
    .unwrap()
}

#[test]
fn snap_create_cohort_prints_the_keys_as_yaml() {
    let unit = Unit::new();
    let out = snap(&unit, &["create-cohort", "microsample"]);
    assert_ok(&out);
    let key = out
        .stdout
        .strip_prefix("cohorts:\n  microsample:\n    cohort-key: ")
        .and_then(|rest| rest.strip_suffix('\n'))
        .unwrap_or_else(|| panic!("{out:?}"));
    // Shaped like the store's: base64("1 <snap-id> <unix time> <64 hex digits>").
    let decoded = decode_base64(key);
    let parts: Vec<&str> = decoded.split(' ').collect();
    assert_eq!(parts.len(), 4, "{decoded}");
    assert_eq!(parts[..2], ["1", "fVvFs0vN8zSMmdBU0Yd4JTCGyeLawQkX"]);
    assert!(parts[2].parse::<u64>().is_ok());
    assert_eq!(parts[3].len(), 64);
    assert!(unit.snapd_state()["cohorts"][key].is_object());
    // A second key is another key.
    assert_ne!(unit.create_cohort(), key);

    let out = snap(&unit, &["create-cohort", "microsample", "other-snap"]);
    assert_eq!(out.code, 1);
    assert_eq!(out.stderr, "error: cannot create cohorts: snap not found\n");
    let out = snap(&unit, &["create-cohort"]);
    assert_eq!(out.code, 64);
    assert_eq!(
        out.stderr,
        "error: the required argument `<snap> (at least 1 argument)` was not provided\n"
    );
    let cohorts = |body: Value| {
        let (status, v) = unit.snapd_request("POST", "/v2/cohorts", Some(&body));
        (status, v["result"].clone())
    };
    assert_eq!(
        cohorts(json!({"action": "create", "snaps": []})),
        (200, json!({}))
    );
    assert_eq!(
        cohorts(json!({"action": "delete", "snaps": ["microsample"]})),
        (400, json!({"message": "unknown cohort action \"delete\""}))
    );
    unit.set_store_down(true);
    assert_eq!(
        cohorts(json!({"action": "create", "snaps": ["microsample"]})),
        (
            500,
            json!({"message": "Post \"https://api.snapcraft.io/v2/cohorts\": dial tcp: lookup api.snapcraft.io on 10.255.255.53:53: no such host"})
        )
    );
}

#[test]
fn a_cohort_pins_the_revisions_of_its_creation_for_90_days() {
    let unit = Unit::new();
    let key = unit.create_cohort();
    let short = format!("…{}", &key[key.len() - 9..]);
    // The publisher releases a new edge revision after the key was made.
    unit.set_store(json!({
        "latest/edge": {"revision": 40, "version": "0+git.1111111"},
        "latest/beta": {"revision": 33, "version": "0+git.49ff7aa"},
    }));
    let out = snap(
        &unit,
        &[
            "install",
            "microsample",
            "--edge",
            &format!("--cohort={key}"),
        ],
    );
    assert_ok(&out);
    assert_eq!(
        out.stdout,
        "microsample (edge) 0+git.57e56f2 from Erik Lonroth (erik78se) installed\n"
    );
    assert_eq!(snap_field(&unit, "revision"), json!("34"));
    let (_, v) = unit.snapd_request("GET", "/v2/snaps/microsample", None);
    assert_eq!(v["result"]["cohort-key"], json!(key));
    let state = unit.snapd_state();
    assert_eq!(
        state["changes"]["1"]["summary"],
        json!(format!(
            "Install \"microsample\" snap from \"edge\" channel from \"{short}\" cohort"
        ))
    );
    let post = unit
        .snapd_requests()
        .into_iter()
        .find(|r| r.method == "POST" && r.path == "/v2/snaps/microsample")
        .unwrap();
    assert_eq!(
        post.body,
        format!(
            "{{\"action\":\"install\",\"channel\":\"edge\",\"cohort-key\":\"{key}\",\"transaction\":\"per-snap\"}}"
        )
    );
    let out = snap(&unit, &["list"]);
    assert!(out.stdout.ends_with("  in-cohort\n"), "{out:?}");

    // In the cohort, a plain refresh gets the pinned revision: nothing to do.
    let out = snap(&unit, &["refresh", "microsample"]);
    assert_ok(&out);
    assert_eq!(
        out.stderr,
        "snap \"microsample\" has no updates available\n"
    );
    // Leaving the cohort gets the channel's revision of today.
    let out = snap(&unit, &["refresh", "microsample", "--leave-cohort"]);
    assert_ok(&out);
    assert_eq!(snap_field(&unit, "revision"), json!("40"));
    assert_eq!(snap_field(&unit, "cohort_key"), json!(""));
    // Joining it again goes back to the pinned revision.
    let out = snap(
        &unit,
        &["refresh", "microsample", &format!("--cohort={key}")],
    );
    assert_ok(&out);
    assert_eq!(snap_field(&unit, "revision"), json!("34"));
    assert_eq!(snap_field(&unit, "cohort_key"), json!(key));

    // 90 days on, the key pins the channel map of that day.
    unit.advance_store_clock(Duration::from_secs(89 * 24 * 3600));
    let out = snap(&unit, &["refresh", "microsample"]);
    assert_eq!(
        out.stderr,
        "snap \"microsample\" has no updates available\n"
    );
    unit.advance_store_clock(Duration::from_secs(24 * 3600));
    let out = snap(&unit, &["refresh", "microsample"]);
    assert_ok(&out);
    assert_eq!(snap_field(&unit, "revision"), json!("40"));
    assert_eq!(snap_field(&unit, "cohort_key"), json!(key));

    // Same revision, leaving the cohort: a switch.
    let out = snap(&unit, &["refresh", "microsample", "--leave-cohort"]);
    assert_ok(&out);
    let state = unit.snapd_state();
    let last = state["changes"]
        .as_object()
        .unwrap()
        .values()
        .max_by_key(|c| c["id"].as_str().unwrap().parse::<u32>().unwrap())
        .unwrap()
        .clone();
    assert_eq!(last["task_kind"], "switch-snap-channel");
    assert_eq!(
        last["task_summary"],
        json!(format!(
            "Switch snap \"microsample\" away from cohort \"{short}\""
        ))
    );
    assert_eq!(snap_field(&unit, "cohort_key"), json!(""));
}

#[test]
fn cohort_keys_the_store_refuses_and_conflicting_options() {
    let unit = Unit::new();
    let out = snap(
        &unit,
        &[
            "install",
            "microsample",
            "--cohort=MSBub3QgYSByZWFsIGtleQ==",
        ],
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: cannot install \"microsample\": fake store: unknown cohort key\n       \"…sIGtleQ==\"\n"
    );
    unit.preinstall_snap("latest/edge", free_port());
    let key = unit.create_cohort();
    let out = snap(
        &unit,
        &[
            "refresh",
            "microsample",
            &format!("--cohort={key}"),
            "--leave-cohort",
        ],
    );
    assert_eq!(out.code, 1);
    assert_eq!(
        out.stderr,
        "error: cannot specify both cohort-key and leave-cohort\n"
    );
    let (status, result) = post_snap(&unit, json!({"action": "remove", "cohort-key": key}));
    assert_eq!(status, 400);
    assert_eq!(
        result,
        json!({"message": "cohort-key can only be specified for install, refresh, or switch"})
    );
    let (status, result) = post_snap(&unit, json!({"action": "install", "leave-cohort": true}));
    assert_eq!(status, 400);
    assert_eq!(
        result,
        json!({"message": "leave-cohort can only be specified for refresh or switch"})
    );
}

#[test]
fn machines_started_with_one_store_file_share_channels_and_cohorts() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("store.json");
    let options = |name| microsample_e2e::UnitOptions {
        name: Some(name),
        store: Some(&store),
        ..Default::default()
    };
    let a = Unit::with_options(options("microsample/0"));
    let b = Unit::with_options(options("microsample/1"));
    // A revision published through one machine is what the other's store serves.
    a.set_store(json!({
        "latest/edge": {"revision": 34, "version": "0+git.57e56f2"},
        "latest/beta": {"revision": 41, "version": "0+git.fixed"},
    }));
    assert_eq!(
        b.snapd_state()["channels"]["latest/beta"]["revision"],
        json!(41)
    );
    // A cohort key made on one machine works on the other, pinned for both.
    let key = a.create_cohort();
    a.set_store(json!({
        "latest/edge": {"revision": 34, "version": "0+git.57e56f2"},
        "latest/beta": {"revision": 42, "version": "0+git.newer"},
    }));
    let out = snap(
        &b,
        &[
            "install",
            "microsample",
            "--beta",
            &format!("--cohort={key}"),
        ],
    );
    assert_ok(&out);
    assert_eq!(snap_field(&b, "revision"), json!("41"));
    // Without the key, the newest.
    assert_ok(&snap(&a, &["install", "microsample", "--beta"]));
    assert_eq!(snap_field(&a, "revision"), json!("42"));
    // What the revision serves travels with it: a revision without /metrics.
    a.set_store(json!({
        "latest/edge": {"revision": 12, "version": "0+git.old", "metrics": false},
    }));
    assert_ok(&snap(
        &b,
        &["refresh", "microsample", "--edge", "--leave-cohort"],
    ));
    let port = b.snapd_state()["workload"]["port"].as_u64().unwrap() as u16;
    assert_eq!(b.workload_get(port, "/metrics").map(|r| r.0), Some(404));
    assert_eq!(b.workload_get(port, "/").map(|r| r.0), Some(200));
}
