//! snapd's channel grammar, `[<track>/]<risk>[/<branch>]`, as snapd parses it
//! (docs/snapd-api.md#channels: `ParseVerbatim` and `Full`).

use std::fmt;

/// The risk levels, from most to least stable.
pub const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];

/// Longest channel accepted; store track and branch names are short.
const MAX_LEN: usize = 128;

/// A valid channel, as the operator wrote it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channel {
    text: String,
    track: Option<String>,
    risk: Option<String>,
    branch: Option<String>,
}

/// Why a channel string is not a channel (the wording follows snapd's).
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // each variant is its Display text
pub enum ChannelError {
    Empty,
    TooLong,
    TooManyComponents,
    InvalidRisk,
    InvalidTrack,
    InvalidBranch,
    /// A character that no track, risk or branch name may contain (spaces, quotes, `$`, ...).
    InvalidCharacter,
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ChannelError::Empty => "channel name cannot be empty",
            ChannelError::TooLong => "channel name is too long",
            ChannelError::TooManyComponents => "channel name has too many components",
            ChannelError::InvalidRisk => "invalid risk in channel name",
            ChannelError::InvalidTrack => "invalid track in channel name",
            ChannelError::InvalidBranch => "invalid branch in channel name",
            ChannelError::InvalidCharacter => "invalid character in channel name",
        })
    }
}

impl std::error::Error for ChannelError {}

fn is_risk(s: &str) -> bool {
    RISKS.contains(&s)
}

/// Store track and branch names: letters, digits, `.`, `_` and `-`, starting with a letter
/// or digit. Anything else could never match a store channel.
fn is_name(s: &str) -> bool {
    s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Channel {
    /// Parses `text` as snapd does; the reason when it is not a channel.
    pub fn parse(text: &str) -> Result<Channel, ChannelError> {
        if text.is_empty() {
            return Err(ChannelError::Empty);
        }
        if text.len() > MAX_LEN {
            return Err(ChannelError::TooLong);
        }
        let parts: Vec<&str> = text.split('/').collect();
        let (track, risk, branch) = match parts[..] {
            [one] if is_risk(one) => (None, Some(one), None),
            [one] => (Some(one), None, None),
            [first, second] if is_risk(first) => (None, Some(first), Some(second)),
            [first, second] => (Some(first), Some(second), None),
            [track, risk, branch] => (Some(track), Some(risk), Some(branch)),
            _ => return Err(ChannelError::TooManyComponents),
        };
        if risk.is_some_and(|r| !is_risk(r)) {
            return Err(ChannelError::InvalidRisk);
        }
        if track.is_some_and(str::is_empty) {
            return Err(ChannelError::InvalidTrack);
        }
        if branch.is_some_and(str::is_empty) {
            return Err(ChannelError::InvalidBranch);
        }
        if !track.into_iter().chain(branch).all(is_name) {
            return Err(ChannelError::InvalidCharacter);
        }
        let channel = Channel {
            text: text.to_string(),
            track: track.map(str::to_string),
            risk: risk.map(str::to_string),
            branch: branch.map(str::to_string),
        };
        // The fully qualified form is what snapd reports back; it must be a channel too.
        if channel.full().len() > MAX_LEN {
            return Err(ChannelError::TooLong);
        }
        Ok(channel)
    }

    /// The channel as the operator wrote it (what status messages show).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The fully qualified form snapd stores as `tracking-channel`: `edge` is `latest/edge`,
    /// `1.0` is `1.0/stable`.
    pub fn full(&self) -> String {
        let track = self.track.as_deref().unwrap_or("latest");
        let risk = self.risk.as_deref().unwrap_or("stable");
        match &self.branch {
            Some(branch) => format!("{track}/{risk}/{branch}"),
            None => format!("{track}/{risk}"),
        }
    }

    /// Whether snapd's `tracking-channel` value is this channel.
    pub fn is_tracked_by(&self, tracking_channel: &str) -> bool {
        // snapd stores Full(); normalise its value too in case an older snapd did not.
        let tracked = Channel::parse(tracking_channel).map(|c| c.full());
        tracked.as_deref() == Ok(self.full().as_str())
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_channels_and_their_full_form() {
        for (text, full) in [
            ("edge", "latest/edge"),
            ("stable", "latest/stable"),
            ("latest/edge", "latest/edge"),
            ("latest", "latest/stable"),
            ("1.0", "1.0/stable"),
            ("1.0/beta", "1.0/beta"),
            ("1.0/beta/hotfix", "1.0/beta/hotfix"),
            ("edge/fix-1", "latest/edge/fix-1"),
            ("candidate/foo", "latest/candidate/foo"),
            ("22/stable", "22/stable"),
        ] {
            let channel = Channel::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
            assert_eq!(channel.full(), full, "{text}");
            assert_eq!(channel.as_str(), text);
        }
    }

    #[test]
    fn invalid_channels() {
        use ChannelError::*;
        for (text, err) in [
            ("", Empty),
            ("edge/x/y", InvalidRisk),
            ("1.0/cand", InvalidRisk),
            ("fix//hotfix", InvalidRisk),
            ("//stable", InvalidRisk),
            ("/stable", InvalidTrack),
            ("/stable/", InvalidTrack),
            ("stable/", InvalidBranch),
            ("1.0////", TooManyComponents),
            ("a/b/c/d", TooManyComponents),
            (" ", InvalidCharacter),
            ("edge ", InvalidCharacter),
            (" edge", InvalidCharacter),
            ("\tedge", InvalidCharacter),
            ("edge;reboot", InvalidCharacter),
            ("$(reboot)", InvalidCharacter),
            ("`id`", InvalidCharacter),
            ("a|b", InvalidCharacter),
            ("x'y", InvalidCharacter),
            ("line\nbreak", InvalidCharacter),
            ("-edge", InvalidCharacter),
            ("--edge", InvalidCharacter),
            ("Édge", InvalidCharacter),
        ] {
            assert_eq!(Channel::parse(text), Err(err), "{text:?}");
        }
        assert_eq!(Channel::parse(&"a".repeat(10_000)), Err(TooLong));
        // Short enough as written, too long once qualified (`a...a/stable`).
        assert_eq!(Channel::parse(&"a".repeat(125)), Err(TooLong));
        assert_eq!(
            Channel::parse(&format!("edge/{}", "b".repeat(117))),
            Err(TooLong)
        );
    }

    #[test]
    fn tracking_comparison_normalises_both_sides() {
        let edge = Channel::parse("edge").unwrap();
        assert!(edge.is_tracked_by("latest/edge"));
        assert!(edge.is_tracked_by("edge"));
        assert!(!edge.is_tracked_by("latest/beta"));
        assert!(!edge.is_tracked_by("latest/edge/hotfix"));
        assert!(!edge.is_tracked_by(""));
        let track = Channel::parse("1.0").unwrap();
        assert!(track.is_tracked_by("1.0/stable"));
        // Every accepted channel recognises its own full form (found by fuzzing).
        let longest = Channel::parse(&"a".repeat(121)).unwrap();
        assert!(longest.is_tracked_by(&longest.full()));
    }
}
