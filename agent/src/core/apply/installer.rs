//! The owner's and the handover's changes to the installer: the handover
//! itself, granting, authorizing (naming an installer, also on a device
//! that was never in its site) and revoking.

use hc_protocol::messages::Binding;
use hc_protocol::{AccountRef, InstallerGrants, Reason};

use super::changes::Change;
use crate::core::state::{AccessState, DeviceState};

pub(super) fn handover(
    access: &AccessState,
    actor: &AccountRef,
    installer_grants: &InstallerGrants,
) -> Result<Change, Reason> {
    let Binding::InstallerManaged { installer } = &access.binding else {
        return Err(Reason::NotInstallerManaged);
    };
    if installer.id == actor.id {
        return Err(Reason::AlreadyAPrincipal);
    }
    check_grants(installer_grants)?;
    let mut next = access.clone();
    next.binding = Binding::Owned {
        owner: actor.clone(),
        installer: Some(installer.clone()),
        installer_grants: *installer_grants,
    };
    // An installer that switched the service off before handover and keeps
    // no right to switch it would leave the owner locked out for good: the
    // owner receives a working device.
    if !installer_grants.may_disable_cloud {
        next.cloud_service = true;
    }
    Ok(Change::to(next))
}

pub(super) fn grant_installer(
    access: &AccessState,
    grants: &InstallerGrants,
) -> Result<Change, Reason> {
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

pub(super) fn revoke_installer(access: &AccessState) -> Result<Change, Reason> {
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

/// The owner names `installer` and sets its rights. The same installer's
/// grants are replaced; another installer must be revoked first.
pub(super) fn authorize_installer(
    state: &DeviceState,
    installer: &AccountRef,
    grants: &InstallerGrants,
) -> Result<Change, Reason> {
    if installer.region != state.identity.region {
        return Err(Reason::CrossRegion);
    }
    let access = &state.access;
    let owner_or_shared = access.owner().is_some_and(|o| o.id == installer.id)
        || access.share_of(&installer.id).is_some();
    if owner_or_shared {
        return Err(Reason::AlreadyAPrincipal);
    }
    if access.installer().is_some_and(|i| i.id != installer.id) {
        return Err(Reason::OtherInstaller);
    }
    check_grants(grants)?;
    let mut next = access.clone();
    match &mut next.binding {
        Binding::Owned {
            installer: slot,
            installer_grants,
            ..
        } => {
            *slot = Some(installer.clone());
            *installer_grants = *grants;
        }
        _ => return Err(Reason::NotBound),
    }
    Ok(Change::to(next))
}

pub(super) fn check_grants(grants: &InstallerGrants) -> Result<(), Reason> {
    if grants.windows().any(|w| !w.is_well_formed()) {
        return Err(Reason::InvalidValidity);
    }
    Ok(())
}
