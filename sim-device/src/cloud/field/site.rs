//! Site-wide switches: an installer's site found in the retained state
//! reports on the broker, and the cloud service switched device by
//! device with one outcome each.

use std::time::Duration;

use hc_protocol::{AccountId, Serial};

use super::status::on_off;
use super::{account_id_of, service, Cloud, OperationError};
use crate::cloud::model::CloudError;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cloud::field::tests::serial;

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
                        since: 0,
                        stale: false,
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
}
