//! A device that falls back to an older copy of its state never grants more
//! than it did before the crash (issue 13, defect 2).
//!
//! Share bob, unshare bob (acknowledged), SIGKILL, damage the main state
//! file (truncated, a flipped bit, emptied, deleted): the agent loads the
//! previous copy, which still holds bob's share. It must deny bob (and
//! every cloud principal) with `StateBehind`, say `behind` in its state
//! report, and come back in one step when the cloud sends `RestoreState`
//! from its record: bob then has no share, alice is the owner again.

mod support;

use std::path::Path;

use hc_protocol::access::{Action, Decision, Principal};
use hc_protocol::messages::Binding;
use hc_protocol::{AccountId, CommandBody, InstallerGrants, Outcome, Reason, Text};
use hc_testkit::cloud::TestCloud;
use hc_testkit::daemon::{AgentProcess, Site};
use hc_testkit::fixture::{account, bob_live_view};
use hc_testkit::local::{state_of, wait_local};
use hc_testkit::model::unshare_body;
use support::site;

/// Damages the state file at the path.
type Damage = fn(&Path);

/// Ways a state file is found damaged after a crash.
const DAMAGE: [(&str, Damage); 4] = [
    ("truncated", |p| {
        let bytes = std::fs::read(p).unwrap();
        std::fs::write(p, &bytes[..bytes.len() / 2]).unwrap();
    }),
    ("a flipped bit", |p| {
        let mut bytes = std::fs::read(p).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x10;
        std::fs::write(p, bytes).unwrap();
    }),
    ("emptied", |p| std::fs::write(p, b"").unwrap()),
    ("deleted", |p| std::fs::remove_file(p).unwrap()),
];

fn decision(socket: &Path, who: &str) -> Decision {
    let principal = Principal::Cloud(AccountId::new(who).unwrap());
    wait_local(socket)
        .authorize(principal, Action::LiveView, Some(1))
        .expect("Authorize")
}

/// The agent owned by alice, bob's share given (bob allowed) and taken
/// back (acknowledged, bob denied).
fn shared_then_unshared(site: &Site, config: &Path) -> (TestCloud, AgentProcess) {
    let socket = site.socket();
    let (mut cloud, agent) = site.start_owned(config);
    let shared = cloud.send("alice", bob_live_view(None));
    assert_eq!(shared.outcome, Outcome::Accepted);
    assert_eq!(decision(&socket, "bob"), Decision::Allow);
    let unshared = cloud.send("alice", unshare_body("bob"));
    assert_eq!(unshared.outcome, Outcome::Accepted);
    assert_eq!(
        decision(&socket, "bob"),
        Decision::Deny(Reason::NotAPrincipal)
    );
    (cloud, agent)
}

#[test]
fn a_damaged_state_file_never_gives_back_a_revoked_share_until_the_cloud_restores_the_state() {
    for (damage, apply_damage) in DAMAGE {
        let site = site();
        let (config, socket) = (site.default_config(), site.socket());
        let (mut cloud, mut agent) = shared_then_unshared(&site, &config);
        let acked_seq = cloud.seq;
        assert_eq!(
            decision(&socket, "bob"),
            Decision::Deny(Reason::NotAPrincipal)
        );
        agent.kill();
        apply_damage(&site.state_dir().join("state"));

        let agent = site.start_agent(&config);
        let report = state_of(&socket);
        assert!(report.behind, "{damage}: the report must say behind");
        assert_eq!(report.last_seq, acked_seq - 1, "{damage}: the older copy");
        for who in ["bob", "alice"] {
            assert_eq!(
                decision(&socket, who),
                Decision::Deny(Reason::StateBehind),
                "{damage}: {who} while behind\n{}",
                agent.log()
            );
        }
        // A plain command is refused the same way: the cloud learns it must
        // restore first.
        let refused = cloud.send("alice", bob_live_view(None));
        assert_eq!(
            refused.outcome,
            Outcome::Refused(Reason::StateBehind),
            "{damage}"
        );

        // The cloud's record: owned by alice, no share.
        let restore = CommandBody::RestoreState {
            binding: Binding::Owned {
                owner: account("alice"),
                installer: None,
                installer_grants: InstallerGrants::default(),
            },
            shares: heapless::Vec::new(),
            cloud_service: true,
            domain: Text::new(report.domain.as_str()).unwrap(),
        };
        assert_eq!(
            cloud.send("bob", restore.clone()).outcome,
            Outcome::Refused(Reason::NotOwner),
            "{damage}: only for the account holding the device"
        );
        assert_eq!(
            cloud.send("alice", restore).outcome,
            Outcome::Accepted,
            "{damage}"
        );
        let report = state_of(&socket);
        assert!(!report.behind, "{damage}");
        assert!(report.shares.is_empty(), "{damage}");
        assert_eq!(
            decision(&socket, "bob"),
            Decision::Deny(Reason::NotAPrincipal)
        );
        assert_eq!(decision(&socket, "alice"), Decision::Allow, "{damage}");
        println!(
            "{damage}: fell back to seq {} (acked {acked_seq}), bob denied StateBehind, restored in one step",
            acked_seq - 1
        );
    }
}

#[test]
fn the_behind_flag_survives_a_restart_before_the_restore() {
    let site = site();
    let (config, socket) = (site.default_config(), site.socket());
    let (mut cloud, mut agent) = shared_then_unshared(&site, &config);
    agent.kill();
    std::fs::remove_file(site.state_dir().join("state")).unwrap();
    let mut agent = site.start_agent(&config);
    assert!(state_of(&socket).behind);
    // A refused command is written with the flag: a clean restart now finds
    // a good main file, and must still be behind.
    let refused = cloud.send("alice", bob_live_view(None));
    assert_eq!(refused.outcome, Outcome::Refused(Reason::StateBehind));
    agent.terminate();
    let _agent = site.start_agent(&config);
    assert!(state_of(&socket).behind, "the flag is on flash");
    assert_eq!(
        decision(&socket, "bob"),
        Decision::Deny(Reason::StateBehind)
    );
}
