//! Opened ports as Juju spells them: `8080/tcp`, `1000-2000/udp`, `icmp`
//! (docs/juju.md#ports), parsed into [`PortRange`] at the edge.

use std::fmt;

/// A protocol Juju can open ports for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Tcp,
    Udp,
    Icmp,
}

/// One opened port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PortRange {
    pub(crate) from: u16,
    pub(crate) to: u16,
    pub(crate) protocol: Protocol,
}

impl PortRange {
    /// One TCP port.
    pub(crate) fn tcp(port: u16) -> PortRange {
        PortRange {
            from: port,
            to: port,
            protocol: Protocol::Tcp,
        }
    }

    /// Parses `opened-ports` output items; `None` for anything else.
    pub(crate) fn parse(text: &str) -> Option<PortRange> {
        if text == "icmp" {
            return Some(PortRange {
                from: 0,
                to: 0,
                protocol: Protocol::Icmp,
            });
        }
        let (ports, protocol) = text.split_once('/')?;
        let protocol = match protocol {
            "tcp" => Protocol::Tcp,
            "udp" => Protocol::Udp,
            _ => return None,
        };
        let (from, to) = ports.split_once('-').unwrap_or((ports, ports));
        let (from, to) = (from.parse().ok()?, to.parse().ok()?);
        (1 <= from && from <= to).then_some(PortRange { from, to, protocol })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let protocol = match self.protocol {
            Protocol::Icmp => return f.write_str("icmp"),
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
        };
        if self.from == self.to {
            write!(f, "{}/{protocol}", self.from)
        } else {
            write!(f, "{}-{}/{protocol}", self.from, self.to)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_what_juju_prints() {
        for text in ["8080/tcp", "1000-2000/udp", "icmp", "65535/tcp"] {
            assert_eq!(PortRange::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(PortRange::parse("8080/tcp"), Some(PortRange::tcp(8080)));
        for bad in [
            "",
            "8080",
            "0/tcp",
            "9-1/tcp",
            "8080/sctp",
            "x/tcp",
            "70000/tcp",
        ] {
            assert_eq!(PortRange::parse(bad), None, "{bad}");
        }
    }
}
