//! The cloud link's TLS client configuration, kept fresh: it is built from
//! the CA, certificate and key files at start, and rebuilt before a
//! connection attempt when any of those files changed on disk (size,
//! modification time or inode: three `stat` calls per attempt), so a
//! renewed certificate is used at the next reconnect without a restart. A
//! change that does not make a usable configuration (a certificate written
//! before its key, say) is logged and the previous one kept until the
//! files change again.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use tracing::{info, warn};

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
    /// Builds the configuration from the files `cloud` names.
    pub(crate) fn load(cloud: &CloudConfig) -> Result<TlsSource, TlsError> {
        // Stamped before reading, so a change while reading is seen later.
        let seen = [stamp(&cloud.ca), stamp(&cloud.cert), stamp(&cloud.key)];
        let current = Arc::new(tls::client_config(&TlsFiles {
            ca: &cloud.ca,
            cert: &cloud.cert,
            key: &cloud.key,
            allow_tls12: cloud.allow_tls12,
        })?);
        Ok(TlsSource {
            ca: cloud.ca.clone(),
            cert: cloud.cert.clone(),
            key: cloud.key.clone(),
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

    /// Before a connection attempt: `Some(new)` when the files changed and
    /// make a usable configuration (now the current one).
    pub(crate) fn refresh(&mut self) -> Option<Arc<ClientConfig>> {
        let now = [stamp(&self.ca), stamp(&self.cert), stamp(&self.key)];
        if now == self.seen {
            return None;
        }
        self.seen = now;
        match self.build() {
            Ok(config) => {
                info!(cert = %self.cert.display(), "certificate files changed: used from this connection on");
                self.current = Arc::new(config);
                Some(self.current.clone())
            }
            Err(e) => {
                warn!(error = %e, "certificate files changed but are not usable; the previous ones are kept");
                None
            }
        }
    }
}
