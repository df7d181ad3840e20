//! A faithful re-implementation of `github.com/juju/gnuflag` argument parsing as used by
//! the hook tools (`cmd.Main` with interspersed flags allowed).
//!
//! Syntax: `-f`, `-fg` (two one-letter flags), `--flag`, `--flag=x`, `--flag x` and
//! `-f x`/`-fx` (non-boolean flags only), `--` ends flag parsing, `-` and `""` are
//! positional. Boolean flags take a value only as `--flag=<strconv.ParseBool>`.
//!
//! Juju's hook tools name flags "option" in their error messages (`FlagKnownAs`), e.g.
//! `option provided but not defined: --foo`, `invalid value "x" for option -r: ...`.

use std::collections::BTreeMap;

/// The word juju's hook tools use for flags in parse errors (juju/cmd `FlagKnownAs`).
pub const FLAG_KNOWN_AS: &str = "option";

/// Validates (and possibly normalises) a flag value, like gnuflag's `Value.Set`.
pub type Validator<'a> = &'a dyn Fn(&str) -> Result<String, String>;

/// One flag definition. Several definitions may share a `key` (aliases such as `-r` and
/// `--relation`); the last occurrence on the command line wins.
pub struct Flag<'a> {
    pub name: &'static str,
    pub key: &'static str,
    pub boolean: bool,
    pub validate: Option<Validator<'a>>,
}

impl<'a> Flag<'a> {
    /// A boolean flag.
    pub fn boolean(name: &'static str, key: &'static str) -> Self {
        Flag {
            name,
            key,
            boolean: true,
            validate: None,
        }
    }

    /// A string flag.
    pub fn string(name: &'static str, key: &'static str) -> Self {
        Flag {
            name,
            key,
            boolean: false,
            validate: None,
        }
    }

    /// A string flag whose value is checked when parsed.
    pub fn checked(name: &'static str, key: &'static str, validate: Validator<'a>) -> Self {
        Flag {
            name,
            key,
            boolean: false,
            validate: Some(validate),
        }
    }
}

/// Why parsing stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum ParseError {
    /// `--help`/`-h` (not defined by the command): print help, exit 0.
    Help,
    /// Any other error: `ERROR <msg>`, exit 2.
    Invalid(String),
}

/// Result of a successful parse.
#[derive(Debug, Default)]
pub struct Parsed {
    values: BTreeMap<&'static str, String>,
    /// Positional arguments, in order.
    pub args: Vec<String>,
}

impl Parsed {
    /// Value of a string flag, if given.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.values.get(key).map(String::as_str)
    }

    /// Value of a boolean flag (false if not given).
    pub fn flag(&self, key: &str) -> bool {
        self.values.get(key).is_some_and(|v| v == "true")
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Ok(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(s)
        )),
    }
}

/// Go's `%q` formatting of a string (`strconv.Quote`).
pub fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{7}' => out.push_str("\\a"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\u{b}' => out.push_str("\\v"),
            c if (c as u32) < 0x20 || c == '\u{7f}' => {
                out.push_str(&format!("\\x{:02x}", c as u32));
            }
            c if c.is_control() => {
                let n = c as u32;
                if n <= 0xffff {
                    out.push_str(&format!("\\u{n:04x}"));
                } else {
                    out.push_str(&format!("\\U{n:08x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Go's `%q` formatting of a `[]string`: `["a" "b"]`.
pub fn go_quote_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

/// `cmd.CheckEmpty`.
pub fn check_empty(args: &[String]) -> Result<(), String> {
    if args.is_empty() {
        Ok(())
    } else {
        Err(format!("unrecognized args: {}", go_quote_list(args)))
    }
}

fn with_minus(name: &str) -> String {
    if name.chars().count() > 1 {
        format!("--{name}")
    } else {
        format!("-{name}")
    }
}

/// Parses `args` (without the command name) against `flags`, interspersed.
pub fn parse(flags: &[Flag<'_>], args: &[String]) -> Result<Parsed, ParseError> {
    let mut parsed = Parsed::default();
    let mut i = 0;
    // Rest of a `-abc` group (or `=value` of a long flag) still to be processed.
    let mut proc_flag = String::new();
    loop {
        let (name, long) = if !proc_flag.is_empty() {
            let c = proc_flag.chars().next().unwrap_or('?');
            let name = c.to_string();
            proc_flag = proc_flag[c.len_utf8()..].to_string();
            (name, false)
        } else {
            let Some(a) = args.get(i) else { break };
            if a == "-" || a.is_empty() || !a.starts_with('-') {
                parsed.args.push(a.clone());
                i += 1;
                continue;
            }
            if a == "--" {
                parsed.args.extend(args[i + 1..].iter().cloned());
                break;
            }
            i += 1;
            if let Some(rest) = a.strip_prefix("--") {
                match rest.find('=') {
                    None => (rest.to_string(), true),
                    Some(eq) => {
                        let name = &rest[..eq];
                        if name.is_empty() {
                            return Err(ParseError::Invalid(format!(
                                "empty {FLAG_KNOWN_AS} in argument {}",
                                go_quote(a)
                            )));
                        }
                        proc_flag = rest[eq..].to_string();
                        (name.to_string(), true)
                    }
                }
            } else {
                let rest = &a[1..];
                let c = rest.chars().next().unwrap_or('?');
                proc_flag = rest[c.len_utf8()..].to_string();
                (c.to_string(), false)
            }
        };

        let Some(flag) = flags.iter().find(|f| f.name == name) else {
            if name == "help" || name == "h" {
                return Err(ParseError::Help);
            }
            return Err(ParseError::Invalid(format!(
                "{FLAG_KNOWN_AS} provided but not defined: {}",
                with_minus(&name)
            )));
        };

        if flag.boolean && !proc_flag.starts_with('=') {
            parsed.values.insert(flag.key, "true".to_string());
            continue;
        }
        let value = if !proc_flag.is_empty() {
            let mut v = std::mem::take(&mut proc_flag);
            if long {
                v.remove(0);
            }
            v
        } else if let Some(next) = args.get(i) {
            i += 1;
            next.clone()
        } else {
            return Err(ParseError::Invalid(format!(
                "{FLAG_KNOWN_AS} needs an argument: {}",
                with_minus(&name)
            )));
        };
        let invalid = |err: String| {
            ParseError::Invalid(format!(
                "invalid value {} for {FLAG_KNOWN_AS} {}: {err}",
                go_quote(&value),
                with_minus(&name)
            ))
        };
        let stored = if flag.boolean {
            parse_bool(&value).map_err(invalid)?.to_string()
        } else if let Some(validate) = flag.validate {
            validate(&value).map_err(invalid)?
        } else {
            value.clone()
        };
        parsed.values.insert(flag.key, stored);
    }
    Ok(parsed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    fn flags() -> Vec<Flag<'static>> {
        vec![
            Flag::boolean("application", "application"),
            Flag::boolean("a", "all"),
            Flag::string("l", "level"),
            Flag::string("log-level", "level"),
        ]
    }

    #[test]
    fn interspersed_and_terminator() {
        let p = parse(
            &flags(),
            &s(&["x", "--application", "-l", "DEBUG", "--", "-y"]),
        )
        .unwrap();
        assert_eq!(p.args, s(&["x", "-y"]));
        assert!(p.flag("application"));
        assert_eq!(p.get("level"), Some("DEBUG"));
    }

    #[test]
    fn bool_forms() {
        let p = parse(&flags(), &s(&["--application=False", "active"])).unwrap();
        assert!(!p.flag("application"));
        assert_eq!(p.args, s(&["active"]));
        let e = parse(&flags(), &s(&["--application=nope"])).unwrap_err();
        assert_eq!(
            e,
            ParseError::Invalid(
                "invalid value \"nope\" for option --application: strconv.ParseBool: parsing \"nope\": invalid syntax"
                    .into()
            )
        );
        // `--application False` leaves False positional.
        let p = parse(&flags(), &s(&["--application", "False"])).unwrap();
        assert!(p.flag("application"));
        assert_eq!(p.args, s(&["False"]));
    }

    #[test]
    fn short_groups() {
        let p = parse(&flags(), &s(&["-alWARN"])).unwrap();
        assert!(p.flag("all"));
        assert_eq!(p.get("level"), Some("WARN"));
    }

    #[test]
    fn errors() {
        assert_eq!(
            parse(&flags(), &s(&["--foo"])).unwrap_err(),
            ParseError::Invalid("option provided but not defined: --foo".into())
        );
        assert_eq!(
            parse(&flags(), &s(&["-x"])).unwrap_err(),
            ParseError::Invalid("option provided but not defined: -x".into())
        );
        assert_eq!(
            parse(&flags(), &s(&["-l"])).unwrap_err(),
            ParseError::Invalid("option needs an argument: -l".into())
        );
        assert_eq!(
            parse(&flags(), &s(&["--=x"])).unwrap_err(),
            ParseError::Invalid("empty option in argument \"--=x\"".into())
        );
        assert_eq!(
            parse(&flags(), &s(&["--help"])).unwrap_err(),
            ParseError::Help
        );
    }
}
