//! Which delivery a pod gets: the config's default, the pod's (or its
//! namespace's) `otel-injector.io/delivery` annotation, and whether the API
//! server keeps image volumes at all.
//!
//! An API server with the ImageVolume gate off silently drops
//! `volumes[].image`: the pod then gets an empty mount (1.34.4 accepts it
//! without the field) or is refused for a volume with no source. So the
//! webhook checks (a dry-run create, `k8s::probe`) and delivers
//! through the init container until the field is known to survive.

use std::collections::BTreeMap;
use std::sync::RwLock;

use k8s_openapi::api::core::v1::Pod;

use crate::settings::Delivery;

pub const DELIVERY_ANNOTATION: &str = "otel-injector.io/delivery";

/// What the webhook knows about the API server and image volumes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ImageVolumeSupport {
    /// Nobody checks (offline `mutate`/`explain`, a webhook without a
    /// cluster): the delivery asked for is used as is.
    #[default]
    NotChecked,
    /// A check is due but has not answered yet: not safe to use.
    Pending,
    /// A dry-run pod with an image volume came back with it.
    Supported,
    /// The field does not survive, or the check failed; why, in words.
    Unsupported(String),
}

impl ImageVolumeSupport {
    /// Why `imageVolume` cannot be used now; `None` when it can.
    pub fn refusal(&self) -> Option<String> {
        match self {
            ImageVolumeSupport::NotChecked | ImageVolumeSupport::Supported => None,
            ImageVolumeSupport::Pending => Some(
                "the check that the API server keeps volumes[].image has not answered yet"
                    .to_owned(),
            ),
            ImageVolumeSupport::Unsupported(why) => Some(why.clone()),
        }
    }
}

/// The last answer of the image volume check, shared by the checker, the
/// admission path and `/readyz`.
#[derive(Debug, Default)]
pub struct ImageVolumeState {
    support: RwLock<ImageVolumeSupport>,
}

impl ImageVolumeState {
    pub fn new(support: ImageVolumeSupport) -> Self {
        ImageVolumeState {
            support: RwLock::new(support),
        }
    }

    pub fn get(&self) -> ImageVolumeSupport {
        // A poisoned lock only means a writer panicked mid-assignment of a
        // plain value: the value is still whole.
        match self.support.read() {
            Ok(s) => s.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Stores the new answer; `true` when it changed.
    pub fn set(&self, support: ImageVolumeSupport) -> bool {
        let mut current = match self.support.write() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        };
        let changed = *current != support;
        *current = support;
        changed
    }
}

/// The delivery one pod gets, and what it asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Chosen {
    pub requested: Delivery,
    pub delivery: Delivery,
}

impl Chosen {
    pub fn fell_back(self) -> bool {
        self.requested != self.delivery
    }
}

/// The pod's delivery: its annotation, else its namespace's, else `default`;
/// `imageVolume` falls back to `initContainer` when `support` refuses it.
/// Never refuses a pod: a bad annotation value is a warning and the default.
pub fn choose(
    pod: &Pod,
    namespace_annotations: Option<&BTreeMap<String, String>>,
    default: Delivery,
    support: &ImageVolumeSupport,
    warnings: &mut Vec<String>,
) -> Chosen {
    let value = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DELIVERY_ANNOTATION))
        .or_else(|| namespace_annotations.and_then(|a| a.get(DELIVERY_ANNOTATION)))
        .map(|v| v.trim())
        .filter(|v| !v.is_empty());
    let requested = match value.map(str::parse::<Delivery>) {
        None => default,
        Some(Ok(d)) => d,
        Some(Err(e)) => {
            warnings.push(format!(
                "otel-injector: {DELIVERY_ANNOTATION}: {e}; using {default}"
            ));
            default
        }
    };
    let delivery = match (requested, support.refusal()) {
        (Delivery::ImageVolume, Some(why)) => {
            warnings.push(format!(
                "otel-injector: imageVolume delivery is not available ({why}); delivered through the init container instead"
            ));
            Delivery::InitContainer
        }
        _ => requested,
    };
    Chosen {
        requested,
        delivery,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(delivery: Option<&str>) -> Pod {
        let annotations =
            delivery.map(|d| BTreeMap::from([(DELIVERY_ANNOTATION.to_owned(), d.to_owned())]));
        let mut pod = Pod::default();
        pod.metadata.annotations = annotations;
        pod
    }

    #[test]
    fn the_annotation_beats_the_namespace_and_the_default() {
        let ns = BTreeMap::from([(DELIVERY_ANNOTATION.to_owned(), "initContainer".to_owned())]);
        let mut warnings = Vec::new();
        let ok = ImageVolumeSupport::Supported;
        let chosen = choose(
            &pod(Some("imageVolume")),
            Some(&ns),
            Delivery::InitContainer,
            &ok,
            &mut warnings,
        );
        assert_eq!(chosen.delivery, Delivery::ImageVolume);
        let chosen = choose(
            &pod(None),
            Some(&ns),
            Delivery::ImageVolume,
            &ok,
            &mut warnings,
        );
        assert_eq!(chosen.delivery, Delivery::InitContainer);
        let chosen = choose(&pod(None), None, Delivery::ImageVolume, &ok, &mut warnings);
        assert_eq!(chosen.delivery, Delivery::ImageVolume);
        assert!(warnings.is_empty(), "{warnings:?}");
    }

    #[test]
    fn a_bad_value_warns_and_uses_the_default() {
        let mut warnings = Vec::new();
        let chosen = choose(
            &pod(Some("volume")),
            None,
            Delivery::InitContainer,
            &ImageVolumeSupport::Supported,
            &mut warnings,
        );
        assert_eq!(chosen.delivery, Delivery::InitContainer);
        assert!(warnings[0].contains("\"volume\""), "{warnings:?}");
    }

    #[test]
    fn image_volume_falls_back_unless_the_check_passed_or_nobody_checks() {
        for (support, falls_back) in [
            (ImageVolumeSupport::NotChecked, false),
            (ImageVolumeSupport::Supported, false),
            (ImageVolumeSupport::Pending, true),
            (ImageVolumeSupport::Unsupported("gate off".into()), true),
        ] {
            let mut warnings = Vec::new();
            let chosen = choose(
                &pod(Some("imageVolume")),
                None,
                Delivery::InitContainer,
                &support,
                &mut warnings,
            );
            assert_eq!(chosen.fell_back(), falls_back, "{support:?}");
            assert_eq!(chosen.requested, Delivery::ImageVolume);
            assert_eq!(warnings.len(), usize::from(falls_back), "{warnings:?}");
            // initContainer never depends on the check.
            let chosen = choose(
                &pod(None),
                None,
                Delivery::InitContainer,
                &support,
                &mut warnings,
            );
            assert_eq!(chosen.delivery, Delivery::InitContainer);
        }
    }

    #[test]
    fn the_state_reports_changes() {
        let state = ImageVolumeState::new(ImageVolumeSupport::Pending);
        assert!(state.set(ImageVolumeSupport::Supported));
        assert!(!state.set(ImageVolumeSupport::Supported));
        assert_eq!(state.get(), ImageVolumeSupport::Supported);
    }
}
