//! Offline mode: the webhook's mutation applied to manifests (`mutate`) and
//! explained in words (`explain`), with no cluster. Same config, same policy,
//! same patch as admission.
//!
//! Documents are read with serde (serde_yaml_ng): key order is kept, comments
//! and YAML anchors are not (the output is plain YAML).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde_json::{Value, json};

use crate::admission::{self, Admission, Base, Context};
use crate::config::{Config, Delivery};
use crate::inject::workload::{self, Workload};
use crate::inject::{Injection, Outcome, Settings};
use crate::k8s::instrumentation;
use crate::policy::{self, ClusterView, Scope};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OfflineError {
    /// The input is not a YAML stream; `index` counts documents from 1.
    #[error("document {index}: invalid YAML: {message}")]
    Yaml { index: usize, message: String },
    /// A document's field cannot be read as Kubernetes expects it.
    #[error("{document}: field {field}: {message}")]
    Field {
        document: String,
        field: String,
        message: String,
    },
    /// The result for a document cannot be written out (a bug on our side,
    /// reported instead of printing nothing).
    #[error("{document}: cannot write the result: {message}")]
    Render { document: String, message: String },
}

/// One input document and, where it holds a pod template, what admission would do.
pub struct Document {
    pub index: usize,
    pub value: Value,
}

/// Splits a YAML stream into documents (empty ones dropped).
pub fn read_documents(text: &str) -> Result<Vec<Document>, OfflineError> {
    let mut out = Vec::new();
    for (index, de) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
        let value: Value = serde::Deserialize::deserialize(de).map_err(|e| OfflineError::Yaml {
            index: index + 1,
            message: e.to_string(),
        })?;
        if !value.is_null() {
            out.push(Document {
                index: index + 1,
                value,
            });
        }
    }
    Ok(out)
}

/// Where the pod template of a workload kind lives, as JSON pointer segments.
pub fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    Some(match kind {
        "Pod" => &[],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => &["spec", "template"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template"],
        _ => return None,
    })
}

fn describe(doc: &Value, index: usize) -> String {
    let kind = doc["kind"].as_str().unwrap_or("document");
    match doc["metadata"]["name"].as_str() {
        Some(name) => format!("{kind} {name} (document {index})"),
        None => format!("{kind} (document {index})"),
    }
}

/// A cluster held in memory: Instrumentation resources (raw `spec` by
/// namespace and name), namespace annotations, and workloads with their
/// controllers. `mutate` and `explain` fill it from their input
/// ([`FileView::from_documents`]); the `with_*` methods build one directly.
#[derive(Clone, Debug, Default)]
pub struct FileView {
    instrumentations: BTreeMap<(String, String), Value>,
    namespace_annotations: BTreeMap<String, BTreeMap<String, String>>,
    /// `(namespace, kind, name)` of each workload, and its controller.
    workloads: BTreeMap<(String, String, String), Option<OwnerReference>>,
}

impl FileView {
    /// Instrumentations, Namespaces (their annotations) and workloads of
    /// the documents, as a cluster holding them would answer.
    pub fn from_documents(docs: &[Document], default_namespace: &str) -> Self {
        let mut view = FileView::default();
        for doc in docs {
            for item in items(&doc.value) {
                let kind = item["kind"].as_str().unwrap_or_default();
                let name = item["metadata"]["name"].as_str().unwrap_or_default();
                let namespace = item["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(default_namespace);
                if kind == instrumentation::KIND
                    && item["apiVersion"]
                        .as_str()
                        .is_some_and(|v| v.starts_with(instrumentation::GROUP))
                {
                    view = view.with_instrumentation(namespace, name, item["spec"].clone());
                } else if kind == "Namespace" && item["apiVersion"] == "v1" {
                    let annotations = item["metadata"]["annotations"].as_object();
                    for (key, value) in annotations.into_iter().flatten() {
                        if let Some(value) = value.as_str() {
                            view = view.with_namespace_annotation(name, key, value);
                        }
                    }
                } else if kind != "Pod" && template_path(kind).is_some() {
                    let owners: Option<Vec<OwnerReference>> =
                        serde_json::from_value(item["metadata"]["ownerReferences"].clone()).ok();
                    let controller = workload::controller(owners.as_deref()).cloned();
                    view.workloads.insert(
                        (namespace.to_owned(), kind.to_owned(), name.to_owned()),
                        controller,
                    );
                }
            }
        }
        view
    }

    /// Adds (or replaces) Instrumentation `namespace/name` with this raw `spec`.
    pub fn with_instrumentation(mut self, namespace: &str, name: &str, spec: Value) -> Self {
        self.instrumentations
            .insert((namespace.to_owned(), name.to_owned()), spec);
        self
    }

    /// Adds an annotation to `namespace`.
    pub fn with_namespace_annotation(mut self, namespace: &str, key: &str, value: &str) -> Self {
        self.namespace_annotations
            .entry(namespace.to_owned())
            .or_default()
            .insert(key.to_owned(), value.to_owned());
        self
    }

    /// Adds a workload (a ReplicaSet or Job, say) and its controller.
    pub fn with_workload(
        mut self,
        namespace: &str,
        kind: &str,
        name: &str,
        controller: Option<OwnerReference>,
    ) -> Self {
        self.workloads.insert(
            (namespace.to_owned(), kind.to_owned(), name.to_owned()),
            controller,
        );
        self
    }
}

impl ClusterView for FileView {
    fn instrumentation(
        &self,
        namespace: &str,
        name: &str,
        base: &Settings,
    ) -> Option<Result<Settings, String>> {
        let spec = self
            .instrumentations
            .get(&(namespace.to_owned(), name.to_owned()))?;
        Some(instrumentation::settings_for(
            namespace,
            name,
            Some(spec),
            base,
        ))
    }
    fn instrumentations_in(&self, namespace: &str) -> Vec<String> {
        instrumentation::names_in(
            namespace,
            self.instrumentations
                .keys()
                .map(|(ns, name)| (ns.as_str(), name.as_str())),
        )
    }
    fn namespace_annotations(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespace_annotations.get(namespace).cloned()
    }
    fn workload(&self, pod: &Pod, namespace: &str) -> Option<Workload> {
        workload::from_owners(pod, |kind, name| {
            self.workloads
                .get(&(namespace.to_owned(), kind.to_owned(), name.to_owned()))
                .cloned()
        })
    }
}

fn items(doc: &Value) -> Vec<&Value> {
    if doc["kind"] == "List" {
        doc["items"]
            .as_array()
            .map(|a| a.iter().collect())
            .unwrap_or_default()
    } else {
        vec![doc]
    }
}

/// The admission result for one pod template.
pub struct TemplateResult {
    pub label: String,
    pub namespace: String,
    /// JSON pointer of the template inside the document (`""` for a Pod).
    pub prefix: Vec<String>,
    /// What the webhook would decide for a pod made from the template.
    pub admission: Admission,
    /// A warning only a manifest can earn: the `inject-python` family of
    /// annotations on the workload's own metadata, which no pod carries.
    pub misplaced: Option<String>,
    /// Names of the template's app containers, in order.
    pub containers: Vec<String>,
}

/// The pod a workload's controller would create from its template: the
/// template's metadata and spec, the workload as its controlling owner.
fn template_pod(item: &Value, pointer: &str, label: &str) -> Result<Pod, OfflineError> {
    let template = item.pointer(pointer).unwrap_or(&Value::Null);
    let kind = item["kind"].as_str().unwrap_or_default();
    let name = item["metadata"]["name"].as_str().unwrap_or_default();
    let mut pod_value = json!({"apiVersion": "v1", "kind": "Pod", "metadata": template["metadata"].clone(), "spec": template["spec"].clone()});
    if kind == "Pod" {
        pod_value["metadata"] = item["metadata"].clone();
    } else {
        if !pod_value["metadata"].is_object() {
            pod_value["metadata"] = json!({});
        }
        if pod_value["metadata"]["name"].is_null() {
            pod_value["metadata"]["generateName"] = json!(format!("{name}-"));
        }
        // The webhook learns the workload from the pod's owner, through the
        // cluster view; the view of the documents answers the same way.
        pod_value["metadata"]["ownerReferences"] = json!([{
            "apiVersion": item["apiVersion"].clone(),
            "kind": kind,
            "name": name,
            "uid": "",
            "controller": true,
        }]);
    }
    serde_json::from_value(pod_value).map_err(|e| OfflineError::Field {
        document: label.to_owned(),
        field: if pointer.is_empty() {
            "spec".to_owned()
        } else {
            format!("{pointer}/spec")
        },
        message: e.to_string(),
    })
}

/// The `inject-python` family of annotations set on a workload's own
/// metadata rather than its pod template: the webhook only sees pods.
fn misplaced_annotations(item: &Value, pointer: &str) -> Option<String> {
    let kind = item["kind"].as_str().unwrap_or_default();
    if kind == "Pod" {
        return None;
    }
    let template_annotations = item.pointer(pointer).map(|t| &t["metadata"]["annotations"]);
    let misplaced: Vec<&str> = [
        policy::INJECT_PYTHON,
        policy::CONTAINER_NAMES,
        policy::PYTHON_CONTAINER_NAMES,
        policy::PYTHON_PLATFORM,
    ]
    .into_iter()
    .filter(|key| {
        item["metadata"]["annotations"].get(*key).is_some()
            && template_annotations.and_then(|a| a.get(*key)).is_none()
    })
    .collect();
    (!misplaced.is_empty()).then(|| {
        format!(
            "{} set on the {kind}'s own metadata, which the webhook never sees: put it under {pointer}/metadata/annotations (the pod template)",
            misplaced.join(", ")
        )
    })
}

/// Runs admission, as the webhook would, over a workload's pod template.
fn admit_template(
    item: &Value,
    label: String,
    prefix: Vec<String>,
    context: Context<'_>,
    default_ns: &str,
) -> Result<TemplateResult, OfflineError> {
    let pointer: String = prefix.iter().map(|s| format!("/{s}")).collect();
    let pod = template_pod(item, &pointer, &label)?;
    let namespace = item["metadata"]["namespace"]
        .as_str()
        .unwrap_or(default_ns)
        .to_owned();
    // What the API server puts in `request.name`: the pod's name, empty for
    // a `generateName` pod.
    let request_name = pod.metadata.name.as_deref().unwrap_or_default();
    let admission = admission::admit(&pod, &namespace, request_name, context);
    let containers = pod
        .spec
        .iter()
        .flat_map(|s| s.containers.iter().map(|c| c.name.clone()))
        .collect();
    Ok(TemplateResult {
        label,
        namespace,
        prefix,
        admission,
        misplaced: misplaced_annotations(item, &pointer),
        containers,
    })
}

/// Every pod template in the documents, with its admission result.
pub fn admit_documents(
    docs: &[Document],
    config: &Config,
    default_ns: &str,
) -> Result<Vec<(usize, Option<usize>, TemplateResult)>, OfflineError> {
    let base = Base::new(config.clone());
    let view = FileView::from_documents(docs, default_ns);
    let context = Context {
        base: &base,
        cluster: &view,
    };
    let mut out = Vec::new();
    for (d, doc) in docs.iter().enumerate() {
        let is_list = doc.value["kind"] == "List";
        for (i, item) in items(&doc.value).into_iter().enumerate() {
            let Some(path) = item["kind"].as_str().and_then(template_path) else {
                continue;
            };
            let label = describe(item, doc.index);
            let prefix = path.iter().map(|s| (*s).to_owned()).collect();
            let result = admit_template(item, label, prefix, context, default_ns)?;
            out.push((d, is_list.then_some(i), result));
        }
    }
    Ok(out)
}

/// The patch of a template result with paths inside its document.
pub fn document_patch(result: &TemplateResult) -> Result<json_patch::Patch, OfflineError> {
    let Some(injection) = &result.admission.injection else {
        return Ok(json_patch::Patch(Vec::new()));
    };
    let render = |message: String| OfflineError::Render {
        document: result.label.clone(),
        message,
    };
    let mut ops = Vec::new();
    // Guard the container indexes the patch uses: against a live object whose
    // containers moved, `kubectl patch` then fails instead of patching the wrong one.
    for (index, name) in result.containers.iter().enumerate() {
        if !injection
            .containers
            .iter()
            .any(|c| c.instrumented && &c.name == name)
        {
            continue;
        }
        let index = index.to_string();
        let path = json_patch::jsonptr::PointerBuf::from_tokens(
            result.prefix.iter().map(String::as_str).chain([
                "spec",
                "containers",
                index.as_str(),
                "name",
            ]),
        );
        ops.push(json_patch::PatchOperation::Test(
            json_patch::TestOperation {
                path,
                value: Value::String(name.clone()),
            },
        ));
    }
    let operations = injection
        .patch
        .to_operations()
        .map_err(|e| render(format!("the webhook's patch does not parse: {e}")))?;
    for op in operations.0 {
        let json_patch::PatchOperation::Add(add) = op else {
            return Err(render(format!(
                "the webhook's patch holds an operation other than add: {op:?}"
            )));
        };
        let mut path =
            json_patch::jsonptr::PointerBuf::from_tokens(result.prefix.iter().map(String::as_str));
        for token in add.path.tokens() {
            path.push_back(token);
        }
        ops.push(json_patch::PatchOperation::Add(json_patch::AddOperation {
            path,
            value: add.value,
        }));
    }
    Ok(json_patch::Patch(ops))
}

/// Output of `mutate`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// The documents, mutated, as YAML.
    Yaml,
    /// A JSON Patch per document and a `kubectl patch` command that applies it.
    Patch,
    /// A unified diff of each changed document.
    Diff,
}

pub fn mutate(
    text: &str,
    config: &Config,
    default_ns: &str,
    format: OutputFormat,
) -> Result<String, OfflineError> {
    let docs = read_documents(text)?;
    let results = admit_documents(&docs, config, default_ns)?;
    let mut mutated: Vec<Value> = docs.iter().map(|d| d.value.clone()).collect();
    let mut out = String::new();
    for (d, list_index, result) in &results {
        let patch = document_patch(result)?;
        if patch.0.is_empty() {
            continue;
        }
        let target = match list_index {
            Some(i) => &mut mutated[*d]["items"][*i],
            None => &mut mutated[*d],
        };
        json_patch::patch(target, &patch).map_err(|e| OfflineError::Field {
            document: result.label.clone(),
            field: "spec".into(),
            message: format!("patch does not apply: {e}"),
        })?;
        if format == OutputFormat::Patch {
            let item = match list_index {
                Some(i) => &docs[*d].value["items"][*i],
                None => &docs[*d].value,
            };
            write_patch(&mut out, item, result, &patch)?;
        }
    }
    match format {
        OutputFormat::Patch => {
            if out.is_empty() {
                out.push_str("# nothing to patch: no document would be instrumented\n");
            }
            Ok(out)
        }
        OutputFormat::Yaml => Ok(docs
            .iter()
            .zip(&mutated)
            .map(|(doc, value)| to_yaml(value, doc))
            .collect::<Result<Vec<_>, _>>()?
            .join("---\n")),
        OutputFormat::Diff => diff(&docs, &mutated),
    }
}

/// One document's JSON Patch and the `kubectl patch` command that applies it.
fn write_patch(
    out: &mut String,
    item: &Value,
    result: &TemplateResult,
    patch: &json_patch::Patch,
) -> Result<(), OfflineError> {
    let render = |e: serde_json::Error| OfflineError::Render {
        document: result.label.clone(),
        message: e.to_string(),
    };
    let patch_json = serde_json::to_string(patch).map_err(render)?;
    let kind = item["kind"]
        .as_str()
        .unwrap_or_default()
        .to_ascii_lowercase();
    let name = item["metadata"]["name"].as_str().unwrap_or_default();
    let namespace = &result.namespace;
    let _ = writeln!(out, "# {}", result.label);
    let _ = writeln!(
        out,
        "{}",
        serde_json::to_string_pretty(patch).map_err(render)?
    );
    let _ = writeln!(
        out,
        "# computed from the input; for a live object, pipe it in: kubectl get {kind} {name} -n {namespace} -o yaml | otel-injector mutate -f - -o patch",
    );
    let _ = writeln!(
        out,
        "kubectl patch {kind} {name} -n {namespace} --type=json -p '{}'\n",
        patch_json.replace('\'', "'\\''")
    );
    Ok(())
}

/// A unified diff of each document that changed.
fn diff(docs: &[Document], mutated: &[Value]) -> Result<String, OfflineError> {
    let mut out = String::new();
    for (doc, new) in docs.iter().zip(mutated) {
        if &doc.value == new {
            continue;
        }
        let (old_text, new_text) = (to_yaml(&doc.value, doc)?, to_yaml(new, doc)?);
        let label = describe(&doc.value, doc.index);
        let diff = similar::TextDiff::from_lines(&old_text, &new_text);
        let _ = write!(
            out,
            "{}",
            diff.unified_diff().header(
                &format!("{label} (original)"),
                &format!("{label} (instrumented)")
            )
        );
    }
    Ok(out)
}

/// `value` (document `doc` or what became of it) as YAML.
fn to_yaml(value: &Value, doc: &Document) -> Result<String, OfflineError> {
    serde_yaml_ng::to_string(value).map_err(|e| OfflineError::Render {
        document: describe(&doc.value, doc.index),
        message: e.to_string(),
    })
}

/// `explain`: per template and container, what would happen and why.
pub fn explain(text: &str, config: &Config, default_ns: &str) -> Result<String, OfflineError> {
    let docs = read_documents(text)?;
    let results = admit_documents(&docs, config, default_ns)?;
    let opted_in = opted_in_namespaces(&docs);
    let mut out = String::new();
    if results.is_empty() {
        out.push_str("No Pod or workload with a pod template in the input.\n");
    }
    for (_, _, r) in &results {
        let _ = write!(out, "{} in namespace {}: ", r.label, r.namespace);
        let admission = &r.admission;
        match (&admission.scope, &admission.injection) {
            (Scope::OutOfScope { why }, _) => {
                let _ = writeln!(out, "left untouched: {why}.");
            }
            (Scope::Unresolvable { why }, _) => {
                let _ = writeln!(out, "NOT instrumented, admitted as is: {why}.");
            }
            (scope @ Scope::Inject { why, .. }, Some(injection)) => {
                explain_injection(&mut out, why, injection);
                explain_containers(
                    &mut out,
                    scope,
                    injection,
                    &r.containers,
                    r.admission.delivery,
                );
            }
            (Scope::Inject { .. }, None) => {}
        }
        // The headline already says why an unresolvable pod is untouched.
        let headline = match &admission.scope {
            Scope::Unresolvable { why } => Some(admission::not_instrumented(why)),
            _ => None,
        };
        let scope = scope_warning(r, config, &opted_in);
        let warnings = admission
            .warnings
            .iter()
            .filter(|w| Some(*w) != headline.as_ref())
            .chain(r.misplaced.iter())
            .chain(scope.as_ref());
        for w in warnings {
            let _ = writeln!(
                out,
                "  warning: {}",
                w.trim_start_matches("otel-injector: ")
            );
        }
    }
    Ok(out)
}

/// The label the shipped `opt-in.otel-injector.io` webhook selects namespaces by.
pub const OPT_IN_LABEL: (&str, &str) = ("otel-injector.io/injection", "enabled");

/// Namespaces of the input (Namespace documents) that carry [`OPT_IN_LABEL`].
fn opted_in_namespaces(docs: &[Document]) -> Vec<String> {
    docs.iter()
        .flat_map(|doc| items(&doc.value))
        .filter(|item| item["kind"] == "Namespace" && item["apiVersion"] == "v1")
        .filter(|item| item["metadata"]["labels"][OPT_IN_LABEL.0] == OPT_IN_LABEL.1)
        .filter_map(|item| item["metadata"]["name"].as_str().map(str::to_owned))
        .collect()
}

/// A pod that asks for Python (an annotation, since its namespace is not in
/// the config's `namespaces`) in a namespace the shipped webhook selectors
/// do not send: the API server never calls the webhook for it, and nothing
/// else would say so (the operator's webhook is sent every namespace).
fn scope_warning(r: &TemplateResult, config: &Config, opted_in: &[String]) -> Option<String> {
    let asks = matches!(
        r.admission.scope,
        Scope::Inject { .. } | Scope::Unresolvable { .. }
    );
    let covered = config.namespaces.contains(&r.namespace) || opted_in.contains(&r.namespace);
    (asks && !covered).then(|| {
        format!(
            "with the shipped webhook selectors the API server only sends pods of {} and of namespaces labelled {}={}; namespace {} is neither as far as the input shows, so this pod would never reach the webhook: `kubectl label namespace {} {}={}`, or install the operator-like scope (manifests/all-namespaces, Helm webhook.allNamespaces=true). Pipe the Namespace in too (`kubectl get namespace {} -o yaml`) to check its labels",
            if config.namespaces.is_empty() { "no namespace by name".to_owned() } else { config.namespaces.join(", ") },
            OPT_IN_LABEL.0,
            OPT_IN_LABEL.1,
            r.namespace,
            r.namespace,
            OPT_IN_LABEL.0,
            OPT_IN_LABEL.1,
            r.namespace,
        )
    })
}

/// The headline of an in-scope pod, and what is added to it.
fn explain_injection(out: &mut String, why: &str, injection: &Injection) {
    match &injection.outcome {
        Outcome::Injected => {
            let _ = writeln!(out, "instrumented ({why}).");
        }
        Outcome::AlreadyInjected { marker } => {
            let _ = writeln!(
                out,
                "already instrumented ({marker} present); nothing to do."
            );
        }
        Outcome::Skipped { reason } => {
            let _ = writeln!(out, "NOT instrumented: {reason}.");
        }
    }
}

/// The init container and nodeSelector an instrumented pod gets, then each
/// container of the template with what happens to it.
fn explain_containers(
    out: &mut String,
    scope: &Scope,
    injection: &Injection,
    names: &[String],
    delivery: Option<crate::delivery::Chosen>,
) {
    let Scope::Inject {
        settings,
        container_names,
        ..
    } = scope
    else {
        return;
    };
    if injection.outcome == Outcome::Injected {
        match delivery.map(|d| d.delivery).unwrap_or(settings.delivery) {
            Delivery::InitContainer => {
                let _ = writeln!(
                    out,
                    "  delivery initContainer: init container {} copies {} into volume {} at {}",
                    settings.init_container_name,
                    settings.image,
                    settings.volume_name,
                    settings.mount_path
                );
            }
            Delivery::ImageVolume => {
                let _ = writeln!(
                    out,
                    "  delivery imageVolume: image {} mounted read-only as volume {} at {} (no init container; Kubernetes 1.33+ with the ImageVolume gate, containerd 2.1+)",
                    settings.image, settings.volume_name, settings.mount_path
                );
            }
        }
        if !settings.node_selector.is_empty() {
            let pairs: Vec<String> = settings
                .node_selector
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            let _ = writeln!(
                out,
                "  nodeSelector {} (a key the pod sets keeps its value)",
                pairs.join(", ")
            );
        }
    }
    for c in &injection.containers {
        let _ = writeln!(out, "  container {}: {}", c.name, c.reason);
    }
    for name in names {
        if injection.containers.iter().any(|c| &c.name == name) {
            continue;
        }
        let why = if settings.sidecars.contains(name) {
            "not instrumented: a known sidecar"
        } else if container_names.is_some() {
            "not instrumented: not named in the container-names annotation"
        } else {
            "not instrumented: only the first app container is, unless container-names says otherwise"
        };
        let _ = writeln!(out, "  container {name}: {why}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::inject::JsonPatch;

    #[test]
    fn a_patch_that_does_not_parse_fails_the_document_instead_of_printing_it_unchanged() {
        let result = TemplateResult {
            label: "Deployment app (document 1)".into(),
            namespace: "cxtm".into(),
            prefix: vec!["spec".into(), "template".into()],
            admission: Admission {
                scope: Scope::OutOfScope { why: String::new() },
                outcome: admission::Outcome::Injected,
                reason: String::new(),
                injection: Some(Injection {
                    outcome: Outcome::Injected,
                    patch: JsonPatch::from_raw(br#"[{"op":"add""#, 1),
                    containers: Vec::new(),
                    warnings: Vec::new(),
                }),
                warnings: Vec::new(),
                delivery: None,
            },
            misplaced: None,
            containers: Vec::new(),
        };
        let err = document_patch(&result)
            .expect_err("broken patch")
            .to_string();
        assert!(err.contains("Deployment app (document 1)"), "{err}");
    }
}
