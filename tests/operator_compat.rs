//! The OpenTelemetry Operator's Python injection cases, as tables: annotation
//! precedence, env building, platforms, targets, Instrumentation lookups.

mod common;

use common::*;
use otel_injector::config::Config;
use otel_injector::inject::Outcome;
use otel_injector::offline::FileView;
use serde_json::{Value, json};

fn app(env: Value, annotations: Value) -> Value {
    json!({
        "metadata": {"name": "app", "annotations": annotations},
        "spec": {"containers": [{"name": "app", "image": "app:3.1", "env": env}]}
    })
}

#[test]
fn pythonpath_cases() {
    let prefix = "/otel-auto-instrumentation/opentelemetry/instrumentation/auto_instrumentation";
    // The operator's value, plus `:.` last: these containers have no command
    // to wrap, so the working directory goes on PYTHONPATH as the operator's
    // own `opentelemetry-instrument` puts it there (README migration table).
    let cases = [
        (
            json!([]),
            Some(format!("{prefix}:/otel-auto-instrumentation:.")),
        ),
        (
            json!([{"name": "PYTHONPATH", "value": "/srv"}]),
            Some(format!("{prefix}:/srv:/otel-auto-instrumentation:.")),
        ),
        (
            json!([{"name": "PYTHONPATH", "value": ""}]),
            Some(format!("{prefix}:/otel-auto-instrumentation:.")),
        ),
        (
            json!([{"name": "PYTHONPATH", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]),
            None,
        ),
    ];
    for (env, want) in cases {
        let out = admit_with(
            &app(env.clone(), json!({})),
            "cxtm",
            &Config::default(),
            &FileView::default(),
        );
        assert_eq!(env_value(&out.pod, 0, "PYTHONPATH"), want, "env={env}");
        if want.is_none() {
            assert!(matches!(out.outcome(), Some(Outcome::Skipped { .. })));
        }
    }
}

#[test]
fn every_generated_var_the_container_sets_keeps_its_value() {
    let instrumentation = json!({"propagators": ["b3"], "sampler": {"type": "always_on"}});
    let cluster = FileView::default().with_instrumentation("cxtm", "inst", instrumentation);
    for name in [
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_RESOURCE_ATTRIBUTES",
        "OTEL_SERVICE_NAME",
        "OTEL_PROPAGATORS",
        "OTEL_TRACES_SAMPLER",
        "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED",
    ] {
        let pod = app(
            json!([{"name": name, "value": "mine"}]),
            json!({"instrumentation.opentelemetry.io/inject-python": "inst"}),
        );
        let out = admit_with(&pod, "cxtm", &Config::default(), &cluster);
        assert_eq!(out.scope, "inject", "{}", out.why);
        let env = env_of(&out.pod, 0);
        assert_eq!(
            env.iter().filter(|(n, _)| n == name).count(),
            1,
            "{name} duplicated: {env:?}"
        );
        assert_eq!(
            env_value(&out.pod, 0, name).as_deref(),
            Some("mine"),
            "{name} overwritten"
        );
    }
}

#[test]
fn env_precedence_container_then_python_then_spec_then_generated() {
    let cluster = FileView::default().with_instrumentation(
        "cxtm",
        "inst",
        json!({
            "exporter": {"endpoint": "http://spec-exporter:4318"},
            "env": [{"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://spec-env:4318"}, {"name": "X_SPEC", "value": "spec"}, {"name": "X_BOTH", "value": "spec"}],
            "python": {"env": [{"name": "X_BOTH", "value": "python"}, {"name": "X_PY", "value": "python"}]}
        }),
    );
    let pod = app(
        json!([{"name": "X_PY", "value": "container"}]),
        json!({"instrumentation.opentelemetry.io/inject-python": "inst"}),
    );
    let out = admit_with(&pod, "cxtm", &Config::default(), &cluster);
    assert_eq!(env_value(&out.pod, 0, "X_PY").as_deref(), Some("container"));
    assert_eq!(env_value(&out.pod, 0, "X_BOTH").as_deref(), Some("python"));
    assert_eq!(env_value(&out.pod, 0, "X_SPEC").as_deref(), Some("spec"));
    assert_eq!(
        env_value(&out.pod, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://spec-env:4318")
    );
    // Downward-API vars come before OTEL_RESOURCE_ATTRIBUTES, which refers to them.
    let names: Vec<String> = env_of(&out.pod, 0).into_iter().map(|(n, _)| n).collect();
    let pos = |n: &str| {
        names
            .iter()
            .position(|x| x == n)
            .unwrap_or_else(|| panic!("{n} missing: {names:?}"))
    };
    assert!(pos("OTEL_RESOURCE_ATTRIBUTES_POD_NAME") < pos("OTEL_RESOURCE_ATTRIBUTES"));
    assert!(pos("OTEL_RESOURCE_ATTRIBUTES_NODE_NAME") < pos("OTEL_RESOURCE_ATTRIBUTES"));
    let attrs = env_value(&out.pod, 0, "OTEL_RESOURCE_ATTRIBUTES").expect("attributes");
    for key in [
        "k8s.container.name=app",
        "k8s.namespace.name=cxtm",
        "k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)",
        "service.version=3.1",
        "service.namespace=cxtm",
    ] {
        assert!(attrs.contains(key), "{key} missing in {attrs}");
    }
}

#[test]
fn annotation_precedence_with_namespaces() {
    let cluster = FileView::default()
        .with_instrumentation(
            "cxtm",
            "ns-inst",
            json!({"python": {"image": "ns-image:1"}}),
        )
        .with_instrumentation(
            "cxtm",
            "pod-inst",
            json!({"python": {"image": "pod-image:1"}}),
        )
        .with_instrumentation(
            "shared",
            "central",
            json!({"python": {"image": "central:1"}}),
        )
        .with_namespace_annotation(
            "cxtm",
            "instrumentation.opentelemetry.io/inject-python",
            "ns-inst",
        );
    let key = "instrumentation.opentelemetry.io/inject-python";
    let config = Config {
        namespaces: vec![],
        ..Config::default()
    };
    let cases = [
        (json!({}), Some("ns-image:1")),
        (json!({key: "true"}), Some("ns-image:1")),
        (json!({key: "pod-inst"}), Some("pod-image:1")),
        (json!({key: "shared/central"}), Some("central:1")),
        (json!({key: "false"}), None),
    ];
    for (annotations, want) in cases {
        let out = admit_with(
            &app(json!([]), annotations.clone()),
            "cxtm",
            &config,
            &cluster,
        );
        assert_eq!(
            out.pod["spec"]["initContainers"][0]["image"].as_str(),
            want,
            "annotations {annotations}: {}",
            out.why
        );
    }
    // Cross-namespace references can be refused by config.
    let strict = Config {
        namespaces: vec![],
        allow_cross_namespace_instrumentation: false,
        ..Config::default()
    };
    let out = admit_with(
        &app(json!([]), json!({key: "shared/central"})),
        "cxtm",
        &strict,
        &cluster,
    );
    assert_eq!(out.scope, "unresolvable");
    assert!(out.why.contains("another namespace"), "{}", out.why);
}

#[test]
fn missing_ambiguous_and_invalid_instrumentations_are_unresolvable() {
    let key = "instrumentation.opentelemetry.io/inject-python";
    let two = FileView::default()
        .with_instrumentation("cxtm", "a", json!({}))
        .with_instrumentation("cxtm", "b", json!({}));
    let out = admit_with(
        &app(json!([]), json!({key: "true"})),
        "cxtm",
        &Config::default(),
        &two,
    );
    assert_eq!(out.scope, "unresolvable");
    assert!(out.why.contains("a, b"), "{}", out.why);

    let out = admit_with(
        &app(json!([]), json!({key: "nope"})),
        "cxtm",
        &Config::default(),
        &FileView::default(),
    );
    assert_eq!(out.scope, "unresolvable");
    assert!(out.why.contains("cxtm/nope"), "{}", out.why);

    let bad =
        FileView::default().with_instrumentation("cxtm", "bad", json!({"python": {"image": 7}}));
    let out = admit_with(
        &app(json!([]), json!({key: "bad"})),
        "cxtm",
        &Config::default(),
        &bad,
    );
    assert_eq!(out.scope, "unresolvable");
    assert!(out.why.contains("invalid spec"), "{}", out.why);

    // "true" with no Instrumentation at all falls back to the webhook's config.
    let out = admit_with(
        &app(json!([]), json!({key: "true"})),
        "elsewhere",
        &Config::default(),
        &FileView::default(),
    );
    assert_eq!(out.scope, "inject", "{}", out.why);
}

#[test]
fn platforms() {
    let key = "instrumentation.opentelemetry.io/otel-python-platform";
    let cases = [
        (json!({}), Some("/autoinstrumentation/.")),
        (json!({key: "glibc"}), Some("/autoinstrumentation/.")),
        (json!({key: "musl"}), Some("/autoinstrumentation-musl/.")),
        (json!({key: "windows"}), None),
    ];
    for (annotations, want) in cases {
        let out = admit_with(
            &app(json!([]), annotations.clone()),
            "cxtm",
            &Config::default(),
            &FileView::default(),
        );
        assert_eq!(
            out.pod["spec"]["initContainers"][0]["command"][2].as_str(),
            want,
            "{annotations}"
        );
        if want.is_none() {
            assert!(out.why.contains("windows"), "{}", out.why);
        }
    }
}

#[test]
fn multi_container_and_init_container_targets() {
    let pod = json!({
        "metadata": {"name": "app", "annotations": {"instrumentation.opentelemetry.io/python-container-names": "api,worker,setup"}},
        "spec": {
            "initContainers": [{"name": "setup", "image": "setup:1"}],
            "containers": [
                {"name": "api", "image": "api:1", "command": ["python", "api.py"]},
                {"name": "metrics", "image": "m:1"},
                {"name": "worker", "image": "worker:2", "command": ["celery", "worker"]}
            ]
        }
    });
    let out = admit_with(&pod, "cxtm", &Config::default(), &FileView::default());
    assert_eq!(out.outcome(), Some(&Outcome::Injected));
    assert!(env_value(&out.pod, 0, "PYTHONPATH").is_some());
    assert!(
        out.pod["spec"]["containers"][1].get("env").is_none(),
        "unnamed container untouched"
    );
    assert!(env_value(&out.pod, 2, "PYTHONPATH").is_some());
    assert!(
        env_value(&out.pod, 2, "OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|a| a.contains("service.version=2"))
    );
    assert_eq!(
        out.pod["spec"]["containers"][2]["command"],
        json!(["celery", "worker"])
    );
    let inits = out.pod["spec"]["initContainers"]
        .as_array()
        .expect("init containers");
    assert_eq!(inits.len(), 2, "one init container added, the user's kept");
    assert!(
        inits[0].get("env").is_none(),
        "init containers are not instrumented"
    );
    assert_eq!(out.pod["spec"]["volumes"].as_array().map(Vec::len), Some(1));
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("\"setup\" is an init container")),
        "{:?}",
        out.warnings()
    );
    assert_eq!(
        out.pod["metadata"]["annotations"]["otel-injector.io/containers"],
        "api,worker"
    );
}

/// An Instrumentation value the API server would refuse (nothing validates
/// the CRD before us) admits the pod untouched, with a warning that names the
/// field and the resource, instead of a patch that gets the pod refused.
#[test]
fn an_instrumentation_value_the_api_server_would_refuse_admits_the_pod_untouched() {
    use std::sync::Arc;
    let cluster = FileView::default().with_instrumentation(
        "cxtm",
        "inst",
        json!({"python": {"volumeLimitSize": "200MB"}}),
    );
    let pod = app(
        json!([]),
        json!({"instrumentation.opentelemetry.io/inject-python": "inst"}),
    );
    let reviewer = otel_injector::review::Reviewer::new(Config::default(), Arc::new(cluster));
    let body = serde_json::to_vec(&review(&pod, "cxtm", "u1")).expect("json");
    let reviewed = reviewer.review(&body).expect("answered");
    let answer: Value = serde_json::from_slice(&reviewed.body).expect("json");
    assert_eq!(answer["response"]["allowed"], true);
    assert!(
        answer["response"].get("patch").is_none(),
        "a patch the API server would refuse: {answer}"
    );
    let warnings = answer["response"]["warnings"].to_string();
    assert!(
        warnings.contains("spec.python.volumeLimitSize") && warnings.contains("cxtm/inst"),
        "{warnings}"
    );
    assert_eq!(reviewed.decision.outcome.label(), "error");
}
