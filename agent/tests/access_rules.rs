//! Table tests for the access rules of DESIGN.md section 3, each named
//! after the rule it checks, driving the public core API.

use hc_agent::core::{set_platform_access, Effect};
use hc_protocol::access::Action::{self, *};
use hc_protocol::access::{Decision, LocalLevel};
use hc_protocol::messages::{AuditEvent, Binding};
use hc_protocol::Reason::*;
use hc_protocol::{
    BindRole, ChannelScope, ChannelSet, CommandBody, Grant, InstallerGrants, Outcome, Reason, Text,
};
use hc_testkit::fixture::*;

const ALL_CHANNELS: ChannelScope = ChannelScope::All;

fn deny(reason: Reason) -> Decision {
    Decision::Deny(reason)
}

fn only(channels: &[u16]) -> ChannelScope {
    ChannelScope::Only(ChannelSet::from_channels(channels).unwrap())
}

fn with_bob(actions: &[Action], channels: ChannelScope) -> Device {
    let mut d = Device::owned();
    d.expect_ok("alice", share(account("bob"), actions, channels, None));
    d
}

// ---- decisions ----

#[test]
fn unbound_device_denies_every_cloud_account() {
    let d = Device::new();
    d.expect_decision(&cloud("alice"), LiveView, Some(1), deny(NotBound));
}

#[test]
fn deny_by_default_for_an_account_that_is_not_a_principal() {
    let d = with_bob(&[LiveView], ALL_CHANNELS);
    for action in Action::ALL {
        assert_eq!(
            d.decide(&cloud("mallory"), *action, Some(1)),
            deny(NotAPrincipal),
            "{action:?}"
        );
    }
}

#[test]
fn owner_may_do_everything_through_the_cloud_but_the_two_switches() {
    let d = Device::owned();
    for action in Action::ALL {
        let expected = match action {
            CloudServiceSwitch | PlatformAccessSwitch => deny(ActionNotGranted),
            _ => Decision::Allow,
        };
        assert_eq!(
            d.decide(&cloud("alice"), *action, Some(CHANNELS)),
            expected,
            "{action:?}"
        );
    }
}

#[test]
fn shared_user_gets_exactly_the_granted_actions() {
    let d = with_bob(&[LiveView, Playback], ALL_CHANNELS);
    for action in Action::ALL {
        let expected = match action {
            LiveView | Playback => Decision::Allow,
            _ => deny(ActionNotGranted),
        };
        assert_eq!(
            d.decide(&cloud("bob"), *action, Some(3)),
            expected,
            "{action:?}"
        );
    }
}

#[test]
fn shared_user_is_limited_to_the_channels_in_scope() {
    let d = with_bob(&[LiveView], only(&[2, 5]));
    d.expect_decision(&cloud("bob"), LiveView, Some(2), Decision::Allow);
    d.expect_decision(&cloud("bob"), LiveView, Some(5), Decision::Allow);
    d.expect_decision(&cloud("bob"), LiveView, Some(3), deny(ChannelOutOfScope));
}

#[test]
fn channel_actions_need_a_channel_the_device_has() {
    let d = Device::owned();
    d.expect_decision(&cloud("alice"), LiveView, None, deny(NoSuchChannel));
    d.expect_decision(&cloud("alice"), LiveView, Some(0), deny(NoSuchChannel));
    d.expect_decision(
        &cloud("alice"),
        LiveView,
        Some(CHANNELS + 1),
        deny(NoSuchChannel),
    );
    assert_eq!(
        d.decide(&local(LocalLevel::Admin), Playback, Some(CHANNELS + 1)),
        deny(NoSuchChannel)
    );
    // Device-level actions ignore the channel.
    d.expect_decision(&cloud("alice"), ConfigRead, None, Decision::Allow);
}

#[test]
fn shared_user_outside_the_validity_window_is_denied() {
    let mut d = Device::owned_and_shared(bob_live_view(window(T0 + 100, T0 + 200)));
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(NotYetValid));
    d.now = T0 + 100;
    d.expect_decision(&cloud("bob"), LiveView, Some(1), Decision::Allow);
    d.now = T0 + 200;
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(Expired));
}

#[test]
fn time_limited_grants_are_denied_while_the_clock_is_behind_the_trusted_floor() {
    let mut d = Device::owned_and_shared(bob_live_view(window(T0 - 1000, T0 + 1000)));
    d.now = T0 - 500; // the device clock fell behind the last signed cloud time
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(ClockNotTrusted));
    // Owner access does not depend on time.
    d.expect_decision(&cloud("alice"), LiveView, Some(1), Decision::Allow);
}

#[test]
fn a_clock_rollback_never_extends_a_grant() {
    let mut d = Device::owned_and_shared(bob_live_view(window(T0, T0 + 100)));
    d.now = T0 + 150;
    d.state.clock.observe(d.now);
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(Expired));
    d.now = T0 + 50; // rolled back into the window
    d.state.clock.observe(d.now);
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(ClockNotTrusted));
}

fn cloud_off_site() -> Device {
    let grants = InstallerGrants {
        live_view: Some(Grant { validity: None }),
        may_disable_cloud: true,
        ..InstallerGrants::default()
    };
    let mut d = Device::handed_over(grants);
    d.expect_ok("alice", bob_live_view(None));
    d.expect_ok("inst", CommandBody::SetCloudService { enabled: false });
    d
}

#[test]
fn cloud_service_off_denies_owner_and_shared_users_with_that_reason() {
    let d = cloud_off_site();
    d.expect_decision(
        &cloud("alice"),
        LiveView,
        Some(1),
        deny(CloudServiceDisabled),
    );
    d.expect_decision(
        &cloud("alice"),
        ShareManagement,
        None,
        deny(CloudServiceDisabled),
    );
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(CloudServiceDisabled));
}

#[test]
fn cloud_service_off_leaves_the_installer_switch_and_local_users_working() {
    let mut d = cloud_off_site();
    d.expect_decision(
        &local(LocalLevel::Guest),
        LiveView,
        Some(1),
        Decision::Allow,
    );
    d.expect_decision(&cloud("inst"), LiveView, Some(1), Decision::Allow);
    d.expect_decision(&cloud("inst"), CloudServiceSwitch, None, Decision::Allow);
    d.expect_refused(
        "alice",
        CommandBody::SetCloudService { enabled: true },
        Reason::CloudServiceDisabled,
    );
    d.expect_ok("inst", CommandBody::SetCloudService { enabled: true });
    d.expect_decision(&cloud("alice"), LiveView, Some(1), Decision::Allow);
}

#[test]
fn platform_access_off_denies_every_cloud_action_but_not_local_users() {
    let d = with_bob(&[LiveView], ALL_CHANNELS);
    let (result, _) = set_platform_access(&d.state, LocalLevel::Admin, true, false, d.now);
    let (state, _) = result.unwrap();
    let d = Device { state, ..d };
    for who in ["alice", "bob", "inst", "mallory"] {
        assert_eq!(
            d.decide(&cloud(who), LiveView, Some(1)),
            deny(PlatformAccessOff),
            "{who}"
        );
    }
    d.expect_decision(
        &local(LocalLevel::Operator),
        LiveView,
        Some(1),
        Decision::Allow,
    );
}

#[test]
fn local_users_get_their_level_permissions() {
    let d = Device::owned();
    let admin = local(LocalLevel::Admin);
    let operator = local(LocalLevel::Operator);
    let guest = local(LocalLevel::Guest);
    assert_eq!(d.decide(&admin, ConfigWrite, None), Decision::Allow);
    d.expect_decision(&admin, PlatformAccessSwitch, None, Decision::Allow);
    d.expect_decision(&admin, ShareManagement, None, deny(ActionNotGranted));
    assert_eq!(d.decide(&operator, Ptz, Some(1)), Decision::Allow);
    d.expect_decision(&operator, ConfigWrite, None, deny(ActionNotGranted));
    assert_eq!(d.decide(&guest, Playback, Some(1)), Decision::Allow);
    d.expect_decision(&guest, Ptz, Some(1), deny(ActionNotGranted));
    d.expect_decision(&guest, PlatformAccessSwitch, None, deny(ActionNotGranted));
}

#[test]
fn local_users_work_on_an_unbound_device() {
    let d = Device::new();
    d.expect_decision(
        &local(LocalLevel::Admin),
        LiveView,
        Some(1),
        Decision::Allow,
    );
}

#[test]
fn installer_manages_the_site_fully_before_handover_but_not_who_else_holds_it() {
    let mut d = Device::installer_managed();
    d.expect_decision(&cloud("inst"), ConfigWrite, None, Decision::Allow);
    d.expect_decision(&cloud("inst"), LiveView, Some(4), Decision::Allow);
    d.expect_decision(&cloud("inst"), CloudServiceSwitch, None, Decision::Allow);
    d.expect_refused("inst", bob_live_view(None), Reason::NotOwner);
}

#[test]
fn installer_after_handover_keeps_only_the_accepted_permissions_within_their_windows() {
    let grants = InstallerGrants {
        live_view: Some(Grant {
            validity: window(T0, T0 + 3600),
        }),
        configuration: Some(Grant { validity: None }),
        ..InstallerGrants::default()
    };
    let mut d = Device::handed_over(grants);
    d.expect_decision(&cloud("inst"), LiveView, Some(1), Decision::Allow);
    d.expect_decision(&cloud("inst"), ConfigWrite, None, Decision::Allow);
    d.expect_decision(&cloud("inst"), Playback, Some(1), deny(ActionNotGranted));
    d.expect_decision(
        &cloud("inst"),
        SiteInfoManagement,
        None,
        deny(ActionNotGranted),
    );
    d.expect_decision(
        &cloud("inst"),
        CloudServiceSwitch,
        None,
        deny(NotAllowedToDisableCloud),
    );
    d.now = T0 + 3600;
    d.expect_decision(&cloud("inst"), LiveView, Some(1), deny(Expired));
    d.expect_decision(&cloud("inst"), ConfigRead, None, Decision::Allow);
}

// ---- commands ----

#[test]
fn bind_only_when_unbound() {
    let mut d = Device::owned();
    d.expect_refused(
        "bob",
        CommandBody::Bind {
            role: BindRole::Owner,
            proof: proof_for("bob"),
        },
        Reason::AlreadyBound,
    );
}

#[test]
fn bind_needs_a_valid_verification_code_proof() {
    let mut d = Device::new();
    d.expect_refused(
        "alice",
        CommandBody::Bind {
            role: BindRole::Owner,
            proof: proof_for("bob"),
        },
        Reason::BadVerificationProof,
    );
    d.expect_refused(
        "alice",
        CommandBody::Bind {
            role: BindRole::Owner,
            proof: [0; 32],
        },
        Reason::BadVerificationProof,
    );
    assert_eq!(d.state.access.binding, Binding::Unbound);
}

#[test]
fn only_the_owner_shares() {
    let mut d = Device::handed_over(InstallerGrants::default());
    d.expect_ok("alice", bob_live_view(None));
    let body = share(account("carol"), &[LiveView], ALL_CHANNELS, None);
    d.expect_refused("bob", body.clone(), Reason::NotOwner);
    d.expect_refused("inst", body.clone(), Reason::NotOwner);
    d.expect_refused("mallory", body, Reason::NotAPrincipal);
}

#[test]
fn only_the_owner_unshares_one_several_or_all() {
    let mut d = Device::owned();
    for who in ["bob", "carol", "dave", "erin"] {
        d.expect_ok(
            "alice",
            share(account(who), &[LiveView], ALL_CHANNELS, None),
        );
    }
    let one = CommandBody::Unshare {
        accounts: [account("bob").id].into_iter().collect(),
    };
    d.expect_refused("carol", one.clone(), Reason::NotOwner);
    d.expect_ok("alice", one);
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(NotAPrincipal));
    let several = CommandBody::Unshare {
        accounts: [account("carol").id, account("dave").id]
            .into_iter()
            .collect(),
    };
    d.expect_ok("alice", several);
    assert_eq!(d.state.access.shares.len(), 1);
    d.expect_refused("erin", CommandBody::UnshareAll, Reason::NotOwner);
    d.expect_ok("alice", CommandBody::UnshareAll);
    assert!(d.state.access.shares.is_empty());
}

#[test]
fn unshare_naming_an_unknown_account_removes_nothing() {
    let mut d = with_bob(&[LiveView], ALL_CHANNELS);
    let body = CommandBody::Unshare {
        accounts: [account("bob").id, account("ghost").id]
            .into_iter()
            .collect(),
    };
    d.expect_refused("alice", body, Reason::UnknownShare);
    d.expect_decision(&cloud("bob"), LiveView, Some(1), Decision::Allow);
}

#[test]
fn a_revoked_share_stops_working_at_once() {
    let mut d = with_bob(&[LiveView], ALL_CHANNELS);
    d.expect_decision(&cloud("bob"), LiveView, Some(1), Decision::Allow);
    d.expect_ok("alice", CommandBody::UnshareAll);
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(NotAPrincipal));
}

#[test]
fn the_receiver_can_leave_a_share_but_nobody_else_can_use_leave() {
    let mut d = with_bob(&[LiveView], ALL_CHANNELS);
    d.expect_refused("carol", CommandBody::LeaveShare, Reason::UnknownShare);
    d.expect_ok("bob", CommandBody::LeaveShare);
    assert!(d.state.access.shares.is_empty());
}

#[test]
fn a_share_cannot_exceed_what_the_owner_has() {
    let mut d = Device::owned();
    for (actions, channels) in [
        (&[ShareManagement], ALL_CHANNELS),
        (&[Unbind], ALL_CHANNELS),
        (&[LiveView], only(&[CHANNELS + 1])),
    ] {
        let body = share(account("bob"), actions, channels, None);
        d.expect_refused("alice", body, ExceedsOwnerRights);
    }
    d.expect_ok(
        "alice",
        share(account("bob"), &[LiveView], only(&[CHANNELS]), None),
    );
}

#[test]
fn a_share_with_an_empty_or_reversed_window_is_refused() {
    let mut d = Device::owned();
    for (start, end) in [(T0, T0), (T0 + 5, T0)] {
        let body = bob_live_view(window(start, end));
        d.expect_refused("alice", body, InvalidValidity);
    }
}

#[test]
fn accounts_from_another_region_are_refused() {
    let mut d = Device::owned();
    d.expect_refused(
        "alice",
        share(foreign("zed"), &[LiveView], ALL_CHANNELS, None),
        Reason::CrossRegion,
    );
    // A command whose actor is in another region is refused too.
    let before = d.state.access.clone();
    let command = d.command(foreign("alice"), CommandBody::UnshareAll);
    assert_eq!(
        d.run_command(&command).outcome,
        Outcome::Refused(Reason::CrossRegion)
    );
    assert_eq!(d.state.access, before);
}

#[test]
fn sharing_with_the_owner_or_installer_is_refused() {
    let mut d = Device::handed_over(InstallerGrants::default());
    for principal in ["alice", "inst"] {
        let body = share(account(principal), &[LiveView], ALL_CHANNELS, None);
        d.expect_refused("alice", body, AlreadyAPrincipal);
    }
}

#[test]
fn sharing_again_replaces_the_share() {
    let mut d = with_bob(&[LiveView], ALL_CHANNELS);
    d.expect_ok(
        "alice",
        share(account("bob"), &[Playback], ALL_CHANNELS, None),
    );
    assert_eq!(d.state.access.shares.len(), 1);
    d.expect_decision(&cloud("bob"), LiveView, Some(1), deny(ActionNotGranted));
    d.expect_decision(&cloud("bob"), Playback, Some(1), Decision::Allow);
}

#[test]
fn shares_are_bounded_by_the_limit() {
    let mut d = Device::owned();
    for i in 0..hc_protocol::limits::MAX_SHARES {
        d.expect_ok(
            "alice",
            share(
                account(&format!("user{i:03}")),
                &[LiveView],
                ALL_CHANNELS,
                None,
            ),
        );
    }
    d.expect_refused(
        "alice",
        share(account("one-too-many"), &[LiveView], ALL_CHANNELS, None),
        Reason::CapacityExceeded,
    );
    // Replacing an existing share still works when full.
    d.expect_ok(
        "alice",
        share(account("user000"), &[Playback], ALL_CHANNELS, None),
    );
}

#[test]
fn handover_only_from_the_installer_managed_state() {
    let mut d = Device::owned();
    d.expect_refused(
        "bob",
        CommandBody::Handover {
            installer_grants: InstallerGrants::default(),
        },
        Reason::NotInstallerManaged,
    );
    let mut d = Device::new();
    d.expect_refused(
        "bob",
        CommandBody::Handover {
            installer_grants: InstallerGrants::default(),
        },
        Reason::NotInstallerManaged,
    );
    let mut d = Device::installer_managed();
    d.expect_refused(
        "inst",
        CommandBody::Handover {
            installer_grants: InstallerGrants::default(),
        },
        Reason::AlreadyAPrincipal,
    );
}

#[test]
fn handover_makes_the_accepting_account_owner_and_narrows_the_installer() {
    let d = Device::handed_over(InstallerGrants {
        playback: Some(Grant { validity: None }),
        ..InstallerGrants::default()
    });
    assert_eq!(d.state.access.owner().unwrap().id.as_str(), "alice");
    d.expect_decision(&cloud("inst"), Playback, Some(1), Decision::Allow);
    d.expect_decision(&cloud("inst"), ConfigWrite, None, deny(ActionNotGranted));
}

#[test]
fn only_the_owner_grants_or_revokes_installer_rights() {
    let mut d = Device::handed_over(InstallerGrants::default());
    let grants = InstallerGrants {
        site_info: Some(Grant { validity: None }),
        ..InstallerGrants::default()
    };
    d.expect_refused(
        "inst",
        CommandBody::GrantInstaller { grants },
        Reason::NotOwner,
    );
    d.expect_ok("alice", CommandBody::GrantInstaller { grants });
    d.expect_decision(&cloud("inst"), SiteInfoManagement, None, Decision::Allow);
    d.expect_refused("inst", CommandBody::RevokeInstaller, Reason::NotOwner);
    d.expect_ok("alice", CommandBody::RevokeInstaller);
    d.expect_decision(
        &cloud("inst"),
        SiteInfoManagement,
        None,
        deny(NotAPrincipal),
    );
    d.expect_refused("alice", CommandBody::RevokeInstaller, Reason::NoInstaller);
    d.expect_refused(
        "alice",
        CommandBody::GrantInstaller { grants },
        Reason::NoInstaller,
    );
}

#[test]
fn only_an_installer_holding_the_flag_switches_the_cloud_service() {
    let mut d = Device::handed_over(InstallerGrants::default());
    d.expect_refused(
        "inst",
        CommandBody::SetCloudService { enabled: false },
        Reason::NotAllowedToDisableCloud,
    );
    d.expect_refused(
        "alice",
        CommandBody::SetCloudService { enabled: false },
        Reason::ActionNotGranted,
    );
    let mut d = Device::handed_over(InstallerGrants {
        may_disable_cloud: true,
        ..InstallerGrants::default()
    });
    d.expect_ok("inst", CommandBody::SetCloudService { enabled: false });
    assert!(!d.state.access.cloud_service);
}

#[test]
fn an_installer_holding_the_flag_may_unbind_the_owner() {
    let mut d = Device::handed_over(InstallerGrants::default());
    d.expect_refused(
        "inst",
        CommandBody::Unbind,
        Reason::NotAllowedToDisableCloud,
    );
    let mut d = Device::handed_over(InstallerGrants {
        may_disable_cloud: true,
        ..InstallerGrants::default()
    });
    d.expect_ok("alice", bob_live_view(None));
    d.expect_ok("inst", CommandBody::Unbind);
    assert_eq!(d.state.access.binding, Binding::Unbound);
    assert!(d.state.access.shares.is_empty());
}

#[test]
fn unbinding_removes_owner_shares_and_installer_grants_and_resets_the_domain() {
    let mut d = Device::handed_over(InstallerGrants {
        live_view: Some(Grant { validity: None }),
        ..InstallerGrants::default()
    });
    d.expect_ok("alice", bob_live_view(None));
    d.expect_ok(
        "alice",
        CommandBody::SetDomain {
            name: Text::new("front-door").unwrap(),
        },
    );
    d.expect_refused("bob", CommandBody::Unbind, Reason::ActionNotGranted);
    let applied = d.expect_ok("alice", CommandBody::Unbind);
    assert!(applied.effects.contains(&Effect::RegisterDomain));
    assert_eq!(
        d.state.access,
        hc_agent::core::AccessState::reset(&identity()).unwrap()
    );
    for who in ["alice", "bob", "inst"] {
        d.expect_decision(&cloud(who), LiveView, Some(1), deny(NotBound));
    }
}

#[test]
fn the_domain_name_is_validated_on_the_device() {
    let mut d = Device::owned();
    assert_eq!(d.state.access.domain.as_str(), "nvr-test-0001");
    for bad in ["Front", "-x", "a.b", "a b", ""] {
        d.expect_refused(
            "alice",
            CommandBody::SetDomain {
                name: Text::new(bad).unwrap(),
            },
            Reason::InvalidDomainName,
        );
    }
    let applied = d.expect_ok(
        "alice",
        CommandBody::SetDomain {
            name: Text::new("front-door").unwrap(),
        },
    );
    assert!(applied.effects.contains(&Effect::RegisterDomain));
    assert_eq!(d.state.access.domain.as_str(), "front-door");
}

#[test]
fn a_replayed_or_older_sequence_number_is_refused_and_changes_nothing() {
    let mut d = Device::owned();
    let first = d.command(account("alice"), bob_live_view(None));
    d.run_command(&first);
    for _ in 0..hc_protocol::limits::RECENT_OUTCOMES {
        d.expect_ok("alice", CommandBody::RequestState);
    }
    d.expect_ok("alice", CommandBody::UnshareAll);
    let before = d.state.clone();
    let applied = d.run_command(&first);
    assert_eq!(applied.outcome, Outcome::Refused(Reason::ReplayedSequence));
    assert_eq!(d.state, before, "a replay changed the state");
    let mut old = d.command(account("alice"), CommandBody::UnshareAll);
    old.seq = 1;
    assert_eq!(
        d.run_command(&old).outcome,
        Outcome::Refused(Reason::ReplayedSequence)
    );
}

#[test]
fn a_redelivered_command_gets_the_same_outcome_without_being_applied_twice() {
    let mut d = Device::owned();
    let share_bob = d.command(account("alice"), bob_live_view(None));
    assert_eq!(d.run_command(&share_bob).outcome, Outcome::Accepted);
    d.expect_ok("alice", CommandBody::UnshareAll);
    let again = d.run_command(&share_bob);
    assert_eq!(again.outcome, Outcome::Accepted);
    assert!(again.redelivered);
    assert!(
        d.state.access.shares.is_empty(),
        "the redelivered share was applied again"
    );
    // A refusal is redelivered as the same refusal.
    let bad = d.command(account("bob"), CommandBody::UnshareAll);
    assert_eq!(
        d.run_command(&bad).outcome,
        Outcome::Refused(Reason::NotAPrincipal)
    );
    let bad_again = d.run_command(&bad);
    assert_eq!(
        (bad_again.outcome, bad_again.redelivered),
        (Outcome::Refused(Reason::NotAPrincipal), true)
    );
}

#[test]
fn every_verified_command_raises_the_trusted_time_floor() {
    let mut d = Device::owned();
    d.now = T0 + 500;
    d.run("mallory", CommandBody::RequestState);
    assert_eq!(d.state.clock.floor(), T0 + 500);
    assert!(!d.state.clock.is_trusted(T0 + 499));
}

#[test]
fn a_command_for_another_device_is_refused() {
    let mut d = Device::owned();
    let mut command = d.command(account("alice"), CommandBody::UnshareAll);
    command.serial = hc_protocol::Serial::new("OTHER").unwrap();
    let before = d.state.clone();
    assert_eq!(
        d.run_command(&command).outcome,
        Outcome::Refused(Reason::WrongDevice)
    );
    assert_eq!(d.state, before);
}

#[test]
fn operation_requests_are_answered_with_the_decision() {
    let mut d = with_bob(&[LiveView], only(&[1]));
    let live = d.run(
        "bob",
        CommandBody::Operation {
            action: LiveView,
            channel: Some(1),
        },
    );
    assert_eq!(live.outcome, Outcome::Accepted);
    let config = d.run(
        "bob",
        CommandBody::Operation {
            action: ConfigWrite,
            channel: None,
        },
    );
    assert_eq!(config.outcome, Outcome::Refused(Reason::ActionNotGranted));
    let other = d.run(
        "bob",
        CommandBody::Operation {
            action: LiveView,
            channel: Some(2),
        },
    );
    assert_eq!(other.outcome, Outcome::Refused(Reason::ChannelOutOfScope));
}

#[test]
fn changes_are_persisted_before_they_are_acknowledged() {
    let mut d = Device::owned();
    let applied = d.expect_ok("alice", bob_live_view(None));
    let persist = applied
        .effects
        .iter()
        .position(|e| *e == Effect::Persist)
        .expect("persist");
    let ack = applied
        .effects
        .iter()
        .position(|e| matches!(e, Effect::Ack(_)))
        .expect("ack");
    assert!(persist < ack);
    assert!(applied.effects.contains(&Effect::PublishState));
    // Refusals of changes are persisted too, so their redelivery after a
    // restart is answered the same way.
    let refused = d.expect_refused("bob", CommandBody::UnshareAll, Reason::NotOwner);
    assert_eq!(refused.effects.first(), Some(&Effect::Persist));
}

#[test]
fn read_only_commands_are_not_written_to_flash() {
    let mut d = Device::owned();
    for body in [
        CommandBody::RequestState,
        CommandBody::RequestAudit { max: 5 },
        CommandBody::Operation {
            action: LiveView,
            channel: Some(1),
        },
    ] {
        let applied = d.expect_ok("alice", body);
        assert!(
            !applied.effects.contains(&Effect::Persist),
            "{:?}",
            applied.effects
        );
    }
}

#[test]
fn only_a_device_admin_switches_platform_access() {
    let d = Device::owned();
    for level in [LocalLevel::Operator, LocalLevel::Guest] {
        let (result, audit) = set_platform_access(&d.state, level, true, false, d.now);
        assert_eq!(result.unwrap_err(), Reason::ActionNotGranted);
        assert_eq!(audit.outcome, Outcome::Refused(Reason::ActionNotGranted));
    }
    let (result, _) = set_platform_access(&d.state, LocalLevel::Admin, true, false, d.now);
    let (state, effects) = result.unwrap();
    assert!(!state.access.platform_access);
    assert_eq!(
        effects.as_slice(),
        &[
            Effect::Persist,
            Effect::CloudLink { enabled: false },
            Effect::PublishState
        ]
    );
}

#[test]
fn only_a_process_on_the_admin_list_switches_platform_access_whatever_level_it_claims() {
    let d = Device::owned();
    for level in [LocalLevel::Admin, LocalLevel::Operator, LocalLevel::Guest] {
        let (result, audit) = set_platform_access(&d.state, level, false, false, d.now);
        assert_eq!(result.unwrap_err(), Reason::PeerNotAllowed, "{level:?}");
        assert_eq!(audit.outcome, Outcome::Refused(Reason::PeerNotAllowed));
        assert_eq!(audit.event, AuditEvent::PlatformAccess { enabled: false });
    }
}

#[test]
fn commands_are_refused_while_platform_access_is_off() {
    let mut d = Device::owned();
    let (result, _) = set_platform_access(&d.state, LocalLevel::Admin, true, false, d.now);
    d.state = result.unwrap().0;
    d.expect_refused("alice", CommandBody::UnshareAll, Reason::PlatformAccessOff);
}

#[test]
fn handover_turns_the_service_back_on_when_the_installer_keeps_no_switch() {
    let mut d = Device::installer_managed();
    d.expect_ok("inst", CommandBody::SetCloudService { enabled: false });
    d.expect_ok(
        "alice",
        CommandBody::Handover {
            installer_grants: InstallerGrants::default(),
        },
    );
    assert!(d.state.access.cloud_service);
    d.expect_decision(&cloud("alice"), LiveView, Some(1), Decision::Allow);
    // With the switch kept, the installer's choice stands.
    let mut d = Device::installer_managed();
    d.expect_ok("inst", CommandBody::SetCloudService { enabled: false });
    d.expect_ok(
        "alice",
        CommandBody::Handover {
            installer_grants: InstallerGrants {
                may_disable_cloud: true,
                ..InstallerGrants::default()
            },
        },
    );
    assert!(!d.state.access.cloud_service);
}
