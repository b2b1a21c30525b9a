//! Installers' sites and the handover: adding devices to a site, the
//! site status, invitations (at most [`INVITATIONS_PER_DAY`] a day, a new
//! one invalidating the previous), and accepting one with the
//! installer's optional permissions.

use serde::{Deserialize, Serialize};
use std::fmt;

use hc_protocol::command::bind_proof;
use hc_protocol::{
    AccountId, AccountRef, BindRole, CommandBody, Grant, InstallerGrants, Region, Serial, Validity,
};

use super::accounts::Contact;
use super::{CloudError, CloudModel, Commit, Planned};

/// "You can send at most five invitations in one day."
pub const INVITATIONS_PER_DAY: usize = 5;
/// Invitations are counted per UTC day.
pub const SECONDS_PER_DAY: u64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct SiteId(pub u32);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct InvitationId(pub u64);

impl fmt::Display for SiteId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "site-{}", self.0)
    }
}

impl fmt::Display for InvitationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invitation-{}", self.0)
    }
}

/// The site status shown in the installer's site list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SiteStatus {
    NotInvited,
    /// Invited, but the invitee has no account yet.
    NotRegistered,
    /// Invited, the invitee has an account, but has not accepted.
    NotAccepted,
    /// Accepted; some device has not acknowledged its handover yet (it was
    /// offline): the cloud re-sends until it does.
    HandoverPending,
    HandedOver,
}

impl fmt::Display for SiteStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SiteStatus::NotInvited => "Not Invited",
            SiteStatus::NotRegistered => "Not Registered",
            SiteStatus::NotAccepted => "Not Accepted",
            SiteStatus::HandoverPending => "Handover Pending",
            SiteStatus::HandedOver => "Handed Over",
        })
    }
}

/// Which devices of the site a permission covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeviceSelection {
    All,
    Only(Vec<Serial>),
}

impl DeviceSelection {
    pub fn includes(&self, serial: &Serial) -> bool {
        match self {
            DeviceSelection::All => true,
            DeviceSelection::Only(list) => list.contains(serial),
        }
    }
}

/// A per-device permission with its optional validity period.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceGrant {
    pub devices: DeviceSelection,
    pub validity: Option<Validity>,
}

/// The installer's optional permissions after handover, as asked for in
/// the invitation and granted when the owner accepts.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct InstallerPermissions {
    /// Site Information Management.
    pub site_info: Option<Grant>,
    pub configuration: Option<DeviceGrant>,
    pub live_view: Option<DeviceGrant>,
    pub playback: Option<DeviceGrant>,
    /// "Allow me to disable the cloud service".
    pub allow_disable_cloud: bool,
}

impl InstallerPermissions {
    /// What goes into the `Handover` command for one device.
    pub fn grants_for(&self, serial: &Serial) -> InstallerGrants {
        let pick = |g: &Option<DeviceGrant>| {
            g.as_ref()
                .filter(|g| g.devices.includes(serial))
                .map(|g| Grant {
                    validity: g.validity,
                })
        };
        InstallerGrants {
            site_info: self.site_info,
            configuration: pick(&self.configuration),
            live_view: pick(&self.live_view),
            playback: pick(&self.playback),
            may_disable_cloud: self.allow_disable_cloud,
        }
    }

    fn device_grants(&self) -> impl Iterator<Item = &DeviceGrant> {
        [&self.configuration, &self.live_view, &self.playback]
            .into_iter()
            .flatten()
    }
}

/// One invitation sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Invitation {
    pub id: InvitationId,
    pub site: SiteId,
    pub contact: Contact,
    pub permissions: InstallerPermissions,
    pub remarks: String,
    pub sent_at: u64,
    /// A newer invitation was sent: this one can no longer be accepted.
    pub superseded: bool,
}

/// An installer's site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub id: SiteId,
    pub name: String,
    pub installer: AccountId,
    pub region: Region,
    pub devices: Vec<Serial>,
    /// Every invitation sent, oldest first.
    pub invitations: Vec<Invitation>,
    pub owner: Option<AccountId>,
    /// The permissions the owner accepted (after handover).
    pub accepted: Option<InstallerPermissions>,
    /// When the owner accepted the invitation.
    pub accepted_at: Option<u64>,
    /// Devices whose `Handover` was not acknowledged yet.
    pub pending: Vec<Serial>,
    /// When the last device acknowledged its handover.
    pub handed_over_at: Option<u64>,
}

impl Site {
    /// The invitation was accepted (the handover may still be pending).
    pub fn is_accepted(&self) -> bool {
        self.accepted_at.is_some()
    }

    pub fn current_invitation(&self) -> Option<&Invitation> {
        self.invitations.last().filter(|i| !i.superseded)
    }
}

/// An accepted invitation: the site is handed over in the cloud, and each
/// device gets a `Handover` with its grants, from the new owner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandoverPlan {
    pub site: SiteId,
    pub owner: AccountRef,
    pub commands: Vec<Planned>,
}

impl CloudModel {
    /// An installer adds a device to its site with the device's
    /// verification code.
    pub fn plan_add_to_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        serial: &str,
        entered_code: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(installer)?;
        let site_record = self.sites.get(&site).ok_or(CloudError::SiteNotFound)?;
        if &site_record.installer != installer {
            return Err(CloudError::NotSiteInstaller);
        }
        if site_record.is_accepted() {
            return Err(CloudError::SiteHandedOver);
        }
        let device = self.bindable(account, serial, entered_code)?;
        let proof = bind_proof(entered_code.as_bytes(), &device.serial, &account.id);
        Ok(Planned {
            serial: device.serial.clone(),
            actor: account.account_ref(),
            body: CommandBody::Bind {
                role: BindRole::Installer,
                proof,
            },
            on_accept: Commit::AddToSite {
                site,
                serial: device.serial.clone(),
            },
        })
    }

    /// Creates an installer's site, in the installer's region.
    pub fn create_site(&mut self, installer: &AccountId, name: &str) -> Result<SiteId, CloudError> {
        let region = self.account(installer)?.region.clone();
        self.next_site += 1;
        let id = SiteId(self.next_site);
        self.sites.insert(
            id,
            Site {
                id,
                name: name.to_owned(),
                installer: installer.clone(),
                region,
                devices: Vec::new(),
                invitations: Vec::new(),
                owner: None,
                accepted: None,
                accepted_at: None,
                pending: Vec::new(),
                handed_over_at: None,
            },
        );
        Ok(id)
    }

    /// The installer's site that is still its own (not accepted by an
    /// owner), the newest if there are several.
    pub fn open_site_of(&self, installer: &AccountId) -> Option<SiteId> {
        self.sites
            .values()
            .rev()
            .find(|s| &s.installer == installer && !s.is_accepted())
            .map(|s| s.id)
    }

    pub fn site(&self, site: SiteId) -> Result<&Site, CloudError> {
        self.sites.get(&site).ok_or(CloudError::SiteNotFound)
    }

    /// Not Invited / Not Registered / Not Accepted / Handed Over.
    pub fn site_status(&self, site: SiteId) -> Result<SiteStatus, CloudError> {
        let site = self.site(site)?;
        if site.handed_over_at.is_some() {
            return Ok(SiteStatus::HandedOver);
        }
        if site.is_accepted() {
            return Ok(SiteStatus::HandoverPending);
        }
        Ok(match site.current_invitation() {
            None => SiteStatus::NotInvited,
            Some(invitation) => {
                if self
                    .accounts
                    .values()
                    .any(|a| invitation.contact.matches(a))
                {
                    SiteStatus::NotAccepted
                } else {
                    SiteStatus::NotRegistered
                }
            }
        })
    }

    /// Invitations sent for `site` on the UTC day of `now`.
    pub fn invitations_sent_today(&self, site: SiteId, now: u64) -> Result<usize, CloudError> {
        let day = now / SECONDS_PER_DAY;
        Ok(self
            .site(site)?
            .invitations
            .iter()
            .filter(|i| i.sent_at / SECONDS_PER_DAY == day)
            .count())
    }

    fn managed_site(&self, installer: &AccountId, site: SiteId) -> Result<&Site, CloudError> {
        let site_record = self.site(site)?;
        if &site_record.installer != installer {
            return Err(CloudError::NotSiteInstaller);
        }
        if site_record.is_accepted() {
            return Err(CloudError::SiteHandedOver);
        }
        Ok(site_record)
    }

    /// The installer invites the site owner by email or phone, asking for
    /// its permissions after handover. The previous invitation becomes
    /// invalid. At most [`INVITATIONS_PER_DAY`] per site per UTC day.
    pub fn invite(
        &mut self,
        installer: &AccountId,
        site: SiteId,
        contact: Contact,
        permissions: InstallerPermissions,
        remarks: &str,
        now: u64,
    ) -> Result<InvitationId, CloudError> {
        let site_record = self.managed_site(installer, site)?;
        if permissions.device_grants().next().is_some() && site_record.devices.is_empty() {
            return Err(CloudError::NoDevicesForPermissions);
        }
        for grant in permissions.device_grants() {
            if let DeviceSelection::Only(list) = &grant.devices {
                if list.is_empty() {
                    return Err(CloudError::NoDevicesForPermissions);
                }
                if let Some(missing) = list.iter().find(|s| !site_record.devices.contains(s)) {
                    return Err(CloudError::DeviceNotInSite(missing.to_string()));
                }
            }
        }
        let windows = permissions
            .device_grants()
            .filter_map(|g| g.validity)
            .chain(permissions.site_info.and_then(|g| g.validity));
        for window in windows {
            if !window.is_well_formed() {
                return Err(CloudError::InvalidValidity);
            }
        }
        if self.invitations_sent_today(site, now)? >= INVITATIONS_PER_DAY {
            return Err(CloudError::InvitationLimit);
        }
        self.next_invitation += 1;
        let id = InvitationId(self.next_invitation);
        let site_record = self.sites.get_mut(&site).ok_or(CloudError::SiteNotFound)?;
        for old in &mut site_record.invitations {
            old.superseded = true;
        }
        site_record.invitations.push(Invitation {
            id,
            site,
            contact,
            permissions,
            remarks: remarks.to_owned(),
            sent_at: now,
            superseded: false,
        });
        Ok(id)
    }

    /// Sends the current invitation again before it is accepted (status
    /// Not Registered or Not Accepted). It is a new invitation: it counts
    /// toward the daily limit and the previous one becomes invalid.
    pub fn resend_invitation(
        &mut self,
        installer: &AccountId,
        site: SiteId,
        now: u64,
    ) -> Result<InvitationId, CloudError> {
        let current = self
            .managed_site(installer, site)?
            .current_invitation()
            .cloned()
            .ok_or(CloudError::NothingToResend)?;
        self.invite(
            installer,
            site,
            current.contact,
            current.permissions,
            &current.remarks,
            now,
        )
    }

    /// Finds an invitation by id.
    pub fn invitation(&self, id: InvitationId) -> Result<&Invitation, CloudError> {
        self.sites
            .values()
            .flat_map(|s| s.invitations.iter())
            .find(|i| i.id == id)
            .ok_or(CloudError::UnknownInvitation)
    }

    /// The invitations waiting for `account` to accept, with the
    /// installer's remarks ("which the invitee can view when he/she
    /// receives the invitation").
    pub fn invitations_for(&self, account: &AccountId) -> Vec<&Invitation> {
        let Ok(account) = self.account(account) else {
            return Vec::new();
        };
        self.sites
            .values()
            .filter(|site| !site.is_accepted())
            .filter_map(Site::current_invitation)
            .filter(|invitation| invitation.contact.matches(account))
            .collect()
    }

    /// The installer removes a device from its site before handover: the
    /// device is unbound and can be added again.
    pub fn plan_remove_from_site(
        &self,
        installer: &AccountId,
        site: SiteId,
        serial: &str,
    ) -> Result<Planned, CloudError> {
        let account = self.account(installer)?.account_ref();
        let site_record = self.managed_site(installer, site)?;
        let serial = Serial::new(serial)
            .ok()
            .filter(|s| site_record.devices.contains(s))
            .ok_or_else(|| CloudError::DeviceNotInSite(serial.to_owned()))?;
        Ok(Planned {
            serial: serial.clone(),
            actor: account,
            body: CommandBody::Unbind,
            on_accept: Commit::Release { serial },
        })
    }
}
