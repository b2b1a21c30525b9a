//! The cloud link's TLS client configuration, kept fresh: it is built from
//! the CA, certificate and key files at start, and rebuilt before a
//! connection attempt when any of those files changed on disk (size,
//! modification time or inode: three `stat` calls per attempt) or the
//! credential store picked another pair, so a renewed certificate is used
//! at the next reconnect without a restart. A change that does not make a
//! usable configuration (a certificate written before its key, say) is
//! reported and the previous one kept until the files change again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use tracing::info;

use super::config::CloudConfig;
use super::tls::{self, TlsError, TlsFiles};

/// What identifies a file's content cheaply.
type Stamp = Option<(u64, i64, i64, u64)>;

fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.len(), meta.mtime(), meta.mtime_nsec(), meta.ino()))
}

/// The TLS configuration and the files it came from.
pub(crate) struct TlsSource {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    allow_tls12: bool,
    seen: [Stamp; 3],
    current: Arc<ClientConfig>,
}

impl TlsSource {
    /// Builds the configuration from the CA `cloud` names and the pair
    /// `cert` / `key` (the credential store's choice).
    pub(crate) fn load(
        cloud: &CloudConfig,
        cert: &Path,
        key: &Path,
    ) -> Result<TlsSource, TlsError> {
        // Stamped before reading, so a change while reading is seen later.
        let seen = [stamp(&cloud.ca), stamp(cert), stamp(key)];
        let current = Arc::new(tls::client_config(&TlsFiles {
            ca: &cloud.ca,
            cert,
            key,
            allow_tls12: cloud.allow_tls12,
        })?);
        Ok(TlsSource {
            ca: cloud.ca.clone(),
            cert: cert.to_owned(),
            key: key.to_owned(),
            allow_tls12: cloud.allow_tls12,
            seen,
            current,
        })
    }

    fn build(&self) -> Result<ClientConfig, TlsError> {
        tls::client_config(&TlsFiles {
            ca: &self.ca,
            cert: &self.cert,
            key: &self.key,
            allow_tls12: self.allow_tls12,
        })
    }

    /// The configuration to connect with.
    pub(crate) fn current(&self) -> Arc<ClientConfig> {
        self.current.clone()
    }

    /// Before a connection attempt with the pair `cert` / `key`:
    /// `Ok(Some(new))` when the pair or its files changed and make a usable
    /// configuration (now the current one), `Err` when they do not (the
    /// previous one is kept).
    pub(crate) fn refresh(
        &mut self,
        cert: &Path,
        key: &Path,
    ) -> Result<Option<Arc<ClientConfig>>, TlsError> {
        if cert != self.cert || key != self.key {
            self.cert = cert.to_owned();
            self.key = key.to_owned();
            self.seen = [None; 3];
        }
        let now = [stamp(&self.ca), stamp(&self.cert), stamp(&self.key)];
        if now == self.seen {
            return Ok(None);
        }
        self.seen = now;
        let config = self.build()?;
        info!(cert = %self.cert.display(), "client certificate (re)loaded: used from this connection on");
        self.current = Arc::new(config);
        Ok(Some(self.current.clone()))
    }
}
