//! The OpenTelemetry Operator's resources and annotations, unchanged, on a
//! real kube-apiserver: the seed's Instrumentation (endpoint fixed) and the
//! `inject-python: <name>` annotation produce the instrumented pod; a missing
//! resource admits the pod uninstrumented with a warning and an Event; a
//! changed resource is used by the next pod.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::{env_value, fixture};
use serde_json::{Value, json};

const INIT: &str = "opentelemetry-auto-instrumentation-python";
const ANNOTATION: &str = "instrumentation.opentelemetry.io/inject-python";

fn yaml_file(path: &str) -> Value {
    serde_yaml_ng::from_str(&std::fs::read_to_string(repo().join(path)).expect(path)).expect("yaml")
}

fn opted_in_pod(name: &str, value: &str) -> Value {
    let mut pod = fixture("seed-pod.json");
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]
        .as_object_mut()
        .map(|m| m.remove("namespace"));
    pod["metadata"]["annotations"] = json!({ ANNOTATION: value });
    pod
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs the real control plane"
)]
fn operator_instrumentation_and_annotations_work_unchanged() {
    let plane = ControlPlane::up("instrumentation");
    plane.install_instrumentation_crd();
    // Config without cxtm in `namespaces`: only the annotation brings pods in,
    // as with the operator.
    let config = plane.state_dir.join("config.yaml");
    std::fs::write(&config, "namespaces: []\n").expect("config");
    let webhook = Webhook::start(
        &plane,
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--event-interval-seconds",
            "1",
        ],
    );
    plane.namespace("cxtm", &[]);
    plane.register_webhook(&webhook.url());
    plane.apply(&yaml_file(
        "manifests/instrumentation/cxtm-python-instrumentation.yaml",
    ));

    // The seed's annotation, with the Instrumentation's name.
    let value = "cxtm-python-instrumentation";
    let pod = eventually(
        "the webhook to use the Instrumentation",
        Duration::from_secs(60),
        || {
            let pod = plane.dry_run("cxtm", &opted_in_pod("probe", value))?;
            has_init_container(&pod, INIT).then_some(pod)
        },
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["image"],
        "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.54b1"
    );
    let created = plane.create_pod("cxtm", &opted_in_pod("cxtm-logstream", value));
    assert_eq!(
        env_value(&created, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://cxtvng-splunk-otel-collector-agent.ao.svc.cluster.local:4318")
    );
    assert_eq!(
        env_value(&created, 0, "OTEL_EXPORTER_OTLP_PROTOCOL").as_deref(),
        Some("http/protobuf")
    );
    assert_eq!(
        env_value(&created, 0, "OTEL_SERVICE_NAME").as_deref(),
        Some("cxtm-logstream")
    );
    let attributes =
        env_value(&created, 0, "OTEL_RESOURCE_ATTRIBUTES").expect("resource attributes");
    assert!(
        attributes.contains("k8s.pod.name=$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)"),
        "{attributes}"
    );
    assert!(
        attributes.contains("service.version=25.2.0"),
        "{attributes}"
    );
    // Operator defaults for the init container and the volume.
    assert_eq!(
        created["spec"]["initContainers"][0]["resources"]["limits"]["memory"],
        "256Mi"
    );
    assert_eq!(
        created["spec"]["volumes"][0]["emptyDir"]["sizeLimit"],
        "200Mi"
    );
    // "true" finds the namespace's single Instrumentation.
    assert!(has_init_container(
        &plane.create_pod("cxtm", &opted_in_pod("by-true", "true")),
        INIT
    ));

    // A changed resource is used by the next pod within seconds.
    let mut changed = yaml_file("manifests/instrumentation/cxtm-python-instrumentation.yaml");
    changed["spec"]["python"]["image"] = json!("registry.example/autoinstrumentation-python:9.9");
    plane.apply(&changed);
    eventually(
        "the new image to be injected",
        Duration::from_secs(10),
        || {
            let pod = plane.dry_run("cxtm", &opted_in_pod("probe", value))?;
            (pod["spec"]["initContainers"][0]["image"]
                == "registry.example/autoinstrumentation-python:9.9")
                .then_some(())
        },
    );

    // Deleted: admitted uninstrumented, a warning in the response, an Event.
    plane.kubectl(&["delete", "instrumentation", "-n", "cxtm", value], None);
    let (stdout, warnings) = eventually("the deletion to be seen", Duration::from_secs(10), || {
        let (stdout, stderr) = plane.kubectl_with_warnings(
            &[
                "create",
                "-n",
                "cxtm",
                "--dry-run=server",
                "-o",
                "json",
                "-f",
                "-",
            ],
            &opted_in_pod("probe", value).to_string(),
        );
        stderr
            .contains("does not exist")
            .then_some((stdout, stderr))
    });
    let pod: Value = serde_json::from_str(&stdout).expect("json");
    assert!(!has_init_container(&pod, INIT));
    assert!(
        warnings.contains("cxtm/cxtm-python-instrumentation"),
        "{warnings}"
    );
    let (stdout, _) = plane.kubectl_with_warnings(
        &["create", "-n", "cxtm", "-o", "json", "-f", "-"],
        &opted_in_pod("missing", value).to_string(),
    );
    let missing: Value = serde_json::from_str(&stdout).expect("json");
    assert!(
        !has_init_container(&missing, INIT),
        "admitted uninstrumented"
    );
    let events = eventually(
        "an Event about the skipped pod",
        Duration::from_secs(15),
        || {
            let out = plane
                .try_kubectl(
                    &["get", "events.events.k8s.io", "-n", "cxtm", "-o", "json"],
                    None,
                )
                .ok()?;
            out.contains("InstrumentationSkipped").then_some(out)
        },
    );
    assert!(events.contains("cxtm-python-instrumentation"), "{events}");
    assert!(
        webhook
            .log_text()
            .contains("cxtm/cxtm-python-instrumentation"),
        "the log names the missing resource"
    );
}

/// An Instrumentation value the API server refuses in a pod (nothing
/// validates the CRD's spec) used to get every pod that used it refused:
/// `volumeLimitSize: 200MB` made each create fail with "quantities must match
/// the regular expression". Now the pod is created, uninstrumented, with a
/// warning and an Event that name the field and the resource; fixing the
/// value instruments the next pod.
#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs the real control plane"
)]
fn an_instrumentation_value_the_api_server_refuses_no_longer_stops_pods() {
    let plane = ControlPlane::up("guard");
    plane.install_instrumentation_crd();
    let config = plane.state_dir.join("config.yaml");
    std::fs::write(&config, "namespaces: []\n").expect("config");
    let webhook = Webhook::start(
        &plane,
        &[
            "--config",
            config.to_str().expect("utf-8 path"),
            "--event-interval-seconds",
            "1",
        ],
    );
    plane.namespace("cxtm", &[]);
    plane.register_webhook(&webhook.url());
    let mut bad = yaml_file("manifests/instrumentation/cxtm-python-instrumentation.yaml");
    bad["spec"]["python"]["volumeLimitSize"] = json!("200MB");
    plane.apply(&bad);
    let value = "cxtm-python-instrumentation";
    eventually(
        "the webhook to see the Instrumentation",
        Duration::from_secs(60),
        || {
            let (_, warnings) = plane.kubectl_with_warnings(
                &[
                    "create",
                    "-n",
                    "cxtm",
                    "--dry-run=server",
                    "-o",
                    "json",
                    "-f",
                    "-",
                ],
                &opted_in_pod("probe", value).to_string(),
            );
            warnings.contains("volumeLimitSize").then_some(())
        },
    );

    // Created (kubectl_with_warnings asserts success), not instrumented.
    let (stdout, warnings) = plane.kubectl_with_warnings(
        &["create", "-n", "cxtm", "-o", "json", "-f", "-"],
        &opted_in_pod("cxtm-logstream", value).to_string(),
    );
    let created: Value = serde_json::from_str(&stdout).expect("json");
    assert_eq!(created["metadata"]["name"], "cxtm-logstream");
    assert!(!has_init_container(&created, INIT), "{created}");
    assert!(
        warnings.contains("spec.python.volumeLimitSize")
            && warnings.contains("200MB")
            && warnings.contains("cxtm/cxtm-python-instrumentation"),
        "the warning names the field, the value and the resource: {warnings}"
    );
    plane.get_pod("cxtm", "cxtm-logstream");
    let events = eventually(
        "an Event about the skipped pod",
        Duration::from_secs(15),
        || {
            let out = plane
                .try_kubectl(
                    &["get", "events.events.k8s.io", "-n", "cxtm", "-o", "json"],
                    None,
                )
                .ok()?;
            out.contains("volumeLimitSize").then_some(out)
        },
    );
    assert!(events.contains("InstrumentationSkipped"), "{events}");

    // Fixed: the next pod is instrumented with the new value.
    let mut fixed = bad;
    fixed["spec"]["python"]["volumeLimitSize"] = json!("200Mi");
    plane.apply(&fixed);
    let pod = eventually(
        "the fixed Instrumentation to be used",
        Duration::from_secs(15),
        || {
            let pod = plane.dry_run("cxtm", &opted_in_pod("probe", value))?;
            has_init_container(&pod, INIT).then_some(pod)
        },
    );
    assert_eq!(pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"], "200Mi");
}
