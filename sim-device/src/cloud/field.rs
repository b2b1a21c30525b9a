//! Field-engineer operations against a running broker, from a PKI
//! directory: the device's status, the cloud service switch, sharing,
//! unsharing and binding. What `sim-device status|service|share|unshare|bind`
//! runs.
//!
//! A field-engineer process is a cloud without the account directory: it
//! learns who holds a device (owner, installer, shares) from the device's
//! retained state report and acts as them: the installer switches the
//! cloud service, the owner shares. The cloud-side rules of
//! [`super::model`] still apply (region, who may switch, ...), and the
//! device applies its own.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::access::Action;
use protocol::messages::{Binding, StateReport};
use protocol::{
    AccountId, AccountRef, ChannelScope, InstallerGrants, Permissions, Region, Serial, ShareEntry,
    Validity,
};

use super::driver::{load_seed, Cloud, CloudOptions, DriverError, DEFAULT_ACK_TIMEOUT};
use super::model::{CloudError, CloudModel};
use crate::pki::{Pki, PkiError};

#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("PKI: {0}")]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Driver(#[from] DriverError),
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
    /// command key (which must exist: devices pin it).
    pub async fn connect(&self) -> Result<Cloud, FieldError> {
        let pki = Pki::load(&self.pki_dir)?;
        let seed = load_seed(&self.pki_dir)?;
        let mut options = CloudOptions::with_seed(&pki, &self.host, self.port, seed);
        options.ack_timeout = self.ack_timeout;
        Ok(Cloud::connect(options, CloudModel::new()).await?)
    }
}

/// Waits (at most the acknowledgement timeout) for the device's retained
/// state report and status; a device that ever connected has them at once.
pub async fn learn(cloud: &Cloud, serial: &Serial) -> Option<StateReport> {
    let state = cloud
        .wait_state(serial, |_| true, cloud.ack_timeout())
        .await;
    if cloud.online(serial).is_none() {
        // The status may come a moment after the state.
        let _ = cloud
            .wait_online(serial, true, Duration::from_millis(200))
            .await;
    }
    state
}

fn serial_of(text: &str) -> Result<Serial, CloudError> {
    Serial::new(text).map_err(|e| CloudError::Invalid {
        what: "serial",
        message: e.to_string(),
    })
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

/// A readable status of one device.
pub async fn status(cloud: &Cloud, serial: &str) -> Result<String, CloudError> {
    let serial = serial_of(serial)?;
    let report = learn(cloud, &serial).await;
    Ok(describe(&serial, cloud.online(&serial), report.as_ref()))
}

/// The text `sim-device status` prints for a device.
pub fn describe(serial: &Serial, online: Option<bool>, report: Option<&StateReport>) -> String {
    let mut out = String::new();
    let link = match online {
        Some(true) => "online",
        Some(false) => "offline",
        None => "unknown (never connected to this broker)",
    };
    let _ = writeln!(out, "{serial}: {link}");
    let Some(r) = report else {
        let _ = writeln!(out, "  no state report");
        return out;
    };
    let _ = writeln!(
        out,
        "  region {}, {} channels, agent {}",
        r.region, r.channel_count, r.agent_version
    );
    match &r.binding {
        Binding::Unbound => {
            let _ = writeln!(out, "  binding: not bound");
        }
        Binding::InstallerManaged { installer } => {
            let _ = writeln!(
                out,
                "  binding: managed by installer {} (not handed over)",
                account(installer)
            );
        }
        Binding::Owned {
            owner,
            installer,
            installer_grants,
        } => {
            let _ = writeln!(out, "  binding: owned by {}", account(owner));
            if let Some(installer) = installer {
                let _ = writeln!(
                    out,
                    "  installer {}: {}",
                    account(installer),
                    grants(installer_grants)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "  cloud service: {}; platform access: {}",
        on_off(r.cloud_service),
        on_off(r.platform_access)
    );
    let _ = writeln!(
        out,
        "  domain: {}; last sequence number: {}",
        r.domain, r.last_seq
    );
    if r.shares.is_empty() {
        let _ = writeln!(out, "  shared with nobody");
    }
    for share in &r.shares {
        let _ = writeln!(out, "  shared with {}", share_text(share));
    }
    if r.reports_dropped > 0 {
        let _ = writeln!(
            out,
            "  reports dropped while offline: {}",
            r.reports_dropped
        );
    }
    out
}

fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

fn account(a: &AccountRef) -> String {
    format!("{} ({})", a.id, a.region)
}

fn window(v: Option<Validity>) -> String {
    match v {
        None => "no time limit".into(),
        Some(v) => format!("valid {} to {}", utc(v.not_before), utc(v.not_after)),
    }
}

/// Unix seconds as `2026-11-23 10:00 UTC`.
pub fn utc(secs: u64) -> String {
    // Howard Hinnant's days-to-civil algorithm.
    let days = (secs / 86_400) as i64;
    let (hour, minute) = ((secs % 86_400) / 3600, (secs % 3600) / 60);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {hour:02}:{minute:02} UTC")
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(super::utc(1_795_428_000), "2026-11-23 10:00 UTC");
    }
}

fn grants(g: &InstallerGrants) -> String {
    let mut parts = Vec::new();
    for (name, grant) in [
        ("site information", g.site_info),
        ("configuration", g.configuration),
        ("live view", g.live_view),
        ("playback", g.playback),
    ] {
        if let Some(grant) = grant {
            parts.push(format!("{name} ({})", window(grant.validity)));
        }
    }
    if g.may_disable_cloud {
        parts.push("may disable the cloud service".into());
    }
    if parts.is_empty() {
        "no permissions".into()
    } else {
        parts.join(", ")
    }
}

fn share_text(s: &ShareEntry) -> String {
    let actions: Vec<&str> = Action::ALL
        .iter()
        .filter(|a| s.permissions.contains(**a))
        .map(|a| a.name())
        .collect();
    let channels = match s.channels {
        ChannelScope::All => "all channels".to_owned(),
        ChannelScope::Only(set) => format!(
            "channels {}",
            set.iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(",")
        ),
    };
    format!(
        "{}: {}; {channels}; {}",
        account(&s.account),
        actions.join("+"),
        window(s.validity)
    )
}

/// The installer (per the device's report) switches the cloud service.
pub async fn service(cloud: &Cloud, serial: &str, enabled: bool) -> Result<(), CloudError> {
    let serial = serial_of(serial)?;
    let report = learn(cloud, &serial)
        .await
        .ok_or_else(|| no_report(&serial, cloud.ack_timeout()))?;
    let installer = match &report.binding {
        Binding::InstallerManaged { installer }
        | Binding::Owned {
            installer: Some(installer),
            ..
        } => installer.clone(),
        _ => return Err(unknown_holder(&serial, "installer")),
    };
    let id = cloud.with_model(|m| m.ensure_account(&installer));
    cloud.set_cloud_service(&id, &serial, enabled).await
}

/// The owner (per the device's report).
async fn owner(cloud: &Cloud, serial: &Serial) -> Result<AccountId, CloudError> {
    let report = learn(cloud, serial)
        .await
        .ok_or_else(|| no_report(serial, cloud.ack_timeout()))?;
    match &report.binding {
        Binding::Owned { owner, .. } => Ok(cloud.with_model(|m| m.ensure_account(owner))),
        _ => Err(unknown_holder(serial, "owner")),
    }
}

/// Parses an account id and region.
pub fn account_ref(id: &str, region: &str) -> Result<AccountRef, CloudError> {
    Ok(AccountRef {
        id: AccountId::new(id).map_err(|e| CloudError::Invalid {
            what: "account id",
            message: e.to_string(),
        })?,
        region: Region::new(region).map_err(|e| CloudError::Invalid {
            what: "region",
            message: e.to_string(),
        })?,
    })
}

/// The owner shares the device with account `to`.
pub async fn share(
    cloud: &Cloud,
    serial: &str,
    to: &AccountRef,
    permissions: Permissions,
    channels: ChannelScope,
    validity: Option<Validity>,
) -> Result<(), CloudError> {
    let serial = serial_of(serial)?;
    let owner = owner(cloud, &serial).await?;
    let target = cloud.with_model(|m| m.ensure_account(to));
    cloud
        .share(
            &owner,
            &serial,
            target.as_str(),
            permissions,
            channels,
            validity,
        )
        .await
}

/// The owner stops sharing with `accounts` (ids), or with everyone.
pub async fn unshare(cloud: &Cloud, serial: &str, accounts: &[String]) -> Result<(), CloudError> {
    let serial = serial_of(serial)?;
    let owner = owner(cloud, &serial).await?;
    if accounts.is_empty() {
        cloud.unshare_all(&owner, &serial).await
    } else {
        let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
        cloud.unshare(&owner, &serial, &names).await
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
) -> Result<(), CloudError> {
    let serial = serial_of(serial)?;
    if learn(cloud, &serial).await.is_none() {
        return Err(no_report(&serial, cloud.ack_timeout()));
    }
    let id = cloud.with_model(|m| m.ensure_account(account));
    match bind_as {
        BindAs::Owner => cloud.bind_owner(&id, &serial, code).await,
        BindAs::Installer => {
            let site = cloud.with_model(|m| m.create_site(&id, "field"))?;
            cloud.add_to_site(&id, site, &serial, code).await
        }
    }
}
