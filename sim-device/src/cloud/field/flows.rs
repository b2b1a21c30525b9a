//! The field-engineer commands for the product's other flows: accounts,
//! the installer's invitation and the owner's acceptance, the owner's
//! installer rights, deleting a device (by its owner, or from the owner's
//! account by the installer), leaving a share, the documents' domain-only
//! share and the device domain name.
//!
//! Who acts is taken from the device's retained state report (its owner,
//! its installer) or named on the command line and found in the cloud's
//! records ([`super::records`]) by email, phone number, user name or id,
//! as the app's account field does: "The account doesn't exist" for one
//! the cloud does not know.

use hc_protocol::{AccountId, InstallerGrants};

use super::super::driver::Cloud;
use super::super::model::{
    CloudError, CloudModel, Contact, InstallerPermissions, InstallerRights, Invitation,
    InvitationId, PerDevice, Planned, Resolution, SiteId,
};
use super::{installer, owner, reachable, serial_of, OperationError};

/// Registers an account in the cloud's records (`sim-device account
/// add`); its id: `id`, else the user name when it is a valid id, else a
/// numbered one.
pub fn add_account(
    cloud: &Cloud,
    user_name: &str,
    id: Option<&str>,
    email: Option<&str>,
    phone: Option<&str>,
    region: &str,
) -> Result<AccountId, CloudError> {
    let user_name = user_name.trim();
    let id = id.or_else(|| AccountId::new(user_name).is_ok().then_some(user_name));
    cloud.with_model(|m| m.register_account_as(id, user_name, email, phone, region))
}

/// An account the cloud knows, by what a user typed.
fn known(cloud: &Cloud, text: &str) -> Result<AccountId, CloudError> {
    cloud.with_model(|m| m.find_account(text).map(|a| a.id.clone()))
}

/// The owner shares only the device's domain name with `to` (the
/// documents' kind of share).
pub async fn share_domain(cloud: &Cloud, serial: &str, to: &str) -> Result<(), OperationError> {
    let (serial, owner) = owner(cloud, serial).await?;
    Ok(cloud.share_domain(&owner, &serial, to).await?)
}

/// The receiver `account` deletes the shared device from its side.
pub async fn leave(cloud: &Cloud, serial: &str, account: &str) -> Result<(), OperationError> {
    let serial = serial_of(serial)?;
    reachable(cloud, &serial).await?;
    let receiver = known(cloud, account)?;
    Ok(cloud
        .execute_plan(|m| m.plan_leave_share(&receiver, &serial))
        .await?)
}

/// Executes what `plan` makes of the device for its owner (per its
/// report).
async fn as_owner(
    cloud: &Cloud,
    serial: &str,
    plan: impl FnOnce(&mut CloudModel, &AccountId, &str) -> Result<Planned, CloudError>,
) -> Result<(), OperationError> {
    let (serial, owner) = owner(cloud, serial).await?;
    Ok(cloud.execute_plan(|m| plan(m, &owner, &serial)).await?)
}

/// The owner deletes the device from his account: it can be added again.
pub async fn delete_device(cloud: &Cloud, serial: &str) -> Result<(), OperationError> {
    as_owner(cloud, serial, |m, owner, s| m.plan_delete_device(owner, s)).await
}

/// The installer (holding "may disable cloud service") deletes the device
/// from the owner's account: it can be added again.
pub async fn remove_from_owner(cloud: &Cloud, serial: &str) -> Result<(), OperationError> {
    let installer = installer(cloud, serial).await?;
    Ok(cloud
        .execute_plan(|m| m.plan_remove_from_owner(&installer, serial))
        .await?)
}

/// The owner grants the installer `installer` names rights on the device,
/// also on one outside the installer's site.
pub async fn grant_installer(
    cloud: &Cloud,
    serial: &str,
    installer: &str,
    grants: InstallerGrants,
) -> Result<(), OperationError> {
    as_owner(cloud, serial, |m, owner, s| {
        m.plan_authorize_installer(owner, s, installer, grants)
    })
    .await
}

/// The owner takes every right from the installer.
pub async fn revoke_installer(cloud: &Cloud, serial: &str) -> Result<(), OperationError> {
    as_owner(cloud, serial, |m, owner, s| {
        m.plan_revoke_installer(owner, s)
    })
    .await
}

/// The installer's rights as the owner sees them; `None` without one.
pub async fn installer_rights(
    cloud: &Cloud,
    serial: &str,
) -> Result<Option<InstallerRights>, OperationError> {
    let (serial, owner) = owner(cloud, serial).await?;
    Ok(cloud.with_model(|m| m.installer_rights(&owner, &serial))?)
}

/// The owner changes the device domain name; done when the device
/// registered it with this cloud.
pub async fn set_domain(cloud: &Cloud, serial: &str, name: &str) -> Result<(), OperationError> {
    let (serial, actor) = owner(cloud, serial).await?;
    cloud.set_domain(&actor, &serial, name).await?;
    if cloud
        .wait_registration(&serial, name, cloud.ack_timeout())
        .await
        .is_none()
    {
        return Err(CloudError::NetworkBusy {
            serial: serial.to_string(),
            waited_ms: cloud.ack_timeout().as_millis() as u64,
        }
        .into());
    }
    Ok(())
}

/// Resolves a device domain name for `account`.
pub fn resolve_domain(cloud: &Cloud, account: &str, name: &str) -> Result<Resolution, CloudError> {
    let requester = known(cloud, account)?;
    cloud.resolve_domain(&requester, name)
}

/// Runs `act` on the installer's open site (the one `bind --installer`
/// added devices to), at cloud time now.
fn on_open_site<R>(
    cloud: &Cloud,
    installer: &str,
    act: impl FnOnce(&mut CloudModel, &AccountId, SiteId, u64) -> Result<R, CloudError>,
) -> Result<R, CloudError> {
    let installer = known(cloud, installer)?;
    let now = cloud.now();
    cloud.with_model(|m| {
        let site = m.open_site_of(&installer).ok_or(CloudError::SiteNotFound)?;
        act(m, &installer, site, now)
    })
}

/// The installer invites the site owner to its open site.
pub fn invite(
    cloud: &Cloud,
    installer: &str,
    contact: Contact,
    permissions: InstallerPermissions,
    remarks: &str,
) -> Result<InvitationId, CloudError> {
    on_open_site(cloud, installer, |m, installer, site, now| {
        m.invite(installer, site, contact, permissions, remarks, now)
    })
}

/// The installer sends the current invitation of its open site again.
pub fn resend(cloud: &Cloud, installer: &str) -> Result<InvitationId, CloudError> {
    on_open_site(cloud, installer, |m, installer, site, now| {
        m.resend_invitation(installer, site, now)
    })
}

/// The invitations waiting for `account`, with the installer's remarks.
pub fn invitations(cloud: &Cloud, account: &str) -> Result<Vec<Invitation>, CloudError> {
    let account = known(cloud, account)?;
    Ok(cloud.with_model(|m| m.invitations_for(&account).into_iter().cloned().collect()))
}

/// `account` accepts `invitation`, or the only one waiting for it; each
/// device of the site gets its `Handover` (one offline keeps it pending,
/// sent again by a later run when the device is back).
pub async fn accept(
    cloud: &Cloud,
    account: &str,
    invitation: Option<InvitationId>,
) -> Result<PerDevice<()>, CloudError> {
    let id = match invitation {
        Some(id) => id,
        None => match invitations(cloud, account)?.as_slice() {
            [one] => one.id,
            [] => return Err(CloudError::UnknownInvitation),
            _ => {
                return Err(CloudError::invalid(
                    "invitation",
                    "several are waiting: name one with --invitation N",
                ))
            }
        },
    };
    let account = known(cloud, account)?;
    cloud.accept_invitation(id, &account).await
}
