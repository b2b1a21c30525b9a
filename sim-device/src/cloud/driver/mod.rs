//! The simulated cloud on the wire: one MQTT connection over mutual TLS as
//! the `cloud` client certificate (rumqttc + rustls with the ring
//! provider, the PKI's CA as the only trust anchor), subscribed to every
//! device's acknowledgements, state reports, online status and domain
//! registrations.
//!
//! - **Sequence numbers.** Each device's next command sequence number is
//!   learned from its retained `StateReport.last_seq` when the device is
//!   first seen, then grows by one per command. A real cloud persists the
//!   number per device (and is the only writer); here several processes
//!   (the demo, field-engineer commands) may command the same device, and
//!   the retained report does not move on refused or read-only commands,
//!   so a learned number can be stale. The device then answers
//!   `redelivered` or `ReplayedSequence` without applying anything, and
//!   the driver jumps ahead (16, 32, 64, ... past the stale number) and
//!   sends again, within the same time budget.
//! - **Command key.** Commands are signed with a [`CommandSigner`](hc_protocol::envelope::CommandSigner) (key id
//!   [`COMMAND_KEY_ID`]) whose seed lives in the PKI directory as
//!   [`SEED_FILE`] (64 hex digits), so that separate processes sign with the
//!   same key; devices pin its public key in their configuration.
//! - **Network busy.** [`Cloud::send`] waits at most the acknowledgement
//!   timeout (3 s by default) in all: for the device to be online (its
//!   retained status) with a known state, then for the `Ack` with the
//!   command's sequence number. A device that is offline gets nothing
//!   published (so nothing surfaces on it later); one that does not answer
//!   in time gives `CloudError::NetworkBusy`, and as with the real service
//!   the command may still be applied later: the device's state report
//!   stays the truth.
//! - **Domain registrations** are answered from the model, with the
//!   device's LAN address as the public address the cloud "sees".
//!
//! - **Restore.** A state report that says `behind` (the device fell back to
//!   an older copy of its state) is answered with a `RestoreState` built from
//!   the cloud's record, the last report before it.
//!
//! `link` owns the connection and what arrives on it, `seed` the command
//! key, `operations` the commands sent and their acknowledgements,
//! `restore` the restore of a device that is behind.

mod certificates;
mod flows;
mod link;
mod operations;
mod restore;
mod seed;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub use certificates::{Issuer, CERTIFICATE_ACTOR, DEFAULT_CERTIFICATE_LIFETIME};
pub use link::{Cloud, CloudOptions};
pub use seed::{
    command_public_key, load_or_create_seed, load_seed, signer, COMMAND_KEY_ID, SEED_FILE,
};

/// How long a command waits for its acknowledgement by default.
pub const DEFAULT_ACK_TIMEOUT: Duration = Duration::from_secs(3);
/// How long [`Cloud::connect`] waits for the broker by default.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    #[error("{path}: {message}")]
    Seed { path: PathBuf, message: String },
    #[error("TLS files: {0}")]
    Tls(String),
    #[error("cannot connect to the broker at {addr} within {timeout:?}: {last_error}")]
    Connect {
        addr: String,
        timeout: Duration,
        last_error: String,
    },
}

/// The cloud's clock, Unix seconds.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
