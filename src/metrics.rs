//! Prometheus metrics, served in text format on the admin port.

use std::sync::OnceLock;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use std::fmt::Write as _;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::admission::Outcome;
use crate::review::Decision;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: Outcome,
}

impl EncodeLabelValue for Outcome {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        encoder.write_str(self.label())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

/// How an injected pod got the instrumentation; `fallback` is `true` when
/// it asked for imageVolume and got the init container.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeliveryLabels {
    pub delivery: &'static str,
    pub fallback: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    pub object: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PodLabels {
    pub namespace: String,
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceReasonLabels {
    pub namespace: String,
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NamespaceResultLabels {
    pub namespace: String,
    pub result: String,
}

pub struct Metrics {
    registry: Registry,
    admissions: Family<OutcomeLabels, Counter>,
    bad_requests: Family<ReasonLabels, Counter>,
    duration: Histogram,
    patch_bytes: Histogram,
    pub cert_expiry: Gauge<f64, AtomicU64>,
    cert_reloads: Family<ResultLabels, Counter>,
    cert_writes: Family<WriteLabels, Counter>,
    pub instrumentations: Gauge,
    deliveries: Family<DeliveryLabels, Counter>,
    image_volumes_supported: Gauge,
    pub instrumentations_invalid: Gauge,
    /// The fleet's coverage, set by the reconciler on the Lease holder.
    pub pods: Family<PodLabels, Gauge>,
    rollbacks: Family<NamespaceReasonLabels, Counter>,
    restores: Family<NamespaceReasonLabels, Counter>,
    catch_ups: Family<NamespaceResultLabels, Counter>,
    /// `admissions`' counter of each outcome (by `Outcome as usize`) and
    /// `deliveries`' of each delivery and fallback, taken from their Family
    /// on first use: a Family lookup (lock, SipHash of the labels, probe) on
    /// every review cost ~0.3k instructions each (scripts/profile). A
    /// Counter's clone shares its value, so the Family still exposes it.
    admitted: [OnceLock<Counter>; Outcome::ALL.len()],
    delivered: [OnceLock<Counter>; 4],
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut metrics = Metrics {
            registry: Registry::with_prefix("otel_injector"),
            admissions: Default::default(),
            bad_requests: Default::default(),
            // 25 µs .. ~0.8 s
            duration: Histogram::new(exponential_buckets(0.000_025, 2.0, 16)),
            patch_bytes: Histogram::new(exponential_buckets(64.0, 2.0, 14)),
            cert_expiry: Default::default(),
            cert_reloads: Default::default(),
            cert_writes: Default::default(),
            instrumentations: Default::default(),
            deliveries: Default::default(),
            image_volumes_supported: Default::default(),
            instrumentations_invalid: Default::default(),
            pods: Default::default(),
            rollbacks: Default::default(),
            restores: Default::default(),
            catch_ups: Default::default(),
            admitted: Default::default(),
            delivered: Default::default(),
        };
        // Registration order is the order of the exposition.
        metrics.register_admission();
        metrics.register_certificates();
        metrics.register_resources();
        metrics.register_fleet();
        metrics
    }

    /// The review path's metrics.
    fn register_admission(&mut self) {
        self.registry.register(
            "admission_requests",
            "AdmissionReviews answered, by outcome (injected, already-injected, skipped, out-of-scope, not-applicable, rolled-back, error)",
            self.admissions.clone(),
        );
        self.registry.register(
            "bad_requests",
            "Requests refused before any review (HTTP 4xx), by reason",
            self.bad_requests.clone(),
        );
        self.registry.register(
            "admission_duration_seconds",
            "Time to answer one AdmissionReview, body read to response",
            self.duration.clone(),
        );
        self.registry.register(
            "patch_bytes",
            "Size of the JSON Patch sent back, in bytes",
            self.patch_bytes.clone(),
        );
    }

    /// The serving certificate's metrics.
    fn register_certificates(&mut self) {
        self.registry.register(
            "certificate_expiry_timestamp_seconds",
            "notAfter of the serving certificate, Unix seconds",
            self.cert_expiry.clone(),
        );
        self.registry.register(
            "certificate_reloads",
            "Serving certificate reloads, by result (success, failure)",
            self.cert_reloads.clone(),
        );
        self.registry.register(
            "certificate_writes",
            "Writes of the self-managed certificate by the leader, by object (secret, webhook) and result (success, failure)",
            self.cert_writes.clone(),
        );
    }

    /// What the watches and the image volume check know.
    fn register_resources(&mut self) {
        self.registry.register(
            "instrumentations",
            "Instrumentation resources known from the watch",
            self.instrumentations.clone(),
        );
        self.registry.register(
            "deliveries",
            "Injected pods by delivery (initContainer, imageVolume) and fallback (true: asked for imageVolume, got the init container)",
            self.deliveries.clone(),
        );
        self.registry.register(
            "image_volumes_supported",
            "1 when the last check found that the API server keeps volumes[].image, else 0",
            self.image_volumes_supported.clone(),
        );
        self.registry.register(
            "instrumentations_invalid",
            "Instrumentation resources whose spec fails validation (pods naming them start uninstrumented)",
            self.instrumentations_invalid.clone(),
        );
    }

    /// The reconciler's metrics (set on the Lease holder only).
    fn register_fleet(&mut self) {
        self.registry.register(
            "pods",
            "Live pods in the namespaces the webhook covers, by state (instrumented, missed, opted_out, refused, rolled_back); set on the replica holding the fleet Lease only",
            self.pods.clone(),
        );
        self.registry.register(
            "rollbacks",
            "Workloads rolled back because their instrumented pods crash-looped, by namespace and reason (crash_loop, oom_killed, restarts)",
            self.rollbacks.clone(),
        );
        self.registry.register(
            "rollback_restores",
            "Rollbacks undone because the uninstrumented pods crashed too (reason: crash_uninstrumented) or the annotation was removed (reason: annotation_removed)",
            self.restores.clone(),
        );
        self.registry.register(
            "catch_up_restarts",
            "Catch-up rollout restarts of workloads with missed pods, by result (restarted, webhook_unreachable, failed)",
            self.catch_ups.clone(),
        );
    }

    pub fn rollback(&self, namespace: &str, reason: &str) {
        self.rollbacks
            .get_or_create(&NamespaceReasonLabels {
                namespace: namespace.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn rollback_restored(&self, namespace: &str, reason: &str) {
        self.restores
            .get_or_create(&NamespaceReasonLabels {
                namespace: namespace.to_owned(),
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn catch_up(&self, namespace: &str, result: &str) {
        self.catch_ups
            .get_or_create(&NamespaceResultLabels {
                namespace: namespace.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn observe(&self, decision: &Decision, elapsed: Duration) {
        let outcome = decision.outcome;
        let admitted = || {
            self.admissions
                .get_or_create(&OutcomeLabels { outcome })
                .clone()
        };
        match self.admitted.get(outcome as usize) {
            Some(slot) => slot.get_or_init(admitted).inc(),
            None => admitted().inc(),
        };
        if let (Outcome::Injected, Some(chosen)) = (outcome, decision.delivery) {
            let delivered = || {
                self.deliveries
                    .get_or_create(&DeliveryLabels {
                        delivery: chosen.delivery.label(),
                        fallback: if chosen.fell_back() { "true" } else { "false" },
                    })
                    .clone()
            };
            let slot = chosen.delivery as usize * 2 + usize::from(chosen.fell_back());
            match self.delivered.get(slot) {
                Some(slot) => slot.get_or_init(delivered).inc(),
                None => delivered().inc(),
            };
        }
        self.duration.observe(elapsed.as_secs_f64());
        if decision.patch_bytes > 0 {
            self.patch_bytes.observe(decision.patch_bytes as f64);
        }
    }

    pub fn image_volume_check(&self, support: &crate::delivery::ImageVolumeSupport) {
        let supported = support == &crate::delivery::ImageVolumeSupport::Supported;
        self.image_volumes_supported.set(i64::from(supported));
    }

    pub fn bad_request(&self, reason: &str) {
        self.bad_requests
            .get_or_create(&ReasonLabels {
                reason: reason.to_owned(),
            })
            .inc();
    }

    pub fn cert_reload(&self, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.cert_reloads
            .get_or_create(&ResultLabels {
                result: result.to_owned(),
            })
            .inc();
    }

    /// A write of the self-managed certificate (`object`: secret or webhook).
    pub fn certificate_write(&self, object: &str, ok: bool) {
        let result = if ok { "success" } else { "failure" };
        self.cert_writes
            .get_or_create(&WriteLabels {
                object: object.to_owned(),
                result: result.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::{Chosen, ImageVolumeSupport};
    use crate::settings::Delivery;

    fn decision(outcome: Outcome, delivery: Option<Chosen>) -> Decision {
        Decision {
            uid: "u".into(),
            namespace: "cxtm".into(),
            pod: "app".into(),
            outcome,
            reason: String::new(),
            containers: Vec::new(),
            patch_ops: 0,
            patch_bytes: 0,
            warnings: Vec::new(),
            dry_run: false,
            owner: None,
            delivery,
        }
    }

    #[test]
    fn deliveries_are_counted_with_the_fallback_label() {
        let metrics = Metrics::new();
        let fell_back = Chosen {
            requested: Delivery::ImageVolume,
            delivery: Delivery::InitContainer,
        };
        let mounted = Chosen {
            requested: Delivery::ImageVolume,
            delivery: Delivery::ImageVolume,
        };
        let elapsed = Duration::from_millis(1);
        metrics.observe(&decision(Outcome::Injected, Some(fell_back)), elapsed);
        metrics.observe(&decision(Outcome::Injected, Some(fell_back)), elapsed);
        metrics.observe(&decision(Outcome::Injected, Some(mounted)), elapsed);
        // Only injected pods count: an already injected one delivered nothing.
        metrics.observe(&decision(Outcome::AlreadyInjected, Some(mounted)), elapsed);
        metrics.image_volume_check(&ImageVolumeSupport::Unsupported("gate off".into()));
        let text = metrics.encode();
        for line in [
            r#"otel_injector_deliveries_total{delivery="initContainer",fallback="true"} 2"#,
            r#"otel_injector_deliveries_total{delivery="imageVolume",fallback="false"} 1"#,
            "otel_injector_image_volumes_supported 0",
        ] {
            assert!(text.lines().any(|l| l == line), "no {line:?} in\n{text}");
        }
        metrics.image_volume_check(&ImageVolumeSupport::Supported);
        assert!(
            metrics
                .encode()
                .lines()
                .any(|l| l == "otel_injector_image_volumes_supported 1")
        );
    }
}
