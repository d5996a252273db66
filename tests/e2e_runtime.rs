//! The runtime matrix (issue 13): every Python a namespace may run, on the
//! real node (tests/node/), injected by otel-injector, with both
//! auto-instrumentation images:
//!
//! - the operator's `autoinstrumentation-python:0.54b1` (its requirements,
//!   built with Python 3.11: tests/images/autoinstrumentation-python), the
//!   default image;
//! - the multi-version image of images/autoinstrumentation-python (one site
//!   directory per CPython minor behind a sitecustomize front).
//!
//! Each case is a Deployment in `cxtm` (names `op-*` and `mx-*`). "Ready and
//! serves" is the app answering on its loopback port; "instrumented" is its
//! spans arriving at the test's OTLP receiver with `service.name` = the
//! Deployment. Where an image cannot work in a runtime, the test asserts what
//! happens instead (and `otel-injector verify` naming the cause), so a change
//! either way shows up here. One node, cases in sequence, each printed with
//! its outcome, then the whole matrix as a table. Needs root; ignored under
//! `OTEL_INJECTOR_SKIP_E2E=1`.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::node::*;
use common::otlp::OtlpReceiver;
use serde_json::{Value, json};

const INIT: &str = "opentelemetry-auto-instrumentation-python";
const MOUNT: &str = "/otel-auto-instrumentation";
const TELEMETRY: Duration = Duration::from_secs(60);
/// Images the matrix needs (tests/images/build names).
const IMAGES: &[&str] = &[
    "pause",
    "autoinstrumentation-python",
    "autoinstrumentation-python-multi",
    "runtime-py3.9",
    "runtime-py3.11",
    "runtime-py3.13",
    "runtime-venv",
    "runtime-oldreq",
];

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Auto {
    /// The operator's image, built for Python 3.11 (the default `image`).
    Operator,
    /// images/autoinstrumentation-python: CPython 3.9 to 3.13.
    Multi,
}

impl Auto {
    fn image(self) -> &'static str {
        match self {
            Auto::Operator => {
                "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.54b1"
            }
            Auto::Multi => MULTI_AUTO_IMAGE,
        }
    }
    fn tag(self) -> &'static str {
        match self {
            Auto::Operator => "op",
            Auto::Multi => "mx",
        }
    }
    fn label(self) -> &'static str {
        match self {
            Auto::Operator => "operator image",
            Auto::Multi => "multi-version image",
        }
    }
}

struct Matrix {
    // Drop order is reverse declaration order: webhook, node, then plane.
    plane: ControlPlane,
    node: Option<Node>,
    webhook: Option<Webhook>,
    receiver: OtlpReceiver,
    config: tempfile::NamedTempFile,
    rows: Vec<(String, Auto, String)>,
    started: Instant,
    /// `delivery: imageVolume` (docs/delivery.md): the node runs containerd
    /// 2 and the ImageVolume gate is on, and every pod must get the image
    /// volume, never the init container.
    image_volume: bool,
}

impl Drop for Matrix {
    fn drop(&mut self) {
        self.webhook.take();
        self.node.take();
    }
}

impl Matrix {
    fn start(image_volume: bool) -> Matrix {
        let started = Instant::now();
        let (plane, node) = if image_volume {
            Node::up_image_volume("runtime-iv", IMAGES)
        } else {
            let plane = ControlPlane::up("runtime");
            let node = Node::up_with_images(&plane, IMAGES);
            (plane, node)
        };
        let receiver = OtlpReceiver::start();
        let config = tempfile::NamedTempFile::new().expect("config file");
        plane.namespace("cxtm", &[]);
        eprintln!(
            "cluster and node ready in {:.1}s",
            started.elapsed().as_secs_f64()
        );
        Matrix {
            plane,
            node: Some(node),
            webhook: None,
            receiver,
            config,
            rows: Vec::new(),
            started,
            image_volume,
        }
    }

    /// The default configuration but for where the collector is (the
    /// receiver on loopback) and which auto-instrumentation image is copied.
    fn use_image(&mut self, auto: Auto) {
        let delivery = if self.image_volume {
            "imageVolume"
        } else {
            "initContainer"
        };
        let text = format!(
            "image: {}\ndelivery: {delivery}\nexporter:\n  endpoint: {}\n  protocol: http/protobuf\n",
            auto.image(),
            self.receiver.endpoint()
        );
        std::fs::write(self.config.path(), text).expect("write config");
        match self.webhook.as_mut() {
            Some(webhook) => webhook.restart(&self.plane),
            None => {
                let path = self.config.path().to_str().expect("config path").to_owned();
                let webhook = Webhook::start(&self.plane, &["--config", &path]);
                self.plane.register_webhook(&webhook.url());
                self.webhook = Some(webhook);
            }
        }
        // The API server calls the (re)started webhook for the next pod.
        let probe = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "probe"},
            "spec": {"containers": [{"name": "probe", "image": "local/runtime-py3.11:1"}]}
        });
        eventually(
            "the webhook to inject with the new image",
            Duration::from_secs(30),
            || {
                let pod = self.plane.dry_run("cxtm", &probe)?;
                let image = if self.image_volume {
                    // The webhook's own dry-run check must have passed, or
                    // it falls back to the init container.
                    pod["spec"]["volumes"]
                        .as_array()?
                        .iter()
                        .find_map(|v| v["image"]["reference"].as_str().map(str::to_owned))?
                } else {
                    let init = pod["spec"]["initContainers"].as_array()?.first()?.clone();
                    init["image"].as_str()?.to_owned()
                };
                (image == auto.image()).then_some(())
            },
        );
    }

    fn record(&mut self, case: &str, auto: Auto, outcome: String) {
        eprintln!(
            "case [{}] {case}: {outcome} ({:.1}s)",
            auto.label(),
            self.started.elapsed().as_secs_f64()
        );
        self.rows.push((case.to_owned(), auto, outcome));
    }

    fn delete(&self, name: &str) {
        self.plane.kubectl(
            &["delete", "deployment", "-n", "cxtm", name, "--wait=false"],
            None,
        );
    }

    /// `kubectl logs` of the Deployment's app container (`previous`: the
    /// last terminated instance). A failed `kubectl logs` fails the test:
    /// an empty string would pass every "no otel-injector line" check.
    fn logs(&self, name: &str, previous: bool) -> String {
        self.try_logs(name, previous)
            .unwrap_or_else(|e| panic!("kubectl logs of {name} (previous: {previous}): {e}"))
    }

    /// [`Self::logs`] for polling, where a container not started yet is
    /// an answer to wait on, not a failure.
    fn try_logs(&self, name: &str, previous: bool) -> Result<String, String> {
        let target = format!("deployment/{name}");
        let mut args = vec!["logs", "-n", "cxtm", target.as_str(), "-c", name];
        if previous {
            args.push("--previous");
        }
        self.plane.try_kubectl(&args, None)
    }

    /// `otel-injector verify` of a Deployment: (passed, output).
    fn verify(&self, name: &str) -> (bool, String) {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_otel-injector"))
            .args(["verify", "-n", "cxtm", "--deployment", name])
            .env("KUBECONFIG", self.plane.var("KUBECONFIG"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("run otel-injector verify");
        (
            out.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        )
    }

    /// Waits for the span of `/work?id=<id>`'s outbound call (or any span
    /// whose attributes mention `needle`) from `service`.
    fn wait_span(&self, service: &str, needle: &str) -> common::otlp::Span {
        self.receiver.wait_for(
            &format!("a span from {service} mentioning {needle}"),
            TELEMETRY,
            |r| {
                r.spans().into_iter().find(|s| {
                    s.resource.get("service.name").map(String::as_str) == Some(service)
                        && s.attributes.values().any(|v| v.contains(needle))
                })
            },
        )
    }

    /// The auto-instrumentation reached the pod the configured way: the
    /// init container ran to completion, or the image volume is mounted
    /// read-only in the app container and there is no init container.
    fn assert_delivered(&self, pod: &Value) {
        if !self.image_volume {
            common::node::assert_init_completed(pod, INIT);
            return;
        }
        assert!(
            pod["spec"]["initContainers"].is_null(),
            "imageVolume: no init container: {}",
            pod["spec"]
        );
        let volume = pod["spec"]["volumes"]
            .as_array()
            .and_then(|all| all.iter().find(|v| v["image"]["reference"].is_string()))
            .unwrap_or_else(|| panic!("imageVolume: no image volume: {}", pod["spec"]))
            .clone();
        let mount = app_container(pod)["volumeMounts"]
            .as_array()
            .and_then(|all| all.iter().find(|m| m["name"] == volume["name"]))
            .unwrap_or_else(|| panic!("imageVolume: not mounted: {}", pod["spec"]))
            .clone();
        assert_eq!(mount["readOnly"], true, "{mount}");
        assert_eq!(mount["mountPath"], MOUNT, "{mount}");
    }
}

fn app_container(pod: &Value) -> &Value {
    &pod["spec"]["containers"][0]
}

/// GET on the app's loopback port, retried until it answers at all.
fn get(app: &App, path: &str) -> (u16, String) {
    eventually(
        &format!("{} answers {path}", app.name),
        Duration::from_secs(20),
        || app.get(path),
    )
}

fn info(app: &App) -> Value {
    let (code, body) = get(app, "/info");
    assert_eq!(code, 200, "{}: /info: {body}", app.name);
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("{}: /info is not JSON ({e}): {body}", app.name))
}

/// The container never becomes ready: waits until kubelet has restarted it
/// at least once after a failure, and returns (the last termination, the
/// waiting reason).
fn wait_crash(m: &Matrix, name: &str) -> (Value, String) {
    eventually(
        &format!("{name}'s container to fail and be restarted"),
        Duration::from_secs(90),
        || {
            let pod = newest_pod(&m.plane, "cxtm", name)?;
            let status = pod["status"]["containerStatuses"]
                .as_array()?
                .first()?
                .clone();
            let restarts = status["restartCount"].as_u64().unwrap_or(0);
            let waiting = status["state"]["waiting"]["reason"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            let last = status["lastState"]["terminated"].clone();
            (restarts >= 1 && !last.is_null() && !waiting.is_empty()).then_some((last, waiting))
        },
    )
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
fn every_python_starts_and_serves_when_injected() {
    run_matrix(false);
}

/// The same matrix with `delivery: imageVolume` on a containerd 2 node with
/// the ImageVolume gate (issue 24): every case must behave as with the init
/// container, read from the same paths, with no init container at all.
/// containerd 2 is a separate Go build (tests/containerd/build, cached).
#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
fn every_python_starts_and_serves_from_an_image_volume() {
    run_matrix(true);
}

fn run_matrix(image_volume: bool) {
    let mut m = Matrix::start(image_volume);
    for auto in [Auto::Multi, Auto::Operator] {
        m.use_image(auto);
        eprintln!("== matrix with the {} ({})", auto.label(), auto.image());
        for minor in ["3.9", "3.11", "3.13"] {
            let outcome = python_version(&m, auto, minor, true);
            m.record(
                &format!("CPython {minor}, command python app.py"),
                auto,
                outcome,
            );
        }
        let outcome = python_version(&m, auto, "3.9", false);
        m.record(
            "CPython 3.9, the image's entrypoint (no command)",
            auto,
            outcome,
        );
        let outcome = venv_with_only_python(&m, auto);
        m.record("virtualenv, only python on PATH", auto, outcome);
        if auto == Auto::Multi {
            let outcome = old_default_interpreter(&m);
            m.record(
                "the old default wrapper: python3 in the venv image",
                auto,
                outcome,
            );
        }
        let outcome = restricted(&m, auto);
        m.record("non-root, read-only, PSA restricted", auto, outcome);
        let outcome = user_pythonpath(&m, auto);
        m.record("user PYTHONPATH", auto, outcome);
        let outcome = old_requests(&m, auto);
        m.record("app pins requests 2.25.1 / urllib3 1.26.5", auto, outcome);
        let outcome = django_module(&m, auto);
        m.record(
            "working directory: python -m mysite (Django)",
            auto,
            outcome,
        );
        let outcome = django_gunicorn(&m, auto);
        m.record(
            "working directory: gunicorn mysite.wsgi (Django)",
            auto,
            outcome,
        );
    }

    eprintln!(
        "\nruntime matrix ({:.1}s):",
        m.started.elapsed().as_secs_f64()
    );
    for (case, auto, outcome) in &m.rows {
        eprintln!("  {:<52} {:<20} {outcome}", case, auto.label());
    }
}

/// One of Debian's Pythons, running the runtime app, with `command: [python,
/// app.py]` (wrapped) or through the image's entrypoint (sitecustomize only).
fn python_version(m: &Matrix, auto: Auto, minor: &str, command: bool) -> String {
    let name = format!(
        "{}-py{}{}",
        auto.tag(),
        minor.replace('.', ""),
        if command { "" } else { "-entry" }
    );
    let mut app = App::new(&name, "cxtm", &format!("local/runtime-py{minor}:1"));
    if command {
        app = app.command(&["python", "app.py"]);
    }
    m.plane.apply(&app.deployment());

    if auto == Auto::Operator && minor == "3.9" {
        // Measured: the operator's packages, resolved for Python 3.11 on the
        // day the image is built, do not import on 3.9 (packaging 26 uses
        // typing.TypeAlias). Python catches sitecustomize's failure; the
        // wrapper's (a Python program in front of the app) is caught by the
        // guard, which starts the app without our PYTHONPATH.
        if command {
            let pod = rollout(&m.plane, "cxtm", &name);
            m.assert_delivered(&pod);
            assert_eq!(
                app_container(&pod)["command"][4],
                format!("{MOUNT}/bin/opentelemetry-instrument"),
                "wrapped, behind the guard"
            );
            let about = info(&app);
            assert_eq!(about["otel"]["active"], false, "{about}");
            let (code, _) = get(&app, &format!("/work?id={name}-1"));
            assert_eq!(code, 200);
            let log = m.logs(&name, false);
            assert_eq!(
                log.matches("otel-injector: auto-instrumentation not started")
                    .count(),
                1,
                "the guard says once that the wrapper cannot run:\n{log}"
            );
            assert!(
                log.contains("does not run in Python 3.9")
                    && !log.contains("Error in sitecustomize"),
                "names the version; the app itself ran without our PYTHONPATH:\n{log}"
            );
            let (ok, text) = m.verify(&name);
            assert!(
                !ok,
                "verify must see that the instrumentation did not start:\n{text}"
            );
            assert!(
                text.contains("Python version") && text.contains("3.9"),
                "verify must name the Python version as the cause:\n{text}"
            );
            m.delete(&name);
            return "serves UNINSTRUMENTED: the guard starts the app without our PYTHONPATH, \
                    one 'otel-injector: ... does not run in Python 3.9' line; verify names the Python version"
                .to_owned();
        }
        let pod = rollout(&m.plane, "cxtm", &name);
        m.assert_delivered(&pod);
        let about = info(&app);
        assert_eq!(about["otel"]["active"], false, "{about}");
        let log = m.logs(&name, false);
        assert_eq!(
            log.matches("Error in sitecustomize").count(),
            1,
            "Python says once that sitecustomize failed:\n{log}"
        );
        let (code, _) = get(&app, &format!("/work?id={name}-1"));
        assert_eq!(code, 200);
        let (ok, text) = m.verify(&name);
        assert!(
            !ok,
            "verify must see that the instrumentation did not start:\n{text}"
        );
        assert!(text.contains("Python version"), "{text}");
        m.delete(&name);
        return "serves UNINSTRUMENTED: sitecustomize fails to import (Python 3.9), \
                one 'Error in sitecustomize' line; verify names the Python version"
            .to_owned();
    }

    let pod = rollout(&m.plane, "cxtm", &name);
    m.assert_delivered(&pod);
    let container = app_container(&pod);
    if command {
        assert_eq!(
            container["command"],
            json!(common::guarded(
                "python",
                &[
                    &format!("{MOUNT}/bin/opentelemetry-instrument"),
                    "python",
                    "app.py"
                ]
            )),
            "wrapped with the container's own interpreter, behind the guard"
        );
    } else {
        assert!(container["command"].is_null(), "no command: not wrapped");
    }
    let about = info(&app);
    let version = about["python"].as_str().unwrap_or_default().to_owned();
    assert!(version.starts_with(&format!("{minor}.")), "{about}");
    assert_eq!(
        about["otel"]["active"], true,
        "OpenTelemetry active in the app: {about}"
    );
    let id = format!("{name}-1");
    let (code, body) = get(&app, &format!("/work?id={id}"));
    assert_eq!(code, 200, "{body}");
    m.wait_span(&name, &format!("/ping?id={id}"));
    let log = m.logs(&name, false);
    assert!(
        !log.contains("otel-injector:"),
        "no start-up complaint:\n{log}"
    );
    m.delete(&name);
    format!("instrumented (Python {version}, spans as {name})")
}

/// A virtualenv image whose PATH has only the venv's `python`: the wrapper
/// must use that interpreter (`python3` does not exist there).
fn venv_with_only_python(m: &Matrix, auto: Auto) -> String {
    let name = format!("{}-venv", auto.tag());
    let app = App::new(&name, "cxtm", "local/runtime-venv:1")
        .command(&["/app/venv/bin/python", "app.py"]);
    m.plane.apply(&app.deployment());
    let pod = rollout(&m.plane, "cxtm", &name);
    m.assert_delivered(&pod);
    assert_eq!(
        app_container(&pod)["command"][0],
        "/app/venv/bin/python",
        "the wrapper runs the venv's interpreter"
    );
    let about = info(&app);
    assert_eq!(
        about["prefix"], "/app/venv",
        "runs inside the venv: {about}"
    );
    assert_eq!(about["otel"]["active"], true, "{about}");
    let id = format!("{name}-1");
    assert_eq!(get(&app, &format!("/work?id={id}")).0, 200);
    m.wait_span(&name, &format!("/ping?id={id}"));
    m.delete(&name);
    "instrumented (wrapper: /app/venv/bin/python)".to_owned()
}

/// What the old default (`interpreter: python3`) produced for the venv image:
/// the same pod with the wrapper already in its command (so the webhook does
/// not wrap again). kubelet cannot start it: `python3` is not on PATH.
fn old_default_interpreter(m: &Matrix) -> String {
    let name = "old-python3-wrapper";
    let app = App::new(name, "cxtm", "local/runtime-venv:1").command(&[
        "python3",
        "/otel-auto-instrumentation/bin/opentelemetry-instrument",
        "/app/venv/bin/python",
        "app.py",
    ]);
    m.plane.apply(&app.deployment());
    let (last, waiting) = wait_crash(m, name);
    let message = last["message"].as_str().unwrap_or_default().to_owned();
    assert!(
        message.contains("python3") && message.contains("not found"),
        "the runtime cannot find python3: {last}"
    );
    let (ok, text) = m.verify(name);
    assert!(!ok, "{text}");
    assert!(
        text.contains("interpreter") && text.contains("python3"),
        "verify must name the interpreter as the cause:\n{text}"
    );
    m.delete(name);
    format!(
        "NOT STARTED ({waiting}: python3 not found): why the default is now the container's own interpreter; verify names it"
    )
}

/// Non-root, read-only root filesystem, in a namespace that enforces the
/// restricted Pod Security level. hostNetwork is not allowed there, so the
/// pod has its own network namespace, which reaches nothing on this host (the
/// node's pod bridge has no host address): the spans cannot reach the
/// receiver. The app prints them instead (`OTEL_TRACES_EXPORTER=console`, set
/// in the pod, wins over the injected `otlp`), and the test reads them with
/// `kubectl logs`; requests go through `kubectl exec`.
fn restricted(m: &Matrix, auto: Auto) -> String {
    let name = format!("{}-restricted", auto.tag());
    m.plane.kubectl(
        &[
            "label",
            "--overwrite",
            "namespace",
            "cxtm",
            "pod-security.kubernetes.io/enforce=restricted",
            "pod-security.kubernetes.io/enforce-version=latest",
        ],
        None,
    );
    let app = App::new(&name, "cxtm", "local/runtime-py3.11:1").command(&["python", "app.py"]);
    let mut deployment = app.deployment();
    let pod_spec = &mut deployment["spec"]["template"]["spec"];
    pod_spec["hostNetwork"] = json!(false);
    pod_spec["securityContext"] = json!({
        "runAsNonRoot": true, "runAsUser": 10001, "runAsGroup": 10001,
        "seccompProfile": {"type": "RuntimeDefault"}
    });
    let c = &mut pod_spec["containers"][0];
    c["securityContext"] = json!({
        "allowPrivilegeEscalation": false,
        "readOnlyRootFilesystem": true,
        "runAsNonRoot": true,
        "capabilities": {"drop": ["ALL"]}
    });
    let mut env = c["env"].as_array().cloned().unwrap_or_default();
    env.extend([
        json!({"name": "OTEL_TRACES_EXPORTER", "value": "console"}),
        json!({"name": "OTEL_METRICS_EXPORTER", "value": "none"}),
        json!({"name": "OTEL_LOGS_EXPORTER", "value": "none"}),
    ]);
    c["env"] = json!(env);
    // `-I`: the probe's own Python ignores PYTHONPATH (no instrumentation per probe).
    let port = app.port;
    let probe = format!(
        "import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}/healthz', timeout=2)"
    );
    c["readinessProbe"] = json!({
        "exec": {"command": ["/usr/bin/python3", "-I", "-c", probe]},
        "periodSeconds": 1, "failureThreshold": 30, "timeoutSeconds": 3
    });
    m.plane.apply(&deployment);
    let pod = rollout(&m.plane, "cxtm", &name);
    // Admitted by PodSecurity after our mutation, with our init container
    // (or, in imageVolume mode, the image volume and nothing that runs).
    assert_eq!(pod["spec"]["hostNetwork"], Value::Null, "{}", pod["spec"]);
    if !m.image_volume {
        let init = pod["spec"]["initContainers"]
            .as_array()
            .and_then(|all| all.iter().find(|c| c["name"] == INIT))
            .unwrap_or_else(|| panic!("no init container: {}", pod["spec"]))
            .clone();
        assert_eq!(
            init["securityContext"],
            app_container(&pod)["securityContext"],
            "the init container runs with the app's securityContext"
        );
    }
    m.assert_delivered(&pod);

    let exec = |path: &str| -> String {
        let code = format!(
            "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=5).read().decode())"
        );
        let target = format!("deployment/{name}");
        m.plane.kubectl(
            &[
                "exec",
                "-n",
                "cxtm",
                &target,
                "-c",
                &name,
                "--",
                "/usr/bin/python3",
                "-I",
                "-c",
                &code,
            ],
            None,
        )
    };
    let about: Value = serde_json::from_str(&exec("/info")).expect("/info JSON");
    assert_eq!(about["otel"]["active"], true, "{about}");
    let id = format!("{name}-1");
    assert!(exec(&format!("/work?id={id}")).contains("\"ping\": 200"));
    let span = eventually("the span in the app's log", TELEMETRY, || {
        let log = m.try_logs(&name, false).unwrap_or_default();
        (log.contains(&format!("/ping?id={id}"))
            && log.contains(&format!("\"service.name\": \"{name}\"")))
        .then_some(log)
    });
    assert!(!span.contains("otel-injector:"), "{span}");
    m.plane.kubectl(
        &[
            "label",
            "namespace",
            "cxtm",
            "pod-security.kubernetes.io/enforce-",
            "pod-security.kubernetes.io/enforce-version-",
        ],
        None,
    );
    let (ok, text) = m.verify(&name);
    assert!(ok, "verify of the restricted pod:\n{text}");
    m.delete(&name);
    let how = if m.image_volume {
        "the image volume is mounted read-only, nothing extra runs"
    } else {
        "the init container (uid 10001, read-only root) fills the volume"
    };
    format!(
        "instrumented: PSA restricted admits it, {how}; \
         spans checked in the pod's log (its network namespace cannot reach the receiver)"
    )
}

/// `PYTHONPATH=/app/lib` in the pod spec: the app's own module (imported at
/// start, so Ready proves it) still imports, from /app/lib.
fn user_pythonpath(m: &Matrix, auto: Auto) -> String {
    let name = format!("{}-pythonpath", auto.tag());
    let app = App::new(&name, "cxtm", "local/runtime-py3.11:1").command(&["python", "app.py"]);
    let mut deployment = app.deployment();
    let c = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env = vec![
        json!({"name": "PYTHONPATH", "value": "/app/lib"}),
        json!({"name": "APP_IMPORT", "value": "cxtm_helpers"}),
    ];
    env.extend(c["env"].as_array().cloned().unwrap_or_default());
    c["env"] = json!(env);
    m.plane.apply(&deployment);
    let pod = rollout(&m.plane, "cxtm", &name);
    let pythonpath = app_container(&pod)["env"]
        .as_array()
        .and_then(|env| env.iter().find(|v| v["name"] == "PYTHONPATH"))
        .map(|v| v["value"].clone())
        .unwrap_or_default();
    assert_eq!(
        pythonpath,
        json!(format!(
            "{MOUNT}/opentelemetry/instrumentation/auto_instrumentation:/app/lib:{MOUNT}"
        ))
    );
    let about = info(&app);
    assert_eq!(
        about["own"]["cxtm_helpers"], "/app/lib/cxtm_helpers.py",
        "{about}"
    );
    assert_eq!(about["otel"]["active"], true, "{about}");
    let id = format!("{name}-1");
    assert_eq!(get(&app, &format!("/work?id={id}")).0, 200);
    m.wait_span(&name, &format!("/ping?id={id}"));
    m.delete(&name);
    "instrumented; the app's /app/lib module imports (PYTHONPATH merged around it)".to_owned()
}

/// An app that pins requests 2.25.1 / urllib3 1.26.5 in its site directory.
/// Which copy does it import? With the operator's image, PYTHONPATH puts the
/// instrumentation's own requests/urllib3 first (operator #1885); the
/// multi-version image's front puts its site directory after the app's.
fn old_requests(m: &Matrix, auto: Auto) -> String {
    let name = format!("{}-oldreq", auto.tag());
    let app = App::new(&name, "cxtm", "local/runtime-oldreq:1").command(&["python", "app.py"]);
    m.plane.apply(&app.deployment());
    rollout(&m.plane, "cxtm", &name);
    let about = info(&app);
    let requests = &about["requests"];
    let urllib3 = &about["urllib3"];
    let versions = format!(
        "requests {} ({}), urllib3 {} ({})",
        requests["version"].as_str().unwrap_or("?"),
        requests["file"].as_str().unwrap_or("?"),
        urllib3["version"].as_str().unwrap_or("?"),
        urllib3["file"].as_str().unwrap_or("?")
    );
    let app_site = "/usr/local/lib/python3.11/dist-packages/";
    let whose = match auto {
        Auto::Multi => {
            assert_eq!(
                requests["version"], "2.25.1",
                "the app's own requests wins: {about}"
            );
            assert_eq!(
                urllib3["version"], "1.26.5",
                "the app's own urllib3 wins: {about}"
            );
            for m in [requests, urllib3] {
                assert!(
                    m["file"].as_str().unwrap_or_default().starts_with(app_site),
                    "{about}"
                );
            }
            "the app's own"
        }
        Auto::Operator => {
            for m in [requests, urllib3] {
                assert!(
                    m["file"].as_str().unwrap_or_default().starts_with(MOUNT),
                    "the operator's image shadows the app's packages: {about}"
                );
            }
            assert_ne!(requests["version"], "2.25.1", "{about}");
            "the instrumentation's (shadowing the app's pins)"
        }
    };
    let id = format!("{name}-1");
    let (code, body) = get(&app, &format!("/requests?id={id}"));
    assert_eq!(code, 200, "{body}");
    let span = m.wait_span(&name, &format!("/ping?id={id}"));
    m.delete(&name);
    format!(
        "instrumented ({} span); the app gets {whose}: {versions}",
        span.scope
    )
}

/// A Django project in the working directory, `python -m mysite`: wrapped,
/// so the operator's `opentelemetry-instrument` puts the working directory on
/// PYTHONPATH; the multi-version front puts it on sys.path while starting.
fn django_module(m: &Matrix, auto: Auto) -> String {
    let name = format!("{}-django-m", auto.tag());
    django(m, &name, &["python", "-m", "mysite"])
}

/// The same project under gunicorn (not a Python command: not wrapped, so
/// only sitecustomize). The Django instrumentation imports the settings while
/// sitecustomize runs, before gunicorn has put the working directory on
/// sys.path (operator #2302: with the operator's PYTHONPATH, Django falls
/// back to empty settings and answers every request 400). The webhook puts
/// the working directory (`.`) last on PYTHONPATH of unwrapped containers.
fn django_gunicorn(m: &Matrix, auto: Auto) -> String {
    let name = format!("{}-django-gunicorn", auto.tag());
    django(
        m,
        &name,
        &[
            "gunicorn",
            "--workers",
            "1",
            "--bind",
            "127.0.0.1:$(PORT)",
            "mysite.wsgi",
        ],
    )
}

fn django(m: &Matrix, name: &str, command: &[&str]) -> String {
    let app = App::new(name, "cxtm", "local/runtime-py3.11:1").command(command);
    let mut deployment = app.deployment();
    let c = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env = c["env"].as_array().cloned().unwrap_or_default();
    env.push(json!({"name": "DJANGO_SETTINGS_MODULE", "value": "mysite.settings"}));
    c["env"] = json!(env);
    m.plane.apply(&deployment);
    let pod = rollout(&m.plane, "cxtm", name);
    m.assert_delivered(&pod);
    if command[0] == "gunicorn" {
        let pythonpath = app_container(&pod)["env"]
            .as_array()
            .and_then(|env| env.iter().find(|v| v["name"] == "PYTHONPATH"))
            .and_then(|v| v["value"].as_str())
            .unwrap_or_default()
            .to_owned();
        assert!(
            pythonpath.ends_with(":."),
            "not wrapped: the working directory is last on PYTHONPATH: {pythonpath}"
        );
    }
    let (code, body) = get(&app, "/items/7");
    assert_eq!(code, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(
        answer["settings"], "mysite.settings",
        "the project's own settings: {body}"
    );
    let span = django_span(m, name);
    m.delete(name);
    format!(
        "instrumented ({} span, route {})",
        span.scope, span.attributes["http.route"]
    )
}

/// A Django server span for `/items/<int:item_id>` from `service`.
fn django_span(m: &Matrix, service: &str) -> common::otlp::Span {
    m.receiver.wait_for(
        &format!("a Django server span from {service}"),
        TELEMETRY,
        |r| {
            r.spans().into_iter().find(|s| {
                s.resource.get("service.name").map(String::as_str) == Some(service)
                    && s.attributes.get("http.route").map(String::as_str)
                        == Some("items/<int:item_id>")
            })
        },
    )
}
