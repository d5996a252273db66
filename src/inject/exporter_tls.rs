//! `spec.exporter.tls` of an Instrumentation: the Secret and ConfigMap
//! volumes that carry the exporter's CA, client certificate and key, and the
//! `OTEL_EXPORTER_OTLP_*` variables that point at them.
//!
//! Names, mount paths and the relative/absolute rule are the operator's
//! (`internal/instrumentation/exporter.go`, `configureExporter`), so a pod
//! injected by either looks the same and each recognises the other's volumes.
//! One deliberate difference: both volumes are `optional`, because a missing
//! Secret or ConfigMap would otherwise keep the pod in `ContainerCreating`
//! (docs/migration.md says so).

use k8s_openapi::api::core::v1::{
    ConfigMapVolumeSource, EnvVar, SecretVolumeSource, Volume, VolumeMount,
};

pub use crate::settings::ExporterTls;

pub const CERTIFICATE_ENV: &str = "OTEL_EXPORTER_OTLP_CERTIFICATE";
pub const CLIENT_CERTIFICATE_ENV: &str = "OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE";
pub const CLIENT_KEY_ENV: &str = "OTEL_EXPORTER_OTLP_CLIENT_KEY";

/// Volume names are DNS-1123 labels: at most 63 characters.
const MAX_VOLUME_NAME: usize = 63;

/// One volume to add to the pod and mount, read-only, in each instrumented container.
#[derive(Clone, Debug, PartialEq)]
pub struct TlsVolume {
    pub volume: Volume,
    pub mount: VolumeMount,
}

impl ExporterTls {
    fn secret(&self) -> &str {
        self.secret_name.as_deref().unwrap_or_default()
    }

    fn config_map(&self) -> &str {
        self.config_map_name.as_deref().unwrap_or_default()
    }

    pub fn secret_volume_name(&self) -> String {
        truncate("otel-auto-secret-", self.secret())
    }

    pub fn config_map_volume_name(&self) -> String {
        truncate("otel-auto-configmap-", self.config_map())
    }

    /// The operator builds the path from the name even when no Secret is
    /// named (then no volume backs it); kept as is so env values match.
    pub fn secret_mount_path(&self) -> String {
        format!("/otel-auto-instrumentation-secret-{}", self.secret())
    }

    pub fn config_map_mount_path(&self) -> String {
        format!("/otel-auto-instrumentation-configmap-{}", self.config_map())
    }

    /// `OTEL_EXPORTER_OTLP_CERTIFICATE`, `_CLIENT_CERTIFICATE` and
    /// `_CLIENT_KEY`, in that order, for the files that are set. A relative
    /// name is a key in the mounted object; an absolute one is used as is.
    /// The CA comes from the ConfigMap when one is named, else the Secret.
    pub fn env(&self) -> Vec<EnvVar> {
        let ca_dir = if self.config_map_name.is_some() {
            self.config_map_mount_path()
        } else {
            self.secret_mount_path()
        };
        let secret_dir = self.secret_mount_path();
        [
            (CERTIFICATE_ENV, self.ca_file.as_deref(), &ca_dir),
            (
                CLIENT_CERTIFICATE_ENV,
                self.cert_file.as_deref(),
                &secret_dir,
            ),
            (CLIENT_KEY_ENV, self.key_file.as_deref(), &secret_dir),
        ]
        .into_iter()
        .filter_map(|(name, file, dir)| {
            let file = file?;
            let value = if file.starts_with('/') {
                file.to_owned()
            } else {
                format!("{dir}/{file}")
            };
            Some(EnvVar {
                name: name.to_owned(),
                value: Some(value),
                value_from: None,
            })
        })
        .collect()
    }

    /// The Secret's volume, then the ConfigMap's, for those that are named.
    pub fn volumes(&self) -> Vec<TlsVolume> {
        let mut out = Vec::with_capacity(2);
        if let Some(secret) = &self.secret_name {
            let volume = Volume {
                name: self.secret_volume_name(),
                secret: Some(SecretVolumeSource {
                    secret_name: Some(secret.clone()),
                    // A missing Secret must not keep the pod from starting.
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            out.push(TlsVolume::read_only(volume, self.secret_mount_path()));
        }
        if let Some(config_map) = &self.config_map_name {
            let volume = Volume {
                name: self.config_map_volume_name(),
                config_map: Some(ConfigMapVolumeSource {
                    name: config_map.clone(),
                    optional: Some(true),
                    ..Default::default()
                }),
                ..Default::default()
            };
            out.push(TlsVolume::read_only(volume, self.config_map_mount_path()));
        }
        out
    }
}

impl TlsVolume {
    /// `volume`, mounted read-only at `mount_path`.
    fn read_only(volume: Volume, mount_path: String) -> Self {
        TlsVolume {
            mount: VolumeMount {
                name: volume.name.clone(),
                mount_path,
                read_only: Some(true),
                ..Default::default()
            },
            volume,
        }
    }
}

/// `prefix` + `value` in at most 63 characters, as the operator's
/// `naming.Truncate` does it for one value: the value is shortened by the
/// excess (or dropped when shorter than it), then non-alphanumeric
/// characters are trimmed from both ends.
fn truncate(prefix: &str, value: &str) -> String {
    let excess = (prefix.len() + value.len()).saturating_sub(MAX_VOLUME_NAME);
    let kept = if excess == 0 {
        value
    } else if value.len() > excess {
        // Byte-wise as in Go; a name cut inside a character is refused by
        // the guard (not a DNS label) rather than sent to the API server.
        value.get(..value.len() - excess).unwrap_or_default()
    } else {
        ""
    };
    let mut name = format!("{prefix}{kept}");
    name.truncate(MAX_VOLUME_NAME.min(name.len()));
    name.trim_matches(|c: char| !c.is_ascii_alphanumeric())
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_operator() {
        // exporter_test.go: a secret name long enough to be cut.
        let long = "my-very-long-secret-name-that-is-longer-than-the-maximum-allowed";
        let tls = ExporterTls {
            secret_name: Some(long.into()),
            ..Default::default()
        };
        let name = tls.secret_volume_name();
        assert_eq!(name.len(), 63);
        assert_eq!(name, format!("otel-auto-secret-{}", &long[..46]));
        assert_eq!(truncate("otel-auto-secret-", "x-"), "otel-auto-secret-x");
        assert_eq!(truncate("otel-auto-configmap-", ""), "otel-auto-configmap");
    }

    #[test]
    fn relative_and_absolute_files() {
        let tls = ExporterTls {
            secret_name: Some("my-certs".into()),
            config_map_name: Some("my-ca".into()),
            ca_file: Some("ca.crt".into()),
            cert_file: Some("/etc/tls/tls.crt".into()),
            key_file: Some("tls.key".into()),
        };
        let env: Vec<(String, String)> = tls
            .env()
            .into_iter()
            .map(|v| (v.name, v.value.unwrap_or_default()))
            .collect();
        assert_eq!(
            env,
            [
                (
                    CERTIFICATE_ENV.into(),
                    "/otel-auto-instrumentation-configmap-my-ca/ca.crt".into()
                ),
                (CLIENT_CERTIFICATE_ENV.into(), "/etc/tls/tls.crt".into()),
                (
                    CLIENT_KEY_ENV.into(),
                    "/otel-auto-instrumentation-secret-my-certs/tls.key".into()
                ),
            ]
        );
        let volumes = tls.volumes();
        assert_eq!(volumes.len(), 2);
        assert_eq!(volumes[0].volume.name, "otel-auto-secret-my-certs");
        assert_eq!(volumes[1].volume.name, "otel-auto-configmap-my-ca");
    }
}
