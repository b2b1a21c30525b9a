//! What `sim-device status` shows: the broker's view of one device (its
//! retained status and state report) as readable text.

use std::fmt::Write as _;

use hc_protocol::access::Action;
use hc_protocol::messages::{Binding, StateReport};
use hc_protocol::{AccountRef, ChannelScope, InstallerGrants, Serial, ShareEntry, Validity};

use super::{learn, serial_of, Cloud};
use crate::cloud::model::CloudError;

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
                    grants_text(installer_grants)
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

pub(super) fn on_off(on: bool) -> &'static str {
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

/// An installer's rights as text: "live view (no time limit), may disable the
/// cloud service".
pub fn grants_text(g: &InstallerGrants) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utc_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00 UTC");
        assert_eq!(utc(1_795_428_000), "2026-11-23 10:00 UTC");
    }

    use crate::cloud::field::tests::serial;

    #[test]
    fn describe_names_an_offline_and_an_unknown_link() {
        let text = describe(&serial("NVR-1"), Some(false), None);
        assert!(text.starts_with("NVR-1: offline"), "{text}");
        let text = describe(&serial("NVR-1"), None, None);
        assert!(text.starts_with("NVR-1: unknown"), "{text}");
    }
}
