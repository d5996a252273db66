//! `verify`: checks a live pod the way the seed's team did by hand, and says
//! what is wrong and how to fix it.

use std::fmt::Write as _;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, ContainerStateTerminated, Node, Pod, Volume};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kube::api::{Api, ListParams, LogParams};
use kube::core::Selector;

use crate::admission;
use crate::config::Config;
use crate::inject::{OPERATOR_INIT_CONTAINER, REASON_ANNOTATION, STATUS_ANNOTATION};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Pass,
    /// Not wrong yet (e.g. the pod has not started).
    Pending,
    Fail,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Check {
    pub what: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

fn check(what: impl Into<String>, ok: bool, detail: impl Into<String>, fix: &str) -> Check {
    Check {
        what: what.into(),
        status: if ok { Status::Pass } else { Status::Fail },
        detail: detail.into(),
        fix: (!ok).then(|| fix.to_owned()),
    }
}

fn env<'a>(c: &'a Container, name: &str) -> Option<&'a str> {
    c.env
        .as_deref()?
        .iter()
        .find(|v| v.name == name)
        .and_then(|v| v.value.as_deref())
}

/// The container to check: the one carrying the instrumentation's PYTHONPATH,
/// else the first that is not a known sidecar.
fn target<'a>(pod: &'a Pod, config: &Config) -> Option<&'a Container> {
    let containers = &pod.spec.as_ref()?.containers;
    containers
        .iter()
        .find(|c| env(c, "PYTHONPATH").is_some_and(|p| p.contains(&config.mount_path)))
        .or_else(|| {
            containers
                .iter()
                .find(|c| !config.sidecars.contains(&c.name))
        })
}

/// What to do when the webhook did not mutate a pod.
const RECREATE: &str = "the webhook only mutates pods when they are created: check the pod's otel-injector.io/status and otel-injector.io/reason annotations, the webhook's namespaceSelector and that it was running, then recreate the pod (kubectl rollout restart deployment/<name>)";

/// The checklist for one pod (pure: no cluster access).
pub fn check_pod(pod: &Pod, config: &Config) -> Vec<Check> {
    let volume = pod
        .spec
        .iter()
        .flat_map(|s| s.volumes.iter().flatten())
        .find(|v| v.name == config.volume_name);
    let mut checks = match image_volume(volume) {
        Some(reference) => vec![check(
            "delivery imageVolume",
            true,
            format!(
                "image {reference} mounted read-only as volume {} (no init container)",
                config.volume_name
            ),
            "",
        )],
        None => init_container_checks(pod, config),
    };
    // The sources admission gives the volume: an emptyDir, the ephemeral
    // claim an Instrumentation's volumeClaimTemplate makes, or the image
    // itself (imageVolume delivery).
    let source = volume.and_then(|v| {
        if v.empty_dir.is_some() {
            Some("emptyDir")
        } else if v.ephemeral.is_some() {
            Some("ephemeral (volumeClaimTemplate)")
        } else if v.image.is_some() {
            Some("image")
        } else {
            None
        }
    });
    checks.push(check(
        format!("volume {} defined", config.volume_name),
        source.is_some(),
        match (volume, source) {
            (_, Some(source)) => source,
            (Some(_), None) => "neither an emptyDir, an ephemeral claim nor an image",
            (None, _) => "missing",
        },
        RECREATE,
    ));
    match target(pod, config) {
        Some(container) => checks.extend(container_checks(container, config)),
        None => checks.push(check(
            "an app container to check",
            false,
            "the pod has no container",
            "",
        )),
    }
    checks
}

/// The reference of our volume when it is an image volume (imageVolume delivery).
fn image_volume(volume: Option<&Volume>) -> Option<&str> {
    let source = volume?.image.as_ref()?;
    Some(source.reference.as_deref().unwrap_or("?"))
}

/// Image volumes need containerd 2.1 or newer on the node: what the node
/// reports (`status.nodeInfo.containerRuntimeVersion`, `containerd://2.1.4`).
pub fn runtime_check(node_name: &str, runtime: &str) -> Check {
    let version = runtime.strip_prefix("containerd://").map(|v| {
        let mut parts = v.trim_start_matches('v').split(['.', '-', '+']);
        let mut next = || {
            parts
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        (next(), next())
    });
    let what = "node can mount image volumes";
    match version {
        Some(v) if v >= (2, 1) => check(what, true, format!("{node_name}: {runtime}"), ""),
        Some(_) => check(
            what,
            false,
            format!("{node_name} runs {runtime}; image volumes need containerd 2.1 or newer"),
            "upgrade containerd on the node, or deliver through the init container (annotation otel-injector.io/delivery: initContainer, or delivery: initContainer in the config)",
        ),
        None => Check {
            what: what.into(),
            status: Status::Pending,
            detail: format!("{node_name} runs {runtime}; CRI-O supports image volumes from 1.31"),
            fix: None,
        },
    }
}

/// [`runtime_check`] for a pod with an image volume, reading its node.
async fn node_runtime(client: &kube::Client, pod: &Pod, config: &Config) -> Option<Check> {
    let spec = pod.spec.as_ref()?;
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == config.volume_name);
    image_volume(volume)?;
    let node_name = spec.node_name.as_deref()?;
    match Api::<Node>::all(client.clone()).get(node_name).await {
        Ok(node) => {
            let runtime = node
                .status
                .and_then(|s| s.node_info)
                .map(|i| i.container_runtime_version)
                .unwrap_or_default();
            Some(runtime_check(node_name, &runtime))
        }
        Err(e) => Some(Check {
            what: "node can mount image volumes".into(),
            status: Status::Pending,
            detail: format!("cannot read node {node_name}: {e}"),
            fix: None,
        }),
    }
}

/// The init container is there (else what the webhook said about the pod)
/// and has completed (else why not).
fn init_container_checks(pod: &Pod, config: &Config) -> Vec<Check> {
    let annotations = pod.metadata.annotations.as_ref();
    let init_names = [config.init_container_name.as_str(), OPERATOR_INIT_CONTAINER];
    let init = pod
        .spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .find(|c| init_names.contains(&c.name.as_str()));
    let status_note = match (
        annotations.and_then(|a| a.get(STATUS_ANNOTATION)),
        annotations.and_then(|a| a.get(REASON_ANNOTATION)),
    ) {
        (Some(s), Some(r)) => format!(" (otel-injector.io/status={s}: {r})"),
        (Some(s), None) => format!(" (otel-injector.io/status={s})"),
        _ => String::new(),
    };
    let mut checks = vec![check(
        format!("init container {} present", config.init_container_name),
        init.is_some(),
        init.map(|c| format!("image {}", c.image.as_deref().unwrap_or("?")))
            .unwrap_or_else(|| format!("no auto-instrumentation init container{status_note}")),
        RECREATE,
    )];
    let Some(init) = init else {
        return checks;
    };
    let state = pod
        .status
        .as_ref()
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|all| all.iter().find(|s| s.name == init.name))
        .and_then(|s| s.state.clone());
    checks.push(match state {
        Some(state) if state.terminated.as_ref().is_some_and(|t| t.exit_code == 0) => {
            check("init container completed", true, "copied the instrumentation (exit 0)", "")
        }
        Some(state) if state.terminated.is_some() => {
            let t = state.terminated.unwrap_or_default();
            check(
                "init container completed",
                false,
                format!("exited {} ({})", t.exit_code, t.reason.unwrap_or_default()),
                "read its log (kubectl logs <pod> -c <init container>); OOMKilled: raise initContainerResources; permission denied: the volume or securityContext",
            )
        }
        Some(state) if state.waiting.is_some() => {
            let w = state.waiting.unwrap_or_default();
            check(
                "init container completed",
                false,
                format!("waiting: {} {}", w.reason.unwrap_or_default(), w.message.unwrap_or_default()),
                "ImagePullBackOff/ErrImagePull: the node cannot pull the auto-instrumentation image (the seed needed nodeSelector ao-node=observability for registry access)",
            )
        }
        _ => Check {
            what: "init container completed".into(),
            status: Status::Pending,
            detail: "no status yet: the pod has not started".into(),
            fix: None,
        },
    });
    checks
}

/// The app container: mount, env, endpoint, PYTHONPATH, entry point.
fn container_checks(container: &Container, config: &Config) -> Vec<Check> {
    let mut checks = Vec::new();
    let label = |what: &str| format!("{what} in container {}", container.name);
    let mounted = container.volume_mounts.iter().flatten().any(|m| {
        m.name == config.volume_name && m.mount_path.trim_end_matches('/') == config.mount_path
    });
    checks.push(check(
        label(&format!("volume mounted at {}", config.mount_path)),
        mounted,
        if mounted { "mounted" } else { "not mounted" },
        RECREATE,
    ));

    checks.push(env_present(container, config));

    let endpoint = env(container, "OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    let protocol = env(container, "OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or("http/protobuf");
    // The same check admission warns with, so the two agree.
    let mismatch = admission::endpoint_mismatch(endpoint, protocol);
    checks.push(check(
        label("endpoint port matches protocol"),
        mismatch.is_none(),
        mismatch.unwrap_or_else(|| format!("{endpoint} with {protocol}")),
        "OTLP over HTTP (http/protobuf) is port 4318, gRPC is 4317: fix the endpoint in the config or the Instrumentation (exporter.endpoint and python.env)",
    ));

    let pythonpath = env(container, "PYTHONPATH").unwrap_or_default();
    let prefix = format!(
        "{}/opentelemetry/instrumentation/auto_instrumentation",
        config.mount_path
    );
    let has_path = pythonpath.split(':').any(|p| p == prefix)
        && pythonpath.split(':').any(|p| p == config.mount_path);
    checks.push(check(
        label("PYTHONPATH includes the instrumentation"),
        has_path,
        if pythonpath.is_empty() { "unset".to_owned() } else { pythonpath.to_owned() },
        "PYTHONPATH must hold <mount>/opentelemetry/instrumentation/auto_instrumentation (sitecustomize) and <mount>; a PYTHONPATH from valueFrom cannot be merged: set it as a plain value",
    ));

    let wrapped = container
        .command
        .iter()
        .flatten()
        .any(|a| a.ends_with("opentelemetry-instrument"));
    let how = if wrapped {
        "command wrapped with opentelemetry-instrument (ps shows the app itself: it execs it)"
    } else if has_path {
        "sitecustomize through PYTHONPATH (no wrapper needed)"
    } else {
        "neither a wrapper nor sitecustomize"
    };
    checks.push(check(
        label("instrumentation entry point"),
        wrapped || has_path,
        how,
        "see PYTHONPATH above",
    ));
    checks
}

/// The env admission sets in every instrumented container.
fn env_present(container: &Container, config: &Config) -> Check {
    // With no endpoint configured admission sets none (the SDK's default
    // applies), so its absence is no fault.
    let endpoint_expected = config.exporter.endpoint.is_some();
    let required = [
        "PYTHONPATH",
        "OTEL_SERVICE_NAME",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        "OTEL_TRACES_EXPORTER",
    ]
    .into_iter()
    .chain(endpoint_expected.then_some("OTEL_EXPORTER_OTLP_ENDPOINT"));
    let missing: Vec<&str> = required
        .filter(|n| container.env.iter().flatten().all(|v| v.name != *n))
        .collect();
    check(
        format!("OTEL env present in container {}", container.name),
        missing.is_empty(),
        if missing.is_empty() {
            "all set".to_owned()
        } else {
            format!("missing {}", missing.join(", "))
        },
        RECREATE,
    )
}

/// What a container's log (or its last termination message) says about why
/// the instrumentation, or the container itself, did not start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cause {
    /// `the interpreter`, `the Python version`, `the permission` or `a start-up error`.
    pub kind: &'static str,
    /// The line that says so, with the Python version when the text names one.
    pub detail: String,
    pub fix: &'static str,
}

const FIX_INTERPRETER: &str = "commandWrapper.interpreter: \"\" (the default) runs opentelemetry-instrument with the command's own interpreter; or commandWrapper.enabled: false";
const FIX_VERSION: &str = "the auto-instrumentation image has no packages for this Python: use the multi-version image (images/autoinstrumentation-python) or one built for this Python; with a wrapped command, commandWrapper.enabled: false at least lets the app start";
const FIX_PERMISSION: &str = "the init container runs with the app container's securityContext: the user must be able to read the image's /autoinstrumentation and write the volume (an emptyDir is writable by everyone)";
const FIX_STARTUP: &str = "read the container's log around the error; the app runs uninstrumented";

/// `3.9` from `/usr/lib/python3.9/typing.py`, `Python 3.9`, ...
fn python_version_in(text: &str) -> Option<String> {
    for marker in ["python3.", "Python 3."] {
        for (i, _) in text.match_indices(marker) {
            let rest = &text[i + marker.len()..];
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if !digits.is_empty() {
                return Some(format!("3.{digits}"));
            }
        }
    }
    None
}

/// The last line of the traceback that starts at or after `from`.
fn error_line(lines: &[&str], from: usize) -> String {
    lines[from..]
        .iter()
        .map(|l| l.trim())
        .find(|l| {
            l.contains("Error:")
                || l.contains("Error ")
                || l.starts_with("Exception")
                || l.ends_with("Error")
        })
        .unwrap_or("")
        .to_owned()
}

/// Reads a container log (and/or a termination message) for the known ways
/// an injected Python process fails to start its instrumentation or itself.
/// The first that matches wins, most specific first.
pub fn classify(text: &str) -> Option<Cause> {
    let lines: Vec<&str> = text.lines().collect();
    interpreter_missing(&lines)
        .or_else(|| our_message(&lines))
        .or_else(|| sitecustomize_error(&lines, text))
        .or_else(|| wrapper_traceback(&lines, text))
        .or_else(|| permission_denied(&lines))
        .or_else(|| auto_initialize_failed(&lines))
}

/// `detail` with the Python version the text names, where `detail` does not
/// already name it.
fn with_version(detail: String, text: &str) -> String {
    match python_version_in(&detail).or_else(|| python_version_in(text)) {
        Some(v)
            if !detail.contains(&format!("python{v}"))
                && !detail.contains(&format!("Python {v}")) =>
        {
            format!("{detail} (python{v})")
        }
        _ => detail,
    }
}

/// The runtime could not exec the command's first element.
fn interpreter_missing(lines: &[&str]) -> Option<Cause> {
    let line = lines.iter().find(|l| {
        l.contains("executable file not found")
            || (l.contains("exec:") && l.contains("no such file"))
    })?;
    Some(Cause {
        kind: "the interpreter",
        detail: format!(
            "the command's first element is not in the image: {}",
            line.trim()
        ),
        fix: FIX_INTERPRETER,
    })
}

/// The line our own image or the wrapper's guard prints when it starts the
/// app uninstrumented.
fn our_message(lines: &[&str]) -> Option<Cause> {
    let line = lines.iter().find(|l| {
        l.contains("otel-injector: auto-instrumentation not started")
            || l.contains("otel-injector: auto-instrumentation did not start")
    })?;
    // The multi-version front ("no build for Python 3.X") and the
    // command wrapper's guard ("... does not run in Python 3.X.Y").
    let version = line.contains("no build for Python") || line.contains("does not run in Python");
    Some(Cause {
        kind: if version {
            "the Python version"
        } else {
            "a start-up error"
        },
        detail: line.trim().to_owned(),
        fix: if version { FIX_VERSION } else { FIX_STARTUP },
    })
}

/// Python could not import the image's `sitecustomize`.
fn sitecustomize_error(lines: &[&str], text: &str) -> Option<Cause> {
    let i = lines
        .iter()
        .position(|l| l.contains("Error in sitecustomize"))?;
    let error = error_line(lines, i + 1);
    Some(Cause {
        kind: "the Python version",
        detail: with_version(
            format!(
                "sitecustomize (the auto-instrumentation) does not import in this Python: {error}"
            ),
            text,
        ),
        fix: FIX_VERSION,
    })
}

/// A traceback from the wrapper itself: a permission, else the version.
fn wrapper_traceback(lines: &[&str], text: &str) -> Option<Cause> {
    let i = lines
        .iter()
        .position(|l| l.contains("Traceback"))
        .filter(|_| text.contains("/bin/opentelemetry-instrument"))?;
    let error = error_line(lines, i);
    if error.contains("PermissionError") || error.contains("Permission denied") {
        return Some(Cause {
            kind: "the permission",
            detail: error,
            fix: FIX_PERMISSION,
        });
    }
    Some(Cause {
        kind: "the Python version",
        detail: with_version(
            format!("the wrapper (opentelemetry-instrument) cannot run in this Python: {error}"),
            text,
        ),
        fix: FIX_VERSION,
    })
}

fn permission_denied(lines: &[&str]) -> Option<Cause> {
    let line = lines.iter().find(|l| {
        l.contains("Permission denied")
            || l.contains("Read-only file system")
            || l.contains("PermissionError")
    })?;
    Some(Cause {
        kind: "the permission",
        detail: line.trim().to_owned(),
        fix: FIX_PERMISSION,
    })
}

/// The SDK's own start-up failure, with the error after it.
fn auto_initialize_failed(lines: &[&str]) -> Option<Cause> {
    let i = lines
        .iter()
        .position(|l| l.contains("Failed to auto initialize OpenTelemetry"))?;
    Some(Cause {
        kind: "a start-up error",
        detail: format!(
            "Failed to auto initialize OpenTelemetry: {}",
            error_line(lines, i + 1)
        ),
        fix: FIX_STARTUP,
    })
}

/// What the cluster says about the running pod, beyond its spec.
#[derive(Clone, Debug, Default)]
pub struct Logs {
    /// The app container's current log (its tail).
    pub current: Option<String>,
    /// The log of its last terminated instance, when it restarted.
    pub previous: Option<String>,
    /// The init container's log, when it failed.
    pub init: Option<String>,
}

/// Runtime checks (pure): did the app container start, and did the
/// instrumentation start in it? Names the cause when not: the interpreter,
/// the Python version, or the permission.
pub fn check_runtime(pod: &Pod, config: &Config, logs: &Logs) -> Vec<Check> {
    let mut checks = Vec::new();
    let Some(container) = target(pod, config) else {
        return checks;
    };
    let label = |what: &str| format!("{what} in container {}", container.name);
    if let Some(init_log) = &logs.init
        && let Some(cause) = classify(init_log)
    {
        checks.push(check(
            "init container could copy the instrumentation",
            false,
            format!("{}: {}", cause.kind, cause.detail),
            cause.fix,
        ));
    }
    let status = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|s| s.name == container.name));
    let Some(status) = status else {
        checks.push(Check {
            what: label("app started"),
            status: Status::Pending,
            detail: "no status yet".into(),
            fix: None,
        });
        return checks;
    };
    let running = status.state.as_ref().is_some_and(|s| s.running.is_some());
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref())
        .filter(|t| t.exit_code != 0);
    let waiting = status.state.as_ref().and_then(|s| s.waiting.as_ref());
    if let (false, Some(t)) = (running, last) {
        let reason = waiting
            .and_then(|w| w.reason.clone())
            .unwrap_or_else(|| "restarting".into());
        let (detail, fix) = restart_cause(&reason, t, status.restart_count, logs);
        checks.push(check(label("app started"), false, detail, fix));
        return checks;
    }
    if !running {
        checks.push(Check {
            what: label("app started"),
            status: Status::Pending,
            detail: waiting
                .and_then(|w| w.reason.clone())
                .unwrap_or_else(|| "not running yet".into()),
            fix: None,
        });
        return checks;
    }
    checks.push(check(label("app started"), true, "running", ""));
    checks.push(instrumentation_started(
        label("instrumentation started"),
        logs.current.as_deref(),
    ));
    checks
}

/// Why a container that exited non-zero restarts: its termination message
/// and previous log, classified; the detail and the fix.
fn restart_cause(
    reason: &str,
    terminated: &ContainerStateTerminated,
    restarts: i32,
    logs: &Logs,
) -> (String, &'static str) {
    let text = format!(
        "{}\n{}",
        terminated.message.clone().unwrap_or_default(),
        logs.previous.clone().unwrap_or_default()
    );
    let exit = terminated.exit_code;
    match classify(&text) {
        Some(cause) => (
            format!(
                "{reason}, exit {exit} ({restarts} restarts); cause: {}: {}",
                cause.kind, cause.detail
            ),
            cause.fix,
        ),
        None => (
            format!("{reason}, exit {exit} ({restarts} restarts): read kubectl logs --previous"),
            "compare with the pod without the webhook (annotation instrumentation.opentelemetry.io/inject-python: \"false\")",
        ),
    }
}

/// A running app's log: did the instrumentation start in it?
fn instrumentation_started(what: String, log: Option<&str>) -> Check {
    let Some(log) = log else {
        return Check {
            what,
            status: Status::Pending,
            detail: "could not read the container's log".into(),
            fix: None,
        };
    };
    // A running app's own "Permission denied" lines are not ours to judge.
    match classify(log).filter(|c| c.kind != "the permission" && c.kind != "the interpreter") {
        Some(cause) => check(
            what,
            false,
            format!("no: {}: {}", cause.kind, cause.detail),
            cause.fix,
        ),
        None => check(what, true, "no start-up error in the log", ""),
    }
}

/// Renders checklists; returns the text and whether every check passed (or is pending).
pub fn render(results: &[(String, Vec<Check>)]) -> (String, bool) {
    let mut out = String::new();
    let mut ok = true;
    for (title, checks) in results {
        let _ = writeln!(out, "{title}");
        for c in checks {
            let mark = match c.status {
                Status::Pass => "[ok]     ",
                Status::Pending => "[pending]",
                Status::Fail => {
                    ok = false;
                    "[FAIL]   "
                }
            };
            let _ = writeln!(out, "  {mark} {}: {}", c.what, c.detail);
            if let Some(fix) = &c.fix {
                let _ = writeln!(out, "            fix: {fix}");
            }
        }
    }
    let _ = writeln!(
        out,
        "{}",
        if ok {
            "verdict: instrumented"
        } else {
            "verdict: NOT instrumented correctly"
        }
    );
    (out, ok)
}

/// The label selector that lists a Deployment's pods: `matchLabels` and
/// `matchExpressions` both, as the Deployment controller reads it. An empty
/// selector is refused rather than listing every pod in the namespace.
fn pod_selector(deployment: &str, selector: Option<LabelSelector>) -> anyhow::Result<String> {
    let selector = selector.unwrap_or_default();
    let parsed = Selector::try_from(selector)
        .map_err(|e| anyhow::anyhow!("deployment {deployment}: spec.selector: {e}"))?;
    if parsed.selects_all() {
        anyhow::bail!("deployment {deployment}: spec.selector is empty; name a pod with --pod");
    }
    Ok(parsed.to_string())
}

pub enum Target {
    Pod(String),
    Deployment(String),
}

/// Fetches the pod(s) with the user's kubeconfig and checks them.
pub async fn verify(
    namespace: &str,
    target: &Target,
    config: &Config,
) -> anyhow::Result<(String, bool)> {
    let client = kube::Client::try_default().await?;
    let pods: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let found: Vec<Pod> = match target {
        Target::Pod(name) => vec![
            pods.get(name)
                .await
                .map_err(|e| anyhow::anyhow!("pod {namespace}/{name}: {e}"))?,
        ],
        Target::Deployment(name) => {
            let deployment = Api::<Deployment>::namespaced(client.clone(), namespace)
                .get(name)
                .await
                .map_err(|e| anyhow::anyhow!("deployment {namespace}/{name}: {e}"))?;
            let selector = pod_selector(
                &format!("{namespace}/{name}"),
                deployment.spec.map(|s| s.selector),
            )?;
            pods.list(&ListParams::default().labels(&selector))
                .await?
                .items
        }
    };
    if found.is_empty() {
        return Ok((
            format!(
                "no pods found for the deployment in {namespace}\nverdict: NOT instrumented correctly\n"
            ),
            false,
        ));
    }
    let mut results: Vec<(String, Vec<Check>)> = Vec::with_capacity(found.len());
    for pod in &found {
        let name = pod.metadata.name.as_deref().unwrap_or("?");
        let mut checks = check_pod(pod, config);
        checks.extend(node_runtime(&client, pod, config).await);
        let logs = fetch_logs(&pods, pod, config).await;
        checks.extend(check_runtime(pod, config, &logs));
        checks.extend(check_inside(&pods, pod, config).await);
        results.push((format!("Pod {namespace}/{name}"), checks));
    }
    Ok(render(&results))
}

/// What the app container's own Python reports about the instrumentation,
/// run with `-S` so that `sitecustomize` does not instrument (and export from)
/// the probe itself. argv[1] is the mount path.
const PROBE: &str = r#"
import json, os, sys
m = sys.argv[1]
r = {"python": "%d.%d.%d" % sys.version_info[:3], "executable": sys.executable}
r["copied"] = os.path.isfile(m + "/opentelemetry/instrumentation/auto_instrumentation/sitecustomize.py")
# The multi-version image keeps one site directory per CPython (py3.X); its
# sitecustomize front adds this interpreter's, which -S skipped.
v = os.path.join(m, "py%d.%d" % sys.version_info[:2])
if os.path.isdir(v):
    sys.path.append(v)
try:
    import opentelemetry.sdk.trace, opentelemetry.exporter.otlp.proto.http.trace_exporter
    r["loads"] = "ok"
except BaseException as e:
    r["loads"] = "%s: %s" % (type(e).__name__, e)
print(json.dumps(r))
"#;

/// The probe's answer.
#[derive(Debug, serde::Deserialize)]
struct Probe {
    python: String,
    executable: String,
    copied: bool,
    loads: String,
}

/// Interpreters to try, the container's own first (the command wrapper runs
/// that one, and an image may have no `python3`).
fn interpreters(container: &Container) -> Vec<String> {
    let own = container
        .command
        .iter()
        .flatten()
        .next()
        .filter(|c| crate::inject::command::is_python_interpreter(c))
        .cloned();
    own.into_iter()
        .chain(["python3".to_owned(), "python".to_owned()])
        .fold(Vec::new(), |mut all, i| {
            if !all.contains(&i) {
                all.push(i);
            }
            all
        })
}

/// Runs `command` in the container; `Ok(stdout)` when it exits 0.
async fn exec(
    pods: &Api<Pod>,
    pod: &str,
    container: &str,
    command: Vec<String>,
) -> Result<String, String> {
    use tokio::io::AsyncReadExt;
    let params = kube::api::AttachParams::default()
        .container(container)
        .stdout(true)
        .stderr(true);
    let mut process = pods
        .exec(pod, command, &params)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    let mut err = String::new();
    let (mut stdout, mut stderr) = (process.stdout(), process.stderr());
    let status = process.take_status();
    let read_out = async {
        if let Some(s) = stdout.as_mut() {
            let _ = s.read_to_string(&mut out).await;
        }
    };
    let read_err = async {
        if let Some(s) = stderr.as_mut() {
            let _ = s.read_to_string(&mut err).await;
        }
    };
    tokio::join!(read_out, read_err);
    let status = match status {
        Some(s) => s.await,
        None => None,
    };
    let _ = process.join().await;
    match status {
        Some(s) if s.status.as_deref() == Some("Success") => Ok(out),
        Some(s) => Err(format!(
            "{}{}",
            s.message.unwrap_or_default(),
            if err.is_empty() {
                String::new()
            } else {
                format!(" ({})", err.trim())
            }
        )),
        None => Err(format!("no exit status ({})", err.trim())),
    }
}

/// Checks inside the running app container, through exec: the instrumentation
/// was copied into the volume, and the container's own Python can load it.
/// Names the cause when it cannot: no interpreter, the Python version, or a
/// missing copy. Nothing when the container is not running; a `Pending`
/// check when exec itself is not allowed.
pub async fn check_inside(pods: &Api<Pod>, pod: &Pod, config: &Config) -> Vec<Check> {
    let Some(container) = target(pod, config) else {
        return Vec::new();
    };
    let running = pod
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|s| s.name == container.name))
        .is_some_and(|s| s.state.as_ref().is_some_and(|st| st.running.is_some()));
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    if !running || env(container, "PYTHONPATH").is_none() {
        return Vec::new();
    }
    let label = |what: &str| format!("{what} in container {} (exec)", container.name);
    let mut tried = Vec::new();
    for interpreter in interpreters(container) {
        let command = vec![
            interpreter.clone(),
            "-S".into(),
            "-c".into(),
            PROBE.into(),
            config.mount_path.clone(),
        ];
        match exec(pods, name, &container.name, command).await {
            Ok(out) => {
                let Ok(probe) = serde_json::from_str::<Probe>(out.trim()) else {
                    tried.push(format!("{interpreter}: unexpected answer {out:?}"));
                    continue;
                };
                return vec![
                    check(
                        label("instrumentation copied into the volume"),
                        probe.copied,
                        if probe.copied {
                            format!("{}/…/sitecustomize.py present", config.mount_path)
                        } else {
                            format!("{} holds no sitecustomize.py", config.mount_path)
                        },
                        "the init container's copy did not land: read its log (kubectl logs <pod> -c <init container>); a permission error means the volume or securityContext",
                    ),
                    check(
                        label("the app's Python loads the instrumentation"),
                        probe.loads == "ok",
                        format!(
                            "Python {} ({}): {}",
                            probe.python, probe.executable, probe.loads
                        ),
                        "the auto-instrumentation image must match the app's CPython minor version (and glibc vs musl: otel-python-platform); the app runs uninstrumented until it does",
                    ),
                ];
            }
            Err(e) if e.contains("Forbidden") || e.contains("forbidden") => {
                return vec![Check {
                    what: label("inside the container"),
                    status: Status::Pending,
                    detail: format!("exec not allowed: {e}"),
                    fix: None,
                }];
            }
            Err(e) => tried.push(format!("{interpreter}: {e}")),
        }
    }
    vec![check(
        label("a Python interpreter"),
        false,
        format!("none ran: {}", tried.join("; ")),
        "the container has no python3/python on PATH for the wrapper and sitecustomize: set commandWrapper.interpreter or fix the image",
    )]
}

/// The logs `check_runtime` reads: the app container's tail, its previous
/// instance's when it restarted, the init container's when it failed. A log
/// that cannot be read is left out (the check then stays pending).
async fn fetch_logs(pods: &Api<Pod>, pod: &Pod, config: &Config) -> Logs {
    let mut logs = Logs::default();
    let Some(name) = pod.metadata.name.as_deref() else {
        return logs;
    };
    let Some(container) = target(pod, config) else {
        return logs;
    };
    let params = |container: &str, previous: bool| LogParams {
        container: Some(container.to_owned()),
        previous,
        tail_lines: Some(400),
        limit_bytes: Some(256 * 1024),
        ..LogParams::default()
    };
    let status = pod.status.as_ref();
    let restarted = status
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|all| all.iter().find(|s| s.name == container.name))
        .is_some_and(|s| s.restart_count > 0);
    logs.current = pods.logs(name, &params(&container.name, false)).await.ok();
    if restarted {
        logs.previous = pods.logs(name, &params(&container.name, true)).await.ok();
    }
    let init_failed = status
        .and_then(|s| s.init_container_statuses.as_ref())
        .and_then(|all| all.iter().find(|s| s.name == config.init_container_name))
        .and_then(|s| {
            s.state
                .as_ref()?
                .terminated
                .as_ref()
                .or(s.last_state.as_ref()?.terminated.as_ref())
        })
        .is_some_and(|t| t.exit_code != 0);
    if init_failed {
        logs.init = pods
            .logs(name, &params(&config.init_container_name, false))
            .await
            .ok();
    }
    logs
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn requirement(key: &str, operator: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: operator.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| (*v).into()).collect()),
        }
    }

    #[test]
    fn a_selector_of_match_expressions_alone_selects_only_the_deployments_pods() {
        let selector = LabelSelector {
            match_expressions: Some(vec![
                requirement("app", "In", &["cxtm-logstream"]),
                requirement("canary", "DoesNotExist", &[]),
            ]),
            match_labels: None,
        };
        let got = pod_selector("cxtm/app", Some(selector)).expect("selector");
        assert_eq!(got, "app in (cxtm-logstream),!canary");
    }

    #[test]
    fn labels_and_expressions_are_both_kept() {
        let selector = LabelSelector {
            match_expressions: Some(vec![requirement("tier", "NotIn", &["db", "cache"])]),
            match_labels: Some([("app".to_owned(), "a".to_owned())].into()),
        };
        assert_eq!(
            pod_selector("cxtm/app", Some(selector)).expect("selector"),
            "app=a,tier notin (cache,db)"
        );
    }

    #[test]
    fn the_endpoint_check_reads_an_endpoint_with_a_path() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "app", "env": [
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://collector:4317/v1/traces"},
                {"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/protobuf"}
            ]}]}
        }))
        .expect("pod");
        let endpoint_check = |pod: &Pod| {
            check_pod(pod, &Config::default())
                .into_iter()
                .find(|c| c.what.contains("endpoint port"))
                .map(|c| c.status)
        };
        assert_eq!(endpoint_check(&pod), Some(Status::Fail));
        if let Some(env) = pod.spec.as_mut().and_then(|s| s.containers[0].env.as_mut()) {
            env[0].value = Some("http://collector:4318/v1/traces".into());
        }
        assert_eq!(endpoint_check(&pod), Some(Status::Pass));
    }

    #[test]
    fn an_empty_selector_is_refused_not_a_list_of_everything() {
        let err = pod_selector("cxtm/app", Some(LabelSelector::default()))
            .expect_err("empty")
            .to_string();
        assert!(err.contains("cxtm/app"), "{err}");
    }

    /// Logs as measured on the node (tests/e2e_runtime.rs).
    #[test]
    fn an_image_volume_pod_names_its_delivery_instead_of_missing_an_init_container() {
        let config = Config::default();
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app"},
            "spec": {
                "containers": [{"name": "app", "image": "app:1"}],
                "volumes": [{"name": config.volume_name, "image": {"reference": "otel:1"}}]
            }
        }))
        .expect("pod");
        let checks = check_pod(&pod, &config);
        assert_eq!(checks[0].what, "delivery imageVolume");
        assert_eq!(checks[0].status, Status::Pass);
        assert!(checks[0].detail.contains("otel:1"), "{:?}", checks[0]);
        assert!(
            !checks.iter().any(|c| c.what.starts_with("init container")),
            "{checks:?}"
        );
        let volume = checks
            .iter()
            .find(|c| c.what.starts_with("volume "))
            .expect("volume check");
        assert_eq!(
            (volume.status, volume.detail.as_str()),
            (Status::Pass, "image")
        );
    }

    #[test]
    fn image_volumes_need_containerd_2_1() {
        let pass = |runtime: &str| runtime_check("n", runtime).status == Status::Pass;
        assert!(pass("containerd://2.1.0"));
        assert!(pass("containerd://v2.4.2"));
        assert!(pass("containerd://3.0.0"));
        assert!(!pass("containerd://1.7.24"));
        assert!(!pass("containerd://2.0.5"));
        let old = runtime_check("node-a", "containerd://1.7.24");
        assert_eq!(old.status, Status::Fail);
        assert!(
            old.detail.contains("node-a runs containerd://1.7.24"),
            "{old:?}"
        );
        assert_eq!(runtime_check("n", "cri-o://1.34.0").status, Status::Pending);
    }

    #[test]
    fn classify_names_the_cause() {
        let wrapper_on_39 = "Error in sitecustomize; set PYTHONVERBOSE for traceback:\n\
            ImportError: cannot import name 'TypeAlias' from 'typing' (/usr/lib/python3.9/typing.py)\n\
            Traceback (most recent call last):\n  File \"/otel-auto-instrumentation/bin/opentelemetry-instrument\", line 5, in <module>\n\
            \x20   from opentelemetry.instrumentation.auto_instrumentation import run\n\
            ImportError: cannot import name 'TypeAlias' from 'typing' (/usr/lib/python3.9/typing.py)\n";
        let cause = classify(wrapper_on_39).expect("a cause");
        assert_eq!(cause.kind, "the Python version");
        assert!(cause.detail.contains("python3.9"), "{cause:?}");

        let no_python3 = "failed to create containerd task: failed to create shim task: OCI runtime create failed: \
            runc create failed: unable to start container process: exec: \"python3\": executable file not found in $PATH: unknown";
        let cause = classify(no_python3).expect("a cause");
        assert_eq!(cause.kind, "the interpreter");
        assert!(cause.detail.contains("python3"), "{cause:?}");

        let front = "otel-injector: auto-instrumentation not started: no build for Python 3.8 (/usr/bin/python3) \
            in /otel-auto-instrumentation (it has 3.9, 3.10); the application runs uninstrumented\nserving\n";
        let cause = classify(front).expect("a cause");
        assert_eq!(cause.kind, "the Python version");
        assert!(cause.detail.contains("Python 3.8"), "{cause:?}");

        let init = "cp: can't create '/otel-auto-instrumentation/bin': Permission denied\n";
        assert_eq!(classify(init).expect("a cause").kind, "the permission");

        assert_eq!(
            classify("runtime app: Python 3.11.2 on 127.0.0.1:8080\nINFO work id=1\n"),
            None
        );
    }
}
