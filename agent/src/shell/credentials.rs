//! The device's TLS identity on flash and the files of its renewal (SPEC
//! §6.6): which key and certificate the link connects with, the key pair
//! generated for a renewal (its private half never leaves the device), the
//! issued certificate checked and stored with that key, the switch to the
//! new pair once it has connected, and setting it aside when it cannot be
//! used. When to renew is `core::renewal`'s.
//!
//! Files in `{state_dir}/credentials/` (directory 0700, files 0600). Each is
//! written under a temporary name, synced and renamed, and the directory
//! synced, so every step is atomic and a power cut at any point leaves the
//! old pair or the new one usable, never neither:
//!
//! ```text
//! pending.key   the key of the renewal asked for (PKCS#8 PEM)
//! next.pem      a new pair (key, then certificate), stored, not connected with yet
//! current.pem   the pair in use since it connected once; before the first
//!               renewal the configuration's files are
//! refused.pem   the last new pair that could not be used, kept for diagnosis
//! ```

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hc_protocol::certificate::{
    request_proof_message, CertificateRequest, P256_PUBLIC_KEY_LEN, P256_SIGNATURE_LEN,
};
use hc_protocol::provisioning::{self, ProvisionRequest, PROOF_CONTEXT};
use hc_protocol::{Reason, Serial};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use tracing::warn;

use super::cert_der;
use super::tls::{self, ClientCertificateCheck};
use crate::core::renewal::CertificateValidity;
use crate::store::Flash;

const PENDING: &str = "pending.key";
const NEXT: &str = "next.pem";
const CURRENT: &str = "current.pem";
const REFUSED: &str = "refused.pem";
const TEMPORARY: &str = ".tmp";

/// Which pair the link connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Identity {
    /// The configuration's `cloud.cert` and `cloud.key` (the factory pair).
    Configured,
    /// `current.pem`: a renewed pair that has connected.
    Current,
    /// `next.pem`: a renewed pair not connected with yet.
    Next,
}

/// Why a renewal step could not be taken.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CredentialError {
    /// Reading or writing the credentials directory failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the file system said.
        #[source]
        source: io::Error,
    },
    /// The key pair could not be made or used (the random source failed).
    #[error("cannot make or use the renewal key: {0}")]
    Key(&'static str),
}

/// The key a renewal asked a certificate for.
struct PendingKey {
    pkcs8: Vec<u8>,
    pair: EcdsaKeyPair,
}

/// The credential files and the renewal's key.
pub(crate) struct Credentials<F: Flash> {
    dir: PathBuf,
    configured_cert: PathBuf,
    configured_key: PathBuf,
    /// The CA a certificate must chain to: the device CA, else the cloud CA.
    issuer: PathBuf,
    flash: F,
    rng: SystemRandom,
    pending: Option<PendingKey>,
}

impl<F: Flash> Credentials<F> {
    /// Opens (or creates) the credentials directory `dir`; the
    /// configuration's pair is `configured_cert` / `configured_key`, and
    /// `issuer` the CA renewed certificates must chain to. A pending key
    /// that does not load is dropped (a new one is made when asked).
    pub(crate) fn open(
        dir: PathBuf,
        configured_cert: PathBuf,
        configured_key: PathBuf,
        issuer: PathBuf,
        mut flash: F,
    ) -> Result<Self, CredentialError> {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&dir)
            .map_err(io_error(&dir))?;
        let tighten = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700));
        tighten.map_err(io_error(&dir))?;
        let rng = SystemRandom::new();
        let pending_path = dir.join(PENDING);
        let pending = match flash.read(&pending_path).map_err(io_error(&pending_path))? {
            None => None,
            Some(pem) => {
                let loaded = PrivateKeyDer::from_pem_slice(&pem).ok().and_then(|key| {
                    let pkcs8 = key.secret_der().to_vec();
                    let pair =
                        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &rng)
                            .ok()?;
                    Some(PendingKey { pkcs8, pair })
                });
                if loaded.is_none() {
                    warn!(path = %pending_path.display(), "the renewal key does not load: dropped, a new one is made for the next request");
                }
                loaded
            }
        };
        let mut credentials = Credentials {
            dir,
            configured_cert,
            configured_key,
            issuer,
            flash,
            rng,
            pending,
        };
        credentials.drop_certified_pending();
        Ok(credentials)
    }

    /// A power cut between storing a pair and removing its pending key
    /// leaves a key that already has its certificate: it is not asked for
    /// again (the cloud issues one certificate per key).
    fn drop_certified_pending(&mut self) {
        let Some(pending) = &self.pending else {
            return;
        };
        let certified = [NEXT, CURRENT].iter().any(|name| {
            self.stored_certificate(name).is_some_and(|der| {
                cert_der::public_key(&der) == Some(pending.pair.public_key().as_ref())
            })
        });
        if certified {
            self.pending = None;
            let path = self.path(PENDING);
            if let Err(e) = self.flash.remove(&path) {
                warn!(error = %e, "the used renewal key could not be removed");
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The pair to connect with: a stored new pair first, then the one in
    /// use.
    pub(crate) fn identity(&self) -> Identity {
        if self.path(NEXT).is_file() {
            Identity::Next
        } else {
            self.fallback()
        }
    }

    /// The pair in use, without a new one.
    pub(crate) fn fallback(&self) -> Identity {
        if self.path(CURRENT).is_file() {
            Identity::Current
        } else {
            Identity::Configured
        }
    }

    /// Whether `identity`'s certificate file is there.
    pub(crate) fn exists(&self, identity: Identity) -> bool {
        self.files(identity).0.is_file()
    }

    /// The certificate and key files of `identity` (one file holds both
    /// for a renewed pair).
    pub(crate) fn files(&self, identity: Identity) -> (PathBuf, PathBuf) {
        match identity {
            Identity::Configured => (self.configured_cert.clone(), self.configured_key.clone()),
            Identity::Current => (self.path(CURRENT), self.path(CURRENT)),
            Identity::Next => (self.path(NEXT), self.path(NEXT)),
        }
    }

    /// The validity of `identity`'s certificate, if it can be read.
    pub(crate) fn validity(&self, identity: Identity) -> Option<CertificateValidity> {
        let der = tls::own_certificate(&self.files(identity).0).ok()?;
        let (not_before, not_after) = cert_der::validity(der.as_ref())?;
        Some(CertificateValidity {
            not_before,
            not_after,
        })
    }

    /// The request for a certificate for the renewal's key, made (and
    /// stored, so that a restart asks for the same key) if there is none.
    pub(crate) fn request(
        &mut self,
        serial: &Serial,
        current_not_after: u64,
    ) -> Result<CertificateRequest, CredentialError> {
        let key = self.pending_public_key()?;
        let (public_key, proof) = self.signed_public_key(&request_proof_message(serial, &key))?;
        Ok(CertificateRequest {
            serial: serial.clone(),
            public_key,
            proof,
            current_not_after,
        })
    }

    /// The request for this device's first certificate with a claim
    /// certificate (SPEC §6.7), for the renewal key (made if there is
    /// none), with the proof that the device knows `verification_code`.
    pub(crate) fn provision_request(
        &mut self,
        serial: &Serial,
        verification_code: &[u8],
    ) -> Result<ProvisionRequest, CredentialError> {
        let key = self.pending_public_key()?;
        let (public_key, proof) =
            self.signed_public_key(&provisioning::proof_message(PROOF_CONTEXT, serial, &key))?;
        Ok(ProvisionRequest {
            serial: serial.clone(),
            code_proof: provisioning::code_proof(verification_code, serial, &key),
            public_key,
            proof,
        })
    }

    /// The public key of the pending key, made and stored first if there
    /// is none (so that a restart asks for the same key).
    fn pending_public_key(&mut self) -> Result<Vec<u8>, CredentialError> {
        if self.pending.is_none() {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &self.rng)
                .map_err(|_| CredentialError::Key("key generation failed"))?;
            let pkcs8 = pkcs8.as_ref().to_vec();
            let pair =
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &pkcs8, &self.rng)
                    .map_err(|_| CredentialError::Key("the generated key does not load"))?;
            self.write(PENDING, pem("PRIVATE KEY", &pkcs8).as_bytes())?;
            self.pending = Some(PendingKey { pkcs8, pair });
        }
        match &self.pending {
            Some(pending) => Ok(pending.pair.public_key().as_ref().to_vec()),
            None => Err(CredentialError::Key("no renewal key")),
        }
    }

    /// The pending public key and its signature over `message`.
    #[allow(clippy::type_complexity)]
    fn signed_public_key(
        &self,
        message: &[u8],
    ) -> Result<
        (
            heapless::Vec<u8, P256_PUBLIC_KEY_LEN>,
            heapless::Vec<u8, P256_SIGNATURE_LEN>,
        ),
        CredentialError,
    > {
        let pending = self
            .pending
            .as_ref()
            .ok_or(CredentialError::Key("no renewal key"))?;
        let proof = pending
            .pair
            .sign(&self.rng, message)
            .map_err(|_| CredentialError::Key("signing the proof failed"))?;
        Ok((
            pending.pair.public_key().as_ref().iter().copied().collect(),
            proof.as_ref().iter().copied().collect(),
        ))
    }

    /// Checks the certificate `der` the cloud issued, at trusted time
    /// `now`, and stores it with the renewal's key as the next pair. The
    /// same certificate again (a redelivery after a restart) is accepted
    /// without storing anything.
    pub(crate) fn install(
        &mut self,
        der: &[u8],
        serial: &Serial,
        now: u64,
    ) -> Result<CertificateValidity, Reason> {
        let public_key = cert_der::public_key(der).ok_or(Reason::CertificateNotTrusted)?;
        let (not_before, not_after) =
            cert_der::validity(der).ok_or(Reason::CertificateNotTrusted)?;
        let validity = CertificateValidity {
            not_before,
            not_after,
        };
        // The same certificate again (the command redelivered after a
        // restart, before or after the pair connected) changes nothing.
        if [NEXT, CURRENT].iter().any(|name| {
            self.stored_certificate(name)
                .is_some_and(|stored| stored == der)
        }) {
            return Ok(validity);
        }
        let Some(pending) = &self.pending else {
            return Err(Reason::CertificateNotRequested);
        };
        if public_key != pending.pair.public_key().as_ref() {
            return Err(Reason::CertificateNotRequested);
        }
        let names = cert_der::subject_common_names(der).unwrap_or_default();
        if !names.iter().any(|name| name == serial.as_str()) {
            return Err(Reason::CertificateNotForDevice);
        }
        let chain = vec![CertificateDer::from(der.to_vec())];
        let check = ClientCertificateCheck::for_chain(&self.issuer, &self.path(NEXT), chain)
            .map_err(|_| Reason::CertificateNotTrusted)?;
        // A clock behind the cloud's (no signed time yet, as before the
        // first connection) must not refuse a certificate issued just now:
        // one not valid yet by it is checked at its start. An expired one
        // is refused all the same.
        let at = now.max(not_before);
        check
            .valid_at(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
                at,
            )))
            .map_err(|_| Reason::CertificateNotTrusted)?;

        let mut pair = pem("PRIVATE KEY", &pending.pkcs8);
        pair.push_str(&pem("CERTIFICATE", der));
        self.write(NEXT, pair.as_bytes())
            .map_err(|_| Reason::StorageFailed)?;
        // The key now lives in next.pem; a crash before this removal
        // leaves a pending key that asks again once next.pem is used.
        self.pending = None;
        let pending_path = self.path(PENDING);
        if let Err(e) = self.flash.remove(&pending_path) {
            warn!(error = %e, "the renewal key could not be removed; it is replaced at the next renewal");
        }
        Ok(validity)
    }

    fn stored_certificate(&self, name: &str) -> Option<Vec<u8>> {
        let der = tls::own_certificate(&self.path(name)).ok()?;
        Some(der.as_ref().to_vec())
    }

    /// The next pair connected: it becomes the pair in use, replacing the
    /// old one.
    pub(crate) fn promote(&mut self) -> Result<(), CredentialError> {
        self.rename(NEXT, CURRENT)
    }

    /// The next pair cannot be used: it is set aside (`refused.pem`) and
    /// the pair in use stays.
    pub(crate) fn set_aside(&mut self) -> Result<(), CredentialError> {
        self.rename(NEXT, REFUSED)
    }

    fn rename(&mut self, from: &str, to: &str) -> Result<(), CredentialError> {
        let (from, to) = (self.path(from), self.path(to));
        self.flash.rename(&from, &to).map_err(io_error(&from))?;
        self.flash.sync_dir(&self.dir).map_err(io_error(&self.dir))
    }

    /// Writes `name` atomically: a temporary file, synced, renamed over
    /// the old one, and the directory synced.
    fn write(&mut self, name: &str, bytes: &[u8]) -> Result<(), CredentialError> {
        let path = self.path(name);
        let temporary = self.path(&format!("{name}{TEMPORARY}"));
        self.flash
            .write_new(&temporary, bytes)
            .map_err(io_error(&temporary))?;
        self.flash
            .sync_file(&temporary)
            .map_err(io_error(&temporary))?;
        self.flash
            .rename(&temporary, &path)
            .map_err(io_error(&path))?;
        self.flash.sync_dir(&self.dir).map_err(io_error(&self.dir))
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> CredentialError + '_ {
    move |source| CredentialError::Io {
        path: path.to_owned(),
        source,
    }
}

/// `der` as a PEM block labelled `label`.
fn pem(label: &str, der: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut text = String::new();
    for chunk in der.chunks(3) {
        let bits = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        for i in 0..4 {
            text.push(if i <= chunk.len() {
                char::from(ALPHABET[(bits >> (18 - 6 * i) & 63) as usize])
            } else {
                '='
            });
        }
    }
    let mut block = format!("-----BEGIN {label}-----\n");
    for line in text.as_bytes().chunks(64) {
        block.push_str(&String::from_utf8_lossy(line));
        block.push('\n');
    }
    block.push_str(&format!("-----END {label}-----\n"));
    block
}

#[cfg(test)]
mod tests;
