//! The alerts and the dashboard we ship (manifests/monitoring, and the
//! chart's files/): `promtool check rules` and `promtool test rules` (with
//! tests/monitoring/alerts.test.yaml: each alert firing and silent) on the
//! alerts; every dashboard query parses (promtool, as recording rules, and
//! the promql-parser crate) and names only metrics otel-injector exports
//! (read from [`Metrics`], not listed by hand), the fleet gauge of issue 22,
//! or the API server's admission webhook metrics.
//!
//! promtool is built from its Go module (tests/promtool/build, cached like
//! helm); `OTEL_INJECTOR_SKIP_E2E=1` marks the promtool tests ignored.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use otel_injector::admission::Outcome;
use otel_injector::metrics::Metrics;
use otel_injector::review::Decision;
use promql_parser::parser::{self, Expr};
use promql_parser::util::{ExprVisitor, walk_expr};
use serde_json::Value;

const CHART_RULES: &str = "charts/otel-injector/files/prometheus-rules.yaml";
const RULE: &str = "manifests/monitoring/prometheusrule.yaml";
const RULE_TESTS: &str = "tests/monitoring/alerts.test.yaml";
const DASHBOARD: &str = "manifests/monitoring/otel-injector-dashboard.json";
const CHART_DASHBOARD: &str = "charts/otel-injector/files/dashboard.json";

/// `otel_injector_pods{namespace,state}`: the fleet gauge, named by issue 26
/// and added by the fleet work (issue 22). Once that is merged it is in
/// [`exported`] too.
const FLEET: &[&str] = &["otel_injector_pods"];

/// The API server's admission webhook series the alerts and panels read
/// (k8s.io/apiserver pkg/admission/metrics; counters there have no `_total`).
const API_SERVER: &[&str] = &[
    "apiserver_admission_webhook_fail_open_count",
    "apiserver_admission_webhook_rejection_count",
    "apiserver_admission_webhook_admission_duration_seconds_bucket",
    "apiserver_admission_webhook_request_total",
];

/// What alerts may read besides: the scrape health and kube-state-metrics'
/// Deployment replicas (OtelInjectorDown, OtelInjectorNotReady).
const ALERT_ONLY: &[&str] = &[
    "up",
    "kube_deployment_status_replicas_available",
    "kube_deployment_spec_replicas",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("read {path}: {e}"))
}

fn yaml(path: &str) -> Value {
    serde_yaml_ng::from_str(&read(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn promtool() -> PathBuf {
    let out = Command::new(repo().join("tests/promtool/build"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run tests/promtool/build");
    assert!(out.status.success(), "tests/promtool/build: {}", out.status);
    let dir = String::from_utf8(out.stdout).expect("utf-8 path");
    PathBuf::from(dir.trim()).join("promtool")
}

/// Runs promtool in the repository; its combined output, and whether it succeeded.
fn run_promtool(args: &[&str]) -> (bool, String) {
    let out = Command::new(promtool())
        .args(args)
        .current_dir(repo())
        .output()
        .expect("run promtool");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Every series name our /metrics can carry, from the exposition's `# TYPE`
/// lines (counters get `_total`, histograms `_bucket`, `_sum`, `_count`).
fn exported() -> BTreeSet<String> {
    let metrics = Metrics::new();
    // A label family shows in the exposition once it has a child: give every
    // family one, through the calls the server makes.
    let decision = Decision {
        uid: "uid".into(),
        namespace: "cxtm".into(),
        pod: "app".into(),
        outcome: Outcome::Injected,
        reason: String::new(),
        containers: vec!["app".into()],
        patch_ops: 1,
        patch_bytes: 100,
        warnings: Vec::new(),
        dry_run: false,
        owner: None,
        delivery: Some(otel_injector::delivery::Chosen {
            requested: otel_injector::config::Delivery::ImageVolume,
            delivery: otel_injector::config::Delivery::InitContainer,
        }),
    };
    metrics.observe(&decision, std::time::Duration::from_micros(200));
    metrics.bad_request("not-a-review");
    metrics.cert_reload(true);
    metrics.certificate_write("secret", true);
    let text = metrics.encode();
    let mut names = BTreeSet::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let (Some(name), Some(kind)) = (words.next(), words.next()) else {
            panic!("odd TYPE line: {line}");
        };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    for name in [
        "otel_injector_admission_requests_total",
        "otel_injector_bad_requests_total",
        "otel_injector_certificate_reloads_total",
        "otel_injector_certificate_writes_total",
    ] {
        assert!(names.contains(name), "{name} not in {names:?}");
    }
    names
}

struct Names(BTreeSet<String>);

impl ExprVisitor for Names {
    type Error = String;

    fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
        let selector = match expr {
            Expr::VectorSelector(vs) => vs,
            Expr::MatrixSelector(ms) => &ms.vs,
            _ => return Ok(true),
        };
        match &selector.name {
            Some(name) => {
                self.0.insert(name.clone());
                Ok(true)
            }
            None => Err(format!("a selector without a metric name: {selector}")),
        }
    }
}

/// The metric names a query selects; panics naming the query if it does not parse.
fn metric_names(query: &str) -> BTreeSet<String> {
    let expr = parser::parse(query).unwrap_or_else(|e| panic!("{query}: {e}"));
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &expr).unwrap_or_else(|e| panic!("{query}: {e}"));
    names.0
}

/// Grafana's own variables are not PromQL: the values it would put there.
fn substitute_grafana_variables(query: &str) -> String {
    query
        .replace("$__rate_interval", "2m")
        .replace("$__interval", "30s")
        .replace("$__range", "6h")
}

/// Every panel's (and row's nested panels') queries: (panel title, expr).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, String)> {
    fn walk(panels: &Value, out: &mut Vec<(String, String)>) {
        for panel in panels.as_array().into_iter().flatten() {
            let title = panel["title"].as_str().unwrap_or("?").to_owned();
            for target in panel["targets"].as_array().into_iter().flatten() {
                let expr = target["expr"]
                    .as_str()
                    .unwrap_or_else(|| panic!("panel {title}: a target without expr"));
                out.push((title.clone(), substitute_grafana_variables(expr)));
            }
            walk(&panel["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn dashboard() -> Value {
    serde_json::from_str(&read(DASHBOARD)).unwrap_or_else(|e| panic!("{DASHBOARD}: {e}"))
}

/// (alert name, expr) of every rule.
fn alert_rules() -> Vec<(String, String)> {
    let rules = yaml(CHART_RULES);
    let mut out = Vec::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("alerting rules only");
            let expr = rule["expr"].as_str().expect("expr");
            out.push((name.to_owned(), expr.to_owned()));
        }
    }
    out
}

#[test]
fn the_chart_and_manifests_ship_the_same_rules_and_dashboard() {
    let chart = yaml(CHART_RULES);
    let rule = yaml(RULE);
    assert_eq!(rule["kind"], "PrometheusRule");
    assert!(chart["groups"].as_array().is_some_and(|g| !g.is_empty()));
    assert_eq!(rule["spec"], chart, "{RULE} spec vs {CHART_RULES}");
    assert_eq!(
        read(DASHBOARD),
        read(CHART_DASHBOARD),
        "{DASHBOARD} vs {CHART_DASHBOARD}"
    );
}

/// Every alert the issue asks for, and each one has a firing and a silent case
/// in the promtool unit tests.
#[test]
fn every_alert_has_a_firing_and_a_silent_unit_test() {
    let tests = yaml(RULE_TESTS);
    let alerts: Vec<String> = alert_rules().into_iter().map(|(name, _)| name).collect();
    for wanted in [
        "OtelInjectorDown",
        "OtelInjectorNotReady",
        "OtelInjectorFailOpen",
        "OtelInjectorRejections",
        "OtelInjectorAdmissionErrors",
        "OtelInjectorLatencyNearTimeout",
        "OtelInjectorCertificateExpiresSoon",
        "OtelInjectorPodsMissed",
        "OtelInjectorPodsRolledBack",
        "OtelInjectorInstrumentationInvalid",
    ] {
        assert!(alerts.iter().any(|a| a == wanted), "{wanted} missing");
    }
    let cases: Vec<&Value> = tests["tests"]
        .as_array()
        .expect("tests")
        .iter()
        .flat_map(|t| t["alert_rule_test"].as_array().into_iter().flatten())
        .collect();
    for alert in &alerts {
        let of_alert = || cases.iter().filter(|c| c["alertname"] == alert.as_str());
        let fires = of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(|a| !a.is_empty()));
        let silent = of_alert().any(|c| c["exp_alerts"].as_array().is_some_and(Vec::is_empty));
        assert!(fires, "{alert}: no unit test where it fires");
        assert!(silent, "{alert}: no unit test where it stays silent");
    }
}

#[test]
fn alerts_read_only_known_metrics() {
    let mut known = exported();
    known.extend(
        FLEET
            .iter()
            .chain(API_SERVER)
            .chain(ALERT_ONLY)
            .map(|s| s.to_string()),
    );
    for (alert, expr) in alert_rules() {
        let names = metric_names(&expr);
        assert!(!names.is_empty(), "{alert}: selects nothing");
        for name in names {
            assert!(
                known.contains(&name),
                "{alert} reads {name}, which nothing exports"
            );
        }
    }
}

#[test]
fn dashboard_queries_parse_and_name_only_known_metrics() {
    let mut known = exported();
    known.extend(FLEET.iter().chain(API_SERVER).map(|s| s.to_string()));
    let queries = dashboard_queries(&dashboard());
    assert!(queries.len() >= 10, "{queries:?}");
    let mut used = BTreeSet::new();
    for (title, query) in &queries {
        let names = metric_names(query);
        assert!(!names.is_empty(), "panel {title}: {query} selects nothing");
        for name in names {
            assert!(
                known.contains(&name),
                "panel {title} reads {name}, which neither otel-injector nor the API server exports"
            );
            used.insert(name);
        }
    }
    // The panels the issue asks for, by what they must read.
    for name in [
        "otel_injector_admission_requests_total",
        "otel_injector_admission_duration_seconds_bucket",
        "apiserver_admission_webhook_fail_open_count",
        "otel_injector_pods",
        "otel_injector_certificate_expiry_timestamp_seconds",
        "otel_injector_certificate_reloads_total",
    ] {
        assert!(used.contains(name), "no panel reads {name}");
    }
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs Go to build promtool"
)]
fn promtool_checks_and_unit_tests_the_alerts() {
    let (ok, out) = run_promtool(&["check", "rules", CHART_RULES]);
    assert!(ok, "promtool check rules {CHART_RULES}:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
    let (ok, out) = run_promtool(&["test", "rules", RULE_TESTS]);
    assert!(ok, "promtool test rules {RULE_TESTS}:\n{out}");
    assert!(out.contains("SUCCESS"), "{out}");
}

/// The unit tests can fail: a rule file whose alert fires later than the test
/// expects makes `promtool test rules` report it.
#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs Go to build promtool"
)]
fn promtool_unit_tests_catch_a_changed_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = read(CHART_RULES).replace(
        "expr: absent(up{job=\"otel-injector\"} == 1)\n        for: 5m",
        "expr: absent(up{job=\"otel-injector\"} == 1)\n        for: 30m",
    );
    assert_ne!(rules, read(CHART_RULES), "the replacement must apply");
    let rules_path = dir.path().join("rules.yaml");
    std::fs::write(&rules_path, rules).expect("write rules");
    let tests = read(RULE_TESTS).replace(
        "../../charts/otel-injector/files/prometheus-rules.yaml",
        &rules_path.display().to_string(),
    );
    let tests_path = dir.path().join("alerts.test.yaml");
    std::fs::write(&tests_path, tests).expect("write tests");
    let (ok, out) = run_promtool(&["test", "rules", path_str(&tests_path)]);
    assert!(
        !ok,
        "a 30m `for` must break the OtelInjectorDown cases:\n{out}"
    );
    assert!(out.contains("OtelInjectorDown"), "{out}");
}

/// promtool parses every dashboard query as it parses rules: each becomes a
/// recording rule in a file `promtool check rules` reads.
#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs Go to build promtool"
)]
fn promtool_parses_every_dashboard_query() {
    let queries = dashboard_queries(&dashboard());
    let rules: Vec<Value> = queries
        .iter()
        .enumerate()
        .map(|(i, (_, expr))| serde_json::json!({"record": format!("dashboard:query_{i}"), "expr": expr}))
        .collect();
    let file = serde_json::json!({"groups": [{"name": "dashboard", "rules": rules}]});
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("dashboard-queries.yaml");
    std::fs::write(&path, serde_yaml_ng::to_string(&file).expect("yaml")).expect("write");
    let (ok, out) = run_promtool(&["check", "rules", path_str(&path)]);
    assert!(
        ok,
        "promtool check rules on the dashboard's queries:\n{out}"
    );
    assert!(
        out.contains(&format!("{} rules found", queries.len())),
        "{out}"
    );

    // And it refuses what is not PromQL, so the check above means something.
    let broken = serde_json::json!({"groups": [{"name": "dashboard", "rules": [
        {"record": "dashboard:broken", "expr": "sum by (outcome (rate(x[5m]))"}
    ]}]});
    std::fs::write(&path, serde_yaml_ng::to_string(&broken).expect("yaml")).expect("write");
    let (ok, out) = run_promtool(&["check", "rules", path_str(&path)]);
    assert!(!ok, "{out}");
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 temp path")
}
