//! Which pods are in scope, and with which settings: the OpenTelemetry
//! Operator's annotation semantics over the static config.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::config::{Config, Platform};
use crate::delivery::ImageVolumeSupport;
use crate::inject::{Settings, Workload};

pub const INJECT_PYTHON: &str = "instrumentation.opentelemetry.io/inject-python";
pub const CONTAINER_NAMES: &str = "instrumentation.opentelemetry.io/container-names";
pub const PYTHON_CONTAINER_NAMES: &str = "instrumentation.opentelemetry.io/python-container-names";
pub const PYTHON_PLATFORM: &str = "instrumentation.opentelemetry.io/otel-python-platform";

/// A reference to an `Instrumentation` resource from an `inject-python` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InstrumentationRef {
    /// `"true"`: the single Instrumentation of the pod's namespace, if there is one.
    Default,
    Named {
        namespace: String,
        name: String,
    },
}

/// What admission may know about the cluster, answered from in-memory
/// snapshots so admission never waits on the API server. The server backs it
/// with kube reflector stores; tests and the offline CLI with fixed data.
pub trait ClusterView: Send + Sync {
    /// Settings for the named Instrumentation merged over `base`; `None` when
    /// absent, `Err` when it exists but cannot be used (the reason).
    fn instrumentation(
        &self,
        namespace: &str,
        name: &str,
        base: &Settings,
    ) -> Option<Result<Settings, String>>;
    /// Names of the Instrumentations in `namespace`.
    fn instrumentations_in(&self, namespace: &str) -> Vec<String>;
    /// The namespace's annotations, when known.
    fn namespace_annotations(&self, namespace: &str) -> Option<BTreeMap<String, String>>;
    /// The pod's top-level workload from an owner cache, when known.
    fn workload(&self, pod: &Pod, namespace: &str) -> Option<Workload>;
    /// Whether the API server keeps image volumes; by default nobody checks.
    fn image_volumes(&self) -> ImageVolumeSupport {
        ImageVolumeSupport::NotChecked
    }
}

/// Knows nothing about the cluster: the static config only.
pub struct StaticView;

impl ClusterView for StaticView {
    fn instrumentation(&self, _: &str, _: &str, _: &Settings) -> Option<Result<Settings, String>> {
        None
    }
    fn instrumentations_in(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn namespace_annotations(&self, _: &str) -> Option<BTreeMap<String, String>> {
        None
    }
    fn workload(&self, _: &Pod, _: &str) -> Option<Workload> {
        None
    }
}

/// The policy's verdict for one pod.
#[derive(Clone, Debug, PartialEq)]
pub enum Scope {
    /// Instrument with these settings; `why` says what put the pod in scope.
    Inject {
        /// Shared with the webhook's base settings unless an Instrumentation applies.
        settings: Arc<Settings>,
        container_names: Option<Vec<String>>,
        platform: Option<Platform>,
        why: String,
    },
    /// Leave the pod untouched.
    OutOfScope { why: String },
    /// The pod asked for injection but it cannot be done; admit it untouched
    /// and say why (warning, event, log).
    Unresolvable { why: String },
}

/// The operator's merge of the pod's and the namespace's annotation values.
pub fn effective_annotation<'a>(pod_value: Option<&'a str>, ns_value: Option<&'a str>) -> &'a str {
    let pod = pod_value.unwrap_or_default().trim();
    let ns = ns_value.unwrap_or_default().trim();
    if ns.is_empty() {
        return pod;
    }
    if pod.is_empty() {
        return ns;
    }
    if !pod.eq_ignore_ascii_case("true") || ns.eq_ignore_ascii_case("false") {
        return pod;
    }
    ns
}

pub fn parse_ref(value: &str, pod_namespace: &str) -> InstrumentationRef {
    if value.eq_ignore_ascii_case("true") {
        return InstrumentationRef::Default;
    }
    match value.split_once('/') {
        Some((ns, name)) => InstrumentationRef::Named {
            namespace: ns.to_owned(),
            name: name.to_owned(),
        },
        None => InstrumentationRef::Named {
            namespace: pod_namespace.to_owned(),
            name: value.to_owned(),
        },
    }
}

fn annotation<'a>(map: Option<&'a BTreeMap<String, String>>, key: &str) -> Option<&'a str> {
    map?.get(key).map(String::as_str)
}

/// Decides whether and how `pod` in `namespace` is instrumented.
pub fn resolve(
    pod: &Pod,
    namespace: &str,
    namespace_annotations: Option<&BTreeMap<String, String>>,
    config: &Config,
    base: &Arc<Settings>,
    lookup: &dyn ClusterView,
) -> Scope {
    let pod_annotations = pod.metadata.annotations.as_ref();
    let value = effective_annotation(
        annotation(pod_annotations, INJECT_PYTHON),
        annotation(namespace_annotations, INJECT_PYTHON),
    );
    let (settings, why) = match settings_for(value, namespace, config, base, lookup) {
        Ok(chosen) => chosen,
        Err(scope) => return scope,
    };
    let names = annotation(pod_annotations, PYTHON_CONTAINER_NAMES)
        .or_else(|| annotation(pod_annotations, CONTAINER_NAMES))
        .or_else(|| annotation(namespace_annotations, PYTHON_CONTAINER_NAMES))
        .or_else(|| annotation(namespace_annotations, CONTAINER_NAMES));
    let container_names = names.map(|list| {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect::<Vec<_>>()
    });
    let platform_value = annotation(pod_annotations, PYTHON_PLATFORM)
        .or_else(|| annotation(namespace_annotations, PYTHON_PLATFORM));
    let platform = match platform_value.map(str::trim).filter(|s| !s.is_empty()) {
        None => None,
        Some(p) => match p.parse::<Platform>() {
            Ok(p) => Some(p),
            Err(e) => {
                return Scope::Unresolvable {
                    why: format!("{PYTHON_PLATFORM}: {e}"),
                };
            }
        },
    };
    Scope::Inject {
        settings,
        container_names,
        platform,
        why,
    }
}

/// The settings for the effective `inject-python` `value` and why the pod
/// is in scope; `Err` with the verdict when it is not, or cannot be.
fn settings_for(
    value: &str,
    namespace: &str,
    config: &Config,
    base: &Arc<Settings>,
    lookup: &dyn ClusterView,
) -> Result<(Arc<Settings>, String), Scope> {
    if value.eq_ignore_ascii_case("false") {
        return Err(Scope::OutOfScope {
            why: format!("{INJECT_PYTHON} is \"false\""),
        });
    }
    if value.is_empty() {
        if !config.namespaces.iter().any(|n| n == namespace) {
            return Err(Scope::OutOfScope {
                why: format!(
                    "namespace {namespace} is not configured for injection and the pod has no {INJECT_PYTHON} annotation"
                ),
            });
        }
        return Ok((
            Arc::clone(base),
            format!("namespace {namespace} is configured for injection"),
        ));
    }
    let unresolvable = |why: String| Err(Scope::Unresolvable { why });
    match parse_ref(value, namespace) {
        InstrumentationRef::Default => match lookup.instrumentations_in(namespace).as_slice() {
            [] => Ok((
                Arc::clone(base),
                format!(
                    "{INJECT_PYTHON}=true; no Instrumentation in {namespace}, using the webhook's config"
                ),
            )),
            [one] => looked_up(
                lookup.instrumentation(namespace, one, base),
                format!("{INJECT_PYTHON}=true; Instrumentation {namespace}/{one}"),
                || format!("Instrumentation {namespace}/{one} vanished during admission"),
            ),
            many => unresolvable(format!(
                "{INJECT_PYTHON}=true but namespace {namespace} has {} Instrumentations ({}); name one in the annotation",
                many.len(),
                many.join(", ")
            )),
        },
        InstrumentationRef::Named {
            namespace: ref_ns,
            name,
        } => {
            if ref_ns != namespace && !config.allow_cross_namespace_instrumentation {
                return unresolvable(format!(
                    "{INJECT_PYTHON} names Instrumentation {ref_ns}/{name} in another namespace, which the webhook's config does not allow"
                ));
            }
            looked_up(
                lookup.instrumentation(&ref_ns, &name, base),
                format!("{INJECT_PYTHON}={value}; Instrumentation {ref_ns}/{name}"),
                || {
                    format!(
                        "{INJECT_PYTHON}={value} names Instrumentation {ref_ns}/{name}, which does not exist"
                    )
                },
            )
        }
    }
}

/// The settings of an Instrumentation the lookup found, with why they
/// apply; else why the pod cannot be instrumented (`missing`: it is not there).
fn looked_up(
    found: Option<Result<Settings, String>>,
    why: String,
    missing: impl FnOnce() -> String,
) -> Result<(Arc<Settings>, String), Scope> {
    match found {
        Some(Ok(settings)) => Ok((Arc::new(settings), why)),
        Some(Err(why)) => Err(Scope::Unresolvable { why }),
        None => Err(Scope::Unresolvable { why: missing() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operator_annotation_precedence() {
        let cases = [
            (None, None, ""),
            (Some("true"), None, "true"),
            (None, Some("true"), "true"),
            (Some("false"), Some("true"), "false"),
            (Some("true"), Some("false"), "true"),
            (Some("true"), Some("my-inst"), "my-inst"),
            (Some("other"), Some("my-inst"), "other"),
            (Some(""), Some("my-inst"), "my-inst"),
            (Some("ns/x"), None, "ns/x"),
            (None, Some("false"), "false"),
        ];
        for (pod, ns, want) in cases {
            assert_eq!(effective_annotation(pod, ns), want, "pod={pod:?} ns={ns:?}");
        }
    }

    #[test]
    fn references() {
        assert_eq!(parse_ref("TRUE", "a"), InstrumentationRef::Default);
        assert_eq!(
            parse_ref("x", "a"),
            InstrumentationRef::Named {
                namespace: "a".into(),
                name: "x".into()
            }
        );
        assert_eq!(
            parse_ref("b/x", "a"),
            InstrumentationRef::Named {
                namespace: "b".into(),
                name: "x".into()
            }
        );
    }
}
