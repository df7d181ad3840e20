//! The `cos-agent` relation (interface `cos_agent`): what this unit publishes so a
//! grafana-agent or opentelemetry-collector subordinate scrapes microsample's `/metrics`,
//! loads its alert rules and installs its dashboard in COS.
//!
//! The requirer validates the unit databag key `config` as a JSON object with five required
//! fields (and drops the data silently when one is missing): `metrics_alert_rules`,
//! `log_alert_rules`, `dashboards`, `metrics_scrape_jobs` and `log_slots`. The rules and
//! the dashboard are the files in `src/cos/`, prepared by build.rs.
//!
//! The content follows what the Python provider (`COSAgentProvider` in
//! `lib/charms/grafana_agent/v0/cos_agent.py`, LIBPATCH 26, with `cosl` 1.9) writes, so COS
//! shows this charm like any other:
//!
//! - scrape jobs are named `<application>_<job or "default">_<hash>`, the hash being the
//!   8 hex digits of BLAKE2b with a 4-byte digest of the job without `job_name`, serialized
//!   as Python's `json.dumps(job, sort_keys=True)` (`_dict_hash_except_key`);
//! - alert rule groups are named `<model>_<uuid[:8]>_<application>_<group>_rules` with every
//!   character outside `[a-zA-Z0-9_:]` replaced by `_` (`cosl.rules.Rules._from_dict`); every
//!   rule gets the labels `juju_model`, `juju_model_uuid`, `juju_application` and
//!   `juju_charm` it does not already have, and its expression the first three as matchers
//!   where the rule file writes `%%juju_topology%%` (what `cosl` does with `cos-tool`, which
//!   puts them in every vector selector: our rule files put the placeholder in every one);
//! - the generic `HostHealth` group of `cosl.rules.generic_alert_groups.application_rules`
//!   (`HostDown`, `HostMetricsMissing`) comes after the charm's own groups;
//! - the dashboard's `uid` is `DashboardPath40UID.generate(<charm>, <path>)` (SHAKE-256 of
//!   `<charm>-<path>`, 20 bytes as 40 hex digits) and its tags include `charm: <charm>`;
//!   both are written in `src/cos/dashboard.json` itself (the binary has no xz encoder to
//!   rewrite it), and a test recomputes them;
//! - with no metrics (a microsample revision without `/metrics`), no scrape job and
//!   `metrics_alert_rules` `{}`, which is what `cosl` writes for no rules and what the
//!   requirer skips; the dashboard is still published.

use serde_json::{json, Map, Value};

use crate::metadata::CHARM_NAME;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/cos_assets.rs"));
}
pub(crate) use assets::{ALERT_RULES_JSON, DASHBOARD_XZ_BASE64};

/// The unit databag key the requirer reads.
pub(crate) const DATABAG_KEY: &str = "config";
/// The dashboard's path in the charm's source, which its `uid` is derived from (the uid in
/// the file is checked against it by the tests).
#[cfg(test)]
const DASHBOARD_PATH: &str = "src/cos/dashboard.json";
/// What the rule files write where the topology matchers go.
const TOPOLOGY_PLACEHOLDER: &str = "%%juju_topology%%";
/// The labels injected as expression matchers, in the order `cos-tool` prints them.
const MATCHER_LABELS: [&str; 3] = ["juju_application", "juju_model", "juju_model_uuid"];

/// Where this unit sits in Juju, for labels and rule matchers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Topology {
    pub(crate) model: String,
    pub(crate) model_uuid: String,
    pub(crate) application: String,
}

impl Topology {
    /// From the hook environment (`JUJU_MODEL_NAME`, `JUJU_MODEL_UUID`, `JUJU_UNIT_NAME`).
    pub(crate) fn from_env() -> Topology {
        let var = |name| std::env::var(name).unwrap_or_default();
        let unit = var("JUJU_UNIT_NAME");
        let application = match unit.split_once('/') {
            Some((app, _)) if !app.is_empty() => app.to_string(),
            _ => CHARM_NAME.to_string(),
        };
        Topology {
            model: var("JUJU_MODEL_NAME"),
            model_uuid: var("JUJU_MODEL_UUID"),
            application,
        }
    }

    /// The labels every rule carries (`JujuTopology.label_matcher_dict`: no unit, no empty
    /// value).
    fn labels(&self) -> impl Iterator<Item = (&'static str, &str)> {
        [
            ("juju_model", self.model.as_str()),
            ("juju_model_uuid", self.model_uuid.as_str()),
            ("juju_application", self.application.as_str()),
            ("juju_charm", CHARM_NAME),
        ]
        .into_iter()
        .filter(|(_, value)| !value.is_empty())
    }

    /// `JujuTopology.identifier`: `<model>_<first 8 characters of the uuid>_<application>`.
    pub(crate) fn identifier(&self) -> String {
        let uuid: String = self.model_uuid.chars().take(8).collect();
        format!("{}_{uuid}_{}", self.model, self.application).replace('/', "_")
    }
}

fn promql_escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// `cosl`'s generic application rules (`generic_alert_groups.application_rules`), with the
/// placeholder where `cos-tool` would put the matchers.
fn generic_application_rules() -> Value {
    json!({"groups": [{
        "name": "HostHealth",
        "rules": [
            {
                "alert": "HostDown",
                "expr": format!("up{{{TOPOLOGY_PLACEHOLDER}}} < 1"),
                "for": "5m",
                "labels": {"severity": "critical"},
                "annotations": {
                    "summary": "Host '{{ $labels.instance }}' is down.",
                    "description": "Juju application '{{ $labels.juju_application }}' in model '{{ $labels.juju_model }}' is down. Prometheus has been unable to scrape it during at least the past five minutes.",
                },
            },
            {
                "alert": "HostMetricsMissing",
                "expr": format!("absent(up{{{TOPOLOGY_PLACEHOLDER}}})"),
                "for": "5m",
                "labels": {"severity": "warning"},
                "annotations": {
                    "summary": "Unit '{{ $labels.juju_unit }}' of application '{{ $labels.juju_application }}' is down or failing to remote write.",
                    "description": "`Up` missing for unit '{{ $labels.juju_unit }}' of application {{ $labels.juju_application }} in model {{ $labels.juju_model }}. Please ensure the unit or the collector scraping it is up and is able to successfully reach the metrics backend.",
                },
            },
        ],
    }]})
}

/// `Rules._is_already_modified`: the name matches `^.*?_[0-9a-f]{8}_.*?rules$`.
fn already_modified(name: &str) -> bool {
    let bytes = name.as_bytes();
    name.ends_with("rules")
        && (0..bytes.len()).any(|i| {
            bytes.len() >= i + 15
                && bytes[i] == b'_'
                && bytes[i + 1..i + 9]
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b))
                && bytes[i + 9] == b'_'
        })
}

/// The group name `cosl` gives a group of this charm's rules.
fn group_name(identifier: &str, name: &str) -> String {
    let name = if already_modified(name) {
        name.to_string()
    } else {
        let mut joined = [identifier, name]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("_");
        if !joined.ends_with("_rules") {
            joined.push_str("_rules");
        }
        joined
    };
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Topology labels (those the rule lacks) and expression matchers for one rule.
fn inject(rule: &mut Value, topology: &Topology) {
    if !rule["labels"].is_object() {
        rule["labels"] = json!({});
    }
    for (name, value) in topology.labels() {
        if rule["labels"].get(name).is_none() {
            rule["labels"][name] = Value::from(value);
        }
    }
    let matchers = MATCHER_LABELS
        .iter()
        .filter_map(|name| {
            let value = rule["labels"][*name].as_str()?;
            Some(format!("{name}=\"{}\"", promql_escape(value)))
        })
        .collect::<Vec<_>>()
        .join(",");
    if let Some(expr) = rule["expr"].as_str() {
        let expr = if matchers.is_empty() {
            // As `cosl`: the placeholder and a comma after it go.
            expr.replace(&format!("{TOPOLOGY_PLACEHOLDER},"), "")
                .replace(TOPOLOGY_PLACEHOLDER, "")
        } else {
            expr.replace(TOPOLOGY_PLACEHOLDER, &matchers)
        };
        rule["expr"] = Value::from(expr);
    }
}

/// The alert rules with this unit's topology: `src/cos/alert_rules.yaml`'s groups, then
/// `cosl`'s generic `HostHealth` group, named and labelled as `cosl` does.
pub(crate) fn alert_rules(topology: &Topology) -> Value {
    let own: Value = serde_json::from_str(ALERT_RULES_JSON).unwrap_or_default();
    let identifier = topology.identifier();
    let mut groups = Vec::new();
    for source in [own, generic_application_rules()] {
        let Some(source) = source.get("groups").and_then(Value::as_array) else {
            continue;
        };
        for group in source {
            let mut group = group.clone();
            if let Some(name) = group["name"].as_str() {
                group["name"] = Value::from(group_name(&identifier, name));
            }
            for rule in group["rules"].as_array_mut().into_iter().flatten() {
                inject(rule, topology);
            }
            groups.push(group);
        }
    }
    if groups.is_empty() {
        json!({})
    } else {
        json!({ "groups": groups })
    }
}

/// The scrape jobs: microsample's `/metrics` on `localhost:<port>` (the requirer is a
/// subordinate on the same machine and adds the topology labels itself).
pub(crate) fn scrape_jobs(topology: &Topology, port: u16) -> Value {
    let mut job = json!({
        "metrics_path": "/metrics",
        "static_configs": [{"targets": [format!("localhost:{port}")]}],
    });
    job["job_name"] = Value::from(job_name(&topology.application, &job));
    json!([job])
}

/// `COSAgentProvider._deterministic_scrape_configs`: `<app>_<job_name or default>_<hash>`,
/// hashing the job without its `job_name`.
fn job_name(application: &str, job: &Value) -> String {
    let mut hashed = job.clone();
    let name = match hashed.as_object_mut().and_then(|o| o.remove("job_name")) {
        Some(Value::String(name)) => name,
        _ => "default".to_string(),
    };
    let digest = blake2b(4, python_json_dumps(&hashed).as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{application}_{name}_{hex}")
}

/// The unit databag to write on every cos-agent relation: `{"config": "<json>"}`. Without
/// `metrics` (the running microsample serves no Prometheus text on `/metrics`) there is no
/// scrape job and no metrics alert rule (they would scrape nothing and alert forever); the
/// dashboard and the other fields are published all the same.
pub(crate) fn unit_databag(topology: &Topology, port: u16, metrics: bool) -> Map<String, Value> {
    let config = match metrics {
        true => config_from_template(topology, port)
            .unwrap_or_else(|| config_text(alert_rules(topology), scrape_jobs(topology, port))),
        false => config_text(json!({}), json!([])),
    };
    let mut databag = Map::new();
    databag.insert(DATABAG_KEY.into(), Value::from(config));
    databag
}

/// The `config` value: every field the requirer wants, in serde_json's (sorted) key order.
fn config_text(metrics_alert_rules: Value, metrics_scrape_jobs: Value) -> String {
    json!({
        "metrics_alert_rules": metrics_alert_rules,
        "log_alert_rules": {},
        "dashboards": [DASHBOARD_XZ_BASE64],
        "metrics_scrape_jobs": metrics_scrape_jobs,
        "log_slots": [],
        "tracing_protocols": null,
    })
    .to_string()
}

/// [`alert_rules`] of [`TEMPLATE_TOPOLOGY`], serialised, with the topology in group names
/// marked apart ([`template::SANITIZED`]): written by the `rules_template_is_current`
/// test (`UPDATE_RULES_TEMPLATE=1 cargo test rules_template`), which fails when it is stale.
const RULES_TEMPLATE: &str = include_str!("cos/alert_rules.template.json");

/// The placeholders [`RULES_TEMPLATE`] is made with: letters only, so no escaping or
/// sanitising changes them, and no real name contains them. The uuid's first 8 characters
/// (in group names) are a placeholder of their own.
const TEMPLATE_TOPOLOGY: [&str; 3] = ["ZqModelQz", "ZqUuidFrQzRestQz", "ZqAppQz"];

mod template {
    /// The placeholders as they appear in group names, where `cosl` sanitises them.
    pub(super) const SANITIZED: [&str; 2] = ["ZsModelQz", "ZsAppQz"];
    /// The first 8 characters of the uuid placeholder.
    pub(super) const UUID_PREFIX: &str = "ZqUuidFr";
}

/// The `config` value from [`RULES_TEMPLATE`]: the same text as
/// `config_text(alert_rules(..), scrape_jobs(..))` at a fraction of the CPU (the rule
/// groups are not rebuilt, cloned and relabelled as JSON trees in every hook). Only for a
/// topology of Juju names (lowercase letters, digits, `-`) and a hex uuid, which no
/// escaping changes and which `cosl` sanitises only by `-` → `_`; anything else takes the
/// general path (`None`).
fn config_from_template(topology: &Topology, port: u16) -> Option<String> {
    let name = |v: &str| {
        !v.is_empty()
            && v.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    };
    let uuid = &topology.model_uuid;
    let hex = uuid.len() >= 8 && uuid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    if !(name(&topology.model) && name(&topology.application) && hex) {
        return None;
    }
    let [model, full_uuid, app] = TEMPLATE_TOPOLOGY;
    let [sanitized_model, sanitized_app] = template::SANITIZED;
    let rules = RULES_TEMPLATE
        .trim_end()
        .replace(sanitized_model, &topology.model.replace('-', "_"))
        .replace(sanitized_app, &topology.application.replace('-', "_"))
        .replace(full_uuid, uuid)
        .replace(template::UUID_PREFIX, &uuid[..8].replace('-', "_"))
        .replace(model, &topology.model)
        .replace(app, &topology.application);
    let jobs = scrape_jobs(topology, port).to_string();
    Some(format!(
        "{{\"dashboards\":[\"{DASHBOARD_XZ_BASE64}\"],\"log_alert_rules\":{{}},\"log_slots\":[],\"metrics_alert_rules\":{rules},\"metrics_scrape_jobs\":{jobs},\"tracing_protocols\":null}}"
    ))
}

pub(crate) use exposition::is_prometheus_text;

/// Telling Prometheus text from other answers on `/metrics`.
mod exposition {

    /// Whether a `/metrics` answer is Prometheus exposition text. `content_type` is the
    /// `Content-Type` header, if any. A declared exposition format (`text/plain` with a
    /// `version` parameter, as `prometheus_client` sends, or `application/openmetrics-text`)
    /// needs a body of valid lines (it may have no sample); no content type or a bare
    /// `text/plain` needs valid lines and at least one sample or `# TYPE` line; any other
    /// content type (Flask's `text/html` for `Online` or a 404 page, JSON) is not.
    pub(crate) fn is_prometheus_text(content_type: Option<&str>, body: &str) -> bool {
        let declared = match content_type.map(str::trim).filter(|t| !t.is_empty()) {
            None => false,
            Some(content_type) => {
                let mut parts = content_type.split(';');
                let media = parts.next().unwrap_or("").trim().to_ascii_lowercase();
                let versioned = parts.any(|p| {
                    p.split_once('=')
                        .is_some_and(|(k, _)| k.trim().eq_ignore_ascii_case("version"))
                });
                match media.as_str() {
                    "application/openmetrics-text" => true,
                    "text/plain" => versioned,
                    _ => return false,
                }
            }
        };
        let mut evidence = false;
        for line in body.lines() {
            let line = line.trim_matches([' ', '\t', '\r']);
            if line.is_empty() {
                continue;
            }
            if let Some(comment) = line.strip_prefix('#') {
                let mut words = comment.split_whitespace();
                if words.next() == Some("TYPE") && words.next().is_some_and(is_metric_name) {
                    evidence = true;
                }
                continue;
            }
            if !is_sample(line) {
                return false;
            }
            evidence = true;
        }
        declared || evidence
    }

    fn is_metric_name(name: &str) -> bool {
        let mut chars = name.chars();
        chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
            && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    }

    fn is_label_name(name: &str) -> bool {
        is_metric_name(name) && !name.contains(':')
    }

    /// `name[{labels}] value [timestamp]`, and an OpenMetrics exemplar (`# ...`) after it.
    pub(super) fn is_sample(line: &str) -> bool {
        let name_end = line.find(['{', ' ', '\t']).unwrap_or(line.len());
        if !is_metric_name(&line[..name_end]) {
            return false;
        }
        let mut rest = &line[name_end..];
        if let Some(labels) = rest.strip_prefix('{') {
            match skip_labels(labels) {
                Some(after) => rest = after,
                None => return false,
            }
        }
        if !rest.starts_with([' ', '\t']) {
            return false;
        }
        let (sample, _exemplar) = rest.split_once(" # ").unwrap_or((rest, ""));
        let mut fields = sample.split_whitespace();
        let value_ok = fields.next().is_some_and(|v| v.parse::<f64>().is_ok());
        let timestamp_ok = fields.next().is_none_or(|t| t.parse::<f64>().is_ok());
        value_ok && timestamp_ok && fields.next().is_none()
    }

    /// Skips `label="value",...}` (after the `{`); returns what follows the `}`.
    fn skip_labels(mut s: &str) -> Option<&str> {
        loop {
            s = s.trim_start();
            if let Some(after) = s.strip_prefix('}') {
                return Some(after);
            }
            let (name, after) = s.split_once('=')?;
            if !is_label_name(name.trim()) {
                return None;
            }
            let mut chars = after.trim_start().strip_prefix('"')?.char_indices();
            let close = loop {
                match chars.next()? {
                    (_, '\\') => {
                        chars.next()?;
                    }
                    (i, '"') => break i,
                    _ => {}
                }
            };
            let value_start = after.trim_start();
            s = value_start[1 + close + 1..].trim_start();
            if let Some(after) = s.strip_prefix(',') {
                s = after;
            } else if !s.starts_with('}') {
                return None;
            }
        }
    }
}

/// Python's `json.dumps(value, sort_keys=True)`: `", "` and `": "` separators, keys sorted,
/// non-ASCII as `\uXXXX` (UTF-16), the input of the scrape job hash.
fn python_json_dumps(value: &Value) -> String {
    let mut out = String::new();
    dump(value, &mut out);
    out
}

fn dump(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        // Integers print the same; a float would print as Rust does (the jobs have none).
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => dump_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut entries: Vec<_> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push('{');
            for (i, (key, item)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                dump_str(key, out);
                out.push_str(": ");
                dump(item, out);
            }
            out.push('}');
        }
    }
}

fn dump_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
        }
    }
    out.push('"');
}

/// BLAKE2b (RFC 7693), unkeyed, with an `out_len`-byte digest (1 to 64): Python's
/// `hashlib.blake2b(data, digest_size=out_len)`.
fn blake2b(out_len: usize, data: &[u8]) -> Vec<u8> {
    const IV: [u64; 8] = [
        0x6a09e667f3bcc908,
        0xbb67ae8584caa73b,
        0x3c6ef372fe94f82b,
        0xa54ff53a5f1d36f1,
        0x510e527fade682d1,
        0x9b05688c2b3e6c1f,
        0x1f83d9abfb41bd6b,
        0x5be0cd19137e2179,
    ];
    const SIGMA: [[usize; 16]; 10] = [
        [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
        [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
        [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
        [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
        [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
        [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
        [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
        [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
        [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
    ];
    fn g(v: &mut [u64; 16], [a, b, c, d]: [usize; 4], x: u64, y: u64) {
        v[a] = v[a].wrapping_add(v[b]).wrapping_add(x);
        v[d] = (v[d] ^ v[a]).rotate_right(32);
        v[c] = v[c].wrapping_add(v[d]);
        v[b] = (v[b] ^ v[c]).rotate_right(24);
        v[a] = v[a].wrapping_add(v[b]).wrapping_add(y);
        v[d] = (v[d] ^ v[a]).rotate_right(16);
        v[c] = v[c].wrapping_add(v[d]);
        v[b] = (v[b] ^ v[c]).rotate_right(63);
    }
    fn compress(h: &mut [u64; 8], block: &[u8; 128], t: u128, last: bool) {
        let m: [u64; 16] = std::array::from_fn(|i| {
            u64::from_le_bytes(block[i * 8..i * 8 + 8].try_into().unwrap())
        });
        let mut v = [0u64; 16];
        v[..8].copy_from_slice(h);
        v[8..].copy_from_slice(&IV);
        v[12] ^= t as u64;
        v[13] ^= (t >> 64) as u64;
        if last {
            v[14] = !v[14];
        }
        for round in 0..12 {
            let s = &SIGMA[round % 10];
            g(&mut v, [0, 4, 8, 12], m[s[0]], m[s[1]]);
            g(&mut v, [1, 5, 9, 13], m[s[2]], m[s[3]]);
            g(&mut v, [2, 6, 10, 14], m[s[4]], m[s[5]]);
            g(&mut v, [3, 7, 11, 15], m[s[6]], m[s[7]]);
            g(&mut v, [0, 5, 10, 15], m[s[8]], m[s[9]]);
            g(&mut v, [1, 6, 11, 12], m[s[10]], m[s[11]]);
            g(&mut v, [2, 7, 8, 13], m[s[12]], m[s[13]]);
            g(&mut v, [3, 4, 9, 14], m[s[14]], m[s[15]]);
        }
        for i in 0..8 {
            h[i] ^= v[i] ^ v[i + 8];
        }
    }
    assert!((1..=64).contains(&out_len), "BLAKE2b digest size {out_len}");
    let mut h = IV;
    h[0] ^= 0x0101_0000 ^ out_len as u64;
    // Every block but the last is compressed as such; the last (maybe partial, or the one
    // empty block of empty data) is padded with zeros and flagged.
    let last_start = data.len().saturating_sub(1) / 128 * 128;
    for (i, chunk) in data[..last_start].chunks(128).enumerate() {
        let block: &[u8; 128] = chunk.try_into().unwrap();
        compress(&mut h, block, (i as u128 + 1) * 128, false);
    }
    let mut block = [0u8; 128];
    block[..data.len() - last_start].copy_from_slice(&data[last_start..]);
    compress(&mut h, &block, data.len() as u128, true);
    h.iter()
        .flat_map(|word| word.to_le_bytes())
        .take(out_len)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::exposition::is_sample;
    use super::*;

    /// [`RULES_TEMPLATE`] as the code makes it now.
    fn rules_template() -> String {
        let [model, model_uuid, application] = TEMPLATE_TOPOLOGY.map(String::from);
        let mut rules = alert_rules(&Topology {
            model,
            model_uuid,
            application,
        });
        let [sanitized_model, sanitized_app] = template::SANITIZED;
        for group in rules["groups"].as_array_mut().into_iter().flatten() {
            let name = group["name"].as_str().unwrap_or_default();
            assert!(name.contains(template::UUID_PREFIX), "{name}");
            group["name"] = Value::from(
                name.replace(TEMPLATE_TOPOLOGY[0], sanitized_model)
                    .replace(TEMPLATE_TOPOLOGY[2], sanitized_app),
            );
        }
        rules.to_string() + "\n"
    }

    #[test]
    fn rules_template_is_current() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/cos/alert_rules.template.json"
        );
        let made = rules_template();
        if std::env::var_os("UPDATE_RULES_TEMPLATE").is_some() {
            // Compiled in: the next build checks it.
            std::fs::write(path, &made).unwrap();
            return;
        }
        assert_eq!(
            RULES_TEMPLATE, made,
            "stale: UPDATE_RULES_TEMPLATE=1 cargo test rules_template"
        );
    }

    #[test]
    fn the_template_gives_the_same_databag_as_building_the_rules() {
        let cases = [
            ("lab", "1234abcd-0000-4000-8000-000000000000", "microsample"),
            (
                "cos-lite",
                "9d6a1f47-5b3e-4c0d-8e2a-1c7f3b9e4a21",
                "micro-sample-2",
            ),
            ("m", "abcdef12", "a"),
            // Only the general path can take these: it is used, with the same result.
            ("Lab", "1234abcd-0000-4000-8000-000000000000", "microsample"),
            ("lab", "1234", "microsample"),
            ("a\"b", "1234abcd-0000-4000-8000-000000000000", "x/y"),
            ("", "", ""),
        ];
        for (i, (model, uuid, app)) in cases.into_iter().enumerate() {
            let topology = Topology {
                model: model.into(),
                model_uuid: uuid.into(),
                application: app.into(),
            };
            let built = config_text(alert_rules(&topology), scrape_jobs(&topology, 8080));
            let fast = config_from_template(&topology, 8080);
            assert_eq!(fast.is_some(), i < 3, "{model:?} {uuid:?} {app:?}");
            if let Some(fast) = fast {
                assert_eq!(fast, built, "{model:?} {uuid:?} {app:?}");
            }
            let databag = unit_databag(&topology, 8080, true);
            assert_eq!(databag[DATABAG_KEY], Value::from(built));
        }
    }

    fn topology() -> Topology {
        Topology {
            model: "lab".into(),
            model_uuid: "1234abcd-0000-4000-8000-000000000000".into(),
            application: "microsample".into(),
        }
    }

    fn config(port: u16, metrics: bool) -> Value {
        let databag = unit_databag(&topology(), port, metrics);
        assert_eq!(databag.len(), 1);
        serde_json::from_str(databag[DATABAG_KEY].as_str().unwrap()).unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn has_all_the_fields_the_requirer_requires() {
        for metrics in [true, false] {
            let config = config(8080, metrics);
            let mut fields: Vec<&String> = config.as_object().unwrap().keys().collect();
            fields.sort();
            assert_eq!(
                fields,
                [
                    "dashboards",
                    "log_alert_rules",
                    "log_slots",
                    "metrics_alert_rules",
                    "metrics_scrape_jobs",
                    "tracing_protocols"
                ]
            );
            assert_eq!(config["log_alert_rules"], json!({}));
            assert_eq!(config["log_slots"], json!([]));
            assert_eq!(config["tracing_protocols"], Value::Null);
            assert_eq!(config["dashboards"], json!([DASHBOARD_XZ_BASE64]));
        }
    }

    #[test]
    fn without_metrics_there_is_no_scrape_job_and_no_metrics_rule() {
        let config = config(8080, false);
        assert_eq!(config["metrics_scrape_jobs"], json!([]));
        // What cosl's Rules.as_dict() gives for no rules; the requirer skips it.
        assert_eq!(config["metrics_alert_rules"], json!({}));
    }

    /// Vectors from Python's hashlib and RFC 7693 appendix A.
    #[test]
    fn blake2b_matches_python_hashlib() {
        assert_eq!(
            hex(&blake2b(64, b"abc")),
            "ba80a53f981c4d0d6a2797b69f12f6e94c212f14685ac4b74b12bb6fdbffa2d1\
             7d87c5392aab792dc252d5de4533cc9518d38aa8dbf1925ab92386edd4009923"
        );
        for (data, digest) in [
            (&b""[..], "1271cf25"),
            (b"abc", "63906248"),
            (&[b'a'; 128], "12cabd16"),
            (&[b'a'; 129], "55ada03e"),
            (&[b'a'; 256], "c507e6f5"),
            (&[b'a'; 300], "a5de59a0"),
        ] {
            assert_eq!(hex(&blake2b(4, data)), digest, "{} bytes", data.len());
        }
        // hashlib.blake2b(b"a" * 300).hexdigest()[:32]: the 64-byte digest's first bytes.
        assert_eq!(
            hex(&blake2b(64, &[b'a'; 300])[..16]),
            "a2ff3040eda405b929c2fc2fd93e8add"
        );
    }

    /// Python: `json.dumps(v, sort_keys=True)` and its blake2b, for the same `v`.
    #[test]
    fn dumps_like_python() {
        let value = json!({"b": "é\n\"\\/\t😀", "a": [1, "x\u{1}", -2, 0], "c": null, "d": true, "e": false, "B": {}, "f": []});
        let dumped = python_json_dumps(&value);
        assert_eq!(
            dumped,
            r#"{"B": {}, "a": [1, "x\u0001", -2, 0], "b": "\u00e9\n\"\\/\t\ud83d\ude00", "c": null, "d": true, "e": false, "f": []}"#
        );
        assert_eq!(hex(&blake2b(4, dumped.as_bytes())), "45f4f566");
    }

    /// The job names a Python charm with `metrics_endpoints=[{"path": "/metrics", "port":
    /// p}]` publishes (hashes from Python, as in the test above).
    #[test]
    fn the_scrape_job_is_named_and_shaped_as_the_python_provider_does() {
        assert_eq!(
            config(8080, true)["metrics_scrape_jobs"],
            json!([{
                "job_name": "microsample_default_a15914a0",
                "metrics_path": "/metrics",
                "static_configs": [{"targets": ["localhost:8080"]}],
            }])
        );
        for (port, hash) in [(8081, "7a262f7f"), (65535, "eda195a4"), (1024, "7d9e367d")] {
            let jobs = config(port, true)["metrics_scrape_jobs"].clone();
            assert_eq!(jobs[0]["job_name"], format!("microsample_default_{hash}"));
            assert_eq!(
                jobs[0]["static_configs"],
                json!([{"targets": [format!("localhost:{port}")]}])
            );
        }
        let other = Topology {
            application: "ms-b".into(),
            ..topology()
        };
        assert_eq!(
            scrape_jobs(&other, 8080)[0]["job_name"],
            "ms-b_default_a15914a0"
        );
        // A named job keeps its name in the middle; the name is not hashed.
        let named = json!({"job_name": "x", "metrics_path": "/metrics", "static_configs": [{"targets": ["localhost:8080"]}]});
        assert_eq!(job_name("app", &named), "app_x_a15914a0");
    }

    #[test]
    fn rules_carry_the_topology_and_the_generic_host_health_group() {
        let rules = alert_rules(&topology());
        let groups = rules["groups"].as_array().unwrap();
        let names: Vec<&str> = groups.iter().map(|g| g["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "lab_1234abcd_microsample_microsample_rules",
                "lab_1234abcd_microsample_HostHealth_rules"
            ]
        );
        let matchers = r#"juju_application="microsample",juju_model="lab",juju_model_uuid="1234abcd-0000-4000-8000-000000000000""#;
        let labels = json!({
            "juju_model": "lab",
            "juju_model_uuid": "1234abcd-0000-4000-8000-000000000000",
            "juju_application": "microsample",
            "juju_charm": "microsample",
        });
        let mut alerts = Vec::new();
        for rule in groups.iter().flat_map(|g| g["rules"].as_array().unwrap()) {
            for (name, value) in labels.as_object().unwrap() {
                assert_eq!(&rule["labels"][name], value, "{}", rule["alert"]);
            }
            alerts.push((
                rule["alert"].as_str().unwrap(),
                rule["expr"].as_str().unwrap(),
                rule["labels"]["severity"].as_str().unwrap(),
            ));
        }
        assert_eq!(
            alerts,
            [
                (
                    "MicrosampleHighCallRate",
                    &*format!("rate(microsample_calls_total{{{matchers}}}[5m]) > 10"),
                    "warning"
                ),
                ("HostDown", &format!("up{{{matchers}}} < 1"), "critical"),
                (
                    "HostMetricsMissing",
                    &format!("absent(up{{{matchers}}})"),
                    "warning"
                ),
            ]
        );
        assert!(!rules.to_string().contains("%%"));
    }

    #[test]
    fn every_expression_of_the_rule_file_has_the_placeholder() {
        let rules: Value = serde_json::from_str(ALERT_RULES_JSON).unwrap();
        for group in rules["groups"].as_array().unwrap() {
            for rule in group["rules"].as_array().unwrap() {
                let expr = rule["expr"].as_str().unwrap();
                assert!(expr.contains(TOPOLOGY_PLACEHOLDER), "{expr}");
            }
        }
    }

    #[test]
    fn group_names_follow_cosl() {
        let id = "my-model_1234abcd_my.app";
        assert_eq!(group_name(id, "g"), "my_model_1234abcd_my_app_g_rules");
        assert_eq!(
            group_name(id, "x_rules"),
            "my_model_1234abcd_my_app_x_rules"
        );
        assert_eq!(group_name("", "g é"), "g___rules");
        // Already named by a provider: kept (sanitized).
        assert_eq!(group_name(id, "m_0123abcd_a_rules"), "m_0123abcd_a_rules");
        assert!(already_modified("m_0123abcd_rules"));
        assert!(!already_modified("m_0123abcd_alerts"));
        assert!(!already_modified("m_0123ABCD_a_rules"));
        assert!(!already_modified("m_0123abc_a_rules"));
        let t = Topology {
            model: "m/x".into(),
            model_uuid: "abc".into(),
            application: "a".into(),
        };
        assert_eq!(t.identifier(), "m_x_abc_a");
    }

    #[test]
    fn labels_a_rule_has_win_and_no_topology_leaves_no_placeholder() {
        let mut rule = json!({"alert": "A", "expr": "x{%%juju_topology%%,job=\"j\"} > 0", "labels": {"juju_application": "mine"}});
        inject(&mut rule, &topology());
        assert_eq!(
            rule["expr"],
            r#"x{juju_application="mine",juju_model="lab",juju_model_uuid="1234abcd-0000-4000-8000-000000000000",job="j"} > 0"#
        );
        assert_eq!(rule["labels"]["juju_application"], "mine");
        assert_eq!(rule["labels"]["juju_model"], "lab");
        // Outside Juju (no model, no unit): no matcher, and the placeholder goes with its comma.
        let nowhere = Topology {
            model: String::new(),
            model_uuid: String::new(),
            application: String::new(),
        };
        let mut rule = json!({"alert": "A", "expr": "x{%%juju_topology%%,job=\"j\"} > 0"});
        inject(&mut rule, &nowhere);
        assert_eq!(rule["expr"], "x{job=\"j\"} > 0");
        assert_eq!(rule["labels"], json!({"juju_charm": "microsample"}));
    }

    /// Prometheus' checker and rule unit tester on the published rules: they parse, and the
    /// generic rules fire for this application only.
    #[test]
    fn promtool_accepts_the_rules_and_they_fire_for_this_application_only() {
        use std::process::Command;
        if Command::new("promtool").arg("--version").output().is_err() {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must install promtool (Debian package prometheus)"
            );
            eprintln!("NOTE: promtool not installed; rule structure checked only");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let rules = alert_rules(&topology());
        std::fs::write(dir.path().join("rules.json"), rules.to_string()).unwrap();
        let labels = json!({
            "juju_model": "lab",
            "juju_model_uuid": "1234abcd-0000-4000-8000-000000000000",
            "juju_application": "microsample",
            "juju_charm": "microsample",
            "juju_unit": "microsample/0",
        });
        let series = |app: &str, unit: &str| {
            format!(
                r#"up{{juju_model="lab",juju_model_uuid="1234abcd-0000-4000-8000-000000000000",juju_application="{app}",juju_unit="{unit}",instance="localhost:8080"}}"#
            )
        };
        let test = json!({
            "rule_files": ["rules.json"],
            "evaluation_interval": "1m",
            "tests": [
                {
                    "interval": "1m",
                    "input_series": [
                        {"series": series("microsample", "microsample/0"), "values": "0x10"},
                        {"series": series("other", "other/0"), "values": "0x10"},
                    ],
                    "alert_rule_test": [
                        {"eval_time": "3m", "alertname": "HostDown", "exp_alerts": []},
                        {"eval_time": "6m", "alertname": "HostDown", "exp_alerts": [{
                            "exp_labels": {
                                "severity": "critical",
                                "instance": "localhost:8080",
                                "juju_model": labels["juju_model"],
                                "juju_model_uuid": labels["juju_model_uuid"],
                                "juju_application": "microsample",
                                "juju_charm": "microsample",
                                "juju_unit": "microsample/0",
                            },
                            "exp_annotations": {
                                "summary": "Host 'localhost:8080' is down.",
                                "description": "Juju application 'microsample' in model 'lab' is down. Prometheus has been unable to scrape it during at least the past five minutes.",
                            },
                        }]},
                        {"eval_time": "6m", "alertname": "HostMetricsMissing", "exp_alerts": []},
                    ],
                },
                {
                    "interval": "1m",
                    "input_series": [{"series": series("other", "other/0"), "values": "1x10"}],
                    "alert_rule_test": [
                        {"eval_time": "6m", "alertname": "HostDown", "exp_alerts": []},
                        {"eval_time": "6m", "alertname": "HostMetricsMissing", "exp_alerts": [{
                            "exp_labels": {
                                "severity": "warning",
                                "juju_model": "lab",
                                "juju_model_uuid": "1234abcd-0000-4000-8000-000000000000",
                                "juju_application": "microsample",
                                "juju_charm": "microsample",
                            },
                            "exp_annotations": {
                                "summary": "Unit '' of application 'microsample' is down or failing to remote write.",
                                "description": "`Up` missing for unit '' of application microsample in model lab. Please ensure the unit or the collector scraping it is up and is able to successfully reach the metrics backend.",
                            },
                        }]},
                    ],
                },
            ],
        });
        std::fs::write(dir.path().join("test.json"), test.to_string()).unwrap();
        for args in [
            ["check", "rules", "rules.json"],
            ["test", "rules", "test.json"],
        ] {
            let run = Command::new("promtool")
                .args(args)
                .current_dir(dir.path())
                .output()
                .unwrap();
            assert!(
                run.status.success(),
                "promtool {args:?}: {}{}",
                String::from_utf8_lossy(&run.stdout),
                String::from_utf8_lossy(&run.stderr)
            );
        }
    }

    /// `DashboardPath40UID.generate(charm, path)`: SHAKE-256, 20 bytes, of `<charm>-<path>`.
    #[test]
    fn the_dashboard_carries_the_cos_uid_and_charm_tag() {
        use base64::Engine as _;
        let xz = base64::engine::general_purpose::STANDARD
            .decode(DASHBOARD_XZ_BASE64)
            .unwrap();
        let mut json = Vec::new();
        lzma_rs::xz_decompress(&mut &xz[..], &mut json).unwrap();
        let dashboard: Value = serde_json::from_slice(&json).unwrap();
        let uid = hex(&keccak::shake256(
            format!("{CHARM_NAME}-{DASHBOARD_PATH}").as_bytes(),
            20,
        ));
        // From Python: hashlib.shake_256(b"microsample-src/cos/dashboard.json").hexdigest(20)
        assert_eq!(uid, "ebaba1a2845dd75f5a5ed333937310ef9798f904");
        assert_eq!(
            dashboard["uid"], uid,
            "set src/cos/dashboard.json's uid to {uid}"
        );
        let tags = dashboard["tags"].as_array().unwrap();
        let charm_tags: Vec<&Value> = tags
            .iter()
            .filter(|t| t.as_str().unwrap().starts_with("charm: "))
            .collect();
        assert_eq!(charm_tags, [&json!(format!("charm: {CHARM_NAME}"))]);
    }

    #[test]
    fn shake256_matches_known_vectors() {
        assert_eq!(
            hex(&keccak::shake256(b"", 32)),
            "46b9dd2b0ba88d13233b3feb743eeb243fcd52ea62b81b82b50c27646ed5762f"
        );
        // Python: hashlib.shake_256(b"a" * 200).hexdigest(20) (more than one 136-byte block)
        assert_eq!(
            hex(&keccak::shake256(&[b'a'; 200], 20)),
            "e49647491c9d12d125a2f75826c96f6307d2fabe"
        );
    }

    /// SHAKE-256 (FIPS 202), for the test above only: the uid is computed once, here.
    mod keccak {
        const RC: [u64; 24] = [
            0x0000000000000001,
            0x0000000000008082,
            0x800000000000808a,
            0x8000000080008000,
            0x000000000000808b,
            0x0000000080000001,
            0x8000000080008081,
            0x8000000000008009,
            0x000000000000008a,
            0x0000000000000088,
            0x0000000080008009,
            0x000000008000000a,
            0x000000008000808b,
            0x800000000000008b,
            0x8000000000008089,
            0x8000000000008003,
            0x8000000000008002,
            0x8000000000000080,
            0x000000000000800a,
            0x800000008000000a,
            0x8000000080008081,
            0x8000000000008080,
            0x0000000080000001,
            0x8000000080008008,
        ];
        const RHO: [u32; 24] = [
            1, 3, 6, 10, 15, 21, 28, 36, 45, 55, 2, 14, 27, 41, 56, 8, 25, 43, 62, 18, 39, 61, 20,
            44,
        ];
        const PI: [usize; 24] = [
            10, 7, 11, 17, 18, 3, 5, 16, 8, 21, 24, 4, 15, 23, 19, 13, 12, 2, 20, 14, 22, 9, 6, 1,
        ];
        const RATE: usize = 136;

        fn keccak_f(a: &mut [u64; 25]) {
            for rc in RC {
                let mut c = [0u64; 5];
                for x in 0..5 {
                    c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
                }
                for x in 0..5 {
                    let d = c[(x + 4) % 5] ^ c[(x + 1) % 5].rotate_left(1);
                    for y in 0..5 {
                        a[x + 5 * y] ^= d;
                    }
                }
                let mut last = a[1];
                for i in 0..24 {
                    let j = PI[i];
                    let next = a[j];
                    a[j] = last.rotate_left(RHO[i]);
                    last = next;
                }
                for y in 0..5 {
                    let row: [u64; 5] = std::array::from_fn(|x| a[x + 5 * y]);
                    for x in 0..5 {
                        a[x + 5 * y] = row[x] ^ (!row[(x + 1) % 5] & row[(x + 2) % 5]);
                    }
                }
                a[0] ^= rc;
            }
        }

        fn xor_byte(state: &mut [u64; 25], i: usize, byte: u8) {
            state[i / 8] ^= (byte as u64) << (8 * (i % 8));
        }

        pub(super) fn shake256(data: &[u8], out_len: usize) -> Vec<u8> {
            let mut state = [0u64; 25];
            let mut blocks = data.chunks_exact(RATE);
            for block in &mut blocks {
                for (i, byte) in block.iter().enumerate() {
                    xor_byte(&mut state, i, *byte);
                }
                keccak_f(&mut state);
            }
            let tail = blocks.remainder();
            for (i, byte) in tail.iter().enumerate() {
                xor_byte(&mut state, i, *byte);
            }
            xor_byte(&mut state, tail.len(), 0x1f);
            xor_byte(&mut state, RATE - 1, 0x80);
            keccak_f(&mut state);
            let mut out = Vec::new();
            loop {
                for i in 0..RATE {
                    if out.len() == out_len {
                        return out;
                    }
                    out.push((state[i / 8] >> (8 * (i % 8))) as u8);
                }
                keccak_f(&mut state);
            }
        }
    }

    #[test]
    fn prometheus_text_is_told_from_other_answers() {
        // microsample's /metrics (prometheus_client 0.16 generate_latest, CONTENT_TYPE_LATEST).
        let microsample = "# HELP python_gc_objects_collected_total Objects collected during gc\n\
            # TYPE python_gc_objects_collected_total counter\n\
            python_gc_objects_collected_total{generation=\"0\"} 297.0\n\
            # HELP process_virtual_memory_bytes Virtual memory size in bytes.\n\
            # TYPE process_virtual_memory_bytes gauge\n\
            process_virtual_memory_bytes 3.0208e+07\n\
            # HELP microsample_calls_total Total calls to microsampl api (counter)\n\
            # TYPE microsample_calls_total counter\n\
            microsample_calls_total 3.0\n\
            # HELP microsample_calls_created Total calls to microsampl api (counter)\n\
            # TYPE microsample_calls_created gauge\n\
            microsample_calls_created 1.6847e+09\n";
        let latest = Some("text/plain; version=0.0.4; charset=utf-8");
        assert!(is_prometheus_text(latest, microsample));
        assert!(is_prometheus_text(None, microsample));
        assert!(is_prometheus_text(Some("text/plain"), microsample));
        assert!(is_prometheus_text(
            Some(" Text/Plain ;Version=1.0.0"),
            microsample
        ));
        // A declared format may have no sample yet; an undeclared one needs one.
        assert!(is_prometheus_text(latest, ""));
        assert!(is_prometheus_text(latest, "# HELP x y\n"));
        assert!(!is_prometheus_text(None, ""));
        assert!(!is_prometheus_text(
            Some("text/plain"),
            "# just a comment\n"
        ));
        assert!(is_prometheus_text(None, "# TYPE up gauge\n"));
        let openmetrics = "# TYPE microsample_calls counter\n\
            microsample_calls_total 3.0 1700000000.123 # {trace_id=\"a\"} 1.0\n\
            # EOF\n";
        assert!(is_prometheus_text(
            Some("application/openmetrics-text; version=1.0.0; charset=utf-8"),
            openmetrics
        ));

        // What a revision without /metrics answers: Flask's 404 page, or `/`'s Online.
        let not_found = "<!doctype html>\n<html lang=en>\n<title>404 Not Found</title>\n\
            <h1>Not Found</h1>\n<p>The requested URL was not found on the server.</p>\n";
        let html = Some("text/html; charset=utf-8");
        assert!(!is_prometheus_text(html, not_found));
        assert!(!is_prometheus_text(None, not_found));
        assert!(!is_prometheus_text(html, "Online"));
        assert!(!is_prometheus_text(None, "Online"));
        assert!(!is_prometheus_text(latest, "Online"));
        assert!(
            !is_prometheus_text(html, microsample),
            "the server says HTML"
        );
        assert!(!is_prometheus_text(
            Some("application/json"),
            r#"{"name": "Erik Lonroth", "skill": 100, "title": "wizard"}"#
        ));
        assert!(!is_prometheus_text(None, r#"{"name": "x"}"#));
    }

    #[test]
    fn sample_lines() {
        for good in [
            "up 1",
            "up\t1",
            "up 1 1700000000000",
            "up -1 -5",
            "a:b_c 1e-3",
            "x NaN",
            "x +Inf",
            "x -Inf",
            "x{} 1",
            r#"x{a="1"} 1"#,
            r#"x{a="1",} 1"#,
            r#"x{ a = "1" , b="q\"u,o}te" } 2"#,
            r#"x{a="back\\slash",b="new\nline"} 2"#,
            r#"x{a="é"} 2"#,
        ] {
            assert!(is_sample(good), "{good}");
            assert!(is_prometheus_text(None, good), "{good}");
        }
        for bad in [
            "Online",
            "up",
            "up ",
            "1up 1",
            "up one",
            "up 1 2 3",
            "up{ 1",
            "up{a=1} 1",
            r#"up{a="1"}1"#,
            r#"up{a="1} 1"#,
            r#"up{a:b="1"} 1"#,
            r#"up{a="1" b="2"} 1"#,
            "<html>",
            "up 1 later",
        ] {
            assert!(!is_sample(bad), "{bad}");
            assert!(
                !is_prometheus_text(None, &format!("up 1\n{bad}\n")),
                "{bad}"
            );
        }
    }
}
