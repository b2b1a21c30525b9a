//! Sites, invitations and the handover.

use super::*;

#[test]
fn site_status_goes_not_invited_not_registered_not_accepted_handed_over() {
    let (mut w, site) = world_with_site();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotInvited);
    let contact = Contact::email("newcomer@example.com").unwrap();
    let id = invite(&mut w, site, contact, NOON).unwrap();
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
    let plan = w.m.accept_invitation(id, &newcomer, NOON + 10).unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::HandoverPending);
    acknowledge_all(&mut w, &plan);
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
    let (mut w, site) = world_with_site();
    let contact = Contact::phone("+49 (151) 22 22").unwrap();
    let id = invite(&mut w, site, contact, NOON).unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotAccepted);
    w.m.accept_invitation(id, &w.fiona.clone(), NOON).unwrap();
    refused(Contact::email("not an email"), CloudError::InvalidContact);
    refused(Contact::phone("call me"), CloudError::InvalidContact);
}

#[test]
fn a_sixth_invitation_in_one_utc_day_is_refused() {
    let (mut w, site) = world_with_site();
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
    let (mut w, site) = world_with_site();
    let first = invite_olivia(&mut w, site, NOON).unwrap();
    let second = invite_olivia(&mut w, site, NOON + 60).unwrap();
    assert_ne!(first, second);
    refused(
        w.m.accept_invitation(first, &w.olivia.clone(), NOON + 120),
        CloudError::InvitationInvalid,
    );
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::NotAccepted);
    let plan =
        w.m.accept_invitation(second, &w.olivia.clone(), NOON + 120)
            .unwrap();
    acknowledge_all(&mut w, &plan);
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::HandedOver);
}

#[test]
fn resending_before_acceptance_is_a_new_invitation_that_counts() {
    let (mut w, site) = world_with_site();
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
    let window = from_noon(3600);
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
