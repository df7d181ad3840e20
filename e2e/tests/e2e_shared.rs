//! End-to-end: units sharing a machine (README "Shared machines": the machine-wide claim of
//! `src/claim.rs`) and the COS scrape job following what the running revision serves
//! (README "COS"). Two units here are two charm directories, two hook-tool states and two
//! `JUJU_UNIT_NAME`s against ONE fake snapd and ONE `/var/lib` holding both agent
//! directories (`UnitOptions::machine_of`).

use microsample_e2e::{free_port, ok, HookRun, Unit, UnitOptions, DEPLOY_HOOKS};
use serde_json::{json, Value};

/// The unit `microsample/0` on a fresh machine, its config port `port`.
fn first(port: u16) -> Unit {
    let unit = Unit::with_options(UnitOptions {
        name: Some("microsample/0"),
        install_port: Some(port),
        ..UnitOptions::default()
    });
    unit.set_config("port", json!(port));
    unit
}

/// `other/0` (another application of this charm, deployed `--to` the same machine), its
/// config port `port`.
fn second(on: &Unit, port: u16) -> Unit {
    let unit = Unit::with_options(UnitOptions {
        name: Some("other/0"),
        machine_of: Some(on),
        ..UnitOptions::default()
    });
    unit.set_config("port", json!(port));
    unit
}

fn deploy(unit: &Unit) -> Vec<HookRun> {
    DEPLOY_HOOKS
        .iter()
        .map(|hook| {
            let run = unit.run_hook(hook);
            ok(&run);
            run
        })
        .collect()
}

fn status(kind: &str, message: &str) -> (String, String) {
    (kind.to_string(), message.to_string())
}

fn snap(unit: &Unit) -> Value {
    unit.snapd_state()["snap"].clone()
}

fn logged(unit: &Unit, level: &str, text: &str) -> bool {
    unit.logs()
        .iter()
        .any(|l| l.level == level && l.message.contains(text))
}

#[test]
fn the_second_unit_on_a_machine_leaves_microsample_to_the_first() {
    let port = free_port();
    let a = first(port);
    let b = second(&a, port);
    assert_eq!(a.state_root(), b.state_root(), "one /var/lib");
    assert!(a.agent_dir().is_dir() && b.agent_dir().is_dir());

    deploy(&a);
    assert_eq!(a.status(), status("active", "Ready at 'edge'"));
    assert_eq!(a.claim().unwrap()["unit"], "microsample/0");

    let held = status(
        "blocked",
        "microsample is managed by microsample/0 on this machine",
    );
    for run in deploy(&b) {
        assert!(run.calls_to("snap").is_empty(), "{:?}", run.calls);
        assert!(run.calls_to("open-port").is_empty(), "{:?}", run.calls);
        let writes: Vec<_> = run
            .snapd_requests
            .iter()
            .filter(|r| r.method != "GET")
            .collect();
        assert!(writes.is_empty(), "{writes:?}");
        assert_eq!(b.status(), held);
    }
    assert!(b.opened_ports().is_empty());
    assert_eq!(a.claim().unwrap()["unit"], "microsample/0");
    assert_eq!(
        a.workload_get(port, "/")
            .map(|(c, b)| (c, b.trim().to_string())),
        Some((200, "Online".into()))
    );

    // The second goes: the snap stays, still the first's.
    let run = b.run_hook("remove");
    ok(&run);
    assert!(run.calls_to("snap").is_empty(), "{:?}", run.calls);
    assert!(!snap(&a).is_null(), "the snap stays");
    assert_eq!(a.claim().unwrap()["unit"], "microsample/0");
    ok(&a.run_hook("update-status"));
    assert_eq!(a.status(), status("active", "Ready at 'edge'"));

    // The first goes: the snap it installed goes with it, and the claim.
    let run = a.run_hook("remove");
    ok(&run);
    assert!(
        microsample_e2e::snap_calls(&run).contains(&"snap remove microsample".to_string()),
        "{:?}",
        run.calls
    );
    assert!(snap(&a).is_null(), "the snap is removed");
    assert_eq!(a.claim(), None, "the claim is released");
}

#[test]
fn a_claim_whose_owner_is_gone_is_taken_over() {
    let port = free_port();
    let a = first(port);
    let b = second(&a, port);
    deploy(&a);
    // microsample/0 went without its remove hook (remove-unit --force): its agent directory
    // is gone, its claim stays.
    a.remove_agent_dir();
    assert_eq!(a.claim().unwrap()["unit"], "microsample/0");

    let runs = b.run_install_hooks();
    ok(&runs.relation_created);
    assert!(
        logged(
            &b,
            "WARNING",
            "took over the claim on microsample from microsample/0, which is gone from this machine"
        ),
        "{:#?}",
        b.logs()
    );
    let claim = b.claim().unwrap();
    assert_eq!(claim["unit"], "other/0");
    assert_eq!(claim["application"], "other");
    assert_eq!(
        claim["installed_by_charm"], true,
        "the snap came from a charm: the new owner removes it when it goes"
    );
    for run in [&runs.install, &runs.relation_created] {
        assert!(run.calls_to("snap").is_empty(), "already installed");
    }
    assert_eq!(b.status(), status("active", "Ready at 'edge'"));
    ok(&b.run_hook("remove"));
    assert!(snap(&b).is_null());
    assert_eq!(b.claim(), None);
}

#[test]
fn an_upgrade_from_a_claimless_revision_takes_the_snap_as_its_own() {
    let port = free_port();
    let a = first(port);
    // The earlier charm revision installed the snap and kept no claim; the unit has seen
    // its peer relation since it was deployed.
    a.preinstall_snap("latest/edge", port);
    a.create_peer_relation();
    assert_eq!(a.claim(), None);
    let run = a.run_hook("upgrade-charm");
    ok(&run);
    assert!(run.calls_to("snap").is_empty(), "{:?}", run.calls);
    let claim = a.claim().expect("a claim");
    assert_eq!(claim["unit"], "microsample/0");
    assert_eq!(claim["installed_by_charm"], true);
    assert_eq!(a.status(), status("active", "Ready at 'edge'"));
    ok(&a.run_hook("remove"));
    assert!(snap(&a).is_null(), "removed with the unit");
    assert_eq!(a.claim(), None);
}

#[test]
fn a_hand_installed_snap_is_adopted_and_never_removed() {
    let port = free_port();
    let a = first(port);
    a.preinstall_snap("latest/edge", port);
    let runs = a.run_install_hooks();
    ok(&runs.relation_created);
    for run in [&runs.install, &runs.relation_created] {
        assert!(run.calls_to("snap").is_empty(), "{:?}", run.calls);
    }
    let claim = a.claim().expect("a claim");
    assert_eq!(claim["installed_by_charm"], false);
    assert!(
        logged(
            &a,
            "INFO",
            "adopted the microsample snap already on this machine"
        ),
        "{:#?}",
        a.logs()
    );
    assert_eq!(a.status(), status("active", "Ready at 'edge'"));
    let run = a.run_hook("remove");
    ok(&run);
    assert!(run.calls_to("snap").is_empty(), "{:?}", run.calls);
    assert!(!snap(&a).is_null(), "left installed");
    assert_eq!(a.claim(), None, "the claim is released");
}

fn cos_joined(unit: &Unit) -> HookRun {
    unit.run_hook_with_env(
        "cos-agent-relation-joined",
        &[
            ("JUJU_RELATION", "cos-agent"),
            ("JUJU_RELATION_ID", "cos-agent:4"),
            ("JUJU_REMOTE_APP", "opentelemetry-collector"),
            ("JUJU_REMOTE_UNIT", "opentelemetry-collector/0"),
        ],
    )
}

/// The `config` the unit published on `cos-agent:4`, parsed.
fn cos_config(unit: &Unit) -> Value {
    let state = unit.juju_state();
    let bag = &state.relations["cos-agent"]
        .iter()
        .find(|r| r.id == "cos-agent:4")
        .expect("the relation")
        .unit_data;
    serde_json::from_str(&bag["config"]).expect("config is JSON")
}

const NO_METRICS: &str = "publishing no scrape job or metrics alert rules: the running microsample serves no Prometheus metrics on /metrics";

#[test]
fn the_scrape_job_is_published_only_while_the_revision_serves_metrics() {
    let port = free_port();
    let unit = first(port);
    // edge: a revision built before May 2023 (`/` and `/api/info` only); beta: one with
    // `/metrics`.
    unit.set_store(json!({
        "latest/edge": {"revision": 12, "version": "0+git.1a2b3c4", "metrics": false},
        "latest/beta": {"revision": 34, "version": "0+git.57e56f2"},
    }));
    deploy(&unit);
    assert_eq!(unit.workload_get(port, "/metrics").map(|r| r.0), Some(404));
    unit.add_relation(
        "cos-agent",
        4,
        "opentelemetry-collector",
        &["opentelemetry-collector/0"],
    );
    ok(&cos_joined(&unit));
    let config = cos_config(&unit);
    assert_eq!(config["metrics_scrape_jobs"], json!([]));
    assert_eq!(config["metrics_alert_rules"], json!({}));
    assert!(
        !config["dashboards"].as_array().unwrap().is_empty(),
        "the dashboard stays"
    );
    let said_why = unit
        .logs()
        .iter()
        // In a relation hook juju-log prefixes `<endpoint>:<id>: `.
        .any(|l| l.level == "INFO" && l.message == format!("cos-agent:4: {NO_METRICS}"));
    assert!(said_why, "{:#?}", unit.logs());

    // A revision with /metrics: the job and the rules come with it.
    unit.set_config("channel", json!("beta"));
    let run = unit.run_hook("config-changed");
    ok(&run);
    assert_eq!(unit.workload_get(port, "/metrics").map(|r| r.0), Some(200));
    let config = cos_config(&unit);
    let jobs = config["metrics_scrape_jobs"].as_array().unwrap();
    assert_eq!(jobs.len(), 1, "{config}");
    assert_eq!(jobs[0]["metrics_path"], "/metrics");
    assert_eq!(
        jobs[0]["static_configs"],
        json!([{"targets": [format!("localhost:{port}")]}])
    );
    assert!(
        config["metrics_alert_rules"]["groups"]
            .as_array()
            .is_some_and(|g| !g.is_empty()),
        "{}",
        config["metrics_alert_rules"]
    );
    let again = unit
        .logs()
        .iter()
        .filter(|l| l.context == "hooks/config-changed")
        .any(|l| l.message.contains(NO_METRICS));
    assert!(!again, "nothing to explain once /metrics is served");
    // The machine keeps the store revision that served it (docs/snapd-api.md#revisions),
    // and never the one that did not.
    let memory = unit
        .state_root()
        .join("microsample-charm/metrics-revisions.json");
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&memory).unwrap()).unwrap();
    assert_eq!(kept, json!({"v": 1, "revisions": ["34"]}));

    // Back to edge's revision: what the machine knows of 34 says nothing about 12.
    unit.set_config("channel", json!("edge"));
    ok(&unit.run_hook("config-changed"));
    assert_eq!(cos_config(&unit)["metrics_scrape_jobs"], json!([]));
    // And to beta again: the job is back, with the revision known.
    unit.set_config("channel", json!("beta"));
    ok(&unit.run_hook("config-changed"));
    assert_eq!(
        cos_config(&unit)["metrics_scrape_jobs"]
            .as_array()
            .map(Vec::len),
        Some(1)
    );
    let kept: serde_json::Value = serde_json::from_slice(&std::fs::read(&memory).unwrap()).unwrap();
    assert_eq!(kept, json!({"v": 1, "revisions": ["34"]}));
}
