//! The `cos-agent` relation (interface `cos_agent`): what this unit publishes so a
//! grafana-agent or opentelemetry-collector subordinate scrapes microsample's `/metrics`,
//! loads its alert rules and installs its dashboard in COS.
//!
//! The requirer validates the unit databag key `config` as a JSON object with five required
//! fields (and drops the data silently when one is missing): `metrics_alert_rules`,
//! `log_alert_rules`, `dashboards`, `metrics_scrape_jobs` and `log_slots`. The rules and
//! the dashboard are the files in `src/cos/`, prepared by build.rs.

use serde_json::{json, Map, Value};

use crate::metadata::CHARM_NAME;

mod assets {
    include!(concat!(env!("OUT_DIR"), "/cos_assets.rs"));
}
pub(crate) use assets::{ALERT_RULES_JSON, DASHBOARD_XZ_BASE64};

/// The unit databag key the requirer reads.
pub(crate) const DATABAG_KEY: &str = "config";
/// What the rule files write where the topology matchers go.
const TOPOLOGY_PLACEHOLDER: &str = "%%juju_topology%%";

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

    fn labels(&self) -> [(&'static str, &str); 4] {
        [
            ("juju_model", &self.model),
            ("juju_model_uuid", &self.model_uuid),
            ("juju_application", &self.application),
            ("juju_charm", CHARM_NAME),
        ]
    }

    /// PromQL label matchers selecting this application's series.
    fn matchers(&self) -> String {
        self.labels()[..3]
            .iter()
            .map(|(name, value)| format!("{name}=\"{}\"", promql_escape(value)))
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn promql_escape(value: &str) -> String {
    value.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The alert rules with this unit's topology: matchers in every expression, topology
/// labels on every rule, and group names unique per model and application.
pub(crate) fn alert_rules(topology: &Topology) -> Value {
    let mut rules: Value = serde_json::from_str(ALERT_RULES_JSON).unwrap_or_default();
    let matchers = topology.matchers();
    let prefix = format!(
        "{}_{}_{}",
        topology.model, topology.model_uuid, topology.application
    );
    for group in rules["groups"].as_array_mut().into_iter().flatten() {
        if let Some(name) = group["name"].as_str() {
            group["name"] = Value::from(format!("{prefix}_{name}_alerts"));
        }
        for rule in group["rules"].as_array_mut().into_iter().flatten() {
            if let Some(expr) = rule["expr"].as_str() {
                rule["expr"] = Value::from(expr.replace(TOPOLOGY_PLACEHOLDER, &matchers));
            }
            if !rule["labels"].is_object() {
                rule["labels"] = json!({});
            }
            for (name, value) in topology.labels() {
                rule["labels"][name] = Value::from(value);
            }
        }
    }
    rules
}

/// The unit databag to write on every cos-agent relation: `{"config": "<json>"}`.
pub(crate) fn unit_databag(topology: &Topology, port: u16, metrics: bool) -> Map<String, Value> {
    let (rules, jobs) = if metrics {
        (
            alert_rules(topology),
            json!([{
                "job_name": format!("{}_0_default", topology.application),
                "metrics_path": "/metrics",
                "static_configs": [{"targets": [format!("localhost:{port}")]}],
            }]),
        )
    } else {
        (json!({}), json!([]))
    };
    let config = json!({
        "metrics_alert_rules": rules,
        "log_alert_rules": {},
        "dashboards": [DASHBOARD_XZ_BASE64],
        "metrics_scrape_jobs": jobs,
        "log_slots": [],
        "tracing_protocols": null,
    });
    let mut databag = Map::new();
    databag.insert(DATABAG_KEY.into(), Value::from(config.to_string()));
    databag
}

/// Whether a `/metrics` answer is Prometheus exposition text.
pub(crate) fn is_prometheus_text(content_type: Option<&str>, body: &str) -> bool {
    let _ = content_type;
    body.lines()
        .any(|l| l.starts_with("# TYPE ") || l.starts_with("# HELP "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topology() -> Topology {
        Topology {
            model: "lab".into(),
            model_uuid: "1234abcd-0000-4000-8000-000000000000".into(),
            application: "microsample".into(),
        }
    }

    fn config(port: u16) -> Value {
        let databag = unit_databag(&topology(), port, true);
        assert_eq!(databag.len(), 1);
        serde_json::from_str(databag[DATABAG_KEY].as_str().unwrap()).unwrap()
    }

    #[test]
    fn has_all_the_fields_the_requirer_requires() {
        let config = config(8080);
        for field in [
            "metrics_alert_rules",
            "log_alert_rules",
            "dashboards",
            "metrics_scrape_jobs",
            "log_slots",
        ] {
            assert!(config.get(field).is_some(), "{field} missing");
        }
        assert_eq!(config["log_alert_rules"], json!({}));
        assert_eq!(config["log_slots"], json!([]));
        assert_eq!(config["tracing_protocols"], Value::Null);
    }

    #[test]
    fn the_scrape_job_follows_the_port() {
        assert_eq!(
            config(8081)["metrics_scrape_jobs"],
            json!([{"job_name": "microsample_0_default", "metrics_path": "/metrics", "static_configs": [{"targets": ["localhost:8081"]}]}])
        );
    }

    #[test]
    fn rules_carry_the_topology() {
        let rules = alert_rules(&topology());
        let group = &rules["groups"][0];
        assert_eq!(
            group["name"],
            "lab_1234abcd-0000-4000-8000-000000000000_microsample_microsample_alerts"
        );
        let down = &group["rules"][0];
        assert_eq!(down["alert"], "MicrosampleDown");
        assert_eq!(
            down["expr"],
            "up{juju_model=\"lab\",juju_model_uuid=\"1234abcd-0000-4000-8000-000000000000\",juju_application=\"microsample\"} == 0"
        );
        assert_eq!(down["for"], "5m");
        assert_eq!(down["labels"]["severity"], "critical");
        assert_eq!(down["labels"]["juju_application"], "microsample");
        assert!(!rules.to_string().contains(TOPOLOGY_PLACEHOLDER));
    }
}
