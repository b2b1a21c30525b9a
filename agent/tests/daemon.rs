//! The daemon end to end: the real `hc-agent` binary against the embedded
//! broker over mutual TLS on loopback, with a test cloud that signs
//! commands. Each test is named after the behaviour it proves.

mod support;

use std::time::Duration;

use hc_agent::client::LocalClient;
use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::ddns::DomainRegistration;
use hc_protocol::topics::Leaf;
use hc_protocol::{AccountId, ChannelScope, CommandBody, Outcome, Permissions, Reason};
use hc_testkit::daemon::*;
use hc_testkit::model::live_view_share;
use support::site;

fn share_bob() -> CommandBody {
    live_view_share("bob", None)
}

fn wait_socket(site: &Site) -> LocalClient {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Ok(client) = LocalClient::connect(&site.socket(), Duration::from_secs(5)) {
            return client;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "local socket never came up"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn connects_with_its_client_certificate_and_reports_online_and_state() {
    let site = site();
    let cloud = site.cloud();
    let _agent = site.start_agent(&site.default_config());
    assert!(
        cloud.wait_status(true, WAIT),
        "device never reported online"
    );
    let state = cloud.wait_state(|_| true);
    assert_eq!(state.serial.as_str(), SERIAL);
}

#[test]
fn a_signed_command_is_applied_persisted_and_acknowledged() {
    let site = site();
    let (mut cloud, mut agent) = site.start_owned(&site.default_config());
    assert_eq!(cloud.send("alice", share_bob()).outcome, Outcome::Accepted);
    let state = cloud.wait_state(|s| s.shares.len() == 1);
    assert_eq!(state.shares[0].account.id.as_str(), "bob");
    // Persisted: after a restart the share is still there.
    agent.kill();
    let _agent = site.start_agent(&site.default_config());
    let mut client = wait_socket(&site);
    let decision = client
        .authorize(
            Principal::Cloud(AccountId::new("bob").unwrap()),
            Action::LiveView,
            Some(1),
        )
        .unwrap();
    assert_eq!(decision, Decision::Allow);
}

#[test]
fn wrong_signature_replay_and_oversized_payload_are_refused_and_change_nothing() {
    let site = site();
    let (mut cloud, _agent) = site.start_owned(&site.default_config());
    let before = cloud.wait_state(|s| s.last_seq == 1);

    // Wrong signature: one flipped bit in the signature.
    let command = cloud.command("alice", share_bob());
    let mut bytes = cloud.seal(&command);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    cloud.publish_raw(bytes);
    assert_eq!(
        cloud.wait_ack(None).outcome,
        Outcome::Refused(Reason::BadSignature)
    );

    // Replay of the bind (seq 1) after it was applied.
    let mut replay = cloud.command("alice", CommandBody::UnshareAll);
    replay.seq = 1;
    cloud.publish_raw(cloud.seal(&replay));
    let ack = cloud.wait_ack(Some(1));
    assert!(
        ack.redelivered,
        "seq 1 is the recent bind: answered as a redelivery"
    );
    assert_eq!(ack.outcome, Outcome::Accepted);
    let mut older = cloud.command("alice", CommandBody::UnshareAll);
    older.seq = 0;
    cloud.publish_raw(cloud.seal(&older));
    assert_eq!(
        cloud.wait_ack(Some(0)).outcome,
        Outcome::Refused(Reason::ReplayedSequence)
    );

    // Oversized payload.
    cloud.publish_raw(vec![1u8; hc_protocol::limits::MAX_COMMAND_BYTES + 1]);
    assert_eq!(
        cloud.wait_ack(None).outcome,
        Outcome::Refused(Reason::TooLarge)
    );

    // Nothing changed: a state request reports the same access list.
    assert_eq!(
        cloud.send("alice", CommandBody::RequestState).outcome,
        Outcome::Accepted
    );
    let after = cloud.wait_state(|s| s.last_seq > before.last_seq);
    assert_eq!(after.shares, before.shares);
    assert_eq!(after.binding, before.binding);
}

fn playback_share(name: &str) -> CommandBody {
    CommandBody::Share {
        account: account(name),
        permissions: Permissions::of(&[Action::Playback]),
        channels: ChannelScope::All,
        validity: None,
    }
}

#[test]
fn broker_restarts_with_commands_in_flight_lose_and_duplicate_nothing() {
    let mut site = site();
    let (mut cloud, _agent) = site.start_owned(&site.default_config());
    let mut sent = Vec::new();
    for round in 0..5 {
        // Queue commands, restart the broker while they are in flight.
        for i in 0..4 {
            let command = cloud.command("alice", playback_share(&format!("user-{round}-{i}")));
            let envelope = cloud.seal(&command);
            cloud.publish_raw(envelope.clone());
            sent.push((command.seq, envelope));
        }
        site.broker.restart().unwrap();
    }
    // The cut also hit the cloud's own client, so some publishes never
    // reached the broker: the cloud resends every command it has no
    // acknowledgement for. The device answers an applied one again with
    // its outcome, and refuses one that was overtaken by a later sequence
    // number (it was never applied): the cloud issues that one anew.
    let mut overtaken = Vec::new();
    for (seq, envelope) in &sent {
        cloud.publish_raw(envelope.clone());
        match cloud.wait_ack(Some(*seq)).outcome {
            Outcome::Accepted => {}
            Outcome::Refused(Reason::ReplayedSequence) => overtaken.push(*seq),
            other => panic!("seq {seq}: {other:?}"),
        }
    }
    for seq in &overtaken {
        let name = format!("user-{}-{}", (seq - 2) / 4, (seq - 2) % 4);
        let ack = cloud.send("alice", playback_share(&name));
        assert_eq!(ack.outcome, Outcome::Accepted, "{name} issued anew");
    }
    let last = cloud.seq;
    assert_eq!(
        cloud.send("alice", CommandBody::RequestState).outcome,
        Outcome::Accepted
    );
    let state = cloud.wait_state(|s| s.last_seq == last + 1);
    let mut names: Vec<String> = state
        .shares
        .iter()
        .map(|s| s.account.id.to_string())
        .collect();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), state.shares.len(), "a share was applied twice");
    assert_eq!(state.shares.len(), sent.len(), "shares: {names:?}");
    println!(
        "5 broker restarts, {} commands: {} overtaken and issued anew, every share applied once",
        sent.len(),
        overtaken.len()
    );
}

#[test]
fn the_last_will_marks_the_device_offline_when_the_agent_is_killed() {
    let site = site();
    let (cloud, mut agent) = site.start_online(&site.default_config());
    agent.kill();
    // The broker notices the dead connection within 1.5 keep-alives (5 s).
    assert!(
        cloud.wait_status(false, Duration::from_secs(15)),
        "no offline status after SIGKILL"
    );
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

#[test]
fn the_online_status_is_refreshed_while_connected_and_the_will_carries_the_connect_time() {
    let site = site();
    let config = site.write_agent_config("agent.toml", |c| c.cloud.status_refresh_secs = 5);
    let cloud = site.cloud();
    let before = unix_now();
    let mut agent = site.start_agent(&config);
    let first = cloud
        .wait_status_value(true, WAIT)
        .unwrap_or_else(|| panic!("device never online:\n{}", agent.log()));
    assert_eq!(first.refresh_s, 5);
    assert!(
        (before..=unix_now()).contains(&first.written_s),
        "{first:?}"
    );
    // One more (a signed time answer may add one at the start): a status
    // written at least one refresh interval after the first.
    let refreshed = loop {
        let next = cloud
            .wait_status_value(true, Duration::from_secs(10))
            .expect("no refresh within two intervals");
        if next.written_s >= first.written_s + 4 {
            break next;
        }
    };
    assert_eq!(refreshed.refresh_s, 5);
    agent.kill();
    let will = cloud
        .wait_status_value(false, Duration::from_secs(15))
        .expect("no offline status after SIGKILL");
    assert_eq!(will.refresh_s, 0);
    // The will was fixed at the connect, before the first online status.
    assert!(
        (before..=first.written_s).contains(&will.written_s),
        "{will:?} {first:?}"
    );
}

#[test]
fn sigterm_marks_the_device_offline_and_exits_cleanly() {
    let site = site();
    let (cloud, mut agent) = site.start_online(&site.default_config());
    let status = agent.terminate();
    assert!(status.success(), "exit status {status}:\n{}", agent.log());
    assert!(cloud.wait_status(false, Duration::from_secs(3)));
}

#[test]
fn a_broker_certificate_from_another_ca_is_refused() {
    let site = site();
    let other = site.pki.generate_unrelated().unwrap();
    let config = site.write_agent_config("agent.toml", |c| c.cloud.ca = other.ca_cert().to_owned());
    let cloud = site.cloud();
    let agent = site.start_agent(&config);
    assert!(
        !cloud.wait_status(true, Duration::from_secs(3)),
        "connected through a broker it must not trust"
    );
    let log = agent.log();
    let failures: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("cloud connection failed"))
        .collect();
    assert!(failures.len() >= 2, "retried with backoff:\n{log}");
    assert!(
        failures.iter().all(|l| l.contains("UnknownIssuer")),
        "every attempt fails on the unknown issuer:\n{log}"
    );
    assert!(!log.contains("connected to the cloud"), "{log}");
    drop(agent);
    // Control: the same configuration with the cloud's own CA connects.
    let _agent = site.start_agent(&site.default_config());
    assert!(
        cloud.wait_status(true, WAIT),
        "the right CA did not connect"
    );
}

#[test]
fn the_local_socket_answers_authorize_under_concurrent_clients_and_survives_garbage() {
    let site = site();
    let (mut cloud, _agent) = site.start_owned(&site.default_config());
    assert_eq!(cloud.send("alice", share_bob()).outcome, Outcome::Accepted);
    drop(wait_socket(&site));

    let mut garbage = LocalClient::connect(&site.socket(), Duration::from_secs(5)).unwrap();
    garbage.write_raw(&[0, 0, 0, 3, 0xff, 0xff, 0xff]).unwrap();
    assert!(matches!(
        garbage.read_reply(),
        Ok(hc_protocol::local::LocalReply::Error(Reason::Malformed))
    ));
    let mut oversized = LocalClient::connect(&site.socket(), Duration::from_secs(5)).unwrap();
    oversized.write_raw(&u32::MAX.to_be_bytes()).unwrap();
    assert!(matches!(
        oversized.read_reply(),
        Ok(hc_protocol::local::LocalReply::Error(Reason::TooLarge))
    ));

    let threads: Vec<_> = (0..16)
        .map(|i| {
            let path = site.socket();
            std::thread::spawn(move || {
                let mut client = LocalClient::connect(&path, Duration::from_secs(5)).unwrap();
                let bob = Principal::Cloud(AccountId::new("bob").unwrap());
                let guest = Principal::Local(LocalLevel::Guest);
                let not_granted = Decision::Deny(Reason::ActionNotGranted);
                for n in 0..200u16 {
                    let channel = Some(1 + (n + i) % 8);
                    for (principal, action, channel, expected) in [
                        (&bob, Action::LiveView, channel, Decision::Allow),
                        (&bob, Action::ConfigWrite, None, not_granted),
                        (&guest, Action::Ptz, channel, not_granted),
                    ] {
                        let decision = client.authorize(principal.clone(), action, channel);
                        assert_eq!(decision.unwrap(), expected, "{principal:?} {action:?}");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    // The cloud link was not disturbed.
    assert_eq!(
        cloud.send("alice", CommandBody::RequestState).outcome,
        Outcome::Accepted
    );
}

#[test]
fn platform_access_off_closes_the_link_and_keeps_it_closed_until_on() {
    let site = site();
    let (mut cloud, _agent) = site.start_online(&site.default_config());
    let mut client = wait_socket(&site);
    assert_eq!(
        client
            .set_platform_access(LocalLevel::Operator, false)
            .unwrap_err()
            .to_string(),
        hc_agent::client::ClientError::Refused(Reason::ActionNotGranted).to_string()
    );
    client
        .set_platform_access(LocalLevel::Admin, false)
        .unwrap();
    assert!(cloud.wait_status(false, WAIT));
    assert!(
        !cloud.wait_status(true, Duration::from_secs(3)),
        "link reopened while platform access is off"
    );
    assert_eq!(
        client.status().unwrap().link,
        hc_protocol::local::LinkState::Disabled
    );
    client.set_platform_access(LocalLevel::Admin, true).unwrap();
    assert!(cloud.wait_status(true, WAIT));
    assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);
}

#[test]
fn the_domain_is_registered_again_after_a_port_change() {
    let site = site();
    let cloud = site.cloud();
    let _agent = site.start_agent(&site.default_config());
    let first = cloud
        .wait_for(Leaf::DomainRegister, WAIT, |p| {
            decode::<DomainRegistration>(&p.payload)
        })
        .expect("first registration");
    assert_eq!(first.ports.http, 80);
    assert_eq!(first.domain.as_str(), "e2e-nvr-1");
    std::fs::write(site.ports_file(), "http=8080\nmap=tcp:8080:18080\n").unwrap();
    let second = cloud
        .wait_for(Leaf::DomainRegister, WAIT, |p| {
            decode::<DomainRegistration>(&p.payload).filter(|r| r.ports.http == 8080)
        })
        .expect("registration after the port change");
    assert_eq!(second.mappings.len(), 1);
    assert!(second.attempt > first.attempt);
}

#[test]
fn the_local_socket_is_created_with_a_mode_that_shuts_out_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let site = site();
    let _agent = site.start_agent(&site.default_config());
    let _local = hc_testkit::local::wait_local(&site.socket());
    let mode = std::fs::metadata(site.socket())
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    // The configured default: owner and group (the firmware's processes).
    assert_eq!(mode, 0o660, "socket mode {mode:o}");
}
