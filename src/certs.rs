//! A CA and a serving certificate for the webhook, made with rcgen: for the
//! `certs` subcommand, for `serve` without `--tls-cert`, and for tests.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CertError {
    /// rcgen refused the parameters or could not make a key.
    #[error("cannot generate certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// A PEM file cannot be written to the output directory.
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// PEM texts of a CA and a serving certificate it signed.
pub struct Bundle {
    pub ca_cert_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
}

/// Where [`Bundle::write`] put the files.
#[derive(Clone, Debug)]
pub struct Paths {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// The DNS names a webhook Service is reached by, plus loopback.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        service.to_owned(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
        format!("{service}.{namespace}.svc.cluster.local"),
        "localhost".to_owned(),
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
    ]
}

/// The subject CN of every CA made here. Self-managed TLS manages a Secret
/// only while its certificate was issued by such a CA: one from cert-manager
/// or another issuer is someone else's to renew (src/k8s/selfcert.rs).
pub const CA_COMMON_NAME: &str = "otel-injector CA";

/// How long a generated CA is valid, from when it is made.
pub const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 86_400);
/// How long a generated serving certificate is valid, from when it is made.
pub const CERT_VALIDITY: Duration = Duration::from_secs(5 * 365 * 86_400);
/// Certificates start this long before they are made, so a node whose clock
/// is a little behind ours does not see them as not yet valid.
const CLOCK_SKEW: Duration = Duration::from_secs(3600);

/// A fresh CA (valid 10 years) and a serving certificate for `names` (5
/// years), both from now.
pub fn generate(names: &[String]) -> Result<Bundle, CertError> {
    generate_at(names, SystemTime::now())
}

/// [`generate`] as if the clock read `now`.
pub fn generate_at(names: &[String], now: SystemTime) -> Result<Bundle, CertError> {
    let not_before = now.checked_sub(CLOCK_SKEW).unwrap_or(now);
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    ca_params.not_before = not_before.into();
    ca_params.not_after = (now + CA_VALIDITY).into();
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name.push(
        DnType::CommonName,
        names.first().map(String::as_str).unwrap_or("otel-injector"),
    );
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.not_before = not_before.into();
    params.not_after = (now + CERT_VALIDITY).into();
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, &ca)?;
    Ok(Bundle {
        ca_cert_pem: ca.pem(),
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

impl Bundle {
    /// Writes `ca.crt`, `tls.crt` and `tls.key` (mode 0600) into `dir`.
    pub fn write(&self, dir: &Path) -> Result<Paths, CertError> {
        let io = |path: &Path| {
            let path = path.display().to_string();
            move |source| CertError::Write { path, source }
        };
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let paths = Paths {
            ca: dir.join("ca.crt"),
            cert: dir.join("tls.crt"),
            key: dir.join("tls.key"),
        };
        std::fs::write(&paths.ca, &self.ca_cert_pem).map_err(io(&paths.ca))?;
        std::fs::write(&paths.cert, &self.cert_pem).map_err(io(&paths.cert))?;
        write_private(&paths.key, self.key_pem.as_bytes()).map_err(io(&paths.key))?;
        Ok(paths)
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// notBefore and notAfter of a PEM certificate, Unix seconds.
    fn validity(pem: &str) -> (i64, i64) {
        let der = rustls_pemfile::certs(&mut pem.as_bytes())
            .next()
            .expect("one certificate")
            .expect("PEM");
        let (_, cert) = x509_parser::parse_x509_certificate(&der).expect("DER");
        (
            cert.validity().not_before.timestamp(),
            cert.validity().not_after.timestamp(),
        )
    }

    #[test]
    fn certificates_made_after_2030_are_valid_when_made() {
        // 2031-06-01T00:00:00Z
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_938_038_400);
        let at = 1_938_038_400;
        let bundle = generate_at(&service_names("s", "ns"), now).expect("certs");
        for (what, pem) in [("CA", &bundle.ca_cert_pem), ("serving", &bundle.cert_pem)] {
            let (not_before, not_after) = validity(pem);
            assert!(not_before <= at, "{what} not yet valid: {not_before}");
            assert!(
                not_after >= at + 365 * 86_400,
                "{what} expires within a year: {not_after}"
            );
        }
        let (_, ca_after) = validity(&bundle.ca_cert_pem);
        let (_, cert_after) = validity(&bundle.cert_pem);
        assert!(cert_after <= ca_after, "the serving cert outlives its CA");
    }
}
