//! The simulated cloud's own rules, one test each, against the pure model
//! (time passed in); and "Network busy" against the driver with a real
//! embedded TLS broker and no recorder answering.
//!
//! The tests follow the model's sub-domains: `accounts` (and binding),
//! `sites` (invitations and handover), `shares`, `service` (the cloud
//! service switch), `domains`, and `driver`.

mod accounts;
mod domains;
mod driver;
mod flows;
mod service;
mod shares;
mod sites;

use std::time::{Duration, Instant};

use hc_agent::shell::config::DomainConfig;
use hc_protocol::command::verify_bind_proof;
use hc_protocol::ddns::{DomainOutcome, DomainRegistration, IpAddress};
use hc_protocol::messages::{Binding, StateReport};
use hc_protocol::{
    AccountId, AccountRef, Ack, Action, BindRole, ChannelScope, CommandBody, DomainName, Grant,
    InstallerGrants, Permissions, Region, Serial, ShareEntry, Text, Validity,
};
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::cloud::driver::{load_or_create_seed, CloudOptions};
use sim_device::cloud::model::{
    CloudError, CloudModel, Commit, Contact, DeviceGrant, DeviceSelection, InstallerPermissions,
    Planned, ShareTerms, SiteId, SiteStatus, INVITATIONS_PER_DAY, REGISTRATION_TTL_SECS,
};
use sim_device::cloud::Cloud;
use sim_device::pki::Pki;

/// 2026-11-23 10:00 UTC.
const NOON: u64 = 1_795_428_000;
const DAY: u64 = 86_400;
const SERIAL: &str = "NVR-1";
const CODE: &str = "ABCDEF";

struct World {
    m: CloudModel,
    installer: AccountId,
    olivia: AccountId,
    frank: AccountId,
    fiona: AccountId,
    ursula: AccountId,
    steve: AccountId,
}

fn world() -> World {
    let mut m = CloudModel::new();
    m.register_device(SERIAL, CODE, "EU").unwrap();
    let mut account = |name: &str, email: Option<&str>, phone: Option<&str>, region: &str| {
        m.register_account(name, email, phone, region).unwrap()
    };
    let installer = account("acme", Some("ops@acme.example"), None, "EU");
    let olivia = account(
        "olivia",
        Some("olivia@example.com"),
        Some("+49 151 1"),
        "EU",
    );
    let frank = account("frank", Some("frank@example.com"), None, "EU");
    let fiona = account("fiona", None, Some("+49 (151) 22-22"), "EU");
    let ursula = account("ursula", Some("ursula@example.com"), None, "US");
    let steve = account("steve", Some("steve@example.com"), None, "EU");
    World {
        m,
        installer,
        olivia,
        frank,
        fiona,
        ursula,
        steve,
    }
}

fn serial() -> Serial {
    Serial::new(SERIAL).unwrap()
}

fn eu(id: &AccountId) -> AccountRef {
    AccountRef {
        id: id.clone(),
        region: Region::new("EU").unwrap(),
    }
}

fn live_view() -> Permissions {
    Permissions::of(&[Action::LiveView])
}

fn share_entry(id: &AccountId, validity: Option<Validity>) -> ShareEntry {
    ShareEntry {
        account: eu(id),
        permissions: live_view(),
        channels: ChannelScope::All,
        validity,
    }
}

/// A state report as the device would publish it.
fn report(
    binding: Binding,
    shares: Vec<ShareEntry>,
    cloud_service: bool,
    last_seq: u64,
) -> StateReport {
    StateReport {
        serial: serial(),
        agent_version: Text::new("0.1.0").unwrap(),
        region: Region::new("EU").unwrap(),
        channel_count: 8,
        binding,
        shares: shares.into_iter().collect(),
        cloud_service,
        platform_access: true,
        domain: DomainName::new("nvr-1").unwrap(),
        last_seq,
        trusted_time_floor: NOON,
        reports_dropped: 0,
        clock_offset_ms: None,
        sessions_contested: 0,
        sessions_lost: 0,
        behind: false,
        command_key_ids: heapless::Vec::from_slice(&[1]).expect("one id"),
        certificate_not_after: None,
    }
}

/// Only "Allow me to disable the cloud service".
fn may_disable() -> InstallerGrants {
    InstallerGrants {
        may_disable_cloud: true,
        ..InstallerGrants::default()
    }
}

/// From noon for `secs`.
fn from_noon(secs: u64) -> Validity {
    Validity {
        not_before: NOON,
        not_after: NOON + secs,
    }
}

fn owned_by(w: &World, grants: InstallerGrants) -> Binding {
    Binding::Owned {
        owner: eu(&w.olivia),
        installer: Some(eu(&w.installer)),
        installer_grants: grants,
    }
}

/// The device reports itself owned by olivia, with the installer kept
/// without grants.
fn report_owned(w: &mut World, shares: Vec<ShareEntry>, cloud_service: bool, last_seq: u64) {
    let binding = owned_by(w, InstallerGrants::default());
    w.m.on_state_report(report(binding, shares, cloud_service, last_seq));
}

/// The cloud refuses with `expected`.
#[track_caller]
fn refused<T: std::fmt::Debug>(result: Result<T, CloudError>, expected: CloudError) {
    assert_eq!(result.unwrap_err(), expected);
}

/// The world with a site that has the device in it.
fn world_with_site() -> (World, SiteId) {
    let mut w = world();
    let site = site_with_device(&mut w);
    (w, site)
}

/// A site with the device in it (the device accepted the bind).
fn site_with_device(w: &mut World) -> SiteId {
    let site = w.m.create_site(&w.installer, "Bakery").unwrap();
    let planned =
        w.m.plan_add_to_site(&w.installer, site, SERIAL, CODE)
            .unwrap();
    w.m.commit(&planned.on_accept);
    site
}

/// Every device of the handover acknowledged its `Handover`.
fn acknowledge_all(w: &mut World, plan: &sim_device::cloud::model::HandoverPlan) {
    for command in &plan.commands {
        w.m.commit(&command.on_accept);
    }
}

/// The installer invites `contact`, asking for no permissions.
fn invite(
    w: &mut World,
    site: SiteId,
    contact: Contact,
    now: u64,
) -> Result<sim_device::cloud::InvitationId, CloudError> {
    let permissions = InstallerPermissions::default();
    w.m.invite(&w.installer, site, contact, permissions, "", now)
}

fn invite_olivia(
    w: &mut World,
    site: SiteId,
    now: u64,
) -> Result<sim_device::cloud::InvitationId, CloudError> {
    invite(w, site, Contact::email("olivia@example.com").unwrap(), now)
}

// ------------------------------------------------------------------ product messages

#[test]
fn errors_read_as_the_product_says_them() {
    assert_eq!(
        CloudError::AccountNotFound.to_string(),
        "The account doesn't exist"
    );
    assert_eq!(
        CloudError::CrossRegionShare.to_string(),
        "Cross-regional share operation is not allowed"
    );
    assert_eq!(
        CloudError::InvitationLimit.to_string(),
        "You can send at most five invitations in one day"
    );
    assert_eq!(
        CloudError::NetworkBusy {
            serial: "S".into(),
            waited_ms: 3000
        }
        .to_string(),
        "Network busy\ndevice S did not answer within 3 s"
    );
    for (status, text) in [
        (SiteStatus::NotInvited, "Not Invited"),
        (SiteStatus::NotRegistered, "Not Registered"),
        (SiteStatus::NotAccepted, "Not Accepted"),
        (SiteStatus::HandedOver, "Handed Over"),
    ] {
        assert_eq!(status.to_string(), text);
    }
}
