//! The reconciler: on the replica holding the fleet Lease only, a pod watch
//! (kube-runtime reflector) surveyed every `fleet.resyncSeconds`. It sets
//! the coverage gauge, rolls back workloads whose instrumented pods
//! crash-loop, restores those whose uninstrumented pods crash too, and (when
//! `fleet.catchUp.enabled`) restarts healthy workloads whose pods we missed.
//!
//! Every change it makes to a workload is a merge patch of annotations only,
//! explained by an Event on the workload and counted in a metric.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use k8s_openapi::jiff::Timestamp;
use kube::Client;
use kube::api::{Api, DynamicObject, LogParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, Resource, ResourceExt};
use kube::runtime::WatchStreamExt;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, watcher};
use serde_json::{Value, json};
use tokio::sync::watch;

use super::status::{Survey, WorkloadKey, survey};
use super::{CRASHES_UNINSTRUMENTED_ANNOTATION, Crash, PodState, restartable};
use crate::admission::{Base, Context};
use crate::config::Fleet;
use crate::inject::{RESTARTED_AT_ANNOTATION, ROLLED_BACK_ANNOTATION, STATUS_ANNOTATION};
use crate::k8s::events::{MAX_NOTE_BYTES, bounded_to};
use crate::metrics::{Metrics, PodLabels};
use crate::policy::ClusterView;

/// The field manager of our patches (`kubectl get -o yaml --show-managed-fields`).
const MANAGER: &str = "otel-injector-fleet";
/// How long catch-up leaves a namespace alone after its reachability check failed.
const UNREACHABLE_BACKOFF: Duration = Duration::from_secs(30);
/// Annotation values we write stay short enough to read in `kubectl describe`.
const MAX_REASON_BYTES: usize = 512;

/// What the reconciler needs; built once in `serve`.
pub struct Reconciler {
    client: Client,
    base: Arc<Base>,
    cluster: Arc<dyn ClusterView>,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    fleet: Fleet,
    /// Catch-up restarts whose rollout has not finished yet.
    in_flight: HashMap<WorkloadKey, Instant>,
    /// When each workload was last restarted by catch-up: one restart per
    /// rollout timeout, so a workload whose new pods are missed again is
    /// not restarted in a loop.
    last_restart: HashMap<WorkloadKey, Instant>,
    /// Rollbacks in the last hour, for `fleet.rollback.maxPerHour`.
    recent_rollbacks: VecDeque<Instant>,
    /// Namespaces where the last reachability check failed, until when
    /// catch-up leaves them alone (it would only make new missed pods).
    unreachable: HashMap<String, Instant>,
    /// Gauge series set at the last survey, so vanished ones go to zero.
    published: HashSet<(String, PodState)>,
}

impl Reconciler {
    pub fn new(
        client: Client,
        base: Arc<Base>,
        cluster: Arc<dyn ClusterView>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let reporter = Reporter {
            controller: "otel-injector".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        let fleet = base.config().fleet.clone();
        Reconciler {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            base,
            cluster,
            metrics,
            fleet,
            in_flight: HashMap::new(),
            last_restart: HashMap::new(),
            recent_rollbacks: VecDeque::new(),
            unreachable: HashMap::new(),
            published: HashSet::new(),
        }
    }

    /// Runs for ever: reconciles while `leader` says this replica holds the
    /// Lease, and drops its pod watch (and the gauge) while it does not.
    pub async fn run(mut self, mut leader: watch::Receiver<bool>) {
        loop {
            if leader.wait_for(|held| *held).await.is_err() {
                return;
            }
            tracing::info!("holding the fleet Lease: watching pods and reconciling");
            let (reader, writer) = reflector::store();
            let api = Api::<Pod>::all(self.client.clone());
            let stream = watcher(api, watcher::Config::default())
                .default_backoff()
                .modify(|pod| pod.managed_fields_mut().clear());
            let watch = tokio::spawn(reflector::reflector(writer, stream).for_each(|e| async move {
                if let Err(e) = e {
                    tracing::warn!(resource = "pods", error = %e, "fleet pod watch error; retrying with backoff");
                }
            }));
            tokio::select! {
                () = self.reconcile_while_leader(&reader) => {}
                _ = leader.wait_for(|held| !*held) => {}
            }
            watch.abort();
            self.forget();
            tracing::info!("lost the fleet Lease: reconciler idle");
        }
    }

    async fn reconcile_while_leader(&mut self, pods: &Store<Pod>) {
        if pods.wait_until_ready().await.is_err() {
            return;
        }
        let mut every = tokio::time::interval(Duration::from_secs(self.fleet.resync_seconds));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let snapshot = pods.state();
            self.reconcile(snapshot.iter().map(|p| p.as_ref())).await;
        }
    }

    /// A replica that no longer holds the Lease reports nothing and acts on nothing.
    fn forget(&mut self) {
        self.metrics.pods.clear();
        self.published.clear();
        self.in_flight.clear();
    }

    /// One pass: survey, publish, then act.
    pub async fn reconcile<'a>(&mut self, pods: impl IntoIterator<Item = &'a Pod>) {
        let ctx = Context {
            base: &self.base,
            cluster: self.cluster.as_ref(),
        };
        let survey = survey(pods, ctx, &self.fleet.rollback, Timestamp::now());
        self.publish(&survey);
        if self.fleet.rollback.enabled {
            self.rollbacks(&survey).await;
        }
        self.re_enable(&survey).await;
        if self.fleet.catch_up.enabled {
            self.catch_up(&survey).await;
        }
    }

    fn publish(&mut self, survey: &Survey) {
        let mut now = HashSet::new();
        for ((namespace, state), n) in &survey.counts {
            self.metrics
                .pods
                .get_or_create(&labels(namespace, *state))
                .set(*n);
            now.insert((namespace.clone(), *state));
        }
        for (namespace, state) in self.published.difference(&now) {
            self.metrics.pods.remove(&labels(namespace, *state));
        }
        self.published = now;
    }

    async fn rollbacks(&mut self, survey: &Survey) {
        for (key, summary) in &survey.workloads {
            if !restartable(&key.kind) {
                continue;
            }
            if let Some((pod, crash)) = &summary.instrumented_crash {
                self.roll_back(key, pod, crash).await;
            }
            if let Some((pod, crash)) = &summary.rolled_back_crash {
                self.restore(key, pod, crash).await;
            }
        }
    }

    /// Rolls `key` back unless it already is, or crashed uninstrumented before.
    async fn roll_back(&mut self, key: &WorkloadKey, pod: &str, crash: &Crash) {
        let Some((api, object)) = self.get(key).await else {
            return;
        };
        let annotations = object.annotations();
        if annotations.contains_key(ROLLED_BACK_ANNOTATION)
            || annotations.contains_key(CRASHES_UNINSTRUMENTED_ANNOTATION)
        {
            return;
        }
        let hour = Duration::from_secs(3600);
        self.recent_rollbacks.retain(|t| t.elapsed() < hour);
        if self.recent_rollbacks.len() >= self.fleet.rollback.max_per_hour as usize {
            tracing::warn!(workload = %key, pod, %crash, limit = self.fleet.rollback.max_per_hour, "instrumented pod crash-loops, but the rollback limit per hour is reached; not rolling back now");
            return;
        }
        let last_line = self
            .last_log_line(&key.namespace, pod, &crash.container)
            .await;
        let reason = bounded(match last_line {
            Some(line) => format!("{crash}; pod {pod}; last log line: {line}"),
            None => format!("{crash}; pod {pod}"),
        });
        let patch = json!({
            "metadata": {"annotations": {ROLLED_BACK_ANNOTATION: reason}},
            "spec": {"template": {"metadata": {"annotations": {ROLLED_BACK_ANNOTATION: reason}}}}
        });
        if let Err(e) = merge(&api, &key.name, &patch).await {
            tracing::error!(workload = %key, error = %e, "could not roll the workload back");
            return;
        }
        self.recent_rollbacks.push_back(Instant::now());
        self.metrics.rollback(&key.namespace, crash.kind);
        tracing::warn!(workload = %key, %reason, "instrumented pods crash-loop: rolled back (restarting uninstrumented)");
        let note = format!(
            "instrumented pods crash-loop ({reason}); restarting without instrumentation. Remove the annotation {ROLLED_BACK_ANNOTATION} to instrument it again"
        );
        self.event(
            &object,
            key,
            EventType::Warning,
            "InstrumentationRolledBack",
            note,
        )
        .await;
    }

    /// The uninstrumented pods of a rolled-back workload crash too: the
    /// fault is not ours, so instrumentation comes back, for good.
    async fn restore(&mut self, key: &WorkloadKey, pod: &str, crash: &Crash) {
        let Some((api, object)) = self.get(key).await else {
            return;
        };
        if !object.annotations().contains_key(ROLLED_BACK_ANNOTATION) {
            return;
        }
        let why = bounded(format!("{crash}; pod {pod}; at {}", Timestamp::now()));
        let patch = json!({
            "metadata": {"annotations": {
                ROLLED_BACK_ANNOTATION: Value::Null,
                CRASHES_UNINSTRUMENTED_ANNOTATION: why,
            }},
            "spec": {"template": {"metadata": {"annotations": {ROLLED_BACK_ANNOTATION: Value::Null}}}}
        });
        if let Err(e) = merge(&api, &key.name, &patch).await {
            tracing::error!(workload = %key, error = %e, "could not restore instrumentation");
            return;
        }
        self.metrics
            .rollback_restored(&key.namespace, "crash_uninstrumented");
        tracing::warn!(workload = %key, %why, "rolled-back pods crash without instrumentation too: instrumentation restored");
        let note = format!(
            "its pods crash without instrumentation too ({why}): the fault is not the instrumentation's; instrumentation restored and the workload is not rolled back again while {CRASHES_UNINSTRUMENTED_ANNOTATION} is set"
        );
        self.event(
            &object,
            key,
            EventType::Warning,
            "InstrumentationRestored",
            note,
        )
        .await;
    }

    /// Someone removed the rollback annotation from the workload: take it
    /// out of the template too, which restarts it instrumented.
    async fn re_enable(&mut self, survey: &Survey) {
        for (key, summary) in &survey.workloads {
            if summary.count(PodState::RolledBack) == 0 || !restartable(&key.kind) {
                continue;
            }
            let Some((api, object)) = self.get(key).await else {
                continue;
            };
            let in_template = template_annotation(&object, ROLLED_BACK_ANNOTATION).is_some();
            if object.annotations().contains_key(ROLLED_BACK_ANNOTATION) || !in_template {
                continue;
            }
            let patch = json!({"spec": {"template": {"metadata": {"annotations": {ROLLED_BACK_ANNOTATION: Value::Null}}}}});
            if let Err(e) = merge(&api, &key.name, &patch).await {
                tracing::error!(workload = %key, error = %e, "could not re-enable instrumentation");
                continue;
            }
            self.metrics
                .rollback_restored(&key.namespace, "annotation_removed");
            tracing::info!(workload = %key, "rollback annotation removed: restarting instrumented");
            let note = format!(
                "{ROLLED_BACK_ANNOTATION} was removed from the workload: restarting it with instrumentation"
            );
            self.event(
                &object,
                key,
                EventType::Normal,
                "InstrumentationReEnabled",
                note,
            )
            .await;
        }
    }

    async fn catch_up(&mut self, survey: &Survey) {
        self.retire_finished_rollouts().await;
        let timeout = Duration::from_secs(self.fleet.catch_up.rollout_timeout_seconds);
        self.last_restart.retain(|_, t| t.elapsed() < timeout);
        self.unreachable.retain(|_, until| Instant::now() < *until);
        let slots = self.fleet.catch_up.max_concurrent as usize;
        for (key, summary) in &survey.workloads {
            if self.in_flight.len() >= slots {
                return;
            }
            let missed = summary.count(PodState::Missed);
            if missed == 0
                || !restartable(&key.kind)
                || self.in_flight.contains_key(key)
                || self.last_restart.contains_key(key)
                || self.unreachable.contains_key(&key.namespace)
            {
                continue;
            }
            let Some((api, object)) = self.get(key).await else {
                continue;
            };
            if !rollout_complete(&key.kind, &object) {
                tracing::debug!(workload = %key, missed, "missed pods, but the workload is not healthy now; not restarting it");
                continue;
            }
            if let Err(why) = self.webhook_reachable(key, &object).await {
                self.metrics.catch_up(&key.namespace, "webhook_unreachable");
                tracing::warn!(workload = %key, missed, %why, retry_in = ?UNREACHABLE_BACKOFF, "not catching up: a restart now would only make new missed pods");
                // The namespace's workloads meet the same registration.
                self.unreachable
                    .insert(key.namespace.clone(), Instant::now() + UNREACHABLE_BACKOFF);
                continue;
            }
            self.restart(key, &api, &object, missed).await;
        }
    }

    async fn restart(
        &mut self,
        key: &WorkloadKey,
        api: &Api<DynamicObject>,
        object: &DynamicObject,
        missed: usize,
    ) {
        let at = Timestamp::now().to_string();
        let patch = json!({"spec": {"template": {"metadata": {"annotations": {RESTARTED_AT_ANNOTATION: at}}}}});
        if let Err(e) = merge(api, &key.name, &patch).await {
            self.metrics.catch_up(&key.namespace, "failed");
            tracing::error!(workload = %key, error = %e, "catch-up restart failed");
            return;
        }
        self.in_flight.insert(key.clone(), Instant::now());
        self.last_restart.insert(key.clone(), Instant::now());
        self.metrics.catch_up(&key.namespace, "restarted");
        tracing::info!(workload = %key, missed, "catch-up: rollout restart");
        let note = format!(
            "{missed} live pod(s) were created without instrumentation (the webhook was not called); rollout restart so they are recreated instrumented"
        );
        self.event(
            object,
            key,
            EventType::Normal,
            "InstrumentationCatchUp",
            note,
        )
        .await;
    }

    async fn retire_finished_rollouts(&mut self) {
        let timeout = Duration::from_secs(self.fleet.catch_up.rollout_timeout_seconds);
        let keys: Vec<WorkloadKey> = self.in_flight.keys().cloned().collect();
        for key in keys {
            let started = self.in_flight.get(&key).copied();
            let done = match self.get(&key).await {
                Some((_, object)) => rollout_complete(&key.kind, &object),
                // Deleted, or unreadable: it holds no slot.
                None => true,
            };
            if done {
                self.in_flight.remove(&key);
                tracing::info!(workload = %key, "catch-up rollout finished");
            } else if started.is_some_and(|t| t.elapsed() > timeout) {
                self.in_flight.remove(&key);
                tracing::warn!(workload = %key, ?timeout, "catch-up rollout did not finish in time; freeing its slot");
            }
        }
    }

    /// A server-side dry-run create of the workload's pod: it goes through
    /// the API server's webhooks exactly as a restart's pods will, so it
    /// comes back with our status annotation only if our registration
    /// reaches a replica for this namespace.
    async fn webhook_reachable(
        &self,
        key: &WorkloadKey,
        object: &DynamicObject,
    ) -> Result<(), String> {
        let template = object
            .data
            .pointer("/spec/template")
            .cloned()
            .ok_or_else(|| "the workload has no spec.template".to_owned())?;
        let mut pod: Pod = serde_json::from_value(template)
            .map_err(|e| format!("its pod template does not decode: {e}"))?;
        pod.metadata.name = None;
        pod.metadata.generate_name = Some(format!("{}-reachability-", key.name));
        pod.metadata.namespace = Some(key.namespace.clone());
        let api = Api::<Pod>::namespaced(self.client.clone(), &key.namespace);
        let params = PostParams {
            dry_run: true,
            field_manager: Some(MANAGER.into()),
        };
        let created = api
            .create(&params, &pod)
            .await
            .map_err(|e| format!("dry-run pod create in {} failed: {e}", key.namespace))?;
        if created.annotations().contains_key(STATUS_ANNOTATION) {
            Ok(())
        } else {
            Err(format!(
                "a dry-run pod create in {} came back without {STATUS_ANNOTATION}: the API server did not call the webhook (failurePolicy Ignore and no replica answering, or the namespace is not selected)",
                key.namespace
            ))
        }
    }

    async fn get(&self, key: &WorkloadKey) -> Option<(Api<DynamicObject>, DynamicObject)> {
        let resource = api_resource(&key.kind)?;
        let api =
            Api::<DynamicObject>::namespaced_with(self.client.clone(), &key.namespace, &resource);
        match api.get_opt(&key.name).await {
            Ok(Some(object)) => Some((api, object)),
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(workload = %key, error = %e, "cannot read the workload");
                None
            }
        }
    }

    /// The crashed container's last line, for the annotation: what a person
    /// reads first. Best effort.
    async fn last_log_line(&self, namespace: &str, pod: &str, container: &str) -> Option<String> {
        let api = Api::<Pod>::namespaced(self.client.clone(), namespace);
        let params = LogParams {
            container: Some(container.to_owned()),
            previous: true,
            tail_lines: Some(1),
            limit_bytes: Some(1024),
            ..LogParams::default()
        };
        let text = api.logs(pod, &params).await.ok()?;
        let line = text.lines().rev().find(|l| !l.trim().is_empty())?;
        Some(line.trim().to_owned())
    }

    async fn event(
        &self,
        object: &DynamicObject,
        key: &WorkloadKey,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let Some(resource) = api_resource(&key.kind) else {
            return;
        };
        let reference: ObjectReference = object.object_ref(&resource);
        let event = Event {
            type_,
            reason: reason.into(),
            note: Some(bounded_to(note, MAX_NOTE_BYTES)),
            action: "Reconcile".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(workload = %key, error = %e, reason, "could not record a Kubernetes Event");
        }
    }
}

fn labels(namespace: &str, state: PodState) -> PodLabels {
    PodLabels {
        namespace: namespace.to_owned(),
        state: state.label().to_owned(),
    }
}

fn api_resource(kind: &str) -> Option<ApiResource> {
    Some(match kind {
        "Deployment" => ApiResource::erase::<Deployment>(&()),
        "StatefulSet" => ApiResource::erase::<StatefulSet>(&()),
        "DaemonSet" => ApiResource::erase::<DaemonSet>(&()),
        _ => return None,
    })
}

async fn merge(api: &Api<DynamicObject>, name: &str, patch: &Value) -> Result<(), kube::Error> {
    api.patch(
        name,
        &PatchParams {
            field_manager: Some(MANAGER.into()),
            ..PatchParams::default()
        },
        &Patch::Merge(patch),
    )
    .await
    .map(|_| ())
}

fn template_annotation<'a>(object: &'a DynamicObject, key: &str) -> Option<&'a Value> {
    object
        .data
        .pointer("/spec/template/metadata/annotations")?
        .get(key)
}

fn bounded(text: String) -> String {
    bounded_to(text, MAX_REASON_BYTES)
}

/// Whether a workload's rollout has finished and all its pods are available
/// (what `kubectl rollout status` waits for). Catch-up restarts only such a
/// workload, and waits for this again before it frees the slot.
pub fn rollout_complete(kind: &str, object: &DynamicObject) -> bool {
    let int = |path: &str| object.data.pointer(path).and_then(Value::as_i64);
    let generation = object.metadata.generation.unwrap_or(0);
    let observed = int("/status/observedGeneration").unwrap_or(0);
    if observed < generation {
        return false;
    }
    let desired = int("/spec/replicas").unwrap_or(1);
    let all = |fields: &[&str], want: i64| fields.iter().all(|f| int(f).unwrap_or(0) == want);
    match kind {
        "Deployment" => {
            all(
                &[
                    "/status/updatedReplicas",
                    "/status/availableReplicas",
                    "/status/replicas",
                ],
                desired,
            ) && int("/status/unavailableReplicas").unwrap_or(0) == 0
        }
        "StatefulSet" => {
            let revisions = object.data.pointer("/status/currentRevision")
                == object.data.pointer("/status/updateRevision");
            revisions
                && all(
                    &[
                        "/status/readyReplicas",
                        "/status/updatedReplicas",
                        "/status/replicas",
                    ],
                    desired,
                )
        }
        "DaemonSet" => {
            let want = int("/status/desiredNumberScheduled").unwrap_or(0);
            all(
                &[
                    "/status/numberReady",
                    "/status/updatedNumberScheduled",
                    "/status/numberAvailable",
                ],
                want,
            )
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(kind: &str, value: Value) -> DynamicObject {
        let mut o: DynamicObject = serde_json::from_value(value).expect("object");
        o.types = Some(kube::core::TypeMeta {
            api_version: "apps/v1".into(),
            kind: kind.into(),
        });
        o
    }

    #[test]
    fn a_rollout_is_complete_only_when_every_replica_is_updated_and_available() {
        let done = object(
            "Deployment",
            json!({
                "metadata": {"name": "web", "generation": 2},
                "spec": {"replicas": 2},
                "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
            }),
        );
        assert!(rollout_complete("Deployment", &done));
        let old_pod_left = object(
            "Deployment",
            json!({
                "metadata": {"name": "web", "generation": 2},
                "spec": {"replicas": 2},
                "status": {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 2, "availableReplicas": 2}
            }),
        );
        assert!(!rollout_complete("Deployment", &old_pod_left));
        let not_observed = object(
            "Deployment",
            json!({
                "metadata": {"name": "web", "generation": 3},
                "spec": {"replicas": 2},
                "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
            }),
        );
        assert!(!rollout_complete("Deployment", &not_observed));
        let ds = object(
            "DaemonSet",
            json!({
                "metadata": {"name": "agent", "generation": 1},
                "status": {"observedGeneration": 1, "desiredNumberScheduled": 1, "numberReady": 0,
                    "updatedNumberScheduled": 1, "numberAvailable": 0}
            }),
        );
        assert!(!rollout_complete("DaemonSet", &ds));
        let sts = object(
            "StatefulSet",
            json!({
                "metadata": {"name": "db", "generation": 1},
                "spec": {"replicas": 1},
                "status": {"observedGeneration": 1, "replicas": 1, "readyReplicas": 1, "updatedReplicas": 1,
                    "currentRevision": "a", "updateRevision": "a"}
            }),
        );
        assert!(rollout_complete("StatefulSet", &sts));
    }

    #[test]
    fn reasons_are_cut_at_a_character_boundary() {
        let cut = bounded("é".repeat(600));
        assert!(cut.len() <= MAX_REASON_BYTES && cut.len() >= MAX_REASON_BYTES - 1);
    }
}

#[cfg(test)]
mod fake_cluster_tests {
    use std::convert::Infallible;
    use std::sync::Mutex;

    use axum::http::{Request, Response, StatusCode};
    use http_body_util::BodyExt;

    use super::*;
    use crate::config::Config;
    use crate::policy::StaticView;

    /// What the fake API server was asked: method, path and query, body.
    type Calls = Arc<Mutex<Vec<(String, String, Value)>>>;

    /// A fake API server holding one Deployment `web` in `cxtm` (with
    /// `annotations`); it records every request, answers PATCHes with the
    /// Deployment, Event creates with 201, and the crashed container's log.
    fn fake_api(annotations: Value, calls: Calls) -> Client {
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let calls = calls.clone();
            let annotations = annotations.clone();
            async move {
                let method = request.method().to_string();
                let uri = request.uri().to_string();
                let bytes = request
                    .into_body()
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                calls
                    .lock()
                    .expect("calls")
                    .push((method.clone(), uri.clone(), body));
                let deployment = json!({
                    "apiVersion": "apps/v1", "kind": "Deployment",
                    "metadata": {"name": "web", "namespace": "cxtm", "uid": "d-uid",
                        "annotations": annotations},
                    "spec": {"template": {"metadata": {}, "spec": {"containers": []}}}
                });
                let (status, text) = if uri.contains("/log") {
                    (
                        200,
                        "starting\nImportError: opentelemetry conflicts with app\n".to_owned(),
                    )
                } else if uri.contains("/events") {
                    (201, json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"}}).to_string())
                } else {
                    (200, deployment.to_string())
                };
                let mut response = Response::new(kube::client::Body::from(text.into_bytes()));
                *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                Ok::<_, Infallible>(response)
            }
        });
        Client::new(service, "cxtm")
    }

    /// An instrumented pod of Deployment `web` whose app container crash-loops.
    fn crash_looping_pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web-5d8f-x", "namespace": "cxtm",
                "labels": {"pod-template-hash": "5d8f"},
                "annotations": {STATUS_ANNOTATION: "injected"},
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                    "name": "web-5d8f", "uid": "rs", "controller": true}]},
            "spec": {"containers": [{"name": "app", "image": "python:3.12"}],
                "initContainers": [{"name": crate::inject::OPERATOR_INIT_CONTAINER, "image": "x"}]},
            "status": {"containerStatuses": [{"name": "app", "image": "x", "imageID": "",
                "ready": false, "restartCount": 2,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1}}}]}
        }))
        .expect("pod")
    }

    fn reconciler(client: Client) -> (Reconciler, Arc<Metrics>) {
        let metrics = Arc::new(Metrics::new());
        let base = Arc::new(Base::new(Config::default()));
        let r = Reconciler::new(client, base, Arc::new(StaticView), metrics.clone());
        (r, metrics)
    }

    #[tokio::test]
    async fn a_crash_looping_instrumented_workload_is_rolled_back_once_with_an_event_and_a_metric()
    {
        let calls: Calls = Arc::default();
        let (mut r, metrics) = reconciler(fake_api(json!({}), calls.clone()));
        let pod = crash_looping_pod();
        r.reconcile([&pod]).await;
        let calls = calls.lock().expect("calls").clone();
        let patches: Vec<&Value> = calls
            .iter()
            .filter(|(m, u, _)| m == "PATCH" && u.contains("/deployments/web"))
            .map(|(_, _, b)| b)
            .collect();
        assert_eq!(patches.len(), 1, "{calls:?}");
        let on_workload = patches[0]["metadata"]["annotations"][ROLLED_BACK_ANNOTATION]
            .as_str()
            .expect("annotation on the workload");
        assert_eq!(
            patches[0]["spec"]["template"]["metadata"]["annotations"][ROLLED_BACK_ANNOTATION],
            on_workload,
            "and on its template, which restarts it"
        );
        assert!(
            on_workload.contains("container app: exit code 1"),
            "{on_workload}"
        );
        assert!(
            on_workload.contains("ImportError"),
            "the last log line: {on_workload}"
        );
        let event = calls
            .iter()
            .find(|(m, u, _)| m == "POST" && u.contains("/events"))
            .map(|(_, _, b)| b)
            .expect("an Event");
        assert_eq!(event["reason"], "InstrumentationRolledBack");
        assert_eq!(event["regarding"]["name"], "web");
        let text = metrics.encode();
        assert!(
            text.contains(
                r#"otel_injector_rollbacks_total{namespace="cxtm",reason="crash_loop"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"otel_injector_pods{namespace="cxtm",state="instrumented"} 1"#),
            "{text}"
        );
    }

    #[tokio::test]
    async fn a_workload_already_rolled_back_or_known_to_crash_uninstrumented_is_left_alone() {
        for annotations in [
            json!({ROLLED_BACK_ANNOTATION: "earlier"}),
            json!({CRASHES_UNINSTRUMENTED_ANNOTATION: "earlier"}),
        ] {
            let calls: Calls = Arc::default();
            let (mut r, metrics) = reconciler(fake_api(annotations.clone(), calls.clone()));
            r.reconcile([&crash_looping_pod()]).await;
            let calls = calls.lock().expect("calls").clone();
            assert!(
                !calls.iter().any(|(m, _, _)| m == "PATCH" || m == "POST"),
                "{annotations}: {calls:?}"
            );
            assert!(!metrics.encode().contains("otel_injector_rollbacks_total{"));
        }
    }

    #[tokio::test]
    async fn catch_up_is_off_by_default_and_patches_nothing_for_a_missed_pod() {
        let calls: Calls = Arc::default();
        let (mut r, metrics) = reconciler(fake_api(json!({}), calls.clone()));
        let mut pod = crash_looping_pod();
        pod.metadata.annotations = None;
        pod.spec.as_mut().expect("spec").init_containers = None;
        pod.status = None;
        r.reconcile([&pod]).await;
        let calls = calls.lock().expect("calls").clone();
        assert!(calls.is_empty(), "{calls:?}");
        assert!(
            metrics
                .encode()
                .contains(r#"otel_injector_pods{namespace="cxtm",state="missed"} 1"#)
        );
    }
}
