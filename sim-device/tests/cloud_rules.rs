//! The simulated cloud's own rules, one test each, against the pure model
//! (time passed in); and "Network busy" against the driver with a real
//! embedded TLS broker and no recorder answering.

use std::time::{Duration, Instant};

use agent::shell::config::DomainConfig;
use protocol::command::verify_bind_proof;
use protocol::ddns::{DomainOutcome, DomainRegistration, IpAddress};
use protocol::messages::{Binding, StateReport};
use protocol::{
    AccountId, AccountRef, Action, BindRole, ChannelScope, CommandBody, DomainName, Grant,
    InstallerGrants, Permissions, Region, Serial, ShareEntry, Text, Validity,
};
use sim_device::broker::{BrokerConfig, EmbeddedBroker};
use sim_device::cloud::driver::{load_or_create_seed, CloudOptions};
use sim_device::cloud::model::{
    CloudError, CloudModel, Commit, Contact, DeviceGrant, DeviceSelection, InstallerPermissions,
    ShareTerms, SiteId, SiteStatus, INVITATIONS_PER_DAY, REGISTRATION_TTL_SECS,
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

/// A site with the device in it (the device accepted the bind).
fn site_with_device(w: &mut World) -> SiteId {
    let site = w.m.create_site(&w.installer, "Bakery").unwrap();
    let planned =
        w.m.plan_add_to_site(&w.installer, site, SERIAL, CODE)
            .unwrap();
    w.m.commit(&planned.on_accept);
    site
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
        "Network busy: device S did not answer within 3 s"
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

// ------------------------------------------------------------------ accounts

#[test]
fn accounts_are_found_by_email_phone_or_user_name() {
    let w = world();
    assert_eq!(w.m.find_account("Frank@Example.com").unwrap().id, w.frank);
    assert_eq!(w.m.find_account("+49 151 22 22").unwrap().id, w.fiona);
    assert_eq!(w.m.find_account("+4915122-22").unwrap().id, w.fiona);
    assert_eq!(w.m.find_account("steve").unwrap().id, w.steve);
    refused(
        w.m.find_account("nobody@example.com"),
        CloudError::AccountNotFound,
    );
    refused(w.m.find_account("+1 555 0000"), CloudError::AccountNotFound);
}

// ------------------------------------------------------------------ binding

#[test]
fn binding_needs_the_verification_code_and_one_account_per_device() {
    let mut w = world();
    let site = w.m.create_site(&w.installer, "Bakery").unwrap();
    refused(
        w.m.plan_add_to_site(&w.installer, site, SERIAL, "WRONG1"),
        CloudError::WrongVerificationCode,
    );
    refused(
        w.m.plan_add_to_site(&w.olivia, site, SERIAL, CODE),
        CloudError::NotSiteInstaller,
    );
    assert!(matches!(
        w.m.plan_add_to_site(&w.installer, site, "NVR-404", CODE),
        Err(CloudError::DeviceNotFound(_))
    ));
    let planned =
        w.m.plan_add_to_site(&w.installer, site, SERIAL, CODE)
            .unwrap();
    assert_eq!(planned.actor, eu(&w.installer));
    let CommandBody::Bind { role, proof } = planned.body else {
        panic!("not a bind: {:?}", planned.body);
    };
    assert_eq!(role, BindRole::Installer);
    assert!(verify_bind_proof(
        CODE.as_bytes(),
        &serial(),
        &w.installer,
        &proof
    ));
    // Recorded only once the device accepted.
    assert!(w.m.site(site).unwrap().devices.is_empty());
    w.m.commit(&planned.on_accept);
    assert_eq!(w.m.site(site).unwrap().devices, vec![serial()]);
    // "One device can only be added into one account."
    refused(
        w.m.plan_bind_owner(&w.frank, SERIAL, CODE),
        CloudError::DeviceAlreadyAdded,
    );
}

#[test]
fn a_device_bound_per_its_report_cannot_be_added_and_regions_must_match() {
    let mut w = world();
    let ursula = w.ursula.clone();
    refused(
        w.m.plan_bind_owner(&ursula, SERIAL, CODE),
        CloudError::CrossRegion,
    );
    let planned = w.m.plan_bind_owner(&w.olivia, SERIAL, CODE).unwrap();
    assert!(matches!(
        planned.body,
        CommandBody::Bind {
            role: BindRole::Owner,
            ..
        }
    ));
    assert_eq!(planned.on_accept, Commit::Nothing);
    report_owned(&mut w, vec![], true, 1);
    refused(
        w.m.plan_bind_owner(&w.frank, SERIAL, CODE),
        CloudError::DeviceAlreadyAdded,
    );
}

// ------------------------------------------------------------------ invitations

#[test]
fn site_status_goes_not_invited_not_registered_not_accepted_handed_over() {
    let mut w = world();
    let site = site_with_device(&mut w);
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotInvited);
    let id = invite(
        &mut w,
        site,
        Contact::email("newcomer@example.com").unwrap(),
        NOON,
    )
    .unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotRegistered);
    let newcomer =
        w.m.register_account("newcomer", Some("newcomer@example.com"), None, "EU")
            .unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotAccepted);
    // Someone else cannot accept it.
    refused(
        w.m.accept_invitation(id, &w.frank, NOON),
        CloudError::NotTheInvitee,
    );
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotAccepted);
    w.m.accept_invitation(id, &newcomer, NOON + 10).unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::HandedOver);
    // Nothing more to invite, resend or accept.
    refused(
        invite_olivia(&mut w, site, NOON + 20),
        CloudError::SiteHandedOver,
    );
    refused(
        w.m.resend_invitation(&w.installer, site, NOON + 20),
        CloudError::SiteHandedOver,
    );
    refused(
        w.m.accept_invitation(id, &newcomer, NOON + 30),
        CloudError::SiteHandedOver,
    );
}

#[test]
fn invitation_by_phone_is_matched_on_the_normalized_number() {
    let mut w = world();
    let site = site_with_device(&mut w);
    let id = invite(
        &mut w,
        site,
        Contact::phone("+49 (151) 22 22").unwrap(),
        NOON,
    )
    .unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotAccepted);
    w.m.accept_invitation(id, &w.fiona.clone(), NOON).unwrap();
    refused(Contact::email("not an email"), CloudError::InvalidContact);
    refused(Contact::phone("call me"), CloudError::InvalidContact);
}

#[test]
fn a_sixth_invitation_in_one_utc_day_is_refused() {
    let mut w = world();
    let site = site_with_device(&mut w);
    // Day boundaries are UTC: start just after midnight.
    let midnight = NOON - NOON % DAY;
    for i in 0..INVITATIONS_PER_DAY as u64 {
        invite_olivia(&mut w, site, midnight + i * 3600).unwrap();
    }
    assert_eq!(
        w.m.invitations_sent_today(site, midnight + DAY - 1)
            .unwrap(),
        5
    );
    refused(
        invite_olivia(&mut w, site, midnight + DAY - 1),
        CloudError::InvitationLimit,
    );
    refused(
        w.m.resend_invitation(&w.installer, site, midnight + DAY - 1),
        CloudError::InvitationLimit,
    );
    // The refused ones changed nothing, and the next UTC day starts afresh.
    assert_eq!(w.m.site(site).unwrap().invitations.len(), 5);
    assert_eq!(w.m.invitations_sent_today(site, midnight + DAY).unwrap(), 0);
    invite_olivia(&mut w, site, midnight + DAY).unwrap();
}

#[test]
fn a_new_invitation_invalidates_the_previous_one() {
    let mut w = world();
    let site = site_with_device(&mut w);
    let first = invite_olivia(&mut w, site, NOON).unwrap();
    let second = invite_olivia(&mut w, site, NOON + 60).unwrap();
    assert_ne!(first, second);
    refused(
        w.m.accept_invitation(first, &w.olivia.clone(), NOON + 120),
        CloudError::InvitationInvalid,
    );
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotAccepted);
    w.m.accept_invitation(second, &w.olivia.clone(), NOON + 120)
        .unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::HandedOver);
}

#[test]
fn resending_before_acceptance_is_a_new_invitation_that_counts() {
    let mut w = world();
    let site = site_with_device(&mut w);
    refused(
        w.m.resend_invitation(&w.installer, site, NOON),
        CloudError::NothingToResend,
    );
    let first = invite_olivia(&mut w, site, NOON).unwrap();
    let again = w.m.resend_invitation(&w.installer, site, NOON + 1).unwrap();
    assert_ne!(first, again);
    assert_eq!(w.m.invitations_sent_today(site, NOON + 1).unwrap(), 2);
    let resent = w.m.invitation(again).unwrap();
    assert_eq!(resent.contact, Contact::Email("olivia@example.com".into()));
    assert!(w.m.invitation(first).unwrap().superseded);
    refused(
        w.m.resend_invitation(&w.frank, site, NOON + 2),
        CloudError::NotSiteInstaller,
    );
}

#[test]
fn permissions_need_devices_in_the_site_and_become_per_device_grants() {
    let mut w = world();
    let empty = w.m.create_site(&w.installer, "Empty").unwrap();
    let window = Validity {
        not_before: NOON,
        not_after: NOON + 3600,
    };
    let asked = InstallerPermissions {
        site_info: Some(Grant { validity: None }),
        live_view: Some(DeviceGrant {
            devices: DeviceSelection::All,
            validity: Some(window),
        }),
        playback: None,
        configuration: Some(DeviceGrant {
            devices: DeviceSelection::Only(vec![serial()]),
            validity: None,
        }),
        allow_disable_cloud: true,
    };
    let contact = Contact::email("olivia@example.com").unwrap();
    refused(
        w.m.invite(
            &w.installer,
            empty,
            contact.clone(),
            asked.clone(),
            "",
            NOON,
        ),
        CloudError::NoDevicesForPermissions,
    );
    let site = site_with_device(&mut w);
    let mut reversed = asked.clone();
    reversed.live_view.as_mut().unwrap().validity = Some(Validity {
        not_before: NOON + 10,
        not_after: NOON,
    });
    refused(
        w.m.invite(&w.installer, site, contact.clone(), reversed, "", NOON),
        CloudError::InvalidValidity,
    );
    let id =
        w.m.invite(&w.installer, site, contact, asked, "please accept", NOON)
            .unwrap();
    let plan = w.m.accept_invitation(id, &w.olivia.clone(), NOON).unwrap();
    assert_eq!(plan.owner, eu(&w.olivia));
    assert_eq!(plan.commands.len(), 1);
    let command = &plan.commands[0];
    assert_eq!(command.actor, eu(&w.olivia), "sent by the accepting owner");
    assert_eq!(
        command.body,
        CommandBody::Handover {
            installer_grants: InstallerGrants {
                site_info: Some(Grant { validity: None }),
                configuration: Some(Grant { validity: None }),
                live_view: Some(Grant {
                    validity: Some(window)
                }),
                playback: None,
                may_disable_cloud: true,
            }
        }
    );
}

// ------------------------------------------------------------------ sharing

#[test]
fn sharing_across_regions_is_refused_by_the_cloud() {
    let mut w = world();
    report_owned(&mut w, vec![], true, 3);
    refused(
        w.m.plan_share(
            &w.olivia,
            SERIAL,
            "ursula@example.com",
            ShareTerms::always(live_view()),
        ),
        CloudError::CrossRegionShare,
    );
}

#[test]
fn sharing_with_a_missing_account_is_refused_and_found_ones_are_planned() {
    let mut w = world();
    report_owned(&mut w, vec![], true, 3);
    refused(
        w.m.plan_share(
            &w.olivia,
            SERIAL,
            "nobody@example.com",
            ShareTerms::always(live_view()),
        ),
        CloudError::AccountNotFound,
    );
    for name in ["frank@example.com", "frank", "+49 151 2222"] {
        let planned =
            w.m.plan_share(&w.olivia, SERIAL, name, ShareTerms::always(live_view()))
                .unwrap();
        assert_eq!(planned.actor, eu(&w.olivia));
        let CommandBody::Share { account, .. } = &planned.body else {
            panic!("{:?}", planned.body);
        };
        let expected = if name == "+49 151 2222" {
            &w.fiona
        } else {
            &w.frank
        };
        assert_eq!(&account.id, expected, "{name}");
    }
    // Only the owner shares; nobody shares with themself.
    refused(
        w.m.plan_share(&w.frank, SERIAL, "steve", ShareTerms::always(live_view())),
        CloudError::NotOwner,
    );
    refused(
        w.m.plan_share(&w.olivia, SERIAL, "olivia", ShareTerms::always(live_view())),
        CloudError::CannotShareWithSelf,
    );
    let manage = Permissions::of(&[Action::ShareManagement]);
    refused(
        w.m.plan_share(&w.olivia, SERIAL, "frank", ShareTerms::always(manage)),
        CloudError::PermissionsNotShareable,
    );
}

#[test]
fn the_owner_lists_shares_and_deletes_one_several_or_all() {
    let mut w = world();
    let shares = vec![
        share_entry(&w.frank, None),
        share_entry(&w.fiona, None),
        share_entry(&w.steve, None),
    ];
    report_owned(&mut w, shares, true, 5);
    let listed: Vec<String> =
        w.m.list_shares(&w.olivia, SERIAL)
            .unwrap()
            .iter()
            .map(|s| s.label())
            .collect();
    assert_eq!(
        listed,
        ["frank@example.com", "+491512222", "steve@example.com"]
    );
    refused(w.m.list_shares(&w.frank, SERIAL), CloudError::NotOwner);

    let one = w.m.plan_unshare(&w.olivia, SERIAL, &["frank"]).unwrap();
    assert_eq!(
        one.body,
        CommandBody::Unshare {
            accounts: [w.frank.clone()].into_iter().collect()
        }
    );
    let several =
        w.m.plan_unshare(&w.olivia, SERIAL, &["frank@example.com", "+49 151 22 22"])
            .unwrap();
    assert_eq!(
        several.body,
        CommandBody::Unshare {
            accounts: [w.frank.clone(), w.fiona.clone()].into_iter().collect()
        }
    );
    refused(
        w.m.plan_unshare(&w.olivia, SERIAL, &["ursula@example.com"]),
        CloudError::NotSharedWith("ursula@example.com".into()),
    );
    refused(
        w.m.plan_unshare(&w.olivia, SERIAL, &[]),
        CloudError::NothingSelected,
    );
    let all = w.m.plan_unshare_all(&w.olivia, SERIAL).unwrap();
    assert_eq!(all.body, CommandBody::UnshareAll);
    assert_eq!(all.actor, eu(&w.olivia));
    refused(w.m.plan_unshare_all(&w.steve, SERIAL), CloudError::NotOwner);
}

#[test]
fn the_receiver_deletes_a_share_from_its_side() {
    let mut w = world();
    let shares = vec![share_entry(&w.frank, None)];
    report_owned(&mut w, shares, true, 5);
    let received = w.m.shared_with(&w.frank);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].domain.as_str(), "nvr-1");
    assert_eq!(received[0].owner, eu(&w.olivia));
    let planned = w.m.plan_leave_share(&w.frank, SERIAL).unwrap();
    assert_eq!(planned.body, CommandBody::LeaveShare);
    assert_eq!(planned.actor, eu(&w.frank), "the receiver is the actor");
    refused(
        w.m.plan_leave_share(&w.steve, SERIAL),
        CloudError::NotSharedWith("steve".into()),
    );
}

#[test]
fn an_older_state_report_does_not_replace_a_newer_one() {
    let mut w = world();
    report_owned(&mut w, vec![], true, 9);
    w.m.on_state_report(report(Binding::Unbound, vec![], true, 4));
    assert_eq!(w.m.report(SERIAL).unwrap().last_seq, 9);
    assert_eq!(w.m.owner_of(SERIAL), Some(w.olivia.clone()));
}

// ------------------------------------------------------------------ the cloud service switch

#[test]
fn only_an_installer_allowed_to_disable_it_switches_the_cloud_service() {
    let mut w = world();
    let site = site_with_device(&mut w);
    let with_flag = InstallerGrants {
        may_disable_cloud: true,
        ..InstallerGrants::default()
    };
    w.m.on_state_report(report(owned_by(&w, with_flag), vec![], true, 5));
    let planned =
        w.m.plan_set_cloud_service(&w.installer, SERIAL, false)
            .unwrap();
    assert_eq!(
        planned.body,
        CommandBody::SetCloudService { enabled: false }
    );
    assert_eq!(planned.actor, eu(&w.installer));
    let per_device =
        w.m.plan_set_cloud_service_for_site(&w.installer, site, false)
            .unwrap();
    assert_eq!(per_device.len(), 1);
    assert!(per_device[0].1.is_ok());
    refused(
        w.m.plan_set_cloud_service(&w.olivia, SERIAL, false),
        CloudError::NotSiteInstaller,
    );
    assert!(w.m.plan_remove_from_owner(&w.installer, SERIAL).is_ok());

    report_owned(&mut w, vec![], true, 6);
    refused(
        w.m.plan_set_cloud_service(&w.installer, SERIAL, false),
        CloudError::NotAllowedToDisableCloud,
    );
    refused(
        w.m.plan_remove_from_owner(&w.installer, SERIAL),
        CloudError::NotAllowedToDisableCloud,
    );
}

// ------------------------------------------------------------------ domains

fn registration(name: &str, attempt: u32) -> DomainRegistration {
    DomainRegistration {
        attempt,
        domain: DomainName::new(name).unwrap(),
        lan_address: IpAddress::V4([192, 168, 1, 64]),
        ports: DomainConfig::default().ports(),
        mappings: heapless::Vec::new(),
    }
}

const SEEN: IpAddress = IpAddress::V4([203, 0, 113, 7]);

#[test]
fn a_name_held_by_another_live_registration_is_taken() {
    let mut w = world();
    let other = Serial::new("NVR-2").unwrap();
    let r =
        w.m.on_domain_registration(&serial(), &registration("shop", 1), SEEN, NOON);
    assert_eq!(
        r.outcome,
        DomainOutcome::Registered {
            public_address: SEEN,
            expires_in: REGISTRATION_TTL_SECS
        }
    );
    assert_eq!(r.attempt, 1);
    let taken =
        w.m.on_domain_registration(&other, &registration("shop", 7), SEEN, NOON + 1);
    assert_eq!(taken.outcome, DomainOutcome::NameTaken);
    assert_eq!(taken.attempt, 7);
    // The holder refreshes; the owner cannot rename another device to it.
    let refreshed =
        w.m.on_domain_registration(&serial(), &registration("shop", 2), SEEN, NOON + 2);
    assert!(matches!(
        refreshed.outcome,
        DomainOutcome::Registered { .. }
    ));
    report_owned(&mut w, vec![], true, 1);
    refused(
        w.m.plan_set_domain(&w.olivia, SERIAL, "Bad_Name", NOON),
        CloudError::InvalidDomainName("Bad_Name".into()),
    );
    // Once the registration expired, the name is free.
    let later = NOON + 2 + u64::from(REGISTRATION_TTL_SECS);
    let free =
        w.m.on_domain_registration(&other, &registration("shop", 8), SEEN, later);
    assert!(matches!(free.outcome, DomainOutcome::Registered { .. }));
    assert_eq!(
        w.m.registration_of("NVR-2").unwrap().domain.as_str(),
        "shop"
    );
    // Reserved names are invalid.
    let reserved =
        w.m.on_domain_registration(&other, &registration("www", 9), SEEN, later);
    assert_eq!(reserved.outcome, DomainOutcome::Invalid);
}

#[test]
fn the_owner_cannot_take_a_name_another_device_holds() {
    let mut w = world();
    let other = Serial::new("NVR-2").unwrap();
    w.m.on_domain_registration(&other, &registration("shop", 1), SEEN, NOON);
    report_owned(&mut w, vec![], true, 1);
    refused(
        w.m.plan_set_domain(&w.olivia, SERIAL, "shop", NOON + 5),
        CloudError::DomainNameTaken("shop".into()),
    );
    let planned =
        w.m.plan_set_domain(&w.olivia, SERIAL, "front-door", NOON + 5)
            .unwrap();
    assert_eq!(
        planned.body,
        CommandBody::SetDomain {
            name: Text::new("front-door").unwrap()
        }
    );
    refused(
        w.m.plan_set_domain(&w.frank, SERIAL, "front-door", NOON),
        CloudError::NotOwner,
    );
}

#[test]
fn only_the_owner_and_currently_valid_shares_resolve_the_domain() {
    let mut w = world();
    let window = Validity {
        not_before: NOON,
        not_after: NOON + 300,
    };
    let shares = vec![
        share_entry(&w.frank, None),
        share_entry(&w.fiona, Some(window)),
    ];
    report_owned(&mut w, shares.clone(), true, 5);
    w.m.on_domain_registration(&serial(), &registration("shop", 1), SEEN, NOON);

    let resolved = w.m.resolve_domain(&w.olivia, "shop", NOON + 10).unwrap();
    assert_eq!(resolved.public_address, SEEN);
    assert_eq!(resolved.serial, serial());
    assert_eq!(resolved.ports.rtsp, 554);
    assert!(w.m.resolve_domain(&w.frank, "shop", NOON + 10).is_ok());
    assert!(w.m.resolve_domain(&w.fiona, "shop", NOON + 10).is_ok());
    // Validity is checked at cloud time.
    refused(
        w.m.resolve_domain(&w.fiona, "shop", NOON - 1),
        CloudError::ShareNotYetValid,
    );
    refused(
        w.m.resolve_domain(&w.fiona, "shop", NOON + 300),
        CloudError::ShareExpired,
    );
    refused(
        w.m.resolve_domain(&w.steve, "shop", NOON + 10),
        CloudError::DomainNotShared,
    );
    // The installer after handover is not a share.
    refused(
        w.m.resolve_domain(&w.installer, "shop", NOON + 10),
        CloudError::DomainNotShared,
    );
    // The report is the truth: a share the device no longer holds is gone.
    report_owned(&mut w, vec![shares[1].clone()], true, 6);
    refused(
        w.m.resolve_domain(&w.frank, "shop", NOON + 10),
        CloudError::DomainNotShared,
    );
    // Cloud service off: nobody resolves through the cloud.
    report_owned(&mut w, vec![], false, 7);
    refused(
        w.m.resolve_domain(&w.olivia, "shop", NOON + 10),
        CloudError::CloudServiceDisabled,
    );
    // An expired registration resolves to nothing.
    let expired = NOON + u64::from(REGISTRATION_TTL_SECS);
    refused(
        w.m.resolve_domain(&w.olivia, "shop", expired),
        CloudError::DomainNotFound("shop".into()),
    );
}

// ------------------------------------------------------------------ the driver

/// A broker with a PKI, and the cloud's options for it.
fn broker() -> (tempfile::TempDir, Pki, EmbeddedBroker) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path().join("pki"), &[SERIAL]).unwrap();
    let broker = EmbeddedBroker::start(BrokerConfig::from_pki(&pki)).unwrap();
    (dir, pki, broker)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn network_busy_when_the_device_is_offline() {
    let (_dir, pki, broker) = broker();
    let options = CloudOptions::from_pki(&pki, "127.0.0.1", broker.port()).unwrap();
    assert!(pki.dir().join("cloud-command-key.seed").is_file());
    assert_eq!(load_or_create_seed(pki.dir()).unwrap(), options.seed);
    runtime().block_on(async {
        let cloud = Cloud::connect(options, CloudModel::new()).await.unwrap();
        assert_eq!(cloud.online(&serial()), None);
        let started = Instant::now();
        let result = cloud
            .send(
                &serial(),
                eu(&AccountId::new("a").unwrap()),
                CommandBody::RequestState,
            )
            .await;
        let waited = started.elapsed();
        let error = result.unwrap_err();
        assert_eq!(
            error,
            CloudError::NetworkBusy {
                serial: SERIAL.into(),
                waited_ms: 3000
            }
        );
        assert_eq!(
            error.to_string(),
            "Network busy: device NVR-1 did not answer within 3 s"
        );
        assert!(waited >= Duration::from_millis(2900), "{waited:?}");
        assert!(waited < Duration::from_secs(5), "{waited:?}");
        cloud.shutdown().await;
    });
}

#[test]
fn network_busy_when_an_online_device_does_not_answer() {
    // A device that reported online and its state, then went silent (no
    // last will yet): the command goes out, no acknowledgement comes back.
    let (_dir, pki, broker) = broker();
    let mut options = CloudOptions::from_pki(&pki, "127.0.0.1", broker.port()).unwrap();
    options.ack_timeout = Duration::from_millis(800);
    runtime().block_on(async {
        let cloud = Cloud::connect(options, CloudModel::new()).await.unwrap();
        publish_as_device(&pki, broker.port()).await;
        assert!(
            cloud
                .wait_online(&serial(), true, Duration::from_secs(5))
                .await
        );
        assert!(cloud
            .wait_state(&serial(), |r| r.last_seq == 41, Duration::from_secs(5))
            .await
            .is_some());
        let started = Instant::now();
        let result = cloud
            .send(
                &serial(),
                eu(&AccountId::new("a").unwrap()),
                CommandBody::RequestState,
            )
            .await;
        assert!(started.elapsed() >= Duration::from_millis(750));
        assert_eq!(
            result.unwrap_err().to_string(),
            "Network busy: device NVR-1 did not answer within 800 ms"
        );
        cloud.shutdown().await;
    });
}

/// Publishes a retained online status and state report (last_seq 41) as
/// the device, then disconnects without clearing them.
async fn publish_as_device(pki: &Pki, port: u16) {
    use protocol::codec::encode;
    use protocol::limits::MAX_MESSAGE_BYTES;
    use protocol::messages::DeviceStatus;
    use protocol::topics::{topic, Leaf};
    use rumqttc::{AsyncClient, Event, MqttOptions, Outgoing, QoS, TlsConfiguration, Transport};
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use std::sync::Arc;

    let files = pki.device(SERIAL).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(pki.ca_cert()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(&files.key).unwrap();
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let mut options = MqttOptions::new(SERIAL, "127.0.0.1", port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
        Arc::new(tls),
    )));
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let mut state = report(Binding::Unbound, vec![], true, 41);
    state.trusted_time_floor = 0;
    let online = encode(&DeviceStatus { online: true }, MAX_MESSAGE_BYTES).unwrap();
    let state = encode(&state, MAX_MESSAGE_BYTES).unwrap();
    client
        .publish(topic(&serial(), Leaf::State), QoS::AtLeastOnce, true, state)
        .await
        .unwrap();
    client
        .publish(
            topic(&serial(), Leaf::Status),
            QoS::AtLeastOnce,
            true,
            online,
        )
        .await
        .unwrap();
    client.disconnect().await.unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_secs(5), eventloop.poll()).await {
            Ok(Ok(Event::Outgoing(Outgoing::Disconnect))) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(_)) => {}
        }
    }
}
