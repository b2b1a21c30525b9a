//! Field-engineer operations against a running broker, from a PKI
//! directory: the device's status, the cloud service switch (one device or
//! a whole site), sharing, unsharing and binding. What `sim-device
//! status|service|share|unshare|bind` runs.
//!
//! A field-engineer process is a cloud without the account directory: it
//! learns who holds a device (owner, installer, shares) from the device's
//! retained state report and acts as them: the installer switches the
//! cloud service, the owner shares. The cloud-side rules of
//! [`super::model`] still apply (region, who may switch, ...), and the
//! device applies its own.
//!
//! - **Offline first.** Before anything is sent, the device's retained
//!   status is read: a device whose status says offline (its last will,
//!   or the goodbye its agent publishes when it stops) fails at once with
//!   [`OperationError::Offline`], and one the broker holds nothing about
//!   with [`OperationError::NeverSeen`]. Only an online device that does
//!   not acknowledge in time gives the product's "Network busy". The
//!   status carries no time, so "offline since" cannot be told.
//! - **Sites.** A site is the set of devices an installer manages. This
//!   process has no site records, so [`service_for_site`] finds the site
//!   from the retained state reports of every device on the broker (the
//!   driver subscribes to `dev/+/state`): each device whose report names
//!   the installer, before or after the handover, at most
//!   [`MAX_SITE_DEVICES`] of them.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use protocol::access::Action;
use protocol::messages::{Binding, StateReport};
use protocol::{
    AccountId, AccountRef, ChannelScope, InstallerGrants, Region, Serial, ShareEntry, Validity,
};

use super::driver::{load_seed, Cloud, CloudOptions, DriverError, DEFAULT_ACK_TIMEOUT};
use super::model::{CloudError, CloudModel, ShareTerms};
use crate::pki::{Pki, PkiError};

/// How long the retained status may lag behind the retained state report
/// (they are separate topics, delivered in no particular order).
const STATUS_WAIT: Duration = Duration::from_millis(500);
/// Site discovery: the retained reports are all here once none arrived
/// for this long...
const DISCOVERY_QUIET: Duration = Duration::from_millis(300);
/// ...or after this long in all, however many keep arriving (a broker
/// with a live fleet never goes quiet).
const DISCOVERY_LIMIT: Duration = Duration::from_secs(3);
/// Devices one site switch handles. No protocol limit bounds a site; this
/// bounds the site list a broker full of reports can make this process
/// build, far above a real installer's site. A larger site is refused
/// whole rather than switched in part: an engineer who asked for the site
/// expects all of it.
pub const MAX_SITE_DEVICES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum FieldError {
    #[error("PKI: {0}")]
    Pki(#[from] PkiError),
    #[error("{0}")]
    Driver(#[from] DriverError),
}

/// Why a field operation on one device failed. `Display` is the line the
/// field engineer reads.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    /// The retained status says offline: nothing was sent, so nothing will
    /// surface on the device later.
    #[error(
        "device {serial} is offline (its retained status, from its last will or its shutdown, \
         says so); nothing was sent"
    )]
    Offline { serial: Serial },
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

/// Why a site-wide switch could not start (nothing was sent).
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error(
        "no device on this broker names {installer} as its installer \
         ({reports_seen} state reports seen)"
    )]
    NoDevices {
        installer: AccountId,
        reports_seen: usize,
    },
    #[error(
        "more than {MAX_SITE_DEVICES} devices name {installer} as their installer; \
         switch them by --serial"
    )]
    TooManyDevices { installer: AccountId },
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
    match (cloud.online(serial), report) {
        (Some(false), _) => Err(OperationError::Offline {
            serial: serial.clone(),
        }),
        (None, None) => Err(OperationError::NeverSeen {
            serial: serial.clone(),
            waited_ms: (cloud.ack_timeout() + STATUS_WAIT).as_millis() as u64,
        }),
        // Online, or a status that has not arrived yet: the driver waits
        // for it within the acknowledgement timeout.
        (_, Some(report)) => Ok(report),
        // Online without a state report: the agent publishes one on every
        // connect, so it is not answering as it should.
        (Some(true), None) => Err(no_report(serial, cloud.ack_timeout()).into()),
    }
}

fn serial_of(text: &str) -> Result<Serial, CloudError> {
    Serial::new(text).map_err(|e| CloudError::Invalid {
        what: "serial",
        message: e.to_string(),
    })
}

fn account_id_of(text: &str) -> Result<AccountId, CloudError> {
    AccountId::new(text).map_err(|e| CloudError::Invalid {
        what: "account id",
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

/// What the broker holds about one device.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub serial: Serial,
    /// The retained status: `None` if the broker holds none.
    pub online: Option<bool>,
    /// The retained state report (for an offline device: its last one).
    pub report: Option<StateReport>,
}

impl DeviceView {
    /// Online with a state report: what a healthy device looks like.
    pub fn is_healthy(&self) -> bool {
        self.online == Some(true) && self.report.is_some()
    }

    /// The text `sim-device status` prints.
    pub fn text(&self) -> String {
        describe(&self.serial, self.online, self.report.as_ref())
    }
}

/// A readable status of one device.
pub async fn status(cloud: &Cloud, serial: &str) -> Result<DeviceView, CloudError> {
    let serial = serial_of(serial)?;
    let report = learn(cloud, &serial).await;
    Ok(DeviceView {
        online: cloud.online(&serial),
        serial,
        report,
    })
}

/// The text `sim-device status` prints for a device.
pub fn describe(serial: &Serial, online: Option<bool>, report: Option<&StateReport>) -> String {
    let mut out = String::new();
    let link = match online {
        Some(true) => "online",
        Some(false) => "offline (retained status from its last will or its shutdown)",
        None => "unknown (the broker holds no status for it: never connected here)",
    };
    let _ = writeln!(out, "{serial}: {link}");
    let Some(r) = report else {
        let _ = writeln!(out, "  no state report");
        return out;
    };
    if online != Some(true) {
        // The broker keeps the report; the device may have changed since.
        let _ = writeln!(out, "  its last state report:");
    }
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
pub async fn service(cloud: &Cloud, serial: &str, enabled: bool) -> Result<(), OperationError> {
    let serial = serial_of(serial)?;
    let report = reachable(cloud, &serial).await?;
    let installer = report
        .binding
        .installer()
        .cloned()
        .ok_or_else(|| unknown_holder(&serial, "installer"))?;
    let id = cloud.with_model(|m| m.ensure_account(&installer));
    Ok(cloud.set_cloud_service(&id, &serial, enabled).await?)
}

/// The devices of an installer's site, found in the retained state
/// reports (sorted by serial), and how many reports were seen in all.
pub async fn discover_site(
    cloud: &Cloud,
    installer: &AccountId,
) -> Result<(Vec<Serial>, usize), SiteError> {
    cloud.wait_quiet(DISCOVERY_QUIET, DISCOVERY_LIMIT).await;
    let (mut found, reports_seen, too_many) = cloud.with_model(|m| {
        let mut found = Vec::new();
        let mut reports_seen = 0;
        for record in m.devices() {
            let Some(report) = &record.report else {
                continue;
            };
            reports_seen += 1;
            if report
                .binding
                .installer()
                .is_some_and(|i| &i.id == installer)
            {
                if found.len() == MAX_SITE_DEVICES {
                    return (found, reports_seen, true);
                }
                found.push(record.serial.clone());
            }
        }
        (found, reports_seen, false)
    });
    if too_many {
        return Err(SiteError::TooManyDevices {
            installer: installer.clone(),
        });
    }
    if found.is_empty() {
        return Err(SiteError::NoDevices {
            installer: installer.clone(),
            reports_seen,
        });
    }
    found.sort();
    Ok((found, reports_seen))
}

/// The outcome of switching a whole site.
#[derive(Debug)]
pub struct SiteSwitch {
    pub installer: AccountId,
    pub enabled: bool,
    /// One outcome per device of the site, by serial.
    pub outcomes: Vec<(Serial, Result<(), OperationError>)>,
}

impl SiteSwitch {
    /// Every device of the site was switched.
    pub fn all_switched(&self) -> bool {
        self.outcomes.iter().all(|(_, r)| r.is_ok())
    }

    /// The line for one device: what was done, or why not.
    pub fn line(&self, serial: &Serial, result: &Result<(), OperationError>) -> String {
        match result {
            Ok(()) => format!("{serial}: cloud service {}", on_off(self.enabled)),
            Err(e) => format!("{serial}: {e}"),
        }
    }

    /// `site of installer acme: 3 devices; 2 switched off, 1 offline, 0 failed`.
    pub fn summary(&self) -> String {
        let switched = self.outcomes.iter().filter(|(_, r)| r.is_ok()).count();
        let offline = self
            .outcomes
            .iter()
            .filter(|(_, r)| matches!(r, Err(OperationError::Offline { .. })))
            .count();
        let failed = self.outcomes.len() - switched - offline;
        format!(
            "site of installer {}: {} devices; {switched} switched {}, {offline} offline, {failed} failed",
            self.installer,
            self.outcomes.len(),
            on_off(self.enabled)
        )
    }
}

/// The installer switches the cloud service of every device of its site
/// (see the module notes): one outcome per device, an offline one
/// included. One device after the other, so that each line is the
/// device's own answer.
pub async fn service_for_site(
    cloud: &Cloud,
    installer: &str,
    enabled: bool,
) -> Result<SiteSwitch, SiteError> {
    let installer = account_id_of(installer)?;
    let (serials, _) = discover_site(cloud, &installer).await?;
    let mut outcomes = Vec::with_capacity(serials.len());
    for serial in serials {
        let result = service(cloud, serial.as_str(), enabled).await;
        outcomes.push((serial, result));
    }
    Ok(SiteSwitch {
        installer,
        enabled,
        outcomes,
    })
}

/// The owner (per the device's report).
async fn owner(cloud: &Cloud, serial: &Serial) -> Result<AccountId, OperationError> {
    let report = reachable(cloud, serial).await?;
    match &report.binding {
        Binding::Owned { owner, .. } => Ok(cloud.with_model(|m| m.ensure_account(owner))),
        _ => Err(unknown_holder(serial, "owner").into()),
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
    terms: ShareTerms,
) -> Result<(), OperationError> {
    let serial = serial_of(serial)?;
    let owner = owner(cloud, &serial).await?;
    let target = cloud.with_model(|m| m.ensure_account(to));
    Ok(cloud.share(&owner, &serial, target.as_str(), terms).await?)
}

/// The owner stops sharing with `accounts` (ids), or with everyone.
pub async fn unshare(
    cloud: &Cloud,
    serial: &str,
    accounts: &[String],
) -> Result<(), OperationError> {
    let serial = serial_of(serial)?;
    let owner = owner(cloud, &serial).await?;
    if accounts.is_empty() {
        Ok(cloud.unshare_all(&owner, &serial).await?)
    } else {
        let names: Vec<&str> = accounts.iter().map(String::as_str).collect();
        Ok(cloud.unshare(&owner, &serial, &names).await?)
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
        BindAs::Owner => Ok(cloud.bind_owner(&id, &serial, code).await?),
        BindAs::Installer => {
            let site = cloud.with_model(|m| m.create_site(&id, "field"))?;
            Ok(cloud.add_to_site(&id, site, &serial, code).await?)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_428_000), "2026-11-23 10:00 UTC");
    }

    fn serial(text: &str) -> Serial {
        Serial::new(text).unwrap()
    }

    #[test]
    fn offline_is_said_plainly_and_not_as_network_busy() {
        let text = OperationError::Offline {
            serial: serial("NVR-3"),
        }
        .to_string();
        assert!(text.starts_with("device NVR-3 is offline"), "{text}");
        assert!(text.contains("nothing was sent"), "{text}");
        assert!(!text.contains("Network busy"), "{text}");
    }

    #[test]
    fn site_summary_counts_switched_offline_and_failed_apart() {
        let switch = SiteSwitch {
            installer: AccountId::new("acme").unwrap(),
            enabled: false,
            outcomes: vec![
                (serial("NVR-1"), Ok(())),
                (serial("NVR-2"), Ok(())),
                (
                    serial("NVR-3"),
                    Err(OperationError::Offline {
                        serial: serial("NVR-3"),
                    }),
                ),
                (
                    serial("NVR-4"),
                    Err(OperationError::Cloud(CloudError::NetworkBusy {
                        serial: "NVR-4".into(),
                        waited_ms: 3000,
                    })),
                ),
            ],
        };
        assert!(!switch.all_switched());
        assert_eq!(
            switch.summary(),
            "site of installer acme: 4 devices; 2 switched off, 1 offline, 1 failed"
        );
        let (s, r) = &switch.outcomes[0];
        assert_eq!(switch.line(s, r), "NVR-1: cloud service off");
        let (s, r) = &switch.outcomes[2];
        assert!(switch
            .line(s, r)
            .starts_with("NVR-3: device NVR-3 is offline"));
    }

    #[test]
    fn describe_names_an_offline_and_an_unknown_link() {
        let text = describe(&serial("NVR-1"), Some(false), None);
        assert!(text.starts_with("NVR-1: offline"), "{text}");
        let text = describe(&serial("NVR-1"), None, None);
        assert!(text.starts_with("NVR-1: unknown"), "{text}");
    }
}
