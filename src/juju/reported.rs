//! Remembers what this unit last reported to Juju (its workload status and version) so a
//! hook that changes nothing makes no redundant `status-set` or `application-version-set`
//! call. Both take effect at once and survive a failed hook, so the memory is written
//! through, right after each call succeeds, into a small file in the charm directory (where
//! ops keeps its unit state too; it survives `juju refresh`).
//!
//! The Juju agent also sets the workload status itself before `stop` and `remove`
//! (juju-contract.md §1.6): [`Reported::forget`] is called there, so those hooks and the
//! ones after them report afresh.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::tools::{HookTools, Status, ToolError};

/// The file, relative to the charm directory (the hook's working directory).
pub const FILE: &str = ".microsample-reported.json";

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Memory {
    status: Option<(String, String)>,
    version: Option<String>,
}

/// Hook tools that skip reporting what Juju already shows; every other call goes through.
pub struct Reported<T: HookTools> {
    tools: T,
    path: PathBuf,
    memory: Memory,
}

impl<T: HookTools> Reported<T> {
    /// Wraps `tools`, with the memory kept at `path` (an unreadable file is no memory).
    pub fn new(tools: T, path: impl Into<PathBuf>) -> Reported<T> {
        let path = path.into();
        let memory = fs::read(&path)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .unwrap_or_default();
        Reported {
            tools,
            path,
            memory,
        }
    }

    /// Drops the memory: the next status and version are reported whatever they are.
    pub fn forget(&mut self) {
        self.memory = Memory::default();
        if let Err(e) = fs::remove_file(&self.path) {
            if e.kind() != std::io::ErrorKind::NotFound {
                log::warn!("cannot remove {}: {e}", self.path.display());
            }
        }
    }

    fn remember(&self) {
        // Written atomically; if it cannot be written, the next hook reports again, which
        // is only a redundant call.
        let tmp = self.path.with_extension("tmp");
        let saved = serde_json::to_vec(&self.memory)
            .map_err(std::io::Error::other)
            .and_then(|bytes| fs::write(&tmp, bytes))
            .and_then(|()| fs::rename(&tmp, &self.path));
        if let Err(e) = saved {
            log::warn!("cannot write {}: {e}", self.path.display());
            let _ = fs::remove_file(&self.path);
        }
    }
}

fn key(status: &Status) -> (String, String) {
    (status.kind.as_str().to_string(), status.message.clone())
}

impl<T: HookTools> HookTools for Reported<T> {
    fn status_set(&mut self, status: &Status) -> Result<(), ToolError> {
        if self.memory.status.as_ref() == Some(&key(status)) {
            return Ok(());
        }
        // Forgotten first: if the call fails half-way, Juju may show either status.
        self.memory.status = None;
        self.tools.status_set(status)?;
        self.memory.status = Some(key(status));
        self.remember();
        Ok(())
    }

    fn application_version_set(&mut self, version: &str) -> Result<(), ToolError> {
        if self.memory.version.as_deref() == Some(version) {
            return Ok(());
        }
        self.memory.version = None;
        self.tools.application_version_set(version)?;
        self.memory.version = Some(version.to_string());
        self.remember();
        Ok(())
    }

    fn config_get(&mut self) -> Result<Map<String, Value>, ToolError> {
        self.tools.config_get()
    }
    fn opened_ports(&mut self) -> Result<Vec<String>, ToolError> {
        self.tools.opened_ports()
    }
    fn open_port(&mut self, port: &str) -> Result<(), ToolError> {
        self.tools.open_port(port)
    }
    fn close_port(&mut self, port: &str) -> Result<(), ToolError> {
        self.tools.close_port(port)
    }
    fn action_set(&mut self, results: &[(String, String)]) -> Result<(), ToolError> {
        self.tools.action_set(results)
    }
    fn action_fail(&mut self, message: &str) -> Result<(), ToolError> {
        self.tools.action_fail(message)
    }
    fn relation_ids(&mut self, endpoint: &str) -> Result<Vec<String>, ToolError> {
        self.tools.relation_ids(endpoint)
    }
    fn relation_set(
        &mut self,
        relation_id: &str,
        settings: &Map<String, Value>,
    ) -> Result<(), ToolError> {
        self.tools.relation_set(relation_id, settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the reporting calls that reach Juju; `fail` makes the next one fail.
    #[derive(Default)]
    struct Counting {
        status_sets: usize,
        version_sets: usize,
        fail: bool,
    }

    impl Counting {
        fn check(&mut self) -> Result<(), ToolError> {
            if std::mem::take(&mut self.fail) {
                return Err(ToolError {
                    tool: "status-set".into(),
                    detail: "ERROR connection is shut down".into(),
                });
            }
            Ok(())
        }
    }

    impl HookTools for Counting {
        fn config_get(&mut self) -> Result<Map<String, Value>, ToolError> {
            Ok(Map::new())
        }
        fn status_set(&mut self, _: &Status) -> Result<(), ToolError> {
            self.check()?;
            self.status_sets += 1;
            Ok(())
        }
        fn application_version_set(&mut self, _: &str) -> Result<(), ToolError> {
            self.check()?;
            self.version_sets += 1;
            Ok(())
        }
        fn opened_ports(&mut self) -> Result<Vec<String>, ToolError> {
            Ok(Vec::new())
        }
        fn open_port(&mut self, _: &str) -> Result<(), ToolError> {
            Ok(())
        }
        fn close_port(&mut self, _: &str) -> Result<(), ToolError> {
            Ok(())
        }
        fn action_set(&mut self, _: &[(String, String)]) -> Result<(), ToolError> {
            Ok(())
        }
        fn action_fail(&mut self, _: &str) -> Result<(), ToolError> {
            Ok(())
        }
        fn relation_ids(&mut self, _: &str) -> Result<Vec<String>, ToolError> {
            Ok(Vec::new())
        }
        fn relation_set(&mut self, _: &str, _: &Map<String, Value>) -> Result<(), ToolError> {
            Ok(())
        }
    }

    #[test]
    fn repeats_are_skipped_across_processes_and_changes_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let ready = Status::active("Ready at 'edge'");

        let mut first = Reported::new(Counting::default(), &path);
        first.status_set(&ready).unwrap();
        first.application_version_set("1.0").unwrap();
        first.status_set(&ready).unwrap();
        assert_eq!((first.tools.status_sets, first.tools.version_sets), (1, 1));

        // The next hook is another process: it reads the memory back.
        let mut next = Reported::new(Counting::default(), &path);
        next.status_set(&ready).unwrap();
        next.application_version_set("1.0").unwrap();
        assert_eq!((next.tools.status_sets, next.tools.version_sets), (0, 0));
        next.status_set(&Status::blocked("Invalid port configured: '1'"))
            .unwrap();
        next.application_version_set("1.1").unwrap();
        next.status_set(&ready).unwrap();
        assert_eq!((next.tools.status_sets, next.tools.version_sets), (2, 1));
    }

    #[test]
    fn a_failed_call_is_not_remembered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let ready = Status::active("Ready at 'edge'");
        let mut tools = Reported::new(Counting::default(), &path);
        tools
            .status_set(&Status::maintenance("Installing microsample snap"))
            .unwrap();
        tools.tools.fail = true;
        assert!(tools.status_set(&ready).is_err());
        let mut retry = Reported::new(Counting::default(), &path);
        retry.status_set(&ready).unwrap();
        assert_eq!(
            retry.tools.status_sets, 1,
            "reported again after the failure"
        );
    }

    #[test]
    fn forgetting_and_a_corrupt_file_mean_report_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let ready = Status::active("Ready at 'edge'");
        let mut tools = Reported::new(Counting::default(), &path);
        tools.status_set(&ready).unwrap();
        tools.forget();
        assert!(!path.exists());
        tools.status_set(&ready).unwrap();
        assert_eq!(tools.tools.status_sets, 2);

        std::fs::write(&path, b"{not json").unwrap();
        let mut corrupt = Reported::new(Counting::default(), &path);
        corrupt.status_set(&ready).unwrap();
        assert_eq!(corrupt.tools.status_sets, 1);
    }
}
