//! The access decision: may principal P do action A on channel C now?
//! Deny by default; every denial carries one reason. No allocation: the
//! decision only borrows the state.

use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::{InstallerGrants, Permissions, Reason, ShareEntry, Validity};

use super::state::DeviceState;

/// What a cloud account is to this device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role<'a> {
    /// The account the device is bound to: everything through the cloud
    /// but the installer's and the device's own switches.
    Owner,
    /// The installer before handover: manages the site.
    SiteInstaller,
    /// The installer after handover: only what the owner accepted.
    HandedOverInstaller(&'a InstallerGrants),
    /// An account the owner shared the device with: exactly what its share
    /// grants, on its channels, inside its validity window.
    Shared(&'a ShareEntry),
}

/// The role of a cloud account, or why it has none.
pub fn role_of<'a>(state: &'a DeviceState, account: &str) -> Result<Role<'a>, Reason> {
    use hc_protocol::messages::Binding;
    let access = &state.access;
    match &access.binding {
        Binding::Unbound => Err(Reason::NotBound),
        Binding::InstallerManaged { installer } if installer.id.as_str() == account => {
            Ok(Role::SiteInstaller)
        }
        Binding::InstallerManaged { .. } => Err(Reason::NotAPrincipal),
        Binding::Owned {
            owner,
            installer,
            installer_grants,
        } => {
            if owner.id.as_str() == account {
                Ok(Role::Owner)
            } else if installer.as_ref().is_some_and(|i| i.id.as_str() == account) {
                Ok(Role::HandedOverInstaller(installer_grants))
            } else {
                access
                    .share_of(account)
                    .map(Role::Shared)
                    .ok_or(Reason::NotAPrincipal)
            }
        }
    }
}

/// What the owner may do through the cloud: everything but the installer's
/// switch and the device-local switch.
const OWNER_ACTIONS: Permissions = Permissions::from_bits(
    (1 << Action::ALL.len())
        - 1
        - Action::CloudServiceSwitch.bit()
        - Action::PlatformAccessSwitch.bit(),
)
.expect("owner actions are valid bits");

/// What the installer may do before handover: manage the site, but not
/// decide who else holds it.
const SITE_INSTALLER_ACTIONS: Permissions = Permissions::from_bits(
    (1 << Action::ALL.len())
        - 1
        - Action::ShareManagement.bit()
        - Action::InstallerManagement.bit()
        - Action::PlatformAccessSwitch.bit(),
)
.expect("site installer actions are valid bits");

/// May `principal` do `action` on `channel` at device time `now`?
pub fn decide(
    state: &DeviceState,
    principal: &Principal,
    action: Action,
    channel: Option<u16>,
    now: u64,
) -> Decision {
    let verdict = match principal {
        Principal::Local(level) => decide_local(state, *level, action, channel),
        Principal::Cloud(account) => decide_cloud(state, account.as_str(), action, channel, now),
    };
    match verdict {
        Ok(()) => Decision::Allow,
        Err(reason) => Decision::Deny(reason),
    }
}

fn decide_local(
    state: &DeviceState,
    level: LocalLevel,
    action: Action,
    channel: Option<u16>,
) -> Result<(), Reason> {
    granted(level.permissions(), action)?;
    check_channel_exists(state, action, channel)
}

fn decide_cloud(
    state: &DeviceState,
    account: &str,
    action: Action,
    channel: Option<u16>,
    now: u64,
) -> Result<(), Reason> {
    if !state.access.platform_access {
        return Err(Reason::PlatformAccessOff);
    }
    if state.behind {
        return Err(Reason::StateBehind);
    }
    match role_of(state, account)? {
        Role::Owner => {
            cloud_service_on(state)?;
            granted(OWNER_ACTIONS, action)?;
            check_channel_exists(state, action, channel)
        }
        Role::SiteInstaller => {
            granted(SITE_INSTALLER_ACTIONS, action)?;
            check_channel_exists(state, action, channel)
        }
        Role::HandedOverInstaller(grants) => {
            let grant = grants.grant_for(action).ok_or(match action {
                Action::CloudServiceSwitch | Action::Unbind => Reason::NotAllowedToDisableCloud,
                _ => Reason::ActionNotGranted,
            })?;
            check_channel_exists(state, action, channel)?;
            state.clock.check_window(grant.validity, now)
        }
        Role::Shared(share) => {
            cloud_service_on(state)?;
            granted(share.permissions, action)?;
            check_channel_exists(state, action, channel)?;
            if let Some(c) = channel.filter(|_| action.is_channel_scoped()) {
                if !share.channels.contains(c) {
                    return Err(Reason::ChannelOutOfScope);
                }
            }
            state.clock.check_window(share.validity, now)
        }
    }
}

fn cloud_service_on(state: &DeviceState) -> Result<(), Reason> {
    if state.access.cloud_service {
        Ok(())
    } else {
        Err(Reason::CloudServiceDisabled)
    }
}

fn granted(permissions: Permissions, action: Action) -> Result<(), Reason> {
    if permissions.contains(action) {
        Ok(())
    } else {
        Err(Reason::ActionNotGranted)
    }
}

/// Channel-scoped actions need a channel the device has; other actions
/// ignore the channel.
fn check_channel_exists(
    state: &DeviceState,
    action: Action,
    channel: Option<u16>,
) -> Result<(), Reason> {
    if !action.is_channel_scoped() {
        return Ok(());
    }
    match channel {
        Some(c) if c >= 1 && c <= state.identity.channel_count => Ok(()),
        _ => Err(Reason::NoSuchChannel),
    }
}

/// The validity window that bounds `principal`'s right to `action`, if
/// one does: a share's window, or the installer's grant for that action.
/// The decision can turn from allow to deny by time alone only at its end.
pub(super) fn window_of(
    state: &DeviceState,
    principal: &Principal,
    action: Action,
) -> Option<Validity> {
    let Principal::Cloud(account) = principal else {
        return None;
    };
    match role_of(state, account.as_str()).ok()? {
        Role::HandedOverInstaller(grants) => grants.grant_for(action)?.validity,
        Role::Shared(share) => share.validity,
        Role::Owner | Role::SiteInstaller => None,
    }
}
