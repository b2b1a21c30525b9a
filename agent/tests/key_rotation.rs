//! Command key rotation by signed command (SPEC §6.2), end to end: the real
//! `hc-agent` binary, the embedded broker and the test cloud. While a
//! stream of share commands flows, the cloud adds key 2 (signed with key 1),
//! signs with key 2 once that is acknowledged, and removes key 1 (signed
//! with key 2). No command is lost or applied twice; key 1 is refused from
//! then on, also after a reload of a configuration that still pins it, and
//! after a restart the device still holds key 2 alone.

mod support;

use std::collections::BTreeMap;
use std::process::Command as Process;

use hc_protocol::local::StatusReply;
use hc_protocol::{Ack, Command, CommandBody, Outcome, Reason, Serial};
use hc_testkit::cloud::TestCloud;
use hc_testkit::daemon::*;
use hc_testkit::local::{state_of, wait_local};
use hc_testkit::model::{access_of, bind_owner_body, fresh_applications, stream_body, Model};
use support::{agent_binary, site};

/// Stream commands sent in each batch.
const BATCH: u64 = 10;

/// Signs, publishes and (for an access command) applies to the model the
/// next command of alice, without waiting for its ack: commands flow.
fn publish(cloud: &mut TestCloud, model: &mut Model, body: CommandBody) -> u64 {
    let command = cloud.command("alice", body);
    cloud.publish_raw(cloud.seal(&command));
    let key_command = matches!(
        command.body,
        CommandBody::AddCommandKey { .. } | CommandBody::RemoveCommandKey { .. }
    );
    if !key_command {
        assert_eq!(model.apply(&command), Outcome::Accepted, "{command:?}");
    }
    command.seq
}

/// The next batch of stream commands (share, reshare, unshare; applying
/// any twice shows in the shares). `stream` counts them apart from the
/// sequence numbers, which the key commands take some of.
fn publish_batch(cloud: &mut TestCloud, model: &mut Model, stream: &mut u64) {
    for _ in 0..BATCH {
        *stream += 1;
        publish(cloud, model, stream_body(*stream));
    }
}

/// Waits for `n` acks and keeps them by sequence number, each once.
fn acks(cloud: &TestCloud, n: usize, into: &mut BTreeMap<u64, Vec<Ack>>) {
    let got = cloud.collect_acks(n, WAIT);
    assert_eq!(got.len(), n, "acks missing: {got:?}");
    for ack in got {
        let seq = ack.seq.expect("every envelope verified");
        into.entry(seq).or_default().push(ack);
    }
}

fn status(site: &Site) -> StatusReply {
    wait_local(&site.socket()).status().unwrap()
}

#[test]
fn keys_rotate_by_command_while_commands_flow_and_the_ring_survives_a_restart() {
    let site = site();
    let config = site.default_config();
    let (mut cloud, mut agent) = site.start_owned(&config);
    let mut model = Model::default();
    let bind = Command {
        serial: Serial::new(SERIAL).unwrap(),
        actor: account("alice"),
        seq: 1,
        issued_at: hc_agent::shell::clock::now_secs(),
        body: bind_owner_body("alice"),
    };
    assert_eq!(model.apply(&bind), Outcome::Accepted);
    assert_eq!(status(&site).command_key_ids.as_slice(), [1]);

    let mut acked = BTreeMap::new();
    // The stream's first command is 2 (1 is the bind).
    let mut stream = 1;
    // Key 1 signs a batch and, right behind it, the new key.
    publish_batch(&mut cloud, &mut model, &mut stream);
    let next = next_signer();
    let add = publish(
        &mut cloud,
        &mut model,
        CommandBody::AddCommandKey {
            key_id: next.key_id(),
            public_key: next.public_key(),
        },
    );
    acks(&cloud, BATCH as usize + 1, &mut acked);
    assert_eq!(acked[&add][0].outcome, Outcome::Accepted);

    // Acknowledged: the cloud signs with key 2 from now on, and removes
    // key 1 in the middle of the flow.
    cloud.use_signer(next.key_id(), &NEXT_SEED);
    publish_batch(&mut cloud, &mut model, &mut stream);
    let remove = publish(
        &mut cloud,
        &mut model,
        CommandBody::RemoveCommandKey { key_id: 1 },
    );
    publish_batch(&mut cloud, &mut model, &mut stream);
    acks(&cloud, 2 * BATCH as usize + 1, &mut acked);
    assert_eq!(acked[&remove][0].outcome, Outcome::Accepted);

    // Every command acknowledged once, accepted, none a redelivery, and
    // applied once (the agent's log and the shares say so).
    let last = cloud.seq;
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (2..=last).collect::<Vec<_>>()
    );
    for (seq, acks) in &acked {
        assert_eq!(acks.len(), 1, "seq {seq}: {acks:?}");
        assert_eq!(acks[0].outcome, Outcome::Accepted, "seq {seq}");
        assert!(!acks[0].redelivered, "seq {seq}");
    }
    let applied = fresh_applications(&agent.log());
    for seq in 1..=last {
        assert_eq!(
            applied.get(&seq),
            Some(&1),
            "seq {seq} applied {:?} times",
            applied.get(&seq)
        );
    }
    // From the device itself: the retained reports it published meanwhile
    // may already have been read past while the acks were collected.
    let report = state_of(&site.socket());
    assert_eq!(report.last_seq, last);
    assert_eq!(report.command_key_ids.as_slice(), [2]);
    assert_eq!(access_of(&report), *model.access());

    // Key 1 opens nothing any more: refused before its seq is trusted.
    let old = signer();
    let stale = cloud.command("alice", CommandBody::RequestState);
    cloud.publish_raw(old.seal(&stale).unwrap());
    assert_eq!(
        cloud.wait_ack(None).outcome,
        Outcome::Refused(Reason::UnknownKeyId)
    );

    // A reload of the configuration, which still pins key 1 alone, does
    // not undo the cloud's rotation.
    agent.hangup();
    agent.wait_logged("configuration reloaded", 1, WAIT);
    let stale = cloud.command("alice", CommandBody::RequestState);
    cloud.publish_raw(old.seal(&stale).unwrap());
    assert_eq!(
        cloud.wait_ack(None).outcome,
        Outcome::Refused(Reason::UnknownKeyId)
    );
    assert_eq!(status(&site).command_key_ids.as_slice(), [2]);

    // After a restart the ring read from flash is still {2}.
    agent.kill();
    let agent = site.start_agent(&config);
    let after = status(&site);
    assert_eq!(after.command_key_ids.as_slice(), [2]);
    assert_eq!(after.last_seq, last);
    let stale = cloud.command("alice", CommandBody::RequestState);
    cloud.publish_raw(old.seal(&stale).unwrap());
    assert_eq!(
        cloud.wait_ack(None).outcome,
        Outcome::Refused(Reason::UnknownKeyId)
    );
    let fresh = cloud.command("alice", CommandBody::RequestState);
    cloud.publish_raw(cloud.seal(&fresh));
    assert_eq!(cloud.wait_ack(Some(fresh.seq)).outcome, Outcome::Accepted);

    // `ctl status` shows the ids the device holds.
    let ctl = Process::new(agent_binary())
        .args(["ctl", "--socket"])
        .arg(site.socket())
        .args(["--json", "status"])
        .output()
        .unwrap();
    let json = String::from_utf8_lossy(&ctl.stdout);
    assert!(json.contains(r#""command_key_ids":[2]"#), "{json}");
    drop(agent);
}
