//! The cloud service switch: who may turn a device's cloud service off
//! (the site's installer before handover; after it, only with "Allow me
//! to disable the cloud service"), for one device or a whole site, and
//! removing the device from the owner's account.

use hc_protocol::messages::Binding;
use hc_protocol::{AccountId, CommandBody};

use super::devices::DeviceRecord;
use super::sites::SiteId;
use super::{CloudError, CloudModel, PerDevice, Planned};

impl CloudModel {
    /// Checks that `installer` may switch the cloud service of `serial`:
    /// the site's installer before handover, or after handover with
    /// "Allow me to disable the cloud service".
    fn require_service_switch(
        &self,
        installer: &AccountId,
        serial: &str,
    ) -> Result<&DeviceRecord, CloudError> {
        let device = self.device(serial)?;
        let allowed = match device.report.as_ref().map(|r| &r.binding) {
            Some(Binding::InstallerManaged { installer: i }) => {
                if &i.id == installer {
                    Ok(())
                } else {
                    Err(CloudError::NotSiteInstaller)
                }
            }
            Some(Binding::Owned {
                installer: Some(i),
                installer_grants,
                ..
            }) if &i.id == installer => {
                if installer_grants.may_disable_cloud {
                    Ok(())
                } else {
                    Err(CloudError::NotAllowedToDisableCloud)
                }
            }
            Some(_) => Err(CloudError::NotSiteInstaller),
            None => {
                let site = device
                    .site
                    .and_then(|s| self.sites.get(&s))
                    .ok_or(CloudError::NotSiteInstaller)?;
                if &site.installer != installer {
                    Err(CloudError::NotSiteInstaller)
                } else if site
                    .accepted
                    .as_ref()
                    .is_some_and(|p| !p.allow_disable_cloud)
                {
                    Err(CloudError::NotAllowedToDisableCloud)
                } else {
                    Ok(())
                }
            }
        };
        allowed.map(|()| device)
    }

    /// The installer switches the cloud service of one device.
    pub fn plan_set_cloud_service(
        &self,
        installer: &AccountId,
        serial: &str,
        enabled: bool,
    ) -> Result<Planned, CloudError> {
        self.plan_as_switcher(installer, serial, CommandBody::SetCloudService { enabled })
    }

    /// The installer switches the cloud service of every device of a site:
    /// one plan (or refusal) per device.
    pub fn plan_set_cloud_service_for_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        enabled: bool,
    ) -> Result<PerDevice<Planned>, CloudError> {
        let site_record = self.site(site)?;
        if &site_record.installer != installer {
            return Err(CloudError::NotSiteInstaller);
        }
        Ok(site_record
            .devices
            .iter()
            .map(|serial| {
                (
                    serial.clone(),
                    self.plan_set_cloud_service(installer, serial, enabled),
                )
            })
            .collect())
    }

    /// An installer with "Allow me to disable the cloud service" deletes
    /// the device from the owner's account without the owner.
    pub fn plan_remove_from_owner(
        &self,
        installer: &AccountId,
        serial: &str,
    ) -> Result<Planned, CloudError> {
        self.plan_as_switcher(installer, serial, CommandBody::Unbind)
    }

    /// `body` from `installer`, if it may switch the device's cloud
    /// service.
    fn plan_as_switcher(
        &self,
        installer: &AccountId,
        serial: &str,
        body: CommandBody,
    ) -> Result<Planned, CloudError> {
        let (actor, device) =
            self.authorized(installer, || self.require_service_switch(installer, serial))?;
        Ok(Planned::new(device.serial.clone(), actor, body))
    }
}
