//! The OpenTelemetry Operator's `Instrumentation` resource (v1alpha1), the
//! fields that matter to Python, and how they override the static config.
//!
//! Objects are watched untyped and decoded here, one at a time, so one odd
//! resource cannot stall the watch of all the others.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{EnvVar, PersistentVolumeClaimTemplate, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use kube::core::{ApiResource, GroupVersionKind};
use serde::{Deserialize, Serialize};

use crate::guard;
use crate::inject::{ExporterTls, Sampler, Settings};

pub const GROUP: &str = "opentelemetry.io";
pub const VERSION: &str = "v1alpha1";
pub const KIND: &str = "Instrumentation";
pub const PLURAL: &str = "instrumentations";

/// Operator defaults for the init container and the volume when an
/// Instrumentation is used (`spec.python.resourceRequirements`, `volumeLimitSize`).
pub const DEFAULT_REQUESTS: (&str, &str) = ("50m", "64Mi");
pub const DEFAULT_LIMITS: (&str, &str) = ("500m", "256Mi");
pub const DEFAULT_VOLUME_SIZE: &str = "200Mi";

pub fn api_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(GROUP, VERSION, KIND), PLURAL)
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstrumentationSpec {
    pub exporter: Option<ExporterSpec>,
    pub propagators: Option<Vec<String>>,
    pub sampler: Option<SamplerSpec>,
    pub resource: Option<ResourceSpec>,
    pub env: Option<Vec<EnvVar>>,
    pub image_pull_policy: Option<String>,
    pub defaults: Option<DefaultsSpec>,
    /// Read only to say that it is not applied (see [`merge`]).
    pub init_container_security_context: Option<serde_json::Value>,
    pub python: Option<PythonSpec>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExporterSpec {
    pub endpoint: Option<String>,
    pub tls: Option<TlsSpec>,
}

/// `spec.exporter.tls`; the file keys are snake_case in the operator's CRD.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TlsSpec {
    pub secret_name: Option<String>,
    pub config_map_name: Option<String>,
    #[serde(rename = "ca_file")]
    pub ca: Option<String>,
    #[serde(rename = "cert_file")]
    pub cert: Option<String>,
    #[serde(rename = "key_file")]
    pub key: Option<String>,
}

impl TlsSpec {
    /// The typed value, empty strings as unset (as the operator reads them);
    /// `None` when nothing is set at all.
    pub fn to_exporter_tls(&self) -> Option<ExporterTls> {
        let set = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        let tls = ExporterTls {
            secret_name: set(&self.secret_name),
            config_map_name: set(&self.config_map_name),
            ca_file: set(&self.ca),
            cert_file: set(&self.cert),
            key_file: set(&self.key),
        };
        (tls != ExporterTls::default()).then_some(tls)
    }
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DefaultsSpec {
    pub use_labels_for_resource_attributes: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SamplerSpec {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub argument: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceSpec {
    pub resource_attributes: Option<BTreeMap<String, String>>,
    #[serde(rename = "addK8sUIDAttributes")]
    pub add_k8s_uid_attributes: Option<bool>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PythonSpec {
    pub image: Option<String>,
    pub env: Option<Vec<EnvVar>>,
    pub resource_requirements: Option<ResourceRequirements>,
    pub volume_limit_size: Option<Quantity>,
    pub volume_claim_template: Option<PersistentVolumeClaimTemplate>,
}

/// Decodes `spec` of a watched object.
pub fn decode_spec(
    spec: Option<&serde_json::Value>,
) -> Result<InstrumentationSpec, serde_json::Error> {
    match spec {
        Some(spec) => InstrumentationSpec::deserialize(spec),
        None => Ok(InstrumentationSpec::default()),
    }
}

/// The settings for pods using Instrumentation `namespace/name`, whose
/// `spec` is given raw; the error names the resource and the problem.
pub fn settings_for(
    namespace: &str,
    name: &str,
    spec: Option<&serde_json::Value>,
    base: &Settings,
) -> Result<Settings, String> {
    let spec = decode_spec(spec)
        .map_err(|e| format!("Instrumentation {namespace}/{name} has an invalid spec: {e}"))?;
    // Nothing validates an Instrumentation before us (the CRD keeps unknown
    // fields and types values loosely): a value the API server refuses would
    // get every pod using it refused, so such a resource is not used at all.
    check(&spec).map_err(|problems| {
        let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
        format!(
            "Instrumentation {namespace}/{name} has a value the API server would refuse in the pod: {}",
            listed.join("; ")
        )
    })?;
    Ok(merge(&spec, base))
}

/// Whether [`settings_for`] would use this `spec`: pods that name an
/// Instrumentation whose spec fails are not instrumented, so the watch
/// counts them for the `otel_injector_instrumentations_invalid` gauge (and
/// its alert) before any pod names one.
pub fn is_usable(spec: Option<&serde_json::Value>) -> bool {
    decode_spec(spec).is_ok_and(|spec| check(&spec).is_ok())
}

/// Whether a volumeClaimTemplate is Go's zero value, which the operator
/// treats as absent (an emptyDir instead: `reflect.ValueOf(t).IsZero()` in
/// its `instrVolume`). The operator's own Instrumentation webhook defaults it
/// to `{metadata: {}, spec: {resources: {}}}`: decoded here, that is
/// `Some(empty)` where `default()` has `None`, but in Go it is the zero value.
/// Nulls, `""`, `0`, `false` and objects of only those count as zero; a
/// list, even empty, does not.
fn is_zero(template: &PersistentVolumeClaimTemplate) -> bool {
    fn zero(v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Null => true,
            serde_json::Value::Bool(b) => !b,
            serde_json::Value::Number(n) => n.as_f64() == Some(0.0),
            serde_json::Value::String(s) => s.is_empty(),
            serde_json::Value::Array(_) => false,
            serde_json::Value::Object(m) => m.values().all(zero),
        }
    }
    serde_json::to_value(template).is_ok_and(|v| zero(&v))
}

/// The spec's values that go into the pod, under their field paths.
pub fn check(spec: &InstrumentationSpec) -> Result<(), Vec<guard::Problem>> {
    let mut c = guard::Checker::default();
    if let Some(policy) = spec.image_pull_policy.as_deref().filter(|p| !p.is_empty()) {
        c.pull_policy("spec.imagePullPolicy", policy);
    }
    c.env("spec.env", spec.env.as_deref().unwrap_or_default());
    if let Some(python) = &spec.python {
        if let Some(image) = python.image.as_deref().filter(|i| !i.is_empty()) {
            c.image("spec.python.image", image);
        }
        c.env("spec.python.env", python.env.as_deref().unwrap_or_default());
        if let Some(resources) = &python.resource_requirements {
            c.resources("spec.python.resourceRequirements", resources);
        }
        if let Some(size) = &python.volume_limit_size {
            c.size_limit("spec.python.volumeLimitSize", &size.0);
        }
        if let Some(template) = python
            .volume_claim_template
            .as_ref()
            .filter(|t| !is_zero(t))
        {
            c.volume_claim_template("spec.python.volumeClaimTemplate", template);
        }
    }
    if let Some(tls) = exporter_tls(spec) {
        // The volume names are DNS-1123 labels in the pod: a Secret named
        // `my.certs` is a valid Secret but `otel-auto-secret-my.certs` is
        // not a valid volume name, and the API server would refuse the pod.
        if tls.secret_name.is_some() {
            c.dns_label("spec.exporter.tls.secretName", &tls.secret_volume_name());
        }
        if tls.config_map_name.is_some() {
            c.dns_label(
                "spec.exporter.tls.configMapName",
                &tls.config_map_volume_name(),
            );
        }
    }
    c.into_result()
}

fn exporter_tls(spec: &InstrumentationSpec) -> Option<ExporterTls> {
    spec.exporter.as_ref()?.tls.as_ref()?.to_exporter_tls()
}

/// The names of the Instrumentations in `namespace`, sorted, out of the
/// `(namespace, name)` of every known resource: how each
/// [`ClusterView`](crate::policy::ClusterView) answers `instrumentations_in`.
pub fn names_in<'a>(
    namespace: &str,
    resources: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Vec<String> {
    let mut names: Vec<String> = resources
        .into_iter()
        .filter(|(ns, _)| *ns == namespace)
        .map(|(_, name)| name.to_owned())
        .collect();
    names.sort();
    names
}

fn quantities(cpu: &str, memory: &str) -> BTreeMap<String, Quantity> {
    BTreeMap::from([
        ("cpu".to_owned(), Quantity(cpu.to_owned())),
        ("memory".to_owned(), Quantity(memory.to_owned())),
    ])
}

/// The settings for pods that use this Instrumentation: its values over the
/// static config. Env precedence: `python.env` > `spec.env` > config `env` >
/// generated (the container's own env beats them all, in the mutation).
pub fn merge(spec: &InstrumentationSpec, base: &Settings) -> Settings {
    let mut settings = base.clone();
    let python = spec.python.clone().unwrap_or_default();
    if let Some(image) = python.image.filter(|i| !i.is_empty()) {
        settings.image = image;
    }
    if let Some(policy) = spec.image_pull_policy.clone().filter(|p| !p.is_empty()) {
        settings.image_pull_policy = Some(policy);
    }
    if let Some(endpoint) = spec
        .exporter
        .as_ref()
        .and_then(|e| e.endpoint.clone())
        .filter(|e| !e.is_empty())
    {
        settings.endpoint = Some(endpoint);
    }
    settings.exporter_tls = exporter_tls(spec);
    let mut env = python.env.unwrap_or_default();
    settings.python_env_count = env.len();
    env.extend(spec.env.clone().unwrap_or_default());
    env.extend(base.env.iter().cloned());
    settings.env = env;
    if let Some(merged) = resource_attributes(spec, base) {
        settings.resource_attributes = merged;
    }
    settings.kubernetes_resource_attributes = true;
    settings.not_applied = not_applied(spec);
    settings.use_labels_for_resource_attributes = spec
        .defaults
        .as_ref()
        .and_then(|d| d.use_labels_for_resource_attributes)
        .unwrap_or(false);
    settings.add_k8s_uid_attributes = spec
        .resource
        .as_ref()
        .and_then(|r| r.add_k8s_uid_attributes)
        .unwrap_or(false);
    // The operator uses the template when it is not the zero value.
    settings.volume_claim_template = python.volume_claim_template.filter(|t| !is_zero(t));
    settings.propagators = spec.propagators.clone().unwrap_or_default();
    settings.sampler = sampler(spec);
    settings.init_container_resources = Some(
        python
            .resource_requirements
            .unwrap_or_else(default_init_resources),
    );
    settings.volume_size_limit = Some(
        python
            .volume_limit_size
            .map(|q| q.0)
            .unwrap_or_else(|| DEFAULT_VOLUME_SIZE.to_owned()),
    );
    settings
}

/// `spec.resource.resourceAttributes` first, then the config's keys it
/// does not set; `None` where the resource names none.
fn resource_attributes(
    spec: &InstrumentationSpec,
    base: &Settings,
) -> Option<indexmap::IndexMap<String, String>> {
    let attributes = spec
        .resource
        .as_ref()
        .and_then(|r| r.resource_attributes.as_ref())?;
    let mut merged: indexmap::IndexMap<String, String> = attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (k, v) in &base.resource_attributes {
        merged.entry(k.clone()).or_insert_with(|| v.clone());
    }
    Some(merged)
}

/// What of the resource is read but not applied, for the warnings.
fn not_applied(spec: &InstrumentationSpec) -> Vec<String> {
    // The init container takes the app container's securityContext (the
    // operator's default), which the API server and the namespace's Pod
    // Security level already accepted for this very pod; one from the
    // resource could get every pod refused under a restricted level, and the
    // webhook cannot see the namespace's level.
    spec.init_container_security_context
        .iter()
        .filter(|v| !v.is_null())
        .map(|_| {
            "spec.initContainerSecurityContext is not applied: the init container takes the app container's securityContext".to_owned()
        })
        .collect()
}

/// `spec.sampler`, where it names a type (empty strings are unset).
fn sampler(spec: &InstrumentationSpec) -> Option<Sampler> {
    spec.sampler.as_ref().and_then(|s| {
        let kind = s.kind.clone().filter(|k| !k.is_empty())?;
        Some(Sampler {
            kind,
            argument: s.argument.clone().filter(|a| !a.is_empty()),
        })
    })
}

/// The operator's init container resources where the resource sets none.
fn default_init_resources() -> ResourceRequirements {
    ResourceRequirements {
        requests: Some(quantities(DEFAULT_REQUESTS.0, DEFAULT_REQUESTS.1)),
        limits: Some(quantities(DEFAULT_LIMITS.0, DEFAULT_LIMITS.1)),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn seed_spec() -> InstrumentationSpec {
        serde_json::from_value(serde_json::json!({
            "exporter": {"endpoint": "http://cxtvng-splunk-otel-collector-agent.ao.svc.cluster.local:4318"},
            "propagators": ["tracecontext", "baggage"],
            "sampler": {"type": "parentbased_traceidratio", "argument": "0.25"},
            "env": [{"name": "A", "value": "spec"}, {"name": "B", "value": "spec"}],
            "python": {
                "image": "example.com/python:1",
                "env": [{"name": "A", "value": "python"}],
                "volumeLimitSize": "300Mi"
            },
            "java": {"image": "ignored"}
        }))
        .expect("spec decodes, unknown languages ignored")
    }

    #[test]
    fn a_zero_volume_claim_template_is_absent_as_for_the_operator() {
        // What the operator's Instrumentation webhook stores when the
        // template is not set: no ephemeral volume, no guard problem.
        let mut spec = seed_spec();
        let python = spec.python.as_mut().expect("python");
        python.volume_claim_template = Some(
            serde_json::from_value(serde_json::json!({"metadata": {}, "spec": {"resources": {}}}))
                .expect("template"),
        );
        assert!(check(&spec).is_ok());
        let base = Settings::from_config(&Config::default());
        assert_eq!(merge(&spec, &base).volume_claim_template, None);
        // A template with content is used, and checked.
        let python = spec.python.as_mut().expect("python");
        python.volume_claim_template = Some(
            serde_json::from_value(serde_json::json!({"spec": {"accessModes": []}}))
                .expect("template"),
        );
        assert!(check(&spec).is_err());
        assert!(merge(&spec, &base).volume_claim_template.is_some());
    }

    #[test]
    fn instrumentation_overrides_config() {
        let base = Settings::from_config(&Config::default());
        let s = merge(&seed_spec(), &base);
        assert_eq!(s.image, "example.com/python:1");
        assert_eq!(s.propagators, vec!["tracecontext", "baggage"]);
        assert_eq!(
            s.sampler,
            Some(Sampler {
                kind: "parentbased_traceidratio".into(),
                argument: Some("0.25".into())
            })
        );
        let env: Vec<(&str, &str)> = s
            .env
            .iter()
            .map(|v| (v.name.as_str(), v.value.as_deref().unwrap_or("")))
            .collect();
        assert_eq!(env[0], ("A", "python"), "python.env first");
        assert!(env.contains(&("B", "spec")));
        assert!(
            env.contains(&("OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED", "true")),
            "config env last"
        );
        assert_eq!(s.volume_size_limit.as_deref(), Some("300Mi"));
        let resources = s
            .init_container_resources
            .expect("operator default resources");
        assert_eq!(
            resources.limits.expect("limits")["memory"],
            Quantity("256Mi".into())
        );
        assert!(s.kubernetes_resource_attributes);
        // Config-only settings stay.
        assert_eq!(s.node_selector, base.node_selector);
        assert_eq!(s.mount_path, base.mount_path);
    }

    #[test]
    fn empty_instrumentation_keeps_config_endpoint_and_image() {
        let base = Settings::from_config(&Config::default());
        let s = merge(&InstrumentationSpec::default(), &base);
        assert_eq!(s.image, base.image);
        assert_eq!(s.endpoint, base.endpoint);
        assert_eq!(s.volume_size_limit.as_deref(), Some(DEFAULT_VOLUME_SIZE));
    }

    #[test]
    fn names_in_keeps_one_namespace_sorted() {
        let resources = [
            ("cxtm", "b"),
            ("other", "a"),
            ("cxtm", "a"),
            ("cxtm-2", "c"),
        ];
        assert_eq!(names_in("cxtm", resources), vec!["a", "b"]);
        assert_eq!(names_in("other", resources), vec!["a"]);
        assert!(names_in("none", resources).is_empty());
    }

    #[test]
    fn a_value_the_api_server_would_refuse_names_the_field_and_the_resource() {
        let base = Settings::from_config(&Config::default());
        let cases = [
            (
                serde_json::json!({"python": {"volumeLimitSize": "200MB"}}),
                "spec.python.volumeLimitSize",
            ),
            (
                serde_json::json!({"imagePullPolicy": "Sometimes"}),
                "spec.imagePullPolicy",
            ),
            (
                serde_json::json!({"python": {"image": " example.com/python:1"}}),
                "spec.python.image",
            ),
            (
                serde_json::json!({"python": {"resourceRequirements": {"limits": {"memory": "lots"}}}}),
                "spec.python.resourceRequirements.limits.memory",
            ),
            (
                serde_json::json!({"env": [{"name": "OK", "value": "1"}, {"name": "NOT OK", "value": "2"}]}),
                "spec.env[1].name",
            ),
            (
                serde_json::json!({"python": {"env": [{"name": "9LIVES"}]}}),
                "spec.python.env[0].name",
            ),
        ];
        for (spec, field) in cases {
            let err = settings_for("cxtm", "inst", Some(&spec), &base).expect_err(field);
            assert!(err.contains(field), "{spec}: {err}");
            assert!(err.contains("Instrumentation cxtm/inst"), "{spec}: {err}");
        }
    }

    #[test]
    fn usable_agrees_with_settings_for() {
        let base = Settings::from_config(&Config::default());
        for spec in [
            serde_json::json!({}),
            serde_json::json!({"python": {"image": "example.com/python:1"}}),
            serde_json::json!({"imagePullPolicy": "Sometimes"}),
            serde_json::json!({"python": {"image": 42}}),
            serde_json::json!({"env": [{"name": "NOT OK", "value": "2"}]}),
        ] {
            assert_eq!(
                is_usable(Some(&spec)),
                settings_for("cxtm", "inst", Some(&spec), &base).is_ok(),
                "{spec}"
            );
        }
        assert!(is_usable(None));
        assert!(!is_usable(Some(
            &serde_json::json!({"imagePullPolicy": "Sometimes"})
        )));
    }

    #[test]
    fn odd_spec_is_an_error_not_a_panic() {
        let err = decode_spec(Some(&serde_json::json!({"python": {"image": 42}})))
            .expect_err("image must be a string");
        assert!(err.to_string().contains("string"), "{err}");
    }
}
