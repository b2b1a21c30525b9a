//! Sharing a device: sharing with an account found by email, phone or
//! user name, the owner's list, what a receiver sees, and deleting one,
//! several or all shares, or leaving one from the receiver's side.

use hc_protocol::limits::MAX_SHARES;
use hc_protocol::messages::{Binding, StateReport};
use hc_protocol::{
    AccountId, AccountRef, ChannelScope, CommandBody, DomainName, Permissions, Serial, ShareEntry,
    Validity,
};

use super::{CloudError, CloudModel, Planned};

/// One account the device is shared to, as the owner's list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedAccount {
    pub account: AccountRef,
    /// The account's user name, email and phone, when the cloud knows it.
    pub user_name: Option<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub entry: ShareEntry,
}

impl SharedAccount {
    /// What the list shows: email, else phone, else user name, else id.
    pub fn label(&self) -> String {
        self.email
            .clone()
            .or_else(|| self.phone.clone())
            .or_else(|| self.user_name.clone())
            .unwrap_or_else(|| self.account.id.to_string())
    }
}

/// A device shared to an account, as the receiver sees it: "the device
/// domain name & the account which shares this device".
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedShare {
    pub serial: Serial,
    pub domain: DomainName,
    pub owner: AccountRef,
    pub entry: ShareEntry,
}

/// What the owner grants in a share: which actions, on which channels,
/// for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShareTerms {
    pub permissions: Permissions,
    pub channels: ChannelScope,
    /// `None`: no time limit.
    pub validity: Option<Validity>,
}

impl ShareTerms {
    /// `permissions` on every channel, with no time limit.
    pub fn always(permissions: Permissions) -> ShareTerms {
        ShareTerms {
            permissions,
            channels: ChannelScope::All,
            validity: None,
        }
    }
}

impl CloudModel {
    /// The owner shares the device with an account named by email, phone
    /// number or user name.
    pub fn plan_share(
        &self,
        owner: &AccountId,
        serial: &str,
        with: &str,
        terms: ShareTerms,
    ) -> Result<Planned, CloudError> {
        let (actor, device) = self.authorized(owner, || self.require_owner(owner, serial))?;
        let target = self.find_account(with)?;
        if target.region != device.region {
            return Err(CloudError::CrossRegionShare);
        }
        if &target.id == owner {
            return Err(CloudError::CannotShareWithSelf);
        }
        let ShareTerms {
            permissions,
            channels,
            validity,
        } = terms;
        if !permissions.is_subset_of(Permissions::SHAREABLE) || permissions == Permissions::NONE {
            return Err(CloudError::PermissionsNotShareable);
        }
        if validity.is_some_and(|v| !v.is_well_formed()) {
            return Err(CloudError::InvalidValidity);
        }
        Ok(Planned::new(
            device.serial.clone(),
            actor,
            CommandBody::Share {
                account: target.account_ref(),
                permissions,
                channels,
                validity,
            },
        ))
    }

    /// "All the accounts that this device has been shared to", from the
    /// device's last report.
    pub fn list_shares(
        &self,
        owner: &AccountId,
        serial: &str,
    ) -> Result<Vec<SharedAccount>, CloudError> {
        let device = self.require_owner(owner, serial)?;
        let Some(report) = &device.report else {
            return Ok(Vec::new());
        };
        Ok(report
            .shares
            .iter()
            .map(|entry| {
                let known = self.accounts.get(&entry.account.id);
                SharedAccount {
                    account: entry.account.clone(),
                    user_name: known.map(|a| a.user_name.clone()),
                    email: known.and_then(|a| a.email.clone()),
                    phone: known.and_then(|a| a.phone.clone()),
                    entry: entry.clone(),
                }
            })
            .collect())
    }

    /// The devices shared to `account`, with domain and sharing owner.
    pub fn shared_with(&self, account: &AccountId) -> Vec<ReceivedShare> {
        self.devices
            .values()
            .filter_map(|d| {
                let report = d.report.as_ref()?;
                let Binding::Owned { owner, .. } = &report.binding else {
                    return None;
                };
                let entry = report.shares.iter().find(|s| &s.account.id == account)?;
                Some(ReceivedShare {
                    serial: d.serial.clone(),
                    domain: report.domain.clone(),
                    owner: owner.clone(),
                    entry: entry.clone(),
                })
            })
            .collect()
    }

    /// The account id of a shared account named by email, phone, user name
    /// or id, if the device is shared with it.
    fn shared_account_id(&self, report: &StateReport, name: &str) -> Result<AccountId, CloudError> {
        let by_directory = self.find_account(name).ok().map(|a| a.id.clone());
        report
            .shares
            .iter()
            .map(|s| &s.account.id)
            .find(|id| Some(*id) == by_directory.as_ref() || id.as_str() == name.trim())
            .cloned()
            .ok_or_else(|| CloudError::NotSharedWith(name.trim().to_owned()))
    }

    /// The owner stops sharing with one or several accounts.
    pub fn plan_unshare(
        &self,
        owner: &AccountId,
        serial: &str,
        accounts: &[&str],
    ) -> Result<Planned, CloudError> {
        let (actor, device) = self.authorized(owner, || self.require_owner(owner, serial))?;
        if accounts.is_empty() {
            return Err(CloudError::NothingSelected);
        }
        let mut ids: heapless::Vec<AccountId, MAX_SHARES> = heapless::Vec::new();
        for name in accounts {
            let id = match &device.report {
                Some(report) => self.shared_account_id(report, name)?,
                None => self.find_account(name)?.id.clone(),
            };
            if !ids.contains(&id) {
                ids.push(id).map_err(|_| CloudError::TooManySelected)?;
            }
        }
        Ok(Planned::new(
            device.serial.clone(),
            actor,
            CommandBody::Unshare { accounts: ids },
        ))
    }

    /// "Delete All".
    pub fn plan_unshare_all(&self, owner: &AccountId, serial: &str) -> Result<Planned, CloudError> {
        let (actor, device) = self.authorized(owner, || self.require_owner(owner, serial))?;
        Ok(Planned::new(
            device.serial.clone(),
            actor,
            CommandBody::UnshareAll,
        ))
    }

    /// The receiver deletes a device shared to it from its own side.
    pub fn plan_leave_share(
        &self,
        receiver: &AccountId,
        serial: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(receiver)?;
        let device = self.device(serial)?;
        if let Some(report) = &device.report {
            if !report.shares.iter().any(|s| &s.account.id == receiver) {
                return Err(CloudError::NotSharedWith(account.user_name.clone()));
            }
        }
        Ok(Planned::new(
            device.serial.clone(),
            account.account_ref(),
            CommandBody::LeaveShare,
        ))
    }
}
