//! Never block, proven by difference (issue 23). Hundreds of values for the
//! fields the patch takes from an Instrumentation or a pod annotation
//! (quantities, resource names incl. hugepages and extended resources,
//! fieldPaths, resourceFieldRefs, key refs, env names and values, images,
//! pull policies, claim templates, security contexts, exporter endpoints,
//! TLS secret names, annotations), each through the real API server with the
//! webhook in front:
//!
//! - no pod is refused: every create through the webhook succeeds;
//! - whether the value is valid is asked of the API server itself, not of
//!   our guard: the injected pod of a known-good Instrumentation, with the
//!   value put where the patch puts it, is created with `dryRun=All` in a
//!   namespace the webhook does not see (the judge);
//! - a value the judge accepts is injected; one it refuses is admitted
//!   uninstrumented with a warning naming the Instrumentation and the field.
//!
//! Two fields have a second, hand-written judge, because the guard is
//! stricter than the API server on purpose: image references the kubelet
//! cannot pull (InvalidImageName: the pod would never start), and env var
//! names that only API servers with relaxed env validation (1.32+) take.
//!
//! Only the control plane is needed (no node). Requests go straight to the
//! API server over HTTPS, many at a time, so the few hundred cases take
//! seconds rather than a kubectl process each.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::cluster::*;
use serde_json::{Value, json};

const INIT: &str = "opentelemetry-auto-instrumentation-python";
const ANNOTATION: &str = "instrumentation.opentelemetry.io/inject-python";
/// Opted in through the webhook's label; Instrumentations and pods live here.
const NS: &str = "diff";
/// Not selected by the webhook: where the API server judges placed pods.
const JUDGE_NS: &str = "judge";
const IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.54b1";

/// One value, where it goes, and how it is judged.
struct Case {
    /// The field the value is set in (what the warning must name).
    field: &'static str,
    shown: String,
    /// The Instrumentation's spec; `None` uses the known-good one.
    spec: Option<Value>,
    annotations: Vec<(&'static str, String)>,
    /// The known-good injected pod with the value where the patch puts it.
    placed: Value,
    /// The second, hand-written judge (see the module docs); `None` when
    /// the API server's word is the only one.
    also: Option<bool>,
}

fn base_spec() -> Value {
    json!({
        "exporter": {"endpoint": "http://collector.obs.svc:4318"},
        "python": {"image": IMAGE}
    })
}

fn pod(name: &str, instrumentation: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": {ANNOTATION: instrumentation}},
        "spec": {
            // Nobody schedules it: stored, never run.
            "schedulerName": "nobody",
            "containers": [{
                "name": "app",
                "image": "registry.example/shop:2.1",
                "command": ["python3", "app.py"],
                "env": [{"name": "SHOP_MODE", "value": "live"}]
            }]
        }
    })
}

/// `spec` with `value` at `path` (objects made on the way).
fn set(mut spec: Value, path: &[&str], value: Value) -> Value {
    let mut at = &mut spec;
    for key in &path[..path.len() - 1] {
        if !at[*key].is_object() {
            at[*key] = json!({});
        }
        at = &mut at[*key];
    }
    at[path[path.len() - 1]] = value;
    spec
}

fn named<'a>(list: &'a mut Value, name: &str) -> &'a mut Value {
    let shown = list.to_string();
    list.as_array_mut()
        .and_then(|items| items.iter_mut().find(|i| i["name"] == name))
        .unwrap_or_else(|| panic!("no {name} in {shown}"))
}

/// Where the patch puts each kind of value, in the known-good pod.
struct Placer {
    baseline: Value,
}

impl Placer {
    fn with(&self, change: impl FnOnce(&mut Value)) -> Value {
        let mut pod = self.baseline.clone();
        change(&mut pod);
        pod
    }
    fn init(&self, key: &str, value: Value) -> Value {
        self.with(|p| named(&mut p["spec"]["initContainers"], INIT)[key] = value)
    }
    fn app_env(&self, var: Value) -> Value {
        self.with(|p| {
            p["spec"]["containers"][0]["env"]
                .as_array_mut()
                .expect("env")
                .push(var)
        })
    }
    fn volume(&self, source: &str, value: Value) -> Value {
        self.with(|p| {
            let volume = named(&mut p["spec"]["volumes"], INIT);
            *volume = json!({"name": INIT, source: value});
        })
    }
    fn app_env_value(&self, name: &str, value: &str) -> Value {
        self.with(|p| named(&mut p["spec"]["containers"][0]["env"], name)["value"] = json!(value))
    }
    /// A volume from `spec.exporter.tls`, named as the operator names it
    /// (`naming.Truncate`: at most 63, the value cut by the excess, then
    /// non-alphanumerics trimmed from the ends), mounted in the app.
    fn tls_volume(&self, prefix: &str, source: Value) -> Value {
        let value = source["secretName"]
            .as_str()
            .or(source["name"].as_str())
            .unwrap_or_default()
            .to_owned();
        let excess = (prefix.len() + value.len()).saturating_sub(63);
        let kept = value
            .get(..value.len().saturating_sub(excess))
            .unwrap_or("");
        let name: String = format!("{prefix}{kept}")
            .trim_matches(|c: char| !c.is_ascii_alphanumeric())
            .to_owned();
        let key = if source.get("secretName").is_some() {
            "secret"
        } else {
            "configMap"
        };
        self.with(|p| {
            p["spec"]["volumes"]
                .as_array_mut()
                .expect("volumes")
                .push(json!({"name": name, key: source}));
            let app = &mut p["spec"]["containers"][0];
            if !app["volumeMounts"].is_array() {
                app["volumeMounts"] = json!([]);
            }
            app["volumeMounts"].as_array_mut().expect("mounts").push(
                json!({"name": name, "mountPath": format!("/otel-tls/{}", name), "readOnly": true}),
            );
        })
    }
}

fn case(field: &'static str, shown: impl Into<String>, spec: Value, placed: Value) -> Case {
    Case {
        field,
        shown: shown.into(),
        spec: Some(spec),
        annotations: vec![],
        placed,
        also: None,
    }
}

/// Quantities: signs, fractions, exponents and suffixes, combined.
fn quantities() -> Vec<String> {
    let numbers = [
        "0", "1", "2", "-1", "1.5", ".5", "5.", "+2", "0.001", "-0", "1e3", "3e+1",
    ];
    let suffixes = ["", "m", "Ki", "Mi", "Gi", "k", "M", "n"];
    let mut out: Vec<String> = numbers
        .iter()
        .flat_map(|n| suffixes.iter().map(move |s| format!("{n}{s}")))
        .collect();
    out.extend(
        [
            "200MB", "1 Gi", "lots", "1.2.3", "0x10", "1ki", "Mi", " 64Mi ", "1e",
        ]
        .map(str::to_owned),
    );
    out
}

fn quantity_cases(p: &Placer, out: &mut Vec<Case>) {
    let base = base_spec();
    for q in quantities() {
        let resources = json!({"limits": {"memory": q}});
        out.push(case(
            "spec.python.resourceRequirements",
            format!("limits.memory {q:?}"),
            set(
                base.clone(),
                &["python", "resourceRequirements"],
                resources.clone(),
            ),
            p.init("resources", resources),
        ));
        out.push(case(
            "spec.python.volumeLimitSize",
            format!("{q:?}"),
            set(base.clone(), &["python", "volumeLimitSize"], json!(q)),
            p.volume("emptyDir", json!({"sizeLimit": q})),
        ));
        let template = json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": q}}}});
        out.push(case(
            "spec.python.volumeClaimTemplate",
            format!("storage {q:?}"),
            set(
                base.clone(),
                &["python", "volumeClaimTemplate"],
                template.clone(),
            ),
            p.volume("ephemeral", json!({"volumeClaimTemplate": template})),
        ));
    }
}

fn resource_cases(p: &Placer, out: &mut Vec<Case>) {
    let base = base_spec();
    let mut all: Vec<Value> = vec![];
    for size in [
        "1", "2Mi", "4Mi", "1Gi", "3Mi", "2097152", "0", "-2Mi", "1.5Mi", "2Mi+1",
    ] {
        all.push(json!({"limits": {"hugepages-2Mi": size}}));
        all.push(json!({"limits": {"hugepages-2Mi": size, "memory": "64Mi"}}));
        all.push(json!({"requests": {"hugepages-2Mi": size, "cpu": "50m"}, "limits": {"hugepages-2Mi": "2Mi"}}));
    }
    all.push(json!({"requests": {"hugepages-2Mi": "1Gi", "cpu": "1"}, "limits": {"hugepages-2Mi": "1024Mi"}}));
    all.push(json!({"requests": {"hugepages-2Mi": "2Mi", "cpu": "1"}}));
    for name in [
        "cpu",
        "memory",
        "ephemeral-storage",
        "hugepages-1Gi",
        "hugepages-3",
        "hugepages-x",
        "hugepages-",
        "example.com/gpu",
        "nvidia.com/gpu",
        "gpu",
        "requests.example.com/x",
        "kubernetes.io/x",
        "Example.com/gpu",
        "example.com/",
        "a/b/c",
        "pods",
        "storage",
        "example.com/gpu.",
        "-x/y",
    ] {
        all.push(json!({"requests": {name: "1", "memory": "64Mi"}, "limits": {name: "1"}}));
    }
    for (request, limit) in [
        ("50m", "500m"),
        ("1", "500m"),
        ("1000m", "1"),
        ("0.5", "500m"),
        ("1.0001", "1"),
        ("100m", "0.1"),
        ("-1", "1"),
    ] {
        all.push(json!({"requests": {"cpu": request}, "limits": {"cpu": limit}}));
    }
    all.push(json!({"requests": {"example.com/gpu": "1.5"}, "limits": {"example.com/gpu": "1.5"}}));
    all.push(json!({"requests": {"example.com/gpu": "1"}, "limits": {"example.com/gpu": "2"}}));
    all.push(json!({"requests": {"example.com/gpu": "1"}}));
    all.push(json!({"claims": [{"name": "gpu"}]}));
    all.push(json!({}));
    for resources in all {
        out.push(case(
            "spec.python.resourceRequirements",
            resources.to_string(),
            set(
                base.clone(),
                &["python", "resourceRequirements"],
                resources.clone(),
            ),
            p.init("resources", resources),
        ));
    }
}

fn env_cases(p: &Placer, out: &mut Vec<Case>) {
    let base = base_spec();
    let mut vars: Vec<(Value, Option<bool>)> = vec![];
    for path in [
        "metadata.name",
        "metadata.namespace",
        "metadata.uid",
        "metadata.labels",
        "metadata.annotations",
        "metadata.labels['app']",
        "metadata.annotations['a.b/C']",
        "metadata.labels['a b']",
        "metadata.labels['']",
        "spec.nodeName",
        "spec.host",
        "spec.serviceAccountName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "status.phase",
        "status.hostIP",
        "status.hostIPs",
        "status.podIP",
        "status.podIPs",
        "spec.nope",
        "metadata.name ",
        "",
        "spec.containers[0].name",
        "metadata.generateName",
        "spec.containers['app']",
    ] {
        vars.push((
            json!({"name": "V", "valueFrom": {"fieldRef": {"fieldPath": path}}}),
            None,
        ));
    }
    for version in ["v1", "v2", "apps/v1", ""] {
        vars.push((
            json!({"name": "V", "valueFrom": {"fieldRef": {"apiVersion": version, "fieldPath": "metadata.name"}}}),
            None,
        ));
    }
    for resource in [
        "limits.cpu",
        "requests.memory",
        "limits.ephemeral-storage",
        "requests.hugepages-2Mi",
        "limits.gpu",
        "",
        "cpu",
    ] {
        vars.push((
            json!({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": resource}}}),
            None,
        ));
    }
    for divisor in [
        "1m", "1", "1Mi", "1024", "1000", "1k", "2", "1e3", "0", "1Gi",
    ] {
        for resource in ["limits.memory", "requests.cpu"] {
            vars.push((
                json!({"name": "V", "valueFrom": {"resourceFieldRef": {"resource": resource, "divisor": divisor}}}),
                None,
            ));
        }
    }
    for (name, key) in [
        ("cfg", "k"),
        ("Cfg", "k"),
        ("a.b", "a.b"),
        ("", "k"),
        ("a_b", "k"),
        ("cfg", "..x"),
        ("cfg", "."),
        ("cfg", ""),
        ("cfg", "a b"),
        ("cfg", "A-Z_0.9"),
    ] {
        for source in ["configMapKeyRef", "secretKeyRef"] {
            vars.push((
                json!({"name": "V", "valueFrom": {source: {"name": name, "key": key}}}),
                None,
            ));
        }
    }
    let long = format!("{}.{}", "a".repeat(70), "b".repeat(10));
    vars.push((
        json!({"name": "V", "valueFrom": {"configMapKeyRef": {"name": long, "key": "k"}}}),
        None,
    ));
    vars.push((json!({"name": "V", "value": "x", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}), None));
    vars.push((json!({"name": "V", "valueFrom": {}}), None));
    // Names: the portable ones (every supported API server) and the ones
    // only a relaxed API server takes: the second judge.
    for (name, portable) in [
        ("OTEL_X", true),
        ("_A", true),
        ("a.b-c", true),
        ("1A", false),
        ("A B", false),
        ("A=B", false),
        ("", false),
        ("Ä", false),
        ("-a", true),
        ("x:y", false),
    ] {
        vars.push((json!({"name": name, "value": "v"}), Some(portable)));
    }
    for value in [
        "",
        "plain",
        "$(OTEL_NODE_IP)",
        "multi\nline",
        "ünï",
        "$(",
        "'\"\\",
    ] {
        vars.push((json!({"name": "V", "value": value}), None));
    }
    for (var, also) in vars {
        for (field, path) in [
            ("spec.python.env", &["python", "env"][..]),
            ("spec.env", &["env"][..]),
        ] {
            let mut c = case(
                field,
                var.to_string(),
                set(base.clone(), path, json!([var.clone()])),
                p.app_env(var.clone()),
            );
            c.also = also;
            out.push(c);
        }
    }
}

fn image_cases(p: &Placer, out: &mut Vec<Case>) {
    let base = base_spec();
    // With the kubelet's verdict (the second judge), by hand.
    let digest = format!("img@sha256:{}", "0a".repeat(32));
    for (image, kubelet) in [
        ("python", true),
        ("python:3.12", true),
        ("ghcr.io/a/b:1", true),
        ("Python", false),
        (" python", false),
        ("python ", false),
        ("img:", false),
        ("localhost:5000/a", true),
        ("a//b", false),
        ("registry.example/Team/img", false),
        (digest.as_str(), true),
        ("img@sha256:short", false),
        ("x:y:z", false),
        ("[::1]:5000/img", true),
    ] {
        let mut c = case(
            "spec.python.image",
            format!("{image:?}"),
            set(base.clone(), &["python", "image"], json!(image)),
            p.init("image", json!(image)),
        );
        c.also = Some(kubelet);
        out.push(c);
    }
    for policy in [
        "Always",
        "IfNotPresent",
        "Never",
        "always",
        "Sometimes",
        " Never",
    ] {
        out.push(case(
            "spec.imagePullPolicy",
            policy,
            set(base.clone(), &["imagePullPolicy"], json!(policy)),
            p.init("imagePullPolicy", json!(policy)),
        ));
    }
}

fn claim_cases(p: &Placer, out: &mut Vec<Case>) {
    let base = base_spec();
    let storage = json!({"requests": {"storage": "1Gi"}});
    let templates = [
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}}),
        json!({"spec": {"accessModes": [], "resources": storage}}),
        json!({"spec": {"resources": storage}}),
        json!({"spec": {"accessModes": ["ReadWriteSometimes"], "resources": storage}}),
        json!({"spec": {"accessModes": ["ReadWriteOncePod", "ReadOnlyMany"], "resources": storage}}),
        json!({"spec": {"accessModes": ["ReadWriteOnce"]}}),
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": storage, "storageClassName": "fast"}}),
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": storage, "storageClassName": "Fast_SSD"}}),
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": storage, "volumeMode": "Filesystem"}}),
        json!({"metadata": {"labels": {"team": "obs"}}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}}),
        json!({"metadata": {"labels": {"team": "not ok"}}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}}),
        json!({"metadata": {"annotations": {"a.b/c": "x"}}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}}),
        json!({"metadata": {"annotations": {"bad key!": "x"}}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}}),
        json!({"metadata": {"name": "mine"}, "spec": {"accessModes": ["ReadWriteOnce"], "resources": storage}}),
        json!({"spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}, "limits": {"storage": "2Gi"}}}}),
    ];
    for template in templates {
        out.push(case(
            "spec.python.volumeClaimTemplate",
            template.to_string(),
            set(
                base.clone(),
                &["python", "volumeClaimTemplate"],
                template.clone(),
            ),
            p.volume("ephemeral", json!({"volumeClaimTemplate": template})),
        ));
    }
}

fn exporter_cases(p: &Placer, out: &mut Vec<Case>) {
    let base = base_spec();
    for endpoint in [
        "http://c:4318",
        "https://$(OTEL_NODE_IP):4318",
        "not a url",
        "grpc://x:4317",
        "ünï",
        "http://[::1]:4318/v1",
        "\t",
    ] {
        out.push(case(
            "spec.exporter.endpoint",
            format!("{endpoint:?}"),
            set(base.clone(), &["exporter", "endpoint"], json!(endpoint)),
            p.app_env_value("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint),
        ));
    }
    let long = "a".repeat(60);
    let very_long = format!("{}.{}", "a".repeat(60), "b".repeat(60));
    for name in [
        "otlp-client",
        "my.certs",
        "A",
        long.as_str(),
        very_long.as_str(),
        "x_y",
        "a-",
    ] {
        out.push(case(
            "spec.exporter.tls.secretName",
            format!("{name:?}"),
            set(
                base.clone(),
                &["exporter", "tls"],
                json!({"secretName": name}),
            ),
            p.tls_volume("otel-auto-secret-", json!({"secretName": name})),
        ));
        out.push(case(
            "spec.exporter.tls.configMapName",
            format!("{name:?}"),
            set(
                base.clone(),
                &["exporter", "tls"],
                json!({"configMapName": name}),
            ),
            p.tls_volume("otel-auto-configmap-", json!({"name": name})),
        ));
    }
}

/// Values the patch does not put where the API server validates them: the
/// pod stays the known-good one, and each must still inject.
fn unvalidated_cases(p: &Placer, out: &mut Vec<Case>) {
    let base = base_spec();
    for context in [
        json!({"runAsUser": -1}),
        json!({"privileged": true}),
        json!({"capabilities": {"add": ["NOT_A_CAP"]}}),
        json!("not an object"),
    ] {
        out.push(case(
            "spec.initContainerSecurityContext",
            context.to_string(),
            set(base.clone(), &["initContainerSecurityContext"], context),
            p.baseline.clone(),
        ));
    }
    for annotation in [
        "instrumentation.opentelemetry.io/container-names",
        "resource.opentelemetry.io/service.name",
        "instrumentation.opentelemetry.io/otel-python-platform",
    ] {
        for value in ["app", " app", "app,app", "ünï", "glibc", "musl"] {
            // container-names must name the container to inject it; the
            // platform must be one of the two: by hand, the second judge.
            let also = match annotation {
                a if a.ends_with("container-names") => {
                    Some(value.split(',').any(|v| v.trim() == "app"))
                }
                a if a.ends_with("platform") => Some(matches!(value, "glibc" | "musl")),
                _ => None,
            };
            out.push(Case {
                field: annotation,
                shown: format!("{value:?}"),
                spec: None,
                annotations: vec![(annotation, value.to_owned())],
                placed: p.baseline.clone(),
                also,
            });
        }
    }
}

/// The API server over HTTPS with the admin token: warnings are headers.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    url: String,
    token: String,
}

struct Answer {
    status: u16,
    body: Value,
    warnings: String,
}

impl Api {
    fn new(plane: &ControlPlane) -> Self {
        let ca = std::fs::read(plane.var("APISERVER_CA_FILE")).expect("CA");
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(&ca).expect("CA pem"))
            .no_proxy()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client");
        Api {
            client,
            url: plane.var("APISERVER_URL").to_owned(),
            token: plane.var("APISERVER_TOKEN").to_owned(),
        }
    }

    async fn post(&self, path: &str, body: &Value) -> Answer {
        let response = self
            .client
            .post(format!("{}{path}", self.url))
            .bearer_auth(&self.token)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        let status = response.status().as_u16();
        let warnings = response
            .headers()
            .get_all("warning")
            .iter()
            .map(|w| String::from_utf8_lossy(w.as_bytes()).into_owned())
            .collect::<Vec<_>>()
            .join("\n");
        let body = response.json().await.unwrap_or(Value::Null);
        Answer {
            status,
            body,
            warnings,
        }
    }

    async fn pod(&self, namespace: &str, pod: &Value, dry_run: bool) -> Answer {
        let query = if dry_run { "?dryRun=All" } else { "" };
        self.post(&format!("/api/v1/namespaces/{namespace}/pods{query}"), pod)
            .await
    }
}

/// A pod as created, made into one to create again: server fields dropped.
fn recreatable(mut pod: Value, name: &str) -> Value {
    if let Some(meta) = pod["metadata"].as_object_mut() {
        for key in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "managedFields",
            "namespace",
        ] {
            meta.remove(key);
        }
        meta.insert("name".into(), json!(name));
    }
    if let Some(annotations) = pod["metadata"]["annotations"].as_object_mut() {
        annotations.remove(ANNOTATION);
    }
    if let Some(object) = pod.as_object_mut() {
        object.remove("status");
    }
    pod
}

fn injected(pod: &Value) -> bool {
    has_init_container(pod, INIT)
}

/// Runs one case: the judge's verdict, then the create through the webhook.
async fn run(api: Api, i: usize, case: Arc<Case>) -> Result<bool, String> {
    let judged = api
        .pod(
            JUDGE_NS,
            &recreatable(case.placed.clone(), &format!("j{i}")),
            true,
        )
        .await;
    let valid = judged.status < 300;
    let instrumentation = if case.spec.is_some() {
        format!("v{i}")
    } else {
        "base".to_owned()
    };
    let mut pod = pod(&format!("p{i}"), &instrumentation);
    for (key, value) in &case.annotations {
        pod["metadata"]["annotations"][*key] = json!(value);
    }
    let created = api.pod(NS, &pod, false).await;
    let what = format!("{} = {} (case {i})", case.field, case.shown);
    if created.status >= 300 {
        return Err(format!(
            "REFUSED {what}: {} {}",
            created.status, created.body["message"]
        ));
    }
    let expected = valid && case.also.unwrap_or(true);
    let got = injected(&created.body);
    if got != expected {
        return Err(format!(
            "{what}: the API server {} it{}, but the pod was {}; judge: {}; warnings: {}",
            if valid { "accepts" } else { "refuses" },
            match case.also {
                Some(ok) => format!(" and the second judge says {ok}"),
                None => String::new(),
            },
            if got { "injected" } else { "not injected" },
            judged.body["message"],
            created.warnings
        ));
    }
    if !got && case.spec.is_some() {
        let names = created
            .warnings
            .contains(&format!("{NS}/{instrumentation}"))
            && created.warnings.contains(case.field);
        if !names {
            return Err(format!(
                "{what}: admitted uninstrumented, but the warning does not name {NS}/{instrumentation} and {}: {:?}",
                case.field, created.warnings
            ));
        }
    }
    Ok(valid)
}

#[test]
#[cfg_attr(
    skip_e2e,
    ignore = "OTEL_INJECTOR_SKIP_E2E=1: needs the real control plane"
)]
fn no_value_blocks_a_pod_and_valid_values_inject() {
    let plane = ControlPlane::up("differential");
    plane.install_instrumentation_crd();
    let config = plane.state_dir.join("config.yaml");
    std::fs::write(&config, "namespaces: []\n").expect("config");
    let webhook = Webhook::start(&plane, &["--config", config.to_str().expect("utf-8")]);
    plane.namespace(NS, &[("otel-injector.io/injection", "enabled")]);
    plane.namespace(JUDGE_NS, &[]);
    plane.register_webhook(&webhook.url());
    let api = Api::new(&plane);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let instrumentation = |name: &str, spec: &Value| {
        json!({
            "apiVersion": "opentelemetry.io/v1alpha1",
            "kind": "Instrumentation",
            "metadata": {"name": name, "namespace": NS},
            "spec": spec
        })
    };
    let path = format!("/apis/opentelemetry.io/v1alpha1/namespaces/{NS}/instrumentations");
    plane.apply(&instrumentation("base", &base_spec()));

    // The known-good injected pod, as stored (dry run) through the webhook.
    let baseline = eventually(
        "the webhook to use the base Instrumentation",
        Duration::from_secs(60),
        || {
            let answer = runtime.block_on(api.pod(NS, &pod("baseline", "base"), true));
            injected(&answer.body).then_some(answer.body)
        },
    );
    let placer = Placer { baseline };
    let judged =
        runtime.block_on(api.pod(JUDGE_NS, &recreatable(placer.baseline.clone(), "j"), true));
    assert!(
        judged.status < 300,
        "the judge takes the known-good pod: {}",
        judged.body
    );

    let mut cases = vec![];
    quantity_cases(&placer, &mut cases);
    resource_cases(&placer, &mut cases);
    env_cases(&placer, &mut cases);
    image_cases(&placer, &mut cases);
    claim_cases(&placer, &mut cases);
    exporter_cases(&placer, &mut cases);
    unvalidated_cases(&placer, &mut cases);
    assert!(cases.len() >= 200, "{} cases", cases.len());

    let started = Instant::now();
    let cases: Vec<Arc<Case>> = cases.into_iter().map(Arc::new).collect();
    let outcomes: Vec<Result<bool, String>> = runtime.block_on(async {
        // The CRD keeps unknown fields and does not type values: every
        // Instrumentation is stored, however odd.
        let semaphore = Arc::new(tokio::sync::Semaphore::new(16));
        let mut posts = tokio::task::JoinSet::new();
        for (i, case) in cases.iter().enumerate() {
            let Some(spec) = &case.spec else { continue };
            let (api, body, path, semaphore) = (
                api.clone(),
                instrumentation(&format!("v{i}"), spec),
                path.clone(),
                semaphore.clone(),
            );
            posts.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                let answer = api.post(&path, &body).await;
                assert!(answer.status < 300, "Instrumentation v{i}: {}", answer.body);
            });
        }
        while let Some(done) = posts.join_next().await {
            done.expect("post task");
        }
        // The webhook's watch delivers in order: once it uses one more,
        // posted last, it has seen them all.
        let sentinel = api
            .post(&path, &instrumentation("sentinel", &base_spec()))
            .await;
        assert!(sentinel.status < 300, "{}", sentinel.body);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !injected(&api.pod(NS, &pod("sentinel", "sentinel"), true).await.body) {
            assert!(
                Instant::now() < deadline,
                "the webhook never saw the Instrumentations"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let mut runs = tokio::task::JoinSet::new();
        for (i, case) in cases.iter().enumerate() {
            let (api, case, semaphore) = (api.clone(), case.clone(), semaphore.clone());
            runs.spawn(async move {
                let _permit = semaphore.acquire_owned().await;
                (i, run(api, i, case).await)
            });
        }
        let mut outcomes: Vec<(usize, Result<bool, String>)> = vec![];
        while let Some(done) = runs.join_next().await {
            outcomes.push(done.expect("case task"));
        }
        outcomes.sort_by_key(|(i, _)| *i);
        outcomes.into_iter().map(|(_, o)| o).collect()
    });
    let valid = outcomes.iter().filter(|o| matches!(o, Ok(true))).count();
    let failures: Vec<&String> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    eprintln!(
        "{} values: {valid} valid to the API server, {} refused by it; {} wrong; {:.1}s",
        cases.len(),
        outcomes.iter().filter(|o| matches!(o, Ok(false))).count(),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    let mut fields: Vec<&str> = cases.iter().map(|c| c.field).collect();
    fields.sort_unstable();
    fields.dedup();
    eprintln!("{} fields: {}", fields.len(), fields.join(", "));
    assert!(
        failures.is_empty(),
        "{} of {} values went wrong:\n{}",
        failures.len(),
        cases.len(),
        failures
            .iter()
            .map(|f| f.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    // Both sides of the difference were exercised.
    assert!(valid > 100 && valid < cases.len() - 50, "{valid} valid");
}
