//! Pods that really run: the control plane plus a real node (containerd,
//! runc, kubelet; tests/node/), the images built here without a registry
//! (tests/images/), otel-injector registered as the webhook, and an OTLP/HTTP
//! receiver that decodes what the injected Python processes send.
//!
//! One test, one node: kubelet owns fixed loopback ports, so the scenarios run
//! in sequence on the same node, each named in the output. Needs root, Go and
//! apt the first time; `OTEL_INJECTOR_SKIP_E2E=1` marks it ignored.

mod common;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use common::cluster::*;
use common::node::*;
use common::otlp::OtlpReceiver;
use serde_json::Value;

const INIT: &str = "opentelemetry-auto-instrumentation-python";
const LOGSTREAM_IMAGE: &str = "local/cxtm-logstream:25.2.0";
const WEB_IMAGE: &str = "local/cxtm-web:1.0.0";
/// Long enough for a BatchSpanProcessor (200 ms here) and a metric reader
/// (1 s) to flush twice: what has not arrived by then was never sent.
const QUIET: Duration = Duration::from_secs(3);
const TELEMETRY: Duration = Duration::from_secs(60);

struct Cluster {
    // Drop order is reverse declaration order: webhook, node, then plane.
    plane: ControlPlane,
    node: Option<Node>,
    webhook: Option<Webhook>,
    receiver: OtlpReceiver,
    /// The webhook's config file; kept while the webhook may restart.
    _config: tempfile::NamedTempFile,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.webhook.take();
        self.node.take();
    }
}

impl Cluster {
    fn apply(&self, deployment: &Value) {
        self.plane.apply(deployment);
    }
}

/// The seed's configuration, unchanged but for where the collector is: the
/// receiver on loopback instead of the team's Splunk agent.
fn config_for(receiver: &OtlpReceiver) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("config file");
    let text = format!(
        "exporter:\n  endpoint: {}\n  protocol: http/protobuf\n",
        receiver.endpoint()
    );
    std::io::Write::write_all(&mut file, text.as_bytes()).expect("write config");
    file
}

/// `NODE_TIMING_IMAGE_VOLUME=1`: the node runs containerd 2.x
/// (`NODE_CONTAINERD=2`) and the API server and kubelet the ImageVolume gate,
/// so [`timings`] also times `imageVolume` pods (docs/delivery.md). Off by
/// default: containerd 2 is a separate cold build.
fn image_volume_timings() -> bool {
    std::env::var("NODE_TIMING_IMAGE_VOLUME").is_ok_and(|v| v == "1")
}

fn start() -> Cluster {
    let images = [
        "pause",
        "autoinstrumentation-python",
        "autoinstrumentation-python-multi",
        "cxtm-logstream",
        "cxtm-web",
    ];
    let (plane, node) = if image_volume_timings() {
        Node::up_image_volume("node", &images)
    } else {
        let plane = ControlPlane::up("node");
        let node = Node::up_with_images(&plane, &images);
        (plane, node)
    };
    let receiver = OtlpReceiver::start();
    let config = config_for(&receiver);
    let config_path = config.path().to_str().expect("config path").to_owned();
    // Before the webhook starts, so its index watches Instrumentations from
    // the start ([`timings`] names one for our image).
    plane.install_instrumentation_crd();
    let webhook = Webhook::start(&plane, &["--config", &config_path]);
    plane.namespace("cxtm", &[]);
    plane.namespace("elsewhere", &[]);
    plane.register_webhook(&webhook.url());
    Cluster {
        plane,
        node: Some(node),
        webhook: Some(webhook),
        receiver,
        _config: config,
    }
}

fn init_count(pod: &Value) -> usize {
    init_container_count(pod, INIT)
}

fn assert_init_completed(pod: &Value) {
    common::node::assert_init_completed(pod, INIT);
}

/// Sends `ids` to `/work?id=` of a logstream app; every request must succeed.
fn drive_logstream(app: &App, ids: &[String]) {
    for id in ids {
        let (code, body) = eventually(
            &format!("{} answers /work", app.name),
            Duration::from_secs(20),
            || app.get(&format!("/work?id={id}")),
        );
        assert_eq!(code, 200, "{} /work?id={id}: {body}", app.name);
    }
}

/// The spans whose attributes mention `/ping?id=<id>`: the one outbound call
/// each logstream request makes.
fn spans_for(receiver: &OtlpReceiver, id: &str) -> Vec<common::otlp::Span> {
    let needle = format!("/ping?id={id}");
    receiver
        .spans()
        .into_iter()
        .filter(|s| s.attributes.values().any(|v| v.contains(&needle)))
        .collect()
}

/// What an opted-out or unseen pod must not have: with none of it, it could
/// not send anything, so "sends nothing" checks the cause, not the symptom
/// (an uninjected pod never had the receiver's endpoint to send to).
const APP_OWN_OTEL_ENV: [&str; 3] = [
    "OTEL_BSP_SCHEDULE_DELAY",
    "OTEL_BLRP_SCHEDULE_DELAY",
    "OTEL_METRIC_EXPORT_INTERVAL",
];

fn assert_untouched(pod: &Value, what: &str) {
    assert_eq!(
        init_count(pod),
        0,
        "{what}: an init container: {}",
        pod["spec"]
    );
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        !volumes.iter().any(|v| v["name"]
            .as_str()
            .is_some_and(|n| n.contains("otel-auto-instrumentation"))),
        "{what}: our volume: {volumes:?}"
    );
    for c in pod["spec"]["containers"].as_array().expect("containers") {
        let ours: Vec<&str> = c["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v["name"].as_str())
            .filter(|n| n.starts_with("OTEL_") || *n == "PYTHONPATH")
            // App::adapt's own exporter timings, set on every test app.
            .filter(|n| !APP_OWN_OTEL_ENV.contains(n))
            .collect();
        assert!(ours.is_empty(), "{what}: env {ours:?} in {}", c["name"]);
        let wrapped = c["command"]
            .to_string()
            .contains("opentelemetry-instrument");
        assert!(!wrapped, "{what}: wrapped command {}", c["command"]);
    }
    let status = &pod["metadata"]["annotations"]["otel-injector.io/status"];
    assert_ne!(status, "injected", "{what}: status annotation");
}

fn pod_name(pod: &Value) -> String {
    pod["metadata"]["name"]
        .as_str()
        .expect("pod name")
        .to_owned()
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
fn injected_pods_run_and_send_telemetry() {
    let started = Instant::now();
    let mut cluster = start();
    eprintln!("cluster ready in {:.1}s", started.elapsed().as_secs_f64());

    let done = |what: &str| {
        eprintln!(
            "scenario: {what}: ok ({:.1}s)",
            started.elapsed().as_secs_f64()
        )
    };
    let seed = seed_deployment(&cluster);
    done("seed deployment");
    gunicorn_workers(&cluster);
    done("gunicorn, two workers");
    let quiet = opt_outs_send_nothing(&cluster);
    done("opt-outs");
    verify_live_pods(&cluster, &quiet);
    done("verify");
    webhook_down_during_rollout(&mut cluster, &seed);
    done("webhook down during a rollout");
    timings(&cluster);
    // Everything the pods sent was decodable OTLP on the right paths.
    let errors = cluster.receiver.errors();
    assert!(
        errors.is_empty(),
        "the receiver refused requests: {errors:?}"
    );
    eprintln!(
        "all node scenarios passed in {:.1}s",
        started.elapsed().as_secs_f64()
    );
}

/// tests/fixtures/offline/seed-deployment.yaml with the image, port and
/// hostNetwork adjusted for this node. Its `command` (`python run.py`) is
/// wrapped with opentelemetry-instrument.
fn seed_deployment(cluster: &Cluster) -> App {
    let text = std::fs::read_to_string(repo().join("tests/fixtures/offline/seed-deployment.yaml"))
        .expect("seed deployment");
    let manifest: Value = serde_yaml_ng::from_str(&text).expect("seed deployment parses");
    let app = App::new("cxtm-logstream", "cxtm", LOGSTREAM_IMAGE).command(&["python", "run.py"]);
    cluster.apply(&app.adapt(manifest));
    let pod = rollout(&cluster.plane, "cxtm", "cxtm-logstream");

    assert_eq!(
        pod["spec"]["nodeName"], "localhost",
        "scheduled on the labelled node"
    );
    assert_eq!(pod["spec"]["nodeSelector"]["ao-node"], "observability");
    assert_eq!(init_count(&pod), 1, "one init container: {}", pod["spec"]);
    assert_init_completed(&pod);
    let command = &pod["spec"]["containers"][0]["command"];
    assert_eq!(
        command[4], "/otel-auto-instrumentation/bin/opentelemetry-instrument",
        "the seed's python command is wrapped, behind the guard: {command}"
    );

    let ids: Vec<String> = (0..5).map(|i| format!("seed-{i}")).collect();
    drive_logstream(&app, &ids);
    let receiver = &cluster.receiver;
    for id in &ids {
        receiver.wait_for(&format!("the span of request {id}"), TELEMETRY, |r| {
            (!spans_for(r, id).is_empty()).then_some(())
        });
    }
    // What arrives later would be a second instrumentation of the same call.
    std::thread::sleep(QUIET);
    for id in &ids {
        let spans = spans_for(receiver, id);
        assert_eq!(
            spans.len(),
            1,
            "request {id} must yield exactly one span (wrapper and sitecustomize must not both instrument): {spans:#?}"
        );
        let resource = &spans[0].resource;
        for (key, want) in [
            ("service.name", "cxtm-logstream"),
            ("service.namespace", "cxtm"),
            ("service.version", "25.2.0"),
            ("deployment.environment", "production"),
        ] {
            assert_eq!(
                resource.get(key).map(String::as_str),
                Some(want),
                "{key} in {resource:?}"
            );
        }
    }
    receiver.wait_for("the app's log lines as OTLP log records", TELEMETRY, |r| {
        let logs = r.logs();
        ids.iter()
            .all(|id| {
                logs.iter().any(|l| {
                    l.body.contains(id.as_str())
                        && l.resource.get("service.name").map(String::as_str)
                            == Some("cxtm-logstream")
                })
            })
            .then_some(())
    });
    receiver.wait_for("metrics from cxtm-logstream", TELEMETRY, |r| {
        r.metrics()
            .iter()
            .any(|m| m.resource.get("service.name").map(String::as_str) == Some("cxtm-logstream"))
            .then_some(())
    });
    app
}

/// cxtm-web: Flask under gunicorn with two workers, started by the image's
/// ENTRYPOINT (no `command`, so nothing is wrapped: sitecustomize does the
/// work). Server spans with `http.route` must come from both workers, for
/// requests made after the fork.
fn gunicorn_workers(cluster: &Cluster) {
    let app = App::new("cxtm-web", "cxtm", WEB_IMAGE);
    cluster.apply(&app.deployment());
    let pod = rollout(&cluster.plane, "cxtm", "cxtm-web");
    assert_eq!(init_count(&pod), 1);
    assert_init_completed(&pod);
    assert!(
        pod["spec"]["containers"][0]["command"].is_null(),
        "no command, so no wrapper: the image's entrypoint runs"
    );

    // Concurrent requests, each held 0.2 s by the app, spread over both workers.
    let mut pids = BTreeSet::new();
    let mut item = 0u32;
    let deadline = Instant::now() + Duration::from_secs(60);
    while pids.len() < 2 {
        assert!(
            Instant::now() < deadline,
            "gunicorn never answered from two workers: {pids:?}"
        );
        let batch: Vec<u32> = (item..item + 8).collect();
        item += 8;
        let answers: Vec<(u16, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = batch
                .iter()
                .map(|i| {
                    let app = &app;
                    s.spawn(move || app.get(&format!("/items/{i}")))
                })
                .collect();
            handles
                .into_iter()
                .filter_map(|h| h.join().ok().flatten())
                .collect()
        });
        for (code, body) in answers {
            assert_eq!(code, 200, "{body}");
            let v: Value = serde_json::from_str(&body).expect("JSON answer");
            pids.insert(v["pid"].to_string());
        }
    }
    let receiver = &cluster.receiver;
    let worker_pids = receiver.wait_for(
        "server spans with http.route from both workers",
        TELEMETRY,
        |r| {
            let seen: BTreeSet<String> = r
                .spans()
                .iter()
                .filter(|s| s.resource.get("service.name").map(String::as_str) == Some("cxtm-web"))
                .filter(|s| {
                    s.attributes.get("http.route").map(String::as_str)
                        == Some("/items/<int:item_id>")
                })
                .filter_map(|s| s.attributes.get("app.worker.pid").cloned())
                .collect();
            (seen == pids).then_some(seen)
        },
    );
    std::thread::sleep(QUIET);
    for i in 0..item {
        let target = format!("/items/{i}");
        let n = receiver
            .spans()
            .iter()
            .filter(|s| s.resource.get("service.name").map(String::as_str) == Some("cxtm-web"))
            .filter(|s| {
                s.attributes
                    .values()
                    .any(|v| v == &target || v.ends_with(&target))
            })
            .filter(|s| s.attributes.contains_key("http.route"))
            .count();
        assert_eq!(n, 1, "request {target} must yield exactly one server span");
    }
    eprintln!("  gunicorn worker pids with spans: {worker_pids:?}");
}

/// A pod in a namespace the webhook is not called for, and a pod in cxtm
/// annotated `inject-python: "false"`: both run and serve, neither sends
/// anything. Returns the opted-out cxtm pod's name.
fn opt_outs_send_nothing(cluster: &Cluster) -> String {
    let elsewhere =
        App::new("quiet-elsewhere", "elsewhere", LOGSTREAM_IMAGE).command(&["python", "run.py"]);
    let opted_out = App::new("quiet-optout", "cxtm", LOGSTREAM_IMAGE)
        .command(&["python", "run.py"])
        .pod_annotation(INJECT, "false");
    let mut quiet_pod = String::new();
    for app in [&elsewhere, &opted_out] {
        cluster.apply(&app.deployment());
        let pod = rollout(&cluster.plane, &app.namespace, &app.name);
        assert_untouched(&pod, &app.name);
        drive_logstream(app, &[format!("{}-0", app.name), format!("{}-1", app.name)]);
        quiet_pod = pod_name(&pod);
    }
    std::thread::sleep(QUIET);
    let receiver = &cluster.receiver;
    for app in [&elsewhere, &opted_out] {
        assert!(
            spans_for(receiver, &format!("{}-0", app.name)).is_empty(),
            "{} sent spans",
            app.name
        );
        assert!(
            !receiver.services().contains(&app.name),
            "{} sent telemetry: {:?}",
            app.name,
            receiver.services()
        );
    }
    quiet_pod
}

/// `otel-injector verify` against the live pods, with the cluster's kubeconfig.
fn verify_live_pods(cluster: &Cluster, uninstrumented_pod: &str) {
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_otel-injector"))
            .arg("verify")
            .args(args)
            .env("KUBECONFIG", cluster.plane.var("KUBECONFIG"))
            .env("NO_PROXY", "127.0.0.1,localhost")
            .output()
            .expect("run otel-injector verify")
    };
    let ok = run(&["-n", "cxtm", "--deployment", "cxtm-logstream"]);
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "verify of the injected Deployment failed:\n{text}\n{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(text.contains("verdict: instrumented"), "{text}");
    // The checks inside the running container really ran, through exec.
    for line in [
        "[ok]      instrumentation copied into the volume in container cxtm-logstream (exec)",
        "[ok]      the app's Python loads the instrumentation in container cxtm-logstream (exec): Python 3.11",
    ] {
        assert!(text.contains(line), "missing {line:?} in:\n{text}");
    }

    let bad = run(&["-n", "cxtm", "--pod", uninstrumented_pod]);
    let text = String::from_utf8_lossy(&bad.stdout);
    assert!(
        !bad.status.success(),
        "verify of an uninstrumented pod must fail:\n{text}"
    );
    assert!(
        text.contains("[FAIL]") && text.contains("no auto-instrumentation init container"),
        "verify must say what is missing:\n{text}"
    );
}

/// The webhook goes away while the seed's Deployment rolls: the new pod still
/// starts (failurePolicy Ignore), uninstrumented. With the webhook back, a
/// `kubectl rollout restart` gives a pod instrumented exactly once.
fn webhook_down_during_rollout(cluster: &mut Cluster, app: &App) {
    let webhook = cluster.webhook.as_mut().expect("webhook");
    webhook.kill();
    cluster.plane.kubectl(
        &[
            "rollout",
            "restart",
            "-n",
            "cxtm",
            "deployment/cxtm-logstream",
        ],
        None,
    );
    let pod = rollout(&cluster.plane, "cxtm", "cxtm-logstream");
    assert_untouched(&pod, "webhook down: the pod starts uninstrumented");
    drive_logstream(app, &["down-0".to_owned()]);
    std::thread::sleep(QUIET);
    assert!(
        spans_for(&cluster.receiver, "down-0").is_empty(),
        "an uninstrumented pod sent spans"
    );

    let plane = &cluster.plane;
    let webhook = cluster.webhook.as_mut().expect("webhook");
    webhook.restart(plane);
    // The restarted webhook listens on the same port the API server knows.
    plane.kubectl(
        &[
            "rollout",
            "restart",
            "-n",
            "cxtm",
            "deployment/cxtm-logstream",
        ],
        None,
    );
    let pod = rollout(plane, "cxtm", "cxtm-logstream");
    assert_eq!(
        init_count(&pod),
        1,
        "instrumented exactly once after the restart"
    );
    assert_init_completed(&pod);
    let ids: Vec<String> = (0..3).map(|i| format!("back-{i}")).collect();
    drive_logstream(app, &ids);
    for id in &ids {
        cluster
            .receiver
            .wait_for(&format!("the span of {id}"), TELEMETRY, |r| {
                (!spans_for(r, id).is_empty()).then_some(())
            });
    }
    std::thread::sleep(QUIET);
    for id in &ids {
        assert_eq!(
            spans_for(&cluster.receiver, id).len(),
            1,
            "one span for {id}"
        );
    }
}

/// One kind of pod [`timings`] starts: a column of its table.
struct Kind {
    /// Column heading (the legend under the table spells it out).
    label: &'static str,
    legend: &'static str,
    annotations: &'static [(&'static str, &'static str)],
    command: &'static [&'static str],
    delivery: Delivery,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Plain,
    InitContainer,
    ImageVolume,
}

const INJECT: &str = "instrumentation.opentelemetry.io/inject-python";
const DELIVERY: &str = "otel-injector.io/delivery";
const RUN: &[&str] = &["python", "run.py"];
/// The Instrumentation [`timings`] creates for our own image.
const OURS: &str = "ours";

/// Every kind [`timings`] compares, in the order they start in each round.
/// "op" is the operator's image (the default `image`: timestamp pycs, made
/// stale by the init container's `cp -r`); "ours" is images/autoinstrumentation-python
/// (issue 24 items 3 and 4: unchecked-hash pycs, no pip bookkeeping).
const KINDS: &[Kind] = &[
    Kind {
        label: "plain",
        legend: "not injected (inject-python: \"false\")",
        annotations: &[(INJECT, "false")],
        command: RUN,
        delivery: Delivery::Plain,
    },
    Kind {
        label: "init/op",
        legend: "initContainer, the operator's image (the default)",
        annotations: &[],
        command: RUN,
        delivery: Delivery::InitContainer,
    },
    Kind {
        label: "init/ours",
        legend: "initContainer, our multi-version image",
        annotations: &[(INJECT, OURS)],
        command: RUN,
        delivery: Delivery::InitContainer,
    },
    // The seed's bare wrapper (no guard) is the default injected pod with the
    // seed's hand-made command already in it, so the webhook does not wrap it
    // again: what the guard's `-S` saves shows in app started -> Ready.
    Kind {
        label: "bare/op",
        legend: "initContainer, operator image, the seed's hand-made wrapper",
        annotations: &[],
        command: &[
            "python3",
            "/otel-auto-instrumentation/bin/opentelemetry-instrument",
            "python",
            "run.py",
        ],
        delivery: Delivery::InitContainer,
    },
    Kind {
        label: "vol/op",
        legend: "imageVolume, the operator's image",
        annotations: &[(DELIVERY, "imageVolume")],
        command: RUN,
        delivery: Delivery::ImageVolume,
    },
    Kind {
        label: "vol/ours",
        legend: "imageVolume, our multi-version image",
        annotations: &[(INJECT, OURS), (DELIVERY, "imageVolume")],
        command: RUN,
        delivery: Delivery::ImageVolume,
    },
];

/// The rows of [`timings`]' table, in print order.
const PHASES: [&str; 7] = [
    "create -> init container done",
    "init done -> app started",
    "create -> app started",
    "app started -> Ready",
    "create -> Ready",
    "Ready -> first span",
    "create -> first span",
];

/// An Instrumentation that gives the pods naming it our multi-version image,
/// the same exporter as the webhook's config otherwise.
fn our_image_instrumentation(receiver: &OtlpReceiver) -> Value {
    serde_json::json!({
        "apiVersion": "opentelemetry.io/v1alpha1",
        "kind": "Instrumentation",
        "metadata": {"name": OURS, "namespace": "cxtm"},
        "spec": {
            "exporter": {"endpoint": receiver.endpoint()},
            "python": {
                "image": MULTI_AUTO_IMAGE,
                "env": [{"name": "OTEL_EXPORTER_OTLP_PROTOCOL", "value": "http/protobuf"}],
            },
        },
    })
}

/// Issue 24's measure (never asserted): pod create → Ready for every
/// [`KINDS`], split into create → init done → app started → Ready, then
/// Ready → first span and the app's RSS. `NODE_TIMING_RUNS` (default 3)
/// rounds, one pod at a time, kinds alternating; medians printed.
fn timings(cluster: &Cluster) {
    let runs: usize = std::env::var("NODE_TIMING_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3);
    cluster.apply(&our_image_instrumentation(&cluster.receiver));
    let kinds: Vec<&Kind> = KINDS
        .iter()
        .filter(|k| k.delivery != Delivery::ImageVolume || image_volume_timings())
        .collect();
    let watch = PodWatch::start(&cluster.plane, "cxtm");
    // samples[kind][phase], and the app's RSS per kind.
    let mut samples = vec![vec![Vec::new(); PHASES.len()]; kinds.len()];
    let mut rss: Vec<Vec<u64>> = vec![Vec::new(); kinds.len()];
    for run in 0..runs {
        for (k, kind) in kinds.iter().enumerate() {
            let name = format!("timing-{}-{run}", kind.label.replace('/', "-"));
            let mut app = App::new(&name, "cxtm", LOGSTREAM_IMAGE).command(kind.command);
            for (key, value) in kind.annotations {
                app = app.pod_annotation(key, value);
            }
            cluster.apply(&app.deployment());
            let pod = rollout(&cluster.plane, "cxtm", &name);
            let phases = time_pod(cluster, &watch, kind, &app, &pod);
            for (into, value) in samples[k].iter_mut().zip(phases) {
                into.extend(value);
            }
            rss[k].extend(listener_rss_kib(app.port));
            cluster.plane.kubectl(
                &["delete", "deployment", "-n", "cxtm", &name, "--wait=false"],
                None,
            );
        }
    }
    print_timings(runs, &kinds, samples, rss);
}

/// The [`PHASES`] of one Ready pod of `kind`, `None` where a phase does not
/// apply. Checks first that the pod got the delivery it was timed for (a
/// fallback would time the wrong thing), and for injected pods sends one
/// request and waits for its span.
fn time_pod(
    cluster: &Cluster,
    watch: &PodWatch,
    kind: &Kind,
    app: &App,
    pod: &Value,
) -> [Option<Duration>; 7] {
    let t = eventually(
        "the watch saw the pod Ready",
        Duration::from_secs(10),
        || {
            let t = watch.get(&pod_name(pod));
            (t.created.is_some() && t.started.is_some() && t.ready.is_some()).then_some(t)
        },
    );
    let (created, started, ready) = (
        t.created.expect("created"),
        t.started.expect("started"),
        t.ready.expect("ready"),
    );
    let init_done = match kind.delivery {
        Delivery::InitContainer => Some(
            t.init_done
                .expect("the watch saw the init container complete"),
        ),
        Delivery::ImageVolume => {
            assert_image_volume_delivery(pod);
            None
        }
        Delivery::Plain => None,
    };
    if kind.annotations.contains(&(INJECT, OURS)) {
        assert_eq!(
            pod_auto_image(pod).as_deref(),
            Some(MULTI_AUTO_IMAGE),
            "{} delivers our image",
            kind.label
        );
    }
    let id = format!("{}-first", pod_name(pod));
    drive_logstream(app, std::slice::from_ref(&id));
    let (to_span, created_to_span) = if kind.delivery == Delivery::Plain {
        (None, None)
    } else {
        cluster.receiver.wait_for("the first span", TELEMETRY, |r| {
            (!spans_for(r, &id).is_empty()).then_some(())
        });
        (Some(ready.elapsed()), Some(created.elapsed()))
    };
    [
        init_done.map(|d| d - created),
        init_done.map(|d| started.saturating_duration_since(d)),
        Some(started - created),
        Some(ready.saturating_duration_since(started)),
        Some(ready - created),
        to_span,
        created_to_span,
    ]
}

/// The image the pod's instrumentation comes from: its init container's, or
/// its image volume's.
fn pod_auto_image(pod: &Value) -> Option<String> {
    let spec = &pod["spec"];
    let init = spec["initContainers"].as_array().into_iter().flatten();
    let volumes = spec["volumes"].as_array().into_iter().flatten();
    init.filter(|c| c["name"] == INIT)
        .map(|c| &c["image"])
        .chain(volumes.map(|v| &v["image"]["reference"]))
        .find_map(|i| i.as_str().map(str::to_owned))
}

fn print_timings(
    runs: usize,
    kinds: &[&Kind],
    samples: Vec<Vec<Vec<Duration>>>,
    rss: Vec<Vec<u64>>,
) {
    eprintln!("timings, medians of {runs} pod(s) each (ms):");
    let mut header = format!("  {:<32}", "");
    for kind in kinds {
        header.push_str(&format!(" {:>10}", kind.label));
    }
    eprintln!("{header}");
    let mut columns: Vec<Vec<String>> = samples
        .into_iter()
        .map(|phases| {
            phases
                .into_iter()
                .map(|xs| match xs.is_empty() {
                    true => "-".to_owned(),
                    false => median(xs).as_millis().to_string(),
                })
                .collect()
        })
        .collect();
    for (p, phase) in PHASES.iter().enumerate() {
        let mut line = format!("  {phase:<32}");
        for column in &mut columns {
            line.push_str(&format!(" {:>10}", std::mem::take(&mut column[p])));
        }
        eprintln!("{line}");
    }
    // RSS is read from /proc and may be missing: a figure, never a condition.
    let mut line = format!("  {:<32}", "app RSS after one request (MiB)");
    for mut kib in rss {
        kib.sort_unstable();
        let cell = kib
            .get(kib.len() / 2)
            .map_or("-".to_owned(), |k| format!("{:.1}", *k as f64 / 1024.0));
        line.push_str(&format!(" {cell:>10}"));
    }
    eprintln!("{line}");
    for kind in kinds {
        eprintln!("  {:<10} {}", kind.label, kind.legend);
    }
}

/// An `imageVolume` pod on this node (containerd 2, gates on) must really
/// have been given the image volume: a fallback to the init container would
/// time the wrong thing.
fn assert_image_volume_delivery(pod: &Value) {
    assert_eq!(init_count(pod), 0, "imageVolume pod has no init container");
    let volumes = pod["spec"]["volumes"].as_array().expect("volumes");
    assert!(
        volumes.iter().any(|v| v["image"]["reference"].is_string()),
        "imageVolume pod has an image volume: {volumes:?}"
    );
}

/// Resident memory of the process listening on `port` (hostNetwork pods share
/// the host's network namespace, so `ss` sees their listeners), read from
/// `/proc/<pid>/status`. `None` when it cannot be read: RSS is a figure to
/// print, never a condition of the test.
fn listener_rss_kib(port: u16) -> Option<u64> {
    let out = std::process::Command::new("ss")
        .args(["-Hltnp", &format!("sport = :{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let pid = text.split("pid=").nth(1)?.split(',').next()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}
