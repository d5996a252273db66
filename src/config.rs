//! Operator-side configuration: what gets injected and where.
//!
//! The built-in default is the `cxtm` profile: the configuration the
//! platform team reached by hand for `cxtm-logstream`
//! (`manifests/config.yaml` holds the same values as a file), with one
//! deliberate difference: the command wrapper runs `opentelemetry-instrument`
//! with the container's own interpreter, not `python3` (an image without
//! `python3` on PATH would crash-loop), behind a guard that starts the app
//! uninstrumented where the wrapper cannot run in its Python (CPython 3.9 with
//! the operator's image would crash-loop). `commandWrapper: {interpreter:
//! python3, guard: false}` gives the seed's exact command.

use std::collections::BTreeMap;
use std::path::Path;

use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements};
use serde::{Deserialize, Serialize};

use crate::guard;
use crate::settings::Settings;
/// The settings' enums and the wrapper are part of the YAML schema too.
pub use crate::settings::{CommandWrapper, Delivery, Platform};

/// The seed's auto-instrumentation image.
pub const DEFAULT_IMAGE: &str =
    "ghcr.io/open-telemetry/opentelemetry-operator/autoinstrumentation-python:0.54b1";
/// Init container and volume name; also the OpenTelemetry Operator's, so pods
/// the operator already injected are recognised.
pub const DEFAULT_NAME: &str = "opentelemetry-auto-instrumentation-python";
pub const DEFAULT_MOUNT_PATH: &str = "/otel-auto-instrumentation";
pub const DEFAULT_ENDPOINT: &str =
    "http://cxtvng-splunk-otel-collector-agent.ao.svc.cluster.local:4318";
pub const DEFAULT_PROTOCOL: &str = "http/protobuf";

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file cannot be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML of the config's shape (unknown keys included).
    #[error("config file {path} is not valid: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml_ng::Error,
    },
    /// A value the webhook cannot use, or that would make the API server
    /// refuse every injected pod; `setting` is the config key.
    #[error("config setting `{setting}` is invalid: {reason}")]
    Invalid { setting: String, reason: String },
}

/// Everything the webhook injects, as the operator of the webhook sets it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Config {
    /// Namespaces whose pods are injected without any annotation.
    pub namespaces: Vec<String>,
    /// Auto-instrumentation image copied into the shared volume.
    pub image: String,
    /// `imagePullPolicy` of the init container; unset leaves the cluster default.
    pub image_pull_policy: Option<String>,
    /// Name of the init container; also the marker of an already injected pod.
    pub init_container_name: String,
    /// Name of the shared emptyDir volume.
    pub volume_name: String,
    /// Where the volume is mounted, in the init container and the app containers.
    pub mount_path: String,
    /// `sizeLimit` of the emptyDir (a Kubernetes quantity such as `200Mi`); unset: no limit.
    pub volume_size_limit: Option<String>,
    /// Resources of the init container; unset: none.
    pub init_container_resources: Option<ResourceRequirements>,
    pub exporter: Exporter,
    /// Extra env for instrumented containers (lower precedence than the container's own).
    pub env: Vec<EnvVar>,
    /// Extra `OTEL_RESOURCE_ATTRIBUTES` entries, in order, before the generated ones.
    pub resource_attributes: IndexMap<String, String>,
    /// Also add the operator's `k8s.*` resource attributes (pod, node, owner names).
    pub kubernetes_resource_attributes: bool,
    /// Entries added to the pod's nodeSelector (a key the pod already sets is kept).
    pub node_selector: BTreeMap<String, String>,
    pub command_wrapper: CommandWrapper,
    /// Container names never chosen as the default target.
    pub sidecars: Vec<String>,
    /// Default libc of the app images: `glibc` or `musl`.
    pub platform: Platform,
    /// Whether a pod may name an Instrumentation in another namespace.
    pub allow_cross_namespace_instrumentation: bool,
    /// The reconciler: coverage, catch-up and rollback (docs/fleet.md).
    pub fleet: Fleet,
    /// How the instrumentation reaches the pod: copied by an init container
    /// (every cluster) or mounted as an image volume (Kubernetes 1.33+ with
    /// the ImageVolume gate, containerd 2.1+; docs/delivery.md). A pod may
    /// choose with the `otel-injector.io/delivery` annotation.
    pub delivery: Delivery,
}

/// What the reconciler (on the Lease holder only) does on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Fleet {
    /// Run the reconciler at all (the `otel_injector_pods` gauge needs it).
    pub enabled: bool,
    pub catch_up: CatchUp,
    pub rollback: Rollback,
    /// How often the reconciler looks at the pods it watches, in seconds.
    pub resync_seconds: u64,
}

/// Rollout restarts of workloads whose live pods were missed. Opt-in: it
/// changes workloads on its own.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct CatchUp {
    pub enabled: bool,
    /// Workloads restarting at once.
    pub max_concurrent: u32,
    /// A workload's rollout not finished after this many seconds no longer
    /// holds a slot (it is reported, not restarted again).
    pub rollout_timeout_seconds: u64,
}

/// Uninstrumented restarts of workloads that crash-loop once instrumented.
/// On by default: it enforces "never break a pod".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Rollback {
    pub enabled: bool,
    /// Restarts of one container within `windowSeconds` that count as a crash loop.
    pub restarts: i32,
    pub window_seconds: u64,
    /// At most this many rollbacks (all workloads together) per hour.
    pub max_per_hour: u32,
}

impl Default for Fleet {
    fn default() -> Self {
        Fleet {
            enabled: true,
            catch_up: CatchUp::default(),
            rollback: Rollback::default(),
            resync_seconds: 5,
        }
    }
}

impl Default for CatchUp {
    fn default() -> Self {
        CatchUp {
            enabled: false,
            max_concurrent: 1,
            rollout_timeout_seconds: 600,
        }
    }
}

impl Default for Rollback {
    fn default() -> Self {
        Rollback {
            enabled: true,
            restarts: 3,
            window_seconds: 600,
            max_per_hour: 10,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Exporter {
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`; unset: not generated.
    pub endpoint: Option<String>,
    /// `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub protocol: String,
}

impl Default for Exporter {
    fn default() -> Self {
        Exporter {
            endpoint: Some(DEFAULT_ENDPOINT.to_owned()),
            protocol: DEFAULT_PROTOCOL.to_owned(),
        }
    }
}

/// Sidecars injected by meshes and agents: never the app container.
pub const KNOWN_SIDECARS: &[&str] = &[
    "istio-proxy",
    "istio-init",
    "linkerd-proxy",
    "linkerd-init",
    "envoy",
    "envoy-sidecar",
    "consul-dataplane",
    "vault-agent",
    "vault-agent-init",
    "cloud-sql-proxy",
    "cloudsql-proxy",
    "datadog-agent",
    "otc-container",
    "otel-collector",
    "fluent-bit",
    "fluentd",
    "kuma-sidecar",
    "dapr-sidecar",
    "aws-xray-daemon",
];

impl Default for Config {
    fn default() -> Self {
        Config {
            namespaces: vec!["cxtm".to_owned()],
            image: DEFAULT_IMAGE.to_owned(),
            image_pull_policy: None,
            init_container_name: DEFAULT_NAME.to_owned(),
            volume_name: DEFAULT_NAME.to_owned(),
            mount_path: DEFAULT_MOUNT_PATH.to_owned(),
            volume_size_limit: None,
            init_container_resources: None,
            exporter: Exporter::default(),
            env: vec![EnvVar {
                name: "OTEL_PYTHON_LOGGING_AUTO_INSTRUMENTATION_ENABLED".to_owned(),
                value: Some("true".to_owned()),
                value_from: None,
            }],
            resource_attributes: IndexMap::from([(
                "deployment.environment".to_owned(),
                "production".to_owned(),
            )]),
            kubernetes_resource_attributes: false,
            node_selector: BTreeMap::from([("ao-node".to_owned(), "observability".to_owned())]),
            command_wrapper: CommandWrapper::default(),
            sidecars: KNOWN_SIDECARS.iter().map(|s| (*s).to_owned()).collect(),
            platform: Platform::Glibc,
            allow_cross_namespace_instrumentation: true,
            fleet: Fleet::default(),
            delivery: Delivery::InitContainer,
        }
    }
}

/// The config is the usual producer of [`Settings`]; the impl lives here so
/// that `settings` stays a leaf that knows nothing of the YAML schema.
impl Settings {
    /// The settings of the config alone (no Instrumentation applies).
    pub fn from_config(config: &Config) -> Self {
        Settings {
            image: config.image.clone(),
            image_pull_policy: config.image_pull_policy.clone(),
            init_container_name: config.init_container_name.clone(),
            volume_name: config.volume_name.clone(),
            mount_path: config.mount_path.trim_end_matches('/').to_owned(),
            volume_size_limit: config.volume_size_limit.clone(),
            volume_claim_template: None,
            init_container_resources: config.init_container_resources.clone(),
            endpoint: config.exporter.endpoint.clone(),
            protocol: config.exporter.protocol.clone(),
            exporter_tls: None,
            env: config.env.clone(),
            python_env_count: 0,
            not_applied: Vec::new(),
            resource_attributes: config.resource_attributes.clone(),
            kubernetes_resource_attributes: config.kubernetes_resource_attributes,
            use_labels_for_resource_attributes: false,
            add_k8s_uid_attributes: false,
            propagators: Vec::new(),
            sampler: None,
            node_selector: config.node_selector.clone(),
            command_wrapper: config.command_wrapper.clone(),
            sidecars: config.sidecars.clone(),
            platform: config.platform,
            delivery: config.delivery,
        }
    }
}

impl Config {
    /// Reads and validates a YAML config file. Keys left out take their defaults.
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let display = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: display.clone(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| match e {
            ConfigError::Parse { source, .. } => ConfigError::Parse {
                path: display,
                source,
            },
            other => other,
        })
    }

    pub fn from_yaml(text: &str) -> Result<Self, ConfigError> {
        let config: Config =
            serde_yaml_ng::from_str(text).map_err(|source| ConfigError::Parse {
                path: "<inline>".to_owned(),
                source,
            })?;
        config.validate()?;
        Ok(config)
    }

    /// Refuses values the webhook cannot use, and values the API server
    /// would refuse in the patched pod (the `guard` module): one
    /// such value would make every injected pod fail to be created.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &str, reason: &str| {
            Err(ConfigError::Invalid {
                setting: setting.to_owned(),
                reason: reason.to_owned(),
            })
        };
        if !self.mount_path.starts_with('/') || self.mount_path.len() < 2 {
            return invalid("mountPath", "must be an absolute path other than /");
        }
        if self.mount_path.contains(':') {
            return invalid(
                "mountPath",
                "must not contain ':' (it is joined into PYTHONPATH)",
            );
        }
        if self.exporter.protocol.trim().is_empty() {
            return invalid("exporter.protocol", "must not be empty");
        }
        self.fleet.validate()?;
        let Err(problems) = guard::check_settings(&Settings::from_config(self)) else {
            return Ok(());
        };
        let Some((first, rest)) = problems.split_first() else {
            return Ok(());
        };
        let more = if rest.is_empty() {
            String::new()
        } else {
            let keys: Vec<&str> = rest.iter().map(|p| p.setting.as_str()).collect();
            format!(" (also invalid: {})", keys.join(", "))
        };
        Err(ConfigError::Invalid {
            setting: first.setting.clone(),
            reason: format!("{:?}: {}{more}", first.value, first.reason),
        })
    }
}

impl Fleet {
    /// The fleet settings' own checks, naming the key as it is written.
    fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |setting: &str, reason: String| {
            Err(ConfigError::Invalid {
                setting: format!("fleet.{setting}"),
                reason,
            })
        };
        if self.resync_seconds == 0 || self.resync_seconds > 3600 {
            return invalid(
                "resyncSeconds",
                format!("{} is not between 1 and 3600", self.resync_seconds),
            );
        }
        if self.catch_up.max_concurrent == 0 || self.catch_up.max_concurrent > 100 {
            return invalid(
                "catchUp.maxConcurrent",
                format!(
                    "{} is not between 1 and 100 (turn catch-up off with catchUp.enabled: false)",
                    self.catch_up.max_concurrent
                ),
            );
        }
        if self.catch_up.rollout_timeout_seconds < 10 {
            return invalid(
                "catchUp.rolloutTimeoutSeconds",
                format!(
                    "{} is under 10 seconds",
                    self.catch_up.rollout_timeout_seconds
                ),
            );
        }
        if self.rollback.restarts < 1 {
            return invalid(
                "rollback.restarts",
                format!("{} is not at least 1", self.rollback.restarts),
            );
        }
        if self.rollback.window_seconds < 60 {
            return invalid(
                "rollback.windowSeconds",
                format!("{} is under 60 seconds", self.rollback.window_seconds),
            );
        }
        if self.rollback.max_per_hour == 0 {
            return invalid(
                "rollback.maxPerHour",
                "0 would never roll back; turn rollback off with rollback.enabled: false".into(),
            );
        }
        if (self.catch_up.enabled || self.rollback.enabled) && !self.enabled {
            return invalid(
                "enabled",
                "false, but catchUp or rollback is enabled and they run in the reconciler".into(),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fleet_settings_default_and_refuse_nonsense_naming_the_key() {
        let config = Config::from_yaml("fleet: {catchUp: {enabled: true, maxConcurrent: 4}}")
            .expect("valid");
        assert!(config.fleet.catch_up.enabled);
        assert_eq!(config.fleet.catch_up.max_concurrent, 4);
        assert!(
            config.fleet.rollback.enabled,
            "rollback stays on by default"
        );
        let cases = [
            (
                "fleet: {catchUp: {maxConcurrent: 0}}",
                "fleet.catchUp.maxConcurrent",
            ),
            ("fleet: {resyncSeconds: 0}", "fleet.resyncSeconds"),
            (
                "fleet: {rollback: {restarts: 0}}",
                "fleet.rollback.restarts",
            ),
            (
                "fleet: {rollback: {maxPerHour: 0}}",
                "fleet.rollback.maxPerHour",
            ),
            ("fleet: {enabled: false}", "fleet.enabled"),
        ];
        for (yaml, key) in cases {
            let err = Config::from_yaml(yaml).expect_err(yaml).to_string();
            assert!(err.contains(&format!("`{key}`")), "{yaml}: {err}");
        }
        let err = Config::from_yaml("fleet: {catchup: {enabled: true}}")
            .expect_err("typo")
            .to_string();
        assert!(err.contains("catchup"), "{err}");
        Config::from_yaml("fleet: {enabled: false, rollback: {enabled: false}}")
            .expect("reconciler off entirely");
    }

    #[test]
    fn shipped_config_file_is_the_builtin_profile() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/config.yaml");
        assert_eq!(
            Config::from_file(&path).expect("manifests/config.yaml loads"),
            Config::default()
        );
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(
            Config::from_yaml("{}").expect("empty config"),
            Config::default()
        );
    }

    #[test]
    fn unknown_keys_are_rejected_with_their_name() {
        let err = Config::from_yaml("imagee: foo")
            .expect_err("typo must fail")
            .to_string();
        assert!(err.contains("imagee"), "{err}");
    }

    #[test]
    fn values_the_api_server_would_refuse_are_refused_at_start_naming_the_key() {
        let cases = [
            ("volumeSizeLimit: 200MB", "volumeSizeLimit"),
            ("imagePullPolicy: Sometimes", "imagePullPolicy"),
            ("image: 'registry.example/Python Image:1'", "image"),
            (
                "initContainerResources: {limits: {memory: 64 megs}}",
                "initContainerResources.limits.memory",
            ),
            (
                "initContainerResources: {requests: {cpu: '2'}, limits: {cpu: 500m}}",
                "initContainerResources.requests.cpu",
            ),
            ("env: [{name: '1BAD', value: x}]", "env[0].name"),
            ("nodeSelector: {'ao node': x}", "nodeSelector"),
            (
                "nodeSelector: {ao-node: 'not a label value'}",
                "nodeSelector.ao-node",
            ),
        ];
        for (yaml, key) in cases {
            let err = Config::from_yaml(yaml).expect_err(yaml).to_string();
            assert!(err.contains(&format!("`{key}`")), "{yaml}: {err}");
        }
    }

    #[test]
    fn valid_kubernetes_values_are_kept() {
        let config = Config::from_yaml(
            "volumeSizeLimit: 200Mi\nimagePullPolicy: IfNotPresent\n\
             initContainerResources: {requests: {cpu: 50m, memory: 64Mi}, limits: {cpu: '0.5', memory: 256Mi}}\n\
             env: [{name: OTEL_X.y-z, value: v}]",
        )
        .expect("valid");
        assert_eq!(config.volume_size_limit.as_deref(), Some("200Mi"));
    }

    #[test]
    fn invalid_settings_name_the_setting() {
        let err = Config::from_yaml("mountPath: relative")
            .expect_err("relative")
            .to_string();
        assert!(err.contains("mountPath"), "{err}");
        let err = Config::from_yaml("volumeName: Bad_Name")
            .expect_err("bad name")
            .to_string();
        assert!(err.contains("volumeName"), "{err}");
    }
}
