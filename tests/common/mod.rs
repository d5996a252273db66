//! Shared helpers for the integration tests: fixtures, reviews, patches,
//! admission without the wire format.
#![allow(dead_code)]

use std::path::PathBuf;

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use otel_injector::admission::{self, Admission, Base, Context};
use otel_injector::config::Config;
use otel_injector::inject::{Injection, Outcome};
use otel_injector::policy::{ClusterView, Scope};
use serde::Deserialize;
use serde_json::{Value, json};

pub fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn fixture(name: &str) -> Value {
    let text = std::fs::read_to_string(fixture_path(name))
        .unwrap_or_else(|e| panic!("fixture {name}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

/// The seed's final pod (`seed-expected-pod.json`) as the default config
/// makes it: the wrapper runs the container's own interpreter (`python`),
/// where the seed's hand-made command said `python3`, behind the guard
/// (`commandWrapper: {interpreter: python3, guard: false}` gives the fixture
/// exactly).
pub fn seed_expected_by_default() -> Value {
    let mut expected = fixture("seed-expected-pod.json");
    let command = &mut expected["spec"]["containers"][0]["command"];
    assert_eq!(
        command[0], "python3",
        "the fixture is the seed's hand-made command"
    );
    let rest: Vec<String> = command
        .as_array()
        .into_iter()
        .flatten()
        .skip(1)
        .filter_map(|a| a.as_str().map(str::to_owned))
        .collect();
    *command = json!(guarded("python", &rest));
    expected
}

/// `[interpreter, -S, -c, GUARD, rest...]`: a wrapped command as the default
/// `commandWrapper` (guarded) makes it; `rest` starts with the wrapper's path.
pub fn guarded<S: AsRef<str>>(interpreter: &str, rest: &[S]) -> Vec<String> {
    [
        interpreter,
        "-S",
        "-c",
        otel_injector::inject::command::GUARD,
    ]
    .into_iter()
    .chain(rest.iter().map(AsRef::as_ref))
    .map(str::to_owned)
    .collect()
}

pub fn pod(value: &Value) -> Pod {
    serde_json::from_value(value.clone()).expect("fixture is a Pod")
}

/// An AdmissionReview v1 for a pod CREATE, as the API server sends it.
pub fn review(pod: &Value, namespace: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": uid,
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "requestKind": {"group": "", "version": "v1", "kind": "Pod"},
            "requestResource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"].as_str().unwrap_or(""),
            "namespace": namespace,
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller", "groups": ["system:authenticated"]},
            "object": pod,
            "oldObject": null,
            "dryRun": false,
            "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"}
        }
    })
}

/// Applies the base64 JSON Patch of an AdmissionReview response to `pod`.
pub fn apply_response(pod: &Value, response_review: &Value) -> Value {
    let response = &response_review["response"];
    let mut out = pod.clone();
    if let Some(encoded) = response["patch"].as_str() {
        assert_eq!(response["patchType"], "JSONPatch");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("patch is base64");
        let patch: json_patch::Patch =
            serde_json::from_slice(&bytes).expect("patch is a JSON Patch");
        json_patch::patch(&mut out, &patch).expect("patch applies to the pod");
    } else {
        assert!(
            response.get("patchType").is_none(),
            "patchType without patch: {response}"
        );
    }
    out
}

pub fn apply(pod: &Value, patch: &json_patch::Patch) -> Value {
    let mut out = pod.clone();
    json_patch::patch(&mut out, patch).expect("patch applies to the pod");
    out
}

/// What admission decided for one pod, and the pod it let through.
pub struct Admitted {
    /// The pod with the patch applied (as it came in when not injected).
    pub pod: Value,
    /// `"inject"`, `"out"` (out of scope) or `"unresolvable"`.
    pub scope: &'static str,
    /// The policy's reason.
    pub why: String,
    /// The mutation's result, when the pod was in scope.
    pub injection: Option<Injection>,
    /// Everything admission decided.
    pub admission: Admission,
}

impl Admitted {
    pub fn outcome(&self) -> Option<&Outcome> {
        self.injection.as_ref().map(|i| &i.outcome)
    }

    pub fn warnings(&self) -> &[String] {
        &self.admission.warnings
    }
}

/// Runs [`admission::admit`], the webhook's own admission (namespace
/// annotations and owners from `view`), without the AdmissionReview wire
/// format, and applies the patch. `Err` when the JSON is not a pod or the
/// patch does not apply to it, for callers that must not panic (property
/// tests).
pub fn try_admit(
    pod_json: &Value,
    namespace: &str,
    config: &Config,
    view: &dyn ClusterView,
) -> Result<Admitted, String> {
    let base = Base::new(config.clone());
    let pod = Pod::deserialize(pod_json).map_err(|e| format!("not a pod: {e}"))?;
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let context = Context {
        base: &base,
        cluster: view,
    };
    let admission = admission::admit(&pod, namespace, name, context);
    let mut out = pod_json.clone();
    if let Some(patch) = admission.patch() {
        let operations = patch
            .to_operations()
            .map_err(|e| format!("patch does not parse: {e}; patch {patch:?}"))?;
        json_patch::patch(&mut out, &operations)
            .map_err(|e| format!("patch does not apply: {e}; patch {patch:?}"))?;
    }
    let (scope, why) = match &admission.scope {
        Scope::Inject { why, .. } => ("inject", why.clone()),
        Scope::OutOfScope { why } => ("out", why.clone()),
        Scope::Unresolvable { why } => ("unresolvable", why.clone()),
    };
    Ok(Admitted {
        pod: out,
        scope,
        why,
        injection: admission.injection.clone(),
        admission,
    })
}

/// [`try_admit`], panicking on its errors.
pub fn admit_with(
    pod_json: &Value,
    namespace: &str,
    config: &Config,
    view: &dyn ClusterView,
) -> Admitted {
    try_admit(pod_json, namespace, config, view).unwrap_or_else(|e| panic!("{e}"))
}

pub fn env_of(pod: &Value, container: usize) -> Vec<(String, Value)> {
    pod["spec"]["containers"][container]["env"]
        .as_array()
        .map(|env| {
            env.iter()
                .map(|v| {
                    (
                        v["name"].as_str().unwrap_or_default().to_owned(),
                        v.get("value").cloned().unwrap_or(Value::Null),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn env_value(pod: &Value, container: usize, name: &str) -> Option<String> {
    env_of(pod, container)
        .into_iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.as_str().map(str::to_owned))
}

/// A webhook served over real TLS on a loopback port, for the life of the test.
pub struct TestServer {
    pub base: String,
    pub client: reqwest::Client,
    pub metrics: std::sync::Arc<otel_injector::metrics::Metrics>,
    pub store: std::sync::Arc<otel_injector::tls::CertStore>,
    pub certs: otel_injector::certs::Paths,
    pub dir: tempfile::TempDir,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    pub task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: otel_injector::config::Config) -> Self {
        Self::start_with(config, None, otel_injector::server::DEFAULT_BODY_LIMIT).await
    }

    pub async fn start_with(
        config: otel_injector::config::Config,
        client_ca: Option<&std::path::Path>,
        body_limit: usize,
    ) -> Self {
        use std::sync::Arc;
        otel_injector::tls::install_crypto_provider();
        let (dir, certs) = temp_certs();
        let store = Arc::new(
            otel_injector::tls::CertStore::load(certs.cert.clone(), certs.key.clone())
                .expect("load certs"),
        );
        let tls = otel_injector::tls::server_config(store.clone(), client_ca).expect("tls config");
        let metrics = Arc::new(otel_injector::metrics::Metrics::new());
        let reviewer = otel_injector::review::Reviewer::new(
            config,
            Arc::new(otel_injector::policy::StaticView),
        );
        let app = otel_injector::server::router(otel_injector::server::AppState {
            reviewer,
            metrics: metrics.clone(),
            body_limit,
            events: None,
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(otel_injector::server::serve_tls(
            listener,
            tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
            app,
            async move {
                let _ = rx.await;
            },
            std::time::Duration::from_secs(5),
        ));
        let client = client_for(&certs.ca);
        TestServer {
            base: format!("https://127.0.0.1:{}", addr.port()),
            client,
            metrics,
            store,
            certs,
            dir,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        self.post_raw(
            path,
            serde_json::to_vec(body).expect("json"),
            "application/json",
        )
        .await
    }

    pub async fn post_raw(&self, path: &str, body: Vec<u8>, content_type: &str) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        (
            status,
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())),
        )
    }

    /// Stops accepting and waits for the drain.
    pub async fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

/// A CA and a serving certificate for the webhook's Service names (as
/// `otel-injector certs` makes them), written to a new temporary directory.
pub fn temp_certs() -> (tempfile::TempDir, otel_injector::certs::Paths) {
    let dir = tempfile::tempdir().expect("tempdir");
    let names = otel_injector::certs::service_names("otel-injector", "otel-injector");
    let certs = otel_injector::certs::generate(&names)
        .expect("certs")
        .write(dir.path())
        .expect("write certs");
    (dir, certs)
}

pub fn client_for(ca: &std::path::Path) -> reqwest::Client {
    let pem = std::fs::read(ca).expect("read CA");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("CA pem"))
        .use_rustls_tls()
        .http1_only()
        .build()
        .expect("client")
}
pub mod cluster;
pub mod node;
pub mod otlp;
