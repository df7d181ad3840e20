//! The charm's configuration, read from `config-get` and validated. An invalid value is an
//! operator mistake: it becomes a `blocked` status naming the value, never a hook error.

use serde_json::{Map, Value};

use crate::metadata::{DEFAULT_CHANNEL, DEFAULT_PORT, OPTION_CHANNEL, OPTION_PORT};
use crate::snap::Channel;
use crate::text::bounded;

/// Ports microsample may be moved to: unprivileged, so never one a system service owns.
pub const PORT_RANGE: std::ops::RangeInclusive<i64> = 1024..=65535;

/// Longest piece of a bad config value quoted back in a status message.
const QUOTE_MAX: usize = 48;

/// Valid configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub channel: Channel,
    pub port: u16,
}

/// The first invalid option, as the `blocked` message to show.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidConfig(pub String);

/// A config value as the operator would have typed it.
fn shown(value: &Value) -> String {
    match value {
        Value::String(s) => bounded(s, QUOTE_MAX),
        other => bounded(&other.to_string(), QUOTE_MAX),
    }
}

impl Config {
    /// Reads the options this charm has from `config-get --format=json` output. Options
    /// without a value take their charmcraft.yaml default; unknown keys are ignored.
    pub fn from_settings(settings: &Map<String, Value>) -> Result<Config, InvalidConfig> {
        let channel = match settings.get(OPTION_CHANNEL) {
            None | Some(Value::Null) => Channel::parse(DEFAULT_CHANNEL).ok(),
            Some(Value::String(s)) => Channel::parse(s).ok(),
            Some(_) => None,
        }
        .ok_or_else(|| {
            let value = settings.get(OPTION_CHANNEL).map(shown).unwrap_or_default();
            InvalidConfig(format!("Invalid channel configured: '{value}'"))
        })?;
        let port = match settings.get(OPTION_PORT) {
            None | Some(Value::Null) => Some(DEFAULT_PORT),
            Some(value) => value.as_i64(),
        }
        .filter(|p| PORT_RANGE.contains(p))
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            let value = settings.get(OPTION_PORT).map(shown).unwrap_or_default();
            InvalidConfig(format!(
                "Invalid port configured: '{value}' (must be {}-{})",
                PORT_RANGE.start(),
                PORT_RANGE.end()
            ))
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

    #[test]
    fn defaults_come_from_charmcraft_yaml() {
        let config = Config::from_settings(&Map::new()).unwrap();
        assert_eq!(config.channel.as_str(), "edge");
        assert_eq!(config.port, 8080);
    }

    #[test]
    fn valid_values_and_unknown_keys() {
        let config = Config::from_settings(&settings(
            json!({"channel": "latest/beta", "port": 8081, "other": true}),
        ))
        .unwrap();
        assert_eq!(config.channel.full(), "latest/beta");
        assert_eq!(config.port, 8081);
    }

    #[test]
    fn invalid_channels_quote_the_value() {
        for (value, message) in [
            (
                json!("foo/bar/baz/qux"),
                "Invalid channel configured: 'foo/bar/baz/qux'",
            ),
            (json!(""), "Invalid channel configured: ''"),
            (json!(5), "Invalid channel configured: '5'"),
            (
                json!("edge\n; reboot"),
                "Invalid channel configured: 'edge ; reboot'",
            ),
        ] {
            let err = Config::from_settings(&settings(json!({ "channel": value }))).unwrap_err();
            assert_eq!(err.0, message);
        }
        let long =
            Config::from_settings(&settings(json!({"channel": "x".repeat(100_000)}))).unwrap_err();
        assert!(long.0.chars().count() < 100, "{}", long.0);
    }

    #[test]
    fn invalid_ports() {
        for value in [
            json!(80),
            json!(0),
            json!(65536),
            json!(-1),
            json!("abc"),
            json!("8080"),
            json!(8080.5),
            json!(true),
        ] {
            let err = Config::from_settings(&settings(json!({ "port": value }))).unwrap_err();
            assert!(
                err.0.starts_with("Invalid port configured: '"),
                "{value}: {}",
                err.0
            );
            assert!(err.0.ends_with("(must be 1024-65535)"), "{}", err.0);
        }
        assert_eq!(
            Config::from_settings(&settings(json!({"port": "abc"})))
                .unwrap_err()
                .0,
            "Invalid port configured: 'abc' (must be 1024-65535)"
        );
    }
}
