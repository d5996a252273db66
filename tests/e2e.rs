//! End to end against a real kube-apiserver on loopback: the API server calls
//! the real otel-injector binary, trusts its certificate, applies its patch
//! and stores the pod. Needs Go to build the control plane the first time
//! (tests/control-plane/); `OTEL_INJECTOR_SKIP_E2E=1` marks it ignored locally.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::{env_value, fixture, guarded};
use serde_json::{Value, json};

const INIT: &str = "opentelemetry-auto-instrumentation-python";

fn named(mut pod: Value, name: &str) -> Value {
    pod["metadata"]["name"] = json!(name);
    pod["metadata"]
        .as_object_mut()
        .map(|m| m.remove("namespace"));
    pod
}

fn annotated(mut pod: Value, key: &str, value: &str) -> Value {
    pod["metadata"]["annotations"][key] = json!(value);
    pod
}

/// The seed's final configuration, with `OTEL_SERVICE_NAME` the pod's own name.
fn assert_seed_configuration(pod: &Value) {
    let mut expected = fixture("seed-expected-pod.json");
    for var in expected["spec"]["containers"][0]["env"]
        .as_array_mut()
        .expect("env")
    {
        if var["name"] == "OTEL_SERVICE_NAME" {
            var["value"] = pod["metadata"]["name"].clone();
        }
    }
    let spec = &pod["spec"];
    assert_eq!(spec["initContainers"][0]["name"], INIT, "{pod}");
    assert_eq!(
        spec["initContainers"][0]["image"],
        expected["spec"]["initContainers"][0]["image"]
    );
    assert_eq!(
        spec["initContainers"][0]["command"],
        expected["spec"]["initContainers"][0]["command"]
    );
    assert_eq!(
        spec["initContainers"][0]["volumeMounts"],
        expected["spec"]["initContainers"][0]["volumeMounts"]
    );
    assert_eq!(spec["volumes"], expected["spec"]["volumes"]);
    assert_eq!(spec["nodeSelector"], expected["spec"]["nodeSelector"]);
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        expected["spec"]["containers"][0]["volumeMounts"]
    );
    assert_eq!(
        spec["containers"][0]["env"],
        expected["spec"]["containers"][0]["env"]
    );
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs the real control plane"
)]
fn real_apiserver_calls_the_webhook_and_stores_mutated_pods() {
    let started = std::time::Instant::now();
    let plane = ControlPlane::up("core");
    let mut webhook = Webhook::start(&plane, &[]);
    plane.namespace("cxtm", &[]);
    plane.namespace("elsewhere", &[]);
    plane.namespace("opted-in", &[("otel-injector.io/injection", "enabled")]);
    plane.register_webhook(&webhook.url());

    let seed = fixture("seed-pod.json");
    // The API server picks webhook configurations up asynchronously.
    eventually(
        "the API server to call the webhook",
        Duration::from_secs(30),
        || {
            let pod = plane.dry_run("cxtm", &named(seed.clone(), "probe"))?;
            has_init_container(&pod, INIT).then_some(())
        },
    );

    // The seed's pod, created in cxtm, comes back with the seed's configuration.
    plane.create_pod("cxtm", &named(seed.clone(), "cxtm-logstream"));
    let stored = plane.get_pod("cxtm", "cxtm-logstream");
    assert_seed_configuration(&stored);
    assert_eq!(
        stored["spec"]["containers"][0]["command"],
        json!(guarded(
            "python",
            &[
                "/otel-auto-instrumentation/bin/opentelemetry-instrument",
                "python",
                "run.py"
            ]
        )),
        "the wrapper runs the container's own interpreter, guarded (the default)"
    );
    assert_eq!(
        stored["metadata"]["annotations"]["otel-injector.io/status"],
        "injected"
    );

    // A Deployment-shaped pod: generateName and a ReplicaSet owner.
    let mut deployment_pod = fixture("deployment-pod.json");
    deployment_pod["metadata"]
        .as_object_mut()
        .map(|m| m.remove("namespace"));
    let created = plane.create_pod("cxtm", &deployment_pod);
    assert!(
        created["metadata"]["name"]
            .as_str()
            .is_some_and(|n| n.starts_with("cxtm-logstream-7b774997c5-"))
    );
    assert!(has_init_container(&created, INIT));
    assert_eq!(
        env_value(&created, 0, "OTEL_SERVICE_NAME").as_deref(),
        Some("cxtm-logstream")
    );
    assert!(
        created["spec"]["containers"][0].get("command").is_none(),
        "no command: the image entrypoint is kept"
    );

    // Another namespace: untouched. Opted out in cxtm: untouched.
    let other = plane.create_pod("elsewhere", &named(seed.clone(), "plain"));
    assert!(!has_init_container(&other, INIT));
    assert!(
        other["metadata"]["annotations"]
            .get("otel-injector.io/status")
            .is_none()
    );
    let opted_out = plane.create_pod(
        "cxtm",
        &annotated(
            named(seed.clone(), "opted-out"),
            "instrumentation.opentelemetry.io/inject-python",
            "false",
        ),
    );
    assert!(!has_init_container(&opted_out, INIT));

    // `verify` with the user's kubeconfig: the mutated pod passes, the plain one fails.
    let verify = |ns: &str, pod: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_otel-injector"))
            .args(["verify", "-n", ns, "--pod", pod])
            .env("KUBECONFIG", plane.var("KUBECONFIG"))
            .output()
            .expect("run verify")
    };
    let good = verify("cxtm", "cxtm-logstream");
    let report = String::from_utf8_lossy(&good.stdout);
    assert!(
        good.status.success(),
        "{report}{}",
        String::from_utf8_lossy(&good.stderr)
    );
    assert!(report.contains("verdict: instrumented"), "{report}");
    let bad = verify("elsewhere", "plain");
    let report = String::from_utf8_lossy(&bad.stdout);
    assert_eq!(bad.status.code(), Some(1), "{report}");
    assert!(
        report.contains("[FAIL]") && report.contains("fix:"),
        "{report}"
    );

    // Annotation opt-in outside cxtm works only where the namespace is labelled
    // otel-injector.io/injection=enabled (the webhook's namespaceSelector).
    let opt_in = annotated(
        named(seed.clone(), "opt-in"),
        "instrumentation.opentelemetry.io/inject-python",
        "true",
    );
    assert!(!has_init_container(
        &plane.create_pod("elsewhere", &opt_in),
        INIT
    ));
    assert!(has_init_container(
        &plane.create_pod("opted-in", &opt_in),
        INIT
    ));
    assert!(!has_init_container(
        &plane.create_pod("opted-in", &named(seed.clone(), "not-annotated")),
        INIT
    ));

    // --dry-run=server shows the mutation and stores nothing.
    let dry = plane.kubectl(
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
        Some(&named(seed.clone(), "dry").to_string()),
    );
    let dry: Value = serde_json::from_str(&dry).expect("dry-run json");
    assert_seed_configuration(&dry);
    assert!(
        plane
            .try_kubectl(&["get", "pod", "-n", "cxtm", "dry"], None)
            .is_err(),
        "dry run stored a pod"
    );

    // Sent through us twice (a second registration of the same webhook, as
    // another webhook or a reinvocation would): injected once.
    let mut second = serde_yaml_ng::from_str::<Value>(
        &std::fs::read_to_string(repo().join("manifests/webhook.yaml")).expect("webhook.yaml"),
    )
    .expect("yaml");
    second["metadata"]["name"] = json!("zz-second-pass");
    for (i, w) in second["webhooks"]
        .as_array_mut()
        .expect("webhooks")
        .iter_mut()
        .enumerate()
    {
        w["name"] = json!(format!("second-{i}.otel-injector.io"));
        w["clientConfig"] = json!({"url": webhook.url(), "caBundle": base64_ca(&plane)});
    }
    plane.apply(&second);
    let calls_before = admission_count(&webhook);
    eventually(
        "both registrations to be called",
        Duration::from_secs(30),
        || {
            let pod = plane.dry_run("cxtm", &named(seed.clone(), "probe2"))?;
            (admission_count(&webhook) >= calls_before + 2 && init_container_count(&pod, INIT) == 1)
                .then_some(())
        },
    );
    let twice = plane.create_pod("cxtm", &named(seed.clone(), "twice"));
    assert_eq!(init_container_count(&twice, INIT), 1, "{twice}");
    let env = twice["spec"]["containers"][0]["env"]
        .as_array()
        .expect("env")
        .len();
    assert_eq!(env, 9, "env injected exactly once: {twice}");
    assert!(
        webhook.metrics().contains("outcome=\"already-injected\""),
        "{}",
        webhook.metrics()
    );
    plane.kubectl(
        &["delete", "mutatingwebhookconfiguration", "zz-second-pass"],
        None,
    );

    // Webhook down: pods are still admitted (failurePolicy Ignore), unmutated.
    webhook.kill();
    let while_down = plane.create_pod("cxtm", &named(seed.clone(), "while-down"));
    assert!(!has_init_container(&while_down, INIT));
    // Back up: the next pod is mutated.
    webhook.restart(&plane);
    let after = plane.create_pod("cxtm", &named(seed.clone(), "after-restart"));
    assert!(has_init_container(&after, INIT));

    eprintln!(
        "e2e scenarios passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

fn base64_ca(plane: &ControlPlane) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .encode(std::fs::read(plane.var("APISERVER_CA_FILE")).expect("CA"))
}

fn admission_count(webhook: &Webhook) -> u64 {
    webhook
        .metrics()
        .lines()
        .filter(|l| l.starts_with("otel_injector_admission_requests_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}
