//! rustls for the webhook listener: TLS 1.2 and 1.3 only, HTTP/1.1 only,
//! and a certificate resolver whose pair can be swapped while serving.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A certificate, key or CA file cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The certificate file has no `CERTIFICATE` block.
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: String },
    /// The key file has no private key block.
    #[error("{path} holds no PEM private key")]
    NoKey { path: String },
    /// A file is not PEM.
    #[error("{path} is not valid PEM: {source}")]
    Pem {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The key does not belong to the certificate, or rustls cannot use them.
    #[error("certificate {cert} and key {key} do not form a usable pair: {source}")]
    Pair {
        cert: String,
        key: String,
        #[source]
        source: rustls::Error,
    },
    /// The `--client-ca` bundle cannot verify clients.
    #[error("client CA {path} is not usable: {reason}")]
    ClientCa { path: String, reason: String },
    /// rustls refused the server configuration.
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The process-wide crypto provider (ring). rustls 0.23 needs it installed
/// before any config is built; installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default()
        .cloned()
        .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })
}

pub fn parse_certs(pem: &[u8], path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = rustls_pemfile::certs(&mut &pem[..])
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            path: path.display().to_string(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.display().to_string(),
        });
    }
    Ok(certs)
}

/// Loads a cert chain and key and checks that they belong together.
pub fn load_pair(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, TlsError> {
    let certs = parse_certs(&read(cert_path)?, cert_path)?;
    let key_pem = read(key_path)?;
    let key: PrivateKeyDer<'static> = rustls_pemfile::private_key(&mut &key_pem[..])
        .map_err(|source| TlsError::Pem {
            path: key_path.display().to_string(),
            source,
        })?
        .ok_or_else(|| TlsError::NoKey {
            path: key_path.display().to_string(),
        })?;
    let pair_error = |source| TlsError::Pair {
        cert: cert_path.display().to_string(),
        key: key_path.display().to_string(),
        source,
    };
    let certified = CertifiedKey::from_der(certs, key, &provider()).map_err(pair_error)?;
    certified.keys_match().map_err(pair_error)?;
    Ok(certified)
}

/// Serves whichever pair was loaded last; [`CertStore::reload`] swaps it.
#[derive(Debug)]
pub struct CertStore {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl CertStore {
    pub fn load(cert_path: PathBuf, key_path: PathBuf) -> Result<Self, TlsError> {
        let pair = load_pair(&cert_path, &key_path)?;
        Ok(CertStore {
            cert_path,
            key_path,
            current: RwLock::new(Arc::new(pair)),
        })
    }

    /// Re-reads the files; on error the last good pair stays in use.
    pub fn reload(&self) -> Result<(), TlsError> {
        let pair = Arc::new(load_pair(&self.cert_path, &self.key_path)?);
        match self.current.write() {
            Ok(mut current) => *current = pair,
            Err(poisoned) => *poisoned.into_inner() = pair,
        }
        Ok(())
    }

    pub fn current(&self) -> Arc<CertifiedKey> {
        match self.current.read() {
            Ok(current) => current.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    pub fn paths(&self) -> (&Path, &Path) {
        (&self.cert_path, &self.key_path)
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertStore>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current())
    }
}

/// TLS 1.2/1.3 with the provider's default (strong) suites; ALPN offers only
/// `http/1.1`, so a client that insists on h2 is refused in the handshake.
/// With `client_ca`, clients must present a certificate it signed.
pub fn server_config(
    store: Arc<CertStore>,
    client_ca: Option<&Path>,
) -> Result<ServerConfig, TlsError> {
    let builder = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = RootCertStore::empty();
            for cert in parse_certs(&read(path)?, path)? {
                roots.add(cert).map_err(|e| TlsError::ClientCa {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: path.display().to_string(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(Arc::new(Resolver(store)));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
