//! The event Juju started this process for, parsed from `JUJU_DISPATCH_PATH` into types
//! (docs/juju.md#dispatch): hooks, relation hooks on the endpoints charmcraft.yaml declares,
//! and its actions.

use std::ffi::OsStr;
use std::fmt;

use crate::metadata::{Action, Endpoint};

/// What Juju asked for: a hook or an action (`hooks/<name>` or `actions/<name>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dispatch {
    Hook(Hook),
    Action(Action),
    /// An action charmcraft.yaml does not declare (Juju never runs one).
    UnknownAction(String),
}

/// The hooks this charm tells apart; every other hook name is [`Hook::Other`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Hook {
    Install,
    ConfigChanged,
    Start,
    UpgradeCharm,
    UpdateStatus,
    LeaderElected,
    Stop,
    Remove,
    /// `<endpoint>-relation-<kind>` on an endpoint charmcraft.yaml declares.
    Relation {
        endpoint: Endpoint,
        kind: RelationKind,
    },
    /// secret-changed, collect-metrics, ... and names Juju may add later.
    Other(String),
}

/// The relation hook kinds (docs/juju.md#relation-hooks).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RelationKind {
    Created,
    Joined,
    Changed,
    Departed,
    Broken,
}

impl RelationKind {
    fn from_name(name: &str) -> Option<RelationKind> {
        Some(match name {
            "created" => RelationKind::Created,
            "joined" => RelationKind::Joined,
            "changed" => RelationKind::Changed,
            "departed" => RelationKind::Departed,
            "broken" => RelationKind::Broken,
            _ => return None,
        })
    }
}

/// Why `JUJU_DISPATCH_PATH` could not be understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DispatchError {
    Missing,
    Malformed(String),
}

impl fmt::Display for DispatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DispatchError::Missing => write!(
                f,
                "JUJU_DISPATCH_PATH is not set: this binary is a Juju charm's dispatch and is run \
                 by the Juju unit agent with JUJU_DISPATCH_PATH=hooks/<hook> or actions/<action>"
            ),
            DispatchError::Malformed(v) => write!(
                f,
                "JUJU_DISPATCH_PATH={v:?} is not of the form hooks/<hook> or actions/<action>"
            ),
        }
    }
}

impl std::error::Error for DispatchError {}

impl Dispatch {
    /// Parses the value of `JUJU_DISPATCH_PATH` (`None` when it is not set).
    pub(crate) fn parse(value: Option<&OsStr>) -> Result<Dispatch, DispatchError> {
        let raw = value.ok_or(DispatchError::Missing)?;
        let text = raw
            .to_str()
            .ok_or_else(|| DispatchError::Malformed(raw.to_string_lossy().into_owned()))?;
        let malformed = || DispatchError::Malformed(text.to_string());
        let (kind, name) = text.split_once('/').ok_or_else(malformed)?;
        if !is_event_name(name) {
            return Err(malformed());
        }
        match kind {
            "hooks" => Ok(Dispatch::Hook(Hook::from_name(name))),
            "actions" => Ok(Action::from_name(name).map_or_else(
                || Dispatch::UnknownAction(name.to_string()),
                Dispatch::Action,
            )),
            _ => Err(malformed()),
        }
    }
}

impl Hook {
    fn from_name(name: &str) -> Hook {
        match name {
            "install" => Hook::Install,
            "config-changed" => Hook::ConfigChanged,
            "start" => Hook::Start,
            "upgrade-charm" => Hook::UpgradeCharm,
            "update-status" => Hook::UpdateStatus,
            "leader-elected" => Hook::LeaderElected,
            "stop" => Hook::Stop,
            "remove" => Hook::Remove,
            _ => name
                .rsplit_once("-relation-")
                .and_then(|(endpoint, kind)| {
                    Some(Hook::Relation {
                        endpoint: Endpoint::from_name(endpoint)?,
                        kind: RelationKind::from_name(kind)?,
                    })
                })
                .unwrap_or_else(|| Hook::Other(name.to_string())),
        }
    }
}

/// Hook, action and endpoint names are lowercase letters, digits, `-` and `_`.
fn is_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: &str) -> Result<Dispatch, DispatchError> {
        Dispatch::parse(Some(OsStr::new(v)))
    }

    #[test]
    fn handled_hooks() {
        for (path, hook) in [
            ("hooks/install", Hook::Install),
            ("hooks/config-changed", Hook::ConfigChanged),
            ("hooks/start", Hook::Start),
            ("hooks/upgrade-charm", Hook::UpgradeCharm),
            ("hooks/update-status", Hook::UpdateStatus),
            ("hooks/leader-elected", Hook::LeaderElected),
            ("hooks/stop", Hook::Stop),
            ("hooks/remove", Hook::Remove),
        ] {
            assert_eq!(parse(path), Ok(Dispatch::Hook(hook)), "{path}");
        }
    }

    #[test]
    fn relation_and_other_hooks() {
        assert_eq!(
            parse("hooks/cos-agent-relation-joined"),
            Ok(Dispatch::Hook(Hook::Relation {
                endpoint: Endpoint::CosAgent,
                kind: RelationKind::Joined,
            }))
        );
        for name in [
            "other-relation-joined",
            "cos-agent-relation-exploded",
            "secret-changed",
            "collect-metrics",
            "pre-series-upgrade",
            "some-relation-exploded",
        ] {
            assert_eq!(
                parse(&format!("hooks/{name}")),
                Ok(Dispatch::Hook(Hook::Other(name.into())))
            );
        }
    }

    #[test]
    fn actions() {
        assert_eq!(
            parse("actions/restart"),
            Ok(Dispatch::Action(Action::Restart))
        );
        assert_eq!(parse("actions/info"), Ok(Dispatch::Action(Action::Info)));
        assert_eq!(
            parse("actions/reboot"),
            Ok(Dispatch::UnknownAction("reboot".into()))
        );
    }

    #[test]
    fn missing_and_malformed() {
        assert_eq!(Dispatch::parse(None), Err(DispatchError::Missing));
        for bad in [
            "",
            "install",
            "hooks/",
            "hooks/a/b",
            "jobs/install",
            "/hooks/install",
            "hooks/Install",
            "hooks/in stall",
            "hooks/$(reboot)",
        ] {
            assert!(
                matches!(parse(bad), Err(DispatchError::Malformed(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn non_utf8_is_malformed_not_a_panic() {
        use std::os::unix::ffi::OsStrExt;
        let raw = OsStr::from_bytes(b"hooks/\xff");
        assert!(matches!(
            Dispatch::parse(Some(raw)),
            Err(DispatchError::Malformed(_))
        ));
    }
}
