//! The flows of the product documents that issue 17 added: installer
//! rights granted by the owner outside a site, a deleted device added
//! again, the documents' own (domain-only) share, a handover pending until
//! the device acknowledges, the installer's maintenance access by domain
//! name, and the remarks an invitee sees.

use super::domains::{registration, SEEN};
use super::*;
use sim_device::cloud::model::{ShareKind, SiteStatus};

fn grants(live_view: Option<Validity>) -> InstallerGrants {
    InstallerGrants {
        site_info: Some(Grant { validity: None }),
        live_view: Some(Grant {
            validity: live_view,
        }),
        ..InstallerGrants::default()
    }
}

/// Olivia added the device herself: no installer, no site.
fn owned_without_installer(w: &mut World, last_seq: u64) {
    let binding = Binding::Owned {
        owner: eu(&w.olivia),
        installer: None,
        installer_grants: InstallerGrants::default(),
    };
    w.m.on_state_report(report(binding, vec![], true, last_seq));
}

#[test]
fn the_owner_grants_sees_and_revokes_installer_rights_outside_any_site() {
    let mut w = world();
    owned_without_installer(&mut w, 1);
    assert_eq!(w.m.installer_rights(&w.olivia, SERIAL).unwrap(), None);
    refused(
        w.m.plan_revoke_installer(&w.olivia, SERIAL),
        CloudError::NoInstallerRights,
    );
    let planned =
        w.m.plan_authorize_installer(&w.olivia, SERIAL, "ops@acme.example", grants(None))
            .unwrap();
    assert_eq!(planned.actor, eu(&w.olivia));
    assert_eq!(
        planned.body,
        CommandBody::AuthorizeInstaller {
            installer: eu(&w.installer),
            grants: grants(None),
        }
    );
    refused(
        w.m.plan_authorize_installer(&w.frank, SERIAL, "acme", grants(None)),
        CloudError::NotOwner,
    );
    refused(
        w.m.plan_authorize_installer(&w.olivia, SERIAL, "nobody", grants(None)),
        CloudError::AccountNotFound,
    );
    refused(
        w.m.plan_authorize_installer(&w.olivia, SERIAL, "ursula", grants(None)),
        CloudError::CrossRegion,
    );
    // The device applied it: the owner sees the rights, then revokes them.
    w.m.on_state_report(report(owned_by(&w, grants(None)), vec![], true, 2));
    let rights = w.m.installer_rights(&w.olivia, SERIAL).unwrap().unwrap();
    assert_eq!(rights.installer, eu(&w.installer));
    assert_eq!(rights.user_name.as_deref(), Some("acme"));
    assert_eq!(rights.grants, grants(None));
    refused(w.m.installer_rights(&w.frank, SERIAL), CloudError::NotOwner);
    let revoke = w.m.plan_revoke_installer(&w.olivia, SERIAL).unwrap();
    assert_eq!(revoke.body, CommandBody::RevokeInstaller);
}

/// The device reports itself unbound (it applied an `Unbind`).
fn report_unbound(w: &mut World, last_seq: u64) {
    w.m.on_state_report(report(Binding::Unbound, vec![], true, last_seq));
}

#[test]
fn a_device_the_installer_deleted_from_the_owners_account_can_be_added_again() {
    let (mut w, site) = world_with_site();
    let flag = may_disable();
    w.m.on_state_report(report(owned_by(&w, flag), vec![], true, 3));
    let planned = w.m.plan_remove_from_owner(&w.installer, SERIAL).unwrap();
    assert_eq!(planned.body, CommandBody::Unbind);
    w.m.commit(&planned.on_accept);
    report_unbound(&mut w, 4);
    assert!(!w.m.site(site).unwrap().devices.contains(&serial()));
    assert_eq!(w.m.device(SERIAL).unwrap().site, None);
    // The owner, another account and the installer (into a new site) may
    // each add it again.
    w.m.plan_bind_owner(&w.olivia, SERIAL, CODE).unwrap();
    w.m.plan_bind_owner(&w.frank, SERIAL, CODE).unwrap();
    let new_site = w.m.create_site(&w.installer, "Bakery 2").unwrap();
    w.m.plan_add_to_site(&w.installer, new_site, SERIAL, CODE)
        .unwrap();
}

#[test]
fn the_owner_deletes_his_device_and_it_can_be_added_again() {
    let mut w = world();
    owned_without_installer(&mut w, 1);
    refused(
        w.m.plan_delete_device(&w.frank, SERIAL),
        CloudError::NotOwner,
    );
    let planned = w.m.plan_delete_device(&w.olivia, SERIAL).unwrap();
    assert_eq!(planned.body, CommandBody::Unbind);
    assert_eq!(planned.actor, eu(&w.olivia));
    refused(
        w.m.plan_bind_owner(&w.frank, SERIAL, CODE),
        CloudError::DeviceAlreadyAdded,
    );
    w.m.commit(&planned.on_accept);
    report_unbound(&mut w, 2);
    w.m.plan_bind_owner(&w.frank, SERIAL, CODE).unwrap();
}

#[test]
fn the_installer_removes_a_device_from_its_site_before_handover() {
    let (mut w, site) = world_with_site();
    let installer_managed = Binding::InstallerManaged {
        installer: eu(&w.installer),
    };
    w.m.on_state_report(report(installer_managed, vec![], true, 1));
    refused(
        w.m.plan_remove_from_site(&w.frank, site, SERIAL),
        CloudError::NotSiteInstaller,
    );
    refused(
        w.m.plan_remove_from_site(&w.installer, site, "NVR-404"),
        CloudError::DeviceNotInSite("NVR-404".into()),
    );
    let planned =
        w.m.plan_remove_from_site(&w.installer, site, SERIAL)
            .unwrap();
    assert_eq!(planned.body, CommandBody::Unbind);
    w.m.commit(&planned.on_accept);
    report_unbound(&mut w, 2);
    assert!(w.m.site(site).unwrap().devices.is_empty());
    w.m.plan_bind_owner(&w.olivia, SERIAL, CODE).unwrap();
}

#[test]
fn the_documents_share_gives_the_domain_name_and_who_shared_it() {
    let mut w = world();
    report_owned(&mut w, vec![], true, 1);
    let planned = w.m.plan_share_domain(&w.olivia, SERIAL, "frank").unwrap();
    assert_eq!(
        planned.body,
        CommandBody::ShareDomain {
            account: eu(&w.frank)
        }
    );
    refused(
        w.m.plan_share_domain(&w.olivia, SERIAL, "ursula"),
        CloudError::CrossRegionShare,
    );
    refused(
        w.m.plan_share_domain(&w.olivia, SERIAL, "nobody@example.com"),
        CloudError::AccountNotFound,
    );
    // The device stored it as a share with no permission.
    let domain_only = ShareEntry {
        permissions: Permissions::NONE,
        ..share_entry(&w.frank, None)
    };
    let steve = share_entry(&w.steve, None);
    report_owned(&mut w, vec![domain_only, steve], true, 2);
    let received = w.m.shared_with(&w.frank);
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].kind, ShareKind::DomainOnly);
    assert_eq!(received[0].owner, eu(&w.olivia), "who shared it");
    assert_eq!(received[0].domain.as_str(), "nvr-1");
    assert_eq!(w.m.shared_with(&w.steve)[0].kind, ShareKind::Permissions);
    w.m.on_domain_registration(&serial(), &registration("nvr-1", 1), SEEN, NOON);
    let resolved = w.m.resolve_domain(&w.frank, "nvr-1", NOON + 1).unwrap();
    assert_eq!(resolved.public_address, SEEN);
}

#[test]
fn a_share_with_no_permission_or_no_channel_is_refused_unless_domain_only() {
    let mut w = world();
    report_owned(&mut w, vec![], true, 1);
    refused(
        w.m.plan_share(
            &w.olivia,
            SERIAL,
            "frank",
            ShareTerms::always(Permissions::NONE),
        ),
        CloudError::EmptyShare,
    );
    let no_channel = ShareTerms {
        channels: ChannelScope::Only(hc_protocol::ChannelSet::EMPTY),
        ..ShareTerms::always(live_view())
    };
    refused(
        w.m.plan_share(&w.olivia, SERIAL, "frank", no_channel),
        CloudError::EmptyShare,
    );
    assert!(CloudError::EmptyShare.to_string().contains("domain name"));
}

#[test]
fn a_handover_stays_pending_until_the_device_acknowledges() {
    let (mut w, site) = world_with_site();
    let id = invite_olivia(&mut w, site, NOON).unwrap();
    let plan = w.m.accept_invitation(id, &w.olivia.clone(), NOON).unwrap();
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::HandoverPending);
    assert_eq!(SiteStatus::HandoverPending.to_string(), "Handover Pending");
    // The device was offline: the same handover is there to re-send.
    let pending = w.m.pending_handovers(NOON + 60);
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].body, plan.commands[0].body);
    assert_eq!(pending[0].actor, eu(&w.olivia));
    // Nothing more can be invited meanwhile.
    refused(
        invite_olivia(&mut w, site, NOON + 60),
        CloudError::SiteHandedOver,
    );
    w.m.commit(&pending[0].on_accept);
    assert_eq!(w.m.site_status(site).unwrap(), SiteStatus::HandedOver);
    assert!(w.m.pending_handovers(NOON + 120).is_empty());
}

#[test]
fn the_installer_resolves_the_domain_while_a_maintenance_grant_is_valid() {
    let mut w = world();
    let window = from_noon(3600);
    // The installer keeps live view for an hour; the service is off.
    w.m.on_state_report(report(owned_by(&w, grants(Some(window))), vec![], false, 1));
    w.m.on_domain_registration(&serial(), &registration("nvr-1", 1), SEEN, NOON);
    let resolved =
        w.m.resolve_domain(&w.installer, "nvr-1", NOON + 10)
            .unwrap();
    assert_eq!(resolved.serial, serial());
    refused(
        w.m.resolve_domain(&w.olivia, "nvr-1", NOON + 10),
        CloudError::CloudServiceDisabled,
    );
    w.m.on_domain_registration(&serial(), &registration("nvr-1", 2), SEEN, NOON + 3600);
    refused(
        w.m.resolve_domain(&w.installer, "nvr-1", NOON + 3600),
        CloudError::ShareExpired,
    );
    // Site information alone is no maintenance access.
    let site_info_only = InstallerGrants {
        site_info: Some(Grant { validity: None }),
        ..InstallerGrants::default()
    };
    w.m.on_state_report(report(owned_by(&w, site_info_only), vec![], true, 2));
    refused(
        w.m.resolve_domain(&w.installer, "nvr-1", NOON + 3600),
        CloudError::DomainNotShared,
    );
}

#[test]
fn the_invitee_sees_the_current_invitation_with_its_remarks() {
    let (mut w, site) = world_with_site();
    assert!(w.m.invitations_for(&w.olivia).is_empty());
    let contact = Contact::email("olivia@example.com").unwrap();
    let permissions = InstallerPermissions::default();
    w.m.invite(
        &w.installer,
        site,
        contact.clone(),
        permissions.clone(),
        "first",
        NOON,
    )
    .unwrap();
    let id =
        w.m.invite(
            &w.installer,
            site,
            contact,
            permissions,
            "the bakery's NVR",
            NOON + 1,
        )
        .unwrap();
    let seen = w.m.invitations_for(&w.olivia);
    assert_eq!(seen.len(), 1, "only the current invitation");
    assert_eq!(seen[0].remarks, "the bakery's NVR");
    assert!(w.m.invitations_for(&w.frank).is_empty());
    w.m.accept_invitation(id, &w.olivia.clone(), NOON + 2)
        .unwrap();
    assert!(w.m.invitations_for(&w.olivia).is_empty());
}

#[test]
fn the_invitation_limit_counts_per_site() {
    // The implemented reading (docs/SIMULATOR.md): five a day per site.
    let (mut w, first) = world_with_site();
    let second = w.m.create_site(&w.installer, "Bakery 2").unwrap();
    for i in 0..INVITATIONS_PER_DAY as u64 {
        invite_olivia(&mut w, first, NOON + i).unwrap();
    }
    refused(
        invite_olivia(&mut w, first, NOON + 10),
        CloudError::InvitationLimit,
    );
    invite_olivia(&mut w, second, NOON + 10).unwrap();
}
