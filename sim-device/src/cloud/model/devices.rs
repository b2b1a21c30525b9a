//! Devices the cloud knows (from the factory and from their state
//! reports), binding with the verification code, and who holds a device
//! per its last report.

use hc_protocol::command::bind_proof;
use hc_protocol::messages::{Binding, StateReport};
use hc_protocol::{AccountId, AccountRef, BindRole, CommandBody, Region, Serial};
use serde::{Deserialize, Serialize};

use super::accounts::Account;
use super::error::require_same_region;
use super::sites::SiteId;
use super::{CloudError, CloudModel, Commit, Planned};

/// A device the cloud knows: from the factory (serial, verification code,
/// region) and from what it reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceRecord {
    pub serial: Serial,
    /// The code printed on the label, if the cloud has it (a device first
    /// heard of through its state report has none: the device checks the
    /// bind proof itself).
    pub verification_code: Option<String>,
    pub region: Region,
    pub site: Option<SiteId>,
    /// The device's last retained state report: the truth about owner,
    /// installer, shares, switches and domain.
    pub report: Option<StateReport>,
}

impl CloudModel {
    /// A device the cloud knows from the factory.
    pub fn register_device(
        &mut self,
        serial: &str,
        verification_code: &str,
        region: &str,
    ) -> Result<Serial, CloudError> {
        let serial = Serial::new(serial).map_err(|e| CloudError::invalid("serial", e))?;
        let region = Region::new(region).map_err(|e| CloudError::invalid("region", e))?;
        let record = self
            .devices
            .entry(serial.clone())
            .or_insert_with(|| DeviceRecord {
                serial: serial.clone(),
                verification_code: None,
                region: region.clone(),
                site: None,
                report: None,
            });
        record.verification_code = Some(verification_code.to_owned());
        record.region = region;
        Ok(serial)
    }

    pub fn device(&self, serial: &str) -> Result<&DeviceRecord, CloudError> {
        Serial::new(serial)
            .ok()
            .and_then(|s| self.devices.get(&s))
            .ok_or_else(|| CloudError::DeviceNotFound(serial.to_owned()))
    }

    pub fn devices(&self) -> impl Iterator<Item = &DeviceRecord> {
        self.devices.values()
    }

    /// A retained state report arrived: it becomes the cloud's view of the
    /// device. A device not known yet is added (without a verification
    /// code). A report older than the one held (lower `last_seq`), or one
    /// that says `behind` while the held one does not, is ignored.
    pub fn on_state_report(&mut self, report: StateReport) {
        let record = self
            .devices
            .entry(report.serial.clone())
            .or_insert_with(|| DeviceRecord {
                serial: report.serial.clone(),
                verification_code: None,
                region: report.region.clone(),
                site: None,
                report: None,
            });
        // A report that says `behind` does not replace an up-to-date one:
        // the cloud's record stays the truth and the device is restored
        // from it.
        if record
            .report
            .as_ref()
            .is_some_and(|old| old.last_seq > report.last_seq || (report.behind && !old.behind))
        {
            return;
        }
        record.region = report.region.clone();
        record.report = Some(report);
    }

    /// The device's last report.
    pub fn report(&self, serial: &str) -> Option<&StateReport> {
        self.device(serial).ok()?.report.as_ref()
    }

    pub(super) fn bindable(
        &self,
        account: &Account,
        serial: &str,
        entered_code: &str,
    ) -> Result<&DeviceRecord, CloudError> {
        let device = self.device(serial)?;
        if let Some(code) = &device.verification_code {
            if code != entered_code {
                return Err(CloudError::WrongVerificationCode);
            }
        }
        require_same_region(&account.region, &device.region)?;
        let bound = device
            .report
            .as_ref()
            .is_some_and(|r| r.binding != Binding::Unbound);
        if device.site.is_some() || bound {
            return Err(CloudError::DeviceAlreadyAdded);
        }
        Ok(device)
    }

    /// An end user adds a device to its own account directly ("one device
    /// can only be added into one account").
    pub fn plan_bind_owner(
        &self,
        owner: &AccountId,
        serial: &str,
        entered_code: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(owner)?;
        let device = self.bindable(account, serial, entered_code)?;
        let proof = bind_proof(entered_code.as_bytes(), &device.serial, &account.id);
        Ok(Planned::new(
            device.serial.clone(),
            account.account_ref(),
            CommandBody::Bind {
                role: BindRole::Owner,
                proof,
            },
        ))
    }

    /// The owner deletes the device from his account: it is unbound and
    /// can be added again (by him or anyone with its verification code).
    pub fn plan_delete_device(
        &self,
        owner: &AccountId,
        serial: &str,
    ) -> Result<Planned, CloudError> {
        let (actor, device) = self.authorized(owner, || self.require_owner(owner, serial))?;
        if self.owner_of(serial).as_ref() != Some(owner) {
            return Err(CloudError::NotYourDevice);
        }
        Ok(Planned {
            serial: device.serial.clone(),
            actor,
            body: CommandBody::Unbind,
            on_accept: Commit::Release {
                serial: device.serial.clone(),
            },
        })
    }

    /// The device's owner per its report (or the site's, before any report).
    pub fn owner_of(&self, serial: &str) -> Option<AccountId> {
        let device = self.device(serial).ok()?;
        match &device.report {
            Some(report) => match &report.binding {
                Binding::Owned { owner, .. } => Some(owner.id.clone()),
                _ => None,
            },
            None => device
                .site
                .and_then(|s| self.sites.get(&s))
                .and_then(|s| s.owner.clone()),
        }
    }

    /// `actor`'s account (it must exist) and the device `may` allows it
    /// to act on.
    pub(super) fn authorized<'a>(
        &'a self,
        actor: &AccountId,
        may: impl FnOnce() -> Result<&'a DeviceRecord, CloudError>,
    ) -> Result<(AccountRef, &'a DeviceRecord), CloudError> {
        let account = self.account(actor)?.account_ref();
        Ok((account, may()?))
    }

    pub(super) fn require_owner(
        &self,
        actor: &AccountId,
        serial: &str,
    ) -> Result<&DeviceRecord, CloudError> {
        let device = self.device(serial)?;
        let known = device.report.is_some() || device.site.is_some();
        if known && self.owner_of(serial).as_ref() != Some(actor) {
            return Err(CloudError::NotOwner);
        }
        Ok(device)
    }
}
