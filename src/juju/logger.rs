//! The `log` backend: records go to `juju-log` inside a hook, so they land in
//! `juju debug-log` (DEBUG records go to stdout, which the agent logs at DEBUG); run by hand (no `JUJU_CONTEXT_ID`) they go to syslog, or to stderr when
//! there is no syslog socket. A logging failure never fails a hook.

use std::io::Write;
use std::sync::Mutex;
use std::time::Duration;

use log::{Level, LevelFilter, Log, Metadata, Record};

use crate::deadline::Deadline;
use crate::process;

enum Backend {
    JujuLog,
    Syslog(Mutex<syslog::Logger<syslog::LoggerBackend, syslog::Formatter3164>>),
    Stderr,
}

/// A `log::Log` that writes where the process runs: see the module docs.
pub(crate) struct Logger {
    backend: Backend,
}

const JUJU_LOG_TIMEOUT: Duration = Duration::from_secs(30);

impl Logger {
    /// Picks the backend from the environment: hook tools are usable only where Juju set
    /// `JUJU_CONTEXT_ID`.
    pub(crate) fn from_env() -> Logger {
        let backend = if std::env::var_os("JUJU_CONTEXT_ID").is_some() {
            Backend::JujuLog
        } else {
            let formatter = syslog::Formatter3164 {
                facility: syslog::Facility::LOG_USER,
                hostname: None,
                process: crate::metadata::CHARM_NAME.to_string() + "-charm",
                pid: std::process::id(),
            };
            match syslog::unix(formatter) {
                Ok(logger) => Backend::Syslog(Mutex::new(logger)),
                Err(_) => Backend::Stderr,
            }
        };
        Logger { backend }
    }

    /// Installs this logger as the `log` crate's global logger (once per process).
    pub(crate) fn install(self) {
        if log::set_boxed_logger(Box::new(self)).is_ok() {
            log::set_max_level(LevelFilter::Debug);
        }
    }
}

/// Juju's level names (juju/loggo).
fn juju_level(level: Level) -> &'static str {
    match level {
        Level::Error => "ERROR",
        Level::Warn => "WARNING",
        Level::Info => "INFO",
        Level::Debug => "DEBUG",
        Level::Trace => "TRACE",
    }
}

fn to_stderr(level: Level, message: &str) {
    let _ = writeln!(std::io::stderr(), "{}: {message}", juju_level(level));
}

/// Records from other crates (hyper, ureq, ...) get through only at WARN and above: each
/// `juju-log` call is a process, and their debug chatter is not the operator's business.
fn wanted(metadata: &Metadata) -> bool {
    let ours = metadata.target().starts_with(env!("CARGO_CRATE_NAME"));
    metadata.level()
        <= if ours {
            log::max_level()
        } else {
            LevelFilter::Warn
        }
}

impl Log for Logger {
    fn enabled(&self, metadata: &Metadata) -> bool {
        wanted(metadata)
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let message = record.args().to_string();
        let level = record.level();
        match &self.backend {
            // The unit agent logs a hook's stdout at DEBUG (docs/juju.md#dispatch): the same
            // place in `juju debug-log`, without a `juju-log` process per line.
            Backend::JujuLog if level >= Level::Debug => {
                let _ = writeln!(std::io::stdout(), "{message}");
            }
            Backend::JujuLog => {
                let args = ["--log-level", juju_level(level), "--", &message];
                let deadline = Deadline::after(JUJU_LOG_TIMEOUT);
                let ok = process::run("juju-log", &args, None, deadline)
                    .map(|done| done.status.success())
                    .unwrap_or(false);
                if !ok {
                    // Juju records a hook's stderr at WARNING, so the line is not lost.
                    to_stderr(level, &message);
                }
            }
            Backend::Syslog(logger) => {
                let Ok(mut logger) = logger.lock() else {
                    return to_stderr(level, &message);
                };
                let sent = match level {
                    Level::Error => logger.err(&message),
                    Level::Warn => logger.warning(&message),
                    Level::Info => logger.info(&message),
                    Level::Debug | Level::Trace => logger.debug(&message),
                };
                if sent.is_err() {
                    to_stderr(level, &message);
                }
            }
            Backend::Stderr => to_stderr(level, &message),
        }
    }

    fn flush(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(target: &str, level: Level) -> Metadata<'_> {
        Metadata::builder().target(target).level(level).build()
    }

    #[test]
    fn other_crates_debug_chatter_is_dropped() {
        log::set_max_level(LevelFilter::Debug);
        assert!(wanted(&metadata("microsample_charm::charm", Level::Debug)));
        assert!(!wanted(&metadata(
            "hyper_util::client::legacy::pool",
            Level::Debug
        )));
        assert!(!wanted(&metadata(
            "ureq::unversioned::transport",
            Level::Info
        )));
        assert!(wanted(&metadata("ureq::agent", Level::Warn)));
    }
}
