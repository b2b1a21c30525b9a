//! Who may switch the cloud service.

use super::*;

#[test]
fn only_an_installer_allowed_to_disable_it_switches_the_cloud_service() {
    let (mut w, site) = world_with_site();
    let with_flag = may_disable();
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
