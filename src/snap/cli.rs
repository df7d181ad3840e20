//! Running the `snap` CLI, which is how the charm changes what is installed: the CLI waits
//! for snapd's change to finish and prints snapd's own error text.
//!
//! Commands are typed ([`SnapCommand`]) and become argument vectors (a channel never
//! reaches a shell), each with a deadline. A failure is classified by the snapd error kind
//! behind it, recognised from every message family the CLI prints for that kind
//! (docs/snapd-api.md#cli-errors). Exit code 10 (a conflicting change, or snapd still seeding)
//! is retried with backoff.

use std::fmt;
use std::thread;
use std::time::Duration;

use super::{Channel, SNAP_NAME};
use crate::deadline::Deadline;
use crate::process::{self, RunError};
use crate::workload::Port;

/// Downloads can be slow; this only stops a wedged `snap` from hanging the hook forever.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Environment variable overriding [`DEFAULT_TIMEOUT`], in seconds (for slow mirrors, and
/// for tests of the bound).
pub(crate) const TIMEOUT_ENV: &str = "MICROSAMPLE_SNAP_TIMEOUT";
/// Waits before each retry of a command that exited 10.
const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// The `snap` exit code for a retryable error (docs/snapd-api.md#cli-exit-codes).
const EXIT_RETRYABLE: i32 = 10;
/// EX_USAGE: the command line was wrong, which is a bug in the charm.
const EXIT_USAGE: i32 = 64;

/// What the charm asks of `snap`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapCommand {
    /// `snap install microsample --channel=<full channel> [--cohort=<key>]`.
    Install(Channel, Option<String>),
    /// `snap refresh microsample --channel=<full channel> [--cohort=<key>]`.
    Refresh(Channel, Option<String>),
    /// `snap remove microsample`.
    Remove,
    /// `snap set microsample port=<port>`.
    SetPort(Port),
    /// `snap start --enable microsample`: starts the service and enables it at boot.
    Start,
    /// `snap restart microsample`.
    Restart,
}

impl SnapCommand {
    /// The verb, as `snap` spells it.
    pub(crate) fn verb(&self) -> &'static str {
        match self {
            SnapCommand::Install(..) => "install",
            SnapCommand::Refresh(..) => "refresh",
            SnapCommand::Remove => "remove",
            SnapCommand::SetPort(_) => "set",
            SnapCommand::Start => "start",
            SnapCommand::Restart => "restart",
        }
    }

    /// The argument vector. Channels go fully qualified (`latest/edge`), the form snapd
    /// reports back as `tracking-channel`: a bare risk would be resolved against the track
    /// the snap already tracks (docs/snapd-api.md#channel-resolve).
    pub(crate) fn args(&self) -> Vec<String> {
        let verb = self.verb().to_string();
        match self {
            SnapCommand::Install(channel, cohort) | SnapCommand::Refresh(channel, cohort) => {
                let mut args = vec![
                    verb,
                    SNAP_NAME.into(),
                    format!("--channel={}", channel.full()),
                ];
                args.extend(cohort.iter().map(|key| format!("--cohort={key}")));
                args
            }
            SnapCommand::SetPort(port) => vec![verb, SNAP_NAME.into(), format!("port={port}")],
            SnapCommand::Start => vec![verb, "--enable".into(), SNAP_NAME.into()],
            SnapCommand::Remove | SnapCommand::Restart => vec![verb, SNAP_NAME.into()],
        }
    }
}

impl fmt::Display for SnapCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "snap {}", self.args().join(" "))
    }
}

/// Why a `snap` command did not succeed, by snapd error kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SnapCliError {
    /// `snap-channel-not-available` / `snap-architecture-not-available`: the store has no
    /// revision on that channel, branch or track (for this architecture).
    ChannelNotAvailable(String),
    /// `snap-not-found`: the store does not know the snap.
    SnapNotFound(String),
    /// `snap-local`: the snap was installed from a file; the store cannot refresh it.
    LocalSnap(String),
    /// snapd was busy (another change, or still seeding) on every try: exit 10.
    Busy(String),
    /// Exit 64: snap rejected the command line.
    Usage(String),
    /// Any other failure: store unreachable, snapd down, a failed change...
    Failed {
        /// The exit code, `None` when killed by a signal.
        code: Option<i32>,
        /// What `snap` printed.
        detail: String,
    },
    /// `snap` could not be started, or was killed at the deadline.
    NotRun(String),
}

impl fmt::Display for SnapCliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapCliError::ChannelNotAvailable(detail)
            | SnapCliError::SnapNotFound(detail)
            | SnapCliError::LocalSnap(detail)
            | SnapCliError::Usage(detail) => f.write_str(detail),
            SnapCliError::Busy(detail) => write!(f, "snapd busy: {detail}"),
            // Exit 1 is snap's ordinary failure: its message says it all.
            SnapCliError::Failed {
                code: Some(1),
                detail,
            } => f.write_str(detail),
            SnapCliError::Failed {
                code: Some(code),
                detail,
            } => write!(f, "{detail} (exit {code})"),
            SnapCliError::Failed { code: None, detail } => {
                write!(f, "{detail} (killed by a signal)")
            }
            SnapCliError::NotRun(detail) => write!(f, "snap: {detail}"),
        }
    }
}

/// The starts of every message `snap` prints for `snap-channel-not-available` and
/// `snap-architecture-not-available` (docs/snapd-api.md#cli-errors), after the snap name.
const CHANNEL_NOT_AVAILABLE: &[&str] = &[
    // The risk has no revision; other risks, tracks or architectures do.
    " is not available on ",
    // `<track>/<risk>/<branch>` where the branch does not exist.
    "requested a non-existing branch ",
    // The store's channel did not parse.
    "requested channel ",
    // Without the store's release list.
    " not available on channel ",
    " not available as specified ",
];

/// Reads the error `snap` printed (`error: <message>`, wrapped over lines by the CLI) and
/// its exit code.
pub(crate) fn classify(code: Option<i32>, stderr: &str) -> SnapCliError {
    let detail = stderr
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let detail = detail
        .strip_prefix("error: ")
        .unwrap_or(&detail)
        .to_string();
    let quoted = format!("snap \"{SNAP_NAME}\"");
    match code {
        Some(EXIT_RETRYABLE) => SnapCliError::Busy(detail),
        Some(EXIT_USAGE) => SnapCliError::Usage(detail),
        _ if CHANNEL_NOT_AVAILABLE.iter().any(|m| detail.contains(m)) => {
            SnapCliError::ChannelNotAvailable(detail)
        }
        _ if detail == format!("{quoted} not found") => SnapCliError::SnapNotFound(detail),
        _ if detail.starts_with(&format!("local {quoted} is unknown to the store")) => {
            SnapCliError::LocalSnap(detail)
        }
        _ => SnapCliError::Failed { code, detail },
    }
}

/// The key in `snap create-cohort`'s YAML (`cohorts:` / `<snap>:` / `cohort-key: <key>`).
fn cohort_key(yaml: &str) -> Option<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("cohort-key:"))
        .map(|v| v.trim().trim_matches(['"', '\'']).to_string())
        .find(|key| !key.is_empty() && key.bytes().all(|b| b.is_ascii_graphic()))
}

/// The `snap` command on `PATH`.
pub(crate) struct SnapCli {
    timeout: Duration,
    retry_delays: Vec<Duration>,
}

impl Default for SnapCli {
    fn default() -> Self {
        let timeout = std::env::var(TIMEOUT_ENV)
            .ok()
            .and_then(|s| s.parse().ok())
            .filter(|s| *s > 0)
            .map_or(DEFAULT_TIMEOUT, Duration::from_secs);
        SnapCli {
            timeout,
            retry_delays: RETRY_DELAYS.to_vec(),
        }
    }
}

impl SnapCli {
    /// `snap create-cohort microsample`: a cohort key that makes every machine using it
    /// see the same revision of each channel (docs/snapd-api.md#cohorts).
    pub(crate) fn create_cohort(&self) -> Result<String, SnapCliError> {
        let command = ["create-cohort", SNAP_NAME];
        let done = process::run("snap", &command, None, Deadline::after(self.timeout))
            .map_err(|e| SnapCliError::NotRun(format!("`snap create-cohort {SNAP_NAME}` {e}")))?;
        if !done.status.success() {
            return Err(classify(
                done.status.code(),
                &String::from_utf8_lossy(&done.stderr),
            ));
        }
        cohort_key(&String::from_utf8_lossy(&done.stdout)).ok_or_else(|| SnapCliError::Failed {
            code: done.status.code(),
            detail: format!(
                "snap create-cohort printed no cohort key: {}",
                crate::text::bounded(&String::from_utf8_lossy(&done.stdout), 100)
            ),
        })
    }

    /// Runs `command`; exit 10 is retried after each of the retry delays. The whole run,
    /// retries included, ends by one deadline.
    pub(crate) fn run(&self, command: &SnapCommand) -> Result<(), SnapCliError> {
        let args = command.args();
        let deadline = Deadline::after(self.timeout);
        let mut delays = self.retry_delays.iter();
        loop {
            let done = process::run("snap", &args, None, deadline).map_err(|e| match e {
                RunError::Spawn(e) => SnapCliError::NotRun(format!("cannot run `snap`: {e}")),
                RunError::TimedOut => SnapCliError::NotRun(format!(
                    "`{command}` killed after {}s without finishing",
                    self.timeout.as_secs()
                )),
            })?;
            if done.status.success() {
                return Ok(());
            }
            let error = classify(done.status.code(), &String::from_utf8_lossy(&done.stderr));
            match (&error, delays.next()) {
                (SnapCliError::Busy(detail), Some(delay)) if deadline.remaining() > *delay => {
                    log::warn!("{command}: {detail}; retrying in {}s", delay.as_secs());
                    thread::sleep(*delay);
                }
                _ => return Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argument_vectors_carry_fully_qualified_channels() {
        let edge = Channel::parse("edge").unwrap();
        assert_eq!(
            SnapCommand::Install(edge.clone(), None).args(),
            ["install", "microsample", "--channel=latest/edge"]
        );
        assert_eq!(
            SnapCommand::Refresh(Channel::parse("1.0/beta/hotfix").unwrap(), None).args(),
            ["refresh", "microsample", "--channel=1.0/beta/hotfix"]
        );
        assert_eq!(
            SnapCommand::Refresh(edge, Some("MSBxyz".into())).args(),
            [
                "refresh",
                "microsample",
                "--channel=latest/edge",
                "--cohort=MSBxyz"
            ]
        );
        assert_eq!(
            SnapCommand::SetPort(Port::new(8081).unwrap()).args(),
            ["set", "microsample", "port=8081"]
        );
        assert_eq!(
            SnapCommand::Start.args(),
            ["start", "--enable", "microsample"]
        );
        assert_eq!(SnapCommand::Restart.to_string(), "snap restart microsample");
        assert_eq!(SnapCommand::Remove.args(), ["remove", "microsample"]);
    }

    #[test]
    fn every_channel_not_available_family_needs_the_operator() {
        for stderr in [
            "error: snap \"microsample\" is not available on candidate but is available to install on the\n       following channels:\n\n       beta       snap install --beta microsample\n",
            "error: requested a non-existing branch on latest/edge for snap \"microsample\":\n       nonexistent\n",
            "error: requested a non-existing branch for snap \"microsample\": latest/beta/edge\n",
            "error: snap \"microsample\" is not available on 9.9/stable but is available to install on the\n       following tracks:\n",
            "error: snap \"microsample\" is not available on 9.9/stable but other tracks exist.\n",
            "error: snap \"microsample\" is not available on stable for this architecture (arm64) but\n       exists on other architectures (amd64).\n",
            "error: snap \"microsample\" is not available on this architecture (arm64) but exists on\n       other architectures (amd64).\n",
            "error: requested channel \"x\" is not valid (see 'snap info microsample' for valid ones)\n",
            "error: snap \"microsample\" not available on channel \"latest/edge/x\" (see 'snap info\n       microsample')\n",
            "error: snap \"microsample\" not available as specified (see 'snap info microsample')\n",
        ] {
            let error = classify(Some(1), stderr);
            assert!(
                matches!(error, SnapCliError::ChannelNotAvailable(_)),
                "{stderr:?}: {error:?}"
            );
            assert!(!error.to_string().contains('\n'));
        }
    }

    #[test]
    fn reads_the_cohort_key() {
        let yaml = "cohorts:\n  microsample:\n    cohort-key: MSBzn2Dxyz.Abc\n";
        assert_eq!(cohort_key(yaml).as_deref(), Some("MSBzn2Dxyz.Abc"));
        assert_eq!(cohort_key("cohorts:\n"), None);
        assert_eq!(cohort_key("cohort-key: \"\"\n"), None);
    }

    #[test]
    fn other_kinds() {
        assert_eq!(
            classify(Some(1), "error: snap \"microsample\" not found\n"),
            SnapCliError::SnapNotFound("snap \"microsample\" not found".into())
        );
        assert!(matches!(
            classify(
                Some(1),
                "error: local snap \"microsample\" is unknown to the store, use --amend to\n       proceed anyway\n"
            ),
            SnapCliError::LocalSnap(_)
        ));
        let conflict = "error: too early for operation, device not yet seeded or device model not acknowledged\n";
        assert_eq!(
            classify(Some(10), conflict),
            SnapCliError::Busy(
                "too early for operation, device not yet seeded or device model not acknowledged"
                    .into()
            )
        );
        assert!(matches!(
            classify(Some(64), "error: unknown flag `x'"),
            SnapCliError::Usage(_)
        ));
        let offline = "error: cannot install \"microsample\": persistent network error: Post \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp: lookup api.snapcraft.io: no such host\n";
        let failed = classify(Some(1), offline);
        assert!(
            matches!(failed, SnapCliError::Failed { .. }),
            "a retried fault"
        );
        assert_eq!(
            failed.to_string(),
            "cannot install \"microsample\": persistent network error: Post \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp: lookup api.snapcraft.io: no such host"
        );
        // Another snap's name in the message is not this snap's.
        assert!(matches!(
            classify(Some(1), "error: snap \"other\" not found\n"),
            SnapCliError::Failed { .. }
        ));
    }
}
