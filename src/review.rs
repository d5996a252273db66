//! An AdmissionReview in, an AdmissionReview out: decoding, the decision and
//! the wire format, with no I/O. The HTTP handler, the fuzzer and the
//! benchmarks call [`Reviewer::review`].

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, Pod, PodSpec, SecurityContext, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::admission::{self, Admission, Base, Context, Outcome};
use crate::config::Config;
use crate::inject::JsonPatch;
use crate::policy::ClusterView;

pub const API_VERSION: &str = "admission.k8s.io/v1";
pub const KIND: &str = "AdmissionReview";

/// A body we cannot answer with an AdmissionReview: HTTP 400.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BadReview {
    /// The body is not JSON, or not shaped like an AdmissionReview.
    #[error("body is not a JSON AdmissionReview: {0}")]
    NotJson(String),
    /// An AdmissionReview of another API version, or another kind of object.
    #[error(
        "expected apiVersion {API_VERSION} and kind {KIND}, got apiVersion {api_version:?} and kind {kind:?}"
    )]
    WrongType { api_version: String, kind: String },
    /// A review without a request: nothing to answer (no uid to echo).
    #[error("AdmissionReview has no request")]
    NoRequest,
}

/// What was decided, for the log line, the metrics and Events.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    pub uid: String,
    pub namespace: String,
    /// The pod's name, else its `generateName`, else empty.
    pub pod: String,
    pub outcome: Outcome,
    pub reason: String,
    /// The containers the patch instruments.
    pub containers: Vec<String>,
    pub patch_ops: usize,
    pub patch_bytes: usize,
    pub warnings: Vec<String>,
    pub dry_run: bool,
    /// The pod's controlling owner, for Events (the pod itself does not exist yet).
    pub owner: Option<OwnerReference>,
    /// The delivery asked for and used, when the pod was in scope.
    pub delivery: Option<crate::delivery::Chosen>,
}

impl Decision {
    fn new(uid: String, namespace: Option<String>, pod: String, dry_run: Option<bool>) -> Self {
        Decision {
            uid,
            namespace: namespace.unwrap_or_default(),
            pod,
            outcome: Outcome::NotApplicable,
            reason: String::new(),
            containers: Vec::new(),
            patch_ops: 0,
            patch_bytes: 0,
            warnings: Vec::new(),
            dry_run: dry_run.unwrap_or_default(),
            owner: None,
            delivery: None,
        }
    }

    /// A pod admitted untouched because the review itself could not be used.
    fn failed(mut self, reason: String) -> Reviewed {
        self.outcome = Outcome::Error;
        self.warnings.push(admission::not_instrumented(&reason));
        self.reason = reason;
        Reviewed {
            body: encode_response(&self.uid, None, &self.warnings),
            decision: self,
        }
    }
}

pub struct Reviewed {
    /// The JSON AdmissionReview to send back.
    pub body: Vec<u8>,
    pub decision: Decision,
}

/// The admission logic with its configuration and view of the cluster.
#[derive(Clone)]
pub struct Reviewer {
    base: Arc<Base>,
    cluster: Arc<dyn ClusterView>,
}

/// The parts of an `admission.k8s.io/v1` AdmissionReview the webhook reads.
/// Everything else (userInfo, oldObject, options, requestKind, ...) is
/// skipped unparsed: decoding kube's whole `AdmissionRequest<Pod>` cost as
/// much as the pod itself. `O` is the pod, or `IgnoredAny` for the envelope
/// alone when the pod does not decode, so that review can still be answered,
/// allowed, with its uid.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingReview<O> {
    #[serde(default)]
    api_version: String,
    #[serde(default)]
    kind: String,
    request: Option<IncomingRequest<O>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingRequest<O> {
    uid: String,
    #[serde(default)]
    resource: Resource,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: String,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default = "Option::default")]
    object: Option<O>,
}

#[derive(Default, Deserialize)]
struct Resource {
    #[serde(default)]
    group: String,
    #[serde(default)]
    resource: String,
}

/// The pod as the mutation reads it: its metadata and, of its spec, only the
/// fields `inject`, `policy` and `workload` look at. The rest (probes,
/// resources, ports, status, ...) is skipped unparsed: decoding all of it
/// into k8s-openapi types (a `Container` is 2 KB) was the largest cost of a
/// review, and the API server has validated it already. Fields are optional
/// and `null`-tolerant exactly as in k8s-openapi's own decoders.
/// `tests/properties.rs` (`the_wire_answer_is_the_pure_answer`) checks that
/// a review decides as on the fully decoded pod.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingPod {
    #[serde(default)]
    metadata: Option<ObjectMeta>,
    #[serde(default)]
    spec: Option<MapOnly<IncomingSpec>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingSpec {
    #[serde(default)]
    containers: Option<Vec<MapOnly<IncomingContainer>>>,
    #[serde(default)]
    init_containers: Option<Vec<MapOnly<Named>>>,
    #[serde(default)]
    volumes: Option<Vec<MapOnly<Named>>>,
    #[serde(default)]
    node_selector: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IncomingContainer {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    image: Option<String>,
    #[serde(default)]
    command: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<EnvVar>>,
    #[serde(default)]
    volume_mounts: Option<Vec<VolumeMount>>,
    #[serde(default)]
    security_context: Option<SecurityContext>,
}

/// Init containers and volumes: only their names matter (clashes, markers).
#[derive(Deserialize)]
struct Named {
    #[serde(default)]
    name: Option<String>,
}

/// `T` decoded from a JSON object only. A derived `Deserialize` also takes
/// an array of the fields in order; k8s-openapi's decoders (and the API
/// server) do not, so neither may ours.
struct MapOnly<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for MapOnly<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Object<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Object<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        deserializer
            .deserialize_map(Object(std::marker::PhantomData))
            .map(MapOnly)
    }
}

impl IncomingPod {
    fn into_pod(self) -> Pod {
        let spec = self.spec.map(|MapOnly(spec)| PodSpec {
            containers: spec
                .containers
                .unwrap_or_default()
                .into_iter()
                .map(|MapOnly(c)| Container {
                    name: c.name.unwrap_or_default(),
                    image: c.image,
                    command: c.command,
                    env: c.env,
                    volume_mounts: c.volume_mounts,
                    security_context: c.security_context,
                    ..Container::default()
                })
                .collect(),
            init_containers: spec.init_containers.map(|named| {
                named
                    .into_iter()
                    .map(|MapOnly(n)| Container {
                        name: n.name.unwrap_or_default(),
                        ..Container::default()
                    })
                    .collect()
            }),
            volumes: spec.volumes.map(|named| {
                named
                    .into_iter()
                    .map(|MapOnly(n)| Volume {
                        name: n.name.unwrap_or_default(),
                        ..Volume::default()
                    })
                    .collect()
            }),
            node_selector: spec.node_selector,
            ..PodSpec::default()
        });
        Pod {
            metadata: self.metadata.unwrap_or_default(),
            spec,
            status: None,
        }
    }
}

/// The AdmissionReview response as Kubernetes documents it, written
/// directly: we always allow, and `patch` is a base64 string (kube 5 would
/// write a JSON array of bytes, kube-rs #1781). Field order is that of the
/// `admission.k8s.io/v1` types.
fn encode_response(uid: &str, patch: Option<&JsonPatch>, warnings: &[String]) -> Vec<u8> {
    let patch = patch.filter(|p| !p.is_empty()).map(JsonPatch::as_bytes);
    let base64_len = patch.map_or(0, |p| p.len().div_ceil(3) * 4);
    let mut out = Vec::with_capacity(160 + uid.len() + base64_len);
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
    );
    // Serializing strings into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut out, uid);
    out.extend_from_slice(br#","allowed":true"#);
    if let Some(patch) = patch {
        out.extend_from_slice(br#","patch":""#);
        // SIMD base64: the scalar `base64` engine was ~10 % of a review.
        base64_simd::STANDARD.encode_append(patch, &mut out);
        out.extend_from_slice(br#"","patchType":"JSONPatch""#);
    }
    if !warnings.is_empty() {
        out.extend_from_slice(br#","warnings":"#);
        let _ = serde_json::to_writer(&mut out, warnings);
    }
    out.extend_from_slice(b"}}");
    out
}

impl Reviewer {
    pub fn new(config: Config, cluster: Arc<dyn ClusterView>) -> Self {
        Reviewer {
            base: Arc::new(Base::new(config)),
            cluster,
        }
    }

    /// Answers one AdmissionReview body. `Err` only when there is no review to answer.
    pub fn review(&self, body: &[u8]) -> Result<Reviewed, BadReview> {
        match serde_json::from_slice::<IncomingReview<MapOnly<IncomingPod>>>(body) {
            Ok(review) => {
                check_type(&review.api_version, &review.kind)?;
                let request = review.request.ok_or(BadReview::NoRequest)?;
                Ok(self.decide(request))
            }
            Err(typed_error) => {
                // The envelope may be fine and only the pod odd: admit it, say why.
                let envelope: IncomingReview<IgnoredAny> = serde_json::from_slice(body)
                    .map_err(|_| BadReview::NotJson(typed_error.to_string()))?;
                check_type(&envelope.api_version, &envelope.kind)?;
                let request = envelope.request.ok_or(BadReview::NoRequest)?;
                let decision = Decision::new(
                    request.uid,
                    request.namespace,
                    request.name,
                    request.dry_run,
                );
                Ok(decision.failed(format!("could not decode the request: {typed_error}")))
            }
        }
    }

    fn decide(&self, request: IncomingRequest<MapOnly<IncomingPod>>) -> Reviewed {
        let mut decision = Decision::new(
            request.uid,
            request.namespace,
            request.name.clone(),
            request.dry_run,
        );
        let is_pod = request.resource.group.is_empty() && request.resource.resource == "pods";
        let sub_resource = request.sub_resource.as_deref().unwrap_or_default();
        if !(is_pod && request.operation == "CREATE" && sub_resource.is_empty()) {
            let sub_resource = request
                .sub_resource
                .as_deref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            decision.reason = format!(
                "not a pod CREATE ({} {}/{}{sub_resource})",
                request.operation, request.resource.group, request.resource.resource,
            );
            return Reviewed {
                body: encode_response(&decision.uid, None, &[]),
                decision,
            };
        }
        let Some(MapOnly(pod)) = request.object else {
            return decision.failed("pod CREATE review without an object".into());
        };
        let pod = pod.into_pod();
        if decision.namespace.is_empty() {
            decision.namespace = pod.metadata.namespace.clone().unwrap_or_default();
        }
        if let Some(label) = [&pod.metadata.name, &pod.metadata.generate_name]
            .into_iter()
            .flatten()
            .find(|n| !n.is_empty())
        {
            decision.pod.clone_from(label);
        }
        decision.owner = pod.metadata.owner_references.as_ref().and_then(|owners| {
            owners
                .iter()
                .find(|o| o.controller == Some(true))
                .or_else(|| owners.first())
                .cloned()
        });
        let context = Context {
            base: &self.base,
            cluster: self.cluster.as_ref(),
        };
        let admitted = admission::admit(&pod, &decision.namespace, &request.name, context);
        record(decision, admitted)
    }
}

/// The decision and the response for what admission decided.
fn record(mut decision: Decision, admitted: Admission) -> Reviewed {
    decision.outcome = admitted.outcome;
    decision.delivery = admitted.delivery;
    decision.containers = admitted.instrumented().map(str::to_owned).collect();
    let patch = admitted.patch();
    if let Some(patch) = patch {
        decision.patch_ops = patch.len();
        decision.patch_bytes = patch.as_bytes().len();
    }
    let body = encode_response(&decision.uid, patch, &admitted.warnings);
    decision.reason = admitted.reason;
    decision.warnings = admitted.warnings;
    Reviewed { body, decision }
}

fn check_type(api_version: &str, kind: &str) -> Result<(), BadReview> {
    if api_version == API_VERSION && kind == KIND {
        Ok(())
    } else {
        Err(BadReview::WrongType {
            api_version: api_version.to_owned(),
            kind: kind.to_owned(),
        })
    }
}
