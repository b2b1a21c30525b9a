//! Bad input against the real `hc-agent` binary over mutual TLS: on the
//! command topic (garbage, truncation, signatures, keys, replays, other
//! serials, sizes, over-long names, unknown enum values in validly signed
//! hand-made postcard, and commands the access rules refuse) and on the
//! local socket (garbage, oversized, stalled and unknown frames, too many
//! clients, a peer not on the allow-list).
//!
//! Every case checks three things: the refusal carries its reason (in the
//! ack, or the local reply), the state is unchanged (the agent's own
//! ListAccess), and the agent keeps serving (a good command is accepted
//! right after). The number of cases is printed; docs/FAULTS.md lists them.

mod support;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use hc_agent::client::LocalClient;
use hc_protocol::access::{Action, Decision, LocalLevel, Principal};
use hc_protocol::limits::{
    MAX_COMMAND_BYTES, MAX_LOCAL_CLIENTS_PER_UID, MAX_LOCAL_FRAME_BYTES, MAX_SHARES,
};
use hc_protocol::local::{LinkState, LocalReply, LocalRequest};
use hc_protocol::messages::{AuditEvent, StateReport};
use hc_protocol::{
    AccountId, Ack, ChannelScope, ChannelSet, Command, CommandBody, Outcome, Permissions, Reason,
    Serial, Validity,
};
use hc_testkit::agent_config::current_uid;
use hc_testkit::cloud::TestCloud;
use hc_testkit::daemon::*;
use hc_testkit::local::{state_of, wait_local};
use hc_testkit::model::{access_of, Rng};
use support::site;

// ------------------------------------------------------ hand-made postcard

fn ack(seq: Option<u64>, outcome: Outcome, redelivered: bool) -> Ack {
    Ack {
        seq,
        outcome,
        redelivered,
    }
}

fn varint(mut v: u64) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let byte = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(byte);
            return out;
        }
        out.push(byte | 0x80);
    }
}

fn string(bytes: &[u8]) -> Vec<u8> {
    let mut out = varint(bytes.len() as u64);
    out.extend_from_slice(bytes);
    out
}

/// The command fields before the body, for `actor` (id and region bytes).
fn prefix(serial: &[u8], actor: &[u8], region: &[u8], seq: u64, issued_at: u64) -> Vec<u8> {
    [
        string(serial),
        string(actor),
        string(region),
        varint(seq),
        varint(issued_at),
    ]
    .concat()
}

/// An envelope with a valid signature over whatever `command` bytes are.
fn sign_raw(key_id: u8, command: &[u8]) -> Vec<u8> {
    let pair = ring::signature::Ed25519KeyPair::from_seed_unchecked(&SEED).unwrap();
    let mut out = vec![hc_protocol::envelope::ENVELOPE_VERSION, key_id];
    out.extend_from_slice(command);
    let signature = pair.sign(&out);
    out.extend_from_slice(signature.as_ref());
    out
}

fn now() -> u64 {
    hc_agent::shell::clock::now_secs()
}

/// Body bytes of `Share { account, permissions, All, None }`.
fn share_bytes(account: &[u8], region: &[u8], permissions: u64) -> Vec<u8> {
    [
        vec![2],
        string(account),
        string(region),
        varint(permissions),
        vec![0, 0],
    ]
    .concat()
}

// ----------------------------------------------------------------- bench

/// One agent, owned by alice, shared with bob (live view, all channels).
struct Bench {
    // Dropped first: the agent prints its log (in the site's directory)
    // when a test fails.
    _agent: AgentProcess,
    site: Site,
    cloud: TestCloud,
    cases: Vec<String>,
}

fn share(who: &str, actions: &[Action], validity: Option<Validity>) -> CommandBody {
    CommandBody::Share {
        account: account(who),
        permissions: Permissions::of(actions),
        channels: ChannelScope::All,
        validity,
    }
}

fn foreign(id: &str) -> hc_protocol::AccountRef {
    hc_protocol::AccountRef {
        id: AccountId::new(id).unwrap(),
        region: hc_protocol::Region::new("US").unwrap(),
    }
}

impl Bench {
    fn start() -> Bench {
        let site = site();
        let cloud = site.cloud();
        let agent = site.start_agent(&site.default_config());
        assert!(cloud.wait_status(true, WAIT), "device never online");
        let mut bench = Bench {
            site,
            cloud,
            _agent: agent,
            cases: Vec::new(),
        };
        // Before binding: a bind with a wrong verification code proof.
        let seq = bench.cloud.seq + 1;
        let command = bench.cloud.command(
            "alice",
            CommandBody::Bind {
                role: hc_protocol::BindRole::Owner,
                proof: [0x55; 32],
            },
        );
        bench.refused_fresh(
            "bind with a wrong verification-code proof",
            bench.cloud.seal(&command),
            seq,
            Reason::BadVerificationProof,
        );
        assert_eq!(bench.cloud.bind_owner("alice").outcome, Outcome::Accepted);
        assert_eq!(
            bench
                .cloud
                .send("alice", share("bob", &[Action::LiveView], None))
                .outcome,
            Outcome::Accepted
        );
        bench
    }

    fn state(&self) -> StateReport {
        state_of(&self.site.socket())
    }

    /// A good command, accepted: the agent still serves.
    fn still_serving(&mut self, case: &str) {
        let ack = self.cloud.send("alice", CommandBody::RequestState);
        assert_eq!(ack.outcome, Outcome::Accepted, "after {case}");
    }

    /// Publishes `payload`, expects exactly `expected` as its ack, checks
    /// that the access state did not change (nor `last_seq`, unless the
    /// command was a fresh one, which consumes its sequence number), and
    /// that a good command is accepted after.
    fn case(&mut self, name: &str, payload: Vec<u8>, expected: Ack) {
        let before = self.state();
        self.cloud.publish_raw(payload);
        let ack = self.cloud.wait_ack(expected.seq);
        assert_eq!(ack, expected, "{name}");
        let after = self.state();
        assert_eq!(
            access_of(&after),
            access_of(&before),
            "{name} changed the access state"
        );
        let fresh =
            expected.seq.is_some() && !expected.redelivered && expected.seq > Some(before.last_seq);
        let last_seq = if fresh {
            expected.seq.unwrap()
        } else {
            before.last_seq
        };
        assert_eq!(after.last_seq, last_seq, "{name}: last_seq");
        if fresh {
            // The refused command consumed its sequence number.
            self.cloud.seq = self.cloud.seq.max(last_seq);
        }
        self.still_serving(name);
        self.cases.push(name.to_owned());
    }

    /// Refused before verification or decoding: ack with `seq: None`.
    fn refused_unverified(&mut self, name: &str, payload: Vec<u8>, reason: Reason) {
        self.case(name, payload, ack(None, Outcome::Refused(reason), false));
    }

    /// A verified, fresh command refused by the rules.
    fn refused_fresh(&mut self, name: &str, payload: Vec<u8>, seq: u64, reason: Reason) {
        self.case(
            name,
            payload,
            ack(Some(seq), Outcome::Refused(reason), false),
        );
    }

    /// Signs and sends `body` as `actor`, expecting `reason`.
    fn refused_command(&mut self, name: &str, actor: &str, body: CommandBody, reason: Reason) {
        let command = self.cloud.command(actor, body);
        let payload = self.cloud.seal(&command);
        self.refused_fresh(name, payload, command.seq, reason);
    }

    /// The fields before the body of the next command, by alice.
    fn next_prefix(&self) -> Vec<u8> {
        prefix(
            SERIAL.as_bytes(),
            b"alice",
            b"EU",
            self.cloud.seq + 1,
            now(),
        )
    }

    /// A validly signed envelope of the next command by alice whose body
    /// bytes are `body`: only decoding can fail.
    fn signed_body(&self, body: &[u8]) -> Vec<u8> {
        sign_raw(1, &[self.next_prefix(), body.to_vec()].concat())
    }
}

// ------------------------------------------------------------ the command topic

#[test]
fn command_topic_bad_envelopes_each_refused_with_its_reason_state_unchanged_and_serving_after() {
    let mut b = Bench::start();
    let mut rng = Rng(0x5eed_0bad_1dea_f00d);
    let mut random = |n: usize| -> Vec<u8> { (0..n).map(|_| rng.next_u64() as u8).collect() };

    // The hand-made encoding is postcard's: a valid command made by hand
    // equals the library's encoding, so each variation below differs from
    // a valid command only where it is meant to.
    let reference = Command {
        serial: Serial::new(SERIAL).unwrap(),
        actor: account("alice"),
        seq: b.cloud.seq + 1,
        issued_at: 1_767_225_600,
        body: CommandBody::RequestState,
    };
    assert_eq!(
        hc_protocol::codec::encode(&reference, MAX_COMMAND_BYTES).unwrap(),
        [
            prefix(
                SERIAL.as_bytes(),
                b"alice",
                b"EU",
                reference.seq,
                1_767_225_600
            ),
            vec![11]
        ]
        .concat()
    );

    // Garbage, too short, wrong version, unknown key, bad signatures.
    let good_command = b.cloud.command("alice", CommandBody::RequestState);
    let good = b.cloud.seal(&good_command);
    b.cloud.seq -= 1; // `good` is never sent as is
    use Reason::*;
    b.refused_unverified("empty payload", Vec::new(), Malformed);
    b.refused_unverified("one byte", vec![1], Malformed);
    b.refused_unverified(
        "66 bytes (one short of the minimum)",
        good[..66].to_vec(),
        Malformed,
    );
    let mut garbage = random(300);
    garbage[0] = 0xff;
    b.refused_unverified("300 random bytes", garbage, UnsupportedVersion);
    let mut v2 = good.clone();
    v2[0] = 2;
    b.refused_unverified("envelope version 2", v2, UnsupportedVersion);
    let mut garbage = random(300);
    garbage[..2].copy_from_slice(&[1, 1]);
    b.refused_unverified("random bytes behind a valid header", garbage, BadSignature);
    let mut garbage = random(300);
    garbage[..2].copy_from_slice(&[1, 9]);
    b.refused_unverified("random bytes under key id 9", garbage, UnknownKeyId);
    let body = &good[2..good.len() - 64];
    b.refused_unverified(
        "valid command signed with the right seed under key id 2 (not pinned)",
        sign_raw(2, body),
        UnknownKeyId,
    );
    let other = hc_protocol::envelope::CommandSigner::from_seed(1, &[9; 32]).unwrap();
    let forged = other
        .seal(&b.cloud.command("alice", CommandBody::UnshareAll))
        .unwrap();
    b.cloud.seq -= 1;
    b.refused_unverified("signed by another key under key id 1", forged, BadSignature);
    let mut flipped = good.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    b.refused_unverified("one bit flipped in the signature", flipped, BadSignature);
    let mut flipped = good.clone();
    flipped[10] ^= 0x20;
    b.refused_unverified("one bit flipped in the command", flipped, BadSignature);
    let mut no_signature = good.clone();
    no_signature.truncate(good.len() - 64);
    b.refused_unverified(
        "signature cut off (leaves fewer than 67 bytes)",
        no_signature,
        Malformed,
    );

    // Validly signed bytes that are not one command.
    b.refused_unverified("signed random bytes", sign_raw(1, &random(120)), Malformed);
    let command_bytes = [b.next_prefix(), vec![11]].concat();
    b.refused_unverified(
        "signed command with a trailing byte",
        sign_raw(1, &[command_bytes.clone(), vec![0]].concat()),
        Malformed,
    );
    b.refused_unverified(
        "signed command cut before its body",
        sign_raw(1, &command_bytes[..command_bytes.len() - 1]),
        Malformed,
    );

    // Another serial, correctly signed.
    let for_other = sign_raw(
        1,
        &[
            prefix(b"OTHER-NVR-2", b"alice", b"EU", b.cloud.seq + 1, now()),
            vec![11],
        ]
        .concat(),
    );
    b.refused_unverified("a command for another serial", for_other, WrongDevice);

    // Sizes: over MAX_COMMAND_BYTES is refused before anything is read, up
    // to the largest packet the agent's MQTT client takes (256 KiB).
    b.refused_unverified(
        "MAX_COMMAND_BYTES + 1 bytes",
        vec![1; MAX_COMMAND_BYTES + 1],
        TooLarge,
    );
    let mut padded = [b.next_prefix(), vec![11]].concat();
    padded.resize(MAX_COMMAND_BYTES - 2 - 64 + 1, 0);
    b.refused_unverified(
        "a validly signed envelope of MAX_COMMAND_BYTES + 1 bytes",
        sign_raw(1, &padded),
        TooLarge,
    );
    b.refused_unverified("64 KiB", random(64 * 1024), TooLarge);
    b.refused_unverified("200 KiB", random(200 * 1024), TooLarge);

    // Collections over their bound and names over their length, in
    // validly signed commands: decoding fails, nothing else.
    let ids: Vec<u8> = (0..=MAX_SHARES)
        .flat_map(|i| string(format!("user-{i}").as_bytes()))
        .collect();
    b.refused_unverified(
        "Unshare of MAX_SHARES + 1 accounts",
        b.signed_body(&[vec![3], varint(MAX_SHARES as u64 + 1), ids].concat()),
        Malformed,
    );
    b.refused_unverified(
        "Unshare announcing 10^9 accounts",
        b.signed_body(&[vec![3], varint(1_000_000_000), string(b"bob")].concat()),
        Malformed,
    );
    let long = |n: usize| vec![b'a'; n];
    let seq = b.cloud.seq + 1;
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "actor id of 65 bytes",
            [
                prefix(SERIAL.as_bytes(), &long(65), b"EU", seq, now()),
                vec![11],
            ]
            .concat(),
        ),
        (
            "empty actor id",
            [prefix(SERIAL.as_bytes(), b"", b"EU", seq, now()), vec![11]].concat(),
        ),
        (
            "actor id with a control character",
            [
                prefix(SERIAL.as_bytes(), b"ali\x07ce", b"EU", seq, now()),
                vec![11],
            ]
            .concat(),
        ),
        (
            "actor id that is not UTF-8",
            [
                prefix(SERIAL.as_bytes(), b"ali\xffce", b"EU", seq, now()),
                vec![11],
            ]
            .concat(),
        ),
        (
            "region of 9 bytes",
            [
                prefix(SERIAL.as_bytes(), b"alice", &long(9), seq, now()),
                vec![11],
            ]
            .concat(),
        ),
        (
            "serial of 49 bytes",
            [prefix(&long(49), b"alice", b"EU", seq, now()), vec![11]].concat(),
        ),
        (
            "Share to an account id of 65 bytes",
            [b.next_prefix(), share_bytes(&long(65), b"EU", 1)].concat(),
        ),
        (
            "SetDomain name of 64 bytes",
            [b.next_prefix(), vec![10], string(&long(64))].concat(),
        ),
        (
            "seq varint of 11 bytes",
            [
                string(SERIAL.as_bytes()),
                string(b"alice"),
                string(b"EU"),
                vec![0xff; 10],
                vec![0x01],
                varint(now()),
                vec![11],
            ]
            .concat(),
        ),
    ];
    for (name, bytes) in cases {
        b.refused_unverified(name, sign_raw(1, &bytes), Malformed);
    }

    // Unknown enum values and invalid bits, validly signed.
    let proof = [0u8; 32];
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("CommandBody variant 14", vec![14]),
        ("CommandBody variant 300", varint(300)),
        ("Operation with action 14", vec![13, 14, 0]),
        (
            "Operation with action 200",
            [vec![13], varint(200), vec![0]].concat(),
        ),
        ("Operation with option tag 2", vec![13, 0, 2, 1]),
        ("Bind with role 2", [vec![0, 2], proof.to_vec()].concat()),
        ("SetCloudService with bool 2", vec![9, 2]),
        (
            "Share with permission bit 14",
            share_bytes(b"carol", b"EU", 1 << 14),
        ),
        (
            "Share with channel scope 2",
            [vec![2], string(b"carol"), string(b"EU"), vec![1, 2, 0]].concat(),
        ),
        (
            "Share with validity tag 2",
            [vec![2], string(b"carol"), string(b"EU"), vec![1, 0, 2]].concat(),
        ),
        (
            "Share cut inside its channel set",
            [
                vec![2],
                string(b"carol"),
                string(b"EU"),
                vec![1, 1],
                vec![0; 20],
            ]
            .concat(),
        ),
    ];
    for (name, body) in cases {
        b.refused_unverified(name, b.signed_body(&body), Malformed);
    }

    // Replays and redeliveries. bob's share is replaced by a playback
    // share; republishing the old live-view share must not bring it back.
    let first = b.cloud.command(
        "alice",
        share("bob", &[Action::LiveView, Action::Ptz], None),
    );
    let first_envelope = b.cloud.seal(&first);
    b.cloud.publish_raw(first_envelope.clone());
    assert_eq!(b.cloud.wait_ack(Some(first.seq)).outcome, Outcome::Accepted);
    assert_eq!(
        b.cloud
            .send("alice", share("bob", &[Action::Playback], None))
            .outcome,
        Outcome::Accepted
    );
    b.case(
        "the same envelope again (a redelivery): first outcome, not applied again",
        first_envelope,
        ack(Some(first.seq), Outcome::Accepted, true),
    );
    let mut reuse = first.clone();
    reuse.body = CommandBody::UnshareAll;
    b.case(
        "a recent seq with another signed body: answered as that seq, nothing applied",
        b.cloud.seal(&reuse),
        ack(Some(first.seq), Outcome::Accepted, true),
    );
    let mut zero = b.cloud.command("alice", CommandBody::UnshareAll);
    b.cloud.seq -= 1;
    zero.seq = 0;
    b.case(
        "seq 0",
        b.cloud.seal(&zero),
        ack(Some(0), Outcome::Refused(ReplayedSequence), false),
    );
    // 16 more commands push the share out of the remembered outcomes.
    for _ in 0..hc_protocol::limits::RECENT_OUTCOMES {
        b.still_serving("filling the ledger");
    }
    let mut old = first.clone();
    old.body = CommandBody::UnshareAll;
    b.case(
        "a seq older than the remembered ones",
        b.cloud.seal(&old),
        ack(Some(first.seq), Outcome::Refused(ReplayedSequence), false),
    );

    // Commands the access rules refuse (verified, fresh: each consumes its
    // sequence number and changes nothing else).
    let bound = b.state().binding;
    let rules: Vec<(&str, &str, CommandBody, Reason)> = vec![
        (
            "a share with a permission the owner cannot share (site info)",
            "alice",
            share("carol", &[Action::SiteInfoManagement], None),
            ExceedsOwnerRights,
        ),
        (
            "a share of channel 9 on an 8-channel device",
            "alice",
            CommandBody::Share {
                account: account("carol"),
                permissions: Permissions::of(&[Action::LiveView]),
                channels: ChannelScope::Only(ChannelSet::from_channels(&[1, 9]).unwrap()),
                validity: None,
            },
            ExceedsOwnerRights,
        ),
        (
            "a share from the shared user bob",
            "bob",
            share("carol", &[Action::LiveView], None),
            NotOwner,
        ),
        (
            "UnshareAll from bob",
            "bob",
            CommandBody::UnshareAll,
            NotOwner,
        ),
        (
            "GrantInstaller from bob",
            "bob",
            CommandBody::GrantInstaller {
                grants: Default::default(),
            },
            NotOwner,
        ),
        (
            "Unbind from bob",
            "bob",
            CommandBody::Unbind,
            ActionNotGranted,
        ),
        (
            "SetDomain from bob",
            "bob",
            CommandBody::SetDomain {
                name: hc_protocol::Text::new("bobs-nvr").unwrap(),
            },
            ActionNotGranted,
        ),
        (
            "RequestAudit from bob",
            "bob",
            CommandBody::RequestAudit { max: 5 },
            ActionNotGranted,
        ),
        (
            "a share from a stranger",
            "mallory",
            share("mallory", &[Action::LiveView], None),
            NotAPrincipal,
        ),
        (
            "Unbind from a stranger",
            "mallory",
            CommandBody::Unbind,
            NotAPrincipal,
        ),
        (
            "SetCloudService from the owner (installer only)",
            "alice",
            CommandBody::SetCloudService { enabled: false },
            ActionNotGranted,
        ),
        (
            "a second bind",
            "mallory",
            hc_testkit::model::bind_owner_body("mallory"),
            AlreadyBound,
        ),
        (
            "a share naming the owner",
            "alice",
            share("alice", &[Action::LiveView], None),
            AlreadyAPrincipal,
        ),
        (
            "a share to an account of another region",
            "alice",
            CommandBody::Share {
                account: foreign("carol"),
                permissions: Permissions::of(&[Action::LiveView]),
                channels: ChannelScope::All,
                validity: None,
            },
            CrossRegion,
        ),
        (
            "a share with a reversed window",
            "alice",
            share(
                "carol",
                &[Action::LiveView],
                Some(Validity {
                    not_before: now() + 100,
                    not_after: now() - 100,
                }),
            ),
            InvalidValidity,
        ),
        (
            "Unshare of an account without a share",
            "alice",
            CommandBody::Unshare {
                accounts: [AccountId::new("nobody").unwrap()].into_iter().collect(),
            },
            UnknownShare,
        ),
        (
            "SetDomain with a name that is not a DNS label",
            "alice",
            CommandBody::SetDomain {
                name: hc_protocol::Text::new("Not_A_Label").unwrap(),
            },
            InvalidDomainName,
        ),
        (
            "LeaveShare from a stranger",
            "mallory",
            CommandBody::LeaveShare,
            UnknownShare,
        ),
    ];
    for (name, actor, body, reason) in rules {
        b.refused_command(name, actor, body, reason);
    }
    // An actor of another region: the command is signed, but the account
    // is not one of this device's region.
    let mut cross = b.cloud.command("alice", CommandBody::UnshareAll);
    cross.actor = foreign("alice");
    b.refused_fresh(
        "a command whose actor is of another region",
        b.cloud.seal(&cross),
        cross.seq,
        CrossRegion,
    );
    assert_eq!(b.state().binding, bound);

    // Expired and not-yet-valid shares: accepted as shares, refused when
    // used, with their reason, in the ack and on the local socket.
    let t = now();
    for (who, window) in [
        ("carol", (t - 7_200, t - 3_600)),
        ("dave", (t + 3_600, t + 7_200)),
    ] {
        let validity = Some(Validity {
            not_before: window.0,
            not_after: window.1,
        });
        assert_eq!(
            b.cloud
                .send("alice", share(who, &[Action::LiveView], validity))
                .outcome,
            Outcome::Accepted
        );
    }
    let mut local = wait_local(&b.site.socket());
    for (who, reason) in [("carol", Expired), ("dave", NotYetValid)] {
        b.refused_command(
            &format!("live view by {who} outside the share's window"),
            who,
            CommandBody::Operation {
                action: Action::LiveView,
                channel: Some(1),
            },
            reason,
        );
        assert_eq!(
            local
                .authorize(
                    Principal::Cloud(AccountId::new(who).unwrap()),
                    Action::LiveView,
                    Some(1)
                )
                .unwrap(),
            Decision::Deny(reason)
        );
    }

    // A full share list: one more account is refused, nothing dropped.
    let have = b.state().shares.len();
    let mut last = 0;
    for i in have..MAX_SHARES {
        let command = b.cloud.command(
            "alice",
            share(&format!("fill-{i}"), &[Action::LiveView], None),
        );
        b.cloud.publish_raw(b.cloud.seal(&command));
        last = command.seq;
    }
    assert_eq!(b.cloud.wait_ack(Some(last)).outcome, Outcome::Accepted);
    assert_eq!(b.state().shares.len(), MAX_SHARES);
    b.refused_command(
        "a share for a new account when MAX_SHARES shares exist",
        "alice",
        share("one-too-many", &[Action::LiveView], None),
        CapacityExceeded,
    );

    let count = b.cases.len();
    println!(
        "command topic: {count} bad inputs, each refused with its reason, state unchanged, a good \
         command accepted after each:"
    );
    for case in &b.cases {
        println!("  - {case}");
    }
}

#[test]
fn command_topic_every_truncation_and_every_single_bit_flip_of_an_envelope_is_refused() {
    let mut b = Bench::start();
    let before = b.state();
    // A share envelope with a window: every field kind is in it.
    let command = b.cloud.command(
        "alice",
        share(
            "carol",
            &[Action::LiveView],
            Some(Validity {
                not_before: now(),
                not_after: now() + 3_600,
            }),
        ),
    );
    b.cloud.seq -= 1;
    let envelope = b.cloud.seal(&command);
    // Every prefix, and every single-bit flip of the signed part and of
    // the signature, published back to back; acks come in order.
    let mut payloads: Vec<(Vec<u8>, Reason)> = Vec::new();
    for cut in 0..envelope.len() {
        let reason = if cut < 67 {
            Reason::Malformed
        } else {
            Reason::BadSignature
        };
        payloads.push((envelope[..cut].to_vec(), reason));
    }
    let truncations = payloads.len();
    for byte in 0..envelope.len() {
        for bit in 0..8 {
            let mut flipped = envelope.clone();
            flipped[byte] ^= 1 << bit;
            let reason = match byte {
                0 => Reason::UnsupportedVersion,
                1 => Reason::UnknownKeyId,
                _ => Reason::BadSignature,
            };
            payloads.push((flipped, reason));
        }
    }
    // Signed truncations of the command: the signature is good, the bytes
    // are not a command.
    let command_bytes = &envelope[2..envelope.len() - 64];
    for cut in 1..command_bytes.len() {
        payloads.push((sign_raw(1, &command_bytes[..cut]), Reason::Malformed));
    }
    let signed_truncations = command_bytes.len() - 1;
    let flips = payloads.len() - truncations - signed_truncations;
    // Published in windows of 20 (as a cloud that pipelines a little would;
    // see the burst test for more): every message gets its own ack, in
    // order, with its reason.
    b.cloud.drain();
    for (w, window) in payloads.chunks(20).enumerate() {
        for (payload, _) in window {
            b.cloud.publish_raw(payload.clone());
        }
        let acks = b.cloud.collect_acks(window.len(), WAIT);
        assert_eq!(acks.len(), window.len(), "window {w}: one ack per message");
        for (i, (ack, (_, reason))) in acks.iter().zip(window).enumerate() {
            assert_eq!(
                *ack,
                Ack {
                    seq: None,
                    outcome: Outcome::Refused(*reason),
                    redelivered: false
                },
                "message {}",
                w * 20 + i
            );
        }
    }
    let after = b.state();
    assert_eq!(access_of(&after), access_of(&before));
    assert_eq!(after.last_seq, before.last_seq);
    // The intact envelope is then accepted.
    b.cloud.publish_raw(envelope);
    assert_eq!(
        b.cloud.wait_ack(Some(command.seq)).outcome,
        Outcome::Accepted
    );
    println!(
        "command topic: {truncations} truncations, {flips} single-bit flips, {signed_truncations} \
         validly signed truncated commands: all {} refused with their reason (seq None), state \
         unchanged, the intact envelope accepted after",
        payloads.len()
    );
}

// ------------------------------------------------------------ the local socket

fn frame(body: &[u8]) -> Vec<u8> {
    let mut out = (body.len() as u32).to_be_bytes().to_vec();
    out.extend_from_slice(body);
    out
}

fn connect(site: &Site) -> LocalClient {
    LocalClient::connect(&site.socket(), Duration::from_secs(10)).unwrap()
}

/// Reads until EOF; true if the peer closed within `within`.
/// The agent's next reply on `stream` is exactly the error frame of
/// `reason`.
#[track_caller]
fn expect_error_reply(stream: &mut UnixStream, reason: Reason, what: &str) {
    let mut reply = vec![0u8; 6];
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.read_exact(&mut reply).unwrap();
    let expected = hc_protocol::local::encode_frame(&LocalReply::Error(reason)).unwrap();
    assert_eq!(reply, expected, "{what}");
}

fn closed_within(stream: &mut UnixStream, within: Duration) -> bool {
    stream.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 64];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
    }
}

#[test]
fn local_socket_bad_frames_each_get_their_error_and_never_disturb_other_clients() {
    let mut b = Bench::start();
    let before = b.state();
    let mut cases = Vec::new();
    let bob = || Principal::Cloud(AccountId::new("bob").unwrap());
    let mut probe = connect(&b.site);
    let served = |probe: &mut LocalClient, case: &str| {
        assert_eq!(
            probe.authorize(bob(), Action::LiveView, Some(1)).unwrap(),
            Decision::Allow,
            "another client after {case}"
        );
    };

    // Bodies that do not decode: Error(Malformed), and the same connection
    // goes on (the framing is intact).
    let undecodable: Vec<(&str, Vec<u8>)> = vec![
        ("empty body", vec![]),
        ("garbage body", vec![0xff, 0xfe, 0xfd]),
        ("unknown request variant 5", vec![5]),
        ("unknown request variant 300", varint(300)),
        ("Authorize with action 14", vec![0, 1, 0, 14, 0]),
        ("Authorize with principal variant 2", vec![0, 2, 0, 0]),
        ("Authorize with local level 3", vec![0, 1, 3, 0, 0]),
        ("Authorize with option tag 2", vec![0, 1, 0, 0, 2, 1]),
        (
            "Authorize for an account id of 65 bytes",
            [vec![0, 0], string(&[b'a'; 65]), vec![0, 0]].concat(),
        ),
        ("Status with a trailing byte", vec![1, 0]),
        ("SetPlatformAccess with bool 2", vec![3, 0, 2]),
        (
            "a body of MAX_LOCAL_FRAME_BYTES",
            vec![0xff; MAX_LOCAL_FRAME_BYTES],
        ),
    ];
    for (name, body) in undecodable {
        let mut client = connect(&b.site);
        client.write_raw(&frame(&body)).unwrap();
        assert!(
            matches!(
                client.read_reply(),
                Ok(LocalReply::Error(Reason::Malformed))
            ),
            "{name}"
        );
        assert!(client.status().is_ok(), "{name}: the connection goes on");
        served(&mut probe, name);
        cases.push(name.to_owned());
    }

    // Frame headers over the limit: Error(TooLarge) before any body byte
    // is read, then the connection is closed.
    for (name, len) in [
        (
            "a header announcing MAX_LOCAL_FRAME_BYTES + 1",
            MAX_LOCAL_FRAME_BYTES as u32 + 1,
        ),
        ("a header announcing 4 GiB", u32::MAX),
    ] {
        let mut stream = UnixStream::connect(b.site.socket()).unwrap();
        stream.write_all(&len.to_be_bytes()).unwrap();
        expect_error_reply(&mut stream, Reason::TooLarge, name);
        assert!(closed_within(&mut stream, WAIT), "{name}: not closed");
        served(&mut probe, name);
        cases.push(name.to_owned());
    }

    // A client that stalls inside a frame, one that hangs up inside a
    // frame, and one that never sends anything: the others are served
    // meanwhile; the stalled one is closed after the body timeout (5 s).
    let mut stalled = UnixStream::connect(b.site.socket()).unwrap();
    stalled.write_all(&[0, 0, 0, 10, 1, 2, 3]).unwrap();
    let stalled_at = Instant::now();
    let mut hung_up = UnixStream::connect(b.site.socket()).unwrap();
    hung_up.write_all(&[0, 0, 0, 10, 1]).unwrap();
    drop(hung_up);
    let _silent = UnixStream::connect(b.site.socket()).unwrap();
    for _ in 0..20 {
        served(&mut probe, "a stalled client");
    }
    assert!(
        closed_within(&mut stalled, Duration::from_secs(10)),
        "the stalled client was never closed"
    );
    let stall = stalled_at.elapsed();
    assert!(stall >= Duration::from_secs(4), "closed after {stall:?}");
    served(&mut probe, "closing the stalled client");
    cases.push(format!(
        "a frame body that stalls (closed after {stall:.1?})"
    ));
    cases.push("a client that hangs up inside a frame".into());

    // A device user below admin cannot switch platform access.
    let mut client = connect(&b.site);
    assert!(matches!(
        client.request(&LocalRequest::SetPlatformAccess {
            by: LocalLevel::Operator,
            enabled: false
        }),
        Ok(LocalReply::Error(Reason::ActionNotGranted))
    ));
    cases.push("SetPlatformAccess by an operator".into());

    // MAX_LOCAL_CLIENTS_PER_UID connections of one uid are served; one
    // more from that uid gets Busy (every client here is this test's uid;
    // the total MAX_LOCAL_CLIENTS needs several uids, see
    // local_fairness.rs).
    drop(client);
    drop(_silent);
    drop(stalled);
    let deadline = Instant::now() + WAIT;
    let mut open: Vec<LocalClient> = vec![probe];
    while open.len() < MAX_LOCAL_CLIENTS_PER_UID {
        let mut c = connect(&b.site);
        match c.status() {
            Ok(_) => open.push(c),
            // Slots of the clients closed above may not be free yet.
            Err(_) => assert!(
                Instant::now() < deadline,
                "only {} clients served",
                open.len()
            ),
        }
    }
    let mut one_more = connect(&b.site);
    assert!(
        matches!(one_more.read_reply(), Ok(LocalReply::Error(Reason::Busy))),
        "client {} of one uid was not refused as busy",
        MAX_LOCAL_CLIENTS_PER_UID + 1
    );
    cases.push(format!(
        "client number {} of one uid while {MAX_LOCAL_CLIENTS_PER_UID} are served",
        MAX_LOCAL_CLIENTS_PER_UID + 1
    ));
    for c in &mut open {
        assert_eq!(
            c.authorize(bob(), Action::LiveView, Some(1)).unwrap(),
            Decision::Allow
        );
    }
    drop(open);

    // Nothing changed, and the cloud side was never disturbed.
    let after = b.state();
    assert_eq!(access_of(&after), access_of(&before));
    assert_eq!(after.last_seq, before.last_seq);
    b.still_serving("the local socket cases");
    println!(
        "local socket: {} bad inputs, each answered with its error, other clients served, state \
         unchanged:",
        cases.len()
    );
    for case in &cases {
        println!("  - {case}");
    }
}

#[test]
fn local_socket_peer_not_on_the_allow_list_is_refused_and_the_agent_keeps_serving_the_cloud() {
    let site = site();
    let uid = current_uid();
    let config = site.write_agent_config("strangers.toml", |c| {
        c.local_socket.allowed_uids = vec![uid.wrapping_add(4242)];
        c.local_socket.admin_uids = vec![];
    });
    let (mut cloud, _agent) = site.start_online(&config);
    for attempt in 0..3 {
        let mut stream = loop {
            if let Ok(s) = UnixStream::connect(site.socket()) {
                break s;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        // Whatever it sends, it gets PeerNotAllowed and is closed.
        let _ = stream.write_all(&frame(&[1]));
        expect_error_reply(
            &mut stream,
            Reason::PeerNotAllowed,
            &format!("attempt {attempt}"),
        );
        assert!(
            closed_within(&mut stream, WAIT),
            "attempt {attempt}: not closed"
        );
    }
    // The cloud side goes on.
    assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);
    println!("local socket: a peer with uid {uid} not on the allow-list [{}] refused 3 times with PeerNotAllowed and closed; the cloud link served a bind after", uid.wrapping_add(4242));
}

#[test]
fn a_process_not_on_admin_uids_cannot_switch_platform_access_whatever_level_it_claims() {
    let site = site();
    let config = site.write_agent_config("no-admins.toml", |c| {
        c.local_socket.admin_uids = vec![];
    });
    let (mut cloud, _agent) = site.start_online(&config);
    let mut local = wait_local(&site.socket());
    for enabled in [false, true, false] {
        match local.set_platform_access(LocalLevel::Admin, enabled) {
            Err(hc_agent::client::ClientError::Refused(Reason::PeerNotAllowed)) => {}
            other => panic!("switch to {enabled} by a claimed admin: {other:?}"),
        }
    }
    let status = local.status().unwrap();
    assert!(status.platform_access, "the switch moved");
    assert_eq!(status.link, LinkState::Connected);
    let audit = local.recent_audit(8).unwrap();
    assert!(
        audit
            .iter()
            .any(|e| matches!(e.event, AuditEvent::PlatformAccess { .. })
                && e.outcome == Outcome::Refused(Reason::PeerNotAllowed)),
        "the refusal is audited: {audit:?}"
    );
    // Still serving the cloud and the other requests.
    assert_eq!(cloud.bind_owner("alice").outcome, Outcome::Accepted);
    assert_eq!(
        local
            .authorize(
                Principal::Cloud(AccountId::new("alice").unwrap()),
                Action::LiveView,
                Some(1)
            )
            .unwrap(),
        Decision::Allow
    );
    println!("platform-access switch from a process not on admin_uids, claiming Admin: refused 3 times with PeerNotAllowed and audited; link and cloud untouched");
}

#[test]
fn a_burst_of_1000_bad_envelopes_is_answered_or_counted_and_the_agent_keeps_serving() {
    const BURST: usize = 1000;
    let mut b = Bench::start();
    let before = b.state();
    let mut rng = Rng(0xb0b5_1ead);
    b.cloud.drain();
    for i in 0..BURST {
        let mut garbage: Vec<u8> = (0..100 + i % 50).map(|_| rng.next_u64() as u8).collect();
        garbage[..2].copy_from_slice(&[1, 1]);
        b.cloud.publish_raw(garbage);
    }
    // Far more than the cloud should ever have in flight (SPEC 6.4): the
    // agent handles every one; an ack that does not fit its outbox is
    // dropped and counted in reports_dropped (SPEC 2.3), never silently.
    let mut received = 0;
    let deadline = Instant::now() + Duration::from_secs(40);
    let dropped = loop {
        let acks = b
            .cloud
            .collect_acks(BURST - received, Duration::from_millis(500));
        for ack in &acks {
            assert_eq!(
                *ack,
                Ack {
                    seq: None,
                    outcome: Outcome::Refused(Reason::BadSignature),
                    redelivered: false
                }
            );
        }
        received += acks.len();
        let dropped = b.state().reports_dropped as usize;
        if received + dropped >= BURST {
            break dropped;
        }
        assert!(
            Instant::now() < deadline,
            "{received} acks + {dropped} counted as dropped of {BURST}: the agent stopped answering"
        );
    };
    assert_eq!(
        received + dropped,
        BURST,
        "{received} acks, {dropped} dropped"
    );
    let after = b.state();
    assert_eq!(access_of(&after), access_of(&before));
    assert_eq!(after.last_seq, before.last_seq);
    // The link still works: commands are received and answered.
    b.still_serving("the burst");
    println!(
        "command topic: a burst of {BURST} bad envelopes: {received} refused with their ack, \
         {dropped} acks dropped from the full outbox and counted in reports_dropped; state \
         unchanged; a good command accepted after"
    );
}
