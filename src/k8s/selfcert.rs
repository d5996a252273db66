//! Self-managed serving certificate: the replica holding the Lease keeps
//! Secret `otel-injector-tls` and the `caBundle` of our own
//! MutatingWebhookConfiguration in step, so that installing is one command
//! (no `otel-injector certs`, no install-ca-bundle.sh, no cert-manager).
//!
//! Each round, on the leader only:
//! - the Secret missing, unreadable, or its certificate within `renew_before`
//!   of `notAfter`: a new CA and serving certificate are minted (rcgen,
//!   [`certs::generate`]). The webhooks' `caBundle` gets the new CA *first*,
//!   keeping the previous one beside it, and only then is the Secret written:
//!   the API server trusts both the old and the new certificate while the
//!   kubelet refreshes every replica's mounted copy (the same overlap as
//!   install-ca-bundle.sh's rotation);
//! - the Secret valid: the `caBundle` is made to contain its CA (a webhook
//!   configuration deleted and re-applied comes back without one).
//!
//! Every replica, leader or not, serves what is mounted and reloads it
//! (`run::watch_certs`). Each write is logged, counted
//! (`otel_injector_certificate_writes_total{object,result}`) and explained
//! by an Event on the object written.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration;
use k8s_openapi::api::core::v1::{ObjectReference, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};
use tokio::sync::watch;

use crate::certs;
use crate::metrics::Metrics;

/// Where the certificate lives and when it is renewed.
#[derive(Clone, Debug)]
pub struct SelfCertSettings {
    /// Our namespace: the Secret's, and the Service's.
    pub namespace: String,
    pub secret: String,
    /// Our MutatingWebhookConfiguration: the only one whose caBundle we touch.
    pub webhook: String,
    /// The Service the API server calls: the certificate's DNS names.
    pub service: String,
    /// Renew when `notAfter` is closer than this.
    pub renew_before: Duration,
    /// How often the leader looks.
    pub check_every: Duration,
}

/// What the Secret holds, as far as the leader is concerned.
#[derive(Debug, PartialEq)]
pub enum SecretState {
    Missing,
    /// Present but not a usable certificate (a key missing, bad PEM).
    Unusable(String),
    /// Usable, but `notAfter` (Unix seconds) is within `renew_before`.
    Expiring(i64),
    /// Usable, but issued by a CA not made by otel-injector (cert-manager,
    /// a company CA): whoever wrote it renews it and sets the caBundle, so
    /// the leader leaves both alone. Holds the issuer, for the log.
    External(String),
    /// Usable; the CA (PEM) the webhooks must trust.
    Valid {
        ca_pem: String,
        not_after: i64,
    },
}

fn data_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone())
        .ok()
        .filter(|t| !t.trim().is_empty())
}

/// `notAfter` (Unix seconds) of the first certificate of a PEM text, and
/// whether a CA made by otel-injector issued it (else its issuer).
fn not_after(pem: &str) -> Result<(i64, Result<(), String>), String> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem.as_bytes())
        .map_err(|e| format!("tls.crt is not PEM: {e}"))?;
    let cert = block
        .parse_x509()
        .map_err(|e| format!("tls.crt is not an X.509 certificate: {e}"))?;
    let issuer = cert.issuer();
    let ours = issuer
        .iter_common_name()
        .any(|cn| cn.as_str() == Ok(certs::CA_COMMON_NAME));
    let issued = if ours {
        Ok(())
    } else {
        Err(issuer.to_string())
    };
    Ok((cert.validity().not_after.timestamp(), issued))
}

/// Reads the Secret as the leader sees it at `now`.
pub fn secret_state(
    secret: Option<&Secret>,
    now: SystemTime,
    renew_before: Duration,
) -> SecretState {
    let Some(secret) = secret else {
        return SecretState::Missing;
    };
    let (Some(cert), Some(_key), Some(ca_pem)) = (
        data_text(secret, "tls.crt"),
        data_text(secret, "tls.key"),
        data_text(secret, "ca.crt"),
    ) else {
        return SecretState::Unusable("tls.crt, tls.key or ca.crt is missing or empty".into());
    };
    let not_after = match not_after(&cert) {
        Ok((_, Err(issuer))) => return SecretState::External(issuer),
        Ok((t, Ok(()))) => t,
        Err(e) => return SecretState::Unusable(e),
    };
    let now = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    if not_after - now < renew_before.as_secs() as i64 {
        SecretState::Expiring(not_after)
    } else {
        SecretState::Valid { ca_pem, not_after }
    }
}

/// The PEM blocks of certificates in a bundle, in order.
fn pem_certificates(bundle: &str) -> Vec<String> {
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = bundle;
    while let Some(start) = rest.find("-----BEGIN CERTIFICATE-----") {
        let Some(end) = rest[start..].find(END) else {
            break;
        };
        out.push(rest[start..start + end + END.len()].to_owned());
        rest = &rest[start + end + END.len()..];
    }
    out
}

/// The caBundle to set: `ca` first, then the first other CA of the current
/// bundle (the overlap: the certificate still mounted in the
/// replicas was signed by it). Older CAs are dropped, so the bundle never
/// holds more than two.
pub fn ca_bundle(ca: &str, current: Option<&str>) -> String {
    let mut certs = pem_certificates(ca);
    let previous = current
        .map(pem_certificates)
        .unwrap_or_default()
        .into_iter()
        .find(|c| !certs.contains(c));
    certs.extend(previous);
    let mut text = certs.join("\n");
    text.push('\n');
    text
}

/// Whether every certificate of `ca` is in `bundle`.
fn trusts(bundle: &str, ca: &str) -> bool {
    let present = pem_certificates(bundle);
    let wanted = pem_certificates(ca);
    !wanted.is_empty() && wanted.iter().all(|c| present.contains(c))
}

/// The Secret written for a minted bundle (the layout cert-manager and
/// `kubectl create secret tls` use, plus `ca.crt`).
pub fn secret_for(settings: &SelfCertSettings, bundle: &certs::Bundle) -> Secret {
    let data = BTreeMap::from([
        (
            "ca.crt".to_owned(),
            ByteString(bundle.ca_cert_pem.clone().into_bytes()),
        ),
        (
            "tls.crt".to_owned(),
            ByteString(bundle.cert_pem.clone().into_bytes()),
        ),
        (
            "tls.key".to_owned(),
            ByteString(bundle.key_pem.clone().into_bytes()),
        ),
    ]);
    Secret {
        metadata: ObjectMeta {
            name: Some(settings.secret.clone()),
            namespace: Some(settings.namespace.clone()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/name".to_owned(),
                "otel-injector".to_owned(),
            )])),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The first webhook's caBundle, as PEM (all our webhooks share one).
fn current_bundle(config: &MutatingWebhookConfiguration) -> Option<String> {
    let bytes = config
        .webhooks
        .as_ref()?
        .first()?
        .client_config
        .ca_bundle
        .as_ref()?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// A JSON Patch that sets every webhook's caBundle, guarded by a `test` of
/// the webhook names so that a configuration re-applied meanwhile with other
/// webhooks is not patched blindly.
fn ca_bundle_patch(config: &MutatingWebhookConfiguration, bundle: &str) -> json_patch::Patch {
    let encoded = serde_json::to_value(ByteString(bundle.as_bytes().to_vec()))
        .unwrap_or(serde_json::Value::Null);
    let mut ops = Vec::new();
    for (i, webhook) in config.webhooks.iter().flatten().enumerate() {
        ops.push(serde_json::json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": webhook.name}));
        ops.push(serde_json::json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    serde_json::from_value(serde_json::Value::Array(ops)).unwrap_or(json_patch::Patch(Vec::new()))
}

/// One replica's worker: acts while `leader` says this replica holds the Lease.
pub struct SelfCert {
    client: Client,
    settings: SelfCertSettings,
    metrics: Arc<Metrics>,
    recorder: Recorder,
    /// The issuer last logged as owning the Secret: logged once per change,
    /// not once a round.
    ceded: std::sync::Mutex<Option<String>>,
}

impl SelfCert {
    pub fn new(client: Client, settings: SelfCertSettings, metrics: Arc<Metrics>) -> Self {
        let reporter = Reporter {
            controller: "otel-injector".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        SelfCert {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            settings,
            metrics,
            ceded: std::sync::Mutex::new(None),
        }
    }

    /// Logs, once per issuer, that another issuer owns the Secret.
    fn ceded_to(&self, issuer: &str) {
        let Ok(mut last) = self.ceded.lock() else {
            return;
        };
        if last.as_deref() != Some(issuer) {
            tracing::info!(
                secret = %self.settings.secret,
                namespace = %self.settings.namespace,
                %issuer,
                "self-managed TLS: the Secret's certificate was issued by another CA (cert-manager, or yours); leaving the Secret and the caBundle to it"
            );
            *last = Some(issuer.to_owned());
        }
    }

    /// Runs forever: a round every `check_every` while leader, and at once
    /// when leadership is gained.
    pub async fn run(self, mut leader: watch::Receiver<bool>) {
        loop {
            if leader.wait_for(|held| *held).await.is_err() {
                return;
            }
            if let Err(e) = self.round(&leader).await {
                tracing::warn!(secret = %self.settings.secret, webhook = %self.settings.webhook, error = %e, "self-managed certificate: round failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.settings.check_every) => {}
                _ = leader.changed() => {}
            }
        }
    }

    /// One look at the Secret and the webhooks; writes what is needed.
    pub async fn round(&self, leader: &watch::Receiver<bool>) -> anyhow::Result<()> {
        let s = &self.settings;
        let secrets: Api<Secret> = Api::namespaced(self.client.clone(), &s.namespace);
        let webhooks: Api<MutatingWebhookConfiguration> = Api::all(self.client.clone());
        let secret = secrets.get_opt(&s.secret).await?;
        let state = secret_state(secret.as_ref(), SystemTime::now(), s.renew_before);
        let config = webhooks.get(&s.webhook).await?;
        let current = current_bundle(&config);
        let why = match &state {
            SecretState::Valid { ca_pem, .. } => {
                if !current.as_deref().is_some_and(|b| trusts(b, ca_pem)) {
                    let bundle = ca_bundle(ca_pem, current.as_deref());
                    self.patch_ca_bundle(
                        &webhooks,
                        &config,
                        &bundle,
                        "caBundle lacked the Secret's CA",
                    )
                    .await?;
                }
                return Ok(());
            }
            SecretState::External(issuer) => {
                self.ceded_to(issuer);
                return Ok(());
            }
            SecretState::Missing => "the Secret does not exist".to_owned(),
            SecretState::Unusable(e) => format!("the Secret is unusable: {e}"),
            SecretState::Expiring(t) => {
                format!("the certificate expires at {t} (Unix), within the renewal window")
            }
        };
        // Leadership may have moved while we read: never mint on a stale view.
        if !*leader.borrow() {
            return Ok(());
        }
        let names = certs::service_names(&s.service, &s.namespace);
        let minted = certs::generate(&names)?;
        // Trust first, then serve: the new CA is in the caBundle (beside the
        // old one) before any replica can load the new certificate.
        let bundle = ca_bundle(&minted.ca_cert_pem, current.as_deref());
        self.patch_ca_bundle(&webhooks, &config, &bundle, &why)
            .await?;
        self.write_secret(&secrets, secret, &minted, &why).await
    }

    async fn patch_ca_bundle(
        &self,
        api: &Api<MutatingWebhookConfiguration>,
        config: &MutatingWebhookConfiguration,
        bundle: &str,
        why: &str,
    ) -> anyhow::Result<()> {
        let patch = ca_bundle_patch(config, bundle);
        let result = api
            .patch(
                &self.settings.webhook,
                &PatchParams::default(),
                &Patch::<()>::Json(patch),
            )
            .await;
        self.metrics.certificate_write("webhook", result.is_ok());
        let written = result.map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "patching caBundle of MutatingWebhookConfiguration {}",
                self.settings.webhook
            ))
        })?;
        tracing::info!(webhook = %self.settings.webhook, cas = pem_certificates(bundle).len(), reason = why, "self-managed certificate: caBundle set");
        self.event(
            written.object_ref(&()),
            "CABundleUpdated",
            format!(
                "otel-injector set caBundle ({} CA(s)): {why}",
                pem_certificates(bundle).len()
            ),
        )
        .await;
        Ok(())
    }

    async fn write_secret(
        &self,
        api: &Api<Secret>,
        existing: Option<Secret>,
        minted: &certs::Bundle,
        why: &str,
    ) -> anyhow::Result<()> {
        let mut secret = secret_for(&self.settings, minted);
        let result = match existing {
            Some(old) => {
                // Optimistic: a concurrent writer makes this fail, and the
                // next round looks again.
                secret.metadata.resource_version = old.metadata.resource_version;
                api.replace(&self.settings.secret, &PostParams::default(), &secret)
                    .await
            }
            None => api.create(&PostParams::default(), &secret).await,
        };
        self.metrics.certificate_write("secret", result.is_ok());
        let written = result.map_err(|e| {
            anyhow::Error::from(e).context(format!(
                "writing Secret {}/{}",
                self.settings.namespace, self.settings.secret
            ))
        })?;
        let not_after = not_after(&minted.cert_pem).map_or(0, |(t, _)| t);
        tracing::info!(secret = %self.settings.secret, not_after, reason = why, "self-managed certificate: new certificate stored");
        self.event(
            written.object_ref(&()),
            "CertificateIssued",
            format!("otel-injector stored a new CA and serving certificate (notAfter {not_after} Unix): {why}"),
        )
        .await;
        Ok(())
    }

    async fn event(&self, reference: ObjectReference, reason: &str, note: String) {
        let event = Event {
            type_: EventType::Normal,
            reason: reason.into(),
            note: Some(note),
            action: "ManageCertificate".into(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, &reference).await {
            tracing::warn!(error = %e, reason, "could not record a Kubernetes Event");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::admissionregistration::v1::{MutatingWebhook, WebhookClientConfig};

    fn settings() -> SelfCertSettings {
        SelfCertSettings {
            namespace: "otel-injector".into(),
            secret: "otel-injector-tls".into(),
            webhook: "otel-injector".into(),
            service: "otel-injector".into(),
            renew_before: Duration::from_secs(30 * 86_400),
            check_every: Duration::from_secs(60),
        }
    }

    fn minted() -> certs::Bundle {
        certs::generate(&certs::service_names("otel-injector", "otel-injector")).expect("generate")
    }

    #[test]
    fn a_missing_or_partial_secret_needs_a_certificate() {
        let now = SystemTime::now();
        let renew = Duration::from_secs(86_400);
        assert_eq!(secret_state(None, now, renew), SecretState::Missing);
        let mut secret = secret_for(&settings(), &minted());
        secret.data.as_mut().expect("data").remove("tls.key");
        assert!(matches!(
            secret_state(Some(&secret), now, renew),
            SecretState::Unusable(_)
        ));
        let mut secret = secret_for(&settings(), &minted());
        secret
            .data
            .as_mut()
            .expect("data")
            .insert("tls.crt".into(), ByteString(b"not a certificate".to_vec()));
        assert!(matches!(
            secret_state(Some(&secret), now, renew),
            SecretState::Unusable(_)
        ));
    }

    /// A certificate from another issuer (cert-manager's CA of
    /// manifests/cert-manager is `otel-injector-ca`), even one about to
    /// expire, is left to that issuer; ours are managed.
    #[test]
    fn a_certificate_from_another_issuer_is_left_alone() {
        use rcgen::{CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
        let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca.distinguished_name
            .push(DnType::CommonName, "otel-injector-ca");
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
        let leaf = CertificateParams::new(vec!["otel-injector.otel-injector.svc".to_owned()])
            .expect("params");
        let key = KeyPair::generate().expect("key");
        let cert = leaf.signed_by(&key, &ca).expect("leaf");
        let theirs = certs::Bundle {
            ca_cert_pem: ca.pem(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        let secret = secret_for(&settings(), &theirs);
        let far = Duration::from_secs(100 * 365 * 86_400);
        match secret_state(Some(&secret), SystemTime::now(), far) {
            SecretState::External(issuer) => {
                assert!(issuer.contains("otel-injector-ca"), "{issuer}")
            }
            other => panic!("{other:?}"),
        }
        let ours = secret_for(&settings(), &minted());
        assert!(matches!(
            secret_state(Some(&ours), SystemTime::now(), far),
            SecretState::Expiring(_)
        ));
    }

    #[test]
    fn renewal_starts_renew_before_not_after() {
        let bundle = minted();
        let secret = secret_for(&settings(), &bundle);
        let (not_after, _) = not_after(&bundle.cert_pem).expect("not_after");
        let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t as u64);
        let renew = Duration::from_secs(30 * 86_400);
        let day = 86_400;
        match secret_state(Some(&secret), at(not_after - 31 * day), renew) {
            SecretState::Valid {
                ca_pem,
                not_after: t,
            } => {
                assert_eq!(ca_pem, bundle.ca_cert_pem);
                assert_eq!(t, not_after);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            secret_state(Some(&secret), at(not_after - 29 * day), renew),
            SecretState::Expiring(not_after)
        );
        assert_eq!(
            secret_state(Some(&secret), at(not_after + day), renew),
            SecretState::Expiring(not_after)
        );
    }

    #[test]
    fn the_bundle_keeps_the_previous_ca_and_no_older_one() {
        let (a, b, c) = (
            minted().ca_cert_pem,
            minted().ca_cert_pem,
            minted().ca_cert_pem,
        );
        let first = ca_bundle(&a, None);
        assert_eq!(pem_certificates(&first), pem_certificates(&a));
        let second = ca_bundle(&b, Some(&first));
        assert_eq!(
            pem_certificates(&second),
            [pem_certificates(&b), pem_certificates(&a)].concat()
        );
        assert!(trusts(&second, &a) && trusts(&second, &b));
        let third = ca_bundle(&c, Some(&second));
        assert_eq!(
            pem_certificates(&third),
            [pem_certificates(&c), pem_certificates(&b)].concat()
        );
        assert!(
            !trusts(&third, &a),
            "the CA before the previous one is dropped"
        );
        // Re-setting a CA already there neither duplicates it nor drops the overlap.
        assert_eq!(
            pem_certificates(&ca_bundle(&c, Some(&third))),
            pem_certificates(&third)
        );
        assert_eq!(
            pem_certificates(&ca_bundle(&b, Some(&third))),
            [pem_certificates(&b), pem_certificates(&c)].concat()
        );
    }

    #[test]
    fn the_patch_sets_every_webhook_behind_a_name_test() {
        let webhook = |name: &str| MutatingWebhook {
            name: name.into(),
            client_config: WebhookClientConfig::default(),
            admission_review_versions: vec!["v1".into()],
            side_effects: "None".into(),
            ..Default::default()
        };
        let config = MutatingWebhookConfiguration {
            webhooks: Some(vec![
                webhook("cxtm.otel-injector.io"),
                webhook("opt-in.otel-injector.io"),
            ]),
            ..Default::default()
        };
        let ca = minted().ca_cert_pem;
        let patch = serde_json::to_value(ca_bundle_patch(&config, &ca)).expect("json");
        let ops = patch.as_array().expect("ops");
        assert_eq!(ops.len(), 4);
        assert_eq!(ops[2]["op"], "test");
        assert_eq!(ops[2]["value"], "opt-in.otel-injector.io");
        assert_eq!(ops[3]["path"], "/webhooks/1/clientConfig/caBundle");
        let mut patched = serde_json::to_value(&config).expect("json");
        json_patch::patch(&mut patched, &ca_bundle_patch(&config, &ca)).expect("applies");
        let patched: MutatingWebhookConfiguration =
            serde_json::from_value(patched).expect("config");
        assert_eq!(current_bundle(&patched).as_deref(), Some(ca.as_str()));
        assert_eq!(
            patched.webhooks.expect("webhooks")[1]
                .client_config
                .ca_bundle,
            Some(ByteString(ca.into_bytes()))
        );
    }
}
