//! An Instrumentation's exporter on the real node (issue 14, items 1 and 2):
//! `spec.exporter.tls` with a collector that requires mutual TLS, and an
//! endpoint built from `$(OTEL_NODE_IP)`, as the operator documents them.
//!
//! The pod runs in its own network namespace (`NODE_POD_NETWORK=bridge`,
//! tests/node/up), where the node's address, and so `status.hostIP` and
//! `OTEL_NODE_IP`, is 10.244.0.1: the test's own bridge, not this machine's
//! interface. The receiver listens there, over TLS, and accepts only clients
//! with the certificate from the Secret the Instrumentation names. A span
//! arriving proves the chain: the downward-API variable comes before the
//! endpoint that uses it, the Secret is mounted where the env points, and the
//! Python exporter presents the client certificate.
//!
//! Needs root; ignored under `OTEL_INJECTOR_SKIP_E2E=1`.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::cluster::*;
use common::node::*;
use common::otlp::{MutualTls, OtlpReceiver};
use serde_json::json;

const INIT: &str = "opentelemetry-auto-instrumentation-python";
const LOGSTREAM_IMAGE: &str = "local/cxtm-logstream:25.2.0";
/// The node's address in bridge mode (tests/node/up `BRIDGE_CIDR`).
const NODE_IP: &str = "10.244.0.1";
const TELEMETRY: Duration = Duration::from_secs(60);

/// `GET path` on a pod address (a network namespace this test's node made).
fn pod_get(ip: &str, port: u16, path: &str) -> Option<(u16, String)> {
    let addr = format!("{ip}:{port}").parse().ok()?;
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {ip}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((code, body))
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
fn exporter_tls_and_node_ip_endpoint_reach_a_mutual_tls_collector() {
    let plane = ControlPlane::up("node-exporter");
    plane.install_instrumentation_crd();
    let node = Node::up_bridge_with_images(
        &plane,
        &["pause", "autoinstrumentation-python", "cxtm-logstream"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = MutualTls::generate(dir.path(), &[NODE_IP]);
    let receiver = OtlpReceiver::start_tls(&format!("{NODE_IP}:0"), &tls.server);
    let webhook = Webhook::start(&plane, &[]);
    plane.namespace("cxtm", &[]);
    plane.register_webhook(&webhook.url());

    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("PEM");
    plane.apply(&json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "otlp-client", "namespace": "cxtm"},
        "stringData": {
            "ca.crt": read(&tls.ca),
            "tls.crt": read(&tls.client_cert),
            "tls.key": read(&tls.client_key),
        }
    }));
    // As the operator's docs write them: file names relative to the Secret.
    let endpoint = format!("https://$(OTEL_NODE_IP):{}", receiver.port());
    plane.apply(&json!({
        "apiVersion": "opentelemetry.io/v1alpha1", "kind": "Instrumentation",
        "metadata": {"name": "mtls", "namespace": "cxtm"},
        "spec": {"exporter": {
            "endpoint": endpoint,
            "tls": {"secretName": "otlp-client", "ca_file": "ca.crt",
                    "cert_file": "tls.crt", "key_file": "tls.key"}
        }}
    }));

    let app = App::new("logstream-mtls", "cxtm", LOGSTREAM_IMAGE)
        .command(&["python", "run.py"])
        .pod_annotation("instrumentation.opentelemetry.io/inject-python", "mtls");
    let mut deployment = app.deployment();
    // A pod network of its own: probes and requests go to the pod's address.
    let pod_spec = &mut deployment["spec"]["template"]["spec"];
    pod_spec["hostNetwork"] = json!(false);
    let container = &mut pod_spec["containers"][0];
    if let Some(probe) = container["readinessProbe"]["httpGet"].as_object_mut() {
        probe.remove("host");
    }
    if let Some(env) = container["env"].as_array_mut() {
        env.push(json!({"name": "BIND", "value": "0.0.0.0"}));
    }
    // The webhook reads Instrumentations from a watch: wait until it uses this
    // one (a dry run shows the endpoint) before the real rollout.
    eventually(
        "the webhook to use Instrumentation mtls",
        Duration::from_secs(60),
        || {
            let probe = json!({
                "apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "probe", "annotations": {"instrumentation.opentelemetry.io/inject-python": "mtls"}},
                "spec": {"containers": [{"name": "app", "image": LOGSTREAM_IMAGE}]}
            });
            let pod = plane.dry_run("cxtm", &probe)?;
            pod.to_string().contains("$(OTEL_NODE_IP)").then_some(())
        },
    );
    plane.apply(&deployment);
    let pod = rollout(&plane, "cxtm", &app.name);
    assert_init_completed(&pod, INIT);
    assert_eq!(pod["status"]["hostIP"], NODE_IP, "{}", pod["status"]);
    let ip = pod["status"]["podIP"].as_str().expect("pod IP").to_owned();

    let env = pod["spec"]["containers"][0]["env"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let position = |name: &str| env.iter().position(|v| v["name"] == name);
    let node_ip = position("OTEL_NODE_IP").expect("OTEL_NODE_IP is set");
    assert_eq!(
        env[node_ip]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.hostIP"
    );
    let at = position("OTEL_EXPORTER_OTLP_ENDPOINT").expect("endpoint set");
    assert_eq!(env[at]["value"], endpoint.as_str());
    assert!(
        node_ip < at,
        "OTEL_NODE_IP comes before the endpoint that uses it"
    );
    for name in [
        "OTEL_EXPORTER_OTLP_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE",
        "OTEL_EXPORTER_OTLP_CLIENT_KEY",
    ] {
        assert!(position(name).is_some(), "{name} is set: {env:?}");
    }

    for i in 0..3 {
        let id = format!("mtls-{i}");
        let (code, body) = eventually(
            "the app to answer on its pod address",
            Duration::from_secs(20),
            || pod_get(&ip, app.port, &format!("/work?id={id}")),
        );
        assert_eq!(code, 200, "{body}");
    }
    receiver.wait_for("a span over mutual TLS", TELEMETRY, |r| {
        r.spans().into_iter().find(|s| {
            s.resource.get("service.name").map(String::as_str) == Some(app.name.as_str())
                && s.attributes.values().any(|v| v.contains("/ping?id=mtls-"))
        })
    });
    assert!(
        receiver.errors().is_empty(),
        "every handshake presented the client certificate: {:?}",
        receiver.errors()
    );
    drop(webhook);
    drop(node);
}
