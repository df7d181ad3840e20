//! `charmcraft.yaml`: validation, and generation of the files Juju reads from a `.charm`
//! (`metadata.yaml`, `config.yaml`, `actions.yaml`, `manifest.yaml`).
//!
//! The output mirrors what `charmcraft pack` writes (charmcraft 4.x
//! `services/package.py`, `models/metadata.py`): `title` becomes `display-name`, `links` are
//! flattened (`documentation` → `docs`, `contact` → `maintainers`, `website`/`source`/`issues`
//! unchanged), and every mapping is written with sorted keys, so the output is deterministic.

use std::fmt;

use serde_yaml::{Mapping, Value};

/// A validation error. Its message names the offending key, e.g.
/// `charmcraft.yaml: config.options.port: missing required key "type"`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    fn top(msg: impl fmt::Display) -> Self {
        Error(format!("charmcraft.yaml: {msg}"))
    }

    fn at(path: &str, msg: impl fmt::Display) -> Self {
        Error(format!("charmcraft.yaml: {path}: {msg}"))
    }

    pub fn message(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// Config option types Juju accepts (`juju/charm` `config.go`).
pub const OPTION_TYPES: [&str; 5] = ["string", "int", "float", "boolean", "secret"];

/// Architectures this packer can produce: it builds `x86_64-unknown-linux-gnu` only.
pub const ARCHITECTURE: &str = "amd64";

/// One entry of `manifest.yaml` `bases`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub name: String,
    pub channel: String,
    pub architectures: Vec<String>,
}

/// A validated `charmcraft.yaml`, holding the generated YAML documents.
#[derive(Debug, Clone)]
pub struct Project {
    pub name: String,
    pub bases: Vec<Base>,
    metadata: Mapping,
    config: Option<Mapping>,
    actions: Option<Mapping>,
}

/// Metadata keys copied verbatim (after their shape is checked) from charmcraft.yaml into
/// metadata.yaml, like charmcraft's `CharmMetadata`.
const PASSTHROUGH_MAPPINGS: [&str; 5] = [
    "containers",
    "devices",
    "extra-bindings",
    "resources",
    "storage",
];
const RELATION_KINDS: [&str; 3] = ["provides", "requires", "peers"];
const LINK_KEYS: [&str; 5] = ["contact", "documentation", "issues", "source", "website"];
/// Keys of a v1 (pre-manifest) charm that Juju rejects next to `manifest.yaml` bases.
const V1_KEYS: [&str; 3] = ["series", "min-juju-version", "deployment"];

impl Project {
    /// Parses and validates the text of a `charmcraft.yaml`.
    pub fn parse(text: &str) -> Result<Project, Error> {
        let doc: Value = serde_yaml::from_str(text)
            .map_err(|e| Error::top(format_args!("not valid YAML: {e}")))?;
        let top = match &doc {
            Value::Mapping(m) => m,
            _ => return Err(Error::top("the document must be a mapping")),
        };
        for key in top.keys() {
            if key.as_str().is_none() {
                return Err(Error::top(format_args!(
                    "top-level keys must be strings, got {}",
                    show(key)
                )));
            }
        }

        let name = required_str(top, "name")?;
        if !valid_charm_name(&name) {
            return Err(Error::at(
                "name",
                format_args!(
                    "{name:?} is not a valid charm name (lowercase letters, digits and single \
                     hyphens, starting with a letter, at most 40 characters)"
                ),
            ));
        }
        let kind = required_str(top, "type")?;
        if kind != "charm" {
            return Err(Error::at(
                "type",
                format_args!("must be \"charm\", got {kind:?}"),
            ));
        }
        let summary = required_str(top, "summary")?;
        let description = required_str(top, "description")?;
        let bases = parse_platforms(top)?;
        for key in V1_KEYS {
            if present(top, key).is_some() {
                return Err(Error::at(
                    key,
                    "not allowed: this is a v1 (pre-manifest) charm key that Juju rejects in a \
                     charm with manifest.yaml bases",
                ));
            }
        }

        let mut metadata = Mapping::new();
        metadata.insert("name".into(), name.clone().into());
        if let Some(title) = optional_str(top, "title")? {
            metadata.insert("display-name".into(), title.into());
        }
        metadata.insert("summary".into(), summary.into());
        metadata.insert("description".into(), description.into());
        if let Some(links) = mapping_at(top, "links", "links")? {
            flatten_links(links, &mut metadata)?;
        }
        if let Some(assumes) = present(top, "assumes") {
            match assumes {
                Value::Sequence(s) if !s.is_empty() => {
                    metadata.insert("assumes".into(), assumes.clone());
                }
                _ => return Err(Error::at("assumes", "expected a non-empty list")),
            }
        }
        check_relations(top, &mut metadata)?;
        for key in PASSTHROUGH_MAPPINGS {
            if let Some(m) = mapping_at(top, key, key)? {
                metadata.insert(key.into(), Value::Mapping(m.clone()));
            }
        }
        if let Some(v) = present(top, "subordinate") {
            if !v.is_bool() {
                return Err(Error::at("subordinate", "expected true or false"));
            }
            metadata.insert("subordinate".into(), v.clone());
        }
        if let Some(v) = present(top, "terms") {
            if !is_str_list(v) {
                return Err(Error::at("terms", "expected a list of strings"));
            }
            metadata.insert("terms".into(), v.clone());
        }
        if let Some(user) = optional_str(top, "charm-user")? {
            if !["root", "sudoer", "non-root"].contains(&user.as_str()) {
                return Err(Error::at(
                    "charm-user",
                    format_args!("{user:?} is not one of root, sudoer, non-root"),
                ));
            }
            metadata.insert("charm-user".into(), user.into());
        }

        let config = parse_config(top)?;
        let actions = parse_actions(top)?;

        Ok(Project {
            name,
            bases,
            metadata: sorted(&metadata),
            config: config.map(|c| sorted(&c)),
            actions: actions.map(|a| sorted(&a)),
        })
    }

    /// The `metadata.yaml` document.
    pub fn metadata_yaml(&self) -> String {
        dump(&self.metadata)
    }

    /// The `config.yaml` document, when charmcraft.yaml has `config`.
    pub fn config_yaml(&self) -> Option<String> {
        self.config.as_ref().map(dump)
    }

    /// The `actions.yaml` document, when charmcraft.yaml has (non-empty) `actions`.
    pub fn actions_yaml(&self) -> Option<String> {
        self.actions.as_ref().map(dump)
    }

    /// The `manifest.yaml` document, in charmcraft's key order. `started_at` is an RFC 3339
    /// UTC timestamp; the packer passes its fixed (reproducible) archive timestamp.
    pub fn manifest_yaml(&self, started_at: &str) -> String {
        let bases = self
            .bases
            .iter()
            .map(|b| {
                let mut m = Mapping::new();
                m.insert("name".into(), b.name.clone().into());
                m.insert("channel".into(), b.channel.clone().into());
                m.insert(
                    "architectures".into(),
                    Value::Sequence(b.architectures.iter().map(|a| a.clone().into()).collect()),
                );
                Value::Mapping(m)
            })
            .collect();
        // A binary dispatch is neither Python nor ops/reactive: charmcraft's `language` and
        // `framework` attribute checkers report `unknown` for it.
        let attributes = ["language", "framework"]
            .iter()
            .map(|n| {
                let mut m = Mapping::new();
                m.insert("name".into(), (*n).into());
                m.insert("result".into(), "unknown".into());
                Value::Mapping(m)
            })
            .collect();
        let mut analysis = Mapping::new();
        analysis.insert("attributes".into(), Value::Sequence(attributes));
        let mut manifest = Mapping::new();
        manifest.insert("bases".into(), Value::Sequence(bases));
        manifest.insert("analysis".into(), Value::Mapping(analysis));
        // Quoted, as charmcraft (PyYAML) writes it: unquoted, YAML 1.1 readers would load a
        // timestamp rather than a string.
        format!(
            "charmcraft-started-at: '{}'\n{}",
            started_at.replace('\'', "''"),
            dump(&manifest)
        )
    }
}

fn dump(m: &Mapping) -> String {
    serde_yaml::to_string(m).expect("a YAML mapping always serialises")
}

/// A copy of `v` with every mapping's keys sorted (like PyYAML's `sort_keys=True`).
fn sorted_value(v: &Value) -> Value {
    match v {
        Value::Mapping(m) => Value::Mapping(sorted(m)),
        Value::Sequence(s) => Value::Sequence(s.iter().map(sorted_value).collect()),
        Value::Tagged(t) => Value::Tagged(Box::new(serde_yaml::value::TaggedValue {
            tag: t.tag.clone(),
            value: sorted_value(&t.value),
        })),
        other => other.clone(),
    }
}

fn sorted(m: &Mapping) -> Mapping {
    let mut entries: Vec<(&Value, &Value)> = m.iter().collect();
    entries.sort_by_key(|(k, _)| sort_key(k));
    entries
        .into_iter()
        .map(|(k, v)| (k.clone(), sorted_value(v)))
        .collect()
}

fn sort_key(k: &Value) -> String {
    match k {
        Value::String(s) => s.clone(),
        other => show(other),
    }
}

fn show(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => format!("{s:?}"),
        other => serde_yaml::to_string(other)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_else(|_| "?".into()),
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_f64() => "a float",
        Value::Number(_) => "an integer",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// The value of `key`, treating an explicit null (`key:` with nothing after it) as absent.
fn present<'a>(m: &'a Mapping, key: &str) -> Option<&'a Value> {
    m.get(key).filter(|v| !v.is_null())
}

fn required_str(top: &Mapping, key: &str) -> Result<String, Error> {
    match present(top, key) {
        None => Err(Error::top(format_args!("missing required key {key:?}"))),
        Some(Value::String(s)) if s.trim().is_empty() => Err(Error::at(key, "must not be empty")),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(other) => Err(Error::at(
            key,
            format_args!("expected a string, got {}", kind_of(other)),
        )),
    }
}

fn optional_str(top: &Mapping, key: &str) -> Result<Option<String>, Error> {
    match present(top, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(Error::at(
            key,
            format_args!("expected a string, got {}", kind_of(other)),
        )),
    }
}

/// The mapping under `key` of `m`, if any; errors name the key as `path`.
fn mapping_at<'a>(m: &'a Mapping, key: &str, path: &str) -> Result<Option<&'a Mapping>, Error> {
    match present(m, key) {
        None => Ok(None),
        Some(Value::Mapping(v)) => Ok(Some(v)),
        Some(other) => Err(Error::at(
            path,
            format_args!("expected a mapping, got {}", kind_of(other)),
        )),
    }
}

fn is_str_list(v: &Value) -> bool {
    matches!(v, Value::Sequence(s) if s.iter().all(Value::is_string))
}

/// Keys of a mapping, which must all be non-empty strings.
fn string_keys<'a>(m: &'a Mapping, path: &str) -> Result<Vec<(&'a str, &'a Value)>, Error> {
    m.iter()
        .map(|(k, v)| match k.as_str() {
            Some(s) if !s.is_empty() => Ok((s, v)),
            _ => Err(Error::at(
                path,
                format_args!("keys must be non-empty strings, got {}", show(k)),
            )),
        })
        .collect()
}

/// charmcraft's `ProjectName`: lowercase letters, digits and hyphens, starting with a letter,
/// no leading/trailing/double hyphens, at most 40 characters.
fn valid_charm_name(name: &str) -> bool {
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && !name.ends_with('-')
        && !name.contains("--")
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Juju's action name rule: `^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$`.
fn valid_action_name(name: &str) -> bool {
    let ok = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    name.starts_with(ok) && name.ends_with(ok) && name.chars().all(|c| ok(c) || c == '-')
}

/// `platforms` → manifest bases. Accepts the multi-base shorthand (`ubuntu@22.04:amd64:`),
/// the single-base shorthand (`amd64:` with a top-level `base`), and the long form
/// (`<name>: {build-on: [...], build-for: [...]}`, where `build-for` decides the bases).
fn parse_platforms(top: &Mapping) -> Result<Vec<Base>, Error> {
    let platforms = match present(top, "platforms") {
        None => return Err(Error::top("missing required key \"platforms\"")),
        Some(Value::Mapping(m)) if m.is_empty() => {
            return Err(Error::at("platforms", "must name at least one platform"))
        }
        Some(Value::Mapping(m)) => m,
        Some(other) => {
            return Err(Error::at(
                "platforms",
                format_args!("expected a mapping, got {}", kind_of(other)),
            ))
        }
    };
    let default_base = optional_str(top, "base")?;
    let mut bases: Vec<Base> = Vec::new();
    for (key, value) in string_keys(platforms, "platforms")? {
        let path = format!("platforms.{key}");
        let targets: Vec<String> = match value {
            Value::Null => vec![key.to_string()],
            Value::Mapping(m) => match present(m, "build-for") {
                Some(v) if is_str_list(v) && v.as_sequence().is_some_and(|s| !s.is_empty()) => v
                    .as_sequence()
                    .into_iter()
                    .flatten()
                    .filter_map(|t| t.as_str().map(str::to_string))
                    .collect(),
                Some(_) => {
                    return Err(Error::at(
                        &format!("{path}.build-for"),
                        "expected a non-empty list of strings",
                    ))
                }
                None => {
                    return Err(Error::at(&path, "missing required key \"build-for\""));
                }
            },
            other => {
                return Err(Error::at(
                    &path,
                    format_args!("expected a mapping or nothing, got {}", kind_of(other)),
                ))
            }
        };
        for target in targets {
            let (base, arch) = match target.split_once(':') {
                Some((b, a)) => (b.to_string(), a.to_string()),
                None => match &default_base {
                    Some(b) => (b.clone(), target.clone()),
                    None => {
                        return Err(Error::at(
                            &path,
                            format_args!(
                                "{target:?} names no base: add a top-level \"base\" \
                                 (e.g. ubuntu@24.04) or write it as \"ubuntu@24.04:{target}\""
                            ),
                        ))
                    }
                },
            };
            let (os, channel) = match base.split_once('@') {
                Some((o, c)) if !o.is_empty() && !c.is_empty() => (o, c),
                _ => {
                    return Err(Error::at(
                        &path,
                        format_args!(
                            "base {base:?} is not of the form <name>@<channel>, e.g. ubuntu@24.04"
                        ),
                    ))
                }
            };
            if arch != ARCHITECTURE {
                return Err(Error::at(
                    &path,
                    format_args!(
                        "architecture {arch:?} is not supported: cargo pack builds \
                         x86_64-unknown-linux-gnu ({ARCHITECTURE}) only"
                    ),
                ));
            }
            match bases
                .iter_mut()
                .find(|b| b.name == os && b.channel == channel)
            {
                Some(b) if !b.architectures.contains(&arch) => b.architectures.push(arch),
                Some(_) => {}
                None => bases.push(Base {
                    name: os.to_string(),
                    channel: channel.to_string(),
                    architectures: vec![arch],
                }),
            }
        }
    }
    Ok(bases)
}

fn flatten_links(links: &Mapping, metadata: &mut Mapping) -> Result<(), Error> {
    for (key, value) in string_keys(links, "links")? {
        let path = format!("links.{key}");
        if !LINK_KEYS.contains(&key) {
            return Err(Error::at(
                &path,
                format_args!("unknown link (expected one of {})", LINK_KEYS.join(", ")),
            ));
        }
        let list_ok = key != "documentation" && is_str_list(value);
        if !value.is_string() && !list_ok {
            let expected = if key == "documentation" {
                "a URL string"
            } else {
                "a string or a list of strings"
            };
            return Err(Error::at(
                &path,
                format_args!("expected {expected}, got {}", kind_of(value)),
            ));
        }
        match key {
            "documentation" => {
                metadata.insert("docs".into(), value.clone());
            }
            "contact" => {
                let list = match value {
                    Value::String(_) => Value::Sequence(vec![value.clone()]),
                    _ => value.clone(),
                };
                metadata.insert("maintainers".into(), list);
            }
            _ => {
                metadata.insert(key.into(), value.clone());
            }
        }
    }
    Ok(())
}

fn check_relations(top: &Mapping, metadata: &mut Mapping) -> Result<(), Error> {
    let mut seen: Vec<String> = Vec::new();
    for kind in RELATION_KINDS {
        let Some(endpoints) = mapping_at(top, kind, kind)? else {
            continue;
        };
        for (name, spec) in string_keys(endpoints, kind)? {
            let path = format!("{kind}.{name}");
            if name == "juju" || name.starts_with("juju-") {
                return Err(Error::at(
                    &path,
                    "relation names juju and juju-* are reserved",
                ));
            }
            if seen.iter().any(|s| s == name) {
                return Err(Error::at(&path, "endpoint name used more than once"));
            }
            seen.push(name.to_string());
            let Value::Mapping(spec) = spec else {
                return Err(Error::at(
                    &path,
                    format_args!("expected a mapping, got {}", kind_of(spec)),
                ));
            };
            match present(spec, "interface") {
                Some(Value::String(s)) if !s.is_empty() => {}
                Some(other) => {
                    return Err(Error::at(
                        &format!("{path}.interface"),
                        format_args!("expected a non-empty string, got {}", kind_of(other)),
                    ))
                }
                None => return Err(Error::at(&path, "missing required key \"interface\"")),
            }
        }
        metadata.insert(kind.into(), Value::Mapping(endpoints.clone()));
    }
    Ok(())
}

/// The naming-conventions linter of `charmcraft analyse` warns about any snake_case name in
/// config options, action names and action params; refuse them here instead.
fn check_kebab(path: &str, name: &str) -> Result<(), Error> {
    if name.contains('_') {
        return Err(Error::at(
            path,
            format_args!(
                "{name:?} uses snake_case: Juju's naming convention is kebab-case \
                 (charmcraft analyse warns about it)"
            ),
        ));
    }
    Ok(())
}

fn parse_config(top: &Mapping) -> Result<Option<Mapping>, Error> {
    let Some(config) = mapping_at(top, "config", "config")? else {
        return Ok(None);
    };
    for (key, _) in string_keys(config, "config")? {
        if key != "options" {
            return Err(Error::at(
                &format!("config.{key}"),
                "unknown key (only \"options\" is allowed)",
            ));
        }
    }
    let options = match config.get("options") {
        None => return Err(Error::at("config", "missing required key \"options\"")),
        Some(Value::Mapping(m)) => m,
        Some(Value::Null) => return Err(Error::at("config.options", "must not be empty")),
        Some(other) => {
            return Err(Error::at(
                "config.options",
                format_args!("expected a mapping, got {}", kind_of(other)),
            ))
        }
    };
    for (name, option) in string_keys(options, "config.options")? {
        let path = format!("config.options.{name}");
        check_kebab(&path, name)?;
        let option = match option {
            Value::Mapping(m) => m,
            Value::Null => return Err(Error::at(&path, "missing required key \"type\"")),
            other => {
                return Err(Error::at(
                    &path,
                    format_args!("expected a mapping, got {}", kind_of(other)),
                ))
            }
        };
        for (key, _) in string_keys(option, &path)? {
            if !["type", "default", "description"].contains(&key) {
                return Err(Error::at(
                    &path,
                    format_args!("unknown key {key:?} (expected type, default, description)"),
                ));
            }
        }
        let ty = match present(option, "type") {
            None => return Err(Error::at(&path, "missing required key \"type\"")),
            Some(Value::String(t)) if OPTION_TYPES.contains(&t.as_str()) => t.as_str(),
            Some(other) => {
                return Err(Error::at(
                    &format!("{path}.type"),
                    format_args!("{} is not one of {}", show(other), OPTION_TYPES.join(", ")),
                ))
            }
        };
        if let Some(d) = present(option, "description") {
            if !d.is_string() {
                return Err(Error::at(
                    &format!("{path}.description"),
                    format_args!("expected a string, got {}", kind_of(d)),
                ));
            }
        }
        if let Some(default) = present(option, "default") {
            let matches = match ty {
                "string" | "secret" => default.is_string(),
                "int" => default.is_i64() || default.is_u64(),
                "float" => default.is_number(),
                _ => default.is_bool(),
            };
            if !matches {
                return Err(Error::at(
                    &format!("{path}.default"),
                    format_args!(
                        "{} ({}) does not match type {ty:?}",
                        show(default),
                        kind_of(default)
                    ),
                ));
            }
        }
    }
    Ok(Some(config.clone()))
}

fn parse_actions(top: &Mapping) -> Result<Option<Mapping>, Error> {
    let Some(actions) = mapping_at(top, "actions", "actions")? else {
        return Ok(None);
    };
    for (name, action) in string_keys(actions, "actions")? {
        let path = format!("actions.{name}");
        if !valid_action_name(name) {
            return Err(Error::at(
                &path,
                "bad action name (Juju requires ^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$)",
            ));
        }
        let action = match action {
            Value::Null => continue,
            Value::Mapping(m) => m,
            other => {
                return Err(Error::at(
                    &path,
                    format_args!("expected a mapping, got {}", kind_of(other)),
                ))
            }
        };
        if let Some(d) = present(action, "description") {
            if !d.is_string() {
                return Err(Error::at(
                    &format!("{path}.description"),
                    format_args!("expected a string, got {}", kind_of(d)),
                ));
            }
        }
        if let Some(params) = mapping_at(action, "params", &format!("{path}.params"))? {
            for (param, _) in string_keys(params, &format!("{path}.params"))? {
                check_kebab(&format!("{path}.params.{param}"), param)?;
            }
        }
    }
    if actions.is_empty() {
        return Ok(None);
    }
    Ok(Some(actions.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"
name: microsample
type: charm
title: Microsample
summary: Deploys the microsample snap.
description: |
  A machine charm.

  Second paragraph.
links:
  website: https://snapcraft.io/microsample
  documentation: https://snapcraft.io/microsample
platforms:
  ubuntu@22.04:amd64:
  ubuntu@24.04:amd64:
parts:
  charm:
    plugin: rust
config:
  options:
    port:
      type: int
      default: 8080
      description: TCP port.
    channel:
      type: string
      default: edge
      description: Snap channel.
"#;

    fn err(text: &str) -> String {
        Project::parse(text)
            .expect_err("must be rejected")
            .to_string()
    }

    /// GOOD with the first line starting with `prefix` removed (and `add` appended).
    fn variant(drop: &str, add: &str) -> String {
        let mut out: String = GOOD
            .lines()
            .filter(|l| drop.is_empty() || !l.starts_with(drop))
            .map(|l| format!("{l}\n"))
            .collect();
        out.push_str(add);
        out
    }

    /// GOOD without its `links` block, plus `add`.
    fn without_links(add: &str) -> String {
        let links = "links:\n  website: https://snapcraft.io/microsample\n  \
                     documentation: https://snapcraft.io/microsample\n";
        assert!(GOOD.contains(links));
        format!("{}{add}", GOOD.replace(links, ""))
    }

    fn with_option(option: &str) -> String {
        GOOD.replace(
            "    channel:\n      type: string",
            &format!("{option}\n    channel:\n      type: string"),
        )
    }

    #[test]
    fn good_project_generates_charmcraft_style_files() {
        let p = Project::parse(GOOD).unwrap();
        assert_eq!(p.name, "microsample");
        assert_eq!(
            p.metadata_yaml(),
            "description: |\n  A machine charm.\n\n  Second paragraph.\n\
             display-name: Microsample\ndocs: https://snapcraft.io/microsample\n\
             name: microsample\nsummary: Deploys the microsample snap.\n\
             website: https://snapcraft.io/microsample\n"
        );
        assert_eq!(
            p.config_yaml().unwrap(),
            "options:\n  channel:\n    default: edge\n    description: Snap channel.\n    type: string\n  \
             port:\n    default: 8080\n    description: TCP port.\n    type: int\n"
        );
        assert_eq!(p.actions_yaml(), None);
        assert_eq!(
            p.manifest_yaml("1980-01-01T00:00:00Z"),
            "charmcraft-started-at: '1980-01-01T00:00:00Z'\nbases:\n\
             - name: ubuntu\n  channel: '22.04'\n  architectures:\n  - amd64\n\
             - name: ubuntu\n  channel: '24.04'\n  architectures:\n  - amd64\n\
             analysis:\n  attributes:\n  - name: language\n    result: unknown\n\
             \x20 - name: framework\n    result: unknown\n"
        );
        let manifest: Value = serde_yaml::from_str(&p.manifest_yaml("it's")).unwrap();
        assert_eq!(manifest["bases"][1]["channel"].as_str(), Some("24.04"));
        assert_eq!(manifest["charmcraft-started-at"].as_str(), Some("it's"));
    }

    #[test]
    fn the_real_charmcraft_yaml_is_valid() {
        let text = include_str!("../../charmcraft.yaml");
        let p = Project::parse(text).unwrap();
        let config: Value = serde_yaml::from_str(&p.config_yaml().unwrap()).unwrap();
        assert!(config["options"]["channel"].is_mapping());
        assert!(config["options"]["port"].is_mapping());
    }

    #[test]
    fn relations_assumes_actions_and_links_are_carried() {
        let p = Project::parse(&variant(
            "",
            "assumes: [juju >= 3.6]\nprovides:\n  cos-agent: {interface: cos_agent, limit: 1}\n\
             peers:\n  cluster: {interface: microsample-peers}\n\
             actions:\n  restart:\n    description: Restart it.\n    params:\n      force: {type: boolean}\n",
        ))
        .unwrap();
        let md: Value = serde_yaml::from_str(&p.metadata_yaml()).unwrap();
        assert_eq!(md["provides"]["cos-agent"]["limit"].as_i64(), Some(1));
        assert_eq!(
            md["peers"]["cluster"]["interface"].as_str(),
            Some("microsample-peers")
        );
        assert_eq!(md["assumes"][0].as_str(), Some("juju >= 3.6"));
        let actions: Value = serde_yaml::from_str(&p.actions_yaml().unwrap()).unwrap();
        assert_eq!(
            actions["restart"]["params"]["force"]["type"].as_str(),
            Some("boolean")
        );

        let p = Project::parse(&without_links(
            "links:\n  contact: someone@example.com\n  source: [https://a.example, https://b.example]\n",
        ))
        .unwrap();
        let md: Value = serde_yaml::from_str(&p.metadata_yaml()).unwrap();
        assert_eq!(md["maintainers"][0].as_str(), Some("someone@example.com"));
        assert_eq!(md["source"][1].as_str(), Some("https://b.example"));
    }

    #[test]
    fn single_base_and_long_form_platforms() {
        let text = variant("  ubuntu@2", "base: ubuntu@24.04\n")
            .replace("platforms:\n", "platforms:\n  amd64:\n");
        let p = Project::parse(&text).unwrap();
        assert_eq!(
            p.bases,
            vec![Base {
                name: "ubuntu".into(),
                channel: "24.04".into(),
                architectures: vec!["amd64".into()],
            }]
        );
        let text = variant("  ubuntu@2", "").replace(
            "platforms:\n",
            "platforms:\n  jammy:\n    build-on: [ubuntu@22.04:amd64]\n    build-for: [ubuntu@22.04:amd64]\n",
        );
        assert_eq!(Project::parse(&text).unwrap().bases[0].channel, "22.04");
    }

    #[test]
    fn missing_required_keys_are_named() {
        for key in ["name", "type", "summary", "description", "platforms"] {
            let text = if key == "platforms" {
                variant("platforms:", "")
                    .replace("  ubuntu@22.04:amd64:\n  ubuntu@24.04:amd64:\n", "")
            } else {
                variant(&format!("{key}:"), "")
            };
            let text = if key == "description" {
                text.replace("  A machine charm.\n\n  Second paragraph.\n", "")
            } else {
                text
            };
            assert_eq!(
                err(&text),
                format!("charmcraft.yaml: missing required key {key:?}"),
                "{key}"
            );
        }
    }

    #[test]
    fn wrong_type_and_bad_values_of_required_keys() {
        assert_eq!(
            err(&variant("type:", "type: bundle\n")),
            "charmcraft.yaml: type: must be \"charm\", got \"bundle\""
        );
        assert!(
            err(&variant("name:", "name: Micro_Sample\n")).starts_with("charmcraft.yaml: name:")
        );
        assert_eq!(
            err(&variant("summary:", "summary: [a, b]\n")),
            "charmcraft.yaml: summary: expected a string, got a list"
        );
        assert_eq!(
            err(&variant("summary:", "summary: ''\n")),
            "charmcraft.yaml: summary: must not be empty"
        );
        assert!(err("- a\n- b\n").contains("must be a mapping"));
        assert!(err("name: [\n").contains("not valid YAML"));
    }

    #[test]
    fn bad_platforms() {
        let text = GOOD.replace("ubuntu@24.04:amd64:", "ubuntu@24.04:arm64:");
        assert_eq!(
            err(&text),
            "charmcraft.yaml: platforms.ubuntu@24.04:arm64: architecture \"arm64\" is not \
             supported: cargo pack builds x86_64-unknown-linux-gnu (amd64) only"
        );
        let text = GOOD.replace("ubuntu@24.04:amd64:", "amd64:");
        assert!(err(&text).starts_with("charmcraft.yaml: platforms.amd64: \"amd64\" names no base"));
        let text = GOOD.replace("ubuntu@24.04:amd64:", "ubuntu:amd64:");
        assert!(err(&text).contains("is not of the form <name>@<channel>"));
        let text = GOOD.replace("ubuntu@24.04:amd64:", "x:\n    build-on: [amd64]");
        assert_eq!(
            err(&text),
            "charmcraft.yaml: platforms.x: missing required key \"build-for\""
        );
        let text = GOOD.replace("  ubuntu@22.04:amd64:\n  ubuntu@24.04:amd64:\n", "  {}\n");
        assert!(err(&text).starts_with("charmcraft.yaml: platforms"));
    }

    #[test]
    fn config_option_without_type() {
        let text = GOOD.replace("      type: int\n", "");
        assert_eq!(
            err(&text),
            "charmcraft.yaml: config.options.port: missing required key \"type\""
        );
        assert_eq!(
            err(&with_option("    empty:")),
            "charmcraft.yaml: config.options.empty: missing required key \"type\""
        );
    }

    #[test]
    fn config_option_with_unknown_type() {
        let text = GOOD.replace("type: int", "type: integer");
        assert_eq!(
            err(&text),
            "charmcraft.yaml: config.options.port.type: \"integer\" is not one of string, int, \
             float, boolean, secret"
        );
    }

    #[test]
    fn config_defaults_must_match_their_type() {
        let cases = [
            (
                "int",
                "'8080'",
                "\"8080\" (a string) does not match type \"int\"",
            ),
            ("int", "80.5", "80.5 (a float) does not match type \"int\""),
            (
                "int",
                "true",
                "true (a boolean) does not match type \"int\"",
            ),
            (
                "float",
                "fast",
                "\"fast\" (a string) does not match type \"float\"",
            ),
            (
                "boolean",
                "'yes'",
                "\"yes\" (a string) does not match type \"boolean\"",
            ),
            (
                "boolean",
                "1",
                "1 (an integer) does not match type \"boolean\"",
            ),
            (
                "string",
                "8080",
                "8080 (an integer) does not match type \"string\"",
            ),
            ("secret", "[a]", "(a list) does not match type \"secret\""),
        ];
        for (ty, default, msg) in cases {
            let text = with_option(&format!(
                "    opt:\n      type: {ty}\n      default: {default}"
            ));
            let e = err(&text);
            assert!(
                e.starts_with("charmcraft.yaml: config.options.opt.default: "),
                "{e}"
            );
            assert!(e.ends_with(msg), "{ty} {default}: {e}");
        }
        for (ty, default) in [
            ("int", "-3"),
            ("float", "3"),
            ("float", "0.5"),
            ("boolean", "false"),
            ("string", "''"),
            ("secret", "secret:abc"),
            ("string", "~"),
        ] {
            let text = with_option(&format!(
                "    opt:\n      type: {ty}\n      default: {default}"
            ));
            Project::parse(&text).unwrap_or_else(|e| panic!("{ty} {default}: {e}"));
        }
    }

    #[test]
    fn other_config_mistakes() {
        assert_eq!(
            err(&with_option(
                "    opt:\n      type: string\n      defualt: x"
            )),
            "charmcraft.yaml: config.options.opt: unknown key \"defualt\" (expected type, \
             default, description)"
        );
        assert!(err(&with_option("    my_opt:\n      type: string")).contains("snake_case"));
        assert_eq!(
            err(&variant("", "config:\n  port: 1\n")
                .replace("config:\n  options:", "junk:\n  options:")),
            "charmcraft.yaml: config.port: unknown key (only \"options\" is allowed)"
        );
    }

    #[test]
    fn bad_actions_and_relations() {
        assert!(err(&variant("", "actions:\n  Do_It:\n"))
            .starts_with("charmcraft.yaml: actions.Do_It: bad action name"));
        assert!(err(&variant(
            "",
            "actions:\n  go:\n    params:\n      dry_run: {type: boolean}\n"
        ))
        .starts_with("charmcraft.yaml: actions.go.params.dry_run:"));
        assert_eq!(
            err(&variant("", "requires:\n  db: {limit: 1}\n")),
            "charmcraft.yaml: requires.db: missing required key \"interface\""
        );
        assert!(err(&variant(
            "",
            "provides:\n  juju-info: {interface: juju-info}\n"
        ))
        .contains("reserved"));
        assert!(err(&variant("", "series: [jammy]\n"))
            .starts_with("charmcraft.yaml: series: not allowed"));
        assert!(err(&without_links("links:\n  homepage: https://x\n"))
            .starts_with("charmcraft.yaml: links.homepage: unknown link"));
    }
}
