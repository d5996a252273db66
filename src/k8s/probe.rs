//! Does the API server keep `volumes[].image`? A server-side dry-run create
//! of a pod with the image volume exactly as `imageVolume` delivery writes it
//! (read-only, `subPath`), in the webhook's own namespace, at start and every
//! few minutes. Nothing is stored and nothing runs.
//!
//! With the ImageVolume gate off, the API server drops the field (1.34.4
//! then accepts the pod without it: an empty mount, silently; a refusal
//! would block the pod instead); on 1.31/1.32 it refuses the
//! `subPath`; a restricted Pod Security level that does not allow image
//! volumes refuses it too. Any of these would refuse every pod we patched, so
//! until a check passes, `imageVolume` pods are delivered through the init
//! container ([`crate::delivery::choose`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, Pod, PodSpec, SeccompProfile, SecurityContext, VolumeMount,
};
use kube::api::{Api, PostParams};

use crate::delivery::{ImageVolumeState, ImageVolumeSupport};
use crate::inject::{self, Settings, Workload};
use crate::metrics::Metrics;
use crate::policy::ClusterView;
use crate::settings::Platform;

/// The probe pod: the image volume and its mount as a patched pod would have
/// them, in a container that passes the restricted Pod Security level.
pub fn probe_pod(settings: &Settings) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.generate_name = Some("otel-injector-image-volume-check-".to_owned());
    pod.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/name".to_owned(),
        "otel-injector-image-volume-check".to_owned(),
    )]));
    let container = Container {
        name: "check".to_owned(),
        image: Some(settings.image.clone()),
        volume_mounts: Some(vec![VolumeMount {
            name: settings.volume_name.clone(),
            mount_path: settings.mount_path.clone(),
            read_only: Some(true),
            sub_path: Some(Platform::Glibc.image_sub_path().to_owned()),
            ..Default::default()
        }]),
        security_context: Some(SecurityContext {
            run_as_non_root: Some(true),
            run_as_user: Some(65534),
            allow_privilege_escalation: Some(false),
            capabilities: Some(Capabilities {
                drop: Some(vec!["ALL".to_owned()]),
                add: None,
            }),
            seccomp_profile: Some(SeccompProfile {
                type_: "RuntimeDefault".to_owned(),
                localhost_profile: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    pod.spec = Some(PodSpec {
        containers: vec![container],
        volumes: Some(vec![inject::image_volume(settings)]),
        automount_service_account_token: Some(false),
        ..Default::default()
    });
    pod
}

/// What the API server's answer to the probe pod means.
pub fn judge(answer: Result<Pod, kube::Error>) -> Result<ImageVolumeSupport, String> {
    match answer {
        Ok(pod) => {
            let volumes = pod.spec.and_then(|s| s.volumes).unwrap_or_default();
            if volumes.iter().any(|v| v.image.is_some()) {
                return Ok(ImageVolumeSupport::Supported);
            }
            // Seen on kube-apiserver 1.34.4 with the gate off: the pod is
            // accepted without the field, so a real pod would start with no
            // instrumentation in the mount, silently.
            let instead = match volumes.first() {
                Some(v) if v.empty_dir.is_some() => "an emptyDir in its place",
                Some(_) => "the volume without a source",
                None => "no volume",
            };
            Ok(ImageVolumeSupport::Unsupported(format!(
                "the API server dropped volumes[].image from a dry-run pod and kept {instead}: its ImageVolume feature gate is off"
            )))
        }
        Err(kube::Error::Api(status)) => {
            let hint = if status.message.contains("must specify a volume type") {
                " (it drops volumes[].image: the ImageVolume feature gate is off)"
            } else {
                ""
            };
            Ok(ImageVolumeSupport::Unsupported(format!(
                "the API server refused a dry-run pod with an image volume{hint}: {} ({})",
                status.message, status.code
            )))
        }
        // Not an answer about image volumes: the caller keeps what it knew.
        Err(other) => Err(format!("image volume check failed: {other}")),
    }
}

/// Checks now and then every `every`, storing the answer in `state`;
/// logs and counts each change.
pub async fn run(
    api: Api<Pod>,
    settings: Arc<Settings>,
    state: Arc<ImageVolumeState>,
    metrics: Arc<Metrics>,
    every: Duration,
) {
    let params = PostParams {
        dry_run: true,
        field_manager: Some("otel-injector".to_owned()),
    };
    let pod = probe_pod(&settings);
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let answer = tokio::time::timeout(Duration::from_secs(10), api.create(&params, &pod))
            .await
            .unwrap_or_else(|_| {
                Err(kube::Error::Service(
                    "no answer to the dry-run create within 10 s".into(),
                ))
            });
        let support = match judge(answer) {
            Ok(support) => support,
            Err(why) if state.get() == ImageVolumeSupport::Pending => {
                ImageVolumeSupport::Unsupported(why)
            }
            Err(why) => {
                tracing::debug!(error = %why, "image volume check failed; keeping the last answer");
                continue;
            }
        };
        metrics.image_volume_check(&support);
        if state.set(support.clone()) {
            match support.refusal() {
                None => tracing::info!(
                    image = %settings.image,
                    "the API server keeps image volumes: imageVolume delivery is available"
                ),
                Some(why) => tracing::warn!(
                    image = %settings.image,
                    reason = %why,
                    "imageVolume delivery is not available; pods that ask for it get the init container"
                ),
            }
        }
    }
}

/// A cluster view whose image volume answer comes from the check.
pub struct Checked<V> {
    pub inner: V,
    pub state: Arc<ImageVolumeState>,
}

impl<V: ClusterView> ClusterView for Checked<V> {
    fn instrumentation(
        &self,
        namespace: &str,
        name: &str,
        base: &Settings,
    ) -> Option<Result<Settings, String>> {
        self.inner.instrumentation(namespace, name, base)
    }
    fn instrumentations_in(&self, namespace: &str) -> Vec<String> {
        self.inner.instrumentations_in(namespace)
    }
    fn namespace_annotations(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.inner.namespace_annotations(namespace)
    }
    fn workload(&self, pod: &Pod, namespace: &str) -> Option<Workload> {
        self.inner.workload(pod, namespace)
    }
    fn image_volumes(&self) -> ImageVolumeSupport {
        self.state.get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn the_probe_pod_carries_the_volume_as_delivery_writes_it() {
        let settings = Settings::from_config(&Config::default());
        let pod = probe_pod(&settings);
        let spec = pod.spec.expect("spec");
        let volumes = spec.volumes.expect("volumes");
        assert_eq!(volumes[0], inject::image_volume(&settings));
        let mount = &spec.containers[0].volume_mounts.as_ref().expect("mounts")[0];
        assert_eq!(mount.read_only, Some(true));
        assert_eq!(mount.sub_path.as_deref(), Some("autoinstrumentation"));
    }

    #[test]
    fn answers_are_judged() {
        let settings = Settings::from_config(&Config::default());
        let kept = judge(Ok(probe_pod(&settings)));
        assert_eq!(kept, Ok(ImageVolumeSupport::Supported));
        let mut dropped = probe_pod(&settings);
        if let Some(v) = dropped.spec.as_mut().and_then(|s| s.volumes.as_mut()) {
            v[0].image = None;
        }
        match judge(Ok(dropped)) {
            Ok(ImageVolumeSupport::Unsupported(why)) => {
                assert!(why.contains("ImageVolume feature gate is off"), "{why}");
            }
            other => panic!("{other:?}"),
        }
        let refused = kube::Error::Api(
            kube::core::Status::failure(
                "Pod \"x\" is invalid: spec.volumes[0]: Required value: must specify a volume type",
                "Invalid",
            )
            .with_code(422)
            .boxed(),
        );
        match judge(Err(refused)) {
            Ok(ImageVolumeSupport::Unsupported(why)) => {
                assert!(why.contains("feature gate is off"), "{why}");
            }
            other => panic!("{other:?}"),
        }
    }
}
