//! Accounts found by what users type; binding a device with its
//! verification code.

use super::*;

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
