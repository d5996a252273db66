//! No pod left behind (issue 22), on the real node: the fleet reconciler
//! catches up a Deployment created before the webhook (only when asked),
//! rolls back an app that crash-loops only when instrumented (and brings
//! instrumentation back when the annotation is removed), restores one that
//! crashes without us too, and its gauge agrees with what kubectl shows.
//!
//! One test, one node (kubelet owns fixed ports): the scenarios run in
//! sequence, each named in the output. `OTEL_INJECTOR_SKIP_E2E=1` marks it
//! ignored.

mod common;

use std::time::{Duration, Instant};

use common::cluster::*;
use common::node::*;
use serde_json::Value;

const INIT: &str = "opentelemetry-auto-instrumentation-python";
const IMAGE: &str = "local/cxtm-logstream:25.2.0";
const ROLLED_BACK: &str = "otel-injector.io/rolled-back";
const CRASHES_UNINSTRUMENTED: &str = "otel-injector.io/crashes-uninstrumented";
/// Generous: a crash loop shows after two crashes and a 10 s back-off, a
/// Lease taken over from a killed webhook after 15 s.
const WAIT: Duration = Duration::from_secs(240);

/// The webhook's config: the seed's, exporting to a closed loopback port
/// (the apps here are judged by running, not by their telemetry), the
/// reconciler looking every second, catch-up as asked.
fn write_config(file: &std::path::Path, catch_up: bool) {
    write_config_with(file, catch_up, 1);
}

fn write_config_with(file: &std::path::Path, catch_up: bool, max_concurrent: u32) {
    let text = format!(
        "exporter:\n  endpoint: http://127.0.0.1:9\n  protocol: http/protobuf\n\
         fleet:\n  resyncSeconds: 1\n  catchUp:\n    enabled: {catch_up}\n    maxConcurrent: {max_concurrent}\n"
    );
    std::fs::write(file, text).expect("write config");
}

/// A logstream app whose command exits 3 at start when `CRASH_WHEN` says
/// so: `instrumented` (the instrumentation's PYTHONPATH is present) or
/// `always`; otherwise it runs `run.py`.
fn app(name: &str, crash_when: &str) -> Value {
    let script = "import os, runpy, sys\n\
                  when = os.environ.get('CRASH_WHEN', 'never')\n\
                  ours = '/otel-auto-instrumentation' in os.environ.get('PYTHONPATH', '')\n\
                  if when == 'always' or (when == 'instrumented' and ours):\n\
                  \x20   print('refusing to start: CRASH_WHEN=%s instrumented=%s' % (when, ours), flush=True)\n\
                  \x20   sys.exit(3)\n\
                  runpy.run_path('run.py', run_name='__main__')\n";
    let app = App::new(name, "cxtm", IMAGE).command(&["python", "-c", script]);
    let mut deployment = app.deployment();
    let env = &mut deployment["spec"]["template"]["spec"]["containers"][0]["env"];
    if let Some(list) = env.as_array_mut() {
        list.push(serde_json::json!({"name": "CRASH_WHEN", "value": crash_when}));
    }
    deployment
}

/// A control plane, a node with the images these tests run, and namespace
/// cxtm. Bind as `let (plane, _node)`: the node is dropped first.
fn cluster_with_cxtm(name: &str) -> (ControlPlane, Node) {
    let plane = ControlPlane::up(name);
    let node = Node::up_with_images(
        &plane,
        &["pause", "autoinstrumentation-python", "cxtm-logstream"],
    );
    plane.namespace("cxtm", &[]);
    (plane, node)
}

fn pods(plane: &ControlPlane, name: &str) -> Vec<Value> {
    let out = plane
        .try_kubectl(
            &[
                "get",
                "pods",
                "-n",
                "cxtm",
                "-l",
                &format!("app={name}"),
                "-o",
                "json",
            ],
            None,
        )
        .unwrap_or_default();
    let list: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .cloned()
        .collect()
}

fn deployment(plane: &ControlPlane, name: &str) -> Value {
    let out = plane.kubectl(
        &["get", "deployment", "-n", "cxtm", name, "-o", "json"],
        None,
    );
    serde_json::from_str(&out).expect("deployment json")
}

fn annotation(object: &Value, key: &str) -> Option<String> {
    object["metadata"]["annotations"][key]
        .as_str()
        .map(str::to_owned)
}

fn ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The state of a pod of cxtm as kubectl shows it, read from the pod alone
/// (every pod here is in scope): the init container, else the rollback
/// annotation its template gave it, else missed.
fn kubectl_state(pod: &Value) -> &'static str {
    if init_container_count(pod, INIT) > 0 {
        "instrumented"
    } else if annotation(pod, ROLLED_BACK).is_some() {
        "rolled_back"
    } else {
        "missed"
    }
}

/// `otel_injector_pods{namespace="cxtm",state=...}` from the webhook's /metrics.
fn gauge(webhook: &Webhook, state: &str) -> Option<i64> {
    let series = format!("otel_injector_pods{{namespace=\"cxtm\",state=\"{state}\"}} ");
    webhook
        .metrics()
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str()))
        .and_then(|v| v.trim().parse().ok())
}

/// Waits until the gauge equals, per state, what kubectl shows for every
/// live pod of cxtm, with the cluster settled (no pod terminating).
fn assert_gauge_matches_kubectl(plane: &ControlPlane, webhook: &Webhook) {
    eventually("the gauge to equal kubectl", WAIT, || {
        let items = settled_pods(plane)?;
        let mut want = std::collections::BTreeMap::new();
        for pod in &items {
            *want.entry(kubectl_state(pod)).or_insert(0i64) += 1;
        }
        let states = [
            "instrumented",
            "missed",
            "rolled_back",
            "refused",
            "opted_out",
        ];
        let agree = states
            .iter()
            .all(|s| gauge(webhook, s) == Some(*want.get(s).unwrap_or(&0)));
        agree.then_some(())
    });
}

fn events(plane: &ControlPlane, reason: &str, name: &str) -> Vec<Value> {
    let out = plane
        .try_kubectl(
            &["get", "events.events.k8s.io", "-n", "cxtm", "-o", "json"],
            None,
        )
        .unwrap_or_default();
    let list: Value = serde_json::from_str(&out).unwrap_or(Value::Null);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["reason"] == reason && e["regarding"]["name"] == name)
        .cloned()
        .collect()
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
fn no_pod_left_behind() {
    let started = Instant::now();
    let (plane, _node) = cluster_with_cxtm("fleet");
    let done = |what: &str| {
        eprintln!(
            "scenario: {what}: ok ({:.1}s)",
            started.elapsed().as_secs_f64()
        )
    };

    // A Deployment created before the webhook exists.
    plane.apply(&app("early", "never"));
    let before = rollout(&plane, "cxtm", "early");
    assert_eq!(init_container_count(&before, INIT), 0, "no webhook yet");

    let config = tempfile::NamedTempFile::new().expect("config file");
    write_config(config.path(), false);
    let config_path = config.path().to_str().expect("path").to_owned();
    let mut webhook = Webhook::start(&plane, &["--config", &config_path]);
    plane.register_webhook(&webhook.url());

    // Catch-up off: counted missed, left alone.
    eventually("early counted missed", WAIT, || {
        (gauge(&webhook, "missed") == Some(1)).then_some(())
    });
    assert_gauge_matches_kubectl(&plane, &webhook);
    let uid = |p: &Value| p["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let still = newest_pod(&plane, "cxtm", "early").expect("early pod");
    assert_eq!(
        uid(&still),
        uid(&before),
        "catch-up is off: the pod is left alone"
    );
    assert!(
        annotation(
            &deployment(&plane, "early")["spec"]["template"],
            "otel-injector.io/restartedAt"
        )
        .is_none(),
        "catch-up is off: the template is untouched"
    );
    done("catch-up off: a pod created before install is counted missed and left alone");

    // Catch-up on: restarted, instrumented, Ready.
    write_config(config.path(), true);
    webhook.restart(&plane);
    let caught = eventually("early caught up, instrumented and Ready", WAIT, || {
        let pods = pods(&plane, "early");
        match pods.as_slice() {
            [p] if init_container_count(p, INIT) == 1 && ready(p) => Some(p.clone()),
            _ => None,
        }
    });
    assert_ne!(uid(&caught), uid(&before));
    assert_eq!(init_container_count(&caught, INIT), 1, "injected once");
    assert!(
        !events(&plane, "InstrumentationCatchUp", "early").is_empty(),
        "catch-up Event"
    );
    assert_gauge_matches_kubectl(&plane, &webhook);
    done("catch-up on: the Deployment comes back instrumented and Ready");

    // Crashes only when instrumented: rolled back, serves uninstrumented.
    plane.apply(&app("fragile", "instrumented"));
    let applied = Instant::now();
    let mut first_crash: Option<Instant> = None;
    let reason = eventually("fragile rolled back", WAIT, || {
        if first_crash.is_none()
            && pods(&plane, "fragile")
                .iter()
                .any(|p| p["status"]["containerStatuses"][0]["restartCount"].as_i64() > Some(0))
        {
            first_crash = Some(Instant::now());
        }
        annotation(&deployment(&plane, "fragile"), ROLLED_BACK)
    });
    // A figure for BENCHMARKS.md, not an assertion.
    eprintln!(
        "figure: fragile applied -> rolled back {:.1}s; first restart seen -> rolled back {:.1}s",
        applied.elapsed().as_secs_f64(),
        first_crash.map_or(f64::NAN, |t| t.elapsed().as_secs_f64())
    );
    assert!(reason.contains("exit code 3"), "{reason}");
    let served = eventually("fragile serves uninstrumented", WAIT, || {
        let pods = pods(&plane, "fragile");
        match pods.as_slice() {
            [p] if ready(p) && init_container_count(p, INIT) == 0 => Some(p.clone()),
            _ => None,
        }
    });
    assert!(annotation(&served, ROLLED_BACK).is_some(), "{served}");
    assert!(
        !events(&plane, "InstrumentationRolledBack", "fragile").is_empty(),
        "rollback Event"
    );
    assert!(
        webhook
            .metrics()
            .contains("otel_injector_rollbacks_total{namespace=\"cxtm\",reason=\"crash_loop\"} 1"),
        "{}",
        webhook.metrics()
    );
    assert_gauge_matches_kubectl(&plane, &webhook);
    done("an app that crash-loops only when instrumented is rolled back and serves");

    // Fix the cause, remove the annotation: instrumented again.
    plane.kubectl(
        &[
            "set",
            "env",
            "-n",
            "cxtm",
            "deployment/fragile",
            "CRASH_WHEN=never",
        ],
        None,
    );
    plane.kubectl(
        &[
            "annotate",
            "-n",
            "cxtm",
            "deployment/fragile",
            &format!("{ROLLED_BACK}-"),
        ],
        None,
    );
    eventually("fragile instrumented again and Ready", WAIT, || {
        let pods = pods(&plane, "fragile");
        match pods.as_slice() {
            [p] if ready(p) && init_container_count(p, INIT) == 1 => Some(()),
            _ => None,
        }
    });
    assert!(
        annotation(
            &deployment(&plane, "fragile")["spec"]["template"],
            ROLLED_BACK
        )
        .is_none()
    );
    assert_gauge_matches_kubectl(&plane, &webhook);
    done("removing the annotation brings instrumentation back");

    // Crashes without us too: not left rolled back.
    plane.apply(&app("broken", "always"));
    let why = eventually("broken restored (crashes uninstrumented too)", WAIT, || {
        let d = deployment(&plane, "broken");
        match (
            annotation(&d, ROLLED_BACK),
            annotation(&d, CRASHES_UNINSTRUMENTED),
        ) {
            (None, Some(why)) => Some(why),
            _ => None,
        }
    });
    assert!(why.contains("exit code 3"), "{why}");
    assert!(
        !events(&plane, "InstrumentationRestored", "broken").is_empty(),
        "restore Event"
    );
    eventually("broken's pods instrumented again", WAIT, || {
        let pods = pods(&plane, "broken");
        (!pods.is_empty() && pods.iter().all(|p| init_container_count(p, INIT) == 1)).then_some(())
    });
    assert!(
        annotation(&deployment(&plane, "broken"), ROLLED_BACK).is_none(),
        "not rolled back again"
    );
    done("an app that crashes without us too is not left rolled back");
    drop(webhook);
}

/// Replicas of each [`sleepers`] Deployment.
const REPLICAS: usize = 10;

/// A Deployment of [`REPLICAS`] pods that only sleep, on the node's own pod
/// network (no hostNetwork port, so many replicas share the node). Not
/// Python: instrumented means the init container, volume and PYTHONPATH.
fn sleepers(name: &str) -> Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "cxtm", "labels": {"app": name}},
        "spec": {
            "replicas": REPLICAS,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "app",
                        "image": IMAGE,
                        "imagePullPolicy": "Never",
                        "command": ["sleep", "3600"],
                    }],
                },
            },
        },
    })
}

/// Every pod of cxtm, once none is terminating (else `None`).
fn settled_pods(plane: &ControlPlane) -> Option<Vec<Value>> {
    let out = plane
        .try_kubectl(&["get", "pods", "-n", "cxtm", "-o", "json"], None)
        .ok()?;
    let list: Value = serde_json::from_str(&out).ok()?;
    let items = list["items"].as_array()?;
    items
        .iter()
        .all(|p| p["metadata"]["deletionTimestamp"].is_null())
        .then(|| items.clone())
}

fn app_of(pod: &Value) -> String {
    pod["metadata"]["labels"]["app"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// How often the pod carries what one injection adds: the init container,
/// its volume, and PYTHONPATH in the app container.
fn injections(pod: &Value) -> [usize; 3] {
    let named = |list: &Value, name: &str| {
        list.as_array()
            .map_or(0, |l| l.iter().filter(|v| v["name"] == name).count())
    };
    let volumes = pod["spec"]["volumes"].as_array().map_or(0, |l| {
        l.iter()
            .filter(|v| {
                v["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("opentelemetry-auto-instrumentation"))
            })
            .count()
    });
    [
        init_container_count(pod, INIT),
        volumes,
        named(&pod["spec"]["containers"][0]["env"], "PYTHONPATH"),
    ]
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs root and a real node"
)]
/// The webhook stopped during 100 creates (ten Deployments of ten pods, the
/// middle four created while no replica answered): the 40 pods it missed
/// are counted `missed` (gauge and `status`), and once it returns with
/// catch-up on, exactly those four Deployments are restarted, once each,
/// and every pod carries one injection, not two.
fn webhook_stopped_during_100_creates() {
    const WAIT_ALL: Duration = Duration::from_secs(900);
    let (plane, _node) = cluster_with_cxtm("fleet-outage");
    let config = tempfile::NamedTempFile::new().expect("config file");
    write_config_with(config.path(), false, 4);
    let config_path = config.path().to_str().expect("path").to_owned();
    let mut webhook = Webhook::start(&plane, &["--config", &config_path]);
    plane.register_webhook(&webhook.url());

    let names: Vec<String> = (0..10).map(|i| format!("s{i}")).collect();
    let down = 3..7;
    for (i, name) in names.iter().enumerate() {
        if i == down.start {
            webhook.kill();
        }
        if i == down.end {
            webhook.restart(&plane);
        }
        plane.apply(&sleepers(name));
        // All ten created before the webhook changes state.
        eventually(&format!("{name}'s pods created"), WAIT, || {
            (pods(&plane, name).len() == REPLICAS).then_some(())
        });
    }
    let missed_apps: Vec<&String> = names[down.clone()].iter().collect();
    let before = eventually("100 pods Ready", WAIT_ALL, || {
        let pods = settled_pods(&plane)?;
        (pods.len() == 100 && pods.iter().all(ready)).then_some(pods)
    });
    for pod in &before {
        let was_down = missed_apps.contains(&&app_of(pod));
        let want = if was_down { [0, 0, 0] } else { [1, 1, 1] };
        assert_eq!(
            injections(pod),
            want,
            "{} (webhook down: {was_down})",
            app_of(pod)
        );
    }
    eventually("the gauge counts the 40 missed", WAIT, || {
        (gauge(&webhook, "missed") == Some(40) && gauge(&webhook, "instrumented") == Some(60))
            .then_some(())
    });
    assert_gauge_matches_kubectl(&plane, &webhook);
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_otel-injector"))
        .args(["status", "-n", "cxtm", "--config", &config_path])
        .envs(plane.binary_env())
        .output()
        .expect("otel-injector status");
    let table = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success(),
        "{table}{}",
        String::from_utf8_lossy(&status.stderr)
    );
    assert!(
        table.contains("total: 60 instrumented, 40 missed, 0 opted_out, 0 refused, 0 rolled_back"),
        "{table}"
    );
    let uid = |p: &Value| p["metadata"]["uid"].as_str().unwrap_or_default().to_owned();
    let kept: std::collections::BTreeSet<String> = before
        .iter()
        .filter(|p| !missed_apps.contains(&&app_of(p)))
        .map(uid)
        .collect();

    // Back with catch-up on: the four are restarted, the six left alone.
    write_config_with(config.path(), true, 4);
    webhook.restart(&plane);
    let after = eventually("all 100 instrumented and Ready", WAIT_ALL, || {
        let pods = settled_pods(&plane)?;
        (pods.len() == 100 && pods.iter().all(|p| ready(p) && injections(p) != [0, 0, 0]))
            .then_some(pods)
    });
    for pod in &after {
        assert_eq!(injections(pod), [1, 1, 1], "injected once: {}", app_of(pod));
    }
    let now: std::collections::BTreeSet<String> = after.iter().map(uid).collect();
    assert!(
        kept.is_subset(&now),
        "a Deployment that missed nothing was restarted"
    );
    // A few resyncs more: nothing restarts again.
    std::thread::sleep(Duration::from_secs(5));
    for name in &names {
        let d = deployment(&plane, name);
        let restarted = annotation(&d["spec"]["template"], "otel-injector.io/restartedAt");
        let caught_up = events(&plane, "InstrumentationCatchUp", name);
        if missed_apps.contains(&name) {
            assert!(restarted.is_some(), "{name} caught up");
            assert_eq!(d["metadata"]["generation"], 2, "{name}: one restart");
            assert!(!caught_up.is_empty(), "{name}: catch-up Event");
        } else {
            assert!(restarted.is_none(), "{name} missed nothing");
            assert_eq!(d["metadata"]["generation"], 1, "{name}: never restarted");
            assert!(caught_up.is_empty(), "{name}: no catch-up Event");
        }
    }
    assert_gauge_matches_kubectl(&plane, &webhook);
    assert_eq!(gauge(&webhook, "instrumented"), Some(100));
    drop(webhook);
}

/// CPU seconds (user + system) and RSS in KiB of a process, from /proc.
fn cpu_and_rss(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 =
        fields[11].parse::<f64>().expect("utime") + fields[12].parse::<f64>().expect("stime");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    (ticks / 100.0, rss)
}

/// Benchmark, not a test (BENCHMARKS.md, "Fleet reconciler"): the webhook's
/// CPU and RSS while its reconciler watches 1,000 pods on the real API
/// server. No node: the pods are bound to a node that does not exist and
/// stay Pending. Prints the figures; asserts only that the gauge saw them.
///
/// `cargo test --test e2e_fleet -- --ignored --nocapture bench_reconciler`
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_reconciler_watching_1000_pods() {
    const PODS: usize = 1000;
    let plane = ControlPlane::up("fleet-bench");
    plane.namespace("cxtm", &[]);
    let config = tempfile::NamedTempFile::new().expect("config file");
    write_config(config.path(), false);
    let config_path = config.path().to_str().expect("path").to_owned();
    let webhook = Webhook::start(&plane, &["--config", &config_path]);
    let pid = webhook.pid().expect("webhook pid");
    plane.register_webhook(&webhook.url());
    let (idle_cpu, idle_rss) = cpu_and_rss(pid);
    let pod = |i: usize| {
        serde_json::json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": format!("watched-{i}"), "namespace": "cxtm", "labels": {"app": "watched"}},
            "spec": {"nodeName": "no-such-node", "containers": [{
                "name": "app", "image": IMAGE, "command": ["python", "run.py"]}]}
        })
    };
    for chunk in (0..PODS).collect::<Vec<_>>().chunks(100) {
        let list = serde_json::json!({"apiVersion": "v1", "kind": "List",
            "items": chunk.iter().map(|i| pod(*i)).collect::<Vec<_>>()});
        plane.kubectl(&["create", "-f", "-"], Some(&list.to_string()));
    }
    eventually("the gauge counts every pod", WAIT, || {
        (gauge(&webhook, "instrumented") == Some(PODS as i64)).then_some(())
    });
    let (loaded_cpu, loaded_rss) = cpu_and_rss(pid);
    let window = Duration::from_secs(60);
    std::thread::sleep(window);
    let (after_cpu, after_rss) = cpu_and_rss(pid);
    eprintln!(
        "fleet reconciler, {PODS} pods watched, resync 1 s: RSS idle {} MiB -> {} MiB with the pods ({} MiB after {}s); \
         CPU to create and survey them {:.2} s; steady CPU {:.1} ms/s ({:.2} % of a core)",
        idle_rss / 1024,
        loaded_rss / 1024,
        after_rss / 1024,
        window.as_secs(),
        loaded_cpu - idle_cpu,
        (after_cpu - loaded_cpu) * 1000.0 / window.as_secs_f64(),
        (after_cpu - loaded_cpu) * 100.0 / window.as_secs_f64(),
    );
}

/// Benchmark, not a test (BENCHMARKS.md, "Fleet reconciler"): 20
/// Deployments created before the webhook; the time from the webhook's
/// start (catch-up on) until every one runs an instrumented, Ready pod, with
/// `maxConcurrent` 1 and 4. Prints the figures.
///
/// `cargo test --test e2e_fleet -- --ignored --nocapture bench_catch_up`
#[test]
#[ignore = "benchmark: run with --ignored --nocapture"]
fn bench_catch_up_20_deployments() {
    const APPS: usize = 20;
    let (plane, _node) = cluster_with_cxtm("fleet-catch-up");
    let config = tempfile::NamedTempFile::new().expect("config file");
    let config_path = config.path().to_str().expect("path").to_owned();
    for max in [1, 4] {
        let names: Vec<String> = (0..APPS).map(|i| format!("c{max}-{i}")).collect();
        for name in &names {
            plane.apply(&app(name, "never"));
        }
        for name in &names {
            rollout(&plane, "cxtm", name);
        }
        let text = format!(
            "exporter:\n  endpoint: http://127.0.0.1:9\n  protocol: http/protobuf\n\
             fleet:\n  resyncSeconds: 1\n  catchUp:\n    enabled: true\n    maxConcurrent: {max}\n"
        );
        std::fs::write(config.path(), text).expect("config");
        let started = Instant::now();
        let webhook = Webhook::start(&plane, &["--config", &config_path]);
        plane.register_webhook(&webhook.url());
        eventually(
            "every Deployment caught up",
            Duration::from_secs(1800),
            || {
                names
                    .iter()
                    .all(|n| {
                        let pods = pods(&plane, n);
                        pods.len() == 1
                            && init_container_count(&pods[0], INIT) == 1
                            && ready(&pods[0])
                    })
                    .then_some(())
            },
        );
        eprintln!(
            "figure: catch-up of {APPS} Deployments, maxConcurrent {max}: {:.1}s from the webhook's start to all instrumented and Ready",
            started.elapsed().as_secs_f64()
        );
        drop(webhook);
        plane.kubectl(
            &[
                "delete",
                "deployments",
                "--all",
                "-n",
                "cxtm",
                "--wait=true",
            ],
            None,
        );
        // The next round starts from a webhook that is not registered, and
        // not from the killed one's Lease (15 s to expire).
        plane.kubectl(&["delete", "mutatingwebhookconfigurations", "--all"], None);
        plane.kubectl(
            &["delete", "lease", "-n", "default", "otel-injector-fleet"],
            None,
        );
    }
}
