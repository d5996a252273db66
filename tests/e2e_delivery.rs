//! imageVolume delivery against the real kube-apiserver (no node): with the
//! ImageVolume feature gate off (1.34's default) the API server drops
//! `volumes[].image` and would refuse the pod, so the webhook's check must
//! see it and deliver through the init container; with the gate on, the pod
//! is stored with the image volume and no init container.
//! `OTEL_INJECTOR_SKIP_E2E=1` marks it ignored locally.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::fixture;
use serde_json::{Value, json};

const INIT: &str = "opentelemetry-auto-instrumentation-python";

fn image_volume_pod(name: &str) -> Value {
    let mut pod = fixture("seed-pod.json");
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]["annotations"]["otel-injector.io/delivery"] = json!("imageVolume");
    pod
}

/// `/readyz` once the image volume check has answered (not while it is pending).
fn checked_readyz(webhook: &Webhook) -> String {
    eventually(
        "the image volume check to answer",
        Duration::from_secs(60),
        || {
            let (_, body) = http_get(webhook.admin_port, "/readyz")?;
            (!body.contains("has not answered yet")).then_some(body)
        },
    )
}

fn wait_for_webhook(plane: &ControlPlane) {
    eventually(
        "the API server to call the webhook",
        Duration::from_secs(30),
        || {
            let mut pod = fixture("seed-pod.json");
            pod["metadata"]["name"] = json!("probe");
            let pod = plane.dry_run("cxtm", &pod)?;
            pod["metadata"]["annotations"]
                .get("otel-injector.io/status")
                .map(|_| ())
        },
    );
}

fn create_with_warnings(plane: &ControlPlane, pod: &Value) -> String {
    let (_, stderr) =
        plane.kubectl_with_warnings(&["create", "-n", "cxtm", "-f", "-"], &pod.to_string());
    stderr
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs the real control plane"
)]
fn image_volume_pods_fall_back_to_the_init_container_when_the_gate_is_off() {
    let plane = ControlPlane::up("delivery-off");
    let webhook = Webhook::start(&plane, &["--image-volume-check-seconds", "5"]);
    plane.namespace("cxtm", &[]);
    plane.register_webhook(&webhook.url());
    let readyz = checked_readyz(&webhook);
    assert!(
        readyz.contains("falls back to initContainer") && readyz.contains("ImageVolume"),
        "/readyz: {readyz}"
    );
    wait_for_webhook(&plane);

    // Without the fallback this create fails (spec.volumes[N]: Required value).
    let warnings = create_with_warnings(&plane, &image_volume_pod("asks-for-image-volume"));
    let stored = plane.get_pod("cxtm", "asks-for-image-volume");
    assert!(has_init_container(&stored, INIT), "{stored:#}");
    let volumes = stored["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = volumes
        .iter()
        .find(|v| v["name"] == INIT)
        .unwrap_or_else(|| panic!("no volume {INIT}: {volumes:?}"));
    assert!(ours.get("emptyDir").is_some(), "{ours}");
    assert!(
        warnings.contains("imageVolume delivery is not available"),
        "kubectl stderr: {warnings}"
    );
    let metrics = webhook.metrics();
    assert!(
        metrics.contains(
            r#"otel_injector_deliveries_total{delivery="initContainer",fallback="true"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("otel_injector_image_volumes_supported 0"),
        "{metrics}"
    );
    let log = webhook.log_text();
    assert!(
        log.contains("imageVolume delivery is not available"),
        "no warning in the log:\n{log}"
    );
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs the real control plane"
)]
fn image_volume_pods_are_stored_with_the_image_volume_when_the_gate_is_on() {
    let plane = ControlPlane::up_with(
        "delivery-on",
        &[("APISERVER_EXTRA_ARGS", "--feature-gates=ImageVolume=true")],
    );
    let webhook = Webhook::start(&plane, &["--image-volume-check-seconds", "5"]);
    plane.namespace("cxtm", &[]);
    plane.register_webhook(&webhook.url());
    let readyz = checked_readyz(&webhook);
    assert!(!readyz.contains("falls back"), "/readyz: {readyz}");
    wait_for_webhook(&plane);

    create_with_warnings(&plane, &image_volume_pod("image-volume"));
    let stored = plane.get_pod("cxtm", "image-volume");
    assert!(!has_init_container(&stored, INIT), "{stored:#}");
    let volumes = stored["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = volumes
        .iter()
        .find(|v| v["name"] == INIT)
        .unwrap_or_else(|| panic!("no volume {INIT}: {volumes:?}"));
    assert_eq!(
        ours["image"]["reference"],
        fixture("seed-expected-pod.json")["spec"]["initContainers"][0]["image"],
        "{ours}"
    );
    let mount = stored["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .and_then(|m| m.iter().find(|m| m["name"] == INIT).cloned())
        .expect("our mount");
    assert_eq!(mount["readOnly"], true);
    assert_eq!(mount["subPath"], "autoinstrumentation");
    // Pods that do not ask keep the config's default.
    let mut plain = fixture("seed-pod.json");
    plain["metadata"]["name"] = json!("default-delivery");
    plane.create_pod("cxtm", &plain);
    assert!(has_init_container(
        &plane.get_pod("cxtm", "default-delivery"),
        INIT
    ));
    let metrics = webhook.metrics();
    assert!(
        metrics.contains(
            r#"otel_injector_deliveries_total{delivery="imageVolume",fallback="false"} 1"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains("otel_injector_image_volumes_supported 1"),
        "{metrics}"
    );
}
