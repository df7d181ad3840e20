//! Every hook-tool call the charm makes, behind one trait ([`HookTools`]) so tests can swap
//! in an in-memory Juju; [`ProcessTools`] runs the real tools found on `PATH`.
//!
//! Argument vectors follow the jujuc contract (docs/juju.md#hook-tools): flags first, then
//! `--` before any free text (a status message or version that starts with `-` must not be
//! read as a flag), and `--format=json` for anything that is parsed.

use std::fmt;
use std::time::Duration;

use serde_json::{Map, Value};

use super::ports::PortRange;
use crate::deadline::Deadline;
use crate::metadata::Endpoint;
use crate::process;
use crate::text::bounded;

/// The workload status values a charm may set (`status-set` rejects anything else).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum StatusKind {
    // Ordered by priority: when several problems are seen, the highest one is reported.
    Active,
    Waiting,
    Maintenance,
    Blocked,
}

impl StatusKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            StatusKind::Active => "active",
            StatusKind::Waiting => "waiting",
            StatusKind::Maintenance => "maintenance",
            StatusKind::Blocked => "blocked",
        }
    }
}

/// A workload status with its message, made safe to show: control characters become
/// spaces and the message is bounded in length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) kind: StatusKind,
    pub(crate) message: String,
}

/// Longest status message the charm sets, in characters.
pub const MAX_STATUS_MESSAGE: usize = 200;

impl Status {
    pub(crate) fn new(kind: StatusKind, message: impl AsRef<str>) -> Status {
        Status {
            kind,
            message: bounded(message.as_ref(), MAX_STATUS_MESSAGE),
        }
    }
    pub(crate) fn active(message: impl AsRef<str>) -> Status {
        Status::new(StatusKind::Active, message)
    }
    pub(crate) fn blocked(message: impl AsRef<str>) -> Status {
        Status::new(StatusKind::Blocked, message)
    }
    pub(crate) fn maintenance(message: impl AsRef<str>) -> Status {
        Status::new(StatusKind::Maintenance, message)
    }
    pub(crate) fn waiting(message: impl AsRef<str>) -> Status {
        Status::new(StatusKind::Waiting, message)
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.message)
    }
}

/// A hook tool that could not be run or that failed; carries the tool's own error text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ToolError {
    pub(crate) tool: String,
    pub(crate) detail: String,
}

impl fmt::Display for ToolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hook tool {} failed: {}", self.tool, self.detail)
    }
}

impl std::error::Error for ToolError {}

/// A read of what Juju shows, named for [`HookTools::read_ahead`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Query<'a> {
    ConfigGet,
    OpenedPorts,
    RelationIds(Endpoint),
    RelationList(&'a str),
    RelationGet {
        relation_id: &'a str,
        owner: &'a str,
        app: bool,
    },
}

/// A report to Juju, for [`HookTools::write_all`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Write<'a> {
    /// `application-version-set`.
    Version(&'a str),
    /// `relation-set`, of the unit's databag or (`app`) the application's.
    Databag {
        relation_id: &'a str,
        app: bool,
        settings: &'a Map<String, Value>,
    },
    /// `status-set --application` (leader only).
    AppStatus(&'a Status),
    /// `status-set`.
    Status(&'a Status),
}

/// The hook tools this charm uses.
pub(crate) trait HookTools {
    /// Makes every write, all at once where the tools are processes, and returns each
    /// one's result in order. They are independent: Juju applies each as it comes, and the
    /// relation data only when the hook ends (docs/juju.md#relation-data).
    fn write_all(&mut self, writes: &[Write<'_>]) -> Vec<Result<(), ToolError>> {
        writes
            .iter()
            .map(|write| match *write {
                Write::Version(version) => self.application_version_set(version),
                Write::Databag {
                    relation_id,
                    app: false,
                    settings,
                } => self.relation_set(relation_id, settings),
                Write::Databag {
                    relation_id,
                    app: true,
                    settings,
                } => self.relation_set_app(relation_id, settings),
                Write::AppStatus(status) => self.app_status_set(status),
                Write::Status(status) => self.status_set(status),
            })
            .collect()
    }
    /// Starts `reads`, which this hook makes next, all at once. Each answer is taken by
    /// the one call below that asks the same, made later in this hook; nothing is kept
    /// past it. An in-memory Juju answers at once and needs no head start.
    fn read_ahead(&mut self, reads: &[Query<'_>]) {
        let _ = reads;
    }
    /// `config-get --format=json`: every option that has a value.
    fn config_get(&mut self) -> Result<Map<String, Value>, ToolError>;
    fn status_set(&mut self, status: &Status) -> Result<(), ToolError>;
    fn application_version_set(&mut self, version: &str) -> Result<(), ToolError>;
    /// `opened-ports --format=json`; items Juju may print that this charm does not know
    /// (a newer syntax) are returned as `Err(text)` so they can be closed or reported.
    fn opened_ports(&mut self) -> Result<Vec<Result<PortRange, String>>, ToolError>;
    fn open_port(&mut self, port: PortRange) -> Result<(), ToolError>;
    fn close_port(&mut self, port: &str) -> Result<(), ToolError>;
    fn action_set(&mut self, results: &[(&str, String)]) -> Result<(), ToolError>;
    fn action_fail(&mut self, message: &str) -> Result<(), ToolError>;
    /// `relation-ids --format=json <endpoint>`.
    fn relation_ids(&mut self, endpoint: Endpoint) -> Result<Vec<String>, ToolError>;
    /// `relation-set -r <id> --file -` with `settings` as JSON on stdin.
    fn relation_set(
        &mut self,
        relation_id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError>;
    /// `relation-set -r <id> --app --file -`: the application databag (leader only).
    fn relation_set_app(
        &mut self,
        relation_id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError>;
    /// `relation-list --format=json -r <id>`: the remote units.
    fn relation_list(&mut self, relation_id: &str) -> Result<Vec<String>, ToolError>;
    /// `relation-get --format=json -r <id> [--app] - <owner>`: a unit's or an application's
    /// databag.
    fn relation_get(
        &mut self,
        relation_id: &str,
        owner: &str,
        app: bool,
    ) -> Result<Map<String, Value>, ToolError>;
    /// `is-leader --format=json`.
    fn is_leader(&mut self) -> Result<bool, ToolError>;
    /// `status-set --application`: the application's status (leader only).
    fn app_status_set(&mut self, status: &Status) -> Result<(), ToolError>;
}

/// The real hook tools: child processes found on `PATH` that inherit this process's
/// environment (they need `JUJU_CONTEXT_ID` and the agent socket variables).
pub(crate) struct ProcessTools {
    timeout: Duration,
    /// This hook's relation as Juju's environment names it (endpoint, id), when the hook is
    /// a relation hook: see [`ProcessTools::relation_ids`].
    current: Option<(String, String)>,
    /// Answers of [`HookTools::read_ahead`] not yet taken: (tool, arguments, result).
    ahead: Vec<(
        &'static str,
        Vec<String>,
        Result<process::Finished, process::RunError>,
    )>,
}

/// Hook tools answer from the unit agent in milliseconds; this only stops a wedged agent
/// from hanging the hook forever.
pub(crate) const HOOK_TOOL_TIMEOUT: Duration = Duration::from_secs(120);

impl Default for ProcessTools {
    fn default() -> Self {
        let var = |name| std::env::var(name).ok().filter(|v| !v.is_empty());
        ProcessTools {
            timeout: HOOK_TOOL_TIMEOUT,
            current: var("JUJU_RELATION").zip(var("JUJU_RELATION_ID")),
            ahead: Vec::new(),
        }
    }
}

impl ProcessTools {
    /// The relation ids of a peer endpoint that Juju's environment already gives: in a
    /// relation hook of a peer endpoint, `JUJU_RELATION_ID` is that endpoint's relation
    /// (docs/juju.md#environment), and it is the only one: an application has one relation
    /// per peer endpoint, which lives as long as the application (no `-broken` hook,
    /// docs/juju.md#relation-hooks). So `relation-ids` would print exactly that id
    /// (docs/juju.md#relation-tools) and is not run. Nothing is remembered: the id is this
    /// hook's, from this hook's environment.
    fn peer_relation_of_this_hook(&self, endpoint: Endpoint) -> Option<String> {
        let (name, id) = self.current.as_ref()?;
        let of_endpoint = id
            .strip_prefix(endpoint.name())
            .and_then(|rest| rest.strip_prefix(':'))
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        (endpoint.role() == "peers" && name == endpoint.name() && of_endpoint).then(|| id.clone())
    }

    /// The tool and arguments that answer `query`; `None` when this hook's environment
    /// already does ([`ProcessTools::peer_relation_of_this_hook`]).
    fn argv(&self, query: Query<'_>) -> Option<(&'static str, Vec<String>)> {
        let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect();
        Some(match query {
            Query::ConfigGet => ("config-get", strings(&["--format=json"])),
            Query::OpenedPorts => ("opened-ports", strings(&["--format=json"])),
            Query::RelationIds(endpoint) => {
                if self.peer_relation_of_this_hook(endpoint).is_some() {
                    return None;
                }
                (
                    "relation-ids",
                    strings(&["--format=json", "--", endpoint.name()]),
                )
            }
            Query::RelationList(id) => ("relation-list", strings(&["--format=json", "-r", id])),
            Query::RelationGet {
                relation_id,
                owner,
                app,
            } => {
                let mut args = vec!["--format=json", "-r", relation_id];
                if app {
                    args.push("--app");
                }
                args.extend(["-", owner]);
                ("relation-get", strings(&args))
            }
        })
    }

    /// The tool, arguments and stdin of `write`.
    fn write_argv(write: &Write<'_>) -> (&'static str, Vec<String>, Option<Vec<u8>>) {
        let strings = |args: &[&str]| args.iter().map(|a| a.to_string()).collect();
        match *write {
            Write::Version(version) => ("application-version-set", strings(&["--", version]), None),
            Write::Databag {
                relation_id,
                app,
                settings,
            } => {
                let mut args = vec!["-r", relation_id];
                if app {
                    args.push("--app");
                }
                args.extend(["--file", "-"]);
                // Serialising a map of JSON values cannot fail.
                let body = serde_json::to_vec(settings).unwrap_or_default();
                ("relation-set", strings(&args), Some(body))
            }
            Write::AppStatus(status) => (
                "status-set",
                strings(&["--application", status.kind.as_str(), "--", &status.message]),
                None,
            ),
            Write::Status(status) => (
                "status-set",
                strings(&[status.kind.as_str(), "--", &status.message]),
                None,
            ),
        }
    }

    fn write(&mut self, write: Write<'_>) -> Result<(), ToolError> {
        let (tool, args, stdin) = Self::write_argv(&write);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.call(tool, &args, stdin.as_deref()).map(drop)
    }

    /// Answers `query` as JSON.
    fn ask<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        query: Query<'_>,
    ) -> Result<T, ToolError> {
        let Some((tool, args)) = self.argv(query) else {
            return Ok(T::default());
        };
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.call_json(tool, &args)
    }

    fn call(
        &mut self,
        tool: &str,
        args: &[&str],
        stdin: Option<&[u8]>,
    ) -> Result<Vec<u8>, ToolError> {
        let started = match stdin {
            None => self
                .ahead
                .iter()
                .position(|(t, a, _)| *t == tool && a.iter().eq(args.iter())),
            Some(_) => None,
        };
        let done = match started {
            Some(i) => self.ahead.swap_remove(i).2,
            None => process::run(tool, args, stdin, Deadline::after(self.timeout)),
        };
        Self::outcome(tool, done)
    }

    /// A finished tool's stdout, or why it failed (its stderr, else its exit status).
    fn outcome(
        tool: &str,
        done: Result<process::Finished, process::RunError>,
    ) -> Result<Vec<u8>, ToolError> {
        let error = |detail: String| ToolError {
            tool: tool.to_string(),
            detail,
        };
        let done = done.map_err(|e| error(e.to_string()))?;
        if done.status.success() {
            Ok(done.stdout)
        } else {
            let stderr = done.stderr_text();
            Err(error(if stderr.is_empty() {
                done.status.to_string()
            } else {
                stderr
            }))
        }
    }

    fn call_json<T: serde::de::DeserializeOwned + Default>(
        &mut self,
        tool: &str,
        args: &[&str],
    ) -> Result<T, ToolError> {
        let out = self.call(tool, args, None)?;
        // `null` (nothing set) reads as the empty value.
        let value: Option<T> = serde_json::from_slice(&out).map_err(|e| ToolError {
            tool: tool.to_string(),
            detail: format!("unexpected output {:?}: {e}", String::from_utf8_lossy(&out)),
        })?;
        Ok(value.unwrap_or_default())
    }
}

impl HookTools for ProcessTools {
    fn read_ahead(&mut self, reads: &[Query<'_>]) {
        let argvs: Vec<(&'static str, Vec<String>)> =
            reads.iter().filter_map(|q| self.argv(*q)).collect();
        let commands: Vec<process::Command<String>> = argvs
            .iter()
            .map(|(t, a)| (*t, a.as_slice(), None))
            .collect();
        let results = process::run_all(&commands, Deadline::after(self.timeout));
        for ((tool, args), result) in argvs.into_iter().zip(results) {
            self.ahead.push((tool, args, result));
        }
    }

    fn config_get(&mut self) -> Result<Map<String, Value>, ToolError> {
        self.ask(Query::ConfigGet)
    }

    fn status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        self.write(Write::Status(status))
    }

    fn application_version_set(&mut self, version: &str) -> Result<(), ToolError> {
        self.write(Write::Version(version))
    }

    fn opened_ports(&mut self) -> Result<Vec<Result<PortRange, String>>, ToolError> {
        let items: Vec<String> = self.ask(Query::OpenedPorts)?;
        Ok(items
            .into_iter()
            .map(|item| PortRange::parse(&item).ok_or(item))
            .collect())
    }

    fn open_port(&mut self, port: PortRange) -> Result<(), ToolError> {
        self.call("open-port", &[&port.to_string()], None).map(drop)
    }

    fn close_port(&mut self, port: &str) -> Result<(), ToolError> {
        self.call("close-port", &[port], None).map(drop)
    }

    fn action_set(&mut self, results: &[(&str, String)]) -> Result<(), ToolError> {
        let args: Vec<String> = results.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.call("action-set", &args, None).map(drop)
    }

    fn action_fail(&mut self, message: &str) -> Result<(), ToolError> {
        self.call("action-fail", &["--", message], None).map(drop)
    }

    fn relation_ids(&mut self, endpoint: Endpoint) -> Result<Vec<String>, ToolError> {
        if let Some(id) = self.peer_relation_of_this_hook(endpoint) {
            return Ok(vec![id]);
        }
        self.ask(Query::RelationIds(endpoint))
    }

    fn relation_set(
        &mut self,
        relation_id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError> {
        self.write(Write::Databag {
            relation_id,
            app: false,
            settings,
        })
    }

    fn relation_set_app(
        &mut self,
        relation_id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError> {
        self.write(Write::Databag {
            relation_id,
            app: true,
            settings,
        })
    }

    fn relation_list(&mut self, relation_id: &str) -> Result<Vec<String>, ToolError> {
        self.ask(Query::RelationList(relation_id))
    }

    fn relation_get(
        &mut self,
        relation_id: &str,
        owner: &str,
        app: bool,
    ) -> Result<Map<String, Value>, ToolError> {
        self.ask(Query::RelationGet {
            relation_id,
            owner,
            app,
        })
    }

    fn is_leader(&mut self) -> Result<bool, ToolError> {
        self.call_json("is-leader", &["--format=json"])
    }

    fn app_status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        self.write(Write::AppStatus(status))
    }

    fn write_all(&mut self, writes: &[Write<'_>]) -> Vec<Result<(), ToolError>> {
        let argvs: Vec<_> = writes.iter().map(Self::write_argv).collect();
        let commands: Vec<process::Command<String>> = argvs
            .iter()
            .map(|(tool, args, stdin)| (*tool, args.as_slice(), stdin.as_deref()))
            .collect();
        let results = process::run_all(&commands, Deadline::after(self.timeout));
        argvs
            .iter()
            .zip(results)
            .map(|((tool, _, _), done)| Self::outcome(tool, done).map(drop))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn in_hook_of(relation: Option<(&str, &str)>) -> ProcessTools {
        ProcessTools {
            timeout: HOOK_TOOL_TIMEOUT,
            current: relation.map(|(e, id)| (e.to_string(), id.to_string())),
            ahead: Vec::new(),
        }
    }

    #[test]
    fn the_peer_relation_of_a_peer_relation_hook_comes_from_the_environment() {
        let tools = in_hook_of(Some(("fleet", "fleet:3")));
        assert_eq!(
            tools.peer_relation_of_this_hook(Endpoint::Fleet),
            Some("fleet:3".to_string())
        );
        // Not a peer endpoint: cos-agent may have several relations; relation-ids is asked.
        assert_eq!(tools.peer_relation_of_this_hook(Endpoint::CosAgent), None);
        let cos = in_hook_of(Some(("cos-agent", "cos-agent:4")));
        assert_eq!(cos.peer_relation_of_this_hook(Endpoint::CosAgent), None);
        assert_eq!(cos.peer_relation_of_this_hook(Endpoint::Fleet), None);
        // Not a relation hook, or an id that is not the endpoint's: asked.
        assert_eq!(
            in_hook_of(None).peer_relation_of_this_hook(Endpoint::Fleet),
            None
        );
        for odd in ["cos-agent:1", "fleet", "fleet:", "fleet:x", "fleetx:1"] {
            let tools = in_hook_of(Some(("fleet", odd)));
            assert_eq!(
                tools.peer_relation_of_this_hook(Endpoint::Fleet),
                None,
                "{odd}"
            );
        }
    }
}
