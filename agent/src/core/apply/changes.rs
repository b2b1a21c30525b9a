//! What each fresh command does to the access state, one function per
//! command, and who may ask for it. Nothing here looks at the ledger or
//! the clock floor; `apply` has done that.

use hc_protocol::access::{Action, Decision, Principal};
use hc_protocol::command::{verify_bind_proof, BindRole};
use hc_protocol::envelope::CommandKeys;
use hc_protocol::limits::MAX_AUDIT_REPLY;
use hc_protocol::messages::Binding;
use hc_protocol::{
    AccountId, AccountRef, ChannelScope, Command, CommandBody, DomainName, InstallerGrants,
    Permissions, Reason, ShareEntry, Validity,
};

use super::{installer, keys, SignedWith};
use crate::core::decide::decide;
use crate::core::effects::Effect;
use crate::core::state::{AccessState, DeviceState};

/// What a fresh command did to the access state or the key ring.
pub(super) struct Change {
    pub(super) access: Option<AccessState>,
    /// The device's new command key ring (`DeviceState::command_keys`).
    pub(super) keys: Option<CommandKeys>,
    pub(super) extra: Option<Effect>,
}

impl Change {
    pub(super) fn none() -> Change {
        Change {
            access: None,
            keys: None,
            extra: None,
        }
    }

    pub(super) fn to(access: AccessState) -> Change {
        Change {
            access: Some(access),
            ..Change::none()
        }
    }

    /// The key ring becomes `keys`.
    pub(super) fn keys(keys: CommandKeys) -> Change {
        Change {
            keys: Some(keys),
            ..Change::none()
        }
    }

    fn only(extra: Effect) -> Change {
        Change {
            extra: Some(extra),
            ..Change::none()
        }
    }
}

/// Why no command of this actor can be taken now, whatever it asks for:
/// platform access off, another region, or (for all but a restore or a
/// state request) a state fallen behind the cloud's.
fn refused_outright(state: &DeviceState, command: &Command) -> Result<(), Reason> {
    if !state.access.platform_access {
        return Err(Reason::PlatformAccessOff);
    }
    if command.actor.region != state.identity.region {
        return Err(Reason::CrossRegion);
    }
    // A restore is what clears `behind`; the key ring and the certificate
    // are not access state,
    // and the cloud may have to bring it up to date before it can sign a
    // restore the way it means to (SPEC §6.2, §9.3).
    let restores_or_reads = matches!(
        command.body,
        CommandBody::RestoreState { .. }
            | CommandBody::RequestState
            | CommandBody::AddCommandKey { .. }
            | CommandBody::RemoveCommandKey { .. }
            | CommandBody::InstallCertificate { .. }
    );
    if state.behind && !restores_or_reads {
        return Err(Reason::StateBehind);
    }
    Ok(())
}

/// The change a fresh command asks for, or why it is refused.
pub(super) fn change_for(
    state: &DeviceState,
    command: &Command,
    signed: Option<SignedWith<'_>>,
    now: u64,
) -> Result<Change, Reason> {
    refused_outright(state, command)?;
    let may = |action| authorize(state, command, action, now);
    let access = &state.access;
    match &command.body {
        CommandBody::Bind { role, proof } => bind(state, &command.actor, *role, proof),
        CommandBody::Unbind => may(Action::Unbind).and_then(|()| unbind(state)),
        CommandBody::Share {
            account,
            permissions,
            channels,
            validity,
        } => may(Action::ShareManagement)
            .and_then(|()| share(state, account, *permissions, channels, *validity)),
        CommandBody::Unshare { accounts } => {
            may(Action::ShareManagement).and_then(|()| unshare(access, accounts))
        }
        CommandBody::UnshareAll => may(Action::ShareManagement).map(|()| {
            let mut next = access.clone();
            next.shares.clear();
            Change::to(next)
        }),
        CommandBody::LeaveShare => leave_share(access, &command.actor.id),
        CommandBody::Handover { installer_grants } => {
            installer::handover(access, &command.actor, installer_grants)
        }
        CommandBody::GrantInstaller { grants } => may(Action::InstallerManagement)
            .and_then(|()| installer::grant_installer(access, grants)),
        CommandBody::RevokeInstaller => {
            may(Action::InstallerManagement).and_then(|()| installer::revoke_installer(access))
        }
        CommandBody::AuthorizeInstaller { installer, grants } => may(Action::InstallerManagement)
            .and_then(|()| installer::authorize_installer(state, installer, grants)),
        CommandBody::ShareDomain { account } => {
            may(Action::ShareManagement).and_then(|()| share_domain(state, account))
        }
        CommandBody::SetCloudService { enabled } => {
            may(Action::CloudServiceSwitch).map(|()| set_cloud_service(access, *enabled))
        }
        CommandBody::SetDomain { name } => {
            may(Action::DomainManagement).and_then(|()| set_domain(access, name))
        }
        CommandBody::RequestState => Ok(Change::only(Effect::PublishState)),
        CommandBody::RequestAudit { max } => may(Action::SiteInfoManagement).map(|()| {
            Change::only(Effect::PublishAudit {
                max: (*max).min(MAX_AUDIT_REPLY as u16),
            })
        }),
        CommandBody::RestoreState {
            binding,
            shares,
            cloud_service,
            domain,
        } => super::restore::restore(
            state,
            &command.actor,
            binding,
            shares,
            *cloud_service,
            domain,
        ),
        CommandBody::AddCommandKey { key_id, public_key } => {
            keys::add(state, &command.actor, signed, *key_id, public_key)
        }
        CommandBody::RemoveCommandKey { key_id } => {
            keys::remove(state, &command.actor, signed, *key_id)
        }
        // The certificate itself is checked and stored by the caller
        // (`Applied::certificate`); it is the cloud's own answer to the
        // device's request, so no account's rights come into it, only a
        // signature by a key the device holds.
        CommandBody::InstallCertificate { .. } => match signed {
            Some(_) => Ok(Change::none()),
            None => Err(Reason::UnknownKeyId),
        },
        // An operation changes nothing: it is the decision, audited.
        CommandBody::Operation { action, channel } => {
            match decide(state, &actor(command), *action, *channel, now) {
                Decision::Allow => Ok(Change::none()),
                Decision::Deny(reason) => Err(reason),
            }
        }
    }
}

fn actor(command: &Command) -> Principal {
    Principal::Cloud(command.actor.id.clone())
}

/// May the actor perform this management action? Turns the decision's
/// generic denial into the more telling "only the owner may".
fn authorize(
    state: &DeviceState,
    command: &Command,
    action: Action,
    now: u64,
) -> Result<(), Reason> {
    match decide(state, &actor(command), action, None, now) {
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

fn bind(
    state: &DeviceState,
    actor: &AccountRef,
    role: BindRole,
    proof: &[u8; 32],
) -> Result<Change, Reason> {
    if state.access.binding != Binding::Unbound {
        return Err(Reason::AlreadyBound);
    }
    let code = state.identity.verification_code.as_bytes();
    if !verify_bind_proof(code, &state.identity.serial, &actor.id, proof) {
        return Err(Reason::BadVerificationProof);
    }
    let mut next = state.access.clone();
    next.binding = match role {
        BindRole::Owner => Binding::Owned {
            owner: actor.clone(),
            installer: None,
            installer_grants: InstallerGrants::default(),
        },
        BindRole::Installer => Binding::InstallerManaged {
            installer: actor.clone(),
        },
    };
    Ok(Change::to(next))
}

fn unbind(state: &DeviceState) -> Result<Change, Reason> {
    let next = AccessState::reset(&state.identity).map_err(|_| Reason::InvalidDomainName)?;
    let domain_changed = next.domain != state.access.domain;
    Ok(Change {
        access: Some(next),
        keys: None,
        extra: domain_changed.then_some(Effect::RegisterDomain),
    })
}

fn share(
    state: &DeviceState,
    account: &AccountRef,
    permissions: Permissions,
    channels: &ChannelScope,
    validity: Option<Validity>,
) -> Result<Change, Reason> {
    check_share_receiver(state, account)?;
    let empty_scope = matches!(channels, ChannelScope::Only(set) if set.is_empty());
    if permissions == Permissions::NONE || empty_scope {
        return Err(Reason::EmptyShare);
    }
    check_share_within_owner_rights(state, permissions, channels)?;
    if validity.is_some_and(|v| !v.is_well_formed()) {
        return Err(Reason::InvalidValidity);
    }
    put_share(
        &state.access,
        ShareEntry {
            account: account.clone(),
            permissions,
            channels: *channels,
            validity,
        },
    )
}

/// The documents' own share: the domain name and who shared it, no
/// permission (the receiver uses the device's own accounts).
fn share_domain(state: &DeviceState, account: &AccountRef) -> Result<Change, Reason> {
    check_share_receiver(state, account)?;
    put_share(
        &state.access,
        ShareEntry {
            account: account.clone(),
            permissions: Permissions::NONE,
            channels: ChannelScope::All,
            validity: None,
        },
    )
}

/// A share goes to an account of the device's region that does not
/// already hold the device.
fn check_share_receiver(state: &DeviceState, account: &AccountRef) -> Result<(), Reason> {
    if account.region != state.identity.region {
        return Err(Reason::CrossRegion);
    }
    if state.access.holds_device(&account.id) {
        return Err(Reason::AlreadyAPrincipal);
    }
    Ok(())
}

/// Creates or replaces the account's share.
fn put_share(access: &AccessState, entry: ShareEntry) -> Result<Change, Reason> {
    let account = entry.account.clone();
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

fn unshare(access: &AccessState, accounts: &[AccountId]) -> Result<Change, Reason> {
    if accounts.is_empty() || accounts.iter().any(|a| access.share_of(a).is_none()) {
        return Err(Reason::UnknownShare);
    }
    let mut next = access.clone();
    next.shares.retain(|s| !accounts.contains(&s.account.id));
    Ok(Change::to(next))
}

fn leave_share(access: &AccessState, actor: &AccountId) -> Result<Change, Reason> {
    let index = access
        .share_index(actor)
        .map_err(|_| Reason::UnknownShare)?;
    if !access.cloud_service {
        return Err(Reason::CloudServiceDisabled);
    }
    let mut next = access.clone();
    next.shares.remove(index);
    Ok(Change::to(next))
}

fn set_cloud_service(access: &AccessState, enabled: bool) -> Change {
    if access.cloud_service == enabled {
        return Change::none();
    }
    let mut next = access.clone();
    next.cloud_service = enabled;
    Change::to(next)
}

fn set_domain(access: &AccessState, name: &str) -> Result<Change, Reason> {
    let name = DomainName::new(name).map_err(|_| Reason::InvalidDomainName)?;
    if name == access.domain {
        return Ok(Change::none());
    }
    let mut next = access.clone();
    next.domain = name;
    Ok(Change {
        access: Some(next),
        keys: None,
        extra: Some(Effect::RegisterDomain),
    })
}

/// The owner holds every shareable permission on every channel the device
/// has; a share can hold no more.
pub(super) fn check_share_within_owner_rights(
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
