//! Applying a verified cloud command to the device state. Who may change
//! what is enforced here, on the device, whatever the cloud believes.
//!
//! Every command is first checked against the ledger: a redelivery of a
//! recently handled command gets its first outcome again without being
//! applied twice; an older or replayed sequence number is refused and
//! changes nothing at all. A fresh command is then applied or refused; a
//! refusal leaves the access state unchanged and is recorded in the ledger
//! so that its redelivery is answered the same way.

use protocol::access::{Action, Decision, Principal};
use protocol::command::{verify_bind_proof, BindRole};
use protocol::limits::MAX_AUDIT_REPLY;
use protocol::messages::{AuditActor, AuditEntry, AuditEvent, Binding};
use protocol::{
    Ack, ChannelScope, Command, CommandBody, DomainName, InstallerGrants, Outcome, Permissions,
    Reason, ShareEntry,
};

use super::decide::decide;
use super::effects::{Effect, Effects};
use super::state::{AccessState, DeviceState};

/// The result of handling one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applied {
    /// The state to keep once the effects are carried out.
    pub state: DeviceState,
    /// The command's outcome (the first one, for a redelivery).
    pub outcome: Outcome,
    pub redelivered: bool,
    /// In order; ends with the acknowledgement.
    pub effects: Effects,
    /// What to record in the audit ring.
    pub audit: AuditEntry,
}

/// What a fresh command did to the access state.
struct Change {
    access: Option<AccessState>,
    extra: Option<Effect>,
}

impl Change {
    fn none() -> Change {
        Change {
            access: None,
            extra: None,
        }
    }
    fn to(access: AccessState) -> Change {
        Change {
            access: Some(access),
            extra: None,
        }
    }
}

/// Handles a verified command at device time `now`.
pub fn apply(state: &DeviceState, command: &Command, now: u64) -> Applied {
    let audit = |outcome| AuditEntry {
        at: now,
        actor: AuditActor::Cloud(command.actor.id.clone()),
        event: AuditEvent::Command {
            kind: command.body.kind(),
            seq: command.seq,
        },
        outcome,
    };
    let refuse_untouched = |reason| {
        let outcome = Outcome::Refused(reason);
        Applied {
            state: state.clone(),
            outcome,
            redelivered: false,
            effects: ack_only(Some(command.seq), outcome, false),
            audit: audit(outcome),
        }
    };

    if command.serial != state.identity.serial {
        return refuse_untouched(Reason::WrongDevice);
    }
    if let Some(outcome) = state.ledger.outcome_of(command.seq) {
        return Applied {
            state: state.clone(),
            outcome,
            redelivered: true,
            effects: ack_only(Some(command.seq), outcome, true),
            audit: audit(outcome),
        };
    }
    if command.seq <= state.ledger.last_seq {
        return refuse_untouched(Reason::ReplayedSequence);
    }

    let mut next = state.clone();
    next.clock.vouch(command.issued_at);
    let result = change_for(state, command, now);
    let outcome = Outcome::from_result(&result);
    next.ledger.record(command.seq, outcome);

    let mut effects = Effects::new();
    let read_only = matches!(
        command.body,
        CommandBody::Operation { .. }
            | CommandBody::RequestState
            | CommandBody::RequestAudit { .. }
    );
    // Read-only commands are not written to flash on their own: operations
    // can be frequent and flash wears. Their ledger entry reaches flash with
    // the next change; a crash before that can at worst re-answer one.
    if !read_only {
        push(&mut effects, Effect::Persist);
    }
    push(
        &mut effects,
        Effect::Ack(Ack {
            seq: Some(command.seq),
            outcome,
            redelivered: false,
        }),
    );
    if let Ok(change) = result {
        if let Some(access) = change.access {
            next.access = access;
            push(&mut effects, Effect::PublishState);
        }
        if let Some(extra) = change.extra {
            push(&mut effects, extra);
        }
    }
    Applied {
        state: next,
        outcome,
        redelivered: false,
        effects,
        audit: audit(outcome),
    }
}

fn ack_only(seq: Option<u64>, outcome: Outcome, redelivered: bool) -> Effects {
    let mut effects = Effects::new();
    push(
        &mut effects,
        Effect::Ack(Ack {
            seq,
            outcome,
            redelivered,
        }),
    );
    effects
}

fn push(effects: &mut Effects, effect: Effect) {
    // Effects has room for the most any step produces (see effects.rs).
    let _ = effects.push(effect);
}

/// May the actor perform this management action? Turns the decision's
/// generic denial into the more telling "only the owner may".
fn authorize(
    state: &DeviceState,
    command: &Command,
    action: Action,
    now: u64,
) -> Result<(), Reason> {
    match decide(
        state,
        &Principal::Cloud(command.actor.id.clone()),
        action,
        None,
        now,
    ) {
        Decision::Allow => Ok(()),
        Decision::Deny(Reason::ActionNotGranted)
            if matches!(
                action,
                Action::ShareManagement | Action::InstallerManagement
            ) =>
        {
            Err(Reason::NotOwner)
        }
        Decision::Deny(reason) => Err(reason),
    }
}

fn change_for(state: &DeviceState, command: &Command, now: u64) -> Result<Change, Reason> {
    let access = &state.access;
    if !access.platform_access {
        return Err(Reason::PlatformAccessOff);
    }
    if command.actor.region != state.identity.region {
        return Err(Reason::CrossRegion);
    }
    match &command.body {
        CommandBody::Bind { role, proof } => {
            if access.binding != Binding::Unbound {
                return Err(Reason::AlreadyBound);
            }
            let code = state.identity.verification_code.as_bytes();
            if !verify_bind_proof(code, &state.identity.serial, &command.actor.id, proof) {
                return Err(Reason::BadVerificationProof);
            }
            let mut next = access.clone();
            next.binding = match role {
                BindRole::Owner => Binding::Owned {
                    owner: command.actor.clone(),
                    installer: None,
                    installer_grants: InstallerGrants::default(),
                },
                BindRole::Installer => Binding::InstallerManaged {
                    installer: command.actor.clone(),
                },
            };
            Ok(Change::to(next))
        }
        CommandBody::Unbind => {
            authorize(state, command, Action::Unbind, now)?;
            let next =
                AccessState::reset(&state.identity).map_err(|_| Reason::InvalidDomainName)?;
            let domain_changed = next.domain != access.domain;
            Ok(Change {
                access: Some(next),
                extra: domain_changed.then_some(Effect::RegisterDomain),
            })
        }
        CommandBody::Share {
            account,
            permissions,
            channels,
            validity,
        } => {
            authorize(state, command, Action::ShareManagement, now)?;
            if account.region != state.identity.region {
                return Err(Reason::CrossRegion);
            }
            if access.holds_device(&account.id) {
                return Err(Reason::AlreadyAPrincipal);
            }
            check_share_within_owner_rights(state, *permissions, channels)?;
            if validity.is_some_and(|v| !v.is_well_formed()) {
                return Err(Reason::InvalidValidity);
            }
            let entry = ShareEntry {
                account: account.clone(),
                permissions: *permissions,
                channels: *channels,
                validity: *validity,
            };
            let mut next = access.clone();
            match next.share_index(&account.id) {
                Ok(i) => next.shares[i] = entry,
                Err(i) => next
                    .shares
                    .insert(i, entry)
                    .map_err(|_| Reason::CapacityExceeded)?,
            }
            Ok(Change::to(next))
        }
        CommandBody::Unshare { accounts } => {
            authorize(state, command, Action::ShareManagement, now)?;
            if accounts.is_empty() || accounts.iter().any(|a| access.share_of(a).is_none()) {
                return Err(Reason::UnknownShare);
            }
            let mut next = access.clone();
            next.shares.retain(|s| !accounts.contains(&s.account.id));
            Ok(Change::to(next))
        }
        CommandBody::UnshareAll => {
            authorize(state, command, Action::ShareManagement, now)?;
            let mut next = access.clone();
            next.shares.clear();
            Ok(Change::to(next))
        }
        CommandBody::LeaveShare => {
            let index = access
                .share_index(&command.actor.id)
                .map_err(|_| Reason::UnknownShare)?;
            if !access.cloud_service {
                return Err(Reason::CloudServiceDisabled);
            }
            let mut next = access.clone();
            next.shares.remove(index);
            Ok(Change::to(next))
        }
        CommandBody::Handover { installer_grants } => {
            let Binding::InstallerManaged { installer } = &access.binding else {
                return Err(Reason::NotInstallerManaged);
            };
            if installer.id == command.actor.id {
                return Err(Reason::AlreadyAPrincipal);
            }
            check_grants(installer_grants)?;
            let mut next = access.clone();
            next.binding = Binding::Owned {
                owner: command.actor.clone(),
                installer: Some(installer.clone()),
                installer_grants: *installer_grants,
            };
            // An installer that switched the service off before handover
            // and keeps no right to switch it would leave the owner locked
            // out for good: the owner receives a working device.
            if !installer_grants.may_disable_cloud {
                next.cloud_service = true;
            }
            Ok(Change::to(next))
        }
        CommandBody::GrantInstaller { grants } => {
            authorize(state, command, Action::InstallerManagement, now)?;
            check_grants(grants)?;
            let mut next = access.clone();
            match &mut next.binding {
                Binding::Owned {
                    installer: Some(_),
                    installer_grants,
                    ..
                } => *installer_grants = *grants,
                _ => return Err(Reason::NoInstaller),
            }
            Ok(Change::to(next))
        }
        CommandBody::RevokeInstaller => {
            authorize(state, command, Action::InstallerManagement, now)?;
            let mut next = access.clone();
            match &mut next.binding {
                Binding::Owned {
                    installer: installer @ Some(_),
                    installer_grants,
                    ..
                } => {
                    *installer = None;
                    *installer_grants = InstallerGrants::default();
                }
                _ => return Err(Reason::NoInstaller),
            }
            Ok(Change::to(next))
        }
        CommandBody::SetCloudService { enabled } => {
            authorize(state, command, Action::CloudServiceSwitch, now)?;
            if access.cloud_service == *enabled {
                return Ok(Change::none());
            }
            let mut next = access.clone();
            next.cloud_service = *enabled;
            Ok(Change::to(next))
        }
        CommandBody::SetDomain { name } => {
            authorize(state, command, Action::DomainManagement, now)?;
            let name = DomainName::new(name).map_err(|_| Reason::InvalidDomainName)?;
            if name == access.domain {
                return Ok(Change::none());
            }
            let mut next = access.clone();
            next.domain = name;
            Ok(Change {
                access: Some(next),
                extra: Some(Effect::RegisterDomain),
            })
        }
        CommandBody::RequestState => Ok(Change {
            access: None,
            extra: Some(Effect::PublishState),
        }),
        CommandBody::RequestAudit { max } => {
            authorize(state, command, Action::SiteInfoManagement, now)?;
            let max = (*max).min(MAX_AUDIT_REPLY as u16);
            Ok(Change {
                access: None,
                extra: Some(Effect::PublishAudit { max }),
            })
        }
        CommandBody::Operation { action, channel } => {
            match decide(
                state,
                &Principal::Cloud(command.actor.id.clone()),
                *action,
                *channel,
                now,
            ) {
                Decision::Allow => Ok(Change::none()),
                Decision::Deny(reason) => Err(reason),
            }
        }
    }
}

/// The owner holds every shareable permission on every channel the device
/// has; a share can hold no more.
fn check_share_within_owner_rights(
    state: &DeviceState,
    permissions: Permissions,
    channels: &ChannelScope,
) -> Result<(), Reason> {
    if !permissions.is_subset_of(Permissions::SHAREABLE) {
        return Err(Reason::ExceedsOwnerRights);
    }
    if let ChannelScope::Only(set) = channels {
        if set.max().is_some_and(|c| c > state.identity.channel_count) {
            return Err(Reason::ExceedsOwnerRights);
        }
    }
    Ok(())
}

fn check_grants(grants: &InstallerGrants) -> Result<(), Reason> {
    if grants.windows().any(|w| !w.is_well_formed()) {
        return Err(Reason::InvalidValidity);
    }
    Ok(())
}
