//! [`ClusterView`] backed by kube-runtime reflector stores.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::apps::v1::ReplicaSet;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{Api, ListParams};
use kube::core::{DynamicObject, PartialObjectMeta};
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::instrumentation;
use crate::inject::Settings;
use crate::inject::workload::{self, Workload};
use crate::policy::ClusterView;

type MetaStore<K> = Store<PartialObjectMeta<K>>;

/// Where the Instrumentation watch stands.
#[derive(Clone)]
enum InstrumentationWatch {
    /// Not yet known whether the CRD is installed and readable.
    Probing,
    /// The CRD is absent or not readable: the static config serves, and the
    /// probe goes on in the background.
    Unavailable,
    Watching(Store<DynamicObject>),
}

/// Snapshots of the cluster, filled by watches started in [`KubeView::start`].
#[derive(Clone)]
pub struct KubeView {
    instrumentations: watch::Receiver<InstrumentationWatch>,
    namespaces: Option<MetaStore<Namespace>>,
    replicasets: Option<MetaStore<ReplicaSet>>,
    jobs: Option<MetaStore<Job>>,
}

fn is_absent_or_forbidden(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404 || s.code == 403)
}

/// Starts a metadata-only watch into a store; errors are logged and retried
/// with backoff. `None` when the resource cannot be read (RBAC): the webhook
/// then works without it (owner names are derived from names) instead of
/// never becoming ready.
async fn watch_metadata<K>(
    api: Api<PartialObjectMeta<K>>,
    what: &'static str,
) -> Option<MetaStore<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
    K::DynamicType: Default + Eq + Hash + Clone,
{
    let probe = tokio::time::timeout(
        Duration::from_secs(5),
        api.list(&ListParams::default().limit(1)),
    )
    .await;
    // Any other outcome (the API server not reachable yet, or slow): the watch retries.
    if let Ok(Err(e)) = probe
        && is_absent_or_forbidden(&e)
    {
        tracing::warn!(resource = what, error = %e, "cannot list; working without it (check the RBAC in manifests/rbac.yaml)");
        return None;
    }
    let (reader, writer) = reflector::store();
    let stream = reflector::reflector(
        writer,
        watcher(api, watcher::Config::default().any_semantic()).default_backoff(),
    );
    tokio::spawn(async move {
        stream
            .for_each(|event| async move {
                if let Err(e) = event {
                    tracing::warn!(resource = what, error = %e, "watch error; retrying with backoff");
                }
            })
            .await;
    });
    Some(reader)
}

impl KubeView {
    /// Starts the watches. Returns at once; [`KubeView::wait_synced`] tells when they have listed.
    pub async fn start(client: Client) -> Self {
        let (slot, instrumentations) = watch::channel(InstrumentationWatch::Probing);
        let view = KubeView {
            instrumentations,
            namespaces: watch_metadata(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                "namespaces",
            )
            .await,
            replicasets: watch_metadata(
                Api::<PartialObjectMeta<ReplicaSet>>::all(client.clone()),
                "replicasets",
            )
            .await,
            jobs: watch_metadata(Api::<PartialObjectMeta<Job>>::all(client.clone()), "jobs").await,
        };
        tokio::spawn(watch_instrumentations(client, slot));
        view
    }

    /// Waits until namespaces, ReplicaSets and Jobs have been listed, and
    /// the Instrumentations too unless their CRD is not installed (or not
    /// readable). No fixed deadline: reporting ready before the
    /// Instrumentations are known would give a pod annotated
    /// `inject-python: true` the static config, silently.
    pub async fn wait_synced(&self) {
        if let Some(store) = &self.namespaces {
            let _ = store.wait_until_ready().await;
        }
        if let Some(store) = &self.replicasets {
            let _ = store.wait_until_ready().await;
        }
        if let Some(store) = &self.jobs {
            let _ = store.wait_until_ready().await;
        }
        let mut state = self.instrumentations.clone();
        let decided = state
            .wait_for(|s| !matches!(s, InstrumentationWatch::Probing))
            .await
            .map(|s| s.clone());
        if let Ok(InstrumentationWatch::Watching(store)) = decided {
            let _ = store.wait_until_ready().await;
        }
    }

    pub fn instrumentation_count(&self) -> usize {
        self.instrumentation_store().map_or(0, |s| s.len())
    }

    /// Instrumentations whose spec would not be used (see
    /// [`instrumentation::is_usable`]).
    pub fn invalid_instrumentation_count(&self) -> usize {
        self.instrumentation_store().map_or(0, |store| {
            store
                .state()
                .iter()
                .filter(|o| !instrumentation::is_usable(o.data.get("spec")))
                .count()
        })
    }

    fn instrumentation_store(&self) -> Option<Store<DynamicObject>> {
        match &*self.instrumentations.borrow() {
            InstrumentationWatch::Watching(store) => Some(store.clone()),
            InstrumentationWatch::Probing | InstrumentationWatch::Unavailable => None,
        }
    }
}

/// How soon the probe is repeated after an error that says nothing about the
/// CRD (API server unreachable, 5xx): quickly at first, as readiness waits on it.
const PROBE_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The slowest probe: after errors, and while the CRD is absent.
const PROBE_RETRY_MAX: Duration = Duration::from_secs(60);

/// Probes for the CRD (and our RBAC on it); watches once readable, and keeps
/// probing every minute otherwise, so installing the CRD later needs no restart.
async fn watch_instrumentations(client: Client, slot: watch::Sender<InstrumentationWatch>) {
    let resource = instrumentation::api_resource();
    let api = Api::<DynamicObject>::all_with(client, &resource);
    let mut retry = PROBE_RETRY_FIRST;
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(e) if is_absent_or_forbidden(&e) => {
                let first = slot.send_if_modified(|state| {
                    let probing = matches!(state, InstrumentationWatch::Probing);
                    if probing {
                        *state = InstrumentationWatch::Unavailable;
                    }
                    probing
                });
                if first {
                    tracing::info!(error = %e, "Instrumentation resources (opentelemetry.io/v1alpha1) are not installed or not readable; serving with the static config, checking again every minute");
                }
                retry = PROBE_RETRY_MAX;
            }
            Err(e) => {
                tracing::warn!(error = %e, ?retry, "cannot list Instrumentation resources; retrying")
            }
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(PROBE_RETRY_MAX);
    }
    let writer = reflector::store::Writer::new(resource.clone());
    slot.send_replace(InstrumentationWatch::Watching(writer.as_reader()));
    tracing::info!("watching Instrumentation resources");
    reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff())
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(resource = "instrumentations", error = %e, "watch error; retrying with backoff");
            }
        })
        .await;
}

impl ClusterView for KubeView {
    fn instrumentation(
        &self,
        namespace: &str,
        name: &str,
        base: &Settings,
    ) -> Option<Result<Settings, String>> {
        let store = self.instrumentation_store()?;
        let object = store
            .get(&ObjectRef::new_with(name, instrumentation::api_resource()).within(namespace))?;
        Some(instrumentation::settings_for(
            namespace,
            name,
            object.data.get("spec"),
            base,
        ))
    }

    fn instrumentations_in(&self, namespace: &str) -> Vec<String> {
        let Some(store) = self.instrumentation_store() else {
            return Vec::new();
        };
        let objects = store.state();
        instrumentation::names_in(
            namespace,
            objects.iter().filter_map(|o| {
                Some((
                    o.metadata.namespace.as_deref()?,
                    o.metadata.name.as_deref()?,
                ))
            }),
        )
    }

    fn namespace_annotations(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .as_ref()?
            .get(&ObjectRef::new(namespace))?
            .metadata
            .annotations
            .clone()
    }

    fn workload(&self, pod: &Pod, namespace: &str) -> Option<Workload> {
        workload::from_owners(pod, |kind, name| {
            let owners = |meta: &kube::core::ObjectMeta| {
                workload::controller(meta.owner_references.as_deref()).cloned()
            };
            match kind {
                "ReplicaSet" => {
                    let key = ObjectRef::new(name).within(namespace);
                    Some(owners(&self.replicasets.as_ref()?.get(&key)?.metadata))
                }
                "Job" => {
                    let key = ObjectRef::new(name).within(namespace);
                    Some(owners(&self.jobs.as_ref()?.get(&key)?.metadata))
                }
                _ => None,
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::http::{Request, Response, StatusCode};
    use tokio::sync::watch;

    use super::*;

    /// A fake API server: lists of namespaces, ReplicaSets and Jobs answer at
    /// once and empty; watches never answer; the Instrumentation list answers
    /// with `instrumentations` once it holds `Some` (the status code).
    fn fake_cluster(instrumentations: watch::Receiver<Option<u16>>) -> Client {
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let mut rx = instrumentations.clone();
            async move {
                let uri = request.uri().to_string();
                if uri.contains("watch=true") {
                    std::future::pending::<()>().await;
                }
                let status = if uri.contains("instrumentations") {
                    let answer = rx.wait_for(Option::is_some).await.map(|s| *s);
                    answer.ok().flatten().unwrap_or(500)
                } else {
                    200
                };
                let body = if status == 200 {
                    br#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"1"},"items":[]}"#.to_vec()
                } else {
                    format!(r#"{{"apiVersion":"v1","kind":"Status","status":"Failure","code":{status},"reason":"NotFound","message":"the server could not find the requested resource"}}"#).into_bytes()
                };
                let mut response = Response::new(kube::client::Body::from(body));
                *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                Ok::<_, Infallible>(response)
            }
        });
        Client::new(service, "default")
    }

    // The clock is paused: tokio moves it on whenever every task waits, so
    // "not synced after ten minutes" is decided without waiting, and exactly.
    #[tokio::test(start_paused = true)]
    async fn not_synced_while_the_instrumentation_list_is_unanswered() {
        let (answer, rx) = watch::channel(None);
        let view = KubeView::start(fake_cluster(rx)).await;
        let early = tokio::time::timeout(Duration::from_secs(600), view.wait_synced()).await;
        assert!(
            early.is_err(),
            "reported synced before the Instrumentations were listed: a pod \
             annotated inject-python: true would silently get the static config"
        );
        let _ = answer.send(Some(200));
        tokio::time::timeout(Duration::from_secs(600), view.wait_synced())
            .await
            .expect("synced once the Instrumentations are listed");
    }

    #[tokio::test(start_paused = true)]
    async fn synced_without_instrumentations_when_the_crd_is_not_installed() {
        let (_answer, rx) = watch::channel(Some(404));
        let view = KubeView::start(fake_cluster(rx)).await;
        tokio::time::timeout(Duration::from_secs(600), view.wait_synced())
            .await
            .expect("synced: the CRD is absent, so there is nothing to wait for");
        assert_eq!(view.instrumentation_count(), 0);
    }
}
