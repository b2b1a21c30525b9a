//! Messages the device publishes to the cloud: command acknowledgements,
//! the retained state report, the retained online/offline status (also the
//! last-will) and audit reports.

use serde::{Deserialize, Serialize};

use crate::access::{Action, InstallerGrants, LocalLevel, ShareEntry};
use crate::command::CommandKind;
use crate::ids::{AccountId, AccountRef, DomainName, Region, Serial, Text};
use crate::limits::{MAX_AUDIT_REPLY, MAX_SHARES, MAX_VERSION_LEN};
use crate::reason::Reason;

/// The result of a command or a decision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Outcome {
    /// Applied (a change), answered (a request) or allowed (an operation).
    Accepted,
    /// Refused or denied, with the reason; nothing changed.
    Refused(Reason),
}

impl Outcome {
    /// `Accepted` for `Ok`, `Refused(reason)` for `Err(reason)`.
    pub fn from_result<T>(r: &Result<T, Reason>) -> Outcome {
        match r {
            Ok(_) => Outcome::Accepted,
            Err(reason) => Outcome::Refused(*reason),
        }
    }
}

/// The device's acknowledgement of one command envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    /// The command's sequence number; `None` when the envelope could not be
    /// verified, so no sequence number in it can be trusted.
    pub seq: Option<u64>,
    /// The outcome (for a redelivery: the first one).
    pub outcome: Outcome,
    /// True when this acknowledges a redelivery of an already handled
    /// command: the outcome is the one first given, nothing was re-applied.
    pub redelivered: bool,
}

/// Who the site belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Binding {
    /// No owner, no installer (fresh, unbound or reset).
    Unbound,
    /// Added to a site by an installer, not handed over yet.
    InstallerManaged {
        /// The site installer, who manages the device fully.
        installer: AccountRef,
    },
    /// Owned; `installer` is kept after handover with `installer_grants`.
    Owned {
        /// The owner.
        owner: AccountRef,
        /// The installer after handover, if any.
        installer: Option<AccountRef>,
        /// What the installer kept.
        installer_grants: InstallerGrants,
    },
}

impl Binding {
    /// The owner, once there is one.
    pub fn owner(&self) -> Option<&AccountRef> {
        match self {
            Binding::Owned { owner, .. } => Some(owner),
            _ => None,
        }
    }

    /// The installer, before or after the handover.
    pub fn installer(&self) -> Option<&AccountRef> {
        match self {
            Binding::Owned { installer, .. } => installer.as_ref(),
            Binding::InstallerManaged { installer } => Some(installer),
            Binding::Unbound => None,
        }
    }
}

/// The retained state report: everything a cloud or field engineer needs to
/// see the device's access list and switches. Published after every change
/// and after every reconnect.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateReport {
    /// The device; equals the topic's serial.
    pub serial: Serial,
    /// The agent's software version.
    pub agent_version: Text<MAX_VERSION_LEN>,
    /// The device's region.
    pub region: Region,
    /// Channels the device has.
    pub channel_count: u16,
    /// Who holds the device.
    pub binding: Binding,
    /// Every share, in ascending byte order of account id.
    pub shares: heapless::Vec<ShareEntry, MAX_SHARES>,
    /// The cloud service switch (false: disabled by the installer).
    pub cloud_service: bool,
    /// The platform-access switch.
    pub platform_access: bool,
    /// The current device domain name.
    pub domain: DomainName,
    /// The highest command `seq` handled; the cloud continues above it.
    pub last_seq: u64,
    /// The trusted-time floor, Unix seconds (SPEC.md §8.3).
    pub trusted_time_floor: u64,
    /// Reports that did not fit the offline queue since start-up.
    pub reports_dropped: u32,
    /// The device wall clock's offset from trusted time in milliseconds
    /// (positive: the wall clock is ahead), as of the last signed time
    /// answer; `None` before the first one since start-up (SPEC.md §8.4).
    pub clock_offset_ms: Option<i64>,
    /// Times since start-up the device saw its session contested
    /// (`AuditEvent::SessionContested`).
    pub sessions_contested: u32,
    /// Times since start-up the broker accepted the device without its
    /// persistent session (`AuditEvent::SessionLost`).
    pub sessions_lost: u32,
    /// The device fell back to an older copy of its state and may be behind
    /// the cloud's record: it denies cloud principals (`StateBehind`) until
    /// the cloud sends `RestoreState`.
    pub behind: bool,
}

/// The retained online/offline status; the offline form is the last-will.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// `true` after connecting; `false` in the last-will.
    pub online: bool,
}

/// Who did something recorded in the audit ring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditActor {
    /// A cloud account (command actor or decision principal).
    Cloud(AccountId),
    /// A local user at this level.
    Local(LocalLevel),
    /// The device itself (start-up, expiry, storage).
    Device,
}

/// What was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum AuditEvent {
    /// An access decision asked on the local socket.
    Decision {
        /// The action asked for.
        action: Action,
        /// The channel, if one was given.
        channel: Option<u16>,
    },
    /// A verified cloud command (an `Operation` included).
    Command {
        /// Which command.
        kind: CommandKind,
        /// Its sequence number.
        seq: u64,
    },
    /// The platform-access switch set, or refused.
    PlatformAccess {
        /// The state asked for.
        enabled: bool,
    },
    /// A command envelope failed verification (size, version, key,
    /// signature, decoding or serial); no actor or sequence number in it
    /// can be trusted.
    EnvelopeRefused,
    /// The device admin unbound the device locally (`LocalRequest::Unbind`),
    /// or was refused.
    LocalUnbind,
    /// The broker closed the device's connection soon after accepting it
    /// several times in a row: another client is taking its session (a
    /// broker that does not bind the client id to the certificate), or the
    /// broker is flapping (SPEC §2.1).
    SessionContested,
    /// The broker accepted the device without the persistent session it
    /// had: what it had queued for the device is lost (SPEC §2.1).
    SessionLost,
}

/// One audit ring entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Device time of the event, Unix seconds.
    pub at: u64,
    /// Who.
    pub actor: AuditActor,
    /// What.
    pub event: AuditEvent,
    /// The result.
    pub outcome: Outcome,
}

/// Recent audit entries, oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditReport {
    /// The device; equals the topic's serial.
    pub serial: Serial,
    /// At most `MAX_AUDIT_REPLY` entries (more do not decode).
    pub entries: heapless::Vec<AuditEntry, MAX_AUDIT_REPLY>,
}
