//! What `sim-device status` shows: the broker's view of one device (its
//! retained status and state report) as readable text, and what the status
//! says about the device by the cloud's clock ([`Presence`]).

use std::fmt::Write as _;

use hc_protocol::access::Action;
use hc_protocol::messages::{Binding, DeviceStatus, StateReport};
use hc_protocol::{AccountRef, ChannelScope, InstallerGrants, Serial, ShareEntry, Validity};

use super::{learn, serial_of, Cloud};
use crate::cloud::model::CloudError;

/// What a device's retained status says at the cloud's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// The broker holds no status for it.
    Unknown,
    /// Online, and refreshed in time.
    Online,
    /// Offline since `since` (Unix seconds, the status's `written_s`).
    /// `stale`: the status says online but was not refreshed in time (a
    /// broker node lost without publishing the device's last will, SPEC
    /// §2.4); otherwise the last will or the agent's shutdown said so.
    Offline { since: u64, stale: bool },
}

impl Presence {
    /// What `status` says at `now` (the cloud's clock, Unix seconds), by
    /// the protocol's one staleness rule (`DeviceStatus::offline_since`).
    pub fn of(status: Option<DeviceStatus>, now: u64) -> Presence {
        match status {
            None => Presence::Unknown,
            Some(s) => match s.offline_since(now) {
                None => Presence::Online,
                Some(since) => Presence::Offline {
                    since,
                    stale: s.online,
                },
            },
        }
    }

    /// Why the device counts as offline, for the field engineer.
    pub fn offline_why(stale: bool) -> &'static str {
        if stale {
            "its retained status says online but was not refreshed in time: the device or its broker node is gone"
        } else {
            "its retained status, from its last will or its shutdown, says so"
        }
    }
}

/// What the broker holds about one device.
#[derive(Debug, Clone)]
pub struct DeviceView {
    pub serial: Serial,
    /// What its retained status says, at the time it was read.
    pub presence: Presence,
    /// The retained state report (for an offline device: its last one).
    pub report: Option<StateReport>,
}

impl DeviceView {
    /// Online with a state report: what a healthy device looks like.
    pub fn is_healthy(&self) -> bool {
        self.presence == Presence::Online && self.report.is_some()
    }

    /// The text `sim-device status` prints.
    pub fn text(&self) -> String {
        describe(&self.serial, self.presence, self.report.as_ref())
    }
}

/// A readable status of one device.
pub async fn status(cloud: &Cloud, serial: &str) -> Result<DeviceView, CloudError> {
    let serial = serial_of(serial)?;
    let report = learn(cloud, &serial).await;
    Ok(DeviceView {
        presence: presence(cloud, &serial),
        serial,
        report,
    })
}

/// What the device's retained status says now, by the cloud's clock.
pub fn presence(cloud: &Cloud, serial: &Serial) -> Presence {
    Presence::of(cloud.status(serial), cloud.now())
}

/// The text `sim-device status` prints for a device.
pub fn describe(serial: &Serial, presence: Presence, report: Option<&StateReport>) -> String {
    let mut out = String::new();
    let link = match presence {
        Presence::Online => "online".to_owned(),
        Presence::Offline { since, stale } => {
            format!(
                "offline since {} ({})",
                utc(since),
                Presence::offline_why(stale)
            )
        }
        Presence::Unknown => {
            "unknown (the broker holds no status for it: never connected here)".to_owned()
        }
    };
    let _ = writeln!(out, "{serial}: {link}");
    let Some(r) = report else {
        let _ = writeln!(out, "  no state report");
        return out;
    };
    if presence != Presence::Online {
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
        let offline = Presence::Offline {
            since: 1_795_428_000,
            stale: false,
        };
        let text = describe(&serial("NVR-1"), offline, None);
        assert!(
            text.starts_with("NVR-1: offline since 2026-11-23 10:00 UTC (its retained status, from its last will"),
            "{text}"
        );
        let text = describe(&serial("NVR-1"), Presence::Unknown, None);
        assert!(text.starts_with("NVR-1: unknown"), "{text}");
    }

    #[test]
    fn an_online_status_not_refreshed_in_time_is_offline_since_it_was_written() {
        const T: u64 = 1_795_428_000;
        let status = Some(DeviceStatus::online(T, 300));
        assert_eq!(Presence::of(status, T + 630), Presence::Online);
        let stale = Presence::of(status, T + 631);
        assert_eq!(
            stale,
            Presence::Offline {
                since: T,
                stale: true
            }
        );
        let text = describe(&serial("NVR-1"), stale, None);
        assert!(
            text.starts_with("NVR-1: offline since 2026-11-23 10:00 UTC (its retained status says online but was not refreshed in time"),
            "{text}"
        );
        assert_eq!(
            Presence::of(Some(DeviceStatus::offline(T)), T),
            Presence::Offline {
                since: T,
                stale: false
            }
        );
        assert_eq!(Presence::of(None, T), Presence::Unknown);
    }
}
