//! A real kube-apiserver on loopback (tests/control-plane/up) and the real
//! otel-injector binary, for the end-to-end tests; the binary also on its own,
//! without a cluster ([`spawn_server`]). Everything started here is stopped on
//! drop, also when a test panics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{Value, json};

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub struct ControlPlane {
    pub env: HashMap<String, String>,
    pub state_dir: PathBuf,
}

impl ControlPlane {
    /// Builds (first time only) and starts etcd + kube-apiserver.
    pub fn up(name: &str) -> Self {
        Self::up_with(name, &[])
    }

    /// [`ControlPlane::up`] with more environment for tests/control-plane/up
    /// (e.g. `SERVICE_ACCOUNT_ADMISSION`, `APISERVER_EXTRA_ARGS`).
    pub fn up_with(name: &str, env: &[(&str, &str)]) -> Self {
        let state_dir =
            std::env::temp_dir().join(format!("otel-injector-e2e-{name}-{}", std::process::id()));
        let started = Instant::now();
        let output = Command::new(repo().join("tests/control-plane/up"))
            .env("STATE_DIR", &state_dir)
            .envs(env.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/control-plane/up");
        let mut plane = ControlPlane {
            env: HashMap::new(),
            state_dir: state_dir.clone(),
        };
        assert!(
            output.status.success(),
            "tests/control-plane/up failed: {}",
            output.status
        );
        let env_text =
            std::fs::read_to_string(state_dir.join("env")).expect("control plane env file");
        plane.env = env_text
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| {
                (
                    k.to_owned(),
                    v.trim_matches(|c| c == '\'' || c == '"').to_owned(),
                )
            })
            .collect();
        eprintln!(
            "control plane up in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        plane
    }

    /// The environment the otel-injector binary needs to reach this API server.
    pub fn binary_env(&self) -> [(&str, &str); 2] {
        [
            ("KUBECONFIG", self.var("KUBECONFIG")),
            ("NO_PROXY", "127.0.0.1,localhost"),
        ]
    }

    pub fn var(&self, key: &str) -> &str {
        self.env
            .get(key)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("control plane env lacks {key}"))
    }

    fn kubectl_command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(self.var("KUBECTL"));
        cmd.env("KUBECONFIG", self.var("KUBECONFIG"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .args(args);
        cmd
    }

    /// Runs kubectl; `Err(stderr)` when it fails.
    pub fn try_kubectl(&self, args: &[&str], stdin: Option<&str>) -> Result<String, String> {
        let mut cmd = self.kubectl_command(args);
        cmd.stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
        let mut child = cmd.spawn().map_err(|e| format!("spawn kubectl: {e}"))?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            pipe.write_all(input.as_bytes())
                .map_err(|e| format!("kubectl stdin: {e}"))?;
        }
        let out = child
            .wait_with_output()
            .map_err(|e| format!("kubectl: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(format!(
                "kubectl {} failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// Runs kubectl and returns stdout and stderr (where admission warnings go).
    pub fn kubectl_with_warnings(&self, args: &[&str], stdin: &str) -> (String, String) {
        let mut child = self
            .kubectl_command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        if let Some(mut pipe) = child.stdin.take() {
            pipe.write_all(stdin.as_bytes()).expect("kubectl stdin");
        }
        let out = child.wait_with_output().expect("kubectl");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            out.status.success(),
            "kubectl {} failed: {stderr}",
            args.join(" ")
        );
        (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
    }

    pub fn kubectl(&self, args: &[&str], stdin: Option<&str>) -> String {
        self.try_kubectl(args, stdin)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// `kubectl create --dry-run=server` of a pod: what admission returns,
    /// with nothing stored; `None` when kubectl fails.
    pub fn dry_run(&self, namespace: &str, pod: &Value) -> Option<Value> {
        let out = self
            .try_kubectl(
                &[
                    "create",
                    "-n",
                    namespace,
                    "--dry-run=server",
                    "-o",
                    "json",
                    "-f",
                    "-",
                ],
                Some(&pod.to_string()),
            )
            .ok()?;
        serde_json::from_str(&out).ok()
    }

    pub fn apply(&self, object: &Value) {
        self.kubectl(&["apply", "-f", "-"], Some(&object.to_string()));
    }

    /// `kubectl create` of a pod, returning the stored object.
    pub fn create_pod(&self, namespace: &str, pod: &Value) -> Value {
        let out = self.kubectl(
            &["create", "-n", namespace, "-o", "json", "-f", "-"],
            Some(&pod.to_string()),
        );
        serde_json::from_str(&out).expect("kubectl create -o json")
    }

    pub fn get_pod(&self, namespace: &str, name: &str) -> Value {
        let out = self.kubectl(&["get", "pod", "-n", namespace, name, "-o", "json"], None);
        serde_json::from_str(&out).expect("kubectl get -o json")
    }

    pub fn namespace(&self, name: &str, labels: &[(&str, &str)]) {
        let labels: serde_json::Map<String, Value> = labels
            .iter()
            .map(|(k, v)| ((*k).into(), json!(v)))
            .collect();
        self.apply(&json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}));
    }

    /// Applies manifests/instrumentation/crd.yaml and waits until the API
    /// server serves Instrumentations.
    pub fn install_instrumentation_crd(&self) {
        let path = "manifests/instrumentation/crd.yaml";
        let text = std::fs::read_to_string(repo().join(path)).expect(path);
        self.apply(&serde_yaml_ng::from_str(&text).expect("crd.yaml parses"));
        eventually(
            "the Instrumentation CRD to be served",
            Duration::from_secs(30),
            || {
                self.try_kubectl(&["get", "instrumentations", "-A"], None)
                    .ok()
            },
        );
    }

    /// Registers manifests/webhook.yaml as shipped, pointed at `url` with the
    /// control plane's CA: the same rules, selectors and policies as production.
    pub fn register_webhook(&self, url: &str) {
        self.register_webhook_patched(url, None);
    }

    /// [`register_webhook`](Self::register_webhook) with a JSON Patch file
    /// of the repository (a kustomize component's, say) applied first.
    pub fn register_webhook_patched(&self, url: &str, patch: Option<&str>) {
        let text = std::fs::read_to_string(repo().join("manifests/webhook.yaml"))
            .expect("manifests/webhook.yaml");
        let mut mwc: Value = serde_yaml_ng::from_str(&text).expect("webhook.yaml parses");
        if let Some(path) = patch {
            let text = std::fs::read_to_string(repo().join(path)).expect(path);
            let ops: json_patch::Patch = serde_yaml_ng::from_str(&text).expect("a JSON Patch");
            json_patch::patch(&mut mwc, &ops).unwrap_or_else(|e| panic!("{path}: {e}"));
        }
        let ca = std::fs::read(self.var("APISERVER_CA_FILE")).expect("CA");
        let bundle = base64::engine::general_purpose::STANDARD.encode(ca);
        for webhook in mwc["webhooks"].as_array_mut().expect("webhooks list") {
            webhook["clientConfig"] = json!({"url": url, "caBundle": bundle});
        }
        self.apply(&mwc);
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new(repo().join("tests/control-plane/down"))
            .env("STATE_DIR", &self.state_dir)
            .status();
        // Kept after a failure, for its logs.
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.state_dir);
        }
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The otel-injector binary, serving on loopback.
pub struct Webhook {
    child: Option<Child>,
    pub port: u16,
    pub admin_port: u16,
    args: Vec<String>,
    log: PathBuf,
}

impl Webhook {
    pub fn start(plane: &ControlPlane, extra: &[&str]) -> Self {
        let mut args = vec!["--shutdown-delay-seconds", "0", "--log-format", "json"];
        args.extend_from_slice(extra);
        let mut webhook = Webhook::new(
            plane.var("WEBHOOK_TLS_CERT_FILE"),
            plane.var("WEBHOOK_TLS_KEY_FILE"),
            &args,
            &plane.state_dir,
        );
        webhook.spawn(&plane.binary_env());
        webhook
    }

    /// `serve` on two free loopback ports with this certificate and key, then
    /// `extra`; logging into `log_dir`. Not started yet.
    fn new(cert: &str, key: &str, extra: &[&str], log_dir: &Path) -> Self {
        let port = free_port();
        let admin_port = free_port();
        let mut args = vec![
            "serve".to_owned(),
            "--listen".into(),
            format!("127.0.0.1:{port}"),
            "--admin-listen".into(),
            format!("127.0.0.1:{admin_port}"),
            "--tls-cert".into(),
            cert.into(),
            "--tls-key".into(),
            key.into(),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        Webhook {
            child: None,
            port,
            admin_port,
            args,
            log: log_dir.join(format!("otel-injector-{port}.log")),
        }
    }

    /// Starts the binary with `env` added and waits until it is ready.
    fn spawn(&mut self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("webhook log");
        let child = Command::new(env!("CARGO_BIN_EXE_otel-injector"))
            .args(&self.args)
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start otel-injector");
        self.child = Some(child);
        self.wait_ready();
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}/mutate", self.port)
    }

    pub fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if http_get(self.admin_port, "/readyz").is_some_and(|(code, _)| code == 200) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("otel-injector not ready in 30 s; log:\n{}", self.log_text());
    }

    pub fn metrics(&self) -> String {
        http_get(self.admin_port, "/metrics")
            .map(|(_, body)| body)
            .unwrap_or_default()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends SIGTERM (graceful shutdown) without waiting.
    pub fn sigterm(&self) {
        if let Some(child) = &self.child {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
        }
    }

    /// Waits for the process to exit; returns the exit code.
    pub fn wait(&mut self) -> Option<i32> {
        let mut child = self.child.take()?;
        child.wait().ok().and_then(|s| s.code())
    }

    /// SIGTERM and wait; returns the exit code.
    pub fn terminate(&mut self) -> Option<i32> {
        self.sigterm();
        self.wait()
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn restart(&mut self, plane: &ControlPlane) {
        self.kill();
        self.spawn(&plane.binary_env());
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The otel-injector binary serving on loopback without a cluster
/// (`--kubernetes off`), with a CA and certificate made for it; a [`Webhook`]
/// (stopped on drop) that also holds its certificates.
pub struct LocalServer {
    webhook: Webhook,
    /// The serving certificate and key, and the CA that signed them.
    pub certs: otel_injector::certs::Paths,
    _dir: tempfile::TempDir,
}

/// Starts `otel-injector serve --kubernetes off` with `extra` arguments and
/// waits until its admin port reports ready.
pub fn spawn_server(extra: &[&str]) -> LocalServer {
    let (dir, certs) = super::temp_certs();
    let mut args = vec!["--kubernetes", "off"];
    args.extend_from_slice(extra);
    let mut webhook = Webhook::new(
        certs.cert.to_str().expect("cert path"),
        certs.key.to_str().expect("key path"),
        &args,
        dir.path(),
    );
    webhook.spawn(&[]);
    LocalServer {
        webhook,
        certs,
        _dir: dir,
    }
}

impl Deref for LocalServer {
    type Target = Webhook;
    fn deref(&self) -> &Webhook {
        &self.webhook
    }
}

impl DerefMut for LocalServer {
    fn deref_mut(&mut self) -> &mut Webhook {
        &mut self.webhook
    }
}

/// A minimal HTTP/1.0 GET against the admin port, without a client library.
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Some((code, body))
}

/// Polls `f` until it returns `Some`, or panics with `what` after `timeout`.
pub fn eventually<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub fn has_init_container(pod: &Value, name: &str) -> bool {
    pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|c| c.iter().any(|c| c["name"] == name))
}

pub fn init_container_count(pod: &Value, name: &str) -> usize {
    pod["spec"]["initContainers"]
        .as_array()
        .map_or(0, |c| c.iter().filter(|c| c["name"] == name).count())
}

pub fn path_exists(p: &Path) -> bool {
    p.exists()
}
