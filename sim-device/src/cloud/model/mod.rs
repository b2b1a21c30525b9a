//! The simulated cloud's own rules, as a pure state machine: no I/O, no
//! clock (every call that depends on time takes `now`, Unix seconds, cloud
//! time).
//!
//! The cloud and the device each enforce their own rules. This model holds
//! what only the cloud can know (accounts and how they are found, devices
//! known to the cloud with their verification codes, installers' sites,
//! invitations and their daily limit, domain registrations) and refuses
//! what the product refuses in the cloud ("The account doesn't exist",
//! "Cross-regional share operation is not allowed", a sixth invitation in a
//! day, ...). What it accepts becomes a [`Planned`] command for the device;
//! the device then applies its own rules and answers with an `Ack`. The
//! driver ([`super::driver`]) sends and maps the answers to product
//! outcomes ("Shared", "Network busy").
//!
//! For everything the device holds (owner, installer, shares, switches,
//! domain), the source of truth is the device's last retained
//! `StateReport` ([`CloudModel::on_state_report`]). Before a device was
//! ever heard of, those checks are left to the device.

mod accounts;
mod devices;
mod domains;
mod error;
mod handover;
mod installer;
mod service;
mod shares;
mod sites;

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

use hc_protocol::{AccountId, AccountRef, CommandBody, DomainName, Serial};

pub use accounts::{normalize_phone, Account, Contact, Identifier};
pub use devices::DeviceRecord;
pub use domains::{ip_text, Registration, Resolution, REGISTRATION_TTL_SECS, RESERVED_DOMAINS};
pub use error::CloudError;
pub use installer::InstallerRights;
pub use shares::{ReceivedShare, ShareKind, ShareTerms, SharedAccount};
pub use sites::{
    DeviceGrant, DeviceSelection, HandoverPlan, InstallerPermissions, Invitation, InvitationId,
    Site, SiteId, SiteStatus, INVITATIONS_PER_DAY, SECONDS_PER_DAY,
};

/// What the cloud records once the device accepted a planned command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Commit {
    Nothing,
    AddToSite {
        site: SiteId,
        serial: Serial,
    },
    /// The device left its account (deleted by its owner, removed from the
    /// owner's account by the installer, removed from a site): it is no
    /// longer in any site and can be added again.
    Release {
        serial: Serial,
    },
    /// The device acknowledged its `Handover`: no longer pending.
    HandedOver {
        site: SiteId,
        serial: Serial,
        at: u64,
    },
}

/// A command the cloud-side rules allowed: for the driver to sign and send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub serial: Serial,
    pub actor: AccountRef,
    pub body: CommandBody,
    /// Recorded by [`CloudModel::commit`] when the device accepts.
    pub on_accept: Commit,
}

impl Planned {
    /// A command with nothing to record on acceptance.
    pub fn new(serial: Serial, actor: AccountRef, body: CommandBody) -> Planned {
        Planned {
            serial,
            actor,
            body,
            on_accept: Commit::Nothing,
        }
    }
}

/// One result per device of a site.
pub type PerDevice<T> = Vec<(Serial, Result<T, CloudError>)>;

/// The simulated cloud's state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CloudModel {
    accounts: BTreeMap<AccountId, Account>,
    devices: BTreeMap<Serial, DeviceRecord>,
    sites: BTreeMap<SiteId, Site>,
    /// By domain name.
    registrations: BTreeMap<DomainName, Registration>,
    next_account: u32,
    next_site: u32,
    next_invitation: u64,
}

impl CloudModel {
    pub fn new() -> CloudModel {
        CloudModel::default()
    }

    /// Records what the device accepted.
    pub fn commit(&mut self, commit: &Commit) {
        match commit {
            Commit::Nothing => {}
            Commit::AddToSite { site, serial } => {
                if let Some(site_record) = self.sites.get_mut(site) {
                    if !site_record.devices.contains(serial) {
                        site_record.devices.push(serial.clone());
                    }
                }
                if let Some(device) = self.devices.get_mut(serial) {
                    device.site = Some(*site);
                }
            }
            Commit::Release { serial } => {
                for site in self.sites.values_mut() {
                    site.devices.retain(|s| s != serial);
                    site.pending.retain(|s| s != serial);
                }
                if let Some(device) = self.devices.get_mut(serial) {
                    device.site = None;
                }
            }
            Commit::HandedOver { site, serial, at } => {
                if let Some(site) = self.sites.get_mut(site) {
                    site.pending.retain(|s| s != serial);
                    if site.pending.is_empty() && site.handed_over_at.is_none() {
                        site.handed_over_at = Some(*at);
                    }
                }
            }
        }
    }
}
