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

use std::collections::BTreeMap;
use std::fmt;

use k8s_openapi::api::core::v1::{
    EnvVar, EnvVarSource, ImageVolumeSource, PersistentVolumeClaimSpec,
    PersistentVolumeClaimTemplate, ResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::settings::Settings;

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

/// A quantity as apimachinery holds it once parsed: rounded away from zero
/// to whole nano-units (`resource.ParseQuantity` rounds to `Nano` with
/// `inf.RoundUp`), kept exactly in an `i128`, so that requests, limits and
/// page sizes compare as the API server compares them ("1Gi" equals
/// "1024Mi", "-1Gi" is negative). Beyond ±1.7e29 units, where no resource
/// lives, `nanos` is `None` and comparisons fall back to `approx`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParsedQuantity {
    pub nanos: Option<i128>,
    /// The value as a float, for the out-of-range fallback.
    pub approx: f64,
    pub format: QuantityFormat,
}

/// How apimachinery prints a quantity back: from the suffix it was written with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QuantityFormat {
    /// `Ki`, `Mi`, ...
    BinarySI,
    /// No suffix, or `n`, `u`, `m`, `k`, `M`, ...
    DecimalSI,
    /// `e3`, `E-2`, ...
    DecimalExponent,
}

const NANOS_PER_UNIT: i128 = 1_000_000_000;

impl ParsedQuantity {
    pub fn is_negative(&self) -> bool {
        self.nanos.map_or(self.approx < 0.0, |n| n < 0)
    }

    pub fn is_positive(&self) -> bool {
        self.nanos.map_or(self.approx > 0.0, |n| n > 0)
    }

    pub fn compare(&self, other: &Self) -> std::cmp::Ordering {
        match (self.nanos, other.nanos) {
            (Some(a), Some(b)) => a.cmp(&b),
            _ => self.approx.total_cmp(&other.approx),
        }
    }

    /// `Quantity.Value()`: whole units, rounded up.
    fn units(&self) -> Option<i128> {
        self.nanos.map(|n| ceil_div(n, NANOS_PER_UNIT))
    }

    /// `Quantity.MilliValue()`: thousandths, rounded up.
    fn millis(&self) -> Option<i128> {
        self.nanos.map(|n| ceil_div(n, NANOS_PER_UNIT / 1000))
    }

    /// `MilliValue() % 1000 == 0`: what the API server calls an integer.
    pub fn is_whole(&self) -> bool {
        self.millis()
            .map_or(self.approx.fract() == 0.0, |m| m % 1000 == 0)
    }
}

/// A rule of the API server's: `Ok` where it holds, else its refusal.
fn rule(holds: bool, refusal: &str) -> Result<(), String> {
    if holds {
        Ok(())
    } else {
        Err(refusal.to_owned())
    }
}

/// Division rounding away from zero (for a positive divisor).
fn ceil_div(n: i128, d: i128) -> i128 {
    let q = n / d;
    if n % d == 0 {
        q
    } else if n > 0 {
        q + 1
    } else {
        q - 1
    }
}

const QUANTITY_FORMAT: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
const QUANTITY_SUFFIX: &str = "unable to parse quantity's suffix";

/// A suffix as powers: `(binary, decimal)`, the value being
/// `number × 1024^binary × 10^decimal`.
fn suffix_powers(suffix: &str) -> Result<(u32, i32), String> {
    let binary = ["Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    if let Some(i) = binary.iter().position(|b| *b == suffix) {
        return Ok((i as u32 + 1, 0));
    }
    let decimal = match suffix {
        "n" => -9,
        "u" => -6,
        "m" => -3,
        "" => 0,
        "k" => 3,
        "M" => 6,
        "G" => 9,
        "T" => 12,
        "P" => 15,
        "E" => 18,
        exponent if exponent.len() > 1 && exponent.starts_with(['e', 'E']) => exponent[1..]
            .parse::<i32>()
            .map_err(|_| QUANTITY_SUFFIX.to_owned())?,
        _ => return Err(QUANTITY_SUFFIX.to_owned()),
    };
    Ok((0, decimal))
}

/// The magnitude in nano-units, rounded up; `None` beyond `i128`.
fn exact_nanos(digits: &str, fraction_len: usize, binary: u32, decimal: i32) -> Option<i128> {
    let digits = digits.trim_start_matches('0');
    let mantissa: u128 = if digits.is_empty() {
        0
    } else {
        digits.parse().ok()?
    };
    let scaled = mantissa.checked_mul(1024u128.checked_pow(binary)?)?;
    let exponent = i64::from(decimal) - fraction_len as i64 + 9;
    let magnitude = if exponent >= 0 {
        scaled.checked_mul(10u128.checked_pow(u32::try_from(exponent).ok()?)?)?
    } else {
        match u32::try_from(-exponent)
            .ok()
            .and_then(|e| 10u128.checked_pow(e))
        {
            Some(divisor) => scaled.div_ceil(divisor),
            // Smaller than a nano-unit: rounded up to one, as apimachinery does.
            None => u128::from(scaled > 0),
        }
    };
    i128::try_from(magnitude).ok()
}

/// `resource.ParseQuantity` after the JSON decoder's `strings.TrimSpace`:
/// the API server fails the whole pod with exactly these messages.
pub fn quantity(text: &str) -> Result<ParsedQuantity, String> {
    let s = text.trim();
    if s.is_empty() {
        return Err(QUANTITY_FORMAT.to_owned());
    }
    let bytes = s.as_bytes();
    let mut pos = 0;
    let negative = bytes[0] == b'-';
    if matches!(bytes[0], b'-' | b'+') {
        pos += 1;
    }
    let digits = |from: usize| {
        from + bytes[from..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count()
    };
    let int_end = digits(pos);
    let mut number_end = int_end;
    if bytes.get(number_end) == Some(&b'.') {
        number_end = digits(number_end + 1);
    }
    // The suffix: letters of the set, then an optional signed integer.
    let mut i = number_end;
    while i < bytes.len() && b"eEinumkKMGTP".contains(&bytes[i]) {
        i += 1;
    }
    if i < bytes.len() && matches!(bytes[i], b'+' | b'-') {
        i += 1;
    }
    if !bytes[i..].iter().all(u8::is_ascii_digit) {
        return Err(QUANTITY_FORMAT.to_owned());
    }
    let (binary, decimal) = suffix_powers(&s[number_end..])?;
    // apimachinery reads "", "." and "5." as numbers (zero, five).
    let whole = &s[pos..int_end];
    let fraction = s[int_end..number_end].trim_start_matches('.');
    let number = format!("{whole}{fraction}");
    let mut approx = format!("0{whole}.{fraction}0")
        .parse::<f64>()
        .unwrap_or(0.0)
        * 1024f64.powi(binary as i32)
        * 10f64.powi(decimal);
    let mut nanos = exact_nanos(&number, fraction.len(), binary, decimal);
    if negative {
        approx = -approx;
        nanos = nanos.map(|n| -n);
    }
    let format = match (binary, &s[number_end..]) {
        (1.., _) => QuantityFormat::BinarySI,
        (_, suffix) if suffix.len() > 1 && suffix.starts_with(['e', 'E']) => {
            QuantityFormat::DecimalExponent
        }
        _ => QuantityFormat::DecimalSI,
    };
    Ok(ParsedQuantity {
        nanos,
        approx,
        format,
    })
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

/// A `configMapKeyRef`/`secretKeyRef`: a DNS subdomain name and a key of
/// `[-._a-zA-Z0-9]+` (`validateConfigMapKeySelector`, `IsConfigMapKey`).
fn key_ref(name: &str, key: &str) -> Result<(), String> {
    dns_subdomain(name).map_err(|e| format!("name {name:?} {e}"))?;
    let ok = !key.is_empty()
        && key.len() <= 253
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        && key != "."
        && !key.starts_with("..");
    rule(
        ok,
        "a key must be at most 253 letters, digits, '-', '_' or '.', and not '.' or start with '..'",
    )
}

/// `imagePullPolicy`, as the API server's enum.
pub fn pull_policy(value: &str) -> Result<(), String> {
    match value {
        "Always" | "IfNotPresent" | "Never" => Ok(()),
        _ => Err("must be Always, IfNotPresent or Never".to_owned()),
    }
}

/// An env var name: `[-._a-zA-Z][-._a-zA-Z0-9]*` (the API server's
/// C_IDENTIFIER-like rule, before the relaxed validation of newer releases:
/// what every supported API server accepts).
pub fn env_var_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || matches!(b, b'-' | b'.' | b'_'));
    rule(
        first_ok && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_')),
        "a valid environment variable name must consist of alphabetic characters, digits, '_', '-' or '.', and must not start with a digit",
    )
}

/// An RFC 1123 label: names of containers and volumes.
pub fn dns_label(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    rule(
        ok,
        "must be a DNS-1123 label (lowercase letters, digits, '-', at most 63 characters, starting and ending with a letter or digit)",
    )
}

/// An RFC 1123 subdomain: dot-separated labels, at most 253 characters.
pub fn dns_subdomain(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        // Unlike a label on its own, a part of a subdomain may be longer than 63.
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        });
    rule(
        ok,
        "must be a DNS-1123 subdomain (lowercase labels separated by '.', at most 253 characters)",
    )
}

/// `[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?`, at most 63: the name part of
/// a qualified name, and a non-empty label value.
fn name_part(s: &str) -> bool {
    let edge = |b: Option<u8>| b.is_some_and(|b| b.is_ascii_alphanumeric());
    !s.is_empty()
        && s.len() <= 63
        && edge(s.bytes().next())
        && edge(s.bytes().last())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A qualified name (`[prefix/]name`): label keys, extended resources.
pub fn qualified_name(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    if let Some(prefix) = prefix {
        dns_subdomain(prefix).map_err(|e| format!("the prefix {prefix:?} {e}"))?;
    }
    rule(
        name_part(name),
        "must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    )
}

pub fn label_key(key: &str) -> Result<(), String> {
    qualified_name(key)
}

pub fn label_value(value: &str) -> Result<(), String> {
    rule(
        value.is_empty() || name_part(value),
        "a label value must be empty or at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit",
    )
}

/// An image reference: `[domain[:port]/]path[:tag][@digest]`. The API
/// server only refuses surrounding whitespace; the kubelet refuses the rest
/// (InvalidImageName), and the pod would then never start.
pub fn image(reference: &str) -> Result<(), String> {
    if reference.is_empty() {
        return Err("must name an image".to_owned());
    }
    if reference.trim() != reference {
        return Err("must not have leading or trailing whitespace".to_owned());
    }
    let (rest, digest) = match reference.split_once('@') {
        Some((rest, digest)) => (rest, Some(digest)),
        None => (reference, None),
    };
    if let Some(digest) = digest {
        image_digest(digest)?;
    }
    let (name, tag) = match rest.rfind(':') {
        Some(i) if !rest[i..].contains('/') => (&rest[..i], Some(&rest[i + 1..])),
        _ => (rest, None),
    };
    if let Some(tag) = tag {
        let ok = !tag.is_empty()
            && tag.len() <= 128
            && tag.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '_')
            && tag
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
        if !ok {
            return Err(format!(
                "tag {tag:?} is not valid (letters, digits, '_', '.', '-', at most 128)"
            ));
        }
    }
    if name.len() > 255 {
        return Err("the repository name is longer than 255 characters".to_owned());
    }
    let mut components: Vec<&str> = name.split('/').collect();
    let has_domain = components.len() > 1
        && (components[0].contains(['.', ':'])
            || components[0] == "localhost"
            || components[0].bytes().any(|b| b.is_ascii_uppercase()));
    if has_domain {
        image_domain(components.remove(0))?;
    }
    for component in components {
        if !path_component(component) {
            return Err(format!(
                "repository path component {component:?} is not valid (lowercase letters and digits, separated by '.', '_', '__' or '-')"
            ));
        }
    }
    Ok(())
}

fn image_domain(domain: &str) -> Result<(), String> {
    let (host, port) = if let Some(v6) = domain.strip_prefix('[') {
        match v6.split_once(']') {
            Some((addr, rest)) if addr.parse::<std::net::Ipv6Addr>().is_ok() => {
                (addr, rest.strip_prefix(':'))
            }
            _ => return Err(format!("registry {domain:?} is not a valid address")),
        }
    } else {
        match domain.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (domain, None),
        }
    };
    if let Some(port) = port
        && (port.is_empty() || !port.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(format!("registry port {port:?} is not a number"));
    }
    let component_ok = |c: &str| {
        !c.is_empty()
            && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !c.starts_with('-')
            && !c.ends_with('-')
    };
    if domain.starts_with('[') || host.split('.').all(component_ok) {
        Ok(())
    } else {
        Err(format!("registry {host:?} is not a valid host name"))
    }
}

/// `[a-z0-9]+(?:(?:[._]|__|[-]+)[a-z0-9]+)*`
fn path_component(component: &str) -> bool {
    let bytes = component.as_bytes();
    let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    if !bytes.first().is_some_and(alnum) || !bytes.last().is_some_and(alnum) {
        return false;
    }
    let mut i = 0;
    while i < bytes.len() {
        if alnum(&bytes[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && !alnum(&bytes[i]) {
            i += 1;
        }
        let separator = &component[start..i];
        let ok = matches!(separator, "." | "_" | "__") || separator.bytes().all(|b| b == b'-');
        if !ok {
            return false;
        }
    }
    true
}

fn image_digest(digest: &str) -> Result<(), String> {
    let bad = || format!("digest {digest:?} is not valid (algorithm:hex)");
    let (algorithm, hex) = digest.split_once(':').ok_or_else(bad)?;
    let algorithm_ok = algorithm.split(['+', '.', '-', '_']).all(|c| {
        c.starts_with(|ch: char| ch.is_ascii_alphabetic())
            && c.bytes().all(|b| b.is_ascii_alphanumeric())
    });
    if algorithm_ok && hex.len() >= 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(())
    } else {
        Err(bad())
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
