//! Self-managed TLS against a real kube-apiserver (no node): the real binary
//! runs `serve --self-managed-tls` with no certificate anywhere; it takes the
//! Lease, mints the CA and certificate into Secret otel-injector-tls and sets
//! the caBundle of our MutatingWebhookConfiguration; a stand-in for the
//! kubelet copies the Secret to the files the binary was told to serve, as
//! the Secret volume does in a cluster. The first pod created after that is
//! instrumented, with no manual step. Deleting the Secret makes the leader
//! mint a new one, with the previous CA kept in the caBundle, and so does a
//! certificate a day from expiry; every write has its Event and is counted.
//!
//! The real-node proof of the in-cluster install (helm / kubectl apply -k,
//! the kubelet's own Secret volume) is still to be written (issue 26).

mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine;
use common::cluster::*;
use common::fixture;
use serde_json::{Value, json};

const INIT: &str = "opentelemetry-auto-instrumentation-python";
const NS: &str = "otel-injector";
const SECRET: &str = "otel-injector-tls";

fn get_json(plane: &ControlPlane, args: &[&str]) -> Option<Value> {
    let mut full = vec!["get"];
    full.extend_from_slice(args);
    full.extend_from_slice(&["-o", "json"]);
    let out = plane.try_kubectl(&full, None).ok()?;
    serde_json::from_str(&out).ok()
}

fn secret_field(secret: &Value, key: &str) -> Option<String> {
    let text = secret["data"][key].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn ca_bundle(plane: &ControlPlane) -> Option<String> {
    let config = get_json(plane, &["mutatingwebhookconfiguration", "otel-injector"])?;
    let text = config["webhooks"][0]["clientConfig"]["caBundle"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .ok()?;
    String::from_utf8(bytes).ok()
}

fn certificates(pem: &str) -> usize {
    pem.matches("-----BEGIN CERTIFICATE-----").count()
}

/// Copies the Secret's tls.crt/tls.key into `dir` whenever it changes, as
/// the kubelet does for a Secret volume (atomically: write, then rename).
/// `kubectl` and `kubeconfig`: the control plane's.
fn kubelet_stand_in(kubectl: &str, kubeconfig: &str, dir: &std::path::Path, stop: &AtomicBool) {
    let mut last = String::new();
    while !stop.load(Ordering::Relaxed) {
        let out = Command::new(kubectl)
            .args(["get", "secret", "-n", NS, SECRET, "-o", "json"])
            .env("KUBECONFIG", kubeconfig)
            .env("NO_PROXY", "127.0.0.1,localhost")
            .stderr(Stdio::null())
            .output();
        let secret: Option<Value> = out
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| serde_json::from_slice(&o.stdout).ok());
        if let Some(secret) = secret
            && let (Some(cert), Some(key)) = (
                secret_field(&secret, "tls.crt"),
                secret_field(&secret, "tls.key"),
            )
            && cert != last
        {
            for (name, text) in [("tls.key", &key), ("tls.crt", &cert)] {
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, text).expect("write");
                std::fs::rename(&tmp, dir.join(name)).expect("rename");
            }
            last = cert;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Kills the binary when the test ends, passed or not.
struct Killed(std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn named(mut pod: Value, name: &str) -> Value {
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]
        .as_object_mut()
        .map(|m| m.remove("namespace"));
    pod
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs the real control plane"
)]
fn the_leader_mints_the_certificate_and_the_first_pod_is_instrumented() {
    let plane = ControlPlane::up("selfcert");
    plane.namespace(NS, &[]);
    plane.namespace("cxtm", &[]);
    // Our webhook configuration as installed: no caBundle. The API server
    // calls the binary on loopback (no Service without a node).
    let port = free_port();
    let admin_port = free_port();
    let text =
        std::fs::read_to_string(repo().join("manifests/webhook.yaml")).expect("webhook.yaml");
    let mut config: Value = serde_yaml_ng::from_str(&text).expect("webhook.yaml parses");
    for webhook in config["webhooks"].as_array_mut().expect("webhooks") {
        webhook["clientConfig"] = json!({"url": format!("https://127.0.0.1:{port}/mutate")});
    }
    plane.apply(&config);
    assert!(ca_bundle(&plane).is_none(), "installed without a caBundle");

    let dir = tempfile::tempdir().expect("tempdir");
    let stop = Arc::new(AtomicBool::new(false));
    let kubelet = {
        let kubectl = plane.var("KUBECTL").to_owned();
        let kubeconfig = plane.var("KUBECONFIG").to_owned();
        let (dir, stop) = (dir.path().to_owned(), stop.clone());
        std::thread::spawn(move || kubelet_stand_in(&kubectl, &kubeconfig, &dir, &stop))
    };
    let log = std::fs::File::create(plane.state_dir.join("selfcert.log")).expect("log");
    let _child = Killed(
        Command::new(env!("CARGO_BIN_EXE_otel-injector"))
            .args(["serve", "--listen"])
            .arg(format!("127.0.0.1:{port}"))
            .arg("--admin-listen")
            .arg(format!("127.0.0.1:{admin_port}"))
            .arg("--tls-cert")
            .arg(dir.path().join("tls.crt"))
            .arg("--tls-key")
            .arg(dir.path().join("tls.key"))
            .args([
                "--self-managed-tls",
                "--kubernetes",
                "on",
                "--shutdown-delay-seconds",
                "0",
                "--self-managed-check-seconds",
                "2",
                "--log-format",
                "json",
            ])
            .env("KUBECONFIG", plane.var("KUBECONFIG"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .env("POD_NAME", "otel-injector-selfcert-0")
            .env("POD_NAMESPACE", NS)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start otel-injector"),
    );
    let log_text =
        || std::fs::read_to_string(plane.state_dir.join("selfcert.log")).unwrap_or_default();

    let first_ca = eventually(
        "the leader to write the Secret",
        Duration::from_secs(120),
        || secret_field(&get_json(&plane, &["secret", "-n", NS, SECRET])?, "ca.crt"),
    );
    let bundle = eventually("the caBundle", Duration::from_secs(60), || {
        ca_bundle(&plane)
    });
    assert!(
        bundle.contains(first_ca.trim()),
        "caBundle trusts the Secret's CA"
    );
    eventually("the webhook to be ready", Duration::from_secs(120), || {
        http_get(admin_port, "/readyz").and_then(|(code, _)| (code == 200).then_some(()))
    });

    // The first pod after the install: instrumented.
    let seed = fixture("seed-pod.json");
    eventually(
        "the API server to call the webhook",
        Duration::from_secs(30),
        || {
            let pod = plane.dry_run("cxtm", &named(seed.clone(), "probe"))?;
            has_init_container(&pod, INIT).then_some(())
        },
    );
    let stored = plane.create_pod("cxtm", &named(seed.clone(), "first"));
    assert!(
        has_init_container(&stored, INIT),
        "{stored}\n{}",
        log_text()
    );

    // The Secret deleted: a new CA and certificate, the previous CA kept.
    plane.kubectl(&["delete", "secret", "-n", NS, SECRET], None);
    let second_ca = eventually("a new Secret", Duration::from_secs(120), || {
        let ca = secret_field(&get_json(&plane, &["secret", "-n", NS, SECRET])?, "ca.crt")?;
        (ca != first_ca).then_some(ca)
    });
    let bundle = ca_bundle(&plane).expect("caBundle");
    assert_eq!(certificates(&bundle), 2, "{bundle}");
    assert!(bundle.starts_with(second_ca.trim()), "the new CA first");
    assert!(bundle.contains(first_ca.trim()), "the previous CA kept");
    // Once the stand-in has copied the new pair, the binary serves it.
    eventually(
        "the reload of the new certificate",
        Duration::from_secs(60),
        || {
            let metrics = http_get(admin_port, "/metrics")?.1;
            metrics
                .contains("otel_injector_certificate_reloads_total{result=\"success\"}")
                .then_some(())
        },
    );
    let pod = plane.create_pod("cxtm", &named(seed, "after-rotation"));
    assert!(has_init_container(&pod, INIT), "{pod}");

    let metrics = http_get(admin_port, "/metrics").expect("metrics").1;
    for line in [
        "otel_injector_certificate_writes_total{object=\"secret\",result=\"success\"} 2",
        "otel_injector_certificate_writes_total{object=\"webhook\",result=\"success\"} 2",
    ] {
        assert!(metrics.contains(line), "missing {line} in\n{metrics}");
    }
    let events = plane.kubectl(&["get", "events", "-A", "-o", "json"], None);
    let events: Value = serde_json::from_str(&events).expect("events");
    let reasons: Vec<&str> = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|e| e["reason"].as_str())
        .collect();
    assert_eq!(
        reasons
            .iter()
            .filter(|r| **r == "CertificateIssued")
            .count(),
        2,
        "{reasons:?}"
    );
    assert!(reasons.contains(&"CABundleUpdated"), "{reasons:?}");

    // A certificate a day from expiry (within --renew-before-days): renewed,
    // with the CA the caBundle led with kept beside the new one.
    let names = otel_injector::certs::service_names("otel-injector", NS);
    let near = otel_injector::certs::generate_at(
        &names,
        std::time::SystemTime::now()
            - (otel_injector::certs::CERT_VALIDITY - Duration::from_secs(86_400)),
    )
    .expect("certificate");
    let b64 = |t: &str| base64::engine::general_purpose::STANDARD.encode(t);
    plane.apply(&json!({
        "apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
        "metadata": {"name": SECRET, "namespace": NS},
        "data": {"tls.crt": b64(&near.cert_pem), "tls.key": b64(&near.key_pem), "ca.crt": b64(&near.ca_cert_pem)},
    }));
    let third_ca = eventually("the renewal", Duration::from_secs(120), || {
        let ca = secret_field(&get_json(&plane, &["secret", "-n", NS, SECRET])?, "ca.crt")?;
        (ca != near.ca_cert_pem && ca != second_ca).then_some(ca)
    });
    let bundle = ca_bundle(&plane).expect("caBundle");
    assert_eq!(certificates(&bundle), 2, "{bundle}");
    assert!(bundle.starts_with(third_ca.trim()), "the new CA first");
    assert!(bundle.contains(second_ca.trim()), "the previous CA kept");
    let metrics = http_get(admin_port, "/metrics").expect("metrics").1;
    assert!(
        metrics.contains(
            "otel_injector_certificate_writes_total{object=\"secret\",result=\"success\"} 3"
        ),
        "{metrics}"
    );

    stop.store(true, Ordering::Relaxed);
    let _ = kubelet.join();
}
