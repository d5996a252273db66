//! The typed values the pure mutation needs: what to inject, where, and
//! how. A leaf: it depends on no other module of this crate, so the YAML
//! schema (`config`), an Instrumentation (`k8s::instrumentation`), the
//! mutation (`inject`) and the guard can all use it without importing each
//! other. `config` produces a [`Settings`] (`Settings::from_config`);
//! `inject` and `guard` consume it.

use std::collections::BTreeMap;

use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{EnvVar, PersistentVolumeClaimTemplate, ResourceRequirements};
use serde::{Deserialize, Serialize};

/// Everything the mutation needs to know about what to inject, already
/// resolved from the config and, where one applies, an Instrumentation resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub init_container_name: String,
    pub volume_name: String,
    pub mount_path: String,
    pub volume_size_limit: Option<String>,
    /// An Instrumentation's `spec.python.volumeClaimTemplate`: the shared
    /// volume is then this ephemeral volume instead of an emptyDir.
    pub volume_claim_template: Option<PersistentVolumeClaimTemplate>,
    pub init_container_resources: Option<ResourceRequirements>,
    pub endpoint: Option<String>,
    pub protocol: String,
    /// `spec.exporter.tls`: the exporter's certificate files and their volumes.
    pub exporter_tls: Option<ExporterTls>,
    /// Env in precedence order, first wins (`python.env`, then `spec.env`, then config).
    pub env: Vec<EnvVar>,
    /// How many of `env`'s first entries come from `spec.python.env`: the
    /// operator adds those before `PYTHONPATH`, the rest after it.
    pub python_env_count: usize,
    /// What of an Instrumentation is read but not applied, for the
    /// admission response's warnings (nothing is ignored silently).
    pub not_applied: Vec<String>,
    pub resource_attributes: IndexMap<String, String>,
    /// Build env and `OTEL_RESOURCE_ATTRIBUTES` exactly as the operator does
    /// (always with an Instrumentation; `kubernetesResourceAttributes` in config).
    pub kubernetes_resource_attributes: bool,
    /// `spec.defaults.useLabelsForResourceAttributes`.
    pub use_labels_for_resource_attributes: bool,
    /// `spec.resource.addK8sUIDAttributes`.
    pub add_k8s_uid_attributes: bool,
    pub propagators: Vec<String>,
    pub sampler: Option<Sampler>,
    pub node_selector: BTreeMap<String, String>,
    pub command_wrapper: CommandWrapper,
    pub sidecars: Vec<String>,
    pub platform: Platform,
    /// The default delivery; a pod's annotation may choose the other.
    pub delivery: Delivery,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampler {
    pub kind: String,
    pub argument: Option<String>,
}

impl Settings {
    /// `<mount>/opentelemetry/instrumentation/auto_instrumentation`, where `sitecustomize` lives.
    pub fn pythonpath_prefix(&self) -> String {
        format!(
            "{}/opentelemetry/instrumentation/auto_instrumentation",
            self.mount_path
        )
    }
}

/// The exporter's TLS files, as an Instrumentation names them. Empty
/// strings in the resource are `None` here (the operator treats them as unset).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExporterTls {
    /// Secret holding the client certificate and key (and the CA, unless a
    /// ConfigMap is named).
    pub secret_name: Option<String>,
    /// ConfigMap holding the CA certificate.
    pub config_map_name: Option<String>,
    /// Key of the CA in the ConfigMap or Secret, or an absolute path.
    pub ca_file: Option<String>,
    /// Key of the client certificate in the Secret, or an absolute path.
    pub cert_file: Option<String>,
    /// Key of the client key in the Secret, or an absolute path.
    pub key_file: Option<String>,
}

/// How the auto-instrumentation reaches the pod's containers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Delivery {
    /// An init container copies the image's files into an emptyDir.
    #[default]
    InitContainer,
    /// The image itself is mounted read-only (`volumes[].image`): no copy,
    /// no extra container, nothing that runs as root.
    ImageVolume,
}

impl Delivery {
    pub const ALL: [Delivery; 2] = [Delivery::InitContainer, Delivery::ImageVolume];

    /// The config and annotation value, also the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Delivery::InitContainer => "initContainer",
            Delivery::ImageVolume => "imageVolume",
        }
    }
}

impl std::fmt::Display for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl std::str::FromStr for Delivery {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Delivery::ALL
            .into_iter()
            .find(|d| d.label() == s.trim())
            .ok_or_else(|| {
                format!("unknown delivery {s:?} (expected initContainer or imageVolume)")
            })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CommandWrapper {
    /// Wrap a container `command` that starts with a Python interpreter.
    pub enabled: bool,
    /// Interpreter that runs `opentelemetry-instrument`. Empty (the default):
    /// the container's own, i.e. the command's first element, which exists in
    /// the image because the command ran without us. `python3` gives the
    /// seed's hand-made command, but crash-loops images without `python3` on
    /// PATH (a virtualenv with only `python`).
    pub interpreter: String,
    /// Run the wrapper behind a few lines of Python (`crate::inject::command::GUARD`)
    /// that start the command uninstrumented, saying so once, when the
    /// image's `opentelemetry-instrument` cannot run in the container's
    /// Python. `false` gives the seed's bare command, which exits 1 there
    /// and crash-loops the pod.
    pub guard: bool,
}

impl Default for CommandWrapper {
    fn default() -> Self {
        CommandWrapper {
            enabled: true,
            interpreter: String::new(),
            guard: true,
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    #[default]
    Glibc,
    Musl,
}

impl Platform {
    /// Directory in the auto-instrumentation image to copy from.
    pub fn source_dir(self) -> &'static str {
        match self {
            Platform::Glibc => "/autoinstrumentation/.",
            Platform::Musl => "/autoinstrumentation-musl/.",
        }
    }

    /// The same directory relative to the image's root: the `subPath` of an
    /// image volume's mount, so the app sees the same tree as after the copy.
    pub fn image_sub_path(self) -> &'static str {
        match self {
            Platform::Glibc => "autoinstrumentation",
            Platform::Musl => "autoinstrumentation-musl",
        }
    }
}

impl std::str::FromStr for Platform {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "glibc" => Ok(Platform::Glibc),
            "musl" => Ok(Platform::Musl),
            other => Err(format!(
                "unknown platform {other:?} (expected glibc or musl)"
            )),
        }
    }
}
