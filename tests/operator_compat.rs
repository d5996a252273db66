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
    // own `opentelemetry-instrument` puts it there (docs/migration.md).
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
        let value = env_value(&out.pod, 0, name).unwrap_or_default();
        if name == "OTEL_RESOURCE_ATTRIBUTES" {
            // sdk.go injectCommonSDKConfig: the computed attributes are
            // appended to the container's own value, which stays first.
            assert!(
                value.starts_with("mine,deployment.environment=production,k8s.container.name=app,"),
                "{value}"
            );
        } else {
            assert_eq!(value, "mine", "{name} overwritten");
        }
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

// ---------------------------------------------------------------------------
// Parity with the operator's own tests (open-telemetry/opentelemetry-operator,
// internal/instrumentation). Each case is the operator's input and the values
// its test expects; the webhook's config is emptied of its own additions
// (`resourceAttributes`, `env`, `nodeSelector`) so only the Instrumentation speaks.

const INJECT: &str = "instrumentation.opentelemetry.io/inject-python";

/// The webhook's config with nothing of its own in the pod.
fn bare_config() -> Config {
    Config {
        namespaces: vec![],
        resource_attributes: Default::default(),
        env: vec![],
        node_selector: Default::default(),
        ..Config::default()
    }
}

/// The env of container `index` as (name, value or fieldRef path), in order.
fn env_pairs(pod: &Value, index: usize) -> Vec<(String, String)> {
    pod["spec"]["containers"][index]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|v| {
                    let value = v["value"]
                        .as_str()
                        .map(str::to_owned)
                        .or_else(|| {
                            v["valueFrom"]["fieldRef"]["fieldPath"]
                                .as_str()
                                .map(|p| format!("fieldRef:{p}"))
                        })
                        .unwrap_or_default();
                    (v["name"].as_str().unwrap_or_default().to_owned(), value)
                })
                .collect()
        })
        .unwrap_or_default()
}

fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(n, v)| ((*n).to_owned(), (*v).to_owned()))
        .collect()
}

/// sdk_test.go `TestInjectPython`: the whole env, in the operator's order.
/// Differences listed in docs/migration.md: our mount path (`mountPath` in config),
/// so PYTHONPATH names `/otel-auto-instrumentation`.
#[test]
fn inject_python_env_is_the_operators() {
    let cluster = FileView::default().with_instrumentation(
        "ns",
        "inst",
        json!({"python": {"image": "img:1"}, "exporter": {"endpoint": "https://collector:4318"}}),
    );
    let pod = json!({
        "metadata": {"annotations": {INJECT: "inst"}},
        "spec": {"containers": [{"name": "app", "image": "app:latest"}]}
    });
    let out = admit_with(&pod, "ns", &bare_config(), &cluster);
    let prefix = "/otel-auto-instrumentation/opentelemetry/instrumentation/auto_instrumentation";
    // docs/migration.md row: an unwrapped container's PYTHONPATH ends with `.` (#2302).
    let pythonpath = format!("{prefix}:/otel-auto-instrumentation:.");
    assert_eq!(
        env_pairs(&out.pod, 0),
        pairs(&[
            ("OTEL_NODE_IP", "fieldRef:status.hostIP"),
            ("OTEL_POD_IP", "fieldRef:status.podIP"),
            ("PYTHONPATH", &pythonpath),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_SERVICE_NAME", "app"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "https://collector:4318"),
            (
                "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
                "fieldRef:metadata.name"
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
                "fieldRef:spec.nodeName"
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES",
                "k8s.container.name=app,k8s.namespace.name=ns,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),service.instance.id=ns.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).app,service.namespace=ns,service.version=latest"
            ),
        ])
    );
    let volume = &out.pod["spec"]["volumes"][0];
    assert_eq!(volume["emptyDir"]["sizeLimit"], "200Mi", "{volume}");
}

/// A cluster with the operator test's Deployment → ReplicaSet chain
/// (sdk_test.go `TestSDKInjection` creates both).
fn sdk_injection_cluster(spec: Value) -> FileView {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    FileView::default()
        .with_instrumentation("project1", "inst", spec)
        .with_workload(
            "project1",
            "ReplicaSet",
            "my-replicaset",
            Some(OwnerReference {
                api_version: "apps/v1".into(),
                kind: "Deployment".into(),
                name: "my-deployment".into(),
                uid: "depuid".into(),
                ..Default::default()
            }),
        )
}

fn rs_owned(extra: Value) -> Value {
    let mut metadata = json!({
        "name": "app",
        "uid": "pod-uid",
        "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "my-replicaset", "uid": "rsuid"}],
        "annotations": {INJECT: "inst"}
    });
    if let (Some(m), Some(e)) = (metadata.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            if k == "annotations" {
                for (ak, av) in v.as_object().into_iter().flatten() {
                    m["annotations"][ak] = av.clone();
                }
            } else {
                m.insert(k.clone(), v.clone());
            }
        }
    }
    metadata
}

/// sdk_test.go `TestSDKInjection`: `OTEL_SERVICE_NAME` and
/// `OTEL_RESOURCE_ATTRIBUTES` for the operator's cases, values verbatim.
#[test]
fn sdk_injection_resource_attributes_are_the_operators() {
    let digest = "sha256:232a180dbcbcfa7250917507f3827d88a9ae89bb1cdd8fe3ac4db7b764ebb25a";
    let sampler = json!({"type": "parentbased_traceidratio", "argument": "0.25"});
    struct Case {
        name: &'static str,
        spec: Value,
        metadata: Value,
        container: Value,
        node_name: Option<&'static str>,
        service_name: &'static str,
        attributes: String,
    }
    let cases = [
        Case {
            name: "SDK env vars not defined",
            spec: json!({"exporter": {"endpoint": "https://collector:4317"}, "resource": {"addK8sUIDAttributes": true, "resourceAttributes": {"foo": "hidden"}}, "propagators": ["b3", "jaeger"], "sampler": sampler}),
            metadata: rs_owned(json!({
                "labels": {"app.kubernetes.io/name": "app-name", "app.kubernetes.io/version": "v1"},
                "annotations": {"resource.opentelemetry.io/foo": "bar"}
            })),
            container: json!({"name": "application-name", "image": format!("app:v1@{digest}")}),
            node_name: None,
            service_name: "my-deployment",
            attributes: format!("foo=bar,k8s.container.name=application-name,k8s.deployment.name=my-deployment,k8s.deployment.uid=depuid,k8s.namespace.name=project1,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),k8s.pod.uid=pod-uid,k8s.replicaset.name=my-replicaset,k8s.replicaset.uid=rsuid,service.instance.id=project1.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).application-name,service.namespace=project1,service.version=v1@{digest}"),
        },
        Case {
            name: "Resource attribute from CRD",
            spec: json!({"exporter": {"endpoint": "https://collector:4317"}, "resource": {"addK8sUIDAttributes": true, "resourceAttributes": {
                "k8s.container.name": "explicit-container", "k8s.deployment.name": "explicit-deployment",
                "k8s.deployment.uid": "explicit-deployment-uid", "k8s.namespace.name": "explicit-ns",
                "k8s.node.name": "explicit-node", "k8s.pod.name": "explicit-pod", "k8s.pod.uid": "explicit-pod-uid",
                "k8s.replicaset.name": "explicit-replicaset", "k8s.replicaset.uid": "explicit-replicaset-uid",
                "service.instance.id": "explicit-id", "service.version": "explicit-version"}},
                "propagators": ["b3", "jaeger"], "sampler": sampler}),
            metadata: rs_owned(json!({})),
            container: json!({"name": "application-name", "image": "app:latest"}),
            node_name: Some("node-name"),
            service_name: "my-deployment",
            attributes: "k8s.container.name=application-name,k8s.deployment.name=my-deployment,k8s.deployment.uid=depuid,k8s.namespace.name=project1,k8s.node.name=node-name,k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),k8s.pod.uid=pod-uid,k8s.replicaset.name=my-replicaset,k8s.replicaset.uid=rsuid,service.instance.id=project1.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).application-name,service.namespace=project1,service.version=latest".into(),
        },
        Case {
            name: "SDK env vars not defined - use labels for resource attributes",
            spec: json!({"exporter": {"endpoint": "https://collector:4317"}, "resource": {"addK8sUIDAttributes": true}, "propagators": ["b3", "jaeger"], "sampler": sampler, "defaults": {"useLabelsForResourceAttributes": true}}),
            metadata: rs_owned(json!({
                "labels": {"app.kubernetes.io/name": "app-name", "app.kubernetes.io/version": "v1"},
                "annotations": {"resource.opentelemetry.io/foo": "bar"}
            })),
            container: json!({"name": "application-name", "image": "app:latest"}),
            node_name: None,
            service_name: "app-name",
            attributes: "foo=bar,k8s.container.name=application-name,k8s.deployment.name=my-deployment,k8s.deployment.uid=depuid,k8s.namespace.name=project1,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),k8s.pod.uid=pod-uid,k8s.replicaset.name=my-replicaset,k8s.replicaset.uid=rsuid,service.instance.id=project1.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).application-name,service.namespace=project1,service.version=v1".into(),
        },
        Case {
            // The operator's container has no name; ours is named `other`,
            // which its own OTEL_RESOURCE_ATTRIBUTES already says.
            name: "SDK env vars defined",
            spec: json!({"exporter": {"endpoint": "https://collector:4317"}, "resource": {"resourceAttributes": {"fromcr": "val"}}, "propagators": ["jaeger"], "sampler": sampler, "defaults": {"useLabelsForResourceAttributes": true}}),
            metadata: json!({"name": "app", "labels": {"app.kubernetes.io/name": "not-used", "app.kubernetes.io/version": "not-used"}, "annotations": {INJECT: "inst"}}),
            container: json!({"name": "other", "image": "app:latest", "env": [
                {"name": "OTEL_SERVICE_NAME", "value": "explicit-name"},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "explicitly_set"},
                {"name": "OTEL_PROPAGATORS", "value": "b3"},
                {"name": "OTEL_TRACES_SAMPLER", "value": "always_on"},
                {"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "foo=bar,k8s.container.name=other,service.version=explicit-version,service.namespace=explicit-ns,service.instance.id=explicit-id,"}
            ]}),
            node_name: None,
            service_name: "explicit-name",
            attributes: "foo=bar,k8s.container.name=other,service.version=explicit-version,service.namespace=explicit-ns,service.instance.id=explicit-id,fromcr=val,k8s.namespace.name=project1,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)".into(),
        },
    ];
    for case in cases {
        let cluster = sdk_injection_cluster(case.spec.clone());
        let mut spec = json!({"containers": [case.container.clone()]});
        if let Some(node) = case.node_name {
            spec["nodeName"] = json!(node);
        }
        let pod = json!({"metadata": case.metadata, "spec": spec});
        let out = admit_with(&pod, "project1", &bare_config(), &cluster);
        assert_eq!(out.scope, "inject", "{}: {}", case.name, out.why);
        assert_eq!(
            env_value(&out.pod, 0, "OTEL_SERVICE_NAME").as_deref(),
            Some(case.service_name),
            "{}",
            case.name
        );
        assert_eq!(
            env_value(&out.pod, 0, "OTEL_RESOURCE_ATTRIBUTES").as_deref(),
            Some(case.attributes.as_str()),
            "{}",
            case.name
        );
        // Every `$(VAR)` the attributes use is defined before them.
        let names: Vec<String> = env_pairs(&out.pod, 0).into_iter().map(|(n, _)| n).collect();
        let at = names
            .iter()
            .position(|n| n == "OTEL_RESOURCE_ATTRIBUTES")
            .unwrap_or(usize::MAX);
        for var in [
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
        ] {
            if case.attributes.contains(&format!("$({var})")) {
                let pos = names.iter().position(|n| n == var);
                assert!(
                    pos.is_some_and(|p| p < at),
                    "{}: {var} after use: {names:?}",
                    case.name
                );
            }
        }
    }
}

/// sdk_test.go `TestParentResourceLabels` (with UIDs) and `TestChooseServiceName`:
/// the owner attributes and the service name for each kind of owner.
#[test]
fn parent_resource_labels_and_service_name_are_the_operators() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let owner = |kind: &str, name: &str, uid: &str| OwnerReference {
        api_version: "apps/v1".into(),
        kind: kind.into(),
        name: name.into(),
        uid: uid.into(),
        ..Default::default()
    };
    let cluster = FileView::default()
        .with_instrumentation(
            "ns",
            "inst",
            json!({"resource": {"addK8sUIDAttributes": true}}),
        )
        .with_workload(
            "ns",
            "ReplicaSet",
            "my-deploy-rs",
            Some(owner("Deployment", "my-deploy", "my-deploy-uid")),
        )
        .with_workload(
            "ns",
            "Job",
            "my-cronjob-job",
            Some(owner("CronJob", "my-cronjob", "my-cronjob-uid")),
        );
    /// (case, owner (kind, name, uid), owner attributes, service name)
    type Case<'a> = (
        &'a str,
        Option<(&'a str, &'a str, &'a str)>,
        &'a [&'a str],
        &'a str,
    );
    let cases: [Case; 7] = [
        ("from orphan pod", None, &[], "app"),
        (
            "from replicaset",
            Some(("ReplicaSet", "my-rs", "my-rs-uid")),
            &["k8s.replicaset.name=my-rs", "k8s.replicaset.uid=my-rs-uid"],
            "my-rs",
        ),
        (
            "from deployment",
            Some(("ReplicaSet", "my-deploy-rs", "my-deploy-rs-uid")),
            &[
                "k8s.deployment.name=my-deploy",
                "k8s.deployment.uid=my-deploy-uid",
                "k8s.replicaset.name=my-deploy-rs",
                "k8s.replicaset.uid=my-deploy-rs-uid",
            ],
            "my-deploy",
        ),
        (
            "from job",
            Some(("Job", "my-job", "my-job-uid")),
            &["k8s.job.name=my-job", "k8s.job.uid=my-job-uid"],
            "my-job",
        ),
        (
            "from cronjob",
            Some(("Job", "my-cronjob-job", "my-cronjob-job-uid")),
            &[
                "k8s.cronjob.name=my-cronjob",
                "k8s.cronjob.uid=my-cronjob-uid",
                "k8s.job.name=my-cronjob-job",
                "k8s.job.uid=my-cronjob-job-uid",
            ],
            "my-cronjob",
        ),
        (
            "from statefulset",
            Some(("StatefulSet", "my-statefulset", "my-statefulset-uid")),
            &[
                "k8s.statefulset.name=my-statefulset",
                "k8s.statefulset.uid=my-statefulset-uid",
            ],
            "my-statefulset",
        ),
        (
            "from daemonset",
            Some(("DaemonSet", "my-daemonset", "my-daemonset-uid")),
            &[
                "k8s.daemonset.name=my-daemonset",
                "k8s.daemonset.uid=my-daemonset-uid",
            ],
            "my-daemonset",
        ),
    ];
    for (name, owner, want, service) in cases {
        let mut metadata = json!({"annotations": {INJECT: "inst"}});
        if let Some((kind, owner_name, uid)) = owner {
            metadata["ownerReferences"] = json!([{"apiVersion": "apps/v1", "kind": kind, "name": owner_name, "uid": uid, "controller": true}]);
        }
        // A pod without a name: the operator's service name falls back to the container's.
        let pod = json!({"metadata": metadata, "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
        let out = admit_with(&pod, "ns", &bare_config(), &cluster);
        let attributes = env_value(&out.pod, 0, "OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
        let owners: Vec<&str> = attributes
            .split(',')
            .filter(|kv| {
                [
                    "k8s.deployment.",
                    "k8s.replicaset.",
                    "k8s.job.",
                    "k8s.cronjob.",
                    "k8s.statefulset.",
                    "k8s.daemonset.",
                ]
                .iter()
                .any(|p| kv.starts_with(p))
            })
            .collect();
        assert_eq!(owners, want, "{name}: {attributes}");
        assert_eq!(
            env_value(&out.pod, 0, "OTEL_SERVICE_NAME").as_deref(),
            Some(service),
            "{name}"
        );
    }
}

/// sdk_test.go `Test_parseServiceVersionFromImage`: service.version from the image.
#[test]
fn service_version_from_the_image_is_the_operators() {
    let digest = "sha256:6a3a8c8b32a4d8a2d9b3ef3f1f3c9ff4b1a1e5b6d6c1c8e2b9c1f2a0b3c4d5e6";
    let cases = [
        ("org/app", None),
        ("org/app:1.2.3", Some("1.2.3".to_owned())),
        (
            &*format!("org/app:1.2.3@{digest}"),
            Some(format!("1.2.3@{digest}")),
        ),
        (&*format!("org/app@{digest}"), Some(digest.to_owned())),
        ("docker.io/org/app:1.2.3", Some("1.2.3".to_owned())),
        ("localhost:5000/org/app:1.2.3", Some("1.2.3".to_owned())),
        ("org/app:latest", Some("latest".to_owned())),
    ];
    let cluster = FileView::default().with_instrumentation("ns", "inst", json!({}));
    for (image, want) in cases {
        let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {"containers": [{"name": "app", "image": image}]}});
        let out = admit_with(&pod, "ns", &bare_config(), &cluster);
        let attributes = env_value(&out.pod, 0, "OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
        let version = attributes
            .split(',')
            .find_map(|kv| kv.strip_prefix("service.version="))
            .map(str::to_owned);
        assert_eq!(version, want, "{image}");
    }
}

/// exporter_test.go `TestExporter`: volumes, mounts and env for each TLS
/// shape. Deliberate difference (docs/migration.md): the volumes are `optional`.
#[test]
fn exporter_tls_is_the_operators() {
    struct Case {
        name: &'static str,
        tls: Value,
        volumes: Value,
        mounts: Value,
        env: [(&'static str, &'static str); 3],
    }
    let secret = json!({"name": "otel-auto-secret-my-certs", "secret": {"secretName": "my-certs", "optional": true}});
    let secret_mount = json!({"name": "otel-auto-secret-my-certs", "mountPath": "/otel-auto-instrumentation-secret-my-certs", "readOnly": true});
    let cases = [
        Case {
            name: "ca, crt and key from secret",
            tls: json!({"secretName": "my-certs", "ca_file": "ca.crt", "cert_file": "cert.crt", "key_file": "key.key"}),
            volumes: json!([secret]),
            mounts: json!([secret_mount]),
            env: [
                (
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    "/otel-auto-instrumentation-secret-my-certs/ca.crt",
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    "/otel-auto-instrumentation-secret-my-certs/cert.crt",
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    "/otel-auto-instrumentation-secret-my-certs/key.key",
                ),
            ],
        },
        Case {
            name: "crt and key from secret and ca from configmap",
            tls: json!({"secretName": "my-certs", "configMapName": "ca-bundle", "ca_file": "ca.crt", "cert_file": "cert.crt", "key_file": "key.key"}),
            volumes: json!([secret, {"name": "otel-auto-configmap-ca-bundle", "configMap": {"name": "ca-bundle", "optional": true}}]),
            mounts: json!([secret_mount, {"name": "otel-auto-configmap-ca-bundle", "mountPath": "/otel-auto-instrumentation-configmap-ca-bundle", "readOnly": true}]),
            env: [
                (
                    "OTEL_EXPORTER_OTLP_CERTIFICATE",
                    "/otel-auto-instrumentation-configmap-ca-bundle/ca.crt",
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
                    "/otel-auto-instrumentation-secret-my-certs/cert.crt",
                ),
                (
                    "OTEL_EXPORTER_OTLP_CLIENT_KEY",
                    "/otel-auto-instrumentation-secret-my-certs/key.key",
                ),
            ],
        },
        Case {
            name: "ca, crt key absolute paths",
            tls: json!({"ca_file": "/ca.crt", "cert_file": "/cert.crt", "key_file": "/key.key"}),
            volumes: json!([]),
            mounts: json!([]),
            env: [
                ("OTEL_EXPORTER_OTLP_CERTIFICATE", "/ca.crt"),
                ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "/cert.crt"),
                ("OTEL_EXPORTER_OTLP_CLIENT_KEY", "/key.key"),
            ],
        },
    ];
    for case in cases {
        let cluster = FileView::default().with_instrumentation(
            "ns",
            "inst",
            json!({"exporter": {"endpoint": "https://collector:4318", "tls": case.tls}}),
        );
        let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
        let out = admit_with(&pod, "ns", &bare_config(), &cluster);
        assert_eq!(out.scope, "inject", "{}: {}", case.name, out.why);
        // Ours last, after the certificates (the operator's order).
        let volumes = out.pod["spec"]["volumes"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let (tls_volumes, ours) = volumes.split_at(volumes.len() - 1);
        assert_eq!(json!(tls_volumes), case.volumes, "{}", case.name);
        assert_eq!(ours[0]["name"], "opentelemetry-auto-instrumentation-python");
        let mounts = out.pod["spec"]["containers"][0]["volumeMounts"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(json!(mounts[1..]), case.mounts, "{}", case.name);
        let env = env_pairs(&out.pod, 0);
        let endpoint_at = env
            .iter()
            .position(|(n, _)| n == "OTEL_EXPORTER_OTLP_ENDPOINT");
        let expected: Vec<(String, String)> = pairs(&case.env);
        let at = endpoint_at.map(|i| i + 1).unwrap_or_default();
        assert_eq!(
            env[at..at + 3].to_vec(),
            expected,
            "{}: right after the endpoint",
            case.name
        );
    }
}

/// A TLS name the API server would refuse in the pod (a volume name must be
/// a DNS-1123 label; a Secret may be named `my.certs`) admits the pod
/// untouched and says which field.
#[test]
fn exporter_tls_names_that_make_invalid_volume_names_admit_the_pod_untouched() {
    for (tls, field) in [
        (
            json!({"secretName": "my.certs", "ca_file": "ca.crt"}),
            "spec.exporter.tls.secretName",
        ),
        (
            json!({"configMapName": "CA_Bundle", "ca_file": "ca.crt"}),
            "spec.exporter.tls.configMapName",
        ),
    ] {
        let cluster = FileView::default().with_instrumentation(
            "ns",
            "inst",
            json!({"exporter": {"tls": tls}}),
        );
        let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
        let out = admit_with(&pod, "ns", &bare_config(), &cluster);
        assert_eq!(out.scope, "unresolvable", "{field}");
        assert!(out.admission.patch().is_none());
        assert!(
            out.why.contains(field) && out.why.contains("ns/inst"),
            "{}",
            out.why
        );
    }
    // A container that already mounts something at the certificate path is
    // left alone rather than given a second mount there (the API server
    // refuses duplicate mount paths).
    let cluster = FileView::default().with_instrumentation(
        "ns",
        "inst",
        json!({"exporter": {"tls": {"secretName": "certs", "ca_file": "ca.crt"}}}),
    );
    let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {
        "volumes": [{"name": "mine", "emptyDir": {}}],
        "containers": [{"name": "app", "image": "app:1", "volumeMounts": [{"name": "mine", "mountPath": "/otel-auto-instrumentation-secret-certs"}]}]}});
    let out = admit_with(&pod, "ns", &bare_config(), &cluster);
    assert!(
        matches!(out.outcome(), Some(Outcome::Skipped { .. })),
        "{}",
        out.why
    );
}

/// sdk.go `defaultPodNodeEnvVars` / `injectCommonEnvVar`: OTEL_NODE_IP and
/// OTEL_POD_IP go first, before the container's own env, so
/// `http://$(OTEL_NODE_IP):4318` expands wherever it is set.
#[test]
fn node_and_pod_ip_come_first_so_endpoints_expand() {
    let endpoint = "http://$(OTEL_NODE_IP):4318";
    let cluster = FileView::default().with_instrumentation(
        "ns",
        "inst",
        json!({"exporter": {"endpoint": endpoint}}),
    );
    let cases = [
        // (container env, where OTEL_NODE_IP must be, where OTEL_POD_IP must be)
        (json!(null), 0, 1),
        (
            json!([{"name": "A", "value": "1"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": endpoint}]),
            0,
            1,
        ),
        // The container's own OTEL_NODE_IP is kept; OTEL_POD_IP goes before it.
        (json!([{"name": "OTEL_NODE_IP", "value": "10.0.0.1"}]), 1, 0),
    ];
    for (env, at, pod_ip_at) in cases {
        let mut container = json!({"name": "app", "image": "app:1"});
        if !env.is_null() {
            container["env"] = env.clone();
        }
        let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {"containers": [container]}});
        let out = admit_with(&pod, "ns", &bare_config(), &cluster);
        let names: Vec<String> = env_pairs(&out.pod, 0).into_iter().map(|(n, _)| n).collect();
        let node = names.iter().position(|n| n == "OTEL_NODE_IP");
        let pod_ip = names.iter().position(|n| n == "OTEL_POD_IP");
        let endpoint_at = names
            .iter()
            .position(|n| n == "OTEL_EXPORTER_OTLP_ENDPOINT");
        assert_eq!(node, Some(at), "{env}: {names:?}");
        assert_eq!(pod_ip, Some(pod_ip_at), "{env}: {names:?}");
        assert!(endpoint_at > node, "{env}: {names:?}");
        assert_eq!(
            names.iter().filter(|n| *n == "OTEL_NODE_IP").count(),
            1,
            "{names:?}"
        );
        // The container's own vars keep their order and values.
        if let Some(own) = env.as_array() {
            let mine: Vec<&str> = own.iter().filter_map(|v| v["name"].as_str()).collect();
            let kept: Vec<&str> = names
                .iter()
                .map(String::as_str)
                .filter(|n| mine.contains(n))
                .collect();
            assert_eq!(kept, mine);
        }
    }
    // Without an Instrumentation, the webhook's own profile gets them only
    // when something refers to them.
    let plain = admit_with(
        &app(json!([]), json!({})),
        "cxtm",
        &Config::default(),
        &FileView::default(),
    );
    assert_eq!(env_value(&plain.pod, 0, "OTEL_NODE_IP"), None);
    let mut config = Config::default();
    config.exporter.endpoint = Some(endpoint.into());
    let referred = admit_with(
        &app(json!([]), json!({})),
        "cxtm",
        &config,
        &FileView::default(),
    );
    let names: Vec<String> = env_pairs(&referred.pod, 0)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    assert_eq!(
        names.first().map(String::as_str),
        Some("OTEL_NODE_IP"),
        "{names:?}"
    );
}

/// helper.go `instrVolume`: a non-empty `volumeClaimTemplate` makes the
/// volume ephemeral (no emptyDir, no size limit); one the API server would
/// refuse admits the pod untouched, naming the field.
#[test]
fn volume_claim_template_is_the_operators() {
    let template = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
    let cluster = FileView::default()
        .with_instrumentation("ns", "inst", json!({"python": {"volumeClaimTemplate": template}}))
        .with_instrumentation("ns", "bad", json!({"python": {"volumeClaimTemplate": {"metadata": {"name": "fixed"}, "spec": {"resources": {"requests": {"storage": "1GB"}}}}}}));
    let pod = |name: &str| json!({"metadata": {"name": "p", "annotations": {INJECT: name}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
    let out = admit_with(&pod("inst"), "ns", &bare_config(), &cluster);
    let volume = &out.pod["spec"]["volumes"][0];
    assert_eq!(
        volume,
        &json!({"name": "opentelemetry-auto-instrumentation-python", "ephemeral": {"volumeClaimTemplate": template}})
    );
    let out = admit_with(&pod("bad"), "ns", &bare_config(), &cluster);
    assert_eq!(out.scope, "unresolvable");
    for field in [
        "spec.python.volumeClaimTemplate.spec.accessModes",
        "spec.python.volumeClaimTemplate.spec.resources.requests.storage",
        "spec.python.volumeClaimTemplate.metadata.name",
    ] {
        assert!(out.why.contains(field), "{field}: {}", out.why);
    }
}

/// sdk.go: a `spec.env` (or `python.env`) OTEL_RESOURCE_ATTRIBUTES is kept
/// and the computed attributes are appended to it, then moved last.
#[test]
fn spec_env_resource_attributes_are_merged_not_replacing() {
    let cluster = FileView::default().with_instrumentation(
        "ns",
        "inst",
        json!({"env": [{"name": "OTEL_RESOURCE_ATTRIBUTES", "value": "team=payments,k8s.namespace.name=mine"}]}),
    );
    let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {"containers": [{"name": "app", "image": "app:1"}]}});
    let out = admit_with(&pod, "ns", &bare_config(), &cluster);
    let env = env_pairs(&out.pod, 0);
    let (last, value) = env.last().cloned().unwrap_or_default();
    assert_eq!(last, "OTEL_RESOURCE_ATTRIBUTES");
    assert_eq!(
        value,
        "team=payments,k8s.namespace.name=mine,k8s.container.name=app,k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),service.instance.id=ns.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).app,service.namespace=ns,service.version=1"
    );
    assert_eq!(
        env.iter()
            .filter(|(n, _)| n == "OTEL_RESOURCE_ATTRIBUTES")
            .count(),
        1
    );
    // A valueFrom one (the operator would append to its empty value and get
    // the pod refused) is kept as is.
    let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {"containers": [{"name": "app", "image": "app:1", "env": [
        {"name": "OTEL_RESOURCE_ATTRIBUTES", "valueFrom": {"configMapKeyRef": {"name": "attrs", "key": "a"}}}]}]}});
    let out = admit_with(&pod, "ns", &bare_config(), &cluster);
    let vars: Vec<&Value> = out.pod["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .iter()
        .filter(|v| v["name"] == "OTEL_RESOURCE_ATTRIBUTES")
        .collect();
    assert_eq!(
        vars,
        [
            &json!({"name": "OTEL_RESOURCE_ATTRIBUTES", "valueFrom": {"configMapKeyRef": {"name": "attrs", "key": "a"}}})
        ],
        "the user's valueFrom var, once, exactly as written"
    );
}

/// sdk_test.go `TestChooseServiceName`, the label and annotation rows:
/// labels only with `useLabelsForResourceAttributes`, `instance` before
/// `name`, the annotation always first.
#[test]
fn service_name_labels_and_annotation_are_the_operators() {
    let cluster = FileView::default()
        .with_instrumentation("ns", "plain", json!({}))
        .with_instrumentation(
            "ns",
            "labels",
            json!({"defaults": {"useLabelsForResourceAttributes": true}}),
        );
    let annotation = "resource.opentelemetry.io/service.name";
    let cases = [
        ("plain", json!({}), json!({}), "my-pod"),
        (
            "plain",
            json!({"app.kubernetes.io/name": "annotation"}),
            json!({}),
            "my-pod",
        ),
        (
            "labels",
            json!({"app.kubernetes.io/name": "label"}),
            json!({}),
            "label",
        ),
        (
            "labels",
            json!({"app.kubernetes.io/instance": "label", "app.kubernetes.io/name": "secondary-label"}),
            json!({}),
            "label",
        ),
        (
            "plain",
            json!({"app.kubernetes.io/name": "label"}),
            json!({annotation: "annotation"}),
            "annotation",
        ),
        (
            "labels",
            json!({"app.kubernetes.io/name": "label"}),
            json!({annotation: "annotation"}),
            "annotation",
        ),
    ];
    for (inst, labels, annotations, want) in cases {
        let mut metadata = json!({"name": "my-pod", "labels": labels, "annotations": annotations});
        metadata["annotations"][INJECT] = json!(inst);
        let pod = json!({"metadata": metadata, "spec": {"containers": [{"name": "1st", "image": "a:1"}]}});
        let out = admit_with(&pod, "ns", &bare_config(), &cluster);
        assert_eq!(
            env_value(&out.pod, 0, "OTEL_SERVICE_NAME").as_deref(),
            Some(want),
            "{inst} {metadata}"
        );
    }
}

/// The operator's own end-to-end examples of Python Instrumentations
/// (`tests/e2e-instrumentation/instrumentation-python`, `-specenv`, `-musl`:
/// `00-install-instrumentation.yaml`, the app, and the pod `01-assert.yaml`
/// expects). The env the operator's pod must have is its assert's list, in
/// order; its `OTEL_RESOURCE_ATTRIBUTES` is asserted by `contains` only, so
/// the full value is the one sdk.go computes for that pod. Ours may differ
/// only in rows of docs/migration.md: here the mount path in
/// `PYTHONPATH`, `.` at its end for an unwrapped container, and for
/// `-specenv` the wrapped `command`.
/// `cargo test --test operator_compat operator_examples -- --nocapture`
/// prints them side by side.
#[test]
fn operator_examples_differ_only_in_listed_rows() {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
    let ns = "chainsaw-ns";
    let op_pythonpath = "/otel-auto-instrumentation-python/opentelemetry/instrumentation/auto_instrumentation:/otel-auto-instrumentation-python";
    let our_pythonpath = "/otel-auto-instrumentation/opentelemetry/instrumentation/auto_instrumentation:/otel-auto-instrumentation";
    let app_security =
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}});
    let deployment_pod = |name: &str, extra_annotations: Value| {
        let mut annotations = json!({INJECT: "true"});
        for (k, v) in extra_annotations.as_object().into_iter().flatten() {
            annotations[k] = v.clone();
        }
        json!({
            "metadata": {
                "name": format!("{name}-7d4b9c8f6d-x2x7q"),
                "labels": {"app": name, "pod-template-hash": "7d4b9c8f6d"},
                "annotations": annotations,
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{name}-7d4b9c8f6d"), "uid": "rs-uid", "controller": true}]
            },
            "spec": {
                "securityContext": {"runAsUser": 1000, "runAsGroup": 3000, "fsGroup": 3000},
                "containers": [{"name": "myapp", "image": "ghcr.io/open-telemetry/opentelemetry-operator/e2e-test-app-python:main",
                    "ports": [{"containerPort": 8080}], "securityContext": app_security}]
            }
        })
    };
    let attributes = |deployment: Option<&str>, version: &str| {
        let mut a = String::from("k8s.container.name=myapp,");
        if let Some(d) = deployment {
            a.push_str(&format!("k8s.deployment.name={d},"));
        }
        a.push_str(&format!("k8s.namespace.name={ns},k8s.node.name=$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME),k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME),"));
        if let Some(d) = deployment {
            a.push_str(&format!("k8s.replicaset.name={d}-7d4b9c8f6d,"));
        }
        a.push_str(&format!("service.instance.id={ns}.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).myapp,service.namespace={ns},service.version={version}"));
        a
    };
    let splunk_spec = |python_env: Value| {
        json!({
            "env": [{"name": "OTEL_EXPORTER_OTLP_TIMEOUT", "value": "20000"}, {"name": "OTEL_TRACES_SAMPLER", "value": "always_on"},
                    {"name": "SPLUNK_TRACE_RESPONSE_HEADER_ENABLED", "value": "true"}],
            "exporter": {"endpoint": "http://deployment-collector:4317"},
            "propagators": ["jaeger", "b3"],
            "sampler": {"type": "parentbased_traceidratio", "argument": "0.25"},
            "python": {"env": python_env}
        })
    };
    let splunk_env = |name: &str, extra: &[(&str, &str)]| {
        let mut env: Vec<(String, String)> = pairs(&[
            ("OTEL_NODE_IP", "fieldRef:status.hostIP"),
            ("OTEL_POD_IP", "fieldRef:status.podIP"),
            ("OTEL_LOG_LEVEL", "debug"),
            ("OTEL_TRACES_EXPORTER", "otlp"),
            (
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://deployment-collector:4318",
            ),
        ]);
        env.extend(pairs(extra));
        env.extend(pairs(&[
            ("PYTHONPATH", op_pythonpath),
            ("OTEL_EXPORTER_OTLP_TIMEOUT", "20000"),
            ("OTEL_TRACES_SAMPLER", "always_on"),
            ("SPLUNK_TRACE_RESPONSE_HEADER_ENABLED", "true"),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRICS_EXPORTER", "otlp"),
            ("OTEL_LOGS_EXPORTER", "otlp"),
            ("OTEL_SERVICE_NAME", name),
            (
                "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
                "fieldRef:metadata.name",
            ),
            (
                "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
                "fieldRef:spec.nodeName",
            ),
            ("OTEL_PROPAGATORS", "jaeger,b3"),
        ]));
        env.push((
            "OTEL_RESOURCE_ATTRIBUTES".into(),
            attributes(Some(name), "main"),
        ));
        env
    };
    struct Example {
        name: &'static str,
        spec: Value,
        pod: Value,
        operator_env: Vec<(String, String)>,
        operator_init_source: &'static str,
    }
    let examples = [
        Example {
            name: "instrumentation-python",
            spec: splunk_spec(json!([
                {"name": "OTEL_LOG_LEVEL", "value": "debug"}, {"name": "OTEL_TRACES_EXPORTER", "value": "otlp"},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://deployment-collector:4318"},
                {"name": "OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "value": "system_metrics"}])),
            pod: deployment_pod("my-python", json!({})),
            operator_env: splunk_env(
                "my-python",
                &[("OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", "system_metrics")],
            ),
            operator_init_source: "/autoinstrumentation/.",
        },
        Example {
            name: "instrumentation-python-musl",
            spec: splunk_spec(json!([
                {"name": "OTEL_LOG_LEVEL", "value": "debug"}, {"name": "OTEL_TRACES_EXPORTER", "value": "otlp"},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://deployment-collector:4318"}])),
            pod: deployment_pod(
                "my-python-musl",
                json!({"instrumentation.opentelemetry.io/otel-python-platform": "musl"}),
            ),
            operator_env: splunk_env("my-python-musl", &[]),
            operator_init_source: "/autoinstrumentation-musl/.",
        },
        Example {
            name: "instrumentation-python-specenv",
            spec: json!({
                "env": [{"name": "OTEL_METRICS_EXPORTER", "value": "none"}, {"name": "OTEL_LOGS_EXPORTER", "value": "none"}],
                "exporter": {"endpoint": "http://deployment-collector:4317"},
                "python": {"env": [{"name": "OTEL_TRACES_EXPORTER", "value": "otlp"}, {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://deployment-collector:4318"}]}
            }),
            pod: json!({
                "metadata": {"name": "my-python-specenv", "labels": {"app": "my-python-specenv"}, "annotations": {INJECT: "true"}},
                "spec": {
                    "securityContext": {"runAsNonRoot": true, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
                    "containers": [{"name": "myapp", "image": "mirror.gcr.io/library/python:3.8-slim",
                        "command": ["python", "-c", "import time; time.sleep(3600)"], "securityContext": app_security}]
                }
            }),
            operator_env: {
                let mut env = pairs(&[
                    ("OTEL_NODE_IP", "fieldRef:status.hostIP"),
                    ("OTEL_POD_IP", "fieldRef:status.podIP"),
                    ("OTEL_TRACES_EXPORTER", "otlp"),
                    (
                        "OTEL_EXPORTER_OTLP_ENDPOINT",
                        "http://deployment-collector:4318",
                    ),
                    ("PYTHONPATH", op_pythonpath),
                    ("OTEL_METRICS_EXPORTER", "none"),
                    ("OTEL_LOGS_EXPORTER", "none"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                    ("OTEL_SERVICE_NAME", "my-python-specenv"),
                    (
                        "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
                        "fieldRef:metadata.name",
                    ),
                    (
                        "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
                        "fieldRef:spec.nodeName",
                    ),
                ]);
                env.push((
                    "OTEL_RESOURCE_ATTRIBUTES".into(),
                    attributes(None, "3.8-slim"),
                ));
                env
            },
            operator_init_source: "/autoinstrumentation/.",
        },
    ];
    for example in examples {
        let owner = |name: &str| OwnerReference {
            api_version: "apps/v1".into(),
            kind: "Deployment".into(),
            name: name.into(),
            uid: "deploy-uid".into(),
            controller: Some(true),
            ..Default::default()
        };
        let app = example.pod["metadata"]["labels"]["app"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        let cluster = FileView::default()
            .with_instrumentation(ns, "inst", example.spec.clone())
            .with_workload(
                ns,
                "ReplicaSet",
                &format!("{app}-7d4b9c8f6d"),
                Some(owner(&app)),
            );
        let out = admit_with(&example.pod, ns, &bare_config(), &cluster);
        assert_eq!(out.scope, "inject", "{}: {}", example.name, out.why);
        let ours = env_pairs(&out.pod, 0);
        println!("\n== {} (operator's 01-assert.yaml | ours)", example.name);
        let width = 2 + example
            .operator_env
            .iter()
            .map(|(n, v)| n.len() + v.len())
            .max()
            .unwrap_or(0)
            .min(70);
        for i in 0..example.operator_env.len().max(ours.len()) {
            let show = |e: Option<&(String, String)>| {
                e.map(|(n, v)| format!("{n}={v}")).unwrap_or_default()
            };
            let (left, right) = (show(example.operator_env.get(i)), show(ours.get(i)));
            let mark = if left == right { ' ' } else { '|' };
            println!("{left:<width$.width$} {mark} {right}");
        }
        // Only listed differences: the mount path in PYTHONPATH, and `.` at
        // its end when the command is not wrapped.
        let wrapped = out.pod["spec"]["containers"][0]["command"]
            != example.pod["spec"]["containers"][0]["command"];
        let our_pythonpath = if wrapped {
            our_pythonpath.to_owned()
        } else {
            format!("{our_pythonpath}:.")
        };
        let expected: Vec<(String, String)> = example
            .operator_env
            .iter()
            .map(|(n, v)| {
                if n == "PYTHONPATH" {
                    (n.clone(), our_pythonpath.clone())
                } else {
                    (n.clone(), v.clone())
                }
            })
            .collect();
        assert_eq!(ours, expected, "{}", example.name);
        let init = &out.pod["spec"]["initContainers"][0];
        assert_eq!(
            init["command"][2], example.operator_init_source,
            "{}",
            example.name
        );
        assert_eq!(
            init["securityContext"], app_security,
            "{}: the app container's",
            example.name
        );
    }
}

/// `spec.initContainerSecurityContext` (types.go) is the one field of a
/// Python Instrumentation not applied; the response says so instead of
/// ignoring it silently (docs/migration.md).
#[test]
fn init_container_security_context_is_not_applied_and_says_so() {
    let cluster = FileView::default().with_instrumentation(
        "ns",
        "inst",
        json!({"initContainerSecurityContext": {"runAsUser": 0}}),
    );
    let pod = json!({"metadata": {"name": "p", "annotations": {INJECT: "inst"}}, "spec": {"containers": [{"name": "app", "image": "app:1", "securityContext": {"runAsUser": 1000}}]}});
    let out = admit_with(&pod, "ns", &bare_config(), &cluster);
    assert_eq!(
        out.pod["spec"]["initContainers"][0]["securityContext"],
        json!({"runAsUser": 1000})
    );
    assert!(
        out.warnings()
            .iter()
            .any(|w| w.contains("spec.initContainerSecurityContext is not applied")),
        "{:?}",
        out.warnings()
    );
}
