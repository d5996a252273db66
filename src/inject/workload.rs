//! Names that identify the workload a pod belongs to: `OTEL_SERVICE_NAME`
//! and `service.version`, derived the way the OpenTelemetry Operator does.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

pub const SERVICE_NAME_ANNOTATION: &str = "resource.opentelemetry.io/service.name";
pub const SERVICE_VERSION_ANNOTATION: &str = "resource.opentelemetry.io/service.version";
pub const VERSION_LABEL: &str = "app.kubernetes.io/version";
const POD_TEMPLATE_HASH: &str = "pod-template-hash";

/// The top-level controller of a pod (Deployment rather than its ReplicaSet).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Workload {
    /// Kubernetes kind: `Deployment`, `StatefulSet`, `DaemonSet`, `CronJob`, `Job`, `ReplicaSet`, ...
    pub kind: String,
    pub name: String,
    /// The object's UID when known (from an owner reference); empty: unknown.
    pub uid: String,
    /// The pod's direct owner when the workload is its owner's owner: the
    /// ReplicaSet of a Deployment, the Job of a CronJob. The operator names
    /// both in the resource attributes.
    pub via: Option<Box<Workload>>,
}

impl Workload {
    pub fn new(kind: impl Into<String>, name: impl Into<String>, uid: impl Into<String>) -> Self {
        Workload {
            kind: kind.into(),
            name: name.into(),
            uid: uid.into(),
            via: None,
        }
    }

    /// The resource attribute the operator uses for this kind, e.g. `k8s.deployment.name`.
    pub fn attribute_key(&self) -> Option<&'static str> {
        Some(self.attribute_keys()?.0)
    }

    /// `k8s.<kind>.name` and `k8s.<kind>.uid`.
    fn attribute_keys(&self) -> Option<(&'static str, &'static str)> {
        Some(match self.kind.as_str() {
            "Deployment" => ("k8s.deployment.name", "k8s.deployment.uid"),
            "ReplicaSet" => ("k8s.replicaset.name", "k8s.replicaset.uid"),
            "StatefulSet" => ("k8s.statefulset.name", "k8s.statefulset.uid"),
            "DaemonSet" => ("k8s.daemonset.name", "k8s.daemonset.uid"),
            "Job" => ("k8s.job.name", "k8s.job.uid"),
            "CronJob" => ("k8s.cronjob.name", "k8s.cronjob.uid"),
            _ => return None,
        })
    }

    /// The operator's owner attributes (`addParentResourceLabels`): name, and
    /// UID when asked for and known, of the direct owner and its owner.
    pub fn attributes(&self, with_uids: bool) -> Vec<(&'static str, &str)> {
        let mut out = Vec::with_capacity(4);
        for w in std::iter::once(self).chain(self.via.as_deref()) {
            if let Some((name_key, uid_key)) = w.attribute_keys() {
                out.push((name_key, w.name.as_str()));
                if with_uids && !w.uid.is_empty() {
                    out.push((uid_key, w.uid.as_str()));
                }
            }
        }
        out
    }

    fn with_via(mut self, via: Workload) -> Self {
        self.via = Some(Box::new(via));
        self
    }
}

/// Workload from the pod's controller owner reference, by name alone: a
/// ReplicaSet named `<deployment>-<pod-template-hash>` belongs to that
/// Deployment, a Job named `<cronjob>-<scheduled minute>` to that CronJob.
/// A cache lookup (when one is configured) can replace this guess.
pub fn workload_from_names(pod: &Pod) -> Option<Workload> {
    let owners = pod.metadata.owner_references.as_deref().unwrap_or_default();
    let owner = owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())?;
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH));
    let direct = Workload::new(owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str());
    // The parent's UID is not in the pod: only its name can be guessed.
    let workload = match owner.kind.as_str() {
        "ReplicaSet" => {
            match hash.and_then(|h| owner.name.strip_suffix(h.as_str())?.strip_suffix('-')) {
                Some(deployment) if !deployment.is_empty() => {
                    Workload::new("Deployment", deployment, "").with_via(direct)
                }
                _ => direct,
            }
        }
        "Job" => match cronjob_of_job(&owner.name) {
            Some(cronjob) => Workload::new("CronJob", cronjob, "").with_via(direct),
            None => direct,
        },
        _ => direct,
    };
    Some(workload)
}

/// The controlling owner of an object: the one marked `controller`, else the first.
pub fn controller(owners: Option<&[OwnerReference]>) -> Option<&OwnerReference> {
    let owners = owners?;
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
}

/// The pod's top-level workload from a cache of ReplicaSets and Jobs:
/// `controller_of(kind, name)` is `Some(controller)` for a ReplicaSet or Job
/// the cache holds (`Some(None)` when it has no controller), `None` when it
/// does not hold it. A ReplicaSet owned by a Deployment gives the
/// Deployment, a Job owned by a CronJob the CronJob; other owners are the
/// workload themselves. `None` when the cache does not know the owner yet
/// (the caller then falls back to [`workload_from_names`]).
pub fn from_owners(
    pod: &Pod,
    controller_of: impl Fn(&str, &str) -> Option<Option<OwnerReference>>,
) -> Option<Workload> {
    let owner = controller(pod.metadata.owner_references.as_deref())?;
    let direct = Workload::new(owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str());
    let parent_kind = match owner.kind.as_str() {
        "ReplicaSet" => "Deployment",
        "Job" => "CronJob",
        _ => return Some(direct),
    };
    Some(match controller_of(&owner.kind, &owner.name)? {
        Some(parent) if parent.kind == parent_kind => {
            Workload::new(parent.kind, parent.name, parent.uid).with_via(direct)
        }
        _ => direct,
    })
}

/// CronJob controllers name their Jobs `<cronjob>-<minutes since epoch>`.
fn cronjob_of_job(job: &str) -> Option<&str> {
    let (base, suffix) = job.rsplit_once('-')?;
    (suffix.len() >= 8 && suffix.bytes().all(|b| b.is_ascii_digit()) && !base.is_empty())
        .then_some(base)
}

/// `OTEL_SERVICE_NAME`: the annotation, else the workload's name, else a
/// name derived from the pod (`generateName` or name, minus the
/// pod-template-hash a Deployment adds).
pub fn service_name(pod: &Pod, workload: Option<&Workload>, request_name: &str) -> String {
    if let Some(name) = annotation(pod, SERVICE_NAME_ANNOTATION).filter(|s| !s.is_empty()) {
        return name.to_owned();
    }
    if let Some(w) = workload {
        return w.name.clone();
    }
    let meta = &pod.metadata;
    let name = meta
        .name
        .as_deref()
        .filter(|n| !n.is_empty())
        .or(Some(request_name).filter(|n| !n.is_empty()));
    if let Some(generate) = meta.generate_name.as_deref().filter(|g| !g.is_empty()) {
        let base = generate.trim_end_matches('-');
        return strip_template_hash(pod, base).to_owned();
    }
    match name {
        Some(name) => {
            // A Deployment pod's name is `<deployment>-<hash>-<random>`.
            let without_random = name.rsplit_once('-').map(|(b, _)| b).unwrap_or(name);
            let stripped = strip_template_hash(pod, without_random);
            if stripped.len() < without_random.len() {
                stripped.to_owned()
            } else {
                name.to_owned()
            }
        }
        None => "unknown".to_owned(),
    }
}

fn strip_template_hash<'a>(pod: &Pod, base: &'a str) -> &'a str {
    let hash = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(POD_TEMPLATE_HASH));
    hash.and_then(|h| base.strip_suffix(h.as_str())?.strip_suffix('-'))
        .filter(|b| !b.is_empty())
        .unwrap_or(base)
}

/// `service.version`: the annotation, the `app.kubernetes.io/version` label,
/// else the tag of the container's image (never a digest).
pub fn service_version(pod: &Pod, image: Option<&str>) -> Option<String> {
    if let Some(v) = annotation(pod, SERVICE_VERSION_ANNOTATION).filter(|s| !s.is_empty()) {
        return Some(v.to_owned());
    }
    if let Some(v) = pod
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(VERSION_LABEL))
        .filter(|s| !s.is_empty())
    {
        return Some(v.clone());
    }
    image.and_then(image_tag).map(str::to_owned)
}

/// The tag of an image reference: `registry:5000/app:1.2@sha256:...` → `1.2`.
pub fn image_tag(image: &str) -> Option<&str> {
    let without_digest = image.split('@').next().unwrap_or(image);
    let last_segment = without_digest.rsplit('/').next().unwrap_or(without_digest);
    let (_, tag) = last_segment.rsplit_once(':')?;
    (!tag.is_empty()).then_some(tag)
}

/// The operator's resource-attribute annotation prefix: `resource.opentelemetry.io/<key>`.
pub const RESOURCE_ANNOTATION_PREFIX: &str = "resource.opentelemetry.io/";
/// Labels the operator reads for `service.name` with `useLabelsForResourceAttributes`, first wins.
pub const NAME_LABELS: [&str; 2] = ["app.kubernetes.io/instance", "app.kubernetes.io/name"];

/// The operator's `chooseLabelOrAnnotation`: the `resource.opentelemetry.io/<key>`
/// annotation, else (with `useLabelsForResourceAttributes`) the first label
/// of `labels` that is set; empty values count as unset.
pub fn label_or_annotation<'a>(
    pod: &'a Pod,
    use_labels: bool,
    key: &str,
    labels: &[&str],
) -> Option<&'a str> {
    let annotations = pod.metadata.annotations.as_ref();
    let from_annotation = annotations
        .and_then(|a| a.get(&format!("{RESOURCE_ANNOTATION_PREFIX}{key}")))
        .filter(|v| !v.is_empty());
    if let Some(v) = from_annotation {
        return Some(v);
    }
    if !use_labels {
        return None;
    }
    let pod_labels = pod.metadata.labels.as_ref()?;
    labels
        .iter()
        .find_map(|l| pod_labels.get(*l).filter(|v| !v.is_empty()))
        .map(String::as_str)
}

/// `service.version` as the operator chooses it (`chooseServiceVersion`):
/// annotation, label (only with `useLabelsForResourceAttributes`), else the
/// image's tag, `tag@digest`, or digest.
pub fn operator_service_version(
    pod: &Pod,
    use_labels: bool,
    image: Option<&str>,
) -> Option<String> {
    if let Some(v) = label_or_annotation(pod, use_labels, "service.version", &[VERSION_LABEL]) {
        return Some(v.to_owned());
    }
    let image = image?;
    let (name, digest) = match image.split_once('@') {
        Some((name, digest)) => (name, Some(digest).filter(|d| !d.is_empty())),
        None => (image, None),
    };
    let last_segment = name.rsplit('/').next().unwrap_or(name);
    let tag = last_segment
        .rsplit_once(':')
        .map(|(_, t)| t)
        .filter(|t| !t.is_empty());
    match (tag, digest) {
        (Some(tag), Some(digest)) => Some(format!("{tag}@{digest}")),
        (None, Some(digest)) => Some(digest.to_owned()),
        (Some(tag), None) => Some(tag.to_owned()),
        (None, None) => None,
    }
}

pub fn annotation<'a>(pod: &'a Pod, key: &str) -> Option<&'a str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};

    fn pod(
        name: Option<&str>,
        generate: Option<&str>,
        hash: Option<&str>,
        owner: Option<(&str, &str)>,
    ) -> Pod {
        Pod {
            metadata: ObjectMeta {
                name: name.map(Into::into),
                generate_name: generate.map(Into::into),
                labels: hash.map(|h| [(POD_TEMPLATE_HASH.to_owned(), h.to_owned())].into()),
                owner_references: owner.map(|(kind, name)| {
                    vec![OwnerReference {
                        kind: kind.into(),
                        name: name.into(),
                        controller: Some(true),
                        api_version: "apps/v1".into(),
                        uid: "u".into(),
                        ..Default::default()
                    }]
                }),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn service_name_cases() {
        let cases = [
            (
                pod(Some("cxtm-logstream"), None, None, None),
                "cxtm-logstream",
            ),
            (
                pod(
                    None,
                    Some("cxtm-logstream-7b774997c5-"),
                    Some("7b774997c5"),
                    Some(("ReplicaSet", "cxtm-logstream-7b774997c5")),
                ),
                "cxtm-logstream",
            ),
            (
                pod(
                    None,
                    Some("cxtm-logstream-7b774997c5-"),
                    Some("7b774997c5"),
                    None,
                ),
                "cxtm-logstream",
            ),
            (
                pod(
                    Some("cxtm-logstream-7b774997c5-cc9k6"),
                    None,
                    Some("7b774997c5"),
                    None,
                ),
                "cxtm-logstream",
            ),
            (
                pod(None, Some("db-"), None, Some(("StatefulSet", "db"))),
                "db",
            ),
            (
                pod(
                    None,
                    Some("report-29000000-"),
                    None,
                    Some(("Job", "report-29000000")),
                ),
                "report",
            ),
            (
                pod(None, Some("migrate-"), None, Some(("Job", "migrate"))),
                "migrate",
            ),
            (
                pod(
                    None,
                    Some("rs-only-"),
                    None,
                    Some(("ReplicaSet", "rs-only")),
                ),
                "rs-only",
            ),
            (pod(Some("web-abc"), None, None, None), "web-abc"),
        ];
        for (pod, want) in cases {
            let workload = workload_from_names(&pod);
            assert_eq!(
                service_name(&pod, workload.as_ref(), ""),
                want,
                "{:?}",
                pod.metadata
            );
        }
    }

    #[test]
    fn service_name_annotation_wins() {
        let mut p = pod(Some("x"), None, None, Some(("StatefulSet", "db")));
        p.metadata.annotations =
            Some([(SERVICE_NAME_ANNOTATION.to_owned(), "billing".to_owned())].into());
        assert_eq!(
            service_name(&p, workload_from_names(&p).as_ref(), ""),
            "billing"
        );
    }

    #[test]
    fn image_tags() {
        assert_eq!(
            image_tag("10.122.28.110/testing/tm_logstream:25.2.0"),
            Some("25.2.0")
        );
        assert_eq!(image_tag("registry:5000/app"), None);
        assert_eq!(image_tag("app@sha256:abcd"), None);
        assert_eq!(image_tag("registry:5000/app:1.2@sha256:abcd"), Some("1.2"));
        assert_eq!(image_tag("python:3.12-slim"), Some("3.12-slim"));
        assert_eq!(image_tag("python"), None);
    }

    #[test]
    fn service_version_precedence() {
        let mut p = pod(Some("x"), None, None, None);
        assert_eq!(service_version(&p, Some("a:1")), Some("1".into()));
        p.metadata.labels = Some([(VERSION_LABEL.to_owned(), "2".to_owned())].into());
        assert_eq!(service_version(&p, Some("a:1")), Some("2".into()));
        p.metadata.annotations =
            Some([(SERVICE_VERSION_ANNOTATION.to_owned(), "3".to_owned())].into());
        assert_eq!(service_version(&p, Some("a:1")), Some("3".into()));
    }
}
