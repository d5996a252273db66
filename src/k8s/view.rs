//! [`ClusterView`] backed by kube-runtime reflector stores.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::{Arc, RwLock};
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

use super::instrumentation;
use crate::inject::{Settings, Workload};
use crate::policy::ClusterView;

type MetaStore<K> = Store<PartialObjectMeta<K>>;

/// Snapshots of the cluster, filled by watches started in [`KubeView::start`].
#[derive(Clone)]
pub struct KubeView {
    instrumentations: Arc<RwLock<Option<Store<DynamicObject>>>>,
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
        let view = KubeView {
            instrumentations: Arc::new(RwLock::new(None)),
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
        tokio::spawn(watch_instrumentations(
            client,
            view.instrumentations.clone(),
        ));
        view
    }

    /// Waits until namespaces, ReplicaSets and Jobs have been listed, and the
    /// Instrumentations too when their CRD is readable.
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
        // Give the Instrumentation probe a moment to decide whether the CRD exists.
        for _ in 0..50 {
            let store = self.instrumentations.read().ok().and_then(|s| s.clone());
            match store {
                Some(store) => {
                    let _ = store.wait_until_ready().await;
                    return;
                }
                None => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    pub fn instrumentation_count(&self) -> usize {
        self.instrumentation_store().map_or(0, |s| s.len())
    }

    fn instrumentation_store(&self) -> Option<Store<DynamicObject>> {
        self.instrumentations.read().ok().and_then(|s| s.clone())
    }
}

/// Probes for the CRD (and our RBAC on it); watches once readable, and keeps
/// probing every minute otherwise, so installing the CRD later needs no restart.
async fn watch_instrumentations(client: Client, slot: Arc<RwLock<Option<Store<DynamicObject>>>>) {
    let resource = instrumentation::api_resource();
    let api = Api::<DynamicObject>::all_with(client, &resource);
    let mut said_absent = false;
    loop {
        match api.list(&ListParams::default().limit(1)).await {
            Ok(_) => break,
            Err(e) if is_absent_or_forbidden(&e) => {
                if !said_absent {
                    tracing::info!(error = %e, "Instrumentation resources (opentelemetry.io/v1alpha1) are not installed or not readable; serving with the static config, checking again every minute");
                    said_absent = true;
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list Instrumentation resources; retrying in a minute")
            }
        }
        tokio::time::sleep(Duration::from_secs(60)).await;
    }
    let writer = reflector::store::Writer::new(resource.clone());
    let reader = writer.as_reader();
    if let Ok(mut guard) = slot.write() {
        *guard = Some(reader);
    }
    tracing::info!("watching Instrumentation resources");
    reflector::reflector(writer, watcher(api, watcher::Config::default()).default_backoff())
        .for_each(|event| async move {
            if let Err(e) = event {
                tracing::warn!(resource = "instrumentations", error = %e, "watch error; retrying with backoff");
            }
        })
        .await;
}

fn controller(
    owners: Option<&Vec<k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference>>,
) -> Option<&k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference> {
    let owners = owners?;
    owners
        .iter()
        .find(|o| o.controller == Some(true))
        .or_else(|| owners.first())
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
        let owner = controller(pod.metadata.owner_references.as_ref())?;
        let (kind, parent_kind) = match owner.kind.as_str() {
            "ReplicaSet" => {
                let rs = self
                    .replicasets
                    .as_ref()?
                    .get(&ObjectRef::new(&owner.name).within(namespace))?;
                (
                    controller(rs.metadata.owner_references.as_ref()).cloned(),
                    "Deployment",
                )
            }
            "Job" => {
                let job = self
                    .jobs
                    .as_ref()?
                    .get(&ObjectRef::new(&owner.name).within(namespace))?;
                (
                    controller(job.metadata.owner_references.as_ref()).cloned(),
                    "CronJob",
                )
            }
            other => {
                return Some(Workload {
                    kind: other.to_owned(),
                    name: owner.name.clone(),
                });
            }
        };
        Some(match kind {
            Some(parent) if parent.kind == parent_kind => Workload {
                kind: parent.kind,
                name: parent.name,
            },
            _ => Workload {
                kind: owner.kind.clone(),
                name: owner.name.clone(),
            },
        })
    }
}
