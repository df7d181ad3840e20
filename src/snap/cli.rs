//! Running the `snap` CLI, which is how the charm changes what is installed: the CLI waits
//! for snapd's change to finish and prints snapd's own error text.
//!
//! Commands are argument vectors (a channel never reaches a shell), each with a deadline.
//! Exit code 10 (a conflicting change, or snapd still seeding) is retried with backoff.

use std::fmt;
use std::process::Command;
use std::thread;
use std::time::Duration;

use super::{Channel, SNAP_NAME};
use crate::process::{self, RunError};

/// Downloads can be slow; this only stops a wedged `snap` from hanging the hook forever.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);
/// Environment variable overriding [`DEFAULT_TIMEOUT`], in seconds (for slow mirrors, and
/// for tests of the bound).
pub const TIMEOUT_ENV: &str = "MICROSAMPLE_SNAP_TIMEOUT";
/// Waits before each retry of a command that exited 10.
pub const RETRY_DELAYS: [Duration; 2] = [Duration::from_secs(1), Duration::from_secs(3)];

/// The `snap` exit code for a retryable error (`cmd/snapd/cli/main.go`).
const EXIT_RETRYABLE: i32 = 10;
/// EX_USAGE: the command line was wrong, which is a bug in the charm.
const EXIT_USAGE: i32 = 64;

/// Why a `snap` command did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapCliError {
    /// The store has no revision on that channel (for this architecture).
    ChannelNotAvailable { channel: String, detail: String },
    /// The store does not know the snap.
    SnapNotFound(String),
    /// snapd was busy (another change, or still seeding) on every try: exit 10.
    Busy(String),
    /// Exit 64: snap rejected the command line.
    Usage(String),
    /// Any other failure: store unreachable, snapd down, a failed change...
    Failed { code: Option<i32>, detail: String },
    /// `snap` could not be started, or was killed at the deadline.
    NotRun(String),
}

impl fmt::Display for SnapCliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapCliError::ChannelNotAvailable { detail, .. }
            | SnapCliError::SnapNotFound(detail)
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

impl std::error::Error for SnapCliError {}

/// Reads the error `snap` printed (`error: <message>`, possibly wrapped over lines) and
/// its exit code.
pub fn classify(code: Option<i32>, stderr: &str, channel: Option<&Channel>) -> SnapCliError {
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
    match code {
        Some(EXIT_RETRYABLE) => SnapCliError::Busy(detail),
        Some(EXIT_USAGE) => SnapCliError::Usage(detail),
        _ if detail.contains(" is not available on ") => SnapCliError::ChannelNotAvailable {
            channel: channel.map(|c| c.to_string()).unwrap_or_default(),
            detail,
        },
        _ if detail == format!("snap \"{SNAP_NAME}\" not found") => {
            SnapCliError::SnapNotFound(detail)
        }
        _ => SnapCliError::Failed { code, detail },
    }
}

/// The `snap` command on `PATH`.
pub struct SnapCli {
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
    fn run(&self, args: &[&str], channel: Option<&Channel>) -> Result<(), SnapCliError> {
        let mut delays = self.retry_delays.iter();
        loop {
            let done =
                process::run(Command::new("snap").args(args), None, self.timeout).map_err(|e| {
                    match e {
                        RunError::Spawn(e) => {
                            SnapCliError::NotRun(format!("cannot run `snap`: {e}"))
                        }
                        timed_out => {
                            SnapCliError::NotRun(format!("`snap {}` {timed_out}", args.join(" ")))
                        }
                    }
                })?;
            if done.status.success() {
                return Ok(());
            }
            let error = classify(
                done.status.code(),
                &String::from_utf8_lossy(&done.stderr),
                channel,
            );
            match (&error, delays.next()) {
                (SnapCliError::Busy(detail), Some(delay)) => {
                    log::warn!(
                        "snap {}: {detail}; retrying in {}s",
                        args[0],
                        delay.as_secs()
                    );
                    thread::sleep(*delay);
                }
                _ => return Err(error),
            }
        }
    }

    /// `snap install microsample --channel=<channel>`.
    pub fn install(&self, channel: &Channel) -> Result<(), SnapCliError> {
        let flag = format!("--channel={channel}");
        self.run(&["install", SNAP_NAME, &flag], Some(channel))
    }

    /// `snap refresh microsample --channel=<channel>`.
    pub fn refresh(&self, channel: &Channel) -> Result<(), SnapCliError> {
        let flag = format!("--channel={channel}");
        self.run(&["refresh", SNAP_NAME, &flag], Some(channel))
    }

    /// `snap remove microsample`; a snap that is already gone is not an error (exit 0).
    pub fn remove(&self) -> Result<(), SnapCliError> {
        self.run(&["remove", SNAP_NAME], None)
    }

    /// `snap set microsample <key>=<value>`.
    pub fn set(&self, key: &str, value: &str) -> Result<(), SnapCliError> {
        self.run(&["set", SNAP_NAME, &format!("{key}={value}")], None)
    }

    /// `snap start --enable microsample`: starts the services and enables them at boot.
    pub fn start(&self) -> Result<(), SnapCliError> {
        self.run(&["start", "--enable", SNAP_NAME], None)
    }

    /// `snap restart microsample`.
    pub fn restart(&self) -> Result<(), SnapCliError> {
        self.run(&["restart", SNAP_NAME], None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_the_real_error_texts() {
        let candidate = Channel::parse("candidate").unwrap();
        let unavailable = "error: snap \"microsample\" is not available on candidate but is available to install on the\n       following channels:\n\n       beta       snap install --beta microsample\n";
        assert!(matches!(
            classify(Some(1), unavailable, Some(&candidate)),
            SnapCliError::ChannelNotAvailable { channel, .. } if channel == "candidate"
        ));
        assert!(matches!(
            classify(Some(1), "error: snap \"microsample\" not found\n", None),
            SnapCliError::SnapNotFound(_)
        ));
        let conflict = "error: too early for operation, device not yet seeded or device model not acknowledged\n";
        assert_eq!(
            classify(Some(10), conflict, None),
            SnapCliError::Busy(
                "too early for operation, device not yet seeded or device model not acknowledged"
                    .into()
            )
        );
        assert!(matches!(
            classify(Some(64), "error: unknown flag `x'", None),
            SnapCliError::Usage(_)
        ));
        let offline = "error: cannot install \"microsample\": persistent network error: Post \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp: lookup api.snapcraft.io: no such host\n";
        let failed = classify(Some(1), offline, None);
        assert!(
            matches!(failed, SnapCliError::Failed { .. }),
            "a retried fault"
        );
        assert_eq!(
            failed.to_string(),
            "cannot install \"microsample\": persistent network error: Post \"https://api.snapcraft.io/v2/snaps/refresh\": dial tcp: lookup api.snapcraft.io: no such host"
        );
    }
}
