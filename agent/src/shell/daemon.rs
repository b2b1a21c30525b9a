//! Start and stop of the daemon: the configuration is checked, the state
//! loaded, the local socket bound, and the cloud link driven (see
//! `cloud_driver`) until shutdown; then the state is written once more.
//! The local socket and the driver share the agent on one thread. Before
//! anything else the single-instance lock is taken; once the socket
//! answers, systemd (if it started us) is told READY and, if it asks,
//! pinged from the event loop.

use std::future::Future;
use std::rc::Rc;

use tracing::{error, info, warn};

use super::clock::Clocks;
use super::cloud_driver::{self, CertificateRenewal};
use super::config::Config;
use super::device::Agent;
use super::instance_lock;
pub use super::instance_lock::LockError;
use super::local_server::{self, LocalServerConfig, Peers, SharedService};
use super::provisioning;
use super::reload::{LoadConfig, Reload};
use super::sd_notify::Notifier;
use crate::core::domain::{Registrar, RegistrarPolicy};
use crate::core::DeviceState;
use crate::store::{Loaded, RealFlash, StateStore};

/// Why the daemon could not start; nothing was changed on flash.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The configuration is invalid (the key is named).
    #[error("configuration: {0}")]
    Config(#[from] super::config::ConfigError),
    /// The CA, certificate or key could not be used.
    #[error("TLS: {0}")]
    Tls(#[from] super::tls::TlsError),
    /// The credential directory (renewed certificates) could not be used.
    #[error("credentials: {0}")]
    Credentials(String),
    /// Provisioning by claim certificate cannot start.
    #[error("provisioning: {0}")]
    Provision(String),
    /// The state directory could not be read.
    #[error("state store: {0}")]
    Store(#[from] crate::store::StoreError),
    /// Another agent runs on the same state directory (nothing touched).
    #[error("{0}")]
    Locked(#[from] LockError),
    /// The local socket could not be bound.
    #[error("local socket {path}: {source}")]
    LocalSocket {
        /// The configured socket path.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
}

/// Loads the state, or starts a fresh one; a state file written for another
/// serial is not this device's and is not used.
pub fn load_state(
    config: &Config,
    store: &mut StateStore<RealFlash>,
) -> Result<DeviceState, StartError> {
    let identity = config.identity()?;
    let fresh = || {
        DeviceState::new(identity.clone()).map_err(|e| super::config::ConfigError::Invalid {
            key: "serial",
            message: e.to_string(),
        })
    };
    let loaded = match store.load::<DeviceState>()? {
        Loaded::Fresh => {
            info!("no state on flash: first start");
            return Ok(fresh()?);
        }
        Loaded::Main(state) => state,
        Loaded::Recovered { mut value, problem } => {
            // The previous copy may still hold a right the cloud revoked
            // since: deny cloud principals until the cloud restores the state.
            error!(%problem, "state file was damaged; the previous good copy is used and the device reports itself behind the cloud until restored");
            value.behind = true;
            if let Err(e) = store.save(&value) {
                error!(error = %e, "the behind flag could not be written; it is set again at the next start");
            }
            value
        }
    };
    if loaded.identity.serial != identity.serial {
        error!(stored = %loaded.identity.serial, configured = %identity.serial, "state file belongs to another serial; starting fresh");
        return Ok(fresh()?);
    }
    let mut state = loaded;
    // Region, channels and code come from the configuration, which wins.
    state.identity = identity;
    Ok(state)
}

/// Builds everything from the configuration and runs until `shutdown`
/// completes; SIGHUP reads the configuration again with `load` (none: the
/// embedding program keeps its signals). Must be called inside a
/// `tokio::task::LocalSet`.
pub async fn run(
    config: Config,
    load: Option<LoadConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    run_with_clocks(config, Clocks::system(), load, shutdown).await
}

/// `run` with the given clocks: a simulated recorder sharing its process
/// with others may read a wall clock of its own (`Clocks::with_wall_offset`).
pub async fn run_with_clocks(
    config: Config,
    clocks: Clocks,
    load: Option<LoadConfig>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), StartError> {
    config.validate()?;
    let _lock = instance_lock::acquire(&config.state_dir)?;
    let reload = Reload::new(config.clone(), load);
    // The pair to connect with, or the claim certificate to provision with
    // first (once the local socket answers).
    let tls = if config.cloud.insecure_plaintext {
        warn!("INSECURE: the cloud link runs without TLS (insecure_plaintext); tests only");
        None
    } else {
        let credentials = CertificateRenewal::credentials(&config)?;
        Some(match provisioning::claim_needed(&config, &credentials) {
            Some(claim) => Err((credentials, claim)),
            None => Ok(CertificateRenewal::open(&config, credentials)?),
        })
    };
    let mut store = StateStore::new(RealFlash, config.state_dir.clone(), "state");
    let state = load_state(&config, &mut store)?;
    let keys = config.command_keys()?;
    let registrar = Registrar::new(
        state.access.domain.clone(),
        RegistrarPolicy {
            min_interval_secs: config.domain.min_interval_secs,
            ..RegistrarPolicy::default()
        },
    );
    let serial = state.identity.serial.clone();
    info!(serial = %serial, bound = state.access.binding != hc_protocol::messages::Binding::Unbound, last_seq = state.ledger.last_seq, "agent starting");
    let shared = Rc::new(SharedService::new(
        Agent::new(state, store, keys, registrar),
        Peers {
            allowed: config.local_socket.allowed_uids.clone(),
            admins: config.local_socket.admin_uids.clone(),
        },
        clocks,
    ));

    let socket_config = LocalServerConfig {
        path: config.local_socket.path.clone(),
        mode: config.local_socket.mode,
    };
    let listener =
        local_server::bind(&socket_config).map_err(|source| StartError::LocalSocket {
            path: socket_config.path.display().to_string(),
            source,
        })?;
    let server = tokio::task::spawn_local(local_server::serve(listener, shared.clone()));
    let notifier = Notifier::from_env().map(Rc::new);
    let watchdog = notifier
        .clone()
        .map(|n| tokio::task::spawn_local(ping_watchdog(n)));
    if let Some(notifier) = &notifier {
        notifier.send("READY=1");
    }

    tokio::pin!(shutdown);
    let outcome = async {
        let tls = match tls {
            None => None,
            Some(Ok(ready)) => Some(ready),
            Some(Err((mut credentials, claim))) => {
                let provisioned = tokio::select! {
                    provisioned = provisioning::provision(&config, &mut credentials, claim, || shared.now()) => provisioned,
                    _ = &mut shutdown => return Ok(()),
                };
                provisioned.map_err(|e| StartError::Provision(e.to_string()))?;
                Some(CertificateRenewal::open(&config, credentials)?)
            }
        };
        let not_after = tls.as_ref().and_then(|(renewal, _)| renewal.not_after());
        shared.agent.borrow_mut().set_certificate_not_after(not_after);
        cloud_driver::drive(&config, tls, reload, &shared, &mut shutdown).await;
        Ok::<(), StartError>(())
    }
    .await;
    if let Some(notifier) = &notifier {
        notifier.send("STOPPING=1");
    }
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    server.abort();
    let _ = std::fs::remove_file(&config.local_socket.path);
    if let Err(e) = shared.agent.borrow_mut().flush() {
        error!(error = %e, "state could not be written at shutdown");
    }
    info!("agent stopped");
    outcome
}

/// `WATCHDOG=1` from the event loop every half watchdog interval, when
/// systemd asks for it.
async fn ping_watchdog(notifier: Rc<Notifier>) {
    let Some(every) = Notifier::watchdog_interval() else {
        return;
    };
    loop {
        notifier.send("WATCHDOG=1");
        tokio::time::sleep(every).await;
    }
}
