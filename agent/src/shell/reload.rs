//! SIGHUP: the configuration is read again and what can change while
//! running is applied: the local socket's `allowed_uids` and `admin_uids`,
//! the pinned `[[command_keys]]`, and the cloud CA, certificate and key
//! (`[cloud] ca`, `cert`, `key`, `allow_tls12`), used from the next
//! connection on without dropping the current one. Every other key needs
//! a restart; a changed one is named in the log. A configuration that does
//! not load or validate, or certificate files that do not make a usable
//! TLS configuration, change nothing: the agent keeps running on the old
//! one and logs why.

use hc_protocol::envelope::CommandKeys;
use tokio::signal::unix::{signal, Signal, SignalKind};
use tracing::{error, warn};

use super::config::Config;
use super::tls_source::TlsSource;

/// Reads the configuration as at start (the file, then the command-line
/// overrides), validated.
pub type LoadConfig = Box<dyn Fn() -> Result<Config, String>>;

/// The SIGHUP listener and the configuration last applied.
pub struct Reload {
    load: Option<LoadConfig>,
    applied: Config,
    hangup: Option<Signal>,
}

/// What a reload changes.
pub(crate) struct Reloaded {
    pub(crate) allowed_uids: Vec<u32>,
    pub(crate) admin_uids: Vec<u32>,
    pub(crate) keys: CommandKeys,
    /// `None` with `insecure_plaintext` (tests).
    pub(crate) tls: Option<TlsSource>,
}

impl Reload {
    /// From now on SIGHUP reloads instead of ending the process; with no
    /// `load` (an agent embedded in another program, like the simulator's
    /// recorders) signals are left alone. Must be called inside the runtime.
    pub fn new(applied: Config, load: Option<LoadConfig>) -> Reload {
        let hangup = match load.as_ref().map(|_| signal(SignalKind::hangup())) {
            None => None,
            Some(Ok(hangup)) => Some(hangup),
            Some(Err(e)) => {
                error!(error = %e, "SIGHUP handler not installed: reload needs a restart");
                None
            }
        };
        Reload {
            load,
            applied,
            hangup,
        }
    }

    /// Waits for the next SIGHUP. Cancel-safe.
    pub(crate) async fn hangup(&mut self) {
        match self.hangup.as_mut() {
            Some(hangup) => {
                hangup.recv().await;
            }
            None => std::future::pending().await,
        }
    }

    /// Reads the configuration again: what to apply, or why nothing is.
    pub(crate) fn load(&mut self) -> Result<Reloaded, String> {
        let load = self.load.as_ref().ok_or("no configuration to reload")?;
        let config = load()?;
        let keys = config.command_keys().map_err(|e| e.to_string())?;
        // A device provisioned by claim has no factory pair to check: its
        // own is the credential store's, kept as it is.
        let claimed = config.cloud.claim_cert.is_some() && !config.cloud.cert.is_file();
        let tls = if config.cloud.insecure_plaintext || claimed {
            None
        } else {
            // Checks the new files; the pair connected with stays the
            // credential store's choice (see CertificateRenewal).
            Some(
                TlsSource::load(&config.cloud, &config.cloud.cert, &config.cloud.key)
                    .map_err(|e| e.to_string())?,
            )
        };
        let restart_only = restart_only_changes(&self.applied, &config);
        if !restart_only.is_empty() {
            warn!(
                keys = %restart_only.join(", "),
                "changed in the configuration; applies after a restart"
            );
        }
        let reloaded = Reloaded {
            allowed_uids: config.local_socket.allowed_uids.clone(),
            admin_uids: config.local_socket.admin_uids.clone(),
            keys,
            tls,
        };
        // What needs a restart stays as running, so it is named again at
        // the next reload until the restart.
        let mut applied = self.applied.clone();
        applied.local_socket.allowed_uids = config.local_socket.allowed_uids;
        applied.local_socket.admin_uids = config.local_socket.admin_uids;
        applied.command_keys = config.command_keys;
        applied.cloud.ca = config.cloud.ca;
        applied.cloud.cert = config.cloud.cert;
        applied.cloud.key = config.cloud.key;
        applied.cloud.allow_tls12 = config.cloud.allow_tls12;
        self.applied = applied;
        Ok(reloaded)
    }
}

/// The keys that differ and are not applied while running.
fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (a, b) = (&old.cloud, &new.cloud);
    let differs = [
        ("serial", old.serial != new.serial),
        ("region", old.region != new.region),
        ("channels", old.channels != new.channels),
        (
            "verification_code",
            old.verification_code != new.verification_code,
        ),
        ("state_dir", old.state_dir != new.state_dir),
        ("cloud.host", a.host != b.host),
        ("cloud.port", a.port != b.port),
        (
            "cloud.keep_alive_secs",
            a.keep_alive_secs != b.keep_alive_secs,
        ),
        (
            "cloud.connect_timeout_secs",
            a.connect_timeout_secs != b.connect_timeout_secs,
        ),
        (
            "cloud.status_refresh_secs",
            a.status_refresh_secs != b.status_refresh_secs,
        ),
        (
            "cloud.insecure_plaintext",
            a.insecure_plaintext != b.insecure_plaintext,
        ),
        (
            "cloud.backoff_*",
            (a.backoff_base_ms, a.backoff_cap_ms, a.reconnect_spread_ms)
                != (b.backoff_base_ms, b.backoff_cap_ms, b.reconnect_spread_ms),
        ),
        (
            "local_socket.path",
            old.local_socket.path != new.local_socket.path,
        ),
        (
            "local_socket.mode",
            old.local_socket.mode != new.local_socket.mode,
        ),
        (
            "domain",
            format!("{:?}", old.domain) != format!("{:?}", new.domain),
        ),
        ("log", format!("{:?}", old.log) != format!("{:?}", new.log)),
    ];
    differs
        .into_iter()
        .filter_map(|(key, changed)| changed.then_some(key))
        .collect()
}
