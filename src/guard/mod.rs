//! The guard: every value the patch takes from the config or from an
//! Instrumentation, checked the way the API server will check the mutated
//! pod. A value it would refuse makes the API server refuse the whole pod
//! (with `volumeSizeLimit: 200MB`, every pod create in the namespace failed),
//! which is the one thing the webhook must never cause. So the config is
//! checked at start (a bad value refuses to start, naming the key), and an
//! Instrumentation when it is used (a bad value admits the pod without
//! instrumentation, naming the field and the resource).
//!
//! Only what the patch adds is checked: the rest of the pod was validated by
//! the API server before it called us. The rules follow
//! k8s.io/apimachinery (quantities, names) and k8s.io/kubernetes
//! `pkg/apis/core/validation` (containers, volumes, env, resources); the
//! image reference follows the distribution reference grammar the kubelet
//! uses, which the API server does not check but a pod cannot start without.
//!
//! The rules themselves stand in their own modules, each a leaf: `quantity`
//! (exact quantities), `names` (names, labels, keys) and `image`; this one
//! holds the checker that applies them to what the patch adds.

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ImageVolumeSource, PersistentVolumeClaimSpec,
    PersistentVolumeClaimTemplate, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::settings::Settings;

mod image;
mod names;
mod quantity;

pub use image::image;
pub use names::{
    dns_label, dns_subdomain, env_var_name, label_key, label_value, pull_policy, qualified_name,
};
use names::{key_ref, rule};
use quantity::NANOS_PER_UNIT;
pub use quantity::{ParsedQuantity, QuantityFormat, quantity};

/// One value the API server would refuse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where the value is set: a config key (`volumeSizeLimit`) or an
    /// Instrumentation field (`spec.python.volumeLimitSize`).
    pub setting: String,
    pub value: String,
    /// Why the API server would refuse it.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:?}: {}", self.setting, self.value, self.reason)
    }
}

/// Collects the problems of one source (the config, one Instrumentation).
/// Setting names are only formatted when a value is bad: Instrumentations
/// are checked on every admission that uses one.
#[derive(Debug, Default)]
pub struct Checker {
    problems: Vec<Problem>,
}

impl Checker {
    fn record(
        &mut self,
        setting: impl FnOnce() -> String,
        value: &str,
        result: Result<(), String>,
    ) {
        if let Err(reason) = result {
            self.problems.push(Problem {
                setting: setting(),
                value: value.to_owned(),
                reason,
            });
        }
    }

    pub fn image(&mut self, setting: &str, value: &str) {
        self.record(|| setting.to_owned(), value, image(value));
    }

    pub fn pull_policy(&mut self, setting: &str, value: &str) {
        self.record(|| setting.to_owned(), value, pull_policy(value));
    }

    pub fn dns_label(&mut self, setting: &str, value: &str) {
        self.record(|| setting.to_owned(), value, dns_label(value));
    }

    /// An emptyDir `sizeLimit`.
    pub fn size_limit(&mut self, setting: &str, value: &str) {
        self.record(
            || setting.to_owned(),
            value,
            quantity(value).and_then(|q| non_negative(&q)),
        );
    }

    /// A container's `resources`; `setting` is the key holding them
    /// (`ValidateContainerResourceRequirements`).
    pub fn resources(&mut self, setting: &str, resources: &ResourceRequirements) {
        let requests = resources.requests.as_ref();
        let limits = resources.limits.as_ref();
        let (mut cpu_or_memory, mut hugepages) = (false, false);
        for (part, map) in [("requests", requests), ("limits", limits)] {
            for (name, value) in map.into_iter().flatten() {
                let key = || format!("{setting}.{part}.{name}");
                self.record(key, name, resource_name(name));
                let checked = quantity(&value.0).and_then(|q| resource_quantity(name, &q));
                self.record(key, &value.0, checked);
                cpu_or_memory |= matches!(name.as_str(), "cpu" | "memory");
                hugepages |= is_hugepages(name);
            }
        }
        if hugepages && !cpu_or_memory {
            self.record(
                || setting.to_owned(),
                "hugepages",
                Err(
                    "hugepages need a cpu or memory request or limit in the same container"
                        .to_owned(),
                ),
            );
        }
        for (name, request) in requests.into_iter().flatten() {
            let limit = limits.and_then(|l| l.get(name));
            let key = || format!("{setting}.requests.{name}");
            self.record(key, &request.0, request_fits(name, request, limit));
        }
        if resources.claims.as_ref().is_some_and(|c| !c.is_empty()) {
            self.record(
                || format!("{setting}.claims"),
                "",
                Err("the pod does not declare these resource claims; the init container cannot use them".to_owned()),
            );
        }
    }

    /// Env vars appended to containers; `setting` is the key of the list
    /// (`ValidateEnv`, `validateEnvVarValueFrom`).
    pub fn env(&mut self, setting: &str, env: &[EnvVar]) {
        for (i, var) in env.iter().enumerate() {
            self.record(
                || format!("{setting}[{i}].name"),
                &var.name,
                env_var_name(&var.name),
            );
            if let Some(source) = &var.value_from {
                let key = || format!("{setting}[{i}].valueFrom");
                let both = var.value.as_deref().is_some_and(|v| !v.is_empty());
                self.env_source(key, source);
                let result = if both {
                    Err("valueFrom may not be given with a non-empty value".to_owned())
                } else {
                    Ok(())
                };
                self.record(key, &var.name, result);
            }
        }
    }

    fn env_source(&mut self, key: impl Fn() -> String, source: &EnvVarSource) {
        // Each source that is set, with the field the API server names and
        // the value it checks.
        let checked = [
            source.field_ref.as_ref().map(|r| {
                let result = env_field_ref(r.api_version.as_deref(), &r.field_path);
                ("fieldRef.fieldPath", r.field_path.as_str(), result)
            }),
            source.resource_field_ref.as_ref().map(|r| {
                let result = env_resource_field_ref(&r.resource, r.divisor.as_ref());
                ("resourceFieldRef", r.resource.as_str(), result)
            }),
            source
                .config_map_key_ref
                .as_ref()
                .map(|r| ("configMapKeyRef", r.key.as_str(), key_ref(&r.name, &r.key))),
            source
                .secret_key_ref
                .as_ref()
                .map(|r| ("secretKeyRef", r.key.as_str(), key_ref(&r.name, &r.key))),
        ];
        let sources = checked.iter().flatten().count();
        for (field, value, result) in checked.into_iter().flatten() {
            self.record(|| format!("{}.{field}", key()), value, result);
        }
        if source.file_key_ref.is_some() {
            // Alpha (EnvFiles gate, off by default): the API server drops
            // the field before validating, leaving a valueFrom without a source.
            self.record(
                || format!("{}.fileKeyRef", key()),
                "",
                Err("needs the EnvFiles feature gate; without it the API server drops it and refuses the var".to_owned()),
            );
        }
        if sources != 1 {
            self.record(
                key,
                "",
                Err(format!(
                    "valueFrom must name exactly one of fieldRef, resourceFieldRef, configMapKeyRef or secretKeyRef, not {sources}"
                )),
            );
        }
    }

    /// An ephemeral volume's claim template (`ValidatePersistentVolumeClaimTemplate`):
    /// at least one access mode, each a known one; a positive storage
    /// request; a known volume mode; valid labels. A template the API server
    /// would take but no provisioner can serve leaves the pod Pending, as it
    /// does with the operator.
    pub fn volume_claim_template(
        &mut self,
        setting: &str,
        template: &PersistentVolumeClaimTemplate,
    ) {
        let spec = &template.spec;
        self.access_modes(setting, spec.access_modes.as_deref().unwrap_or_default());
        self.claim_storage(setting, spec);
        if let Some(mode) = &spec.volume_mode {
            self.record(
                || format!("{setting}.spec.volumeMode"),
                mode,
                // A raw block device cannot be mounted, and the init
                // container copies files into it: the pod would not start.
                rule(
                    mode == "Filesystem",
                    "must be Filesystem: the instrumentation is copied into it as files",
                ),
            );
        }
        if let Some(class) = spec.storage_class_name.as_deref().filter(|c| !c.is_empty()) {
            self.record(
                || format!("{setting}.spec.storageClassName"),
                class,
                dns_subdomain(class),
            );
        }
        self.template_metadata(setting, template.metadata.as_ref());
    }

    /// At least one access mode, each a known one, and `ReadWriteOncePod` alone.
    fn access_modes(&mut self, setting: &str, modes: &[String]) {
        if modes.is_empty() {
            self.record(
                || format!("{setting}.spec.accessModes"),
                "",
                Err("at least 1 access mode is required".to_owned()),
            );
        }
        let other_known = |m: &String| {
            matches!(
                m.as_str(),
                "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany"
            )
        };
        if modes.iter().any(|m| m == "ReadWriteOncePod") && modes.iter().any(other_known) {
            self.record(
                || format!("{setting}.spec.accessModes"),
                "ReadWriteOncePod",
                Err("may not use ReadWriteOncePod with other access modes".to_owned()),
            );
        }
        for (i, mode) in modes.iter().enumerate() {
            let known = matches!(
                mode.as_str(),
                "ReadWriteOnce" | "ReadOnlyMany" | "ReadWriteMany" | "ReadWriteOncePod"
            );
            self.record(
                || format!("{setting}.spec.accessModes[{i}]"),
                mode,
                rule(
                    known,
                    "must be ReadWriteOnce, ReadOnlyMany, ReadWriteMany or ReadWriteOncePod",
                ),
            );
        }
    }

    /// A positive storage request.
    fn claim_storage(&mut self, setting: &str, spec: &PersistentVolumeClaimSpec) {
        let storage = spec
            .resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"));
        let checked = match storage {
            None => Err("a storage request is required".to_owned()),
            Some(q) => quantity(&q.0)
                .and_then(|parsed| rule(parsed.is_positive(), "must be greater than zero")),
        };
        let value = storage.map_or("", |q| q.0.as_str());
        self.record(
            || format!("{setting}.spec.resources.requests.storage"),
            value,
            checked,
        );
    }

    /// The template's labels and annotations, and nothing else of its metadata.
    fn template_metadata(&mut self, setting: &str, metadata: Option<&ObjectMeta>) {
        // ValidateTemplateObjectMeta: labels and annotations only; any other
        // metadata "cannot be set for an ephemeral volume".
        if let Some(meta) = metadata {
            let mut others = serde_json::to_value(meta).unwrap_or_default();
            if let Some(map) = others.as_object_mut() {
                map.remove("labels");
                map.remove("annotations");
                for key in map.keys() {
                    self.record(
                        || format!("{setting}.metadata.{key}"),
                        key,
                        Err(
                            "cannot be set for an ephemeral volume: only labels and annotations"
                                .to_owned(),
                        ),
                    );
                }
            }
            for key in meta.annotations.iter().flatten().map(|(k, _)| k) {
                self.record(
                    || format!("{setting}.metadata.annotations"),
                    key,
                    qualified_name(key),
                );
            }
        }
        let labels = metadata.and_then(|m| m.labels.as_ref());
        for (key, value) in labels.into_iter().flatten() {
            self.record(|| format!("{setting}.metadata.labels"), key, label_key(key));
            self.record(
                || format!("{setting}.metadata.labels.{key}"),
                value,
                label_value(value),
            );
        }
    }

    /// Entries added to the pod's `nodeSelector`: label keys and values.
    pub fn node_selector(&mut self, setting: &str, selector: &BTreeMap<String, String>) {
        for (key, value) in selector {
            self.record(|| setting.to_owned(), key, label_key(key));
            self.record(|| format!("{setting}.{key}"), value, label_value(value));
        }
    }

    pub fn into_result(self) -> Result<(), Vec<Problem>> {
        if self.problems.is_empty() {
            Ok(())
        } else {
            Err(self.problems)
        }
    }
}

/// The settings' values under their config keys: what [`Config::validate`]
/// checks at start, and what admission checks once of the webhook's own
/// settings when they did not come from a validated config.
///
/// [`Config::validate`]: crate::config::Config::validate
pub fn check_settings(settings: &Settings) -> Result<(), Vec<Problem>> {
    let mut c = Checker::default();
    c.image("image", &settings.image);
    if let Some(policy) = &settings.image_pull_policy {
        c.pull_policy("imagePullPolicy", policy);
    }
    // The same two values become `volumes[].image` when a pod gets imageVolume
    // delivery (the config's default or its annotation): checked as that too,
    // unless already refused above.
    let source = crate::inject::image_volume(settings)
        .image
        .unwrap_or_default();
    if c.problems.is_empty()
        && let Err(reason) = image_volume_source(&source)
    {
        c.problems.push(Problem {
            setting: "image".to_owned(),
            value: settings.image.clone(),
            reason: format!("as an image volume: {reason}"),
        });
    }
    c.dns_label("initContainerName", &settings.init_container_name);
    c.dns_label("volumeName", &settings.volume_name);
    if let Some(limit) = &settings.volume_size_limit {
        c.size_limit("volumeSizeLimit", limit);
    }
    if let Some(resources) = &settings.init_container_resources {
        c.resources("initContainerResources", resources);
    }
    c.env("env", &settings.env);
    c.node_selector("nodeSelector", &settings.node_selector);
    c.into_result()
}

fn non_negative(q: &ParsedQuantity) -> Result<(), String> {
    if q.is_negative() {
        Err("must be greater than or equal to 0".to_owned())
    } else {
        Ok(())
    }
}

fn is_hugepages(name: &str) -> bool {
    name.starts_with("hugepages-")
}

/// `ValidateResourceQuantityValue` and `validateResourceQuantityHugePageValue`.
fn resource_quantity(name: &str, q: &ParsedQuantity) -> Result<(), String> {
    non_negative(q)?;
    if is_extended_resource(name) && !q.is_whole() {
        return Err("must be an integer".to_owned());
    }
    if let Some(size) = name.strip_prefix("hugepages-") {
        hugepages_multiple(name, size, q)?;
    }
    Ok(())
}

/// `IsHugePageResourceValueDivisible`: the value in whole units (rounded
/// up) is a multiple of the page size, itself a positive whole number.
fn hugepages_multiple(name: &str, size: &str, q: &ParsedQuantity) -> Result<(), String> {
    let not_multiple = || Err(format!("is not positive integer multiple of {name}"));
    let Ok(page) = quantity(size) else {
        return not_multiple();
    };
    if !page.is_positive() || !page.is_whole() {
        return not_multiple();
    }
    match (page.units(), q.units()) {
        (Some(page), Some(value)) if value % page != 0 => not_multiple(),
        (Some(_), Some(_)) => Ok(()),
        // Beyond any real memory size: left to the API server.
        _ => Ok(()),
    }
}

/// Request against limit: never above it, and equal to it for resources
/// that cannot be overcommitted (hugepages, extended resources), which also
/// need the limit (`IsOvercommitAllowed`).
fn request_fits(name: &str, request: &Quantity, limit: Option<&Quantity>) -> Result<(), String> {
    let overcommit = !is_extended_resource(name) && !is_hugepages(name);
    let Some(limit) = limit else {
        if !overcommit {
            return Err(format!("{name} needs a limit equal to its request"));
        }
        return Ok(());
    };
    let (Ok(r), Ok(l)) = (quantity(&request.0), quantity(&limit.0)) else {
        // Unparsable values are reported on their own.
        return Ok(());
    };
    match r.compare(&l) {
        std::cmp::Ordering::Equal => Ok(()),
        _ if !overcommit => Err(format!("must be equal to the {name} limit of {}", limit.0)),
        std::cmp::Ordering::Greater => Err(format!(
            "must be less than or equal to the {name} limit of {}",
            limit.0
        )),
        std::cmp::Ordering::Less => Ok(()),
    }
}

/// A resource name of a container: cpu, memory, ephemeral-storage,
/// hugepages-<size>, or an extended resource (`example.com/gpu`).
fn resource_name(name: &str) -> Result<(), String> {
    if name.contains('/') {
        qualified_name(name)?;
        if name.starts_with("requests.") {
            return Err("an extended resource name must not start with requests.".to_owned());
        }
        return Ok(());
    }
    match name {
        "cpu" | "memory" | "ephemeral-storage" => Ok(()),
        huge if huge.starts_with("hugepages-") => quantity(&huge["hugepages-".len()..])
            .map(drop)
            .map_err(|_| "hugepages-<size> needs a quantity as the size".to_owned()),
        _ => Err("must be a standard resource for containers (cpu, memory, ephemeral-storage, hugepages-<size>) or a domain-prefixed extended resource".to_owned()),
    }
}

/// Extended resources (`example.com/gpu`) are not overcommitted: whole
/// numbers, request equal to limit.
fn is_extended_resource(name: &str) -> bool {
    name.contains('/') && !name.contains("kubernetes.io/")
}

/// `volumes[].image` as the API server validates it in a pod
/// (`validateImageVolumeSource`): the reference is required, the pull policy
/// is one of the enum (an empty one is defaulted before validation, from the
/// tag, as for a container). The reference is also held to the image grammar
/// the kubelet pulls with, as a container image is here.
pub fn image_volume_source(source: &ImageVolumeSource) -> Result<(), String> {
    match source.reference.as_deref() {
        None | Some("") => return Err("reference: Required value".to_owned()),
        Some(reference) => image(reference).map_err(|e| format!("reference: {e}"))?,
    }
    match source.pull_policy.as_deref() {
        None | Some("") => Ok(()),
        Some(policy) => pull_policy(policy).map_err(|e| format!("pullPolicy: {e}")),
    }
}

/// `pkg/fieldpath.SplitMaybeSubscriptedPath`: `metadata.labels['key']`.
fn split_subscript(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_suffix("']")?;
    let (base, subscript) = inner.split_once("['")?;
    (!base.is_empty()).then_some((base, subscript))
}

/// An env var's `fieldRef`: the pod's `ConvertDownwardAPIFieldLabel`, then
/// the fields an env var may read (`validEnvDownwardAPIFieldPathExpressions`).
/// An empty apiVersion is defaulted to v1 before validation.
pub fn env_field_ref(api_version: Option<&str>, path: &str) -> Result<(), String> {
    match api_version.filter(|v| !v.is_empty()) {
        None | Some("v1") => {}
        Some(other) => {
            return Err(format!(
                "error converting fieldPath: unsupported pod version: {other}"
            ));
        }
    }
    if path.is_empty() {
        return Err("fieldPath is required".to_owned());
    }
    if let Some((base, subscript)) = split_subscript(path) {
        return match base {
            "metadata.annotations" => qualified_name(&subscript.to_lowercase()),
            "metadata.labels" => qualified_name(subscript),
            _ => Err(format!(
                "error converting fieldPath: field label does not support subscript: {path}"
            )),
        };
    }
    match path {
        "metadata.name"
        | "metadata.namespace"
        | "metadata.uid"
        | "spec.nodeName"
        | "spec.host"
        | "spec.serviceAccountName"
        | "status.hostIP"
        | "status.hostIPs"
        | "status.podIP"
        | "status.podIPs" => Ok(()),
        "metadata.annotations"
        | "metadata.labels"
        | "spec.restartPolicy"
        | "spec.schedulerName"
        | "status.phase" => Err(format!(
            "{path} cannot be read by an env var (metadata.name, metadata.namespace, metadata.uid, spec.nodeName, spec.serviceAccountName, status.hostIP(s), status.podIP(s), or a subscripted metadata.labels/annotations)"
        )),
        _ => Err(format!(
            "error converting fieldPath: field label not supported: {path}"
        )),
    }
}

/// An env var's `resourceFieldRef` (`validateContainerResourceFieldSelector`).
pub fn env_resource_field_ref(resource: &str, divisor: Option<&Quantity>) -> Result<(), String> {
    const EXACT: [&str; 6] = [
        "limits.cpu",
        "limits.memory",
        "limits.ephemeral-storage",
        "requests.cpu",
        "requests.memory",
        "requests.ephemeral-storage",
    ];
    if resource.is_empty() {
        return Err("resource is required".to_owned());
    }
    let hugepages =
        resource.starts_with("requests.hugepages-") || resource.starts_with("limits.hugepages-");
    if !EXACT.contains(&resource) && !hugepages {
        return Err(format!(
            "resource must be one of {}, or requests./limits.hugepages-<size>",
            EXACT.join(", ")
        ));
    }
    let Some(divisor) = divisor else {
        return Ok(());
    };
    let q = quantity(&divisor.0)?;
    if q.nanos == Some(0) {
        return Ok(());
    }
    let cpu = resource.ends_with(".cpu");
    if divisor_allowed(&q, cpu) {
        Ok(())
    } else if cpu {
        Err("only divisor's values 1m and 1 are supported with the cpu resource".to_owned())
    } else {
        Err("only divisor's values 1, 1k, 1M, 1G, 1T, 1P, 1E, 1Ki, 1Mi, 1Gi, 1Ti, 1Pi, 1Ei are supported".to_owned())
    }
}

/// Whether the divisor's canonical form (what `Quantity.String()` prints:
/// the largest suffix of its format that keeps the number whole) is one the
/// API server lists: a power of 1024 in binary form, a power of 1000 in
/// decimal form, or 1.
fn divisor_allowed(q: &ParsedQuantity, cpu: bool) -> bool {
    let Some(nanos) = q.nanos else {
        return false;
    };
    if nanos == NANOS_PER_UNIT {
        return true;
    }
    if cpu {
        return nanos == NANOS_PER_UNIT / 1000 && q.format != QuantityFormat::DecimalExponent;
    }
    match q.format {
        // Below 1024 a binary quantity prints in decimal form.
        QuantityFormat::BinarySI if nanos >= 1024 * NANOS_PER_UNIT => {
            (1..=6).any(|k| nanos == 1024i128.pow(k) * NANOS_PER_UNIT)
        }
        QuantityFormat::BinarySI | QuantityFormat::DecimalSI => {
            (1..=6).any(|k| nanos == 1000i128.pow(k) * NANOS_PER_UNIT)
        }
        QuantityFormat::DecimalExponent => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_as_apimachinery_reads_them() {
        for ok in [
            "0",
            "1",
            "200Mi",
            "1.5Gi",
            "100m",
            "1e3",
            "1E",
            "+1",
            ".5",
            "5.",
            "2e-3",
            " 1Gi ",
            "1000000000000000000000000",
            "500u",
            "10n",
            "3E+2",
        ] {
            assert!(quantity(ok).is_ok(), "{ok:?} is a quantity");
        }
        // apimachinery reads a bare suffix ("Mi") as zero, so it is not here.
        for bad in [
            "", "200MB", "1 Gi", "64 megs", "1e", "1.2.3", "lots", "1Ki2", "0x10", "1ki",
        ] {
            assert!(quantity(bad).is_err(), "{bad:?} is not a quantity");
        }
        let err = quantity("200MB").expect_err("MB");
        assert!(err.contains("regular expression"), "{err}");
        let nanos = |s: &str| quantity(s).map(|q| q.nanos);
        assert_eq!(nanos("1Ki"), Ok(Some(1024 * NANOS_PER_UNIT)));
        assert_eq!(nanos("1Gi"), nanos("1024Mi"));
        assert_eq!(nanos("0.1"), nanos("100m"));
        assert_eq!(nanos("1e3"), nanos("1k"));
        assert_eq!(
            nanos("-1Gi"),
            Ok(Some(-1024 * 1024 * 1024 * NANOS_PER_UNIT))
        );
        // Below a nano-unit: rounded away from zero, as apimachinery does.
        assert_eq!(nanos("1e-12"), Ok(Some(1)));
        assert_eq!(nanos("-1e-12"), Ok(Some(-1)));
        assert_eq!(quantity("-1").map(|q| q.is_negative()), Ok(true));
        assert_eq!(quantity("-0").map(|q| q.is_negative()), Ok(false));
        assert_eq!(quantity("-0.0").map(|q| q.is_positive()), Ok(false));
        // Beyond i128 nano-units: compared approximately, still ordered.
        let (big, bigger) = (
            quantity("1e40").expect("1e40"),
            quantity("1e41").expect("1e41"),
        );
        assert_eq!(big.nanos, None);
        assert_eq!(big.compare(&bigger), std::cmp::Ordering::Less);
    }

    #[test]
    fn names_labels_and_env() {
        assert!(env_var_name("OTEL_X.y-z").is_ok());
        assert!(env_var_name("_A").is_ok());
        for bad in ["", "1A", "A B", "A=B", "Ä"] {
            assert!(env_var_name(bad).is_err(), "{bad:?}");
        }
        assert!(label_key("ao-node").is_ok());
        assert!(label_key("kubernetes.io/os").is_ok());
        for bad in [
            "",
            "ao node",
            "Example.com/x",
            "a/",
            "/a",
            "-a",
            &"a".repeat(64),
        ] {
            assert!(label_key(bad).is_err(), "{bad:?}");
        }
        assert!(label_value("").is_ok());
        assert!(label_value("observability").is_ok());
        assert!(label_value("not a value").is_err());
        assert!(dns_label("opentelemetry-auto-instrumentation-python").is_ok());
        assert!(dns_label("Bad_Name").is_err());
    }

    #[test]
    fn image_volumes_as_the_api_server_checks_them() {
        let source = |reference: Option<&str>, policy: Option<&str>| ImageVolumeSource {
            reference: reference.map(str::to_owned),
            pull_policy: policy.map(str::to_owned),
        };
        assert!(image_volume_source(&source(Some("registry.example/otel/python:1"), None)).is_ok());
        assert!(image_volume_source(&source(Some("python:1"), Some("IfNotPresent"))).is_ok());
        assert!(
            image_volume_source(&source(
                Some(
                    "python@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
                ),
                Some("Never")
            ))
            .is_ok()
        );
        for (bad, field) in [
            (source(None, None), "reference"),
            (source(Some(""), Some("Always")), "reference"),
            (source(Some("Python Image:1"), None), "reference"),
            (source(Some("python:1"), Some("always")), "pullPolicy"),
            (source(Some("python:1"), Some("Sometimes")), "pullPolicy"),
        ] {
            let err = image_volume_source(&bad).expect_err(field);
            assert!(err.starts_with(field), "{bad:?}: {err}");
        }
    }

    #[test]
    fn image_references() {
        for ok in [
            "python",
            "python:3.12",
            "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.54b1",
            "localhost:5000/a/b:c",
            "registry.example/team/img@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
            "registry.example:443/a__b/c-d--e:v1.2_3",
            "[::1]:5000/img",
        ] {
            assert!(image(ok).is_ok(), "{ok:?}: {:?}", image(ok));
        }
        for bad in [
            "",
            " python",
            "Python",
            "registry.example/Team/img",
            "img:",
            "img:-tag",
            "img@sha256:short",
            "a//b",
            "registry.example/python image:1",
        ] {
            assert!(image(bad).is_err(), "{bad:?}");
        }
    }

    proptest::proptest! {
        // Values come from Instrumentations nobody validated: any text.
        #[test]
        fn no_value_makes_a_check_panic(value in proptest::prop_oneof![
            "\\PC{0,40}",
            "[-+0-9.eEinumkKMGTPé ]{0,12}",
            "[a-zA-Z0-9:/@._\\[\\]-]{0,40}",
        ]) {
            let _ = quantity(&value);
            let _ = image(&value);
            let _ = label_key(&value);
            let _ = label_value(&value);
            let _ = env_var_name(&value);
            let _ = resource_name(&value);
            let _ = pull_policy(&value);
        }
    }

    #[test]
    fn resources_as_the_api_server_checks_them() {
        let q = |s: &str| Quantity(s.to_owned());
        let check = |requests: &[(&str, &str)], limits: &[(&str, &str)]| {
            let mut c = Checker::default();
            let map = |pairs: &[(&str, &str)]| {
                (!pairs.is_empty())
                    .then(|| pairs.iter().map(|(k, v)| ((*k).to_owned(), q(v))).collect())
            };
            c.resources(
                "r",
                &ResourceRequirements {
                    requests: map(requests),
                    limits: map(limits),
                    ..Default::default()
                },
            );
            c.into_result().map_err(|p| p[0].setting.clone())
        };
        assert_eq!(check(&[("cpu", "50m")], &[("cpu", "500m")]), Ok(()));
        assert_eq!(
            check(&[("cpu", "1")], &[("cpu", "500m")]),
            Err("r.requests.cpu".into())
        );
        assert_eq!(check(&[("gpu", "1")], &[]), Err("r.requests.gpu".into()));
        assert_eq!(
            check(&[("memory", "-1")], &[]),
            Err("r.requests.memory".into())
        );
        assert_eq!(
            check(&[("example.com/gpu", "1")], &[("example.com/gpu", "1")]),
            Ok(())
        );
        assert_eq!(
            check(&[("example.com/gpu", "1")], &[]),
            Err("r.requests.example.com/gpu".into())
        );
    }
}

/// The three values that still got pods refused (issue 23), and their valid
/// neighbours, through the checks an Instrumentation goes through.
#[cfg(test)]
mod refused_by_the_api_server {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ObjectFieldSelector, PersistentVolumeClaimSpec, ResourceFieldSelector,
        VolumeResourceRequirements,
    };

    fn quantities(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, Quantity>> {
        (!pairs.is_empty()).then(|| {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Quantity((*v).to_owned())))
                .collect()
        })
    }

    fn resources(requests: &[(&str, &str)], limits: &[(&str, &str)]) -> Vec<Problem> {
        let mut c = Checker::default();
        c.resources(
            "r",
            &ResourceRequirements {
                requests: quantities(requests),
                limits: quantities(limits),
                ..Default::default()
            },
        );
        c.into_result().err().unwrap_or_default()
    }

    #[test]
    fn hugepages_need_a_page_multiple_and_cpu_or_memory() {
        let problems = resources(&[], &[("hugepages-2Mi", "1")]);
        assert!(
            problems
                .iter()
                .any(|p| p.setting == "r.limits.hugepages-2Mi" && p.reason.contains("multiple")),
            "{problems:?}"
        );
        assert!(
            problems.iter().any(|p| p.reason.contains("cpu or memory")),
            "{problems:?}"
        );
        // A multiple, but still no cpu or memory.
        assert_eq!(resources(&[], &[("hugepages-2Mi", "4Mi")]).len(), 1);
        assert_eq!(
            resources(&[], &[("hugepages-2Mi", "4Mi"), ("memory", "64Mi")]),
            vec![]
        );
        // Request and limit compare by value, not by spelling.
        assert_eq!(
            resources(
                &[("hugepages-2Mi", "1Gi"), ("cpu", "1")],
                &[("hugepages-2Mi", "1024Mi")]
            ),
            vec![]
        );
        let problems = resources(
            &[("hugepages-2Mi", "2Mi"), ("cpu", "1")],
            &[("hugepages-2Mi", "4Mi")],
        );
        assert!(
            problems.iter().any(|p| p.reason.contains("must be equal")),
            "{problems:?}"
        );
        assert!(!resources(&[("cpu", "1")], &[("hugepages-1Gi", "1Mi")]).is_empty());
        assert!(!resources(&[("cpu", "1")], &[("hugepages-0", "0")]).is_empty());
        assert!(
            !resources(&[("example.com/gpu", "1.5")], &[("example.com/gpu", "1.5")]).is_empty()
        );
    }

    fn env_with(source: EnvVarSource) -> Vec<Problem> {
        let mut c = Checker::default();
        c.env(
            "spec.python.env",
            &[EnvVar {
                name: "X".to_owned(),
                value_from: Some(source),
                ..Default::default()
            }],
        );
        c.into_result().err().unwrap_or_default()
    }

    fn field_ref(path: &str) -> Vec<Problem> {
        env_with(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                api_version: None,
                field_path: path.to_owned(),
            }),
            ..Default::default()
        })
    }

    #[test]
    fn env_field_paths_as_the_pod_converts_them() {
        let problems = field_ref("spec.nope");
        assert!(
            problems.iter().any(
                |p| p.setting == "spec.python.env[0].valueFrom.fieldRef.fieldPath"
                    && p.value == "spec.nope"
                    && p.reason.contains("error converting fieldPath")
            ),
            "{problems:?}"
        );
        for ok in [
            "metadata.name",
            "spec.nodeName",
            "status.podIPs",
            "metadata.labels['app']",
            "metadata.annotations['Example.com/X']",
        ] {
            assert_eq!(field_ref(ok), vec![], "{ok}");
        }
        for bad in [
            "",
            "status.phase",
            "metadata.labels",
            "metadata.labels['a b']",
            "spec.containers['x']",
            "metadata.name ",
        ] {
            assert!(!field_ref(bad).is_empty(), "{bad:?}");
        }
        let resource = |resource: &str, divisor: Option<&str>| {
            env_with(EnvVarSource {
                resource_field_ref: Some(ResourceFieldSelector {
                    resource: resource.to_owned(),
                    divisor: divisor.map(|d| Quantity(d.to_owned())),
                    container_name: None,
                }),
                ..Default::default()
            })
        };
        assert_eq!(resource("limits.memory", Some("1Mi")), vec![]);
        assert_eq!(resource("requests.cpu", Some("1m")), vec![]);
        assert_eq!(resource("limits.memory", Some("1000")), vec![]);
        assert!(!resource("limits.memory", Some("1024")).is_empty());
        assert!(!resource("limits.cpu", Some("1Mi")).is_empty());
        assert!(!resource("limits.gpu", None).is_empty());
        assert!(!env_with(EnvVarSource::default()).is_empty());
    }

    fn claim(storage: &str) -> Vec<Problem> {
        claim_with(&["ReadWriteOnce"], storage)
    }

    /// The problems of a claim template with these access modes and storage request.
    fn claim_with(modes: &[&str], storage: &str) -> Vec<Problem> {
        let mut c = Checker::default();
        c.volume_claim_template(
            "t",
            &PersistentVolumeClaimTemplate {
                metadata: None,
                spec: PersistentVolumeClaimSpec {
                    access_modes: Some(modes.iter().map(|m| (*m).to_owned()).collect()),
                    resources: Some(VolumeResourceRequirements {
                        requests: quantities(&[("storage", storage)]),
                        limits: None,
                    }),
                    ..Default::default()
                },
            },
        );
        c.into_result().err().unwrap_or_default()
    }

    #[test]
    fn claim_storage_must_be_positive() {
        let problems = claim("-1Gi");
        assert!(
            problems
                .iter()
                .any(|p| p.setting == "t.spec.resources.requests.storage" && p.value == "-1Gi"),
            "{problems:?}"
        );
        assert!(!claim("0").is_empty());
        assert!(!claim("-0.5").is_empty());
        assert_eq!(claim("1Gi"), vec![]);
        assert_eq!(claim("1e-12"), vec![]);
    }

    #[test]
    fn read_write_once_pod_stands_alone() {
        let problems = claim_with(&["ReadWriteOncePod", "ReadOnlyMany"], "1Gi");
        assert!(
            problems.iter().any(|p| p.setting == "t.spec.accessModes"),
            "{problems:?}"
        );
    }
}
