//! The owner and the installer's rights on one device: granting them
//! (also on a device the owner added himself, outside the installer's
//! site: "he/she can authorize the permissions about these devices to the
//! Installer"), seeing them and revoking them.

use hc_protocol::messages::Binding;
use hc_protocol::{AccountId, AccountRef, CommandBody, InstallerGrants};

use super::{CloudError, CloudModel, Planned};

/// The installer's rights on a device, as its owner sees them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallerRights {
    pub installer: AccountRef,
    /// The installer's user name, when the cloud knows it.
    pub user_name: Option<String>,
    pub grants: InstallerGrants,
}

impl CloudModel {
    /// The owner grants `installer` (found by email, phone, user name or
    /// id) `grants` on the device, replacing what it had.
    pub fn plan_authorize_installer(
        &self,
        owner: &AccountId,
        serial: &str,
        installer: &str,
        grants: InstallerGrants,
    ) -> Result<Planned, CloudError> {
        let (actor, device) = self.authorized(owner, || self.require_owner(owner, serial))?;
        let target = self.find_account(installer)?;
        if target.region != device.region {
            return Err(CloudError::CrossRegion);
        }
        if &target.id == owner {
            return Err(CloudError::invalid(
                "installer",
                "the owner cannot be the installer of his own device",
            ));
        }
        if grants.windows().any(|w| !w.is_well_formed()) {
            return Err(CloudError::InvalidValidity);
        }
        Ok(Planned::new(
            device.serial.clone(),
            actor,
            CommandBody::AuthorizeInstaller {
                installer: target.account_ref(),
                grants,
            },
        ))
    }

    /// The owner takes every right from the installer.
    pub fn plan_revoke_installer(
        &self,
        owner: &AccountId,
        serial: &str,
    ) -> Result<Planned, CloudError> {
        let (actor, device) = self.authorized(owner, || self.require_owner(owner, serial))?;
        if self.installer_rights(owner, serial)?.is_none() && device.report.is_some() {
            return Err(CloudError::NoInstallerRights);
        }
        Ok(Planned::new(
            device.serial.clone(),
            actor,
            CommandBody::RevokeInstaller,
        ))
    }

    /// What the installer may do on the device, per its last report;
    /// `None` without an installer.
    pub fn installer_rights(
        &self,
        owner: &AccountId,
        serial: &str,
    ) -> Result<Option<InstallerRights>, CloudError> {
        let device = self.require_owner(owner, serial)?;
        let Some(Binding::Owned {
            installer: Some(installer),
            installer_grants,
            ..
        }) = device.report.as_ref().map(|r| &r.binding)
        else {
            return Ok(None);
        };
        Ok(Some(InstallerRights {
            installer: installer.clone(),
            user_name: self
                .accounts
                .get(&installer.id)
                .map(|a| a.user_name.clone()),
            grants: *installer_grants,
        }))
    }
}
