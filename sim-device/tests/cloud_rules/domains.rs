//! Device domain names: registrations, renaming and resolving.

use super::*;

pub(super) fn registration(name: &str, attempt: u32) -> DomainRegistration {
    DomainRegistration {
        attempt,
        domain: DomainName::new(name).unwrap(),
        lan_address: IpAddress::V4([192, 168, 1, 64]),
        ports: DomainConfig::default().ports(),
        mappings: heapless::Vec::new(),
    }
}

pub(super) const SEEN: IpAddress = IpAddress::V4([203, 0, 113, 7]);

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
    let window = from_noon(300);
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
