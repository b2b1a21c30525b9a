//! Messages the device publishes to the cloud: command acknowledgements,
//! the retained state report, the retained online/offline status (also the
//! last-will) and audit reports.

use serde::{Deserialize, Serialize};

use crate::access::{Action, InstallerGrants, LocalLevel, ShareEntry};
use crate::command::CommandKind;
use crate::ids::{AccountId, AccountRef, DomainName, Region, Serial, Text};
use crate::limits::{MAX_AUDIT_REPLY, MAX_COMMAND_KEYS, MAX_SHARES, MAX_VERSION_LEN};
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
    /// The ids of the command keys the device holds, ascending: the cloud
    /// signs with one of them (SPEC §6.2), also after the device fell back
    /// to an older copy of its state with an older key ring.
    pub command_key_ids: heapless::Vec<u8, MAX_COMMAND_KEYS>,
    /// When the device certificate in use ends, Unix seconds; `None` when
    /// the device does not know (no TLS, or a certificate it cannot read).
    /// The device renews it before then (SPEC §6.6).
    pub certificate_not_after: Option<u64>,
}

/// How much later than its promised refreshes (`2 * refresh_s`) a cloud
/// still takes an online status as fresh: room for the device's trusted
/// time and the cloud's clock to disagree a little, and for the broker to
/// be slow (SPEC.md §2.4).
pub const STATUS_MARGIN_SECS: u64 = 30;

/// The retained online/offline status; the offline form is the last-will.
///
/// A last-will alone cannot be trusted to tell the cloud a device is gone
/// (a clustered broker whose node dies never publishes its clients' wills),
/// so an online status says when it was written and when the next one will
/// come: one that is overdue means the device is gone
/// ([`DeviceStatus::offline_since`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceStatus {
    /// `true` after connecting and in every refresh; `false` in the
    /// last-will and before a deliberate disconnect.
    pub online: bool,
    /// When the device wrote it, Unix seconds by its trusted time (SPEC.md
    /// §8.3, §8.4). In the last-will it is the time of the connect that set
    /// the will, so only a lower bound of when the device was last seen.
    pub written_s: u64,
    /// Online: the device publishes the status again every `refresh_s`
    /// seconds while it stays connected (0: it promises no refresh, and
    /// only a will or an offline status tells that it is gone). Offline: 0.
    pub refresh_s: u32,
}

impl DeviceStatus {
    /// The online status written at `now`, refreshed every `refresh_s`.
    pub fn online(now: u64, refresh_s: u32) -> DeviceStatus {
        DeviceStatus {
            online: true,
            written_s: now,
            refresh_s,
        }
    }

    /// The offline status (a will set, or a disconnect, at `now`).
    pub fn offline(now: u64) -> DeviceStatus {
        DeviceStatus {
            online: false,
            written_s: now,
            refresh_s: 0,
        }
    }

    /// The one staleness rule (SPEC.md §2.4): `None` while the status says
    /// the device is online and is not overdue at `now` (the reader's own
    /// clock, Unix seconds); otherwise `Some(since)`, the time from which
    /// the device counts as offline: `written_s`, for an offline status and
    /// for an online one not refreshed by `written_s + 2 * refresh_s +
    /// STATUS_MARGIN_SECS`. Two intervals, not one, so that a single
    /// refresh lost or late is not taken for a device gone.
    pub fn offline_since(&self, now: u64) -> Option<u64> {
        if !self.online {
            return Some(self.written_s);
        }
        if self.refresh_s == 0 {
            return None;
        }
        let due = self
            .written_s
            .saturating_add(2 * u64::from(self.refresh_s))
            .saturating_add(STATUS_MARGIN_SECS);
        (now > due).then_some(self.written_s)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    const T: u64 = 1_767_225_600;

    #[test]
    fn an_online_status_is_online_until_two_refreshes_and_the_margin_have_passed() {
        let status = DeviceStatus::online(T, 300);
        let due = T + 600 + STATUS_MARGIN_SECS;
        assert_eq!(status.offline_since(T), None);
        // A reader whose clock is a little behind the device's.
        assert_eq!(status.offline_since(T - 100), None);
        assert_eq!(status.offline_since(due), None);
        assert_eq!(status.offline_since(due + 1), Some(T));
        assert_eq!(status.offline_since(u64::MAX), Some(T));
    }

    #[test]
    fn an_offline_status_is_offline_since_it_was_written() {
        assert_eq!(DeviceStatus::offline(T).offline_since(T), Some(T));
        assert_eq!(DeviceStatus::offline(T).offline_since(0), Some(T));
    }

    #[test]
    fn an_online_status_without_refresh_never_goes_stale() {
        assert_eq!(DeviceStatus::online(T, 0).offline_since(u64::MAX), None);
    }

    #[test]
    fn the_rule_does_not_overflow() {
        let status = DeviceStatus::online(u64::MAX - 1, u32::MAX);
        assert_eq!(status.offline_since(u64::MAX), None);
    }
}
