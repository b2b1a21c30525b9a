//! Sharing, listing and deleting shares; the device's report as the truth.

use super::*;

/// The device as olivia's, shared with nobody.
fn owned_world() -> World {
    let mut w = world();
    report_owned(&mut w, vec![], true, 3);
    w
}

/// Olivia plans to share live view with the account named `with`.
fn olivia_shares_live_view(w: &World, with: &str) -> Result<Planned, CloudError> {
    w.m.plan_share(&w.olivia, SERIAL, with, ShareTerms::always(live_view()))
}

#[test]
fn sharing_across_regions_is_refused_by_the_cloud() {
    let refusal = olivia_shares_live_view(&owned_world(), "ursula@example.com");
    refused(refusal, CloudError::CrossRegionShare);
}

#[test]
fn sharing_with_a_missing_account_is_refused_and_found_ones_are_planned() {
    let w = owned_world();
    refused(
        olivia_shares_live_view(&w, "nobody@example.com"),
        CloudError::AccountNotFound,
    );
    for name in ["frank@example.com", "frank", "+49 151 2222"] {
        let planned = olivia_shares_live_view(&w, name).unwrap();
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
