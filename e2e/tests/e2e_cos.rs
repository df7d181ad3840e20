//! End-to-end: the cos-agent relation. What the charm writes must be what the
//! grafana-agent requirer accepts (all five fields, or the data is silently dropped).

use std::io::Read;
use std::process::Command;

use base64::Engine as _;
use microsample_e2e::{deployed, free_port, ok, HookRun, Unit};
use serde_json::{json, Value};

fn relation_hook(unit: &Unit, kind: &str) -> HookRun {
    unit.run_hook_with_env(
        &format!("cos-agent-relation-{kind}"),
        &[
            ("JUJU_RELATION", "cos-agent"),
            ("JUJU_RELATION_ID", "cos-agent:4"),
            ("JUJU_REMOTE_APP", "grafana-agent"),
            ("JUJU_REMOTE_UNIT", "grafana-agent/0"),
        ],
    )
}

/// This unit's cos-agent databag, as committed by the agent.
fn databag(unit: &Unit) -> std::collections::BTreeMap<String, String> {
    let state = unit.juju_state();
    state.relations["cos-agent"]
        .iter()
        .find(|r| r.id == "cos-agent:4")
        .expect("the relation")
        .unit_data
        .clone()
}

fn published(unit: &Unit) -> Value {
    let data = databag(unit);
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        ["config"],
        "exactly one key"
    );
    serde_json::from_str(&data["config"]).expect("config is JSON")
}

#[test]
fn joined_and_changed_publish_all_five_fields() {
    let (unit, port) = deployed();
    unit.add_relation("cos-agent", 4, "grafana-agent", &["grafana-agent/0"]);
    for kind in ["joined", "changed"] {
        let run = relation_hook(&unit, kind);
        ok(&run);
        let sets = run.calls_to("relation-set");
        assert_eq!(sets.len(), 1, "{kind}");
        assert_eq!(sets[0].args, ["-r", "cos-agent:4", "--file", "-"]);
        assert_eq!(
            run.calls_to("status-set").len(),
            1,
            "{kind} reports the status it observed"
        );
        assert!(run.calls_to("snap").is_empty());

        let config = published(&unit);
        for field in [
            "metrics_scrape_jobs",
            "metrics_alert_rules",
            "log_alert_rules",
            "dashboards",
            "log_slots",
        ] {
            assert!(config.get(field).is_some(), "{kind}: {field} missing");
        }
        assert_eq!(config["log_alert_rules"], json!({}));
        assert_eq!(config["log_slots"], json!([]));
        assert!(config["tracing_protocols"].is_null());
        let jobs = config["metrics_scrape_jobs"].as_array().expect("jobs");
        assert_eq!(jobs.len(), 1);
        // cos_agent's naming: <app>_<job>_<8 hex of the job's hash> (README, COS).
        let name = jobs[0]["job_name"].as_str().unwrap();
        let hash = name.strip_prefix("microsample_default_").expect(name);
        assert!(
            hash.len() == 8 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{name}"
        );
        assert_eq!(jobs[0]["metrics_path"], "/metrics");
        assert_eq!(
            jobs[0]["static_configs"],
            json!([{"targets": [format!("localhost:{port}")]}])
        );
    }
    // The scrape target really serves Prometheus metrics.
    let (code, body) = unit.workload_get(port, "/metrics").expect("metrics");
    assert_eq!(code, 200);
    assert!(body.contains("microsample_calls_total"));
}

#[test]
fn the_scrape_target_follows_the_port() {
    let (unit, _) = deployed();
    unit.add_relation("cos-agent", 4, "grafana-agent", &["grafana-agent/0"]);
    ok(&relation_hook(&unit, "joined"));
    let new = free_port();
    unit.set_config("port", json!(new));
    ok(&unit.run_hook("config-changed"));
    assert_eq!(
        published(&unit)["metrics_scrape_jobs"][0]["static_configs"][0]["targets"],
        json!([format!("localhost:{new}")])
    );
}

#[test]
fn the_dashboard_decodes_to_the_repository_dashboard() {
    let (unit, _) = deployed();
    unit.add_relation("cos-agent", 4, "grafana-agent", &["grafana-agent/0"]);
    ok(&relation_hook(&unit, "joined"));
    let dashboards = published(&unit)["dashboards"].as_array().unwrap().clone();
    assert_eq!(dashboards.len(), 1);
    let xz = base64::engine::general_purpose::STANDARD
        .decode(dashboards[0].as_str().unwrap())
        .expect("base64");
    let mut json = Vec::new();
    lzma_rs::xz_decompress(&mut &xz[..], &mut json).expect("xz");
    let mut repo = Vec::new();
    std::fs::File::open(microsample_e2e::workspace_root().join("src/cos/dashboard.json"))
        .unwrap()
        .read_to_end(&mut repo)
        .unwrap();
    let decoded: Value = serde_json::from_slice(&json).unwrap();
    assert_eq!(decoded, serde_json::from_slice::<Value>(&repo).unwrap());
    assert_eq!(decoded["title"], "Microsample");
}

#[test]
fn the_alert_rules_are_prometheus_rule_groups_with_this_units_topology() {
    let (unit, _) = deployed();
    unit.add_relation("cos-agent", 4, "grafana-agent", &["grafana-agent/0"]);
    ok(&relation_hook(&unit, "joined"));
    let rules = published(&unit)["metrics_alert_rules"].clone();
    let groups = rules["groups"].as_array().expect("groups");
    assert!(!groups.is_empty());
    let mut alerts = Vec::new();
    for group in groups {
        assert!(group["name"]
            .as_str()
            .unwrap()
            .starts_with("test_9d6a1f47_microsample_"));
        for rule in group["rules"].as_array().unwrap() {
            let expr = rule["expr"].as_str().unwrap();
            assert!(expr.contains("juju_application=\"microsample\""), "{expr}");
            assert!(expr.contains("juju_model=\"test\""), "{expr}");
            assert!(!expr.contains("%%"), "{expr}");
            assert_eq!(
                rule["labels"]["juju_model_uuid"],
                "9d6a1f47-5b3e-4c0d-8e2a-1c7f3b9e4a21"
            );
            alerts.push(rule["alert"].as_str().unwrap().to_string());
        }
    }
    assert!(alerts.contains(&"HostDown".to_string()));
    assert!(alerts.contains(&"MicrosampleHighCallRate".to_string()));
    promtool_checks(&rules);
}

/// Prometheus' own checker and rule unit tester on the published rules: they parse, and
/// cos_agent's generic HostDown fires after 5 minutes of `up < 1` for this application only.
fn promtool_checks(rules: &Value) {
    if Command::new("promtool").arg("--version").output().is_err() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must install promtool (Debian package prometheus)"
        );
        eprintln!("NOTE: promtool not installed (apt-get install prometheus); checked the rule structure only");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let rules_file = dir.path().join("rules.json");
    std::fs::write(&rules_file, rules.to_string()).unwrap();
    let check = Command::new("promtool")
        .arg("check")
        .arg("rules")
        .arg(&rules_file)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let labels = r#"juju_model="test",juju_model_uuid="9d6a1f47-5b3e-4c0d-8e2a-1c7f3b9e4a21",juju_application="microsample",juju_unit="microsample/0",instance="localhost:8080""#;
    let other = r#"juju_model="test",juju_model_uuid="9d6a1f47-5b3e-4c0d-8e2a-1c7f3b9e4a21",juju_application="other",juju_unit="other/0",instance="localhost:8080""#;
    let test = json!({
        "rule_files": ["rules.json"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [
                {"series": format!("up{{{labels}}}"), "values": "0x10"},
                {"series": format!("up{{{other}}}"), "values": "0x10"},
            ],
            "alert_rule_test": [
                {"eval_time": "3m", "alertname": "HostDown", "exp_alerts": []},
                {"eval_time": "6m", "alertname": "HostDown", "exp_alerts": [{
                    "exp_labels": {
                        "severity": "critical",
                        "instance": "localhost:8080",
                        "juju_model": "test",
                        "juju_model_uuid": "9d6a1f47-5b3e-4c0d-8e2a-1c7f3b9e4a21",
                        "juju_application": "microsample",
                        "juju_charm": "microsample",
                        "juju_unit": "microsample/0",
                    },
                    "exp_annotations": {
                        "summary": "Host 'localhost:8080' is down.",
                        "description": "Juju application 'microsample' in model 'test' is down. Prometheus has been unable to scrape it during at least the past five minutes.",
                    },
                }]},
            ],
        }],
    });
    let test_file = dir.path().join("test.json");
    std::fs::write(&test_file, test.to_string()).unwrap();
    let run = Command::new("promtool")
        .arg("test")
        .arg("rules")
        .arg(&test_file)
        .current_dir(dir.path())
        .output()
        .unwrap();
    assert!(
        run.status.success(),
        "promtool test rules: {}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn nothing_is_published_without_a_relation() {
    let (unit, _) = deployed();
    for hook in ["config-changed", "upgrade-charm"] {
        let run = unit.run_hook(hook);
        ok(&run);
        // One look per endpoint: cos-agent and fleet. Alone on its peer relation, the unit
        // publishes nothing there either.
        assert_eq!(run.calls_to("relation-ids").len(), 2);
        assert!(run.calls_to("relation-set").is_empty(), "{hook}");
    }
    // update-status looks too: a revision change can add or remove /metrics.
    let run = unit.run_hook("update-status");
    assert_eq!(run.calls_to("relation-ids").len(), 2);
    assert!(run.calls_to("relation-set").is_empty());
}

#[test]
fn a_failing_relation_set_fails_the_hook_with_its_stderr() {
    let (unit, _) = deployed();
    unit.add_relation("cos-agent", 4, "grafana-agent", &["grafana-agent/0"]);
    unit.fail_tool(
        "relation-set",
        1,
        "ERROR cannot write relation settings: connection is shut down\n",
    );
    let run = relation_hook(&unit, "changed");
    assert_eq!(run.exit, Some(1));
    let error = unit
        .logs()
        .into_iter()
        .find(|l| l.level == "ERROR")
        .expect("an ERROR line");
    assert!(
        error
            .message
            .contains("cannot write relation settings: connection is shut down"),
        "{}",
        error.message
    );
    assert!(databag(&unit).is_empty(), "nothing committed");
}
