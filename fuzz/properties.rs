//! Property checks shared by the fuzz targets (`fuzz/fuzz_targets/*.rs`) and the stable
//! corpus replay test (`tests/fuzz_corpus.rs`); both include this file with `#[path]`, so
//! the library never depends on the fuzz crate.
//!
//! Each check takes the raw fuzz input and returns `Err(description)` when a property does
//! not hold. A panic inside the library is a finding too: the fuzzer reports it as a crash.
//!
//! The findings these checks made (fuzz/README.md) are fixed; their reproducers in
//! `fuzz/regressions/` are replayed by `tests/fuzz_corpus.rs` so they stay fixed.

#![allow(dead_code)]

use microsample_charm::bounded;
use microsample_charm::Config;
use microsample_charm::RISKS;
use microsample_charm::{decode, decode_snap};
use microsample_charm::{Channel, ChannelError, SnapdError};
use serde_json::{Map, Value};

/// The fuzz targets, by name (also the names of the `fuzz/corpus/<target>` directories).
pub const TARGETS: [&str; 3] = ["channel", "snapd_response", "config"];

/// Runs the property check of `target` on one input.
pub fn check(target: &str, data: &[u8]) -> Result<(), String> {
    match target {
        "channel" => channel(data),
        "snapd_response" => snapd_response(data),
        "config" => config(data),
        other => Err(format!("unknown fuzz target {other:?}")),
    }
}

macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Characters a shell gives a meaning to; none may reach `snap --channel=`.
const SHELL_META: &str = " \t\n\r;&|$`'\"\\<>(){}[]*?!~#=%^,:@+";

/// Longest channel `Channel::parse` accepts (src/snap/channel.rs `MAX_LEN`).
const CHANNEL_MAX_LEN: usize = 128;

/// Channels a snap may be tracking, to check `is_tracked_by` against any text.
const TRACKED: [&str; 6] = [
    "edge",
    "latest/stable",
    "1.0",
    "1.0/beta/hotfix",
    "candidate/fix-1",
    "22/edge",
];

// ---------------------------------------------------------------------------------------
// channel: `Channel::parse`, `full`, `is_tracked_by`.

pub fn channel(data: &[u8]) -> Result<(), String> {
    let Ok(text) = std::str::from_utf8(data) else {
        return Ok(());
    };
    let parsed = Channel::parse(text);

    // Whatever the text, a channel is tracked by it only if it parses to the same full form.
    for tracked in TRACKED {
        let tracked = Channel::parse(tracked).map_err(|e| format!("{tracked}: {e}"))?;
        if tracked.is_tracked_by(text) {
            ensure!(
                parsed.as_ref().is_ok_and(|c| c.full() == tracked.full()),
                "{:?} is_tracked_by {text:?} but {text:?} parses to {parsed:?}",
                tracked.as_str()
            );
        }
    }

    let channel = match parsed {
        Ok(channel) => channel,
        Err(e) => {
            ensure!(
                !e.to_string().is_empty(),
                "empty error message for {text:?}"
            );
            ensure!(
                !text.is_empty() || e == ChannelError::Empty,
                "empty text gives {e:?}"
            );
            return Ok(());
        }
    };
    ensure!(
        channel.as_str() == text && channel.to_string() == text,
        "{text:?} is kept as {:?}",
        channel.as_str()
    );
    ensure!(text.is_ascii(), "accepted channel {text:?} is not ASCII");
    ensure!(
        !text
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || SHELL_META.contains(c)),
        "accepted channel {text:?} has whitespace, a control or a shell metacharacter"
    );
    ensure!(
        !text.starts_with('-'),
        "accepted channel {text:?} looks like an option"
    );

    let full = channel.full();
    let parts: Vec<&str> = full.split('/').collect();
    ensure!(
        (2..=3).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty()),
        "{text:?} has full form {full:?}, not track/risk[/branch]"
    );
    ensure!(
        RISKS.contains(&parts[1]),
        "{text:?} has full form {full:?} whose risk {:?} is not a risk",
        parts[1]
    );
    if text.split('/').count() == 3 {
        ensure!(
            full == text,
            "fully qualified {text:?} has full form {full:?}"
        );
    }
    ensure!(
        channel.is_tracked_by(text),
        "{text:?} is not tracked by itself"
    );

    // Finding F1 (fixed): the full form of every accepted channel parses again.
    match Channel::parse(&full) {
        Ok(again) => ensure!(
            again.full() == full,
            "full form {full:?} of {text:?} re-parses to full form {:?}",
            again.full()
        ),
        Err(e) => {
            return Err(format!(
                "full form {full:?} of {text:?} does not parse: {e}"
            ))
        }
    }
    ensure!(
        channel.is_tracked_by(&full),
        "{text:?} is not tracked by its full form {full:?}"
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------
// snapd_response: `decode` and `decode_snap`. Input: 2 bytes of big-endian HTTP status,
// then the body.

/// The HTTP status and body a fuzz input stands for.
pub fn split_response(data: &[u8]) -> (u16, &[u8]) {
    let status = u16::from_be_bytes([
        data.first().copied().unwrap_or(0),
        data.get(1).copied().unwrap_or(0),
    ]);
    (status, data.get(2..).unwrap_or(&[]))
}

pub fn snapd_response(data: &[u8]) -> Result<(), String> {
    let (status, body) = split_response(data);
    let decoded = decode(status, body);
    let snap = decode_snap(status, body);

    // The body as JSON, and its envelope fields when it is a JSON object. serde_json skips
    // unknown fields without a depth limit but builds a `Value` only 128 levels deep: such a
    // body is valid JSON that this check cannot inspect.
    let json: Option<Value> = match serde_json::from_slice(body) {
        Ok(json) => Some(json),
        Err(e) if e.to_string().starts_with("recursion limit exceeded") => return Ok(()),
        Err(e) => {
            // Finding F4 (fixed): a body that is not JSON never decodes.
            ensure!(
                !(decoded.is_ok() || matches!(decoded, Err(SnapdError::Api { .. }))),
                "decode accepted a body that is not JSON ({e}): {decoded:?}"
            );
            None
        }
    };
    let object = json.as_ref().and_then(Value::as_object);
    let kind = object.and_then(|o| o.get("type")).and_then(Value::as_str);
    let result = object.and_then(|o| o.get("result"));
    let error_kind = result.and_then(|r| r.get("kind")).and_then(Value::as_str);

    // Finding F2 (fixed): only a JSON object is an envelope (serde alone would read a struct
    // from an array), so every accepted answer has an object envelope.

    for e in [decoded.as_ref().err(), snap.as_ref().err()]
        .into_iter()
        .flatten()
    {
        ensure!(!e.to_string().is_empty(), "empty error message for {e:?}");
        match e {
            SnapdError::Protocol(_) => {}
            SnapdError::Api {
                status: s, kind: k, ..
            } => {
                ensure!(*s == status, "HTTP {status} reported as {s}");
                ensure!(k.as_deref() != Some(""), "empty error kind kept");
                ensure!(
                    kind == Some("error"),
                    "Api error {e:?} from a body whose type is {kind:?}"
                );
            }
            other => return Err(format!("a decoder reported {other:?}, not a decode error")),
        }
    }

    if let Ok(value) = &decoded {
        ensure!(
            kind == Some("sync") && (200..300).contains(&status),
            "decode gave Ok for HTTP {status} with type {kind:?}"
        );
        ensure!(
            Some(value) == result || (result.is_none() && value.is_null()),
            "decode gave {value} but the body's result is {result:?}"
        );
    }

    match &snap {
        Ok(Some(snap)) => {
            ensure!(
                decoded.is_ok(),
                "decode_snap gave a snap where decode gave {decoded:?}"
            );
            ensure!(
                kind == Some("sync") && (200..300).contains(&status),
                "decode_snap gave a snap for HTTP {status} with type {kind:?}"
            );
            let result = result
                .and_then(Value::as_object)
                .ok_or_else(|| format!("decode_snap gave {snap:?} from a non-object result"))?;
            let string = |key: &str| result.get(key).and_then(Value::as_str);
            ensure!(
                string("name") == Some(&snap.name),
                "name {:?} is not the body's",
                snap.name
            );
            ensure!(
                string("version") == Some(&snap.version),
                "version {:?} is not the body's",
                snap.version
            );
            let revision = match result.get("revision") {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Number(n)) => Some(n.to_string()),
                _ => None,
            };
            ensure!(
                revision.as_ref() == Some(&snap.revision),
                "revision {:?} is not the body's {revision:?}",
                snap.revision
            );
            ensure!(
                snap.tracking_channel.as_deref() == string("tracking-channel"),
                "tracking-channel {:?} is not the body's",
                snap.tracking_channel
            );
            let apps = result
                .get("apps")
                .and_then(Value::as_array)
                .map_or(0, Vec::len);
            ensure!(
                snap.apps.len() == apps,
                "{} apps decoded from {apps}",
                snap.apps.len()
            );
            let expected_active = snap.apps.iter().all(|a| a.daemon.is_none() || a.active);
            ensure!(
                snap.services_active() == expected_active,
                "services_active() is {} for {:?}",
                snap.services_active(),
                snap.apps
            );
        }
        Ok(None) => {
            ensure!(
                matches!(&decoded, Err(SnapdError::Api { kind: Some(k), .. }) if k == "snap-not-found"),
                "decode_snap says not installed but decode gave {decoded:?}"
            );
            ensure!(
                kind == Some("error") && error_kind == Some("snap-not-found"),
                "decode_snap says not installed for a body of type {kind:?}, kind {error_kind:?}"
            );
        }
        Err(_) => {}
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// config: `Config::from_settings` on any JSON object, plus `text::bounded` on its strings.

/// Longest `InvalidConfig` message allowed (a Juju status line).
const MESSAGE_MAX: usize = 200;

pub fn config(data: &[u8]) -> Result<(), String> {
    let Ok(Value::Object(settings)) = serde_json::from_slice::<Value>(data) else {
        return Ok(());
    };
    match Config::from_settings(&settings) {
        Ok(config) => {
            ensure!(
                (1024..=65535).contains(&config.port()),
                "accepted port {}",
                config.port()
            );
            let again = Channel::parse(config.channel().as_str())
                .map_err(|e| format!("accepted channel {:?}: {e}", config.channel().as_str()))?;
            ensure!(
                &again == config.channel(),
                "channel does not re-parse the same"
            );
            match settings.get("channel") {
                Some(Value::String(s)) => ensure!(
                    s == config.channel().as_str(),
                    "channel {s:?} configured, {:?} used",
                    config.channel().as_str()
                ),
                None | Some(Value::Null) => ensure!(
                    config.channel().as_str() == "edge",
                    "default channel is {:?}",
                    config.channel().as_str()
                ),
                Some(other) => return Err(format!("non-string channel {other} accepted")),
            }
            match settings.get("port") {
                None | Some(Value::Null) => {
                    ensure!(config.port() == 8080, "default port is {}", config.port())
                }
                Some(value) => ensure!(
                    value.as_i64() == Some(i64::from(config.port())),
                    "port {value} configured, {} used",
                    config.port()
                ),
            }
            // Finding F1 (fixed), as the charm meets it: the snap must be seen to track the
            // configured channel.
            let full = config.channel().full();
            ensure!(
                config.channel().is_tracked_by(&full),
                "configured channel {:?} is not tracked by its full form {full:?}",
                config.channel().as_str()
            );
        }
        Err(invalid) => {
            let message = &invalid.to_string();
            ensure!(
                !message.chars().any(char::is_control),
                "error message {message:?} has a control character"
            );
            ensure!(
                message.chars().count() < MESSAGE_MAX,
                "error message is {} chars long",
                message.chars().count()
            );
            ensure!(
                message.starts_with("Invalid channel configured: '")
                    || message.starts_with("Invalid port configured: '"),
                "error message {message:?} names no option"
            );
        }
    }
    bounded_strings(&settings, data.len())
}

/// `text::bounded` on every string in the settings (keys too), with several limits.
fn bounded_strings(settings: &Map<String, Value>, seed: usize) -> Result<(), String> {
    let mut strings: Vec<&str> = Vec::new();
    let mut stack: Vec<&Value> = settings.values().collect();
    strings.extend(settings.keys().map(String::as_str));
    while let Some(value) = stack.pop() {
        match value {
            Value::String(s) => strings.push(s),
            Value::Array(a) => stack.extend(a),
            Value::Object(o) => {
                strings.extend(o.keys().map(String::as_str));
                stack.extend(o.values());
            }
            _ => {}
        }
    }
    for text in strings {
        for max in [seed % 70, 1, 2, 48, 64, 200] {
            check_bounded(text, max)?;
        }
    }
    Ok(())
}

/// The documented contract of `text::bounded`.
pub fn check_bounded(text: &str, max: usize) -> Result<(), String> {
    let out = bounded(text, max);
    let chars = out.chars().count();
    ensure!(
        chars <= max,
        "bounded({text:?}, {max}) = {out:?} has {chars} chars"
    );
    ensure!(
        !out.chars().any(char::is_control),
        "bounded({text:?}, {max}) = {out:?} has a control character"
    );
    ensure!(
        !out.contains("  "),
        "bounded({text:?}, {max}) = {out:?} has a run of spaces"
    );
    ensure!(
        !out.ends_with(char::is_whitespace),
        "bounded({text:?}, {max}) = {out:?} ends in whitespace"
    );
    let clean = text.trim() == text && !text.chars().any(char::is_control) && !text.contains("  ");
    if clean && text.chars().count() <= max {
        ensure!(
            out == text,
            "bounded({text:?}, {max}) changed clean text to {out:?}"
        );
    }
    if text.chars().count() <= max {
        ensure!(
            !out.ends_with('…') || text.contains('…'),
            "bounded({text:?}, {max}) = {out:?} cut short text"
        );
    }
    Ok(())
}
