//! Revocation reaches running streams, end to end with the real binary: a
//! simulated streaming server watches live-view sessions of a share, a
//! timed share, the installer, the owner and a local admin; the owner
//! deletes the share, the timed share reaches its end, the installer
//! switches the cloud service off. Each revoked session gets its notice
//! with the right reason, at once; the sessions that stay allowed get none.

mod support;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hc_agent::client::{LocalClient, Notice};
use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::{
    AccountId, BindRole, CommandBody, Grant, InstallerGrants, Outcome, Reason, Validity,
};
use hc_testkit::daemon::*;
use hc_testkit::local::wait_local;
use hc_testkit::model::{bind_body, live_view_share, unshare_body};
use support::site;

fn cloud(id: &str) -> Principal {
    Principal::Cloud(AccountId::new(id).unwrap())
}

fn unix_now() -> Duration {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap()
}

/// Session ids of the streaming server.
const BOB: u32 = 1;
const CAROL: u32 = 2;
const INSTALLER: u32 = 3;
const OWNER: u32 = 4;
const LOCAL_ADMIN: u32 = 5;

/// Waits for the next notice; panics after `within`.
fn notice(stream: &mut LocalClient, within: Duration) -> Notice {
    stream
        .next_notice(within)
        .expect("the connection stays open")
        .unwrap_or_else(|| panic!("no notice within {within:?}"))
}

fn no_notice(stream: &mut LocalClient, during: Duration) {
    if let Some(n) = stream.next_notice(during).unwrap() {
        panic!("unexpected notice {n:?}");
    }
}

#[test]
fn revoked_sessions_are_told_at_once_with_the_reason_and_the_others_are_not() {
    let site = site();
    let (mut cloud_side, agent) = site.start_online(&site.default_config());
    // inst installs the site and hands it to alice, keeping live view and
    // the right to switch the cloud service off.
    let installed = cloud_side.send("inst", bind_body("inst", BindRole::Installer));
    assert_eq!(installed.outcome, Outcome::Accepted);
    let grants = InstallerGrants {
        live_view: Some(Grant { validity: None }),
        may_disable_cloud: true,
        ..InstallerGrants::default()
    };
    let handover = CommandBody::Handover {
        installer_grants: grants,
    };
    assert_eq!(
        cloud_side.send("alice", handover).outcome,
        Outcome::Accepted
    );
    assert_eq!(
        cloud_side
            .send("alice", live_view_share("bob", None))
            .outcome,
        Outcome::Accepted
    );
    // carol's share ends on a whole second 3 to 4 s from now.
    let ends_at = unix_now().as_secs() + 4;
    let window = Validity {
        not_before: 0,
        not_after: ends_at,
    };
    let carol = cloud_side.send("alice", live_view_share("carol", Some(window)));
    assert_eq!(carol.outcome, Outcome::Accepted);

    let _ready = wait_local(&site.socket());
    let mut streams = LocalClient::connect(&site.socket(), WAIT).unwrap();
    let sessions = [
        (BOB, cloud("bob")),
        (CAROL, cloud("carol")),
        (INSTALLER, cloud("inst")),
        (OWNER, cloud("alice")),
        (LOCAL_ADMIN, Principal::Local(LocalLevel::Admin)),
    ];
    for (session, principal) in sessions {
        let decision = streams.watch(session, principal, Action::LiveView, Some(1));
        assert_eq!(decision.unwrap(), Decision::Allow, "session {session}");
    }
    // A session that is denied now is not watched.
    let stranger = streams.watch(9, cloud("mallory"), Action::LiveView, Some(1));
    assert_eq!(stranger.unwrap(), Decision::Deny(Reason::NotAPrincipal));
    no_notice(&mut streams, Duration::from_millis(200));

    // 1. The owner deletes bob's share.
    let command = cloud_side.command("alice", unshare_body("bob"));
    let sent = Instant::now();
    cloud_side.publish_raw(cloud_side.seal(&command));
    let revoked = notice(&mut streams, WAIT);
    let after_command = sent.elapsed();
    assert_eq!(
        revoked,
        Notice {
            session: BOB,
            reason: Reason::NotAPrincipal
        }
    );
    assert_eq!(
        cloud_side.wait_ack(Some(command.seq)).outcome,
        Outcome::Accepted
    );

    // 2. carol's share reaches its end: told by a timer at the end time.
    let revoked = notice(&mut streams, Duration::from_secs(8));
    let late = unix_now().saturating_sub(Duration::from_secs(ends_at));
    // The end is the device's, by signed time: on a loaded machine the
    // test cloud's answer can leave it some way behind this process's
    // wall clock (half a slow round trip), and the notice that much later.
    let behind = wait_local(&site.socket())
        .status()
        .unwrap()
        .clock_offset_ms
        .unwrap_or(0)
        .max(0)
        .unsigned_abs();
    let late = late.saturating_sub(Duration::from_millis(behind));
    assert_eq!(
        revoked,
        Notice {
            session: CAROL,
            reason: Reason::Expired
        }
    );
    assert!(
        late < Duration::from_millis(500),
        "told {late:?} after the end of the share (by the device's clock, {behind} ms behind this one)"
    );

    // 3. The installer switches the cloud service off: the owner's session
    //    stops; the installer's own and the local admin's go on.
    let off = cloud_side.send("inst", CommandBody::SetCloudService { enabled: false });
    assert_eq!(off.outcome, Outcome::Accepted);
    let revoked = notice(&mut streams, WAIT);
    assert_eq!(
        revoked,
        Notice {
            session: OWNER,
            reason: Reason::CloudServiceDisabled
        }
    );
    no_notice(&mut streams, Duration::from_millis(500));

    // The sessions still watched are the installer's and the local admin's:
    // platform access off revokes the installer's too, not the local one.
    let mut admin = LocalClient::connect(&site.socket(), WAIT).unwrap();
    admin.set_platform_access(LocalLevel::Admin, false).unwrap();
    let revoked = notice(&mut streams, WAIT);
    assert_eq!(
        revoked,
        Notice {
            session: INSTALLER,
            reason: Reason::PlatformAccessOff
        }
    );
    no_notice(&mut streams, Duration::from_millis(500));
    streams.unwatch(LOCAL_ADMIN).unwrap();
    eprintln!(
        "command -> notice {after_command:?} (through the broker); grant end -> notice {late:?}"
    );
    drop(agent);
}
