//! The charm's configuration, parsed from `config-get --format=json` into types. An invalid
//! value is an operator mistake: it becomes a `blocked` status that quotes the value as
//! typed and says why, never a hook error.

use std::fmt;

use serde_json::{Map, Value};

use crate::metadata::{DEFAULT_CHANNEL, DEFAULT_PORT, OPTION_CHANNEL, OPTION_PORT};
use crate::snap::{Channel, ChannelError};
use crate::text::quoted;
use crate::workload::Port;

/// Longest piece of a bad config value quoted back in a status message.
const QUOTE_MAX: usize = 48;

/// Valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The channel microsample tracks, as the operator typed it.
    pub(crate) channel: Channel,
    /// The port microsample listens on.
    pub(crate) port: Port,
}

/// The first invalid option.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigError {
    /// `channel` is not a string in snapd's channel grammar.
    Channel {
        /// The value, quoted as typed.
        shown: String,
        /// Why not (the channel parser's reason; for another JSON type, its type).
        reason: String,
    },
    /// `port` is not an integer in 1024-65535.
    Port {
        /// The value, quoted as typed.
        shown: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Channel { shown, reason } => {
                write!(f, "Invalid channel configured: {shown}: {reason}")
            }
            ConfigError::Port { shown } => write!(
                f,
                "Invalid port configured: {shown} (must be {}-{})",
                Port::MIN,
                Port::MAX
            ),
        }
    }
}

/// A config value as the operator typed it: a string as is, anything else as JSON.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => quoted(s, QUOTE_MAX),
        other => quoted(&other.to_string(), QUOTE_MAX),
    }
}

fn json_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

impl Config {
    /// The channel, as the operator typed it.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The port number.
    pub fn port(&self) -> u16 {
        self.port.get()
    }

    /// Reads the options this charm has from `config-get --format=json` output. Options
    /// without a value take their charmcraft.yaml default; unknown keys are ignored.
    pub fn from_settings(settings: &Map<String, Value>) -> Result<Config, ConfigError> {
        let channel = match settings.get(OPTION_CHANNEL) {
            None | Some(Value::Null) => Channel::parse(DEFAULT_CHANNEL),
            Some(Value::String(s)) => Channel::parse(s),
            Some(other) => {
                return Err(ConfigError::Channel {
                    shown: shown(other),
                    reason: format!("a channel is a string, not {}", json_type(other)),
                })
            }
        }
        .map_err(|e: ChannelError| ConfigError::Channel {
            shown: settings.get(OPTION_CHANNEL).map(shown).unwrap_or_default(),
            reason: e.to_string(),
        })?;
        let port = match settings.get(OPTION_PORT) {
            None | Some(Value::Null) => Port::new(DEFAULT_PORT),
            Some(value) => value.as_i64().and_then(Port::new),
        }
        .ok_or_else(|| ConfigError::Port {
            shown: settings.get(OPTION_PORT).map(shown).unwrap_or_default(),
        })?;
        Ok(Config { channel, port })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn settings(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn error(v: Value) -> String {
        Config::from_settings(&settings(v)).unwrap_err().to_string()
    }

    #[test]
    fn defaults_come_from_charmcraft_yaml() {
        let config = Config::from_settings(&Map::new()).unwrap();
        assert_eq!(config.channel.as_str(), "edge");
        assert_eq!(config.port.get(), 8080);
    }

    #[test]
    fn valid_values_and_unknown_keys() {
        let config = Config::from_settings(&settings(
            json!({"channel": "latest/beta", "port": 8081, "other": true}),
        ))
        .unwrap();
        assert_eq!(config.channel.full(), "latest/beta");
        assert_eq!(config.port.get(), 8081);
    }

    #[test]
    fn invalid_channels_quote_the_value_as_typed_and_say_why() {
        for (value, message) in [
            (
                json!("x/y/z/w"),
                "Invalid channel configured: 'x/y/z/w': channel name has too many components",
            ),
            (
                json!(""),
                "Invalid channel configured: '': channel name cannot be empty",
            ),
            (
                json!(" edge"),
                "Invalid channel configured: ' edge': invalid character in channel name",
            ),
            (
                json!("edge\n"),
                "Invalid channel configured: 'edge\\n': invalid character in channel name",
            ),
            (
                json!(5),
                "Invalid channel configured: '5': a channel is a string, not a number",
            ),
            (
                json!("1.0/cand"),
                "Invalid channel configured: '1.0/cand': invalid risk in channel name",
            ),
        ] {
            assert_eq!(error(json!({ "channel": value })), message);
        }
        let long = error(json!({"channel": "x".repeat(100_000)}));
        assert!(long.chars().count() < 120, "{long}");
        assert!(long.ends_with(": channel name is too long"), "{long}");
    }

    #[test]
    fn invalid_ports() {
        for (value, shown) in [
            (json!(80), "'80'"),
            (json!(0), "'0'"),
            (json!(65536), "'65536'"),
            (json!(-1), "'-1'"),
            (json!("abc"), "'abc'"),
            (json!("8080"), "'8080'"),
            (json!(8080.5), "'8080.5'"),
            (json!(true), "'true'"),
        ] {
            assert_eq!(
                error(json!({ "port": value })),
                format!("Invalid port configured: {shown} (must be 1024-65535)")
            );
        }
    }
}
