//! Device domain names: the owner renaming, registrations from devices
//! (first come while live, reserved names refused), and resolving a name
//! for the owner, the installer before handover and valid shares.

use serde::{Deserialize, Serialize};
use std::fmt;

use hc_protocol::ddns::{
    DomainOutcome, DomainRegistration, DomainResult, IpAddress, PortMapping, ServicePorts,
};
use hc_protocol::limits::MAX_DOMAIN_LEN;
use hc_protocol::messages::Binding;
use hc_protocol::{AccountId, CommandBody, DomainName, Grant, InstallerGrants, Serial, Text};

use super::{CloudError, CloudModel, Planned};

/// A domain registration is forgotten this long after its last refresh.
pub const REGISTRATION_TTL_SECS: u32 = 600;
/// Names the cloud keeps for itself; registering one is `Invalid`.
pub const RESERVED_DOMAINS: &[&str] = &["www", "api", "cloud", "mqtt", "admin", "mail"];

/// A live (or expired, not yet replaced) domain registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub serial: Serial,
    pub domain: DomainName,
    /// The address the cloud saw the registration come from.
    pub public_address: IpAddress,
    pub lan_address: IpAddress,
    pub ports: ServicePorts,
    pub mappings: Vec<PortMapping>,
    pub registered_at: u64,
    pub expires_at: u64,
}

/// What resolving a device domain gives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub domain: DomainName,
    pub serial: Serial,
    pub public_address: IpAddress,
    pub ports: ServicePorts,
    pub mappings: Vec<PortMapping>,
}

impl fmt::Display for Resolution {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} http {} https {} rtsp {} sdk {}",
            ip_text(&self.public_address),
            self.ports.http,
            self.ports.https,
            self.ports.rtsp,
            self.ports.sdk
        )?;
        for m in &self.mappings {
            write!(f, " map {:?} {}->{}", m.transport, m.external, m.internal)?;
        }
        Ok(())
    }
}

/// An address as text.
pub fn ip_text(address: &IpAddress) -> String {
    match address {
        IpAddress::V4(b) => std::net::Ipv4Addr::from(*b).to_string(),
        IpAddress::V6(b) => std::net::Ipv6Addr::from(*b).to_string(),
    }
}

impl CloudModel {
    fn live_registration(&self, name: &DomainName, now: u64) -> Option<&Registration> {
        self.registrations.get(name).filter(|r| now < r.expires_at)
    }

    /// The owner changes the device domain name.
    pub fn plan_set_domain(
        &self,
        owner: &AccountId,
        serial: &str,
        name: &str,
        now: u64,
    ) -> Result<Planned, CloudError> {
        let (actor, device) = self.authorized(owner, || self.require_owner(owner, serial))?;
        let domain =
            DomainName::new(name).map_err(|_| CloudError::InvalidDomainName(name.to_owned()))?;
        if RESERVED_DOMAINS.contains(&domain.as_str()) {
            return Err(CloudError::InvalidDomainName(name.to_owned()));
        }
        if self
            .live_registration(&domain, now)
            .is_some_and(|r| r.serial != device.serial)
        {
            return Err(CloudError::DomainNameTaken(name.to_owned()));
        }
        let text: Text<MAX_DOMAIN_LEN> = Text::new(domain.as_str())
            .map_err(|_| CloudError::InvalidDomainName(name.to_owned()))?;
        Ok(Planned::new(
            device.serial.clone(),
            actor,
            CommandBody::SetDomain { name: text },
        ))
    }

    /// A device registered its domain; `seen_from` is the address the
    /// cloud saw it come from. Answers `NameTaken` while another device
    /// holds a registration of the name that has not expired, `Invalid` for
    /// a reserved name, and otherwise records it (dropping the device's
    /// registration under an older name).
    pub fn on_domain_registration(
        &mut self,
        serial: &Serial,
        registration: &DomainRegistration,
        seen_from: IpAddress,
        now: u64,
    ) -> DomainResult {
        let answer = |outcome| DomainResult {
            attempt: registration.attempt,
            outcome,
        };
        let name = &registration.domain;
        if RESERVED_DOMAINS.contains(&name.as_str()) {
            return answer(DomainOutcome::Invalid);
        }
        if self
            .live_registration(name, now)
            .is_some_and(|r| &r.serial != serial)
        {
            return answer(DomainOutcome::NameTaken);
        }
        self.registrations
            .retain(|n, r| &r.serial != serial || n == name);
        self.registrations.insert(
            name.clone(),
            Registration {
                serial: serial.clone(),
                domain: name.clone(),
                public_address: seen_from,
                lan_address: registration.lan_address,
                ports: registration.ports,
                mappings: registration.mappings.iter().copied().collect(),
                registered_at: now,
                expires_at: now + u64::from(REGISTRATION_TTL_SECS),
            },
        );
        answer(DomainOutcome::Registered {
            public_address: seen_from,
            expires_in: REGISTRATION_TTL_SECS,
        })
    }

    /// The device's current registration, if any (live or not).
    pub fn registration_of(&self, serial: &str) -> Option<&Registration> {
        self.registrations
            .values()
            .find(|r| r.serial.as_str() == serial)
    }

    /// Resolves a device domain for `requester`: only the owner (while the
    /// cloud service is on), the site's installer before handover, the
    /// installer after it while a live-view or configuration grant is
    /// valid (its maintenance access, whatever the cloud service switch
    /// says), and accounts whose share of either kind is valid now (cloud
    /// time), per the device's last report.
    pub fn resolve_domain(
        &self,
        requester: &AccountId,
        name: &str,
        now: u64,
    ) -> Result<Resolution, CloudError> {
        let not_found = || CloudError::DomainNotFound(name.to_owned());
        let domain = DomainName::new(name).map_err(|_| not_found())?;
        let registration = self.live_registration(&domain, now).ok_or_else(not_found)?;
        let report = self
            .devices
            .get(&registration.serial)
            .and_then(|d| d.report.as_ref())
            .ok_or(CloudError::DomainNotShared)?;
        let mut installer_access = matches!(&report.binding,
            Binding::InstallerManaged { installer } if &installer.id == requester);
        match &report.binding {
            Binding::Owned { owner, .. } if &owner.id == requester => {}
            Binding::InstallerManaged { installer } if &installer.id == requester => {}
            Binding::Owned {
                installer: Some(installer),
                installer_grants,
                ..
            } if &installer.id == requester => {
                maintenance_grant_valid(installer_grants, now)?;
                installer_access = true;
            }
            _ => {
                let share = report
                    .shares
                    .iter()
                    .find(|s| &s.account.id == requester)
                    .ok_or(CloudError::DomainNotShared)?;
                if let Some(window) = share.validity {
                    if now < window.not_before {
                        return Err(CloudError::ShareNotYetValid);
                    }
                    if now >= window.not_after {
                        return Err(CloudError::ShareExpired);
                    }
                }
            }
        }
        if !report.cloud_service && !installer_access {
            return Err(CloudError::CloudServiceDisabled);
        }
        Ok(Resolution {
            domain,
            serial: registration.serial.clone(),
            public_address: registration.public_address,
            ports: registration.ports,
            mappings: registration.mappings.clone(),
        })
    }
}

/// The installer reaches the device by its domain for maintenance while
/// its live-view or configuration grant is valid at `now` (cloud time).
fn maintenance_grant_valid(grants: &InstallerGrants, now: u64) -> Result<(), CloudError> {
    let maintenance = [grants.live_view, grants.configuration];
    let windows: Vec<_> = maintenance.into_iter().flatten().collect();
    if windows.is_empty() {
        return Err(CloudError::DomainNotShared);
    }
    let valid = |g: &Grant| {
        g.validity
            .is_none_or(|w| w.not_before <= now && now < w.not_after)
    };
    if windows.iter().any(valid) {
        return Ok(());
    }
    if windows
        .iter()
        .any(|g| g.validity.is_some_and(|w| now < w.not_before))
    {
        Err(CloudError::ShareNotYetValid)
    } else {
        Err(CloudError::ShareExpired)
    }
}
