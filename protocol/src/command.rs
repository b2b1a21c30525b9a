//! Cloud commands: what the cloud asks the device to change or decide, with
//! the actor who asked, the per-device sequence number and the cloud's issue
//! time. Commands travel inside the signed envelope (`envelope`).

use serde::{Deserialize, Serialize};

use crate::access::{Action, ChannelScope, InstallerGrants, Permissions, ShareEntry, Validity};
use crate::certificate::{code_mac, code_mac_holds};
use crate::envelope::PUBLIC_KEY_LEN;
use crate::ids::{AccountId, AccountRef, Serial, Text};
use crate::limits::{MAX_AUDIT_REPLY, MAX_CERTIFICATE_BYTES, MAX_DOMAIN_LEN, MAX_SHARES};
use crate::messages::Binding;

/// The signed content of a command envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Command {
    /// The device the command is for; any other device refuses it.
    pub serial: Serial,
    /// The cloud account on whose behalf the command was issued.
    pub actor: AccountRef,
    /// Grows by at least one per command for this device.
    pub seq: u64,
    /// The cloud's clock when it issued the command, Unix seconds.
    pub issued_at: u64,
    /// What to do.
    pub body: CommandBody,
}

/// Which role a bind gives the binding account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BindRole {
    /// The account becomes the owner directly.
    Owner,
    /// An installer adds the device to a site it manages until handover.
    Installer,
}

/// Every command the cloud can send. Wire: variant index, then fields.
// Bounded collections live inline; one command is handled at a time, so the
// size of the largest variant costs nothing that matters.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum CommandBody {
    /// Bind an unbound device to the actor. `proof` shows the actor's
    /// client knew the verification code printed on the device
    /// (see [`bind_proof`]).
    Bind {
        /// Owner or site installer.
        role: BindRole,
        /// HMAC-SHA256 of the verification code over serial and account.
        proof: [u8; 32],
    },
    /// Remove owner, installer and every share.
    Unbind,
    /// Share with an account, or replace its share.
    Share {
        /// The account to share with (its region must be the device's).
        account: AccountRef,
        /// What it may do; at most `Permissions::SHAREABLE`.
        permissions: Permissions,
        /// The channels its channel-scoped actions may use.
        channels: ChannelScope,
        /// The window of the share; `None`: no time limit.
        validity: Option<Validity>,
    },
    /// Stop sharing with one or several accounts.
    Unshare {
        /// The accounts whose shares are removed (1 to `MAX_SHARES`).
        accounts: heapless::Vec<AccountId, MAX_SHARES>,
    },
    /// Stop sharing with everyone.
    UnshareAll,
    /// A shared user removes the device from its own account.
    LeaveShare,
    /// The owner (the actor) accepted the installer's invitation: the site
    /// is handed over and the installer keeps only `installer_grants`.
    Handover {
        /// What the installer keeps after the handover.
        installer_grants: InstallerGrants,
    },
    /// The owner sets the installer's rights after handover.
    GrantInstaller {
        /// The installer's new grants, replacing the old ones as a whole.
        grants: InstallerGrants,
    },
    /// The owner takes every right from the installer.
    RevokeInstaller,
    /// Switch the cloud service for this device.
    SetCloudService {
        /// On or off.
        enabled: bool,
    },
    /// Change the device domain name (validated on the device).
    SetDomain {
        /// The new name: free text on the wire, checked as a `DomainName`
        /// by the device (`InvalidDomainName` otherwise).
        name: Text<MAX_DOMAIN_LEN>,
    },
    /// Publish the state report now.
    RequestState,
    /// Publish up to `max` recent audit entries now.
    RequestAudit {
        /// How many entries, clamped to `MAX_AUDIT_REPLY`.
        max: u16,
    },
    /// May the actor do `action` on `channel` now? Answered in the ack.
    Operation {
        /// The action asked for.
        action: Action,
        /// The channel, for a channel-scoped action.
        channel: Option<u16>,
    },
    /// The owner names an installer and sets its rights, on a device that
    /// was never in that installer's site or after the installer was
    /// revoked ("he/she can authorize the permissions about these devices
    /// to the Installer"). Replaces the grants of the same installer; a
    /// different installer must be revoked first (`OtherInstaller`).
    AuthorizeInstaller {
        /// The installer (its region must be the device's).
        installer: AccountRef,
        /// Its rights, as after a handover.
        grants: InstallerGrants,
    },
    /// The product documents' own share: the receiver gets the device's
    /// domain name and sees who shared it; what it may do on the device
    /// comes from the device's own accounts (admin / operator / guest), not
    /// from the share. Stored as a share with no permission, every action
    /// denied through the cloud.
    ShareDomain {
        /// The account to share with (its region must be the device's).
        account: AccountRef,
    },
    /// The cloud's whole record of the device's access state, in one step:
    /// it replaces binding, shares, cloud service switch and domain, and
    /// clears the device's "behind" flag (SPEC §9.2). Sent when a state
    /// report says `behind` or a `last_seq` below the cloud's.
    RestoreState {
        /// Who holds the device.
        binding: Binding,
        /// Every share, in ascending byte order of account id.
        shares: heapless::Vec<ShareEntry, MAX_SHARES>,
        /// The cloud service switch.
        cloud_service: bool,
        /// The device domain name, checked as a `DomainName` on the device.
        domain: Text<MAX_DOMAIN_LEN>,
    },
    /// Add a command verification key to the device's key ring under a
    /// free id (SPEC §6.2): the first step of a key rotation. Any key the
    /// device holds may sign it; refused when the id is taken
    /// (`CommandKeyIdInUse`) or the ring holds `MAX_COMMAND_KEYS` keys
    /// (`CapacityExceeded`).
    AddCommandKey {
        /// The id the cloud will sign with the new key under.
        key_id: u8,
        /// The new Ed25519 public key.
        public_key: [u8; PUBLIC_KEY_LEN],
    },
    /// Remove a command verification key from the device's key ring: the
    /// last step of a key rotation. Must be signed by another key than the
    /// one removed (`KeyRemovesItself`), so the ring never empties; an id
    /// the device does not hold is refused (`KeyNotHeld`).
    RemoveCommandKey {
        /// The id of the key to remove.
        key_id: u8,
    },
    /// The cloud's answer to a `CertificateRequest` (SPEC §6.6): the
    /// device's new certificate, for the key pair it generated and asked a
    /// certificate for. The device checks that it chains to the device CA,
    /// is valid, names its serial and carries the requested key, stores it
    /// with that key and connects with it from the next connection on.
    InstallCertificate {
        /// The certificate, DER.
        certificate: heapless::Vec<u8, MAX_CERTIFICATE_BYTES>,
    },
}

/// The kind of a command, without its fields (for audit and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CommandKind {
    /// [`CommandBody::Bind`].
    Bind,
    /// [`CommandBody::Unbind`].
    Unbind,
    /// [`CommandBody::Share`].
    Share,
    /// [`CommandBody::Unshare`].
    Unshare,
    /// [`CommandBody::UnshareAll`].
    UnshareAll,
    /// [`CommandBody::LeaveShare`].
    LeaveShare,
    /// [`CommandBody::Handover`].
    Handover,
    /// [`CommandBody::GrantInstaller`].
    GrantInstaller,
    /// [`CommandBody::RevokeInstaller`].
    RevokeInstaller,
    /// [`CommandBody::SetCloudService`].
    SetCloudService,
    /// [`CommandBody::SetDomain`].
    SetDomain,
    /// [`CommandBody::RequestState`].
    RequestState,
    /// [`CommandBody::RequestAudit`].
    RequestAudit,
    /// [`CommandBody::Operation`].
    Operation,
    /// [`CommandBody::AuthorizeInstaller`].
    AuthorizeInstaller,
    /// [`CommandBody::ShareDomain`].
    ShareDomain,
    /// [`CommandBody::RestoreState`].
    RestoreState,
    /// [`CommandBody::AddCommandKey`].
    AddCommandKey,
    /// [`CommandBody::RemoveCommandKey`].
    RemoveCommandKey,
    /// [`CommandBody::InstallCertificate`].
    InstallCertificate,
}

impl CommandBody {
    /// The command's kind, without its fields.
    pub fn kind(&self) -> CommandKind {
        match self {
            CommandBody::Bind { .. } => CommandKind::Bind,
            CommandBody::Unbind => CommandKind::Unbind,
            CommandBody::Share { .. } => CommandKind::Share,
            CommandBody::Unshare { .. } => CommandKind::Unshare,
            CommandBody::UnshareAll => CommandKind::UnshareAll,
            CommandBody::LeaveShare => CommandKind::LeaveShare,
            CommandBody::Handover { .. } => CommandKind::Handover,
            CommandBody::GrantInstaller { .. } => CommandKind::GrantInstaller,
            CommandBody::RevokeInstaller => CommandKind::RevokeInstaller,
            CommandBody::SetCloudService { .. } => CommandKind::SetCloudService,
            CommandBody::SetDomain { .. } => CommandKind::SetDomain,
            CommandBody::RequestState => CommandKind::RequestState,
            CommandBody::RequestAudit { .. } => CommandKind::RequestAudit,
            CommandBody::Operation { .. } => CommandKind::Operation,
            CommandBody::AuthorizeInstaller { .. } => CommandKind::AuthorizeInstaller,
            CommandBody::ShareDomain { .. } => CommandKind::ShareDomain,
            CommandBody::RestoreState { .. } => CommandKind::RestoreState,
            CommandBody::AddCommandKey { .. } => CommandKind::AddCommandKey,
            CommandBody::RemoveCommandKey { .. } => CommandKind::RemoveCommandKey,
            CommandBody::InstallCertificate { .. } => CommandKind::InstallCertificate,
        }
    }
}

impl CommandKind {
    /// Largest audit reply a `RequestAudit` can ask for.
    pub const MAX_AUDIT_REQUEST: usize = MAX_AUDIT_REPLY;
}

/// Domain separator for the bind proof, so the MAC cannot be reused
/// for anything else.
pub const BIND_PROOF_CONTEXT: &[u8] = b"hc-agent/bind/v1";

/// The bind proof: HMAC-SHA256 keyed with the verification code's ASCII
/// bytes over `BIND_PROOF_CONTEXT || 0x00 || serial || 0x00 || account id`.
pub fn bind_proof(verification_code: &[u8], serial: &Serial, account: &AccountId) -> [u8; 32] {
    code_mac(
        verification_code,
        BIND_PROOF_CONTEXT,
        serial,
        account.as_bytes(),
    )
}

/// Checks a bind proof in constant time.
pub fn verify_bind_proof(
    verification_code: &[u8],
    serial: &Serial,
    account: &AccountId,
    proof: &[u8; 32],
) -> bool {
    code_mac_holds(
        verification_code,
        BIND_PROOF_CONTEXT,
        serial,
        account.as_bytes(),
        proof,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_proof_checks_code_serial_and_account() {
        let serial = Serial::new("NVR1").unwrap();
        let alice = AccountId::new("alice").unwrap();
        let proof = bind_proof(b"ABCDEF", &serial, &alice);
        assert!(verify_bind_proof(b"ABCDEF", &serial, &alice, &proof));
        assert!(!verify_bind_proof(b"ABCDEG", &serial, &alice, &proof));
        assert!(!verify_bind_proof(
            b"ABCDEF",
            &Serial::new("NVR2").unwrap(),
            &alice,
            &proof
        ));
        assert!(!verify_bind_proof(
            b"ABCDEF",
            &serial,
            &AccountId::new("bob").unwrap(),
            &proof
        ));
    }
}
