//! The handover: the invitee accepting, the `Handover` each device of the
//! site gets, and the site pending until every device acknowledged (the
//! driver re-sends to devices that were offline).

use hc_protocol::{AccountId, CommandBody};

use super::error::require_same_region;
use super::sites::{HandoverPlan, InvitationId, SiteId};
use super::{CloudError, CloudModel, Commit, Planned};

impl CloudModel {
    /// The invitee accepts: the site is accepted in the cloud, every device
    /// of the site gets a `Handover` from the new owner with the grants for
    /// that device, and the site stays Handover Pending until each device
    /// acknowledged (its [`Commit::HandedOver`]); the driver re-sends to a
    /// device that did not answer ([`CloudModel::pending_handovers`]).
    pub fn accept_invitation(
        &mut self,
        id: InvitationId,
        account: &AccountId,
        now: u64,
    ) -> Result<HandoverPlan, CloudError> {
        let invitation = self.invitation(id)?.clone();
        let owner = self.account(account)?.clone();
        let site = self.site(invitation.site)?;
        if site.is_accepted() {
            return Err(CloudError::SiteHandedOver);
        }
        if invitation.superseded {
            return Err(CloudError::InvitationInvalid);
        }
        if !invitation.contact.matches(&owner) {
            return Err(CloudError::NotTheInvitee);
        }
        require_same_region(&owner.region, &site.region)?;
        let site = self
            .sites
            .get_mut(&invitation.site)
            .ok_or(CloudError::SiteNotFound)?;
        site.owner = Some(owner.id.clone());
        site.accepted = Some(invitation.permissions.clone());
        site.accepted_at = Some(now);
        site.pending = site.devices.clone();
        if site.pending.is_empty() {
            site.handed_over_at = Some(now);
        }
        let site = site.id;
        Ok(HandoverPlan {
            site,
            owner: owner.account_ref(),
            commands: self.handovers_of(site, now),
        })
    }

    /// The `Handover` of every device of `site` still pending, each
    /// recording [`Commit::HandedOver`] (at `now`) once acknowledged.
    fn handovers_of(&self, site: SiteId, now: u64) -> Vec<Planned> {
        let Some(site) = self.sites.get(&site) else {
            return Vec::new();
        };
        let (Some(owner), Some(permissions)) = (&site.owner, &site.accepted) else {
            return Vec::new();
        };
        let Ok(owner) = self.account(owner) else {
            return Vec::new();
        };
        site.pending
            .iter()
            .map(|serial| Planned {
                serial: serial.clone(),
                actor: owner.account_ref(),
                body: CommandBody::Handover {
                    installer_grants: permissions.grants_for(serial),
                },
                on_accept: Commit::HandedOver {
                    site: site.id,
                    serial: serial.clone(),
                    at: now,
                },
            })
            .collect()
    }

    /// Every handover not acknowledged yet, over all sites: what the
    /// driver re-sends when the device is back.
    pub fn pending_handovers(&self, now: u64) -> Vec<Planned> {
        self.sites
            .keys()
            .flat_map(|site| self.handovers_of(*site, now))
            .collect()
    }

    /// The device refused its handover: it is no longer pending (the site
    /// is handed over once nothing else is).
    pub fn drop_pending_handover(&mut self, serial: &hc_protocol::Serial) {
        for site in self.sites.values_mut() {
            site.pending.retain(|s| s != serial);
        }
    }
}
