//! Field-engineer operations against a running broker, from a PKI
//! directory: the device's status, the cloud service switch (one device or
//! a whole site), sharing, unsharing and binding here; the other flows of
//! the product (accounts, invitations, installer rights, domain names,
//! deleting) in [`flows`]. What `sim-device status|service|share|...` runs.
//!
//! A field-engineer process is a cloud whose records of accounts, sites
//! and invitations persist between runs ([`records`]); who holds a device
//! (owner, installer, shares) it learns from the device's retained state
//! report and acts as them: the installer switches the cloud service, the
//! owner shares. The cloud-side rules of [`super::model`] still apply
//! (region, who may switch, ...), and the device applies its own.
//!
//! - **Offline first.** Before anything is sent, the device's retained
//!   status is read: a device whose status says offline (its last will,
//!   or the goodbye its agent publishes when it stops), or says online but
//!   was not refreshed in time by the cloud's clock (a broker node lost
//!   without publishing the will, SPEC §2.4), fails at once with
//!   [`OperationError::Offline`], which tells since when; one the broker
//!   holds nothing about fails with [`OperationError::NeverSeen`]. Only a
//!   device online by a fresh status that does not acknowledge in time
//!   gives the product's "Network busy".
//! - **Sites.** A site is the set of devices an installer manages. The
//!   records may miss devices bound by another cloud process, so
//!   [`service_for_site`] finds the site from the retained state reports
//!   of every device on the broker (the driver subscribes to
//!   `dev/+/state`): each device whose report names
//!   the installer, before or after the handover, at most
//!   [`MAX_SITE_DEVICES`] of them.
//!
//! `status` reads and describes a device, `site` finds and switches an
//! installer's site.

mod flows;
mod records;
mod site;
mod status;

use std::path::{Path, PathBuf};
use std::time::Duration;

use hc_protocol::messages::{Binding, StateReport};
use hc_protocol::{AccountId, AccountRef, Region, Serial};

use super::driver::{load_seed, Cloud, CloudOptions, DriverError, DEFAULT_ACK_TIMEOUT};
use super::model::{CloudError, ShareTerms};
use crate::pki::{Pki, PkiError};

pub use flows::{
    accept, add_account, delete_device, grant_installer, installer_rights, invitations, invite,
    leave, remove_from_owner, resend, resolve_domain, revoke_installer, set_domain, share_domain,
};
pub use records::{Records, RecordsError, RECORDS_FILE};
pub use site::{discover_site, service_for_site, SiteError, SiteSwitch, MAX_SITE_DEVICES};
pub use status::{describe, grants_text, presence, status, utc, DeviceView, Presence};

/// How long the retained status may lag behind the retained state report
/// (they are separate topics, delivered in no particular order).
const STATUS_WAIT: Duration = Duration::from_millis(500);

#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("PKI: {0}")]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Driver(#[from] DriverError),
    #[error("{0}")]
    Records(#[from] RecordsError),
}

/// Why a field operation on one device failed. `Display` is the line the
/// field engineer reads.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The retained status says offline, or is an online one not refreshed
    /// in time (`stale`): nothing was sent, so nothing will surface on the
    /// device later. `since`: the status's `written_s`.
    #[error(
        "device {serial} is offline since {} ({}); nothing was sent",
        utc(*since),
        Presence::offline_why(*stale)
    )]
    Offline {
        serial: Serial,
        since: u64,
        stale: bool,
    },
    /// The broker holds neither a status nor a state report.
    #[error(
        "device {serial} is unknown to this broker: no status or state report within {waited_ms} ms \
         (never connected here, or another broker)"
    )]
    NeverSeen { serial: Serial, waited_ms: u64 },
    /// The cloud's rules or the device refused, or an online device did
    /// not answer in time ("Network busy").
    #[error(transparent)]
    Cloud(#[from] CloudError),
}

/// Where the broker is and which PKI to use.
#[derive(Debug, Clone)]
pub struct Target {
    pub pki_dir: PathBuf,
    pub host: String,
    pub port: u16,
    pub ack_timeout: Duration,
}

impl Target {
    pub fn new(pki_dir: &Path, host: &str, port: u16) -> Target {
        Target {
            pki_dir: pki_dir.to_owned(),
            host: host.to_owned(),
            port,
            ack_timeout: DEFAULT_ACK_TIMEOUT,
        }
    }

    /// Connects as the `cloud` certificate of the PKI, signing with its
    /// command key (which must exist: devices pin it), with the cloud's
    /// records of earlier runs (locked until [`Session::close`]).
    /// Handovers still pending from an earlier run are sent again to the
    /// devices that are back.
    pub async fn connect(&self) -> Result<Session, FieldError> {
        let pki = Pki::load(&self.pki_dir)?;
        let seed = load_seed(&self.pki_dir)?;
        let (records, model) = Records::open(&self.pki_dir)?;
        let mut options = CloudOptions::with_seed(&pki, &self.host, self.port, seed);
        options.ack_timeout = self.ack_timeout;
        let pending = !model.pending_handovers(0).is_empty();
        let cloud = Cloud::connect(options, model).await?;
        // Only for handovers of earlier runs: started unconditionally, the
        // re-sender would race this run's own `accept` for the same device.
        if pending {
            cloud.keep_resending_handovers();
        }
        Ok(Session { cloud, records })
    }
}

/// One run's connection and the cloud's records, saved on close.
pub struct Session {
    pub cloud: Cloud,
    records: Records,
}

impl Session {
    /// Gives handovers to devices that are online the acknowledgement
    /// timeout to complete, disconnects and saves the records.
    pub async fn close(self) -> Result<(), FieldError> {
        let Session { cloud, records } = self;
        let pending = cloud.with_model(|m| m.pending_handovers(0));
        let waiting = pending
            .iter()
            .any(|p| cloud.online(&p.serial) == Some(true));
        if waiting {
            cloud.wait_handovers(cloud.ack_timeout()).await;
        }
        let model = cloud.with_model(|m| m.clone());
        cloud.shutdown().await;
        Ok(records.save(&model)?)
    }
}

/// Waits (at most the acknowledgement timeout) for the device's retained
/// state report, then briefly for its retained status; a device that ever
/// connected has both at once.
pub async fn learn(cloud: &Cloud, serial: &Serial) -> Option<StateReport> {
    let state = cloud
        .wait_state(serial, |_| true, cloud.ack_timeout())
        .await;
    cloud.wait_status_known(serial, STATUS_WAIT).await;
    state
}

/// The device's state report, if commands can reach it: an offline or
/// never-seen device fails here, before anything is sent.
async fn reachable(cloud: &Cloud, serial: &Serial) -> Result<StateReport, OperationError> {
    let report = learn(cloud, serial).await;
    match (presence(cloud, serial), report) {
        (Presence::Offline { since, stale }, _) => Err(OperationError::Offline {
            serial: serial.clone(),
            since,
            stale,
        }),
        (Presence::Unknown, None) => Err(OperationError::NeverSeen {
            serial: serial.clone(),
            waited_ms: (cloud.ack_timeout() + STATUS_WAIT).as_millis() as u64,
        }),
        // Online, or a status that has not arrived yet: the driver waits
        // for it within the acknowledgement timeout.
        (_, Some(report)) => Ok(report),
        // Online without a state report: the agent publishes one on every
        // connect, so it is not answering as it should.
        (Presence::Online, None) => Err(no_report(serial, cloud.ack_timeout()).into()),
    }
}

pub(super) fn serial_of(text: &str) -> Result<Serial, CloudError> {
    Serial::new(text).map_err(|e| CloudError::invalid("serial", e))
}

pub(super) fn account_id_of(text: &str) -> Result<AccountId, CloudError> {
    AccountId::new(text).map_err(|e| CloudError::invalid("account id", e))
}

fn no_report(serial: &Serial, timeout: Duration) -> CloudError {
    CloudError::NetworkBusy {
        serial: serial.to_string(),
        waited_ms: timeout.as_millis() as u64,
    }
}

fn unknown_holder(serial: &Serial, role: &'static str) -> CloudError {
    CloudError::NoHolder {
        serial: serial.to_string(),
        role,
    }
}

/// The installer per the device's report (before or after the handover).
pub(super) async fn installer(cloud: &Cloud, serial: &str) -> Result<AccountId, OperationError> {
    let serial = serial_of(serial)?;
    let report = reachable(cloud, &serial).await?;
    let installer = report
        .binding
        .installer()
        .cloned()
        .ok_or_else(|| unknown_holder(&serial, "installer"))?;
    Ok(cloud.with_model(|m| m.ensure_account(&installer)))
}

/// The installer (per the device's report) switches the cloud service.
pub async fn service(cloud: &Cloud, serial: &str, enabled: bool) -> Result<(), OperationError> {
    let id = installer(cloud, serial).await?;
    Ok(cloud
        .execute_plan(|m| m.plan_set_cloud_service(&id, serial, enabled))
        .await?)
}
/// The owner (per the device's report).
pub(super) async fn owner(
    cloud: &Cloud,
    serial: &str,
) -> Result<(Serial, AccountId), OperationError> {
    let serial = serial_of(serial)?;
    let report = reachable(cloud, &serial).await?;
    match &report.binding {
        Binding::Owned { owner, .. } => {
            let owner = cloud.with_model(|m| m.ensure_account(owner));
            Ok((serial, owner))
        }
        _ => Err(unknown_holder(&serial, "owner").into()),
    }
}

/// Parses an account id and region.
pub fn account_ref(id: &str, region: &str) -> Result<AccountRef, CloudError> {
    Ok(AccountRef {
        id: account_id_of(id)?,
        region: Region::new(region).map_err(|e| CloudError::invalid("region", e))?,
    })
}

/// The owner shares the device with the account `to` names (email, phone
/// number, user name or id): "The account doesn't exist" for one the cloud
/// does not know.
pub async fn share(
    cloud: &Cloud,
    serial: &str,
    to: &str,
    terms: ShareTerms,
) -> Result<(), OperationError> {
    let (serial, owner) = owner(cloud, serial).await?;
    Ok(cloud.share(&owner, &serial, to, terms).await?)
}

/// The owner stops sharing with `accounts` (ids), or with everyone.
pub async fn unshare(
    cloud: &Cloud,
    serial: &str,
    accounts: &[String],
) -> Result<(), OperationError> {
    let (serial, owner) = owner(cloud, serial).await?;
    if accounts.is_empty() {
        Ok(cloud
            .execute_plan(|m| m.plan_unshare_all(&owner, &serial))
            .await?)
    } else {
        let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
        Ok(cloud
            .execute_plan(|m| m.plan_unshare(&owner, &serial, &names))
            .await?)
    }
}

/// Who a bind makes the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindAs {
    Installer,
    Owner,
}

/// Binds the device to `account` with the verification code from its
/// label: as installer (into a site of this process's cloud) or as owner.
pub async fn bind(
    cloud: &Cloud,
    serial: &str,
    code: &str,
    account: &AccountRef,
    bind_as: BindAs,
) -> Result<(), OperationError> {
    let serial = serial_of(serial)?;
    reachable(cloud, &serial).await?;
    let id = cloud.with_model(|m| m.ensure_account(account));
    match bind_as {
        BindAs::Owner => Ok(cloud
            .execute_plan(|m| m.plan_bind_owner(&id, &serial, code))
            .await?),
        BindAs::Installer => {
            let site = cloud.with_model(|m| match m.open_site_of(&id) {
                Some(site) => Ok(site),
                None => m.create_site(&id, "field"),
            })?;
            Ok(cloud
                .execute_plan(|m| m.plan_add_to_site(&id, site, &serial, code))
                .await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn serial(text: &str) -> Serial {
        Serial::new(text).unwrap()
    }

    #[test]
    fn offline_is_said_plainly_and_not_as_network_busy() {
        let text = OperationError::Offline {
            serial: serial("NVR-3"),
            since: 1_795_428_000,
            stale: true,
        }
        .to_string();
        assert!(
            text.starts_with("device NVR-3 is offline since 2026-11-23 10:00 UTC (its retained status says online but was not refreshed"),
            "{text}"
        );
        assert!(text.contains("nothing was sent"), "{text}");
        assert!(!text.contains("Network busy"), "{text}");
    }
}
