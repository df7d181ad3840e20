//! Makes `charmcraft.yaml` the single source of truth: the option names, types and defaults,
//! the actions and the relation endpoints the binary knows are read from it here, at build
//! time, and the build fails if the file and the code disagree (options are checked here;
//! actions and endpoints become enums the charm matches on exhaustively).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::{env, fs, path::Path};

use serde::Deserialize;

#[derive(Deserialize)]
struct Charmcraft {
    name: String,
    #[serde(default)]
    config: Option<Config>,
    #[serde(default)]
    actions: BTreeMap<String, serde_yaml::Value>,
    #[serde(default)]
    provides: BTreeMap<String, Endpoint>,
    #[serde(default)]
    requires: BTreeMap<String, Endpoint>,
    #[serde(default)]
    peers: BTreeMap<String, Endpoint>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    options: BTreeMap<String, ConfigOption>,
}

#[derive(Deserialize)]
struct ConfigOption {
    #[serde(rename = "type")]
    kind: String,
    default: Option<serde_yaml::Value>,
}

#[derive(Deserialize)]
struct Endpoint {
    interface: String,
}

/// The options the charm code reads, with the type the code expects.
const EXPECTED_OPTIONS: &[(&str, &str)] = &[("channel", "string"), ("port", "int")];

fn main() {
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let path = Path::new(&manifest_dir).join("charmcraft.yaml");
    println!("cargo:rerun-if-changed={}", path.display());
    let text =
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let charm: Charmcraft =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let options = charm.config.map(|c| c.options).unwrap_or_default();

    let mut out = String::new();
    writeln!(out, "/// The charm's name (`name` in charmcraft.yaml).").unwrap();
    writeln!(out, "pub(crate) const CHARM_NAME: &str = {:?};", charm.name).unwrap();
    for (name, kind) in EXPECTED_OPTIONS {
        let option = options.get(*name).unwrap_or_else(|| {
            panic!("charmcraft.yaml: config.options.{name} is missing but the charm reads it")
        });
        assert_eq!(
            option.kind, *kind,
            "charmcraft.yaml: config.options.{name}.type must be {kind}"
        );
        let ident = name.to_uppercase();
        writeln!(out, "/// Config option name, from charmcraft.yaml.").unwrap();
        writeln!(out, "pub(crate) const OPTION_{ident}: &str = {name:?};").unwrap();
        match (kind, &option.default) {
            (&"string", Some(serde_yaml::Value::String(s))) => {
                writeln!(out, "/// Default of `{name}`, from charmcraft.yaml.").unwrap();
                writeln!(out, "pub(crate) const DEFAULT_{ident}: &str = {s:?};").unwrap();
            }
            (&"int", Some(serde_yaml::Value::Number(n))) if n.is_i64() => {
                writeln!(out, "/// Default of `{name}`, from charmcraft.yaml.").unwrap();
                writeln!(
                    out,
                    "pub(crate) const DEFAULT_{ident}: i64 = {};",
                    n.as_i64().unwrap()
                )
                .unwrap();
            }
            _ => panic!("charmcraft.yaml: config.options.{name}.default must be a {kind}"),
        }
    }
    // Actions and endpoints become enums: the charm matches on them exhaustively, so an
    // action or relation declared here but not handled in the code (or the reverse) is a
    // compile error.
    let actions: Vec<(String, Vec<String>)> = charm
        .actions
        .keys()
        .map(|name| (name.clone(), Vec::new()))
        .collect();
    write_enum(
        &mut out,
        "Action",
        "An action declared in charmcraft.yaml.",
        &actions,
        &[],
    );
    let mut endpoints = Vec::new();
    for (role, map) in [
        ("provides", &charm.provides),
        ("requires", &charm.requires),
        ("peers", &charm.peers),
    ] {
        for (name, endpoint) in map {
            endpoints.push((
                name.clone(),
                vec![role.to_string(), endpoint.interface.clone()],
            ));
        }
    }
    write_enum(
        &mut out,
        "Endpoint",
        "A relation endpoint declared in charmcraft.yaml.",
        &endpoints,
        &["role", "interface"],
    );

    let out_dir = env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    fs::write(Path::new(&out_dir).join("metadata.rs"), out).expect("write metadata.rs");
    let cos = cos_assets(&Path::new(&manifest_dir).join("src/cos"));
    fs::write(Path::new(&out_dir).join("cos_assets.rs"), cos).expect("write cos_assets.rs");
}

/// `enum <name>` with one variant per entry (`cos-agent` becomes `CosAgent`), `from_name`,
/// `name`, and one `&'static str` accessor per extra field.
fn write_enum(
    out: &mut String,
    name: &str,
    doc: &str,
    entries: &[(String, Vec<String>)],
    fields: &[&str],
) {
    let variant = |entry: &str| -> String {
        entry
            .split(['-', '_'])
            .map(|part| {
                let mut chars = part.chars();
                chars
                    .next()
                    .map(|c| c.to_ascii_uppercase().to_string() + chars.as_str())
                    .unwrap_or_default()
            })
            .collect()
    };
    writeln!(out, "/// {doc}").unwrap();
    writeln!(out, "#[derive(Debug, Clone, Copy, PartialEq, Eq)]").unwrap();
    writeln!(out, "pub(crate) enum {name} {{").unwrap();
    for (entry, _) in entries {
        writeln!(out, "    /// `{entry}`.").unwrap();
        writeln!(out, "    {},", variant(entry)).unwrap();
    }
    writeln!(out, "}}").unwrap();
    writeln!(out, "#[allow(dead_code)]").unwrap();
    writeln!(out, "impl {name} {{").unwrap();
    writeln!(out, "    /// Every variant, in charmcraft.yaml's order.").unwrap();
    let all: Vec<String> = entries
        .iter()
        .map(|(e, _)| format!("{name}::{}", variant(e)))
        .collect();
    writeln!(
        out,
        "    pub(crate) const ALL: &[{name}] = &[{}];",
        all.join(", ")
    )
    .unwrap();
    writeln!(out, "    /// The variant named `name` in charmcraft.yaml.").unwrap();
    writeln!(
        out,
        "    pub(crate) fn from_name(name: &str) -> Option<{name}> {{"
    )
    .unwrap();
    writeln!(out, "        match name {{").unwrap();
    for (entry, _) in entries {
        writeln!(
            out,
            "            {entry:?} => Some({name}::{}),",
            variant(entry)
        )
        .unwrap();
    }
    writeln!(out, "            _ => None,\n        }}\n    }}").unwrap();
    let mut accessor = |field: &str, index: Option<usize>| {
        writeln!(
            out,
            "    /// `{field}` in charmcraft.yaml.\n    pub(crate) fn {field}(self) -> &'static str {{\n        match self {{"
        )
        .unwrap();
        for (entry, values) in entries {
            let value = index.map_or(entry.as_str(), |i| values[i].as_str());
            writeln!(out, "            {name}::{} => {value:?},", variant(entry)).unwrap();
        }
        writeln!(out, "        }}\n    }}").unwrap();
    };
    accessor("name", None);
    for (i, field) in fields.iter().enumerate() {
        accessor(field, Some(i));
    }
    writeln!(out, "}}").unwrap();
}

/// The COS assets, checked and turned into what the cos-agent relation carries: the alert
/// rules as JSON, the dashboard as base64 of xz-compressed JSON (so the binary needs
/// neither a YAML parser nor an xz encoder).
fn cos_assets(dir: &Path) -> String {
    let rules_path = dir.join("alert_rules.yaml");
    let dashboard_path = dir.join("dashboard.json");
    for path in [&rules_path, &dashboard_path] {
        println!("cargo:rerun-if-changed={}", path.display());
    }
    let rules_text = fs::read_to_string(&rules_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", rules_path.display()));
    let rules: RuleFile = serde_yaml::from_str(&rules_text)
        .unwrap_or_else(|e| panic!("{}: not a Prometheus rule file: {e}", rules_path.display()));
    assert!(
        !rules.groups.is_empty(),
        "{}: no rule groups",
        rules_path.display()
    );
    for group in &rules.groups {
        assert!(
            !group.rules.is_empty(),
            "{}: group {} has no rules",
            rules_path.display(),
            group.name
        );
    }
    let rules_json: serde_json::Value = serde_yaml::from_str(&rules_text).expect("parsed above");

    let dashboard = fs::read(&dashboard_path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dashboard_path.display()));
    let parsed: serde_json::Value = serde_json::from_slice(&dashboard)
        .unwrap_or_else(|e| panic!("{}: not JSON: {e}", dashboard_path.display()));
    assert!(
        parsed.get("title").is_some(),
        "{}: a dashboard needs a title",
        dashboard_path.display()
    );
    let mut xz = Vec::new();
    lzma_rs::xz_compress(&mut &dashboard[..], &mut xz).expect("xz in memory");
    use base64::Engine as _;
    let encoded = base64::engine::general_purpose::STANDARD.encode(xz);

    format!(
        "/// src/cos/alert_rules.yaml as JSON.\n\
         pub(crate) const ALERT_RULES_JSON: &str = {:?};\n\
         /// src/cos/dashboard.json, xz-compressed and base64-encoded (cos_agent's encoding).\n\
         pub(crate) const DASHBOARD_XZ_BASE64: &str = {encoded:?};\n",
        rules_json.to_string()
    )
}

/// Just enough of a Prometheus rule file to reject a malformed one at build time.
#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<RuleGroup>,
}

#[derive(Deserialize)]
struct RuleGroup {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
#[allow(dead_code)] // the fields are read to check they are there
struct Rule {
    alert: String,
    expr: String,
}
