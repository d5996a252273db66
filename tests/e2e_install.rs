//! Install as users do (README and docs/install.md, "Install in a cluster"): the webhook runs in
//! the cluster from `manifests/`, in its own image, and the API server reaches
//! it through its Service.
//!
//! - The control plane runs with ServiceAccount admission on, as every real
//!   cluster does, and `--enable-aggregator-routing=true` (it dials the
//!   Service's endpoints itself: there is no kube-proxy).
//! - The node has a pod network that exists only on this host
//!   (`NODE_POD_NETWORK=bridge`, tests/node/up): pods on 10.244.0.0/24 and
//!   the API server's ClusterIP relayed from a network namespace to its
//!   loopback port.
//! - The image is the binary cargo built for this test, packaged without
//!   Docker (tests/images/webhook).
//! - Then exactly the README's one step: `kubectl apply -k` (of an overlay
//!   that only points the image at the local tag, with `imagePullPolicy:
//!   Never`, and the exporter at the test's receiver), or `helm install` with
//!   the same three values. TLS is self-managed (the default): no
//!   `otel-injector certs`, no `install-ca-bundle.sh` (issue 26).
//!
//! One test, scenarios in sequence on one node. Needs root, Go and apt the
//! first time; `OTEL_INJECTOR_SKIP_E2E=1` marks it ignored.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use base64::Engine;
use common::cluster::*;
use common::node::*;
use common::otlp::OtlpReceiver;
use serde_json::{Value, json};

const NS: &str = "otel-injector";
const INIT: &str = "opentelemetry-auto-instrumentation-python";
const LOGSTREAM_IMAGE: &str = "local/cxtm-logstream:25.2.0";
const TELEMETRY: Duration = Duration::from_secs(60);
/// The webhook of manifests/webhook.yaml that receives cxtm's pods.
const CXTM_WEBHOOK: &str = "cxtm.otel-injector.io";

struct Install {
    // Dropped in this order: the node (its pods and network), then the plane.
    node: Option<Node>,
    plane: ControlPlane,
    receiver: OtlpReceiver,
    /// Holds the kustomize overlay, helm's directories and the certificates
    /// the rotation scenarios bring.
    _dir: tempfile::TempDir,
    overlay: PathBuf,
    /// A path in `_dir` the other files are named beside.
    certs: PathBuf,
}

impl Drop for Install {
    fn drop(&mut self) {
        self.node.take();
    }
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
fn install_from_manifests_and_instrument_the_seed() {
    let started = Instant::now();
    let step = |what: &str| {
        eprintln!(
            "scenario: {what}: ok ({:.1}s)",
            started.elapsed().as_secs_f64()
        )
    };
    let install = install();
    step("install as README says (kubectl apply -k, nothing else)");
    webhook_runs_in_cluster(&install);
    step("2 replicas Ready, watches synced through the in-cluster service account");
    seed_instrumented(&install);
    step("seed Deployment instrumented through the Service");
    reapply_keeps_injection(&install);
    step("re-apply (client-side and server-side) keeps caBundle");
    calls_per_pod(&install);
    step("webhook calls per pod");
    later_webhook_still_reinvokes(&install);
    step("a later webhook's change still reinvokes ours");
    under_load_nothing_missed(&install);
    step(
        "under load: 5 rollout restarts, pod deletion, certificate rotation, renewal, Secret deleted",
    );
    eprintln!(
        "all install scenarios passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// How the webhook's objects get into the cluster (the README's two ways).
#[derive(Clone, Copy, PartialEq)]
enum How {
    Kustomize,
    Helm,
}

fn install() -> Install {
    install_with(How::Kustomize)
}

/// The README's Helm step: `helm install` of charts/otel-injector (image,
/// pull policy and exporter endpoint set as values), nothing else; then the
/// seed's Deployment, the first pod, is instrumented through the in-cluster
/// webhook.
#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
fn helm_install_and_instrument_the_seed() {
    let install = install_with(How::Helm);
    webhook_runs_in_cluster(&install);
    let release = install.plane.kubectl(
        &[
            "get",
            "deployment",
            "-n",
            NS,
            "otel-injector",
            "-o",
            "jsonpath={.metadata.labels}",
        ],
        None,
    );
    assert!(
        release.contains("\"app.kubernetes.io/managed-by\":\"Helm\""),
        "the Deployment was installed by helm: {release}"
    );
    seed_instrumented(&install);
    helm_upgrade_keeps_injection(&install);
}

/// tests/helm/build: helm built from its Go module (cached).
fn helm_bin() -> PathBuf {
    let out = Command::new(repo().join("tests/helm/build"))
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run tests/helm/build");
    assert!(out.status.success(), "tests/helm/build failed");
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()).join("helm")
}

/// helm against this test's API server, in the repository.
fn helm(install: &Install, args: &[&str]) {
    let out = Command::new(helm_bin())
        .current_dir(repo())
        .env("KUBECONFIG", install.plane.var("KUBECONFIG"))
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env(
            "HELM_CONFIG_HOME",
            install.certs.with_file_name("helm-config"),
        )
        .env(
            "HELM_CACHE_HOME",
            install.certs.with_file_name("helm-cache"),
        )
        .env("HELM_DATA_HOME", install.certs.with_file_name("helm-data"))
        .args(args)
        .output()
        .expect("run helm");
    assert!(
        out.status.success(),
        "helm {} failed:\n{}\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn helm_install(install: &Install, (name, tag): &(String, String)) {
    helm(
        install,
        &[
            "install",
            "otel-injector",
            "charts/otel-injector",
            "--wait",
            "--set",
            &format!("image.repository={name}"),
            "--set-string",
            &format!("image.tag={tag}"),
            "--set",
            "image.pullPolicy=Never",
            "--set",
            &format!("config.exporter.endpoint={}", install.receiver.endpoint()),
        ],
    );
}

/// `helm upgrade --reuse-values` with a config change, five times in a row,
/// each under a load of pods admitted meanwhile: the pods roll onto the new
/// config (the chart's checksum annotation), the caBundle that self-managed
/// TLS set survives (the chart never names it), no pod is
/// missed and no call fails open by the API server's own counter (issue 22,
/// item 5), and pods are then injected with the new config.
fn helm_upgrade_keeps_injection(install: &Install) {
    let plane = &install.plane;
    let want = secret_pem(plane, "ca.crt");
    for i in 1..=ROLLOUTS {
        let before: Vec<String> = webhook_pods(plane).iter().map(name_of).collect();
        let label = format!("helm-upgrade-{i}");
        let load = load_during(install, &label, || {
            helm(
                install,
                &[
                    "upgrade",
                    "otel-injector",
                    "charts/otel-injector",
                    "--reuse-values",
                    "--set-string",
                    &format!("config.resourceAttributes.upgraded=u{i}"),
                ],
            );
            rolled_out(plane);
        });
        let after: Vec<String> = webhook_pods(plane).iter().map(name_of).collect();
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "{label}: the config change rolled the pods: {before:?} -> {after:?}"
        );
        assert_eq!(
            ca_bundles(plane),
            vec![want.clone(), want.clone()],
            "{label} kept the caBundle"
        );
        assert_nothing_missed(install, &format!("helm upgrade {i}/{ROLLOUTS}"), &load);
        new_config_reaches_pods(plane, &format!("upgraded=u{i}"));
    }
}

/// After a rollout, replicas still terminating answer reviews sent on the
/// connections the API server already had to them (with the old config), each
/// closing its connection: soon every review reaches a new replica. Every
/// one of these pods is injected.
fn new_config_reaches_pods(plane: &ControlPlane, attribute: &str) {
    let mut n = 0;
    let admitted = eventually(
        &format!("a pod injected with the new config ({attribute})"),
        Duration::from_secs(60),
        || {
            n += 1;
            let admitted = plane
                .dry_run("cxtm", &seed_pod(&format!("new-config-{n}")))
                .expect("dry run after the upgrade");
            assert_eq!(
                init_container_count(&admitted, INIT),
                1,
                "injected after the upgrade: {}",
                admitted["metadata"]
            );
            admitted.to_string().contains(attribute).then_some(admitted)
        },
    );
    eprintln!(
        "  {attribute}: dry run {n} after the rollout had the new config ({} init container)",
        init_container_count(&admitted, INIT)
    );
}

fn install_with(how: How) -> Install {
    let t0 = Instant::now();
    let plane = ControlPlane::up_with(
        match how {
            How::Kustomize => "install",
            How::Helm => "install-helm",
        },
        &[
            ("SERVICE_ACCOUNT_ADMISSION", "on"),
            ("APISERVER_EXTRA_ARGS", "--enable-aggregator-routing=true"),
        ],
    );
    let node = Node::up_bridge_with_images(
        &plane,
        &["pause", "autoinstrumentation-python", "cxtm-logstream"],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let install = Install {
        node: Some(node),
        plane,
        receiver: OtlpReceiver::start(),
        overlay: dir.path().join("overlay"),
        certs: dir.path().join("certs"),
        _dir: dir,
    };
    let t_cluster = t0.elapsed();

    let image = webhook_image(&install);
    let t_image = t0.elapsed() - t_cluster;

    // The whole install: kubectl apply -k (the overlay: image, pull policy,
    // exporter endpoint), or helm install with the same three as values.
    match how {
        How::Kustomize => {
            write_overlay(&install.overlay, &image, &install.receiver.endpoint());
            let overlay = install.overlay.to_str().expect("overlay path").to_owned();
            install.plane.kubectl(&["apply", "-k", &overlay], None);
        }
        How::Helm => helm_install(&install, &image),
    }
    eprintln!(
        "  cluster {:.1}s, webhook image {:.1}s, install steps {:.1}s",
        t_cluster.as_secs_f64(),
        t_image.as_secs_f64(),
        (t0.elapsed() - t_cluster - t_image).as_secs_f64()
    );
    install
}

/// tests/images/webhook: the binary this test runs, as an image imported into
/// the node's containerd. Returns (repository, tag).
fn webhook_image(install: &Install) -> (String, String) {
    let node = install.node.as_ref().expect("node");
    let socket = node
        .env
        .get("CONTAINERD_ADDRESS")
        .expect("node env lacks CONTAINERD_ADDRESS");
    let out = Command::new(repo().join("tests/images/webhook"))
        .args(["--import", socket, env!("CARGO_BIN_EXE_otel-injector")])
        .stderr(std::process::Stdio::inherit())
        .output()
        .expect("run tests/images/webhook");
    assert!(out.status.success(), "tests/images/webhook failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let reference = stdout
        .split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("tests/images/webhook printed no ref: {stdout:?}"));
    let (name, tag) = reference
        .rsplit_once(':')
        .unwrap_or_else(|| panic!("ref without a tag: {reference}"));
    (name.to_owned(), tag.to_owned())
}

/// The overlay a user would write to install from their own registry: the
/// repository's manifests/ as the only resource, the image and pull policy,
/// and the config with the exporter pointed at this test's receiver (the
/// seed's pods use hostNetwork, so 127.0.0.1 is this host's loopback).
fn write_overlay(dir: &Path, (name, tag): &(String, String), endpoint: &str) {
    std::fs::create_dir_all(dir).expect("overlay dir");
    let base = std::fs::read_to_string(repo().join("manifests/config.yaml"))
        .expect("manifests/config.yaml");
    let default_endpoint =
        "endpoint: http://cxtvng-splunk-otel-collector-agent.ao.svc.cluster.local:4318";
    assert!(
        base.contains(default_endpoint),
        "manifests/config.yaml no longer has {default_endpoint:?}"
    );
    let config = base.replace(default_endpoint, &format!("endpoint: {endpoint}"));
    std::fs::write(dir.join("config.yaml"), config).expect("overlay config.yaml");
    let kustomization = format!(
        r#"apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - {manifests}
images:
  - name: ghcr.io/otel-injector/otel-injector
    newName: {name}
    newTag: "{tag}"
patches:
  - target: {{kind: Deployment, name: otel-injector}}
    patch: |-
      - op: replace
        path: /spec/template/spec/containers/0/imagePullPolicy
        value: Never
configMapGenerator:
  - name: otel-injector-config
    namespace: otel-injector
    behavior: replace
    files:
      - config.yaml
"#,
        manifests = relative_to(dir, &repo().join("manifests")).display()
    );
    std::fs::write(dir.join("kustomization.yaml"), kustomization).expect("kustomization.yaml");
}

/// `target` as a path relative to `dir` (kustomize refuses absolute resource
/// paths), through the root: both are made absolute first.
fn relative_to(dir: &Path, target: &Path) -> PathBuf {
    let dir = dir.canonicalize().expect("overlay dir");
    let target = target.canonicalize().expect("manifests dir");
    let mut up = PathBuf::new();
    for _ in dir.components().skip(1) {
        up.push("..");
    }
    up.join(target.strip_prefix("/").expect("absolute path"))
}

impl Install {
    /// `manifests/install-ca-bundle.sh DIR` with the cluster's kubectl.
    fn script_env(plane: &ControlPlane, certs: &Path) -> Command {
        let mut cmd = Command::new(repo().join("manifests/install-ca-bundle.sh"));
        cmd.arg(certs)
            .env("KUBECTL", plane.var("KUBECTL"))
            .env("KUBECONFIG", plane.var("KUBECONFIG"))
            .env("NO_PROXY", "127.0.0.1,localhost");
        cmd
    }
}

/// `manifests/install-ca-bundle.sh DIR`: your own certificate, loaded the
/// documented way.
fn install_ca_bundle(plane: &ControlPlane, certs: &Path) {
    let out = Install::script_env(plane, certs)
        .output()
        .expect("run manifests/install-ca-bundle.sh");
    assert!(
        out.status.success(),
        "install-ca-bundle.sh {} failed: {}",
        certs.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key of Secret otel-injector-tls, decoded, trailing whitespace trimmed
/// (empty when the Secret or the key is missing).
fn secret_pem(plane: &ControlPlane, key: &str) -> String {
    let path = format!("jsonpath={{.data.{}}}", key.replace('.', "\\."));
    let encoded = plane
        .try_kubectl(
            &["get", "secret", "-n", NS, "otel-injector-tls", "-o", &path],
            None,
        )
        .unwrap_or_default();
    let pem = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .unwrap_or_default();
    String::from_utf8_lossy(&pem).trim_end().to_owned()
}

fn json_of(plane: &ControlPlane, args: &[&str]) -> Value {
    let out = plane.kubectl(args, None);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("kubectl {args:?}: {e}: {out}"))
}

fn webhook_pods(plane: &ControlPlane) -> Vec<Value> {
    let list = json_of(
        plane,
        &[
            "get",
            "pods",
            "-n",
            NS,
            "-l",
            "app.kubernetes.io/name=otel-injector",
            "-o",
            "json",
        ],
    );
    list["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn name_of(object: &Value) -> String {
    object["metadata"]["name"]
        .as_str()
        .expect("metadata.name")
        .to_owned()
}

/// The Deployment rolls out (2 replicas Ready), its pods sit on the pod
/// network, run as the manifests say, and reach the API server through the
/// ClusterIP with their service account token.
fn webhook_runs_in_cluster(install: &Install) {
    let plane = &install.plane;
    if let Err(e) = plane.try_kubectl(
        &[
            "rollout",
            "status",
            "-n",
            NS,
            "deployment/otel-injector",
            "--timeout=120s",
        ],
        None,
    ) {
        let pods = plane
            .try_kubectl(&["get", "pods", "-n", NS, "-o", "wide"], None)
            .unwrap_or_default();
        let describe = plane
            .try_kubectl(&["describe", "pods", "-n", NS], None)
            .unwrap_or_default();
        panic!("{e}\n{pods}\n{describe}");
    }
    let pods = webhook_pods(plane);
    assert_eq!(pods.len(), 2, "two replicas");
    for pod in &pods {
        let name = name_of(pod);
        let ip = pod["status"]["podIP"].as_str().unwrap_or_default();
        assert!(
            ip.starts_with("10.244.0."),
            "{name} is on the pod network, not the host's: {ip:?}"
        );
        assert_eq!(
            pod["spec"]["serviceAccountName"], "otel-injector",
            "{name} runs as its service account"
        );
        assert!(
            pod["spec"]["volumes"]
                .as_array()
                .is_some_and(|v| v.iter().any(|v| v["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("kube-api-access-")))),
            "ServiceAccount admission mounted a token into {name}"
        );
        // `--kubernetes auto` found the in-cluster config, and its watches
        // synced through 10.0.0.1:443 with the RBAC of manifests/rbac.yaml.
        let logs = eventually(
            &format!("{name} logs \"Kubernetes watches synced\""),
            Duration::from_secs(60),
            || {
                let logs = plane.try_kubectl(&["logs", "-n", NS, &name], None).ok()?;
                logs.contains("Kubernetes watches synced").then_some(logs)
            },
        );
        assert!(
            !logs.contains("no Kubernetes configuration found"),
            "{name} fell back to the static config:\n{logs}"
        );
    }
}

/// The seed's Deployment (tests/fixtures/offline/seed-deployment.yaml, made
/// runnable here as in e2e_node) is injected by the in-cluster webhook, runs,
/// and sends its spans to the receiver the installed config names.
fn seed_instrumented(install: &Install) {
    let plane = &install.plane;
    plane.kubectl(&["create", "namespace", "cxtm"], None);
    let text = std::fs::read_to_string(repo().join("tests/fixtures/offline/seed-deployment.yaml"))
        .expect("seed deployment");
    let manifest: Value = serde_yaml_ng::from_str(&text).expect("seed deployment parses");
    let app = App::new("cxtm-logstream", "cxtm", LOGSTREAM_IMAGE).command(&["python", "run.py"]);
    let before = webhook_calls(plane);
    plane.apply(&app.adapt(manifest));
    let pod = rollout(plane, "cxtm", "cxtm-logstream");
    let calls = webhook_calls(plane) - before;
    eprintln!("  webhook calls for the seed's pod: {calls}");

    assert_eq!(
        init_container_count(&pod, INIT),
        1,
        "one init container: {}",
        pod["spec"]
    );
    let status = &pod["status"]["initContainerStatuses"];
    let init = status
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == INIT))
        .unwrap_or_else(|| panic!("no status for {INIT}: {status}"));
    assert_eq!(
        init["state"]["terminated"]["exitCode"], 0,
        "init container completed: {init}"
    );
    let command = &pod["spec"]["containers"][0]["command"];
    assert_eq!(
        command[4], "/otel-auto-instrumentation/bin/opentelemetry-instrument",
        "the seed's python command is wrapped, behind the guard: {command}"
    );

    // Served by the in-cluster replicas: their own counters say so.
    let injected: u64 = webhook_pods(plane)
        .iter()
        .map(|p| replica_outcomes(plane, &name_of(p)).injected)
        .sum();
    assert!(
        injected >= 1,
        "no replica counted an injection: the webhook was not reached through the Service"
    );

    let id = "install-0";
    let (code, body) = eventually("the seed answers /work", Duration::from_secs(30), || {
        app.get(&format!("/work?id={id}"))
    });
    assert_eq!(code, 200, "/work?id={id}: {body}");
    let needle = format!("/ping?id={id}");
    install
        .receiver
        .wait_for("the seed's span", TELEMETRY, |r| {
            r.spans()
                .into_iter()
                .find(|s| s.attributes.values().any(|v| v.contains(&needle)))
        });
}

/// Calls of the cxtm webhook the API server has made, from its own metrics.
fn webhook_calls(plane: &ControlPlane) -> u64 {
    let text = plane.kubectl(&["get", "--raw", "/metrics"], None);
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_admission_duration_seconds_count{")
                && l.contains(&format!("name=\"{CXTM_WEBHOOK}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

#[derive(Debug, Default)]
struct Outcomes {
    injected: u64,
    already_injected: u64,
    total: u64,
}

/// One replica's `otel_injector_admission_requests_total`, read through the
/// API server's pod proxy (which dials the pod IP on the pod network).
fn replica_outcomes(plane: &ControlPlane, pod: &str) -> Outcomes {
    let path = format!("/api/v1/namespaces/{NS}/pods/{pod}:9090/proxy/metrics");
    let text = plane.kubectl(&["get", "--raw", &path], None);
    let mut out = Outcomes::default();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("otel_injector_admission_requests_total{") else {
            continue;
        };
        let value = rest
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        out.total += value;
        if rest.contains("outcome=\"injected\"") {
            out.injected += value;
        }
        if rest.contains("outcome=\"already-injected\"") {
            out.already_injected += value;
        }
    }
    out
}

/// The seed's pod as its ReplicaSet would create it, for server-side dry runs.
fn seed_pod(name: &str) -> Value {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/offline/seed-deployment.yaml"))
        .expect("seed deployment");
    let manifest: Value = serde_yaml_ng::from_str(&text).expect("seed deployment parses");
    let app = App::new(name, "cxtm", LOGSTREAM_IMAGE).command(&["python", "run.py"]);
    let deployment = app.adapt(manifest);
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": "cxtm", "labels": deployment["spec"]["template"]["metadata"]["labels"]},
        "spec": deployment["spec"]["template"]["spec"],
    })
}

/// Webhook calls per pod with ServiceAccount admission on, over server-side
/// dry runs of the seed's pod (admission runs in full; nothing is stored).
fn calls_per_pod(install: &Install) {
    let plane = &install.plane;
    const PODS: u64 = 10;
    let replicas: Vec<String> = webhook_pods(plane).iter().map(name_of).collect();
    let outcomes_before: Vec<Outcomes> = replicas
        .iter()
        .map(|p| replica_outcomes(plane, p))
        .collect();
    let before = webhook_calls(plane);
    for i in 0..PODS {
        let pod = seed_pod(&format!("calls-{i}"));
        let admitted = plane
            .dry_run("cxtm", &pod)
            .unwrap_or_else(|| panic!("dry run of calls-{i} failed"));
        assert_eq!(
            init_container_count(&admitted, INIT),
            1,
            "calls-{i} injected once"
        );
        let init = admitted["spec"]["initContainers"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["name"] == INIT))
            .expect("init container");
        assert!(
            init["volumeMounts"].as_array().is_some_and(|m| m
                .iter()
                .any(|m| m["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount")),
            "ServiceAccount admission mounted the token into the init container too: {init}"
        );
    }
    let calls = webhook_calls(plane) - before;
    let mut per_replica = Vec::new();
    for (p, was) in replicas.iter().zip(&outcomes_before) {
        let now = replica_outcomes(plane, p);
        per_replica.push(format!(
            "{p}: {} calls ({} injected, {} already-injected)",
            now.total - was.total,
            now.injected - was.injected,
            now.already_injected - was.already_injected
        ));
    }
    eprintln!(
        "  webhook calls per pod with ServiceAccount admission on: {calls} calls for {PODS} pods = {:.2}; per replica: {}",
        calls as f64 / PODS as f64,
        per_replica.join("; ")
    );
    assert_eq!(
        calls, PODS,
        "one webhook call per pod (the API server called {CXTM_WEBHOOK} {calls} times for {PODS} pods)"
    );
}

/// The two webhooks' caBundles, decoded (PEM), trailing whitespace trimmed.
fn ca_bundles(plane: &ControlPlane) -> Vec<String> {
    let mwc = json_of(
        plane,
        &[
            "get",
            "mutatingwebhookconfiguration",
            "otel-injector",
            "-o",
            "json",
        ],
    );
    mwc["webhooks"]
        .as_array()
        .expect("webhooks")
        .iter()
        .map(|w| {
            let encoded = w["clientConfig"]["caBundle"].as_str().unwrap_or_default();
            let pem = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .unwrap_or_else(|e| panic!("caBundle is not base64: {e}"));
            String::from_utf8_lossy(&pem).trim_end().to_owned()
        })
        .collect()
}

fn pem_of(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .trim_end()
        .to_owned()
}

/// `kubectl apply -k` again, as users do on every upgrade, client-side and
/// server-side: the caBundle self-managed TLS set survives, and a new pod
/// is still injected.
fn reapply_keeps_injection(install: &Install) {
    let plane = &install.plane;
    let want = secret_pem(plane, "ca.crt");
    assert!(
        want.contains("BEGIN CERTIFICATE"),
        "the leader wrote the Secret: {want:?}"
    );
    assert_eq!(
        ca_bundles(plane),
        vec![want.clone(), want.clone()],
        "self-managed TLS set both caBundles to the Secret's CA"
    );
    let overlay = install.overlay.to_str().expect("overlay path");
    for (how, args) in [
        ("client-side", vec!["apply", "-k", overlay]),
        ("server-side", vec!["apply", "--server-side", "-k", overlay]),
    ] {
        plane.kubectl(&args, None);
        assert_eq!(
            ca_bundles(plane),
            vec![want.clone(), want.clone()],
            "a {how} re-apply of the manifests kept the caBundle"
        );
        let pod = seed_pod(&format!("reapply-{how}"));
        let admitted = plane
            .dry_run("cxtm", &pod)
            .unwrap_or_else(|| panic!("dry run after the {how} re-apply failed"));
        assert_eq!(
            init_container_count(&admitted, INIT),
            1,
            "injected after the {how} re-apply"
        );
    }
}

/// A second mutating webhook, called after ours (webhook configurations are
/// called in the order of their names: "otel-injector" < "zz-later"), that
/// annotates every pod: a change made after our call. Served in this process
/// on loopback with the control plane's spare serving certificate.
struct LaterWebhook {
    _runtime: tokio::runtime::Runtime,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    port: u16,
}

impl LaterWebhook {
    fn start(plane: &ControlPlane) -> LaterWebhook {
        use std::sync::Arc;
        otel_injector::tls::install_crypto_provider();
        let store = Arc::new(
            otel_injector::tls::CertStore::load(
                plane.var("WEBHOOK_TLS_CERT_FILE").into(),
                plane.var("WEBHOOK_TLS_KEY_FILE").into(),
            )
            .expect("load the spare serving cert"),
        );
        let tls = otel_injector::tls::server_config(store, None).expect("tls config");
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let app = axum::Router::new().route("/mutate", axum::routing::post(annotate));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(otel_injector::server::serve_tls(
            listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            app,
            async move {
                let _ = rx.await;
            },
            Duration::from_secs(1),
        ));
        LaterWebhook {
            _runtime: runtime,
            shutdown: Some(tx),
            port,
        }
    }
}

impl Drop for LaterWebhook {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

async fn annotate(axum::Json(review): axum::Json<Value>) -> axum::Json<Value> {
    let request = &review["request"];
    let has_annotations = request["object"]["metadata"]["annotations"].is_object();
    let patch = if has_annotations {
        json!([{"op": "add", "path": "/metadata/annotations/later-webhook", "value": "seen"}])
    } else {
        json!([{"op": "add", "path": "/metadata/annotations", "value": {"later-webhook": "seen"}}])
    };
    let patch = base64::engine::general_purpose::STANDARD.encode(patch.to_string());
    axum::Json(json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "response": {"uid": request["uid"], "allowed": true, "patchType": "JSONPatch", "patch": patch}
    }))
}

/// What reinvocation protects is kept: when a webhook called after ours
/// changes the pod, the API server calls ours again (`reinvocationPolicy:
/// IfNeeded`), and we answer "already injected" without a second injection.
fn later_webhook_still_reinvokes(install: &Install) {
    let plane = &install.plane;
    let later = LaterWebhook::start(plane);
    let ca = std::fs::read(plane.var("APISERVER_CA_FILE")).expect("CA");
    plane.apply(&json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "zz-later"},
        "webhooks": [{
            "name": "later.example.com",
            "clientConfig": {
                "url": format!("https://127.0.0.1:{}/mutate", later.port),
                "caBundle": base64::engine::general_purpose::STANDARD.encode(ca),
            },
            "namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "cxtm"}},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": ["pods"]}],
            "failurePolicy": "Fail",
            "sideEffects": "None",
            "reinvocationPolicy": "Never",
            "admissionReviewVersions": ["v1"],
            "timeoutSeconds": 5
        }]
    }));
    // The API server picks the new configuration up asynchronously.
    let mut n = 0;
    eventually(
        "a dry run that passed through the later webhook",
        Duration::from_secs(30),
        || {
            n += 1;
            let admitted = plane.dry_run("cxtm", &seed_pod(&format!("later-{n}")))?;
            (admitted["metadata"]["annotations"]["later-webhook"] == "seen").then_some(())
        },
    );
    let before = webhook_calls(plane);
    let admitted = plane
        .dry_run("cxtm", &seed_pod("later-counted"))
        .expect("dry run through both webhooks");
    let calls = webhook_calls(plane) - before;
    plane.kubectl(
        &["delete", "mutatingwebhookconfiguration", "zz-later"],
        None,
    );
    drop(later);
    assert_eq!(
        admitted["metadata"]["annotations"]["later-webhook"], "seen",
        "the later webhook ran"
    );
    assert_eq!(
        init_container_count(&admitted, INIT),
        1,
        "injected exactly once: {}",
        admitted["spec"]
    );
    eprintln!("  webhook calls for a pod a later webhook changes: {calls}");
    assert_eq!(
        calls, 2,
        "a change after our call reinvokes us (IfNeeded): 2 calls, not {calls}"
    );
}

/// Pods sent per load run (at least; more while the disruption lasts).
const LOAD_PODS: usize = 300;
/// One pod every 30 ms, at most 16 admissions in flight.
const LOAD_INTERVAL: Duration = Duration::from_millis(30);
const LOAD_IN_FLIGHT: usize = 16;
/// Bound of one load run, whatever the disruption does (a count, not a time).
const LOAD_MAX_PODS: usize = 8000;
/// Rollouts in a row per way of rolling the webhook (issue 22, item 5).
const ROLLOUTS: usize = 5;

/// What admission made of the pods of one load run.
#[derive(Debug, Default)]
struct Load {
    sent: usize,
    /// Pods admitted (server-side dry run: admission runs in full, nothing is stored).
    admitted: usize,
    /// Creations the API server refused (with `failurePolicy: Ignore`, none).
    refused: Vec<String>,
    /// Pods admitted without the init container.
    uninstrumented: Vec<String>,
    /// Pods admitted with it twice or more.
    double: Vec<String>,
    /// Calls to the cxtm webhook the API server counted as failed open.
    failed_open: u64,
    /// The load stopped at [`LOAD_MAX_PODS`] before the disruption ended.
    capped: bool,
}

/// Per replica, the reviews it answered over a run (pods that went away
/// during the run took their counters with them).
fn replica_calls(plane: &ControlPlane, before: &[(String, Outcomes)]) -> String {
    webhook_pods(plane)
        .iter()
        .map(|p| {
            let name = name_of(p);
            let now = replica_outcomes(plane, &name);
            let was = before
                .iter()
                .find(|(n, _)| *n == name)
                .map_or(0, |(_, o)| o.total);
            format!("{name} {}", now.total - was)
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn snapshot(plane: &ControlPlane) -> Vec<(String, Outcomes)> {
    webhook_pods(plane)
        .iter()
        .map(|p| {
            let name = name_of(p);
            let outcomes = replica_outcomes(plane, &name);
            (name, outcomes)
        })
        .collect()
}

/// The API server's own count of calls to the cxtm webhook that failed and
/// were ignored (`failurePolicy: Ignore`).
fn fail_open(plane: &ControlPlane) -> u64 {
    let text = plane.kubectl(&["get", "--raw", "/metrics"], None);
    text.lines()
        .filter(|l| {
            l.starts_with("apiserver_admission_webhook_fail_open_count{")
                && l.contains(&format!("name=\"{CXTM_WEBHOOK}\""))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map(|v| v as u64)
        .sum()
}

/// Lines of the API server's log about calls to our webhooks that failed
/// (the error the API server's client saw: EOF, connection refused, ...).
fn apiserver_webhook_errors(plane: &ControlPlane) -> Vec<String> {
    let log = std::fs::read_to_string(plane.state_dir.join("kube-apiserver.log"))
        .unwrap_or_else(|e| format!("cannot read kube-apiserver.log: {e}"));
    log.lines()
        .filter(|l| l.contains("otel-injector") && l.to_ascii_lowercase().contains("webhook"))
        .map(str::to_owned)
        .collect()
}

/// Sends pods to admission in cxtm (server-side dry runs, one every 30 ms,
/// at most 16 in flight) while `disrupt` runs in another thread, until it
/// has returned and at least [`LOAD_PODS`] were sent.
fn load_during(install: &Install, label: &str, disrupt: impl FnOnce() + Send) -> Load {
    let plane = &install.plane;
    let before = snapshot(plane);
    let errors_before = apiserver_webhook_errors(plane).len();
    let (calls_before, fail_open_before) = (webhook_calls(plane), fail_open(plane));
    let started = Instant::now();
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut load = std::thread::scope(|s| {
        let disruption = s.spawn(|| {
            // Let the load get going first.
            std::thread::sleep(Duration::from_secs(1));
            disrupt();
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        let load = admit_pods(plane, label, &done);
        disruption.join().expect("the disruption panicked");
        load
    });
    load.failed_open = fail_open(plane) - fail_open_before;
    let seconds = started.elapsed().as_secs_f64();
    let calls = webhook_calls(plane) - calls_before;
    eprintln!(
        "  load during {label}: {} pods admitted in {seconds:.1}s ({:.0}/s{}): {} uninstrumented, {} injected twice, {} refused; \
         {calls} webhook calls, {} failed open; calls per replica over the run: {}",
        load.admitted,
        load.sent as f64 / seconds,
        if load.capped {
            ", stopped at the pod cap"
        } else {
            ""
        },
        load.uninstrumented.len(),
        load.double.len(),
        load.refused.len(),
        load.failed_open,
        replica_calls(plane, &before)
    );
    for line in apiserver_webhook_errors(plane).iter().skip(errors_before) {
        eprintln!("    kube-apiserver: {line}");
    }
    load
}

fn admit_pods(plane: &ControlPlane, label: &str, done: &std::sync::atomic::AtomicBool) -> Load {
    let ca = std::fs::read(plane.var("APISERVER_CA_FILE")).expect("API server CA");
    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA pem"))
        .use_rustls_tls()
        .no_proxy()
        .build()
        .expect("client");
    // A dry run goes through admission, webhooks included (sideEffects: None).
    let url = format!(
        "{}/api/v1/namespaces/cxtm/pods?dryRun=All",
        plane.var("APISERVER_URL")
    );
    let token = plane.var("APISERVER_TOKEN").to_owned();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let slots = std::sync::Arc::new(tokio::sync::Semaphore::new(LOAD_IN_FLIGHT));
        let mut tasks = Vec::new();
        let mut tick = tokio::time::interval(LOAD_INTERVAL);
        let mut capped = true;
        for i in 0..LOAD_MAX_PODS {
            if i >= LOAD_PODS && done.load(std::sync::atomic::Ordering::Acquire) {
                capped = false;
                break;
            }
            tick.tick().await;
            let permit = slots.clone().acquire_owned().await.expect("semaphore");
            let name = format!("load-{label}-{i}");
            let mut pod = seed_pod(&name);
            pod["metadata"]["labels"]["load"] = json!(label);
            let request = client
                .post(&url)
                .bearer_auth(&token)
                .json(&pod)
                .timeout(Duration::from_secs(30));
            tasks.push(tokio::spawn(async move {
                let _permit = permit;
                (name.clone(), admitted(&name, request).await)
            }));
        }
        let mut load = Load {
            sent: tasks.len(),
            capped,
            ..Load::default()
        };
        for task in tasks {
            let (name, outcome) = task.await.expect("admission task");
            match outcome {
                Ok(inits) => {
                    load.admitted += 1;
                    match inits {
                        0 => load.uninstrumented.push(name),
                        1 => {}
                        _ => load.double.push(name),
                    }
                }
                Err(e) => load.refused.push(e),
            }
        }
        load
    })
}

/// Our init containers in the pod the API server admitted, or why it refused.
async fn admitted(name: &str, request: reqwest::RequestBuilder) -> Result<usize, String> {
    match request.send().await {
        Ok(r) if r.status() == 201 => match r.json::<Value>().await {
            Ok(pod) => Ok(init_container_count(&pod, INIT)),
            Err(e) => Err(format!("{name}: body: {e}")),
        },
        Ok(r) => {
            let status = r.status();
            Err(format!(
                "{name}: {status} {}",
                r.text().await.unwrap_or_default()
            ))
        }
        Err(e) => Err(format!("{name}: {e}")),
    }
}

/// 0 missed: every pod admitted, each with our init container exactly once,
/// and no call failed open by the API server's own counter. On failure, the
/// API server's log lines about our webhook and the replicas' logs.
fn assert_nothing_missed(install: &Install, label: &str, load: &Load) {
    let missed = load.refused.len()
        + load.double.len()
        + load.uninstrumented.len()
        + load.failed_open as usize;
    if missed > 0 {
        let plane = &install.plane;
        let logs: Vec<String> = webhook_pods(plane)
            .iter()
            .map(|p| {
                let name = name_of(p);
                let log = plane
                    .try_kubectl(&["logs", "-n", NS, &name, "--tail=40"], None)
                    .unwrap_or_else(|e| e);
                format!("--- {name}\n{log}")
            })
            .collect();
        panic!(
            "{label}: {} of {} pods uninstrumented {:?}, injected twice {:?}, refused {:?}; \
             {} calls failed open\nkube-apiserver about our webhooks:\n{}\nreplicas:\n{}",
            load.uninstrumented.len(),
            load.admitted,
            load.uninstrumented,
            load.double,
            load.refused,
            load.failed_open,
            apiserver_webhook_errors(plane).join("\n"),
            logs.join("\n")
        );
    }
    assert!(
        load.admitted >= LOAD_PODS,
        "{label}: only {} pods admitted",
        load.admitted
    );
}

/// The Deployment is rolled out, and the Service's endpoints are exactly its
/// current replicas, all ready: the API server (which dials endpoints itself
/// here, `--enable-aggregator-routing`) now opens connections to new
/// replicas only. Replicas still terminating are not waited for: they drain
/// for up to a minute and a half (docs/operations.md), and serve meanwhile.
fn rolled_out(plane: &ControlPlane) {
    plane.kubectl(
        &[
            "rollout",
            "status",
            "-n",
            NS,
            "deployment/otel-injector",
            "--timeout=180s",
        ],
        None,
    );
    eventually(
        "the Service's endpoints to be the two current replicas",
        Duration::from_secs(120),
        || {
            let mut current: Vec<String> = webhook_pods(plane)
                .iter()
                .filter_map(|p| p["status"]["podIP"].as_str().map(str::to_owned))
                .collect();
            current.sort();
            let endpoints = json_of(
                plane,
                &["get", "endpoints", "-n", NS, "otel-injector", "-o", "json"],
            );
            let subsets = endpoints["subsets"].as_array().cloned().unwrap_or_default();
            let address_ips = |key: &str| -> Vec<String> {
                subsets
                    .iter()
                    .flat_map(|s| s[key].as_array().cloned().unwrap_or_default())
                    .filter_map(|a| a["ip"].as_str().map(str::to_owned))
                    .collect()
            };
            let mut ready = address_ips("addresses");
            ready.sort();
            (current.len() == 2 && ready == current && address_ips("notReadyAddresses").is_empty())
                .then_some(())
        },
    );
}

/// The SHA-256 fingerprint of the certificate `pod` serves on 8443 (the pod
/// IP, on the test's pod network), or of a PEM file.
fn served_fingerprint(plane: &ControlPlane, pod: &str) -> Option<String> {
    let ip = json_of(plane, &["get", "pod", "-n", NS, pod, "-o", "json"])["status"]["podIP"]
        .as_str()?
        .to_owned();
    let script = format!(
        "openssl s_client -connect {ip}:8443 -servername otel-injector.otel-injector.svc </dev/null 2>/dev/null \
         | openssl x509 -noout -fingerprint -sha256"
    );
    let out = Command::new("timeout")
        .args(["10", "sh", "-c", &script])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !text.is_empty()).then_some(text)
}

fn file_fingerprint(path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
        .arg(path)
        .output()
        .expect("openssl x509");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Issue 16, item 4 and issue 22, item 5: while pods are admitted,
/// `kubectl rollout restart` of the webhook five times in a row, the
/// deletion of one webhook pod, and a certificate rotation through the
/// kubelet's Secret volume update. Each: 0 missed, 0 failed open.
fn under_load_nothing_missed(install: &Install) {
    let plane = &install.plane;

    // No disruption: how the calls spread over the two replicas
    // (--max-requests-per-connection makes the API server re-pick).
    let load = load_during(install, "steady", || {});
    assert_nothing_missed(install, "steady load", &load);

    for i in 1..=ROLLOUTS {
        let before: Vec<String> = webhook_pods(plane).iter().map(name_of).collect();
        let label = format!("restart-{i}");
        let load = load_during(install, &label, || {
            plane.kubectl(
                &["rollout", "restart", "-n", NS, "deployment/otel-injector"],
                None,
            );
            rolled_out(plane);
        });
        let after: Vec<String> = webhook_pods(plane).iter().map(name_of).collect();
        assert!(
            after.iter().all(|p| !before.contains(p)),
            "{label} replaced both replicas: {before:?} -> {after:?}"
        );
        assert_nothing_missed(install, &format!("rollout restart {i}/{ROLLOUTS}"), &load);
    }

    // The replica that answered most: the one whose connections are in use.
    let victim = snapshot(plane)
        .into_iter()
        .max_by_key(|(_, o)| o.total)
        .map(|(name, _)| name)
        .expect("a webhook pod");
    let load = load_during(install, "delete", || {
        // Not waited for: it drains its connections (docs/operations.md).
        plane.kubectl(&["delete", "pod", "-n", NS, &victim, "--wait=false"], None);
        rolled_out(plane);
    });
    assert!(
        webhook_pods(plane).iter().all(|p| name_of(p) != victim),
        "{victim} was replaced"
    );
    assert_nothing_missed(install, "deleting a webhook pod", &load);

    // A new CA and serving certificate of your own, installed the documented
    // way over the self-managed one.
    let rotated = install.certs.with_file_name("certs-rotated");
    let old_ca = secret_pem(plane, "ca.crt");
    let pods = restart_counts(plane);
    let load = load_during(install, "rotate", || {
        let out = Command::new(env!("CARGO_BIN_EXE_otel-injector"))
            .args(["certs", "--out"])
            .arg(&rotated)
            .args(["--service", "otel-injector", "--namespace", NS])
            .output()
            .expect("run otel-injector certs");
        assert!(
            out.status.success(),
            "certs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        install_ca_bundle(plane, &rotated);
        // The kubelet updates the Secret volume; the server reloads the files.
        let want = file_fingerprint(&rotated.join("tls.crt"));
        for (pod, _) in &pods {
            eventually(
                &format!("{pod} serves the rotated certificate"),
                Duration::from_secs(120),
                || (served_fingerprint(plane, pod)? == want).then_some(()),
            );
        }
    });
    let bundle = ca_bundles(plane);
    let new_ca = pem_of(&rotated.join("ca.crt"));
    assert_eq!(
        bundle[0],
        format!("{new_ca}\n{old_ca}"),
        "caBundle: the new CA, then the one it replaced"
    );
    assert_eq!(restart_counts(plane), pods, "served without a restart");
    assert_nothing_missed(install, "certificate rotation", &load);

    self_managed_renewal_under_load(install);
}

/// Each webhook pod and its container's restart count.
fn restart_counts(plane: &ControlPlane) -> Vec<(String, Value)> {
    webhook_pods(plane)
        .into_iter()
        .map(|p| {
            (
                name_of(&p),
                p["status"]["containerStatuses"][0]["restartCount"].clone(),
            )
        })
        .collect()
}

/// Issue 26: self-managed TLS replaces, under load, a certificate two days
/// from expiry and a deleted Secret: the leader mints a new CA and
/// certificate, puts the new CA before the old in caBundle, writes the
/// Secret, and every replica serves it without a restart. 0 missed, 0
/// failed open.
fn self_managed_renewal_under_load(install: &Install) {
    let plane = &install.plane;
    // An otel-injector certificate (so the leader's to renew) two days from
    // its notAfter, loaded the bring-your-own way.
    let expiring = install.certs.with_file_name("certs-expiring");
    let validity = otel_injector::certs::CERT_VALIDITY - Duration::from_secs(2 * 86_400);
    otel_injector::certs::generate_at(
        &otel_injector::certs::service_names("otel-injector", NS),
        std::time::SystemTime::now() - validity,
    )
    .expect("certificate")
    .write(&expiring)
    .expect("write certificate");
    let old_ca = pem_of(&expiring.join("ca.crt"));
    renewed_under_load(
        install,
        "renewal",
        &pem_of(&expiring.join("tls.crt")),
        || install_ca_bundle(plane, &expiring),
    );
    let minted_ca = secret_pem(plane, "ca.crt");
    assert_ne!(minted_ca, old_ca, "renewal made a new CA");
    assert_eq!(
        ca_bundles(plane)[0],
        format!("{minted_ca}\n{old_ca}"),
        "renewal: caBundle holds the new CA, then the expiring one"
    );

    renewed_under_load(
        install,
        "secret-deleted",
        &secret_pem(plane, "tls.crt"),
        || {
            plane.kubectl(&["delete", "secret", "-n", NS, "otel-injector-tls"], None);
        },
    );
    let again = secret_pem(plane, "ca.crt");
    assert_ne!(again, minted_ca, "a deleted Secret gets a new CA");
    assert_eq!(
        ca_bundles(plane)[0],
        format!("{again}\n{minted_ca}"),
        "Secret deleted: caBundle holds the new CA, then the previous one"
    );
}

/// Under load: `disrupt`, then the leader writes a certificate other than
/// `old_cert` and every replica serves it; no restart, 0 missed.
fn renewed_under_load(
    install: &Install,
    label: &str,
    old_cert: &str,
    disrupt: impl FnOnce() + Send,
) {
    let plane = &install.plane;
    let pods = restart_counts(plane);
    let load = load_during(install, label, || {
        disrupt();
        // The leader looks every 60 s.
        let minted = eventually(
            &format!("{label}: the leader writes a new certificate"),
            Duration::from_secs(240),
            || {
                let cert = secret_pem(plane, "tls.crt");
                (cert.contains("BEGIN CERTIFICATE") && cert != old_cert).then_some(cert)
            },
        );
        let file = install.certs.with_file_name(format!("{label}.crt"));
        std::fs::write(&file, &minted).expect("write minted certificate");
        let want = file_fingerprint(&file);
        for (pod, _) in &pods {
            eventually(
                &format!("{label}: {pod} serves the minted certificate"),
                Duration::from_secs(120),
                || (served_fingerprint(plane, pod)? == want).then_some(()),
            );
        }
    });
    assert_eq!(
        restart_counts(plane),
        pods,
        "{label}: served without a restart"
    );
    assert_nothing_missed(install, label, &load);
}
