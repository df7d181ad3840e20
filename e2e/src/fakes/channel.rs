//! snapd's channel grammar (`snap/channel/channel.go`, docs/snapd-api.md#channels):
//! `[<track>/]<risk>[/<branch>]`, risks stable|candidate|beta|edge.

/// Risk levels from most to least stable.
pub const RISKS: [&str; 4] = ["stable", "candidate", "beta", "edge"];

/// A parsed channel (`Channel` without the architecture).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Channel {
    pub track: String,
    pub risk: String,
    pub branch: String,
}

fn is_risk(s: &str) -> bool {
    RISKS.contains(&s)
}

impl Channel {
    /// `channel.ParseVerbatim`: validates without normalising.
    pub fn parse_verbatim(s: &str) -> Result<Channel, String> {
        if s.is_empty() {
            return Err("channel name cannot be empty".to_string());
        }
        let p: Vec<&str> = s.split('/').collect();
        let (track, risk, branch) = match p.as_slice() {
            [one] if is_risk(one) => (None, Some(*one), None),
            [one] => (Some(*one), None, None),
            [a, b] if is_risk(a) => (None, Some(*a), Some(*b)),
            [a, b] => (Some(*a), Some(*b), None),
            [a, b, c] => (Some(*a), Some(*b), Some(*c)),
            _ => return Err(format!("channel name has too many components: {s}")),
        };
        let mut ch = Channel::default();
        if let Some(risk) = risk {
            if !is_risk(risk) {
                return Err(format!("invalid risk in channel name: {s}"));
            }
            ch.risk = risk.to_string();
        }
        if let Some(track) = track {
            if track.is_empty() {
                return Err(format!("invalid track in channel name: {s}"));
            }
            ch.track = track.to_string();
        }
        if let Some(branch) = branch {
            if branch.is_empty() {
                return Err(format!("invalid branch in channel name: {s}"));
            }
            ch.branch = branch.to_string();
        }
        Ok(ch)
    }

    /// `channel.Parse`: validates and normalises (`latest` track dropped, risk defaulted).
    pub fn parse(s: &str) -> Result<Channel, String> {
        Ok(Self::parse_verbatim(s)?.clean())
    }

    /// `Channel.Clean`.
    pub fn clean(&self) -> Channel {
        Channel {
            track: if self.track == "latest" {
                String::new()
            } else {
                self.track.clone()
            },
            risk: if self.risk.is_empty() {
                "stable".to_string()
            } else {
                self.risk.clone()
            },
            branch: self.branch.clone(),
        }
    }

    /// `Channel.String()` / `Name`: `edge`, `1.0/beta`, `candidate/foo` (no `latest/`).
    pub fn name(&self) -> String {
        let c = self.clean();
        let mut name = c.risk.clone();
        if !c.track.is_empty() {
            name = format!("{}/{name}", c.track);
        }
        if !c.branch.is_empty() {
            name = format!("{name}/{}", c.branch);
        }
        name
    }

    /// `Channel.Full()`: always with a track (`latest/edge`).
    pub fn full(&self) -> String {
        let c = self.clean();
        let track = if c.track.is_empty() {
            "latest"
        } else {
            c.track.as_str()
        };
        let mut name = format!("{track}/{}", c.risk);
        if !c.branch.is_empty() {
            name = format!("{name}/{}", c.branch);
        }
        name
    }
}

/// The lenient function `channel.Full` (used by `SetTrackingChannel`).
pub fn full(s: &str) -> Result<String, String> {
    let comps: Vec<&str> = s.split('/').filter(|c| !c.is_empty()).collect();
    match comps.as_slice() {
        [] => Ok(String::new()),
        [one] if is_risk(one) => Ok(format!("latest/{one}")),
        [one] => Ok(format!("{one}/stable")),
        [a, _] if is_risk(a) => Ok(format!("latest/{}", comps.join("/"))),
        [_, _] | [_, _, _] => Ok(comps.join("/")),
        _ => Err("invalid channel".to_string()),
    }
}

/// `channel.Resolve`: a risk(/branch)-only request keeps the current track.
pub fn resolve(current: &str, requested: &str) -> Result<String, String> {
    if requested.is_empty() {
        return Ok(current.to_string());
    }
    if current.is_empty() {
        return Ok(requested.to_string());
    }
    let ch = Channel::parse_verbatim(current)?;
    let first = requested.split('/').next().unwrap_or("");
    if is_risk(first) && !ch.track.is_empty() {
        return Ok(format!("{}/{requested}", ch.track));
    }
    Ok(requested.to_string())
}

/// Whether two channels have the same risk (`isSameRisk` of the snap CLI).
pub fn same_risk(a: &str, b: &str) -> Result<bool, String> {
    Ok(Channel::parse(a)?.risk == Channel::parse(b)?.risk)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors() {
        for (ch, err) in [
            ("", "channel name cannot be empty"),
            ("1.0////", "channel name has too many components: 1.0////"),
            ("1.0/cand", "invalid risk in channel name: 1.0/cand"),
            ("fix//hotfix", "invalid risk in channel name: fix//hotfix"),
            ("/stable/", "invalid track in channel name: /stable/"),
            ("//stable", "invalid risk in channel name: //stable"),
            ("stable/", "invalid branch in channel name: stable/"),
            ("/stable", "invalid track in channel name: /stable"),
        ] {
            assert_eq!(Channel::parse(ch).unwrap_err(), err, "{ch}");
        }
    }

    #[test]
    fn names() {
        for (ch, name, fullname) in [
            ("stable", "stable", "latest/stable"),
            ("latest/stable", "stable", "latest/stable"),
            ("1.0/edge", "1.0/edge", "1.0/edge"),
            ("1.0/beta/foo", "1.0/beta/foo", "1.0/beta/foo"),
            ("1.0", "1.0/stable", "1.0/stable"),
            ("candidate/foo", "candidate/foo", "latest/candidate/foo"),
        ] {
            let c = Channel::parse(ch).unwrap();
            assert_eq!(c.name(), name);
            assert_eq!(c.full(), fullname);
        }
        assert_eq!(full("edge").unwrap(), "latest/edge");
        assert_eq!(full("1.0").unwrap(), "1.0/stable");
        assert_eq!(full("//stable//").unwrap(), "latest/stable");
        assert_eq!(full("///").unwrap(), "");
    }

    #[test]
    fn resolving() {
        assert_eq!(resolve("2.0/stable", "edge").unwrap(), "2.0/edge");
        assert_eq!(resolve("latest/edge", "beta").unwrap(), "latest/beta");
        assert_eq!(resolve("latest/edge", "").unwrap(), "latest/edge");
        assert_eq!(resolve("", "edge").unwrap(), "edge");
        assert_eq!(resolve("latest/edge", "1.0/beta").unwrap(), "1.0/beta");
    }
}
