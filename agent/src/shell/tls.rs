//! The TLS client configuration for the cloud link: rustls with the ring
//! provider, the cloud CA from the configuration as the only trust anchor,
//! the device's client certificate, TLS 1.3 (TLS 1.2 with AEAD suites only
//! when configured).

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::{ring as ring_provider, CryptoProvider};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, SupportedCipherSuite};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};

/// Why the TLS files do not make a usable client configuration. Each names
/// the file at fault, so a field engineer knows which one to replace.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The file cannot be read, or is not valid PEM.
    #[error("cannot read {path}: {message}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        message: String,
    },
    /// The file is PEM but holds no certificate.
    #[error("{path} holds no certificate")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// A certificate in the CA file cannot be a trust anchor.
    #[error("{path}: the CA certificate is not usable: {message}")]
    BadCa {
        /// The CA file.
        path: PathBuf,
        /// What the certificate store said.
        message: String,
    },
    /// The private key file can be read by group or others.
    #[error("{path} is readable by group or others (mode {mode:o}); it must be 0600 or stricter")]
    KeyTooOpen {
        /// The key file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// rustls refused the certificate chain and key as a client identity
    /// (for example a key that does not match the certificate).
    #[error("the client certificate and key do not make a usable identity: {0}")]
    BadIdentity(String),
    /// The client certificate does not chain to the pinned CA, is not for
    /// client authentication, or is not valid at the time checked.
    #[error("{path}: the client certificate is not one the cloud would accept: {message}")]
    BadClientCertificate {
        /// The certificate file.
        path: PathBuf,
        /// What the verifier said.
        message: String,
    },
    /// The client certificate's subject does not name this device: the
    /// broker would take it for another client.
    #[error(
        "{path}: the client certificate is for {found}, not for this device's serial {serial}"
    )]
    WrongSubject {
        /// The certificate file.
        path: PathBuf,
        /// The subject common name(s) found.
        found: String,
        /// The configured serial.
        serial: String,
    },
}

/// The device certificate's subject common name must be `serial` (DESIGN
/// §5: client id = serial = certificate subject).
pub fn check_subject(cert: &Path, serial: &str) -> Result<(), TlsError> {
    let own = own_certificate(cert)?;
    let names = super::cert_der::subject_common_names(own.as_ref()).unwrap_or_default();
    if names.iter().any(|n| n == serial) {
        return Ok(());
    }
    Err(TlsError::WrongSubject {
        path: cert.into(),
        found: if names.is_empty() {
            "no common name".into()
        } else {
            names.join(", ")
        },
        serial: serial.into(),
    })
}

/// What the TLS layer needs from the configuration.
pub struct TlsFiles<'a> {
    /// The cloud's CA certificate(s), PEM: the only trust anchors.
    pub ca: &'a Path,
    /// The device's certificate chain, PEM, its own certificate first.
    pub cert: &'a Path,
    /// The device's private key, PEM; must be 0600 or stricter.
    pub key: &'a Path,
    /// Also offer TLS 1.2 (AEAD suites only), for brokers without TLS 1.3.
    pub allow_tls12: bool,
}

/// The ring provider limited to AEAD suites (all of ring's are AEAD; the
/// filter keeps it so if a future version adds others).
fn provider() -> CryptoProvider {
    let mut provider = ring_provider::default_provider();
    provider.cipher_suites.retain(is_aead);
    provider
}

fn is_aead(suite: &SupportedCipherSuite) -> bool {
    let name = format!("{:?}", suite.suite());
    name.contains("_GCM_") || name.contains("CHACHA20_POLY1305")
}

/// Refuses a private key file that group or others can read.
pub fn check_key_permissions(path: &Path) -> Result<(), TlsError> {
    let meta = std::fs::metadata(path).map_err(|e| TlsError::Read {
        path: path.into(),
        message: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(TlsError::KeyTooOpen {
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

/// The first certificate of a PEM file: the device's own in a chain.
pub(crate) fn own_certificate(path: &Path) -> Result<CertificateDer<'static>, TlsError> {
    // read_certs refuses a file without a certificate.
    Ok(read_certs(path)?.swap_remove(0))
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|it| it.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError::Read {
            path: path.into(),
            message: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: path.into() });
    }
    Ok(certs)
}

fn read_roots(ca: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(ca)? {
        roots.add(cert).map_err(|e| TlsError::BadCa {
            path: ca.into(),
            message: e.to_string(),
        })?;
    }
    Ok(roots)
}

/// The client certificate, checked as a broker trusting the pinned CA
/// would check it: it chains to that CA, is meant for client
/// authentication, and is valid at the time asked. (The cloud runs the same
/// checks; a bad certificate found on the bench is a field visit saved.)
pub struct ClientCertificateCheck {
    cert: PathBuf,
    verifier: Arc<dyn rustls::server::danger::ClientCertVerifier>,
    chain: Vec<CertificateDer<'static>>,
}

impl ClientCertificateCheck {
    /// Reads the CA and the certificate chain once. `issuer`: the CA that
    /// issued the device certificate when it is not the cloud CA.
    pub fn load(files: &TlsFiles<'_>, issuer: Option<&Path>) -> Result<Self, TlsError> {
        let chain = read_certs(files.cert)?;
        Self::for_chain(issuer.unwrap_or(files.ca), files.cert, chain)
    }

    /// The check of `chain` (the device's certificate first) against the
    /// CA certificates in `issuer`; `cert` names it in errors.
    pub fn for_chain(
        issuer: &Path,
        cert: &Path,
        chain: Vec<CertificateDer<'static>>,
    ) -> Result<Self, TlsError> {
        let roots = read_roots(issuer)?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::new(provider()))
                .build()
                .map_err(|e| TlsError::BadClientCertificate {
                    path: cert.into(),
                    message: e.to_string(),
                })?;
        Ok(ClientCertificateCheck {
            cert: cert.into(),
            verifier,
            chain,
        })
    }

    /// Whether the certificate passes the checks at `at` (`--check-config`
    /// asks for now, and for 30 days ahead to warn before it expires).
    pub fn valid_at(&self, at: UnixTime) -> Result<(), TlsError> {
        let bad = |message: String| TlsError::BadClientCertificate {
            path: self.cert.clone(),
            message,
        };
        // read_certs refuses an empty file, so the chain has a first entry.
        let (end_entity, intermediates) = self
            .chain
            .split_first()
            .ok_or_else(|| bad("empty".into()))?;
        self.verifier
            .verify_client_cert(end_entity, intermediates, at)
            .map(|_| ())
            .map_err(|e| bad(e.to_string()))
    }
}

/// Builds the client configuration, checking every file on the way.
pub fn client_config(files: &TlsFiles<'_>) -> Result<ClientConfig, TlsError> {
    let roots = read_roots(files.ca)?;
    let chain = read_certs(files.cert)?;
    check_key_permissions(files.key)?;
    let key = PrivateKeyDer::from_pem_file(files.key).map_err(|e| TlsError::Read {
        path: files.key.into(),
        message: e.to_string(),
    })?;
    let versions: &[&rustls::SupportedProtocolVersion] = if files.allow_tls12 {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    } else {
        &[&rustls::version::TLS13]
    };
    let config = ClientConfig::builder_with_provider(Arc::new(provider()))
        .with_protocol_versions(versions)
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| TlsError::BadIdentity(e.to_string()))?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_offered_suite_is_aead() {
        let provider = provider();
        assert!(!provider.cipher_suites.is_empty());
        assert!(provider.cipher_suites.iter().all(is_aead));
    }

    #[test]
    fn a_group_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("device.key");
        std::fs::write(&key, b"not a key").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            check_key_permissions(&key),
            Err(TlsError::KeyTooOpen { mode: 0o640, .. })
        ));
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(check_key_permissions(&key).is_ok());
    }
}
