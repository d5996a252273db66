//! Property tests of the mutation: generated pods (any mix of containers,
//! init containers, env with and without `valueFrom`, volumes and mounts whose
//! names and paths clash with ours, odd annotation keys, sidecars first,
//! Python and other commands, nodeSelectors that clash with ours) go through
//! the policy and `inject()` exactly as the webhook runs them, in `cxtm`.
//!
//! For every pod: the patch applies to the original JSON, the result is still
//! a Pod, everything the user had is still there with its value (a plain
//! `PYTHONPATH` merged as `<prefix>:<user>:<mount>`), no name is duplicated,
//! and a second admission of the result yields an empty patch.
//!
//! `PROPTEST_CASES` sets the number of cases (default 10,000, a few seconds in
//! debug). Nightly-style: `PROPTEST_CASES=200000 cargo test --release --test properties`.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use common::*;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use otel_injector::admission::{self, Base, Context};
use otel_injector::config::{Config, DEFAULT_IMAGE, DEFAULT_MOUNT_PATH, DEFAULT_NAME};
use otel_injector::inject::{Injection, Outcome};
use otel_injector::offline::{self, Document, FileView};
use otel_injector::policy::StaticView;
use otel_injector::review::Reviewer;
use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, FileFailurePersistence};
use serde::Deserialize;
use serde_json::{Map, Value, json};

const NAMESPACE: &str = "cxtm";
const PREFIX: &str =
    "/otel-auto-instrumentation/opentelemetry/instrumentation/auto_instrumentation";
const OUR_ANNOTATIONS: [&str; 4] = [
    "otel-injector.io/status",
    "otel-injector.io/containers",
    "otel-injector.io/reason",
    "otel-injector.io/version",
];

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        // Failures become named regression tests below, not a file in tests/.
        failure_persistence: Some(Box::new(FileFailurePersistence::Off)),
        max_shrink_iters: 4096,
        // ChaCha seeding every case was a fifth of the run time in debug builds.
        rng_algorithm: proptest::test_runner::RngAlgorithm::XorShift,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------- generators

/// A string strategy compiled once (a `&str` strategy recompiles its regex
/// for every value, which dominated the run time in debug builds).
fn re(pattern: &str) -> proptest::string::RegexGeneratorStrategy<String> {
    proptest::string::string_regex(pattern).expect("valid regex")
}

/// Text with the characters that matter here (`:` of PYTHONPATH, `/` and
/// `~` of JSON pointers, quotes, `$(VAR)`, non-ASCII), drawn from pieces:
/// a per-character Unicode regex was most of the run time in debug builds.
fn text() -> impl Strategy<Value = String> {
    const PIECES: &[&str] = &[
        "",
        "a",
        "app",
        ":",
        "/",
        "~",
        "~0",
        "~1",
        "/otel-auto-instrumentation",
        "/app/lib",
        "\"",
        "\\",
        "$(POD_NAME)",
        ",",
        "=",
        " ",
        "ü",
        "日本",
        "\u{1F600}",
        "\n",
        "-",
    ];
    prop::collection::vec(prop::sample::select(PIECES), 0..5).prop_map(|p| p.concat())
}

fn container_name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => re(r"[a-z][a-z0-9-]{0,10}"),
        2 => Just("app".to_owned()),
        2 => Just("istio-proxy".to_owned()),
        1 => Just("linkerd-proxy".to_owned()),
        1 => Just("vault-agent".to_owned()),
        1 => Just("cxtm-logstream".to_owned()),
        // Our init container's name used for an app container.
        1 => Just(DEFAULT_NAME.to_owned()),
    ]
}

fn init_container_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => re(r"[a-z][a-z0-9-]{0,10}"),
        2 => Just("istio-init".to_owned()),
        2 => Just("migrate".to_owned()),
        // Already injected (by us or the operator).
        1 => Just(DEFAULT_NAME.to_owned()),
    ]
}

fn volume_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => re(r"[a-z][a-z0-9-]{0,10}"),
        2 => Just("data".to_owned()),
        1 => Just(DEFAULT_NAME.to_owned()),
        1 => Just("otel-auto-instrumentation".to_owned()),
    ]
}

fn mount_path() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => re(r"/[a-z]{1,8}(/[a-z~]{1,4})?"),
        2 => Just(DEFAULT_MOUNT_PATH.to_owned()),
        1 => Just(format!("{DEFAULT_MOUNT_PATH}/")),
        1 => Just(format!("{DEFAULT_MOUNT_PATH}/lib")),
        1 => Just("/otel-auto-instrumentation-python".to_owned()),
    ]
}

fn env_name() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => re(r"[A-Z_][A-Z0-9_]{0,10}"),
        3 => Just("PYTHONPATH".to_owned()),
        1 => Just("OTEL_SERVICE_NAME".to_owned()),
        1 => Just("OTEL_EXPORTER_OTLP_ENDPOINT".to_owned()),
        1 => Just("OTEL_RESOURCE_ATTRIBUTES".to_owned()),
        1 => Just("OTEL_TRACES_EXPORTER".to_owned()),
        1 => Just("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED".to_owned()),
        1 => Just("OTEL_NODE_IP".to_owned()),
        1 => Just("OTEL_RESOURCE_ATTRIBUTES_POD_NAME".to_owned()),
        1 => Just("a.b-c".to_owned()),
    ]
}

fn env_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        // value
        5 => text().prop_map(|v| json!({ "value": v })),
        3 => re(r"[/a-z:.]{0,24}").prop_map(|v| json!({ "value": v })),
        1 => Just(json!({ "value": "" })),
        // neither value nor valueFrom: an empty value for Kubernetes
        1 => Just(json!({})),
        // valueFrom
        2 => Just(json!({ "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}} })),
        1 => Just(json!({ "valueFrom": {"configMapKeyRef": {"name": "c", "key": "PYTHONPATH"}} })),
        1 => Just(json!({ "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}} })),
    ]
}

fn env() -> impl Strategy<Value = Option<Vec<Value>>> {
    let vars = prop::collection::vec((env_name(), env_value()), 0..7).prop_map(|vars| {
        let mut seen = HashSet::new();
        vars.into_iter()
            .filter(|(name, _)| seen.insert(name.clone()))
            .map(|(name, mut var)| {
                var["name"] = Value::String(name);
                var
            })
            .collect::<Vec<_>>()
    });
    prop::option::weighted(0.7, vars)
}

fn command() -> impl Strategy<Value = Option<Vec<String>>> {
    let python = prop_oneof![
        Just("python"),
        Just("python3"),
        Just("python3.12"),
        Just("/usr/local/bin/python3"),
    ];
    let other = prop_oneof![
        Just("gunicorn"),
        Just("sh"),
        Just("/docker-entrypoint.sh"),
        Just("pythonista"),
        Just("uwsgi"),
    ];
    let args = || prop::collection::vec(re(r"[a-z.:/-]{1,10}"), 0..3);
    prop_oneof![
        3 => Just(None),
        3 => (python, args()).prop_map(|(p, a)| Some(std::iter::once(p.to_owned()).chain(a).collect())),
        2 => (other, args()).prop_map(|(p, a)| Some(std::iter::once(p.to_owned()).chain(a).collect())),
        1 => Just(Some(Vec::new())),
        1 => Just(Some(vec![
            "python3".to_owned(),
            format!("{DEFAULT_MOUNT_PATH}/bin/opentelemetry-instrument"),
            "python".to_owned(),
            "app.py".to_owned(),
        ])),
    ]
}

fn image() -> impl Strategy<Value = Option<String>> {
    prop_oneof![
        1 => Just(None),
        3 => Just(Some("registry.example.com:5000/cxtm/logstream:25.2.0".to_owned())),
        2 => re(r"[a-z]{1,8}(:[a-z0-9.]{1,6})?(@sha256:[0-9a-f]{8})?").prop_map(Some),
    ]
}

fn security_context() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        3 => Just(None),
        1 => Just(Some(json!({"runAsNonRoot": true, "runAsUser": 1000, "allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}))),
    ]
}

/// A container before its mounts are tied to the pod's volumes.
#[derive(Clone, Debug)]
struct ContainerSeed {
    name: String,
    image: Option<String>,
    command: Option<Vec<String>>,
    args: Option<Vec<String>>,
    env: Option<Vec<Value>>,
    /// (index into the pod's volumes, path); `None`: no `volumeMounts` key.
    mounts: Option<Vec<(prop::sample::Index, String)>>,
    security_context: Option<Value>,
}

fn container_seed(name: impl Strategy<Value = String>) -> impl Strategy<Value = ContainerSeed> {
    (
        name,
        image(),
        command(),
        prop::option::weighted(0.3, prop::collection::vec(re(r"[a-z0-9-]{1,6}"), 0..3)),
        env(),
        prop::option::weighted(
            0.6,
            prop::collection::vec((any::<prop::sample::Index>(), mount_path()), 0..4),
        ),
        security_context(),
    )
        .prop_map(
            |(name, image, command, args, env, mounts, security_context)| ContainerSeed {
                name,
                image,
                command,
                args,
                env,
                mounts,
                security_context,
            },
        )
}

fn annotation_key() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => re(r"[a-z~/.]{1,12}"),
        1 => Just("example.com/a~b".to_owned()),
        1 => Just("~1/~0".to_owned()),
        1 => Just("a/b/c~".to_owned()),
        1 => Just("".to_owned()),
        1 => Just("otel-injector.io/status".to_owned()),
        1 => Just("otel-injector.io/reason".to_owned()),
    ]
}

/// Pod-level knobs that the policy reads.
#[derive(Clone, Debug)]
struct PodSeed {
    name: Option<String>,
    generate_name: Option<String>,
    annotations: Option<Vec<(String, String)>>,
    /// Container-names annotation: picks among the containers, maybe plus a missing name.
    container_names: Option<(Vec<prop::sample::Index>, bool, bool)>,
    inject_python: Option<&'static str>,
    platform: Option<&'static str>,
    service_name: Option<String>,
    labels: Option<Vec<(String, String)>>,
    owner: Option<(&'static str, String)>,
    node_selector: Option<Vec<(String, String)>>,
    volumes: Option<Vec<String>>,
    init_containers: Option<Vec<ContainerSeed>>,
    containers: Vec<ContainerSeed>,
}

fn pod_seed() -> impl Strategy<Value = PodSeed> {
    let meta = (
        prop::option::weighted(0.8, re(r"[a-z][a-z0-9-]{0,20}")),
        prop::option::weighted(0.3, re(r"[a-z][a-z0-9-]{0,12}-")),
        prop::option::weighted(0.6, prop::collection::vec((annotation_key(), text()), 0..5)),
        prop::option::weighted(
            0.25,
            (
                prop::collection::vec(any::<prop::sample::Index>(), 0..3),
                any::<bool>(),
                any::<bool>(),
            ),
        ),
        prop::option::weighted(
            0.15,
            prop_oneof![
                Just("true"),
                Just("True"),
                Just("false"),
                Just("my-instrumentation"),
                Just("cxtm/other"),
                Just("")
            ],
        ),
        prop::option::weighted(
            0.1,
            prop_oneof![Just("musl"), Just("glibc"), Just("windows"), Just("")],
        ),
        prop::option::weighted(0.1, re(r"[a-z-]{0,10}")),
    );
    let owner_kind = prop_oneof![
        Just("ReplicaSet"),
        Just("Job"),
        Just("StatefulSet"),
        Just("DaemonSet"),
        Just("Node")
    ];
    let spec = (
        prop::option::weighted(
            0.3,
            prop::collection::vec(
                (
                    prop_oneof![Just("pod-template-hash".to_owned()), re(r"[a-z./]{1,10}")],
                    re(r"[a-z0-9]{0,10}"),
                ),
                0..3,
            ),
        ),
        prop::option::weighted(0.3, (owner_kind, re(r"[a-z0-9-]{1,20}"))),
        prop::option::weighted(
            0.5,
            prop::collection::vec(
                (
                    prop_oneof![
                        3 => Just("ao-node".to_owned()),
                        1 => Just("kubernetes.io/os".to_owned()),
                        1 => re(r"[a-z~/.]{1,10}"),
                    ],
                    prop_oneof![
                        Just("observability".to_owned()),
                        Just("gpu".to_owned()),
                        re(r"[a-z]{0,6}")
                    ],
                ),
                0..3,
            ),
        ),
        prop::option::weighted(0.6, prop::collection::vec(volume_name(), 0..5)),
        prop::option::weighted(
            0.4,
            prop::collection::vec(container_seed(init_container_name()), 0..3),
        ),
        prop::collection::vec(container_seed(container_name()), 1..5),
    );
    (meta, spec).prop_map(
        |(
            (
                name,
                generate_name,
                annotations,
                container_names,
                inject_python,
                platform,
                service_name,
            ),
            (labels, owner, node_selector, volumes, init_containers, containers),
        )| PodSeed {
            name,
            generate_name,
            annotations,
            container_names,
            inject_python,
            platform,
            service_name,
            labels,
            owner,
            node_selector,
            volumes,
            init_containers,
            containers,
        },
    )
}

fn object<K: Into<String>>(entries: impl IntoIterator<Item = (K, Value)>) -> Value {
    Value::Object(entries.into_iter().map(|(k, v)| (k.into(), v)).collect())
}

/// A valid pod (unique container, volume, env and mount names and paths;
/// mounts refer to existing volumes) from its seed.
fn build_pod(seed: &PodSeed) -> Value {
    let mut metadata = Map::new();
    if let Some(name) = &seed.name {
        metadata.insert("name".into(), json!(name));
    }
    if let Some(generate) = &seed.generate_name {
        metadata.insert("generateName".into(), json!(generate));
    }
    metadata.insert("namespace".into(), json!(NAMESPACE));

    // Unique names across containers and init containers, as Kubernetes requires.
    let mut taken = HashSet::new();
    let containers: Vec<&ContainerSeed> = seed
        .containers
        .iter()
        .filter(|c| taken.insert(c.name.clone()))
        .collect();
    let init_containers: Option<Vec<&ContainerSeed>> = seed.init_containers.as_ref().map(|ics| {
        ics.iter()
            .filter(|c| taken.insert(c.name.clone()))
            .collect()
    });

    let mut annotations: Option<BTreeMap<String, String>> = seed
        .annotations
        .as_ref()
        .map(|a| a.iter().cloned().collect());
    let mut annotate = |key: &str, value: String| {
        annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(key.to_owned(), value);
    };
    if let Some((picks, missing, init)) = &seed.container_names {
        let mut names: Vec<String> = picks
            .iter()
            .map(|i| i.get(&containers).name.clone())
            .collect();
        if *missing {
            names.push("not-there".into());
        }
        if *init && let Some(ic) = init_containers.as_ref().and_then(|ics| ics.first()) {
            names.push(ic.name.clone());
        }
        annotate(
            "instrumentation.opentelemetry.io/container-names",
            names.join(", "),
        );
    }
    if let Some(value) = seed.inject_python {
        annotate(
            "instrumentation.opentelemetry.io/inject-python",
            value.to_owned(),
        );
    }
    if let Some(value) = seed.platform {
        annotate(
            "instrumentation.opentelemetry.io/otel-python-platform",
            value.to_owned(),
        );
    }
    if let Some(value) = &seed.service_name {
        annotate("resource.opentelemetry.io/service.name", value.clone());
    }
    if let Some(annotations) = annotations {
        metadata.insert("annotations".into(), json!(annotations));
    }
    if let Some(labels) = &seed.labels {
        let labels: BTreeMap<&String, &String> = labels.iter().map(|(k, v)| (k, v)).collect();
        metadata.insert("labels".into(), json!(labels));
    }
    if let Some((kind, name)) = &seed.owner {
        metadata.insert(
            "ownerReferences".into(),
            json!([{"apiVersion": "apps/v1", "kind": kind, "name": name, "uid": "u-1", "controller": true}]),
        );
    }

    let volumes: Option<Vec<String>> = seed.volumes.as_ref().map(|vs| {
        let mut seen = HashSet::new();
        vs.iter().filter(|v| seen.insert(*v)).cloned().collect()
    });
    let volume_names: Vec<String> = volumes.clone().unwrap_or_default();
    let container_json = |c: &ContainerSeed| {
        let mut out = Map::new();
        out.insert("name".into(), json!(c.name));
        if let Some(image) = &c.image {
            out.insert("image".into(), json!(image));
        }
        if let Some(command) = &c.command {
            out.insert("command".into(), json!(command));
        }
        if let Some(args) = &c.args {
            out.insert("args".into(), json!(args));
        }
        if let Some(env) = &c.env {
            out.insert("env".into(), json!(env));
        }
        if let Some(mounts) = &c.mounts {
            let mut names = HashSet::new();
            let mut paths = HashSet::new();
            let mounts: Vec<Value> = if volume_names.is_empty() {
                Vec::new()
            } else {
                mounts
                    .iter()
                    .map(|(i, path)| (i.get(&volume_names), path))
                    .filter(|(name, path)| {
                        names.insert(*name) && paths.insert(path.trim_end_matches('/'))
                    })
                    .map(|(name, path)| json!({"name": name, "mountPath": path}))
                    .collect()
            };
            out.insert("volumeMounts".into(), Value::Array(mounts));
        }
        if let Some(sc) = &c.security_context {
            out.insert("securityContext".into(), sc.clone());
        }
        Value::Object(out)
    };

    let mut spec = Map::new();
    spec.insert(
        "containers".into(),
        Value::Array(containers.iter().map(|c| container_json(c)).collect()),
    );
    if let Some(ics) = &init_containers {
        spec.insert(
            "initContainers".into(),
            Value::Array(ics.iter().map(|c| container_json(c)).collect()),
        );
    }
    if let Some(volumes) = &volumes {
        spec.insert(
            "volumes".into(),
            Value::Array(
                volumes
                    .iter()
                    .map(|v| json!({"name": v, "emptyDir": {}}))
                    .collect(),
            ),
        );
    }
    if let Some(selector) = &seed.node_selector {
        let selector: BTreeMap<&String, &String> = selector.iter().map(|(k, v)| (k, v)).collect();
        spec.insert("nodeSelector".into(), json!(selector));
    }
    object([
        ("metadata", Value::Object(metadata)),
        ("spec", Value::Object(spec)),
    ])
}

// ---------------------------------------------------------------- the webhook's path

/// Policy then mutation, as the webhook runs them. `Err` when the patch does not apply.
fn admit(pod_json: &Value) -> Result<(Value, Option<Injection>), String> {
    try_admit(pod_json, NAMESPACE, &Config::default(), &StaticView)
        .map(|admitted| (admitted.pod, admitted.injection))
}

fn array<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

fn names<'a>(items: &'a [Value], key: &str) -> Vec<&'a str> {
    items
        .iter()
        .map(|i| i[key].as_str().unwrap_or_default())
        .collect()
}

fn duplicates<'a>(items: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut seen = HashSet::new();
    items.into_iter().filter(|n| !seen.insert(*n)).collect()
}

/// Metadata without the annotations, in key order.
fn other_metadata(pod: &Value) -> BTreeMap<&str, &Value> {
    pod["metadata"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| *k != "annotations")
        .map(|(k, v)| (k.as_str(), v))
        .collect()
}

/// All the properties for one pod; `Err` says which one broke.
fn check(original: &Value) -> Result<(), String> {
    check_with(original, &Config::default())
}

/// Vars the operator's env puts before the container's own (sdk.go
/// prepends the IPs; the downward-API vars an in-place merged
/// `OTEL_RESOURCE_ATTRIBUTES` uses go there too).
const PREFIX_VARS: [&str; 5] = [
    "OTEL_NODE_IP",
    "OTEL_POD_IP",
    "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
    "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES_POD_UID",
];

/// [`check`] with another config (`kubernetesResourceAttributes: true`
/// builds env and attributes exactly as the operator does).
fn check_with(original: &Value, config: &Config) -> Result<(), String> {
    let admit = |pod: &Value| {
        try_admit(pod, NAMESPACE, config, &StaticView)
            .map(|admitted| (admitted.pod, admitted.injection))
    };
    let (mutated, injection) = admit(original)?;
    let typed = Pod::deserialize(&mutated).map_err(|e| format!("result is not a Pod: {e}"))?;
    let (o_spec, m_spec) = (&original["spec"], &mutated["spec"]);
    let instrumented: HashSet<String> = injection
        .as_ref()
        .map(|i| {
            i.containers
                .iter()
                .filter(|c| c.instrumented)
                .map(|c| c.name.clone())
                .collect()
        })
        .unwrap_or_default();
    let injected = injection
        .as_ref()
        .is_some_and(|i| i.outcome == Outcome::Injected);
    if injected == instrumented.is_empty() {
        return Err(format!(
            "outcome {:?} but instrumented containers {instrumented:?}",
            injection.map(|i| i.outcome)
        ));
    }

    // Append only: what the pod had comes first, unchanged.
    for key in ["volumes", "initContainers"] {
        let (before, after) = (array(o_spec, key), array(m_spec, key));
        if after.len() < before.len() || &after[..before.len()] != before {
            return Err(format!("spec.{key} lost or changed an entry"));
        }
        if after.len() > before.len() + usize::from(injected) {
            return Err(format!("spec.{key} grew by more than one entry"));
        }
    }
    if let Some(selector) = o_spec.get("nodeSelector").and_then(Value::as_object) {
        for (k, v) in selector {
            if m_spec["nodeSelector"].get(k) != Some(v) {
                return Err(format!("nodeSelector {k}={v} not kept"));
            }
        }
    }
    if let Some(annotations) = original["metadata"]
        .get("annotations")
        .and_then(Value::as_object)
    {
        for (k, v) in annotations {
            if !OUR_ANNOTATIONS.contains(&k.as_str())
                && mutated["metadata"]["annotations"].get(k) != Some(v)
            {
                return Err(format!("annotation {k:?} not kept"));
            }
        }
    }
    if other_metadata(original) != other_metadata(&mutated) {
        return Err("metadata other than annotations changed".into());
    }
    let (o_containers, m_containers) = (array(o_spec, "containers"), array(m_spec, "containers"));
    if names(o_containers, "name") != names(m_containers, "name") {
        return Err("containers added, removed or reordered".into());
    }
    for (before, after) in o_containers.iter().zip(m_containers) {
        let name = before["name"].as_str().unwrap_or_default();
        if !instrumented.contains(name) {
            if before != after {
                return Err(format!("container {name} is not instrumented but changed"));
            }
            continue;
        }
        let (o_env, m_env) = (array(before, "env"), array(after, "env"));
        if m_env.len() < o_env.len() {
            return Err(format!("{name}: env shrank"));
        }
        // Inserted before the container's own: only vars it does not set.
        let inserted = m_env
            .iter()
            .take_while(|m| {
                let n = m["name"].as_str().unwrap_or_default();
                PREFIX_VARS.contains(&n) && !o_env.iter().any(|o| o["name"] == n)
            })
            .count();
        let m_env = &m_env[inserted..];
        // Unwrapped containers get the working directory last on PYTHONPATH.
        let cwd = if before.get("command") == after.get("command") {
            ":."
        } else {
            ""
        };
        for (o, m) in o_env.iter().zip(m_env) {
            if o["name"] == "OTEL_RESOURCE_ATTRIBUTES"
                && config.kubernetes_resource_attributes
                && o.get("valueFrom").is_none()
            {
                // The operator appends the computed attributes to the container's own.
                let own = o["value"].as_str().unwrap_or_default();
                let merged = m["value"].as_str().unwrap_or_default();
                if !merged.starts_with(own) || m.get("valueFrom").is_some() {
                    return Err(format!(
                        "{name}: OTEL_RESOURCE_ATTRIBUTES {m} does not extend {o}"
                    ));
                }
                continue;
            }
            if o["name"] == "PYTHONPATH" {
                if o.get("valueFrom").is_some() {
                    return Err(format!(
                        "{name}: PYTHONPATH from valueFrom was instrumented"
                    ));
                }
                let user = o["value"].as_str().unwrap_or_default();
                let want = if user.is_empty() {
                    format!("{PREFIX}:{DEFAULT_MOUNT_PATH}{cwd}")
                } else {
                    format!("{PREFIX}:{user}:{DEFAULT_MOUNT_PATH}{cwd}")
                };
                let mut expected = o.clone();
                expected["value"] = Value::String(want);
                if m != &expected {
                    return Err(format!("{name}: PYTHONPATH {m} is not the merge of {o}"));
                }
            } else if o != m {
                return Err(format!("{name}: env {o} became {m}"));
            }
        }
        let (o_mounts, m_mounts) = (array(before, "volumeMounts"), array(after, "volumeMounts"));
        if m_mounts.len() != o_mounts.len() + 1 || &m_mounts[..o_mounts.len()] != o_mounts {
            return Err(format!("{name}: volumeMounts not exactly appended to"));
        }
        match (before.get("command"), after.get("command")) {
            (b, a) if b == a => {}
            (Some(b), Some(a)) => {
                // The default interpreter is the container's own: command[0],
                // behind the guard.
                let rest: Vec<String> =
                    std::iter::once(format!("{DEFAULT_MOUNT_PATH}/bin/opentelemetry-instrument"))
                        .chain(
                            b.as_array()
                                .into_iter()
                                .flatten()
                                .map(|v| v.as_str().unwrap_or_default().to_owned()),
                        )
                        .collect();
                let wrapped = guarded(b[0].as_str().unwrap_or_default(), &rest);
                if a != &json!(wrapped) {
                    return Err(format!("{name}: command {b} became {a}, not a wrap"));
                }
            }
            (b, a) => return Err(format!("{name}: command {b:?} became {a:?}")),
        }
        for key in ["name", "image", "args", "securityContext"] {
            if before.get(key) != after.get(key) {
                return Err(format!("{name}: {key} changed"));
            }
        }
    }

    // No duplicate names; no two mounts at one path.
    let spec = typed.spec.as_ref().ok_or("result has no spec")?;
    let all_containers: Vec<&str> = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .map(|c| c.name.as_str())
        .collect();
    let dup = duplicates(all_containers.iter().copied());
    if !dup.is_empty() {
        return Err(format!("duplicate container names {dup:?}"));
    }
    let dup = duplicates(spec.volumes.iter().flatten().map(|v| v.name.as_str()));
    if !dup.is_empty() {
        return Err(format!("duplicate volumes {dup:?}"));
    }
    for c in spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
    {
        let dup = duplicates(c.env.iter().flatten().map(|v| v.name.as_str()));
        if !dup.is_empty() {
            return Err(format!("{}: duplicate env {dup:?}", c.name));
        }
        let mounts = c.volume_mounts.iter().flatten();
        let dup = duplicates(mounts.clone().map(|m| m.name.as_str()));
        if !dup.is_empty() {
            return Err(format!("{}: duplicate mount names {dup:?}", c.name));
        }
        let dup = duplicates(mounts.clone().map(|m| m.mount_path.trim_end_matches('/')));
        if !dup.is_empty() {
            return Err(format!("{}: two mounts at {dup:?}", c.name));
        }
        let volumes: HashSet<&str> = spec
            .volumes
            .iter()
            .flatten()
            .map(|v| v.name.as_str())
            .collect();
        if let Some(m) = mounts.clone().find(|m| !volumes.contains(m.name.as_str())) {
            return Err(format!("{}: mount of missing volume {}", c.name, m.name));
        }
    }

    // What we inject is the config's, whatever the pod says.
    if injected {
        let ours = spec
            .init_containers
            .iter()
            .flatten()
            .find(|c| c.name == DEFAULT_NAME)
            .ok_or("injected without our init container")?;
        if ours.image.as_deref() != Some(DEFAULT_IMAGE) {
            return Err(format!("init image {:?}", ours.image));
        }
        let mounted = spec.containers.iter().filter(|c| {
            c.volume_mounts
                .iter()
                .flatten()
                .any(|m| m.name == DEFAULT_NAME && m.mount_path == DEFAULT_MOUNT_PATH)
        });
        if mounted.count() != instrumented.len() {
            return Err("mounted containers differ from instrumented ones".into());
        }
    }

    // Reinvocation and a second webhook: nothing more to do.
    let (again, second) = admit(&mutated)?;
    if let Some(second) = second
        && !second.patch.is_empty()
    {
        return Err(format!(
            "second admission patched again ({:?}): {:?}",
            second.outcome, second.patch
        ));
    }
    if again != mutated {
        return Err("second admission changed the pod".into());
    }
    Ok(())
}

proptest! {
    #![proptest_config(proptest_config(cases()))]

    #[test]
    fn generated_pods_keep_everything_and_inject_once(seed in pod_seed()) {
        let pod = build_pod(&seed);
        if let Err(e) = check(&pod) {
            prop_assert!(false, "{e}\npod: {pod:#}");
        }
    }
}

/// A pod that nothing in it should keep from being instrumented in `cxtm`:
/// no annotations, no init containers, no volumes, no sidecar names, a
/// registry image. The documented contract for the built-in profile (docs/pod.md): "the
/// first container that is not a known sidecar" is instrumented, through one
/// init container. Independent of what `admit` decides, so a regression that
/// stopped injecting (which the keep-everything properties above would
/// accept) fails here.
fn plain_pod() -> impl Strategy<Value = Value> {
    let container = (
        re(r"app-[a-z0-9]{0,6}"),
        prop::option::of(prop_oneof![
            Just("python"),
            Just("python3"),
            Just("gunicorn")
        ]),
        prop::collection::vec((re(r"USER_[A-Z]{1,6}"), re(r"[a-z0-9]{0,8}")), 0..4),
    );
    (re(r"[a-z][a-z0-9-]{0,20}"), prop::collection::vec(container, 1..4)).prop_map(
        |(name, containers)| {
            let mut seen = HashSet::new();
            let containers: Vec<Value> = containers
                .into_iter()
                .filter(|(n, _, _)| seen.insert(n.clone()))
                .map(|(n, command, env)| {
                    let mut env_seen = HashSet::new();
                    let env: Vec<Value> = env
                        .into_iter()
                        .filter(|(k, _)| env_seen.insert(k.clone()))
                        .map(|(k, v)| json!({"name": k, "value": v}))
                        .collect();
                    let mut c = json!({"name": n, "image": "registry.example.com/cxtm/app:1.0", "env": env});
                    if let Some(cmd) = command {
                        c["command"] = json!([cmd, "app.py"]);
                    }
                    c
                })
                .collect();
            json!({"apiVersion": "v1", "kind": "Pod",
                   "metadata": {"name": name, "namespace": NAMESPACE},
                   "spec": {"containers": containers}})
        },
    )
}

proptest! {
    #![proptest_config(proptest_config((cases() / 4).max(100)))]

    #[test]
    fn plain_pods_in_the_namespace_are_injected(pod in plain_pod()) {
        let admitted = try_admit(&pod, NAMESPACE, &Config::default(), &StaticView)
            .map_err(|e| TestCaseError::fail(format!("{e}\npod: {pod:#}")))?;
        let inits: Vec<&Value> = array(&admitted.pod["spec"], "initContainers")
            .iter()
            .filter(|c| c["name"] == DEFAULT_NAME)
            .collect();
        prop_assert_eq!(inits.len(), 1, "one init container: {:#}", admitted.pod["spec"]);
        let first = &admitted.pod["spec"]["containers"][0];
        let first_env: Vec<&str> = array(first, "env").iter().filter_map(|v| v["name"].as_str()).collect();
        prop_assert!(first_env.contains(&"PYTHONPATH"), "first container instrumented: {first:#}");
        prop_assert!(
            array(first, "volumeMounts").iter().any(|m| m["mountPath"] == DEFAULT_MOUNT_PATH),
            "first container mounts the instrumentation: {first:#}"
        );
        prop_assert_eq!(
            &admitted.pod["metadata"]["annotations"]["otel-injector.io/status"],
            "injected"
        );
    }
}

proptest! {
    #![proptest_config(proptest_config((cases() / 4).max(100)))]

    /// The same properties with env and attributes built as the operator
    /// builds them (IPs inserted first, a user OTEL_RESOURCE_ATTRIBUTES extended).
    #[test]
    fn generated_pods_keep_everything_with_the_operators_env(seed in pod_seed()) {
        let pod = build_pod(&seed);
        let config = Config { kubernetes_resource_attributes: true, ..Config::default() };
        if let Err(e) = check_with(&pod, &config) {
            prop_assert!(false, "{e}\npod: {pod:#}");
        }
    }
}

proptest! {
    // The wire path (AdmissionReview in, base64 patch out) agrees with the
    // pure path; fewer cases, it serializes twice more per pod.
    #![proptest_config(proptest_config((cases() / 10).max(100)))]

    #[test]
    fn the_wire_answer_is_the_pure_answer(seed in pod_seed()) {
        let pod = build_pod(&seed);
        let reviewer = Reviewer::new(Config::default(), Arc::new(StaticView));
        let body = serde_json::to_vec(&review(&pod, NAMESPACE, "uid-prop")).expect("json");
        let reviewed = reviewer.review(&body).expect("a review is answered");
        let answer: Value = serde_json::from_slice(&reviewed.body).expect("answer is JSON");
        prop_assert_eq!(&answer["response"]["uid"], "uid-prop");
        prop_assert_eq!(&answer["response"]["allowed"], true);
        let via_wire = apply_response(&pod, &answer);
        let (pure, _) = admit(&pod).expect("admits");
        prop_assert_eq!(via_wire, pure);
    }
}

// ---------------------------------------------------------------- three paths, one answer

/// What the cluster holds besides the pod: the namespace it is created in
/// (configured for injection or not), that namespace's annotations, the
/// Instrumentations, and what an owner cache knows of the pod's owner.
#[derive(Clone, Debug)]
struct ClusterSeed {
    namespace: &'static str,
    inject_python: Option<&'static str>,
    container_names: Option<&'static str>,
    platform: Option<&'static str>,
    /// Instrumentations in the pod's namespace: `(name, spec)`.
    instrumentations: Vec<(&'static str, Value)>,
    /// Whether the owner cache holds the pod's ReplicaSet/Job, and its controller.
    owner_known: Option<Option<&'static str>>,
}

fn cluster_seed() -> impl Strategy<Value = ClusterSeed> {
    let spec = prop_oneof![
        Just(json!({})),
        Just(
            json!({"exporter": {"endpoint": "http://collector:4317/v1/traces"}, "propagators": ["b3"]})
        ),
        Just(
            json!({"python": {"env": [{"name": "X", "value": "python"}], "volumeLimitSize": "300Mi"}})
        ),
        // Values the API server would refuse: the guard admits untouched.
        Just(json!({"python": {"volumeLimitSize": "200MB"}})),
        Just(json!({"imagePullPolicy": "Sometimes"})),
    ];
    (
        prop_oneof![Just("cxtm"), Just("apps")],
        prop::option::weighted(
            0.5,
            prop_oneof![
                Just("true"),
                Just("false"),
                Just("inst"),
                Just("apps/inst"),
                Just("cxtm/missing")
            ],
        ),
        prop::option::weighted(0.2, prop_oneof![Just("app"), Just("c0, c1")]),
        prop::option::weighted(0.1, prop_oneof![Just("musl"), Just("windows")]),
        prop::collection::vec((prop_oneof![Just("inst"), Just("other")], spec), 0..3),
        prop::option::weighted(
            0.7,
            prop::option::weighted(
                0.8,
                prop_oneof![Just("Deployment"), Just("CronJob"), Just("Operator")],
            ),
        ),
    )
        .prop_map(
            |(
                namespace,
                inject_python,
                container_names,
                platform,
                instrumentations,
                owner_known,
            )| {
                ClusterSeed {
                    namespace,
                    inject_python,
                    container_names,
                    platform,
                    instrumentations,
                    owner_known,
                }
            },
        )
}

/// The cluster of `seed` around `pod`, twice: as a view built directly, and
/// as the documents `mutate`/`explain` would read (the pod first).
fn cluster_of(seed: &ClusterSeed, pod: &Value) -> (FileView, Vec<Document>) {
    let ns = seed.namespace;
    let mut view = FileView::default();
    let mut as_document = pod.clone();
    as_document["apiVersion"] = json!("v1");
    as_document["kind"] = json!("Pod");
    let mut docs = vec![as_document];
    let mut annotations = Map::new();
    for (key, value) in [
        (
            "instrumentation.opentelemetry.io/inject-python",
            seed.inject_python,
        ),
        (
            "instrumentation.opentelemetry.io/container-names",
            seed.container_names,
        ),
        (
            "instrumentation.opentelemetry.io/otel-python-platform",
            seed.platform,
        ),
    ] {
        if let Some(value) = value {
            view = view.with_namespace_annotation(ns, key, value);
            annotations.insert(key.into(), json!(value));
        }
    }
    docs.push(json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "annotations": annotations}}));
    for (name, spec) in &seed.instrumentations {
        view = view.with_instrumentation(ns, name, spec.clone());
        docs.push(json!({
            "apiVersion": "opentelemetry.io/v1alpha1",
            "kind": "Instrumentation",
            "metadata": {"name": name, "namespace": ns},
            "spec": spec,
        }));
    }
    let owner = &pod["metadata"]["ownerReferences"][0];
    if let (Some(known), Some(kind @ ("ReplicaSet" | "Job")), Some(name)) = (
        seed.owner_known,
        owner["kind"].as_str(),
        owner["name"].as_str(),
    ) {
        let controller = known.map(|kind| OwnerReference {
            api_version: "apps/v1".into(),
            kind: kind.into(),
            name: format!("{name}-top"),
            uid: "top".into(),
            controller: Some(true),
            ..Default::default()
        });
        view = view.with_workload(ns, kind, name, controller.clone());
        docs.push(json!({
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name, "namespace": ns, "ownerReferences": controller.into_iter().collect::<Vec<_>>()},
        }));
    }
    let docs = docs
        .into_iter()
        .enumerate()
        .map(|(i, value)| Document {
            index: i + 1,
            value,
        })
        .collect();
    (view, docs)
}

/// The JSON Patch of an AdmissionReview response, decoded.
fn response_patch(answer: &Value) -> Option<Value> {
    let encoded = answer["response"]["patch"].as_str()?;
    let bytes = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, encoded)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is JSON"))
}

proptest! {
    // Three copies of this join once disagreed (no namespace annotations
    // offline, no owners in the tests): the webhook's wire path, `admit`
    // and the offline path now decide alike, with a cluster that has
    // namespace annotations, Instrumentations and owners.
    #![proptest_config(proptest_config((cases() / 20).max(100)))]

    #[test]
    fn the_webhook_admit_and_offline_decide_alike(seed in pod_seed(), cluster in cluster_seed()) {
        let mut pod = build_pod(&seed);
        pod["metadata"]["namespace"] = json!(cluster.namespace);
        let (view, docs) = cluster_of(&cluster, &pod);
        let config = Config::default();

        // admit, directly.
        let typed = Pod::deserialize(&pod).expect("a pod");
        let base = Base::new(config.clone());
        let name = typed.metadata.name.as_deref().unwrap_or_default();
        let direct = admission::admit(&typed, cluster.namespace, name, Context { base: &base, cluster: &view });
        let direct_patch: Option<Value> = direct
            .patch()
            .map(|p| serde_json::from_slice(p.as_bytes()).expect("patch is JSON"));

        // The wire: an AdmissionReview through the Reviewer.
        let reviewer = Reviewer::new(config.clone(), Arc::new(view));
        let body = serde_json::to_vec(&review(&pod, cluster.namespace, "uid-3")).expect("json");
        let reviewed = reviewer.review(&body).expect("a review is answered");
        let answer: Value = serde_json::from_slice(&reviewed.body).expect("answer is JSON");
        prop_assert_eq!(reviewed.decision.outcome, direct.outcome);
        prop_assert_eq!(&reviewed.decision.reason, &direct.reason);
        prop_assert_eq!(&reviewed.decision.warnings, &direct.warnings);
        prop_assert_eq!(
            reviewed.decision.containers.iter().map(String::as_str).collect::<Vec<_>>(),
            direct.instrumented().collect::<Vec<_>>()
        );
        prop_assert_eq!(response_patch(&answer), direct_patch.clone());
        let warnings: Vec<String> = serde_json::from_value(
            answer["response"].get("warnings").cloned().unwrap_or(json!([])),
        )
        .expect("warnings are strings");
        prop_assert_eq!(&warnings, &direct.warnings);

        // Offline: the pod and the cluster as documents, as `mutate` reads them.
        let results = offline::admit_documents(&docs, &config, "default").expect("offline admits");
        let (_, _, result) = results
            .iter()
            .find(|(d, _, _)| *d == 0)
            .expect("the pod is admitted offline");
        prop_assert_eq!(result.admission.outcome, direct.outcome);
        prop_assert_eq!(&result.admission.reason, &direct.reason);
        prop_assert_eq!(&result.admission.warnings, &direct.warnings);
        let offline_patch: Option<Value> = result
            .admission
            .patch()
            .map(|p| serde_json::from_slice(p.as_bytes()).expect("patch is JSON"));
        prop_assert_eq!(&offline_patch, &direct_patch);
        // And what `mutate` writes is the pod the API server would store.
        let mut mutated = pod.clone();
        let patch = offline::document_patch(result).expect("offline patch");
        json_patch::patch(&mut mutated, &patch).expect("offline patch applies");
        prop_assert_eq!(mutated, apply_response(&pod, &answer));
    }
}

// ---------------------------------------------------------------- arbitrary JSON into the reviewer

fn json_key() -> impl Strategy<Value = String> {
    const KEYS: &[&str] = &[
        "apiVersion",
        "kind",
        "request",
        "uid",
        "operation",
        "resource",
        "group",
        "resource",
        "subResource",
        "namespace",
        "name",
        "generateName",
        "object",
        "metadata",
        "annotations",
        "labels",
        "ownerReferences",
        "controller",
        "spec",
        "containers",
        "initContainers",
        "image",
        "command",
        "args",
        "env",
        "value",
        "valueFrom",
        "volumes",
        "volumeMounts",
        "mountPath",
        "nodeSelector",
        "securityContext",
        "dryRun",
        "pod-template-hash",
        "instrumentation.opentelemetry.io/inject-python",
        "instrumentation.opentelemetry.io/container-names",
        "instrumentation.opentelemetry.io/otel-python-platform",
        "resource.opentelemetry.io/service.name",
    ];
    prop_oneof![3 => prop::sample::select(KEYS).prop_map(str::to_owned), 1 => text()]
}

fn arbitrary_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|f| json!(f)),
        text().prop_map(Value::String),
        prop::sample::select(
            &[
                "CREATE",
                "UPDATE",
                "pods",
                "",
                "cxtm",
                "python3",
                "true",
                "false",
                DEFAULT_NAME,
                DEFAULT_MOUNT_PATH
            ][..]
        )
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((json_key(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer in `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(
                    child,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// The fuzz target's oracle (fuzz/fuzz_targets/review.rs), on stable: any
/// answer is a JSON AdmissionReview for the request's uid, allowed, and a
/// patch applies to the request's pod and is not repeated on a second review.
fn review_oracle(reviewer: &Reviewer, body: &[u8]) -> Result<(), String> {
    let Ok(reviewed) = reviewer.review(body) else {
        return Ok(());
    };
    let answer: Value =
        serde_json::from_slice(&reviewed.body).map_err(|e| format!("answer is not JSON: {e}"))?;
    if answer["response"]["allowed"] != true {
        return Err(format!("denied: {answer}"));
    }
    let uid = answer["response"]["uid"]
        .as_str()
        .ok_or("no response.uid")?;
    if uid != reviewed.decision.uid {
        return Err(format!(
            "uid {uid:?} vs decision {:?}",
            reviewed.decision.uid
        ));
    }
    if answer["response"].get("patch").is_none() {
        return Ok(());
    }
    // serde skips unknown fields without checking their UTF-8: read leniently too.
    let request: Value = serde_json::from_slice(body)
        .or_else(|_| serde_json::from_str(&String::from_utf8_lossy(body)))
        .map_err(|e| format!("patched a non-JSON body: {e}"))?;
    if request["request"]["uid"].as_str() != Some(uid) {
        return Err("uid not the request's".into());
    }
    let pod = &request["request"]["object"];
    if !pod["metadata"].is_object() {
        // Out of contract (see RELIABILITY.md): the API server always sends
        // `metadata` as an object; without one the annotations cannot be added.
        return Ok(());
    }
    let patched = std::panic::catch_unwind(|| apply_response(pod, &answer))
        .map_err(|_| format!("patch does not apply: {answer}"))?;
    // The review reads only the pod fields it needs, so a pod that is broken
    // elsewhere can be patched; what must hold is that a valid pod stays valid.
    if Pod::deserialize(pod).is_ok() {
        Pod::deserialize(&patched).map_err(|e| format!("patched pod is not a Pod: {e}"))?;
    }
    let mut again = request.clone();
    again["request"]["object"] = patched;
    let second = reviewer
        .review(&serde_json::to_vec(&again).expect("json"))
        .map_err(|e| format!("second review refused: {e}"))?;
    let second: Value = serde_json::from_slice(&second.body).expect("json");
    if second["response"].get("patch").is_some() {
        return Err(format!("second review patched again: {second}"));
    }
    Ok(())
}

proptest! {
    // A seed review with one subtree replaced by arbitrary JSON, and
    // arbitrary JSON alone: never a panic, and the oracle holds.
    #![proptest_config(proptest_config((cases() / 5).max(200)))]

    #[test]
    fn reviews_with_an_arbitrary_subtree_hold_the_oracle(
        which in any::<prop::sample::Index>(),
        fixture_pick in 0..3usize,
        replacement in arbitrary_json(),
        alone in arbitrary_json(),
    ) {
        let reviewer = Reviewer::new(Config::default(), Arc::new(StaticView));
        let mut base = review(
            &fixture(["seed-pod.json", "deployment-pod.json", "seed-expected-pod.json"][fixture_pick]),
            NAMESPACE,
            "uid-arb",
        );
        let mut all = Vec::new();
        pointers(&base, String::new(), &mut all);
        let at = which.get(&all).clone();
        match base.pointer_mut(&at) {
            Some(slot) => *slot = replacement,
            None => prop_assert!(false, "pointer {at} not found"),
        }
        let body = serde_json::to_vec(&base).expect("json");
        if let Err(e) = review_oracle(&reviewer, &body) {
            prop_assert!(false, "{e}\nreplaced {at}\nreview: {base:#}");
        }
        let body = serde_json::to_vec(&alone).expect("json");
        if let Err(e) = review_oracle(&reviewer, &body) {
            prop_assert!(false, "{e}\nbody: {alone:#}");
        }
    }
}

// ---------------------------------------------------------------- regressions

#[test]
fn seed_fixtures_hold_the_properties() {
    for name in [
        "seed-pod.json",
        "deployment-pod.json",
        "seed-expected-pod.json",
    ] {
        check(&fixture(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}

/// Found by the property test: an app container named like our init container
/// got a second container of that name, and the API server would have
/// rejected the mutated pod. Now the pod is skipped with a reason.
#[test]
fn app_container_named_like_the_init_container_is_skipped_not_duplicated() {
    let pod = json!({
        "metadata": {"name": "p", "namespace": NAMESPACE},
        "spec": {"containers": [
            {"name": "app", "image": "app:1", "command": ["python3", "app.py"]},
            {"name": DEFAULT_NAME, "image": "x:1"}
        ]}
    });
    check(&pod).expect("properties hold");
    let (out, injection) = admit(&pod).expect("admitted");
    let injection = injection.expect("in scope");
    let Outcome::Skipped { reason } = &injection.outcome else {
        panic!("{:?}", injection.outcome)
    };
    assert!(reason.contains("app container named"), "{reason}");
    assert_eq!(out["spec"], pod["spec"]);
}
